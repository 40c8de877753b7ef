//! `tsunagi plugin`: the plugin author's commands. `new` scaffolds a connector crate, `build`
//! builds a crate as a component and checks that it loads, `test` runs a plugin against
//! cassettes with no network.

mod build;
mod new;
mod test;

pub use build::{BuildArgs, build};
pub use new::{NewArgs, new};
pub use test::{TestArgs, test};

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Create a connector crate that builds and passes its own cassette test.
    New(NewArgs),
    /// Build a connector crate as a wasm32-wasip2 component and check that it loads.
    Build(BuildArgs),
    /// Run a plugin against recorded HTTP exchanges and compare its results with the expected
    /// ones; `--record` captures a cassette from the real upstream instead.
    Test(TestArgs),
}

pub async fn run(command: PluginCommand) -> anyhow::Result<std::process::ExitCode> {
    match command {
        PluginCommand::New(args) => new(args),
        PluginCommand::Build(args) => build(args).await,
        PluginCommand::Test(args) => test(args).await,
    }
}
