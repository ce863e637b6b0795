//! What would change from one lockfile to another, in words a user can act on (`--locked`
//! and `forge lock` show these).

use super::*;
use std::collections::BTreeMap;
use std::fmt;

use crate::digest::Sha256Digest;

/// One difference between two lockfiles, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    SourceDateEpoch {
        old: u64,
        new: u64,
    },
    Builder {
        old: String,
        new: String,
    },
    Added {
        recipe: String,
    },
    Removed {
        recipe: String,
    },
    Source {
        recipe: String,
        source: String,
        /// The pins, as [`LockedSource::pin`] writes them.
        old: Option<String>,
        new: Option<String>,
    },
    RecipeHash {
        recipe: String,
        old: Sha256Digest,
        new: Sha256Digest,
    },
    Layer {
        recipe: String,
        old: Option<Sha256Digest>,
        new: Option<Sha256Digest>,
    },
    Other {
        recipe: String,
        what: &'static str,
    },
    Tool {
        tool: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// Something about an image, described in words.
    Image {
        image: String,
        what: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |d: &Option<Sha256Digest>| d.map_or_else(|| "(none)".to_string(), |d| d.to_hex());
        match self {
            Change::SourceDateEpoch { old, new } => {
                write!(f, "source-date-epoch would change from {old} to {new}")
            }
            Change::Builder { old, new } => {
                write!(f, "builder would change from `{old}` to `{new}`")
            }
            Change::Added { recipe } => write!(f, "recipe `{recipe}` is not in the lockfile"),
            Change::Removed { recipe } => {
                write!(f, "recipe `{recipe}` is locked but no longer exists")
            }
            Change::Source {
                recipe,
                source,
                old,
                new,
            } => write!(
                f,
                "source `{source}` of recipe `{recipe}` changed: locked {}, now {}",
                old.as_deref().unwrap_or("(none)"),
                new.as_deref().unwrap_or("(none)")
            ),
            Change::RecipeHash { recipe, old, new } => {
                write!(
                    f,
                    "recipe `{recipe}` changed (its definition, parameters or inputs): locked hash {old}, now {new}"
                )
            }
            Change::Layer {
                recipe,
                old: None,
                new: Some(new),
            } => write!(
                f,
                "layer of recipe `{recipe}` (sha256 {new}) is not recorded yet; run `forge build` without --locked to record it"
            ),
            Change::Layer { recipe, old, new } => write!(
                f,
                "layer of recipe `{recipe}` differs: locked sha256 {}, built sha256 {}",
                opt(old),
                opt(new)
            ),
            Change::Other { recipe, what } => write!(f, "{what} of recipe `{recipe}` changed"),
            Change::Tool { tool, old, new } => write!(
                f,
                "tool `{tool}` is version {}, the lockfile says {}",
                new.as_deref().unwrap_or("(not used)"),
                old.as_deref().unwrap_or("(not recorded)")
            ),
            Change::Image { image, what } => write!(f, "image `{image}`: {what}"),
        }
    }
}

/// What would change if `new` replaced `old`, limited to `scope` recipes when given
/// (recipes outside it are neither added nor removed).
pub fn changes(old: &Lockfile, new: &Lockfile, scope: Option<&[String]>) -> Vec<Change> {
    let in_scope = |name: &str| scope.is_none_or(|s| s.iter().any(|n| n == name));
    let mut out = Vec::new();
    if old.source_date_epoch != new.source_date_epoch {
        out.push(Change::SourceDateEpoch {
            old: old.source_date_epoch,
            new: new.source_date_epoch,
        });
    }
    if old.builder != new.builder {
        out.push(Change::Builder {
            old: old.builder.clone(),
            new: new.builder.clone(),
        });
    }
    for (name, n) in &new.recipes {
        if !in_scope(name) {
            continue;
        }
        let Some(o) = old.recipes.get(name) else {
            out.push(Change::Added {
                recipe: name.clone(),
            });
            continue;
        };
        let olds: BTreeMap<&str, &LockedSource> =
            o.sources.iter().map(|s| (s.name.as_str(), s)).collect();
        let news: BTreeMap<&str, &LockedSource> =
            n.sources.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut source_changed = false;
        for key in olds
            .keys()
            .chain(news.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let (os, ns) = (olds.get(key), news.get(key));
            if os.map(|s| s.pin()) != ns.map(|s| s.pin()) {
                source_changed = true;
                out.push(Change::Source {
                    recipe: name.clone(),
                    source: (*key).to_string(),
                    old: os.map(|s| s.pin()),
                    new: ns.map(|s| s.pin()),
                });
            } else if os.map(|s| (&s.urls, &s.path, &s.image))
                != ns.map(|s| (&s.urls, &s.path, &s.image))
            {
                out.push(Change::Other {
                    recipe: name.clone(),
                    what: "the URLs or path of a source",
                });
            }
        }
        if o.hash != n.hash && !source_changed {
            out.push(Change::RecipeHash {
                recipe: name.clone(),
                old: o.hash,
                new: n.hash,
            });
        }
        if o.layer_sha256 != n.layer_sha256 && o.hash == n.hash {
            out.push(Change::Layer {
                recipe: name.clone(),
                old: o.layer_sha256,
                new: n.layer_sha256,
            });
        }
        if o.version != n.version {
            out.push(Change::Other {
                recipe: name.clone(),
                what: "the version",
            });
        }
    }
    for name in old.recipes.keys() {
        if in_scope(name) && !new.recipes.contains_key(name) {
            out.push(Change::Removed {
                recipe: name.clone(),
            });
        }
    }
    for tool in old
        .tools
        .keys()
        .chain(new.tools.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (o, n) = (old.tools.get(tool), new.tools.get(tool));
        if o != n {
            out.push(Change::Tool {
                tool: tool.clone(),
                old: o.cloned(),
                new: n.cloned(),
            });
        }
    }
    image_changes(old, new, &mut out);
    out
}

fn image_changes(old: &Lockfile, new: &Lockfile, out: &mut Vec<Change>) {
    let names: std::collections::BTreeSet<&String> =
        old.images.keys().chain(new.images.keys()).collect();
    for name in names {
        let change = |what: String| Change::Image {
            image: name.clone(),
            what,
        };
        let (o, n) = match (old.images.get(name), new.images.get(name)) {
            (None, Some(_)) => {
                out.push(change("not in the lockfile".into()));
                continue;
            }
            (Some(_), None) => {
                out.push(change("locked but no longer defined".into()));
                continue;
            }
            (Some(o), Some(n)) => (o, n),
            (None, None) => continue,
        };
        let od: std::collections::BTreeSet<&String> = o.debs.iter().collect();
        let nd: std::collections::BTreeSet<&String> = n.debs.iter().collect();
        let added: Vec<&&String> = nd.difference(&od).collect();
        let removed: Vec<&&String> = od.difference(&nd).collect();
        if !added.is_empty() || !removed.is_empty() {
            let show = |v: &[&&String]| {
                let mut s = v
                    .iter()
                    .take(5)
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                if v.len() > 5 {
                    s.push_str(&format!(" and {} more", v.len() - 5));
                }
                s
            };
            out.push(change(format!(
                "the package set changed: {} added ({}), {} removed ({})",
                added.len(),
                show(&added),
                removed.len(),
                show(&removed)
            )));
        } else if o.base_hash != n.base_hash {
            out.push(change("its `[base]` section changed".into()));
        }
        for d in &n.debs {
            if let (Some(a), Some(b)) = (old.debs.get(d), new.debs.get(d))
                && a.sha256 != b.sha256
            {
                out.push(change(format!(
                    ".deb `{d}` has sha256 {} in the archive, the lockfile says {}",
                    b.sha256, a.sha256
                )));
            }
        }
        if o.layers != n.layers {
            out.push(change(format!(
                "layers changed from [{}] to [{}]",
                o.layers.join(", "),
                n.layers.join(", ")
            )));
        }
        if o.hash != n.hash
            && out
                .last()
                .is_none_or(|c| !matches!(c, Change::Image { image, .. } if image == name))
        {
            out.push(change(format!(
                "its inputs changed: locked hash {}, now {}",
                o.hash, n.hash
            )));
        }
        if o.hash == n.hash
            && o.output_sha256.is_none()
            && let Some(built) = n.output_sha256
        {
            out.push(change(format!(
                "output (sha256 {built}) is not recorded yet; run `forge build` without --locked to record it"
            )));
        } else if o.hash == n.hash && o.output_sha256 != n.output_sha256 {
            out.push(change(format!(
                "output differs: locked sha256 {}, built sha256 {}",
                o.output_sha256
                    .map_or_else(|| "(none)".into(), |d| d.to_hex()),
                n.output_sha256
                    .map_or_else(|| "(none)".into(), |d| d.to_hex())
            )));
        }
    }
}
