//! `pooldns monitor`: the health half of the pool. A separate flow from serving, run as its
//! own process; it shares only the feed file with `serve`:
//!
//! ```text
//!  registry.json ──registry──▶ servers ──schedule──▶ probe (NTP, ntp) ──score──▶ Book
//!                                                                            │
//!   peers' /monitor/scores.json ──peers──▶ median ◀──────────────────────────┘
//!                                            │
//!                                            └──output──▶ feed.json ──▶ pooldns serve
//!  state.json ◀──persist──▶ Book (scores and history survive a restart)
//! ```
//!
//! [`ntp`] and [`score`] are pure (bytes and results in, values out); [`probe`] alone
//! touches the probe sockets, [`schedule`] decides when each server is probed, [`clock`]
//! whether the monitor may score at all.

pub mod clock;
pub mod history;
pub mod ntp;
pub mod output;
pub mod pages;
pub mod peers;
pub mod persist;
pub mod probe;
pub mod registry;
pub mod schedule;
pub mod score;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clock::{ClockSource, ClockState};
use history::{History, Probe};
use ntp::{KINDS, Outcome};
use registry::Registered;

/// What `pooldns monitor` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The feed to write (`--out`).
    pub out: PathBuf,
    /// The state file (`--state`).
    pub state: PathBuf,
    /// Mean time between two probes of a server (`--interval`).
    pub interval: Duration,
    /// Most probes sent per second, all servers together (`--max-rate`).
    pub max_rate: f64,
    /// Time to wait for a reply before the one retry, and then before giving up.
    pub timeout: Duration,
    /// The UDP port probed (123).
    pub port: u16,
    /// Other monitors' base URLs (`--peer`).
    pub peers: Vec<String>,
    /// How old a monitor's latest score may be to count in the median (`--peer-window`).
    pub window: Duration,
    /// Least time between two writes of the feed.
    pub write_interval: Duration,
    /// Time between two saves of the state file (it is saved on exit too).
    pub save_interval: Duration,
    /// Time between two reads of each peer.
    pub peer_interval: Duration,
    /// Where the clock state comes from.
    pub clock: ClockSource,
    /// The registry file, re-read on SIGHUP and when it changes; None: never re-read.
    pub registry: Option<PathBuf>,
    /// The GeoIP database that places registry entries without a country.
    pub geo: Option<Arc<crate::geo::GeoDb>>,
}

impl Options {
    /// The defaults for an output and a state file.
    pub fn new(out: PathBuf, state: PathBuf) -> Options {
        Options {
            out,
            state,
            interval: Duration::from_secs(60),
            max_rate: 500.0,
            timeout: Duration::from_secs(1),
            port: 123,
            peers: Vec::new(),
            window: Duration::from_secs(20 * 60),
            write_interval: Duration::from_secs(5),
            save_interval: Duration::from_secs(300),
            peer_interval: Duration::from_secs(30),
            clock: ClockSource::Kernel,
            registry: None,
            geo: None,
        }
    }
}

/// What the monitor knows of one registered server. Held in the [`Book`]; changed by the
/// probe that finishes for it.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// The registry entry.
    pub server: Registered,
    /// This monitor's score.
    pub score: f64,
    /// Probes scored so far.
    pub probes: u64,
    /// When the last scored probe ended, unix seconds; None before the first.
    pub scored_at: Option<u64>,
    /// The last probe, scored or not (while the clock is unsynchronised, probes go on but
    /// are not scored).
    pub last: Option<LastProbe>,
    /// Score and offset over time.
    pub history: History,
    /// A probe of it is under way (a server is never probed twice at once).
    pub busy: bool,
}

/// The last probe of a server, for the pages and `--once`.
#[derive(Debug, Clone, Copy)]
pub struct LastProbe {
    /// When it ended, unix seconds.
    pub time: u64,
    /// What it found.
    pub outcome: Outcome,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Probes by result kind (index in [`KINDS`]).
    pub probes: [u64; KINDS.len()],
    /// Probes not scored because the clock was unsynchronised or suspect.
    pub unscored: u64,
    /// |offset| histogram, per [`OFFSET_BUCKETS`], plus the sum.
    pub offsets: Histogram,
    /// Delay histogram, per [`DELAY_BUCKETS`].
    pub delays: Histogram,
    /// Feed files written.
    pub feed_writes: u64,
    /// Feed writes that failed.
    pub feed_write_errors: u64,
}

/// Upper bounds (seconds) of the |offset| histogram.
pub const OFFSET_BUCKETS: [f64; 8] = [0.001, 0.005, 0.025, 0.1, 0.25, 0.75, 3.0, 10.0];
/// Upper bounds (seconds) of the delay histogram.
pub const DELAY_BUCKETS: [f64; 7] = [0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 1.0];

/// A Prometheus histogram: counts per upper bound (cumulative when rendered), sum, count.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Observations at or below each bound (not cumulative).
    pub counts: Vec<u64>,
    /// Sum of observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        if let Some(i) = bounds.iter().position(|&b| value <= b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

/// Everything the monitor knows, behind one lock: the servers, the clock, the peers'
/// scores and the counters. Probes lock it for a moment to record a result.
#[derive(Debug, Default)]
pub struct Book {
    /// The servers, in registry order.
    pub servers: Vec<Tracked>,
    /// Index in `servers` by id.
    pub by_id: HashMap<u64, usize>,
    /// The clock as last read.
    pub clock: Option<ClockState>,
    /// True while most servers disagree with our clock the same way.
    pub suspect: bool,
    /// Latest usable offset per server and when (unix seconds), for the suspicion check.
    pub offsets: Vec<Option<(f64, u64)>>,
    /// What each peer said last.
    pub peers: Vec<peers::PeerScores>,
    /// Counters.
    pub counters: Counters,
    /// A score changed since the feed was last written.
    pub changed: bool,
    /// Messages of the registry entries skipped.
    pub skipped: Vec<String>,
    /// Bumped by each registry reload, so the scheduler picks up new servers.
    pub generation: u64,
}

impl Book {
    /// A book of `servers`, all new (score 0, no history).
    pub fn new(servers: Vec<Registered>) -> Book {
        let by_id = servers.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        let n = servers.len();
        Book {
            servers: servers
                .into_iter()
                .map(|server| Tracked {
                    server,
                    score: score::INITIAL,
                    probes: 0,
                    scored_at: None,
                    last: None,
                    history: History::default(),
                    busy: false,
                })
                .collect(),
            by_id,
            offsets: vec![None; n],
            changed: true,
            ..Book::default()
        }
    }

    /// True when results may be scored now.
    pub fn scoring(&self) -> bool {
        self.clock.as_ref().is_some_and(|c| c.is_synchronised()) && !self.suspect
    }

    /// Why the monitor is not scoring, when it is not.
    pub fn not_scoring_because(&self) -> Option<String> {
        match &self.clock {
            None => Some("the clock has not been checked yet".to_owned()),
            Some(ClockState::Unsynchronised(reason)) => {
                Some(format!("the local clock is not synchronised: {reason}"))
            }
            Some(ClockState::Synchronised { .. }) if self.suspect => Some(format!(
                "most servers disagree with the local clock by more than {} ms in the same \
                 direction: suspecting the local clock",
                (clock::SUSPECT_OFFSET * 1000.0) as u32
            )),
            Some(ClockState::Synchronised { .. }) => None,
        }
    }

    /// Replaces the registry: a server of the new one with the same id and address keeps its
    /// score and history (a new address is a new server, at 0); servers no longer
    /// registered are forgotten. Returns how many were added and how many dropped (a
    /// changed address counts as both).
    pub fn replace(&mut self, servers: Vec<Registered>) -> (usize, usize) {
        let mut old: HashMap<u64, (Tracked, Option<(f64, u64)>)> =
            std::mem::take(&mut self.servers)
                .into_iter()
                .zip(std::mem::take(&mut self.offsets))
                .map(|(t, o)| (t.server.id, (t, o)))
                .collect();
        let (mut added, mut moved) = (0, 0);
        for server in servers {
            match old.remove(&server.id) {
                Some((mut tracked, offset)) if tracked.server.ip == server.ip => {
                    tracked.server = server;
                    self.servers.push(tracked);
                    self.offsets.push(offset);
                }
                other => {
                    moved += usize::from(other.is_some());
                    added += 1;
                    self.servers.extend(Book::new(vec![server]).servers);
                    self.offsets.push(None);
                }
            }
        }
        let (n_added, n_dropped) = (added, old.len() + moved);
        self.by_id = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.server.id, i))
            .collect();
        self.generation += 1;
        self.changed = true;
        (n_added, n_dropped)
    }

    /// Records the probe of server `id` at `ip`; ignored when the registry no longer has
    /// that server at that address (reloaded while the probe was under way).
    pub fn record_probe(
        &mut self,
        id: u64,
        ip: std::net::IpAddr,
        outcome: Outcome,
        now: SystemTime,
    ) {
        let Some(&index) = self.by_id.get(&id) else {
            return;
        };
        if self.servers[index].server.ip == ip {
            self.servers[index].busy = false;
            self.record(index, outcome, now);
        }
    }

    /// Records the probe of server `index` that ended at `now` with `outcome`: counted
    /// always, scored only while [`Book::scoring`].
    pub fn record(&mut self, index: usize, outcome: Outcome, now: SystemTime) {
        let kind = KINDS.iter().position(|k| *k == outcome.kind()).unwrap_or(0);
        self.counters.probes[kind] += 1;
        let time = unix(now);
        if let Some(m) = outcome.measurement() {
            self.counters
                .offsets
                .observe(&OFFSET_BUCKETS, m.offset.abs());
            self.counters.delays.observe(&DELAY_BUCKETS, m.delay);
        }
        if let (Outcome::Time(m), Some(slot)) = (&outcome, self.offsets.get_mut(index)) {
            *slot = Some((m.offset, time));
        }
        let scoring = self.scoring();
        let Some(tracked) = self.servers.get_mut(index) else {
            return;
        };
        tracked.last = Some(LastProbe { time, outcome });
        if !scoring {
            self.counters.unscored += 1;
            return;
        }
        tracked.score = score::next(tracked.score, &outcome);
        tracked.probes += 1;
        tracked.scored_at = Some(time);
        tracked.history.record(Probe {
            time: u32::try_from(time).unwrap_or(u32::MAX),
            score: tracked.score as f32,
            offset: outcome.measurement().map_or(f32::NAN, |m| m.offset as f32),
            kind: kind as u8,
        });
        self.changed = true;
    }

    /// Re-reads the suspicion: most servers' offsets of the last `window` off the same way.
    pub fn check_suspicion(&mut self, now: SystemTime, window: Duration) {
        let now = unix(now);
        let recent = self
            .offsets
            .iter()
            .flatten()
            .filter(|(_, t)| now.saturating_sub(*t) <= window.as_secs())
            .map(|(o, _)| *o);
        self.suspect = clock::suspect_self(recent);
    }
}

/// A shared monitor: the book and the options, for the tasks and the HTTP handlers.
#[derive(Debug)]
pub struct Monitor {
    /// The options.
    pub options: Options,
    book: Mutex<Book>,
    /// The feed as last written, also served at `/monitor/feed.json`; None before the
    /// first write.
    feed: Mutex<Option<Arc<WrittenFeed>>>,
}

/// A feed as written: its bytes and their entity tag.
#[derive(Debug)]
pub struct WrittenFeed {
    /// The JSON.
    pub bytes: Vec<u8>,
    /// A quoted hash of the bytes, for conditional requests.
    pub etag: String,
}

impl Monitor {
    /// A monitor of `book`.
    pub fn new(options: Options, book: Book) -> Arc<Monitor> {
        Arc::new(Monitor {
            options,
            book: Mutex::new(book),
            feed: Mutex::new(None),
        })
    }

    /// The feed as last written.
    pub fn feed(&self) -> Option<Arc<WrittenFeed>> {
        self.feed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps `bytes` as the feed last written.
    fn keep_feed(&self, bytes: Vec<u8>) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        bytes.hash(&mut hasher);
        let etag = format!("\"{:016x}\"", hasher.finish());
        *self.feed.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(WrittenFeed { bytes, etag }));
    }

    /// The book, locked. A panic while it was held (a bug) does not stop the monitor.
    pub fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Unix seconds of `t`.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Runs the monitor until `shutdown` completes: probes, scores, the clock check, peers, the
/// feed and state files, and the HTTP listener when given. Saves the state and writes the
/// feed before returning.
pub async fn run(
    monitor: Arc<Monitor>,
    http: Option<tokio::net::TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Read the clock before the first probe can end.
    let first = monitor.options.clock.read();
    monitor.book().clock = Some(first);
    let prober = probe::Prober::bind(monitor.options.port, monitor.options.timeout)?;
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(watch_clock(monitor.clone(), stop_rx.clone())));
    tasks.push(tokio::spawn(schedule::run(
        monitor.clone(),
        prober.clone(),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(output::run(monitor.clone(), stop_rx.clone())));
    if monitor.options.registry.is_some() {
        tasks.push(tokio::spawn(watch_registry(
            monitor.clone(),
            stop_rx.clone(),
        )));
    }
    if !monitor.options.peers.is_empty() {
        tasks.push(tokio::spawn(peers::run(monitor.clone(), stop_rx.clone())));
    }
    if let Some(listener) = http {
        let mut stop = stop_rx.clone();
        let app = pages::router(monitor.clone(), prober.clone());
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await;
            if let Err(e) = served {
                tracing::error!("monitor HTTP: {e}");
            }
        }));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    prober.close();
    // The last word: the feed as scored now, and the state to start from next time.
    output::write_feed(&monitor);
    let saved = {
        let monitor = monitor.clone();
        tokio::task::spawn_blocking(move || persist::save(&monitor)).await
    };
    match saved {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// The table `pooldns monitor --once` prints: per server the result, offset and delay in
/// ms, stratum, reference id and the step the score rule gives it; and whether every probe
/// gained points.
pub fn render_once(book: &Book, outcomes: &[Outcome]) -> (String, bool) {
    use std::fmt::Write as _;
    let mut out = format!(
        "{:>8}  {:<39}  {:<22}  {:>10}  {:>9}  {:>7}  {:<15}  {:>7}\n",
        "id", "address", "result", "offset ms", "delay ms", "stratum", "refid", "step"
    );
    let mut all_good = true;
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.3}", v * 1000.0));
    for (tracked, outcome) in book.servers.iter().zip(outcomes) {
        let m = outcome.measurement();
        let step = score::step(outcome);
        all_good &= step.step > 0.0;
        let _ = writeln!(
            out,
            "{:>8}  {:<39}  {:<22}  {:>10}  {:>9}  {:>7}  {:<15}  {:>+7.3}",
            tracked.server.id,
            tracked.server.ip.to_string(),
            outcome.kind(),
            ms(m.map(|m| m.offset)),
            ms(m.map(|m| m.delay)),
            m.map_or("-".to_owned(), |m| m.stratum.to_string()),
            m.map_or("-".to_owned(), |m| ntp::render_refid(m.refid)),
            step.step,
        );
    }
    (out, all_good)
}

/// Reads the clock every second, and the suspicion with it; logs each change.
async fn watch_clock(monitor: Arc<Monitor>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut was: Option<Option<String>> = None;
    loop {
        let source = monitor.options.clock.clone();
        let state = tokio::task::spawn_blocking(move || source.read())
            .await
            .unwrap_or_else(|e| ClockState::Unsynchronised(e.to_string()));
        let reason = {
            let mut book = monitor.book();
            book.clock = Some(state);
            book.check_suspicion(SystemTime::now(), clock::SUSPECT_WINDOW);
            book.not_scoring_because()
        };
        if was.as_ref() != Some(&reason) {
            match &reason {
                Some(why) => tracing::warn!("not scoring, keeping the last scores: {why}"),
                None => tracing::info!("the local clock is synchronised: scoring"),
            }
            was = Some(reason);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Re-reads the registry on SIGHUP and when the file changes (checked every 2 s). A
/// registry that cannot be read, or holds no server, is refused: the last good one stays.
async fn watch_registry(monitor: Arc<Monitor>, mut stop: tokio::sync::watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Some(path) = monitor.options.registry.clone() else {
        return;
    };
    let stamp = |path: &std::path::Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut hangup = signal(SignalKind::hangup()).ok();
    let mut seen = stamp(&path);
    loop {
        let hup = async {
            match hangup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let forced = tokio::select! {
            _ = hup => true,
            _ = tokio::time::sleep(Duration::from_secs(2)) => false,
            _ = stop.changed() => return,
        };
        let now = stamp(&path);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        let (file, geo) = (path.clone(), monitor.options.geo.clone());
        let loaded =
            tokio::task::spawn_blocking(move || registry::load_file(&file, geo.as_deref()))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        match loaded {
            Ok(registry) if !registry.servers.is_empty() => {
                for message in registry.skipped.iter().take(20) {
                    tracing::warn!("skipped: {message}");
                }
                let n = registry.servers.len();
                let (added, dropped) = {
                    let mut book = monitor.book();
                    book.skipped = registry.skipped;
                    book.replace(registry.servers)
                };
                tracing::info!(
                    "{}: reloaded, {n} servers ({added} new, {dropped} dropped)",
                    path.display()
                );
            }
            Ok(_) => tracing::error!(
                "{}: no server in the new registry; still monitoring the last good one",
                path.display()
            ),
            Err(e) => tracing::error!("{e}; still monitoring the last good registry"),
        }
    }
}

/// Books for the monitor's unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{Book, Registered};

    /// A registered server in Germany at 1,000 kbit/s.
    pub(crate) fn server(id: u64, ip: &str) -> Registered {
        Registered {
            id,
            ip: ip.parse().unwrap(),
            netspeed: 1000,
            country: "de".into(),
            zones: None,
        }
    }

    /// Servers 1 and 2 at 192.0.2.1 and .2, never probed.
    pub(crate) fn two_servers() -> Book {
        Book::new(vec![server(1, "192.0.2.1"), server(2, "192.0.2.2")])
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{server, two_servers};
    use super::*;

    #[test]
    fn the_once_table_shows_each_result_and_its_step() {
        let book = two_servers();
        let ok = Outcome::Time(ntp::Measurement {
            offset: 0.0123,
            delay: 0.004,
            stratum: 2,
            leap: 0,
            refid: *b"GPS\0",
        });
        let (table, all_good) = render_once(&book, &[ok, Outcome::NoResponse]);
        let lines: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[1],
            [
                "1",
                "192.0.2.1",
                "ok",
                "12.300",
                "4.000",
                "2",
                "GPS",
                "+1.000"
            ]
        );
        assert_eq!(
            lines[2],
            [
                "2",
                "192.0.2.2",
                "no_response",
                "-",
                "-",
                "-",
                "-",
                "-5.000"
            ]
        );
        assert!(!all_good);
        assert!(render_once(&book, &[ok, ok]).1);
    }

    #[test]
    fn a_registry_reload_keeps_the_scores_of_servers_it_keeps() {
        let mut book = Book::new(vec![
            server(1, "192.0.2.1"),
            server(2, "192.0.2.2"),
            server(3, "192.0.2.3"),
        ]);
        book.clock = Some(ClockState::Synchronised { max_error_us: 0 });
        for i in 0..3 {
            book.record(i, Outcome::NoResponse, SystemTime::now());
        }
        let mut moved = server(2, "192.0.2.22");
        moved.netspeed = 5;
        let mut renamed = server(1, "192.0.2.1");
        renamed.netspeed = 7;
        let (added, dropped) = book.replace(vec![server(4, "192.0.2.4"), renamed, moved]);
        assert_eq!((added, dropped), (2, 2));
        let ids: Vec<u64> = book.servers.iter().map(|t| t.server.id).collect();
        assert_eq!(ids, [4, 1, 2]);
        assert_eq!(book.servers[1].score, -5.0);
        assert_eq!(book.servers[1].server.netspeed, 7);
        // A new address is a new server.
        assert_eq!(book.servers[2].score, 0.0);
        assert_eq!(book.by_id[&2], 2);
        assert_eq!(book.offsets.len(), 3);
        // A probe of the old address that ends after the reload is not recorded.
        book.record_probe(
            2,
            "192.0.2.2".parse().unwrap(),
            Outcome::NoResponse,
            SystemTime::now(),
        );
        assert_eq!(book.servers[2].probes, 0);
        book.record_probe(
            2,
            "192.0.2.22".parse().unwrap(),
            Outcome::NoResponse,
            SystemTime::now(),
        );
        assert_eq!(book.servers[2].probes, 1);
    }
}
