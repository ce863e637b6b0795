//! `exoscale-emulator --listen 127.0.0.1:PORT --api-key KEY --api-secret SECRET
//! [--state FILE] [--faults SPEC] [--operation-delay-ms N] [--zone ZONE]`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use exoscale_emulator::{Config, FaultSpec};

/// An Exoscale API v2 emulator for tests: same paths, JSON shapes, signatures, async
/// operations and errors as the OpenAPI document, with fault injection.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The API key requests must be signed with.
    #[arg(long, env = "EXOSCALE_API_KEY")]
    api_key: String,
    /// The API secret requests must be signed with.
    #[arg(long, env = "EXOSCALE_API_SECRET", hide_env_values = true)]
    api_secret: String,
    /// Keep the resources in this JSON file (loaded at start, saved after each change).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Faults to inject: 5xx=P,429=P,op-fail=P,drop=P (probabilities), latency=MSms, seed=N.
    #[arg(long, default_value = "")]
    faults: String,
    /// How long operations stay pending, in milliseconds.
    #[arg(long, default_value_t = 500)]
    operation_delay_ms: u64,
    /// Zone of requests to /v2/... (other zones: /ZONE/v2/...).
    #[arg(long, default_value = "ch-gva-2")]
    zone: String,
    /// Retry-After seconds sent with injected 429 answers.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// The /24 instances' public addresses come from, as its first three octets
    /// (`127.0.1`), instead of the documentation ranges.
    #[arg(long, value_name = "A.B.C", value_parser = parse_network)]
    instance_network: Option<[u8; 3]>,
}

fn parse_network(s: &str) -> Result<[u8; 3], String> {
    let parts: Vec<u8> = s
        .split('.')
        .map(|p| p.parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{s}`: {e}"))?;
    <[u8; 3]>::try_from(parts).map_err(|_| format!("`{s}`: expected three octets, as 127.0.1"))
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let faults = match FaultSpec::parse(&args.faults) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("--faults: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let config = Config {
        api_key: args.api_key,
        api_secret: args.api_secret,
        state_file: args.state,
        faults,
        operation_delay: Duration::from_millis(args.operation_delay_ms),
        default_zone: args.zone,
        retry_after_secs: args.retry_after,
        instance_network: args.instance_network,
    };
    let running = match exoscale_emulator::spawn(config, args.listen) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The one line a caller waits for: where to send requests.
    use std::io::Write as _;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {}", running.endpoint());
    let _ = out.flush();
    // Serve until killed (SIGTERM/SIGINT end the process).
    loop {
        std::thread::park();
    }
}
