//! The etcd cluster behind the etcd stage: checked against the pool's instances after a
//! deploy (departed members removed while a majority stays, waiting until it matches)
//! and in a plan. forge presents the client certificate etcdctl would
//! (`ETCDCTL_CACERT`, `ETCDCTL_CERT`, `ETCDCTL_KEY`).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use forge_etcd::{ClientIdentity, Finding, Instance};
use forge_exoscale::Client;
use forge_schema::contract::etcd as image;
use forge_schema::platform::Platform;
use serde_json::{Value, json};

use crate::env::{ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY};
use crate::settings::Globals;

/// Why the cluster was not checked, when no identity is set.
pub const NOT_CHECKED: &str = "the etcd cluster was not checked: set ETCDCTL_CACERT, ETCDCTL_CERT and ETCDCTL_KEY to a client certificate of the etcd CA (as for etcdctl)";

/// The client identity from the environment: all three files, or none.
pub fn identity(g: &Globals) -> Result<Option<ClientIdentity>> {
    let vars = [ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY].map(|v| (v, g.env.get(v)));
    if vars.iter().all(|(_, p)| p.is_none()) {
        return Ok(None);
    }
    let mut pems = Vec::new();
    for (var, path) in vars {
        let Some(path) = path else {
            bail!(
                "{var} is not set: the etcd check needs ETCDCTL_CACERT, ETCDCTL_CERT and ETCDCTL_KEY together"
            );
        };
        pems.push(
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {var} {path}"))?,
        );
    }
    let [ca_pem, cert_pem, key_pem]: [String; 3] = pems
        .try_into()
        .map_err(|_| anyhow::anyhow!("three files were read"))?;
    Ok(Some(ClientIdentity {
        ca_pem,
        cert_pem,
        key_pem,
    }))
}

/// The pool's instances and the client endpoints (every member, then the elastic IP).
async fn pool(client: &Client, p: &Platform) -> Result<(Vec<Instance>, Vec<String>)> {
    let hosts = forge_deploy::pool_hosts(client, p, "etcd").await?;
    let instances = hosts
        .members
        .iter()
        .map(|(name, ip)| Instance {
            name: name.clone(),
            ip: *ip,
        })
        .collect();
    Ok((instances, hosts.urls(image::CLIENT_PORT)))
}

/// The findings as JSON and text lines.
fn describe(findings: &[Finding]) -> Vec<String> {
    findings.iter().map(ToString::to_string).collect()
}

/// After `deploy --stage etcd`: rounds of observe, remove what may go, check, until the
/// cluster is the pool (then a summary) or `timeout` passes (then an error listing what
/// differs). A timeout of zero checks once and reports differences as warnings.
pub fn converge(
    g: &Globals,
    client: &Client,
    p: &Platform,
    identity: &ClientIdentity,
    timeout: Duration,
) -> Result<Value> {
    let etcd = forge_etcd::Client::new(identity)?;
    let rt = g.runtime()?;
    let started = Instant::now();
    let mut told = std::collections::BTreeSet::new();
    loop {
        let (instances, endpoints) = rt.block_on(pool(client, p))?;
        let round = rt.block_on(etcd.round(&endpoints, &instances));
        let last = match round {
            Ok(r) => {
                for name in &r.removed {
                    g.printer.eprintln(&format!(
                        "- removed etcd member {name}: its instance left the pool"
                    ));
                }
                for (name, why) in &r.waiting {
                    if told.insert(format!("{name}{why}")) {
                        g.printer
                            .warn(&format!("etcd member {name} stays for now: {why}"));
                    }
                }
                if r.findings.is_empty() {
                    let leader = r
                        .observation
                        .leaders()
                        .first()
                        .map(|l| r.observation.name_of(*l))
                        .unwrap_or_default();
                    let members = r.observation.members.len();
                    g.printer.status(
                        "Checked",
                        &format!(
                            "etcd cluster of {}: {members} members, all healthy, leader {leader} ({:.1}s)",
                            p.name,
                            started.elapsed().as_secs_f64()
                        ),
                    );
                    return Ok(json!({
                        "members": members,
                        "leader": leader,
                        "removed": r.removed,
                        "findings": [],
                    }));
                }
                describe(&r.findings)
            }
            Err(e) => vec![e.to_string()],
        };
        if started.elapsed() >= timeout {
            if timeout.is_zero() {
                for l in &last {
                    g.printer.warn(&format!("etcd: {l}"));
                }
                return Ok(json!({ "findings": last }));
            }
            bail!(
                "the etcd cluster of {} does not match its pool after {}s:\n  {}\n(forge deploy --stage etcd checks again; --wait-timeout sets how long it waits)",
                p.name,
                timeout.as_secs(),
                last.join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_secs(2).min(timeout));
    }
}

/// For `plan --stage etcd`: what differs between the cluster and the pool, if an identity
/// is set (`None` otherwise).
pub fn findings(g: &Globals, client: &Client, p: &Platform) -> Result<Option<Vec<String>>> {
    let Some(identity) = identity(g)? else {
        return Ok(None);
    };
    let etcd = forge_etcd::Client::new(&identity)?;
    let rt = g.runtime()?;
    let (instances, endpoints) = rt.block_on(pool(client, p))?;
    if instances.is_empty() {
        return Ok(Some(Vec::new()));
    }
    Ok(Some(match rt.block_on(etcd.observe(&endpoints)) {
        Ok(obs) => describe(&forge_etcd::check(&obs, &instances)),
        Err(e) => vec![e.to_string()],
    }))
}
