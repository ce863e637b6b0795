//! Errors a user meets, each clear about what, where and what to do (snapshots).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;

use common::{World, run, scrub};
use forge_schema::Sha256Digest;
use forge_test_support::http::FileServer;

fn project(world: &World, name: &str, recipes: &[(&str, String)]) -> std::path::PathBuf {
    let dir = world.path().join(name);
    fs::create_dir_all(dir.join("recipes")).unwrap();
    for (file, text) in recipes {
        fs::write(dir.join("recipes").join(format!("{file}.toml")), text).unwrap();
    }
    dir
}

fn url_recipe(name: &str, url: &str, sha: &Sha256Digest) -> String {
    format!(
        "name = \"{name}\"\nversion = \"1\"\n\n[[source]]\nname = \"blob\"\nurls = [\"{url}\"]\nsha256 = \"{sha}\"\n\n[[step]]\nkind = \"file\"\npath = \"/opt/{name}\"\nfrom = \"blob\"\n"
    )
}

fn store_content(store: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for sub in ["blobs", "outputs"] {
        if store.join(sub).exists() {
            v.extend(
                common::files(&store.join(sub))
                    .into_iter()
                    .map(|p| Path::new(sub).join(p)),
            );
        }
    }
    v
}

#[test]
fn locked_drift_names_both_hashes() {
    let w = World::new();
    let p = w.example("hello", "p");
    let old = Sha256Digest::of(&fs::read(p.join("files/hello.txt")).unwrap());
    let mut text = fs::read_to_string(p.join("files/hello.txt")).unwrap();
    text.push_str("one more line\n");
    fs::write(p.join("files/hello.txt"), &text).unwrap();
    let new = Sha256Digest::of(text.as_bytes());
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&p).args(["build", "--locked"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&old.to_hex()) && stderr.contains(&new.to_hex()),
        "{stderr}"
    );
    insta::assert_snapshot!(scrub(&stderr, &w));
    // Nothing was written: the lockfile is as committed.
    let committed = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello/lockfile.toml"),
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(p.join("lockfile.toml")).unwrap(),
        committed
    );
}

#[test]
fn frozen_without_lockfile() {
    let w = World::new();
    let p = w.example("hello", "p");
    fs::remove_file(p.join("lockfile.toml")).unwrap();
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&p).args(["build", "--frozen"]));
    assert_eq!(code, 1);
    insta::assert_snapshot!(scrub(&stderr, &w));
    assert!(!p.join("lockfile.toml").exists());
}

#[test]
fn offline_lists_every_missing_source() {
    let w = World::new();
    let server = FileServer::start().unwrap();
    let a = b"first source".to_vec();
    let b = b"second source".to_vec();
    server.put("dl/a.bin", a.clone());
    server.put("dl/b.bin", b.clone());
    let p = project(
        &w,
        "p",
        &[
            (
                "alpha",
                url_recipe(
                    "alpha",
                    "http://mirror.test.invalid/dl/a.bin",
                    &Sha256Digest::of(&a),
                ),
            ),
            (
                "beta",
                url_recipe("beta", &server.url("dl/b.bin"), &Sha256Digest::of(&b)),
            ),
        ],
    );
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&p).args(["build", "--offline"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("alpha/blob") && stderr.contains("beta/blob"),
        "{stderr}"
    );
    assert!(
        server.seen().is_empty(),
        "offline build made requests: {:?}",
        server.seen()
    );
    let port = server.addr().port().to_string();
    insta::assert_snapshot!(scrub(&stderr, &w).replace(&port, "[PORT]"));

    // With the files in a source directory, offline works.
    let sd = w.path().join("sources");
    fs::create_dir_all(&sd).unwrap();
    fs::write(sd.join("a.bin"), &a).unwrap();
    fs::write(sd.join("b.bin"), &b).unwrap();
    common::ok(
        w.forge()
            .arg("-C")
            .arg(&p)
            .args(["build", "--offline", "--source-dir"])
            .arg(&sd),
    );
    assert!(server.seen().is_empty());
}

#[test]
fn tampered_source_is_refused_and_store_unchanged() {
    let w = World::new();
    let server = FileServer::start().unwrap();
    let good = b"the real release".to_vec();
    server.put("dl/tool.tar", good.clone());
    let p = project(
        &w,
        "p",
        &[(
            "tool",
            url_recipe("tool", &server.url("dl/tool.tar"), &Sha256Digest::of(&good)),
        )],
    );
    common::ok(w.forge().arg("-C").arg(&p).arg("build"));
    // Now the recipe moves to a new release whose mirror serves tampered bytes.
    let pinned = b"the real release 2".to_vec();
    let served = b"the real release 2 + backdoor".to_vec();
    server.put("dl/tool-2.tar", served.clone());
    fs::write(
        p.join("recipes/tool.toml"),
        url_recipe(
            "tool",
            &server.url("dl/tool-2.tar"),
            &Sha256Digest::of(&pinned),
        ),
    )
    .unwrap();
    let before = store_content(&w.store());
    let lock_before = fs::read(p.join("lockfile.toml")).unwrap();
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&p).arg("build"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&Sha256Digest::of(&pinned).to_hex()),
        "{stderr}"
    );
    assert!(
        stderr.contains(&Sha256Digest::of(&served).to_hex()),
        "{stderr}"
    );
    assert!(stderr.contains(&server.url("dl/tool-2.tar")), "{stderr}");
    assert_eq!(store_content(&w.store()), before, "the store changed");
    assert_eq!(fs::read_dir(w.store().join("tmp")).unwrap().count(), 0);
    assert_eq!(fs::read(p.join("lockfile.toml")).unwrap(), lock_before);
    let port = server.addr().port().to_string();
    insta::assert_snapshot!(scrub(&stderr, &w).replace(&port, "[PORT]"));
}

#[test]
fn recipe_cycle_prints_the_cycle() {
    let w = World::new();
    let r = |name: &str, input: &str| {
        format!("name = \"{name}\"\nversion = \"1\"\ninputs = [\"{input}\"]\n")
    };
    let p = project(
        &w,
        "p",
        &[("a", r("a", "b")), ("b", r("b", "c")), ("c", r("c", "a"))],
    );
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&p).arg("build"));
    assert_eq!(code, 1);
    assert!(stderr.contains("a -> b -> c -> a"), "{stderr}");
    insta::assert_snapshot!(scrub(&stderr, &w));
}

#[test]
fn toml_errors_point_at_the_spot() {
    let w = World::new();
    let p = project(
        &w,
        "p",
        &[
            ("typo", "name = \"typo\"\nversion = \"1\"\n\n[[step]]\nkind = \"file\"\npath = \"/etc/x\"\ncontnet = \"x\"\n".into()),
            ("badtype", "name = \"badtype\"\nversion = 1\n".into()),
            ("kind", "name = \"kind\"\nversion = \"1\"\n\n[[step]]\nkind = \"symlnk\"\npath = \"/x\"\n".into()),
            ("missing", "name = \"missing\"\nversion = \"1\"\n\n[[source]]\nname = \"s\"\nurls = [\"https://example.org/s.tar\"]\n".into()),
        ],
    );
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&p).arg("build"));
    assert_eq!(code, 1);
    assert!(stderr.contains("recipes/typo.toml:7:1"), "{stderr}");
    assert!(stderr.contains("did you mean `content`?"), "{stderr}");
    insta::assert_snapshot!(scrub(&stderr, &w));
}

#[test]
fn unknown_input_suggests() {
    let w = World::new();
    let p = project(
        &w,
        "p",
        &[
            ("typo", "name = \"typo\"\nversion = \"1\"\n".into()),
            (
                "user",
                "name = \"user\"\nversion = \"1\"\ninputs = [\"typ\"]\n".into(),
            ),
        ],
    );
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&p).arg("build"));
    assert_eq!(code, 1);
    assert!(stderr.contains("recipes/user.toml:3:11"), "{stderr}");
    insta::assert_snapshot!(scrub(&stderr, &w));
}

#[test]
fn unknown_target_suggests() {
    let w = World::new();
    let p = w.example("hello", "p");
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&p).args(["build", "helo"]));
    assert_eq!(code, 1);
    insta::assert_snapshot!(scrub(&stderr, &w));
}

#[test]
fn no_project_here() {
    let w = World::new();
    let (code, _, stderr) = run(w.forge().arg("-C").arg(w.path()).arg("build"));
    assert_eq!(code, 1);
    insta::assert_snapshot!(scrub(&stderr, &w));
}

#[test]
fn variant_errors_point_at_the_spot() {
    let w = World::new();
    let p = w.example("hello-image", "p");
    // An unknown variant lists the ones there are.
    fs::create_dir_all(p.join("variants/small/recipes")).unwrap();
    fs::write(
        p.join("variants/small/variant.toml"),
        "description = \"smaller\"\n\n[image.hello-imag]\nwithout = [\"hello-marker\"]\nreason = \"r\"\n\n[image.hello-image]\nwithout = [\"hello-markr\"]\nreason = \"r\"\n",
    )
    .unwrap();
    fs::write(
        p.join("variants/small/recipes/brand-new.toml"),
        "name = \"brand-new\"\nversion = \"1\"\n",
    )
    .unwrap();
    let lock = |variant: &str| {
        run(w
            .forge()
            .arg("-C")
            .arg(&p)
            .args(["--variant", variant, "lock"]))
    };
    let (code, _, stderr) = lock("smal");
    assert_eq!(code, 1);
    assert!(stderr.contains("small"), "{stderr}");
    let (code, _, stderr) = lock("small");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("variants/small/variant.toml:3:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("variants/small/variant.toml:8:"),
        "{stderr}"
    );
    assert!(stderr.contains("replaces no recipe"), "{stderr}");
    insta::assert_snapshot!(scrub(&stderr, &w));
    // Nothing was written.
    assert!(!p.join("variants/small/lockfile.toml").exists());
    // A missing reason is an error too.
    fs::remove_file(p.join("variants/small/recipes/brand-new.toml")).unwrap();
    fs::write(
        p.join("variants/small/variant.toml"),
        "description = \"d\"\n[image.hello-image]\nwithout = [\"hello-marker\"]\n",
    )
    .unwrap();
    let (code, _, stderr) = lock("small");
    assert_eq!(code, 1);
    assert!(stderr.contains("reason"), "{stderr}");
}
