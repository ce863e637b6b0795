//! EXO2-HMAC-SHA256 request signing (API-NOTES §2), shared by the client and the emulator.
//!
//! The message is five lines joined by `\n` with no trailing newline: `METHOD PATH`, the raw
//! body, the values of the signed query arguments concatenated in name order, the signed
//! header values (always empty today) and the expiry as Unix seconds. The MAC is
//! HMAC-SHA256 keyed with the API secret, encoded as padded standard base64.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The scheme token that starts an `Authorization` header.
pub const SCHEME: &str = "EXO2-HMAC-SHA256";

/// How long a signature stays valid, as the official clients sign (10 minutes).
pub const DEFAULT_VALIDITY_SECS: u64 = 600;

/// Builds the message to sign. `query` holds the signed arguments (name, decoded value);
/// they are sorted by name here.
pub fn message(
    method: &str,
    path: &str,
    body: &[u8],
    query: &[(&str, &str)],
    expires: u64,
) -> Vec<u8> {
    let mut sorted: Vec<&(&str, &str)> = query.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut msg = Vec::with_capacity(path.len() + body.len() + 64);
    msg.extend_from_slice(method.to_ascii_uppercase().as_bytes());
    msg.push(b' ');
    msg.extend_from_slice(path.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(body);
    msg.push(b'\n');
    for (_, v) in &sorted {
        msg.extend_from_slice(v.as_bytes());
    }
    msg.push(b'\n');
    // No header is signed.
    msg.push(b'\n');
    msg.extend_from_slice(expires.to_string().as_bytes());
    msg
}

/// Raw HMAC-SHA256 of `msg` keyed with `secret`.
pub fn mac(secret: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// Base64 signature of `msg`.
pub fn signature(secret: &[u8], msg: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(secret, msg))
}

/// A complete `Authorization` header value for one request.
pub fn authorization(
    key: &str,
    secret: &[u8],
    method: &str,
    path: &str,
    body: &[u8],
    query: &[(&str, &str)],
    expires: u64,
) -> String {
    let msg = message(method, path, body, query, expires);
    let sig = signature(secret, &msg);
    let mut names: Vec<&str> = query.iter().map(|(k, _)| *k).collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut header = format!("{SCHEME} credential={key}");
    if !names.is_empty() {
        header.push_str(",signed-query-args=");
        header.push_str(&names.join(";"));
    }
    header.push_str(&format!(",expires={expires},signature={sig}"));
    header
}

/// The parts of a parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub credential: String,
    pub signed_query_args: Vec<String>,
    pub expires: u64,
    pub signature: String,
}

/// Parses an `Authorization` header; `None` when it is not an EXO2 header.
pub fn parse_authorization(header: &str) -> Option<ParsedAuthorization> {
    let rest = header.strip_prefix(SCHEME)?.strip_prefix(' ')?;
    let mut credential = None;
    let mut signed = Vec::new();
    let mut expires = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.split_once('=')?;
        match k {
            "credential" => credential = Some(v.to_string()),
            "signed-query-args" => {
                signed = v
                    .split(';')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "expires" => expires = Some(v.parse().ok()?),
            // The signature is base64 and may itself end with '='.
            "signature" => signature = Some(part["signature=".len()..].to_string()),
            _ => return None,
        }
    }
    Some(ParsedAuthorization {
        credential: credential?,
        signed_query_args: signed,
        expires: expires?,
        signature: signature?,
    })
}

/// Checks a signature in constant time.
pub fn verify(secret: &[u8], msg: &[u8], signature_b64: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature_b64) else {
        return false;
    };
    let expected = mac(secret, msg);
    given.len() == expected.len() && bool::from(expected.ct_eq(&given))
}
