//! Demand (issue 9): the per-thread counters of pool-name queries by the clients' country
//! and family (`pooldns_client_queries_total`), and `pooldns demand` writing the demand
//! file from them: summed from two in-process instances' `/metrics`, and end to end from
//! Debian's real Prometheus (`/usr/bin/prometheus`) scraping two instances. Without
//! Prometheus that test prints a notice and passes, except under CI (`CI` set), where it
//! fails: `.ci/run` installs it.
//!
//! Clients are placed by ECS addresses of MaxMind's test database (`harness::TEST_GEOIP`):
//! 81.2.69.142 gb (the zone uk), 89.160.20.112 se, 216.160.83.56 us, 2001:218:: jp,
//! 2a02:cf40:: no.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use pooldns::plan::demand::{self, Demand};
use pooldns::reload::{Reloader, Sources};
use pooldns::server::Listeners;
use pooldns::table::Family;

use crate::harness::*;

const UK: &str = "81.2.69.142";
const SE: &str = "89.160.20.112";
const US: &str = "216.160.83.56";
const JP: &str = "2001:218::";
const NO: &str = "2a02:cf40::";

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
// pooldns demand --metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooldns_demand_sums_the_metrics_pages_of_two_instances() {
    let (a, b) = (Instance::start().await, Instance::start().await);
    a.ask_many(&[("@", UK, 3), ("0", US, 1), ("2", JP, 2)])
        .await;
    a.ask("@", RecordType::A, None).await; // unknown: left out of the file
    b.ask_many(&[("1", UK, 1), ("@", SE, 4), ("2", JP, 1), ("2", NO, 2)])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demand.json");
    let urls = [
        format!("http://{}/metrics", a.http),
        format!("http://{}", b.http),
    ];
    let args = |out: Option<&Path>| {
        let mut args = vec!["demand".to_owned()];
        for url in &urls {
            args.extend(["--metrics".to_owned(), url.clone()]);
        }
        if let Some(out) = out {
            args.extend(["--out".to_owned(), out.display().to_string()]);
        }
        args
    };
    let run = pooldns(args(Some(&out))).await;
    assert!(run.status.success(), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("v4: 3 countries, 9 queries"), "{stderr}");
    let file = demand::load_file(&out).expect("a demand file");
    assert_eq!(
        weights(&file),
        [
            ("v4", "se", 4.0),
            ("v4", "uk", 4.0),
            ("v4", "us", 1.0),
            ("v6", "jp", 3.0),
            ("v6", "no", 2.0),
        ]
    );
    // Without --out: the same file on stdout.
    let run = pooldns(args(None)).await;
    assert!(run.status.success(), "{run:?}");
    assert_eq!(String::from_utf8_lossy(&run.stdout), demand::render(&file));

    // An instance that does not answer fails the whole sum, naming it.
    let gone = format!("http://127.0.0.1:{}/metrics", free_port());
    let run = pooldns(vec![
        "demand".into(),
        "--metrics".into(),
        urls[0].clone(),
        "--metrics".into(),
        gone.clone(),
    ])
    .await;
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.starts_with(&format!("pooldns: {gone}: ")),
        "{stderr}"
    );
    a.stop().await;
    b.stop().await;
}

// ---------------------------------------------------------------------------------------
// pooldns demand --prometheus, with Debian's Prometheus

const PROMETHEUS: &str = "/usr/bin/prometheus";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooldns_demand_reads_two_instances_through_a_real_prometheus() {
    if !installed(&[PROMETHEUS], "prometheus", "demand") {
        return;
    }
    let (a, b) = (Instance::start().await, Instance::start().await);
    // The measured queries, per instance: (name, ECS address, count).
    let to_a: &[(&str, &str, usize)] = &[("@", UK, 40), ("0", US, 10), ("2", JP, 20)];
    let to_b: &[(&str, &str, usize)] = &[
        ("1", UK, 20),
        ("@", US, 20),
        ("3", SE, 10),
        ("2", JP, 5),
        ("2", NO, 15),
    ];
    // First one query of each kind, so that every series exists before Prometheus's first
    // scrape: increase() counts from a series' first sample, and the counters are exported
    // once they are above zero.
    for (ns, sent) in [(&a, to_a), (&b, to_b)] {
        let once: Vec<_> = sent.iter().map(|&(name, ecs, _)| (name, ecs, 1)).collect();
        ns.ask_many(&once).await;
        ns.ask("@", RecordType::A, None).await; // unknown
    }
    let seeds = (to_a.len() + to_b.len() + 2) as f64;
    let series = (to_a.len() + to_b.len() + 2) as f64;

    let prometheus = Prometheus::start(&[a.http, b.http]);
    let url = prometheus.url.clone();
    let count = "count(pooldns_client_queries_total)";
    assert!(
        prometheus.wait_for(count, series).await,
        "Prometheus did not scrape both instances within 60 s; its log:\n{}",
        prometheus.log()
    );
    // Seen once, before the measured queries: a later sample with more is an increase.
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.ask_many(to_a).await;
    b.ask_many(to_b).await;
    let sent: usize = to_a.iter().chain(to_b).map(|q| q.2).sum();
    let sum = "sum(pooldns_client_queries_total)";
    assert!(
        prometheus.wait_for(sum, seeds + sent as f64).await,
        "Prometheus did not see the queries within 60 s; its log:\n{}",
        prometheus.log()
    );
    // A few flat samples after the rise, so that increase() extrapolates little.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demand.json");
    let run = pooldns(vec![
        "demand".into(),
        "--prometheus".into(),
        url.clone(),
        "--window".into(),
        "5m".into(),
        "--out".into(),
        out.display().to_string(),
    ])
    .await;
    assert!(
        run.status.success(),
        "{run:?}\nPrometheus log:\n{}",
        prometheus.log()
    );
    let file = demand::load_file(&out).expect("a demand file");
    // The countries asked from, in the proportions asked (uk 60, us 30, se 10 of IPv4;
    // jp 25, no 15 of IPv6), and no unknown. Prometheus extrapolates increase() to the
    // window by a few per cent, differently per instance, and the first query of each
    // kind may or may not be counted: shares within 0.03.
    let expected = [
        (Family::V4, "uk", 0.6),
        (Family::V4, "us", 0.3),
        (Family::V4, "se", 0.1),
        (Family::V6, "jp", 0.625),
        (Family::V6, "no", 0.375),
    ];
    for family in [Family::V4, Family::V6] {
        let countries: Vec<&str> = file.family(family).keys().copied().collect();
        let mut wanted: Vec<&str> = expected
            .iter()
            .filter(|e| e.0 == family)
            .map(|e| e.1)
            .collect();
        wanted.sort();
        assert_eq!(countries, wanted, "{}", demand::render(&file));
    }
    for (family, country, share) in expected {
        let got = file.share(family, country);
        assert!(
            (got - share).abs() < 0.03,
            "{country} {family:?}: {got} is not {share}\n{}",
            demand::render(&file)
        );
    }
    // A third instance serves with that file in plan mode and follows the plan made from
    // it: the UK's 60 % of the demand is spread so that its lone server stays under the
    // cap, where zones mode would give that server every UK answer.
    let config = format!(
        "{CONFIG}\n[balance]\nmode = \"plan\"\nmax_load = 1.5\ndemand = \"{}\"\n",
        out.display()
    );
    let feed = feed_json(&[
        s(1, "192.0.2.1", 250, "gb"),
        s(2, "192.0.2.2", 1000, "de"),
        s(3, "192.0.2.3", 1000, "de"),
        s(4, "192.0.2.4", 1000, "de"),
        s(5, "192.0.2.5", 1000, "us"),
        s(6, "192.0.2.6", 1000, "us"),
        s(7, "192.0.2.7", 1000, "se"),
        s(8, "192.0.2.8", 1000, "se"),
    ]);
    let third = TestServer::start_with(&config, &feed, Default::default()).await;
    let table = third.table.load_full();
    assert!(table.demand_from_file);
    let plan = &table.plan.as_ref().expect("plan mode")[Family::V4 as usize];
    let uk_index = table.country("uk").expect("uk") as usize;
    assert!(
        (plan.demand[uk_index] - file.share(Family::V4, "uk")).abs() < 1e-9,
        "the plan is made from the file"
    );
    let lone = table
        .members
        .iter()
        .position(|m| m.ip.to_string() == "192.0.2.1")
        .expect("the UK server");
    assert!(plan.expected[lone] <= 1.5 + 1e-9, "{}", plan.expected[lone]);
    // Queries from the UK: the lone server (a 30th of the weight) may take 1.5 × its fair
    // share of all records, about a third of the UK's answers, not every one of them.
    let mut with_lone = 0;
    let n = 400;
    for _ in 0..n {
        let m = third
            .udp(&with_ecs(query("@", RecordType::A), UK, 32))
            .await;
        let got = addresses(&m);
        assert_eq!(got.len(), 4, "{m:?}");
        if got.contains(&"192.0.2.1".parse().unwrap()) {
            with_lone += 1;
        }
    }
    assert!(
        with_lone < n / 2,
        "the lone UK server was in {with_lone} of {n} answers"
    );
    third.stop().await;

    // What an operator sees when the window holds nothing of the fleet.
    let run = pooldns(vec![
        "demand".into(),
        "--prometheus".into(),
        url.clone(),
        "--window".into(),
        "bad".into(),
    ])
    .await;
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&run.stderr),
        "pooldns: --window \"bad\": not a Prometheus duration such as 7d, 12h or 1h30m\n"
    );
    drop(prometheus);
    a.stop().await;
    b.stop().await;
}

/// Debian's Prometheus on a loopback port, scraping `targets` every second, with its
/// storage in a temporary directory; killed when dropped.
struct Prometheus {
    url: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[SocketAddr]) -> Prometheus {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: pooldns\n    scrape_interval: 1s\n    \
             static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let mut last_log = String::new();
        // A few tries: the free port may be taken between asking and binding.
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let config_path = dir.path().join("prometheus.yml");
            std::fs::write(&config_path, &config).expect("write config");
            let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
            let port = free_port();
            let child = Command::new(PROMETHEUS)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start prometheus");
            let mut p = Prometheus {
                url: format!("http://127.0.0.1:{port}"),
                child,
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if http_get(&format!("{}/-/ready", p.url)).is_some_and(|(s, _)| s == 200) {
                    return p;
                }
                if let Ok(Some(_)) = p.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            last_log = p.log();
        }
        panic!("Prometheus did not start; its log:\n{last_log}");
    }

    /// Waits (up to 60 s) until the value of the instant query `expr` is `value`.
    async fn wait_for(&self, expr: &str, value: f64) -> bool {
        let url = self.url.clone();
        let expr = expr.to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let (url, expr) = (url.clone(), expr.clone());
            let got = tokio::task::spawn_blocking(move || prometheus_value(&url, &expr))
                .await
                .unwrap();
            if got == Some(value) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a one-sample instant query, if there is one.
fn prometheus_value(base: &str, expr: &str) -> Option<f64> {
    let agent = agent();
    let mut response = agent
        .get(&format!("{base}/api/v1/query"))
        .query("query", expr)
        .call()
        .ok()?;
    let json: serde_json::Value =
        serde_json::from_slice(&response.body_mut().read_to_vec().ok()?).ok()?;
    let result = json.get("data")?.get("result")?.as_array()?;
    let [sample] = result.as_slice() else {
        return None;
    };
    sample.get("value")?.get(1)?.as_str()?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A pooldns instance in-process: DNS (UDP and TCP) and HTTP on loopback ports, the test
/// zone configuration, a feed with IPv4 and IPv6 servers in uk, de, us and jp, and the
/// GeoIP test database.
struct Instance {
    dns: SocketAddr,
    http: SocketAddr,
    serving: InProcess,
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
        let state = pooldns::http::HttpState {
            table: reloader.table(),
            metrics: Arc::new(pooldns::metrics::Metrics::default()),
            reload: reloader.status(),
            started: Instant::now(),
            admin: None,
        };
        let serving = InProcess::start(listeners, http_listener, state, None);
        Instance {
            dns,
            http,
            serving,
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

    /// `count` queries for each (name, ECS address): A for IPv4 subnets at any name, AAAA
    /// (at `2`) for IPv6 ones; each answer is checked to carry servers.
    async fn ask_many(&self, queries: &[(&str, &str, usize)]) {
        for &(name, ecs, count) in queries {
            let qtype = if ecs.contains(':') {
                RecordType::AAAA
            } else {
                RecordType::A
            };
            for _ in 0..count {
                let r = self.ask(name, qtype, Some(ecs)).await;
                assert!(
                    !addresses(&r).is_empty(),
                    "{name} {qtype} from {ecs}: {r:?}"
                );
            }
        }
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
        self.serving.stop().await;
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

/// A demand's weights as (family, country, weight), sorted.
fn weights(d: &Demand) -> Vec<(&'static str, &'static str, f64)> {
    [("v4", Family::V4), ("v6", Family::V6)]
        .into_iter()
        .flat_map(|(label, family)| {
            d.family(family)
                .iter()
                .map(move |(&country, &w)| (label, country, w))
        })
        .collect()
}

/// Runs the binary with `args` off the runtime's threads (the servers it talks to run on
/// them).
async fn pooldns(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pooldns"))
            .args(&args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .expect("run pooldns")
    })
    .await
    .unwrap()
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
