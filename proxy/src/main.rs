//! `portico-proxy`: parses arguments and hands them to [`portico_proxy::run`] (or
//! [`portico_proxy::vtl::main`] for `portico-proxy vtl`).

use clap::Parser;
use std::process::ExitCode;

// mimalloc: fewer instructions per malloc/free than glibc on the request path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // No transparent huge pages for this process. mimalloc asks for them on its arenas
    // (madvise), and the kernel then zeroes a whole 2 MiB page on the first touch of any
    // byte of it, again after every purge: loading 5,000 APIs and 100,000 keys spent 1.7 s of
    // its 2.1 s of CPU in the kernel clearing pages, and held 454 MiB against 395 MiB
    // without (bench/RESULTS.md, "Scale"). The flag is the process's (its memory map's), so it
    // covers every mapping, past and future, of every thread.
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("portico-proxy: prctl(PR_SET_THP_DISABLE): {e} (continuing)");
    }
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
