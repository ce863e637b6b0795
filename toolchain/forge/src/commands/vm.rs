//! `forge vm IMAGE`: boot a built image (or a disk file) under QEMU, serial console on
//! stdout; `--expect` ends the run at a matching console line.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use forge_image::vm::{Forward, VmExit, VmOptions};
use forge_schema::image::BootMode;
use serde_json::json;

use crate::cli::{BootArg, VmArgs};
use crate::settings::{Globals, temp_dir, tool_path, vm_accel};

pub fn run(g: &Globals, args: &VmArgs) -> Result<()> {
    let as_file = Path::new(&args.image);
    let (disk, format, name, modes) = if as_file.is_file() {
        let format = if args.image.ends_with(".qcow2") {
            "qcow2"
        } else {
            "raw"
        };
        let name = as_file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "forge-vm".into());
        (
            as_file.to_path_buf(),
            format.to_string(),
            name,
            vec![BootMode::Bios, BootMode::Uefi],
        )
    } else {
        let name = args
            .image
            .strip_prefix("image:")
            .unwrap_or(&args.image)
            .to_string();
        let project = g.project(None)?;
        let image = project.definitions()?.images.get(&name).ok_or_else(|| {
            anyhow!(
                "no image named `{name}` in images/, and no file `{}`",
                args.image
            )
        })?;
        let modes = image.disk.boot.clone();
        let project = project.locked("the image is not built; run `forge build images`")?;
        let store = g.open_store(false)?;
        let (out, disk) = project.image_disk(&store, &name)?;
        (disk, out.format, name, modes)
    };
    let boot = match args.boot {
        Some(BootArg::Bios) => BootMode::Bios,
        Some(BootArg::Uefi) => BootMode::Uefi,
        None => modes.first().copied().unwrap_or(BootMode::Bios),
    };
    if !modes.contains(&boot) {
        bail!(
            "image `{name}` does not boot with {}; it boots with {:?}",
            boot.as_str(),
            modes
        );
    }
    let accel = vm_accel(args.accel, &g.env);
    let forwards = args
        .forwards
        .iter()
        .map(|f| f.parse::<Forward>().map_err(|e| anyhow!(e)))
        .collect::<Result<Vec<_>>>()?;
    let user_data = match &args.user_data {
        Some(p) => {
            Some(std::fs::read(p).with_context(|| format!("cannot read `{}`", p.display()))?)
        }
        None => None,
    };
    let expect = match &args.expect {
        Some(re) => Some(
            regex::Regex::new(re)
                .with_context(|| format!("`{re}` is not a valid regular expression"))?,
        ),
        None => None,
    };
    let timeout = args
        .timeout
        .or(expect.as_ref().map(|_| 300))
        .map(std::time::Duration::from_secs);
    let options = VmOptions {
        disk,
        format,
        boot,
        accel,
        memory_mib: args.memory,
        cpus: args.cpus,
        user_data,
        name: name.clone(),
        forwards,
        expect,
        timeout,
        search_path: tool_path(&g.env),
        temp_dir: temp_dir(&g.env),
    };
    g.printer.status(
        "Booting",
        &format!("{name} ({}, {})", boot.as_str(), options.disk.display()),
    );
    let mut stdout = std::io::stdout();
    let mut sink = std::io::sink();
    let console: &mut dyn std::io::Write = if g.printer.json() {
        &mut sink
    } else {
        &mut stdout
    };
    match forge_image::vm::run(&options, console)? {
        VmExit::Matched { line, seconds } => {
            g.printer
                .status("Matched", &format!("after {seconds:.1}s: {line}"));
            if g.printer.json() {
                g.printer.print_json(&json!({"image": name, "boot": boot.as_str(), "matched": line, "seconds": seconds}));
            }
            Ok(())
        }
        VmExit::Exited(code) => {
            if code == 0 {
                Ok(())
            } else {
                bail!("the machine exited with status {code}")
            }
        }
    }
}
