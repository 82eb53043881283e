//! Every limit the scorer enforces, in one place: built from its arguments
//! ([`Limits::from_args`]) and handed to each part that enforces one (the node store, the
//! placement records, the services, the token reviewer, the gRPC server). The README's
//! limits table is held against [`Limits::default`] by a test here.

use std::time::Duration;

/// What the scorer accepts and keeps, at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Nodes tracked (`--max-nodes`); a new node's window past it is refused with
    /// `RESOURCE_EXHAUSTED`.
    pub max_nodes: usize,
    /// Node zones learnt from requests (without a node watch): one per tracked node.
    pub max_learnt_zones: usize,
    /// A node not heard from for this long is forgotten (`--forget-after`).
    pub forget_after: Duration,
    /// Placement records (pods scored or bound) the watch has not confirmed yet;
    /// kube-scheduler binds a few hundred pods a second at most.
    pub max_placement_records: usize,
    /// Candidate nodes in one `Score` or `Filter` request.
    pub max_candidates: usize,
    /// Rows in one `Predict` request.
    pub max_predict_rows: usize,
    /// `Predict` calls running at once, each on a blocking thread; more are refused.
    pub max_concurrent_predicts: usize,
    /// HTTP/2 streams one gRPC connection may have open (agents multiplex one stream per
    /// reported node: a replaying or simulating agent reports hundreds).
    pub max_streams: u32,
    /// Calls one connection's handlers serve at once.
    pub max_concurrent_calls: usize,
    /// A gRPC message, either way.
    pub max_grpc_message: usize,
    /// TokenReviews sent to the API server at once.
    pub max_reviews_in_flight: usize,
    /// How long a TokenReview's answer is trusted.
    pub review_ttl: Duration,
    /// TokenReview answers cached; when full, expired ones are dropped, then all.
    pub max_cached_reviews: usize,
    /// The HTTP listener's connections and request heads.
    pub serve: fitsched_runtime::http::ServeLimits,
}

impl Limits {
    /// `--max-nodes`' default: Kubernetes supports clusters of 5 000 nodes; ten times that
    /// leaves room for churn, and bounds the store near 100 MB.
    pub const DEFAULT_MAX_NODES: usize = 50_000;
    /// `--forget-after`'s default.
    pub const DEFAULT_FORGET_AFTER: Duration = Duration::from_secs(600);

    /// The limits for a scorer tracking `max_nodes` nodes: what scales with the cluster
    /// follows it.
    pub fn new(max_nodes: usize, forget_after: Duration) -> Self {
        Self {
            max_nodes,
            max_learnt_zones: max_nodes,
            forget_after,
            max_placement_records: 100_000,
            max_candidates: 100_000,
            max_predict_rows: 10_000,
            max_concurrent_predicts: 2,
            max_streams: 1024,
            max_concurrent_calls: 256,
            max_grpc_message: fitsched_runtime::MAX_GRPC_MESSAGE,
            max_reviews_in_flight: 8,
            review_ttl: Duration::from_secs(60),
            max_cached_reviews: 4096,
            serve: fitsched_runtime::http::ServeLimits::default(),
        }
    }

    pub fn from_args(args: &crate::Args) -> Self {
        Self::new(args.max_nodes, args.forget_after)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_NODES, Self::DEFAULT_FORGET_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `50000` as the README writes it: `50 000`.
    fn spaced(n: usize) -> String {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(' ');
            }
            out.push(c);
        }
        out
    }

    fn row(limit: &str) -> String {
        fitsched_runtime::limits_table::row(include_str!("../../README.md"), limit)
    }

    #[test]
    fn the_readme_table_says_what_the_scorer_enforces() {
        let l = Limits::default();
        let v = fitsched_proto::validate::MAX_NODE_NAME;
        let m = fitsched_proto::validate::MAX_METRICS;
        assert_eq!(
            row("node name, metrics per window, candidate nodes per request, Predict rows"),
            format!("{v} B, {}, {}, {}", spaced(m), spaced(l.max_candidates), spaced(l.max_predict_rows))
        );
        assert_eq!(row("tracked nodes"), format!("`--max-nodes {}`", l.max_nodes));
        assert_eq!(row("zones learnt from requests (no node watch)"), "one per tracked node (`--max-nodes`)");
        assert_eq!(row("placement records the watch has not confirmed"), spaced(l.max_placement_records));
        assert_eq!(
            row("gRPC calls per connection (scorer)"),
            format!("{} served at once, {} streams open", l.max_concurrent_calls, spaced(l.max_streams as usize))
        );
        assert_eq!(row("Predict calls at once"), format!("{}, each on a blocking thread", l.max_concurrent_predicts));
        assert_eq!(row("node silent"), format!("`--forget-after {}`", humantime::format_duration(l.forget_after)));
        assert_eq!(
            row("gRPC message, both ends"),
            format!("{} MiB (`fitsched_runtime::MAX_GRPC_MESSAGE`)", l.max_grpc_message >> 20)
        );
    }

    #[test]
    fn the_defaults_are_the_flags_defaults_and_the_zone_cap_follows_max_nodes() {
        let args = crate::Args::try_parse_from(["fitsched-scorer"]).unwrap();
        assert_eq!(Limits::from_args(&args), Limits::default());
        let args = crate::Args::try_parse_from(["fitsched-scorer", "--max-nodes", "80000"]).unwrap();
        let l = Limits::from_args(&args);
        assert_eq!((l.max_nodes, l.max_learnt_zones), (80_000, 80_000));
    }
}
