//! fitsched's lab: what measures fitsched rather than ships it, on the `fitsched-e2e`
//! harness. Each task is a module with its arguments and a `run`:
//!
//! - [`collect`]: nginx + wrk benchmark units under stress-ng interference next to the
//!   agent's windows, the fitness model's training data;
//! - [`train`]: `onnx/train.py` in the project venv, the model and its card;
//! - [`evaluate`]: fitsched against kube-scheduler's default profile through the real
//!   kube-scheduler, on measured outcomes; writes `docs/evaluation.md`;
//! - [`bench`]: performance figures next to a baseline measured in the same run.
//!
//! What two tasks share has a module of its own: [`interference`] (the kinds collected
//! and read back by the evaluation), [`plan`] (the strata a collection fills) and [`variants`] (the kube-scheduler configurations
//! the benchmarks and the evaluation compare).
//!
//! `cargo xtask collect | train | evaluate | bench` forward here, as does `cargo lab`.

pub mod bench;
pub mod collect;
pub mod evaluate;
pub mod interference;
pub mod plan;
pub mod train;
pub mod variants;
