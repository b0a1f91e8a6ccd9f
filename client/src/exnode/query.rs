//! Segment queries (`xndQuery`): which mappings cover a logical range, sit on a depot, or are
//! live; where the file has no live copy at all (coverage gaps); how many replicas each range
//! has. Liveness is what the caller knows: lease ends against a `now` it passes in, plus a set
//! of depots it found dead; this module never probes anything itself.

use super::model::{DepotAddr, ExNode, Mapping, MappingId};
use std::collections::BTreeSet;
use std::ops::Range;

/// Criteria, all optional; a mapping must meet every one given.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Overlaps this logical range.
    pub range: Option<Range<u64>>,
    /// Sits on this depot.
    pub depot: Option<DepotAddr>,
    /// Lease still running at this Unix time.
    pub live_at_s: Option<u64>,
    /// Not on any of these depots (found dead or slow by the caller).
    pub dead_depots: BTreeSet<DepotAddr>,
}

impl Query {
    /// Matches every mapping.
    pub fn all() -> Query {
        Query::default()
    }

    /// Restricts to mappings overlapping `range`.
    pub fn range(mut self, range: Range<u64>) -> Query {
        self.range = Some(range);
        self
    }

    /// Restricts to mappings on `depot`.
    pub fn depot(mut self, depot: DepotAddr) -> Query {
        self.depot = Some(depot);
        self
    }

    /// Restricts to mappings whose lease runs past `now_s` and whose depot is not in `dead`.
    pub fn live(mut self, now_s: u64, dead: BTreeSet<DepotAddr>) -> Query {
        self.live_at_s = Some(now_s);
        self.dead_depots = dead;
        self
    }

    /// True when `m` meets every criterion.
    pub fn matches(&self, m: &Mapping) -> bool {
        if m.logical_length == 0 {
            return false;
        }
        if let Some(r) = &self.range {
            if m.logical_offset >= r.end || m.logical_end() <= r.start {
                return false;
            }
        }
        if let Some(d) = &self.depot {
            if !m.is_on(d) {
                return false;
            }
        }
        if let Some(now) = self.live_at_s {
            if !m.lease_live(now) {
                return false;
            }
        }
        !self.dead_depots.iter().any(|d| m.is_on(d))
    }
}

/// A logical range and how many matching mappings cover all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSpan {
    /// The range; consecutive spans have different counts.
    pub range: Range<u64>,
    /// Matching mappings covering every byte of it.
    pub count: usize,
}

impl ExNode {
    /// Ids of the mappings meeting `q`, sorted by logical offset (then id).
    pub fn query(&self, q: &Query) -> Vec<MappingId> {
        let mut ids: Vec<MappingId> =
            self.iter().filter(|(_, m)| q.matches(m)).map(|(id, _)| id).collect();
        ids.sort_by_key(|&id| (self.mappings[id].logical_offset, id));
        ids
    }

    /// Replica count per range over `0..size()`, counting mappings that meet `q`
    /// (its `range` criterion is ignored: the whole file is described).
    pub fn replica_spans(&self, q: &Query) -> Vec<ReplicaSpan> {
        let q = Query { range: None, ..q.clone() };
        let size = self.size();
        let mut events: Vec<(u64, i64)> = Vec::new();
        for m in self.mappings.iter().filter(|m| q.matches(m)) {
            events.push((m.logical_offset.min(size), 1));
            events.push((m.logical_end().min(size), -1));
        }
        events.sort_unstable();
        let mut spans: Vec<ReplicaSpan> = Vec::new();
        let (mut at, mut depth) = (0u64, 0i64);
        for (pos, delta) in events {
            if pos > at {
                push_span(&mut spans, at..pos, depth);
                at = pos;
            }
            depth += delta;
        }
        if at < size {
            push_span(&mut spans, at..size, depth);
        }
        spans
    }

    /// Ranges of `0..size()` that no mapping meeting `q` covers: bytes that cannot be read.
    pub fn coverage_gaps(&self, q: &Query) -> Vec<Range<u64>> {
        self.replica_spans(q).into_iter().filter(|s| s.count == 0).map(|s| s.range).collect()
    }

    /// The smallest replica count over the whole file (0 for an empty file).
    pub fn min_replicas(&self, q: &Query) -> usize {
        self.replica_spans(q).iter().map(|s| s.count).min().unwrap_or(0)
    }
}

fn push_span(spans: &mut Vec<ReplicaSpan>, range: Range<u64>, depth: i64) {
    let count = usize::try_from(depth).unwrap_or(0);
    match spans.last_mut() {
        Some(last) if last.count == count && last.range.end == range.start => {
            last.range.end = range.end
        }
        _ => spans.push(ReplicaSpan { range, count }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(depot: u16, off: u64, len: u64, expires: Option<u64>) -> Mapping {
        let mut m = Mapping::new(off, len);
        m.depot = Some(DepotAddr { host: "127.0.0.1".into(), port: depot });
        m.expires_s = expires;
        m
    }

    fn d(port: u16) -> DepotAddr {
        DepotAddr { host: "127.0.0.1".into(), port }
    }

    #[test]
    fn spans_gaps_and_queries() {
        let mut x = ExNode::for_file("f", 400);
        x.append(on(1, 0, 100, None));
        x.append(on(2, 0, 100, Some(50)));
        x.append(on(2, 100, 100, None));
        x.append(on(3, 300, 100, None));
        let spans = x.replica_spans(&Query::all());
        assert_eq!(
            spans,
            vec![
                ReplicaSpan { range: 0..100, count: 2 },
                ReplicaSpan { range: 100..200, count: 1 },
                ReplicaSpan { range: 200..300, count: 0 },
                ReplicaSpan { range: 300..400, count: 1 },
            ]
        );
        assert_eq!(x.coverage_gaps(&Query::all()), vec![200..300]);
        let live = Query::all().live(60, [d(3)].into_iter().collect());
        assert_eq!(x.coverage_gaps(&live), vec![200..400]);
        assert_eq!(x.min_replicas(&live), 0);
        assert_eq!(x.query(&Query::all().range(50..150)), vec![0, 1, 2]);
        assert_eq!(x.query(&Query::all().depot(d(2))), vec![1, 2]);
        assert_eq!(x.query(&Query::all().range(100..100)), Vec::<usize>::new());
    }
}
