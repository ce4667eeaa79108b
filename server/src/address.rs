//! [`AddressBook`]: where each store of the cluster listens.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use kvproto_lite::metapb;

use crate::{Error, Result};

/// The address (`host:port`) of every store of the cluster, by store id.
///
/// Shared by the transport (which store to dial) and the KV service (what
/// `GetStores` answers). Cloning gives another handle to the same book;
/// [`AddressBook::register`] is how a store that joins later becomes
/// reachable: it refuses a known id at another address and hands every
/// change to the book's persister (if one is set) before it takes effect.
///
/// # Examples
///
/// ```
/// let book = server::AddressBook::new([(1, "127.0.0.1:20161".to_owned())]).unwrap();
/// assert_eq!(book.get(1).as_deref(), Some("127.0.0.1:20161"));
/// assert!(book.get(2).is_none());
/// assert!(book.contains(1) && !book.contains(2));
/// assert!(server::AddressBook::new([(2, "no-port".to_owned())]).is_err());
/// ```
#[derive(Clone, Default)]
pub struct AddressBook {
    inner: Arc<RwLock<BTreeMap<u64, String>>>,
    persister: Arc<RwLock<Option<Persister>>>,
}

/// Saves the whole book (every store, by id) durably; an `Err` says why it
/// could not.
pub type Persister = Arc<dyn Fn(&[metapb::Store]) -> std::result::Result<(), String> + Send + Sync>;

impl std::fmt::Debug for AddressBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressBook")
            .field(
                "stores",
                &*self.inner.read().unwrap_or_else(|e| e.into_inner()),
            )
            .finish_non_exhaustive()
    }
}

impl AddressBook {
    /// A book holding `stores`.
    ///
    /// # Errors
    ///
    /// [`Error::BadAddress`] for a store id of 0 or an address that is not
    /// `host:port`.
    pub fn new(stores: impl IntoIterator<Item = (u64, String)>) -> Result<AddressBook> {
        let book = AddressBook::default();
        for (id, addr) in stores {
            book.insert(id, addr)?;
        }
        Ok(book)
    }

    /// Adds or replaces the address of `store_id`.
    ///
    /// # Errors
    ///
    /// As [`AddressBook::new`]; the book is unchanged then.
    pub fn insert(&self, store_id: u64, address: String) -> Result<()> {
        check_address(store_id, &address)?;
        self.inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(store_id, address);
        Ok(())
    }

    /// Makes [`AddressBook::register`] save the book with `persister`
    /// before a new store takes effect.
    pub fn set_persister(&self, persister: Persister) {
        *self.persister.write().unwrap_or_else(|e| e.into_inner()) = Some(persister);
    }

    /// Registers store `store_id` at `address` (a store joining the
    /// cluster): `Ok(true)` when it is new (saved by the persister, if any,
    /// before it is visible), `Ok(false)` when the book already has it at
    /// that address (a repeated registration).
    ///
    /// # Errors
    ///
    /// [`Error::StoreExists`] when the book has `store_id` at another
    /// address; [`Error::BadAddress`] as [`AddressBook::new`];
    /// [`Error::Persist`] when saving failed. The book is unchanged then.
    pub fn register(&self, store_id: u64, address: String) -> Result<bool> {
        check_address(store_id, &address)?;
        let persister = self
            .persister
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut book = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match book.get(&store_id) {
            Some(known) if *known == address => return Ok(false),
            Some(known) => {
                return Err(Error::StoreExists {
                    store_id,
                    known: known.clone(),
                    given: address,
                })
            }
            None => {}
        }
        if let Some(save) = persister {
            let mut next = book.clone();
            next.insert(store_id, address.clone());
            save(&to_stores(&next)).map_err(Error::Persist)?;
        }
        book.insert(store_id, address);
        Ok(true)
    }

    /// The address of `store_id`, if known.
    pub fn get(&self, store_id: u64) -> Option<String> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&store_id)
            .cloned()
    }

    /// Whether `store_id` has an address.
    pub fn contains(&self, store_id: u64) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&store_id)
    }

    /// Every store, by id.
    pub fn stores(&self) -> Vec<metapb::Store> {
        to_stores(&self.inner.read().unwrap_or_else(|e| e.into_inner()))
    }
}

fn to_stores(book: &BTreeMap<u64, String>) -> Vec<metapb::Store> {
    book.iter()
        .map(|(&id, addr)| {
            let mut s = metapb::Store::default();
            s.set_id(id);
            s.set_address(addr.clone());
            s
        })
        .collect()
}

/// Accepts `host:port` with a non-empty host and a port in 1..=65535.
fn check_address(store_id: u64, address: &str) -> Result<()> {
    let bad = |reason: &str| Error::BadAddress {
        store_id,
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    if store_id == 0 {
        return Err(bad("store id 0 is not valid"));
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(bad("expected host:port"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad("the port must be a number in 1..=65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_be_host_and_port() {
        for ok in ["127.0.0.1:1", "localhost:20161", "[::1]:20161"] {
            assert!(check_address(1, ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1",
            ":20161",
            "h:0",
            "h:70000",
            "http://h:1",
            "h:x",
        ] {
            assert!(check_address(1, bad).is_err(), "{bad}");
        }
        assert!(check_address(0, "h:1").is_err());
    }

    #[test]
    fn registration_refuses_a_known_id_at_another_address() {
        let book = AddressBook::new([(1, "a:1".to_owned())]).unwrap();
        let saved = Arc::new(RwLock::new(Vec::new()));
        let s = saved.clone();
        book.set_persister(Arc::new(move |stores| {
            *s.write().unwrap() = stores.iter().map(|st| st.get_id()).collect();
            Ok(())
        }));
        assert!(book.register(2, "b:2".to_owned()).unwrap());
        assert_eq!(*saved.read().unwrap(), vec![1, 2]);
        assert!(
            !book.register(2, "b:2".to_owned()).unwrap(),
            "a repeat is fine"
        );
        let err = book.register(1, "x:9".to_owned()).unwrap_err().to_string();
        assert!(err.contains("store 1 is already a member"), "{err}");
        assert_eq!(book.get(1).as_deref(), Some("a:1"));
    }

    #[test]
    fn a_store_that_cannot_be_saved_is_not_registered() {
        let book = AddressBook::new([(1, "a:1".to_owned())]).unwrap();
        book.set_persister(Arc::new(|_: &[metapb::Store]| Err("disk full".to_owned())));
        let err = book.register(2, "b:2".to_owned()).unwrap_err().to_string();
        assert!(err.contains("disk full"), "{err}");
        assert!(!book.contains(2));
    }

    #[test]
    fn a_refused_insert_changes_nothing() {
        let book = AddressBook::new([(1, "a:1".to_owned())]).unwrap();
        assert!(book.insert(1, "nope".to_owned()).is_err());
        assert_eq!(book.get(1).as_deref(), Some("a:1"));
        assert_eq!(book.stores().len(), 1);
    }
}
