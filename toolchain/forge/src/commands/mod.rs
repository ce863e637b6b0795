//! One module per verb: each resolves its settings, calls the stages and reports. Verbs do
//! not call each other; what several share is in `common` (the build verbs), `target`
//! (the deploy verbs) and `settings`.

mod build;
mod common;
mod completions;
mod deploy;
mod destroy;
mod fetch;
mod gc;
mod hash;
mod lock;
mod plan;
mod publish;
mod store;
mod vm;

use anyhow::Result;

use crate::cli::Command;
use crate::settings::Globals;

/// Runs the verb the command line names.
pub fn run(g: &Globals, command: &Command) -> Result<()> {
    match command {
        Command::Build(a) => build::run(g, a),
        Command::Lock(a) => lock::run(g, a),
        Command::Fetch(a) => fetch::run(g, a),
        Command::Hash(a) => hash::run(g, a),
        Command::Store(c) => store::run(g, c),
        Command::Gc(a) => gc::run(g, a),
        Command::Vm(a) => vm::run(g, a),
        Command::Plan(a) => plan::run(g, a),
        Command::Deploy(a) => deploy::run(g, a),
        Command::Destroy(a) => destroy::run(g, a),
        Command::Publish(a) => publish::run(g, a),
        Command::Completions(a) => completions::run(a),
    }
}
