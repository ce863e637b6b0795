//! Diffing what forge wants with what exists, and showing it like Terraform does.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::resource::{Actual, Desired, Kind, LABEL_LOCKFILE};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
}

impl Action {
    fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }
}

/// One field's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub forces_replacement: bool,
}

/// One resource's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub action: Action,
    pub kind: Kind,
    pub key: String,
    pub name: String,
    /// The existing resource's id (update, replace, delete).
    pub id: Option<String>,
    pub fields: Vec<FieldChange>,
    /// For creates and replaces: what to create.
    #[serde(skip)]
    pub desired: Option<Desired>,
    /// For deletes and replaces: what exists.
    #[serde(skip)]
    pub actual: Option<Actual>,
}

/// The changes of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub stage: String,
    pub platform: String,
    pub zone: String,
    pub changes: Vec<Change>,
}

/// Counts by action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
}

/// Text shown for a value not known until another resource exists.
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";

fn strip_lockfile_label(v: &Value) -> Value {
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        m.remove(LABEL_LOCKFILE);
    }
    v
}

fn same(field: &str, want: &Value, have: Option<&Value>) -> bool {
    let have = have.cloned().unwrap_or(Value::Null);
    if field == "labels" {
        return strip_lockfile_label(want) == strip_lockfile_label(&have);
    }
    match (want, &have) {
        // Lists of references and CIDRs compare as sets.
        (Value::Array(a), Value::Array(b)) => {
            let a: BTreeSet<String> = a.iter().map(Value::to_string).collect();
            let b: BTreeSet<String> = b.iter().map(Value::to_string).collect();
            a == b
        }
        (Value::Array(a), Value::Null) => a.is_empty(),
        _ => *want == have,
    }
}

/// Compares desired resources (already resolved) with the platform's existing ones.
pub fn diff(
    stage: &str,
    platform: &str,
    zone: &str,
    desired: &[Desired],
    actual: &[Actual],
) -> Plan {
    let mut by_key: BTreeMap<&str, Vec<&Actual>> = BTreeMap::new();
    for a in actual {
        by_key.entry(a.key.as_str()).or_default().push(a);
    }
    let mut changes = Vec::new();
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.key.as_str()).collect();
    for d in desired {
        let found = by_key.get(d.key.as_str()).and_then(|v| v.first().copied());
        let Some(a) = found else {
            changes.push(Change {
                action: Action::Create,
                kind: d.kind,
                key: d.key.clone(),
                name: d.name.clone(),
                id: None,
                fields: d
                    .fields
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| FieldChange {
                        field: k.clone(),
                        old: None,
                        new: Some(v.clone()),
                        forces_replacement: false,
                    })
                    .collect(),
                desired: Some(d.clone()),
                actual: None,
            });
            continue;
        };
        let mut fields = Vec::new();
        for (k, want) in &d.fields {
            if !same(k, want, a.fields.get(k)) {
                fields.push(FieldChange {
                    field: k.clone(),
                    old: a.fields.get(k).cloned(),
                    new: Some(want.clone()),
                    forces_replacement: d.kind.forces_replacement(k),
                });
            }
        }
        if !fields.is_empty() {
            let replace = fields.iter().any(|f| f.forces_replacement);
            changes.push(Change {
                action: if replace {
                    Action::Replace
                } else {
                    Action::Update
                },
                kind: d.kind,
                key: d.key.clone(),
                name: d.name.clone(),
                id: Some(a.id.clone()),
                fields,
                desired: Some(d.clone()),
                actual: Some(a.clone()),
            });
        }
    }
    // Existing platform resources nobody wants, and duplicates of wanted ones.
    for (key, list) in &by_key {
        let skip = usize::from(wanted.contains(key));
        for a in list.iter().skip(skip) {
            changes.push(Change {
                action: Action::Delete,
                kind: a.kind,
                key: a.key.clone(),
                name: a.name.clone(),
                id: Some(a.id.clone()),
                fields: Vec::new(),
                desired: None,
                actual: Some((*a).clone()),
            });
        }
    }
    changes.sort_by(|a, b| (a.kind, &a.key, a.action).cmp(&(b.kind, &b.key, b.action)));
    Plan {
        stage: stage.to_string(),
        platform: platform.to_string(),
        zone: zone.to_string(),
        changes,
    }
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Replace => s.replace += 1,
                Action::Delete => s.delete += 1,
            }
        }
        s
    }

    /// Terraform-style text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.changes.is_empty() {
            out.push_str(&format!(
                "No changes: stage {} of platform {} in {} matches the configuration.\n",
                self.stage, self.platform, self.zone
            ));
            return out;
        }
        out.push_str(&format!(
            "forge will make these changes (stage {}, platform {}, zone {}):\n\n",
            self.stage, self.platform, self.zone
        ));
        for c in &self.changes {
            let id =
                c.id.as_deref()
                    .map(|i| format!(" id={i}"))
                    .unwrap_or_default();
            let note = if c.action == Action::Replace {
                "  # forces replacement"
            } else {
                ""
            };
            out.push_str(&format!(
                "  {} {} {} ({}){id}{note}\n",
                c.action.symbol(),
                c.kind,
                c.name,
                c.key
            ));
            for f in &c.fields {
                let show = |v: &Option<Value>| match v {
                    None | Some(Value::Null) => "(none)".to_string(),
                    Some(v) => render_value(&f.field, v),
                };
                let forces = if f.forces_replacement {
                    " (forces replacement)"
                } else {
                    ""
                };
                match c.action {
                    Action::Create => {
                        out.push_str(&format!("      + {} = {}\n", f.field, show(&f.new)))
                    }
                    _ => out.push_str(&format!(
                        "      ~ {}: {} -> {}{forces}\n",
                        f.field,
                        show(&f.old),
                        show(&f.new)
                    )),
                }
                if c.action == Action::Update
                    && c.kind == Kind::InstancePool
                    && matches!(
                        f.field.as_str(),
                        "template" | "instance-type" | "disk-size" | "user-data"
                    )
                {
                    out.push_str("        (applies to members created from now on; existing members keep theirs)\n");
                }
            }
        }
        let s = self.summary();
        out.push_str(&format!(
            "\nPlan: {} to add, {} to change, {} to replace, {} to destroy.\n",
            s.create, s.update, s.replace, s.delete
        ));
        out
    }
}

fn render_value(field: &str, v: &Value) -> String {
    if field == "user-data"
        && let Some(s) = v.as_str()
    {
        use md5::Digest as _;
        let known = if s.contains("${") {
            format!(", {KNOWN_AFTER_APPLY}")
        } else {
            String::new()
        };
        return format!(
            "<{} lines, md5 {}{known}>",
            s.lines().count(),
            hex_short(&md5::Md5::digest(s.as_bytes()))
        );
    }
    match v.as_str() {
        Some(s) if s.starts_with("${publish.") => "(unknown: run `forge publish`)".to_string(),
        Some(s) if s.starts_with("${") => KNOWN_AFTER_APPLY.to_string(),
        _ => v.to_string(),
    }
}

fn hex_short(b: &[u8]) -> String {
    b.iter().take(6).map(|x| format!("{x:02x}")).collect()
}
