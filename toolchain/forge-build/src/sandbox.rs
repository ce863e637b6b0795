//! The build sandbox: a `build` step's program runs here, hermetically.
//!
//! The sandbox is made by bubblewrap (`bwrap`), not by `unshare(1)` and a mount script:
//! bwrap makes the user, mount, network, PID, IPC, UTS and cgroup namespaces, pivots into a
//! new root built from bind mounts, drops every capability and dies with its parent, in one
//! call that works unprivileged (through a user namespace) and as root alike. With
//! `unshare` forge would have to write that mount sequence itself, as root.
//!
//! What the program sees:
//! - `/`: the layers of the recipe's `tools` (and their inputs) unpacked in order,
//!   read-only, with `/etc/passwd` and `/etc/group` naming only `forge` (uid/gid 1000);
//! - `/src/NAME`: each source the step lists, read-only (unpacked if the source is);
//! - `/out` (`$out`): empty, writable; what it holds afterwards becomes the layer;
//! - `/build`: empty, writable, the working directory, with `HOME` and `TMPDIR` in it;
//! - a private `/proc`, a minimal `/dev`, a tmpfs `/tmp`, no `/sys`, no network (only a
//!   loopback interface), the host name `forge-build`;
//! - an environment of fixed values ([`forge_schema::recipe::SANDBOX_ENV`]) plus the
//!   step's own `env`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Sandbox paths, as the program sees them.
pub const OUT: &str = "/out";
pub const BUILD: &str = "/build";
pub const SRC: &str = "/src";
/// The sandbox's user and group id.
pub const UID: u32 = 1000;
pub const HOSTNAME: &str = "forge-build";
/// Directories searched for programs, in order; `PATH` holds the ones the tools provide.
const PATH_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];
/// Lines of output shown when a step fails (the whole log is kept in the store).
pub const TAIL_LINES: usize = 25;

/// A prepared sandbox: the host directories behind its mounts.
#[derive(Debug)]
pub struct Sandbox {
    /// The root file system (the tools), on the host.
    pub root: PathBuf,
    /// `/out` on the host.
    pub out: PathBuf,
    /// `/build` on the host.
    pub scratch: PathBuf,
    /// Read-only mounts: host path, sandbox path.
    pub mounts: Vec<(PathBuf, String)>,
}

/// How a run ended, when it did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// bwrap could not be started.
    NoSandbox(io::Error),
    /// The program exited with a status (or was killed by a signal).
    Exit {
        status: String,
        code: Option<i32>,
        tail: Vec<String>,
    },
    Io(io::Error),
}

impl Sandbox {
    /// Makes the mount points and the user database inside `root` (a private copy the
    /// build owns) and the empty `/out` and `/build` beside it.
    pub fn prepare(work: &Path, root: PathBuf, sources: &[(PathBuf, String)]) -> io::Result<Self> {
        let out = work.join("out");
        let scratch = work.join("build");
        for d in [&out, &scratch.join("home"), &scratch.join("tmp")] {
            fs::create_dir_all(d)?;
        }
        for d in ["out", "build", "src", "proc", "dev", "tmp", "etc"] {
            mount_dir(&root, d)?;
        }
        fs::write(
            root.join("etc/passwd"),
            format!(
                "root:x:0:0:root:/root:/bin/sh\nforge:x:{UID}:{UID}:forge build:{BUILD}/home:/bin/sh\n"
            ),
        )?;
        fs::write(
            root.join("etc/group"),
            format!("root:x:0:\nforge:x:{UID}:\n"),
        )?;
        let mut mounts = Vec::new();
        for (host, name) in sources {
            let inside = format!("{SRC}/{name}");
            let point = root.join(inside.trim_start_matches('/'));
            if host.is_dir() {
                fs::create_dir_all(&point)?;
            } else {
                fs::write(&point, b"")?;
            }
            mounts.push((host.clone(), inside));
        }
        Ok(Sandbox {
            root,
            out,
            scratch,
            mounts,
        })
    }

    /// `PATH` inside the sandbox: the standard directories the tools provide.
    pub fn path_var(&self) -> String {
        PATH_DIRS
            .iter()
            .filter(|d| self.root.join(d.trim_start_matches('/')).is_dir())
            .copied()
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Where `program` is inside the sandbox, as `PATH` lookup (or an absolute path) would
    /// find it, following symlinks as inside the root.
    pub fn find(&self, program: &str) -> Option<String> {
        let candidates: Vec<String> = if program.contains('/') {
            vec![program.to_string()]
        } else {
            self.path_var()
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| format!("{d}/{program}"))
                .collect()
        };
        candidates.into_iter().find(|c| {
            let rel = c.trim_start_matches('/');
            forge_archive::resolve_in_root(&self.root, rel, true)
                .ok()
                .and_then(|p| fs::metadata(p).ok())
                .is_some_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.is_file() && m.permissions().mode() & 0o111 != 0
                })
        })
    }

    /// Runs `argv` with `env` (name, value) in the sandbox, its output (stdout and stderr,
    /// interleaved) written to `log`.
    pub fn run(
        &self,
        argv: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<(), Failure> {
        // bwrap is looked up as the host `sh` below will; asked first so that a missing
        // bwrap is an error of its own, not an exit status of the step.
        Command::new("bwrap")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(Failure::NoSandbox)?;
        let file = fs::File::create(log).map_err(Failure::Io)?;
        let err = file.try_clone().map_err(Failure::Io)?;
        // Through the host's `sh` only to fix the umask, which tools inside inherit.
        let mut c = Command::new("sh");
        c.args(["-c", "umask 022 && exec \"$@\"", "sh", "bwrap"]);
        c.args([
            "--unshare-all",
            "--unshare-user",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
        ]);
        c.args(["--uid", &UID.to_string(), "--gid", &UID.to_string()]);
        c.args(["--hostname", HOSTNAME]);
        c.arg("--ro-bind").arg(&self.root).arg("/");
        c.args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]);
        c.arg("--bind").arg(&self.out).arg(OUT);
        c.arg("--bind").arg(&self.scratch).arg(BUILD);
        for (host, inside) in &self.mounts {
            c.arg("--ro-bind").arg(host).arg(inside);
        }
        c.args(["--chdir", BUILD, "--clearenv"]);
        for (k, v) in env {
            c.args(["--setenv", k, v]);
        }
        c.arg("--").args(argv);
        c.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err));
        let status = c.status().map_err(Failure::NoSandbox)?;
        if status.success() {
            return Ok(());
        }
        let text = fs::read(log).map_err(Failure::Io)?;
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].to_vec();
        Err(Failure::Exit {
            status: status.to_string(),
            code: status.code(),
            tail,
        })
    }
}

/// An empty directory in the root to mount over (or to hold mounts).
fn mount_dir(root: &Path, name: &str) -> io::Result<()> {
    let p = root.join(name);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("a tool's layer has /{name}, which the sandbox needs as a directory"),
        )),
        Err(_) => fs::create_dir_all(&p),
    }
}

/// Why a failed step's output suggests the network: the sandbox has none.
pub fn network_hint(tail: &[String]) -> bool {
    const SIGNS: &[&str] = &[
        "network is unreachable",
        "temporary failure in name resolution",
        "could not resolve",
        "no such host",
        "dial tcp",
        "dial udp",
        "lookup disabled by goproxy=off",
        "connection refused",
        "name or service not known",
    ];
    tail.iter().any(|l| {
        let l = l.to_ascii_lowercase();
        SIGNS.iter().any(|s| l.contains(s))
    })
}

/// Host directories where a program might be, for the hint that a build never uses them.
pub fn on_host(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return None;
    }
    PATH_DIRS
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_errors_are_recognised_in_any_case() {
        let t = |s: &str| vec!["building".to_string(), s.to_string()];
        assert!(network_hint(&t(
            "dial tcp 1.2.3.4:443: connect: Network is unreachable"
        )));
        assert!(network_hint(&t(
            "curl: (6) Could not resolve host: example.org"
        )));
        assert!(!network_hint(&t("main.go:3: undefined: x")));
    }

    #[test]
    fn path_holds_only_the_directories_the_tools_provide() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        let link = root.join("bin/sh");
        std::os::unix::fs::symlink("/usr/bin/busybox", &link).unwrap();
        let bb = root.join("usr/bin/busybox");
        fs::write(&bb, b"#!").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&bb, fs::Permissions::from_mode(0o755)).unwrap();
        let sb = Sandbox::prepare(work.path(), root, &[]).unwrap();
        assert_eq!(sb.path_var(), "/usr/bin:/bin");
        // An absolute symlink is followed inside the root, not on the host.
        assert_eq!(sb.find("sh").as_deref(), Some("/bin/sh"));
        assert_eq!(sb.find("busybox").as_deref(), Some("/usr/bin/busybox"));
        assert_eq!(sb.find("go"), None);
        let passwd = fs::read_to_string(sb.root.join("etc/passwd")).unwrap();
        assert!(passwd.contains("forge:x:1000:1000"), "{passwd}");
    }
}
