//! The four platform images of this repository (vault, etcd, kube-controlplane, kube-node).
//!
//! - `lockfiles`: the real images' lockfile is current and pins the upstream releases the
//!   spec names.
//! - `images`: the `local` variant (OpenBao for Vault, Debian's etcd/containerd/runc/CNI
//!   plugins; the same units, scripts and configuration) is built once from a copy of the
//!   repository with `--locked` (support::built): every image must come out bit for bit as
//!   the committed variants/local/lockfile.toml records it; its root file systems are
//!   checked for the original's defects (spec Appendix A), units are verified with
//!   `systemd-analyze verify --root`, and every path a unit or a launcher runs exists, or
//!   is installed by a layer the variant leaves out.
//! - `boots`: each image boots under QEMU (TCG) with NoCloud user-data playing the deploy
//!   stage's first boot, one machine at a time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

#[path = "../common/mod.rs"]
mod common;

mod boots;
mod images;
mod lockfiles;
mod support;
