//! Progress of builds and fetches on the terminal: a bar per download, a total, a spinner
//! per phase, status lines; all through the printer, so `-q`, `--json` and non-terminals
//! behave the same everywhere.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use forge_build::engine::Observer;
use forge_fetch::{Progress, Transfer};

use crate::printer::{Printer, Verbosity};

/// Draws progress bars and status lines for a build.
pub struct CliObserver {
    printer: Printer,
    phases: Mutex<BTreeMap<String, indicatif::ProgressBar>>,
}

impl CliObserver {
    pub fn shared(printer: &Printer) -> Arc<dyn Observer> {
        Arc::new(CliObserver {
            printer: printer.clone(),
            phases: Mutex::default(),
        })
    }
}

struct CliProgress {
    printer: Printer,
}

struct CliTransfer {
    bar: indicatif::ProgressBar,
    total: indicatif::ProgressBar,
    last_total: Mutex<Option<u64>>,
}

impl Transfer for CliTransfer {
    fn set_position(&self, pos: u64, total: Option<u64>) {
        if let Ok(mut last) = self.last_total.lock() {
            let old = last.unwrap_or(0);
            let new = total.unwrap_or(0);
            self.total
                .set_length(self.total.length().unwrap_or(0) + new - old.min(new));
            *last = total;
        }
        self.bar.set_length(total.unwrap_or(0));
        self.bar.set_position(pos);
    }
    fn advance(&self, n: u64) {
        self.bar.inc(n);
        self.total.inc(n);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for CliProgress {
    fn start(&self, name: &str, total: Option<u64>) -> Box<dyn Transfer> {
        // One line per download only with -v: an image fetches hundreds of packages, and
        // the bars (on a terminal) already show them.
        if self.printer.verbosity() == Verbosity::Verbose {
            self.printer.status("Fetching", name);
        }
        Box::new(CliTransfer {
            bar: self.printer.transfer_bar(name, total),
            total: self.printer.total_bar(),
            last_total: Mutex::new(None),
        })
    }
}

impl Observer for CliObserver {
    fn progress(&self) -> Arc<dyn Progress> {
        Arc::new(CliProgress {
            printer: self.printer.clone(),
        })
    }
    fn started(&self, name: &str, version: &str) {
        if version.is_empty() {
            self.printer.status("Building", name);
        } else {
            self.printer
                .status("Building", &format!("{name} v{version}"));
        }
    }
    fn phase_started(&self, subject: &str, phase: &str) {
        let bar = self.printer.spinner(&format!("{subject}: {phase}"));
        if let Ok(mut m) = self.phases.lock() {
            m.insert(format!("{subject}/{phase}"), bar);
        }
    }
    fn phase_finished(&self, subject: &str, phase: &str, seconds: f64, detail: &str) {
        if let Ok(mut m) = self.phases.lock()
            && let Some(bar) = m.remove(&format!("{subject}/{phase}"))
        {
            bar.finish_and_clear();
        }
        self.printer.status(
            "Done",
            &format!("{subject} {phase:<10} {seconds:>6.1}s  {detail}"),
        );
    }
    fn finished(&self, _: &str, _: bool, _: f64) {}
    fn note(&self, message: &str) {
        self.printer.status("Blocking", message);
    }
}
