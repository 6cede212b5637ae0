//! Feed loading: JSON bytes → [`Feed`]. Bad entries are skipped with a reason; only a
//! feed that is not JSON of the right shape fails as a whole.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use super::schema::{Entry, File, IdOnly};
use super::source::{MAX_FEED_BYTES, read_bounded};
use super::{Feed, FeedError, LoadReport, Server, SkipReason, Skipped};
use crate::continent;

/// Loads the feed file at `path`; one over [`MAX_FEED_BYTES`] is refused unread.
pub fn load_file(path: &Path) -> Result<Feed, FeedError> {
    let started = Instant::now();
    let bytes = read_bounded(path, MAX_FEED_BYTES, "feed").map_err(|source| FeedError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut feed = load_slice(&path.display().to_string(), &bytes)?;
    feed.load_time = started.elapsed();
    Ok(feed)
}

/// Loads a feed from bytes; `source` names it in messages.
pub fn load_slice(source: &str, bytes: &[u8]) -> Result<Feed, FeedError> {
    let started = Instant::now();
    let parse_error = |reason: String| FeedError::Parse {
        origin: source.to_owned(),
        reason,
    };
    // Checked before serde: it reads a struct from an array too (elements as the fields in
    // order), and its message for one ("expected struct File") names our type, not the shape.
    if let Some(what) = top_level_not_an_object(bytes) {
        return Err(parse_error(format!(
            "the top level is {what}, but a feed must be an object with a \"servers\" array: \
             {{\"serial\": 1763798400, \"servers\": [{{\"id\": 1, ...}}]}}"
        )));
    }
    let file: File = serde_json::from_slice(bytes).map_err(|e| parse_error(e.to_string()))?;
    let serial = match file.serial {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                return Err(parse_error(format!(
                    "serial {v} is not a number 0-4294967295"
                )));
            }
        },
    };

    let mut report = LoadReport {
        entries: file.servers.len(),
        skipped: Vec::new(),
    };
    let mut servers = Vec::with_capacity(file.servers.len());
    let mut by_ip: HashMap<IpAddr, u64> = HashMap::with_capacity(file.servers.len());
    let mut ids: HashSet<u64> = HashSet::with_capacity(file.servers.len());
    for (index, checked) in check_entries(&file.servers).into_iter().enumerate() {
        match checked {
            Ok(server) => {
                let id = Some(server.id);
                if let Some(&first_id) = by_ip.get(&server.ip) {
                    report.skipped.push(Skipped {
                        index,
                        id,
                        reason: SkipReason::DuplicateAddress {
                            ip: server.ip,
                            first_id,
                        },
                    });
                } else if !ids.insert(server.id) {
                    report.skipped.push(Skipped {
                        index,
                        id,
                        reason: SkipReason::DuplicateId(server.id),
                    });
                } else {
                    by_ip.insert(server.ip, server.id);
                    servers.push(server);
                }
            }
            Err((reason, id)) => report.skipped.push(Skipped { index, id, reason }),
        }
    }
    Ok(Feed {
        source: source.to_owned(),
        serial,
        servers,
        report,
        loaded_at: std::time::SystemTime::now(),
        load_time: started.elapsed(),
    })
}

/// What the top level of `bytes` is when it is JSON but not an object; None for an object
/// and for what is not JSON (the parser says what is wrong then).
fn top_level_not_an_object(bytes: &[u8]) -> Option<&'static str> {
    // JSON whitespace (RFC 8259 §2) is these four.
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
    let what = match first {
        b'[' => "an array",
        b'"' => "a string",
        b'-' | b'0'..=b'9' => "a number",
        b't' | b'f' => "true or false",
        b'n' => "null",
        _ => return None,
    };
    // Only well-formed JSON: a cut-off array is better told by the parser's position.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .is_ok()
        .then_some(what)
}

/// An entry checked on its own: the server, or why it is skipped and its id if readable.
type Checked = Result<Server, (SkipReason, Option<u64>)>;

/// Entries a reload thread takes at a time: larger feeds are checked by several threads.
const CHUNK: usize = 4096;

/// Checks every entry, in order; a large feed on several threads (parsing is most of a
/// reload's time).
fn check_entries(raw: &[&serde_json::value::RawValue]) -> Vec<Checked> {
    crate::parallel::map(raw, CHUNK, |raw| {
        check_entry(raw.get()).map_err(|reason| {
            let id = serde_json::from_str::<IdOnly>(raw.get())
                .ok()
                .and_then(|e| e.id);
            (reason, id)
        })
    })
}

fn check_entry(raw: &str) -> Result<Server, SkipReason> {
    let entry: Entry = serde_json::from_str(raw).map_err(|e| {
        // The position is inside the entry, not the file: leave it out.
        let text = e.to_string();
        let reason = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(r, _)| r);
        SkipReason::Malformed(reason.to_owned())
    })?;
    let ip: IpAddr = entry
        .ip
        .trim()
        .parse()
        .map_err(|_| SkipReason::BadAddress(entry.ip.clone().into_owned()))?;
    // An IPv4-mapped IPv6 address is an IPv4 server written oddly.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let netspeed = entry
        .netspeed
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| SkipReason::BadNetspeed(entry.netspeed.to_string()))?;
    let score = entry
        .score
        .as_f64()
        .filter(|s| s.is_finite())
        .ok_or_else(|| SkipReason::BadScore(entry.score.to_string()))?;
    let country = entry.country.to_ascii_lowercase();
    if continent::continent_of(&country).is_none() {
        return Err(SkipReason::UnknownCountry(entry.country.into_owned()));
    }
    let zones = entry
        .zones
        .map(|list| {
            continent::zone_labels(&list).map_err(|z| SkipReason::UnknownZone(z.to_owned()))
        })
        .transpose()?;
    Ok(Server {
        id: entry.id,
        ip,
        netspeed,
        score,
        country,
        zones,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_good_entries_and_reports_bad_ones() {
        let json = br#"{"serial": 7, "servers": [
            {"id": 1, "ip": "192.0.2.1", "netspeed": 1000, "score": 19.5, "country": "DE"},
            {"id": 2, "ip": "10.0.0", "netspeed": 1000, "score": 19.5, "country": "de"},
            {"id": 3, "ip": "192.0.2.3", "netspeed": -5, "score": 19.5, "country": "de"},
            {"id": 4, "ip": "192.0.2.4", "netspeed": 1000, "score": 19.5, "country": "xx"},
            {"id": 5, "ip": "192.0.2.1", "netspeed": 1000, "score": 19.5, "country": "de"},
            {"id": 1, "ip": "192.0.2.6", "netspeed": 1000, "score": 19.5, "country": "de"},
            {"id": 7, "ip": "2001:db8::7", "netspeed": 0, "score": -50, "country": "us",
             "zones": ["us", "europe"]},
            {"id": 8, "ip": "192.0.2.8", "netspeed": 1000, "score": 19.5, "country": "de",
             "zones": ["mars"]},
            {"ip": "192.0.2.9"},
            "nonsense"
        ]}"#;
        let feed = load_slice("feed.json", json).unwrap();
        assert_eq!(feed.serial, Some(7));
        assert_eq!(feed.report.entries, 10);
        let ids: Vec<u64> = feed.servers.iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 7]);
        assert_eq!(feed.servers[0].country, "de");
        assert_eq!(
            feed.servers[1].zones.as_deref(),
            Some(&["us".to_owned(), "europe".to_owned()][..])
        );
        let rendered: Vec<String> = feed
            .report
            .skipped
            .iter()
            .map(|s| s.render("feed.json"))
            .collect();
        assert_eq!(
            rendered[..6],
            [
                "feed.json: servers[1] (id 2): ip \"10.0.0\" is not an address",
                "feed.json: servers[2] (id 3): netspeed -5 is not a whole number of kbit/s between 0 and 4294967295",
                "feed.json: servers[3] (id 4): country \"xx\" is not a known ISO 3166 code",
                "feed.json: servers[4] (id 5): ip 192.0.2.1 is already used by id 1",
                "feed.json: servers[5] (id 1): id 1 is used by an earlier entry",
                "feed.json: servers[7] (id 8): zone \"mars\" is not a country or continent",
            ]
        );
        assert!(
            rendered[6].starts_with("feed.json: servers[8]: missing field"),
            "{}",
            rendered[6]
        );
        assert!(
            rendered[7].starts_with("feed.json: servers[9]: invalid type"),
            "{}",
            rendered[7]
        );
    }

    #[test]
    fn a_large_feed_checked_by_several_threads_keeps_its_order() {
        // Several chunks, so several threads; bad entries and a duplicate in different chunks.
        let n = 6 * CHUNK + 17;
        let entries: Vec<String> = (0..n)
            .map(|i| match i {
                5 | 9000 | 20_000 => format!(r#"{{"id": {i}, "ip": "nope", "netspeed": 1, "score": 20, "country": "de"}}"#),
                // The address of entry 1: a duplicate, far from the first.
                24_000 => r#"{"id": 24000, "ip": "10.0.0.1", "netspeed": 1, "score": 20, "country": "de"}"#.to_owned(),
                _ => format!(
                    r#"{{"id": {i}, "ip": "10.{}.{}.{}", "netspeed": 1, "score": 20, "country": "de"}}"#,
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                ),
            })
            .collect();
        let json = format!(r#"{{"servers": [{}]}}"#, entries.join(","));
        let feed = load_slice("feed.json", json.as_bytes()).unwrap();
        let skipped: Vec<(usize, Option<u64>)> = feed
            .report
            .skipped
            .iter()
            .map(|s| (s.index, s.id))
            .collect();
        assert_eq!(
            skipped,
            [
                (5, Some(5)),
                (9000, Some(9000)),
                (20_000, Some(20_000)),
                (24_000, Some(24_000))
            ]
        );
        assert_eq!(feed.servers.len(), n - 4);
        let ids: Vec<u64> = feed.servers.iter().map(|s| s.id).collect();
        let expected: Vec<u64> = (0..n as u64)
            .filter(|i| ![5, 9000, 20_000, 24_000].contains(i))
            .collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn refuses_what_is_not_a_feed() {
        for bad in [
            &b"{"[..],
            b"[]",
            b"{\"servers\": 5}",
            b"{\"serial\": -1, \"servers\": []}",
        ] {
            let e = load_slice("feed.json", bad).unwrap_err().to_string();
            assert!(e.starts_with("feed.json: not a feed: "), "{e}");
        }
    }

    #[test]
    fn a_feed_that_is_not_an_object_says_what_a_feed_is() {
        let want = |what: &str| {
            format!(
                "servers.json: not a feed: the top level is {what}, but a feed must be an object \
                 with a \"servers\" array: {{\"serial\": 1763798400, \"servers\": [{{\"id\": 1, ...}}]}}"
            )
        };
        let array =
            br#"[{"id": 1, "ip": "192.0.2.1", "netspeed": 1000, "score": 19.5, "country": "de"}]"#;
        for (bad, what) in [
            (&array[..], "an array"),
            // serde would read a two-element array as the struct's fields, in order.
            (b" \n[7, []]", "an array"),
            (b"[]", "an array"),
            (b"\"servers\"", "a string"),
            (b"-5", "a number"),
            (b"true", "true or false"),
            (b"null", "null"),
        ] {
            let e = load_slice("servers.json", bad).unwrap_err().to_string();
            assert_eq!(e, want(what));
        }
        // A file is named by its path.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servers.json");
        std::fs::write(&path, array).unwrap();
        let e = load_file(&path).unwrap_err().to_string();
        let named = want("an array").replacen("servers.json", &path.display().to_string(), 1);
        assert_eq!(e, named);
        // Not JSON, or cut off: the parser's message, with its position.
        for (bad, reason) in [
            (&b"<html>"[..], "expected value at line 1 column 1"),
            (b"forbidden", "expected ident at line 1 column 2"),
            (
                b"[{\"id\": 1",
                "EOF while parsing an object at line 1 column 9",
            ),
        ] {
            let e = load_slice("servers.json", bad).unwrap_err().to_string();
            assert_eq!(e, format!("servers.json: not a feed: {reason}"));
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = load_file(Path::new("/nonexistent/feed.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/nonexistent/feed.json: cannot read: "),
            "{e}"
        );
    }
}
