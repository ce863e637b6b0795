//! Crash safety: `kill -9` at random points of a build leaves a store that verifies clean
//! and a lockfile that is whole or absent; the next build succeeds and reproduces the
//! layer of an uninterrupted build.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::{Duration, Instant, SystemTime};

use common::{World, json, ok, run};

#[test]
fn kill_9_at_random_points() {
    let w = World::new();
    let p = common::slow_project(&w);

    // Reference: uninterrupted builds, each in an empty store of its own; the faster
    // (warm page cache, as the rounds below have) bounds where the kills fall.
    let mut full = Duration::MAX;
    let mut reference = String::new();
    for i in 0..2 {
        let started = Instant::now();
        let out = ok(
            common::forge_with_store(&w.path().join(format!("reference-store-{i}")))
                .arg("-C")
                .arg(&p)
                .args(["build", "--json"]),
        );
        full = full.min(started.elapsed());
        reference = json(&out)["targets"][0]["layer_sha256"]
            .as_str()
            .unwrap()
            .to_string();
        fs::remove_file(p.join("lockfile.toml")).unwrap();
    }

    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}, uninterrupted build {full:?}");
    let mut kills = 0;
    let rounds = 12;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Every round has the whole build to do (an empty store of its own, no
        // lockfile), and the kill falls inside the uninterrupted build's duration.
        let store = w.path().join(format!("store-{round}"));
        let _ = fs::remove_file(p.join("lockfile.toml"));
        let delay = Duration::from_secs_f64(
            full.as_secs_f64() * (0.05 + 0.85 * (seed % 1000) as f64 / 1000.0),
        );
        let mut child = common::forge_with_store(&store)
            .arg("-C")
            .arg(&p)
            .arg("build")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();

        let (code, stdout, stderr) =
            run(common::forge_with_store(&store).args(["--json", "store", "verify"]));
        assert_eq!(
            code, 0,
            "round {round} (delay {delay:?}): store verify failed\n{stdout}\n{stderr}"
        );
        assert_eq!(json(&stdout)["problems"].as_array().unwrap().len(), 0);
        // The lockfile is whole or absent.
        if let Ok(text) = fs::read_to_string(p.join("lockfile.toml")) {
            forge_schema::lockfile::Lockfile::parse(&forge_schema::SourceFile::new(
                "lockfile.toml",
                text,
            ))
            .unwrap_or_else(|e| panic!("round {round}: half-written lockfile: {e}"));
        }
        // What the killed build left, the next build in the same store finishes, with
        // the same layer as the uninterrupted one.
        let out = ok(common::forge_with_store(&store)
            .arg("-C")
            .arg(&p)
            .args(["build", "--json"]));
        assert_eq!(
            json(&out)["targets"][0]["layer_sha256"].as_str().unwrap(),
            reference,
            "round {round} (delay {delay:?})"
        );
        // The killed runs' leftovers go with gc; the next round starts afresh.
        ok(common::forge_with_store(&store).arg("gc"));
        assert_eq!(fs::read_dir(store.join("tmp")).unwrap().count(), 0);
        fs::remove_dir_all(&store).unwrap();
    }
    eprintln!("{kills} of {rounds} builds killed mid-way");
    assert!(
        kills * 4 >= rounds * 3,
        "only {kills} of {rounds} builds were killed; the test proves little"
    );
    fs::remove_file(p.join("lockfile.toml")).ok();

    let out = ok(w.forge().arg("-C").arg(&p).args(["build", "--json"]));
    assert_eq!(
        json(&out)["targets"][0]["layer_sha256"].as_str().unwrap(),
        reference
    );
    let out = ok(w.forge().args(["--json", "store", "verify"]));
    assert_eq!(json(&out)["problems"].as_array().unwrap().len(), 0);
    // gc clears what the killed runs left in tmp/.
    ok(w.forge().arg("gc"));
    assert_eq!(fs::read_dir(w.store().join("tmp")).unwrap().count(), 0);
    ok(w.forge().arg("-C").arg(&p).args(["build", "--locked"]));
    // No temp file of an interrupted lockfile write is left in the project.
    let leftovers: Vec<_> = fs::read_dir(&p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
