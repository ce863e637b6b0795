//! Changes to the lockfile, by section, and the one place that decides what a change
//! keeps and what it drops.
//!
//! Each producer fills in its own section: the build stage the recipes, the image stage
//! the images (with their .debs and tool versions), publish the templates. [`LockChanges::apply`]
//! merges them into the lockfile as it is on disk at write time (another forge process may
//! have written it since it was read), and [`crate::Project::write_lockfile`] writes the
//! result atomically. A section left `None` is kept as it is.

use std::collections::{BTreeMap, BTreeSet};

use forge_schema::lockfile::{LockedDeb, LockedImage, LockedRecipe, LockedTemplate, Lockfile};

/// The settings every output depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub source_date_epoch: u64,
    pub builder: String,
}

/// The `[[recipe]]` section as the build stage resolved it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecipesSection {
    /// One entry per recipe the project defines; locked recipes without one leave. The
    /// layer fields are set for recipes built in this run.
    pub entries: BTreeMap<String, LockedRecipe>,
    /// `forge lock --update`: only these recipes change; the others keep their locked
    /// entries (a recipe not locked yet is added in any case).
    pub scope: Option<BTreeSet<String>>,
}

/// The `[[image]]`, `[[deb]]` and `[tools]` sections as the image stage resolved them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImagesSection {
    /// Every image the project defines; locked images not among them leave.
    pub defined: BTreeSet<String>,
    /// Entries resolved or built in this run; defined images without one keep theirs.
    pub entries: BTreeMap<String, LockedImage>,
    /// The .debs of those entries, by key.
    pub debs: BTreeMap<String, LockedDeb>,
    /// Versions of the tools that made the images; empty keeps the locked ones.
    pub tools: BTreeMap<String, String>,
}

/// A change to the `[[template]]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateChange {
    /// A template `forge publish` registered (or found) for an image in a zone.
    Record(LockedTemplate),
    /// Drop every template that was not registered from its image's locked output.
    PruneStale,
}

/// Everything one command changes in the lockfile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LockChanges {
    /// `None` keeps the lockfile's (a new lockfile needs one).
    pub header: Option<Header>,
    pub recipes: Option<RecipesSection>,
    pub images: Option<ImagesSection>,
    pub templates: Vec<TemplateChange>,
}

impl LockChanges {
    /// The lockfile `current` becomes; `None` when there is no lockfile and nothing to
    /// start one with (no header).
    pub fn apply(&self, current: Option<&Lockfile>) -> Option<Lockfile> {
        let mut lock = match (current, &self.header) {
            (Some(c), _) => c.clone(),
            (None, Some(h)) => Lockfile::new(h.source_date_epoch, &h.builder),
            (None, None) => return None,
        };
        if let Some(h) = &self.header {
            lock.source_date_epoch = h.source_date_epoch;
            lock.builder = h.builder.clone();
        }
        if let Some(r) = &self.recipes {
            r.apply(&mut lock, current);
        }
        if let Some(i) = &self.images {
            i.apply(&mut lock, current);
        }
        for t in &self.templates {
            t.apply(&mut lock);
        }
        Some(lock)
    }
}

impl RecipesSection {
    fn apply(&self, lock: &mut Lockfile, previous: Option<&Lockfile>) {
        let previous = previous.map(|p| &p.recipes);
        let mut recipes = BTreeMap::new();
        for (name, entry) in &self.entries {
            let prev = previous.and_then(|p| p.get(name));
            let in_scope = self.scope.as_ref().is_none_or(|s| s.contains(name));
            let kept = match prev {
                Some(prev) if !in_scope => prev.clone(),
                // An output is a function of the recipe hash: an unchanged recipe not
                // built in this run keeps its recorded layer.
                Some(prev) if entry.layer_sha256.is_none() && prev.hash == entry.hash => {
                    LockedRecipe {
                        layer_sha256: prev.layer_sha256,
                        layer_size: prev.layer_size,
                        content_sha256: prev.content_sha256,
                        ..entry.clone()
                    }
                }
                _ => entry.clone(),
            };
            recipes.insert(name.clone(), kept);
        }
        lock.recipes = recipes;
    }
}

impl ImagesSection {
    fn apply(&self, lock: &mut Lockfile, previous: Option<&Lockfile>) {
        lock.images.retain(|name, _| self.defined.contains(name));
        for (name, entry) in &self.entries {
            let mut entry = entry.clone();
            // As for recipes: an unchanged image not built now keeps its output.
            if entry.output_sha256.is_none()
                && let Some(prev) = previous.and_then(|p| p.images.get(name))
                && prev.hash == entry.hash
            {
                entry.output_sha256 = prev.output_sha256;
                entry.output_size = prev.output_size;
            }
            lock.images.insert(name.clone(), entry);
        }
        for (k, d) in &self.debs {
            lock.debs.insert(k.clone(), d.clone());
        }
        // A .deb stays while a locked image uses it.
        let used: BTreeSet<&String> = lock.images.values().flat_map(|i| i.debs.iter()).collect();
        lock.debs.retain(|k, _| used.contains(k));
        if !self.tools.is_empty() {
            lock.tools = self.tools.clone();
        }
    }
}

impl TemplateChange {
    fn apply(&self, lock: &mut Lockfile) {
        match self {
            TemplateChange::Record(t) => {
                lock.templates.insert(t.key(), t.clone());
            }
            TemplateChange::PruneStale => {
                let live: BTreeSet<String> = live_templates(lock).map(|t| t.key()).collect();
                lock.templates.retain(|k, _| live.contains(k));
            }
        }
    }
}

/// The templates registered from their image's locked output: the ones a deploy may use
/// and `forge publish --prune` keeps.
pub fn live_templates(lock: &Lockfile) -> impl Iterator<Item = &LockedTemplate> {
    lock.templates.values().filter(|t| {
        lock.images.get(&t.image).and_then(|i| i.output_sha256) == Some(t.output_sha256)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use forge_schema::Sha256Digest;

    fn recipe(name: &str, hash: &[u8], layer: Option<&[u8]>) -> LockedRecipe {
        LockedRecipe {
            name: name.into(),
            version: "1".into(),
            hash: Sha256Digest::of(hash),
            inputs: vec![],
            tools: vec![],
            sources: vec![],
            layer_sha256: layer.map(Sha256Digest::of),
            layer_size: layer.map(|l| l.len() as u64),
            content_sha256: layer.map(|l| Sha256Digest::of(&[l, b"c"].concat())),
        }
    }

    fn image(name: &str, hash: &[u8], debs: &[&str], output: Option<&[u8]>) -> LockedImage {
        LockedImage {
            name: name.into(),
            hash: Sha256Digest::of(hash),
            base_hash: Sha256Digest::of(b"base"),
            signed_by: None,
            suite: "bookworm".into(),
            architecture: "amd64".into(),
            layers: vec![],
            boot_modes: vec!["bios".into()],
            debs: debs.iter().map(|d| d.to_string()).collect(),
            format: "qcow2".into(),
            output_sha256: output.map(Sha256Digest::of),
            output_size: output.map(|o| o.len() as u64),
        }
    }

    fn deb(key: &str) -> LockedDeb {
        let (package, rest) = key.split_once('=').unwrap();
        let (version, architecture) = rest.split_once(':').unwrap();
        LockedDeb {
            package: package.into(),
            version: version.into(),
            architecture: architecture.into(),
            path: format!("pool/main/{package}.deb"),
            sha256: Sha256Digest::of(key.as_bytes()),
            size: 1,
        }
    }

    fn template(image: &str, zone: &str, output: &[u8]) -> LockedTemplate {
        LockedTemplate {
            image: image.into(),
            zone: zone.into(),
            id: format!("{image}-{zone}-id"),
            name: format!("p-{image}"),
            output_sha256: Sha256Digest::of(output),
            md5: "0".repeat(32),
            boot_mode: "legacy".into(),
        }
    }

    fn header() -> Header {
        Header {
            source_date_epoch: 1,
            builder: "b/1".into(),
        }
    }

    fn base() -> Lockfile {
        let mut l = Lockfile::new(1, "b/1");
        for r in [
            recipe("a", b"a1", Some(b"la")),
            recipe("b", b"b1", Some(b"lb")),
        ] {
            l.recipes.insert(r.name.clone(), r);
        }
        l.images.insert(
            "img".into(),
            image("img", b"i1", &["x=1:all"], Some(b"out1")),
        );
        l.debs.insert("x=1:all".into(), deb("x=1:all"));
        l.tools.insert("mke2fs".into(), "1.47".into());
        l
    }

    #[test]
    fn nothing_to_start_from_without_a_header() {
        assert_eq!(LockChanges::default().apply(None), None);
        let new = LockChanges {
            header: Some(header()),
            ..LockChanges::default()
        }
        .apply(None)
        .unwrap();
        assert_eq!(new, Lockfile::new(1, "b/1"));
    }

    #[test]
    fn the_header_changes_only_when_given() {
        let mut old = base();
        old.source_date_epoch = 7;
        let kept = LockChanges::default().apply(Some(&old)).unwrap();
        assert_eq!(kept, old);
        let changed = LockChanges {
            header: Some(header()),
            ..LockChanges::default()
        }
        .apply(Some(&old))
        .unwrap();
        assert_eq!(changed.source_date_epoch, 1);
    }

    #[test]
    fn recipes_keep_their_layer_while_their_hash_holds() {
        let old = base();
        let mut entries = BTreeMap::new();
        // `a` unchanged and not built now; `b` changed; `c` new and built.
        entries.insert("a".into(), recipe("a", b"a1", None));
        entries.insert("b".into(), recipe("b", b"b2", None));
        entries.insert("c".into(), recipe("c", b"c1", Some(b"lc")));
        let new = LockChanges {
            header: Some(header()),
            recipes: Some(RecipesSection {
                entries,
                scope: None,
            }),
            ..LockChanges::default()
        }
        .apply(Some(&old))
        .unwrap();
        assert_eq!(new.recipes["a"], old.recipes["a"]);
        assert_eq!(new.recipes["b"].hash, Sha256Digest::of(b"b2"));
        assert_eq!(
            new.recipes["b"].layer_sha256, None,
            "a changed recipe loses its layer"
        );
        assert_eq!(new.recipes["c"].layer_sha256, Some(Sha256Digest::of(b"lc")));
        // Sections the change does not name are untouched.
        assert_eq!(new.images, old.images);
        assert_eq!(new.debs, old.debs);
    }

    #[test]
    fn recipes_that_are_no_longer_defined_leave_even_with_a_scope() {
        let old = base();
        let mut entries = BTreeMap::new();
        entries.insert("b".into(), recipe("b", b"b2", None));
        entries.insert("c".into(), recipe("c", b"c1", None));
        let new = LockChanges {
            recipes: Some(RecipesSection {
                entries,
                scope: Some(BTreeSet::from(["c".to_string()])),
            }),
            ..LockChanges::default()
        }
        .apply(Some(&old))
        .unwrap();
        assert!(!new.recipes.contains_key("a"), "a is not defined any more");
        assert_eq!(new.recipes["b"], old.recipes["b"], "b is outside the scope");
        assert!(new.recipes.contains_key("c"), "c is new, so it is added");
    }

    #[test]
    fn images_keep_outputs_and_debs_follow_the_images() {
        let old = base();
        let mut entries = BTreeMap::new();
        entries.insert("img".into(), image("img", b"i1", &["x=1:all"], None));
        entries.insert("new".into(), image("new", b"n1", &["y=2:amd64"], None));
        let new = LockChanges {
            images: Some(ImagesSection {
                defined: BTreeSet::from(["img".to_string(), "new".to_string()]),
                entries,
                debs: BTreeMap::from([("y=2:amd64".to_string(), deb("y=2:amd64"))]),
                tools: BTreeMap::new(),
            }),
            ..LockChanges::default()
        }
        .apply(Some(&old))
        .unwrap();
        assert_eq!(
            new.images["img"].output_sha256,
            Some(Sha256Digest::of(b"out1"))
        );
        assert_eq!(new.images["new"].output_sha256, None);
        assert_eq!(
            new.debs.keys().collect::<Vec<_>>(),
            ["x=1:all", "y=2:amd64"]
        );
        assert_eq!(new.tools, old.tools, "no tools given keeps the locked ones");

        // The image goes away: its entry and the .debs only it used leave.
        let gone = LockChanges {
            images: Some(ImagesSection {
                defined: BTreeSet::from(["new".to_string()]),
                ..ImagesSection::default()
            }),
            ..LockChanges::default()
        }
        .apply(Some(&new))
        .unwrap();
        assert_eq!(gone.images.keys().collect::<Vec<_>>(), ["new"]);
        assert_eq!(gone.debs.keys().collect::<Vec<_>>(), ["y=2:amd64"]);
    }

    #[test]
    fn a_rebuilt_image_records_its_new_output() {
        let old = base();
        let entries = BTreeMap::from([(
            "img".to_string(),
            image("img", b"i2", &["x=1:all"], Some(b"out2")),
        )]);
        let new = LockChanges {
            images: Some(ImagesSection {
                defined: BTreeSet::from(["img".to_string()]),
                entries,
                debs: BTreeMap::new(),
                tools: BTreeMap::from([("mke2fs".to_string(), "1.48".to_string())]),
            }),
            ..LockChanges::default()
        }
        .apply(Some(&old))
        .unwrap();
        assert_eq!(
            new.images["img"].output_sha256,
            Some(Sha256Digest::of(b"out2"))
        );
        assert_eq!(new.tools["mke2fs"], "1.48");
    }

    #[test]
    fn templates_are_recorded_and_stale_ones_pruned() {
        let mut old = base();
        let stale = template("img", "de-fra-1", b"out0");
        old.templates.insert(stale.key(), stale);
        let live = template("img", "ch-gva-2", b"out1");
        let orphan = template("gone", "ch-gva-2", b"out1");
        let new = LockChanges {
            templates: vec![
                TemplateChange::Record(live.clone()),
                TemplateChange::Record(orphan),
            ],
            ..LockChanges::default()
        }
        .apply(Some(&old))
        .unwrap();
        assert_eq!(new.templates.len(), 3);
        assert_eq!(live_templates(&new).collect::<Vec<_>>(), [&live]);
        let pruned = LockChanges {
            templates: vec![TemplateChange::PruneStale],
            ..LockChanges::default()
        }
        .apply(Some(&new))
        .unwrap();
        assert_eq!(
            pruned.templates.keys().collect::<Vec<_>>(),
            ["img@ch-gva-2"]
        );
    }

    #[test]
    fn applying_twice_changes_nothing_more() {
        let old = base();
        let changes = LockChanges {
            header: Some(header()),
            recipes: Some(RecipesSection {
                entries: BTreeMap::from([("a".to_string(), recipe("a", b"a2", Some(b"la2")))]),
                scope: None,
            }),
            images: Some(ImagesSection {
                defined: BTreeSet::from(["img".to_string()]),
                ..ImagesSection::default()
            }),
            templates: vec![TemplateChange::PruneStale],
        };
        let once = changes.apply(Some(&old)).unwrap();
        let twice = changes.apply(Some(&once)).unwrap();
        assert_eq!(once, twice);
        assert_eq!(once.render(), twice.render());
    }
}
