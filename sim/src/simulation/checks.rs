//! The checks at the end of a run: linearizability of the history, final
//! reads complete, replicas converged.

use engine::{KvEngine, RaftLogEngine};
use kvproto_lite::raft_serverpb::PeerState;
use kvproto_lite::util;

use super::event::Phase;
use super::Simulation;
use crate::checker::{check_history, CheckResult};
use crate::history::decode_value;
use crate::report::Failure;

/// A store's user data, as `(key, value)` pairs in key order.
pub(super) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

impl Simulation {
    /// Acknowledged writes survive: with every store up and the network
    /// healed, every key must have been read (liveness) before the run's
    /// deadline.
    pub(super) fn check_final_reads_done(&mut self) {
        if self.failure.is_none() && self.phase != Phase::Done {
            let missing: Vec<usize> = (0..self.keys.len())
                .filter(|k| !self.final_reads.contains_key(k))
                .collect();
            self.failure = Some(Failure::FinalReadsIncomplete { missing });
        }
    }

    /// Without corruption on the network, no store dropped a raft message
    /// as malformed: every message a store sent was one a correct raft peer
    /// sends (raft-rs would have panicked on some of them).
    pub(super) fn check_no_invalid_messages(&mut self) {
        if self.failure.is_none()
            && self.cfg.messages.corrupt == 0.0
            && self.stats.rejected_messages > 0
        {
            self.failure = Some(Failure::InvalidMessages {
                count: self.stats.rejected_messages,
            });
        }
    }

    /// The history (final reads included) is linearizable.
    pub(super) fn check_linearizable(&mut self) {
        if self.failure.is_none() {
            match check_history(&self.history) {
                CheckResult::Linearizable => {}
                CheckResult::Violation(v) => self.failure = Some(Failure::NotLinearizable(v)),
                CheckResult::GaveUp { key, steps } => {
                    self.failure = Some(Failure::CheckerGaveUp { key, steps })
                }
            }
        }
    }

    /// Compares the replicas of every region: the stores a region's final
    /// metadata lists hold the same data in its range, the other stores
    /// hold none there (a removed peer's data is deleted), and the final
    /// reads saw what the replicas hold.
    ///
    /// The final layout is, per region id, the newest (version, conf_ver)
    /// region state any store holds.
    pub(super) fn check_replicas(&mut self) {
        let mut contents: Vec<(u64, Pairs)> = Vec::new();
        let mut layout: std::collections::BTreeMap<u64, kvproto_lite::metapb::Region> =
            std::collections::BTreeMap::new();
        for (id, slot) in &self.stores {
            let scanned = slot
                .engines
                .kv
                .scan(b"", b"", usize::MAX)
                .and_then(|data| Ok((data, slot.engines.kv.region_states()?)));
            match scanned {
                Ok((data, states)) => {
                    contents.push((*id, data));
                    for state in states {
                        if state.get_state() != PeerState::Normal {
                            continue;
                        }
                        let r = state.get_region();
                        let epoch = |r: &kvproto_lite::metapb::Region| {
                            let e = r.get_region_epoch();
                            (e.get_version(), e.get_conf_ver())
                        };
                        let newer = layout
                            .get(&r.get_id())
                            .map_or(true, |old| epoch(r) > epoch(old));
                        if newer {
                            layout.insert(r.get_id(), r.clone());
                        }
                    }
                }
                Err(e) => {
                    self.failure = Some(Failure::ReplicasDiverge {
                        detail: format!("store {id}: scan failed: {e}"),
                    });
                    return;
                }
            }
        }
        let in_range = |k: &[u8], r: &kvproto_lite::metapb::Region| util::is_key_in_region(k, r);
        let mut holder: Option<Pairs> = None;
        for region in layout.values() {
            let members: Vec<u64> = region
                .get_peers()
                .iter()
                .map(|p| p.get_store_id())
                .collect();
            let mut first: Option<(u64, Pairs)> = None;
            for (id, data) in &contents {
                let part: Pairs = data
                    .iter()
                    .filter(|(k, _)| in_range(k, region))
                    .cloned()
                    .collect();
                if !members.contains(id) {
                    if !part.is_empty() {
                        self.failure = Some(Failure::ReplicasDiverge {
                            detail: format!(
                                "store {id} holds {:?} in region {} but has no peer of it (peers on stores {members:?}); {}",
                                render(&part),
                                region.get_id(),
                                self.progress_report()
                            ),
                        });
                        return;
                    }
                    continue;
                }
                match &first {
                    None => first = Some((*id, part)),
                    Some((first_id, first_part)) if *first_part != part => {
                        self.failure = Some(Failure::ReplicasDiverge {
                            detail: format!(
                                "region {}: store {first_id} holds {:?} but store {id} holds {:?}; {}",
                                region.get_id(),
                                render(first_part),
                                render(&part),
                                self.progress_report()
                            ),
                        });
                        return;
                    }
                    Some(_) => {}
                }
            }
            if let Some((_, part)) = first {
                holder.get_or_insert_with(Vec::new).extend(part);
            }
        }
        // Every key a store holds belongs to some region of the layout.
        for (id, data) in &contents {
            if let Some((k, _)) = data
                .iter()
                .find(|(k, _)| !layout.values().any(|r| in_range(k, r)))
            {
                self.failure = Some(Failure::ReplicasDiverge {
                    detail: format!("store {id} holds key {k:02x?} outside every region"),
                });
                return;
            }
        }
        let first = holder.unwrap_or_default();
        for (key, read) in &self.final_reads {
            let stored = first
                .iter()
                .find(|(k, _)| Some(k) == self.keys.get(*key))
                .map(|(_, v)| decode_value(v).unwrap_or(u64::MAX));
            if stored != *read {
                self.failure = Some(Failure::ReplicasDiverge {
                    detail: format!(
                        "key k{key}: final read returned {read:?} but the stores hold {stored:?}"
                    ),
                });
                return;
            }
        }
    }

    /// Each store's persisted progress per region: applied and truncated
    /// index (KV engine), first, commit and last index (raft log engine).
    pub(super) fn progress_report(&self) -> String {
        let mut out = Vec::new();
        for (id, slot) in &self.stores {
            for &rid in &self.tick_ids {
                let apply_state = slot.engines.kv.get_apply_state(rid).ok().flatten();
                let applied = apply_state.as_ref().map(|s| s.get_applied_index());
                let truncated = apply_state
                    .as_ref()
                    .map(|s| s.get_truncated_state().get_index());
                let first = slot.engines.raft.first_index(rid);
                let raft = slot.engines.raft.get_raft_state(rid).ok().flatten();
                let (commit, last) = raft.map_or((None, None), |r| {
                    (
                        Some(r.get_hard_state().get_commit()),
                        Some(r.get_last_index()),
                    )
                });
                out.push(format!(
                    "store {id} region {rid}: applied {applied:?} truncated {truncated:?} \
                     first {first:?} commit {commit:?} last {last:?}"
                ));
            }
        }
        out.join("; ")
    }
}

fn render(data: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    data.iter()
        .map(|(k, v)| format!("{:02x?}={}", k, String::from_utf8_lossy(v)))
        .collect()
}
