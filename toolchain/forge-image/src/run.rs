//! The image stage as the CLI drives it: decide each image's package set (reuse the
//! lockfile's, or resolve it against the archive), find the tools, fetch .debs, build the
//! layers, then the images; and say what the lockfile should now hold.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use forge_build::engine::{self, BuildSettings, Observer};
use forge_build::plan::Plan;
use forge_fetch::Fetcher;
use forge_project::ImagesSection;
use forge_schema::image::Image;
use forge_schema::lockfile::{LockedDeb, LockedImage, Lockfile};
use forge_store::Store;

use crate::ImageError;
use crate::base::{self, Archive};
use crate::build::{ImageInputs, ImageOutcome, build_image, fetch_debs, image_layers};
use crate::plan::base_spec_hash;
use crate::tools::Tools;

/// How package sets are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Use the lockfile's set while the image's `[base]` is unchanged; resolve otherwise.
    Reuse,
    /// Resolve again against the archive (`forge lock`).
    Fresh,
    /// Never resolve: a missing or stale set is an error (`--locked`, `--frozen`).
    Locked,
}

/// Settings of the image stage.
#[derive(Clone)]
pub struct ImageOptions {
    pub build: BuildSettings,
    /// Archive root URL (`--debian-mirror`, `FORGE_DEBIAN_MIRROR`, host apt sources).
    pub mirror: Option<String>,
    pub keyring: PathBuf,
    pub resolve: Resolve,
    /// The PATH the image tools run with.
    pub tool_path: std::ffi::OsString,
}

/// What the image stage produced, and the lockfile parts that go with it.
#[derive(Debug, Clone, Default)]
pub struct ImagesResult {
    pub outcomes: Vec<ImageOutcome>,
    pub entries: BTreeMap<String, LockedImage>,
    pub debs: BTreeMap<String, LockedDeb>,
    pub tools: BTreeMap<String, String>,
    pub recipe_outcomes: Vec<engine::Outcome>,
}

impl ImagesResult {
    /// Records an image's lockfile entry and the .debs its package set uses.
    fn record(&mut self, entry: LockedImage, debs: &[LockedDeb]) {
        for d in debs {
            self.debs.insert(d.key(), d.clone());
        }
        self.entries.insert(entry.name.clone(), entry);
    }

    /// The lockfile's image section for a project that defines `defined`: the entries
    /// and .debs of the images resolved or built now, and the tool versions.
    pub fn section(&self, defined: impl IntoIterator<Item = String>) -> ImagesSection {
        ImagesSection {
            defined: defined.into_iter().collect(),
            entries: self.entries.clone(),
            debs: self.debs.clone(),
            tools: self.tools.clone(),
        }
    }
}

fn archive(options: &ImageOptions) -> Result<Archive, ImageError> {
    let mirror = options.mirror.clone().ok_or_else(|| {
        ImageError::Tool(
            "no Debian mirror is configured: pass --debian-mirror URL, set FORGE_DEBIAN_MIRROR, or configure apt's sources on this host".into(),
        )
    })?;
    let bytes = std::fs::read(&options.keyring).map_err(|source| ImageError::Io {
        path: options.keyring.clone(),
        source,
    })?;
    let keyring =
        forge_debian::release::Keyring::from_bytes(&bytes, &options.keyring.display().to_string())?;
    Ok(Archive {
        mirror: mirror.trim_end_matches('/').to_string(),
        keyring,
    })
}

/// Images ready to build: package sets decided, layers built, .debs in the store.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub inputs: Vec<ImageInputs>,
    pub recipe_outcomes: Vec<engine::Outcome>,
    pub tools: Tools,
}

/// Decides each image's package set and computes its inputs (and so its hash), without
/// building anything: what `forge lock` needs.
pub async fn resolve_inputs(
    plan: &Arc<Plan>,
    images: &[&Image],
    lock: &Lockfile,
    store: &Arc<Store>,
    options: &ImageOptions,
    observer: &dyn Observer,
) -> Result<(Vec<ImageInputs>, Tools), ImageError> {
    let tools = Tools::detect(images)?;
    for (tool, version) in &tools.versions {
        if let Some(locked) = lock.tools.get(tool)
            && locked != version
        {
            tracing::warn!(
                "tool `{tool}` is version {version}, the lockfile was made with {locked}: the images will differ"
            );
        }
    }

    // Package sets.
    let mut sets: Vec<(Vec<LockedDeb>, Option<String>)> = Vec::new();
    let mut fetcher = None;
    let mut archive_cache = None;
    // Images with the same [base] get the same resolution: once per run, so they share
    // one installed base even if the archive changes while forge runs.
    let mut resolved_here: BTreeMap<_, (Vec<LockedDeb>, Option<String>)> = BTreeMap::new();
    for image in images {
        let spec = base_spec_hash(&image.base);
        let entry = lock.images.get(&image.name);
        let reusable = entry
            .filter(|e| e.base_hash == spec && e.debs.iter().all(|d| lock.debs.contains_key(d)));
        match (options.resolve, reusable) {
            (Resolve::Reuse | Resolve::Locked, Some(e)) => {
                sets.push((
                    e.debs.iter().map(|d| lock.debs[d].clone()).collect(),
                    e.signed_by.clone(),
                ));
            }
            (Resolve::Locked, None) => {
                return Err(ImageError::Tool(format!(
                    "the package set of image `{}` is not in lockfile.toml (or its [base] changed), and --locked forbids resolving it\nrun `forge lock` and commit lockfile.toml",
                    image.name
                )));
            }
            _ if let Some(set) = resolved_here.get(&spec) => {
                sets.push(set.clone());
            }
            _ => {
                if archive_cache.is_none() {
                    archive_cache = Some(archive(options)?);
                }
                let f = match &fetcher {
                    Some(f) => f,
                    None => fetcher.insert(Fetcher::new(
                        options.build.fetch.clone(),
                        observer.progress(),
                    )?),
                };
                let Some(archive) = archive_cache.as_ref() else {
                    continue;
                };
                observer.phase_started(&format!("image:{}", image.name), "resolve");
                let start = std::time::Instant::now();
                let resolved = base::resolve_base(image, archive, f, store)
                    .await
                    .map_err(|e| e.for_image(&image.name))?;
                observer.phase_finished(
                    &format!("image:{}", image.name),
                    "resolve",
                    start.elapsed().as_secs_f64(),
                    &format!(
                        "{} packages from {} (index signed by {})",
                        resolved.debs.len(),
                        archive.mirror,
                        resolved.signed_by
                    ),
                );
                let set = (resolved.debs, Some(resolved.signed_by));
                resolved_here.insert(spec, set.clone());
                sets.push(set);
            }
        }
    }
    let inputs: Vec<ImageInputs> = images
        .iter()
        .zip(sets)
        .map(|(image, (debs, signed_by))| {
            ImageInputs::new(plan, image, debs, signed_by, &tools.versions, lock)
        })
        .collect::<Result<_, _>>()?;
    Ok((inputs, tools))
}

/// The lockfile entries of `images` without building them: package sets, tool versions and
/// image hashes (an image whose hash is unchanged keeps its recorded output: the lockfile
/// writer decides that).
pub async fn lock_images(
    plan: &Arc<Plan>,
    images: &[&Image],
    lock: &Lockfile,
    store: &Arc<Store>,
    options: &ImageOptions,
    observer: Arc<dyn Observer>,
) -> Result<ImagesResult, ImageError> {
    let (inputs, tools) =
        resolve_inputs(plan, images, lock, store, options, observer.as_ref()).await?;
    let mut result = ImagesResult {
        tools: tools.versions.clone(),
        ..ImagesResult::default()
    };
    for i in inputs {
        result.record(i.locked.clone(), &i.debs);
    }
    Ok(result)
}

/// Everything but the image builds themselves.
pub async fn prepare(
    plan: &Arc<Plan>,
    images: &[&Image],
    lock: &Lockfile,
    store: &Arc<Store>,
    options: &ImageOptions,
    observer: Arc<dyn Observer>,
) -> Result<Prepared, ImageError> {
    let (inputs, tools) =
        resolve_inputs(plan, images, lock, store, options, observer.as_ref()).await?;

    // Layers.
    let mut recipes: Vec<String> = Vec::new();
    for image in images {
        for r in image_layers(plan, image)? {
            if !recipes.contains(&r) {
                recipes.push(r);
            }
        }
    }
    let recipe_outcomes = if recipes.is_empty() {
        Vec::new()
    } else {
        engine::build(plan, store, &recipes, &options.build, observer.clone()).await?
    };

    let refs: Vec<&ImageInputs> = inputs.iter().collect();
    fetch_debs(&refs, store, &options.build, observer.as_ref()).await?;
    Ok(Prepared {
        inputs,
        recipe_outcomes,
        tools,
    })
}

/// Builds `images` (and the recipes they layer).
pub async fn build_images(
    plan: &Arc<Plan>,
    images: &[&Image],
    lock: &Lockfile,
    store: &Arc<Store>,
    options: &ImageOptions,
    observer: Arc<dyn Observer>,
) -> Result<ImagesResult, ImageError> {
    let Prepared {
        inputs,
        recipe_outcomes,
        tools,
    } = prepare(plan, images, lock, store, options, observer.clone()).await?;
    let mut result = ImagesResult {
        tools: tools.versions.clone(),
        recipe_outcomes,
        ..ImagesResult::default()
    };
    // Images build side by side, up to `jobs` at once: the first one to need a base
    // installs it while the others wait on the store's lock for it, then unpack it.
    // Most of an image's work after the base is single-threaded (mke2fs, qemu-img), so
    // this is what uses the machine's other cores.
    let limit = Arc::new(tokio::sync::Semaphore::new(options.build.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, i) in inputs.into_iter().enumerate() {
        let (p, s, o, jobs, limit, path) = (
            plan.clone(),
            store.clone(),
            observer.clone(),
            options.build.jobs,
            limit.clone(),
            options.tool_path.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            tokio::task::spawn_blocking(move || {
                (index, build_image(&i, &p, &s, jobs, &path, o.as_ref()), i)
            })
            .await
        });
    }
    let mut built = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (index, outcome, i) = joined
            .map_err(|e| ImageError::Tool(format!("image build task failed: {e}")))?
            .map_err(|e| ImageError::Tool(format!("image build thread failed: {e}")))?;
        let outcome = outcome.map_err(|e| e.for_image(&i.image.name))?;
        built.push((index, outcome, i));
    }
    // Reported in the images' order, whichever finished first.
    built.sort_by_key(|(index, _, _)| *index);
    for (_, outcome, i) in built {
        let mut entry = i.locked.clone();
        entry.output_sha256 = Some(outcome.record.output_sha256);
        entry.output_size = Some(outcome.record.output_size);
        result.record(entry, &i.debs);
        result.outcomes.push(outcome);
    }
    Ok(result)
}
