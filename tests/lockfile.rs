//! `forge lock`, `lock --update`, `fetch` then `--offline`, with a real HTTP server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;

use common::{World, json, ok};
use forge_schema::lockfile::Lockfile;
use forge_schema::{Sha256Digest, SourceFile};
use forge_test_support::http::FileServer;

fn lockfile(p: &std::path::Path) -> Lockfile {
    let text = fs::read_to_string(p.join("lockfile.toml")).unwrap();
    Lockfile::parse(&SourceFile::new("lockfile.toml", text)).unwrap()
}

#[test]
fn update_touches_only_the_named_recipe_and_its_dependents() {
    let w = World::new();
    let p = w.example("hello", "p");
    let before = lockfile(&p);
    // Both path sources change, but only `greeting` is updated.
    fs::write(p.join("files/hello.txt"), "new greeting\n").unwrap();
    let tool = fs::read(p.join("files/hello-tool-1.0.tar.gz")).unwrap();
    fs::write(
        p.join("files/hello-tool-1.0.tar.gz"),
        [&tool[..], b"junk"].concat(),
    )
    .unwrap();
    // hello-tool pins its tarball's sha256, so resolving it now fails; remove the pin to
    // show that --update leaves its entry alone.
    let recipe = fs::read_to_string(p.join("recipes/hello-tool.toml")).unwrap();
    let recipe: String = recipe
        .lines()
        .filter(|l| !l.starts_with("sha256"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(p.join("recipes/hello-tool.toml"), recipe).unwrap();

    ok(w.forge()
        .arg("-C")
        .arg(&p)
        .args(["lock", "--update", "greeting"]));
    let after = lockfile(&p);
    assert_ne!(after.recipes["greeting"], before.recipes["greeting"]);
    assert_ne!(
        after.recipes["hello"].hash, before.recipes["hello"].hash,
        "dependents follow"
    );
    assert_eq!(
        after.recipes["hello-tool"], before.recipes["hello-tool"],
        "others stay"
    );
    assert_eq!(
        after.recipes["greeting"].sources[0].sha256,
        Some(Sha256Digest::of(b"new greeting\n"))
    );

    // A plain `forge lock` updates the rest.
    ok(w.forge().arg("-C").arg(&p).arg("lock"));
    let all = lockfile(&p);
    assert_ne!(all.recipes["hello-tool"], before.recipes["hello-tool"]);
    // `lock` pins inputs only; a layer is recorded by the first build, and --locked
    // then holds every build to it.
    assert_eq!(all.recipes["hello-tool"].layer_sha256, None);
    let (code, _, stderr) = common::run(w.forge().arg("-C").arg(&p).args(["build", "--locked"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("is not recorded yet"), "{stderr}");
    ok(w.forge().arg("-C").arg(&p).arg("build"));
    assert!(lockfile(&p).recipes["hello-tool"].layer_sha256.is_some());
    ok(w.forge().arg("-C").arg(&p).args(["build", "--locked"]));
    ok(w.forge().arg("-C").arg(&p).args(["lock", "--locked"]));
}

#[test]
fn source_date_epoch_is_pinned_by_lock() {
    let w = World::new();
    let p = w.example("hello", "p");
    ok(w.forge()
        .arg("-C")
        .arg(&p)
        .args(["lock", "--source-date-epoch", "1700000000"]));
    let l = lockfile(&p);
    assert_eq!(l.source_date_epoch, 1_700_000_000);
    // The environment variable does not override the lockfile.
    let out = ok(w
        .forge()
        .env("SOURCE_DATE_EPOCH", "1")
        .arg("-C")
        .arg(&p)
        .args(["build", "--json"]));
    let layer = json(&out)["targets"][0]["output"]
        .as_str()
        .unwrap()
        .to_string();
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{layer}' | tar -tv --full-time -f -"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(
        text.lines().all(|l| l.contains("2023-11-14 22:13:20")),
        "{text}"
    );
}

#[test]
fn fetch_then_build_offline() {
    let w = World::new();
    let server = FileServer::start().unwrap();
    let mut recipes = Vec::new();
    for i in 0..6 {
        let bytes: Vec<u8> = (0..200_000u32).map(|j| (j * (i + 3)) as u8).collect();
        server.put(&format!("dl/s{i}.bin"), bytes.clone());
        recipes.push((
            format!("r{i}"),
            format!(
                "name = \"r{i}\"\nversion = \"1\"\n[[source]]\nname = \"s\"\nurls = [\"{}\"]\nsha256 = \"{}\"\n[[step]]\nkind = \"file\"\npath = \"/opt/s{i}\"\nfrom = \"s\"\n",
                server.url(&format!("dl/s{i}.bin")),
                Sha256Digest::of(&bytes)
            ),
        ));
    }
    let p = w.path().join("p");
    fs::create_dir_all(p.join("recipes")).unwrap();
    for (n, t) in &recipes {
        fs::write(p.join("recipes").join(format!("{n}.toml")), t).unwrap();
    }
    let out = json(&ok(w.forge().arg("-C").arg(&p).args(["fetch", "--json"])));
    assert_eq!(out["sources"].as_array().unwrap().len(), 6);
    assert_eq!(server.seen().len(), 6);
    let out = json(&ok(w.forge().arg("-C").arg(&p).args([
        "build",
        "--offline",
        "--json",
    ])));
    assert_eq!(out["targets"].as_array().unwrap().len(), 6);
    assert_eq!(server.seen().len(), 6, "the offline build made requests");
    // A target builds with its inputs only.
    ok(w.forge()
        .arg("-C")
        .arg(&p)
        .args(["build", "--frozen", "r3"]));
}
