//! `forge build --check` for images: rebuild in a fresh store (base installed again,
//! layers rebuilt) and compare with the lockfile; on a difference, compare the two root
//! file systems file by file and name the first that differs.

use std::fs::File;
use std::sync::Arc;

use forge_build::engine::Observer;
use forge_build::plan::Plan;
use forge_fetch::FetchOptions;
use forge_layer::diff::{Difference, diff_layers};
use forge_schema::Sha256Digest;
use forge_schema::image::Image;
use forge_schema::lockfile::Lockfile;
use forge_store::{ImageRecord, Store};

use crate::ImageError;
use crate::run::{ImageOptions, Resolve, build_images};

/// The verdict for one image.
#[derive(Debug, Clone)]
pub struct ImageCheck {
    pub name: String,
    pub locked: Sha256Digest,
    pub rebuilt: Sha256Digest,
    /// The first differing file of the root file system, when both were available.
    pub difference: Option<Difference>,
    /// What the comparison found, in words.
    pub explanation: String,
    pub seconds: f64,
}

impl ImageCheck {
    pub fn matches(&self) -> bool {
        self.locked == self.rebuilt
    }
}

/// Rebuilds `images` in a fresh store and compares them with the lockfile.
pub async fn check(
    plan: &Arc<Plan>,
    images: &[&Image],
    lock: &Lockfile,
    store: &Arc<Store>,
    options: &ImageOptions,
    observer: Arc<dyn Observer>,
) -> Result<Vec<ImageCheck>, ImageError> {
    let mut expected = Vec::new();
    for image in images {
        let entry = lock.images.get(&image.name).ok_or_else(|| {
            ImageError::Tool(format!(
                "cannot check image `{}`: it is not in lockfile.toml; run `forge lock` first",
                image.name
            ))
        })?;
        let sha = entry.output_sha256.ok_or_else(|| {
            ImageError::Tool(format!("cannot check image `{}`: the lockfile has no output for it; run `forge build image:{}` first", image.name, image.name))
        })?;
        expected.push((image.name.clone(), entry.hash, sha));
    }
    // Everything the rebuild needs is fetched into the main store first, then read from
    // there, offline.
    let warm = ImageOptions {
        resolve: Resolve::Locked,
        ..options.clone()
    };
    crate::run::prepare(plan, images, lock, store, &warm, observer.clone()).await?;
    let scratch = store.temp_dir()?;
    let fresh = Arc::new(Store::open(scratch.path(), &|_| {})?);
    let mut fresh_options = warm.clone();
    fresh_options.build.fetch = FetchOptions {
        upstream: Some(store.clone()),
        offline: true,
        ..options.build.fetch.clone()
    };
    let result = build_images(plan, images, lock, &fresh, &fresh_options, observer).await?;
    let mut out = Vec::new();
    for (name, locked_hash, locked) in expected {
        let Some(o) = result.outcomes.iter().find(|o| o.name == name) else {
            continue;
        };
        let rebuilt = o.record.output_sha256;
        let (difference, explanation) = if rebuilt == locked {
            (None, "reproduced".to_string())
        } else if o.hash != locked_hash {
            (
                None,
                format!(
                    "the image's inputs changed since it was locked (hash {} now, {} locked); run `forge lock`",
                    o.hash, locked_hash
                ),
            )
        } else {
            match store.record::<ImageRecord>(&locked_hash)? {
                Some(old) if old.output_sha256 == locked => {
                    let a = File::open(store.blob_path(&old.rootfs_sha256)).map_err(|source| ImageError::Io {
                        path: store.blob_path(&old.rootfs_sha256),
                        source,
                    })?;
                    let b = File::open(fresh.blob_path(&o.record.rootfs_sha256)).map_err(|source| ImageError::Io {
                        path: fresh.blob_path(&o.record.rootfs_sha256),
                        source,
                    })?;
                    let d = diff_layers(a, b).map_err(|source| ImageError::Io {
                        path: fresh.blob_path(&o.record.rootfs_sha256),
                        source,
                    })?;
                    match d {
                        Some(d) if d.attribute != forge_layer::diff::Attribute::Encoding => {
                            let text = format!("first difference in the root file system: {d}");
                            (Some(d), text)
                        }
                        _ => (
                            None,
                            "the root file systems are identical file by file; the difference is in how the disk was assembled (ext4 metadata, ESP or GPT): compare the tool versions".to_string(),
                        ),
                    }
                }
                _ => (
                    None,
                    "the locked image was not built in this store, so only the hashes can be compared; build it once with `forge build` to get a file-by-file comparison".to_string(),
                ),
            }
        };
        out.push(ImageCheck {
            name,
            locked,
            rebuilt,
            difference,
            explanation,
            seconds: o.seconds,
        });
    }
    drop(fresh);
    drop(scratch);
    Ok(out)
}
