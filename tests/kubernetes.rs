//! The platform's Kubernetes binaries as real parts: etcd 3.5.4, kube-apiserver,
//! kube-controller-manager, kube-scheduler and kubectl 1.24.1, built from source by the
//! `local` variant's recipes (tests/common/source_built.rs), run on loopback the way
//! controller-runtime's envtest runs release binaries: a 3-member etcd cluster with TLS
//! between members and to clients, the API server on all three members, the controller
//! manager and the scheduler with their own identities; `/readyz`, server-side apply with
//! kubectl, a controller and the scheduler doing their work.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::cluster::{Pki, Proc, etcd_cluster, etcdctl, openssl, output, wait_until};
use common::source_built::bin;
use common::vault::free_port;
use serde_json::Value;

#[test]
fn etcd_3_5_4_cluster_and_kubernetes_1_24_1_control_plane_from_source_builds() {
    let w = common::World::new();
    let root = w.path().to_path_buf();
    let pki = Pki::new(root.join("pki"));

    // The versions are the pinned ones, stamped as upstream stamps them.
    let (_, v) = output(Command::new(bin("etcd", "usr/local/bin/etcd")).arg("--version"));
    assert!(v.contains("etcd Version: 3.5.4"), "{v}");
    assert!(v.contains("Go Version: go1.18.2"), "{v}");
    for b in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let (_, v) = output(
            Command::new(bin("kubernetes-server", &format!("usr/local/bin/{b}"))).arg("--version"),
        );
        assert_eq!(v.trim(), "Kubernetes v1.24.1", "{b}");
    }
    let kubectl = bin("kubectl", "usr/local/bin/kubectl");
    let (_, v) = output(Command::new(&kubectl).args(["version", "--client", "-o", "json"]));
    let v: Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["clientVersion"]["gitVersion"], "v1.24.1");
    assert_eq!(
        v["clientVersion"]["gitCommit"],
        "3ddd0f45aa91e2f30c70734b175631bec5b5825a"
    );
    assert_eq!(v["clientVersion"]["goVersion"], "go1.18.2");

    let mut etcd = etcd_cluster(&pki, &root);
    let endpoints = etcd.client_urls.clone();
    {
        let mut procs: Vec<&mut Proc> = etcd.members.iter_mut().collect();
        wait_until(
            "etcd: every member healthy",
            Duration::from_secs(60),
            &mut procs,
            || etcdctl(&pki, &endpoints, &["endpoint", "health"]).0,
        );
    }
    let (ok, members) = etcdctl(&pki, &endpoints, &["member", "list", "-w", "json"]);
    assert!(ok, "{members}");
    let members: Value = serde_json::from_str(&members).unwrap();
    assert_eq!(members["members"].as_array().unwrap().len(), 3);
    // A client without a certificate from the CA is refused.
    let (ok, out) = output(
        Command::new(bin("etcd", "usr/local/bin/etcdctl"))
            .arg(format!("--endpoints={}", endpoints[0]))
            .arg(format!("--cacert={}", pki.ca()))
            .args(["--command-timeout=3s", "get", "/x"]),
    );
    assert!(!ok, "etcd served a client without a certificate: {out}");

    // The API server, with every member as an etcd endpoint.
    pki.issue("apiserver", "/CN=kube-apiserver");
    pki.issue("admin", "/O=system:masters/CN=forge-admin");
    pki.issue("kcm", "/CN=system:kube-controller-manager");
    pki.issue("scheduler", "/CN=system:kube-scheduler");
    openssl(
        &pki.dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "sa.key",
        ],
    );
    let port = free_port();
    let server = format!("https://127.0.0.1:{port}");
    let apiserver_args: Vec<String> = [
        format!("--etcd-servers={}", endpoints.join(",")),
        format!("--etcd-cafile={}", pki.ca()),
        format!("--etcd-certfile={}", pki.path("etcd-member.crt")),
        format!("--etcd-keyfile={}", pki.path("etcd-member.key")),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", root.join("apiserver-certs").display()),
        format!("--tls-cert-file={}", pki.path("apiserver.crt")),
        format!("--tls-private-key-file={}", pki.path("apiserver.key")),
        format!("--client-ca-file={}", pki.ca()),
        "--authorization-mode=Node,RBAC".into(),
        "--service-cluster-ip-range=10.96.0.0/16".into(),
        "--service-account-issuer=https://kubernetes.default.svc".into(),
        format!("--service-account-key-file={}", pki.path("sa.key")),
        format!("--service-account-signing-key-file={}", pki.path("sa.key")),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ]
    .into();
    let mut apiserver = Proc::start(
        "kube-apiserver",
        &bin("kubernetes-server", "usr/local/bin/kube-apiserver"),
        &apiserver_args,
        root.join("kube-apiserver.log"),
    );
    let admin = pki.kubeconfig("admin", &server);
    let kubectl_as = |kubeconfig: &str, args: &[&str]| {
        output(
            Command::new(&kubectl)
                .arg(format!("--kubeconfig={kubeconfig}"))
                .args(args),
        )
    };
    wait_until(
        "kube-apiserver: /readyz",
        Duration::from_secs(120),
        &mut [&mut apiserver],
        || {
            let (ok, out) = kubectl_as(&admin, &["get", "--raw", "/readyz"]);
            ok && out.trim() == "ok"
        },
    );
    let (ok, verbose) = kubectl_as(&admin, &["get", "--raw", "/readyz?verbose"]);
    assert!(ok && verbose.contains("[+]etcd ok"), "{verbose}");
    let (_, version) = kubectl_as(&admin, &["version", "-o", "json"]);
    let version: Value = serde_json::from_str(&version).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.24.1");

    // The controller manager and the scheduler, each with its own identity (RBAC's
    // bootstrap roles) and the per-controller service accounts of a real cluster.
    let kcm_port = free_port();
    let kcm_kubeconfig = pki.kubeconfig("kcm", &server);
    let kcm_args: Vec<String> = [
        format!("--kubeconfig={kcm_kubeconfig}"),
        format!("--authentication-kubeconfig={kcm_kubeconfig}"),
        format!("--authorization-kubeconfig={kcm_kubeconfig}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={kcm_port}"),
        format!("--cert-dir={}", root.join("kcm-certs").display()),
        "--use-service-account-credentials=true".into(),
        format!("--service-account-private-key-file={}", pki.path("sa.key")),
        format!("--root-ca-file={}", pki.ca()),
        "--controllers=*,-nodeipam".into(),
        "--leader-elect=true".into(),
        "--v=1".into(),
    ]
    .into();
    let mut kcm = Proc::start(
        "kube-controller-manager",
        &bin("kubernetes-server", "usr/local/bin/kube-controller-manager"),
        &kcm_args,
        root.join("kube-controller-manager.log"),
    );
    let sched_port = free_port();
    let sched_kubeconfig = pki.kubeconfig("scheduler", &server);
    let sched_args: Vec<String> = [
        format!("--kubeconfig={sched_kubeconfig}"),
        format!("--authentication-kubeconfig={sched_kubeconfig}"),
        format!("--authorization-kubeconfig={sched_kubeconfig}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={sched_port}"),
        format!("--cert-dir={}", root.join("scheduler-certs").display()),
        "--leader-elect=true".into(),
        "--v=1".into(),
    ]
    .into();
    let mut scheduler = Proc::start(
        "kube-scheduler",
        &bin("kubernetes-server", "usr/local/bin/kube-scheduler"),
        &sched_args,
        root.join("kube-scheduler.log"),
    );
    for (what, port) in [
        ("kube-controller-manager", kcm_port),
        ("kube-scheduler", sched_port),
    ] {
        let url = format!("https://127.0.0.1:{port}/healthz");
        wait_until(
            &format!("{what}: /healthz"),
            Duration::from_secs(60),
            &mut [&mut apiserver, &mut kcm, &mut scheduler],
            || {
                let (ok, out) = output(Command::new("curl").args(["-sk", "--max-time", "2", &url]));
                ok && out.trim() == "ok"
            },
        );
    }

    // Server-side apply with one field manager, read back.
    let manifest = root.join("objects.json");
    fs::write(
        &manifest,
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "forge-test"}},
                {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "settings", "namespace": "forge-test"},
                 "data": {"greeting": "hello from forge"}},
                {"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": "web", "namespace": "forge-test"},
                 "spec": {"replicas": 1,
                          "selector": {"matchLabels": {"app": "web"}},
                          "template": {"metadata": {"labels": {"app": "web"}},
                                       "spec": {"containers": [{"name": "web", "image": "registry.invalid/web@sha256:0000000000000000000000000000000000000000000000000000000000000000"}]}}}},
            ],
        })
        .to_string(),
    )
    .unwrap();
    let m = manifest.display().to_string();
    let apply = || {
        let (ok, out) = kubectl_as(
            &admin,
            &["apply", "--server-side", "--field-manager=forge", "-f", &m],
        );
        assert!(ok, "{out}");
    };
    let settings = || {
        let args = ["-n", "forge-test", "get", "configmap", "settings"];
        let (ok, cm) = kubectl_as(
            &admin,
            &[&args[..], &["-o", "json", "--show-managed-fields"]].concat(),
        );
        assert!(ok, "{cm}");
        serde_json::from_str::<Value>(&cm).unwrap()
    };
    apply();
    let cm = settings();
    assert_eq!(cm["data"]["greeting"], "hello from forge");
    let managers: Vec<&str> = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["forge"]);
    assert_eq!(cm["metadata"]["managedFields"][0]["operation"], "Apply");
    // Applying the same objects again changes nothing.
    apply();
    assert_eq!(
        settings()["metadata"]["resourceVersion"],
        cm["metadata"]["resourceVersion"]
    );

    // The controller manager works: the Deployment gets its ReplicaSet and Pod; the
    // scheduler works: with no node, it reports the Pod unschedulable.
    wait_until(
        "the scheduler marks the Deployment's Pod unschedulable",
        Duration::from_secs(90),
        &mut [&mut apiserver, &mut kcm, &mut scheduler],
        || {
            let (ok, pods) = kubectl_as(
                &admin,
                &[
                    "-n",
                    "forge-test",
                    "get",
                    "pods",
                    "-l",
                    "app=web",
                    "-o",
                    "json",
                ],
            );
            if !ok {
                return false;
            }
            let pods: Value = serde_json::from_str(&pods).unwrap_or_default();
            pods["items"].as_array().into_iter().flatten().any(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| {
                        c["type"] == "PodScheduled"
                            && c["status"] == "False"
                            && c["reason"] == "Unschedulable"
                    })
            })
        },
    );
    let (ok, rs) = kubectl_as(
        &admin,
        &["-n", "forge-test", "get", "replicasets", "-o", "json"],
    );
    assert!(ok, "{rs}");
    let rs: Value = serde_json::from_str(&rs).unwrap();
    assert_eq!(
        rs["items"][0]["metadata"]["ownerReferences"][0]["name"],
        "web"
    );

    // Quorum holds with one member down: the API stays ready.
    drop(etcd.members.remove(2));
    let (ok, out) = kubectl_as(
        &admin,
        &[
            "-n",
            "forge-test",
            "get",
            "configmap",
            "settings",
            "-o",
            "name",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "configmap/settings");
    apiserver.alive();
}
