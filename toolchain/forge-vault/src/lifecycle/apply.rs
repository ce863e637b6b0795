//! The second half of the lifecycle: carrying out the missing steps in order (root CA,
//! TLS bootstrap, init, raft join, unseal), and the operations of the steps that come
//! after the configuration (removing stale raft peers, handing TLS to the agents).

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use forge_schema::platform::Platform;

use crate::StageError;
use crate::client::{VaultClient, VaultError};
use crate::pki::{self, Ca};
use crate::secrets::{Secret, SecretsDir};
use crate::transport::SshOptions;

use super::{
    CA_FILE, CERT_FILE, Cluster, KEY_FILE, Member, ROOT_TOKEN, Step, create_root_ca, load_root_ca,
    unseal_key_name,
};

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

impl Cluster<'_> {
    /// Carries out `steps` in order, reporting each.
    pub async fn apply(&self, steps: &[Step], report: Report<'_>) -> Result<(), StageError> {
        let Cluster {
            platform: p,
            members,
            secrets,
            client,
            eip,
            ssh,
        } = *self;
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
                    let body =
                        json!({"leader_api_addr": l.api_addr, "leader_ca_cert": ca.cert_pem});
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
                        "raft peers are removed, and agents started, after the configuration"
                            .into(),
                    ));
                }
            }
            report(&step.describe());
        }
        Ok(())
    }
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
