//! controller (in progress).

/// Flags of `portico-operator run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {}

/// Runs the operator.
pub async fn run(_args: RunArgs) -> crate::Result<()> {
    Ok(())
}
