//! GeoIP: an address in, a country code and the width of the database network that
//! decided it out. This is the "geo" input of the flow. Both record shapes found in the
//! wild are read: MaxMind's `{"country": {"iso_code": "US"}}` (with `registered_country`
//! as a fallback) and the flat `{"country_code": "US"}` of the openly licensed databases.
//! Only the code is decoded, borrowed from the database buffer: no allocation per lookup.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use maxminddb::{LookupResult, PathElement, Reader, WithinOptions};

/// Why a GeoIP database was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: not a usable GeoIP database: {reason}")]
pub struct GeoError {
    /// The database file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// Which record shape a database uses, found by probing when it is opened, so that each
/// lookup navigates one path instead of trying both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{"country": {"iso_code": ..}}` (MaxMind), `registered_country` as fallback.
    Nested,
    /// `{"country_code": ..}` (DB-IP, IPinfo and other open databases).
    Flat,
    /// Not known yet: try every path.
    Unknown,
}

/// An open country database.
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    shape: Shape,
    /// Recent results by /24 (IPv4) or /48 (IPv6), see [`Cache`].
    cache: Cache,
    /// The address space per country, walked on first use ([`GeoDb::address_space`]).
    address_space: OnceLock<AddressSpace>,
    /// Where it was loaded from.
    pub path: PathBuf,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("path", &self.path)
            .field("type", &self.reader.metadata().database_type)
            .finish()
    }
}

/// The result of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// Lowercase ISO 3166 alpha-2 code, when the database knows the address.
    pub country: Option<[u8; 2]>,
    /// Prefix length of the database network that holds the address (also when the
    /// address is not in the database: the width of the empty network), counted in the
    /// address's own family.
    pub prefix_len: u8,
}

impl Location {
    /// The country code as text.
    pub fn country_str(&self) -> Option<&str> {
        self.country
            .as_ref()
            .and_then(|c| std::str::from_utf8(c).ok())
    }
}

const NESTED: &[PathElement<'static>] =
    &[PathElement::Key("country"), PathElement::Key("iso_code")];
const REGISTERED: &[PathElement<'static>] = &[
    PathElement::Key("registered_country"),
    PathElement::Key("iso_code"),
];
const FLAT: &[PathElement<'static>] = &[PathElement::Key("country_code")];

impl GeoDb {
    /// Opens the database at `path`.
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        let bytes = std::fs::read(path).map_err(|e| GeoError {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_bytes(path, bytes)
    }

    /// Opens a database from bytes; `path` names it in messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<GeoDb, GeoError> {
        let reader = Reader::from_source(bytes).map_err(|e| GeoError {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        // A database of another kind (ASN, say) opens fine but holds no countries.
        let mut db = GeoDb {
            reader,
            shape: Shape::Unknown,
            cache: Cache::new(),
            address_space: OnceLock::new(),
            path: path.to_owned(),
        };
        db.shape = db.probe_shape();
        let kind = db.reader.metadata().database_type.to_ascii_lowercase();
        if kind.contains("asn") || kind.contains("isp") {
            return Err(GeoError {
                path: path.to_owned(),
                reason: format!(
                    "database type {:?} holds no countries",
                    db.reader.metadata().database_type
                ),
            });
        }
        Ok(db)
    }

    /// Looks up well-spread addresses until one has a record, and reads which shape it has.
    fn probe_shape(&self) -> Shape {
        const PROBES: [&str; 8] = [
            "8.8.8.8",
            "1.1.1.1",
            "81.2.69.142",
            "89.160.20.112",
            "216.160.83.56",
            "193.0.6.139",
            "2001:218::1",
            "2a02:cf40::1",
        ];
        for probe in PROBES {
            let Ok(ip) = probe.parse::<IpAddr>() else {
                continue;
            };
            let Ok(result) = self.reader.lookup(ip) else {
                continue;
            };
            if result.decode_path::<&str>(NESTED).ok().flatten().is_some() {
                return Shape::Nested;
            }
            if result.decode_path::<&str>(FLAT).ok().flatten().is_some() {
                return Shape::Flat;
            }
        }
        Shape::Unknown
    }

    /// What the database says about itself, for people: description, type, IP version
    /// and build date.
    pub fn describe(&self) -> String {
        let meta = self.reader.metadata();
        let description = meta
            .description
            .get("en")
            .or_else(|| meta.description.values().next())
            .map_or("no description", String::as_str);
        let built = crate::report::utc_time(meta.build_epoch);
        let built = built.split(' ').next().unwrap_or("");
        format!(
            "{description} (type {}, IPv{}, built {built})",
            meta.database_type, meta.ip_version
        )
    }

    /// The database's type string from its metadata.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Looks an address up. A damaged record reads as "not found", never as an error.
    pub fn locate(&self, ip: IpAddr) -> Location {
        // Some databases have no IPv4-mapped subtree: look mapped addresses up as IPv4.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let key = CacheKey::of(ip);
        if let Some(location) = self.cache.get(key) {
            return location;
        }
        let location = self.look_up(ip);
        self.cache.put(key, location);
        location
    }

    /// Looks an address up in the database itself.
    fn look_up(&self, ip: IpAddr) -> Location {
        let Ok(result) = self.reader.lookup(ip) else {
            return Location::default();
        };
        let prefix_len = match (result.network(), ip) {
            (Ok(net), IpAddr::V4(_)) if net.is_ipv4() => net.prefix(),
            (Ok(net), IpAddr::V6(_)) => net.prefix(),
            // An IPv4 address matched above the IPv4 subtree: the network is wider than
            // all of IPv4, so the answer does not depend on any of its bits.
            _ => 0,
        };
        Location {
            country: self.country_of(&result),
            prefix_len,
        }
    }

    /// The lowercase two-letter code of a record; None without one (or when damaged).
    fn country_of(&self, result: &LookupResult<'_, Vec<u8>>) -> Option<[u8; 2]> {
        let paths: &[&[PathElement<'static>]] = match self.shape {
            Shape::Nested => &[NESTED, REGISTERED],
            Shape::Flat => &[FLAT],
            Shape::Unknown => &[NESTED, FLAT, REGISTERED],
        };
        let code = paths
            .iter()
            .find_map(|path| result.decode_path::<&str>(path).ok().flatten());
        code.and_then(|c| match c.as_bytes() {
            &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some([a.to_ascii_lowercase(), b.to_ascii_lowercase()])
            }
            _ => None,
        })
    }

    /// How much address space the database gives each country (see [`AddressSpace`]).
    /// Walked once per loaded database, on first use (a fraction of a second for DB-IP's
    /// country database), and kept: call it when a table is built, never per query.
    pub fn address_space(&self) -> &AddressSpace {
        self.address_space
            .get_or_init(|| self.walk_address_space(MAX_NETWORKS))
    }

    /// Walks every network of the database once, at most `limit` of them.
    fn walk_address_space(&self, limit: u64) -> AddressSpace {
        let started = Instant::now();
        let mut space = AddressSpace {
            complete: true,
            ..AddressSpace::default()
        };
        // Per country slot (26 × 26 two-letter codes): IPv4 addresses, IPv6 /48s.
        let mut v4 = vec![0u64; 26 * 26];
        let mut v6 = vec![0f64; 26 * 26];
        // A country database has a few hundred distinct records, each shared by thousands
        // of networks: decode each record once, by its offset in the data section.
        let mut slots: HashMap<usize, Option<usize>> = HashMap::new();
        // Networks without data are walked too, so that every step of the walk is counted
        // against the limit: a hostile tree whose nodes share children has exponentially
        // many paths, most of them empty.
        let options = WithinOptions::default().include_networks_without_data();
        let networks = match self.reader.networks(options) {
            Ok(networks) => networks,
            Err(_) => {
                space.complete = false;
                return space;
            }
        };
        for item in networks {
            space.networks += 1;
            if space.networks > limit {
                space.complete = false;
                break;
            }
            let Ok(result) = item else {
                // A damaged node: what is below it is lost, the rest of the tree counts.
                space.complete = false;
                continue;
            };
            let Some(offset) = result.offset() else {
                continue;
            };
            let Ok(network) = result.network() else {
                continue;
            };
            if !is_public(network.network()) {
                continue;
            }
            let slot = *slots.entry(offset).or_insert_with(|| {
                self.country_of(&result).and_then(|code| {
                    std::str::from_utf8(&code)
                        .ok()
                        .and_then(crate::continent::code_slot)
                })
            });
            let Some(slot) = slot else {
                continue;
            };
            // `network()` gives IPv4 networks (also those of the IPv4 subtree of an IPv6
            // database) in IPv4 bits: prefix ≤ 32; IPv6 ones in IPv6 bits: prefix ≤ 128.
            let prefix = network.prefix();
            if network.is_ipv4() {
                v4[slot] = v4[slot].saturating_add(1u64 << (32 - u32::from(prefix.min(32))));
            } else {
                v6[slot] += 2f64.powi(48 - i32::from(prefix));
            }
        }
        let code = |slot: usize| {
            let letter = |n: usize| char::from(b'a' + (n % 26) as u8);
            format!("{}{}", letter(slot / 26), letter(slot % 26))
        };
        space.v4 = (0..v4.len())
            .filter(|&s| v4[s] > 0)
            .map(|s| (code(s), v4[s]))
            .collect();
        space.v6 = (0..v6.len())
            .filter(|&s| v6[s] > 0.0)
            .map(|s| (code(s), v6[s]))
            .collect();
        space.took = started.elapsed();
        space
    }
}

/// Most networks [`GeoDb::address_space`] walks. Country databases have about a million
/// (DB-IP's: 1.5 million with the empty ones); the limit stops a hostile tree.
pub const MAX_NETWORKS: u64 = 1 << 24;

/// How much address space a GeoIP database assigns to each country: the serving plan's
/// demand prior (`plan::demand::prior`), used until a measured demand file is given.
///
/// Every network of the database that names a country counts once: IPv4 networks as their
/// number of addresses, IPv6 networks as their number of /48s (the usual end-site
/// assignment; a longer prefix counts as a fraction of one). Nothing is counted twice:
/// the tree's aliases of the IPv4 space inside IPv6 (`::ffff:0:0/96`, `2001::/32`,
/// `2002::/16`) are skipped, and the networks of a tree never overlap. Networks whose
/// first address is not public ([`is_public`]) and records without a two-letter code
/// count nowhere.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddressSpace {
    /// IPv4 addresses per country, by the database's lowercase code (`gb`, not the pool's
    /// `uk`).
    pub v4: BTreeMap<String, u64>,
    /// IPv6 space per country in /48s, by the database's lowercase code.
    pub v6: BTreeMap<String, f64>,
    /// Networks walked, with data or without.
    pub networks: u64,
    /// False when the walk stopped short: at [`MAX_NETWORKS`] networks, or past damaged
    /// parts of the tree. What was counted stays.
    pub complete: bool,
    /// How long the walk took.
    pub took: Duration,
}

/// A cache of lookups in front of the database, shared by every thread without a lock.
///
/// A lookup walks 20 to 30 tree nodes spread over megabytes, each a likely cache miss; the
/// resolvers and client subnets that ask a pool zone repeat, so most lookups are for a
/// network seen moments ago. A result is kept when its database network is at least as
/// wide as a /24 (IPv4) or /48 (IPv6): then every address of that /24 or /48 has the same
/// result, so it is stored once under the /24 or /48, and a later address in it is answered
/// from one 8-byte slot. Narrower networks are always looked up.
///
/// Direct-mapped, 65,536 slots of one `AtomicU64` each (512 KiB): a new entry replaces
/// whatever shared its slot. A slot packs the whole entry — the key's bits not implied by
/// its slot, the family, the prefix length and the country — so a read is one atomic load
/// and can never mix two entries.
struct Cache {
    slots: Box<[AtomicU64]>,
}

/// log2 of the number of cache slots.
const CACHE_BITS: u32 = 16;

/// An address reduced to its cache key: the /24 or /48 it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CacheKey {
    v6: bool,
    /// The top 24 (IPv4) or 48 (IPv6) bits.
    bits: u64,
}

impl CacheKey {
    fn of(ip: IpAddr) -> CacheKey {
        match ip {
            IpAddr::V4(v4) => CacheKey {
                v6: false,
                bits: u64::from(u32::from(v4) >> 8),
            },
            IpAddr::V6(v6) => CacheKey {
                v6: true,
                bits: (u128::from(v6) >> 80) as u64,
            },
        }
    }

    /// The widest network prefix a result may have to be kept under this key.
    fn max_prefix(self) -> u8 {
        if self.v6 { 48 } else { 24 }
    }

    /// The slot: the low bits folded with the rest. Together with the bits above the low
    /// ones (stored in the slot) it gives back the whole key.
    fn slot(self) -> usize {
        let b = self.bits;
        ((b ^ (b >> CACHE_BITS) ^ (b >> (2 * CACHE_BITS))) & ((1 << CACHE_BITS) - 1)) as usize
    }
}

// Slot layout: bit 0 valid, bit 1 IPv6, bits 2..9 prefix length, bit 9 country known,
// bits 10..20 the two letters (5 bits each, 'a' = 0), bits 20..64 the key above its low
// CACHE_BITS bits (at most 48 - 16 = 32 bits).
const VALID: u64 = 1;
const V6: u64 = 2;
const HAS_COUNTRY: u64 = 1 << 9;

impl Cache {
    fn new() -> Cache {
        Cache {
            slots: (0..1 << CACHE_BITS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn tag(key: CacheKey) -> u64 {
        VALID | if key.v6 { V6 } else { 0 } | (key.bits >> CACHE_BITS) << 20
    }

    fn get(&self, key: CacheKey) -> Option<Location> {
        let slot = self.slots[key.slot()].load(Relaxed);
        const TAG_MASK: u64 = VALID | V6 | !((1 << 20) - 1);
        if slot & TAG_MASK != Self::tag(key) {
            return None;
        }
        let country = (slot & HAS_COUNTRY != 0).then(|| {
            let letter = |shift: u32| b'a' + ((slot >> shift) & 31) as u8;
            [letter(10), letter(15)]
        });
        Some(Location {
            country,
            prefix_len: ((slot >> 2) & 127) as u8,
        })
    }

    fn put(&self, key: CacheKey, location: Location) {
        if location.prefix_len > key.max_prefix() {
            return;
        }
        let mut slot = Self::tag(key) | u64::from(location.prefix_len) << 2;
        if let Some([a, b]) = location.country {
            // Lowercase ASCII letters: `look_up` makes sure.
            slot |= HAS_COUNTRY
                | u64::from(a.wrapping_sub(b'a') & 31) << 10
                | u64::from(b.wrapping_sub(b'a') & 31) << 15;
        }
        self.slots[key.slot()].store(slot, Relaxed);
    }
}

/// Whether an address is public unicast: something GeoIP can place and that can stand for
/// a client. Loopback, private, link-local, shared (CGNAT), documentation, benchmarking,
/// multicast and other special-purpose ranges (RFC 6890 registries) are not.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b)) // 100.64.0.0/10 shared address space
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24 IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))) // 198.18.0.0/15 benchmarking
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // 2001:db8::/32 documentation
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // 100::/64 discard
        || (s[0] == 0x0064 && s[1] == 0xff9b) // 64:ff9b::/96 NAT64
        || s[0] == 0) // ::/16, includes IPv4-compatible and other reserved forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses() {
        for ip in [
            "81.2.69.142",
            "2001:218::1",
            "8.8.8.8",
            "2a02:cf40::1",
            "::ffff:81.2.69.142",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "198.18.0.1",
            "224.0.0.1",
            "0.1.2.3",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "ff02::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn reads_both_record_shapes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let flat = GeoDb::open(&root.join("data/dbip-country.mmdb")).unwrap();
        assert_eq!(flat.shape, Shape::Flat);
        let gb = flat.locate("81.2.69.142".parse().unwrap());
        assert_eq!((gb.country_str(), gb.prefix_len), (Some("gb"), 18));
        let nested = GeoDb::open(&root.join("tests/data/geoip/GeoIP2-Country-Test.mmdb")).unwrap();
        assert_eq!(nested.shape, Shape::Nested);
        let se = nested.locate("89.160.20.112".parse().unwrap());
        assert_eq!((se.country_str(), se.prefix_len), (Some("se"), 28));
        // IPv4-mapped IPv6 is looked up as IPv4.
        let mapped = flat.locate("::ffff:81.2.69.142".parse().unwrap());
        assert_eq!(mapped.country_str(), Some("gb"));
        let none = nested.locate("1.1.1.1".parse().unwrap());
        assert_eq!((none.country, none.prefix_len), (None, 8));
    }

    #[test]
    fn cached_lookups_equal_the_database() {
        use rand::{RngExt, SeedableRng};
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let db = GeoDb::open(&root.join("data/dbip-country.mmdb")).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Addresses that share /24s and /48s (so the cache answers), and slots (so entries
        // replace each other): 3,000 networks, 20 addresses in each, in random order.
        let networks: Vec<IpAddr> = (0..3000)
            .map(|i| {
                if i % 4 == 0 {
                    let top: u16 = rng.random_range(0x2000..0x2c00);
                    IpAddr::V6(Ipv6Addr::from(
                        (u128::from(top) << 112) | (u128::from(rng.random::<u32>()) << 80),
                    ))
                } else {
                    IpAddr::V4(Ipv4Addr::from(rng.random::<u32>() & !0xff))
                }
            })
            .collect();
        let mut hits = 0;
        for _ in 0..60_000 {
            let net = networks[rng.random_range(0..networks.len())];
            let ip = match net {
                IpAddr::V4(v4) => {
                    IpAddr::V4(Ipv4Addr::from(u32::from(v4) | rng.random_range(0..256)))
                }
                IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(
                    u128::from(v6) | u128::from(rng.random::<u64>()),
                )),
            };
            hits += usize::from(db.cache.get(CacheKey::of(ip)).is_some());
            assert_eq!(db.locate(ip), db.look_up(ip), "{ip}");
        }
        assert!(hits > 30_000, "the cache answered only {hits} of 60,000");
        // Keys that share a slot stay apart.
        let a = CacheKey {
            v6: false,
            bits: 0x12_3456,
        };
        let b = CacheKey {
            v6: false,
            bits: 0x12_3456 ^ 0x01_0001,
        };
        assert_eq!(a.slot(), b.slot());
        let gb = Location {
            country: Some(*b"gb"),
            prefix_len: 18,
        };
        db.cache.put(a, gb);
        assert_eq!(db.cache.get(a), Some(gb));
        assert_eq!(db.cache.get(b), None);
        let v6 = CacheKey {
            v6: true,
            bits: a.bits,
        };
        assert_eq!(db.cache.get(v6), None);
        // Narrower than the key: not kept.
        db.cache.put(
            b,
            Location {
                country: None,
                prefix_len: 25,
            },
        );
        assert_eq!(db.cache.get(b), None);
    }

    #[test]
    fn address_space_sums_the_known_networks_of_the_test_database() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let db = GeoDb::open(&root.join("tests/data/geoip/GeoIP2-Country-Test.mmdb")).unwrap();
        let space = db.address_space();
        assert!(space.complete);
        // The IPv4 networks of MaxMind's test database (its source, GeoIP2-Country-Test.json,
        // lists them), by `country` (214.1.1.0/24 has no country and counts nowhere):
        let v4: BTreeMap<String, u64> = [
            ("bt", 256),                  // 67.43.156.0/24
            ("cn", 1024 + 256),           // 111.235.160.0/22, 175.16.199.0/24
            ("gb", 8 + 2 + 16 + 32 + 16), // 2.125.160.216/29, 81.2.69.142/31 …/28, /27, /28
            ("gi", 8),                    // 217.65.48.0/29
            ("ph", 4096),                 // 202.196.224.0/20
            ("se", 16 + 128),             // 89.160.20.112/28, 89.160.20.128/25
            // 50.114.0.0/22, 74.209.16.0/20, 75.209.24.0/32, 149.101.100.0/28,
            // 214.78.120.0/22, 216.160.83.56/29
            ("us", 1024 + 4096 + 1 + 16 + 1024 + 8),
        ]
        .into_iter()
        .map(|(c, n)| (c.to_owned(), n))
        .collect();
        assert_eq!(space.v4, v4);
        // IPv6 in /48s: Japan has fourteen /32s (2001:218::/32, 2001:240::/32, …), the US
        // one /48 (2001:480:10::/48).
        assert_eq!(space.v6.get("jp"), Some(&(14.0 * 65536.0)));
        assert_eq!(space.v6.get("us"), Some(&1.0));
        // The IPv4 space is reachable through its IPv6 aliases (::ffff:0:0/96, 2002::/16)
        // but counted once, as IPv4: no IPv4-only country has IPv6 space.
        for c in ["bt", "ph"] {
            assert_eq!(space.v6.get(c), None, "{c}");
        }
        // Kept: the second call returns the same walk.
        assert!(std::ptr::eq(space, db.address_space()));
    }

    #[test]
    fn address_space_walk_stops_on_a_tree_with_exponentially_many_paths() {
        // 128 nodes, each pointing both ways at the next: 2^128 paths, all empty.
        let db = GeoDb::from_bytes(Path::new("hostile.mmdb"), chain_database(128)).unwrap();
        let started = std::time::Instant::now();
        let space = db.walk_address_space(10_000);
        assert!(!space.complete);
        assert_eq!(space.networks, 10_001);
        assert!(space.v4.is_empty() && space.v6.is_empty());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// An IPv6 database of `nodes` search tree nodes where node i leads to node i + 1 on
    /// both sides, and the last one to "no data": a tree with shared nodes.
    fn chain_database(nodes: u32) -> Vec<u8> {
        let mut db = Vec::new();
        for i in 0..nodes {
            let next = (i + 1).to_be_bytes();
            // 24-bit records: left, then right.
            db.extend_from_slice(&next[1..]);
            db.extend_from_slice(&next[1..]);
        }
        db.extend_from_slice(&[0; 16]); // data section separator; empty data section
        db.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
        // The metadata map (MaxMind DB format 2.0, "Data Section Format").
        let string = |db: &mut Vec<u8>, s: &str| {
            db.push(0x40 | s.len() as u8);
            db.extend_from_slice(s.as_bytes());
        };
        let uint = |db: &mut Vec<u8>, type_byte: u8, extended: Option<u8>, v: u64| {
            let bytes = v.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            db.push(type_byte | (8 - skip) as u8);
            db.extend(extended);
            db.extend_from_slice(&bytes[skip..]);
        };
        db.push(0xe0 | 9); // a map of 9 pairs
        string(&mut db, "binary_format_major_version");
        uint(&mut db, 0xa0, None, 2); // uint16
        string(&mut db, "binary_format_minor_version");
        uint(&mut db, 0xa0, None, 0);
        string(&mut db, "build_epoch");
        uint(&mut db, 0x00, Some(2), 1_700_000_000); // uint64: extended type 9
        string(&mut db, "database_type");
        string(&mut db, "Hostile-Country");
        string(&mut db, "description");
        db.push(0xe0); // an empty map
        string(&mut db, "ip_version");
        uint(&mut db, 0xa0, None, 6);
        string(&mut db, "languages");
        db.extend_from_slice(&[0x00, 4]); // an empty array: extended type 11
        string(&mut db, "node_count");
        uint(&mut db, 0xc0, None, u64::from(nodes)); // uint32
        string(&mut db, "record_size");
        uint(&mut db, 0xa0, None, 24);
        db
    }

    #[test]
    fn refuses_files_that_are_not_databases() {
        let e = GeoDb::from_bytes(Path::new("bad.mmdb"), b"not a database".to_vec()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("bad.mmdb: not a usable GeoIP database: "),
            "{e}"
        );
        let e = GeoDb::open(Path::new("/nonexistent.mmdb")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent.mmdb: "), "{e}");
    }
}
