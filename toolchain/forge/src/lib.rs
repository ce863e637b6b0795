//! The `forge` command line: parses arguments, sets up output and logging, calls the
//! stages (`forge-build`, `forge-store`, ...) and turns their errors into messages and
//! exit codes (0 success, 1 failure, 2 usage).

pub mod cli;
pub mod commands;
pub mod deploy;
pub mod env;
pub mod printer;
pub mod publish;
pub mod vault;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use forge_build::BuildError;

use crate::cli::{Cli, ColorChoice, Command};
use crate::commands::{Globals, Reported};
use crate::printer::{Printer, Verbosity};

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => env::var(env::NO_COLOR).is_none() && std::io::stderr().is_terminal(),
    }
}

fn init_logging(printer: &Printer, verbose: u8) {
    let default = match (printer.verbosity(), verbose) {
        (Verbosity::Quiet, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_new(
        env::var(env::FORGE_LOG).unwrap_or_else(|| default.to_string()),
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

/// Prints an error: TOML diagnostics with a source snippet, anything else as one line
/// with its causes.
fn report(printer: &Printer, err: &anyhow::Error) {
    if err.downcast_ref::<Reported>().is_some() {
        return;
    }
    let diagnostics = err.downcast_ref::<BuildError>().and_then(|e| match e {
        BuildError::Diagnostics(d) => Some(d),
        _ => None,
    });
    if let Some(d) = diagnostics {
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

/// Runs forge with the process's arguments.
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
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose > 0 {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let printer = Printer::new(verbosity, cli.json, use_color(cli.color));
    init_logging(&printer, cli.verbose);
    let globals = Globals {
        directory: cli.directory.clone(),
        store: cli.store.clone(),
        variant: cli.variant.clone().or_else(|| env::var(env::FORGE_VARIANT)),
        printer: printer.clone(),
    };
    let result = match &cli.command {
        Command::Build(a) => commands::build(&globals, a),
        Command::Lock(a) => commands::lock_cmd(&globals, a),
        Command::Fetch(a) => commands::fetch(&globals, a),
        Command::Hash(a) => commands::hash(&globals, a),
        Command::Store(c) => commands::store(&globals, c),
        Command::Gc(a) => commands::gc(&globals, a),
        Command::Vm(a) => commands::vm(&globals, a),
        Command::Plan(a) => deploy::plan(&globals, a),
        Command::Deploy(a) => deploy::deploy(&globals, a),
        Command::Destroy(a) => deploy::destroy(&globals, a),
        Command::Publish(a) => publish::publish(&globals, a),
        Command::Completions(a) => {
            clap_complete::generate(
                a.shell,
                &mut Cli::command(),
                "forge",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    };
    printer.clear();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(deploy::ExitWith(code)) = e.downcast_ref::<deploy::ExitWith>() {
                return ExitCode::from(*code);
            }
            report(&printer, &e);
            ExitCode::from(1)
        }
    }
}
