//! The DNSSEC records of an answer to a DO=1 query (RFC 4035 §3.1): the RRSIGs made at
//! build time for the RRset answered, and the NSEC records that deny a name or a type.
//! Lookups only: nothing is signed, and nothing allocated, per query.

use rand::Rng;

use super::zone::SignedZone;
use crate::answer::{Answer, Records, relative_key};
use crate::name::MAX_NAME_LEN;
use crate::table::{Family, Table, Target};
use crate::wire::{Question, Rcode, rtype};

/// Adds the DNSSEC records to `a`, the answer to `question` from `table` without them.
/// Debugging names (`_country`, `_status`) do not exist for a DO=1 query: their answers are
/// made per query and cannot be signed ahead, so they are denied like any absent name.
pub fn sign<'t, R: Rng + ?Sized>(
    table: &'t Table,
    zone: &'t SignedZone,
    question: &Question<'_>,
    mut a: Answer<'t>,
    rng: &mut R,
) -> Answer<'t> {
    let origin = &table.config.origin;
    let mut key_buf = [0u8; MAX_NAME_LEN];
    let Some((key, _)) = relative_key(question.qname, origin, &mut key_buf) else {
        return a;
    };
    // The qname in lowercase, for the NSEC look-ups.
    let mut owner_buf = [0u8; MAX_NAME_LEN];
    let owner_len = key.len() + origin.len();
    let Some(owner) = owner_buf.get_mut(..owner_len) else {
        return a;
    };
    owner[..key.len()].copy_from_slice(key);
    owner[key.len()..].copy_from_slice(origin);
    let owner = &owner_buf[..owner_len];

    let node = a.node.filter(|n| n.debug.is_none());
    let Some(node) = node else {
        deny_name(table, zone, key, owner, &mut a);
        return a;
    };
    // The apex's DNSKEY, CDS and CDNSKEY come from the unsigned answer: they are zone data.
    match &a.answer {
        Records::Set(set) => {
            if let Some(first) = set.first() {
                a.dnssec.answer = zone.sigs(key, first.rtype);
            }
        }
        Records::Empty => {
            // A pool name other than the apex is a CNAME for DO=1 queries, whatever the
            // type (RFC 1034 §3.6.2): other types get the CNAME to the whole pool's source
            // name, where the resolver finds their absence proven.
            let cnamed = node
                .pool
                .is_some_and(|p| !key.is_empty() && !matches!(p.target, Target::Source(_)));
            if cnamed {
                if let Some(cname) = zone.cname(key, crate::table::ZoneId::Global) {
                    a.rcode = Rcode::NOERROR;
                    a.authority = Records::Empty;
                    a.dnssec.cname = Some(cname);
                    return a;
                }
            }
            // NODATA: the SOA, and the NSEC at the name, whose bitmap lacks the type.
            a.authority = Records::Set(std::slice::from_ref(&table.soa_negative));
            a.dnssec.authority = &zone.soa_negative_sigs;
            a.dnssec.nsec = [zone.nsec_for(owner), None];
            a.dnssec.nsec_ttl = zone.nsec_ttl;
        }
        Records::Pool {
            rtype: t,
            ttl,
            addresses,
            ..
        } => {
            let (t, ttl, addresses) = (*t, *ttl, *addresses);
            let family = if t == rtype::AAAA {
                Family::V6
            } else {
                Family::V4
            };
            let number = node.pool.and_then(|p| p.number);
            let signed = a.zone.and_then(|z| {
                if key.is_empty() {
                    // The apex holds its own signed answers (it cannot be a CNAME).
                    let (picks, sigs) = zone.apex_set(family, z)?.pick(rng)?;
                    return Some((picks, sigs, None));
                }
                let set = zone.set(family, z, number)?;
                let (picks, sigs) = set.pick(rng)?;
                let cname = match node.pool.map(|p| p.target) {
                    Some(Target::Source(_)) => None,
                    _ => Some(zone.cname(key, z)?),
                };
                Some((picks, sigs, cname))
            });
            match signed {
                Some((picks, sigs, cname)) => {
                    a.answer = Records::Pool {
                        rtype: t,
                        ttl,
                        picks,
                        addresses,
                    };
                    a.dnssec.answer = sigs;
                    a.dnssec.cname = cname;
                }
                None => {
                    // Every source a draw can land on is signed at build; should one not
                    // be, an unsigned answer would only be bogus.
                    a.rcode = Rcode::SERVFAIL;
                    a.answer = Records::Empty;
                    a.authority = Records::Empty;
                }
            }
        }
        // Debugging TXT answers cannot reach here: their names are denied above.
        Records::Txt { .. } => {}
    }
    a
}

/// NXDOMAIN with its proof (RFC 4035 §3.1.3.2): the NSEC that covers the name and the one
/// that covers the wildcard at its closest encloser (one record when they are the same).
fn deny_name<'t>(
    table: &'t Table,
    zone: &'t SignedZone,
    key: &[u8],
    owner: &[u8],
    a: &mut Answer<'t>,
) {
    a.rcode = Rcode::NXDOMAIN;
    a.answer = Records::Empty;
    a.authority = Records::Set(std::slice::from_ref(&table.soa_negative));
    a.dnssec.authority = &zone.soa_negative_sigs;
    let covering = zone.nsec_for(owner);
    // The closest encloser: the longest ancestor that exists (the apex at worst).
    let mut at = 0;
    while at < key.len() {
        let next = at + 1 + usize::from(key[at]);
        at = next.min(key.len());
        let ancestor = &key[at..];
        if table.names.get(ancestor).is_some_and(|n| n.debug.is_none()) || ancestor.is_empty() {
            break;
        }
    }
    let encloser = &owner[at..];
    let mut wildcard = [0u8; MAX_NAME_LEN];
    let wildcard_cover = wildcard.get_mut(..encloser.len() + 2).and_then(|w| {
        w[0] = 1;
        w[1] = b'*';
        w[2..].copy_from_slice(encloser);
        zone.nsec_for(w)
    });
    let same = match (covering, wildcard_cover) {
        (Some(x), Some(y)) => std::ptr::eq(x, y),
        _ => false,
    };
    a.dnssec.nsec = [covering, if same { None } else { wildcard_cover }];
    a.dnssec.nsec_ttl = zone.nsec_ttl;
}
