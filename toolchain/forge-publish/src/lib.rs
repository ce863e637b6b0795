//! `forge publish`: each built image (its locked qcow2 output) is uploaded privately to an
//! SOS bucket and registered as a template from a presigned GET URL (API-NOTES §6.2),
//! in every zone platform.toml names; the template ids go to the lockfile.
//!
//! Idempotent: an image whose output already has a template (in the lockfile, or found in
//! the zone by its name and `build` field after an interrupted run) is not uploaded or
//! registered again, and an object already in the bucket with the right size is not
//! uploaded again. Templates carry no labels in the API, so forge finds its own by name
//! (`<platform>-<image>-<12 hex of the output>`), `build` (the output's sha256) and
//! `maintainer` (`forge <platform>`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use forge_exoscale::types::{RegisterTemplate, Template};
use forge_exoscale::{Client, ClientOptions, Config};
use forge_schema::Sha256Digest;
use forge_schema::lockfile::LockedTemplate;
use forge_schema::platform::Platform;
use md5::Digest as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer as _;
use object_store::{ObjectStoreExt as _, WriteMultipart};
use tokio::io::AsyncReadExt as _;

/// Multipart chunk size (S3's minimum part is 5 MiB).
const PART_SIZE: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Input(String),
    #[error("SOS bucket {bucket} in {zone}: {message}")]
    Storage {
        bucket: String,
        zone: String,
        message: String,
    },
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: forge_exoscale::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One image output to publish.
#[derive(Debug, Clone)]
pub struct ImageOutput {
    pub name: String,
    pub output_sha256: Sha256Digest,
    /// The qcow2 file (in the store).
    pub path: PathBuf,
    /// `bios`, `uefi`: the modes the image boots in.
    pub boot_modes: Vec<String>,
}

/// Progress callbacks: `bytes(image, done, total)` while uploading, `line` for events.
pub trait Progress: Send + Sync {
    fn bytes(&self, image: &str, done: u64, total: u64);
    fn line(&self, text: &str);
}

/// What happened to one image in one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The lockfile's template still exists.
    UpToDate,
    /// A template from an earlier, interrupted run was found and recorded.
    Adopted,
    /// Uploaded (unless the object was there) and registered.
    Registered { uploaded: bool },
}

impl Outcome {
    /// The machine name (`--json`).
    pub fn key(&self) -> &'static str {
        match self {
            Outcome::UpToDate => "up-to-date",
            Outcome::Adopted => "adopted",
            Outcome::Registered { uploaded: true } => "uploaded",
            Outcome::Registered { uploaded: false } => "registered",
        }
    }

    /// In words.
    pub fn describe(&self) -> &'static str {
        match self {
            Outcome::UpToDate => "up to date",
            Outcome::Adopted => "found from an earlier run",
            Outcome::Registered { uploaded: true } => "uploaded and registered",
            Outcome::Registered { uploaded: false } => "registered (object already uploaded)",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Published {
    pub template: LockedTemplate,
    pub outcome: Outcome,
}

/// The template name of an image output.
pub fn template_name(platform: &str, image: &str, output: &Sha256Digest) -> String {
    format!("{platform}-{image}-{}", &output.to_hex()[..12])
}

fn maintainer(platform: &str) -> String {
    format!("forge {platform}")
}

/// The template boot mode of an image: `legacy` when it boots with BIOS (Exoscale's
/// default and the most compatible), else `uefi`.
pub fn boot_mode(modes: &[String]) -> &'static str {
    if modes.iter().any(|m| m == "bios") {
        "legacy"
    } else {
        "uefi"
    }
}

/// Whether `t` is one of `platform`'s templates, and if so the image and output it was
/// registered from (known from its name and `build` field), whose object `--prune` deletes
/// with it.
pub fn owned_template(
    platform: &str,
    t: &Template,
) -> Option<(String, Option<(String, Sha256Digest)>)> {
    let prefix = format!("{platform}-");
    let name = t.name.as_deref()?;
    if t.maintainer.as_deref() != Some(maintainer(platform).as_str()) || !name.starts_with(&prefix)
    {
        return None;
    }
    // `<platform>-<image>-<12 hex>`: the image is what lies between (images may hold `-`).
    let origin = name
        .strip_prefix(&prefix)
        .and_then(|r| r.rsplit_once('-'))
        .map(|(image, _)| image.to_string())
        .zip(
            t.build
                .as_deref()
                .and_then(|b| b.parse::<Sha256Digest>().ok()),
        );
    Some((name.to_string(), origin))
}

/// The object key of an image output in the bucket.
pub fn object_key(image: &str, output: &Sha256Digest) -> String {
    format!("forge/{image}/{}.qcow2", output.to_hex())
}

fn storage_err(p: &Platform, zone: &str, e: impl std::fmt::Display) -> PublishError {
    let mut message = e.to_string();
    if message.contains("NoSuchBucket") {
        message = format!(
            "the bucket does not exist: create it in {zone} (e.g. `exo storage mb sos://{}`) or set [publish] bucket",
            p.publish.bucket
        );
    }
    PublishError::Storage {
        bucket: p.publish.bucket.clone(),
        zone: zone.to_string(),
        message,
    }
}

/// The SOS bucket of `zone` (path-style addressing, region = zone, the API key pair).
pub fn bucket(config: &Config, platform: &Platform, zone: &str) -> Result<AmazonS3, PublishError> {
    let endpoint = config.sos_url(zone);
    AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_region(zone)
        .with_bucket_name(&platform.publish.bucket)
        .with_access_key_id(&config.credentials.key)
        .with_secret_access_key(config.credentials.secret())
        .with_virtual_hosted_style_request(false)
        .with_allow_http(endpoint.starts_with("http://"))
        .build()
        .map_err(|e| storage_err(platform, zone, e))
}

/// MD5 (hex) of a file, and its size.
async fn md5_of(path: &std::path::Path) -> Result<(String, u64), PublishError> {
    let io = |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = tokio::fs::File::open(path).await.map_err(io)?;
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).await.map_err(io)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Uploads `image` as a multipart object, hashing it on the way; returns its MD5.
async fn upload(
    store: &AmazonS3,
    key: &ObjectPath,
    image: &ImageOutput,
    progress: &dyn Progress,
) -> Result<(String, u64), object_store::Error> {
    let io = |e: std::io::Error| object_store::Error::Generic {
        store: "file",
        source: Box::new(e),
    };
    let mut f = tokio::fs::File::open(&image.path).await.map_err(io)?;
    let total = f.metadata().await.map_err(io)?.len();
    let mut w = WriteMultipart::new_with_chunk_size(store.put_multipart(key).await?, PART_SIZE);
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; PART_SIZE];
    let mut done = 0u64;
    loop {
        let k = f.read(&mut buf).await.map_err(io)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        w.wait_for_capacity(4).await?;
        w.write(&buf[..k]);
        done += k as u64;
        progress.bytes(&image.name, done, total);
    }
    w.finish().await?;
    Ok((hex::encode(h.finalize()), total))
}

fn zone_client(
    config: &Config,
    options: &ClientOptions,
    zone: &str,
) -> Result<Client, PublishError> {
    Client::for_zone(config, zone, options.clone()).map_err(|source| PublishError::Api {
        what: "API client".into(),
        source,
    })
}

/// The template forge registered as `name` from the output `hex`, if it exists in the zone.
/// The organisation's private templates in `zone`.
async fn private_templates(client: &Client, zone: &str) -> Result<Vec<Template>, PublishError> {
    client
        .list_private_templates()
        .await
        .map_err(|source| PublishError::Api {
            what: format!("listing templates in {zone}"),
            source,
        })
}

async fn find_registered(
    client: &Client,
    zone: &str,
    name: &str,
    hex: &str,
) -> Result<Option<Template>, PublishError> {
    Ok(private_templates(client, zone)
        .await?
        .into_iter()
        .find(|t| t.name.as_deref() == Some(name) && t.build.as_deref() == Some(hex)))
}

/// Publishes `image` in `zone`. `locked` is the lockfile's template for it, if any.
pub async fn publish_one(
    config: &Config,
    options: &ClientOptions,
    platform: &Platform,
    zone: &str,
    image: &ImageOutput,
    locked: Option<&LockedTemplate>,
    progress: &dyn Progress,
) -> Result<Published, PublishError> {
    let client = zone_client(config, options, zone)?;
    let api = |what: String| move |source| PublishError::Api { what, source };
    let name = template_name(&platform.name, &image.name, &image.output_sha256);
    let boot_mode = boot_mode(&image.boot_modes);
    let record = |t: &Template, md5: String| LockedTemplate {
        image: image.name.clone(),
        zone: zone.to_string(),
        id: t.id.clone(),
        name: name.clone(),
        output_sha256: image.output_sha256,
        md5,
        boot_mode: t.boot_mode.clone().unwrap_or_else(|| boot_mode.to_string()),
    };
    // 1. The lockfile's template, if it is still there and of this output.
    if let Some(l) = locked.filter(|l| l.output_sha256 == image.output_sha256) {
        match client.get_template(&l.id).await {
            Ok(_) => {
                return Ok(Published {
                    template: l.clone(),
                    outcome: Outcome::UpToDate,
                });
            }
            Err(e) if e.is_not_found() => {
                progress.line(&format!(
                    "template {} of {} in {zone} is gone: registering it again",
                    l.id, image.name
                ));
            }
            Err(e) => return Err(api(format!("reading template {}", l.id))(e)),
        }
    }
    // 2. One registered by an earlier run that did not get to write the lockfile.
    let hex = image.output_sha256.to_hex();
    if let Some(t) = find_registered(&client, zone, &name, &hex).await? {
        let md5 = match &t.checksum {
            Some(c) => c.clone(),
            None => md5_of(&image.path).await?.0,
        };
        return Ok(Published {
            template: record(&t, md5),
            outcome: Outcome::Adopted,
        });
    }
    // 3. Upload (unless the object is already there) and register.
    let store = bucket(config, platform, zone)?;
    let key = ObjectPath::from(object_key(&image.name, &image.output_sha256));
    let size = tokio::fs::metadata(&image.path)
        .await
        .map_err(|source| PublishError::Io {
            path: image.path.clone(),
            source,
        })?
        .len();
    let existing = match store.head(&key).await {
        Ok(meta) => Some(meta.size),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(storage_err(platform, zone, e)),
    };
    let (md5, uploaded) = if existing == Some(size) {
        (md5_of(&image.path).await?.0, false)
    } else {
        progress.line(&format!(
            "uploading {} ({} bytes) to sos://{}/{key} in {zone}",
            image.name, size, platform.publish.bucket
        ));
        let (md5, _) = upload(&store, &key, image, progress)
            .await
            .map_err(|e| storage_err(platform, zone, e))?;
        (md5, true)
    };
    let url = store
        .signed_url(
            reqwest::Method::GET,
            &key,
            Duration::from_secs(platform.publish.url_lifetime_secs),
        )
        .await
        .map_err(|e| storage_err(platform, zone, e))?;
    let body = RegisterTemplate {
        name: name.clone(),
        description: Some(format!("forge image {} (output sha256 {hex})", image.name)),
        url: url.to_string(),
        checksum: md5.clone(),
        ssh_key_enabled: true,
        password_enabled: false,
        boot_mode: Some(boot_mode.to_string()),
        default_user: Some(forge_schema::contract::DEFAULT_USER.into()),
        build: Some(hex.clone()),
        version: None,
        maintainer: Some(maintainer(&platform.name)),
        size: Some(i64::try_from(size).unwrap_or(i64::MAX)),
    };
    progress.line(&format!("registering {name} in {zone}"));
    let reference = match client.register_template(&body).await {
        Ok(r) => r,
        Err(forge_exoscale::Error::Ambiguous { .. }) => {
            // The registration may have been accepted: look for it before giving up.
            match find_registered(&client, zone, &name, &hex).await? {
                Some(t) => forge_exoscale::types::Reference {
                    id: t.id,
                    link: None,
                    command: None,
                },
                None => {
                    return Err(PublishError::Input(format!(
                        "registering {name} in {zone}: the answer was lost and no template appeared; run `forge publish` again"
                    )));
                }
            }
        }
        Err(e) => return Err(api(format!("registering {name} in {zone}"))(e)),
    };
    let t = client
        .get_template(&reference.id)
        .await
        .map_err(api(format!("reading template {}", reference.id)))?;
    Ok(Published {
        template: record(&t, md5),
        outcome: Outcome::Registered { uploaded },
    })
}

/// Deletes this platform's templates in `zone` that `keep` does not list, and their
/// objects. Returns the names deleted.
pub async fn prune(
    config: &Config,
    options: &ClientOptions,
    platform: &Platform,
    zone: &str,
    keep: &[String],
    progress: &dyn Progress,
) -> Result<Vec<String>, PublishError> {
    let client = zone_client(config, options, zone)?;
    let templates = private_templates(&client, zone).await?;
    let mut deleted = Vec::new();
    let store = bucket(config, platform, zone)?;
    for t in templates {
        let Some((name, origin)) = owned_template(&platform.name, &t) else {
            continue;
        };
        if keep.contains(&t.id) {
            continue;
        }
        client
            .delete_template(&t.id)
            .await
            .map_err(|source| PublishError::Api {
                what: format!("deleting template {name}"),
                source,
            })?;
        // The object it was registered from, if still there.
        if let Some((image, digest)) = origin {
            let key = ObjectPath::from(object_key(&image, &digest));
            match store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage_err(platform, zone, e)),
            }
        }
        progress.line(&format!("deleted template {name} ({}) in {zone}", t.id));
        deleted.push(name);
    }
    Ok(deleted)
}

/// Shared progress for callers that only log.
pub fn quiet() -> Arc<dyn Progress> {
    struct Quiet;
    impl Progress for Quiet {
        fn bytes(&self, _: &str, _: u64, _: u64) {}
        fn line(&self, text: &str) {
            tracing::info!("{text}");
        }
    }
    Arc::new(Quiet)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn template(name: &str, maintainer: Option<&str>, build: Option<&str>) -> Template {
        serde_json::from_value(serde_json::json!({
            "id": format!("id-{name}"),
            "name": name,
            "maintainer": maintainer,
            "build": build,
        }))
        .unwrap()
    }

    #[test]
    fn names_carry_the_platform_the_image_and_the_output() {
        let out = Sha256Digest::of(b"qcow2");
        let hex = out.to_hex();
        assert_eq!(
            template_name("paas", "kube-node", &out),
            format!("paas-kube-node-{}", &hex[..12])
        );
        assert_eq!(
            object_key("kube-node", &out),
            format!("forge/kube-node/{hex}.qcow2")
        );
    }

    #[test]
    fn bios_images_register_as_legacy() {
        let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(boot_mode(&m(&["bios", "uefi"])), "legacy");
        assert_eq!(boot_mode(&m(&["uefi"])), "uefi");
    }

    #[test]
    fn only_this_platforms_templates_are_owned() {
        let out = Sha256Digest::of(b"o");
        let name = template_name("paas", "kube-node", &out);
        let hex = out.to_hex();
        let (n, origin) =
            owned_template("paas", &template(&name, Some("forge paas"), Some(&hex))).unwrap();
        assert_eq!(n, name);
        assert_eq!(origin, Some(("kube-node".to_string(), out)));
        // Another maintainer, another platform whose name shares the prefix, or a
        // template of ours without a readable build: not owned, or no object to delete.
        assert!(owned_template("paas", &template(&name, Some("someone"), Some(&hex))).is_none());
        let other = template_name("paas-staging", "vault", &out);
        assert!(
            owned_template(
                "paas",
                &template(&other, Some("forge paas-staging"), Some(&hex))
            )
            .is_none()
        );
        assert!(owned_template("paas", &template(&name, None, Some(&hex))).is_none());
        let (_, origin) =
            owned_template("paas", &template(&name, Some("forge paas"), Some("junk"))).unwrap();
        assert_eq!(origin, None);
    }

    #[test]
    fn a_missing_bucket_says_how_to_make_it() {
        let p = Platform::parse(&forge_schema::SourceFile::new(
            "platform.toml",
            "[platform]\nname = \"paas\"\nzone = \"ch-gva-2\"\ndomain = \"paas.example.net\"\nadmin-networks = [\"198.51.100.0/24\"]\n\n[publish]\nbucket = \"paas-templates\"\n",
        ))
        .unwrap();
        let e = storage_err(
            &p,
            "ch-gva-2",
            "NoSuchBucket: The specified bucket does not exist",
        );
        assert!(
            e.to_string()
                .contains("create it in ch-gva-2 (e.g. `exo storage mb sos://paas-templates`)"),
            "{e}"
        );
    }
}
