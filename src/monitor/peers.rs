//! Several monitors: each reads the others' `/monitor/scores.json` (`--peer URL`,
//! repeatable) and writes to the feed the median of the monitors' latest scores (its own
//! included) that are no older than the window (`--peer-window`, default 20 minutes), as
//! the pool takes the median over its vantage points. A monitor whose clock is
//! unsynchronised stops scoring, so its scores age out of the others' medians.
//!
//! A peer's answer is untrusted: an entry that is not a score of a server we know by the
//! same id and address is skipped, and a peer that does not answer keeps its last scores
//! (which age out by themselves).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Book, Monitor, unix};

/// Seconds a score's time may be ahead of our clock and still count.
const MAX_AHEAD: u64 = 300;

/// Largest `/monitor/scores.json` read from a peer.
const MAX_SCORES_BYTES: u64 = 64 << 20;

/// `/monitor/scores.json`: this monitor's own latest scores (not its medians, which would
/// feed back into the peers' medians).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoresFile {
    /// When it was rendered, unix seconds.
    pub time: u64,
    /// True while the monitor scores (its clock is synchronised and not suspect).
    pub scoring: bool,
    /// Why not, when not.
    #[serde(default)]
    pub not_scoring_because: Option<String>,
    /// One entry per registered server.
    pub servers: Vec<ScoreEntry>,
}

/// One server in `/monitor/scores.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreEntry {
    /// Registry id.
    pub id: u64,
    /// Address probed.
    pub ip: IpAddr,
    /// This monitor's score.
    pub score: f64,
    /// When the score last changed (the last scored probe), unix seconds; null before the
    /// first.
    pub scored_at: Option<u64>,
    /// Probes scored.
    #[serde(default)]
    pub probes: u64,
    /// The last probe's result (`ok`, `no_response`, `kod_rate`, ...).
    #[serde(default)]
    pub result: Option<String>,
    /// The last probe's offset, seconds.
    #[serde(default)]
    pub offset: Option<f64>,
    /// The last probe's round-trip delay, seconds.
    #[serde(default)]
    pub delay: Option<f64>,
    /// The last reply's stratum.
    #[serde(default)]
    pub stratum: Option<u8>,
    /// The score this monitor writes to the feed (the median).
    #[serde(default)]
    pub feed_score: Option<f64>,
}

/// What one peer said last.
#[derive(Debug, Clone, Default)]
pub struct PeerScores {
    /// Its base URL.
    pub url: String,
    /// When it last answered well.
    pub fetched_at: Option<SystemTime>,
    /// The last failure, if the last read failed.
    pub error: Option<String>,
    /// Its scores by server id: (score, scored_at).
    pub scores: HashMap<u64, (f64, u64)>,
    /// Entries skipped in its last answer.
    pub skipped: usize,
}

/// The median of `values` (the mean of the middle two for an even count); None when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// The score the feed gets for server `index`: the median of this monitor's and the peers'
/// scores no older than `window`; this monitor's own score when none is that recent (the
/// last scores are kept, never dropped).
pub fn feed_score(book: &Book, index: usize, now: u64, window: Duration) -> f64 {
    let Some(tracked) = book.servers.get(index) else {
        return super::score::INITIAL;
    };
    // A score from more than a few minutes in the future (a peer's clock far ahead, or a
    // made-up time) is not fresh: it would never age out.
    let fresh = |at: u64| at <= now + MAX_AHEAD && now.saturating_sub(at) <= window.as_secs();
    let mut values: Vec<f64> = Vec::with_capacity(book.peers.len() + 1);
    if tracked.scored_at.is_some_and(fresh) {
        values.push(tracked.score);
    }
    for peer in &book.peers {
        if let Some(&(score, at)) = peer.scores.get(&tracked.server.id)
            && fresh(at)
        {
            values.push(score);
        }
    }
    median(&mut values).unwrap_or(tracked.score)
}

/// Reads every peer each `peer_interval` until `stop` changes.
pub async fn run(monitor: Arc<Monitor>, mut stop: tokio::sync::watch::Receiver<bool>) {
    {
        let mut book = monitor.book();
        book.peers = monitor
            .options
            .peers
            .iter()
            .map(|url| PeerScores {
                url: url.clone(),
                ..PeerScores::default()
            })
            .collect();
    }
    loop {
        for (i, url) in monitor.options.peers.iter().enumerate() {
            let known: Arc<HashMap<u64, IpAddr>> = Arc::new(
                monitor
                    .book()
                    .servers
                    .iter()
                    .map(|t| (t.server.id, t.server.ip))
                    .collect(),
            );
            let fetched = tokio::task::spawn_blocking({
                let url = url.clone();
                move || fetch(&url).and_then(|body| accept(&url, &body, &known))
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            let mut book = monitor.book();
            let Some(peer) = book.peers.get_mut(i) else {
                continue;
            };
            match fetched {
                Ok(accepted) => {
                    if accepted.skipped > 0 && peer.skipped != accepted.skipped {
                        tracing::warn!(
                            "peer {url}: {} entries skipped, the first: {}",
                            accepted.skipped,
                            accepted.first_reason.as_deref().unwrap_or("")
                        );
                    }
                    peer.scores = accepted.scores;
                    peer.skipped = accepted.skipped;
                    peer.fetched_at = Some(SystemTime::now());
                    if peer.error.take().is_some() {
                        tracing::info!("peer {url}: answering again");
                    }
                }
                Err(e) => {
                    if peer.error.as_deref() != Some(e.as_str()) {
                        tracing::warn!("peer {url}: {e}; keeping its last scores");
                    }
                    peer.error = Some(e);
                }
            }
            book.changed = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(monitor.options.peer_interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// What a peer's answer gave.
#[derive(Debug, Default)]
struct Accepted {
    /// Scores of servers we know by the same id and address: (score, scored_at).
    scores: HashMap<u64, (f64, u64)>,
    /// Entries skipped.
    skipped: usize,
    /// Why the first skipped entry was, naming it.
    first_reason: Option<String>,
}

/// `/monitor/scores.json` as read: entries stay raw, so that one bad entry is skipped
/// alone (as a feed's are).
#[derive(Deserialize)]
struct RawScores<'a> {
    #[serde(borrow)]
    servers: Vec<&'a serde_json::value::RawValue>,
}

/// The scores in a peer's answer `body` (from `url`) for servers we know by the same id
/// and address. Only an answer that is not JSON of the right shape fails as a whole.
fn accept(url: &str, body: &[u8], known: &HashMap<u64, IpAddr>) -> Result<Accepted, String> {
    let raw: RawScores =
        serde_json::from_slice(body).map_err(|e| format!("{url}: not monitor scores: {e}"))?;
    let mut accepted = Accepted {
        scores: HashMap::with_capacity(raw.servers.len()),
        ..Accepted::default()
    };
    for (index, entry) in raw.servers.iter().enumerate() {
        let reason = match serde_json::from_str::<ScoreEntry>(entry.get()) {
            Err(e) => Some(e.to_string()),
            Ok(e) if known.get(&e.id) != Some(&e.ip.to_canonical()) => Some(format!(
                "id {} at {} is not a server of our registry",
                e.id, e.ip
            )),
            Ok(e) if !(e.score.is_finite() && (-100.0..=20.0).contains(&e.score)) => Some(format!(
                "id {}: score {} is not between -100 and 20",
                e.id, e.score
            )),
            Ok(e) => {
                // Never scored there yet: nothing to take, nothing wrong.
                if let Some(at) = e.scored_at {
                    accepted.scores.insert(e.id, (e.score, at));
                }
                None
            }
        };
        if let Some(reason) = reason {
            accepted.skipped += 1;
            accepted
                .first_reason
                .get_or_insert_with(|| format!("{url}: servers[{index}]: {reason}"));
        }
    }
    Ok(accepted)
}

/// GETs `{url}/monitor/scores.json`: the body.
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let target = format!("{}/monitor/scores.json", url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .get(&target)
        .call()
        .map_err(|e| format!("{target}: {e}"))?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_SCORES_BYTES)
        .read_to_vec()
        .map_err(|e| format!("{target}: {e}"))
}

/// This monitor's scores as served at `/monitor/scores.json`.
pub fn render_scores(book: &Book, now: SystemTime, window: Duration) -> ScoresFile {
    let time = unix(now);
    ScoresFile {
        time,
        scoring: book.scoring(),
        not_scoring_because: book.not_scoring_because(),
        servers: book
            .servers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let m = t.last.as_ref().and_then(|l| l.outcome.measurement());
                ScoreEntry {
                    id: t.server.id,
                    ip: t.server.ip,
                    score: t.score,
                    scored_at: t.scored_at,
                    probes: t.probes,
                    result: t.last.as_ref().map(|l| l.outcome.kind().to_owned()),
                    offset: m.map(|m| m.offset),
                    delay: m.map(|m| m.delay),
                    stratum: m.map(|m| m.stratum),
                    feed_score: Some(feed_score(book, i, time, window)),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::fixtures::two_servers;

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0]), Some(3.0));
        assert_eq!(median(&mut [20.0, -5.0, 3.0]), Some(3.0));
        assert_eq!(median(&mut [20.0, -5.0, 3.0, 10.0]), Some(6.5));
    }

    fn book() -> Book {
        let mut book = two_servers();
        book.servers[0].score = 18.0;
        book.servers[0].scored_at = Some(1000);
        book
    }

    #[test]
    fn the_feed_takes_the_median_of_fresh_scores_and_keeps_the_last_without_any() {
        let mut book = book();
        let window = Duration::from_secs(1200);
        assert_eq!(feed_score(&book, 0, 1100, window), 18.0);
        for (score, at) in [(4.0, 1100), (12.0, 1250), (-50.0, 1), (-99.0, 9_999_999)] {
            book.peers.push(PeerScores {
                scores: HashMap::from([(1, (score, at))]),
                ..PeerScores::default()
            });
        }
        // The third peer's score is too old, the fourth's from the future: median of 18,
        // 4, 12.
        assert_eq!(feed_score(&book, 0, 1300, window), 12.0);
        // Ours too old as well: median of 4 and 12.
        assert_eq!(feed_score(&book, 0, 2250, window), 8.0);
        // None fresh: our last score stands.
        assert_eq!(feed_score(&book, 0, 9999, window), 18.0);
    }

    #[test]
    fn a_peer_entry_for_another_address_or_out_of_range_is_skipped() {
        let book = book();
        let known = book
            .servers
            .iter()
            .map(|t| (t.server.id, t.server.ip))
            .collect();
        let body = br#"{"time": 5, "scoring": true, "servers": [
                {"id": 1, "ip": "192.0.2.1", "score": 7.5, "scored_at": 4},
                {"id": 2, "ip": "192.0.2.9", "score": 7.5, "scored_at": 4},
                {"id": 3, "ip": "192.0.2.3", "score": 7.5, "scored_at": 4},
                {"id": 2, "ip": "192.0.2.2", "score": 99, "scored_at": 4},
                {"id": 2, "ip": "not an address", "score": 1, "scored_at": 4},
                {"id": 2, "ip": "192.0.2.2", "score": 1, "scored_at": null}
            ]}"#;
        let accepted = accept("http://peer", body, &known).unwrap();
        assert_eq!(accepted.scores, HashMap::from([(1, (7.5, 4))]));
        assert_eq!(accepted.skipped, 4);
        assert_eq!(
            accepted.first_reason.as_deref(),
            Some("http://peer: servers[1]: id 2 at 192.0.2.9 is not a server of our registry")
        );
        let e = accept("http://peer", b"[1, 2]", &known).unwrap_err();
        assert!(e.starts_with("http://peer: not monitor scores"), "{e}");
    }
}
