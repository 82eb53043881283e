//! Integration tests: the real router against a fake in-process scorer.

mod bad_input;
mod bind;
mod common;
mod fallback;
mod fixtures;
mod fuzz;
mod large;
mod limits;
mod startup;
mod tls;
