//! Diffing what forge wants with what exists, and showing it like Terraform does.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

pub use crate::diff::FieldChange;
use crate::resource::{Actual, Desired, InstancePool, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
}

impl Action {
    /// What forge is doing, for messages (`creating`).
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create | Action::Replace => "creating",
            Action::Update => "updating",
            Action::Delete => "deleting",
        }
    }

    /// What forge did, for progress lines (`created`).
    pub fn done(self) -> &'static str {
        match self {
            Action::Create | Action::Replace => "created",
            Action::Update => "updated",
            Action::Delete => "deleted",
        }
    }

    /// The key of this action in an apply report's counts.
    pub fn key(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }
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
                kind: d.spec.kind(),
                key: d.key.clone(),
                name: d.spec.name().to_string(),
                id: None,
                fields: d.spec.diff(None),
                desired: Some(d.clone()),
                actual: None,
            });
            continue;
        };
        let fields = d.spec.diff(Some(&a.spec));
        if !fields.is_empty() {
            let replace = fields.iter().any(|f| f.forces_replacement);
            changes.push(Change {
                action: if replace {
                    Action::Replace
                } else {
                    Action::Update
                },
                kind: d.spec.kind(),
                key: d.key.clone(),
                name: d.spec.name().to_string(),
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
                kind: a.spec.kind(),
                key: a.key.clone(),
                name: a.spec.name().to_string(),
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
                    && InstancePool::MEMBER_FIELDS.contains(&f.field.as_str())
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
