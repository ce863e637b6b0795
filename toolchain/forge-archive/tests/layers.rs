//! Container image layers: applied bottom first, later entries replacing earlier ones,
//! whiteouts deleting, and every rule of ordinary unpacking still in force.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use forge_archive::{ArchiveError, Limits, unpack_layers};
use forge_schema::recipe::Unpack;

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Link(&'a str, &'a str),
}

fn layer(dir: &Path, name: &str, entries: &[E<'_>]) -> (PathBuf, Unpack) {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            E::File(p, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o755);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    let tar = b.into_inner().unwrap();
    let path = dir.join(format!("{name}.tar.gz"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    fs::write(&path, gz.finish().unwrap()).unwrap();
    (path, Unpack::TarGz)
}

#[test]
fn later_layers_replace_and_whiteouts_delete() {
    let dir = tempfile::tempdir().unwrap();
    let l1 = layer(
        dir.path(),
        "l1",
        &[
            E::Dir("a"),
            E::File("a/x", b"x1"),
            E::File("a/y", b"y1"),
            E::File("b", b"file b"),
            E::Dir("c"),
            E::File("c/old", b"old"),
            E::Link("etc-link", "/etc/passwd"),
            E::File("proxy-server", b"v1"),
        ],
    );
    let l2 = layer(
        dir.path(),
        "l2",
        &[
            E::File("a/.wh.x", b""),
            E::Dir("b"),
            E::File("b/inner", b"now a dir"),
            E::File("c/.wh..wh..opq", b""),
            E::File("c/new", b"new"),
            E::File("proxy-server", b"v2"),
            E::File("gone/.wh.nothing", b""),
        ],
    );
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    unpack_layers(&[l1, l2], &root, &Limits::default(), "img").unwrap();
    assert!(!root.join("a/x").exists());
    assert_eq!(fs::read(root.join("a/y")).unwrap(), b"y1");
    assert_eq!(fs::read(root.join("b/inner")).unwrap(), b"now a dir");
    assert!(!root.join("c/old").exists());
    assert_eq!(fs::read(root.join("c/new")).unwrap(), b"new");
    assert_eq!(fs::read(root.join("proxy-server")).unwrap(), b"v2");
    // Absolute link targets are kept (they are read relative to the image root).
    assert_eq!(
        fs::read_link(root.join("etc-link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert!(!root.join(".wh.x").exists() && !root.join("a/.wh.x").exists());
}

#[test]
fn a_layer_cannot_write_through_a_link_of_an_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let l1 = layer(dir.path(), "l1", &[E::Link("escape", "/")]);
    let l2 = layer(dir.path(), "l2", &[E::File("escape/pwned", b"!")]);
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let err = unpack_layers(&[l1, l2], &root, &Limits::default(), "img").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ArchiveError::Refused { .. }), "{msg}");
    assert!(
        msg.contains("img layer 2") && msg.contains("escape/pwned"),
        "{msg}"
    );
    assert!(fs::read_dir(&outside).unwrap().next().is_none());
}

#[test]
fn whiteouts_cannot_escape_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"keep").unwrap();
    let l1 = layer(dir.path(), "l1", &[E::Link("up", "/")]);
    // Deleting through a symlinked directory is refused: `up/.wh.victim`.
    let l2 = layer(dir.path(), "l2", &[E::File("up/.wh.victim", b"")]);
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let err = unpack_layers(&[l1, l2], &root, &Limits::default(), "img").unwrap_err();
    assert!(err.to_string().contains("img layer 2"), "{err}");
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
}
