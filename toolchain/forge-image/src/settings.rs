//! Image settings applied on top of the layers: identity files, mounts, units, first-boot
//! configuration, and removal of everything that must not be shared between machines
//! (SSH host keys, random seeds, machine ids) or that records the build (logs).

use forge_schema::image::Image;

use crate::ImageError;
use crate::compose::{Kind, Rootfs};
use crate::plan::Ids;

/// The kernel command line of an image.
pub fn kernel_cmdline(image: &Image, ids: &Ids) -> String {
    let mut words = vec![
        format!("root=UUID={}", ids.fs_uuid),
        "ro".to_string(),
        "console=tty0".to_string(),
        "console=ttyS0,115200".to_string(),
    ];
    words.extend(image.settings.kernel_cmdline.iter().cloned());
    words.join(" ")
}

/// Where a unit file is, if the image has it.
fn unit_file(rootfs: &Rootfs, name: &str) -> Option<String> {
    [
        "etc/systemd/system",
        "usr/lib/systemd/system",
        "lib/systemd/system",
    ]
    .iter()
    .map(|dir| rootfs.resolve(&format!("{dir}/{name}")))
    .find(|k| matches!(rootfs.get(k).map(|i| &i.kind), Some(Kind::File)))
}

fn enable(rootfs: &mut Rootfs, name: &str) -> Result<(), ImageError> {
    let key = unit_file(rootfs, name).ok_or_else(|| {
        ImageError::Compose(format!(
            "unit `{name}` is to be enabled, but neither the base packages nor the layers install it"
        ))
    })?;
    let text = String::from_utf8_lossy(&rootfs.read(&key)?).into_owned();
    let targets = forge_schema::unit::install_targets(&text);
    if targets.is_empty() {
        return Err(ImageError::Compose(format!(
            "unit `{name}` has no [Install] section with WantedBy= or RequiredBy=, so it cannot be enabled"
        )));
    }
    for (target, dir) in targets {
        rootfs.put_symlink(
            &format!("etc/systemd/system/{target}.{dir}/{name}"),
            &format!("/{key}"),
        )?;
    }
    Ok(())
}

/// Where an image says what it is (shell-sourceable, like os-release).
pub const IMAGE_INFO: &str = "usr/lib/forge/image";

/// Applies the settings of `image`, whose hash is `hash`.
pub fn apply(
    rootfs: &mut Rootfs,
    image: &Image,
    hash: &forge_schema::Sha256Digest,
    ids: &Ids,
) -> Result<(), ImageError> {
    let s = &image.settings;
    rootfs.put_file(
        IMAGE_INFO,
        format!("FORGE_IMAGE={}\nFORGE_IMAGE_HASH={hash}\n", image.name),
        0o644,
    )?;
    rootfs.put_file("etc/hostname", format!("{}\n", s.hostname), 0o644)?;
    rootfs.put_file(
        "etc/hosts",
        format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
            s.hostname
        ),
        0o644,
    )?;
    // Empty: systemd makes a fresh id at first boot, unique to the machine.
    rootfs.put_file("etc/machine-id", "", 0o444)?;
    let grow = if image.disk.grow {
        ",x-systemd.growfs"
    } else {
        ""
    };
    rootfs.put_file(
        "etc/fstab",
        format!(
            "# Written by forge.\nUUID={} / ext4 defaults,errors=remount-ro{grow} 0 1\n",
            ids.fs_uuid
        ),
        0o644,
    )?;
    if image.disk.grow {
        // systemd-repart grows the root partition to the disk, then growfs the file system.
        rootfs.put_file(
            "etc/repart.d/50-root.conf",
            "[Partition]\nType=root-x86-64\n",
            0o644,
        )?;
    }
    if rootfs
        .get(&rootfs.resolve(&format!("usr/share/zoneinfo/{}", s.timezone)))
        .is_some()
    {
        rootfs.put_symlink(
            "etc/localtime",
            &format!("/usr/share/zoneinfo/{}", s.timezone),
        )?;
    }
    rootfs.put_file("etc/timezone", format!("{}\n", s.timezone), 0o644)?;
    rootfs.put_file("etc/default/locale", format!("LANG={}\n", s.locale), 0o644)?;
    // The image is immutable: its packages are pinned in lockfile.toml, and the archive the
    // build used (a local repository) means nothing on a running machine.
    rootfs.put_file(
        "etc/apt/sources.list",
        "# forge image: the packages are pinned in the project's lockfile.toml; no archive is configured.\n",
        0o644,
    )?;
    let resolved = rootfs
        .get(&rootfs.resolve("usr/lib/systemd/system/systemd-resolved.service"))
        .is_some();
    if resolved {
        rootfs.put_symlink("etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf")?;
    } else {
        rootfs.put_file("etc/resolv.conf", "", 0o644)?;
    }
    if unit_file(rootfs, "systemd-networkd.service").is_some() {
        rootfs.put_file(
            "etc/systemd/network/80-forge-dhcp.network",
            "# Written by forge: DHCP on every Ethernet interface.\n[Match]\nType=ether\n\n[Network]\nDHCP=yes\n",
            0o644,
        )?;
        enable(rootfs, "systemd-networkd.service")?;
    }
    if rootfs.get(&rootfs.resolve("usr/bin/cloud-init")).is_some() {
        rootfs.put_file(
            "etc/cloud/cloud.cfg.d/90-forge.cfg",
            format!(
                "# Written by forge from images/{}.toml.\ndatasource_list: [ {}, None ]\npreserve_hostname: {}\n",
                image.name,
                s.datasources.join(", "),
                !s.hostname_from_metadata
            ),
            0o644,
        )?;
    }
    for unit in &s.enable {
        enable(rootfs, unit)?;
    }
    for unit in &s.mask {
        rootfs.put_symlink(&format!("etc/systemd/system/{unit}"), "/dev/null")?;
    }
    // Nothing that must differ between machines, or that records the build.
    rootfs.remove_where(|k| {
        k.starts_with("etc/ssh/ssh_host_")
            || k == "var/lib/systemd/random-seed"
            || k == "var/lib/dbus/machine-id"
            || k == "var/cache/ldconfig/aux-cache"
            || (k.starts_with("var/log/") && !k.starts_with("var/log/journal"))
    });
    Ok(())
}
