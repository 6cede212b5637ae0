//! The monitor's own clock. A monitor with a wrong clock would knock healthy servers out of
//! the pool, so before scoring it asks two questions:
//!
//! * **Is the local clock synchronised?** The kernel's clock discipline says so
//!   (`adjtimex(2)` with no modes: `STA_UNSYNC` clear and a maximum error of at most
//!   100 ms), as chronyd or ntpd keep it. This is what `chronyc tracking`'s "Leap status"
//!   and `timedatectl`'s "System clock synchronized" read.
//! * **Do most servers disagree with us in the same direction?** Then it is our clock
//!   ([`suspect_self`]), not theirs.
//!
//! Either way the monitor stops scoring (it keeps probing, to see when it may start again)
//! and keeps the last scores.

use std::path::PathBuf;

/// Largest maximum error (kernel `maxerror`) of a clock still called synchronised.
pub const MAX_ERROR_US: i64 = 100_000;

/// What the monitor knows of its own clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockState {
    /// Synchronised, with the kernel's maximum error in microseconds.
    Synchronised {
        /// `maxerror`, µs.
        max_error_us: i64,
    },
    /// Not synchronised, and why.
    Unsynchronised(String),
}

impl ClockState {
    /// True when scores may be computed.
    pub fn is_synchronised(&self) -> bool {
        matches!(self, ClockState::Synchronised { .. })
    }
}

/// Where the clock state comes from.
#[derive(Debug, Clone)]
pub enum ClockSource {
    /// The kernel (`adjtimex`).
    Kernel,
    /// A file holding "synchronised" or anything else (a reason): tests inject an
    /// unsynchronised clock by writing it. Set by the `POOLDNS_MONITOR_CLOCK_FILE`
    /// environment variable; not for production.
    File(PathBuf),
}

impl ClockSource {
    /// The source for this process: the file named by `POOLDNS_MONITOR_CLOCK_FILE`, else
    /// the kernel.
    pub fn from_env() -> ClockSource {
        match std::env::var_os("POOLDNS_MONITOR_CLOCK_FILE") {
            Some(path) if !path.is_empty() => ClockSource::File(path.into()),
            _ => ClockSource::Kernel,
        }
    }

    /// Reads the state now.
    pub fn read(&self) -> ClockState {
        match self {
            ClockSource::Kernel => kernel(),
            ClockSource::File(path) => match std::fs::read_to_string(path) {
                Ok(text) if text.trim() == "synchronised" => {
                    ClockState::Synchronised { max_error_us: 0 }
                }
                Ok(text) => ClockState::Unsynchronised(format!("injected: {}", text.trim())),
                Err(e) => ClockState::Unsynchronised(format!("{}: {e}", path.display())),
            },
        }
    }
}

/// `STA_UNSYNC` of `timex.status` (linux/timex.h).
const STA_UNSYNC: i32 = 0x0040;
/// `TIME_ERROR`, adjtimex's return value for an unsynchronised clock.
const TIME_ERROR: i32 = 5;

/// The kernel's view of the clock.
#[allow(unsafe_code)]
fn kernel() -> ClockState {
    // SAFETY: `timex` is plain old data, zero is a valid value of every field, and modes = 0
    // asks adjtimex(2) only to read, filling the struct we own for the duration of the call.
    let (state, tx) = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        let state = libc::adjtimex(&mut tx);
        (state, tx)
    };
    // c_long is i32 on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let max_error = tx.maxerror as i64;
    classify(state, tx.status, max_error)
}

/// The state from adjtimex's return value, status bits and maximum error (µs).
fn classify(state: i32, status: i32, max_error_us: i64) -> ClockState {
    if state < 0 {
        return ClockState::Unsynchronised(format!(
            "adjtimex failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    if status & STA_UNSYNC != 0 || state == TIME_ERROR {
        return ClockState::Unsynchronised(
            "the kernel says the clock is not synchronised (STA_UNSYNC); is chronyd or ntpd \
             running and synchronised?"
                .to_owned(),
        );
    }
    if max_error_us > MAX_ERROR_US {
        return ClockState::Unsynchronised(format!(
            "the kernel's maximum error is {} ms, over {} ms",
            max_error_us / 1000,
            MAX_ERROR_US / 1000
        ));
    }
    ClockState::Synchronised { max_error_us }
}

/// Fewest servers with a recent offset before the monitor judges its own clock by them.
pub const SUSPECT_MIN_SERVERS: usize = 5;
/// Offsets older than this do not count toward the suspicion: each server's latest within
/// the last 10 minutes does.
pub const SUSPECT_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);
/// An offset beyond this (seconds) is a disagreement.
pub const SUSPECT_OFFSET: f64 = 0.100;

/// True when most of the recent `offsets` (seconds, one per server) are off by more than
/// 100 ms in the same direction: then the monitor's clock is the likelier culprit. Needs
/// [`SUSPECT_MIN_SERVERS`] offsets to judge at all.
pub fn suspect_self(offsets: impl IntoIterator<Item = f64>) -> bool {
    let (mut n, mut ahead, mut behind) = (0usize, 0usize, 0usize);
    for offset in offsets {
        n += 1;
        if offset > SUSPECT_OFFSET {
            ahead += 1;
        } else if offset < -SUSPECT_OFFSET {
            behind += 1;
        }
    }
    n >= SUSPECT_MIN_SERVERS && (2 * ahead > n || 2 * behind > n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_state_is_read_as_chrony_would() {
        assert!(classify(0, 0, 5_000).is_synchronised());
        assert!(!classify(0, STA_UNSYNC, 5_000).is_synchronised());
        assert!(!classify(TIME_ERROR, 0, 5_000).is_synchronised());
        assert!(!classify(0, 0, 100_001).is_synchronised());
        assert!(classify(0, 0, 100_000).is_synchronised());
        // The real call never panics.
        let _ = ClockSource::Kernel.read();
    }

    #[test]
    fn most_servers_off_the_same_way_make_the_monitor_suspect_itself() {
        assert!(suspect_self([0.5, 0.4, 0.3, 0.2, 0.0]));
        assert!(suspect_self([-0.5, -0.4, -0.3, 0.0, 0.0]));
        // Split both ways, or half only: the servers are wrong, not us.
        assert!(!suspect_self([0.5, 0.4, -0.3, -0.2, 0.0]));
        assert!(!suspect_self([0.5, 0.4, 0.0, 0.0]));
        assert!(!suspect_self([0.5, 0.4, 0.3, 0.0, 0.0, 0.0]));
        // Too few to judge.
        assert!(!suspect_self([0.5, 0.4, 0.3, 0.2]));
    }

    #[test]
    fn an_injected_clock_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock");
        let source = ClockSource::File(path.clone());
        assert!(!source.read().is_synchronised());
        std::fs::write(&path, "synchronised\n").unwrap();
        assert!(source.read().is_synchronised());
        std::fs::write(&path, "stepped back").unwrap();
        assert_eq!(
            source.read(),
            ClockState::Unsynchronised("injected: stepped back".into())
        );
    }
}
