//! The kube-scheduler configurations the lab compares: the chart's own, kube-scheduler
//! alone, a no-op extender, fitsched with the shim binding, pack by profile. `bench
//! scheduler` runs them side by side; the evaluation runs `default` and `fitsched`.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use fitsched_e2e::cluster::point_extenders_at;
use fitsched_e2e::testbed::Testbed;
use serde_json::Value;

/// The variants `--variants` may name; [`variant_config`] says what each runs.
pub const VARIANTS: [&str; 6] =
    ["default", "noop", "fitsched", "fitsched-bind", "fitsched-pack", "fitsched-pack-adaptive"];

/// kube-scheduler's configuration for a variant, and the profile its pods name.
pub fn variant_config(tb: &Testbed, variant: &str, noop: SocketAddr) -> anyhow::Result<(Value, String)> {
    let mut config = tb.installed.scheduler_config.clone();
    let main = tb.installed.profiles[0].clone();
    let shim = tb.stack.shim_http;
    let out = match variant {
        "default" => {
            config.as_object_mut().context("config")?.remove("extenders");
            main
        }
        "noop" => {
            point_extenders_at(&mut config, noop);
            without_bind(&mut config);
            main
        }
        "fitsched" => {
            point_extenders_at(&mut config, shim);
            main
        }
        "fitsched-bind" => {
            point_extenders_at(&mut config, shim);
            for e in config["extenders"].as_array_mut().into_iter().flatten() {
                e["bindVerb"] = "bind".into();
            }
            main
        }
        "fitsched-pack" => {
            point_extenders_at(&mut config, shim);
            tb.profile("pack")
        }
        "fitsched-pack-adaptive" => {
            point_extenders_at(&mut config, shim);
            let pack = tb.profile("pack");
            adaptive(&mut config, &pack);
            pack
        }
        other => bail!("unknown variant {other}: {}", VARIANTS.join(", ")),
    };
    Ok((config, out))
}

/// Drops a profile's `percentageOfNodesToScore`: kube-scheduler's adaptive default.
fn adaptive(config: &mut Value, profile: &str) {
    for p in config["profiles"].as_array_mut().into_iter().flatten() {
        if p["schedulerName"] == profile {
            p.as_object_mut().map(|o| o.remove("percentageOfNodesToScore"));
        }
    }
}

fn without_bind(config: &mut Value) {
    if let Some(extenders) = config.get_mut("extenders").and_then(Value::as_array_mut) {
        for e in extenders {
            e.as_object_mut().map(|o| o.remove("bindVerb"));
        }
    }
}
