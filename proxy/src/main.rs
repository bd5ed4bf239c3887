//! `portico-proxy`: parses arguments and hands them to [`portico_proxy::run`].

use clap::Parser;
use std::process::ExitCode;

// mimalloc: fewer instructions per malloc/free than glibc on the request path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = portico_proxy::cli::Cli::parse();
    match portico_proxy::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portico-proxy: {e}");
            ExitCode::from(1)
        }
    }
}
