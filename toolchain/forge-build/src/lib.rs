//! forge's build stage: from a project on disk to layers in the store and a lockfile.
//!
//! `plan` resolves a project's recipes (loaded by `forge-project`) into hashed, ordered
//! work and the lockfile's recipe section, `engine` fetches and builds with bounded
//! parallelism, `steps` turns one recipe into a layer, `check` rebuilds to compare.

pub mod check;
pub mod engine;
pub mod plan;
pub mod sandbox;
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
    /// A build step's program failed (or was killed).
    #[error("{0}")]
    StepFailed(Box<StepFailure>),
    /// The program of a build step is not in its sandbox.
    #[error(
        "{location}: recipe `{recipe}`: `{program}` is not in the build sandbox, {detail}\nhelp: add the recipe that installs `{program}` to `tools`, or give its path inside the sandbox"
    )]
    ToolMissing {
        recipe: String,
        location: String,
        program: String,
        /// What the sandbox holds, and where the host has such a program.
        detail: String,
    },
    /// bubblewrap is missing or cannot start.
    #[error(
        "a build step needs bubblewrap (`bwrap`) to make its sandbox, and it cannot be started: {source}\nhelp: install it (Debian: `apt install bubblewrap`)"
    )]
    NoSandbox {
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    GoSum { path: String, message: String },
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

/// What a failed build step left to say.
#[derive(Debug, thiserror::Error)]
#[error(
    "{location}: recipe `{recipe}`: the build step failed ({status}); its last lines:\n{tail}\nthe whole log is kept in `{}`{hint}",
    log.display()
)]
pub struct StepFailure {
    pub recipe: String,
    pub location: String,
    pub status: String,
    /// The last lines of its output, indented.
    pub tail: String,
    pub log: PathBuf,
    /// Empty, or a line that starts with a newline.
    pub hint: String,
}
