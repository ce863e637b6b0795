//! Platform::parse: the raw document, checked, with the spec's defaults made explicit.

use super::*;
use std::collections::BTreeMap;
use std::net::IpAddr;

use toml::Spanned;

use crate::diag::{Diagnostics, SourceFile};

impl Platform {
    pub fn parse(file: &SourceFile) -> Result<Self, Diagnostics> {
        let raw: Raw = toml::from_str(&file.text).map_err(|e| file.from_toml(&e))?;
        let mut c = Checker {
            file,
            errors: Vec::new(),
        };
        let p = raw.platform.into_inner();
        if let Err(e) = check_platform_name(p.name.get_ref()) {
            c.err(
                p.name.span(),
                format!("invalid platform name `{}`: {e}", p.name.get_ref()),
            );
        }
        c.zone(&p.zone);
        let name = p.name.get_ref().clone();
        let domain = p
            .domain
            .as_ref()
            .map_or_else(|| format!("{name}.internal"), |d| d.get_ref().clone());
        if let Some(d) = &p.domain
            && (d.get_ref().is_empty()
                || !d.get_ref().split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }))
        {
            c.err(d.span(), format!("`{}` is not a DNS domain", d.get_ref()));
        }
        if p.admin_networks.get_ref().is_empty() {
            let e = c.err(
                p.admin_networks.span(),
                "admin-networks is empty: nobody could reach SSH or the Vault API",
            );
            e.help = Some("list the operators' networks, e.g. `[\"198.51.100.7/32\"]`".into());
        }
        let mut admin = Vec::new();
        for n in p.admin_networks.get_ref() {
            if c.cidr(n, None).is_some() {
                admin.push(n.get_ref().clone());
            }
        }
        let ssh_public_key = p.ssh_public_key.as_ref().map(|k| k.get_ref().clone());

        let publish = match raw.publish {
            Some(pb) => {
                let pb = pb.into_inner();
                let b = pb.bucket.get_ref();
                let valid = (3..=63).contains(&b.len())
                    && b.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
                    })
                    && b.starts_with(|c: char| c.is_ascii_alphanumeric());
                if !valid {
                    c.err(
                        pb.bucket.span(),
                        format!(
                            "invalid bucket name `{b}`: 3-63 lowercase letters, digits, `-` or `.`"
                        ),
                    );
                }
                let zones = match &pb.zones {
                    Some(zs) => {
                        for z in zs {
                            c.zone(z);
                        }
                        zs.iter().map(|z| z.get_ref().clone()).collect()
                    }
                    None => vec![p.zone.get_ref().clone()],
                };
                let hours = pb.url_lifetime_hours.as_ref().map_or(2, |h| *h.get_ref());
                if let Some(h) = &pb.url_lifetime_hours
                    && !(1..=168).contains(&hours)
                {
                    c.err(
                        h.span(),
                        "url-lifetime-hours must be 1-168 (a presigned URL lives at most 7 days)",
                    );
                }
                Publish {
                    bucket: b.clone(),
                    zones,
                    url_lifetime_secs: hours * 3600,
                }
            }
            None => Publish {
                bucket: format!("{name}-templates"),
                zones: vec![p.zone.get_ref().clone()],
                url_lifetime_secs: 7200,
            },
        };

        let raw_vault = raw.vault.map(Spanned::into_inner).unwrap_or_default();
        let vault_cluster = c.vault_cluster(&raw_vault);
        let vault_pool = RawPool {
            image: raw_vault.image,
            size: raw_vault.size,
            instance_type: raw_vault.instance_type,
            disk_size: raw_vault.disk_size,
            anti_affinity: raw_vault.anti_affinity,
        };
        let secrets = c.secrets(raw.secrets.map(Spanned::into_inner).unwrap_or_default());
        let pki = c.pki(raw.pki.map(Spanned::into_inner).unwrap_or_default());
        let vault = c.pool(
            Some(Spanned::new(0..0, vault_pool)),
            &PoolDefaults {
                image: "vault",
                size: 3,
                instance_type: "standard.tiny",
                disk_size: 10,
                anti_affinity: true,
                odd: true,
            },
            "vault",
        );
        let etcd = c.pool(
            raw.etcd,
            &PoolDefaults {
                image: "etcd",
                size: 3,
                instance_type: "standard.small",
                disk_size: 20,
                anti_affinity: true,
                odd: true,
            },
            "etcd",
        );
        let k = raw.kubernetes.map(Spanned::into_inner).unwrap_or_default();
        let text = |v: &Option<Spanned<String>>, d: &str| {
            v.as_ref()
                .map_or_else(|| d.to_string(), |s| s.get_ref().clone())
        };
        let cluster_domain = text(&k.cluster_domain, &format!("kubernetes.{domain}"));
        let cidr = |c: &mut Checker,
                    v: &Option<Spanned<String>>,
                    d: &str,
                    v4: bool|
         -> (String, Option<(IpAddr, u8)>) {
            match v {
                Some(s) => (s.get_ref().clone(), c.cidr(s, Some(v4))),
                None => (d.to_string(), parse_cidr(d)),
            }
        };
        let (pod4, _) = cidr(&mut c, &k.pod_cidr_ipv4, "10.96.0.0/12", true);
        let (svc4, svc4_net) = cidr(&mut c, &k.service_cidr_ipv4, "10.80.0.0/12", true);
        let (pod6, _) = cidr(&mut c, &k.pod_cidr_ipv6, "fc00::2:0/112", false);
        let (svc6, _) = cidr(&mut c, &k.service_cidr_ipv6, "fc00::1:0/112", false);
        let service_ip =
            |c: &mut Checker, v: &Option<Spanned<String>>, d: &str, what: &str| -> String {
                let Some(s) = v else { return d.to_string() };
                match s.get_ref().parse::<IpAddr>() {
                    Ok(ip) if svc4_net.is_none_or(|n| in_cidr(ip, n)) => {}
                    Ok(_) => {
                        c.err(
                            s.span(),
                            format!("{what} {} is outside service-cidr-ipv4 {svc4}", s.get_ref()),
                        );
                    }
                    Err(_) => {
                        c.err(s.span(), format!("`{}` is not an IP address", s.get_ref()));
                    }
                }
                s.get_ref().clone()
            };
        let apiserver_service_ipv4 = service_ip(
            &mut c,
            &k.apiserver_service_ipv4,
            "10.80.0.1",
            "apiserver-service-ipv4",
        );
        let dns_service_ipv4 =
            service_ip(&mut c, &k.dns_service_ipv4, "10.80.0.2", "dns-service-ipv4");
        let mask = |c: &mut Checker, v: &Option<Spanned<u8>>, d: u8, max: u8| -> u8 {
            let Some(m) = v else { return d };
            if *m.get_ref() > max {
                c.err(
                    m.span(),
                    format!("a node CIDR mask size must be at most {max}"),
                );
            }
            *m.get_ref()
        };
        let node_cidr_mask_ipv4 = mask(&mut c, &k.node_cidr_mask_ipv4, 24, 32);
        let node_cidr_mask_ipv6 = mask(&mut c, &k.node_cidr_mask_ipv6, 120, 128);
        let control_plane = c.pool(
            k.control_plane,
            &PoolDefaults {
                image: "kube-controlplane",
                size: 2,
                instance_type: "standard.medium",
                disk_size: 20,
                anti_affinity: true,
                odd: false,
            },
            "kubernetes.control-plane",
        );
        let mut node_pools = BTreeMap::new();
        let node_defaults = PoolDefaults {
            image: "kube-node",
            size: 3,
            instance_type: "standard.small",
            disk_size: 20,
            anti_affinity: false,
            odd: false,
        };
        if k.node_pools.is_empty() {
            node_pools.insert(
                "general".to_string(),
                c.pool(None, &node_defaults, "kubernetes.node-pools.general"),
            );
        }
        for (pool_name, raw_pool) in k.node_pools {
            if let Err(e) = crate::paths::check_name(pool_name.get_ref()) {
                c.err(pool_name.span(), format!("invalid node pool name: {e}"));
            }
            let what = format!("kubernetes.node-pools.{}", pool_name.get_ref());
            node_pools.insert(
                pool_name.into_inner(),
                c.pool(Some(raw_pool), &node_defaults, &what),
            );
        }
        if !c.errors.is_empty() {
            return Err(Diagnostics::from(c.errors));
        }
        Ok(Platform {
            name,
            zone: p.zone.into_inner(),
            domain,
            admin_networks: admin,
            ssh_public_key,
            publish,
            vault,
            etcd,
            vault_cluster,
            secrets,
            pki,
            kubernetes: Kubernetes {
                cluster_domain,
                pod_cidr_ipv4: pod4,
                service_cidr_ipv4: svc4,
                pod_cidr_ipv6: pod6,
                service_cidr_ipv6: svc6,
                apiserver_service_ipv4,
                dns_service_ipv4,
                node_cidr_mask_ipv4,
                node_cidr_mask_ipv6,
                control_plane,
                node_pools,
            },
        })
    }
}
