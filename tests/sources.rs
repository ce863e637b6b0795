//! Source kinds the platform's pins need, end to end through the CLI: files pinned only
//! by SHA-512 (Kubernetes server tarballs), and container images pinned by digest (the
//! konnectivity server binary), served by a registry on loopback that needs a token, or
//! read from an OCI image layout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use common::{World, json, ok, run};
use forge_schema::{Sha256Digest, Sha512Digest};
use forge_test_support::http::FileServer;

fn targz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

/// A two-layer image whose second layer replaces the binary and deletes a file of the
/// first, in an index with an amd64 and an arm64 manifest. Returns the index digest and
/// every blob by digest.
struct Image {
    index: Sha256Digest,
    blobs: Vec<(Sha256Digest, Vec<u8>)>,
}

fn image() -> Image {
    let l1 = targz(&[
        ("proxy-server", b"#!/bin/sh\necho old\n"),
        ("etc/junk", b"junk"),
    ]);
    let l2 = targz(&[
        ("proxy-server", b"#!/bin/sh\necho proxy-server v0.0.31\n"),
        ("etc/.wh.junk", b""),
    ]);
    let arm = targz(&[("proxy-server", b"arm64 build")]);
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}"#.to_vec();
    let d = |b: &[u8]| Sha256Digest::of(b);
    let desc = |mt: &str, b: &[u8]| {
        format!(
            r#"{{"mediaType":"{mt}","digest":"sha256:{}","size":{}}}"#,
            d(b),
            b.len()
        )
    };
    let manifest = |layers: &[&[u8]]| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
            desc("application/vnd.oci.image.config.v1+json", &config),
            layers
                .iter()
                .map(|l| desc("application/vnd.oci.image.layer.v1.tar+gzip", l))
                .collect::<Vec<_>>()
                .join(",")
        )
        .into_bytes()
    };
    let amd64 = manifest(&[&l1, &l2]);
    let arm64 = manifest(&[&arm]);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
        desc("application/vnd.oci.image.manifest.v1+json", &arm64)
            .replace('}', r#","platform":{"architecture":"arm64","os":"linux"}}"#),
        desc("application/vnd.oci.image.manifest.v1+json", &amd64)
            .replace('}', r#","platform":{"architecture":"amd64","os":"linux"}}"#),
    )
    .into_bytes();
    Image {
        index: d(&index),
        blobs: [index, amd64, arm64, config, l1, l2, arm]
            .into_iter()
            .map(|b| (d(&b), b))
            .collect(),
    }
}

fn serve(server: &FileServer, img: &Image, repo: &str) {
    for (i, (digest, bytes)) in img.blobs.iter().enumerate() {
        // The first three are manifests (index, amd64, arm64), the rest blobs.
        let kind = if i < 3 { "manifests" } else { "blobs" };
        server.put(&format!("v2/{repo}/{kind}/sha256:{digest}"), bytes.clone());
    }
}

fn project(w: &World, name: &str, source: &str) -> std::path::PathBuf {
    let p = w.path().join(name);
    fs::create_dir_all(p.join("recipes")).unwrap();
    fs::write(
        p.join("recipes/proxy.toml"),
        format!(
            r#"name = "proxy"
version = "0.0.31"

{source}

[[step]]
kind = "file"
path = "/usr/local/bin/proxy-server"
from = "bin"
member = "proxy-server"
mode = "0755"
"#
        ),
    )
    .unwrap();
    p
}

/// The content of the layer's `usr/local/bin/proxy-server`.
fn built_binary(w: &World, p: &Path) -> Vec<u8> {
    let layer = ok(w.forge().arg("-C").arg(p).args(["store", "path", "proxy"]));
    let f = fs::File::open(layer.trim()).unwrap();
    let mut a = tar::Archive::new(zstd::Decoder::new(f).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap() == Path::new("usr/local/bin/proxy-server") {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut out).unwrap();
            return out;
        }
    }
    panic!("no proxy-server in the layer");
}

#[test]
fn image_source_from_a_registry_with_token_auth() {
    let w = World::new();
    let server = FileServer::start().unwrap();
    let img = image();
    serve(&server, &img, "kas/proxy-server");
    server.require_token("v2/", "t0ken");
    let p = project(
        &w,
        "p",
        &format!(
            "[[source]]\nname = \"bin\"\nimage = \"{}/kas/proxy-server:v0.0.31\"\ndigest = \"sha256:{}\"\n",
            server.addr(),
            img.index
        ),
    );
    ok(w.forge().arg("-C").arg(&p).arg("build"));
    assert_eq!(
        built_binary(&w, &p),
        b"#!/bin/sh\necho proxy-server v0.0.31\n"
    );
    // The token dance happened, and manifests were asked for by media type.
    let seen = server.seen();
    assert!(seen.iter().any(|s| s.status == 401), "{seen:?}");
    assert!(seen.iter().any(|s| s.path == "token"), "{seen:?}");
    let manifest_gets: Vec<_> = seen
        .iter()
        .filter(|s| s.path.contains("/manifests/") && s.status == 200)
        .collect();
    assert_eq!(manifest_gets.len(), 2, "index and amd64 manifest: {seen:?}");
    assert!(manifest_gets.iter().all(|s| {
        s.accept
            .as_deref()
            .is_some_and(|a| a.contains("application/vnd.oci.image.index.v1+json"))
    }));
    // The arm64 layer was never fetched.
    assert!(
        !seen
            .iter()
            .any(|s| s.path.contains(&img.blobs[6].0.to_hex()))
    );

    // The lockfile pins the image by digest and platform; a rebuild is offline.
    let lock = fs::read_to_string(p.join("lockfile.toml")).unwrap();
    assert!(
        lock.contains(&format!("digest = \"sha256:{}\"", img.index)),
        "{lock}"
    );
    assert!(lock.contains("platform = \"linux/amd64\""), "{lock}");
    ok(w.forge().arg("-C").arg(&p).args(["lock", "--locked"]));
    ok(w.forge()
        .arg("-C")
        .arg(&p)
        .args(["build", "--check", "--offline", "proxy"]));
    // gc keeps what the lockfile pins, blobs of the image included.
    ok(w.forge().arg("gc"));
    ok(w.forge().arg("-C").arg(&p).args(["fetch", "--offline"]));
}

#[test]
fn image_source_from_an_oci_layout_offline() {
    let w = World::new();
    let img = image();
    let layout = w.path().join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    for (d, b) in &img.blobs {
        fs::write(layout.join("blobs/sha256").join(d.to_hex()), b).unwrap();
    }
    let p = project(
        &w,
        "p",
        &format!(
            "[[source]]\nname = \"bin\"\nimage = \"registry.k8s.io/kas-network-proxy/proxy-server:v0.0.31\"\ndigest = \"sha256:{}\"\n",
            img.index
        ),
    );
    ok(w.forge()
        .arg("-C")
        .arg(&p)
        .args(["build", "--offline", "--source-dir"])
        .arg(&layout));
    assert_eq!(
        built_binary(&w, &p),
        b"#!/bin/sh\necho proxy-server v0.0.31\n"
    );
}

#[test]
fn image_source_errors_name_the_problem() {
    let w = World::new();
    let server = FileServer::start().unwrap();
    let img = image();
    serve(&server, &img, "kas/proxy-server");
    // A layer the registry serves with other bytes than the manifest pins.
    let l2 = &img.blobs[5].0;
    server.put(
        &format!("v2/kas/proxy-server/blobs/sha256:{l2}"),
        b"tampered".to_vec(),
    );
    let src = |platform: &str| {
        format!(
            "[[source]]\nname = \"bin\"\nimage = \"{}/kas/proxy-server\"\ndigest = \"sha256:{}\"\nplatform = \"{platform}\"\n",
            server.addr(),
            img.index
        )
    };
    let p = project(&w, "p", &src("linux/amd64"));
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&p).arg("build"));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("sha256 mismatch"), "{stderr}");
    assert!(stderr.contains(&l2.to_hex()), "{stderr}");
    assert!(stderr.contains("layer 2"), "{stderr}");

    let q = project(&w, "q", &src("linux/s390x"));
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&q).arg("build"));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("has no manifest for linux/s390x (it has: linux/arm64, linux/amd64)"),
        "{stderr}"
    );

    // Schema errors point at the recipe.
    let r = project(
        &w,
        "r",
        "[[source]]\nname = \"bin\"\nimage = \"example.org/x\"\nunpack = \"tar\"\n",
    );
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&r).arg("build"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("image source `bin` has no `digest`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`unpack` does not apply to an `image` source"),
        "{stderr}"
    );
    assert!(stderr.contains("proxy.toml:"), "{stderr}");
}

#[test]
fn sha512_sources_build_lock_and_survive_gc() {
    let w = World::new();
    let server = FileServer::start().unwrap();
    let tarball = targz(&[("kubernetes/server/bin/proxy-server", b"from the tarball")]);
    server.put("kubernetes-server-linux-amd64.tar.gz", tarball.clone());
    let sha512 = Sha512Digest::of(&tarball);
    let source = |pin: &str| {
        format!(
            "[[source]]\nname = \"bin\"\nurls = [\"{}\"]\n{pin}\nunpack = \"tar.gz\"\nstrip-components = 3\n",
            server.url("kubernetes-server-linux-amd64.tar.gz")
        )
    };
    // The same pin written as hex and as Subresource Integrity means the same recipe.
    let p = project(&w, "p", &source(&format!("sha512 = \"{sha512}\"")));
    let q = project(
        &w,
        "q",
        &source(&format!("sha512 = \"{}\"", sha512.to_sri())),
    );
    ok(w.forge().arg("-C").arg(&p).arg("build"));
    assert_eq!(built_binary(&w, &p), b"from the tarball");
    let lock = fs::read_to_string(p.join("lockfile.toml")).unwrap();
    assert!(lock.contains(&format!("sha512 = \"{sha512}\"")), "{lock}");
    assert!(!lock.contains(&format!("sha256 = \"{}\"", Sha256Digest::of(&tarball))));
    let hash_p = json(&ok(w.forge().arg("-C").arg(&p).args(["--json", "lock"])));
    let hash_q = json(&ok(w.forge().arg("-C").arg(&q).args(["--json", "lock"])));
    assert_eq!(hash_p["recipes"], hash_q["recipes"]);

    // After gc the tarball is still there (the lockfile pins it through its SHA-512),
    // so a rebuild from scratch needs no network.
    drop(server);
    ok(w.forge().arg("gc"));
    ok(w.forge()
        .arg("-C")
        .arg(&p)
        .args(["build", "--check", "--offline", "proxy"]));

    // A wrong SHA-512 is a clear error that names both.
    let server = FileServer::start().unwrap();
    server.put("k.tgz", tarball);
    let bad = Sha512Digest::of(b"something else");
    let r = project(
        &w,
        "r",
        &format!(
            "[[source]]\nname = \"bin\"\nurls = [\"{}\"]\nsha512 = \"{bad}\"\nunpack = \"tar.gz\"\n",
            server.url("k.tgz")
        ),
    );
    let (code, _, stderr) = run(w.forge().arg("-C").arg(&r).arg("build"));
    assert_eq!(code, 1);
    assert!(stderr.contains("sha512 mismatch"), "{stderr}");
    assert!(stderr.contains(&bad.to_hex()), "{stderr}");
    assert!(stderr.contains(&sha512.to_hex()), "{stderr}");
}
