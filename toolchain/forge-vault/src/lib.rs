//! forge's Vault stage (spec §5, §6.2-6.5).
pub mod pki;
pub mod secrets;
