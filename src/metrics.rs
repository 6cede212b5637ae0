//! Query statistics. The query path only adds to per-thread [`Counters`] (relaxed atomic
//! adds on memory no other thread writes: no lock, no allocation, no syscall); the HTTP
//! side sums every thread's counters when it renders them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::querylog::QueryLog;
use crate::server::steer;
use crate::table::{Family, ZoneId};
use crate::wire::{Rcode, rtype};

/// Query types counted by name; everything else is "other".
pub const QTYPES: [(u16, &str); 9] = [
    (rtype::A, "A"),
    (rtype::AAAA, "AAAA"),
    (rtype::SOA, "SOA"),
    (rtype::NS, "NS"),
    (rtype::TXT, "TXT"),
    (rtype::MX, "MX"),
    (rtype::SRV, "SRV"),
    (rtype::ANY, "ANY"),
    (0, "other"),
];

/// Response codes counted by name; everything else is "other".
pub const RCODES: [(Rcode, &str); 8] = [
    (Rcode::NOERROR, "NOERROR"),
    (Rcode::FORMERR, "FORMERR"),
    (Rcode::SERVFAIL, "SERVFAIL"),
    (Rcode::NXDOMAIN, "NXDOMAIN"),
    (Rcode::NOTIMP, "NOTIMP"),
    (Rcode::REFUSED, "REFUSED"),
    (Rcode::BADVERS, "BADVERS"),
    (Rcode(u16::MAX), "other"),
];

/// Transports, in counter order.
pub const TRANSPORTS: [&str; 2] = ["udp", "tcp"];

/// Which pool zone answered a pool name, relative to what the name asked for.
pub const GEO: [&str; 3] = ["country", "continent", "global"];

/// What the query said about its client subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsUse {
    /// No ECS option.
    Absent = 0,
    /// A public address that was geolocated.
    Used = 1,
    /// Present but private, loopback, reserved or source /0: the packet source was used.
    Ignored = 2,
    /// Malformed: the query got FORMERR.
    Invalid = 3,
}

/// Labels of [`EcsUse`], in order.
pub const ECS: [&str; 4] = ["absent", "used", "ignored", "invalid"];

/// What response rate limiting did with an answer over its prefix's rate ([`crate::rrl`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RrlAction {
    /// Not sent.
    Dropped = 0,
    /// Sent as an empty TC=1 answer.
    Slipped = 1,
    /// Sent whole, with `log_only`.
    Logged = 2,
}

/// Labels of [`RrlAction`], in order.
pub const RRL_ACTIONS: [&str; 3] = ["dropped", "slipped", "logged"];

/// Slots of the demand counters per family: one per country index of the table (fewer
/// than 255: `continent::countries`, checked by a test), then [`UNKNOWN_COUNTRY`].
pub const CLIENT_SLOTS: usize = 256;

/// The demand counters' slot for clients of no known country.
pub const UNKNOWN_COUNTRY: usize = CLIENT_SLOTS - 1;

/// Labels of the families, in [`Family`] order.
pub const FAMILIES: [&str; 2] = ["v4", "v6"];

/// Pool-name queries by family and client country slot: the demand the serving plan
/// balances (DESIGN §3.1). 4 KiB per thread; fixed size, so counting never allocates.
#[derive(Debug)]
struct ClientQueries([[AtomicU64; CLIENT_SLOTS]; FAMILIES.len()]);

impl Default for ClientQueries {
    fn default() -> Self {
        ClientQueries(std::array::from_fn(|_| {
            std::array::from_fn(|_| AtomicU64::new(0))
        }))
    }
}

/// One thread's counters, and the query log when one is on.
#[derive(Debug, Default)]
pub struct Counters {
    /// Where this thread hands query log entries (None: logging is off).
    pub query_log: Option<Arc<QueryLog>>,
    queries: [[[AtomicU64; RCODES.len()]; QTYPES.len()]; TRANSPORTS.len()],
    dropped: AtomicU64,
    truncated: AtomicU64,
    geo: [AtomicU64; GEO.len()],
    ecs: [AtomicU64; ECS.len()],
    clients: ClientQueries,
    rrl: [AtomicU64; RRL_ACTIONS.len()],
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl Counters {
    /// Counts an answered query.
    pub fn answered(&self, transport: usize, qtype: u16, rcode: Rcode, truncated: bool) {
        let t = QTYPES
            .iter()
            .position(|&(q, _)| q == qtype)
            .unwrap_or(QTYPES.len() - 1);
        let r = RCODES
            .iter()
            .position(|&(c, _)| c == rcode)
            .unwrap_or(RCODES.len() - 1);
        bump(&self.queries[transport.min(1)][t][r]);
        if truncated {
            bump(&self.truncated);
        }
    }

    /// Counts a packet that got no reply.
    pub fn dropped(&self) {
        bump(&self.dropped);
    }

    /// Counts where a pool answer came from.
    pub fn zone(&self, zone: ZoneId) {
        let i = match zone {
            ZoneId::Country(_) => 0,
            ZoneId::Continent(_) => 1,
            ZoneId::Global => 2,
        };
        bump(&self.geo[i]);
    }

    /// Counts what a query's ECS option did.
    pub fn ecs(&self, use_: EcsUse) {
        bump(&self.ecs[use_ as usize]);
    }

    /// Counts what response rate limiting did with an answer.
    pub fn rrl(&self, action: RrlAction) {
        bump(&self.rrl[action as usize]);
    }

    /// Counts a pool-name query of `family` answered for clients of `country` (a country
    /// index, as in `Answer::client_country`; None: unknown).
    pub fn client_query(&self, country: Option<u16>, family: Family) {
        let slot = country.map_or(UNKNOWN_COUNTRY, |c| usize::from(c).min(UNKNOWN_COUNTRY));
        bump(&self.clients.0[family as usize][slot]);
    }
}

/// Every thread's counters plus the process-wide ones; held by the server and the HTTP
/// side.
#[derive(Debug, Default)]
pub struct Metrics {
    threads: Mutex<Vec<Arc<Counters>>>,
    /// The query log, shared with every thread's counters.
    pub query_log: Option<Arc<QueryLog>>,
    /// TCP connections accepted.
    pub tcp_accepted: AtomicU64,
    /// TCP connections closed to make room under the connection cap.
    pub tcp_evicted: AtomicU64,
    /// The UDP workers' steering groups, one per listening address.
    udp_groups: Mutex<Vec<(Option<SocketAddr>, Arc<steer::Group>)>>,
}

/// Counters summed over every thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// [transport][qtype][rcode].
    pub queries: Vec<Vec<Vec<u64>>>,
    /// Packets without a reply.
    pub dropped: u64,
    /// Answers with TC set.
    pub truncated: u64,
    /// Pool answers by the kind of zone that answered.
    pub geo: [u64; GEO.len()],
    /// Queries by ECS use.
    pub ecs: [u64; ECS.len()],
    /// Pool-name queries by client country slot (country index, then
    /// [`UNKNOWN_COUNTRY`]), per family in [`Family`] order.
    pub client_queries: Vec<[u64; FAMILIES.len()]>,
    /// Answers over the rate limit, by [`RrlAction`].
    pub rrl: [u64; RRL_ACTIONS.len()],
}

impl Totals {
    /// Pool-name queries of `family` counted for `country` (None: unknown).
    pub fn client_queries_of(&self, country: Option<u16>, family: Family) -> u64 {
        let slot = country.map_or(UNKNOWN_COUNTRY, |c| usize::from(c).min(UNKNOWN_COUNTRY));
        self.client_queries
            .get(slot)
            .map_or(0, |f| f[family as usize])
    }
}

impl Metrics {
    /// Metrics whose threads hand entries to `query_log`.
    pub fn with_query_log(query_log: Option<Arc<QueryLog>>) -> Metrics {
        Metrics {
            query_log,
            ..Metrics::default()
        }
    }

    /// Registers the steering group of the UDP workers on `addr`.
    pub fn add_udp_group(&self, addr: Option<SocketAddr>, group: Arc<steer::Group>) {
        if let Ok(mut groups) = self.udp_groups.lock() {
            groups.push((addr, group));
        }
    }

    /// Per listening address: UDP workers, how many the kernel sends queries to now, and
    /// how often that switched.
    pub fn udp_steering(&self) -> Vec<(Option<SocketAddr>, usize, usize, u64)> {
        let groups = self
            .udp_groups
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        groups
            .iter()
            .map(|(addr, g)| (*addr, g.workers(), g.active(), g.switches()))
            .collect()
    }

    /// Counters for a new thread (or connection handler); registered for summing.
    pub fn register(&self) -> Arc<Counters> {
        let c = Arc::new(Counters {
            query_log: self.query_log.clone(),
            ..Counters::default()
        });
        if let Ok(mut threads) = self.threads.lock() {
            threads.push(Arc::clone(&c));
        }
        c
    }

    /// Sums every thread's counters.
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            queries: vec![vec![vec![0; RCODES.len()]; QTYPES.len()]; TRANSPORTS.len()],
            client_queries: vec![[0; FAMILIES.len()]; CLIENT_SLOTS],
            ..Totals::default()
        };
        let threads = self.threads.lock().map(|g| g.clone()).unwrap_or_default();
        for c in threads {
            for (tr, per_type) in c.queries.iter().enumerate() {
                for (q, per_rcode) in per_type.iter().enumerate() {
                    for (r, n) in per_rcode.iter().enumerate() {
                        t.queries[tr][q][r] += n.load(Relaxed);
                    }
                }
            }
            t.dropped += c.dropped.load(Relaxed);
            t.truncated += c.truncated.load(Relaxed);
            for (sum, n) in t.geo.iter_mut().zip(&c.geo) {
                *sum += n.load(Relaxed);
            }
            for (sum, n) in t.ecs.iter_mut().zip(&c.ecs) {
                *sum += n.load(Relaxed);
            }
            for (family, per_slot) in c.clients.0.iter().enumerate() {
                for (sum, n) in t.client_queries.iter_mut().zip(per_slot) {
                    sum[family] += n.load(Relaxed);
                }
            }
            for (sum, n) in t.rrl.iter_mut().zip(&c.rrl) {
                *sum += n.load(Relaxed);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_thread() {
        let m = Metrics::default();
        let a = m.register();
        let b = m.register();
        a.answered(0, rtype::A, Rcode::NOERROR, false);
        b.answered(0, rtype::A, Rcode::NOERROR, true);
        b.answered(1, 65280, Rcode(9), false);
        a.zone(ZoneId::Global);
        b.ecs(EcsUse::Used);
        a.rrl(RrlAction::Slipped);
        b.rrl(RrlAction::Slipped);
        let t = m.totals();
        assert_eq!(t.rrl, [0, 2, 0]);
        assert_eq!(t.queries[0][0][0], 2);
        assert_eq!(t.queries[1][QTYPES.len() - 1][RCODES.len() - 1], 1);
        assert_eq!(t.truncated, 1);
        assert_eq!(t.geo, [0, 0, 1]);
        assert_eq!(t.ecs, [0, 1, 0, 0]);
    }

    #[test]
    fn client_queries_sum_every_thread_by_country_and_family() {
        // Every country index has a slot, and unknown one of its own.
        assert!(crate::continent::countries().count() < UNKNOWN_COUNTRY);
        let m = Metrics::default();
        let a = m.register();
        let b = m.register();
        a.client_query(Some(3), Family::V4);
        b.client_query(Some(3), Family::V4);
        b.client_query(Some(3), Family::V6);
        a.client_query(None, Family::V6);
        // An index past the slots (never made by a table) counts as unknown, not a panic.
        a.client_query(Some(u16::MAX), Family::V6);
        let t = m.totals();
        assert_eq!(t.client_queries_of(Some(3), Family::V4), 2);
        assert_eq!(t.client_queries_of(Some(3), Family::V6), 1);
        assert_eq!(t.client_queries_of(None, Family::V6), 2);
        assert_eq!(t.client_queries_of(Some(4), Family::V4), 0);
        assert_eq!(t.client_queries.iter().flatten().sum::<u64>(), 5);
    }
}
