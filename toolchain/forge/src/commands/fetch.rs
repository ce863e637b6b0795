//! `forge fetch [TARGET...]`: download the sources of recipes and the locked .debs of
//! images into the store, without building (then build `--offline`).

use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use forge_build::engine;
use forge_build::plan::Plan;
use serde_json::json;

use super::common::select;
use crate::cli::FetchArgs;
use crate::progress::CliObserver;
use crate::settings::{FetchSettings, Globals};

pub fn run(g: &Globals, args: &FetchArgs) -> Result<()> {
    let project = g.project(None)?;
    let defs = project.definitions()?;
    let plan = Arc::new(Plan::resolve(&project, None)?);
    let sel = select(&plan, defs, &args.targets)?;
    let names = forge_build::plan::build_closure(&plan, &sel.recipes);
    let settings = FetchSettings::resolve(&args.fetch, false, &g.env).build(Some(defs));
    let store = g.open_store(false)?;
    let observer = CliObserver::shared(&g.printer);
    let rt = g.runtime()?;
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
    if let Some(lock) = project.current_lockfile() {
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
