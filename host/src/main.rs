//! The `steward` binary.

mod cli;
mod publish;
mod remote;

fn main() -> std::process::ExitCode {
    cli::main()
}
