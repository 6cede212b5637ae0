//! The serving plan against the real server (issue 9): queries with ECS addresses from
//! several countries, in proportion to a demand file, and the records each server gets
//! counted and compared with the plan's expected load per server by a chi-square test.
//! In zones mode the lone British server would take all of the UK's demand; the plan caps
//! it at `max_load` times its fair share.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use pooldns::table::{Family, ZoneId};

use crate::harness::*;

/// Countries of the test GeoIP database, an address in each, and their demand weights.
const CLIENTS: [(&str, &str, f64); 5] = [
    ("gb", "81.2.69.142", 40.0),
    ("se", "89.160.20.112", 10.0),
    ("us", "216.160.83.56", 25.0),
    ("cn", "175.16.199.1", 15.0),
    ("ph", "202.196.224.1", 10.0),
];

/// One server in the UK, six in Sweden, eight in the US of mixed speeds, two in China;
/// none in the Philippines.
fn servers() -> Vec<S> {
    let mut v = vec![s(1, "192.0.2.1", 10_000, "gb")];
    let se = [
        "192.0.2.11",
        "192.0.2.12",
        "192.0.2.13",
        "192.0.2.14",
        "192.0.2.15",
        "192.0.2.16",
    ];
    for (i, ip) in se.into_iter().enumerate() {
        v.push(s(10 + i as u64, ip, 10_000, "se"));
    }
    let us = [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
        "198.51.100.5",
        "198.51.100.6",
        "198.51.100.7",
        "198.51.100.8",
    ];
    for (i, ip) in us.into_iter().enumerate() {
        v.push(s(
            20 + i as u64,
            ip,
            [5_000, 10_000, 20_000, 50_000][i % 4],
            "us",
        ));
    }
    v.push(s(30, "203.0.113.1", 20_000, "cn"));
    v.push(s(31, "203.0.113.2", 20_000, "cn"));
    v
}

fn demand_json() -> String {
    let v4: Vec<String> = CLIENTS
        .iter()
        .map(|(cc, _, w)| format!("\"{cc}\": {w}"))
        .collect();
    format!("{{\"v4\": {{{}}}}}", v4.join(", "))
}

/// Sends `n` queries for `name` A with ECS `address`/32 (and the DO bit with
/// `dnssec_ok`), 64 at a time; counts the addresses answered.
async fn ask_many(
    addr: SocketAddr,
    name: &str,
    address: &str,
    n: usize,
    dnssec_ok: bool,
    counts: &mut BTreeMap<IpAddr, u64>,
) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 2048];
    let window = 64;
    let mut sent = 0usize;
    let mut received = 0usize;
    let mut id: u16 = 0;
    while received < n {
        while sent < n && sent - received < window {
            let mut q = with_ecs(query(name, RecordType::A), address, 32);
            if let Some(edns) = q.edns.as_mut() {
                edns.set_dnssec_ok(dnssec_ok);
            }
            id = id.wrapping_add(1);
            q.metadata.id = id;
            socket.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
            sent += 1;
        }
        match tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await {
            Ok(Ok(len)) => {
                let m = Message::from_vec(&buf[..len]).expect("answer parses");
                let got = addresses(&m);
                assert_eq!(got.len(), 4, "{m:?}");
                for a in got {
                    *counts.entry(a).or_default() += 1;
                }
                received += 1;
            }
            // A lost datagram on loopback (rare): send one more.
            _ => sent -= 1,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_the_plan_per_server() {
    plan_is_followed(false).await;
}

/// The same with the zone signed and the DO bit on every query: signed answers (a CNAME to
/// the drawn source, then its signed variant) keep the plan's loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_answers_follow_the_plan_per_server() {
    plan_is_followed(true).await;
}

async fn plan_is_followed(signed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let demand = dir.path().join("demand.json");
    std::fs::write(&demand, demand_json()).unwrap();
    let mut config = format!(
        "{CONFIG}\n[balance]\nmode = \"plan\"\nmax_load = 1.5\ndemand = \"{}\"\n",
        demand.display()
    );
    if signed {
        for ksk in [true, false] {
            pooldns::dnssec::key::generate("pool.test", 13, ksk, dir.path(), 0).unwrap();
        }
        config.push_str(&format!("[dnssec]\nkeys = \"{}\"\n", dir.path().display()));
    }
    let servers = servers();
    let server = TestServer::start_with(&config, &feed_json(&servers), Default::default()).await;
    let table = server.table.load_full();
    let plan = &table.plan.as_ref().expect("plan mode")[Family::V4 as usize];
    assert!(plan.demand_known, "the demand file was used");

    // Queries in proportion to demand: 30,000 answers, 120,000 records.
    let total: f64 = CLIENTS.iter().map(|c| c.2).sum();
    let answers = 30_000usize;
    let mut counts: BTreeMap<IpAddr, u64> = BTreeMap::new();
    for (i, (_, address, weight)) in CLIENTS.iter().enumerate() {
        let n = (answers as f64 * weight / total).round() as usize;
        // The apex and a vendor name: both draw from the whole source.
        let name = ["@", "debian"][i % 2];
        ask_many(server.addr, name, address, n, signed, &mut counts).await;
    }
    let records: u64 = counts.values().sum();

    // Expected share of records per server: its load ÷ fair times its weight.
    let global = table.zone(ZoneId::Global, Family::V4).all.members();
    let expected: Vec<(IpAddr, f64)> = global
        .iter()
        .map(|&m| {
            let member = &table.members[m as usize];
            (
                member.ip,
                plan.expected[m as usize] * f64::from(member.weight),
            )
        })
        .collect();
    let sum: f64 = expected.iter().map(|e| e.1).sum();
    let mut chi2 = 0.0;
    for &(ip, e) in &expected {
        let e = e / sum * records as f64;
        let o = counts.get(&ip).copied().unwrap_or(0) as f64;
        chi2 += (o - e).powi(2) / e;
    }
    let df = (expected.len() - 1) as f64;
    // Records of one answer are drawn without replacement, which only narrows the spread;
    // the bound is the normal approximation's 6 sigma: a correct server fails it about
    // once in a billion runs.
    let bound = df + 6.0 * (2.0 * df).sqrt();
    eprintln!(
        "plan (signed: {signed}): chi2 {chi2:.1} over {df} degrees of freedom, bound {bound:.1}"
    );
    assert!(
        chi2 < bound,
        "chi2 {chi2:.1} over {df} degrees of freedom: {counts:?}"
    );

    // And the cap: the lone British server gets at most 1.5 times its fair share.
    let fair_share = 10_000.0 / servers.iter().map(|s| f64::from(s.netspeed)).sum::<f64>();
    let lone = counts[&"192.0.2.1".parse::<IpAddr>().unwrap()] as f64 / records as f64;
    assert!(
        lone / fair_share < 1.5 * 1.05,
        "lone server at {:.2}× fair",
        lone / fair_share
    );
    server.stop().await;
}
