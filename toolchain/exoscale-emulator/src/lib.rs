//! `exoscale-emulator`: an Exoscale API v2 emulator for forge's tests, built from the
//! OpenAPI document (`openapi/openapi-latest.json`).
//!
//! - the document's path templates route requests and its schemas validate request bodies
//!   (400 with the field named) and the emulator's own answers (a mismatch is a 500, so the
//!   emulator cannot drift from the spec unnoticed);
//! - requests must carry a valid, unexpired EXO2-HMAC-SHA256 signature (403 otherwise;
//!   `GET /v2/zone` is public, as for the real API);
//! - mutations answer with operations that stay `pending` for `--operation-delay`;
//! - instance pools create and delete their members, with public addresses from the
//!   documentation ranges 198.51.100.0/24 and 192.0.2.0/24 (elastic IPs 203.0.113.0/24),
//!   which are never routed;
//! - templates are downloaded from their URL and their MD5 checked before the operation
//!   succeeds;
//! - faults (`--faults 5xx=0.2,429=0.1,op-fail=0.1,drop=0.05,latency=20ms,seed=1`).
//!
//! Not part of the `forge` binary.

pub mod faults;
pub mod handlers;
pub mod openapi;
pub mod server;
pub mod state;

pub use faults::FaultSpec;
pub use server::{Config, Running, serve, spawn};
