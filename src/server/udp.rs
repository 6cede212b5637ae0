//! The UDP path (DESIGN §6): one SO_REUSEPORT socket per worker thread, each thread in a
//! blocking loop that receives a batch with `recvmmsg`, answers every packet into a
//! preallocated buffer and sends the batch with `sendmmsg`. No async runtime, no channel,
//! no lock, and no heap allocation per query: every buffer and header is allocated once,
//! when the worker starts (`tests/alloc.rs` counts).
//!
//! Response rate limiting sits here, beside the loop: after an answer is built, the
//! worker asks the shared [`Limiter`] whether to send it, a slip answer, or nothing.

use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, Shutdown, SockaddrStorage, recvmmsg, sendmmsg,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::steer::{Group, Leader};
use super::{ServerOptions, SharedTable, Transport, respond, sched};
use crate::metrics::{Counters, Metrics};
use crate::rrl::Limiter;

/// Packets per batch.
pub const BATCH: usize = 32;
/// Largest query read; longer datagrams are cut and then fail to parse (FORMERR).
const QUERY_MAX: usize = 4096;
/// Largest answer written: the configuration caps the UDP payload at 4096.
const ANSWER_MAX: usize = 4096;

/// One worker's socket, buffers and random source.
pub struct Worker {
    socket: UdpSocket,
    table: SharedTable,
    counters: Arc<Counters>,
    /// Response rate limiting's accounts, shared by every worker of the process.
    limiter: Arc<Limiter>,
    /// This worker's count of limited answers, for `slip`.
    slips: u32,
    /// Per answer of the batch: the client's address and the index of its query.
    sources: [IpAddr; BATCH],
    query_of: [usize; BATCH],
    rng: SmallRng,
    queries: Box<[u8]>,
    answers: Box<[u8]>,
    received: [(usize, Option<SockaddrStorage>); BATCH],
    to_send: [usize; BATCH],
    peers: [Option<SockaddrStorage>; BATCH],
    recv_headers: MultiHeaders<SockaddrStorage>,
    send_headers: MultiHeaders<SockaddrStorage>,
    /// Set in the first worker of an address with several: steers the queries.
    leader: Option<Leader>,
}

impl Worker {
    /// Prepares a worker for a bound socket. The worker blocks in its receive without a
    /// timeout: a timer armed and cancelled on every sleep cost about 0.2 µs a query at
    /// 5,000 q/s, where every query is a sleep (benches/README.md). [`Workers::stop`] wakes
    /// it by shutting the socket down; a steering leader keeps a timeout while it spreads.
    pub fn new(
        socket: UdpSocket,
        table: SharedTable,
        counters: Arc<Counters>,
    ) -> std::io::Result<Worker> {
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(None)?;
        Ok(Worker {
            socket,
            table,
            counters,
            limiter: Arc::new(Limiter::new()),
            slips: 0,
            sources: [IpAddr::from([0, 0, 0, 0]); BATCH],
            query_of: [0; BATCH],
            rng: SmallRng::from_rng(&mut rand::rng()),
            queries: vec![0u8; BATCH * QUERY_MAX].into_boxed_slice(),
            answers: vec![0u8; BATCH * ANSWER_MAX].into_boxed_slice(),
            received: [(0, None); BATCH],
            to_send: [0; BATCH],
            peers: [None; BATCH],
            recv_headers: MultiHeaders::preallocate(BATCH, None),
            send_headers: MultiHeaders::preallocate(BATCH, None),
            leader: None,
        })
    }

    /// Makes this worker the `index`th of `group`; the first (bound first) leads it.
    pub fn in_group(mut self, group: &Arc<Group>, index: usize) -> Worker {
        group.register_current_thread(index);
        if index == 0 && group.workers() > 1 {
            self.leader = Some(Leader::start(Arc::clone(group), &self.socket));
        }
        self
    }

    /// Shares `limiter`'s accounts (one table for every worker of a process) instead of the
    /// worker's own.
    pub fn with_limiter(mut self, limiter: Arc<Limiter>) -> Worker {
        self.limiter = limiter;
        self
    }

    /// Serves until `stop` is set (and the socket shut down, to wake it: [`Workers::stop`]).
    pub fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            // Timeouts (EAGAIN, in a spread leader) and transient errors (ICMP port
            // unreachable surfacing as ECONNREFUSED, ENOBUFS) end one round, never the loop.
            let _ = self.serve_batch();
        }
    }

    /// Receives one batch (waiting for at least one packet, and in a spread leader at most
    /// [`super::steer::WINDOW`]), answers it and sends the answers; then, in a leader,
    /// steers. Returns the number of answers sent.
    pub fn serve_batch(&mut self) -> std::io::Result<usize> {
        let received = self.receive();
        let count = *received.as_ref().unwrap_or(&0);
        let answered = received.map(|count| self.answer(count));
        if let Some(leader) = &mut self.leader {
            leader.after_batch(&self.socket, count, BATCH);
        }
        answered
    }

    /// Receives a batch into the query buffers; returns how many packets came.
    fn receive(&mut self) -> std::io::Result<usize> {
        let fd = self.socket.as_raw_fd();
        let count = {
            let mut chunks = self.queries.chunks_exact_mut(QUERY_MAX);
            let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
                // BATCH chunks of QUERY_MAX exist: the buffer is BATCH * QUERY_MAX long.
                [IoSliceMut::new(chunks.next().unwrap_or_default())]
            });
            let results = recvmmsg(
                fd,
                &mut self.recv_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            )
            .map_err(std::io::Error::from)?;
            let mut count = 0;
            for (slot, message) in self.received.iter_mut().zip(results) {
                *slot = (message.bytes.min(QUERY_MAX), message.address);
                count += 1;
            }
            count
        };
        Ok(count)
    }

    /// Answers the `count` packets received and sends the answers; returns how many.
    fn answer(&mut self, count: usize) -> usize {
        let fd = self.socket.as_raw_fd();
        let table = self.table.load();
        let rrl = &table.config.rrl;
        // One clock read per batch, and none when rate limiting is off.
        let now = rrl.is_on().then(|| self.limiter.now());
        let mut answers = 0;
        for i in 0..count {
            let (len, peer) = self.received[i];
            let Some(source) = peer.as_ref().and_then(ip_of) else {
                continue;
            };
            let query = &self.queries[i * QUERY_MAX..i * QUERY_MAX + len];
            let out = &mut self.answers[answers * ANSWER_MAX..(answers + 1) * ANSWER_MAX];
            if let Some(n) = respond(
                &table,
                query,
                source,
                Transport::Udp,
                &mut self.rng,
                &self.counters,
                out,
            ) {
                self.to_send[answers] = n;
                self.peers[answers] = peer;
                self.sources[answers] = source;
                self.query_of[answers] = i;
                answers += 1;
            }
        }
        if let Some(now) = now {
            let (queries, received, query_of) = (&self.queries, &self.received, &self.query_of);
            self.limiter.decide(
                rrl,
                &table.config.cookie_secret,
                now,
                &mut self.answers,
                ANSWER_MAX,
                &mut self.to_send[..answers],
                &self.sources[..answers],
                |j| {
                    // i < count <= BATCH and received[i].0 <= QUERY_MAX: in the buffer.
                    let i = query_of[j];
                    &queries[i * QUERY_MAX..i * QUERY_MAX + received[i].0]
                },
                &mut self.slips,
                &self.counters,
            );
            answers = self.keep_sent(answers);
        }
        drop(table);

        let mut sent = 0;
        while sent < answers {
            let mut chunks = self
                .answers
                .chunks_exact(ANSWER_MAX)
                .zip(self.to_send)
                .skip(sent);
            let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|_| {
                [IoSlice::new(
                    chunks.next().map_or(&[][..], |(chunk, n)| &chunk[..n]),
                )]
            });
            let results = sendmmsg(
                fd,
                &mut self.send_headers,
                slices[..answers - sent].iter(),
                &self.peers[sent..answers],
                [] as [ControlMessage<'_>; 0],
                MsgFlags::empty(),
            );
            match results {
                Ok(r) => {
                    let n = r.count();
                    if n == 0 {
                        break;
                    }
                    sent += n;
                }
                // The answer that failed is lost (the client retries); go on with the rest.
                Err(_) => sent += 1,
            }
        }
        answers
    }
}

impl Worker {
    /// Closes the gaps that rate limiting left (answers of length 0, dropped) among the
    /// first `answers`; returns how many remain. Moves bytes only under a flood.
    fn keep_sent(&mut self, answers: usize) -> usize {
        let mut kept = 0;
        for j in 0..answers {
            let n = self.to_send[j];
            if n == 0 {
                continue;
            }
            if kept != j {
                self.answers
                    .copy_within(j * ANSWER_MAX..j * ANSWER_MAX + n, kept * ANSWER_MAX);
                self.to_send[kept] = n;
                self.peers[kept] = self.peers[j];
            }
            kept += 1;
        }
        kept
    }
}

// Limiter::decide looks at a whole batch at once.
const _: () = assert!(BATCH <= crate::rrl::MAX_BATCH);

fn ip_of(addr: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    addr.as_sockaddr_in6().map(|v6| {
        let ip = v6.ip();
        ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4)
    })
}

/// The running UDP workers of a server.
pub(super) struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
    /// A second handle on each worker's socket, to wake the worker when it stops.
    sockets: Vec<UdpSocket>,
    stop: Arc<AtomicBool>,
}

impl Workers {
    /// Stops every worker and waits for them: each finishes the batch in hand. A worker
    /// asleep in its receive is woken by shutting its socket down for reading, which an
    /// unconnected UDP socket allows for exactly this (the call reports ENOTCONN, but the
    /// shutdown is made and the sleepers are woken; later receives return at once).
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for socket in &self.sockets {
            let _ = nix::sys::socket::shutdown(socket.as_raw_fd(), Shutdown::Read);
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Starts one thread per socket. The sockets of one address (consecutive, in the order they
/// were bound) form a steering group when `options.udp_steering`; with `options.udp_batch`
/// every worker runs under SCHED_BATCH.
pub(super) fn spawn(
    sockets: Vec<UdpSocket>,
    table: &SharedTable,
    metrics: &Metrics,
    options: &ServerOptions,
) -> std::io::Result<Workers> {
    let (steering, batch) = (options.udp_steering, options.udp_batch);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::with_capacity(sockets.len());
    let wakers = sockets
        .iter()
        .map(UdpSocket::try_clone)
        .collect::<std::io::Result<Vec<_>>>()?;
    let limiter = Arc::new(Limiter::new());
    let addrs: Vec<_> = sockets.iter().map(|s| s.local_addr().ok()).collect();
    let mut group = Arc::new(Group::new(0));
    let mut index = 0;
    for (i, socket) in sockets.into_iter().enumerate() {
        if i == 0 || addrs[i] != addrs[i - 1] || !steering {
            // Without steering, groups of one: no leader, the kernel's hash spreads.
            let size = if steering {
                addrs[i..].iter().take_while(|a| **a == addrs[i]).count()
            } else {
                1
            };
            group = Arc::new(Group::new(size));
            metrics.add_udp_group(addrs[i], Arc::clone(&group));
            index = 0;
        }
        let table = Arc::clone(table);
        let limiter = Arc::clone(&limiter);
        let stop = Arc::clone(&stop);
        let group = Arc::clone(&group);
        let counters = metrics.register();
        // The worker's message headers hold raw pointers (not Send): build it on its thread.
        threads.push(
            std::thread::Builder::new()
                .name(format!("udp-{i}"))
                .spawn(move || {
                    if batch {
                        if let Err(e) = sched::batch_current_thread() {
                            // Serving goes on under the default policy, at some more CPU a query.
                            tracing::warn!("UDP worker {i} stays under SCHED_OTHER: {e}");
                        }
                    }
                    match Worker::new(socket, table, counters) {
                        Ok(worker) => worker
                            .with_limiter(limiter)
                            .in_group(&group, index)
                            .run(&stop),
                        Err(e) => tracing::error!("UDP worker {i} cannot start: {e}"),
                    }
                })?,
        );
        index += 1;
    }
    Ok(Workers {
        threads,
        sockets: wakers,
        stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arc_swap::ArcSwap;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn stopping_wakes_the_workers_asleep_in_their_receive() {
        let (first, second) = super::super::steer::tests::group_of_two();
        let addr = first.local_addr().unwrap();
        let table = Arc::new(ArcSwap::from_pointee(crate::fuzzing::build_table()));
        let metrics = Metrics::default();
        let workers = spawn(
            vec![first, second],
            &table,
            &metrics,
            &ServerOptions::default(),
        )
        .unwrap();
        // An answer: the leader is serving, and asleep in its receive again right after.
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let query = [
            0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, b'p', b'o', b'o', b'l', 3, b'n', b't',
            b'p', 3, b'o', b'r', b'g', 0, 0, 1, 0, 1,
        ];
        client.send_to(&query, addr).unwrap();
        let mut buf = [0u8; 512];
        let n = client.recv(&mut buf).expect("an answer");
        assert!(n > 12 && buf[..2] == [0x12, 0x34]);
        std::thread::sleep(Duration::from_millis(100));

        // Neither worker has a timeout to wake it: only the stop can.
        let (done, stopped) = mpsc::channel();
        std::thread::spawn(move || {
            workers.stop();
            let _ = done.send(());
        });
        stopped
            .recv_timeout(Duration::from_secs(20))
            .expect("every worker woke and stopped");
    }
}
