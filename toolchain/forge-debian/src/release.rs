//! The archive's signed index: `dists/SUITE/InRelease`, checked against a keyring, and the
//! `Packages` files it vouches for.

use std::collections::BTreeMap;

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::types::KeyDetails;

use crate::DebianError;
use crate::control::{self, Paragraph};

/// The OpenPGP keys an archive's InRelease must be signed with.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Reads a keyring: binary (`/usr/share/keyrings/*.gpg`) or ASCII-armored (`.asc`).
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self, DebianError> {
        let bad = |e: String| DebianError::Keyring {
            keyring: name.to_string(),
            reason: e,
        };
        let keys: Vec<SignedPublicKey> = if bytes.starts_with(b"-----BEGIN") {
            let (iter, _) =
                SignedPublicKey::from_armor_many(bytes).map_err(|e| bad(e.to_string()))?;
            iter.collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?
        } else {
            SignedPublicKey::from_bytes_many(bytes)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?
        };
        if keys.is_empty() {
            return Err(bad("it holds no public key".into()));
        }
        Ok(Self { keys })
    }

    /// Fingerprints of the primary keys, uppercase hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| format!("{:X}", k.primary_key.fingerprint()))
            .collect()
    }

    /// The fingerprint of the primary key whose primary key or subkey made a valid
    /// signature over `msg`.
    fn verify(&self, msg: &CleartextSignedMessage) -> Option<String> {
        for key in &self.keys {
            let primary = format!("{:X}", key.primary_key.fingerprint());
            if msg.verify(key).is_ok() {
                return Some(primary);
            }
            for sub in &key.public_subkeys {
                if msg.verify(sub).is_ok() {
                    return Some(primary);
                }
            }
        }
        None
    }
}

/// A verified Release file.
#[derive(Debug, Clone)]
pub struct Release {
    pub suite: String,
    pub codename: String,
    pub date: String,
    pub components: Vec<String>,
    pub architectures: Vec<String>,
    /// `path` → (sha256, size) for every index file.
    pub sha256: BTreeMap<String, (String, u64)>,
    /// Fingerprint of the key that signed it.
    pub signed_by: String,
    pub paragraph: Paragraph,
}

/// Checks the signature of an InRelease file and parses it. `what` names it in errors
/// (e.g. the URL).
pub fn verify_inrelease(text: &str, keyring: &Keyring, what: &str) -> Result<Release, DebianError> {
    let (msg, _) =
        CleartextSignedMessage::from_string(text).map_err(|e| DebianError::Signature {
            what: what.to_string(),
            reason: format!("not a signed message: {e}"),
        })?;
    let signed_by = keyring.verify(&msg).ok_or_else(|| {
        let issuers: Vec<String> = msg
            .signatures()
            .iter()
            .flat_map(|s| {
                s.issuer_fingerprint()
                    .into_iter()
                    .map(|f| format!("{f:X}"))
                    .chain(s.issuer_key_id().into_iter().map(|k| hex_upper(k.as_ref())))
                    .collect::<Vec<_>>()
            })
            .collect();
        DebianError::Signature {
            what: what.to_string(),
            reason: format!(
                "no signature verifies against the keyring (signed by {}; keyring has {})",
                if issuers.is_empty() {
                    "unknown keys".to_string()
                } else {
                    issuers.join(", ")
                },
                keyring.fingerprints().join(", ")
            ),
        }
    })?;
    let body = msg.signed_text().replace("\r\n", "\n");
    let paragraph = control::parse(&body)
        .map_err(|e| DebianError::Index {
            what: what.to_string(),
            reason: e,
        })?
        .into_iter()
        .next()
        .ok_or_else(|| DebianError::Index {
            what: what.to_string(),
            reason: "empty Release".into(),
        })?;
    let words = |f: &str| -> Vec<String> {
        paragraph
            .get(f)
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let sha256 = control::checksums(paragraph.get("SHA256").ok_or_else(|| DebianError::Index {
        what: what.to_string(),
        reason: "the Release file has no SHA256 list".into(),
    })?);
    Ok(Release {
        suite: paragraph.get("Suite").unwrap_or("").to_string(),
        codename: paragraph.get("Codename").unwrap_or("").to_string(),
        date: paragraph.get("Date").unwrap_or("").to_string(),
        components: words("Components"),
        architectures: words("Architectures"),
        sha256,
        signed_by,
        paragraph,
    })
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
