//! Where esm reads the time: operation deadlines, leases, retirement marks and binding
//! expiry all ask a [`Clock`] instead of the system clock directly.
//!
//! In production it is the system clock (leases are compared across replicas, so they
//! must be wall-clock time). Tests use [`Clock::tokio`], which follows Tokio's clock: a
//! test that pauses Tokio time and advances it sees leases lapse and deadlines pass at
//! once, with no real waiting. Waits themselves (`tokio::time::sleep`, intervals,
//! timeouts) already follow Tokio's clock, so the two stay in step.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::domain::time::Timestamp;

/// A source of the current time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    source: Source,
}

#[derive(Debug, Clone, Copy, Default)]
enum Source {
    /// `SystemTime::now()`.
    #[default]
    System,
    /// The wall time when the clock was made, moved on as far as Tokio's clock has
    /// moved since.
    Tokio { wall: SystemTime, start: tokio::time::Instant },
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { source: Source::System }
    }

    /// A clock that starts at the system time and then moves with Tokio's clock (paused,
    /// auto-advanced or advanced by hand in tests).
    pub fn tokio() -> Self {
        Self { source: Source::Tokio { wall: SystemTime::now(), start: tokio::time::Instant::now() } }
    }

    /// Now.
    pub fn now(&self) -> SystemTime {
        match self.source {
            Source::System => SystemTime::now(),
            Source::Tokio { wall, start } => wall + start.elapsed(),
        }
    }

    /// Now, in Unix milliseconds (the unit of leases and retirement marks).
    pub fn millis(&self) -> u64 {
        self.now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Now, to the millisecond, as records keep it.
    pub fn timestamp(&self) -> Timestamp {
        Timestamp::at(self.now())
    }

    /// `after` from now.
    pub fn timestamp_in(&self, after: Duration) -> Timestamp {
        Timestamp::at(self.now() + after)
    }

    /// Whether `at` lies in the past.
    pub fn is_past(&self, at: Timestamp) -> bool {
        at.time() <= self.now()
    }

    /// How long until `at`; zero if it has passed.
    pub fn until(&self, at: SystemTime) -> Duration {
        at.duration_since(self.now()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_only_with_tokio_time() {
        let clock = Clock::tokio();
        let (before, millis) = (clock.now(), clock.millis());
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now().duration_since(before).ok(), Some(Duration::from_secs(90)));
        assert_eq!(clock.millis() - millis, 90_000);
        let soon = clock.timestamp_in(Duration::from_secs(10));
        assert!(!clock.is_past(soon));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(clock.is_past(soon));
        assert_eq!(clock.until(before), Duration::ZERO);
    }

    #[test]
    fn the_system_clock_is_the_system_time() {
        let clock = Clock::system();
        let drift = clock.now().duration_since(SystemTime::now()).unwrap_or_else(|e| e.duration());
        assert!(drift < Duration::from_secs(1));
    }
}
