//! forge's Vault stage (spec §5, §6.2-6.5).
//!
//! - [`pki`]: the Platform Root CA and the members' bootstrap certificates (rcgen);
//! - [`secrets`]: the secrets directory (0600 files, optional age encryption);
//! - [`client`]: a thin typed Vault HTTP client;
//! - [`lifecycle`]: TLS bootstrap, init, unseal, raft join (`--stage vault`);
//! - [`config`]: the declarative Vault configuration of §5.3-5.8 (`--stage vault-config`),
//!   planned against what Vault holds and applied.

pub mod client;
pub mod config;
pub mod lifecycle;
pub mod pki;
pub mod secrets;
pub mod stage;
pub mod transport;

use std::path::PathBuf;

pub use client::{VaultClient, VaultError};
pub use secrets::{Secret, SecretsDir, SecretsError};

/// Names derived from the platform.
pub mod names {
    use forge_schema::platform::Platform;

    /// `<P>-vault`: the cluster name, the certificates' CN, retry_join's TLS server name.
    pub fn cluster(p: &Platform) -> String {
        format!("{}-vault", p.name)
    }

    pub fn root_ca_cn(p: &Platform) -> String {
        format!("{} Platform Root CA 1", p.name)
    }
}

/// What went wrong in the Vault stage.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{0}")]
    Invalid(String),
}
