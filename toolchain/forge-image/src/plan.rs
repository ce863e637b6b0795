//! Image hashes and the identifiers derived from them.
//!
//! An image is input-addressed like a recipe: its hash covers the normalised definition,
//! the hashes of its layers (in order), every locked .deb, the tool versions, the
//! SOURCE_DATE_EPOCH and the image builder version. Disk GUIDs, the file system UUID and
//! hash seed and the FAT volume id are derived from it, so two builds of the same inputs
//! agree on every byte, and two different images never share an identifier.

use std::collections::BTreeMap;

use forge_schema::Sha256Digest;
use forge_schema::image::{Base, Image};
use serde::Serialize;

use crate::gpt::Guid;

/// Version tag of the image builder: bump it whenever forge changes how an image is put
/// together from the same inputs.
pub const IMAGE_BUILDER_VERSION: &str = "forge-image-builder/2";

#[derive(Serialize)]
struct View<'a> {
    encoding: &'static str,
    builder: &'static str,
    source_date_epoch: u64,
    name: &'a str,
    base: &'a Base,
    settings: &'a forge_schema::image::Settings,
    disk: &'a forge_schema::image::Disk,
    output: &'a forge_schema::image::Output,
    layers: &'a [(String, Sha256Digest)],
    debs: &'a [(String, Sha256Digest)],
    tools: &'a BTreeMap<String, String>,
}

/// The image hash.
pub fn image_hash(
    image: &Image,
    layers: &[(String, Sha256Digest)],
    debs: &[(String, Sha256Digest)],
    tools: &BTreeMap<String, String>,
    source_date_epoch: u64,
) -> Sha256Digest {
    let mut debs = debs.to_vec();
    debs.sort();
    let view = View {
        encoding: "forge-image-hash/1",
        builder: IMAGE_BUILDER_VERSION,
        source_date_epoch,
        name: &image.name,
        base: &image.base,
        settings: &image.settings,
        disk: &image.disk,
        output: &image.output,
        layers,
        debs: &debs,
        tools,
    };
    Sha256Digest::of(&serde_json::to_vec(&view).unwrap_or_default())
}

/// Hash of a `[base]` section: when it changes, the package set is resolved again.
pub fn base_spec_hash(base: &Base) -> Sha256Digest {
    Sha256Digest::of(&serde_json::to_vec(&("forge-base-spec/1", base)).unwrap_or_default())
}

/// Identifiers of one image's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub disk: Guid,
    pub esp: Guid,
    pub root: Guid,
    /// ext4 UUID.
    pub fs_uuid: Guid,
    /// ext4 directory hash seed.
    pub hash_seed: Guid,
    /// FAT volume id.
    pub fat_volume_id: u32,
}

/// A version-4-shaped UUID from `hash` and a label.
fn derive(hash: &Sha256Digest, label: &str) -> Guid {
    let mut input = hash.as_bytes().to_vec();
    input.extend_from_slice(label.as_bytes());
    let d = Sha256Digest::of(&input);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Guid(b)
}

impl Ids {
    pub fn derive(image_hash: &Sha256Digest) -> Self {
        let vol = derive(image_hash, "fat-volume-id").0;
        Self {
            disk: derive(image_hash, "disk"),
            esp: derive(image_hash, "esp"),
            root: derive(image_hash, "root"),
            fs_uuid: derive(image_hash, "ext4-uuid"),
            hash_seed: derive(image_hash, "ext4-hash-seed"),
            fat_volume_id: u32::from_be_bytes([vol[0], vol[1], vol[2], vol[3]]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_distinct_and_well_formed() {
        let h = Sha256Digest::of(b"image");
        let a = Ids::derive(&h);
        assert_eq!(a, Ids::derive(&h));
        assert_ne!(a.disk, a.root);
        assert_ne!(a, Ids::derive(&Sha256Digest::of(b"other")));
        let s = a.fs_uuid.to_string();
        assert_eq!(&s[14..15], "4", "{s}");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
    }
}
