//! The signed parts of a table, made when it is built: the apex DNSKEY, CDS and CDNSKEY
//! RRsets, an RRSIG for every static RRset (the SOA and NS included), the NSEC chain, and
//! the lookups the query path needs (no allocation, no signing per query).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::key::Key;
use super::sign::{RrSet, Validity, canonical_cmp, nsec_chain, rrsig_rdata};
use crate::config::{AaaaPolicy, ZoneConfig};
use crate::table::{Names, Rr};
use crate::wire::{class, rtype};

/// RRSIG RDATAs of one RRset, one per signing key.
pub type Sigs = Box<[Box<[u8]>]>;

/// One link of the NSEC chain.
#[derive(Debug)]
pub struct Nsec {
    /// Its owner, full lowercase wire name.
    pub owner: Box<[u8]>,
    /// The RDATA: next owner and type bitmaps.
    pub rdata: Box<[u8]>,
    /// Its signatures.
    pub sigs: Sigs,
}

/// What signing a table made.
#[derive(Debug)]
pub struct SignedZone {
    /// The apex DNSKEY RRset (every published key).
    pub dnskey: Box<[Rr]>,
    /// CDS and CDNSKEY (RFC 7344) for the KSKs being published to the parent.
    pub cds: Box<[Rr]>,
    /// CDNSKEY.
    pub cdnskey: Box<[Rr]>,
    /// Signatures per name key and type.
    sigs: HashMap<Box<[u8]>, Vec<(u16, Sigs)>>,
    /// Signatures of the SOA as negative answers carry it (its own TTL).
    pub soa_negative_sigs: Sigs,
    /// The NSEC chain, in canonical order.
    pub nsec: Box<[Nsec]>,
    /// The NSEC TTL (RFC 9077: the negative TTL).
    pub nsec_ttl: u32,
    /// The earliest expiration of any signature made, Unix seconds.
    pub expiration: u64,
    /// The inception of every signature made, Unix seconds.
    pub inception: u64,
    /// Signatures made.
    pub signatures: usize,
    /// How long signing took.
    pub signing_time: Duration,
    /// The keys: (tag, algorithm, KSK, signs now).
    pub keys: Vec<(u16, u8, bool, bool)>,
}

impl SignedZone {
    /// Signs what a table of `config` serves besides the pool answers, at Unix time `now`.
    /// None when the configuration has no `[dnssec]` or its keys were not loaded.
    pub fn build(
        config: &ZoneConfig,
        names: &Names,
        soa: &Rr,
        soa_negative: &Rr,
        ns: &[Rr],
        now: u64,
    ) -> Option<Result<SignedZone, String>> {
        let d = config.dnssec.as_ref()?;
        let keys = d.keys.as_ref()?;
        Some(sign(config, names, keys, soa, soa_negative, ns, now))
    }

    /// The signatures of the RRset of `rtype` at the name `key` (relative wire key).
    pub fn sigs(&self, key: &[u8], rtype: u16) -> &[Box<[u8]>] {
        self.sigs
            .get(key)
            .and_then(|v| v.iter().find(|(t, _)| *t == rtype))
            .map_or(&[], |(_, s)| &s[..])
    }

    /// The NSEC whose owner is `owner` or, when none is, the one that covers it (the last
    /// owner before it in canonical order, the chain's last for a name past it).
    pub fn nsec_for(&self, owner: &[u8]) -> Option<&Nsec> {
        let i = self
            .nsec
            .partition_point(|n| canonical_cmp(&n.owner, owner).is_le());
        // i = how many owners are <= owner; the apex is first and every name of the zone is
        // at or after it, so i >= 1 for a name in the zone.
        self.nsec.get(i.checked_sub(1)?)
    }
}

#[allow(clippy::too_many_arguments)]
fn sign(
    config: &ZoneConfig,
    names: &Names,
    keys: &Arc<[Key]>,
    soa: &Rr,
    soa_negative: &Rr,
    ns: &[Rr],
    now: u64,
) -> Result<SignedZone, String> {
    let started = Instant::now();
    let d = config.dnssec.as_ref().ok_or("no [dnssec]")?;
    let validity = Validity {
        inception: now.saturating_sub(d.inception_offset.as_secs()),
        expiration: now + d.signature_validity.as_secs(),
    };
    let origin = &config.origin;
    let published: Vec<&Key> = keys.iter().filter(|k| k.published_at(now)).collect();
    let active: Vec<&Key> = published
        .iter()
        .copied()
        .filter(|k| k.active_at(now))
        .collect();
    if active.is_empty() {
        return Err(format!(
            "none of the {} keys signs now (check their Activate and Inactive times)",
            keys.len()
        ));
    }
    let ksks: Vec<&Key> = active.iter().copied().filter(|k| k.is_ksk()).collect();
    let zsks: Vec<&Key> = active.iter().copied().filter(|k| !k.is_ksk()).collect();
    // A lone kind of key signs everything (a combined signing key).
    let (ksks, zsks) = match (ksks.is_empty(), zsks.is_empty()) {
        (true, _) => (zsks.clone(), zsks),
        (_, true) => (ksks.clone(), ksks),
        _ => (ksks, zsks),
    };
    let mut count = 0;
    let mut sign_set = |owner: &[u8], rtype: u16, ttl: u32, rdatas: Vec<&[u8]>, by: &[&Key]| {
        let set = RrSet {
            owner,
            rtype,
            class: class::IN,
            ttl,
            rdatas,
        };
        let sigs: Result<Vec<Box<[u8]>>, String> = by
            .iter()
            .map(|k| rrsig_rdata(&set, k, origin, validity).map(Vec::into_boxed_slice))
            .collect();
        count += by.len();
        sigs.map(Vec::into_boxed_slice)
    };
    let mut sigs: HashMap<Box<[u8]>, Vec<(u16, Sigs)>> = HashMap::new();
    let ttl = config.ns_ttl;
    let rr = |rtype, rdata: Vec<u8>| Rr {
        rtype,
        ttl,
        rdata: rdata.into_boxed_slice(),
    };
    let dnskey: Box<[Rr]> = published
        .iter()
        .map(|k| rr(rtype::DNSKEY, k.dnskey_rdata()))
        .collect();
    let syncing: Vec<&Key> = published
        .iter()
        .copied()
        .filter(|k| k.sync_at(now))
        .collect();
    let cds: Box<[Rr]> = syncing
        .iter()
        .map(|k| rr(rtype::CDS, k.ds_rdata(origin)))
        .collect();
    let cdnskey: Box<[Rr]> = syncing
        .iter()
        .map(|k| rr(rtype::CDNSKEY, k.dnskey_rdata()))
        .collect();
    let apex: Box<[u8]> = Box::default();
    let mut apex_sigs = vec![(
        rtype::DNSKEY,
        sign_set(origin, rtype::DNSKEY, ttl, rdatas(&dnskey), &ksks)?,
    )];
    for set in [&cds, &cdnskey] {
        if let Some(first) = set.first() {
            apex_sigs.push((
                first.rtype,
                sign_set(origin, first.rtype, ttl, rdatas(set), &ksks)?,
            ));
        }
    }
    apex_sigs.push((
        rtype::SOA,
        sign_set(origin, rtype::SOA, soa.ttl, vec![&soa.rdata[..]], &zsks)?,
    ));
    apex_sigs.push((
        rtype::NS,
        sign_set(
            origin,
            rtype::NS,
            ns.first().map_or(ttl, |r| r.ttl),
            rdatas(ns),
            &zsks,
        )?,
    ));
    sigs.insert(apex.clone(), apex_sigs);
    let soa_negative_sigs = sign_set(
        origin,
        rtype::SOA,
        soa_negative.ttl,
        vec![&soa_negative.rdata[..]],
        &zsks,
    )?;

    // Every name but the debugging ones, with its types, for the chain; its static RRsets
    // signed on the way.
    let mut owners: Vec<(Vec<u8>, Vec<u16>)> = Vec::new();
    for (key, node) in names.iter() {
        if node.debug.is_some() {
            continue;
        }
        let owner = full_name(key, origin);
        let mut types: Vec<u16> = Vec::new();
        if key.is_empty() {
            types.extend([rtype::SOA, rtype::NS, rtype::DNSKEY]);
            if !cds.is_empty() {
                types.extend([rtype::CDS, rtype::CDNSKEY]);
            }
        }
        if let Some(pool) = node.pool {
            types.push(rtype::A);
            let aaaa = match config.aaaa {
                AaaaPolicy::OnlyNumbered(n) => pool.number == Some(n),
                _ => true,
            };
            if aaaa {
                types.push(rtype::AAAA);
            }
        }
        for set in &node.rrsets {
            let Some(first) = set.first() else { continue };
            types.push(first.rtype);
            let s = sign_set(&owner, first.rtype, first.ttl, rdatas(set), &zsks)?;
            sigs.entry(key.into()).or_default().push((first.rtype, s));
        }
        owners.push((owner, types));
    }
    let nsec_ttl = soa_negative.ttl;
    let mut nsec = Vec::new();
    for (owner, rdata) in nsec_chain(&owners) {
        let s = sign_set(&owner, rtype::NSEC, nsec_ttl, vec![&rdata[..]], &zsks)?;
        nsec.push(Nsec {
            owner: owner.into_boxed_slice(),
            rdata: rdata.into_boxed_slice(),
            sigs: s,
        });
    }
    Ok(SignedZone {
        dnskey,
        cds,
        cdnskey,
        sigs,
        soa_negative_sigs,
        nsec: nsec.into_boxed_slice(),
        nsec_ttl,
        expiration: validity.expiration,
        inception: validity.inception,
        signatures: count,
        signing_time: started.elapsed(),
        keys: keys
            .iter()
            .map(|k| (k.tag, k.algorithm, k.is_ksk(), k.active_at(now)))
            .collect(),
    })
}

fn rdatas(set: &[Rr]) -> Vec<&[u8]> {
    set.iter().map(|r| &r.rdata[..]).collect()
}

/// The full wire name of a relative key under `origin`.
fn full_name(key: &[u8], origin: &[u8]) -> Vec<u8> {
    let mut owner = key.to_vec();
    owner.extend_from_slice(origin);
    owner
}
