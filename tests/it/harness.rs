//! Starting a server in-process and talking DNS to it.

#![allow(dead_code)] // each test module uses a different part

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use pooldns::reload::{Reloader, Sources};
use pooldns::server::{self, Listeners, ServerOptions, SharedTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;

/// MaxMind's GeoIP2 country test database (nested record shape). Known networks:
/// 81.2.69.142/31 GB, 89.160.20.112/28 SE, 216.160.83.56/29 US, 67.43.156.0/24 BT,
/// 175.16.199.0/24 CN, 202.196.224.0/20 PH, 2001:218::/32 JP, 2a02:cf40::/29 NO,
/// 2a02:e700::/29 LY; 1.1.1.1 is in no network (1.0.0.0/8 empty).
pub const TEST_GEOIP: &str = "tests/data/geoip/GeoIP2-Country-Test.mmdb";

/// A small zone configuration for tests: origin pool.test, pool defaults otherwise.
pub const CONFIG: &str = r#"
origin = "pool.test"
aliases = { gb = "uk" }
vendors = ["debian"]

[soa]
mname = "ns1.pool.test"
rname = "hostmaster.pool.test"
minimum = 600
ttl = 3600

[ns]
names = ["ns1.pool.test", "ns2.example.net"]

[[records]]
name = "ns1"
type = "A"
value = "192.0.2.53"

[[records]]
name = "www"
type = "CNAME"
value = "www.example.net"

[[records]]
name = "@"
type = "TXT"
value = "hello"

[[records]]
name = "@"
type = "MX"
value = "0 ."

[[records]]
name = "_ntp._udp"
type = "SRV"
value = "0 0 123 pool.test"
"#;

/// One feed entry.
#[derive(Debug, Clone)]
pub struct S {
    pub id: u64,
    pub ip: &'static str,
    pub netspeed: u32,
    pub score: f64,
    pub country: &'static str,
}

/// Shorthand for an eligible server.
pub fn s(id: u64, ip: &'static str, netspeed: u32, country: &'static str) -> S {
    S {
        id,
        ip,
        netspeed,
        score: 19.0,
        country,
    }
}

/// Renders a feed.
pub fn feed_json(servers: &[S]) -> String {
    let entries: Vec<String> = servers
        .iter()
        .map(|s| {
            format!(
                r#"{{"id": {}, "ip": "{}", "netspeed": {}, "score": {}, "country": "{}"}}"#,
                s.id, s.ip, s.netspeed, s.score, s.country
            )
        })
        .collect();
    format!(
        "{{\"serial\": 2026112201, \"servers\": [\n{}\n]}}\n",
        entries.join(",\n")
    )
}

/// A running server with its files.
pub struct TestServer {
    pub addr: SocketAddr,
    pub table: SharedTable,
    pub dir: tempfile::TempDir,
    pub feed_path: PathBuf,
    /// Load history: loads accepted and refused, the last refusal.
    pub reload: std::sync::Arc<pooldns::reload::ReloadStatus>,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Path of a file in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

impl TestServer {
    /// Starts a server on 127.0.0.1:0 with the test config and the given feed.
    pub async fn start(feed: &str) -> TestServer {
        Self::start_with(CONFIG, feed, ServerOptions::default()).await
    }

    /// Starts a server with a config text, feed text and options.
    pub async fn start_with(config: &str, feed: &str, options: ServerOptions) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("zone.toml");
        let feed_path = dir.path().join("servers.json");
        std::fs::write(&config_path, config).expect("write config");
        std::fs::write(&feed_path, feed).expect("write feed");
        let reloader = Reloader::load(Sources {
            config: config_path,
            feed: feed_path.clone(),
            geoip: Some(repo(TEST_GEOIP)),
            ..Default::default()
        })
        .expect("load");
        Self::serve(dir, feed_path, reloader, options)
    }

    /// Binds 127.0.0.1:0, starts the server and the reload task, and returns the handle.
    fn serve(
        dir: tempfile::TempDir,
        feed_path: PathBuf,
        mut reloader: Reloader,
        options: ServerOptions,
    ) -> TestServer {
        let listeners = Listeners::bind(&["127.0.0.1:0".parse().unwrap()]).expect("bind");
        let addr = listeners.udp_addrs()[0];
        let table = reloader.table();
        let reload = reloader.status();
        // Watch before returning, so a test may change the feed at once.
        reloader.start_watching();
        let (stop, stopped) = oneshot::channel::<()>();
        let (reload_stop, reload_stopped) = oneshot::channel::<()>();
        let served = table.clone();
        let metrics = std::sync::Arc::new(pooldns::metrics::Metrics::default());
        let server = tokio::spawn(async move {
            server::run(listeners, served, metrics, options, async move {
                let _ = stopped.await;
                let _ = reload_stop.send(());
            })
            .await
            .expect("serve");
        });
        let reload_task = tokio::spawn(reloader.run(None, async move {
            let _ = reload_stopped.await;
        }));
        TestServer {
            addr,
            table,
            dir,
            feed_path,
            stop: Some(stop),
            reload,
            tasks: vec![server, reload_task],
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    /// Replaces the feed file the way deploy tools do (write aside, rename over).
    pub fn replace_feed(&self, json: &str) {
        let tmp = self.dir.path().join(".servers.json.tmp");
        std::fs::write(&tmp, json).expect("write feed");
        std::fs::rename(&tmp, &self.feed_path).expect("rename feed");
    }

    /// Sends raw bytes over UDP; the answer, or None after a timeout.
    pub async fn raw_udp(&self, packet: &[u8]) -> Option<Vec<u8>> {
        raw_udp(self.addr, packet, Duration::from_secs(2)).await
    }

    /// Sends one message over TCP and reads one answer.
    pub async fn raw_tcp(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let mut stream = TcpStream::connect(self.addr).await.ok()?;
        write_framed(&mut stream, packet).await.ok()?;
        read_framed(&mut stream).await
    }

    /// Queries over UDP and parses the answer.
    pub async fn udp(&self, query: &Message) -> Message {
        let bytes = self
            .raw_udp(&query.to_vec().expect("encode"))
            .await
            .expect("no answer over UDP");
        Message::from_vec(&bytes).expect("answer parses")
    }

    /// Queries over TCP and parses the answer.
    pub async fn tcp(&self, query: &Message) -> Message {
        let bytes = self
            .raw_tcp(&query.to_vec().expect("encode"))
            .await
            .expect("no answer over TCP");
        Message::from_vec(&bytes).expect("answer parses")
    }

    /// A/AAAA addresses of a UDP answer for `name` (relative to pool.test).
    pub async fn addresses(&self, name: &str, qtype: RecordType) -> Vec<IpAddr> {
        addresses(&self.udp(&query(name, qtype)).await)
    }
}

/// Where the feed of [`TestServer::start_sources`] comes from.
pub enum FeedFrom<'a> {
    /// A file with this text: `servers.json` in the server's directory.
    File(&'a str),
    /// A URL, polled.
    Url(&'a str),
}

impl TestServer {
    /// Starts a server whose zone configuration (`zone.toml`) and GeoIP database
    /// (`geoip.mmdb`, a copy of `geoip`) are files in its own directory, so that a test may
    /// replace either, and whose feed is a file there or a URL polled with `poll`.
    pub async fn start_sources(
        config: &str,
        feed: FeedFrom<'_>,
        geoip: &Path,
        poll: pooldns::feed::PollOptions,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("zone.toml");
        let geoip_path = dir.path().join("geoip.mmdb");
        let feed_path = dir.path().join("servers.json");
        std::fs::write(&config_path, config).expect("write config");
        std::fs::copy(geoip, &geoip_path).expect("copy GeoIP database");
        let feed_arg = match feed {
            FeedFrom::File(text) => {
                std::fs::write(&feed_path, text).expect("write feed");
                feed_path.clone()
            }
            FeedFrom::Url(url) => PathBuf::from(url),
        };
        let sources = Sources {
            config: config_path,
            feed: feed_arg,
            geoip: Some(geoip_path),
            ..Default::default()
        };
        // Loading a URL blocks on the network: off the test's runtime.
        let reloader = tokio::task::spawn_blocking(move || Reloader::load_with(sources, poll))
            .await
            .expect("load task")
            .expect("load");
        Self::serve(dir, feed_path, reloader, ServerOptions::default())
    }

    /// The zone configuration of a server from [`TestServer::start_sources`].
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("zone.toml")
    }

    /// The GeoIP database of a server from [`TestServer::start_sources`].
    pub fn geoip_path(&self) -> PathBuf {
        self.dir.path().join("geoip.mmdb")
    }

    /// Replaces a file of the server's directory the way deploy tools do (write aside,
    /// rename over).
    pub fn replace_file(&self, name: &str, contents: &[u8]) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).expect("write file");
        std::fs::rename(&tmp, self.dir.path().join(name)).expect("rename file");
    }

    /// Feeds loaded so far.
    pub fn loads_ok(&self) -> u64 {
        self.reload
            .input(pooldns::reload::Input::Feed)
            .ok
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Loads refused so far, every input together.
    pub fn loads_refused(&self) -> u64 {
        self.reload.loads_refused()
    }

    /// The reason of the last refusal, if any.
    pub fn last_refusal(&self) -> Option<String> {
        self.reload.last_refusal().map(|(_, _, why)| why)
    }
}

/// Sends raw bytes over UDP from a fresh socket.
pub async fn raw_udp(addr: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    socket.send_to(packet, addr).await.ok()?;
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(wait, socket.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Writes one length-prefixed message.
pub async fn write_framed(stream: &mut TcpStream, packet: &[u8]) -> std::io::Result<()> {
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed).await
}

/// Reads one length-prefixed message (None on close or after 5 s).
pub async fn read_framed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let read = async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.ok()?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.ok()?;
        Some(buf)
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()?
}

/// A query for `name` under pool.test ("@" = apex; a name ending in "." is absolute).
/// One UDP query for `name` A with `id` from a socket of the test's own (many queries in
/// flight on one socket), retried on a (rare) lost datagram; replies to earlier tries are
/// skipped. Panics when three tries go unanswered.
pub async fn ask_a(
    socket: &tokio::net::UdpSocket,
    addr: SocketAddr,
    name: &str,
    id: u16,
) -> Message {
    let mut q = query(name, RecordType::A);
    q.metadata.id = id;
    let bytes = q.to_vec().unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..3 {
        socket.send_to(&bytes, addr).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            let r = Message::from_vec(&buf[..n]).expect("answer parses");
            if r.metadata.id == id {
                return r;
            }
        }
    }
    panic!("no answer to {name} (id {id})");
}

pub fn query(name: &str, qtype: RecordType) -> Message {
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else if name == "@" {
        "pool.test.".to_owned()
    } else {
        format!("{name}.pool.test.")
    };
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = false;
    let mut q = Query::query(Name::from_ascii(&fqdn).expect("name"), qtype);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    m
}

/// The same query with an OPT record.
pub fn with_edns(mut m: Message, payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    m.set_edns(edns);
    m
}

/// The same query with an OPT record carrying a client subnet.
pub fn with_ecs(m: Message, addr: &str, source: u8) -> Message {
    let mut m = with_edns(m, 1232);
    let subnet = ClientSubnet::new(addr.parse().expect("address"), source, 0);
    m.edns
        .as_mut()
        .expect("edns")
        .options_mut()
        .insert(EdnsOption::Subnet(subnet));
    m
}

/// The client subnet echoed in an answer: (address, source, scope).
pub fn echoed_ecs(m: &Message) -> Option<(IpAddr, u8, u8)> {
    let edns = m.edns.as_ref()?;
    match edns
        .options()
        .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)?
    {
        EdnsOption::Subnet(s) => Some((s.addr(), s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

/// The A/AAAA addresses in the answer section.
pub fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check().await
}

/// Whether every one of `programs` is installed. When one is missing the test skips with a
/// message outside CI and fails in CI, which must install the Debian `package`.
pub fn installed(programs: &[&str], package: &str, test: &str) -> bool {
    let Some(missing) = programs.iter().find(|p| !Path::new(p).exists()) else {
        return true;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing} is not installed; CI must have it (apt-get install {package})"
    );
    eprintln!("{test}: {missing} not installed (apt-get install {package}): SKIPPING");
    false
}

/// Signals the process group `pgid` (the daemon and whatever it forked; nothing else is in
/// it, since the daemon was started as the leader of a new group).
pub fn signal_group(pgid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// A loopback port free for both UDP and TCP at the time of asking.
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = udp.local_addr().expect("local addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Checks a systemd unit of ours: its `ExecStart=` (continuation lines joined) runs
/// `/usr/local/bin/pooldns SUBCOMMAND` with flags that `pooldns SUBCOMMAND --help` lists,
/// and `systemd-analyze verify` (when installed) accepts it against the binary just built.
/// Returns the words of `ExecStart=`.
pub fn check_unit_exec(unit: &str, file_name: &str, subcommand: &str) -> Vec<String> {
    use std::process::{Command, Stdio};
    let mut exec = String::new();
    for line in unit.lines().skip_while(|l| !l.starts_with("ExecStart=")) {
        let line = line.trim_end();
        exec.push_str(line.trim_end_matches('\\'));
        exec.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    let words: Vec<String> = exec
        .trim_start_matches("ExecStart=")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(words[..2], ["/usr/local/bin/pooldns", subcommand], "{exec}");
    let help = Command::new(env!("CARGO_BIN_EXE_pooldns"))
        .args([subcommand, "--help"])
        .output()
        .expect("pooldns --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in words.iter().filter(|w| w.starts_with("--")) {
        assert!(
            help.contains(&format!("{flag} ")),
            "{flag} is no {subcommand} flag"
        );
    }
    // systemd's own check, against the binary just built (verify wants it to exist).
    let Ok(status) = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
    else {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze not found");
        return words;
    };
    assert!(status.success());
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(file_name);
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/pooldns", env!("CARGO_BIN_EXE_pooldns")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze verify");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(file_name), "{stderr}");
    words
}

/// pooldns serving DNS (UDP and TCP on `listeners`) and HTTP (on `http`, with `state`) in
/// this process, as `serve` runs them, and its reloader when one is given; all stopped
/// together by [`InProcess::stop`].
pub struct InProcess {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    /// Starts the DNS and HTTP sides (and `reloader`) on the current runtime.
    pub fn start(
        listeners: Listeners,
        http: tokio::net::TcpListener,
        state: pooldns::http::HttpState,
        reloader: Option<Reloader>,
    ) -> InProcess {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|&s| s).await;
        };
        let (table, metrics) = (state.table.clone(), state.metrics.clone());
        let serving = until_stopped(stopped.clone());
        let mut tasks = vec![tokio::spawn(async move {
            server::run(listeners, table, metrics, ServerOptions::default(), serving)
                .await
                .expect("serve");
        })];
        if let Some(reloader) = reloader {
            tasks.push(tokio::spawn(
                reloader.run(None, until_stopped(stopped.clone())),
            ));
        }
        let serving = until_stopped(stopped);
        tasks.push(tokio::spawn(async move {
            pooldns::http::serve(http, state, serving)
                .await
                .expect("HTTP");
        }));
        InProcess { stop, tasks }
    }

    /// Stops every side and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await.expect("task");
        }
    }
}
