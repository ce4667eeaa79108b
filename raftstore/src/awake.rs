//! `AwakeRegions`: which of a store's regions are awake (ticked), and when
//! its hibernated followers check on their leader.
//!
//! A hibernated region costs nothing per tick: the tick timer (and the
//! simulation, which ticks by hand) only walks this set, never the router's
//! map of every region. Peers put themselves in and take themselves out
//! when they wake and fall asleep; the set is split into [`TICK_SLICES`]
//! partitions by [`tick_slice`], so the timer's walk of one slice touches
//! only that slice's awake regions.
//!
//! ```text
//!   peer created ──> awake (in the set, ticked)
//!        ^                      |  leader: every peer caught up and acknowledged
//!        | any message that     |  follower: the leader's hibernate request matches
//!        | needs the region,    v
//!        | a command, a store   asleep (not in the set, not ticked)
//!        | (un)reachable,            |
//!        +--- a follower's liveness check (every `hibernate_check_leader_ticks`)
//! ```
//!
//! The liveness checks are kept here too, as a schedule keyed by store tick:
//! a follower that falls asleep books a check some store ticks ahead; the
//! store FSM advances the store tick and takes the checks that are due. So a
//! sleeping follower costs one schedule entry per check period, whatever the
//! number of regions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How many groups the tick timer splits the peers into (at most one per
/// millisecond of the tick interval).
pub const TICK_SLICES: u64 = 10;

/// The slice of the tick period in which `region_id`'s peer is ticked: a
/// Fibonacci hash of the id, so consecutive ids (the usual case) spread
/// evenly over the `slices` slices. Always `< slices` (0 when `slices` is 0).
///
/// # Examples
///
/// ```
/// use raftstore::tick_slice;
///
/// let mut per_slice = [0u32; 10];
/// for region_id in 1..=1000 {
///     per_slice[tick_slice(region_id, 10) as usize] += 1;
/// }
/// assert!(per_slice.iter().all(|&n| (90..=110).contains(&n)), "{per_slice:?}");
/// ```
pub fn tick_slice(region_id: u64, slices: u64) -> u64 {
    if slices == 0 {
        return 0;
    }
    (region_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % slices
}

/// The awake regions of one store, and the liveness checks its hibernated
/// followers booked.
///
/// Shared (in an `Arc`) by the store's pollers, its tick timer and anyone
/// who wants to know how many regions are awake
/// ([`RaftBatchSystem::awake_regions`](crate::RaftBatchSystem::awake_regions)).
///
/// # Examples
///
/// ```
/// use raftstore::{tick_slice, AwakeRegions, TICK_SLICES};
///
/// let awake = AwakeRegions::new();
/// awake.insert(7);
/// awake.insert(3);
/// assert_eq!(awake.ids(), vec![3, 7]);
/// let slice = tick_slice(7, TICK_SLICES);
/// assert!(awake.ids_in_slice(slice, TICK_SLICES).contains(&7));
/// awake.remove(7);
/// assert_eq!(awake.len(), 1);
/// ```
#[derive(Debug)]
pub struct AwakeRegions {
    /// Partition `p` holds the awake regions with
    /// `tick_slice(id, TICK_SLICES) == p`, sorted, each with whether the
    /// tick timer's last tick to it is still queued (not handled yet).
    slices: Vec<Mutex<BTreeMap<u64, bool>>>,
    /// Store ticks so far (advanced by the store FSM).
    store_ticks: AtomicU64,
    /// Liveness checks: store tick they are due at -> regions.
    checks: Mutex<BTreeMap<u64, Vec<u64>>>,
}

impl Default for AwakeRegions {
    fn default() -> Self {
        AwakeRegions::new()
    }
}

impl AwakeRegions {
    /// An empty set.
    pub fn new() -> AwakeRegions {
        AwakeRegions {
            slices: (0..TICK_SLICES)
                .map(|_| Mutex::new(BTreeMap::new()))
                .collect(),
            store_ticks: AtomicU64::new(0),
            checks: Mutex::new(BTreeMap::new()),
        }
    }

    fn slice(&self, region_id: u64) -> std::sync::MutexGuard<'_, BTreeMap<u64, bool>> {
        let i = tick_slice(region_id, TICK_SLICES) as usize;
        // Only ever holds plain ids: a poisoned lock is still consistent.
        self.slices[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `region_id` awake (ticked).
    pub fn insert(&self, region_id: u64) {
        self.slice(region_id).entry(region_id).or_insert(false);
    }

    /// Marks `region_id` asleep or gone (not ticked).
    pub fn remove(&self, region_id: u64) {
        self.slice(region_id).remove(&region_id);
    }

    /// Whether `region_id` is awake.
    pub fn contains(&self, region_id: u64) -> bool {
        self.slice(region_id).contains_key(&region_id)
    }

    /// Number of awake regions.
    pub fn len(&self) -> usize {
        self.slices
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether no region is awake.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every awake region, sorted by id.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids = Vec::new();
        for s in &self.slices {
            ids.extend(s.lock().unwrap_or_else(|e| e.into_inner()).keys());
        }
        ids.sort_unstable();
        ids
    }

    /// The awake regions the tick timer ticks in its slice `slice` of
    /// `slices` (`slices` at most [`TICK_SLICES`]): those whose
    /// [`tick_slice`]`(id, TICK_SLICES) % slices == slice`. Over the
    /// `slices` slices every awake region comes up exactly once.
    pub fn ids_in_slice(&self, slice: u64, slices: u64) -> Vec<u64> {
        let mut ids = Vec::new();
        self.append_slice(slice, slices, &mut ids);
        ids
    }

    /// [`ids_in_slice`](Self::ids_in_slice) into a reused buffer (appended).
    pub fn append_slice(&self, slice: u64, slices: u64, out: &mut Vec<u64>) {
        let slices = slices.clamp(1, TICK_SLICES);
        for (p, s) in self.slices.iter().enumerate() {
            if p as u64 % slices == slice {
                out.extend(s.lock().unwrap_or_else(|e| e.into_inner()).keys());
            }
        }
    }

    /// What the tick timer sends its slice `slice` of `slices` to: like
    /// [`append_slice`](Self::append_slice), but only the regions whose
    /// previous timer tick was handled ([`tick_handled`](Self::tick_handled)),
    /// and those are marked as having a tick queued. So a region never has
    /// more than one timer tick waiting in its mailbox: when the pollers
    /// fall behind (thousands of regions electing at once after a restart),
    /// ticks are skipped instead of piling up, raft's clocks slow down with
    /// the store, and the backlog cannot grow without bound (a peer asks
    /// for its next tick by handling the last one).
    pub fn take_tick_slice(&self, slice: u64, slices: u64, out: &mut Vec<u64>) {
        let slices = slices.clamp(1, TICK_SLICES);
        for (p, s) in self.slices.iter().enumerate() {
            if p as u64 % slices == slice {
                let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                for (id, queued) in s.iter_mut() {
                    if !*queued {
                        *queued = true;
                        out.push(*id);
                    }
                }
            }
        }
    }

    /// Region `region_id` handled a tick (or the timer could not deliver
    /// one): the timer may send it the next.
    pub fn tick_handled(&self, region_id: u64) {
        if let Some(queued) = self.slice(region_id).get_mut(&region_id) {
            *queued = false;
        }
    }

    /// Store ticks counted so far.
    pub fn store_ticks(&self) -> u64 {
        self.store_ticks.load(Ordering::Relaxed)
    }

    /// Books a liveness check of `region_id` `after` store ticks from now.
    pub(crate) fn schedule_check(&self, region_id: u64, after: u64) {
        let due = self.store_ticks().saturating_add(after.max(1));
        self.checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(due)
            .or_default()
            .push(region_id);
    }

    /// Counts one store tick and returns the regions whose liveness check
    /// is due (in booking order).
    pub(crate) fn on_store_tick(&self) -> Vec<u64> {
        let now = self.store_ticks.fetch_add(1, Ordering::Relaxed) + 1;
        let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        while let Some(entry) = checks.first_entry() {
            if *entry.key() > now {
                break;
            }
            due.extend(entry.remove());
        }
        due
    }

    /// Liveness checks booked and not yet due.
    pub fn pending_checks(&self) -> usize {
        self.checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_slices(awake: &AwakeRegions) -> Vec<u64> {
        let mut out = Vec::new();
        for slice in 0..TICK_SLICES {
            awake.take_tick_slice(slice, TICK_SLICES, &mut out);
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn a_region_gets_no_new_timer_tick_until_it_handled_the_last() {
        let awake = AwakeRegions::new();
        for id in 1..=20 {
            awake.insert(id);
        }
        assert_eq!(all_slices(&awake), (1..=20).collect::<Vec<_>>());
        // Nothing handled yet: a second period sends nothing.
        assert!(all_slices(&awake).is_empty());
        awake.tick_handled(3);
        awake.tick_handled(17);
        assert_eq!(all_slices(&awake), vec![3, 17]);
        // Falling asleep and waking forgets the queued tick's mark only if
        // the region left the set meanwhile.
        awake.insert(5);
        assert!(all_slices(&awake).is_empty());
        awake.remove(5);
        awake.insert(5);
        assert_eq!(all_slices(&awake), vec![5]);
        // A tick handled by a region that is asleep (not in the set) is fine.
        awake.remove(9);
        awake.tick_handled(9);
        assert!(!awake.contains(9));
        // The plain walks still see every awake region.
        assert_eq!(awake.len(), 19);
        assert_eq!(awake.ids_in_slice(0, 1).len(), 19);
    }

    #[test]
    fn tick_slice_is_in_range_and_stable() {
        assert_eq!(tick_slice(42, 0), 0);
        for id in [0, 1, 7, u64::MAX, 0x8000_0000_0000_0000] {
            assert_eq!(tick_slice(id, 1), 0);
            let s = tick_slice(id, TICK_SLICES);
            assert!(s < TICK_SLICES);
            assert_eq!(s, tick_slice(id, TICK_SLICES));
        }
    }

    #[test]
    fn sparse_region_ids_spread_over_the_slices() {
        // Ids with a common stride (as split region ids can have) must not
        // all land in one slice.
        let mut per_slice = [0u32; TICK_SLICES as usize];
        for i in 0..1000u64 {
            per_slice[tick_slice(1000 + i * 10, TICK_SLICES) as usize] += 1;
        }
        assert!(
            per_slice.iter().all(|&n| (70..=130).contains(&n)),
            "{per_slice:?}"
        );
    }

    #[test]
    fn every_awake_region_is_in_exactly_one_timer_slice() {
        let awake = AwakeRegions::new();
        for id in 1..=200 {
            awake.insert(id);
        }
        awake.remove(100);
        for slices in [1, 3, 7, TICK_SLICES] {
            let mut seen: Vec<u64> = (0..slices)
                .flat_map(|s| awake.ids_in_slice(s, slices))
                .collect();
            seen.sort_unstable();
            let expected: Vec<u64> = (1..=200).filter(|&id| id != 100).collect();
            assert_eq!(seen, expected, "slices = {slices}");
        }
        assert_eq!(awake.len(), 199);
        assert!(!awake.contains(100) && awake.contains(99));
    }

    #[test]
    fn liveness_checks_come_due_after_their_store_ticks_in_booking_order() {
        let awake = AwakeRegions::new();
        awake.schedule_check(5, 2);
        awake.schedule_check(3, 2);
        awake.schedule_check(9, 3);
        assert_eq!(awake.pending_checks(), 3);
        assert!(awake.on_store_tick().is_empty());
        assert_eq!(awake.on_store_tick(), vec![5, 3]);
        assert_eq!(awake.on_store_tick(), vec![9]);
        assert!(awake.on_store_tick().is_empty());
        assert_eq!(awake.pending_checks(), 0);
        assert_eq!(awake.store_ticks(), 4);
    }
}
