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
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::source_built::bin;
use common::vault::free_port;
use serde_json::Value;

/// A process killed (and reaped) on drop, its output in `log`.
struct Proc {
    child: Child,
    log: PathBuf,
    what: String,
}

impl Proc {
    fn start(what: &str, program: &Path, args: &[String], log: PathBuf) -> Self {
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .env_remove("KUBECONFIG")
            .env_remove("ETCDCTL_API")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        Self {
            child,
            log,
            what: what.into(),
        }
    }

    /// Panics with the end of the log when the process has exited.
    fn alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("{} exited ({status}):\n{}", self.what, tail.join("\n"));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A test CA and the certificates it signs (openssl, EC P-256 keys).
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: PathBuf) -> Self {
        fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "1",
                "-subj",
                "/CN=test-ca",
            ],
        );
        Self { dir }
    }

    fn ca(&self) -> String {
        self.path("ca.crt")
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }

    /// `name.crt` and `name.key` for `subject`, usable as server and client, with the
    /// loopback address and `localhost` as names.
    fn issue(&self, name: &str, subject: &str) {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                subject,
            ],
        );
        let ext = format!("{name}.ext");
        fs::write(
            self.dir.join(&ext),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        )
        .unwrap();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "1",
                "-extfile",
                &ext,
            ],
        );
    }

    /// A kubeconfig for `name`'s certificate against `server`.
    fn kubeconfig(&self, name: &str, server: &str) -> String {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        let cfg = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": self.ca()}}],
            "users": [{"name": name, "user": {
                "client-certificate": self.path(&format!("{name}.crt")),
                "client-key": self.path(&format!("{name}.key")),
            }}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": name}}],
            "current-context": "test",
        });
        fs::write(&path, cfg.to_string()).unwrap();
        path.display().to_string()
    }
}

fn wait_until(what: &str, limit: Duration, procs: &mut [&mut Proc], mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if ok() {
            eprintln!("{what}: after {:.1}s", start.elapsed().as_secs_f64());
            return;
        }
        for p in procs.iter_mut() {
            p.alive();
        }
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn output(c: &mut Command) -> (bool, String) {
    let o = c.output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

struct Etcd {
    members: Vec<Proc>,
    client_urls: Vec<String>,
}

/// Three etcd members on loopback: TLS with client certificates between members and
/// from clients, as the platform's etcd units run them.
fn etcd_cluster(pki: &Pki, root: &Path) -> Etcd {
    let etcd = bin("etcd", "usr/local/bin/etcd");
    pki.issue("etcd-member", "/CN=etcd-member");
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=https://127.0.0.1:{peer}"))
        .collect();
    let mut members = Vec::new();
    let mut client_urls = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let data = root.join(format!("etcd-m{i}"));
        let client_url = format!("https://127.0.0.1:{client}");
        let peer_url = format!("https://127.0.0.1:{peer}");
        let args: Vec<String> = [
            format!("--name=m{i}"),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={}", initial.join(",")),
            "--initial-cluster-state=new".into(),
            "--initial-cluster-token=forge-test".into(),
            format!("--cert-file={}", pki.path("etcd-member.crt")),
            format!("--key-file={}", pki.path("etcd-member.key")),
            format!("--trusted-ca-file={}", pki.ca()),
            "--client-cert-auth".into(),
            format!("--peer-cert-file={}", pki.path("etcd-member.crt")),
            format!("--peer-key-file={}", pki.path("etcd-member.key")),
            format!("--peer-trusted-ca-file={}", pki.ca()),
            "--peer-client-cert-auth".into(),
            "--listen-metrics-urls=".into(),
            "--log-level=warn".into(),
        ]
        .into();
        members.push(Proc::start(
            &format!("etcd m{i}"),
            &etcd,
            &args,
            root.join(format!("etcd-m{i}.log")),
        ));
        client_urls.push(client_url);
    }
    Etcd {
        members,
        client_urls,
    }
}

fn etcdctl(pki: &Pki, endpoints: &[String], args: &[&str]) -> (bool, String) {
    output(
        Command::new(bin("etcd", "usr/local/bin/etcdctl"))
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg(format!("--cacert={}", pki.ca()))
            .arg(format!("--cert={}", pki.path("etcd-member.crt")))
            .arg(format!("--key={}", pki.path("etcd-member.key")))
            .args(args),
    )
}

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
