//! Request coalescing: concurrent misses on one key make one origin request.
//!
//! The first request for a key becomes the leader and fetches; later ones wait for
//! its outcome. A stored response is handed to every waiter; anything else (not
//! storable, too large, an error, a leader whose client went away) tells waiters to
//! go to the origin themselves, as does a wait longer than the timeout.

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

/// In-flight fetches by key.
#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<String, Arc<Slot>>>,
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
