//! Growing a running cluster: a node started with `--join ADDR` registers
//! its store with the cluster, and replicas move onto it.
//!
//! ```text
//! new node (empty data dir)                 running store at ADDR
//!   GetStores ------------------------------> the stores and their addresses,
//!                                             the cluster id
//!   (its store id already listed: refuse to start, nothing written)
//!   AddStore(id, listen address) -----------> added to its address book,
//!                                             saved in its data dir
//!   write cluster.toml (joined = true) and stores.toml; start the store
//!   AddStore to every other known store (in the background, retried)
//!   balancer: until the new store holds its fair share of replicas,
//!   move one replica at a time onto it (conf change + snapshot)
//! ```
//!
//! **Address book.** Each node keeps its book in `stores.toml` in its data
//! dir (`AddressBook::register` saves before a store takes effect), so a
//! restart knows every store it ever learned of. Every node also asks the
//! stores it knows for their books every [`SYNC_INTERVAL`] and registers
//! the stores it did not know: a node that was down while another joined
//! learns of it when it comes back.
//!
//! **Placement policy** ([`plan_move`]), deterministic given the regions'
//! layout: the new store's fair share is ⌊replicas / stores⌋ (every peer of
//! every region counts, the stores being those of the address book). While
//! the new store holds fewer, one replica moves to it: from the store
//! holding the most replicas (ties: the lowest store id), of that store's
//! regions without a peer on the new store the one with the lowest id. If
//! the source store leads that region, leadership is handed to the
//! region's first other voter first (a leader cannot remove itself). The
//! move is `client::Membership::move_replica`: a learner on the new store
//! (filled by a snapshot), then one joint change promoting it and demoting
//! the old replica, then the old replica's removal; each step keeps a
//! quorum.
//!
//! **Peer ids** of moved replicas are `2^62 + store id * 2^32 + region
//! id` ([`joined_peer_id`]): unique as long as no store joins twice (a
//! store id already in the cluster is refused) and region ids stay below
//! 2^32; the initial layout numbers its peers from 2 upward and nothing
//! else allocates peer ids.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::grpc::{GrpcBackend, GrpcOptions};
use client::{Backend, Membership};
use kvproto_lite::grpc::KvClient;
use kvproto_lite::kvrpcpb::{AddStoreRequest, GetStoresRequest, RegionInfo};
use kvproto_lite::metapb::{PeerRole, Region};
use kvproto_lite::raft_cmdpb::AdminCmdType;
use kvproto_lite::util;
use server::AddressBook;
use slog::{info, warn, Logger};
use tonic::transport::{Channel, Endpoint};

use crate::{Error, Result};

/// How often a node asks the stores it knows for their address books.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// How long one request to another store may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(3);

/// What a running store says about its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The cluster's id.
    pub cluster_id: u64,
    /// Every store it knows, by id, with its address.
    pub stores: BTreeMap<u64, String>,
}

fn kv_client(addr: &str) -> Result<KvClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::Join(format!("bad address {addr:?}: {e}")))?
        .connect_timeout(RPC_TIMEOUT)
        .connect_lazy();
    Ok(KvClient::new(channel))
}

/// Asks the store at `addr` for its cluster's id and stores.
///
/// # Errors
///
/// [`Error::Join`] when it does not answer in time.
pub async fn cluster_view(addr: &str) -> Result<ClusterView> {
    let mut client = kv_client(addr)?;
    let resp = tokio::time::timeout(RPC_TIMEOUT, client.get_stores(GetStoresRequest::default()))
        .await
        .map_err(|_| Error::Join(format!("{addr} did not answer within {RPC_TIMEOUT:?}")))?
        .map_err(|s| Error::Join(format!("{addr}: {}", s.message())))?
        .into_inner();
    Ok(ClusterView {
        cluster_id: resp.get_cluster_id(),
        stores: resp
            .get_stores()
            .iter()
            .map(|s| (s.get_id(), s.get_address().to_owned()))
            .collect(),
    })
}

/// Registers store `store_id` at `address` with the store at `addr`
/// (`Kv.AddStore`).
///
/// # Errors
///
/// [`Error::Join`] with the store's refusal (the id is taken by another
/// address) or when it does not answer.
pub async fn register(addr: &str, store_id: u64, address: &str) -> Result<()> {
    let mut client = kv_client(addr)?;
    let mut req = AddStoreRequest::default();
    req.mut_store().set_id(store_id);
    req.mut_store().set_address(address.to_owned());
    let resp = tokio::time::timeout(RPC_TIMEOUT, client.add_store(req))
        .await
        .map_err(|_| Error::Join(format!("{addr} did not answer within {RPC_TIMEOUT:?}")))?
        .map_err(|s| Error::Join(format!("{addr}: {}", s.message())))?
        .into_inner();
    if resp.has_error() {
        return Err(Error::Join(format!(
            "{addr} refused store {store_id}: {}",
            resp.get_error().get_message()
        )));
    }
    Ok(())
}

/// The first join step: learns the cluster from `entry` and registers
/// store `store_id` at `address` there.
///
/// # Errors
///
/// [`Error::Join`] when `store_id` is already a member of the cluster (at
/// any address but `address`, which is a repeated join), when `entry` does
/// not answer, or refuses.
pub async fn join(entry: &str, store_id: u64, address: &str) -> Result<ClusterView> {
    let mut view = cluster_view(entry).await?;
    if let Some(known) = view.stores.get(&store_id) {
        if known != address {
            return Err(Error::Join(format!(
                "store {store_id} is already a member of the cluster (at {known}); a joining node \
                 needs a store id the cluster does not use"
            )));
        }
    }
    register(entry, store_id, address).await?;
    view.stores.insert(store_id, address.to_owned());
    Ok(view)
}

/// Keeps `book` in step with the books of the stores it lists: every
/// [`SYNC_INTERVAL`], asks each other store for its stores and registers
/// those `book` lacks. Runs until the runtime stops.
pub async fn sync_addresses(store_id: u64, book: AddressBook, logger: Logger) {
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    let mut clients: BTreeMap<u64, KvClient<Channel>> = BTreeMap::new();
    loop {
        tick.tick().await;
        for peer in book.stores() {
            if peer.get_id() == store_id {
                continue;
            }
            let client = match clients.get_mut(&peer.get_id()) {
                Some(c) => c,
                None => match kv_client(peer.get_address()) {
                    Ok(c) => clients.entry(peer.get_id()).or_insert(c),
                    Err(_) => continue,
                },
            };
            let answer =
                tokio::time::timeout(RPC_TIMEOUT, client.get_stores(GetStoresRequest::default()))
                    .await;
            let Ok(Ok(resp)) = answer else { continue };
            for s in resp.get_ref().get_stores() {
                if book.contains(s.get_id()) {
                    continue;
                }
                let (id, addr) = (s.get_id(), s.get_address().to_owned());
                let book = book.clone();
                let saved = tokio::task::spawn_blocking(move || book.register(id, addr)).await;
                match saved {
                    Ok(Ok(true)) => info!(logger, "learned of a store"; "store" => s.get_id(),
                                          "address" => s.get_address(), "from" => peer.get_id()),
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => warn!(logger, "cannot add a store to the address book";
                                        "store" => s.get_id(), "error" => %e),
                    Err(e) => warn!(logger, "address book update did not finish"; "error" => %e),
                }
            }
        }
    }
}

/// A region's epoch as an ordered pair (version, conf_ver).
fn epoch_of(region: &Region) -> (u64, u64) {
    let e = region.get_region_epoch();
    (e.get_version(), e.get_conf_ver())
}

/// The id of the replica of region `region_id` moved onto store
/// `store_id` by a join (see the module docs); `None` when the ids are too
/// large for the scheme.
pub fn joined_peer_id(store_id: u64, region_id: u64) -> Option<u64> {
    if store_id >= 1 << 30 || region_id >= 1 << 32 {
        return None;
    }
    Some((1 << 62) | (store_id << 32) | region_id)
}

/// One replica to move onto the joining store.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// The region, as the cluster reports it.
    pub region: Region,
    /// The store giving up its replica.
    pub from_store: u64,
    /// When the source store leads the region: the store to hand
    /// leadership to first.
    pub transfer_to: Option<u64>,
}

/// The next replica to move onto `new_store` by the policy of the module
/// docs, given every region (with its leader) and the cluster's stores;
/// `None` once `new_store` holds its fair share, or when nothing can move.
pub fn plan_move(regions: &[RegionInfo], stores: &[u64], new_store: u64) -> Option<Move> {
    if stores.is_empty() {
        return None;
    }
    let mut held: BTreeMap<u64, usize> = stores.iter().map(|&s| (s, 0)).collect();
    let mut total = 0;
    for info in regions {
        for p in info.get_region().get_peers() {
            total += 1;
            *held.entry(p.get_store_id()).or_default() += 1;
        }
    }
    let fair = total / stores.len();
    if held.get(&new_store).copied().unwrap_or(0) >= fair {
        return None;
    }
    // Sources by most replicas, then lowest id.
    let mut sources: Vec<(u64, usize)> = held
        .iter()
        .filter(|(&s, _)| s != new_store)
        .map(|(&s, &n)| (s, n))
        .collect();
    sources.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut candidates: Vec<&RegionInfo> = regions.iter().collect();
    candidates.sort_by_key(|i| i.get_region().get_id());
    for (source, _) in sources {
        for info in &candidates {
            let region = info.get_region();
            let settled = region
                .get_peers()
                .iter()
                .all(|p| p.get_role() == PeerRole::Voter);
            if !settled
                || util::find_peer(region, new_store).is_some()
                || util::find_peer(region, source).is_none()
            {
                continue;
            }
            let led_by_source = info.has_leader() && info.get_leader().get_store_id() == source;
            let transfer_to = if led_by_source {
                match region
                    .get_peers()
                    .iter()
                    .find(|p| p.get_store_id() != source)
                {
                    Some(p) => Some(p.get_store_id()),
                    None => continue,
                }
            } else {
                None
            };
            return Some(Move {
                region: region.clone(),
                from_store: source,
                transfer_to,
            });
        }
    }
    None
}

/// Moves replicas onto the joining store until it holds its fair share (see
/// the module docs), one at a time, on its own thread. Stops early when
/// `stop` is set.
pub struct Balancer {
    store_id: u64,
    backend: GrpcBackend,
    book: AddressBook,
    stop: Arc<AtomicBool>,
    logger: Logger,
}

impl Balancer {
    /// A balancer moving replicas onto `store_id`, reaching the stores of
    /// `book` through `backend`.
    pub fn new(
        store_id: u64,
        backend: GrpcBackend,
        book: AddressBook,
        stop: Arc<AtomicBool>,
        logger: Logger,
    ) -> Balancer {
        Balancer {
            store_id,
            backend,
            book,
            stop,
            logger,
        }
    }

    /// Connects a backend to the stores of `book` (inside `handle`'s
    /// runtime).
    ///
    /// # Errors
    ///
    /// [`Error::Join`] when no store answers.
    pub fn backend(handle: &tokio::runtime::Handle, book: &AddressBook) -> Result<GrpcBackend> {
        let endpoints: Vec<String> = book
            .stores()
            .iter()
            .map(|s| s.get_address().to_owned())
            .collect();
        let opts = GrpcOptions {
            connect_timeout: RPC_TIMEOUT,
            ..GrpcOptions::default()
        };
        handle
            .block_on(GrpcBackend::connect(&endpoints, opts))
            .map_err(|e| Error::Join(e.to_string()))
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Registers the store with every store of the book, then moves
    /// replicas until the store holds its fair share. Failed steps are
    /// retried (planned again from the cluster's current layout).
    pub fn run(self, handle: tokio::runtime::Handle, address: String) {
        self.register_everywhere(&handle, &address);
        let mut backoff = Duration::from_millis(100);
        let mut moved = 0;
        // The regions as this balancer's own changes left them: a listing
        // in which the store that applied a change did not answer in time
        // would show an older layout, and plan from stale counts.
        let mut changed: BTreeMap<u64, Region> = BTreeMap::new();
        while !self.stopped() {
            let regions = match handle.block_on(self.backend.list_regions(RPC_TIMEOUT)) {
                Ok(mut r) => {
                    for info in &mut r {
                        if let Some(newer) = changed.get(&info.get_region().get_id()) {
                            if epoch_of(newer) > epoch_of(info.get_region()) {
                                info.set_region(newer.clone());
                            }
                        }
                    }
                    r
                }
                Err(e) => {
                    warn!(self.logger, "cannot list the regions"; "error" => %e);
                    self.sleep(&mut backoff);
                    continue;
                }
            };
            let _ = handle.block_on(self.backend.refresh_stores());
            let stores: Vec<u64> = self.book.stores().iter().map(|s| s.get_id()).collect();
            let Some(m) = plan_move(&regions, &stores, self.store_id) else {
                info!(self.logger, "holds its share of the replicas"; "moved" => moved);
                return;
            };
            match self.execute(&m, &handle) {
                Ok(region) => {
                    changed.insert(region.get_id(), region);
                    moved += 1;
                    backoff = Duration::from_millis(100);
                    info!(self.logger, "moved a replica onto this store";
                          "region_id" => m.region.get_id(), "from_store" => m.from_store);
                }
                Err(e) => {
                    warn!(self.logger, "moving a replica failed; planning again";
                          "region_id" => m.region.get_id(), "from_store" => m.from_store,
                          "error" => %e);
                    self.sleep(&mut backoff);
                }
            }
        }
    }

    fn sleep(&self, backoff: &mut Duration) {
        std::thread::sleep(*backoff);
        *backoff = (*backoff * 2).min(Duration::from_secs(2));
    }

    /// `AddStore` with every store of the book but this one, each tried a
    /// few times: a store that is down now learns of this one from the
    /// others' books when it comes back (see [`sync_addresses`]).
    fn register_everywhere(&self, handle: &tokio::runtime::Handle, address: &str) {
        for store in self.book.stores() {
            if store.get_id() == self.store_id {
                continue;
            }
            let mut backoff = Duration::from_millis(100);
            for attempt in 1..=3 {
                if self.stopped() {
                    return;
                }
                match handle.block_on(register(store.get_address(), self.store_id, address)) {
                    Ok(()) => break,
                    Err(e) if attempt == 3 => {
                        warn!(self.logger, "could not register with a store; it will learn of this one from the others";
                              "store" => store.get_id(), "error" => %e);
                    }
                    Err(_) => self.sleep(&mut backoff),
                }
            }
        }
    }

    /// Carries out `m`; the region after the move.
    fn execute(&self, m: &Move, handle: &tokio::runtime::Handle) -> Result<Region> {
        let region_id = m.region.get_id();
        let peer_id = joined_peer_id(self.store_id, region_id).ok_or_else(|| {
            Error::Join(format!(
                "no peer id for region {region_id} on store {}",
                self.store_id
            ))
        })?;
        move_replica(
            &self.backend,
            handle,
            &m.region,
            m.from_store,
            self.store_id,
            peer_id,
            m.transfer_to,
        )
    }
}

/// Moves the replica of `region` on `from_store` to `to_store`, as the new
/// peer `peer_id` (an id never used in the cluster): when `transfer_to` is
/// given (`from_store` leads the region), leadership is first handed to
/// that store's peer and the move waits until the stores report another
/// leader; then `client::Membership::move_replica` (learner, joint change,
/// removal). Blocking: call it from a thread outside `handle`'s runtime,
/// while that runtime is running.
///
/// # Errors
///
/// [`Error::Join`] with the refusal or timeout of a step; each step is
/// planned from the region as its leader reports it, so calling again
/// continues where it stopped.
pub fn move_replica(
    backend: &GrpcBackend,
    handle: &tokio::runtime::Handle,
    region: &Region,
    from_store: u64,
    to_store: u64,
    peer_id: u64,
    transfer_to: Option<u64>,
) -> Result<Region> {
    let region_id = region.get_id();
    if let Some(to) = transfer_to {
        transfer_leader(backend, region, from_store, to)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let regions = handle
                .block_on(backend.list_regions(RPC_TIMEOUT))
                .map_err(|e| Error::Join(e.to_string()))?;
            let moved = regions
                .iter()
                .find(|i| i.get_region().get_id() == region_id)
                .map(|i| i.has_leader() && i.get_leader().get_store_id() != from_store);
            if moved == Some(true) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Join(format!(
                    "leadership of region {region_id} did not leave store {from_store}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let membership = Membership::new(backend, RPC_TIMEOUT, Duration::from_secs(60));
    membership
        .move_replica(region, from_store, to_store, peer_id)
        .map_err(|e| Error::Join(e.to_string()))
}

/// Asks `from_store`'s peer (the leader) to hand leadership of `region` to
/// the peer on `to_store`.
fn transfer_leader(
    backend: &GrpcBackend,
    region: &Region,
    from_store: u64,
    to_store: u64,
) -> Result<()> {
    let (Some(leader), Some(target)) = (
        util::find_peer(region, from_store),
        util::find_peer(region, to_store),
    ) else {
        return Err(Error::Join(format!(
            "region {} has no peer on store {from_store} or {to_store}",
            region.get_id()
        )));
    };
    let mut cmd = util::new_cmd_request(region, leader.clone());
    let admin = cmd.mut_admin_request();
    admin.set_cmd_type(AdminCmdType::TransferLeader);
    admin.mut_transfer_leader().set_peer(target.clone());
    let resp = backend
        .call(from_store, cmd, RPC_TIMEOUT)
        .map_err(|e| Error::Join(e.to_string()))?;
    if resp.get_header().has_error() {
        return Err(Error::Join(format!(
            "transfer of region {}'s leadership refused: {}",
            region.get_id(),
            resp.get_header().get_error().get_message()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvproto_lite::metapb::Peer;

    fn info(id: u64, stores: &[u64], leader: Option<u64>) -> RegionInfo {
        let mut i = RegionInfo::default();
        i.mut_region().set_id(id);
        for &s in stores {
            let mut p = Peer::default();
            p.set_id(id * 10 + s);
            p.set_store_id(s);
            i.mut_region().mut_peers().push(p.clone());
            if leader == Some(s) {
                i.set_leader(p);
            }
        }
        i
    }

    #[test]
    fn the_new_store_takes_replicas_until_it_holds_its_fair_share() {
        // 4 regions x 3 replicas on 3 stores; a 4th joins: fair share 3.
        let mut regions: Vec<RegionInfo> = (1..=4).map(|r| info(r, &[1, 2, 3], Some(2))).collect();
        let stores = [1, 2, 3, 4];
        let mut moves = Vec::new();
        while let Some(m) = plan_move(&regions, &stores, 4) {
            let r = m.region.get_id() as usize - 1;
            let peers: Vec<u64> = regions[r]
                .get_region()
                .get_peers()
                .iter()
                .map(|p| p.get_store_id())
                .filter(|&s| s != m.from_store)
                .chain([4])
                .collect();
            moves.push((m.region.get_id(), m.from_store, m.transfer_to));
            regions[r] = info(r as u64 + 1, &peers, Some(peers[0]));
            assert!(moves.len() <= 4, "{moves:?}");
        }
        // Each from the fullest store (lowest id on ties), lowest region
        // first; store 2 leads region 2, so leadership moves first.
        assert_eq!(moves, [(1, 1, None), (2, 2, Some(1)), (3, 3, None)]);
    }

    #[test]
    fn nothing_moves_when_the_store_has_its_share_or_regions_are_changing() {
        let regions = vec![info(1, &[1, 2, 4], None), info(2, &[1, 2, 3], None)];
        assert_eq!(plan_move(&regions, &[1, 2, 3, 4], 4), None);
        let mut joint = info(3, &[1, 2, 3], None);
        joint.mut_region().mut_peers()[0].set_role(PeerRole::Learner);
        assert_eq!(plan_move(&[joint], &[1, 2, 3, 4], 4), None);
        assert_eq!(plan_move(&[], &[], 4), None);
    }

    #[test]
    fn joined_peer_ids_are_distinct_and_above_the_initial_layout() {
        let a = joined_peer_id(4, 1).unwrap();
        let b = joined_peer_id(5, 1).unwrap();
        let c = joined_peer_id(4, 2).unwrap();
        assert!(a != b && a != c && b != c);
        assert!(a > 1 << 62);
        assert_eq!(joined_peer_id(1 << 30, 1), None);
        assert_eq!(joined_peer_id(4, 1 << 32), None);
    }
}
