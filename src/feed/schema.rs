//! The feed JSON as written. Entries stay raw JSON text here (not a tree of values: a
//! 100,000-server feed would cost hundreds of megabytes) so that each is parsed on its own
//! and one bad entry is reported and skipped instead of failing the whole feed.

use std::borrow::Cow;

use serde::Deserialize;

/// The top level: `{"serial": 1763798400, "servers": [...]}`. Entries borrow from the
/// bytes read.
#[derive(Debug, Deserialize)]
pub struct File<'a> {
    /// Optional serial; becomes the SOA serial.
    #[serde(default)]
    pub serial: Option<serde_json::Value>,
    /// The entries, checked one by one.
    #[serde(borrow)]
    pub servers: Vec<&'a serde_json::value::RawValue>,
}

/// Just the id of an entry, to name an entry that failed to parse.
#[derive(Debug, Deserialize)]
pub struct IdOnly {
    /// Server id, when readable.
    pub id: Option<u64>,
}

/// One entry as written; its texts borrow from the feed unless they hold escapes.
#[derive(Debug, Deserialize)]
pub struct Entry<'a> {
    /// Server id.
    pub id: u64,
    /// Address text.
    #[serde(borrow)]
    pub ip: Cow<'a, str>,
    /// Net speed, kbit/s.
    pub netspeed: serde_json::Number,
    /// Monitoring score.
    pub score: serde_json::Number,
    /// ISO 3166 alpha-2 code.
    #[serde(borrow)]
    pub country: Cow<'a, str>,
    /// Optional explicit pool zones.
    #[serde(default, borrow)]
    pub zones: Option<Vec<Cow<'a, str>>>,
}
