//! forge's etcd checks (crate forge-etcd) against a real etcd 3.5.4 cluster, built from
//! source by the `local` variant: members on their own loopback addresses at etcd's
//! ports (as on the pool's instances), TLS with client certificates. A healthy cluster
//! has no findings; a stopped member shows as down; a replaced instance (one member's
//! instance gone from the pool, a new one there) converges: forge removes the departed
//! member while a majority stays, the new member joins, and nothing is left to report;
//! without a majority forge removes nothing and says why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Pki, Proc, etcd_member, etcdctl};
use forge_etcd::{Client, ClientIdentity, Finding, Health, Instance, Observation, Step};

/// The member names and addresses: one loopback address each, as instances have one
/// public address each.
fn host(i: u8) -> (String, String) {
    (format!("paas-etcd-{i}"), format!("127.0.1.{i}"))
}

fn urls(ip: &str) -> (String, String) {
    (format!("https://{ip}:2379"), format!("https://{ip}:2380"))
}

fn pool(ids: &[u8]) -> Vec<Instance> {
    ids.iter()
        .map(|i| {
            let (name, ip) = host(*i);
            Instance {
                name,
                ip: ip.parse().unwrap(),
            }
        })
        .collect()
}

fn start(pki: &Pki, root: &std::path::Path, i: u8, initial: &[u8], state: &str) -> Proc {
    let (name, ip) = host(i);
    let (client, peer) = urls(&ip);
    let cluster: Vec<String> = initial
        .iter()
        .map(|j| {
            let (n, ip) = host(*j);
            format!("{n}={}", urls(&ip).1)
        })
        .collect();
    etcd_member(
        pki,
        root,
        &name,
        (&client, &peer),
        &cluster.join(","),
        state,
    )
}

/// Observes until `done` holds (the members report their health asynchronously).
fn observe_until(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    endpoints: &[String],
    what: &str,
    procs: &mut [&mut Proc],
    done: impl Fn(&Observation) -> bool,
) -> Observation {
    let start = Instant::now();
    loop {
        let obs = rt.block_on(client.observe(endpoints));
        if let Ok(o) = &obs
            && done(o)
        {
            eprintln!("{what}: after {:.1}s", start.elapsed().as_secs_f64());
            return obs.unwrap();
        }
        for p in procs.iter_mut() {
            p.alive();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: not after 60s; last: {obs:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn checks_and_replacement_against_etcd_3_5_4() {
    let w = common::World::new();
    let root = w.path().to_path_buf();
    let pki = Pki::new(root.join("pki"));
    // Peers dial each other from 127.0.0.1 (the loopback's own address), and etcd checks
    // a peer's address against its certificate.
    let sans: Vec<String> = std::iter::once("IP:127.0.0.1".to_string())
        .chain((1..=6).map(|i| format!("IP:127.0.1.{i}")))
        .collect();
    pki.issue_for("etcd-member", "/CN=paas-etcd", &sans.join(","));
    pki.issue("forge", "/CN=forge");
    let read = |f: &str| std::fs::read_to_string(pki.path(f)).unwrap();
    let identity = ClientIdentity {
        ca_pem: read("ca.crt"),
        cert_pem: read("forge.crt"),
        key_pem: read("forge.key"),
    };
    assert!(!format!("{identity:?}").contains("PRIVATE"));
    let client = Client::new(&identity).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let endpoints =
        |ids: &[u8]| -> Vec<String> { ids.iter().map(|i| urls(&host(*i).1).0).collect() };

    // Three members, as the pool's first boot makes them.
    let mut a = start(&pki, &root, 1, &[1, 2, 3], "new");
    let mut b = start(&pki, &root, 2, &[1, 2, 3], "new");
    let mut c = start(&pki, &root, 3, &[1, 2, 3], "new");
    let all = endpoints(&[1, 2, 3, 4]);
    let obs = observe_until(
        &rt,
        &client,
        &all,
        "three healthy members",
        &mut [&mut a, &mut b, &mut c],
        |o| o.healthy() == 3 && o.leaders().len() == 1,
    );
    assert_eq!(forge_etcd::check(&obs, &pool(&[1, 2, 3])), []);
    assert!(obs.cluster_id != 0);
    for m in &obs.members {
        let Health::Healthy { version, .. } = &m.health else {
            panic!("{m:?}")
        };
        assert_eq!(version, "3.5.4");
    }
    // The pool has one more instance than the cluster has members: it is missing.
    let f = forge_etcd::check(&obs, &pool(&[1, 2, 3, 4]));
    assert_eq!(
        f,
        [Finding::Missing {
            name: "paas-etcd-4".into()
        }]
    );

    // A member that stops is down; its instance is still the pool's, so nothing goes.
    drop(c);
    let obs = observe_until(
        &rt,
        &client,
        &all,
        "member 3 down",
        &mut [&mut a, &mut b],
        |o| o.healthy() == 2,
    );
    let f = forge_etcd::check(&obs, &pool(&[1, 2, 3]));
    assert!(
        matches!(f.as_slice(), [Finding::Down { name, .. }] if name == "paas-etcd-3"),
        "{f:?}"
    );
    assert_eq!(forge_etcd::reconcile(&obs, &pool(&[1, 2, 3])), []);

    // The instance is replaced: the pool is 1, 2 and 4. The departed member may go (2 of
    // 2 left healthy); forge removes it.
    let new_pool = pool(&[1, 2, 4]);
    let f = forge_etcd::check(&obs, &new_pool);
    assert!(
        f.iter()
            .any(|x| matches!(x, Finding::Foreign { name, .. } if name == "paas-etcd-3")),
        "{f:?}"
    );
    let steps = forge_etcd::reconcile(&obs, &new_pool);
    let [Step::Remove { id, name }] = steps.as_slice() else {
        panic!("{steps:?}")
    };
    assert_eq!(name, "paas-etcd-3");
    rt.block_on(client.remove(&obs, *id)).unwrap();
    let obs = rt.block_on(client.observe(&all)).unwrap();
    assert_eq!(obs.members.len(), 2, "{obs:#?}");

    // The new instance's first boot adds it (as the membership helper does), then
    // starts it. Added but not started, it is the pool's (its address is), not foreign.
    // etcd refuses a new member until the cluster has been healthy for a few seconds
    // after the removal ("unhealthy cluster"), as the helper's retries see.
    let started = Instant::now();
    loop {
        let (ok, out) = etcdctl(
            &pki,
            &endpoints(&[1, 2]),
            &[
                "member",
                "add",
                "paas-etcd-4",
                "--peer-urls=https://127.0.1.4:2380",
            ],
        );
        if ok {
            break;
        }
        assert!(
            out.contains("unhealthy cluster") && started.elapsed() < Duration::from_secs(30),
            "{out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let obs = rt.block_on(client.observe(&all)).unwrap();
    let f = forge_etcd::check(&obs, &new_pool);
    assert!(
        !f.iter().any(|x| matches!(x, Finding::Foreign { .. })),
        "{f:?}"
    );
    assert_eq!(forge_etcd::reconcile(&obs, &new_pool), []);
    let mut d = start(&pki, &root, 4, &[1, 2, 4], "existing");
    let obs = observe_until(
        &rt,
        &client,
        &all,
        "the new member joined",
        &mut [&mut a, &mut b, &mut d],
        |o| o.healthy() == 3 && o.members.iter().all(|m| !m.member.name.is_empty()),
    );
    assert_eq!(forge_etcd::check(&obs, &new_pool), []);

    // Two members stop and a pool without them: no majority, so nothing is removed, and
    // forge says why.
    drop(a);
    drop(b);
    let obs = observe_until(&rt, &client, &all, "two members down", &mut [&mut d], |o| {
        o.healthy() <= 1
    });
    let steps = forge_etcd::reconcile(&obs, &pool(&[4, 5, 6]));
    assert_eq!(steps.len(), 2, "{steps:?}");
    for s in &steps {
        let Step::Wait { reason, .. } = s else {
            panic!("{steps:?}")
        };
        assert!(reason.contains("no majority"), "{reason}");
    }
}
