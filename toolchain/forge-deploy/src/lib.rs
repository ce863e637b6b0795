//! forge's deploy stage for cloud resources.
//!
//! A typed resource graph built from platform.toml and the lockfile ([`base::desired`]) is
//! compared with what exists ([`cloud::read`]: resources are found by deterministic names
//! and forge labels, so there is no state file to lose) into a [`plan::Plan`], which
//! [`apply`] carries out in dependency order, re-planning after failures until nothing is
//! left to do.

pub mod base;
pub mod cloud;
pub mod error;
pub mod plan;
pub mod resource;

use std::collections::BTreeMap;

use forge_exoscale::Client;
use forge_project::{Locked, Project};
use forge_schema::platform::Platform;

pub use cloud::Reporter;
pub use error::DeployError;
pub use plan::Plan;

/// The inputs of the base stage besides the API.
#[derive(Debug, Clone)]
pub struct BaseRequest {
    pub platform: Platform,
    /// The Vault template id in the platform's zone; `None` when only destroying.
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
    inv: &cloud::Inventory,
) -> Result<Vec<resource::Desired>, DeployError> {
    // Unpublished, the template shows as unknown in a plan; `apply` refuses before this.
    let template = req
        .vault_template
        .clone()
        .unwrap_or_else(|| base::attr_ref("publish", &req.platform.vault.image));
    let inputs = base::BaseInputs {
        platform: &req.platform,
        vault_template: template,
        instance_types: &inv.instance_types,
        ssh_public_key: req.ssh_public_key.clone(),
        lockfile_label: req.lockfile_label.clone(),
    };
    let d = base::desired(&inputs)?;
    Ok(d.iter().map(|d| cloud::resolve(d, &inv.attrs)).collect())
}

/// What `forge plan --stage base` shows.
pub async fn plan(client: &Client, req: &BaseRequest) -> Result<Plan, DeployError> {
    let inv = cloud::read(client, &req.platform.name, base::STAGE).await?;
    let want = desired(req, &inv)?;
    Ok(plan::diff(
        base::STAGE,
        &req.platform.name,
        &req.platform.zone,
        &want,
        &inv.actual,
    ))
}

/// The plan that removes every resource of the stage.
pub async fn destroy_plan(client: &Client, platform: &Platform) -> Result<Plan, DeployError> {
    let inv = cloud::read(client, &platform.name, base::STAGE).await?;
    Ok(plan::diff(
        base::STAGE,
        &platform.name,
        &platform.zone,
        &[],
        &inv.actual,
    ))
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

/// Applies the base stage (or, with `destroy`, removes it) until the plan is empty.
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
        let inv = match cloud::read(client, &req.platform.name, base::STAGE).await {
            Ok(inv) => inv,
            Err(e) if transient(&e) && round < opts.max_rounds => {
                (opts.report)(&format!("! reading what exists: {e}"));
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
        let plan = plan::diff(
            base::STAGE,
            &req.platform.name,
            &req.platform.zone,
            &want,
            &inv.actual,
        );
        if plan.is_empty() {
            return Ok(report);
        }
        if round > 1 {
            (opts.report)(&format!(
                "round {round}: {} change(s) left",
                plan.changes.len()
            ));
        }
        let failures = cloud::execute(client, &plan, &inv, opts.jobs, &opts.report).await;
        report.recovered += failures.len();
        let failed: Vec<&String> = failures.iter().map(|(k, _)| k).collect();
        for c in &plan.changes {
            if !failed.contains(&&c.key) {
                *report
                    .done
                    .entry(format!("{:?}", c.action).to_lowercase())
                    .or_default() += 1;
            }
        }
        for (key, e) in &failures {
            (opts.report)(&format!("! {key}: {e}"));
        }
        // A failure that no retry can fix ends the apply at once.
        if let Some((_, e)) = failures.iter().find(|(_, e)| !transient(e)) {
            return Err(DeployError::Input(format!("{e}")));
        }
        if failures.is_empty() {
            // Every change went through; no need to read everything again to know it.
            return Ok(report);
        }
        last_errors = failures
            .into_iter()
            .map(|(k, e)| format!("  {k}: {e}"))
            .collect();
    }
    Err(DeployError::NotConverged {
        failed: last_errors.len(),
        rounds: opts.max_rounds,
        errors: last_errors.join("\n"),
    })
}

fn transient(e: &DeployError) -> bool {
    match e {
        // A group still "in use" just after its pool was deleted frees up shortly.
        DeployError::Api { what, source } => {
            source.is_transient() || (source.status() == Some(409) && what.starts_with("deleting"))
        }
        // A dependency that failed in this round is created in the next.
        DeployError::Input(m) => m.contains("does not exist yet"),
        DeployError::NotConverged { .. } | DeployError::Project(_) => false,
    }
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
    let pools = cloud::api("list instance pools", client.list_instance_pools().await)?;
    let Some(pool) = pools.iter().find(|x| x.name == pool_name) else {
        return Ok(VaultHosts::default());
    };
    let ids: std::collections::BTreeSet<&str> =
        pool.instances.iter().map(|i| i.id.as_str()).collect();
    let mut members: Vec<(String, std::net::IpAddr)> =
        cloud::api("list instances", client.list_instances().await)?
            .into_iter()
            .filter(|i| ids.contains(i.id.as_str()))
            .filter_map(|i| Some((i.name?, i.public_ip?.parse().ok()?)))
            .collect();
    members.sort();
    let eip = cloud::api("list elastic IPs", client.list_elastic_ips().await)?
        .into_iter()
        .find(|e| {
            e.labels.get(resource::LABEL_PLATFORM).map(String::as_str) == Some(p.name.as_str())
                && e.labels.get(resource::LABEL_RESOURCE).map(String::as_str) == Some("eip-vault")
        })
        .and_then(|e| e.ip?.parse().ok());
    Ok(VaultHosts { members, eip })
}
