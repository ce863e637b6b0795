//! Field-by-field comparison of two typed resources, into the changes a plan shows.

use serde::Serialize;
use serde_json::Value;

/// One field's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// The field as the plan shows it (`size`, `healthcheck.port`).
    pub field: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub forces_replacement: bool,
}

/// Collects the changes between a wanted resource and an existing one (`have` is `None`
/// for a creation: every field is listed).
#[derive(Debug)]
pub struct Diff<'a, T> {
    pub want: &'a T,
    pub have: Option<&'a T>,
    pub changes: Vec<FieldChange>,
}

fn json<V: Serialize + ?Sized>(v: &V) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl<'a, T> Diff<'a, T> {
    pub fn new(want: &'a T, have: Option<&'a T>) -> Self {
        Self {
            want,
            have,
            changes: Vec::new(),
        }
    }

    /// A field that can change in place.
    pub fn field<V: PartialEq + Serialize + ?Sized>(&mut self, name: &str, get: impl Fn(&T) -> &V) {
        self.compare(name, get, false);
    }

    /// A field whose change replaces the resource.
    pub fn replacing<V: PartialEq + Serialize + ?Sized>(
        &mut self,
        name: &str,
        get: impl Fn(&T) -> &V,
    ) {
        self.compare(name, get, true);
    }

    fn compare<V: PartialEq + Serialize + ?Sized>(
        &mut self,
        name: &str,
        get: impl Fn(&T) -> &V,
        replace: bool,
    ) {
        let want = get(self.want);
        match self.have.map(&get) {
            Some(have) if have == want => {}
            Some(have) => self.changes.push(FieldChange {
                field: name.to_string(),
                old: Some(json(have)),
                new: Some(json(want)),
                forces_replacement: replace,
            }),
            None => {
                let new = json(want);
                if !new.is_null() {
                    self.changes.push(FieldChange {
                        field: name.to_string(),
                        old: None,
                        new: Some(new),
                        forces_replacement: false,
                    });
                }
            }
        }
    }

    /// A nested object compared key by key (`healthcheck.port`); `replacing` names the
    /// keys whose change replaces the resource.
    pub fn nested<V: Serialize>(
        &mut self,
        name: &str,
        get: impl Fn(&T) -> &Option<V>,
        replacing: &[&str],
    ) {
        let flat = |v: Option<&Option<V>>| -> Vec<(String, Value)> {
            match v.map(|o| o.as_ref().map(json)) {
                Some(Some(Value::Object(m))) => m.into_iter().collect(),
                _ => Vec::new(),
            }
        };
        let want = flat(Some(get(self.want)));
        let have = self.have.map(|h| flat(Some(get(h))));
        let mut keys: Vec<&String> = want.iter().map(|(k, _)| k).collect();
        if let Some(h) = &have {
            keys.extend(h.iter().map(|(k, _)| k));
        }
        keys.sort();
        keys.dedup();
        let find = |list: &[(String, Value)], k: &str| {
            list.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone())
        };
        let mut out = Vec::new();
        for k in keys {
            let w = find(&want, k);
            match &have {
                None => {
                    if let Some(w) = w {
                        out.push(FieldChange {
                            field: format!("{name}.{k}"),
                            old: None,
                            new: Some(w),
                            forces_replacement: false,
                        });
                    }
                }
                Some(h) => {
                    let old = find(h, k);
                    if old != w {
                        out.push(FieldChange {
                            field: format!("{name}.{k}"),
                            old,
                            new: w,
                            forces_replacement: replacing.contains(&k.as_str()),
                        });
                    }
                }
            }
        }
        self.changes.extend(out);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[derive(Serialize)]
    struct Inner {
        mode: String,
        port: u16,
    }

    struct Thing {
        size: i64,
        zone: String,
        inner: Option<Inner>,
    }

    fn diff(want: &Thing, have: Option<&Thing>) -> Vec<FieldChange> {
        let mut d = Diff::new(want, have);
        d.field("size", |t| &t.size);
        d.replacing("zone", |t| &t.zone);
        d.nested("inner", |t| &t.inner, &["mode"]);
        d.changes
    }

    fn thing(size: i64, zone: &str, mode: &str, port: u16) -> Thing {
        Thing {
            size,
            zone: zone.into(),
            inner: Some(Inner {
                mode: mode.into(),
                port,
            }),
        }
    }

    #[test]
    fn equal_resources_have_no_changes() {
        let a = thing(1, "z", "https", 1);
        assert!(diff(&a, Some(&thing(1, "z", "https", 1))).is_empty());
    }

    #[test]
    fn a_creation_lists_every_field_flattened() {
        let a = thing(1, "z", "tcp", 8);
        let c = diff(&a, None);
        let names: Vec<&str> = c.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(names, ["size", "zone", "inner.mode", "inner.port"]);
        assert!(c.iter().all(|c| c.old.is_none() && !c.forces_replacement));
    }

    #[test]
    fn changes_name_the_field_and_what_forces_replacement() {
        let want = thing(3, "z2", "tcp", 9);
        let have = thing(1, "z", "https", 9);
        let c = diff(&want, Some(&have));
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(
            (
                c[0].field.as_str(),
                c[0].old.clone(),
                c[0].new.clone(),
                c[0].forces_replacement
            ),
            ("size", Some(json!(1)), Some(json!(3)), false)
        );
        assert!(c[1].forces_replacement, "zone");
        assert_eq!(c[2].field, "inner.mode");
        assert!(c[2].forces_replacement);
        // A nested object that went away shows each of its fields leaving.
        let bare = Thing {
            size: 3,
            zone: "z2".into(),
            inner: None,
        };
        let c = diff(&bare, Some(&want));
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.new.is_none()));
    }
}
