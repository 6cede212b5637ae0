//! `pooldns monitor` against real NTP servers (issue 14): in a network namespace the test
//! creates, Debian's chronyd (`local stratum 2`) on some addresses, and a fault-injecting
//! NTP responder written here on others (a chosen offset, KoD RATE or DENY, leap 3,
//! stratum 0, silence, a wrong origin timestamp, a spoofed reply before the real one). The
//! monitor runs as its own process inside the namespace; the test reads its HTTP endpoints
//! from a thread that enters the namespace, and its feed file from the shared file system.
//!
//! Score trajectories are checked against the table computed here, independently of
//! `monitor::score`, probe by probe from the monitor's recorded results; nothing asserts
//! wall-clock timings tightly. The monitor's own clock is injected
//! (`POOLDNS_MONITOR_CLOCK_FILE`): the test machine's clock need not be synchronised.
//!
//! Needs root (network namespaces) and chronyd; without them the tests skip with a
//! message, unless CI is set, where they fail.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::harness::{CONFIG, TestServer, signal_group};
use crate::netns::{Daemon, Netns, enter};

const CHRONYD: &str = "/usr/sbin/chronyd";

/// A namespace for the monitor tests: None (skip) without chronyd outside CI.
fn netns(hosts: &[u8]) -> Option<Netns> {
    if !crate::harness::installed(&[CHRONYD], "chrony", "monitor") {
        return None;
    }
    Netns::create(hosts)
}

/// What most tests here start from: a namespace holding `hosts`, chronyd on each of
/// `chrony`, the fault responder on the hosts of `faults`, and a registry of every host at
/// `dir/registry.json`. Fields drop in order: the daemons, the files, the namespace last.
struct Stage {
    _responder: Responder,
    _chrony: Vec<Daemon>,
    dir: tempfile::TempDir,
    ns: Netns,
}

impl Stage {
    /// None (skip) without namespaces or chronyd outside CI.
    fn new(hosts: &[u8], chrony: &[u8], faults: &[(u8, Fault)]) -> Option<Stage> {
        let ns = netns(hosts)?;
        let dir = tempfile::tempdir().unwrap();
        let chrony = chrony
            .iter()
            .map(|&h| chronyd(&ns, dir.path(), h))
            .collect();
        let responder = Responder::start(&ns, faults);
        std::fs::write(dir.path().join("registry.json"), registry(hosts)).unwrap();
        Some(Stage {
            _responder: responder,
            _chrony: chrony,
            dir,
            ns,
        })
    }
}

/// Starts chronyd serving its local clock at stratum 2 on 10.99.0.`host`:123.
fn chronyd(ns: &Netns, dir: &Path, host: u8) -> Daemon {
    let conf = dir.join(format!("chrony-{host}.conf"));
    std::fs::write(
        &conf,
        format!(
            "local stratum 2\nallow\nbindaddress 10.99.0.{host}\nport 123\ncmdport 0\n\
             pidfile {dir}/chrony-{host}.pid\ndriftfile {dir}/chrony-{host}.drift\n",
            dir = dir.display()
        ),
    )
    .expect("write chrony.conf");
    let child = ns
        .command(CHRONYD)
        .args(["-x", "-d", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("chrony-{host}.log"))).expect("log"))
        .spawn()
        .expect("start chronyd");
    Daemon { child }
}

/// What the responder does with a request.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// A good reply from a clock this far ahead (seconds).
    Offset(f64),
    /// A Kiss-o'-Death with this code.
    Kiss(&'static [u8; 4]),
    /// Leap indicator 3, stratum 2.
    Leap3,
    /// Stratum 0 with no kiss code.
    Stratum0,
    /// No reply.
    Silent,
    /// A reply whose origin timestamp is not the request's transmit timestamp.
    WrongOrigin,
    /// A reply with a wrong origin and a 5 s offset first, then the real one with 1 ms.
    SpoofThenReal,
}

/// Seconds from 1900 to 1970.
const NTP_UNIX: u64 = 2_208_988_800;

/// Our clock plus `offset` seconds as an NTP timestamp, computed in integers.
fn ntp_time(offset: f64) -> u64 {
    ntp_time_at(SystemTime::now(), offset)
}

/// `at` plus `offset` seconds as an NTP timestamp.
fn ntp_time_at(at: SystemTime, offset: f64) -> u64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap();
    let nanos =
        since.as_nanos() as i128 + (offset * 1e9) as i128 + NTP_UNIX as i128 * 1_000_000_000;
    ((nanos << 32) / 1_000_000_000) as u64
}

/// A server reply: `origin` echoed, the receive time `received` (taken when the request
/// arrived, already `offset` ahead) and the transmit time now, `offset` ahead. Taking T2 at
/// arrival and T3 at sending keeps the responder's own delays (a busy test machine) out of
/// the offset, as a real server does.
fn reply(
    leap: u8,
    stratum: u8,
    refid: &[u8; 4],
    origin: u64,
    received: u64,
    offset: f64,
) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = (leap << 6) | (4 << 3) | 4;
    p[1] = stratum;
    p[12..16].copy_from_slice(refid);
    let t = ntp_time(offset);
    p[16..24].copy_from_slice(&received.to_be_bytes());
    p[24..32].copy_from_slice(&origin.to_be_bytes());
    p[32..40].copy_from_slice(&received.to_be_bytes());
    p[40..48].copy_from_slice(&t.to_be_bytes());
    p
}

/// The fault-injecting responder: a thread per address, inside the namespace.
struct Responder {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    faults: HashMap<u8, Arc<Mutex<Fault>>>,
}

impl Responder {
    fn start(ns: &Netns, faults: &[(u8, Fault)]) -> Responder {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut shared = HashMap::new();
        for &(host, fault) in faults {
            let fault = Arc::new(Mutex::new(fault));
            shared.insert(host, fault.clone());
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (name, stop) = (ns.name.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                enter(&name);
                let socket = UdpSocket::bind((Ipv4Addr::new(10, 99, 0, host), 123)).expect("bind");
                socket
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let arrived = SystemTime::now();
                    if n < 48 {
                        continue;
                    }
                    let origin = u64::from_be_bytes(buf[40..48].try_into().unwrap());
                    let fault = *fault.lock().unwrap();
                    let send = |p: [u8; 48]| {
                        let _ = socket.send_to(&p, from);
                    };
                    let answer = |leap, stratum, refid, origin, offset| {
                        let t2 = ntp_time_at(arrived, offset);
                        reply(leap, stratum, refid, origin, t2, offset)
                    };
                    match fault {
                        Fault::Offset(o) => send(answer(0, 2, b"TEST", origin, o)),
                        Fault::Kiss(code) => send(answer(3, 0, code, origin, 0.0)),
                        Fault::Leap3 => send(answer(3, 2, b"TEST", origin, 0.0)),
                        Fault::Stratum0 => send(answer(0, 0, &[0; 4], origin, 0.001)),
                        Fault::Silent => {}
                        Fault::WrongOrigin => send(answer(0, 2, b"TEST", origin ^ 1, 0.001)),
                        Fault::SpoofThenReal => {
                            send(answer(0, 2, b"TEST", origin.wrapping_add(1 << 32), 5.0));
                            std::thread::sleep(Duration::from_millis(10));
                            send(answer(0, 2, b"TEST", origin, 0.001));
                        }
                    }
                }
            }));
            ready_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("responder ready");
        }
        Responder {
            stop,
            threads,
            faults: shared,
        }
    }

    fn set(&self, host: u8, fault: Fault) {
        *self.faults[&host].lock().unwrap() = fault;
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A registry of 10.99.0.`host` servers with id = host.
fn registry(hosts: &[u8]) -> String {
    let entries: Vec<String> = hosts
        .iter()
        .map(|h| {
            format!(r#"{{"id": {h}, "ip": "10.99.0.{h}", "netspeed": 1000, "country": "de"}}"#)
        })
        .collect();
    format!("{{\"servers\": [{}]}}", entries.join(", "))
}

/// A running monitor and its files.
struct Monitor {
    daemon: Daemon,
    ns: String,
    port: u16,
    clock: PathBuf,
    args: Vec<String>,
}

impl Monitor {
    /// Starts `pooldns monitor` in `ns` with the registry, feed and state in `dir` (files
    /// named after `name`), HTTP on 127.0.0.1:`port` of the namespace, probing every second.
    fn start(ns: &Netns, dir: &Path, name: &str, port: u16, extra: &[String]) -> Monitor {
        let file = |what: &str| dir.join(format!("{name}-{what}")).display().to_string();
        let clock = PathBuf::from(file("clock"));
        if !clock.exists() {
            std::fs::write(&clock, "synchronised").unwrap();
        }
        let mut args: Vec<String> = [
            "monitor",
            "--servers",
            &dir.join("registry.json").display().to_string(),
            "--out",
            &file("feed.json"),
            "--state",
            &file("state.json"),
            "--http",
            &format!("127.0.0.1:{port}"),
            "--interval",
            "1s",
            "--timeout",
            "800ms",
            "--write-interval",
            "200ms",
            "--peer-interval",
            "200ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if extra.iter().any(|a| a == "--out") {
            // The caller names the feed: drop ours.
            let at = args.iter().position(|a| a == "--out").unwrap();
            args.drain(at..at + 2);
        }
        args.extend_from_slice(extra);
        let mut m = Monitor {
            daemon: spawn_monitor(ns, &clock, &args, &file("log")),
            ns: ns.name.clone(),
            port,
            clock,
            args,
        };
        m.wait_up();
        m
    }

    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.get("/healthz").is_none() {
            assert!(Instant::now() < deadline, "monitor did not come up");
            assert!(
                !matches!(self.daemon.child.try_wait(), Ok(Some(_))),
                "monitor exited"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the monitor with SIGTERM (it saves its state) and starts it again.
    fn restart(&mut self, ns: &Netns, log: &Path) {
        assert!(self.daemon.stop(), "monitor did not stop on SIGTERM");
        self.daemon = spawn_monitor(ns, &self.clock, &self.args, &log.display().to_string());
        self.wait_up();
    }

    fn set_clock(&self, text: &str) {
        let tmp = self.clock.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.clock).unwrap();
    }

    /// GET `path` from the monitor, from inside its namespace; the body of a 200.
    fn get(&self, path: &str) -> Option<String> {
        let (head, body) = self.request(path, "")?;
        head.starts_with("HTTP/1.1 200").then_some(body)
    }

    /// GET `path` with `headers` (lines ending in CRLF): the response head and body.
    fn request(&self, path: &str, headers: &str) -> Option<(String, String)> {
        let (ns, port, path, headers) = (
            self.ns.clone(),
            self.port,
            path.to_owned(),
            headers.to_owned(),
        );
        std::thread::spawn(move || {
            enter(&ns);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: monitor\r\nConnection: close\r\n{headers}\r\n"
            )
            .ok()?;
            let mut text = String::new();
            s.read_to_string(&mut text).ok()?;
            let (head, body) = text.split_once("\r\n\r\n")?;
            Some((head.to_owned(), body.to_owned()))
        })
        .join()
        .ok()
        .flatten()
    }

    fn json(&self, path: &str) -> Value {
        let body = self.get(path).unwrap_or_else(|| panic!("GET {path}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// The recent probes of server `id`: (result, offset, score).
    fn probes(&self, id: u8) -> Vec<(String, Option<f64>, f64)> {
        let h = self.json(&format!("/monitor/servers/{id}/history.json"));
        h["recent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["result"].as_str().unwrap().to_owned(),
                    p["offset"].as_f64(),
                    p["score"].as_f64().unwrap(),
                )
            })
            .collect()
    }

    /// Scores by id from /monitor/scores.json: (score, feed score, probes).
    fn scores(&self) -> (bool, HashMap<u64, (f64, f64, u64)>) {
        let s = self.json("/monitor/scores.json");
        let map = s["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_u64().unwrap(),
                    (
                        e["score"].as_f64().unwrap(),
                        e["feed_score"].as_f64().unwrap(),
                        e["probes"].as_u64().unwrap(),
                    ),
                )
            })
            .collect();
        (s["scoring"].as_bool().unwrap(), map)
    }

    /// A counter's value from /metrics.
    fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").expect("metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} not in /metrics"))
    }
}

fn spawn_monitor(ns: &Netns, clock: &Path, args: &[String], log: &str) -> Daemon {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    let child = ns
        .command(env!("CARGO_BIN_EXE_pooldns"))
        .args(args)
        .env("POOLDNS_MONITOR_CLOCK_FILE", clock)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start monitor");
    Daemon { child }
}

/// Polls `check` every 100 ms until it holds; panics with `what` after `limit`.
fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The table of issue 14, written out here independently of the library: the step and cap
/// of a probe that ended with `result` and `offset` (stratum below 8 in these tests). The
/// score never goes below −100 (the pool's range).
fn table(result: &str, offset: Option<f64>) -> (f64, f64) {
    let none = f64::INFINITY;
    match result {
        "no_response" => (-5.0, none),
        "kod_rate" => (-3.5, none),
        "kod_rstr" | "kod_deny" => (-10.0, -50.0),
        "untrusted" => (-2.0, 5.0),
        "leap_unsynchronised" | "stratum_unsynchronised" | "bad_mode" | "no_transmit_time" => {
            (-4.0, none)
        }
        "ok" => {
            let o = offset.expect("an ok probe has an offset").abs();
            match o {
                o if o > 3.0 => (-4.0, -20.0),
                o if o > 0.75 => (-2.0, none),
                o if o > 0.1 => (-2.308 * o + 0.731, none),
                o if o > 0.025 => (-6.667 * o + 1.167, none),
                _ => (1.0, none),
            }
        }
        other => panic!("unexpected result {other}"),
    }
}

/// Checks that `probes` (from a new server's first probe on) follow the table, and returns
/// the last score.
fn check_trajectory(id: u8, probes: &[(String, Option<f64>, f64)]) -> f64 {
    let mut score = 0.0f64;
    for (n, (result, offset, recorded)) in probes.iter().enumerate() {
        let (step, cap) = table(result, *offset);
        score = (0.95 * score + step).min(cap).max(-100.0);
        assert!(
            (recorded - score).abs() < 1e-4,
            "server {id}, probe {}: {result} {offset:?}: recorded {recorded}, table {score}",
            n + 1
        );
    }
    score
}

#[test]
fn fault_trajectories_follow_the_score_table_and_spoofed_replies_are_ignored() {
    let hosts = [1, 2, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21];
    let Some(stage) = Stage::new(
        &hosts,
        &[1, 2],
        &[
            (10, Fault::Offset(0.030)),
            (11, Fault::Offset(0.300)),
            (12, Fault::Offset(2.0)),
            (13, Fault::Offset(-5.0)),
            (14, Fault::Kiss(b"RATE")),
            (15, Fault::Kiss(b"DENY")),
            (16, Fault::Leap3),
            (17, Fault::Stratum0),
            (18, Fault::Silent),
            (19, Fault::WrongOrigin),
            (20, Fault::SpoofThenReal),
            (21, Fault::Kiss(b"RSTR")),
        ],
    ) else {
        return;
    };
    let (ns, dir) = (&stage.ns, &stage.dir);
    let monitor = Monitor::start(ns, dir.path(), "m", 8054, &[]);
    let want = 8;
    wait_for(Duration::from_secs(60), "8 probes of every server", || {
        let (_, scores) = monitor.scores();
        scores.values().all(|&(_, _, probes)| probes >= want)
    });
    let expected: [(u8, &str, Option<f64>); 14] = [
        (1, "ok", Some(0.0)),
        (2, "ok", Some(0.0)),
        (10, "ok", Some(0.030)),
        (11, "ok", Some(0.300)),
        (12, "ok", Some(2.0)),
        (13, "ok", Some(-5.0)),
        (14, "kod_rate", None),
        (15, "kod_deny", None),
        (16, "leap_unsynchronised", None),
        (17, "untrusted", None),
        (18, "no_response", None),
        (19, "no_response", None),
        (20, "ok", Some(0.001)),
        (21, "kod_rstr", None),
    ];
    for (id, result, offset) in expected {
        let probes = monitor.probes(id);
        assert!(probes.len() >= want as usize);
        for (r, o, _) in &probes {
            assert_eq!(r, result, "server {id}: {probes:?}");
            if let (Some(want), Some(got)) = (offset, o) {
                // The spoofed 5 s reply never counts: the real one's 1 ms does.
                assert!(
                    (got - want).abs() < 0.02,
                    "server {id}: offset {got}, want {want}"
                );
            }
        }
        let last = check_trajectory(id, &probes);
        eprintln!(
            "server {id} ({result}): {} probes, score {last:.4}",
            probes.len()
        );
    }
    // The fixed caps: DENY at once to −50, 5 s to −20, stratum 0 at most 5.
    assert_eq!(monitor.probes(15)[0].2, -50.0);
    assert_eq!(monitor.probes(13)[0].2, -20.0);
    assert!(
        monitor.metric("pooldns_monitor_replies_ignored_total{reason=\"unmatched\"}")
            >= 2.0 * want as f64
    );
    // The per-server page draws its history as inline SVG, with no external assets.
    let page = monitor.get("/monitor/servers/1").unwrap();
    assert!(
        page.contains("<svg") && page.contains("<polyline"),
        "{page}"
    );
    assert!(!page.contains("src=") && !page.contains("<script"));
    assert!(monitor.get("/").unwrap().contains("/monitor/servers/15"));
    // The feed holds every server with the monitor's score.
    let feed: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("m-feed.json")).unwrap()).unwrap();
    assert_eq!(feed["servers"].as_array().unwrap().len(), hosts.len());
}

#[test]
fn an_unsynchronised_monitor_clock_freezes_scores() {
    let hosts = [1, 10];
    let Some(stage) = Stage::new(&hosts, &[1], &[(10, Fault::Silent)]) else {
        return;
    };
    let (ns, dir) = (&stage.ns, &stage.dir);
    let monitor = Monitor::start(ns, dir.path(), "m", 8054, &[]);
    wait_for(Duration::from_secs(30), "3 probes each", || {
        monitor.scores().1.values().all(|s| s.2 >= 3)
    });
    monitor.set_clock("the test stepped it");
    wait_for(Duration::from_secs(10), "scoring to stop", || {
        !monitor.scores().0
    });
    let (_, frozen) = monitor.scores();
    let probed = monitor.metric("pooldns_monitor_probes_total{result=\"ok\"}");
    std::thread::sleep(Duration::from_secs(3));
    let (scoring, after) = monitor.scores();
    assert!(!scoring);
    assert_eq!(
        after, frozen,
        "scores changed while the clock was unsynchronised"
    );
    // Probing went on, unscored; the metrics and the page say why.
    assert!(monitor.metric("pooldns_monitor_probes_total{result=\"ok\"}") > probed);
    assert!(monitor.metric("pooldns_monitor_unscored_probes_total") > 0.0);
    assert_eq!(monitor.metric("pooldns_monitor_clock_synchronised"), 0.0);
    assert_eq!(monitor.metric("pooldns_monitor_scoring"), 0.0);
    let page = monitor.get("/").unwrap();
    assert!(page.contains("Not scoring"), "{page}");
    assert!(page.contains("the test stepped it"));
    // The feed is also served, as written, with an entity tag for conditional requests.
    let written = std::fs::read_to_string(dir.path().join("m-feed.json")).unwrap();
    let (head, body) = monitor.request("/monitor/feed.json", "").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, written);
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an etag")
        .to_owned();
    let (head, _) = monitor
        .request("/monitor/feed.json", &format!("If-None-Match: {etag}\r\n"))
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 304"), "{head}");
    // Synchronised again: scoring resumes where it stopped.
    monitor.set_clock("synchronised");
    wait_for(Duration::from_secs(10), "scoring to resume", || {
        let (scoring, now) = monitor.scores();
        scoring && now[&1].2 > frozen[&1].2
    });
    check_trajectory(1, &monitor.probes(1));
    check_trajectory(10, &monitor.probes(10));
}

/// The addresses `serve` answers for the numbered names 0 to 3.
async fn served(server: &TestServer) -> Vec<IpAddr> {
    let mut all = Vec::new();
    for name in ["0", "1", "2", "3"] {
        for a in server.addresses(name, RecordType::A).await {
            if !all.contains(&a) {
                all.push(a);
            }
        }
    }
    all
}

/// Runs a blocking closure off the async test's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_feed_serve_dns_end_to_end_with_a_restart() {
    let hosts = [1, 30];
    let Some(ns) = netns(&hosts) else {
        return;
    };
    let ns = Arc::new(ns);
    let dir = tempfile::tempdir().unwrap();
    let _chrony = chronyd(&ns, dir.path(), 1);
    let responder = Responder::start(&ns, &[(30, Fault::Offset(0.001))]);
    std::fs::write(dir.path().join("registry.json"), registry(&hosts)).unwrap();
    // serve reads the monitor's feed file; it starts from a feed where nothing is eligible.
    let server = TestServer::start_with(
        CONFIG,
        r#"{"servers": []}"#,
        pooldns::server::ServerOptions::default(),
    )
    .await;
    let out = server.feed_path.display().to_string();
    let monitor = {
        let (ns, path, out) = (ns.clone(), dir.path().to_owned(), out.clone());
        blocking(move || Monitor::start(&ns, &path, "m", 8054, &["--out".into(), out])).await
    };
    let monitor = Arc::new(Mutex::new(monitor));
    let probes = |id: u8| {
        let m = monitor.clone();
        blocking(move || m.lock().unwrap().probes(id))
    };
    let new_server: IpAddr = "10.99.0.30".parse().unwrap();

    // A new healthy server enters the answers after 14 probes, not before.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answered = served(&server).await.contains(&new_server);
        let done = probes(30).await.len();
        if answered {
            assert!(done >= 14, "in the answers after {done} probes");
            // The feed is written within 200 ms and serve reloads it on change: a few
            // probes of slack (a second each) for a loaded machine.
            assert!(done <= 14 + 8, "took {done} probes to enter");
            break;
        }
        assert!(Instant::now() < deadline, "10.99.0.30 never entered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history = probes(30).await;
    check_trajectory(30, &history);
    assert!(history[12].2 < 10.0 && history[13].2 >= 10.0, "{history:?}");

    // Let it climb to 12, then its offset jumps to 300 ms.
    let deadline = Instant::now() + Duration::from_secs(60);
    while probes(30).await.last().unwrap().2 < 12.0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    responder.set(30, Fault::Offset(0.300));
    let deadline = Instant::now() + Duration::from_secs(60);
    let (before, formula) = loop {
        let answered = served(&server).await.contains(&new_server);
        let history = probes(30).await;
        let jump = history.iter().position(|p| p.1.is_some_and(|o| o > 0.2));
        let since = jump.map_or(0, |j| history.len() - j);
        if let Some(j) = jump {
            // The number of 300 ms probes the table says it takes to fall below 10.
            let before = history[j - 1].2;
            let (mut s, mut formula) = (before, 0);
            while s >= 10.0 {
                s = 0.95 * s + (-2.308 * 0.3 + 0.731);
                formula += 1;
            }
            if !answered {
                assert!(
                    since >= formula,
                    "left after {since} probes, formula {formula}"
                );
                assert!(
                    since <= formula + 8,
                    "left only after {since} probes, formula {formula}"
                );
                break (before, formula);
            }
        }
        assert!(Instant::now() < deadline, "10.99.0.30 never left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let history = probes(30).await;
    check_trajectory(30, &history);
    let j = history
        .iter()
        .position(|p| p.1.is_some_and(|o| o > 0.2))
        .unwrap();
    assert!(history[j + formula - 1].2 < 10.0);
    assert!(formula == 1 || history[j + formula - 2].2 >= 10.0);
    eprintln!("300 ms from score {before:.3}: below 10 after {formula} probes, as the table says");

    // A restart keeps the scores: freeze the clock so nothing moves, restart, compare.
    let (scores_before, scores_after) = {
        let (m, ns, log) = (monitor.clone(), ns.clone(), dir.path().join("m-log"));
        blocking(move || {
            let mut m = m.lock().unwrap();
            m.set_clock("frozen for the restart test");
            wait_for(Duration::from_secs(10), "scoring to stop", || !m.scores().0);
            let before = m.scores().1;
            m.restart(&ns, &log);
            (before, m.scores().1)
        })
        .await
    };
    assert_eq!(scores_after, scores_before);
    assert!(scores_after[&1].0 >= 10.0);
    // serve still answers the healthy server from the rewritten feed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        served(&server)
            .await
            .contains(&"10.99.0.1".parse().unwrap())
    );
    drop(monitor);
    server.stop().await;
}

#[test]
fn two_monitors_with_peer_write_the_median() {
    let hosts = [1, 12];
    let Some(stage) = Stage::new(&hosts, &[1], &[(12, Fault::Offset(2.0))]) else {
        return;
    };
    let (ns, dir) = (&stage.ns, &stage.dir);
    let peer = |port: u16| vec!["--peer".to_owned(), format!("http://127.0.0.1:{port}")];
    let a = Monitor::start(ns, dir.path(), "a", 8061, &peer(8062));
    wait_for(Duration::from_secs(30), "a few probes by A", || {
        a.scores().1.values().all(|s| s.2 >= 4)
    });
    let b = Monitor::start(ns, dir.path(), "b", 8062, &peer(8061));
    wait_for(Duration::from_secs(30), "a few probes by B", || {
        b.scores().1.values().all(|s| s.2 >= 2)
    });
    // Freeze both, so the scores hold still while the peers read each other.
    a.set_clock("frozen");
    b.set_clock("frozen");
    wait_for(Duration::from_secs(10), "scoring to stop", || {
        !a.scores().0 && !b.scores().0
    });
    std::thread::sleep(Duration::from_secs(2));
    let (_, sa) = a.scores();
    let (_, sb) = b.scores();
    for m in ["a", "b"] {
        let feed: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("{m}-feed.json"))).unwrap(),
        )
        .unwrap();
        for entry in feed["servers"].as_array().unwrap() {
            let id = entry["id"].as_u64().unwrap();
            let median = (sa[&id].0 + sb[&id].0) / 2.0;
            assert_ne!(sa[&id].0, sb[&id].0, "the monitors should disagree");
            let written = entry["score"].as_f64().unwrap();
            assert!(
                (written - median).abs() < 1e-9,
                "{m}: server {id}: feed {written}, median of {} and {} is {median}",
                sa[&id].0,
                sb[&id].0
            );
        }
    }
}

#[test]
fn most_servers_off_the_same_way_make_the_monitor_suspect_its_own_clock() {
    let hosts = [10, 11, 12, 13, 14, 15];
    let Some(ns) = netns(&hosts) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let faults: Vec<(u8, Fault)> = hosts.iter().map(|&h| (h, Fault::Offset(0.4))).collect();
    let responder = Responder::start(&ns, &faults);
    std::fs::write(dir.path().join("registry.json"), registry(&hosts)).unwrap();
    let monitor = Monitor::start(&ns, dir.path(), "m", 8054, &[]);
    // Every server 400 ms ahead: it is the monitor's clock that is behind.
    wait_for(
        Duration::from_secs(20),
        "the monitor to suspect itself",
        || monitor.metric("pooldns_monitor_clock_suspect") == 1.0,
    );
    assert!(!monitor.scores().0);
    let (_, frozen) = monitor.scores();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(monitor.scores().1, frozen);
    assert!(
        monitor
            .get("/")
            .unwrap()
            .contains("suspecting the local clock")
    );
    // The servers agree with it again: it scores again.
    for &h in &hosts {
        responder.set(h, Fault::Offset(0.001));
    }
    wait_for(Duration::from_secs(20), "scoring to resume", || {
        monitor.scores().0
    });
    assert_eq!(monitor.metric("pooldns_monitor_clock_suspect"), 0.0);
}

#[test]
fn once_prints_a_table_and_fails_when_a_server_loses_points() {
    let hosts = [1, 18];
    let Some(stage) = Stage::new(&hosts, &[1], &[(18, Fault::Silent)]) else {
        return;
    };
    let (ns, dir) = (&stage.ns, &stage.dir);
    let registry_path = dir.path().join("registry.json");
    let run = |path: &Path| {
        ns.command(env!("CARGO_BIN_EXE_pooldns"))
            .args(["monitor", "--once", "--timeout", "800ms", "--servers"])
            .arg(path)
            .output()
            .expect("run monitor --once")
    };
    let out = run(&registry_path);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{table}");
    let line = |ip: &str| {
        table
            .lines()
            .find(|l| l.contains(ip))
            .unwrap_or_else(|| panic!("{ip} not in {table}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let good = line("10.99.0.1 ");
    assert_eq!((good[2].as_str(), good[5].as_str()), ("ok", "2"), "{table}");
    assert_eq!(good.last().unwrap(), "+1.000");
    let silent = line("10.99.0.18");
    assert_eq!(
        (silent[2].as_str(), silent.last().unwrap().as_str()),
        ("no_response", "-5.000")
    );
    // The healthy one alone: exit 0.
    let one = dir.path().join("one.json");
    std::fs::write(&one, registry(&[1])).unwrap();
    assert!(run(&one).status.success());
}

#[test]
fn a_changed_registry_is_picked_up_and_a_broken_one_refused() {
    let hosts = [1, 2];
    let Some(ns) = netns(&hosts) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let _chrony = [chronyd(&ns, dir.path(), 1), chronyd(&ns, dir.path(), 2)];
    let path = dir.path().join("registry.json");
    std::fs::write(&path, registry(&[1])).unwrap();
    let monitor = Monitor::start(&ns, dir.path(), "m", 8054, &[]);
    wait_for(Duration::from_secs(20), "3 probes of server 1", || {
        monitor.scores().1[&1].2 >= 3
    });
    let replace = |text: &str| {
        let tmp = dir.path().join("registry.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    // Server 2 joins (and a bad entry is skipped): server 1 keeps its score and probes.
    let before = monitor.scores().1[&1].2;
    replace(&registry(&[1, 2]).replace("]}", r#", {"id": 3, "ip": "nope", "netspeed": 1}]}"#));
    wait_for(Duration::from_secs(20), "server 2 to be probed", || {
        monitor.scores().1.get(&2).is_some_and(|s| s.2 >= 2)
    });
    let (_, scores) = monitor.scores();
    assert_eq!(scores.len(), 2);
    assert!(scores[&1].2 > before);
    check_trajectory(1, &monitor.probes(1));
    check_trajectory(2, &monitor.probes(2));
    // A broken registry is refused, loudly; both servers stay monitored, also on SIGHUP.
    replace("{\"servers\": [");
    signal_group(monitor.daemon.child.id(), "HUP");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(monitor.scores().1.len(), 2);
    let log = std::fs::read_to_string(dir.path().join("m-log")).unwrap();
    assert!(
        log.contains("still monitoring the last good registry"),
        "{log}"
    );
    assert!(
        log.contains("servers[2] (id 3): ip \"nope\" is not an address"),
        "{log}"
    );
}

#[test]
fn the_monitor_systemd_unit_uses_real_flags_allows_adjtimex_and_verifies() {
    let unit =
        std::fs::read_to_string(crate::harness::repo("contrib/pooldns-monitor.service")).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for directive in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "SystemCallFilter=@system-service",
        "StateDirectory=pooldns-monitor",
    ] {
        assert!(lines.contains(&directive), "{directive} missing");
    }
    // adjtimex is in @clock, which the deny line's @privileged holds: it must be allowed
    // again after that line.
    let position = |line: &str| lines.iter().position(|l| *l == line);
    let deny = position("SystemCallFilter=~@privileged @resources").expect("deny line");
    let allow = position("SystemCallFilter=adjtimex").expect("adjtimex allowed");
    assert!(allow > deny);
    // ProtectClock= would deny adjtimex: the monitor could never score.
    assert!(!lines.iter().any(|l| l.starts_with("ProtectClock=")));
    crate::harness::check_unit_exec(&unit, "pooldns-monitor.service", "monitor");
}

/// The addresses `pooldns serve` at 127.0.0.1:`port` of namespace `ns` answers for the
/// numbered names 0 to 3, asked from inside the namespace; None when it does not answer.
fn served_in(ns: &str, port: u16) -> Option<Vec<IpAddr>> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
        socket.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let mut all = Vec::new();
        for name in ["0", "1", "2", "3"] {
            let q = crate::harness::query(name, RecordType::A).to_vec().ok()?;
            socket.send_to(&q, ("127.0.0.1", port)).ok()?;
            let mut buf = [0u8; 1500];
            let n = socket.recv(&mut buf).ok()?;
            let answer = hickory_proto::op::Message::from_vec(&buf[..n]).ok()?;
            for a in crate::harness::addresses(&answer) {
                if !all.contains(&a) {
                    all.push(a);
                }
            }
        }
        Some(all)
    })
    .join()
    .ok()
    .flatten()
}

#[test]
fn serve_polls_the_feed_from_the_monitor_over_http() {
    let hosts = [1, 18];
    let Some(stage) = Stage::new(&hosts, &[1], &[(18, Fault::Silent)]) else {
        return;
    };
    let (ns, dir) = (&stage.ns, &stage.dir);
    let monitor = Monitor::start(ns, dir.path(), "m", 8054, &[]);
    wait_for(Duration::from_secs(10), "the first feed", || {
        monitor.get("/monitor/feed.json").is_some()
    });
    // The deployment of contrib/pooldns-monitor.service: serve polls the monitor's URL.
    let config = dir.path().join("zone.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let serve_log = std::fs::File::create(dir.path().join("serve-log")).unwrap();
    let _serve = Daemon {
        child: ns
            .command(env!("CARGO_BIN_EXE_pooldns"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--geoip")
            .arg(crate::harness::repo(crate::harness::TEST_GEOIP))
            .args([
                "--feed",
                "http://127.0.0.1:8054/monitor/feed.json",
                "--feed-interval",
                "1",
                "--state-dir",
                "none",
                "--listen",
                "127.0.0.1:5300",
                "--http",
                "none",
            ])
            .stdout(Stdio::null())
            .stderr(serve_log)
            .spawn()
            .expect("start serve"),
    };
    let healthy: IpAddr = "10.99.0.1".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answered = served_in(&ns.name, 5300).is_some_and(|a| a.contains(&healthy));
        let probes = monitor.probes(1).len();
        if answered {
            assert!(probes >= 14, "served after {probes} probes");
            break;
        }
        assert!(Instant::now() < deadline, "10.99.0.1 never served");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The silent server never is.
    let answers = served_in(&ns.name, 5300).unwrap();
    assert!(
        !answers.contains(&"10.99.0.18".parse().unwrap()),
        "{answers:?}"
    );
}
