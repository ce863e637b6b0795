//! The operations the emulator implements, by `operationId`. Each works on the API's JSON
//! objects in [`State`] and answers what the API answers: the resource, a list wrapped in a
//! plural key, or an [`Operation`](crate::state::Op) for mutations.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::state::{Op, State, elastic_ip, instance_ip, rfc3339};

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

/// Dispatches one operation.
pub fn dispatch(operation: &str, state: &mut State, ctx: &mut Ctx) -> Result<Outcome, ApiError> {
    let zone = ctx.zone.to_string();
    Ok(match operation {
        "get-operation" => {
            let op = state.operations.get(ctx.id()).ok_or_else(|| not_found("operation", ctx.id()))?;
            op_json(op, ctx.now_ms).into()
        }
        "list-zones" => json!({ "zones": ctx.zones.iter().map(|z| json!({
            "name": z,
            "api-endpoint": format!("https://api-{z}.exoscale.com/v2"),
            "sos-endpoint": format!("https://sos-{z}.exo.io"),
        })).collect::<Vec<_>>() })
        .into(),
        "list-instance-types" => json!({ "instance-types": ctx.instance_types }).into(),
        "get-instance-type" => ctx
            .instance_types
            .iter()
            .find(|t| t["id"] == ctx.id())
            .cloned()
            .ok_or_else(|| not_found("instance type", ctx.id()))?
            .into(),

        // Templates (zonal).
        "list-templates" => {
            let visibility = ctx.query.get("visibility").map(String::as_str).unwrap_or("public");
            let family = ctx.query.get("family");
            let items: Vec<Value> = state
                .zone(&zone)
                .templates
                .values()
                .filter(|t| t["visibility"] == visibility)
                .filter(|t| family.is_none_or(|f| t.get("family").and_then(Value::as_str) == Some(f)))
                .cloned()
                .collect();
            json!({ "templates": items }).into()
        }
        "get-template" => {
            state.zone(&zone).templates.get(ctx.id()).cloned().ok_or_else(|| not_found("template", ctx.id()))?.into()
        }
        "register-template" => {
            let id = (ctx.new_id)();
            let mut t = json!({
                "id": id,
                "visibility": "private",
                "zones": [zone],
                "boot-mode": "legacy",
                "created-at": rfc3339(ctx.now_ms),
            });
            copy_fields(
                &mut t,
                ctx.body,
                &[
                    "name", "description", "url", "checksum", "ssh-key-enabled", "password-enabled",
                    "boot-mode", "default-user", "build", "version", "maintainer",
                    "application-consistent-snapshot-enabled",
                ],
            );
            let mut op = ctx.op(state, "template", &id);
            // Pending until the download finishes.
            if let Some(o) = state.operations.get_mut(op["id"].as_str().unwrap_or_default()) {
                o.ready_at_ms = None;
            }
            op["state"] = json!("pending");
            let operation = op["id"].as_str().unwrap_or_default().to_string();
            Outcome { body: op, download: Some(Download { zone, operation, template: t }) }
        }
        "delete-template" => {
            let id = ctx.id().to_string();
            let in_use = state.zone(&zone).instance_pools.values().any(|p| p["template"]["id"] == id.as_str());
            if in_use {
                return Err(err(409, format!("template {id} is in use by an instance pool")));
            }
            state.zone(&zone).templates.remove(&id).ok_or_else(|| not_found("template", &id))?;
            ctx.op(state, "template", &id).into()
        }

        // Security groups (global).
        "list-security-groups" => {
            let items: Vec<Value> = if ctx.query.get("visibility").map(String::as_str) == Some("public") {
                Vec::new()
            } else {
                state.security_groups.values().cloned().collect()
            };
            json!({ "security-groups": items }).into()
        }
        "get-security-group" => state
            .security_groups
            .get(ctx.id())
            .cloned()
            .ok_or_else(|| not_found("security group", ctx.id()))?
            .into(),
        "create-security-group" => {
            let name = ctx.field("name").and_then(Value::as_str).unwrap_or_default().to_string();
            name_conflict(state.security_groups.values(), &name, "security group", None)?;
            let id = (ctx.new_id)();
            let mut sg = json!({ "id": id, "name": name, "rules": [], "external-sources": [] });
            copy_fields(&mut sg, ctx.body, &["description"]);
            state.security_groups.insert(id.clone(), sg);
            ctx.op(state, "security-group", &id).into()
        }
        "delete-security-group" => {
            let id = ctx.id().to_string();
            if !state.security_groups.contains_key(&id) {
                return Err(not_found("security group", &id));
            }
            let used = state.zones.values().any(|z| {
                z.instances.values().chain(z.instance_pools.values()).any(|i| refs(i.get("security-groups")).contains(&id))
            }) || state.security_groups.values().any(|g| {
                g["id"] != id.as_str()
                    && g["rules"].as_array().is_some_and(|r| r.iter().any(|r| r["security-group"]["id"] == id.as_str()))
            });
            if used {
                return Err(err(409, format!("security group {id} is in use")));
            }
            state.security_groups.remove(&id);
            ctx.op(state, "security-group", &id).into()
        }
        "add-rule-to-security-group" => {
            let id = ctx.id().to_string();
            if !state.security_groups.contains_key(&id) {
                return Err(not_found("security group", &id));
            }
            let b = ctx.body;
            let peer_sg = b.get("security-group");
            if b.get("network").is_some() == peer_sg.is_some() {
                return Err(err(400, "a rule needs exactly one of network and security-group"));
            }
            if (b.get("start-port").is_some() || b.get("end-port").is_some()) && b.get("icmp").is_some() {
                return Err(err(400, "ports and icmp are mutually exclusive"));
            }
            let proto = b["protocol"].as_str().unwrap_or_default();
            let ports = b.get("start-port").is_some();
            if matches!(proto, "tcp" | "udp") != ports || b.get("start-port").is_some() != b.get("end-port").is_some() {
                return Err(err(400, "tcp and udp rules need start-port and end-port; other protocols take none"));
            }
            if let (Some(s), Some(e)) = (b["start-port"].as_i64(), b["end-port"].as_i64())
                && s > e
            {
                return Err(err(400, "start-port is greater than end-port"));
            }
            if let Some(net) = b.get("network").and_then(Value::as_str)
                && !is_cidr(net)
            {
                return Err(err(400, format!("invalid network {net:?}: expected a CIDR")));
            }
            if let Some(peer) = id_of(peer_sg)
                && !state.security_groups.contains_key(&peer)
            {
                return Err(not_found("security group", &peer));
            }
            let mut rule = Map::new();
            for f in ["flow-direction", "protocol", "start-port", "end-port", "icmp", "description", "network", "security-group"] {
                if let Some(v) = b.get(f) {
                    rule.insert(f.to_string(), v.clone());
                }
            }
            if let Some(peer) = id_of(peer_sg) {
                let name = state.security_groups[&peer]["name"].clone();
                rule.insert("security-group".into(), json!({ "id": peer, "name": name }));
            }
            let sg = state.security_groups.get_mut(&id).ok_or_else(|| not_found("security group", &id))?;
            let rules = sg["rules"].as_array_mut().ok_or_else(|| err(500, "corrupt security group"))?;
            let same = |r: &Value| {
                let mut r = r.clone();
                if let Some(o) = r.as_object_mut() {
                    o.remove("id");
                }
                r == Value::Object(rule.clone())
            };
            if rules.iter().any(same) {
                return Err(err(409, "an identical rule already exists in this security group"));
            }
            rule.insert("id".into(), json!((ctx.new_id)()));
            rules.push(Value::Object(rule));
            ctx.op(state, "security-group", &id).into()
        }
        "delete-rule-from-security-group" => {
            let id = ctx.id().to_string();
            let rule_id = ctx.params.get("rule-id").cloned().unwrap_or_default();
            let sg = state.security_groups.get_mut(&id).ok_or_else(|| not_found("security group", &id))?;
            let rules = sg["rules"].as_array_mut().ok_or_else(|| err(500, "corrupt security group"))?;
            let before = rules.len();
            rules.retain(|r| r["id"] != rule_id.as_str());
            if rules.len() == before {
                return Err(not_found("security group rule", &rule_id));
            }
            ctx.op(state, "security-group", &id).into()
        }
        "add-external-source-to-security-group" | "remove-external-source-from-security-group" => {
            let id = ctx.id().to_string();
            let cidr = ctx.field("cidr").and_then(Value::as_str).unwrap_or_default().to_string();
            if !is_cidr(&cidr) {
                return Err(err(400, format!("invalid cidr {cidr:?}")));
            }
            let sg = state.security_groups.get_mut(&id).ok_or_else(|| not_found("security group", &id))?;
            let sources = sg["external-sources"].as_array_mut().ok_or_else(|| err(500, "corrupt security group"))?;
            let present = sources.iter().any(|s| s == cidr.as_str());
            if operation.starts_with("add") {
                if present {
                    return Err(err(409, format!("{cidr} is already an external source")));
                }
                sources.push(json!(cidr));
            } else {
                if !present {
                    return Err(not_found("external source", &cidr));
                }
                sources.retain(|s| s != cidr.as_str());
            }
            ctx.op(state, "security-group", &id).into()
        }

        // Anti-affinity groups (global).
        "list-anti-affinity-groups" => {
            let items: Vec<Value> = state.anti_affinity_groups.keys().cloned().collect::<Vec<_>>().iter().map(|id| aag_json(state, id)).collect();
            json!({ "anti-affinity-groups": items }).into()
        }
        "get-anti-affinity-group" => {
            if !state.anti_affinity_groups.contains_key(ctx.id()) {
                return Err(not_found("anti-affinity group", ctx.id()));
            }
            aag_json(state, ctx.id()).into()
        }
        "create-anti-affinity-group" => {
            let name = ctx.field("name").and_then(Value::as_str).unwrap_or_default().to_string();
            name_conflict(state.anti_affinity_groups.values(), &name, "anti-affinity group", None)?;
            let id = (ctx.new_id)();
            let mut g = json!({ "id": id, "name": name });
            copy_fields(&mut g, ctx.body, &["description"]);
            state.anti_affinity_groups.insert(id.clone(), g);
            ctx.op(state, "anti-affinity-group", &id).into()
        }
        "delete-anti-affinity-group" => {
            let id = ctx.id().to_string();
            if !state.anti_affinity_groups.contains_key(&id) {
                return Err(not_found("anti-affinity group", &id));
            }
            if state.zones.values().any(|z| {
                z.instances.values().chain(z.instance_pools.values()).any(|i| refs(i.get("anti-affinity-groups")).contains(&id))
            }) {
                return Err(err(409, format!("anti-affinity group {id} is in use")));
            }
            state.anti_affinity_groups.remove(&id);
            ctx.op(state, "anti-affinity-group", &id).into()
        }

        // Elastic IPs (zonal).
        "list-elastic-ips" => json!({ "elastic-ips": state.zone(&zone).elastic_ips.values().cloned().collect::<Vec<_>>() }).into(),
        "get-elastic-ip" => state.zone(&zone).elastic_ips.get(ctx.id()).cloned().ok_or_else(|| not_found("elastic IP", ctx.id()))?.into(),
        "create-elastic-ip" => {
            let family = ctx.field("addressfamily").and_then(Value::as_str).unwrap_or("inet4");
            if family != "inet4" {
                return Err(err(400, "the emulator allocates inet4 elastic IPs only"));
            }
            check_healthcheck(ctx.field("healthcheck"))?;
            let id = (ctx.new_id)();
            let ip = elastic_ip(state.next_elastic_ip).to_string();
            state.next_elastic_ip += 1;
            let mut e = json!({ "id": id, "ip": ip, "addressfamily": "inet4", "cidr": format!("{ip}/32"), "labels": {} });
            copy_fields(&mut e, ctx.body, &["description", "healthcheck", "labels"]);
            state.zone(&zone).elastic_ips.insert(id.clone(), e);
            ctx.op(state, "elastic-ip", &id).into()
        }
        "update-elastic-ip" => {
            let id = ctx.id().to_string();
            check_healthcheck(ctx.field("healthcheck"))?;
            let e = state.zone(&zone).elastic_ips.get_mut(&id).ok_or_else(|| not_found("elastic IP", &id))?;
            if let Some(hc) = ctx.body.get("healthcheck") {
                match e.get("healthcheck") {
                    None => return Err(err(400, "a health check cannot be added to an unmanaged elastic IP")),
                    Some(old) if old["mode"] != hc["mode"] => {
                        return Err(err(400, "the health check mode cannot be changed"));
                    }
                    _ => {}
                }
            }
            copy_fields(e, ctx.body, &["description", "healthcheck", "labels"]);
            ctx.op(state, "elastic-ip", &id).into()
        }
        "reset-elastic-ip-field" => {
            let id = ctx.id().to_string();
            let field = ctx.params.get("field").cloned().unwrap_or_default();
            let e = state.zone(&zone).elastic_ips.get_mut(&id).ok_or_else(|| not_found("elastic IP", &id))?;
            match field.as_str() {
                "description" => {
                    if let Some(o) = e.as_object_mut() {
                        o.remove("description");
                    }
                }
                "labels" => e["labels"] = json!({}),
                _ => return Err(err(400, format!("field {field:?} cannot be reset"))),
            }
            ctx.op(state, "elastic-ip", &id).into()
        }
        "delete-elastic-ip" => {
            let id = ctx.id().to_string();
            let z = state.zone(&zone);
            if !z.elastic_ips.contains_key(&id) {
                return Err(not_found("elastic IP", &id));
            }
            if z.instance_pools.values().chain(z.instances.values()).any(|p| refs(p.get("elastic-ips")).contains(&id)) {
                return Err(err(409, format!("elastic IP {id} is attached")));
            }
            z.elastic_ips.remove(&id);
            ctx.op(state, "elastic-ip", &id).into()
        }

        // SSH keys (global, by name).
        "list-ssh-keys" => json!({ "ssh-keys": state.ssh_keys.values().cloned().collect::<Vec<_>>() }).into(),
        "get-ssh-key" => {
            let name = ctx.params.get("name").cloned().unwrap_or_default();
            state.ssh_keys.get(&name).cloned().ok_or_else(|| not_found("SSH key", &name))?.into()
        }
        "register-ssh-key" => {
            let name = ctx.field("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let key = ctx.field("public-key").and_then(Value::as_str).unwrap_or_default();
            let fingerprint = forge_exoscale::types::ssh_key_fingerprint(key).ok_or_else(|| err(400, "invalid public-key: expected an OpenSSH public key"))?;
            if state.ssh_keys.contains_key(&name) {
                return Err(err(409, format!("an SSH key named {name:?} already exists")));
            }
            state.ssh_keys.insert(name.clone(), json!({ "name": name, "fingerprint": fingerprint }));
            ctx.op(state, "ssh-key", &name).into()
        }
        "delete-ssh-key" => {
            let name = ctx.params.get("name").cloned().unwrap_or_default();
            state.ssh_keys.remove(&name).ok_or_else(|| not_found("SSH key", &name))?;
            ctx.op(state, "ssh-key", &name).into()
        }

        // Instance pools and their instances (zonal).
        "list-instance-pools" => {
            let ids: Vec<String> = state.zone(&zone).instance_pools.keys().cloned().collect();
            json!({ "instance-pools": ids.iter().map(|id| pool_json(state, &zone, id)).collect::<Vec<_>>() }).into()
        }
        "get-instance-pool" => {
            if !state.zone(&zone).instance_pools.contains_key(ctx.id()) {
                return Err(not_found("instance pool", ctx.id()));
            }
            pool_json(state, &zone, ctx.id()).into()
        }
        "create-instance-pool" => {
            let body = ctx.body.clone();
            check_refs(state, ctx, &body)?;
            let name = body["name"].as_str().unwrap_or_default().to_string();
            name_conflict(state.zone(&zone).instance_pools.values(), &name, "instance pool", None)?;
            check_aag_capacity(state, &body, body["size"].as_i64().unwrap_or(0))?;
            let id = (ctx.new_id)();
            let mut p = json!({
                "id": id,
                "state": "running",
                "instance-prefix": "pool",
                "public-ip-assignment": "inet4",
                "labels": {},
                "anti-affinity-groups": [],
                "security-groups": [],
                "elastic-ips": [],
                "private-networks": [],
                "ipv6-enabled": false,
            });
            copy_fields(&mut p, &body, POOL_FIELDS);
            copy_fields(&mut p, &body, &["name", "size", "anti-affinity-groups"]);
            if body.get("ipv6-enabled").and_then(Value::as_bool) == Some(true) && body.get("public-ip-assignment").is_none() {
                p["public-ip-assignment"] = json!("dual");
            }
            state.zone(&zone).instance_pools.insert(id.clone(), p);
            resize_pool(state, ctx, &zone, &id)?;
            ctx.op(state, "instance-pool", &id).into()
        }
        "update-instance-pool" => {
            let id = ctx.id().to_string();
            if !state.zone(&zone).instance_pools.contains_key(&id) {
                return Err(not_found("instance pool", &id));
            }
            let body = ctx.body.clone();
            check_refs(state, ctx, &body)?;
            if let Some(name) = body.get("name").and_then(Value::as_str) {
                name_conflict(state.zone(&zone).instance_pools.values(), name, "instance pool", Some(&id))?;
            }
            let p = state.zone(&zone).instance_pools.get_mut(&id).ok_or_else(|| not_found("instance pool", &id))?;
            if p["public-ip-assignment"] == "none" && body.get("public-ip-assignment").is_some_and(|v| v != "none") {
                return Err(err(400, "public-ip-assignment none cannot be changed"));
            }
            copy_fields(p, &body, POOL_FIELDS);
            copy_fields(p, &body, &["name"]);
            let pool = p.clone();
            sync_members(state, &zone, &pool);
            ctx.op(state, "instance-pool", &id).into()
        }
        "scale-instance-pool" => {
            let id = ctx.id().to_string();
            let size = ctx.field("size").and_then(Value::as_i64).unwrap_or(0);
            let pool = state.zone(&zone).instance_pools.get(&id).cloned().ok_or_else(|| not_found("instance pool", &id))?;
            check_aag_capacity(state, &pool, size - pool["size"].as_i64().unwrap_or(0))?;
            if let Some(p) = state.zone(&zone).instance_pools.get_mut(&id) {
                p["size"] = json!(size);
            }
            resize_pool(state, ctx, &zone, &id)?;
            ctx.op(state, "instance-pool", &id).into()
        }
        "evict-instance-pool-members" => {
            let id = ctx.id().to_string();
            let evict: Vec<String> = ctx.field("instances").and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
            let z = state.zone(&zone);
            if !z.instance_pools.contains_key(&id) {
                return Err(not_found("instance pool", &id));
            }
            for i in &evict {
                if z.instances.get(i).is_none_or(|x| x["manager"]["id"] != id.as_str()) {
                    return Err(not_found("pool member", i));
                }
            }
            for i in &evict {
                z.instances.remove(i);
            }
            if let Some(p) = z.instance_pools.get_mut(&id) {
                let size = p["size"].as_i64().unwrap_or(0) - evict.len() as i64;
                p["size"] = json!(size.max(0));
            }
            ctx.op(state, "instance-pool", &id).into()
        }
        "reset-instance-pool-field" => {
            let id = ctx.id().to_string();
            let field = ctx.params.get("field").cloned().unwrap_or_default();
            let p = state.zone(&zone).instance_pools.get_mut(&id).ok_or_else(|| not_found("instance pool", &id))?;
            let obj = p.as_object_mut().ok_or_else(|| err(500, "corrupt pool"))?;
            match field.as_str() {
                "anti-affinity-groups" | "security-groups" | "elastic-ips" | "private-networks" => {
                    obj.insert(field.clone(), json!([]));
                }
                "labels" => {
                    obj.insert(field.clone(), json!({}));
                }
                "ipv6-enabled" => {
                    obj.insert(field.clone(), json!(false));
                }
                "description" | "deploy-target" | "ssh-key" | "user-data" => {
                    obj.remove(&field);
                }
                _ => return Err(err(400, format!("field {field:?} cannot be reset"))),
            }
            let pool = p.clone();
            sync_members(state, &zone, &pool);
            ctx.op(state, "instance-pool", &id).into()
        }
        "delete-instance-pool" => {
            let id = ctx.id().to_string();
            let z = state.zone(&zone);
            z.instance_pools.remove(&id).ok_or_else(|| not_found("instance pool", &id))?;
            z.instances.retain(|_, i| i["manager"]["id"] != id.as_str());
            ctx.op(state, "instance-pool", &id).into()
        }
        "list-instances" => {
            let q = ctx.query;
            let items: Vec<Value> = state
                .zone(&zone)
                .instances
                .values()
                .filter(|i| q.get("manager-id").is_none_or(|m| i["manager"]["id"] == m.as_str()))
                .filter(|i| q.get("manager-type").is_none_or(|m| i["manager"]["type"] == m.as_str()))
                .filter(|i| q.get("ip-address").is_none_or(|m| i["public-ip"] == m.as_str()))
                .map(|i| {
                    let mut i = i.clone();
                    if let Some(o) = i.as_object_mut() {
                        // Lists do not carry user-data (API-NOTES §5.3).
                        o.remove("user-data");
                    }
                    i
                })
                .collect();
            json!({ "instances": items }).into()
        }
        "get-instance" => state.zone(&zone).instances.get(ctx.id()).cloned().ok_or_else(|| not_found("instance", ctx.id()))?.into(),
        "update-instance" => {
            let id = ctx.id().to_string();
            let i = state.zone(&zone).instances.get_mut(&id).ok_or_else(|| not_found("instance", &id))?;
            copy_fields(i, ctx.body, &["name", "user-data", "labels", "public-ip-assignment"]);
            ctx.op(state, "instance", &id).into()
        }

        // Network load balancers (zonal).
        "list-load-balancers" => {
            json!({ "load-balancers": state.zone(&zone).load_balancers.values().cloned().collect::<Vec<_>>() }).into()
        }
        "get-load-balancer" => state
            .zone(&zone)
            .load_balancers
            .get(ctx.id())
            .cloned()
            .ok_or_else(|| not_found("load balancer", ctx.id()))?
            .into(),
        "create-load-balancer" => {
            let name = ctx.field("name").and_then(Value::as_str).unwrap_or_default().to_string();
            name_conflict(state.zone(&zone).load_balancers.values(), &name, "load balancer", None)?;
            let id = (ctx.new_id)();
            let ip = elastic_ip(state.next_elastic_ip).to_string();
            state.next_elastic_ip += 1;
            let mut lb = json!({ "id": id, "name": name, "state": "running", "ip": ip, "services": [], "labels": {}, "created-at": rfc3339(ctx.now_ms) });
            copy_fields(&mut lb, ctx.body, &["description", "labels"]);
            state.zone(&zone).load_balancers.insert(id.clone(), lb);
            ctx.op(state, "load-balancer", &id).into()
        }
        "update-load-balancer" => {
            let id = ctx.id().to_string();
            if let Some(name) = ctx.field("name").and_then(Value::as_str) {
                name_conflict(state.zone(&zone).load_balancers.values(), name, "load balancer", Some(&id))?;
            }
            let lb = state.zone(&zone).load_balancers.get_mut(&id).ok_or_else(|| not_found("load balancer", &id))?;
            copy_fields(lb, ctx.body, &["name", "description", "labels"]);
            ctx.op(state, "load-balancer", &id).into()
        }
        "delete-load-balancer" => {
            let id = ctx.id().to_string();
            state.zone(&zone).load_balancers.remove(&id).ok_or_else(|| not_found("load balancer", &id))?;
            ctx.op(state, "load-balancer", &id).into()
        }
        "add-service-to-load-balancer" | "update-load-balancer-service" => {
            let id = ctx.id().to_string();
            let adding = operation.starts_with("add");
            let service_id = if adding { (ctx.new_id)() } else { ctx.params.get("service-id").cloned().unwrap_or_default() };
            let body = ctx.body.clone();
            if let Some(pool) = id_of(body.get("instance-pool"))
                && !state.zone(&zone).instance_pools.contains_key(&pool)
            {
                return Err(not_found("instance pool", &pool));
            }
            if let Some(hc) = body.get("healthcheck") {
                let interval = hc.get("interval").and_then(Value::as_i64).unwrap_or(10);
                let timeout = hc.get("timeout").and_then(Value::as_i64).unwrap_or(2);
                if timeout > interval {
                    return Err(err(400, "healthcheck timeout must not exceed its interval"));
                }
            }
            let lb = state.zone(&zone).load_balancers.get_mut(&id).ok_or_else(|| not_found("load balancer", &id))?;
            let services = lb["services"].as_array_mut().ok_or_else(|| err(500, "corrupt load balancer"))?;
            let port = body.get("port").and_then(Value::as_i64);
            let protocol = body.get("protocol").cloned();
            for s in services.iter() {
                if s["id"] == service_id.as_str() {
                    continue;
                }
                let same_port = port.is_some_and(|p| s["port"].as_i64() == Some(p));
                let same_proto = protocol.as_ref().is_none_or(|p| s["protocol"] == *p);
                if same_port && same_proto {
                    return Err(err(409, format!("port {} is already used by service {}", port.unwrap_or(0), s["name"])));
                }
                if body.get("name").is_some_and(|n| s["name"] == *n) {
                    return Err(err(409, format!("a service named {} already exists", s["name"])));
                }
            }
            if adding {
                let mut svc = json!({ "id": service_id, "state": "running", "healthcheck-status": [] });
                copy_fields(&mut svc, &body, &["name", "description", "instance-pool", "protocol", "strategy", "port", "target-port", "healthcheck"]);
                services.push(svc);
            } else {
                let svc = services.iter_mut().find(|s| s["id"] == service_id.as_str()).ok_or_else(|| not_found("load balancer service", &service_id))?;
                copy_fields(svc, &body, &["name", "description", "protocol", "strategy", "port", "target-port", "healthcheck"]);
            }
            ctx.op(state, "load-balancer", &id).into()
        }
        "get-load-balancer-service" => {
            let sid = ctx.params.get("service-id").cloned().unwrap_or_default();
            let lb = state.zone(&zone).load_balancers.get(ctx.id()).ok_or_else(|| not_found("load balancer", ctx.id()))?;
            lb["services"].as_array().and_then(|a| a.iter().find(|s| s["id"] == sid.as_str())).cloned().ok_or_else(|| not_found("load balancer service", &sid))?.into()
        }
        "delete-load-balancer-service" => {
            let id = ctx.id().to_string();
            let sid = ctx.params.get("service-id").cloned().unwrap_or_default();
            let lb = state.zone(&zone).load_balancers.get_mut(&id).ok_or_else(|| not_found("load balancer", &id))?;
            let services = lb["services"].as_array_mut().ok_or_else(|| err(500, "corrupt load balancer"))?;
            let before = services.len();
            services.retain(|s| s["id"] != sid.as_str());
            if services.len() == before {
                return Err(not_found("load balancer service", &sid));
            }
            ctx.op(state, "load-balancer", &id).into()
        }

        // Private networks (zonal).
        "list-private-networks" => {
            json!({ "private-networks": state.zone(&zone).private_networks.values().cloned().collect::<Vec<_>>() }).into()
        }
        "get-private-network" => state
            .zone(&zone)
            .private_networks
            .get(ctx.id())
            .cloned()
            .ok_or_else(|| not_found("private network", ctx.id()))?
            .into(),
        "create-private-network" | "update-private-network" => {
            let creating = operation.starts_with("create");
            let id = if creating { (ctx.new_id)() } else { ctx.id().to_string() };
            let body = ctx.body.clone();
            if let Some(name) = body.get("name").and_then(Value::as_str) {
                name_conflict(state.zone(&zone).private_networks.values(), name, "private network", Some(&id))?;
            }
            let mut net = if creating {
                json!({ "id": id, "vni": 1000 + state.zone(&zone).private_networks.len(), "leases": [], "labels": {} })
            } else {
                state.zone(&zone).private_networks.get(&id).cloned().ok_or_else(|| not_found("private network", &id))?
            };
            copy_fields(&mut net, &body, &["name", "description", "netmask", "start-ip", "end-ip", "labels", "options"]);
            check_managed_range(&net)?;
            state.zone(&zone).private_networks.insert(id.clone(), net);
            ctx.op(state, "private-network", &id).into()
        }
        "delete-private-network" => {
            let id = ctx.id().to_string();
            let z = state.zone(&zone);
            if !z.private_networks.contains_key(&id) {
                return Err(not_found("private network", &id));
            }
            if z.instance_pools.values().chain(z.instances.values()).any(|p| refs(p.get("private-networks")).contains(&id)) {
                return Err(err(409, format!("private network {id} is in use")));
            }
            z.private_networks.remove(&id);
            ctx.op(state, "private-network", &id).into()
        }
        other => return Err(err(501, format!("the emulator does not implement {other}"))),
    })
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
        let ip = instance_ip(state.next_instance_ip).to_string();
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
