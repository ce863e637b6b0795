//! Building one image, phase by phase: fetch, base, layers, filesystem, disk, convert.
//! Outputs go to the store under the image hash; the base root file system is cached
//! under its own hash, so changing a layer or a setting does not reinstall packages.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use forge_build::engine::{BuildSettings, Observer};
use forge_build::plan::{Plan, closure};
use forge_fetch::Fetcher;
use forge_schema::Sha256Digest;
use forge_schema::image::{Format, Image};
use forge_schema::lockfile::{LockedDeb, LockedImage, Lockfile};
use forge_store::{BaseRecord, ImageRecord, Store};

use crate::ImageError;
use crate::compose::Rootfs;
use crate::disk::{self, Layout};
use crate::plan::{Ids, image_hash};
use crate::tools::ToolEnv;
use crate::{base, settings};

/// One phase's time and what it made.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    pub seconds: f64,
    pub detail: String,
}

/// A built (or reused) image.
#[derive(Debug, Clone)]
pub struct ImageOutcome {
    pub name: String,
    pub hash: Sha256Digest,
    pub record: ImageRecord,
    pub path: PathBuf,
    pub cached: bool,
    pub phases: Vec<Phase>,
    pub seconds: f64,
}

/// Everything one image is made from, resolved.
#[derive(Debug, Clone)]
pub struct ImageInputs {
    pub image: Image,
    /// Recipes in the order their layers apply: each listed layer after its inputs.
    pub layers: Vec<String>,
    pub locked: LockedImage,
    pub debs: Vec<LockedDeb>,
    pub hash: Sha256Digest,
    pub base_hash: Sha256Digest,
}

/// The recipes of an image, in application order.
pub fn image_layers(plan: &Plan, image: &Image) -> Result<Vec<String>, ImageError> {
    let mut out: Vec<String> = Vec::new();
    for (name, span) in &image.layer_spans {
        if !plan.recipes.contains_key(name) {
            let hint =
                forge_schema::diag::did_you_mean(name, plan.recipes.keys().map(String::as_str))
                    .map(|b| format!("did you mean `{b}`?"))
                    .unwrap_or_else(|| format!("add `recipes/{name}.toml`"));
            return Err(ImageError::Build(forge_build::BuildError::Diagnostics(
                image
                    .file
                    .error(
                        span.clone(),
                        format!(
                            "image `{}` layers recipe `{name}`, which does not exist",
                            image.name
                        ),
                    )
                    .with_help(hint)
                    .into(),
            )));
        }
        for r in closure(plan, std::slice::from_ref(name)) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

impl ImageInputs {
    /// Puts an image together with its locked package set.
    pub fn new(
        plan: &Plan,
        image: &Image,
        debs: Vec<LockedDeb>,
        signed_by: Option<String>,
        tools: &BTreeMap<String, String>,
        lock: &Lockfile,
    ) -> Result<Self, ImageError> {
        let layers = image_layers(plan, image)?;
        let layer_hashes: Vec<(String, Sha256Digest)> = layers
            .iter()
            .map(|l| (l.clone(), plan.recipes[l].hash))
            .collect();
        let deb_hashes: Vec<(String, Sha256Digest)> =
            debs.iter().map(|d| (d.key(), d.sha256)).collect();
        let hash = image_hash(
            image,
            &layer_hashes,
            &deb_hashes,
            tools,
            plan.source_date_epoch,
        );
        let mut keys: Vec<String> = debs.iter().map(LockedDeb::key).collect();
        keys.sort();
        let locked = LockedImage {
            name: image.name.clone(),
            hash,
            base_hash: crate::plan::base_spec_hash(&image.base),
            signed_by,
            suite: image.base.suite.clone(),
            architecture: image.base.architecture.clone(),
            layers: layers.clone(),
            boot_modes: image
                .disk
                .boot
                .iter()
                .map(|b| b.as_str().to_string())
                .collect(),
            debs: keys,
            format: match image.output.format {
                Format::Qcow2 => "qcow2".into(),
                Format::Raw => "raw".into(),
            },
            output_sha256: None,
            output_size: None,
        };
        // The base cache key, computed the way `forge gc` does from the lockfile.
        let mut scratch = Lockfile {
            tools: tools.clone(),
            source_date_epoch: plan.source_date_epoch,
            ..lock.clone()
        };
        for d in &debs {
            scratch.debs.insert(d.key(), d.clone());
        }
        let base_hash = scratch.base_build_hash(&locked);
        Ok(Self {
            image: image.clone(),
            layers,
            locked,
            debs,
            hash,
            base_hash,
        })
    }
}

fn timed<T>(
    observer: &dyn Observer,
    phases: &mut Vec<Phase>,
    subject: &str,
    name: &'static str,
    f: impl FnOnce() -> Result<(T, String), ImageError>,
) -> Result<T, ImageError> {
    observer.phase_started(subject, name);
    let start = Instant::now();
    let (value, detail) = f()?;
    let seconds = start.elapsed().as_secs_f64();
    observer.phase_finished(subject, name, seconds, &detail);
    phases.push(Phase {
        name,
        seconds,
        detail,
    });
    Ok(value)
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Decompresses a store blob (`.tar.zst`) to `dest`.
fn unpack_blob(store: &Store, sha: &Sha256Digest, dest: &Path) -> Result<(), ImageError> {
    let src = store.blob_path(sha);
    let input = File::open(&src).map_err(io_err(&src))?;
    let mut decoder = zstd::stream::read::Decoder::new(input).map_err(io_err(&src))?;
    let mut out = BufWriter::new(File::create(dest).map_err(io_err(dest))?);
    std::io::copy(&mut decoder, &mut out).map_err(io_err(dest))?;
    Ok(())
}

/// Compresses a file into the store (layer format); returns the blob's SHA-256 and the
/// uncompressed SHA-256.
fn store_compressed(
    store: &Store,
    src: &Path,
    workers: u32,
) -> Result<(Sha256Digest, Sha256Digest, u64), ImageError> {
    let input = File::open(src).map_err(io_err(src))?;
    let mut tmp = store.temp_file()?;
    let packed = forge_layer::compress(
        std::io::BufReader::with_capacity(1 << 20, input),
        tmp.as_file_mut(),
        workers,
    )
    .map_err(|e| ImageError::Compose(e.to_string()))?;
    store.commit_blob_unchecked(tmp, &packed.layer_sha256)?;
    Ok((
        packed.layer_sha256,
        packed.content_sha256,
        packed.content_size,
    ))
}

/// Picks the kernel and initrd in `/boot` (the newest, if there are several).
fn boot_files(rootfs: &Rootfs) -> Result<(String, String), ImageError> {
    let mut kernels: Vec<&String> = rootfs
        .keys()
        .filter(|k| k.starts_with("boot/vmlinuz-"))
        .collect();
    kernels.sort_by(|a, b| {
        let v = |s: &str| {
            forge_debian::version::Version::parse(s.trim_start_matches("boot/vmlinuz-")).ok()
        };
        v(a).cmp(&v(b)).then_with(|| a.cmp(b))
    });
    let kernel = kernels.last().ok_or_else(|| {
        ImageError::Compose("no kernel in /boot: add a kernel package to the base".into())
    })?;
    let version = kernel.trim_start_matches("boot/vmlinuz-");
    let initrd = format!("boot/initrd.img-{version}");
    if rootfs.get(&initrd).is_none() {
        return Err(ImageError::Compose(format!(
            "no `/{initrd}`: add `initramfs-tools` to the base so the kernel gets an initrd"
        )));
    }
    Ok(((*kernel).clone(), initrd))
}

/// Builds one image into the store (or finds it there). The .debs and layers must be in
/// the store already.
pub fn build_image(
    inputs: &ImageInputs,
    plan: &Plan,
    store: &Store,
    jobs: usize,
    tool_path: &std::ffi::OsStr,
    observer: &dyn Observer,
) -> Result<ImageOutcome, ImageError> {
    let started = Instant::now();
    let name = inputs.image.name.as_str();
    let notice = |_: &str| {
        observer.note(&format!(
            "waiting for another forge process building image `{name}`"
        ))
    };
    let _lock = store.lock(&format!("image-{}", inputs.hash), &notice)?;
    if let Some(record) = store.record::<ImageRecord>(&inputs.hash)? {
        return Ok(ImageOutcome {
            name: name.to_string(),
            hash: inputs.hash,
            path: store.blob_path(&record.output_sha256),
            record,
            cached: true,
            phases: Vec::new(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    observer.started(&format!("image:{name}"), "");
    let sde = plan.source_date_epoch;
    let env = ToolEnv {
        sde,
        path: tool_path.to_os_string(),
    };
    let workers = u32::try_from(jobs.max(1)).unwrap_or(1);
    let work = store.temp_dir()?;
    let work = work.path();
    let mut phases = Vec::new();
    let subject = format!("image:{name}");

    // The installed package set, from the cache or installed now.
    let base_tar = work.join("base.tar");
    timed(observer, &mut phases, &subject, "base", || {
        let _base_lock = store.lock(&format!("base-{}", inputs.base_hash), &|_| {
            observer.note("waiting for the same base, being installed for another image")
        })?;
        if let Some(rec) = store.record::<BaseRecord>(&inputs.base_hash)? {
            unpack_blob(store, &rec.tar_zst_sha256, &base_tar)?;
            return Ok((
                (),
                format!(
                    "{} packages, cached ({})",
                    inputs.debs.len(),
                    mib(rec.tar_size)
                ),
            ));
        }
        let debs: Vec<&LockedDeb> = inputs.debs.iter().collect();
        base::install(
            &debs,
            &inputs.image.base.suite,
            &inputs.image.base.architecture,
            store,
            work,
            &base_tar,
            &env,
        )?;
        let (zst, tar_sha, tar_size) = store_compressed(store, &base_tar, workers)?;
        store.commit_record(&BaseRecord {
            base_hash: inputs.base_hash,
            tar_zst_sha256: zst,
            tar_sha256: tar_sha,
            tar_size,
        })?;
        Ok((
            (),
            format!(
                "{} packages installed ({})",
                inputs.debs.len(),
                mib(tar_size)
            ),
        ))
    })?;

    // Layers and settings on top.
    let ids = Ids::derive(&inputs.hash);
    let rootfs_tar = work.join("rootfs.tar");
    let (mut kernel, mut initrd, rootfs_sha) =
        timed(observer, &mut phases, &subject, "layers", || {
            let mut rootfs = Rootfs::from_base(&base_tar, sde)?;
            for (i, layer) in inputs.layers.iter().enumerate() {
                let rec = store
                    .output(&plan.recipes[layer].hash)?
                    .ok_or_else(|| ImageError::Compose(format!("layer `{layer}` is not built")))?;
                let path = work.join(format!("layer-{i}.tar"));
                unpack_blob(store, &rec.layer_sha256, &path)?;
                rootfs.add_layer(&path, layer)?;
            }
            settings::apply(&mut rootfs, &inputs.image, &inputs.hash, &ids)?;
            let (kernel_key, initrd_key) = boot_files(&rootfs)?;
            let kernel = rootfs.read(&kernel_key)?;
            let initrd = rootfs.read(&initrd_key)?;
            let out = BufWriter::with_capacity(
                1 << 20,
                File::create(&rootfs_tar).map_err(io_err(&rootfs_tar))?,
            );
            let (_, size) = rootfs.write(out)?;
            let (rootfs_zst, _, _) = store_compressed(store, &rootfs_tar, workers)?;
            Ok((
                (kernel, initrd, rootfs_zst),
                format!("{} layer(s), {}", inputs.layers.len(), mib(size)),
            ))
        })?;

    let layout = Layout::of(&inputs.image);
    let root_img = work.join("root.img");
    timed(observer, &mut phases, &subject, "filesystem", || {
        disk::make_root(&rootfs_tar, &root_img, &layout, &ids, &env, work)?;
        Ok(((), format!("ext4, {}", mib(layout.root_size))))
    })?;

    let raw = work.join("disk.raw");
    timed(observer, &mut phases, &subject, "disk", || {
        let esp = work.join("esp.img");
        let boot = disk::BootFiles {
            kernel: std::mem::take(&mut kernel),
            initrd: std::mem::take(&mut initrd),
            cmdline: settings::kernel_cmdline(&inputs.image, &ids),
        };
        disk::make_esp(&inputs.image, &esp, &boot, &layout, &ids, &env, work)?;
        disk::assemble(&inputs.image, &raw, &esp, &root_img, &layout, &ids)?;
        let modes: Vec<&str> = inputs.image.disk.boot.iter().map(|b| b.as_str()).collect();
        Ok((
            (),
            format!(
                "GPT, ESP {} ({}), {}",
                mib(layout.esp_size),
                modes.join("+"),
                mib(layout.size)
            ),
        ))
    })?;

    let record = timed(observer, &mut phases, &subject, "convert", || {
        let out = work.join("image.out");
        disk::convert(&inputs.image, &raw, &out, &env)?;
        let (sha, size) = forge_store::fsutil::hash_file(&out).map_err(io_err(&out))?;
        store.commit_tmp_path(&out, &sha)?;
        let record = ImageRecord {
            image: name.to_string(),
            image_hash: inputs.hash,
            format: inputs.locked.format.clone(),
            output_sha256: sha,
            output_size: size,
            rootfs_sha256: rootfs_sha,
        };
        store.commit_record(&record)?;
        Ok((record, format!("{} {}", inputs.locked.format, mib(size))))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    observer.finished(&subject, false, seconds);
    Ok(ImageOutcome {
        name: name.to_string(),
        hash: inputs.hash,
        path: store.blob_path(&record.output_sha256),
        record,
        cached: false,
        phases,
        seconds,
    })
}

/// Fetches the .debs of `inputs` into the store (from source directories or the mirror).
pub async fn fetch_debs(
    inputs: &[&ImageInputs],
    store: &Arc<Store>,
    settings: &BuildSettings,
    observer: &dyn Observer,
) -> Result<(), ImageError> {
    let mut debs: Vec<&LockedDeb> = inputs.iter().flat_map(|i| i.debs.iter()).collect();
    debs.sort_by_key(|d| d.key());
    debs.dedup_by_key(|d| d.key());
    // Every .deb is re-hashed (about 0.1 s per 100 MiB): a damaged one in the store must
    // not reach an image; it is removed and fetched again.
    let mut missing: Vec<&LockedDeb> = Vec::new();
    for d in debs {
        if !store.check_blob(&d.sha256)? {
            missing.push(d);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let bytes: u64 = missing.iter().map(|d| d.size).sum();
    observer.phase_started("images", "fetch");
    let start = Instant::now();
    let requests = base::deb_requests(&missing);
    let fetcher = Fetcher::new(settings.fetch.clone(), observer.progress())?;
    fetcher.fetch_all(store, &requests).await?;
    observer.phase_finished(
        "images",
        "fetch",
        start.elapsed().as_secs_f64(),
        &format!("{} .deb(s), {}", missing.len(), mib(bytes)),
    );
    Ok(())
}
