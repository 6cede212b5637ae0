//! Property tests of the query path: for generated queries of every shape pooldns handles
//! (and for random and mutated bytes), the answer is well-formed, within its size limit,
//! echoes what it must, and agrees with an independent parser (hickory-proto).

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use pooldns::fuzzing;
use pooldns::metrics::Counters;
use pooldns::server::{Transport, respond};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

/// A query as raw bytes, with the parts the checks need to know.
#[derive(Debug, Clone)]
struct Shape {
    bytes: Vec<u8>,
    qname: Vec<u8>,
    edns: Option<u16>,
    ecs: Option<(u16, u8, Vec<u8>)>,
}

fn label() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"pool".to_vec()),
        Just(b"0".to_vec()),
        Just(b"2".to_vec()),
        Just(b"de".to_vec()),
        Just(b"europe".to_vec()),
        Just(b"debian".to_vec()),
        Just(b"www".to_vec()),
        Just(b"_country".to_vec()),
        proptest::collection::vec(prop_oneof![b'a'..=b'z', b'0'..=b'9', Just(b'-')], 1..20),
    ]
    .prop_flat_map(|l| {
        // Random case: 0x20 randomisation must survive.
        let n = l.len();
        (Just(l), proptest::collection::vec(any::<bool>(), n)).prop_map(|(l, up)| {
            l.iter()
                .zip(up)
                .map(|(&c, u)| if u { c.to_ascii_uppercase() } else { c })
                .collect()
        })
    })
}

fn qname() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(label(), 0..3),
        prop_oneof![Just(true), Just(true), Just(false)],
    )
        .prop_map(|(labels, in_zone)| {
            let mut wire = Vec::new();
            for l in labels {
                wire.push(l.len() as u8);
                wire.extend(l);
            }
            let suffix: &[u8] = if in_zone {
                b"\x04pOOl\x03ntp\x03org\x00"
            } else {
                b"\x07example\x03com\x00"
            };
            wire.extend_from_slice(suffix);
            wire
        })
}

fn shape() -> impl Strategy<Value = Shape> {
    let qtype = prop_oneof![
        Just(1u16),
        Just(28),
        Just(6),
        Just(2),
        Just(16),
        Just(15),
        Just(255),
        Just(33),
        Just(65280),
        Just(252)
    ];
    let qclass = prop_oneof![Just(1u16), Just(1), Just(1), Just(3), Just(4)];
    let ecs = prop_oneof![
        Just(None),
        (0u8..=32, any::<[u8; 4]>()).prop_map(|(p, a)| Some((1u16, p, a.to_vec()))),
        (0u8..=128, any::<[u8; 16]>()).prop_map(|(p, a)| Some((2u16, p, a.to_vec()))),
        Just(Some((1u16, 24, vec![81, 2, 69, 0]))),
    ];
    let edns = prop_oneof![
        Just(None),
        (0u16..=65535).prop_map(Some),
        Just(Some(1232)),
        Just(Some(512))
    ];
    (
        any::<u16>(),
        any::<bool>(),
        qname(),
        qtype,
        qclass,
        edns,
        ecs,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(id, rd, qname, qtype, qclass, edns, ecs, dnssec_ok, nsid)| {
                let mut b = id.to_be_bytes().to_vec();
                b.extend([
                    if rd { 1 } else { 0 },
                    0,
                    0,
                    1,
                    0,
                    0,
                    0,
                    0,
                    0,
                    u8::from(edns.is_some()),
                ]);
                b.extend_from_slice(&qname);
                b.extend(qtype.to_be_bytes());
                b.extend(qclass.to_be_bytes());
                let mut ecs_sent = None;
                if let Some(payload) = edns {
                    let mut options = Vec::new();
                    if let Some((family, source, addr)) = ecs {
                        // A valid option: ceil(source/8) bytes, bits past the prefix cleared.
                        let n = usize::from(source).div_ceil(8);
                        let mut a = addr[..n].to_vec();
                        if source % 8 != 0 {
                            if let Some(last) = a.last_mut() {
                                *last &= 0xffu8 << (8 - source % 8);
                            }
                        }
                        options.extend([0, 8]);
                        options.extend(((4 + n) as u16).to_be_bytes());
                        options.extend(family.to_be_bytes());
                        options.extend([source, 0]);
                        options.extend_from_slice(&a);
                        ecs_sent = Some((family, source, a));
                    }
                    if nsid {
                        options.extend([0, 3, 0, 0]);
                    }
                    b.extend([0, 0, 41]);
                    b.extend(payload.to_be_bytes());
                    b.extend([0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
                    b.extend((options.len() as u16).to_be_bytes());
                    b.extend(options);
                }
                Shape {
                    bytes: b,
                    qname,
                    edns,
                    ecs: ecs_sent,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn answers_to_generated_queries_are_well_formed(q in shape()) {
        let table = fuzzing::table();
        let mut rng = SmallRng::seed_from_u64(7);
        let counters = Counters::default();
        let mut out = vec![0u8; 65_535];
        let source: IpAddr = "127.0.0.1".parse().unwrap();
        let n = respond(table, &q.bytes, source, Transport::Udp, &mut rng, &counters, &mut out)
            .expect("every query gets an answer");
        let answer = &out[..n];
        let limit = match q.edns { None => 512, Some(p) => usize::from(p.clamp(512, 1232)) };
        prop_assert!(n <= limit, "{} bytes over a limit of {}", n, limit);
        // The question is echoed byte for byte.
        let question_end = 12 + q.qname.len() + 4;
        prop_assert_eq!(&answer[12..question_end], &q.bytes[12..question_end]);
        let m = Message::from_vec(answer).expect("answer parses");
        prop_assert_eq!(m.metadata.id, u16::from_be_bytes([q.bytes[0], q.bytes[1]]));
        prop_assert_eq!(m.metadata.message_type, MessageType::Response);
        prop_assert_eq!(m.metadata.recursion_desired, q.bytes[2] & 1 == 1);
        prop_assert!(!m.metadata.recursion_available);
        prop_assert_eq!(m.edns.is_some(), q.edns.is_some());
        if m.metadata.truncation {
            prop_assert!(m.answers.is_empty() && m.authorities.is_empty());
        }
        if m.metadata.response_code == ResponseCode::Refused {
            prop_assert!(!m.metadata.authoritative);
        }
        // ECS: echoed with family, source and address; scope 0 unless geo-dependent.
        if let (Some((family, source, addr)), Some(edns)) = (&q.ecs, &m.edns) {
            match edns.options().get(EdnsCode::Subnet) {
                Some(EdnsOption::Subnet(s)) => {
                    prop_assert_eq!(s.source_prefix(), *source);
                    let echoed = match s.addr() {
                        IpAddr::V4(a) => (1u16, a.octets().to_vec()),
                        IpAddr::V6(a) => (2u16, a.octets().to_vec()),
                    };
                    prop_assert_eq!(echoed.0, *family);
                    prop_assert_eq!(&echoed.1[..addr.len()], &addr[..]);
                }
                other => prop_assert!(false, "ECS not echoed: {:?}", other),
            }
        }
    }

    #[test]
    fn random_bytes_never_break_the_query_path(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::respond_to(&data);
    }

    #[test]
    fn mutated_queries_never_break_the_query_path(
        q in shape(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = q.bytes.clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        fuzzing::respond_to(&bytes);
        let keep = cut.index(bytes.len() + 1);
        fuzzing::respond_to(&bytes[..keep]);
    }

    #[test]
    fn random_feeds_and_configs_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        fuzzing::load_feed(&data);
        fuzzing::load_config(&data);
        fuzzing::load_registry(&data);
    }

    #[test]
    fn random_ntp_replies_never_panic(data in proptest::collection::vec(any::<u8>(), 0..120)) {
        fuzzing::parse_ntp_reply(&data);
    }
}
