//! Debian archives for forge's image stage: the mirror to use, the archive's signed index,
//! dependency resolution into a locked package set, reading `.deb` files, and the local
//! repository a locked set is installed from.
//!
//! Everything but `mirror::host_sources` and `repo::write` is pure: callers fetch bytes
//! (through forge's verified fetcher) and hand them in.

pub mod control;
pub mod deb;
pub mod index;
pub mod mirror;
pub mod release;
pub mod repo;
pub mod resolve;
pub mod version;

/// Errors about archives.
#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    #[error("cannot read keyring `{keyring}`: {reason}")]
    Keyring { keyring: String, reason: String },
    #[error(
        "{what}: bad signature: {reason}\nthe index may have been tampered with, or the keyring is not the archive's; nothing was locked"
    )]
    Signature { what: String, reason: String },
    #[error("{what}: {reason}")]
    Index { what: String, reason: String },
    #[error(transparent)]
    Resolve(#[from] Box<resolve::ResolveError>),
}
