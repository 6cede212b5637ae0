//! The signed parts of a table, made when it is built: the apex DNSKEY, CDS and CDNSKEY
//! RRsets, an RRSIG for every static RRset (the SOA and NS included), the NSEC chain, and
//! the lookups the query path needs (no allocation, no signing per query).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, RngExt, SeedableRng};

use super::key::Key;
use super::sign::{RrSet, Validity, canonical_cmp, nsec_chain, rrsigs};
use crate::config::AaaaPolicy;
use crate::plan::Source;
use crate::select::{Picks, Sampler};
use crate::table::{Family, Rr, SOURCE_LABEL, Table, Target, ZoneId};
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

/// The signed answers of one source name and family: each a set of members with its
/// weight and signatures.
#[derive(Debug)]
pub struct SignedSet {
    picks: Box<[Picks]>,
    /// Running sums of the weights.
    ends: Box<[u64]>,
    sigs: Box<[Sigs]>,
}

impl SignedSet {
    /// Picks an answer by weight: its members (in random order) and signatures.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<(Picks, &[Box<[u8]>])> {
        let total = *self.ends.last()?;
        let point = rng.random_range(0..total);
        let i = self.ends.partition_point(|&end| end <= point);
        let mut picks = *self.picks.get(i)?;
        picks.shuffle(rng);
        Some((picks, &self.sigs[i]))
    }

    /// Number of answers.
    pub fn len(&self) -> usize {
        self.picks.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.picks.is_empty()
    }
}

/// A signed CNAME from a pool name to a source name.
#[derive(Debug)]
pub struct Cname {
    /// The record (its RDATA: the source name, full wire form).
    pub rr: Rr,
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
    /// Signed answers per (family, zone index, number slot: 0 unnumbered, 1 + n).
    sets: HashMap<(u8, u16, u8), SignedSet>,
    /// Per pool name key, per source zone index: the CNAME to the source name.
    cnames: HashMap<Box<[u8]>, Vec<(u16, Cname)>>,
}

impl SignedZone {
    /// Signs what `table` serves, at Unix time `now`. None when its configuration has no
    /// `[dnssec]` or its keys were not loaded.
    pub fn build(table: &Table, now: u64) -> Option<Result<SignedZone, String>> {
        let d = table.config.dnssec.as_ref()?;
        let keys = d.keys.as_ref()?;
        Some(sign(table, keys, now))
    }

    /// The signed answers of a source: a family, a zone, a name's number.
    pub fn set(&self, family: Family, zone: ZoneId, number: Option<u8>) -> Option<&SignedSet> {
        self.sets
            .get(&(family as u8, zone.index() as u16, slot(number)))
    }

    /// The apex's signed answers drawn from `zone` (owner: the apex).
    pub fn apex_set(&self, family: Family, zone: ZoneId) -> Option<&SignedSet> {
        self.sets
            .get(&(family as u8, zone.index() as u16, APEX_SLOT))
    }

    /// The CNAME from the pool name `key` to the source name of `zone`.
    pub fn cname(&self, key: &[u8], zone: ZoneId) -> Option<&Cname> {
        let zone = zone.index() as u16;
        self.cnames
            .get(key)?
            .iter()
            .find(|(z, _)| *z == zone)
            .map(|(_, c)| c)
    }

    /// The apex's key RRset of `rtype` (DNSKEY, CDS or CDNSKEY), when it has records.
    pub fn keys(&self, rtype: u16) -> Option<&[Rr]> {
        let set = match rtype {
            rtype::DNSKEY => &self.dnskey,
            rtype::CDS => &self.cds,
            rtype::CDNSKEY => &self.cdnskey,
            _ => return None,
        };
        (!set.is_empty()).then_some(&set[..])
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

fn slot(number: Option<u8>) -> u8 {
    number.map_or(0, |n| n.saturating_add(1).min(APEX_SLOT - 1))
}

/// The slot of the apex's own signed answers (owner: the apex, not a source name).
const APEX_SLOT: u8 = u8::MAX;

fn sign(table: &Table, keys: &Arc<[Key]>, now: u64) -> Result<SignedZone, String> {
    let started = Instant::now();
    let config = &table.config;
    let names = &table.names;
    let (soa, soa_negative, ns) = (&table.soa, &table.soa_negative, &table.ns[..]);
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
        count += by.len();
        rrsigs(&set, by, origin, validity)
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
            // DO=1 answers at a pool name are a CNAME to a source name, except at the apex
            // and at the source names themselves, which hold the addresses.
            if key.is_empty() || matches!(pool.target, Target::Source(_)) {
                types.push(rtype::A);
                let aaaa = match config.aaaa {
                    AaaaPolicy::OnlyNumbered(n) => pool.number == Some(n),
                    _ => true,
                };
                if aaaa {
                    types.push(rtype::AAAA);
                }
            } else {
                types.push(rtype::CNAME);
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
    let (sets, cnames, pool_signatures) = sign_pool(table, &zsks, validity)?;
    count += pool_signatures;
    Ok(SignedZone {
        sets,
        cnames,
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

type PoolSigned = (
    HashMap<(u8, u16, u8), SignedSet>,
    HashMap<Box<[u8]>, Vec<(u16, Cname)>>,
    usize,
);

/// One RRset to sign: owner, type, RDATAs.
type Job = (Vec<u8>, u16, Vec<Vec<u8>>);

/// A source's answers before signing: its key in `sets`, the answers, their running
/// weights.
type Layout = ((u8, u16, u8), Vec<Picks>, Vec<u64>);

/// A pool name's CNAME targets before signing: (source zone index, source name).
type Targets = (Box<[u8]>, Vec<(u16, Vec<u8>)>);

/// The pool's signed answers: for every zone with servers, family and number, the
/// answers a draw from it can give (see the module doc of [`crate::dnssec`]), and for
/// every pool name the CNAMEs to the source names its draws can land on. The RRsets are
/// laid out first and signed by a few threads ([`crate::parallel`]); returns the number
/// of signatures made too.
fn sign_pool(table: &Table, zsks: &[&Key], validity: Validity) -> Result<PoolSigned, String> {
    let config = &table.config;
    let variants = config.dnssec.as_ref().map_or(32, |d| d.variants);
    let ttl = config.answer_ttl;
    let k = config.records;
    let numbers: Vec<Option<u8>> = std::iter::once(None)
        .chain((0..config.numbered).map(Some))
        .collect();
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    // (set key, picks, weights) per source, and the RRsets to sign in the same order.
    let mut layouts: Vec<Layout> = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    let mut live: Vec<ZoneId> = Vec::new();
    for zone in ZoneId::all() {
        let mut any = false;
        for family in [Family::V4, Family::V6] {
            if table.zone(zone, family).all.is_empty() {
                continue;
            }
            any = true;
            for &number in &numbers {
                if family == Family::V6 {
                    if let AaaaPolicy::OnlyNumbered(n) = config.aaaa {
                        if number != Some(n) {
                            continue;
                        }
                    }
                }
                let (_, sampler, fill) = table.source_samplers(zone, number, family);
                let want = k.min(table.eligible(family));
                let drawn = draw(sampler, fill, want, variants, &mut rng);
                let owner = source_name(zone, number, &config.origin);
                let rtype = if family == Family::V4 {
                    rtype::A
                } else {
                    rtype::AAAA
                };
                let mut picks = Vec::with_capacity(drawn.len());
                let mut ends = Vec::with_capacity(drawn.len());
                let mut end = 0u64;
                for (set, weight) in drawn {
                    let rdatas: Vec<Vec<u8>> = set
                        .iter()
                        .filter_map(|&m| table.members.get(m as usize))
                        .map(|m| match m.ip {
                            std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
                            std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
                        })
                        .collect();
                    jobs.push((owner.clone(), rtype, rdatas));
                    picks.push(Picks::from_ids(&set));
                    end = end.saturating_add(weight);
                    ends.push(end);
                }
                let key = (family as u8, zone.index() as u16, slot(number));
                if number.is_none() {
                    // The apex cannot be a CNAME (it has the SOA and NS): its answers are
                    // the source name's, signed again with the apex as their owner.
                    let n = picks.len();
                    for i in jobs.len() - n..jobs.len() {
                        let (_, rtype, rdatas) = jobs[i].clone();
                        jobs.push((config.origin.clone(), rtype, rdatas));
                    }
                    layouts.push((key, picks.clone(), ends.clone()));
                    layouts.push(((key.0, key.1, APEX_SLOT), picks, ends));
                } else {
                    layouts.push((key, picks, ends));
                }
            }
        }
        if any {
            live.push(zone);
        }
    }
    let set_jobs = jobs.len();

    // CNAMEs: from each pool name to the source names its draws can land on.
    let mut cname_layout: Vec<Targets> = Vec::new();
    for (key, node) in table.names.iter() {
        let Some(pool) = node.pool else { continue };
        if key.is_empty() {
            continue; // signed in place (above)
        }
        let sources: Vec<ZoneId> = match pool.target {
            Target::Source(_) => continue,
            Target::Geo => live.clone(),
            Target::Country(c) => match &table.plan {
                Some(plans) => {
                    let mut zones: Vec<ZoneId> = plans
                        .iter()
                        .flat_map(|p| p.row(Some(c)).shares().iter().map(|(s, _)| *s))
                        .map(|s| match s {
                            Source::Country(x) => ZoneId::Country(x),
                            Source::Global => ZoneId::Global,
                        })
                        .chain([ZoneId::Global])
                        .filter(|z| live.contains(z))
                        .collect();
                    zones.sort_by_key(|z| z.index());
                    zones.dedup();
                    zones
                }
                None => chain_zones(table, pool.target, &live),
            },
            Target::Continent(_) => chain_zones(table, pool.target, &live),
        };
        let mut owner = key.to_vec();
        owner.extend_from_slice(&config.origin);
        let mut targets = Vec::with_capacity(sources.len());
        for zone in sources {
            let target = source_name(zone, pool.number, &config.origin);
            jobs.push((owner.clone(), rtype::CNAME, vec![target.clone()]));
            targets.push((zone.index() as u16, target));
        }
        cname_layout.push((key.into(), targets));
    }

    let origin = &config.origin;
    let signed = crate::parallel::map(&jobs, 64, |(owner, rtype, rdatas)| {
        let set = RrSet {
            owner,
            rtype: *rtype,
            class: class::IN,
            ttl,
            rdatas: rdatas.iter().map(Vec::as_slice).collect(),
        };
        rrsigs(&set, zsks, origin, validity)
    });
    let mut signed = signed.into_iter();
    let mut sets = HashMap::with_capacity(layouts.len());
    for (key, picks, ends) in layouts {
        let sigs = (&mut signed)
            .take(picks.len())
            .collect::<Result<Vec<Sigs>, String>>()?;
        sets.insert(
            key,
            SignedSet {
                picks: picks.into_boxed_slice(),
                ends: ends.into_boxed_slice(),
                sigs: sigs.into_boxed_slice(),
            },
        );
    }
    let mut cnames = HashMap::with_capacity(cname_layout.len());
    for (key, targets) in cname_layout {
        let mut list = Vec::with_capacity(targets.len());
        for (zone, target) in targets {
            let sigs = signed.next().ok_or("a CNAME left unsigned")??;
            list.push((
                zone,
                Cname {
                    rr: Rr {
                        rtype: rtype::CNAME,
                        ttl,
                        rdata: target.into_boxed_slice(),
                    },
                    sigs,
                },
            ));
        }
        cnames.insert(key, list);
    }
    debug_assert!(set_jobs <= jobs.len());
    Ok((sets, cnames, jobs.len() * zsks.len()))
}

/// The zones of a name's chain that have servers (zones mode, and continent names).
fn chain_zones(table: &Table, target: Target, live: &[ZoneId]) -> Vec<ZoneId> {
    table
        .chain(target, crate::table::Region::default())
        .zones()
        .filter(|z| live.contains(z))
        .collect()
}

/// The full wire name `[<n>.]<zone>._src.<origin>`.
fn source_name(zone: ZoneId, number: Option<u8>, origin: &[u8]) -> Vec<u8> {
    let mut name = Vec::with_capacity(32 + origin.len());
    if let Some(n) = number {
        name.extend_from_slice(&[1, b'0' + n]);
    }
    let label = zone.label();
    name.push(label.len() as u8);
    name.extend_from_slice(label.as_bytes());
    name.push(SOURCE_LABEL.len() as u8);
    name.extend_from_slice(SOURCE_LABEL.as_bytes());
    name.extend_from_slice(origin);
    name
}

/// The answers a draw from `sampler` (filled from `fill` up to `want` members when it
/// has fewer) can give, with their weights. A set of at most 2 · `budget` members gets
/// every answer of several of its orderings (about 4 · `budget` answers in all, so that
/// they stay varied; each ordering gives every member exactly its inclusion, and so does
/// the mixture), a larger one `budget` answers by systematic sampling (module doc of
/// [`crate::dnssec`]).
fn draw<R: Rng + ?Sized>(
    sampler: &Sampler,
    fill: Option<&Sampler>,
    want: usize,
    budget: usize,
    rng: &mut R,
) -> Vec<(Vec<u32>, u64)> {
    let base = answers_of(sampler, budget, rng);
    let mut out = Vec::with_capacity(base.len());
    for (set, weight) in base {
        match fill {
            Some(fill) if set.len() < want && !fill.is_empty() => {
                // The fill is an independent draw from the whole pool whose members, in
                // random order, are added until the answer has `want` (Picks::fill_from): a
                // uniformly random `need` of those not in the answer yet. So every
                // combination of them is an answer, the fill answer's weight shared
                // equally (FILL_SCALE is divisible by every number of combinations of up
                // to 4 of 16).
                let need = want - set.len();
                for (extra, extra_weight) in answers_of(fill, budget, rng) {
                    let rest: Vec<u32> = extra.into_iter().filter(|m| !set.contains(m)).collect();
                    let combos = combinations(&rest, need.min(rest.len()));
                    let share = FILL_SCALE / combos.len().max(1) as u64;
                    for combo in combos {
                        let mut full = set.clone();
                        full.extend(combo);
                        out.push((
                            full,
                            weight.saturating_mul(extra_weight).saturating_mul(share),
                        ));
                    }
                }
            }
            _ => out.push((set, weight)),
        }
    }
    out
}

/// The weight one fill answer is shared out in (see [`draw`]): lcm(1, …, 16), divisible by
/// the number of combinations of `need` of `rest` for k = 4.
const FILL_SCALE: u64 = 720_720;

/// Every combination of `r` of `items`, in order.
fn combinations(items: &[u32], r: usize) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    let mut chosen = Vec::with_capacity(r);
    fn go(items: &[u32], r: usize, start: usize, chosen: &mut Vec<u32>, out: &mut Vec<Vec<u32>>) {
        if chosen.len() == r {
            out.push(chosen.clone());
            return;
        }
        for i in start..items.len() {
            chosen.push(items[i]);
            go(items, r, i + 1, chosen, out);
            chosen.pop();
        }
    }
    go(items, r, 0, &mut chosen, &mut out);
    out
}

/// The answers of one sampler with their weights (see [`draw`]).
fn answers_of<R: Rng + ?Sized>(s: &Sampler, budget: usize, rng: &mut R) -> Vec<(Vec<u32>, u64)> {
    let orderings = s.orderings();
    if orderings == 0 {
        return vec![(s.members().to_vec(), 1)];
    }
    let mut out = Vec::new();
    if s.len() <= 2 * budget {
        let per = (4 * budget / s.len()).clamp(1, orderings);
        let first = rng.random_range(0..orderings);
        for j in 0..per {
            let v = s.variants_exact((first + j) % orderings);
            for i in 0..v.len() {
                // Each ordering's weights sum to the sampler's unit (about 2⁶²); scaled
                // down to 2³² so that 64 orderings' sum times a fill's FILL_SCALE
                // (under 2²⁰) fits a u64.
                out.push((v.set(i).to_vec(), (v.weight(i) >> 30).max(1)));
            }
        }
    } else {
        let v = s.variants_sampled(rng.random_range(0..orderings), budget, rng.random::<f64>());
        for i in 0..v.len() {
            out.push((v.set(i).to_vec(), 1));
        }
    }
    out
}
