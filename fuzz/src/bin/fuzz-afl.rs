//! One target under AFL++ (persistent mode): `cargo afl fuzz -i SEEDS -o OUT fuzz-afl
//! TARGET`. Built only with `--features afl` by `cargo afl build`, which instruments it
//! for coverage; `cargo xtask fuzz --engine afl` does all of it.

use std::panic::AssertUnwindSafe;

use fitsched_fuzz::{TARGETS, Target};

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = Target::new(&name) else {
        eprintln!("usage: fuzz-afl TARGET; targets: {}", TARGETS.join(", "));
        std::process::exit(2);
    };
    // afl::fuzz! aborts the process on a panic (AFL++ records a crash), so no input ever
    // sees state a panic left behind.
    let mut target = AssertUnwindSafe(target);
    afl::fuzz!(|data: &[u8]| target.run(data));
}
