//! Carrying out a plan: deletes (dependents first), then creates and updates in
//! dependency order, up to `jobs` calls at a time, each through the typed API call of its
//! kind.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use forge_exoscale::Client;
use forge_exoscale::types::{
    CreateNamed, CreateSshKey, ElasticIpSpec, IdRef, InstancePoolSpec,
    LoadBalancerService as ApiService, LoadBalancerSpec, NameRef, PrivateNetworkSpec, Reference,
    SecurityGroupPeer, SecurityGroupRule,
};
use futures_util::StreamExt as _;

use crate::error::DeployError;
use crate::observe::Inventory;
use crate::plan::{Action, Change, Plan};
use crate::resource::{
    AntiAffinityGroup, Attributes, ElasticIp, InstancePool, Kind, LoadBalancer,
    LoadBalancerService, Peer, PrivateNetwork, Ref, Rule, SecurityGroup, Spec, SshKey,
};
use crate::{Event, Reporter};

/// Exoscale's limit on the base64-encoded user-data (API-NOTES §8).
pub const USER_DATA_LIMIT: usize = 32768;

/// A change that failed.
#[derive(Debug)]
pub struct Failure {
    pub key: String,
    pub action: Action,
    pub error: DeployError,
}

/// Ids and attributes as they change during an apply.
#[derive(Debug, Default)]
struct Live {
    ids: BTreeMap<String, String>,
    attrs: Attributes,
}

type Shared = Arc<Mutex<Live>>;

/// Carries out `plan`; returns the failures.
pub async fn execute(
    client: &Client,
    plan: &Plan,
    inv: &Inventory,
    jobs: usize,
    report: &Reporter,
) -> Vec<Failure> {
    let live: Shared = Arc::new(Mutex::new(Live {
        ids: inv.ids.clone(),
        attrs: inv.attrs.clone(),
    }));
    let mut failures = Vec::new();
    // Deletes (and the first half of replaces), dependents first.
    for kind in Kind::ALL.iter().rev() {
        let batch: Vec<&Change> = plan
            .changes
            .iter()
            .filter(|c| c.kind == *kind && matches!(c.action, Action::Delete | Action::Replace))
            .collect();
        failures.extend(
            run_batch(batch, jobs, Action::Delete, |c| {
                let live = Arc::clone(&live);
                async move {
                    delete(client, c).await?;
                    if let Ok(mut l) = live.lock() {
                        l.ids.remove(&c.key);
                        l.attrs.remove(&c.key);
                    }
                    report(&Event::Done {
                        action: Action::Delete,
                        kind: c.kind,
                        name: &c.name,
                        key: &c.key,
                    });
                    Ok(())
                }
            })
            .await,
        );
    }
    // Creates and updates, dependencies first; a replace whose delete failed waits.
    for kind in Kind::ALL {
        let batch: Vec<&Change> = plan
            .changes
            .iter()
            .filter(|c| c.kind == kind && c.action != Action::Delete)
            .filter(|c| !(c.action == Action::Replace && failures.iter().any(|f| f.key == c.key)))
            .collect();
        let done = run_batch(batch, jobs, Action::Create, |c| {
            let live = Arc::clone(&live);
            async move {
                create_or_update(client, c, &live).await?;
                report(&Event::Done {
                    action: c.action,
                    kind: c.kind,
                    name: &c.name,
                    key: &c.key,
                });
                Ok(())
            }
        })
        .await;
        failures.extend(done);
    }
    failures
}

/// Runs `action` on each change, `jobs` at a time; the failures.
async fn run_batch<'a, F, Fut>(
    batch: Vec<&'a Change>,
    jobs: usize,
    phase: Action,
    action: F,
) -> Vec<Failure>
where
    F: Fn(&'a Change) -> Fut,
    Fut: std::future::Future<Output = Result<(), DeployError>>,
{
    futures_util::stream::iter(batch)
        .map(|c| {
            let fut = action(c);
            async move { (c, fut.await) }
        })
        .buffer_unordered(jobs.max(1))
        .filter_map(|(c, r)| async move {
            r.err().map(|error| Failure {
                key: c.key.clone(),
                // The delete half of a replace fails as a delete.
                action: if phase == Action::Delete {
                    Action::Delete
                } else {
                    c.action
                },
                error,
            })
        })
        .collect()
        .await
}

async fn delete(client: &Client, c: &Change) -> Result<(), DeployError> {
    let Some(id) = &c.id else { return Ok(()) };
    let pair = || id.split_once('/').unwrap_or((id, ""));
    let r = match c.kind {
        Kind::SshKey => client.delete_ssh_key(id).await,
        Kind::PrivateNetwork => client.delete_private_network(id).await,
        Kind::SecurityGroup => client.delete_security_group(id).await,
        Kind::SecurityGroupRule => {
            let (group, rule) = pair();
            client.delete_security_group_rule(group, rule).await
        }
        Kind::AntiAffinityGroup => client.delete_anti_affinity_group(id).await,
        Kind::ElasticIp => client.delete_elastic_ip(id).await,
        Kind::InstancePool => client.delete_instance_pool(id).await,
        Kind::LoadBalancer => client.delete_load_balancer(id).await,
        Kind::LoadBalancerService => {
            let (lb, service) = pair();
            client.delete_load_balancer_service(lb, service).await
        }
    };
    match r {
        Ok(_) => Ok(()),
        // Already gone: the goal is reached.
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(DeployError::action(Action::Delete, c.kind, &c.name, e)),
    }
}

/// The API id a reference stands for now.
fn id_of(live: &Shared, r: &Ref) -> Result<String, DeployError> {
    match r {
        Ref::Foreign(id) => Ok(id.clone()),
        Ref::Key(key) => live
            .lock()
            .ok()
            .and_then(|l| l.ids.get(key).cloned())
            .ok_or_else(|| DeployError::Dependency { key: key.clone() }),
    }
}

fn ids_of<'a>(
    live: &Shared,
    refs: impl IntoIterator<Item = &'a Ref>,
) -> Result<Vec<IdRef>, DeployError> {
    refs.into_iter()
        .map(|r| id_of(live, r).map(IdRef::new))
        .collect()
}

/// user-data as the API takes it: base64, within the limit, every placeholder resolved.
pub fn encode_user_data(text: &str) -> Result<String, DeployError> {
    if text.contains("${") {
        return Err(DeployError::Input(
            "user-data still refers to a resource that does not exist yet".into(),
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    if b64.len() > USER_DATA_LIMIT {
        return Err(DeployError::Input(format!(
            "user-data is {} bytes in base64, over Exoscale's limit of {USER_DATA_LIMIT}",
            b64.len()
        )));
    }
    Ok(b64)
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

fn remember(live: &Shared, key: &str, id: &str) {
    if let Ok(mut l) = live.lock() {
        l.ids.insert(key.to_string(), id.to_string());
    }
}

fn remember_ip(live: &Shared, key: &str, ip: Option<String>) {
    if let (Some(ip), Ok(mut l)) = (ip, live.lock()) {
        l.attrs
            .entry(key.to_string())
            .or_default()
            .insert("ip".into(), ip);
    }
}

/// The pool's fields for a create (`have` `None`) or the changed ones for an update.
fn pool_spec(
    want: &InstancePool,
    have: Option<&InstancePool>,
    live: &Shared,
) -> Result<InstancePoolSpec, DeployError> {
    let changed = |f: &dyn Fn(&InstancePool) -> bool| have.is_none_or(f);
    let mut spec = InstancePoolSpec::default();
    if changed(&|h| h.description != want.description) {
        spec.description = want.description.clone();
    }
    if changed(&|h| h.instance_type != want.instance_type) {
        spec.instance_type = want.instance_type.clone().map(IdRef::new);
    }
    if changed(&|h| h.template != want.template) {
        spec.template = match &want.template {
            Some(crate::resource::Template::Id(id)) => Some(IdRef::new(id.clone())),
            Some(crate::resource::Template::Unpublished { image }) => {
                return Err(DeployError::Input(format!(
                    "image `{image}` has no template: run `forge publish` first"
                )));
            }
            None => None,
        };
    }
    if changed(&|h| h.disk_size != want.disk_size) {
        spec.disk_size = want.disk_size;
    }
    if changed(&|h| h.instance_prefix != want.instance_prefix) {
        spec.instance_prefix = want.instance_prefix.clone();
    }
    if changed(&|h| h.public_ip_assignment != want.public_ip_assignment) {
        spec.public_ip_assignment = want.public_ip_assignment.clone();
    }
    if changed(&|h| h.security_groups != want.security_groups) {
        spec.security_groups = Some(ids_of(live, &want.security_groups)?);
    }
    if changed(&|h| h.elastic_ips != want.elastic_ips) {
        spec.elastic_ips = Some(ids_of(live, &want.elastic_ips)?);
    }
    if changed(&|h| h.private_networks != want.private_networks) {
        spec.private_networks = Some(ids_of(live, &want.private_networks)?);
    }
    // Anti-affinity groups are set at creation only (a change replaces the pool).
    if have.is_none() {
        spec.anti_affinity_groups = Some(ids_of(live, &want.anti_affinity_groups)?);
    }
    if changed(&|h| h.ssh_key != want.ssh_key)
        && let Some(k) = &want.ssh_key
    {
        // An SSH key's id is its name.
        spec.ssh_key = Some(NameRef {
            name: id_of(live, k)?,
        });
    }
    if changed(&|h| h.user_data != want.user_data)
        && let Some(u) = &want.user_data
    {
        spec.user_data = Some(encode_user_data(&u.0)?);
    }
    if changed(&|h| h.labels != want.labels) {
        spec.labels = Some(want.labels.0.clone());
    }
    Ok(spec)
}

/// What a create or update works with.
struct Put<'a> {
    client: &'a Client,
    change: &'a Change,
    key: &'a str,
    live: &'a Shared,
}

impl Put<'_> {
    fn err(&self, e: forge_exoscale::Error) -> DeployError {
        DeployError::action(self.change.action, self.change.kind, &self.change.name, e)
    }

    fn remember(&self, id: &str) {
        remember(self.live, self.key, id);
    }

    /// Updates the resource `id` names, or creates it (and remembers its new id); its id.
    async fn upsert<U, C>(
        &self,
        id: Option<&str>,
        update: impl FnOnce(String) -> U,
        create: impl FnOnce() -> C,
    ) -> Result<String, DeployError>
    where
        U: std::future::Future<Output = Result<Reference, forge_exoscale::Error>>,
        C: std::future::Future<Output = Result<Reference, forge_exoscale::Error>>,
    {
        match id {
            Some(id) => {
                update(id.to_string()).await.map_err(|e| self.err(e))?;
                Ok(id.to_string())
            }
            None => {
                let r = create().await.map_err(|e| self.err(e))?;
                self.remember(&r.id);
                Ok(r.id)
            }
        }
    }
}

async fn create_or_update(client: &Client, c: &Change, live: &Shared) -> Result<(), DeployError> {
    let Some(d) = &c.desired else { return Ok(()) };
    let mut spec = d.spec.clone();
    if let Ok(l) = live.lock() {
        spec.resolve(&l.attrs);
    }
    let put = Put {
        client,
        change: c,
        key: &d.key,
        live,
    };
    // A replace creates anew; only an update works on what exists.
    let have = c
        .actual
        .as_ref()
        .filter(|_| c.action == Action::Update)
        .map(|a| (a.id.as_str(), &a.spec));
    let id = have.map(|(id, _)| id);
    match (&spec, have.map(|(_, s)| s)) {
        (Spec::SshKey(k), _) => ssh_key(&put, k).await,
        (Spec::PrivateNetwork(n), _) => private_network(&put, n, id).await,
        (Spec::SecurityGroup(g), Some(Spec::SecurityGroup(h))) => {
            security_group(&put, g, id, &h.external_sources).await
        }
        (Spec::SecurityGroup(g), _) => security_group(&put, g, None, &BTreeSet::new()).await,
        (Spec::SecurityGroupRule(r), _) => security_group_rule(&put, r).await,
        (Spec::AntiAffinityGroup(g), _) => anti_affinity_group(&put, g).await,
        (Spec::ElasticIp(e), _) => elastic_ip(&put, e, id).await,
        (Spec::InstancePool(p), Some(Spec::InstancePool(h))) => match id {
            Some(id) => update_pool(&put, p, h, id).await,
            None => create_pool(&put, p).await,
        },
        (Spec::InstancePool(p), _) => create_pool(&put, p).await,
        (Spec::LoadBalancer(l), _) => load_balancer(&put, l, id).await,
        (Spec::LoadBalancerService(s), _) => load_balancer_service(&put, s, id).await,
    }
}

async fn ssh_key(put: &Put<'_>, k: &SshKey) -> Result<(), DeployError> {
    let public_key = k.public_key.clone().ok_or_else(|| {
        DeployError::Input(format!("SSH key {} has no public key to register", k.name))
    })?;
    let body = CreateSshKey {
        name: k.name.clone(),
        public_key,
    };
    put.client
        .create_ssh_key(&body)
        .await
        .map_err(|e| put.err(e))?;
    // An SSH key's id is its name.
    put.remember(&k.name);
    Ok(())
}

async fn private_network(
    put: &Put<'_>,
    n: &PrivateNetwork,
    id: Option<&str>,
) -> Result<(), DeployError> {
    let body = PrivateNetworkSpec {
        name: Some(n.name.clone()),
        description: n.description.clone(),
        netmask: n.netmask.clone(),
        start_ip: n.start_ip.clone(),
        end_ip: n.end_ip.clone(),
        labels: Some(n.labels.0.clone()),
    };
    let body = &body;
    put.upsert(
        id,
        |id| async move { put.client.update_private_network(&id, body).await },
        || put.client.create_private_network(body),
    )
    .await?;
    Ok(())
}

/// Creates the group (without `id`), then brings its external sources from `had` to
/// what is wanted.
async fn security_group(
    put: &Put<'_>,
    g: &SecurityGroup,
    id: Option<&str>,
    had: &BTreeSet<String>,
) -> Result<(), DeployError> {
    let id = match id {
        Some(id) => id.to_string(),
        None => {
            let body = CreateNamed {
                name: g.name.clone(),
                description: g.description.clone(),
            };
            let r = put
                .client
                .create_security_group(&body)
                .await
                .map_err(|e| put.err(e))?;
            put.remember(&r.id);
            r.id
        }
    };
    for cidr in g.external_sources.difference(had) {
        source_goal(put.client.security_group_source(&id, cidr, true).await, 409)
            .map_err(|e| put.err(e))?;
    }
    for cidr in had.difference(&g.external_sources) {
        source_goal(
            put.client.security_group_source(&id, cidr, false).await,
            404,
        )
        .map_err(|e| put.err(e))?;
    }
    Ok(())
}

async fn security_group_rule(put: &Put<'_>, r: &Rule) -> Result<(), DeployError> {
    let group = id_of(put.live, &r.group)?;
    let (network, security_group) = match &r.peer {
        Peer::Network(n) => (Some(n.clone()), None),
        Peer::Group(g) => (
            None,
            Some(SecurityGroupPeer {
                id: Some(id_of(put.live, g)?),
                name: None,
                visibility: None,
            }),
        ),
        Peer::Public(name) => (
            None,
            Some(SecurityGroupPeer {
                id: None,
                name: Some(name.clone()),
                visibility: Some("public".into()),
            }),
        ),
    };
    let rule = SecurityGroupRule {
        id: None,
        description: r.description.clone(),
        flow_direction: r.direction.as_str().to_string(),
        protocol: r.protocol.as_str().to_string(),
        start_port: r.start_port.map(i64::from),
        end_port: r.end_port.map(i64::from),
        network,
        security_group,
    };
    put.client
        .add_security_group_rule(&group, &rule)
        .await
        .map_err(|e| put.err(e))?;
    Ok(())
}

async fn anti_affinity_group(put: &Put<'_>, g: &AntiAffinityGroup) -> Result<(), DeployError> {
    let body = CreateNamed {
        name: g.name.clone(),
        description: g.description.clone(),
    };
    let r = put
        .client
        .create_anti_affinity_group(&body)
        .await
        .map_err(|e| put.err(e))?;
    put.remember(&r.id);
    Ok(())
}

async fn elastic_ip(put: &Put<'_>, e: &ElasticIp, id: Option<&str>) -> Result<(), DeployError> {
    let body = ElasticIpSpec {
        addressfamily: id.is_none().then(|| "inet4".to_string()),
        description: e.description.clone(),
        healthcheck: e.healthcheck.clone(),
        labels: Some(e.labels.0.clone()),
    };
    let body = &body;
    let id = put
        .upsert(
            id,
            |id| async move { put.client.update_elastic_ip(&id, body).await },
            || put.client.create_elastic_ip(body),
        )
        .await?;
    // Its address is what the pools' user-data waits for.
    let eip = put
        .client
        .get_elastic_ip(&id)
        .await
        .map_err(|e| put.err(e))?;
    remember_ip(put.live, put.key, eip.ip);
    Ok(())
}

async fn create_pool(put: &Put<'_>, p: &InstancePool) -> Result<(), DeployError> {
    let mut body = pool_spec(p, None, put.live)?;
    body.name = Some(p.name.clone());
    body.size = Some(p.size);
    let r = put
        .client
        .create_instance_pool(&body)
        .await
        .map_err(|e| put.err(e))?;
    put.remember(&r.id);
    Ok(())
}

/// Sends only what changed: the fields in one update, the size by scaling, a removed SSH
/// key by resetting the field.
async fn update_pool(
    put: &Put<'_>,
    p: &InstancePool,
    h: &InstancePool,
    id: &str,
) -> Result<(), DeployError> {
    if p.ssh_key.is_none() && h.ssh_key.is_some() {
        put.client
            .reset_instance_pool_field(id, "ssh-key")
            .await
            .map_err(|e| put.err(e))?;
    }
    let fields = pool_spec(p, Some(h), put.live)?;
    if fields != InstancePoolSpec::default() {
        put.client
            .update_instance_pool(id, &fields)
            .await
            .map_err(|e| put.err(e))?;
    }
    if p.size != h.size {
        put.client
            .scale_instance_pool(id, p.size)
            .await
            .map_err(|e| put.err(e))?;
    }
    Ok(())
}

async fn load_balancer(
    put: &Put<'_>,
    l: &LoadBalancer,
    id: Option<&str>,
) -> Result<(), DeployError> {
    let body = LoadBalancerSpec {
        name: Some(l.name.clone()),
        description: l.description.clone(),
        labels: Some(l.labels.0.clone()),
    };
    let body = &body;
    let id = put
        .upsert(
            id,
            |id| async move { put.client.update_load_balancer(&id, body).await },
            || put.client.create_load_balancer(body),
        )
        .await?;
    let lb = put
        .client
        .get_load_balancer(&id)
        .await
        .map_err(|e| put.err(e))?;
    remember_ip(put.live, put.key, lb.ip);
    Ok(())
}

async fn load_balancer_service(
    put: &Put<'_>,
    s: &LoadBalancerService,
    id: Option<&str>,
) -> Result<(), DeployError> {
    let lb = id_of(put.live, &s.load_balancer)?;
    let healthcheck = s.healthcheck.clone().ok_or_else(|| {
        DeployError::Input(format!(
            "load balancer service {} has no health check",
            s.name
        ))
    })?;
    let body = ApiService {
        id: None,
        name: s.name.clone(),
        description: s.description.clone(),
        instance_pool: IdRef::new(id_of(put.live, &s.instance_pool)?),
        protocol: s.protocol.clone(),
        strategy: s.strategy.clone(),
        port: i64::from(s.port),
        target_port: i64::from(s.target_port),
        healthcheck,
        state: None,
    };
    match id {
        Some(id) => {
            // A service's id is `<load balancer id>/<service id>`.
            let service = id.split_once('/').map_or(id, |(_, s)| s);
            put.client
                .update_load_balancer_service(&lb, service, &body)
                .await
                .map_err(|e| put.err(e))?;
        }
        None => {
            put.client
                .add_load_balancer_service(&lb, &body)
                .await
                .map_err(|e| put.err(e))?;
        }
    }
    Ok(())
}
