//! The feed the monitor writes (`--out`): the registry with scores filled in, in the format
//! `serve` reads ([`crate::feed`]), written aside and renamed over, at most once per write
//! interval and only when a score changed.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{Monitor, peers, persist, unix};
use crate::feed::{Feed, LoadReport, Server};

/// Writes the feed when something changed, every write interval, and saves the state every
/// save interval, until `stop` changes.
pub async fn run(monitor: Arc<Monitor>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut last_save = Instant::now();
    loop {
        let changed = std::mem::take(&mut monitor.book().changed);
        if changed {
            let monitor = monitor.clone();
            let _ = tokio::task::spawn_blocking(move || write_feed(&monitor)).await;
        }
        if last_save.elapsed() >= monitor.options.save_interval {
            last_save = Instant::now();
            let monitor = monitor.clone();
            let saved = tokio::task::spawn_blocking(move || persist::save(&monitor)).await;
            if let Ok(Err(e)) = saved {
                tracing::error!("{e}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(monitor.options.write_interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Renders the feed from the book and writes it; failures are logged and counted.
pub fn write_feed(monitor: &Monitor) {
    let feed = {
        let book = monitor.book();
        let now = unix(SystemTime::now());
        let servers = book
            .servers
            .iter()
            .enumerate()
            .map(|(i, t)| Server {
                id: t.server.id,
                ip: t.server.ip,
                netspeed: t.server.netspeed,
                score: peers::feed_score(&book, i, now, monitor.options.window),
                country: t.server.country.clone(),
                zones: t.server.zones.clone(),
            })
            .collect();
        Feed {
            source: monitor.options.out.display().to_string(),
            serial: None,
            servers,
            report: LoadReport::default(),
            loaded_at: SystemTime::now(),
            load_time: std::time::Duration::ZERO,
        }
    };
    let text = crate::state::render_feed(&feed);
    let path = &monitor.options.out;
    let written = crate::state::write_atomically(path, text.as_bytes());
    let mut book = monitor.book();
    match written {
        Ok(()) => book.counters.feed_writes += 1,
        Err(e) => {
            book.counters.feed_write_errors += 1;
            drop(book);
            tracing::error!("{}: cannot write the feed: {e}", path.display());
        }
    }
}
