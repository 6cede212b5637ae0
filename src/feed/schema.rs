//! The feed JSON as written. Entries stay raw JSON text here (not a tree of values: a
//! 100,000-server feed would cost hundreds of megabytes) so that each is parsed on its own
//! and one bad entry is reported and skipped instead of failing the whole feed.

use serde::Deserialize;

/// The top level: `{"serial": 1763798400, "servers": [...]}`.
#[derive(Debug, Deserialize)]
pub struct File {
    /// Optional serial; becomes the SOA serial.
    #[serde(default)]
    pub serial: Option<serde_json::Value>,
    /// The entries, checked one by one.
    pub servers: Vec<Box<serde_json::value::RawValue>>,
}

/// Just the id of an entry, to name an entry that failed to parse.
#[derive(Debug, Deserialize)]
pub struct IdOnly {
    /// Server id, when readable.
    pub id: Option<u64>,
}

/// One entry as written.
#[derive(Debug, Deserialize)]
pub struct Entry {
    /// Server id.
    pub id: u64,
    /// Address text.
    pub ip: String,
    /// Net speed, kbit/s.
    pub netspeed: serde_json::Number,
    /// Monitoring score.
    pub score: serde_json::Number,
    /// ISO 3166 alpha-2 code.
    pub country: String,
    /// Optional explicit pool zones.
    #[serde(default)]
    pub zones: Option<Vec<String>>,
}
