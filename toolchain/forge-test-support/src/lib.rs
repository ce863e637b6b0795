//! Test support: real servers on loopback that tests start and control.
//!
//! Not part of the `forge` binary.

pub mod go;
pub mod http;
