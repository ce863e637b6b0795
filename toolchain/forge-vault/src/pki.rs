//! The platform's PKI outside Vault, on rcgen.
//!
//! Only two things have to exist before Vault can run, so only they are made here:
//!
//! - the **Platform Root CA** (spec §5.2): Vault's listener needs a certificate before Vault
//!   is initialised, so the root that signs it cannot live in Vault. Its key is written only
//!   to the secrets directory and imported into `pki/root` so Vault signs the Vault ICA.
//! - the **bootstrap server certificate** of each Vault member (§6.2): the member's key is
//!   generated where it is used (the member's TLS directory), only the CSR travels, and forge
//!   signs it with the root, putting in the SANs it decides itself (a CSR's own SANs are
//!   ignored).
//!
//! Every other CA of §5.2 is generated inside Vault with an internal key, including the
//! kubelet CA, whose key the original made in Terraform: its key must reach the
//! controller-manager's CSR signer through KV, so it is generated with Vault's `exported`
//! type and moved into KV in the same step (see `config/mod.rs`), never touching a disk.
//!
//! Keys are ECDSA (P-384 for CAs, P-256 for leaves by default): RSA 4096 keys, the
//! original's choice, are ten times slower to make and no more secure for this use.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

use forge_schema::platform::{KeyAlgorithm, Subject};

use crate::secrets::Secret;

/// What went wrong making or reading a certificate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{what}: {source}")]
    Rcgen {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("{what}: not a PEM certificate: {detail}")]
    Parse { what: String, detail: String },
}

fn rc(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError::Rcgen { what, source }
}

/// A certificate authority forge holds: the certificate and its private key (PEM).
#[derive(Debug, Clone)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: Secret,
}

fn signature_algorithm(alg: KeyAlgorithm) -> &'static SignatureAlgorithm {
    match alg {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    }
}

/// The distinguished name `CN=<cn>` plus the platform's subject fields (spec §5.2).
pub fn distinguished_name(subject: &Subject, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    let fields = [
        (DnType::OrganizationName, &subject.organization),
        (DnType::OrganizationalUnitName, &subject.organizational_unit),
        (DnType::CountryName, &subject.country),
        (DnType::StateOrProvinceName, &subject.province),
        (DnType::LocalityName, &subject.locality),
    ];
    for (ty, v) in fields {
        if let Some(v) = v {
            dn.push(ty, v.as_str());
        }
    }
    dn
}

/// Makes the Platform Root CA: self-signed, path length 1 (it signs only the Vault ICA and
/// the bootstrap certificates), `keyCertSign` + `cRLSign`.
pub fn generate_root(
    subject: &Subject,
    cn: &str,
    lifetime: Duration,
    alg: KeyAlgorithm,
) -> Result<Ca, PkiError> {
    let key = KeyPair::generate_for(signature_algorithm(alg)).map_err(rc("root CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(subject, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + lifetime;
    params.use_authority_key_identifier_extension = false;
    let cert = params.self_signed(&key).map_err(rc("root CA"))?;
    Ok(Ca {
        cert_pem: cert.pem(),
        key_pem: Secret::new(key.serialize_pem()),
    })
}

/// A fresh key pair and a CSR for it (CN only: the signer decides the SANs).
pub fn key_and_csr(cn: &str, alg: KeyAlgorithm) -> Result<(Secret, String), PkiError> {
    let key = KeyPair::generate_for(signature_algorithm(alg)).map_err(rc("member key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    let csr = params
        .serialize_request(&key)
        .map_err(rc("certificate request"))?;
    let pem = csr.pem().map_err(rc("certificate request"))?;
    Ok((Secret::new(key.serialize_pem()), pem))
}

/// The names a Vault member's bootstrap certificate carries (spec §6.2, fixed: the CN is
/// the cluster name, not an IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerNames {
    pub common_name: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// Signs a member's CSR with `ca` as a TLS server (and client: Vault members call each
/// other's API when joining) certificate valid for `lifetime`. The CSR's signature is
/// checked; its subject and extensions are replaced by `names`.
pub fn sign_server_csr(
    ca: &Ca,
    csr_pem: &str,
    subject: &Subject,
    names: &ServerNames,
    lifetime: Duration,
) -> Result<String, PkiError> {
    let mut csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(rc("member CSR"))?;
    let ca_key = KeyPair::from_pem(ca.key_pem.expose()).map_err(rc("root CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(rc("root CA"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(subject, &names.common_name);
    let mut sans = Vec::new();
    for d in &names.dns {
        sans.push(SanType::DnsName(
            d.clone().try_into().map_err(rc(format!("DNS name {d}")))?,
        ));
    }
    sans.extend(names.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + lifetime;
    params.use_authority_key_identifier_extension = true;
    csr.params = params;
    let cert = csr.signed_by(&issuer).map_err(rc("member certificate"))?;
    Ok(cert.pem())
}

/// What forge checks of an existing certificate before keeping it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub common_name: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    /// DER of the issuer's distinguished name, to compare with a CA's subject.
    pub issuer_der: Vec<u8>,
    pub subject_der: Vec<u8>,
    /// The certificate's public key (SubjectPublicKeyInfo DER).
    pub public_key_der: Vec<u8>,
}

/// Parses the first certificate of a PEM text.
pub fn inspect(pem_text: &str, what: &str) -> Result<CertInfo, PkiError> {
    use x509_parser::prelude::*;
    let perr = |detail: String| PkiError::Parse {
        what: what.to_string(),
        detail,
    };
    let (_, pem) = parse_x509_pem(pem_text.as_bytes()).map_err(|e| perr(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| perr(e.to_string()))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push((*d).to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(IpAddr::from([b[0], b[1], b[2], b[3]])),
                    16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(b);
                        ips.push(IpAddr::from(a));
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let (server_auth, client_auth) = match cert.extended_key_usage() {
        Ok(Some(e)) => (e.value.server_auth, e.value.client_auth),
        _ => (false, false),
    };
    Ok(CertInfo {
        common_name,
        dns,
        ips,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        server_auth,
        client_auth,
        issuer_der: cert.issuer().as_raw().to_vec(),
        subject_der: cert.subject().as_raw().to_vec(),
        public_key_der: cert.public_key().raw.to_vec(),
    })
}

/// The SubjectPublicKeyInfo DER of a PEM private key, to check a certificate matches it.
pub fn public_key_of(key_pem: &Secret) -> Result<Vec<u8>, PkiError> {
    let key = KeyPair::from_pem(key_pem.expose()).map_err(rc("private key"))?;
    Ok(rcgen::PublicKeyData::subject_public_key_info(&key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn subject() -> Subject {
        Subject {
            organization: Some("Example".into()),
            organizational_unit: Some("Platform".into()),
            country: Some("CH".into()),
            ..Subject::default()
        }
    }

    #[test]
    fn root_signs_a_member_csr_with_forge_chosen_names() {
        let root = generate_root(
            &subject(),
            "Platform Root CA 1",
            Duration::days(3650),
            KeyAlgorithm::EcdsaP384,
        )
        .unwrap();
        let ri = inspect(&root.cert_pem, "root").unwrap();
        assert!(ri.is_ca);
        assert_eq!(ri.common_name, "Platform Root CA 1");
        assert_eq!(ri.issuer_der, ri.subject_der);

        let (key, csr) = key_and_csr("ignored", KeyAlgorithm::EcdsaP256).unwrap();
        let names = ServerNames {
            common_name: "p-vault".into(),
            dns: vec!["p-vault".into(), "p-vault-abcde".into()],
            ips: vec!["203.0.113.7".parse().unwrap(), "::1".parse().unwrap()],
        };
        let pem = sign_server_csr(&root, &csr, &subject(), &names, Duration::days(90)).unwrap();
        let ci = inspect(&pem, "member").unwrap();
        assert_eq!(ci.common_name, "p-vault");
        assert_eq!(ci.dns, names.dns);
        assert_eq!(ci.ips, names.ips);
        assert!(!ci.is_ca && ci.server_auth && ci.client_auth);
        assert_eq!(ci.issuer_der, ri.subject_der);
        assert_eq!(ci.public_key_der, public_key_of(&key).unwrap());
        let days = (ci.not_after - ci.not_before) / 86400;
        assert_eq!(days, 90);
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let root =
            generate_root(&subject(), "R", Duration::days(1), KeyAlgorithm::EcdsaP256).unwrap();
        let (_, csr) = key_and_csr("x", KeyAlgorithm::EcdsaP256).unwrap();
        let names = ServerNames {
            common_name: "x".into(),
            dns: vec![],
            ips: vec![],
        };
        // Flip one byte inside the base64 body.
        let mut bytes = csr.into_bytes();
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bytes).unwrap();
        assert!(sign_server_csr(&root, &bad, &subject(), &names, Duration::days(1)).is_err());
    }
}
