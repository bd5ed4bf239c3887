//! `portico-proxy`: parses arguments and hands them to [`portico_proxy::run`] (or
//! [`portico_proxy::vtl::main`] for `portico-proxy vtl`).

use clap::Parser;
use std::process::ExitCode;

// mimalloc: fewer instructions per malloc/free than glibc on the request path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = portico_proxy::cli::Cli::parse();
    if let Some(portico_proxy::cli::Command::Vtl(args)) = &cli.command {
        return portico_proxy::vtl::main(args);
    }
    match portico_proxy::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portico-proxy: {e}");
            ExitCode::from(1)
        }
    }
}
