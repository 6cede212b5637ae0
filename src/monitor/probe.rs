//! Probe sockets: one UDP socket per address family for all probes, a receive thread per
//! socket that hands each reply to the probe waiting for it, and [`Prober::probe`]: send a
//! request, wait for the reply, retry once, or give up (no response).
//!
//! Why threads, not async tasks, receive: T4, the arrival time, is taken by the receiver,
//! and a task waits for a free runtime worker (one may be writing a 100,000-server feed)
//! while the reply sits in the socket buffer; every millisecond of that wait would be half
//! a millisecond of offset error. A thread blocked in `recv_from` takes the time as soon as
//! the kernel wakes it.
//!
//! A reply is handed over only when it comes from the address and port probed and its
//! origin timestamp is the random transmit timestamp of a request still waiting. Anything
//! else (a spoofed reply, a late reply to a request already given up, garbage) is counted
//! and dropped: the probe keeps waiting for the real one.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use super::ntp::{self, Outcome, Reply, Timestamp};

/// A reply and when it arrived (T4).
type Arrival = (Reply, Timestamp);

/// The probe sockets and the requests waiting for replies.
#[derive(Debug)]
pub struct Prober {
    v4: Option<Arc<UdpSocket>>,
    v6: Option<Arc<UdpSocket>>,
    port: u16,
    timeout: Duration,
    /// Requests waiting, by (server address, transmit timestamp).
    waiting: Mutex<HashMap<(IpAddr, u64), oneshot::Sender<Arrival>>>,
    /// Replies dropped: not an NTP header, from a port other than the one probed, or not
    /// matching a request waiting (wrong origin, unknown source, too late).
    pub ignored: Ignored,
    /// Set to stop the receive threads.
    stop: Arc<AtomicBool>,
    receivers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Counts of replies dropped, by reason.
#[derive(Debug, Default)]
pub struct Ignored {
    /// Shorter than an NTP header.
    pub malformed: AtomicU64,
    /// No request waits for this source and origin timestamp.
    pub unmatched: AtomicU64,
}

impl Prober {
    /// Binds the probe sockets (an ephemeral port per family; a family the host lacks is
    /// left out) and starts their receive threads. `port` is the port probed (123).
    pub fn bind(port: u16, timeout: Duration) -> std::io::Result<Arc<Prober>> {
        let open = |addr: SocketAddr| {
            let socket = UdpSocket::bind(addr).ok()?;
            // The receive thread wakes this often to see whether to stop.
            socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .ok()?;
            Some(Arc::new(socket))
        };
        let v4 = open(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let v6 = open(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)));
        if v4.is_none() && v6.is_none() {
            return Err(std::io::Error::other(
                "cannot bind a UDP socket for probes, neither IPv4 nor IPv6",
            ));
        }
        let prober = Arc::new(Prober {
            v4: v4.clone(),
            v6: v6.clone(),
            port,
            timeout,
            waiting: Mutex::new(HashMap::new()),
            ignored: Ignored::default(),
            stop: Arc::new(AtomicBool::new(false)),
            receivers: Mutex::new(Vec::new()),
        });
        let mut receivers = Vec::new();
        for socket in [v4, v6].into_iter().flatten() {
            // The thread holds a weak handle: it ends with the prober, or when told to.
            let (weak, stop) = (Arc::downgrade(&prober), prober.stop.clone());
            receivers.push(
                std::thread::Builder::new()
                    .name("probe-receive".into())
                    .spawn(move || receive(&socket, &weak, &stop))?,
            );
        }
        *prober.receivers.lock().unwrap_or_else(|e| e.into_inner()) = receivers;
        Ok(prober)
    }

    /// Stops the receive threads and waits for them (a tenth of a second at most).
    pub fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads: Vec<_> = self
            .receivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Probes `ip`: a request, and one retry when no reply comes within the timeout.
    pub async fn probe(&self, ip: IpAddr) -> Outcome {
        for _ in 0..2 {
            if let Some(outcome) = self.attempt(ip).await {
                return outcome;
            }
        }
        Outcome::NoResponse
    }

    /// One request; None when no matching reply came in time (or it could not be sent).
    async fn attempt(&self, ip: IpAddr) -> Option<Outcome> {
        let socket = match ip {
            IpAddr::V4(_) => self.v4.as_ref(),
            IpAddr::V6(_) => self.v6.as_ref(),
        };
        let Some(socket) = socket else {
            // No socket of this family: as good as no response, after the same wait, so
            // that a host without IPv6 does not probe in a tight loop.
            tokio::time::sleep(self.timeout).await;
            return None;
        };
        let transmit = Timestamp(rand::random::<u64>());
        let key = (ip, transmit.0);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(key, tx);
        let sent = Timestamp::from_system(SystemTime::now());
        let request = ntp::build_request(transmit);
        // A blocking send: a UDP send does not wait unless the socket buffer is full.
        let result = match socket.send_to(&request, SocketAddr::new(ip, self.port)) {
            Ok(_) => tokio::time::timeout(self.timeout, rx).await.ok(),
            Err(e) => {
                tracing::debug!("probe {ip}: cannot send: {e}");
                tokio::time::sleep(self.timeout).await;
                None
            }
        };
        self.lock().remove(&key);
        let (reply, received) = result?.ok()?;
        Some(ntp::measure(&reply, sent, received))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(IpAddr, u64), oneshot::Sender<Arrival>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a datagram from `from`, received at `received`, to the request it answers.
    fn deliver(&self, bytes: &[u8], from: SocketAddr, received: Timestamp) {
        let Ok(reply) = ntp::parse_reply(bytes) else {
            self.ignored.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let ip = from.ip().to_canonical();
        let waiting = (from.port() == self.port)
            .then(|| self.lock().remove(&(ip, reply.origin.0)))
            .flatten();
        match waiting {
            Some(tx) => {
                let _ = tx.send((reply, received));
            }
            None => {
                self.ignored.unmatched.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The receive loop of one socket, on its own thread.
fn receive(socket: &UdpSocket, prober: &std::sync::Weak<Prober>, stop: &AtomicBool) {
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                // ICMP errors surface here on some systems; they concern one probe only.
                tracing::trace!("probe socket: {e}");
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let received = Timestamp::from_system(SystemTime::now());
        let Some(prober) = prober.upgrade() else {
            return;
        };
        prober.deliver(&buf[..n], from, received);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::ntp::PACKET_LEN;

    /// A responder on `addr` that answers each request `replies` times, with the origin
    /// timestamp changed by `origin_delta` (0: a true reply).
    fn responder(addr: &str, origin_delta: u64) -> Option<(u16, std::thread::JoinHandle<()>)> {
        let socket = UdpSocket::bind(addr).ok()?;
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            // Two requests at most (a probe and its retry), then stop.
            for _ in 0..2 {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    return;
                };
                assert_eq!(n, PACKET_LEN);
                let origin = u64::from_be_bytes(buf[40..48].try_into().unwrap());
                let now = Timestamp::from_system(SystemTime::now()).0;
                let mut reply = [0u8; PACKET_LEN];
                reply[0] = (4 << 3) | 4;
                reply[1] = 2;
                reply[24..32].copy_from_slice(&origin.wrapping_add(origin_delta).to_be_bytes());
                reply[32..40].copy_from_slice(&now.to_be_bytes());
                reply[40..48].copy_from_slice(&now.to_be_bytes());
                socket.send_to(&reply, from).unwrap();
            }
        });
        Some((port, thread))
    }

    #[tokio::test]
    async fn a_reply_with_our_origin_is_measured_over_ipv4_and_ipv6() {
        for (bind, ip) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "::1")] {
            let Some((port, thread)) = responder(bind, 0) else {
                eprintln!("{bind}: cannot bind, skipping that family");
                continue;
            };
            let prober = Prober::bind(port, Duration::from_secs(2)).unwrap();
            let outcome = prober.probe(ip.parse().unwrap()).await;
            let Outcome::Time(m) = outcome else {
                panic!("{ip}: {outcome:?}");
            };
            assert!(m.offset.abs() < 0.05 && m.delay >= 0.0, "{m:?}");
            prober.close();
            drop(thread);
        }
    }

    #[tokio::test]
    async fn a_reply_with_another_origin_is_ignored_and_the_probe_retries_then_gives_up() {
        let (port, thread) = responder("127.0.0.1:0", 1).unwrap();
        let prober = Prober::bind(port, Duration::from_millis(300)).unwrap();
        let outcome = prober.probe("127.0.0.1".parse().unwrap()).await;
        assert_eq!(outcome, Outcome::NoResponse);
        thread.join().unwrap();
        // Both the request and the retry got a reply, both ignored (counted as they arrive).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while prober.ignored.unmatched.load(Ordering::Relaxed) < 2
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(prober.ignored.unmatched.load(Ordering::Relaxed), 2);
        prober.close();
    }
}
