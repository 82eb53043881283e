//! The kube-scheduler configurations the lab compares: the chart's own, kube-scheduler
//! alone, a no-op extender (alone, or with one gRPC hop to a null scorer: the floor of
//! the design's contract), fitsched with the shim binding, pack by profile. `bench
//! scheduler` runs them side by side; the evaluation runs `default` and `fitsched`.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use fitsched_e2e::cluster::point_extenders_at;
use fitsched_e2e::testbed::Testbed;
use serde_json::Value;

/// The variants `--variants` may name; [`variant_config`] says what each runs.
pub const VARIANTS: [&str; 7] =
    ["default", "noop", "noop-hop", "fitsched", "fitsched-bind", "fitsched-pack", "fitsched-pack-adaptive"];

/// Where the baseline extenders listen (`lab/examples/noop_extender.rs`).
#[derive(Debug, Clone, Copy)]
pub struct Baselines {
    /// The no-op extender.
    pub noop: SocketAddr,
    /// The no-op extender that asks a null scorer once per call.
    pub noop_hop: SocketAddr,
}

impl Baselines {
    /// For callers that run none of them: an address nothing listens on.
    pub fn none() -> anyhow::Result<Baselines> {
        let unused = fitsched_e2e::stack::free_addr()?;
        Ok(Baselines { noop: unused, noop_hop: unused })
    }
}

/// kube-scheduler's configuration for a variant, and the profile its pods name.
pub fn variant_config(tb: &Testbed, variant: &str, baselines: Baselines) -> anyhow::Result<(Value, String)> {
    let mut config = tb.installed.scheduler_config.clone();
    let main = tb.installed.profiles[0].clone();
    let shim = tb.stack.shim_http;
    let out = match variant {
        "default" => {
            config.as_object_mut().context("config")?.remove("extenders");
            main
        }
        "noop" | "noop-hop" => {
            point_extenders_at(&mut config, if variant == "noop" { baselines.noop } else { baselines.noop_hop });
            set_bind_verb(&mut config, None);
            main
        }
        "fitsched" => {
            point_extenders_at(&mut config, shim);
            main
        }
        "fitsched-bind" => {
            point_extenders_at(&mut config, shim);
            set_bind_verb(&mut config, Some("bind"));
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

/// Sets every extender's `bindVerb`, or drops it (`None`: kube-scheduler binds).
fn set_bind_verb(config: &mut Value, verb: Option<&str>) {
    for e in config.get_mut("extenders").and_then(Value::as_array_mut).into_iter().flatten() {
        match (verb, e.as_object_mut()) {
            (Some(verb), Some(o)) => o.insert("bindVerb".into(), verb.into()),
            (None, Some(o)) => o.remove("bindVerb"),
            (_, None) => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_verb_is_set_on_every_extender_or_dropped() {
        let mut config = serde_json::json!({"extenders": [{"urlPrefix": "a"}, {"urlPrefix": "b", "bindVerb": "bind"}]});
        set_bind_verb(&mut config, Some("bind"));
        assert!(config["extenders"].as_array().unwrap().iter().all(|e| e["bindVerb"] == "bind"));
        set_bind_verb(&mut config, None);
        assert!(config["extenders"].as_array().unwrap().iter().all(|e| e.get("bindVerb").is_none()));
        let mut none = serde_json::json!({"profiles": []});
        set_bind_verb(&mut none, Some("bind"));
        assert_eq!(none, serde_json::json!({"profiles": []}), "no extenders: nothing added");
    }
}
