//! The numbered split as the table builds it (DESIGN §3, issue "The fleet must agree and the
//! shares must hold at the edges"): a zone is split only where every server's share of the
//! numbered names' answers stays within `SHARE_TOLERANCE` of its share at the unnumbered
//! name, checked from the live samplers' inclusion probabilities; the groupings change from
//! epoch to epoch; and the split depends only on (epoch, zone, family, net speeds, feed
//! ids), pinned by golden values so that any change of its output (a new generator, a new
//! rand, another order of the feed) fails here.
//!
//! These build tables in-process, without a server: the split is made at build time.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use pooldns::config::ZoneConfig;
use pooldns::continent::Continent;
use pooldns::feed;
use pooldns::geo::GeoDb;
use pooldns::table::split::SHARE_TOLERANCE;
use pooldns::table::{Family, Names, Table, ZoneId};

use crate::harness::*;

/// Builds the table of `feed` (harness configuration: 4 records, 4 numbered names) for a
/// rotation epoch.
fn table(feed: &[S], epoch: u64) -> Table {
    let config = ZoneConfig::parse(Path::new("split.toml"), CONFIG).expect("config");
    let names = Names::build(&config).expect("names");
    let geo = GeoDb::open(&repo(TEST_GEOIP)).expect("geoip");
    let feed = feed::load_slice("split", feed_json(feed).as_bytes()).expect("feed");
    Table::build(
        Arc::new(config),
        Arc::new(names),
        Arc::new(geo),
        &feed,
        epoch,
    )
}

/// The numbered subset of each feed id in a zone (empty when the zone is not split).
fn subsets(table: &Table, zone: ZoneId) -> BTreeMap<u64, usize> {
    let sets = table.zone(zone, Family::V4);
    let mut subset = BTreeMap::new();
    for (p, sampler) in sets.numbered.iter().enumerate() {
        for &m in sampler.members() {
            subset.insert(table.members[m as usize].id, p);
        }
    }
    subset
}

/// The subsets of a zone as a list in id order.
fn subset_list(table: &Table, zone: ZoneId) -> Vec<usize> {
    subsets(table, zone).into_values().collect()
}

/// Each server's share of the numbered names' records over its share of the unnumbered
/// name's, from the probabilities the zone's samplers pick with; `None` if not split.
fn share_ratios(table: &Table, zone: ZoneId) -> Option<Vec<f64>> {
    let sets = table.zone(zone, Family::V4);
    if sets.numbered.is_empty() {
        return None;
    }
    let k = table.config.records;
    let whole: BTreeMap<u32, f64> = sets
        .all
        .members()
        .iter()
        .zip(sets.all.inclusion())
        .map(|(&m, &pi)| (m, pi / sets.all.len().min(k) as f64))
        .collect();
    // Records one query to each numbered name returns.
    let records: usize = sets.numbered.iter().map(|s| s.len().min(k)).sum();
    let mut ratios = Vec::new();
    for sampler in sets.numbered.iter() {
        for (m, &pi) in sampler.members().iter().zip(sampler.inclusion()) {
            ratios.push(pi / records as f64 / whole[m]);
        }
    }
    assert_eq!(
        ratios.len(),
        whole.len(),
        "every server in exactly one subset"
    );
    Some(ratios)
}

/// `n` IPv4 servers in `country` with ids from `first_id` and the given net speeds.
fn zone(country: &'static str, first_id: u64, speeds: &[u32]) -> Vec<S> {
    speeds
        .iter()
        .enumerate()
        .map(|(i, &speed)| {
            let id = first_id + i as u64;
            let ip = Box::leak(format!("198.18.{}.{}", id / 250, id % 250 + 1).into_boxed_str());
            s(id, ip, speed, country)
        })
        .collect()
}

/// The pool's net speeds, kbit/s.
const SPEEDS: [u32; 14] = [
    512, 1500, 3000, 6000, 12000, 25000, 50000, 100_000, 250_000, 500_000, 1_000_000, 1_500_000,
    2_000_000, 3_000_000,
];

/// `n` pool-like net speeds: a fixed linear congruential sequence over [`SPEEDS`].
fn pool_speeds(n: usize, seed: u64) -> Vec<u32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            SPEEDS[(x >> 33) as usize % SPEEDS.len()]
        })
        .collect()
}

fn country(table: &Table, code: &str) -> ZoneId {
    ZoneId::Country(table.country(code).expect("a country"))
}

#[test]
fn a_small_uneven_zone_serves_every_server_under_every_number() {
    // Split four ways, `0.` answered only the 1 Gbit server and `2.` only the 3 Gbit one,
    // while six 512 kbit servers got as many numbered answers between them as each of
    // those. No split can give the 3 Gbit server its quarter of the records.
    let speeds = [3_000_000, 1_000_000, 512, 512, 512, 512, 512, 512];
    for epoch in [0, 1, 500_000] {
        let t = table(&zone("de", 1, &speeds), epoch);
        let de = country(&t, "de");
        assert!(t.zone(de, Family::V4).numbered.is_empty(), "epoch {epoch}");
        assert!(t.zone(ZoneId::Global, Family::V4).numbered.is_empty());
    }
}

#[test]
fn numbered_shares_stay_within_the_tolerance_of_whole_zone_shares() {
    // Countries of 8 to 400 pool-like servers; their continent (europe) and the global
    // zone hold all of them.
    let mut feed = Vec::new();
    let mut id = 1;
    for (i, (code, n)) in [
        ("de", 400),
        ("fr", 100),
        ("nl", 40),
        ("ch", 24),
        ("at", 16),
        ("be", 12),
        ("dk", 8),
        ("se", 24),
        ("fi", 32),
        ("no", 16),
    ]
    .into_iter()
    .enumerate()
    {
        feed.extend(zone(code, id, &pool_speeds(n, i as u64)));
        id += n as u64;
    }
    // A server too heavy for a large subset, which gets one of its own (300 Mbit beside
    // 36 of 100 Mbit: see the unit test of the same case).
    let heavy_one: Vec<u32> = [300_000].into_iter().chain([100_000; 36]).collect();
    feed.extend(zone("cz", id, &heavy_one));
    id += 37;
    // And small zones of near-equal servers, which can split.
    feed.extend(zone(
        "pl",
        id,
        &[
            100_000, 101_000, 102_000, 103_000, 104_000, 105_000, 106_000, 107_000, 108_000,
            109_000,
        ],
    ));
    // Epochs in which each zone was split, by label.
    let mut split: BTreeMap<&str, usize> = BTreeMap::new();
    for epoch in 0..10 {
        let t = table(&feed, epoch);
        let zones = [
            "de", "fr", "nl", "ch", "at", "be", "dk", "se", "fi", "no", "cz", "pl",
        ]
        .map(|c| country(&t, c))
        .into_iter()
        .chain([ZoneId::Continent(Continent::Europe), ZoneId::Global]);
        for z in zones {
            let label = t.zone_label(z);
            let Some(ratios) = share_ratios(&t, z) else {
                continue;
            };
            *split.entry(label).or_default() += 1;
            for r in ratios {
                assert!(
                    (r - 1.0).abs() <= SHARE_TOLERANCE + 1e-9,
                    "epoch {epoch}, {label}: a numbered share {r} times the whole zone's"
                );
            }
        }
    }
    // The large zones, the one with a heavy server of its own and the near-equal one split
    // every epoch; a zone of 8 pool-like servers never does.
    for label in ["de", "fr", "cz", "pl", "europe", "@"] {
        assert_eq!(split.get(label), Some(&10), "{label}: {split:?}");
    }
    assert_eq!(split.get("dk"), None, "{split:?}");
}

#[test]
fn groupings_change_from_epoch_to_epoch_although_every_net_speed_differs() {
    // 12 servers of 12 different net speeds: the old greedy only reordered servers of
    // equal speed, so these got the same few groupings every hour.
    let speeds: Vec<u32> = (0..12).map(|i| 95_000 + 1_000 * i).collect();
    let feed = zone("de", 1, &speeds);
    let mut groupings = HashSet::new();
    for epoch in 0..200 {
        let t = table(&feed, epoch);
        let subset = subsets(&t, country(&t, "de"));
        assert_eq!(subset.len(), 12, "epoch {epoch}: not split");
        let mut groups: Vec<Vec<u64>> = (0..4)
            .map(|p| {
                subset
                    .iter()
                    .filter(|&(_, &q)| q == p)
                    .map(|(&id, _)| id)
                    .collect()
            })
            .collect();
        groups.sort();
        groupings.insert(groups);
    }
    assert!(
        groupings.len() >= 150,
        "{} groupings in 200 epochs",
        groupings.len()
    );
}

#[test]
fn the_split_depends_on_feed_ids_not_on_feed_order() {
    // Equal net speeds, so only the ids can tell the servers apart.
    let feed: Vec<S> = zone("de", 1, &[100_000; 24])
        .into_iter()
        .chain(zone("fr", 101, &pool_speeds(100, 7)))
        .collect();
    let reversed: Vec<S> = feed.iter().rev().cloned().collect();
    for epoch in [0, 1, 500_000] {
        let (a, b) = (table(&feed, epoch), table(&reversed, epoch));
        for code in ["de", "fr"] {
            let (za, zb) = (country(&a, code), country(&b, code));
            assert!(!a.zone(za, Family::V4).numbered.is_empty(), "{code} splits");
            assert_eq!(subsets(&a, za), subsets(&b, zb), "{code}, epoch {epoch}");
        }
        assert_eq!(subsets(&a, ZoneId::Global), subsets(&b, ZoneId::Global));
    }
}

/// The golden feed: `de`, 32 servers of 100, 250 and 500 Mbit/s (four large subsets,
/// evened by trading); `nl`, 12 near-equal servers (four subsets of three, each server in
/// every answer); the global zone holds all 44.
fn golden_feed() -> Vec<S> {
    let de: Vec<u32> = [
        250_000, 100_000, 500_000, 100_000, 250_000, 250_000, 100_000, 500_000,
    ]
    .repeat(4);
    let nl: Vec<u32> = (0..12).map(|i| 95_000 + 1_000 * i).collect();
    zone("de", 1001, &de)
        .into_iter()
        .chain(zone("nl", 2001, &nl))
        .collect()
}

#[test]
fn the_split_is_pinned_for_epochs_0_1_and_500000() {
    // The subset of every server, in id order. A change here changes which servers
    // instances of a fleet answer in the same hour: it must be deliberate, released to
    // the whole fleet at once, and noted.
    let expected: [(u64, [&[usize]; 3]); 3] =
        [(0, GOLDEN_0), (1, GOLDEN_1), (500_000, GOLDEN_500000)];
    let feed = golden_feed();
    for (epoch, [de, nl, global]) in expected {
        let t = table(&feed, epoch);
        assert_eq!(subset_list(&t, country(&t, "de")), de, "de, epoch {epoch}");
        assert_eq!(subset_list(&t, country(&t, "nl")), nl, "nl, epoch {epoch}");
        assert_eq!(subset_list(&t, ZoneId::Global), global, "@, epoch {epoch}");
    }
}

/// Epoch 0: `de` (ids 1001…1032), `nl` (ids 2001…2012), global (de's, then nl's).
const GOLDEN_0: [&[usize]; 3] = [
    &[
        1, 0, 3, 1, 2, 1, 1, 3, 0, 1, 3, 1, 2, 0, 1, 2, 2, 1, 1, 1, 3, 2, 1, 0, 0, 1, 0, 1, 3, 0,
        1, 2,
    ],
    &[0, 3, 1, 1, 3, 2, 0, 2, 1, 2, 0, 3],
    &[
        2, 0, 2, 0, 0, 3, 0, 3, 3, 0, 3, 0, 3, 1, 0, 1, 0, 0, 1, 1, 1, 1, 0, 1, 2, 0, 2, 0, 0, 2,
        0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3, 0, 3, 3,
    ],
];

/// Epoch 1: `de` (ids 1001…1032), `nl` (ids 2001…2012), global (de's, then nl's).
const GOLDEN_1: [&[usize]; 3] = [
    &[
        1, 1, 2, 3, 1, 1, 3, 2, 3, 1, 1, 0, 2, 0, 1, 0, 0, 1, 3, 0, 3, 0, 2, 2, 3, 3, 0, 0, 2, 1,
        1, 3,
    ],
    &[1, 0, 0, 3, 3, 3, 1, 0, 2, 2, 1, 2],
    &[
        1, 3, 2, 0, 1, 3, 1, 0, 3, 1, 2, 1, 1, 1, 3, 2, 3, 3, 0, 1, 2, 2, 2, 3, 0, 3, 0, 1, 1, 2,
        1, 0, 1, 3, 3, 3, 3, 1, 1, 3, 3, 3, 1, 1,
    ],
];

/// Epoch 500000: `de` (ids 1001…1032), `nl` (ids 2001…2012), global (de's, then nl's).
const GOLDEN_500000: [&[usize]; 3] = [
    &[
        0, 1, 0, 1, 2, 0, 1, 0, 2, 1, 3, 1, 1, 2, 1, 2, 0, 3, 2, 1, 3, 1, 1, 3, 3, 1, 3, 1, 2, 0,
        1, 1,
    ],
    &[1, 3, 0, 2, 2, 3, 1, 3, 0, 0, 2, 1],
    &[
        1, 3, 0, 1, 3, 0, 0, 2, 2, 3, 2, 1, 3, 0, 1, 0, 3, 1, 2, 1, 1, 3, 1, 3, 1, 2, 2, 1, 0, 3,
        1, 1, 0, 3, 1, 1, 1, 3, 0, 3, 3, 0, 0, 0,
    ],
];
