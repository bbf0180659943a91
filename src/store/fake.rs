//! An in-memory [`FlagStore`] for unit tests above the trait: counts its calls (in
//! order), fails on demand, can hold reads open (a gate) or take a while to fail (a
//! hanging store's timeout). The same behaviours are tested against DynamoDB (moto) in
//! the integration tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;

use super::{BoxFuture, FlagStore, StoreError};
use crate::flag::CompiledFlag;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
pub(crate) struct FakeStore {
    pub(crate) flags: Mutex<HashMap<String, Arc<CompiledFlag>>>,
    pub(crate) calls: Mutex<Vec<String>>,
    pub(crate) failing: AtomicBool,
    /// When set, every read waits for a permit.
    pub(crate) gate: Option<Arc<Semaphore>>,
    /// When set, a failing read takes this long to fail (a hanging store's timeout).
    pub(crate) hang: Option<Duration>,
    /// When set, about every other call fails, picked by a generator seeded with the
    /// call's number (the same calls fail in every run): a store failing half its calls.
    pub(crate) half_failing: AtomicBool,
}

impl FakeStore {
    pub(crate) fn with(keys: &[&str]) -> Self {
        let store = FakeStore::default();
        for key in keys {
            store.put(json!({"key": key, "enabled": true, "rollout_percentage": 100}));
        }
        store
    }

    pub(crate) fn put(&self, doc: serde_json::Value) {
        let flag = Arc::new(CompiledFlag::from_value(doc).expect("keyed"));
        lock(&self.flags).insert(flag.key().to_owned(), flag);
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    async fn read<T>(
        &self,
        call: String,
        answer: impl FnOnce(&HashMap<String, Arc<CompiledFlag>>) -> T,
    ) -> Result<T, StoreError> {
        let number = {
            let mut calls = lock(&self.calls);
            calls.push(call);
            calls.len()
        };
        let half = self.half_failing.load(Ordering::SeqCst) && fastrand::Rng::with_seed(number as u64).bool();
        if let Some(gate) = &self.gate {
            let _permit = gate.acquire().await.map_err(|_| unavailable())?;
        }
        if half || self.failing.load(Ordering::SeqCst) {
            if let Some(hang) = self.hang {
                tokio::time::sleep(hang).await;
            }
            return Err(unavailable());
        }
        Ok(answer(&lock(&self.flags)))
    }
}

fn unavailable() -> StoreError {
    StoreError::FileRead { path: "fake".into(), source: std::io::Error::other("store is down") }
}

impl FlagStore for FakeStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<CompiledFlag>>, StoreError>> {
        Box::pin(self.read(format!("get:{key}"), move |f| f.get(key).cloned()))
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Arc<CompiledFlag>>, StoreError>> {
        let mut sorted = keys.to_vec();
        sorted.sort();
        Box::pin(self.read(format!("get_many:{}", sorted.join(",")), move |f| {
            keys.iter().filter_map(|k| f.get(k).cloned()).collect()
        }))
    }

    fn scan(&self) -> BoxFuture<'_, Result<Vec<Arc<CompiledFlag>>, StoreError>> {
        Box::pin(self.read("scan".into(), |f| f.values().cloned().collect()))
    }
}
