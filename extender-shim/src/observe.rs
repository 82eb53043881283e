//! The per-verb metrics, as one layer around the extender's routes: every answer to a
//! verb (the handler's, a neutral one, a refusal) is counted by verb and status and timed
//! from the request's arrival; an answer past its deadline plus [`LATE_AFTER`] is counted
//! as late. The layer also stamps the arrival ([`Arrived`]) that deadlines count from.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::warn;

use crate::api::Verb;
use crate::fallback::{Deadlines, LATE_AFTER};

/// Metric names, all prefixed `fitsched_`.
pub mod series {
    /// Counter `{verb, code}`: answered extender requests by HTTP status.
    pub const REQUESTS: &str = "fitsched_shim_requests_total";
    /// Histogram `{verb}`: time from request to answer, seconds.
    pub const REQUEST_DURATION: &str = "fitsched_shim_request_duration_seconds";
    /// Counter `{verb, reason}`: neutral answers given because the scorer gave no usable one.
    pub const FALLBACKS: &str = "fitsched_shim_fallbacks_total";
    /// Counter `{verb, code}`: requests refused (400, 408, 413, 503).
    pub const BAD_REQUESTS: &str = "fitsched_shim_bad_requests_total";
    /// Counter `{reason}`: binds reported failed to kube-scheduler.
    pub const BIND_ERRORS: &str = "fitsched_shim_bind_errors_total";
    /// Counter: answers (200: the scorer's or a neutral one) that left more than 50 ms after
    /// their verb's deadline (counted from the request's arrival), by verb. Refusals are not.
    pub const LATE_ANSWERS: &str = "fitsched_shim_late_answers_total";
    /// Binds whose POST was refused or unanswered, but whose pod was already on the
    /// requested node: reported bound.
    pub const BINDS_FOUND_BOUND: &str = "fitsched_shim_binds_found_bound_total";
    /// Counter: Bindings created whose notice to the scorer failed.
    pub const BIND_NOTICE_FAILURES: &str = "fitsched_shim_bind_notice_failures_total";
}

/// When a verb's request arrived. Its deadline counts from here: reading and decoding
/// the body spend the same budget as the scorer's answer, so the answer leaves within
/// the deadline, not within the deadline after the body was read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrived(pub(crate) Instant);

impl Arrived {
    pub(crate) fn of(extension: Option<axum::extract::Extension<Arrived>>) -> Instant {
        extension.map_or_else(Instant::now, |axum::extract::Extension(Arrived(at))| at)
    }
}

/// The layer: stamps the arrival, runs the rest, records the answer.
pub(crate) async fn observe(State(deadlines): State<Deadlines>, mut req: Request, next: Next) -> Response {
    let Some(verb) = Verb::from_path(req.uri().path()) else { return next.run(req).await };
    let start = Instant::now();
    req.extensions_mut().insert(Arrived(start));
    let response = next.run(req).await;
    record(verb, start, &response, deadlines.of(verb));
    response
}

/// Counts an answer and its time since the request arrived; an answer (200) that left
/// later than `deadline` + [`LATE_AFTER`] is counted and logged as late. Refusals are not:
/// a body that took its read timeout to arrive is answered 408 by design.
fn record(verb: Verb, start: Instant, response: &Response, deadline: std::time::Duration) {
    let code = response.status().as_u16().to_string();
    let took = start.elapsed();
    metrics::counter!(series::REQUESTS, "verb" => verb.as_str(), "code" => code).increment(1);
    metrics::histogram!(series::REQUEST_DURATION, "verb" => verb.as_str()).record(took.as_secs_f64());
    if response.status() == axum::http::StatusCode::OK && took > deadline + LATE_AFTER {
        metrics::counter!(series::LATE_ANSWERS, "verb" => verb.as_str()).increment(1);
        warn!(
            verb = verb.as_str(),
            took_ms = took.as_millis() as u64,
            deadline_ms = deadline.as_millis() as u64,
            "answered after the deadline"
        );
    }
}
