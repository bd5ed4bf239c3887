//! `portico-operator`: command-line entry point. Thin by design: parse arguments and call
//! the library. `crds` prints the CustomResourceDefinitions; `run` runs the controller.

use clap::{Parser, Subcommand};
use std::io::Write;

/// Portico operator: compiles RestApi / Stage / ... objects into a GatewayConfig.
#[derive(Parser, Debug)]
#[command(name = "portico-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the five CustomResourceDefinitions as one multi-document YAML stream.
    Crds,
    /// Watch the Portico resources, publish the GatewayConfig ConfigMap and write statuses.
    Run(Box<portico_operator::controller::RunArgs>),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds => {
            let mut out = std::io::stdout().lock();
            out.write_all(portico_crds::all_crds_yaml().as_bytes())?;
            out.flush()?;
        }
        Command::Run(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(portico_operator::controller::run(*args))?;
        }
    }
    Ok(())
}
