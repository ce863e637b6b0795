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
    /// Keys of earlier stages' resources this stage refers to (`sg-vault-clients`,
    /// `eip-vault`): read for their ids and attributes only, never changed or deleted.
    pub uses: &'static [&'static str],
}

impl Scope {
    fn reads(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind) || self.uses.iter().any(|k| used_kind(k) == Some(kind))
    }
}

/// The kind of a used key, by its prefix: only security groups, elastic IPs and SSH keys
/// can be used across stages.
fn used_kind(key: &str) -> Option<Kind> {
    [
        ("sg-", Kind::SecurityGroup),
        ("eip-", Kind::ElasticIp),
        ("ssh-", Kind::SshKey),
    ]
    .into_iter()
    .find(|(prefix, _)| key.starts_with(prefix))
    .map(|(_, k)| k)
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

/// What the list calls returned.
struct Lists {
    keys: Vec<forge_exoscale::types::SshKey>,
    networks: Vec<forge_exoscale::types::PrivateNetwork>,
    groups: Vec<forge_exoscale::types::SecurityGroup>,
    aags: Vec<forge_exoscale::types::AntiAffinityGroup>,
    eips: Vec<forge_exoscale::types::ElasticIp>,
    pools: Vec<forge_exoscale::types::InstancePool>,
    lbs: Vec<forge_exoscale::types::LoadBalancer>,
    types: Vec<forge_exoscale::types::InstanceType>,
}

impl Lists {
    /// The list calls of the stage's kinds, all at once (and the instance types, which
    /// every stage with pools needs).
    async fn fetch(client: &Client, scope: &Scope) -> Result<Self, DeployError> {
        let r = |k| scope.reads(k);
        let (keys, networks, groups, aags, eips, pools, lbs, types) = tokio::join!(
            list_if(r(Kind::SshKey), "listing SSH keys", client.list_ssh_keys()),
            list_if(
                r(Kind::PrivateNetwork),
                "listing private networks",
                client.list_private_networks()
            ),
            list_if(
                r(Kind::SecurityGroup),
                "listing security groups",
                client.list_security_groups()
            ),
            list_if(
                r(Kind::AntiAffinityGroup),
                "listing anti-affinity groups",
                client.list_anti_affinity_groups()
            ),
            list_if(
                r(Kind::ElasticIp),
                "listing elastic IPs",
                client.list_elastic_ips()
            ),
            list_if(
                r(Kind::InstancePool),
                "listing instance pools",
                client.list_instance_pools()
            ),
            list_if(
                r(Kind::LoadBalancer),
                "listing load balancers",
                client.list_load_balancers()
            ),
            async { api("listing instance types", client.list_instance_types().await) },
        );
        Ok(Self {
            keys: keys?,
            networks: networks?,
            groups: groups?,
            aags: aags?,
            eips: eips?,
            pools: pools?,
            lbs: lbs?,
            types: types?,
        })
    }
}

/// Builds an inventory from the lists: the resources that are the platform's, their ids,
/// and, once every id is known, the references between them.
struct Reader<'a> {
    platform: &'a str,
    scope: &'a Scope,
    inv: Inventory,
}

impl Reader<'_> {
    /// `<platform>-<suffix>` with a suffix of `names`: the suffix.
    fn owned(&self, name: &str, names: &[&str]) -> Option<String> {
        name.strip_prefix(self.platform)
            .and_then(|r| r.strip_prefix('-'))
            .filter(|r| names.contains(r))
            .map(str::to_string)
    }

    /// The key of a resource labelled as this platform's and stage's.
    fn labelled(&self, labels: &ApiLabels) -> Option<String> {
        let ours = labels.get(LABEL_PLATFORM).map(String::as_str) == Some(self.platform)
            && labels.get(LABEL_STAGE).map(String::as_str) == Some(self.scope.stage);
        ours.then(|| labels.get(LABEL_RESOURCE).cloned()).flatten()
    }

    /// The suffixes of the used keys of one prefix (`sg-`).
    fn used(&self, prefix: &str) -> Vec<&'static str> {
        self.scope
            .uses
            .iter()
            .filter_map(|k| k.strip_prefix(prefix))
            .collect()
    }

    /// The key of a resource of another stage of this platform that this stage uses.
    fn used_labelled(&self, labels: &ApiLabels) -> Option<String> {
        let key = labels.get(LABEL_RESOURCE)?;
        let ours = labels.get(LABEL_PLATFORM).map(String::as_str) == Some(self.platform)
            && labels.get(LABEL_STAGE).map(String::as_str) != Some(self.scope.stage)
            && self.scope.uses.contains(&key.as_str());
        ours.then(|| key.clone())
    }

    /// Records the id of `key`; with duplicates, the first one found is kept (its id and
    /// attributes are the ones references resolve to). Whether this one is kept.
    fn found(&mut self, key: &str, id: &str) -> bool {
        if self.inv.ids.contains_key(key) {
            return false;
        }
        self.inv.ids.insert(key.to_string(), id.to_string());
        true
    }

    fn push(&mut self, key: String, id: String, spec: Spec) {
        self.inv.actual.push(Actual { key, id, spec });
    }

    fn ip(&mut self, key: &str, ip: Option<&String>) {
        if let Some(ip) = ip {
            self.inv
                .attrs
                .entry(key.to_string())
                .or_default()
                .insert("ip".into(), ip.clone());
        }
    }

    fn ssh_keys(&mut self, keys: Vec<forge_exoscale::types::SshKey>) {
        for k in keys {
            if let Some(suffix) = self.owned(&k.name, &self.used("ssh-")) {
                self.found(&format!("ssh-{suffix}"), &k.name);
                continue;
            }
            if let Some(suffix) = self.owned(&k.name, self.scope.ssh_keys) {
                let key = format!("ssh-{suffix}");
                self.found(&key, &k.name);
                let spec = Spec::SshKey(SshKey {
                    name: k.name.clone(),
                    fingerprint: k.fingerprint.unwrap_or_default(),
                    public_key: None,
                });
                self.push(key, k.name, spec);
            }
        }
    }

    fn networks(&mut self, networks: Vec<forge_exoscale::types::PrivateNetwork>) {
        for n in networks {
            let Some(key) = self.labelled(&n.labels) else {
                continue;
            };
            self.found(&key, &n.id);
            let spec = Spec::PrivateNetwork(PrivateNetwork {
                name: n.name,
                description: n.description,
                netmask: n.netmask,
                start_ip: n.start_ip,
                end_ip: n.end_ip,
                labels: Labels(n.labels),
            });
            self.push(key, n.id, spec);
        }
    }

    /// The platform's groups (their rules are read once every id is known).
    fn groups(
        &mut self,
        groups: Vec<forge_exoscale::types::SecurityGroup>,
    ) -> Vec<(String, forge_exoscale::types::SecurityGroup)> {
        let mut owned = Vec::new();
        for g in groups {
            if let Some(suffix) = self.owned(&g.name, &self.used("sg-")) {
                self.found(&format!("sg-{suffix}"), &g.id);
                continue;
            }
            if let Some(suffix) = self.owned(&g.name, self.scope.security_groups) {
                let key = format!("sg-{suffix}");
                self.found(&key, &g.id);
                let spec = Spec::SecurityGroup(SecurityGroup {
                    name: g.name.clone(),
                    description: None,
                    external_sources: g.external_sources.iter().cloned().collect(),
                });
                self.push(key.clone(), g.id.clone(), spec);
                owned.push((key, g));
            }
        }
        owned
    }

    fn anti_affinity_groups(&mut self, aags: Vec<forge_exoscale::types::AntiAffinityGroup>) {
        for g in aags {
            if let Some(suffix) = self.owned(&g.name, self.scope.anti_affinity_groups) {
                let key = format!("aag-{suffix}");
                self.found(&key, &g.id);
                let spec = Spec::AntiAffinityGroup(AntiAffinityGroup {
                    name: g.name,
                    description: None,
                });
                self.push(key, g.id, spec);
            }
        }
    }

    fn elastic_ips(&mut self, eips: Vec<forge_exoscale::types::ElasticIp>) {
        for e in eips {
            if let Some(key) = self.used_labelled(&e.labels) {
                if self.found(&key, &e.id) {
                    self.ip(&key, e.ip.as_ref());
                }
                continue;
            }
            let Some(key) = self.labelled(&e.labels) else {
                continue;
            };
            if self.found(&key, &e.id) {
                self.ip(&key, e.ip.as_ref());
            }
            let name = format!(
                "{}-{}",
                self.platform,
                key.strip_prefix("eip-").unwrap_or(&key)
            );
            let spec = Spec::ElasticIp(ElasticIp {
                name,
                description: e.description,
                healthcheck: e.healthcheck,
                labels: Labels(e.labels),
            });
            self.push(key, e.id, spec);
        }
    }

    /// The platform's load balancers (their services are read once every id is known).
    fn load_balancers(
        &mut self,
        lbs: Vec<forge_exoscale::types::LoadBalancer>,
    ) -> Vec<(String, forge_exoscale::types::LoadBalancer)> {
        let mut owned = Vec::new();
        for l in lbs {
            let Some(key) = self.labelled(&l.labels) else {
                continue;
            };
            if self.found(&key, &l.id) {
                self.ip(&key, l.ip.as_ref());
            }
            let spec = Spec::LoadBalancer(LoadBalancer {
                name: l.name.clone(),
                description: l.description.clone(),
                labels: Labels(l.labels.clone()),
            });
            self.push(key.clone(), l.id.clone(), spec);
            owned.push((key, l));
        }
        owned
    }

    /// Labelled pools, and unlabelled ones of an adoptable name. The list may leave fields
    /// out, so each is read by itself.
    async fn pools(
        &mut self,
        client: &Client,
        pools: Vec<forge_exoscale::types::InstancePool>,
    ) -> Result<Vec<(String, forge_exoscale::types::InstancePool)>, DeployError> {
        let mut owned = Vec::new();
        for summary in pools {
            let adopt = self
                .owned(&summary.name, self.scope.adopt_pools)
                .filter(|_| !summary.labels.contains_key(LABEL_PLATFORM));
            let key = match (self.labelled(&summary.labels), adopt) {
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
            self.found(&key, &p.id);
            owned.push((key, p));
        }
        Ok(owned)
    }

    /// Every known id → its key, to write references as keys.
    fn references(&self) -> BTreeMap<String, String> {
        self.inv
            .ids
            .iter()
            .map(|(k, v)| (v.clone(), k.clone()))
            .collect()
    }
}

fn reference(keys: &BTreeMap<String, String>, id: &str) -> Ref {
    match keys.get(id) {
        Some(k) => Ref::Key(k.clone()),
        None => Ref::Foreign(id.to_string()),
    }
}

fn rule(
    group_key: &str,
    r: &forge_exoscale::types::SecurityGroupRule,
    keys: &BTreeMap<String, String>,
) -> Rule {
    let peer = match (&r.network, &r.security_group) {
        (Some(n), _) => Peer::Network(n.clone()),
        (None, Some(sg)) => match (&sg.id, &sg.name) {
            (Some(id), _) => Peer::Group(reference(keys, id)),
            (None, Some(name)) => Peer::Public(name.clone()),
            _ => Peer::Network("unknown".into()),
        },
        _ => Peer::Network("unknown".into()),
    };
    let port = |p: Option<i64>| p.and_then(|p| u16::try_from(p).ok());
    Rule {
        group: Ref::Key(group_key.to_string()),
        direction: Direction::parse(&r.flow_direction).unwrap_or(Direction::Ingress),
        protocol: Protocol::parse(&r.protocol),
        start_port: port(r.start_port),
        end_port: port(r.end_port),
        peer,
        description: r.description.clone(),
    }
}

fn pool(
    p: forge_exoscale::types::InstancePool,
    keys: &BTreeMap<String, String>,
    ssh_key: Option<Ref>,
) -> InstancePool {
    let refs =
        |v: &[IdRef]| -> BTreeSet<Ref> { v.iter().map(|r| reference(keys, &r.id)).collect() };
    InstancePool {
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
    }
}

fn service(
    lb_key: &str,
    s: &forge_exoscale::types::LoadBalancerService,
    keys: &BTreeMap<String, String>,
) -> LoadBalancerService {
    LoadBalancerService {
        name: s.name.clone(),
        load_balancer: Ref::Key(lb_key.to_string()),
        description: s.description.clone(),
        instance_pool: reference(keys, &s.instance_pool.id),
        protocol: s.protocol.clone(),
        strategy: s.strategy.clone(),
        port: u16::try_from(s.port).unwrap_or(0),
        target_port: u16::try_from(s.target_port).unwrap_or(0),
        healthcheck: Some(s.healthcheck.clone()),
    }
}

/// Reads the platform's resources of the stage's kinds.
pub async fn read(
    client: &Client,
    platform: &str,
    scope: &Scope,
) -> Result<Inventory, DeployError> {
    let lists = Lists::fetch(client, scope).await?;
    let mut r = Reader {
        platform,
        scope,
        inv: Inventory::default(),
    };
    for t in lists.types {
        if t.authorized != Some(false) {
            r.inv.instance_types.insert(t.name(), t.id);
        }
    }
    r.ssh_keys(lists.keys);
    r.networks(lists.networks);
    let groups = r.groups(lists.groups);
    r.anti_affinity_groups(lists.aags);
    r.elastic_ips(lists.eips);
    let lbs = r.load_balancers(lists.lbs);
    let pools = r.pools(client, lists.pools).await?;
    // Now every id is known: the resources that refer to others.
    let keys = r.references();
    for (group_key, g) in &groups {
        for api_rule in &g.rules {
            let spec = rule(group_key, api_rule, &keys);
            let id = format!("{}/{}", g.id, api_rule.id.clone().unwrap_or_default());
            r.push(spec.key(), id, Spec::SecurityGroupRule(spec));
        }
    }
    for (key, p) in pools {
        let ssh_key = p.ssh_key.as_ref().map(|k| {
            match r
                .owned(&k.name, scope.ssh_keys)
                .or_else(|| r.owned(&k.name, &r.used("ssh-")))
            {
                Some(s) => Ref::Key(format!("ssh-{s}")),
                None => Ref::Foreign(k.name.clone()),
            }
        });
        let id = p.id.clone();
        r.push(key, id, Spec::InstancePool(pool(p, &keys, ssh_key)));
    }
    for (lb_key, l) in &lbs {
        for s in &l.services {
            let id = format!("{}/{}", l.id, s.id.clone().unwrap_or_default());
            r.push(
                LoadBalancerService::key(lb_key, &s.name),
                id,
                Spec::LoadBalancerService(service(lb_key, s, &keys)),
            );
        }
    }
    Ok(r.inv)
}
