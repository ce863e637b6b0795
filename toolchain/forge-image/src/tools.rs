//! The external tools an image build runs, found on the host, with their versions. No
//! crate writes ext4, FAT, qcow2 or installs Debian packages as well as these do; forge
//! pins their versions instead: they are part of every image hash and recorded in the
//! lockfile, so a different version rebuilds (and fails under `--locked`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use forge_schema::image::{BootMode, Format, Image};

use crate::ImageError;

/// Where the EFI boot manager comes from (package `systemd-boot-efi`).
pub const SYSTEMD_BOOT_EFI: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// syslinux's GPT-aware MBR boot code (package `syslinux-common`).
pub const GPTMBR_BIN: &str = "/usr/lib/syslinux/mbr/gptmbr.bin";

/// Tools found for a set of images.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    /// Name → version, as recorded in the lockfile.
    pub versions: BTreeMap<String, String>,
}

fn first_version(text: &str) -> Option<String> {
    let re = regex::Regex::new(r"\b(\d+\.\d+(?:\.\d+)*(?:[~+.\-][0-9A-Za-z.~+\-]*)?)").ok()?;
    re.captures(text).map(|c| c[1].to_string())
}

fn run_version(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    first_version(first)
        .or_else(|| first_version(&text))
        .ok_or_else(|| {
            format!(
                "cannot read the version of `{program}` from `{}`",
                first.trim()
            )
        })
}

fn package_version(package: &str) -> Result<String, String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .map_err(|e| format!("cannot run dpkg-query: {e}"))?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !v.is_empty() {
        Ok(v)
    } else {
        Err(format!("package `{package}` is not installed"))
    }
}

/// Compares dotted numeric versions (`1.47.2` >= `1.47.1`).
fn at_least(version: &str, min: &[u64]) -> bool {
    let parts: Vec<u64> = version
        .split(|c: char| !c.is_ascii_digit())
        .take(min.len())
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    parts.as_slice() >= min
}

const INSTALL: &str = "on Debian 12 (as root): apt-get install mmdebstrap dosfstools mtools syslinux syslinux-common systemd-boot-efi qemu-utils libarchive13, and e2fsprogs from bookworm-backports (apt-get install -t bookworm-backports e2fsprogs)";

impl Tools {
    /// Finds every tool `images` need and reads its version.
    pub fn detect(images: &[&Image]) -> Result<Tools, ImageError> {
        let mut versions = BTreeMap::new();
        let mut missing = Vec::new();
        let mut need = |name: &str, r: Result<String, String>| match r {
            Ok(v) => {
                versions.insert(name.to_string(), v);
            }
            Err(e) => missing.push(e),
        };
        need("mmdebstrap", run_version("mmdebstrap", &["--version"]));
        need("mke2fs", run_version("mke2fs", &["-V"]));
        need("mkfs.fat", run_version("mkfs.fat", &["--help"]));
        need("mtools", run_version("mcopy", &["--version"]));
        let bios = images.iter().any(|i| i.disk.boot.contains(&BootMode::Bios));
        let uefi = images.iter().any(|i| i.disk.boot.contains(&BootMode::Uefi));
        if bios {
            need("syslinux", package_version("syslinux"));
            need("syslinux-common", package_version("syslinux-common"));
        }
        if uefi {
            need("systemd-boot-efi", package_version("systemd-boot-efi"));
        }
        if images.iter().any(|i| i.output.format == Format::Qcow2) {
            need("qemu-img", run_version("qemu-img", &["--version"]));
        }
        if !missing.is_empty() {
            return Err(ImageError::Tools(format!(
                "{}\n{INSTALL}",
                missing.join("\n")
            )));
        }
        if let Some(v) = versions.get("mke2fs")
            && !at_least(v, &[1, 47, 1])
        {
            return Err(ImageError::Tools(format!(
                "mke2fs {v} cannot build reproducible file systems: it needs 1.47.1 or newer (SOURCE_DATE_EPOCH and tar input)\n{INSTALL}"
            )));
        }
        for (file, why) in [(SYSTEMD_BOOT_EFI, uefi), (GPTMBR_BIN, bios)] {
            if why && !Path::new(file).is_file() {
                return Err(ImageError::Tools(format!("`{file}` is missing\n{INSTALL}")));
            }
        }
        Ok(Tools { versions })
    }

    /// Path of a host file the image embeds.
    pub fn file(path: &str) -> PathBuf {
        PathBuf::from(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_tool_output() {
        assert_eq!(
            first_version("mke2fs 1.47.2 (1-Jan-2025)").as_deref(),
            Some("1.47.2")
        );
        assert_eq!(
            first_version("mkfs.fat 4.2 (2021-01-31)").as_deref(),
            Some("4.2")
        );
        assert_eq!(
            first_version("qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)").as_deref(),
            Some("7.2.22")
        );
        assert_eq!(
            first_version("mcopy (GNU mtools) 4.0.33").as_deref(),
            Some("4.0.33")
        );
        assert_eq!(first_version("mmdebstrap 1.3.5").as_deref(), Some("1.3.5"));
        assert!(at_least("1.47.2", &[1, 47, 1]));
        assert!(!at_least("1.47.0", &[1, 47, 1]));
    }
}

/// The fixed environment the image tools run in: SOURCE_DATE_EPOCH from the lockfile and
/// the PATH forge was started with (given by the CLI, which reads the environment), and
/// nothing else of the caller's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolEnv {
    pub sde: u64,
    pub path: std::ffi::OsString,
}
