//! The platform's own binaries, built from source by the `local` variant's recipes (Go
//! 1.18.2 in forge's build sandbox, modules pinned by the wrapper modules' go.sum), as
//! the real parts of the Kubernetes and Vault tests: what envtest does with downloaded
//! release binaries, done with the binaries forge itself builds.
//!
//! They are built with `--locked` from a copy of the repository's project into one store
//! that every test binary of a run, and every later run, shares (`target/tmp/forge-store`,
//! or `FORGE_TEST_SOURCE_STORE`): outputs are stored by recipe hash, so a store can only
//! hold what the recipes say, and a warm store builds nothing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The store source builds share across test binaries and runs.
pub fn store() -> PathBuf {
    std::env::var_os("FORGE_TEST_SOURCE_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("forge-store"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Unpacked layers by recipe name, each made once per test process.
static LAYERS: OnceLock<Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();

/// The root of recipe `name`'s layer (of the `local` variant), built if the store does
/// not hold it yet, unpacked under cargo's target tmp directory.
pub fn layer(name: &str) -> PathBuf {
    let layers = LAYERS.get_or_init(|| Mutex::new(BTreeMap::new()));
    // One build at a time in this process: parallel tests asking for the same layer wait
    // for the first instead of building it twice (the store would serialise them anyway).
    let mut layers = layers.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = layers.get(name) {
        return p.clone();
    }
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("source-built");
    fs::create_dir_all(&base).unwrap();
    let project = tempfile::tempdir_in(&base).unwrap();
    for d in ["recipes", "images", "variants", "go"] {
        super::copy_dir(&repo().join(d), &project.path().join(d));
    }
    fs::copy(
        repo().join("lockfile.toml"),
        project.path().join("lockfile.toml"),
    )
    .unwrap();
    let t = std::time::Instant::now();
    let out = super::ok(
        super::forge_with_store(&store())
            .args(["--variant", "local", "build", "--locked", "--json"])
            .arg(format!("recipe:{name}"))
            .current_dir(project.path()),
    );
    eprintln!(
        "recipe {name} (local variant): built or found in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let report = super::json(&out);
    let target = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no target {name} in {report}"));
    let blob = PathBuf::from(target["output"].as_str().unwrap());
    let hash = target["hash"].as_str().unwrap();
    let root = base.join(format!("{name}-{hash}"));
    if !root.join(".complete").exists() {
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "zstd -dc '{}' | tar -x --no-same-owner -C '{}'",
                blob.display(),
                root.display()
            ))
            .status()
            .unwrap();
        assert!(status.success(), "unpacking the layer of {name} failed");
        fs::write(root.join(".complete"), hash).unwrap();
    }
    layers.insert(name.to_string(), root.clone());
    root
}

/// A binary of recipe `recipe`'s layer, e.g. `bin("etcd", "usr/local/bin/etcdctl")`.
pub fn bin(recipe: &str, path: &str) -> PathBuf {
    let p = layer(recipe).join(path);
    assert!(
        p.is_file(),
        "{} is not in the layer of {recipe}",
        p.display()
    );
    p
}
