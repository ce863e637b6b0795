//! `forge plan`, `forge deploy`, `forge destroy`: the CLI side of the deploy stage.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use forge_deploy::{ApplyOptions, BaseRequest, Reporter};
use forge_exoscale::{Client, ClientOptions, Config};
use forge_schema::lockfile::{Lockfile, template_key};
use forge_schema::platform::{PLATFORM_FILE, Platform};
use forge_schema::{Sha256Digest, SourceFile};
use serde_json::json;

use crate::cli::{DeployArgs, DestroyArgs, PlanArgs, StageArg};
use crate::commands::{Globals, runtime};

/// Exit code of `plan --detailed-exitcode` when there are changes (as Terraform).
pub const EXIT_CHANGES: u8 = 2;

/// An exit code chosen by a command, after it printed what it had to say.
#[derive(Debug)]
pub struct ExitWith(pub u8);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

/// What the base stage's inputs are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Plan,
    Deploy,
    Destroy,
}

/// platform.toml, the lockfile and the API client of a project.
pub(crate) struct Target {
    pub root: PathBuf,
    pub platform: Platform,
    pub lock: Lockfile,
    pub lock_path: PathBuf,
    pub lock_label: String,
    pub config: Config,
}

/// The project's platform.toml, validated.
pub(crate) fn load_platform(root: &Path) -> Result<Platform> {
    let platform_path = root.join(PLATFORM_FILE);
    if !platform_path.is_file() {
        bail!(
            "{} not found: describe the platform there (see docs/deploy.md and docs/vault.md; the repository's platform.toml is an example)",
            platform_path.display()
        );
    }
    Ok(Platform::parse(&read_toml(&platform_path, root)?)
        .map_err(forge_build::BuildError::Diagnostics)?)
}

pub(crate) fn read_toml(path: &Path, root: &Path) -> Result<SourceFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string();
    Ok(SourceFile::new(name, text))
}

impl Target {
    pub fn load(g: &Globals, lock: Option<&Path>) -> Result<Self> {
        let project = g.project()?;
        let root = project.root.clone();
        let platform = load_platform(&root)?;
        let lock_path = match lock {
            Some(p) => p.to_path_buf(),
            None => project.lockfile_path(),
        };
        let lock_file = read_toml(&lock_path, &root)?;
        let lock = Lockfile::parse(&lock_file).map_err(forge_build::BuildError::Diagnostics)?;
        let digest = Sha256Digest::of(lock_file.text.as_bytes()).to_hex();
        let lock_label = format!("sha256-{}", &digest[..12]);
        if let Some(z) = std::env::var("EXOSCALE_ZONE")
            .ok()
            .filter(|z| !z.is_empty())
            && z != platform.zone
        {
            bail!(
                "EXOSCALE_ZONE is {z} but platform.toml deploys to {}: unset EXOSCALE_ZONE or change [platform] zone",
                platform.zone
            );
        }
        let config = Config::from_env(Some(&platform.zone))?;
        Ok(Self {
            root,
            platform,
            lock,
            lock_path,
            lock_label,
            config,
        })
    }

    pub fn client(&self, zone: &str) -> Result<Client> {
        Ok(Client::for_zone(
            &self.config,
            zone,
            ClientOptions::from_env(),
        )?)
    }

    /// The base stage's inputs. A plan works before `forge publish` (the template shows as
    /// unknown, with a warning); a deploy needs the template; a destroy does not.
    pub fn base_request(&self, g: &Globals, mode: Mode) -> Result<BaseRequest> {
        let p = &self.platform;
        let vault_template = match mode {
            Mode::Destroy => None,
            Mode::Deploy => Some(self.template(&p.vault.image)?),
            Mode::Plan => match self.template(&p.vault.image) {
                Ok(t) => Some(t),
                Err(e) => {
                    g.printer
                        .warn(&format!("{e}; the plan shows the template as unknown"));
                    None
                }
            },
        };
        let ssh_public_key = match &p.ssh_public_key {
            Some(rel) => {
                let path = self.root.join(rel);
                Some(std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "cannot read the SSH public key {} (platform.toml ssh-public-key)",
                        path.display()
                    )
                })?)
            }
            None => None,
        };
        Ok(BaseRequest {
            platform: p.clone(),
            vault_template,
            ssh_public_key,
            lockfile_label: self.lock_label.clone(),
        })
    }

    /// The template id of `image` in the platform's zone, checked against the image's
    /// locked output.
    fn template(&self, image: &str) -> Result<String> {
        let zone = &self.platform.zone;
        let t = self.lock.templates.get(&template_key(image, zone)).ok_or_else(|| {
            anyhow!(
                "{}: image `{image}` has no template in {zone}: run `forge build images` and `forge publish`",
                self.lock_path.display()
            )
        })?;
        if let Some(out) = self.lock.images.get(image).and_then(|i| i.output_sha256)
            && out != t.output_sha256
        {
            bail!(
                "{}: the template of `{image}` in {zone} ({}) was registered from output {}, but the image's locked output is {out}: run `forge publish`",
                self.lock_path.display(),
                t.id,
                t.output_sha256
            );
        }
        Ok(t.id.clone())
    }
}

/// Progress lines of an apply on stderr: hidden by `-q` and `--json`; failures that a
/// later round may still fix show as warnings.
fn reporter(g: &Globals) -> Reporter {
    let printer = g.printer.clone();
    Arc::new(move |line: &str| {
        if printer.json() || printer.verbosity() == crate::printer::Verbosity::Quiet {
            return;
        }
        match line.strip_prefix("! ") {
            Some(failure) => printer.warn(failure),
            None => printer.eprintln(line),
        }
    })
}

pub fn plan(g: &Globals, args: &PlanArgs) -> Result<()> {
    if let Some(lifecycle) = args.target.stage.vault() {
        return crate::vault::plan(g, args, lifecycle);
    }
    let started = Instant::now();
    let t = Target::load(g, args.target.lock.as_deref())?;
    let client = t.client(&t.platform.zone)?;
    let req = t.base_request(g, Mode::Plan)?;
    let plan = runtime()?.block_on(forge_deploy::plan(&client, &req))?;
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
    if args.detailed_exitcode && !plan.is_empty() {
        return Err(ExitWith(EXIT_CHANGES).into());
    }
    Ok(())
}

fn apply_options(g: &Globals, jobs: Option<usize>, max_rounds: u32) -> ApplyOptions {
    ApplyOptions {
        jobs: jobs.unwrap_or(4).clamp(1, 32),
        max_rounds,
        report: reporter(g),
    }
}

pub fn deploy(g: &Globals, args: &DeployArgs) -> Result<()> {
    if let Some(lifecycle) = args.target.stage.vault() {
        return crate::vault::deploy(g, args, lifecycle);
    }
    let started = Instant::now();
    let t = Target::load(g, args.target.lock.as_deref())?;
    let client = t.client(&t.platform.zone)?;
    let req = t.base_request(g, Mode::Deploy)?;
    let opts = apply_options(g, args.jobs, args.max_rounds);
    let report = runtime()?.block_on(forge_deploy::apply(&client, &req, false, &opts))?;
    finish(g, "Deployed", &t, &report, &client, started);
    Ok(())
}

pub fn destroy(g: &Globals, args: &DestroyArgs) -> Result<()> {
    if args.target.stage != StageArg::Base {
        bail!(
            "forge does not destroy Vault or its configuration (its data cannot be recreated); destroy the base stage to remove the servers, or disable mounts by hand"
        );
    }
    let started = Instant::now();
    let t = Target::load(g, args.target.lock.as_deref())?;
    let client = t.client(&t.platform.zone)?;
    let rt = runtime()?;
    let plan = rt.block_on(forge_deploy::destroy_plan(&client, &t.platform))?;
    if plan.is_empty() {
        g.printer.status(
            "Nothing",
            &format!(
                "to destroy: platform {} has no resources in {}",
                t.platform.name, t.platform.zone
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
                t.platform.name
            );
        }
        g.printer.eprintln(plan.render().trim_end());
        g.printer.eprintln(&format!(
            "Type the platform name ({}) to destroy all of it:",
            t.platform.name
        ));
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .context("cannot read the answer")?;
        if answer.trim() != t.platform.name {
            bail!("not confirmed: nothing was destroyed");
        }
    }
    let req = t.base_request(g, Mode::Destroy)?;
    let opts = apply_options(g, args.jobs, args.max_rounds);
    let report = rt.block_on(forge_deploy::apply(&client, &req, true, &opts))?;
    finish(g, "Destroyed", &t, &report, &client, started);
    Ok(())
}

fn finish(
    g: &Globals,
    verb: &str,
    t: &Target,
    report: &forge_deploy::ApplyReport,
    client: &Client,
    started: Instant,
) {
    let calls = client.stats().snapshot();
    let total: u64 = calls.values().sum();
    if g.printer.json() {
        g.printer.print_json(&json!({
            "platform": t.platform.name,
            "zone": t.platform.zone,
            "rounds": report.rounds,
            "done": report.done,
            "recovered": report.recovered,
            "api-calls": total,
            "api-calls-by-endpoint": calls,
            "seconds": started.elapsed().as_secs_f64(),
        }));
    } else {
        let done: Vec<String> = report
            .done
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        let done = if done.is_empty() {
            "no changes".to_string()
        } else {
            done.join(", ")
        };
        g.printer.status(
            verb,
            &format!(
                "platform {} in {}: {done} in {:.1}s ({} round(s), {total} API calls)",
                t.platform.name,
                t.platform.zone,
                started.elapsed().as_secs_f64(),
                report.rounds
            ),
        );
    }
}
