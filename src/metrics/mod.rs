//! CloudWatch metrics as embedded-metric-format (EMF) log lines (docs/operations.md, "Metrics"): counters
//! since the last emit — evaluations per flag and outcome, cache hits, misses and stale
//! serves, store reads and errors, events sent, dropped and retried, lenient reads —
//! written after the response, never on a request's path. In Lambda the lines go to
//! standard output (the function's log, where CloudWatch extracts the metrics with no
//! API call); the local server writes them to `METRICS_FILE`.
//!
//! Nothing here counts anything: the cache and the event pipeline keep cumulative
//! counters anyway, and an emit takes their differences since the previous emit
//! ([`Reading`]). The per-flag counts come from the pipeline's tally
//! ([`crate::events::tally`]). Store latency is not measured (it would have to be timed
//! inside the cache's store call; not done).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{MetricsConfig, MetricsOutput};
use crate::events::FlagCounts;

pub mod emf;
pub mod spec;

/// One counter as read at emit time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// A counter that only grows (since start-up); the emit reports its increase.
    Cumulative(&'static str, u64),
    /// A level now (e.g. events buffered), reported as is.
    Level(&'static str, u64),
}

/// Where the lines go and what was last reported.
pub struct Metrics {
    namespace: String,
    service: String,
    flag_dimensions: usize,
    interval: std::time::Duration,
    /// A `std` mutex: writes are a few small lines, after the response, never across
    /// an `.await`.
    out: Mutex<Box<dyn Write + Send>>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Each cumulative counter's value at the last emit.
    last: HashMap<&'static str, u64>,
    last_emit: Option<SystemTime>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("namespace", &self.namespace).field("interval", &self.interval).finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    /// Metrics as `config` says, writing to `out`.
    pub fn new(config: &MetricsConfig, out: Box<dyn Write + Send>) -> Self {
        Metrics {
            namespace: config.namespace.clone(),
            service: config.service.clone(),
            flag_dimensions: config.flag_dimensions,
            interval: config.interval,
            out: Mutex::new(out),
            state: Mutex::new(State::default()),
        }
    }

    /// Opens `config`'s output: `None` when metrics are off; an error when the file
    /// cannot be opened for appending (start-up fails, naming it).
    pub fn open(config: &MetricsConfig) -> std::io::Result<Option<Self>> {
        let out: Box<dyn Write + Send> = match &config.output {
            MetricsOutput::Off => return Ok(None),
            MetricsOutput::Stdout => Box::new(std::io::stdout()),
            MetricsOutput::File(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        };
        Ok(Some(Metrics::new(config, out)))
    }

    /// Whether `METRICS_INTERVAL_MS` has passed since the last emit (or none was made).
    pub fn due(&self, now: SystemTime) -> bool {
        let last = lock(&self.state).last_emit;
        last.is_none_or(|last| now.duration_since(last).unwrap_or_default() >= self.interval)
    }

    /// Writes the lines for what changed since the last emit; nothing when nothing
    /// did. Returns the number of lines written. A write error is logged, not returned:
    /// metrics never fail the function.
    pub fn emit(&self, readings: &[Reading], flags: FlagCounts, now: SystemTime) -> usize {
        let counters = {
            let mut state = lock(&self.state);
            state.last_emit = Some(now);
            let counters: Vec<(&str, u64)> = readings.iter().map(|r| delta(&mut state.last, *r)).collect();
            counters
        };
        let per_outcome = flags.per_outcome();
        let evaluations: u64 = per_outcome.iter().sum();
        let changed = counters.iter().zip(readings).any(|((_, v), r)| *v > 0 && matches!(r, Reading::Cumulative(..)));
        if evaluations == 0 && !changed {
            return 0;
        }
        let frame = emf::Frame {
            namespace: &self.namespace,
            service: &self.service,
            timestamp_ms: now.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0)),
        };
        let mut text = emf::totals(&frame, &counters, evaluations);
        text.push('\n');
        let mut lines = 1;
        for line in emf::evaluations(&frame, flags, self.flag_dimensions) {
            text.push_str(&line);
            text.push('\n');
            lines += 1;
        }
        let mut out = lock(&self.out);
        if let Err(error) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            tracing::warn!(%error, lines, "cannot write EMF metrics");
            return 0;
        }
        lines
    }
}

/// A reading as reported: a cumulative counter's increase since the last emit (and
/// remembered for the next), or a level as is.
fn delta(last: &mut HashMap<&'static str, u64>, reading: Reading) -> (&'static str, u64) {
    match reading {
        Reading::Level(name, value) => (name, value),
        Reading::Cumulative(name, value) => {
            let before = last.insert(name, value).unwrap_or(0);
            (name, value.saturating_sub(before))
        }
    }
}

#[cfg(test)]
mod tests;
