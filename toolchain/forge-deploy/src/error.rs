//! Errors of the deploy stage.

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Bad or missing input (platform.toml, lockfile, SSH key): fix and re-run.
    #[error("{0}")]
    Input(String),
    /// The project (platform.toml, the lockfile) is missing something.
    #[error(transparent)]
    Project(#[from] forge_project::ProjectError),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: forge_exoscale::Error,
    },
    /// Some actions still failed after every round.
    #[error(
        "{failed} action(s) failed after {rounds} round(s); the last errors:\n{errors}\nre-run `forge deploy`: it converges from whatever exists"
    )]
    NotConverged {
        failed: usize,
        rounds: u32,
        errors: String,
    },
}

impl DeployError {
    pub fn api(what: impl Into<String>, source: forge_exoscale::Error) -> Self {
        DeployError::Api {
            what: what.into(),
            source,
        }
    }
}
