//! Image definitions (`images/NAME.toml`): a locked Debian base, ordered layers, settings,
//! disk and output. Parsed with spans like recipes, normalised so the image hash covers
//! meaning, not formatting.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::diag::{Diagnostics, SourceFile, TomlError};
use crate::paths::check_name;

/// How the base package set starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// `Essential: yes` and `Priority: required` packages (debootstrap's minbase).
    Minbase,
    /// `Essential: yes` packages only.
    Essential,
}

/// Firmware an image boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    /// Legacy BIOS (SeaBIOS), through syslinux on the ESP.
    Bios,
    /// UEFI (OVMF), through systemd-boot on the ESP.
    Uefi,
}

impl BootMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BootMode::Bios => "bios",
            BootMode::Uefi => "uefi",
        }
    }
}

/// Disk image format of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Qcow2,
    Raw,
}

/// qcow2 cluster compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    None,
    Zlib,
}

/// The Debian base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Base {
    /// Debian suite, e.g. `bookworm`.
    pub suite: String,
    /// Also take updates from `<suite>-updates`.
    pub updates: bool,
    pub architecture: String,
    pub variant: Variant,
    /// The kernel package.
    pub kernel: String,
    /// Packages named by the image, sorted, without duplicates (the boot set of kernel,
    /// `initramfs-tools`, `systemd-sysv` and `udev` is added by forge).
    pub packages: Vec<String>,
}

impl Base {
    /// Every package the resolver starts from.
    pub fn roots(&self) -> Vec<String> {
        let mut set: BTreeSet<String> = self.packages.iter().cloned().collect();
        for p in [
            self.kernel.as_str(),
            "initramfs-tools",
            "systemd-sysv",
            "udev",
        ] {
            set.insert(p.to_string());
        }
        set.into_iter().collect()
    }

    /// The suites whose indexes are read.
    pub fn suites(&self) -> Vec<String> {
        let mut s = vec![self.suite.clone()];
        if self.updates {
            s.push(format!("{}-updates", self.suite));
        }
        s
    }
}

/// Image settings applied after the layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// Static hostname written to `/etc/hostname`; cloud-init replaces it from metadata
    /// unless `hostname-from-metadata = false`.
    pub hostname: String,
    pub hostname_from_metadata: bool,
    /// Extra kernel command-line words, after forge's `root=`, `ro` and console settings.
    pub kernel_cmdline: Vec<String>,
    /// Units to enable (by their `[Install]` section) and to mask.
    pub enable: Vec<String>,
    pub mask: Vec<String>,
    /// cloud-init datasources, in order (only when cloud-init is installed).
    pub datasources: Vec<String>,
    /// The user cloud-init creates for SSH keys from metadata.
    pub default_user: String,
    pub timezone: String,
    pub locale: String,
}

/// The disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// Size of the whole disk in bytes (a multiple of 1 MiB).
    pub size: u64,
    /// Size of the EFI system partition in bytes (a multiple of 1 MiB).
    pub esp_size: u64,
    /// Firmware the disk boots with, sorted.
    pub boot: Vec<BootMode>,
    /// Grow the root partition and file system to the disk at first boot.
    pub grow: bool,
}

/// The output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Output {
    pub format: Format,
    pub compression: Compression,
}

/// A validated image definition.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub description: String,
    /// Recipes, in the order their layers are applied (inputs are added before them).
    pub layers: Vec<String>,
    pub base: Base,
    pub settings: Settings,
    pub disk: Disk,
    pub output: Output,
    pub file: SourceFile,
    pub layer_spans: Vec<(String, std::ops::Range<usize>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawImage {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    layers: Vec<Spanned<String>>,
    #[serde(default)]
    base: RawBase,
    #[serde(default)]
    settings: RawSettings,
    #[serde(default)]
    disk: RawDisk,
    #[serde(default)]
    output: RawOutput,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBase {
    suite: Option<Spanned<String>>,
    updates: Option<bool>,
    architecture: Option<Spanned<String>>,
    variant: Option<Variant>,
    kernel: Option<Spanned<String>>,
    #[serde(default)]
    packages: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSettings {
    hostname: Option<Spanned<String>>,
    hostname_from_metadata: Option<bool>,
    #[serde(default)]
    kernel_cmdline: Vec<Spanned<String>>,
    #[serde(default)]
    enable: Vec<Spanned<String>>,
    #[serde(default)]
    mask: Vec<Spanned<String>>,
    datasources: Option<Vec<Spanned<String>>>,
    default_user: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    locale: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDisk {
    size: Option<Spanned<String>>,
    esp_size: Option<Spanned<String>>,
    boot: Option<Spanned<Vec<BootMode>>>,
    grow: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawOutput {
    format: Option<Format>,
    compression: Option<Compression>,
}

/// `2G`, `512M`, `64MiB`, `1048576` → bytes (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    let unit = t[digits.len()..].trim();
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size (write e.g. `2G` or `512M`)"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (use K, M, G or T, powers of 1024)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

fn word_ok(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'')
}

impl Image {
    pub fn parse(file: &SourceFile, stem: &str) -> Result<Image, Diagnostics> {
        let raw: RawImage = toml::from_str(&file.text).map_err(|e| file.from_toml(&e))?;
        let mut errors: Vec<TomlError> = Vec::new();
        let mut err =
            |span: std::ops::Range<usize>, msg: String| errors.push(file.error(span, msg));

        let name = raw.name.get_ref().clone();
        if let Err(e) = check_name(&name) {
            err(raw.name.span(), format!("invalid image name: {e}"));
        }
        if name != stem {
            err(
                raw.name.span(),
                format!("image `{name}` is in a file named `{stem}.toml`; rename one of them"),
            );
        }
        let mut layers = Vec::new();
        let mut layer_spans = Vec::new();
        for l in &raw.layers {
            if let Err(e) = check_name(l.get_ref()) {
                err(l.span(), format!("invalid recipe name: {e}"));
            }
            if layers.contains(l.get_ref()) {
                err(l.span(), format!("layer `{}` is listed twice", l.get_ref()));
            }
            layers.push(l.get_ref().clone());
            layer_spans.push((l.get_ref().clone(), l.span()));
        }

        let text = |v: &Option<Spanned<String>>, default: &str| {
            v.as_ref()
                .map_or_else(|| default.to_string(), |s| s.get_ref().trim().to_string())
        };
        let suite = text(&raw.base.suite, "bookworm");
        let architecture = text(&raw.base.architecture, "amd64");
        if architecture != "amd64"
            && let Some(a) = &raw.base.architecture
        {
            err(
                a.span(),
                format!("architecture `{architecture}` is not supported yet (only `amd64`)"),
            );
        }
        let mut packages: Vec<String> = Vec::new();
        for p in &raw.base.packages {
            let v = p.get_ref().trim();
            let ok = !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
            if !ok {
                err(p.span(), format!("`{v}` is not a Debian package name"));
            }
            packages.push(v.to_string());
        }
        packages.sort();
        packages.dedup();

        let units = |list: &[Spanned<String>], errs: &mut Vec<TomlError>| -> Vec<String> {
            let mut out: Vec<String> = list
                .iter()
                .map(|u| {
                    if !u.get_ref().contains('.') || !word_ok(u.get_ref()) {
                        errs.push(file.error(
                            u.span(),
                            format!("`{}` is not a systemd unit name", u.get_ref()),
                        ));
                    }
                    u.get_ref().clone()
                })
                .collect();
            out.sort();
            out.dedup();
            out
        };
        let enable = units(&raw.settings.enable, &mut errors);
        let mask = units(&raw.settings.mask, &mut errors);
        for m in &mask {
            if enable.contains(m) {
                errors.push(file.error(0..0, format!("unit `{m}` is both enabled and masked")));
            }
        }
        let mut kernel_cmdline = Vec::new();
        for w in &raw.settings.kernel_cmdline {
            if !word_ok(w.get_ref()) {
                errors.push(file.error(
                    w.span(),
                    "kernel command-line words may not contain spaces or quotes",
                ));
            }
            kernel_cmdline.push(w.get_ref().clone());
        }
        let hostname = text(&raw.settings.hostname, "debian");
        if let Some(h) = &raw.settings.hostname
            && (hostname.is_empty()
                || hostname.len() > 63
                || !hostname
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            errors.push(file.error(h.span(), format!("`{hostname}` is not a host name")));
        }
        let datasources = raw.settings.datasources.as_ref().map_or_else(
            || vec!["NoCloud".to_string(), "Exoscale".to_string()],
            |d| d.iter().map(|s| s.get_ref().clone()).collect(),
        );

        let mut size_of = |v: &Option<Spanned<String>>, default: u64, what: &str| -> u64 {
            match v {
                None => default,
                Some(s) => match parse_size(s.get_ref()) {
                    Ok(n) if n % (1 << 20) == 0 && n > 0 => n,
                    Ok(_) => {
                        errors.push(file.error(
                            s.span(),
                            format!("{what} must be a positive multiple of 1 MiB"),
                        ));
                        default
                    }
                    Err(e) => {
                        errors.push(file.error(s.span(), e));
                        default
                    }
                },
            }
        };
        let size = size_of(&raw.disk.size, 2 << 30, "`disk.size`");
        let esp_size = size_of(&raw.disk.esp_size, 64 << 20, "`disk.esp-size`");
        if esp_size < 32 << 20
            && let Some(s) = &raw.disk.esp_size
        {
            errors.push(file.error(s.span(), "the ESP needs at least 32M (FAT32)"));
        }
        if size < esp_size + (256 << 20)
            && let Some(s) = &raw.disk.size
        {
            errors.push(file.error(
                s.span(),
                "the disk must hold the ESP and at least 256M of root file system",
            ));
        }
        let mut boot: Vec<BootMode> = raw.disk.boot.as_ref().map_or_else(
            || vec![BootMode::Bios, BootMode::Uefi],
            |b| b.get_ref().clone(),
        );
        boot.sort();
        boot.dedup();
        if boot.is_empty()
            && let Some(b) = &raw.disk.boot
        {
            errors.push(file.error(
                b.span(),
                "`disk.boot` needs at least one of \"bios\", \"uefi\"",
            ));
        }

        if !errors.is_empty() {
            return Err(errors.into());
        }
        Ok(Image {
            name,
            description: raw.description.unwrap_or_default().trim().to_string(),
            layers,
            base: Base {
                suite,
                updates: raw.base.updates.unwrap_or(true),
                architecture,
                variant: raw.base.variant.unwrap_or(Variant::Minbase),
                kernel: text(&raw.base.kernel, "linux-image-cloud-amd64"),
                packages,
            },
            settings: Settings {
                hostname,
                hostname_from_metadata: raw.settings.hostname_from_metadata.unwrap_or(true),
                kernel_cmdline,
                enable,
                mask,
                datasources,
                default_user: text(&raw.settings.default_user, "debian"),
                timezone: text(&raw.settings.timezone, "Etc/UTC"),
                locale: text(&raw.settings.locale, "C.UTF-8"),
            },
            disk: Disk {
                size,
                esp_size,
                boot,
                grow: raw.disk.grow.unwrap_or(true),
            },
            output: Output {
                format: raw.output.format.unwrap_or(Format::Qcow2),
                compression: raw.output.compression.unwrap_or(Compression::None),
            },
            file: file.clone(),
            layer_spans,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Image, Diagnostics> {
        Image::parse(&SourceFile::new("images/hello.toml", text), "hello")
    }

    #[test]
    fn defaults() {
        let i = parse("name = \"hello\"\nlayers = [\"greeting\"]\n").unwrap();
        assert_eq!(i.base.suite, "bookworm");
        assert_eq!(i.base.suites(), ["bookworm", "bookworm-updates"]);
        assert_eq!(
            i.base.roots(),
            [
                "initramfs-tools",
                "linux-image-cloud-amd64",
                "systemd-sysv",
                "udev"
            ]
        );
        assert_eq!(i.disk.boot, [BootMode::Bios, BootMode::Uefi]);
        assert_eq!(i.disk.size, 2 << 30);
        assert_eq!(i.output.format, Format::Qcow2);
    }

    #[test]
    fn errors_point_at_values() {
        let e = parse("name = \"hello\"\n[disk]\nsize = \"2X\"\nboot = [\"efi\"]\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("images/hello.toml:4:9"), "{msg}");
        let e = parse("name = \"hello\"\n[disk]\nsize = \"2X\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown unit `X`"), "{e}");
        let e = parse("name = \"hello\"\n[base]\npackages = [\"Bad Name\"]\n").unwrap_err();
        assert!(e.to_string().contains("not a Debian package name"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert!(parse_size("x").is_err());
    }
}
