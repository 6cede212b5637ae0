//! Protocol duties of an authoritative server (DESIGN §4), checked on the wire against the
//! real server: header bits copied or set (RFC 1035 §4.1.1), EDNS(0) with OPT echo, our
//! payload size, the DO bit and BADVERS (RFC 6891), truncation without partial RRsets and the
//! TCP retry path (RFC 2181 §9, RFC 6891 §6.2.5), the question echoed byte for byte (0x20
//! case), silence towards packets that are not queries, FORMERR/NOTIMP for malformed queries
//! and unknown opcodes, TCP framing, pipelining and idle timeout (RFC 7766), and robustness
//! against a burst of random packets.
//!
//! Packets a DNS library would refuse to build (two OPT records, EDNS version 1, pointers
//! in the question, trailing bytes, odd opcodes) are written as raw bytes here.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{RData, RecordType};
use pooldns::server::{ServerOptions, Transport};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::harness::*;

// ---------------------------------------------------------------------------------------
// Header bits (RFC 1035 §4.1.1)

#[tokio::test]
async fn answer_copies_id_opcode_rd_and_cd_sets_qr_and_leaves_ra_clear() {
    let server = TestServer::start(&four_servers()).await;
    for (rd, cd) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut q = query("0", RecordType::A);
        q.metadata.id = 0xbeef;
        q.metadata.recursion_desired = rd;
        q.metadata.checking_disabled = cd;
        for r in [server.udp(&q).await, server.tcp(&q).await] {
            assert_eq!(r.metadata.id, 0xbeef);
            assert_eq!(r.metadata.message_type, MessageType::Response);
            assert_eq!(r.metadata.op_code, OpCode::Query);
            assert_eq!(r.metadata.recursion_desired, rd, "RD copied");
            assert_eq!(r.metadata.checking_disabled, cd, "CD copied");
            assert!(!r.metadata.recursion_available, "RA must stay clear");
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            assert_eq!(addresses(&r).len(), 4);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn aa_is_set_on_every_answer_from_the_zone_positive_or_negative() {
    let server = TestServer::start(&four_servers()).await;
    let cases = [
        ("0", RecordType::A, ResponseCode::NoError, 4),
        ("@", RecordType::A, ResponseCode::NoError, 4),
        ("@", RecordType::SOA, ResponseCode::NoError, 1),
        ("@", RecordType::NS, ResponseCode::NoError, 2),
        ("@", RecordType::TXT, ResponseCode::NoError, 1),
        ("www", RecordType::A, ResponseCode::NoError, 1), // the CNAME
        ("ns1", RecordType::AAAA, ResponseCode::NoError, 0), // NODATA
        ("no-such-name", RecordType::A, ResponseCode::NXDomain, 0),
    ];
    for (name, qtype, rcode, answers) in cases {
        let r = server.udp(&query(name, qtype)).await;
        assert!(r.metadata.authoritative, "{name} {qtype}: AA clear");
        assert_eq!(r.metadata.response_code, rcode, "{name} {qtype}");
        assert_eq!(r.answers.len(), answers, "{name} {qtype}");
        if answers == 0 {
            // NXDOMAIN and NODATA carry the SOA in authority (RFC 2308 §2).
            assert_eq!(r.authorities.len(), 1, "{name} {qtype}");
            assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn refused_answers_have_aa_clear_and_no_records() {
    let server = TestServer::start(&four_servers()).await;
    for q in [
        query("example.com.", RecordType::A),
        query("test.", RecordType::SOA),
        query("xpool.test.", RecordType::A),
        query("@", RecordType::AXFR),
    ] {
        for r in [server.udp(&q).await, server.tcp(&q).await] {
            assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{q:?}");
            assert!(!r.metadata.authoritative, "AA set on REFUSED: {q:?}");
            assert!(r.answers.is_empty() && r.authorities.is_empty(), "{r:?}");
            assert_eq!(r.metadata.id, q.metadata.id);
        }
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// EDNS(0) (RFC 6891)

#[tokio::test]
async fn opt_is_in_the_answer_exactly_when_the_query_had_one() {
    let server = TestServer::start(&four_servers()).await;
    let questions = [
        ("0", RecordType::A, ResponseCode::NoError),
        ("@", RecordType::SOA, ResponseCode::NoError),
        ("no-such-name", RecordType::A, ResponseCode::NXDomain),
        ("example.com.", RecordType::A, ResponseCode::Refused),
    ];
    for (name, qtype, rcode) in questions {
        let plain = server.udp(&query(name, qtype)).await;
        assert_eq!(plain.metadata.response_code, rcode);
        assert!(plain.edns.is_none(), "{name}: OPT without one in the query");
        for offered in [512, 1232, 4096] {
            let q = with_edns(query(name, qtype), offered);
            for r in [server.udp(&q).await, server.tcp(&q).await] {
                assert_eq!(r.metadata.response_code, rcode);
                let edns = r.edns.as_ref().expect("OPT echoed");
                assert_eq!(
                    edns.max_payload(),
                    1232,
                    "our payload, whatever was offered"
                );
                assert_eq!(edns.version(), 0);
                assert!(
                    !edns.flags().dnssec_ok,
                    "DO set though the query had it clear"
                );
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn do_bit_is_echoed() {
    let server = TestServer::start(&four_servers()).await;
    for name in ["0", "no-such-name"] {
        let mut q = with_edns(query(name, RecordType::A), 1232);
        q.edns.as_mut().expect("edns").set_dnssec_ok(true);
        let r = server.udp(&q).await;
        assert!(r.edns.as_ref().expect("OPT").flags().dnssec_ok, "{name}");
        let raw = server.raw_udp(&q.to_vec().unwrap()).await.unwrap();
        let opt = find_opt(&raw).expect("OPT");
        assert_eq!(opt.flags & 0x8000, 0x8000);
    }
    server.stop().await;
}

#[tokio::test]
async fn edns_version_1_gets_badvers_with_no_records() {
    let server = TestServer::start(&four_servers()).await;
    let q = raw_query(0x4242, 0, QNAME_0, 1).with_additional(&opt(1232, 0, 1, 0x8000, &[]));
    for reply in [
        server.raw_udp(&q.bytes).await.expect("UDP reply"),
        server.raw_tcp(&q.bytes).await.expect("TCP reply"),
    ] {
        let h = Head::of(&reply);
        assert_eq!(h.id, 0x4242);
        assert!(h.qr());
        // BADVERS = 16: 0 in the header's 4 bits, 1 in the OPT's extended rcode.
        assert_eq!(h.rcode(), 0, "header rcode of BADVERS");
        assert_eq!((h.an, h.ns, h.ar), (0, 0, 1), "{h:?}");
        let opt = find_opt(&reply).expect("OPT in a BADVERS answer");
        assert_eq!(opt.ext_rcode, 1);
        assert_eq!(opt.version, 0, "we answer with the version we implement");
        assert_eq!(opt.payload, 1232);
    }
    server.stop().await;
}

#[tokio::test]
async fn two_opt_records_get_formerr() {
    let server = TestServer::start(&four_servers()).await;
    let o = opt(1232, 0, 0, 0, &[]);
    let q = raw_query(0x0202, 0x0100, QNAME_0, 1)
        .with_additional(&o)
        .with_additional(&o);
    for reply in [
        server.raw_udp(&q.bytes).await.expect("UDP reply"),
        server.raw_tcp(&q.bytes).await.expect("TCP reply"),
    ] {
        let h = Head::of(&reply);
        assert_eq!(h.id, 0x0202);
        assert!(h.qr() && h.rd());
        assert_eq!(h.rcode(), 1, "FORMERR");
        assert_eq!((h.an, h.ns), (0, 0));
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Truncation (RFC 2181 §9, RFC 6891 §6.2.5)

#[tokio::test]
async fn answer_too_big_for_512_bytes_without_edns_is_truncated_whole_and_complete_over_tcp() {
    let server = TestServer::start_with(&txt_config(), &four_servers(), Default::default()).await;
    for name in ["big", "medium"] {
        let q = query(name, RecordType::TXT).to_vec().unwrap();
        let raw = server.raw_udp(&q).await.expect("UDP reply");
        assert!(raw.len() <= 512, "{name}: {} bytes without EDNS", raw.len());
        assert_truncated_whole(&raw, &q, false);

        let tcp = Message::from_vec(&server.raw_tcp(&q).await.expect("TCP reply")).unwrap();
        assert!(!tcp.metadata.truncation);
        assert_eq!(txt_strings(&tcp), expected_txt(name));
    }
    server.stop().await;
}

#[tokio::test]
async fn answer_that_fits_the_offered_payload_is_sent_whole_over_udp() {
    let server = TestServer::start_with(&txt_config(), &four_servers(), Default::default()).await;
    // medium is about 900 bytes: too big for 512, fits 1232 (and 4096, capped to 1232).
    for offered in [1232, 4096] {
        let q = with_edns(query("medium", RecordType::TXT), offered);
        let raw = server.raw_udp(&q.to_vec().unwrap()).await.unwrap();
        assert!(raw.len() > 512 && raw.len() <= 1232, "{} bytes", raw.len());
        let r = Message::from_vec(&raw).unwrap();
        assert!(!r.metadata.truncation);
        assert_eq!(txt_strings(&r), expected_txt("medium"));
    }
    server.stop().await;
}

#[tokio::test]
async fn udp_answers_never_exceed_1232_bytes_even_when_the_client_offers_more() {
    let server = TestServer::start_with(&txt_config(), &four_servers(), Default::default()).await;
    // big is about 2.2 kB: it fits a 4096 offer, but our cap is 1232.
    for offered in [1232, 1500, 4096, 65535] {
        let q = with_edns(query("big", RecordType::TXT), offered)
            .to_vec()
            .unwrap();
        let raw = server.raw_udp(&q).await.expect("UDP reply");
        assert!(raw.len() <= 1232, "offered {offered}: {} bytes", raw.len());
        assert_truncated_whole(&raw, &q, true);
        let opt = find_opt(&raw).expect("OPT kept in a truncated answer");
        assert_eq!(opt.payload, 1232);

        let tcp = Message::from_vec(&server.raw_tcp(&q).await.unwrap()).unwrap();
        assert!(!tcp.metadata.truncation);
        assert_eq!(txt_strings(&tcp), expected_txt("big"));
    }
    server.stop().await;
}

#[tokio::test]
async fn edns_payload_below_512_counts_as_512() {
    let server = TestServer::start_with(&txt_config(), &four_servers(), Default::default()).await;
    // small is exactly 512 bytes with its OPT: above every offer below.
    for offered in [0u16, 1, 100, 256, 511] {
        let q = raw_query(0x0512, 0, b"\x05small\x04pool\x04test\x00", 16).with_additional(&opt(
            offered,
            0,
            0,
            0,
            &[],
        ));
        let raw = server.raw_udp(&q.bytes).await.expect("UDP reply");
        let r = Message::from_vec(&raw).unwrap();
        assert!(!r.metadata.truncation, "offered {offered}: truncated");
        assert_eq!(txt_strings(&r), expected_txt("small"), "offered {offered}");
        assert_eq!(raw.len(), 512);
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// The question (RFC 1035 §4.1.2; 0x20 case randomisation)

#[tokio::test]
async fn question_is_echoed_byte_for_byte_with_its_case() {
    let server = TestServer::start_with(&txt_config(), &four_servers(), Default::default()).await;
    let names: [&[u8]; 5] = [
        b"\x01\x30\x04PoOl\x04tEsT\x00",
        b"\x04POOL\x04TEST\x00",
        b"\x07nO-sUcH\x04pOoL\x04TeSt\x00",
        b"\x03BiG\x04pool\x04test\x00",
        b"\x07ExAmPlE\x03CoM\x00",
    ];
    for qname in names {
        for (qtype, edns) in [(1u16, false), (16, false), (1, true), (6, true)] {
            let mut q = raw_query(0x2020, 0, qname, qtype);
            if edns {
                q = q.with_additional(&opt(1232, 0, 0, 0, &[]));
            }
            let question = &q.bytes[12..12 + qname.len() + 4];
            for reply in [
                server.raw_udp(&q.bytes).await.expect("UDP reply"),
                server.raw_tcp(&q.bytes).await.expect("TCP reply"),
            ] {
                let h = Head::of(&reply);
                assert_eq!(h.qd, 1);
                assert_eq!(
                    &reply[12..12 + question.len()],
                    question,
                    "{}",
                    String::from_utf8_lossy(qname)
                );
                // The rest of the answer (pointers into the mixed-case qname) parses.
                Message::from_vec(&reply).expect("answer parses");
            }
        }
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Packets that get no answer, and malformed queries

#[tokio::test]
async fn packets_shorter_than_a_header_get_no_reply() {
    let server = TestServer::start(&four_servers()).await;
    let full = raw_query(0x1111, 0x0100, QNAME_0, 1).bytes;
    let short: Vec<Vec<u8>> = (0..12).map(|n| full[..n].to_vec()).collect();
    assert_no_reply_to(&server, &short).await;
    server.stop().await;
}

#[tokio::test]
async fn packets_with_qr_set_get_no_reply() {
    let server = TestServer::start(&four_servers()).await;
    let mut packets = Vec::new();
    // A well-formed "answer", and answers that would otherwise earn NOTIMP or FORMERR.
    packets.push(raw_query(0x1111, 0x8000, QNAME_0, 1).bytes);
    packets.push(raw_query(0x1112, 0x8400 | 5 << 11, QNAME_0, 1).bytes);
    let mut two = raw_query(0x1113, 0x8000, QNAME_0, 1).bytes;
    two[5] = 2;
    packets.push(two);
    packets.push(vec![0x11, 0x14, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_no_reply_to(&server, &packets).await;
    server.stop().await;
}

#[tokio::test]
async fn qdcount_other_than_1_gets_formerr() {
    let server = TestServer::start(&four_servers()).await;
    let zero = vec![0x00, 0x10, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    let one = raw_query(0x0011, 0x0100, QNAME_0, 1).bytes;
    let mut two = one.clone();
    two[1] = 0x12;
    two[5] = 2;
    two.extend_from_slice(&one[12..]); // a second, identical question
    let mut two_declared_one_sent = one.clone();
    two_declared_one_sent[1] = 0x13;
    two_declared_one_sent[5] = 2;
    for packet in [zero, two, two_declared_one_sent] {
        assert_formerr(&server, &packet).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn compression_pointer_in_the_question_gets_formerr() {
    let server = TestServer::start(&four_servers()).await;
    let names: [&[u8]; 3] = [
        b"\xc0\x0c",                 // the whole name a pointer (to itself)
        b"\x01\x30\xc0\x0e",         // "0" then a pointer
        b"\x01\x30\x04pool\xc0\x00", // pointer to the header
    ];
    for (i, qname) in names.into_iter().enumerate() {
        let q = raw_query(0x0c00 + i as u16, 0x0100, qname, 1);
        assert_formerr(&server, &q.bytes).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn trailing_bytes_after_the_message_get_formerr() {
    let server = TestServer::start(&four_servers()).await;
    let mut plain = raw_query(0x7a01, 0x0100, QNAME_0, 1).bytes;
    plain.push(0);
    let mut after_opt = raw_query(0x7a02, 0x0100, QNAME_0, 1)
        .with_additional(&opt(1232, 0, 0, 0, &[]))
        .bytes;
    after_opt.extend_from_slice(b"garbage");
    for packet in [plain, after_opt] {
        assert_formerr(&server, &packet).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_opcodes_get_notimp_with_the_opcode_echoed() {
    let server = TestServer::start(&four_servers()).await;
    for opcode in [1u16, 2, 3, 4, 5, 6, 15] {
        for edns in [false, true] {
            let id = 0x0900 + opcode;
            let mut q = raw_query(id, opcode << 11 | 0x0100, QNAME_0, 6);
            if edns {
                q = q.with_additional(&opt(4096, 0, 0, 0, &[]));
            }
            for reply in [
                server.raw_udp(&q.bytes).await.expect("UDP reply"),
                server.raw_tcp(&q.bytes).await.expect("TCP reply"),
            ] {
                let h = Head::of(&reply);
                assert_eq!(h.id, id);
                assert!(h.qr());
                assert_eq!(h.opcode(), opcode, "opcode echoed");
                assert_eq!(h.rcode(), 4, "opcode {opcode}: NOTIMP");
                assert!(h.rd(), "RD copied");
                assert_eq!((h.an, h.ns), (0, 0));
                // RFC 6891 §7: the OPT is in the answer exactly when the query had one.
                let opt = find_opt(&reply);
                assert_eq!(opt.is_some(), edns, "opcode {opcode}: OPT {opt:?}");
                if let Some(opt) = opt {
                    assert_eq!((opt.payload, opt.ext_rcode, opt.version), (1232, 0, 0));
                }
            }
        }
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Signed queries: TSIG (RFC 8945) and SIG(0) (RFC 2931). pooldns knows no keys.

/// RFC 8945 §5.2.1: a TSIG with a key the server does not know gets NOTAUTH and an
/// unsigned TSIG (§5.3.2: MAC size 0) with error BADKEY; key name, algorithm, time signed,
/// fudge and original id as the request's. Issue 11: pooldns answered NOERROR and ignored
/// the TSIG (ISC's DNS compliance tester flagged it).
#[tokio::test]
async fn test_8945_5_2_1_unknown_tsig_key_gets_notauth_badkey_over_udp_and_tcp() {
    let server = TestServer::start(&four_servers()).await;
    let key = b"\x03key\x07example\x00";
    for (i, edns) in [false, true].into_iter().enumerate() {
        let id = 0x7500 + i as u16;
        let mut q = raw_query(id, 0x0100, QNAME_0, 1);
        if edns {
            q = q.with_additional(&opt(1232, 0, 0, 0, &[]));
        }
        let q = q.with_additional(&tsig_record(key, 255, 1_700_000_000, 0xbeef));
        for (via, reply) in [
            ("UDP", server.raw_udp(&q.bytes).await.expect("UDP reply")),
            ("TCP", server.raw_tcp(&q.bytes).await.expect("TCP reply")),
        ] {
            let h = Head::of(&reply);
            assert_eq!(h.id, id, "{via}");
            assert!(h.qr() && !h.aa() && !h.tc(), "{via}: {h:?}");
            assert_eq!(h.rcode(), 9, "{via}: NOTAUTH");
            assert_eq!((h.qd, h.an, h.ns), (1, 0, 0), "{via}");
            assert_eq!(h.ar, 1 + u16::from(edns), "{via}: TSIG and OPT");
            assert_eq!(find_opt(&reply).is_some(), edns, "{via}");
            let m = Message::from_vec(&reply).expect("parses");
            // hickory reads the TSIG into the additional section (its TSIG support is
            // behind a feature pooldns does not turn on).
            let t = m.additionals.last().expect("a TSIG record, last");
            assert_eq!(t.name.to_ascii(), "key.example.");
            assert_eq!(t.dns_class, hickory_proto::rr::DNSClass::ANY);
            assert_eq!(t.ttl, 0);
            let RData::TSIG(data) = &t.data else {
                panic!("{via}: not a TSIG: {t:?}");
            };
            assert_eq!(data.algorithm.to_name().to_ascii(), "hmac-sha256");
            assert_eq!(data.time, 1_700_000_000, "{via}: time signed copied");
            assert_eq!(data.fudge, 300);
            assert!(data.mac.is_empty(), "{via}: unsigned, MAC size 0");
            assert_eq!(data.oid, 0xbeef);
            assert_eq!(data.error, Some(TsigError::BadKey), "{via}");
            assert!(data.other.is_empty());
            // The TSIG is the last record on the wire (RFC 8945 §5.3).
            let key_at = reply.len() - (key.len() + 10 + 13 + 16);
            assert_eq!(&reply[key_at..key_at + key.len()], key, "{via}");
        }
    }
    server.stop().await;
}

/// RFC 8945 §5.2: a TSIG that is not the last record, a second TSIG, a TSIG whose rdata
/// does not read, or one of class IN (§4.2: CLASS MUST be ANY) gets FORMERR; so does a
/// SIG(0), which pooldns cannot verify (NSD does the same; src/wire/parse.rs lists why).
#[tokio::test]
async fn misplaced_or_malformed_tsig_and_sig0_get_formerr() {
    let server = TestServer::start(&four_servers()).await;
    let key = b"\x03key\x07example\x00";
    let tsig = tsig_record(key, 255, 1_700_000_000, 1);
    let base = |id| raw_query(id, 0x0100, QNAME_0, 1);
    let mut short_rdata = tsig.clone();
    short_rdata.truncate(tsig.len() - 2);
    let rdlen = u16::from_be_bytes([short_rdata[key.len() + 8], short_rdata[key.len() + 9]]);
    short_rdata[key.len() + 8..key.len() + 10].copy_from_slice(&(rdlen - 2).to_be_bytes());
    let mut sig0 = vec![0, 0, 24, 0, 255, 0, 0, 0, 0];
    let mut sig_rdata = vec![
        0, 0, 8, 0, 0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x2c, 0x65, 0x53, 0xf0, 0,
    ];
    sig_rdata.extend([0x12, 0x67]);
    sig_rdata.extend_from_slice(key);
    sig_rdata.extend([7; 64]);
    sig0.extend((sig_rdata.len() as u16).to_be_bytes());
    sig0.extend(sig_rdata);
    let packets = [
        base(0x7601)
            .with_additional(&tsig)
            .with_additional(&opt(1232, 0, 0, 0, &[])),
        base(0x7602).with_additional(&tsig).with_additional(&tsig),
        base(0x7603).with_additional(&short_rdata),
        base(0x7604).with_additional(&tsig_record(key, 1, 1_700_000_000, 1)),
        base(0x7605).with_additional(&sig0),
        base(0x7606)
            .with_additional(&opt(1232, 0, 0, 0, &[]))
            .with_additional(&sig0),
    ];
    for q in packets {
        assert_formerr(&server, &q.bytes).await;
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// TCP (RFC 7766)

#[tokio::test]
async fn pipelined_tcp_queries_in_one_write_are_all_answered() {
    let server = TestServer::start(&four_servers()).await;
    let names = ["0", "1", "@", "no-such-name", "www", "example.com."];
    let mut expected = std::collections::HashMap::new();
    let mut bytes = Vec::new();
    for i in 0..24u16 {
        let name = names[usize::from(i) % names.len()];
        let mut q = query(name, RecordType::A);
        q.metadata.id = 0x5000 + i;
        let packet = q.to_vec().unwrap();
        bytes.extend((packet.len() as u16).to_be_bytes());
        bytes.extend(packet);
        expected.insert(0x5000 + i, (name, q.queries[0].name().to_ascii()));
    }
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut seen = HashSet::new();
    for _ in 0..expected.len() {
        let reply = read_framed(&mut stream)
            .await
            .expect("answer to a pipelined query");
        let r = Message::from_vec(&reply).unwrap();
        let (name, fqdn) = &expected[&r.metadata.id];
        let name = *name;
        assert!(
            seen.insert(r.metadata.id),
            "answered twice: {}",
            r.metadata.id
        );
        assert_eq!(&r.queries[0].name().to_ascii(), fqdn);
        let rcode = match name {
            "no-such-name" => ResponseCode::NXDomain,
            "example.com." => ResponseCode::Refused,
            _ => ResponseCode::NoError,
        };
        assert_eq!(r.metadata.response_code, rcode, "{name}");
        if name == "0" || name == "1" || name == "@" {
            assert_eq!(addresses(&r).len(), 4);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn second_query_on_the_same_tcp_connection_is_answered() {
    let server = TestServer::start(&four_servers()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for (i, name) in ["0", "@", "2", "no-such-name"].into_iter().enumerate() {
        let mut q = query(name, RecordType::A);
        q.metadata.id = 0x6000 + i as u16;
        write_framed(&mut stream, &q.to_vec().unwrap())
            .await
            .unwrap();
        let r = Message::from_vec(&read_framed(&mut stream).await.expect("answer")).unwrap();
        assert_eq!(r.metadata.id, 0x6000 + i as u16);
    }
    server.stop().await;
}

#[tokio::test]
async fn tcp_connection_with_a_zero_length_frame_is_closed() {
    let server = TestServer::start(&four_servers()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let q = query("0", RecordType::A);
    write_framed(&mut stream, &q.to_vec().unwrap())
        .await
        .unwrap();
    assert!(read_framed(&mut stream).await.is_some());
    stream.write_all(&[0, 0]).await.unwrap();
    // Closed well before the 10 s idle timeout.
    let closed = closed_within(&mut stream, Duration::from_secs(3)).await;
    assert!(closed, "connection still open after a zero-length frame");
    server.stop().await;
}

#[tokio::test]
async fn idle_tcp_connection_is_closed_after_the_idle_timeout_and_busy_one_is_not() {
    let options = ServerOptions {
        tcp_idle_timeout: Duration::from_secs(1),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(CONFIG, &four_servers(), options).await;

    // Busy: a query every 400 ms for 2.4 s, longer than the timeout in total.
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_millis(2400) {
        let q = query("0", RecordType::A);
        write_framed(&mut busy, &q.to_vec().unwrap()).await.unwrap();
        let r = read_framed(&mut busy)
            .await
            .expect("busy connection closed");
        assert_eq!(Message::from_vec(&r).unwrap().metadata.id, q.metadata.id);
        answered += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(answered >= 5);

    // Idle: closed after about a second, not before.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut idle, Duration::from_secs(4)).await,
        "idle connection kept"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after only {waited:?}"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Robustness

#[tokio::test]
async fn burst_of_random_packets_never_kills_the_server() {
    let server = TestServer::start(&four_servers()).await;
    let mut rng = StdRng::seed_from_u64(0x5eed_d115);
    let valid = with_edns(query("0", RecordType::A), 1232).to_vec().unwrap();
    let packets: Vec<Vec<u8>> = (0..4000).map(|_| random_packet(&mut rng, &valid)).collect();

    // The answer function itself, on every packet: no panic, and every reply is a
    // well-formed response to the packet's id.
    let table = server.table.load();
    let mut out = vec![0u8; 65_535];
    let counters = pooldns::metrics::Counters::default();
    let source: IpAddr = "127.0.0.1".parse().unwrap();
    for p in &packets {
        for transport in [Transport::Udp, Transport::Tcp { keepalive: 100 }] {
            if let Some(n) = pooldns::server::respond(
                &table, p, source, transport, &mut rng, &counters, &mut out,
            ) {
                let h = Head::of(&out[..n]);
                assert_eq!(h.id, u16::from_be_bytes([p[0], p[1]]), "{p:02x?}");
                assert!(h.qr());
                if transport == Transport::Udp {
                    assert!(n <= 1232, "{n} bytes over UDP for {p:02x?}");
                }
                Message::from_vec(&out[..n])
                    .unwrap_or_else(|e| panic!("reply to {p:02x?} does not parse: {e}"));
            }
        }
    }
    drop(table);

    // The running server over UDP, in batches, checking it still answers after each.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (batch, chunk) in packets.chunks(200).enumerate() {
        for p in chunk {
            socket.send_to(p, server.addr).await.unwrap();
        }
        assert!(
            answers_after_noise(&socket, &server, 0xa000 + batch as u16).await,
            "no answer after batch {batch}"
        );
    }

    // And over TCP: random frames on one connection, then a good query on it.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut bytes = Vec::new();
    for p in packets.iter().take(500) {
        bytes.extend((p.len() as u16).to_be_bytes());
        bytes.extend_from_slice(p);
    }
    // A zero-length frame would close the connection: random_packet never makes one empty.
    let mut good = query("0", RecordType::A);
    good.metadata.id = 0xfeed;
    let good = good.to_vec().unwrap();
    bytes.extend((good.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&good);
    stream.write_all(&bytes).await.unwrap();
    let mut got_good = false;
    while let Some(reply) = read_framed(&mut stream).await {
        let h = Head::of(&reply);
        if h.id == 0xfeed && h.rcode() == 0 && h.an == 4 {
            got_good = true;
            break;
        }
    }
    assert!(got_good, "TCP connection died on random frames");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Helpers

/// "0.pool.test" in wire form.
const QNAME_0: &[u8] = b"\x010\x04pool\x04test\x00";

/// Four eligible servers (every pool answer carries all four).
fn four_servers() -> String {
    feed_json(&[
        s(1, "192.0.2.1", 1000, "de"),
        s(2, "192.0.2.2", 1000, "de"),
        s(3, "192.0.2.3", 1000, "fr"),
        s(4, "198.51.100.4", 1000, "us"),
    ])
}

/// The texts of the named test RRset: `big` and `medium` have 10 and 4 records of 200
/// bytes, `small` one record of 454 bytes (two character-strings on the wire) that makes an
/// answer of exactly 512 bytes with an OPT record.
fn expected_txt(name: &str) -> BTreeSet<Vec<u8>> {
    let (count, letter, len) = match name {
        "big" => (10, b'a', 200),
        "medium" => (4, b'k', 200),
        "small" => (1, b'p', 454),
        other => panic!("no TXT set {other}"),
    };
    (0..count).map(|i| vec![letter + i; len]).collect()
}

/// The test configuration plus the TXT RRsets of [`expected_txt`] at `big`, `medium` and
/// `small`: about 2.2 kB, 0.9 kB and 0.5 kB of answer.
fn txt_config() -> String {
    let mut config = CONFIG.to_owned();
    for name in ["big", "medium", "small"] {
        for value in expected_txt(name) {
            config.push_str(&format!(
                "\n[[records]]\nname = \"{name}\"\ntype = \"TXT\"\nvalue = \"{}\"\n",
                String::from_utf8(value).unwrap()
            ));
        }
    }
    config
}

/// The text of each TXT record in the answer section (its character-strings joined).
fn txt_strings(m: &Message) -> BTreeSet<Vec<u8>> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::TXT(t) => t.txt_data.concat(),
            other => panic!("not TXT: {other:?}"),
        })
        .collect()
}

/// A truncated UDP answer: TC=1, no records in answer or authority (an RRset is never
/// cut), the question echoed, and the OPT kept exactly when the query had one.
fn assert_truncated_whole(raw: &[u8], query: &[u8], edns: bool) {
    let h = Head::of(raw);
    assert_eq!(h.id, u16::from_be_bytes([query[0], query[1]]));
    assert!(h.tc(), "TC not set on a {}-byte answer", raw.len());
    assert_eq!(h.rcode(), 0);
    assert_eq!((h.an, h.ns), (0, 0), "partial RRset in a truncated answer");
    assert_eq!(h.qd, 1);
    let qlen = question_len(query);
    assert_eq!(&raw[12..12 + qlen], &query[12..12 + qlen]);
    assert_eq!(h.ar, u16::from(edns));
    assert_eq!(find_opt(raw).is_some(), edns);
    let m = Message::from_vec(raw).expect("truncated answer parses");
    assert!(m.metadata.authoritative);
}

/// Length of the first question of a message (plain name + type + class).
fn question_len(message: &[u8]) -> usize {
    let mut pos = 12;
    while message[pos] != 0 {
        pos += 1 + usize::from(message[pos]);
    }
    pos + 1 + 4 - 12
}

/// Sends `packet` over UDP and TCP and checks for FORMERR with the id echoed.
async fn assert_formerr(server: &TestServer, packet: &[u8]) {
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    for reply in [
        server.raw_udp(packet).await.expect("UDP reply"),
        server.raw_tcp(packet).await.expect("TCP reply"),
    ] {
        let h = Head::of(&reply);
        assert_eq!(h.id, id);
        assert!(h.qr());
        assert_eq!(h.rcode(), 1, "FORMERR for {packet:02x?}, got {h:?}");
        assert_eq!((h.an, h.ns), (0, 0));
        assert!(!h.aa());
    }
}

/// Sends each packet, then a good query, from one socket: the only reply must be the
/// good one's, also during a short wait after it.
async fn assert_no_reply_to(server: &TestServer, packets: &[Vec<u8>]) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for p in packets {
        socket.send_to(p, server.addr).await.unwrap();
    }
    let good = raw_query(0x600d, 0, QNAME_0, 1).bytes;
    socket.send_to(&good, server.addr).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
        .await
        .expect("no answer to the good query")
        .unwrap();
    assert_eq!(
        Head::of(&buf[..n]).id,
        0x600d,
        "reply to a packet that must get none: {:02x?}",
        &buf[..n]
    );
    let late = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await;
    assert!(
        late.is_err(),
        "late reply: {:02x?}",
        &buf[..late.unwrap().unwrap()]
    );
}

/// Sends a good query with `id` and waits for its answer, skipping replies to the noise.
async fn answers_after_noise(socket: &UdpSocket, server: &TestServer, id: u16) -> bool {
    let mut q = query("@", RecordType::A);
    q.metadata.id = id;
    let q = q.to_vec().unwrap();
    let mut buf = vec![0u8; 65_535];
    // Retried: under the burst the kernel may drop a datagram on either side.
    for _ in 0..5 {
        socket.send_to(&q, server.addr).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline.into(), socket.recv(&mut buf)).await
        {
            let h = Head::of(&buf[..n]);
            if h.id == id && h.an == 4 && h.rcode() == 0 {
                return true;
            }
        }
    }
    false
}

/// Waits for the peer to close: true on EOF or reset, false on data or timeout.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(limit, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// A random packet: pure noise, a header with random counts over noise, or a valid
/// query with a few bytes flipped, cut or extended. Never empty.
fn random_packet(rng: &mut StdRng, valid: &[u8]) -> Vec<u8> {
    let mut p = match rng.random_range(0..3) {
        0 => {
            let len = rng.random_range(1..120);
            (0..len).map(|_| rng.random::<u8>()).collect()
        }
        1 => {
            let mut p = valid[..12].to_vec();
            p[2] &= 0x7f; // QR clear, so that it is parsed
            for b in &mut p[4..12] {
                *b = if rng.random_bool(0.5) {
                    0
                } else {
                    rng.random_range(0..3)
                };
            }
            let len = rng.random_range(0..100);
            p.extend((0..len).map(|_| rng.random::<u8>()));
            p
        }
        _ => {
            let mut p = valid.to_vec();
            for _ in 0..rng.random_range(1..5) {
                let i = rng.random_range(0..p.len());
                p[i] ^= 1 << rng.random_range(0..8);
            }
            match rng.random_range(0..3) {
                0 => p.truncate(rng.random_range(1..p.len())),
                1 => p.extend((0..rng.random_range(1..8)).map(|_| rng.random::<u8>())),
                _ => {}
            }
            p
        }
    };
    if rng.random_bool(0.8) && p.len() > 2 {
        p[2] &= 0x7f;
    }
    p
}

/// A raw query under construction.
struct RawQuery {
    bytes: Vec<u8>,
}

/// A query with one question and the given header flags (QR, opcode, RD … bits).
fn raw_query(id: u16, flags: u16, qname: &[u8], qtype: u16) -> RawQuery {
    let mut bytes = Vec::new();
    bytes.extend(id.to_be_bytes());
    bytes.extend(flags.to_be_bytes());
    bytes.extend([0, 1, 0, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(qname);
    bytes.extend(qtype.to_be_bytes());
    bytes.extend(1u16.to_be_bytes());
    RawQuery { bytes }
}

impl RawQuery {
    /// Appends a record to the additional section.
    fn with_additional(mut self, record: &[u8]) -> RawQuery {
        let ar = u16::from_be_bytes([self.bytes[10], self.bytes[11]]) + 1;
        self.bytes[10..12].copy_from_slice(&ar.to_be_bytes());
        self.bytes.extend_from_slice(record);
        self
    }
}

/// A TSIG record (RFC 8945 §4.2) owned by `key`: hmac-sha256, fudge 300, a 32-byte MAC
/// of zeros no key made.
fn tsig_record(key: &[u8], class: u16, time_signed: u32, original_id: u16) -> Vec<u8> {
    let mut rdata = b"\x0bhmac-sha256\x00".to_vec();
    rdata.extend([0, 0]);
    rdata.extend(time_signed.to_be_bytes());
    rdata.extend(300u16.to_be_bytes());
    rdata.extend(32u16.to_be_bytes());
    rdata.extend([0; 32]);
    rdata.extend(original_id.to_be_bytes());
    rdata.extend([0, 0, 0, 0]); // error, other len
    let mut rr = key.to_vec();
    rr.extend(250u16.to_be_bytes());
    rr.extend(class.to_be_bytes());
    rr.extend(0u32.to_be_bytes());
    rr.extend((rdata.len() as u16).to_be_bytes());
    rr.extend(rdata);
    rr
}

/// An OPT record (RFC 6891 §6.1.2).
fn opt(payload: u16, ext_rcode: u8, version: u8, flags: u16, options: &[u8]) -> Vec<u8> {
    let mut o = vec![0];
    o.extend(41u16.to_be_bytes());
    o.extend(payload.to_be_bytes());
    o.extend([ext_rcode, version]);
    o.extend(flags.to_be_bytes());
    o.extend((options.len() as u16).to_be_bytes());
    o.extend_from_slice(options);
    o
}

/// The header of a reply.
#[derive(Debug)]
struct Head {
    id: u16,
    flags: u16,
    qd: u16,
    an: u16,
    ns: u16,
    ar: u16,
}

impl Head {
    fn of(m: &[u8]) -> Head {
        assert!(m.len() >= 12, "reply shorter than a header: {m:02x?}");
        let at = |i: usize| u16::from_be_bytes([m[i], m[i + 1]]);
        Head {
            id: at(0),
            flags: at(2),
            qd: at(4),
            an: at(6),
            ns: at(8),
            ar: at(10),
        }
    }
    fn qr(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    fn opcode(&self) -> u16 {
        (self.flags >> 11) & 0xf
    }
    fn aa(&self) -> bool {
        self.flags & 0x0400 != 0
    }
    fn tc(&self) -> bool {
        self.flags & 0x0200 != 0
    }
    fn rd(&self) -> bool {
        self.flags & 0x0100 != 0
    }
    fn rcode(&self) -> u16 {
        self.flags & 0xf
    }
}

/// The fields of an OPT record as found on the wire.
#[derive(Debug)]
struct RawOpt {
    payload: u16,
    ext_rcode: u8,
    version: u8,
    flags: u16,
}

/// Finds the OPT record in the additional section of a reply, walking every section.
fn find_opt(m: &[u8]) -> Option<RawOpt> {
    let h = Head::of(m);
    let mut pos = 12;
    let skip_name = |mut pos: usize| -> usize {
        loop {
            let len = m[pos];
            if len == 0 {
                return pos + 1;
            }
            if len & 0xc0 == 0xc0 {
                return pos + 2;
            }
            pos += 1 + usize::from(len);
        }
    };
    for _ in 0..h.qd {
        pos = skip_name(pos) + 4;
    }
    let mut found = None;
    for i in 0..u32::from(h.an) + u32::from(h.ns) + u32::from(h.ar) {
        let owner = pos;
        pos = skip_name(pos);
        let at = |i: usize| u16::from_be_bytes([m[i], m[i + 1]]);
        let rtype = at(pos);
        let rdlen = usize::from(at(pos + 8));
        if rtype == 41 {
            assert!(
                i >= u32::from(h.an) + u32::from(h.ns),
                "OPT outside additional"
            );
            assert_eq!(m[owner], 0, "OPT not owned by the root");
            assert!(found.is_none(), "two OPT records in a reply");
            found = Some(RawOpt {
                payload: at(pos + 2),
                ext_rcode: m[pos + 4],
                version: m[pos + 5],
                flags: at(pos + 6),
            });
        }
        pos += 10 + rdlen;
    }
    assert_eq!(pos, m.len(), "bytes after the last record");
    found
}
