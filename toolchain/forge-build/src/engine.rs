//! The scheduler: fetch what is missing, then build every needed recipe once, in
//! dependency order, `jobs` at a time, reusing outputs already in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use forge_fetch::go::{GoFile, GoRequest};
use forge_fetch::oci::ImageRequest;
use forge_fetch::{FetchError, FetchOptions, FetchRequest, Fetcher, Progress};
use forge_schema::recipe::SourceKind;
use forge_store::{OutputRecord, Store};

use crate::BuildError;
use crate::plan::{PathContent, Plan, build_closure};
use crate::steps;

/// What the CLI hears while a build runs.
pub trait Observer: Send + Sync {
    /// Progress of downloads.
    fn progress(&self) -> Arc<dyn Progress>;
    /// A recipe's build starts (not called for cached outputs).
    fn started(&self, name: &str, version: &str);
    /// A recipe is done.
    fn finished(&self, name: &str, cached: bool, seconds: f64);
    /// Something the user should know while waiting (locks held by other processes).
    fn note(&self, message: &str);
    /// A phase of a longer build starts (`image`, `base`, ...).
    fn phase_started(&self, _subject: &str, _phase: &str) {}
    /// A phase is done, after `seconds`, with a short summary (sizes).
    fn phase_finished(&self, _subject: &str, _phase: &str, _seconds: f64, _detail: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;

impl Observer for Silent {
    fn progress(&self) -> Arc<dyn Progress> {
        Arc::new(forge_fetch::NoProgress)
    }
    fn started(&self, _: &str, _: &str) {}
    fn finished(&self, _: &str, _: bool, _: f64) {}
    fn note(&self, _: &str) {}
}

/// Settings of a build.
#[derive(Clone)]
pub struct BuildSettings {
    /// Recipes built at once; also zstd workers per layer.
    pub jobs: usize,
    pub fetch: FetchOptions,
}

/// One built (or reused) output.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub record: OutputRecord,
    pub path: PathBuf,
    pub cached: bool,
    pub seconds: f64,
}

/// What recipes need from outside the project.
#[derive(Default)]
struct Requests {
    files: Vec<FetchRequest>,
    images: Vec<ImageRequest>,
    modules: Vec<GoRequest>,
}

/// Sources the given recipes need from outside the project: files, images, Go modules.
fn fetch_requests(plan: &Plan, names: &[String]) -> Requests {
    let mut out = Requests::default();
    for n in names {
        let r = &plan.recipes[n];
        for s in &r.sources {
            let name = format!("{}/{}", r.recipe.name, s.source.name);
            match &s.source.kind {
                SourceKind::Url { urls, integrity } => out.files.push(FetchRequest {
                    name,
                    urls: urls.clone(),
                    integrity: *integrity,
                    file_name: s.source.file_name.clone(),
                    accept: None,
                }),
                SourceKind::Oci(o) => out.images.push(ImageRequest {
                    name,
                    image: o.image.clone(),
                    mirrors: o.mirrors.clone(),
                    digest: o.digest,
                    platform: o.platform.clone(),
                }),
                SourceKind::GoModule(g) => out.modules.push(go_request(g)),
                SourceKind::GoSum { .. } => out.modules.extend(s.go_sum.iter().cloned()),
                SourceKind::Path { .. } => {}
            }
        }
    }
    out
}

/// The request for a Go module source's zip.
pub fn go_request(g: &forge_schema::recipe::GoModuleSource) -> GoRequest {
    GoRequest {
        path: g.path.clone(),
        version: g.version.clone(),
        file: GoFile::Zip,
        h1: g.h1.clone(),
    }
}

/// Copies path sources into the store (files as they are, directories as tars).
fn store_path_sources(plan: &Plan, store: &Store, names: &[String]) -> Result<(), BuildError> {
    for n in names {
        for s in &plan.recipes[n].sources {
            let (Some((abs, content)), Some(sha256)) = (&s.local, s.sha256) else {
                continue;
            };
            if store.has_blob(&sha256) {
                continue;
            }
            let changed = || BuildError::Changed {
                path: abs.clone(),
                name: s.source.name.clone(),
            };
            match content {
                PathContent::File => match store.add_file(abs, &sha256) {
                    Err(forge_store::StoreError::HashMismatch { .. }) => return Err(changed()),
                    other => {
                        other?;
                    }
                },
                PathContent::Directory => {
                    let tree = forge_layer::directory_tree(abs).map_err(|e| BuildError::Layer {
                        recipe: n.clone(),
                        source: e,
                    })?;
                    let mut tmp = store.temp_file()?;
                    let (sha, _, _) = tree
                        .write_tar(BufWriter::new(tmp.as_file_mut()), 0)
                        .map_err(|e| BuildError::Layer {
                            recipe: n.clone(),
                            source: e,
                        })?;
                    if sha != sha256 {
                        return Err(changed());
                    }
                    store.commit_blob(tmp, &sha)?;
                }
            }
        }
    }
    Ok(())
}

/// Builds one recipe into the store (under its output lock) unless another process
/// already did. Returns the record and whether it was already there.
fn build_one(
    plan: &Plan,
    store: &Store,
    name: &str,
    jobs: usize,
    observer: &dyn Observer,
) -> Result<(OutputRecord, bool), BuildError> {
    let r = &plan.recipes[name];
    let notice = |_: &str| {
        observer.note(&format!(
            "waiting for another forge process building `{name}`"
        ))
    };
    let _lock = store.lock(&format!("output-{}", r.hash), &notice)?;
    if let Some(rec) = store.output(&r.hash)? {
        return Ok((rec, true));
    }
    observer.started(name, &r.recipe.version);
    let work = store.temp_dir()?;
    let tree = steps::assemble(plan, name, store, work.path(), jobs)?;
    let mut tmp = store.temp_file()?;
    let packed = {
        let file: &mut File = tmp.as_file_mut();
        tree.pack(
            file,
            plan.source_date_epoch,
            u32::try_from(jobs.max(1)).unwrap_or(1),
        )
        .map_err(|e| BuildError::Layer {
            recipe: name.to_string(),
            source: e,
        })?
    };
    store.commit_blob_unchecked(tmp, &packed.layer_sha256)?;
    let record = OutputRecord {
        recipe: name.to_string(),
        version: r.recipe.version.clone(),
        recipe_hash: r.hash,
        layer_sha256: packed.layer_sha256,
        layer_size: packed.layer_size,
        content_sha256: packed.content_sha256,
    };
    store.commit_output(&record)?;
    Ok((record, false))
}

/// Puts every source of `names` into the store: path sources copied, URL sources fetched.
pub async fn prepare_sources(
    plan: &Arc<Plan>,
    store: &Arc<Store>,
    names: &[String],
    settings: &BuildSettings,
    observer: &dyn Observer,
) -> Result<(), BuildError> {
    {
        let (p, s, t) = (plan.clone(), store.clone(), names.to_vec());
        tokio::task::spawn_blocking(move || store_path_sources(&p, &s, &t))
            .await
            .map_err(|e| BuildError::Internal(e.to_string()))??;
    }
    let Requests {
        files,
        images,
        modules,
    } = fetch_requests(plan, names);
    if files.is_empty() && images.is_empty() && modules.is_empty() {
        return Ok(());
    }
    let fetcher = Fetcher::new(settings.fetch.clone(), observer.progress())?;
    // Offline, every missing file and image is reported together.
    let mut missing = Vec::new();
    let mut keep = |r: Result<(), FetchError>| match r {
        Err(FetchError::Offline { missing: m }) => {
            missing.extend(m);
            Ok(())
        }
        other => other,
    };
    keep(fetcher.fetch_all(store, &files).await.map(|_| ()))?;
    for i in &images {
        keep(fetcher.fetch_image(store, i).await.map(|_| ()))?;
    }
    let proxy = settings.fetch.go_proxy.as_deref();
    for m in &modules {
        keep(fetcher.fetch_go(store, proxy, m).await.map(|_| ()))?;
    }
    if !missing.is_empty() {
        return Err(FetchError::Offline { missing }.into());
    }
    Ok(())
}

/// Builds `targets` (and their inputs). Outcomes come in build order.
pub async fn build(
    plan: &Arc<Plan>,
    store: &Arc<Store>,
    targets: &[String],
    settings: &BuildSettings,
    observer: Arc<dyn Observer>,
) -> Result<Vec<Outcome>, BuildError> {
    let names = build_closure(plan, targets);
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut todo: Vec<String> = Vec::new();
    for n in &names {
        let hash = plan.recipes[n].hash;
        match store.output(&hash)? {
            Some(record) => {
                outcomes.insert(
                    n.clone(),
                    Outcome {
                        name: n.clone(),
                        path: store.blob_path(&record.layer_sha256),
                        record,
                        cached: true,
                        seconds: 0.0,
                    },
                );
                observer.finished(n, true, 0.0);
            }
            None => todo.push(n.clone()),
        }
    }
    if todo.is_empty() {
        return Ok(names.iter().filter_map(|n| outcomes.remove(n)).collect());
    }

    // Inputs first: every source of every recipe to build, fetched in parallel.
    prepare_sources(plan, store, &todo, settings, observer.as_ref()).await?;

    // Then the builds, as their inputs complete.
    let todo_set: BTreeSet<String> = todo.iter().cloned().collect();
    let mut waiting: BTreeMap<String, usize> = todo
        .iter()
        .map(|n| {
            let deps = plan.recipes[n]
                .recipe
                .build_deps()
                .filter(|i| todo_set.contains(*i))
                .count();
            (n.clone(), deps)
        })
        .collect();
    let jobs = settings.jobs.max(1);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut running = tokio::task::JoinSet::new();
    let mut first_error: Option<BuildError> = None;
    loop {
        if first_error.is_none() {
            let ready: Vec<String> = waiting
                .iter()
                .filter(|(_, d)| **d == 0)
                .map(|(n, _)| n.clone())
                .collect();
            for n in ready {
                waiting.remove(&n);
                let (p, s, o, sem) = (
                    plan.clone(),
                    store.clone(),
                    observer.clone(),
                    semaphore.clone(),
                );
                running.spawn(async move {
                    let permit = sem.acquire_owned().await;
                    let name = n.clone();
                    let result = tokio::task::spawn_blocking(move || {
                        let start = Instant::now();
                        let r = build_one(&p, &s, &name, jobs, o.as_ref());
                        (r, start.elapsed().as_secs_f64())
                    })
                    .await;
                    drop(permit);
                    (n, result)
                });
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (name, result) = joined.map_err(|e| BuildError::Internal(e.to_string()))?;
        match result {
            Ok((Ok((record, cached)), seconds)) => {
                observer.finished(&name, cached, seconds);
                for (n, d) in waiting.iter_mut() {
                    if plan.recipes[n].recipe.build_deps().any(|d| *d == name) {
                        *d -= 1;
                    }
                }
                outcomes.insert(
                    name.clone(),
                    Outcome {
                        name,
                        path: store.blob_path(&record.layer_sha256),
                        record,
                        cached,
                        seconds,
                    },
                );
            }
            Ok((Err(e), _)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(BuildError::Internal(e.to_string()));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(names.iter().filter_map(|n| outcomes.remove(n)).collect())
}
