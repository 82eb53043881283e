//! A mutation engine that needs nothing but the stable toolchain: inputs are seeds
//! (captured fixtures, encoded valid requests) changed by random bit flips, byte and
//! token insertions, deletions, truncations and splices of two seeds, fed to a target for
//! a set time. A panic is a crash: it is caught, counted, and its input kept. Not
//! coverage-guided: what it finds is what random edits of real inputs reach (AFL++,
//! `fuzz-afl`, is the coverage-guided engine).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes that steer edits into parsers' corners.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"1e308",
    b"NaN",
    b"\\u0000",
    b"\xff",
    b"\x00",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
];

/// What one target's run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub target: String,
    pub executions: u64,
    pub crashes: u64,
    /// Where the first crashing input was written, if any.
    pub crash_file: Option<PathBuf>,
}

/// Feeds `target` mutated `seeds` for `duration`; crashing inputs go to `crash_dir`.
pub fn run(
    name: &str,
    seeds: &[Vec<u8>],
    duration: Duration,
    seed: u64,
    crash_dir: &Path,
    mut target: impl FnMut(&[u8]),
) -> Report {
    assert!(!seeds.is_empty(), "{name}: no seed inputs");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut report = Report { target: name.to_owned(), executions: 0, crashes: 0, crash_file: None };
    // A panic's message would flood the output at thousands per second.
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let end = Instant::now() + duration;
    while Instant::now() < end {
        for _ in 0..64 {
            let input = mutate(&mut rng, seeds);
            report.executions += 1;
            if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
                report.crashes += 1;
                if report.crash_file.is_none() {
                    let _ = std::fs::create_dir_all(crash_dir);
                    let file = crash_dir.join(format!("{name}-{}.bin", report.executions));
                    if std::fs::write(&file, &input).is_ok() {
                        report.crash_file = Some(file);
                    }
                }
            }
        }
    }
    std::panic::set_hook(quiet);
    report
}

/// One seed with one to eight random edits.
pub fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = seeds[rng.usize(..seeds.len())].clone();
    for _ in 0..rng.usize(1..=8) {
        let at = rng.usize(..=out.len());
        match rng.u8(..7) {
            0 if !out.is_empty() => {
                let i = rng.usize(..out.len());
                out[i] ^= 1 << rng.u8(..8);
            }
            1 => out.insert(at, rng.u8(..)),
            2 => {
                let token = TOKENS[rng.usize(..TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            3 if !out.is_empty() => {
                let len = rng.usize(1..=out.len().min(64));
                let from = rng.usize(..=out.len() - len);
                out.drain(from..from + len);
            }
            4 => out.truncate(at),
            5 => {
                let other = &seeds[rng.usize(..seeds.len())];
                let from = rng.usize(..=other.len());
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            _ if !out.is_empty() => {
                // Repeat a slice: long strings, deep nesting, huge counts.
                let from = rng.usize(..out.len());
                let len = rng.usize(1..=(out.len() - from).min(32));
                let piece: Vec<u8> = out[from..from + len].to_vec();
                for _ in 0..rng.usize(1..16) {
                    out.splice(at.min(out.len())..at.min(out.len()), piece.iter().copied());
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_planted_crash_and_counts_executions() {
        let dir = std::env::temp_dir().join(format!("fitsched-fuzz-{}", std::process::id()));
        let seeds = vec![b"{\"a\":1}".to_vec()];
        let report = run("planted", &seeds, Duration::from_millis(300), 7, &dir, |input| {
            assert!(!input.starts_with(b"{\"a\":1}{"), "planted");
        });
        assert!(report.executions > 1000, "{report:?}");
        assert!(report.crashes > 0, "the planted crash was not found: {report:?}");
        let kept = std::fs::read(report.crash_file.unwrap()).unwrap();
        assert!(kept.starts_with(b"{\"a\":1}{"));
        let clean = run("clean", &seeds, Duration::from_millis(50), 7, &dir, |_| {});
        assert_eq!(clean.crashes, 0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
