//! `forge store verify [--repair]`: re-hash every blob, check every output record.

use std::fs;
use std::path::PathBuf;

use forge_schema::Sha256Digest;

use crate::{IoContext, Result, Store, fsutil};

/// One damaged entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A blob whose content no longer matches its name.
    CorruptBlob { path: PathBuf, actual: Sha256Digest },
    /// A blob that cannot be read.
    UnreadableBlob { path: PathBuf, error: String },
    /// A file in `blobs/sha256` whose name is not a digest.
    StrayFile { path: PathBuf },
    /// An output record that cannot be parsed or names another hash.
    BadOutput { path: PathBuf, reason: String },
    /// An output record whose blob (layer, image, base) is missing or corrupt.
    OutputWithoutLayer { path: PathBuf, layer: Sha256Digest },
}

impl Problem {
    pub fn path(&self) -> &std::path::Path {
        match self {
            Problem::CorruptBlob { path, .. }
            | Problem::UnreadableBlob { path, .. }
            | Problem::StrayFile { path }
            | Problem::BadOutput { path, .. }
            | Problem::OutputWithoutLayer { path, .. } => path,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::CorruptBlob { path, actual } => write!(
                f,
                "corrupt blob `{}`: its content hashes to {actual}",
                path.display()
            ),
            Problem::UnreadableBlob { path, error } => {
                write!(f, "unreadable blob `{}`: {error}", path.display())
            }
            Problem::StrayFile { path } => {
                write!(f, "stray file `{}` (not named by a sha256)", path.display())
            }
            Problem::BadOutput { path, reason } => {
                write!(f, "damaged output record `{}`: {reason}", path.display())
            }
            Problem::OutputWithoutLayer { path, layer } => write!(
                f,
                "output record `{}` points to blob {layer}, which is missing or corrupt",
                path.display()
            ),
        }
    }
}

/// What `verify` found (and, with repair, removed).
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    pub outputs_checked: usize,
    pub problems: Vec<Problem>,
    /// Leftovers of interrupted processes in `tmp/`; harmless, removed by `forge gc`.
    pub temp_entries: usize,
    pub repaired: bool,
}

impl Store {
    /// Re-hashes every blob and checks every output record. With `repair` (which needs
    /// [`Store::open_exclusive`]) damaged entries are deleted, so the next build fetches
    /// or rebuilds them.
    pub fn verify(&self, repair: bool, on_blob: &(dyn Fn(u64) + Sync)) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let blob_dir = self.root.join("blobs/sha256");
        let mut blobs = Vec::new();
        for entry in fs::read_dir(&blob_dir).at(&blob_dir)? {
            let entry = entry.at(&blob_dir)?;
            let path = entry.path();
            match entry.file_name().to_string_lossy().parse::<Sha256Digest>() {
                Ok(d) => blobs.push((d, path)),
                Err(_) => report.problems.push(Problem::StrayFile { path }),
            }
        }
        blobs.sort();
        report.blobs_checked = blobs.len();

        // Hash blobs on every core: verifying a large store is I/O and SHA bound.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let results: Vec<(Option<Problem>, u64)> = std::thread::scope(|s| {
            let chunks: Vec<_> = blobs
                .chunks(blobs.len().div_ceil(threads).max(1))
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|(d, p)| match fsutil::hash_file(p) {
                                Ok((actual, n)) => {
                                    on_blob(n);
                                    let problem = (actual != *d).then(|| Problem::CorruptBlob {
                                        path: p.clone(),
                                        actual,
                                    });
                                    (problem, n)
                                }
                                Err(e) => (
                                    Some(Problem::UnreadableBlob {
                                        path: p.clone(),
                                        error: e.to_string(),
                                    }),
                                    0,
                                ),
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            chunks
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut bad_blobs = std::collections::BTreeSet::new();
        for (problem, n) in results {
            report.bytes_checked += n;
            if let Some(p) = problem {
                bad_blobs.insert(p.path().to_path_buf());
                report.problems.push(p);
            }
        }

        let out_dir = self.root.join("outputs");
        let mut outputs: Vec<_> = fs::read_dir(&out_dir)
            .at(&out_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        outputs.sort();
        for path in outputs {
            report.outputs_checked += 1;
            let name = path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| crate::parse_record_file(&name, &b));
            match parsed {
                Err(reason) => report.problems.push(Problem::BadOutput { path, reason }),
                Ok((_, blobs)) => {
                    if let Some(missing) = blobs.into_iter().find(|b| {
                        let p = self.blob_path(b);
                        !p.is_file() || bad_blobs.contains(&p)
                    }) {
                        report.problems.push(Problem::OutputWithoutLayer {
                            path,
                            layer: missing,
                        });
                    }
                }
            }
        }

        let tmp = self.root.join("tmp");
        report.temp_entries = fs::read_dir(&tmp).at(&tmp)?.count();

        if repair && !report.problems.is_empty() {
            for p in &report.problems {
                let path = p.path();
                let removed = if path.is_dir() {
                    fs::remove_dir_all(path)
                } else {
                    fs::remove_file(path)
                };
                match removed {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).at(path),
                }
            }
            report.repaired = true;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_and_repairs_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_exclusive(dir.path(), &|_| {}).unwrap();
        let src = dir.path().join("f");
        fs::write(&src, b"good").unwrap();
        let d = Sha256Digest::of(b"good");
        let p = store.add_file(&src, &d).unwrap();
        let clean = store.verify(false, &|_| {}).unwrap();
        assert!(clean.problems.is_empty());
        assert_eq!(clean.blobs_checked, 1);

        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, b"evil").unwrap();
        let bad = store.verify(false, &|_| {}).unwrap();
        assert_eq!(bad.problems.len(), 1);
        assert!(p.exists());
        let fixed = store.verify(true, &|_| {}).unwrap();
        assert!(fixed.repaired);
        assert!(!p.exists());
        assert!(store.verify(false, &|_| {}).unwrap().problems.is_empty());
    }
}
