//! How the apply system reports progress to raftstore.

use crate::ApplyRes;

/// Receives every poll round's results, once per round, after the round's
/// KV write succeeded and its callbacks ran. Implemented by raftstore (which
/// routes each [`ApplyRes`] to its peer); the apply crate never depends on
/// raftstore.
///
/// A `std::sync::mpsc::Sender<Vec<ApplyRes>>` is a notifier, handy in tests.
///
/// # Examples
///
/// ```
/// use apply::{ApplyNotifier, ApplyRes};
///
/// #[derive(Clone)]
/// struct Printer;
/// impl ApplyNotifier for Printer {
///     fn notify(&self, results: Vec<ApplyRes>) {
///         for res in results {
///             println!("region {} applied to {}", res.region_id, res.apply_state.get_applied_index());
///         }
///     }
/// }
/// Printer.notify(Vec::new());
/// ```
pub trait ApplyNotifier: Clone + Send + 'static {
    /// Takes the results of one round (never empty when called by the poller).
    fn notify(&self, results: Vec<ApplyRes>);
}

impl ApplyNotifier for std::sync::mpsc::Sender<Vec<ApplyRes>> {
    fn notify(&self, results: Vec<ApplyRes>) {
        // A receiver that hung up does not want results any more.
        let _ = self.send(results);
    }
}
