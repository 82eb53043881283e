//! Strategies: how fitness, load and replica siblings become a kube-scheduler score.
//!
//! Each strategy computes a raw score in [0, 1] per candidate. With `f` the node's
//! fitness, `n` the pod's siblings on the node, `z` its siblings in the node's zone,
//! `z_min` the fewest siblings in any candidate zone, `o` the node's occupancy, and
//! `f' = f / (1 + r / c)` the fitness discounted for the `r` pods of any owner placed on
//! the node since its window (`c` its CPUs, 4 when unknown):
//!
//! | strategy | raw score |
//! |---|---|
//! | `spread` | `f' / (1 + 2n + 0.5z)` |
//! | `pack` | `0.6·o + 0.4·f` when `f ≥ 0.5`, else `0.3·f` (always below any qualifying node) |
//! | `balanced` | `f' / (1 + 0.5n) − 0.1·(z − z_min)`, clamped to [0, 1] |
//!
//! **Why `f'`**: a window shows the node before the pods placed since; every pod that
//! arrives within one window would otherwise be scored against the same picture and
//! herd onto the node that looked best. Each recent pod is taken to keep one CPU busy
//! (the scorer does not know its size), so on a 2-CPU node one halves the fitness for
//! the next pod's benefit, on a 32-CPU node it barely counts. `pack` wants that
//! crowding and counts recent pods in its occupancy instead.
//!
//! Occupancy is the measured CPU utilisation (0.5 when the window has none) plus 0.05
//! for each pod placed on the node too recently for its windows to show (seen by the pod
//! watch in the last two windows, or recorded by the scorer and not yet seen), clamped
//! to [0, 1].
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

/// The fitness a node needs before `pack` considers filling it.
pub const PACK_MIN_FITNESS: f64 = 0.5;
/// The occupancy one recorded placement adds until the node's windows show it.
pub const OCCUPANCY_PER_PLACEMENT: f64 = 0.05;
/// The CPUs assumed for a node whose window does not say (the discount of `f'`).
pub const CORES_WHEN_UNKNOWN: f64 = 4.0;

/// What a strategy knows of one candidate node: its fitness, or the neutral (median)
/// fitness for a node without a usable one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub fitness: f64,
    /// 0..1, see the module documentation.
    pub occupancy: f64,
    /// Pods of any owner placed on the node since its window.
    pub recent: u32,
    /// The node's CPUs ([`CORES_WHEN_UNKNOWN`] when its window does not say).
    pub cores: f64,
    pub siblings_on_node: u32,
    pub siblings_in_zone: u32,
    /// The fewest siblings in any zone among the candidates (0 without zones).
    pub fewest_in_any_zone: u32,
}

/// A candidate's score: the raw value in [0, 1] and the extender's integer (after
/// [`score`], `scale(raw)`; after [`normalise`], the request's normalised integer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub raw: f64,
    pub score: i32,
}

/// Occupancy from measured CPU utilisation and the placements not yet visible in it.
pub fn occupancy(cpu_utilization: Option<f64>, recent_placements: u32) -> f64 {
    (cpu_utilization.unwrap_or(0.5) + OCCUPANCY_PER_PLACEMENT * f64::from(recent_placements)).clamp(0.0, 1.0)
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
    let f = c.fitness.clamp(0.0, 1.0);
    let (n, z) = (f64::from(c.siblings_on_node), f64::from(c.siblings_in_zone));
    let raw = match strategy {
        Strategy::Spread => discounted(c) / (1.0 + 2.0 * n + 0.5 * z),
        Strategy::Pack if f >= PACK_MIN_FITNESS => 0.6 * c.occupancy + 0.4 * f,
        Strategy::Pack => 0.3 * f,
        Strategy::Balanced => (discounted(c) / (1.0 + 0.5 * n) - 0.1 * zone_excess(c)).clamp(0.0, 1.0),
    };
    Scored { raw, score: scale(raw) }
}

/// `f'`: the fitness less what the pods placed since the window will take.
fn discounted(c: &Candidate) -> f64 {
    c.fitness.clamp(0.0, 1.0) * discount(c)
}

/// The share of its fitness a node keeps for the pods placed since its window.
fn discount(c: &Candidate) -> f64 {
    let cores = if c.cores >= 1.0 { c.cores } else { CORES_WHEN_UNKNOWN };
    1.0 / (1.0 + f64::from(c.recent) / cores)
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
    recent
        + &match strategy {
            Strategy::Spread => format!(
                "{} sibling(s) on node, {} in zone: /{:.1}",
                c.siblings_on_node,
                c.siblings_in_zone,
                1.0 + 2.0 * f64::from(c.siblings_on_node) + 0.5 * f64::from(c.siblings_in_zone)
            ),
            Strategy::Pack if c.fitness.clamp(0.0, 1.0) >= PACK_MIN_FITNESS => {
                format!("occupancy {:.2}, fills fuller nodes first", c.occupancy)
            }
            Strategy::Pack => format!("fitness below {PACK_MIN_FITNESS}: not packed"),
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

    fn cand(fitness: f64, occupancy: f64, on_node: u32, in_zone: u32) -> Candidate {
        Candidate {
            fitness,
            occupancy,
            recent: 0,
            cores: 2.0,
            siblings_on_node: on_node,
            siblings_in_zone: in_zone,
            fewest_in_any_zone: 0,
        }
    }

    #[test]
    fn pods_placed_since_the_window_discount_the_fitness_except_for_pack() {
        let idle = cand(0.9, 0.1, 0, 0);
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
        assert_eq!(score(Strategy::Pack, &idle), score(Strategy::Pack, &just_filled), "pack counts them in occupancy");
    }

    #[test]
    fn parses_names() {
        assert_eq!("pack".parse::<Strategy>().unwrap(), Strategy::Pack);
        assert!("Spread!".parse::<Strategy>().is_err());
    }

    #[test]
    fn spread_repels_siblings() {
        let empty = score(Strategy::Spread, &cand(0.8, 0.2, 0, 0));
        let crowded = score(Strategy::Spread, &cand(0.8, 0.2, 1, 1));
        assert_eq!(empty.score, 8);
        assert_eq!(
            reason(Strategy::Spread, &cand(0.8, 0.2, 1, 1), crowded),
            "spread: fitness 0.80, 1 sibling(s) on node, 1 in zone: /3.5, raw 0.229 -> 2"
        );
        assert!(crowded.score < empty.score, "{crowded:?}");
    }

    #[test]
    fn pack_prefers_fuller_fit_nodes_and_skips_unfit_ones() {
        let fuller = score(Strategy::Pack, &cand(0.6, 0.8, 0, 0));
        let emptier = score(Strategy::Pack, &cand(0.6, 0.1, 0, 0));
        let unfit = score(Strategy::Pack, &cand(0.3, 1.0, 0, 0));
        assert!(fuller.score > emptier.score);
        assert!(unfit.raw < emptier.raw);
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
            let c = cand(0.8, 0.2, 1, 1);
            let mut v = [score(Strategy::Spread, &c), score(Strategy::Spread, &cand(0.8, 0.2, 0, 0))];
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
            cs in proptest::collection::vec((0.0f64..1.0, 0.0f64..1.0, 0u32..5, 0u32..5), 2..40),
            k in 0usize..3,
        ) {
            let strategy = Strategy::ALL[k];
            let mut v: Vec<Scored> = cs.iter().map(|&(f, o, n, z)| score(strategy, &cand(f, o, n, z))).collect();
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
        fn scores_stay_in_range(f in -1.0f64..2.0, o in -1.0f64..2.0, n in 0u32..50, z in 0u32..50, s in 0usize..3) {
            let r = score(Strategy::ALL[s], &cand(f, o, n, z));
            prop_assert!((0..=score::MAX).contains(&r.score));
        }

        #[test]
        fn spread_never_prefers_a_sibling_node_over_an_equally_fit_empty_one(f in 0.0f64..1.0, o in 0.0f64..1.0, n in 1u32..20, z in 0u32..20) {
            let empty = score(Strategy::Spread, &cand(f, o, 0, z));
            let taken = score(Strategy::Spread, &cand(f, o, n, z));
            prop_assert!(empty.raw >= taken.raw);
        }

        #[test]
        fn pack_never_prefers_an_emptier_node_over_an_equally_fit_fuller_one(f in 0.0f64..1.0, a in 0.0f64..1.0, b in 0.0f64..1.0) {
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            prop_assert!(score(Strategy::Pack, &cand(f, hi, 0, 0)).raw >= score(Strategy::Pack, &cand(f, lo, 0, 0)).raw);
        }
    }
}
