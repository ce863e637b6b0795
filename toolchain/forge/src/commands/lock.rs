//! `forge lock`: pin every input in the lockfile (recipe hashes and sources, image
//! package sets, tool versions, image hashes) without building; `--locked` checks it is
//! current.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use forge_build::plan::Plan;
use forge_image::run::Resolve;
use forge_schema::image::Image;
use serde_json::json;

use super::common::lock_changes;
use crate::cli::LockArgs;
use crate::progress::CliObserver;
use crate::settings::{FetchSettings, Globals};

pub fn run(g: &Globals, args: &LockArgs) -> Result<()> {
    let started = Instant::now();
    let project = g.project(None)?;
    let defs = project.definitions()?;
    let plan = Arc::new(Plan::resolve(&project, args.source_date_epoch)?);
    let mut update_recipes = Vec::new();
    let mut update_images = Vec::new();
    for name in &args.update {
        let name = name.strip_prefix("image:").unwrap_or(name);
        if defs.images.contains_key(name) && !plan.recipes.contains_key(name) {
            update_images.push(name.to_string());
        } else {
            update_recipes.push(plan.target(name)?);
        }
    }
    let update = (!args.update.is_empty()).then_some(update_recipes.as_slice());
    let fetch = FetchSettings::resolve(&args.fetch, false, &g.env);
    let store = g.open_store(false)?;
    let rt = g.runtime()?;
    let resolve = if args.locked {
        Resolve::Locked
    } else if args.upgrade {
        Resolve::Fresh
    } else {
        Resolve::Reuse
    };
    // The image stage starts from the lockfile without the sets of the images named by
    // `--update`, so they are resolved again.
    let mut base = project
        .current_lockfile()
        .cloned()
        .unwrap_or_else(|| plan.empty_lockfile());
    base.images.retain(|n, _| !update_images.contains(n));
    // Every image's entry is recomputed (its hash depends on the recipes); only missing,
    // changed or named package sets (all of them with --upgrade) are resolved.
    let images = if defs.images.is_empty() {
        None
    } else {
        let list: Vec<&Image> = defs.images.values().collect();
        let r = rt.block_on(forge_image::run::lock_images(
            &plan,
            &list,
            &base,
            &store,
            &fetch.images(defs, resolve),
            CliObserver::shared(&g.printer),
        ));
        g.printer.clear();
        Some(r?)
    };
    let changes = lock_changes(&plan, defs, &[], images.as_ref(), update);
    let written = if args.locked {
        project.check_lockfile(&changes)?;
        project.register_root(&store)?;
        None
    } else {
        Some(project.write_lockfile(&store, &changes)?)
    };
    let updated = written.as_ref().is_some_and(|w| w.changed);
    g.printer.status(
        if updated { "Locked" } else { "Unchanged" },
        &format!(
            "{} recipe(s) and {} image(s) in {} ({:.2}s)",
            plan.recipes.len(),
            defs.images.len(),
            project.lockfile_display(),
            started.elapsed().as_secs_f64()
        ),
    );
    if g.printer.json() {
        let lock = written
            .map(|w| w.after)
            .or_else(|| project.current_lockfile().cloned());
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
            "lockfile": project.lockfile_path(),
            "updated": updated,
            "recipes": recipes,
            "images": images,
        }));
    }
    Ok(())
}
