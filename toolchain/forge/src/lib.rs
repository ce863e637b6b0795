//! The `forge` command line: parses arguments (`cli`), resolves settings once from flags,
//! the environment and platform.toml (`settings`, `env`), runs one verb (`commands`) and
//! turns errors into messages and exit codes (0 success, 1 failure, 2 usage or, for
//! `plan --detailed-exitcode`, changes).

pub mod cli;
mod cluster;
mod commands;
pub mod env;
pub mod exit;
pub mod printer;
mod progress;
pub mod settings;
mod target;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, ColorChoice};
use crate::env::Env;
use crate::exit::Exit;
use crate::printer::{Printer, Verbosity};
use crate::settings::Globals;

fn use_color(choice: ColorChoice, env: &Env) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => env.get(env::NO_COLOR).is_none() && std::io::stderr().is_terminal(),
    }
}

fn init_logging(printer: &Printer, verbose: u8, env: &Env) {
    let default = match (printer.verbosity(), verbose) {
        (Verbosity::Quiet, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_new(
        env.get(env::FORGE_LOG)
            .unwrap_or_else(|| default.to_string()),
    )
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(printer.log_writer())
        .with_ansi(printer.color())
        .with_target(verbose >= 2)
        .without_time()
        .try_init();
}

/// The TOML problems an error carries, wherever in its chain they are.
fn diagnostics(err: &anyhow::Error) -> Option<&forge_schema::Diagnostics> {
    err.chain()
        .find_map(|e| e.downcast_ref::<forge_schema::Diagnostics>())
}

/// Prints an error: TOML diagnostics with a source snippet, anything else as one line
/// with its causes.
fn report(printer: &Printer, err: &anyhow::Error) {
    if let Some(d) = diagnostics(err) {
        let theme = if printer.color() {
            miette::GraphicalTheme::unicode()
        } else {
            miette::GraphicalTheme::unicode_nocolor()
        };
        let handler = miette::GraphicalReportHandler::new_themed(theme).with_context_lines(1);
        for e in &d.errors {
            let mut out = String::new();
            if handler.render_report(&mut out, e).is_ok() {
                printer.eprintln(out.trim_end());
            } else {
                printer.error(&e.to_string());
            }
        }
        if d.errors.len() > 1 {
            printer.error(&format!("{} problems found", d.errors.len()));
        }
        return;
    }
    let mut msg = err.to_string();
    for cause in err.chain().skip(1) {
        // Many errors already include their cause in their own message.
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(&format!("\n  caused by: {text}"));
        }
    }
    printer.error(&msg);
}

/// Runs forge with the process's arguments and environment.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let env = Env::from_process();
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose > 0 {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let printer = Printer::new(verbosity, cli.json, use_color(cli.color, &env));
    init_logging(&printer, cli.verbose, &env);
    let result =
        Globals::resolve(&cli, env, printer.clone()).and_then(|g| commands::run(&g, &cli.command));
    printer.clear();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
                return ExitCode::from(*code);
            }
            report(&printer, &e);
            ExitCode::from(1)
        }
    }
}
