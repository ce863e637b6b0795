//! The first half of the lifecycle: what the cluster is now (TLS files, each member's seal
//! status), read from every member at once.

use crate::StageError;
use crate::pki::{self, ServerNames};
use crate::secrets::Secret;
use crate::transport::SshOptions;

use super::{
    CA_FILE, CERT_FILE, Cluster, ClusterState, KEY_FILE, Member, MemberState, TlsState,
    load_root_ca, unseal_key_name,
};

pub(super) async fn tls_state(
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

impl Cluster<'_> {
    /// Reads the cluster's state.
    pub async fn observe(&self) -> Result<ClusterState, StageError> {
        let Cluster {
            platform: p,
            members,
            secrets,
            client,
            eip,
            ssh,
        } = *self;
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
}
