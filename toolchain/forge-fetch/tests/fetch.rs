//! Fetching against a real HTTP server on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use forge_fetch::{FetchError, FetchOptions, FetchRequest, Fetcher, NoProgress, Origin};
use forge_schema::{Integrity, Sha256Digest, Sha512Digest};
use forge_store::Store;
use forge_test_support::http::{Fault, FileServer};

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    server: FileServer,
    dir: std::path::PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("store"), &|_| {}).unwrap());
    let path = dir.path().to_path_buf();
    Env {
        _dir: dir,
        store,
        server: FileServer::start().unwrap(),
        dir: path,
    }
}

fn fetcher(opts: FetchOptions) -> Fetcher {
    Fetcher::new(
        FetchOptions {
            backoff: Duration::from_millis(10),
            ..opts
        },
        Arc::new(NoProgress),
    )
    .unwrap()
}

fn req(name: &str, urls: Vec<String>, bytes: &[u8]) -> FetchRequest {
    FetchRequest::sha256(
        name.into(),
        urls,
        Sha256Digest::of(bytes),
        format!("{name}.bin"),
    )
}

fn req512(name: &str, urls: Vec<String>, bytes: &[u8]) -> FetchRequest {
    FetchRequest {
        integrity: Integrity::Sha512(Sha512Digest::of(bytes)),
        ..req(name, urls, bytes)
    }
}

fn sha(r: &FetchRequest) -> Sha256Digest {
    r.integrity.sha256().unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn tmp_is_empty(e: &Env) -> bool {
    fs::read_dir(e.store.root().join("tmp")).unwrap().count() == 0
}

#[test]
fn downloads_and_verifies() {
    let e = env();
    let bytes = data(300_000, 1);
    e.server.put("a.bin", bytes.clone());
    let r = req("a", vec![e.server.url("a.bin")], &bytes);
    let got = rt()
        .block_on(fetcher(FetchOptions::default()).fetch(&e.store, &r))
        .unwrap();
    assert_eq!(got.origin, Origin::Url(e.server.url("a.bin")));
    assert_eq!(fs::read(&got.path).unwrap(), bytes);
    assert!(tmp_is_empty(&e));
    // Second time: from the store, no request.
    let again = rt()
        .block_on(fetcher(FetchOptions::default()).fetch(&e.store, &r))
        .unwrap();
    assert_eq!(again.origin, Origin::Store);
    assert_eq!(e.server.seen().len(), 1);
}

#[test]
fn falls_back_to_next_mirror() {
    let e = env();
    let bytes = data(1000, 2);
    e.server.put("good/a.bin", bytes.clone());
    let r = req(
        "a",
        vec![e.server.url("missing/a.bin"), e.server.url("good/a.bin")],
        &bytes,
    );
    let got = rt()
        .block_on(fetcher(FetchOptions::default()).fetch(&e.store, &r))
        .unwrap();
    assert_eq!(got.origin, Origin::Url(e.server.url("good/a.bin")));
    let statuses: Vec<u16> = e.server.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [404, 200]);
}

#[test]
fn retries_transient_errors() {
    let e = env();
    let bytes = data(1000, 3);
    e.server.put("a.bin", bytes.clone());
    e.server.fault("a.bin", Fault::Status(503));
    e.server.fault("a.bin", Fault::RetryAfter(429, 0));
    e.server.fault("a.bin", Fault::Status(500));
    let r = req("a", vec![e.server.url("a.bin")], &bytes);
    rt().block_on(fetcher(FetchOptions::default()).fetch(&e.store, &r))
        .unwrap();
    let statuses: Vec<u16> = e.server.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [503, 429, 500, 200]);
}

#[test]
fn gives_up_after_retries() {
    let e = env();
    let bytes = data(10, 4);
    e.server.put("a.bin", bytes.clone());
    for _ in 0..3 {
        e.server.fault("a.bin", Fault::Status(502));
    }
    let r = req("a", vec![e.server.url("a.bin")], &bytes);
    let err = rt()
        .block_on(
            fetcher(FetchOptions {
                retries: 2,
                ..FetchOptions::default()
            })
            .fetch(&e.store, &r),
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 502") && msg.contains("gave up after 3 attempts"),
        "{msg}"
    );
    assert!(!e.store.has_blob(&sha(&r)));
}

#[test]
fn resumes_after_dropped_connection() {
    let e = env();
    let bytes = data(500_000, 5);
    e.server.put("a.bin", bytes.clone());
    e.server.fault("a.bin", Fault::CutAfter(123_456));
    let r = req("a", vec![e.server.url("a.bin")], &bytes);
    let got = rt()
        .block_on(fetcher(FetchOptions::default()).fetch(&e.store, &r))
        .unwrap();
    assert_eq!(fs::read(&got.path).unwrap(), bytes);
    let seen = e.server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let range = seen[1].range.clone().unwrap_or_default();
    let start: u64 = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(start > 0 && start <= 123_456, "{range}");
    assert_eq!(seen[1].status, 206);
}

#[test]
fn restarts_when_server_ignores_range() {
    let e = env();
    let bytes = data(200_000, 6);
    e.server.put("a.bin", bytes.clone());
    e.server.fault("a.bin", Fault::CutAfter(50_000));
    e.server.fault("a.bin", Fault::IgnoreRange);
    let r = req("a", vec![e.server.url("a.bin")], &bytes);
    let got = rt()
        .block_on(fetcher(FetchOptions::default()).fetch(&e.store, &r))
        .unwrap();
    assert_eq!(fs::read(&got.path).unwrap(), bytes);
}

#[test]
fn resumes_a_part_left_by_a_killed_run() {
    let e = env();
    let bytes = data(100_000, 7);
    e.server.put("a.bin", bytes.clone());
    let r = req("a", vec![e.server.url("a.bin")], &bytes);
    let part = e
        .store
        .root()
        .join("tmp")
        .join(format!("fetch-{}.part", sha(&r)));
    fs::write(&part, &bytes[..40_000]).unwrap();
    let got = rt()
        .block_on(fetcher(FetchOptions::default()).fetch(&e.store, &r))
        .unwrap();
    assert_eq!(fs::read(&got.path).unwrap(), bytes);
    assert_eq!(e.server.seen()[0].range.as_deref(), Some("bytes=40000-"));
    assert!(!part.exists());
}

#[test]
fn hash_mismatch_names_both_hashes_and_stores_nothing() {
    let e = env();
    let served = data(1000, 8);
    let pinned = data(1000, 9);
    e.server.put("a.bin", served.clone());
    let r = req("hello/a", vec![e.server.url("a.bin")], &pinned);
    let err = rt()
        .block_on(fetcher(FetchOptions::default()).fetch(&e.store, &r))
        .unwrap_err();
    assert!(matches!(err, FetchError::HashMismatch { .. }));
    let msg = err.to_string();
    assert!(msg.contains("hello/a"), "{msg}");
    assert!(msg.contains(&e.server.url("a.bin")), "{msg}");
    assert!(msg.contains(&Sha256Digest::of(&pinned).to_hex()), "{msg}");
    assert!(msg.contains(&Sha256Digest::of(&served).to_hex()), "{msg}");
    assert!(!e.store.has_blob(&sha(&r)));
    assert!(!e.store.has_blob(&Sha256Digest::of(&served)));
    assert!(tmp_is_empty(&e));
}

#[test]
fn offline_lists_every_missing_source_and_sends_nothing() {
    let e = env();
    let a = data(10, 10);
    let b = data(10, 11);
    e.server.put("a.bin", a.clone());
    let reqs = vec![
        req("r/a", vec![e.server.url("a.bin")], &a),
        req("r/b", vec![e.server.url("b.bin")], &b),
    ];
    let err = rt()
        .block_on(
            fetcher(FetchOptions {
                offline: true,
                ..FetchOptions::default()
            })
            .fetch_all(&e.store, &reqs),
        )
        .unwrap_err();
    let FetchError::Offline { missing } = &err else {
        panic!("{err}")
    };
    assert_eq!(missing.len(), 2);
    let msg = err.to_string();
    assert!(msg.contains("r/a") && msg.contains("r/b"), "{msg}");
    assert!(e.server.seen().is_empty());
}

#[test]
fn source_dirs_by_name_and_by_hash() {
    let e = env();
    let a = data(100, 12);
    let b = data(100, 13);
    let c = data(100, 14);
    let sd = e.dir.join("sources");
    fs::create_dir_all(sd.join("sha256")).unwrap();
    fs::write(sd.join("a.bin"), &a).unwrap();
    fs::write(sd.join("sha256").join(Sha256Digest::of(&b).to_hex()), &b).unwrap();
    // A file with the right name but the wrong content is skipped, not trusted.
    fs::write(sd.join("c.bin"), b"stale").unwrap();
    e.server.put("c.bin", c.clone());
    let reqs = vec![
        req("a", vec!["https://unreachable.invalid/a.bin".into()], &a),
        req("b", vec![], &b),
        req("c", vec![e.server.url("c.bin")], &c),
    ];
    let got = rt()
        .block_on(
            fetcher(FetchOptions {
                source_dirs: vec![sd.clone()],
                ..FetchOptions::default()
            })
            .fetch_all(&e.store, &reqs),
        )
        .unwrap();
    assert_eq!(got[0].origin, Origin::SourceDir(sd.join("a.bin")));
    assert!(matches!(got[1].origin, Origin::SourceDir(_)));
    assert_eq!(got[2].origin, Origin::Url(e.server.url("c.bin")));
}

#[test]
fn parallel_fetch_dedupes() {
    let e = env();
    let mut reqs = Vec::new();
    for i in 0..12u8 {
        let bytes = data(10_000 + usize::from(i), i);
        let path = format!("f{i}.bin");
        e.server.put(&path, bytes.clone());
        reqs.push(req(&format!("f{i}"), vec![e.server.url(&path)], &bytes));
    }
    reqs.push(reqs[0].clone());
    let got = rt()
        .block_on(
            fetcher(FetchOptions {
                parallel: 4,
                ..FetchOptions::default()
            })
            .fetch_all(&e.store, &reqs),
        )
        .unwrap();
    assert_eq!(got.len(), 13);
    assert_eq!(e.server.seen().len(), 12);
}

#[test]
fn sha512_pins_are_verified_and_found_again() {
    let e = env();
    let bytes = data(200_000, 9);
    e.server.put("k.tgz", bytes.clone());
    e.server.fault("k.tgz", Fault::CutAfter(70_000));
    let r = req512("k", vec![e.server.url("k.tgz")], &bytes);
    let f = fetcher(FetchOptions::default());
    let got = rt().block_on(f.fetch(&e.store, &r)).unwrap();
    // Stored under its SHA-256, resumed after the cut with both hashes carried over.
    assert_eq!(got.sha256, Sha256Digest::of(&bytes));
    assert_eq!(fs::read(&got.path).unwrap(), bytes);
    assert_eq!(
        forge_fetch::stored_blob(&e.store, &r.integrity),
        Some(Sha256Digest::of(&bytes))
    );
    // A second fetch (offline) finds it through the source record.
    let offline = fetcher(FetchOptions {
        offline: true,
        ..FetchOptions::default()
    });
    let again = rt().block_on(offline.fetch(&e.store, &r)).unwrap();
    assert_eq!(again.origin, Origin::Store);
    assert!(tmp_is_empty(&e));
}

#[test]
fn sha512_mismatch_names_both_sha512s() {
    let e = env();
    e.server.put("k.tgz", b"evil".to_vec());
    let r = req512("k", vec![e.server.url("k.tgz")], b"good");
    let err = rt()
        .block_on(fetcher(FetchOptions::default()).fetch(&e.store, &r))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("sha512 mismatch"), "{msg}");
    assert!(msg.contains(&Sha512Digest::of(b"good").to_hex()), "{msg}");
    assert!(msg.contains(&Sha512Digest::of(b"evil").to_hex()), "{msg}");
    assert!(!e.store.has_blob(&Sha256Digest::of(b"evil")));
    assert!(tmp_is_empty(&e));
}

#[test]
fn sha512_from_a_source_dir_by_name() {
    let e = env();
    let bytes = data(5000, 3);
    let dir = e.dir.join("srcdir");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("k.bin"), &bytes).unwrap();
    // A file with the right name but wrong content is skipped.
    let other = e.dir.join("other");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("k.bin"), b"wrong").unwrap();
    let r = req512("k", vec![], &bytes);
    let f = fetcher(FetchOptions {
        source_dirs: vec![other, dir.clone()],
        offline: true,
        ..FetchOptions::default()
    });
    let got = rt().block_on(f.fetch(&e.store, &r)).unwrap();
    assert_eq!(got.origin, Origin::SourceDir(dir.join("k.bin")));
    assert_eq!(got.sha256, Sha256Digest::of(&bytes));
}
