//! The one place forge writes to the terminal: status lines and warnings on stderr,
//! progress bars (only on a terminal, never with `-q` or `--json`), JSON on stdout.
//! Library crates never print; they report through tracing and the observer traits.

#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How chatty to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Output settings resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct Printer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    verbosity: Verbosity,
    json: bool,
    color: bool,
    multi: MultiProgress,
    bars: bool,
    total: Mutex<Option<ProgressBar>>,
}

impl Printer {
    pub fn new(verbosity: Verbosity, json: bool, color: bool) -> Self {
        let bars = verbosity != Verbosity::Quiet && !json && io::stderr().is_terminal();
        let target = if bars {
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            inner: Arc::new(Inner {
                verbosity,
                json,
                color,
                multi: MultiProgress::with_draw_target(target),
                bars,
                total: Mutex::new(None),
            }),
        }
    }

    pub fn json(&self) -> bool {
        self.inner.json
    }

    pub fn color(&self) -> bool {
        self.inner.color
    }

    pub fn verbosity(&self) -> Verbosity {
        self.inner.verbosity
    }

    /// Writes a line to stderr without tearing progress bars.
    pub fn eprintln(&self, line: &str) {
        if self.inner.bars {
            self.inner.multi.suspend(|| eprintln!("{line}"));
        } else {
            eprintln!("{line}");
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.inner.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A cargo-style status line: a right-aligned verb and a message. Hidden by `-q`.
    pub fn status(&self, verb: &str, message: &str) {
        if self.inner.verbosity == Verbosity::Quiet {
            return;
        }
        let verb = self.paint("1;32", &format!("{verb:>12}"));
        self.eprintln(&format!("{verb} {message}"));
    }

    pub fn warn(&self, message: &str) {
        let label = self.paint("1;33", "warning");
        self.eprintln(&format!("{label}: {message}"));
    }

    pub fn error(&self, message: &str) {
        let label = self.paint("1;31", "error");
        self.eprintln(&format!("{label}: {message}"));
    }

    /// Machine output on stdout (a broken pipe is not an error).
    pub fn print_json(&self, value: &serde_json::Value) {
        let mut out = io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut out, value);
        let _ = writeln!(out);
    }

    /// Plain output on stdout (`forge hash`, `forge store path`).
    pub fn print(&self, line: &str) {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }

    /// Adds a byte progress bar for one transfer.
    pub fn transfer_bar(&self, name: &str, total: Option<u64>) -> ProgressBar {
        if !self.inner.bars {
            return ProgressBar::hidden();
        }
        let bar = self.inner.multi.add(ProgressBar::new(total.unwrap_or(0)));
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner:.green} {msg:30!} [{bar:30.cyan/blue}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>11} {eta:>4}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A spinner for a phase of work (shown only on a terminal).
    pub fn spinner(&self, message: &str) -> ProgressBar {
        if !self.inner.bars {
            return ProgressBar::hidden();
        }
        let bar = self.inner.multi.add(ProgressBar::new_spinner());
        if let Ok(style) = ProgressStyle::with_template("{spinner:.green} {msg} {elapsed:>4}") {
            bar.set_style(style);
        }
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// The bar that counts all bytes of all transfers.
    pub fn total_bar(&self) -> ProgressBar {
        if !self.inner.bars {
            return ProgressBar::hidden();
        }
        let mut guard = match self.inner.total.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        guard
            .get_or_insert_with(|| {
                let bar = self.inner.multi.add(ProgressBar::new(0));
                if let Ok(style) = ProgressStyle::with_template(
                    "  {msg:30!} [{bar:30.green/white}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>11}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message("total");
                bar
            })
            .clone()
    }

    /// Removes every bar (at the end of a command).
    pub fn clear(&self) {
        if let Ok(mut g) = self.inner.total.lock()
            && let Some(b) = g.take()
        {
            b.finish_and_clear();
        }
        let _ = self.inner.multi.clear();
    }

    /// A writer for tracing that does not tear progress bars.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter {
            printer: self.clone(),
        }
    }
}

/// stderr for tracing, suspended around progress bars.
#[derive(Clone)]
pub struct LogWriter {
    printer: Printer,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.printer.inner.bars {
            self.printer
                .inner
                .multi
                .suspend(|| io::stderr().write_all(buf))?;
        } else {
            io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Human-readable byte counts.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
