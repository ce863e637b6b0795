//! From a root file system tar to a bootable disk: an ext4 root made by `mke2fs -d`, a FAT
//! ESP that boots with systemd-boot under UEFI and with syslinux under BIOS, a GPT written
//! by forge, and the qcow2 conversion. Every tool runs with SOURCE_DATE_EPOCH, TZ=UTC,
//! LC_ALL=C and fixed identifiers, so the bytes depend only on the inputs.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use forge_schema::image::{BootMode, Compression, Format, Image};

use crate::ImageError;
use crate::gpt::{self, Guid, Partition};
use crate::plan::Ids;
use crate::tools;
use crate::tools::ToolEnv;

const MIB: u64 = 1 << 20;

/// Where the partitions go.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub size: u64,
    pub esp_offset: u64,
    pub esp_size: u64,
    pub root_offset: u64,
    pub root_size: u64,
}

impl Layout {
    /// 1 MiB for the GPT and alignment, the ESP, the root file system, and 1 MiB at the
    /// end for the backup GPT.
    pub fn of(image: &Image) -> Self {
        let size = image.disk.size;
        let esp_offset = MIB;
        let esp_size = image.disk.esp_size;
        let root_offset = esp_offset + esp_size;
        let root_size = size - root_offset - MIB;
        Self {
            size,
            esp_offset,
            esp_size,
            root_offset,
            root_size,
        }
    }
}

/// A command with a fixed environment.
fn tool(program: &str, env: &ToolEnv) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", &env.path)
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("SOURCE_DATE_EPOCH", env.sde.to_string())
        // mtools: never ask, never look at ~/.mtoolsrc.
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("MTOOLSRC", "/dev/null");
    c
}

fn run(mut cmd: Command, what: &str) -> Result<(), ImageError> {
    let out = cmd.output().map_err(|e| {
        ImageError::Tool(format!("{what}: cannot run {:?}: {e}", cmd.get_program()))
    })?;
    if !out.status.success() {
        return Err(ImageError::Tool(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// `mke2fs` features, pinned so the host's `/etc/mke2fs.conf` does not decide the layout.
/// `metadata_csum_seed` and `orphan_file` are off for older e2fsck and boot loaders.
const EXT4_FEATURES: &str = "has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize,sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr,^metadata_csum_seed,^orphan_file";

const MKE2FS_CONF: &str = "[defaults]\n\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr\n\tdefault_mntopts = acl,user_xattr\n\tenable_periodic_fsck = 0\n\tblocksize = 4096\n\tinode_size = 256\n\tinode_ratio = 16384\n\n[fs_types]\n\text4 = {\n\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize\n\t}\n";

/// The root file system image.
pub fn make_root(
    rootfs_tar: &Path,
    out: &Path,
    layout: &Layout,
    ids: &Ids,
    env: &ToolEnv,
    work: &Path,
) -> Result<(), ImageError> {
    let conf = work.join("mke2fs.conf");
    fs::write(&conf, MKE2FS_CONF).map_err(|source| ImageError::Io {
        path: conf.clone(),
        source,
    })?;
    let mut c = tool("mke2fs", env);
    // libarchive needs a UTF-8 locale for non-ASCII file names in the tar.
    c.env("LC_ALL", "C.UTF-8")
        .env("MKE2FS_CONFIG", &conf)
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-I",
            "256",
            "-L",
            "root",
            "-U",
            &ids.fs_uuid.to_string(),
            "-O",
            EXT4_FEATURES,
            "-E",
            &format!(
                "hash_seed={},lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0,nodiscard",
                ids.hash_seed
            ),
            "-d",
        ]);
    c.arg(rootfs_tar)
        .arg(out)
        .arg((layout.root_size / 4096).to_string());
    run(c, "mke2fs (root file system)")
}

fn write_file(path: &Path, bytes: &[u8], sde: u64) -> Result<(), ImageError> {
    let err = |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).map_err(err)?;
    }
    fs::write(path, bytes).map_err(err)?;
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(sde);
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .map_err(err)
}

/// What the boot loaders load.
#[derive(Debug, Clone)]
pub struct BootFiles {
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
    pub cmdline: String,
}

/// The EFI system partition image: kernel and initrd, systemd-boot for UEFI, syslinux for
/// BIOS, both booting the same kernel with the same command line.
pub fn make_esp(
    image: &Image,
    out: &Path,
    boot: &BootFiles,
    layout: &Layout,
    ids: &Ids,
    env: &ToolEnv,
    work: &Path,
) -> Result<(), ImageError> {
    let sde = env.sde;
    let stage = work.join("esp");
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("debian/vmlinuz", boot.kernel.clone()),
        ("debian/initrd.img", boot.initrd.clone()),
    ];
    let title = format!("{} (forge image, Debian {})", image.name, image.base.suite);
    if image.disk.boot.contains(&BootMode::Uefi) {
        let efi = fs::read(tools::SYSTEMD_BOOT_EFI).map_err(|source| ImageError::Io {
            path: PathBuf::from(tools::SYSTEMD_BOOT_EFI),
            source,
        })?;
        files.push(("EFI/BOOT/BOOTX64.EFI", efi));
        files.push((
            "loader/loader.conf",
            b"timeout 0\ndefault forge.conf\nrandom-seed-mode off\n".to_vec(),
        ));
        files.push((
            "loader/entries/forge.conf",
            format!(
                "title {title}\nlinux /debian/vmlinuz\ninitrd /debian/initrd.img\noptions {}\n",
                boot.cmdline
            )
            .into_bytes(),
        ));
    }
    if image.disk.boot.contains(&BootMode::Bios) {
        files.push((
            "syslinux/syslinux.cfg",
            format!(
                "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT forge\nLABEL forge\n  MENU LABEL {title}\n  LINUX /debian/vmlinuz\n  INITRD /debian/initrd.img\n  APPEND {}\n",
                boot.cmdline
            )
            .into_bytes(),
        ));
    }
    for (name, bytes) in &files {
        write_file(&stage.join(name), bytes, sde)?;
    }
    let _ = fs::remove_file(out);
    let mut c = tool("mkfs.fat", env);
    // `--invariant` first: it resets the volume id, which `-i` then sets.
    c.args([
        "--invariant",
        "-i",
        &format!("{:08X}", ids.fat_volume_id),
        "-F",
        "32",
        "-S",
        "512",
        "-s",
        "1",
        "-h",
        &(layout.esp_offset / 512).to_string(),
        "-n",
        "ESP",
        "-C",
    ]);
    c.arg(out).arg((layout.esp_size / 1024).to_string());
    run(c, "mkfs.fat (ESP)")?;
    let mut dirs: Vec<String> = Vec::new();
    for (name, _) in &files {
        let mut p = Path::new(name).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            let s = format!("::/{}", d.display());
            if !dirs.contains(&s) {
                dirs.push(s);
            }
            p = d.parent();
        }
    }
    dirs.sort_by_key(|d| d.len());
    let mut c = tool("mmd", env);
    c.arg("-i").arg(out).args(&dirs);
    run(c, "mmd (ESP directories)")?;
    for (name, _) in &files {
        let mut c = tool("mcopy", env);
        c.arg("-m")
            .arg("-i")
            .arg(out)
            .arg(stage.join(name))
            .arg(format!("::/{name}"));
        run(c, "mcopy (ESP files)")?;
    }
    if image.disk.boot.contains(&BootMode::Bios) {
        let mut c = tool("syslinux", env);
        c.args(["--install", "--directory", "/syslinux"]).arg(out);
        run(c, "syslinux (BIOS boot loader)")?;
    }
    Ok(())
}

/// Copies `src` into `dst` at `offset`, only the data regions of a sparse `src` (found
/// with `SEEK_DATA`/`SEEK_HOLE`), so the disk stays sparse and holes are never read.
fn copy_sparse(src: &Path, dst: &mut File, offset: u64) -> Result<(), ImageError> {
    use rustix::fs::{SeekFrom as RSeek, seek};
    let err = |source| ImageError::Io {
        path: src.to_path_buf(),
        source,
    };
    let errno = |e: rustix::io::Errno| ImageError::Io {
        path: src.to_path_buf(),
        source: e.into(),
    };
    let mut f = File::open(src).map_err(err)?;
    let len = f.metadata().map_err(err)?.len();
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = 0u64;
    while pos < len {
        let start = match seek(&f, RSeek::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(errno(e)),
        };
        let end = seek(&f, RSeek::Hole(start)).map_err(errno)?.min(len);
        f.seek(SeekFrom::Start(start)).map_err(err)?;
        dst.seek(SeekFrom::Start(offset + start)).map_err(err)?;
        let mut left = end - start;
        while left > 0 {
            let n = usize::try_from(left.min(MIB)).unwrap_or(buf.len());
            f.read_exact(&mut buf[..n]).map_err(err)?;
            dst.write_all(&buf[..n]).map_err(err)?;
            left -= n as u64;
        }
        pos = end;
    }
    Ok(())
}

/// The raw disk: GPT, ESP and root in place, the BIOS boot code in the protective MBR.
pub fn assemble(
    image: &Image,
    out: &Path,
    esp: &Path,
    root: &Path,
    layout: &Layout,
    ids: &Ids,
) -> Result<(), ImageError> {
    let err = |source| ImageError::Io {
        path: out.to_path_buf(),
        source,
    };
    let _ = fs::remove_file(out);
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(out)
        .map_err(err)?;
    f.set_len(layout.size).map_err(err)?;
    let bios = image.disk.boot.contains(&BootMode::Bios);
    let parse =
        |s: &str| Guid::parse(s).ok_or_else(|| ImageError::Compose(format!("bad GUID {s}")));
    let parts = [
        Partition {
            type_guid: parse(gpt::ESP_TYPE)?,
            guid: ids.esp,
            first_lba: layout.esp_offset / 512,
            last_lba: (layout.esp_offset + layout.esp_size) / 512 - 1,
            attributes: if bios { gpt::LEGACY_BIOS_BOOTABLE } else { 0 },
            name: "esp".into(),
        },
        Partition {
            type_guid: parse(gpt::ROOT_X86_64_TYPE)?,
            guid: ids.root,
            first_lba: layout.root_offset / 512,
            last_lba: (layout.root_offset + layout.root_size) / 512 - 1,
            attributes: 0,
            name: "root".into(),
        },
    ];
    let boot_code = if bios {
        Some(
            fs::read(tools::GPTMBR_BIN).map_err(|source| ImageError::Io {
                path: PathBuf::from(tools::GPTMBR_BIN),
                source,
            })?,
        )
    } else {
        None
    };
    gpt::write(&mut f, layout.size, ids.disk, &parts, boot_code.as_deref()).map_err(err)?;
    copy_sparse(esp, &mut f, layout.esp_offset)?;
    copy_sparse(root, &mut f, layout.root_offset)?;
    f.sync_all().map_err(err)
}

/// The output file: the raw disk moved, or converted to qcow2 by `qemu-img` (in-order
/// writes, so the result is deterministic).
pub fn convert(image: &Image, raw: &Path, out: &Path, env: &ToolEnv) -> Result<(), ImageError> {
    match image.output.format {
        Format::Raw => fs::rename(raw, out).map_err(|source| ImageError::Io {
            path: out.to_path_buf(),
            source,
        }),
        Format::Qcow2 => {
            let mut c = tool("qemu-img", env);
            c.args([
                "convert",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                "compat=1.1,cluster_size=65536",
            ]);
            if image.output.compression == Compression::Zlib {
                c.arg("-c");
            }
            c.arg(raw).arg(out);
            run(c, "qemu-img convert")
        }
    }
}
