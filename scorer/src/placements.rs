//! Replica and topology awareness: where each owner's pods are, per node and per zone.
//!
//! Two sources feed it:
//! - the cluster, through the pod and node watch ([`crate::watch`]): every pod the API
//!   server shows on a node, under its controlling owner (`ownerReferences` with
//!   `controller: true`: a ReplicaSet, StatefulSet, Job…), and every node's zone label;
//! - the scorer's own records, for what the watch cannot show yet. kube-scheduler scores
//!   the next replica before the previous bind is visible, so the top-scored node of
//!   each `Score` is an *assumed* placement (short expiry), and a `Bind` from the shim
//!   (which has just created the Binding) is a *bound* one. A record is forgotten as
//!   soon as the watch shows the pod on a node (confirmed, or contradicted: the watch
//!   wins) or deleted; without a watch, records simply expire.
//!
//! Every count a scoring request reads is kept as pods and records come and go, per
//! owner and node and per node, so a request costs the same whether a burst has left ten
//! records awaiting the watch or ten thousand (walking them per request was a tenth of
//! the scorer's CPU in a 3 000-pod burst). Zones are resolved when a request is scored,
//! so a node relabelled or learnt late never leaves a stale zone count behind. The CPU
//! the pods request is kept per node too (`pack` fills the node with the most), each pod
//! counted as kube-scheduler scores it ([`counted_millis`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{RwLock, RwLockReadGuard};

/// foldhash: a scoring request looks up every candidate here (zone, siblings, recent
/// placements); the keys come from the API server and the scorer itself.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::time::{Duration, Instant};

/// A node as the watch shows it: its zone label and allocatable CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedNode {
    pub name: String,
    /// `topology.kubernetes.io/zone`; `None` when unlabelled.
    pub zone: Option<String>,
    /// `status.allocatable.cpu` in millicores; `None` when the node does not say.
    pub cpu_millis: Option<i64>,
}

/// A pod as the watch shows it: its owner and the node it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedPod {
    /// The pod's UID: the key shared with `Score` and `Bind` requests.
    pub uid: String,
    /// UID of the controlling owner; empty for a bare pod.
    pub owner: String,
    /// The node it is bound to; `None` while pending.
    pub node: Option<String>,
    /// The CPU it requests, in millicores (0: none).
    pub cpu_millis: i64,
}

/// The CPU a pod's request counts for on its node, in millicores: its request, or 100m
/// for a pod that requests none, as kube-scheduler's scoring counts such pods.
pub fn counted_millis(cpu_millis: i64) -> i64 {
    if cpu_millis > 0 { cpu_millis } else { (crate::strategy::REQUEST_WHEN_NONE * 1000.0) as i64 }
}

#[derive(Debug, Clone)]
struct Record {
    owner: String,
    node: String,
    /// [`counted_millis`] of the pod's request.
    cpu: i64,
    bound: bool,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct Placed {
    owner: String,
    node: String,
    /// [`counted_millis`] of the pod's request.
    cpu: i64,
}

/// Pods per node and the CPU they request, in millicores.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    pods: u32,
    cpu: i64,
}

/// Keys in the order they expire. Every entry of one queue lives equally long, so
/// insertion order is expiry order and expiring costs nothing per request. An entry whose
/// key was since dropped or renewed stays until its time and is then skipped.
#[derive(Default)]
struct Expiries(VecDeque<(Instant, String)>);

impl Expiries {
    fn push(&mut self, at: Instant, key: &str) {
        self.0.push_back((at, key.to_owned()));
    }

    fn due(&self, now: Instant) -> bool {
        self.0.front().is_some_and(|(at, _)| *at <= now)
    }

    fn pop_due(&mut self, now: Instant) -> Option<(Instant, String)> {
        if self.due(now) { self.0.pop_front() } else { None }
    }

    /// Drops the entries `live` no longer recognises once they outnumber `limit`, so
    /// keys dropped early (most: the watch confirms a bind long before it would expire)
    /// cannot grow the queue for a whole expiry.
    fn compact(&mut self, limit: usize, live: impl Fn(Instant, &str) -> bool) {
        if self.0.len() > limit {
            self.0.retain(|(at, key)| live(*at, key));
        }
    }
}

/// The value under `key`, made when missing; copies `key` only then.
fn entry<'m, V: Default>(map: &'m mut Map<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("present: inserted above")
}

#[derive(Default)]
struct Inner {
    /// [`Limits::max_placement_records`](crate::Limits) and
    /// [`Limits::max_learnt_zones`](crate::Limits).
    max_records: usize,
    max_learnt_zones: usize,
    /// Pods the watch shows on a node, by UID.
    placed: Map<String, Placed>,
    /// Owner UID -> node -> pods, from `placed`.
    owners: Map<String, Map<String, u32>>,
    /// Node -> CPU the pods in `placed` request, in millicores.
    requested: Map<String, i64>,
    /// Pods placed recently (UID -> node, since, and since in unix ms): the node's windows
    /// may not show their load yet. Dropped as they age ([`Inner::expire`]).
    fresh: Map<String, (String, Instant, i64)>,
    /// Node -> when each pod in `fresh` was placed there (unix ms), in order.
    fresh_on: Map<String, Vec<i64>>,
    fresh_order: Expiries,
    /// The scorer's own records the watch has not shown yet, by pod key. Dropped as they
    /// expire ([`Inner::expire`]), which every lock holder runs first.
    records: Map<String, Record>,
    /// Node -> pods in `records` and the CPU they request.
    recorded_on: Map<String, Tally>,
    /// Owner UID -> node -> pods, from `records`.
    recorded_owners: Map<String, Map<String, u32>>,
    assumed_order: Expiries,
    bound_order: Expiries,
    /// Node -> zone (`topology.kubernetes.io/zone`).
    zones: Map<String, String>,
    /// Node -> allocatable CPU in millicores, from the node watch.
    allocatable: Map<String, i64>,
    /// Whether the node watch owns `zones`; otherwise zones are learnt from requests.
    zones_watched: bool,
    /// Whether the pod watch has listed the cluster at least once.
    pods_watched: bool,
}

/// Adds `delta` pods of `owner` on `node` to `owners` (an owner -> node -> pods map),
/// forgetting zeros.
fn count(owners: &mut Map<String, Map<String, u32>>, owner: &str, node: &str, delta: i32) {
    if owner.is_empty() {
        return;
    }
    let nodes = entry(owners, owner);
    let n = entry(nodes, node);
    *n = n.saturating_add_signed(delta);
    if *n == 0 {
        nodes.remove(node);
        if nodes.is_empty() {
            owners.remove(owner);
        }
    }
}

impl Inner {
    /// Keeps `record` for `pod`, unless the records are at their limit and `pod` has
    /// none: a bound record lives until the watch shows the pod or `bound_ttl` passes,
    /// so binds for pods no watch will show (made up, or with no watch running) would
    /// otherwise grow the map for that long.
    fn keep(&mut self, pod: &str, record: Record) {
        if self.records.len() >= self.max_records && !self.records.contains_key(pod) {
            metrics::counter!(crate::telemetry::series::RECORDED_PLACEMENTS, "outcome" => "dropped_full").increment(1);
            return;
        }
        self.drop_record(pod);
        count(&mut self.recorded_owners, &record.owner, &record.node, 1);
        let t = entry(&mut self.recorded_on, &record.node);
        t.pods += 1;
        t.cpu += record.cpu;
        let order = if record.bound { &mut self.bound_order } else { &mut self.assumed_order };
        order.push(record.expires, pod);
        let records = &self.records;
        order.compact(2 * self.max_records, |at, key| records.get(key).is_some_and(|r| r.expires == at));
        self.records.insert(pod.to_owned(), record);
    }

    /// Forgets the record of `pod`, taking it out of the counts.
    fn drop_record(&mut self, pod: &str) -> Option<Record> {
        let r = self.records.remove(pod)?;
        count(&mut self.recorded_owners, &r.owner, &r.node, -1);
        if let Some(t) = self.recorded_on.get_mut(&r.node) {
            t.pods -= 1;
            t.cpu -= r.cpu;
            if t.pods == 0 {
                self.recorded_on.remove(&r.node);
            }
        }
        Some(r)
    }

    /// The live record of `pod`.
    fn record(&self, pod: &str, now: Instant) -> Option<&Record> {
        self.records.get(pod).filter(|r| r.expires > now)
    }

    fn add_fresh(&mut self, uid: &str, node: &str, since: Instant, since_ms: i64, recent: Duration) {
        self.drop_fresh(uid);
        let times = entry(&mut self.fresh_on, node);
        times.insert(times.partition_point(|&t| t <= since_ms), since_ms);
        self.fresh_order.push(since + recent, uid);
        let fresh = &self.fresh;
        let limit = 2 * self.max_records.max(fresh.len());
        self.fresh_order.compact(limit, |at, key| fresh.get(key).is_some_and(|(_, s, _)| *s + recent == at));
        self.fresh.insert(uid.to_owned(), (node.to_owned(), since, since_ms));
    }

    fn drop_fresh(&mut self, uid: &str) {
        let Some((node, _, since_ms)) = self.fresh.remove(uid) else { return };
        if let Some(times) = self.fresh_on.get_mut(&node) {
            match times.binary_search(&since_ms) {
                Ok(i) => {
                    times.remove(i);
                }
                Err(_) => debug_assert!(false, "fresh pod {uid} missing from {node}'s times"),
            }
            if times.is_empty() {
                self.fresh_on.remove(&node);
            }
        }
    }

    /// Whether a record has expired or a fresh placement aged past `recent`.
    fn due(&self, now: Instant) -> bool {
        self.assumed_order.due(now) || self.bound_order.due(now) || self.fresh_order.due(now)
    }

    /// Drops expired records and fresh placements older than `recent`.
    fn expire(&mut self, now: Instant, recent: Duration) {
        for bound in [false, true] {
            loop {
                let order = if bound { &mut self.bound_order } else { &mut self.assumed_order };
                let Some((at, key)) = order.pop_due(now) else { break };
                if self.records.get(&key).is_some_and(|r| r.expires == at) {
                    self.drop_record(&key);
                }
            }
        }
        while let Some((at, uid)) = self.fresh_order.pop_due(now) {
            if self.fresh.get(&uid).is_some_and(|(_, since, _)| *since + recent == at) {
                self.drop_fresh(&uid);
            }
        }
    }

    /// Counts `placed` for its owner and its node's requests.
    fn put(&mut self, uid: String, placed: Placed) {
        count(&mut self.owners, &placed.owner, &placed.node, 1);
        *self.requested.entry(placed.node.clone()).or_default() += placed.cpu;
        self.placed.insert(uid, placed);
    }

    /// Takes `uid` out of the counts (not out of `fresh`).
    fn take(&mut self, uid: &str) -> Option<Placed> {
        let p = self.placed.remove(uid)?;
        count(&mut self.owners, &p.owner, &p.node, -1);
        if let Some(cpu) = self.requested.get_mut(&p.node) {
            *cpu -= p.cpu;
            if *cpu <= 0 {
                self.requested.remove(&p.node);
            }
        }
        Some(p)
    }

    fn unplace(&mut self, uid: &str) {
        self.take(uid);
        self.drop_fresh(uid);
    }
}

/// Where pods are; cheap to share (`Arc`), one lock, read-mostly.
pub struct Placements {
    inner: RwLock<Inner>,
    assume_ttl: Duration,
    bound_ttl: Duration,
    /// How long a newly placed pod discounts its node's fitness (its node's windows do not
    /// show its load before then).
    recent: Duration,
}

impl Placements {
    /// `assume_ttl`: life of an assumed placement; `bound_ttl`: of a bound one the watch
    /// has not confirmed; `recent`: how long a new placement discounts its node.
    /// The record limits are [`Limits::default`](crate::Limits)'s until
    /// [`Placements::with_limits`].
    pub fn new(assume_ttl: Duration, bound_ttl: Duration, recent: Duration) -> Self {
        Self { inner: RwLock::default(), assume_ttl, bound_ttl, recent }.with_limits(&crate::Limits::default())
    }

    /// Keeps at most `limits.max_placement_records` records and learns at most
    /// `limits.max_learnt_zones` zones from requests.
    pub fn with_limits(mut self, limits: &crate::Limits) -> Self {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        inner.max_records = limits.max_placement_records;
        inner.max_learnt_zones = limits.max_learnt_zones;
        self
    }

    /// Records that `pod` (of `owner`, requesting `cpu_millis`) will probably land on
    /// `node`. Kept out when the pod already has a bound record or the watch shows it
    /// placed.
    pub fn assume(&self, pod: &str, owner: &str, node: &str, cpu_millis: i64) {
        let now = Instant::now();
        let mut inner = self.write(now);
        if inner.placed.contains_key(pod) || inner.record(pod, now).is_some_and(|r| r.bound) {
            return;
        }
        let record = Record {
            owner: owner.to_owned(),
            node: node.to_owned(),
            cpu: counted_millis(cpu_millis),
            bound: false,
            expires: now + self.assume_ttl,
        };
        inner.keep(pod, record);
    }

    /// Records that `pod` has been bound to `node` (the shim created the Binding). The
    /// owner and request come from the assumed placement when there is one: a bind names
    /// the pod, nothing else. Returns whether a pod watch will confirm it.
    pub fn bind(&self, pod: &str, node: &str) -> bool {
        let now = Instant::now();
        let mut inner = self.write(now);
        let watched = inner.pods_watched;
        if inner.placed.contains_key(pod) {
            return watched; // The watch was faster than the shim.
        }
        let (owner, cpu) =
            inner.record(pod, now).map_or((String::new(), counted_millis(0)), |r| (r.owner.clone(), r.cpu));
        let record = Record { owner, node: node.to_owned(), cpu, bound: true, expires: now + self.bound_ttl };
        inner.keep(pod, record);
        watched
    }

    /// Applies what the watch shows of one pod. A pod on a node replaces the scorer's
    /// record of it, whether that record named the same node or not.
    pub fn apply_pod(&self, pod: WatchedPod) {
        self.apply_pod_at(pod, fitsched_proto::now_unix_ms());
    }

    /// [`Placements::apply_pod`] at `now_ms` by the scorer's clock.
    fn apply_pod_at(&self, pod: WatchedPod, now_ms: i64) {
        let now = Instant::now();
        let mut inner = self.write(now);
        self.apply_locked(&mut inner, pod, now, now_ms);
    }

    fn apply_locked(&self, inner: &mut Inner, pod: WatchedPod, now: Instant, now_ms: i64) {
        let Some(node) = pod.node else {
            // Pending (the watch's selector leaves these out; a re-list or a direct caller
            // may not): an assumed record of it stays until the pod is bound or expires.
            inner.unplace(&pod.uid);
            return;
        };
        if let Some(r) = inner.drop_record(&pod.uid).filter(|r| r.expires > now) {
            let outcome = if r.node == node { "confirmed" } else { "contradicted" };
            metrics::counter!(crate::telemetry::series::RECORDED_PLACEMENTS, "outcome" => outcome).increment(1);
        }
        let placed = Placed { owner: pod.owner, node, cpu: counted_millis(pod.cpu_millis) };
        match inner.placed.get(&pod.uid) {
            Some(p) if p.node == placed.node && p.owner == placed.owner && p.cpu == placed.cpu => {}
            Some(p) if p.node == placed.node => {
                // Same node, new owner (an orphan adopted) or request (resized): recount;
                // the pod is no more recent than it was.
                inner.take(&pod.uid);
                inner.put(pod.uid, placed);
            }
            _ => {
                inner.unplace(&pod.uid);
                inner.add_fresh(&pod.uid, &placed.node, now, now_ms, self.recent);
                inner.put(pod.uid, placed);
            }
        }
    }

    /// Forgets a pod the watch shows deleted or finished.
    pub fn remove_pod(&self, uid: &str) {
        let mut inner = self.write(Instant::now());
        inner.unplace(uid);
        inner.drop_record(uid);
    }

    /// Replaces every watched pod with a fresh listing (the watch's initial list and
    /// every re-list after a lost watch), so pods deleted meanwhile are forgotten.
    /// Pods already known on the same node keep their age, so a re-list does not make
    /// every pod look newly placed.
    pub fn replace_pods(&self, pods: Vec<WatchedPod>) {
        self.replace_pods_at(pods, fitsched_proto::now_unix_ms());
    }

    /// [`Placements::replace_pods`] at `now_ms` by the scorer's clock.
    fn replace_pods_at(&self, pods: Vec<WatchedPod>, now_ms: i64) {
        let now = Instant::now();
        let mut inner = self.write(now);
        let previous = std::mem::take(&mut inner.placed);
        let fresh = std::mem::take(&mut inner.fresh);
        inner.fresh_on.clear();
        inner.owners.clear();
        inner.requested.clear();
        for pod in pods {
            let uid = pod.uid.clone();
            let known = pod.node.as_ref().is_some_and(|n| previous.get(&uid).is_some_and(|p| &p.node == n));
            self.apply_locked(&mut inner, pod, now, now_ms);
            if known {
                inner.drop_fresh(&uid);
                if let Some((node, since, since_ms)) = fresh.get(&uid) {
                    inner.add_fresh(&uid, node, *since, *since_ms, self.recent);
                }
            }
        }
        inner.pods_watched = true;
    }

    /// Sets what the node watch shows of one node.
    pub fn set_node(&self, node: WatchedNode) {
        let mut inner = self.write(Instant::now());
        inner.zones_watched = true;
        Self::set_node_locked(&mut inner, node);
    }

    fn set_node_locked(inner: &mut Inner, node: WatchedNode) {
        match node.zone.filter(|z| !z.is_empty()) {
            Some(z) => inner.zones.insert(node.name.clone(), z),
            None => inner.zones.remove(&node.name),
        };
        match node.cpu_millis.filter(|&m| m > 0) {
            Some(m) => inner.allocatable.insert(node.name, m),
            None => inner.allocatable.remove(&node.name),
        };
    }

    /// Forgets a node the watch shows deleted.
    pub fn remove_node(&self, node: &str) {
        self.set_node(WatchedNode { name: node.to_owned(), zone: None, cpu_millis: None });
    }

    /// Replaces every node's zone and allocatable CPU with a fresh node listing.
    pub fn replace_nodes(&self, nodes: Vec<WatchedNode>) {
        let mut inner = self.write(Instant::now());
        inner.zones.clear();
        inner.allocatable.clear();
        for node in nodes {
            Self::set_node_locked(&mut inner, node);
        }
        inner.zones_watched = true;
    }

    /// Learns zones from a scoring request's node labels (full-node extender mode), unless
    /// the node watch owns them. Takes the write lock only when something is new.
    pub fn learn_zones<'a>(&self, nodes: impl Iterator<Item = (&'a str, &'a str)> + Clone) {
        let changed = |inner: &Inner| {
            !inner.zones_watched
                && nodes.clone().any(|(n, z)| !z.is_empty() && inner.zones.get(n).map(String::as_str) != Some(z))
        };
        if !changed(&self.read()) {
            return;
        }
        let mut inner = self.write(Instant::now());
        if inner.zones_watched {
            return;
        }
        for (n, z) in nodes.filter(|(_, z)| !z.is_empty()) {
            // Names sent in requests are not checked against a cluster: past the limit
            // only known nodes' zones change, so made-up names cannot grow the map.
            if inner.zones.len() < inner.max_learnt_zones || inner.zones.contains_key(n) {
                inner.zones.insert(n.to_owned(), z.to_owned());
            }
        }
    }

    /// What one scoring request needs: the siblings of a pod of `owner` (not counting the
    /// pod `pod` itself: a pod being rescored must not repel itself), zones, recent
    /// placements of any owner and the CPU requested per node. Every strategy needs them:
    /// without them, all pods arriving within one window herd onto the node whose last
    /// window looked best. Holds the read lock until dropped.
    pub fn view(&self, owner: &str, pod: &str) -> View<'_> {
        let now = Instant::now();
        let mut inner = self.read();
        if inner.due(now) {
            drop(inner);
            drop(self.write(now));
            inner = self.read();
        }
        // The pod's own record is in the counts; the view takes it out again.
        let own = inner.records.get(pod).map(|r| Own {
            node: r.node.clone(),
            cpu: r.cpu,
            sibling: !owner.is_empty() && r.owner == owner,
        });
        let mut in_zone: Map<String, u32> = Map::default();
        let siblings = [&inner.owners, &inner.recorded_owners].map(|m| m.get(owner)).into_iter().flatten();
        for (node, n) in siblings.flatten() {
            if let Some(z) = inner.zones.get(node) {
                *entry(&mut in_zone, z) += n;
            }
        }
        if let Some(own) = own.as_ref().filter(|o| o.sibling)
            && let Some(n) = inner.zones.get(&own.node).and_then(|z| in_zone.get_mut(z))
        {
            *n -= 1;
        }
        View { inner, owner: owner.to_owned(), own, in_zone }
    }

    /// How many pods the watch shows placed, and how many records await it.
    pub fn counts(&self) -> (usize, usize) {
        let now = Instant::now();
        let inner = self.read();
        (inner.placed.len(), inner.records.values().filter(|r| r.expires > now).count())
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The write lock, after dropping what has expired.
    fn write(&self, now: Instant) -> std::sync::RwLockWriteGuard<'_, Inner> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.expire(now, self.recent);
        inner
    }
}

/// The scored pod's own record, which the counts include and its view leaves out.
struct Own {
    node: String,
    cpu: i64,
    /// Whether it is of the owner the view is for.
    sibling: bool,
}

/// Siblings, zones and recent placements as one scoring request sees them.
pub struct View<'a> {
    inner: RwLockReadGuard<'a, Inner>,
    /// The owner's UID; empty for a bare pod, which has no siblings.
    owner: String,
    own: Option<Own>,
    in_zone: Map<String, u32>,
}

impl View<'_> {
    /// 1 when the scored pod's own record is on `node` (and `counts` it), else 0.
    fn own_on(&self, node: &str, counts: impl Fn(&Own) -> bool) -> u32 {
        self.own.as_ref().is_some_and(|o| o.node == node && counts(o)).into()
    }

    /// The pod's siblings on `node`.
    pub fn on_node(&self, node: &str) -> u32 {
        let of = |m: &Map<String, Map<String, u32>>| m.get(&self.owner).and_then(|n| n.get(node)).copied().unwrap_or(0);
        (of(&self.inner.owners) + of(&self.inner.recorded_owners)) - self.own_on(node, |o| o.sibling)
    }

    /// The pod's siblings in `zone` (an empty zone is no zone: 0).
    pub fn in_zone(&self, zone: &str) -> u32 {
        if zone.is_empty() { 0 } else { self.in_zone.get(zone).copied().unwrap_or(0) }
    }

    /// Pods of any owner placed on `node` that its fitness cannot show: placed after the
    /// window it was computed from began (`shown_since_ms`, unix ms), or, without one,
    /// within the last `recent`. The scorer's records count until the watch shows them.
    pub fn recent_on(&self, node: &str, shown_since_ms: Option<i64>) -> u32 {
        let recorded = self.inner.recorded_on.get(node).map_or(0, |t| t.pods);
        let times = self.inner.fresh_on.get(node).map_or(&[][..], Vec::as_slice);
        let shown = shown_since_ms.map_or(0, |since| times.partition_point(|&t| t <= since));
        recorded + (times.len() - shown) as u32 - self.own_on(node, |_| true)
    }

    /// The CPUs requested on `node` by every pod placed there or recorded for it (not the
    /// pod being scored).
    pub fn requested_on(&self, node: &str) -> f64 {
        let watched = self.inner.requested.get(node).copied().unwrap_or(0);
        let recorded = self.inner.recorded_on.get(node).map_or(0, |t| t.cpu);
        let own = self.own.as_ref().filter(|o| o.node == node).map_or(0, |o| o.cpu);
        (watched + recorded - own) as f64 / 1000.0
    }

    /// The allocatable CPUs of `node`, when the node watch knows them.
    pub fn allocatable_on(&self, node: &str) -> Option<f64> {
        self.inner.allocatable.get(node).map(|&m| m as f64 / 1000.0)
    }

    /// The zone of `node`, or `""` when unknown.
    pub fn zone_of(&self, node: &str) -> &str {
        self.inner.zones.get(node).map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placements() -> Placements {
        Placements::new(Duration::from_secs(30), Duration::from_secs(600), Duration::from_secs(60))
    }

    fn node(name: &str, zone: Option<&str>) -> WatchedNode {
        WatchedNode { name: name.into(), zone: zone.map(Into::into), cpu_millis: None }
    }

    fn pod(uid: &str, owner: &str, node: Option<&str>) -> WatchedPod {
        WatchedPod { uid: uid.into(), owner: owner.into(), node: node.map(Into::into), cpu_millis: 0 }
    }

    #[test]
    fn siblings_count_per_node_and_zone_without_self() {
        let p = placements();
        p.replace_nodes(vec![node("n1", Some("z1")), node("n2", Some("z1"))]);
        p.assume("pod-1", "rs-a", "n1", 0);
        p.assume("pod-2", "rs-a", "n2", 0);
        p.assume("pod-3", "rs-b", "n1", 0);
        let v = p.view("rs-a", "pod-2");
        assert_eq!((v.on_node("n1"), v.on_node("n2"), v.in_zone("z1")), (1, 0, 1), "a pod is not its own sibling");
        assert_eq!(v.recent_on("n1", None), 2);
        drop(v);
        let bare = p.view("", "x");
        assert_eq!(
            (bare.on_node("n1"), bare.in_zone("z1"), bare.recent_on("n1", None)),
            (0, 0, 2),
            "bare pods have no siblings"
        );
    }

    #[test]
    fn bind_confirms_and_moves_assumed_placements() {
        let p = placements();
        p.assume("pod-1", "rs-a", "n1", 0);
        assert!(!p.bind("pod-1", "n2"), "no watch yet");
        let v = p.view("rs-a", "other");
        assert_eq!((v.on_node("n1"), v.on_node("n2")), (0, 1));
        drop(v);
        // A later Score for the same pod does not undo the bind.
        p.assume("pod-1", "rs-a", "n3", 0);
        assert_eq!(p.view("rs-a", "other").on_node("n2"), 1);
    }

    #[test]
    fn assumed_placements_expire() {
        let p = Placements::new(Duration::ZERO, Duration::from_secs(600), Duration::ZERO);
        p.assume("pod-1", "rs-a", "n1", 0);
        let v = p.view("rs-a", "other");
        assert_eq!((v.on_node("n1"), v.recent_on("n1", None)), (0, 0));
        drop(v);
        // Expired but not yet pruned: neither counted nor lending its owner to a bind.
        assert_eq!(p.counts(), (0, 0));
        p.bind("pod-1", "n2");
        assert_eq!(p.view("rs-a", "other").on_node("n2"), 0);
        assert_eq!(p.view("", "other").recent_on("n2", None), 1);
    }

    #[test]
    fn a_bind_outlives_the_assumed_records_expiry_and_counts_follow_each_record() {
        let p = Placements::new(Duration::from_millis(50), Duration::from_secs(600), Duration::from_secs(60));
        p.assume("pod-1", "rs-a", "n1", 300);
        p.bind("pod-1", "n2");
        p.assume("pod-2", "rs-a", "n1", 0);
        std::thread::sleep(Duration::from_millis(80));
        // Both assumed expiries have passed: pod-2 is forgotten, pod-1's bound record stays.
        let v = p.view("rs-a", "other");
        assert_eq!((v.on_node("n1"), v.on_node("n2"), v.recent_on("n1", None), v.recent_on("n2", None)), (0, 1, 0, 1));
        assert_eq!(v.requested_on("n2"), 0.3, "the bind kept the assumed request");
        drop(v);
        // Rebinding elsewhere moves every count; the watch then replaces the record.
        p.bind("pod-1", "n3");
        let v = p.view("rs-a", "other");
        assert_eq!((v.on_node("n2"), v.on_node("n3"), v.recent_on("n3", None)), (0, 1, 1));
        drop(v);
        p.apply_pod(pod("pod-1", "rs-a", Some("n3")));
        let v = p.view("rs-a", "pod-1");
        assert_eq!((v.on_node("n3"), v.recent_on("n3", None)), (1, 1), "watched and fresh, no longer recorded");
        assert_eq!(p.counts(), (1, 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Assume(usize, usize, usize, i64),
        Bind(usize, usize),
        Apply(usize, usize, Option<usize>, i64),
        Remove(usize),
        Replace(Vec<(usize, usize, Option<usize>, i64)>),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let (pod, owner, node, cpu) = (0..8usize, 0..3usize, 0..4usize, prop_oneof![Just(0i64), Just(250i64)]);
        let watched = (pod.clone(), owner.clone(), proptest::option::of(node.clone()), cpu.clone());
        prop_oneof![
            (pod.clone(), owner.clone(), node.clone(), cpu.clone()).prop_map(|(p, o, n, c)| Op::Assume(p, o, n, c)),
            (pod.clone(), node.clone()).prop_map(|(p, n)| Op::Bind(p, n)),
            watched.clone().prop_map(|(p, o, n, c)| Op::Apply(p, o, n, c)),
            pod.prop_map(Op::Remove),
            proptest::collection::vec(watched, 0..6).prop_map(Op::Replace),
        ]
    }

    proptest::proptest! {
        /// The counts kept as records and pods come and go equal a count made afresh
        /// from the records and pods themselves, as every request used to make it.
        #[test]
        fn kept_counts_equal_counts_made_afresh(
            ops in proptest::collection::vec(op(), 1..40),
            assume_ttl in proptest::prop_oneof![proptest::strategy::Just(0u64), proptest::strategy::Just(30)],
            recent in proptest::prop_oneof![proptest::strategy::Just(0u64), proptest::strategy::Just(60)],
            cut_at in 0usize..40,
        ) {
            let p = Placements::new(Duration::from_secs(assume_ttl), Duration::from_secs(600), Duration::from_secs(recent));
            p.replace_nodes(vec![node("n0", Some("z1")), node("n1", Some("z1")), node("n2", Some("z2")), node("n3", None)]);
            let (pod, owner, node_) = (|i| format!("u{i}"), |i| format!("rs{i}"), |i| format!("n{i}"));
            let watched = |(p, o, n, c): (usize, usize, Option<usize>, i64)| WatchedPod {
                uid: pod(p), owner: owner(o), node: n.map(node_), cpu_millis: c,
            };
            for (t, op) in ops.into_iter().enumerate() {
                // Each event a millisecond after the last, so window starts can fall between them.
                let at = 1_000_000 + t as i64;
                match op {
                    Op::Assume(i, o, n, c) => p.assume(&pod(i), &owner(o), &node_(n), c),
                    Op::Bind(i, n) => { p.bind(&pod(i), &node_(n)); }
                    Op::Apply(i, o, n, c) => p.apply_pod_at(watched((i, o, n, c)), at),
                    Op::Remove(i) => p.remove_pod(&pod(i)),
                    Op::Replace(pods) => p.replace_pods_at(pods.into_iter().map(watched).collect(), at),
                }
                // A window start that some fresh pods came before and others after, or none.
                let mut times: Vec<i64> = p.read().fresh.values().map(|(_, _, ms)| *ms).collect();
                times.sort_unstable();
                let cut = (!times.is_empty()).then(|| times[cut_at % times.len()]);
                for (o, scored) in [(owner(0), pod(0)), (owner(1), pod(9)), (String::new(), pod(1))] {
                    let v = p.view(&o, &scored);
                    let nodes: Vec<String> = (0..4).map(node_).collect();
                    let kept: Vec<_> = nodes.iter()
                        .map(|n| (v.on_node(n), v.recent_on(n, None), v.recent_on(n, cut), v.requested_on(n)))
                        .collect();
                    let zones = (v.in_zone("z1"), v.in_zone("z2"));
                    drop(v);
                    let inner = p.read();
                    let now = Instant::now();
                    let live: Vec<&Record> = inner.records.iter()
                        .filter(|(k, r)| r.expires > now && **k != scored).map(|(_, r)| r).collect();
                    let siblings = |n: &str| {
                        let watched = inner.owners.get(&o).and_then(|m| m.get(n)).copied().unwrap_or(0);
                        watched + live.iter().filter(|r| !o.is_empty() && r.owner == o && r.node == n).count() as u32
                    };
                    let afresh: Vec<_> = nodes.iter().map(|n| {
                        let fresh = |after: i64| inner.fresh.values()
                            .filter(|(fn_, since, ms)| fn_ == n && now.saturating_duration_since(*since) < p.recent && *ms > after)
                            .count();
                        let recorded = live.iter().filter(|r| &r.node == n).count();
                        let cpu = inner.requested.get(n).copied().unwrap_or(0)
                            + live.iter().filter(|r| &r.node == n).map(|r| r.cpu).sum::<i64>();
                        let recent = |after| (recorded + fresh(after)) as u32;
                        (siblings(n), recent(i64::MIN), recent(cut.unwrap_or(i64::MIN)), cpu as f64 / 1000.0)
                    }).collect();
                    proptest::prop_assert_eq!(&kept, &afresh, "owner {:?}, scored {:?}", o, scored);
                    proptest::prop_assert_eq!(zones, (siblings("n0") + siblings("n1"), siblings("n2")));
                }
            }
        }
    }

    #[test]
    fn the_watch_confirms_or_contradicts_records() {
        let p = placements();
        p.replace_pods(vec![]);
        p.assume("u1", "rs", "n1", 0);
        p.assume("u2", "rs", "n1", 0);
        // Confirmed: same node. Contradicted: the watch shows u2 elsewhere; the watch wins.
        p.apply_pod(pod("u1", "rs", Some("n1")));
        p.apply_pod(pod("u2", "rs", Some("n2")));
        assert_eq!(p.counts(), (2, 0), "both records forgotten");
        let v = p.view("rs", "new");
        assert_eq!((v.on_node("n1"), v.on_node("n2")), (1, 1));
        drop(v);
        // Re-applying the same state changes nothing; a later assume of a placed pod is ignored.
        p.apply_pod(pod("u1", "rs", Some("n1")));
        p.assume("u1", "rs", "n9", 0);
        assert_eq!(p.view("rs", "new").on_node("n1"), 1);
        assert_eq!(p.view("rs", "new").on_node("n9"), 0);
        // Deleted pods are forgotten, and so are their records.
        p.remove_pod("u1");
        p.assume("u3", "rs", "n3", 0);
        p.remove_pod("u3");
        let v = p.view("rs", "new");
        assert_eq!((v.on_node("n1"), v.on_node("n3")), (0, 0));
    }

    #[test]
    fn a_relist_forgets_pods_deleted_while_the_watch_was_down() {
        let p = placements();
        p.replace_pods(vec![pod("u1", "rs", Some("n1")), pod("u2", "rs", Some("n1")), pod("u3", "rs", None)]);
        assert_eq!(p.view("rs", "x").on_node("n1"), 2);
        p.replace_pods(vec![pod("u2", "rs", Some("n1"))]);
        assert_eq!(p.view("rs", "x").on_node("n1"), 1);
        assert_eq!(p.counts(), (1, 0));
    }

    #[test]
    fn a_pod_moving_owner_or_node_is_counted_once() {
        let p = placements();
        p.apply_pod(pod("u1", "rs", Some("n1")));
        p.apply_pod(pod("u1", "rs", Some("n2")));
        p.apply_pod(pod("u1", "other", Some("n2")));
        assert_eq!((p.view("rs", "x").on_node("n1"), p.view("rs", "x").on_node("n2")), (0, 0));
        assert_eq!(p.view("other", "x").on_node("n2"), 1);
    }

    #[test]
    fn zones_come_from_the_watch_once_it_runs_and_counts_follow_relabels() {
        let p = placements();
        p.learn_zones([("n1", "z-from-request")].into_iter());
        assert_eq!(p.view("", "x").zone_of("n1"), "z-from-request");
        p.replace_nodes(vec![WatchedNode { cpu_millis: Some(16_000), ..node("n1", Some("z1")) }]);
        p.learn_zones([("n1", "z-from-request")].into_iter());
        assert_eq!(p.view("", "x").zone_of("n1"), "z1", "the node watch owns zones");
        assert_eq!(p.view("", "x").allocatable_on("n1"), Some(16.0));
        p.apply_pod(pod("u1", "rs", Some("n1")));
        assert_eq!(p.view("rs", "x").in_zone("z1"), 1);
        p.set_node(node("n1", Some("z2")));
        let v = p.view("rs", "x");
        assert_eq!((v.in_zone("z1"), v.in_zone("z2")), (0, 1));
        assert_eq!(v.allocatable_on("n1"), None, "the node no longer says");
        drop(v);
        p.remove_node("n1");
        assert_eq!(p.view("rs", "x").zone_of("n1"), "");
    }

    #[test]
    fn zones_learnt_from_requests_stop_at_the_limit_for_new_names_only() {
        const MAX_LEARNT_ZONES: usize = 20;
        let p = placements().with_limits(&crate::Limits::new(MAX_LEARNT_ZONES, Duration::from_secs(600)));
        let names: Vec<String> = (0..MAX_LEARNT_ZONES + 10).map(|i| format!("n{i}")).collect();
        p.learn_zones(names.iter().map(|n| (n.as_str(), "z1")));
        let v = p.view("", "x");
        assert_eq!(v.zone_of("n0"), "z1");
        assert_eq!(v.zone_of(&names[MAX_LEARNT_ZONES]), "", "past the limit: not learnt");
        drop(v);
        p.learn_zones([("n0", "z2")].into_iter());
        assert_eq!(p.view("", "x").zone_of("n0"), "z2", "a known node's zone still changes");
    }

    #[test]
    fn records_stop_at_their_limit_but_known_pods_still_update() {
        const MAX_RECORDS: usize = 50;
        let p =
            placements().with_limits(&crate::Limits { max_placement_records: MAX_RECORDS, ..crate::Limits::default() });
        for i in 0..MAX_RECORDS + 5 {
            p.bind(&format!("p{i}"), "n1");
        }
        assert_eq!(p.counts().1, MAX_RECORDS);
        p.bind("p0", "n2");
        assert_eq!(p.view("", "x").recent_on("n2", None), 1, "a known pod's record moved");
    }

    #[test]
    fn recently_placed_pods_count_for_a_while() {
        let p = Placements::new(Duration::from_secs(30), Duration::from_secs(600), Duration::ZERO);
        p.apply_pod(pod("u1", "rs", Some("n1")));
        assert_eq!(p.view("", "x").recent_on("n1", None), 0, "older than `recent`");
        let p = placements();
        p.apply_pod(pod("u1", "rs", Some("n1")));
        assert_eq!(p.view("", "x").recent_on("n1", None), 1);
    }

    #[test]
    fn a_placed_pod_counts_until_a_window_begun_after_it_shows_it() {
        let p = placements();
        let before = fitsched_proto::now_unix_ms() - 1;
        p.apply_pod(pod("u1", "rs", Some("n1")));
        p.assume("u2", "rs", "n1", 0);
        let v = p.view("", "x");
        assert_eq!(v.recent_on("n1", Some(before)), 2, "a window begun before the pod cannot show it");
        assert_eq!(
            v.recent_on("n1", Some(fitsched_proto::now_unix_ms() + 1)),
            1,
            "a later one does; the record still counts"
        );
        assert_eq!(v.recent_on("n1", None), 2, "a node without a fitness counts it for `recent`");
        drop(v);
        // Moved or gone, it no longer counts where it was.
        p.apply_pod(pod("u1", "rs", Some("n2")));
        assert_eq!(p.view("", "x").recent_on("n1", Some(before)), 1);
        p.remove_pod("u1");
        assert_eq!(p.view("", "x").recent_on("n2", Some(before)), 0);
        // A re-list keeps a known pod's time: a window begun after it still shows it.
        p.apply_pod_at(pod("u3", "rs", Some("n3")), 100);
        p.replace_pods_at(vec![pod("u3", "rs", Some("n3")), pod("u4", "rs", Some("n3"))], 200);
        let v = p.view("", "x");
        assert_eq!((v.recent_on("n3", Some(150)), v.recent_on("n3", Some(99))), (1, 2), "u4 is new at 200");
    }

    #[test]
    fn requested_cpu_follows_the_watch_and_the_records() {
        let p = placements();
        let with_cpu = |uid: &str, node: Option<&str>, cpu_millis| WatchedPod { cpu_millis, ..pod(uid, "rs", node) };
        p.apply_pod(with_cpu("u1", Some("n1"), 500));
        p.apply_pod(with_cpu("u2", Some("n1"), 0));
        p.assume("u3", "rs", "n1", 250);
        p.assume("u4", "rs", "n2", 0);
        let v = p.view("rs", "u4");
        assert_eq!(v.requested_on("n1"), 0.85, "500m, a pod without requests as 100m, 250m assumed");
        assert_eq!(v.requested_on("n2"), 0.0, "the pod scored is not counted");
        drop(v);
        p.bind("u4", "n2");
        assert_eq!(p.view("rs", "x").requested_on("n2"), 0.1, "a bind keeps the assumed request");
        p.apply_pod(with_cpu("u3", Some("n2"), 250));
        assert_eq!(p.view("rs", "x").requested_on("n1"), 0.6, "the watch moved u3");
        p.apply_pod(with_cpu("u1", Some("n1"), 1000));
        assert_eq!(p.view("rs", "x").requested_on("n1"), 1.1, "a resized pod is recounted");
        p.remove_pod("u1");
        p.remove_pod("u2");
        assert_eq!(p.view("rs", "x").requested_on("n1"), 0.0);
        p.replace_pods(vec![with_cpu("u5", Some("n3"), 2000)]);
        assert_eq!(p.view("rs", "x").requested_on("n2"), 0.1, "only the bound record of u4 is left on n2");
        assert_eq!(p.view("rs", "x").requested_on("n3"), 2.0);
    }
}
