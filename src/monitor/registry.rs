//! The registry: the servers the monitor probes, as the feed without scores (`id`, `ip`,
//! `netspeed`, optional `country`, optional `zones`). A missing country is placed by the
//! GeoIP database. Bad entries are skipped with a message naming the file, the entry and the
//! reason; only a registry that is not JSON of the right shape fails as a whole.
//!
//! ```json
//! {"servers": [{"id": 1, "ip": "192.0.2.1", "netspeed": 1000, "country": "de"},
//!              {"id": 2, "ip": "2001:db8::2", "netspeed": 0, "zones": ["de", "europe"]}]}
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::continent;
use crate::feed::schema::IdOnly;
use crate::geo::GeoDb;

/// Largest registry read (the feed's limit).
const MAX_REGISTRY_BYTES: u64 = crate::feed::source::MAX_FEED_BYTES;

/// One registered server, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The registry's id.
    pub id: u64,
    /// The address probed; the only one the monitor ever sends to for this server.
    pub ip: IpAddr,
    /// Net speed in kbit/s, copied to the feed.
    pub netspeed: u32,
    /// Lowercase ISO 3166 alpha-2 code, written or placed by GeoIP.
    pub country: String,
    /// Explicit pool zones, copied to the feed.
    pub zones: Option<Vec<String>>,
}

/// A loaded registry: the servers and the messages of the entries skipped.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// The servers, in file order.
    pub servers: Vec<Registered>,
    /// `servers.json: servers[3] (id 12): reason`, one per skipped entry.
    pub skipped: Vec<String>,
}

/// A registry that cannot be used at all.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RegistryError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// The top level as written.
#[derive(Deserialize)]
struct File<'a> {
    #[serde(borrow)]
    servers: Vec<&'a serde_json::value::RawValue>,
}

/// One entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry<'a> {
    id: u64,
    #[serde(borrow)]
    ip: Cow<'a, str>,
    netspeed: serde_json::Number,
    #[serde(default, borrow)]
    country: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    zones: Option<Vec<Cow<'a, str>>>,
    /// A feed used as a registry may carry scores; they are not read.
    #[serde(default, rename = "score")]
    _score: Option<serde::de::IgnoredAny>,
}

/// Loads the registry at `path`; `geo` places entries without a country.
pub fn load_file(path: &Path, geo: Option<&GeoDb>) -> Result<Registry, RegistryError> {
    let name = path.display().to_string();
    let bytes =
        crate::feed::source::read_bounded(path, MAX_REGISTRY_BYTES, "registry").map_err(|e| {
            RegistryError {
                path: name.clone(),
                reason: format!("cannot read: {e}"),
            }
        })?;
    load_slice(&name, &bytes, geo)
}

/// Loads a registry from bytes; `source` names it in messages.
pub fn load_slice(
    source: &str,
    bytes: &[u8],
    geo: Option<&GeoDb>,
) -> Result<Registry, RegistryError> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| RegistryError {
        path: source.to_owned(),
        reason: format!(
            "not a registry ({e}); expected {{\"servers\": [{{\"id\": 1, \"ip\": \"192.0.2.1\", \
             \"netspeed\": 1000, \"country\": \"de\"}}]}}"
        ),
    })?;
    let mut registry = Registry::default();
    let mut ids = HashSet::new();
    let mut ips: HashMap<IpAddr, u64> = HashMap::new();
    for (index, raw) in file.servers.iter().enumerate() {
        let checked = check_entry(raw.get(), geo).and_then(|server| {
            if let Some(first) = ips.get(&server.ip) {
                Err(format!("ip {} is already used by id {first}", server.ip))
            } else if !ids.insert(server.id) {
                Err(format!("id {} is used by an earlier entry", server.id))
            } else {
                ips.insert(server.ip, server.id);
                Ok(server)
            }
        });
        match checked {
            Ok(server) => registry.servers.push(server),
            Err(reason) => {
                let id = serde_json::from_str::<IdOnly>(raw.get())
                    .ok()
                    .and_then(|e| e.id);
                registry.skipped.push(match id {
                    Some(id) => format!("{source}: servers[{index}] (id {id}): {reason}"),
                    None => format!("{source}: servers[{index}]: {reason}"),
                });
            }
        }
    }
    Ok(registry)
}

fn check_entry(raw: &str, geo: Option<&GeoDb>) -> Result<Registered, String> {
    let entry: Entry = serde_json::from_str(raw).map_err(|e| {
        let text = e.to_string();
        text.rsplit_once(" at line ")
            .map_or(text.as_str(), |(r, _)| r)
            .to_owned()
    })?;
    let ip: IpAddr = entry
        .ip
        .trim()
        .parse()
        .map_err(|_| format!("ip {:?} is not an address", entry.ip))?;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!("ip {ip} cannot be probed"));
    }
    let netspeed = entry
        .netspeed
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "netspeed {} is not a whole number of kbit/s between 0 and 4294967295",
                entry.netspeed
            )
        })?;
    let country = match entry.country {
        Some(c) => {
            let lower = c.to_ascii_lowercase();
            if continent::continent_of(&lower).is_none() {
                return Err(format!("country {c:?} is not a known ISO 3166 code"));
            }
            lower
        }
        None => {
            let Some(geo) = geo else {
                return Err("no country, and no GeoIP database (--geoip) to place it".to_owned());
            };
            match geo.locate(ip).country_str() {
                Some(c) if continent::continent_of(c).is_some() => c.to_owned(),
                _ => {
                    return Err(format!(
                        "no country, and the GeoIP database does not place {ip}"
                    ));
                }
            }
        }
    };
    let zones = entry
        .zones
        .map(|list| {
            continent::zone_labels(&list)
                .map_err(|z| format!("zone {z:?} is not a country or continent"))
        })
        .transpose()?;
    Ok(Registered {
        id: entry.id,
        ip,
        netspeed,
        country,
        zones,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_entries_are_skipped_with_file_entry_and_reason() {
        let text = r#"{"servers": [
            {"id": 1, "ip": "192.0.2.1", "netspeed": 1000, "country": "DE"},
            {"id": 2, "ip": "192.0.2", "netspeed": 1000, "country": "de"},
            {"id": 3, "ip": "192.0.2.3", "netspeed": -1, "country": "de"},
            {"id": 4, "ip": "192.0.2.4", "netspeed": 1, "country": "xx"},
            {"id": 5, "ip": "192.0.2.1", "netspeed": 1, "country": "de"},
            {"id": 1, "ip": "192.0.2.6", "netspeed": 1, "country": "de"},
            {"id": 7, "ip": "192.0.2.7", "netspeed": 1},
            {"ip": "192.0.2.8"},
            {"id": 9, "ip": "2001:db8::9", "netspeed": 5, "country": "us", "zones": ["us", "north-america"], "score": 3}
        ]}"#;
        let r = load_slice("reg.json", text.as_bytes(), None).unwrap();
        let ids: Vec<u64> = r.servers.iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 9]);
        assert_eq!(r.servers[0].country, "de");
        assert_eq!(
            r.skipped,
            [
                "reg.json: servers[1] (id 2): ip \"192.0.2\" is not an address",
                "reg.json: servers[2] (id 3): netspeed -1 is not a whole number of kbit/s between 0 and 4294967295",
                "reg.json: servers[3] (id 4): country \"xx\" is not a known ISO 3166 code",
                "reg.json: servers[4] (id 5): ip 192.0.2.1 is already used by id 1",
                "reg.json: servers[5] (id 1): id 1 is used by an earlier entry",
                "reg.json: servers[6] (id 7): no country, and no GeoIP database (--geoip) to place it",
                "reg.json: servers[7]: missing field `id`",
            ]
        );
    }

    #[test]
    fn a_registry_that_is_not_json_fails_naming_the_file() {
        let e = load_slice("reg.json", b"[1, 2", None).unwrap_err();
        assert!(e.to_string().starts_with("reg.json: not a registry"), "{e}");
        for garbage in [&b""[..], b"null", b"{\"servers\": 5}", b"\xff\xfe"] {
            assert!(load_slice("reg.json", garbage, None).is_err());
        }
    }

    #[test]
    fn a_missing_country_is_placed_by_geoip() {
        let geo = GeoDb::open(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/geoip/GeoIP2-Country-Test.mmdb"),
        )
        .unwrap();
        // The MaxMind test database places 2.125.160.216 in GB.
        let text = r#"{"servers": [{"id": 1, "ip": "2.125.160.216", "netspeed": 1000}]}"#;
        let r = load_slice("reg.json", text.as_bytes(), Some(&geo)).unwrap();
        assert_eq!(r.servers[0].country, "gb", "{:?}", r.skipped);
    }
}
