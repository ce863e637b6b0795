//! The `vault` and `vault-config` deploy stages end to end: which Vault to talk to, with
//! which CA and token, the lifecycle, the configuration, and forge's own token.

use std::path::Path;

use serde_json::json;

use forge_schema::platform::Platform;

use crate::StageError;
use crate::client::VaultClient;
use crate::config::{self, ExoscaleCredentials};
use crate::lifecycle::{self, Cluster, ClusterState, Member, Step};
use crate::secrets::{Secret, SecretsDir};
use crate::transport::SshOptions;

/// forge's token in the secrets directory (made after the first configuration).
pub const FORGE_TOKEN: &str = "forge-token";

/// The inputs of the stages.
#[derive(Debug)]
pub struct Request<'a> {
    pub platform: &'a Platform,
    pub project: &'a Path,
    pub secrets: &'a SecretsDir,
    /// `VAULT_ADDR` (default: the first member's address).
    pub vault_addr: Option<String>,
    /// `VAULT_CACERT`'s content (default: the platform root CA).
    pub ca_pem: Option<String>,
    /// `VAULT_TOKEN` (default: forge's token, else the root token, from the secrets
    /// directory).
    pub token: Option<Secret>,
    /// Exoscale credentials for the plugins' configuration.
    pub exoscale: Option<ExoscaleCredentials>,
    /// The members when they are not `[[vault.member]]`s: the cloud pool's instances.
    pub cloud_members: Option<Vec<Member>>,
    /// The Vault elastic IP (a SAN of every member certificate).
    pub eip: Option<std::net::IpAddr>,
    /// `FORGE_SSH_IDENTITY`.
    pub ssh_identity: Option<std::path::PathBuf>,
}

/// What a stage saw or did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Lifecycle steps missing (plan) or done (apply).
    pub steps: Vec<Step>,
    /// The configuration plan (before apply, when applying).
    pub config: Option<config::Plan>,
    pub notes: Vec<String>,
    pub reads: u64,
    pub writes: u64,
    /// Wall time of the lifecycle and of the configuration (plan + apply).
    pub lifecycle_secs: f64,
    pub config_secs: f64,
}

impl Outcome {
    pub fn has_changes(&self) -> bool {
        self.steps
            .iter()
            .any(|s| !matches!(s, Step::Unreachable { .. }))
            || self.config.as_ref().is_some_and(|c| !c.is_empty())
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        if !self.steps.is_empty() {
            for st in &self.steps {
                let sign = match st {
                    Step::Unreachable { .. } => "!",
                    Step::RemovePeer { .. } => "-",
                    _ => "+",
                };
                s.push_str(&format!("  {sign} {}\n", st.describe()));
            }
        }
        if let Some(c) = &self.config {
            s.push_str(&c.render());
        }
        s
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "steps": self.steps.iter().map(Step::describe).collect::<Vec<_>>(),
            "config": self.config.as_ref().map(config::Plan::to_json),
            "notes": self.notes,
            "vault-reads": self.reads,
            "vault-writes": self.writes,
            "lifecycle-seconds": self.lifecycle_secs,
            "config-seconds": self.config_secs,
        })
    }
}

fn members(req: &Request<'_>) -> Vec<Member> {
    match &req.cloud_members {
        Some(m) => m.clone(),
        None => Member::from_platform(req.platform, req.project),
    }
}

fn ssh_options(req: &Request<'_>) -> crate::transport::SshOptions {
    crate::transport::ssh_options(req.secrets.root(), req.ssh_identity.clone())
}

/// The client every call goes through: one TLS policy, one set of counters.
fn client(req: &Request<'_>) -> Result<VaultClient, StageError> {
    let addr = match (&req.vault_addr, members(req).first()) {
        (Some(a), _) => a.clone(),
        (None, Some(m)) => m.api_addr.clone(),
        (None, None) => {
            return Err(StageError::Invalid(
                "no Vault to talk to: set VAULT_ADDR (and VAULT_CACERT), or list the servers as [[vault.member]] in platform.toml".into(),
            ));
        }
    };
    let ca = match &req.ca_pem {
        Some(c) => Some(c.clone()),
        None => req
            .secrets
            .read(lifecycle::ROOT_CA_CERT)?
            .map(|s| s.expose().to_string()),
    };
    Ok(VaultClient::new(&addr, ca.as_deref())?)
}

/// Where the configuration token came from; decides what happens to tokens after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenSource {
    /// `VAULT_TOKEN`: the operator's own; forge neither makes nor renews one.
    Environment,
    /// forge's periodic token from the secrets directory: renewed when due.
    Forge,
    /// The root token from `vault init`: used once to make forge's token.
    Root,
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenSource::Environment => "VAULT_TOKEN",
            TokenSource::Forge => "forge's token",
            TokenSource::Root => "the root token",
        })
    }
}

/// The token to configure with: `VAULT_TOKEN`, else forge's, else the root token.
fn token(req: &Request<'_>) -> Result<Option<(Secret, TokenSource)>, StageError> {
    if let Some(t) = &req.token {
        return Ok(Some((t.clone(), TokenSource::Environment)));
    }
    if let Some(t) = req.secrets.read(FORGE_TOKEN)? {
        return Ok(Some((t, TokenSource::Forge)));
    }
    Ok(req
        .secrets
        .read(lifecycle::ROOT_TOKEN)?
        .map(|t| (t, TokenSource::Root)))
}

fn inputs<'a>(
    req: &'a Request<'a>,
    root_ca: Option<&'a crate::pki::Ca>,
    policies: &'a std::collections::BTreeMap<String, String>,
) -> config::Inputs<'a> {
    let static_members = !req.platform.vault_cluster.members.is_empty();
    let (exoscale, skip) = match (&req.exoscale, static_members) {
        (_, true) => (
            None,
            Some("Exoscale plugins (iam/exoscale, auth/exoscale) skipped: the Vault servers are [[vault.member]]s, not Exoscale instances of the vault image".to_string()),
        ),
        (None, false) => (
            None,
            Some("Exoscale plugins (iam/exoscale, auth/exoscale) skipped: set EXOSCALE_API_KEY and EXOSCALE_API_SECRET to configure them".to_string()),
        ),
        (Some(c), false) => (Some(c.clone()), None),
    };
    config::Inputs {
        platform: req.platform,
        root_ca,
        secrets: req.secrets,
        policies,
        exoscale,
        exoscale_skip: skip,
    }
}

/// Whether the lifecycle leaves Vault unable to take configuration yet (no root CA, not
/// initialised, members down or sealed: with a quorum missing nothing can be read). A
/// certificate renewal alone does not.
fn blocks_config(steps: &[Step]) -> bool {
    steps.iter().any(|s| !matches!(s, Step::IssueTls { .. }))
}

/// Waits until the cluster has an active node (after unsealing, raft elects one).
async fn wait_for_leader(c: &VaultClient) -> Result<(), StageError> {
    lifecycle::wait_until(
        &format!("{} has no active node", c.addr()),
        std::time::Duration::from_secs(60),
        || async {
            Ok(c.read("sys/leader")
                .await?
                .and_then(|v| v.get("leader_address").cloned())
                .and_then(|a| a.as_str().map(|a| !a.is_empty()))
                .unwrap_or(false))
        },
    )
    .await
}

/// The cluster's state and the lifecycle steps it still needs.
async fn missing_steps(
    req: &Request<'_>,
    members: &[Member],
    ssh: &SshOptions,
    c: &VaultClient,
) -> Result<(ClusterState, Vec<Step>), StageError> {
    let cluster = Cluster {
        platform: req.platform,
        members,
        secrets: req.secrets,
        client: c,
        eip: req.eip,
        ssh,
    };
    let state = cluster.observe().await?;
    let steps = lifecycle::steps(req.platform, &state);
    Ok((state, steps))
}

/// The members of the request, which must not be none.
fn checked_members(req: &Request<'_>) -> Result<Vec<Member>, StageError> {
    let ms = members(req);
    if ms.is_empty() {
        return Err(StageError::Invalid(format!(
            "platform {} has no Vault member: list them as [[vault.member]] in platform.toml, or deploy the base stage and set EXOSCALE_API_KEY/EXOSCALE_API_SECRET so forge finds the pool's instances",
            req.platform.name
        )));
    }
    Ok(ms)
}

/// A client with the configuration token, refused when Vault is sealed.
async fn configuring_client(
    req: &Request<'_>,
    c: &VaultClient,
) -> Result<(VaultClient, TokenSource), StageError> {
    let Some((tok, source)) = token(req)? else {
        return Err(no_token(req));
    };
    let c = c.with_token(tok);
    if c.seal_status().await?.sealed {
        return Err(crate::VaultError::Sealed {
            addr: c.addr().to_string(),
        }
        .into());
    }
    Ok((c, source))
}

/// `forge plan --stage vault` (`lifecycle = true`) or `--stage vault-config`.
pub async fn plan(req: &Request<'_>, lifecycle_too: bool) -> Result<Outcome, StageError> {
    let c = client(req)?;
    let mut out = Outcome::default();
    let mut seen = None;
    if lifecycle_too {
        let ms = checked_members(req)?;
        let (state, steps) = missing_steps(req, &ms, &ssh_options(req), &c).await?;
        out.steps = steps;
        if blocks_config(&out.steps) {
            out.notes
                .push("the configuration is planned once Vault is initialised and unsealed".into());
            out.reads = c.calls().reads();
            return Ok(out);
        }
        seen = Some((ms, state));
    }
    let (c, _) = configuring_client(req, &c).await?;
    let policies = config::load_policies(req.project)?;
    let root = lifecycle::load_root_ca(req.secrets)?;
    let inp = inputs(req, root.as_ref(), &policies);
    out.config = Some(config::plan(&c, &inp).await?);
    if let Some((ms, state)) = &seen {
        let peers = lifecycle::raft_peers(&c).await?;
        out.steps.extend(lifecycle::stale_peers(ms, &peers));
        out.steps
            .extend(lifecycle::agent_switches(state, inp.exoscale.is_some()));
    }
    out.reads = c.calls().reads();
    out.writes = c.calls().writes();
    Ok(out)
}

fn no_token(req: &Request<'_>) -> StageError {
    StageError::Invalid(format!(
        "no Vault token: set VAULT_TOKEN, or run `forge deploy --stage vault` so {} holds one",
        req.secrets.root().display()
    ))
}

/// Whether the lifecycle left the cluster ready for its configuration.
enum Bootstrapped {
    Ready,
    /// TLS material was written to members that are not running: they must be started.
    WaitingForMembers,
}

/// One `forge deploy --stage vault|vault-config`: what it works with, and what it did.
struct Run<'a> {
    req: &'a Request<'a>,
    report: lifecycle::Report<'a>,
    members: Vec<Member>,
    ssh: SshOptions,
    client: VaultClient,
    state: Option<ClusterState>,
    out: Outcome,
}

impl<'a> Run<'a> {
    fn new(req: &'a Request<'a>, report: lifecycle::Report<'a>) -> Result<Self, StageError> {
        Ok(Self {
            req,
            report,
            members: members(req),
            ssh: ssh_options(req),
            client: client(req)?,
            state: None,
            out: Outcome::default(),
        })
    }

    /// The lifecycle (root CA, TLS, init, join, unseal), in at most two rounds: members
    /// that their reload command starts once their TLS is there (the cloud's `systemctl
    /// enable --now`) are waited for and initialised in the same run.
    async fn bootstrap(&mut self) -> Result<Bootstrapped, StageError> {
        self.members = checked_members(self.req)?;
        for round in 1..=2 {
            let (state, steps) =
                missing_steps(self.req, &self.members, &self.ssh, &self.client).await?;
            refuse_unreachable(&steps)?;
            let cluster = Cluster {
                platform: self.req.platform,
                members: &self.members,
                secrets: self.req.secrets,
                client: &self.client,
                eip: self.req.eip,
                ssh: &self.ssh,
            };
            cluster.apply(&steps, self.report).await?;
            // Trust the root CA, if this round made it.
            if self.req.ca_pem.is_none() && steps.contains(&Step::CreateRootCa) {
                self.client = self.client.with_http_of(&client(self.req)?);
            }
            let started = started_by_reload(&self.members, &steps);
            let waiting = tls_only(&steps);
            self.state = Some(state);
            self.out.steps.extend(steps);
            if started.is_empty() || round == 2 {
                if waiting {
                    self.out.notes.push(
                        "TLS material written; start the Vault servers and re-run to initialise them"
                            .into(),
                    );
                    return Ok(Bootstrapped::WaitingForMembers);
                }
                break;
            }
            for m in started {
                let mc = self.client.at(&m.api_addr);
                // A member that does not come up is reported by the next round.
                let _ = lifecycle::wait_until(
                    &format!("{} did not start", m.name),
                    std::time::Duration::from_secs(60),
                    || async { mc.seal_status().await.map(|_| true) },
                )
                .await;
            }
        }
        Ok(Bootstrapped::Ready)
    }

    /// Raft peers that no member declares are removed; members that are not peers are
    /// noted.
    async fn remove_stale_peers(&mut self, c: &VaultClient) -> Result<(), StageError> {
        let peers = lifecycle::raft_peers(c).await?;
        for m in &self.members {
            if !peers.iter().any(|(id, _)| *id == m.name) {
                self.out.notes.push(format!(
                    "{} is not a raft peer (check its node_id is `{}`)",
                    m.name, m.name
                ));
            }
        }
        for step in lifecycle::stale_peers(&self.members, &peers) {
            if let Step::RemovePeer { node_id } = &step {
                lifecycle::remove_peer(c, node_id).await?;
                (self.report)(&step.describe());
            }
            self.out.steps.push(step);
        }
        Ok(())
    }

    /// The agents log in through auth/exoscale, which exists from here on.
    async fn switch_agents(&mut self, auth_configured: bool) -> Result<(), StageError> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        for step in lifecycle::agent_switches(state, auth_configured) {
            if let Step::SwitchToAgent { member } = &step
                && let Some(m) = self.members.iter().find(|m| m.name == *member)
            {
                lifecycle::switch_to_agent(m, &self.ssh).await?;
                (self.report)(&step.describe());
            }
            self.out.steps.push(step);
        }
        Ok(())
    }

    fn finish(mut self, c: &VaultClient) -> Outcome {
        self.out.reads = c.calls().reads();
        self.out.writes = c.calls().writes();
        self.out
    }
}

/// A member that does not answer stops the run, unless this round writes its TLS (its
/// reload command may start it).
fn refuse_unreachable(steps: &[Step]) -> Result<(), StageError> {
    let writes_tls = steps.iter().any(|s| matches!(s, Step::IssueTls { .. }));
    match steps.iter().find(|s| matches!(s, Step::Unreachable { .. })) {
        Some(Step::Unreachable { member, detail }) if !writes_tls => Err(StageError::Invalid(
            format!("{member} does not answer ({detail}); start it and re-run"),
        )),
        _ => Ok(()),
    }
}

/// Members that did not answer, got TLS in this round and have a reload command: the
/// command starts them.
fn started_by_reload<'m>(members: &'m [Member], steps: &[Step]) -> Vec<&'m Member> {
    let has =
        |name: &str, f: &dyn Fn(&Step) -> Option<&str>| steps.iter().any(|s| f(s) == Some(name));
    members
        .iter()
        .filter(|m| m.tls.reload.is_some())
        .filter(|m| {
            has(&m.name, &|s| match s {
                Step::Unreachable { member, .. } => Some(member),
                _ => None,
            }) && has(&m.name, &|s| match s {
                Step::IssueTls { member, .. } => Some(member),
                _ => None,
            })
        })
        .collect()
}

/// Whether a round only wrote TLS material while members did not answer: nothing can be
/// initialised until they run.
fn tls_only(steps: &[Step]) -> bool {
    !steps.is_empty()
        && steps.iter().any(|s| matches!(s, Step::Unreachable { .. }))
        && steps.iter().all(|s| {
            matches!(
                s,
                Step::IssueTls { .. } | Step::CreateRootCa | Step::Unreachable { .. }
            )
        })
}

/// `forge deploy --stage vault` (`lifecycle = true`) or `--stage vault-config`: the
/// lifecycle, the configuration, stale raft peers, the agents' hand-over and forge's own
/// token, in that order.
pub async fn apply(
    req: &Request<'_>,
    lifecycle_too: bool,
    report: lifecycle::Report<'_>,
) -> Result<Outcome, StageError> {
    let started = std::time::Instant::now();
    let mut run = Run::new(req, report)?;
    if lifecycle_too && let Bootstrapped::WaitingForMembers = run.bootstrap().await? {
        let c = run.client.clone();
        return Ok(run.finish(&c));
    }
    let (c, source) = configuring_client(req, &run.client).await?;
    tracing::info!("configuring Vault at {} with {source}", c.addr());
    if lifecycle_too && blocks_config(&run.out.steps) {
        wait_for_leader(&c).await?;
    }
    run.out.lifecycle_secs = started.elapsed().as_secs_f64();

    let config_started = std::time::Instant::now();
    let policies = config::load_policies(req.project)?;
    let root = lifecycle::load_root_ca(req.secrets)?;
    let inp = inputs(req, root.as_ref(), &policies);
    let plan = config::plan(&c, &inp).await?;
    config::apply(&c, &inp, &plan, report).await?;
    run.out.config_secs = config_started.elapsed().as_secs_f64();
    run.out.config = Some(plan);

    if lifecycle_too {
        run.remove_stale_peers(&c).await?;
    }
    run.switch_agents(inp.exoscale.is_some()).await?;
    match source {
        TokenSource::Root => ensure_forge_token(&c, req.secrets, report).await?,
        TokenSource::Forge => renew_if_due(&c).await?,
        TokenSource::Environment => {}
    }
    Ok(run.finish(&c))
}

/// forge's own token: an orphan periodic token with only `forge-admin`, made with the
/// root token once; from then on the root token is not used (docs/vault.md: revoking it).
async fn ensure_forge_token(
    root: &VaultClient,
    secrets: &SecretsDir,
    report: lifecycle::Report<'_>,
) -> Result<(), StageError> {
    let body = json!({
        "policies": [config::ADMIN_POLICY],
        "no_default_policy": false,
        "period": "768h",
        "display_name": "forge",
        "meta": {"created-by": "forge"},
    });
    let v = root
        .write("auth/token/create-orphan", &body)
        .await?
        .ok_or_else(|| StageError::Invalid("token creation returned nothing".into()))?;
    let t = v
        .pointer("/auth/client_token")
        .and_then(|t| t.as_str())
        .ok_or_else(|| StageError::Invalid("token creation returned no token".into()))?;
    secrets.write(FORGE_TOKEN, &Secret::new(t))?;
    report("+ forge's own token (policy forge-admin); the root token is no longer used");
    Ok(())
}

/// Renews forge's periodic token when less than half its period is left (a read when it
/// is not due, so a no-change run stays read-only).
async fn renew_if_due(c: &VaultClient) -> Result<(), StageError> {
    let v = c.read("auth/token/lookup-self").await?;
    let ttl = v
        .as_ref()
        .and_then(|v| v.pointer("/data/ttl"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let period = v
        .as_ref()
        .and_then(|v| v.pointer("/data/period"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if period > 0 && ttl < period / 2 {
        c.write("auth/token/renew-self", &json!({})).await?;
    }
    Ok(())
}
