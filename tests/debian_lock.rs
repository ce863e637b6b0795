//! Locking an image's package set against an archive served on loopback, signed with a
//! key made for the test (gpg): a bad signature, a tampered index, a missing dependency and
//! a wrong index hash are each a clear error, and nothing is locked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{World, run};
use forge_schema::Sha256Digest;
use forge_test_support::http::FileServer;

/// A gpg home with one signing key; returns (home, binary public keyring path).
fn gpg_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let home = dir.join(format!("gnupg-{name}"));
    fs::create_dir_all(&home).unwrap();
    let st = Command::new("gpg")
        .arg("--homedir")
        .arg(&home)
        .args(["--batch", "--quiet", "--passphrase", "", "--quick-gen-key"])
        .arg(format!("forge test {name} <{name}@forge.test>"))
        .args(["ed25519", "sign", "never"])
        .status()
        .expect("gpg (package gnupg) is installed");
    assert!(st.success());
    let keyring = dir.join(format!("{name}.gpg"));
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(&home)
        .args(["--batch", "--export"])
        .output()
        .unwrap();
    fs::write(&keyring, out.stdout).unwrap();
    (home, keyring)
}

fn clearsign(home: &Path, text: &str) -> String {
    let mut child = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--quiet",
            "--clearsign",
            "--digest-algo",
            "SHA256",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn stanza(name: &str, extra: &str) -> String {
    format!(
        "Package: {name}\nVersion: 1.0-1\nArchitecture: amd64\nPriority: optional\nFilename: pool/main/{name}_1.0-1_amd64.deb\nSize: 100\nSHA256: {}\n{extra}\n",
        Sha256Digest::of(name.as_bytes())
    )
}

struct Archive {
    server: FileServer,
    packages_xz: Vec<u8>,
}

/// Serves `dists/bookworm/{InRelease,main/binary-amd64/Packages.xz}`.
fn archive(home: &Path, packages: &str, lie_about_hash: bool) -> Archive {
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(packages.as_bytes()).unwrap();
    let packages_xz = xz.finish().unwrap();
    let listed = if lie_about_hash {
        Sha256Digest::of(b"something else")
    } else {
        Sha256Digest::of(&packages_xz)
    };
    let release = format!(
        "Origin: Debian\nSuite: bookworm\nCodename: bookworm\nArchitectures: amd64\nComponents: main\nSHA256:\n {listed} {} main/binary-amd64/Packages.xz\n",
        packages_xz.len()
    );
    let server = FileServer::start().unwrap();
    server.put("debian/dists/bookworm/InRelease", clearsign(home, &release));
    server.put(
        "debian/dists/bookworm/main/binary-amd64/Packages.xz",
        packages_xz.clone(),
    );
    Archive {
        server,
        packages_xz,
    }
}

fn project(w: &World) -> PathBuf {
    let p = w.path().join("p");
    fs::create_dir_all(p.join("recipes")).unwrap();
    fs::create_dir_all(p.join("images")).unwrap();
    fs::write(
        p.join("images/t.toml"),
        "name = \"t\"\n[base]\nupdates = false\nvariant = \"essential\"\nkernel = \"app\"\npackages = [\"app\"]\n",
    )
    .unwrap();
    p
}

fn lock(w: &World, p: &Path, a: &Archive, keyring: &Path) -> (i32, String) {
    let (code, _, stderr) = run(w
        .forge()
        .arg("-C")
        .arg(p)
        .arg("lock")
        .arg("--debian-mirror")
        .arg(a.server.url("debian"))
        .arg("--debian-keyring")
        .arg(keyring));
    (code, stderr)
}

const GOOD: &str = "app|Depends: libfoo (>= 1.0), initramfs-tools, systemd-sysv, udev\nlibfoo|\ninitramfs-tools|\nsystemd-sysv|\nudev|";

fn packages(spec: &str) -> String {
    spec.lines()
        .map(|l| {
            let (n, extra) = l.split_once('|').unwrap();
            stanza(n, extra)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn signed_by_another_key_is_refused() {
    let w = World::new();
    let (home, _) = gpg_key(w.path(), "archive");
    let (_, other_keyring) = gpg_key(w.path(), "other");
    let a = archive(&home, &packages(GOOD), false);
    let p = project(&w);
    let (code, stderr) = lock(&w, &p, &a, &other_keyring);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("bad signature"), "{stderr}");
    assert!(stderr.contains("InRelease"), "{stderr}");
    assert!(!p.join("lockfile.toml").exists());
}

#[test]
fn tampered_index_is_refused() {
    let w = World::new();
    let (home, keyring) = gpg_key(w.path(), "archive");
    let a = archive(&home, &packages(GOOD), false);
    // Swap in a different Packages hash after signing: the signature no longer matches.
    let signed = clearsign(
        &home,
        "Suite: bookworm\nSHA256:\n 00 1 main/binary-amd64/Packages.xz\n",
    );
    let tampered = signed.replacen(
        " 00 1 ",
        &format!(
            " {} {} ",
            Sha256Digest::of(&a.packages_xz),
            a.packages_xz.len()
        ),
        1,
    );
    a.server.put("debian/dists/bookworm/InRelease", tampered);
    let p = project(&w);
    let (code, stderr) = lock(&w, &p, &a, &keyring);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("bad signature"), "{stderr}");
    assert!(!p.join("lockfile.toml").exists());
}

#[test]
fn missing_dependency_is_named() {
    let w = World::new();
    let (home, keyring) = gpg_key(w.path(), "archive");
    let spec = GOOD.replace("libfoo (>= 1.0)", "libmissing (>= 2)");
    let a = archive(&home, &packages(&spec), false);
    let p = project(&w);
    let (code, stderr) = lock(&w, &p, &a, &keyring);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("needs `libmissing (>= 2)`"), "{stderr}");
    assert!(stderr.contains("the image asks for it"), "{stderr}");
    assert!(!p.join("lockfile.toml").exists());
    // A version too old is the same error.
    let spec = GOOD.replace("libfoo (>= 1.0)", "libfoo (>= 9)");
    let a = archive(&home, &packages(&spec), false);
    let (_, stderr) = lock(&w, &p, &a, &keyring);
    assert!(stderr.contains("needs `libfoo (>= 9)`"), "{stderr}");
}

#[test]
fn index_with_the_wrong_hash_is_refused() {
    let w = World::new();
    let (home, keyring) = gpg_key(w.path(), "archive");
    let a = archive(&home, &packages(GOOD), true);
    let p = project(&w);
    let (code, stderr) = lock(&w, &p, &a, &keyring);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("sha256 mismatch"), "{stderr}");
    assert!(
        stderr.contains(&Sha256Digest::of(&a.packages_xz).to_hex()),
        "{stderr}"
    );
    assert!(!p.join("lockfile.toml").exists());
}

#[test]
fn errors_read_well() {
    let w = World::new();
    let (home, keyring) = gpg_key(w.path(), "archive");
    let (_, other) = gpg_key(w.path(), "other");
    let spec = GOOD.replace("libfoo (>= 1.0)", "libmissing (>= 2)");
    let a = archive(&home, &packages(&spec), false);
    let p = project(&w);
    let port = a.server.addr().port().to_string();
    let scrub = |s: &str| {
        // Key fingerprints are new each run.
        let re_fpr = |t: &str| -> String {
            t.split_whitespace()
                .map(|word| {
                    let core = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
                    if core.len() >= 16 && core.chars().all(|c| c.is_ascii_hexdigit()) {
                        word.replace(core, "[KEY]")
                    } else {
                        word.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        common::scrub(s, &w)
            .replace(&port, "[PORT]")
            .lines()
            .map(re_fpr)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (_, missing) = lock(&w, &p, &a, &keyring);
    let (_, bad_sig) = lock(&w, &p, &a, &other);
    insta::assert_snapshot!(format!("{}\n---\n{}", scrub(&missing), scrub(&bad_sig)));
}

#[test]
fn images_with_one_base_share_one_resolution() {
    let w = World::new();
    let (home, keyring) = gpg_key(w.path(), "archive");
    let a = archive(&home, &packages(GOOD), false);
    let p = project(&w);
    let t = fs::read_to_string(p.join("images/t.toml")).unwrap();
    fs::write(
        p.join("images/u.toml"),
        t.replace("name = \"t\"", "name = \"u\""),
    )
    .unwrap();
    let (code, stderr) = lock(&w, &p, &a, &keyring);
    assert_eq!(code, 0, "{stderr}");
    // Resolved once for both images, and both get the same set.
    let resolutions = stderr.lines().filter(|l| l.contains(" resolve ")).count();
    assert_eq!(resolutions, 1, "{stderr}");
    let lock = fs::read_to_string(p.join("lockfile.toml")).unwrap();
    let sets: Vec<&str> = lock
        .split("[[image]]")
        .skip(1)
        .map(|s| {
            s.split("debs = ")
                .nth(1)
                .unwrap_or("")
                .split(']')
                .next()
                .unwrap_or("")
        })
        .collect();
    assert_eq!(sets.len(), 2, "{lock}");
    assert_eq!(sets[0], sets[1]);
}
