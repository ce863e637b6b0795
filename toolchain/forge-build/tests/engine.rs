//! The build stage on small projects in a temporary directory: the recipe graph (order,
//! cycles, missing inputs), hashes that follow what a recipe means, the engine (built once,
//! then reused from the store; a changed input rebuilds what depends on it and nothing
//! else), the lockfile's recipe section, and `--check` reproducing a layer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use forge_build::engine::{BuildSettings, Silent, build};
use forge_build::plan::{Plan, closure, dependents};
use forge_build::{BuildError, check};
use forge_fetch::FetchOptions;
use forge_project::Project;
use forge_store::Store;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn recipe(name: &str, inputs: &[&str], content: &str) -> String {
    let inputs = inputs
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "name = \"{name}\"\nversion = \"1\"\ninputs = [{inputs}]\n\n[[step]]\nkind = \"file\"\npath = \"/etc/{name}\"\ncontent = \"{content}\"\n"
    )
}

/// base <- mid <- top, and a lone `side` with a path source.
fn project(dir: &Path) {
    write(dir, "recipes/base.toml", &recipe("base", &[], "base"));
    write(dir, "recipes/mid.toml", &recipe("mid", &["base"], "mid"));
    write(dir, "recipes/top.toml", &recipe("top", &["mid"], "top"));
    write(dir, "files/side.txt", "side v1\n");
    write(
        dir,
        "recipes/side.toml",
        "name = \"side\"\nversion = \"1\"\n\n[[source]]\nname = \"text\"\npath = \"files/side.txt\"\n\n[[step]]\nkind = \"file\"\npath = \"/usr/share/side.txt\"\nfrom = \"text\"\n",
    );
}

fn plan(dir: &Path) -> Result<Arc<Plan>, BuildError> {
    let p = Project::open(dir, None, None)?;
    Ok(Arc::new(Plan::resolve(&p, None)?))
}

fn settings() -> BuildSettings {
    BuildSettings {
        jobs: 2,
        fetch: FetchOptions {
            offline: true,
            ..FetchOptions::default()
        },
    }
}

/// What a build made, by recipe, as the lockfile's recipe section takes it.
fn records(built: &[forge_build::engine::Outcome]) -> BTreeMap<String, forge_store::OutputRecord> {
    built
        .iter()
        .map(|o| (o.name.clone(), o.record.clone()))
        .collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn inputs_come_first_and_closures_and_dependents_follow_the_graph() {
    let d = tempfile::tempdir().unwrap();
    project(d.path());
    let plan = plan(d.path()).unwrap();
    let pos = |n: &str| plan.order.iter().position(|x| x == n).unwrap();
    assert!(pos("base") < pos("mid") && pos("mid") < pos("top"));
    assert_eq!(closure(&plan, &["top".into()]), ["base", "mid", "top"]);
    assert_eq!(closure(&plan, &["side".into()]), ["side"]);
    let deps = dependents(&plan, &["base".into()]);
    assert_eq!(deps.into_iter().collect::<Vec<_>>(), ["base", "mid", "top"]);
    // `NAME` and `recipe:NAME` name a recipe; an unknown one gets a suggestion.
    assert_eq!(plan.target("recipe:mid").unwrap(), "mid");
    let e = plan.target("topp").unwrap_err().to_string();
    assert!(e.contains("did you mean `top`?"), "{e}");
}

#[test]
fn cycles_and_missing_inputs_are_named() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "recipes/a.toml", &recipe("a", &["b"], "a"));
    write(d.path(), "recipes/b.toml", &recipe("b", &["a"], "b"));
    let e = plan(d.path()).unwrap_err().to_string();
    assert!(e.contains("recipe cycle: a -> b -> a"), "{e}");
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "recipes/a.toml", &recipe("a", &["bsae"], "a"));
    write(d.path(), "recipes/base.toml", &recipe("base", &[], "b"));
    let e = plan(d.path()).unwrap_err().to_string();
    assert!(e.contains("needs `bsae`, which does not exist"), "{e}");
}

#[test]
fn a_hash_changes_with_what_the_recipe_depends_on() {
    let d = tempfile::tempdir().unwrap();
    project(d.path());
    let before = plan(d.path()).unwrap();
    // The content of an input changes: it and everything above it get new hashes.
    write(
        d.path(),
        "recipes/base.toml",
        &recipe("base", &[], "base v2"),
    );
    let after = plan(d.path()).unwrap();
    for n in ["base", "mid", "top"] {
        assert_ne!(before.recipes[n].hash, after.recipes[n].hash, "{n}");
    }
    assert_eq!(before.recipes["side"].hash, after.recipes["side"].hash);
    // A path source's content is part of its recipe's hash.
    write(d.path(), "files/side.txt", "side v2\n");
    let side = plan(d.path()).unwrap();
    assert_ne!(after.recipes["side"].hash, side.recipes["side"].hash);
}

#[test]
fn the_engine_builds_once_and_rebuilds_only_what_changed() {
    let d = tempfile::tempdir().unwrap();
    project(d.path());
    let store = Arc::new(Store::open(&d.path().join("store"), &|_| {}).unwrap());
    let rt = rt();
    let all: Vec<String> = ["top", "side"].map(String::from).to_vec();
    let run = |plan: &Arc<Plan>| {
        rt.block_on(build(plan, &store, &all, &settings(), Arc::new(Silent)))
            .unwrap()
    };
    let first = run(&plan(d.path()).unwrap());
    assert_eq!(first.len(), 4);
    assert!(first.iter().all(|o| !o.cached), "{first:?}");
    let second = run(&plan(d.path()).unwrap());
    assert!(second.iter().all(|o| o.cached), "{second:?}");
    let layers: BTreeMap<&str, _> = first
        .iter()
        .map(|o| (o.name.as_str(), o.record.layer_sha256))
        .collect();
    for o in &second {
        assert_eq!(layers[o.name.as_str()], o.record.layer_sha256, "{}", o.name);
    }
    write(
        d.path(),
        "recipes/mid.toml",
        &recipe("mid", &["base"], "mid v2"),
    );
    let third = run(&plan(d.path()).unwrap());
    let rebuilt: Vec<&str> = third
        .iter()
        .filter(|o| !o.cached)
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(rebuilt, ["mid", "top"]);
}

#[test]
fn the_recipe_section_carries_built_layers_and_an_update_scope() {
    let d = tempfile::tempdir().unwrap();
    project(d.path());
    let plan = plan(d.path()).unwrap();
    let store = Arc::new(Store::open(&d.path().join("store"), &|_| {}).unwrap());
    let built = rt()
        .block_on(build(
            &plan,
            &store,
            &["mid".into()],
            &settings(),
            Arc::new(Silent),
        ))
        .unwrap();
    let records = records(&built);
    let section = plan.recipes_section(&records, None);
    assert_eq!(section.entries.len(), 4, "every recipe has an entry");
    assert!(section.entries["mid"].layer_sha256.is_some());
    assert!(section.entries["base"].layer_sha256.is_some());
    assert!(section.entries["top"].layer_sha256.is_none(), "not built");
    let scoped = plan.recipes_section(&records, Some(&["base".into()]));
    assert_eq!(
        scoped.scope.unwrap().into_iter().collect::<Vec<_>>(),
        ["base", "mid", "top"]
    );
    assert_eq!(plan.header().source_date_epoch, plan.source_date_epoch);
}

#[test]
fn check_rebuilds_and_reproduces_the_locked_layer() {
    let d = tempfile::tempdir().unwrap();
    project(d.path());
    let plan = plan(d.path()).unwrap();
    let store = Arc::new(Store::open(&d.path().join("store"), &|_| {}).unwrap());
    let rt = rt();
    let built = rt
        .block_on(build(
            &plan,
            &store,
            &["top".into(), "side".into()],
            &settings(),
            Arc::new(Silent),
        ))
        .unwrap();
    let records = records(&built);
    let lock = forge_project::LockChanges {
        header: Some(plan.header()),
        recipes: Some(plan.recipes_section(&records, None)),
        ..Default::default()
    }
    .apply(None)
    .unwrap();
    let results = rt
        .block_on(check::check(
            &plan,
            &store,
            &lock,
            &["top".into(), "side".into()],
            &settings(),
            Arc::new(Silent),
        ))
        .unwrap();
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|r| r.matches()), "{results:?}");
}
