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
//!
//! A [`Cluster`] holds what every step works with; `observe` and `apply` (the modules of
//! the same names) are its two halves.

mod apply;
mod observe;

pub use apply::{Report, raft_peers, remove_peer, switch_to_agent, wait_until};

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use forge_schema::platform::Platform;

use crate::client::{SealStatus, VaultClient};
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
        use forge_schema::contract::vault as image;
        let host = match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        Member {
            name: name.to_string(),
            api_addr: format!("https://{host}:{}", image::API_PORT),
            tls: TlsTarget {
                dir: PathBuf::from(image::TLS_DIR),
                ssh: Some(SshTarget {
                    user: image::SSH_USER.into(),
                    host: ip.to_string(),
                    port: 22,
                }),
                reload: Some(format!(
                    "systemctl enable --now {unit} && systemctl reload {unit}",
                    unit = image::SERVER_UNIT
                )),
            },
            agent_command: Some(format!(
                "systemctl enable {unit} && systemctl restart {unit}",
                unit = image::AGENT_UNIT
            )),
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
pub const CLOUD_SSH_USER: &str = forge_schema::contract::vault::SSH_USER;

/// The files of a member's TLS directory.
pub const CA_FILE: &str = forge_schema::contract::vault::CA_FILE;
pub const CERT_FILE: &str = forge_schema::contract::vault::CERT_FILE;
pub const KEY_FILE: &str = forge_schema::contract::vault::KEY_FILE;

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

/// What the lifecycle works with: the platform, its members, the secrets directory, the
/// Vault client (with the TLS trust of the platform CA) and how members are reached.
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    pub platform: &'a Platform,
    pub members: &'a [Member],
    pub secrets: &'a SecretsDir,
    pub client: &'a VaultClient,
    /// The Vault elastic IP, a name of every member certificate.
    pub eip: Option<IpAddr>,
    pub ssh: &'a SshOptions,
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
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::observe::tls_state;
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
