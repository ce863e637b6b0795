//! Two forge processes on one store: both succeed, the output is built once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{World, json};

#[test]
fn two_processes_build_once() {
    let w = World::new();
    let p = common::slow_project(&w);
    let spawn = || {
        w.forge()
            .arg("-C")
            .arg(&p)
            .args(["build", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn();
    let b = spawn();
    let outs: Vec<_> = [a, b]
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut built = 0;
    let mut layers = Vec::new();
    for o in &outs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let report = json(&String::from_utf8_lossy(&o.stdout));
        let t = &report["targets"][0];
        if t["cached"] == false {
            built += 1;
        }
        layers.push(t["layer_sha256"].as_str().unwrap().to_string());
    }
    assert_eq!(built, 1, "the layer was built {built} times");
    assert_eq!(layers[0], layers[1]);
    let stderr: String = outs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    assert!(stderr.contains("Building slow"), "{stderr}");
    // The store is consistent and the lockfile whole.
    let out = common::ok(w.forge().args(["--json", "store", "verify"]));
    assert_eq!(json(&out)["problems"].as_array().unwrap().len(), 0);
    common::ok(w.forge().arg("-C").arg(&p).args(["build", "--locked"]));
}
