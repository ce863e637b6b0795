//! The operations the emulator implements, by `operationId`. Each works on the API's JSON
//! objects in [`State`] and answers what the API answers: the resource, a list wrapped in a
//! plural key, or an [`Operation`](crate::state::Op) for mutations.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::state::{Op, State, instance_ip, rfc3339};

/// An API error: status and `{"message": ...}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

pub fn err(status: u16, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

fn not_found(kind: &str, id: &str) -> ApiError {
    err(404, format!("{kind} {id} not found"))
}

/// A template download the server starts after answering `register-template`.
#[derive(Debug, Clone)]
pub struct Download {
    pub zone: String,
    pub operation: String,
    pub template: Value,
}

/// What a handler produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub body: Value,
    pub download: Option<Download>,
}

impl From<Value> for Outcome {
    fn from(body: Value) -> Self {
        Outcome {
            body,
            download: None,
        }
    }
}

/// One request, routed.
pub struct Ctx<'a> {
    pub zone: &'a str,
    pub zones: &'a [String],
    pub instance_types: &'a [Value],
    pub params: &'a BTreeMap<String, String>,
    pub query: &'a BTreeMap<String, String>,
    pub body: &'a Value,
    pub now_ms: u64,
    pub op_delay_ms: u64,
    pub new_id: &'a mut dyn FnMut() -> String,
    pub random_letters: &'a mut dyn FnMut(usize) -> String,
    /// [`crate::Config::instance_network`].
    pub instance_network: Option<[u8; 3]>,
}

impl Ctx<'_> {
    fn id(&self) -> &str {
        self.params
            .get("id")
            .map(String::as_str)
            .unwrap_or_default()
    }

    fn field(&self, k: &str) -> Option<&Value> {
        self.body.get(k)
    }

    fn op(&mut self, state: &mut State, kind: &str, resource: &str) -> Value {
        let id = (self.new_id)();
        let op = Op {
            id: id.clone(),
            kind: kind.to_string(),
            resource: resource.to_string(),
            ready_at_ms: Some(self.now_ms + self.op_delay_ms),
            failure: None,
        };
        let v = op_json(&op, self.now_ms);
        state.operations.insert(id, op);
        v
    }
}

/// The JSON of an operation at time `now_ms`.
pub fn op_json(op: &Op, now_ms: u64) -> Value {
    let done = op.ready_at_ms.is_some_and(|t| now_ms >= t);
    let mut v = json!({
        "id": op.id,
        "state": if !done { "pending" } else if op.failure.is_some() { "failure" } else { "success" },
        "reference": {
            "id": op.resource,
            "link": format!("/v2/{}/{}", op.kind, op.resource),
            "command": format!("get-{}", op.kind),
        },
    });
    if done && let Some((reason, message)) = &op.failure {
        v["reason"] = json!(reason);
        v["message"] = json!(message);
    }
    v
}

fn refs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("id").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn id_of(v: Option<&Value>) -> Option<String> {
    v.and_then(|r| r.get("id"))
        .and_then(Value::as_str)
        .map(String::from)
}

/// 409 if another resource than `own_id` (the one being renamed, if any) has `name`.
fn name_conflict<'a>(
    mut items: impl Iterator<Item = &'a Value>,
    name: &str,
    kind: &str,
    own_id: Option<&str>,
) -> Result<(), ApiError> {
    let taken = items.any(|v| {
        v.get("name").and_then(Value::as_str) == Some(name)
            && own_id.is_none_or(|own| v["id"] != own)
    });
    if taken {
        Err(err(409, format!("a {kind} named {name:?} already exists")))
    } else {
        Ok(())
    }
}

/// Copies the listed fields of the request body into `obj`.
fn copy_fields(obj: &mut Value, body: &Value, fields: &[&str]) {
    for f in fields {
        if let Some(v) = body.get(*f) {
            obj[*f] = v.clone();
        }
    }
}

fn check_refs(state: &mut State, ctx: &Ctx, body: &Value) -> Result<(), ApiError> {
    if let Some(t) = id_of(body.get("instance-type"))
        && !ctx.instance_types.iter().any(|x| x["id"] == t)
    {
        return Err(not_found("instance type", &t));
    }
    if let Some(t) = id_of(body.get("template"))
        && !state.zone(ctx.zone).templates.contains_key(&t)
    {
        return Err(not_found("template", &t));
    }
    for sg in refs(body.get("security-groups")) {
        if !state.security_groups.contains_key(&sg) {
            return Err(not_found("security group", &sg));
        }
    }
    for g in refs(body.get("anti-affinity-groups")) {
        if !state.anti_affinity_groups.contains_key(&g) {
            return Err(not_found("anti-affinity group", &g));
        }
    }
    for e in refs(body.get("elastic-ips")) {
        if !state.zone(ctx.zone).elastic_ips.contains_key(&e) {
            return Err(not_found("elastic IP", &e));
        }
    }
    for n in refs(body.get("private-networks")) {
        if !state.zone(ctx.zone).private_networks.contains_key(&n) {
            return Err(not_found("private network", &n));
        }
    }
    if let Some(k) = body
        .get("ssh-key")
        .and_then(|k| k.get("name"))
        .and_then(Value::as_str)
        && !state.ssh_keys.contains_key(k)
    {
        return Err(not_found("SSH key", k));
    }
    Ok(())
}

mod address;
mod catalog;
mod compute;
mod network;

/// The operations of one family of resources: `Ok(None)` for an operation of another.
type Family = fn(&str, &mut State, &mut Ctx) -> Result<Option<Outcome>, ApiError>;

/// Dispatches one operation to the family that implements it.
pub fn dispatch(operation: &str, state: &mut State, ctx: &mut Ctx) -> Result<Outcome, ApiError> {
    let families: [Family; 4] = [
        catalog::dispatch,
        network::dispatch,
        address::dispatch,
        compute::dispatch,
    ];
    for family in families {
        if let Some(out) = family(operation, state, ctx)? {
            return Ok(out);
        }
    }
    Err(err(
        501,
        format!("the emulator does not implement {operation}"),
    ))
}

/// Pool fields copied from create and update bodies.
const POOL_FIELDS: &[&str] = &[
    "description",
    "instance-prefix",
    "instance-type",
    "template",
    "disk-size",
    "user-data",
    "labels",
    "security-groups",
    "elastic-ips",
    "private-networks",
    "ssh-key",
    "ssh-keys",
    "deploy-target",
    "public-ip-assignment",
    "ipv6-enabled",
    "min-available",
    "application-consistent-snapshot-enabled",
];

/// Members follow their pool's labels, groups and addresses at once (template, type,
/// user-data and disk size apply only to members created afterwards).
fn sync_members(state: &mut State, zone: &str, pool: &Value) {
    let id = pool["id"].clone();
    for inst in state
        .zone(zone)
        .instances
        .values_mut()
        .filter(|i| i["manager"]["id"] == id)
    {
        for f in [
            "labels",
            "security-groups",
            "elastic-ips",
            "private-networks",
        ] {
            inst[f] = pool[f].clone();
        }
    }
}

/// Exoscale allows at most 8 instances per anti-affinity group.
fn check_aag_capacity(state: &State, spec: &Value, added: i64) -> Result<(), ApiError> {
    for g in refs(spec.get("anti-affinity-groups")) {
        let members = state
            .zones
            .values()
            .flat_map(|z| z.instances.values())
            .filter(|i| refs(i.get("anti-affinity-groups")).contains(&g))
            .count() as i64;
        if members + added > 8 {
            return Err(err(
                400,
                format!("anti-affinity group {g} would hold more than 8 instances"),
            ));
        }
    }
    Ok(())
}

/// Creates or removes members until the pool has `size` instances.
fn resize_pool(
    state: &mut State,
    ctx: &mut Ctx,
    zone: &str,
    pool_id: &str,
) -> Result<(), ApiError> {
    let pool = state
        .zone(zone)
        .instance_pools
        .get(pool_id)
        .cloned()
        .ok_or_else(|| not_found("instance pool", pool_id))?;
    let want = pool["size"].as_i64().unwrap_or(0).max(0) as usize;
    let mut members: Vec<(String, String)> = state
        .zone(zone)
        .instances
        .values()
        .filter(|i| i["manager"]["id"] == pool_id)
        .map(|i| {
            (
                i["created-at"].as_str().unwrap_or_default().to_string(),
                i["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    members.sort();
    while members.len() > want {
        if let Some((_, id)) = members.pop() {
            state.zone(zone).instances.remove(&id);
        }
    }
    for _ in members.len()..want {
        let id = (ctx.new_id)();
        let ip = match ctx.instance_network {
            Some([a, b, c]) => {
                std::net::Ipv4Addr::new(a, b, c, (state.next_instance_ip % 254 + 1) as u8)
            }
            None => instance_ip(state.next_instance_ip),
        }
        .to_string();
        state.next_instance_ip += 1;
        let prefix = pool["instance-prefix"].as_str().unwrap_or("pool");
        let name = format!("{prefix}-{}-{}", &pool_id[..5], (ctx.random_letters)(5));
        let mut inst = json!({
            "id": id,
            "name": name,
            "state": "running",
            "instance-type": pool["instance-type"],
            "template": pool["template"],
            "disk-size": pool["disk-size"],
            "public-ip": ip,
            "public-ip-assignment": pool["public-ip-assignment"],
            "labels": pool["labels"],
            "security-groups": pool["security-groups"],
            "anti-affinity-groups": pool["anti-affinity-groups"],
            "elastic-ips": pool["elastic-ips"],
            "private-networks": pool["private-networks"],
            "manager": { "id": pool_id, "type": "instance-pool" },
            "mac-address": format!("06:{}:{}:{}:{}:{}", &id[0..2], &id[2..4], &id[4..6], &id[6..8], &id[9..11]),
            "created-at": rfc3339(ctx.now_ms),
            "snapshots": [],
        });
        for f in ["user-data", "ssh-key", "ssh-keys"] {
            if let Some(v) = pool.get(f) {
                inst[f] = v.clone();
            }
        }
        state.zone(zone).instances.insert(id, inst);
    }
    Ok(())
}

fn pool_json(state: &mut State, zone: &str, id: &str) -> Value {
    let z = state.zone(zone);
    let mut p = z.instance_pools.get(id).cloned().unwrap_or(Value::Null);
    let members: Vec<Value> = z
        .instances
        .values()
        .filter(|i| i["manager"]["id"] == id)
        .map(|i| json!({ "id": i["id"] }))
        .collect();
    p["instances"] = json!(members);
    p
}

fn aag_json(state: &State, id: &str) -> Value {
    let mut g = state
        .anti_affinity_groups
        .get(id)
        .cloned()
        .unwrap_or(Value::Null);
    let members: Vec<Value> = state
        .zones
        .values()
        .flat_map(|z| z.instances.values())
        .filter(|i| refs(i.get("anti-affinity-groups")).iter().any(|x| x == id))
        .map(|i| json!({ "id": i["id"] }))
        .collect();
    g["instances"] = json!(members);
    g
}

fn check_healthcheck(hc: Option<&Value>) -> Result<(), ApiError> {
    let Some(hc) = hc else { return Ok(()) };
    let interval = hc.get("interval").and_then(Value::as_i64).unwrap_or(10);
    let timeout = hc.get("timeout").and_then(Value::as_i64).unwrap_or(2);
    if timeout > interval {
        return Err(err(400, "healthcheck timeout must not exceed its interval"));
    }
    let mode = hc["mode"].as_str().unwrap_or_default();
    if mode == "tcp" && (hc.get("uri").is_some() || hc.get("tls-sni").is_some()) {
        return Err(err(400, "a tcp health check takes no uri or tls-sni"));
    }
    if mode != "tcp" && hc.get("uri").is_none() {
        return Err(err(400, format!("an {mode} health check needs a uri")));
    }
    Ok(())
}

fn is_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    match (addr.parse::<std::net::IpAddr>(), len.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(l)) => l <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(l)) => l <= 128,
        _ => false,
    }
}

/// A managed private network needs netmask, start and end together, the range inside the
/// netmask's network and start <= end.
fn check_managed_range(net: &Value) -> Result<(), ApiError> {
    let get = |k: &str| {
        net.get(k)
            .and_then(Value::as_str)
            .map(|s| s.parse::<std::net::Ipv4Addr>())
    };
    match (get("netmask"), get("start-ip"), get("end-ip")) {
        (None, None, None) => Ok(()),
        (Some(Ok(mask)), Some(Ok(start)), Some(Ok(end))) => {
            let (m, a, b) = (u32::from(mask), u32::from(start), u32::from(end));
            if m.leading_ones() + m.trailing_zeros() != 32 {
                return Err(err(400, format!("invalid netmask {mask}")));
            }
            if a & m != b & m || a > b {
                return Err(err(
                    400,
                    format!("invalid range {start}-{end} for netmask {mask}"),
                ));
            }
            Ok(())
        }
        (Some(_), Some(_), Some(_)) => Err(err(
            400,
            "netmask, start-ip and end-ip must be IPv4 addresses",
        )),
        _ => Err(err(
            400,
            "a managed private network needs netmask, start-ip and end-ip together",
        )),
    }
}
