//! Loading and hot swap: inputs are read and a complete table is built off the query path,
//! checked against the table it would replace, then published with one atomic swap
//! (DESIGN §5). A feed that fails to load, or that would drop more than half of the
//! eligible servers at once, is refused and the last good table keeps serving; so is a zone
//! configuration or GeoIP database that fails to load. Every refusal is logged with the
//! file or URL and the reason, and recorded in [`ReloadStatus`].
//!
//! Triggers:
//! - a change of the feed file, the zone configuration or the GeoIP database (watched):
//!   that input is reloaded and a table built from it and the last good others;
//! - a new body at the feed URL, when the feed is one (polled by
//!   [`crate::feed::source::Poller`] on a thread of its own, with conditional requests,
//!   jitter and backoff);
//! - SIGHUP: configuration, GeoIP database and feed (a URL is fetched without validators);
//! - the start of a new rotation epoch (rebuilds the numbered split).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::config::{ConfigError, ZoneConfig};
use crate::feed::source::{Fetched, Fetcher, Polled, Poller};
use crate::feed::{self, Feed, FeedError, FeedSource, PollOptions};
use crate::geo::{GeoDb, GeoError};
use crate::guard::ShrinkGuard;
use crate::plan::demand::{Demand, DemandError};
use crate::server::SharedTable;
use crate::state::StateDir;
use crate::table::{Family, Names, Table, epoch_at};
use crate::watch::FileWatch;

/// Where the inputs live.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Zone configuration file.
    pub config: PathBuf,
    /// The feed: a file, or an `http://` / `https://` URL (see [`FeedSource::from_arg`]).
    /// A path, so that the command line hands it over as written.
    pub feed: PathBuf,
    /// GeoIP database; None = the one the configuration names.
    pub geoip: Option<PathBuf>,
    /// Where the last good feed and the shrink guard's history are kept between runs
    /// ([`crate::state`]); None keeps nothing.
    pub state: Option<PathBuf>,
    /// Accept a first feed that drops more than half of the eligible servers of the
    /// history kept in `state` (`serve --accept-shrink`).
    pub accept_shrink: bool,
    /// The plan's demand file; None = the one the configuration names, if any.
    pub demand: Option<PathBuf>,
}

/// The GeoIP database used when neither the command line nor the configuration names one.
pub const DEFAULT_GEOIP: &str = "data/dbip-country.mmdb";

/// Why loading failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Zone configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Feed.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// GeoIP database.
    #[error(transparent)]
    Geo(#[from] GeoError),
    /// The GeoIP database the configuration names.
    #[error("{config}: geoip = {written:?}: {source}")]
    ConfiguredGeo {
        /// The configuration file.
        config: PathBuf,
        /// The value of its `geoip` key.
        written: String,
        /// Why the database could not be opened.
        source: GeoError,
    },
    /// The new feed would remove too many servers.
    #[error(
        "{feed}: refused: it has {new} eligible servers where the pool had up to {old} in \
         the last hour; more than half would be dropped at once (if that is meant, accept \
         it with `pooldns reload --accept-shrink`)"
    )]
    TooManyDropped {
        /// The feed.
        feed: String,
        /// The guard's reference: the most eligible servers of the last hour.
        old: usize,
        /// Eligible servers in the new feed.
        new: usize,
    },
    /// The new zone configuration would make too many servers ineligible (a higher
    /// `min_score`, say).
    #[error(
        "{config}: refused: with it {new} servers are eligible where the pool had up to \
         {old} in the last hour; more than half would be dropped at once (if that is meant, \
         accept it with `pooldns reload --accept-shrink`)"
    )]
    ConfigDrops {
        /// The configuration file.
        config: PathBuf,
        /// The guard's reference.
        old: usize,
        /// Eligible servers with the new configuration.
        new: usize,
    },
    /// The state directory cannot be used.
    #[error("{0}")]
    State(String),
    /// The demand file.
    #[error(transparent)]
    Demand(#[from] DemandError),
}

impl LoadError {
    /// The input that failed to load.
    pub fn input(&self) -> Input {
        match self {
            LoadError::Config(_) | LoadError::ConfigDrops { .. } => Input::Config,
            LoadError::Feed(_) | LoadError::TooManyDropped { .. } | LoadError::State(_) => {
                Input::Feed
            }
            LoadError::Geo(_) | LoadError::ConfiguredGeo { .. } => Input::Geoip,
            LoadError::Demand(_) => Input::Demand,
        }
    }
}

/// The last good inputs, from which tables are built.
#[derive(Debug, Clone)]
struct Inputs {
    config: Arc<ZoneConfig>,
    names: Arc<Names>,
    geo: Arc<GeoDb>,
    feed: Arc<Feed>,
    /// The demand file's, when there is one (else the plan uses the GeoIP prior).
    demand: Option<Arc<Demand>>,
}

/// Owns the inputs and publishes tables. Clone-free: one reloader per server.
#[derive(Debug)]
pub struct Reloader {
    sources: Sources,
    /// `sources.feed`, read: a file or a URL.
    feed_source: FeedSource,
    /// How a feed URL is polled.
    poll: PollOptions,
    inputs: Inputs,
    table: SharedTable,
    /// Load history, for the status surface.
    status: Arc<ReloadStatus>,
    /// The feed URL's fetcher, holding the validators of the body loaded at startup; the
    /// poller thread takes it when watching starts.
    fetcher: Option<Fetcher>,
    /// The file watch and the URL poller, once started.
    watching: Option<Watching>,
    /// Requests from the operator (`pooldns reload`), through the HTTP admin endpoint.
    admin: (
        mpsc::Sender<AdminRequest>,
        Option<mpsc::Receiver<AdminRequest>>,
    ),
    /// Set by `pooldns reload --accept-shrink`: the next feed may drop more than half of
    /// the eligible servers. Cleared once a feed is accepted, and after a reload of a feed
    /// file whatever its outcome.
    accept_shrink: bool,
    /// The wall clock, which decides the rotation epoch; replaced in tests.
    clock: Clock,
    /// The state directory, when there is one.
    state: Option<StateDir>,
    /// Eligible counts published lately: the reference of the shrink guard.
    guard: ShrinkGuard,
}

/// A source of wall-clock time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// A clock that reads `now`.
    pub fn new(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The time.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// The system's clock.
pub fn system_clock() -> Clock {
    Clock::new(SystemTime::now)
}

/// An operator's request to reload, from the admin endpoint.
#[derive(Debug)]
pub struct AdminRequest {
    /// Accept one feed that drops more than half of the eligible servers.
    pub accept_shrink: bool,
    /// Where the outcome goes: what is serving now, or why the reload was refused.
    pub reply: tokio::sync::oneshot::Sender<Result<String, String>>,
}

/// Sends operator requests to a running reloader.
#[derive(Debug, Clone)]
pub struct AdminHandle(mpsc::Sender<AdminRequest>);

impl AdminHandle {
    /// Reloads every input as SIGHUP does, optionally accepting one shrinking feed, and
    /// waits for the outcome.
    pub async fn reload(&self, accept_shrink: bool) -> Result<String, String> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.0
            .send(AdminRequest {
                accept_shrink,
                reply,
            })
            .await
            .map_err(|_| "the reloader has stopped".to_owned())?;
        outcome
            .await
            .map_err(|_| "the reloader has stopped".to_owned())?
    }
}

/// An input the reloader loads: each is reported on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The server feed.
    Feed,
    /// The zone configuration.
    Config,
    /// The GeoIP database.
    Geoip,
    /// The demand file of the serving plan.
    Demand,
}

impl Input {
    /// Every input, in the order reports list them.
    pub const ALL: [Input; 4] = [Input::Feed, Input::Config, Input::Geoip, Input::Demand];

    /// The label in metrics and `/status`.
    pub fn label(self) -> &'static str {
        match self {
            Input::Feed => "feed",
            Input::Config => "config",
            Input::Geoip => "geoip",
            Input::Demand => "demand",
        }
    }

    /// A name for people.
    pub fn title(self) -> &'static str {
        match self {
            Input::Feed => "Feed",
            Input::Config => "Zone configuration",
            Input::Geoip => "GeoIP database",
            Input::Demand => "Demand",
        }
    }
}

/// The load history of one input.
#[derive(Debug, Default)]
pub struct InputStatus {
    /// Loads accepted (the one at startup included).
    pub ok: AtomicU64,
    /// Loads refused.
    pub refused: AtomicU64,
    /// When the last good load was, and from where.
    pub last_good: Mutex<Option<(SystemTime, String)>>,
    /// The error of the latest load, when it failed: when, and the whole message (lines
    /// kept). Cleared when the input loads fine again.
    pub error: Mutex<Option<(SystemTime, String)>>,
}

/// What the reloader has done, per input, shared with the HTTP side.
#[derive(Debug, Default)]
pub struct ReloadStatus {
    /// Feed, configuration, GeoIP database and demand, in [`Input::ALL`] order.
    inputs: [InputStatus; 4],
    /// The last refusal of any input, kept after the input loads again: when, which and
    /// why.
    last_refusal: Mutex<Option<(SystemTime, Input, String)>>,
    /// Feed entries skipped since start, by reason.
    pub skipped: Mutex<BTreeMap<&'static str, u64>>,
}

impl ReloadStatus {
    /// The history of one input.
    pub fn input(&self, input: Input) -> &InputStatus {
        &self.inputs[input as usize]
    }

    /// Loads accepted, all inputs together.
    pub fn loads_ok(&self) -> u64 {
        self.inputs
            .iter()
            .map(|i| i.ok.load(Ordering::Relaxed))
            .sum()
    }

    /// Loads refused, all inputs together.
    pub fn loads_refused(&self) -> u64 {
        self.inputs
            .iter()
            .map(|i| i.refused.load(Ordering::Relaxed))
            .sum()
    }

    /// The last refusal of any input: when, which and why.
    pub fn last_refusal(&self) -> Option<(SystemTime, Input, String)> {
        self.last_refusal.lock().ok().and_then(|g| g.clone())
    }

    fn loaded(&self, input: Input, from: &str) {
        let status = self.input(input);
        status.ok.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = status.last_good.lock() {
            *last = Some((SystemTime::now(), from.to_owned()));
        }
        if let Ok(mut error) = status.error.lock() {
            *error = None;
        }
    }

    fn loaded_feed(&self, feed: &Feed) {
        self.loaded(Input::Feed, &feed.source);
        if let Ok(mut skipped) = self.skipped.lock() {
            for s in &feed.report.skipped {
                *skipped.entry(s.reason.kind()).or_default() += 1;
            }
        }
    }

    fn refused(&self, input: Input, why: String) {
        let status = self.input(input);
        status.refused.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now();
        if let Ok(mut error) = status.error.lock() {
            *error = Some((now, why.clone()));
        }
        if let Ok(mut last) = self.last_refusal.lock() {
            *last = Some((now, input, why));
        }
    }
}

/// Which inputs changed, as bits: set by the file watch, read by `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Changed(u8);

impl Changed {
    const FEED: Changed = Changed(1);
    const CONFIG: Changed = Changed(2);
    const GEOIP: Changed = Changed(4);
    const DEMAND: Changed = Changed(8);
    const ALL: Changed = Changed(15);

    fn has(self, input: Changed) -> bool {
        self.0 & input.0 != 0
    }
}

/// The watch on the input files and the poller of a feed URL.
#[derive(Debug)]
struct Watching {
    /// The file watcher; None when it could not be set up (SIGHUP still reloads).
    watcher: Option<FileWatch>,
    /// The files it watches, and the input each one is. The GeoIP database's path can move
    /// with a new configuration; the watch follows it.
    files: Vec<(Changed, PathBuf)>,
    /// Inputs changed since `run` last looked (bits of [`Changed`]).
    pending: Arc<AtomicU8>,
    /// Wakes `run` once `pending` was set.
    wake: mpsc::Sender<()>,
    /// Polls the feed URL, when the feed is one.
    poller: Option<Poller>,
    /// The receiving ends, until `run` takes them.
    receivers: Option<(mpsc::Receiver<()>, mpsc::Receiver<Polled>)>,
}

fn load_config(path: &Path) -> Result<(Arc<ZoneConfig>, Arc<Names>), ConfigError> {
    let config = ZoneConfig::load(path)?;
    let names = Names::build(&config)?;
    Ok((Arc::new(config), Arc::new(names)))
}

/// The GeoIP database to use: the command line's, else the configuration's, else the
/// default.
fn geo_path(sources: &Sources, config: &ZoneConfig) -> PathBuf {
    sources
        .geoip
        .clone()
        .or_else(|| config.geoip.as_ref().map(|g| g.path.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_GEOIP))
}

/// The demand file to use: the command line's, else the configuration's; None = none.
fn demand_path(sources: &Sources, config: &ZoneConfig) -> Option<PathBuf> {
    sources
        .demand
        .clone()
        .or_else(|| config.balance.demand.as_ref().map(|d| d.path.clone()))
}

/// Loads the demand file, if there is one.
fn load_demand(sources: &Sources, config: &ZoneConfig) -> Result<Option<Arc<Demand>>, LoadError> {
    match demand_path(sources, config) {
        Some(path) => Ok(Some(Arc::new(crate::plan::demand::load_file(&path)?))),
        None => Ok(None),
    }
}

/// Opens the database [`geo_path`] names; an error names the configuration key when the
/// path came from there.
fn open_geo(sources: &Sources, config: &ZoneConfig) -> Result<GeoDb, LoadError> {
    GeoDb::open(&geo_path(sources, config)).map_err(|source| match &config.geoip {
        Some(g) if sources.geoip.is_none() => LoadError::ConfiguredGeo {
            config: config.path.clone(),
            written: g.written.clone(),
            source,
        },
        _ => source.into(),
    })
}

impl Reloader {
    /// Loads every input and builds the first table; a feed URL is fetched once, and
    /// polled every 30 seconds once watching starts. Any error here is fatal to startup.
    pub fn load(sources: Sources) -> Result<Reloader, LoadError> {
        Self::load_with(sources, PollOptions::default())
    }

    /// [`Reloader::load`], polling a feed URL with `poll`. Blocks while the URL is fetched.
    ///
    /// With a state directory, a feed that fails to load, or that the shrink guard
    /// refuses against the kept history, is replaced by the last good feed kept there (and
    /// reported as refused), so a restart while the source is down or broken still serves
    /// what the fleet serves. Without a last good feed, those are fatal as before.
    pub fn load_with(sources: Sources, poll: PollOptions) -> Result<Reloader, LoadError> {
        let (config, names) = load_config(&sources.config)?;
        let geo = Arc::new(open_geo(&sources, &config)?);
        let demand = load_demand(&sources, &config)?;
        let state = match &sources.state {
            Some(dir) => Some(StateDir::open(dir).map_err(|e| LoadError::State(e.to_string()))?),
            None => None,
        };
        let mut guard = match state.as_ref().map(|s| ShrinkGuard::load(&s.guard_path())) {
            Some(Ok(guard)) => guard,
            Some(Err(e)) => {
                tracing::warn!("{e}; starting without the shrink guard's history");
                ShrinkGuard::default()
            }
            None => ShrinkGuard::default(),
        };
        let feed_source = FeedSource::from_arg(&sources.feed);
        let mut fetcher = None;
        let fetched: Result<Feed, LoadError> = match &feed_source {
            FeedSource::File(path) => feed::load_file(path).map_err(LoadError::from),
            FeedSource::Url(url) => {
                let mut f = Fetcher::new(url, &poll);
                let result = match f.fetch() {
                    Ok(Fetched::Loaded(feed)) => Ok(feed),
                    // Not sent without validators; a server that does it anyway gave no feed.
                    Ok(Fetched::NotModified) => Err(FeedError::Status {
                        url: url.clone(),
                        status: 304,
                    }
                    .into()),
                    Err(e) => Err(e.into()),
                };
                if result.is_err() {
                    // Poll afresh for a body, whatever this one was.
                    f.forget_validators();
                }
                fetcher = Some(f);
                result
            }
        };
        let clock = system_clock();
        let candidate = |feed: Feed| Inputs {
            config: Arc::clone(&config),
            names: Arc::clone(&names),
            geo: Arc::clone(&geo),
            feed: Arc::new(feed),
            demand: demand.clone(),
        };
        // The feed to serve, and why the source's own was refused, if it was.
        let (inputs, table, refusal) = match fetched {
            Ok(feed) => {
                log_skipped(&feed);
                let inputs = candidate(feed);
                let table = build(&inputs, &clock);
                match guard.check(clock.now(), eligible(&table)) {
                    Ok(()) => (inputs, table, None),
                    Err(shrink) if sources.accept_shrink => {
                        tracing::warn!(
                            "{}: accepted although it drops more than half of the eligible \
                             servers ({} → {}), as asked with --accept-shrink",
                            inputs.feed.source,
                            shrink.reference,
                            shrink.new
                        );
                        guard.reset();
                        (inputs, table, None)
                    }
                    Err(shrink) => {
                        let e = LoadError::TooManyDropped {
                            feed: inputs.feed.source.clone(),
                            old: shrink.reference,
                            new: shrink.new,
                        };
                        let last = last_good_feed(state.as_ref(), e)?;
                        let inputs = candidate(last.0);
                        let table = build(&inputs, &clock);
                        (inputs, table, Some(last.1))
                    }
                }
            }
            Err(e) => {
                let last = last_good_feed(state.as_ref(), e)?;
                let inputs = candidate(last.0);
                let table = build(&inputs, &clock);
                (inputs, table, Some(last.1))
            }
        };
        if let Some(e) = signing_refusal(&table) {
            return Err(e);
        }
        log_table(&table, &inputs.feed, "table built");
        let status = Arc::new(ReloadStatus::default());
        status.loaded_feed(&inputs.feed);
        status.loaded(Input::Config, &sources.config.display().to_string());
        status.loaded(Input::Geoip, &inputs.geo.path.display().to_string());
        if let Some(path) = demand_path(&sources, &inputs.config) {
            status.loaded(Input::Demand, &path.display().to_string());
        }
        let mut reloader = Reloader {
            sources,
            feed_source,
            poll,
            inputs,
            table: Arc::new(ArcSwap::from_pointee(table)),
            status,
            fetcher,
            watching: None,
            admin: {
                let (tx, rx) = mpsc::channel(4);
                (tx, Some(rx))
            },
            accept_shrink: false,
            clock,
            state,
            guard,
        };
        match refusal {
            Some(e) => reloader.refuse(&e),
            None => reloader.keep_feed(),
        }
        let now = reloader.clock.now();
        let count = eligible(&reloader.table.load());
        reloader.remember(now, count);
        Ok(reloader)
    }

    /// A handle for operator requests (the HTTP admin endpoint); they are carried out
    /// while [`Reloader::run`] runs.
    pub fn admin(&self) -> AdminHandle {
        AdminHandle(self.admin.0.clone())
    }

    /// Reloads every input for the operator, as SIGHUP does; with `accept_shrink`, one
    /// feed may drop more than half of the eligible servers. Returns what serves now.
    pub fn reload_for_operator(&mut self, accept_shrink: bool) -> Result<String, String> {
        if accept_shrink {
            tracing::warn!(
                "the operator accepts a shrinking feed: the next feed may drop more than half \
                 of the eligible servers"
            );
            self.accept_shrink = true;
        }
        let result = self.reload_all();
        if matches!(self.feed_source, FeedSource::File(_)) {
            self.accept_shrink = false;
        }
        let table = self.table.load();
        let serving = format!(
            "serving {} IPv4 and {} IPv6 eligible servers, serial {}",
            table.eligible(Family::V4),
            table.eligible(Family::V6),
            table.serial
        );
        match (result, &self.feed_source) {
            (Err(e), _) => Err(format!("{e}\nstill {serving}")),
            (Ok(()), FeedSource::Url(url)) => Ok(format!(
                "reloaded the configuration and GeoIP database; {url} is being fetched; \
                 {serving}"
            )),
            (Ok(()), FeedSource::File(_)) => Ok(format!("reloaded; {serving}")),
        }
    }

    /// Replaces the wall clock that decides rotation epochs (tests drive time with it).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// How long until the table needs a new split: zero when the serving table's epoch is
    /// not the clock's (a table published just after a boundary), else the time to the
    /// next boundary.
    fn until_rotation(&self) -> Duration {
        let now = self.clock.now();
        let rotation = self.inputs.config.rotation;
        if self.table.load().epoch != epoch_at(now, rotation) {
            return Duration::ZERO;
        }
        until_next_epoch(now, rotation)
    }

    /// The live table, for the servers.
    pub fn table(&self) -> SharedTable {
        Arc::clone(&self.table)
    }

    /// The last refusal, if any: when, which input and why.
    pub fn last_refusal(&self) -> Option<(SystemTime, Input, String)> {
        self.status.last_refusal()
    }

    /// The load history, shared.
    pub fn status(&self) -> Arc<ReloadStatus> {
        Arc::clone(&self.status)
    }

    /// Where the inputs come from.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Where the feed comes from: a file or a URL.
    pub fn feed_source(&self) -> &FeedSource {
        &self.feed_source
    }

    /// Reloads the feed: reads the file, or fetches the URL whatever its validators say.
    /// On success the new table is live when this returns; except for a URL already being
    /// polled, where the poller is asked to fetch now and `run` publishes what it brings.
    pub fn reload_feed(&mut self) -> Result<(), LoadError> {
        if let FeedSource::File(_) = self.feed_source {
            return self.reload(Changed::FEED);
        }
        if let Some(poller) = self.watching.as_ref().and_then(|w| w.poller.as_ref()) {
            poller.poll_now();
            return Ok(());
        }
        let Some(fetcher) = self.fetcher.as_mut() else {
            return Ok(()); // the poller thread could not start; that was logged
        };
        fetcher.forget_validators();
        let result = match fetcher.fetch() {
            Ok(Fetched::Loaded(feed)) => {
                log_skipped(&feed);
                let candidate = Inputs {
                    feed: Arc::new(feed),
                    ..self.inputs.clone()
                };
                self.commit(candidate, &[Input::Feed])
            }
            Ok(Fetched::NotModified) => Ok(()),
            Err(e) => Err(e.into()),
        };
        self.note(result)
    }

    /// Reloads configuration, GeoIP database and feed (SIGHUP). Each input that fails to
    /// load keeps its last good value; the first error is returned.
    pub fn reload_all(&mut self) -> Result<(), LoadError> {
        match self.feed_source {
            FeedSource::File(_) => self.reload(Changed::ALL),
            FeedSource::Url(_) => {
                let inputs = self.reload(Changed(
                    Changed::CONFIG.0 | Changed::GEOIP.0 | Changed::DEMAND.0,
                ));
                let feed = self.reload_feed();
                inputs.and(feed)
            }
        }
    }

    /// Rebuilds the table if a new rotation epoch has begun since it was built.
    pub fn rotate_if_due(&mut self) -> bool {
        let now = self.clock.now();
        let epoch = epoch_at(now, self.inputs.config.rotation);
        if epoch == self.table.load().epoch {
            return false;
        }
        let table = build(&self.inputs, &self.clock);
        if let Some(e) = signing_refusal(&table) {
            tracing::error!("{e}; the last good table keeps serving");
            return false;
        }
        self.publish(table);
        true
    }

    /// Reloads the inputs in `what` and publishes one table built from them and the last
    /// good others. Each input that fails keeps its last good value and is refused (logged
    /// and counted); the first error is returned. The table as a whole must pass the
    /// shrink guard, or nothing of it is published.
    fn reload(&mut self, what: Changed) -> Result<(), LoadError> {
        let mut errors = Vec::new();
        let mut candidate = self.inputs.clone();
        let mut loaded = Vec::new();
        if what.has(Changed::CONFIG) {
            match self.stage_config(&mut candidate) {
                Ok(opened) => {
                    loaded.push(Input::Config);
                    if opened {
                        loaded.push(Input::Geoip);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if what.has(Changed::GEOIP) && !loaded.contains(&Input::Geoip) {
            match open_geo(&self.sources, &candidate.config) {
                Ok(geo) => {
                    candidate.geo = Arc::new(geo);
                    loaded.push(Input::Geoip);
                }
                Err(e) => errors.push(e),
            }
        }
        // A new configuration may name another demand file.
        if what.has(Changed::DEMAND) || loaded.contains(&Input::Config) {
            match load_demand(&self.sources, &candidate.config) {
                Ok(demand) => {
                    candidate.demand = demand;
                    loaded.push(Input::Demand);
                }
                Err(e) => errors.push(e),
            }
        }
        if let (true, FeedSource::File(path)) = (what.has(Changed::FEED), &self.feed_source) {
            match feed::load_file(path) {
                Ok(feed) => {
                    log_skipped(&feed);
                    candidate.feed = Arc::new(feed);
                    loaded.push(Input::Feed);
                }
                Err(e) => errors.push(e.into()),
            }
        }
        if !loaded.is_empty() {
            if let Err(e) = self.commit(candidate, &loaded) {
                errors.push(e);
            }
        }
        let mut first = None;
        for e in errors {
            self.refuse(&e);
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    /// Loads the configuration into `candidate`, with the GeoIP database it names if that
    /// is another one (all or nothing); true if it opened a database.
    fn stage_config(&self, candidate: &mut Inputs) -> Result<bool, LoadError> {
        let (config, names) = load_config(&self.sources.config)?;
        let path = geo_path(&self.sources, &config);
        let geo = if path == candidate.geo.path {
            None
        } else {
            Some(Arc::new(open_geo(&self.sources, &config)?))
        };
        candidate.config = config;
        candidate.names = names;
        let opened = geo.is_some();
        if let Some(geo) = geo {
            candidate.geo = geo;
        }
        Ok(opened)
    }

    /// Takes what the poller brought: a feed goes through the same checks as a file's; a
    /// failed request is a refusal like a file that cannot be read.
    fn accept_polled(&mut self, polled: Polled) -> Result<(), LoadError> {
        let result = polled.map_err(LoadError::from).and_then(|feed| {
            log_skipped(&feed);
            let candidate = Inputs {
                feed: Arc::new(feed),
                ..self.inputs.clone()
            };
            self.commit(candidate, &[Input::Feed])
        });
        self.note(result)
    }

    /// Builds a table from `candidate`, in which the inputs `loaded` are new, checks it
    /// against the shrink guard, and publishes it; the new inputs become the last good
    /// ones. A refusal leaves everything as it was.
    fn commit(&mut self, candidate: Inputs, loaded: &[Input]) -> Result<(), LoadError> {
        let table = build(&candidate, &self.clock);
        if let Some(e) = signing_refusal(&table) {
            return Err(e);
        }
        let now = self.clock.now();
        let count = eligible(&table);
        let new_feed = loaded.contains(&Input::Feed);
        if let Err(shrink) = self.guard.check(now, count) {
            if !self.accept_shrink {
                // Blame the configuration when the new feed alone, under the old one,
                // would have passed (SIGHUP reloads both).
                let feed_alone = eligible_in(&candidate.feed, self.inputs.config.min_score);
                let config_to_blame = loaded.contains(&Input::Config)
                    && (!new_feed || self.guard.check(now, feed_alone).is_ok());
                return Err(if !config_to_blame {
                    LoadError::TooManyDropped {
                        feed: candidate.feed.source.clone(),
                        old: shrink.reference,
                        new: count,
                    }
                } else {
                    LoadError::ConfigDrops {
                        config: self.sources.config.clone(),
                        old: shrink.reference,
                        new: count,
                    }
                });
            }
            tracing::warn!(
                "accepted although it drops more than half of the eligible servers ({} → \
                 {count}), as the operator asked with `pooldns reload --accept-shrink`",
                shrink.reference
            );
            self.guard.reset();
            self.accept_shrink = false;
        }
        if new_feed {
            // Used up by the first feed accepted, shrinking or not.
            self.accept_shrink = false;
        }
        log_table(
            &table,
            &candidate.feed,
            if new_feed {
                "feed loaded"
            } else {
                "table rebuilt"
            },
        );
        for &input in loaded {
            match input {
                Input::Feed => self.status.loaded_feed(&candidate.feed),
                Input::Config => {
                    tracing::info!("{}: configuration loaded", self.sources.config.display());
                    self.status
                        .loaded(Input::Config, &self.sources.config.display().to_string());
                }
                Input::Geoip => {
                    tracing::info!("{}: GeoIP database loaded", candidate.geo.path.display());
                    self.status
                        .loaded(Input::Geoip, &candidate.geo.path.display().to_string());
                }
                Input::Demand => {
                    if let Some(path) = demand_path(&self.sources, &candidate.config) {
                        tracing::info!("{}: demand loaded", path.display());
                        self.status
                            .loaded(Input::Demand, &path.display().to_string());
                    }
                }
            }
        }
        self.inputs = candidate;
        self.publish(table);
        if new_feed {
            self.keep_feed();
        }
        self.remember(now, count);
        if loaded.iter().any(|&i| i != Input::Feed) {
            self.follow_geo_path();
        }
        Ok(())
    }

    /// Keeps the serving feed in the state directory as the last good one.
    fn keep_feed(&self) {
        if let Some(state) = &self.state {
            if let Err(e) = state.save_feed(&self.inputs.feed) {
                tracing::warn!(
                    "{}: cannot keep the last good feed: {e}",
                    state.feed_path().display()
                );
            }
        }
    }

    /// Notes a published eligible count in the guard's history, and keeps the history.
    fn remember(&mut self, now: SystemTime, count: usize) {
        self.guard.record(now, count);
        if let Some(state) = &self.state {
            if let Err(e) = self.guard.save(&state.guard_path()) {
                tracing::warn!(
                    "{}: cannot keep the shrink guard's history: {e}",
                    state.guard_path().display()
                );
            }
        }
    }

    fn publish(&self, table: Table) {
        self.table.store(Arc::new(table));
    }

    fn note(&self, result: Result<(), LoadError>) -> Result<(), LoadError> {
        if let Err(e) = &result {
            self.refuse(e);
        }
        result
    }

    fn refuse(&self, e: &LoadError) {
        tracing::error!("{e}; the last good table keeps serving");
        self.status.refused(e.input(), e.to_string());
    }

    /// Starts watching the inputs, so that a change made from now on is seen: the feed
    /// file, the zone configuration and the GeoIP database by file events, a feed URL by
    /// polling. `run` does this itself if it was not done before.
    pub fn start_watching(&mut self) {
        if self.watching.is_some() {
            return;
        }
        let (wake, wake_rx) = mpsc::channel::<()>(1);
        let (polled, polled_rx) = mpsc::channel::<Polled>(1);
        let mut watching = Watching {
            watcher: None,
            files: self.watched_files(),
            pending: Arc::new(AtomicU8::new(0)),
            wake,
            poller: None,
            receivers: Some((wake_rx, polled_rx)),
        };
        watching.watcher = watch(&watching.files, &watching.pending, &watching.wake);
        if let Some(fetcher) = self.fetcher.take() {
            let url = fetcher.url().to_owned();
            match Poller::start(fetcher, self.poll, polled) {
                Ok(poller) => {
                    tracing::info!(
                        "{url}: polling every {} s",
                        self.poll.interval.as_secs_f64()
                    );
                    watching.poller = Some(poller);
                }
                Err(e) => tracing::error!("{url}: cannot start polling: {e}"),
            }
        }
        self.watching = Some(watching);
    }

    /// The files to watch, and the input each one is.
    fn watched_files(&self) -> Vec<(Changed, PathBuf)> {
        let mut files = vec![
            (Changed::CONFIG, self.sources.config.clone()),
            (Changed::GEOIP, self.inputs.geo.path.clone()),
        ];
        if let Some(path) = demand_path(&self.sources, &self.inputs.config) {
            files.push((Changed::DEMAND, path));
        }
        if let FeedSource::File(path) = &self.feed_source {
            files.push((Changed::FEED, path.clone()));
        }
        files
    }

    /// Watches the GeoIP database where the configuration now says it is.
    fn follow_geo_path(&mut self) {
        let files = self.watched_files();
        if let Some(w) = self.watching.as_mut()
            && w.files != files
        {
            w.watcher = watch(&files, &w.pending, &w.wake);
            w.files = files;
        }
    }

    /// Watches the input files, the feed URL, SIGHUP (when `hangup` is given: the caller
    /// installs the handler early, so that a SIGHUP during startup does not kill the
    /// process) and the rotation clock until `shutdown` completes.
    pub async fn run(
        mut self,
        mut hangup: Option<tokio::signal::unix::Signal>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        self.start_watching();
        let (pending, receivers) = match self.watching.as_mut() {
            Some(w) => (Arc::clone(&w.pending), w.receivers.take()),
            None => (Arc::new(AtomicU8::new(0)), None),
        };
        // Channels whose senders live in `self`: they stay open while `run` does.
        let (mut wake, mut polled) =
            receivers.unwrap_or_else(|| (mpsc::channel(1).1, mpsc::channel(1).1));
        let mut admin = self.admin.1.take().unwrap_or_else(|| mpsc::channel(1).1);
        tokio::pin!(shutdown);
        loop {
            let wait = self.until_rotation();
            tokio::select! {
                _ = &mut shutdown => return,
                Some(()) = wake.recv() => {
                    // Let a burst of writes settle before reading the files.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while wake.try_recv().is_ok() {}
                    let changed = Changed(pending.swap(0, Ordering::AcqRel));
                    if changed.0 != 0 {
                        self = blocking(self, move |r| { let _ = r.reload(changed); }).await;
                    }
                }
                Some(request) = admin.recv() => {
                    tracing::info!("the operator asked for a reload");
                    self = blocking(self, move |r| {
                        let _ = request.reply.send(r.reload_for_operator(request.accept_shrink));
                    }).await;
                }
                Some(result) = polled.recv() => {
                    self = blocking(self, move |r| { let _ = r.accept_polled(result); }).await;
                }
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading configuration, GeoIP database and feed");
                    self = blocking(self, |r| { let _ = r.reload_all(); }).await;
                }
                _ = tokio::time::sleep(wait) => {
                    self = blocking(self, |r| { r.rotate_if_due(); }).await;
                }
            }
        }
    }
}

/// Runs a reload step on the blocking pool so that parsing and building never delay the
/// runtime's query tasks.
async fn blocking(
    mut reloader: Reloader,
    step: impl FnOnce(&mut Reloader) + Send + 'static,
) -> Reloader {
    let handle = tokio::task::spawn_blocking(move || {
        let _core = crate::reserve::Hold::start();
        step(&mut reloader);
        reloader
    });
    match handle.await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn until_next_epoch(now: SystemTime, rotation: Duration) -> Duration {
    let period = rotation.as_secs().max(1);
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let next = ((secs / period as f64).floor() + 1.0) * period as f64;
    Duration::from_secs_f64((next - secs).max(0.0) + 0.01)
}

/// Builds a table for the epoch of the clock. A build that straddles an epoch boundary is
/// made again for the new epoch, so that a published table never carries the epoch that
/// just ended: the run loop would only rotate at the boundary after it, and this instance
/// would serve another split than the rest of the fleet for a whole rotation period
/// (issue 12, item 1). A few attempts at most: a build slower than the rotation period
/// (a 1 s rotation, say) gives up, and the run loop rotates right after the publish.
fn build(inputs: &Inputs, clock: &Clock) -> Table {
    let rotation = inputs.config.rotation;
    let build_for = |epoch| {
        Table::build_with(
            Arc::clone(&inputs.config),
            Arc::clone(&inputs.names),
            Arc::clone(&inputs.geo),
            &inputs.feed,
            inputs.demand.as_deref(),
            epoch,
        )
    };
    let mut epoch = epoch_at(clock.now(), rotation);
    for _ in 0..3 {
        let table = build_for(epoch);
        let now = epoch_at(clock.now(), rotation);
        if now == epoch {
            return table;
        }
        tracing::info!(
            from = epoch,
            to = now,
            "a new rotation epoch began during the build; building again"
        );
        epoch = now;
    }
    build_for(epoch)
}

/// The error of a table whose signing failed (it must not be published: a signed zone's
/// answers without signatures are bogus to every validating resolver).
fn signing_refusal(table: &Table) -> Option<LoadError> {
    let reason = table.signing_error.clone()?;
    Some(LoadError::Config(crate::config::ConfigError::Invalid {
        path: table.config.path.clone(),
        what: "dnssec".to_owned(),
        reason: format!("cannot sign the zone: {reason}"),
    }))
}

/// Eligible servers of both families.
fn eligible(table: &Table) -> usize {
    table.eligible(Family::V4) + table.eligible(Family::V6)
}

/// Eligible servers of a feed under a minimum score (DESIGN §2.1), without building a
/// table.
fn eligible_in(feed: &Feed, min_score: f64) -> usize {
    feed.servers
        .iter()
        .filter(|s| s.score >= min_score && s.netspeed > 0)
        .count()
}

/// The last good feed of the state directory, to serve instead of a source that failed
/// with `error`: the feed and the error to report. Without one, the error itself.
fn last_good_feed(
    state: Option<&StateDir>,
    error: LoadError,
) -> Result<(Feed, LoadError), LoadError> {
    let Some(state) = state else {
        return Err(error);
    };
    let path = state.feed_path();
    if !path.exists() {
        return Err(error);
    }
    match feed::load_file(&path) {
        Ok(feed) => {
            tracing::warn!(
                "{error}; serving the last good feed, {}, until the source is fixed",
                path.display()
            );
            Ok((feed, error))
        }
        Err(e) => {
            tracing::error!("{e}: the last good feed is not usable either");
            Err(error)
        }
    }
}

fn log_table(table: &Table, feed: &Feed, what: &str) {
    for empty in crate::report::empty_families(table) {
        tracing::warn!("{empty}");
    }
    if let Some(z) = &table.signed {
        tracing::info!(
            signatures = z.signatures,
            signing_ms = z.signing_time.as_secs_f64() * 1e3,
            expires = %crate::report::utc_time(z.expiration),
            "zone signed"
        );
    }
    tracing::info!(
        feed = %feed,
        eligible_v4 = table.eligible(Family::V4),
        eligible_v6 = table.eligible(Family::V6),
        serial = table.serial,
        load_ms = feed.load_time.as_secs_f64() * 1e3,
        build_ms = table.build_time.as_secs_f64() * 1e3,
        plan_ms = table.plan_time.as_secs_f64() * 1e3,
        "{what}"
    );
}

fn log_skipped(feed: &Feed) {
    for s in &feed.report.skipped {
        tracing::warn!("skipped {}", s.render(&feed.source));
    }
}

/// Watches the input files (see [`crate::watch`]): an event that names one of them marks
/// its input in `pending` and wakes `run`. None if nothing could be watched (logged).
fn watch(
    files: &[(Changed, PathBuf)],
    pending: &Arc<AtomicU8>,
    wake: &mpsc::Sender<()>,
) -> Option<FileWatch> {
    let tagged: Vec<(u8, PathBuf)> = files.iter().map(|(c, p)| (c.0, p.clone())).collect();
    let (pending, wake) = (Arc::clone(pending), wake.clone());
    let watched = crate::watch::watch(&tagged, move |changed| {
        pending.fetch_or(changed, Ordering::AcqRel);
        // A full channel already holds a pending wake-up.
        let _ = wake.try_send(());
    });
    match watched {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("cannot watch the input files: {e}; reload with SIGHUP");
            None
        }
    }
}
