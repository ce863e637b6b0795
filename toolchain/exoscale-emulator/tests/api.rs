//! The emulator against raw signed requests: authentication, validation, every operation
//! forge uses, and every answer checked against the OpenAPI document.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exoscale_emulator::openapi::spec;
use exoscale_emulator::{Config, Running, spawn};
use forge_exoscale::sign;
use serde_json::{Value, json};

const KEY: &str = "EXO0123456789abcdef01234567";
const SECRET: &str = "forge-test-secret-0123456789abcdefghijklmn";

struct Api {
    emu: Running,
    http: reqwest::blocking::Client,
    /// Answers checked against the document (operation, status).
    checked: std::cell::RefCell<Vec<(String, u16)>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Api {
    fn start(delay_ms: u64) -> Self {
        let mut c = Config::new(KEY, SECRET);
        c.operation_delay = Duration::from_millis(delay_ms);
        let emu = spawn(c, "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        Api {
            emu,
            http: reqwest::blocking::Client::new(),
            checked: Default::default(),
        }
    }

    /// Sends a request signed with `secret`/`expires`, returning status and JSON.
    fn raw(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&str>,
        secret: &str,
        expires: u64,
    ) -> (u16, Value) {
        let url = format!("http://{}/v2{path}", self.emu.addr);
        let auth = sign::authorization(
            KEY,
            secret.as_bytes(),
            method,
            &format!("/v2{path}"),
            body.unwrap_or("").as_bytes(),
            query,
            expires,
        );
        let mut req = self
            .http
            .request(method.parse().unwrap_or(reqwest::Method::GET), &url)
            .query(query)
            .header("authorization", auth);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        self.check_schema(method, path, status, &v);
        (status, v)
    }

    /// Validates an answer against the document's schema for that operation and status.
    fn check_schema(&self, method: &str, path: &str, status: u16, v: &Value) {
        let Ok(m) = spec().find(method, path) else {
            return;
        };
        if let Some(schema) = spec().response_schema(m.route, status) {
            let problems = spec().validate(schema, v, false);
            assert!(
                problems.is_empty(),
                "{method} {path} -> {status}: {problems:?}\n{v:#}"
            );
            self.checked
                .borrow_mut()
                .push((m.route.operation_id.clone(), status));
        } else {
            assert_ne!(status, 200, "{method} {path}: no schema for a 200 answer");
            assert!(
                v.get("message").and_then(Value::as_str).is_some(),
                "{method} {path}: error without message: {v}"
            );
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let b = body.map(|b| b.to_string());
        self.raw(method, path, query, b.as_deref(), SECRET, now() + 600)
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, &[], body);
        assert_eq!(s, 200, "{method} {path}: {v}");
        v
    }

    /// A mutation, waited for; the reference id.
    fn done(&self, method: &str, path: &str, body: Option<Value>) -> String {
        let op = self.ok(method, path, body);
        self.wait(&op)
    }

    fn wait(&self, op: &Value) -> String {
        let id = op["id"].as_str().unwrap_or_default().to_string();
        for _ in 0..500 {
            let v = self.ok("GET", &format!("/operation/{id}"), None);
            match v["state"].as_str() {
                Some("pending") => std::thread::sleep(Duration::from_millis(10)),
                Some("success") => {
                    return v["reference"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                }
                other => panic!("operation {id} ended {other:?}: {v}"),
            }
        }
        panic!("operation {id} still pending")
    }
}

#[test]
fn signatures_are_checked() {
    let api = Api::start(0);
    let (s, _) = api.raw("GET", "/instance-pool", &[], None, SECRET, now() + 600);
    assert_eq!(s, 200);
    // list-zones is public.
    let r = reqwest::blocking::get(format!("http://{}/v2/zone", api.emu.addr))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 200);
    // Wrong secret, expired, missing.
    let (s, v) = api.raw(
        "GET",
        "/instance-pool",
        &[],
        None,
        "not-the-secret",
        now() + 600,
    );
    assert_eq!(
        (s, v["message"].as_str()),
        (403, Some("invalid request signature"))
    );
    let (s, v) = api.raw("GET", "/instance-pool", &[], None, SECRET, now() - 5);
    assert_eq!((s, v["message"].as_str()), (403, Some("request expired")));
    let r = api
        .http
        .get(format!("http://{}/v2/instance-pool", api.emu.addr))
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 403);

    // A tampered body: signed one body, sent another.
    let exp = now() + 600;
    let signed = r#"{"name":"a"}"#;
    let auth = sign::authorization(
        KEY,
        SECRET.as_bytes(),
        "POST",
        "/v2/security-group",
        signed.as_bytes(),
        &[],
        exp,
    );
    let r = api
        .http
        .post(format!("http://{}/v2/security-group", api.emu.addr))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(r#"{"name":"b"}"#)
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 403);

    // A tampered signed query argument.
    let q = [
        ("manager-id", "8b9d4f1c-1111-4222-8333-444455556666"),
        ("manager-type", "instance-pool"),
    ];
    let auth = sign::authorization(KEY, SECRET.as_bytes(), "GET", "/v2/instance", b"", &q, exp);
    let r = api
        .http
        .get(format!("http://{}/v2/instance", api.emu.addr))
        .query(&[
            ("manager-id", "00000000-1111-4222-8333-444455556666"),
            ("manager-type", "instance-pool"),
        ])
        .header("authorization", &auth)
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 403);
    let r = api
        .http
        .get(format!("http://{}/v2/instance", api.emu.addr))
        .query(&q)
        .header("authorization", &auth)
        .send();
    assert_eq!(r.map(|r| r.status().as_u16()).unwrap_or(0), 200);
}

fn qcow2_bytes() -> Vec<u8> {
    // A QCOW2 header is enough for the checks the service makes before booting anything.
    let mut b = b"QFI\xfb\0\0\0\x03".to_vec();
    b.resize(4096, 0x5a);
    b
}

#[test]
fn resources_behave_like_the_api_and_answers_match_the_document() {
    let api = Api::start(30);
    let files = forge_test_support::http::FileServer::start().unwrap_or_else(|e| panic!("{e}"));
    let image = qcow2_bytes();
    files.put("/img.qcow2", image.clone());
    use md5::Digest as _;
    let md5 = hex::encode(md5::Md5::digest(&image));

    // Validation: bad enum, missing field, out of range, unknown reference, conflicts.
    let (s, v) = api.call(
        "POST",
        "/security-group",
        &[],
        Some(json!({ "description": "no name" })),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("\"name\": missing required field"),
        "{v}"
    );
    let (s, v) = api.call("GET", "/template", &[("visibility", "secret")], None);
    assert_eq!(s, 400, "{v}");

    // Templates: a wrong checksum fails the operation; the right one registers.
    let reg = |checksum: &str| {
        json!({
            "name": "forge-hello", "url": files.url("/img.qcow2"), "checksum": checksum,
            "ssh-key-enabled": true, "password-enabled": false, "boot-mode": "uefi", "build": "abc",
        })
    };
    let op = api.ok(
        "POST",
        "/template",
        Some(reg("00000000000000000000000000000000")),
    );
    assert_eq!(op["state"], "pending");
    let failed = loop {
        let v = api.ok(
            "GET",
            &format!("/operation/{}", op["id"].as_str().unwrap_or_default()),
            None,
        );
        if v["state"] != "pending" {
            break v;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(failed["state"], "failure", "{failed}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or_default()
            .contains("checksum mismatch"),
        "{failed}"
    );
    let template = api.done("POST", "/template", Some(reg(&md5)));
    let t = api.ok("GET", &format!("/template/{template}"), None);
    assert_eq!(
        (
            t["size"].as_u64(),
            t["boot-mode"].as_str(),
            t["visibility"].as_str()
        ),
        (Some(4096), Some("uefi"), Some("private"))
    );
    let (_, v) = api.call("GET", "/template", &[("visibility", "private")], None);
    assert_eq!(v["templates"].as_array().map(Vec::len), Some(1));
    let (_, v) = api.call("GET", "/template", &[], None);
    assert_eq!(
        v["templates"].as_array().map(Vec::len),
        Some(0),
        "public by default"
    );

    // Security groups and rules.
    let sg = api.done(
        "POST",
        "/security-group",
        Some(json!({ "name": "p-vault-server", "description": "d" })),
    );
    let (s, _) = api.call(
        "POST",
        "/security-group",
        &[],
        Some(json!({ "name": "p-vault-server" })),
    );
    assert_eq!(s, 409);
    let rule = json!({ "flow-direction": "ingress", "protocol": "tcp", "start-port": 8200, "end-port": 8200, "security-group": { "id": sg } });
    api.done(
        "POST",
        &format!("/security-group/{sg}/rules"),
        Some(rule.clone()),
    );
    let (s, _) = api.call(
        "POST",
        &format!("/security-group/{sg}/rules"),
        &[],
        Some(rule),
    );
    assert_eq!(s, 409, "identical rule");
    let (s, _) = api.call(
        "POST",
        &format!("/security-group/{sg}/rules"),
        &[],
        Some(json!({ "flow-direction": "inbound", "protocol": "tcp" })),
    );
    assert_eq!(s, 400, "bad enum");
    let (s, _) = api.call("POST", &format!("/security-group/{sg}/rules"), &[], Some(json!({ "flow-direction": "ingress", "protocol": "tcp", "start-port": 70000, "end-port": 70000, "network": "0.0.0.0/0" })));
    assert_eq!(s, 400, "port out of range");
    api.done(
        "PUT",
        &format!("/security-group/{sg}:add-source"),
        Some(json!({ "cidr": "192.0.2.1/32" })),
    );
    let g = api.ok("GET", &format!("/security-group/{sg}"), None);
    assert_eq!(g["external-sources"], json!(["192.0.2.1/32"]));
    let rule_id = g["rules"][0]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(g["rules"][0]["security-group"]["name"], "p-vault-server");

    let aag = api.done(
        "POST",
        "/anti-affinity-group",
        Some(json!({ "name": "p-vault" })),
    );
    let eip = api.done("POST", "/elastic-ip", Some(json!({
        "description": "Vault", "labels": { "forge-platform": "p" },
        "healthcheck": { "mode": "https", "port": 8200, "uri": "/v1/sys/health", "interval": 5, "timeout": 2, "strikes-ok": 2, "strikes-fail": 2, "tls-sni": "p-vault", "tls-skip-verify": false },
    })));
    let e = api.ok("GET", &format!("/elastic-ip/{eip}"), None);
    assert!(
        e["ip"]
            .as_str()
            .unwrap_or_default()
            .starts_with("203.0.113."),
        "{e}"
    );
    let (s, _) = api.call(
        "PUT",
        &format!("/elastic-ip/{eip}"),
        &[],
        Some(json!({ "healthcheck": { "mode": "tcp", "port": 8200 } })),
    );
    assert_eq!(s, 400, "mode cannot change");

    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMq5V1dX9rC1Hq0mq7u2k0M6j7Yx3xvS3Vq9bq2q4yQw forge";
    api.done(
        "POST",
        "/ssh-key",
        Some(json!({ "name": "p-management", "public-key": key })),
    );
    let (s, _) = api.call(
        "POST",
        "/ssh-key",
        &[],
        Some(json!({ "name": "bad key!", "public-key": key })),
    );
    assert_eq!(s, 400, "name pattern");
    let (s, _) = api.call(
        "POST",
        "/ssh-key",
        &[],
        Some(json!({ "name": "other", "public-key": "not a key" })),
    );
    assert_eq!(s, 400);

    // Instance pools create, scale and delete their members.
    let types = api.ok("GET", "/instance-type", None);
    let tiny = types["instance-types"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["family"] == "standard" && t["size"] == "tiny")
        .map(|t| t["id"].clone())
        .unwrap_or_default();
    let pool_body = json!({
        "name": "p-vault", "size": 3, "instance-type": { "id": tiny }, "template": { "id": template },
        "disk-size": 10, "instance-prefix": "p-vault", "anti-affinity-groups": [{ "id": aag }],
        "security-groups": [{ "id": sg }], "elastic-ips": [{ "id": eip }], "ssh-key": { "name": "p-management" },
        "user-data": "I2Nsb3VkLWNvbmZpZwo=", "labels": { "forge-platform": "p" },
    });
    let mut bad = pool_body.clone();
    bad["template"] = json!({ "id": "00000000-0000-4000-8000-000000000000" });
    let (s, _) = api.call("POST", "/instance-pool", &[], Some(bad));
    assert_eq!(s, 404, "unknown template");
    let mut bad = pool_body.clone();
    bad["disk-size"] = json!(5);
    assert_eq!(
        api.call("POST", "/instance-pool", &[], Some(bad)).0,
        400,
        "disk too small"
    );
    let mut bad = pool_body.clone();
    bad["user-data"] = json!("A".repeat(32769));
    assert_eq!(
        api.call("POST", "/instance-pool", &[], Some(bad)).0,
        400,
        "user-data over 32768"
    );
    let pool = api.done("POST", "/instance-pool", Some(pool_body.clone()));
    assert_eq!(
        api.call("POST", "/instance-pool", &[], Some(pool_body)).0,
        409,
        "name in use"
    );
    let p = api.ok("GET", &format!("/instance-pool/{pool}"), None);
    assert_eq!(p["instances"].as_array().map(Vec::len), Some(3));
    let (_, members) = api.call(
        "GET",
        "/instance",
        &[("manager-id", &pool), ("manager-type", "instance-pool")],
        None,
    );
    let members = members["instances"].as_array().cloned().unwrap_or_default();
    assert_eq!(members.len(), 3);
    for m in &members {
        assert!(
            m["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("p-vault-{}-", &pool[..5])),
            "{m}"
        );
        assert!(
            m["public-ip"]
                .as_str()
                .unwrap_or_default()
                .starts_with("198.51.100."),
            "{m}"
        );
        assert_eq!(m["manager"], json!({ "id": pool, "type": "instance-pool" }));
        assert!(m.get("user-data").is_none(), "lists carry no user-data");
    }
    let one = api.ok(
        "GET",
        &format!(
            "/instance/{}",
            members[0]["id"].as_str().unwrap_or_default()
        ),
        None,
    );
    assert_eq!(one["user-data"], "I2Nsb3VkLWNvbmZpZwo=");
    assert_eq!(
        api.ok("GET", &format!("/anti-affinity-group/{aag}"), None)["instances"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    api.done(
        "PUT",
        &format!("/instance-pool/{pool}:scale"),
        Some(json!({ "size": 2 })),
    );
    api.done(
        "PUT",
        &format!("/instance-pool/{pool}"),
        Some(json!({ "labels": { "forge-platform": "p", "x": "y" } })),
    );
    let (_, members) = api.call(
        "GET",
        "/instance",
        &[("manager-id", &pool), ("manager-type", "instance-pool")],
        None,
    );
    assert_eq!(members["instances"].as_array().map(Vec::len), Some(2));
    assert_eq!(members["instances"][0]["labels"]["x"], "y");
    assert_eq!(
        api.call(
            "PUT",
            &format!("/instance-pool/{pool}:scale"),
            &[],
            Some(json!({ "size": 9 }))
        )
        .0,
        400,
        "AAG holds 8"
    );

    // In use: deletes refused until the pool is gone.
    assert_eq!(
        api.call("DELETE", &format!("/security-group/{sg}"), &[], None)
            .0,
        409
    );
    assert_eq!(
        api.call("DELETE", &format!("/elastic-ip/{eip}"), &[], None)
            .0,
        409
    );
    assert_eq!(
        api.call("DELETE", &format!("/anti-affinity-group/{aag}"), &[], None)
            .0,
        409
    );
    api.done("DELETE", &format!("/instance-pool/{pool}"), None);
    let (_, all) = api.call("GET", "/instance", &[], None);
    assert_eq!(all["instances"].as_array().map(Vec::len), Some(0));
    api.done(
        "DELETE",
        &format!("/security-group/{sg}/rules/{rule_id}"),
        None,
    );
    api.done("DELETE", &format!("/security-group/{sg}"), None);
    api.done("DELETE", &format!("/elastic-ip/{eip}"), None);
    api.done("DELETE", &format!("/anti-affinity-group/{aag}"), None);
    api.done("DELETE", "/ssh-key/p-management", None);
    api.done("DELETE", &format!("/template/{template}"), None);
    assert_eq!(
        api.call("GET", &format!("/template/{template}"), &[], None)
            .0,
        404
    );
    assert_eq!(api.call("GET", "/no-such-path", &[], None).0, 404);

    let checked = api.checked.borrow();
    let mut ops: Vec<&str> = checked.iter().map(|(o, _)| o.as_str()).collect();
    ops.sort();
    ops.dedup();
    assert!(
        ops.len() >= 25,
        "operations validated against the document: {ops:?}"
    );
}

#[test]
fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("state.json");
    let mut c = Config::new(KEY, SECRET);
    c.operation_delay = Duration::ZERO;
    c.state_file = Some(file.clone());
    let addr = "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"));
    let emu = spawn(c.clone(), addr).unwrap_or_else(|e| panic!("{e}"));
    let api = Api {
        emu,
        http: reqwest::blocking::Client::new(),
        checked: Default::default(),
    };
    let sg = api.done("POST", "/security-group", Some(json!({ "name": "kept" })));
    api.emu.stop();
    let emu = spawn(c, addr).unwrap_or_else(|e| panic!("{e}"));
    let api = Api {
        emu,
        http: reqwest::blocking::Client::new(),
        checked: Default::default(),
    };
    assert_eq!(
        api.ok("GET", &format!("/security-group/{sg}"), None)["name"],
        "kept"
    );
}

#[test]
fn the_binary_prints_its_endpoint_and_injects_faults() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_exoscale-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            KEY,
            "--api-secret",
            SECRET,
            "--faults",
            "429=1,seed=3",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("stdout"));
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{e}"));
    let endpoint = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let path = "/v2/security-group";
    let url = format!("{endpoint}/security-group");
    let auth = sign::authorization(KEY, SECRET.as_bytes(), "GET", path, b"", &[], now() + 600);
    let r = reqwest::blocking::Client::new()
        .get(&url)
        .header("authorization", auth)
        .send();
    let _ = child.kill();
    let _ = child.wait();
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_exoscale-emulator"))
        .args([
            "--api-key",
            KEY,
            "--api-secret",
            SECRET,
            "--faults",
            "5xx=3",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a probability"));
}

#[test]
fn load_balancers_and_private_networks() {
    let api = Api::start(10);
    let files = forge_test_support::http::FileServer::start().unwrap_or_else(|e| panic!("{e}"));
    let image = qcow2_bytes();
    files.put("/img.qcow2", image.clone());
    use md5::Digest as _;
    let template = api.done(
        "POST",
        "/template",
        Some(json!({ "name": "t", "url": files.url("/img.qcow2"), "checksum": hex::encode(md5::Md5::digest(&image)), "ssh-key-enabled": true, "password-enabled": false })),
    );

    // Private networks: managed ranges are all-or-none and consistent.
    assert_eq!(
        api.call(
            "POST",
            "/private-network",
            &[],
            Some(json!({ "name": "n", "netmask": "255.255.255.0" }))
        )
        .0,
        400
    );
    assert_eq!(
        api.call("POST", "/private-network", &[], Some(json!({ "name": "n", "netmask": "255.255.255.0", "start-ip": "10.0.0.10", "end-ip": "10.0.1.10" }))).0,
        400
    );
    let net = api.done(
        "POST",
        "/private-network",
        Some(json!({ "name": "p-net", "netmask": "255.255.255.0", "start-ip": "10.0.0.10", "end-ip": "10.0.0.200", "labels": { "forge-platform": "p" } })),
    );
    assert_eq!(
        api.call(
            "POST",
            "/private-network",
            &[],
            Some(json!({ "name": "p-net" }))
        )
        .0,
        409
    );
    api.done(
        "PUT",
        &format!("/private-network/{net}"),
        Some(json!({ "description": "nodes" })),
    );
    assert_eq!(
        api.ok("GET", &format!("/private-network/{net}"), None)["description"],
        "nodes"
    );

    let types = api.ok("GET", "/instance-type", None);
    let small = types["instance-types"][2]["id"].clone();
    let pool = api.done(
        "POST",
        "/instance-pool",
        Some(json!({ "name": "p-nodes", "size": 2, "instance-type": { "id": small }, "template": { "id": template }, "disk-size": 20, "private-networks": [{ "id": net }] })),
    );
    assert_eq!(
        api.call("DELETE", &format!("/private-network/{net}"), &[], None)
            .0,
        409,
        "in use"
    );

    // Load balancers and services.
    let lb = api.done(
        "POST",
        "/load-balancer",
        Some(json!({ "name": "p-ingress", "labels": { "forge-platform": "p" } })),
    );
    let service = |name: &str, port: u16, pool: &str, timeout: u16| {
        json!({
            "name": name, "instance-pool": { "id": pool }, "protocol": "tcp", "strategy": "round-robin",
            "port": port, "target-port": 30443, "healthcheck": { "mode": "tcp", "port": 30443, "interval": 10, "timeout": timeout, "retries": 1 },
        })
    };
    assert_eq!(
        api.call(
            "POST",
            &format!("/load-balancer/{lb}/service"),
            &[],
            Some(service(
                "https",
                443,
                "00000000-0000-4000-8000-000000000000",
                2
            ))
        )
        .0,
        404
    );
    assert_eq!(
        api.call(
            "POST",
            &format!("/load-balancer/{lb}/service"),
            &[],
            Some(service("https", 443, &pool, 20))
        )
        .0,
        400,
        "timeout > interval"
    );
    api.done(
        "POST",
        &format!("/load-balancer/{lb}/service"),
        Some(service("https", 443, &pool, 2)),
    );
    assert_eq!(
        api.call(
            "POST",
            &format!("/load-balancer/{lb}/service"),
            &[],
            Some(service("other", 443, &pool, 2))
        )
        .0,
        409,
        "port taken"
    );
    let got = api.ok("GET", &format!("/load-balancer/{lb}"), None);
    assert!(
        got["ip"]
            .as_str()
            .unwrap_or_default()
            .starts_with("203.0.113.")
    );
    let sid = got["services"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    api.done(
        "PUT",
        &format!("/load-balancer/{lb}/service/{sid}"),
        Some(json!({ "port": 8443 })),
    );
    assert_eq!(
        api.ok("GET", &format!("/load-balancer/{lb}/service/{sid}"), None)["port"],
        8443
    );
    api.done(
        "DELETE",
        &format!("/load-balancer/{lb}/service/{sid}"),
        None,
    );
    api.done("DELETE", &format!("/load-balancer/{lb}"), None);
    api.done("DELETE", &format!("/instance-pool/{pool}"), None);
    api.done("DELETE", &format!("/private-network/{net}"), None);
    assert_eq!(
        api.ok("GET", "/load-balancer", None)["load-balancers"],
        json!([])
    );
}
