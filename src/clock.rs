//! Time, read once per request and injectable, so TTL and staleness tests are
//! deterministic without sleeping and without pausing tokio's clock (which would also
//! pause the AWS SDK's own timeouts while it waits on a real socket).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The process clock, or a manual one that only moves when a test says so.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None` for the system clock.
    manual: Option<Manual>,
}

/// A frozen moment plus an offset shared by every clone.
#[derive(Debug, Clone)]
struct Manual {
    wall: SystemTime,
    offset: Arc<AtomicU64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock frozen at the current time that tests move with [`Clock::advance`].
    pub fn manual() -> Self {
        Self::manual_at(SystemTime::now())
    }

    /// A clock frozen at wall time `wall` (so date-dependent flags are testable);
    /// clones share it.
    pub fn manual_at(wall: SystemTime) -> Self {
        Clock { manual: Some(Manual { wall, offset: Arc::new(AtomicU64::new(0)) }) }
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Some(manual) = &self.manual {
            let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            manual.offset.fetch_add(nanos, Ordering::Relaxed);
        }
    }

    /// The time: read once per request for the `now` attribute, cache TTLs and event
    /// timestamps.
    pub fn wall(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(m) => m.wall + Duration::from_nanos(m.offset.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clocks_move_only_when_told_and_share_their_offset() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = Clock::manual_at(start);
        let copy = clock.clone();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.wall(), start, "frozen until advanced");
        copy.advance(Duration::from_secs(301));
        assert_eq!(clock.wall(), start + Duration::from_secs(301));
        let system = Clock::system();
        system.advance(Duration::from_secs(1000));
        assert!(system.wall() < SystemTime::now() + Duration::from_secs(1));
    }
}
