//! Package-set resolution: the named packages and everything they need, from one index.
//!
//! The closure covers `Essential: yes` packages, `Priority: required` packages (for the
//! `minbase` variant), `Pre-Depends` and `Depends` with their alternatives, virtual
//! packages through `Provides` (versioned provides for versioned dependencies), and
//! version constraints. `Recommends` and `Suggests` are not followed (as
//! `--no-install-recommends`). Choices are deterministic: the first alternative that can be
//! satisfied wins, and among providers of a virtual package the most important priority,
//! then the name, as apt's resolver does for a fresh install in the common case. Conflicts
//! and Breaks between chosen packages are errors, not silently resolved: a locked set is
//! either right or refused.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::control::Relation;
use crate::index::{Index, Package, Priority};

/// Which packages a base starts from, besides the named ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `Essential: yes` packages only.
    Essential,
    /// Essential plus `Priority: required` (debootstrap's and mmdebstrap's `minbase`).
    Minbase,
}

/// Why a package can't be part of the set.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("package `{name}` is not in the archive{}", hint.as_ref().map(|h| format!(" (did you mean `{h}`?)")).unwrap_or_default())]
    Unknown { name: String, hint: Option<String> },
    #[error(
        "`{package}` {version} needs `{relation}`, which no package in the archive satisfies\n  (`{package}` is in the set because {why})"
    )]
    Unsatisfiable {
        package: String,
        version: String,
        relation: String,
        why: String,
    },
    #[error(
        "`{a}` and `{b}` cannot be installed together: `{a}` {kind} `{relation}`\n  (`{a}`: {why_a}; `{b}`: {why_b})"
    )]
    Conflict {
        a: String,
        b: String,
        kind: &'static str,
        relation: String,
        why_a: String,
        why_b: String,
    },
}

/// A resolved package set.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The packages, sorted by name.
    pub packages: Vec<Package>,
    /// Why each package is in the set.
    pub reasons: BTreeMap<String, String>,
}

fn satisfies(pkg: &Package, rel: &Relation) -> bool {
    if pkg.name == rel.name {
        return rel
            .constraint
            .as_ref()
            .is_none_or(|(op, v)| op.allows(&pkg.version, v));
    }
    pkg.provides.iter().any(|p| {
        p.name == rel.name
            && match (&rel.constraint, &p.constraint) {
                (None, _) => true,
                // A versioned dependency needs a versioned provide (Debian policy 7.5).
                (Some(_), None) => false,
                (Some((op, want)), Some((_, have))) => op.allows(have, want),
            }
    })
}

fn group_text(group: &[Relation]) -> String {
    group
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

struct State<'a> {
    index: &'a Index,
    selected: BTreeMap<String, &'a Package>,
    reasons: BTreeMap<String, String>,
    queue: VecDeque<String>,
}

impl<'a> State<'a> {
    fn select(&mut self, pkg: &'a Package, reason: String) {
        if self.selected.contains_key(&pkg.name) {
            return;
        }
        self.selected.insert(pkg.name.clone(), pkg);
        self.reasons.insert(pkg.name.clone(), reason);
        self.queue.push_back(pkg.name.clone());
    }

    fn satisfied(&self, group: &[Relation]) -> bool {
        group.iter().any(|rel| {
            self.selected
                .get(&rel.name)
                .is_some_and(|p| satisfies(p, rel))
                || self
                    .index
                    .providers
                    .get(&rel.name)
                    .into_iter()
                    .flatten()
                    .filter_map(|n| self.selected.get(n))
                    .any(|p| satisfies(p, rel))
        })
    }

    /// The package that should satisfy `rel`, if any.
    fn candidate(&self, rel: &Relation) -> Option<&'a Package> {
        if let Some(p) = self.index.packages.get(&rel.name)
            && satisfies(p, rel)
        {
            return Some(p);
        }
        let mut providers: Vec<&'a Package> = self
            .index
            .providers
            .get(&rel.name)
            .into_iter()
            .flatten()
            .filter_map(|n| self.index.packages.get(n))
            .filter(|p| satisfies(p, rel))
            .collect();
        providers.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        providers.first().copied()
    }
}

/// Resolves `requested` (package names, in order) plus the variant's base packages.
pub fn resolve(
    index: &Index,
    variant: Variant,
    requested: &[String],
) -> Result<Resolution, Box<ResolveError>> {
    let mut st = State {
        index,
        selected: BTreeMap::new(),
        reasons: BTreeMap::new(),
        queue: VecDeque::new(),
    };
    for p in index.packages.values() {
        if p.essential {
            st.select(p, "it is Essential".into());
        }
    }
    if variant == Variant::Minbase {
        for p in index.packages.values() {
            if p.priority == Priority::Required {
                st.select(p, "it has Priority: required".into());
            }
        }
    }
    for name in requested {
        let rel = Relation {
            name: name.clone(),
            constraint: None,
        };
        match st.candidate(&rel) {
            Some(p) => st.select(p, "the image asks for it".into()),
            None => {
                let hint = forge_schema::diag::did_you_mean(
                    name,
                    index.packages.keys().map(String::as_str),
                )
                .map(str::to_string);
                return Err(Box::new(ResolveError::Unknown {
                    name: name.clone(),
                    hint,
                }));
            }
        }
    }
    while let Some(name) = st.queue.pop_front() {
        let pkg = st.selected[&name];
        for group in pkg.pre_depends.iter().chain(&pkg.depends) {
            if st.satisfied(group) {
                continue;
            }
            match group.iter().find_map(|rel| st.candidate(rel)) {
                Some(choice) => {
                    let reason = format!("`{}` depends on `{}`", pkg.name, group_text(group));
                    st.select(choice, reason);
                }
                None => {
                    return Err(Box::new(ResolveError::Unsatisfiable {
                        package: pkg.name.clone(),
                        version: pkg.version.to_string(),
                        relation: group_text(group),
                        why: st.reasons[&pkg.name].clone(),
                    }));
                }
            }
        }
    }
    // Conflicts and Breaks among the chosen packages.
    let names: BTreeSet<&String> = st.selected.keys().collect();
    for a in st.selected.values() {
        for (kind, groups) in [("conflicts with", &a.conflicts), ("breaks", &a.breaks)] {
            for rel in groups.iter().flatten() {
                for b_name in &names {
                    let b = st.selected[*b_name];
                    if b.name == a.name {
                        continue;
                    }
                    if satisfies(b, rel) {
                        return Err(Box::new(ResolveError::Conflict {
                            a: a.name.clone(),
                            b: b.name.clone(),
                            kind,
                            relation: rel.to_string(),
                            why_a: st.reasons[&a.name].clone(),
                            why_b: st.reasons[&b.name].clone(),
                        }));
                    }
                }
            }
        }
    }
    Ok(Resolution {
        packages: st.selected.values().map(|p| (*p).clone()).collect(),
        reasons: st.reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(name: &str, version: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nFilename: pool/main/{name}_{version}_amd64.deb\nSize: 1\nSHA256: {}\n{extra}\n",
            forge_schema::Sha256Digest::of(name.as_bytes())
        )
    }

    fn index(stanzas: &[String]) -> Index {
        let mut i = Index::default();
        i.add(&stanzas.join("\n"), "test", "amd64").unwrap();
        i
    }

    fn names(r: &Resolution) -> Vec<&str> {
        r.packages.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn closure_with_alternatives_and_provides() {
        let i = index(&[
            stanza("base", "1", "Essential: yes\nPre-Depends: libc (>= 2)"),
            stanza("libc", "2.36", "Priority: required"),
            stanza("app", "1.0", "Depends: mta | exim, awk"),
            stanza("postfix", "3", "Provides: mta\nPriority: optional"),
            stanza("exim", "4", "Provides: mta\nPriority: standard"),
            stanza("mawk", "1.3", "Provides: awk\nPriority: required"),
            stanza("unrelated", "1", ""),
        ]);
        let r = resolve(&i, Variant::Minbase, &["app".into()]).unwrap();
        // `mta` is virtual: the standard-priority provider wins; `awk` is provided by mawk,
        // already there because it is required.
        assert_eq!(names(&r), ["app", "base", "exim", "libc", "mawk"]);
        assert_eq!(r.reasons["exim"], "`app` depends on `mta | exim`");
        let r = resolve(&i, Variant::Essential, &["app".into()]).unwrap();
        assert_eq!(names(&r), ["app", "base", "exim", "libc", "mawk"]);
    }

    #[test]
    fn version_constraints_and_errors() {
        let i = index(&[
            stanza("a", "1", "Depends: b (>= 2)"),
            stanza("b", "1.5", ""),
            stanza("c", "1", "Depends: v (>= 1)"),
            stanza("p", "1", "Provides: v"),
            stanza("d", "1", "Conflicts: e"),
            stanza("e", "1", ""),
        ]);
        let e = resolve(&i, Variant::Essential, &["a".into()]).unwrap_err();
        assert!(
            matches!(*e, ResolveError::Unsatisfiable { ref relation, .. } if relation == "b (>= 2)"),
            "{e}"
        );
        assert!(
            e.to_string().contains("because the image asks for it"),
            "{e}"
        );
        // An unversioned Provides does not satisfy a versioned dependency.
        assert!(resolve(&i, Variant::Essential, &["c".into()]).is_err());
        let e = resolve(&i, Variant::Essential, &["d".into(), "e".into()]).unwrap_err();
        assert!(matches!(*e, ResolveError::Conflict { .. }), "{e}");
        let e = resolve(&i, Variant::Essential, &["b2".into()]).unwrap_err();
        assert!(e.to_string().contains("not in the archive"), "{e}");
    }

    #[test]
    fn highest_version_across_suites() {
        let mut i = Index::default();
        i.add(&stanza("x", "1.0-1", ""), "bookworm", "amd64")
            .unwrap();
        i.add(
            &stanza("x", "1.0-1+deb12u1", ""),
            "bookworm-updates",
            "amd64",
        )
        .unwrap();
        assert_eq!(i.packages["x"].suite, "bookworm-updates");
    }
}
