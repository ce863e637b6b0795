//! `forge destroy`: remove every cloud resource of the platform (asks for the platform
//! name on a terminal; `--yes` otherwise). Vault's data cannot be recreated, so the Vault
//! stages are not destroyed.

use std::io::IsTerminal as _;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use forge_deploy::{ApplyOptions, BaseRequest, Purpose};
use serde_json::json;

use crate::cli::{DestroyArgs, StageArg};
use crate::settings::{Globals, apply_jobs};
use crate::target::{cloud, finish, locked_project, reporter};

pub fn run(g: &Globals, args: &DestroyArgs) -> Result<()> {
    if args.target.stage != StageArg::Base {
        bail!(
            "forge does not destroy Vault or its configuration (its data cannot be recreated); destroy the base stage to remove the servers, or disable mounts by hand"
        );
    }
    let started = Instant::now();
    let project = locked_project(g, args.target.lock.as_deref())?;
    let platform = project.platform()?;
    let (_, client) = cloud(g, &project)?;
    let rt = g.runtime()?;
    let plan = rt.block_on(forge_deploy::destroy_plan(&client, platform))?;
    if plan.is_empty() {
        g.printer.status(
            "Nothing",
            &format!(
                "to destroy: platform {} has no resources in {}",
                platform.name, platform.zone
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
                "refusing to destroy {} resource(s) of platform {} without --yes",
                plan.changes.len(),
                platform.name
            );
        }
        g.printer.eprintln(plan.render().trim_end());
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
    let (req, _) = BaseRequest::from_project(&project, Purpose::Destroy)?;
    let opts = ApplyOptions {
        jobs: apply_jobs(args.jobs),
        max_rounds: args.max_rounds,
        report: reporter(&g.printer),
    };
    let report = rt.block_on(forge_deploy::apply(&client, &req, true, &opts))?;
    finish(g, "Destroyed", platform, &report, &client, started);
    Ok(())
}
