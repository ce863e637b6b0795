//! forge's build stage: from a project on disk to layers in the store and a lockfile.
//!
//! `project` loads recipes and the lockfile, `plan` resolves them into hashed, ordered
//! work, `engine` fetches and builds with bounded parallelism, `steps` turns one recipe
//! into a layer, `lock` writes and enforces the lockfile, `check` rebuilds to compare.

pub mod check;
pub mod engine;
pub mod lock;
pub mod plan;
pub mod project;
pub mod steps;

use std::path::PathBuf;

use forge_schema::Diagnostics;
use forge_schema::lockfile::Change;

/// Build errors.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "no forge project here: neither `{}` nor any parent holds a `recipes/` directory\nrun forge inside a project or pass `-C DIR`",
        start.display()
    )]
    NoProject { start: PathBuf },
    #[error("cannot read or write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Diagnostics(Diagnostics),
    #[error("{0}")]
    Target(String),
    #[error("{location}: recipe `{recipe}`: {message}")]
    Step {
        recipe: String,
        location: String,
        message: String,
    },
    #[error("recipe `{recipe}`: {source}")]
    Layer {
        recipe: String,
        #[source]
        source: forge_layer::LayerError,
    },
    #[error("path source `{name}` (`{}`) changed while forge was reading it; run the command again", path.display())]
    Changed { path: PathBuf, name: String },
    #[error(transparent)]
    Fetch(#[from] forge_fetch::FetchError),
    #[error(transparent)]
    Store(#[from] forge_store::StoreError),
    #[error(transparent)]
    Archive(#[from] forge_archive::ArchiveError),
    #[error(
        "lockfile.toml does not exist, and --locked forbids creating it\nrun `forge lock` and commit lockfile.toml"
    )]
    NoLockfile,
    #[error(
        "lockfile.toml needs to change, but --locked forbids it:{}\nrun `forge lock` (or build without --locked) and review the difference",
        list(changes)
    )]
    Locked { changes: Vec<Change> },
    #[error("cannot check: {0}; run `forge lock` first")]
    CheckUnlocked(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn list(changes: &[Change]) -> String {
    changes.iter().map(|c| format!("\n  - {c}")).collect()
}
