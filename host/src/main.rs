//! The `steward` binary.

mod cli;
mod remote;

fn main() -> std::process::ExitCode {
    cli::main()
}
