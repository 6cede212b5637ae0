//! The feed the monitor writes (`--out`): the registry with scores filled in, in the format
//! `serve` reads ([`crate::feed`]), written aside and renamed over, at most once per write
//! interval and only when a score changed. The same bytes are served at
//! `/monitor/feed.json`, with an entity tag, for nameservers that poll a URL.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{Monitor, peers, persist, unix};

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

/// One feed entry as written: the fields [`crate::feed::schema::Entry`] reads.
#[derive(serde::Serialize)]
struct Entry<'a> {
    id: u64,
    ip: std::net::IpAddr,
    netspeed: u32,
    score: f64,
    country: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    zones: Option<&'a [String]>,
}

/// Renders the feed from the book and writes it; failures are logged and counted.
pub fn write_feed(monitor: &Monitor) {
    let bytes = render(monitor);
    // Scores at their fixed points (20, −100) and peers' re-reads change nothing: an equal
    // feed is not written again (serve would reload it for nothing).
    if monitor.feed().is_some_and(|last| last.bytes == bytes) {
        return;
    }
    let path = &monitor.options.out;
    let written = crate::state::write_atomically(path, &bytes);
    match written {
        Ok(()) => {
            monitor.keep_feed(bytes);
            monitor.book().counters.feed_writes += 1;
        }
        Err(e) => {
            {
                let mut book = monitor.book();
                book.counters.feed_write_errors += 1;
                // Try again at the next write interval, change or not.
                book.changed = true;
            }
            tracing::error!("{}: cannot write the feed: {e}", path.display());
        }
    }
}

/// The feed as bytes, serialized straight from the book (no tree of JSON values: at
/// 100,000 servers that tree would be a hundred megabytes every few seconds).
fn render(monitor: &Monitor) -> Vec<u8> {
    let book = monitor.book();
    let now = unix(SystemTime::now());
    let mut out = Vec::with_capacity(64 + book.servers.len() * 110);
    out.extend_from_slice(b"{\"servers\":[");
    for (i, t) in book.servers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let entry = Entry {
            id: t.server.id,
            ip: t.server.ip,
            netspeed: t.server.netspeed,
            score: peers::feed_score(&book, i, now, monitor.options.window),
            country: &t.server.country,
            zones: t.server.zones.as_deref(),
        };
        // Writing into a Vec fails only on a non-finite float, which scores never are
        // (they stay within -100 ... 20); such an entry would be left out as null.
        if serde_json::to_writer(&mut out, &entry).is_err() {
            out.extend_from_slice(b"null");
        }
    }
    out.extend_from_slice(b"]}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::registry::Registered;
    use crate::monitor::{Book, Options};

    #[test]
    fn the_feed_written_loads_as_a_feed_with_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let server = |id, ip: &str, zones: Option<Vec<String>>| Registered {
            id,
            ip: ip.parse().unwrap(),
            netspeed: 1500,
            country: "de".into(),
            zones,
        };
        let mut book = Book::new(vec![
            server(1, "192.0.2.1", None),
            server(2, "2001:db8::2", Some(vec!["de".into(), "europe".into()])),
        ]);
        book.servers[0].score = 12.5;
        book.servers[0].scored_at = Some(unix(SystemTime::now()));
        let out = dir.path().join("feed.json");
        let monitor = Monitor::new(Options::new(out.clone(), dir.path().join("s")), book);
        write_feed(&monitor);
        let feed = crate::feed::load_file(&out).unwrap();
        assert!(feed.report.skipped.is_empty());
        assert_eq!(feed.servers.len(), 2);
        assert_eq!(feed.servers[0].score, 12.5);
        assert_eq!(feed.servers[0].netspeed, 1500);
        assert_eq!(
            feed.servers[1].ip,
            "2001:db8::2".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(
            feed.servers[1].zones,
            Some(vec!["de".to_owned(), "europe".to_owned()])
        );
        assert_eq!(monitor.book().counters.feed_writes, 1);
        // Nothing changed: not written again.
        write_feed(&monitor);
        assert_eq!(monitor.book().counters.feed_writes, 1);
    }
}
