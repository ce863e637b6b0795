//! SSH keys, instance pools and their members, instances.

use super::*;

use serde_json::{Value, json};

use crate::state::State;

/// The operations of this family; `None` for another's.
pub(super) fn dispatch(
    operation: &str,
    state: &mut State,
    ctx: &mut Ctx,
) -> Result<Option<Outcome>, ApiError> {
    let zone = ctx.zone.to_string();
    Ok(Some(match operation {
        // SSH keys (global, by name).
        "list-ssh-keys" => {
            json!({ "ssh-keys": state.ssh_keys.values().cloned().collect::<Vec<_>>() }).into()
        }
        "get-ssh-key" => {
            let name = ctx.params.get("name").cloned().unwrap_or_default();
            state
                .ssh_keys
                .get(&name)
                .cloned()
                .ok_or_else(|| not_found("SSH key", &name))?
                .into()
        }
        "register-ssh-key" => {
            let name = ctx
                .field("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let key = ctx
                .field("public-key")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let fingerprint = forge_exoscale::types::ssh_key_fingerprint(key)
                .ok_or_else(|| err(400, "invalid public-key: expected an OpenSSH public key"))?;
            if state.ssh_keys.contains_key(&name) {
                return Err(err(
                    409,
                    format!("an SSH key named {name:?} already exists"),
                ));
            }
            state.ssh_keys.insert(
                name.clone(),
                json!({ "name": name, "fingerprint": fingerprint }),
            );
            ctx.op(state, "ssh-key", &name).into()
        }
        "delete-ssh-key" => {
            let name = ctx.params.get("name").cloned().unwrap_or_default();
            state
                .ssh_keys
                .remove(&name)
                .ok_or_else(|| not_found("SSH key", &name))?;
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
            name_conflict(
                state.zone(&zone).instance_pools.values(),
                &name,
                "instance pool",
                None,
            )?;
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
            if body.get("ipv6-enabled").and_then(Value::as_bool) == Some(true)
                && body.get("public-ip-assignment").is_none()
            {
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
                name_conflict(
                    state.zone(&zone).instance_pools.values(),
                    name,
                    "instance pool",
                    Some(&id),
                )?;
            }
            let p = state
                .zone(&zone)
                .instance_pools
                .get_mut(&id)
                .ok_or_else(|| not_found("instance pool", &id))?;
            if p["public-ip-assignment"] == "none"
                && body
                    .get("public-ip-assignment")
                    .is_some_and(|v| v != "none")
            {
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
            let pool = state
                .zone(&zone)
                .instance_pools
                .get(&id)
                .cloned()
                .ok_or_else(|| not_found("instance pool", &id))?;
            check_aag_capacity(state, &pool, size - pool["size"].as_i64().unwrap_or(0))?;
            if let Some(p) = state.zone(&zone).instance_pools.get_mut(&id) {
                p["size"] = json!(size);
            }
            resize_pool(state, ctx, &zone, &id)?;
            ctx.op(state, "instance-pool", &id).into()
        }
        "evict-instance-pool-members" => {
            let id = ctx.id().to_string();
            let evict: Vec<String> = ctx
                .field("instances")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let z = state.zone(&zone);
            if !z.instance_pools.contains_key(&id) {
                return Err(not_found("instance pool", &id));
            }
            for i in &evict {
                if z.instances
                    .get(i)
                    .is_none_or(|x| x["manager"]["id"] != id.as_str())
                {
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
            let p = state
                .zone(&zone)
                .instance_pools
                .get_mut(&id)
                .ok_or_else(|| not_found("instance pool", &id))?;
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
            z.instance_pools
                .remove(&id)
                .ok_or_else(|| not_found("instance pool", &id))?;
            z.instances.retain(|_, i| i["manager"]["id"] != id.as_str());
            ctx.op(state, "instance-pool", &id).into()
        }
        "list-instances" => {
            let q = ctx.query;
            let items: Vec<Value> = state
                .zone(&zone)
                .instances
                .values()
                .filter(|i| {
                    q.get("manager-id")
                        .is_none_or(|m| i["manager"]["id"] == m.as_str())
                })
                .filter(|i| {
                    q.get("manager-type")
                        .is_none_or(|m| i["manager"]["type"] == m.as_str())
                })
                .filter(|i| {
                    q.get("ip-address")
                        .is_none_or(|m| i["public-ip"] == m.as_str())
                })
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
        "get-instance" => state
            .zone(&zone)
            .instances
            .get(ctx.id())
            .cloned()
            .ok_or_else(|| not_found("instance", ctx.id()))?
            .into(),
        "update-instance" => {
            let id = ctx.id().to_string();
            let i = state
                .zone(&zone)
                .instances
                .get_mut(&id)
                .ok_or_else(|| not_found("instance", &id))?;
            copy_fields(
                i,
                ctx.body,
                &["name", "user-data", "labels", "public-ip-assignment"],
            );
            ctx.op(state, "instance", &id).into()
        }
        _ => return Ok(None),
    }))
}
