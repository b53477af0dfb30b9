//! Single-flight: concurrent misses on one key share one loader run.
//!
//! The loader runs in its own task, so it finishes (and fills the cache) even if
//! every caller that was waiting on it gives up.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};

use crate::error::{CacheError, Result};

type Flight = Shared<BoxFuture<'static, Result<Bytes>>>;
/// (namespace id, key) → (flight id, flight).
type FlightMap = HashMap<(u32, Box<str>), (u64, Flight)>;

/// In-flight loads keyed by (namespace id, key).
#[derive(Default)]
pub(crate) struct Flights {
    // Held only to look up or insert, never across an await.
    map: Mutex<FlightMap>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Flights {
    /// Joins the flight for `key`, or starts one with `start` (which must spawn the work).
    /// Returns the shared result and whether this caller joined an existing flight.
    pub(crate) fn join_or_start(
        &self,
        ns: u32,
        key: &str,
        start: impl FnOnce(u64) -> BoxFuture<'static, Result<Bytes>>,
    ) -> (Flight, bool) {
        let mut map = self.map.lock().expect("flights lock");
        if let Some((_, f)) = map.get(&(ns, Box::from(key))) {
            return (f.clone(), true);
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let f = start(id).shared();
        map.insert((ns, key.into()), (id, f.clone()));
        (f, false)
    }

    /// Removes the flight `id` for `key` once it has finished.
    pub(crate) fn finish(&self, ns: u32, key: &str, id: u64) {
        let mut map = self.map.lock().expect("flights lock");
        if map
            .get(&(ns, Box::from(key)))
            .is_some_and(|(i, _)| *i == id)
        {
            map.remove(&(ns, Box::from(key)));
        }
    }
}

/// Maps a join error of the loader task.
pub(crate) fn join_error(e: tokio::task::JoinError) -> CacheError {
    CacheError::Loader(std::sync::Arc::new(std::io::Error::other(format!(
        "loader task failed: {e}"
    ))))
}
