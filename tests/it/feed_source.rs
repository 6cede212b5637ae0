//! Feed sources and reloads of the other inputs (issue 5, "Feed sources and reloads").
//!
//! A feed URL, served by a small HTTP/1.1 responder started here on 127.0.0.1:0: its
//! servers are answered; a new body (new ETag) is answered within the interval; a 304 for
//! the ETag or Last-Modified sent back costs no reload; refused connections, error
//! statuses and garbage are refused with the old servers still answered, requests back off,
//! and a good feed afterwards is accepted; a URL that fails at startup stops the server with
//! a message naming the URL and the cause. The zone configuration and the GeoIP database
//! are watched like the feed file: a change is served without SIGHUP, a broken file is
//! refused and the last good table keeps serving.
//!
//! Bounded inputs (issue 11): a body over the limit, a server that stalls, redirects to
//! another scheme or in a loop, and a feed file over the size limit are refused with a
//! message naming the source and the limit; a redirect within the scheme is followed.
//!
//! Polling runs every second here (plus up to 100 ms of jitter); backoff starts at 1 s and
//! stops at 4 s, so that a whole failure sequence fits in a few seconds.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use pooldns::feed::PollOptions;
use pooldns::feed::source::{Fetched, Fetcher, MAX_REDIRECTS};
use pooldns::reload::{Reloader, Sources};

use crate::harness::*;

/// How long a change may take: the interval, its jitter, and slack for a loaded machine.
const PICK_UP: Duration = Duration::from_secs(3);

fn poll() -> PollOptions {
    PollOptions {
        first_retry: Duration::from_secs(1),
        max_retry: Duration::from_secs(4),
        ..PollOptions::every(Duration::from_secs(1))
    }
}

#[tokio::test]
async fn a_feed_url_is_served_and_a_new_body_is_picked_up_within_the_interval() {
    let http = FeedServer::start(Respond::feed(&old_set(), Some("\"v1\""), None));
    let server = start(&http).await;
    assert_serves(&server, &addresses_of(&old_set())).await;
    assert_eq!(soa_serial(&server).await, 2026112201);

    http.set(Respond::feed_with_serial(
        &new_set(),
        2026112302,
        Some("\"v2\""),
        None,
    ));
    let changed = Instant::now();
    let switched = eventually(PICK_UP, async || {
        serves_only(&server, &addresses_of(&new_set())).await
    })
    .await;
    assert!(
        switched,
        "new feed not served after {:?}",
        changed.elapsed()
    );
    assert_eq!(soa_serial(&server).await, 2026112302);
    // The request that brought it asked with the old ETag; later ones with the new one.
    let requests = http.requests();
    let fetched = requests
        .iter()
        .position(|r| r.status == 200 && r.at > changed)
        .expect("a 200 after the change");
    assert_eq!(requests[fetched].if_none_match.as_deref(), Some("\"v1\""));
    let later = eventually(PICK_UP, async || {
        http.requests()
            .iter()
            .skip(fetched + 1)
            .any(|r| r.if_none_match.as_deref() == Some("\"v2\"") && r.status == 304)
    })
    .await;
    assert!(
        later,
        "no conditional request for v2: {:?}",
        http.requests()
    );
    assert_eq!(server.loads_ok(), 2);
    assert_eq!(server.loads_refused(), 0);
    server.stop().await;
}

#[tokio::test]
async fn not_modified_for_the_etag_sent_back_costs_no_reload() {
    let http = FeedServer::start(Respond::feed(&old_set(), Some("W/\"a1\""), None));
    let server = start(&http).await;
    let polled = eventually(Duration::from_secs(6), async || {
        http.requests().iter().filter(|r| r.status == 304).count() >= 3
    })
    .await;
    assert!(polled, "fewer than three 304s: {:?}", http.requests());
    for r in http.requests().iter().skip(1) {
        assert_eq!(r.if_none_match.as_deref(), Some("W/\"a1\""), "{r:?}");
        assert_eq!(r.status, 304);
    }
    assert_eq!(server.loads_ok(), 1, "a 304 was loaded");
    assert_eq!(server.loads_refused(), 0);
    assert_serves(&server, &addresses_of(&old_set())).await;
    server.stop().await;
}

#[tokio::test]
async fn not_modified_since_the_date_sent_back_costs_no_reload() {
    const DATE: &str = "Tue, 24 Nov 2026 08:00:00 GMT";
    let http = FeedServer::start(Respond::feed(&old_set(), None, Some(DATE)));
    let server = start(&http).await;
    let polled = eventually(Duration::from_secs(6), async || {
        http.requests().iter().filter(|r| r.status == 304).count() >= 3
    })
    .await;
    assert!(polled, "fewer than three 304s: {:?}", http.requests());
    for r in http.requests().iter().skip(1) {
        assert_eq!(r.if_modified_since.as_deref(), Some(DATE), "{r:?}");
        assert_eq!(r.if_none_match, None);
    }
    assert_eq!(server.loads_ok(), 1, "a 304 was loaded");
    server.stop().await;
}

#[tokio::test]
async fn the_same_body_without_validators_costs_no_reload() {
    let http = FeedServer::start(Respond::feed(&old_set(), None, None));
    let server = start(&http).await;
    let polled = eventually(Duration::from_secs(6), async || http.requests().len() >= 4).await;
    assert!(polled, "fewer than four requests: {:?}", http.requests());
    assert!(http.requests().iter().all(|r| r.status == 200));
    assert_eq!(server.loads_ok(), 1, "the same body was loaded again");
    // A different body is loaded.
    http.set(Respond::feed(&new_set(), None, None));
    let switched = eventually(PICK_UP, async || {
        serves_only(&server, &addresses_of(&new_set())).await
    })
    .await;
    assert!(switched, "new body not served");
    assert_eq!(server.loads_ok(), 2);
    server.stop().await;
}

#[tokio::test]
async fn failures_back_off_garbage_is_refused_and_a_good_feed_is_then_accepted() {
    let http = FeedServer::start(Respond::feed(&old_set(), Some("\"v1\""), None));
    let server = start(&http).await;
    let old = addresses_of(&old_set());
    assert_serves(&server, &old).await;

    // No one listening: connection refused.
    http.set(Respond::Refuse);
    let refused = eventually(PICK_UP, async || server.loads_refused() >= 1).await;
    assert!(refused, "a refused connection was not refused");
    let why = server.last_refusal().unwrap();
    assert!(
        why.starts_with(&format!("{}: cannot fetch: ", http.url())),
        "{why}"
    );
    assert!(why.contains("refused"), "{why}");
    assert_serves(&server, &old).await;

    // Errors from the server, and the waits between requests growing.
    http.set(Respond::Status(500));
    let first = wait_for_request(&http, |r| r.status == 500).await;
    let window = first + Duration::from_secs(5);
    while Instant::now() < window {
        assert!(serves_only(&server, &old).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let in_window: Vec<Instant> = http
        .requests()
        .iter()
        .filter(|r| r.at >= first && r.at < window)
        .map(|r| r.at)
        .collect();
    // Every second, as without backoff, would be five.
    assert!(
        (2..=3).contains(&in_window.len()),
        "{} requests in 5 s after the first 500: {:?}",
        in_window.len(),
        http.requests()
    );
    // One failure (the refused connection) came before: 2 s, then 4 s.
    let gaps: Vec<Duration> = in_window.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(1900), "{gaps:?}");
    assert!(
        server
            .last_refusal()
            .unwrap()
            .contains("HTTP status 500, expected 200 or 304"),
        "{:?}",
        server.last_refusal()
    );

    // A body that is not a feed: refused, old servers kept.
    let before = server.loads_refused();
    http.set(Respond::Feed {
        body: "<html>this is not a feed</html>".into(),
        etag: Some("\"garbage\"".into()),
        last_modified: None,
    });
    let refused = eventually(Duration::from_secs(6), async || {
        server.loads_refused() > before
            && server
                .last_refusal()
                .is_some_and(|why| why.contains("not a feed"))
    })
    .await;
    assert!(refused, "garbage not refused: {:?}", server.last_refusal());
    assert!(serves_only(&server, &old).await);

    // A good feed again: accepted once the backoff (at its 4 s cap) is over. The garbage's
    // ETag was not kept: the request carries the last good one.
    http.set(Respond::feed(&new_set(), Some("\"v2\""), None));
    let switched = eventually(Duration::from_secs(7), async || {
        serves_only(&server, &addresses_of(&new_set())).await
    })
    .await;
    assert!(switched, "good feed not accepted: {:?}", http.requests());
    let fetched = http
        .requests()
        .into_iter()
        .rfind(|r| r.status == 200)
        .unwrap();
    assert_eq!(fetched.if_none_match.as_deref(), Some("\"v1\""));
    assert_eq!(server.loads_ok(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_feed_url_that_fails_at_startup_is_fatal_and_named() {
    // Nothing listening.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = format!("http://{closed}/servers.json");
    let why = load_url(&url, poll()).await;
    assert!(why.starts_with(&format!("{url}: cannot fetch: ")), "{why}");
    assert!(why.contains("refused"), "{why}");

    let http = FeedServer::start(Respond::Status(503));
    let why = load_url(&http.url(), poll()).await;
    assert_eq!(
        why,
        format!("{}: HTTP status 503, expected 200 or 304", http.url())
    );

    http.set(Respond::Feed {
        body: "{\"servers\": 5}".into(),
        etag: None,
        last_modified: None,
    });
    let why = load_url(&http.url(), poll()).await;
    assert!(
        why.starts_with(&format!("{}: not a feed: ", http.url())),
        "{why}"
    );

    http.set(Respond::feed(&old_set(), None, None));
    let small = PollOptions {
        max_body: 100,
        ..poll()
    };
    let why = load_url(&http.url(), small).await;
    assert_eq!(why, format!("{}: body larger than 100 bytes", http.url()));

    // The binary: exit status 1, one line naming the URL and the cause.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("zone.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pooldns"));
    command
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--feed", &url, "--geoip"])
        .arg(repo(TEST_GEOIP))
        .args(["--listen", "127.0.0.1:0", "--http", "none"])
        // A fresh working directory: no state directory with a last good feed to fall
        // back on, which would keep the server running.
        .current_dir(dir.path())
        .env("RUST_LOG", "off");
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("pooldns still running after 20 s")
    .unwrap()
    .expect("run pooldns");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("pooldns: {url}: cannot fetch: ")),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_changed_zone_configuration_is_served_without_sighup_and_a_broken_one_refused() {
    let feed = feed_json(&old_set());
    let server = TestServer::start_sources(
        CONFIG,
        FeedFrom::File(&feed),
        &repo(TEST_GEOIP),
        PollOptions::default(),
    )
    .await;
    assert_eq!(txt(&server, "fresh").await, None);

    let with_record = format!(
        "{CONFIG}\n[[records]]\nname = \"fresh\"\ntype = \"TXT\"\nvalue = \"new record\"\n"
    );
    server.replace_file("zone.toml", with_record.as_bytes());
    let served = eventually(PICK_UP, async || {
        txt(&server, "fresh").await.as_deref() == Some("new record")
    })
    .await;
    assert!(served, "new TXT record not served");

    // Broken: a record whose value is no address. Refused, and everything stays.
    let broken = with_record.replace("value = \"192.0.2.53\"", "value = \"192.0.2\"");
    assert_ne!(broken, with_record);
    std::fs::write(server.config_path(), &broken).unwrap();
    let refused = eventually(PICK_UP, async || server.loads_refused() >= 1).await;
    assert!(refused, "broken configuration not refused");
    let why = server.last_refusal().unwrap();
    let path = server.config_path().display().to_string();
    assert!(
        why.starts_with(&path) && why.contains("records[0] (ns1 A): value is not an IPv4 address"),
        "{why}"
    );
    assert_eq!(txt(&server, "fresh").await.as_deref(), Some("new record"));
    assert!(serves_only(&server, &addresses_of(&old_set())).await);

    // Fixed again, with a change: served.
    server.replace_file(
        "zone.toml",
        with_record.replace("new record", "newer").as_bytes(),
    );
    let served = eventually(PICK_UP, async || {
        txt(&server, "fresh").await.as_deref() == Some("newer")
    })
    .await;
    assert!(served, "fixed configuration not served");
    // Configuration reloads are not feed loads.
    assert_eq!(server.loads_ok(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_new_geoip_database_is_picked_up_and_a_garbage_one_refused() {
    let feed = feed_json(&old_set());
    let server = TestServer::start_sources(
        CONFIG,
        FeedFrom::File(&feed),
        &repo(TEST_GEOIP),
        PollOptions::default(),
    )
    .await;
    // 175.16.199.0/24 is CN in GeoIP2-Country-Test and in no network of the GeoLite2 one.
    assert!(
        placed(&server).await.contains("country cn"),
        "{}",
        placed(&server).await
    );

    std::fs::copy(
        repo("tests/data/geoip/GeoLite2-Country-Test.mmdb"),
        server.geoip_path(),
    )
    .unwrap();
    let moved = eventually(PICK_UP, async || {
        placed(&server).await.contains("country unknown")
    })
    .await;
    assert!(moved, "new database not used: {}", placed(&server).await);

    let before = server.loads_refused();
    std::fs::write(server.geoip_path(), b"not a database at all").unwrap();
    let refused = eventually(PICK_UP, async || server.loads_refused() > before).await;
    assert!(refused, "garbage database not refused");
    let why = server.last_refusal().unwrap();
    let path = server.geoip_path().display().to_string();
    assert!(
        why.starts_with(&format!("{path}: not a usable GeoIP database: ")),
        "{why}"
    );
    // The last good database (GeoLite2) keeps placing clients.
    assert!(placed(&server).await.contains("country unknown"));
    assert!(serves_only(&server, &addresses_of(&old_set())).await);

    // And the first one again.
    std::fs::copy(repo(TEST_GEOIP), server.geoip_path()).unwrap();
    let back = eventually(PICK_UP, async || {
        placed(&server).await.contains("country cn")
    })
    .await;
    assert!(back, "database not reloaded after a refusal");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Helpers

// ---------------------------------------------------------------------------------------
// Bounded inputs (issue 11)

#[tokio::test]
async fn a_redirect_within_the_scheme_is_followed() {
    let http = FeedServer::start(Respond::Redirect {
        location: "moved/servers.json".into(),
        then: Box::new(Respond::feed(&old_set(), None, None)),
    });
    let url = http.url();
    let fetched = tokio::task::spawn_blocking(move || Fetcher::new(&url, &poll()).fetch())
        .await
        .unwrap()
        .expect("followed");
    let Fetched::Loaded(feed) = fetched else {
        panic!("not loaded");
    };
    assert_eq!(feed.servers.len(), old_set().len());
    let paths: Vec<String> = http.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/servers.json", "/moved/servers.json"]);
}

#[tokio::test]
async fn redirects_to_another_scheme_or_in_a_loop_are_refused_and_named() {
    let http = FeedServer::start(Respond::Status(500));
    let https = format!("https://{}/servers.json", http.addr);
    for location in ["file:///etc/passwd", https.as_str(), "ftp://example.org/x"] {
        http.set(Respond::Redirect {
            location: location.into(),
            then: Box::new(Respond::feed(&old_set(), None, None)),
        });
        let before = http.requests().len();
        let why = load_url(&http.url(), poll()).await;
        assert_eq!(
            why,
            format!(
                "{}: cannot fetch: redirected to {location}: a redirect to another scheme \
                 than http: is refused",
                http.url()
            )
        );
        // Nothing was fetched from where it pointed.
        assert_eq!(http.requests().len(), before + 1, "{location}");
    }

    http.set(Respond::Redirect {
        location: "/servers.json".into(),
        then: Box::new(Respond::Status(0)), // 0: redirect forever
    });
    let before = http.requests().len();
    let why = load_url(&http.url(), poll()).await;
    assert_eq!(
        why,
        format!(
            "{}: cannot fetch: more than {MAX_REDIRECTS} redirects",
            http.url()
        )
    );
    assert_eq!(http.requests().len(), before + 1 + MAX_REDIRECTS);
}

#[tokio::test]
async fn a_feed_server_that_stalls_is_given_up_on_after_the_timeout() {
    let http = FeedServer::start(Respond::Stall(Duration::from_secs(10)));
    let options = PollOptions {
        timeout: Duration::from_secs(1),
        ..poll()
    };
    let started = Instant::now();
    let why = load_url(&http.url(), options).await;
    let took = started.elapsed();
    assert!(
        why.starts_with(&format!("{}: cannot fetch: ", http.url())) && why.contains("imeout"),
        "{why}"
    );
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
}

#[tokio::test]
async fn a_feed_file_over_the_size_limit_is_refused_unread_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("zone.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let feed = dir.path().join("servers.json");
    // Sparse: 65 MiB of nothing, on no disk.
    std::fs::File::create(&feed)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let sources = Sources {
        config,
        feed: feed.clone(),
        geoip: Some(repo(TEST_GEOIP)),
        ..Default::default()
    };
    let why = tokio::task::spawn_blocking(move || Reloader::load_with(sources, poll()))
        .await
        .unwrap()
        .expect_err("loaded")
        .to_string();
    assert_eq!(
        why,
        format!(
            "{}: cannot read: 65 MiB, but feed files are limited to 64 MiB",
            feed.display()
        )
    );
}

async fn start(http: &FeedServer) -> TestServer {
    TestServer::start_sources(
        CONFIG,
        FeedFrom::Url(&http.url()),
        &repo(TEST_GEOIP),
        poll(),
    )
    .await
}

/// The startup error for a feed URL.
async fn load_url(url: &str, poll: PollOptions) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("zone.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let sources = Sources {
        config,
        feed: url.into(),
        geoip: Some(repo(TEST_GEOIP)),
        ..Default::default()
    };
    tokio::task::spawn_blocking(move || Reloader::load_with(sources, poll))
        .await
        .unwrap()
        .expect_err("loaded")
        .to_string()
}

/// Ten equal servers in 192.0.2.0/24.
fn old_set() -> Vec<S> {
    ten_servers(100, "192.0.2", ["de", "fr", "us"])
}

/// Ten other equal servers in 198.51.100.0/24.
fn new_set() -> Vec<S> {
    ten_servers(200, "198.51.100", ["nl", "jp", "br"])
}

/// Ten servers of equal net speed, ids `base`+1.., addresses `net`.1.., countries in turn.
fn ten_servers(base: u64, net: &str, countries: [&'static str; 3]) -> Vec<S> {
    (1..=10)
        .map(|i| {
            let ip: &'static str = format!("{net}.{i}").leak();
            s(base + i, ip, 10_000, countries[i as usize % 3])
        })
        .collect()
}

fn addresses_of(servers: &[S]) -> BTreeSet<IpAddr> {
    servers.iter().map(|s| s.ip.parse().unwrap()).collect()
}

/// Apex answers over a few queries: four addresses each, all from `set`.
async fn serves_only(server: &TestServer, set: &BTreeSet<IpAddr>) -> bool {
    for _ in 0..5 {
        let got = server.addresses("@", RecordType::A).await;
        if got.len() != 4 || !got.iter().all(|a| set.contains(a)) {
            return false;
        }
    }
    true
}

async fn assert_serves(server: &TestServer, set: &BTreeSet<IpAddr>) {
    assert!(serves_only(server, set).await, "not serving {set:?}");
}

async fn soa_serial(server: &TestServer) -> u32 {
    let r = server.udp(&query("@", RecordType::SOA)).await;
    match r.answers.first().map(|a| &a.data) {
        Some(RData::SOA(soa)) => soa.serial,
        other => panic!("no SOA: {other:?}"),
    }
}

/// The TXT record at `name`, its strings joined; None for no record.
async fn txt(server: &TestServer, name: &str) -> Option<String> {
    let r = server.udp(&query(name, RecordType::TXT)).await;
    text_of(&r)
}

fn text_of(r: &Message) -> Option<String> {
    r.answers.iter().find_map(|a| match &a.data {
        RData::TXT(t) => Some(
            t.txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" | "),
        ),
        _ => None,
    })
}

/// What `_country` says about a client behind 175.16.199.0/24.
async fn placed(server: &TestServer) -> String {
    let r = server
        .udp(&with_ecs(
            query("_country", RecordType::TXT),
            "175.16.199.0",
            24,
        ))
        .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    text_of(&r).expect("_country TXT")
}

/// Waits (up to 6 s) for a request that `matches`; its time.
async fn wait_for_request(http: &FeedServer, matches: impl Fn(&Request) -> bool) -> Instant {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        if let Some(r) = http.requests().into_iter().find(|r| matches(r)) {
            return r.at;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no such request: {:?}", http.requests());
}

// ---------------------------------------------------------------------------------------
// A feed server: HTTP/1.1, one request per connection, on a thread of its own (the server
// under test loads a URL with a blocking client).

/// How the feed server answers.
#[derive(Debug, Clone)]
enum Respond {
    /// 200 with the body and validators; 304 when the request's validators match.
    Feed {
        body: String,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// This status, with a short body.
    Status(u16),
    /// Stop listening: connections are refused.
    Refuse,
    /// 302 to `location`, then answer as `then` (`Status(0)`: redirect again, forever).
    Redirect {
        location: String,
        then: Box<Respond>,
    },
    /// Read the request, then answer nothing for this long.
    Stall(Duration),
}

impl Respond {
    fn feed(servers: &[S], etag: Option<&str>, last_modified: Option<&str>) -> Respond {
        Respond::Feed {
            body: feed_json(servers),
            etag: etag.map(str::to_owned),
            last_modified: last_modified.map(str::to_owned),
        }
    }

    fn feed_with_serial(
        servers: &[S],
        serial: u32,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Respond {
        let body = feed_json(servers).replacen("2026112201", &serial.to_string(), 1);
        Respond::Feed {
            body,
            etag: etag.map(str::to_owned),
            last_modified: last_modified.map(str::to_owned),
        }
    }
}

/// One request as the feed server saw it.
#[derive(Debug, Clone)]
struct Request {
    at: Instant,
    /// The request target.
    path: String,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
    /// The status answered.
    status: u16,
}

struct FeedServer {
    addr: SocketAddr,
    state: Arc<Mutex<(Respond, Vec<Request>)>>,
    stop: Arc<AtomicBool>,
}

impl FeedServer {
    fn start(respond: Respond) -> FeedServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new((respond, Vec::new())));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (state.clone(), stop.clone());
        std::thread::spawn(move || serve(listener, addr, thread_state, thread_stop));
        FeedServer { addr, state, stop }
    }

    fn url(&self) -> String {
        format!("http://{}/servers.json", self.addr)
    }

    fn set(&self, respond: Respond) {
        self.state.lock().unwrap().0 = respond;
    }

    fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().1.clone()
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Accepts without blocking, so that it can stop listening (and listen again on the same
/// port) as told.
fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<Mutex<(Respond, Vec<Request>)>>,
    stop: Arc<AtomicBool>,
) {
    listener.set_nonblocking(true).unwrap();
    let mut listener = Some(listener);
    while !stop.load(Ordering::Relaxed) {
        let refuse = matches!(state.lock().unwrap().0, Respond::Refuse);
        if refuse {
            listener = None;
        } else if listener.is_none() {
            // std sets SO_REUSEADDR: the port is free again at once.
            let l = TcpListener::bind(addr).expect("listen again on the same port");
            l.set_nonblocking(true).unwrap();
            listener = Some(l);
        }
        let accepted = listener.as_ref().map(TcpListener::accept);
        match accepted {
            Some(Ok((stream, _))) => answer(stream, &state),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn answer(mut stream: TcpStream, state: &Mutex<(Respond, Vec<Request>)>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let (if_none_match, if_modified_since) = (header("if-none-match"), header("if-modified-since"));
    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
    let mut state = state.lock().unwrap();
    let (status, headers, body) = match &state.0 {
        Respond::Feed {
            body,
            etag,
            last_modified,
        } => {
            let mut headers = String::new();
            if let Some(etag) = etag {
                headers.push_str(&format!("ETag: {etag}\r\n"));
            }
            if let Some(date) = last_modified {
                headers.push_str(&format!("Last-Modified: {date}\r\n"));
            }
            // RFC 9110 §13.1.2/§13.1.3: If-None-Match wins over If-Modified-Since.
            let unchanged = match (&if_none_match, etag) {
                (Some(sent), Some(etag)) => sent == etag,
                (Some(_), None) => false,
                (None, _) => if_modified_since.is_some() && &if_modified_since == last_modified,
            };
            if unchanged {
                (304, headers, String::new())
            } else {
                (200, headers, body.clone())
            }
        }
        Respond::Status(status) => (*status, String::new(), "no feed here\n".to_owned()),
        Respond::Refuse => return, // accepted just before being told
        Respond::Redirect { location, then } => {
            let headers = format!("Location: {location}\r\n");
            if !matches!(**then, Respond::Status(0)) {
                state.0 = (**then).clone();
            }
            (302, headers, String::new())
        }
        Respond::Stall(how_long) => {
            let how_long = *how_long;
            drop(state);
            std::thread::sleep(how_long);
            return;
        }
    };
    state.1.push(Request {
        at: Instant::now(),
        path,
        if_none_match,
        if_modified_since,
        status,
    });
    drop(state);
    let length = if status == 304 {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let response = format!(
        "HTTP/1.1 {status} Status\r\n{headers}{length}Content-Type: application/json\r\nConnection: close\r\n\r\n{body}"
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}
