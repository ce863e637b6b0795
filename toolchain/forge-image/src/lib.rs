//! forge's image stage: a locked Debian base installed offline, layers and settings on
//! top, and a bit-identical bootable disk (GPT, FAT ESP booting BIOS and UEFI, ext4 root),
//! converted to qcow2. Also `forge vm`, which boots one under QEMU.

pub mod base;
pub mod build;
pub mod check;
pub mod compose;
pub mod disk;
pub mod gpt;
pub mod plan;
pub mod run;
pub mod settings;
pub mod tools;
pub mod vm;

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
    #[error("{0}")]
    Tool(String),
    #[error(transparent)]
    Debian(#[from] forge_debian::DebianError),
    #[error(transparent)]
    Fetch(#[from] forge_fetch::FetchError),
    #[error(transparent)]
    Store(#[from] forge_store::StoreError),
    #[error("{0}")]
    Build(#[from] forge_build::BuildError),
    #[error("{0}")]
    Timeout(String),
    #[error("image `{image}`: {source}")]
    ForImage {
        image: String,
        #[source]
        source: Box<ImageError>,
    },
}

impl ImageError {
    /// Says which image the error is about.
    pub fn for_image(self, image: &str) -> Self {
        match self {
            e @ ImageError::ForImage { .. } => e,
            e => ImageError::ForImage {
                image: image.to_string(),
                source: Box::new(e),
            },
        }
    }
}
