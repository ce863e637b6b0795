//! Exoscale API v2 client for forge.
//!
//! - [`sign`]: EXO2-HMAC-SHA256 request signing (shared with the test emulator);
//! - [`Client`]: one zone's endpoint, with retries (jittered exponential backoff on 429,
//!   5xx and transport errors for idempotent calls, re-signed each attempt; creates are
//!   never retried blindly) and operation polling on the official clients' schedule;
//! - [`types`]: serde types for the resources forge manages.

pub mod api;
pub mod client;
pub mod config;
pub mod error;
pub mod sign;
pub mod types;

pub use client::{CallStats, Client, ClientOptions, PollPolicy, Retry, RetryPolicy};
pub use config::{Config, ConfigError, Credentials};
pub use error::Error;
