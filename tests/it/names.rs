//! Names and answers (DESIGN §3): which servers each kind of name draws from (apex,
//! numbered, country, continent, vendor, alias) and the fallback chains; the shape of pool
//! answers (count, TTL, AA, qname case); the numbered split (disjoint, covering, balanced,
//! rotating); where AAAA is served; which servers are eligible; the static records; and the
//! negative answers (NXDOMAIN, NODATA, REFUSED).
//!
//! The harness queries from 127.0.0.1, which GeoIP cannot place, so geo-targeted names
//! (apex, `0`…`3`, vendors) draw from the global zone here; geo-targeting is in `geo`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use pooldns::server::ServerOptions;
use pooldns::table::{Family, ZoneId};

use crate::harness::*;

/// Queries per sampled name: enough that every member of a set shows up. Where this is
/// used, the lightest server of the set has inclusion probability ≥ 0.13, so it is missed
/// by 300 queries with probability < 1e-18.
const SAMPLES: usize = 300;

/// The feed SOA serial (see `feed_json`).
const SERIAL: u32 = 2026112201;

/// A feed address built at run time (the harness takes `&'static str`).
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// The addresses of some feed entries.
fn ips(servers: &[&S]) -> BTreeSet<IpAddr> {
    servers.iter().map(|s| s.ip.parse().expect("ip")).collect()
}

/// Checks one pool answer (NOERROR, AA, 1–4 distinct records of the asked family, TTL
/// 150, owned by the qname) and returns its addresses.
fn pool_answer(m: &Message, qtype: RecordType) -> BTreeSet<IpAddr> {
    let q = &m.queries[0];
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "{}",
        q.name
    );
    assert!(m.metadata.authoritative, "AA clear for {}", q.name);
    assert!(!m.answers.is_empty(), "no records for {} {qtype}", q.name);
    assert!(
        m.answers.len() <= 4,
        "{} records for {}",
        m.answers.len(),
        q.name
    );
    for r in &m.answers {
        assert_eq!(r.record_type(), qtype, "{}", q.name);
        assert_eq!(r.ttl, 150, "{}", q.name);
        assert!(r.name.eq_case(&q.name), "owner {} for {}", r.name, q.name);
    }
    let got: BTreeSet<IpAddr> = addresses(m).into_iter().collect();
    assert_eq!(
        got.len(),
        m.answers.len(),
        "duplicates for {}: {m:?}",
        q.name
    );
    got
}

/// Queries `name` `n` times over UDP and returns every address seen.
async fn observed(
    server: &TestServer,
    name: &str,
    qtype: RecordType,
    n: usize,
) -> BTreeSet<IpAddr> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        seen.extend(pool_answer(&server.udp(&query(name, qtype)).await, qtype));
    }
    seen
}

/// Asserts a negative answer: `rcode`, AA, no answers, one SOA at the origin in authority
/// with the negative TTL 600 and the feed serial.
fn assert_negative(m: &Message, rcode: ResponseCode) {
    let q = &m.queries[0];
    let what = format!("{} {}", q.name, q.query_type);
    assert_eq!(m.metadata.response_code, rcode, "{what}");
    assert!(m.metadata.authoritative, "AA clear for {what}");
    assert!(m.answers.is_empty(), "answers for {what}: {:?}", m.answers);
    assert_eq!(m.authorities.len(), 1, "authority for {what}");
    let soa = &m.authorities[0];
    assert_eq!(soa.name, Name::from_ascii("pool.test.").unwrap(), "{what}");
    assert_eq!(soa.ttl, 600, "negative TTL for {what}");
    match &soa.data {
        RData::SOA(s) => assert_eq!(s.serial, SERIAL, "{what}"),
        other => panic!("{what}: authority holds {other:?}, not the SOA"),
    }
}

/// Asserts NOERROR/NODATA for `name` `qtype`.
async fn assert_nodata(server: &TestServer, name: &str, qtype: RecordType) {
    assert_negative(
        &server.udp(&query(name, qtype)).await,
        ResponseCode::NoError,
    );
}

/// Asserts REFUSED with AA clear and empty sections.
fn assert_refused(m: &Message) {
    let what = format!("{:?}", m.queries);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{what}");
    assert!(!m.metadata.authoritative, "AA set on REFUSED {what}");
    assert!(m.answers.is_empty() && m.authorities.is_empty(), "{what}");
}

/// The member addresses of each numbered subset of a zone in the live table, with the
/// epoch the split was made for.
fn numbered_sets(
    server: &TestServer,
    zone: ZoneId,
    family: Family,
) -> (u64, Vec<BTreeSet<IpAddr>>) {
    let table = server.table.load();
    let sets = table
        .zone(zone, family)
        .numbered
        .iter()
        .map(|s| {
            s.members()
                .iter()
                .map(|&i| table.members[i as usize].ip)
                .collect()
        })
        .collect();
    (table.epoch, sets)
}

/// Samples `0`…`3` (under `base`, e.g. "" or ".de") and reads the live split of `zone`, both
/// within one epoch; returns (seen, split). Retries when the split rotated meanwhile.
async fn numbered_observed(
    server: &TestServer,
    base: &str,
    zone: ZoneId,
    n: usize,
) -> (Vec<BTreeSet<IpAddr>>, Vec<BTreeSet<IpAddr>>) {
    for _ in 0..20 {
        let (epoch, split) = numbered_sets(server, zone, Family::V4);
        let mut seen = Vec::new();
        for number in 0..4 {
            seen.push(observed(server, &format!("{number}{base}"), RecordType::A, n).await);
        }
        if server.table.load().epoch == epoch {
            return (seen, split);
        }
    }
    panic!("the split rotated during every sampling round");
}

/// One server of each kind of zone; 7 IPv4 servers in all, too few to split, so every
/// numbered name carries its whole zone.
fn kinds_feed() -> Vec<S> {
    vec![
        s(1, "192.0.2.1", 1000, "de"),
        s(2, "192.0.2.2", 2000, "de"),
        s(3, "192.0.2.11", 1000, "fr"),
        s(4, "192.0.2.21", 1000, "gb"),
        s(5, "192.0.2.22", 1000, "uk"),
        s(6, "198.51.100.1", 1000, "us"),
        s(7, "203.0.113.1", 1000, "jp"),
        s(8, "2001:db8::1", 1000, "de"),
        s(9, "2001:db8::2", 1000, "us"),
    ]
}

#[tokio::test]
async fn apex_and_numbered_names_draw_from_the_global_zone_for_an_unlocatable_client() {
    let feed = kinds_feed();
    let server = TestServer::start(&feed_json(&feed)).await;
    let v4: Vec<&S> = feed.iter().filter(|s| !s.ip.contains(':')).collect();
    for name in ["@", "0", "1", "2", "3"] {
        assert_eq!(
            observed(&server, name, RecordType::A, SAMPLES).await,
            ips(&v4),
            "{name}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn country_names_draw_from_that_country() {
    let feed = kinds_feed();
    let server = TestServer::start(&feed_json(&feed)).await;
    let de = ips(&[&feed[0], &feed[1]]);
    for name in ["de", "0.de", "1.de", "2.de", "3.de"] {
        assert_eq!(
            observed(&server, name, RecordType::A, SAMPLES).await,
            de,
            "{name}"
        );
    }
    let us = ips(&[&feed[5]]);
    assert_eq!(observed(&server, "us", RecordType::A, 20).await, us);
    assert_eq!(observed(&server, "1.us", RecordType::A, 20).await, us);
    server.stop().await;
}

#[tokio::test]
async fn continent_names_draw_from_that_continent() {
    let feed = kinds_feed();
    let server = TestServer::start(&feed_json(&feed)).await;
    let europe = ips(&[&feed[0], &feed[1], &feed[2], &feed[3], &feed[4]]);
    for name in ["europe", "0.europe", "3.europe"] {
        assert_eq!(
            observed(&server, name, RecordType::A, SAMPLES).await,
            europe,
            "{name}"
        );
    }
    let north_america = ips(&[&feed[5]]);
    for name in ["north-america", "1.north-america"] {
        assert_eq!(
            observed(&server, name, RecordType::A, 20).await,
            north_america,
            "{name}"
        );
    }
    assert_eq!(
        observed(&server, "asia", RecordType::A, 20).await,
        ips(&[&feed[6]])
    );
    server.stop().await;
}

#[tokio::test]
async fn vendor_names_draw_like_the_apex() {
    let feed = kinds_feed();
    let server = TestServer::start(&feed_json(&feed)).await;
    let v4: Vec<&S> = feed.iter().filter(|s| !s.ip.contains(':')).collect();
    for name in ["debian", "0.debian", "1.debian", "3.debian"] {
        assert_eq!(
            observed(&server, name, RecordType::A, SAMPLES).await,
            ips(&v4),
            "{name}"
        );
    }
    let v6: Vec<&S> = feed.iter().filter(|s| s.ip.contains(':')).collect();
    assert_eq!(
        observed(&server, "2.debian", RecordType::AAAA, 50).await,
        ips(&v6)
    );
    server.stop().await;
}

#[tokio::test]
async fn alias_names_answer_like_their_target_and_aliased_feed_countries_join_it() {
    let feed = kinds_feed();
    let server = TestServer::start(&feed_json(&feed)).await;
    // Server 4 says "gb", server 5 "uk": both are in the uk zone.
    let uk = ips(&[&feed[3], &feed[4]]);
    for name in ["uk", "gb", "0.uk", "0.gb", "3.gb", "GB"] {
        assert_eq!(
            observed(&server, name, RecordType::A, 20).await,
            uk,
            "{name}"
        );
    }
    // No IPv6 server in uk: `2.gb` falls back exactly like `2.uk`, to europe.
    let europe_v6 = ips(&[&feed[7]]);
    for name in ["2.uk", "2.gb"] {
        assert_eq!(
            observed(&server, name, RecordType::AAAA, 20).await,
            europe_v6,
            "{name}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_country_without_servers_falls_back_to_its_continent_only() {
    let feed = [
        s(1, "192.0.2.1", 1000, "de"),
        s(2, "192.0.2.2", 1000, "de"),
        s(3, "198.51.100.1", 1000, "us"),
        s(4, "203.0.113.1", 1000, "jp"),
    ];
    let server = TestServer::start(&feed_json(&feed)).await;
    // Iceland has no server; europe has de's two, and only those are served.
    let europe = ips(&[&feed[0], &feed[1]]);
    for name in ["is", "0.is", "2.is"] {
        assert_eq!(
            observed(&server, name, RecordType::A, 50).await,
            europe,
            "{name}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_continent_without_servers_and_its_countries_fall_back_to_global() {
    let feed = [
        s(1, "192.0.2.1", 1000, "de"),
        s(2, "198.51.100.1", 1000, "us"),
        s(3, "203.0.113.1", 1000, "jp"),
    ];
    let server = TestServer::start(&feed_json(&feed)).await;
    let global = ips(&feed.iter().collect::<Vec<_>>());
    for name in ["africa", "1.africa", "oceania", "ly", "2.ly"] {
        assert_eq!(
            observed(&server, name, RecordType::A, 50).await,
            global,
            "{name}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn fallback_is_decided_per_address_family() {
    let feed = [
        s(1, "192.0.2.1", 1000, "de"),
        s(2, "192.0.2.2", 1000, "de"),
        s(3, "2001:db8::f1", 1000, "fr"),
        s(4, "198.51.100.1", 1000, "us"),
        s(5, "2001:db8::5", 1000, "us"),
        s(6, "2001:db8::6", 1000, "jp"),
    ];
    let server = TestServer::start(&feed_json(&feed)).await;
    // de has IPv4 servers only: AAAA at 2.de comes from europe (fr), not from us.
    assert_eq!(
        observed(&server, "2.de", RecordType::AAAA, 50).await,
        ips(&[&feed[2]])
    );
    assert_eq!(
        observed(&server, "2.de", RecordType::A, 50).await,
        ips(&[&feed[0], &feed[1]])
    );
    // fr has an IPv6 server only: A at fr comes from europe (de).
    assert_eq!(
        observed(&server, "fr", RecordType::A, 50).await,
        ips(&[&feed[0], &feed[1]])
    );
    // jp and asia have no IPv4 server: A at jp comes from global; AAAA stays in jp.
    assert_eq!(
        observed(&server, "jp", RecordType::A, 50).await,
        ips(&[&feed[0], &feed[1], &feed[3]])
    );
    assert_eq!(
        observed(&server, "2.jp", RecordType::AAAA, 50).await,
        ips(&[&feed[5]])
    );
    server.stop().await;
}

#[tokio::test]
async fn pool_answers_hold_four_distinct_records_with_ttl_150_and_aa() {
    let feed: Vec<S> = (0..10)
        .map(|i| {
            s(
                i,
                leak(format!("192.0.2.{}", i + 1)),
                1000 + 500 * i as u32,
                "de",
            )
        })
        .chain((0..6).map(|i| s(100 + i, leak(format!("2001:db8::{}", i + 1)), 1000, "de")))
        .collect();
    let server = TestServer::start(&feed_json(&feed)).await;
    for (name, qtype) in [
        ("@", RecordType::A),
        ("de", RecordType::A),
        ("europe", RecordType::A),
        ("debian", RecordType::A),
        ("2", RecordType::AAAA),
        ("2.de", RecordType::AAAA),
    ] {
        for _ in 0..200 {
            let m = server.udp(&query(name, qtype)).await;
            // pool_answer checks NOERROR, AA, TTL 150, owner and distinctness.
            assert_eq!(pool_answer(&m, qtype).len(), 4, "{name} {qtype}");
        }
    }
    // Also over TCP.
    let m = server.tcp(&query("de", RecordType::A)).await;
    assert_eq!(pool_answer(&m, RecordType::A).len(), 4);
    server.stop().await;
}

#[tokio::test]
async fn qname_case_is_preserved_in_the_question_and_answer_owners() {
    let server = TestServer::start(&feed_json(&kinds_feed())).await;
    for qname in ["0.PoOl.TeSt.", "DE.pool.test.", "EuRoPe.POOL.test."] {
        let m = server.udp(&query(qname, RecordType::A)).await;
        let asked = Name::from_ascii(qname).unwrap();
        assert!(
            m.queries[0].name.eq_case(&asked),
            "question {}",
            m.queries[0].name
        );
        // pool_answer checks every owner against the question's case.
        assert!(!pool_answer(&m, RecordType::A).is_empty());
        assert!(m.answers.iter().all(|r| r.name.to_ascii() == qname));
    }
    // Static records and negative answers too.
    let m = server.udp(&query("WwW.Pool.Test.", RecordType::A)).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].name.to_ascii(), "WwW.Pool.Test.");
    let m = server.udp(&query("NoPe.PoOl.TeSt.", RecordType::A)).await;
    assert_eq!(m.queries[0].name.to_ascii(), "NoPe.PoOl.TeSt.");
    assert_negative(&m, ResponseCode::NXDomain);
    server.stop().await;
}

/// 40 IPv4 servers in de with 40 different net speeds between 5000 and 24150 kbit/s
/// (604 115 in all). In a numbered subset (about 151 000) the lightest server is in an
/// answer with probability ≥ 0.13; in the whole zone, ≥ 0.033.
fn forty_varied() -> Vec<S> {
    (0..40u64)
        .map(|i| {
            let netspeed = 5000 + (i * 2_654_435_761 % 19_501) as u32;
            s(i, leak(format!("192.0.2.{}", i + 1)), netspeed, "de")
        })
        .collect()
}

#[tokio::test]
async fn numbered_names_split_a_zone_of_eight_or_more_into_disjoint_sets_covering_it() {
    let feed = forty_varied();
    let server = TestServer::start(&feed_json(&feed)).await;
    let all = ips(&feed.iter().collect::<Vec<_>>());
    let de = server.table.load().country("de").expect("de is a country");
    for (base, zone) in [("", ZoneId::Global), (".de", ZoneId::Country(de))] {
        let (seen, split) = numbered_observed(&server, base, zone, SAMPLES).await;
        assert_eq!(
            seen, split,
            "sets under 0{base}…3{base} are the table's split"
        );
        for (i, a) in seen.iter().enumerate() {
            assert!(!a.is_empty(), "{i}{base} is empty");
            for (j, b) in seen.iter().enumerate().skip(i + 1) {
                assert!(
                    a.is_disjoint(b),
                    "{i}{base} and {j}{base} share {:?}",
                    a & b
                );
            }
        }
        let union: BTreeSet<IpAddr> = seen.iter().flatten().copied().collect();
        assert_eq!(union, all, "the subsets under {base} cover the zone");
        // Unnumbered names carry the whole zone (1200 queries miss a server with
        // inclusion probability 0.033 with probability < 1e-17).
        let name = if base.is_empty() { "@" } else { "de" };
        assert_eq!(observed(&server, name, RecordType::A, 1200).await, all);
    }
    server.stop().await;
}

#[tokio::test]
async fn numbered_subsets_have_net_speed_totals_within_ten_percent() {
    let feed = forty_varied();
    let server = TestServer::start(&feed_json(&feed)).await;
    let speed_of = |ip: &IpAddr| {
        feed.iter()
            .find(|s| s.ip.parse::<IpAddr>().unwrap() == *ip)
            .expect("a feed server")
            .netspeed as u64
    };
    let (_, sets) = numbered_sets(&server, ZoneId::Global, Family::V4);
    assert_eq!(sets.len(), 4);
    let totals: Vec<u64> = sets.iter().map(|s| s.iter().map(speed_of).sum()).collect();
    let total: u64 = feed.iter().map(|s| s.netspeed as u64).sum();
    assert_eq!(
        totals.iter().sum::<u64>(),
        total,
        "every server in exactly one subset"
    );
    let (lo, hi) = (*totals.iter().min().unwrap(), *totals.iter().max().unwrap());
    assert!(
        hi as f64 <= lo as f64 * 1.10,
        "subset net speeds {totals:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_zone_of_seven_serves_every_server_under_every_number_and_eight_split() {
    let seven: Vec<S> = (0..7)
        .map(|i| s(i, leak(format!("192.0.2.{}", i + 1)), 1000, "de"))
        .collect();
    let server = TestServer::start(&feed_json(&seven)).await;
    let all = ips(&seven.iter().collect::<Vec<_>>());
    let (seen, split) = numbered_observed(&server, "", ZoneId::Global, 200).await;
    assert!(split.is_empty(), "a zone of 7 is not split: {split:?}");
    for (n, set) in seen.iter().enumerate() {
        assert_eq!(set, &all, "{n} carries all of a zone of 7");
    }
    server.stop().await;

    let eight: Vec<S> = (0..8)
        .map(|i| s(i, leak(format!("192.0.2.{}", i + 1)), 1000, "de"))
        .collect();
    let server = TestServer::start(&feed_json(&eight)).await;
    let (seen, split) = numbered_observed(&server, "", ZoneId::Global, 200).await;
    assert_eq!(seen, split);
    // Equal speeds: two servers per subset, each in every answer.
    for (n, set) in seen.iter().enumerate() {
        assert_eq!(set.len(), 2, "{n}: {set:?}");
    }
    let union: BTreeSet<IpAddr> = seen.iter().flatten().copied().collect();
    assert_eq!(union, ips(&eight.iter().collect::<Vec<_>>()));
    server.stop().await;
}

#[tokio::test]
async fn the_numbered_split_changes_with_the_rotation_epoch() {
    let config = format!("{CONFIG}\n[answers]\nrotation = 1\n");
    let feed: Vec<S> = (0..40)
        .map(|i| s(i, leak(format!("192.0.2.{}", i + 1)), 1000, "de"))
        .collect();
    let server = TestServer::start_with(&config, &feed_json(&feed), ServerOptions::default()).await;
    // Each of the 10 servers under `0.` is in an answer with probability 0.4: 200 queries
    // miss one with probability < 1e-43.
    let sample = async || {
        for _ in 0..50 {
            let (epoch, expected) = numbered_sets(&server, ZoneId::Global, Family::V4);
            let seen = observed(&server, "0", RecordType::A, 200).await;
            if server.table.load().epoch == epoch {
                assert_eq!(seen, expected[0], "`0.` serves the split of epoch {epoch}");
                return (epoch, seen);
            }
        }
        panic!("every sampling round crossed an epoch boundary");
    };
    let (first_epoch, first) = sample().await;
    let rotated = eventually(Duration::from_secs(5), async || {
        server.table.load().epoch > first_epoch
    })
    .await;
    assert!(
        rotated,
        "no new epoch 5 s after {first_epoch} with rotation = 1"
    );
    let (second_epoch, second) = sample().await;
    assert!(second_epoch > first_epoch);
    assert_eq!(first.len(), 10);
    assert_eq!(second.len(), 10);
    assert_ne!(
        first, second,
        "epochs {first_epoch} and {second_epoch} split alike"
    );
    server.stop().await;
}

#[tokio::test]
async fn aaaa_is_served_only_under_2_by_default() {
    let feed = kinds_feed();
    let server = TestServer::start(&feed_json(&feed)).await;
    let (de6, us6) = (ips(&[&feed[7]]), ips(&[&feed[8]]));
    let all6 = &de6 | &us6;
    for (name, expected) in [
        ("2", &all6),
        ("2.de", &de6),
        ("2.europe", &de6),
        ("2.us", &us6),
        ("2.debian", &all6),
    ] {
        assert_eq!(
            &observed(&server, name, RecordType::AAAA, 20).await,
            expected,
            "{name}"
        );
    }
    for name in [
        "@", "0", "1", "3", "de", "1.de", "0.de", "europe", "3.europe", "debian", "0.debian", "uk",
        "gb", "0.gb",
    ] {
        assert_nodata(&server, name, RecordType::AAAA).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn aaaa_is_served_at_every_pool_name_when_configured_everywhere() {
    let config = format!("{CONFIG}\n[answers]\naaaa = \"everywhere\"\n");
    // 8 IPv6 servers: under "everywhere" they are split like IPv4 ones.
    let feed: Vec<S> = (0..8)
        .map(|i| s(i, leak(format!("2001:db8::{}", i + 1)), 1000, "de"))
        .chain([s(100, "192.0.2.1", 1000, "de")])
        .collect();
    let server = TestServer::start_with(&config, &feed_json(&feed), ServerOptions::default()).await;
    let v6 = ips(&feed[..8].iter().collect::<Vec<_>>());
    // (uk has no server, so `gb` is served from europe.)
    for name in ["@", "de", "europe", "debian", "gb"] {
        assert_eq!(
            observed(&server, name, RecordType::AAAA, SAMPLES).await,
            v6,
            "{name}"
        );
    }
    for base in ["", ".de", ".europe", ".debian"] {
        let mut parts = Vec::new();
        for n in 0..4 {
            let name = format!("{n}{base}");
            let got = observed(&server, &name, RecordType::AAAA, 100).await;
            assert_eq!(got.len(), 2, "{name}: {got:?}");
            parts.push(got);
        }
        for (i, a) in parts.iter().enumerate() {
            for b in &parts[i + 1..] {
                assert!(a.is_disjoint(b), "{base}: {parts:?}");
            }
        }
        let union: BTreeSet<IpAddr> = parts.iter().flatten().copied().collect();
        assert_eq!(union, v6, "{base}");
    }
    server.stop().await;
}

#[tokio::test]
async fn aaaa_under_2_serves_the_whole_ipv6_zone_not_a_quarter() {
    let feed: Vec<S> = (0..12)
        .map(|i| s(i, leak(format!("2001:db8::{}", i + 1)), 1000, "de"))
        .chain((0..12).map(|i| s(100 + i, leak(format!("192.0.2.{}", i + 1)), 1000, "de")))
        .collect();
    let server = TestServer::start(&feed_json(&feed)).await;
    let v6 = ips(&feed[..12].iter().collect::<Vec<_>>());
    for name in ["2", "2.de", "2.europe"] {
        assert_eq!(
            observed(&server, name, RecordType::AAAA, SAMPLES).await,
            v6,
            "{name}"
        );
    }
    // The IPv4 zone of the same size is split: `2.` carries a quarter of it.
    assert_eq!(
        observed(&server, "2", RecordType::A, SAMPLES).await.len(),
        3
    );
    server.stop().await;
}

#[tokio::test]
async fn servers_below_score_10_or_with_netspeed_0_are_never_served() {
    let feed = vec![
        s(1, "192.0.2.1", 1000, "de"),
        s(2, "192.0.2.2", 1000, "de"),
        s(3, "192.0.2.3", 1000, "de"),
        s(4, "192.0.2.4", 1000, "de"),
        S {
            score: 10.0,
            ..s(5, "192.0.2.5", 1000, "de")
        },
        s(6, "192.0.2.6", 1000, "de"),
        S {
            score: 9.99,
            ..s(10, "192.0.2.10", 1_000_000, "de")
        },
        S {
            score: -50.0,
            ..s(11, "192.0.2.11", 1_000_000, "de")
        },
        s(12, "192.0.2.12", 0, "de"),
        // fr has only ineligible servers, so fr is served from europe.
        S {
            score: 5.0,
            ..s(13, "192.0.2.13", 1000, "fr")
        },
        s(14, "192.0.2.14", 0, "fr"),
        s(20, "2001:db8::20", 1000, "de"),
        s(21, "2001:db8::21", 0, "de"),
        S {
            score: 9.5,
            ..s(22, "2001:db8::22", 1000, "de")
        },
    ];
    let server = TestServer::start(&feed_json(&feed)).await;
    let eligible = ips(&feed[..6].iter().collect::<Vec<_>>());
    for name in ["@", "0", "de", "europe", "fr"] {
        assert_eq!(
            observed(&server, name, RecordType::A, SAMPLES).await,
            eligible,
            "{name}"
        );
    }
    assert_eq!(
        observed(&server, "2", RecordType::AAAA, 50).await,
        ips(&[&feed[11]])
    );
    server.stop().await;
}

#[tokio::test]
async fn min_score_from_the_config_is_respected() {
    let config = format!("{CONFIG}\n[answers]\nmin_score = 15\n");
    let feed = vec![
        S {
            score: 15.0,
            ..s(1, "192.0.2.1", 1000, "de")
        },
        S {
            score: 19.0,
            ..s(2, "192.0.2.2", 1000, "de")
        },
        S {
            score: 14.9,
            ..s(3, "192.0.2.3", 1000, "de")
        },
        S {
            score: 12.0,
            ..s(4, "192.0.2.4", 1000, "de")
        },
    ];
    let server = TestServer::start_with(&config, &feed_json(&feed), ServerOptions::default()).await;
    for name in ["@", "de"] {
        assert_eq!(
            observed(&server, name, RecordType::A, 50).await,
            ips(&[&feed[0], &feed[1]]),
            "{name}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn apex_serves_soa_and_ns_with_the_feed_serial() {
    let server = TestServer::start(&feed_json(&kinds_feed())).await;
    let m = server.udp(&query("@", RecordType::SOA)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].ttl, 3600);
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!("not an SOA: {:?}", m.answers[0]);
    };
    assert_eq!(soa.serial, SERIAL);
    assert_eq!(soa.mname, Name::from_ascii("ns1.pool.test.").unwrap());
    assert_eq!(
        soa.rname,
        Name::from_ascii("hostmaster.pool.test.").unwrap()
    );
    assert_eq!(soa.minimum, 600);

    let m = server.udp(&query("@", RecordType::NS)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    let ns: BTreeSet<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::NS(ns) => {
                assert_eq!(r.ttl, 86400);
                ns.0.to_ascii()
            }
            other => panic!("not an NS: {other:?}"),
        })
        .collect();
    assert_eq!(
        ns,
        BTreeSet::from(["ns1.pool.test.".to_owned(), "ns2.example.net.".to_owned()])
    );
    // SOA and NS live at the apex only.
    assert_nodata(&server, "de", RecordType::SOA).await;
    assert_nodata(&server, "0", RecordType::NS).await;
    server.stop().await;
}

#[tokio::test]
async fn apex_serves_txt_and_mx_and_its_a_records_come_from_the_pool() {
    let feed = kinds_feed();
    let server = TestServer::start(&feed_json(&feed)).await;
    let m = server.udp(&query("@", RecordType::TXT)).await;
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers.len(), 1);
    let RData::TXT(txt) = &m.answers[0].data else {
        panic!("not a TXT: {:?}", m.answers[0]);
    };
    assert_eq!(&*txt.txt_data, &[Box::from(&b"hello"[..])]);
    let m = server.udp(&query("@", RecordType::MX)).await;
    assert_eq!(m.answers.len(), 1);
    let RData::MX(mx) = &m.answers[0].data else {
        panic!("not an MX: {:?}", m.answers[0]);
    };
    assert_eq!((mx.preference, mx.exchange.is_root()), (0, true));
    let v4: Vec<&S> = feed.iter().filter(|s| !s.ip.contains(':')).collect();
    assert_eq!(
        observed(&server, "@", RecordType::A, SAMPLES).await,
        ips(&v4)
    );
    server.stop().await;
}

#[tokio::test]
async fn ns1_has_its_glue_address_only() {
    let server = TestServer::start(&feed_json(&kinds_feed())).await;
    let m = server.udp(&query("ns1", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(addresses(&m), ["192.0.2.53".parse::<IpAddr>().unwrap()]);
    assert_eq!(m.answers[0].ttl, 3600);
    assert_nodata(&server, "ns1", RecordType::AAAA).await;
    server.stop().await;
}

#[tokio::test]
async fn www_cname_answers_every_type() {
    let server = TestServer::start(&feed_json(&kinds_feed())).await;
    for qtype in [RecordType::A, RecordType::TXT, RecordType::AAAA] {
        let m = server.udp(&query("www", qtype)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{qtype}");
        assert!(m.metadata.authoritative, "{qtype}");
        assert_eq!(m.answers.len(), 1, "{qtype}");
        let RData::CNAME(target) = &m.answers[0].data else {
            panic!("{qtype}: not a CNAME: {:?}", m.answers[0]);
        };
        assert_eq!(target.0.to_ascii(), "www.example.net.", "{qtype}");
    }
    server.stop().await;
}

#[tokio::test]
async fn srv_at_ntp_udp_and_udp_is_an_empty_non_terminal() {
    let server = TestServer::start(&feed_json(&kinds_feed())).await;
    let m = server.udp(&query("_ntp._udp", RecordType::SRV)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers.len(), 1);
    let RData::SRV(srv) = &m.answers[0].data else {
        panic!("not an SRV: {:?}", m.answers[0]);
    };
    assert_eq!((srv.priority, srv.weight, srv.port), (0, 0, 123));
    assert_eq!(srv.target.to_ascii(), "pool.test.");
    assert_nodata(&server, "_ntp._udp", RecordType::A).await;
    // `_udp` exists because `_ntp._udp` does: NODATA, not NXDOMAIN.
    for qtype in [RecordType::SRV, RecordType::A, RecordType::TXT] {
        assert_nodata(&server, "_udp", qtype).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn names_that_do_not_exist_get_nxdomain_with_the_soa() {
    let server = TestServer::start(&feed_json(&kinds_feed())).await;
    for name in [
        "nope",
        "x.www",
        "a.0",
        "a.de",
        "x.ns1",
        "x._ntp._udp",
        "4",
        "10.de",
        "de.de",
        "xx",
        "debian.de",
    ] {
        for qtype in [RecordType::A, RecordType::AAAA, RecordType::TXT] {
            let m = server.udp(&query(name, qtype)).await;
            assert_negative(&m, ResponseCode::NXDomain);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_types_at_existing_names_get_nodata() {
    let server = TestServer::start(&feed_json(&kinds_feed())).await;
    for (name, qtype) in [
        ("@", RecordType::Unknown(65280)),
        ("@", RecordType::CAA),
        ("0", RecordType::CAA),
        ("de", RecordType::Unknown(65280)),
        ("europe", RecordType::TXT),
        ("ns1", RecordType::MX),
        ("_ntp._udp", RecordType::Unknown(65280)),
    ] {
        assert_nodata(&server, name, qtype).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn names_outside_the_zone_are_refused_without_aa() {
    let server = TestServer::start(&feed_json(&kinds_feed())).await;
    for name in [
        "example.com.",
        "test.",
        "xpool.test.",
        "pool.test.example.",
        ".",
    ] {
        for qtype in [RecordType::A, RecordType::SOA] {
            assert_refused(&server.udp(&query(name, qtype)).await);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn classes_other_than_in_are_refused_without_aa() {
    let server = TestServer::start(&feed_json(&kinds_feed())).await;
    for class in [DNSClass::CH, DNSClass::HS] {
        for (name, qtype) in [
            ("@", RecordType::A),
            ("@", RecordType::SOA),
            ("0", RecordType::A),
        ] {
            let mut q = query(name, qtype);
            q.queries[0].query_class = class;
            assert_refused(&server.udp(&q).await);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn zone_transfers_are_refused_over_tcp() {
    let server = TestServer::start(&feed_json(&kinds_feed())).await;
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        assert_refused(&server.tcp(&query("@", qtype)).await);
        assert_refused(&server.udp(&query("@", qtype)).await);
    }
    server.stop().await;
}
