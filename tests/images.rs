//! Images end to end, with the real Debian archive (apt's configured mirror), mmdebstrap,
//! mke2fs, mtools, syslinux, systemd-boot and QEMU under TCG: examples/hello-image is
//! resolved, built in two places and environments into two stores (bit-identical), checked
//! by a rebuild, inspected, and booted with SeaBIOS (plain QEMU) and OVMF (`forge vm`, with
//! user-data). One test, so the builds run one after another on a 2-core machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{World, json, ok, run};

fn sh(w: &World, store: &Path, dir: &Path, env: &str, args: &str) -> Command {
    let forge = env!("CARGO_BIN_EXE_forge");
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("{env} && exec \"{forge}\" {args}"))
        .current_dir(dir)
        .env("FORGE_STORE", store)
        .env("NO_COLOR", "1");
    let _ = w;
    c
}

/// The entry names of the image's root file system (from the store), and a way to read
/// one file of it.
struct Rootfs {
    tar_zst: std::path::PathBuf,
    names: Vec<String>,
}

impl Rootfs {
    fn open(store: &Path, image_hash: &str) -> Self {
        let tar_zst = common::image_rootfs_blob(store, image_hash);
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("zstd -dc '{}' | tar -t", tar_zst.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let names = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        Self { tar_zst, names }
    }

    fn name(&self, path: &str) -> Option<&String> {
        self.names
            .iter()
            .find(|n| n.trim_start_matches("./") == path)
    }

    fn read(&self, path: &str) -> String {
        let name = self
            .name(path)
            .unwrap_or_else(|| panic!("`/{path}` is not in the image"));
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "zstd -dc '{}' | tar -xO -f - '{name}'",
                self.tar_zst.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Boots `disk` under plain qemu-system-x86_64 (SeaBIOS, or the given UEFI firmware) until
/// the console shows `marker`.
fn boot_plain_qemu(disk: &Path, firmware: Option<&str>, marker: &str, timeout: Duration) -> f64 {
    use std::io::{BufRead, BufReader};
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64");
    if let Some(f) = firmware {
        qemu.args(["-bios", f]);
    }
    let mut child = qemu
        .args([
            "-accel",
            "tcg",
            "-m",
            "1024",
            "-smp",
            "2",
            "-nographic",
            "-nodefaults",
            "-serial",
            "stdio",
        ])
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=qcow2,snapshot=on",
            disk.display()
        ))
        .args(["-nic", "user,model=virtio-net-pci"])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 is installed");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(timeout.saturating_sub(started.elapsed())) {
            Ok(line) => {
                let hit = line.contains(marker);
                seen.push(line);
                if hit {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        found,
        "no `{marker}` on the console within {timeout:?}; last lines:\n{}",
        seen[seen.len().saturating_sub(30)..].join("\n")
    );
    started.elapsed().as_secs_f64()
}

/// The (only) image target of a `forge build --json` report.
fn image_target(report: &serde_json::Value) -> serde_json::Value {
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "image")
        .unwrap()
        .clone()
}

#[test]
fn hello_image_end_to_end() {
    let w = World::new();
    let a = w.example("hello-image", "a");
    let b = w.example("hello-image", "some/much/deeper/b");
    // Resolve afresh against the archive (the committed lockfile may be older than the
    // mirror), in environment A.
    fs::remove_file(a.join("lockfile.toml")).unwrap();
    let store_a = w.path().join("store-a");
    let store_b = w.path().join("x/y/store-b");

    let t = Instant::now();
    // `lock` pins the inputs (package set, tools, image hash) without building...
    ok(&mut sh(&w, &store_a, &a, "true", "lock"));
    let locked_only = fs::read_to_string(a.join("lockfile.toml")).unwrap();
    assert!(!locked_only.contains("output-sha256"), "{locked_only}");
    // ...and the first build records the output.
    let out = ok(&mut sh(
        &w,
        &store_a,
        &a,
        "umask 022 && export TZ=UTC LC_ALL=C",
        "build --json",
    ));
    let lock_secs = t.elapsed().as_secs_f64();
    let report = json(&out);
    let img = image_target(&report);
    let sha = img["sha256"].as_str().unwrap().to_string();
    let hash = img["hash"].as_str().unwrap().to_string();
    let lock_a = fs::read_to_string(a.join("lockfile.toml")).unwrap();
    assert!(
        lock_a.contains("[[deb]]") && lock_a.contains("mke2fs"),
        "{lock_a}"
    );
    assert!(lock_a.contains(&format!("output-sha256 = \"{sha}\"")));

    // Environment B: the same lockfile, another directory, umask, time zone, locale, job
    // count and store, and --locked.
    fs::write(b.join("lockfile.toml"), &lock_a).unwrap();
    let t = Instant::now();
    let out = ok(&mut sh(
        &w,
        &store_b,
        &b,
        "umask 077 && export TZ=Pacific/Kiritimati LC_ALL=C.UTF-8",
        "build images --locked -j 1 --json",
    ));
    let build_secs = t.elapsed().as_secs_f64();
    let report_b = json(&out);
    let img_b = image_target(&report_b);
    assert_eq!(
        img_b["sha256"].as_str().unwrap(),
        sha,
        "the two builds differ"
    );
    assert_eq!(img_b["cached"], false);
    assert_eq!(fs::read_to_string(b.join("lockfile.toml")).unwrap(), lock_a);
    eprintln!("lock + build in A: {lock_secs:.1}s, build in B: {build_secs:.1}s");

    // What the settings promise, read from the root file system in the store.
    let rootfs = Rootfs::open(&store_a, &hash);
    assert_eq!(rootfs.read("etc/machine-id"), "");
    assert_eq!(rootfs.read("etc/hostname"), "hello\n");
    assert!(
        rootfs.read("etc/fstab").contains("UUID="),
        "{}",
        rootfs.read("etc/fstab")
    );
    assert!(rootfs.read("usr/lib/forge/image").contains(&hash));
    assert!(
        rootfs
            .read("etc/cloud/cloud.cfg.d/90-forge.cfg")
            .contains("NoCloud")
    );
    assert!(
        rootfs
            .name("etc/systemd/system/multi-user.target.wants/hello-marker.service")
            .is_some()
    );
    assert!(
        !rootfs.names.iter().any(|l| l.contains("ssh_host_")),
        "SSH host keys in the image"
    );
    assert!(rootfs.name("var/log/dpkg.log").is_none());

    // A rebuild from scratch reproduces it.
    let t = Instant::now();
    ok(&mut sh(
        &w,
        &store_a,
        &a,
        "true",
        "build --check image:hello-image",
    ));
    eprintln!(
        "check (rebuild in a fresh store): {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Boot: SeaBIOS + syslinux and OVMF + systemd-boot under plain QEMU; then OVMF under
    // `forge vm`, with user-data whose file the marker unit prints.
    let qcow2 = store_a.join("blobs/sha256").join(&sha);
    let marker = format!("FORGE-HELLO-OK {hash}");
    let bios = boot_plain_qemu(&qcow2, None, &marker, Duration::from_secs(170));
    eprintln!("BIOS boot to marker: {bios:.1}s");
    let uefi = boot_plain_qemu(
        &qcow2,
        Some(forge_image::vm::OVMF),
        &marker,
        Duration::from_secs(170),
    );
    eprintln!("UEFI boot to marker: {uefi:.1}s");
    let ud = w.path().join("user-data");
    fs::write(
        &ud,
        "#cloud-config\nwrite_files:\n  - path: /etc/hello/message\n    content: from user-data\n",
    )
    .unwrap();
    let t = Instant::now();
    let (code, stdout, stderr) = run(w
        .forge()
        .env("FORGE_STORE", &store_a)
        .arg("-C")
        .arg(&a)
        .args([
            "vm",
            "hello-image",
            "--boot",
            "uefi",
            "--accel",
            "tcg",
            "--timeout",
            "170",
            "--user-data",
        ])
        .arg(&ud)
        .arg("--expect")
        .arg(format!("FORGE-HELLO-OK {hash} from user-data")));
    assert_eq!(
        code,
        0,
        "UEFI boot failed:\n{}\n{stderr}",
        &stdout[stdout.len().saturating_sub(3000)..]
    );
    eprintln!(
        "UEFI boot with user-data to marker: {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // A damaged .deb in the store is found and fetched again before any use.
    let deb = fs::read_to_string(a.join("lockfile.toml"))
        .unwrap()
        .lines()
        .skip_while(|l| !l.starts_with("[[deb]]"))
        .find_map(|l| {
            l.strip_prefix("sha256 = \"")
                .map(|s| s.trim_end_matches('"').to_string())
        })
        .unwrap();
    let blob = store_a.join("blobs/sha256").join(&deb);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&blob, b"tampered").unwrap();
    let (code, _, stderr) = run(w
        .forge()
        .env("FORGE_STORE", &store_a)
        .arg("-C")
        .arg(&a)
        .args(["build", "images", "--locked"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    let (actual, _) = forge_store::fsutil::hash_file(&blob).unwrap();
    assert_eq!(actual.to_hex(), deb, "the .deb was not fetched again");
}
