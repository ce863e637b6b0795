//! The checks of platform.toml's values: names, zones, CIDRs, sizes, instance types, with
//! locations and hints.

use super::*;
use std::net::IpAddr;
use std::ops::Range;

use toml::Spanned;

use crate::diag::{TomlError, did_you_mean};

impl Checker<'_> {
    pub(super) fn err(&mut self, span: Range<usize>, msg: impl Into<String>) -> &mut TomlError {
        self.errors.push(self.file.error(span, msg));
        let last = self.errors.len() - 1;
        &mut self.errors[last]
    }

    pub(super) fn zone(&mut self, z: &Spanned<String>) {
        if !ZONES.contains(&z.get_ref().as_str()) {
            let help = match did_you_mean(z.get_ref(), ZONES.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("Exoscale zones: {}", ZONES.join(", ")),
            };
            let e = self.err(z.span(), format!("unknown zone `{}`", z.get_ref()));
            e.help = Some(help);
        }
    }

    pub(super) fn cidr(
        &mut self,
        c: &Spanned<String>,
        family: Option<bool>,
    ) -> Option<(IpAddr, u8)> {
        match parse_cidr(c.get_ref()) {
            Some(p) if family.is_none_or(|v4| p.0.is_ipv4() == v4) => Some(p),
            Some(_) => {
                let want = if family == Some(true) {
                    "an IPv4"
                } else {
                    "an IPv6"
                };
                self.err(c.span(), format!("`{}` is not {want} CIDR", c.get_ref()));
                None
            }
            None => {
                let e = self.err(c.span(), format!("`{}` is not a CIDR", c.get_ref()));
                e.help =
                    Some("write an address and a prefix length, e.g. `198.51.100.7/32`".into());
                None
            }
        }
    }

    pub(super) fn pool(
        &mut self,
        raw: Option<Spanned<RawPool>>,
        d: &PoolDefaults,
        what: &str,
    ) -> Pool {
        let raw = raw.map(Spanned::into_inner).unwrap_or_default();
        let image = raw
            .image
            .as_ref()
            .map_or_else(|| d.image.to_string(), |i| i.get_ref().clone());
        if let Some(i) = &raw.image
            && let Err(e) = crate::paths::check_name(i.get_ref())
        {
            self.err(i.span(), format!("invalid image name: {e}"));
        }
        let size = raw.size.as_ref().map_or(d.size, |s| *s.get_ref());
        let anti_affinity = raw.anti_affinity.unwrap_or(d.anti_affinity);
        if let Some(s) = &raw.size {
            if size == 0 {
                self.err(s.span(), format!("{what}: size must be at least 1"));
            } else if d.odd && size.is_multiple_of(2) {
                let e = self.err(s.span(), format!("{what}: size {size} is even"));
                e.help = Some(format!(
                    "a quorum of {size} members tolerates no more failures than {}; use an odd size",
                    size - 1
                ));
            } else if anti_affinity && size > ANTI_AFFINITY_LIMIT {
                let e = self.err(s.span(), format!("{what}: size {size} exceeds the anti-affinity limit of {ANTI_AFFINITY_LIMIT}"));
                e.help = Some("set `anti-affinity = false` for this pool, or split it".into());
            }
        }
        let instance_type = raw
            .instance_type
            .as_ref()
            .map_or_else(|| d.instance_type.to_string(), |t| t.get_ref().clone());
        if let Some(t) = &raw.instance_type {
            let (family, sz) = t
                .get_ref()
                .split_once('.')
                .unwrap_or(("standard", t.get_ref().as_str()));
            if !INSTANCE_FAMILIES.contains(&family) || !INSTANCE_SIZES.contains(&sz) {
                let candidates: Vec<String> = INSTANCE_SIZES
                    .iter()
                    .map(|s| format!("standard.{s}"))
                    .collect();
                let help = did_you_mean(t.get_ref(), candidates.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| "write FAMILY.SIZE, e.g. `standard.small`".into());
                let e = self.err(t.span(), format!("unknown instance type `{}`", t.get_ref()));
                e.help = Some(help);
            }
        }
        let disk_size = raw.disk_size.as_ref().map_or(d.disk_size, |s| *s.get_ref());
        if let Some(s) = &raw.disk_size
            && !(10..=51200).contains(&disk_size)
        {
            self.err(
                s.span(),
                format!("{what}: disk-size {disk_size} GiB is outside 10-51200"),
            );
        }
        Pool {
            image,
            size,
            instance_type,
            disk_size,
            anti_affinity,
        }
    }
}

impl Checker<'_> {
    pub(super) fn vault_cluster(&mut self, raw: &RawVault) -> VaultCluster {
        let shares = raw.key_shares.as_ref().map_or(5, |s| *s.get_ref());
        let threshold = raw.key_threshold.as_ref().map_or(3, |s| *s.get_ref());
        if let Some(s) = &raw.key_shares
            && shares == 0
        {
            self.err(s.span(), "key-shares must be at least 1");
        }
        if threshold == 0 || threshold > shares {
            let span = raw
                .key_threshold
                .as_ref()
                .or(raw.key_shares.as_ref())
                .map_or(0..0, Spanned::span);
            let e = self.err(
                span,
                format!("key-threshold {threshold} must be between 1 and key-shares ({shares})"),
            );
            e.help = Some("e.g. key-shares = 5, key-threshold = 3".into());
        }
        let mut members = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for m in &raw.member {
            let m = m.get_ref();
            if let Err(e) = crate::paths::check_name(m.name.get_ref()) {
                self.err(m.name.span(), format!("invalid member name: {e}"));
            }
            if !names.insert(m.name.get_ref().clone()) {
                self.err(
                    m.name.span(),
                    format!("member `{}` is listed twice", m.name.get_ref()),
                );
            }
            let addr = m.api_addr.get_ref();
            let ok = addr
                .strip_prefix("https://")
                .or_else(|| addr.strip_prefix("http://"))
                .and_then(|rest| rest.rsplit_once(':'))
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                let e = self.err(
                    m.api_addr.span(),
                    format!("`{addr}` is not a Vault API address"),
                );
                e.help = Some("write https://HOST:PORT, e.g. `https://10.0.0.5:8200`".into());
            }
            if let Some(ssh) = &m.ssh {
                let v = ssh.get_ref();
                let ok = v
                    .split_once('@')
                    .is_some_and(|(u, h)| !u.is_empty() && !h.is_empty());
                if !ok {
                    let e = self.err(ssh.span(), format!("`{v}` is not an SSH target"));
                    e.help =
                        Some("write USER@HOST or USER@HOST:PORT, e.g. `debian@10.0.0.5`".into());
                }
                if !m.tls_dir.get_ref().starts_with('/') {
                    self.err(
                        m.tls_dir.span(),
                        "tls-dir must be an absolute path on the SSH host",
                    );
                }
            }
            members.push(StaticMember {
                name: m.name.get_ref().clone(),
                api_addr: addr.trim_end_matches('/').to_string(),
                tls_dir: m.tls_dir.get_ref().clone(),
                ssh: m.ssh.as_ref().map(|s| s.get_ref().clone()),
                reload_command: m.reload_command.clone(),
            });
        }
        VaultCluster {
            key_shares: shares,
            key_threshold: threshold,
            members,
        }
    }

    pub(super) fn secrets(&mut self, raw: RawSecrets) -> Secrets {
        if let Some(r) = &raw.age_recipient {
            let v = r.get_ref();
            if !v.starts_with("age1") || v.len() < 60 {
                let e = self.err(r.span(), format!("`{v}` is not an age X25519 recipient"));
                e.help =
                    Some("make one with `age-keygen` and copy its `age1...` public key".into());
            }
        }
        Secrets {
            dir: raw.dir.map(Spanned::into_inner),
            age_recipient: raw.age_recipient.map(Spanned::into_inner),
        }
    }

    pub(super) fn key_algorithm(
        &mut self,
        v: Option<&Spanned<String>>,
        default: KeyAlgorithm,
    ) -> KeyAlgorithm {
        let Some(v) = v else { return default };
        match v.get_ref().as_str() {
            "ecdsa-p256" => KeyAlgorithm::EcdsaP256,
            "ecdsa-p384" => KeyAlgorithm::EcdsaP384,
            other => {
                let e = self.err(v.span(), format!("unknown key algorithm `{other}`"));
                e.help = Some(format!("use one of {}", KeyAlgorithm::NAMES.join(", ")));
                default
            }
        }
    }

    pub(super) fn pki(&mut self, raw: RawPki) -> Pki {
        if let Some(c) = &raw.country
            && (c.get_ref().len() != 2 || !c.get_ref().chars().all(|x| x.is_ascii_uppercase()))
        {
            self.err(
                c.span(),
                format!(
                    "country `{}` is not a two-letter code such as `CH`",
                    c.get_ref()
                ),
            );
        }
        let ca_key = self.key_algorithm(raw.ca_key.as_ref(), KeyAlgorithm::EcdsaP384);
        let leaf_key = self.key_algorithm(raw.leaf_key.as_ref(), KeyAlgorithm::EcdsaP256);
        let mut hours = |v: &Option<Spanned<u64>>, default: u64, per: u64, max: u64, what: &str| {
            let Some(n) = v else { return default * per };
            if *n.get_ref() == 0 || *n.get_ref() > max {
                self.err(n.span(), format!("{what} must be 1-{max}"));
            }
            n.get_ref() * per
        };
        let root_ca_hours = hours(&raw.root_ca_years, 30, 8760, 50, "root-ca-years");
        let ca_hours = hours(&raw.ca_years, 10, 8760, 30, "ca-years");
        let ica_hours = hours(&raw.ica_years, 5, 8760, 30, "ica-years");
        let cert_hours = hours(&raw.cert_hours, 96, 1, 8760, "cert-hours");
        let bootstrap_cert_hours =
            hours(&raw.bootstrap_cert_days, 90, 24, 825, "bootstrap-cert-days");
        Pki {
            subject: Subject {
                organization: raw.organization,
                organizational_unit: raw.organizational_unit,
                country: raw.country.map(Spanned::into_inner),
                province: raw.province,
                locality: raw.locality,
                street_address: raw.street_address,
                postal_code: raw.postal_code,
            },
            ca_key,
            leaf_key,
            root_ca_hours,
            ca_hours,
            ica_hours,
            cert_hours,
            bootstrap_cert_hours,
        }
    }
}

/// Resource names must leave room for suffixes within Exoscale's limits and work as DNS
/// labels and label values.
pub(super) fn check_platform_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty() || name.len() > 30 {
        return Err("must be 1-30 characters".into());
    }
    if !ok_chars || !name.starts_with(|c: char| c.is_ascii_lowercase()) || name.ends_with('-') {
        return Err("use lowercase letters, digits and `-`, starting with a letter".into());
    }
    Ok(())
}
