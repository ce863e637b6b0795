//! Real servers on loopback for the Kubernetes-side tests: processes killed on drop, a
//! test CA (openssl), and etcd members from the source-built etcd 3.5.4.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::source_built::bin;
use super::vault::free_port;

/// A process killed (and reaped) on drop, its output in `log`.
pub struct Proc {
    child: Child,
    log: PathBuf,
    what: String,
}

impl Proc {
    pub fn start(what: &str, program: &Path, args: &[String], log: PathBuf) -> Self {
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
    pub fn alive(&mut self) {
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

pub fn openssl(dir: &Path, args: &[&str]) {
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
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: PathBuf) -> Self {
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

    pub fn ca(&self) -> String {
        self.path("ca.crt")
    }

    pub fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }

    /// `name.crt` and `name.key` for `subject`, usable as server and client, with the
    /// loopback address and `localhost` as names.
    pub fn issue(&self, name: &str, subject: &str) {
        self.issue_for(name, subject, "IP:127.0.0.1,DNS:localhost");
    }

    /// As [`Pki::issue`], with these subject alternative names (`IP:…,DNS:…`).
    pub fn issue_for(&self, name: &str, subject: &str, sans: &str) {
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
            format!("subjectAltName={sans}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"),
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
    pub fn kubeconfig(&self, name: &str, server: &str) -> String {
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

pub fn wait_until(
    what: &str,
    limit: Duration,
    procs: &mut [&mut Proc],
    mut ok: impl FnMut() -> bool,
) {
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

pub fn output(c: &mut Command) -> (bool, String) {
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

pub struct Etcd {
    pub members: Vec<Proc>,
    pub client_urls: Vec<String>,
}

/// Three etcd members on loopback: TLS with client certificates between members and
/// from clients, as the platform's etcd units run them.
pub fn etcd_cluster(pki: &Pki, root: &Path) -> Etcd {
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
        let client_url = format!("https://127.0.0.1:{client}");
        let peer_url = format!("https://127.0.0.1:{peer}");
        members.push(etcd_member(
            pki,
            root,
            &format!("m{i}"),
            (&client_url, &peer_url),
            &initial.join(","),
            "new",
        ));
        client_urls.push(client_url);
    }
    Etcd {
        members,
        client_urls,
    }
}

/// One etcd member `name` serving `client_url` and `peer_url`, with the certificate
/// `etcd-member` of `pki` (issue it first); `state` is `new` or `existing`.
pub fn etcd_member(
    pki: &Pki,
    root: &Path,
    name: &str,
    (client_url, peer_url): (&str, &str),
    initial_cluster: &str,
    state: &str,
) -> Proc {
    let data = root.join(format!("etcd-{name}"));
    let args: Vec<String> = [
        format!("--name={name}"),
        format!("--data-dir={}", data.display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-state={state}"),
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
    Proc::start(
        &format!("etcd {name}"),
        &bin("etcd", "usr/local/bin/etcd"),
        &args,
        root.join(format!("etcd-{name}.log")),
    )
}

pub fn etcdctl(pki: &Pki, endpoints: &[String], args: &[&str]) -> (bool, String) {
    output(
        Command::new(bin("etcd", "usr/local/bin/etcdctl"))
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg(format!("--cacert={}", pki.ca()))
            .arg(format!("--cert={}", pki.path("etcd-member.crt")))
            .arg(format!("--key={}", pki.path("etcd-member.key")))
            .args(args),
    )
}
