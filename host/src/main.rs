//! The `steward` binary.

mod agent;
mod cli;
mod publish;
mod remote;
mod text;

fn main() -> std::process::ExitCode {
    cli::main()
}
