//! A linearizability checker for a key-value register, one key at a time.
//!
//! A key-value store is linearizable iff each key on its own is (locality of
//! linearizability), so the history is split by key and each key's
//! operations are checked against a single register model: `Put(v)` sets
//! it, `Delete` clears it, `Get` must return its current content.
//!
//! The search is the Wing–Gong algorithm with Lowe's memoisation, in the
//! form Porcupine and Knossos use: the operations' invocation and
//! completion events form a list ordered by real time; the search
//! repeatedly picks an operation whose invocation comes before the first
//! remaining completion (so no other remaining operation finished before it
//! began), applies it to the model, and backtracks when a completion is
//! reached whose operation has not been placed. A cache of (set of placed
//! operations, model state) pairs already explored keeps the search
//! polynomial for the low concurrency of a simulation.
//!
//! ```text
//! outcome        how it is checked
//! Written/Read   must be placed between its invocation and completion
//! Unknown write  completion at +infinity: placed anywhere after its
//!                invocation, or (equivalently) after everything else,
//!                where it affects no read -- i.e. "maybe never"
//! Unknown read   dropped (it constrains nothing)
//! Failed         dropped (it had no effect)
//! ```
//!
//! An unknown put whose value no read returned is dropped as well: placing
//! it can only make a read see that value, so leaving it out never turns a
//! linearizable history into a non-linearizable one. That keeps the search
//! small when many writes time out.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::history::{Command, Operation, Outcome};

/// Why a key's history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: usize,
    /// What went wrong, for humans.
    pub reason: String,
    /// The operations of the key that were checked, in invocation order.
    pub ops: Vec<Operation>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key k{} is not linearizable: {}", self.key, self.reason)?;
        for op in &self.ops {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

/// What [`check_history`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Every key's history is linearizable.
    Linearizable,
    /// A key's history is not.
    Violation(Box<Violation>),
    /// The search for some key exceeded its step budget: no conclusion.
    GaveUp {
        /// The key.
        key: usize,
        /// Steps taken.
        steps: u64,
    },
}

impl CheckResult {
    /// Whether the history was found linearizable.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckResult::Linearizable)
    }
}

/// Steps the search may take per key before giving up.
pub const DEFAULT_STEP_LIMIT: u64 = 5_000_000;

/// Checks a whole history, key by key (in key order), with
/// [`DEFAULT_STEP_LIMIT`] per key. Pending operations are treated as
/// unknown.
///
/// # Examples
///
/// ```
/// use sim::{check_history, Command, Operation, Outcome, Stamp};
///
/// let op = |id, command, inv, ret, outcome| Operation {
///     id, client: id, key: 0, command,
///     invoke: Stamp { time: inv, seq: inv },
///     complete: Some(Stamp { time: ret, seq: ret }),
///     outcome, attempts: 1,
/// };
/// // put(v1) finishes, then a get starts and still sees nothing: stale.
/// let stale = vec![
///     op(0, Command::Put(1), 1, 2, Outcome::Written),
///     op(1, Command::Get, 3, 4, Outcome::Read(None)),
/// ];
/// assert!(!check_history(&stale).is_linearizable());
/// // The same get overlapping the put may see either value.
/// let fine = vec![
///     op(0, Command::Put(1), 1, 3, Outcome::Written),
///     op(1, Command::Get, 2, 4, Outcome::Read(None)),
/// ];
/// assert!(check_history(&fine).is_linearizable());
/// ```
pub fn check_history(history: &[Operation]) -> CheckResult {
    let mut by_key: BTreeMap<usize, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key).or_default().push(op.clone());
    }
    for (key, ops) in by_key {
        match check_key(key, &ops, DEFAULT_STEP_LIMIT) {
            CheckResult::Linearizable => {}
            other => return other,
        }
    }
    CheckResult::Linearizable
}

/// An operation as the search sees it.
#[derive(Debug, Clone, Copy)]
struct Call {
    command: Command,
    /// A write whose outcome is unknown (completion at +infinity).
    unknown: bool,
    /// For reads: the value returned.
    read: Option<Option<u64>>,
}

/// Checks the operations of one key (all with `key == key`) within
/// `step_limit` search steps.
pub fn check_key(key: usize, ops: &[Operation], step_limit: u64) -> CheckResult {
    let read_values: HashSet<u64> = ops
        .iter()
        .filter_map(|o| match o.outcome {
            Outcome::Read(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    let put_values: HashSet<u64> = ops
        .iter()
        .filter_map(|o| match (o.command, &o.outcome) {
            (Command::Put(v), Outcome::Written | Outcome::Unknown(_) | Outcome::Pending) => Some(v),
            _ => None,
        })
        .collect();
    let mut checked: Vec<Operation> = ops
        .iter()
        .filter(|o| match (&o.command, &o.outcome) {
            (_, Outcome::Failed(_)) => false,
            (Command::Get, Outcome::Unknown(_) | Outcome::Pending) => false,
            (Command::Put(v), Outcome::Unknown(_) | Outcome::Pending) => read_values.contains(v),
            _ => true,
        })
        .cloned()
        .collect();
    checked.sort_by_key(|o| (o.invoke.seq, o.id));
    let violation = |reason: String, ops: Vec<Operation>| {
        CheckResult::Violation(Box::new(Violation { key, reason, ops }))
    };
    // A read of a value no (possibly) successful put wrote can never be
    // explained; say so directly.
    if let Some(op) = checked
        .iter()
        .find(|o| matches!(o.outcome, Outcome::Read(Some(v)) if !put_values.contains(&v)))
    {
        return violation(
            format!(
                "op {} read a value that no acknowledged or unknown put wrote",
                op.id
            ),
            checked,
        );
    }

    // Events: (seq, is_return, op index). Unknown writes return at +inf.
    let n = checked.len();
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    let mut calls = Vec::with_capacity(n);
    for (i, o) in checked.iter().enumerate() {
        let ret = match (&o.outcome, o.complete) {
            (Outcome::Written | Outcome::Read(_), Some(s)) => s.seq,
            _ => u64::MAX,
        };
        if ret != u64::MAX && ret < o.invoke.seq {
            return violation(
                format!("op {} completes before it is invoked", o.id),
                checked,
            );
        }
        events.push((o.invoke.seq, false, i));
        events.push((ret, true, i));
        calls.push(Call {
            command: o.command,
            unknown: ret == u64::MAX,
            read: match o.outcome {
                Outcome::Read(v) => Some(v),
                _ => None,
            },
        });
    }
    events.sort_unstable();

    // A doubly linked list over the events with a head (0) and a tail
    // (len + 1) sentinel; node i + 1 is events[i].
    let len = events.len();
    let head = 0usize;
    let tail = len + 1;
    let mut next: Vec<usize> = (1..=len + 1).chain(std::iter::once(tail)).collect();
    let mut prev: Vec<usize> = std::iter::once(0).chain(0..=len).collect();
    let mut return_node = vec![0usize; n];
    for (i, &(_, is_ret, op)) in events.iter().enumerate() {
        if is_ret {
            return_node[op] = i + 1;
        }
    }
    let node_op = |node: usize| events[node - 1].2;
    let node_is_return = |node: usize| events[node - 1].1;

    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize, ret: usize| {
        let (p, nx) = (prev[node], next[node]);
        next[p] = nx;
        prev[nx] = p;
        let (p, nx) = (prev[ret], next[ret]);
        next[p] = nx;
        prev[nx] = p;
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize, ret: usize| {
        let (p, nx) = (prev[ret], next[ret]);
        next[p] = ret;
        prev[nx] = ret;
        let (p, nx) = (prev[node], next[node]);
        next[p] = node;
        prev[nx] = node;
    };

    let words = n.div_ceil(64).max(1);
    let mut placed = vec![0u64; words];
    // Key: placed set, register state, whether the last placed operation
    // was an unknown write (which restricts what may follow, see below).
    let mut cache: HashSet<(Vec<u64>, Option<u64>, bool)> = HashSet::new();
    // (node, state before, restricted before)
    let mut stack: Vec<(usize, Option<u64>, bool)> = Vec::new();
    let mut state: Option<u64> = None;
    let mut after_unknown_write = false;
    let total_known = calls.iter().filter(|c| !c.unknown).count();
    let mut placed_known = 0usize;
    let mut deepest = 0usize;
    let mut steps = 0u64;
    let mut entry = next[head];
    // Done once every acknowledged operation is placed: the unknown writes
    // left over take effect "never" (or last, which is the same).
    while placed_known < total_known {
        steps += 1;
        if steps > step_limit {
            return CheckResult::GaveUp { key, steps };
        }
        if entry == tail {
            // Cannot happen: the list always ends with a completion event.
            break;
        }
        let op = node_op(entry);
        if !node_is_return(entry) {
            let call = calls[op];
            let (ok, new_state) = match call.command {
                // Pruning without losing completeness: in any valid order an
                // unknown write is either followed by a read (that needs its
                // effect) or can be moved to the very end (it has no
                // completion to respect). So right after an unknown write
                // only a read may be placed.
                Command::Put(_) | Command::Delete if after_unknown_write => (false, state),
                Command::Put(v) => (true, Some(v)),
                Command::Delete => (true, None),
                Command::Get => (call.read == Some(state), state),
            };
            if ok {
                placed[op / 64] |= 1 << (op % 64);
                if cache.insert((placed.clone(), new_state, call.unknown)) {
                    stack.push((entry, state, after_unknown_write));
                    deepest = deepest.max(stack.len());
                    state = new_state;
                    after_unknown_write = call.unknown;
                    placed_known += usize::from(!call.unknown);
                    lift(&mut next, &mut prev, entry, return_node[op]);
                    entry = next[head];
                    continue;
                }
                placed[op / 64] &= !(1 << (op % 64));
            }
            entry = next[entry];
        } else {
            // A completion whose operation is not placed yet: undo the last
            // placement and try the next candidate after it.
            let Some((node, old_state, old_restricted)) = stack.pop() else {
                let stuck = &checked[op];
                return violation(
                    format!(
                        "no linearization of {n} operations; the longest valid prefix places {deepest}; \
                         op {} cannot be placed before it completes",
                        stuck.id
                    ),
                    checked,
                );
            };
            let placed_op = node_op(node);
            placed[placed_op / 64] &= !(1 << (placed_op % 64));
            placed_known -= usize::from(!calls[placed_op].unknown);
            state = old_state;
            after_unknown_write = old_restricted;
            unlift(&mut next, &mut prev, node, return_node[placed_op]);
            entry = next[node];
        }
    }
    CheckResult::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Stamp;

    struct H {
        ops: Vec<Operation>,
    }

    impl H {
        fn new() -> H {
            H { ops: Vec::new() }
        }

        fn op(
            mut self,
            client: u64,
            command: Command,
            inv: u64,
            ret: Option<u64>,
            outcome: Outcome,
        ) -> H {
            let id = self.ops.len() as u64;
            self.ops.push(Operation {
                id,
                client,
                key: 0,
                command,
                invoke: Stamp {
                    time: inv,
                    seq: inv,
                },
                complete: ret.map(|r| Stamp { time: r, seq: r }),
                outcome,
                attempts: 1,
            });
            self
        }

        fn put(self, c: u64, v: u64, inv: u64, ret: u64) -> H {
            self.op(c, Command::Put(v), inv, Some(ret), Outcome::Written)
        }

        fn del(self, c: u64, inv: u64, ret: u64) -> H {
            self.op(c, Command::Delete, inv, Some(ret), Outcome::Written)
        }

        fn get(self, c: u64, v: Option<u64>, inv: u64, ret: u64) -> H {
            self.op(c, Command::Get, inv, Some(ret), Outcome::Read(v))
        }

        fn unknown_put(self, c: u64, v: u64, inv: u64) -> H {
            self.op(
                c,
                Command::Put(v),
                inv,
                None,
                Outcome::Unknown("timeout".into()),
            )
        }

        fn failed_put(self, c: u64, v: u64, inv: u64, ret: u64) -> H {
            self.op(
                c,
                Command::Put(v),
                inv,
                Some(ret),
                Outcome::Failed("not leader".into()),
            )
        }

        fn check(&self) -> CheckResult {
            check_history(&self.ops)
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert!(check_history(&[]).is_linearizable());
    }

    #[test]
    fn sequential_puts_and_gets_are_linearizable() {
        let h = H::new()
            .get(1, None, 1, 2)
            .put(1, 1, 3, 4)
            .get(2, Some(1), 5, 6)
            .del(2, 7, 8)
            .get(1, None, 9, 10);
        assert_eq!(h.check(), CheckResult::Linearizable);
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_caught() {
        let h = H::new()
            .put(1, 1, 1, 2)
            .put(1, 2, 3, 4)
            .get(2, Some(1), 5, 6);
        assert!(matches!(h.check(), CheckResult::Violation(_)));
    }

    #[test]
    fn lost_write_is_caught() {
        // An acknowledged put, then nothing but reads of the empty key.
        let h = H::new()
            .put(1, 7, 1, 2)
            .get(2, None, 3, 4)
            .get(2, None, 5, 6);
        let CheckResult::Violation(v) = h.check() else {
            panic!("lost write not caught");
        };
        assert_eq!(v.key, 0);
        assert!(v.to_string().contains("not linearizable"));
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // Two overlapping puts; reads afterwards agree on one winner.
        let h = H::new()
            .put(1, 1, 1, 5)
            .put(2, 2, 2, 6)
            .get(3, Some(1), 7, 8)
            .get(3, Some(1), 9, 10);
        assert!(h.check().is_linearizable());
        // But they cannot flip back and forth.
        let h = H::new()
            .put(1, 1, 1, 5)
            .put(2, 2, 2, 6)
            .get(3, Some(1), 7, 8)
            .get(3, Some(2), 9, 10);
        assert!(!h.check().is_linearizable());
    }

    #[test]
    fn read_overlapping_a_write_sees_old_or_new() {
        let old = H::new()
            .put(1, 1, 1, 2)
            .put(1, 2, 3, 8)
            .get(2, Some(1), 4, 5);
        assert!(old.check().is_linearizable());
        let new = H::new()
            .put(1, 1, 1, 2)
            .put(1, 2, 3, 8)
            .get(2, Some(2), 4, 5);
        assert!(new.check().is_linearizable());
    }

    #[test]
    fn reads_must_not_go_back_in_time() {
        // Overlapping put; a first read sees the new value, a later read
        // (after the first finished) sees the old one: not linearizable.
        let h = H::new()
            .put(1, 1, 1, 2)
            .put(1, 2, 3, 20)
            .get(2, Some(2), 4, 5)
            .get(3, Some(1), 6, 7);
        assert!(!h.check().is_linearizable());
    }

    #[test]
    fn unknown_write_may_take_effect_late_or_never() {
        // Never observed: fine.
        let never = H::new().unknown_put(1, 1, 1).get(2, None, 5, 6);
        assert!(never.check().is_linearizable());
        // Observed long after its invocation: fine too.
        let late = H::new()
            .unknown_put(1, 1, 1)
            .get(2, None, 5, 6)
            .get(2, Some(1), 50, 60);
        assert!(late.check().is_linearizable());
        // But once observed it cannot disappear without another write.
        let flicker = H::new()
            .unknown_put(1, 1, 1)
            .get(2, Some(1), 5, 6)
            .get(2, None, 7, 8);
        assert!(!flicker.check().is_linearizable());
    }

    #[test]
    fn unknown_write_cannot_take_effect_before_its_invocation() {
        let h = H::new().get(2, Some(1), 1, 2).unknown_put(1, 1, 3);
        assert!(!h.check().is_linearizable());
    }

    #[test]
    fn failed_write_must_have_no_effect() {
        let h = H::new().failed_put(1, 1, 1, 2).get(2, Some(1), 3, 4);
        let CheckResult::Violation(v) = h.check() else {
            panic!("effect of a failed write not caught");
        };
        assert!(
            v.reason.contains("no acknowledged or unknown put"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut h = H::new().put(1, 1, 1, 2);
        let mut other = H::new().get(2, None, 3, 4).ops;
        other[0].key = 1;
        other[0].id = 99;
        h.ops.extend(other);
        assert!(h.check().is_linearizable());
    }

    #[test]
    fn many_concurrent_unknown_writes_stay_tractable() {
        // 60 unknown puts, all observed by some read, interleaved with reads.
        let mut h = H::new();
        let mut t = 1;
        for v in 1..=60 {
            h = h.unknown_put(v % 5, v, t);
            t += 1;
        }
        for v in 1..=60 {
            h = h.get(10, Some(v), t, t + 1);
            t += 2;
        }
        assert!(h.check().is_linearizable());
    }

    #[test]
    fn step_limit_gives_up_instead_of_running_forever() {
        let mut h = H::new();
        for v in 1..=12 {
            h = h.put(v, v, 1, 100);
        }
        h = h.get(99, Some(1), 101, 102);
        assert!(matches!(
            check_key(0, &h.ops, 5),
            CheckResult::GaveUp { key: 0, .. }
        ));
        assert!(check_key(0, &h.ops, DEFAULT_STEP_LIMIT).is_linearizable());
    }
}
