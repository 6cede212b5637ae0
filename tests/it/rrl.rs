//! Response rate limiting (issue 11) against the real server: floods from many loopback
//! addresses of one /24 (Linux routes all of 127.0.0.0/8 to lo, so a socket may bind any
//! 127.x.y.z), a bystander prefix, valid server cookies, `log_only`, and TCP.
//!
//! Rates and durations leave room on slow machines: 10 answers a second against about
//! 1,000 queries a second for 2 s, so "at most the rate" is checked with a full second of
//! slack and a whole burst on top.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pooldns::metrics::Metrics;
use pooldns::reload::{Reloader, Sources};
use pooldns::server::{self, Listeners, ServerOptions};
use tokio::sync::oneshot;

use super::harness::{CONFIG, TEST_GEOIP, feed_json, repo, s};

/// The limit every test runs with.
const RATE: usize = 10;

/// A server with its metrics (the harness's `TestServer` does not expose them).
struct Running {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(rrl: &str) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("zone.toml");
        let feed = dir.path().join("servers.json");
        std::fs::write(&config, format!("{CONFIG}\n[rrl]\n{rrl}\n")).expect("config");
        std::fs::write(
            &feed,
            feed_json(&[s(1, "192.0.2.1", 1000, "de"), s(2, "192.0.2.2", 1000, "de")]),
        )
        .expect("feed");
        let reloader = Reloader::load(Sources {
            config,
            feed,
            geoip: Some(repo(TEST_GEOIP)),
            ..Default::default()
        })
        .expect("load");
        let listeners = Listeners::bind(&["127.0.0.1:0".parse().unwrap()]).expect("bind");
        let addr = listeners.udp_addrs()[0];
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let table = reloader.table();
        let served = Arc::clone(&metrics);
        let task = tokio::spawn(async move {
            server::run(listeners, table, served, ServerOptions::default(), async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        Running {
            addr,
            metrics,
            stop,
            task,
            _dir: dir,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    /// `pooldns_rrl_total` by action: dropped, slipped, logged.
    fn rrl_totals(&self) -> [u64; 3] {
        self.metrics.totals().rrl
    }
}

/// What came back for a batch of queries.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    sent: usize,
    /// Answers with records and TC clear.
    full: usize,
    /// Empty answers with TC set (slipped).
    truncated: usize,
}

/// An A query for pool.test, with an OPT carrying `cookie` (client, or client + server)
/// when given.
fn query(id: u16, cookie: Option<&[u8]>) -> Vec<u8> {
    let mut q = vec![(id >> 8) as u8, id as u8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x04pool\x04test\x00\x00\x01\x00\x01");
    if let Some(cookie) = cookie {
        q[11] = 1;
        let len = 4 + cookie.len() as u16;
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        q.extend_from_slice(&len.to_be_bytes());
        q.extend_from_slice(&10u16.to_be_bytes());
        q.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
        q.extend_from_slice(cookie);
    }
    q
}

fn tally_answer(t: &mut Tally, answer: &[u8]) {
    let tc = answer[2] & 0x02 != 0;
    let ancount = u16::from_be_bytes([answer[6], answer[7]]);
    if tc && ancount == 0 {
        t.truncated += 1;
    } else if !tc && ancount > 0 {
        t.full += 1;
    }
}

fn socket_at(ip: &str) -> UdpSocket {
    let socket = UdpSocket::bind((ip.parse::<IpAddr>().unwrap(), 0)).expect("bind 127.x");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    socket
}

/// Sends `total` queries over `duration` from `sockets` in turn, then reads every answer.
fn flood(
    sockets: &[UdpSocket],
    to: SocketAddr,
    total: usize,
    duration: Duration,
    cookie: Option<&[u8]>,
) -> Tally {
    let start = Instant::now();
    for i in 0..total {
        let due = duration.mul_f64(i as f64 / total as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let socket = &sockets[i % sockets.len()];
        socket.send_to(&query(i as u16, cookie), to).expect("send");
    }
    let mut t = Tally {
        sent: total,
        ..Tally::default()
    };
    let mut buf = [0u8; 4096];
    for socket in sockets {
        while let Ok(n) = socket.recv(&mut buf) {
            tally_answer(&mut t, &buf[..n]);
        }
    }
    t
}

/// 2,000 queries in 2 s from 127.0.5.1 … 127.0.5.40.
fn flood_one_slash_24(to: SocketAddr) -> Tally {
    let sockets: Vec<UdpSocket> = (1..=40)
        .map(|i| socket_at(&format!("127.0.5.{i}")))
        .collect();
    flood(&sockets, to, 2000, Duration::from_secs(2), None)
}

#[tokio::test(flavor = "multi_thread")]
async fn flood_from_one_slash_24_gets_at_most_the_rate_plus_slipped_truncations() {
    let server = Running::start(&format!("responses_per_second = {RATE}\nslip = 2")).await;
    let to = server.addr;
    let t = tokio::task::spawn_blocking(move || flood_one_slash_24(to))
        .await
        .unwrap();
    // The burst (one second's rate), then nothing while the flood is in debt; a second of
    // slack on top of the flood's two.
    let bound = RATE * (2 + 1) + RATE;
    assert!(
        t.full >= 1 && t.full <= bound,
        "{t:?}: more than {bound} answers"
    );
    // Every second limited answer slips (each worker counts its own).
    let limited = t.sent - t.full;
    assert!(
        t.truncated + 2 >= limited / 2 && t.truncated <= limited / 2 + 2,
        "{t:?}: about half of {limited} limited answers should slip"
    );
    let [dropped, slipped, logged] = server.rrl_totals();
    assert_eq!(slipped as usize, t.truncated, "{t:?}");
    assert_eq!((dropped + slipped) as usize, limited, "{t:?}");
    assert_eq!(logged, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn another_prefix_gets_every_answer_during_a_flood() {
    let server = Running::start(&format!("responses_per_second = {RATE}")).await;
    let to = server.addr;
    let flooding = tokio::task::spawn_blocking(move || flood_one_slash_24(to));
    let bystander = tokio::task::spawn_blocking(move || {
        // 15 queries at 8 a second, under the rate, each waiting for its answer.
        let socket = socket_at("127.0.9.1");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut t = Tally::default();
        let mut buf = [0u8; 4096];
        for i in 0..15u16 {
            std::thread::sleep(Duration::from_millis(125));
            socket.send_to(&query(40_000 + i, None), to).unwrap();
            t.sent += 1;
            if let Ok(n) = socket.recv(&mut buf) {
                tally_answer(&mut t, &buf[..n]);
            }
        }
        t
    });
    let flood = flooding.await.unwrap();
    let t = bystander.await.unwrap();
    assert!(
        flood.full <= RATE * 4,
        "the flood was not limited: {flood:?}"
    );
    assert_eq!(t.full, t.sent, "{t:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_with_a_valid_server_cookie_gets_every_answer() {
    let server = Running::start(&format!("responses_per_second = {RATE}")).await;
    let to = server.addr;
    let t = tokio::task::spawn_blocking(move || {
        let socket = socket_at("127.0.6.1");
        // A first answer brings the server cookie: client cookie + 16 bytes.
        let client = *b"rrl-test";
        socket.send_to(&query(1, Some(&client)), to).unwrap();
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("first answer");
        let answer = &buf[..n];
        let at = answer
            .windows(8)
            .position(|w| w == client)
            .expect("the answer echoes the client cookie");
        let cookie = answer[at..at + 24].to_vec();
        // The same prefix without the cookie is limited …
        let without = flood(
            &[socket_at("127.0.6.2")],
            to,
            200,
            Duration::from_millis(500),
            None,
        );
        assert!(without.full <= 2 * RATE, "{without:?}");
        // … with it, never. (Ten sockets of the one address, so that no receive queue
        // overflows; the cookie is bound to the address, not the port.)
        let mut sockets: Vec<UdpSocket> = (1..10).map(|_| socket_at("127.0.6.1")).collect();
        sockets.push(socket);
        flood(&sockets, to, 1000, Duration::from_secs(1), Some(&cookie))
    })
    .await
    .unwrap();
    assert_eq!(t.full, t.sent, "{t:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn log_only_drops_nothing_but_counts() {
    let server = Running::start(&format!("responses_per_second = {RATE}\nlog_only = true")).await;
    let to = server.addr;
    let t = tokio::task::spawn_blocking(move || {
        let sockets: Vec<UdpSocket> = (1..=10)
            .map(|i| socket_at(&format!("127.0.7.{i}")))
            .collect();
        flood(&sockets, to, 500, Duration::from_millis(500), None)
    })
    .await
    .unwrap();
    assert_eq!(t.full, t.sent, "{t:?}");
    let [dropped, slipped, logged] = server.rrl_totals();
    assert_eq!((dropped, slipped), (0, 0));
    assert!(
        logged as usize >= t.sent - 2 * RATE,
        "{logged} logged of {t:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_is_never_limited() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Running::start("responses_per_second = 1\nwindow = 60").await;
    let to = server.addr;
    let udp = tokio::task::spawn_blocking(move || {
        flood(
            &[socket_at("127.0.8.1")],
            to,
            100,
            Duration::from_millis(200),
            None,
        )
    })
    .await
    .unwrap();
    assert!(udp.full <= 2, "{udp:?}");
    for i in 0..20u16 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.8.1:0".parse().unwrap()).unwrap();
        let mut stream = socket.connect(to).await.expect("connect");
        let q = query(i, None);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        stream.write_all(&framed).await.unwrap();
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).await.unwrap();
        let mut t = Tally::default();
        tally_answer(&mut t, &answer);
        assert_eq!(t.full, 1, "TCP answer {i} was limited");
    }
    server.stop().await;
}
