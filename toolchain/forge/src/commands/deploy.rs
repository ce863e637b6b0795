//! `forge deploy [--stage STAGE]`: create or update the platform from platform.toml and
//! the lockfile, re-planning after failures until nothing is left to do.

use std::time::Instant;

use anyhow::Result;
use forge_deploy::{ApplyOptions, Purpose, Stage};
use forge_vault::stage;

use crate::cli::{DeployArgs, StageArg};
use crate::printer::Verbosity;
use crate::settings::{Globals, apply_jobs};
use crate::target::{
    StageDone, VaultTarget, cloud, finish, locked_project, reporter, stage_request, vault_json,
};

pub fn run(g: &Globals, args: &DeployArgs) -> Result<()> {
    match (args.target.stage.cloud(), args.target.stage.vault()) {
        (Some(stage), _) => cloud_stage(g, args, stage),
        (None, lifecycle) => vault(g, args, lifecycle.unwrap_or(true)),
    }
}

fn cloud_stage(g: &Globals, args: &DeployArgs, stage: Stage) -> Result<()> {
    let started = Instant::now();
    let project = locked_project(g, args.target.lock.as_deref())?;
    let (_, client) = cloud(g, &project)?;
    let (req, _) = stage_request(g, &project, &args.target, stage, Purpose::Deploy)?;
    let opts = ApplyOptions {
        jobs: apply_jobs(args.jobs),
        max_rounds: args.max_rounds,
        report: reporter(&g.printer),
    };
    let report = g
        .runtime()?
        .block_on(forge_deploy::apply(&client, &req, false, &opts))?;
    // The etcd stage is done when the cluster is its pool, not when the pool exists.
    let cluster = match stage {
        Stage::Etcd => match crate::cluster::identity(g)? {
            Some(id) => Some(crate::cluster::converge(
                g,
                &client,
                &req.platform,
                &id,
                std::time::Duration::from_secs(args.wait_timeout),
            )?),
            None => {
                g.printer.warn(crate::cluster::NOT_CHECKED);
                None
            }
        },
        Stage::Base => None,
    };
    let done = StageDone {
        stage,
        report,
        cluster,
    };
    finish(g, "Deployed", &req.platform, &done, &client, started);
    Ok(())
}

fn vault(g: &Globals, args: &DeployArgs, lifecycle: bool) -> Result<()> {
    let started = Instant::now();
    let project = g.project(args.target.lock.as_deref())?;
    let target = VaultTarget::load(g, &project, &args.target)?;
    let req = target.request(&project)?;
    let printer = g.printer.clone();
    let quiet = printer.json() || printer.verbosity() == Verbosity::Quiet;
    let report = move |line: &str| {
        if !quiet {
            printer.eprintln(line);
        }
    };
    let out = g
        .runtime()?
        .block_on(stage::apply(&req, lifecycle, &report))?;
    for n in &out.notes {
        g.printer.warn(n);
    }
    let name = StageArg::vault_name(lifecycle);
    let changes = out.steps.len() + out.config.as_ref().map_or(0, |c| c.changes.len());
    if g.printer.json() {
        g.printer.print_json(&vault_json(&out, name, started));
    } else {
        g.printer.status(
            "Deployed",
            &format!(
                "{name} of platform {}: {} in {:.1}s ({} Vault reads, {} writes); secrets in {}",
                req.platform.name,
                if changes == 0 {
                    "no changes".to_string()
                } else {
                    format!("{changes} change(s)")
                },
                started.elapsed().as_secs_f64(),
                out.reads,
                out.writes,
                target.secrets.root().display()
            ),
        );
    }
    Ok(())
}
