//! `forge publish` end to end: a built image (examples/hello-image) uploaded to a real S3
//! server on loopback (moto), registered in the Exoscale emulator (which downloads it from
//! the presigned URL and checks its MD5), recorded in the lockfile; publishing again
//! uploads nothing; `--prune` removes the platform's templates the lockfile dropped.
//!
//! moto accepts any signature (see ../shared/notes): this test shows forge signs and
//! uploads, presigns a URL another client can fetch, and registers; not that SigV4 is
//! verified.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::World;
use common::exoscale::{KEY, SECRET, ZONE, client, forge_env, rt};
use exoscale_emulator::{Config as EmuConfig, Running};
use serde_json::Value;

/// moto's S3 server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("FORGE_TEST_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".forge-tools/venv/bin/moto_server");
    assert!(
        venv.is_file(),
        "run `bash toolchain/test-tools.sh` first (moto's S3 server from PyPI)"
    );
    venv
}

fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(30), "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { child, endpoint }
}

fn forge(w: &World, dir: &Path, emu: &Running, moto: &Moto) -> Command {
    let mut c = w.forge();
    c.current_dir(dir)
        .env("EXOSCALE_SOS_ENDPOINT", &moto.endpoint);
    forge_env(&mut c, emu);
    // Per-zone endpoints, as the real API has them (`/ZONE/v2` on the emulator).
    c.env(
        "EXOSCALE_API_ENDPOINT",
        format!("http://{}/{{zone}}/v2", emu.addr),
    );
    c
}

/// A client of the emulator's `zone`.
fn zone_client(emu: &Running, zone: &str) -> forge_exoscale::Client {
    let endpoint = format!("http://{}/{{zone}}/v2", emu.addr);
    let cfg = forge_exoscale::Config::from_lookup(Some(zone), &|n| match n {
        "EXOSCALE_API_KEY" => Some(KEY.into()),
        "EXOSCALE_API_SECRET" => Some(SECRET.into()),
        "EXOSCALE_API_ENDPOINT" => Some(endpoint.clone()),
        _ => None,
    })
    .unwrap();
    forge_exoscale::Client::for_zone(&cfg, zone, forge_exoscale::ClientOptions::default()).unwrap()
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{c:?} failed");
    String::from_utf8(o.stdout).unwrap()
}

fn publish(w: &World, dir: &Path, emu: &Running, moto: &Moto, extra: &[&str]) -> Value {
    let out = ok(forge(w, dir, emu, moto)
        .args(["publish", "--json"])
        .args(extra));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn publish_uploads_registers_records_and_is_idempotent() {
    let w = World::new();
    let dir = w.example("hello-image", "project");
    // Resolve against the archive afresh and build (as tests/images.rs does).
    std::fs::remove_file(dir.join("lockfile.toml")).unwrap();
    ok(w.forge().current_dir(&dir).args(["build", "images"]));
    std::fs::write(
        dir.join("platform.toml"),
        format!("[platform]\nname = \"pubtest\"\nzone = \"{ZONE}\"\nadmin-networks = [\"198.51.100.0/24\"]\n\n[publish]\nbucket = \"pubtest-templates\"\nzones = [\"{ZONE}\", \"de-fra-1\"]\n"),
    )
    .unwrap();
    let lock = std::fs::read_to_string(dir.join("lockfile.toml")).unwrap();
    let sha = lock.split("output-sha256 = \"").nth(1).unwrap()[..64].to_string();
    // With one image, -o names the file.
    let qcow2 = w.path().join("hello.qcow2");
    ok(w.forge()
        .current_dir(&dir)
        .args(["build", "images", "--locked", "-o"])
        .arg(&qcow2));
    let bytes = std::fs::read(&qcow2).unwrap();
    use md5::Digest as _;
    let md5 = hex::encode(md5::Md5::digest(&bytes));

    let moto = start_moto();
    let emu = exoscale_emulator::spawn(
        {
            let mut c = EmuConfig::new(KEY, SECRET);
            c.operation_delay = Duration::from_millis(50);
            c
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();

    // No bucket yet: a clear error, nothing recorded.
    let o = forge(&w, &dir, &emu, &moto)
        .arg("publish")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("the bucket does not exist"), "{err}");
    assert!(
        !std::fs::read_to_string(dir.join("lockfile.toml"))
            .unwrap()
            .contains("[[template]]")
    );
    let put = Command::new("curl")
        .args([
            "-fsS",
            "-X",
            "PUT",
            &format!("{}/pubtest-templates", moto.endpoint),
        ])
        .status()
        .unwrap();
    assert!(put.success());

    let t = Instant::now();
    let first = publish(&w, &dir, &emu, &moto, &[]);
    eprintln!("first publish: {:.1}s {first:#}", t.elapsed().as_secs_f64());
    let entry = &first["templates"][0];
    assert_eq!(entry["outcome"], "uploaded", "{first:#}");
    // The second zone registers from the object already uploaded.
    assert_eq!(first["templates"][1]["zone"], "de-fra-1", "{first:#}");
    assert_eq!(first["templates"][1]["outcome"], "registered", "{first:#}");
    let id2 = first["templates"][1]["id"].as_str().unwrap().to_string();
    let id = entry["id"].as_str().unwrap().to_string();
    let lock = std::fs::read_to_string(dir.join("lockfile.toml")).unwrap();
    assert!(
        lock.contains(&format!(
            "[[template]]\nimage = \"hello-image\"\nzone = \"{ZONE}\"\nid = \"{id}\""
        )),
        "{lock}"
    );
    assert!(lock.contains(&format!("md5 = \"{md5}\"")), "{lock}");
    assert!(
        lock.contains(&format!("zone = \"de-fra-1\"\nid = \"{id2}\"")),
        "{lock}"
    );
    let fra = zone_client(&emu, "de-fra-1");
    assert_eq!(
        rt().block_on(fra.get_template(&id2))
            .unwrap()
            .checksum
            .as_deref(),
        Some(md5.as_str())
    );
    // The emulator downloaded the file from the presigned URL and checked its MD5.
    let c = client(&emu);
    let tpl = rt().block_on(c.get_template(&id)).unwrap();
    assert_eq!(tpl.checksum.as_deref(), Some(md5.as_str()));
    assert_eq!(tpl.size, Some(bytes.len() as i64));
    assert_eq!(tpl.build.as_deref(), Some(sha.as_str()));
    assert_eq!(tpl.boot_mode.as_deref(), Some("legacy"));

    // Again: nothing uploaded, nothing registered.
    let again = publish(&w, &dir, &emu, &moto, &[]);
    assert_eq!(again["templates"][0]["outcome"], "up-to-date", "{again:#}");
    assert_eq!(again["templates"][1]["outcome"], "up-to-date", "{again:#}");
    assert_eq!(rt().block_on(c.list_private_templates()).unwrap().len(), 1);

    // A run killed after registering but before writing the lockfile: found, not redone.
    std::fs::write(
        dir.join("lockfile.toml"),
        &lock[..lock.find("[[template]]").unwrap()],
    )
    .unwrap();
    let adopted = publish(&w, &dir, &emu, &moto, &[]);
    assert_eq!(adopted["templates"][0]["outcome"], "adopted", "{adopted:#}");
    assert_eq!(adopted["templates"][0]["id"], id.as_str());
    assert_eq!(adopted["templates"][1]["outcome"], "adopted", "{adopted:#}");
    assert_eq!(
        rt().block_on(fra.list_private_templates()).unwrap().len(),
        1
    );
    assert_eq!(rt().block_on(c.list_private_templates()).unwrap().len(), 1);

    // --prune: a template of an older output of this platform goes, the current one stays,
    // and templates of other owners are never touched.
    let stale = |name: &str, maintainer: &str| forge_exoscale::types::RegisterTemplate {
        name: name.into(),
        description: None,
        url: format!(
            "{}/pubtest-templates/forge/hello-image/{sha}.qcow2",
            moto.endpoint
        ),
        checksum: md5.clone(),
        ssh_key_enabled: true,
        password_enabled: false,
        boot_mode: None,
        default_user: None,
        build: Some("0".repeat(64)),
        version: None,
        maintainer: Some(maintainer.into()),
        size: None,
    };
    // The published object serves as the "older" image's file (moto lets anonymous GETs
    // read objects uploaded without an ACL).
    rt().block_on(c.register_template(&stale("pubtest-hello-image-000000000000", "forge pubtest")))
        .unwrap();
    rt().block_on(c.register_template(&stale("someone-else", "ops team")))
        .unwrap();
    let pruned = publish(&w, &dir, &emu, &moto, &["--prune"]);
    assert_eq!(pruned["pruned"].as_array().unwrap().len(), 1, "{pruned:#}");
    assert_eq!(
        pruned["pruned"][0]["name"],
        "pubtest-hello-image-000000000000"
    );
    let names: Vec<String> = rt()
        .block_on(c.list_private_templates())
        .unwrap()
        .into_iter()
        .filter_map(|t| t.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"someone-else".to_string()));
}
