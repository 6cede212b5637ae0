//! pooldns behind a real recursive resolver: Unbound (Debian's package) with its subnet
//! cache, started by the test on loopback with pooldns as the stub of `pool.test`.
//!
//! Issue 10 item 1: an answer placed by the resolver's own address, because the client
//! subnet could not be placed, went out with ECS scope 0. Unbound reads scope 0 as "valid
//! for every client" and handed that answer to clients of other countries from its cache.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::harness::{
    TestServer, addresses, feed_json, free_port, query, s, signal_group, with_ecs,
};

const UNBOUND: &str = "/usr/sbin/unbound";

/// A running Unbound, stopped on drop.
pub(crate) struct Unbound {
    pub(crate) addr: SocketAddr,
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        signal_group(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(self.child.id(), "KILL");
        let _ = self.child.wait();
    }
}

/// Unbound's configuration: the subnet cache in front of the iterator, ECS sent to
/// pooldns (and only to it), `pool.test` stubbed to pooldns, nothing else reachable.
fn unbound_conf(dir: &Path, port: u16, pooldns: SocketAddr, anchor: Option<&str>) -> String {
    let (modules, anchor) = match anchor {
        // The zone's KSK as the trust anchor: Unbound validates pool.test.
        Some(a) => (
            "subnetcache validator iterator",
            format!("  trust-anchor: \"{a}\"\n"),
        ),
        None => ("subnetcache iterator", String::new()),
    };
    format!(
        r#"server:
  interface: 127.0.0.1
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: ""
  use-syslog: no
  logfile: "{dir}/unbound.log"
  verbosity: 1
  do-ip6: no
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "{modules}"
{anchor}
  send-client-subnet: 127.0.0.1
  max-client-subnet-ipv4: 32
  max-client-subnet-ipv6: 56
  qname-minimisation: no
  num-threads: 1
  prefetch: no
  # Unbound serves test. itself as a locally blocked zone (RFC 6761) by default.
  local-zone: "test." nodefault
remote-control:
  control-enable: no
stub-zone:
  name: "pool.test"
  stub-addr: {ip}@{pport}
"#,
        dir = dir.display(),
        ip = pooldns.ip(),
        pport = pooldns.port(),
    )
}

/// Starts Unbound in front of `pooldns`; None when it is not installed (CI installs it).
fn start_unbound(pooldns: SocketAddr) -> Option<Unbound> {
    start_unbound_with(pooldns, None)
}

/// Starts Unbound in front of `pooldns`, validating with the trust anchor `anchor` (a
/// DNSKEY record in zone-file syntax) when there is one.
pub(crate) fn start_unbound_with(pooldns: SocketAddr, anchor: Option<&str>) -> Option<Unbound> {
    if !crate::harness::installed(&[UNBOUND], "unbound", "resolver") {
        return None;
    }
    let mut log = String::new();
    // A few tries: the free port may be taken between asking and binding.
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("unbound.conf");
        std::fs::write(&conf, unbound_conf(dir.path(), port, pooldns, anchor)).expect("write conf");
        let child = Command::new(UNBOUND)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start unbound");
        let mut unbound = Unbound {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            log: dir.path().join("unbound.log"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| {
                    s.set_read_timeout(Some(Duration::from_millis(200)))?;
                    s.connect(unbound.addr)?;
                    let q = query("ns1", RecordType::A);
                    let mut q = q;
                    q.metadata.recursion_desired = true;
                    s.send(&q.to_vec().expect("query"))?;
                    let mut buf = [0u8; 1500];
                    s.recv(&mut buf)
                })
                .is_ok()
            {
                return Some(unbound);
            }
            if let Ok(Some(_)) = unbound.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        log = std::fs::read_to_string(&unbound.log).unwrap_or_default();
    }
    panic!("unbound did not come up; its log:\n{log}");
}

/// Asks Unbound for `name` A as a client behind `subnet` (sent as ECS, recursion desired)
/// and returns the addresses.
async fn ask(unbound: SocketAddr, name: &str, (subnet, source): (&str, u8)) -> BTreeSet<IpAddr> {
    let mut q = with_ecs(query(name, RecordType::A), subnet, source);
    q.metadata.recursion_desired = true;
    let bytes = q.to_vec().expect("query");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..3 {
        socket.send_to(&bytes, unbound).await.unwrap();
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), socket.recv(&mut buf)).await
        {
            let m = Message::from_vec(&buf[..n]).expect("answer parses");
            let got: BTreeSet<IpAddr> = addresses(&m).into_iter().collect();
            assert!(!got.is_empty(), "{name} from {subnet}/{source}: {m:?}");
            return got;
        }
    }
    panic!("no answer from unbound to {name} from {subnet}/{source}");
}

/// Servers outside the UK.
const OTHERS: [&str; 18] = [
    "198.51.100.10",
    "198.51.100.11",
    "198.51.100.12",
    "198.51.100.13",
    "198.51.100.14",
    "198.51.100.15",
    "198.51.100.16",
    "198.51.100.17",
    "198.51.100.18",
    "198.51.100.19",
    "198.51.100.20",
    "198.51.100.21",
    "198.51.100.22",
    "198.51.100.23",
    "198.51.100.24",
    "198.51.100.25",
    "198.51.100.26",
    "198.51.100.27",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_subnet_cache_never_get_each_others_geo_answers() {
    // Two UK servers; eighteen elsewhere. A client pooldns cannot place (documentation
    // subnet; the resolver is on loopback) gets the global zone, so at least two of its
    // four servers are not British; a UK client gets only the UK servers.
    let uk = ["192.0.2.1", "192.0.2.2"];
    let mut servers = vec![s(1, uk[0], 1000, "gb"), s(2, uk[1], 1000, "gb")];
    for (i, ip) in OTHERS.into_iter().enumerate() {
        servers.push(s(
            10 + i as u64,
            ip,
            1000,
            if i % 2 == 0 { "de" } else { "us" },
        ));
    }
    let server = TestServer::start(&feed_json(&servers)).await;
    let Some(unbound) = start_unbound(server.addr) else {
        server.stop().await;
        return;
    };
    let uk: BTreeSet<IpAddr> = uk.iter().map(|a| a.parse().unwrap()).collect();
    let unplaced = ("203.0.113.0", 24);
    // The test database knows 81.2.69.142/31 only; Unbound passes a /32 on (its
    // max-client-subnet-ipv4 above).
    let british = ("81.2.69.142", 32);
    // Both orders, each on a name of its own so that nothing is cached yet: the unplaced
    // client first (the reported leak), then the UK client first.
    for (name, order) in [("0", [unplaced, british]), ("1", [british, unplaced])] {
        for round in 0..3 {
            for subnet in order {
                let got = ask(unbound.addr, name, subnet).await;
                if subnet == british {
                    assert!(
                        got.is_subset(&uk),
                        "{name} round {round}: the UK client got {got:?}, not only UK servers"
                    );
                } else {
                    assert!(
                        got.difference(&uk).count() >= 2,
                        "{name} round {round}: the unplaced client got {got:?}, the UK answer"
                    );
                }
            }
        }
    }
    drop(unbound);
    server.stop().await;
}
