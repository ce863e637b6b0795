//! forge's image stage: a locked Debian base installed offline, layers and settings on
//! top, and a bit-identical bootable disk (GPT, FAT ESP booting BIOS and UEFI, ext4 root),
//! converted to qcow2. Also `forge vm`, which boots one under QEMU.

pub mod compose;
pub mod gpt;
pub mod tools;

use std::path::PathBuf;

/// Image stage errors.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read or write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("missing or unsuitable tools:\n{0}")]
    Tools(String),
    #[error("root file system: {0}")]
    Compose(String),
}
