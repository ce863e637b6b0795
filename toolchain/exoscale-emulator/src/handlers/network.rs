//! Security groups, their rules and external sources, anti-affinity groups and private
//! networks.

use super::*;

use serde_json::{Map, Value, json};

use crate::state::State;

/// The operations of this family; `None` for another's.
pub(super) fn dispatch(
    operation: &str,
    state: &mut State,
    ctx: &mut Ctx,
) -> Result<Option<Outcome>, ApiError> {
    let zone = ctx.zone.to_string();
    Ok(Some(match operation {
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
        _ => return Ok(None),
    }))
}
