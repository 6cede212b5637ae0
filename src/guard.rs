//! The shrink guard: a new table that would serve fewer than half of the eligible servers
//! of the reference is refused, because a feed that suddenly lost most of the pool is far
//! more often broken (a half-written export, a monitoring outage, a bad filter) than a
//! real cleanup. Operators accept a real one with `pooldns reload --accept-shrink`.
//!
//! The reference is the largest eligible count published in the last [`WINDOW`], not the
//! serving table's: a series of feeds that each drop just under half would otherwise walk
//! the pool down unnoticed. With nothing published in the window (a restart after a long
//! stop), the latest count published is the reference. The history is kept in the state
//! directory, so a restarted instance guards the same way as its running peers.
//!
//! Pure bookkeeping: times are passed in, and saving and loading are plain functions of
//! the caller's path.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far back the reference looks.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// Most entries kept: one per publish, and rotations publish too; older ones are
/// dropped first. Bounds the state file whatever the publishing rate.
const MAX_ENTRIES: usize = 4096;

/// Published eligible counts, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShrinkGuard {
    /// (unix seconds, eligible servers of both families) per publish.
    history: Vec<(u64, usize)>,
}

/// A refused shrink: the new count and the reference it was measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shrink {
    /// Eligible servers of the refused table.
    pub new: usize,
    /// The reference: the largest count of the window.
    pub reference: usize,
}

impl ShrinkGuard {
    /// The count that new tables are measured against at `now`, if any was published.
    pub fn reference(&self, now: SystemTime) -> Option<usize> {
        let since = unix(now).saturating_sub(WINDOW.as_secs());
        let in_window = self
            .history
            .iter()
            .filter(|&&(t, _)| t >= since)
            .map(|&(_, n)| n)
            .max();
        in_window.or_else(|| self.history.last().map(|&(_, n)| n))
    }

    /// Whether a table with `eligible` servers may be published at `now`.
    pub fn check(&self, now: SystemTime, eligible: usize) -> Result<(), Shrink> {
        match self.reference(now) {
            Some(reference) if eligible * 2 < reference => Err(Shrink {
                new: eligible,
                reference,
            }),
            _ => Ok(()),
        }
    }

    /// Notes a published table.
    pub fn record(&mut self, now: SystemTime, eligible: usize) {
        let t = unix(now);
        // Entries the window no longer needs go, but the latest stays as the reference
        // across a long stop.
        let since = t.saturating_sub(WINDOW.as_secs());
        let keep_from = self
            .history
            .iter()
            .position(|&(at, _)| at >= since)
            .unwrap_or(self.history.len());
        self.history.drain(..keep_from);
        self.history.push((t, eligible));
        if self.history.len() > MAX_ENTRIES {
            let excess = self.history.len() - MAX_ENTRIES;
            self.history.drain(..excess);
        }
    }

    /// Forgets the history: after an accepted shrink the new count is the reference.
    pub fn reset(&mut self) {
        self.history.clear();
    }

    /// Reads a history saved by [`ShrinkGuard::save`]. A missing file is an empty
    /// history; a damaged one is an error naming the file.
    pub fn load(path: &Path) -> Result<ShrinkGuard, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ShrinkGuard::default());
            }
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let saved: Saved = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a guard history: {e}", path.display()))?;
        let mut history = saved.history;
        history.sort_unstable();
        Ok(ShrinkGuard { history })
    }

    /// Writes the history to `path` (aside, then renamed over it).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string(&Saved {
            history: self.history.clone(),
        })
        .map_err(std::io::Error::other)?;
        crate::state::write_atomically(path, text.as_bytes())
    }
}

/// The file's shape.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    /// [unix seconds, eligible servers], oldest first.
    history: Vec<(u64, usize)>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_series_of_small_drops_is_measured_against_the_largest_of_the_hour() {
        let mut guard = ShrinkGuard::default();
        guard.record(at(10_000), 1000);
        // Each step drops just under half of the one before it.
        assert_eq!(guard.check(at(10_060), 501), Ok(()));
        guard.record(at(10_060), 501);
        assert_eq!(
            guard.check(at(10_120), 499),
            Err(Shrink {
                new: 499,
                reference: 1000
            })
        );
        // An hour after the peak, the reference is the largest count since.
        assert_eq!(guard.reference(at(10_000 + 3601)), Some(501));
        assert_eq!(guard.check(at(10_000 + 3601), 300), Ok(()));
    }

    #[test]
    fn the_latest_count_stays_the_reference_after_a_long_stop() {
        let mut guard = ShrinkGuard::default();
        assert_eq!(guard.reference(at(0)), None);
        assert_eq!(guard.check(at(0), 0), Ok(()));
        guard.record(at(1000), 800);
        guard.record(at(2000), 600);
        assert_eq!(guard.reference(at(1_000_000)), Some(600));
        assert!(guard.check(at(1_000_000), 299).is_err());
        guard.record(at(1_000_000), 700);
        assert_eq!(guard.history, vec![(1_000_000, 700)]);
    }

    #[test]
    fn the_history_is_bounded_and_round_trips_through_its_file() {
        let mut guard = ShrinkGuard::default();
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            guard.record(at(50_000 + i / 8), 100 + i as usize);
        }
        assert_eq!(guard.history.len(), MAX_ENTRIES);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard.json");
        guard.save(&path).unwrap();
        assert_eq!(ShrinkGuard::load(&path).unwrap(), guard);
        assert_eq!(
            ShrinkGuard::load(&dir.path().join("none.json")).unwrap(),
            ShrinkGuard::default()
        );
        std::fs::write(&path, "{\"history\": 5}").unwrap();
        let e = ShrinkGuard::load(&path).unwrap_err();
        assert!(e.starts_with(&format!("{}: not a guard history", path.display())));
    }
}
