//! Which UDP worker gets the queries of an address: at low rates one worker (the leader)
//! takes them all and the others sleep; at high rates the kernel spreads them over every
//! worker, as before. The operator's `--udp-workers` stays the upper bound.
//!
//! Why: at the rates pool servers see (10,000–50,000 queries a second) a worker wakes for
//! nearly every packet, and a wakeup with its context switch costs more than the answer.
//! Two workers at half the rate each take as many wakeups in total, each with a smaller
//! batch, on caches that the other core keeps cold: on a 2-core machine at 20,000 q/s one
//! worker spent 7.4 µs of CPU per query, two spent 9.9 (benches/README.md).
//!
//! How: the workers' sockets form one SO_REUSEPORT group, in the order they were bound,
//! and a classic BPF program attached to the group picks the socket of each packet
//! (`SO_ATTACH_REUSEPORT_CBPF`). "Return 0" sends every packet to the first socket, the
//! leader's; "return an index past the end" makes the kernel fall back to its own 4-tuple
//! hash, which spreads. The leader switches between the two from its own loop, from the
//! CPU time the workers used over a window: it spreads when it alone is busy more than
//! [`SPREAD_AT`] of the window (or at once when its receive queue builds up), and gathers
//! again when all of them together are busy less than [`GATHER_AT`]; the gap between the
//! two keeps it from flapping. More workers only help when they get a core of their own:
//! it spreads only when the machine had [`FREE_CORE`] of idle time in the last window, and
//! gathers when the spread workers spent more than [`CONTENDED`] of the window waiting for
//! a CPU (on a machine whose other cores are taken, by a load generator say, several
//! workers only take turns, each with smaller batches and more context switches). Packets
//! already queued on another worker's socket when it gathers are still answered by it.
//!
//! While a reload step holds a core ([`crate::reserve`]) the leader gathers and stays
//! gathered, so that a table build on a machine saturated with queries gets a core.
//!
//! Cost on the query path: one monotonic clock read (vDSO) per batch in the leader, none
//! in the others; no timer while gathered (the leader's receive waits at most a window only
//! while spread); per window one CPU-clock read per worker, `/proc/stat`, and each
//! worker's `schedstat` while spread, all into stack buffers.

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::socket::{setsockopt, sockopt::AttachReusePortCbpf};
use nix::time::{ClockId, clock_gettime};

/// How long the leader measures before it decides.
pub const WINDOW: Duration = Duration::from_millis(250);
/// Spread when the leader alone was busy more than this share of the window.
pub const SPREAD_AT: f64 = 0.6;
/// Gather when all workers together were busy less than this share of one core. One
/// worker does the same work for about 15 % less CPU than several, so this is about 0.38
/// of a core once gathered: well below [`SPREAD_AT`].
pub const GATHER_AT: f64 = 0.45;
/// Spread only when the machine had at least this many cores' worth of idle time in the
/// last window: more workers help only when they get a core of their own.
pub const FREE_CORE: f64 = 0.5;
/// Gather when the spread workers together waited for a CPU more than this share of the
/// window: they only take turns on the cores they have (with the load generator, say).
pub const CONTENDED: f64 = 0.2;
/// Spread at once after this many full batches in a row: a queue of more than this many
/// batches has built up on the leader's socket.
const FULL_BATCHES: u32 = 4;

/// The steering state of one address's workers, shared by them and the metrics.
#[derive(Debug)]
pub struct Group {
    /// Each worker's thread id, 0 until the worker has started.
    tids: Box<[AtomicI32]>,
    spread: AtomicBool,
    switches: AtomicU64,
}

impl Group {
    /// A group of `workers` workers, gathered on the first.
    pub fn new(workers: usize) -> Group {
        Group {
            tids: (0..workers).map(|_| AtomicI32::new(0)).collect(),
            spread: AtomicBool::new(false),
            switches: AtomicU64::new(0),
        }
    }

    /// Workers in the group.
    pub fn workers(&self) -> usize {
        self.tids.len()
    }

    /// How many workers the kernel currently sends queries to: 1 when gathered.
    pub fn active(&self) -> usize {
        if self.spread.load(Relaxed) {
            self.workers()
        } else {
            1
        }
    }

    /// How often the group switched between gathered and spread.
    pub fn switches(&self) -> u64 {
        self.switches.load(Relaxed)
    }

    /// Called by worker `index` on its own thread, once: publishes its thread id.
    pub fn register_current_thread(&self, index: usize) {
        if let Some(slot) = self.tids.get(index) {
            slot.store(nix::unistd::gettid().as_raw(), Relaxed);
        }
    }

    fn tid(&self, index: usize) -> Option<i32> {
        let tid = self.tids.get(index)?.load(Relaxed);
        (tid != 0).then_some(tid)
    }

    /// CPU time of worker `index` so far, if it has started.
    fn cpu_time(&self, index: usize) -> Option<Duration> {
        let clock = ClockId::from_raw(thread_cpu_clock(self.tid(index)?));
        clock_gettime(clock).ok().map(Duration::from)
    }

    /// Time worker `index` has spent runnable but waiting for a CPU, if the kernel tells
    /// (`/proc/self/task/TID/schedstat`, with scheduler statistics built in).
    fn run_queue_wait(&self, index: usize) -> Option<Duration> {
        let mut path = [0u8; 48];
        let len = {
            let mut w = &mut path[..];
            write!(w, "/proc/self/task/{}/schedstat", self.tid(index)?).ok()?;
            48 - w.len()
        };
        let mut buf = [0u8; 96];
        let text = read_small(std::str::from_utf8(&path[..len]).ok()?, &mut buf)?;
        // "run_ns wait_ns timeslices"
        let wait: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
        Some(Duration::from_nanos(wait))
    }
}

/// Reads a small /proc file into `buf`, without allocating (the hot thread calls it).
fn read_small<'a>(path: &str, buf: &'a mut [u8]) -> Option<&'a str> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
    }
    std::str::from_utf8(&buf[..len]).ok()
}

/// Time every CPU of the machine has spent idle so far (`/proc/stat`: idle and iowait).
fn machine_idle() -> Option<Duration> {
    let mut buf = [0u8; 256];
    let text = read_small("/proc/stat", &mut buf)?;
    // "cpu  user nice system idle iowait irq softirq steal ...", in clock ticks.
    let line = text.lines().next()?;
    let mut fields = line.split_ascii_whitespace().skip(4);
    let idle: u64 = fields.next()?.parse().ok()?;
    let iowait: u64 = fields.next()?.parse().ok()?;
    // USER_HZ, the unit of /proc/stat: 100 on every architecture Linux serves DNS from.
    const TICKS_PER_SECOND: u64 = 100;
    Some(Duration::from_millis(
        (idle + iowait) * 1000 / TICKS_PER_SECOND,
    ))
}

/// The CPU-time clock of thread `tid`: the kernel's encoding of a per-thread scheduler
/// clock (`MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`), what `pthread_getcpuclockid` returns,
/// computed here so that no unsafe call is needed.
fn thread_cpu_clock(tid: i32) -> i32 {
    const CPUCLOCK_SCHED: i32 = 2;
    const CPUCLOCK_PERTHREAD: i32 = 4;
    ((!tid) << 3) | CPUCLOCK_SCHED | CPUCLOCK_PERTHREAD
}

/// The leader's side: decides, and attaches the program to the group.
#[derive(Debug)]
pub struct Leader {
    group: std::sync::Arc<Group>,
    window_start: Instant,
    /// CPU time per worker at the start of the window.
    cpu_start: Box<[Duration]>,
    /// Run-queue wait per worker at the start of the window.
    wait_start: Box<[Option<Duration>]>,
    /// The machine's idle time at the start of the window.
    idle_start: Option<Duration>,
    /// Whether the last window had a core's worth of idle time (true when unknown).
    free_core: bool,
    full_batches: u32,
    /// Whether a reload step holds a core ([`crate::reserve::held`]).
    held: fn() -> bool,
    /// False once attaching a program failed: the kernel's hash spreads, as before.
    enabled: bool,
}

impl Leader {
    /// The leader of `group`, which gathers the group on `socket` (the first bound).
    pub fn start(group: std::sync::Arc<Group>, socket: &UdpSocket) -> Leader {
        let workers = group.workers();
        let mut leader = Leader {
            group,
            window_start: Instant::now(),
            cpu_start: vec![Duration::ZERO; workers].into_boxed_slice(),
            wait_start: vec![None; workers].into_boxed_slice(),
            idle_start: None,
            free_core: true,
            full_batches: 0,
            held: crate::reserve::held,
            enabled: true,
        };
        leader.set(socket, false);
        leader
    }

    /// Called after every batch of `count` packets (0 after a receive timeout) of at most
    /// `batch`.
    pub fn after_batch(&mut self, socket: &UdpSocket, count: usize, batch: usize) {
        if !self.enabled {
            return;
        }
        let spread = self.group.spread.load(Relaxed);
        if (self.held)() {
            // A table build runs: leave it the other cores.
            if spread {
                tracing::debug!("UDP steering: a table build runs");
                self.set(socket, false);
                self.restart_window(Instant::now());
            }
            return;
        }
        if count >= batch {
            self.full_batches += 1;
            if !spread && self.full_batches >= FULL_BATCHES && self.free_core {
                tracing::debug!("UDP steering: the leader's queue builds up");
                self.set(socket, true);
                self.restart_window(Instant::now());
                return;
            }
        } else {
            self.full_batches = 0;
        }
        let now = Instant::now();
        let wall = now.duration_since(self.window_start);
        if wall < WINDOW {
            return;
        }
        let mut busy = Duration::ZERO;
        let mut leader_busy = Duration::ZERO;
        let mut waited = Some(Duration::ZERO);
        for i in 0..self.cpu_start.len() {
            if let Some(t) = self.group.cpu_time(i) {
                let used = t.saturating_sub(self.cpu_start[i]);
                if i == 0 {
                    leader_busy = used;
                }
                busy += used;
            }
            if spread {
                waited = match (waited, self.wait_start[i], self.group.run_queue_wait(i)) {
                    (Some(sum), Some(start), Some(end)) => Some(sum + end.saturating_sub(start)),
                    _ => None,
                };
            }
        }
        let idle = match (self.idle_start, machine_idle()) {
            (Some(start), Some(end)) => Some(end.saturating_sub(start)),
            _ => None,
        };
        let wall = wall.as_secs_f64();
        self.free_core = idle.is_none_or(|idle| idle.as_secs_f64() >= FREE_CORE * wall);
        if !spread && leader_busy.as_secs_f64() > SPREAD_AT * wall && self.free_core {
            tracing::debug!(?leader_busy, ?idle, "UDP steering: the leader is busy");
            self.set(socket, true);
        } else if spread && busy.as_secs_f64() < GATHER_AT * wall {
            tracing::debug!(?busy, "UDP steering: the workers are idle");
            self.set(socket, false);
        } else if spread && waited.is_some_and(|w| w.as_secs_f64() > CONTENDED * wall) {
            tracing::debug!(?waited, "UDP steering: the workers wait for a CPU");
            self.set(socket, false);
        }
        self.restart_window(now);
    }

    fn restart_window(&mut self, now: Instant) {
        self.window_start = now;
        let spread = self.group.spread.load(Relaxed);
        for i in 0..self.cpu_start.len() {
            self.cpu_start[i] = self.group.cpu_time(i).unwrap_or(Duration::ZERO);
            self.wait_start[i] = if spread {
                self.group.run_queue_wait(i)
            } else {
                None
            };
        }
        self.idle_start = machine_idle();
    }

    /// Attaches the program that gathers (`spread` false) or spreads.
    fn set(&mut self, socket: &UdpSocket, spread: bool) {
        // Return 0: the first socket of the group. An index past the last socket makes the
        // kernel fall back to its 4-tuple hash.
        let target = if spread { u32::MAX } else { 0 };
        let mut program = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: target,
        }];
        let fprog = libc::sock_fprog {
            len: 1,
            filter: program.as_mut_ptr(),
        };
        match setsockopt(socket, AttachReusePortCbpf, &fprog) {
            Ok(()) => {
                // Spread, the leader may get no packet for a while (its share of the hash can
                // be empty) and must still look at the load: it wakes at least once a window.
                // Gathered, every packet comes to it: it sleeps until one does.
                if let Err(e) = socket.set_read_timeout(spread.then_some(WINDOW)) {
                    tracing::warn!("UDP steering: cannot set the leader's timeout: {e}");
                }
                if self.group.spread.swap(spread, Relaxed) != spread {
                    self.group.switches.fetch_add(1, Relaxed);
                }
                tracing::debug!(spread, "UDP steering");
            }
            Err(e) => {
                // Old kernel or not Linux: every worker takes its hash share, as before.
                tracing::warn!(
                    "cannot steer UDP queries among workers ({e}); all of them share the load"
                );
                self.enabled = false;
                self.group.spread.store(true, Relaxed);
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::Arc;

    /// Two sockets of one SO_REUSEPORT group on a free port of 127.0.0.1, first bound
    /// first, non-blocking.
    pub(in crate::server) fn group_of_two() -> (UdpSocket, UdpSocket) {
        let bind = |addr: std::net::SocketAddr| {
            use socket2::{Domain, Protocol, Socket, Type};
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
            s.set_reuse_port(true).unwrap();
            s.bind(&addr.into()).unwrap();
            let s: UdpSocket = s.into();
            s.set_nonblocking(true).unwrap();
            s
        };
        let first = bind("127.0.0.1:0".parse().unwrap());
        let second = bind(first.local_addr().unwrap());
        (first, second)
    }

    /// Sends one datagram from each of `clients` sockets (distinct ports) and counts what
    /// each server socket received.
    fn deliver(first: &UdpSocket, second: &UdpSocket, clients: usize) -> (usize, usize) {
        let to = first.local_addr().unwrap();
        for _ in 0..clients {
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client.send_to(b"query", to).unwrap();
        }
        // Loopback delivers within send_to: every datagram is queued by now.
        let drain = |s: &UdpSocket| {
            let mut buf = [0u8; 64];
            std::iter::from_fn(|| s.recv_from(&mut buf).ok()).count()
        };
        (drain(first), drain(second))
    }

    #[test]
    fn gathered_every_datagram_goes_to_the_leader_and_spread_they_are_shared() {
        let (first, second) = group_of_two();
        let group = Arc::new(Group::new(2));
        let mut leader = Leader::start(Arc::clone(&group), &first);
        assert_eq!(group.active(), 1);
        let (a, b) = deliver(&first, &second, 64);
        assert_eq!((a, b), (64, 0), "gathered: the leader takes all");

        assert_eq!(first.read_timeout().unwrap(), None, "gathered: no timer");
        leader.set(&first, true);
        assert_eq!(group.active(), 2);
        assert_eq!(group.switches(), 1);
        // Its share of the hash may bring it nothing: it still wakes to look at the load.
        // (The kernel keeps it in ticks: about a window.)
        let timeout = first.read_timeout().unwrap();
        assert!(
            timeout.is_some_and(|t| t >= WINDOW && t < 2 * WINDOW),
            "{timeout:?}"
        );
        // 64 client ports hashed over 2 sockets: all on one side has probability 2^-63.
        let (a, b) = deliver(&first, &second, 64);
        assert_eq!(a + b, 64);
        assert!(a > 0 && b > 0, "spread: {a} and {b}");

        leader.set(&first, false);
        assert_eq!(deliver(&first, &second, 64), (64, 0));
        assert_eq!(first.read_timeout().unwrap(), None);
    }

    #[test]
    fn a_held_core_gathers_a_spread_group_and_keeps_it_gathered() {
        let (first, _second) = group_of_two();
        let group = Arc::new(Group::new(2));
        let mut leader = Leader::start(Arc::clone(&group), &first);
        leader.set(&first, true);
        // This test's own hold: other tests may hold the process-wide one.
        static HELD: AtomicBool = AtomicBool::new(true);
        leader.held = || HELD.load(Relaxed);
        leader.after_batch(&first, 1, 32);
        assert_eq!(group.active(), 1);
        // Full batches would spread it at once, but not while the core is held.
        for _ in 0..10 {
            leader.after_batch(&first, 32, 32);
        }
        assert_eq!(group.active(), 1);
        HELD.store(false, Relaxed);
        for _ in 0..FULL_BATCHES {
            leader.after_batch(&first, 32, 32);
        }
        assert_eq!(group.active(), 2, "a queue building up spreads at once");
    }

    #[test]
    fn the_thread_clock_of_this_thread_reads_its_cpu_time() {
        let group = Group::new(1);
        group.register_current_thread(0);
        let start = group.cpu_time(0).expect("a clock");
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let end = group.cpu_time(0).expect("a clock");
        assert!(end > start, "{start:?} → {end:?}");
        let own = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map(Duration::from);
        assert!(own.is_ok_and(|own| own >= end));
    }
}
