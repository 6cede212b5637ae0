//! The `pooldns` binary as operators run it: startup errors exit non-zero with one message
//! that names the file or address and says what is wrong with it (missing or bad zone
//! configuration, missing or unparsable feed, a GeoIP database that is not one, a port in
//! use); `pooldns serve` on the real zone answers `0.pool.ntp.org`; SIGHUP reloads the
//! configuration and the feed; SIGTERM stops it with exit status 0.
//!
//! Every run uses explicit flags and a temporary working directory, so nothing depends on
//! where the tests run from.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::harness::*;

#[tokio::test]
async fn missing_config_file_exits_nonzero_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("no-such-zone.toml");
    let stderr = run_failing(&dir, &args(&config, &feed(), &geoip(), "127.0.0.1:0")).await;
    assert_names(&stderr, &config, "cannot read");
    assert_said_once(&stderr, "No such file or directory");
}

#[tokio::test]
async fn bad_toml_exits_nonzero_with_the_path_and_the_parse_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("zone.toml");
    // Good TOML with a bad value: the key and the reason.
    std::fs::write(
        &config,
        CONFIG.replace("value = \"192.0.2.53\"", "value = \"192.0.2\""),
    )
    .unwrap();
    let stderr = run_failing(&dir, &args(&config, &feed(), &geoip(), "127.0.0.1:0")).await;
    assert_names(
        &stderr,
        &config,
        "records[0] (ns1 A): value is not an IPv4 address",
    );

    // TOML that does not parse: the position, told once.
    std::fs::write(&config, "origin = \"pool.test\n[soa]\n").unwrap();
    let stderr = run_failing(&dir, &args(&config, &feed(), &geoip(), "127.0.0.1:0")).await;
    assert_names(&stderr, &config, "line 1");
    assert_said_once(&stderr, "TOML parse error");
}

#[tokio::test]
async fn missing_feed_exits_nonzero_naming_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("no-such-feed.json");
    let stderr = run_failing(&dir, &args(&zone(), &feed, &geoip(), "127.0.0.1:0")).await;
    assert_names(&stderr, &feed, "cannot read");
    assert_said_once(&stderr, "No such file or directory");
}

#[tokio::test]
async fn unparsable_feed_exits_nonzero_naming_the_feed_and_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("servers.json");
    for (text, position) in [
        ("<html>not JSON</html>\n", "line 1 column 1"),
        ("{\"serial\": 1,\n \"servers\": {}}\n", "line 2 column"),
    ] {
        std::fs::write(&feed, text).unwrap();
        let stderr = run_failing(&dir, &args(&zone(), &feed, &geoip(), "127.0.0.1:0")).await;
        assert_names(&stderr, &feed, "not a feed");
        assert!(stderr.contains(position), "{position} not in: {stderr}");
    }
}

#[tokio::test]
async fn garbage_geoip_database_exits_nonzero_naming_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let mmdb = dir.path().join("country.mmdb");
    let mut rng = StdRng::seed_from_u64(0x6d6d_6462);
    let garbage: Vec<u8> = (0..4096).map(|_| rng.random::<u8>()).collect();
    std::fs::write(&mmdb, garbage).unwrap();
    let stderr = run_failing(&dir, &args(&zone(), &feed(), &mmdb, "127.0.0.1:0")).await;
    assert_names(&stderr, &mmdb, "not a usable GeoIP database");
    // An empty file and a directory are no databases either.
    std::fs::write(&mmdb, b"").unwrap();
    let stderr = run_failing(&dir, &args(&zone(), &feed(), &mmdb, "127.0.0.1:0")).await;
    assert_names(&stderr, &mmdb, "not a usable GeoIP database");
    let stderr = run_failing(&dir, &args(&zone(), &feed(), dir.path(), "127.0.0.1:0")).await;
    assert_names(&stderr, dir.path(), "not a usable GeoIP database");
}

#[tokio::test]
async fn port_in_use_exits_nonzero_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    // TCP taken, UDP free.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let stderr = run_failing(&dir, &args(&zone(), &feed(), &geoip(), &addr.to_string())).await;
    assert!(
        stderr.contains(&format!("TCP {addr}")),
        "{addr} not in: {stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
    drop(taken);

    // UDP taken.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let stderr = run_failing(&dir, &args(&zone(), &feed(), &geoip(), &addr.to_string())).await;
    assert!(
        stderr.contains(&format!("UDP {addr}")),
        "{addr} not in: {stderr}"
    );
    assert_said_once(&stderr, "in use");
    drop(taken);
}

#[tokio::test]
async fn serve_answers_0_pool_ntp_org_with_4_servers_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut child = Server::spawn(&dir, &args(&zone(), &feed(), &geoip(), &addr.to_string()));
    let first = wait_until_up(&mut child, addr).await;

    let eligible = eligible_v4(&std::fs::read_to_string(feed()).unwrap());
    let mut answers = vec![first];
    for _ in 0..20 {
        answers.push(
            ask(addr, "0.pool.ntp.org.", RecordType::A)
                .await
                .expect("answer"),
        );
    }
    for r in &answers {
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        let got = addresses(r);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), 4, "{got:?}");
        assert!(got.iter().all(|ip| eligible.contains(ip)), "{got:?}");
    }
    // TCP serves the same name.
    let q = query("0.pool.ntp.org.", RecordType::A).to_vec().unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    write_framed(&mut stream, &q).await.unwrap();
    let tcp = Message::from_vec(&read_framed(&mut stream).await.expect("TCP")).unwrap();
    assert_eq!(addresses(&tcp).len(), 4);
    drop(stream);

    // A second instance on the same address does not start (its UDP sockets use
    // SO_REUSEPORT, so it must not quietly share the port with the first).
    let second = run_failing(&dir, &args(&zone(), &feed(), &geoip(), &addr.to_string())).await;
    assert!(
        second.contains(&addr.to_string()),
        "{addr} not in: {second}"
    );
    assert!(second.contains("in use"), "{second}");

    let status = child.signal_and_wait("TERM", Duration::from_secs(5)).await;
    assert!(status.success(), "SIGTERM: exit {status:?}");
}

/// The UDP workers put themselves under SCHED_BATCH (less CPU a query at moderate rates,
/// `src/server/sched.rs`) and every other thread keeps the default policy, so that reloads
/// and TCP still preempt; `--udp-sched normal` leaves every thread at the default.
#[tokio::test]
async fn udp_workers_run_under_sched_batch_and_every_other_thread_under_the_default() {
    for (flag, worker_policy) in [
        (None, libc::SCHED_BATCH),
        (Some("normal"), libc::SCHED_OTHER),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let mut a = args(&zone(), &feed(), &geoip(), &addr.to_string());
        a.extend(["--udp-workers".into(), "2".into()]);
        if let Some(f) = flag {
            a.extend(["--udp-sched".into(), f.into()]);
        }
        let mut child = Server::spawn(&dir, &a);
        wait_until_up(&mut child, addr).await;
        let want = |name: &str| {
            if name.starts_with("udp-") {
                worker_policy
            } else {
                libc::SCHED_OTHER
            }
        };
        // The second worker may still be starting when the first answers.
        let started = Instant::now();
        let threads = loop {
            let threads = thread_policies(child.0.id());
            let workers = threads
                .iter()
                .filter(|(n, _)| n.starts_with("udp-"))
                .count();
            let settled = threads.iter().all(|(name, p)| *p == want(name));
            if (workers == 2 && settled) || started.elapsed() > Duration::from_secs(10) {
                break threads;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            threads
                .iter()
                .filter(|(n, _)| n.starts_with("udp-"))
                .count(),
            2,
            "{threads:?}"
        );
        assert!(threads.len() > 2, "runtime threads too: {threads:?}");
        for (name, policy) in &threads {
            assert_eq!(
                *policy,
                want(name),
                "--udp-sched {flag:?}, thread {name}: {threads:?}"
            );
        }
        let status = child.signal_and_wait("TERM", Duration::from_secs(5)).await;
        assert!(status.success(), "SIGTERM: exit {status:?}");
    }
}

/// Every thread of process `pid`: its name and scheduling policy (field 41 of
/// /proc/PID/task/TID/stat, the 39th after the parenthesised name).
fn thread_policies(pid: u32) -> Vec<(String, i32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let path = task.expect("task").path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // the thread ended
        };
        let after_name = &stat[stat.rfind(')').expect("stat has a name") + 1..];
        let policy = after_name
            .split_whitespace()
            .nth(38)
            .and_then(|p| p.parse().ok())
            .expect("policy field");
        threads.push((comm.trim().to_owned(), policy));
    }
    threads
}

#[tokio::test]
async fn sighup_reloads_a_changed_configuration_and_feed() {
    // The feed is read through a symlink whose target lives in another directory, so the
    // feed watcher (on the symlink's directory) sees no change: only SIGHUP reloads it.
    // The configuration is never watched.
    let dir = tempfile::tempdir().unwrap();
    let (real, watched) = (dir.path().join("real"), dir.path().join("watched"));
    std::fs::create_dir_all(&real).unwrap();
    std::fs::create_dir_all(&watched).unwrap();
    let original = std::fs::read_to_string(feed()).unwrap();
    std::fs::write(real.join("servers.json"), &original).unwrap();
    std::os::unix::fs::symlink(real.join("servers.json"), watched.join("servers.json")).unwrap();
    let config = dir.path().join("pool.ntp.org.toml");
    std::fs::copy(zone(), &config).unwrap();

    let addr = free_addr();
    let mut child = Server::spawn(
        &dir,
        &args(
            &config,
            &watched.join("servers.json"),
            &geoip(),
            &addr.to_string(),
        ),
    );
    wait_until_up(&mut child, addr).await;
    let old_serial = serial_of(&original);
    assert_eq!(soa_serial(addr).await, old_serial);
    assert_eq!(hup_txt(addr).await, None);

    // A new serial and one server heavier than all others together (so it is in every
    // apex answer), and a TXT record in the configuration.
    let heavy: IpAddr = "203.0.113.123".parse().unwrap();
    assert!(!original.contains("\"203.0.113.123\""));
    let mut json: serde_json::Value = serde_json::from_str(&original).unwrap();
    json["serial"] = (old_serial + 1).into();
    json["servers"].as_array_mut().unwrap().push(serde_json::json!(
        {"id": 999_999, "ip": "203.0.113.123", "netspeed": 4_000_000_000u32, "score": 20.0, "country": "de"}
    ));
    std::fs::write(real.join("servers.json"), json.to_string()).unwrap();
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("\n[[records]]\nname = \"_hup\"\ntype = \"TXT\"\nvalue = \"reloaded\"\n");
    std::fs::write(&config, toml).unwrap();

    // Nothing changes by itself…
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        assert_eq!(
            soa_serial(addr).await,
            old_serial,
            "feed reloaded before SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // …and SIGHUP brings in both.
    child.signal("HUP");
    let reloaded = eventually(Duration::from_secs(5), async || {
        soa_serial(addr).await == old_serial + 1
    })
    .await;
    assert!(reloaded, "feed not reloaded on SIGHUP");
    assert_eq!(hup_txt(addr).await.as_deref(), Some(&b"reloaded"[..]));
    for _ in 0..20 {
        let r = ask(addr, "pool.ntp.org.", RecordType::A).await.unwrap();
        assert!(addresses(&r).contains(&heavy), "{:?}", addresses(&r));
    }
    assert!(child.0.try_wait().unwrap().is_none(), "exited after SIGHUP");
    let status = child.signal_and_wait("TERM", Duration::from_secs(5)).await;
    assert!(status.success(), "SIGTERM: exit {status:?}");
}

// ---------------------------------------------------------------------------------------
// Helpers

fn zone() -> PathBuf {
    repo("zones/pool.ntp.org.toml")
}

fn feed() -> PathBuf {
    repo("data/servers.json")
}

fn geoip() -> PathBuf {
    repo("data/dbip-country.mmdb")
}

fn args(config: &Path, feed: &Path, geoip: &Path, listen: &str) -> Vec<String> {
    let path = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
    vec![
        "serve".into(),
        "--config".into(),
        path(config),
        "--feed".into(),
        path(feed),
        "--geoip".into(),
        path(geoip),
        "--listen".into(),
        listen.into(),
        // The HTTP side has a fixed default port; tests run side by side.
        "--http".into(),
        "none".into(),
    ]
}

/// Runs the binary, which must exit non-zero within 20 s; returns its stderr.
async fn run_failing(dir: &tempfile::TempDir, args: &[String]) -> String {
    let mut child = Server::spawn(dir, args);
    let status = child.wait(Duration::from_secs(20)).await;
    let status = status.unwrap_or_else(|| panic!("still running: pooldns {}", args.join(" ")));
    let stderr = child.stderr();
    assert!(!status.success(), "exit 0 for pooldns {}", args.join(" "));
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    stderr
}

/// The message names the file and says `what`.
fn assert_names(stderr: &str, file: &Path, what: &str) {
    let file = file.display().to_string();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("pooldns: "))
        .unwrap_or_else(|| panic!("no `pooldns: ` error line in: {stderr}"));
    assert!(line.contains(&file), "{file} not in: {stderr}");
    assert!(stderr.contains(what), "{what:?} not in: {stderr}");
}

/// The cause is told once, not repeated by the error chain.
fn assert_said_once(stderr: &str, cause: &str) {
    assert_eq!(
        stderr.matches(cause).count(),
        1,
        "{cause:?} should appear exactly once in: {stderr}"
    );
}

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap();
    // TCP takes the same port; make sure it is free too.
    let tcp = std::net::TcpListener::bind(addr).unwrap();
    drop((udp, tcp));
    addr
}

/// A child process that is killed if the test ends early.
struct Server(Child);

impl Server {
    fn spawn(dir: &tempfile::TempDir, args: &[String]) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_pooldns"))
            .args(args)
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pooldns");
        Server(child)
    }

    /// Polls for the exit status for up to `limit`.
    async fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return Some(status);
            }
            if started.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut pipe) = self.0.stderr.take() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    async fn signal_and_wait(&mut self, name: &str, limit: Duration) -> ExitStatus {
        self.signal(name);
        match self.wait(limit).await {
            Some(status) => status,
            None => panic!("still running {limit:?} after SIG{name}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Polls until `0.pool.ntp.org` A is answered (the process loads a 3000-server feed and
/// the GeoIP database first); fails early if the process exits.
async fn wait_until_up(child: &mut Server, addr: SocketAddr) -> Message {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("pooldns exited with {status:?}: {}", child.stderr());
        }
        if let Some(r) = ask(addr, "0.pool.ntp.org.", RecordType::A).await {
            return r;
        }
    }
    panic!("no answer from {addr} after 30 s");
}

/// One UDP query; None after 200 ms without an answer.
async fn ask(addr: SocketAddr, name: &str, qtype: RecordType) -> Option<Message> {
    let q = query(name, qtype);
    let reply = raw_udp(addr, &q.to_vec().unwrap(), Duration::from_millis(200)).await?;
    let r = Message::from_vec(&reply).expect("answer parses");
    assert_eq!(r.metadata.id, q.metadata.id);
    Some(r)
}

async fn soa_serial(addr: SocketAddr) -> u32 {
    let r = ask(addr, "pool.ntp.org.", RecordType::SOA)
        .await
        .expect("SOA");
    match r.answers.first().map(|a| &a.data) {
        Some(RData::SOA(soa)) => soa.serial,
        other => panic!("no SOA: {other:?}"),
    }
}

/// The text at `_hup.pool.ntp.org`, if the name has a TXT record.
async fn hup_txt(addr: SocketAddr) -> Option<Vec<u8>> {
    let r = ask(addr, "_hup.pool.ntp.org.", RecordType::TXT)
        .await
        .expect("TXT");
    r.answers.first().map(|a| match &a.data {
        RData::TXT(t) => t.txt_data.concat(),
        other => panic!("not TXT: {other:?}"),
    })
}

fn serial_of(feed: &str) -> u32 {
    let json: serde_json::Value = serde_json::from_str(feed).unwrap();
    json["serial"].as_u64().unwrap() as u32
}

/// IPv4 servers of a feed that may be handed out (score ≥ 10, net speed > 0).
fn eligible_v4(feed: &str) -> HashSet<IpAddr> {
    let json: serde_json::Value = serde_json::from_str(feed).unwrap();
    json["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["score"].as_f64().unwrap() >= 10.0 && s["netspeed"].as_u64().unwrap() > 0)
        .filter_map(|s| s["ip"].as_str().unwrap().parse::<IpAddr>().ok())
        .filter(IpAddr::is_ipv4)
        .collect()
}
