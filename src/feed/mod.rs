//! The server feed: JSON as written ([`schema`]) and as loaded ([`Feed`], with a
//! [`LoadReport`] of the entries that were skipped and why). This is the "feed" arrow:
//! bytes of a file in, checked servers out. Eligibility (score, net speed) is decided by
//! the table, which knows the zone configuration. Where the bytes come from, a file or a
//! polled URL, is [`source`].

mod load;
pub mod schema;
pub mod source;

pub use load::{load_file, load_slice};
pub use source::{FeedSource, PollOptions};

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// One server of the feed, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// The feed's id of the server.
    pub id: u64,
    /// Its address; the family decides A or AAAA.
    pub ip: IpAddr,
    /// Net speed in kbit/s: its weight. 0 = monitoring only.
    pub netspeed: u32,
    /// Monitoring score.
    pub score: f64,
    /// Lowercase ISO 3166 alpha-2 code, as written in the feed.
    pub country: String,
    /// Explicit pool zone labels (countries, continents) replacing the ones derived from
    /// `country`, when the feed gives them.
    pub zones: Option<Vec<String>>,
}

/// A loaded feed: the servers that passed the checks and what was skipped.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Where it came from (for messages and the status page).
    pub source: String,
    /// The feed's serial, if it gave one (becomes the SOA serial).
    pub serial: Option<u32>,
    /// The servers that passed the checks, in feed order.
    pub servers: Vec<Server>,
    /// Entries that were skipped, with reasons.
    pub report: LoadReport,
    /// When it was loaded.
    pub loaded_at: std::time::SystemTime,
    /// How long reading (files only), parsing and checking took.
    pub load_time: std::time::Duration,
}

/// What loading skipped.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Number of entries in the feed.
    pub entries: usize,
    /// The skipped entries.
    pub skipped: Vec<Skipped>,
}

/// One skipped entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Index in the `servers` array.
    pub index: usize,
    /// The entry's id, when it had a readable one.
    pub id: Option<u64>,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// Why an entry was skipped. `kind()` gives a stable short name for metrics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SkipReason {
    /// The entry is not an object of the right shape.
    #[error("{0}")]
    Malformed(String),
    /// The ip field does not parse.
    #[error("ip {0:?} is not an address")]
    BadAddress(String),
    /// Unknown country code.
    #[error("country {0:?} is not a known ISO 3166 code")]
    UnknownCountry(String),
    /// A zones entry that is no country or continent.
    #[error("zone {0:?} is not a country or continent")]
    UnknownZone(String),
    /// Net speed below zero or not an integer.
    #[error("netspeed {0} is not a whole number of kbit/s between 0 and 4294967295")]
    BadNetspeed(String),
    /// Score is not a finite number.
    #[error("score {0} is not a number")]
    BadScore(String),
    /// Another entry already has this address.
    #[error("ip {ip} is already used by id {first_id}")]
    DuplicateAddress {
        /// The address.
        ip: IpAddr,
        /// The id of the entry that had it first.
        first_id: u64,
    },
    /// Another entry already has this id.
    #[error("id {0} is used by an earlier entry")]
    DuplicateId(u64),
}

impl SkipReason {
    /// Short stable name, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            SkipReason::Malformed(_) => "malformed",
            SkipReason::BadAddress(_) => "bad_address",
            SkipReason::UnknownCountry(_) => "unknown_country",
            SkipReason::UnknownZone(_) => "unknown_zone",
            SkipReason::BadNetspeed(_) => "bad_netspeed",
            SkipReason::BadScore(_) => "bad_score",
            SkipReason::DuplicateAddress { .. } => "duplicate_address",
            SkipReason::DuplicateId(_) => "duplicate_id",
        }
    }
}

impl Skipped {
    /// Renders the entry with its source: `feed.json: servers[17] (id 1001): reason`.
    pub fn render(&self, source: &str) -> String {
        match self.id {
            Some(id) => format!(
                "{source}: servers[{}] (id {id}): {}",
                self.index, self.reason
            ),
            None => format!("{source}: servers[{}]: {}", self.index, self.reason),
        }
    }
}

/// Why a whole feed was refused.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The feed file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The URL could not be fetched: no connection, a timeout, a broken transfer.
    #[error("{url}: cannot fetch: {reason}")]
    Fetch {
        /// The feed URL.
        url: String,
        /// The HTTP client's message.
        reason: String,
    },
    /// The server answered with a status that is neither 2xx nor 304.
    #[error("{url}: HTTP status {status}, expected 200 or 304")]
    Status {
        /// The feed URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than the limit.
    #[error("{url}: body larger than {limit} bytes")]
    TooLarge {
        /// The feed URL.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// Not JSON, or not the feed's shape.
    #[error("{origin}: not a feed: {reason}")]
    Parse {
        /// Where it came from.
        origin: String,
        /// The parser's message with line and column.
        reason: String,
    },
}

impl fmt::Display for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} entries, {} loaded, {} skipped",
            self.source,
            self.report.entries,
            self.servers.len(),
            self.report.skipped.len()
        )
    }
}
