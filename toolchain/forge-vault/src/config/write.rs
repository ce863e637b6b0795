//! Applying a configuration plan: each change as the Vault API calls that make it, in the
//! plan's order.

use super::*;

use serde_json::{Value, json};

use crate::StageError;
use crate::client::{VaultClient, VaultError};

/// Carries out a plan, in its order. Conflicts stop it before any change. On an error,
/// the message says how many changes were made; `forge plan` shows the rest.
pub async fn apply(
    c: &VaultClient,
    inp: &Inputs<'_>,
    plan: &Plan,
    report: crate::lifecycle::Report<'_>,
) -> Result<usize, StageError> {
    let conflicts: Vec<String> = plan
        .changes
        .iter()
        .filter(|ch| ch.action == Action::Conflict)
        .map(|ch| format!("{}: {}", ch.item.address(), ch.details.join("; ")))
        .collect();
    if !conflicts.is_empty() {
        return Err(StageError::Invalid(format!(
            "nothing was changed, because of {} conflict(s):\n  {}",
            conflicts.len(),
            conflicts.join("\n  ")
        )));
    }
    let total = plan.changes.len();
    for (done, ch) in plan.changes.iter().enumerate() {
        apply_change(c, inp, ch).await.map_err(|e| {
            StageError::Invalid(format!(
                "{}: {e}\n{done} of {total} changes were applied; `forge plan --stage vault-config` shows what remains",
                ch.item.address()
            ))
        })?;
        report(&format!("{} {}", ch.action.sign(), ch.item.address()));
    }
    Ok(total)
}

/// A write's `data` object; an error when Vault answered nothing.
pub(super) async fn write_data(
    c: &VaultClient,
    path: &str,
    body: &Value,
) -> Result<Value, StageError> {
    c.write(path, body)
        .await?
        .and_then(|v| v.get("data").cloned())
        .ok_or_else(|| StageError::Invalid(format!("{path} returned no data")))
}

/// A string field of an answer, empty when absent.
pub(super) fn text_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

pub(super) async fn apply_change(
    c: &VaultClient,
    inp: &Inputs<'_>,
    ch: &Change,
) -> Result<(), StageError> {
    let p = inp.platform;
    match &ch.item {
        Item::Mount {
            path,
            kind,
            description,
            default_ttl,
            max_ttl,
            options,
        } => {
            let cfg = json!({"default_lease_ttl": format!("{default_ttl}s"), "max_lease_ttl": format!("{max_ttl}s")});
            if ch.action == Action::Create {
                let mut body = json!({"type": kind, "description": description, "config": cfg});
                if let (Some(o), Some(b)) = (options, body.as_object_mut()) {
                    b.insert("options".into(), o.clone());
                }
                c.write(&format!("sys/mounts/{path}"), &body).await?;
            } else {
                let mut body = cfg;
                if let Some(b) = body.as_object_mut() {
                    b.insert("description".into(), json!(description));
                }
                c.write(&format!("sys/mounts/{path}/tune"), &body).await?;
            }
        }
        Item::AuthMount {
            path,
            kind,
            description,
        } => {
            c.write(
                &format!("sys/auth/{path}"),
                &json!({"type": kind, "description": description}),
            )
            .await?;
        }
        Item::Ca {
            mount,
            common_name,
            ttl,
            source,
        } => {
            let (key_type, key_bits) = p.pki.ca_key.vault_key();
            let mut params = json!({
                "common_name": common_name,
                "ttl": format!("{ttl}s"),
                "key_type": key_type,
                "key_bits": key_bits,
                "organization": p.pki.subject.organization.clone().unwrap_or_default(),
                "ou": p.pki.subject.organizational_unit.clone().unwrap_or_default(),
            });
            if let Some(o) = params.as_object_mut() {
                for (k, v) in subject_fields(p) {
                    let joined = v
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join("-")
                        })
                        .unwrap_or_default();
                    o.insert(k, json!(joined));
                }
            }
            match source {
                CaSource::Imported => {
                    let made;
                    let r = match inp.root_ca {
                        Some(r) => r,
                        None => {
                            made = crate::lifecycle::create_root_ca(p, inp.secrets)?;
                            &made
                        }
                    };
                    let bundle = format!("{}\n{}", r.cert_pem.trim(), r.key_pem.expose().trim());
                    c.write(
                        &format!("{mount}/config/ca"),
                        &json!({"pem_bundle": bundle}),
                    )
                    .await?;
                }
                CaSource::Internal => {
                    c.write(&format!("{mount}/root/generate/internal"), &params)
                        .await?;
                }
                CaSource::Intermediate { parent } => {
                    let csr = c
                        .write(&format!("{mount}/intermediate/generate/internal"), &params)
                        .await?
                        .and_then(|v| v.pointer("/data/csr").cloned())
                        .and_then(|v| v.as_str().map(str::to_string))
                        .ok_or_else(|| StageError::Invalid("no CSR returned".into()))?;
                    let mut sign = params.clone();
                    if let Some(o) = sign.as_object_mut() {
                        o.insert("csr".into(), json!(csr));
                        o.insert("format".into(), json!("pem_bundle"));
                        o.insert("use_csr_values".into(), json!(false));
                    }
                    let signed =
                        write_data(c, &format!("{parent}/root/sign-intermediate"), &sign).await?;
                    let cert = text_field(&signed, "certificate");
                    let issuing = text_field(&signed, "issuing_ca");
                    let chain = if cert.contains(issuing.trim()) {
                        cert.to_string()
                    } else {
                        format!("{}\n{}", cert.trim(), issuing.trim())
                    };
                    c.write(
                        &format!("{mount}/intermediate/set-signed"),
                        &json!({"certificate": chain}),
                    )
                    .await?;
                }
                CaSource::ExportedTo { kv_path } => {
                    if ch.action == Action::Replace {
                        c.delete(&format!("{mount}/root")).await?;
                    }
                    if let Some(o) = params.as_object_mut() {
                        // PKCS#8, which every consumer (and rcgen, in the tests) reads.
                        o.insert("private_key_format".into(), json!("pkcs8"));
                    }
                    let v =
                        write_data(c, &format!("{mount}/root/generate/exported"), &params).await?;
                    let key = text_field(&v, "private_key");
                    let cert = text_field(&v, "certificate");
                    if key.is_empty() || cert.is_empty() {
                        return Err(StageError::Invalid(
                            "root/generate/exported returned no key".into(),
                        ));
                    }
                    // Straight from Vault's answer into KV: the key touches no disk.
                    c.write(kv_path, &json!({"private_key": key, "certificate": cert}))
                        .await?;
                }
            }
        }
        Item::Urls { mount, issuing } => {
            c.write(
                &format!("{mount}/config/urls"),
                &json!({"issuing_certificates": issuing}),
            )
            .await?;
        }
        Item::Role { mount, name, body } => {
            c.write(&format!("{mount}/roles/{name}"), body).await?;
        }
        Item::Kv { path, secret } => {
            c.write(path, &secret.generate()?).await?;
        }
        Item::Policy { name, text } => {
            c.put(
                &format!("sys/policies/acl/{name}"),
                &json!({"policy": text}),
            )
            .await?;
        }
        Item::Audit => {
            let body = json!({"type": "file", "description": "forge: every request, hashed secrets", "options": {"file_path": AUDIT_FILE, "mode": "0600"}});
            match c.put("sys/audit/file", &body).await {
                Ok(_) => {}
                Err(VaultError::Api { message, .. })
                    if message.contains("declarative") || message.contains("via API") =>
                {
                    return Err(StageError::Invalid(format!(
                        "this Vault enables audit devices only from its configuration file ({message}); add\n  audit \"file\" \"file\" {{ options {{ file_path = \"{AUDIT_FILE}\" mode = \"0600\" }} }}\nto every server's configuration and reload it (SIGHUP)"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Item::Config { path, body, .. } => {
            c.write(path, body).await?;
        }
        Item::Plugin {
            kind,
            name,
            command,
            sha256,
            args,
        } => {
            c.put(
                &format!("sys/plugins/catalog/{kind}/{name}"),
                &json!({"command": command, "sha256": sha256, "args": args}),
            )
            .await?;
        }
    }
    Ok(())
}
