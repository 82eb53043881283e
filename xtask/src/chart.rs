//! The Helm chart's checks (`check`, run by `cargo xtask test`) and `cargo xtask policy`,
//! which prints fitsched's kube-scheduler extender policy for operators who add fitsched
//! to their existing kube-scheduler instead of running the chart's second one.
//!
//! One place owns the extender defaults: the `extender:` block of
//! `charts/fitsched/values.yaml`. The chart renders it into its KubeSchedulerConfiguration;
//! `policy` reads the same block (compiled in) and prints the same YAML, and the chart
//! tests render the chart and run `policy` with the same options and compare the two.
//! Each strategy's profile settings are owned by `profile_yaml` here and by the chart's
//! `fitsched.profile` helper there; that comparison keeps the two equal.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use fitsched_e2e::{paths, progress, tools};
use fitsched_proto::Strategy;

/// The chart's default values; `policy` takes its defaults from their `extender:` block.
const VALUES_YAML: &str = include_str!("../../charts/fitsched/values.yaml");

/// Runs the chart tests with pytest (render with Helm's Go SDK, `helm lint`, strict
/// Kubernetes schema validation, the KubeSchedulerConfiguration against its schema and
/// against what the real shim serves, values.schema.json refusals).
pub fn check() -> anyhow::Result<()> {
    progress("pytest charts/tests: render, helm lint, Kubernetes schemas, extender policy, values schema");
    // The tests run `xtask policy` and the shim from the workspace build that `cargo
    // xtask test` has just made. Not this process's own file: that build replaces it
    // (the workspace unifies features differently from `cargo run -p xtask`).
    let xtask = paths::bin_dir().join("xtask");
    if !xtask.exists() {
        bail!("{} is not built: run `cargo build --workspace --bins` first", xtask.display());
    }
    let bin_dir = paths::bin_dir();
    tools::pytest(
        "charts/tests",
        &[("FITSCHED_XTASK", xtask.as_os_str()), ("FITSCHED_BIN_DIR", bin_dir.as_os_str())],
        "chart tests",
    )
}

/// `cargo xtask policy`: fitsched's extender entry for a KubeSchedulerConfiguration.
/// Every extender option but `--filter` defaults to the chart's `extender:` values.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// Multiplier of fitsched's 0..10 scores in kube-scheduler's sum [default: the chart's extender.weight]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub weight: Option<u64>,
    /// kube-scheduler sends node names only (true) or whole Node objects (false) [default: the chart's]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub node_cache_capable: Option<bool>,
    /// Let fitsched bind the pods it places (bindVerb: bind) [default: the chart's]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub bind: Option<bool>,
    /// Ask fitsched to filter nodes (filterVerb: filter). Worth its round trip per pod only
    /// when the scorer runs with --filter-min-fitness or --filter-max-psi-memory-full, which
    /// this command cannot see (without a rule every node passes), so it is off by default
    #[arg(
        long,
        value_name = "BOOL",
        action = clap::ArgAction::Set,
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub filter: bool,
    /// Ask fitsched to score nodes (prioritizeVerb: prioritize) [default: the chart's]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub prioritize: Option<bool>,
    /// Scheduling goes on when fitsched fails [default: the chart's, true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub ignorable: Option<bool>,
    /// kube-scheduler's timeout per extender call: an integer and ms, s, m or h [default: the chart's]
    #[arg(long, value_parser = parse_duration)]
    pub http_timeout: Option<String>,
    /// Where kube-scheduler reaches the shim [default: http://127.0.0.1:<the chart's shim.port>]
    #[arg(long)]
    pub shim_url: Option<String>,
    /// Print a whole KubeSchedulerConfiguration, not only its `extenders:` block
    #[arg(long)]
    pub full: bool,
    /// With --full: the profile's schedulerName
    #[arg(long, default_value = "default-scheduler", requires = "full")]
    pub scheduler_name: String,
    /// With --full: the strategy whose plugin settings the --scheduler-name profile gets
    /// (pack changes kube-scheduler's own plugins to agree with it; spread and balanced
    /// keep its defaults) [default: the chart's scorer.defaultStrategy]
    #[arg(long, requires = "full", value_parser = str::parse::<Strategy>)]
    pub default_strategy: Option<Strategy>,
    /// With --full: also one profile per strategy, <scheduler-name>-spread, -pack and
    /// -balanced, which pods pick with spec.schedulerName (the chart's scheduler.strategyProfiles)
    #[arg(
        long,
        value_name = "BOOL",
        action = clap::ArgAction::Set,
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        requires = "full"
    )]
    pub strategy_profiles: bool,
    /// With --full: the pack profile's percentageOfNodesToScore (100: every feasible node
    /// is a candidate) [default: the chart's scheduler.packPercentageOfNodesToScore]
    #[arg(long, requires = "full", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub pack_percentage: Option<u32>,
    /// With --full: leader election on a Lease
    #[arg(
        long,
        value_name = "BOOL",
        action = clap::ArgAction::Set,
        default_value = "true",
        num_args = 0..=1,
        default_missing_value = "true",
        requires = "full"
    )]
    pub leader_elect: bool,
    /// With --full: the Lease's name
    #[arg(long, default_value = "kube-scheduler", requires = "full")]
    pub lease_name: String,
    /// With --full: the Lease's namespace
    #[arg(long, default_value = "kube-system", requires = "full")]
    pub lease_namespace: String,
    /// With --full: clientConnection.kubeconfig; "" for in-cluster credentials
    #[arg(long, default_value = "/etc/kubernetes/scheduler.conf", requires = "full")]
    pub kubeconfig: String,
    /// With --full: kube-scheduler's requests per second to the API server (clientConnection.qps;
    /// its own default, 50, caps binding near 50 pods/s) [default: the chart's]
    #[arg(long, requires = "full", value_parser = clap::value_parser!(u32).range(1..))]
    pub api_qps: Option<u32>,
    /// With --full: clientConnection.burst [default: the chart's]
    #[arg(long, requires = "full", value_parser = clap::value_parser!(u32).range(1..))]
    pub api_burst: Option<u32>,
}

/// Prints the policy YAML on stdout.
pub fn policy(args: PolicyArgs) -> anyhow::Result<()> {
    print!("{}", policy_yaml(&args)?);
    Ok(())
}

/// The extender entry, as the chart's `fitsched.extender` template writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extender {
    pub url_prefix: String,
    pub filter_verb: String,
    pub prioritize_verb: String,
    pub bind_verb: String,
    pub weight: u64,
    pub node_cache_capable: bool,
    pub ignorable: bool,
    pub http_timeout: String,
}

impl Extender {
    /// The chart's defaults: `extender:` and `shim.port` of values.yaml.
    pub fn chart_defaults() -> anyhow::Result<Self> {
        Self::from_values(VALUES_YAML)
    }

    fn from_values(values: &str) -> anyhow::Result<Self> {
        let get = |section: &str, key: &str| {
            top_level_scalar(values, section, key)
                .with_context(|| format!("charts/fitsched/values.yaml has no scalar {section}.{key}"))
        };
        let boolean = |section: &str, key: &str| -> anyhow::Result<bool> {
            let v = get(section, key)?;
            v.parse().with_context(|| format!("{section}.{key} in values.yaml is {v:?}, not true or false"))
        };
        let port: u16 = get("shim", "port")?.parse().context("shim.port in values.yaml")?;
        let http_timeout = get("extender", "httpTimeout")?;
        parse_duration(&http_timeout).map_err(anyhow::Error::msg).context("extender.httpTimeout in values.yaml")?;
        Ok(Self {
            url_prefix: format!("http://127.0.0.1:{port}"),
            filter_verb: get("extender", "filterVerb")?,
            prioritize_verb: get("extender", "prioritizeVerb")?,
            bind_verb: get("extender", "bindVerb")?,
            weight: get("extender", "weight")?.parse().context("extender.weight in values.yaml")?,
            node_cache_capable: boolean("extender", "nodeCacheCapable")?,
            ignorable: boolean("extender", "ignorable")?,
            http_timeout,
        })
    }

    /// The entry as one YAML list item, each line prefixed by `indent`.
    pub fn to_yaml(&self, indent: &str) -> String {
        let mut lines = vec![format!("- urlPrefix: {}", scalar(&self.url_prefix))];
        for (key, verb) in [
            ("filterVerb", &self.filter_verb),
            ("prioritizeVerb", &self.prioritize_verb),
            ("bindVerb", &self.bind_verb),
        ] {
            if !verb.is_empty() {
                lines.push(format!("  {key}: {}", scalar(verb)));
            }
        }
        lines.push(format!("  weight: {}", self.weight));
        lines.push(format!("  nodeCacheCapable: {}", self.node_cache_capable));
        lines.push(format!("  ignorable: {}", self.ignorable));
        lines.push(format!("  httpTimeout: {}", scalar(&self.http_timeout)));
        lines.iter().map(|l| format!("{indent}{l}\n")).collect()
    }
}

/// The YAML `policy` prints for `args`.
pub fn policy_yaml(args: &PolicyArgs) -> anyhow::Result<String> {
    let mut e = Extender::chart_defaults()?;
    let verb = |on: Option<bool>, name: &str, default: String| match on {
        Some(true) => name.to_owned(),
        Some(false) => String::new(),
        None => default,
    };
    // Not the chart's filterVerb: the chart renders it only with a scorer filter rule on.
    e.filter_verb = if args.filter { "filter".to_owned() } else { String::new() };
    e.prioritize_verb = verb(args.prioritize, "prioritize", e.prioritize_verb);
    e.bind_verb = verb(args.bind, "bind", e.bind_verb);
    if let Some(w) = args.weight {
        e.weight = w;
    }
    if let Some(v) = args.node_cache_capable {
        e.node_cache_capable = v;
    }
    if let Some(v) = args.ignorable {
        e.ignorable = v;
    }
    if let Some(t) = &args.http_timeout {
        e.http_timeout = t.clone();
    }
    if let Some(url) = &args.shim_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--shim-url {url:?} must start with http:// or https://");
        }
        e.url_prefix = url.trim_end_matches('/').to_owned();
    }

    let mut out = String::new();
    if !args.full {
        out.push_str(
            "# fitsched's extender: add this entry to the extenders: list of your kube-scheduler's\n\
             # KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1). `--full` prints a whole one.\n",
        );
        out.push_str("extenders:\n");
        out.push_str(&e.to_yaml("  "));
        return Ok(out);
    }
    out.push_str("# kube-scheduler --config=<this file>: its profiles with fitsched's extender.\n");
    out.push_str("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n");
    out.push_str("clientConnection:\n");
    if !args.kubeconfig.is_empty() {
        let _ = writeln!(out, "  kubeconfig: {}", scalar(&args.kubeconfig));
    }
    let client = |flag: Option<u32>, key: &str| -> anyhow::Result<u64> {
        match flag {
            Some(v) => Ok(u64::from(v)),
            None => chart_value(&["scheduler", "clientConnection", key])?
                .as_u64()
                .with_context(|| format!("scheduler.clientConnection.{key} in values.yaml is not a whole number")),
        }
    };
    let _ = writeln!(out, "  qps: {}\n  burst: {}", client(args.api_qps, "qps")?, client(args.api_burst, "burst")?);
    let _ = writeln!(out, "leaderElection:\n  leaderElect: {}", args.leader_elect);
    if args.leader_elect {
        let _ = writeln!(
            out,
            "  resourceLock: leases\n  resourceName: {}\n  resourceNamespace: {}",
            scalar(&args.lease_name),
            scalar(&args.lease_namespace)
        );
    }
    let default_strategy = match args.default_strategy {
        Some(s) => s,
        None => chart_default_strategy()?,
    };
    let mut profiles = vec![(args.scheduler_name.clone(), default_strategy)];
    if args.strategy_profiles {
        profiles.extend(Strategy::ALL.map(|s| (format!("{}-{}", args.scheduler_name, s.as_str()), s)));
    }
    out.push_str("# Give the shim beside it each profile's strategy (for pods without fitsched.io/strategy):\n");
    for (name, strategy) in &profiles {
        let _ = writeln!(out, "#   --profile-strategy={name}={}", strategy.as_str());
    }
    let pack_percentage = match args.pack_percentage {
        Some(p) => u64::from(p),
        None => chart_value(&["scheduler", "packPercentageOfNodesToScore"])?
            .as_u64()
            .context("scheduler.packPercentageOfNodesToScore in values.yaml is not a whole number")?,
    };
    out.push_str("profiles:\n");
    for (name, strategy) in &profiles {
        out.push_str(&profile_yaml(name, *strategy, pack_percentage, "  "));
    }
    out.push_str("extenders:\n");
    out.push_str(&e.to_yaml("  "));
    Ok(out)
}

/// The chart's `scorer.defaultStrategy`.
fn chart_default_strategy() -> anyhow::Result<Strategy> {
    let v = top_level_scalar(VALUES_YAML, "scorer", "defaultStrategy")
        .context("charts/fitsched/values.yaml has no scalar scorer.defaultStrategy")?;
    v.parse().with_context(|| "scorer.defaultStrategy in values.yaml")
}

/// One KubeSchedulerProfile as a YAML list item, each line prefixed by `indent`. The one
/// place here that owns each strategy's plugin settings, as the chart's `fitsched.profile`.
/// balanced keeps kube-scheduler's defaults: its system default topology spread already
/// spreads a workload's pods over hostnames and zones.
pub fn profile_yaml(name: &str, strategy: Strategy, pack_percentage: u64, indent: &str) -> String {
    let mut lines = vec![format!("- schedulerName: {}", scalar(name))];
    if strategy == Strategy::Spread {
        lines.extend(
            [
                "  plugins:",
                "    score:",
                "      enabled:",
                "        # One replica per node while any candidate holds none: 100 x 10 outvotes every other",
                "        # score (the extender's 10 x 5 x 10 included). kube-scheduler's cache counts the",
                "        # replicas it has just assumed, which no extender sees before their binds.",
                "        - name: PodTopologySpread",
                "          weight: 10",
                "  pluginConfig:",
                "    # Hostnames only: a zone constraint in the same score would let a node already holding",
                "    # a replica win over an empty node in a fuller zone. Zones are the extender's term.",
                "    - name: PodTopologySpread",
                "      args:",
                "        defaultingType: List",
                "        defaultConstraints:",
                "          - maxSkew: 1",
                "            topologyKey: kubernetes.io/hostname",
                "            whenUnsatisfiable: ScheduleAnyway",
            ]
            .map(str::to_owned),
        );
    }
    if strategy == Strategy::Pack {
        lines.extend([
            "  # Every feasible node a candidate (at 100), so the node pack fills is never left out.".to_owned(),
            format!("  percentageOfNodesToScore: {pack_percentage}"),
        ]);
        lines.extend(
            [
                "  plugins:",
                "    score:",
                "      disabled:",
                "        # It prefers nodes with even CPU and memory shares, not full ones.",
                "        - name: NodeResourcesBalancedAllocation",
                "  pluginConfig:",
                "    # Fuller nodes score higher, as under pack (the default LeastAllocated outvotes it).",
                "    - name: NodeResourcesFit",
                "      args:",
                "        scoringStrategy:",
                "          type: MostAllocated",
                "          resources:",
                "            - name: cpu",
                "              weight: 1",
                "            - name: memory",
                "              weight: 1",
                "    # No default constraints: the system defaults spread a workload's pods over nodes and zones.",
                "    - name: PodTopologySpread",
                "      args:",
                "        defaultingType: List",
            ]
            .map(str::to_owned),
        );
    }
    lines.iter().map(|l| format!("{indent}{l}\n")).collect()
}

/// A positive Go duration with one unit, the form values.schema.json admits.
fn parse_duration(s: &str) -> Result<String, String> {
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    let (number, unit) = s.split_at(digits);
    let ok = !number.is_empty() && !number.starts_with('0') && ["ms", "s", "m", "h"].contains(&unit);
    if ok { Ok(s.to_owned()) } else { Err(format!("{s:?} is not a positive duration like 300ms, 2s or 1m")) }
}

/// A YAML scalar: plain when it is safe to be, double-quoted otherwise.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-._/:".contains(c))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '/')
        && !["true", "false", "yes", "no", "on", "off", "null", "~"].contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err();
    if plain { s.to_owned() } else { format!("{s:?}") }
}

/// A value of the chart's values.yaml by path.
fn chart_value(path: &[&str]) -> anyhow::Result<serde_json::Value> {
    let values: serde_json::Value = serde_saphyr::from_str(VALUES_YAML).context("charts/fitsched/values.yaml")?;
    path.iter()
        .try_fold(&values, |v, k| v.get(k))
        .cloned()
        .with_context(|| format!("charts/fitsched/values.yaml has no {}", path.join(".")))
}

/// The scalar `section.key` of a YAML document whose `section:` starts at column 0 and
/// whose keys sit two spaces in, as in values.yaml. Comments and quotes are stripped.
fn top_level_scalar(yaml: &str, section: &str, key: &str) -> Option<String> {
    let mut inside = false;
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
            inside = line.trim_end() == format!("{section}:");
            continue;
        }
        let Some(rest) = line.strip_prefix("  ") else { continue };
        if !inside || rest.starts_with(' ') {
            continue;
        }
        let Some((k, v)) = rest.split_once(':') else { continue };
        if k != key {
            continue;
        }
        let v = strip_comment(v).trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        return Some(v.to_owned());
    }
    None
}

fn strip_comment(v: &str) -> &str {
    let mut quote = None;
    for (i, c) in v.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if i == 0 || v[..i].ends_with(' ') => return &v[..i],
            _ => {}
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> PolicyArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            policy: PolicyArgs,
        }
        let argv = std::iter::once("policy").chain(extra.iter().copied());
        <Cli as clap::Parser>::parse_from(argv).policy
    }

    #[test]
    fn defaults_come_from_the_charts_values() {
        let e = Extender::chart_defaults().unwrap();
        assert_eq!(e.url_prefix, "http://127.0.0.1:8080");
        assert_eq!(e.filter_verb, "filter");
        assert_eq!(e.prioritize_verb, "prioritize");
        assert!(e.weight >= 1);
        assert!(e.ignorable, "fitsched must never stop scheduling by default");
    }

    #[test]
    fn reads_nested_scalars_only_from_their_section() {
        let yaml = "a:\n  port: 1 # one\n  nested:\n    port: 2\nshim:\n  image:\n    port: 3\n  port: \"8081\"\n";
        assert_eq!(top_level_scalar(yaml, "a", "port").as_deref(), Some("1"));
        assert_eq!(top_level_scalar(yaml, "shim", "port").as_deref(), Some("8081"));
        assert_eq!(top_level_scalar(yaml, "shim", "missing"), None);
        assert_eq!(top_level_scalar("x:\n  v: \"\"\n", "x", "v").as_deref(), Some(""));
    }

    #[test]
    fn options_override_the_defaults() {
        let y = policy_yaml(&args(&[
            "--weight",
            "7",
            "--bind",
            "--node-cache-capable=false",
            "--http-timeout",
            "3s",
            "--shim-url",
            "http://10.0.0.5:8080/",
        ]))
        .unwrap();
        for line in [
            "  - urlPrefix: http://10.0.0.5:8080\n",
            "    bindVerb: bind\n",
            "    weight: 7\n",
            "    nodeCacheCapable: false\n",
            "    httpTimeout: 3s\n",
        ] {
            assert!(y.contains(line), "{line:?} missing from\n{y}");
        }
        assert!(!y.contains("kind:"), "only the extenders block without --full");
    }

    #[test]
    fn full_prints_a_whole_configuration() {
        let y = policy_yaml(&args(&["--full", "--kubeconfig", "", "--leader-elect=false"])).unwrap();
        assert!(y.contains("kind: KubeSchedulerConfiguration\n"));
        assert!(y.contains("leaderElect: false\n") && !y.contains("resourceName"));
        assert!(y.contains("clientConnection:\n  qps: 500\n  burst: 1000\n"), "no kubeconfig, the chart's rate limit");
        assert!(y.contains("  - schedulerName: default-scheduler\n"));
        let y = policy_yaml(&args(&["--full", "--api-qps", "80", "--api-burst", "160"])).unwrap();
        assert!(
            y.contains("clientConnection:\n  kubeconfig: /etc/kubernetes/scheduler.conf\n  qps: 80\n  burst: 160\n")
        );
    }

    #[test]
    fn filter_is_off_unless_asked_for() {
        assert!(!policy_yaml(&args(&[])).unwrap().contains("filterVerb"));
        assert!(policy_yaml(&args(&["--filter"])).unwrap().contains("    filterVerb: filter\n"));
        assert!(!policy_yaml(&args(&["--filter=false"])).unwrap().contains("filterVerb"));
    }

    #[test]
    fn strategy_profiles_follow_the_pack_settings() {
        let y = policy_yaml(&args(&[
            "--full",
            "--scheduler-name",
            "fs",
            "--default-strategy",
            "spread",
            "--strategy-profiles",
        ]))
        .unwrap();
        let names: Vec<&str> = y.lines().filter_map(|l| l.strip_prefix("  - schedulerName: ")).collect();
        assert_eq!(names, ["fs", "fs-spread", "fs-pack", "fs-balanced"]);
        assert_eq!(y.matches("percentageOfNodesToScore: 100").count(), 1, "pack only:\n{y}");
        assert!(y.contains("#   --profile-strategy=fs-pack=pack\n"));
        let pack = profile_yaml("p", Strategy::Pack, 100, "");
        for line in ["type: MostAllocated", "defaultingType: List", "- name: NodeResourcesBalancedAllocation"] {
            assert!(pack.contains(line), "{line:?} missing from\n{pack}");
        }
        assert!(!pack.contains("defaultConstraints"));
        assert_eq!(profile_yaml("b", Strategy::Balanced, 100, "  "), "  - schedulerName: b\n");
        let spread = profile_yaml("s", Strategy::Spread, 100, "");
        for line in ["- name: PodTopologySpread\n          weight: 10", "topologyKey: kubernetes.io/hostname"] {
            assert!(spread.contains(line), "{line:?} missing from\n{spread}");
        }
        assert!(!spread.contains("topology.kubernetes.io/zone"), "hostnames only:\n{spread}");
        assert!(profile_yaml("p", Strategy::Pack, 40, "").contains("\n  percentageOfNodesToScore: 40\n"));
        let one = policy_yaml(&args(&["--full", "--default-strategy=pack"])).unwrap();
        assert_eq!(one.matches("schedulerName:").count(), 1);
        assert!(one.contains("  - schedulerName: default-scheduler\n    # Every feasible"));
        assert!(chart_default_strategy().is_ok());
    }

    #[test]
    fn refuses_bad_durations_and_weights() {
        assert!(parse_duration("2s").is_ok() && parse_duration("300ms").is_ok());
        for bad in ["", "-1s", "0s", "2", "1m30s", "2 s", "02s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            policy: PolicyArgs,
        }
        assert!(<Cli as clap::Parser>::try_parse_from(["policy", "--weight", "0"]).is_err());
        assert!(<Cli as clap::Parser>::try_parse_from(["policy", "--scheduler-name", "x"]).is_err());
        assert!(<Cli as clap::Parser>::try_parse_from(["policy", "--strategy-profiles"]).is_err());
        assert!(<Cli as clap::Parser>::try_parse_from(["policy", "--full", "--default-strategy", "tight"]).is_err());
    }

    #[test]
    fn quotes_what_yaml_would_misread() {
        assert_eq!(scalar("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("10"), "\"10\"");
        assert_eq!(scalar(""), "\"\"");
        assert_eq!(scalar("a b"), "\"a b\"");
    }
}
