//! The names of the zone: every key under the origin that exists, what it serves, and the
//! static records at it. Depends only on the zone configuration, so it is built once per
//! configuration and shared by every table built from it.

use std::collections::HashMap;

use crate::config::{ConfigError, ZoneConfig};
use crate::continent::{self, Continent};
use crate::name;
use crate::wire::rtype;

/// What the pool part of a name draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The client's own region (apex, `0`…`3`, vendor names).
    Geo,
    /// A country zone, by index into [`crate::continent::countries`] order.
    Country(u16),
    /// A continent zone.
    Continent(Continent),
    /// One pool zone, drawn from directly: the names `[<n>.]<zone>._src` of a signed zone,
    /// which DO=1 answers point to with a CNAME (see [`crate::dnssec`]).
    Source(super::ZoneId),
}

/// The label under which a signed zone's source names live.
pub const SOURCE_LABEL: &str = "_src";

/// The pool part of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolName {
    /// What it draws from.
    pub target: Target,
    /// The numbered subset, for numbered names.
    pub number: Option<u8>,
}

/// A static RRset member: type, TTL and wire rdata (owner implied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    /// Record type.
    pub rtype: u16,
    /// TTL, seconds.
    pub ttl: u32,
    /// Wire rdata, names uncompressed.
    pub rdata: Box<[u8]>,
}

/// Names that answer TXT about the query itself (TTL 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugName {
    /// `_country`: where the asker was placed and which zone answers it.
    Country,
    /// `_status`: version, instance, uptime, feed serial and age.
    Status,
}

/// One name of the zone.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// What its A/AAAA answers draw from, if it is a pool name.
    pub pool: Option<PoolName>,
    /// A debugging name whose TXT answer is made per query.
    pub debug: Option<DebugName>,
    /// Static RRsets, each a run of records of one type (sorted by type).
    pub rrsets: Vec<Box<[Rr]>>,
}

impl Node {
    /// The static RRset of `rtype`, if any.
    pub fn rrset(&self, rtype: u16) -> Option<&[Rr]> {
        self.rrsets
            .iter()
            .find(|set| set.first().is_some_and(|r| r.rtype == rtype))
            .map(|set| &set[..])
    }
}

/// Every name of the zone, keyed by its lowercase relative wire key.
///
/// The apex (the empty key) is kept apart from the map. An empty boxed key has no storage,
/// only a placeholder address, and the map compares keys with `memcmp`: glibc's AVX-512
/// version reads the 0 bytes with a masked load at that address, which the CPU completes
/// through a microcode assist of about 80 ns (measured), on every question for the apex.
/// The map hashes with foldhash instead of SipHash, about 14 ns less a question
/// (benches/README.md): it is built once from the configuration and only looked up, so a
/// query cannot grow a collision chain.
#[derive(Debug, Clone)]
pub struct Names {
    apex: Node,
    map: HashMap<Box<[u8]>, Node, foldhash::fast::RandomState>,
}

impl Names {
    /// Builds the name map of a configuration, refusing conflicting static records.
    pub fn build(config: &ZoneConfig) -> Result<Names, ConfigError> {
        let invalid = |what: String, reason: &str| ConfigError::Invalid {
            path: config.path.clone(),
            what,
            reason: reason.to_owned(),
        };
        let mut map: HashMap<Box<[u8]>, Node, foldhash::fast::RandomState> = HashMap::default();
        let mut add_pool = |label: Option<&str>, target: Target| {
            let base = label.map(|l| name::key_from_text(l).expect("checked label"));
            let base = base.unwrap_or_default();
            map.insert(
                base.clone().into_boxed_slice(),
                Node {
                    pool: Some(PoolName {
                        target,
                        number: None,
                    }),
                    debug: None,
                    rrsets: Vec::new(),
                },
            );
            for n in 0..config.numbered {
                let mut key = vec![1, b'0' + n];
                key.extend_from_slice(&base);
                map.insert(
                    key.into_boxed_slice(),
                    Node {
                        pool: Some(PoolName {
                            target,
                            number: Some(n),
                        }),
                        debug: None,
                        rrsets: Vec::new(),
                    },
                );
            }
        };
        add_pool(None, Target::Geo);
        for (i, (code, _)) in continent::countries().enumerate() {
            let i = u16::try_from(i).expect("fewer than 65536 countries");
            add_pool(Some(code), Target::Country(i));
        }
        for c in Continent::ALL {
            add_pool(Some(c.label()), Target::Continent(c));
        }
        for v in &config.vendors {
            add_pool(Some(v), Target::Geo);
        }
        if config.dnssec.is_some() {
            for zone in super::ZoneId::all() {
                add_pool(
                    Some(&format!("{}.{SOURCE_LABEL}", zone.label())),
                    Target::Source(zone),
                );
            }
        }
        for (label, debug) in [
            ("_country", DebugName::Country),
            ("_status", DebugName::Status),
        ] {
            let key = name::key_from_text(label).expect("valid label");
            map.insert(
                key.into_boxed_slice(),
                Node {
                    debug: Some(debug),
                    ..Node::default()
                },
            );
        }
        // Aliases serve exactly what their target serves.
        for (alias, target) in &config.aliases {
            let target_key = name::key_from_text(target).expect("checked label");
            let alias_key = name::key_from_text(alias).expect("checked label");
            let numbered = (0..config.numbered).map(|n| vec![1, b'0' + n]);
            for prefix in std::iter::once(Vec::new()).chain(numbered) {
                let mut from = prefix.clone();
                from.extend_from_slice(&target_key);
                if let Some(node) = map.get(&from[..]).cloned() {
                    let mut to = prefix;
                    to.extend_from_slice(&alias_key);
                    map.insert(to.into_boxed_slice(), node);
                }
            }
        }

        // Static records, grouped by owner and type.
        for (i, rec) in config.statics.iter().enumerate() {
            let what = || {
                format!(
                    "records[{i}] ({} {})",
                    name::render(&rec.owner),
                    rtype::name(rec.rtype)
                )
            };
            let node = map.entry(rec.owner.clone().into_boxed_slice()).or_default();
            if node.pool.is_some() && matches!(rec.rtype, rtype::A | rtype::AAAA | rtype::CNAME) {
                return Err(invalid(
                    what(),
                    "a pool name's addresses come from the feed",
                ));
            }
            let has_cname = node.rrset(rtype::CNAME).is_some();
            if (rec.rtype == rtype::CNAME && !node.rrsets.is_empty())
                || (has_cname && rec.rtype != rtype::CNAME)
            {
                return Err(invalid(
                    what(),
                    "a CNAME cannot share its name with other records",
                ));
            }
            if rec.rtype == rtype::CNAME && rec.owner.is_empty() {
                return Err(invalid(what(), "the apex cannot be a CNAME"));
            }
            let rr = Rr {
                rtype: rec.rtype,
                ttl: rec.ttl,
                rdata: rec.rdata.clone().into_boxed_slice(),
            };
            match node.rrsets.iter_mut().find(|s| s[0].rtype == rec.rtype) {
                Some(set) => {
                    if set.iter().any(|r| r.rdata == rr.rdata) {
                        return Err(invalid(what(), "duplicate record"));
                    }
                    // RFC 2181 §5.2: one TTL per RRset; the first one wins.
                    let rr = Rr {
                        ttl: set[0].ttl,
                        ..rr
                    };
                    let mut v = set.to_vec();
                    v.push(rr);
                    *set = v.into_boxed_slice();
                }
                None => {
                    node.rrsets.push(vec![rr].into_boxed_slice());
                    node.rrsets.sort_by_key(|s| s[0].rtype);
                }
            }
        }
        // Empty non-terminals: every ancestor of a name exists (RFC 4592 §2.2.2 terms), so
        // it is NODATA, never an NXDOMAIN that the names below it would contradict (a
        // validator finds that bogus). Keys come from name::key_from_text, so every length
        // byte is followed by that many bytes and the slicing below stays in bounds.
        let keys: Vec<Box<[u8]>> = map.keys().cloned().collect();
        for owner in keys {
            let mut key = &owner[..];
            while let Some((&len, rest)) = key.split_first() {
                key = &rest[usize::from(len)..];
                map.entry(key.to_vec().into_boxed_slice()).or_default();
            }
        }
        let total = config.origin.len();
        for key in map.keys() {
            if key.len() + total > name::MAX_NAME_LEN {
                return Err(invalid(
                    name::render(key),
                    "name is longer than 255 bytes under the origin",
                ));
            }
        }
        // The empty key exists: every pool name's ancestors were added above.
        let apex = map.remove(&[][..]).unwrap_or_default();
        Ok(Names { apex, map })
    }

    /// The node at a lowercase relative key.
    pub fn get(&self, key: &[u8]) -> Option<&Node> {
        if key.is_empty() {
            return Some(&self.apex);
        }
        self.map.get(key)
    }

    /// Every name (relative wire key) with its node, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Node)> {
        std::iter::once((&[][..], &self.apex)).chain(self.map.iter().map(|(k, n)| (&k[..], n)))
    }

    /// Number of names, the apex included (for the status page and tests).
    pub fn len(&self) -> usize {
        self.map.len() + 1
    }

    /// Whether there are no names: never, the apex always exists.
    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apex_kept_apart_is_found_listed_and_counted_once() {
        let text = "origin = \"pool.test\"\n[soa]\nmname = \"ns1.pool.test\"\n\
                    rname = \"h.pool.test\"\n[ns]\nnames = [\"ns1.pool.test\"]\n\
                    [[records]]\nname = \"@\"\ntype = \"TXT\"\nvalue = \"hello\"\n";
        let config = ZoneConfig::parse(std::path::Path::new("zone.toml"), text).expect("config");
        let names = Names::build(&config).expect("names");
        let apex = names.get(b"").expect("the apex");
        assert_eq!(apex.pool.map(|p| p.target), Some(Target::Geo));
        assert!(
            apex.rrset(rtype::TXT).is_some(),
            "its static records stay with it"
        );
        let listed: Vec<&[u8]> = names.iter().map(|(k, _)| k).collect();
        assert_eq!(listed.iter().filter(|k| k.is_empty()).count(), 1);
        assert_eq!(listed.len(), names.len());
        let mut unique = listed.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), listed.len(), "every key once");
        assert_eq!(
            names.get(b"\x010").and_then(|n| n.pool).map(|p| p.number),
            Some(Some(0))
        );
        assert!(names.get(b"\x04none").is_none());
    }
}
