//! Layers: the output of a recipe, a deterministic tar compressed with zstd.
//!
//! A [`LayerTree`] is the set of entries a recipe's steps produce. [`LayerTree::pack`]
//! writes it so the bytes depend only on the entries and the SOURCE_DATE_EPOCH:
//! - entries sorted by path (bytewise), every parent directory present;
//! - ustar headers: mtime = SOURCE_DATE_EPOCH, numeric uid/gid as declared (else 0), empty
//!   user/group names, modes normalised by the caller, no atime/ctime/xattrs;
//! - names or link targets too long for ustar, and out-of-range ids or sizes, go into a PAX
//!   extended header whose own name, mode and time are fixed;
//! - zstd level 3, one frame per [`FRAME_SIZE`] piece of the tar stream: frame boundaries
//!   depend only on the stream, so `-j 1` and `-j 64` give the same bytes (tested below)
//!   while every core compresses. (libzstd's own multithreaded mode also promises this,
//!   but only for its streaming API and only for one or more workers; independent frames
//!   make it true by construction.)
//!
//! The header writer is ours (the `tar` crate only encodes fixed fields) because the `tar`
//! crate's builder uses GNU long-name entries and copies metadata from the filesystem,
//! and neither is under our control for determinism.

pub mod diff;
mod directory;

pub use directory::{directory_digest, directory_tree};

mod encode;
mod frames;

use encode::*;
use frames::pack_stream;
pub use frames::{FRAME_SIZE, HashingWriter, TarWriter, compress};

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use forge_schema::Sha256Digest;
use forge_schema::paths::ImagePath;

/// zstd level of every layer. Changing it changes every layer: bump
/// `forge_schema::hash::BUILDER_VERSION` with it.
pub const ZSTD_LEVEL: i32 = 3;

/// The bytes of a file entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileData {
    Inline(Arc<[u8]>),
    /// A host file read at pack time; its size must not change in between.
    Host {
        path: PathBuf,
        size: u64,
    },
    /// `size` bytes at `offset` of a host file (an entry of another archive).
    Slice {
        path: PathBuf,
        offset: u64,
        size: u64,
    },
}

impl FileData {
    pub fn len(&self) -> u64 {
        match self {
            FileData::Inline(b) => b.len() as u64,
            FileData::Host { size, .. } | FileData::Slice { size, .. } => *size,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All the bytes.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        use std::io::Seek;
        match self {
            FileData::Inline(b) => Ok(b.to_vec()),
            FileData::Host { path, .. } => std::fs::read(path),
            FileData::Slice { path, offset, size } => {
                let mut f = File::open(path)?;
                f.seek(io::SeekFrom::Start(*offset))?;
                let mut out = Vec::new();
                f.take(*size).read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(FileData),
    Dir,
    Symlink(String),
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Node {
    pub fn dir(mode: u32, uid: u32, gid: u32) -> Self {
        Self {
            kind: Kind::Dir,
            mode,
            uid,
            gid,
        }
    }
}

/// Layer errors.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("`{path}` is produced twice: {first} and {second}")]
    Conflict {
        path: String,
        first: String,
        second: String,
    },
    #[error(
        "`{path}` must be a directory because `{child}` is inside it, but a step made it a {kind}"
    )]
    NotADirectory {
        path: String,
        child: String,
        kind: &'static str,
    },
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{}` changed size while the layer was being written", path.display())]
    Changed { path: PathBuf },
    #[error("`{}` is a {kind}, which a layer cannot hold", path.display())]
    Special { path: PathBuf, kind: &'static str },
    #[error("cannot write the layer: {0}")]
    Write(#[source] io::Error),
    #[error("invalid path in tree: {0}")]
    Path(String),
}

/// The entries of a layer, keyed by path without leading slash, plus who produced each
/// (for conflict messages).
#[derive(Debug, Clone, Default)]
pub struct LayerTree {
    entries: BTreeMap<String, (Node, String)>,
}

/// What [`LayerTree::pack`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackResult {
    /// SHA-256 of the compressed bytes (the layer's identity).
    pub layer_sha256: Sha256Digest,
    /// SHA-256 of the uncompressed tar.
    pub content_sha256: Sha256Digest,
    pub layer_size: u64,
    pub content_size: u64,
    pub entries: u64,
}

fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::File(_) => "file",
        Kind::Dir => "directory",
        Kind::Symlink(_) => "symlink",
    }
}

impl LayerTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, path: &ImagePath) -> Option<&Node> {
        self.entries.get(path.relative()).map(|(n, _)| n)
    }

    /// Adds an entry. The same path twice is a conflict, except a directory declared twice
    /// with the same attributes.
    pub fn insert(&mut self, path: &ImagePath, node: Node, origin: &str) -> Result<(), LayerError> {
        match self.entries.get(path.relative()) {
            Some((existing, _)) if existing == &node && node.kind == Kind::Dir => Ok(()),
            Some((_, first)) => Err(LayerError::Conflict {
                path: path.to_string(),
                first: first.clone(),
                second: origin.to_string(),
            }),
            None => {
                self.entries
                    .insert(path.relative().to_string(), (node, origin.to_string()));
                Ok(())
            }
        }
    }

    /// Adds everything under host directory `dir` below `dest` (at the top of the layer when
    /// `None`), without following symlinks.
    /// Modes are normalised: directories 0755, files 0755 if any execute bit is set else
    /// 0644, symlinks 0777. Owners are `uid`/`gid`.
    pub fn add_host_tree(
        &mut self,
        dir: &Path,
        dest: Option<&ImagePath>,
        uid: u32,
        gid: u32,
        origin: &str,
    ) -> Result<(), LayerError> {
        let walker = walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
            .min_depth(1);
        for entry in walker {
            let entry = entry.map_err(|e| LayerError::Read {
                path: e
                    .path()
                    .map_or_else(|| dir.to_path_buf(), Path::to_path_buf),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("walk error")),
            })?;
            let rel = entry
                .path()
                .strip_prefix(dir)
                .map_err(|e| LayerError::Path(e.to_string()))?;
            let rel = rel
                .to_str()
                .ok_or_else(|| LayerError::Path(format!("`{}` is not UTF-8", rel.display())))?;
            let path = match dest {
                Some(d) => d.join(rel),
                None => ImagePath::from_relative(rel),
            }
            .map_err(|e| LayerError::Path(e.to_string()))?;
            let meta = entry
                .path()
                .symlink_metadata()
                .map_err(|source| LayerError::Read {
                    path: entry.path().to_path_buf(),
                    source,
                })?;
            let ft = meta.file_type();
            let node = if ft.is_dir() {
                Node::dir(0o755, uid, gid)
            } else if ft.is_symlink() {
                let target =
                    std::fs::read_link(entry.path()).map_err(|source| LayerError::Read {
                        path: entry.path().to_path_buf(),
                        source,
                    })?;
                Node {
                    kind: Kind::Symlink(target.to_string_lossy().into_owned()),
                    mode: 0o777,
                    uid,
                    gid,
                }
            } else if ft.is_file() {
                let exec = meta.permissions().mode() & 0o111 != 0;
                Node {
                    kind: Kind::File(FileData::Host {
                        path: entry.path().to_path_buf(),
                        size: meta.len(),
                    }),
                    mode: if exec { 0o755 } else { 0o644 },
                    uid,
                    gid,
                }
            } else {
                return Err(LayerError::Special {
                    path: entry.path().to_path_buf(),
                    kind: "device, fifo or socket",
                });
            };
            self.insert(&path, node, origin)?;
        }
        Ok(())
    }

    /// Fills in missing parent directories (0755, root-owned) and checks every parent is a
    /// directory.
    fn complete(&self) -> Result<Vec<(String, Node)>, LayerError> {
        let mut all: BTreeMap<String, Node> = BTreeMap::new();
        for (path, (node, _)) in &self.entries {
            let mut end = 0;
            while let Some(i) = path[end..].find('/') {
                let parent = &path[..end + i];
                end += i + 1;
                match self.entries.get(parent) {
                    Some((n, _)) if n.kind != Kind::Dir => {
                        return Err(LayerError::NotADirectory {
                            path: format!("/{parent}"),
                            child: format!("/{path}"),
                            kind: kind_name(&n.kind),
                        });
                    }
                    Some(_) => {}
                    None => {
                        all.entry(parent.to_string())
                            .or_insert_with(|| Node::dir(0o755, 0, 0));
                    }
                }
            }
            all.insert(path.clone(), node.clone());
        }
        Ok(all.into_iter().collect())
    }

    /// Writes the uncompressed tar to `out` (not flushed); returns its SHA-256, size and
    /// entry count.
    pub fn write_tar(
        &self,
        out: impl Write,
        source_date_epoch: u64,
    ) -> Result<(Sha256Digest, u64, u64), LayerError> {
        let mut tar = HashingWriter::new(out);
        let entries = self.write_entries(&mut tar, source_date_epoch)?;
        let (_, sha, size) = tar.finish();
        Ok((sha, size, entries))
    }

    /// The tar stream itself; returns the number of entries.
    fn write_entries(
        &self,
        mut w: impl TarSink,
        source_date_epoch: u64,
    ) -> Result<u64, LayerError> {
        let entries = self.complete()?;
        let mut buf = vec![0u8; 1 << 20];
        for (path, node) in &entries {
            write_entry(&mut w, path, node, source_date_epoch, &mut buf)?;
        }
        // End of archive: two zero blocks. No flush: flushing a zstd stream ends a block and
        // would change the layer.
        w.write_all(&[0u8; 1024]).map_err(LayerError::Write)?;
        Ok(entries.len() as u64)
    }

    /// Writes the layer (`.tar.zst`) to `out` using `workers` compression threads; the
    /// bytes do not depend on `workers`.
    ///
    /// The tar stream is cut at fixed offsets into [`FRAME_SIZE`] pieces, and each piece
    /// becomes one zstd frame (a sequence of frames is a valid zstd stream: `zstd -d`,
    /// `tar --zstd` and every library read it). Because frame boundaries depend only on the
    /// stream, any number of threads gives the same bytes. The stages overlap: this thread
    /// reads files into pieces, one thread hashes the uncompressed stream, `workers`
    /// threads compress pieces, and one thread writes frames in order and hashes them.
    pub fn pack<W: Write + Send>(
        &self,
        out: W,
        source_date_epoch: u64,
        workers: u32,
    ) -> Result<PackResult, LayerError> {
        pack_stream(
            |sink| self.write_entries(sink, source_date_epoch),
            out,
            workers,
        )
    }
}

/// The packing pipeline of [`LayerTree::pack`], fed by `produce` (which writes a tar stream
/// into the sink and returns how many entries it wrote).
#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ImagePath {
        ImagePath::parse(s).unwrap()
    }

    fn file(content: &[u8], mode: u32) -> Node {
        Node {
            kind: Kind::File(FileData::Inline(content.into())),
            mode,
            uid: 0,
            gid: 0,
        }
    }

    fn sample() -> LayerTree {
        let mut t = LayerTree::new();
        t.insert(&p("/etc/hello.conf"), file(b"hi\n", 0o644), "a")
            .unwrap();
        let long = format!("/opt/{}/{}", "d".repeat(120), "f".repeat(150));
        t.insert(&p(&long), file(&vec![7u8; 70_000], 0o755), "a")
            .unwrap();
        t.insert(
            &p("/usr/bin/hello"),
            Node {
                kind: Kind::Symlink("../lib/hello/".to_string() + &"x".repeat(130)),
                mode: 0o777,
                uid: 0,
                gid: 0,
            },
            "a",
        )
        .unwrap();
        t.insert(
            &p("/var/lib/big-ids"),
            Node::dir(0o750, 4_000_000_000, 3),
            "a",
        )
        .unwrap();
        t
    }

    fn pack(t: &LayerTree, workers: u32) -> (Vec<u8>, PackResult) {
        let mut out = Vec::new();
        let r = t.pack(&mut out, 1_700_000_000, workers).unwrap();
        (out, r)
    }

    /// The layer encoding is part of every recipe hash through the builder version. If this
    /// fails, the bytes of layers changed: bump `BUILDER_VERSION` in
    /// `forge-schema/src/hash.rs` (so stale outputs in users' stores are never reused) and
    /// update the digest here.
    #[test]
    fn encoding_is_pinned_to_the_builder_version() {
        let (_, r) = pack(&sample(), 2);
        assert_eq!(
            (
                forge_schema::hash::BUILDER_VERSION,
                r.layer_sha256.to_hex().as_str()
            ),
            (
                "forge-layer-builder/2",
                "3572ccaf112fe7c5be66bb3eaf13ca9a040ba01403fb1cca5361cc1f680cba9e"
            ),
        );
    }

    #[test]
    fn same_bytes_for_any_worker_count() {
        let t = sample();
        let (a, ra) = pack(&t, 1);
        let (b, rb) = pack(&t, 2);
        let (c, _) = pack(&t, 7);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(ra, rb);
        assert_eq!(ra.layer_sha256, Sha256Digest::of(&a));
        assert_eq!(ra.layer_size, a.len() as u64);
    }

    #[test]
    fn many_frames_decode_to_the_tar_and_ignore_worker_count() {
        // 9 MiB of mixed content: three frames.
        let mut t = LayerTree::new();
        let mut x: u64 = 1;
        let noise: Vec<u8> = (0..(5 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        t.insert(&p("/a/noise"), file(&noise, 0o644), "t").unwrap();
        t.insert(&p("/b/zeros"), file(&vec![0u8; 4 << 20], 0o644), "t")
            .unwrap();
        let (one, r1) = pack(&t, 1);
        let (three, r3) = pack(&t, 3);
        assert_eq!(one, three);
        assert_eq!(r1, r3);
        let mut tar = Vec::new();
        let (sha, size, _) = t.write_tar(&mut tar, 1_700_000_000).unwrap();
        assert_eq!((sha, size), (r1.content_sha256, r1.content_size));
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), tar);
        // One frame per piece: count frame magic numbers at frame starts.
        let frames = tar.len().div_ceil(FRAME_SIZE);
        assert_eq!(frames, 3);
        let magic = [0x28, 0xb5, 0x2f, 0xfd];
        assert_eq!(&one[..4], &magic);
    }

    #[test]
    fn readable_by_tar_with_all_metadata() {
        let (bytes, r) = pack(&sample(), 2);
        let raw = zstd::decode_all(&bytes[..]).unwrap();
        assert_eq!(Sha256Digest::of(&raw), r.content_sha256);
        let mut ar = tar::Archive::new(&raw[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.mtime().unwrap(), 1_700_000_000);
            let path = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            if path == "var/lib/big-ids" {
                // Past the octal field, the id travels in a PAX record.
                assert_eq!(e.header().uid().unwrap(), 4_000_000_000);
            }
            seen.push((path, h.mode().unwrap()));
        }
        let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names[0], "etc");
        assert!(names.contains(&"etc/hello.conf"));
        assert!(
            names.iter().any(|n| n.ends_with(&"f".repeat(150))),
            "{names:?}"
        );
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn conflicts_and_parents() {
        let mut t = LayerTree::new();
        t.insert(&p("/a"), file(b"x", 0o644), "step 1").unwrap();
        let e = t.insert(&p("/a"), file(b"y", 0o644), "step 2").unwrap_err();
        assert!(e.to_string().contains("step 1 and step 2"), "{e}");
        t.insert(&p("/a/b"), file(b"x", 0o644), "step 3").unwrap();
        let e = pack_err(&t);
        assert!(e.contains("`/a` must be a directory"), "{e}");
        // Same directory twice is fine.
        let mut t = LayerTree::new();
        t.insert(&p("/d"), Node::dir(0o755, 0, 0), "1").unwrap();
        t.insert(&p("/d"), Node::dir(0o755, 0, 0), "2").unwrap();
    }

    fn pack_err(t: &LayerTree) -> String {
        t.pack(Vec::new(), 0, 1).unwrap_err().to_string()
    }

    #[test]
    fn pax_records_have_self_consistent_lengths() {
        for n in [0usize, 1, 5, 90, 94, 95, 96, 990, 995, 9990] {
            let rec = pax_record("path", &vec![b'a'; n]);
            let (len, _) = std::str::from_utf8(&rec).unwrap().split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), rec.len());
        }
    }
}
