//! The command line itself: help, exit codes, completions, `forge hash`, `--check`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::process::Command;

use common::{World, json, ok, run};

#[test]
fn help_everywhere() {
    let w = World::new();
    for args in [
        vec!["--help"],
        vec!["build", "--help"],
        vec!["lock", "--help"],
        vec!["fetch", "--help"],
        vec!["hash", "--help"],
        vec!["store", "--help"],
        vec!["store", "path", "--help"],
        vec!["store", "verify", "--help"],
        vec!["store", "roots", "--help"],
        vec!["gc", "--help"],
        vec!["completions", "--help"],
    ] {
        let out = ok(w.forge().args(&args));
        assert!(out.contains("Usage: forge"), "{args:?}: {out}");
    }
    let top = ok(w.forge().arg("--help"));
    assert!(top.contains("Exit codes:"), "{top}");
}

#[test]
fn usage_errors_exit_2() {
    let w = World::new();
    let (code, _, stderr) = run(w.forge().arg("buidl"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("build"),
        "clap suggests the right command: {stderr}"
    );
    let (code, _, _) = run(w.forge().args(["build", "--jobs", "many"]));
    assert_eq!(code, 2);
    let (code, _, _) = run(w.forge().arg("hash"));
    assert_eq!(code, 2);
}

#[test]
fn completions_for_shells() {
    let w = World::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = ok(w.forge().args(["completions", shell]));
        assert!(out.contains("forge"), "{shell}");
        assert!(out.contains("verify"), "{shell}");
    }
}

#[test]
fn hash_matches_sha256sum_format() {
    let w = World::new();
    let a = w.path().join("a.bin");
    let b = w.path().join("b with space.txt");
    fs::write(&a, vec![7u8; 3_000_000]).unwrap();
    fs::write(&b, b"hello\n").unwrap();
    let ours = ok(w.forge().arg("hash").arg(&a).arg(&b));
    let theirs = Command::new("sha256sum").arg(&a).arg(&b).output().unwrap();
    assert_eq!(ours, String::from_utf8_lossy(&theirs.stdout));
    let (code, _, stderr) = run(w.forge().arg("hash").arg(w.path().join("missing")));
    assert_eq!(code, 1);
    assert!(stderr.contains("missing"), "{stderr}");
}

/// Rewrites a layer with one entry's mode changed, as a nondeterministic build would.
fn tampered_layer(layer: &[u8], entry: &str, mode: u32) -> Vec<u8> {
    let raw = zstd::decode_all(layer).unwrap();
    let mut archive = tar::Archive::new(&raw[..]);
    let mut builder = tar::Builder::new(Vec::new());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let mut header = e.header().clone();
        if e.path().unwrap().to_string_lossy() == entry {
            header.set_mode(mode);
            header.set_cksum();
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        builder.append(&header, &data[..]).unwrap();
    }
    zstd::encode_all(&builder.into_inner().unwrap()[..], 3).unwrap()
}

#[test]
fn check_passes_then_names_the_first_difference() {
    let w = World::new();
    let p = w.example("hello", "p");
    ok(w.forge().arg("-C").arg(&p).arg("build"));
    let report = json(&ok(w
        .forge()
        .arg("-C")
        .arg(&p)
        .args(["build", "--check", "--json"])));
    assert!(
        report["check"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["matches"] == true),
        "{report}"
    );

    // Pretend an earlier, nondeterministic build locked a layer with another mode.
    let layer_path = ok(w
        .forge()
        .arg("-C")
        .arg(&p)
        .args(["store", "path", "greeting"]));
    let layer = fs::read(layer_path.trim()).unwrap();
    let bad = tampered_layer(&layer, "etc/hello/greeting.conf", 0o644);
    let bad_sha = forge_schema::Sha256Digest::of(&bad);
    fs::write(w.store().join("blobs/sha256").join(bad_sha.to_hex()), &bad).unwrap();
    let good_sha = forge_schema::Sha256Digest::of(&layer);
    let lock = fs::read_to_string(p.join("lockfile.toml")).unwrap();
    fs::write(
        p.join("lockfile.toml"),
        lock.replace(&good_sha.to_hex(), &bad_sha.to_hex()),
    )
    .unwrap();

    let (code, stdout, stderr) = run(w
        .forge()
        .arg("-C")
        .arg(&p)
        .args(["build", "--check", "--json", "greeting"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("greeting is not reproducible"), "{stderr}");
    assert!(
        stderr.contains("`/etc/hello/greeting.conf` differs in mode: 0644 vs 0640"),
        "{stderr}"
    );
    let report = json(&stdout);
    let d = &report["check"][0]["difference"];
    assert_eq!(d["path"], "/etc/hello/greeting.conf");
    assert_eq!(d["attribute"], "mode");
}

#[test]
fn quiet_and_json_keep_output_clean() {
    let w = World::new();
    let p = w.example("hello", "p");
    let (code, stdout, stderr) = run(w.forge().arg("-C").arg(&p).args(["-q", "build"]));
    assert_eq!(code, 0);
    assert!(stdout.is_empty() && stderr.is_empty(), "{stdout}{stderr}");
    let (_, stdout, _) = run(w.forge().arg("-C").arg(&p).args(["build", "--json"]));
    json(&stdout);
}

#[test]
fn env_docs_are_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/environment.md");
    let expected = forge::env::markdown();
    if std::env::var_os("FORGE_UPDATE_DOCS").is_some() {
        fs::write(&path, &expected).unwrap();
    }
    let actual = fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual, expected,
        "docs/environment.md is stale: run `FORGE_UPDATE_DOCS=1 cargo test --test cli`"
    );
}

/// The environment is read in one place, `toolchain/forge/src/env.rs`, through its
/// registry: no other source file under toolchain/ calls `std::env::var` and its kin, and
/// every variable name the registry documents is one the code can look up.
#[test]
fn no_environment_read_escapes_the_registry() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("toolchain");
    let forbidden = [
        "env::var(",
        "env::var_os(",
        "env::vars(",
        "env::vars_os(",
        "env::temp_dir(",
        "env::home_dir(",
    ];
    let mut stack = vec![root.clone()];
    let mut offenders = Vec::new();
    let mut scanned = 0;
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            // Integration tests of the crates set up their own processes.
            if rel == "forge/src/env.rs" || rel.contains("/tests/") {
                continue;
            }
            scanned += 1;
            let text = fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                if forbidden.iter().any(|f| line.contains(f)) {
                    offenders.push(format!("toolchain/{rel}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(scanned > 50, "only {scanned} files scanned");
    assert!(
        offenders.is_empty(),
        "read the environment through forge::env::Env (and register the variable):\n{}",
        offenders.join("\n")
    );
    // The registry's names are unique.
    let mut names: Vec<&str> = forge::env::ALL.iter().map(|v| v.name).collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "a variable is registered twice");
}

#[test]
fn layers_are_read_by_standard_tools() {
    let w = World::new();
    let p = common::slow_project(&w);
    let out = json(&ok(w.forge().arg("-C").arg(&p).args(["build", "--json"])));
    let layer = out["targets"][0]["output"].as_str().unwrap().to_string();
    // A multi-frame layer (24 MiB of data) through the zstd and tar command-line tools.
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{layer}' | tar -tvf -"))
        .output()
        .unwrap();
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(text.contains("opt/slow/big.bin"), "{text}");
    assert!(text.contains("opt/slow/tree/d0/f0.txt"), "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains(" 0/0 ") && l.contains("1980-01-01")),
        "{text}"
    );
}
