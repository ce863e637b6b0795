//! Errors of the project: each variant is a kind a caller can act on, with a message that
//! says what was wrong, where, and what to do.

use std::path::PathBuf;

use forge_schema::Diagnostics;
use forge_schema::lockfile::Change;

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(
        "no forge project here: neither `{}` nor any parent holds `recipes/`, `platform.toml` or `lockfile.toml`\nrun forge inside a project or pass `-C DIR`",
        start.display()
    )]
    NoProject { start: PathBuf },
    #[error("cannot read or write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Problems in TOML files, with their locations.
    #[error("{0}")]
    Diagnostics(#[source] Diagnostics),
    #[error("{message}")]
    UnknownVariant { name: String, message: String },
    /// The command needs recipes or images, and the project has neither directory.
    #[error(
        "`{}` holds no `recipes/` or `images/`: this command builds, so it needs the project's recipes (a deploy checkout of platform.toml, the lockfile and manifests/ can plan, deploy and destroy)",
        root.display()
    )]
    NoDefinitions { root: PathBuf },
    #[error(
        "{} not found: describe the platform there (see docs/deploy.md and docs/vault.md; the repository's platform.toml is an example)",
        path.display()
    )]
    NoPlatform { path: PathBuf },
    /// The project has no lockfile, and the command needs one.
    /// `lockfile` is the path for messages: relative to the root when inside it.
    #[error("{lockfile} does not exist: {advice}")]
    NoLockfile {
        lockfile: String,
        advice: &'static str,
    },
    #[error(
        "{lockfile} needs to change, but --locked forbids it:{}\nrun `forge lock` (or build without --locked) and review the difference",
        list(changes)
    )]
    Locked {
        lockfile: String,
        changes: Vec<Change>,
    },
    /// The lockfile lacks a pin a command needs (an image output, a current template).
    #[error("{lockfile}: {message}")]
    Pin { lockfile: String, message: String },
    #[error(
        "{lockfile}: image `{image}` has no template in {zone}{}: run `forge build images` and `forge publish`",
        elsewhere(zones)
    )]
    NoTemplate {
        lockfile: String,
        image: String,
        zone: String,
        /// Zones the lockfile has templates of this image for.
        zones: Vec<String>,
    },
    #[error(transparent)]
    Store(#[from] forge_store::StoreError),
}

fn list(changes: &[Change]) -> String {
    changes.iter().map(|c| format!("\n  - {c}")).collect()
}

fn elsewhere(zones: &[String]) -> String {
    if zones.is_empty() {
        " (it has no template in any zone)".into()
    } else {
        format!(" (it has templates in {} only)", zones.join(", "))
    }
}

impl ProjectError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ProjectError::Io {
            path: path.into(),
            source,
        }
    }
}
