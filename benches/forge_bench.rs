//! forge's benchmarks, each as a ratio against a reference tool measured in the same run:
//!
//! 1. `forge hash` of a 1 GiB file vs `sha256sum` (goal: ratio >= 0.9);
//! 2. packing a 1 GiB tree of mixed files into a layer vs
//!    `tar --sort=name ... | zstd -3` (goal: ratio >= 1.0, forge no slower);
//! 3. a no-op `forge -C examples/hello build` with everything cached (goal: < 100 ms),
//!    against `forge --version` (process start-up) as the floor;
//! 4. starting a program in the build sandbox (bubblewrap: namespaces, the tools' root,
//!    mounts, a fixed environment) against starting it directly (goal: < 50 ms above it).
//!
//! Run: `cargo bench --bench forge-bench` (options after `--`: `--size-mib N`,
//! `--runs N`, `--dir DIR`). Data is generated deterministically under `--dir`
//! (default `target/bench-data`) and reused. Ratios are reference time / forge time, so
//! above 1 means forge is faster. Each figure is the median of `--runs` runs after one
//! warm-up run each, the reference and forge alternating, so both read from the page cache
//! and a change in machine load affects both alike.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Options {
    size_mib: u64,
    runs: usize,
    dir: PathBuf,
}

fn options() -> Options {
    let mut o = Options {
        size_mib: 1024,
        runs: 3,
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let next = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--size-mib" => o.size_mib = next.parse().expect("--size-mib N"),
            "--runs" => o.runs = next.parse().expect("--runs N"),
            "--dir" => o.dir = PathBuf::from(next),
            // `cargo bench` passes `--bench`; ignore it and anything unknown.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

/// xorshift64: fast, deterministic bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Text that compresses like source code or config (about 4:1 with zstd -3).
fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "server",
        "listener",
        "tls_cert_file",
        "=",
        "{",
        "}",
        "vault",
        "etcd",
        "kubelet",
        "cluster",
        "ExecStart",
        "/usr/bin",
        "--config",
        "true",
        "false",
        "8200",
        "2379",
        "# comment",
        "\n",
        "\n    ",
        "address",
        "storage",
        "raft",
        "node_id",
        "retry_join",
        "leader_api_addr",
    ];
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        out.push(b' ');
        if rng.next().is_multiple_of(7) {
            out.extend_from_slice(format!("{:x}", rng.next() % 100_000).as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// A tree like an image layer: a few large binaries (incompressible), many small text
/// files, some mid-sized ones, nested directories and symlinks. About `size` bytes.
fn make_tree(dir: &Path, size: u64) {
    let stamp = dir.join(".complete");
    if fs::read_to_string(&stamp).is_ok_and(|s| s == size.to_string()) {
        return;
    }
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    let mut rng = Rng(0x5EED_F00D_1234_5678);
    let mut written = 0u64;
    let mut i = 0u64;
    // 40% in large binaries of 16-64 MiB.
    while written < size * 4 / 10 {
        let len = (16 << 20) + (rng.next() % (48 << 20));
        let mut buf = vec![0u8; len as usize];
        rng.fill(&mut buf);
        let d = dir.join("usr/bin");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("tool-{i}")), &buf).unwrap();
        written += len;
        i += 1;
    }
    // 35% in mid-sized text/data files of 64 KiB - 2 MiB.
    while written < size * 75 / 100 {
        let len = (64 << 10) + rng.next() % (2 << 20);
        let d = dir.join(format!("usr/share/data/set{}", i % 20));
        fs::create_dir_all(&d).unwrap();
        let body = if i.is_multiple_of(3) {
            let mut b = vec![0u8; len as usize];
            rng.fill(&mut b);
            b
        } else {
            text(&mut rng, len as usize)
        };
        fs::write(d.join(format!("file-{i}.dat")), body).unwrap();
        written += len;
        i += 1;
    }
    // The rest in small text files of 100 B - 16 KiB, deeply nested.
    while written < size {
        let len = 100 + rng.next() % (16 << 10);
        let d = dir.join(format!(
            "usr/lib/pkg{}/sub{}/deeper{}",
            i % 50,
            i % 7,
            i % 3
        ));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("f{i}.conf")), text(&mut rng, len as usize)).unwrap();
        if i.is_multiple_of(97) {
            let _ = std::os::unix::fs::symlink(format!("f{i}.conf"), d.join(format!("link{i}")));
        }
        written += len;
        i += 1;
    }
    fs::write(stamp, size.to_string()).unwrap();
}

fn make_file(path: &Path, size: u64) {
    if fs::metadata(path).is_ok_and(|m| m.len() == size) {
        return;
    }
    let mut rng = Rng(0xABCD_EF01_2345_6789);
    let mut f = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        rng.fill(&mut buf);
        let n = left.min(buf.len() as u64) as usize;
        std::io::Write::write_all(&mut f, &buf[..n]).unwrap();
        left -= n as u64;
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Median wall times of `runs` runs of a reference and of forge, after one warm-up each.
/// The two alternate, so a change in machine load affects both alike.
fn measure_pair(
    runs: usize,
    mut reference: impl FnMut(),
    mut ours: impl FnMut(),
) -> (Duration, Duration) {
    reference();
    ours();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        reference();
        a.push(t.elapsed());
        let t = Instant::now();
        ours();
        b.push(t.elapsed());
    }
    (median(a), median(b))
}

fn sh(script: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

fn forge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_forge"))
}

fn run_quiet(cmd: &mut Command) {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tool_version(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} 2>&1 | head -1"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() {
    let o = options();
    fs::create_dir_all(&o.dir).unwrap();
    let size = o.size_mib << 20;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "# forge benchmarks ({} MiB, median of {} runs, {cpus} CPUs)\n",
        o.size_mib, o.runs
    );
    println!("- sha256sum: {}", tool_version("sha256sum --version"));
    println!(
        "- tar: {}; zstd: {}\n",
        tool_version("tar --version"),
        tool_version("zstd --version")
    );
    println!(
        "| benchmark | reference | reference time | forge time | ratio (reference / forge) | goal |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");

    // 1. Hashing.
    let file = o.dir.join("hash-input.bin");
    make_file(&file, size);
    let (theirs, ours) = measure_pair(
        o.runs,
        || run_quiet(Command::new("sha256sum").arg(&file)),
        || run_quiet(forge().arg("hash").arg(&file)),
    );
    let ratio = theirs.as_secs_f64() / ours.as_secs_f64();
    println!(
        "| `forge hash` {} MiB file | `sha256sum` | {:.3} s | {:.3} s | {ratio:.2} | >= 0.9 {} |",
        o.size_mib,
        theirs.as_secs_f64(),
        ours.as_secs_f64(),
        if ratio >= 0.9 { "(met)" } else { "(NOT met)" }
    );

    // 2. Packing a tree into a layer.
    let tree = o.dir.join("tree");
    make_tree(&tree, size);
    let out_ref = o.dir.join("ref.tar.zst");
    let out_ours = o.dir.join("ours.tar.zst");
    let reference = format!(
        "tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C '{}' -cf - . | zstd -3 -q -f -o '{}'",
        tree.display(),
        out_ref.display()
    );
    let mut packed = None;
    let (theirs, ours) = measure_pair(
        o.runs,
        || sh(&reference),
        || {
            // What a `tree` step does: walk the tree, then pack it.
            let mut t = forge_layer::LayerTree::new();
            t.add_host_tree(&tree, None, 0, 0, "bench").unwrap();
            let f = fs::File::create(&out_ours).unwrap();
            packed = Some(t.pack(f, 0, u32::try_from(cpus).unwrap_or(1)).unwrap());
        },
    );
    let ratio = theirs.as_secs_f64() / ours.as_secs_f64();
    let packed = packed.unwrap();
    println!(
        "| pack {} MiB tree into a layer | `tar --sort=name ... \\| zstd -3` | {:.3} s | {:.3} s | {ratio:.2} | >= 1.0 {} |",
        o.size_mib,
        theirs.as_secs_f64(),
        ours.as_secs_f64(),
        if ratio >= 1.0 { "(met)" } else { "(NOT met)" }
    );

    // 3. No-op build.
    let store = o.dir.join("store");
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    let build = || {
        run_quiet(
            forge()
                .env("FORGE_STORE", &store)
                .arg("-C")
                .arg(&hello)
                .args(["build", "--locked", "-q"]),
        )
    };
    let noop_runs = o.runs.max(20);
    let (floor, ours) = measure_pair(noop_runs, || run_quiet(forge().arg("--version")), build);
    println!(
        "| no-op `forge -C examples/hello build` | `forge --version` | {:.1} ms | {:.1} ms | {:.2} | < 100 ms {} |",
        floor.as_secs_f64() * 1000.0,
        ours.as_secs_f64() * 1000.0,
        floor.as_secs_f64() / ours.as_secs_f64(),
        if ours < Duration::from_millis(100) {
            "(met)"
        } else {
            "(NOT met)"
        }
    );

    // 4. Sandbox start-up: `busybox true` in the sandbox of a build step, against the
    // same program started directly. Needs bwrap and Debian's busybox-static.
    if Path::new("/bin/busybox").is_file() {
        let work = o.dir.join("sandbox");
        let _ = fs::remove_dir_all(&work);
        let root = work.join("root");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        let sb = forge_build::sandbox::Sandbox::prepare(&work, root, &[]).unwrap();
        let argv = ["/bin/busybox".to_string(), "true".to_string()];
        let env = [("PATH".to_string(), sb.path_var())];
        let log = work.join("log");
        let runs = o.runs.max(20);
        let (direct, sandboxed) = measure_pair(
            runs,
            || run_quiet(Command::new("/bin/busybox").arg("true")),
            || sb.run(&argv, &env, &log).unwrap(),
        );
        let above = sandboxed.saturating_sub(direct);
        println!(
            "| start `busybox true` in the build sandbox | the same, started directly | {:.1} ms | {:.1} ms | {:.2} | < 50 ms above it {} |",
            direct.as_secs_f64() * 1000.0,
            sandboxed.as_secs_f64() * 1000.0,
            direct.as_secs_f64() / sandboxed.as_secs_f64(),
            if above < Duration::from_millis(50) {
                "(met)"
            } else {
                "(NOT met)"
            }
        );
    }

    let ref_size = fs::metadata(&out_ref).map(|m| m.len()).unwrap_or(0);
    println!(
        "\nLayer sizes: forge {} bytes ({} entries, {} bytes uncompressed), reference {} bytes.",
        packed.layer_size, packed.entries, packed.content_size, ref_size
    );
}
