//! The store through the CLI: `store path`, `store verify [--repair]`, `gc [--dry-run]`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{World, json, ok, run};

#[test]
fn store_path_of_recipes_and_blobs() {
    let w = World::new();
    let p = w.example("hello", "p");
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&p).args(["store", "path", "hello"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("is not built; run `forge build hello`"),
        "{stderr}"
    );
    ok(w.forge().arg("-C").arg(&p).arg("build"));
    let path = ok(w
        .forge()
        .arg("-C")
        .arg(&p)
        .args(["store", "path", "recipe:hello"]));
    let path = path.trim();
    assert!(path.starts_with(&w.store().display().to_string()), "{path}");
    let sha = forge_schema::Sha256Digest::of(&fs::read(path).unwrap());
    let lock = fs::read_to_string(p.join("lockfile.toml")).unwrap();
    assert!(lock.contains(&sha.to_hex()));
    let by_hash = ok(w.forge().args(["store", "path", &format!("sha256:{sha}")]));
    assert_eq!(by_hash.trim(), path);
}

#[test]
fn verify_finds_and_repairs_corruption() {
    let w = World::new();
    let p = w.example("hello", "p");
    ok(w.forge().arg("-C").arg(&p).arg("build"));
    let layer = ok(w
        .forge()
        .arg("-C")
        .arg(&p)
        .args(["store", "path", "greeting"]));
    let layer = layer.trim();
    fs::set_permissions(layer, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(layer, b"bit rot").unwrap();

    let (code, stdout, stderr) = run(w.forge().args(["--json", "store", "verify"]));
    assert_eq!(code, 1, "{stderr}");
    let report = json(&stdout);
    let problems = report["problems"].as_array().unwrap();
    // The corrupt blob, and the output record that points to it.
    assert_eq!(problems.len(), 2, "{report}");
    assert!(stderr.contains("corrupt blob"), "{stderr}");

    ok(w.forge().args(["store", "verify", "--repair"]));
    ok(w.forge().args(["store", "verify"]));
    // The next build rebuilds the layer, identical to the locked one.
    let out = ok(w
        .forge()
        .arg("-C")
        .arg(&p)
        .args(["build", "--locked", "--json"]));
    let greeting = json(&out)["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "greeting")
        .cloned()
        .unwrap();
    assert_eq!(greeting["cached"], false);
}

#[test]
fn gc_keeps_what_lockfiles_reference() {
    let w = World::new();
    let p = w.example("hello", "p");
    ok(w.forge().arg("-C").arg(&p).arg("build"));
    // An old version of the greeting: built, then superseded.
    fs::write(p.join("files/hello.txt"), "a different greeting\n").unwrap();
    ok(w.forge().arg("-C").arg(&p).arg("build"));
    // A second project that is deleted later: its root goes stale.
    let q = w.example("hello", "q");
    fs::write(q.join("files/hello.txt"), "yet another greeting\n").unwrap();
    ok(w.forge().arg("-C").arg(&q).arg("build"));
    fs::remove_dir_all(&q).unwrap();

    let dry = json(&ok(w.forge().args(["--json", "gc", "--dry-run"])));
    assert!(dry["bytes_freed"].as_u64().unwrap() > 0, "{dry}");
    assert_eq!(dry["stale_roots"].as_array().unwrap().len(), 1);
    let before = common::files(&w.store().join("blobs"));

    let real = json(&ok(w.forge().args(["--json", "gc"])));
    assert_eq!(real["bytes_freed"], dry["bytes_freed"]);
    assert_eq!(real["blobs_removed"], dry["blobs_removed"]);
    let after = common::files(&w.store().join("blobs"));
    assert_eq!(
        before.len() - after.len(),
        real["blobs_removed"].as_u64().unwrap() as usize
    );

    // Everything p's lockfile pins is still there: a locked, offline build needs nothing.
    let out = json(&ok(w
        .forge()
        .arg("-C")
        .arg(&p)
        .args(["build", "--frozen", "--json"])));
    assert!(
        out["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["cached"] == true),
        "{out}"
    );
    // A second gc has nothing left to do.
    let again = json(&ok(w.forge().args(["--json", "gc"])));
    assert_eq!(again["blobs_removed"], 0);
    assert_eq!(again["stale_roots"].as_array().unwrap().len(), 0);
}
