//! The scorer's Prometheus series: every name in one place, each described once.

/// Metric names. `inference_*` keep the original notes' names; the rest are prefixed
/// `fitsched_scorer_`. The auth module owns its own (`crate::auth::metric`).
pub mod series {
    /// Counter: Rows the fitness model scored (the original notes' name).
    pub const INFERENCE_PREDICTIONS: &str = "inference_predictions_total";
    /// Histogram: Time of one model run over a batch of rows (the original notes' name).
    pub const INFERENCE_DURATION: &str = "inference_prediction_duration_seconds";
    /// Counter: Windows stored.
    pub const WINDOWS: &str = "fitsched_scorer_windows_total";
    /// Counter: Windows received again after a reconnect, acknowledged and not stored.
    pub const WINDOWS_DUPLICATE: &str = "fitsched_scorer_windows_duplicate_total";
    /// Counter: sequence numbers an agent skipped between two stored windows of a node
    /// (windows lost on the way, dropped from a full agent buffer, or refused as invalid).
    pub const WINDOWS_SKIPPED: &str = "fitsched_scorer_windows_skipped_total";
    /// Counter: Windows refused: invalid, or of a new node while the store is full.
    pub const WINDOWS_REJECTED: &str = "fitsched_scorer_windows_rejected_total";
    /// Counter: Model file changes, by outcome (loaded, or refused and the old model kept).
    pub const MODEL_RELOADS: &str = "fitsched_scorer_model_reloads_total";
    /// Counter: Batches the model failed on; their nodes get the median fitness.
    pub const MODEL_ERRORS: &str = "fitsched_scorer_model_errors_total";
    /// Gauge: Bound pods the cluster watch holds.
    pub const WATCHED_PODS: &str = "fitsched_scorer_watched_pods";
    /// Gauge: 1 when the watch of a resource has listed the cluster.
    pub const WATCH_SYNCED: &str = "fitsched_scorer_watch_synced";
    /// Counter: Errors of the cluster watch, by resource.
    pub const WATCH_ERRORS: &str = "fitsched_scorer_watch_errors_total";
    /// Counter: Candidates scored, by what the score rests on: `fitness` (a fresh
    /// window's), `stale`, `unknown_node` or `no_fitness` (these three with the median).
    pub const SCORED_NODES: &str = "fitsched_scorer_scored_nodes_total";
    /// Gauge: Known nodes whose last window is stale.
    pub const STALE_NODES: &str = "fitsched_scorer_stale_nodes";
    /// Counter: Placements recorded from binds and the watch, by outcome.
    pub const RECORDED_PLACEMENTS: &str = "fitsched_scorer_recorded_placements_total";
    /// Gauge: Placement records held.
    pub const PLACEMENT_RECORDS: &str = "fitsched_scorer_placement_records";
    /// Counter: Nodes removed from the store: deleted from the cluster, or silent past --forget-after.
    pub const NODES_FORGOTTEN: &str = "fitsched_scorer_nodes_forgotten_total";
    /// Gauge: Nodes in the store.
    pub const NODES: &str = "fitsched_scorer_nodes";
    /// Counter: Candidates Filter rejected.
    pub const FILTERED_NODES: &str = "fitsched_scorer_filtered_nodes_total";
    /// Counter: Scoring decisions, by strategy.
    pub const DECISIONS: &str = "fitsched_scorer_decisions_total";
    /// Counter: Binds the shim reported.
    pub const BINDS: &str = "fitsched_scorer_binds_total";
}

/// Describes every series; call once the recorder is installed.
pub fn describe() {
    metrics::describe_counter!(
        series::INFERENCE_PREDICTIONS,
        "Rows the fitness model scored (the original notes' name)."
    );
    metrics::describe_histogram!(
        series::INFERENCE_DURATION,
        metrics::Unit::Seconds,
        "Time of one model run over a batch of rows (the original notes' name)."
    );
    metrics::describe_counter!(series::WINDOWS, "Windows stored.");
    metrics::describe_counter!(
        series::WINDOWS_DUPLICATE,
        "Windows received again after a reconnect, acknowledged and not stored."
    );
    metrics::describe_counter!(
        series::WINDOWS_SKIPPED,
        "Sequence numbers an agent skipped between two stored windows of a node: windows that never arrived or were refused."
    );
    metrics::describe_counter!(
        series::WINDOWS_REJECTED,
        "Windows refused: invalid, or of a new node while the store is full."
    );
    metrics::describe_counter!(
        series::MODEL_RELOADS,
        "Model file changes, by outcome (loaded, or refused and the old model kept)."
    );
    metrics::describe_counter!(
        series::MODEL_ERRORS,
        "Batches the model failed on; their nodes get the median fitness."
    );
    metrics::describe_gauge!(series::WATCHED_PODS, "Bound pods the cluster watch holds.");
    metrics::describe_gauge!(series::WATCH_SYNCED, "1 when the watch of a resource has listed the cluster.");
    metrics::describe_counter!(series::WATCH_ERRORS, "Errors of the cluster watch, by resource.");
    metrics::describe_counter!(
        series::SCORED_NODES,
        "Candidates scored, by basis: fitness (a fresh window), or the median fitness for a stale, unknown_node or no_fitness one."
    );
    metrics::describe_gauge!(series::STALE_NODES, "Known nodes whose last window is stale.");
    metrics::describe_counter!(
        series::RECORDED_PLACEMENTS,
        "Placements recorded from binds and the watch, by outcome."
    );
    metrics::describe_gauge!(series::PLACEMENT_RECORDS, "Placement records held.");
    metrics::describe_counter!(
        series::NODES_FORGOTTEN,
        "Nodes removed from the store: deleted from the cluster, or silent past --forget-after."
    );
    metrics::describe_gauge!(series::NODES, "Nodes in the store.");
    metrics::describe_counter!(series::FILTERED_NODES, "Candidates Filter rejected.");
    metrics::describe_counter!(series::DECISIONS, "Scoring decisions, by strategy.");
    metrics::describe_counter!(series::BINDS, "Binds the shim reported.");
    metrics::describe_counter!(
        crate::auth::series::REFUSED,
        "Calls refused, by reason (unauthenticated, forbidden, unavailable)."
    );
    metrics::describe_counter!(crate::auth::series::REVIEWS, "TokenReviews asked of the API server, by result.");
    fitsched_runtime::http::describe_metrics();
}
