//! What a server keeps beside itself between runs, in its state directory
//! (`serve --state-dir`): the last good feed, so that a restart while the feed's source is
//! down or serving garbage still serves, and the shrink guard's history
//! ([`crate::guard`]), so that a restarted instance refuses what its running peers refuse.
//!
//! Files are written aside and renamed over, so a crash leaves the old file or the new
//! one, never half of one. Both are read back as untrusted input: a damaged file is an
//! error naming it, and the server goes on without it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::feed::Feed;

/// The files of a state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The state directory at `dir`, created when missing.
    pub fn open(dir: &Path) -> std::io::Result<StateDir> {
        std::fs::create_dir_all(dir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("{}: cannot create: {e}", dir.display()))
        })?;
        Ok(StateDir {
            dir: dir.to_owned(),
        })
    }

    /// The last good feed, as the server loaded it.
    pub fn feed_path(&self) -> PathBuf {
        self.dir.join("last-good-feed.json")
    }

    /// The shrink guard's history.
    pub fn guard_path(&self) -> PathBuf {
        self.dir.join("guard.json")
    }

    /// Keeps `feed` as the last good one: its servers as a feed file (skipped entries are
    /// not kept: they were not served).
    pub fn save_feed(&self, feed: &Feed) -> std::io::Result<()> {
        write_atomically(&self.feed_path(), render_feed(feed).as_bytes())
    }
}

/// A feed's servers as feed JSON, loadable by [`crate::feed::load_file`].
pub fn render_feed(feed: &Feed) -> String {
    let servers: Vec<serde_json::Value> = feed
        .servers
        .iter()
        .map(|s| {
            let mut entry = serde_json::json!({
                "id": s.id,
                "ip": s.ip.to_string(),
                "netspeed": s.netspeed,
                "score": s.score,
                "country": s.country,
            });
            if let (Some(zones), Some(map)) = (&s.zones, entry.as_object_mut()) {
                map.insert("zones".to_owned(), serde_json::json!(zones));
            }
            entry
        })
        .collect();
    let mut file = serde_json::json!({ "servers": servers });
    if let (Some(serial), Some(map)) = (feed.serial, file.as_object_mut()) {
        map.insert("serial".to_owned(), serde_json::json!(serial));
    }
    file.to_string()
}

/// Writes `bytes` to a file beside `path`, syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".tmp");
    let aside = PathBuf::from(aside);
    let mut file = std::fs::File::create(&aside)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&aside, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_feed_loads_back_the_same_servers() {
        let text = r#"{"serial": 7, "servers": [
            {"id": 1, "ip": "192.0.2.1", "netspeed": 1000, "score": 19.5, "country": "de"},
            {"id": 2, "ip": "2001:db8::2", "netspeed": 0, "score": -3.25, "country": "us",
             "zones": ["us", "north-america"]},
            {"id": 3, "ip": "not an address", "netspeed": 5, "score": 1, "country": "de"}
        ]}"#;
        let feed = crate::feed::load_slice("in.json", text.as_bytes()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        state.save_feed(&feed).unwrap();
        let back = crate::feed::load_file(&state.feed_path()).unwrap();
        assert_eq!(back.servers, feed.servers);
        assert_eq!(back.serial, Some(7));
        assert!(back.report.skipped.is_empty());
        assert!(!dir.path().join("state/last-good-feed.json.tmp").exists());
    }
}
