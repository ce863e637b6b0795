//! Writing and enforcing `lockfile.toml`.
//!
//! The lockfile always has an entry for every recipe of the project. Hashes and sources
//! come from the plan; layer fields come from a fresh build, or are carried over from the
//! previous entry when the recipe hash did not change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use forge_schema::lockfile::{Change, Lockfile, changes};
use forge_store::{OutputRecord, Store};

use crate::BuildError;
use crate::plan::{Plan, dependents};
use crate::project::read_lockfile;

/// The lockfile the plan and the given outputs call for. With `only`, recipes outside it
/// (and outside what depends on it) keep their previous entries (`forge lock --update`).
pub fn desired(
    plan: &Plan,
    old: Option<&Lockfile>,
    built: &BTreeMap<String, OutputRecord>,
    only: Option<&[String]>,
) -> Lockfile {
    let mut new = match (old, only) {
        (Some(old), Some(_)) => Lockfile {
            source_date_epoch: plan.source_date_epoch,
            builder: plan.builder.clone(),
            ..old.clone()
        },
        _ => plan.empty_lockfile(),
    };
    // Images, their packages and the tools are the image stage's to change; keep them.
    if let Some(old) = old {
        new.images = old.images.clone();
        new.debs = old.debs.clone();
        new.tools = old.tools.clone();
        // Templates are `forge publish`'s to change.
        new.templates = old.templates.clone();
    }
    // Recipes that no longer exist leave the lockfile in any case.
    new.recipes
        .retain(|name, _| plan.recipes.contains_key(name));
    let scope: Option<BTreeSet<String>> = only.map(|o| dependents(plan, o));
    for name in &plan.order {
        let in_scope = scope.as_ref().is_none_or(|s| s.contains(name));
        let previous = old.and_then(|o| o.recipes.get(name));
        if !in_scope && previous.is_some() {
            continue;
        }
        let hash = plan.recipes[name].hash;
        let mut entry = match plan.locked_entry(name, built.get(name)) {
            Some(e) => e,
            None => continue,
        };
        if built.get(name).is_none()
            && let Some(prev) = previous
            && prev.hash == hash
        {
            entry.layer_sha256 = prev.layer_sha256;
            entry.layer_size = prev.layer_size;
            entry.content_sha256 = prev.content_sha256;
        }
        new.recipes.insert(name.clone(), entry);
    }
    new
}

/// Errors unless `new` equals `old` (`--locked`).
pub fn enforce(old: Option<&Lockfile>, new: &Lockfile) -> Result<(), BuildError> {
    let Some(old) = old else {
        return Err(BuildError::NoLockfile);
    };
    let diff: Vec<Change> = changes(old, new, None);
    if diff.is_empty() {
        Ok(())
    } else {
        Err(BuildError::Locked { changes: diff })
    }
}

/// Writes the lockfile if its text changes, holding the project's lock in the store so two
/// forge processes do not interleave their updates. `update` receives the lockfile as it is
/// on disk now (another process may have written it since we read it).
pub fn write(
    store: &Store,
    path: &Path,
    update: impl FnOnce(Option<&Lockfile>) -> Lockfile,
) -> Result<bool, BuildError> {
    let key = format!(
        "project-{}",
        forge_schema::Sha256Digest::of(path.to_string_lossy().as_bytes()).short()
    );
    let _lock = store.lock(&key, &|_| {})?;
    remove_stale_temps(path);
    let current = read_lockfile(path)?;
    let new = update(current.as_ref());
    let text = new.render();
    let unchanged = std::fs::read_to_string(path).is_ok_and(|t| t == text);
    if !unchanged {
        forge_store::fsutil::write_atomic(path, text.as_bytes(), None).map_err(|source| {
            BuildError::Io {
                path: path.to_path_buf(),
                source,
            }
        })?;
    }
    store.add_root(path)?;
    Ok(!unchanged)
}

/// Deletes `.lockfile.toml.*.tmp` files a killed forge left beside the lockfile. Only
/// called with the project lock held, so no other process is writing one.
fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&prefix) && n.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
