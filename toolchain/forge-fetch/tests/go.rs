//! Go module files fetched and verified by their go.sum pins: against the real Go module
//! proxy of this machine (`go env GOPROXY`), and against a loopback server for the cases
//! a real proxy does not show (a file that does not match its pin).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;

use forge_fetch::go::{GoFile, GoRequest, gomod_h1, zip_h1};
use forge_fetch::{FetchError, FetchOptions, Fetcher, NoProgress};
use forge_store::Store;
use forge_test_support::http::FileServer;

/// go.sum lines of rsc.io/quote v1.5.2, as every go.sum that needs it has them.
const QUOTE_ZIP_H1: &str = "h1:w5fcysjrx7yqtD/aO+QwRjYZOKnaM9Uh2b40tElTs3Y=";
const QUOTE_MOD_H1: &str = "h1:LzX7hefJvL54yjefDEDHNONDjII0t9xZLPXsUe+TKr0=";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn fetcher(opts: FetchOptions) -> Fetcher {
    Fetcher::new(opts, Arc::new(NoProgress)).unwrap()
}

fn store(dir: &std::path::Path) -> Arc<Store> {
    Arc::new(Store::open(dir, &|_| {}).unwrap())
}

fn proxy() -> String {
    forge_test_support::go::proxy()
}

fn req(file: GoFile, h1: &str) -> GoRequest {
    GoRequest {
        path: "rsc.io/quote".into(),
        version: "v1.5.2".into(),
        file,
        h1: h1.into(),
    }
}

#[test]
fn real_module_files_match_their_go_sum_pins_and_are_found_again_offline() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let proxy = proxy();
    let f = fetcher(FetchOptions::default());
    let zip = rt()
        .block_on(f.fetch_go(&s, Some(&proxy), &req(GoFile::Zip, QUOTE_ZIP_H1)))
        .unwrap();
    assert_eq!(zip_h1(&zip.path).unwrap(), QUOTE_ZIP_H1);
    let module = rt()
        .block_on(f.fetch_go(&s, Some(&proxy), &req(GoFile::Mod, QUOTE_MOD_H1)))
        .unwrap();
    assert_eq!(
        gomod_h1(&std::fs::read(&module.path).unwrap()),
        QUOTE_MOD_H1
    );
    // Offline, the store finds both by their pins.
    let off = fetcher(FetchOptions {
        offline: true,
        ..FetchOptions::default()
    });
    let again = rt()
        .block_on(off.fetch_go(&s, None, &req(GoFile::Zip, QUOTE_ZIP_H1)))
        .unwrap();
    assert_eq!(again.sha256, zip.sha256);

    // A module cache (`$GOMODCACHE/cache/download`) serves as a source directory.
    let cache = d.path().join("modcache");
    let at = cache.join("cache/download/rsc.io/quote/@v/v1.5.2.zip");
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::copy(&zip.path, &at).unwrap();
    let fresh = store(&d.path().join("fresh"));
    let from_dir = fetcher(FetchOptions {
        offline: true,
        source_dirs: vec![cache],
        ..FetchOptions::default()
    });
    let got = rt()
        .block_on(from_dir.fetch_go(&fresh, None, &req(GoFile::Zip, QUOTE_ZIP_H1)))
        .unwrap();
    assert_eq!(got.sha256, zip.sha256);
}

/// A module zip made here: `example.com/m@v1.0.0/{go.mod,m.go}`.
fn module_zip(body: &str) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    w.start_file("example.com/m@v1.0.0/go.mod", o).unwrap();
    w.write_all(b"module example.com/m\n").unwrap();
    w.start_file("example.com/m@v1.0.0/m.go", o).unwrap();
    w.write_all(body.as_bytes()).unwrap();
    w.finish().unwrap().into_inner()
}

#[test]
fn a_file_that_does_not_match_its_pin_names_both_hashes_and_stores_nothing() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let server = FileServer::start().unwrap();
    let good = module_zip("package m\n");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.zip"), &good).unwrap();
    let pin = zip_h1(&dir.path().join("good.zip")).unwrap();
    // The proxy serves another content under the same name.
    server.put(
        "example.com/m/@v/v1.0.0.zip",
        module_zip("package m // changed\n"),
    );
    let proxy = server.url("");
    let r = GoRequest {
        path: "example.com/m".into(),
        version: "v1.0.0".into(),
        file: GoFile::Zip,
        h1: pin.clone(),
    };
    let f = fetcher(FetchOptions::default());
    let e = rt().block_on(f.fetch_go(&s, Some(&proxy), &r)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, FetchError::GoMismatch { .. }), "{msg}");
    assert!(msg.contains(&format!("expected: {pin}")), "{msg}");
    assert!(msg.contains("nothing was stored"), "{msg}");
    let blobs = std::fs::read_dir(d.path().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "a file that failed its pin reached the store");

    // Offline, a copy in a source directory that fails its pin is reported as such.
    let cache = dir.path().join("proxy");
    std::fs::create_dir_all(cache.join("example.com/m/@v")).unwrap();
    std::fs::write(
        cache.join("example.com/m/@v/v1.0.0.zip"),
        module_zip("package m // local\n"),
    )
    .unwrap();
    let off = fetcher(FetchOptions {
        offline: true,
        source_dirs: vec![cache],
        ..FetchOptions::default()
    });
    let e = rt().block_on(off.fetch_go(&s, None, &r)).unwrap_err();
    assert!(matches!(e, FetchError::GoMismatch { .. }), "{e}");

    // The right content is accepted.
    server.put("example.com/m/@v/v1.0.0.zip", good);
    rt().block_on(f.fetch_go(&s, Some(&proxy), &r)).unwrap();

    // Module paths with capitals are asked for escaped.
    let upper = GoRequest {
        path: "example.com/Big".into(),
        ..r
    };
    assert_eq!(
        upper.proxy_path().unwrap(),
        "example.com/!big/@v/v1.0.0.zip"
    );
}
