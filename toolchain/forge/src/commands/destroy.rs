//! `forge destroy [--stage STAGE]`: remove the cloud resources of a stage and of every
//! later stage, latest first (the default, base, removes them all). Asks for the platform
//! name on a terminal; `--yes` otherwise. Vault's data cannot be recreated, so the Vault
//! stages are not destroyed.

use std::io::IsTerminal as _;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use forge_deploy::{ApplyOptions, Purpose, Stage};
use serde_json::json;

use crate::cli::DestroyArgs;
use crate::settings::{Globals, apply_jobs};
use crate::target::{StageDone, cloud, finish, locked_project, reporter, stage_request};

pub fn run(g: &Globals, args: &DestroyArgs) -> Result<()> {
    let Some(stage) = args.target.stage.cloud() else {
        bail!(
            "forge does not destroy Vault or its configuration (its data cannot be recreated); destroy the base stage to remove the servers, or disable mounts by hand"
        );
    };
    // A stage goes with every later stage, which uses its resources: latest first.
    let stages: Vec<Stage> = Stage::ALL
        .into_iter()
        .rev()
        .filter(|s| *s >= stage)
        .collect();
    let started = Instant::now();
    let project = locked_project(g, args.target.lock.as_deref())?;
    let platform = project.platform()?;
    let (_, client) = cloud(g, &project)?;
    let rt = g.runtime()?;
    let mut plans = Vec::new();
    for s in &stages {
        plans.push(rt.block_on(forge_deploy::destroy_plan(&client, platform, *s))?);
    }
    let count: usize = plans.iter().map(|p| p.changes.len()).sum();
    if count == 0 {
        g.printer.status(
            "Nothing",
            &format!(
                "to destroy: platform {} has no resources of stage {} in {}",
                platform.name,
                names(&stages),
                platform.zone
            ),
        );
        if g.printer.json() {
            g.printer
                .print_json(&json!({ "destroyed": 0, "api-calls": client.stats().total() }));
        }
        return Ok(());
    }
    if !args.yes {
        if g.printer.json() || !std::io::stdin().is_terminal() {
            bail!(
                "refusing to destroy {count} resource(s) of platform {} (stage {}) without --yes",
                platform.name,
                names(&stages)
            );
        }
        for plan in &plans {
            g.printer.eprintln(plan.render().trim_end());
        }
        g.printer.eprintln(&format!(
            "Type the platform name ({}) to destroy all of it:",
            platform.name
        ));
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .context("cannot read the answer")?;
        if answer.trim() != platform.name {
            bail!("not confirmed: nothing was destroyed");
        }
    }
    let opts = ApplyOptions {
        jobs: apply_jobs(args.jobs),
        max_rounds: args.max_rounds,
        report: reporter(&g.printer),
    };
    for s in stages {
        let (req, _) = stage_request(g, &project, &args.target, s, Purpose::Destroy)?;
        let report = rt.block_on(forge_deploy::apply(&client, &req, true, &opts))?;
        let done = StageDone {
            stage: s,
            report,
            cluster: None,
        };
        finish(g, "Destroyed", platform, &done, &client, started);
    }
    Ok(())
}

fn names(stages: &[Stage]) -> String {
    stages
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(", ")
}
