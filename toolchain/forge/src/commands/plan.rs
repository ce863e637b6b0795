//! `forge plan [--stage STAGE]`: what `forge deploy` would change, Terraform style;
//! `--detailed-exitcode` exits 2 when there are changes.

use std::time::Instant;

use anyhow::Result;
use forge_deploy::{Purpose, Stage};
use forge_vault::stage;
use serde_json::json;

use crate::cli::{PlanArgs, StageArg};
use crate::exit::Exit;
use crate::settings::Globals;
use crate::target::{VaultTarget, cloud, locked_project, stage_request, vault_json};

pub fn run(g: &Globals, args: &PlanArgs) -> Result<()> {
    let started = Instant::now();
    let changes = match (args.target.stage.cloud(), args.target.stage.vault()) {
        (Some(stage), _) => cloud_stage(g, args, stage, started)?,
        (None, lifecycle) => vault(g, args, lifecycle.unwrap_or(true), started)?,
    };
    if args.detailed_exitcode && changes {
        return Err(Exit::CHANGES.into());
    }
    Ok(())
}

/// A cloud stage's plan; whether it has changes.
fn cloud_stage(g: &Globals, args: &PlanArgs, stage: Stage, started: Instant) -> Result<bool> {
    let project = locked_project(g, args.target.lock.as_deref())?;
    let (_, client) = cloud(g, &project)?;
    let (req, warnings) = stage_request(g, &project, &args.target, stage, Purpose::Plan)?;
    for w in &warnings {
        g.printer.warn(w);
    }
    let plan = g.runtime()?.block_on(forge_deploy::plan(&client, &req))?;
    let cluster = match stage {
        Stage::Etcd => crate::cluster::findings(g, &client, &req.platform)?,
        Stage::Base => None,
    };
    if g.printer.json() {
        g.printer.print_json(&json!({
            "cluster": cluster,
            "stage": plan.stage,
            "platform": plan.platform,
            "zone": plan.zone,
            "summary": plan.summary(),
            "changes": plan.changes,
            "api-calls": client.stats().total(),
            "seconds": started.elapsed().as_secs_f64(),
        }));
    } else {
        g.printer.print(plan.render().trim_end());
        match (stage, &cluster) {
            (Stage::Etcd, None) => g.printer.warn(crate::cluster::NOT_CHECKED),
            (_, Some(f)) if !f.is_empty() => {
                g.printer.print("\nThe etcd cluster differs from its pool:");
                for l in f {
                    g.printer.print(&format!("  ! {l}"));
                }
            }
            _ => {}
        }
    }
    let drift = cluster.as_ref().is_some_and(|f| !f.is_empty());
    Ok(!plan.is_empty() || drift)
}

/// The Vault stages' plan (they need no lockfile, but `--lock` must name one).
fn vault(g: &Globals, args: &PlanArgs, lifecycle: bool, started: Instant) -> Result<bool> {
    let project = g.project(args.target.lock.as_deref())?;
    let target = VaultTarget::load(g, &project, &args.target)?;
    let req = target.request(&project)?;
    let out = g.runtime()?.block_on(stage::plan(&req, lifecycle))?;
    let name = StageArg::vault_name(lifecycle);
    if g.printer.json() {
        g.printer.print_json(&vault_json(&out, name, started));
    } else {
        let text = out.render();
        if text.trim().is_empty() {
            g.printer.print(&format!("{name}: no changes."));
        } else {
            g.printer.print(text.trim_end());
        }
    }
    Ok(out.has_changes())
}
