//! Request coalescing: concurrent misses on one key make one origin request.
//!
//! The first request for a key becomes the leader and fetches; later ones wait for
//! its outcome. A stored response is handed to every waiter; anything else (not
//! storable, too large, an error, a leader whose client went away) tells waiters to
//! go to the origin themselves, as does a wait longer than the timeout.
//!
//! A key whose last fetch could not be stored (`private`, `no-store`, `Set-Cookie`,
//! over `max_object_size`…) is remembered for [`UNCACHEABLE_FOR`]: requests for it
//! then fetch side by side instead of queueing behind a leader whose response
//! they cannot use (Varnish's "hit-for-miss"). Without that, every burst of
//! requests for a hot uncacheable URL would wait one origin round trip for nothing
//! and then all go to the origin at once. A fetch that can store again ends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::entry::Entry;

/// What the leader's fetch produced.
#[derive(Clone)]
pub enum Outcome {
    /// A stored response waiters may use.
    Stored(Arc<Entry>),
    /// A stale stored response the leader served because the origin failed
    /// (stale-if-error); waiters may serve it the same way.
    Stale(Arc<Entry>),
    /// Nothing shareable: go to the origin.
    Pass,
}

type Slot = watch::Sender<Option<Outcome>>;

/// How long a key whose fetch could not be stored skips coalescing (Varnish's
/// built-in hit-for-miss time).
pub const UNCACHEABLE_FOR: Duration = Duration::from_secs(120);

/// Bytes of keys remembered as uncacheable; the least used go first.
const UNCACHEABLE_KEY_BYTES: u64 = 4 << 20;

/// Weighs a remembered key by its length, so long URLs cannot grow the set
/// past [`UNCACHEABLE_KEY_BYTES`].
#[derive(Clone)]
struct KeyBytes;

impl quick_cache::Weighter<String, u64> for KeyBytes {
    fn weight(&self, key: &String, _until: &u64) -> u64 {
        key.len() as u64 + 16
    }
}

/// In-flight fetches by key, and the keys recently found uncacheable.
pub struct Flights {
    map: Mutex<HashMap<String, Arc<Slot>>>,
    /// Key → until when (Unix ms) its requests skip coalescing.
    uncacheable: quick_cache::sync::Cache<String, u64, KeyBytes>,
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            map: Mutex::default(),
            uncacheable: quick_cache::sync::Cache::with_weighter(
                4096,
                UNCACHEABLE_KEY_BYTES,
                KeyBytes,
            ),
        }
    }
}

/// The caller's part in a fetch.
pub enum Role {
    /// Fetch, then [`Leader::finish`].
    Leader(Leader),
    /// Wait with [`Waiter::wait`].
    Waiter(Waiter),
}

/// Held by the request that fetches. Dropping it unfinished releases the waiters.
pub struct Leader {
    flights: Arc<Flights>,
    key: String,
    slot: Arc<Slot>,
    done: bool,
}

/// Held by a request waiting for a leader.
pub struct Waiter {
    rx: watch::Receiver<Option<Outcome>>,
}

impl Flights {
    /// Joins the fetch of `key`, leading it if nobody is.
    pub fn join(self: &Arc<Self>, key: &str) -> Role {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = map.get(key) {
            return Role::Waiter(Waiter {
                rx: slot.subscribe(),
            });
        }
        let slot = Arc::new(watch::channel(None).0);
        map.insert(key.to_owned(), slot.clone());
        Role::Leader(Leader {
            flights: self.clone(),
            key: key.to_owned(),
            slot,
            done: false,
        })
    }

    /// Remembers that a fetch of `key` at `now_ms` could not be stored.
    pub fn mark_uncacheable(&self, key: &str, now_ms: u64) {
        let until = now_ms.saturating_add(UNCACHEABLE_FOR.as_millis() as u64);
        self.uncacheable.insert(key.to_owned(), until);
    }

    /// Forgets the mark: `key` was stored.
    pub fn clear_uncacheable(&self, key: &str) {
        self.uncacheable.remove(key);
    }

    /// Whether requests for `key` should fetch without coalescing at `now_ms`.
    pub fn recently_uncacheable(&self, key: &str, now_ms: u64) -> bool {
        self.uncacheable
            .get(key)
            .is_some_and(|until| until > now_ms)
    }

    /// Fetches in flight (for tests and diagnostics).
    pub fn in_flight(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Leader {
    /// Publishes the outcome and ends the flight.
    pub fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.release(outcome);
    }

    fn release(&self, outcome: Outcome) {
        {
            let mut map = self.flights.map.lock().unwrap_or_else(|p| p.into_inner());
            if map
                .get(&self.key)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
            {
                map.remove(&self.key);
            }
        }
        self.slot.send_replace(Some(outcome));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.done {
            self.release(Outcome::Pass);
        }
    }
}

impl Waiter {
    /// The leader's outcome, or [`Outcome::Pass`] after `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Outcome {
        let got = tokio::time::timeout(timeout, self.rx.wait_for(Option::is_some)).await;
        match got {
            Ok(Ok(v)) => v.clone().unwrap_or(Outcome::Pass),
            _ => Outcome::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Arc<Entry> {
        Arc::new(Entry::new(
            http::StatusCode::OK,
            http::HeaderMap::new(),
            Default::default(),
        ))
    }

    #[test]
    fn uncacheable_marks_expire_and_clear() {
        let f = Flights::default();
        let ms = UNCACHEABLE_FOR.as_millis() as u64;
        assert!(!f.recently_uncacheable("k", 1_000));
        f.mark_uncacheable("k", 1_000);
        assert!(f.recently_uncacheable("k", 1_000));
        assert!(f.recently_uncacheable("k", 1_000 + ms - 1));
        assert!(!f.recently_uncacheable("k", 1_000 + ms));
        assert!(!f.recently_uncacheable("other", 1_000));
        f.clear_uncacheable("k");
        assert!(!f.recently_uncacheable("k", 1_000));
    }

    #[tokio::test]
    async fn waiters_get_the_leaders_entry() {
        let f = Arc::new(Flights::default());
        let Role::Leader(l) = f.join("k") else {
            panic!()
        };
        let Role::Waiter(w) = f.join("k") else {
            panic!()
        };
        let h = tokio::spawn(w.wait(Duration::from_secs(10)));
        l.finish(Outcome::Stored(entry()));
        assert!(matches!(h.await.unwrap(), Outcome::Stored(_)));
        assert_eq!(f.in_flight(), 0);
        assert!(matches!(f.join("k"), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_waiters() {
        let f = Arc::new(Flights::default());
        let l = f.join("k");
        let Role::Waiter(w) = f.join("k") else {
            panic!()
        };
        drop(l);
        assert!(matches!(
            w.wait(Duration::from_secs(10)).await,
            Outcome::Pass
        ));
        assert_eq!(f.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_is_bounded() {
        let f = Arc::new(Flights::default());
        let _l = f.join("k");
        let Role::Waiter(w) = f.join("k") else {
            panic!()
        };
        assert!(matches!(
            w.wait(Duration::from_millis(50)).await,
            Outcome::Pass
        ));
    }
}
