//! The shim's promise, in one place: every verb has a deadline, counted from the request's
//! arrival, and when the scorer gives no usable answer within it `/filter` and
//! `/prioritize` are answered neutrally (every node passes; every node scores
//! `score::NEUTRAL`), so kube-scheduler's own plugins decide. `/bind` has no neutral
//! answer: its failure is reported and kube-scheduler retries or binds itself (see
//! [`crate::api`]). The handlers only translate; what they answer when the scorer does not
//! comes from here.

use std::time::{Duration, Instant};

use fitsched_proto::{CandidateNode, score};
use tracing::warn;

use crate::api::Verb;
use crate::client::CallError;
use crate::observe::series;
use crate::wire::{FailedNodes, HostPriority};

/// The verbs' deadlines, from a request's arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// `/filter` and `/prioritize` (`--deadline`): past it the answer is neutral.
    pub verb: Duration,
    /// A whole `/bind` (`--bind-deadline`): the Binding, then the scorer's notice.
    pub bind: Duration,
}

impl Default for Deadlines {
    /// 300 ms a verb, 1 s a bind.
    fn default() -> Self {
        Self { verb: Duration::from_millis(300), bind: Duration::from_secs(1) }
    }
}

impl Deadlines {
    /// `verb`'s deadline.
    pub(crate) fn of(&self, verb: Verb) -> Duration {
        match verb {
            Verb::Bind => self.bind,
            Verb::Filter | Verb::Prioritize => self.verb,
        }
    }

    /// When the scorer's answer to a request that arrived at `arrived` is given up on.
    pub(crate) fn until(&self, verb: Verb, arrived: Instant) -> Instant {
        arrived + self.of(verb)
    }

    /// When a bind's notice to the scorer is given up on: what is left of the bind's
    /// deadline, and never more than a verb's, so a scorer that is down or restarting
    /// does not hold a bound pod's answer for the rest of a second.
    pub(crate) fn notice_until(&self, arrived: Instant) -> Instant {
        (arrived + self.bind).min(Instant::now() + self.verb)
    }
}

/// How far past its deadline an answer may leave before it counts as late: encoding and
/// writing the answer, and the scheduling of the task that does it.
pub const LATE_AFTER: Duration = Duration::from_millis(50);

/// `/filter` without the scorer: every candidate passes (indices in request order).
pub(crate) fn every_node_passes(candidates: usize) -> (Vec<usize>, FailedNodes) {
    ((0..candidates).collect(), FailedNodes::default())
}

/// `/prioritize` without the scorer: every candidate gets the neutral score.
pub(crate) fn neutral_scores(nodes: &[CandidateNode]) -> Vec<HostPriority<'_>> {
    nodes.iter().map(|n| HostPriority { host: &n.name, score: i64::from(score::NEUTRAL) }).collect()
}

/// Counts and logs a neutral answer, with why the scorer gave no usable one.
pub(crate) fn answered_neutrally(verb: Verb, pod: &str, e: &CallError) {
    metrics::counter!(series::FALLBACKS, "verb" => verb.as_str(), "reason" => e.reason()).increment(1);
    warn!(pod, verb = verb.as_str(), reason = e.reason(), error = %e, "scorer gave no usable answer; answering neutrally");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutral_answers_pass_every_node_and_score_it_neutrally() {
        let nodes: Vec<CandidateNode> =
            ["a", "b", "c"].iter().map(|n| CandidateNode { name: (*n).into(), ..Default::default() }).collect();
        let (passing, failed) = every_node_passes(nodes.len());
        assert_eq!(passing, [0, 1, 2]);
        assert!(failed.0.is_empty());
        let scores = neutral_scores(&nodes);
        assert!(scores.iter().all(|p| p.score == i64::from(score::NEUTRAL)));
        assert_eq!(scores.iter().map(|p| p.host).collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn a_bind_notice_never_outlasts_either_deadline() {
        let d = Deadlines { verb: Duration::from_millis(300), bind: Duration::from_secs(1) };
        let arrived = Instant::now();
        assert_eq!(d.until(Verb::Bind, arrived), arrived + d.bind);
        assert_eq!(d.until(Verb::Filter, arrived), arrived + d.verb);
        let notice = d.notice_until(arrived);
        assert!(notice <= arrived + d.bind && notice <= Instant::now() + d.verb);
        // Late in the bind, what is left of the bind's deadline bounds the notice.
        let long_ago = arrived - Duration::from_millis(900);
        assert_eq!(d.notice_until(long_ago), long_ago + d.bind);
    }
}
