//! forge's file formats and pure logic: recipes, the lockfile, digests and recipe hashing.
//!
//! Nothing here touches the filesystem or the network; callers hand in text and get typed,
//! validated values (or diagnostics with `file:line:col`) back.

pub mod contract;
pub mod diag;
pub mod digest;
pub mod hash;
pub mod image;
pub mod lockfile;
pub mod oci;
pub mod paths;
pub mod platform;
pub mod recipe;
pub mod unit;
pub mod variant;

pub use diag::{Diagnostics, SourceFile, TomlError};
pub use digest::{Hasher, Integrity, IntegrityHasher, Sha256Digest, Sha512Digest};
