//! The nameserver around the answer core: listeners, the per-packet glue shared by UDP and
//! TCP, and shutdown. Only this module touches sockets.

mod sched;
pub mod steer;
mod tcp;
pub mod udp;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rand::Rng;

use crate::answer::{self, Answer, Client};
use crate::metrics::{Counters, EcsUse, Metrics};
use crate::querylog;
use crate::table::{Family, Table};
use crate::wire::{self, EdnsReply, ParseError};

/// The live table: read by every query, replaced whole by the reload task.
pub type SharedTable = Arc<ArcSwap<Table>>;

/// Transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: answers are limited to the client's payload size.
    Udp,
    /// TCP: answers up to 65535 bytes.
    Tcp {
        /// The idle timeout, announced to clients that ask (RFC 7828), in 100 ms units.
        keepalive: u16,
    },
}

/// Why the listeners could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {transport} {addr}: {source}")]
pub struct BindError {
    /// "UDP" or "TCP".
    pub transport: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// The cause (address in use, permission denied, …).
    pub source: std::io::Error,
}

/// Bound sockets, ready to serve. Binding is separate from serving so that tests can bind
/// port 0 and read the ports back.
#[derive(Debug)]
pub struct Listeners {
    /// UDP sockets: `workers` per address, bound with SO_REUSEPORT so the kernel spreads
    /// the queries over them.
    pub udp: Vec<std::net::UdpSocket>,
    /// TCP listeners, one per address.
    pub tcp: Vec<std::net::TcpListener>,
}

/// The number of UDP workers when none is asked for: one per core.
pub fn default_udp_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Listeners {
    /// Binds UDP (one socket per core) and TCP on each address.
    pub fn bind(addrs: &[SocketAddr]) -> Result<Listeners, BindError> {
        Self::bind_with(addrs, default_udp_workers())
    }

    /// Binds `workers` UDP sockets and one TCP listener on each address.
    pub fn bind_with(addrs: &[SocketAddr], workers: usize) -> Result<Listeners, BindError> {
        let mut listeners = Listeners {
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for &addr in addrs {
            // With port 0 the kernel picks a free UDP port, which TCP may hold elsewhere:
            // try again with another port rather than fail.
            let attempts = if addr.port() == 0 { 16 } else { 1 };
            let mut attempt = 0;
            let (udp, tcp) = loop {
                attempt += 1;
                match bind_one(addr, workers) {
                    Err(e)
                        if attempt < attempts
                            && e.source.kind() == std::io::ErrorKind::AddrInUse => {}
                    other => break other?,
                }
            };
            listeners.udp.extend(udp);
            listeners.tcp.push(tcp);
        }
        Ok(listeners)
    }

    /// The addresses bound (UDP and TCP share them).
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self
            .udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect();
        addrs.dedup();
        addrs
    }
}

/// Binds `workers` UDP sockets and one TCP listener on one address; with port 0, all on
/// the port the first UDP socket got.
fn bind_one(
    addr: SocketAddr,
    workers: usize,
) -> Result<(Vec<std::net::UdpSocket>, std::net::TcpListener), BindError> {
    let udp_error = |source| BindError {
        transport: "UDP",
        addr,
        source,
    };
    let first = reuseport_udp(addr).map_err(udp_error)?;
    let bound = first.local_addr().map_err(udp_error)?;
    let mut udp = vec![first];
    for _ in 1..workers.max(1) {
        udp.push(reuseport_udp(bound).map_err(udp_error)?);
    }
    let tcp = tcp_listener(bound).map_err(|source| BindError {
        transport: "TCP",
        addr: bound,
        source,
    })?;
    Ok((udp, tcp))
}

/// A TCP listener; IPv6 ones take only IPv6, so `0.0.0.0` and `[::]` can both be bound,
/// as the UDP sockets are.
fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn reuseport_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // A deep receive queue absorbs top-of-the-hour bursts; the kernel may cap it.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Settings of the serving loops.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long a TCP connection may stay idle between queries (RFC 7766 §6.2.3).
    pub tcp_idle_timeout: Duration,
    /// How long the rest of a message may take once its length has arrived, and the
    /// second byte of the length once the first has: a client trickling bytes holds a
    /// connection no longer than this.
    pub tcp_read_timeout: Duration,
    /// Most concurrent TCP connections; a new one closes an idle one to make room: one
    /// that has not completed a query if any, the longest open of those, else the one
    /// whose last answer is oldest.
    pub tcp_max_connections: usize,
    /// Most TCP connections one client /24 (IPv4) or /56 (IPv6) may hold; one more is
    /// closed at once, evicting nobody.
    pub tcp_max_connections_per_client: usize,
    /// Steer an address's UDP queries to one worker at low rates and spread them over
    /// every worker at high rates ([`steer`]); false: always spread (the kernel's hash).
    pub udp_steering: bool,
    /// Run the UDP workers under SCHED_BATCH ([`sched`]): woken by a query, a worker does
    /// not preempt the thread running on its core. False: the default policy.
    pub udp_batch: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_read_timeout: Duration::from_secs(2),
            tcp_max_connections: 1024,
            tcp_max_connections_per_client: 64,
            udp_steering: true,
            udp_batch: true,
        }
    }
}

/// Serves queries on `listeners` from `table` until `shutdown` completes.
pub async fn run(
    listeners: Listeners,
    table: SharedTable,
    metrics: Arc<Metrics>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let udp_workers = udp::spawn(listeners.udp, &table, &metrics, &options)?;
    let (tcp_stop, tcp_stopped) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners.tcp {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tasks.spawn(tcp::serve(
            listener,
            Arc::clone(&table),
            options.clone(),
            Arc::clone(&metrics),
            tcp_stopped.clone(),
        ));
    }
    shutdown.await;
    // Stop reading: UDP workers finish the batch in hand, TCP connections the answer in
    // hand; both within a few seconds.
    let _ = tcp_stop.send(true);
    let udp_stopped = tokio::task::spawn_blocking(move || udp_workers.stop());
    while tasks.join_next().await.is_some() {}
    let _ = udp_stopped.await;
    Ok(())
}

/// Answers one query message into `out`; returns the answer's length, or None when the
/// query gets no reply (shorter than a header, or not a query).
pub fn respond<R: Rng + ?Sized>(
    table: &Table,
    query: &[u8],
    source: IpAddr,
    transport: Transport,
    rng: &mut R,
    counters: &Counters,
    out: &mut [u8],
) -> Option<usize> {
    let cap = table.config.max_udp_payload;
    // RFC 6891 §6.2.5: a payload size below 512 is treated as 512.
    let limit = |edns: Option<wire::Edns>| match (transport, edns) {
        (Transport::Tcp { .. }, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => 512,
        (Transport::Udp, Some(e)) => usize::from(e.udp_payload.clamp(512, cap.max(512))),
    };
    let config = &table.config;
    // The OPT of every answer to an EDNS query: cookie (RFC 7873 §5.2), NSID (RFC 5001 §2.3)
    // and keepalive (RFC 7828 §3.3.2) whenever they were asked for.
    let reply = |e: wire::Edns| EdnsReply {
        udp_payload: cap,
        dnssec_ok: e.dnssec_ok,
        nsid: e.nsid.then_some(config.identity.nsid.as_deref()).flatten(),
        cookie: e
            .cookie
            .map(|c| c.reply(&config.cookie_secret, source, unix_now())),
        keepalive: match transport {
            Transport::Tcp { keepalive } if e.keepalive => Some(keepalive),
            _ => None,
        },
        ..EdnsReply::default()
    };
    let transport_index = match transport {
        Transport::Udp => 0,
        Transport::Tcp { .. } => 1,
    };
    let truncated = |out: &[u8], n: usize| n > 2 && out[2] & 0x02 != 0;
    match wire::parse(query) {
        Err(ParseError::Drop) => {
            counters.dropped();
            None
        }
        Err(ParseError::Reply {
            header,
            question,
            edns,
            rcode,
        }) => {
            let opt = edns.map(|e| EdnsReply {
                ede: (rcode == wire::Rcode::NOTIMP).then_some(answer::Ede::NOT_SUPPORTED),
                ..reply(e)
            });
            let n = wire::build(
                out,
                limit(edns),
                &header,
                question.as_ref(),
                &Answer::error(rcode),
                opt.as_ref(),
            );
            let qtype = question.map_or(0, |q| q.qtype);
            counters.answered(transport_index, qtype, rcode, truncated(out, n));
            if edns.is_some_and(|e| e.ecs_malformed) {
                counters.ecs(EcsUse::Invalid);
            }
            Some(n)
        }
        Ok(request) => {
            let ecs = request.edns.and_then(|e| e.ecs);
            let client = Client {
                source,
                ecs,
                dnssec_ok: request.edns.is_some_and(|e| e.dnssec_ok),
            };
            let a = answer::answer(table, &request.question, &client, rng);
            let opt = request.edns.map(|e| EdnsReply {
                ecs: e.ecs.map(|s| (s, a.ecs_scope)),
                ..reply(e)
            });
            let n = wire::build(
                out,
                limit(request.edns),
                &request.header,
                Some(&request.question),
                &a,
                opt.as_ref(),
            );
            let was_truncated = truncated(out, n);
            counters.answered(
                transport_index,
                request.question.qtype,
                a.rcode,
                was_truncated,
            );
            counters.ecs(match ecs {
                None => EcsUse::Absent,
                Some(_) if client.placed_address().1 => EcsUse::Used,
                Some(_) => EcsUse::Ignored,
            });
            if let Some(zone) = a.zone {
                counters.zone(zone);
                // Demand (DESIGN §3.1): a pool name answered from the pool, by the
                // country of the clients it is for and the family asked (ANY at a pool
                // name answers A).
                let family = if request.question.qtype == wire::rtype::AAAA {
                    Family::V6
                } else {
                    Family::V4
                };
                counters.client_query(a.client_country, family);
            }
            if let (false, answer::Records::Pool { picks, .. }) = (was_truncated, &a.answer) {
                table.count_answer(picks.as_slice());
            }
            if let Some(log) = &counters.query_log {
                // The scope sent is the one in the OPT built above.
                let scope = opt.as_ref().and_then(|o| o.ecs).map(|(_, scope)| scope);
                log.record(log_entry(
                    table,
                    source,
                    ecs,
                    scope,
                    &request.question,
                    &a,
                    transport,
                ));
            }
            Some(n)
        }
    }
}

/// The query log's view of one answered query: every record of the answer section, and
/// the client subnet with the scope sent back. Built only when the log is on, and without
/// heap: the entry is plain data the ring copies.
fn log_entry(
    table: &Table,
    source: IpAddr,
    ecs: Option<wire::ClientSubnet>,
    scope: Option<u8>,
    question: &wire::Question<'_>,
    a: &Answer<'_>,
    transport: Transport,
) -> querylog::Entry {
    let mut qname = [0u8; 255];
    let len = question.qname.len().min(qname.len());
    qname[..len].copy_from_slice(&question.qname[..len]);
    let mut answers = querylog::Records::EMPTY;
    match &a.answer {
        answer::Records::Empty => {}
        answer::Records::Set(rrs) => {
            for rr in *rrs {
                answers.push(rr.rtype, &rr.rdata);
            }
        }
        answer::Records::Txt { data, .. } => answers.push(wire::rtype::TXT, data.as_bytes()),
        answer::Records::Pool {
            picks, addresses, ..
        } => {
            for &i in picks.as_slice() {
                if let Some(m) = addresses.get(i as usize) {
                    answers.push_address(m.ip);
                }
            }
        }
    }
    querylog::Entry {
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        client: source,
        ecs: ecs.map(|e| (e.address, e.source_prefix)),
        scope,
        qname,
        qname_len: len as u8, // at most 255
        qtype: question.qtype,
        rcode: a.rcode.0,
        answers,
        zone: a.zone.map_or("", |z| table.zone_label(z)),
        transport: match transport {
            Transport::Udp => "udp",
            Transport::Tcp { .. } => "tcp",
        },
    }
}

/// Seconds since the epoch, for cookie timestamps.
pub(crate) fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}
