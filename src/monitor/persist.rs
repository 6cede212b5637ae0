//! The state file (`--state`): every server's score, probe count and history, so that a
//! restart never drops the pool. Written aside and renamed over
//! ([`crate::state::write_atomically`]) every few minutes and on exit; read back at start as
//! untrusted input.
//!
//! A server is restored only when the registry still has it with the same id and address
//! (a new address is a new server and starts at 0). A damaged entry is skipped with a
//! message; a state file that is not JSON of the right shape stops the start: starting
//! from 0 instead would empty the pool at the first feed write, while the old feed keeps
//! serving until the operator moves the file aside.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::history::{History, SavedHistory};
use super::{Book, Monitor, unix};

/// The file as written.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    /// Format version: 1.
    version: u32,
    /// When it was written, unix seconds.
    saved_at: u64,
    servers: Vec<serde_json::Value>,
}

/// One server as written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedServer {
    id: u64,
    ip: IpAddr,
    score: f64,
    probes: u64,
    scored_at: Option<u64>,
    history: SavedHistory,
}

/// What a load restored.
#[derive(Debug, Default)]
pub struct Restored {
    /// Servers restored.
    pub servers: usize,
    /// Messages of the entries skipped.
    pub skipped: Vec<String>,
}

/// Servers serialized per hold of the book's lock while saving: probes that end meanwhile
/// wait for one chunk at most, not for the whole file (hundreds of megabytes at 100,000
/// servers).
const SAVE_CHUNK: usize = 1000;

/// Saves `monitor`'s book to its state file: written aside in chunks, synced, renamed over.
pub fn save(monitor: &Monitor) -> std::io::Result<()> {
    let path = &monitor.options.state;
    let named = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: cannot write: {e}", path.display()))
    };
    let mut aside = path.as_os_str().to_owned();
    aside.push(".tmp");
    let aside = std::path::PathBuf::from(aside);
    let file = std::fs::File::create(&aside).map_err(named)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    write!(
        out,
        "{{\"version\":1,\"saved_at\":{},\"servers\":[",
        unix(std::time::SystemTime::now())
    )
    .map_err(named)?;
    let mut chunk = Vec::with_capacity(SAVE_CHUNK * 3200);
    let mut at = 0;
    loop {
        chunk.clear();
        {
            let book = monitor.book();
            let end = (at + SAVE_CHUNK).min(book.servers.len());
            for t in book.servers.get(at..end).unwrap_or_default() {
                if at > 0 || !chunk.is_empty() {
                    chunk.push(b',');
                }
                let saved = SavedServer {
                    id: t.server.id,
                    ip: t.server.ip,
                    score: t.score,
                    probes: t.probes,
                    scored_at: t.scored_at,
                    history: t.history.to_saved(),
                };
                serde_json::to_writer(&mut chunk, &saved).map_err(std::io::Error::other)?;
            }
            at = end;
            if chunk.is_empty() {
                break;
            }
        }
        out.write_all(&chunk).map_err(named)?;
    }
    out.write_all(b"]}").map_err(named)?;
    let file = out.into_inner().map_err(|e| named(e.into_error()))?;
    file.sync_all().map_err(named)?;
    std::fs::rename(&aside, path).map_err(named)
}

/// Restores what the state file at `path` holds into `book`. A missing file is a first
/// start (nothing restored); a file that is not a state file is an error naming it.
pub fn load(path: &Path, book: &mut Book) -> Result<Restored, String> {
    let name = path.display();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Restored::default()),
        Err(e) => return Err(format!("{name}: cannot read: {e}")),
    };
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| {
        format!("{name}: not a monitor state file ({e}); move it aside to start from score 0")
    })?;
    if file.version != 1 {
        return Err(format!("{name}: version {} is not 1", file.version));
    }
    let mut restored = Restored::default();
    let by_id: HashMap<u64, usize> = book.by_id.clone();
    for (index, raw) in file.servers.into_iter().enumerate() {
        let entry = match serde_json::from_value::<SavedServer>(raw) {
            Ok(e) => e,
            Err(e) => {
                restored
                    .skipped
                    .push(format!("{name}: servers[{index}]: {e}"));
                continue;
            }
        };
        let Some(&i) = by_id.get(&entry.id) else {
            continue; // no longer registered
        };
        let tracked = &mut book.servers[i];
        if tracked.server.ip != entry.ip {
            continue; // a new address: a new server
        }
        let skip = |reason: String| format!("{name}: servers[{index}] (id {}): {reason}", entry.id);
        if !(entry.score.is_finite() && (-100.0..=20.0).contains(&entry.score)) {
            restored.skipped.push(skip(format!(
                "score {} is not between -100 and 20",
                entry.score
            )));
            continue;
        }
        match History::from_saved(&entry.history) {
            Ok(history) => {
                tracked.score = entry.score;
                tracked.probes = entry.probes;
                tracked.scored_at = entry.scored_at;
                tracked.history = history;
                restored.servers += 1;
            }
            Err(reason) => restored.skipped.push(skip(reason)),
        }
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::clock::ClockState;
    use crate::monitor::fixtures::two_servers;
    use crate::monitor::ntp::{Measurement, Outcome};

    #[test]
    fn scores_and_history_survive_a_save_and_load() {
        let mut before = two_servers();
        before.clock = Some(ClockState::Synchronised { max_error_us: 0 });
        let ok = Outcome::Time(Measurement {
            offset: 0.002,
            delay: 0.01,
            stratum: 2,
            leap: 0,
            refid: [0; 4],
        });
        let now = std::time::SystemTime::now();
        for _ in 0..5 {
            before.record(0, ok, now);
        }
        before.record(1, Outcome::NoResponse, now);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let expected: Vec<(f64, u64)> =
            before.servers.iter().map(|t| (t.score, t.probes)).collect();
        let points: Vec<_> = before.servers.iter().map(|t| t.history.points()).collect();
        let monitor = Monitor::new(
            crate::monitor::Options::new(dir.path().join("feed.json"), path.clone()),
            before,
        );
        save(&monitor).unwrap();
        let mut after = two_servers();
        let restored = load(&path, &mut after).unwrap();
        assert_eq!(restored.servers, 2);
        assert!(restored.skipped.is_empty());
        for i in 0..2 {
            assert_eq!(
                (after.servers[i].score, after.servers[i].probes),
                expected[i]
            );
            assert_eq!(after.servers[i].history.points(), points[i]);
        }
    }

    #[test]
    fn a_damaged_state_file_is_an_error_naming_it_and_bad_entries_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut b = two_servers();
        assert_eq!(load(&path, &mut b).unwrap().servers, 0);
        std::fs::write(&path, "{\"version\": 1, \"saved_at\": 1, \"servers\": [").unwrap();
        let e = load(&path, &mut b).unwrap_err();
        assert!(e.contains("state.json: not a monitor state file"), "{e}");
        std::fs::write(
            &path,
            r#"{"version": 1, "saved_at": 1, "servers": [
                {"id": 1, "ip": "192.0.2.1", "score": 55, "probes": 1, "scored_at": 1,
                 "history": {"recent": [], "newest": 0, "buckets": ""}},
                {"id": 2}
            ]}"#,
        )
        .unwrap();
        let r = load(&path, &mut b).unwrap();
        assert_eq!(r.servers, 0);
        assert_eq!(r.skipped.len(), 2, "{:?}", r.skipped);
        assert!(r.skipped[0].ends_with("servers[0] (id 1): score 55 is not between -100 and 20"));
    }
}
