//! `forge publish [IMAGE...] [--prune]`: upload built images to SOS and register them as
//! Exoscale templates in every zone of `[publish] zones`, recording each template in the
//! lockfile as soon as it exists.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Result, bail};
use forge_project::lock::live_templates;
use forge_project::{LockChanges, TemplateChange};
use forge_publish::{ImageOutput, Progress};
use forge_schema::lockfile::template_key;
use indicatif::ProgressBar;
use serde_json::json;

use crate::cli::PublishArgs;
use crate::printer::Printer;
use crate::settings::Globals;
use crate::target::{cloud, locked_project};

/// Upload bars by image, and event lines.
struct Bars {
    printer: Printer,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Progress for Bars {
    fn bytes(&self, image: &str, done: u64, total: u64) {
        if let Ok(mut bars) = self.bars.lock() {
            let bar = bars
                .entry(image.to_string())
                .or_insert_with(|| self.printer.transfer_bar(image, Some(total)));
            bar.set_position(done);
            if done >= total {
                bar.finish_and_clear();
            }
        }
    }

    fn line(&self, text: &str) {
        if !self.printer.json() {
            self.printer.status("Publish", text);
        }
    }
}

pub fn run(g: &Globals, args: &PublishArgs) -> Result<()> {
    let started = Instant::now();
    let project = locked_project(g, args.lock.as_deref())?;
    let platform = project.platform()?;
    let (cloud, _) = cloud(g, &project)?;
    let store = g.open_store(false)?;
    let names: Vec<String> = if args.images.is_empty() {
        project.lockfile().images.keys().cloned().collect()
    } else {
        args.images.clone()
    };
    if names.is_empty() {
        bail!(
            "{} locks no image: run `forge build images` first",
            project.lockfile_display()
        );
    }
    let mut images = Vec::new();
    for name in &names {
        let (out, path) = project.image_disk(&store, name)?;
        images.push(ImageOutput {
            name: name.clone(),
            output_sha256: out.sha256,
            path,
            boot_modes: out.boot_modes,
        });
    }
    let progress = Bars {
        printer: g.printer.clone(),
        bars: Mutex::new(BTreeMap::new()),
    };
    let rt = g.runtime()?;
    let mut results = Vec::new();
    for zone in &platform.publish.zones {
        for image in &images {
            let locked = project
                .lockfile()
                .templates
                .get(&template_key(&image.name, zone));
            let p = rt.block_on(forge_publish::publish_one(
                &cloud.config,
                &cloud.options,
                platform,
                zone,
                image,
                locked,
                &progress,
            ))?;
            // Recorded at once: an interrupted publish keeps what it registered.
            project.write_lockfile(
                &store,
                &LockChanges {
                    templates: vec![TemplateChange::Record(p.template.clone())],
                    ..LockChanges::default()
                },
            )?;
            if !g.printer.json() {
                g.printer.status(
                    "Published",
                    &format!(
                        "{} in {zone}: template {} {} ({})",
                        image.name,
                        p.template.name,
                        p.template.id,
                        p.outcome.describe()
                    ),
                );
            }
            results.push(json!({
                "image": image.name, "zone": zone, "id": p.template.id, "name": p.template.name,
                "outcome": p.outcome.key(),
            }));
        }
    }
    let mut pruned = Vec::new();
    if args.prune {
        // The lockfile keeps the templates of its images' current outputs; the cloud then
        // loses this platform's templates the lockfile no longer has, in every zone it
        // published to or had templates in.
        let written = project.write_lockfile(
            &store,
            &LockChanges {
                templates: vec![TemplateChange::PruneStale],
                ..LockChanges::default()
            },
        )?;
        let keep: Vec<String> = live_templates(&written.after)
            .map(|t| t.id.clone())
            .collect();
        let mut zones: Vec<String> = platform.publish.zones.clone();
        zones.extend(
            written
                .before
                .iter()
                .flat_map(|l| l.templates.values())
                .map(|t| t.zone.clone()),
        );
        zones.sort();
        zones.dedup();
        for zone in zones {
            let gone = rt.block_on(forge_publish::prune(
                &cloud.config,
                &cloud.options,
                platform,
                &zone,
                &keep,
                &progress,
            ))?;
            pruned.extend(gone.into_iter().map(|n| json!({ "zone": zone, "name": n })));
        }
        if !g.printer.json() {
            g.printer.status(
                "Pruned",
                &format!(
                    "{} template(s) the lockfile no longer references",
                    pruned.len()
                ),
            );
        }
    }
    if g.printer.json() {
        g.printer.print_json(&json!({
            "templates": results,
            "pruned": pruned,
            "seconds": started.elapsed().as_secs_f64(),
        }));
    }
    Ok(())
}
