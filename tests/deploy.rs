//! The base stage against the Exoscale emulator: plan, apply, no-change plan, drift,
//! destroy; convergence under injected faults and after `kill -9` of forge.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::World;
use common::exoscale::{
    KEY, SECRET, ZONE, client, emulator, emulator_with_state, forge_env, inspector, rt,
};
use exoscale_emulator::{Config as EmuConfig, FaultSpec, Running};
use serde_json::Value;

const PLATFORM: &str = "paas-test";

/// Registers a template (served from a loopback file server) and writes a project whose
/// lockfile records it.
fn project(w: &World, emu: &Running, files: &forge_test_support::http::FileServer) -> PathBuf {
    use md5::Digest as _;
    let mut image = b"QFI\xfb\0\0\0\x03".to_vec();
    image.resize(8192, 7);
    files.put("/vault.qcow2", image.clone());
    let md5 = hex::encode(md5::Md5::digest(&image));
    let c = client(emu);
    let body = forge_exoscale::types::RegisterTemplate {
        name: format!("{PLATFORM}-vault"),
        description: None,
        url: files.url("/vault.qcow2"),
        checksum: md5.clone(),
        ssh_key_enabled: true,
        password_enabled: false,
        boot_mode: Some("legacy".into()),
        default_user: Some("debian".into()),
        build: None,
        version: None,
        maintainer: None,
        size: None,
    };
    let template = rt().block_on(c.register_template(&body)).unwrap().id;
    let etcd_body = forge_exoscale::types::RegisterTemplate {
        name: format!("{PLATFORM}-etcd"),
        ..body
    };
    let etcd_template = rt().block_on(c.register_template(&etcd_body)).unwrap().id;
    let dir = w.path().join("project");
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::write(
        dir.join("keys/operator.pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMq5V1dX9rC1Hq0mq7u2k0M6j7Yx3xvS3Vq9bq2q4yQw operator\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("platform.toml"),
        format!(
            "[platform]\nname = \"{PLATFORM}\"\nzone = \"{ZONE}\"\ndomain = \"paas-test.example.net\"\nadmin-networks = [\"198.51.100.0/24\", \"2001:db8::/48\"]\nssh-public-key = \"keys/operator.pub\"\n\n[vault]\nsize = 3\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("lockfile.toml"),
        format!(
            "version = 1\nsource-date-epoch = 315532800\nbuilder = \"forge/test\"\n\n[[template]]\nimage = \"vault\"\nzone = \"{ZONE}\"\nid = \"{template}\"\nname = \"{PLATFORM}-vault\"\noutput-sha256 = \"{}\"\nmd5 = \"{md5}\"\nboot-mode = \"legacy\"\n\n[[template]]\nimage = \"etcd\"\nzone = \"{ZONE}\"\nid = \"{etcd_template}\"\nname = \"{PLATFORM}-etcd\"\noutput-sha256 = \"{}\"\nmd5 = \"{md5}\"\nboot-mode = \"legacy\"\n",
            "0".repeat(64),
            "1".repeat(64)
        ),
    )
    .unwrap();
    dir
}

fn forge(w: &World, emu: &Running, dir: &Path) -> Command {
    let mut c = w.forge();
    c.current_dir(dir);
    forge_env(&mut c, emu);
    c
}

fn run(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn ok(c: &mut Command) -> String {
    let o = run(c);
    assert!(
        o.status.success(),
        "{:?} failed: {}",
        c,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Everything of the platform the API shows: (kind, name) pairs, sorted.
fn inventory(emu: &Running) -> Vec<(String, String)> {
    let c = inspector(emu);
    rt().block_on(async {
        let mut out = Vec::new();
        for g in c.list_security_groups().await.unwrap() {
            if g.name.starts_with(PLATFORM) {
                out.push(("security-group".into(), g.name.clone()));
                for r in g.rules {
                    out.push((
                        "rule".into(),
                        format!("{} {}-{:?}", g.name, r.protocol, r.start_port),
                    ));
                }
            }
        }
        for g in c.list_anti_affinity_groups().await.unwrap() {
            if g.name.starts_with(PLATFORM) {
                out.push(("anti-affinity-group".into(), g.name));
            }
        }
        for e in c.list_elastic_ips().await.unwrap() {
            if e.labels.get("forge-platform").map(String::as_str) == Some(PLATFORM) {
                out.push(("elastic-ip".into(), e.labels["forge-resource"].clone()));
            }
        }
        for p in c.list_instance_pools().await.unwrap() {
            out.push(("instance-pool".into(), p.name.clone()));
        }
        for i in c.list_instances().await.unwrap() {
            out.push((
                "instance".into(),
                i.manager.map(|m| m.id).unwrap_or_default(),
            ));
        }
        for k in c.list_ssh_keys().await.unwrap() {
            out.push(("ssh-key".into(), k.name));
        }
        out.sort();
        out
    })
}

/// What a converged base stage holds: nothing twice, nothing missing.
fn assert_converged(emu: &Running) {
    let inv = inventory(emu);
    let count = |kind: &str| inv.iter().filter(|(k, _)| k == kind).count();
    assert_eq!(count("security-group"), 3, "{inv:#?}");
    assert_eq!(count("rule"), 5, "{inv:#?}");
    assert_eq!(count("anti-affinity-group"), 1, "{inv:#?}");
    assert_eq!(count("elastic-ip"), 1, "{inv:#?}");
    assert_eq!(count("instance-pool"), 1, "{inv:#?}");
    assert_eq!(count("instance"), 3, "{inv:#?}");
    assert_eq!(count("ssh-key"), 1, "{inv:#?}");
}

fn plan_exit(w: &World, emu: &Running, dir: &Path) -> (i32, String) {
    let o = run(forge(w, emu, dir).args(["plan", "--detailed-exitcode"]));
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn base_stage_apply_plan_drift_destroy() {
    let w = World::new();
    let emu = emulator("", 30);
    let files = forge_test_support::http::FileServer::start().unwrap();
    let dir = project(&w, &emu, &files);

    let (code, text) = plan_exit(&w, &emu, &dir);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("+ instance-pool paas-test-vault (pool-vault)"),
        "{text}"
    );
    assert!(
        text.contains("+ security-group paas-test-operator (sg-operator)"),
        "{text}"
    );
    assert!(
        text.contains("Plan: 12 to add, 0 to change, 0 to replace, 0 to destroy."),
        "{text}"
    );
    let json: Value =
        serde_json::from_str(&ok(forge(&w, &emu, &dir).args(["plan", "--json"]))).unwrap();
    assert_eq!(json["summary"]["create"], 12, "{json:#}");

    let out = ok(forge(&w, &emu, &dir).args(["deploy", "--lock", "lockfile.toml", "--json"]));
    let report: Value = serde_json::from_str(&out).unwrap();
    eprintln!("deploy: {report:#}");
    assert_converged(&emu);
    let (code, text) = plan_exit(&w, &emu, &dir);
    assert_eq!(code, 0, "a second plan must be empty:\n{text}");
    assert!(text.contains("No changes"), "{text}");

    // The pool as the API shows it: labels, user-data without secrets, the EIP in it.
    let c = client(&emu);
    let (pool, eip) = rt().block_on(async {
        let p = c.list_instance_pools().await.unwrap().remove(0);
        let p = c.get_instance_pool(&p.id).await.unwrap();
        let e = c.list_elastic_ips().await.unwrap().remove(0);
        (p, e)
    });
    assert_eq!(pool.labels["forge-platform"], PLATFORM);
    assert_eq!(pool.labels["forge-stage"], "base");
    assert_eq!(pool.labels["forge-resource"], "pool-vault");
    assert!(pool.labels["forge-lockfile"].starts_with("sha256-"));
    use base64::Engine as _;
    let ud = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(pool.user_data.unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        ud.starts_with("## template: jinja\n#cloud-config\n"),
        "{ud}"
    );
    assert!(
        ud.contains(&format!(
            "s/CLUSTER_EIP_ADDRESS/{}/g",
            eip.ip.clone().unwrap()
        )),
        "{ud}"
    );
    assert!(
        !ud.contains("bootcmd"),
        "settings are applied once, not at every boot"
    );
    assert_eq!(
        eip.healthcheck.as_ref().map(|h| h.mode.as_str()),
        Some("https")
    );
    assert_eq!(
        pool.ssh_key.map(|k| k.name),
        Some(format!("{PLATFORM}-management"))
    );

    // The Vault stage finds the pool's members and the EIP through the API, and reaches
    // each over SSH as the templates' default user.
    let platform = forge_schema::platform::Platform::parse(&forge_schema::SourceFile::new(
        "platform.toml",
        std::fs::read_to_string(dir.join("platform.toml")).unwrap(),
    ))
    .unwrap();
    let hosts = rt()
        .block_on(forge_deploy::pool_hosts(&c, &platform, "vault"))
        .unwrap();
    assert_eq!(hosts.members.len(), 3, "{hosts:?}");
    assert_eq!(hosts.eip, eip.ip.as_ref().map(|i| i.parse().unwrap()));
    for (name, ip) in &hosts.members {
        assert!(name.starts_with(&format!("{PLATFORM}-vault-")), "{name}");
        let m = forge_vault::lifecycle::Member::cloud(name, *ip);
        assert_eq!(m.api_addr, format!("https://{ip}:8200"));
        assert_eq!(m.tls.dir, std::path::Path::new("/etc/vault/tls"));
        let ssh = m.tls.ssh.unwrap();
        assert_eq!((ssh.user.as_str(), ssh.port), ("debian", 22));
        assert!(
            m.tls
                .reload
                .unwrap()
                .contains("systemctl reload vault-server")
        );
    }

    // Drift made through the API shows in plan and is repaired by deploy.
    rt().block_on(async {
        c.scale_instance_pool(&pool.id, 1).await.unwrap();
        let op = c
            .list_security_groups()
            .await
            .unwrap()
            .into_iter()
            .find(|g| g.name == "paas-test-operator")
            .unwrap();
        c.security_group_source(&op.id, "198.51.100.0/24", false)
            .await
            .unwrap();
        let mut spec = forge_exoscale::types::ElasticIpSpec {
            addressfamily: None,
            description: Some("changed by hand".into()),
            healthcheck: None,
            labels: None,
        };
        spec.labels = Some(eip.labels.clone());
        c.update_elastic_ip(&eip.id, &spec).await.unwrap();
    });
    let (code, text) = plan_exit(&w, &emu, &dir);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("~ size: 1 -> 3"), "{text}");
    assert!(text.contains("~ external-sources"), "{text}");
    assert!(
        text.contains(
            "~ description: \"changed by hand\" -> \"Hashicorp Vault API endpoint paas-test-vault\""
        ),
        "{text}"
    );
    assert!(
        text.contains("Plan: 0 to add, 3 to change, 0 to replace, 0 to destroy."),
        "{text}"
    );
    ok(forge(&w, &emu, &dir).arg("deploy"));
    assert_eq!(plan_exit(&w, &emu, &dir).0, 0);
    assert_converged(&emu);

    // A pool size the anti-affinity group allows, changed in platform.toml: in place.
    let toml = std::fs::read_to_string(dir.join("platform.toml"))
        .unwrap()
        .replace("size = 3", "size = 5");
    std::fs::write(dir.join("platform.toml"), toml).unwrap();
    let (code, text) = plan_exit(&w, &emu, &dir);
    assert_eq!(code, 2);
    assert!(text.contains("~ size: 3 -> 5"), "{text}");

    // A change the API cannot make in place: the pool is replaced, the group it no longer
    // needs is deleted.
    let toml =
        std::fs::read_to_string(dir.join("platform.toml")).unwrap() + "anti-affinity = false\n";
    std::fs::write(dir.join("platform.toml"), toml).unwrap();
    let (code, text) = plan_exit(&w, &emu, &dir);
    assert_eq!(code, 2);
    assert!(
        text.contains("-/+ instance-pool paas-test-vault (pool-vault)"),
        "{text}"
    );
    assert!(
        text.contains("~ anti-affinity-groups: [\"@aag-vault\"] -> [] (forces replacement)"),
        "{text}"
    );
    assert!(
        text.contains("- anti-affinity-group paas-test-vault (aag-vault)"),
        "{text}"
    );
    assert!(
        text.contains("Plan: 0 to add, 0 to change, 1 to replace, 1 to destroy."),
        "{text}"
    );
    ok(forge(&w, &emu, &dir).arg("deploy"));
    assert_eq!(plan_exit(&w, &emu, &dir).0, 0);
    let inv = inventory(&emu);
    assert_eq!(
        inv.iter().filter(|(k, _)| k == "instance").count(),
        5,
        "{inv:?}"
    );
    assert_eq!(
        inv.iter()
            .filter(|(k, _)| k == "anti-affinity-group")
            .count(),
        0,
        "{inv:?}"
    );

    // destroy refuses without --yes when it cannot ask, then removes everything.
    let o = run(forge(&w, &emu, &dir)
        .arg("destroy")
        .stdin(std::process::Stdio::null()));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("without --yes"));
    ok(forge(&w, &emu, &dir).args(["destroy", "--yes"]));
    let left: Vec<_> = inventory(&emu).into_iter().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let o = ok(forge(&w, &emu, &dir).args(["destroy", "--yes"]));
    let _ = o;
}

#[test]
fn errors_name_the_input_to_fix() {
    let w = World::new();
    let emu = emulator("", 0);
    let files = forge_test_support::http::FileServer::start().unwrap();
    let dir = project(&w, &emu, &files);
    // No credentials.
    let o = run(forge(&w, &emu, &dir)
        .arg("plan")
        .env_remove("EXOSCALE_API_KEY"));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("EXOSCALE_API_KEY"));
    // The secret never reaches the output, at any verbosity.
    let o = run(forge(&w, &emu, &dir).args(["-vvv", "plan"]));
    assert!(o.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(all.contains("GET"), "trace logging shows the calls");
    assert!(
        !all.contains(SECRET),
        "the API secret leaked into the output"
    );
    assert!(
        !all.contains("signature="),
        "a request signature leaked into the output"
    );
    // Wrong secret: the API's 403 message.
    let o = run(forge(&w, &emu, &dir)
        .arg("plan")
        .env("EXOSCALE_API_SECRET", "wrong"));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("HTTP 403: invalid request signature"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // EXOSCALE_ZONE contradicting platform.toml.
    let o = run(forge(&w, &emu, &dir)
        .arg("plan")
        .env("EXOSCALE_ZONE", "de-fra-1"));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("EXOSCALE_ZONE is de-fra-1 but platform.toml deploys to ch-gva-2")
    );
    // A platform.toml error with its location.
    let toml = std::fs::read_to_string(dir.join("platform.toml"))
        .unwrap()
        .replace("size = 3", "size = 4");
    std::fs::write(dir.join("platform.toml"), toml).unwrap();
    let o = run(forge(&w, &emu, &dir).arg("plan"));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("platform.toml:9:8"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // No template for the image.
    std::fs::write(
        dir.join("platform.toml"),
        std::fs::read_to_string(dir.join("platform.toml"))
            .unwrap()
            .replace("size = 4", "size = 3"),
    )
    .unwrap();
    std::fs::write(
        dir.join("lockfile.toml"),
        "version = 1\nsource-date-epoch = 315532800\nbuilder = \"forge/test\"\n",
    )
    .unwrap();
    // A plan still works, showing the template as unknown; a deploy refuses.
    let o = run(forge(&w, &emu, &dir).arg("plan"));
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(
        "image `vault` has no template in ch-gva-2 (it has no template in any zone): run `forge build images` and `forge publish`"
    ));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("+ template = (unknown: run `forge publish`)"),
        "{text}"
    );
    let o = run(forge(&w, &emu, &dir).arg("deploy"));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no template in ch-gva-2"));
    assert!(
        inventory(&emu).is_empty(),
        "a refused deploy changes nothing"
    );
}

/// Copies what an operator's deploy checkout holds: platform.toml, the lockfile and
/// manifests/ (no recipes/, no images/).
fn deploy_checkout(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["platform.toml", "lockfile.toml"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    common::copy_dir(&from.join("manifests"), &to.join("manifests"));
}

#[test]
fn a_deploy_checkout_plans_like_the_repository() {
    let w = World::new();
    let emu = emulator("", 0);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = w.path().join("checkout");
    deploy_checkout(repo, &dir);
    assert!(!dir.join("recipes").exists() && !dir.join("images").exists());
    // The example deploys to de-fra-1; the emulator endpoint serves every zone here. The
    // repository's lockfile has no template yet, so both plans show it as unknown.
    let plan_at = |at: &Path, extra: &[&str]| {
        let o = run(forge(&w, &emu, at)
            .args(["plan", "--detailed-exitcode"])
            .args(extra));
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        (
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    let (from_repo, warning) = plan_at(repo, &[]);
    let (from_checkout, _) = plan_at(&dir, &[]);
    assert_eq!(from_repo, from_checkout);
    assert!(
        from_repo.contains(
            "forge will make these changes (stage base, platform paas-staging, zone de-fra-1)"
        ),
        "{from_repo}"
    );
    assert!(
        from_repo.contains("+ instance-pool paas-staging-vault (pool-vault)"),
        "{from_repo}"
    );
    assert!(
        warning
            .contains("image `vault` has no template in de-fra-1 (it has no template in any zone)"),
        "{warning}"
    );
    // The same with --json (the lockfile label included), and from a subdirectory.
    let json_of = |at: &Path| {
        let o = run(forge(&w, &emu, at).args(["--json", "plan"]));
        let mut v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_object_mut().unwrap().remove("seconds");
        v
    };
    assert_eq!(json_of(repo), json_of(&dir));
    assert_eq!(json_of(&dir.join("manifests/vault")), json_of(&dir));

    // `--lock FILE` is that file and no other.
    std::fs::rename(dir.join("lockfile.toml"), dir.join("pinned.toml")).unwrap();
    let (with_lock, _) = plan_at(&dir, &["--lock", "pinned.toml"]);
    assert_eq!(with_lock, from_repo);
    let o = run(forge(&w, &emu, &dir).args(["plan", "--lock", "missing.toml"]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("missing.toml does not exist: --lock names a lockfile that is not there"),
        "{err}"
    );
    let o = run(forge(&w, &emu, &dir).arg("plan"));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("lockfile.toml does not exist: a deploy works from the lockfile"),
        "{err}"
    );
    // A build needs the recipes, and says so.
    let o = run(forge(&w, &emu, &dir).arg("build"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("holds no `recipes/` or `images/`"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_lockfile_without_a_template_in_the_zone_says_where_it_has_them() {
    let w = World::new();
    let emu = emulator("", 0);
    let files = forge_test_support::http::FileServer::start().unwrap();
    let dir = project(&w, &emu, &files);
    // Moved to another zone: the lockfile's only template is in ch-gva-2.
    let text = std::fs::read_to_string(dir.join("platform.toml"))
        .unwrap()
        .replace(&format!("zone = \"{ZONE}\""), "zone = \"de-fra-1\"");
    std::fs::write(dir.join("platform.toml"), text).unwrap();
    let o = run(forge(&w, &emu, &dir).arg("deploy"));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "lockfile.toml: image `vault` has no template in de-fra-1 (it has templates in ch-gva-2 only): run `forge build images` and `forge publish`"
        ),
        "{err}"
    );
    assert!(
        inventory(&emu).is_empty(),
        "a refused deploy changes nothing"
    );
}

#[test]
fn converges_under_injected_faults_without_duplicates() {
    // The setup (a registered template) is made on a fault-free emulator, so every seed
    // exercises forge, not the test's own setup; the state it saved is then served with
    // faults: 20 % of requests fail with 5xx or 429 before doing anything, 10 % of
    // operations fail, and 5 % of answers are cut off after the work was done.
    let files = forge_test_support::http::FileServer::start().unwrap();
    let mut rounds = Vec::new();
    for seed in 1..=8u64 {
        let w = World::new();
        let state = w.path().join("emulator-state.json");
        let clean = emulator_with_state("", 0, Some(&state));
        let dir = project(&w, &clean, &files);
        clean.stop();
        let emu = emulator_with_state(
            &format!("5xx=0.1,429=0.1,op-fail=0.1,drop=0.05,seed={seed}"),
            20,
            Some(&state),
        );
        let o = run(forge(&w, &emu, &dir).args(["deploy", "--json"]));
        assert!(
            o.status.success(),
            "seed {seed}: deploy under faults failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        rounds.push(report["rounds"].as_u64().unwrap());
        assert_converged(&emu);
        assert_eq!(plan_exit(&w, &emu, &dir).0, 0, "seed {seed}");
        ok(forge(&w, &emu, &dir).args(["destroy", "--yes"]));
        assert!(
            inventory(&emu).is_empty(),
            "seed {seed}: {:?}",
            inventory(&emu)
        );
    }
    eprintln!("rounds by seed 1..=8: {rounds:?}");
    // The faults are real: some seeds must have needed more than one round.
    assert!(rounds.iter().any(|r| *r > 1), "{rounds:?}");
}

#[test]
fn kill_9_during_apply_then_rerun_converges() {
    let w = World::new();
    let emu = emulator("", 150);
    let files = forge_test_support::http::FileServer::start().unwrap();
    let dir = project(&w, &emu, &files);
    // The kills fall inside a deploy's own measured duration, and every round starts
    // from nothing, so each one interrupts real work.
    let started = std::time::Instant::now();
    ok(forge(&w, &emu, &dir).args(["deploy", "-q"]));
    let full = started.elapsed();
    ok(forge(&w, &emu, &dir).args(["destroy", "--yes", "-q"]));
    assert!(inventory(&emu).is_empty());
    let mut kills = 0;
    for fraction in [0.15, 0.35, 0.55, 0.8] {
        let mut child = forge(&w, &emu, &dir)
            .args(["deploy", "-q"])
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(fraction));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        ok(forge(&w, &emu, &dir).arg("deploy"));
        assert_converged(&emu);
        assert_eq!(
            plan_exit(&w, &emu, &dir).0,
            0,
            "after a kill at {fraction} of {full:?}"
        );
        ok(forge(&w, &emu, &dir).args(["destroy", "--yes", "-q"]));
        assert!(inventory(&emu).is_empty(), "{:?}", inventory(&emu));
    }
    eprintln!("uninterrupted deploy {full:?}; {kills} of 4 deploys killed mid-way");
    assert!(
        kills >= 3,
        "only {kills} of 4 deploys were killed; the test proves little"
    );
}

#[test]
fn the_client_retries_reads_but_never_a_create_blindly() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let start = |faults: &str| {
        let mut c = EmuConfig::new(KEY, SECRET);
        c.operation_delay = Duration::ZERO;
        c.faults = FaultSpec::parse(faults).unwrap();
        c.state_file = Some(state.clone());
        exoscale_emulator::spawn(c, "127.0.0.1:0".parse().unwrap()).unwrap()
    };
    let body = forge_exoscale::types::CreateNamed {
        name: "once".into(),
        description: None,
    };

    // Every answer is cut off after the work is done.
    let emu = start("drop=1");
    let c = client(&emu);
    let err = rt().block_on(c.create_security_group(&body)).unwrap_err();
    assert!(
        matches!(err, forge_exoscale::Error::Ambiguous { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("look the resource up before creating it again"),
        "{err}"
    );
    assert_eq!(
        c.stats().snapshot().get("POST /v2/security-group"),
        Some(&1),
        "a create is sent once"
    );
    let err = rt().block_on(c.list_security_groups()).unwrap_err();
    assert!(
        matches!(err, forge_exoscale::Error::Transport { .. }),
        "{err}"
    );
    assert_eq!(
        c.stats().snapshot().get("GET /v2/security-group"),
        Some(&7),
        "a read is retried six times"
    );
    drop(emu);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        saved["security_groups"].as_object().unwrap().len(),
        1,
        "created exactly once"
    );

    // 429 means the server did nothing: a create is retried then.
    let emu = start("429=1");
    let c = client(&emu);
    let err = rt().block_on(c.create_security_group(&body)).unwrap_err();
    assert_eq!(err.status(), Some(429), "{err}");
    assert_eq!(
        c.stats().snapshot().get("POST /v2/security-group"),
        Some(&7)
    );
}

/// The etcd stage after the base stage: it refuses to run before the base stage and the
/// Vault stage's root CA exist, plans and applies its nine resources using the base
/// stage's groups and the Vault address without taking them over, and a destroy removes
/// later stages first.
#[test]
fn etcd_stage_after_base_plan_deploy_destroy() {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt as _;

    let w = World::new();
    let emu = emulator("", 30);
    let files = forge_test_support::http::FileServer::start().unwrap();
    let dir = project(&w, &emu, &files);
    let secrets = w.path().join("secrets");
    let etcd = |args: &[&str]| {
        let mut c = forge(&w, &emu, &dir);
        c.env("FORGE_SECRETS_DIR", &secrets).args(args);
        c
    };

    // Before the base stage: what to run first.
    let o = run(&mut etcd(&["deploy", "--stage", "etcd"]));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("run `forge deploy --stage vault` first"),
        "{err}"
    );
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700)).unwrap();
    let ca = "-----BEGIN CERTIFICATE-----\nMIIBforgeTestRootCA\n-----END CERTIFICATE-----\n";
    let ca_file = secrets.join("root-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    std::fs::set_permissions(&ca_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = run(&mut etcd(&["deploy", "--stage", "etcd"]));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("stage etcd needs sg-operator, sg-vault-clients, eip-vault, ssh-management of stage base, which do not exist: run `forge deploy --stage base` first"),
        "{err}"
    );
    assert_eq!(inventory(&emu).len(), 0, "a refused deploy made something");

    let o = run(&mut etcd(&[
        "plan",
        "--stage",
        "etcd",
        "--detailed-exitcode",
    ]));
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains("Plan: 9 to add, 0 to change, 0 to replace, 0 to destroy."),
        "{text}"
    );
    assert!(
        text.contains("+ instance-pool paas-test-etcd (pool-etcd)"),
        "{text}"
    );

    ok(forge(&w, &emu, &dir).arg("deploy"));
    let out = ok(&mut etcd(&["deploy", "--stage", "etcd", "--json"]));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["stage"], "etcd", "{report:#}");
    assert_eq!(report["done"]["create"], 9, "{report:#}");
    let o = run(&mut etcd(&[
        "plan",
        "--stage",
        "etcd",
        "--detailed-exitcode",
    ]));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The base stage still sees only its own resources.
    assert_eq!(plan_exit(&w, &emu, &dir).0, 0);

    let c = client(&emu);
    let (pool, eips, groups) = rt().block_on(async {
        let p = c
            .list_instance_pools()
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.name == "paas-test-etcd")
            .unwrap();
        (
            c.get_instance_pool(&p.id).await.unwrap(),
            c.list_elastic_ips().await.unwrap(),
            c.list_security_groups().await.unwrap(),
        )
    });
    assert_eq!(pool.size, Some(3));
    assert_eq!(pool.labels["forge-stage"], "etcd");
    assert_eq!(pool.public_ip_assignment.as_deref(), Some("inet4"));
    let group_names: std::collections::BTreeSet<String> = pool
        .security_groups
        .iter()
        .map(|r| groups.iter().find(|g| g.id == r.id).unwrap().name.clone())
        .collect();
    assert_eq!(
        group_names,
        ["paas-test-etcd-server", "paas-test-vault-clients"]
            .map(String::from)
            .into()
    );
    let eip = |key: &str| {
        eips.iter()
            .find(|e| e.labels.get("forge-resource").map(String::as_str) == Some(key))
            .unwrap()
    };
    let etcd_eip = eip("eip-etcd");
    let hc = etcd_eip.healthcheck.as_ref().unwrap();
    assert_eq!(
        (hc.mode.as_str(), hc.port, hc.uri.as_deref()),
        ("http", 2378, Some("/healthz"))
    );
    let ud = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(pool.user_data.clone().unwrap())
            .unwrap(),
    )
    .unwrap();
    let vault_ip = eip("eip-vault").ip.clone().unwrap();
    assert!(
        ud.contains(&format!("s|VAULT_ADDRESS|https://{vault_ip}:8200|g")),
        "{ud}"
    );
    assert!(
        ud.contains(&format!(
            "s|CLUSTER_EIP_ADDRESS|{}|g",
            etcd_eip.ip.clone().unwrap()
        )),
        "{ud}"
    );
    assert!(ud.contains(&base64::engine::general_purpose::STANDARD.encode(ca)));
    let server = groups
        .iter()
        .find(|g| g.name == "paas-test-etcd-server")
        .unwrap();
    assert_eq!(server.rules.len(), 4, "{:?}", server.rules);

    // Destroying the etcd stage leaves the base stage; destroying the base stage takes
    // the etcd stage with it, first.
    ok(&mut etcd(&["destroy", "--stage", "etcd", "--yes"]));
    assert_eq!(plan_exit(&w, &emu, &dir).0, 0);
    assert_converged(&emu);
    ok(&mut etcd(&["deploy", "--stage", "etcd"]));
    let out = ok(&mut etcd(&["destroy", "--yes"]));
    let _ = out;
    let left = inventory(&emu);
    assert!(left.is_empty(), "left behind: {left:?}");
}
