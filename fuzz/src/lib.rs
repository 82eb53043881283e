//! Fuzzing what fitsched accepts from the network: kube-scheduler's extender JSON in both
//! modes and bindings (the shim's wire format), an ingested window, and every request of
//! the scorer's gRPC service ([`Target`]).
//!
//! Two engines drive the same targets, both on the stable toolchain:
//! - [`mutate`]: random edits of the seeds, no instrumentation (`fuzz-mutate`, what
//!   `cargo xtask fuzz` runs by default);
//! - AFL++, coverage-guided, through afl.rs (`fuzz-afl`, built by `cargo afl build
//!   --features afl`; `cargo xtask fuzz --engine afl`).

pub mod mutate;
mod targets;

pub use targets::{TARGETS, Target};
