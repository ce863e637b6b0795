//! The etcd stage's cluster side (spec §6.6): what the cluster says of itself, checked
//! against the instance pool it runs on, and the one change forge makes to it: removing a
//! member whose instance left the pool, only while that keeps a majority.
//!
//! forge talks to etcd through its v3 JSON gateway (`/v3/cluster/member/list`,
//! `/v3/maintenance/status`, `/v3/cluster/member/remove`) and `/health`, over TLS with a
//! client certificate of the etcd CA. The gateway is part of every etcd 3.5 server and
//! needs only an HTTP client; a gRPC client would bring protobuf code generation for
//! three calls.
//!
//! [`observe`] reads, [`check`] compares with the pool ([`Finding`]s), [`reconcile`]
//! decides what may be removed now and what has to wait ([`Step`]), [`remove`] carries a
//! removal out.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::json;

/// What went wrong, by kind.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The client identity or an endpoint is unusable (fix the input).
    #[error("{0}")]
    Config(String),
    /// No endpoint answered; what each said.
    #[error("no etcd member answered the member list: {errors}")]
    Unreachable { errors: String },
    /// A member answered with an error.
    #[error("{endpoint}: {what}: {message}")]
    Api {
        endpoint: String,
        what: &'static str,
        message: String,
    },
}

/// The client certificate forge presents and the CA it verifies members with (PEM).
#[derive(Clone)]
pub struct ClientIdentity {
    pub ca_pem: String,
    pub cert_pem: String,
    /// The private key; never printed ([`std::fmt::Debug`] leaves it out).
    pub key_pem: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// An etcd member as the member list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Empty for a member that was added but has not started yet.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl Member {
    /// The host of the first peer URL (the address a member was added with).
    pub fn peer_host(&self) -> Option<IpAddr> {
        let url = self.peer_urls.first()?;
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let host = match rest.rsplit_once(':') {
            Some((h, _)) => h,
            None => rest,
        };
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }
}

/// How one member is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// It answers `/health` with `true`; `leader` is the leader it follows.
    Healthy { leader: u64, version: String },
    /// It does not answer, or answers unhealthy; why.
    Down(String),
}

/// A member and its health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    pub member: Member,
    pub health: Health,
}

/// What the cluster says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The endpoint the member list came from.
    pub endpoint: String,
    pub cluster_id: u64,
    pub members: Vec<MemberState>,
}

impl Observation {
    pub fn healthy(&self) -> usize {
        self.members
            .iter()
            .filter(|m| matches!(m.health, Health::Healthy { .. }))
            .count()
    }

    /// The leaders the healthy members follow (one, in a healthy cluster).
    pub fn leaders(&self) -> BTreeSet<u64> {
        self.members
            .iter()
            .filter_map(|m| match m.health {
                Health::Healthy { leader, .. } if leader != 0 => Some(leader),
                _ => None,
            })
            .collect()
    }

    /// The name of member `id` (its hex id when it has none in the list).
    pub fn name_of(&self, id: u64) -> String {
        self.members
            .iter()
            .find(|m| m.member.id == id)
            .map_or_else(|| format!("{id:x}"), |m| m.member.name.clone())
    }
}

/// An instance of the pool, as the cloud shows it: the member it should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub ip: IpAddr,
}

/// Something in the cluster that differs from the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A member of the pool that does not answer healthy.
    Down { name: String, reason: String },
    /// A pool instance that is no member (booting, or its first boot failed).
    Missing { name: String },
    /// A member no instance of the pool runs (its instance left the pool, or it was
    /// added by hand).
    Foreign { id: u64, name: String },
    /// The healthy members follow no leader, or different ones.
    Leader { leaders: Vec<String> },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Down { name, reason } => write!(f, "member {name} is down: {reason}"),
            Finding::Missing { name } => write!(
                f,
                "instance {name} is no member of the cluster (still booting, or its first boot failed: journalctl -u cloud-final on it)"
            ),
            Finding::Foreign { id, name } if name.is_empty() => write!(
                f,
                "member {id:x} (added, never started) is run by no instance of the pool"
            ),
            Finding::Foreign { id, name } => {
                write!(
                    f,
                    "member {name} ({id:x}) is run by no instance of the pool"
                )
            }
            Finding::Leader { leaders } if leaders.is_empty() => {
                write!(f, "the cluster has no leader")
            }
            Finding::Leader { leaders } => {
                write!(
                    f,
                    "members follow different leaders: {}",
                    leaders.join(", ")
                )
            }
        }
    }
}

/// Compares the cluster with the pool: empty when the member list is the pool's
/// instances, every member is healthy and all follow one leader.
pub fn check(obs: &Observation, pool: &[Instance]) -> Vec<Finding> {
    let mut out = Vec::new();
    let names: BTreeSet<&str> = pool.iter().map(|i| i.name.as_str()).collect();
    let addresses: BTreeSet<IpAddr> = pool.iter().map(|i| i.ip).collect();
    for m in &obs.members {
        let of_pool = if m.member.name.is_empty() {
            // Not started yet: it belongs to the pool if an instance has its address.
            m.member.peer_host().is_some_and(|h| addresses.contains(&h))
        } else {
            names.contains(m.member.name.as_str())
        };
        if !of_pool {
            out.push(Finding::Foreign {
                id: m.member.id,
                name: m.member.name.clone(),
            });
        } else if let Health::Down(reason) = &m.health {
            out.push(Finding::Down {
                name: display_name(&m.member),
                reason: reason.clone(),
            });
        }
    }
    for i in pool {
        if !obs.members.iter().any(|m| m.member.name == i.name) {
            out.push(Finding::Missing {
                name: i.name.clone(),
            });
        }
    }
    let leaders = obs.leaders();
    if obs.healthy() > 0 && leaders.len() != 1 {
        out.push(Finding::Leader {
            leaders: leaders.iter().map(|l| obs.name_of(*l)).collect(),
        });
    }
    out
}

fn display_name(m: &Member) -> String {
    if m.name.is_empty() {
        format!("{:x} (not started)", m.id)
    } else {
        m.name.clone()
    }
}

/// What forge does about a foreign member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Remove it now: the members left keep a majority.
    Remove { id: u64, name: String },
    /// Leave it for now, and why.
    Wait {
        id: u64,
        name: String,
        reason: String,
    },
}

/// The members of `n` a majority needs.
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// Decides, one member at a time, which foreign members may go. A removal is committed
/// by the members left; it is safe only if the healthy members after it are still a
/// majority of the smaller cluster (removing a healthy foreign member counts against
/// that). The cluster must have a majority now, or nothing can be removed at all.
pub fn reconcile(obs: &Observation, pool: &[Instance]) -> Vec<Step> {
    let mut size = obs.members.len();
    let mut healthy = obs.healthy();
    let mut out = Vec::new();
    // Down members first: removing them costs no healthy member.
    let mut foreign: Vec<&MemberState> = check(obs, pool)
        .iter()
        .filter_map(|f| match f {
            Finding::Foreign { id, .. } => obs.members.iter().find(|m| m.member.id == *id),
            _ => None,
        })
        .collect();
    foreign.sort_by_key(|m| matches!(m.health, Health::Healthy { .. }));
    for m in foreign {
        let name = display_name(&m.member);
        let is_healthy = matches!(m.health, Health::Healthy { .. });
        let after_size = size - 1;
        let after_healthy = healthy - usize::from(is_healthy);
        if healthy < quorum(size) {
            out.push(Step::Wait {
                id: m.member.id,
                name,
                reason: format!(
                    "the cluster has no majority ({healthy} of {size} members healthy, {} needed): no change can be committed; bring members back (or restore from a snapshot)",
                    quorum(size)
                ),
            });
        } else if after_size == 0 || after_healthy < quorum(after_size) {
            out.push(Step::Wait {
                id: m.member.id,
                name,
                reason: format!(
                    "removing it would leave {after_healthy} healthy of {after_size} members, under the majority of {}; waiting for the pool's members to be healthy",
                    quorum(after_size.max(1))
                ),
            });
        } else {
            out.push(Step::Remove {
                id: m.member.id,
                name,
            });
            size = after_size;
            healthy = after_healthy;
        }
    }
    out
}

/// Reads and checks etcd clusters with one client identity.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
}

fn u64_str<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    // The gateway writes 64-bit integers as JSON strings (proto3 JSON mapping).
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        N(u64),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(0),
        Some(N::N(n)) => Ok(n),
        Some(N::S(s)) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default, deserialize_with = "u64_str")]
    cluster_id: u64,
}

#[derive(Deserialize)]
struct ApiMember {
    #[serde(rename = "ID", default, deserialize_with = "u64_str")]
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
}

#[derive(Deserialize)]
struct MemberList {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    members: Vec<ApiMember>,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default, deserialize_with = "u64_str")]
    leader: u64,
    #[serde(default)]
    version: String,
    #[serde(default)]
    errors: Vec<String>,
}

#[derive(Deserialize)]
struct HealthAnswer {
    health: String,
    #[serde(default)]
    reason: String,
}

impl Client {
    pub fn new(identity: &ClientIdentity) -> Result<Self, EtcdError> {
        let ca = reqwest::Certificate::from_pem_bundle(identity.ca_pem.as_bytes())
            .map_err(|e| EtcdError::Config(format!("etcd CA certificate: {e}")))?;
        if ca.is_empty() {
            return Err(EtcdError::Config(
                "the etcd CA holds no PEM certificate".into(),
            ));
        }
        let pem = format!("{}\n{}", identity.cert_pem.trim(), identity.key_pem.trim());
        let id = reqwest::Identity::from_pem(pem.as_bytes())
            .map_err(|e| EtcdError::Config(format!("etcd client certificate or key: {e}")))?;
        let http = reqwest::Client::builder()
            .tls_certs_only(ca)
            .identity(id)
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("forge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EtcdError::Config(format!("HTTP client: {e}")))?;
        Ok(Self { http })
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        path: &str,
        what: &'static str,
        body: serde_json::Value,
    ) -> Result<T, EtcdError> {
        let api = |message: String| EtcdError::Api {
            endpoint: endpoint.to_string(),
            what,
            message,
        };
        let r = self
            .http
            .post(format!("{}{path}", endpoint.trim_end_matches('/')))
            .json(&body)
            .send()
            .await
            .map_err(|e| api(error_chain(&e)))?;
        let status = r.status();
        let text = r.text().await.map_err(|e| api(error_chain(&e)))?;
        if !status.is_success() {
            return Err(api(format!("HTTP {status}: {}", text.trim())));
        }
        serde_json::from_str(&text).map_err(|e| api(format!("unexpected answer ({e}): {text}")))
    }

    /// The member list, from the first endpoint that answers.
    pub async fn members(
        &self,
        endpoints: &[String],
    ) -> Result<(String, u64, Vec<Member>), EtcdError> {
        let mut errors = Vec::new();
        for e in endpoints {
            match self
                .post::<MemberList>(e, "/v3/cluster/member/list", "listing members", json!({}))
                .await
            {
                Ok(list) => {
                    let members = list
                        .members
                        .into_iter()
                        .map(|m| Member {
                            id: m.id,
                            name: m.name,
                            peer_urls: m.peer_urls,
                            client_urls: m.client_urls,
                        })
                        .collect();
                    return Ok((e.clone(), list.header.cluster_id, members));
                }
                Err(err) => errors.push(err.to_string()),
            }
        }
        if errors.is_empty() {
            errors.push("no endpoint given".into());
        }
        Err(EtcdError::Unreachable {
            errors: errors.join("; "),
        })
    }

    /// One member's health: `/health` (true only with a leader and a committed read) and
    /// its status (the leader it follows).
    pub async fn health(&self, m: &Member) -> Health {
        let Some(url) = m.client_urls.first() else {
            return Health::Down("not started (no client URL)".into());
        };
        let h: Result<HealthAnswer, String> = async {
            let r = self
                .http
                .get(format!("{}/health", url.trim_end_matches('/')))
                .send()
                .await
                .map_err(|e| error_chain(&e))?;
            r.json().await.map_err(|e| error_chain(&e))
        }
        .await;
        match h {
            Err(e) => return Health::Down(format!("{url}: {e}")),
            Ok(h) if h.health != "true" => {
                let reason = if h.reason.is_empty() {
                    "unhealthy".to_string()
                } else {
                    h.reason
                };
                return Health::Down(format!("{url}: {reason}"));
            }
            Ok(_) => {}
        }
        match self
            .post::<Status>(url, "/v3/maintenance/status", "reading status", json!({}))
            .await
        {
            Ok(s) if !s.errors.is_empty() => Health::Down(s.errors.join("; ")),
            Ok(s) => Health::Healthy {
                leader: s.leader,
                version: s.version,
            },
            Err(e) => Health::Down(e.to_string()),
        }
    }

    /// The member list and every member's health, read at once.
    pub async fn observe(&self, endpoints: &[String]) -> Result<Observation, EtcdError> {
        let (endpoint, cluster_id, members) = self.members(endpoints).await?;
        let healths = futures_util::future::join_all(members.iter().map(|m| self.health(m))).await;
        Ok(Observation {
            endpoint,
            cluster_id,
            members: members
                .into_iter()
                .zip(healths)
                .map(|(member, health)| MemberState { member, health })
                .collect(),
        })
    }

    /// Removes a member, through the endpoint of a healthy member.
    pub async fn remove(&self, obs: &Observation, id: u64) -> Result<(), EtcdError> {
        let endpoint = obs
            .members
            .iter()
            .filter(|m| m.member.id != id && matches!(m.health, Health::Healthy { .. }))
            .find_map(|m| m.member.client_urls.first())
            .unwrap_or(&obs.endpoint);
        let _: serde_json::Value = self
            .post(
                endpoint,
                "/v3/cluster/member/remove",
                "removing a member",
                json!({ "ID": id.to_string() }),
            )
            .await?;
        Ok(())
    }
}

/// What one [`Client::round`] saw and did.
#[derive(Debug, Clone)]
pub struct Round {
    /// The cluster after the round's removals.
    pub observation: Observation,
    /// Members removed (their instance left the pool), by name.
    pub removed: Vec<String>,
    /// Foreign members left in place, and why.
    pub waiting: Vec<(String, String)>,
    /// What still differs from the pool; empty when the cluster is converged.
    pub findings: Vec<Finding>,
}

impl Client {
    /// Observes the cluster, removes the foreign members [`reconcile`] lets go, and
    /// checks what is left against the pool.
    pub async fn round(&self, endpoints: &[String], pool: &[Instance]) -> Result<Round, EtcdError> {
        let mut obs = self.observe(endpoints).await?;
        let mut removed = Vec::new();
        let mut waiting = Vec::new();
        for step in reconcile(&obs, pool) {
            match step {
                Step::Remove { id, name } => {
                    self.remove(&obs, id).await?;
                    removed.push(name);
                }
                Step::Wait { name, reason, .. } => waiting.push((name, reason)),
            }
        }
        if !removed.is_empty() {
            obs = self.observe(endpoints).await?;
        }
        let findings = check(&obs, pool);
        Ok(Round {
            observation: obs,
            removed,
            waiting,
            findings,
        })
    }
}

/// An error with its causes (reqwest's own message leaves out why a connection failed).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn member(id: u64, name: &str, ip: &str, healthy: bool) -> MemberState {
        MemberState {
            member: Member {
                id,
                name: name.into(),
                peer_urls: vec![format!("https://{ip}:2380")],
                client_urls: if name.is_empty() {
                    vec![]
                } else {
                    vec![format!("https://{ip}:2379")]
                },
            },
            health: if healthy {
                Health::Healthy {
                    leader: 1,
                    version: "3.5.4".into(),
                }
            } else {
                Health::Down("connection refused".into())
            },
        }
    }

    fn obs(members: Vec<MemberState>) -> Observation {
        Observation {
            endpoint: "https://192.0.2.1:2379".into(),
            cluster_id: 7,
            members,
        }
    }

    fn pool(names: &[(&str, &str)]) -> Vec<Instance> {
        names
            .iter()
            .map(|(n, ip)| Instance {
                name: n.to_string(),
                ip: ip.parse().unwrap(),
            })
            .collect()
    }

    #[test]
    fn a_cluster_that_is_its_pool_has_no_findings() {
        let o = obs(vec![
            member(1, "a", "192.0.2.1", true),
            member(2, "b", "192.0.2.2", true),
            member(3, "c", "192.0.2.3", true),
        ]);
        let p = pool(&[("a", "192.0.2.1"), ("b", "192.0.2.2"), ("c", "192.0.2.3")]);
        assert_eq!(check(&o, &p), []);
        assert_eq!(reconcile(&o, &p), []);
    }

    #[test]
    fn down_missing_and_foreign_members_are_reported() {
        let o = obs(vec![
            member(1, "a", "192.0.2.1", true),
            member(2, "b", "192.0.2.2", false),
            member(3, "old", "192.0.2.3", false),
            member(4, "", "192.0.2.9", false),
        ]);
        let p = pool(&[("a", "192.0.2.1"), ("b", "192.0.2.2"), ("d", "192.0.2.4")]);
        let f: Vec<String> = check(&o, &p).iter().map(ToString::to_string).collect();
        assert_eq!(
            f,
            [
                "member b is down: connection refused",
                "member old (3) is run by no instance of the pool",
                "member 4 (added, never started) is run by no instance of the pool",
                "instance d is no member of the cluster (still booting, or its first boot failed: journalctl -u cloud-final on it)",
            ]
        );
        // An unstarted member whose address is the pool's is its instance booting.
        let o = obs(vec![
            member(1, "a", "192.0.2.1", true),
            member(4, "", "192.0.2.4", false),
        ]);
        let f = check(&o, &p);
        assert!(f.contains(&Finding::Down {
            name: "4 (not started)".into(),
            reason: "connection refused".into()
        }));
        assert!(!f.iter().any(|x| matches!(x, Finding::Foreign { .. })));
    }

    #[test]
    fn a_departed_member_goes_only_while_a_majority_stays() {
        let p = pool(&[("a", "192.0.2.1"), ("b", "192.0.2.2"), ("d", "192.0.2.4")]);
        // 3 members, the departed one down: 2 of 2 left, safe.
        let o = obs(vec![
            member(1, "a", "192.0.2.1", true),
            member(2, "b", "192.0.2.2", true),
            member(3, "c", "192.0.2.3", false),
        ]);
        assert_eq!(
            reconcile(&o, &p),
            [Step::Remove {
                id: 3,
                name: "c".into()
            }]
        );
        // One of the two left is down too: 1 healthy of 2 is no majority.
        let o = obs(vec![
            member(1, "a", "192.0.2.1", true),
            member(2, "b", "192.0.2.2", false),
            member(3, "c", "192.0.2.3", true),
        ]);
        let steps = reconcile(&o, &p);
        let [Step::Wait { reason, .. }] = steps.as_slice() else {
            panic!("{steps:?}")
        };
        assert!(
            reason.contains("would leave 1 healthy of 2 members, under the majority of 2"),
            "{reason}"
        );
        // No majority now: nothing can be committed.
        let o = obs(vec![
            member(1, "a", "192.0.2.1", true),
            member(2, "b", "192.0.2.2", false),
            member(3, "c", "192.0.2.3", false),
        ]);
        let steps = reconcile(&o, &p);
        let [Step::Wait { reason, .. }] = steps.as_slice() else {
            panic!("{steps:?}")
        };
        assert!(
            reason.contains("no majority (1 of 3 members healthy, 2 needed)"),
            "{reason}"
        );
        // Two departed of five, both down: the first goes (3 of 4), then the second (3 of 3).
        let p5 = pool(&[("a", "192.0.2.1"), ("b", "192.0.2.2"), ("e", "192.0.2.5")]);
        let o = obs(vec![
            member(1, "a", "192.0.2.1", true),
            member(2, "b", "192.0.2.2", true),
            member(5, "e", "192.0.2.5", true),
            member(3, "c", "192.0.2.3", false),
            member(4, "d", "192.0.2.4", false),
        ]);
        assert_eq!(reconcile(&o, &p5).len(), 2);
        assert!(
            reconcile(&o, &p5)
                .iter()
                .all(|s| matches!(s, Step::Remove { .. }))
        );
    }

    #[test]
    fn peer_hosts_parse_with_and_without_brackets() {
        let mut m = member(1, "a", "192.0.2.1", true).member;
        assert_eq!(m.peer_host(), Some("192.0.2.1".parse().unwrap()));
        m.peer_urls = vec!["https://[2001:db8::1]:2380".into()];
        assert_eq!(m.peer_host(), Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn the_gateway_answer_parses() {
        let l: MemberList = serde_json::from_str(r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","raft_term":"2"},"members":[{"ID":"10276657743932975437","name":"a","peerURLs":["https://127.0.1.1:2380"],"clientURLs":["https://127.0.1.1:2379"]},{"ID":"17","peerURLs":["https://127.0.1.4:2380"]}]}"#).unwrap();
        assert_eq!(l.header.cluster_id, 14841639068965178418);
        assert_eq!(l.members[0].id, 10276657743932975437);
        assert_eq!(l.members[1].name, "");
        assert!(l.members[1].client_urls.is_empty());
    }
}
