//! The compressed stream: the tar cut into FRAME_SIZE pieces, each compressed as an
//! independent zstd frame by a worker, written in order (so the bytes do not depend on the
//! number of workers).

use super::*;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use forge_schema::{Hasher, Sha256Digest};

pub(super) fn pack_stream<W: Write + Send>(
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
pub(super) struct ChunkWriter {
    buf: Vec<u8>,
    next: u64,
    hash_tx: std::sync::mpsc::SyncSender<Arc<Vec<u8>>>,
    job_tx: std::sync::mpsc::SyncSender<(u64, Arc<Vec<u8>>)>,
}

impl ChunkWriter {
    pub(super) fn send(&mut self) -> io::Result<()> {
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

    pub(super) fn finish(mut self) -> io::Result<()> {
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

// The chunk buffer is filled straight from the file: no copy through a bounce buffer.
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
