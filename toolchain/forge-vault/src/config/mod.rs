//! The Vault configuration of spec §5.3-5.8, declared as a list of [`Item`]s, compared
//! with what Vault holds ([`plan`]) and applied ([`apply`]).
//!
//! Only forge's own paths are read or written: the mounts below, the `platform-*` and
//! `forge-admin` policies, the `file/` audit device and the Exoscale plugin catalog
//! entries. A mount that exists with another type is a conflict forge reports and never
//! replaces (its data would be lost). Generated secrets (KV) are made once with the OS
//! CSPRNG and never shown; a plan says only that they will be generated.
//!
//! Fixed against the original (Appendix A): issuing URLs carry the port (#12), no trailing
//! space in the etcd CA's CN (#12), every role lists the names its consumer needs instead
//! of `allow_any_name` (#32), `system:masters` only on the two client roles that act as
//! cluster administrators (#32), the unused `cloud-controller-manager` and
//! `konnectivity-agent` roles and the issue path to a role that never existed are gone
//! (#12), the IAM roles list their operations (#33), a file audit device is on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use futures_util::StreamExt as _;
use rand::{Rng, RngExt};
use serde_json::{Value, json};

use forge_schema::platform::Platform;

use crate::StageError;
use crate::client::{VaultClient, VaultError};
use crate::pki::Ca;
use crate::secrets::Secret;

mod exoscale;
mod roles;

pub use exoscale::{AUTH_PLUGIN_SHA256, SECRETS_PLUGIN_SHA256, exoscale_items, iam_operations};
use roles::{role_body, role_specs};

/// Where the policies live in the project.
pub const POLICY_DIR: &str = "manifests/vault/policies";
/// forge's own policy.
pub const ADMIN_POLICY: &str = "forge-admin";

/// The path of the file audit device on the Vault servers.
pub const AUDIT_FILE: &str = "/var/log/vault/audit.log";

/// Reads `manifests/vault/policies/*.hcl` (name = file stem).
pub fn load_policies(project: &Path) -> Result<BTreeMap<String, String>, StageError> {
    let dir = project.join(POLICY_DIR);
    let io = |e| StageError::Io {
        path: dir.clone(),
        source: e,
    };
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).map_err(io)? {
        let p = e.map_err(io)?.path();
        if p.extension().and_then(|x| x.to_str()) != Some("hcl") {
            continue;
        }
        let Some(name) = p.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(&p).map_err(|e| StageError::Io {
            path: p.clone(),
            source: e,
        })?;
        out.insert(name.to_string(), text);
    }
    if !out.contains_key(ADMIN_POLICY) {
        return Err(StageError::Invalid(format!(
            "{}/{ADMIN_POLICY}.hcl is missing: forge needs it for its own token",
            dir.display()
        )));
    }
    Ok(out)
}

/// Exoscale credentials the plugins are configured with (spec §5.6, §5.8).
#[derive(Debug, Clone)]
pub struct ExoscaleCredentials {
    pub key: String,
    pub secret: Secret,
}

/// The inputs of the configuration.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub platform: &'a Platform,
    /// The Platform Root CA imported into `pki/root`. When the secrets directory holds
    /// none and `pki/root` is empty, apply makes one (key written to `secrets`).
    pub root_ca: Option<&'a Ca>,
    pub secrets: &'a crate::secrets::SecretsDir,
    pub policies: &'a BTreeMap<String, String>,
    /// `Some` when the Vault servers are Exoscale instances running the image's plugins
    /// and credentials were given.
    pub exoscale: Option<ExoscaleCredentials>,
    /// Why the Exoscale plugins are left out, when they are.
    pub exoscale_skip: Option<String>,
}

/// How a PKI mount gets its CA.
#[derive(Debug, Clone, PartialEq)]
pub enum CaSource {
    /// The Platform Root CA, imported.
    Imported,
    /// An intermediate generated inside Vault, signed by `parent`.
    Intermediate { parent: String },
    /// A root generated inside Vault (key never leaves it).
    Internal,
    /// A root generated inside Vault with its key exported once into KV `kv_path`
    /// (the kubelet CA: the controller-manager signs kubelet CSRs with it).
    ExportedTo { kv_path: String },
}

/// Generated KV secrets (spec §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvSecret {
    ServiceAccount,
    SecretEncryption,
    BootstrapToken,
}

impl KvSecret {
    fn fields(self) -> &'static [&'static str] {
        match self {
            KvSecret::ServiceAccount => &["private_key", "public_key"],
            KvSecret::SecretEncryption => &["keys"],
            KvSecret::BootstrapToken => &["id", "secret"],
        }
    }

    /// Makes the secret with the OS CSPRNG.
    fn generate(self) -> Result<Value, StageError> {
        let mut rng = rand::rng();
        let alnum = |rng: &mut rand::rngs::ThreadRng, n: usize| -> String {
            const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
            (0..n)
                .map(|_| char::from(A[rng.random_range(0..A.len())]))
                .collect()
        };
        Ok(match self {
            KvSecret::ServiceAccount => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| StageError::Invalid(format!("service-account key: {e}")))?;
                json!({"private_key": key.serialize_pem(), "public_key": key.public_key_pem()})
            }
            KvSecret::SecretEncryption => {
                // aescbc/secretbox want 32 random bytes, base64 in the encryption config.
                let mut k = [0u8; 32];
                rng.fill_bytes(&mut k);
                json!({"keys": {"key-0": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, k)}})
            }
            KvSecret::BootstrapToken => {
                json!({"id": alnum(&mut rng, 6), "secret": alnum(&mut rng, 16)})
            }
        })
    }
}

/// One piece of declared configuration.
#[derive(Debug, Clone)]
pub enum Item {
    Mount {
        path: String,
        kind: String,
        description: String,
        default_ttl: u64,
        max_ttl: u64,
        options: Option<Value>,
    },
    AuthMount {
        path: String,
        kind: String,
        description: String,
    },
    Ca {
        mount: String,
        common_name: String,
        ttl: u64,
        source: CaSource,
    },
    Urls {
        mount: String,
        issuing: Vec<String>,
    },
    Role {
        mount: String,
        name: String,
        body: Value,
    },
    Kv {
        path: String,
        secret: KvSecret,
    },
    Policy {
        name: String,
        text: String,
    },
    Audit,
    /// A write whose body holds secrets (plugin configuration): compared on the fields
    /// Vault reads back, never shown.
    Config {
        path: String,
        body: Value,
        /// Fields Vault does not return (secrets): sent, not compared.
        write_only: Vec<&'static str>,
    },
    Plugin {
        kind: &'static str,
        name: String,
        command: String,
        sha256: String,
        args: Vec<String>,
    },
}

impl Item {
    /// How the item is named in a plan.
    pub fn address(&self) -> String {
        match self {
            Item::Mount { path, kind, .. } => format!("mount {path} ({kind})"),
            Item::AuthMount { path, kind, .. } => format!("auth {path} ({kind})"),
            Item::Ca { mount, source, .. } => match source {
                CaSource::Imported => format!("ca {mount} (Platform Root CA, imported)"),
                CaSource::Intermediate { parent } => {
                    format!("ca {mount} (intermediate signed by {parent})")
                }
                CaSource::Internal => format!("ca {mount} (root, key inside Vault)"),
                CaSource::ExportedTo { kv_path } => format!("ca {mount} (root, key in {kv_path})"),
            },
            Item::Urls { mount, .. } => format!("urls {mount}"),
            Item::Role { mount, name, .. } => format!("role {mount}/roles/{name}"),
            Item::Kv { path, .. } => format!("secret {path}"),
            Item::Policy { name, .. } => format!("policy {name}"),
            Item::Audit => "audit file/".into(),
            Item::Config { path, .. } => format!("config {path}"),
            Item::Plugin { kind, name, .. } => format!("plugin {kind}/{name}"),
        }
    }
}

pub(crate) const HOUR: u64 = 3600;

/// Subject fields of a role or CA, in Vault's list form.
pub(crate) fn subject_fields(p: &Platform) -> serde_json::Map<String, Value> {
    let s = &p.pki.subject;
    let list = |v: &Option<String>| json!(v.iter().cloned().collect::<Vec<_>>());
    let mut m = serde_json::Map::new();
    m.insert("country".into(), list(&s.country));
    m.insert("province".into(), list(&s.province));
    m.insert("locality".into(), list(&s.locality));
    m.insert("street_address".into(), list(&s.street_address));
    m.insert("postal_code".into(), list(&s.postal_code));
    m
}

/// The declared configuration, in the order it is applied.
pub fn desired(inp: &Inputs<'_>) -> Vec<Item> {
    let p = inp.platform;
    let ca_ttl = p.pki.ca_hours * HOUR;
    let ica_ttl = p.pki.ica_hours * HOUR;
    let root_ttl = p.pki.root_ca_hours * HOUR;
    let cert_ttl = p.pki.cert_hours * HOUR;
    let kv_mount = "kv/platform/kubernetes";
    // (mount, description, TTL, CA). A CA is named `<P> <description>`, the root as the
    // root CA forge made.
    let pki_mounts: Vec<(&str, &str, u64, CaSource)> = vec![
        ("pki/root", "Platform CA", root_ttl, CaSource::Imported),
        (
            "pki/platform/vault",
            "Vault ICA",
            ica_ttl,
            CaSource::Intermediate {
                parent: "pki/root".into(),
            },
        ),
        (
            "pki/platform/kubernetes/etcd",
            "Kubernetes Store (etcd) CA",
            ca_ttl,
            CaSource::Internal,
        ),
        (
            "pki/platform/kubernetes/control-plane",
            "Kubernetes Control-Plane CA",
            ca_ttl,
            CaSource::Internal,
        ),
        (
            "pki/platform/kubernetes/kubelet",
            "Kubernetes Kubelets CA",
            ca_ttl,
            CaSource::ExportedTo {
                kv_path: format!("{kv_mount}/kubelet-pki"),
            },
        ),
        (
            "pki/platform/kubernetes/aggregation-layer",
            "Kubernetes Aggregation-Layer CA",
            ca_ttl,
            CaSource::Internal,
        ),
        (
            "pki/platform/kubernetes/client",
            "Kubernetes Clients CA",
            ca_ttl,
            CaSource::Internal,
        ),
    ];
    let mut items = Vec::new();
    for (path, desc, ttl, _) in &pki_mounts {
        items.push(Item::Mount {
            path: (*path).into(),
            kind: "pki".into(),
            description: (*desc).into(),
            default_ttl: *ttl,
            max_ttl: *ttl,
            options: None,
        });
    }
    items.push(Item::Mount {
        path: kv_mount.into(),
        kind: "kv".into(),
        description: "Kubernetes Secrets".into(),
        default_ttl: cert_ttl,
        max_ttl: cert_ttl,
        options: Some(json!({"version": "1"})),
    });
    // The kubelet CA's key goes to KV when the CA is made, so KV comes first.
    for (path, desc, ttl, source) in pki_mounts {
        let common_name = match source {
            CaSource::Imported => crate::names::root_ca_cn(p),
            _ => format!("{} {desc}", p.name),
        };
        items.push(Item::Ca {
            mount: path.into(),
            common_name,
            ttl,
            source,
        });
        items.push(Item::Urls {
            mount: path.into(),
            issuing: vec![format!("https://vault.{}:8200/v1/{path}/ca", p.domain)],
        });
    }
    for r in role_specs(p) {
        items.push(Item::Role {
            mount: r.mount.into(),
            name: r.name.into(),
            body: role_body(p, &r),
        });
    }
    for (name, secret) in [
        ("service-account", KvSecret::ServiceAccount),
        ("secret-encryption", KvSecret::SecretEncryption),
        ("kubelet-bootstrap-token", KvSecret::BootstrapToken),
    ] {
        items.push(Item::Kv {
            path: format!("{kv_mount}/{name}"),
            secret,
        });
    }
    for (name, text) in inp.policies {
        items.push(Item::Policy {
            name: name.clone(),
            text: text.clone(),
        });
    }
    items.push(Item::Audit);
    if let Some(creds) = &inp.exoscale {
        items.extend(exoscale_items(p, creds));
    }
    items
}

/// What a plan does to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Replace,
    /// Exists in a form forge will not change: apply stops before touching anything.
    Conflict,
}

impl Action {
    pub fn sign(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Conflict => "!",
        }
    }
}

/// One difference.
#[derive(Debug, Clone)]
pub struct Change {
    pub item: Item,
    pub action: Action,
    /// Field by field (`ttl: 3600 -> 345600`); secrets are never shown.
    pub details: Vec<String>,
}

/// The differences between the declared and the actual configuration.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Things left out, and why.
    pub notes: Vec<String>,
    pub unchanged: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        for c in &self.changes {
            let _ = writeln!(s, "  {} {}", c.action.sign(), c.item.address());
            for d in &c.details {
                let _ = writeln!(s, "      {d}");
            }
        }
        let count = |a| self.changes.iter().filter(|c| c.action == a).count();
        let _ = writeln!(
            s,
            "vault-config: {} to create, {} to update, {} to replace, {} in conflict, {} unchanged.",
            count(Action::Create),
            count(Action::Update),
            count(Action::Replace),
            count(Action::Conflict),
            self.unchanged
        );
        s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "stage": "vault-config",
            "changes": self.changes.iter().map(|c| json!({
                "address": c.item.address(),
                "action": c.action,
                "details": c.details,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
            "unchanged": self.unchanged,
        })
    }
}

/// What `sys/mounts` and `sys/auth` hold, read once per plan.
struct Listing {
    mounts: serde_json::Map<String, Value>,
    auths: serde_json::Map<String, Value>,
}

async fn listing(c: &VaultClient) -> Result<Listing, VaultError> {
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
fn field_diffs(want: &Value, have: &Value, skip: &[&str]) -> Vec<String> {
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

fn ttl_of(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

async fn ca_certificate(c: &VaultClient, mount: &str) -> Result<Option<String>, VaultError> {
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

fn cn_of(pem: &str) -> String {
    crate::pki::inspect(pem, "CA")
        .map(|i| i.common_name)
        .unwrap_or_default()
}

/// Compares one item with Vault.
async fn diff_item(
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
async fn write_data(c: &VaultClient, path: &str, body: &Value) -> Result<Value, StageError> {
    c.write(path, body)
        .await?
        .and_then(|v| v.get("data").cloned())
        .ok_or_else(|| StageError::Invalid(format!("{path} returned no data")))
}

/// A string field of an answer, empty when absent.
fn text_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

async fn apply_change(c: &VaultClient, inp: &Inputs<'_>, ch: &Change) -> Result<(), StageError> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn generated_secrets_have_the_documented_shape() {
        let t = KvSecret::BootstrapToken.generate().unwrap();
        let id = t["id"].as_str().unwrap();
        let secret = t["secret"].as_str().unwrap();
        assert_eq!(id.len(), 6);
        assert_eq!(secret.len(), 16);
        assert!(
            id.chars()
                .chain(secret.chars())
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        let a = KvSecret::SecretEncryption.generate().unwrap();
        let b = KvSecret::SecretEncryption.generate().unwrap();
        assert_ne!(a, b);
        let sa = KvSecret::ServiceAccount.generate().unwrap();
        assert!(sa["private_key"].as_str().unwrap().contains("PRIVATE KEY"));
        assert!(sa["public_key"].as_str().unwrap().contains("PUBLIC KEY"));
    }

    #[test]
    fn field_diffs_ignore_unknown_and_write_only_fields() {
        let want = json!({"ttl": 3600, "a": [1], "secret": "s", "new_field": true});
        let have = json!({"ttl": "3600", "a": [2]});
        assert_eq!(
            field_diffs(&want, &have, &["secret"]),
            vec!["a: [2] -> [1]"]
        );
    }
}
