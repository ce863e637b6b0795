//! Binary package indexes (`Packages`): what a suite offers, keyed by package name.

use std::collections::BTreeMap;

use forge_schema::Sha256Digest;

use crate::control::{self, Paragraph, Relation, parse_relations};
use crate::version::Version;

/// Priority of a package, for choosing between providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Required,
    Important,
    Standard,
    Optional,
    Extra,
}

impl Priority {
    fn parse(s: &str) -> Self {
        match s {
            "required" => Priority::Required,
            "important" => Priority::Important,
            "standard" => Priority::Standard,
            "optional" => Priority::Optional,
            _ => Priority::Extra,
        }
    }
}

/// One binary package of an index.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: Version,
    pub architecture: String,
    pub essential: bool,
    pub priority: Priority,
    pub pre_depends: Vec<Vec<Relation>>,
    pub depends: Vec<Vec<Relation>>,
    pub conflicts: Vec<Vec<Relation>>,
    pub breaks: Vec<Vec<Relation>>,
    pub provides: Vec<Relation>,
    /// Pool path relative to the archive root.
    pub filename: String,
    pub size: u64,
    pub sha256: Sha256Digest,
    /// Which suite it came from.
    pub suite: String,
}

impl Package {
    pub fn from_paragraph(p: &Paragraph, suite: &str) -> Result<Self, String> {
        let field = |f: &str| p.get(f).ok_or_else(|| format!("missing field {f}"));
        let name = field("Package")?.to_string();
        let ctx = |e: String| format!("package {name}: {e}");
        let rel = |f: &str| parse_relations(p.get(f).unwrap_or("")).map_err(|e| ctx(e.clone()));
        let provides = rel("Provides")?.into_iter().flatten().collect();
        Ok(Self {
            version: Version::parse(field("Version")?).map_err(ctx)?,
            architecture: field("Architecture")?.to_string(),
            essential: p.get("Essential") == Some("yes"),
            priority: Priority::parse(p.get("Priority").unwrap_or("optional")),
            pre_depends: rel("Pre-Depends")?,
            depends: rel("Depends")?,
            conflicts: rel("Conflicts")?,
            breaks: rel("Breaks")?,
            provides,
            filename: field("Filename")?.to_string(),
            size: field("Size")?.parse().map_err(|_| ctx("bad Size".into()))?,
            sha256: field("SHA256")?
                .parse()
                .map_err(|e: forge_schema::digest::DigestParseError| ctx(e.to_string()))?,
            suite: suite.to_string(),
            name,
        })
    }
}

/// Everything the indexes of the locked suites offer for one architecture (plus `all`).
/// When several suites have a package (e.g. `bookworm` and `bookworm-updates`), the highest
/// version wins, as with apt's default pins.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub packages: BTreeMap<String, Package>,
    /// Virtual package name → names of the real packages that provide it.
    pub providers: BTreeMap<String, Vec<String>>,
}

impl Index {
    /// Adds the packages of one `Packages` file.
    pub fn add(&mut self, text: &str, suite: &str, arch: &str) -> Result<(), String> {
        for p in control::parse(text)? {
            let pkg = Package::from_paragraph(&p, suite)?;
            if pkg.architecture != arch && pkg.architecture != "all" {
                continue;
            }
            match self.packages.get(&pkg.name) {
                Some(existing) if existing.version >= pkg.version => {}
                _ => {
                    self.packages.insert(pkg.name.clone(), pkg);
                }
            }
        }
        self.rebuild_providers();
        Ok(())
    }

    fn rebuild_providers(&mut self) {
        self.providers.clear();
        for p in self.packages.values() {
            for prov in &p.provides {
                self.providers
                    .entry(prov.name.clone())
                    .or_default()
                    .push(p.name.clone());
            }
        }
    }
}
