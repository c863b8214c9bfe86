//! The `steward` binary.

mod agent;
mod author;
mod cli;
mod publish;
mod remote;
#[cfg(feature = "server")]
mod server;
mod text;

/// mimalloc instead of glibc's allocator: under load the server spent a
/// fifth of its CPU in glibc `malloc`/`free` (`perf`, `bench --bin
/// agents`), much of it in `malloc_consolidate` across worker threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
