//! Operations, zones, instance types and templates.

use super::*;

use serde_json::{Value, json};

use crate::state::{State, rfc3339};

/// The operations of this family; `None` for another's.
pub(super) fn dispatch(
    operation: &str,
    state: &mut State,
    ctx: &mut Ctx,
) -> Result<Option<Outcome>, ApiError> {
    let zone = ctx.zone.to_string();
    Ok(Some(match operation {
        "get-operation" => {
            let op = state
                .operations
                .get(ctx.id())
                .ok_or_else(|| not_found("operation", ctx.id()))?;
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
            let visibility = ctx
                .query
                .get("visibility")
                .map(String::as_str)
                .unwrap_or("public");
            let family = ctx.query.get("family");
            let items: Vec<Value> = state
                .zone(&zone)
                .templates
                .values()
                .filter(|t| t["visibility"] == visibility)
                .filter(|t| {
                    family.is_none_or(|f| t.get("family").and_then(Value::as_str) == Some(f))
                })
                .cloned()
                .collect();
            json!({ "templates": items }).into()
        }
        "get-template" => state
            .zone(&zone)
            .templates
            .get(ctx.id())
            .cloned()
            .ok_or_else(|| not_found("template", ctx.id()))?
            .into(),
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
                    "name",
                    "description",
                    "url",
                    "checksum",
                    "ssh-key-enabled",
                    "password-enabled",
                    "boot-mode",
                    "default-user",
                    "build",
                    "version",
                    "maintainer",
                    "application-consistent-snapshot-enabled",
                ],
            );
            let mut op = ctx.op(state, "template", &id);
            // Pending until the download finishes.
            if let Some(o) = state
                .operations
                .get_mut(op["id"].as_str().unwrap_or_default())
            {
                o.ready_at_ms = None;
            }
            op["state"] = json!("pending");
            let operation = op["id"].as_str().unwrap_or_default().to_string();
            Outcome {
                body: op,
                download: Some(Download {
                    zone,
                    operation,
                    template: t,
                }),
            }
        }
        "delete-template" => {
            let id = ctx.id().to_string();
            let in_use = state
                .zone(&zone)
                .instance_pools
                .values()
                .any(|p| p["template"]["id"] == id.as_str());
            if in_use {
                return Err(err(
                    409,
                    format!("template {id} is in use by an instance pool"),
                ));
            }
            state
                .zone(&zone)
                .templates
                .remove(&id)
                .ok_or_else(|| not_found("template", &id))?;
            ctx.op(state, "template", &id).into()
        }

        // Security groups (global).
        _ => return Ok(None),
    }))
}
