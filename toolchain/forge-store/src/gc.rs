//! `forge gc`: delete what no registered lockfile (GC root) references.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use forge_schema::lockfile::Lockfile;
use forge_schema::{Sha256Digest, SourceFile};

use crate::{IoContext, Result, Store, StoreError};

/// What must survive a collection.
#[derive(Debug, Default, Clone)]
pub struct KeepSet {
    pub blobs: BTreeSet<Sha256Digest>,
    /// Input hashes (recipes, images, bases) whose output records are kept.
    pub outputs: BTreeSet<Sha256Digest>,
}

impl KeepSet {
    /// Adds everything a lockfile pins.
    pub fn add_lockfile(&mut self, lock: &Lockfile) {
        for r in lock.recipes.values() {
            self.outputs.insert(r.hash);
            self.blobs.extend(r.sources.iter().filter_map(|s| s.sha256));
            self.outputs
                .extend(r.sources.iter().filter_map(|s| s.record_key()));
            self.outputs
                .extend(r.sources.iter().flat_map(|s| s.module_record_keys()));
            self.blobs.extend(r.layer_sha256);
        }
        for i in lock.images.values() {
            self.outputs.insert(i.hash);
            self.outputs.insert(lock.base_build_hash(i));
            self.blobs.extend(i.output_sha256);
        }
        self.blobs.extend(lock.debs.values().map(|d| d.sha256));
    }
}

/// The registered roots, read.
#[derive(Debug, Default, Clone)]
pub struct RootScan {
    /// Everything the live roots pin.
    pub keep: KeepSet,
    /// Lockfiles that exist.
    pub live: Vec<PathBuf>,
    /// `(root file, lockfile)` of roots whose lockfile is gone.
    pub stale: Vec<(PathBuf, PathBuf)>,
}

/// What a collection removed (or would remove, for a dry run).
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub dry_run: bool,
    pub roots: Vec<PathBuf>,
    /// Roots whose lockfile no longer exists; they are unregistered.
    pub stale_roots: Vec<PathBuf>,
    pub blobs_removed: usize,
    pub outputs_removed: usize,
    pub temp_removed: usize,
    /// Build logs of recipes whose outputs are not kept.
    pub logs_removed: usize,
    pub bytes_freed: u64,
    pub blobs_kept: usize,
}

fn size_of(path: &Path) -> u64 {
    if path.is_dir() {
        walk_size(path)
    } else {
        fs::symlink_metadata(path).map_or(0, |m| m.len())
    }
}

fn walk_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| size_of(&e.path()))
        .sum()
}

fn remove(path: &Path) -> Result<()> {
    let r = if path.is_dir() && !path.is_symlink() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(path),
        _ => Ok(()),
    }
}

impl Store {
    /// The keep set of every registered root. A root whose lockfile cannot be parsed keeps
    /// the collection from running (it might pin things we cannot see); a root whose
    /// lockfile is gone is stale.
    pub fn scan_roots(&self) -> Result<RootScan> {
        let mut keep = KeepSet::default();
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for (root_file, lockfile) in self.roots()? {
            match fs::read_to_string(&lockfile) {
                Ok(text) => {
                    let file = SourceFile::new(lockfile.display().to_string(), text);
                    let lock = Lockfile::parse(&file).map_err(|e| StoreError::Root {
                        lockfile: lockfile.clone(),
                        reason: e.to_string(),
                    })?;
                    keep.add_lockfile(&lock);
                    live.push(lockfile);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    stale.push((root_file, lockfile));
                }
                Err(e) => {
                    return Err(StoreError::Root {
                        lockfile,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(RootScan { keep, live, stale })
    }

    /// Deletes unreferenced blobs, output records, stale roots, temp files and lock files.
    /// Needs [`Store::open_exclusive`], so no other forge process is using the store.
    pub fn gc(&self, keep: &KeepSet, dry_run: bool) -> Result<GcReport> {
        let mut report = GcReport {
            dry_run,
            ..GcReport::default()
        };
        let mut doomed: Vec<PathBuf> = Vec::new();

        let out_dir = self.root.join("outputs");
        let mut kept_layers = BTreeSet::new();
        for entry in fs::read_dir(&out_dir).at(&out_dir)? {
            let path = entry.at(&out_dir)?.path();
            let name = path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let parsed = fs::read(&path)
                .ok()
                .and_then(|b| crate::parse_record_file(&name, &b).ok());
            match parsed {
                Some((key, blobs)) if keep.outputs.contains(&key) => {
                    kept_layers.extend(blobs);
                }
                _ => {
                    report.outputs_removed += 1;
                    doomed.push(path);
                }
            }
        }

        let blob_dir = self.root.join("blobs/sha256");
        for entry in fs::read_dir(&blob_dir).at(&blob_dir)? {
            let path = entry.at(&blob_dir)?.path();
            let digest = path
                .file_name()
                .and_then(|s| s.to_string_lossy().parse::<Sha256Digest>().ok());
            match digest {
                Some(d) if keep.blobs.contains(&d) || kept_layers.contains(&d) => {
                    report.blobs_kept += 1;
                }
                _ => {
                    report.blobs_removed += 1;
                    report.bytes_freed += size_of(&path);
                    doomed.push(path);
                }
            }
        }

        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).at(&tmp)? {
            let path = entry.at(&tmp)?.path();
            report.temp_removed += 1;
            report.bytes_freed += size_of(&path);
            doomed.push(path);
        }
        let locks = self.root.join("locks");
        for entry in fs::read_dir(&locks).at(&locks)? {
            doomed.push(entry.at(&locks)?.path());
        }
        // Build logs (`<recipe hash>.stepN.log`) go with their recipe's output.
        let logs = self.root.join("logs");
        if logs.is_dir() {
            for entry in fs::read_dir(&logs).at(&logs)? {
                let path = entry.at(&logs)?.path();
                let recipe = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.split('.').next())
                    .and_then(|h| h.parse::<Sha256Digest>().ok());
                if !recipe.is_some_and(|h| keep.outputs.contains(&h)) {
                    report.logs_removed += 1;
                    report.bytes_freed += size_of(&path);
                    doomed.push(path);
                }
            }
        }

        if !dry_run {
            for p in &doomed {
                remove(p)?;
            }
        }
        Ok(report)
    }

    /// Unregisters roots whose lockfile is gone.
    pub fn remove_roots(&self, root_files: &[PathBuf]) -> Result<()> {
        for r in root_files {
            remove(r)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_what_roots_pin() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_exclusive(&dir.path().join("store"), &|_| {}).unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"keep").unwrap();
        let keep_d = Sha256Digest::of(b"keep");
        store.add_file(&f, &keep_d).unwrap();
        fs::write(&f, b"drop me").unwrap();
        let drop_d = Sha256Digest::of(b"drop me");
        store.add_file(&f, &drop_d).unwrap();
        let mut keep = KeepSet::default();
        keep.blobs.insert(keep_d);

        let dry = store.gc(&keep, true).unwrap();
        assert_eq!(dry.blobs_removed, 1);
        assert_eq!(dry.bytes_freed, 7);
        assert!(store.has_blob(&drop_d));

        let real = store.gc(&keep, false).unwrap();
        assert_eq!(real.bytes_freed, 7);
        assert!(!store.has_blob(&drop_d));
        assert!(store.has_blob(&keep_d));
    }
}
