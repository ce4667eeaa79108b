//! The checks at the end of a run: linearizability of the history, final
//! reads complete, replicas converged.

use engine::{KvEngine, RaftLogEngine};

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

    /// Compares every store's user data with each other and with the final
    /// reads.
    pub(super) fn check_replicas(&mut self) {
        let mut contents: Vec<(u64, Pairs)> = Vec::new();
        for (id, slot) in &self.stores {
            match slot.engines.kv.scan(b"", b"", usize::MAX) {
                Ok(data) => contents.push((*id, data)),
                Err(e) => {
                    self.failure = Some(Failure::ReplicasDiverge {
                        detail: format!("store {id}: scan failed: {e}"),
                    });
                    return;
                }
            }
        }
        let Some((first_id, first)) = contents.first().cloned() else {
            return;
        };
        for (id, data) in &contents[1..] {
            if *data != first {
                self.failure = Some(Failure::ReplicasDiverge {
                    detail: format!(
                        "store {first_id} holds {:?} but store {id} holds {:?}; {}",
                        render(&first),
                        render(data),
                        self.progress_report()
                    ),
                });
                return;
            }
        }
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
