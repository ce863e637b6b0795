//! forge's cloud stages: base (§4.1) and etcd (§4.3.2) so far.
//!
//! One pipeline, read → desired → resolve → diff → execute: typed resources built from
//! platform.toml and the lockfile ([`base::desired`], [`etcd::desired`]; one type per kind in [`resource`])
//! are compared field by field with what exists ([`observe::read`]: resources are found
//! by deterministic names and forge labels, so there is no state file to lose) into a
//! [`plan::Plan`], which [`apply`] carries out in dependency order ([`execute`]),
//! re-planning after failures until nothing is left to do. Errors carry a
//! [`ErrorKind`]; progress goes out as typed [`Event`]s.

pub mod base;
pub mod diff;
pub mod error;
pub mod etcd;
pub mod execute;
pub mod observe;
pub mod plan;
mod pools;
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

/// The cloud stages, in the order they are deployed (destroyed in reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Operator and Vault groups, the Vault pool, its elastic IP, the SSH key (§4.1).
    Base,
    /// The etcd groups, elastic IP and pool (§4.3.2).
    Etcd,
}

impl Stage {
    pub const ALL: [Stage; 2] = [Stage::Base, Stage::Etcd];

    pub fn name(self) -> &'static str {
        self.scope().stage
    }

    pub fn scope(self) -> &'static observe::Scope {
        match self {
            Stage::Base => &base::SCOPE,
            Stage::Etcd => &etcd::SCOPE,
        }
    }

    /// The image whose template the stage's pool runs.
    pub fn image(self, p: &Platform) -> &str {
        match self {
            Stage::Base => &p.vault.image,
            Stage::Etcd => &p.etcd.image,
        }
    }

    /// Whether the stage's members log in to Vault, so their user-data carries the
    /// Platform Root CA.
    pub fn needs_root_ca(self) -> bool {
        match self {
            Stage::Base => false,
            Stage::Etcd => true,
        }
    }

    /// The stage that made the resources this one uses.
    fn after(self) -> Option<Stage> {
        match self {
            Stage::Base => None,
            Stage::Etcd => Some(Stage::Base),
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The inputs of a cloud stage besides the API.
#[derive(Debug, Clone)]
pub struct StageRequest {
    pub stage: Stage,
    pub platform: Platform,
    /// The template of the stage's image in the platform's zone; `None` before
    /// `forge publish` (a plan shows it as unknown) and when only destroying.
    pub template: Option<String>,
    pub ssh_public_key: Option<String>,
    /// The Platform Root CA (PEM) of the Vault stage, for the stages whose members log in
    /// to Vault; `None` before the Vault stage (a plan shows it as unknown).
    pub root_ca_pem: Option<String>,
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

impl StageRequest {
    /// A stage's inputs from a locked project: platform.toml, the template of the stage's
    /// image in the platform's zone, the operator's SSH key and (given by the caller, who
    /// reads it from the secrets directory) the root CA. For a plan, the second value says
    /// what is unknown and why.
    pub fn from_project(
        project: &Project<Locked>,
        stage: Stage,
        purpose: Purpose,
        root_ca_pem: Option<String>,
    ) -> Result<(Self, Vec<String>), DeployError> {
        let p = project.platform()?;
        let image = stage.image(p);
        let template = || project.template(image, &p.zone).map(|t| t.id.clone());
        let mut warnings = Vec::new();
        let template = match purpose {
            Purpose::Destroy => None,
            Purpose::Deploy => Some(template()?),
            Purpose::Plan => match template() {
                Ok(t) => Some(t),
                Err(e) => {
                    warnings.push(format!("{e}; the plan shows the template as unknown"));
                    None
                }
            },
        };
        if stage.needs_root_ca() && root_ca_pem.is_none() && purpose != Purpose::Destroy {
            let e = DeployError::Input(
                "the Platform Root CA is not in the secrets directory: run `forge deploy --stage vault` first".into(),
            );
            if purpose == Purpose::Deploy {
                return Err(e);
            }
            warnings.push(format!("{e}; the plan shows the members' CA as unknown"));
        }
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
        let request = StageRequest {
            stage,
            platform: p.clone(),
            template,
            ssh_public_key,
            root_ca_pem,
            lockfile_label: project.lockfile_label(),
        };
        Ok((request, warnings))
    }

    fn template(&self) -> Template {
        // Unpublished, the template shows as unknown in a plan; `apply` refuses before this.
        match &self.template {
            Some(id) => Template::Id(id.clone()),
            None => Template::Unpublished {
                image: self.stage.image(&self.platform).to_string(),
            },
        }
    }
}

fn desired(
    req: &StageRequest,
    inv: &observe::Inventory,
) -> Result<Vec<resource::Desired>, DeployError> {
    let mut want = match req.stage {
        Stage::Base => base::desired(&base::BaseInputs {
            platform: &req.platform,
            vault_template: req.template(),
            instance_types: &inv.instance_types,
            ssh_public_key: req.ssh_public_key.clone(),
            lockfile_label: req.lockfile_label.clone(),
        })?,
        Stage::Etcd => etcd::desired(&etcd::EtcdInputs {
            platform: &req.platform,
            template: req.template(),
            instance_types: &inv.instance_types,
            root_ca_pem: req.root_ca_pem.as_deref(),
            ssh_key: req.ssh_public_key.is_some(),
            lockfile_label: req.lockfile_label.clone(),
        })?,
    };
    for d in &mut want {
        d.spec.resolve(&inv.attrs);
    }
    Ok(want)
}

fn diff_stage(
    stage: Stage,
    p: &Platform,
    want: &[resource::Desired],
    inv: &observe::Inventory,
) -> Plan {
    plan::diff(stage.name(), &p.name, &p.zone, want, &inv.actual)
}

/// The resources of earlier stages that the stage's resources need (`want`, resolved
/// against what exists) and that do not exist, as an error that says which stage to
/// deploy first.
fn check_uses(
    req: &StageRequest,
    want: &[resource::Desired],
    inv: &observe::Inventory,
) -> Result<(), DeployError> {
    let missing: Vec<&str> = req
        .stage
        .scope()
        .uses
        .iter()
        .copied()
        .filter(|k| !inv.ids.contains_key(*k))
        .filter(|k| want.iter().any(|d| d.spec.needs(k)))
        .collect();
    match (missing.is_empty(), req.stage.after()) {
        (false, Some(before)) => Err(DeployError::Input(format!(
            "stage {} needs {} of stage {before}, which do not exist: run `forge deploy --stage {before}` first",
            req.stage,
            missing.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// What `forge plan --stage STAGE` shows.
pub async fn plan(client: &Client, req: &StageRequest) -> Result<Plan, DeployError> {
    let inv = observe::read(client, &req.platform.name, req.stage.scope()).await?;
    let want = desired(req, &inv)?;
    Ok(diff_stage(req.stage, &req.platform, &want, &inv))
}

/// The plan that removes every resource of the stage.
pub async fn destroy_plan(
    client: &Client,
    platform: &Platform,
    stage: Stage,
) -> Result<Plan, DeployError> {
    let inv = observe::read(client, &platform.name, stage.scope()).await?;
    Ok(diff_stage(stage, platform, &[], &inv))
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

/// Applies a stage (or, with `destroy`, removes it) until the plan is empty:
/// each round reads what exists, plans, and carries out the plan; failures a later round
/// may fix ([`DeployError::retryable`]) are tried again, others end the apply at once.
pub async fn apply(
    client: &Client,
    req: &StageRequest,
    destroy: bool,
    opts: &ApplyOptions,
) -> Result<ApplyReport, DeployError> {
    if !destroy && req.template.is_none() {
        return Err(DeployError::Input(format!(
            "image `{}` has no template in {}: run `forge publish` first",
            req.stage.image(&req.platform),
            req.platform.zone
        )));
    }
    let mut report = ApplyReport::default();
    let mut last_errors = Vec::new();
    for round in 1..=opts.max_rounds {
        report.rounds = round;
        // A read that fails for a passing reason (its retries spent) costs this round,
        // not the apply.
        let inv = match observe::read(client, &req.platform.name, req.stage.scope()).await {
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
            let want = desired(req, &inv)?;
            check_uses(req, &want, &inv)?;
            want
        };
        let plan = diff_stage(req.stage, &req.platform, &want, &inv);
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

/// A stage's pool members and its elastic IP, as the stages after it need them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolHosts {
    /// (instance name, public IPv4), sorted by name. The instance name is the member's
    /// name (Vault's raft node id, etcd's member name).
    pub members: Vec<(String, std::net::IpAddr)>,
    pub eip: Option<std::net::IpAddr>,
}

impl PoolHosts {
    /// `https://ADDRESS:PORT` of every member, then of the elastic IP: clients that list
    /// them all do not depend on one address (defect 25).
    pub fn urls(&self, port: u16) -> Vec<String> {
        self.members
            .iter()
            .map(|(_, ip)| ip)
            .chain(self.eip.iter())
            .map(|ip| std::net::SocketAddr::new(*ip, port))
            .map(|a| format!("https://{a}"))
            .collect()
    }
}

/// Finds the running members of `<P>-<role>` and the elastic IP `eip-<role>`.
pub async fn pool_hosts(
    client: &Client,
    p: &Platform,
    role: &str,
) -> Result<PoolHosts, DeployError> {
    let pool_name = format!("{}-{role}", p.name);
    let pools = observe::api("list instance pools", client.list_instance_pools().await)?;
    let Some(pool) = pools.iter().find(|x| x.name == pool_name) else {
        return Ok(PoolHosts::default());
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
    let eip_key = format!("eip-{role}");
    let eip = observe::api("list elastic IPs", client.list_elastic_ips().await)?
        .into_iter()
        .find(|e| {
            e.labels.get(resource::LABEL_PLATFORM).map(String::as_str) == Some(p.name.as_str())
                && e.labels.get(resource::LABEL_RESOURCE) == Some(&eip_key)
        })
        .and_then(|e| e.ip?.parse().ok());
    Ok(PoolHosts { members, eip })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn clients_get_every_member_and_the_elastic_ip() {
        let h = PoolHosts {
            members: vec![
                ("p-etcd-a".into(), "192.0.2.1".parse().unwrap()),
                ("p-etcd-b".into(), "2001:db8::2".parse().unwrap()),
            ],
            eip: Some("203.0.113.9".parse().unwrap()),
        };
        assert_eq!(
            h.urls(2379),
            [
                "https://192.0.2.1:2379",
                "https://[2001:db8::2]:2379",
                "https://203.0.113.9:2379"
            ]
        );
    }

    #[test]
    fn stages_use_only_what_earlier_stages_make() {
        for s in Stage::ALL {
            for used in s.scope().uses {
                let owner = s.after().unwrap();
                let scope = owner.scope();
                let (prefix, name) = used.split_once('-').unwrap();
                let owns = match prefix {
                    "sg" => scope.security_groups.contains(&name),
                    "ssh" => scope.ssh_keys.contains(&name),
                    // Elastic IPs are found by label: the owner reads that kind.
                    "eip" => scope.kinds.contains(&Kind::ElasticIp),
                    _ => false,
                };
                assert!(owns, "{s} uses {used}, which {owner} does not make");
            }
        }
    }
}
