//! Where delivery reads the time.
//!
//! Due times, backoff, cool-downs, rate limits and the maximum age are all reckoned in
//! milliseconds since the Unix epoch, because they are stored in the spool and shown to
//! users. In production that is the system clock. A test can give delivery a clock that
//! starts at the system time and then follows tokio's clock, so that under
//! `tokio::time::pause` minutes of backoff pass in no real time at all.

/// A source of "now", in ms since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Kind);

#[derive(Debug, Clone, Copy)]
enum Kind {
    System,
    Tokio { epoch_ms: u64, start: tokio::time::Instant },
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Kind::System)
    }

    /// The system time now, advancing with tokio's clock from here on (paused in tests
    /// with `start_paused`, it moves only when tokio's time does).
    pub fn tokio() -> Self {
        Clock(Kind::Tokio { epoch_ms: system_ms(), start: tokio::time::Instant::now() })
    }

    pub fn now_ms(&self) -> u64 {
        match self.0 {
            Kind::System => system_ms(),
            Kind::Tokio { epoch_ms, start } => epoch_ms + start.elapsed().as_millis() as u64,
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

fn system_ms() -> u64 {
    bitmail_runtime::time::now_ms()
}
