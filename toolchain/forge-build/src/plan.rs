//! From a loaded project to a build plan: the recipe graph (with cycle detection), path
//! sources hashed, parameters resolved, and every recipe's hash computed in dependency
//! order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use forge_schema::Integrity;
use forge_schema::diag::did_you_mean;
use forge_schema::hash::{BUILDER_VERSION, HashInputs, recipe_hash};
use forge_schema::lockfile::{DEFAULT_SOURCE_DATE_EPOCH, LockedRecipe, LockedSource, Lockfile};
use forge_schema::recipe::{ParamValue, Recipe, Source, SourceKind};
use forge_schema::{Diagnostics, Sha256Digest};

use forge_project::{Header, LockState, Project, RecipesSection};

use crate::BuildError;

/// How a path source is stored: a file as is, a directory as a deterministic tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathContent {
    File,
    Directory,
}

/// A source with its content hash known.
#[derive(Debug, Clone)]
pub struct ResolvedSource {
    pub source: Source,
    /// The content's SHA-256 when known before fetching (path sources and URL sources
    /// pinned by SHA-256); SHA-512 and image sources are found through the store's
    /// source records once fetched.
    pub sha256: Option<Sha256Digest>,
    /// For path sources: where it is on disk and whether it is a directory.
    pub local: Option<(PathBuf, PathContent)>,
    /// For go.sum sources: its lines, as read when it was hashed.
    pub go_sum: Vec<forge_fetch::go::GoRequest>,
}

/// One recipe, ready to build.
#[derive(Debug, Clone)]
pub struct ResolvedRecipe {
    pub recipe: Recipe,
    pub hash: Sha256Digest,
    pub parameters: BTreeMap<String, ParamValue>,
    pub sources: Vec<ResolvedSource>,
}

impl ResolvedRecipe {
    pub fn source(&self, name: &str) -> Option<&ResolvedSource> {
        self.sources.iter().find(|s| s.source.name == name)
    }
}

/// Every recipe of the project, resolved, in dependency order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub root: PathBuf,
    pub source_date_epoch: u64,
    pub builder: String,
    pub recipes: BTreeMap<String, ResolvedRecipe>,
    /// Topological order: inputs before the recipes that use them.
    pub order: Vec<String>,
}

/// Checks that inputs exist and that the graph has no cycle; returns a topological order.
pub fn order(recipes: &BTreeMap<String, Recipe>) -> Result<Vec<String>, BuildError> {
    let mut errors = Vec::new();
    for r in recipes.values() {
        let deps = r
            .input_spans
            .iter()
            .map(|d| (d, "inputs"))
            .chain(r.tool_spans.iter().map(|d| (d, "tools")));
        for ((dep, span), list) in deps {
            if !recipes.contains_key(dep) {
                let mut e = r.file.error(
                    span.clone(),
                    format!("recipe `{}` needs `{dep}`, which does not exist", r.name),
                );
                if let Some(best) = did_you_mean(dep, recipes.keys().map(String::as_str)) {
                    e = e.with_help(format!("did you mean `{best}`?"));
                } else {
                    e = e.with_help(format!(
                        "add `recipes/{dep}.toml` or remove it from `{list}`"
                    ));
                }
                errors.push(e);
            }
        }
    }
    if !errors.is_empty() {
        return Err(BuildError::Diagnostics(Diagnostics::from(errors)));
    }

    // Depth-first search with colours; a grey node reached again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Grey,
        Black,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    let mut out = Vec::new();
    for start in recipes.keys() {
        if marks.contains_key(start.as_str()) {
            continue;
        }
        // Explicit stack of (node, next input index) so deep graphs cannot overflow.
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        marks.insert(start, Mark::Grey);
        while let Some((node, i)) = stack.pop() {
            let inputs: Vec<&String> = recipes[node].build_deps().collect();
            if i < inputs.len() {
                stack.push((node, i + 1));
                let next = inputs[i].as_str();
                match marks.get(next) {
                    None => {
                        marks.insert(next, Mark::Grey);
                        stack.push((next, 0));
                    }
                    Some(Mark::Grey) => {
                        let pos = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            stack[pos..].iter().map(|(n, _)| n.to_string()).collect();
                        cycle.push(next.to_string());
                        let first = &recipes[cycle[0].as_str()];
                        let span = first.dep_span(&cycle[1]).unwrap_or(0..0);
                        let e = first
                            .file
                            .error(span, format!("recipe cycle: {}", cycle.join(" -> ")))
                            .with_help("a recipe cannot depend on itself, directly or through its inputs and tools; remove one of these");
                        return Err(BuildError::Diagnostics(e.into()));
                    }
                    Some(Mark::Black) => {}
                }
            } else {
                marks.insert(node, Mark::Black);
                out.push(node.to_string());
            }
        }
    }
    Ok(out)
}

/// The layers of `targets`: the targets and all their inputs, in build order (what an
/// image that takes `targets` contains; tools are not part of it).
pub fn closure(plan: &Plan, targets: &[String]) -> Vec<String> {
    reach(plan, targets, |r| r.inputs.iter().collect())
}

/// Recipes needed to build `targets`: the targets, their inputs and their tools (with
/// everything those need), in build order.
pub fn build_closure(plan: &Plan, targets: &[String]) -> Vec<String> {
    reach(plan, targets, |r| r.build_deps().collect())
}

fn reach(plan: &Plan, targets: &[String], deps: impl Fn(&Recipe) -> Vec<&String>) -> Vec<String> {
    let mut need: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<&str> = targets.iter().map(String::as_str).collect();
    while let Some(t) = todo.pop() {
        if need.insert(t)
            && let Some(r) = plan.recipes.get(t)
        {
            todo.extend(deps(&r.recipe).into_iter().map(String::as_str));
        }
    }
    plan.order
        .iter()
        .filter(|n| need.contains(n.as_str()))
        .cloned()
        .collect()
}

/// Recipes that (transitively) use any of `names`, plus `names` themselves.
pub fn dependents(plan: &Plan, names: &[String]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = names.iter().cloned().collect();
    for n in &plan.order {
        if plan.recipes[n].recipe.build_deps().any(|i| out.contains(i)) {
            out.insert(n.clone());
        }
    }
    out
}

/// The lines of a go.sum source, from the same content that was hashed (`sha`); a line
/// that is not a go.sum line is an error at `file:line`.
fn read_go_sum(
    r: &Recipe,
    s: &Source,
    abs: &std::path::Path,
    sha: &Sha256Digest,
) -> Result<Vec<forge_fetch::go::GoRequest>, BuildError> {
    let bytes = std::fs::read(abs).map_err(|source| BuildError::Io {
        path: abs.to_path_buf(),
        source,
    })?;
    if Sha256Digest::of(&bytes) != *sha {
        return Err(BuildError::Changed {
            path: abs.to_path_buf(),
            name: s.name.clone(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        BuildError::Diagnostics(
            r.file
                .error(
                    s.span.clone(),
                    format!("`{}` is not UTF-8 text", abs.display()),
                )
                .into(),
        )
    })?;
    let mut lines =
        forge_fetch::go::parse_go_sum(&text).map_err(|(line, message)| BuildError::GoSum {
            path: format!("{}:{line}", abs.display()),
            message,
        })?;
    lines.sort();
    Ok(lines)
}

/// Hashes a path source.
fn hash_path_source(
    root: &std::path::Path,
    r: &Recipe,
    s: &Source,
    path: &str,
) -> Result<(Sha256Digest, PathBuf, PathContent), BuildError> {
    let abs = root.join(path);
    let meta = std::fs::metadata(&abs).map_err(|e| {
        BuildError::Diagnostics(
            r.file
                .error(
                    s.span.clone(),
                    format!("path source `{}`: cannot read `{path}`: {e}", s.name),
                )
                .with_help("paths of sources are relative to the project root")
                .into(),
        )
    })?;
    // The path must stay inside the project even through symlinks.
    let canon = std::fs::canonicalize(&abs).map_err(|source| BuildError::Io {
        path: abs.clone(),
        source,
    })?;
    let canon_root = std::fs::canonicalize(root).map_err(|source| BuildError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    if !canon.starts_with(&canon_root) {
        return Err(BuildError::Diagnostics(
            r.file
                .error(
                    s.span.clone(),
                    format!(
                        "path source `{}` leads outside the project (to `{}`)",
                        s.name,
                        canon.display()
                    ),
                )
                .into(),
        ));
    }
    if meta.is_dir() {
        let sha = forge_layer::directory_digest(&canon).map_err(|e| BuildError::Layer {
            recipe: r.name.clone(),
            source: e,
        })?;
        Ok((sha, canon, PathContent::Directory))
    } else {
        let (sha, _) = forge_store::fsutil::hash_file(&canon).map_err(|source| BuildError::Io {
            path: canon.clone(),
            source,
        })?;
        Ok((sha, canon, PathContent::File))
    }
}

impl ResolvedSource {
    /// Its lockfile entry: where it comes from and what pins it.
    pub fn locked(&self) -> LockedSource {
        locked_source(self)
    }
}

/// A source's lockfile entry: where it comes from and what pins it.
fn locked_source(s: &ResolvedSource) -> LockedSource {
    let mut l = LockedSource {
        name: s.source.name.clone(),
        sha256: s.sha256,
        modules: s.go_sum.iter().map(|l| l.sum_line()).collect(),
        ..LockedSource::default()
    };
    match &s.source.kind {
        SourceKind::Url { urls, integrity } => {
            l.urls = urls.clone();
            if let Integrity::Sha512(d) = integrity {
                l.sha512 = Some(*d);
            }
        }
        SourceKind::Path { path, .. } | SourceKind::GoSum { path } => {
            l.path = Some(path.as_str().to_string())
        }
        SourceKind::Oci(o) => {
            l.image = Some(o.image.to_string());
            l.digest = Some(format!("sha256:{}", o.digest));
            l.platform = Some(o.platform.to_string());
        }
        SourceKind::GoModule(g) => {
            l.go_module = Some(g.path.clone());
            l.version = Some(g.version.clone());
            l.h1 = Some(g.h1.clone());
        }
    }
    l
}

impl Plan {
    /// Resolves the whole project. `source_date_epoch` defaults to the lockfile's, else to
    /// [`DEFAULT_SOURCE_DATE_EPOCH`].
    pub fn resolve<S: LockState>(
        project: &Project<S>,
        source_date_epoch: Option<u64>,
    ) -> Result<Plan, BuildError> {
        let all = &project.definitions()?.recipes;
        let order = order(all)?;
        let sde = source_date_epoch
            .or_else(|| project.current_lockfile().map(|l| l.source_date_epoch))
            .unwrap_or(DEFAULT_SOURCE_DATE_EPOCH);
        let mut recipes: BTreeMap<String, ResolvedRecipe> = BTreeMap::new();
        let mut errors = Vec::new();
        for name in &order {
            let r = &all[name];
            let parameters = match r.resolve_parameters(&BTreeMap::new()) {
                Ok(p) => p,
                Err(msg) => {
                    errors.push(r.file.error(0..0, msg));
                    continue;
                }
            };
            let mut sources = Vec::new();
            let mut path_hashes = BTreeMap::new();
            for s in &r.sources {
                match &s.kind {
                    SourceKind::Url { integrity, .. } => sources.push(ResolvedSource {
                        source: s.clone(),
                        sha256: integrity.sha256(),
                        local: None,
                        go_sum: Vec::new(),
                    }),
                    SourceKind::Oci(_) | SourceKind::GoModule(_) => sources.push(ResolvedSource {
                        source: s.clone(),
                        sha256: None,
                        local: None,
                        go_sum: Vec::new(),
                    }),
                    SourceKind::GoSum { path } => {
                        match hash_path_source(project.root(), r, s, path.as_str()) {
                            Ok((sha, abs, PathContent::File)) => {
                                let go_sum = match read_go_sum(r, s, &abs, &sha) {
                                    Ok(lines) => lines,
                                    Err(BuildError::Diagnostics(d)) => {
                                        errors.extend(d.errors);
                                        continue;
                                    }
                                    Err(e) => return Err(e),
                                };
                                path_hashes.insert(s.name.clone(), sha);
                                sources.push(ResolvedSource {
                                    source: s.clone(),
                                    sha256: Some(sha),
                                    local: Some((abs, PathContent::File)),
                                    go_sum,
                                });
                            }
                            Ok((_, _, PathContent::Directory)) => errors.push(r.file.error(
                                s.span.clone(),
                                format!("go-sum source `{}`: `{path}` is a directory", s.name),
                            )),
                            Err(BuildError::Diagnostics(d)) => errors.extend(d.errors),
                            Err(e) => return Err(e),
                        }
                    }
                    SourceKind::Path {
                        path,
                        sha256: pinned,
                    } => {
                        let (sha, abs, content) =
                            match hash_path_source(project.root(), r, s, path.as_str()) {
                                Ok(v) => v,
                                Err(BuildError::Diagnostics(d)) => {
                                    errors.extend(d.errors);
                                    continue;
                                }
                                Err(e) => return Err(e),
                            };
                        if let Some(p) = pinned
                            && *p != sha
                        {
                            errors.push(
                                r.file
                                    .error(s.span.clone(), format!(
                                        "path source `{}` (`{path}`) has sha256 {sha}, but the recipe pins {p}",
                                        s.name
                                    ))
                                    .with_help("update the pin if the change is intended"),
                            );
                            continue;
                        }
                        if content == PathContent::Directory && s.unpack.is_archive() {
                            errors.push(r.file.error(
                                s.span.clone(),
                                format!("path source `{}` is a directory; drop `unpack`", s.name),
                            ));
                            continue;
                        }
                        path_hashes.insert(s.name.clone(), sha);
                        sources.push(ResolvedSource {
                            source: s.clone(),
                            sha256: Some(sha),
                            local: Some((abs, content)),
                            go_sum: Vec::new(),
                        });
                    }
                }
            }
            let inputs: BTreeMap<String, Sha256Digest> = r
                .build_deps()
                .filter_map(|i| recipes.get(i).map(|ri| (i.clone(), ri.hash)))
                .collect();
            let hash = recipe_hash(
                r,
                &HashInputs {
                    builder: BUILDER_VERSION,
                    source_date_epoch: sde,
                    parameters: &parameters,
                    path_sources: &path_hashes,
                    inputs: &inputs,
                },
            );
            recipes.insert(
                name.clone(),
                ResolvedRecipe {
                    recipe: r.clone(),
                    hash,
                    parameters,
                    sources,
                },
            );
        }
        if !errors.is_empty() {
            return Err(BuildError::Diagnostics(Diagnostics::from(errors)));
        }
        Ok(Plan {
            root: project.root().to_path_buf(),
            source_date_epoch: sde,
            builder: BUILDER_VERSION.to_string(),
            recipes,
            order,
        })
    }

    /// Resolves a target name (`NAME` or `recipe:NAME`).
    pub fn target(&self, spec: &str) -> Result<String, BuildError> {
        let name = match spec.split_once(':') {
            Some(("recipe", n)) => n,
            Some((kind, _)) => {
                return Err(BuildError::Target(format!(
                    "`{spec}`: unknown target kind `{kind}` (this forge builds `recipe:NAME`)"
                )));
            }
            None => spec,
        };
        if self.recipes.contains_key(name) {
            Ok(name.to_string())
        } else {
            let hint = did_you_mean(name, self.recipes.keys().map(String::as_str))
                .map(|b| format!("; did you mean `{b}`?"))
                .unwrap_or_default();
            Err(BuildError::Target(format!(
                "no recipe named `{name}`{hint}"
            )))
        }
    }

    /// The lockfile entry of a recipe, with the layer fields from `layer` when built.
    pub fn locked_entry(
        &self,
        name: &str,
        layer: Option<&forge_store::OutputRecord>,
    ) -> Option<LockedRecipe> {
        let r = self.recipes.get(name)?;
        Some(LockedRecipe {
            name: name.to_string(),
            version: r.recipe.version.clone(),
            hash: r.hash,
            inputs: r.recipe.inputs.clone(),
            tools: r.recipe.tools.clone(),
            sources: r.sources.iter().map(locked_source).collect(),
            layer_sha256: layer.map(|l| l.layer_sha256),
            layer_size: layer.map(|l| l.layer_size),
            content_sha256: layer.map(|l| l.content_sha256),
        })
    }

    /// An empty lockfile with this plan's settings.
    pub fn empty_lockfile(&self) -> Lockfile {
        Lockfile::new(self.source_date_epoch, &self.builder)
    }

    /// The settings every output of this plan depends on, for the lockfile's header.
    pub fn header(&self) -> Header {
        Header {
            source_date_epoch: self.source_date_epoch,
            builder: self.builder.clone(),
        }
    }

    /// The lockfile's recipe section: an entry for every recipe, with the layer of those
    /// in `built`. With `update`, only those recipes and what depends on them change
    /// (`forge lock --update`).
    pub fn recipes_section(
        &self,
        built: &BTreeMap<String, forge_store::OutputRecord>,
        update: Option<&[String]>,
    ) -> RecipesSection {
        RecipesSection {
            entries: self
                .order
                .iter()
                .filter_map(|n| Some((n.clone(), self.locked_entry(n, built.get(n))?)))
                .collect(),
            scope: update.map(|u| dependents(self, u)),
        }
    }
}
