//! Reading what exists (found by name and labels, no state file) and carrying out a plan.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use forge_exoscale::Client;
use forge_exoscale::types::*;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::base::rule_key;
use crate::error::DeployError;
use crate::plan::{Action, Change, Plan};
use crate::resource::{
    Actual, Desired, Kind, LABEL_PLATFORM, LABEL_RESOURCE, LABEL_STAGE, at, flatten,
};

/// Names (after `<platform>-`) of the label-less resources each kind may own in the base
/// stage; together with the labels this is how forge recognises its resources.
pub const OWNED_SECURITY_GROUPS: &[&str] = &["operator", "vault-server", "vault-clients"];
pub const OWNED_ANTI_AFFINITY_GROUPS: &[&str] = &["vault"];
pub const OWNED_SSH_KEYS: &[&str] = &["management"];
pub const OWNED_POOLS: &[&str] = &["vault"];

/// What exists.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub actual: Vec<Actual>,
    /// API ids by key.
    pub ids: BTreeMap<String, String>,
    /// Attributes other resources refer to (`eip-vault` → `ip`).
    pub attrs: BTreeMap<String, BTreeMap<String, Value>>,
    /// Instance type ids by `family.size`.
    pub instance_types: BTreeMap<String, String>,
}

pub(crate) fn api<T>(what: &str, r: Result<T, forge_exoscale::Error>) -> Result<T, DeployError> {
    r.map_err(|e| DeployError::api(what, e))
}

/// Reads the platform's resources.
pub async fn read(client: &Client, platform: &str, stage: &str) -> Result<Inventory, DeployError> {
    let (keys, groups, aags, eips, pools, types) = tokio::join!(
        client.list_ssh_keys(),
        client.list_security_groups(),
        client.list_anti_affinity_groups(),
        client.list_elastic_ips(),
        client.list_instance_pools(),
        client.list_instance_types(),
    );
    let (keys, groups, aags, eips, pools, types) = (
        api("listing SSH keys", keys)?,
        api("listing security groups", groups)?,
        api("listing anti-affinity groups", aags)?,
        api("listing elastic IPs", eips)?,
        api("listing instance pools", pools)?,
        api("listing instance types", types)?,
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
    let mut actual = Vec::new();
    for k in keys {
        if let Some(suffix) = owned(&k.name, OWNED_SSH_KEYS) {
            let mut fields = BTreeMap::new();
            fields.insert("fingerprint".into(), json!(k.fingerprint));
            inv.ids.insert(format!("ssh-{suffix}"), k.name.clone());
            actual.push(Actual {
                key: format!("ssh-{suffix}"),
                kind: Kind::SshKey,
                name: k.name.clone(),
                id: k.name,
                fields,
            });
        }
    }
    let mut owned_groups = Vec::new();
    for g in groups {
        if let Some(suffix) = owned(&g.name, OWNED_SECURITY_GROUPS) {
            let key = format!("sg-{suffix}");
            inv.ids.insert(key.clone(), g.id.clone());
            let mut sources = g.external_sources.clone();
            sources.sort();
            let mut fields = BTreeMap::new();
            fields.insert("external-sources".into(), json!(sources));
            actual.push(Actual {
                key: key.clone(),
                kind: Kind::SecurityGroup,
                name: g.name.clone(),
                id: g.id.clone(),
                fields,
            });
            owned_groups.push((key, g));
        }
    }
    for g in aags {
        if let Some(suffix) = owned(&g.name, OWNED_ANTI_AFFINITY_GROUPS) {
            let key = format!("aag-{suffix}");
            inv.ids.insert(key.clone(), g.id.clone());
            actual.push(Actual {
                key,
                kind: Kind::AntiAffinityGroup,
                name: g.name,
                id: g.id,
                fields: BTreeMap::new(),
            });
        }
    }
    let ours = |labels: &Labels| {
        labels.get(LABEL_PLATFORM).map(String::as_str) == Some(platform)
            && labels.get(LABEL_STAGE).map(String::as_str) == Some(stage)
    };
    for e in eips {
        if !ours(&e.labels) {
            continue;
        }
        let Some(key) = e.labels.get(LABEL_RESOURCE).cloned() else {
            continue;
        };
        inv.ids.entry(key.clone()).or_insert_with(|| e.id.clone());
        let mut fields = BTreeMap::new();
        fields.insert("description".into(), json!(e.description));
        if let Some(hc) = &e.healthcheck {
            flatten(
                "healthcheck",
                &serde_json::to_value(hc).unwrap_or(Value::Null),
                &mut fields,
            );
        }
        fields.insert("labels".into(), json!(e.labels));
        // With duplicates, the attributes are those of the one kept (the first found).
        if let Some(ip) = e.ip.as_ref().filter(|_| inv.ids.get(&key) == Some(&e.id)) {
            inv.attrs
                .entry(key.clone())
                .or_default()
                .insert("ip".into(), json!(ip));
        }
        let name = format!("{platform}-{}", key.strip_prefix("eip-").unwrap_or(&key));
        actual.push(Actual {
            key,
            kind: Kind::ElasticIp,
            name,
            id: e.id,
            fields,
        });
    }
    // Every id → key, to write references as `@key`.
    let key_of: BTreeMap<String, String> = inv
        .ids
        .iter()
        .map(|(k, v)| (v.clone(), k.clone()))
        .collect();
    let reference = |id: &str| key_of.get(id).map_or_else(|| format!("id:{id}"), |k| at(k));
    for (group_key, g) in &owned_groups {
        for r in &g.rules {
            let peer = match (&r.network, &r.security_group) {
                (Some(n), _) => n.clone(),
                (None, Some(sg)) => match (&sg.id, &sg.name) {
                    (Some(id), _) => reference(id),
                    (None, Some(name)) => format!("public:{name}"),
                    _ => "unknown".into(),
                },
                _ => "unknown".into(),
            };
            let port = |p: Option<i64>| p.and_then(|p| u16::try_from(p).ok());
            let key = rule_key(
                group_key,
                &r.flow_direction,
                &r.protocol,
                port(r.start_port),
                port(r.end_port),
                &peer,
            );
            let mut fields = BTreeMap::new();
            fields.insert("group".into(), json!(at(group_key)));
            fields.insert("flow-direction".into(), json!(r.flow_direction));
            fields.insert("protocol".into(), json!(r.protocol));
            if let Some(p) = r.start_port {
                fields.insert("start-port".into(), json!(p));
            }
            if let Some(p) = r.end_port {
                fields.insert("end-port".into(), json!(p));
            }
            if r.network.is_some() {
                fields.insert("network".into(), json!(peer));
            } else {
                fields.insert("security-group".into(), json!(peer));
            }
            let id = format!("{}/{}", g.id, r.id.clone().unwrap_or_default());
            actual.push(Actual {
                key,
                kind: Kind::SecurityGroupRule,
                name: group_key.clone(),
                id,
                fields,
            });
        }
    }
    for summary in pools {
        let labelled = ours(&summary.labels);
        let adopt = owned(&summary.name, OWNED_POOLS)
            .filter(|_| !summary.labels.contains_key(LABEL_PLATFORM));
        let key = match (labelled, adopt) {
            (true, _) => summary.labels.get(LABEL_RESOURCE).cloned(),
            (false, Some(suffix)) => Some(format!("pool-{suffix}")),
            _ => None,
        };
        let Some(key) = key else { continue };
        // The list may leave fields out; read the pool itself.
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
        let refs = |v: &[IdRef]| -> Value {
            json!(v.iter().map(|r| reference(&r.id)).collect::<Vec<_>>())
        };
        let mut fields = BTreeMap::new();
        fields.insert("description".into(), json!(p.description));
        fields.insert("size".into(), json!(p.size));
        fields.insert(
            "instance-type".into(),
            json!(p.instance_type.as_ref().map(|r| r.id.clone())),
        );
        fields.insert(
            "template".into(),
            json!(p.template.as_ref().map(|r| r.id.clone())),
        );
        fields.insert("disk-size".into(), json!(p.disk_size));
        fields.insert("instance-prefix".into(), json!(p.instance_prefix));
        fields.insert("public-ip-assignment".into(), json!(p.public_ip_assignment));
        fields.insert("security-groups".into(), refs(&p.security_groups));
        fields.insert("elastic-ips".into(), refs(&p.elastic_ips));
        fields.insert("anti-affinity-groups".into(), refs(&p.anti_affinity_groups));
        let ssh = p
            .ssh_key
            .as_ref()
            .map(|k| match owned(&k.name, OWNED_SSH_KEYS) {
                Some(s) => at(&format!("ssh-{s}")),
                None => k.name.clone(),
            });
        fields.insert("ssh-key".into(), json!(ssh));
        let user_data = p.user_data.as_deref().map(decode_user_data);
        fields.insert("user-data".into(), json!(user_data));
        fields.insert("labels".into(), json!(p.labels));
        inv.ids.entry(key.clone()).or_insert_with(|| p.id.clone());
        actual.push(Actual {
            key,
            kind: Kind::InstancePool,
            name: p.name,
            id: p.id,
            fields,
        });
    }
    inv.actual = actual;
    Ok(inv)
}

fn decode_user_data(b64: &str) -> String {
    match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => b64.to_string(),
    }
}

/// Replaces `${key.attr}` in string values with known attributes; unknown ones stay.
pub fn resolve(d: &Desired, attrs: &BTreeMap<String, BTreeMap<String, Value>>) -> Desired {
    let mut d = d.clone();
    for v in d.fields.values_mut() {
        if let Value::String(s) = v
            && s.contains("${")
        {
            let mut out = s.clone();
            for (key, map) in attrs {
                for (attr, val) in map {
                    let text = val
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| val.to_string());
                    out = out.replace(&format!("${{{key}.{attr}}}"), &text);
                }
            }
            *s = out;
        }
    }
    d
}

/// Ids and attributes as they change during an apply.
#[derive(Debug, Default)]
struct Live {
    ids: BTreeMap<String, String>,
    attrs: BTreeMap<String, BTreeMap<String, Value>>,
}

/// A progress line for the terminal (`+ created instance-pool paas-vault`).
pub type Reporter = Arc<dyn Fn(&str) + Send + Sync>;

/// Carries out `plan`: deletes (dependents first), then creates and updates in
/// dependency order, up to `jobs` calls at a time. Returns the failures, by key.
pub async fn execute(
    client: &Client,
    plan: &Plan,
    inv: &Inventory,
    jobs: usize,
    report: &Reporter,
) -> Vec<(String, DeployError)> {
    let live = Arc::new(Mutex::new(Live {
        ids: inv.ids.clone(),
        attrs: inv.attrs.clone(),
    }));
    let mut failures = Vec::new();
    let mut failed_keys: Vec<String> = Vec::new();
    let kinds = [
        Kind::SshKey,
        Kind::SecurityGroup,
        Kind::SecurityGroupRule,
        Kind::AntiAffinityGroup,
        Kind::ElasticIp,
        Kind::InstancePool,
    ];
    // Deletes (and the first half of replaces), dependents first.
    for kind in kinds.iter().rev() {
        let batch: Vec<&Change> = plan
            .changes
            .iter()
            .filter(|c| c.kind == *kind && matches!(c.action, Action::Delete | Action::Replace))
            .collect();
        for (k, e) in run_batch(batch, jobs, |c| {
            let live = Arc::clone(&live);
            let report = Arc::clone(report);
            async move {
                delete(client, c).await?;
                if let Ok(mut l) = live.lock() {
                    l.ids.remove(&c.key);
                    l.attrs.remove(&c.key);
                }
                report(&format!("- deleted {} {} ({})", c.kind, c.name, c.key));
                Ok(())
            }
        })
        .await
        {
            failed_keys.push(k.clone());
            failures.push((k, e));
        }
    }
    // Creates and updates, dependencies first.
    for kind in kinds {
        let batch: Vec<&Change> = plan
            .changes
            .iter()
            .filter(|c| {
                c.kind == kind
                    && matches!(c.action, Action::Create | Action::Update | Action::Replace)
            })
            .filter(|c| !(c.action == Action::Replace && failed_keys.contains(&c.key)))
            .collect();
        failures.extend(
            run_batch(batch, jobs, |c| {
                let live = Arc::clone(&live);
                let report = Arc::clone(report);
                async move {
                    create_or_update(client, c, &live).await?;
                    let verb = if c.action == Action::Update {
                        "~ updated"
                    } else {
                        "+ created"
                    };
                    report(&format!("{verb} {} {} ({})", c.kind, c.name, c.key));
                    Ok(())
                }
            })
            .await,
        );
    }
    failures
}

/// Runs `action` on each change, `jobs` at a time; the failures, by key.
async fn run_batch<'a, F, Fut>(
    batch: Vec<&'a Change>,
    jobs: usize,
    action: F,
) -> Vec<(String, DeployError)>
where
    F: Fn(&'a Change) -> Fut,
    Fut: std::future::Future<Output = Result<(), DeployError>>,
{
    futures_util::stream::iter(batch)
        .map(|c| {
            let fut = action(c);
            async move { (c.key.clone(), fut.await) }
        })
        .buffer_unordered(jobs.max(1))
        .filter_map(|(k, r)| async move { r.err().map(|e| (k, e)) })
        .collect()
        .await
}

async fn delete(client: &Client, c: &Change) -> Result<(), DeployError> {
    let Some(id) = &c.id else { return Ok(()) };
    let what = format!("deleting {} {}", c.kind, c.name);
    let r = match c.kind {
        Kind::SshKey => client.delete_ssh_key(id).await,
        Kind::SecurityGroup => client.delete_security_group(id).await,
        Kind::SecurityGroupRule => {
            let (group, rule) = id.split_once('/').unwrap_or((id, ""));
            client.delete_security_group_rule(group, rule).await
        }
        Kind::AntiAffinityGroup => client.delete_anti_affinity_group(id).await,
        Kind::ElasticIp => client.delete_elastic_ip(id).await,
        Kind::InstancePool => client.delete_instance_pool(id).await,
    };
    match r {
        Ok(_) => Ok(()),
        // Already gone: the goal is reached.
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(DeployError::api(what, e)),
    }
}

/// An external source added (or removed) already is the goal reached: a retried call
/// whose first answer was lost meets 409 "already an external source" (or 404).
fn source_goal<T>(
    r: Result<T, forge_exoscale::Error>,
    reached: u16,
) -> Result<(), forge_exoscale::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.status() == Some(reached) => Ok(()),
        Err(e) => Err(e),
    }
}

fn id_of(live: &Mutex<Live>, reference: &Value) -> Result<String, DeployError> {
    let s = reference.as_str().unwrap_or_default();
    let key = s
        .strip_prefix('@')
        .ok_or_else(|| DeployError::Input(format!("bad reference {s}")))?;
    let l = live
        .lock()
        .map_err(|_| DeployError::Input("internal lock poisoned".into()))?;
    l.ids.get(key).cloned().ok_or_else(|| {
        DeployError::Input(format!(
            "{key} does not exist yet (it failed earlier in this round)"
        ))
    })
}

fn ids_of(live: &Mutex<Live>, v: Option<&Value>) -> Result<Vec<IdRef>, DeployError> {
    let mut out = Vec::new();
    for r in v.and_then(Value::as_array).into_iter().flatten() {
        out.push(IdRef::new(id_of(live, r)?));
    }
    Ok(out)
}

fn s(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn labels_of(v: Option<&Value>) -> Option<Labels> {
    v.and_then(|l| serde_json::from_value(l.clone()).ok())
}

fn healthcheck(d: &Desired) -> Option<ElasticIpHealthcheck> {
    let mut hc = serde_json::Map::new();
    for (k, v) in &d.fields {
        if let Some(sub) = k.strip_prefix("healthcheck.") {
            hc.insert(sub.to_string(), v.clone());
        }
    }
    if hc.is_empty() {
        None
    } else {
        serde_json::from_value(Value::Object(hc)).ok()
    }
}

fn encode_user_data(text: &str) -> Result<String, DeployError> {
    if text.contains("${") {
        return Err(DeployError::Input(
            "user-data still refers to a resource that does not exist yet".into(),
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    if b64.len() > crate::base::USER_DATA_LIMIT {
        return Err(DeployError::Input(format!(
            "user-data is {} bytes in base64, over Exoscale's limit of {}",
            b64.len(),
            crate::base::USER_DATA_LIMIT
        )));
    }
    Ok(b64)
}

fn pool_spec(
    d: &Desired,
    live: &Mutex<Live>,
    only: Option<&[String]>,
) -> Result<InstancePoolSpec, DeployError> {
    let want = |f: &str| only.is_none_or(|o| o.iter().any(|x| x == f));
    let f = &d.fields;
    let mut spec = InstancePoolSpec::default();
    if want("description") {
        spec.description = s(f.get("description"));
    }
    if want("instance-type") {
        spec.instance_type = s(f.get("instance-type")).map(IdRef::new);
    }
    if want("template") {
        spec.template = s(f.get("template")).map(IdRef::new);
    }
    if want("disk-size") {
        spec.disk_size = f.get("disk-size").and_then(Value::as_i64);
    }
    if want("instance-prefix") {
        spec.instance_prefix = s(f.get("instance-prefix"));
    }
    if want("public-ip-assignment") {
        spec.public_ip_assignment = s(f.get("public-ip-assignment"));
    }
    if want("security-groups") {
        spec.security_groups = Some(ids_of(live, f.get("security-groups"))?);
    }
    if want("elastic-ips") {
        spec.elastic_ips = Some(ids_of(live, f.get("elastic-ips"))?);
    }
    if want("anti-affinity-groups") && only.is_none() {
        spec.anti_affinity_groups = Some(ids_of(live, f.get("anti-affinity-groups"))?);
    }
    if want("ssh-key")
        && let Some(k) = f.get("ssh-key").filter(|v| !v.is_null())
    {
        // An SSH key's id is its name.
        spec.ssh_key = Some(NameRef {
            name: id_of(live, k)?,
        });
    }
    if want("user-data")
        && let Some(u) = s(f.get("user-data"))
    {
        spec.user_data = Some(encode_user_data(&u)?);
    }
    if want("labels") {
        spec.labels = labels_of(f.get("labels"));
    }
    Ok(spec)
}

async fn create_or_update(
    client: &Client,
    c: &Change,
    live: &Arc<Mutex<Live>>,
) -> Result<(), DeployError> {
    let Some(d0) = &c.desired else { return Ok(()) };
    let attrs = live.lock().map(|l| l.attrs.clone()).unwrap_or_default();
    let d = resolve(d0, &attrs);
    let what = format!(
        "{} {} {}",
        if c.action == Action::Update {
            "updating"
        } else {
            "creating"
        },
        c.kind,
        c.name
    );
    let err = |e| DeployError::api(what.clone(), e);
    let remember = |id: String| {
        if let Ok(mut l) = live.lock() {
            l.ids.insert(c.key.clone(), id);
        }
    };
    let creating = c.action != Action::Update;
    match d.kind {
        Kind::SshKey => {
            let body = CreateSshKey {
                name: d.name.clone(),
                public_key: s(d.create_only.get("public-key")).unwrap_or_default(),
            };
            client.create_ssh_key(&body).await.map_err(err)?;
            remember(d.name.clone());
        }
        Kind::SecurityGroup => {
            let id = if creating {
                let body = CreateNamed {
                    name: d.name.clone(),
                    description: s(d.create_only.get("description")),
                };
                let r = client.create_security_group(&body).await.map_err(err)?;
                remember(r.id.clone());
                r.id
            } else {
                c.id.clone().unwrap_or_default()
            };
            let want: Vec<String> = d
                .fields
                .get("external-sources")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            let have: Vec<String> = c
                .actual
                .as_ref()
                .filter(|_| !creating)
                .and_then(|a| a.fields.get("external-sources"))
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            for cidr in want.iter().filter(|w| !have.contains(w)) {
                source_goal(client.security_group_source(&id, cidr, true).await, 409)
                    .map_err(err)?;
            }
            for cidr in have.iter().filter(|h| !want.contains(h)) {
                source_goal(client.security_group_source(&id, cidr, false).await, 404)
                    .map_err(err)?;
            }
        }
        Kind::SecurityGroupRule => {
            let group = id_of(live, d.fields.get("group").unwrap_or(&Value::Null))?;
            let peer = match d.fields.get("security-group") {
                Some(r) => Some(SecurityGroupPeer {
                    id: Some(id_of(live, r)?),
                    name: None,
                    visibility: None,
                }),
                None => None,
            };
            let rule = SecurityGroupRule {
                id: None,
                description: s(d.create_only.get("description")),
                flow_direction: s(d.fields.get("flow-direction")).unwrap_or_default(),
                protocol: s(d.fields.get("protocol")).unwrap_or_default(),
                start_port: d.fields.get("start-port").and_then(Value::as_i64),
                end_port: d.fields.get("end-port").and_then(Value::as_i64),
                network: s(d.fields.get("network")),
                security_group: peer,
            };
            client
                .add_security_group_rule(&group, &rule)
                .await
                .map_err(err)?;
        }
        Kind::AntiAffinityGroup => {
            let body = CreateNamed {
                name: d.name.clone(),
                description: s(d.create_only.get("description")),
            };
            let r = client
                .create_anti_affinity_group(&body)
                .await
                .map_err(err)?;
            remember(r.id);
        }
        Kind::ElasticIp => {
            let body = ElasticIpSpec {
                addressfamily: creating.then(|| "inet4".to_string()),
                description: s(d.fields.get("description")),
                healthcheck: healthcheck(&d),
                labels: labels_of(d.fields.get("labels")),
            };
            let id = if creating {
                let r = client.create_elastic_ip(&body).await.map_err(err)?;
                remember(r.id.clone());
                r.id
            } else {
                let id = c.id.clone().unwrap_or_default();
                client.update_elastic_ip(&id, &body).await.map_err(err)?;
                id
            };
            let eip = client.get_elastic_ip(&id).await.map_err(err)?;
            if let (Some(ip), Ok(mut l)) = (eip.ip, live.lock()) {
                l.attrs
                    .entry(c.key.clone())
                    .or_default()
                    .insert("ip".into(), json!(ip));
            }
        }
        Kind::InstancePool => {
            if creating {
                let mut spec = pool_spec(&d, live, None)?;
                spec.name = Some(d.name.clone());
                spec.size = d.fields.get("size").and_then(Value::as_i64);
                let r = client.create_instance_pool(&spec).await.map_err(err)?;
                remember(r.id);
            } else {
                let id = c.id.clone().unwrap_or_default();
                let changed: Vec<String> = c.fields.iter().map(|f| f.field.clone()).collect();
                let others: Vec<String> =
                    changed.iter().filter(|f| *f != "size").cloned().collect();
                if changed.iter().any(|f| f == "ssh-key")
                    && d.fields.get("ssh-key").is_none_or(Value::is_null)
                {
                    client
                        .reset_instance_pool_field(&id, "ssh-key")
                        .await
                        .map_err(err)?;
                }
                let spec = pool_spec(&d, live, Some(&others))?;
                if spec != InstancePoolSpec::default() {
                    client.update_instance_pool(&id, &spec).await.map_err(err)?;
                }
                if changed.iter().any(|f| f == "size")
                    && let Some(size) = d.fields.get("size").and_then(Value::as_i64)
                {
                    client.scale_instance_pool(&id, size).await.map_err(err)?;
                }
            }
        }
    }
    Ok(())
}
