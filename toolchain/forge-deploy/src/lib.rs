//! forge's deploy stage for cloud resources.
//!
//! One pipeline, read → desired → resolve → diff → execute: typed resources built from
//! platform.toml and the lockfile ([`base::desired`], one type per kind in [`resource`])
//! are compared field by field with what exists ([`observe::read`]: resources are found
//! by deterministic names and forge labels, so there is no state file to lose) into a
//! [`plan::Plan`], which [`apply`] carries out in dependency order ([`execute`]),
//! re-planning after failures until nothing is left to do. Errors carry a
//! [`ErrorKind`]; progress goes out as typed [`Event`]s.

pub mod base;
pub mod diff;
pub mod error;
pub mod execute;
pub mod observe;
pub mod plan;
pub mod resource;

use std::collections::BTreeMap;
use std::sync::Arc;

use forge_exoscale::Client;
use forge_project::{Locked, Project};
use forge_schema::platform::Platform;

pub use error::{DeployError, ErrorKind};
pub use plan::{Action, Plan};
use resource::{Kind, Template};

/// Something an apply did or met, for progress output.
#[derive(Debug)]
pub enum Event<'a> {
    /// A round after the first, with this many changes left.
    Round { round: u32, left: usize },
    /// A change carried out.
    Done {
        action: Action,
        kind: Kind,
        name: &'a str,
        key: &'a str,
    },
    /// A change (or a round's read, with `key` `None`) failed; `retry` tells whether a
    /// later round tries again.
    Failed {
        key: Option<&'a str>,
        error: &'a DeployError,
        retry: bool,
    },
}

impl Event<'_> {
    /// The event as a progress line (`+ created instance-pool p-vault (pool-vault)`).
    pub fn line(&self) -> String {
        match self {
            Event::Round { round, left } => format!("round {round}: {left} change(s) left"),
            Event::Done {
                action,
                kind,
                name,
                key,
            } => {
                let sign = match action {
                    Action::Delete => "-",
                    Action::Update => "~",
                    Action::Create | Action::Replace => "+",
                };
                format!("{sign} {} {kind} {name} ({key})", action.done())
            }
            Event::Failed {
                key: Some(key),
                error,
                ..
            } => format!("{key}: {error}"),
            Event::Failed {
                key: None, error, ..
            } => format!("reading what exists: {error}"),
        }
    }

    /// Whether the event is a failure (shown as a warning while a later round may fix
    /// it).
    pub fn is_failure(&self) -> bool {
        matches!(self, Event::Failed { .. })
    }
}

/// Receives an apply's events (the CLI prints them).
pub type Reporter = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// The inputs of the base stage besides the API.
#[derive(Debug, Clone)]
pub struct BaseRequest {
    pub platform: Platform,
    /// The Vault template id in the platform's zone; `None` before `forge publish` (a plan
    /// shows it as unknown) and when only destroying.
    pub vault_template: Option<String>,
    pub ssh_public_key: Option<String>,
    pub lockfile_label: String,
}

/// What a request is for: a plan works before `forge publish` (the template shows as
/// unknown), a deploy needs the template, a destroy needs neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Plan,
    Deploy,
    Destroy,
}

impl BaseRequest {
    /// The base stage's inputs from a locked project: platform.toml, the Vault template of
    /// the platform's zone and the operator's SSH key. For a plan without a template, the
    /// second value says why the template is unknown.
    pub fn from_project(
        project: &Project<Locked>,
        purpose: Purpose,
    ) -> Result<(Self, Option<String>), DeployError> {
        let p = project.platform()?;
        let template = || {
            project
                .template(&p.vault.image, &p.zone)
                .map(|t| t.id.clone())
        };
        let (vault_template, warning) = match purpose {
            Purpose::Destroy => (None, None),
            Purpose::Deploy => (Some(template()?), None),
            Purpose::Plan => match template() {
                Ok(t) => (Some(t), None),
                Err(e) => (
                    None,
                    Some(format!("{e}; the plan shows the template as unknown")),
                ),
            },
        };
        let ssh_public_key = match &p.ssh_public_key {
            Some(rel) => {
                let path = project.root().join(rel);
                Some(std::fs::read_to_string(&path).map_err(|e| {
                    DeployError::Input(format!(
                        "cannot read the SSH public key {} (platform.toml ssh-public-key): {e}",
                        path.display()
                    ))
                })?)
            }
            None => None,
        };
        let request = BaseRequest {
            platform: p.clone(),
            vault_template,
            ssh_public_key,
            lockfile_label: project.lockfile_label(),
        };
        Ok((request, warning))
    }
}

fn desired(
    req: &BaseRequest,
    inv: &observe::Inventory,
) -> Result<Vec<resource::Desired>, DeployError> {
    // Unpublished, the template shows as unknown in a plan; `apply` refuses before this.
    let template = match &req.vault_template {
        Some(id) => Template::Id(id.clone()),
        None => Template::Unpublished {
            image: req.platform.vault.image.clone(),
        },
    };
    let inputs = base::BaseInputs {
        platform: &req.platform,
        vault_template: template,
        instance_types: &inv.instance_types,
        ssh_public_key: req.ssh_public_key.clone(),
        lockfile_label: req.lockfile_label.clone(),
    };
    let mut want = base::desired(&inputs)?;
    for d in &mut want {
        d.spec.resolve(&inv.attrs);
    }
    Ok(want)
}

fn diff_stage(p: &Platform, want: &[resource::Desired], inv: &observe::Inventory) -> Plan {
    plan::diff(base::STAGE, &p.name, &p.zone, want, &inv.actual)
}

/// What `forge plan --stage base` shows.
pub async fn plan(client: &Client, req: &BaseRequest) -> Result<Plan, DeployError> {
    let inv = observe::read(client, &req.platform.name, &base::SCOPE).await?;
    let want = desired(req, &inv)?;
    Ok(diff_stage(&req.platform, &want, &inv))
}

/// The plan that removes every resource of the stage.
pub async fn destroy_plan(client: &Client, platform: &Platform) -> Result<Plan, DeployError> {
    let inv = observe::read(client, &platform.name, &base::SCOPE).await?;
    Ok(diff_stage(platform, &[], &inv))
}

/// How `apply` runs.
#[derive(Clone)]
pub struct ApplyOptions {
    /// Calls in flight at once.
    pub jobs: usize,
    /// Plan-and-execute rounds before giving up (each round re-reads what exists).
    pub max_rounds: u32,
    pub report: Reporter,
}

/// What an apply did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApplyReport {
    pub rounds: u32,
    /// Changes carried out, by action.
    pub done: BTreeMap<String, usize>,
    /// Failed actions that a later round carried out.
    pub recovered: usize,
}

/// Applies the base stage (or, with `destroy`, removes it) until the plan is empty:
/// each round reads what exists, plans, and carries out the plan; failures a later round
/// may fix ([`DeployError::retryable`]) are tried again, others end the apply at once.
pub async fn apply(
    client: &Client,
    req: &BaseRequest,
    destroy: bool,
    opts: &ApplyOptions,
) -> Result<ApplyReport, DeployError> {
    if !destroy && req.vault_template.is_none() {
        return Err(DeployError::Input(format!(
            "image `{}` has no template in {}: run `forge publish` first",
            req.platform.vault.image, req.platform.zone
        )));
    }
    let mut report = ApplyReport::default();
    let mut last_errors = Vec::new();
    for round in 1..=opts.max_rounds {
        report.rounds = round;
        // A read that fails for a passing reason (its retries spent) costs this round,
        // not the apply.
        let inv = match observe::read(client, &req.platform.name, &base::SCOPE).await {
            Ok(inv) => inv,
            Err(e) if e.kind() == ErrorKind::Transient && round < opts.max_rounds => {
                (opts.report)(&Event::Failed {
                    key: None,
                    error: &e,
                    retry: true,
                });
                last_errors = vec![format!("  reading what exists: {e}")];
                continue;
            }
            Err(e) => return Err(e),
        };
        let want = if destroy {
            Vec::new()
        } else {
            desired(req, &inv)?
        };
        let plan = diff_stage(&req.platform, &want, &inv);
        if plan.is_empty() {
            return Ok(report);
        }
        if round > 1 {
            (opts.report)(&Event::Round {
                round,
                left: plan.changes.len(),
            });
        }
        let failures = execute::execute(client, &plan, &inv, opts.jobs, &opts.report).await;
        report.recovered += failures.len();
        for c in &plan.changes {
            if !failures.iter().any(|f| f.key == c.key) {
                *report.done.entry(c.action.key().to_string()).or_default() += 1;
            }
        }
        for f in &failures {
            (opts.report)(&Event::Failed {
                key: Some(&f.key),
                error: &f.error,
                retry: f.error.retryable(f.action),
            });
        }
        // A failure that no retry can fix ends the apply at once.
        if let Some(f) = failures.iter().find(|f| !f.error.retryable(f.action)) {
            return Err(DeployError::Input(format!("{}: {}", f.key, f.error)));
        }
        if failures.is_empty() {
            // Every change went through; no need to read everything again to know it.
            return Ok(report);
        }
        last_errors = failures
            .iter()
            .map(|f| format!("  {}: {}", f.key, f.error))
            .collect();
    }
    Err(DeployError::NotConverged {
        failed: last_errors.len(),
        rounds: opts.max_rounds,
        errors: last_errors.join("\n"),
    })
}

/// The Vault pool's instances and the Vault elastic IP, as the Vault stage needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VaultHosts {
    /// (instance name = raft node id, public IPv4), sorted by name.
    pub members: Vec<(String, std::net::IpAddr)>,
    pub eip: Option<std::net::IpAddr>,
}

/// Finds the running members of `<P>-vault` and the EIP of the base stage.
pub async fn vault_hosts(client: &Client, p: &Platform) -> Result<VaultHosts, DeployError> {
    let pool_name = format!("{}-vault", p.name);
    let pools = observe::api("list instance pools", client.list_instance_pools().await)?;
    let Some(pool) = pools.iter().find(|x| x.name == pool_name) else {
        return Ok(VaultHosts::default());
    };
    let ids: std::collections::BTreeSet<&str> =
        pool.instances.iter().map(|i| i.id.as_str()).collect();
    let mut members: Vec<(String, std::net::IpAddr)> =
        observe::api("list instances", client.list_instances().await)?
            .into_iter()
            .filter(|i| ids.contains(i.id.as_str()))
            .filter_map(|i| Some((i.name?, i.public_ip?.parse().ok()?)))
            .collect();
    members.sort();
    let eip = observe::api("list elastic IPs", client.list_elastic_ips().await)?
        .into_iter()
        .find(|e| {
            e.labels.get(resource::LABEL_PLATFORM).map(String::as_str) == Some(p.name.as_str())
                && e.labels.get(resource::LABEL_RESOURCE).map(String::as_str) == Some("eip-vault")
        })
        .and_then(|e| e.ip?.parse().ok());
    Ok(VaultHosts { members, eip })
}
