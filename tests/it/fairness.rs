//! Fairness of the pick over the real server (DESIGN §3): in a small skewed zone each
//! server's share of answers matches its share of net speed (inclusion probability
//! 4·w/W), checked per server within 6 standard errors and, jointly, with a chi-square test
//! at p < 1e-6; a server heavier than a quarter of its zone is in every answer (inclusion
//! capped at 1) while the others share the rest by net speed; and answers hold 4 distinct
//! servers whose combinations and order vary.
//!
//! Every answer is an independent draw, so a server's inclusion count over n answers is
//! binomial(n, π). The first position of an answer is a uniformly shuffled member of it,
//! so it is server i with probability π_i/4 exactly, independently per answer: the counts
//! of first positions are multinomial, which is what the chi-square test needs.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use tokio::net::UdpSocket;

use crate::harness::*;

/// Answers asked per zone.
const QUERIES: usize = 20_000;

/// Concurrent clients.
const CLIENTS: usize = 8;

/// A small country zone: two big servers, a few mid-size, several small ones; nobody has
/// more than a quarter of the 209,500 kbit/s total.
pub(crate) const SKEWED: [(&str, u32); 10] = [
    ("192.0.2.1", 50_000),
    ("192.0.2.2", 50_000),
    ("192.0.2.3", 25_000),
    ("192.0.2.4", 25_000),
    ("192.0.2.5", 25_000),
    ("192.0.2.6", 12_000),
    ("192.0.2.7", 12_000),
    ("192.0.2.8", 6_000),
    ("192.0.2.9", 3_000),
    ("192.0.2.10", 1_500),
];

/// One server with far more than a quarter of the zone, and seven others (100,000 kbit/s
/// together, none above a third of that, so none is capped after the heavy one).
const HEAVY: [(&str, u32); 8] = [
    ("198.51.100.1", 1_000_000),
    ("198.51.100.2", 30_000),
    ("198.51.100.3", 20_000),
    ("198.51.100.4", 20_000),
    ("198.51.100.5", 10_000),
    ("198.51.100.6", 10_000),
    ("198.51.100.7", 5_000),
    ("198.51.100.8", 5_000),
];

/// Chi-square critical values at p = 1e-6 by degrees of freedom.
const CHI2_7: f64 = 40.52;
const CHI2_9: f64 = 44.81;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shares_of_answers_match_net_speed_shares_in_a_small_skewed_zone() {
    let server = TestServer::start(&zones_feed()).await;
    let answers = collect(&server, "de", QUERIES).await;
    let servers = ips(&SKEWED);
    assert_answers_are_4_distinct_of(&answers, &servers);

    let total: f64 = SKEWED.iter().map(|&(_, w)| f64::from(w)).sum();
    let expected: Vec<f64> = SKEWED
        .iter()
        .map(|&(_, w)| 4.0 * f64::from(w) / total)
        .collect();
    assert!(
        expected.iter().all(|&p| p < 1.0),
        "test zone has a capped server"
    );
    assert_inclusion_within_6_se(&answers, &servers, &expected);
    assert_first_positions_fit(&answers, &servers, &expected, CHI2_9);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_heavier_than_a_quarter_is_in_every_answer_and_the_rest_share_by_net_speed() {
    let server = TestServer::start(&zones_feed()).await;
    let answers = collect(&server, "nl", QUERIES).await;
    let servers = ips(&HEAVY);
    assert_answers_are_4_distinct_of(&answers, &servers);

    let heavy = servers[0];
    let missing = answers.iter().filter(|a| !a.contains(&heavy)).count();
    assert_eq!(missing, 0, "heavy server missing from {missing} answers");

    // The other seven share the remaining 3 places by net speed.
    let rest: f64 = HEAVY[1..].iter().map(|&(_, w)| f64::from(w)).sum();
    let expected: Vec<f64> = std::iter::once(1.0)
        .chain(HEAVY[1..].iter().map(|&(_, w)| 3.0 * f64::from(w) / rest))
        .collect();
    assert!(expected[1..].iter().all(|&p| p < 1.0));
    assert_inclusion_within_6_se(&answers, &servers, &expected);
    // The heavy server is first in a quarter of the answers, not always.
    assert_first_positions_fit(&answers, &servers, &expected, CHI2_7);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_vary_in_combination_and_order() {
    let server = TestServer::start(&zones_feed()).await;
    let n = 4000;
    let answers = collect(&server, "de", n).await;
    let servers = ips(&SKEWED);
    assert_answers_are_4_distinct_of(&answers, &servers);

    // One systematic-sampling order over 10 servers gives at most 10 different sets; the
    // design keeps several orders (DESIGN §3), so many more show up.
    let sets: BTreeSet<BTreeSet<IpAddr>> = answers
        .iter()
        .map(|a| a.iter().copied().collect())
        .collect();
    assert!(sets.len() > 40, "only {} distinct answer sets", sets.len());

    // For each of the most common sets, every one of its members comes first sometimes,
    // and the set shows up in several different orders.
    let mut orders: HashMap<BTreeSet<IpAddr>, BTreeSet<Vec<IpAddr>>> = HashMap::new();
    let mut firsts: HashMap<BTreeSet<IpAddr>, BTreeSet<IpAddr>> = HashMap::new();
    let mut counts: HashMap<BTreeSet<IpAddr>, usize> = HashMap::new();
    for a in &answers {
        let set: BTreeSet<IpAddr> = a.iter().copied().collect();
        orders.entry(set.clone()).or_default().insert(a.clone());
        firsts.entry(set.clone()).or_default().insert(a[0]);
        *counts.entry(set).or_default() += 1;
    }
    let mut common: Vec<(&BTreeSet<IpAddr>, &usize)> = counts.iter().collect();
    common.sort_by(|a, b| b.1.cmp(a.1));
    for (set, &count) in common.into_iter().take(3) {
        // count ≥ 4000/210: P(a member never first) ≤ 4·(3/4)^count, negligible.
        assert!(count >= 100, "most common set seen only {count} times");
        assert_eq!(&firsts[set], set, "not every member of {set:?} came first");
        assert!(orders[set].len() >= 12, "{set:?} in only {:?}", orders[set]);
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Both test zones: the skewed one in `de`, the heavy one in `nl`.
fn zones_feed() -> String {
    let servers: Vec<S> = SKEWED
        .iter()
        .map(|&(ip, w)| (ip, w, "de"))
        .chain(HEAVY.iter().map(|&(ip, w)| (ip, w, "nl")))
        .enumerate()
        .map(|(i, (ip, w, country))| s(i as u64 + 1, ip, w, country))
        .collect();
    feed_json(&servers)
}

fn ips(zone: &[(&str, u32)]) -> Vec<IpAddr> {
    zone.iter().map(|&(ip, _)| ip.parse().unwrap()).collect()
}

/// Asks `name` A `n` times over UDP from [`CLIENTS`] concurrent sockets; the answers'
/// addresses in answer order.
async fn collect(server: &TestServer, name: &str, n: usize) -> Vec<Vec<IpAddr>> {
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (addr, name) = (server.addr, name.to_owned());
        let share = n / CLIENTS + usize::from(client < n % CLIENTS);
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut answers = Vec::with_capacity(share);
            for i in 0..share {
                let r = ask_a(&socket, addr, &name, i as u16).await;
                assert_eq!(r.metadata.response_code, ResponseCode::NoError);
                answers.push(addresses(&r));
            }
            answers
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    assert_eq!(all.len(), n);
    all
}

fn assert_answers_are_4_distinct_of(answers: &[Vec<IpAddr>], servers: &[IpAddr]) {
    for a in answers {
        let distinct: BTreeSet<&IpAddr> = a.iter().collect();
        assert_eq!(a.len(), 4, "{a:?}");
        assert_eq!(distinct.len(), 4, "repeated server: {a:?}");
        assert!(a.iter().all(|ip| servers.contains(ip)), "{a:?}");
    }
}

/// Each server's observed inclusion rate is within 6 standard errors of `expected`
/// (exactly when expected is 1).
fn assert_inclusion_within_6_se(answers: &[Vec<IpAddr>], servers: &[IpAddr], expected: &[f64]) {
    let n = answers.len() as f64;
    for (ip, &p) in servers.iter().zip(expected) {
        let count = answers.iter().filter(|a| a.contains(ip)).count() as f64;
        let rate = count / n;
        let se = (p * (1.0 - p) / n).sqrt();
        if p == 1.0 {
            assert_eq!(rate, 1.0, "{ip}");
        } else {
            assert!(
                (rate - p).abs() < 6.0 * se,
                "{ip}: in {rate:.4} of answers, expected {p:.4} ± {:.4}",
                6.0 * se
            );
        }
    }
}

/// Pearson's chi-square on the first position of each answer, which is server i with
/// probability expected_i / 4; fails above `critical` (p = 1e-6 for len − 1 degrees of
/// freedom).
fn assert_first_positions_fit(
    answers: &[Vec<IpAddr>],
    servers: &[IpAddr],
    expected: &[f64],
    critical: f64,
) {
    let n = answers.len() as f64;
    let mut first = vec![0usize; servers.len()];
    for a in answers {
        let i = servers
            .iter()
            .position(|ip| *ip == a[0])
            .expect("known server");
        first[i] += 1;
    }
    let chi2: f64 = first
        .iter()
        .zip(expected)
        .map(|(&observed, &p)| {
            let e = n * p / 4.0;
            (observed as f64 - e).powi(2) / e
        })
        .sum();
    assert!(
        chi2 < critical,
        "chi-square {chi2:.1} ≥ {critical} over first positions {first:?}"
    );
}
