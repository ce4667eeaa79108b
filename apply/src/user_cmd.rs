//! User commands: application-defined deterministic operations on a
//! region's keys, run by apply like a Put.
//!
//! An application registers a [`CommandHandler`] under a name in a
//! [`CommandHandlers`] table and gives the table to the apply system
//! ([`ApplyBatchSystem::set_command_handlers`](crate::ApplyBatchSystem::set_command_handlers))
//! before it starts. A `User` request carries the handler's name and
//! opaque input bytes; when its entry is applied, the handler runs with a
//! [`KeyAccess`] that reads and writes keys of the region through the
//! round's write batch (so its writes are atomic with the entry's applied
//! index) and returns output bytes.
//!
//! The contract, as for any replicated state machine:
//!
//! - **Deterministic**: the output and the writes depend only on the input
//!   and the keys read, never on a clock, a random number, a thread or a
//!   map's iteration order. Every replica runs the handler on the same
//!   entries and must end in the same state.
//! - **Errors are values**: a handler returns `Err(message)`; the writes it
//!   made are rolled back, the entry still counts as applied, and the
//!   client receives a `UserResponse` with `failed` set. A handler must
//!   not panic.
//! - **The same handlers on every store**, under the same names: a name
//!   with no handler is answered `failed` ("no handler"), which is only
//!   deterministic if every replica lacks it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use kvproto_lite::metapb::Region;
use kvproto_lite::util;

use crate::session::is_reserved_key;

/// Reads and writes of the keys a user command may touch: the keys of its
/// region, read as of the command's position in the log.
pub trait KeyStore {
    /// The value of `key` (the round's earlier writes included).
    ///
    /// # Errors
    ///
    /// An engine read failure, as text.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// Stages a write of `value` under `key` in the round's write batch.
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);
    /// Stages a removal of `key` in the round's write batch.
    fn delete(&mut self, key: Vec<u8>);
}

/// What a [`CommandHandler`] may do: read and write keys of its region.
/// Keys outside the region, and keys reserved for the store's own records,
/// are refused with an error value.
pub struct KeyAccess<'a> {
    store: &'a mut dyn KeyStore,
    region: &'a Region,
}

impl fmt::Debug for KeyAccess<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAccess")
            .field("region_id", &self.region.get_id())
            .finish()
    }
}

impl<'a> KeyAccess<'a> {
    /// Access to the keys of `region` through `store`.
    pub fn new(store: &'a mut dyn KeyStore, region: &'a Region) -> KeyAccess<'a> {
        KeyAccess { store, region }
    }

    /// The region the command runs in.
    pub fn region(&self) -> &Region {
        self.region
    }

    fn check(&self, key: &[u8]) -> Result<(), String> {
        if !util::is_key_in_region(key, self.region) {
            return Err(format!(
                "key {} is outside region {}",
                key.escape_ascii(),
                self.region.get_id()
            ));
        }
        if is_reserved_key(key) {
            return Err(format!(
                "key {} is reserved for session records",
                key.escape_ascii()
            ));
        }
        Ok(())
    }

    /// The current value of `key`.
    ///
    /// # Errors
    ///
    /// The key is outside the region or reserved; the engine read failed.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.check(key)?;
        self.store.get(key)
    }

    /// Writes `value` under `key`.
    ///
    /// # Errors
    ///
    /// The key is outside the region or reserved.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.check(key)?;
        self.store.put(key.to_vec(), value.to_vec());
        Ok(())
    }

    /// Removes `key`.
    ///
    /// # Errors
    ///
    /// The key is outside the region or reserved.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), String> {
        self.check(key)?;
        self.store.delete(key.to_vec());
        Ok(())
    }
}

/// A deterministic command an application runs against a region's keys
/// (see the module docs for the contract).
pub trait CommandHandler: Send + Sync {
    /// Runs the command with `input`; returns its output, or an error
    /// message (its writes are then rolled back).
    ///
    /// # Errors
    ///
    /// Whatever the handler decides; returned to the client as a value.
    fn handle(&self, keys: &mut KeyAccess<'_>, input: &[u8]) -> Result<Vec<u8>, String>;
}

impl<F> CommandHandler for F
where
    F: Fn(&mut KeyAccess<'_>, &[u8]) -> Result<Vec<u8>, String> + Send + Sync,
{
    fn handle(&self, keys: &mut KeyAccess<'_>, input: &[u8]) -> Result<Vec<u8>, String> {
        self(keys, input)
    }
}

/// The table of registered user command handlers, by name. Cheap to clone
/// (shared).
///
/// # Examples
///
/// ```
/// use apply::{CommandHandlers, KeyAccess};
///
/// let mut handlers = CommandHandlers::default();
/// handlers.register("echo", |_: &mut KeyAccess<'_>, input: &[u8]| Ok(input.to_vec()));
/// assert!(handlers.get("echo").is_some());
/// assert!(handlers.get("other").is_none());
/// ```
#[derive(Clone, Default)]
pub struct CommandHandlers {
    handlers: Arc<HashMap<String, Arc<dyn CommandHandler>>>,
}

impl fmt::Debug for CommandHandlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.handlers.keys().collect();
        names.sort();
        f.debug_struct("CommandHandlers")
            .field("names", &names)
            .finish()
    }
}

impl CommandHandlers {
    /// Registers `handler` under `name`, replacing an earlier one.
    pub fn register(&mut self, name: impl Into<String>, handler: impl CommandHandler + 'static) {
        Arc::make_mut(&mut self.handlers).insert(name.into(), Arc::new(handler));
    }

    /// The handler registered under `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn CommandHandler>> {
        self.handlers.get(name)
    }
}
