//! Helpers for integration tests: a fresh directory and store per test, the `forge`
//! binary with a clean environment, and snapshot filters that scrub temp paths and hashes.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

pub mod cluster;
pub mod exoscale;
pub mod source_built;
pub mod vault;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A test's private world: a temp dir holding a store and any number of projects.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> PathBuf {
        self.path().join("store")
    }

    /// Copies `examples/<name>` to `<world>/<rel>` and returns the copy.
    pub fn example(&self, name: &str, rel: &str) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name);
        let dst = self.path().join(rel);
        copy_dir(&src, &dst);
        dst
    }

    /// `forge` with this world's store and a clean environment.
    pub fn forge(&self) -> Command {
        forge_with_store(&self.store())
    }
}

pub fn forge_with_store(store: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_forge"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FORGE_") || k == "SOURCE_DATE_EPOCH" {
            c.env_remove(k);
        }
    }
    c.env("FORGE_STORE", store).env("NO_COLOR", "1");
    c
}

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Runs and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out: Output = cmd.output().expect("forge runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs and asserts success; returns stdout.
pub fn ok(cmd: &mut Command) -> String {
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(
        code, 0,
        "command failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// Replaces temp paths, 64-hex digests and timings so snapshots are stable.
pub fn scrub(text: &str, world: &World) -> String {
    let mut s = text.replace(&world.path().display().to_string(), "[WORLD]");
    s = regex_replace(&s);
    s
}

/// Hand-rolled scrubbing of hex digests and durations (no regex crate needed).
fn regex_replace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            .count();
        if run >= 64 && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            out.push_str("[SHA256]");
            i += run;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    // "in 0.01s" / "(0.12s)" style timings.
    let mut res = String::new();
    for line in out.lines() {
        let mut l = line.to_string();
        if let Some(pos) = l.find(" in ")
            && l.ends_with('s')
            && l[pos + 4..l.len() - 1].parse::<f64>().is_ok()
        {
            l = format!("{} in [TIME]", &l[..pos]);
        }
        res.push_str(&l);
        res.push('\n');
    }
    res
}

/// Every file under `dir`, relative, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Parsed `--json` output.
pub fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"))
}

/// A project slow enough to be killed mid-way: a 24 MiB incompressible file and 1500 small
/// files, as path sources.
pub fn slow_project(w: &World) -> std::path::PathBuf {
    let p = w.path().join("p");
    std::fs::create_dir_all(p.join("recipes")).unwrap();
    std::fs::create_dir_all(p.join("data/tree")).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut big = vec![0u8; 24 << 20];
    for chunk in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(p.join("data/big.bin"), &big).unwrap();
    for i in 0..1500 {
        let d = p.join(format!("data/tree/d{}", i % 30));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(format!("f{i}.txt")),
            format!("file {i}\n").repeat(i % 50 + 1),
        )
        .unwrap();
    }
    std::fs::write(
        p.join("recipes/slow.toml"),
        r#"name = "slow"
version = "1"

[[source]]
name = "big"
path = "data/big.bin"

[[source]]
name = "tree"
path = "data/tree"

[[step]]
kind = "file"
path = "/opt/slow/big.bin"
from = "big"

[[step]]
kind = "tree"
path = "/opt/slow/tree"
from = "tree"
"#,
    )
    .unwrap();
    p
}

/// The root file system (`.tar.zst` blob) the store recorded for an image hash.
#[allow(dead_code)]
pub fn image_rootfs_blob(store: &Path, image_hash: &str) -> PathBuf {
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join(format!("outputs/{image_hash}.image.json"))).unwrap(),
    )
    .unwrap();
    store
        .join("blobs/sha256")
        .join(record["rootfs_sha256"].as_str().unwrap())
}
