//! Hot swap of the feed (DESIGN §5) against the running server: a replaced feed file (renamed
//! over, or rewritten in place) is picked up within 2 seconds; the SOA serial follows the
//! feed's; a feed that is not a feed, or that would drop more than half of the eligible
//! servers, is refused and the old servers keep being served, exactly; bad single entries
//! are skipped and the rest is served; and under a steady stream of queries while the feed is
//! rewritten again and again, every answer is whole and comes from one feed or the other.
//!
//! A refusal leaves nothing to poll for (the reloader's `last_refusal` is not reachable
//! through the running server), so refusals are checked by querying throughout a window
//! longer than the 2-second pick-up promise, and then by showing that a later good feed is
//! still accepted.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use tokio::net::UdpSocket;

use crate::harness::*;

/// How long a new feed may take to be served (DESIGN §5 as promised to operators).
const PICK_UP: Duration = Duration::from_secs(2);

/// How long a refused feed is watched for: longer than [`PICK_UP`].
const REFUSAL_WINDOW: Duration = Duration::from_millis(2500);

#[tokio::test]
async fn feed_renamed_over_the_old_one_is_served_within_2_seconds() {
    let server = TestServer::start(&feed_json(&old_set())).await;
    ready(&server).await;
    server.replace_feed(&feed_json(&new_set()));
    assert_switches_to(&server, &addresses_of(&new_set())).await;
    server.stop().await;
}

#[tokio::test]
async fn feed_rewritten_in_place_is_served_within_2_seconds() {
    let server = TestServer::start(&feed_json(&old_set())).await;
    ready(&server).await;
    std::fs::write(&server.feed_path, feed_json(&new_set())).unwrap();
    assert_switches_to(&server, &addresses_of(&new_set())).await;
    // And back, the same way: the watch survives a reload.
    std::fs::write(&server.feed_path, feed_json(&old_set())).unwrap();
    assert_switches_to(&server, &addresses_of(&old_set())).await;
    server.stop().await;
}

#[tokio::test]
async fn soa_serial_follows_the_feed_serial() {
    let server = TestServer::start(&feed_json(&old_set())).await;
    assert_eq!(soa_serial(&server).await, 2026112201);
    server.replace_feed(&with_serial(&feed_json(&old_set()), 2026112317));
    let started = Instant::now();
    let followed = eventually(PICK_UP, async || soa_serial(&server).await == 2026112317).await;
    assert!(followed, "serial still {}", soa_serial(&server).await);
    assert!(started.elapsed() <= PICK_UP + Duration::from_millis(200));
    // A serial going down is a feed's business, not ours: it is followed too.
    server.replace_feed(&with_serial(&feed_json(&new_set()), 7));
    assert!(eventually(PICK_UP, async || soa_serial(&server).await == 7).await);
    server.stop().await;
}

#[tokio::test]
async fn feed_that_is_not_json_is_refused_and_a_later_good_one_accepted() {
    assert_refused_then_recovers(&[
        "{\"serial\": 2026112399, \"servers\": [".to_owned(), // cut short
        "this is not JSON".to_owned(),
        String::new(),
    ])
    .await;
}

#[tokio::test]
async fn feed_of_the_wrong_shape_is_refused_and_a_later_good_one_accepted() {
    assert_refused_then_recovers(&[
        "[]".to_owned(),
        "{\"serial\": 2026112399}".to_owned(),
        "{\"serial\": 2026112399, \"servers\": 5}".to_owned(),
        "{\"serial\": -1, \"servers\": []}".to_owned(),
        format!(
            "{{\"serial\": 2026112399, \"servers\": {{\"a\": {}}}}}",
            feed_json(&new_set())
        ),
    ])
    .await;
}

#[tokio::test]
async fn feed_dropping_more_than_half_of_the_eligible_servers_is_refused() {
    let server = TestServer::start(&feed_json(&old_set())).await;
    ready(&server).await;
    let old = addresses_of(&old_set());
    // 10 → 4: six of ten gone at once.
    let four: Vec<S> = old_set().into_iter().take(4).collect();
    server.replace_feed(&with_serial(&feed_json(&four), 2026112399));
    assert_keeps_serving(&server, &old).await;
    // Also when the rest is not gone but ineligible (score below 10, or net speed 0).
    let mut demoted = old_set();
    for (i, s) in demoted.iter_mut().enumerate().skip(4) {
        if i % 2 == 0 {
            s.score = 5.0;
        } else {
            s.netspeed = 0;
        }
    }
    server.replace_feed(&with_serial(&feed_json(&demoted), 2026112399));
    assert_keeps_serving(&server, &old).await;
    // A complete replacement of the same size is fine.
    server.replace_feed(&feed_json(&new_set()));
    assert_switches_to(&server, &addresses_of(&new_set())).await;
    server.stop().await;
}

#[tokio::test]
async fn feed_dropping_fewer_than_half_of_the_eligible_servers_is_accepted() {
    let server = TestServer::start(&feed_json(&old_set())).await;
    ready(&server).await;
    // 10 → 6.
    let six: Vec<S> = old_set().into_iter().take(6).collect();
    server.replace_feed(&with_serial(&feed_json(&six), 2026112306));
    // The new set is a subset of the old one, so an old answer can look switched by chance:
    // wait for the new serial (within the promised time), then check the answers.
    let started = std::time::Instant::now();
    let switched = eventually(PICK_UP, async || soa_serial(&server).await == 2026112306).await;
    assert!(switched, "not switched after {:?}", started.elapsed());
    assert_switches_to(&server, &addresses_of(&six)).await;
    server.stop().await;
}

#[tokio::test]
async fn bad_entries_are_skipped_and_the_rest_is_served() {
    // Four good servers (so every answer carries all of them) and bad ones that would
    // show up in answers if they were not skipped.
    let good = [
        r#"{"id": 1, "ip": "192.0.2.1", "netspeed": 1000, "score": 19, "country": "de"}"#,
        r#"{"id": 2, "ip": "192.0.2.2", "netspeed": 1000, "score": 19, "country": "de"}"#,
        r#"{"id": 3, "ip": "192.0.2.3", "netspeed": 1000, "score": 19, "country": "de"}"#,
        r#"{"id": 4, "ip": "192.0.2.4", "netspeed": 1000, "score": 19, "country": "de"}"#,
    ];
    let bad = [
        r#"{"id": 11, "ip": "192.0.2", "netspeed": 1000, "score": 19, "country": "de"}"#,
        r#"{"id": 12, "ip": "192.0.2.300", "netspeed": 1000, "score": 19, "country": "de"}"#,
        r#"{"id": 13, "ip": "192.0.2.13", "netspeed": 1000, "score": 19, "country": "xx"}"#,
        r#"{"id": 14, "ip": "192.0.2.14", "netspeed": -1000, "score": 19, "country": "de"}"#,
        r#"{"id": 15, "ip": "192.0.2.15", "netspeed": 1.5, "score": 19, "country": "de"}"#,
        // Same address as id 1, in another continent: if it were kept, `jp` would have a
        // server of its own.
        r#"{"id": 16, "ip": "192.0.2.1", "netspeed": 1000, "score": 19, "country": "jp"}"#,
        r#"{"id": 17, "ip": "192.0.2.17", "score": 19, "country": "de"}"#,
        r#""not an object""#,
    ];
    let feed = |entries: &[&str], serial: u32| {
        format!(
            "{{\"serial\": {serial}, \"servers\": [\n{}\n]}}\n",
            entries.join(",\n")
        )
    };
    let expected: BTreeSet<IpAddr> = (1..=4)
        .map(|i| format!("192.0.2.{i}").parse().unwrap())
        .collect();
    let mixed: Vec<&str> = good.iter().chain(&bad).copied().collect();

    // At startup…
    let server = TestServer::start(&feed(&mixed, 1)).await;
    assert_serves_exactly(&server, &expected).await;
    // …and on reload, with the bad entries first.
    server.replace_feed(&feed(
        &[
            &good[..2],
            &bad[..],
            &[good[2].replace("192.0.2.3", "192.0.2.33").as_str()],
        ]
        .concat(),
        2,
    ));
    let mut expected: BTreeSet<IpAddr> = expected;
    expected.remove(&"192.0.2.3".parse().unwrap());
    expected.remove(&"192.0.2.4".parse().unwrap());
    expected.insert("192.0.2.33".parse().unwrap());
    let reloaded = eventually(PICK_UP, async || soa_serial(&server).await == 2).await;
    assert!(reloaded, "feed with bad entries not loaded");
    assert_serves_exactly(&server, &expected).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_stay_whole_and_from_one_feed_while_the_feed_is_rewritten_under_load() {
    let server = Arc::new(TestServer::start(&feed_json(&old_set())).await);
    ready(&server).await;
    let old = addresses_of(&old_set());
    let new = addresses_of(&new_set());
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for task in 0..4u16 {
        let (server, stop, answered) = (server.clone(), stop.clone(), answered.clone());
        let (old, new) = (old.clone(), new.clone());
        clients.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut seen = [0usize; 2];
            let mut id = task << 12;
            while !stop.load(Ordering::Relaxed) {
                id = (id & 0xf000) | ((id + 1) & 0x0fff);
                let name = ["@", "0", "1", "2", "3"][usize::from(id) % 5];
                let r = ask_a(&socket, server.addr, name, id).await;
                assert_eq!(r.metadata.response_code, ResponseCode::NoError);
                let got: BTreeSet<IpAddr> = addresses(&r).into_iter().collect();
                // The apex carries 4 of the 10; a numbered name all of its subset.
                if name == "@" {
                    assert_eq!(got.len(), 4, "{name}: {got:?}");
                } else {
                    assert!(!got.is_empty(), "{name}: empty answer");
                }
                if got.is_subset(&old) {
                    seen[0] += 1;
                } else if got.is_subset(&new) {
                    seen[1] += 1;
                } else {
                    panic!("{name}: answer mixes or invents servers: {got:?}");
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }

    // Alternate feeds, half renamed over, half rewritten in place; wait for each to be
    // served before writing the next.
    for round in 0..8 {
        let (set, addrs) = if round % 2 == 0 {
            (new_set(), &new)
        } else {
            (old_set(), &old)
        };
        if round % 4 < 2 {
            server.replace_feed(&feed_json(&set));
        } else {
            std::fs::write(&server.feed_path, feed_json(&set)).unwrap();
        }
        assert_switches_to(&server, addrs).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = [0usize; 2];
    for c in clients {
        let s = c.await.expect("a client saw a wrong answer");
        seen[0] += s[0];
        seen[1] += s[1];
    }
    assert!(seen[0] > 50 && seen[1] > 50, "answers per feed: {seen:?}");
    assert_eq!(answered.load(Ordering::Relaxed), seen[0] + seen[1]);
    Arc::into_inner(server).expect("clients done").stop().await;
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Ten equal servers in 192.0.2.0/24 (every server is in 40 % of the answers).
/// Issue 12 item 1: a reload whose build straddled a rotation boundary published the
/// epoch that had just ended, and the run loop slept until the boundary after the next:
/// that instance served another split than the fleet for a whole rotation period. The
/// clock here moves 0.3 s each time the reloader reads it, so every build straddles a
/// boundary that lies 0.29 s after the reload starts.
#[tokio::test]
async fn a_reload_straddling_a_rotation_boundary_publishes_the_new_epoch() {
    use std::sync::atomic::AtomicU64;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("zone.toml");
    let feed = dir.path().join("servers.json");
    std::fs::write(&config, format!("{CONFIG}\n[answers]\nrotation = 8\n")).unwrap();
    std::fs::write(&feed, feed_json(&old_set())).unwrap();
    let mut reloader = pooldns::reload::Reloader::load(pooldns::reload::Sources {
        config,
        feed: feed.clone(),
        geoip: Some(repo(TEST_GEOIP)),
        ..Default::default()
    })
    .expect("load");
    // Milliseconds since 1970; each read moves it on by 300 ms.
    let boundary_ms: u64 = 8 * 250_000_000;
    let now_ms = Arc::new(AtomicU64::new(boundary_ms - 290));
    let clock_ms = now_ms.clone();
    reloader.set_clock(pooldns::reload::Clock::new(move || {
        let ms = clock_ms.fetch_add(300, Ordering::SeqCst);
        std::time::UNIX_EPOCH + Duration::from_millis(ms)
    }));
    let table = reloader.table();
    std::fs::write(&feed, feed_json(&new_set())).unwrap();
    reloader.reload_feed().expect("reload");
    let published = table.load().epoch;
    let clock_epoch = now_ms.load(Ordering::SeqCst) / 8_000;
    assert_eq!(clock_epoch, 250_000, "the boundary was crossed");
    assert_eq!(
        published, clock_epoch,
        "the table kept the epoch that ended"
    );
    // A rotation that is due, whose build straddles the boundary after it: the published
    // table is the clock's again.
    now_ms.store(boundary_ms + 16_000 - 590, Ordering::SeqCst);
    assert!(reloader.rotate_if_due());
    assert_eq!(now_ms.load(Ordering::SeqCst) / 8_000, 250_002);
    assert_eq!(table.load().epoch, 250_002);
}

// ---------------------------------------------------------------------------------------
// The shrink guard's gaps (issue 12 item 7): startup, configuration reloads, and a series of
// drops each just under half; the last good feed kept beside the server.

/// Inputs in a temporary directory, with a state directory beside them.
struct Guarded {
    dir: tempfile::TempDir,
}

impl Guarded {
    fn new(feed: &[S]) -> Guarded {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("zone.toml"), CONFIG).unwrap();
        let g = Guarded { dir };
        g.write_feed(&feed_json(feed));
        g
    }

    fn write_feed(&self, text: &str) {
        std::fs::write(self.dir.path().join("servers.json"), text).unwrap();
    }

    fn sources(&self, feed: PathBuf, accept_shrink: bool) -> pooldns::reload::Sources {
        pooldns::reload::Sources {
            config: self.dir.path().join("zone.toml"),
            feed,
            geoip: Some(repo(TEST_GEOIP)),
            state: Some(self.dir.path().join("state")),
            accept_shrink,
            demand: None,
        }
    }

    /// Starts a reloader (a server's start) on the feed file.
    fn start(&self) -> Result<pooldns::reload::Reloader, pooldns::reload::LoadError> {
        pooldns::reload::Reloader::load(self.sources(self.dir.path().join("servers.json"), false))
    }
}

fn serving(reloader: &pooldns::reload::Reloader) -> BTreeSet<IpAddr> {
    let table = reloader.table().load_full();
    table.members.iter().map(|m| m.ip).collect()
}

#[test]
fn a_restart_on_a_broken_or_shrunk_feed_serves_the_last_good_one() {
    let servers = old_set();
    let g = Guarded::new(&servers);
    drop(g.start().expect("first start"));
    // The source is broken at the restart: the last good feed serves, the refusal shows.
    g.write_feed("{\"servers\": [\n");
    let r = g.start().expect("a restart with a kept feed does not fail");
    assert_eq!(serving(&r), addresses_of(&servers));
    let (_, input, why) = r.last_refusal().expect("reported");
    assert_eq!(input, pooldns::reload::Input::Feed);
    assert!(why.contains("not a feed"), "{why}");
    drop(r);
    // A feed with 2 of the 10: refused at startup as it is by running peers.
    g.write_feed(&feed_json(&servers[..2]));
    let r = g.start().expect("start");
    assert_eq!(serving(&r), addresses_of(&servers));
    let (_, _, why) = r.last_refusal().expect("reported");
    assert!(
        why.contains("it has 2 eligible servers where the pool had up to 10"),
        "{why}"
    );
    drop(r);
    // Unless the operator accepts it.
    let feed = g.dir.path().join("servers.json");
    let r = pooldns::reload::Reloader::load(g.sources(feed, true)).expect("start");
    assert_eq!(serving(&r), addresses_of(&servers[..2]));
    assert!(r.last_refusal().is_none());
    drop(r);
    // A feed URL that does not answer: the last good feed (now the 2) serves.
    let url = format!("http://127.0.0.1:{}/servers.json", free_port());
    let r = pooldns::reload::Reloader::load(g.sources(url.into(), false)).expect("start");
    assert_eq!(serving(&r), addresses_of(&servers[..2]));
    assert!(r.last_refusal().is_some());
    // Without a state directory nothing is kept, and a broken source is fatal as before.
    let mut sources = g.sources(g.dir.path().join("servers.json"), false);
    sources.state = None;
    g.write_feed("garbage");
    assert!(pooldns::reload::Reloader::load(sources).is_err());
}

#[test]
fn a_configuration_that_makes_most_servers_ineligible_is_refused() {
    let servers = old_set();
    let g = Guarded::new(&servers);
    let mut r = g.start().expect("start");
    // min_score 20 makes every server (score 19) ineligible.
    let config = g.dir.path().join("zone.toml");
    std::fs::write(&config, format!("{CONFIG}\n[answers]\nmin_score = 20\n")).unwrap();
    let e = r.reload_all().expect_err("refused");
    assert_eq!(e.input(), pooldns::reload::Input::Config);
    let text = e.to_string();
    assert!(text.starts_with(&config.display().to_string()), "{text}");
    assert!(
        text.contains("with it 0 servers are eligible where the pool had up to 10"),
        "{text}"
    );
    assert_eq!(serving(&r), addresses_of(&servers));
    assert_eq!(r.table().load().config.min_score, 10.0);
    // Accepted when the operator says so.
    let reply = r.reload_for_operator(true);
    assert!(reply.is_ok(), "{reply:?}");
    assert_eq!(r.table().load().config.min_score, 20.0);
}

#[test]
fn a_series_of_drops_each_under_half_cannot_walk_the_pool_down() {
    let servers = old_set();
    let g = Guarded::new(&servers);
    let mut r = g.start().expect("start");
    // 10 → 6 → 4: each step keeps more than half of the one before.
    g.write_feed(&feed_json(&servers[..6]));
    r.reload_all().expect("6 of 10 is accepted");
    g.write_feed(&feed_json(&servers[..4]));
    let e = r.reload_all().expect_err("4 of the hour's 10 is refused");
    assert!(
        e.to_string()
            .contains("it has 4 eligible servers where the pool had up to 10"),
        "{e}"
    );
    assert_eq!(serving(&r), addresses_of(&servers[..6]));
}

fn old_set() -> Vec<S> {
    const IPS: [&str; 10] = [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.4",
        "192.0.2.5",
        "192.0.2.6",
        "192.0.2.7",
        "192.0.2.8",
        "192.0.2.9",
        "192.0.2.10",
    ];
    IPS.iter()
        .enumerate()
        .map(|(i, ip)| s(100 + i as u64, ip, 10_000, ["de", "fr", "us"][i % 3]))
        .collect()
}

/// Ten other equal servers in 198.51.100.0/24.
fn new_set() -> Vec<S> {
    const IPS: [&str; 10] = [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
        "198.51.100.5",
        "198.51.100.6",
        "198.51.100.7",
        "198.51.100.8",
        "198.51.100.9",
        "198.51.100.10",
    ];
    IPS.iter()
        .enumerate()
        .map(|(i, ip)| s(200 + i as u64, ip, 10_000, ["nl", "jp", "br"][i % 3]))
        .collect()
}

fn addresses_of(servers: &[S]) -> BTreeSet<IpAddr> {
    servers.iter().map(|s| s.ip.parse().unwrap()).collect()
}

/// The feed with another serial.
fn with_serial(feed: &str, serial: u32) -> String {
    let replaced = feed.replacen(
        "\"serial\": 2026112201",
        &format!("\"serial\": {serial}"),
        1,
    );
    assert_ne!(replaced, feed, "feed_json's serial changed");
    replaced
}

/// One round trip, so that the reload task has run and watches the feed before the test
/// touches it (TestServer::start returns before the watch is set up).
async fn ready(server: &TestServer) {
    assert_eq!(
        server
            .udp(&query("@", RecordType::SOA))
            .await
            .metadata
            .response_code,
        ResponseCode::NoError
    );
}

async fn soa_serial(server: &TestServer) -> u32 {
    let r = server.udp(&query("@", RecordType::SOA)).await;
    match r.answers.first().map(|a| &a.data) {
        Some(RData::SOA(soa)) => soa.serial,
        other => panic!("no SOA: {other:?}"),
    }
}

/// Polls until an apex answer comes from `set` alone, within [`PICK_UP`]; then checks that
/// the next answers do too (the swap is whole and final).
async fn assert_switches_to(server: &TestServer, set: &BTreeSet<IpAddr>) {
    let started = Instant::now();
    let in_set = async || {
        let got = server.addresses("@", RecordType::A).await;
        got.len() == 4 && got.iter().all(|a| set.contains(a))
    };
    let switched = eventually(PICK_UP, in_set).await;
    let took = started.elapsed();
    assert!(
        switched && took <= PICK_UP + Duration::from_millis(250),
        "not switched to {set:?} after {took:?}"
    );
    for name in ["@", "0", "1", "2", "3", "de", "europe"] {
        for _ in 0..10 {
            let got = server.addresses(name, RecordType::A).await;
            assert!(
                !got.is_empty() && got.iter().all(|a| set.contains(a)),
                "{name} after the switch: {got:?}"
            );
        }
    }
}

/// Queries throughout [`REFUSAL_WINDOW`]: every answer comes from `set` and, over the
/// window, every server of it shows up.
async fn assert_keeps_serving(server: &TestServer, set: &BTreeSet<IpAddr>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let started = Instant::now();
    let mut seen = BTreeSet::new();
    let mut answers = 0;
    let mut id = 0u16;
    while started.elapsed() < REFUSAL_WINDOW {
        id = id.wrapping_add(1);
        let r = ask_a(&socket, server.addr, "@", id).await;
        let got = addresses(&r);
        assert_eq!(got.len(), 4);
        assert!(
            got.iter().all(|a| set.contains(a)),
            "refused feed served after {:?}: {got:?}",
            started.elapsed()
        );
        seen.extend(got);
        answers += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(answers >= 50, "only {answers} answers in the window");
    assert_eq!(&seen, set, "not every old server was still served");
}

/// Serves `set` exactly: every answer is all of it (at most 4 servers), and `jp` (which
/// has no server of its own) falls back to the global zone.
async fn assert_serves_exactly(server: &TestServer, set: &BTreeSet<IpAddr>) {
    assert!(set.len() <= 4);
    for name in ["@", "0", "de", "jp"] {
        for _ in 0..30 {
            let got: BTreeSet<IpAddr> = server
                .addresses(name, RecordType::A)
                .await
                .into_iter()
                .collect();
            assert_eq!(&got, set, "{name}");
        }
    }
}

/// The good feed after a bad one: the bad ones are refused, the good one is served.
async fn assert_refused_then_recovers(bad_feeds: &[String]) {
    let server = TestServer::start(&feed_json(&old_set())).await;
    ready(&server).await;
    let old = addresses_of(&old_set());
    for (i, bad) in bad_feeds.iter().enumerate() {
        if i % 2 == 0 {
            server.replace_feed(bad);
        } else {
            std::fs::write(&server.feed_path, bad).unwrap();
        }
    }
    assert_keeps_serving(&server, &old).await;
    assert_eq!(soa_serial(&server).await, 2026112201);
    server.replace_feed(&with_serial(&feed_json(&new_set()), 2026112302));
    assert_switches_to(&server, &addresses_of(&new_set())).await;
    assert_eq!(soa_serial(&server).await, 2026112302);
    server.stop().await;
}
