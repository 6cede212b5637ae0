//! Entry points for fuzzers and property tests: each takes arbitrary bytes and checks what
//! must hold for every input, panicking only when an invariant breaks. The fuzz targets in
//! `fuzz/` are one-line calls to these; the unit tests and `tests/properties.rs` run them
//! too, so they build and run with the normal test suite.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::config::ZoneConfig;
use crate::feed;
use crate::geo::GeoDb;
use crate::metrics::Counters;
use crate::server::{Transport, respond};
use crate::table::{Names, Table};

/// A table built once from the repository's zone, sample feed and GeoIP test database.
pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(build_table)
}

/// A new table from the repository's zone, sample feed and GeoIP test database.
pub fn build_table() -> Table {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = ZoneConfig::load(&root.join("zones/pool.ntp.org.toml")).expect("zone config");
    let names = Names::build(&config).expect("names");
    let geo = GeoDb::open(&root.join("tests/data/geoip/GeoIP2-Country-Test.mmdb")).expect("geoip");
    let feed = feed::load_file(&root.join("data/servers.json")).expect("feed");
    Table::build(Arc::new(config), Arc::new(names), Arc::new(geo), &feed, 0)
}

/// Answers `data` as a query over UDP and over TCP and checks the answers: they fit their
/// limits, echo the id, set QR, and parse as DNS messages.
pub fn respond_to(data: &[u8]) {
    let table = table();
    let mut rng = SmallRng::seed_from_u64(1);
    let counters = Counters::default();
    let mut out = vec![0u8; 65_535];
    let source: IpAddr = "81.2.69.142".parse().expect("literal");
    for transport in [Transport::Udp, Transport::Tcp { keepalive: 100 }] {
        let Some(n) = respond(
            table, data, source, transport, &mut rng, &counters, &mut out,
        ) else {
            // No reply only for what is not a query.
            assert!(
                data.len() < 12 || data[2] & 0x80 != 0,
                "a query went unanswered"
            );
            continue;
        };
        let answer = &out[..n];
        if transport == Transport::Udp {
            assert!(
                n <= usize::from(table.config.max_udp_payload),
                "UDP answer of {n} bytes"
            );
        }
        assert!(n >= 12);
        assert_eq!(answer[..2], data[..2], "id not echoed");
        assert!(answer[2] & 0x80 != 0, "QR not set");
        if let Err(e) = hickory_parse(answer) {
            panic!("answer does not parse: {e}\nquery {data:02x?}\nanswer {answer:02x?}");
        }
    }
}

fn hickory_parse(bytes: &[u8]) -> Result<(), String> {
    hickory_proto::op::Message::from_vec(bytes)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Loads `data` as a feed: never panics; what loads has unique addresses and ids.
pub fn load_feed(data: &[u8]) {
    if let Ok(feed) = feed::load_slice("fuzz", data) {
        let mut ips: Vec<_> = feed.servers.iter().map(|s| s.ip).collect();
        ips.sort_unstable();
        ips.dedup();
        assert_eq!(ips.len(), feed.servers.len());
        assert_eq!(
            feed.report.entries,
            feed.servers.len() + feed.report.skipped.len()
        );
    }
}

/// Parses `data` as a zone configuration: never panics.
pub fn load_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = ZoneConfig::parse(Path::new("fuzz.toml"), text) {
            let _ = Names::build(&config);
        }
    }
}

/// Parses `data` as an NTP reply to a request sent at a fixed time, as the monitor does:
/// never panics; a parsed reply is classified, and its offset and delay, when it has them,
/// are finite.
pub fn parse_ntp_reply(data: &[u8]) {
    use crate::monitor::ntp::{Timestamp, measure, parse_reply};
    match parse_reply(data) {
        Ok(reply) => {
            assert!(data.len() >= crate::monitor::ntp::PACKET_LEN);
            let sent = Timestamp(0xec00_0000_0000_0000);
            let outcome = measure(&reply, sent, Timestamp(sent.0 + (1 << 30)));
            if let Some(m) = outcome.measurement() {
                assert!(m.offset.is_finite() && m.delay.is_finite());
            }
            let _ = crate::monitor::score::next(0.0, &outcome);
        }
        Err(_) => assert!(data.len() < crate::monitor::ntp::PACKET_LEN),
    }
}

/// Loads `data` as a monitor registry: never panics; what loads has unique addresses and
/// ids, and every entry is either loaded or reported.
pub fn load_registry(data: &[u8]) {
    if let Ok(registry) = crate::monitor::registry::load_slice("fuzz", data, None) {
        let mut ips: Vec<_> = registry.servers.iter().map(|s| s.ip).collect();
        ips.sort_unstable();
        ips.dedup();
        assert_eq!(ips.len(), registry.servers.len());
        let mut ids: Vec<_> = registry.servers.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), registry.servers.len());
    }
}
