//! Geo-targeting and EDNS Client Subnet (DESIGN §3–§4, RFC 7871): a public ECS address
//! picks the client's country zone for geo-targeted names (apex, numbered, vendor), falling
//! back to its continent and then global; the echoed option carries the query's family,
//! source prefix and address, and a scope equal to the width of the GeoIP network that
//! decided (0 when the answer does not depend on location, or when the ECS address is not
//! public and the packet source decides); no ECS in, no ECS out; no EDNS in, no OPT out;
//! malformed ECS options get FORMERR.
//!
//! The GeoIP fixture is MaxMind's GeoIP2-Country-Test.mmdb (networks listed in the
//! harness); the harness queries from 127.0.0.1, which is not public.

use std::collections::BTreeSet;
use std::net::IpAddr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::harness::*;

/// Two IPv4 servers in each of uk (one listed as "gb"), se, us and jp; IPv6 servers in uk
/// and jp only.
fn feed() -> Vec<S> {
    vec![
        s(1, "192.0.2.1", 1000, "gb"),
        s(2, "192.0.2.2", 1000, "uk"),
        s(3, "192.0.2.11", 1000, "se"),
        s(4, "192.0.2.12", 1000, "se"),
        s(5, "198.51.100.1", 1000, "us"),
        s(6, "198.51.100.2", 1000, "us"),
        s(7, "203.0.113.1", 1000, "jp"),
        s(8, "203.0.113.2", 1000, "jp"),
        s(9, "2001:db8::1", 1000, "uk"),
        s(10, "2001:db8::2", 1000, "jp"),
    ]
}

fn set(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|ip| ip.parse().expect("ip")).collect()
}

const UK: &[&str] = &["192.0.2.1", "192.0.2.2"];
const SE: &[&str] = &["192.0.2.11", "192.0.2.12"];
const US: &[&str] = &["198.51.100.1", "198.51.100.2"];
const JP: &[&str] = &["203.0.113.1", "203.0.113.2"];
const EUROPE: &[&str] = &["192.0.2.1", "192.0.2.2", "192.0.2.11", "192.0.2.12"];
const GLOBAL: &[&str] = &[
    "192.0.2.1",
    "192.0.2.2",
    "192.0.2.11",
    "192.0.2.12",
    "198.51.100.1",
    "198.51.100.2",
    "203.0.113.1",
    "203.0.113.2",
];

/// Checks a NOERROR authoritative pool answer of at most 4 distinct records and returns
/// its addresses.
fn pool_answer(m: &Message) -> BTreeSet<IpAddr> {
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    let got: BTreeSet<IpAddr> = addresses(m).into_iter().collect();
    assert!(!got.is_empty() && got.len() <= 4, "{m:?}");
    assert_eq!(got.len(), m.answers.len(), "duplicates: {m:?}");
    got
}

/// Queries `name` with ECS `addr`/`source` `n` times; checks that every answer echoes the
/// subnet with `scope`; returns every address seen.
async fn observed(
    server: &TestServer,
    name: &str,
    qtype: RecordType,
    (addr, source): (&str, u8),
    scope: u8,
    n: usize,
) -> BTreeSet<IpAddr> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let m = server
            .udp(&with_ecs(query(name, qtype), addr, source))
            .await;
        assert_eq!(
            echoed_ecs(&m),
            Some((addr.parse().unwrap(), source, scope)),
            "{name} {qtype} from {addr}/{source}"
        );
        seen.extend(pool_answer(&m));
    }
    seen
}

/// Geo-targeted names: apex, numbered and vendor names.
const GEO_NAMES: &[&str] = &["@", "0", "1", "2", "3", "debian", "1.debian"];

#[tokio::test]
async fn a_public_ecs_address_gets_its_countrys_servers_at_every_geo_targeted_name() {
    let server = TestServer::start(&feed_json(&feed())).await;
    // (ECS, servers, scope = width of the fixture's network for that address)
    let cases: [((&str, u8), &[&str], u8); 7] = [
        (("81.2.69.142", 32), UK, 31),
        (("81.2.69.160", 27), UK, 27),
        (("89.160.20.112", 28), SE, 28),
        (("89.160.20.128", 25), SE, 25),
        (("2001:218::", 48), JP, 32),
        (("216.160.83.56", 29), US, 29),
        (("50.114.0.0", 22), US, 22),
    ];
    for (ecs, servers, scope) in cases {
        for name in GEO_NAMES {
            // Every zone here has 2 servers: each answer carries both.
            let got = observed(&server, name, RecordType::A, ecs, scope, 5).await;
            assert_eq!(got, set(servers), "{name} from {ecs:?}");
        }
    }
    server.stop().await;
}

/// Issue 12 item 4: an IPv4-mapped subnet in family 2 got the IPv4 width (18) as its scope.
/// The scope counts bits of the option's own family: the IPv4 width plus 96.
#[tokio::test]
async fn an_ipv4_mapped_subnet_is_placed_with_a_scope_in_its_own_family() {
    let server = TestServer::start(&feed_json(&feed())).await;
    for ((addr, source), servers, scope) in [
        (("::ffff:81.2.69.142", 128), UK, 31 + 96),
        (("::ffff:81.2.69.160", 123), UK, 27 + 96),
        (("::ffff:89.160.20.112", 124), SE, 28 + 96),
    ] {
        let got = observed(&server, "@", RecordType::A, (addr, source), scope, 5).await;
        assert_eq!(got, set(servers), "{addr}/{source}");
    }
    server.stop().await;
}

#[tokio::test]
async fn geo_targeting_applies_to_aaaa_and_falls_back_per_family() {
    let server = TestServer::start(&feed_json(&feed())).await;
    // uk has an IPv6 server.
    let got = observed(&server, "2", RecordType::AAAA, ("81.2.69.142", 32), 31, 5).await;
    assert_eq!(got, set(&["2001:db8::1"]));
    // se has none: europe's (uk's) IPv6 server, not jp's.
    let got = observed(&server, "2", RecordType::AAAA, ("89.160.20.112", 28), 28, 5).await;
    assert_eq!(got, set(&["2001:db8::1"]));
    let got = observed(
        &server,
        "2.debian",
        RecordType::AAAA,
        ("2001:218::", 32),
        32,
        5,
    )
    .await;
    assert_eq!(got, set(&["2001:db8::2"]));
    server.stop().await;
}

#[tokio::test]
async fn a_client_country_without_servers_gets_its_continent() {
    let server = TestServer::start(&feed_json(&feed())).await;
    // Norway has no server: europe (uk and se), 4 servers, all in every answer.
    for name in GEO_NAMES {
        let got = observed(&server, name, RecordType::A, ("2a02:cf40::", 32), 29, 5).await;
        assert_eq!(got, set(EUROPE), "{name} from NO");
    }
    // Bhutan, China and the Philippines: asia, i.e. jp.
    for (ecs, scope) in [
        (("67.43.156.0", 24), 24),
        (("175.16.199.0", 24), 24),
        (("202.196.224.0", 20), 20),
    ] {
        for name in GEO_NAMES {
            let got = observed(&server, name, RecordType::A, ecs, scope, 5).await;
            assert_eq!(got, set(JP), "{name} from {ecs:?}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_client_continent_without_servers_gets_the_global_zone() {
    let server = TestServer::start(&feed_json(&feed())).await;
    // Libya, africa: no server. 8 equal servers, each in an answer with probability 1/2:
    // 300 queries miss one with probability < 1e-89.
    for name in ["@", "debian"] {
        let got = observed(&server, name, RecordType::A, ("2a02:e700::", 32), 29, 300).await;
        assert_eq!(got, set(GLOBAL), "{name} from LY");
    }
    server.stop().await;
}

#[tokio::test]
async fn an_address_not_in_the_database_gets_the_global_zone_with_the_empty_networks_scope() {
    let server = TestServer::start(&feed_json(&feed())).await;
    // 1.0.0.0/8 holds no record in the fixture.
    let got = observed(&server, "@", RecordType::A, ("1.1.1.0", 24), 8, 300).await;
    assert_eq!(got, set(GLOBAL));
    // 81.2.69.0/25 holds no record either (the GB networks are higher in the /24): a /24
    // source is answered from global, with the narrower scope 25 (RFC 7871 §7.2.1 lets
    // the scope be longer than the source prefix).
    let got = observed(&server, "@", RecordType::A, ("81.2.69.0", 24), 25, 300).await;
    assert_eq!(got, set(GLOBAL));
    server.stop().await;
}

#[tokio::test]
async fn the_echoed_subnet_keeps_family_source_prefix_and_address() {
    let server = TestServer::start(&feed_json(&feed())).await;
    for (addr, source, scope) in [
        ("81.2.69.142", 32, 31),
        ("89.160.20.112", 28, 28),
        ("89.160.20.112", 32, 28),
        ("2001:218::", 48, 32),
        ("2001:218:1::", 48, 32),
        ("2a02:cf40::", 29, 29),
    ] {
        let m = server
            .udp(&with_ecs(query("@", RecordType::A), addr, source))
            .await;
        let (echoed, echoed_source, echoed_scope) = echoed_ecs(&m).expect("ECS echoed");
        let asked: IpAddr = addr.parse().unwrap();
        // The family is carried by the address type hickory decoded it into.
        assert_eq!(echoed.is_ipv4(), asked.is_ipv4(), "{addr}/{source}");
        assert_eq!(
            (echoed, echoed_source, echoed_scope),
            (asked, source, scope),
            "{addr}/{source}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn answers_that_do_not_depend_on_location_get_scope_zero() {
    let server = TestServer::start(&feed_json(&feed())).await;
    for (name, qtype) in [
        ("de", RecordType::A),
        ("uk", RecordType::A),
        ("2.uk", RecordType::AAAA),
        ("europe", RecordType::A),
        ("1.north-america", RecordType::A),
        ("@", RecordType::SOA),
        ("@", RecordType::NS),
        ("@", RecordType::TXT),
        ("@", RecordType::MX),
        ("ns1", RecordType::A),
        ("www", RecordType::A),
        ("_ntp._udp", RecordType::SRV),
        // NODATA (AAAA only under 2.) and NXDOMAIN do not depend on location either.
        ("@", RecordType::AAAA),
        ("0", RecordType::AAAA),
        ("nope", RecordType::A),
    ] {
        for (addr, source) in [("81.2.69.142", 32), ("2001:218::", 48)] {
            let m = server
                .udp(&with_ecs(query(name, qtype), addr, source))
                .await;
            assert_eq!(
                echoed_ecs(&m),
                Some((addr.parse().unwrap(), source, 0)),
                "{name} {qtype} from {addr}/{source}"
            );
        }
    }
    // The same client does get a located answer at a geo-targeted name.
    let m = server
        .udp(&with_ecs(query("@", RecordType::A), "81.2.69.142", 32))
        .await;
    assert_eq!(echoed_ecs(&m).map(|e| e.2), Some(31));
    server.stop().await;
}

#[tokio::test]
async fn source_prefix_zero_gets_the_packet_sources_answer_and_scope_zero() {
    let server = TestServer::start(&feed_json(&feed())).await;
    for (addr, name, qtype, expected) in [
        ("0.0.0.0", "@", RecordType::A, GLOBAL),
        ("::", "@", RecordType::A, GLOBAL),
        (
            "0.0.0.0",
            "2",
            RecordType::AAAA,
            &["2001:db8::1", "2001:db8::2"][..],
        ),
    ] {
        let got = observed(&server, name, qtype, (addr, 0), 0, 300).await;
        assert_eq!(got, set(expected), "{addr}/0");
    }
    server.stop().await;
}

#[tokio::test]
async fn non_public_ecs_addresses_fall_back_to_the_packet_source_with_their_source_prefix_as_scope()
{
    let server = TestServer::start(&feed_json(&feed())).await;
    // The packet source is 127.0.0.1: global.
    for ecs in [
        ("10.0.0.0", 8),
        ("127.0.0.1", 32),
        ("192.0.2.0", 24),
        ("192.168.1.0", 24),
        ("100.64.0.0", 10),
        ("169.254.0.0", 16),
        ("2001:db8::", 32),
        ("fd00::", 8),
        ("::1", 128),
    ] {
        // Issue 10 item 1: scope 0 would let a resolver's cache hand this answer, placed
        // by the resolver's address, to clients in other countries. The scope is the
        // source prefix: the answer holds for this subnet only.
        let got = observed(&server, "@", RecordType::A, ecs, ecs.1, 300).await;
        assert_eq!(got, set(GLOBAL), "{ecs:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_query_without_ecs_gets_no_ecs_option() {
    let server = TestServer::start(&feed_json(&feed())).await;
    for (name, qtype) in [
        ("@", RecordType::A),
        ("de", RecordType::A),
        ("@", RecordType::SOA),
    ] {
        let m = server.udp(&with_edns(query(name, qtype), 1232)).await;
        assert!(m.edns.is_some(), "OPT echoed for {name}");
        assert_eq!(echoed_ecs(&m), None, "{name} {qtype}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_query_without_edns_gets_no_opt_record() {
    let server = TestServer::start(&feed_json(&feed())).await;
    for (name, qtype) in [
        ("@", RecordType::A),
        ("nope", RecordType::A),
        ("@", RecordType::SOA),
    ] {
        let m = server.udp(&query(name, qtype)).await;
        assert!(m.edns.is_none(), "{name} {qtype}: {:?}", m.edns);
        assert!(m.additionals.is_empty(), "{name} {qtype}");
    }
    server.stop().await;
}

#[tokio::test]
async fn geo_targeting_works_over_tcp() {
    let server = TestServer::start(&feed_json(&feed())).await;
    for _ in 0..5 {
        let m = server
            .tcp(&with_ecs(query("0", RecordType::A), "89.160.20.112", 28))
            .await;
        assert_eq!(pool_answer(&m), set(SE));
        assert_eq!(
            echoed_ecs(&m),
            Some(("89.160.20.112".parse().unwrap(), 28, 28))
        );
    }
    server.stop().await;
}

/// A query for pool.test A (id 0x4242) with an OPT carrying `options`.
fn raw_query(options: &[u8]) -> Vec<u8> {
    let mut q = vec![0x42, 0x42, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x04pool\x04test\x00");
    q.extend([0, 1, 0, 1]); // A IN
    q.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]); // root OPT, payload 1232, version 0
    q.extend((options.len() as u16).to_be_bytes());
    q.extend_from_slice(options);
    q
}

/// An ECS option with the given fields and address bytes, as written.
fn ecs_option(family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
    let mut o = vec![0, 8];
    o.extend(((4 + addr.len()) as u16).to_be_bytes());
    o.extend(family.to_be_bytes());
    o.extend([source, scope]);
    o.extend_from_slice(addr);
    o
}

#[tokio::test]
async fn malformed_ecs_options_get_formerr() {
    let server = TestServer::start(&feed_json(&feed())).await;
    // The packet builder is sound: a well-formed option is answered and located.
    let good = server
        .raw_udp(&raw_query(&ecs_option(1, 32, 0, &[81, 2, 69, 142])))
        .await
        .expect("an answer");
    let m = Message::from_vec(&good).expect("parses");
    assert_eq!(pool_answer(&m), set(UK));
    assert_eq!(echoed_ecs(&m).map(|e| e.2), Some(31));

    for (what, option) in [
        ("scope not 0", ecs_option(1, 32, 24, &[81, 2, 69, 142])),
        (
            "scope not 0 (IPv6)",
            ecs_option(2, 48, 32, &[0x20, 0x01, 0x02, 0x18, 0, 0]),
        ),
        (
            "too many address bytes",
            ecs_option(1, 24, 0, &[81, 2, 69, 0]),
        ),
        ("too many address bytes (/0)", ecs_option(1, 0, 0, &[0])),
        ("too few address bytes", ecs_option(1, 32, 0, &[81, 2, 69])),
        (
            "bits set past the source prefix",
            ecs_option(1, 28, 0, &[89, 160, 20, 113]),
        ),
        (
            "source prefix over 32",
            ecs_option(1, 33, 0, &[81, 2, 69, 142, 0]),
        ),
        ("source prefix over 128", ecs_option(2, 129, 0, &[0; 17])),
        ("unknown family", ecs_option(3, 8, 0, &[81])),
        ("option shorter than its header", vec![0, 8, 0, 3, 0, 1, 24]),
    ] {
        let bytes = server
            .raw_udp(&raw_query(&option))
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(&bytes[..2], &[0x42, 0x42], "{what}: id");
        let m = Message::from_vec(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "{what}");
        assert!(m.answers.is_empty(), "{what}");
    }
    server.stop().await;
}
