//! What the deploy verbs (plan, deploy, destroy) and publish share: the project a deploy
//! works from (platform.toml, the lockfile, manifests/: no recipes or images needed), the
//! Exoscale client, and the Vault stages' inputs.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use forge_deploy::{ApplyReport, Event, Purpose, Reporter, Stage, StageRequest};
use forge_exoscale::Client;
use forge_project::{LockState, Locked, Project};
use forge_schema::platform::Platform;
use forge_vault::config::ExoscaleCredentials;
use forge_vault::lifecycle::Member;
use forge_vault::stage::Request;
use forge_vault::{Secret, SecretsDir};
use serde_json::json;

use crate::cli::TargetArgs;
use crate::printer::{Printer, Verbosity};
use crate::settings::{CloudSettings, Globals, VaultSettings};

/// The project with its lockfile (`--lock FILE`, else the project's), platform.toml
/// checked first so its errors come before the lockfile's.
pub fn locked_project(g: &Globals, lock: Option<&Path>) -> Result<Project<Locked>> {
    let project = g.project(lock)?;
    project.platform()?;
    Ok(project.locked(
        "a deploy works from the lockfile: run `forge build images` and `forge publish`, or pass --lock FILE",
    )?)
}

/// A cloud stage's inputs; the root CA comes from the secrets directory (the stages whose
/// members log in to Vault write it into their user-data). For a plan, the warnings say
/// what shows as unknown.
pub fn stage_request(
    g: &Globals,
    project: &Project<Locked>,
    args: &TargetArgs,
    stage: Stage,
    purpose: Purpose,
) -> Result<(StageRequest, Vec<String>)> {
    let root_ca = if stage.needs_root_ca() && purpose != Purpose::Destroy {
        root_ca_pem(g, project, args)?
    } else {
        None
    };
    Ok(StageRequest::from_project(
        project, stage, purpose, root_ca,
    )?)
}

/// The Vault settings of `--secrets-dir` and the environment.
fn vault_settings<S: LockState>(
    g: &Globals,
    project: &Project<S>,
    args: &TargetArgs,
) -> Result<VaultSettings> {
    VaultSettings::resolve(
        args.secrets_dir.as_deref(),
        &g.env,
        project.root(),
        project.platform()?,
    )
}

/// The secrets directory of `settings` (created 0700 when missing).
fn open_secrets(settings: &VaultSettings, platform: &Platform) -> Result<SecretsDir> {
    Ok(SecretsDir::open(
        &settings.secrets_dir,
        platform.secrets.age_recipient.as_deref(),
        settings.age_identity.as_deref(),
    )?)
}

/// The Platform Root CA the Vault stage keeps in the secrets directory, if it has run.
fn root_ca_pem(
    g: &Globals,
    project: &Project<Locked>,
    args: &TargetArgs,
) -> Result<Option<String>> {
    let settings = vault_settings(g, project, args)?;
    if !settings.secrets_dir.exists() {
        return Ok(None);
    }
    Ok(open_secrets(&settings, project.platform()?)?
        .read(forge_vault::lifecycle::ROOT_CA_CERT)?
        .map(|s| s.expose().to_string()))
}

/// The Exoscale client of the platform's zone.
pub fn cloud<S: LockState>(g: &Globals, project: &Project<S>) -> Result<(CloudSettings, Client)> {
    let platform = project.platform()?;
    let settings = CloudSettings::resolve(&g.env, platform)?;
    let client = settings.client(&platform.zone)?;
    Ok((settings, client))
}

/// Progress lines of an apply on stderr: hidden by `-q` and `--json`; failures that a
/// later round may still fix show as warnings.
pub fn reporter(printer: &Printer) -> Reporter {
    let printer = printer.clone();
    std::sync::Arc::new(move |event: &Event<'_>| {
        if printer.json() || printer.verbosity() == Verbosity::Quiet {
            return;
        }
        if event.is_failure() {
            printer.warn(&event.line());
        } else {
            printer.eprintln(&event.line());
        }
    })
}

/// A Vault stage's outcome as `--json` prints it.
pub fn vault_json(
    out: &forge_vault::stage::Outcome,
    stage: &str,
    started: Instant,
) -> serde_json::Value {
    let mut v = out.to_json();
    v["stage"] = json!(stage);
    v["seconds"] = json!(started.elapsed().as_secs_f64());
    v
}

/// The Vault stages' inputs, resolved once.
pub struct VaultTarget {
    pub settings: VaultSettings,
    pub secrets: SecretsDir,
    ca_pem: Option<String>,
    exoscale: Option<ExoscaleCredentials>,
    /// Without `[[vault.member]]`, the cloud pool's instances and the Vault EIP.
    cloud_members: Option<Vec<Member>>,
    eip: Option<std::net::IpAddr>,
}

impl VaultTarget {
    pub fn load<S: LockState>(
        g: &Globals,
        project: &Project<S>,
        args: &TargetArgs,
    ) -> Result<Self> {
        let platform = project.platform()?;
        let settings = vault_settings(g, project, args)?;
        let secrets = open_secrets(&settings, platform)?;
        let ca_pem = match &settings.ca_cert {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read VAULT_CACERT {}", p.display()))?,
            ),
            None => None,
        };
        // The Exoscale credentials are optional here: without them the plugins are not
        // configured (the stage says so) and the members must be listed.
        let cloud = cloud(g, project).ok();
        let exoscale = cloud.as_ref().map(|(c, _)| ExoscaleCredentials {
            key: c.config.credentials.key.clone(),
            secret: Secret::new(c.config.credentials.secret()),
        });
        let (cloud_members, eip) = match &cloud {
            Some((_, client)) if platform.vault_cluster.members.is_empty() => {
                let hosts = g
                    .runtime()?
                    .block_on(forge_deploy::pool_hosts(client, platform, "vault"))?;
                let members = hosts
                    .members
                    .iter()
                    .map(|(name, ip)| Member::cloud(name, *ip))
                    .collect();
                (Some(members), hosts.eip)
            }
            _ => (None, None),
        };
        Ok(Self {
            settings,
            secrets,
            ca_pem,
            exoscale,
            cloud_members,
            eip,
        })
    }

    pub fn request<'a, S: LockState>(&'a self, project: &'a Project<S>) -> Result<Request<'a>> {
        Ok(Request {
            platform: project.platform()?,
            project: project.root(),
            secrets: &self.secrets,
            vault_addr: self.settings.addr.clone(),
            ca_pem: self.ca_pem.clone(),
            token: self.settings.token.clone(),
            exoscale: self.exoscale.clone(),
            cloud_members: self.cloud_members.clone(),
            eip: self.eip,
            ssh_identity: self.settings.ssh_identity.clone(),
        })
    }
}

/// What a deploy or destroy of a cloud stage did.
pub struct StageDone {
    pub stage: Stage,
    pub report: ApplyReport,
    /// The etcd stage's cluster check, when it ran.
    pub cluster: Option<serde_json::Value>,
}

/// The last line (or JSON) of a deploy or destroy of a cloud stage.
pub fn finish(
    g: &Globals,
    verb: &str,
    p: &Platform,
    done: &StageDone,
    client: &Client,
    started: Instant,
) {
    let StageDone {
        stage,
        report,
        cluster,
    } = done;
    let calls = client.stats().snapshot();
    let total: u64 = calls.values().sum();
    if g.printer.json() {
        g.printer.print_json(&json!({
            "cluster": cluster,
            "stage": stage,
            "platform": p.name,
            "zone": p.zone,
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
                "stage {stage} of platform {} in {}: {done} in {:.1}s ({} round(s), {total} API calls)",
                p.name,
                p.zone,
                started.elapsed().as_secs_f64(),
                report.rounds
            ),
        );
    }
}
