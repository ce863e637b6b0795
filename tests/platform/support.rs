//! What the platform tests share: the repository, a copy of its project, shell commands,
//! unpacked root file systems, machines booted by `forge vm`, and the one build of the four
//! local images every image and boot test reads (made once per test run).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::common::{self, World, json, ok};

pub const IMAGES: [&str; 4] = ["etcd", "kube-controlplane", "kube-node", "vault"];

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the repository's forge project (recipes, images, variants, the Go wrapper
/// modules, lockfile), so the tests never write into the working tree.
pub fn project_copy(w: &World, rel: &str) -> PathBuf {
    let dst = w.path().join(rel);
    fs::create_dir_all(&dst).unwrap();
    for d in ["recipes", "images", "variants", "go"] {
        common::copy_dir(&repo().join(d), &dst.join(d));
    }
    fs::copy(repo().join("lockfile.toml"), dst.join("lockfile.toml")).unwrap();
    dst
}

pub fn sh(cmd: &str) -> (i32, String) {
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

/// An image's root file system, unpacked from the store.
pub struct Rootfs {
    pub dir: PathBuf,
}

impl Rootfs {
    pub fn unpack(store: &Path, image_hash: &str, dir: PathBuf) -> Self {
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

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }

    pub fn read(&self, p: &str) -> String {
        fs::read_to_string(self.path(p)).unwrap_or_else(|e| panic!("/{p}: {e}"))
    }

    pub fn exists(&self, p: &str) -> bool {
        self.path(p).symlink_metadata().is_ok()
    }

    pub fn mode(&self, p: &str) -> u32 {
        self.path(p).symlink_metadata().unwrap().mode() & 0o7777
    }

    /// Every file of the tree (not following symlinks), relative, with its metadata.
    pub fn walk(&self) -> Vec<(String, fs::Metadata)> {
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
    pub fn forge_files(&self) -> Vec<String> {
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
pub fn referenced_paths(text: &str) -> Vec<String> {
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
pub fn installed_by(project: &Path, path: &str) -> Vec<String> {
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
pub fn launcher_argv(
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
pub fn test_pki(dir: &Path, name: &str) -> (String, String, String) {
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
pub fn tls_files(dir: &str, owner: &str, pki: &(String, String, String)) -> String {
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
pub struct Vm {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    started: Instant,
    image: String,
}

impl Vm {
    pub fn boot(
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
    pub fn wait(&mut self, marker: &str) {
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
    pub fn report(&self) -> BTreeMap<String, String> {
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
pub fn boot(
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
pub fn qemu_processes() -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("qemu-system"))
        .collect()
}

/// Asserts that the report of `image`'s boot has each `key=value`.
pub fn expect_report(image: &str, kv: &BTreeMap<String, String>, want: &[(&str, &str)]) {
    for (k, v) in want {
        assert_eq!(
            kv.get(*k).map(String::as_str),
            Some(*v),
            "{image} {k}: {kv:?}"
        );
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A shell command that prints `FORGE-PLATFORM k=$(...) ...` on the serial console.
pub fn report_cmd(keys: &str) -> String {
    format!("echo \"FORGE-PLATFORM {keys}\" > /dev/ttyS0")
}

/// NoCloud user-data: `files` (`write_files` entries, from `tls_files`) and shell
/// commands run in order by `runcmd` (each through `sh -c`, YAML-quoted here).
pub fn user_data(files: &str, commands: &[String]) -> String {
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

/// Whether the `local` variant leaves recipe `recipe` out of image `image`.
pub fn committed_variant_drops(project: &Path, image: &str, recipe: &str) -> bool {
    let text = fs::read_to_string(project.join("variants/local/variant.toml")).unwrap();
    let section = text
        .split(&format!("[image.{image}]"))
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .unwrap_or("");
    section.contains(&format!("\"{recipe}\""))
}

/// The four local images, built once (from a copy of the repository, elsewhere, with
/// `--locked`, in another umask, time zone and locale) and unpacked.
pub struct Built {
    pub world: World,
    pub project: PathBuf,
    pub store: PathBuf,
    /// Image hashes by name.
    pub hashes: BTreeMap<String, String>,
    /// sha256 of each image's qcow2 as the build reported it.
    pub outputs: BTreeMap<String, String>,
    pub roots: BTreeMap<&'static str, Rootfs>,
}

static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();

/// How many tests read the build: when the last of them is done, its images (about 9 GiB)
/// are deleted, so the rest of a `cargo test` run has the disk back. A test run filtered
/// to some of them leaves the images until the next run.
const USERS: usize = 11;
static DONE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A test's use of the build; the last one to finish deletes it.
pub struct Use(&'static Built);

impl std::ops::Deref for Use {
    type Target = Built;
    fn deref(&self) -> &Built {
        self.0
    }
}

impl Drop for Use {
    fn drop(&mut self) {
        if DONE.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == USERS {
            let _ = fs::remove_dir_all(self.0.world.path());
        }
    }
}

/// The build every image and boot test reads; a failed build fails each of them with its
/// message (it is not tried again).
pub fn built() -> Use {
    let b = built_once();
    assert!(
        b.world.path().exists(),
        "the build was deleted before this test ran: raise support::USERS to the number of tests that call built()"
    );
    Use(b)
}

fn built_once() -> &'static Built {
    let r = BUILT.get_or_init(|| {
        std::panic::catch_unwind(build).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the build panicked".into())
        })
    });
    match r {
        Ok(b) => b,
        Err(e) => panic!("the four local images did not build: {e}"),
    }
}

fn build() -> Built {
    // The fixture outlives every test (statics are not dropped): it lives in cargo's
    // target tmp directory, and the previous run's is removed first.
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("platform-images");
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();
    let w = World {
        dir: tempfile::tempdir_in(&base).unwrap(),
    };
    let p = project_copy(&w, "some/other/place/repo");
    // The store the source builds share (tests/common/source_built.rs): the local variant
    // compiles Vault, etcd, Kubernetes, containerd and the CNI plugins, which the
    // Kubernetes and Vault tests have built already in this run or an earlier one. What
    // the store holds is keyed by recipe hash, so sharing it changes no output: the images
    // must still come out as the committed lockfile records them.
    let store = common::source_built::store();
    let t = Instant::now();
    let out = ok(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077 && export TZ=Pacific/Kiritimati LC_ALL=C.UTF-8 && exec '{}' --variant local build images --locked --json -o '{}'",
            env!("CARGO_BIN_EXE_forge"),
            w.path().join("out").display()
        ))
        .current_dir(&p)
        .env("FORGE_STORE", &store)
        .env("NO_COLOR", "1"));
    let seconds = t.elapsed().as_secs_f64();
    eprintln!("build of the four local images: {seconds:.1}s");
    let report = json(&out);
    let mut hashes = BTreeMap::new();
    let mut outputs = BTreeMap::new();
    for t in report["targets"].as_array().unwrap() {
        if t["kind"] != "image" {
            continue;
        }
        let name = t["name"]
            .as_str()
            .unwrap()
            .trim_start_matches("image:")
            .to_string();
        outputs.insert(name.clone(), t["sha256"].as_str().unwrap().to_string());
        hashes.insert(name, t["hash"].as_str().unwrap().to_string());
    }
    let roots: BTreeMap<&str, Rootfs> = IMAGES
        .iter()
        .filter(|n| hashes.contains_key(**n))
        .map(|n| {
            (
                *n,
                Rootfs::unpack(&store, &hashes[*n], w.path().join("rootfs").join(n)),
            )
        })
        .collect();
    Built {
        world: w,
        project: p,
        store,
        hashes,
        outputs,
        roots,
    }
}

/// Held while a machine runs: two TCG machines at once on two cores would each take twice
/// as long and run into their timeouts.
pub static MACHINE: Mutex<()> = Mutex::new(());

/// The machine lock, also after a test that held it failed.
pub fn one_machine_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    MACHINE.lock().unwrap_or_else(|p| p.into_inner())
}
