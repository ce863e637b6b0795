//! The executor against the Exoscale emulator: every kind of resource created from its
//! typed description, read back equal (the plan is then empty), changed in place or
//! replaced as its fields say, and removed; a reference to a resource that failed is a
//! transient failure, not a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exoscale_emulator::{Config as EmuConfig, Running};
use forge_deploy::observe::{Inventory, Scope, read};
use forge_deploy::plan::{Action, Plan, diff};
use forge_deploy::resource::{
    Desired, ElasticIp, InstancePool, Kind, Labels, LoadBalancer, LoadBalancerService, Peer,
    PrivateNetwork, Ref, Rule, SecurityGroup, Spec, Template, UserData,
};
use forge_deploy::{ErrorKind, Event, Reporter};
use forge_exoscale::types::{ElasticIpHealthcheck, LoadBalancerHealthcheck, RegisterTemplate};
use forge_exoscale::{Client, ClientOptions, Config};

const KEY: &str = "EXO0123456789abcdef01234567";
const SECRET: &str = "forge-test-secret-0123456789abcdefghijklmn";
const P: &str = "exec";

const SCOPE: Scope = Scope {
    stage: "test",
    kinds: &Kind::ALL,
    security_groups: &["web"],
    anti_affinity_groups: &[],
    ssh_keys: &[],
    adopt_pools: &[],
    uses: &[],
};

struct World {
    _emu: Running,
    _files: forge_test_support::http::FileServer,
    client: Client,
    template: String,
    instance_type: String,
    rt: tokio::runtime::Runtime,
}

fn world() -> World {
    let mut c = EmuConfig::new(KEY, SECRET);
    c.operation_delay = Duration::from_millis(5);
    let emu = exoscale_emulator::spawn(c, "127.0.0.1:0".parse().unwrap()).unwrap();
    let cfg = Config::from_lookup(Some("ch-gva-2"), &|n| match n {
        "EXOSCALE_API_KEY" => Some(KEY.into()),
        "EXOSCALE_API_SECRET" => Some(SECRET.into()),
        "EXOSCALE_API_ENDPOINT" => Some(emu.endpoint()),
        _ => None,
    })
    .unwrap();
    let mut o = ClientOptions::default();
    o.poll.min_interval = Duration::from_millis(5);
    o.retry.min_wait = Duration::from_millis(5);
    let client = Client::new(&cfg, o).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let files = forge_test_support::http::FileServer::start().unwrap();
    let mut image = b"QFI\xfb\0\0\0\x03".to_vec();
    image.resize(4096, 1);
    use md5::Digest as _;
    let md5 = md5::Md5::digest(&image)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    files.put("/t.qcow2", image);
    let template = rt
        .block_on(client.register_template(&RegisterTemplate {
            name: "t".into(),
            description: None,
            url: files.url("/t.qcow2"),
            checksum: md5,
            ssh_key_enabled: true,
            password_enabled: false,
            boot_mode: Some("legacy".into()),
            default_user: Some("debian".into()),
            build: None,
            version: None,
            maintainer: None,
            size: None,
        }))
        .unwrap()
        .id;
    let instance_type = rt
        .block_on(client.list_instance_types())
        .unwrap()
        .into_iter()
        .find(|t| t.name() == "standard.small")
        .unwrap()
        .id;
    World {
        _emu: emu,
        _files: files,
        client,
        template,
        instance_type,
        rt,
    }
}

fn labels(key: &str) -> Labels {
    Labels::forge(P, "test", key)
}

/// A private network, a group with a rule, an elastic IP, a pool on them, and a load
/// balancer with a service in front of the pool.
fn wanted(w: &World, port: u16, size: i64) -> Vec<Desired> {
    let d = |key: &str, spec: Spec| Desired {
        key: key.into(),
        spec,
    };
    let rule = Rule {
        peer: Peer::Network("198.51.100.0/24".into()),
        ..Rule::tcp_from("sg-web", 443, "sg-web", "HTTPS from the office")
    };
    vec![
        d(
            "net-web",
            Spec::PrivateNetwork(PrivateNetwork {
                name: format!("{P}-web"),
                description: Some("web".into()),
                netmask: Some("255.255.255.0".into()),
                start_ip: Some("10.0.0.10".into()),
                end_ip: Some("10.0.0.200".into()),
                labels: labels("net-web"),
            }),
        ),
        d(
            "sg-web",
            Spec::SecurityGroup(SecurityGroup {
                name: format!("{P}-web"),
                description: Some("web".into()),
                external_sources: BTreeSet::from(["203.0.113.0/24".to_string()]),
            }),
        ),
        d(&rule.key(), Spec::SecurityGroupRule(rule.clone())),
        d(
            "eip-web",
            Spec::ElasticIp(ElasticIp {
                name: format!("{P}-web"),
                description: Some("web".into()),
                healthcheck: Some(ElasticIpHealthcheck {
                    mode: "tcp".into(),
                    port: 443,
                    uri: None,
                    interval: Some(10),
                    timeout: Some(2),
                    strikes_ok: Some(2),
                    strikes_fail: Some(3),
                    tls_sni: None,
                    tls_skip_verify: None,
                }),
                labels: labels("eip-web"),
            }),
        ),
        d(
            "pool-web",
            Spec::InstancePool(InstancePool {
                name: format!("{P}-web"),
                description: Some("web".into()),
                size,
                instance_type: Some(w.instance_type.clone()),
                template: Some(Template::Id(w.template.clone())),
                disk_size: Some(20),
                instance_prefix: Some(format!("{P}-web")),
                public_ip_assignment: Some("inet4".into()),
                anti_affinity_groups: BTreeSet::new(),
                elastic_ips: BTreeSet::from([Ref::key("eip-web")]),
                private_networks: BTreeSet::from([Ref::key("net-web")]),
                security_groups: BTreeSet::from([Ref::key("sg-web")]),
                ssh_key: None,
                user_data: Some(UserData("#cloud-config\neip: ${eip-web.ip}\n".into())),
                labels: labels("pool-web"),
            }),
        ),
        d(
            "nlb-web",
            Spec::LoadBalancer(LoadBalancer {
                name: format!("{P}-web"),
                description: Some("web".into()),
                labels: labels("nlb-web"),
            }),
        ),
        d(
            &LoadBalancerService::key("nlb-web", "https"),
            Spec::LoadBalancerService(LoadBalancerService {
                name: "https".into(),
                load_balancer: Ref::key("nlb-web"),
                description: Some("HTTPS".into()),
                instance_pool: Ref::key("pool-web"),
                protocol: "tcp".into(),
                strategy: "round-robin".into(),
                port,
                target_port: 8443,
                healthcheck: Some(LoadBalancerHealthcheck {
                    mode: "tcp".into(),
                    port: 8443,
                    interval: Some(10),
                    timeout: Some(5),
                    retries: Some(1),
                    uri: None,
                    tls_sni: None,
                }),
            }),
        ),
    ]
}

/// Reads, resolves `want` against what exists and plans.
fn plan(w: &World, want: &[Desired]) -> (Plan, Inventory) {
    let inv = w.rt.block_on(read(&w.client, P, &SCOPE)).unwrap();
    let mut want = want.to_vec();
    for d in &mut want {
        d.spec.resolve(&inv.attrs);
    }
    (diff("test", P, "ch-gva-2", &want, &inv.actual), inv)
}

fn recorder() -> (Reporter, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&lines);
    let r: Reporter = Arc::new(move |e: &Event<'_>| l.lock().unwrap().push(e.line()));
    (r, lines)
}

/// Plans and executes until nothing is left (at most 3 rounds); the rounds it took.
fn converge(w: &World, want: &[Desired]) -> usize {
    let (report, _) = recorder();
    for round in 1..=3 {
        let (p, inv) = plan(w, want);
        if p.is_empty() {
            return round - 1;
        }
        let failures = w.rt.block_on(forge_deploy::execute::execute(
            &w.client, &p, &inv, 4, &report,
        ));
        assert!(failures.is_empty(), "round {round}: {failures:?}");
    }
    let (p, _) = plan(w, want);
    assert!(p.is_empty(), "{}", p.render());
    3
}

#[test]
fn every_kind_is_created_read_back_changed_and_removed() {
    let w = world();
    let want = wanted(&w, 443, 2);
    let (first, _) = plan(&w, &want);
    assert_eq!(first.summary().create, 7, "{}", first.render());
    // One round creates everything: dependencies first, the pool's user-data filled in
    // with the address of the elastic IP created before it.
    assert_eq!(converge(&w, &want), 1);
    let inv = w.rt.block_on(read(&w.client, P, &SCOPE)).unwrap();
    let pool = inv
        .actual
        .iter()
        .find_map(|a| match &a.spec {
            Spec::InstancePool(p) => Some(p),
            _ => None,
        })
        .unwrap();
    let ip = &inv.attrs["eip-web"]["ip"];
    assert_eq!(
        pool.user_data.as_ref().unwrap().0,
        format!("#cloud-config\neip: {ip}\n")
    );
    assert!(
        inv.attrs.contains_key("nlb-web"),
        "the load balancer's address is known"
    );

    // A service port and a pool size change in place.
    let changed = wanted(&w, 8443, 3);
    let (p, _) = plan(&w, &changed);
    let actions: Vec<(Action, &str)> = p
        .changes
        .iter()
        .map(|c| (c.action, c.key.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            (Action::Update, "pool-web"),
            (Action::Update, "nlb-web.https")
        ]
    );
    assert_eq!(converge(&w, &changed), 1);

    // A rule that changes is another rule: the old one goes, the new one comes.
    let mut other_rule = wanted(&w, 8443, 3);
    for d in &mut other_rule {
        if let Spec::SecurityGroupRule(r) = &mut d.spec {
            r.start_port = Some(8443);
            r.end_port = Some(8443);
            d.key = r.key();
        }
    }
    let (p, _) = plan(&w, &other_rule);
    assert_eq!(
        (p.summary().create, p.summary().delete),
        (1, 1),
        "{}",
        p.render()
    );
    assert_eq!(converge(&w, &other_rule), 1);

    // The service moved to another pool is replaced.
    let mut moved = other_rule.clone();
    if let Some(Desired {
        spec: Spec::InstancePool(p),
        ..
    }) = moved.iter().find(|d| d.key == "pool-web").cloned()
    {
        moved.push(Desired {
            key: "pool-web2".into(),
            spec: Spec::InstancePool(InstancePool {
                name: format!("{P}-web2"),
                instance_prefix: Some(format!("{P}-web2")),
                elastic_ips: BTreeSet::new(),
                labels: labels("pool-web2"),
                ..p
            }),
        });
    }
    for d in &mut moved {
        if let Spec::LoadBalancerService(s) = &mut d.spec {
            s.instance_pool = Ref::key("pool-web2");
        }
    }
    let (p, _) = plan(&w, &moved);
    assert!(
        p.changes
            .iter()
            .any(|c| c.action == Action::Replace && c.key == "nlb-web.https"),
        "{}",
        p.render()
    );
    assert_eq!(converge(&w, &moved), 1);

    // Nothing wanted: everything goes, dependents first, in one round.
    assert_eq!(converge(&w, &[]), 1);
    let inv = w.rt.block_on(read(&w.client, P, &SCOPE)).unwrap();
    assert!(inv.actual.is_empty(), "{:?}", inv.actual);
}

#[test]
fn a_missing_dependency_fails_transiently_and_reports_it() {
    let w = world();
    // A rule on a group that is not wanted (and so never created).
    let rule = Rule::tcp_from("sg-web", 22, "sg-gone", "SSH");
    let want = vec![
        Desired {
            key: "sg-web".into(),
            spec: Spec::SecurityGroup(SecurityGroup {
                name: format!("{P}-web"),
                description: None,
                external_sources: BTreeSet::new(),
            }),
        },
        Desired {
            key: rule.key(),
            spec: Spec::SecurityGroupRule(rule),
        },
    ];
    let (p, inv) = plan(&w, &want);
    let (report, lines) = recorder();
    let failures = w.rt.block_on(forge_deploy::execute::execute(
        &w.client, &p, &inv, 2, &report,
    ));
    assert_eq!(failures.len(), 1, "{failures:?}");
    let f = &failures[0];
    assert_eq!(f.error.kind(), ErrorKind::Transient);
    assert!(
        f.error.to_string().contains("sg-gone does not exist yet"),
        "{}",
        f.error
    );
    let lines = lines.lock().unwrap();
    assert_eq!(
        lines.as_slice(),
        [format!("+ created security-group {P}-web (sg-web)")]
    );
}
