//! One generated malicious archive per class of attack: each must be refused, with an error
//! naming the archive and the entry, and nothing may appear outside the unpack root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use forge_archive::{ArchiveError, Limits, unpack};
use forge_schema::recipe::Unpack;

/// A tar built from raw headers, so names the `tar` crate's builder would refuse
/// (absolute, `..`) can be written.
fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

struct Case {
    _dir: tempfile::TempDir,
    outer: PathBuf,
    root: PathBuf,
    archive: PathBuf,
}

fn case(bytes: &[u8], file: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let outer = dir.path().join("outer");
    let root = outer.join("root");
    fs::create_dir_all(&root).unwrap();
    let archive = dir.path().join(file);
    fs::write(&archive, bytes).unwrap();
    Case {
        _dir: dir,
        outer,
        root,
        archive,
    }
}

/// Everything under `outer` except `root` and its content.
fn outside_root(c: &Case) -> Vec<PathBuf> {
    fs::read_dir(&c.outer)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &c.root)
        .collect()
}

fn run(c: &Case, kind: Unpack, limits: Limits) -> Result<forge_archive::UnpackStats, ArchiveError> {
    unpack(&c.archive, kind, 0, &c.root, &limits, "evil-archive")
}

/// Checks the run was refused for `entry` and returns the error message.
fn refused(r: Result<forge_archive::UnpackStats, ArchiveError>, entry: &str) -> String {
    match r {
        Err(e @ ArchiveError::Refused { .. }) => {
            let msg = e.to_string();
            let ArchiveError::Refused {
                archive, entry: e, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(archive, "evil-archive");
            assert_eq!(e, entry);
            assert!(msg.contains("evil-archive") && msg.contains(entry), "{msg}");
            msg
        }
        other => panic!("expected a refusal of `{entry}`, got {other:?}"),
    }
}

fn assert_clean(c: &Case) {
    assert!(
        outside_root(c).is_empty(),
        "written outside root: {:?}",
        outside_root(c)
    );
}

#[test]
fn absolute_path() {
    let target = format!("/tmp/forge-evil-{}", std::process::id());
    let c = case(
        &raw_tar(&[(&target, tar::EntryType::Regular, "", b"x")]),
        "a.tar",
    );
    let m = refused(run(&c, Unpack::Tar, Limits::default()), &target);
    assert!(m.contains("absolute path"), "{m}");
    assert!(!Path::new(&target).exists());
    assert_clean(&c);
}

#[test]
fn parent_dir() {
    let c = case(
        &raw_tar(&[("../evil", tar::EntryType::Regular, "", b"x")]),
        "a.tar",
    );
    let m = refused(run(&c, Unpack::Tar, Limits::default()), "../evil");
    assert!(m.contains("`..`"), "{m}");
    assert_clean(&c);
    let c = case(
        &raw_tar(&[("a/../../evil", tar::EntryType::Regular, "", b"x")]),
        "a.tar",
    );
    refused(run(&c, Unpack::Tar, Limits::default()), "a/../../evil");
    assert_clean(&c);
}

#[test]
fn symlink_escaping() {
    let c = case(
        &raw_tar(&[("up", tar::EntryType::Symlink, "../..", b"")]),
        "a.tar",
    );
    let m = refused(run(&c, Unpack::Tar, Limits::default()), "up");
    assert!(m.contains("outside the archive root"), "{m}");
    assert_clean(&c);

    let c = case(
        &raw_tar(&[("etc", tar::EntryType::Symlink, "/etc", b"")]),
        "a.tar",
    );
    let m = refused(run(&c, Unpack::Tar, Limits::default()), "etc");
    assert!(m.contains("absolute path `/etc`"), "{m}");
    assert!(!c.root.join("etc").exists());
}

#[test]
fn write_through_symlink() {
    // An inner symlink followed by an entry below it: the write would follow the link.
    let c = case(
        &raw_tar(&[
            ("real", tar::EntryType::Directory, "", b""),
            ("link", tar::EntryType::Symlink, "real", b""),
            ("link/x", tar::EntryType::Regular, "", b"x"),
        ]),
        "a.tar",
    );
    let m = refused(run(&c, Unpack::Tar, Limits::default()), "link/x");
    assert!(m.contains("symlink or a file"), "{m}");
    assert!(!c.root.join("real/x").exists());
    assert_clean(&c);
}

#[test]
fn hardlink_escaping() {
    let c = case(
        &raw_tar(&[("pw", tar::EntryType::Link, "../../../etc/passwd", b"")]),
        "a.tar",
    );
    let m = refused(run(&c, Unpack::Tar, Limits::default()), "pw");
    assert!(m.contains("hardlink"), "{m}");
    assert_clean(&c);

    let c = case(
        &raw_tar(&[("pw", tar::EntryType::Link, "/etc/passwd", b"")]),
        "a.tar",
    );
    refused(run(&c, Unpack::Tar, Limits::default()), "pw");
    assert!(!c.root.join("pw").exists());

    // A hardlink to a symlink that points outside would give a second name to the link.
    let c = case(
        &raw_tar(&[
            ("l", tar::EntryType::Symlink, "f", b""),
            ("h", tar::EntryType::Link, "l", b""),
        ]),
        "a.tar",
    );
    refused(run(&c, Unpack::Tar, Limits::default()), "h");
}

#[test]
fn device_and_fifo_nodes() {
    for (kind, what) in [
        (tar::EntryType::Char, "character device"),
        (tar::EntryType::Block, "block device"),
        (tar::EntryType::Fifo, "fifo"),
    ] {
        let c = case(&raw_tar(&[("dev", kind, "", b"")]), "a.tar");
        let m = refused(run(&c, Unpack::Tar, Limits::default()), "dev");
        assert!(m.contains(what), "{m}");
        assert!(!c.root.join("dev").exists());
    }
}

#[test]
fn size_limits() {
    let small = Limits {
        max_entry_bytes: 1000,
        max_total_bytes: 1500,
        max_entries: 3,
    };
    let big = vec![0u8; 1001];
    let c = case(
        &raw_tar(&[("big", tar::EntryType::Regular, "", &big)]),
        "a.tar",
    );
    let m = refused(run(&c, Unpack::Tar, small), "big");
    assert!(m.contains("larger than the limit of 1000 bytes"), "{m}");
    assert!(!c.root.join("big").exists());

    let part = vec![0u8; 800];
    let c = case(
        &raw_tar(&[
            ("a", tar::EntryType::Regular, "", &part),
            ("b", tar::EntryType::Regular, "", &part),
        ]),
        "a.tar",
    );
    let m = refused(run(&c, Unpack::Tar, small), "b");
    assert!(m.contains("more than the limit of 1500 bytes"), "{m}");
    assert!(!c.root.join("b").exists());

    let c = case(
        &raw_tar(&[
            ("a", tar::EntryType::Regular, "", b""),
            ("b", tar::EntryType::Regular, "", b""),
            ("c", tar::EntryType::Regular, "", b""),
            ("d", tar::EntryType::Regular, "", b""),
        ]),
        "a.tar",
    );
    let m = refused(run(&c, Unpack::Tar, small), "d");
    assert!(m.contains("more than the limit of 3 entries"), "{m}");
}

#[test]
fn gzip_bomb() {
    // 64 MiB of zeros compress to ~64 KiB; the limit is enforced on decompressed bytes.
    let zeros = vec![0u8; 64 << 20];
    let tar = raw_tar(&[("zeros", tar::EntryType::Regular, "", &zeros)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let c = case(&gz.finish().unwrap(), "bomb.tar.gz");
    let limits = Limits {
        max_entry_bytes: 1 << 20,
        ..Limits::default()
    };
    refused(run(&c, Unpack::TarGz, limits), "zeros");
    assert!(!c.root.join("zeros").exists());
}

fn zip_with(build: impl FnOnce(&mut zip::ZipWriter<Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    build(&mut w);
    w.finish().unwrap().into_inner()
}

#[test]
fn zip_attacks() {
    let opts = zip::write::SimpleFileOptions::default();
    let bytes = zip_with(|w| {
        w.start_file("../evil", opts).unwrap();
        w.write_all(b"x").unwrap();
    });
    let c = case(&bytes, "a.zip");
    refused(run(&c, Unpack::Zip, Limits::default()), "../evil");
    assert_clean(&c);

    let bytes = zip_with(|w| {
        w.add_symlink("up", "../../..", opts).unwrap();
    });
    let c = case(&bytes, "a.zip");
    refused(run(&c, Unpack::Zip, Limits::default()), "up");
    assert_clean(&c);

    // Zip bomb: the declared size is honest here, the check on real bytes is what counts.
    let bytes = zip_with(|w| {
        w.start_file(
            "zeros",
            opts.compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        w.write_all(&vec![0u8; 16 << 20]).unwrap();
    });
    let c = case(&bytes, "bomb.zip");
    let limits = Limits {
        max_entry_bytes: 1 << 20,
        ..Limits::default()
    };
    refused(run(&c, Unpack::Zip, limits), "zeros");
    assert!(!c.root.join("zeros").exists());
}

fn deb_with(data_tar: &[u8]) -> Vec<u8> {
    let mut ar = ar::Builder::new(Vec::new());
    for (name, data) in [
        ("debian-binary", &b"2.0\n"[..]),
        ("control.tar", &raw_tar(&[])[..]),
        ("data.tar", data_tar),
    ] {
        let header = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
        ar.append(&header, data).unwrap();
    }
    ar.into_inner().unwrap()
}

#[test]
fn deb_rules() {
    // dpkg semantics: absolute symlink targets are relative to the package root.
    let ok = deb_with(&raw_tar(&[
        ("./usr/bin/", tar::EntryType::Directory, "", b""),
        (
            "./usr/bin/tool",
            tar::EntryType::Regular,
            "",
            b"#!/bin/sh\n",
        ),
        (
            "./usr/bin/alias",
            tar::EntryType::Symlink,
            "/usr/bin/tool",
            b"",
        ),
    ]));
    let c = case(&ok, "ok.deb");
    let stats = run(&c, Unpack::Deb, Limits::default()).unwrap();
    assert_eq!(stats.entries, 3);
    assert_eq!(
        fs::read(c.root.join("usr/bin/tool")).unwrap(),
        b"#!/bin/sh\n"
    );
    assert_eq!(
        fs::read_link(c.root.join("usr/bin/alias")).unwrap(),
        Path::new("/usr/bin/tool")
    );

    let bad = deb_with(&raw_tar(&[(
        "./../../evil",
        tar::EntryType::Regular,
        "",
        b"x",
    )]));
    let c = case(&bad, "bad.deb");
    refused(run(&c, Unpack::Deb, Limits::default()), "./../../evil");
    assert_clean(&c);
}

#[test]
fn strip_components_and_formats() {
    let tar = raw_tar(&[
        ("pkg-1.0/", tar::EntryType::Directory, "", b""),
        ("pkg-1.0/bin/", tar::EntryType::Directory, "", b""),
        ("pkg-1.0/bin/tool", tar::EntryType::Regular, "", b"tool"),
        ("pkg-1.0/README", tar::EntryType::Regular, "", b"read me"),
    ]);
    let xz = {
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let bz = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    for (bytes, kind) in [
        (xz, Unpack::TarXz),
        (zst, Unpack::TarZst),
        (bz, Unpack::TarBz2),
    ] {
        let c = case(&bytes, "pkg");
        unpack(&c.archive, kind, 1, &c.root, &Limits::default(), "pkg").unwrap();
        assert_eq!(fs::read(c.root.join("bin/tool")).unwrap(), b"tool");
        assert_eq!(fs::read(c.root.join("README")).unwrap(), b"read me");
    }
}
