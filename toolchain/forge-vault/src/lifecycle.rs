//! The Vault cluster's life before configuration (spec §6.2-6.4): TLS bootstrap of each
//! member, `init` once, unseal every member, raft join.
//!
//! [`observe`] reads what is (TLS files, each member's seal status) into a
//! [`ClusterState`]; [`steps`] turns it into the [`Step`]s still missing, which `forge plan
//! --stage vault` shows and [`apply`] carries out. A re-run therefore does only what is
//! missing: a restarted member is sealed again and gets unsealed, a member whose
//! certificate is missing, wrong or two thirds through its life gets a new one.
//!
//! Members are reached through their TLS directory (`[[vault.member]]` in platform.toml):
//! the key is generated in that directory and never leaves it; forge signs its CSR with the
//! platform root CA.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use forge_schema::platform::Platform;

use crate::client::{SealStatus, VaultClient, VaultError};
use crate::pki::{self, Ca, ServerNames};
use crate::secrets::{Secret, SecretsDir};
use crate::transport::{SshOptions, SshTarget, TlsTarget};
use crate::{StageError, names};

/// A Vault server forge manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub api_addr: String,
    pub tls: TlsTarget,
    /// Run on the member's host to hand its TLS to its Vault agent (spec §6.5), once the
    /// agent can log in (the Exoscale auth backend exists). Cloud members only.
    pub agent_command: Option<String>,
}

impl Member {
    /// The members of platform.toml's `[[vault.member]]`, TLS directories resolved against
    /// the project root.
    pub fn from_platform(p: &Platform, project: &Path) -> Vec<Member> {
        p.vault_cluster
            .members
            .iter()
            .map(|m| {
                let ssh = m.ssh.as_deref().and_then(SshTarget::parse);
                Member {
                    name: m.name.clone(),
                    api_addr: m.api_addr.clone(),
                    tls: TlsTarget {
                        dir: if ssh.is_some() {
                            PathBuf::from(&m.tls_dir)
                        } else {
                            project.join(&m.tls_dir)
                        },
                        ssh,
                        reload: m.reload_command.clone(),
                    },
                    agent_command: None,
                }
            })
            .collect()
    }

    /// A member of the cloud pool: the instance `name` at `ip`, running the vault image
    /// (`vault-server` unit, TLS in /etc/vault/tls owned by vault), reached over SSH as the
    /// templates' default user.
    pub fn cloud(name: &str, ip: IpAddr) -> Member {
        let host = match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        Member {
            name: name.to_string(),
            api_addr: format!("https://{host}:8200"),
            tls: TlsTarget {
                dir: PathBuf::from("/etc/vault/tls"),
                ssh: Some(SshTarget {
                    user: CLOUD_SSH_USER.into(),
                    host: ip.to_string(),
                    port: 22,
                }),
                reload: Some(
                    "systemctl enable --now vault-server.service && systemctl reload vault-server.service"
                        .into(),
                ),
            },
            agent_command: Some(
                "systemctl enable vault-agent.service && systemctl restart vault-agent.service"
                    .into(),
            ),
        }
    }

    fn host(&self) -> String {
        url::Url::parse(&self.api_addr)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
            .unwrap_or_default()
    }

    /// The names its certificate must carry (spec §6.2; the CN is the cluster name, which
    /// is also the `leader_tls_servername` of retry_join).
    pub fn server_names(&self, p: &Platform, eip: Option<IpAddr>) -> ServerNames {
        let cluster = names::cluster(p);
        let mut dns = vec![
            cluster.clone(),
            format!("{cluster}.{}", p.domain),
            self.name.clone(),
            format!("{}.{}", self.name, p.domain),
        ];
        let mut ips = Vec::new();
        let host = self.host();
        match host.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) if !host.is_empty() => dns.push(host),
            Err(_) => {}
        }
        if let Some(e) = eip
            && !ips.contains(&e)
        {
            ips.push(e);
        }
        dns.dedup();
        ServerNames {
            common_name: cluster,
            dns,
            ips,
        }
    }
}

/// The user the templates are registered with (`forge publish`: the images' default
/// user), which cloud-init gives the platform's SSH key and passwordless sudo.
pub const CLOUD_SSH_USER: &str = "debian";

/// The files of a member's TLS directory.
pub const CA_FILE: &str = "ca.pem";
pub const CERT_FILE: &str = "server.pem";
pub const KEY_FILE: &str = "server.key";

/// Secret names in the secrets directory.
pub const ROOT_CA_KEY: &str = "root-ca.key";
pub const ROOT_CA_CERT: &str = "root-ca.pem";
pub const ROOT_TOKEN: &str = "root-token";
pub fn unseal_key_name(i: usize) -> String {
    format!("unseal-key-{i}")
}

/// The state of a member's TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsState {
    /// forge's bootstrap certificate, valid.
    Valid,
    /// A certificate the member's agent renews (spec §6.5), valid.
    AgentManaged,
    /// Needs a (new) certificate, and why.
    Renew(String),
}

/// What forge saw of one member.
#[derive(Debug, Clone)]
pub struct MemberState {
    pub member: Member,
    pub tls: TlsState,
    /// `None` when the API did not answer.
    pub seal: Option<SealStatus>,
    pub unreachable: Option<String>,
}

/// What forge saw of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterState {
    pub root_ca_exists: bool,
    pub members: Vec<MemberState>,
    pub unseal_keys_present: usize,
}

/// One thing the lifecycle still has to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    CreateRootCa,
    IssueTls {
        member: String,
        reason: String,
    },
    Init {
        member: String,
        shares: u8,
        threshold: u8,
    },
    Join {
        member: String,
        leader: String,
    },
    Unseal {
        member: String,
    },
    /// The member's API did not answer: it cannot be initialised, joined or unsealed now.
    Unreachable {
        member: String,
        detail: String,
    },
    /// A raft peer no `[[vault.member]]` declares (a replaced server): removed, so it no
    /// longer counts towards the quorum (defect 21).
    RemovePeer {
        node_id: String,
    },
    /// Hand the member's TLS to its Vault agent (spec §6.5), after the configuration.
    SwitchToAgent {
        member: String,
    },
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::CreateRootCa => {
                "create the Platform Root CA (key in the secrets directory)".into()
            }
            Step::IssueTls { member, reason } => {
                format!("issue the bootstrap TLS certificate of {member} ({reason})")
            }
            Step::Init {
                member,
                shares,
                threshold,
            } => {
                format!("initialise Vault on {member} ({shares} key shares, {threshold} to unseal)")
            }
            Step::Join { member, leader } => {
                format!("join {member} to the raft cluster of {leader}")
            }
            Step::Unseal { member } => format!("unseal {member}"),
            Step::Unreachable { member, detail } => {
                format!("{member} does not answer ({detail}); start it and re-run")
            }
            Step::RemovePeer { node_id } => {
                format!("remove raft peer {node_id} (not a declared member)")
            }
            Step::SwitchToAgent { member } => {
                format!(
                    "hand the TLS of {member} to its Vault agent (it renews the certificate from then on)"
                )
            }
        }
    }
}

/// Makes the Platform Root CA and writes it to the secrets directory.
pub fn create_root_ca(p: &Platform, secrets: &SecretsDir) -> Result<Ca, StageError> {
    let hours = i64::try_from(p.pki.root_ca_hours).unwrap_or(i64::MAX / 3600);
    let c = pki::generate_root(
        &p.pki.subject,
        &names::root_ca_cn(p),
        time::Duration::hours(hours),
        p.pki.ca_key,
    )?;
    // The key first: a certificate without its key would be useless.
    secrets.write(ROOT_CA_KEY, &c.key_pem)?;
    secrets.write(ROOT_CA_CERT, &Secret::new(c.cert_pem.clone()))?;
    Ok(c)
}

/// The root CA from the secrets directory, if it was made.
pub fn load_root_ca(secrets: &SecretsDir) -> Result<Option<Ca>, StageError> {
    let (Some(key), Some(cert)) = (secrets.read(ROOT_CA_KEY)?, secrets.read(ROOT_CA_CERT)?) else {
        return Ok(None);
    };
    Ok(Some(Ca {
        cert_pem: cert.expose().to_string(),
        key_pem: key,
    }))
}

async fn tls_state(
    m: &Member,
    ca_pem: Option<&str>,
    names: &ServerNames,
    ssh: &SshOptions,
) -> Result<TlsState, StageError> {
    let t = &m.tls;
    let (Some(ca), Some(cert)) = (t.read(ssh, CA_FILE).await?, t.read(ssh, CERT_FILE).await?)
    else {
        return Ok(TlsState::Renew("no certificate yet".into()));
    };
    let Some(root) = ca_pem else {
        return Ok(TlsState::Renew("the root CA is new".into()));
    };
    let (Ok(ci), Ok(ri)) = (
        pki::inspect(&cert, CERT_FILE),
        pki::inspect(root, "root CA"),
    ) else {
        return Ok(TlsState::Renew(format!("{CERT_FILE} does not parse")));
    };
    // After the switch to agent-managed TLS (spec §6.5), ca.pem is the Vault ICA and the
    // agent renews the certificate: forge leaves it alone while it is valid, and puts a
    // bootstrap certificate back only once it has expired (Vault unavailable for longer
    // than the certificate's life, defect 18).
    let agent_managed = ca.trim() != root.trim();
    if agent_managed {
        match pki::inspect(&ca, CA_FILE) {
            Ok(ii) if ii.is_ca && ii.issuer_der == ri.subject_der => {
                if ci.issuer_der != ii.subject_der {
                    return Ok(TlsState::Renew(format!(
                        "{CERT_FILE} is not signed by {CA_FILE}"
                    )));
                }
            }
            _ => {
                return Ok(TlsState::Renew(format!(
                    "{CA_FILE} is neither the platform root CA nor an intermediate it signed"
                )));
            }
        }
    } else if ci.issuer_der != ri.subject_der {
        return Ok(TlsState::Renew("not signed by the platform root CA".into()));
    }
    // A local key is checked against the certificate when its format is one forge reads
    // (PKCS#8, as forge writes it); a remote one is not read back (it would cross the
    // network for a check), only its presence is.
    let key_ok = if t.ssh.is_none() {
        match t.read(ssh, KEY_FILE).await? {
            Some(k) => match pki::public_key_of(&Secret::new(k)) {
                Ok(pk) => pk == ci.public_key_der,
                Err(_) => true,
            },
            None => false,
        }
    } else {
        t.exists(ssh, KEY_FILE).await?
    };
    if !key_ok {
        return Ok(TlsState::Renew(format!(
            "{KEY_FILE} is missing or does not match {CERT_FILE}"
        )));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if agent_managed {
        if now >= ci.not_after {
            return Ok(TlsState::Renew(
                "the agent's certificate expired; a bootstrap certificate replaces it".into(),
            ));
        }
        return Ok(TlsState::AgentManaged);
    }
    let missing: Vec<String> = names
        .dns
        .iter()
        .filter(|d| !ci.dns.contains(d))
        .cloned()
        .chain(
            names
                .ips
                .iter()
                .filter(|i| !ci.ips.contains(i))
                .map(ToString::to_string),
        )
        .collect();
    if !missing.is_empty() {
        return Ok(TlsState::Renew(format!("lacks {}", missing.join(", "))));
    }
    let life = ci.not_after - ci.not_before;
    // Renewed two thirds through its life, like the agents renew theirs.
    if now > ci.not_after - life / 3 {
        return Ok(TlsState::Renew(format!(
            "expires in {} h",
            (ci.not_after - now).max(0) / 3600
        )));
    }
    Ok(TlsState::Valid)
}

/// Reads the cluster's state.
pub async fn observe(
    p: &Platform,
    members: &[Member],
    secrets: &SecretsDir,
    client: &VaultClient,
    eip: Option<IpAddr>,
    ssh: &SshOptions,
) -> Result<ClusterState, StageError> {
    let ca = load_root_ca(secrets)?;
    let ca_pem = ca.as_ref().map(|c| c.cert_pem.as_str());
    // Members are looked at all at once: over SSH each look costs a connection.
    let looks = members.iter().map(|m| async move {
        let names = m.server_names(p, eip);
        let tls = tls_state(m, ca_pem, &names, ssh).await?;
        let (seal, unreachable) = match client.at(&m.api_addr).seal_status().await {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Ok::<_, StageError>(MemberState {
            member: m.clone(),
            tls,
            seal,
            unreachable,
        })
    });
    let out = futures_util::future::try_join_all(looks).await?;
    let unseal_keys_present = (0..usize::from(p.vault_cluster.key_shares))
        .filter(|i| secrets.exists(&unseal_key_name(*i)))
        .count();
    Ok(ClusterState {
        root_ca_exists: ca.is_some(),
        members: out,
        unseal_keys_present,
    })
}

/// What is missing, in order.
pub fn steps(p: &Platform, s: &ClusterState) -> Vec<Step> {
    let mut out = Vec::new();
    if !s.root_ca_exists {
        out.push(Step::CreateRootCa);
    }
    for m in &s.members {
        if let TlsState::Renew(reason) = &m.tls {
            out.push(Step::IssueTls {
                member: m.member.name.clone(),
                reason: reason.clone(),
            });
        }
    }
    let reachable: Vec<&MemberState> = s.members.iter().filter(|m| m.seal.is_some()).collect();
    let initialized: Vec<&MemberState> = reachable
        .iter()
        .copied()
        .filter(|m| m.seal.as_ref().is_some_and(|x| x.initialized))
        .collect();
    let leader = match initialized.first() {
        Some(l) => l.member.name.clone(),
        None => match reachable.first() {
            Some(first) => {
                out.push(Step::Init {
                    member: first.member.name.clone(),
                    shares: p.vault_cluster.key_shares,
                    threshold: p.vault_cluster.key_threshold,
                });
                out.push(Step::Unseal {
                    member: first.member.name.clone(),
                });
                first.member.name.clone()
            }
            None => String::new(),
        },
    };
    for m in &s.members {
        let name = m.member.name.clone();
        let Some(seal) = &m.seal else {
            out.push(Step::Unreachable {
                member: name,
                detail: m.unreachable.clone().unwrap_or_default(),
            });
            continue;
        };
        if name == leader && !initialized.iter().any(|i| i.member.name == name) {
            continue; // its init + unseal are already listed
        }
        if !seal.initialized {
            out.push(Step::Join {
                member: name.clone(),
                leader: leader.clone(),
            });
            out.push(Step::Unseal { member: name });
        } else if seal.sealed {
            out.push(Step::Unseal { member: name });
        }
    }
    out
}

/// Something done, for the report.
pub type Report<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// Polls `check` every 250 ms until it says yes, or fails after `timeout`.
pub async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<(), StageError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, VaultError>>,
{
    let start = std::time::Instant::now();
    let mut last = String::new();
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = format!(": {e}"),
        }
        if start.elapsed() > timeout {
            return Err(StageError::Timeout(format!(
                "{what} after {} s{last}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn find<'a>(members: &'a [Member], name: &str) -> Result<&'a Member, StageError> {
    members
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| StageError::Invalid(format!("no member named {name}")))
}

/// Carries out `steps` in order.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    p: &Platform,
    members: &[Member],
    secrets: &SecretsDir,
    client: &VaultClient,
    eip: Option<IpAddr>,
    steps: &[Step],
    ssh: &SshOptions,
    report: Report<'_>,
) -> Result<(), StageError> {
    let mut ca = load_root_ca(secrets)?;
    for step in steps {
        match step {
            Step::CreateRootCa => {
                ca = Some(create_root_ca(p, secrets)?);
            }
            Step::IssueTls { member, .. } => {
                let m = find(members, member)?;
                let Some(ca) = &ca else {
                    return Err(StageError::Invalid("the root CA is missing".into()));
                };
                issue_tls(p, m, ca, eip, ssh).await?;
                if m.tls.reload(ssh).await? {
                    report(&format!("reloaded {member} ({})", m.tls.describe()));
                }
            }
            Step::Init {
                member,
                shares,
                threshold,
            } => {
                let m = find(members, member)?;
                init(client.at(&m.api_addr), secrets, *shares, *threshold).await?;
            }
            Step::Join { member, leader } => {
                let m = find(members, member)?;
                let l = find(members, leader)?;
                let Some(ca) = &ca else {
                    return Err(StageError::Invalid("the root CA is missing".into()));
                };
                let c = client.at(&m.api_addr);
                // The leader answers raft challenges once it is active, a moment after
                // its unseal (`sys/health` answers 200 only on the active node).
                let leader = client.at(&l.api_addr);
                wait_until(
                    &format!("{leader} did not become active", leader = l.name),
                    Duration::from_secs(60),
                    || async { leader.read("sys/health").await.map(|_| true) },
                )
                .await?;
                let body = json!({"leader_api_addr": l.api_addr, "leader_ca_cert": ca.cert_pem});
                let mut tries = 0;
                loop {
                    match c.put("sys/storage/raft/join", &body).await {
                        Ok(_) => break,
                        // A retry_join stanza may have started the join already.
                        Err(VaultError::Api { message, .. }) if message.contains("already") => {
                            break;
                        }
                        // The leader's raft layer may still be settling.
                        Err(VaultError::Api {
                            status: 500,
                            message,
                            ..
                        }) if tries < 20 && message.contains("challenge") => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                wait_until(
                    &format!("{member} did not see the cluster"),
                    Duration::from_secs(60),
                    || async { Ok(c.seal_status().await?.initialized) },
                )
                .await?;
            }
            Step::Unseal { member } => {
                let m = find(members, member)?;
                unseal(
                    &client.at(&m.api_addr),
                    secrets,
                    p.vault_cluster.key_threshold,
                )
                .await?;
            }
            Step::Unreachable { .. } => continue,
            Step::RemovePeer { .. } | Step::SwitchToAgent { .. } => {
                return Err(StageError::Invalid(
                    "raft peers are removed, and agents started, after the configuration".into(),
                ));
            }
        }
        report(&step.describe());
    }
    Ok(())
}

/// Writes a fresh key to the member's TLS directory, then the certificate forge signs for
/// its CSR, then the root CA.
async fn issue_tls(
    p: &Platform,
    m: &Member,
    ca: &Ca,
    eip: Option<IpAddr>,
    ssh: &SshOptions,
) -> Result<(), StageError> {
    let names = m.server_names(p, eip);
    let (key, csr) = pki::key_and_csr(&names.common_name, p.pki.leaf_key)?;
    let cert = pki::sign_server_csr(
        ca,
        &csr,
        &p.pki.subject,
        &names,
        time::Duration::hours(i64::try_from(p.pki.bootstrap_cert_hours).unwrap_or(24)),
    )?;
    // Key first, then the certificate: a crash in between leaves a mismatch the next run
    // detects (and repairs), never a certificate for a key that is gone.
    m.tls
        .write(ssh, KEY_FILE, key.expose().as_bytes(), 0o600)
        .await?;
    m.tls.write(ssh, CERT_FILE, cert.as_bytes(), 0o644).await?;
    m.tls
        .write(ssh, CA_FILE, ca.cert_pem.as_bytes(), 0o644)
        .await?;
    Ok(())
}

async fn init(
    c: VaultClient,
    secrets: &SecretsDir,
    shares: u8,
    threshold: u8,
) -> Result<(), StageError> {
    if (0..usize::from(shares)).any(|i| secrets.exists(&unseal_key_name(i))) {
        return Err(StageError::Invalid(format!(
            "{} holds unseal keys of an earlier cluster, but {} is not initialised; move them away if that cluster is gone for good",
            secrets.root().display(),
            c.addr()
        )));
    }
    let body = json!({"secret_shares": shares, "secret_threshold": threshold});
    let v = c
        .put("sys/init", &body)
        .await?
        .ok_or_else(|| StageError::Invalid("sys/init answered nothing".into()))?;
    let keys: Vec<String> = v
        .get("keys_base64")
        .and_then(|k| serde_json::from_value(k.clone()).ok())
        .unwrap_or_default();
    let token = v
        .get("root_token")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    if keys.len() != usize::from(shares) || token.is_empty() {
        return Err(StageError::Invalid(format!(
            "sys/init returned {} keys and {} root token",
            keys.len(),
            if token.is_empty() { "no" } else { "a" }
        )));
    }
    for (i, k) in keys.into_iter().enumerate() {
        secrets.write(&unseal_key_name(i), &Secret::new(k))?;
    }
    secrets.write(ROOT_TOKEN, &Secret::new(token))?;
    Ok(())
}

async fn unseal(c: &VaultClient, secrets: &SecretsDir, threshold: u8) -> Result<(), StageError> {
    let s = c.seal_status().await?;
    if !s.sealed {
        return Ok(());
    }
    if s.progress > 0 {
        // Someone else's partial attempt: start over with ours.
        c.put("sys/unseal", &json!({"reset": true})).await?;
    }
    let need = usize::try_from(s.t)
        .unwrap_or(usize::from(threshold))
        .max(1);
    let mut given = 0;
    let mut i = 0;
    while given < need {
        let name = unseal_key_name(i);
        if i >= 256 {
            return Err(StageError::Invalid(format!(
                "{} holds {given} unseal keys, {need} are needed to unseal {}",
                secrets.root().display(),
                c.addr()
            )));
        }
        i += 1;
        let Some(k) = secrets.read(&name)? else {
            continue;
        };
        let r = c
            .put("sys/unseal", &json!({"key": k.expose().trim()}))
            .await?;
        given += 1;
        if r.and_then(|r| r.get("sealed").and_then(serde_json::Value::as_bool)) == Some(false) {
            return Ok(());
        }
    }
    // A joining member finishes unsealing in the background.
    wait_until(
        &format!("{} stayed sealed", c.addr()),
        Duration::from_secs(90),
        || async { Ok(!c.seal_status().await?.sealed) },
    )
    .await
}

/// Peers to remove: raft peers no member declares, when every declared member is a peer
/// (a cluster in the middle of a change of membership is left alone).
pub fn stale_peers(members: &[Member], peers: &[(String, bool)]) -> Vec<Step> {
    let all_present = members
        .iter()
        .all(|m| peers.iter().any(|(id, _)| *id == m.name));
    if !all_present {
        return vec![];
    }
    peers
        .iter()
        .filter(|(id, _)| !members.iter().any(|m| m.name == *id))
        .map(|(id, _)| Step::RemovePeer {
            node_id: id.clone(),
        })
        .collect()
}

/// Members whose bootstrap certificate can now go to their agent: cloud members (they
/// have an agent command) with a valid bootstrap certificate, once the Exoscale auth
/// backend the agent logs in with is configured.
pub fn agent_switches(state: &ClusterState, auth_configured: bool) -> Vec<Step> {
    if !auth_configured {
        return vec![];
    }
    state
        .members
        .iter()
        .filter(|m| m.member.agent_command.is_some() && m.tls == TlsState::Valid)
        .map(|m| Step::SwitchToAgent {
            member: m.member.name.clone(),
        })
        .collect()
}

/// Starts a member's agent.
pub async fn switch_to_agent(m: &Member, ssh: &SshOptions) -> Result<(), StageError> {
    match &m.agent_command {
        Some(cmd) => m.tls.run(ssh, cmd).await,
        None => Ok(()),
    }
}

/// Removes a raft peer (needs a token).
pub async fn remove_peer(c: &VaultClient, node_id: &str) -> Result<(), VaultError> {
    c.write(
        "sys/storage/raft/remove-peer",
        &json!({ "server_id": node_id }),
    )
    .await
    .map(|_| ())
}

/// The raft peers' node ids (needs a token).
pub async fn raft_peers(c: &VaultClient) -> Result<Vec<(String, bool)>, VaultError> {
    let v = c.read("sys/storage/raft/configuration").await?;
    let servers = v
        .as_ref()
        .and_then(|v| v.pointer("/data/config/servers"))
        .and_then(|s| s.as_array())
        .cloned()
        .unwrap_or_default();
    Ok(servers
        .iter()
        .map(|s| {
            (
                s.get("node_id")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string(),
                s.get("voter")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    /// An intermediate signed by `root` (as the Vault ICA), and a leaf it signs valid from
    /// `from` to `to` (Unix seconds), written to `dir` the way vault-agent renders them.
    fn agent_files(root: &Ca, dir: &Path, from: i64, to: i64) {
        let root_key = KeyPair::from_pem(root.key_pem.expose()).unwrap();
        let root_issuer = Issuer::from_ca_cert_pem(&root.cert_pem, root_key).unwrap();
        let ica_key = KeyPair::generate().unwrap();
        let mut ica = CertificateParams::default();
        ica.distinguished_name = pki::distinguished_name(&Default::default(), "p Vault ICA");
        ica.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ica_cert = ica.signed_by(&ica_key, &root_issuer).unwrap();
        let ica_issuer = Issuer::new(ica, ica_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["p-vault".to_string()]).unwrap();
        leaf.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
        leaf.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &ica_issuer).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(CA_FILE), ica_cert.pem()).unwrap();
        std::fs::write(dir.join(CERT_FILE), leaf_cert.pem() + &ica_cert.pem()).unwrap();
        std::fs::write(dir.join(KEY_FILE), leaf_key.serialize_pem()).unwrap();
    }

    #[tokio::test]
    async fn agent_certificates_are_kept_until_they_expire() {
        let t = tempfile::tempdir().unwrap();
        let root = pki::generate_root(
            &Default::default(),
            "root",
            time::Duration::days(10),
            forge_schema::platform::KeyAlgorithm::EcdsaP256,
        )
        .unwrap();
        let m = Member {
            name: "m".into(),
            api_addr: "https://127.0.0.1:8200".into(),
            tls: TlsTarget {
                dir: t.path().join("tls"),
                ssh: None,
                reload: None,
            },
            agent_command: None,
        };
        let names = ServerNames {
            common_name: "p-vault".into(),
            dns: vec!["p-vault".into()],
            ips: vec![],
        };
        let ssh = crate::transport::ssh_options(t.path(), None);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        agent_files(&root, &m.tls.dir, now - 3600, now + 3600);
        let s = tls_state(&m, Some(&root.cert_pem), &names, &ssh)
            .await
            .unwrap();
        assert_eq!(s, TlsState::AgentManaged);
        agent_files(&root, &m.tls.dir, now - 7200, now - 60);
        let s = tls_state(&m, Some(&root.cert_pem), &names, &ssh)
            .await
            .unwrap();
        assert!(matches!(s, TlsState::Renew(r) if r.contains("expired")));
        // An intermediate the root did not sign is not accepted.
        let other = pki::generate_root(
            &Default::default(),
            "other",
            time::Duration::days(10),
            forge_schema::platform::KeyAlgorithm::EcdsaP256,
        )
        .unwrap();
        agent_files(&other, &m.tls.dir, now - 3600, now + 3600);
        let s = tls_state(&m, Some(&root.cert_pem), &names, &ssh)
            .await
            .unwrap();
        assert!(matches!(s, TlsState::Renew(r) if r.contains("neither")));
    }

    fn state(m: Member, tls: TlsState) -> MemberState {
        MemberState {
            member: m,
            tls,
            seal: None,
            unreachable: None,
        }
    }

    #[test]
    fn only_cloud_members_with_a_bootstrap_certificate_switch_to_the_agent() {
        let cloud = Member::cloud(
            "p-vault-abcde-fghij",
            "192.0.2.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
        );
        let mut local = cloud.clone();
        local.name = "local".into();
        local.agent_command = None;
        let mut done = cloud.clone();
        done.name = "done".into();
        let s = ClusterState {
            root_ca_exists: true,
            members: vec![
                state(cloud, TlsState::Valid),
                state(local, TlsState::Valid),
                state(done, TlsState::AgentManaged),
            ],
            unseal_keys_present: 5,
        };
        assert_eq!(
            agent_switches(&s, true),
            vec![Step::SwitchToAgent {
                member: "p-vault-abcde-fghij".into()
            }]
        );
        assert!(agent_switches(&s, false).is_empty());
    }
}
