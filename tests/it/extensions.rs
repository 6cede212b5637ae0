//! EDNS extensions and TCP limits on the wire: DNS cookies (RFC 7873, RFC 9018), NSID
//! (RFC 5001), the CHAOS identity names, Extended DNS Errors (RFC 8914), edns-tcp-keepalive
//! (RFC 7828), minimal ANY (RFC 8482), the TCP connection cap (RFC 7766 §6.2.2) and
//! oversized frames.

use std::time::Duration;

use pooldns::server::ServerOptions;
use pooldns::wire::cookie::Cookie;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::harness::*;

const SECRET: &str = "000102030405060708090a0b0c0d0e0f";

fn config() -> String {
    format!(
        "{CONFIG}\n[identity]\nnsid = \"ns-test-1\"\nhostname = \"host-a\"\nversion = \"\"\n\n[cookies]\nsecret = \"{SECRET}\"\n"
    )
}

fn feed() -> String {
    feed_json(&[
        s(1, "192.0.2.1", 1000, "de"),
        s(2, "192.0.2.2", 1000, "de"),
        s(3, "192.0.2.3", 1000, "de"),
    ])
}

/// A raw query with an OPT record carrying `options`; QDCOUNT 0 when `qname` is empty.
fn packet(qname: &[u8], qtype: u16, qclass: u16, opcode: u8, options: &[u8]) -> Vec<u8> {
    let qd = u8::from(!qname.is_empty());
    let mut p = vec![0x4a, 0x4b, opcode << 3, 0, 0, qd, 0, 0, 0, 0, 0, 1];
    if !qname.is_empty() {
        p.extend_from_slice(qname);
        p.extend(qtype.to_be_bytes());
        p.extend(qclass.to_be_bytes());
    }
    p.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    p.extend((options.len() as u16).to_be_bytes());
    p.extend_from_slice(options);
    p
}

fn option(code: u16, data: &[u8]) -> Vec<u8> {
    let mut o = code.to_be_bytes().to_vec();
    o.extend((data.len() as u16).to_be_bytes());
    o.extend_from_slice(data);
    o
}

/// The options of the answer's OPT record, as (code, data).
fn answer_options(answer: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let m = hickory_proto::op::Message::from_vec(answer).expect("answer parses");
    assert!(m.edns.is_some(), "no OPT in the answer");
    // Walk the raw OPT rdata: the last 11+ bytes of the message hold it.
    let arcount = u16::from_be_bytes([answer[10], answer[11]]);
    assert_eq!(arcount, 1);
    let opt = answer
        .windows(3)
        .rposition(|w| w == [0, 0, 41])
        .expect("OPT record");
    let rdlen = usize::from(u16::from_be_bytes([answer[opt + 9], answer[opt + 10]]));
    let mut rdata = &answer[opt + 11..opt + 11 + rdlen];
    let mut out = Vec::new();
    while rdata.len() >= 4 {
        let code = u16::from_be_bytes([rdata[0], rdata[1]]);
        let len = usize::from(u16::from_be_bytes([rdata[2], rdata[3]]));
        out.push((code, rdata[4..4 + len].to_vec()));
        rdata = &rdata[4 + len..];
    }
    out
}

fn rcode(answer: &[u8]) -> u8 {
    answer[3] & 0x0f
}

const NAME: &[u8] = b"\x01\x30\x04pool\x04test\x00";

fn secret() -> [u8; 16] {
    let mut s = [0u8; 16];
    for (i, b) in s.iter_mut().enumerate() {
        *b = u8::from_str_radix(&SECRET[2 * i..2 * i + 2], 16).unwrap();
    }
    s
}

#[tokio::test]
async fn cookies_get_a_valid_server_cookie_and_bad_ones_a_fresh_one() {
    let server = TestServer::start_with(&config(), &feed(), ServerOptions::default()).await;
    let client: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32
    };
    // Client cookie only: a normal answer with client cookie + a valid 16-byte server cookie.
    let client_cookie = [9u8, 8, 7, 6, 5, 4, 3, 2];
    let a = server
        .raw_udp(&packet(NAME, 1, 1, 0, &option(10, &client_cookie)))
        .await
        .unwrap();
    assert_eq!(rcode(&a), 0);
    let cookie = answer_options(&a)
        .into_iter()
        .find(|(c, _)| *c == 10)
        .expect("cookie echoed")
        .1;
    assert_eq!(cookie.len(), 24);
    assert_eq!(cookie[..8], client_cookie);
    let parsed = Cookie::parse(&cookie).unwrap();
    assert!(
        parsed.is_valid(&secret(), client, now()),
        "server cookie does not verify"
    );
    // The same cookie sent back is accepted: a normal answer with a cookie.
    let again = server
        .raw_udp(&packet(NAME, 1, 1, 0, &option(10, &cookie)))
        .await
        .unwrap();
    assert_eq!(rcode(&again), 0);
    assert_eq!(
        addresses(&hickory_proto::op::Message::from_vec(&again).unwrap()).len(),
        3
    );
    // A wrong server cookie: still a normal answer, with a fresh valid cookie.
    let mut wrong = cookie.clone();
    wrong[20] ^= 0xff;
    let fixed = server
        .raw_udp(&packet(NAME, 1, 1, 0, &option(10, &wrong)))
        .await
        .unwrap();
    assert_eq!(rcode(&fixed), 0);
    let fresh = answer_options(&fixed)
        .into_iter()
        .find(|(c, _)| *c == 10)
        .unwrap()
        .1;
    assert_ne!(fresh, wrong);
    assert!(
        Cookie::parse(&fresh)
            .unwrap()
            .is_valid(&secret(), client, now())
    );
    // A stale one (timestamp two hours old, hash right for it): a fresh cookie too.
    let stale = Cookie::parse(&client_cookie)
        .unwrap()
        .reply(&secret(), client, now() - 7200);
    let answer = server
        .raw_udp(&packet(NAME, 1, 1, 0, &option(10, &stale)))
        .await
        .unwrap();
    let renewed = answer_options(&answer)
        .into_iter()
        .find(|(c, _)| *c == 10)
        .unwrap()
        .1;
    assert!(
        Cookie::parse(&renewed)
            .unwrap()
            .is_valid(&secret(), client, now())
    );
    // Bad lengths are FORMERR.
    for len in [4usize, 12, 41] {
        let bad = server
            .raw_udp(&packet(NAME, 1, 1, 0, &option(10, &vec![1; len])))
            .await
            .unwrap();
        assert_eq!(rcode(&bad), 1, "cookie of {len} bytes");
    }
    // QDCOUNT 0 with a cookie: NOERROR with a cookie, no question.
    let only = server
        .raw_udp(&packet(b"", 0, 0, 0, &option(10, &client_cookie)))
        .await
        .unwrap();
    assert_eq!(rcode(&only), 0);
    assert_eq!(u16::from_be_bytes([only[4], only[5]]), 0);
    assert!(
        answer_options(&only)
            .iter()
            .any(|(c, d)| *c == 10 && d.len() == 24)
    );
    server.stop().await;
}

#[tokio::test]
async fn nsid_identity_names_ede_and_any() {
    let server = TestServer::start_with(&config(), &feed(), ServerOptions::default()).await;
    // NSID when asked, not otherwise.
    let a = server
        .raw_udp(&packet(NAME, 1, 1, 0, &option(3, &[])))
        .await
        .unwrap();
    assert!(answer_options(&a).contains(&(3, b"ns-test-1".to_vec())));
    let b = server.raw_udp(&packet(NAME, 1, 1, 0, &[])).await.unwrap();
    assert!(answer_options(&b).iter().all(|(c, _)| *c != 3));
    // hostname.bind / id.server on; version.bind turned off → REFUSED with EDE 18.
    for name in [&b"\x08hostname\x04bind\x00"[..], b"\x02id\x06server\x00"] {
        let a = server.raw_udp(&packet(name, 16, 3, 0, &[])).await.unwrap();
        assert_eq!(rcode(&a), 0);
        let m = hickory_proto::op::Message::from_vec(&a).unwrap();
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].dns_class, hickory_proto::rr::DNSClass::CH);
        assert!(
            a.windows(7).any(|w| w == b"\x06host-a"),
            "TXT is not \"host-a\""
        );
    }
    let off = server
        .raw_udp(&packet(b"\x07version\x04bind\x00", 16, 3, 0, &[]))
        .await
        .unwrap();
    assert_eq!(rcode(&off), 5);
    let ede = answer_options(&off)
        .into_iter()
        .find(|(c, _)| *c == 15)
        .expect("EDE");
    assert_eq!(ede.1[..2], 18u16.to_be_bytes());
    // Outside the zone: REFUSED, EDE 20; AXFR: REFUSED, EDE 18; unknown opcode: NOTIMP, EDE 21.
    let out = server
        .raw_udp(&packet(b"\x07example\x03com\x00", 1, 1, 0, &[]))
        .await
        .unwrap();
    assert_eq!(rcode(&out), 5);
    assert!(
        answer_options(&out)
            .iter()
            .any(|(c, d)| *c == 15 && d[..2] == 20u16.to_be_bytes())
    );
    let axfr = server.raw_tcp(&packet(NAME, 252, 1, 0, &[])).await.unwrap();
    assert_eq!(rcode(&axfr), 5);
    assert!(
        answer_options(&axfr)
            .iter()
            .any(|(c, d)| *c == 15 && d[..2] == 18u16.to_be_bytes())
    );
    let notimp = server.raw_udp(&packet(NAME, 1, 1, 2, &[])).await.unwrap();
    assert_eq!(rcode(&notimp), 4);
    assert!(
        answer_options(&notimp)
            .iter()
            .any(|(c, d)| *c == 15 && d[..2] == 21u16.to_be_bytes())
    );
    // Without EDNS no EDE can be sent: the REFUSED answer has no additional record.
    let mut plain = query("example.com.", hickory_proto::rr::RecordType::A);
    plain.metadata.id = 7;
    let r = server.udp(&plain).await;
    assert!(r.edns.is_none());
    // ANY: one RRset only (RFC 8482), never the whole node.
    for (name, wanted) in [
        ("@", "A"),
        ("0", "A"),
        ("www", "CNAME"),
        ("_ntp._udp", "SRV"),
    ] {
        let r = server
            .udp(&query(name, hickory_proto::rr::RecordType::ANY))
            .await;
        let types: std::collections::BTreeSet<String> = r
            .answers
            .iter()
            .map(|rr| rr.record_type().to_string())
            .collect();
        assert_eq!(
            types.into_iter().collect::<Vec<_>>(),
            [wanted.to_owned()],
            "ANY at {name}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn tcp_keepalive_is_announced_over_tcp_only() {
    let options = ServerOptions {
        tcp_idle_timeout: Duration::from_secs(7),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(&config(), &feed(), options).await;
    let tcp = server
        .raw_tcp(&packet(NAME, 1, 1, 0, &option(11, &[])))
        .await
        .unwrap();
    assert!(answer_options(&tcp).contains(&(11, 70u16.to_be_bytes().to_vec())));
    let udp = server
        .raw_udp(&packet(NAME, 1, 1, 0, &option(11, &[])))
        .await
        .unwrap();
    assert!(answer_options(&udp).iter().all(|(c, _)| *c != 11));
    // A query may not carry a timeout (RFC 7828 §3.2.1).
    let bad = server
        .raw_tcp(&packet(NAME, 1, 1, 0, &option(11, &[0, 5])))
        .await
        .unwrap();
    assert_eq!(rcode(&bad), 1);
    server.stop().await;
}

/// True when the peer closed the stream within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_connection_over_the_cap_closes_the_most_idle_one() {
    let options = ServerOptions {
        tcp_max_connections: 2,
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(&config(), &feed(), options).await;
    let q = query("0", hickory_proto::rr::RecordType::A)
        .to_vec()
        .unwrap();
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    // The second is active, the first idle since it connected.
    write_framed(&mut second, &q).await.unwrap();
    assert!(read_framed(&mut second).await.is_some());
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    write_framed(&mut third, &q).await.unwrap();
    assert!(
        read_framed(&mut third).await.is_some(),
        "the new connection is served"
    );
    assert!(
        closed_within(&mut first, Duration::from_secs(2)).await,
        "the idlest was not closed"
    );
    write_framed(&mut second, &q).await.unwrap();
    assert!(
        read_framed(&mut second).await.is_some(),
        "an active connection was closed"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_the_connection() {
    let server = TestServer::start_with(&config(), &feed(), ServerOptions::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    stream.write_all(&[0xff, 0xff]).await.unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(2)).await);
    server.stop().await;
}
