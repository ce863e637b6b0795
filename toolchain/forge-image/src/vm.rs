//! `forge vm`: boot a disk image under QEMU with its serial console on stdout, a NoCloud
//! seed made from user-data, user-mode networking with port forwards, and optionally wait
//! for a line on the console (like `mkosi qemu`, `nixos-rebuild build-vm`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use forge_schema::Sha256Digest;
use forge_schema::image::BootMode;

use crate::ImageError;

/// Where OVMF's firmware is on Debian.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// Hardware acceleration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when `/dev/kvm` can be opened, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// A port forward from the host's loopback to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub host: u16,
    pub guest: u16,
}

impl std::str::FromStr for Forward {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (h, g) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: write HOSTPORT:GUESTPORT, e.g. 8200:8200"))?;
        let port = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("`{p}` is not a port number"))
        };
        Ok(Self {
            host: port(h)?,
            guest: port(g)?,
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct VmOptions {
    pub disk: PathBuf,
    pub format: String,
    pub boot: BootMode,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub user_data: Option<Vec<u8>>,
    /// Instance name for the NoCloud meta-data (`local-hostname`).
    pub name: String,
    pub forwards: Vec<Forward>,
    /// Stop with success at the first console line matching this.
    pub expect: Option<regex::Regex>,
    pub timeout: Option<Duration>,
    /// Where to look for QEMU (the caller's PATH).
    pub search_path: std::ffi::OsString,
    /// Where the NoCloud seed is made (the caller's TMPDIR, else `/tmp`).
    pub temp_dir: PathBuf,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum VmExit {
    /// `--expect` matched this line after so many seconds.
    Matched { line: String, seconds: f64 },
    /// The machine powered off (status code of QEMU).
    Exited(i32),
}

fn resolve_accel(a: Accel) -> &'static str {
    match a {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
        Accel::Auto => {
            let usable = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok();
            if usable { "kvm" } else { "tcg" }
        }
    }
}

/// A NoCloud seed: a FAT volume labelled CIDATA with `user-data` and `meta-data`.
fn make_seed(dir: &Path, user_data: &[u8], name: &str) -> Result<PathBuf, ImageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Io {
            path: path.clone(),
            source,
        }
    };
    let ud = dir.join("user-data");
    let md = dir.join("meta-data");
    std::fs::write(&ud, user_data).map_err(io(&ud))?;
    let instance = Sha256Digest::of(user_data).short();
    std::fs::write(
        &md,
        format!("instance-id: forge-vm-{instance}\nlocal-hostname: {name}\n"),
    )
    .map_err(io(&md))?;
    let seed = dir.join("seed.img");
    let run = |mut c: Command, what: &str| -> Result<(), ImageError> {
        let out = c
            .output()
            .map_err(|e| ImageError::Tool(format!("{what}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ImageError::Tool(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    };
    let mut c = Command::new("mkfs.fat");
    c.args(["-n", "CIDATA", "-C"]).arg(&seed).arg("2048");
    run(c, "mkfs.fat (NoCloud seed)")?;
    let mut c = Command::new("mcopy");
    c.env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&seed)
        .arg(&ud)
        .arg(&md)
        .arg("::/");
    run(c, "mcopy (NoCloud seed)")?;
    Ok(seed)
}

/// Whether `program` is an executable in one of the directories of `paths` (a PATH).
fn in_path(program: &str, paths: &std::ffi::OsStr) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(paths).any(|d| {
        std::fs::metadata(d.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn qemu_command(o: &VmOptions, seed: Option<&Path>) -> Command {
    // The machine must not outlive forge, even when forge is killed outright (SIGKILL runs
    // no destructor): util-linux's `setpriv --pdeathsig` (util-linux is Essential in
    // Debian) makes the kernel kill QEMU when forge goes. std's Command could only do this
    // with an unsafe `pre_exec`, which this workspace denies.
    let mut c = if in_path("setpriv", &o.search_path) {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "KILL", "--", "qemu-system-x86_64"]);
        c
    } else {
        Command::new("qemu-system-x86_64")
    };
    c.args([
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-serial",
        "stdio",
        "-monitor",
        "none",
    ])
    .args(["-accel", resolve_accel(o.accel)])
    .args(["-m", &o.memory_mib.to_string(), "-smp", &o.cpus.to_string()])
    .args(["-vga", "none"]);
    if o.boot == BootMode::Uefi {
        c.args(["-bios", OVMF]);
    }
    c.arg("-drive").arg(format!(
        "file={},if=virtio,format={},snapshot=on",
        o.disk.display(),
        o.format
    ));
    if let Some(seed) = seed {
        c.arg("-drive").arg(format!(
            "file={},if=virtio,format=raw,readonly=on",
            seed.display()
        ));
    }
    let mut nic = "user,model=virtio-net-pci".to_string();
    for f in &o.forwards {
        nic.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest));
    }
    c.args(["-nic", &nic]);
    c
}

/// Removes terminal escape sequences and carriage returns from a console line.
fn clean(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ ... final byte in @..~
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots the machine. Console lines go to `console` as they come.
pub fn run(o: &VmOptions, console: &mut dyn Write) -> Result<VmExit, ImageError> {
    let dir = tempfile::tempdir_in(&o.temp_dir).map_err(|source| ImageError::Io {
        path: o.temp_dir.clone(),
        source,
    })?;
    let seed = match &o.user_data {
        Some(ud) => Some(make_seed(dir.path(), ud, &o.name)?),
        None => None,
    };
    if !in_path("qemu-system-x86_64", &o.search_path) {
        return Err(ImageError::Tool(
            "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into(),
        ));
    }
    let mut cmd = qemu_command(o, seed.as_deref());
    tracing::info!("running {cmd:?}");
    let interactive = o.expect.is_none();
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if interactive {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    let child = cmd.spawn().map_err(|e| {
        ImageError::Tool(format!(
            "cannot start qemu-system-x86_64: {e} (install qemu-system-x86)"
        ))
    })?;
    let mut child = Kill(child);
    let stdout = child
        .0
        .stdout
        .take()
        .ok_or_else(|| ImageError::Tool("no console output".into()))?;
    let stderr = child.0.stderr.take();
    let (tx, rx) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) => {
                    if tx
                        .send(Some(String::from_utf8_lossy(&buf).into_owned()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let started = Instant::now();
    loop {
        let wait = match o.timeout {
            Some(t) => match t.checked_sub(started.elapsed()) {
                Some(left) => left,
                None => break,
            },
            None => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Some(raw)) => {
                let _ = console.write_all(raw.as_bytes());
                let _ = console.flush();
                let line = clean(raw.trim_end_matches('\n'));
                if let Some(re) = &o.expect
                    && re.is_match(&line)
                {
                    return Ok(VmExit::Matched {
                        line,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
            }
            Ok(None) => {
                let status = child
                    .0
                    .wait()
                    .map_err(|e| ImageError::Tool(format!("qemu: {e}")))?;
                let mut err = String::new();
                if let Some(mut e) = stderr {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                if o.expect.is_some() {
                    return Err(ImageError::Tool(format!(
                        "the machine stopped ({status}) before the console printed a line matching the expected pattern{}",
                        if err.trim().is_empty() {
                            String::new()
                        } else {
                            format!("\nqemu: {}", err.trim())
                        }
                    )));
                }
                return Ok(VmExit::Exited(status.code().unwrap_or(-1)));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if o.timeout.is_some() {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Err(ImageError::Timeout(format!(
        "no console line matched `{}` within {} s",
        o.expect.as_ref().map_or("", |r| r.as_str()),
        o.timeout.map_or(0, |t| t.as_secs())
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_console_lines() {
        assert_eq!(
            clean("\x1b[0;32m  OK  \x1b[0m] Started x\r"),
            "  OK  ] Started x"
        );
        assert_eq!(
            "8200:8200".parse::<Forward>(),
            Ok(Forward {
                host: 8200,
                guest: 8200
            })
        );
        assert!("8200".parse::<Forward>().is_err());
    }
}
