//! `forge plan|deploy --stage vault|vault-config`: the CLI side of the Vault stages.
//! Resolves the secrets directory, the Vault address, CA and token from flags, the
//! environment and platform.toml, then calls `forge_vault::stage`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use forge_schema::platform::Platform;
use forge_vault::config::ExoscaleCredentials;
use forge_vault::lifecycle::Member;
use forge_vault::stage::{self, Request};
use forge_vault::{Secret, SecretsDir};
use serde_json::json;

use crate::cli::{DeployArgs, PlanArgs, TargetArgs};
use crate::commands::{Globals, runtime};
use crate::deploy::{EXIT_CHANGES, ExitWith, load_platform, read_toml};
use crate::env;

struct Loaded {
    root: PathBuf,
    platform: Platform,
    secrets: SecretsDir,
}

/// `--secrets-dir`, else `FORGE_SECRETS_DIR`, else platform.toml's `[secrets] dir`, else
/// `$XDG_DATA_HOME/forge/secrets/<platform>`.
fn secrets_dir(t: &TargetArgs, root: &std::path::Path, p: &Platform) -> Result<PathBuf> {
    if let Some(d) = &t.secrets_dir {
        return Ok(d.clone());
    }
    if let Some(d) = env::var(env::FORGE_SECRETS_DIR) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = &p.secrets.dir {
        return Ok(root.join(d));
    }
    let data = match env::var(env::XDG_DATA_HOME) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env::var(env::HOME).ok_or_else(|| {
            anyhow!("cannot find a secrets directory: set FORGE_SECRETS_DIR, XDG_DATA_HOME or HOME, or pass --secrets-dir")
        })?)
        .join(".local/share"),
    };
    Ok(data.join("forge/secrets").join(&p.name))
}

fn load(g: &Globals, t: &TargetArgs) -> Result<Loaded> {
    let project = g.project()?;
    let root = project.root.clone();
    let platform = load_platform(&root)?;
    if let Some(lock) = &t.lock {
        // The Vault stages use nothing from the lockfile yet, but a lockfile named on the
        // command line must at least be one.
        let f = read_toml(lock, &root)?;
        forge_schema::lockfile::Lockfile::parse(&f)
            .map_err(forge_build::BuildError::Diagnostics)?;
    }
    let dir = secrets_dir(t, &root, &platform)?;
    let identity = env::var(env::FORGE_AGE_IDENTITY).map(PathBuf::from);
    let secrets = SecretsDir::open(
        &dir,
        platform.secrets.age_recipient.as_deref(),
        identity.as_deref(),
    )?;
    Ok(Loaded {
        root,
        platform,
        secrets,
    })
}

fn request<'a>(l: &'a Loaded) -> Result<Request<'a>> {
    let ca_pem = match env::var(env::VAULT_CACERT) {
        Some(p) => Some(
            std::fs::read_to_string(&p).with_context(|| format!("cannot read VAULT_CACERT {p}"))?,
        ),
        None => None,
    };
    let cloud = forge_exoscale::Config::from_env(Some(&l.platform.zone)).ok();
    let exoscale = cloud.as_ref().map(|c| ExoscaleCredentials {
        key: c.credentials.key.clone(),
        secret: Secret::new(c.credentials.secret()),
    });
    // Without [[vault.member]], the members are the cloud pool's instances.
    let (cloud_members, eip) = if l.platform.vault_cluster.members.is_empty() {
        match &cloud {
            Some(cfg) => {
                let client = forge_exoscale::Client::for_zone(
                    cfg,
                    &l.platform.zone,
                    forge_exoscale::ClientOptions::from_env(),
                )?;
                let hosts = runtime()?.block_on(forge_deploy::vault_hosts(&client, &l.platform))?;
                let members = hosts
                    .members
                    .iter()
                    .map(|(name, ip)| Member::cloud(name, *ip))
                    .collect();
                (Some(members), hosts.eip)
            }
            None => (None, None),
        }
    } else {
        (None, None)
    };
    Ok(Request {
        platform: &l.platform,
        project: &l.root,
        secrets: &l.secrets,
        vault_addr: env::var(env::VAULT_ADDR),
        ca_pem,
        token: env::var(env::VAULT_TOKEN).map(Secret::new),
        exoscale,
        cloud_members,
        eip,
        ssh_identity: env::var(env::FORGE_SSH_IDENTITY).map(PathBuf::from),
    })
}

fn stage_name(lifecycle: bool) -> &'static str {
    if lifecycle { "vault" } else { "vault-config" }
}

fn print_json(g: &Globals, out: &stage::Outcome, lifecycle: bool, started: Instant) {
    let mut v = out.to_json();
    v["stage"] = json!(stage_name(lifecycle));
    v["seconds"] = json!(started.elapsed().as_secs_f64());
    g.printer.print_json(&v);
}

pub fn plan(g: &Globals, args: &PlanArgs, lifecycle: bool) -> Result<()> {
    let started = Instant::now();
    let l = load(g, &args.target)?;
    let req = request(&l)?;
    let out = runtime()?.block_on(stage::plan(&req, lifecycle))?;
    if g.printer.json() {
        print_json(g, &out, lifecycle, started);
    } else {
        let text = out.render();
        if text.trim().is_empty() {
            g.printer
                .print(&format!("{}: no changes.", stage_name(lifecycle)));
        } else {
            g.printer.print(text.trim_end());
        }
    }
    if args.detailed_exitcode && out.has_changes() {
        return Err(ExitWith(EXIT_CHANGES).into());
    }
    Ok(())
}

pub fn deploy(g: &Globals, args: &DeployArgs, lifecycle: bool) -> Result<()> {
    let started = Instant::now();
    let l = load(g, &args.target)?;
    let req = request(&l)?;
    let printer = g.printer.clone();
    let quiet = printer.json() || printer.verbosity() == crate::printer::Verbosity::Quiet;
    let report = move |line: &str| {
        if !quiet {
            printer.eprintln(line);
        }
    };
    let out = runtime()?.block_on(stage::apply(&req, lifecycle, &report))?;
    for n in &out.notes {
        g.printer.warn(n);
    }
    let changes = out.steps.len() + out.config.as_ref().map_or(0, |c| c.changes.len());
    if g.printer.json() {
        print_json(g, &out, lifecycle, started);
    } else {
        g.printer.status(
            "Deployed",
            &format!(
                "{} of platform {}: {} in {:.1}s ({} Vault reads, {} writes); secrets in {}",
                stage_name(lifecycle),
                l.platform.name,
                if changes == 0 {
                    "no changes".to_string()
                } else {
                    format!("{changes} change(s)")
                },
                started.elapsed().as_secs_f64(),
                out.reads,
                out.writes,
                l.secrets.root().display()
            ),
        );
    }
    Ok(())
}
