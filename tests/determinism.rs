//! Reproducibility: the example project built in different places, umasks, time zones,
//! locales and job counts gives byte-identical lockfiles and layers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{World, json, ok};

fn sh(world: &World, store: &Path, umask: &str, tz: &str, lc: &str, args: &str) -> Command {
    let mut c = common::forge_with_store(store);
    let forge = env!("CARGO_BIN_EXE_forge");
    c.env("TZ", tz).env("LC_ALL", lc).env("LANG", lc);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask} && exec \"{forge}\" {args}"))
        .current_dir(world.path());
    // Same environment as `c`, through the shell.
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

fn layers(world: &World, store: &Path, project: &Path) -> Vec<(String, Vec<u8>)> {
    let out = ok(common::forge_with_store(store)
        .arg("-C")
        .arg(project)
        .args(["build", "--json"]));
    let report = json(&out);
    let mut v: Vec<(String, Vec<u8>)> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let path = t["output"].as_str().unwrap();
            (
                t["name"].as_str().unwrap().to_string(),
                fs::read(path).unwrap(),
            )
        })
        .collect();
    v.sort();
    let _ = world;
    v
}

#[test]
fn hello_is_bit_identical_everywhere() {
    let w = World::new();
    let a = w.example("hello", "a");
    let b = w.example("hello", "some/much/deeper/path/b");
    let committed = fs::read_to_string(a.join("lockfile.toml")).unwrap();
    fs::remove_file(a.join("lockfile.toml")).unwrap();
    fs::remove_file(b.join("lockfile.toml")).unwrap();
    let store_a = w.path().join("store-a");
    let store_b = w.path().join("x/y/store-b");

    ok(&mut sh(
        &w,
        &store_a,
        "022",
        "UTC",
        "C",
        &format!("-C {} build", a.display()),
    ));
    ok(&mut sh(
        &w,
        &store_b,
        "077",
        "Pacific/Kiritimati",
        "C.UTF-8",
        &format!("-C {} build -j 1", b.display()),
    ));

    let lock_a = fs::read_to_string(a.join("lockfile.toml")).unwrap();
    let lock_b = fs::read_to_string(b.join("lockfile.toml")).unwrap();
    assert_eq!(
        lock_a, lock_b,
        "lockfiles differ between the two environments"
    );
    assert_eq!(
        lock_a, committed,
        "the committed examples/hello/lockfile.toml is stale"
    );

    let la = layers(&w, &store_a, &a);
    let lb = layers(&w, &store_b, &b);
    assert_eq!(la.len(), 3);
    assert_eq!(la, lb, "layer bytes differ between the two environments");

    // And the rebuild check agrees, in both places.
    ok(common::forge_with_store(&store_a)
        .arg("-C")
        .arg(&a)
        .args(["build", "--check"]));
    ok(common::forge_with_store(&store_b)
        .arg("-C")
        .arg(&b)
        .args(["build", "--check", "-j", "1"]));
}

#[test]
fn build_with_committed_lockfile_changes_nothing() {
    let w = World::new();
    let p = w.example("hello", "p");
    let before = fs::read(p.join("lockfile.toml")).unwrap();
    let out = ok(w
        .forge()
        .arg("-C")
        .arg(&p)
        .args(["build", "--locked", "--json"]));
    assert_eq!(json(&out)["lockfile_updated"], false);
    assert_eq!(fs::read(p.join("lockfile.toml")).unwrap(), before);
}
