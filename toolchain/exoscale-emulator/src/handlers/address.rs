//! Elastic IPs and network load balancers with their services.

use super::*;

use serde_json::{Value, json};

use crate::state::{State, elastic_ip, rfc3339};

/// The operations of this family; `None` for another's.
pub(super) fn dispatch(
    operation: &str,
    state: &mut State,
    ctx: &mut Ctx,
) -> Result<Option<Outcome>, ApiError> {
    let zone = ctx.zone.to_string();
    Ok(Some(match operation {
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
        _ => return Ok(None),
    }))
}
