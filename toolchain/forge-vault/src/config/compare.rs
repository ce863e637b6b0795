//! Planning the configuration: each declared item compared with what Vault holds, field by
//! field, reading only forge's declared paths (8 at a time).

use super::*;

use serde_json::{Value, json};

use crate::StageError;
use crate::client::{VaultClient, VaultError};
use crate::pki::Ca;

/// What `sys/mounts` and `sys/auth` hold, read once per plan.
pub(super) struct Listing {
    mounts: serde_json::Map<String, Value>,
    auths: serde_json::Map<String, Value>,
}

pub(super) async fn listing(c: &VaultClient) -> Result<Listing, VaultError> {
    let obj = |v: Option<Value>| -> serde_json::Map<String, Value> {
        v.and_then(|v| v.get("data").cloned().or(Some(v)))
            .and_then(|d| d.as_object().cloned())
            .unwrap_or_default()
    };
    Ok(Listing {
        mounts: obj(c.read("sys/mounts").await?),
        auths: obj(c.read("sys/auth").await?),
    })
}

/// Compares the fields of `want` that `have` returns. Fields Vault does not return (an
/// option this Vault version does not know, write-only secrets) are not compared.
pub(super) fn field_diffs(want: &Value, have: &Value, skip: &[&str]) -> Vec<String> {
    let (Some(w), Some(h)) = (want.as_object(), have.as_object()) else {
        return vec![];
    };
    let mut out = Vec::new();
    for (k, wv) in w {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let Some(hv) = h.get(k) else { continue };
        let same = match (wv, hv) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            // Vault returns some numbers as strings ("86400") and some lists as one string.
            (Value::Number(a), Value::String(b)) => b.parse::<f64>().ok() == a.as_f64(),
            (Value::Array(a), Value::String(b)) => {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
                    == *b
            }
            _ => wv == hv,
        };
        if !same {
            out.push(format!("{k}: {hv} -> {wv}"));
        }
    }
    out
}

pub(super) fn ttl_of(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

pub(super) async fn ca_certificate(
    c: &VaultClient,
    mount: &str,
) -> Result<Option<String>, VaultError> {
    match c.read(&format!("{mount}/cert/ca")).await {
        Ok(v) => Ok(v
            .and_then(|v| v.pointer("/data/certificate").cloned())
            .and_then(|c| c.as_str().map(str::to_string))
            .filter(|s| !s.trim().is_empty())),
        // "no default issuer currently configured" (multi-issuer PKI without a CA).
        Err(VaultError::Api { status: 400, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) fn cn_of(pem: &str) -> String {
    crate::pki::inspect(pem, "CA")
        .map(|i| i.common_name)
        .unwrap_or_default()
}

/// Compares one item with Vault.
pub(super) async fn diff_item(
    c: &VaultClient,
    l: &Listing,
    item: &Item,
    root_ca: Option<&Ca>,
) -> Result<Option<(Action, Vec<String>)>, StageError> {
    Ok(match item {
        Item::Mount {
            path,
            kind,
            description,
            default_ttl,
            max_ttl,
            options,
        } => {
            let Some(have) = l.mounts.get(&format!("{path}/")) else {
                return Ok(Some((Action::Create, vec![])));
            };
            let have_kind = have.get("type").and_then(Value::as_str).unwrap_or_default();
            if have_kind != kind {
                return Ok(Some((
                    Action::Conflict,
                    vec![format!(
                        "exists as a `{have_kind}` mount; forge does not replace mounts (their data would be lost): disable or move it, then re-run"
                    )],
                )));
            }
            let mut d = Vec::new();
            let desc = have
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if desc != description {
                d.push(format!("description: {desc:?} -> {description:?}"));
            }
            let cfg = have.get("config");
            let dt = ttl_of(cfg.and_then(|c| c.get("default_lease_ttl")));
            let mt = ttl_of(cfg.and_then(|c| c.get("max_lease_ttl")));
            if dt != *default_ttl {
                d.push(format!("default_lease_ttl: {dt} -> {default_ttl}"));
            }
            if mt != *max_ttl {
                d.push(format!("max_lease_ttl: {mt} -> {max_ttl}"));
            }
            if let Some(want) = options.as_ref().and_then(|o| o.get("version"))
                && kind == "kv"
            {
                let hv = have
                    .pointer("/options/version")
                    .and_then(Value::as_str)
                    .unwrap_or("1");
                if Some(hv) != want.as_str() {
                    return Ok(Some((
                        Action::Conflict,
                        vec![format!(
                            "is KV version {hv}, forge declares version {want}; forge does not convert KV mounts"
                        )],
                    )));
                }
            }
            (!d.is_empty()).then_some((Action::Update, d))
        }
        Item::AuthMount { path, kind, .. } => match l.auths.get(&format!("{path}/")) {
            None => Some((Action::Create, vec![])),
            Some(h) if h.get("type").and_then(Value::as_str) != Some(kind) => Some((
                Action::Conflict,
                vec![format!(
                    "exists as `{}`; forge does not replace auth methods",
                    h.get("type").and_then(Value::as_str).unwrap_or_default()
                )],
            )),
            Some(_) => None,
        },
        Item::Ca {
            mount,
            common_name,
            source,
            ..
        } => {
            let have = ca_certificate(c, mount).await?;
            match (source, have) {
                (CaSource::Imported, None) => match root_ca {
                    Some(_) => Some((Action::Create, vec![])),
                    None => Some((
                        Action::Create,
                        vec![
                            "a new Platform Root CA, its key written to the secrets directory"
                                .into(),
                        ],
                    )),
                },
                (CaSource::Imported, Some(h)) => match root_ca {
                    Some(r) if h.trim() != r.cert_pem.trim() => Some((
                        Action::Conflict,
                        vec![format!(
                            "holds another CA (`{}`) than the Platform Root CA of the secrets directory",
                            cn_of(&h)
                        )],
                    )),
                    _ => None,
                },
                (CaSource::ExportedTo { kv_path }, Some(h)) => {
                    let kv = c.read_data(kv_path).await?;
                    let kv_cert = kv
                        .as_ref()
                        .and_then(|k| k.get("certificate"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let has_key = kv.as_ref().and_then(|k| k.get("private_key")).is_some();
                    if kv_cert.trim() != h.trim() || !has_key {
                        Some((
                            Action::Replace,
                            vec![format!(
                                "its key is not in {kv_path}: a new CA is generated and its key stored there"
                            )],
                        ))
                    } else {
                        None
                    }
                }
                (_, None) => Some((Action::Create, vec![])),
                (_, Some(h)) => {
                    let cn = cn_of(&h);
                    (cn != *common_name).then(|| {
                        (
                            Action::Conflict,
                            vec![format!(
                                "holds a CA named `{cn}`, not `{common_name}`; forge does not replace CAs (every certificate they signed would break)"
                            )],
                        )
                    })
                }
            }
        }
        Item::Urls { mount, issuing } => {
            let have = c.read_data(&format!("{mount}/config/urls")).await?;
            let h = have
                .as_ref()
                .and_then(|h| h.get("issuing_certificates"))
                .cloned()
                .unwrap_or(json!([]));
            (h != json!(issuing)).then(|| {
                (
                    if h == json!([]) {
                        Action::Create
                    } else {
                        Action::Update
                    },
                    vec![format!("issuing_certificates: {h} -> {}", json!(issuing))],
                )
            })
        }
        Item::Role { mount, name, body } => {
            match c.read_data(&format!("{mount}/roles/{name}")).await? {
                None => Some((Action::Create, vec![])),
                Some(have) => {
                    let d = field_diffs(body, &have, &[]);
                    (!d.is_empty()).then_some((Action::Update, d))
                }
            }
        }
        Item::Kv { path, secret } => match c.read_data(path).await? {
            None => Some((
                Action::Create,
                vec!["generated by forge (value not shown)".into()],
            )),
            Some(h) => {
                let missing: Vec<&str> = secret
                    .fields()
                    .iter()
                    .copied()
                    .filter(|f| h.get(*f).is_none())
                    .collect();
                (!missing.is_empty()).then(|| {
                    (
                        Action::Replace,
                        vec![format!(
                            "lacks {}: generated again (value not shown)",
                            missing.join(", ")
                        )],
                    )
                })
            }
        },
        Item::Policy { name, text } => {
            match c.read_data(&format!("sys/policies/acl/{name}")).await? {
                None => Some((Action::Create, vec![])),
                Some(h) => {
                    let have = h.get("policy").and_then(Value::as_str).unwrap_or_default();
                    (have.trim() != text.trim())
                        .then(|| (Action::Update, vec!["rules differ from the file".into()]))
                }
            }
        }
        Item::Audit => {
            // Devices under `data` (or, from older servers, at the top level).
            let have = c
                .read("sys/audit")
                .await?
                .map(|v| v.get("data").filter(|d| !d.is_null()).cloned().unwrap_or(v));
            let ok = have.as_ref().and_then(Value::as_object).is_some_and(|m| {
                m.values().any(|d| {
                    d.get("type").and_then(Value::as_str) == Some("file")
                        && d.pointer("/options/mode")
                            .and_then(Value::as_str)
                            .is_none_or(|m| m == "0600")
                })
            });
            (!ok).then(|| {
                (
                    Action::Create,
                    vec![format!("file_path = {AUDIT_FILE}, mode 0600")],
                )
            })
        }
        Item::Config {
            path,
            body,
            write_only,
        } => match c.read_data(path).await? {
            None => Some((Action::Create, vec![])),
            Some(h) => {
                let d = field_diffs(body, &h, write_only);
                (!d.is_empty()).then_some((Action::Update, d))
            }
        },
        Item::Plugin {
            kind,
            name,
            command,
            sha256,
            args,
        } => match c
            .read_data(&format!("sys/plugins/catalog/{kind}/{name}"))
            .await?
        {
            None => Some((Action::Create, vec![])),
            Some(h) => {
                let d = field_diffs(
                    &json!({"command": command, "sha256": sha256, "args": args}),
                    &h,
                    &[],
                );
                (!d.is_empty()).then_some((Action::Update, d))
            }
        },
    })
}

/// Reads in flight at once while planning.
const READS_IN_FLIGHT: usize = 8;

/// Compares the declared configuration with Vault.
pub async fn plan(c: &VaultClient, inp: &Inputs<'_>) -> Result<Plan, StageError> {
    let l = listing(c).await?;
    let mut out = Plan::default();
    if let Some(why) = &inp.exoscale_skip {
        out.notes.push(why.clone());
    }
    // Reads are independent: a few in flight at a time, results kept in declared order.
    let results: Vec<_> = futures_util::stream::iter(desired(inp))
        .map(|item| {
            let l = &l;
            async move {
                let d = diff_item(c, l, &item, inp.root_ca).await;
                (item, d)
            }
        })
        .buffered(READS_IN_FLIGHT)
        .collect()
        .await;
    for (item, d) in results {
        match d? {
            Some((action, details)) => out.changes.push(Change {
                item,
                action,
                details,
            }),
            None => out.unchanged += 1,
        }
    }
    Ok(out)
}
