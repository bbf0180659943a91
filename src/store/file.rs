//! `FileStore`: flags from a local JSON file (`FLAGS_FILE`), the embedded default.
//!
//! The file is re-read when its modification time changes, so editing
//! `examples/flags.json` under `make run` takes effect within one cache TTL — the same
//! freshness a DynamoDB edit gets. A file that disappears or stops parsing is a
//! [`StoreError`], so the cache serves the last good flags as stale, as it would for
//! a DynamoDB outage.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{BoxFuture, FlagStore, StoreError};
use crate::eval::FlagSet;
use crate::flag::{parse_flags_document, CompiledFlag};

/// Flags read from a JSON file: `{"flags": [...]}` or `[...]`.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    /// The last parse and the mtime it came from. A `std` mutex: held only to swap an
    /// `Arc`, never across an `.await` (this store does no async work at all).
    loaded: Mutex<Option<(SystemTime, Arc<FlagSet>)>>,
}

impl FileStore {
    /// A store over `path`, read once now so a bad file stops start-up.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let store = FileStore { path: path.into(), loaded: Mutex::new(None) };
        let flags = store.current()?;
        tracing::info!(path = %store.path.display(), flags = flags.len(), "flags file loaded");
        Ok(store)
    }

    /// The file's flags, re-parsed only if the file changed since the last read.
    fn current(&self) -> Result<Arc<FlagSet>, StoreError> {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).map_err(|e| self.read_error(e))?;
        if let Some((at, flags)) = &*self.lock() {
            if *at == modified {
                return Ok(flags.clone());
            }
        }
        let flags = Arc::new(load(&self.path)?);
        *self.lock() = Some((modified, flags.clone()));
        Ok(flags)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(SystemTime, Arc<FlagSet>)>> {
        // A poisoned lock only means another reader panicked mid-swap; the data is an
        // `Option<Arc>` that is always consistent, so keep using it.
        self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read_error(&self, source: std::io::Error) -> StoreError {
        StoreError::FileRead { path: self.path.display().to_string(), source }
    }
}

/// Parses and compiles a flags file, logging items that cannot be addressed.
fn load(path: &Path) -> Result<FlagSet, StoreError> {
    let display = || path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| StoreError::FileRead { path: display(), source })?;
    let (flags, skipped) =
        parse_flags_document(&text).map_err(|source| StoreError::FileFormat { path: display(), source })?;
    for why in skipped {
        tracing::warn!(path = %path.display(), "{why}");
    }
    flags.iter().for_each(super::report::loaded);
    Ok(FlagSet::new(flags.into_iter().map(Arc::new)))
}

impl FlagStore for FileStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<CompiledFlag>>, StoreError>> {
        Box::pin(async move { Ok(self.current()?.get(key).cloned()) })
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Arc<CompiledFlag>>, StoreError>> {
        Box::pin(async move {
            let flags = self.current()?;
            let mut seen = std::collections::HashSet::new();
            Ok(keys.iter().filter(|k| seen.insert(k.as_str())).filter_map(|k| flags.get(k).cloned()).collect())
        })
    }

    fn scan(&self) -> BoxFuture<'_, Result<Vec<Arc<CompiledFlag>>, StoreError>> {
        Box::pin(async move { Ok(self.current()?.iter().cloned().collect()) })
    }
}
