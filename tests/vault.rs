//! The Vault stages against real OpenBao on loopback: a 3-node raft cluster with TLS
//! from forge's PKI (bootstrap, init, unseal, join, configuration, no-change re-run,
//! restart and unseal), readback of spec §5.3-5.8, policies tested with tokens that carry
//! only them, secrets kept out of logs, and bad input against a dev server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use common::World;
use common::exoscale::rt;
use common::vault::{Member, PLATFORM, dev_server, forge, project, vault_dev_server};
use forge_vault::{Secret, VaultClient};
use serde_json::{Value, json};

fn run(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    eprintln!(
        "$ {:?}\n{}{}",
        c.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn ok(c: &mut Command) -> String {
    let o = run(c);
    assert!(
        o.status.success(),
        "{:?} failed",
        c.get_args().collect::<Vec<_>>()
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn fails(c: &mut Command) -> String {
    let o = run(c);
    assert!(
        !o.status.success(),
        "{:?} succeeded",
        c.get_args().collect::<Vec<_>>()
    );
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn read_secret(secrets: &Path, name: &str) -> String {
    std::fs::read_to_string(secrets.join(name)).unwrap()
}

fn client(addr: &str, ca: Option<&str>, token: &str) -> VaultClient {
    VaultClient::new(addr, ca)
        .unwrap()
        .with_token(Secret::new(token))
}

/// A token carrying only `policy` (and not `default`).
fn token_with(root: &VaultClient, policy: &str) -> String {
    let v = rt()
        .block_on(root.write(
            "auth/token/create",
            &json!({"policies": [policy], "no_default_policy": true, "ttl": "10m"}),
        ))
        .unwrap()
        .unwrap();
    v["auth"]["client_token"].as_str().unwrap().to_string()
}

/// Whether the request was allowed by policy (Vault answers 403 before routing).
fn allowed(c: &VaultClient, method: &str, path: &str, body: Value) -> bool {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let body = (method != "GET").then_some(body);
    match rt().block_on(c.call(m, path, body.as_ref())) {
        Ok(_) => true,
        Err(e) => e.status() != Some(403),
    }
}

/// Issues a certificate; `Err` carries Vault's message.
fn issue(c: &VaultClient, path: &str, body: Value) -> Result<Value, String> {
    rt().block_on(c.write(path, &body))
        .map(|v| v.unwrap()["data"].clone())
        .map_err(|e| e.to_string())
}

#[test]
fn raft_cluster_bootstrap_configure_restart() {
    let w = World::new();
    let names = ["vault-1", "vault-2", "vault-3"];
    let members: Vec<Member> = names.iter().map(|n| Member::new(w.path(), n)).collect();
    let dir = project(w.path(), &members, "");
    let secrets = w.path().join("secrets");
    let mut logs = String::new();

    // 1. Nothing yet: the plan lists the root CA, three certificates, three silent members.
    let o =
        run(forge(&w, &dir, &secrets).args(["plan", "--stage", "vault", "--detailed-exitcode"]));
    assert_eq!(o.status.code(), Some(2));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("create the Platform Root CA"), "{text}");
    assert_eq!(
        text.matches("issue the bootstrap TLS certificate").count(),
        3,
        "{text}"
    );

    // 2. TLS bootstrap: keys made in the members' directories, certificates signed by the
    //    root CA with the cluster name, the member name and its address.
    logs += &ok(forge(&w, &dir, &secrets).args(["-vv", "deploy", "--stage", "vault"]));
    let root_pem = read_secret(&secrets, "root-ca.pem");
    let root = forge_vault::pki::inspect(&root_pem, "root").unwrap();
    assert!(root.is_ca);
    for m in &members {
        let key = m.tls_dir().join("server.key");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let cert = std::fs::read_to_string(m.tls_dir().join("server.pem")).unwrap();
        let ci = forge_vault::pki::inspect(&cert, "member").unwrap();
        assert_eq!(ci.common_name, format!("{PLATFORM}-vault"));
        assert!(ci.dns.contains(&m.name), "{:?}", ci.dns);
        assert!(ci.dns.contains(&format!("{PLATFORM}-vault")));
        assert_eq!(
            ci.ips,
            vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(ci.server_auth && ci.client_auth && !ci.is_ca);
        assert_eq!(ci.issuer_der, root.subject_der);
    }

    // 3. Start the servers; forge initialises, unseals, joins and configures them.
    let mut servers: Vec<_> = members.iter().map(Member::start).collect();
    let o = run(forge(&w, &dir, &secrets).args(["plan", "--stage", "vault"]));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        text.contains("initialise Vault on vault-1 (5 key shares, 3 to unseal)"),
        "{text}"
    );
    assert!(
        text.contains("join vault-2 to the raft cluster of vault-1"),
        "{text}"
    );
    logs += &ok(forge(&w, &dir, &secrets).args(["-vv", "deploy", "--stage", "vault"]));
    for i in 0..5 {
        let p = secrets.join(format!("unseal-key-{i}"));
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", p.display());
        assert_eq!(meta.uid(), rustix_uid());
    }
    let root_token = read_secret(&secrets, "root-token");
    let forge_token = read_secret(&secrets, "forge-token");
    let rc = client(&members[0].api_addr(), Some(&root_pem), &root_token);
    for m in &members {
        let s = rt().block_on(rc.at(&m.api_addr()).seal_status()).unwrap();
        assert!(s.initialized && !s.sealed, "{}: {s:?}", m.name);
        assert_eq!((s.t, s.n), (3, 5));
    }
    let peers = rt()
        .block_on(forge_vault::lifecycle::raft_peers(&rc))
        .unwrap();
    let mut ids: Vec<_> = peers.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    assert_eq!(ids, names);

    // 4. A second run changes nothing, and only reads.
    let o =
        run(forge(&w, &dir, &secrets).args(["plan", "--stage", "vault", "--detailed-exitcode"]));
    assert_eq!(o.status.code(), Some(0), "plan after deploy is not empty");
    let o = run(forge(&w, &dir, &secrets).args(["deploy", "--stage", "vault", "--json"]));
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["vault-writes"], 0, "{v}");
    assert!(v["config"]["changes"].as_array().unwrap().is_empty(), "{v}");
    let o = run(forge(&w, &dir, &secrets).args([
        "plan",
        "--stage",
        "vault-config",
        "--detailed-exitcode",
    ]));
    assert_eq!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("Exoscale plugins (iam/exoscale, auth/exoscale) skipped"),
        "the plugin skip is said"
    );

    // 5. Readback, one block per table of spec §5.
    readback_mounts(&rc);
    readback_roles(&rc);
    readback_kv(&rc);
    readback_policies(&rc, &dir);
    readback_audit(&rc, &members);
    // As if vault-1's agent had taken over its TLS (spec §6.5): a certificate from
    // pki/platform/vault, the Vault ICA as ca.pem. forge leaves it alone while it is valid.
    let agent = issue(
        &rc,
        "pki/platform/vault/issue/server",
        json!({"common_name": format!("{PLATFORM}-vault"), "ip_sans": "127.0.0.1", "ttl": "24h"}),
    )
    .unwrap();
    let tls = members[0].tls_dir();
    let field = |k: &str| agent[k].as_str().unwrap().to_string();
    std::fs::write(
        tls.join("server.pem"),
        format!("{}\n{}\n", field("certificate"), field("issuing_ca")),
    )
    .unwrap();
    std::fs::write(tls.join("server.key"), field("private_key")).unwrap();
    std::fs::write(tls.join("ca.pem"), field("issuing_ca")).unwrap();
    let o =
        run(forge(&w, &dir, &secrets).args(["plan", "--stage", "vault", "--detailed-exitcode"]));
    assert_eq!(
        o.status.code(),
        Some(0),
        "an agent-managed certificate is left alone"
    );
    // forge's token carries forge-admin only, and works.
    let fc = client(&members[0].api_addr(), Some(&root_pem), &forge_token);
    let me = rt()
        .block_on(fc.read("auth/token/lookup-self"))
        .unwrap()
        .unwrap();
    assert_eq!(me["data"]["policies"], json!(["default", "forge-admin"]));
    assert!(!allowed(
        &fc,
        "PUT",
        "sys/policies/acl/forge-admin",
        json!({"policy": ""})
    ));
    assert!(!allowed(
        &fc,
        "POST",
        "sys/mounts/secret",
        json!({"type": "kv"})
    ));

    // 6. Bad input against the live cluster.
    let e = fails(
        forge(&w, &dir, &secrets)
            .args(["plan", "--stage", "vault-config"])
            .env("VAULT_CACERT", write_other_ca(w.path())),
    );
    assert!(
        e.contains("cannot reach Vault at") && e.contains("certificate"),
        "{e}"
    );
    let weak = token_with(&rc, "platform-vault-server");
    let e = fails(
        forge(&w, &dir, &secrets)
            .args(["plan", "--stage", "vault-config"])
            .env("VAULT_TOKEN", &weak),
    );
    assert!(e.contains("HTTP 403") && e.contains("sys/mounts"), "{e}");

    // 7. Restart two members: they come back sealed; the plan says so; a run unseals them.
    for s in servers.iter_mut().skip(1) {
        s.stop();
    }
    servers[1] = members[1].start();
    servers[2] = members[2].start();
    let o =
        run(forge(&w, &dir, &secrets).args(["plan", "--stage", "vault", "--detailed-exitcode"]));
    assert_eq!(o.status.code(), Some(2));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        text.contains("unseal vault-2") && text.contains("unseal vault-3"),
        "{text}"
    );
    assert!(!text.contains("unseal vault-1"), "{text}");
    logs += &ok(forge(&w, &dir, &secrets).args(["-vv", "deploy", "--stage", "vault"]));
    for m in &members {
        let s = rt().block_on(rc.at(&m.api_addr()).seal_status()).unwrap();
        assert!(!s.sealed, "{} still sealed", m.name);
    }
    // A sealed Vault is a clear error for the configuration alone.
    servers[2].stop();
    servers[2] = members[2].start();
    let e = fails(
        forge(&w, &dir, &secrets)
            .args(["plan", "--stage", "vault-config"])
            .env("VAULT_ADDR", members[2].api_addr()),
    );
    assert!(
        e.contains("is sealed") && e.contains("--stage vault"),
        "{e}"
    );

    // 8. A fourth member is declared: it gets its certificate, joins and is unsealed. Then
    //    it is taken out of platform.toml and stopped: the next run removes its raft peer.
    let mut four: Vec<Member> = members
        .iter()
        .map(|m| Member {
            name: m.name.clone(),
            dir: m.dir.clone(),
            port: m.port,
            cluster_port: m.cluster_port,
        })
        .collect();
    four.push(Member::new(w.path(), "vault-4"));
    project(w.path(), &four, "");
    logs += &ok(forge(&w, &dir, &secrets).args(["-vv", "deploy", "--stage", "vault"]));
    let mut fourth = four[3].start();
    logs += &ok(forge(&w, &dir, &secrets).args(["-vv", "deploy", "--stage", "vault"]));
    let peers = rt()
        .block_on(forge_vault::lifecycle::raft_peers(&rc))
        .unwrap();
    assert_eq!(peers.len(), 4, "{peers:?}");
    project(w.path(), &members, "");
    fourth.stop();
    let o =
        run(forge(&w, &dir, &secrets).args(["plan", "--stage", "vault", "--detailed-exitcode"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("- remove raft peer vault-4 (not a declared member)")
    );
    logs += &ok(forge(&w, &dir, &secrets).args(["-vv", "deploy", "--stage", "vault"]));
    let peers = rt()
        .block_on(forge_vault::lifecycle::raft_peers(&rc))
        .unwrap();
    let mut ids: Vec<_> = peers.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    assert_eq!(ids, names);
    let o =
        run(forge(&w, &dir, &secrets).args(["plan", "--stage", "vault", "--detailed-exitcode"]));
    assert_eq!(o.status.code(), Some(0));

    // 9. No secret anywhere it must not be: forge's output at -vv, the store, the
    //    members' configuration, the base stage's user-data.
    let p = forge_schema::platform::Platform::parse(&forge_schema::SourceFile::new(
        "platform.toml",
        std::fs::read_to_string(dir.join("platform.toml")).unwrap(),
    ))
    .unwrap();
    let user_data = forge_deploy::base::vault_user_data(&p);
    let mut haystacks = vec![("forge output", logs.clone()), ("user-data", user_data)];
    for f in walk(&w.store()).into_iter().chain(walk(&dir)) {
        haystacks.push((
            "file",
            String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_string(),
        ));
    }
    let mut needles = vec![
        root_token.trim().to_string(),
        forge_token.trim().to_string(),
    ];
    for i in 0..5 {
        needles.push(
            read_secret(&secrets, &format!("unseal-key-{i}"))
                .trim()
                .to_string(),
        );
    }
    let ca_key = read_secret(&secrets, "root-ca.key");
    needles.push(ca_key.lines().nth(1).unwrap().to_string());
    for (what, hay) in &haystacks {
        for n in &needles {
            assert!(!hay.contains(n.as_str()), "a secret is in the {what}");
        }
    }
    assert!(
        logs.contains("vault call"),
        "-vv shows the calls (the scan saw debug logs)"
    );
    for e in std::fs::read_dir(&secrets).unwrap() {
        let meta = e.unwrap().metadata().unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(
        std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

fn rustix_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn write_other_ca(dir: &Path) -> std::path::PathBuf {
    let ca = forge_vault::pki::generate_root(
        &Default::default(),
        "Someone Else",
        time_days(1),
        forge_schema::platform::KeyAlgorithm::EcdsaP256,
    )
    .unwrap();
    let p = dir.join("other-ca.pem");
    std::fs::write(&p, ca.cert_pem).unwrap();
    p
}

fn time_days(d: i64) -> time::Duration {
    time::Duration::days(d)
}

fn readback_mounts(c: &VaultClient) {
    let mounts = rt().block_on(c.read("sys/mounts")).unwrap().unwrap()["data"].clone();
    let want = [
        ("pki/root/", "pki", "Platform CA", 30 * 8760 * 3600),
        ("pki/platform/vault/", "pki", "Vault ICA", 5 * 8760 * 3600),
        (
            "pki/platform/kubernetes/etcd/",
            "pki",
            "Kubernetes Store (etcd) CA",
            10 * 8760 * 3600,
        ),
        (
            "pki/platform/kubernetes/control-plane/",
            "pki",
            "Kubernetes Control-Plane CA",
            10 * 8760 * 3600,
        ),
        (
            "pki/platform/kubernetes/kubelet/",
            "pki",
            "Kubernetes Kubelets CA",
            10 * 8760 * 3600,
        ),
        (
            "pki/platform/kubernetes/aggregation-layer/",
            "pki",
            "Kubernetes Aggregation-Layer CA",
            10 * 8760 * 3600,
        ),
        (
            "pki/platform/kubernetes/client/",
            "pki",
            "Kubernetes Clients CA",
            10 * 8760 * 3600,
        ),
        (
            "kv/platform/kubernetes/",
            "kv",
            "Kubernetes Secrets",
            96 * 3600,
        ),
    ];
    for (path, kind, desc, ttl) in want {
        let m = &mounts[path];
        assert_eq!(m["type"], kind, "{path}");
        assert_eq!(m["description"], desc, "{path}");
        assert_eq!(m["config"]["default_lease_ttl"], ttl, "{path}");
        assert_eq!(m["config"]["max_lease_ttl"], ttl, "{path}");
        let mount = path.trim_end_matches('/');
        if kind == "pki" {
            let urls = rt()
                .block_on(c.read_data(&format!("{mount}/config/urls")))
                .unwrap()
                .unwrap();
            assert_eq!(
                urls["issuing_certificates"],
                json!([format!(
                    "https://vault.paas-test.example.net:8200/v1/{mount}/ca"
                )])
            );
            let ca = rt()
                .block_on(c.read_data(&format!("{mount}/cert/ca")))
                .unwrap()
                .unwrap();
            let info =
                forge_vault::pki::inspect(ca["certificate"].as_str().unwrap(), mount).unwrap();
            assert!(info.is_ca, "{mount}");
            assert_eq!(
                info.common_name.trim(),
                info.common_name,
                "no trailing space (defect 12)"
            );
        }
    }
    assert_eq!(
        mounts["kv/platform/kubernetes/"]["options"]["version"]
            .as_str()
            .unwrap_or("1"),
        "1"
    );
    // The Vault ICA is signed by the imported Platform Root CA.
    let ica = rt()
        .block_on(c.read_data("pki/platform/vault/cert/ca"))
        .unwrap()
        .unwrap();
    let root = rt()
        .block_on(c.read_data("pki/root/cert/ca"))
        .unwrap()
        .unwrap();
    let ica = forge_vault::pki::inspect(ica["certificate"].as_str().unwrap(), "ica").unwrap();
    let root = forge_vault::pki::inspect(root["certificate"].as_str().unwrap(), "root").unwrap();
    assert_eq!(ica.issuer_der, root.subject_der);
    assert_eq!(ica.common_name, format!("{PLATFORM} Vault ICA"));
}

/// Each role issues for a name its consumer needs and refuses one outside its allowance.
fn readback_roles(c: &VaultClient) {
    let cp = "pki/platform/kubernetes/control-plane";
    let cases: Vec<(String, Value, Value, bool)> = vec![
        (
            "pki/platform/vault/issue/server".into(),
            json!({"common_name": "paas-test-vault", "alt_names": "paas-test-vault-abcde-fghij,paas-test-vault.paas-test.example.net", "ip_sans": "203.0.113.10"}),
            json!({"common_name": "evil.example.com"}),
            true,
        ),
        (
            "pki/platform/kubernetes/etcd/issue/server".into(),
            json!({"common_name": "paas-test-etcd", "alt_names": "paas-test-etcd-abcde-fghij,localhost", "ip_sans": "127.0.0.1"}),
            json!({"common_name": "paas-test-vault"}),
            true,
        ),
        (
            "pki/platform/kubernetes/etcd/issue/apiserver".into(),
            json!({"common_name": "paas-test-kubernetes", "ip_sans": "203.0.113.11"}),
            json!({"common_name": "paas-test-etcd"}),
            false,
        ),
        (
            format!("{cp}/issue/apiserver"),
            json!({"common_name": "paas-test-kubernetes", "alt_names": "kubernetes,kubernetes.default,kubernetes.default.svc,kubernetes.default.svc.kubernetes.paas-test.example.net,paas-test-kubernetes-abcde-fghij", "ip_sans": "10.80.0.1,203.0.113.11"}),
            json!({"common_name": "paas-test-kubernetes", "alt_names": "google.com"}),
            true,
        ),
        (
            format!("{cp}/issue/controller-manager"),
            json!({"common_name": "system:kube-controller-manager"}),
            json!({"common_name": "system:kube-scheduler"}),
            false,
        ),
        (
            format!("{cp}/issue/scheduler"),
            json!({"common_name": "system:kube-scheduler"}),
            json!({"common_name": "system:masters"}),
            false,
        ),
        (
            format!("{cp}/issue/konnectivity"),
            json!({"common_name": "system:konnectivity-server"}),
            json!({"common_name": "system:kube-controller-manager"}),
            false,
        ),
        (
            format!("{cp}/issue/konnectivity-apiserver-egress"),
            json!({"common_name": "kube-apiserver-konnectivity-client"}),
            json!({"common_name": "konnectivity"}),
            false,
        ),
        (
            format!("{cp}/issue/konnectivity-server-apiserver"),
            json!({"common_name": "konnectivity", "ip_sans": "127.0.0.1,203.0.113.11"}),
            json!({"common_name": "kubernetes"}),
            true,
        ),
        (
            format!("{cp}/issue/konnectivity-server-cluster"),
            json!({"common_name": "konnectivity", "ip_sans": "127.0.0.1"}),
            json!({"common_name": "konnectivity-agent"}),
            true,
        ),
        (
            "pki/platform/kubernetes/aggregation-layer/issue/metrics-server".into(),
            json!({"common_name": "metrics-server.kube-system.svc"}),
            json!({"common_name": "metrics-server.default.svc"}),
            true,
        ),
        (
            "pki/platform/kubernetes/aggregation-layer/issue/apiserver".into(),
            json!({"common_name": "paas-test-kubernetes", "alt_names": "paas-test-kubernetes-abcde-fghij"}),
            json!({"common_name": "front-proxy-client"}),
            false,
        ),
        (
            "pki/platform/kubernetes/kubelet/issue/apiserver".into(),
            json!({"common_name": "paas-test-kubernetes"}),
            json!({"common_name": "system:node:x"}),
            false,
        ),
        (
            "pki/platform/kubernetes/client/issue/operator-admin".into(),
            json!({"common_name": "cluster-admin"}),
            json!({"common_name": "someone-else"}),
            false,
        ),
    ];
    for (path, good, bad, server) in cases {
        let d = issue(c, &path, good.clone()).unwrap_or_else(|e| panic!("{path} {good}: {e}"));
        let info = forge_vault::pki::inspect(d["certificate"].as_str().unwrap(), &path).unwrap();
        assert_eq!(info.server_auth, server, "{path}");
        let life = info.not_after - info.not_before;
        assert!(
            (96 * 3600..=96 * 3600 + 120).contains(&life),
            "{path}: {life} s"
        );
        let e = issue(c, &path, bad.clone()).expect_err(&format!("{path} issued {bad}"));
        assert!(e.contains("HTTP 400"), "{path}: {e}");
        // Never a wildcard, never an arbitrary extra name.
        let e = issue(
            c,
            &path,
            json!({"common_name": good["common_name"], "alt_names": "*.example.com"}),
        );
        assert!(e.is_err(), "{path} issued a wildcard");
    }
}

fn readback_kv(c: &VaultClient) {
    let sa = rt()
        .block_on(c.read_data("kv/platform/kubernetes/service-account"))
        .unwrap()
        .unwrap();
    assert!(sa["private_key"].as_str().unwrap().contains("PRIVATE KEY"));
    assert!(sa["public_key"].as_str().unwrap().contains("PUBLIC KEY"));
    let enc = rt()
        .block_on(c.read_data("kv/platform/kubernetes/secret-encryption"))
        .unwrap()
        .unwrap();
    let key = enc["keys"]["key-0"].as_str().unwrap();
    assert_eq!(key.len(), 44, "32 bytes, base64");
    let tok = rt()
        .block_on(c.read_data("kv/platform/kubernetes/kubelet-bootstrap-token"))
        .unwrap()
        .unwrap();
    assert_eq!(tok["id"].as_str().unwrap().len(), 6);
    assert_eq!(tok["secret"].as_str().unwrap().len(), 16);
    // The kubelet CA's key is in KV and matches the CA the mount signs with.
    let pki = rt()
        .block_on(c.read_data("kv/platform/kubernetes/kubelet-pki"))
        .unwrap()
        .unwrap();
    let ca = rt()
        .block_on(c.read_data("pki/platform/kubernetes/kubelet/cert/ca"))
        .unwrap()
        .unwrap();
    assert_eq!(
        pki["certificate"].as_str().unwrap().trim(),
        ca["certificate"].as_str().unwrap().trim()
    );
    let pk = forge_vault::pki::public_key_of(&Secret::new(pki["private_key"].as_str().unwrap()))
        .unwrap();
    let info = forge_vault::pki::inspect(ca["certificate"].as_str().unwrap(), "kubelet").unwrap();
    assert_eq!(pk, info.public_key_der);
}

/// Every policy matches its file, and a token carrying only it can do what its consumer
/// needs and nothing else.
fn readback_policies(c: &VaultClient, project: &Path) {
    let files = forge_vault::config::load_policies(project).unwrap();
    for (name, text) in &files {
        let have = rt()
            .block_on(c.read_data(&format!("sys/policies/acl/{name}")))
            .unwrap()
            .unwrap();
        assert_eq!(
            have["policy"].as_str().unwrap().trim(),
            text.trim(),
            "{name}"
        );
    }
    let with = |p: &str| c.with_token(Secret::new(token_with(c, p)));
    let cp = "pki/platform/kubernetes/control-plane";
    let issue_body = |cn: &str| json!({"common_name": cn});

    let v = with("platform-vault-server");
    assert!(
        issue(
            &v,
            "pki/platform/vault/issue/server",
            issue_body("paas-test-vault")
        )
        .is_ok()
    );
    assert!(!allowed(
        &v,
        "POST",
        "pki/platform/kubernetes/etcd/issue/server",
        issue_body("paas-test-etcd")
    ));
    assert!(!allowed(
        &v,
        "GET",
        "kv/platform/kubernetes/service-account",
        json!({})
    ));

    let e = with("platform-kubernetes-etcd");
    assert!(allowed(
        &e,
        "GET",
        "pki/platform/kubernetes/etcd/cert/ca_chain",
        json!({})
    ));
    assert!(
        issue(
            &e,
            "pki/platform/kubernetes/etcd/issue/server",
            issue_body("paas-test-etcd")
        )
        .is_ok()
    );
    // Allowed by policy; the mount exists only with the Exoscale plugin (404, not 403).
    assert!(allowed(
        &e,
        "GET",
        "iam/exoscale/apikey/etcd-instance-pool",
        json!({})
    ));
    assert!(!allowed(
        &e,
        "POST",
        "pki/platform/kubernetes/etcd/issue/apiserver",
        issue_body("paas-test-kubernetes")
    ));
    assert!(!allowed(
        &e,
        "GET",
        "kv/platform/kubernetes/kubelet-pki",
        json!({})
    ));

    let k = with("platform-kubernetes-control-plane");
    for path in [
        "kv/platform/kubernetes/service-account",
        "kv/platform/kubernetes/secret-encryption",
        "kv/platform/kubernetes/kubelet-pki",
        "pki/platform/kubernetes/client/cert/ca_chain",
    ] {
        assert!(allowed(&k, "GET", path, json!({})), "{path}");
    }
    assert!(
        issue(
            &k,
            &format!("{cp}/issue/scheduler"),
            issue_body("system:kube-scheduler")
        )
        .is_ok()
    );
    assert!(
        issue(
            &k,
            "pki/platform/kubernetes/client/issue/operator-admin",
            issue_body("cluster-admin")
        )
        .is_ok()
    );
    assert!(!allowed(
        &k,
        "POST",
        "pki/platform/vault/issue/server",
        issue_body("paas-test-vault")
    ));
    assert!(!allowed(
        &k,
        "GET",
        "kv/platform/kubernetes/kubelet-bootstrap-token",
        json!({})
    ));
    assert!(!allowed(
        &k,
        "POST",
        "pki/platform/kubernetes/etcd/issue/server",
        issue_body("paas-test-etcd")
    ));

    let m = with("platform-kubernetes-metrics-server");
    let (_, csr) = forge_vault::pki::key_and_csr(
        "metrics-server.kube-system.svc",
        forge_schema::platform::KeyAlgorithm::EcdsaP256,
    )
    .unwrap();
    assert!(
        issue(
            &m,
            "pki/platform/kubernetes/aggregation-layer/sign/metrics-server",
            json!({"csr": csr, "common_name": "metrics-server.kube-system.svc"})
        )
        .is_ok()
    );
    assert!(!allowed(
        &m,
        "POST",
        "pki/platform/kubernetes/aggregation-layer/issue/apiserver",
        issue_body("paas-test-kubernetes")
    ));

    for (p, key) in [
        (
            "platform-kubernetes-cloud-controller-manager",
            "cloud-controller-manager",
        ),
        (
            "platform-kubernetes-cluster-autoscaler",
            "cluster-autoscaler",
        ),
    ] {
        let t = with(p);
        assert!(allowed(
            &t,
            "GET",
            &format!("{cp}/cert/ca_chain"),
            json!({})
        ));
        assert!(allowed(
            &t,
            "GET",
            &format!("iam/exoscale/apikey/{key}"),
            json!({})
        ));
        assert!(!allowed(
            &t,
            "POST",
            &format!("{cp}/issue/apiserver"),
            issue_body("x")
        ));
        assert!(!allowed(
            &t,
            "GET",
            "iam/exoscale/apikey/etcd-instance-pool",
            json!({})
        ));
    }
}

fn readback_audit(c: &VaultClient, members: &[Member]) {
    let a = rt().block_on(c.read("sys/audit")).unwrap().unwrap();
    let dev = a["data"]["file/"].clone();
    assert_eq!(dev["type"], "file", "{a}");
    assert_eq!(dev["options"]["mode"], "0600");
    let log = members[0].audit_log();
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(meta.len() > 0);
}

/// The configuration stage against both servers the platform can run: HashiCorp Vault
/// 1.10.3 (the platform's pin, built from source by the `local` variant) and OpenBao, each
/// a dev server: one deploy, then an empty plan, then the readback of spec §5.3-5.8.
#[test]
fn configuration_against_vault_1_10_3_and_openbao() {
    for server in ["vault", "openbao"] {
        let w = World::new();
        let dir = project(w.path(), &[], "");
        let secrets = w.path().join("secrets");
        let dev = w.path().join("dev");
        let (_srv, addr) = match server {
            "vault" => vault_dev_server(&dev),
            _ => dev_server(&dev),
        };
        let rc = client(&addr, None, "root");
        let health = rt().block_on(rc.read("sys/health")).unwrap().unwrap();
        if server == "vault" {
            assert_eq!(health["version"], "1.10.3", "{health}");
        }
        let f = || {
            let mut c = forge(&w, &dir, &secrets);
            c.env("VAULT_ADDR", &addr).env("VAULT_TOKEN", "root");
            c
        };
        ok(f().args(["deploy", "--stage", "vault-config"]));
        let o = run(f().args(["plan", "--stage", "vault-config", "--detailed-exitcode"]));
        assert_eq!(
            o.status.code(),
            Some(0),
            "{server}: a second plan has changes"
        );
        readback_mounts(&rc);
        readback_roles(&rc);
        readback_kv(&rc);
        readback_policies(&rc, &dir);
        let a = rt().block_on(rc.read("sys/audit")).unwrap().unwrap();
        assert_eq!(a["data"]["file/"]["type"], "file", "{server}: {a}");
        let log = match server {
            "vault" => dev.join("audit/audit.log"),
            _ => dev.join("audit.log"),
        };
        let meta = std::fs::metadata(&log).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{server}");
        assert!(meta.len() > 0, "{server}: nothing audited");
    }
}

/// Bad input against a dev server: nothing listening, a conflicting mount, a token that
/// fails half-way (the error says how far it got; the plan shows the rest).
#[test]
fn bad_input_is_reported_and_nothing_is_half_applied_unreported() {
    let w = World::new();
    let dir = project(w.path(), &[], "");
    let secrets = w.path().join("secrets");
    let (_srv, addr) = dev_server(&w.path().join("dev"));

    // Nothing listens there.
    let port = common::vault::free_port();
    let e = fails(
        forge(&w, &dir, &secrets)
            .args(["plan", "--stage", "vault-config"])
            .env("VAULT_ADDR", format!("http://127.0.0.1:{port}"))
            .env("VAULT_TOKEN", "root"),
    );
    assert!(
        e.contains(&format!("cannot reach Vault at http://127.0.0.1:{port}")),
        "{e}"
    );
    // Plain HTTP off loopback is refused before any call.
    let e = fails(
        forge(&w, &dir, &secrets)
            .args(["plan", "--stage", "vault-config"])
            .env("VAULT_ADDR", "http://192.0.2.1:8200")
            .env("VAULT_TOKEN", "root"),
    );
    assert!(e.contains("refusing plain HTTP"), "{e}");
    // No token at all.
    let e = fails(
        forge(&w, &dir, &secrets)
            .args(["plan", "--stage", "vault-config"])
            .env("VAULT_ADDR", &addr),
    );
    assert!(e.contains("no Vault token"), "{e}");
    // The vault stage needs members.
    let e = fails(
        forge(&w, &dir, &secrets)
            .args(["plan", "--stage", "vault"])
            .env("VAULT_ADDR", &addr),
    );
    assert!(
        e.contains("has no Vault member") && e.contains("[[vault.member]]"),
        "{e}"
    );

    let root = client(&addr, None, "root");
    // A mount forge declares exists with another type: a conflict, and nothing changes.
    rt().block_on(root.write("sys/mounts/pki/platform/vault", &json!({"type": "kv"})))
        .unwrap();
    let f = || {
        let mut c = forge(&w, &dir, &secrets);
        c.env("VAULT_ADDR", &addr).env("VAULT_TOKEN", "root");
        c
    };
    let o = run(f().args(["plan", "--stage", "vault-config", "--detailed-exitcode"]));
    assert_eq!(o.status.code(), Some(2));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("! mount pki/platform/vault (pki)"), "{text}");
    assert!(text.contains("exists as a `kv` mount"), "{text}");
    let e = fails(f().args(["deploy", "--stage", "vault-config"]));
    assert!(
        e.contains("nothing was changed, because of 1 conflict(s)"),
        "{e}"
    );
    let mounts = rt().block_on(root.read("sys/mounts")).unwrap().unwrap();
    assert!(
        mounts["data"].get("pki/root/").is_none(),
        "a change was made despite the conflict"
    );
    rt().block_on(root.delete("sys/mounts/pki/platform/vault"))
        .unwrap();

    // A token that may create mounts but nothing inside them: the run stops at the first
    // refused change, says how far it got, and the plan lists what remains.
    rt().block_on(root.put(
        "sys/policies/acl/mounts-only",
        &json!({"policy": "path \"sys/mounts\" { capabilities = [\"read\"] }\npath \"sys/auth\" { capabilities = [\"read\"] }\npath \"sys/mounts/*\" { capabilities = [\"create\", \"read\", \"update\"] }\npath \"sys/policies/acl/*\" { capabilities = [\"read\"] }\npath \"sys/audit\" { capabilities = [\"read\", \"sudo\"] }\npath \"pki/*\" { capabilities = [\"read\"] }\npath \"kv/*\" { capabilities = [\"read\"] }\n"}),
    ))
    .unwrap();
    let limited = token_with(&root, "mounts-only");
    let o = run(forge(&w, &dir, &secrets)
        .env("VAULT_ADDR", &addr)
        .env("VAULT_TOKEN", &limited)
        .args(["deploy", "--stage", "vault-config"]));
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(e.contains("8 of 46 changes were applied"), "{e}");
    assert!(
        e.contains("HTTP 403") && e.contains("forge plan --stage vault-config"),
        "{e}"
    );
    let o = run(f().args(["plan", "--stage", "vault-config", "--json"]));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["config"]["changes"].as_array().unwrap().len(), 38, "{v}");
    assert_eq!(
        v["config"]["unchanged"], 9,
        "8 mounts + the audit device of the configuration file"
    );

    // The root token finishes it; the run after that changes nothing.
    ok(f().args(["deploy", "--stage", "vault-config"]));
    let o = run(f().args(["plan", "--stage", "vault-config", "--detailed-exitcode"]));
    assert_eq!(o.status.code(), Some(0));
    // The Exoscale plugins are skipped with a reason when there are no credentials.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("set EXOSCALE_API_KEY and EXOSCALE_API_SECRET")
    );
}

/// The Exoscale plugins' requests, recorded (they cannot run here: the plugins are Go
/// binaries only the vault image carries).
#[test]
fn exoscale_plugin_requests_match_the_recording() {
    let p = forge_schema::platform::Platform::parse(&forge_schema::SourceFile::new(
        "platform.toml",
        "[platform]\nname = \"paas-test\"\nzone = \"ch-gva-2\"\nadmin-networks = [\"127.0.0.0/8\"]\n",
    ))
    .unwrap();
    let creds = forge_vault::config::ExoscaleCredentials {
        key: "EXOtest".into(),
        secret: Secret::new("s3cr3t"),
    };
    let items = forge_vault::config::exoscale_items(&p, &creds);
    let rendered: Vec<String> = items
        .iter()
        .map(|i| match i {
            forge_vault::config::Item::Config { path, body, .. } => format!("POST {path} {body}"),
            other => other.address(),
        })
        .collect();
    insta::assert_snapshot!(rendered.join("\n"));
    // No IAM role may be unrestricted (Appendix A #33).
    for role in [
        "etcd-instance-pool",
        "cloud-controller-manager",
        "cluster-autoscaler",
    ] {
        assert!(
            !forge_vault::config::iam_operations(role).is_empty(),
            "{role}"
        );
    }
}

/// With `[secrets] age-recipient`, every secret is stored encrypted, and reading one back
/// needs FORGE_AGE_IDENTITY.
#[test]
fn secrets_are_encrypted_to_the_age_recipient() {
    let w = World::new();
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let idfile = w.path().join("identity.txt");
    std::fs::write(
        &idfile,
        format!(
            "{}\n",
            age::secrecy::ExposeSecret::expose_secret(&id.to_string())
        ),
    )
    .unwrap();
    let dir = project(
        w.path(),
        &[],
        &format!("\n[secrets]\nage-recipient = \"{recipient}\"\n"),
    );
    let secrets = w.path().join("secrets");
    let (_srv, addr) = dev_server(&w.path().join("dev"));
    let f = || {
        let mut c = forge(&w, &dir, &secrets);
        c.env("VAULT_ADDR", &addr).env("VAULT_TOKEN", "root");
        c
    };
    ok(f().args(["deploy", "--stage", "vault-config"]));
    let mut names: Vec<String> = std::fs::read_dir(&secrets)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["root-ca.key.age", "root-ca.pem.age"]);
    let raw = std::fs::read_to_string(secrets.join("root-ca.key.age")).unwrap();
    assert!(raw.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!raw.contains("PRIVATE KEY"));
    // Planning needs the root CA (to compare it with pki/root): without the identity, a
    // clear error; with it, an empty plan.
    let e = fails(f().args(["plan", "--stage", "vault-config"]));
    assert!(e.contains("FORGE_AGE_IDENTITY"), "{e}");
    let o = run(f().env("FORGE_AGE_IDENTITY", &idfile).args([
        "plan",
        "--stage",
        "vault-config",
        "--detailed-exitcode",
    ]));
    assert_eq!(o.status.code(), Some(0));
}

/// The certificate a TLS server presents on 127.0.0.1:`port` (PEM), through Python's ssl.
fn served_certificate(port: u16) -> String {
    let o = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import ssl; print(ssl.get_server_certificate(('127.0.0.1', {port})))"
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn der_of(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// A member reached over SSH (OpenSSH on loopback): its TLS material is written through
/// SSH with the right modes, its reload command runs, a renewed certificate is served after
/// the reload, and a changed host key stops forge.
#[test]
fn member_over_ssh_bootstrap_renew_and_host_key_pinning() {
    let w = World::new();
    let mut sshd = common::vault::Sshd::start(w.path());
    let m = Member::new(w.path(), "vault-s1");
    let marker = w.path().join("reloads");
    let pidfile = m.dir.join("bao.pid");
    let _guard = common::vault::PidGuard(pidfile.clone());
    // The reload command starts the server when it is not running and reloads it
    // otherwise, as `systemctl enable --now … && systemctl reload …` does on the cloud.
    let reload = format!(
        "echo reload >> {marker}; if [ -f {pid} ] && kill -0 $(cat {pid}) 2>/dev/null; then kill -HUP $(cat {pid}); else nohup {bao} server -config={cfg} > {log} 2>&1 < /dev/null & echo $! > {pid}; fi",
        marker = marker.display(),
        pid = pidfile.display(),
        bao = common::vault::bao().display(),
        cfg = m.config().display(),
        log = m.dir.join("bao.log").display(),
    );
    let extra = format!(
        "ssh = \"{}\"\nreload-command = \"{}\"\n",
        sshd.target(),
        reload.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let dir = project(w.path(), std::slice::from_ref(&m), "");
    // The member entry gets its SSH target and reload command.
    let toml = std::fs::read_to_string(dir.join("platform.toml")).unwrap() + &extra;
    std::fs::write(dir.join("platform.toml"), toml).unwrap();
    let secrets = w.path().join("secrets");
    let identity = sshd.identity.clone();
    let f = || {
        let mut c = forge(&w, &dir, &secrets);
        c.env("FORGE_SSH_IDENTITY", &identity);
        c
    };

    // One run: TLS over SSH, the reload command starts the server, forge waits for it,
    // initialises, unseals and configures it. The host key is pinned.
    ok(f().args(["deploy", "--stage", "vault"]));
    let key = m.tls_dir().join("server.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem_mode = std::fs::metadata(m.tls_dir().join("server.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(pem_mode & 0o777, 0o644);
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
    let known = std::fs::read_to_string(secrets.join("known_hosts")).unwrap();
    let host_pub = std::fs::read_to_string(sshd.dir.join("host.pub")).unwrap();
    assert!(
        known.contains(host_pub.split_whitespace().nth(1).unwrap()),
        "{known}"
    );
    assert!(secrets.join("root-token").exists() && secrets.join("forge-token").exists());
    let o = run(f().args(["plan", "--stage", "vault", "--detailed-exitcode"]));
    assert_eq!(o.status.code(), Some(0));
    let first = std::fs::read_to_string(m.tls_dir().join("server.pem")).unwrap();
    assert_eq!(der_of(&served_certificate(m.port)), der_of(&first));

    // The certificate goes missing: the plan says so, a run issues a new one over SSH,
    // reloads the server, which then serves it.
    std::fs::remove_file(m.tls_dir().join("server.pem")).unwrap();
    let o = run(f().args(["plan", "--stage", "vault", "--detailed-exitcode"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("issue the bootstrap TLS certificate of vault-s1")
    );
    ok(f().args(["deploy", "--stage", "vault"]));
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 2);
    let second = std::fs::read_to_string(m.tls_dir().join("server.pem")).unwrap();
    assert_ne!(first, second);
    let start = std::time::Instant::now();
    while der_of(&served_certificate(m.port)) != der_of(&second) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the reloaded server still serves the old certificate"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Another host key at the same address: refused, nothing written.
    sshd.change_host_key();
    std::fs::remove_file(m.tls_dir().join("server.pem")).unwrap();
    let e = fails(f().args(["deploy", "--stage", "vault"]));
    assert!(e.contains(&format!("ssh to {}", sshd.target())), "{e}");
    assert!(
        e.contains("Host key verification failed") || e.contains("IDENTIFICATION HAS CHANGED"),
        "{e}"
    );
    assert!(!m.tls_dir().join("server.pem").exists());
}
