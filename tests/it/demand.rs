//! Demand (issue 9): the per-thread counters of pool-name queries by the clients' country
//! and family (`pooldns_client_queries_total`).
//!
//! Clients are placed by ECS addresses of MaxMind's test database (`harness::TEST_GEOIP`):
//! 81.2.69.142 gb (the zone uk), 89.160.20.112 se, 216.160.83.56 us, 2001:218:: jp.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use pooldns::reload::{Reloader, Sources};
use pooldns::server::{Listeners, ServerOptions};

use crate::harness::*;

const UK: &str = "81.2.69.142";
const SE: &str = "89.160.20.112";
const US: &str = "216.160.83.56";
const JP: &str = "2001:218::";

// ---------------------------------------------------------------------------------------
// The counters

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_queries_count_pool_names_by_the_clients_country_and_family() {
    let ns = Instance::start().await;
    let a = RecordType::A;
    let aaaa = RecordType::AAAA;
    // Placed by ECS at geo-targeted names: the apex, numbered and vendor names, over UDP
    // and TCP. A UK client counts as uk (the zone of gb).
    for _ in 0..3 {
        ns.ask("@", a, Some(UK)).await;
    }
    ns.ask("0", a, Some(SE)).await;
    ns.ask("1", a, Some(SE)).await;
    ns.ask("debian", a, Some(US)).await;
    ns.ask_tcp("@", a, Some(UK)).await;
    // ANY at a pool name answers A.
    ns.ask("@", RecordType::ANY, Some(US)).await;
    // AAAA under 2. (the pool's AAAA policy); the ECS family does not matter.
    ns.ask("2", aaaa, Some(JP)).await;
    ns.ask("2", aaaa, Some(UK)).await;
    // A country name counts for its country (its answers serve clients there), whoever
    // asks; an alias for the country it names.
    ns.ask("de", a, Some(JP)).await;
    ns.ask("1.gb", a, None).await;
    // Unknown: an unplaced client (loopback, no ECS; a private ECS subnet), a continent name.
    ns.ask("@", a, None).await;
    ns.ask("3", a, Some("10.1.2.0")).await;
    ns.ask("europe", a, Some(UK)).await;
    // Not pool answers: AAAA at the apex (NODATA under the pool's policy), SOA, NXDOMAIN.
    let r = ns.ask("@", aaaa, Some(JP)).await;
    assert!(r.answers.is_empty());
    ns.ask("@", RecordType::SOA, Some(JP)).await;
    let r = ns.ask("nothing", a, Some(JP)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    let counted = client_queries(&ns.metrics().await);
    let expected: BTreeMap<(String, String), f64> = [
        ("uk", "v4", 5.0),
        ("uk", "v6", 1.0),
        ("se", "v4", 2.0),
        ("us", "v4", 2.0),
        ("jp", "v6", 1.0),
        ("de", "v4", 1.0),
        ("unknown", "v4", 3.0),
    ]
    .into_iter()
    .map(|(c, f, n)| ((c.to_owned(), f.to_owned()), n))
    .collect();
    // Exactly these series: none at zero.
    assert_eq!(counted, expected);
    ns.stop().await;
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A pooldns instance in-process: DNS (UDP and TCP) and HTTP on loopback ports, the test
/// zone configuration, a feed with IPv4 and IPv6 servers in uk, de, us and jp, and the
/// GeoIP test database.
struct Instance {
    dns: SocketAddr,
    http: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Instance {
    async fn start() -> Instance {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, feed): (PathBuf, PathBuf) = (
            dir.path().join("zone.toml"),
            dir.path().join("servers.json"),
        );
        std::fs::write(&config, CONFIG).expect("write config");
        std::fs::write(
            &feed,
            feed_json(&[
                s(1, "192.0.2.1", 1000, "gb"),
                s(2, "192.0.2.2", 1000, "de"),
                s(3, "192.0.2.3", 1000, "us"),
                s(4, "192.0.2.4", 1000, "jp"),
                s(5, "2001:db8::1", 1000, "gb"),
                s(6, "2001:db8::2", 1000, "jp"),
            ]),
        )
        .expect("write feed");
        let reloader = Reloader::load(Sources {
            config,
            feed,
            geoip: Some(repo(TEST_GEOIP)),
            ..Default::default()
        })
        .expect("load");
        let listeners = Listeners::bind_with(&["127.0.0.1:0".parse().unwrap()], 2).expect("bind");
        let dns = listeners.udp_addrs()[0];
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind HTTP");
        let http = http_listener.local_addr().unwrap();
        let metrics = Arc::new(pooldns::metrics::Metrics::default());
        let table = reloader.table();
        let state = pooldns::http::HttpState {
            table: table.clone(),
            metrics: metrics.clone(),
            reload: reloader.status(),
            started: Instant::now(),
            admin: None,
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|&s| s).await;
        };
        let tasks = vec![
            tokio::spawn({
                let stopped = until_stopped(stopped.clone());
                async move {
                    pooldns::server::run(
                        listeners,
                        table,
                        metrics,
                        ServerOptions::default(),
                        stopped,
                    )
                    .await
                    .expect("serve");
                }
            }),
            tokio::spawn({
                let stopped = until_stopped(stopped);
                async move {
                    pooldns::http::serve(http_listener, state, stopped)
                        .await
                        .expect("HTTP");
                }
            }),
        ];
        Instance {
            dns,
            http,
            stop,
            tasks,
            _dir: dir,
        }
    }

    /// One query over UDP, with a client subnet (/32 for IPv4, /48 for IPv6) or without.
    async fn ask(&self, name: &str, qtype: RecordType, ecs: Option<&str>) -> Message {
        let q = with_subnet(query(name, qtype), ecs);
        let raw = raw_udp(self.dns, &q.to_vec().unwrap(), Duration::from_secs(2))
            .await
            .unwrap_or_else(|| panic!("no answer to {name} {qtype}"));
        Message::from_vec(&raw).expect("answer parses")
    }

    /// The same over TCP.
    async fn ask_tcp(&self, name: &str, qtype: RecordType, ecs: Option<&str>) -> Message {
        let q = with_subnet(query(name, qtype), ecs);
        let mut stream = tokio::net::TcpStream::connect(self.dns).await.unwrap();
        write_framed(&mut stream, &q.to_vec().unwrap())
            .await
            .unwrap();
        let raw = read_framed(&mut stream).await.expect("no answer over TCP");
        Message::from_vec(&raw).expect("answer parses")
    }

    async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.http);
        let (status, body) = tokio::task::spawn_blocking(move || http_get(&url))
            .await
            .unwrap()
            .expect("/metrics answers");
        assert_eq!(status, 200);
        body
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await.expect("task");
        }
    }
}

fn with_subnet(q: Message, ecs: Option<&str>) -> Message {
    match ecs {
        Some(addr) if addr.contains(':') => with_ecs(q, addr, 48),
        Some(addr) => with_ecs(q, addr, 32),
        None => q,
    }
}

/// `pooldns_client_queries_total` of a /metrics page, by (country, family).
fn client_queries(page: &str) -> BTreeMap<(String, String), f64> {
    let mut found = BTreeMap::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix("pooldns_client_queries_total{country=\"") else {
            continue;
        };
        let (country, rest) = rest.split_once("\",family=\"").expect("family label");
        let (family, value) = rest.split_once("\"} ").expect("value");
        let previous = found.insert(
            (country.to_owned(), family.to_owned()),
            value.parse().expect("number"),
        );
        assert!(previous.is_none(), "{line} twice");
    }
    found
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// One blocking GET: the status and body, None when nothing answered.
fn http_get(url: &str) -> Option<(u16, String)> {
    let mut response = agent().get(url).call().ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}
