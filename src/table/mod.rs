//! The table: everything a query needs, immutable once built. This is the "table" arrow:
//! configuration + feed + GeoIP database in, one value out that the reload task publishes
//! with a single atomic swap. Queries hold an `Arc<Table>` for as long as they run.

mod names;
pub mod split;

pub use names::{DebugName, Names, Node, PoolName, Rr, SOURCE_LABEL, Target};

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::{SmallRng, StdRng};
use rand::{RngExt, SeedableRng};

use crate::config::{AaaaPolicy, BalanceMode, ZoneConfig};
use crate::continent::{self, Continent};
use crate::feed::{Feed, Skipped};
use crate::geo::GeoDb;
use crate::plan::demand::Demand;
use crate::plan::{FamilyInputs, FamilyPlan, SetView, Source};
use crate::select::{Picks, Sampler};
use crate::wire::rtype;

/// Address family of a pool answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// A records.
    V4 = 0,
    /// AAAA records.
    V6 = 1,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// A pool zone: global, a continent or a country.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZoneId {
    /// Every eligible server.
    Global,
    /// A continent zone.
    Continent(Continent),
    /// A country zone, by index into [`continent::countries`] order.
    Country(u16),
}

impl ZoneId {
    /// Its position in the table's per-zone arrays.
    pub fn index(self) -> usize {
        match self {
            ZoneId::Global => 0,
            ZoneId::Continent(c) => 1 + c.index(),
            ZoneId::Country(i) => 1 + Continent::ALL.len() + usize::from(i),
        }
    }

    /// Every zone, in index order.
    pub fn all() -> impl Iterator<Item = ZoneId> {
        std::iter::once(ZoneId::Global)
            .chain(Continent::ALL.iter().map(|&c| ZoneId::Continent(c)))
            .chain((0..continent::countries().count()).map(|i| ZoneId::Country(i as u16)))
    }

    /// Its label: "global", a continent's or a country's.
    pub fn label(self) -> &'static str {
        match self {
            ZoneId::Global => "global",
            ZoneId::Continent(c) => c.label(),
            ZoneId::Country(i) => continent::countries()
                .nth(usize::from(i))
                .map_or("unknown", |(code, _)| code),
        }
    }
}

/// Where a client is, as far as the table is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Region {
    /// Its (canonical) country zone, if known.
    pub country: Option<u16>,
    /// Its continent, if known.
    pub continent: Option<Continent>,
}

/// An eligible server as the table keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Feed id.
    pub id: u64,
    /// Address.
    pub ip: IpAddr,
    /// Net speed, kbit/s, as the feed gives it.
    pub netspeed: u32,
    /// Its weight in the samplers: the net speed, scaled down on the score ramp below
    /// `answers.full_weight_score` (never 0: a server of weight 0 is not a member).
    pub weight: u32,
}

/// What an answer reads and writes of a picked member: its address, and the count of
/// answers that carried it. 32 bytes aligned to 32, so both sit in one cache line: against a
/// 100,000-server feed a record costs one cache miss where reading the member list and
/// counting into a per-thread array took two (benches/README.md).
#[derive(Debug)]
#[repr(align(32))]
pub struct Address {
    /// The member's address.
    pub ip: IpAddr,
    /// Answers that carried it since the table was built, over every thread and transport.
    pub answers: AtomicU64,
}

// One member's address and count share a cache line, and two members fill one.
const _: () = assert!(std::mem::size_of::<Address>() == 32);

/// The servers of one pool zone and family, ready for picking.
#[derive(Debug, Clone)]
pub struct ZoneSets {
    /// Every eligible server of the zone (unnumbered names).
    pub all: Sampler,
    /// The numbered subsets; empty when the zone is not split (too small, or no split keeps
    /// every server's share: see [`split`]).
    pub numbered: Box<[Sampler]>,
    /// Total net speed, kbit/s.
    pub netspeed: u64,
}

/// What a feed load left behind, kept for the status surface.
#[derive(Debug, Clone)]
pub struct FeedSummary {
    /// Where the feed came from.
    pub source: String,
    /// Entries in the feed.
    pub entries: usize,
    /// Entries skipped, with reasons.
    pub skipped: Arc<[Skipped]>,
    /// Servers loaded (eligible or not).
    pub loaded: usize,
    /// When the feed was loaded.
    pub loaded_at: SystemTime,
}

/// The immutable query-time state.
#[derive(Debug)]
pub struct Table {
    /// The zone configuration it was built from.
    pub config: Arc<ZoneConfig>,
    /// The zone's names.
    pub names: Arc<Names>,
    /// The GeoIP database.
    pub geo: Arc<GeoDb>,
    /// SOA serial (from the feed, else the load time).
    pub serial: u32,
    /// The rotation epoch the numbered split was made for.
    pub epoch: u64,
    /// The eligible servers; samplers hold indices into this.
    pub members: Box<[Member]>,
    /// Their addresses and answer counts, indexed like `members`.
    pub addresses: Box<[Address]>,
    /// Per family, per zone index.
    zones: [Box<[ZoneSets]>; 2],
    /// The serving plan, per family, in plan mode.
    pub plan: Option<Box<[FamilyPlan; 2]>>,
    /// Where the plan's demand came from: a demand file, or the GeoIP prior.
    pub demand_from_file: bool,
    /// Canonical country index of each two-letter code (aliases applied), indexed by
    /// (first letter)·26 + second letter.
    country_index: Box<[Option<u16>]>,
    /// Every known country code with its continent, in country index order.
    countries: Box<[(&'static str, Continent)]>,
    /// The SOA record.
    pub soa: Rr,
    /// The SOA as it goes into negative answers (TTL = min(TTL, MINIMUM), RFC 2308 §3).
    pub soa_negative: Rr,
    /// The apex NS RRset.
    pub ns: Box<[Rr]>,
    /// TXT records of the CHAOS identity names (None = turned off).
    pub identity: IdentityRecords,
    /// The feed it was built from.
    pub feed: FeedSummary,
    /// When it was built.
    pub built_at: SystemTime,
    /// How long the build took.
    pub build_time: Duration,
    /// How long the plan took, of that (the demand prior included the first time a
    /// GeoIP database is used).
    pub plan_time: Duration,
    /// The signed parts of the zone, with `[dnssec]` (DESIGN §4.1).
    pub signed: Option<Arc<crate::dnssec::zone::SignedZone>>,
    /// Why signing failed, if it did: such a table is never published.
    pub signing_error: Option<String>,
}

/// The CHAOS TXT records, rendered.
#[derive(Debug, Clone)]
pub struct IdentityRecords {
    /// `version.bind`, `version.server`.
    pub version: Option<Rr>,
    /// `hostname.bind`, `id.server`.
    pub hostname: Option<Rr>,
}

/// Builds every pool zone's sets (per family, per zone index) from the member ids of each.
///
/// The sets are independent, so they are built by a few threads (see [`crate::parallel`]).
/// Each zone shuffles its samplers' orderings with its own generator, seeded from one drawn
/// for the build; the numbered split does not depend on these (see [`split`]).
fn build_zone_sets(
    config: &ZoneConfig,
    members: &[Member],
    zone_members: &[Vec<Vec<u32>>; 2],
    epoch: u64,
) -> [Box<[ZoneSets]>; 2] {
    let k = config.records;
    let parts = usize::from(config.numbered);
    // Each zone's label, by zone index (see `ZoneId::index`): the split is seeded by label.
    let labels: Vec<&str> = std::iter::once("@")
        .chain(Continent::ALL.iter().map(|c| c.label()))
        .chain(continent::countries().map(|(code, _)| code))
        .collect();
    let build_one = |family: Family, zone: usize, seed: u64| -> ZoneSets {
        let mut rng = SmallRng::seed_from_u64(seed);
        let ids = &zone_members[family as usize][zone];
        let split_family =
            !(family == Family::V6 && matches!(config.aaaa, AaaaPolicy::OnlyNumbered(_)));
        let weights: Vec<u32> = ids.iter().map(|&i| members[i as usize].weight).collect();
        // The feed's net speed, not the weights, which the score ramp lowers.
        let netspeed = ids
            .iter()
            .map(|&i| u64::from(members[i as usize].netspeed))
            .sum();
        // Keyed by feed id, not position: instances may read the feed in different orders.
        let feed_ids: Vec<u64> = ids.iter().map(|&i| members[i as usize].id).collect();
        let part_of = if split_family {
            // One label per zone index, as zone_members has one list per zone index.
            let split_seed = split::seed(epoch, labels[zone], family);
            split::split(&weights, &feed_ids, parts, k, split_seed)
        } else {
            None
        };
        let numbered = if let Some(part_of) = part_of {
            (0..parts)
                .map(|p| {
                    let (sub_ids, sub_weights): (Vec<u32>, Vec<u32>) = ids
                        .iter()
                        .zip(&weights)
                        .zip(&part_of)
                        .filter(|&(_, &q)| q == p)
                        .map(|((&i, &w), _)| (i, w))
                        .unzip();
                    Sampler::new(sub_ids, &sub_weights, k, &mut rng)
                })
                .collect()
        } else {
            Box::default()
        };
        ZoneSets {
            all: Sampler::new(ids.clone(), &weights, k, &mut rng),
            numbered,
            netspeed,
        }
    };

    let mut seeds = StdRng::from_rng(&mut rand::rng());
    let mut jobs: Vec<(Family, usize, u64)> = [Family::V4, Family::V6]
        .into_iter()
        .flat_map(|f| (0..zone_members[f as usize].len()).map(move |z| (f, z)))
        .map(|(f, z)| (f, z, seeds.random()))
        .collect();
    // Largest first, handed out one by one: the threads finish together.
    jobs.sort_by_key(|&(f, z, _)| std::cmp::Reverse(zone_members[f as usize][z].len()));
    let built = crate::parallel::map(&jobs, 1, |&(family, zone, seed)| {
        build_one(family, zone, seed)
    });
    let mut zones: [Vec<Option<ZoneSets>>; 2] = [
        std::iter::repeat_with(|| None)
            .take(zone_members[0].len())
            .collect(),
        std::iter::repeat_with(|| None)
            .take(zone_members[1].len())
            .collect(),
    ];
    for (&(family, zone, _), sets) in jobs.iter().zip(built) {
        zones[family as usize][zone] = Some(sets);
    }
    // One job per family and zone: every slot is filled.
    zones.map(|z| z.into_iter().flatten().collect())
}

fn txt(text: &str) -> Rr {
    let bytes = &text.as_bytes()[..text.len().min(255)]; // config checks <= 255
    let mut rdata = Vec::with_capacity(bytes.len() + 1);
    rdata.push(bytes.len() as u8);
    rdata.extend_from_slice(bytes);
    Rr {
        rtype: rtype::TXT,
        ttl: 0,
        rdata: rdata.into_boxed_slice(),
    }
}

/// The rotation epoch at `now` for a rotation period.
pub fn epoch_at(now: SystemTime, rotation: Duration) -> u64 {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    secs / rotation.as_secs().max(1)
}

impl Table {
    /// Builds a table. Servers below the minimum score or with net speed 0 are left out.
    /// In plan mode the plan takes the GeoIP database's address-space prior as demand.
    pub fn build(
        config: Arc<ZoneConfig>,
        names: Arc<Names>,
        geo: Arc<GeoDb>,
        feed: &Feed,
        epoch: u64,
    ) -> Table {
        Self::build_with(config, names, geo, feed, None, epoch)
    }

    /// [`Table::build`] with the demand the plan is made for (a demand file's); None
    /// takes the GeoIP database's address-space prior.
    pub fn build_with(
        config: Arc<ZoneConfig>,
        names: Arc<Names>,
        geo: Arc<GeoDb>,
        feed: &Feed,
        demand: Option<&Demand>,
        epoch: u64,
    ) -> Table {
        let started = Instant::now();
        let country_index = country_index(&config);
        let zone_count = 1 + Continent::ALL.len() + continent::countries().count();
        let mut members = Vec::new();
        // Per family, per zone: member indices.
        let mut zone_members: [Vec<Vec<u32>>; 2] =
            [vec![Vec::new(); zone_count], vec![Vec::new(); zone_count]];
        for server in &feed.servers {
            if server.netspeed == 0 || server.score < config.min_score {
                continue;
            }
            let weight = ramped_weight(server.netspeed, server.score, &config);
            if weight == 0 {
                continue;
            }
            let Ok(id) = u32::try_from(members.len()) else {
                break;
            };
            let family = Family::of(server.ip) as usize;
            let mut zones = vec![ZoneId::Global];
            let labels: Vec<&str> = match &server.zones {
                Some(list) => list.iter().map(String::as_str).collect(),
                None => vec![server.country.as_str()],
            };
            for label in labels {
                if let Some(c) = Continent::from_label(label) {
                    zones.push(ZoneId::Continent(c));
                } else if let Some(i) = lookup_country(&country_index, label) {
                    zones.push(ZoneId::Country(i));
                    if server.zones.is_none()
                        && let Some(c) = continent::continent_of(label)
                    {
                        zones.push(ZoneId::Continent(c));
                    }
                }
            }
            zones.sort_by_key(|z| z.index());
            zones.dedup();
            for z in zones {
                zone_members[family][z.index()].push(id);
            }
            members.push(Member {
                id: server.id,
                ip: server.ip,
                netspeed: server.netspeed,
                weight,
            });
        }

        let zones = build_zone_sets(&config, &members, &zone_members, epoch);
        let plan_started = Instant::now();
        let plan = match config.balance.mode {
            BalanceMode::Zones => None,
            BalanceMode::Plan => {
                let prior;
                let demand = match demand {
                    Some(d) => d,
                    None => {
                        prior = crate::plan::demand::prior(&geo);
                        &prior
                    }
                };
                let by_index = demand_by_index(demand, &country_index);
                Some(Box::new(build_plan(&config, &members, &zones, &by_index)))
            }
        };
        let plan_time = plan_started.elapsed();

        let now = SystemTime::now();
        let serial = feed.serial.unwrap_or_else(|| {
            now.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as u32)
                .unwrap_or(1)
        });
        let identity = IdentityRecords {
            version: config.identity.version.as_deref().map(txt),
            hostname: config.identity.hostname.as_deref().map(txt),
        };
        let soa = render_soa(&config, serial, config.soa.ttl);
        let soa_negative = render_soa(&config, serial, config.soa.ttl.min(config.soa.minimum));
        let ns = config
            .ns
            .iter()
            .map(|n| Rr {
                rtype: rtype::NS,
                ttl: config.ns_ttl,
                rdata: n.clone().into_boxed_slice(),
            })
            .collect::<Box<[Rr]>>();
        let mut table = Table {
            config,
            names,
            geo,
            serial,
            epoch,
            addresses: members
                .iter()
                .map(|m| Address {
                    ip: m.ip,
                    answers: AtomicU64::new(0),
                })
                .collect(),
            members: members.into_boxed_slice(),
            zones,
            plan,
            demand_from_file: demand.is_some(),
            country_index,
            countries: continent::countries().collect(),
            soa,
            soa_negative,
            ns,
            identity,
            feed: FeedSummary {
                source: feed.source.clone(),
                entries: feed.report.entries,
                skipped: feed.report.skipped.clone().into(),
                loaded: feed.servers.len(),
                loaded_at: feed.loaded_at,
            },
            built_at: now,
            build_time: started.elapsed(),
            plan_time,
            signed: None,
            signing_error: None,
        };
        let unix_now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match crate::dnssec::zone::SignedZone::build(&table, unix_now) {
            None => {}
            Some(Ok(zone)) => table.signed = Some(Arc::new(zone)),
            Some(Err(e)) => table.signing_error = Some(e),
        }
        table.build_time = started.elapsed();
        table
    }

    /// The sets of a pool zone for a family.
    pub fn zone(&self, zone: ZoneId, family: Family) -> &ZoneSets {
        &self.zones[family as usize][zone.index()]
    }

    /// Eligible servers of a family (the size of the global zone).
    pub fn eligible(&self, family: Family) -> usize {
        self.zone(ZoneId::Global, family).all.len()
    }

    /// The sampler a name uses in a zone: its numbered subset when it has a number and
    /// the zone is split, else the whole zone.
    pub fn sampler(&self, zone: ZoneId, family: Family, number: Option<u8>) -> &Sampler {
        sets_for(self.zone(zone, family), number)
    }

    /// The zone's label ("@" for global, "europe", "de").
    pub fn zone_label(&self, zone: ZoneId) -> &'static str {
        match zone {
            ZoneId::Global => "@",
            ZoneId::Continent(c) => c.label(),
            ZoneId::Country(i) => self
                .countries
                .get(usize::from(i))
                .map_or("?", |&(code, _)| code),
        }
    }

    /// The continent of a country zone.
    pub fn continent_of(&self, country: u16) -> Option<Continent> {
        self.countries.get(usize::from(country)).map(|&(_, c)| c)
    }

    /// The canonical country zone of a two-letter code (aliases applied).
    pub fn country(&self, code: &str) -> Option<u16> {
        lookup_country(&self.country_index, code)
    }

    /// The zones a pool name tries, best first, for a client in `region`.
    pub fn chain(&self, target: Target, region: Region) -> Chain {
        let mut chain = Chain::default();
        match target {
            Target::Geo => {
                if let Some(c) = region.country {
                    chain.push(ZoneId::Country(c));
                }
                if let Some(c) = region.continent {
                    chain.push(ZoneId::Continent(c));
                }
            }
            Target::Country(c) => {
                chain.push(ZoneId::Country(c));
                if let Some(&(_, cont)) = self.countries.get(usize::from(c)) {
                    chain.push(ZoneId::Continent(cont));
                }
            }
            Target::Continent(c) => chain.push(ZoneId::Continent(c)),
            Target::Source(zone) => chain.push(zone),
        }
        chain.push(ZoneId::Global);
        chain
    }

    /// Picks servers for a pool name: the first zone of the chain with an eligible server
    /// of the family, then its numbered subset (or the whole zone). Returns the zone used.
    /// In plan mode the apex, numbered, vendor and country names draw their zone from the
    /// plan's row for the client's country (for a country name, that country) instead.
    pub fn pick<R: rand::Rng + ?Sized>(
        &self,
        pool: PoolName,
        family: Family,
        region: Region,
        rng: &mut R,
    ) -> Option<(ZoneId, Picks)> {
        let picked = self.pick_members(pool, family, region, rng);
        if let Some((_, picks)) = &picked {
            self.prefetch_addresses(picks.as_slice());
        }
        picked
    }

    /// Starts loading the address entries of `picks` into the cache. They sit at random
    /// places among the table's hundreds of megabytes and the answer's writer reads them
    /// one record after another; started together here, their cache misses overlap.
    fn prefetch_addresses(&self, picks: &[u32]) {
        for &i in picks {
            if let Some(a) = self.addresses.get(i as usize) {
                crate::prefetch::prefetch(a);
            }
        }
    }

    fn pick_members<R: rand::Rng + ?Sized>(
        &self,
        pool: PoolName,
        family: Family,
        region: Region,
        rng: &mut R,
    ) -> Option<(ZoneId, Picks)> {
        if let Target::Source(zone) = pool.target {
            return self.pick_source(zone, pool.number, family, rng);
        }
        if let Some(plan) = &self.plan {
            let client = match pool.target {
                Target::Geo => Some(region.country),
                Target::Country(c) => Some(Some(c)),
                Target::Continent(_) | Target::Source(_) => None,
            };
            if let Some(client) = client {
                return self.pick_planned(&plan[family as usize], pool, family, client, rng);
            }
        }
        let chain = self.chain(pool.target, region);
        let zone = chain
            .zones()
            .find(|&z| !self.zone(z, family).all.is_empty())?;
        let sets = self.zone(zone, family);
        let sampler = match pool.number {
            Some(n) if !sets.numbered.is_empty() => {
                sets.numbered.get(usize::from(n)).unwrap_or(&sets.all)
            }
            _ => &sets.all,
        };
        Some((zone, sampler.pick(rng)))
    }
}

impl Table {
    /// Counts one answer for each of `picks` (member ids).
    pub fn count_answer(&self, picks: &[u32]) {
        for &i in picks {
            if let Some(a) = self.addresses.get(i as usize) {
                a.answers.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Answers that carried each member since the table was built, indexed like `members`.
    pub fn answers(&self) -> Vec<u64> {
        self.addresses
            .iter()
            .map(|a| a.answers.load(Ordering::Relaxed))
            .collect()
    }
}

impl Table {
    /// The sampler a draw from `zone` uses for a name of `number`: the zone's numbered
    /// subset or all of it, or the global zone's when `zone` has no server of the family;
    /// and in plan mode the global one that fills answers of fewer than k servers.
    pub fn source_samplers(
        &self,
        zone: ZoneId,
        number: Option<u8>,
        family: Family,
    ) -> (ZoneId, &Sampler, Option<&Sampler>) {
        let zone = if self.zone(zone, family).all.is_empty() {
            ZoneId::Global
        } else {
            zone
        };
        let sampler = sets_for(self.zone(zone, family), number);
        let fill = self
            .plan
            .as_ref()
            .map(|_| sets_for(self.zone(ZoneId::Global, family), number));
        (zone, sampler, fill)
    }

    /// A draw from one zone (a source name's): as [`Table::source_samplers`] says.
    fn pick_source<R: rand::Rng + ?Sized>(
        &self,
        zone: ZoneId,
        number: Option<u8>,
        family: Family,
        rng: &mut R,
    ) -> Option<(ZoneId, Picks)> {
        let (zone, sampler, fill) = self.source_samplers(zone, number, family);
        if sampler.is_empty() {
            return None;
        }
        let mut picks = sampler.pick(rng);
        if let Some(fill) = fill {
            let want = self.config.records.min(self.eligible(family));
            if picks.as_slice().len() < want {
                picks.fill_from(&fill.pick(rng), want);
            }
        }
        Some((zone, picks))
    }

    /// A plan-mode pick: the source drawn from the client country's row, its numbered
    /// subset when the name has a number, and when the source has fewer than k servers,
    /// the rest from the whole pool, so every answer has min(k, eligible) servers. O(1)
    /// beyond the pick itself, no allocation.
    fn pick_planned<R: rand::Rng + ?Sized>(
        &self,
        plan: &FamilyPlan,
        pool: PoolName,
        family: Family,
        client: Option<u16>,
        rng: &mut R,
    ) -> Option<(ZoneId, Picks)> {
        let global = self.zone(ZoneId::Global, family);
        if global.all.is_empty() {
            return None;
        }
        let zone = match plan.row(client).draw(rng) {
            Source::Country(c) if !self.zone(ZoneId::Country(c), family).all.is_empty() => {
                ZoneId::Country(c)
            }
            _ => ZoneId::Global,
        };
        let mut picks = sets_for(self.zone(zone, family), pool.number).pick(rng);
        let want = self.config.records.min(global.all.len());
        if picks.as_slice().len() < want {
            picks.fill_from(&sets_for(global, pool.number).pick(rng), want);
        }
        Some((zone, picks))
    }
}

/// The sampler a name uses in a zone: the numbered subset, or the whole zone.
pub fn sets_for(sets: &ZoneSets, number: Option<u8>) -> &Sampler {
    match number {
        Some(n) if !sets.numbered.is_empty() => {
            sets.numbered.get(usize::from(n)).unwrap_or(&sets.all)
        }
        _ => &sets.all,
    }
}

/// A server's weight on the score ramp: its net speed from `full_weight_score` on, linear
/// from 0 at `min_score` up to there, and at least 1 for every eligible server, so that
/// eligibility stays "score ≥ min_score and net speed > 0" everywhere; 0 below `min_score`.
fn ramped_weight(netspeed: u32, score: f64, config: &ZoneConfig) -> u32 {
    let (low, high) = (config.min_score, config.full_weight_score);
    if score >= high {
        return netspeed;
    }
    if score < low || netspeed == 0 {
        return 0;
    }
    let f = (score - low) / (high - low);
    ((f64::from(netspeed) * f).round() as u32).clamp(1, netspeed)
}

/// The plan of both families from the built sets.
fn build_plan(
    config: &ZoneConfig,
    members: &[Member],
    zones: &[Box<[ZoneSets]>; 2],
    demand: &[Vec<f64>; 2],
) -> [FamilyPlan; 2] {
    let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
    let continents: Vec<Continent> = continent::countries().map(|(_, c)| c).collect();
    let countries = continents.len();
    let first_country = ZoneId::Country(0).index();
    [Family::V4, Family::V6].map(|family| {
        let sets = &zones[family as usize];
        fn view(s: &ZoneSets) -> SetView<'_> {
            SetView {
                members: s.all.members(),
                inclusion: s.all.inclusion(),
            }
        }
        FamilyPlan::build(&FamilyInputs {
            demand: &demand[family as usize],
            sets: (0..countries)
                .map(|c| sets.get(first_country + c).map_or(SetView::EMPTY, view))
                .collect(),
            global: view(&sets[ZoneId::Global.index()]),
            weights: &weights,
            continents: &continents,
            k: config.records,
            max_load: config.balance.max_load,
        })
    })
}

/// Demand per family (v4, v6) and canonical country index (aliases applied).
fn demand_by_index(demand: &Demand, country_index: &[Option<u16>]) -> [Vec<f64>; 2] {
    let countries = continent::countries().count();
    [Family::V4, Family::V6].map(|family| {
        let mut v = vec![0.0; countries];
        for (code, &w) in demand.family(family) {
            if let Some(i) = lookup_country(country_index, code) {
                v[usize::from(i)] += w;
            }
        }
        v
    })
}

/// A fallback chain: at most country, continent, global.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chain {
    zones: [Option<ZoneId>; 3],
    len: usize,
}

impl Chain {
    fn push(&mut self, z: ZoneId) {
        if self.len < self.zones.len() {
            self.zones[self.len] = Some(z);
            self.len += 1;
        }
    }

    /// The zones, best first.
    pub fn zones(&self) -> impl Iterator<Item = ZoneId> + '_ {
        self.zones[..self.len].iter().flatten().copied()
    }
}

fn country_index(config: &ZoneConfig) -> Box<[Option<u16>]> {
    let mut index = vec![None; 26 * 26];
    let codes: Vec<&str> = continent::countries().map(|(c, _)| c).collect();
    for (i, code) in codes.iter().enumerate() {
        let canonical = config
            .aliases
            .get(*code)
            .and_then(|t| codes.iter().position(|c| c == t))
            .unwrap_or(i);
        if let Some(slot) = continent::code_slot(code) {
            index[slot] = u16::try_from(canonical).ok();
        }
    }
    index.into_boxed_slice()
}

fn lookup_country(index: &[Option<u16>], code: &str) -> Option<u16> {
    continent::code_slot(code).and_then(|s| index.get(s).copied().flatten())
}

fn render_soa(config: &ZoneConfig, serial: u32, ttl: u32) -> Rr {
    let soa = &config.soa;
    let mut rdata = Vec::with_capacity(soa.mname.len() + soa.rname.len() + 20);
    rdata.extend_from_slice(&soa.mname);
    rdata.extend_from_slice(&soa.rname);
    for n in [serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
        rdata.extend_from_slice(&n.to_be_bytes());
    }
    Rr {
        rtype: rtype::SOA,
        ttl,
        rdata: rdata.into_boxed_slice(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> ZoneConfig {
        let text = format!(
            "origin = \"pool.test\"\n[soa]\nmname = \"ns1.pool.test\"\nrname = \"h.pool.test\"\n\
             [ns]\nnames = [\"ns1.pool.test\"]\n[answers]\n{extra}\n"
        );
        ZoneConfig::parse(std::path::Path::new("zone.toml"), &text).expect("config")
    }

    #[test]
    fn weights_ramp_linearly_from_min_score_to_full_weight_score() {
        let ramp = config("full_weight_score = 15.0");
        assert_eq!(ramped_weight(1000, 10.0, &ramp), 1);
        assert_eq!(ramped_weight(1000, 9.0, &ramp), 0);
        assert_eq!(ramped_weight(1000, 11.0, &ramp), 200);
        assert_eq!(ramped_weight(1000, 12.5, &ramp), 500);
        assert_eq!(ramped_weight(1000, 15.0, &ramp), 1000);
        assert_eq!(ramped_weight(1000, 20.0, &ramp), 1000);
        // Just above min_score: never 0, which would leave the server out.
        assert_eq!(ramped_weight(3, 10.001, &ramp), 1);
        // Off by default: full weight from min_score on.
        let off = config("");
        assert_eq!(ramped_weight(1000, 10.0, &off), 1000);
        assert_eq!(ramped_weight(1000, 19.0, &off), 1000);
    }
}
