//! SHA-256 digests: the one hash forge uses for sources, layers, recipes and store keys.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// A SHA-256 digest, shown and parsed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hashes a byte slice in one go.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Lowercase hex form (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first `n` hex digits, for short display.
    pub fn short(&self) -> String {
        let mut s = self.to_hex();
        s.truncate(12);
        s
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

/// Why a string is not a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    #[error("a sha256 is 64 hex digits, this has {0} characters")]
    Length(usize),
    #[error("a sha256 is written in lowercase hex digits (0-9, a-f); found `{0}`")]
    Character(char),
}

impl FromStr for Sha256Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(DigestParseError::Length(s.chars().count()));
        }
        if let Some(c) = s.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(DigestParseError::Character(c));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestParseError::Length(s.len()))?;
        Ok(Self(out))
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A SHA-512 digest: some upstreams (Kubernetes release tarballs) publish only SHA-512.
/// Written in recipes as 128 hex digits or in Subresource Integrity form
/// (`sha512-<base64>`); shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha512Digest([u8; 64]);

impl Sha512Digest {
    pub const fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    pub fn of(data: &[u8]) -> Self {
        Self(Sha512::digest(data).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The Subresource Integrity form, `sha512-<base64>`.
    pub fn to_sri(&self) -> String {
        use base64::Engine as _;
        format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

impl fmt::Display for Sha512Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha512Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha512:{}", self.to_hex())
    }
}

/// Why a string is not a SHA-512 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Sha512ParseError {
    #[error(
        "a sha512 is 128 lowercase hex digits or `sha512-` and 88 base64 characters; this has {0} characters"
    )]
    Length(usize),
    #[error("a sha512 in hex uses the digits 0-9 and a-f; found `{0}`")]
    Character(char),
    #[error("`sha512-...` must be followed by standard base64 of 64 bytes")]
    Base64,
}

impl FromStr for Sha512Digest {
    type Err = Sha512ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 64];
        if let Some(b64) = s.strip_prefix("sha512-") {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| Sha512ParseError::Base64)?;
            if bytes.len() != 64 {
                return Err(Sha512ParseError::Base64);
            }
            out.copy_from_slice(&bytes);
            return Ok(Self(out));
        }
        if s.len() != 128 {
            return Err(Sha512ParseError::Length(s.chars().count()));
        }
        if let Some(c) = s.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(Sha512ParseError::Character(c));
        }
        hex::decode_to_slice(s, &mut out).map_err(|_| Sha512ParseError::Length(s.len()))?;
        Ok(Self(out))
    }
}

impl serde::Serialize for Sha512Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Sha512Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What pins a fetched file's content: the hash the recipe gives for it. The store keeps
/// every file by SHA-256; a file pinned by SHA-512 is hashed both ways while it is fetched
/// and found again through a source record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Integrity {
    Sha256(Sha256Digest),
    Sha512(Sha512Digest),
}

impl Integrity {
    /// `sha256` or `sha512`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Integrity::Sha256(_) => "sha256",
            Integrity::Sha512(_) => "sha512",
        }
    }

    pub fn to_hex(&self) -> String {
        match self {
            Integrity::Sha256(d) => d.to_hex(),
            Integrity::Sha512(d) => d.to_hex(),
        }
    }

    /// The SHA-256 when that is the pin.
    pub fn sha256(&self) -> Option<Sha256Digest> {
        match self {
            Integrity::Sha256(d) => Some(*d),
            Integrity::Sha512(_) => None,
        }
    }
}

impl fmt::Display for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm(), self.to_hex())
    }
}

/// Streams data through SHA-256 and, when the pin is SHA-512, SHA-512 too.
#[derive(Clone)]
pub struct IntegrityHasher {
    sha256: Hasher,
    sha512: Option<Sha512>,
}

impl IntegrityHasher {
    /// A hasher for content pinned by `pin`.
    pub fn for_pin(pin: &Integrity) -> Self {
        Self {
            sha256: Hasher::new(),
            sha512: matches!(pin, Integrity::Sha512(_)).then(Sha512::new),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
    }

    pub fn len(&self) -> u64 {
        self.sha256.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sha256.is_empty()
    }

    /// The SHA-256 (the store key) and the digest in the pin's algorithm.
    pub fn finish(self) -> (Sha256Digest, Integrity) {
        let sha256 = self.sha256.finish();
        match self.sha512 {
            Some(h) => (sha256, Integrity::Sha512(Sha512Digest(h.finalize().into()))),
            None => (sha256, Integrity::Sha256(sha256)),
        }
    }
}

/// A streaming SHA-256 hasher that also counts bytes.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Sha256Digest {
        Sha256Digest(self.inner.finalize().into())
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_hex().parse::<Sha256Digest>(), Ok(d));
    }

    #[test]
    fn rejects_bad_forms() {
        assert_eq!(
            "abc".parse::<Sha256Digest>(),
            Err(DigestParseError::Length(3))
        );
        let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(
            upper.parse::<Sha256Digest>(),
            Err(DigestParseError::Character('B'))
        );
    }

    #[test]
    fn sha512_hex_and_sri_forms() {
        let d = Sha512Digest::of(b"abc");
        assert!(d.to_hex().starts_with("ddaf35a193617aba"));
        assert_eq!(d.to_hex().parse::<Sha512Digest>(), Ok(d));
        assert_eq!(d.to_sri().parse::<Sha512Digest>(), Ok(d));
        assert_eq!(
            "sha512-abc".parse::<Sha512Digest>(),
            Err(Sha512ParseError::Base64)
        );
        assert_eq!(
            "ab".parse::<Sha512Digest>(),
            Err(Sha512ParseError::Length(2))
        );
    }

    #[test]
    fn integrity_hasher_computes_both() {
        let pin = Integrity::Sha512(Sha512Digest::of(b"abc"));
        let mut h = IntegrityHasher::for_pin(&pin);
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finish(), (Sha256Digest::of(b"abc"), pin));
    }

    #[test]
    fn streaming_matches_one_shot() {
        let mut h = Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.len(), 3);
        assert_eq!(h.finish(), Sha256Digest::of(b"abc"));
    }
}
