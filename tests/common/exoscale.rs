//! The Exoscale side of deploy and publish tests: the emulator's key pair, an API client
//! for checking what forge did, and a runtime to call it from a test.

use std::time::Duration;

use exoscale_emulator::{Config as EmuConfig, FaultSpec, Running};
use forge_exoscale::{Client, ClientOptions, Config};

pub const KEY: &str = "EXO0123456789abcdef01234567";
pub const SECRET: &str = "forge-test-secret-0123456789abcdefghijklmn";
/// The emulator's default zone.
pub const ZONE: &str = "ch-gva-2";

/// An emulator with `faults` whose operations stay pending `delay_ms`.
pub fn emulator(faults: &str, delay_ms: u64) -> Running {
    emulator_with_state(faults, delay_ms, None)
}

/// An emulator that loads its state from `state` (if the file exists) and saves every
/// change to it: what one emulator made, a later one (with other faults) serves.
pub fn emulator_with_state(
    faults: &str,
    delay_ms: u64,
    state: Option<&std::path::Path>,
) -> Running {
    let mut c = EmuConfig::new(KEY, SECRET);
    c.operation_delay = Duration::from_millis(delay_ms);
    c.faults = FaultSpec::parse(faults).unwrap();
    c.state_file = state.map(std::path::Path::to_path_buf);
    exoscale_emulator::spawn(c, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// A client of `emu` with these options.
fn client_with(emu: &Running, o: ClientOptions) -> Client {
    let cfg = Config::from_lookup(Some(ZONE), &|n| match n {
        "EXOSCALE_API_KEY" => Some(KEY.into()),
        "EXOSCALE_API_SECRET" => Some(SECRET.into()),
        "EXOSCALE_API_ENDPOINT" => Some(emu.endpoint()),
        _ => None,
    })
    .unwrap();
    Client::new(&cfg, o).unwrap()
}

/// A client of `emu` with fast polling and retries.
pub fn client(emu: &Running) -> Client {
    let mut o = ClientOptions::default();
    o.poll.min_interval = Duration::from_millis(20);
    o.retry.min_wait = Duration::from_millis(10);
    o.retry.max_wait = Duration::from_millis(200);
    client_with(emu, o)
}

/// A client for looking at what forge made: it retries far more than forge does, so a
/// streak of injected faults (likely somewhere in a thousand seeded rolls) cannot fail the
/// test's own checks.
pub fn inspector(emu: &Running) -> Client {
    let mut o = ClientOptions::default();
    o.poll.min_interval = Duration::from_millis(20);
    o.retry.min_wait = Duration::from_millis(5);
    o.retry.max_wait = Duration::from_millis(50);
    o.retry.max_retries = 40;
    client_with(emu, o)
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `forge` pointed at `emu` (credentials, endpoint, fast polling), no `EXOSCALE_ZONE`.
pub fn forge_env(c: &mut std::process::Command, emu: &Running) {
    c.env("EXOSCALE_API_KEY", KEY)
        .env("EXOSCALE_API_SECRET", SECRET)
        .env("EXOSCALE_API_ENDPOINT", emu.endpoint())
        .env_remove("EXOSCALE_ZONE")
        .env("FORGE_EXOSCALE_POLL_MIN_MS", "20")
        .env("FORGE_EXOSCALE_RETRY_MIN_MS", "10");
}
