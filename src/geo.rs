//! GeoIP: an address in, a country code and the width of the database network that
//! decided it out. This is the "geo" input of the flow. Both record shapes found in the
//! wild are read: MaxMind's `{"country": {"iso_code": "US"}}` (with `registered_country`
//! as a fallback) and the flat `{"country_code": "US"}` of the openly licensed databases.
//! Only the code is decoded, borrowed from the database buffer: no allocation per lookup.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

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
