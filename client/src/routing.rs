//! Routing one attempt (key -> region -> store) and learning from its
//! answer: the decisions every driver of the client core shares.

use kvproto_lite::errorpb;
use kvproto_lite::metapb::{Peer, RegionEpoch};
use kvproto_lite::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse, Request};
use kvproto_lite::util;

use crate::classify::{classify, ErrorClass};
use crate::leader_cache::LeaderCache;
use crate::region_cache::RegionCache;

/// Where one attempt goes: a region (with the epoch the client believes
/// in) and its peer on the chosen store.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    region_id: u64,
    epoch: RegionEpoch,
    peer: Peer,
}

impl Route {
    /// The region routed to.
    pub fn region_id(&self) -> u64 {
        self.region_id
    }

    /// The store the attempt goes to.
    pub fn store_id(&self) -> u64 {
        self.peer.get_store_id()
    }

    /// The region's peer on that store.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The region epoch the request carries.
    pub fn epoch(&self) -> &RegionEpoch {
        &self.epoch
    }

    /// A command for this route carrying `request`: the header names the
    /// region, its epoch and the peer.
    pub fn command(&self, request: Request) -> RaftCmdRequest {
        let mut cmd = RaftCmdRequest::default();
        let header = cmd.mut_header();
        header.set_region_id(self.region_id);
        header.set_peer(self.peer.clone());
        header.set_region_epoch(self.epoch.clone());
        cmd.mut_requests().push(request);
        cmd
    }
}

/// Why no route could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No cached region covers the key.
    #[error("no region for key")]
    NoRegion,
    /// The region covering the key lists no peers.
    #[error("region {0} has no peers")]
    NoPeers(u64),
    /// The believed leader's store has no peer of the region (the layout
    /// changed under the cache); the leader entry is forgotten, so the
    /// next attempt picks a peer of the region.
    #[error("hinted store {store_id} has no peer of region {region_id}")]
    NoPeerOnStore {
        /// The region.
        region_id: u64,
        /// The store the leader cache named.
        store_id: u64,
    },
}

/// Chooses where an attempt on `key` goes: the region covering it, and the
/// store believed to lead it or, with no leader known, the peer at index
/// `pick(number of peers)` (modulo that number) — a round-robin counter,
/// or a random draw.
///
/// # Errors
///
/// See [`RouteError`]; [`RouteError::NoPeerOnStore`] also forgets the
/// stale leader entry.
pub fn route(
    regions: &RegionCache,
    leaders: &mut LeaderCache,
    key: &[u8],
    pick: impl FnOnce(usize) -> usize,
) -> Result<Route, RouteError> {
    let region = regions.locate(key).ok_or(RouteError::NoRegion)?;
    let region_id = region.get_id();
    let store_id = match leaders.get(region_id) {
        Some(store_id) => store_id,
        None => {
            let peers = region.get_peers();
            if peers.is_empty() {
                return Err(RouteError::NoPeers(region_id));
            }
            peers[pick(peers.len()) % peers.len()].get_store_id()
        }
    };
    let Some(peer) = util::find_peer(region, store_id) else {
        leaders.forget(region_id);
        return Err(RouteError::NoPeerOnStore {
            region_id,
            store_id,
        });
    };
    Ok(Route {
        region_id,
        epoch: region.get_region_epoch().clone(),
        peer: peer.clone(),
    })
}

/// Where a follower read goes: peer `pick(n)` of the region of `key`
/// (any peer serves it; see `ReadMode::Follower`).
///
/// # Errors
///
/// [`RouteError::NoRegion`] / [`RouteError::NoPeers`].
pub fn route_any_peer(
    regions: &RegionCache,
    key: &[u8],
    pick: impl FnOnce(usize) -> usize,
) -> Result<Route, RouteError> {
    let region = regions.locate(key).ok_or(RouteError::NoRegion)?;
    let peers = region.get_peers();
    if peers.is_empty() {
        return Err(RouteError::NoPeers(region.get_id()));
    }
    let peer = &peers[pick(peers.len()) % peers.len()];
    Ok(Route {
        region_id: region.get_id(),
        epoch: region.get_region_epoch().clone(),
        peer: peer.clone(),
    })
}

/// What an answer to one attempt was.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The command ran; the response holds its results.
    Succeeded,
    /// The store answered with an error (see [`ErrorClass`]).
    Error(ErrorClass),
}

/// Learns from the answer to an attempt sent along `route`, and classifies
/// it.
///
/// - success: the answering store leads the region;
/// - `EpochNotMatch`: every region in the answer goes into the region
///   cache ([`RegionCache::update`]);
/// - `NotLeader` naming a leader's store: that store leads the region;
/// - any other error, typed or not: the region's leader is forgotten, so
///   the next attempt picks a peer afresh.
pub fn learn(
    regions: &mut RegionCache,
    leaders: &mut LeaderCache,
    route: &Route,
    resp: &RaftCmdResponse,
) -> Verdict {
    let header = resp.get_header();
    if !header.has_error() {
        leaders.set(route.region_id, route.store_id());
        return Verdict::Succeeded;
    }
    let err = header.get_error();
    let class = classify(err);
    if class.not_applied() && err.has_epoch_not_match() {
        for r in err.get_epoch_not_match().get_current_regions() {
            regions.update(r.clone());
        }
    }
    match leader_hint(err) {
        Some(store_id) if class.not_applied() => leaders.set(route.region_id, store_id),
        _ => leaders.forget(route.region_id),
    }
    Verdict::Error(class)
}

/// The leader's store a `NotLeader` answer names, if any.
fn leader_hint(err: &errorpb::Error) -> Option<u64> {
    if !err.has_not_leader() || !err.get_not_leader().has_leader() {
        return None;
    }
    let store_id = err.get_not_leader().get_leader().get_store_id();
    (store_id != 0).then_some(store_id)
}

/// A client's routing state: its region cache and leader cache, with
/// [`route`] and [`learn`] as methods.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    regions: RegionCache,
    leaders: LeaderCache,
}

impl Routing {
    /// Routing over `regions`, no leader known.
    pub fn new(regions: RegionCache) -> Routing {
        Routing {
            regions,
            leaders: LeaderCache::new(),
        }
    }

    /// Routing over `regions` with the leaders already known (for example
    /// from a placement service).
    pub fn with_leaders(regions: RegionCache, leaders: LeaderCache) -> Routing {
        Routing { regions, leaders }
    }

    /// The region cache.
    pub fn regions(&self) -> &RegionCache {
        &self.regions
    }

    /// The leader cache.
    pub fn leaders(&self) -> &LeaderCache {
        &self.leaders
    }

    /// Believes store `store_id` leads `region_id` (what a region lookup
    /// said), until an answer says otherwise.
    pub fn set_leader(&mut self, region_id: u64, store_id: u64) {
        self.leaders.set(region_id, store_id);
    }

    /// Forgets the leader of `region_id` (after a timeout or an
    /// unreachable store).
    pub fn forget_leader(&mut self, region_id: u64) {
        self.leaders.forget(region_id);
    }

    /// See [`route`].
    ///
    /// # Errors
    ///
    /// See [`RouteError`].
    pub fn route(
        &mut self,
        key: &[u8],
        pick: impl FnOnce(usize) -> usize,
    ) -> Result<Route, RouteError> {
        route(&self.regions, &mut self.leaders, key, pick)
    }

    /// The region cache and the leader cache, taken apart.
    pub fn into_parts(self) -> (RegionCache, LeaderCache) {
        (self.regions, self.leaders)
    }

    /// See [`route_any_peer`].
    pub fn route_any_peer(
        &self,
        key: &[u8],
        pick: impl FnOnce(usize) -> usize,
    ) -> Result<Route, RouteError> {
        route_any_peer(&self.regions, key, pick)
    }

    /// See [`learn`].
    pub fn learn(&mut self, route: &Route, resp: &RaftCmdResponse) -> Verdict {
        learn(&mut self.regions, &mut self.leaders, route, resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvproto_lite::metapb::Region;

    fn region(id: u64, start: &[u8], end: &[u8], version: u64, stores: &[u64]) -> Region {
        let mut r = Region::default();
        r.set_id(id);
        r.set_start_key(start.to_vec());
        r.set_end_key(end.to_vec());
        r.mut_region_epoch().set_version(version);
        for &s in stores {
            let mut p = Peer::default();
            p.set_id(id * 10 + s);
            p.set_store_id(s);
            r.mut_peers().push(p);
        }
        r
    }

    fn error(err: errorpb::Error) -> RaftCmdResponse {
        util::error_response(err, 1)
    }

    fn routing() -> Routing {
        Routing::new(RegionCache::new(vec![region(1, b"", b"", 1, &[1, 2, 3])]))
    }

    #[test]
    fn without_a_leader_the_pick_chooses_the_peer() {
        let mut r = routing();
        assert_eq!(r.route(b"k", |n| 4 % n).unwrap().store_id(), 2);
        assert_eq!(r.route(b"k", |_| 2).unwrap().store_id(), 3);
    }

    #[test]
    fn success_and_hints_set_the_leader_other_errors_forget_it() {
        let mut r = routing();
        let to2 = r.route(b"k", |_| 1).unwrap();
        assert_eq!(
            r.learn(&to2, &RaftCmdResponse::default()),
            Verdict::Succeeded
        );
        assert_eq!(r.leaders().get(1), Some(2));
        // Routed to the leader now, whatever the pick says.
        assert_eq!(r.route(b"k", |_| 0).unwrap().store_id(), 2);
        let mut leader = Peer::default();
        leader.set_id(13);
        leader.set_store_id(3);
        let hinted = error(util::new_not_leader(1, Some(leader)));
        assert_eq!(r.learn(&to2, &hinted), Verdict::Error(ErrorClass::RetryNow));
        assert_eq!(r.leaders().get(1), Some(3));
        let busy = error(util::new_server_is_busy("full"));
        assert_eq!(r.learn(&to2, &busy), Verdict::Error(ErrorClass::RetryLater));
        assert_eq!(r.leaders().get(1), None);
        r.leaders.set(1, 3);
        let unknown = error(util::new_error("dropped"));
        assert_eq!(r.learn(&to2, &unknown), Verdict::Error(ErrorClass::Unknown));
        assert_eq!(r.leaders().get(1), None);
    }

    #[test]
    fn epoch_not_match_refreshes_the_regions() {
        let mut r = routing();
        let route = r.route(b"z", |_| 0).unwrap();
        let left = region(1, b"", b"m", 2, &[1, 2, 3]);
        let right = region(9, b"m", b"", 2, &[1, 2, 3]);
        let resp = error(util::new_epoch_not_match("split", vec![left, right]));
        assert_eq!(r.learn(&route, &resp), Verdict::Error(ErrorClass::RetryNow));
        let again = r.route(b"z", |_| 0).unwrap();
        assert_eq!((again.region_id(), again.epoch().get_version()), (9, 2));
    }

    #[test]
    fn a_hinted_store_without_a_peer_is_forgotten() {
        let mut r = routing();
        r.leaders.set(1, 7);
        assert_eq!(
            r.route(b"k", |_| 0),
            Err(RouteError::NoPeerOnStore {
                region_id: 1,
                store_id: 7
            })
        );
        assert_eq!(r.route(b"k", |_| 0).unwrap().store_id(), 1);
    }

    #[test]
    fn the_command_carries_the_route() {
        let mut r = routing();
        let route = r.route(b"k", |_| 2).unwrap();
        let cmd = route.command(Request::default());
        let h = cmd.get_header();
        assert_eq!((h.get_region_id(), h.get_peer().get_store_id()), (1, 3));
        assert_eq!(h.get_region_epoch().get_version(), 1);
        assert_eq!(cmd.get_requests().len(), 1);
        assert_eq!(cmd, {
            let mut c = util::new_cmd_request(&r.regions().regions()[0], route.peer().clone());
            c.mut_requests().push(Request::default());
            c
        });
    }
}
