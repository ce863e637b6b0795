//! Safe unpacking of source archives.
//!
//! Archives come from the internet, so unpacking assumes they are hostile. Every entry is
//! checked before anything is written:
//! - paths must be relative and free of `..` (after `strip-components`);
//! - symlinks must point inside the root (absolute targets are refused, except in `.deb`
//!   packages, where they are read relative to the package root, as dpkg would);
//! - hardlinks must name a regular file already unpacked inside the root;
//! - device nodes, fifos and sockets are refused;
//! - an entry larger than [`Limits::max_entry_bytes`], more than [`Limits::max_total_bytes`]
//!   in all, or more than [`Limits::max_entries`] entries stop the unpack (tar and zip
//!   bombs); sizes are enforced on the bytes actually decompressed, not on declared sizes;
//! - nothing is ever written through a symlink: every parent of an entry must be a real
//!   directory created by this unpack.
//!
//! We do not use `tar::Archive::unpack`: its checks differ from these (it follows some
//! symlinks and allows absolute link targets), and the same rules must hold for zip and deb.
//! Errors name the archive and the entry.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use forge_schema::recipe::Unpack;

/// Bounds that stop archive bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_entry_bytes: u64,
    pub max_total_bytes: u64,
    pub max_entries: u64,
}

impl Default for Limits {
    /// 8 GiB per entry, 32 GiB and one million entries per archive: far above any source a
    /// platform image needs, far below what fills a disk.
    fn default() -> Self {
        Self {
            max_entry_bytes: 8 << 30,
            max_total_bytes: 32 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// What was wrong with an entry.
#[derive(Debug, thiserror::Error)]
pub enum Violation {
    #[error("absolute path")]
    AbsolutePath,
    #[error("path contains `..`")]
    ParentComponent,
    #[error("symlink to `{0}` points outside the archive root")]
    SymlinkEscapes(String),
    #[error("symlink to absolute path `{0}`")]
    AbsoluteSymlink(String),
    #[error("hardlink to `{0}` leads outside the archive root")]
    HardlinkEscapes(String),
    #[error("hardlink to `{0}`, which is not a regular file unpacked before it")]
    HardlinkTarget(String),
    #[error("{0} entries are not allowed")]
    SpecialFile(&'static str),
    #[error("unsupported entry type {0}")]
    Unsupported(String),
    #[error("entry is larger than the limit of {limit} bytes")]
    EntryTooLarge { limit: u64 },
    #[error("archive unpacks to more than the limit of {limit} bytes")]
    TotalTooLarge { limit: u64 },
    #[error("archive has more than the limit of {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("a parent directory of this entry is a symlink or a file (`{0}`)")]
    ThroughLink(String),
    #[error("entry would replace the directory `{0}`")]
    ReplacesDirectory(String),
    #[error("entry name is not valid UTF-8")]
    NotUtf8,
}

/// Unpack errors. Every variant names the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive `{archive}`: entry `{entry}` refused: {violation}")]
    Refused {
        archive: String,
        entry: String,
        violation: Violation,
    },
    #[error("archive `{archive}` is damaged or not a {format} archive: {reason}")]
    Corrupt {
        archive: String,
        format: &'static str,
        reason: String,
    },
    #[error("archive `{archive}`: cannot write `{}`: {source}", path.display())]
    Io {
        archive: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Counts of what an unpack wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Unpacks `archive` (a file) of the given kind into `dest`, which must be an existing empty
/// directory. `name` is how errors refer to the archive. `Unpack::None` is not an archive:
/// the file is copied to `dest/<file name>`.
pub fn unpack(
    archive: &Path,
    kind: Unpack,
    strip_components: u32,
    dest: &Path,
    limits: &Limits,
    name: &str,
) -> Result<UnpackStats, ArchiveError> {
    let io_err = |source: io::Error| ArchiveError::Io {
        archive: name.to_string(),
        path: archive.to_path_buf(),
        source,
    };
    let file = File::open(archive).map_err(io_err)?;
    let mut u = Unpacker {
        root: dest.to_path_buf(),
        name: name.to_string(),
        strip: strip_components as usize,
        limits: *limits,
        absolute_links_in_root: kind == Unpack::Deb,
        layers: false,
        stats: UnpackStats::default(),
    };
    u.archive(archive, kind, file)?;
    Ok(u.stats)
}

/// Applies the layers of a container image, bottom first, into `dest` (an existing empty
/// directory), as the OCI image spec describes: each layer's entries replace what earlier
/// layers put at the same path (a file may replace a directory and the reverse), and
/// whiteouts delete (`.wh.NAME` removes `NAME`, `.wh..wh..opq` empties its directory).
/// Every other rule of [`unpack`] holds; absolute symlink targets are read relative to
/// the image root. `kind` of each layer is `tar`, `tar.gz` or `tar.zst`.
pub fn unpack_layers(
    layers: &[(PathBuf, Unpack)],
    dest: &Path,
    limits: &Limits,
    name: &str,
) -> Result<UnpackStats, ArchiveError> {
    let mut u = Unpacker {
        root: dest.to_path_buf(),
        name: String::new(),
        strip: 0,
        limits: *limits,
        absolute_links_in_root: true,
        layers: true,
        stats: UnpackStats::default(),
    };
    for (i, (path, kind)) in layers.iter().enumerate() {
        u.name = format!("{name} layer {}", i + 1);
        let file = File::open(path).map_err(|source| ArchiveError::Io {
            archive: u.name.clone(),
            path: path.clone(),
            source,
        })?;
        u.archive(path, *kind, file)?;
    }
    Ok(u.stats)
}

impl Unpacker {
    fn archive(&mut self, archive: &Path, kind: Unpack, file: File) -> Result<(), ArchiveError> {
        let u = self;
        let buffered = io::BufReader::with_capacity(1 << 20, file);
        match kind {
            Unpack::None => {
                let file_name = archive
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "source".into());
                u.write_file(&file_name, buffered, 0o644)?;
            }
            Unpack::Tar => u.tar(buffered, "tar")?,
            Unpack::TarGz => u.tar(flate2::bufread::MultiGzDecoder::new(buffered), "tar.gz")?,
            Unpack::TarXz => u.tar(
                liblzma::bufread::XzDecoder::new_multi_decoder(buffered),
                "tar.xz",
            )?,
            Unpack::TarZst => {
                let d = zstd::stream::read::Decoder::with_buffer(buffered)
                    .map_err(|e| u.corrupt("tar.zst", e))?;
                u.tar(d, "tar.zst")?
            }
            Unpack::TarBz2 => u.tar(bzip2::bufread::MultiBzDecoder::new(buffered), "tar.bz2")?,
            Unpack::Zip => u.zip(archive)?,
            Unpack::Deb => u.deb(buffered)?,
        }
        Ok(())
    }
}

struct Unpacker {
    root: PathBuf,
    name: String,
    strip: usize,
    limits: Limits,
    absolute_links_in_root: bool,
    /// Container image layers: later entries replace directories, whiteouts delete.
    layers: bool,
    stats: UnpackStats,
}

/// Checks an entry name and returns its normalised components, or `None` when
/// `strip-components` removed all of them (the entry is skipped).
fn entry_components(raw: &str, strip: usize) -> Result<Option<Vec<String>>, Violation> {
    if raw.starts_with('/') {
        return Err(Violation::AbsolutePath);
    }
    let mut parts = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or(Violation::NotUtf8)?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(Violation::ParentComponent),
            Component::RootDir | Component::Prefix(_) => return Err(Violation::AbsolutePath),
        }
    }
    if parts.len() <= strip {
        return Ok(None);
    }
    Ok(Some(parts.split_off(strip)))
}

/// Whether a symlink at `link` (components) with `target` stays inside the root, resolved
/// lexically from the link's directory.
fn symlink_stays_inside(link: &[String], target: &str) -> bool {
    let mut depth = link.len().saturating_sub(1) as i64;
    for c in Path::new(target).components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => depth = 0,
        }
    }
    true
}

impl Unpacker {
    fn refuse(&self, entry: &str, violation: Violation) -> ArchiveError {
        ArchiveError::Refused {
            archive: self.name.clone(),
            entry: entry.to_string(),
            violation,
        }
    }

    fn corrupt(&self, format: &'static str, e: impl std::fmt::Display) -> ArchiveError {
        ArchiveError::Corrupt {
            archive: self.name.clone(),
            format,
            reason: e.to_string(),
        }
    }

    fn io(&self, path: &Path, source: io::Error) -> ArchiveError {
        ArchiveError::Io {
            archive: self.name.clone(),
            path: path.to_path_buf(),
            source,
        }
    }

    fn count_entry(&mut self, entry: &str) -> Result<(), ArchiveError> {
        self.stats.entries += 1;
        if self.stats.entries > self.limits.max_entries {
            return Err(self.refuse(
                entry,
                Violation::TooManyEntries {
                    limit: self.limits.max_entries,
                },
            ));
        }
        Ok(())
    }

    /// Creates (as real directories) every parent of `parts` and returns the entry's path.
    /// Refuses to pass through anything that is not a directory this unpack made.
    fn prepare(&self, entry: &str, parts: &[String]) -> Result<PathBuf, ArchiveError> {
        let mut cur = self.root.clone();
        for p in &parts[..parts.len() - 1] {
            cur.push(p);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(self.refuse(entry, Violation::ThroughLink(p.clone())));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).map_err(|e| self.io(&cur, e))?;
                }
                Err(e) => return Err(self.io(&cur, e)),
            }
        }
        let path = self.root.join(parts.join("/"));
        // Later entries replace earlier files and links (tar semantics), never directories
        // (except in image layers, where a later layer may replace anything).
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && self.layers => {
                fs::remove_dir_all(&path).map_err(|e| self.io(&path, e))?;
                Ok(path)
            }
            Ok(m) if m.is_dir() => {
                Err(self.refuse(entry, Violation::ReplacesDirectory(parts.join("/"))))
            }
            Ok(_) => {
                fs::remove_file(&path).map_err(|e| self.io(&path, e))?;
                Ok(path)
            }
            Err(_) => Ok(path),
        }
    }

    fn write_file(
        &mut self,
        entry: &str,
        mut reader: impl Read,
        mode: u32,
    ) -> Result<(), ArchiveError> {
        let Some(parts) = entry_components(entry, 0).map_err(|v| self.refuse(entry, v))? else {
            return Ok(());
        };
        self.write_parts(entry, &parts, &mut reader, mode)
    }

    fn write_parts(
        &mut self,
        entry: &str,
        parts: &[String],
        reader: &mut dyn Read,
        mode: u32,
    ) -> Result<(), ArchiveError> {
        self.count_entry(entry)?;
        let path = self.prepare(entry, parts)?;
        let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| self.io(&path, e))?;
        let entry_limit = self.limits.max_entry_bytes;
        let total_left = self.limits.max_total_bytes.saturating_sub(self.stats.bytes);
        let cap = entry_limit.min(total_left);
        // Copy by hand so a read error (a damaged or truncated archive) is told apart from
        // a write error (a full disk).
        let mut limited = reader.take(cap + 1);
        let mut buf = vec![0u8; 256 * 1024];
        let mut n: u64 = 0;
        loop {
            let got = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.corrupt("archive", e)),
            };
            out.write_all(&buf[..got]).map_err(|e| self.io(&path, e))?;
            n += got as u64;
        }
        if n > cap {
            drop(out);
            let _ = fs::remove_file(&path);
            let violation = if n > entry_limit {
                Violation::EntryTooLarge { limit: entry_limit }
            } else {
                Violation::TotalTooLarge {
                    limit: self.limits.max_total_bytes,
                }
            };
            return Err(self.refuse(entry, violation));
        }
        self.stats.bytes += n;
        Ok(())
    }

    fn mkdir(&mut self, entry: &str, parts: &[String]) -> Result<(), ArchiveError> {
        self.count_entry(entry)?;
        let mut cur = self.root.clone();
        for (i, p) in parts.iter().enumerate() {
            cur.push(p);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                // A layer's directory replaces an earlier layer's file or link.
                Ok(_) if self.layers && i + 1 == parts.len() => {
                    fs::remove_file(&cur).map_err(|e| self.io(&cur, e))?;
                    fs::create_dir(&cur).map_err(|e| self.io(&cur, e))?;
                }
                Ok(_) => return Err(self.refuse(entry, Violation::ThroughLink(p.clone()))),
                Err(_) => fs::create_dir(&cur).map_err(|e| self.io(&cur, e))?,
            }
        }
        Ok(())
    }

    /// Applies a whiteout entry (`parts` ends in `.wh.NAME` or `.wh..wh..opq`).
    fn whiteout(&mut self, entry: &str, parts: &[String]) -> Result<(), ArchiveError> {
        self.count_entry(entry)?;
        let Some((last, dirs)) = parts.split_last() else {
            return Ok(());
        };
        let mut dir = self.root.clone();
        for p in dirs {
            dir.push(p);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                // Nothing below a missing directory to delete.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Ok(_) => return Err(self.refuse(entry, Violation::ThroughLink(p.clone()))),
                Err(e) => return Err(self.io(&dir, e)),
            }
        }
        let remove = |path: &Path| -> Result<(), ArchiveError> {
            let r = match fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(path),
                Ok(_) => fs::remove_file(path),
                Err(_) => Ok(()),
            };
            r.map_err(|e| self.io(path, e))
        };
        if last == ".wh..wh..opq" {
            for child in fs::read_dir(&dir).map_err(|e| self.io(&dir, e))? {
                let child = child.map_err(|e| self.io(&dir, e))?;
                remove(&child.path())?;
            }
            return Ok(());
        }
        let target = last.trim_start_matches(".wh.");
        if target.is_empty() || target == "." || target == ".." {
            return Err(self.refuse(entry, Violation::Unsupported("whiteout of nothing".into())));
        }
        remove(&dir.join(target))
    }

    fn symlink(&mut self, entry: &str, parts: &[String], target: &str) -> Result<(), ArchiveError> {
        self.count_entry(entry)?;
        if target.starts_with('/') && !self.absolute_links_in_root {
            return Err(self.refuse(entry, Violation::AbsoluteSymlink(target.to_string())));
        }
        if target.is_empty() || !symlink_stays_inside(parts, target) {
            return Err(self.refuse(entry, Violation::SymlinkEscapes(target.to_string())));
        }
        let path = self.prepare(entry, parts)?;
        symlink(target, &path).map_err(|e| self.io(&path, e))
    }

    fn hardlink(
        &mut self,
        entry: &str,
        parts: &[String],
        target: &str,
    ) -> Result<(), ArchiveError> {
        self.count_entry(entry)?;
        let target_parts = match entry_components(target, self.strip) {
            Ok(Some(t)) => t,
            Ok(None) | Err(_) => {
                return Err(self.refuse(entry, Violation::HardlinkEscapes(target.to_string())));
            }
        };
        let src = self.root.join(target_parts.join("/"));
        // Every parent of the target must be a real directory, and the target a file.
        let mut cur = self.root.clone();
        for p in &target_parts[..target_parts.len() - 1] {
            cur.push(p);
            if !fs::symlink_metadata(&cur).is_ok_and(|m| m.is_dir()) {
                return Err(self.refuse(entry, Violation::HardlinkTarget(target.to_string())));
            }
        }
        if !fs::symlink_metadata(&src).is_ok_and(|m| m.is_file()) {
            return Err(self.refuse(entry, Violation::HardlinkTarget(target.to_string())));
        }
        let path = self.prepare(entry, parts)?;
        fs::hard_link(&src, &path).map_err(|e| self.io(&path, e))
    }

    fn tar(&mut self, reader: impl Read, format: &'static str) -> Result<(), ArchiveError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| self.corrupt(format, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.corrupt(format, e))?;
            let raw_path = entry.path_bytes();
            let display = String::from_utf8_lossy(&raw_path).into_owned();
            let raw = std::str::from_utf8(&raw_path)
                .map_err(|_| self.refuse(&display, Violation::NotUtf8))?
                .to_string();
            let header = entry.header();
            let kind = header.entry_type();
            let declared = header.size().unwrap_or(0);
            let mode = header.mode().unwrap_or(0o644);
            let Some(parts) =
                entry_components(&raw, self.strip).map_err(|v| self.refuse(&raw, v))?
            else {
                continue;
            };
            if self.layers && parts.last().is_some_and(|l| l.starts_with(".wh.")) {
                self.whiteout(&raw, &parts)?;
                continue;
            }
            use tar::EntryType as T;
            match kind {
                T::Regular | T::Continuous | T::GNUSparse => {
                    if declared > self.limits.max_entry_bytes {
                        return Err(self.refuse(
                            &raw,
                            Violation::EntryTooLarge {
                                limit: self.limits.max_entry_bytes,
                            },
                        ));
                    }
                    self.write_parts(&raw, &parts, &mut entry, mode)?;
                }
                T::Directory => self.mkdir(&raw, &parts)?,
                T::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    self.symlink(&raw, &parts, &target)?;
                }
                T::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    self.hardlink(&raw, &parts, &target)?;
                }
                T::Char => {
                    return Err(self.refuse(&raw, Violation::SpecialFile("character device")));
                }
                T::Block => return Err(self.refuse(&raw, Violation::SpecialFile("block device"))),
                T::Fifo => return Err(self.refuse(&raw, Violation::SpecialFile("fifo"))),
                // Metadata entries that the tar crate did not fold into the next entry.
                T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
                other => {
                    return Err(self.refuse(&raw, Violation::Unsupported(format!("{other:?}"))));
                }
            }
        }
        Ok(())
    }

    fn zip(&mut self, path: &Path) -> Result<(), ArchiveError> {
        let file = File::open(path).map_err(|e| self.io(path, e))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| self.corrupt("zip", e))?;
        for i in 0..zip.len() {
            let mut f = zip.by_index(i).map_err(|e| self.corrupt("zip", e))?;
            let raw = f.name().map_err(|e| self.corrupt("zip", e))?.to_string();
            let Some(parts) =
                entry_components(&raw, self.strip).map_err(|v| self.refuse(&raw, v))?
            else {
                continue;
            };
            let mode = f.unix_mode().unwrap_or(0o644);
            const S_IFMT: u32 = 0o170000;
            match mode & S_IFMT {
                0o120000 => {
                    let mut target = String::new();
                    (&mut f)
                        .take(4096)
                        .read_to_string(&mut target)
                        .map_err(|e| self.corrupt("zip", e))?;
                    self.symlink(&raw, &parts, &target)?;
                }
                0o020000 => {
                    return Err(self.refuse(&raw, Violation::SpecialFile("character device")));
                }
                0o060000 => return Err(self.refuse(&raw, Violation::SpecialFile("block device"))),
                0o010000 => return Err(self.refuse(&raw, Violation::SpecialFile("fifo"))),
                0o140000 => return Err(self.refuse(&raw, Violation::SpecialFile("socket"))),
                _ if f.is_dir() => self.mkdir(&raw, &parts)?,
                _ => {
                    if f.size() > self.limits.max_entry_bytes {
                        return Err(self.refuse(
                            &raw,
                            Violation::EntryTooLarge {
                                limit: self.limits.max_entry_bytes,
                            },
                        ));
                    }
                    self.write_parts(&raw, &parts, &mut f, mode)?;
                }
            }
        }
        Ok(())
    }

    fn deb(&mut self, reader: impl Read) -> Result<(), ArchiveError> {
        let mut ar = ar::Archive::new(reader);
        while let Some(member) = ar.next_entry() {
            let member = member.map_err(|e| self.corrupt("deb", e))?;
            let id = String::from_utf8_lossy(member.header().identifier()).into_owned();
            let id = id.trim_end_matches('/').to_string();
            let data = io::BufReader::new(member);
            match id.as_str() {
                "data.tar" => return self.tar(data, "deb"),
                "data.tar.gz" => {
                    return self.tar(flate2::bufread::MultiGzDecoder::new(data), "deb");
                }
                "data.tar.xz" => {
                    return self.tar(liblzma::bufread::XzDecoder::new_multi_decoder(data), "deb");
                }
                "data.tar.zst" => {
                    let d = zstd::stream::read::Decoder::with_buffer(data)
                        .map_err(|e| self.corrupt("deb", e))?;
                    return self.tar(d, "deb");
                }
                "data.tar.bz2" => {
                    return self.tar(bzip2::bufread::MultiBzDecoder::new(data), "deb");
                }
                _ => {}
            }
        }
        Err(self.corrupt("deb", "no data.tar member"))
    }
}

/// Resolves `rel` inside `root` the way a chroot would: symlinks are followed, but absolute
/// targets and `..` never leave `root`. Returns the host path of the final entry (which is
/// not itself followed when `follow_last` is false). Used to read members of unpacked
/// sources, so even a link the unpack checks could not see through cannot escape.
pub fn resolve_in_root(root: &Path, rel: &str, follow_last: bool) -> io::Result<PathBuf> {
    let mut stack: Vec<String> = Vec::new();
    let mut pending: Vec<String> = rel
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let candidate = root.join(stack.join("/")).join(&c);
        let is_last = pending.is_empty();
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && (follow_last || !is_last) => {
                hops += 1;
                if hops > 40 {
                    return Err(io::Error::other(format!(
                        "too many symlinks resolving `{rel}`"
                    )));
                }
                let target = fs::read_link(&candidate)?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    stack.clear();
                }
                for t in target.split('/').filter(|c| !c.is_empty()).rev() {
                    pending.push(t.to_string());
                }
            }
            _ => stack.push(c),
        }
    }
    Ok(root.join(stack.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_and_strip() {
        assert_eq!(
            entry_components("./a/b/c", 1).unwrap(),
            Some(vec!["b".to_string(), "c".to_string()])
        );
        assert_eq!(entry_components("a/", 1).unwrap(), None);
        assert!(matches!(
            entry_components("/etc/passwd", 0),
            Err(Violation::AbsolutePath)
        ));
        assert!(matches!(
            entry_components("a/../../x", 0),
            Err(Violation::ParentComponent)
        ));
    }

    #[test]
    fn symlink_containment() {
        let link = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
        assert!(symlink_stays_inside(&link("a/b/l"), "../x"));
        assert!(symlink_stays_inside(&link("a/b/l"), "../../x"));
        assert!(!symlink_stays_inside(&link("a/b/l"), "../../../x"));
        assert!(!symlink_stays_inside(&link("l"), ".."));
        assert!(symlink_stays_inside(&link("l"), "./x/../y"));
    }

    #[test]
    fn resolves_inside_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("a")).unwrap();
        fs::write(root.join("a/f"), b"x").unwrap();
        symlink("/a", root.join("abs")).unwrap();
        symlink("../../../../..", root.join("a/up")).unwrap();
        assert_eq!(
            resolve_in_root(&root, "abs/f", true).unwrap(),
            root.join("a/f")
        );
        assert_eq!(
            resolve_in_root(&root, "a/up/a/f", true).unwrap(),
            root.join("a/f")
        );
        assert_eq!(
            resolve_in_root(&root, "abs", false).unwrap(),
            root.join("abs")
        );
    }
}
