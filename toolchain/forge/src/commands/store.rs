//! `forge store path|verify|roots`: inspect and repair the store.

use anyhow::{Result, bail};
use forge_build::plan::Plan;
use forge_schema::Sha256Digest;
use serde_json::json;

use crate::cli::StoreCommand;
use crate::exit::Exit;
use crate::printer::bytes;
use crate::settings::Globals;

pub fn run(g: &Globals, cmd: &StoreCommand) -> Result<()> {
    match cmd {
        StoreCommand::Path { target } => {
            let store = g.open_store(false)?;
            let hex = target.strip_prefix("sha256:").unwrap_or(target);
            let path = if let Ok(d) = hex.parse::<Sha256Digest>() {
                if !store.has_blob(&d) {
                    bail!("blob sha256 {d} is not in the store");
                }
                store.blob_path(&d)
            } else {
                let project = g.project(None)?;
                let plan = Plan::resolve(&project, None)?;
                let name = plan.target(target)?;
                let hash = plan.recipes[&name].hash;
                match store.output(&hash)? {
                    Some(rec) => store.blob_path(&rec.layer_sha256),
                    None => bail!(
                        "recipe `{name}` (hash {hash}) is not built; run `forge build {name}`"
                    ),
                }
            };
            if g.printer.json() {
                g.printer
                    .print_json(&json!({ "target": target, "path": path }));
            } else {
                g.printer.print(&path.display().to_string());
            }
            Ok(())
        }
        StoreCommand::Verify { repair } => {
            let store = g.open_store(*repair)?;
            let bar = g.printer.total_bar();
            let report = store.verify(*repair, &|n| bar.inc(n))?;
            g.printer.clear();
            for p in &report.problems {
                g.printer.error(&p.to_string());
            }
            if g.printer.json() {
                g.printer.print_json(&json!({
                    "blobs_checked": report.blobs_checked,
                    "bytes_checked": report.bytes_checked,
                    "outputs_checked": report.outputs_checked,
                    "problems": report.problems.iter().map(|p| json!({"path": p.path(), "problem": p.to_string()})).collect::<Vec<_>>(),
                    "temp_entries": report.temp_entries,
                    "repaired": report.repaired,
                }));
            }
            let summary = format!(
                "{} blob(s) ({}) and {} output record(s); {} problem(s){}",
                report.blobs_checked,
                bytes(report.bytes_checked),
                report.outputs_checked,
                report.problems.len(),
                if report.temp_entries > 0 {
                    format!(
                        "; {} leftover temp file(s), ignored (`forge gc` removes them)",
                        report.temp_entries
                    )
                } else {
                    String::new()
                }
            );
            g.printer.status("Verified", &summary);
            if report.repaired {
                g.printer.status(
                    "Repaired",
                    &format!(
                        "removed {} damaged entries; the next build fetches or rebuilds them",
                        report.problems.len()
                    ),
                );
            } else if !report.problems.is_empty() {
                g.printer
                    .warn("run `forge store verify --repair` to remove the damaged entries");
                return Err(Exit::FAILURE.into());
            }
            Ok(())
        }
        StoreCommand::Roots => {
            let store = g.open_store(false)?;
            let roots = store.roots()?;
            if g.printer.json() {
                g.printer.print_json(&json!({
                    "roots": roots.iter().map(|(_, l)| json!({"lockfile": l, "exists": l.is_file()})).collect::<Vec<_>>(),
                }));
            } else {
                for (_, l) in roots {
                    let stale = if l.is_file() {
                        ""
                    } else {
                        "  (gone; `forge gc` will drop it)"
                    };
                    g.printer.print(&format!("{}{stale}", l.display()));
                }
            }
            Ok(())
        }
    }
}
