//! The subcommands, and the one place that turns a parsed command line into a run.

#[cfg(feature = "demo")]
mod demo;
mod elect;
mod gc;
mod get;
mod heartbeat;
mod identity;
mod outputs;
mod pool;
mod runner;
#[cfg(feature = "demo")]
mod sim;
mod supervisor;
mod watch;

use crate::cli::{Cli, Command};
use crate::error::AgentError;
use crate::shutdown::Signals;

/// Runs the command line on the current tokio runtime; `Ok` carries the exit code (a child's
/// code when the agent ends with its child).
pub async fn run(cli: Cli) -> Result<i32, AgentError> {
    // Installed before anything else, so an early SIGTERM is not lost; the fence handles its own.
    let signals = || {
        Signals::install().map_err(|e| AgentError::runtime(format!("cannot handle signals: {e}")))
    };
    let global = &cli.global;
    match cli.command {
        Command::Elect(args) => elect::run(global, args, &mut signals()?).await,
        Command::Pool(args) => pool::run(global, args, &mut signals()?).await,
        Command::Heartbeat(args) => heartbeat::run(global, args, &mut signals()?).await,
        Command::Identity(args) => identity::run(global, args, &mut signals()?).await,
        Command::Gc(args) => gc::run(global, args).await,
        Command::Get(args) => get::run(global, args).await,
        #[cfg(feature = "demo")]
        Command::Sim(args) => sim::run(args, &mut signals()?).await,
        #[cfg(feature = "demo")]
        Command::Demo => demo::run(global).await,
        #[cfg(not(feature = "demo"))]
        Command::Sim(_) | Command::Demo => Err(without_demo()),
        Command::Fence(args) => crate::fence::run(args).await,
    }
}

/// `sim` and `demo` in a build without the fake API server (production images leave it out).
#[cfg(not(feature = "demo"))]
fn without_demo() -> AgentError {
    AgentError::usage(
        "this build of leasehold leaves out the fake API server that `sim` and `demo` run: \
         build with `cargo build --release -p leasehold --features demo`",
    )
}
