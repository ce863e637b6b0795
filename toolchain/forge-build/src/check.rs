//! `forge build --check`: rebuild in a fresh store and compare with the lockfile, like
//! `nix build --check`. Sources come from the main store (fetched first if needed), so only
//! the build itself is repeated.

use std::fs::File;
use std::sync::Arc;

use forge_fetch::FetchOptions;
use forge_layer::diff::{Difference, diff_layers};
use forge_schema::Sha256Digest;
use forge_schema::lockfile::Lockfile;
use forge_store::Store;

use crate::BuildError;
use crate::engine::{BuildSettings, Observer, build, prepare_sources};
use crate::plan::{Plan, build_closure};

/// The verdict for one output.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub name: String,
    pub locked: Sha256Digest,
    pub rebuilt: Sha256Digest,
    /// Set when the layers differ and the locked layer was available to compare.
    pub difference: Option<Difference>,
    pub seconds: f64,
}

impl CheckResult {
    pub fn matches(&self) -> bool {
        self.locked == self.rebuilt
    }
}

/// Rebuilds `targets` (and their inputs) in a temporary store and compares each layer with
/// the lockfile.
pub async fn check(
    plan: &Arc<Plan>,
    store: &Arc<Store>,
    lockfile: &Lockfile,
    targets: &[String],
    settings: &BuildSettings,
    observer: Arc<dyn Observer>,
) -> Result<Vec<CheckResult>, BuildError> {
    let names = build_closure(plan, targets);
    let mut expected = Vec::new();
    for n in &names {
        let r = &plan.recipes[n];
        let Some(locked) = lockfile.recipes.get(n) else {
            return Err(BuildError::CheckUnlocked(format!(
                "recipe `{n}` is not in the lockfile"
            )));
        };
        if locked.hash != r.hash {
            return Err(BuildError::CheckUnlocked(format!(
                "recipe `{n}` changed since it was locked (locked hash {}, now {})",
                locked.hash, r.hash
            )));
        }
        let Some(layer) = locked.layer_sha256 else {
            return Err(BuildError::CheckUnlocked(format!(
                "recipe `{n}` has no locked layer"
            )));
        };
        expected.push((n.clone(), layer));
    }

    // Sources into the main store (a no-op when they are there already).
    prepare_sources(plan, store, &names, settings, observer.as_ref()).await?;

    // A fresh store inside the main store's tmp/ (same filesystem; `forge gc` cleans it up
    // if we are killed). It takes sources from the main store's blobs, offline.
    let scratch = store.temp_dir()?;
    let fresh = Arc::new(Store::open(scratch.path(), &|_| {})?);
    let fresh_settings = BuildSettings {
        jobs: settings.jobs,
        fetch: FetchOptions {
            upstream: Some(store.clone()),
            offline: true,
            ..settings.fetch.clone()
        },
    };
    let outcomes = build(plan, &fresh, targets, &fresh_settings, observer).await?;

    let mut results = Vec::new();
    for (name, locked) in expected {
        let Some(o) = outcomes.iter().find(|o| o.name == name) else {
            continue;
        };
        let rebuilt = o.record.layer_sha256;
        let difference = if rebuilt != locked && store.has_blob(&locked) {
            let a = File::open(store.blob_path(&locked)).map_err(|source| BuildError::Io {
                path: store.blob_path(&locked),
                source,
            })?;
            let b = File::open(&o.path).map_err(|source| BuildError::Io {
                path: o.path.clone(),
                source,
            })?;
            diff_layers(a, b).map_err(|source| BuildError::Io {
                path: o.path.clone(),
                source,
            })?
        } else {
            None
        };
        results.push(CheckResult {
            name,
            locked,
            rebuilt,
            difference,
            seconds: o.seconds,
        });
    }
    drop(fresh);
    drop(scratch);
    Ok(results)
}
