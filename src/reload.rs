//! Loading and hot swap: inputs are read and a complete table is built off the query path,
//! checked against the table it would replace, then published with one atomic swap
//! (DESIGN §5). A feed that fails to parse, or that would drop more than half of the
//! eligible servers at once, is refused and the last good table keeps serving.
//!
//! Triggers: a change of the feed file (watched), SIGHUP (reloads configuration, GeoIP
//! database and feed), and the start of a new rotation epoch (rebuilds the numbered split).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::config::{ConfigError, ZoneConfig};
use crate::feed::{self, Feed, FeedError};
use crate::geo::{GeoDb, GeoError};
use crate::server::SharedTable;
use crate::table::{Family, Names, Table, epoch_at};

/// Where the inputs live.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Zone configuration file.
    pub config: PathBuf,
    /// Feed file.
    pub feed: PathBuf,
    /// GeoIP database; None = the one the configuration names.
    pub geoip: Option<PathBuf>,
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
    /// The new feed would remove too many servers.
    #[error(
        "{feed}: refused: it has {new} eligible servers where the serving table has {old}; \
         more than half would be dropped at once"
    )]
    TooManyDropped {
        /// The feed.
        feed: String,
        /// Eligible servers in the serving table.
        old: usize,
        /// Eligible servers in the new feed.
        new: usize,
    },
}

/// The last good inputs, from which tables are built.
#[derive(Debug, Clone)]
struct Inputs {
    config: Arc<ZoneConfig>,
    names: Arc<Names>,
    geo: Arc<GeoDb>,
    feed: Arc<Feed>,
}

/// Owns the inputs and publishes tables. Clone-free: one reloader per server.
#[derive(Debug)]
pub struct Reloader {
    sources: Sources,
    inputs: Inputs,
    table: SharedTable,
    /// Load history, for the status surface.
    status: Arc<ReloadStatus>,
    /// The feed watch, once started: the watcher and the channel it signals on.
    watching: Option<(notify::RecommendedWatcher, mpsc::Receiver<()>)>,
}

/// What the reloader has done, shared with the HTTP side.
#[derive(Debug, Default)]
pub struct ReloadStatus {
    /// Feeds loaded and published (the first one included).
    pub loads_ok: AtomicU64,
    /// Loads refused (feed, configuration or GeoIP errors, or too many servers dropped).
    pub loads_refused: AtomicU64,
    /// When the last good feed was published.
    pub last_good: Mutex<Option<SystemTime>>,
    /// The last refusal: when and why.
    pub last_refusal: Mutex<Option<(SystemTime, String)>>,
    /// Feed entries skipped since start, by reason.
    pub skipped: Mutex<BTreeMap<&'static str, u64>>,
}

impl ReloadStatus {
    fn loaded(&self, feed: &Feed) {
        self.loads_ok.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_good.lock() {
            *last = Some(SystemTime::now());
        }
        if let Ok(mut skipped) = self.skipped.lock() {
            for s in &feed.report.skipped {
                *skipped.entry(s.reason.kind()).or_default() += 1;
            }
        }
    }

    fn refused(&self, why: String) {
        self.loads_refused.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_refusal.lock() {
            *last = Some((SystemTime::now(), why));
        }
    }
}

fn load_config(path: &Path) -> Result<(Arc<ZoneConfig>, Arc<Names>), ConfigError> {
    let config = ZoneConfig::load(path)?;
    let names = Names::build(&config)?;
    Ok((Arc::new(config), Arc::new(names)))
}

fn geo_path(sources: &Sources, config: &ZoneConfig) -> PathBuf {
    sources
        .geoip
        .clone()
        .or_else(|| config.geoip.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_GEOIP))
}

impl Reloader {
    /// Loads every input and builds the first table. Any error here is fatal to startup.
    pub fn load(sources: Sources) -> Result<Reloader, LoadError> {
        let (config, names) = load_config(&sources.config)?;
        let geo = Arc::new(GeoDb::open(&geo_path(&sources, &config))?);
        let feed = Arc::new(feed::load_file(&sources.feed)?);
        log_skipped(&feed);
        let inputs = Inputs {
            config,
            names,
            geo,
            feed,
        };
        let table = build(&inputs);
        tracing::info!(
            feed = %inputs.feed,
            eligible_v4 = table.eligible(Family::V4),
            eligible_v6 = table.eligible(Family::V6),
            serial = table.serial,
            build_ms = table.build_time.as_secs_f64() * 1e3,
            "table built"
        );
        let status = Arc::new(ReloadStatus::default());
        status.loaded(&inputs.feed);
        Ok(Reloader {
            sources,
            inputs,
            table: Arc::new(ArcSwap::from_pointee(table)),
            status,
            watching: None,
        })
    }

    /// The live table, for the servers.
    pub fn table(&self) -> SharedTable {
        Arc::clone(&self.table)
    }

    /// The last refusal, if any: when and why.
    pub fn last_refusal(&self) -> Option<(SystemTime, String)> {
        self.status.last_refusal.lock().ok().and_then(|g| g.clone())
    }

    /// The load history, shared.
    pub fn status(&self) -> Arc<ReloadStatus> {
        Arc::clone(&self.status)
    }

    /// Where the inputs come from.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Reloads the feed file; on success the new table is live when this returns.
    pub fn reload_feed(&mut self) -> Result<(), LoadError> {
        let result = feed::load_file(&self.sources.feed)
            .map_err(LoadError::from)
            .and_then(|feed| self.accept_feed(feed));
        self.note(result)
    }

    /// Reloads configuration, GeoIP database and feed (SIGHUP). Each input that fails to
    /// load keeps its last good value; the first error is returned.
    pub fn reload_all(&mut self) -> Result<(), LoadError> {
        let mut first_error = None;
        match load_config(&self.sources.config) {
            Ok((config, names)) => {
                self.inputs.config = config;
                self.inputs.names = names;
            }
            Err(e) => first_error = Some(LoadError::from(e)),
        }
        match GeoDb::open(&geo_path(&self.sources, &self.inputs.config)) {
            Ok(geo) => self.inputs.geo = Arc::new(geo),
            Err(e) => first_error = first_error.or(Some(e.into())),
        }
        let feed_result = feed::load_file(&self.sources.feed)
            .map_err(LoadError::from)
            .and_then(|feed| self.accept_feed(feed));
        if let Err(e) = feed_result {
            first_error = first_error.or(Some(e));
            // Configuration or GeoIP may still have changed: publish them with the old feed.
            self.publish(build(&self.inputs));
        }
        self.note(first_error.map_or(Ok(()), Err))
    }

    /// Rebuilds the table if a new rotation epoch has begun since it was built.
    pub fn rotate_if_due(&mut self, now: SystemTime) -> bool {
        let epoch = epoch_at(now, self.inputs.config.rotation);
        if epoch == self.table.load().epoch {
            return false;
        }
        self.publish(build(&self.inputs));
        true
    }

    fn accept_feed(&mut self, feed: Feed) -> Result<(), LoadError> {
        log_skipped(&feed);
        let candidate = Inputs {
            feed: Arc::new(feed),
            ..self.inputs.clone()
        };
        let table = build(&candidate);
        let current = self.table.load();
        let old = current.eligible(Family::V4) + current.eligible(Family::V6);
        let new = table.eligible(Family::V4) + table.eligible(Family::V6);
        if new * 2 < old {
            return Err(LoadError::TooManyDropped {
                feed: candidate.feed.source.clone(),
                old,
                new,
            });
        }
        tracing::info!(
            feed = %candidate.feed,
            eligible_v4 = table.eligible(Family::V4),
            eligible_v6 = table.eligible(Family::V6),
            serial = table.serial,
            build_ms = table.build_time.as_secs_f64() * 1e3,
            "feed loaded"
        );
        self.status.loaded(&candidate.feed);
        self.inputs = candidate;
        self.publish(table);
        Ok(())
    }

    fn publish(&self, table: Table) {
        self.table.store(Arc::new(table));
    }

    fn note(&self, result: Result<(), LoadError>) -> Result<(), LoadError> {
        if let Err(e) = &result {
            tracing::error!("{e}; the last good table keeps serving");
            self.status.refused(e.to_string());
        }
        result
    }

    /// Starts watching the feed file, so that a change made from now on is seen. `run`
    /// does this itself if it was not done before.
    pub fn start_watching(&mut self) {
        if self.watching.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel::<()>(1);
        match watch(&self.sources.feed, tx) {
            Ok(watcher) => self.watching = Some((watcher, rx)),
            Err(e) => tracing::warn!(
                "cannot watch {}: {e}; reload with SIGHUP",
                self.sources.feed.display()
            ),
        }
    }

    /// Watches the feed file, SIGHUP (when `hangup` is given: the caller installs the
    /// handler early, so that a SIGHUP during startup does not kill the process) and the
    /// rotation clock until `shutdown` completes.
    pub async fn run(
        mut self,
        mut hangup: Option<tokio::signal::unix::Signal>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        self.start_watching();
        let (_watcher, mut rx) = match self.watching.take() {
            Some((w, rx)) => (Some(w), rx),
            None => (None, mpsc::channel::<()>(1).1),
        };
        tokio::pin!(shutdown);
        loop {
            let rotation = self.inputs.config.rotation;
            let wait = until_next_epoch(SystemTime::now(), rotation);
            tokio::select! {
                _ = &mut shutdown => return,
                Some(()) = rx.recv() => {
                    // Let a burst of writes settle before reading the file.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while rx.try_recv().is_ok() {}
                    self = blocking(self, |r| { let _ = r.reload_feed(); }).await;
                }
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading configuration, GeoIP database and feed");
                    self = blocking(self, |r| { let _ = r.reload_all(); }).await;
                }
                _ = tokio::time::sleep(wait) => {
                    self = blocking(self, |r| { r.rotate_if_due(SystemTime::now()); }).await;
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

fn build(inputs: &Inputs) -> Table {
    let epoch = epoch_at(SystemTime::now(), inputs.config.rotation);
    Table::build(
        Arc::clone(&inputs.config),
        Arc::clone(&inputs.names),
        Arc::clone(&inputs.geo),
        &inputs.feed,
        epoch,
    )
}

fn log_skipped(feed: &Feed) {
    for s in &feed.report.skipped {
        tracing::warn!("skipped {}", s.render(&feed.source));
    }
}

/// Watches the directory of `path` (editors and deploy tools replace files by renaming)
/// and signals on any event that names the file.
fn watch(path: &Path, tx: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let file_name = path.file_name().map(|n| n.to_owned());
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if event.kind.is_access() {
                return;
            }
            if event
                .paths
                .iter()
                .any(|p| p.file_name() == file_name.as_deref())
            {
                // A full channel already holds a pending reload.
                let _ = tx.try_send(());
            }
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
