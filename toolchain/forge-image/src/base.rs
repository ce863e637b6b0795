//! The Debian base: resolving an image's package set against the archive's signed index
//! (for the lockfile), and installing a locked set offline (for a build).

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use forge_debian::index::Index;
use forge_debian::release::{Keyring, verify_inrelease};
use forge_debian::repo::{self, RepoDeb};
use forge_debian::resolve::{Variant, resolve};
use forge_fetch::{FetchRequest, Fetcher};
use forge_schema::image::{Image, Variant as ImageVariant};
use forge_schema::lockfile::LockedDeb;
use forge_store::Store;

use crate::ImageError;
use crate::tools::ToolEnv;

/// The default keyring for Debian's archive.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Where packages come from.
#[derive(Debug, Clone)]
pub struct Archive {
    /// Archive root URL (no trailing slash).
    pub mirror: String,
    pub keyring: Keyring,
}

/// A resolved package set.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub debs: Vec<LockedDeb>,
    /// Fingerprint of the key that signed the index.
    pub signed_by: String,
}

/// Resolves `image`'s base against the archive: verifies each suite's InRelease, fetches
/// its `Packages` index as a fixed-output source (the InRelease pins it), and computes the
/// closure.
pub async fn resolve_base(
    image: &Image,
    archive: &Archive,
    fetcher: &Fetcher,
    store: &Arc<Store>,
) -> Result<Resolved, ImageError> {
    let arch = &image.base.architecture;
    let mut index = Index::default();
    let mut signed_by = String::new();
    for suite in image.base.suites() {
        let url = format!("{}/dists/{suite}/InRelease", archive.mirror);
        let bytes = fetcher.get(&url).await?;
        let text = String::from_utf8(bytes).map_err(|_| {
            ImageError::Debian(forge_debian::DebianError::Index {
                what: url.clone(),
                reason: "not UTF-8 text".into(),
            })
        })?;
        let release = verify_inrelease(&text, &archive.keyring, &url)?;
        signed_by = release.signed_by.clone();
        let (name, compressed) = [("xz", true), ("gz", true), ("", false)]
            .iter()
            .map(|(ext, c)| {
                let n = if ext.is_empty() {
                    format!("main/binary-{arch}/Packages")
                } else {
                    format!("main/binary-{arch}/Packages.{ext}")
                };
                (n, *c)
            })
            .find(|(n, _)| release.sha256.contains_key(n))
            .ok_or_else(|| {
                ImageError::Debian(forge_debian::DebianError::Index {
                    what: url.clone(),
                    reason: format!("the index lists no main/binary-{arch}/Packages file"),
                })
            })?;
        let (sha, _) = &release.sha256[&name];
        let sha256 = sha.parse().map_err(|e| {
            ImageError::Debian(forge_debian::DebianError::Index {
                what: url.clone(),
                reason: format!("bad sha256 for {name}: {e}"),
            })
        })?;
        let request = FetchRequest::sha256(
            format!("debian index {suite}/{name}"),
            vec![format!("{}/dists/{suite}/{name}", archive.mirror)],
            sha256,
            format!("{suite}_{}", name.replace('/', "_")),
        );
        let fetched = fetcher.fetch(store, &request).await?;
        let file = std::fs::File::open(&fetched.path).map_err(|source| ImageError::Io {
            path: fetched.path.clone(),
            source,
        })?;
        let mut text = String::new();
        let read = if !compressed {
            std::io::BufReader::new(file).read_to_string(&mut text)
        } else if name.ends_with(".xz") {
            liblzma::read::XzDecoder::new(file).read_to_string(&mut text)
        } else {
            flate2::read::MultiGzDecoder::new(file).read_to_string(&mut text)
        };
        read.map_err(|source| ImageError::Io {
            path: fetched.path.clone(),
            source,
        })?;
        index.add(&text, &suite, arch).map_err(|reason| {
            ImageError::Debian(forge_debian::DebianError::Index {
                what: request.urls[0].clone(),
                reason,
            })
        })?;
    }
    let variant = match image.base.variant {
        ImageVariant::Minbase => Variant::Minbase,
        ImageVariant::Essential => Variant::Essential,
    };
    let resolution =
        resolve(&index, variant, &image.base.roots()).map_err(forge_debian::DebianError::from)?;
    Ok(Resolved {
        debs: resolution
            .packages
            .into_iter()
            .map(|p| LockedDeb {
                package: p.name,
                version: p.version.to_string(),
                architecture: p.architecture,
                path: p.filename,
                sha256: p.sha256,
                size: p.size,
            })
            .collect(),
        signed_by,
    })
}

/// The fetch requests for a locked package set. The file name lets `--source-dir`
/// supply a .deb the mirror no longer serves.
pub fn deb_requests(debs: &[&LockedDeb]) -> Vec<FetchRequest> {
    debs.iter()
        .map(|d| {
            FetchRequest::sha256(
                format!(
                    "debian package {}={} ({})",
                    d.package, d.version, d.architecture
                ),
                // The fetcher resolves `debian:` against the configured mirror.
                vec![format!("{}{}", forge_fetch::DEBIAN_SCHEME, d.path)],
                d.sha256,
                d.path.rsplit('/').next().unwrap_or(&d.path).to_string(),
            )
        })
        .collect()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Installs a locked package set into `out` (an uncompressed tar), offline: the .debs
/// (already in the store) go into a local repository, and mmdebstrap installs exactly
/// them, running maintainer scripts in a chroot inside a network namespace with no
/// network. The result depends only on the packages, mmdebstrap's version, the suite and
/// SOURCE_DATE_EPOCH.
pub fn install(
    debs: &[&LockedDeb],
    suite: &str,
    arch: &str,
    store: &Store,
    work: &Path,
    out: &Path,
    env: &ToolEnv,
) -> Result<(), ImageError> {
    let sde = env.sde;
    let repo_dir = work.join("repo");
    let repo_debs: Vec<RepoDeb> = debs
        .iter()
        .map(|d| RepoDeb {
            path: store.blob_path(&d.sha256),
            sha256: d.sha256,
            size: d.size,
        })
        .collect();
    repo::write(&repo_dir, suite, arch, &repo_debs).map_err(|source| ImageError::Io {
        path: repo_dir.clone(),
        source,
    })?;
    let tmp = work.join("mmdebstrap-tmp");
    std::fs::create_dir_all(&tmp).map_err(|source| ImageError::Io {
        path: tmp.clone(),
        source,
    })?;
    let mut names: Vec<&str> = debs.iter().map(|d| d.package.as_str()).collect();
    names.sort_unstable();
    if !is_root() {
        return Err(ImageError::Tool(
            "installing the base needs root (mmdebstrap --mode=root in a private network namespace); run forge as root, or build where the base is already in the store".into(),
        ));
    }
    // Through `sh` only to set the umask: apt and maintainer scripts create files and
    // directories with it, so it must not come from the user's shell.
    let mut c = Command::new("sh");
    c.args(["-c", "umask 022 && exec \"$@\"", "sh", "unshare"]);
    c.env_clear()
        .env("PATH", &env.path)
        .env("LC_ALL", "C.UTF-8")
        .env("TZ", "UTC")
        .env("SOURCE_DATE_EPOCH", sde.to_string())
        .env("TMPDIR", &tmp)
        // The kernel's postinst and initramfs-tools' trigger would each build the initrd;
        // skip the first (the kernel hook honours INITRD=No) and build it once at the end.
        .env("INITRD", "No")
        .args([
            "--net",
            "--",
            "mmdebstrap",
            "--mode=root",
            "--variant=essential",
            "--format=tar",
            "-q",
        ])
        .arg(format!("--include={}", names.join(",")))
        // apt drops to the `_apt` user for downloads only when `_apt` can read the
        // repository, which depends on where the store is; always download as root, so
        // the ownership of apt's directories in the image does not depend on the host.
        .arg("--aptopt=APT::Sandbox::User \"root\"")
        .arg("--customize-hook=chroot \"$1\" update-initramfs -c -k all")
        .arg(format!("--architectures={arch}"))
        .arg(suite)
        .arg(out)
        .arg(format!(
            "deb [trusted=yes] copy://{} {suite} {}",
            repo_dir.display(),
            repo::COMPONENT
        ));
    let output = c
        .output()
        .map_err(|e| ImageError::Tool(format!("cannot run unshare/mmdebstrap: {e}")))?;
    if !output.status.success() {
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(ImageError::Tool(format!(
            "mmdebstrap failed to install the locked package set ({}):\n{}",
            output.status,
            tail.join("\n")
        )));
    }
    Ok(())
}
