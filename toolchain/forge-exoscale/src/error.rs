//! Typed errors with the API's own message.

/// An Exoscale API failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: HTTP {status}: {message}")]
    Api {
        what: String,
        status: u16,
        message: String,
    },
    #[error("{what}: {message}")]
    Transport { what: String, message: String },
    /// A create whose outcome is unknown (the answer was lost or a 5xx came back): the
    /// resource may exist. Look it up before trying again.
    #[error(
        "{what}: the outcome is unknown ({detail}); look the resource up before creating it again"
    )]
    Ambiguous { what: String, detail: String },
    #[error("operation {id} ended in {state}{}{}", if reason.is_empty() { String::new() } else { format!(" ({reason})") }, if message.is_empty() { String::new() } else { format!(": {message}") })]
    Operation {
        id: String,
        state: String,
        reason: String,
        message: String,
    },
    #[error("operation {id} still pending after {secs} s")]
    WaitTimeout { id: String, secs: u64 },
    #[error("{what}: unexpected answer: {message}")]
    Decode { what: String, message: String },
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether trying again later may succeed (for callers that loop over a whole plan).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api { status, .. } => *status == 429 || (*status >= 500 && *status != 501),
            Error::Transport { .. } | Error::Ambiguous { .. } | Error::Operation { .. } => true,
            Error::WaitTimeout { .. } | Error::Decode { .. } | Error::Config(_) => false,
        }
    }
}
