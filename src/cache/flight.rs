//! Single-flight, once for everything the cache reads: the first caller to need a key
//! reads it, and every caller that needs the same key meanwhile waits for that read's
//! result instead of issuing its own. The cache uses it for flag keys (one flight can
//! carry many keys: one `BatchGetItem`) and for the every-flag snapshot (one key, `()`).
//!
//! A read that finishes between a caller's cache check and its [`Flights::join`] makes
//! that caller read again: one extra store call, never a wrong answer.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use tokio::sync::watch;

use super::lock;

/// Where a flight's result is published: `None` until then.
pub(super) type Receiver<T> = watch::Receiver<Option<T>>;

/// The reads in progress, by key.
#[derive(Debug)]
pub(super) struct Flights<K, T> {
    in_progress: Mutex<HashMap<K, Receiver<T>>>,
}

impl<K, T> Default for Flights<K, T> {
    fn default() -> Self {
        Flights { in_progress: Mutex::new(HashMap::new()) }
    }
}

/// The keys one caller reads for everyone: publish the result with [`Lead::publish`].
/// Dropping it, published or not (a cancelled request), takes its keys off the board,
/// so no one waits forever on a read that will never finish.
pub(super) struct Lead<'a, K: Hash + Eq, T> {
    flights: &'a Flights<K, T>,
    keys: Vec<K>,
    sender: watch::Sender<Option<T>>,
}

impl<K: Hash + Eq + Clone, T> Flights<K, T> {
    /// Joins the flight already reading each key; keys no flight is reading go into one
    /// new flight, which the caller leads. Returns the lead (if any) and, for each key
    /// in order, where its result will be published.
    ///
    /// A caller that leads must do so before waiting on anyone else's flight: then two
    /// callers that each lead some keys and wait on the other's cannot deadlock.
    pub fn join(&self, keys: impl IntoIterator<Item = K>) -> (Option<Lead<'_, K, T>>, Vec<Receiver<T>>) {
        let (sender, own) = watch::channel(None);
        let mut led = Vec::new();
        let receivers = {
            let mut in_progress = lock(&self.in_progress);
            keys.into_iter()
                .map(|key| {
                    in_progress
                        .entry(key)
                        .or_insert_with_key(|key| {
                            led.push(key.clone());
                            own.clone()
                        })
                        .clone()
                })
                .collect()
        };
        let lead = (!led.is_empty()).then_some(Lead { flights: self, keys: led, sender });
        (lead, receivers)
    }
}

impl<K: Hash + Eq, T> Lead<'_, K, T> {
    /// The keys this caller reads.
    pub fn keys(&self) -> &[K] {
        &self.keys
    }

    /// Hands the result to every caller waiting on this flight.
    pub fn publish(self, result: T) {
        // No receiver left (every waiter cancelled) is fine: the cache holds the result.
        let _ = self.sender.send(Some(result));
    }
}

impl<K: Hash + Eq, T> Drop for Lead<'_, K, T> {
    fn drop(&mut self) {
        let mut in_progress = lock(&self.flights.in_progress);
        for key in &self.keys {
            in_progress.remove(key);
        }
    }
}

/// Waits for a flight's result; `None` if its leader went away without publishing.
pub(super) async fn wait<T: Clone>(mut receiver: Receiver<T>) -> Option<T> {
    receiver.wait_for(Option::is_some).await.ok().and_then(|v| v.clone())
}
