//! The `steward` binary.

mod agent;
mod cli;
mod publish;
mod remote;

fn main() -> std::process::ExitCode {
    cli::main()
}
