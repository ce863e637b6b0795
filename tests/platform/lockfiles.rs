//! The real images' lockfile is current and pins the upstream releases the spec names.

use std::fs;

use crate::common::{World, ok};
use crate::support::*;

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
