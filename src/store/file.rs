//! `FileStore`: flags from a local JSON file (`FLAGS_FILE`), the embedded default.
//!
//! The file is re-read when its modification time changes, so editing
//! `examples/flags.json` under `make run` takes effect within one cache TTL — the same
//! freshness a DynamoDB edit gets. A bad edit (the file stops parsing, or disappears)
//! keeps the last good parse *whole* — every flag in it, also those no request has
//! asked for yet — and logs the problem once per bad version of the file. Only a file
//! that was never good is a [`StoreError`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{BoxFuture, FlagStore, StoreError};
use crate::eval::FlagSet;
use crate::flag::{parse_flags_document, parse_flags_yaml, CompiledFlag};

/// Flags read from a JSON file: `{"flags": [...]}` or `[...]`.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    /// The last good parse and what was last seen on disk. A `std` mutex: held only to
    /// swap an `Arc`, never across an `.await` (this store does no async work at all).
    loaded: Mutex<Loaded>,
}

/// The last good parse, and which file version it came from or was last kept over.
#[derive(Debug, Default)]
struct Loaded {
    /// The flags and the mtime of the file they were parsed from.
    good: Option<(SystemTime, Arc<FlagSet>)>,
    /// The mtime of a version that failed (logged once; not re-read until it changes).
    bad: Option<SystemTime>,
}

impl FileStore {
    /// A store over `path`, read once now so a bad file stops start-up.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let store = FileStore { path: path.into(), loaded: Mutex::new(Loaded::default()) };
        let flags = store.current()?;
        tracing::info!(path = %store.path.display(), flags = flags.len(), "flags file loaded");
        Ok(store)
    }

    /// The file's flags, re-parsed only if the file changed since the last read; the
    /// last good flags if the file is now unreadable or unparsable.
    fn current(&self) -> Result<Arc<FlagSet>, StoreError> {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).map_err(|e| self.read_error(e));
        {
            let loaded = self.lock();
            match (&modified, &loaded.good) {
                (Ok(at), Some((good_at, flags))) if at == good_at || loaded.bad == Some(*at) => {
                    return Ok(flags.clone())
                }
                _ => {}
            }
        }
        match modified.and_then(|at| Ok((at, load(&self.path)?))) {
            Ok((at, flags)) => {
                let flags = Arc::new(flags);
                *self.lock() = Loaded { good: Some((at, flags.clone())), bad: None };
                Ok(flags)
            }
            Err(error) => self.keep_last_good(error),
        }
    }

    /// After a bad read: the last good flags (logging the problem the first time this
    /// version of the file is seen), or the error if there never were any.
    fn keep_last_good(&self, error: StoreError) -> Result<Arc<FlagSet>, StoreError> {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        let mut loaded = self.lock();
        let Some((_, flags)) = &loaded.good else { return Err(error) };
        let flags = flags.clone();
        // A missing file has no mtime: it is logged on every read until it is back, which
        // the cache's TTL keeps to one line per TTL.
        if modified.is_none() || loaded.bad != modified {
            tracing::error!(path = %self.path.display(), %error, flags = flags.len(), "flags file unusable; keeping the last good version");
        }
        loaded.bad = modified;
        Ok(flags)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        // A poisoned lock only means another reader panicked mid-swap; the data is
        // `Option<Arc>`s that are always consistent, so keep using it.
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
    let yaml = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e == "yaml" || e == "yml");
    let parsed = if yaml { parse_flags_yaml(&text) } else { parse_flags_document(&text) };
    let (flags, skipped) = parsed.map_err(|source| StoreError::FileFormat { path: display(), source })?;
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

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn scan(&self) -> BoxFuture<'_, Result<Vec<Arc<CompiledFlag>>, StoreError>> {
        Box::pin(async move { Ok(self.current()?.iter().cloned().collect()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A flags file in a fresh temporary directory, removed on drop.
    struct TempFlags {
        dir: PathBuf,
        path: PathBuf,
        /// Each write gets a later mtime than the one before, whatever the clock's grain.
        writes: u64,
    }

    impl TempFlags {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("flagfn-file-store-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempFlags { path: dir.join("flags.json"), dir, writes: 0 }
        }

        fn write(&mut self, text: &str) {
            std::fs::write(&self.path, text).expect("write flags");
            self.writes += 1;
            let file = std::fs::File::options().write(true).open(&self.path).expect("open flags");
            file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + self.writes)).expect("mtime");
        }
    }

    impl Drop for TempFlags {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const TWO_FLAGS: &str = r#"{"flags": [{"key": "asked", "enabled": true}, {"key": "not-yet", "enabled": true}]}"#;

    async fn keys(store: &FileStore) -> Vec<String> {
        let mut keys: Vec<String> = store.scan().await.expect("flags").iter().map(|f| f.key().to_owned()).collect();
        keys.sort();
        keys
    }

    /// A bad edit keeps every flag of the last good parse, also the
    /// ones nobody has asked for yet.
    #[tokio::test]
    async fn a_broken_edit_keeps_the_last_good_parse_whole() {
        let mut file = TempFlags::new("broken");
        file.write(TWO_FLAGS);
        let store = FileStore::open(&file.path).expect("good file");
        assert!(store.get("asked").await.expect("read").is_some());

        file.write(r#"{"flags": [{"key": "asked", "enabled": tru"#);
        let not_yet = store.get("not-yet").await.expect("the last good parse, not an error");
        assert_eq!(not_yet.map(|f| f.key().to_owned()).as_deref(), Some("not-yet"));
        assert_eq!(keys(&store).await, ["asked", "not-yet"]);
        let many = store.get_many(&["asked".to_owned(), "not-yet".to_owned()]).await.expect("last good");
        assert_eq!(many.len(), 2);

        // Deleted: still the last good parse.
        std::fs::remove_file(&file.path).expect("remove");
        assert_eq!(keys(&store).await, ["asked", "not-yet"]);

        // A good edit is picked up again.
        file.write(r#"[{"key": "fixed", "enabled": false}]"#);
        assert_eq!(keys(&store).await, ["fixed"]);
        assert!(store.get("asked").await.expect("read").is_none());
    }

    #[tokio::test]
    async fn a_yaml_flagd_document_loads_like_its_json() {
        let mut file = TempFlags::new("yaml");
        file.path = file.dir.join("flags.yaml");
        file.write("flags:\n  banner:\n    state: ENABLED\n    variants: {red: '#d33', blue: '#36c'}\n    defaultVariant: blue\n");
        let store = FileStore::open(&file.path).expect("a YAML flagd document");
        let banner = store.get("banner").await.expect("read").expect("present");
        assert_eq!(
            banner.flagd().and_then(|f| f.variant("blue")).map(|(_, v)| v.clone()),
            Some(serde_json::json!("#36c"))
        );
        file.write("flags: [unclosed\n");
        assert!(FileStore::open(&file.path).is_err(), "never good: an error");
    }

    #[tokio::test]
    async fn a_file_that_was_never_good_is_an_error() {
        let mut file = TempFlags::new("never");
        file.write("not json");
        assert!(matches!(FileStore::open(&file.path), Err(StoreError::FileFormat { .. })));
        assert!(matches!(FileStore::open(file.dir.join("absent.json")), Err(StoreError::FileRead { .. })));
    }
}
