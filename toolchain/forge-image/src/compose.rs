//! The root file system as one tar: the installed base, then each layer in order, then
//! the image settings.
//!
//! Entries of the base keep their order and their exact bytes (hard links, extended
//! attributes and long-name headers from the installer stay as they are); an entry that a
//! layer or a setting replaces is written in its place; new entries follow, sorted by path
//! (so parents come before children). Layer paths are resolved through the base's
//! directory symlinks (`lib` → `usr/lib` on merged-/usr systems). A layer directory with
//! the default attributes (0755 root:root, what layers use for implicit parents) leaves an
//! existing directory as it is; one with other attributes replaces them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use forge_layer::{FileData, Kind as NodeKind, Node, TarWriter};
use forge_schema::Sha256Digest;

use crate::ImageError;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(String),
    Hardlink(String),
    Other(char),
}

/// One entry of the composed tree.
#[derive(Debug, Clone)]
pub struct Item {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    /// The whole record, verbatim, from `files[file]`; `data` is where the content is.
    Raw {
        file: usize,
        record: (u64, u64),
        data: (u64, u64),
    },
    /// Written by forge's tar writer.
    Node(Node),
}

/// Normalised key of an archive path: no `./`, no leading or trailing `/`.
pub fn key_of(name: &str) -> String {
    let trimmed = name.trim_start_matches("./").trim_start_matches('/');
    let mut parts = Vec::new();
    for p in trimmed.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// An entry as listed from a tar file.
#[derive(Debug, Clone)]
struct Listed {
    key: String,
    item: Item,
}

fn list_tar(path: &Path, file_index: usize) -> Result<Vec<Listed>, ImageError> {
    let io_err = |source: io::Error| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(io_err)?;
    let mut archive = tar::Archive::new(io::BufReader::with_capacity(1 << 20, f));
    let mut out = Vec::new();
    let mut prev_end = 0u64;
    for entry in archive.entries().map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let h = entry.header();
        let link = entry
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let kind = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink(link.unwrap_or_default()),
            tar::EntryType::Link => Kind::Hardlink(key_of(&link.unwrap_or_default())),
            other => Kind::Other(other.as_byte() as char),
        };
        let data_start = entry.raw_file_position();
        let size = entry.size();
        let end = data_start + size.div_ceil(512) * 512;
        out.push(Listed {
            key: key_of(&name),
            item: Item {
                kind,
                mode: h.mode().unwrap_or(0o644) & 0o7777,
                uid: h.uid().unwrap_or(0),
                gid: h.gid().unwrap_or(0),
                source: Source::Raw {
                    file: file_index,
                    record: (prev_end, end),
                    data: (data_start, size),
                },
            },
        });
        prev_end = end;
    }
    Ok(out)
}

/// The root file system being composed.
#[derive(Debug, Default)]
pub struct Rootfs {
    files: Vec<PathBuf>,
    items: BTreeMap<String, Item>,
    /// Keys of the base in their original order.
    base_order: Vec<String>,
    base_keys: BTreeSet<String>,
    mtime: u64,
}

fn default_dir(node: &Item) -> bool {
    node.kind == Kind::Dir && node.mode == 0o755 && node.uid == 0 && node.gid == 0
}

impl Rootfs {
    /// Starts from the installed base (an uncompressed tar on disk).
    pub fn from_base(base_tar: &Path, source_date_epoch: u64) -> Result<Self, ImageError> {
        let listed = list_tar(base_tar, 0)?;
        let mut r = Rootfs {
            files: vec![base_tar.to_path_buf()],
            mtime: source_date_epoch,
            ..Rootfs::default()
        };
        for l in listed {
            if r.items.insert(l.key.clone(), l.item).is_none() {
                r.base_order.push(l.key.clone());
            }
            r.base_keys.insert(l.key);
        }
        Ok(r)
    }

    pub fn get(&self, key: &str) -> Option<&Item> {
        self.items.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.items.keys()
    }

    /// Follows directory symlinks in the parents of `key` (not the last component).
    pub fn resolve(&self, key: &str) -> String {
        let mut current = key.to_string();
        for _ in 0..40 {
            let parts: Vec<&str> = current.split('/').collect();
            let mut changed = None;
            for i in 1..parts.len() {
                let prefix = parts[..i].join("/");
                if let Some(Item {
                    kind: Kind::Symlink(target),
                    ..
                }) = self.items.get(&prefix)
                {
                    let base = if target.starts_with('/') {
                        String::new()
                    } else {
                        parts[..i - 1].join("/")
                    };
                    let rest = parts[i..].join("/");
                    changed = Some(key_of(&format!("{base}/{target}/{rest}")));
                    break;
                }
            }
            match changed {
                Some(c) => current = c,
                None => return current,
            }
        }
        current
    }

    /// The content of a regular file.
    pub fn read(&self, key: &str) -> Result<Vec<u8>, ImageError> {
        let item = self.items.get(key).ok_or_else(|| {
            ImageError::Compose(format!("`/{key}` is not in the root file system"))
        })?;
        match &item.source {
            Source::Raw { file, data, .. } => {
                let path = &self.files[*file];
                FileData::Slice {
                    path: path.clone(),
                    offset: data.0,
                    size: data.1,
                }
                .read()
                .map_err(|source| ImageError::Io {
                    path: path.clone(),
                    source,
                })
            }
            Source::Node(Node {
                kind: NodeKind::File(d),
                ..
            }) => d.read().map_err(|source| ImageError::Io {
                path: PathBuf::from(key),
                source,
            }),
            Source::Node(_) => Err(ImageError::Compose(format!("`/{key}` is not a file"))),
        }
    }

    fn insert(&mut self, key: String, item: Item, origin: &str) -> Result<(), ImageError> {
        if let Some(existing) = self.items.get(&key) {
            match (&existing.kind, &item.kind) {
                // A directory with default attributes leaves the existing one as it is.
                (Kind::Dir, Kind::Dir) if default_dir(&item) => return Ok(()),
                (Kind::Dir, Kind::Dir) => {}
                (Kind::Dir, _) => {
                    return Err(ImageError::Compose(format!(
                        "{origin} replaces the directory `/{key}` with a file or link"
                    )));
                }
                (_, Kind::Dir) if !matches!(existing.kind, Kind::Symlink(_)) => {
                    return Err(ImageError::Compose(format!(
                        "{origin} makes `/{key}` a directory, but it is a file"
                    )));
                }
                _ => {}
            }
        }
        self.items.insert(key, item);
        Ok(())
    }

    /// Applies a layer (an uncompressed tar on disk, decompressed from the store).
    pub fn add_layer(&mut self, layer_tar: &Path, name: &str) -> Result<(), ImageError> {
        let index = self.files.len();
        self.files.push(layer_tar.to_path_buf());
        let origin = format!("layer `{name}`");
        for l in list_tar(layer_tar, index)? {
            if l.key.is_empty() {
                continue;
            }
            let mut key = self.resolve(&l.key);
            // A directory where the base has a symlink (to a directory) means the target.
            if l.item.kind == Kind::Dir
                && let Some(Item {
                    kind: Kind::Symlink(_),
                    ..
                }) = self.items.get(&key)
            {
                key = self.resolve(&format!("{key}/x"));
                key.truncate(key.len().saturating_sub(2));
            }
            let item = if key == l.key {
                l.item
            } else {
                // Moved by a directory symlink: re-encode under the resolved name.
                let Source::Raw { data, .. } = l.item.source else {
                    continue;
                };
                let kind = match &l.item.kind {
                    Kind::File => NodeKind::File(FileData::Slice {
                        path: layer_tar.to_path_buf(),
                        offset: data.0,
                        size: data.1,
                    }),
                    Kind::Dir => NodeKind::Dir,
                    Kind::Symlink(t) => NodeKind::Symlink(t.clone()),
                    other => {
                        return Err(ImageError::Compose(format!(
                            "{origin}: unsupported entry type {other:?} at `/{}`",
                            l.key
                        )));
                    }
                };
                Item {
                    source: Source::Node(Node {
                        kind,
                        mode: l.item.mode,
                        uid: u32::try_from(l.item.uid).unwrap_or(0),
                        gid: u32::try_from(l.item.gid).unwrap_or(0),
                    }),
                    ..l.item
                }
            };
            self.insert(key, item, &origin)?;
        }
        Ok(())
    }

    /// Adds or replaces an entry made by forge (settings).
    pub fn put(&mut self, key: &str, node: Node) -> Result<(), ImageError> {
        let key = self.resolve(&key_of(key));
        let kind = match &node.kind {
            NodeKind::File(_) => Kind::File,
            NodeKind::Dir => Kind::Dir,
            NodeKind::Symlink(t) => Kind::Symlink(t.clone()),
        };
        // Parents that do not exist yet.
        let mut parent = String::new();
        for part in key
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            parent = if parent.is_empty() {
                (*part).to_string()
            } else {
                format!("{parent}/{part}")
            };
            if !self.items.contains_key(&parent) {
                self.items.insert(
                    parent.clone(),
                    Item {
                        kind: Kind::Dir,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        source: Source::Node(Node::dir(0o755, 0, 0)),
                    },
                );
            }
        }
        let item = Item {
            kind,
            mode: node.mode,
            uid: u64::from(node.uid),
            gid: u64::from(node.gid),
            source: Source::Node(node),
        };
        self.items.insert(key, item);
        Ok(())
    }

    /// A small file owned by root.
    pub fn put_file(
        &mut self,
        key: &str,
        content: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Result<(), ImageError> {
        let bytes: Vec<u8> = content.into();
        self.put(
            key,
            Node {
                kind: NodeKind::File(FileData::Inline(Arc::from(bytes))),
                mode,
                uid: 0,
                gid: 0,
            },
        )
    }

    pub fn put_symlink(&mut self, key: &str, target: &str) -> Result<(), ImageError> {
        self.put(
            key,
            Node {
                kind: NodeKind::Symlink(target.to_string()),
                mode: 0o777,
                uid: 0,
                gid: 0,
            },
        )
    }

    /// Removes entries whose key satisfies `pred` (not directories that still have
    /// children).
    pub fn remove_where(&mut self, pred: impl Fn(&str) -> bool) -> usize {
        let doomed: Vec<String> = self
            .items
            .iter()
            .filter(|(k, i)| pred(k) && i.kind != Kind::Dir)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            self.items.remove(k);
        }
        doomed.len()
    }

    /// Writes the composed tree as one tar to `out`; returns its SHA-256 and size.
    pub fn write(&self, out: impl Write) -> Result<(Sha256Digest, u64), ImageError> {
        // A hard link must still point at the same base entry it pointed at.
        for (key, item) in &self.items {
            if let Kind::Hardlink(target) = &item.kind {
                let intact = matches!(
                    self.items.get(target).map(|t| &t.source),
                    Some(Source::Raw { file: 0, .. })
                );
                if !intact {
                    return Err(ImageError::Compose(format!(
                        "`/{key}` is a hard link to `/{target}`, which a layer or setting replaced or removed"
                    )));
                }
            }
        }
        let mut files: Vec<Option<File>> = self.files.iter().map(|_| None).collect();
        let mut w = TarWriter::new(out, self.mtime);
        let layer_err = |e: forge_layer::LayerError| ImageError::Compose(e.to_string());
        let new_keys: Vec<&String> = self
            .items
            .keys()
            .filter(|k| !self.base_keys.contains(*k))
            .collect();
        for key in self.base_order.iter().chain(new_keys) {
            let Some(item) = self.items.get(key) else {
                continue;
            };
            match &item.source {
                Source::Raw { file, record, .. } => {
                    let path = &self.files[*file];
                    let io_err = |source| ImageError::Io {
                        path: path.clone(),
                        source,
                    };
                    let f = match &mut files[*file] {
                        Some(f) => f,
                        slot => slot.insert(File::open(path).map_err(io_err)?),
                    };
                    f.seek(SeekFrom::Start(record.0)).map_err(io_err)?;
                    w.raw(Read::by_ref(f), record.1 - record.0)
                        .map_err(layer_err)?;
                }
                Source::Node(node) => {
                    let name = if key.is_empty() {
                        ".".to_string()
                    } else {
                        format!("./{key}")
                    };
                    w.add(&name, node).map_err(layer_err)?;
                }
            }
        }
        let (_, sha, size) = w.finish().map_err(layer_err)?;
        Ok((sha, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &str, &[u8], u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link, data, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            h.set_mtime(0);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn overlay_follows_merged_usr_and_keeps_base_order() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.tar");
        std::fs::write(
            &base,
            tar_with(&[
                ("./", tar::EntryType::Directory, "", b"", 0o755),
                ("./usr/", tar::EntryType::Directory, "", b"", 0o755),
                ("./usr/lib/", tar::EntryType::Directory, "", b"", 0o755),
                ("./lib", tar::EntryType::Symlink, "usr/lib", b"", 0o777),
                ("./usr/lib/zz", tar::EntryType::Regular, "", b"zz", 0o644),
                (
                    "./usr/lib/aa",
                    tar::EntryType::Link,
                    "./usr/lib/zz",
                    b"",
                    0o644,
                ),
                ("./etc/", tar::EntryType::Directory, "", b"", 0o755),
                (
                    "./etc/ssh_host_key",
                    tar::EntryType::Regular,
                    "",
                    b"secret",
                    0o600,
                ),
            ]),
        )
        .unwrap();
        let layer = dir.path().join("layer.tar");
        std::fs::write(
            &layer,
            tar_with(&[
                ("lib/", tar::EntryType::Directory, "", b"", 0o755),
                ("lib/systemd/", tar::EntryType::Directory, "", b"", 0o755),
                (
                    "lib/systemd/x.service",
                    tar::EntryType::Regular,
                    "",
                    b"[Unit]\n",
                    0o644,
                ),
                ("etc/", tar::EntryType::Directory, "", b"", 0o700),
            ]),
        )
        .unwrap();
        let mut r = Rootfs::from_base(&base, 0).unwrap();
        r.add_layer(&layer, "l").unwrap();
        assert!(r.get("usr/lib/systemd/x.service").is_some());
        assert_eq!(r.read("usr/lib/systemd/x.service").unwrap(), b"[Unit]\n");
        assert_eq!(
            r.get("etc").unwrap().mode,
            0o700,
            "a non-default directory replaces"
        );
        assert_eq!(r.remove_where(|k| k.contains("ssh_host")), 1);
        r.put_file("/etc/hostname", "h\n", 0o644).unwrap();
        let mut out = Vec::new();
        r.write(&mut out).unwrap();
        let mut names = Vec::new();
        let mut a = tar::Archive::new(&out[..]);
        for e in a.entries().unwrap() {
            names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
        }
        // The hard link still follows its target, as in the base.
        let zz = names
            .iter()
            .position(|n| n.ends_with("usr/lib/zz"))
            .unwrap();
        let aa = names
            .iter()
            .position(|n| n.ends_with("usr/lib/aa"))
            .unwrap();
        assert!(zz < aa, "{names:?}");
        // New entries come after the base, sorted, parents first.
        assert_eq!(
            &names[names.len() - 3..],
            [
                "etc/hostname",
                "usr/lib/systemd/",
                "usr/lib/systemd/x.service"
            ]
        );
        assert!(!names.iter().any(|n| n.contains("ssh_host")));
    }

    #[test]
    fn replacing_a_hardlink_target_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.tar");
        std::fs::write(
            &base,
            tar_with(&[
                ("./a", tar::EntryType::Regular, "", b"a", 0o644),
                ("./b", tar::EntryType::Link, "./a", b"", 0o644),
            ]),
        )
        .unwrap();
        let mut r = Rootfs::from_base(&base, 0).unwrap();
        r.put_file("/a", "other", 0o644).unwrap();
        assert!(r.write(Vec::new()).is_err());
    }
}
