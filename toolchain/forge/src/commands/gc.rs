//! `forge gc [--dry-run]`: delete what no registered lockfile references.

use anyhow::Result;
use serde_json::json;

use crate::cli::GcArgs;
use crate::printer::bytes;
use crate::settings::Globals;

pub fn run(g: &Globals, args: &GcArgs) -> Result<()> {
    let store = g.open_store(true)?;
    let forge_store::RootScan { keep, live, stale } = store.scan_roots()?;
    let report = store.gc(&keep, args.dry_run)?;
    if !args.dry_run {
        store.remove_roots(&stale.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>())?;
    }
    let verb = if args.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    g.printer.status(
        verb,
        &format!(
            "{} blob(s), {} output record(s), {} temp file(s), {} build log(s): {} freed; {} root(s) kept{}",
            report.blobs_removed,
            report.outputs_removed,
            report.temp_removed,
            report.logs_removed,
            bytes(report.bytes_freed),
            live.len(),
            if stale.is_empty() {
                String::new()
            } else {
                format!(", {} stale root(s) dropped", stale.len())
            }
        ),
    );
    if g.printer.json() {
        g.printer.print_json(&json!({
            "dry_run": args.dry_run,
            "blobs_removed": report.blobs_removed,
            "outputs_removed": report.outputs_removed,
            "temp_removed": report.temp_removed,
            "logs_removed": report.logs_removed,
            "bytes_freed": report.bytes_freed,
            "blobs_kept": report.blobs_kept,
            "roots": live,
            "stale_roots": stale.iter().map(|(_, l)| l).collect::<Vec<_>>(),
        }));
    }
    Ok(())
}
