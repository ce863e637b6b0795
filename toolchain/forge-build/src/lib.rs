//! forge's build stage: from a project on disk to layers in the store and a lockfile.
//!
//! `plan` resolves a project's recipes (loaded by `forge-project`) into hashed, ordered
//! work and the lockfile's recipe section, `engine` fetches and builds with bounded
//! parallelism, `steps` turns one recipe into a layer, `check` rebuilds to compare.

pub mod check;
pub mod engine;
pub mod plan;
pub mod steps;

use std::path::PathBuf;

use forge_schema::Diagnostics;

/// Build errors.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Project(#[from] forge_project::ProjectError),
    #[error("cannot read or write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Diagnostics(#[source] Diagnostics),
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
    #[error("cannot check: {0}; run `forge lock` first")]
    CheckUnlocked(String),
    #[error("internal error: {0}")]
    Internal(String),
}
