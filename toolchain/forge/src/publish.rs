//! `forge publish`: the CLI side of the publish stage.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use forge_exoscale::ClientOptions;
use forge_publish::{ImageOutput, Progress};
use forge_schema::lockfile::template_key;
use indicatif::ProgressBar;
use serde_json::json;

use crate::cli::PublishArgs;
use crate::commands::{Globals, runtime};
use crate::deploy::Target;
use crate::printer::Printer;

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

pub fn publish(g: &Globals, args: &PublishArgs) -> Result<()> {
    let started = Instant::now();
    let t = Target::load(g, args.lock.as_deref())?;
    let store = g.open_store(false)?;
    let names: Vec<String> = if args.images.is_empty() {
        t.lock.images.keys().cloned().collect()
    } else {
        args.images.clone()
    };
    if names.is_empty() {
        bail!(
            "{} locks no image: run `forge build images` first",
            t.lock_path.display()
        );
    }
    let mut images = Vec::new();
    for name in &names {
        let locked = t.lock.images.get(name).ok_or_else(|| {
            let known: Vec<&str> = t.lock.images.keys().map(String::as_str).collect();
            anyhow!(
                "image `{name}` is not in {}: locked images are {}",
                t.lock_path.display(),
                known.join(", ")
            )
        })?;
        let sha = locked.output_sha256.ok_or_else(|| {
            anyhow!(
                "image `{name}` has no recorded output in {}: run `forge build image:{name}`",
                t.lock_path.display()
            )
        })?;
        let path = store.blob_path(&sha);
        if !path.is_file() {
            bail!(
                "the output of image `{name}` (sha256 {sha}) is not in the store: run `forge build image:{name}`"
            );
        }
        images.push(ImageOutput {
            name: name.clone(),
            output_sha256: sha,
            path,
            boot_modes: locked.boot_modes.clone(),
        });
    }
    let progress = Bars {
        printer: g.printer.clone(),
        bars: Mutex::new(BTreeMap::new()),
    };
    let options = ClientOptions::from_env();
    let rt = runtime()?;
    let mut results = Vec::new();
    for zone in &t.platform.publish.zones {
        for image in &images {
            let locked = t.lock.templates.get(&template_key(&image.name, zone));
            let p = rt.block_on(forge_publish::publish_one(
                &t.config,
                &options,
                &t.platform,
                zone,
                image,
                locked,
                &progress,
            ))?;
            // Recorded at once: an interrupted publish keeps what it registered.
            let entry = p.template.clone();
            forge_build::lock::write(&store, &t.lock_path, |cur| {
                let mut l = cur.cloned().unwrap_or_else(|| t.lock.clone());
                l.templates.insert(entry.key(), entry.clone());
                l
            })?;
            let what = p.outcome.describe();
            if !g.printer.json() {
                g.printer.status(
                    "Published",
                    &format!(
                        "{} in {zone}: template {} {} ({what})",
                        image.name, p.template.name, p.template.id
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
        // Keep the templates of the lockfile's current image outputs; drop the rest.
        let current =
            forge_build::project::read_lockfile(&t.lock_path)?.unwrap_or_else(|| t.lock.clone());
        let live: Vec<String> = current
            .templates
            .iter()
            .filter(|(_, tpl)| {
                current.images.get(&tpl.image).and_then(|i| i.output_sha256)
                    == Some(tpl.output_sha256)
            })
            .map(|(k, _)| k.clone())
            .collect();
        forge_build::lock::write(&store, &t.lock_path, |cur| {
            let mut l = cur.cloned().unwrap_or_else(|| current.clone());
            l.templates.retain(|k, _| live.contains(k));
            l
        })?;
        let mut zones: Vec<String> = t.platform.publish.zones.clone();
        zones.extend(current.templates.values().map(|tpl| tpl.zone.clone()));
        zones.sort();
        zones.dedup();
        for zone in zones {
            let keep: Vec<String> = current
                .templates
                .iter()
                .filter(|(k, _)| live.contains(k))
                .map(|(_, tpl)| tpl.id.clone())
                .collect();
            let gone = rt.block_on(forge_publish::prune(
                &t.config,
                &options,
                &t.platform,
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
