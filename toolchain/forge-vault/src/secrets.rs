//! The secrets directory: the only place forge writes a secret (CA keys, unseal keys, the
//! root token, forge's own admin token).
//!
//! - The directory is created 0700 and refused if group or others can enter it, or if
//!   another user owns it.
//! - Each file is created 0600 from the start (a temporary file in the same directory, made
//!   with that mode, written, synced, then renamed over the target), so a killed run leaves
//!   either the old file or the new one, and no moment exists when the content is readable
//!   by others. Nothing is ever chmod-ed after the fact.
//! - When platform.toml names an age recipient, every secret is encrypted to it
//!   (`NAME.age`, ASCII armor); reading one back needs the identity file
//!   (`FORGE_AGE_IDENTITY`).
//! - [`Secret`] never prints its content in `Debug` or `Display`.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A string that must not reach a log, the lockfile or a file other than in the secrets
/// directory.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The value, for the one place that must send or write it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What went wrong with the secrets directory.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is readable by others (mode {mode:o}); run `chmod 700 {path}` and check nothing was copied"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path} belongs to uid {owner}, not to this user (uid {me})")]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{path} is encrypted with age; set FORGE_AGE_IDENTITY to the identity file of the recipient in platform.toml"
    )]
    NeedIdentity { path: PathBuf },
    #[error("{path}: cannot decrypt with the identity in {identity}: {detail}")]
    Decrypt {
        path: PathBuf,
        identity: PathBuf,
        detail: String,
    },
    #[error("{0}")]
    Age(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError + '_ {
    move |source| SecretsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, created
/// with `mode` before any byte is written, synced, renamed over `path`, directory synced.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SecretsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| SecretsError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

/// The secrets directory of one platform.
pub struct SecretsDir {
    root: PathBuf,
    recipient: Option<age::x25519::Recipient>,
    identity: Option<(PathBuf, age::x25519::Identity)>,
}

impl fmt::Debug for SecretsDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsDir")
            .field("root", &self.root)
            .field("encrypted", &self.recipient.is_some())
            .finish_non_exhaustive()
    }
}

/// Reads an age identity file (`AGE-SECRET-KEY-1...` lines; comments ignored).
fn read_identity(path: &Path) -> Result<age::x25519::Identity, SecretsError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .and_then(|l| age::x25519::Identity::from_str(l).ok())
        .ok_or_else(|| {
            SecretsError::Age(format!(
                "{}: no AGE-SECRET-KEY line (make one with `age-keygen -o FILE`)",
                path.display()
            ))
        })
}

impl SecretsDir {
    /// Opens (creating it 0700 if missing) the directory. `recipient` is the age public key
    /// of platform.toml; `identity` the file that decrypts it, when reading is needed.
    pub fn open(
        root: &Path,
        recipient: Option<&str>,
        identity: Option<&Path>,
    ) -> Result<Self, SecretsError> {
        if !root.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(io(root))?;
        }
        let meta = fs::metadata(root).map_err(io(root))?;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(SecretsError::Owner {
                path: root.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretsError::Exposed {
                path: root.to_path_buf(),
                mode,
            });
        }
        let recipient = recipient
            .map(|r| {
                age::x25519::Recipient::from_str(r)
                    .map_err(|e| SecretsError::Age(format!("age recipient `{r}`: {e}")))
            })
            .transpose()?;
        let identity = identity
            .map(|p| read_identity(p).map(|i| (p.to_path_buf(), i)))
            .transpose()?;
        Ok(Self {
            root: root.to_path_buf(),
            recipient,
            identity,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file a secret named `name` is stored in.
    pub fn path_of(&self, name: &str) -> PathBuf {
        match self.recipient {
            Some(_) => self.root.join(format!("{name}.age")),
            None => self.root.join(name),
        }
    }

    /// Whether the secret exists (in either form).
    pub fn exists(&self, name: &str) -> bool {
        self.root.join(name).exists() || self.root.join(format!("{name}.age")).exists()
    }

    /// Writes a secret atomically, created 0600, encrypted when a recipient is set.
    pub fn write(&self, name: &str, value: &Secret) -> Result<PathBuf, SecretsError> {
        let path = self.path_of(name);
        let bytes = match &self.recipient {
            Some(r) => age::encrypt_and_armor(r, value.expose().as_bytes())
                .map_err(|e| SecretsError::Age(format!("encrypting {name}: {e}")))?
                .into_bytes(),
            None => value.expose().as_bytes().to_vec(),
        };
        atomic_write(&path, &bytes, 0o600)?;
        Ok(path)
    }

    /// Reads a secret back, decrypting it if it is stored encrypted.
    pub fn read(&self, name: &str) -> Result<Option<Secret>, SecretsError> {
        let enc = self.root.join(format!("{name}.age"));
        if enc.exists() {
            let Some((idp, id)) = &self.identity else {
                return Err(SecretsError::NeedIdentity { path: enc });
            };
            let bytes = fs::read(&enc).map_err(io(&enc))?;
            let plain = age::decrypt(id, &bytes).map_err(|e| SecretsError::Decrypt {
                path: enc.clone(),
                identity: idp.clone(),
                detail: e.to_string(),
            })?;
            let text = String::from_utf8(plain).map_err(|_| SecretsError::Decrypt {
                path: enc.clone(),
                identity: idp.clone(),
                detail: "not UTF-8".into(),
            })?;
            return Ok(Some(Secret::new(text)));
        }
        let plain = self.root.join(name);
        match fs::read_to_string(&plain) {
            Ok(t) => Ok(Some(Secret::new(t))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SecretsError::Io {
                path: plain,
                source: e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn files_are_0600_and_debug_is_redacted() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("s");
        let d = SecretsDir::open(&root, None, None).unwrap();
        let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let p = d.write("root-token", &Secret::new("hvs.XYZ")).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(d.read("root-token").unwrap().unwrap().expose(), "hvs.XYZ");
        assert_eq!(d.read("missing").unwrap(), None);
        assert_eq!(
            format!("{:?}", Secret::new("hvs.XYZ")),
            "Secret(<redacted>)"
        );
        // Nothing but the file itself is left behind.
        let names: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("root-token")]);
    }

    #[test]
    fn a_directory_others_can_read_is_refused() {
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let e = SecretsDir::open(t.path(), None, None).unwrap_err();
        assert!(e.to_string().contains("chmod 700"), "{e}");
    }

    #[test]
    fn age_encrypted_secrets_need_the_identity() {
        let t = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let recipient = id.to_public().to_string();
        let idfile = t.path().join("id.txt");
        fs::write(
            &idfile,
            format!(
                "# key\n{}\n",
                age::secrecy::ExposeSecret::expose_secret(&id.to_string())
            ),
        )
        .unwrap();
        let root = t.path().join("s");
        let w = SecretsDir::open(&root, Some(&recipient), None).unwrap();
        let p = w
            .write("unseal-key-0", &Secret::new("unseal-key-plaintext-0"))
            .unwrap();
        assert!(p.ends_with("unseal-key-0.age"));
        let raw = fs::read_to_string(&p).unwrap();
        assert!(raw.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!raw.contains("plaintext"));
        assert!(matches!(
            w.read("unseal-key-0"),
            Err(SecretsError::NeedIdentity { .. })
        ));
        let r = SecretsDir::open(&root, Some(&recipient), Some(&idfile)).unwrap();
        assert_eq!(
            r.read("unseal-key-0").unwrap().unwrap().expose(),
            "unseal-key-plaintext-0"
        );
    }
}
