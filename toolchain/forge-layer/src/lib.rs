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

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use forge_schema::paths::ImagePath;
use forge_schema::{Hasher, Sha256Digest};

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
fn pack_stream<W: Write + Send>(
    produce: impl FnOnce(&mut ChunkWriter) -> Result<u64, LayerError>,
    out: W,
    workers: u32,
) -> Result<PackResult, LayerError> {
    use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
    let workers = workers.max(1) as usize;
    std::thread::scope(|scope| {
        let (hash_tx, hash_rx) = sync_channel::<Arc<Vec<u8>>>(workers * 2);
        let (job_tx, job_rx) = sync_channel::<(u64, Arc<Vec<u8>>)>(workers * 2);
        let (done_tx, done_rx) = sync_channel::<(u64, Vec<u8>)>(workers * 2);
        let job_rx = Arc::new(std::sync::Mutex::new(job_rx));

        let hasher = scope.spawn(move || {
            let mut content = Hasher::new();
            for piece in hash_rx {
                content.update(&piece);
            }
            content
        });

        let mut compressors = Vec::new();
        for _ in 0..workers {
            let job_rx = job_rx.clone();
            let done_tx: SyncSender<(u64, Vec<u8>)> = done_tx.clone();
            compressors.push(scope.spawn(move || -> io::Result<()> {
                let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
                zstd.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return Ok(()),
                    };
                    let Ok((index, piece)) = job else {
                        return Ok(());
                    };
                    let frame = zstd.compress(&piece)?;
                    if done_tx.send((index, frame)).is_err() {
                        return Ok(());
                    }
                }
            }));
        }
        drop(done_tx);

        let writer = scope.spawn(move || -> io::Result<(W, Sha256Digest, u64)> {
            let done_rx: Receiver<(u64, Vec<u8>)> = done_rx;
            let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, out));
            let mut pending = BTreeMap::new();
            let mut next = 0u64;
            for (index, frame) in done_rx {
                pending.insert(index, frame);
                while let Some(frame) = pending.remove(&next) {
                    out.write_all(&frame)?;
                    next += 1;
                }
            }
            if !pending.is_empty() {
                return Err(io::Error::other("a compressed frame went missing"));
            }
            let (buffered, sha, len) = out.finish();
            let inner = buffered.into_inner().map_err(|e| e.into_error())?;
            Ok((inner, sha, len))
        });

        let produced = {
            let mut pieces = ChunkWriter {
                buf: Vec::with_capacity(FRAME_SIZE),
                next: 0,
                hash_tx,
                job_tx,
            };
            produce(&mut pieces)
                .and_then(|n| pieces.finish().map(|()| n).map_err(LayerError::Write))
        };
        let panicked =
            |what: &str| LayerError::Write(io::Error::other(format!("the {what} thread panicked")));
        // Report the cause of a failure, not the closed channels it left behind.
        for c in compressors {
            c.join()
                .map_err(|_| panicked("compression"))?
                .map_err(LayerError::Write)?;
        }
        let (mut inner, layer_sha256, layer_size) = writer
            .join()
            .map_err(|_| panicked("writer"))?
            .map_err(LayerError::Write)?;
        inner.flush().map_err(LayerError::Write)?;
        let entries = produced?;
        let content = hasher.join().map_err(|_| panicked("hashing"))?;
        let content_size = content.len();
        Ok(PackResult {
            layer_sha256,
            content_sha256: content.finish(),
            layer_size,
            content_size,
            entries,
        })
    })
}

/// Size of the uncompressed piece of tar stream in each zstd frame of a layer. Part of the
/// layer format: changing it changes every layer (bump the builder version with it).
pub const FRAME_SIZE: usize = 4 << 20;

/// Cuts the tar stream into [`FRAME_SIZE`] pieces for the hashing and compression threads.
struct ChunkWriter {
    buf: Vec<u8>,
    next: u64,
    hash_tx: std::sync::mpsc::SyncSender<Arc<Vec<u8>>>,
    job_tx: std::sync::mpsc::SyncSender<(u64, Arc<Vec<u8>>)>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Arc::new(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(FRAME_SIZE),
        ));
        let stopped = || io::Error::new(io::ErrorKind::BrokenPipe, "the compressor stopped");
        self.hash_tx.send(piece.clone()).map_err(|_| stopped())?;
        self.job_tx
            .send((self.next, piece))
            .map_err(|_| stopped())?;
        self.next += 1;
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.send()
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = FRAME_SIZE - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == FRAME_SIZE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes a tar stream entry by entry, with forge's deterministic headers, for callers
/// that assemble archives from several sources (the image stage's root file system).
pub struct TarWriter<W: Write> {
    out: HashingWriter<W>,
    buf: Vec<u8>,
    mtime: u64,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, mtime: u64) -> Self {
        Self {
            out: HashingWriter::new(out),
            buf: vec![0u8; 1 << 20],
            mtime,
        }
    }

    /// Adds an entry named `path` (as written in the archive, e.g. `./etc/hostname`).
    pub fn add(&mut self, path: &str, node: &Node) -> Result<(), LayerError> {
        write_entry(&mut self.out, path, node, self.mtime, &mut self.buf)
    }

    /// Copies bytes that are already a complete tar record (headers, data, padding).
    pub fn raw(&mut self, mut reader: impl Read, len: u64) -> Result<(), LayerError> {
        let n = io::copy(&mut (&mut reader).take(len), &mut self.out).map_err(LayerError::Write)?;
        if n != len {
            return Err(LayerError::Write(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a tar record ended early",
            )));
        }
        Ok(())
    }

    /// Ends the archive; returns the writer, the SHA-256 and the size of the tar.
    pub fn finish(mut self) -> Result<(W, Sha256Digest, u64), LayerError> {
        self.out
            .write_all(&[0u8; 1024])
            .map_err(LayerError::Write)?;
        let (mut w, sha, size) = self.out.finish();
        w.flush().map_err(LayerError::Write)?;
        Ok((w, sha, size))
    }
}

/// Compresses any stream into forge's layer format (see [`LayerTree::pack`]): used for
/// stored root file systems. `entries` in the result is 0.
pub fn compress<W: Write + Send>(
    mut input: impl Read,
    out: W,
    workers: u32,
) -> Result<PackResult, LayerError> {
    pack_stream(
        |sink| {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = input.read(&mut buf).map_err(|source| LayerError::Read {
                    path: PathBuf::from("(input stream)"),
                    source,
                })?;
                if n == 0 {
                    return Ok(0);
                }
                sink.write_all(&buf[..n]).map_err(LayerError::Write)?;
            }
        },
        out,
        workers,
    )
}

/// A writer that hashes and counts what passes through.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Hasher::new(),
        }
    }

    pub fn finish(self) -> (W, Sha256Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

const PAX_NAME: &str = "././@PaxHeader";
/// Largest value of an 8-byte octal field (7 digits + NUL).
const MAX_ID: u64 = 0o7777777;
/// Largest value of the 12-byte size field (11 digits + NUL).
const MAX_SIZE: u64 = 0o77777777777;

/// One PAX record: "<len> <key>=<value>\n", where <len> counts the whole record.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

fn header(
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid.min(MAX_ID));
    h.set_gid(gid.min(MAX_ID));
    h.set_size(size.min(MAX_SIZE));
    h.set_mtime(mtime.min(MAX_SIZE));
    h
}

/// Sets the name (and link) fields if they fit ustar; returns what must go to PAX.
fn set_names(h: &mut tar::Header, name: &str, link: Option<&str>) -> Vec<(&'static str, Vec<u8>)> {
    let mut pax = Vec::new();
    if h.set_path(name).is_err() || name.len() > 255 {
        pax.push(("path", name.as_bytes().to_vec()));
        // Deterministic stand-in: the name truncated at a character boundary.
        let mut cut = 99.min(name.len());
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let _ = h.set_path(&name[..cut]);
    }
    if let Some(link) = link
        && (link.len() > 100 || h.set_link_name(link).is_err())
    {
        pax.push(("linkpath", link.as_bytes().to_vec()));
        let _ = h.set_link_name("././@LongLink");
    }
    pax
}

/// Why copying file data into a tar stream failed.
enum Fill {
    Read(io::Error),
    Write(io::Error),
}

/// Where a tar stream goes. `fill_from` lets a sink read file data straight into its own
/// buffer, saving a copy of every byte on the packing hot path.
trait TarSink: Write {
    /// Moves up to `max` bytes of `f` into the stream; returns how many (0 at end of file).
    fn fill_from(&mut self, f: &mut File, max: usize, buf: &mut [u8]) -> Result<usize, Fill> {
        let want = buf.len().min(max);
        let n = f.read(&mut buf[..want]).map_err(Fill::Read)?;
        self.write_all(&buf[..n]).map_err(Fill::Write)?;
        Ok(n)
    }
}

impl<W: Write> TarSink for HashingWriter<W> {}
impl<T: TarSink + ?Sized> TarSink for &mut T {
    fn fill_from(&mut self, f: &mut File, max: usize, buf: &mut [u8]) -> Result<usize, Fill> {
        (**self).fill_from(f, max, buf)
    }
}

impl TarSink for ChunkWriter {
    fn fill_from(&mut self, f: &mut File, max: usize, _: &mut [u8]) -> Result<usize, Fill> {
        let room = FRAME_SIZE - self.buf.len();
        let want = room.min(max) as u64;
        // read_to_end fills the spare capacity without zeroing it first.
        let n = f
            .take(want)
            .read_to_end(&mut self.buf)
            .map_err(Fill::Read)?;
        if self.buf.len() >= FRAME_SIZE {
            self.send().map_err(Fill::Write)?;
        }
        Ok(n)
    }
}

fn write_entry(
    w: &mut impl TarSink,
    path: &str,
    node: &Node,
    mtime: u64,
    buf: &mut [u8],
) -> Result<(), LayerError> {
    let (kind, size, link) = match &node.kind {
        Kind::File(d) => (tar::EntryType::Regular, d.len(), None),
        Kind::Dir => (tar::EntryType::Directory, 0, None),
        Kind::Symlink(t) => (tar::EntryType::Symlink, 0, Some(t.as_str())),
    };
    let name = if node.kind == Kind::Dir {
        format!("{path}/")
    } else {
        path.to_string()
    };
    let mut h = header(
        kind,
        node.mode & 0o7777,
        u64::from(node.uid),
        u64::from(node.gid),
        size,
        mtime,
    );
    let mut pax = set_names(&mut h, &name, link);
    if u64::from(node.uid) > MAX_ID {
        pax.push(("uid", node.uid.to_string().into_bytes()));
    }
    if u64::from(node.gid) > MAX_ID {
        pax.push(("gid", node.gid.to_string().into_bytes()));
    }
    if size > MAX_SIZE {
        pax.push(("size", size.to_string().into_bytes()));
    }
    if !pax.is_empty() {
        let records: Vec<u8> = pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        let mut ph = header(
            tar::EntryType::XHeader,
            0o644,
            0,
            0,
            records.len() as u64,
            mtime,
        );
        let _ = ph.set_path(PAX_NAME);
        ph.set_cksum();
        w.write_all(ph.as_bytes()).map_err(LayerError::Write)?;
        write_padded(w, &records)?;
    }
    h.set_cksum();
    w.write_all(h.as_bytes()).map_err(LayerError::Write)?;
    if let Kind::File(data) = &node.kind {
        match data {
            FileData::Inline(bytes) => write_padded(w, bytes)?,
            FileData::Host { path, size } => copy_file_data(w, path, 0, *size, true, buf)?,
            FileData::Slice { path, offset, size } => {
                copy_file_data(w, path, *offset, *size, false, buf)?;
            }
        }
    }
    Ok(())
}

/// Copies `size` bytes at `offset` of `path` into the stream, padded to a block. With
/// `whole`, the file must end right there (it did not change since it was listed).
fn copy_file_data(
    w: &mut impl TarSink,
    path: &Path,
    offset: u64,
    size: u64,
    whole: bool,
    buf: &mut [u8],
) -> Result<(), LayerError> {
    use std::io::Seek;
    let read_err = |source| LayerError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(read_err)?;
    if offset > 0 {
        f.seek(io::SeekFrom::Start(offset)).map_err(read_err)?;
    }
    let mut left = size;
    while left > 0 {
        let max = usize::try_from(left).unwrap_or(usize::MAX);
        let n = match w.fill_from(&mut f, max, buf) {
            Ok(n) => n,
            Err(Fill::Read(source)) => return Err(read_err(source)),
            Err(Fill::Write(e)) => return Err(LayerError::Write(e)),
        };
        if n == 0 {
            return Err(LayerError::Changed {
                path: path.to_path_buf(),
            });
        }
        left -= n as u64;
    }
    if whole && f.read(&mut buf[..1]).map_err(read_err)? != 0 {
        return Err(LayerError::Changed {
            path: path.to_path_buf(),
        });
    }
    pad(w, size)
}

fn pad(w: &mut impl Write, len: u64) -> Result<(), LayerError> {
    let rem = (len % 512) as usize;
    if rem != 0 {
        w.write_all(&[0u8; 512][..512 - rem])
            .map_err(LayerError::Write)?;
    }
    Ok(())
}

fn write_padded(w: &mut impl Write, bytes: &[u8]) -> Result<(), LayerError> {
    w.write_all(bytes).map_err(LayerError::Write)?;
    pad(w, bytes.len() as u64)
}

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
