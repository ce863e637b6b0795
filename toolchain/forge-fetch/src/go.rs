//! Go modules as fixed-output sources: the module proxy protocol (`GOPROXY`), the `h1:`
//! hashes that go.sum pins modules by, and fetching a module's zip or go.mod into the store
//! only once it matches its pin.
//!
//! A module is pinned like go.sum pins it: `h1:` is base64 of SHA-256 over the lines
//! `"<sha256 hex>  <name>\n"` of its files sorted by name (Go's `dirhash.Hash1`), where the
//! files of a zip are named `<module>@<version>/<path>` and a go.mod alone is named
//! `go.mod`. The store keeps each verified file by its SHA-256 and finds it again by its
//! pin through a record, as it does for SHA-512 pins; proxies that zip a module again (and
//! so serve other bytes with the same `h1:`) are fine.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use forge_schema::lockfile::source_record_key;
use forge_schema::{Hasher, Sha256Digest};
use forge_store::{SourceRecord, Store};

use crate::{FetchError, Fetcher, Missing};

/// Which file of a module version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GoFile {
    /// `<version>.zip`: the module's files.
    Zip,
    /// `<version>.mod`: its go.mod, which the build reads to compute the module graph.
    Mod,
}

impl GoFile {
    fn ext(self) -> &'static str {
        match self {
            GoFile::Zip => "zip",
            GoFile::Mod => "mod",
        }
    }

    fn what(self) -> &'static str {
        match self {
            GoFile::Zip => "zip",
            GoFile::Mod => "go.mod",
        }
    }
}

/// One file of one module version and the `h1:` it must have.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoRequest {
    pub path: String,
    pub version: String,
    pub file: GoFile,
    pub h1: String,
}

impl GoRequest {
    /// This file's line in go.sum: `<module> <version>[/go.mod] <h1>`.
    pub fn sum_line(&self) -> String {
        match self.file {
            GoFile::Zip => format!("{} {} {}", self.path, self.version, self.h1),
            GoFile::Mod => format!("{} {}/go.mod {}", self.path, self.version, self.h1),
        }
    }

    /// `module@version` (with `/go.mod` for the go.mod), as go.sum and Go's errors write it.
    pub fn label(&self) -> String {
        match self.file {
            GoFile::Zip => format!("{}@{}", self.path, self.version),
            GoFile::Mod => format!("{}@{}/go.mod", self.path, self.version),
        }
    }

    /// Where the proxy protocol puts this file, relative to a proxy's root (also the
    /// layout of `$GOMODCACHE/cache/download`).
    pub fn proxy_path(&self) -> Result<String, FetchError> {
        Ok(format!(
            "{}/@v/{}.{}",
            escape(&self.path).map_err(|reason| self.invalid(reason))?,
            escape(&self.version).map_err(|reason| self.invalid(reason))?,
            self.file.ext()
        ))
    }

    fn pin(&self) -> String {
        forge_schema::lockfile::go_pin(&self.label(), &self.h1)
    }

    /// The key of the store's record of this file.
    pub fn record_key(&self) -> Sha256Digest {
        source_record_key(&self.pin())
    }

    fn invalid(&self, reason: String) -> FetchError {
        FetchError::Go {
            module: self.label(),
            reason,
        }
    }
}

/// A module path or version as the proxy protocol spells it: each upper-case letter
/// becomes `!` and the letter in lower case (`github.com/BurntSushi` →
/// `github.com/!burnt!sushi`), so paths stay distinct on case-insensitive file systems.
pub fn escape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '!' {
            return Err(format!("`{s}` contains `!`, which module paths may not"));
        }
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_graphic() {
            out.push(c);
        } else {
            return Err(format!("`{s}` contains {c:?}, which module paths may not"));
        }
    }
    Ok(out)
}

/// Go's `dirhash.Hash1` over `(name, sha256 of content)` pairs.
fn hash1(mut files: Vec<(String, Sha256Digest)>) -> Result<String, String> {
    files.sort();
    let mut summary = String::new();
    for pair in files.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(format!("two files are named `{}`", pair[0].0));
        }
    }
    for (name, digest) in &files {
        if name.contains('\n') {
            return Err(format!("a file name contains a newline: {name:?}"));
        }
        summary.push_str(&format!("{}  {name}\n", digest.to_hex()));
    }
    let sum = Sha256Digest::of(summary.as_bytes());
    Ok(format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(sum.as_bytes())
    ))
}

/// The `h1:` of a go.mod file's bytes (go.sum's `/go.mod` lines).
pub fn gomod_h1(bytes: &[u8]) -> String {
    // One file with a fixed name cannot fail the checks of `hash1`.
    hash1(vec![("go.mod".to_string(), Sha256Digest::of(bytes))]).unwrap_or_default()
}

/// The `h1:` of a module zip: every entry, named as in the zip.
pub fn zip_h1(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| e.to_string())?;
    let mut files = Vec::with_capacity(zip.len());
    let mut buf = vec![0u8; 1 << 16];
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
        let name = entry.name().map_err(|e| e.to_string())?.into_owned();
        let mut h = Hasher::new();
        loop {
            let n = entry.read(&mut buf).map_err(|e| format!("{name}: {e}"))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        files.push((name, h.finish()));
    }
    hash1(files)
}

/// The `h1:` of a downloaded file of kind `file`.
fn h1_of(file: GoFile, path: &Path) -> Result<String, String> {
    match file {
        GoFile::Zip => zip_h1(path),
        GoFile::Mod => std::fs::read(path)
            .map(|b| gomod_h1(&b))
            .map_err(|e| format!("{}: {e}", path.display())),
    }
}

/// Parses go.sum: `<module> <version>[/go.mod] h1:<base64>` per line, each the request
/// for the file it pins. Errors give the 1-based line number.
pub fn parse_go_sum(text: &str) -> Result<Vec<GoRequest>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [path, version, h1] = fields[..] else {
            return Err((
                i + 1,
                format!("expected `module version h1:hash`, found `{line}`"),
            ));
        };
        let Some(b64) = h1.strip_prefix("h1:") else {
            return Err((i + 1, format!("`{h1}` is not an `h1:` hash")));
        };
        let valid = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .is_ok_and(|d| d.len() == 32);
        if !valid {
            return Err((i + 1, format!("`{h1}` is not base64 of 32 bytes")));
        }
        let (version, file) = match version.strip_suffix("/go.mod") {
            Some(v) => (v, GoFile::Mod),
            None => (version, GoFile::Zip),
        };
        out.push(GoRequest {
            path: path.to_string(),
            version: version.to_string(),
            file,
            h1: h1.to_string(),
        });
    }
    Ok(out)
}

/// The blob of a module file already verified into the store.
pub fn stored(store: &Store, req: &GoRequest) -> Option<Sha256Digest> {
    store
        .record::<SourceRecord>(&req.record_key())
        .ok()
        .flatten()
        .and_then(|r| r.blob)
        .filter(|b| store.has_blob(b))
}

/// A verified module file in the store.
#[derive(Debug, Clone)]
pub struct GoFetched {
    pub sha256: Sha256Digest,
    pub path: PathBuf,
}

impl Fetcher {
    /// Puts one module file into the store once its `h1:` matches: from the store (by its
    /// pin), a source directory laid out as a proxy or as `$GOMODCACHE/cache/download`,
    /// or the proxy at `proxy` (a `GOPROXY` URL; none offline).
    pub async fn fetch_go(
        &self,
        store: &Arc<Store>,
        proxy: Option<&str>,
        req: &GoRequest,
    ) -> Result<GoFetched, FetchError> {
        if let Some(sha256) = stored(store, req) {
            return Ok(GoFetched {
                sha256,
                path: store.blob_path(&sha256),
            });
        }
        let rel = req.proxy_path()?;
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(up) = &self.options.upstream
            && let Some(b) = stored(up, req)
        {
            candidates.push(up.blob_path(&b));
        }
        for d in &self.options.source_dirs {
            candidates.push(d.join(&rel));
            candidates.push(d.join("cache/download").join(&rel));
        }
        // A local copy that fails its pin is passed over, and reported if nothing else
        // can be had.
        let mut mismatch = None;
        for c in candidates.iter().filter(|c| c.is_file()) {
            match check_h1(req, c, &c.display().to_string()) {
                Ok(()) => {
                    let sha256 = hash(c)?;
                    let path = store.add_file(c, &sha256)?;
                    return record(store, req, sha256, path);
                }
                Err(e @ FetchError::GoMismatch { .. }) => {
                    mismatch.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        let Some(proxy) = proxy.filter(|_| !self.options.offline) else {
            return Err(mismatch.unwrap_or_else(|| FetchError::Offline {
                missing: vec![Missing {
                    name: req.label(),
                    file_name: rel,
                    pin: req.h1.clone(),
                    urls: Vec::new(),
                }],
            }));
        };
        let url = format!("{}/{rel}", proxy.trim_end_matches('/'));
        let bytes = self.get(&url).await?;
        let mut tmp = store.temp_file()?;
        io::Write::write_all(tmp.as_file_mut(), &bytes).map_err(|source| {
            forge_store::StoreError::Io {
                path: tmp.path().to_path_buf(),
                source,
            }
        })?;
        check_h1(req, tmp.path(), &url)?;
        let sha256 = Sha256Digest::of(&bytes);
        // The download itself becomes the blob: no second copy.
        let path = store.commit_blob_unchecked(tmp, &sha256)?;
        record(store, req, sha256, path)
    }
}

/// Checks the file at `path` (from `origin`) against the request's `h1:`.
fn check_h1(req: &GoRequest, path: &Path, origin: &str) -> Result<(), FetchError> {
    let actual = h1_of(req.file, path).map_err(|reason| FetchError::Go {
        module: req.label(),
        reason: format!("{origin}: not a module {}: {reason}", req.file.what()),
    })?;
    if actual != req.h1 {
        return Err(FetchError::GoMismatch {
            module: req.label(),
            url: origin.to_string(),
            expected: req.h1.clone(),
            actual,
        });
    }
    Ok(())
}

fn hash(path: &Path) -> Result<Sha256Digest, FetchError> {
    let (sha256, _) =
        forge_store::fsutil::hash_file(path).map_err(|source| forge_store::StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(sha256)
}

/// Records which blob holds the verified file, so the store finds it by its pin.
fn record(
    store: &Store,
    req: &GoRequest,
    sha256: Sha256Digest,
    path: PathBuf,
) -> Result<GoFetched, FetchError> {
    store.commit_record(&SourceRecord {
        key: req.record_key(),
        pin: req.pin(),
        blob: Some(sha256),
        manifests: Vec::new(),
        layers: Vec::new(),
    })?;
    Ok(GoFetched { sha256, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_escaped_as_the_proxy_protocol_says() {
        assert_eq!(
            escape("github.com/BurntSushi/toml").unwrap(),
            "github.com/!burnt!sushi/toml"
        );
        assert_eq!(escape("v1.2.3-RC1").unwrap(), "v1.2.3-!r!c1");
        assert!(escape("a!b").is_err());
        assert!(escape("a b").is_err());
    }

    #[test]
    fn go_sum_lines_parse_and_bad_ones_name_their_line() {
        let text = "rsc.io/quote v1.5.2 h1:w5fcysjrx7yqtD/aO+QwRjYZOKnaM9Uh2b40tElTs3Y=\nrsc.io/quote v1.5.2/go.mod h1:LzX7hefJvL54yjefDEDHNONDjII0t9xZLPXsUe+TKr0=\n";
        let lines = parse_go_sum(text).unwrap();
        assert_eq!(lines.len(), 2);
        let back: String = lines.iter().map(|l| l.sum_line() + "\n").collect();
        assert_eq!(back, text);
        assert_eq!(lines[0].file, GoFile::Zip);
        assert_eq!(lines[1].file, GoFile::Mod);
        assert_eq!(lines[1].version, "v1.5.2");
        let e = parse_go_sum("a v1 h1:AAAA\n").unwrap_err();
        assert_eq!(e.0, 1);
        let e = parse_go_sum("\nx v1 sha256:00\n").unwrap_err();
        assert_eq!(e.0, 2);
    }

    #[test]
    fn hash1_sorts_names_and_refuses_duplicates() {
        let a = ("b".to_string(), Sha256Digest::of(b"2"));
        let b = ("a".to_string(), Sha256Digest::of(b"1"));
        assert_eq!(
            hash1(vec![a.clone(), b.clone()]).unwrap(),
            hash1(vec![b.clone(), a.clone()]).unwrap()
        );
        assert!(hash1(vec![a.clone(), a]).is_err());
        // go.mod hashes are the one-file case: the documented summary line, hashed.
        let summary = format!("{}  go.mod\n", Sha256Digest::of(b"module x\n").to_hex());
        let want = base64::engine::general_purpose::STANDARD
            .encode(Sha256Digest::of(summary.as_bytes()).as_bytes());
        assert_eq!(gomod_h1(b"module x\n"), format!("h1:{want}"));
    }
}
