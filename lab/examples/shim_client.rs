//! The client side of `cargo xtask bench shim`, built in release so that its parse floor
//! is measured with the same optimisations as the shim: POSTs `requests` bodies (after 10
//! warm-ups) on a keep-alive connection and parses each same body with serde_json.
//! `bodies.jsonl` holds one compact JSON body a line; request `i` (warm-ups counted)
//! sends line `i % lines`. Usage: `shim_client <url> <bodies.jsonl> <requests>`; prints JSON.

use std::time::{Duration, Instant};

fn pct_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize - 1;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 4, "usage: shim_client <url> <bodies.jsonl> <requests>");
    let file = std::fs::read(&args[2])?;
    let bodies: Vec<&[u8]> = file.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    anyhow::ensure!(!bodies.is_empty(), "{} holds no body", args[2]);
    let requests: usize = args[3].parse()?;
    let http = fitsched_e2e::stack::http_agent(Duration::from_secs(30));
    let (mut lat, mut parse) = (Vec::with_capacity(requests), Vec::with_capacity(requests));
    for i in 0..requests + 10 {
        let body = bodies[i % bodies.len()];
        let t = Instant::now();
        let mut r = http.post(&args[1]).header("Content-Type", "application/json").send(body)?;
        let text = r.body_mut().with_config().limit(1 << 30).read_to_string()?;
        let took = t.elapsed();
        anyhow::ensure!(r.status() == 200, "HTTP {}: {text}", r.status());
        let t = Instant::now();
        std::hint::black_box(serde_json::from_slice::<serde_json::Value>(body)?);
        let parsed = t.elapsed();
        if i >= 10 {
            lat.push(took);
            parse.push(parsed);
        }
    }
    lat.sort();
    parse.sort();
    println!(
        "{}",
        serde_json::json!({
            "p50_ms": pct_ms(&lat, 50.0), "p99_ms": pct_ms(&lat, 99.0),
            "parse_p50_ms": pct_ms(&parse, 50.0), "parse_p99_ms": pct_ms(&parse, 99.0),
        })
    );
    Ok(())
}
