//! The commands: resolve arguments against the environment, call the stages, report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use forge_schema::image::Image;
use forge_schema::lockfile::Lockfile;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use forge_build::engine::{BuildSettings, Observer};
use forge_build::plan::Plan;
use forge_build::project::Project;
use forge_build::{BuildError, check, engine, lock};
use forge_fetch::{FetchOptions, Progress, Transfer};
use forge_schema::Sha256Digest;
use forge_store::Store;
use serde_json::json;

use crate::cli::{BuildArgs, FetchArgs, FetchOpts, GcArgs, HashArgs, LockArgs, StoreCommand};
use crate::env;
use crate::printer::{Printer, bytes};

/// Settings every command shares.
pub struct Globals {
    pub directory: Option<PathBuf>,
    pub store: Option<PathBuf>,
    pub variant: Option<String>,
    pub printer: Printer,
}

/// A failure already reported to the user, carrying only the exit code.
#[derive(Debug)]
pub struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failure reported above")
    }
}

impl std::error::Error for Reported {}

impl Globals {
    fn start_dir(&self) -> Result<PathBuf> {
        match &self.directory {
            Some(d) => Ok(d.clone()),
            None => std::env::current_dir().context("cannot read the current directory"),
        }
    }

    pub(crate) fn project(&self) -> Result<Project> {
        let root = Project::discover(&self.start_dir()?)?;
        Ok(match &self.variant {
            Some(v) => Project::load_variant(&root, v)?,
            None => Project::load(&root)?,
        })
    }

    /// `--store`, else `FORGE_STORE`, else `$XDG_CACHE_HOME/forge/store`.
    pub fn store_path(&self) -> Result<PathBuf> {
        if let Some(s) = &self.store {
            return Ok(s.clone());
        }
        if let Some(s) = env::var(env::FORGE_STORE) {
            return Ok(PathBuf::from(s));
        }
        let cache = match env::var(env::XDG_CACHE_HOME) {
            Some(c) if Path::new(&c).is_absolute() => PathBuf::from(c),
            _ => {
                let home = env::var(env::HOME).ok_or_else(|| {
                    anyhow!("cannot find a store directory: set FORGE_STORE, XDG_CACHE_HOME or HOME, or pass --store")
                })?;
                PathBuf::from(home).join(".cache")
            }
        };
        Ok(cache.join("forge").join("store"))
    }

    fn observer(&self) -> Arc<dyn Observer> {
        Arc::new(CliObserver {
            printer: self.printer.clone(),
            phases: std::sync::Mutex::default(),
        })
    }

    pub(crate) fn open_store(&self, exclusive: bool) -> Result<Arc<Store>> {
        let path = self.store_path()?;
        let printer = self.printer.clone();
        let notice = move |msg: &str| printer.status("Blocking", msg);
        let store = if exclusive {
            Store::open_exclusive(&path, &notice)
        } else {
            Store::open(&path, &notice)
        };
        Ok(Arc::new(store.with_context(|| {
            format!("cannot open the store at `{}`", path.display())
        })?))
    }
}

fn jobs(opts: &FetchOpts) -> usize {
    opts.jobs
        .or_else(|| env::var(env::FORGE_JOBS).and_then(|j| j.parse().ok()))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

fn settings(opts: &FetchOpts, offline: bool, project: &Project) -> BuildSettings {
    let mut source_dirs = opts.source_dirs.clone();
    if let Some(dirs) = env::var(env::FORGE_SOURCE_DIRS) {
        source_dirs.extend(dirs.split(':').filter(|d| !d.is_empty()).map(PathBuf::from));
    }
    let jobs = jobs(opts);
    BuildSettings {
        jobs,
        fetch: FetchOptions {
            source_dirs,
            offline: offline || opts.offline,
            parallel: jobs.max(4),
            debian_mirror: debian_mirror(opts, project),
            ..FetchOptions::default()
        },
    }
}

/// Draws progress bars and status lines for a build.
struct CliObserver {
    printer: Printer,
    phases: std::sync::Mutex<BTreeMap<String, indicatif::ProgressBar>>,
}

struct CliProgress {
    printer: Printer,
}

struct CliTransfer {
    bar: indicatif::ProgressBar,
    total: indicatif::ProgressBar,
    last_total: std::sync::Mutex<Option<u64>>,
}

impl Transfer for CliTransfer {
    fn set_position(&self, pos: u64, total: Option<u64>) {
        if let Ok(mut last) = self.last_total.lock() {
            let old = last.unwrap_or(0);
            let new = total.unwrap_or(0);
            self.total
                .set_length(self.total.length().unwrap_or(0) + new - old.min(new));
            *last = total;
        }
        self.bar.set_length(total.unwrap_or(0));
        self.bar.set_position(pos);
    }
    fn advance(&self, n: u64) {
        self.bar.inc(n);
        self.total.inc(n);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for CliProgress {
    fn start(&self, name: &str, total: Option<u64>) -> Box<dyn Transfer> {
        // One line per download only with -v: an image fetches hundreds of packages, and
        // the bars (on a terminal) already show them.
        if self.printer.verbosity() == crate::printer::Verbosity::Verbose {
            self.printer.status("Fetching", name);
        }
        Box::new(CliTransfer {
            bar: self.printer.transfer_bar(name, total),
            total: self.printer.total_bar(),
            last_total: std::sync::Mutex::new(None),
        })
    }
}

impl Observer for CliObserver {
    fn progress(&self) -> Arc<dyn Progress> {
        Arc::new(CliProgress {
            printer: self.printer.clone(),
        })
    }
    fn started(&self, name: &str, version: &str) {
        if version.is_empty() {
            self.printer.status("Building", name);
        } else {
            self.printer
                .status("Building", &format!("{name} v{version}"));
        }
    }
    fn phase_started(&self, subject: &str, phase: &str) {
        let bar = self.printer.spinner(&format!("{subject}: {phase}"));
        if let Ok(mut m) = self.phases.lock() {
            m.insert(format!("{subject}/{phase}"), bar);
        }
    }
    fn phase_finished(&self, subject: &str, phase: &str, seconds: f64, detail: &str) {
        if let Ok(mut m) = self.phases.lock()
            && let Some(bar) = m.remove(&format!("{subject}/{phase}"))
        {
            bar.finish_and_clear();
        }
        self.printer.status(
            "Done",
            &format!("{subject} {phase:<10} {seconds:>6.1}s  {detail}"),
        );
    }
    fn finished(&self, _: &str, _: bool, _: f64) {}
    fn note(&self, message: &str) {
        self.printer.status("Blocking", message);
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// What a command line selected: recipes and images.
#[derive(Debug, Default)]
struct Selection {
    recipes: Vec<String>,
    images: Vec<String>,
}

/// `NAME`, `recipe:NAME`, `image:NAME`, `images`; nothing selects everything.
fn select(plan: &Plan, project: &Project, specs: &[String]) -> Result<Selection> {
    if specs.is_empty() {
        return Ok(Selection {
            recipes: plan.order.clone(),
            images: project.images.keys().cloned().collect(),
        });
    }
    let mut sel = Selection::default();
    for spec in specs {
        let image = |name: &str, sel: &mut Selection| -> Result<()> {
            if !project.images.contains_key(name) {
                let hint = forge_schema::diag::did_you_mean(
                    name,
                    project.images.keys().map(String::as_str),
                )
                .map(|b| format!("; did you mean `image:{b}`?"))
                .unwrap_or_default();
                bail!("no image named `{name}` in images/{hint}");
            }
            if !sel.images.iter().any(|i| i == name) {
                sel.images.push(name.to_string());
            }
            Ok(())
        };
        match spec.split_once(':') {
            _ if spec == "images" => {
                for name in project.images.keys() {
                    image(name, &mut sel)?;
                }
            }
            Some(("image", name)) => image(name, &mut sel)?,
            None if !plan.recipes.contains_key(spec.as_str())
                && project.images.contains_key(spec.as_str()) =>
            {
                image(spec, &mut sel)?;
            }
            _ => {
                let name = plan.target(spec)?;
                if !sel.recipes.contains(&name) {
                    sel.recipes.push(name);
                }
            }
        }
    }
    Ok(sel)
}

fn outcome_json(plan: &Plan, o: &engine::Outcome) -> serde_json::Value {
    json!({
        "kind": "recipe",
        "name": o.name,
        "version": plan.recipes.get(&o.name).map(|r| r.recipe.version.clone()),
        "hash": o.record.recipe_hash.to_hex(),
        "layer_sha256": o.record.layer_sha256.to_hex(),
        "content_sha256": o.record.content_sha256.to_hex(),
        "size": o.record.layer_size,
        "output": o.path,
        "cached": o.cached,
        "seconds": o.seconds,
    })
}

fn image_json(o: &forge_image::build::ImageOutcome, copied: Option<&Path>) -> serde_json::Value {
    json!({
        "kind": "image",
        "name": o.name,
        "hash": o.hash.to_hex(),
        "format": o.record.format,
        "sha256": o.record.output_sha256.to_hex(),
        "size": o.record.output_size,
        "output": copied.map_or_else(|| o.path.clone(), Path::to_path_buf),
        "store_path": o.path,
        "cached": o.cached,
        "seconds": o.seconds,
        "phases": o.phases.iter().map(|p| json!({"phase": p.name, "seconds": p.seconds, "detail": p.detail})).collect::<Vec<_>>(),
    })
}

/// The Debian archive root: `--debian-mirror`, `FORGE_DEBIAN_MIRROR`, or the host's apt
/// sources (the mirror that lists the project's suite).
fn debian_mirror(opts: &FetchOpts, project: &Project) -> Option<String> {
    opts.debian_mirror
        .clone()
        .or_else(|| env::var(env::FORGE_DEBIAN_MIRROR))
        .or_else(|| {
            let suite = project
                .images
                .values()
                .next()
                .map_or("bookworm", |i| i.base.suite.as_str());
            forge_debian::mirror::mirror_for(
                &forge_debian::mirror::host_sources(Path::new("/etc/apt")),
                suite,
            )
        })
}

/// Image stage options from flags and environment.
fn image_options(
    opts: &FetchOpts,
    build: BuildSettings,
    resolve: forge_image::run::Resolve,
    project: &Project,
) -> forge_image::run::ImageOptions {
    let mirror = debian_mirror(opts, project);
    let keyring = opts
        .debian_keyring
        .clone()
        .or_else(|| env::var(env::FORGE_DEBIAN_KEYRING).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(forge_image::base::DEBIAN_KEYRING));
    forge_image::run::ImageOptions {
        build,
        mirror,
        keyring,
        resolve,
    }
}

/// Everything a build or lock made.
struct Built {
    recipes: Vec<engine::Outcome>,
    images: Option<forge_image::run::ImagesResult>,
}

impl Built {
    fn records(&self) -> BTreeMap<String, forge_store::OutputRecord> {
        self.recipes
            .iter()
            .chain(self.images.iter().flat_map(|i| i.recipe_outcomes.iter()))
            .map(|o| (o.name.clone(), o.record.clone()))
            .collect()
    }

    /// The lockfile these outputs call for.
    fn lockfile(
        &self,
        plan: &Plan,
        project: &Project,
        current: Option<&Lockfile>,
        only: Option<&[String]>,
    ) -> Lockfile {
        let mut new = lock::desired(plan, current, &self.records(), only);
        let existing: Vec<String> = project.images.keys().cloned().collect();
        self.images
            .clone()
            .unwrap_or_default()
            .apply(&mut new, &existing);
        new
    }
}

/// What a build or check runs with.
struct Ctx<'a> {
    g: &'a Globals,
    rt: &'a tokio::runtime::Runtime,
    plan: &'a Arc<Plan>,
    project: &'a Project,
    store: &'a Arc<Store>,
    opts: &'a FetchOpts,
    settings: &'a BuildSettings,
}

/// Builds recipes and images with progress on the terminal.
fn run_builds(cx: &Ctx<'_>, sel: &Selection, resolve: forge_image::run::Resolve) -> Result<Built> {
    let Ctx {
        g,
        rt,
        plan,
        project,
        store,
        opts,
        settings,
    } = *cx;
    let observer = g.observer();
    let recipes = rt.block_on(engine::build(
        plan,
        store,
        &sel.recipes,
        settings,
        observer.clone(),
    ));
    let recipes = match recipes {
        Ok(r) => r,
        Err(e) => {
            g.printer.clear();
            return Err(e.into());
        }
    };
    let images = if sel.images.is_empty() {
        None
    } else {
        let list: Vec<&Image> = sel.images.iter().map(|n| &project.images[n]).collect();
        let empty = plan.empty_lockfile();
        let lock = project.lockfile.as_ref().unwrap_or(&empty);
        let options = image_options(opts, settings.clone(), resolve, project);
        let r = rt.block_on(forge_image::run::build_images(
            plan, &list, lock, store, &options, observer,
        ));
        g.printer.clear();
        Some(r?)
    };
    g.printer.clear();
    Ok(Built { recipes, images })
}

/// Copies built images to `-o PATH`.
fn copy_outputs(
    output: &Path,
    images: &[forge_image::build::ImageOutcome],
) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let dir_mode = images.len() != 1 || output.is_dir();
    if dir_mode {
        std::fs::create_dir_all(output)
            .with_context(|| format!("cannot create `{}`", output.display()))?;
    }
    for o in images {
        let dest = if dir_mode {
            output.join(format!("{}.{}", o.name, o.record.format))
        } else {
            output.to_path_buf()
        };
        let tmp = dest.with_extension("forge-tmp");
        std::fs::copy(&o.path, &tmp)
            .with_context(|| format!("cannot write `{}`", tmp.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("cannot write `{}`", dest.display()))?;
        out.insert(o.name.clone(), dest);
    }
    Ok(out)
}

pub fn build(g: &Globals, args: &BuildArgs) -> Result<()> {
    let started = Instant::now();
    let locked = args.locked || args.frozen;
    let offline = args.frozen;
    let project = g.project()?;
    let plan = Arc::new(Plan::resolve(&project, None)?);
    let sel = select(&plan, &project, &args.targets)?;
    let old = project.lockfile.as_ref();
    let settings = settings(&args.fetch, offline, &project);

    if locked {
        // Before any work: the recipes' inputs must be exactly the locked ones.
        let current = lock::desired(&plan, old, &BTreeMap::new(), None);
        lock::enforce(old, &current)?;
    }
    let store = g.open_store(false)?;
    let rt = runtime()?;

    let cx = Ctx {
        g,
        rt: &rt,
        plan: &plan,
        project: &project,
        store: &store,
        opts: &args.fetch,
        settings: &settings,
    };
    if args.check {
        return check(&cx, &sel);
    }

    let resolve = if locked {
        forge_image::run::Resolve::Locked
    } else {
        forge_image::run::Resolve::Reuse
    };
    let built = run_builds(&cx, &sel, resolve)?;

    let lock_path = project.lockfile_path();
    let mut updated = false;
    if locked {
        lock::enforce(old, &built.lockfile(&plan, &project, old, None))?;
        store.add_root(&lock_path)?;
    } else {
        updated = lock::write(&store, &lock_path, |current| {
            built.lockfile(&plan, &project, current, None)
        })?;
        if updated {
            g.printer.status("Updated", &project.lockfile_display());
        }
    }
    let images: &[forge_image::build::ImageOutcome] =
        built.images.as_ref().map_or(&[], |i| &i.outcomes);
    let copied = match &args.output {
        Some(o) if !images.is_empty() => copy_outputs(o, images)?,
        Some(_) => bail!("-o/--output needs an image to build; no image was selected"),
        None => BTreeMap::new(),
    };
    for o in images {
        let place = copied.get(&o.name).unwrap_or(&o.path);
        g.printer.status(
            if o.cached { "Fresh" } else { "Built" },
            &format!(
                "image {} ({}, {}) → {}",
                o.name,
                o.record.format,
                bytes(o.record.output_size),
                place.display()
            ),
        );
    }
    let fresh = built.recipes.iter().filter(|o| !o.cached).count();
    g.printer.status(
        "Finished",
        &format!(
            "{} recipe(s) ({fresh} built), {} image(s), in {:.2}s",
            built.recipes.len(),
            images.len(),
            started.elapsed().as_secs_f64()
        ),
    );
    if g.printer.json() {
        let mut targets: Vec<serde_json::Value> = built
            .recipes
            .iter()
            .map(|o| outcome_json(&plan, o))
            .collect();
        targets.extend(
            images
                .iter()
                .map(|o| image_json(o, copied.get(&o.name).map(PathBuf::as_path))),
        );
        g.printer.print_json(&json!({
            "targets": targets,
            "lockfile_updated": updated,
        }));
    }
    Ok(())
}

/// `forge build --check`.
fn check(cx: &Ctx<'_>, sel: &Selection) -> Result<()> {
    let Ctx {
        g,
        rt,
        plan,
        project,
        store,
        opts,
        settings,
    } = *cx;
    let lockfile = project.lockfile.as_ref().ok_or_else(|| {
        BuildError::CheckUnlocked(format!("{} does not exist", project.lockfile_display()))
    })?;
    let observer = g.observer();
    let mut bad = 0;
    let mut report = Vec::new();
    if !sel.recipes.is_empty() {
        let results = rt.block_on(check::check(
            plan,
            store,
            lockfile,
            &sel.recipes,
            settings,
            observer.clone(),
        ));
        g.printer.clear();
        for r in results? {
            if r.matches() {
                g.printer.status(
                    "Checked",
                    &format!("{} (layer sha256 {} reproduced)", r.name, r.locked),
                );
            } else {
                bad += 1;
                let detail = match &r.difference {
                    Some(d) => format!("first difference: {d}"),
                    None => "the locked layer is not in the store to compare with".to_string(),
                };
                g.printer.error(&format!(
                    "{} is not reproducible: locked layer sha256 {}, rebuilt {}\n  {detail}",
                    r.name, r.locked, r.rebuilt
                ));
            }
            report.push(json!({
                "kind": "recipe",
                "name": r.name,
                "locked": r.locked.to_hex(),
                "rebuilt": r.rebuilt.to_hex(),
                "matches": r.matches(),
                "difference": r.difference.as_ref().map(|d| json!({
                    "path": format!("/{}", d.path.trim_end_matches('/')),
                    "attribute": d.attribute.to_string(),
                    "locked": d.first,
                    "rebuilt": d.second,
                })),
                "seconds": r.seconds,
            }));
        }
    }
    if !sel.images.is_empty() {
        let list: Vec<&Image> = sel.images.iter().map(|n| &project.images[n]).collect();
        let options = image_options(
            opts,
            settings.clone(),
            forge_image::run::Resolve::Locked,
            project,
        );
        let results = rt.block_on(forge_image::check::check(
            plan, &list, lockfile, store, &options, observer,
        ));
        g.printer.clear();
        for r in results? {
            if r.matches() {
                g.printer.status(
                    "Checked",
                    &format!("image {} (sha256 {} reproduced)", r.name, r.locked),
                );
            } else {
                bad += 1;
                g.printer.error(&format!(
                    "image {} is not reproducible: locked sha256 {}, rebuilt {}\n  {}",
                    r.name, r.locked, r.rebuilt, r.explanation
                ));
            }
            report.push(json!({
                "kind": "image",
                "name": r.name,
                "locked": r.locked.to_hex(),
                "rebuilt": r.rebuilt.to_hex(),
                "matches": r.matches(),
                "difference": r.difference.as_ref().map(|d| json!({
                    "path": format!("/{}", d.path.trim_start_matches("./").trim_end_matches('/')),
                    "attribute": d.attribute.to_string(),
                    "locked": d.first,
                    "rebuilt": d.second,
                })),
                "explanation": r.explanation,
                "seconds": r.seconds,
            }));
        }
    }
    if g.printer.json() {
        g.printer.print_json(&json!({ "check": report }));
    }
    if bad > 0 {
        return Err(Reported.into());
    }
    Ok(())
}

pub fn lock_cmd(g: &Globals, args: &LockArgs) -> Result<()> {
    let started = Instant::now();
    let project = g.project()?;
    let plan = Arc::new(Plan::resolve(&project, args.source_date_epoch)?);
    let mut update_recipes = Vec::new();
    let mut update_images = Vec::new();
    for name in &args.update {
        let name = name.strip_prefix("image:").unwrap_or(name);
        if project.images.contains_key(name) && !plan.recipes.contains_key(name) {
            update_images.push(name.to_string());
        } else {
            update_recipes.push(plan.target(name)?);
        }
    }
    let only: Option<Vec<String>> = (!args.update.is_empty()).then(|| update_recipes.clone());
    let settings = settings(&args.fetch, false, &project);
    let store = g.open_store(false)?;
    let rt = runtime()?;
    let resolve = if args.locked {
        forge_image::run::Resolve::Locked
    } else if args.upgrade {
        forge_image::run::Resolve::Fresh
    } else {
        forge_image::run::Resolve::Reuse
    };
    let mut project_for_images = project.clone();
    if !update_images.is_empty()
        && let Some(l) = project_for_images.lockfile.as_mut()
    {
        // Forget the named images' sets so they are resolved again.
        l.images.retain(|n, _| !update_images.contains(n));
    }
    // Every image's entry is recomputed (its hash depends on the recipes); only missing,
    // changed or named package sets (all of them with --upgrade) are resolved.
    let images = if project.images.is_empty() {
        None
    } else {
        let list: Vec<&Image> = project.images.values().collect();
        let empty = plan.empty_lockfile();
        let lock = project_for_images.lockfile.as_ref().unwrap_or(&empty);
        let options = image_options(&args.fetch, settings.clone(), resolve, &project);
        let r = rt.block_on(forge_image::run::lock_images(
            &plan,
            &list,
            lock,
            &store,
            &options,
            g.observer(),
        ));
        g.printer.clear();
        Some(r?)
    };
    let built = Built {
        recipes: Vec::new(),
        images,
    };
    let lock_path = project.lockfile_path();
    let updated = if args.locked {
        let old = project.lockfile.as_ref();
        lock::enforce(old, &built.lockfile(&plan, &project, old, None))?;
        store.add_root(&lock_path)?;
        false
    } else {
        lock::write(&store, &lock_path, |current| {
            built.lockfile(&plan, &project, current, only.as_deref())
        })?
    };
    g.printer.status(
        if updated { "Locked" } else { "Unchanged" },
        &format!(
            "{} recipe(s) and {} image(s) in {} ({:.2}s)",
            plan.recipes.len(),
            project.images.len(),
            project.lockfile_display(),
            started.elapsed().as_secs_f64()
        ),
    );
    if g.printer.json() {
        let lock = forge_build::project::read_lockfile(&lock_path)?;
        let recipes: Vec<serde_json::Value> = plan
            .order
            .iter()
            .map(|n| {
                let r = &plan.recipes[n];
                json!({
                    "kind": "recipe",
                    "name": n,
                    "version": r.recipe.version,
                    "hash": r.hash.to_hex(),
                    "sources": r.sources.iter().map(|s| s.locked().pin()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let images: Vec<serde_json::Value> = lock
            .iter()
            .flat_map(|l| l.images.values())
            .map(|i| {
                json!({
                    "kind": "image",
                    "name": i.name,
                    "hash": i.hash.to_hex(),
                    "packages": i.debs.len(),
                    "output_sha256": i.output_sha256.map(|d| d.to_hex()),
                })
            })
            .collect();
        g.printer.print_json(&json!({
            "lockfile": lock_path,
            "updated": updated,
            "recipes": recipes,
            "images": images,
        }));
    }
    Ok(())
}

pub fn fetch(g: &Globals, args: &FetchArgs) -> Result<()> {
    let project = g.project()?;
    let plan = Arc::new(Plan::resolve(&project, None)?);
    let sel = select(&plan, &project, &args.targets)?;
    let names = forge_build::plan::closure(&plan, &sel.recipes);
    let settings = settings(&args.fetch, false, &project);
    let store = g.open_store(false)?;
    let observer = g.observer();
    let rt = runtime()?;
    let r = rt.block_on(engine::prepare_sources(
        &plan,
        &store,
        &names,
        &settings,
        observer.as_ref(),
    ));
    g.printer.clear();
    r?;
    // The locked .debs of the selected images (an image whose set is not locked yet needs
    // `forge lock` first).
    let mut debs: Vec<&forge_schema::lockfile::LockedDeb> = Vec::new();
    if let Some(lock) = &project.lockfile {
        for name in &sel.images {
            let entry = lock.images.get(name).ok_or_else(|| {
                anyhow!("image `{name}` has no locked package set; run `forge lock`")
            })?;
            debs.extend(entry.debs.iter().filter_map(|k| lock.debs.get(k)));
        }
    } else if !sel.images.is_empty() {
        bail!(
            "there is no {}, so the images have no locked package sets; run `forge lock`",
            project.lockfile_display()
        );
    }
    debs.sort_by_key(|d| d.key());
    debs.dedup_by_key(|d| d.key());
    if !debs.is_empty() {
        let requests = forge_image::base::deb_requests(&debs);
        let fetcher = forge_fetch::Fetcher::new(settings.fetch.clone(), observer.progress())?;
        let r = rt.block_on(fetcher.fetch_all(&store, &requests));
        g.printer.clear();
        r?;
    }
    let count: usize = names.iter().map(|n| plan.recipes[n].sources.len()).sum();
    g.printer.status(
        "Fetched",
        &format!(
            "{count} source(s) of {} recipe(s), {} .deb(s) of {} image(s)",
            names.len(),
            debs.len(),
            sel.images.len()
        ),
    );
    if g.printer.json() {
        g.printer.print_json(&json!({
            "sources": names.iter().flat_map(|n| {
                let store = &store;
                plan.recipes[n].sources.iter().map(move |s| {
                    // The file a source is stored as (an image source is several blobs,
                    // listed by its source record instead).
                    let blob = s.sha256.or_else(|| match &s.source.kind {
                        forge_schema::recipe::SourceKind::Url { integrity, .. } => {
                            forge_fetch::stored_blob(store, integrity)
                        }
                        _ => None,
                    });
                    json!({
                        "recipe": n,
                        "name": s.source.name,
                        "pin": s.locked().pin(),
                        "sha256": blob.map(|b| b.to_hex()),
                        "path": blob.map(|b| store.blob_path(&b)),
                    })
                })
            }).collect::<Vec<_>>(),
            "debs": debs.iter().map(|d| json!({
                "package": d.package,
                "version": d.version,
                "sha256": d.sha256.to_hex(),
                "path": store.blob_path(&d.sha256),
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(())
}

/// Hashes one input (`-` is stdin).
fn hash_one(path: &Path) -> std::io::Result<Sha256Digest> {
    if path == Path::new("-") {
        let stdin = std::io::stdin().lock();
        forge_store::fsutil::hash_reader(stdin).map(|(d, _)| d)
    } else {
        forge_store::fsutil::hash_file(path).map(|(d, _)| d)
    }
}

pub fn hash(g: &Globals, args: &HashArgs) -> Result<()> {
    // Files are hashed in parallel, printed in argument order.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(args.files.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<std::io::Result<Sha256Digest>>>> = args
        .files
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(path) = args.files.get(i) else { break };
                    let r = hash_one(path);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    let results: Vec<std::io::Result<Sha256Digest>> = slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(std::io::Error::other("not hashed")))
        })
        .collect();
    let mut failed = false;
    let mut json_out = Vec::new();
    for (path, r) in args.files.iter().zip(results) {
        match r {
            Ok(d) => {
                if g.printer.json() {
                    json_out.push(json!({"path": path, "sha256": d.to_hex()}));
                } else {
                    g.printer.print(&format!("{d}  {}", path.display()));
                }
            }
            Err(e) => {
                failed = true;
                g.printer.error(&format!("{}: {e}", path.display()));
            }
        }
    }
    if g.printer.json() {
        g.printer.print_json(&json!({ "files": json_out }));
    }
    if failed {
        return Err(Reported.into());
    }
    Ok(())
}

pub fn store(g: &Globals, cmd: &StoreCommand) -> Result<()> {
    match cmd {
        StoreCommand::Path { target } => {
            let store = g.open_store(false)?;
            let hex = target.strip_prefix("sha256:").unwrap_or(target);
            let path = if let Ok(d) = hex.parse::<Sha256Digest>() {
                if !store.has_blob(&d) {
                    bail!("blob sha256 {d} is not in the store");
                }
                store.blob_path(&d)
            } else {
                let project = g.project()?;
                let plan = Plan::resolve(&project, None)?;
                let name = plan.target(target)?;
                let hash = plan.recipes[&name].hash;
                match store.output(&hash)? {
                    Some(rec) => store.blob_path(&rec.layer_sha256),
                    None => bail!(
                        "recipe `{name}` (hash {hash}) is not built; run `forge build {name}`"
                    ),
                }
            };
            if g.printer.json() {
                g.printer
                    .print_json(&json!({ "target": target, "path": path }));
            } else {
                g.printer.print(&path.display().to_string());
            }
            Ok(())
        }
        StoreCommand::Verify { repair } => {
            let store = g.open_store(*repair)?;
            let bar = g.printer.total_bar();
            let report = store.verify(*repair, &|n| bar.inc(n))?;
            g.printer.clear();
            for p in &report.problems {
                g.printer.error(&p.to_string());
            }
            if g.printer.json() {
                g.printer.print_json(&json!({
                    "blobs_checked": report.blobs_checked,
                    "bytes_checked": report.bytes_checked,
                    "outputs_checked": report.outputs_checked,
                    "problems": report.problems.iter().map(|p| json!({"path": p.path(), "problem": p.to_string()})).collect::<Vec<_>>(),
                    "temp_entries": report.temp_entries,
                    "repaired": report.repaired,
                }));
            }
            let summary = format!(
                "{} blob(s) ({}) and {} output record(s); {} problem(s){}",
                report.blobs_checked,
                bytes(report.bytes_checked),
                report.outputs_checked,
                report.problems.len(),
                if report.temp_entries > 0 {
                    format!(
                        "; {} leftover temp file(s), ignored (`forge gc` removes them)",
                        report.temp_entries
                    )
                } else {
                    String::new()
                }
            );
            g.printer.status("Verified", &summary);
            if report.repaired {
                g.printer.status(
                    "Repaired",
                    &format!(
                        "removed {} damaged entries; the next build fetches or rebuilds them",
                        report.problems.len()
                    ),
                );
            } else if !report.problems.is_empty() {
                g.printer
                    .warn("run `forge store verify --repair` to remove the damaged entries");
                return Err(Reported.into());
            }
            Ok(())
        }
        StoreCommand::Roots => {
            let store = g.open_store(false)?;
            let roots = store.roots()?;
            if g.printer.json() {
                g.printer.print_json(&json!({
                    "roots": roots.iter().map(|(_, l)| json!({"lockfile": l, "exists": l.is_file()})).collect::<Vec<_>>(),
                }));
            } else {
                for (_, l) in roots {
                    let stale = if l.is_file() {
                        ""
                    } else {
                        "  (gone; `forge gc` will drop it)"
                    };
                    g.printer.print(&format!("{}{stale}", l.display()));
                }
            }
            Ok(())
        }
    }
}

pub fn gc(g: &Globals, args: &GcArgs) -> Result<()> {
    let store = g.open_store(true)?;
    let forge_store::RootScan { keep, live, stale } = store.scan_roots()?;
    let report = store.gc(&keep, args.dry_run)?;
    if !args.dry_run {
        store.remove_roots(&stale.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>())?;
    }
    let verb = if args.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    g.printer.status(
        verb,
        &format!(
            "{} blob(s), {} output record(s), {} temp file(s): {} freed; {} root(s) kept{}",
            report.blobs_removed,
            report.outputs_removed,
            report.temp_removed,
            bytes(report.bytes_freed),
            live.len(),
            if stale.is_empty() {
                String::new()
            } else {
                format!(", {} stale root(s) dropped", stale.len())
            }
        ),
    );
    if g.printer.json() {
        g.printer.print_json(&json!({
            "dry_run": args.dry_run,
            "blobs_removed": report.blobs_removed,
            "outputs_removed": report.outputs_removed,
            "temp_removed": report.temp_removed,
            "bytes_freed": report.bytes_freed,
            "blobs_kept": report.blobs_kept,
            "roots": live,
            "stale_roots": stale.iter().map(|(_, l)| l).collect::<Vec<_>>(),
        }));
    }
    Ok(())
}

pub fn vm(g: &Globals, args: &crate::cli::VmArgs) -> Result<()> {
    use forge_image::vm::{Accel, Forward, VmExit, VmOptions};
    use forge_schema::image::BootMode;
    let as_file = Path::new(&args.image);
    let (disk, format, name, modes) = if as_file.is_file() {
        let format = if args.image.ends_with(".qcow2") {
            "qcow2"
        } else {
            "raw"
        };
        let name = as_file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "forge-vm".into());
        (
            as_file.to_path_buf(),
            format.to_string(),
            name,
            vec![BootMode::Bios, BootMode::Uefi],
        )
    } else {
        let name = args
            .image
            .strip_prefix("image:")
            .unwrap_or(&args.image)
            .to_string();
        let project = g.project()?;
        let image = project.images.get(&name).ok_or_else(|| {
            anyhow!(
                "no image named `{name}` in images/, and no file `{}`",
                args.image
            )
        })?;
        let locked = project
            .lockfile
            .as_ref()
            .and_then(|l| l.images.get(&name))
            .ok_or_else(|| {
                anyhow!("image `{name}` is not built; run `forge build image:{name}`")
            })?;
        let sha = locked.output_sha256.ok_or_else(|| {
            anyhow!("image `{name}` is not built; run `forge build image:{name}`")
        })?;
        let store = g.open_store(false)?;
        if !store.has_blob(&sha) {
            bail!(
                "image `{name}` (sha256 {sha}) is not in the store; run `forge build image:{name}`"
            );
        }
        (
            store.blob_path(&sha),
            locked.format.clone(),
            name,
            image.disk.boot.clone(),
        )
    };
    let boot = match args.boot {
        Some(crate::cli::BootArg::Bios) => BootMode::Bios,
        Some(crate::cli::BootArg::Uefi) => BootMode::Uefi,
        None => modes.first().copied().unwrap_or(BootMode::Bios),
    };
    if !modes.contains(&boot) {
        bail!(
            "image `{name}` does not boot with {}; it boots with {:?}",
            boot.as_str(),
            modes
        );
    }
    let accel = match args.accel {
        Some(crate::cli::AccelArg::Kvm) => Accel::Kvm,
        Some(crate::cli::AccelArg::Tcg) => Accel::Tcg,
        Some(crate::cli::AccelArg::Auto) => Accel::Auto,
        None => match env::var(env::FORGE_VM_ACCEL).as_deref() {
            Some("kvm") => Accel::Kvm,
            Some("tcg") => Accel::Tcg,
            _ => Accel::Auto,
        },
    };
    let forwards = args
        .forwards
        .iter()
        .map(|f| f.parse::<Forward>().map_err(|e| anyhow!(e)))
        .collect::<Result<Vec<_>>>()?;
    let user_data = match &args.user_data {
        Some(p) => {
            Some(std::fs::read(p).with_context(|| format!("cannot read `{}`", p.display()))?)
        }
        None => None,
    };
    let expect = match &args.expect {
        Some(re) => Some(
            regex::Regex::new(re)
                .with_context(|| format!("`{re}` is not a valid regular expression"))?,
        ),
        None => None,
    };
    let timeout = args
        .timeout
        .or(expect.as_ref().map(|_| 300))
        .map(std::time::Duration::from_secs);
    let options = VmOptions {
        disk,
        format,
        boot,
        accel,
        memory_mib: args.memory,
        cpus: args.cpus,
        user_data,
        name: name.clone(),
        forwards,
        expect,
        timeout,
    };
    g.printer.status(
        "Booting",
        &format!("{name} ({}, {})", boot.as_str(), options.disk.display()),
    );
    let mut stdout = std::io::stdout();
    let mut sink = std::io::sink();
    let console: &mut dyn std::io::Write = if g.printer.json() {
        &mut sink
    } else {
        &mut stdout
    };
    match forge_image::vm::run(&options, console)? {
        VmExit::Matched { line, seconds } => {
            g.printer
                .status("Matched", &format!("after {seconds:.1}s: {line}"));
            if g.printer.json() {
                g.printer.print_json(&json!({"image": name, "boot": boot.as_str(), "matched": line, "seconds": seconds}));
            }
            Ok(())
        }
        VmExit::Exited(code) => {
            if code == 0 {
                Ok(())
            } else {
                bail!("the machine exited with status {code}")
            }
        }
    }
}
