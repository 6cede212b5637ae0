//! The zone configuration: `zones/<origin>.toml` as written ([`schema`]) and as checked
//! ([`ZoneConfig`]). This is the "config" arrow of the flow: TOML in, a validated value out.
//!
//! Static records are rendered to wire rdata here, once, so the answer path only copies
//! bytes. Names inside rdata are written uncompressed, which every resolver accepts
//! (RFC 3597 §4 forbids compression only for new types; it is optional for the old ones).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::continent::{self, Continent};
use crate::name;
use crate::wire::rtype;

/// Why the zone configuration was refused. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse or had unknown keys / wrong types.
    #[error("{path}: {source}")]
    Toml {
        /// The configuration file.
        path: PathBuf,
        /// The parser's message, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A value that parsed but makes no sense.
    #[error("{path}: {what}: {reason}")]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// The key or entry, e.g. `records[3] (www CNAME)`.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// `[balance]`: how a client's answers are spread over the pool (DESIGN §3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Balance {
    /// Zones or plan.
    pub mode: BalanceMode,
    /// The cap on any server's expected load per unit of net speed, as a multiple of the
    /// pool-wide fair load (≥ 1).
    pub max_load: f64,
    /// The demand file: queries per client country and family.
    pub demand: Option<ConfiguredPath>,
}

/// How the apex, numbered, vendor and country names choose their servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceMode {
    /// The client's country, else its continent, else the whole pool.
    Zones,
    /// The serving plan: sources drawn per client country.
    Plan,
}

/// Where AAAA records are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AaaaPolicy {
    /// Only at numbered names with this number (`2.pool.ntp.org`, `2.de.pool.ntp.org`…), the
    /// pool's historic behaviour; there the whole IPv6 pool zone is served, unsplit, so
    /// every IPv6 server gets its share.
    OnlyNumbered(u8),
    /// At every pool name; IPv6 servers are split like IPv4 ones.
    Everywhere,
}

/// A path written in the configuration file: relative paths are resolved against the
/// directory of the file, not the working directory, so that `pooldns` finds the same
/// files wherever it is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredPath {
    /// The value as written, for messages.
    pub written: String,
    /// The path to open.
    pub path: PathBuf,
}

impl ConfiguredPath {
    /// Resolves `written` against the directory of the configuration file `config`.
    pub fn new(config: &Path, written: String) -> ConfiguredPath {
        let dir = config.parent().unwrap_or(Path::new(""));
        ConfiguredPath {
            path: dir.join(&written),
            written,
        }
    }
}

/// The SOA fields (RFC 1035 §3.3.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    /// Primary nameserver, full wire name.
    pub mname: Vec<u8>,
    /// Responsible mailbox, full wire name.
    pub rname: Vec<u8>,
    /// Refresh interval, seconds.
    pub refresh: u32,
    /// Retry interval, seconds.
    pub retry: u32,
    /// Expire time, seconds.
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308 §4), seconds.
    pub minimum: u32,
    /// TTL of the SOA record itself.
    pub ttl: u32,
}

/// One static record, rendered: owner key, type, TTL and wire rdata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRecord {
    /// Owner, as a key relative to the origin (empty = apex).
    pub owner: Vec<u8>,
    /// Record type.
    pub rtype: u16,
    /// TTL, seconds.
    pub ttl: u32,
    /// Rdata in wire form, names uncompressed.
    pub rdata: Vec<u8>,
}

/// The checked zone configuration.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// The file it came from (for messages).
    pub path: PathBuf,
    /// The origin, full lowercase wire name.
    pub origin: Vec<u8>,
    /// SOA fields; the serial comes from the feed.
    pub soa: Soa,
    /// NS names (full wire names) and their TTL.
    pub ns: Vec<Vec<u8>>,
    /// TTL of the NS RRset.
    pub ns_ttl: u32,
    /// TTL of A/AAAA answers from the pool.
    pub answer_ttl: u32,
    /// Records per answer (k).
    pub records: usize,
    /// Minimum score of an eligible server.
    pub min_score: f64,
    /// Score from which a server gets its full net speed as weight; between `min_score`
    /// and this, the weight grows linearly from 0 (a ramp, so a server that just became
    /// eligible does not get its whole share at once). Equal to `min_score`: no ramp.
    pub full_weight_score: f64,
    /// How answers are spread over the pool: strict zones or the serving plan.
    pub balance: Balance,
    /// How many numbered names (`0`…`numbered-1`).
    pub numbered: u8,
    /// Where AAAA is served.
    pub aaaa: AaaaPolicy,
    /// How often the numbered split is reshuffled.
    pub rotation: Duration,
    /// Alias label → canonical label (`gb` → `uk`).
    pub aliases: BTreeMap<String, String>,
    /// Vendor labels (`debian`, `ubuntu`, …).
    pub vendors: Vec<String>,
    /// Static records (apex TXT, glue, `www` CNAME, …), in file order.
    pub statics: Vec<StaticRecord>,
    /// GeoIP database from the file (the command line may override it).
    pub geoip: Option<ConfiguredPath>,
    /// Largest UDP answer we send, whatever the client offers (RFC 6891 §6.2.5; 1232 is
    /// the DNS Flag Day 2020 value).
    pub max_udp_payload: u16,
    /// What the server says about itself.
    pub identity: Identity,
    /// Secret for interoperable server cookies (RFC 9018); shared by a fleet when set in
    /// the file, random per load otherwise.
    pub cookie_secret: [u8; 16],
    /// Response rate limiting.
    pub rrl: Rrl,
    /// DNSSEC signing (None: the zone is not signed).
    pub dnssec: Option<Dnssec>,
}

/// `[dnssec]`: the zone's keys and its signatures' validity.
#[derive(Debug, Clone)]
pub struct Dnssec {
    /// The directory of the key files (`K<origin>.+<alg>+<tag>.key` and `.private`).
    pub keys_dir: ConfiguredPath,
    /// The keys found there, loaded with the configuration (None until loaded: a
    /// configuration parsed from text alone has not read its key directory).
    pub keys: Option<std::sync::Arc<[crate::dnssec::key::Key]>>,
    /// How long a signature is valid from its inception.
    pub signature_validity: Duration,
    /// How far a signature's inception lies before the table build, for clocks behind ours.
    pub inception_offset: Duration,
    /// Signed answers per pool set too large to sign every answer of (see
    /// [`crate::dnssec`]).
    pub variants: usize,
}

/// `[rrl]`: response rate limiting of UDP answers ([`crate::rrl`]), with BIND's option
/// names. Off (every rate 0) by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rrl {
    /// Answers (NOERROR) per second per client prefix; 0 = not limited.
    pub responses_per_second: u32,
    /// NXDOMAIN answers per second per client prefix; 0 = not limited.
    pub nxdomains_per_second: u32,
    /// Other error answers per second per client prefix; 0 = not limited.
    pub errors_per_second: u32,
    /// Seconds of debt a prefix over its rate can run up (BIND's `window`).
    pub window: u32,
    /// Every `slip`-th limited answer is sent as an empty TC=1 answer; 0 = never.
    pub slip: u32,
    /// Length of the IPv4 prefix an account covers.
    pub ipv4_prefix_length: u8,
    /// Length of the IPv6 prefix an account covers.
    pub ipv6_prefix_length: u8,
    /// A query with a valid server cookie (RFC 7873 §5.3) is never limited.
    pub exempt_valid_cookies: bool,
    /// Count and log what would be limited, but send every answer.
    pub log_only: bool,
}

impl Default for Rrl {
    fn default() -> Self {
        Rrl {
            responses_per_second: 0,
            nxdomains_per_second: 0,
            errors_per_second: 0,
            window: 15,
            slip: 2,
            ipv4_prefix_length: 24,
            ipv6_prefix_length: 56,
            exempt_valid_cookies: true,
            log_only: false,
        }
    }
}

impl Rrl {
    /// Whether any kind of answer is limited.
    pub fn is_on(&self) -> bool {
        self.responses_per_second > 0 || self.nxdomains_per_second > 0 || self.errors_per_second > 0
    }
}

/// Identity answers: NSID (RFC 5001) and the CHAOS TXT names. None = turned off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// NSID payload.
    pub nsid: Option<Vec<u8>>,
    /// `hostname.bind` and `id.server`.
    pub hostname: Option<String>,
    /// `version.bind` and `version.server`.
    pub version: Option<String>,
    /// Whether `_status.<origin>` answers clients other than loopback.
    pub status_public: bool,
}

/// The TOML as written; see `zones/pool.ntp.org.toml` for a commented example.
pub mod schema {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    /// The whole file.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        /// The zone apex, e.g. "pool.ntp.org".
        pub origin: String,
        /// GeoIP country database.
        pub geoip: Option<String>,
        /// Alias label → canonical label.
        #[serde(default)]
        pub aliases: BTreeMap<String, String>,
        /// Vendor labels.
        #[serde(default)]
        pub vendors: Vec<String>,
        /// SOA fields.
        pub soa: Soa,
        /// NS RRset.
        pub ns: Ns,
        /// Answer settings.
        #[serde(default)]
        pub answers: Answers,
        /// Static records.
        #[serde(default)]
        pub records: Vec<Record>,
        /// Identity answers.
        #[serde(default)]
        pub identity: Identity,
        /// DNS cookies.
        #[serde(default)]
        pub cookies: Cookies,
        /// The serving plan.
        #[serde(default)]
        pub balance: Balance,
        /// Response rate limiting.
        #[serde(default)]
        pub rrl: Rrl,
        /// DNSSEC.
        pub dnssec: Option<Dnssec>,
    }

    /// `[dnssec]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Dnssec {
        /// Key directory, relative to the configuration file.
        pub keys: String,
        /// Seconds a signature is valid (default 14 days).
        #[serde(default = "default_signature_validity")]
        pub signature_validity: u64,
        /// Signed answers per large pool set (default 32).
        #[serde(default = "default_variants")]
        pub variants: usize,
    }

    fn default_signature_validity() -> u64 {
        14 * 86_400
    }

    fn default_variants() -> usize {
        32
    }

    /// `[rrl]`, BIND's option names in snake_case.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Rrl {
        /// Answers per second per prefix (0 = off).
        pub responses_per_second: u32,
        /// NXDOMAIN answers per second (default: `responses_per_second`).
        pub nxdomains_per_second: Option<u32>,
        /// Error answers per second (default: `responses_per_second`).
        pub errors_per_second: Option<u32>,
        /// Seconds.
        pub window: u32,
        /// Every Nth limited answer goes out truncated.
        pub slip: u32,
        /// IPv4 prefix length of an account.
        pub ipv4_prefix_length: u8,
        /// IPv6 prefix length of an account.
        pub ipv6_prefix_length: u8,
        /// Valid server cookies are never limited.
        pub exempt_valid_cookies: bool,
        /// Count and log only.
        pub log_only: bool,
    }

    impl Default for Rrl {
        fn default() -> Self {
            let d = super::Rrl::default();
            Rrl {
                responses_per_second: d.responses_per_second,
                nxdomains_per_second: None,
                errors_per_second: None,
                window: d.window,
                slip: d.slip,
                ipv4_prefix_length: d.ipv4_prefix_length,
                ipv6_prefix_length: d.ipv6_prefix_length,
                exempt_valid_cookies: d.exempt_valid_cookies,
                log_only: d.log_only,
            }
        }
    }

    /// `[balance]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Balance {
        /// "zones" or "plan".
        pub mode: String,
        /// Cap on load per unit of net speed, as a multiple of the fair load.
        pub max_load: f64,
        /// Demand file, relative to the configuration file.
        pub demand: Option<String>,
    }

    impl Default for Balance {
        fn default() -> Self {
            Balance {
                mode: "zones".to_owned(),
                max_load: 1.5,
                demand: None,
            }
        }
    }

    /// `[identity]`: each value is text, "auto" (the machine's hostname / our version) or
    /// "" (off).
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Identity {
        /// NSID payload.
        pub nsid: String,
        /// `hostname.bind`, `id.server`.
        pub hostname: String,
        /// `version.bind`, `version.server`.
        pub version: String,
        /// `_status.<origin>` answers everyone, not only loopback.
        pub status_public: bool,
    }

    impl Default for Identity {
        fn default() -> Self {
            Identity {
                nsid: "auto".into(),
                hostname: "auto".into(),
                version: "auto".into(),
                status_public: false,
            }
        }
    }

    /// `[cookies]`.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Cookies {
        /// 32 hex digits shared by every instance of a fleet.
        pub secret: Option<String>,
    }

    /// `[soa]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Soa {
        /// Primary nameserver.
        pub mname: String,
        /// Responsible mailbox as a name (`hostmaster.pool.ntp.org`).
        pub rname: String,
        /// Refresh, seconds.
        #[serde(default = "default_refresh")]
        pub refresh: u32,
        /// Retry, seconds.
        #[serde(default = "default_refresh")]
        pub retry: u32,
        /// Expire, seconds.
        #[serde(default = "default_expire")]
        pub expire: u32,
        /// Negative TTL, seconds.
        #[serde(default = "default_minimum")]
        pub minimum: u32,
        /// SOA record TTL, seconds.
        #[serde(default = "default_minimum")]
        pub ttl: u32,
    }

    /// `[ns]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Ns {
        /// Nameserver names.
        pub names: Vec<String>,
        /// TTL of the NS RRset.
        #[serde(default = "default_ns_ttl")]
        pub ttl: u32,
    }

    /// `[answers]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Answers {
        /// TTL of pool answers.
        pub ttl: u32,
        /// Records per answer.
        pub records: usize,
        /// Minimum score.
        pub min_score: f64,
        /// Score of full weight (default: `min_score`, no ramp).
        pub full_weight_score: Option<f64>,
        /// Numbered names.
        pub numbered: u8,
        /// "everywhere" or "only-N".
        pub aaaa: String,
        /// Rotation period of the split, seconds.
        pub rotation: u64,
        /// Largest UDP answer.
        pub max_udp_payload: u16,
    }

    impl Default for Answers {
        fn default() -> Self {
            Answers {
                ttl: 150,
                records: 4,
                min_score: 10.0,
                full_weight_score: None,
                numbered: 4,
                aaaa: "only-2".to_owned(),
                rotation: 3600,
                max_udp_payload: 1232,
            }
        }
    }

    /// One `[[records]]` entry.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Record {
        /// Owner relative to the origin; "@" is the apex.
        pub name: String,
        /// A, AAAA, NS, CNAME, TXT, MX, SRV.
        #[serde(rename = "type")]
        pub rtype: String,
        /// TTL, seconds (default 3600).
        pub ttl: Option<u32>,
        /// The data in presentation form; TXT also takes a list of strings.
        pub value: Value,
    }

    /// A record value: one string or, for TXT, several.
    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    pub enum Value {
        /// One string.
        One(String),
        /// Several strings (TXT).
        Many(Vec<String>),
    }

    fn default_refresh() -> u32 {
        5400
    }
    fn default_expire() -> u32 {
        1_209_600
    }
    fn default_minimum() -> u32 {
        3600
    }
    fn default_ns_ttl() -> u32 {
        86_400
    }
}

/// The largest zone configuration: 1 MiB. The bundled one is 4 KiB; even a zone with
/// every country's records spelled out stays far below.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl ZoneConfig {
    /// Loads and checks the configuration at `path`; one over [`MAX_CONFIG_BYTES`] is
    /// refused unread.
    pub fn load(path: &Path) -> Result<ZoneConfig, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = crate::feed::source::read_bounded(path, MAX_CONFIG_BYTES, "zone configuration")
            .map_err(read_error)?;
        let text = String::from_utf8(bytes)
            .map_err(|e| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let mut config = Self::parse(path, &text)?;
        config.load_keys()?;
        Ok(config)
    }

    /// Reads the zone's keys from the `[dnssec]` key directory (nothing without one).
    pub fn load_keys(&mut self) -> Result<(), ConfigError> {
        let origin = name::render(&self.origin);
        let path = self.path.clone();
        if let Some(d) = &mut self.dnssec {
            let keys =
                crate::dnssec::key::load_dir(&d.keys_dir.path, &origin).map_err(|reason| {
                    ConfigError::Invalid {
                        path,
                        what: format!("dnssec.keys ({})", d.keys_dir.written),
                        reason,
                    }
                })?;
            d.keys = Some(keys.into());
        }
        Ok(())
    }

    /// Parses and checks configuration text; `path` is used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<ZoneConfig, ConfigError> {
        let file: schema::File = toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        Checker { path }.check(file)
    }

    /// Whether a label (lowercase) names a pool zone of its own: a country, a continent,
    /// a vendor, or an alias of one of them.
    pub fn is_pool_label(&self, label: &str) -> bool {
        continent::continent_of(label).is_some()
            || Continent::from_label(label).is_some()
            || self.vendors.iter().any(|v| v == label)
            || self.aliases.contains_key(label)
    }
}

struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, what: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            what: what.into(),
            reason: reason.into(),
        }
    }

    fn full_name(&self, what: &str, text: &str) -> Result<Vec<u8>, ConfigError> {
        name::from_text(text).map_err(|e| self.invalid(what, e.to_string()))
    }

    fn check(&self, file: schema::File) -> Result<ZoneConfig, ConfigError> {
        let origin = self.full_name("origin", &file.origin)?;
        if origin == [0] {
            return Err(self.invalid("origin", "the root zone cannot be served"));
        }
        let soa = Soa {
            mname: self.full_name("soa.mname", &file.soa.mname)?,
            rname: self.full_name("soa.rname", &file.soa.rname)?,
            refresh: file.soa.refresh,
            retry: file.soa.retry,
            expire: file.soa.expire,
            minimum: file.soa.minimum,
            ttl: file.soa.ttl,
        };
        if file.ns.names.is_empty() {
            return Err(self.invalid("ns.names", "at least one NS name is needed"));
        }
        let ns = file
            .ns
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| self.full_name(&format!("ns.names[{i}]"), n))
            .collect::<Result<Vec<_>, _>>()?;

        let a = &file.answers;
        if !(1..=16).contains(&a.records) {
            return Err(self.invalid("answers.records", "must be between 1 and 16"));
        }
        if !(1..=10).contains(&a.numbered) {
            return Err(self.invalid("answers.numbered", "must be between 1 and 10"));
        }
        if !a.min_score.is_finite() {
            return Err(self.invalid("answers.min_score", "must be a number"));
        }
        let full_weight_score = a.full_weight_score.unwrap_or(a.min_score);
        if !full_weight_score.is_finite() || full_weight_score < a.min_score {
            return Err(self.invalid(
                "answers.full_weight_score",
                format!(
                    "{full_weight_score} must be a number no lower than min_score ({})",
                    a.min_score
                ),
            ));
        }
        let b = &file.balance;
        let mode = match b.mode.as_str() {
            "zones" => BalanceMode::Zones,
            "plan" => BalanceMode::Plan,
            other => {
                return Err(self.invalid(
                    "balance.mode",
                    format!("{other:?} is neither \"zones\" nor \"plan\""),
                ));
            }
        };
        if !b.max_load.is_finite() || b.max_load < 1.0 {
            return Err(self.invalid(
                "balance.max_load",
                format!("{} must be a number of at least 1", b.max_load),
            ));
        }
        if a.rotation == 0 {
            return Err(self.invalid("answers.rotation", "must be at least 1 second"));
        }
        if !(512..=4096).contains(&a.max_udp_payload) {
            return Err(self.invalid("answers.max_udp_payload", "must be between 512 and 4096"));
        }
        let aaaa = match a.aaaa.as_str() {
            "everywhere" => AaaaPolicy::Everywhere,
            other => match other.strip_prefix("only-").map(str::parse::<u8>) {
                Some(Ok(n)) if n < a.numbered => AaaaPolicy::OnlyNumbered(n),
                _ => {
                    return Err(self.invalid(
                        "answers.aaaa",
                        format!(
                            "{other:?} is neither \"everywhere\" nor \"only-N\" with N below {}",
                            a.numbered
                        ),
                    ));
                }
            },
        };

        let vendors = file
            .vendors
            .iter()
            .enumerate()
            .map(|(i, v)| self.label(&format!("vendors[{i}]"), v))
            .collect::<Result<Vec<_>, _>>()?;
        for v in &vendors {
            if continent::continent_of(v).is_some() || Continent::from_label(v).is_some() {
                return Err(self.invalid(
                    format!("vendors ({v})"),
                    "is already a country or continent name",
                ));
            }
        }
        let mut aliases = BTreeMap::new();
        for (from, to) in &file.aliases {
            let from_l = self.label(&format!("aliases.{from}"), from)?;
            let to_l = self.label(&format!("aliases.{from}"), to)?;
            let target_known = continent::continent_of(&to_l).is_some()
                || Continent::from_label(&to_l).is_some()
                || vendors.contains(&to_l);
            if !target_known {
                return Err(self.invalid(
                    format!("aliases.{from}"),
                    format!("target {to:?} is not a country, continent or vendor name"),
                ));
            }
            if from_l == to_l || file.aliases.contains_key(&to_l) {
                return Err(self.invalid(
                    format!("aliases.{from}"),
                    "an alias must point at a name that is not itself an alias",
                ));
            }
            aliases.insert(from_l, to_l);
        }

        let statics = file
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| self.record(i, r))
            .collect::<Result<Vec<_>, _>>()?;

        let identity = Identity {
            nsid: identity_value(&file.identity.nsid, hostname).map(String::into_bytes),
            hostname: identity_value(&file.identity.hostname, hostname),
            version: identity_value(&file.identity.version, || {
                format!("pooldns {}", env!("CARGO_PKG_VERSION"))
            }),
            status_public: file.identity.status_public,
        };
        // With every other EDNS option, a longer NSID would not fit in a 512-byte answer
        // to the longest question (wire::build module doc).
        let max_nsid = crate::wire::build::MAX_NSID_LEN;
        if identity.nsid.as_ref().is_some_and(|n| n.len() > max_nsid) {
            return Err(self.invalid(
                "identity.nsid",
                format!(
                    "longer than {max_nsid} bytes: with every other EDNS option, the answer to \
                     a 255-byte name would not fit in 512 bytes"
                ),
            ));
        }
        for (key, v) in [
            ("identity.hostname", &identity.hostname),
            ("identity.version", &identity.version),
        ] {
            if v.as_ref().is_some_and(|v| v.len() > 255) {
                return Err(self.invalid(key, "longer than 255 bytes"));
            }
        }
        let cookie_secret = match &file.cookies.secret {
            None => rand::random(),
            Some(hex) => parse_secret(hex).ok_or_else(|| {
                self.invalid("cookies.secret", "must be 32 hexadecimal digits (16 bytes)")
            })?,
        };
        let rrl = self.rrl(&file.rrl)?;
        let dnssec = file.dnssec.as_ref().map(|d| self.dnssec(d)).transpose()?;
        if let Some(d) = &dnssec {
            // Signatures are made at every table build, at least once per rotation: three
            // rotations of validity keep a table whose rebuild failed serving valid ones.
            if d.signature_validity.as_secs() < 3 * a.rotation {
                return Err(self.invalid(
                    "dnssec.signature_validity",
                    format!(
                        "{} seconds is less than three rotations (answers.rotation = {}): \
                         signatures would expire between re-signings",
                        d.signature_validity.as_secs(),
                        a.rotation
                    ),
                ));
            }
        }

        Ok(ZoneConfig {
            path: self.path.to_owned(),
            origin,
            soa,
            ns,
            ns_ttl: file.ns.ttl,
            answer_ttl: a.ttl,
            records: a.records,
            min_score: a.min_score,
            full_weight_score,
            balance: Balance {
                mode,
                max_load: b.max_load,
                demand: b
                    .demand
                    .clone()
                    .map(|written| ConfiguredPath::new(self.path, written)),
            },
            numbered: a.numbered,
            aaaa,
            rotation: Duration::from_secs(a.rotation),
            aliases,
            vendors,
            statics,
            geoip: file
                .geoip
                .map(|written| ConfiguredPath::new(self.path, written)),
            max_udp_payload: a.max_udp_payload,
            identity,
            cookie_secret,
            rrl,
            dnssec,
        })
    }

    fn dnssec(&self, d: &schema::Dnssec) -> Result<Dnssec, ConfigError> {
        // An hour of clock skew, at least; re-signed at every build (at least hourly with
        // the default rotation), so anything over a few hours is ample.
        const INCEPTION_OFFSET: Duration = Duration::from_secs(3600);
        if d.signature_validity < 3 * 3600 || d.signature_validity > 90 * 86_400 {
            return Err(self.invalid(
                "dnssec.signature_validity",
                "must be between 10800 seconds (3 hours) and 7776000 (90 days)",
            ));
        }
        if !(1..=4096).contains(&d.variants) {
            return Err(self.invalid("dnssec.variants", "must be between 1 and 4096"));
        }
        Ok(Dnssec {
            keys_dir: ConfiguredPath::new(self.path, d.keys.clone()),
            keys: None,
            signature_validity: Duration::from_secs(d.signature_validity),
            inception_offset: INCEPTION_OFFSET,
            variants: d.variants,
        })
    }

    fn rrl(&self, r: &schema::Rrl) -> Result<Rrl, ConfigError> {
        // Up to a million a second, so that a benchmark can turn the accounting on
        // without limiting anything.
        const MAX_RATE: u32 = 1_000_000;
        let rrl = Rrl {
            responses_per_second: r.responses_per_second,
            nxdomains_per_second: r.nxdomains_per_second.unwrap_or(r.responses_per_second),
            errors_per_second: r.errors_per_second.unwrap_or(r.responses_per_second),
            window: r.window,
            slip: r.slip,
            ipv4_prefix_length: r.ipv4_prefix_length,
            ipv6_prefix_length: r.ipv6_prefix_length,
            exempt_valid_cookies: r.exempt_valid_cookies,
            log_only: r.log_only,
        };
        for (key, rate) in [
            ("rrl.responses_per_second", rrl.responses_per_second),
            ("rrl.nxdomains_per_second", rrl.nxdomains_per_second),
            ("rrl.errors_per_second", rrl.errors_per_second),
        ] {
            if rate > MAX_RATE {
                return Err(self.invalid(key, format!("{rate} is more than {MAX_RATE}")));
            }
        }
        if !(1..=3600).contains(&rrl.window) {
            return Err(self.invalid("rrl.window", "must be between 1 and 3600 seconds"));
        }
        if rrl.slip > 10 {
            return Err(self.invalid("rrl.slip", "must be between 0 and 10"));
        }
        if rrl.ipv4_prefix_length > 32 {
            return Err(self.invalid("rrl.ipv4_prefix_length", "must be between 0 and 32"));
        }
        if rrl.ipv6_prefix_length > 128 {
            return Err(self.invalid("rrl.ipv6_prefix_length", "must be between 0 and 128"));
        }
        Ok(rrl)
    }

    fn label(&self, what: &str, text: &str) -> Result<String, ConfigError> {
        let key = name::key_from_text(text).map_err(|e| self.invalid(what, e.to_string()))?;
        if name::labels(&key).count() != 1 {
            return Err(self.invalid(what, format!("{text:?} must be a single label")));
        }
        Ok(text.to_ascii_lowercase())
    }

    fn record(&self, index: usize, r: &schema::Record) -> Result<StaticRecord, ConfigError> {
        let what = format!("records[{index}] ({} {})", r.name, r.rtype);
        let bad = |reason: String| self.invalid(what.clone(), reason);
        let owner = name::key_from_text(&r.name).map_err(|e| bad(e.to_string()))?;
        let one = || match &r.value {
            schema::Value::One(s) => Ok(s.trim()),
            schema::Value::Many(_) => Err(bad("value must be a single string".into())),
        };
        let name_value = |text: &str| name::from_text(text).map_err(|e| bad(e.to_string()));
        let (rt, rdata) = match r.rtype.to_ascii_uppercase().as_str() {
            "A" => {
                let ip: Ipv4Addr = one()?
                    .parse()
                    .map_err(|_| bad("value is not an IPv4 address".into()))?;
                (rtype::A, ip.octets().to_vec())
            }
            "AAAA" => {
                let ip: Ipv6Addr = one()?
                    .parse()
                    .map_err(|_| bad("value is not an IPv6 address".into()))?;
                (rtype::AAAA, ip.octets().to_vec())
            }
            "NS" => (rtype::NS, name_value(one()?)?),
            "CNAME" => (rtype::CNAME, name_value(one()?)?),
            "MX" => {
                let v = one()?;
                let (pref, host) = v
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| bad("MX value is \"PREFERENCE HOST\"".into()))?;
                let pref: u16 = pref
                    .parse()
                    .map_err(|_| bad("MX preference is not a number 0-65535".into()))?;
                let mut rdata = pref.to_be_bytes().to_vec();
                rdata.extend(name_value(host.trim())?);
                (rtype::MX, rdata)
            }
            "SRV" => {
                let v = one()?;
                let parts: Vec<&str> = v.split_whitespace().collect();
                let [prio, weight, port, target] = parts[..] else {
                    return Err(bad("SRV value is \"PRIORITY WEIGHT PORT TARGET\"".into()));
                };
                let mut rdata = Vec::new();
                for n in [prio, weight, port] {
                    let n: u16 = n
                        .parse()
                        .map_err(|_| bad(format!("{n:?} is not a number 0-65535")))?;
                    rdata.extend(n.to_be_bytes());
                }
                rdata.extend(name_value(target)?);
                (rtype::SRV, rdata)
            }
            "TXT" => {
                let strings: Vec<&str> = match &r.value {
                    schema::Value::One(s) => vec![s.as_str()],
                    schema::Value::Many(v) => v.iter().map(String::as_str).collect(),
                };
                let mut rdata = Vec::new();
                for s in strings {
                    // RFC 1035 §3.3: a character-string is at most 255 bytes; split longer ones.
                    let bytes = s.as_bytes();
                    if bytes.is_empty() {
                        rdata.push(0);
                    }
                    for chunk in bytes.chunks(255) {
                        rdata.push(chunk.len() as u8); // chunks(255): len <= 255
                        rdata.extend_from_slice(chunk);
                    }
                }
                if rdata.len() > 4096 {
                    return Err(bad("TXT data longer than 4096 bytes".into()));
                }
                (rtype::TXT, rdata)
            }
            other => {
                return Err(bad(format!(
                    "type {other:?} is not supported (A, AAAA, NS, CNAME, TXT, MX, SRV)"
                )));
            }
        };
        if rt == rtype::NS && owner.is_empty() {
            return Err(bad("apex NS records come from [ns]".into()));
        }
        Ok(StaticRecord {
            owner,
            rtype: rt,
            ttl: r.ttl.unwrap_or(3600),
            rdata,
        })
    }
}

fn identity_value(value: &str, auto: impl FnOnce() -> String) -> Option<String> {
    match value {
        "" => None,
        "auto" => Some(auto()),
        text => Some(text.to_owned()),
    }
}

/// The machine's hostname (Linux), or "pooldns" where it cannot be read.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pooldns".to_owned())
}

fn parse_secret(hex: &str) -> Option<[u8; 16]> {
    let hex = hex.trim();
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_over_the_size_limit_is_refused_unread_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zone.toml");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(MAX_CONFIG_BYTES + 1)
            .unwrap();
        let e = ZoneConfig::load(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: cannot read: 1048577 bytes (1.0 MiB), but zone configuration files are \
                 limited to 1 MiB",
                path.display()
            )
        );
    }

    const MINIMAL: &str = r#"
origin = "example.org"
[soa]
mname = "ns1.example.org"
rname = "hostmaster.example.org"
[ns]
names = ["ns1.example.org"]
"#;

    fn parse(text: &str) -> Result<ZoneConfig, ConfigError> {
        ZoneConfig::parse(Path::new("zones/test.toml"), text)
    }

    #[test]
    fn minimal_config_takes_pool_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.origin, b"\x07example\x03org\x00");
        assert_eq!(c.answer_ttl, 150);
        assert_eq!(c.records, 4);
        assert_eq!(c.min_score, 10.0);
        assert_eq!(c.numbered, 4);
        assert_eq!(c.aaaa, AaaaPolicy::OnlyNumbered(2));
        assert_eq!(c.rotation, Duration::from_secs(3600));
        assert_eq!(c.ns_ttl, 86400);
        assert_eq!(c.max_udp_payload, 1232);
    }

    #[test]
    fn renders_static_records() {
        let text = format!(
            "{MINIMAL}\n{}",
            r#"
[[records]]
name = "@"
type = "MX"
value = "0 ."
[[records]]
name = "www"
type = "CNAME"
value = "www.example.net."
ttl = 60
[[records]]
name = "@"
type = "TXT"
value = ["a", ""]
"#
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.statics[0].rdata, b"\x00\x00\x00");
        assert_eq!(c.statics[1].owner, b"\x03www");
        assert_eq!(c.statics[1].ttl, 60);
        assert_eq!(c.statics[1].rdata, b"\x03www\x07example\x03net\x00");
        assert_eq!(c.statics[2].rdata, b"\x01a\x00");
    }

    #[test]
    fn errors_name_the_file_entry_and_reason() {
        let text =
            format!("{MINIMAL}\n[[records]]\nname = \"x\"\ntype = \"A\"\nvalue = \"1.2.3\"\n");
        let e = parse(&text).unwrap_err().to_string();
        assert_eq!(
            e,
            "zones/test.toml: records[0] (x A): value is not an IPv4 address"
        );
        let e = parse(&format!("{MINIMAL}\n[answers]\naaaa = \"sometimes\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("zones/test.toml: answers.aaaa: \"sometimes\""),
            "{e}"
        );
        let e = parse("origin = 1").unwrap_err().to_string();
        assert!(e.starts_with("zones/test.toml: "), "{e}");
        let e = parse(&MINIMAL.replace("[ns]", "bogus = 1\n[ns]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn identity_and_cookie_settings() {
        let c = parse(&format!(
            "{MINIMAL}\n[identity]\nnsid = \"ns-a\"\nhostname = \"\"\n[cookies]\nsecret = \"000102030405060708090a0b0c0d0e0f\"\n"
        ))
        .unwrap();
        assert_eq!(c.identity.nsid.as_deref(), Some(&b"ns-a"[..]));
        assert_eq!(c.identity.hostname, None);
        assert!(
            c.identity
                .version
                .as_deref()
                .unwrap()
                .starts_with("pooldns ")
        );
        assert_eq!(c.cookie_secret[15], 15);
        let e = parse(&format!("{MINIMAL}\n[cookies]\nsecret = \"abc\"\n")).unwrap_err();
        assert!(e.to_string().contains("cookies.secret"), "{e}");
    }

    #[test]
    fn rejects_an_nsid_that_cannot_fit_512_bytes_beside_every_option() {
        let longest = "n".repeat(crate::wire::build::MAX_NSID_LEN);
        let c = parse(&format!("{MINIMAL}\n[identity]\nnsid = \"{longest}\"\n")).unwrap();
        assert_eq!(c.identity.nsid.map(|n| n.len()), Some(142));
        let e = parse(&format!("{MINIMAL}\n[identity]\nnsid = \"{longest}n\"\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "zones/test.toml: identity.nsid: longer than 142 bytes: with every other EDNS \
             option, the answer to a 255-byte name would not fit in 512 bytes"
        );
    }

    #[test]
    fn rrl_is_off_by_default_and_takes_bind_names() {
        assert!(!parse(MINIMAL).unwrap().rrl.is_on());
        let c = parse(&format!(
            "{MINIMAL}\n[rrl]\nresponses_per_second = 20\nerrors_per_second = 5\nslip = 1\n"
        ))
        .unwrap();
        assert_eq!(
            c.rrl,
            Rrl {
                responses_per_second: 20,
                nxdomains_per_second: 20,
                errors_per_second: 5,
                slip: 1,
                ..Rrl::default()
            }
        );
        assert!(c.rrl.is_on());
        let e = parse(&format!("{MINIMAL}\n[rrl]\nwindow = 0\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "zones/test.toml: rrl.window: must be between 1 and 3600 seconds"
        );
        let e = parse(&format!("{MINIMAL}\n[rrl]\nipv4_prefix_length = 33\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "zones/test.toml: rrl.ipv4_prefix_length: must be between 0 and 32"
        );
        let e = parse(&format!("{MINIMAL}\n[rrl]\nrate = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("zones/test.toml: ") && e.contains("rate"),
            "{e}"
        );
    }

    #[test]
    fn aliases_must_point_at_pool_names() {
        let ok = parse(&format!("aliases = {{ gb = \"uk\" }}\n{MINIMAL}")).unwrap();
        assert_eq!(ok.aliases["gb"], "uk");
        let e = parse(&format!("aliases = {{ gb = \"nowhere\" }}\n{MINIMAL}")).unwrap_err();
        assert!(e.to_string().contains("not a country"), "{e}");
    }
}
