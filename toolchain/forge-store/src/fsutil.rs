//! Small filesystem helpers shared by the store and the commands that write project files:
//! atomic replacement (temp file in the same directory, fsync, rename, fsync directory) and
//! streaming SHA-256 of files.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use forge_schema::{Hasher, Sha256Digest};

/// Buffer size for hashing and copying: large enough to keep SHA-NI busy and syscalls few.
pub const IO_BUFFER: usize = 1 << 20;

/// Writes `bytes` to `path` atomically: readers see the old content or the new, never a
/// mix, and a crash leaves at most a `.tmp` file beside it that later runs ignore.
/// `mode` sets the permission bits explicitly, independent of the umask (e.g. 0o600 for
/// secrets); `None` keeps the default of a new file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    write_atomic_with(path, mode, |f| f.write_all(bytes))
}

/// Copies file `src` to `dest` atomically (as [`write_atomic`]).
pub fn copy_atomic(src: &Path, dest: &Path, mode: Option<u32>) -> io::Result<()> {
    let mut from = File::open(src)?;
    write_atomic_with(dest, mode, |f| io::copy(&mut from, f).map(|_| ()))
}

/// Fills a temporary file beside `path` with `fill`, then fsyncs and renames it over
/// `path` and fsyncs the directory.
fn write_atomic_with(
    path: &Path,
    mode: Option<u32>,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // Without an explicit mode, a new file gets what any other new file gets: 0666
    // minus the umask (tempfile alone would make it 0600).
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(mode.unwrap_or(0o666)));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// fsyncs a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// SHA-256 and length of everything `reader` yields.
pub fn hash_reader(reader: impl Read) -> io::Result<(Sha256Digest, u64)> {
    copy_hashing(reader, &mut io::sink())
}

/// SHA-256 and length of a file.
pub fn hash_file(path: &Path) -> io::Result<(Sha256Digest, u64)> {
    hash_reader(File::open(path)?)
}

/// Copies `reader` into `writer` while hashing what passes through.
pub fn copy_hashing(
    mut reader: impl Read,
    writer: &mut impl Write,
) -> io::Result<(Sha256Digest, u64)> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; IO_BUFFER];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        writer.write_all(&buf[..n])?;
    }
    let len = hasher.len();
    Ok((hasher.finish(), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.toml");
        write_atomic(&p, b"one", None).unwrap();
        write_atomic(&p, b"two", Some(0o600)).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn atomic_copy_leaves_the_old_file_when_the_source_is_missing() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (src, dest) = (dir.path().join("src"), dir.path().join("dest"));
        fs::write(&src, b"new").unwrap();
        fs::write(&dest, b"old").unwrap();
        copy_atomic(&src, &dest, Some(0o644)).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert!(copy_atomic(&dir.path().join("missing"), &dest, None).is_err());
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }

    #[test]
    fn hashes_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"abc").unwrap();
        let (d, n) = hash_file(&p).unwrap();
        assert_eq!(n, 3);
        assert_eq!(d, Sha256Digest::of(b"abc"));
    }
}
