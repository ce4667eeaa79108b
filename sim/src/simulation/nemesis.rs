//! The nemesis: every fault the simulation injects while the workload
//! runs (partitions, one-way cuts, leader isolation, crashes, pauses,
//! leader transfers, splits, membership changes).

use std::collections::BTreeSet;

use kvproto_lite::eraftpb::ConfChangeType;
use kvproto_lite::metapb::{self, PeerRole, Region};
use kvproto_lite::raft_cmdpb::AdminCmdType;
use kvproto_lite::util;
use raftstore::{Callback, RaftCommand};
use rand::seq::SliceRandom;
use rand::Rng;

use super::event::{Event, Phase};
use super::{Pause, Simulation};
use crate::network::NetFault;

impl Simulation {
    pub(super) fn nemesis(&mut self) {
        if self.phase != Phase::Workload {
            return;
        }
        let n = self.cfg.nemesis.clone();
        // Enabled fault kinds, in a fixed order (seeds depend on it).
        let kinds: Vec<u32> = [
            n.partitions,
            n.one_way,
            n.leader_isolation,
            n.crashes,
            n.pauses,
            n.transfers,
            n.splits,
            n.planned_restarts,
            n.sleeping_leaders,
            n.snapshot_crashes,
            n.membership,
            n.leader_check_isolation,
        ]
        .into_iter()
        .zip(0u32..)
        .filter_map(|(on, kind)| on.then_some(kind))
        .collect();
        let duration = self.rng.gen_range(n.min_duration..=n.max_duration);
        let stores: Vec<u64> = self.stores.keys().copied().collect();
        if let Some(&kind) = kinds.choose(&mut self.rng) {
            match kind {
                0 => {
                    let k = self.rng.gen_range(1..stores.len().max(2));
                    let side: BTreeSet<u64> = stores
                        .choose_multiple(&mut self.rng, k.min(stores.len()))
                        .copied()
                        .collect();
                    self.add_net_fault(NetFault::Partition { side }, duration);
                }
                1 => {
                    let pair: Vec<u64> =
                        stores.choose_multiple(&mut self.rng, 2).copied().collect();
                    if let [from, to] = pair[..] {
                        self.add_net_fault(NetFault::OneWay { from, to }, duration);
                    }
                }
                2 => {
                    let regions = self.regions.regions();
                    let region = regions[self.rng.gen_range(0..regions.len())].get_id();
                    if let Some(leader) = self.leader_store(region) {
                        self.trace(&format!(
                            "isolate leader of region {region} (store {leader})"
                        ));
                        self.add_net_fault(
                            NetFault::Partition {
                                side: [leader].into(),
                            },
                            duration,
                        );
                    }
                }
                3 => {
                    // Half the time prefer a store in the middle of work
                    // (polled again next time unit): a crash then finds
                    // FSMs with queued, half-applied or unpersisted state.
                    let running = self.running_stores();
                    let busy: Vec<u64> = running
                        .iter()
                        .copied()
                        .filter(|id| self.busy_streak.contains_key(id))
                        .collect();
                    let pool = if !busy.is_empty() && self.rng.gen_bool(0.5) {
                        busy
                    } else {
                        running
                    };
                    if let Some(&victim) = pool.choose(&mut self.rng) {
                        self.trace(&format!("crash store {victim} for {duration}"));
                        self.crash_store(victim);
                        self.paused.remove(&victim);
                        self.schedule(self.now + duration, Event::Restart { store: victim });
                    }
                }
                6 => self.split(),
                7 => {
                    let running = self.running_stores();
                    if let Some(&store) = running.choose(&mut self.rng) {
                        self.evict_leaders(store, duration);
                    }
                }
                8 => self.fault_sleeping_leader(duration),
                9 => self.crash_during_snapshot(duration),
                10 => self.change_membership(),
                11 => {
                    let regions = self.regions.regions();
                    let region = regions[self.rng.gen_range(0..regions.len())].get_id();
                    if let Some(leader) = self.leader_store(region) {
                        self.trace(&format!(
                            "cut the leader of region {region} (store {leader}) off from raft \
                             messages, leader checks pass"
                        ));
                        self.add_net_fault(
                            NetFault::RegionPartition {
                                side: [leader].into(),
                            },
                            duration,
                        );
                    }
                }
                5 => {
                    let regions = self.regions.regions();
                    let region = regions[self.rng.gen_range(0..regions.len())].clone();
                    if let Some(leader) = self.leader_store(region.get_id()) {
                        let others: Vec<_> = region
                            .get_peers()
                            .iter()
                            .filter(|p| p.get_store_id() != leader)
                            .cloned()
                            .collect();
                        if let Some(target) = others.choose(&mut self.rng).cloned() {
                            self.trace(&format!(
                                "transfer leader of region {} from store {leader} to store {}",
                                region.get_id(),
                                target.get_store_id()
                            ));
                            self.transfer_leader(leader, &region, target);
                        }
                    }
                }
                _ => {
                    if let Some(&store) = stores.choose(&mut self.rng) {
                        let until = self.now + duration;
                        let (raft, apply) = match self.rng.gen_range(0..3) {
                            0 => (until, 0),
                            1 => (0, until),
                            _ => (until, until),
                        };
                        // With two pollers of each kind, half of the pauses
                        // stall one poller (a stuck thread, maybe in the
                        // middle of a round, holding its FSMs) while the
                        // other keeps working.
                        let only = (self.cfg.two_pollers && self.rng.gen_bool(0.5))
                            .then(|| self.rng.gen_range(0..2usize));
                        self.trace(&format!(
                            "pause store {store} (raft until {raft}, apply until {apply}, \
                             pollers {})",
                            only.map_or("all".to_owned(), |i| format!("#{i} only"))
                        ));
                        self.paused.insert(
                            store,
                            Pause {
                                raft_until: raft,
                                apply_until: apply,
                                only,
                            },
                        );
                    }
                }
            }
        }
        let next = self.rng.gen_range(n.min_interval..=n.max_interval);
        self.schedule(self.now + next, Event::Nemesis);
    }

    /// Crashes a store in the middle of snapshot work, if one is: sending
    /// or receiving a transfer, or holding a generated snapshot not sent
    /// yet, or having applied one (in its last poll rounds).
    fn crash_during_snapshot(&mut self, duration: u64) {
        let mut busy: BTreeSet<u64> = self
            .transfers
            .values()
            .flat_map(|t| [t.from, t.to])
            .collect();
        for id in self.running_stores() {
            if let Some(router) = self.router_of(id) {
                let s = router.snap_manager().stats();
                if s.generated.load(std::sync::atomic::Ordering::Relaxed)
                    > s.sent.load(std::sync::atomic::Ordering::Relaxed)
                        + s.send_failures.load(std::sync::atomic::Ordering::Relaxed)
                    || s.applied.load(std::sync::atomic::Ordering::Relaxed) > 0
                {
                    busy.insert(id);
                }
            }
        }
        let busy: Vec<u64> = busy
            .into_iter()
            .filter(|id| self.router_of(*id).is_some())
            .collect();
        let Some(&victim) = busy.choose(&mut self.rng) else {
            return;
        };
        self.trace(&format!(
            "crash store {victim} during snapshot work for {duration}"
        ));
        self.stats.snapshot_crashes += 1;
        self.crash_store(victim);
        self.paused.remove(&victim);
        self.schedule(self.now + duration, Event::Restart { store: victim });
    }

    /// Asks the leader of a random region to split it at one of the keys
    /// inside it (if any).
    pub(super) fn split(&mut self) {
        let regions = self.regions.regions();
        let region = regions[self.rng.gen_range(0..regions.len())].clone();
        let inside: Vec<Vec<u8>> = self
            .keys
            .iter()
            .filter(|k| k.as_slice() > region.get_start_key() && util::is_key_in_region(k, &region))
            .cloned()
            .collect();
        let Some(split_key) = inside.choose(&mut self.rng).cloned() else {
            return;
        };
        let Some(leader) = self.leader_store(region.get_id()) else {
            return;
        };
        let Some(peer) = util::find_peer(&region, leader).cloned() else {
            return;
        };
        let new_region_id = self.next_region_id;
        self.next_region_id += 1;
        let mut new_peer_ids = Vec::with_capacity(region.get_peers().len());
        for _ in region.get_peers() {
            self.next_peer_id += 1;
            new_peer_ids.push(self.next_peer_id);
        }
        self.tick_ids.insert(new_region_id);
        self.trace(&format!(
            "split region {} at {:02x?} into {new_region_id} (leader store {leader})",
            region.get_id(),
            split_key
        ));
        let mut req = util::new_cmd_request(&region, peer);
        let admin = req.mut_admin_request();
        admin.set_cmd_type(AdminCmdType::Split);
        admin.mut_split().set_split_key(split_key);
        admin.mut_split().set_new_region_id(new_region_id);
        admin.mut_split().set_new_peer_ids(new_peer_ids);
        let sink = self.split_results.clone();
        let cb = Callback::new(move |resp| {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(resp);
        });
        let router = self.router_of(leader);
        if let Some(router) = router {
            if router.send_raft_command(RaftCommand::new(req, cb)).is_ok() {
                self.stats.splits += 1;
                self.wake(leader, 0);
            }
        }
    }

    /// Asks the leader of a random region to change its membership: demote
    /// a voter to a learner, promote a learner, both at once through a
    /// joint configuration (or demote two voters at once when there is no
    /// learner), remove a learner, add a learner on a store without a peer
    /// of the region, or replace a voter by a new voter there (joint). The
    /// leader itself is never changed (it would refuse).
    pub(super) fn change_membership(&mut self) {
        let regions = self.regions.regions();
        let region = regions[self.rng.gen_range(0..regions.len())].clone();
        let Some(leader) = self.leader_store(region.get_id()) else {
            return;
        };
        let Some(leader_peer) = util::find_peer(&region, leader).cloned() else {
            return;
        };
        let of_role = |role: PeerRole| -> Vec<metapb::Peer> {
            region
                .get_peers()
                .iter()
                .filter(|p| p.get_store_id() != leader && p.get_role() == role)
                .cloned()
                .collect()
        };
        let (voters, learners) = (of_role(PeerRole::Voter), of_role(PeerRole::Learner));
        let demote =
            |p: &metapb::Peer| util::change_peer(ConfChangeType::AddLearnerNode, p.clone());
        let promote = |p: &metapb::Peer| util::change_peer(ConfChangeType::AddNode, p.clone());
        // A store without a peer of the region (after a removal), and a
        // fresh peer id for it: ids are never reused.
        let free_store = self
            .stores
            .keys()
            .copied()
            .find(|s| util::find_peer(&region, *s).is_none());
        let fresh = |store: u64, next: &mut u64| {
            *next += 1;
            let mut p = metapb::Peer::default();
            p.set_id(*next);
            p.set_store_id(store);
            p
        };
        let changes: Vec<_> = match self.rng.gen_range(0..6) {
            0 => voters
                .choose(&mut self.rng)
                .map(demote)
                .into_iter()
                .collect(),
            1 => learners
                .choose(&mut self.rng)
                .map(promote)
                .into_iter()
                .collect(),
            2 => match (voters.choose(&mut self.rng), learners.choose(&mut self.rng)) {
                (Some(v), Some(l)) => vec![demote(v), promote(l)],
                (None, Some(_)) => learners.iter().map(promote).collect(),
                _ => voters.iter().map(demote).collect(),
            },
            // Remove a learner: its peer is destroyed, its data deleted.
            3 => learners
                .choose(&mut self.rng)
                .map(|p| util::change_peer(ConfChangeType::RemoveNode, p.clone()))
                .into_iter()
                .collect(),
            // Add a learner where the region has no peer: created by the
            // leader's message, filled by a snapshot.
            4 => free_store
                .map(|s| {
                    let p = fresh(s, &mut self.next_peer_id);
                    util::change_peer(ConfChangeType::AddLearnerNode, p)
                })
                .into_iter()
                .collect(),
            // Replace a voter by a new voter on the free store, through a
            // joint configuration.
            _ => match (free_store, voters.choose(&mut self.rng)) {
                (Some(s), Some(v)) => {
                    let p = fresh(s, &mut self.next_peer_id);
                    vec![util::change_peer(ConfChangeType::AddNode, p), demote(v)]
                }
                _ => Vec::new(),
            },
        };
        if changes.is_empty() {
            return;
        }
        self.trace(&format!(
            "membership change of region {} (leader store {leader}): {:?}",
            region.get_id(),
            changes
                .iter()
                .map(|c| (c.get_change_type(), c.get_peer().get_store_id()))
                .collect::<Vec<_>>()
        ));
        let req = util::new_change_peer_request(&region, leader_peer, changes);
        let sink = self.membership_results.clone();
        let cb = Callback::new(move |resp| {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(resp);
        });
        if let Some(router) = self.router_of(leader) {
            if router.send_raft_command(RaftCommand::new(req, cb)).is_ok() {
                self.stats.conf_changes += 1;
                self.wake(leader, 0);
            }
        }
    }

    /// The first half of a planned restart: tells `store` to hand its
    /// leaderships away, then stops it after half of `duration` and
    /// restarts it at the end.
    pub(super) fn evict_leaders(&mut self, store: u64, duration: u64) {
        let Some(router) = self.router_of(store) else {
            return;
        };
        let led = self
            .stores
            .get(&store)
            .and_then(|s| s.running.as_ref())
            .map(|r| r.system.store_meta().leader_regions())
            .unwrap_or_default();
        self.trace(&format!(
            "planned restart of store {store}: evict leaders of {led:?}"
        ));
        router.evict_leaders();
        self.wake(store, 0);
        self.schedule(
            self.now + (duration / 2).max(1),
            Event::PlannedStop {
                store,
                led,
                restart_at: self.now + duration,
            },
        );
    }

    /// The stop of a planned restart (skipped if the store crashed
    /// meanwhile): counts the leaderships handed off, stops the store (a
    /// crash after the eviction: the simulation has no other stop) and
    /// schedules its restart.
    pub(super) fn planned_stop(&mut self, store: u64, led: &[u64], restart_at: u64) {
        let Some(running) = self.stores.get(&store).and_then(|s| s.running.as_ref()) else {
            return;
        };
        let still = running.system.store_meta().leader_regions();
        let kept = led.iter().filter(|r| still.contains(r)).count() as u64;
        self.stats.planned_restarts += 1;
        self.stats.not_handed_off += kept;
        self.stats.handed_off += led.len() as u64 - kept;
        self.trace(&format!(
            "planned stop of store {store}: still leads {still:?}"
        ));
        self.crash_store(store);
        self.paused.remove(&store);
        if self.phase == Phase::Workload {
            self.schedule(restart_at.max(self.now + 1), Event::Restart { store });
        } else {
            // The workload ended meanwhile (and with it the nemesis): the
            // store comes back at once, as every store does then.
            self.restart(store);
        }
    }

    /// Crashes (half the time) or isolates the store of a leader whose
    /// region hibernates there, if there is one.
    fn fault_sleeping_leader(&mut self, duration: u64) {
        let sleeping: Vec<(u64, u64)> = self
            .regions
            .regions()
            .iter()
            .filter_map(|r| {
                let region = r.get_id();
                let store = self.leader_store(region)?;
                let running = self.stores.get(&store)?.running.as_ref()?;
                (!running.system.awake_regions().contains(region)).then_some((region, store))
            })
            .collect();
        let Some(&(region, store)) = sleeping.choose(&mut self.rng) else {
            return;
        };
        self.stats.sleeping_leader_faults += 1;
        if self.rng.gen_bool(0.5) {
            self.trace(&format!(
                "crash store {store} (leader of hibernated region {region}) for {duration}"
            ));
            self.crash_store(store);
            self.paused.remove(&store);
            self.schedule(self.now + duration, Event::Restart { store });
        } else {
            self.trace(&format!(
                "isolate store {store} (leader of hibernated region {region}) for {duration}"
            ));
            self.add_net_fault(
                NetFault::Partition {
                    side: [store].into(),
                },
                duration,
            );
        }
    }

    /// Sends a `TransferLeader` admin command to the leader on `store`.
    pub(super) fn transfer_leader(&mut self, store: u64, region: &Region, target: metapb::Peer) {
        let Some(peer) = util::find_peer(region, store).cloned() else {
            return;
        };
        let mut req = util::new_cmd_request(region, peer);
        let admin = req.mut_admin_request();
        admin.set_cmd_type(AdminCmdType::TransferLeader);
        admin.mut_transfer_leader().set_peer(target);
        let router = self.router_of(store);
        if let Some(router) = router {
            // The answer only says whether the transfer started; ignore it.
            if router
                .send_raft_command(RaftCommand::new(req, Callback::none()))
                .is_ok()
            {
                self.wake(store, 0);
            }
        }
    }

    pub(super) fn add_net_fault(&mut self, fault: NetFault, duration: u64) {
        let id = self.next_fault;
        self.next_fault += 1;
        self.trace(&format!("network fault {id} for {duration}: {fault:?}"));
        self.net.add(id, fault);
        self.stats.net_faults += 1;
        self.schedule(self.now + duration, Event::HealNet { fault: id });
    }
}
