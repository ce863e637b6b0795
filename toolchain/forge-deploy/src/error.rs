//! Errors of the deploy stage, each with a [`ErrorKind`] the apply loop decides on
//! (retry in the next round, or stop), instead of text to match.

use crate::plan::Action;
use crate::resource::Kind;

/// What an error means for the apply loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Passing: a later attempt may succeed (5xx, 429, a lost answer, a dependency that
    /// failed earlier in the round).
    Transient,
    /// The resource is not there.
    NotFound,
    /// The API refused because of another resource's state (in use, already there).
    Conflict,
    /// Bad input or a refusal no retry changes: stop and say what to fix.
    Fatal,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Bad or missing input (platform.toml, SSH key, user-data): fix and re-run.
    #[error("{0}")]
    Input(String),
    /// The project (platform.toml, the lockfile) is missing something.
    #[error(transparent)]
    Project(#[from] forge_project::ProjectError),
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What forge was doing (`creating instance-pool p-vault`).
        what: String,
        #[source]
        source: forge_exoscale::Error,
    },
    /// A resource this one refers to does not exist (it failed earlier in the round).
    #[error("{key} does not exist yet (it failed earlier in this round)")]
    Dependency { key: String },
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

    /// An API error of an action on a resource.
    pub fn action(action: Action, kind: Kind, name: &str, source: forge_exoscale::Error) -> Self {
        DeployError::api(format!("{} {kind} {name}", action.verb()), source)
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            DeployError::Api { source, .. } => match source.status() {
                _ if source.is_transient() => ErrorKind::Transient,
                Some(404) => ErrorKind::NotFound,
                Some(409) => ErrorKind::Conflict,
                _ => ErrorKind::Fatal,
            },
            DeployError::Dependency { .. } => ErrorKind::Transient,
            DeployError::Input(_) | DeployError::Project(_) | DeployError::NotConverged { .. } => {
                ErrorKind::Fatal
            }
        }
    }

    /// Whether the next round may carry out an `action` that failed with this error. A
    /// group still in use just after its pool was deleted frees up shortly, so a conflict
    /// on a delete is retried; other conflicts are not.
    pub fn retryable(&self, action: Action) -> bool {
        match self.kind() {
            ErrorKind::Transient => true,
            ErrorKind::Conflict => action == Action::Delete,
            ErrorKind::NotFound | ErrorKind::Fatal => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> DeployError {
        DeployError::api(
            "x",
            forge_exoscale::Error::Api {
                what: "PUT /v2/x".into(),
                status,
                message: "m".into(),
            },
        )
    }

    #[test]
    fn kinds_follow_the_api_status() {
        assert_eq!(api(503).kind(), ErrorKind::Transient);
        assert_eq!(api(429).kind(), ErrorKind::Transient);
        assert_eq!(api(501).kind(), ErrorKind::Fatal);
        assert_eq!(api(404).kind(), ErrorKind::NotFound);
        assert_eq!(api(409).kind(), ErrorKind::Conflict);
        assert_eq!(api(400).kind(), ErrorKind::Fatal);
        assert_eq!(
            DeployError::Dependency { key: "k".into() }.kind(),
            ErrorKind::Transient
        );
    }

    #[test]
    fn only_a_conflicting_delete_waits_for_the_next_round() {
        assert!(api(409).retryable(Action::Delete));
        assert!(!api(409).retryable(Action::Create));
        assert!(api(502).retryable(Action::Update));
        assert!(!api(400).retryable(Action::Delete));
        assert!(!DeployError::Input("bad".into()).retryable(Action::Create));
    }
}
