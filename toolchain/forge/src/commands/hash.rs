//! `forge hash FILE...`: SHA-256 in `sha256sum` format, to fill in recipes. Files are
//! hashed in parallel and printed in argument order.

use std::path::Path;

use anyhow::Result;
use forge_schema::Sha256Digest;
use serde_json::json;

use crate::cli::HashArgs;
use crate::exit::Exit;
use crate::settings::Globals;

/// Hashes one input (`-` is stdin).
fn hash_one(path: &Path) -> std::io::Result<Sha256Digest> {
    if path == Path::new("-") {
        let stdin = std::io::stdin().lock();
        forge_store::fsutil::hash_reader(stdin).map(|(d, _)| d)
    } else {
        forge_store::fsutil::hash_file(path).map(|(d, _)| d)
    }
}

pub fn run(g: &Globals, args: &HashArgs) -> Result<()> {
    // Files are hashed in parallel, printed in argument order.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(args.files.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<std::io::Result<Sha256Digest>>>> = args
        .files
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(path) = args.files.get(i) else { break };
                    let r = hash_one(path);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    let results: Vec<std::io::Result<Sha256Digest>> = slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(std::io::Error::other("not hashed")))
        })
        .collect();
    let mut failed = false;
    let mut json_out = Vec::new();
    for (path, r) in args.files.iter().zip(results) {
        match r {
            Ok(d) => {
                if g.printer.json() {
                    json_out.push(json!({"path": path, "sha256": d.to_hex()}));
                } else {
                    g.printer.print(&format!("{d}  {}", path.display()));
                }
            }
            Err(e) => {
                failed = true;
                g.printer.error(&format!("{}: {e}", path.display()));
            }
        }
    }
    if g.printer.json() {
        g.printer.print_json(&json!({ "files": json_out }));
    }
    if failed {
        return Err(Exit::FAILURE.into());
    }
    Ok(())
}
