//! The nameserver around the answer core: listeners, the per-packet glue shared by UDP and
//! TCP, and shutdown. Only this module touches sockets.

mod tcp;
mod udp;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rand::Rng;

use crate::answer::{self, Answer, Client};
use crate::table::Table;
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
    /// UDP sockets.
    pub udp: Vec<std::net::UdpSocket>,
    /// TCP listeners.
    pub tcp: Vec<std::net::TcpListener>,
}

impl Listeners {
    /// Binds UDP and TCP on each address.
    pub fn bind(addrs: &[SocketAddr]) -> Result<Listeners, BindError> {
        let mut listeners = Listeners {
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for &addr in addrs {
            let udp = std::net::UdpSocket::bind(addr).map_err(|source| BindError {
                transport: "UDP",
                addr,
                source,
            })?;
            // With port 0, TCP takes the port UDP got, so one address serves both.
            let tcp_addr = udp.local_addr().unwrap_or(addr);
            let tcp = std::net::TcpListener::bind(tcp_addr).map_err(|source| BindError {
                transport: "TCP",
                addr: tcp_addr,
                source,
            })?;
            listeners.udp.push(udp);
            listeners.tcp.push(tcp);
        }
        Ok(listeners)
    }

    /// The UDP addresses actually bound.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

/// Settings of the serving loops.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long a TCP connection may stay idle between queries (RFC 7766 §6.2.3).
    pub tcp_idle_timeout: Duration,
    /// How long the rest of a message may take once its length has arrived.
    pub tcp_read_timeout: Duration,
    /// Most concurrent TCP connections; a new one closes the most idle one.
    pub tcp_max_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_read_timeout: Duration::from_secs(2),
            tcp_max_connections: 1024,
        }
    }
}

/// Serves queries on `listeners` from `table` until `shutdown` completes.
pub async fn run(
    listeners: Listeners,
    table: SharedTable,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for socket in listeners.udp {
        socket.set_nonblocking(true)?;
        let socket = Arc::new(tokio::net::UdpSocket::from_std(socket)?);
        // Two loops per socket keep both cores busy under load.
        for _ in 0..2 {
            tasks.spawn(udp::serve(Arc::clone(&socket), Arc::clone(&table)));
        }
    }
    for listener in listeners.tcp {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tasks.spawn(tcp::serve(listener, Arc::clone(&table), options.clone()));
    }
    shutdown.await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
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
    match wire::parse(query) {
        Err(ParseError::Drop) => None,
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
            Some(wire::build(
                out,
                limit(edns),
                &header,
                question.as_ref(),
                &Answer::error(rcode),
                opt.as_ref(),
            ))
        }
        Ok(request) => {
            let client = Client {
                source,
                ecs: request.edns.and_then(|e| e.ecs),
            };
            let a = answer::answer(table, &request.question, &client, rng);
            let opt = request.edns.map(|e| EdnsReply {
                ecs: e.ecs.map(|s| (s, a.ecs_scope)),
                ..reply(e)
            });
            Some(wire::build(
                out,
                limit(request.edns),
                &request.header,
                Some(&request.question),
                &a,
                opt.as_ref(),
            ))
        }
    }
}

/// Seconds since the epoch, for cookie timestamps.
fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}
