//! Running a recipe's declarative steps: from sources in the store to a [`LayerTree`].
//!
//! Steps other than `build` never run a program. Templates are rendered by minijinja with
//! the recipe's parameters, its name/version/hash and its inputs' versions and hashes: no
//! environment, no files, no clock. Archives are unpacked into the build's private work
//! directory with the checks of `forge-archive`; members are resolved as in a chroot. A
//! `build` step runs its program in the sandbox of [`crate::sandbox`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use forge_archive::{Limits, resolve_in_root};
use forge_layer::{FileData, Kind, LayerTree, Node};
use forge_schema::paths::{ImagePath, RelPath};
use forge_schema::recipe::{
    Action, Content, Owner, SYSUSERS_DIR, SourceKind, Step, UNIT_DIR, Unpack,
};
use forge_store::Store;

use crate::BuildError;
use crate::plan::{PathContent, Plan, ResolvedRecipe};

mod build;

/// Where a step reads a source from.
enum Materialised {
    /// A single file (a source with `unpack = "none"`).
    File(PathBuf),
    /// An unpacked tree.
    Tree(PathBuf),
}

struct Context<'a> {
    resolved: &'a ResolvedRecipe,
    store: &'a Store,
    work: &'a Path,
    unpacked: BTreeMap<String, Materialised>,
    templates: minijinja::Environment<'static>,
    template_ctx: minijinja::Value,
}

fn step_path(data: &FileData) -> PathBuf {
    match data {
        FileData::Host { path, .. } | FileData::Slice { path, .. } => path.clone(),
        FileData::Inline(_) => PathBuf::from("(inline content)"),
    }
}

fn location(r: &ResolvedRecipe, step: &Step) -> String {
    let (line, col) = r.recipe.file.line_col(step.span.start);
    format!("{}:{line}:{col}", r.recipe.file.name)
}

fn step_error(r: &ResolvedRecipe, step: &Step, message: impl Into<String>) -> BuildError {
    BuildError::Step {
        recipe: r.recipe.name.clone(),
        location: location(r, step),
        message: message.into(),
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::File { path, .. } => format!("file {path}"),
        Action::Tree { path, .. } => format!("tree {path}"),
        Action::Mkdir { path, .. } => format!("mkdir {path}"),
        Action::Symlink { path, .. } => format!("symlink {path}"),
        Action::Template { path, .. } => format!("template {path}"),
        Action::Unit { name, .. } => format!("unit {name}"),
        Action::User { name, .. } => format!("user {name}"),
        Action::Group { name, .. } => format!("group {name}"),
        Action::EnvFile { path, .. } => format!("env-file {path}"),
        Action::Build { path, .. } => format!("build {path}"),
    }
}

impl Context<'_> {
    /// The source, unpacked into the work directory on first use.
    fn materialise(&mut self, step: &Step, name: &str) -> Result<&Materialised, BuildError> {
        if !self.unpacked.contains_key(name) {
            let src = self
                .resolved
                .source(name)
                .ok_or_else(|| step_error(self.resolved, step, format!("no source `{name}`")))?;
            let m = match &src.source.kind {
                SourceKind::GoSum { path } => self.go_proxy_tree(step, name, src, path.as_str())?,
                SourceKind::Oci(o) => self.image_tree(step, name, o)?,
                _ => self.unpack_file(step, name, src)?,
            };
            self.unpacked.insert(name.to_string(), m);
        }
        self.unpacked
            .get(name)
            .ok_or_else(|| step_error(self.resolved, step, format!("no source `{name}`")))
    }

    /// A file source: the blob itself, or unpacked into the work directory.
    fn unpack_file(
        &self,
        step: &Step,
        name: &str,
        src: &crate::plan::ResolvedSource,
    ) -> Result<Materialised, BuildError> {
        let sha256 = match (&src.source.kind, src.sha256) {
            (_, Some(d)) => Some(d),
            (SourceKind::Url { integrity, .. }, None) => {
                forge_fetch::stored_blob(self.store, integrity)
            }
            (SourceKind::GoModule(g), None) => {
                forge_fetch::go::stored(self.store, &crate::engine::go_request(g))
            }
            _ => None,
        };
        let Some(sha256) = sha256 else {
            return Err(step_error(
                self.resolved,
                step,
                format!("source `{name}` is not in the store (fetch it first)"),
            ));
        };
        let blob = self.store.blob_path(&sha256);
        let kind = match (&src.local, src.source.unpack) {
            (Some((_, PathContent::Directory)), _) => Unpack::Tar,
            (_, u) => u,
        };
        Ok(if kind == Unpack::None {
            Materialised::File(blob)
        } else {
            let dest = self.work.join("sources").join(name);
            fs::create_dir_all(&dest).map_err(io_err(&dest))?;
            let label = format!(
                "{} (source `{name}` of recipe `{}`)",
                src.source.file_name, self.resolved.recipe.name
            );
            forge_archive::unpack(
                &blob,
                kind,
                src.source.strip_components,
                &dest,
                &Limits::default(),
                &label,
            )?;
            Materialised::Tree(dest)
        })
    }

    /// An image source's file system: its layers (recorded in the store when it was
    /// fetched) applied in order.
    fn image_tree(
        &self,
        step: &Step,
        name: &str,
        o: &forge_schema::recipe::OciSource,
    ) -> Result<Materialised, BuildError> {
        let request = forge_fetch::oci::ImageRequest {
            name: name.to_string(),
            image: o.image.clone(),
            mirrors: o.mirrors.clone(),
            digest: o.digest,
            platform: o.platform.clone(),
        };
        let record = self
            .store
            .record::<forge_store::SourceRecord>(&request.record_key())?
            .ok_or_else(|| {
                step_error(
                    self.resolved,
                    step,
                    format!("image source `{name}` is not in the store (fetch it first)"),
                )
            })?;
        let mut layers = Vec::new();
        for l in &record.layers {
            let kind = match forge_fetch::oci::layer_compression(&l.media_type) {
                Some(forge_fetch::oci::LayerCompression::None) => Unpack::Tar,
                Some(forge_fetch::oci::LayerCompression::Gzip) => Unpack::TarGz,
                Some(forge_fetch::oci::LayerCompression::Zstd) => Unpack::TarZst,
                None => {
                    return Err(step_error(
                        self.resolved,
                        step,
                        format!("image source `{name}`: layer media type `{}`", l.media_type),
                    ));
                }
            };
            layers.push((self.store.blob_path(&l.digest), kind));
        }
        let dest = self.work.join("sources").join(name);
        fs::create_dir_all(&dest).map_err(io_err(&dest))?;
        let label = format!(
            "{} (source `{name}` of recipe `{}`)",
            o.image, self.resolved.recipe.name
        );
        forge_archive::unpack_layers(&layers, &dest, &Limits::default(), &label)?;
        Ok(Materialised::Tree(dest))
    }

    /// A go.sum source as a module proxy tree (`<module>/@v/<version>.{zip,mod,info}`) of
    /// the verified files in the store, hard-linked (the store and the work directory are
    /// on one file system), for `GOPROXY=file:///src/NAME`.
    fn go_proxy_tree(
        &self,
        step: &Step,
        name: &str,
        src: &crate::plan::ResolvedSource,
        path: &str,
    ) -> Result<Materialised, BuildError> {
        let dest = self.work.join("sources").join(name);
        for req in &src.go_sum {
            let blob = forge_fetch::go::stored(self.store, req).ok_or_else(|| {
                step_error(
                    self.resolved,
                    step,
                    format!(
                        "Go module {} of `{path}` is not in the store (fetch it first)",
                        req.label()
                    ),
                )
            })?;
            let at = dest.join(req.proxy_path()?);
            if let Some(dir) = at.parent() {
                fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            let from = self.store.blob_path(&blob);
            if fs::hard_link(&from, &at).is_err() {
                fs::copy(&from, &at).map_err(io_err(&at))?;
            }
            // What the proxy protocol's `.info` says of a version (once for its zip and
            // go.mod); Go asks for it before the go.mod or zip of a version it was not given.
            let info = at.with_extension("info");
            if !info.exists() {
                fs::write(&info, format!("{{\"Version\":\"{}\"}}\n", req.version))
                    .map_err(io_err(&info))?;
            }
        }
        fs::create_dir_all(&dest).map_err(io_err(&dest))?;
        Ok(Materialised::Tree(dest))
    }

    /// A host path inside a source, resolved as in a chroot.
    fn member(
        &mut self,
        step: &Step,
        source: &str,
        member: Option<&str>,
    ) -> Result<PathBuf, BuildError> {
        let r = self.resolved;
        match (self.materialise(step, source)?, member) {
            (Materialised::File(p), None) => Ok(p.clone()),
            (Materialised::File(_), Some(m)) => Err(step_error(
                r,
                step,
                format!("source `{source}` is a single file; it has no member `{m}`"),
            )),
            (Materialised::Tree(_), None) => Err(step_error(
                r,
                step,
                format!(
                    "source `{source}` is unpacked into a directory; name the file with `member`"
                ),
            )),
            (Materialised::Tree(root), Some(m)) => {
                let root = root.clone();
                resolve_in_root(&root, m, true).map_err(|e| {
                    step_error(r, step, format!("member `{m}` of source `{source}`: {e}"))
                })
            }
        }
    }

    /// File bytes for a `content`/`from` pair, and whether the source file is executable.
    fn content(&mut self, step: &Step, content: &Content) -> Result<(FileData, bool), BuildError> {
        match content {
            Content::Inline(s) => Ok((FileData::Inline(Arc::from(s.as_bytes())), false)),
            Content::Source { source, member } => {
                let path = self.member(step, source, member.as_ref().map(|m| m.as_str()))?;
                let meta = fs::symlink_metadata(&path).map_err(|e| {
                    step_error(
                        self.resolved,
                        step,
                        format!(
                            "{} not found in source `{source}`: {e}",
                            member
                                .as_ref()
                                .map_or_else(|| "file".to_string(), |m| format!("member `{m}`"))
                        ),
                    )
                })?;
                if !meta.is_file() {
                    return Err(step_error(
                        self.resolved,
                        step,
                        format!(
                            "member `{}` of source `{source}` is not a regular file",
                            member.as_ref().map_or("", |m| m.as_str())
                        ),
                    ));
                }
                use std::os::unix::fs::PermissionsExt;
                let exec = meta.permissions().mode() & 0o111 != 0;
                Ok((
                    FileData::Host {
                        path,
                        size: meta.len(),
                    },
                    exec,
                ))
            }
        }
    }

    /// Text of a `content`/`from` pair (templates, units).
    fn text(&mut self, step: &Step, content: &Content) -> Result<String, BuildError> {
        let (data, _) = self.content(step, content)?;
        let bytes = data.read().map_err(|source| BuildError::Io {
            path: step_path(&data),
            source,
        })?;
        String::from_utf8(bytes)
            .map_err(|_| step_error(self.resolved, step, "the text is not UTF-8"))
    }

    fn render(&self, step: &Step, template: &str) -> Result<String, BuildError> {
        self.templates
            .render_str(template, &self.template_ctx)
            .map_err(|e| {
                let mut msg = format!("template error: {e}");
                let mut src = std::error::Error::source(&e);
                while let Some(inner) = src {
                    msg.push_str(&format!(": {inner}"));
                    src = inner.source();
                }
                step_error(self.resolved, step, msg)
            })
    }
}

/// The error for an I/O failure at `path`, for `map_err`.
fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + use<> {
    let path = path.to_path_buf();
    move |source| BuildError::Io { path, source }
}

/// Quotes an environment value so systemd's `EnvironmentFile=` and a POSIX shell read back
/// exactly `value`.
fn env_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:,@%+=-".contains(c));
    if plain {
        value.to_string()
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        let mut s = String::from("\"");
        for c in value.chars() {
            if matches!(c, '\\' | '"' | '$' | '`') {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
        s
    }
}

fn path(s: &str) -> Result<ImagePath, BuildError> {
    ImagePath::parse(s).map_err(|e| BuildError::Target(e.to_string()))
}

/// The template environment of a recipe: strict (an undefined name is an error), and its
/// context: the parameters, the recipe's name, version and hash, its inputs'.
fn template_env(
    plan: &Plan,
    resolved: &ResolvedRecipe,
) -> Result<(minijinja::Environment<'static>, minijinja::Value), BuildError> {
    let recipe = &resolved.recipe;
    let mut templates = minijinja::Environment::new();
    templates.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| BuildError::Internal(e.to_string()))?;
    templates.set_syntax(syntax);
    let inputs: BTreeMap<&str, BTreeMap<&str, String>> = recipe
        .inputs
        .iter()
        .filter_map(|i| {
            plan.recipes.get(i).map(|ri| {
                (
                    i.as_str(),
                    BTreeMap::from([
                        ("version", ri.recipe.version.clone()),
                        ("hash", ri.hash.to_hex()),
                    ]),
                )
            })
        })
        .collect();
    let template_ctx = minijinja::context! {
        params => minijinja::Value::from(minijinja::value::Serde(&resolved.parameters)),
        recipe => minijinja::context! {
            name => recipe.name.clone(),
            version => recipe.version.clone(),
            hash => resolved.hash.to_hex(),
        },
        inputs => minijinja::Value::from(minijinja::value::Serde(&inputs)),
    };
    Ok((templates, template_ctx))
}

/// A regular file with inline content.
fn inline(text: String, mode: u32, uid: u32, gid: u32) -> Node {
    Node {
        kind: Kind::File(FileData::Inline(Arc::from(text.into_bytes()))),
        mode,
        uid,
        gid,
    }
}

/// A symbolic link (owned by root).
fn symlink(target: String) -> Node {
    Node {
        kind: Kind::Symlink(target),
        mode: 0o777,
        uid: 0,
        gid: 0,
    }
}

/// One recipe's layer as its steps make it.
struct Assembly<'a> {
    cx: Context<'a>,
    plan: &'a Plan,
    /// Jobs a build step may run at once (`FORGE_BUILD_JOBS`).
    jobs: usize,
    /// The step being run, 1-based (names its log).
    step_no: usize,
    tree: LayerTree,
    /// sysusers.d lines of the `user` and `group` steps, written once at the end.
    sysusers: Vec<String>,
    unit_dir: ImagePath,
}

impl Assembly<'_> {
    fn insert(&mut self, path: &ImagePath, node: Node, origin: &str) -> Result<(), BuildError> {
        let recipe = &self.cx.resolved.recipe.name;
        self.tree
            .insert(path, node, origin)
            .map_err(|e| BuildError::Layer {
                recipe: recipe.clone(),
                source: e,
            })
    }

    fn error(&self, step: &Step, message: String) -> BuildError {
        step_error(self.cx.resolved, step, message)
    }

    fn step(&mut self, step: &Step, origin: &str) -> Result<(), BuildError> {
        match &step.action {
            Action::File {
                path,
                content,
                mode,
                owner,
            } => {
                let (data, exec) = self.cx.content(step, content)?;
                let node = Node {
                    kind: Kind::File(data),
                    mode: mode.unwrap_or(if exec { 0o755 } else { 0o644 }),
                    uid: owner.uid,
                    gid: owner.gid,
                };
                self.insert(path, node, origin)
            }
            Action::Template {
                path,
                template,
                mode,
                owner,
            } => {
                let text = self.cx.text(step, template)?;
                let out = self.cx.render(step, &text)?;
                self.insert(path, inline(out, *mode, owner.uid, owner.gid), origin)
            }
            Action::Tree {
                path,
                source,
                member,
                owner,
                executable,
            } => self.tree_step(step, origin, path, source, member, owner, executable),
            Action::Mkdir { path, mode, owner } => {
                self.insert(path, Node::dir(*mode, owner.uid, owner.gid), origin)
            }
            Action::Symlink { path, target } => self.insert(path, symlink(target.clone()), origin),
            Action::Unit {
                name,
                content,
                template,
                enable,
                wanted_by,
            } => self.unit(step, origin, name, content, *template, *enable, wanted_by),
            Action::User {
                name,
                uid,
                description,
                home,
                shell,
                groups,
            } => {
                let q = |v: &Option<String>| {
                    v.as_ref()
                        .map_or_else(|| "-".to_string(), |s| format!("\"{s}\""))
                };
                self.sysusers.push(format!(
                    "u {name} {} {} {} {}",
                    uid.map_or_else(|| "-".to_string(), |u| u.to_string()),
                    q(description),
                    home.as_deref().unwrap_or("-"),
                    shell.as_deref().unwrap_or("-"),
                ));
                for g in groups {
                    self.sysusers.push(format!("m {name} {g}"));
                }
                Ok(())
            }
            Action::Group { name, gid } => {
                self.sysusers.push(format!(
                    "g {name} {}",
                    gid.map_or_else(|| "-".to_string(), |g| g.to_string())
                ));
                Ok(())
            }
            Action::EnvFile { path, vars, mode } => {
                let mut text = String::new();
                for (k, v) in vars {
                    let value = self.cx.render(step, v)?;
                    if value.contains('\n') {
                        return Err(
                            self.error(step, format!("`{k}` renders to a value with a newline"))
                        );
                    }
                    text.push_str(&format!("{k}={}\n", env_quote(&value)));
                }
                self.insert(path, inline(text, *mode, 0, 0), origin)
            }
            Action::Build {
                path,
                run,
                sources,
                env,
                template,
                owner,
            } => {
                let (argv, env) = self.invocation(step, run, env, *template)?;
                self.build_step(step, origin, path, &argv, &env, sources, owner)
            }
        }
    }

    /// A `tree` step: a directory of a source (or a member of it) under `path`.
    #[allow(clippy::too_many_arguments)]
    fn tree_step(
        &mut self,
        step: &Step,
        origin: &str,
        path: &ImagePath,
        source: &str,
        member: &RelPath,
        owner: &Owner,
        executable: &[String],
    ) -> Result<(), BuildError> {
        let m = (!member.is_root()).then(|| member.as_str());
        let dir = match self.cx.materialise(step, source)? {
            Materialised::Tree(root) => {
                let root = root.clone();
                match m {
                    Some(m) => resolve_in_root(&root, m, true)
                        .map_err(|e| self.error(step, format!("member `{m}`: {e}")))?,
                    None => root,
                }
            }
            Materialised::File(_) => {
                return Err(self.error(
                    step,
                    format!("source `{source}` is a single file, not a tree"),
                ));
            }
        };
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return Err(self.error(
                step,
                format!("member `{member}` of source `{source}` is not a directory"),
            ));
        }
        if !executable.is_empty() {
            // The unpacked source is this build's private copy.
            mark_executable(&dir, executable).map_err(io_err(&dir))?;
        }
        self.insert(path, Node::dir(0o755, owner.uid, owner.gid), origin)?;
        let recipe = &self.cx.resolved.recipe.name;
        self.tree
            .add_host_tree(&dir, Some(path), owner.uid, owner.gid, origin)
            .map_err(|e| BuildError::Layer {
                recipe: recipe.clone(),
                source: e,
            })
    }

    /// A `unit` step: the unit file, and with `enable` the links its [Install] section (or
    /// `wanted-by`) asks for.
    #[allow(clippy::too_many_arguments)]
    fn unit(
        &mut self,
        step: &Step,
        origin: &str,
        name: &str,
        content: &Content,
        template: bool,
        enable: bool,
        wanted_by: &[String],
    ) -> Result<(), BuildError> {
        let mut text = self.cx.text(step, content)?;
        if template {
            text = self.cx.render(step, &text)?;
        }
        let unit_path = self
            .unit_dir
            .join(name)
            .map_err(|e| self.error(step, e.to_string()))?;
        // `wanted-by` replaces the unit's own [Install] section.
        let targets: Vec<(String, &str)> = if wanted_by.is_empty() {
            forge_schema::unit::install_targets(&text)
        } else {
            wanted_by.iter().map(|t| (t.clone(), "wants")).collect()
        };
        self.insert(&unit_path, inline(text, 0o644, 0, 0), origin)?;
        if !enable {
            return Ok(());
        }
        if name.contains("@.") {
            return Err(self.error(
                step,
                format!("`{name}` is a template unit; enable an instance of it instead"),
            ));
        }
        if targets.is_empty() {
            return Err(self.error(
                step,
                format!(
                    "unit `{name}` is enabled but says nowhere when to start: add `WantedBy=` or `RequiredBy=` to its [Install] section, or set `wanted-by`"
                ),
            ));
        }
        for (t, dir) in targets {
            let link = path(&format!("/etc/systemd/system/{t}.{dir}/{name}"))?;
            self.insert(&link, symlink(unit_path.to_string()), origin)?;
        }
        Ok(())
    }

    /// The layer, with the sysusers.d file of the user and group steps.
    fn finish(mut self) -> Result<LayerTree, BuildError> {
        if !self.sysusers.is_empty() {
            let name = self.cx.resolved.recipe.name.clone();
            let mut text = format!("# Users and groups of recipe `{name}` (systemd-sysusers).\n");
            for l in &self.sysusers {
                text.push_str(l);
                text.push('\n');
            }
            let p = path(&format!("{SYSUSERS_DIR}/{name}.conf"))?;
            self.insert(&p, inline(text, 0o644, 0, 0), "user and group steps")?;
        }
        Ok(self.tree)
    }
}

/// Whether `name` matches one segment of a pattern (`*` is any run of characters).
fn segment_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Sets the executable bits of the regular files under `root` that a pattern matches.
fn mark_executable(root: &Path, patterns: &[String]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for pattern in patterns {
        let segments: Vec<&str> = pattern.split('/').collect();
        let mut level = vec![root.to_path_buf()];
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let mut next = Vec::new();
            for dir in &level {
                let Ok(entries) = fs::read_dir(dir) else {
                    continue;
                };
                for e in entries {
                    let e = e?;
                    let name = e.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let ft = e.file_type()?;
                    if !segment_matches(seg, name) || ft.is_symlink() {
                        continue;
                    }
                    if last && ft.is_file() {
                        let mode = e.metadata()?.permissions().mode();
                        fs::set_permissions(e.path(), fs::Permissions::from_mode(mode | 0o111))?;
                    } else if !last && ft.is_dir() {
                        next.push(e.path());
                    }
                }
            }
            level = next;
        }
    }
    Ok(())
}

/// Runs every step of recipe `name` and returns the layer's entries. `work` is a private,
/// empty directory for unpacked sources and build steps; `jobs` is what a build step may
/// use at once.
pub fn assemble(
    plan: &Plan,
    name: &str,
    store: &Store,
    work: &Path,
    jobs: usize,
) -> Result<LayerTree, BuildError> {
    let resolved = plan
        .recipes
        .get(name)
        .ok_or_else(|| BuildError::Target(format!("no recipe named `{name}`")))?;
    let (templates, template_ctx) = template_env(plan, resolved)?;
    let mut a = Assembly {
        cx: Context {
            resolved,
            store,
            work,
            unpacked: BTreeMap::new(),
            templates,
            template_ctx,
        },
        plan,
        jobs: jobs.max(1),
        step_no: 0,
        tree: LayerTree::new(),
        sysusers: Vec::new(),
        unit_dir: path(UNIT_DIR)?,
    };
    for (index, step) in resolved.recipe.steps.iter().enumerate() {
        a.step_no = index + 1;
        let origin = format!(
            "step {} ({}, {})",
            index + 1,
            describe(&step.action),
            location(resolved, step)
        );
        a.step(step, &origin)?;
    }
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_within_one_name() {
        assert!(segment_matches("*", "go"));
        assert!(segment_matches("go*", "gofmt"));
        assert!(segment_matches("*.so", "libx.so"));
        assert!(segment_matches("a*b*c", "axxbyyc"));
        assert!(!segment_matches("a*b*c", "axxc"));
        assert!(!segment_matches("go", "gofmt"));
    }

    #[test]
    fn env_values_round_trip_through_quoting() {
        assert_eq!(env_quote("abc-1.2/x"), "abc-1.2/x");
        assert_eq!(env_quote("a b"), "'a b'");
        assert_eq!(env_quote(""), "''");
        assert_eq!(env_quote("it's $HOME"), "\"it's \\$HOME\"");
    }
}
