//! Reading what exists: every resource of the stage's kinds that belongs to the platform,
//! found by forge's labels or, for kinds without labels, by the stage's names; no state
//! file. References between resources come back as [`Ref::Key`]s.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use forge_exoscale::Client;
use forge_exoscale::types::{IdRef, Labels as ApiLabels};

use crate::error::DeployError;
use crate::resource::{
    Actual, AntiAffinityGroup, Attributes, Direction, ElasticIp, InstancePool, Kind,
    LABEL_PLATFORM, LABEL_RESOURCE, LABEL_STAGE, Labels, LoadBalancer, LoadBalancerService, Peer,
    PrivateNetwork, Protocol, Ref, Rule, SecurityGroup, Spec, SshKey, Template, UserData,
};

/// What a stage manages: the kinds it reads, and the names (after `<platform>-`) of the
/// label-less resources that are its own.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub stage: &'static str,
    pub kinds: &'static [Kind],
    pub security_groups: &'static [&'static str],
    pub anti_affinity_groups: &'static [&'static str],
    pub ssh_keys: &'static [&'static str],
    /// Unlabelled pools of these names are adopted (a pool made by hand, or by the
    /// original's Terraform).
    pub adopt_pools: &'static [&'static str],
}

impl Scope {
    fn reads(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }
}

/// What exists.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub actual: Vec<Actual>,
    /// API ids by key.
    pub ids: BTreeMap<String, String>,
    /// Attributes other resources refer to (`eip-vault` → `ip`).
    pub attrs: Attributes,
    /// Instance type ids by `family.size`.
    pub instance_types: BTreeMap<String, String>,
}

pub(crate) fn api<T>(what: &str, r: Result<T, forge_exoscale::Error>) -> Result<T, DeployError> {
    r.map_err(|e| DeployError::api(what, e))
}

/// A list call of a kind the stage does not read: nothing, without a request.
async fn list_if<T, F>(wanted: bool, what: &str, f: F) -> Result<Vec<T>, DeployError>
where
    F: std::future::Future<Output = Result<Vec<T>, forge_exoscale::Error>>,
{
    if wanted {
        api(what, f.await)
    } else {
        Ok(Vec::new())
    }
}

/// The user-data the API returns, decoded (base64 of the text forge sent).
pub fn decode_user_data(b64: &str) -> String {
    match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => b64.to_string(),
    }
}

/// Reads the platform's resources of the stage's kinds.
pub async fn read(
    client: &Client,
    platform: &str,
    scope: &Scope,
) -> Result<Inventory, DeployError> {
    let (keys, networks, groups, aags, eips, pools, lbs, types) = tokio::join!(
        list_if(
            scope.reads(Kind::SshKey),
            "listing SSH keys",
            client.list_ssh_keys()
        ),
        list_if(
            scope.reads(Kind::PrivateNetwork),
            "listing private networks",
            client.list_private_networks()
        ),
        list_if(
            scope.reads(Kind::SecurityGroup),
            "listing security groups",
            client.list_security_groups()
        ),
        list_if(
            scope.reads(Kind::AntiAffinityGroup),
            "listing anti-affinity groups",
            client.list_anti_affinity_groups()
        ),
        list_if(
            scope.reads(Kind::ElasticIp),
            "listing elastic IPs",
            client.list_elastic_ips()
        ),
        list_if(
            scope.reads(Kind::InstancePool),
            "listing instance pools",
            client.list_instance_pools()
        ),
        list_if(
            scope.reads(Kind::LoadBalancer),
            "listing load balancers",
            client.list_load_balancers()
        ),
        async { api("listing instance types", client.list_instance_types().await) },
    );
    let (keys, networks, groups, aags, eips, pools, lbs, types) = (
        keys?, networks?, groups?, aags?, eips?, pools?, lbs?, types?,
    );
    let mut inv = Inventory::default();
    for t in types {
        if t.authorized != Some(false) {
            inv.instance_types.insert(t.name(), t.id);
        }
    }
    let owned = |name: &str, list: &[&str]| {
        name.strip_prefix(platform)
            .and_then(|r| r.strip_prefix('-'))
            .filter(|r| list.contains(r))
            .map(str::to_string)
    };
    let ours = |labels: &ApiLabels| {
        labels.get(LABEL_PLATFORM).map(String::as_str) == Some(platform)
            && labels.get(LABEL_STAGE).map(String::as_str) == Some(scope.stage)
    };
    let labelled_key = |labels: &ApiLabels| {
        ours(labels)
            .then(|| labels.get(LABEL_RESOURCE).cloned())
            .flatten()
    };
    let mut actual = Vec::new();
    // With duplicates, the first one found is kept: its id and attributes are the ones
    // references resolve to.
    let found = |inv: &mut Inventory, key: &str, id: &str| -> bool {
        if inv.ids.contains_key(key) {
            return false;
        }
        inv.ids.insert(key.to_string(), id.to_string());
        true
    };

    for k in keys {
        if let Some(suffix) = owned(&k.name, scope.ssh_keys) {
            let key = format!("ssh-{suffix}");
            found(&mut inv, &key, &k.name);
            actual.push(Actual {
                key,
                id: k.name.clone(),
                spec: Spec::SshKey(SshKey {
                    name: k.name,
                    fingerprint: k.fingerprint.unwrap_or_default(),
                    public_key: None,
                }),
            });
        }
    }
    for n in networks {
        let Some(key) = labelled_key(&n.labels) else {
            continue;
        };
        found(&mut inv, &key, &n.id);
        actual.push(Actual {
            key,
            id: n.id,
            spec: Spec::PrivateNetwork(PrivateNetwork {
                name: n.name,
                description: n.description,
                netmask: n.netmask,
                start_ip: n.start_ip,
                end_ip: n.end_ip,
                labels: Labels(n.labels),
            }),
        });
    }
    let mut owned_groups = Vec::new();
    for g in groups {
        if let Some(suffix) = owned(&g.name, scope.security_groups) {
            let key = format!("sg-{suffix}");
            found(&mut inv, &key, &g.id);
            actual.push(Actual {
                key: key.clone(),
                id: g.id.clone(),
                spec: Spec::SecurityGroup(SecurityGroup {
                    name: g.name.clone(),
                    description: None,
                    external_sources: g.external_sources.iter().cloned().collect(),
                }),
            });
            owned_groups.push((key, g));
        }
    }
    for g in aags {
        if let Some(suffix) = owned(&g.name, scope.anti_affinity_groups) {
            let key = format!("aag-{suffix}");
            found(&mut inv, &key, &g.id);
            actual.push(Actual {
                key,
                id: g.id,
                spec: Spec::AntiAffinityGroup(AntiAffinityGroup {
                    name: g.name,
                    description: None,
                }),
            });
        }
    }
    for e in eips {
        let Some(key) = labelled_key(&e.labels) else {
            continue;
        };
        if found(&mut inv, &key, &e.id)
            && let Some(ip) = &e.ip
        {
            inv.attrs
                .entry(key.clone())
                .or_default()
                .insert("ip".into(), ip.clone());
        }
        let name = format!("{platform}-{}", key.strip_prefix("eip-").unwrap_or(&key));
        actual.push(Actual {
            key,
            id: e.id,
            spec: Spec::ElasticIp(ElasticIp {
                name,
                description: e.description,
                healthcheck: e.healthcheck,
                labels: Labels(e.labels),
            }),
        });
    }
    let mut owned_lbs = Vec::new();
    for l in lbs {
        let Some(key) = labelled_key(&l.labels) else {
            continue;
        };
        if found(&mut inv, &key, &l.id)
            && let Some(ip) = &l.ip
        {
            inv.attrs
                .entry(key.clone())
                .or_default()
                .insert("ip".into(), ip.clone());
        }
        actual.push(Actual {
            key: key.clone(),
            id: l.id.clone(),
            spec: Spec::LoadBalancer(LoadBalancer {
                name: l.name.clone(),
                description: l.description.clone(),
                labels: Labels(l.labels.clone()),
            }),
        });
        owned_lbs.push((key, l));
    }

    // Pools: labelled ones, and unlabelled ones of an adoptable name. The list may leave
    // fields out, so each is read by itself.
    let mut owned_pools = Vec::new();
    for summary in pools {
        let adopt = owned(&summary.name, scope.adopt_pools)
            .filter(|_| !summary.labels.contains_key(LABEL_PLATFORM));
        let key = match (labelled_key(&summary.labels), adopt) {
            (Some(k), _) => k,
            (None, Some(suffix)) => format!("pool-{suffix}"),
            _ => continue,
        };
        let p = match client.get_instance_pool(&summary.id).await {
            Ok(p) => p,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                return Err(DeployError::api(
                    format!("reading instance pool {}", summary.name),
                    e,
                ));
            }
        };
        found(&mut inv, &key, &p.id);
        owned_pools.push((key, p));
    }

    // Every id → key, to write references as keys.
    let key_of: BTreeMap<String, String> = inv
        .ids
        .iter()
        .map(|(k, v)| (v.clone(), k.clone()))
        .collect();
    let reference = |id: &str| match key_of.get(id) {
        Some(k) => Ref::Key(k.clone()),
        None => Ref::Foreign(id.to_string()),
    };
    let refs = |v: &[IdRef]| -> BTreeSet<Ref> { v.iter().map(|r| reference(&r.id)).collect() };

    for (group_key, g) in &owned_groups {
        for r in &g.rules {
            let peer = match (&r.network, &r.security_group) {
                (Some(n), _) => Peer::Network(n.clone()),
                (None, Some(sg)) => match (&sg.id, &sg.name) {
                    (Some(id), _) => Peer::Group(reference(id)),
                    (None, Some(name)) => Peer::Public(name.clone()),
                    _ => Peer::Network("unknown".into()),
                },
                _ => Peer::Network("unknown".into()),
            };
            let port = |p: Option<i64>| p.and_then(|p| u16::try_from(p).ok());
            let rule = Rule {
                group: Ref::Key(group_key.clone()),
                direction: Direction::parse(&r.flow_direction).unwrap_or(Direction::Ingress),
                protocol: Protocol::parse(&r.protocol),
                start_port: port(r.start_port),
                end_port: port(r.end_port),
                peer,
                description: r.description.clone(),
            };
            actual.push(Actual {
                key: rule.key(),
                id: format!("{}/{}", g.id, r.id.clone().unwrap_or_default()),
                spec: Spec::SecurityGroupRule(rule),
            });
        }
    }
    for (key, p) in owned_pools {
        let ssh_key = p
            .ssh_key
            .as_ref()
            .map(|k| match owned(&k.name, scope.ssh_keys) {
                Some(s) => Ref::Key(format!("ssh-{s}")),
                None => Ref::Foreign(k.name.clone()),
            });
        actual.push(Actual {
            key,
            id: p.id.clone(),
            spec: Spec::InstancePool(InstancePool {
                name: p.name,
                description: p.description,
                size: p.size.unwrap_or(0),
                instance_type: p.instance_type.map(|r| r.id),
                template: p.template.map(|r| Template::Id(r.id)),
                disk_size: p.disk_size,
                instance_prefix: p.instance_prefix,
                public_ip_assignment: p.public_ip_assignment,
                anti_affinity_groups: refs(&p.anti_affinity_groups),
                elastic_ips: refs(&p.elastic_ips),
                private_networks: refs(&p.private_networks),
                security_groups: refs(&p.security_groups),
                ssh_key,
                user_data: p
                    .user_data
                    .as_deref()
                    .map(|u| UserData(decode_user_data(u))),
                labels: Labels(p.labels),
            }),
        });
    }
    for (lb_key, l) in &owned_lbs {
        for s in &l.services {
            actual.push(Actual {
                key: LoadBalancerService::key(lb_key, &s.name),
                id: format!("{}/{}", l.id, s.id.clone().unwrap_or_default()),
                spec: Spec::LoadBalancerService(LoadBalancerService {
                    name: s.name.clone(),
                    load_balancer: Ref::Key(lb_key.clone()),
                    description: s.description.clone(),
                    instance_pool: reference(&s.instance_pool.id),
                    protocol: s.protocol.clone(),
                    strategy: s.strategy.clone(),
                    port: u16::try_from(s.port).unwrap_or(0),
                    target_port: u16::try_from(s.target_port).unwrap_or(0),
                    healthcheck: Some(s.healthcheck.clone()),
                }),
            });
        }
    }
    inv.actual = actual;
    Ok(inv)
}
