//! [`AddressBook`]: where each store of the cluster listens.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use kvproto_lite::metapb;

use crate::{Error, Result};

/// The address (`host:port`) of every store of the cluster, by store id.
///
/// Shared by the transport (which store to dial) and the KV service (what
/// `GetStores` answers). Cloning gives another handle to the same book;
/// [`AddressBook::insert`] is how a store that joins later becomes
/// reachable.
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
#[derive(Clone, Debug, Default)]
pub struct AddressBook {
    inner: Arc<RwLock<BTreeMap<u64, String>>>,
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
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(&id, addr)| {
                let mut s = metapb::Store::default();
                s.set_id(id);
                s.set_address(addr.clone());
                s
            })
            .collect()
    }
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
    fn a_refused_insert_changes_nothing() {
        let book = AddressBook::new([(1, "a:1".to_owned())]).unwrap();
        assert!(book.insert(1, "nope".to_owned()).is_err());
        assert_eq!(book.get(1).as_deref(), Some("a:1"));
        assert_eq!(book.stores().len(), 1);
    }
}
