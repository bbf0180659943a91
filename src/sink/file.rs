//! `FileSink`: events as JSON lines in a local file (`EVENTS_FILE`) or on stdout (`-`).
//! The local default, so `make run` shows what would go to Kinesis without an account.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{BoxFuture, EventRecord, EventSink, FailedRecord, SinkError, SinkLimits};

/// Appends each record as one line.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    /// Serialises writers so lines never interleave; held only for a blocking write,
    /// never across an `.await`.
    file: Mutex<Option<std::fs::File>>,
}

impl FileSink {
    /// A sink appending to `path` (`-` means stdout). The file is created now, so an
    /// unwritable path stops start-up instead of losing events later.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SinkError> {
        let path = path.into();
        let file = if path.as_os_str() == "-" { None } else { Some(open_append(&path)?) };
        Ok(FileSink { path, file: Mutex::new(file) })
    }

    fn write_all(&self, records: &[EventRecord]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(records.iter().map(|r| r.data.len() + 1).sum());
        for record in records {
            out.extend_from_slice(&record.data);
            out.push(b'\n');
        }
        let mut file = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match file.as_mut() {
            Some(file) => file.write_all(&out),
            None => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&out)?;
                stdout.flush()
            }
        }
    }
}

fn open_append(path: &PathBuf) -> Result<std::fs::File, SinkError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| SinkError::File { path: path.display().to_string(), source })
}

impl EventSink for FileSink {
    fn send<'a>(&'a self, records: &'a [EventRecord]) -> BoxFuture<'a, Result<Vec<FailedRecord>, SinkError>> {
        Box::pin(async move {
            self.write_all(records)
                .map(|()| Vec::new())
                .map_err(|source| SinkError::File { path: self.path.display().to_string(), source })
        })
    }

    fn limits(&self) -> SinkLimits {
        SinkLimits { max_records: 10_000, max_bytes: 16 << 20, max_record_bytes: 1 << 20 }
    }
}
