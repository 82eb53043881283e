//! Strategies: how fitness, load and replica siblings become a kube-scheduler score.
//!
//! Each strategy computes a raw score in [0, 1] per candidate. With `f` the node's
//! fitness, `n` the pod's siblings on the node, `z` its siblings in the node's zone,
//! `z_min` the fewest siblings in any candidate zone, `f' = f / (1 + r / c)` the fitness
//! discounted for the `r` pods of any owner placed on the node since its window (`c` its
//! allocatable CPUs: the request's, else the node watch's, else the window's CPU count, else 4), and
//! `f'₊ = f / (1 + (r + q) / c)` the same after this pod too (`q` its CPU request in CPUs,
//! 0.1 when it requests none, as kube-scheduler counts such pods), `u = min(1, (R + q) /
//! c)` the node's requested share with this pod (`R` the CPUs the pods on it request) and
//! `u_max` the largest `u` among the request's candidates that pass `pack`'s guard:
//!
//! | strategy | raw score |
//! |---|---|
//! | `spread` | `f' / (1 + 2n + 0.5z)` |
//! | `pack` | `0.5 + 0.49·u / u_max + 0.01·f'₊` when `f'₊ ≥ 0.5` (the guard), else `0.5·f'₊` (always below any node that passes) |
//! | `balanced` | `f' / (1 + 0.5n) − 0.1·(z − z_min)`, clamped to [0, 1] |
//!
//! **Why `f'`**: a window shows the node before the pods placed since; every pod that
//! arrives within one window would otherwise be scored against the same picture and
//! herd onto the node that looked best. Each recent pod is taken to keep one CPU busy
//! (the scorer records pods, not their sizes), so on a 2-CPU node one halves the fitness
//! for the next pod's benefit, on a 32-CPU node it barely counts. A pod counts until the
//! node's fitness comes from a window that began after the pod was placed (the window
//! that shows it whole), not for a fixed time: a burst longer than a window, or an agent
//! that reports late, would otherwise see the pods vanish before any window shows them.
//!
//! **What `pack` does**: consolidation follows requested resources, as the pack
//! profile's `NodeResourcesFit` with `MostAllocated` does; the extender's part is to keep
//! pods off nodes whose measured state is bad. Among the nodes whose fitness would stay at
//! 0.5 or more with this pod on it, the one whose pods request the largest share of its
//! CPUs scores highest; the others score below, by how they would fare, so a pod still
//! goes to the least bad node when none passes. A node is never preferred for being
//! measured busy: filling a node that is already hot is not consolidation. Why the
//! extender ranks by requests at all: `MostAllocated` scores integers, so on a 16-CPU node
//! the first pods of 100m all score 0 and kube-scheduler spreads them at random; the
//! scorer's requested share separates them. Relative to the fullest node that passes, so
//! the node being filled stays well ahead of empty ones even when a node failing the
//! guard stretches the request's range (kube-scheduler's topology spread, which scores
//! every profile, outvotes a one-point lead). The hundredth for `f'₊` only breaks ties
//! between equally requested nodes (empty ones most often): the fitter one is filled
//! first, so it takes more pods before its guard fails.
//!
//! **Nodes without a usable fitness** (stale, unknown, or a window whose fitness is not
//! computed) are scored with the same terms, `f` being the median fitness of the
//! cluster's fresh nodes (kept by the node store; 0.5 when none is fresh) and `o` having
//! no measured CPU. Such a node is neither a magnet nor a blacklist: under `spread` its
//! siblings push the next replica away exactly as on a measured node, and it loses to an
//! emptier node of median fitness.
//!
//! **The integer score** spans the whole extender range 0..=10 within one request
//! ([`normalise`]): the raw scores of the request's candidates are min–max normalised,
//! the best raw scoring 10, the worst 0, linear in between, rounded half away from zero
//! as [`scale`] does. When every candidate has the same raw score (a single candidate
//! too) each gets `scale(raw)`. Why: kube-scheduler adds `score × weight × 10` to its
//! plugins' scores, each 0..100 times its own weight, so only the difference between
//! candidates matters, and raw scores scaled one by one often put the candidates on one
//! or two neighbouring integers, a difference the plugins outvote (under `pack` the node
//! to fill scored 7 where the others scored 6). The raw score stays in [`Scored::raw`]
//! and in the decision's reasons; the reason's `-> N` is the final integer.
//!
//! Scores are computed for every candidate; the words that explain one ([`reason`]) only
//! for the nodes a decision log shows, so a 5 000-node request formats a handful.
//! `pack` ignores siblings: filling a node with one owner's replicas is its purpose.

pub use fitsched_proto::Strategy;
use fitsched_proto::score;

/// The fitness a node must keep with the pod on it for `pack` to fill it (the guard).
pub const PACK_MIN_FITNESS: f64 = 0.5;
/// The CPUs assumed for a node whose window does not say (the discount of `f'`).
pub const CORES_WHEN_UNKNOWN: f64 = 4.0;
/// The CPU request counted for a pod that requests none, in CPUs: kube-scheduler's own
/// (`DefaultMilliCPURequest`, 100m) for scoring such pods.
pub const REQUEST_WHEN_NONE: f64 = 0.1;

/// What a strategy knows of one candidate node: its fitness, or the stand-in (the fresh
/// nodes' median) for a node without a usable one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub fitness: f64,
    /// Pods of any owner placed on the node since its window.
    pub recent: u32,
    /// The CPUs the pods on the node request (placed or recorded; not this pod).
    pub requested: f64,
    /// The node's allocatable CPUs ([`CORES_WHEN_UNKNOWN`] when nothing says).
    pub cores: f64,
    /// The pod's CPU request, in CPUs ([`REQUEST_WHEN_NONE`] when it requests none).
    pub request: f64,
    pub siblings_on_node: u32,
    pub siblings_in_zone: u32,
    /// The fewest siblings in any zone among the candidates (0 without zones).
    pub fewest_in_any_zone: u32,
    /// `u_max`: the largest requested share among the candidates that pass `pack`'s
    /// guard ([`packing_share`]); 0 when none does.
    pub fullest_share: f64,
}

/// A candidate's score: the raw value in [0, 1] and the extender's integer (after
/// [`score`], `scale(raw)`; after [`normalise`], the request's normalised integer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub raw: f64,
    pub score: i32,
}

/// A pod's CPU request in CPUs, from millicores (none: [`REQUEST_WHEN_NONE`]).
pub fn request_cpus(millis: i64) -> f64 {
    if millis > 0 { millis as f64 / 1000.0 } else { REQUEST_WHEN_NONE }
}

/// Raw scores closer than this count as equal in [`normalise`], so float noise between
/// equal terms never becomes a 0-to-10 difference.
pub const SAME_RAW: f64 = 1e-9;

/// Scales a raw score in [0, 1] to kube-scheduler's 0..=10.
pub fn scale(raw: f64) -> i32 {
    // `as` saturates and maps NaN to 0; the clamp keeps it in range either way.
    ((raw.clamp(0.0, 1.0) * f64::from(score::MAX)).round() as i32).clamp(0, score::MAX)
}

pub fn score(strategy: Strategy, c: &Candidate) -> Scored {
    let (n, z) = (f64::from(c.siblings_on_node), f64::from(c.siblings_in_zone));
    let raw = match strategy {
        Strategy::Spread => discounted(c) / (1.0 + 2.0 * n + 0.5 * z),
        Strategy::Pack => match with_pod(c) {
            after if after >= PACK_MIN_FITNESS => 0.5 + 0.49 * relative_share(c) + 0.01 * after,
            after => 0.5 * after,
        },
        Strategy::Balanced => (discounted(c) / (1.0 + 0.5 * n) - 0.1 * zone_excess(c)).clamp(0.0, 1.0),
    };
    Scored { raw, score: scale(raw) }
}

/// `f'`: the fitness less what the pods placed since the window will take.
fn discounted(c: &Candidate) -> f64 {
    c.fitness.clamp(0.0, 1.0) * discount(c)
}

/// `f'₊`: the fitness less what the pods placed since the window and this pod will take.
fn with_pod(c: &Candidate) -> f64 {
    c.fitness.clamp(0.0, 1.0) / (1.0 + (f64::from(c.recent) + c.request.max(0.0)) / cores(c))
}

/// The share of its fitness a node keeps for the pods placed since its window.
fn discount(c: &Candidate) -> f64 {
    1.0 / (1.0 + f64::from(c.recent) / cores(c))
}

/// `u` when the candidate passes `pack`'s guard: what [`Candidate::fullest_share`] is
/// the largest of.
pub fn packing_share(c: &Candidate) -> Option<f64> {
    (with_pod(c) >= PACK_MIN_FITNESS).then(|| requested_share(c))
}

/// `u / u_max` (1 when `u_max` is unknown or not above `u`).
fn relative_share(c: &Candidate) -> f64 {
    let u = requested_share(c);
    if c.fullest_share > u { u / c.fullest_share } else { 1.0 }
}

/// `u`: the share of the node's CPUs requested with this pod on it, at most 1.
fn requested_share(c: &Candidate) -> f64 {
    ((c.requested.max(0.0) + c.request.max(0.0)) / cores(c)).min(1.0)
}

fn cores(c: &Candidate) -> f64 {
    if c.cores >= 1.0 { c.cores } else { CORES_WHEN_UNKNOWN }
}

/// Siblings in the candidate's zone beyond the emptiest zone's.
fn zone_excess(c: &Candidate) -> f64 {
    f64::from(c.siblings_in_zone.saturating_sub(c.fewest_in_any_zone))
}

/// Spreads one request's integer scores over 0..=10: the best raw score gets 10, the
/// worst 0, the others their linear place in between (rounded as [`scale`] rounds). When
/// all raw scores are equal (within [`SAME_RAW`]) each keeps `scale(raw)`. One pass to
/// find the range, one to rescale; no allocation.
///
/// Only one candidate keeps the 10: the best raw score, the first in request order among
/// equals; others that rounded to 10 get 9. kube-scheduler breaks ties between equal
/// totals at random and binds asynchronously, scoring the next replica before it tells
/// us where the last one went; a unique top makes the node it picks far more likely to
/// be the node we assumed (see `Placements::assume`; its own plugins can still differ),
/// so the next replica's sibling counts are right.
pub fn normalise(scored: &mut [Scored]) {
    let (lo, hi) = scored.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| (lo.min(s.raw), hi.max(s.raw)));
    let span = hi - lo;
    // An empty request has no range (-inf) and a single candidate a range of 0.
    if span.is_nan() || span <= SAME_RAW {
        for s in scored.iter_mut() {
            s.score = scale(s.raw);
        }
        return;
    }
    let best = scored.iter().position(|s| s.raw >= hi).unwrap_or(0);
    for (i, s) in scored.iter_mut().enumerate() {
        s.score = scale((s.raw - lo) / span);
        if s.score == score::MAX && i != best {
            s.score = score::MAX - 1;
        }
    }
}

/// The strategy's own terms for `c`, without the fitness.
fn terms(strategy: Strategy, c: &Candidate) -> String {
    let recent = if c.recent == 0 || strategy == Strategy::Pack {
        String::new()
    } else {
        format!("{} pod(s) placed since its window: x{:.2}, ", c.recent, discount(c))
    };
    let guard =
        |passes: &str| format!("{:.2} with this pod and {} placed since its window{passes}", with_pod(c), c.recent);
    recent
        + &match strategy {
            Strategy::Spread => format!(
                "{} sibling(s) on node, {} in zone: /{:.1}",
                c.siblings_on_node,
                c.siblings_in_zone,
                1.0 + 2.0 * f64::from(c.siblings_on_node) + 0.5 * f64::from(c.siblings_in_zone)
            ),
            Strategy::Pack if with_pod(c) >= PACK_MIN_FITNESS => guard(&format!(
                " (at least {PACK_MIN_FITNESS}), {:.0} % of its CPUs requested with this pod",
                100.0 * requested_share(c)
            )),
            Strategy::Pack => guard(&format!(" (below {PACK_MIN_FITNESS}: filled only when no node passes)")),
            Strategy::Balanced => {
                format!("{} sibling(s) on node, {} more in zone than the emptiest", c.siblings_on_node, zone_excess(c))
            }
        }
}

/// The words that explain `scored` (the final integer after [`normalise`]) for a node
/// with its own fitness: `spread: fitness 0.80, 1 sibling(s) on node, ... -> 2`.
pub fn reason(strategy: Strategy, c: &Candidate, scored: Scored) -> String {
    let f = c.fitness.clamp(0.0, 1.0);
    format!("{strategy}: fitness {f:.2}, {}, raw {:.3} -> {}", terms(strategy, c), scored.raw, scored.score)
}

/// The words for a node scored with the median fitness: `why` (e.g. "no window from this
/// node yet") then `median fitness 0.62, ` and the strategy's own words.
pub fn reason_without_fitness(strategy: Strategy, why: &str, c: &Candidate, scored: Scored) -> String {
    format!(
        "{why}: median fitness {:.2}, {strategy}: {}, raw {:.3} -> {}",
        c.fitness.clamp(0.0, 1.0),
        terms(strategy, c),
        scored.raw,
        scored.score
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::{prop_assert, prop_assert_eq, proptest};

    fn cand(fitness: f64, on_node: u32, in_zone: u32) -> Candidate {
        Candidate {
            fitness,
            recent: 0,
            requested: 0.0,
            cores: 2.0,
            request: 0.1,
            siblings_on_node: on_node,
            siblings_in_zone: in_zone,
            fewest_in_any_zone: 0,
            fullest_share: 0.0,
        }
    }

    #[test]
    fn pods_placed_since_the_window_discount_the_fitness_except_for_pack() {
        let idle = cand(0.9, 0, 0);
        let just_filled = Candidate { recent: 2, ..idle };
        for strategy in [Strategy::Spread, Strategy::Balanced] {
            let (a, b) = (score(strategy, &idle), score(strategy, &just_filled));
            // Two pods on two CPUs since the window: half the fitness.
            assert!((b.raw - a.raw / 2.0).abs() < 1e-12, "{strategy}: {a:?} {b:?}");
            assert!(reason(strategy, &just_filled, b).contains("2 pod(s) placed since its window: x0.50"));
        }
        let big = Candidate { cores: 32.0, ..just_filled };
        assert!(
            score(Strategy::Spread, &big).raw > 0.9 * score(Strategy::Spread, &idle).raw,
            "a big node barely notices"
        );
        let unknown = Candidate { cores: 0.0, ..just_filled };
        assert!(
            (score(Strategy::Spread, &unknown).raw - 0.9 / 1.5).abs() < 1e-12,
            "4 CPUs when the window does not say"
        );
        // pack counts them, and this pod, in its guard: 0.9 / (1 + 2.1 / 2) fails it.
        assert!(score(Strategy::Pack, &idle).raw >= 0.5, "{:?}", score(Strategy::Pack, &idle));
        assert!(score(Strategy::Pack, &just_filled).raw < 0.25, "{:?}", score(Strategy::Pack, &just_filled));
    }

    #[test]
    fn parses_names() {
        assert_eq!("pack".parse::<Strategy>().unwrap(), Strategy::Pack);
        assert!("Spread!".parse::<Strategy>().is_err());
    }

    #[test]
    fn spread_repels_siblings() {
        let empty = score(Strategy::Spread, &cand(0.8, 0, 0));
        let crowded = score(Strategy::Spread, &cand(0.8, 1, 1));
        assert_eq!(empty.score, 8);
        assert_eq!(
            reason(Strategy::Spread, &cand(0.8, 1, 1), crowded),
            "spread: fitness 0.80, 1 sibling(s) on node, 1 in zone: /3.5, raw 0.229 -> 2"
        );
        assert!(crowded.score < empty.score, "{crowded:?}");
    }

    #[test]
    fn pack_fills_the_most_requested_node_that_passes_and_keeps_pods_off_bad_nodes() {
        // Among nodes that keep 0.5 with the pod on it, requests decide, never the measured
        // fitness: a fitter empty node loses to a fit-enough one with pods requesting CPU.
        // The fullest node that passes: 1 CPU of 4 requested with this pod.
        let filled = Candidate { requested: 0.9, cores: 4.0, fullest_share: 0.25, ..cand(0.7, 0, 0) };
        let fit = score(Strategy::Pack, &Candidate { fullest_share: 0.25, ..cand(0.9, 0, 0) });
        let fit_enough = score(Strategy::Pack, &filled);
        assert_eq!(packing_share(&filled), Some(0.25));
        let (fit_after, filled_after) = (0.9 / 1.05, 0.7 / (1.0 + 0.1 / 4.0));
        assert_eq!(fit.raw, 0.5 + 0.49 * (0.05 / 0.25) + 0.01 * fit_after, "0.1 of 2 CPUs, a fifth of the fullest's");
        assert_eq!(fit_enough.raw, 0.5 + 0.49 + 0.01 * filled_after);
        // Equally requested (empty) nodes: the fitter is filled first.
        let empty = |f| score(Strategy::Pack, &Candidate { fullest_share: 0.05, ..cand(f, 0, 0) }).raw;
        assert!(empty(0.9) > empty(0.6));
        let full = Candidate { requested: 7.0, fullest_share: 0.0, ..filled };
        assert_eq!(score(Strategy::Pack, &full).raw, 0.99 + 0.01 * filled_after, "the share stops at the whole node");
        assert!(reason(Strategy::Pack, &filled, fit_enough).contains("25 % of its CPUs requested with this pod"));
        // 0.55 on 2 CPUs with a 1.5-CPU pod: 0.55 / 1.75 = 0.31, below the guard.
        let big = Candidate { request: 1.5, ..cand(0.55, 0, 0) };
        let unfit = score(Strategy::Pack, &cand(0.3, 0, 0));
        assert!(score(Strategy::Pack, &big).raw < 0.25 && unfit.raw < 0.25);
        // Below the guard, the less bad node still ranks first.
        assert!(score(Strategy::Pack, &big).raw > unfit.raw);
        assert!(
            reason(Strategy::Pack, &big, score(Strategy::Pack, &big)).contains("0.31 with this pod"),
            "{}",
            reason(Strategy::Pack, &big, score(Strategy::Pack, &big))
        );
        assert_eq!((request_cpus(0), request_cpus(250)), (REQUEST_WHEN_NONE, 0.25));
    }

    #[test]
    fn scale_rounds_and_clamps() {
        assert_eq!(
            (scale(0.0), scale(0.44), scale(0.45), scale(1.0), scale(7.0), scale(f64::NAN)),
            (0, 4, 5, 10, 10, 0)
        );
    }

    #[test]
    fn normalise_spans_the_range_and_keeps_equal_raws_scaled() {
        let norm = |raws: &[f64]| {
            let mut v: Vec<Scored> = raws.iter().map(|&raw| Scored { raw, score: scale(raw) }).collect();
            normalise(&mut v);
            v.iter().map(|s| s.score).collect::<Vec<_>>()
        };
        // pack: the node to fill no longer scores 7 against 6.
        assert_eq!(norm(&[0.66, 0.62, 0.60, 0.64]), [10, 3, 0, 7]);
        assert_eq!(norm(&[0.3, 0.3, 0.3]), [3, 3, 3]);
        // Near-equal best nodes: the first best keeps the 10, the other gets 9.
        assert_eq!(norm(&[0.2, 0.97, 0.98, 0.98]), [0, 9, 10, 9]);
        assert_eq!(norm(&[0.44]), [4]);
        assert_eq!(norm(&[]), Vec::<i32>::new());
        let reasons = {
            let c = cand(0.8, 1, 1);
            let mut v = [score(Strategy::Spread, &c), score(Strategy::Spread, &cand(0.8, 0, 0))];
            normalise(&mut v);
            (reason(Strategy::Spread, &c, v[0]), reason_without_fitness(Strategy::Spread, "stale", &c, v[0]))
        };
        assert!(reasons.0.ends_with("raw 0.229 -> 0"), "{}", reasons.0);
        assert_eq!(
            reasons.1,
            "stale: median fitness 0.80, spread: 1 sibling(s) on node, 1 in zone: /3.5, raw 0.229 -> 0"
        );
    }

    proptest! {
        #[test]
        fn normalise_is_monotone_and_gives_the_best_ten(raws in proptest::collection::vec(0.0f64..=1.0, 1..60)) {
            let mut v: Vec<Scored> = raws.iter().map(|&raw| Scored { raw, score: scale(raw) }).collect();
            normalise(&mut v);
            for a in &v {
                prop_assert!((0..=score::MAX).contains(&a.score));
                for b in &v {
                    prop_assert!(a.raw <= b.raw || a.score >= b.score, "{a:?} ranks below {b:?}");
                }
            }
            let (lo, hi) = raws.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &r| (l.min(r), h.max(r)));
            if hi - lo > SAME_RAW {
                // One 10 only, for the first best raw in request order.
                let tens: Vec<usize> = (0..v.len()).filter(|&i| v[i].score == score::MAX).collect();
                let first_best = raws.iter().position(|&r| r == hi).unwrap();
                prop_assert_eq!(tens, vec![first_best]);
            }
            for s in &v {
                if hi - lo > SAME_RAW {
                    prop_assert!(s.raw != lo || s.score == 0, "worst raw {lo} got {}", s.score);
                } else {
                    prop_assert_eq!(s.score, scale(s.raw));
                }
            }
        }

        #[test]
        fn strategies_normalised_still_rank_by_raw(
            cs in proptest::collection::vec((0.0f64..1.0, 0u32..5, 0u32..5), 2..40),
            k in 0usize..3,
        ) {
            let strategy = Strategy::ALL[k];
            let mut v: Vec<Scored> = cs.iter().map(|&(f, n, z)| score(strategy, &cand(f, n, z))).collect();
            normalise(&mut v);
            let best = v.iter().map(|s| s.raw).fold(f64::NEG_INFINITY, f64::max);
            let worst = v.iter().map(|s| s.raw).fold(f64::INFINITY, f64::min);
            if best - worst > SAME_RAW {
                prop_assert!(v.iter().any(|s| s.score == score::MAX));
            }
            for a in &v {
                for b in &v {
                    prop_assert!(a.raw <= b.raw || a.score >= b.score);
                }
            }
        }

        #[test]
        fn scores_stay_in_range(f in -1.0f64..2.0, q in -1.0f64..64.0, n in 0u32..50, z in 0u32..50, s in 0usize..3) {
            let r = score(Strategy::ALL[s], &Candidate { request: q, ..cand(f, n, z) });
            prop_assert!((0..=score::MAX).contains(&r.score));
        }

        #[test]
        fn spread_never_prefers_a_sibling_node_over_an_equally_fit_empty_one(f in 0.0f64..1.0, n in 1u32..20, z in 0u32..20) {
            let empty = score(Strategy::Spread, &cand(f, 0, z));
            let taken = score(Strategy::Spread, &cand(f, n, z));
            prop_assert!(empty.raw >= taken.raw);
        }

        #[test]
        fn pack_never_prefers_a_node_that_fails_its_guard(
            a in 0.0f64..1.0, b in 0.0f64..1.0, ra in 0u32..8, rb in 0u32..8, q in 0.0f64..4.0,
            ua in 0.0f64..8.0, ub in 0.0f64..8.0,
        ) {
            let (x, y) = (
                Candidate { recent: ra, request: q, requested: ua, ..cand(a, 0, 0) },
                Candidate { recent: rb, request: q, requested: ub, ..cand(b, 0, 0) },
            );
            let fullest_share = packing_share(&x).into_iter().chain(packing_share(&y)).fold(0.0, f64::max);
            let (x, y) = (Candidate { fullest_share, ..x }, Candidate { fullest_share, ..y });
            let (sx, sy) = (score(Strategy::Pack, &x).raw, score(Strategy::Pack, &y).raw);
            match (with_pod(&x) >= PACK_MIN_FITNESS, with_pod(&y) >= PACK_MIN_FITNESS) {
                (true, true) => prop_assert!(
                    (requested_share(&x) - requested_share(&y)).abs() <= 0.03 * fullest_share || (ua > ub) == (sx > sy),
                    "passing nodes rank by requests, fitness only within a fiftieth of the fullest share"
                ),
                (true, false) => prop_assert!(sx > sy),
                (false, true) => prop_assert!(sy > sx),
                (false, false) => prop_assert!((with_pod(&x) >= with_pod(&y)) == (sx >= sy)),
            }
        }
    }
}
