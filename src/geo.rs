//! GeoIP: an address in, a country code and the width of the database network that
//! decided it out. This is the "geo" input of the flow. Both record shapes found in the
//! wild are read: MaxMind's `{"country": {"iso_code": "US"}}` (with `registered_country`
//! as a fallback) and the flat `{"country_code": "US"}` of the openly licensed databases.
//! Only the code is decoded, borrowed from the database buffer: no allocation per lookup.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use maxminddb::{PathElement, Reader};

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
        let paths: &[&[PathElement<'static>]] = match self.shape {
            Shape::Nested => &[NESTED, REGISTERED],
            Shape::Flat => &[FLAT],
            Shape::Unknown => &[NESTED, FLAT, REGISTERED],
        };
        let code = paths
            .iter()
            .find_map(|path| result.decode_path::<&str>(path).ok().flatten());
        let country = code.and_then(|c| match c.as_bytes() {
            &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some([a.to_ascii_lowercase(), b.to_ascii_lowercase()])
            }
            _ => None,
        });
        Location {
            country,
            prefix_len,
        }
    }
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
