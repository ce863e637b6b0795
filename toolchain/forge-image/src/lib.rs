//! forge's image stage.
pub mod gpt;
