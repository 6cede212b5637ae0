//! DNS over TCP (RFC 7766, RFC 9210): two-byte length framing, any number of pipelined
//! queries per connection (answered in arrival order as each is read: answering takes
//! microseconds, so no query waits behind another), an idle timeout between queries, a
//! read timeout inside a message, a share of the connection slots per client prefix, and
//! a cap on concurrent connections that closes an idle one to make room (RFC 7766 §6.2.2).
//! A zero-length or oversized frame closes the connection. On shutdown the listener stops
//! accepting and every connection closes at its next read, after the answer it is writing.
//!
//! # Abuse (issue 11)
//!
//! The slots are what an attacker goes for: connections are cheap to open and to keep
//! silent. So:
//!
//! * **Which connection makes room.** One that has not yet completed a query goes first,
//!   the longest-open of those; only then the answered connection idle longest. A flood
//!   of silent connections so churns through itself and never evicts a resolver that is
//!   being answered. (Until issue 11 the key was the last activity, which a new silent
//!   connection set at accept: it looked fresher than a connection answered a moment
//!   before, and four silent connections evicted every busy one at `--tcp-max-connections 4`.)
//! * **A share per client.** One address's /24 (IPv4) or /56 (IPv6), RRL's default
//!   prefixes, holds at most `tcp_max_connections_per_client` slots; a connection over its
//!   share is closed at once and evicts nobody. Many prefixes are needed to fill the cap.
//! * **Slow writers.** Waiting for a message's first byte is bounded by the idle timeout;
//!   from there the second byte of its length must come within the read timeout, as must
//!   the rest once the length is complete. A client trickling a byte every few seconds is
//!   closed after `tcp_read_timeout`. (Until issue 11 the read timeout started only with
//!   the complete length, so half a length held a slot for the whole idle timeout.)
//! * **Memory.** An open connection holds its socket, a task and a query buffer that
//!   grows to the largest query it has sent (at most 4 KiB; empty until its first
//!   query). Answers are built into one 64 KiB buffer per worker thread and copied out
//!   at their own size for the write. An idle connection so costs about 4 KiB of RSS, not
//!   the 90 KiB it did with a 4 KiB query and a 64 KiB answer buffer of its own.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use super::{ServerOptions, SharedTable, Transport, respond};
use crate::metrics::{Counters, Metrics};

/// Largest query accepted. Queries are a question and an OPT record: a few hundred bytes.
const MAX_QUERY: usize = 4096;

/// How long connections get to finish their answers on shutdown.
const DRAIN: Duration = Duration::from_secs(3);

/// Accepts connections until `stop` turns true, then lets open connections finish.
pub(super) async fn serve(
    listener: TcpListener,
    table: SharedTable,
    options: ServerOptions,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    // TCP queries are few; one set of counters serves every connection of this listener.
    let counters = metrics.register();
    let options = Arc::new(options);
    let epoch = Instant::now();
    let slots = Arc::new(Mutex::new(Slots::new(
        options.tcp_max_connections,
        options.tcp_max_connections_per_client,
    )));
    let mut refusals = Refusals::default();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|&s| s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(_) => {
                // Out of file descriptors and the like: back off briefly.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let activity = Arc::new(AtomicU64::new(NEVER_ANSWERED));
        let close = Arc::new(Notify::new());
        let admitted = match slots.lock() {
            Ok(mut slots) => slots.admit(peer.ip(), &activity, &close),
            // A connection task panicked holding the lock: a bug, never a reason to stop
            // serving TCP. The table is consistent between statements, so carry on.
            Err(poisoned) => poisoned.into_inner().admit(peer.ip(), &activity, &close),
        };
        let id = match admitted {
            Admission::Refused { held } => {
                // Closed at once: the client's prefix holds its share of the slots.
                drop(stream);
                refusals.note(peer.ip(), held);
                continue;
            }
            Admission::Admitted { id, evicted } => {
                if let Some(evicted) = evicted {
                    evicted.notify_one();
                    metrics.tcp_evicted.fetch_add(1, Ordering::Relaxed);
                }
                id
            }
        };
        metrics.tcp_accepted.fetch_add(1, Ordering::Relaxed);
        let table = Arc::clone(&table);
        let counters = Arc::clone(&counters);
        let slots = Arc::clone(&slots);
        let options = Arc::clone(&options);
        connections.spawn(async move {
            let connection = Connection {
                peer: peer.ip(),
                table,
                options: &options,
                counters: &counters,
                activity: &activity,
                close: &close,
                epoch,
            };
            connection.run(stream).await;
            match slots.lock() {
                Ok(mut slots) => slots.release(id),
                Err(poisoned) => poisoned.into_inner().release(id),
            }
        });
    }
    // Shutdown: no new connections; each open one closes at its next read.
    drop(listener);
    match slots.lock() {
        Ok(slots) => slots.close_all(),
        Err(poisoned) => poisoned.into_inner().close_all(),
    }
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

/// Milliseconds since `epoch`, plus one so that no real time equals [`NEVER_ANSWERED`].
fn millis(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64 + 1
}

/// A connection's activity before its first answer.
const NEVER_ANSWERED: u64 = 0;

/// The connection slots of one listener: who holds them, and how many each client prefix
/// holds. Held by the accept loop (admit) and by each connection task (release), under
/// one mutex taken once per connection opened or closed, never per query.
struct Slots {
    /// Open connections by id, so in the order they were accepted.
    open: BTreeMap<u64, Open>,
    /// Open connections per client prefix; a prefix with none has no entry.
    per_prefix: HashMap<Prefix, usize>,
    /// The id the next connection gets.
    next_id: u64,
    /// Most connections open at once (at least 1).
    max: usize,
    /// Most connections one prefix may hold (at least 1).
    max_per_prefix: usize,
}

/// One open connection, as the accept loop sees it.
struct Open {
    /// The client's prefix, to give its slot back on close.
    prefix: Prefix,
    /// In [`millis`]: when the connection last completed a query, written by its task;
    /// [`NEVER_ANSWERED`] until then.
    activity: Arc<AtomicU64>,
    /// Told when the connection must close (to make room, or on shutdown); it closes at
    /// its next read.
    close: Arc<Notify>,
}

/// What the slots say to a new connection.
enum Admission {
    /// Serve it, under this id; `evicted` made room and must be told to close.
    Admitted {
        id: u64,
        evicted: Option<Arc<Notify>>,
    },
    /// Close it: its prefix already holds this many slots, its whole share.
    Refused { held: usize },
}

impl Slots {
    fn new(max: usize, max_per_prefix: usize) -> Slots {
        Slots {
            open: BTreeMap::new(),
            per_prefix: HashMap::new(),
            next_id: 0,
            max: max.max(1),
            max_per_prefix: max_per_prefix.max(1),
        }
    }

    /// Gives a connection from `peer` a slot, closing another one to
    /// make room when all are taken; or refuses it when its prefix holds its share.
    fn admit(&mut self, peer: IpAddr, activity: &Arc<AtomicU64>, close: &Arc<Notify>) -> Admission {
        let prefix = Prefix::of(peer);
        let held = self.per_prefix.get(&prefix).copied().unwrap_or(0);
        if held >= self.max_per_prefix {
            return Admission::Refused { held };
        }
        let evicted = if self.open.len() >= self.max {
            self.evict()
        } else {
            None
        };
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(
            id,
            Open {
                prefix,
                activity: Arc::clone(activity),
                close: Arc::clone(close),
            },
        );
        *self.per_prefix.entry(prefix).or_insert(0) += 1;
        Admission::Admitted { id, evicted }
    }

    /// Takes the slot of the connection that least deserves it and returns its close
    /// signal: of those that have not completed a query the longest open, else the one
    /// whose last answer is oldest.
    ///
    /// This runs for every connection made over the cap, so for each one of a flood: the
    /// first never-answered connection in accept order is found after skipping only the
    /// older answered ones, a handful when a flood is what fills the slots. The scan of
    /// every slot is left for when all were answered, which only real queries achieve.
    fn evict(&mut self) -> Option<Arc<Notify>> {
        let never_answered = self
            .open
            .iter()
            .find(|(_, c)| c.activity.load(Ordering::Relaxed) == NEVER_ANSWERED);
        let victim = match never_answered {
            Some((&id, _)) => id,
            None => self
                .open
                .iter()
                .min_by_key(|(_, c)| c.activity.load(Ordering::Relaxed))
                .map(|(&id, _)| id)?,
        };
        self.release(victim).map(|c| c.close)
    }

    /// Frees a connection's slot; nothing when it was already freed (evicted).
    fn release(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        if let Some(held) = self.per_prefix.get_mut(&open.prefix) {
            *held -= 1;
            if *held == 0 {
                self.per_prefix.remove(&open.prefix);
            }
        }
        Some(open)
    }

    /// Tells every open connection to close.
    fn close_all(&self) {
        for c in self.open.values() {
            c.close.notify_one();
        }
    }
}

/// The part of a client address that shares one allowance of slots: a /24 for IPv4, a
/// /56 for IPv6 (what one site or one customer usually gets, as in RRL). IPv4-mapped
/// IPv6 addresses count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Prefix {
    V4([u8; 3]),
    V6([u8; 7]),
}

impl Prefix {
    fn of(ip: IpAddr) -> Prefix {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Prefix::V4([a, b, c])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Prefix::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6]])
            }
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Prefix::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Prefix::V6(o) => {
                let mut full = [0u8; 16];
                full[..7].copy_from_slice(&o);
                write!(f, "{}/56", std::net::Ipv6Addr::from(full))
            }
        }
    }
}

/// Logs refused connections at most once a second, so that a flood of them cannot flood
/// the log: the prefix of the latest and how many were refused since the last line.
#[derive(Default)]
struct Refusals {
    /// When the last line was written.
    logged: Option<Instant>,
    /// Refused since then.
    unlogged: u64,
}

impl Refusals {
    fn note(&mut self, peer: IpAddr, held: usize) {
        self.unlogged += 1;
        if self
            .logged
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        tracing::warn!(
            "TCP connection from {peer} refused: {} holds {held} connections, its share \
             (--tcp-max-connections-per-client); {} refused since the last message",
            Prefix::of(peer),
            self.unlogged,
        );
        self.logged = Some(Instant::now());
        self.unlogged = 0;
    }
}

/// What a worker thread needs only while it answers: the answer buffer (a full 64 KiB
/// TCP message, so that no answer is truncated) and a random source. Answering never
/// awaits, so one of each per thread serves all of the thread's connections; a connection
/// holds only its answer's bytes, and only while writing them.
struct Scratch {
    answer: Vec<u8>,
    rng: SmallRng,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        answer: vec![0u8; 2 + 65_535],
        rng: SmallRng::from_rng(&mut rand::rng()),
    });
}

struct Connection<'a> {
    peer: IpAddr,
    table: SharedTable,
    options: &'a ServerOptions,
    counters: &'a Counters,
    activity: &'a AtomicU64,
    close: &'a Notify,
    epoch: Instant,
}

impl Connection<'_> {
    async fn run(&self, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        // Empty until the first query; then as long as the longest query so far.
        let mut query = Vec::new();
        let keepalive =
            (self.options.tcp_idle_timeout.as_millis() / 100).min(u128::from(u16::MAX)) as u16;
        let transport = Transport::Tcp { keepalive };
        loop {
            tokio::select! {
                read = self.read_message(&mut stream, &mut query) => {
                    if read.is_none() {
                        return;
                    }
                }
                _ = self.close.notified() => return,
            }
            let framed = SCRATCH.with_borrow_mut(|scratch| {
                let Scratch { answer, rng } = scratch;
                let current = self.table.load();
                let n = respond(
                    &current,
                    &query,
                    self.peer,
                    transport,
                    rng,
                    self.counters,
                    &mut answer[2..],
                )?;
                // n ≤ 65535: `respond` wrote into the 65535 bytes after the length.
                answer[..2].copy_from_slice(&(n as u16).to_be_bytes());
                Some(answer[..2 + n].to_vec())
            });
            let Some(framed) = framed else {
                continue;
            };
            let write = stream.write_all(&framed);
            match tokio::time::timeout(self.options.tcp_idle_timeout, write).await {
                Ok(Ok(())) => {}
                _ => return,
            }
            // Answered: from now on the connection is evicted only after every one that
            // has not been, and only if it is then the most idle.
            self.activity.store(millis(self.epoch), Ordering::Relaxed);
        }
    }

    /// Reads the next message into `query`. None when the connection must close: closed
    /// by the client, idle past the idle timeout before the message's first byte, slower
    /// than the read timeout from that byte to the second of the length or from the
    /// length to the message's last byte, or a zero-length or oversized frame.
    async fn read_message(&self, stream: &mut TcpStream, query: &mut Vec<u8>) -> Option<()> {
        let mut len = [0u8; 2];
        let first = stream.read(&mut len);
        let got = tokio::time::timeout(self.options.tcp_idle_timeout, first)
            .await
            .ok()?
            .ok()?;
        if got == 0 {
            return None;
        }
        // Once a message has begun, every part of it has the read timeout: a client
        // trickling bytes holds a slot no longer than that.
        if got == 1 {
            let second = stream.read_exact(&mut len[1..]);
            tokio::time::timeout(self.options.tcp_read_timeout, second)
                .await
                .ok()?
                .ok()?;
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len == 0 || len > MAX_QUERY {
            return None;
        }
        query.clear();
        query.resize(len, 0);
        let body = stream.read_exact(query);
        tokio::time::timeout(self.options.tcp_read_timeout, body)
            .await
            .ok()?
            .ok()?;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Admits a connection from `peer`; its activity cell and the id, or None when
    /// refused.
    fn open(slots: &mut Slots, peer: &str) -> Option<(u64, Arc<AtomicU64>)> {
        let activity = Arc::new(AtomicU64::new(NEVER_ANSWERED));
        match slots.admit(ip(peer), &activity, &Arc::new(Notify::new())) {
            Admission::Admitted { id, .. } => Some((id, activity)),
            Admission::Refused { .. } => None,
        }
    }

    #[test]
    fn eviction_takes_never_answered_connections_first_oldest_first() {
        let mut slots = Slots::new(3, 10);
        let (answered, activity) = open(&mut slots, "192.0.2.1").unwrap();
        activity.store(2, Ordering::Relaxed);
        let (silent_old, _) = open(&mut slots, "198.51.100.1").unwrap();
        let (silent_new, _) = open(&mut slots, "203.0.113.1").unwrap();
        // Full: the fourth takes the oldest silent slot, not the answered one.
        open(&mut slots, "203.0.113.2").unwrap();
        assert!(!slots.open.contains_key(&silent_old));
        assert!(slots.open.contains_key(&answered));
        open(&mut slots, "203.0.113.3").unwrap();
        assert!(!slots.open.contains_key(&silent_new));
        assert!(slots.open.contains_key(&answered));
    }

    #[test]
    fn eviction_among_answered_connections_takes_the_most_idle() {
        let mut slots = Slots::new(2, 10);
        let (a, activity_a) = open(&mut slots, "192.0.2.1").unwrap();
        let (b, activity_b) = open(&mut slots, "198.51.100.1").unwrap();
        activity_a.store(20, Ordering::Relaxed);
        activity_b.store(10, Ordering::Relaxed);
        let (c, activity_c) = open(&mut slots, "203.0.113.1").unwrap();
        assert!(slots.open.contains_key(&a));
        assert!(!slots.open.contains_key(&b));
        activity_c.store(31, Ordering::Relaxed);
        open(&mut slots, "203.0.113.9").unwrap();
        assert!(!slots.open.contains_key(&a));
        assert!(slots.open.contains_key(&c));
    }

    #[test]
    fn a_prefix_over_its_share_is_refused_and_evicts_nobody() {
        let mut slots = Slots::new(3, 2);
        let (first, _) = open(&mut slots, "192.0.2.1").unwrap();
        open(&mut slots, "192.0.2.200").unwrap();
        assert!(open(&mut slots, "192.0.2.7").is_none(), "same /24");
        assert_eq!(slots.open.len(), 2);
        assert!(open(&mut slots, "192.0.3.7").is_some(), "another /24");
        // A slot given back makes room for the prefix again.
        slots.release(first);
        assert!(open(&mut slots, "192.0.2.7").is_some());
        assert_eq!(slots.per_prefix[&Prefix::of(ip("192.0.2.1"))], 2);
    }

    #[test]
    fn an_evicted_connection_gives_back_its_prefix_share_once() {
        let mut slots = Slots::new(1, 1);
        let (first, _) = open(&mut slots, "192.0.2.1").unwrap();
        open(&mut slots, "198.51.100.1").unwrap();
        assert!(!slots.per_prefix.contains_key(&Prefix::of(ip("192.0.2.1"))));
        // The evicted task's own release, later, changes nothing.
        assert!(slots.release(first).is_none());
        assert_eq!(slots.per_prefix.len(), 1);
        assert!(open(&mut slots, "192.0.2.1").is_some());
    }

    #[test]
    fn prefixes_are_slash_24_and_slash_56() {
        assert_eq!(Prefix::of(ip("192.0.2.1")), Prefix::of(ip("192.0.2.254")));
        assert_ne!(Prefix::of(ip("192.0.2.1")), Prefix::of(ip("192.0.3.1")));
        assert_eq!(
            Prefix::of(ip("::ffff:192.0.2.9")),
            Prefix::of(ip("192.0.2.1"))
        );
        assert_eq!(
            Prefix::of(ip("2001:db8:0:ff::1")),
            Prefix::of(ip("2001:db8:0:1:2::3"))
        );
        assert_ne!(
            Prefix::of(ip("2001:db8:0:100::1")),
            Prefix::of(ip("2001:db8::1"))
        );
        assert_eq!(Prefix::of(ip("192.0.2.77")).to_string(), "192.0.2.0/24");
        assert_eq!(
            Prefix::of(ip("2001:db8:0:1ff::1")).to_string(),
            "2001:db8:0:100::/56"
        );
    }
}
