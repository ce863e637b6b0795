//! `forge build [TARGET...]`: build recipes and images, record their outputs in the
//! lockfile (or, with `--locked`, check it needs no change), copy images to `-o`;
//! `--check` rebuilds in a fresh store and compares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use forge_build::engine::{self, BuildSettings};
use forge_build::plan::Plan;
use forge_image::build::ImageOutcome;
use forge_image::run::{ImagesResult, Resolve};
use forge_project::{Definitions, LockState, Locked, Project};
use forge_schema::image::Image;
use forge_store::Store;
use serde_json::json;

use super::common::{Selection, lock_changes, select};
use crate::cli::BuildArgs;
use crate::exit::Exit;
use crate::printer::bytes;
use crate::progress::CliObserver;
use crate::settings::{FetchSettings, Globals};

/// What a build runs with.
struct Ctx<'a> {
    g: &'a Globals,
    rt: &'a tokio::runtime::Runtime,
    plan: &'a Arc<Plan>,
    defs: &'a Definitions,
    store: &'a Arc<Store>,
    fetch: &'a FetchSettings,
    settings: &'a BuildSettings,
}

/// Everything a build made.
struct Built {
    recipes: Vec<engine::Outcome>,
    images: Option<ImagesResult>,
}

/// What both a build and a check resolve first.
struct Prepared {
    plan: Arc<Plan>,
    sel: Selection,
    fetch: FetchSettings,
    settings: BuildSettings,
    store: Arc<Store>,
    rt: tokio::runtime::Runtime,
}

impl Prepared {
    fn new<S: LockState>(g: &Globals, args: &BuildArgs, project: &Project<S>) -> Result<Self> {
        let defs = project.definitions()?;
        let plan = Arc::new(Plan::resolve(project, None)?);
        let sel = select(&plan, defs, &args.targets)?;
        let fetch = FetchSettings::resolve(&args.fetch, args.frozen, &g.env);
        let settings = fetch.build(Some(defs));
        if args.locked || args.frozen {
            // Before any work: the recipes' inputs must be exactly the locked ones.
            project.check_lockfile(&lock_changes(&plan, defs, &[], None, None))?;
        }
        Ok(Self {
            plan,
            sel,
            fetch,
            settings,
            store: g.open_store(false)?,
            rt: g.runtime()?,
        })
    }

    fn cx<'a>(&'a self, g: &'a Globals, defs: &'a Definitions) -> Ctx<'a> {
        Ctx {
            g,
            rt: &self.rt,
            plan: &self.plan,
            defs,
            store: &self.store,
            fetch: &self.fetch,
            settings: &self.settings,
        }
    }
}

pub fn run(g: &Globals, args: &BuildArgs) -> Result<()> {
    let started = Instant::now();
    let locked = args.locked || args.frozen;
    let project = g.project(None)?;
    if args.check {
        let project =
            project.locked("`forge build --check` compares with it; run `forge lock` first")?;
        let p = Prepared::new(g, args, &project)?;
        return check(&p.cx(g, project.definitions()?), &project, &p.sel);
    }
    let p = Prepared::new(g, args, &project)?;
    let defs = project.definitions()?;
    let cx = p.cx(g, defs);
    let (plan, sel, store) = (&p.plan, &p.sel, &p.store);
    let resolve = if locked {
        Resolve::Locked
    } else {
        Resolve::Reuse
    };
    let built = build(&cx, &project, sel, resolve)?;
    let changes = lock_changes(plan, defs, &built.recipes, built.images.as_ref(), None);
    let mut updated = false;
    if locked {
        project.check_lockfile(&changes)?;
        project.register_root(store)?;
    } else {
        updated = project.write_lockfile(store, &changes)?.changed;
        if updated {
            g.printer.status("Updated", &project.lockfile_display());
        }
    }
    let images: &[ImageOutcome] = built.images.as_ref().map_or(&[], |i| &i.outcomes);
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
            .map(|o| outcome_json(plan, o))
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

/// Builds recipes and images with progress on the terminal.
fn build<S: LockState>(
    cx: &Ctx<'_>,
    project: &Project<S>,
    sel: &Selection,
    resolve: Resolve,
) -> Result<Built> {
    let observer = CliObserver::shared(&cx.g.printer);
    let recipes = cx.rt.block_on(engine::build(
        cx.plan,
        cx.store,
        &sel.recipes,
        cx.settings,
        observer.clone(),
    ));
    cx.g.printer.clear();
    let recipes = recipes?;
    let images = if sel.images.is_empty() {
        None
    } else {
        let list: Vec<&Image> = sel.images.iter().map(|n| &cx.defs.images[n]).collect();
        let empty = cx.plan.empty_lockfile();
        let lock = project.current_lockfile().unwrap_or(&empty);
        let options = cx.fetch.images(cx.defs, resolve);
        let r = cx.rt.block_on(forge_image::run::build_images(
            cx.plan, &list, lock, cx.store, &options, observer,
        ));
        cx.g.printer.clear();
        Some(r?)
    };
    Ok(Built { recipes, images })
}

/// Copies built images to `-o PATH`: a file for one image, a directory for several.
fn copy_outputs(output: &Path, images: &[ImageOutcome]) -> Result<BTreeMap<String, PathBuf>> {
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
        forge_store::fsutil::copy_atomic(&o.path, &dest, Some(0o644))
            .with_context(|| format!("cannot write `{}`", dest.display()))?;
        out.insert(o.name.clone(), dest);
    }
    Ok(out)
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

fn image_json(o: &ImageOutcome, copied: Option<&Path>) -> serde_json::Value {
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

/// `forge build --check`: rebuilds the selection in a fresh store and compares it with
/// the lockfile, naming the first differing file.
fn check(cx: &Ctx<'_>, project: &Project<Locked>, sel: &Selection) -> Result<()> {
    let printer = &cx.g.printer;
    let lockfile = project.lockfile();
    let observer = CliObserver::shared(printer);
    let mut bad = 0;
    let mut report = Vec::new();
    if !sel.recipes.is_empty() {
        let results = cx.rt.block_on(forge_build::check::check(
            cx.plan,
            cx.store,
            lockfile,
            &sel.recipes,
            cx.settings,
            observer.clone(),
        ));
        printer.clear();
        for r in results? {
            if r.matches() {
                printer.status(
                    "Checked",
                    &format!("{} (layer sha256 {} reproduced)", r.name, r.locked),
                );
            } else {
                bad += 1;
                let detail = match &r.difference {
                    Some(d) => format!("first difference: {d}"),
                    None => "the locked layer is not in the store to compare with".to_string(),
                };
                printer.error(&format!(
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
        let list: Vec<&Image> = sel.images.iter().map(|n| &cx.defs.images[n]).collect();
        let options = cx.fetch.images(cx.defs, Resolve::Locked);
        let results = cx.rt.block_on(forge_image::check::check(
            cx.plan, &list, lockfile, cx.store, &options, observer,
        ));
        printer.clear();
        for r in results? {
            if r.matches() {
                printer.status(
                    "Checked",
                    &format!("image {} (sha256 {} reproduced)", r.name, r.locked),
                );
            } else {
                bad += 1;
                printer.error(&format!(
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
    if printer.json() {
        printer.print_json(&json!({ "check": report }));
    }
    if bad > 0 {
        return Err(Exit::FAILURE.into());
    }
    Ok(())
}
