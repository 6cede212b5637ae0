//! Per-server history of score and offset, in fixed-size memory allocated up front (so that
//! what a server costs on day 1 is what it costs on day 30):
//!
//! * the last [`RECENT`] probes at full resolution (time, score, offset, result), 16 bytes
//!   each: what the per-server page's "recent probes" graph and the tests read;
//! * 30 days in [`BUCKETS`] buckets of two hours, 4 bytes each: the last score of the
//!   bucket in hundredths and the bucket's largest offset in 0.1 ms (saturating at
//!   ±3.2767 s, beyond which the score rule treats all offsets alike).
//!
//! About 2.5 kB per server: 250 MB for 100,000 servers (measured in the README).

use super::ntp::KINDS;

/// Probes kept at full resolution.
pub const RECENT: usize = 64;
/// Seconds per bucket.
pub const BUCKET_SECONDS: u64 = 7200;
/// Buckets kept: 30 days.
pub const BUCKETS: usize = 360;

/// One probe as kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// Unix seconds.
    pub time: u32,
    /// The score after the probe.
    pub score: f32,
    /// The offset measured, seconds; NaN when the probe measured none.
    pub offset: f32,
    /// Index of the result's kind in [`KINDS`].
    pub kind: u8,
}

impl Probe {
    /// The offset, when measured.
    pub fn offset(&self) -> Option<f64> {
        (!self.offset.is_nan()).then_some(f64::from(self.offset))
    }

    /// The result's kind.
    pub fn kind(&self) -> &'static str {
        KINDS
            .get(usize::from(self.kind))
            .copied()
            .unwrap_or("unknown")
    }
}

/// One two-hour bucket as kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    /// Last score in hundredths; `i16::MIN`: no probe in the bucket.
    score: i16,
    /// Largest offset in 0.1 ms; `i16::MIN`: none measured.
    offset: i16,
}

const EMPTY: Bucket = Bucket {
    score: i16::MIN,
    offset: i16::MIN,
};

/// A server's history.
#[derive(Debug, Clone)]
pub struct History {
    /// Ring of the last probes; `recent_len` of them are valid, the newest at
    /// `recent_next − 1`.
    recent: Box<[Probe]>,
    recent_next: usize,
    recent_len: usize,
    /// Ring of buckets: bucket number b (unix seconds / BUCKET_SECONDS) lives at
    /// b % BUCKETS while b > newest − BUCKETS.
    buckets: Box<[Bucket]>,
    /// The newest bucket number written; 0 before the first probe.
    newest: u64,
}

impl Default for History {
    fn default() -> Self {
        History {
            recent: vec![
                Probe {
                    time: 0,
                    score: 0.0,
                    offset: f32::NAN,
                    kind: 0
                };
                RECENT
            ]
            .into_boxed_slice(),
            recent_next: 0,
            recent_len: 0,
            buckets: vec![EMPTY; BUCKETS].into_boxed_slice(),
            newest: 0,
        }
    }
}

/// A point of the 30-day view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Start of the bucket, unix seconds.
    pub time: u64,
    /// The last score of the bucket.
    pub score: f64,
    /// The bucket's largest offset, seconds.
    pub offset: Option<f64>,
}

impl History {
    /// Records a probe.
    pub fn record(&mut self, probe: Probe) {
        self.recent[self.recent_next] = probe;
        self.recent_next = (self.recent_next + 1) % RECENT;
        self.recent_len = (self.recent_len + 1).min(RECENT);

        let number = u64::from(probe.time) / BUCKET_SECONDS;
        if number < self.newest.saturating_sub(BUCKETS as u64 - 1) {
            return; // older than what the ring holds
        }
        if number > self.newest {
            // Clear the buckets skipped over (at most the whole ring).
            let from = (self.newest + 1).max(number.saturating_sub(BUCKETS as u64 - 1));
            for b in from..=number {
                self.buckets[(b % BUCKETS as u64) as usize] = EMPTY;
            }
            self.newest = number;
        }
        let slot = &mut self.buckets[(number % BUCKETS as u64) as usize];
        slot.score = (f64::from(probe.score) * 100.0)
            .round()
            .clamp(-32767.0, 32767.0) as i16;
        if let Some(offset) = probe.offset() {
            let tenths = (offset * 10_000.0).round().clamp(-32767.0, 32767.0) as i16;
            if slot.offset == i16::MIN || tenths.unsigned_abs() > slot.offset.unsigned_abs() {
                slot.offset = tenths;
            }
        }
    }

    /// The recent probes, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &Probe> {
        let start = (self.recent_next + RECENT - self.recent_len) % RECENT;
        (0..self.recent_len).map(move |i| &self.recent[(start + i) % RECENT])
    }

    /// The 30-day view: buckets with a probe, oldest first.
    pub fn points(&self) -> Vec<Point> {
        if self.newest == 0 {
            return Vec::new();
        }
        let first = self.newest.saturating_sub(BUCKETS as u64 - 1);
        (first..=self.newest)
            .filter_map(|b| {
                let slot = self.buckets[(b % BUCKETS as u64) as usize];
                (slot.score != i16::MIN).then(|| Point {
                    time: b * BUCKET_SECONDS,
                    score: f64::from(slot.score) / 100.0,
                    offset: (slot.offset != i16::MIN).then(|| f64::from(slot.offset) / 10_000.0),
                })
            })
            .collect()
    }

    /// Bytes this history holds, allocations included.
    pub fn memory() -> usize {
        std::mem::size_of::<History>()
            + RECENT * std::mem::size_of::<Probe>()
            + BUCKETS * std::mem::size_of::<Bucket>()
    }

    /// The history as kept in the state file.
    pub fn to_saved(&self) -> SavedHistory {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buckets = String::with_capacity(BUCKETS * 8);
        for b in self.buckets.iter() {
            for half in [b.score as u16, b.offset as u16] {
                for shift in [12, 8, 4, 0] {
                    buckets.push(char::from(HEX[usize::from((half >> shift) & 0xf)]));
                }
            }
        }
        SavedHistory {
            recent: self
                .recent()
                .map(|p| {
                    SavedProbe(
                        p.time,
                        p.score,
                        p.offset().map(|o| o as f32),
                        p.kind().to_owned(),
                    )
                })
                .collect(),
            newest: self.newest,
            buckets,
        }
    }

    /// The history from the state file; None when it does not hold together.
    pub fn from_saved(saved: &SavedHistory) -> Result<History, String> {
        let mut h = History::default();
        if saved.recent.len() > RECENT {
            return Err(format!(
                "{} recent probes, more than {RECENT}",
                saved.recent.len()
            ));
        }
        for SavedProbe(time, score, offset, kind) in &saved.recent {
            let kind = KINDS
                .iter()
                .position(|k| k == kind)
                .ok_or_else(|| format!("unknown probe result {kind:?}"))?;
            if !score.is_finite() || offset.is_some_and(|o| !o.is_finite()) {
                return Err("a recent probe's score or offset is not a number".to_owned());
            }
            h.recent[h.recent_next] = Probe {
                time: *time,
                score: *score,
                offset: offset.unwrap_or(f32::NAN),
                kind: kind as u8,
            };
            h.recent_next = (h.recent_next + 1) % RECENT;
            h.recent_len += 1;
        }
        let bytes = saved.buckets.as_bytes();
        if bytes.len() != BUCKETS * 8 {
            return Err(format!(
                "buckets hold {} hex digits, expected {}",
                bytes.len(),
                BUCKETS * 8
            ));
        }
        for (slot, chunk) in h.buckets.iter_mut().zip(bytes.chunks_exact(8)) {
            let half = |b: &[u8]| {
                std::str::from_utf8(b)
                    .ok()
                    .and_then(|t| u16::from_str_radix(t, 16).ok())
                    .map(|v| v as i16)
                    .ok_or_else(|| "buckets are not hex digits".to_owned())
            };
            slot.score = half(&chunk[..4])?;
            slot.offset = half(&chunk[4..])?;
        }
        // Probe times are u32 seconds: no bucket beyond theirs.
        if saved.newest > u64::from(u32::MAX) / BUCKET_SECONDS {
            return Err(format!("bucket number {} is beyond 2106", saved.newest));
        }
        h.newest = saved.newest;
        Ok(h)
    }
}

/// A probe in the state file: `[time, score, offset or null, result]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedProbe(pub u32, pub f32, pub Option<f32>, pub String);

/// A history in the state file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedHistory {
    /// The recent probes, oldest first.
    pub recent: Vec<SavedProbe>,
    /// The newest bucket number.
    pub newest: u64,
    /// The bucket ring as hex: per bucket the score and offset as 4 hex digits each.
    pub buckets: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(time: u32, score: f32, offset: Option<f32>) -> Probe {
        Probe {
            time,
            score,
            offset: offset.unwrap_or(f32::NAN),
            kind: 0,
        }
    }

    #[test]
    fn recent_probes_keep_the_last_64_in_order() {
        let mut h = History::default();
        for i in 0..100u32 {
            h.record(probe(1_000_000 + i * 60, i as f32, Some(0.001)));
        }
        let scores: Vec<f32> = h.recent().map(|p| p.score).collect();
        assert_eq!(scores, (36..100).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    fn buckets_keep_30_days_of_last_scores_and_largest_offsets() {
        let mut h = History::default();
        let start = 1_764_000_000u32 / 7200 * 7200;
        // 40 days, one probe every 20 minutes.
        for i in 0..(40 * 72) {
            let offset = if i % 6 == 1 { -0.05 } else { 0.001 };
            h.record(probe(start + i * 1200, (i % 6) as f32, Some(offset)));
        }
        let points = h.points();
        assert_eq!(points.len(), BUCKETS);
        assert!(
            points
                .iter()
                .all(|p| p.score == 5.0 && p.offset == Some(-0.05))
        );
        assert_eq!(
            points.last().unwrap().time,
            u64::from(start + (40 * 72 - 1) * 1200) / 7200 * 7200
        );
        // A gap of a week leaves empty buckets out.
        let last = points.last().unwrap().time as u32;
        h.record(probe(last + 7 * 86400, 1.0, None));
        let points = h.points();
        assert_eq!(points.len(), BUCKETS - 7 * 12 + 1);
        assert_eq!(points.last().unwrap().offset, None);
    }

    #[test]
    fn a_saved_history_loads_back_the_same() {
        let mut h = History::default();
        for i in 0..70u32 {
            h.record(probe(
                1_764_000_000 + i * 3000,
                -(i as f32) / 3.0,
                (i % 2 == 0).then_some(4.5),
            ));
        }
        let saved = h.to_saved();
        let text = serde_json::to_string(&saved).unwrap();
        let back = History::from_saved(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back.points(), h.points());
        assert_eq!(
            back.recent()
                .map(|p| (p.time, p.score, p.offset()))
                .collect::<Vec<_>>(),
            h.recent()
                .map(|p| (p.time, p.score, p.offset()))
                .collect::<Vec<_>>()
        );
        let mut bad = saved.clone();
        bad.buckets.pop();
        assert!(History::from_saved(&bad).is_err());
        let mut bad = saved.clone();
        bad.buckets.replace_range(0..1, "g");
        assert!(History::from_saved(&bad).is_err());
        // A bucket number no probe time can have would overflow the times of the view.
        let mut bad = saved;
        bad.newest = u64::MAX;
        assert!(History::from_saved(&bad).is_err());
    }

    #[test]
    fn a_server_costs_about_two_and_a_half_kilobytes() {
        assert!(History::memory() < 2600, "{}", History::memory());
    }
}
