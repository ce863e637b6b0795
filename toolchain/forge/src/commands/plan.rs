//! `forge plan [--stage STAGE]`: what `forge deploy` would change, Terraform style;
//! `--detailed-exitcode` exits 2 when there are changes.

use std::time::Instant;

use anyhow::Result;
use forge_deploy::{BaseRequest, Purpose};
use forge_vault::stage;
use serde_json::json;

use crate::cli::{PlanArgs, StageArg};
use crate::exit::Exit;
use crate::settings::Globals;
use crate::target::{VaultTarget, cloud, locked_project, vault_json};

pub fn run(g: &Globals, args: &PlanArgs) -> Result<()> {
    let started = Instant::now();
    let changes = match args.target.stage.vault() {
        None => base(g, args, started)?,
        Some(lifecycle) => vault(g, args, lifecycle, started)?,
    };
    if args.detailed_exitcode && changes {
        return Err(Exit::CHANGES.into());
    }
    Ok(())
}

/// The base stage's plan; whether it has changes.
fn base(g: &Globals, args: &PlanArgs, started: Instant) -> Result<bool> {
    let project = locked_project(g, args.target.lock.as_deref())?;
    let (_, client) = cloud(g, &project)?;
    let (req, warning) = BaseRequest::from_project(&project, Purpose::Plan)?;
    if let Some(w) = warning {
        g.printer.warn(&w);
    }
    let plan = g.runtime()?.block_on(forge_deploy::plan(&client, &req))?;
    if g.printer.json() {
        g.printer.print_json(&json!({
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
    }
    Ok(!plan.is_empty())
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
