//! The commands: resolve arguments against the environment, call the stages, report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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

    fn project(&self) -> Result<Project> {
        let root = Project::discover(&self.start_dir()?)?;
        Ok(Project::load(&root)?)
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
        })
    }

    fn open_store(&self, exclusive: bool) -> Result<Arc<Store>> {
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

fn settings(opts: &FetchOpts, offline: bool) -> BuildSettings {
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
            ..FetchOptions::default()
        },
    }
}

/// Draws progress bars and status lines for a build.
struct CliObserver {
    printer: Printer,
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
        self.printer.status("Fetching", name);
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
        self.printer
            .status("Building", &format!("{name} v{version}"));
    }
    fn finished(&self, _: &str, _: bool, _: f64) {}
    fn note(&self, message: &str) {
        self.printer.status("Blocking", message);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn targets(plan: &Plan, specs: &[String]) -> Result<Vec<String>> {
    if specs.is_empty() {
        return Ok(plan.order.clone());
    }
    specs
        .iter()
        .map(|s| plan.target(s).map_err(anyhow::Error::from))
        .collect()
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

/// Builds targets with progress on the terminal; returns the outcomes and the records by
/// recipe name (what the lockfile needs).
fn build_targets(
    g: &Globals,
    rt: &tokio::runtime::Runtime,
    plan: &Arc<Plan>,
    store: &Arc<Store>,
    targets: &[String],
    settings: &BuildSettings,
) -> Result<(
    Vec<engine::Outcome>,
    BTreeMap<String, forge_store::OutputRecord>,
)> {
    let observer = g.observer();
    let outcomes = rt.block_on(engine::build(plan, store, targets, settings, observer));
    g.printer.clear();
    let outcomes = outcomes?;
    let built = outcomes
        .iter()
        .map(|o| (o.name.clone(), o.record.clone()))
        .collect();
    Ok((outcomes, built))
}

pub fn build(g: &Globals, args: &BuildArgs) -> Result<()> {
    let started = Instant::now();
    let locked = args.locked || args.frozen;
    let offline = args.frozen;
    let project = g.project()?;
    let plan = Arc::new(Plan::resolve(&project, None)?);
    let targets = targets(&plan, &args.targets)?;
    let old = project.lockfile.as_ref();
    let settings = settings(&args.fetch, offline);
    let observer = g.observer();

    if locked {
        // Before any work: the inputs must be exactly the locked ones.
        lock::enforce(old, &lock::desired(&plan, old, &BTreeMap::new(), None))?;
    }
    let store = g.open_store(false)?;
    let rt = runtime()?;

    if args.check {
        let lockfile = old.ok_or(BuildError::CheckUnlocked(
            "lockfile.toml does not exist".into(),
        ))?;
        let results = rt.block_on(check::check(
            &plan, &store, lockfile, &targets, &settings, observer,
        ))?;
        g.printer.clear();
        let mut bad = 0;
        for r in &results {
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
        }
        if g.printer.json() {
            g.printer.print_json(&json!({
                "check": results.iter().map(|r| json!({
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
                })).collect::<Vec<_>>(),
            }));
        }
        if bad > 0 {
            return Err(Reported.into());
        }
        return Ok(());
    }

    let (outcomes, built) = build_targets(g, &rt, &plan, &store, &targets, &settings)?;

    let lock_path = project.lockfile_path();
    let mut updated = false;
    if locked {
        lock::enforce(old, &lock::desired(&plan, old, &built, None))?;
        store.add_root(&lock_path)?;
    } else {
        updated = lock::write(&store, &lock_path, |current| {
            lock::desired(&plan, current, &built, None)
        })?;
        if updated {
            g.printer.status("Updated", "lockfile.toml");
        }
    }
    let fresh = outcomes.iter().filter(|o| !o.cached).count();
    g.printer.status(
        "Finished",
        &format!(
            "{} recipe(s), {fresh} built, {} cached, in {:.2}s",
            outcomes.len(),
            outcomes.len() - fresh,
            started.elapsed().as_secs_f64()
        ),
    );
    if g.printer.json() {
        g.printer.print_json(&json!({
            "targets": outcomes.iter().map(|o| outcome_json(&plan, o)).collect::<Vec<_>>(),
            "lockfile_updated": updated,
        }));
    }
    Ok(())
}

pub fn lock_cmd(g: &Globals, args: &LockArgs) -> Result<()> {
    let started = Instant::now();
    let project = g.project()?;
    let plan = Arc::new(Plan::resolve(&project, args.source_date_epoch)?);
    let only: Option<Vec<String>> = if args.update.is_empty() {
        None
    } else {
        Some(
            args.update
                .iter()
                .map(|n| plan.target(n).map_err(anyhow::Error::from))
                .collect::<Result<_>>()?,
        )
    };
    let targets: Vec<String> = match &only {
        Some(names) => forge_build::plan::dependents(&plan, names)
            .into_iter()
            .collect(),
        None => plan.order.clone(),
    };
    let settings = settings(&args.fetch, false);
    let store = g.open_store(false)?;
    let (outcomes, built) = build_targets(g, &runtime()?, &plan, &store, &targets, &settings)?;
    let updated = lock::write(&store, &project.lockfile_path(), |current| {
        lock::desired(&plan, current, &built, only.as_deref())
    })?;
    g.printer.status(
        if updated { "Locked" } else { "Unchanged" },
        &format!(
            "{} recipe(s) in lockfile.toml ({:.2}s)",
            plan.recipes.len(),
            started.elapsed().as_secs_f64()
        ),
    );
    if g.printer.json() {
        g.printer.print_json(&json!({
            "lockfile": project.lockfile_path(),
            "updated": updated,
            "targets": outcomes.iter().map(|o| outcome_json(&plan, o)).collect::<Vec<_>>(),
        }));
    }
    Ok(())
}

pub fn fetch(g: &Globals, args: &FetchArgs) -> Result<()> {
    let project = g.project()?;
    let plan = Arc::new(Plan::resolve(&project, None)?);
    let targets = targets(&plan, &args.targets)?;
    let names = forge_build::plan::closure(&plan, &targets);
    let settings = settings(&args.fetch, false);
    let store = g.open_store(false)?;
    let observer = g.observer();
    let r = runtime()?.block_on(engine::prepare_sources(
        &plan,
        &store,
        &names,
        &settings,
        observer.as_ref(),
    ));
    g.printer.clear();
    r?;
    let count: usize = names.iter().map(|n| plan.recipes[n].sources.len()).sum();
    g.printer.status(
        "Fetched",
        &format!("{count} source(s) of {} recipe(s)", names.len()),
    );
    if g.printer.json() {
        g.printer.print_json(&json!({
            "sources": names.iter().flat_map(|n| {
                let store = &store;
                plan.recipes[n].sources.iter().map(move |s| json!({
                    "recipe": n,
                    "name": s.source.name,
                    "sha256": s.sha256.to_hex(),
                    "path": store.blob_path(&s.sha256),
                }))
            }).collect::<Vec<_>>(),
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
