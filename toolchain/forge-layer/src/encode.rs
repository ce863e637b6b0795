//! The tar encoding: ustar headers with fixed fields, PAX records for what ustar cannot
//! hold, entry data copied (with zero-copy where the sink allows) and padded.

use super::*;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

const PAX_NAME: &str = "././@PaxHeader";
/// Largest value of an 8-byte octal field (7 digits + NUL).
const MAX_ID: u64 = 0o7777777;
/// Largest value of the 12-byte size field (11 digits + NUL).
const MAX_SIZE: u64 = 0o77777777777;

/// One PAX record: "<len> <key>=<value>\n", where <len> counts the whole record.
pub(super) fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
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

pub(super) fn header(
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
pub(super) fn set_names(
    h: &mut tar::Header,
    name: &str,
    link: Option<&str>,
) -> Vec<(&'static str, Vec<u8>)> {
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
pub(super) enum Fill {
    Read(io::Error),
    Write(io::Error),
}

/// Where a tar stream goes. `fill_from` lets a sink read file data straight into its own
/// buffer, saving a copy of every byte on the packing hot path.
pub(super) trait TarSink: Write {
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

pub(super) fn write_entry(
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
pub(super) fn copy_file_data(
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

pub(super) fn pad(w: &mut impl Write, len: u64) -> Result<(), LayerError> {
    let rem = (len % 512) as usize;
    if rem != 0 {
        w.write_all(&[0u8; 512][..512 - rem])
            .map_err(LayerError::Write)?;
    }
    Ok(())
}

pub(super) fn write_padded(w: &mut impl Write, bytes: &[u8]) -> Result<(), LayerError> {
    w.write_all(bytes).map_err(LayerError::Write)?;
    pad(w, bytes.len() as u64)
}
