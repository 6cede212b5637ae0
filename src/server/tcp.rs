//! DNS over TCP (RFC 7766, RFC 9210): two-byte length framing, any number of pipelined
//! queries per connection (answered in arrival order as each is read: answering takes
//! microseconds, so no query waits behind another), an idle timeout between queries, a
//! read timeout inside a message, and a cap on concurrent connections that closes the most
//! idle one to make room (RFC 7766 §6.2.2). A zero-length or oversized frame closes the
//! connection. On shutdown the listener stops accepting and every connection closes at its
//! next read, after the answer it is writing.

use std::collections::HashMap;
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

/// One open connection, as the accept loop sees it.
struct Open {
    /// Milliseconds since `epoch` at the connection's last complete query (or its start).
    last_active: Arc<AtomicU64>,
    /// Told when the connection must close (to make room, or on shutdown); it closes at
    /// its next read.
    close: Arc<Notify>,
}

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
    let epoch = Instant::now();
    let open: Arc<Mutex<HashMap<u64, Open>>> = Arc::default();
    let mut next_id = 0u64;
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
        metrics.tcp_accepted.fetch_add(1, Ordering::Relaxed);
        let id = next_id;
        next_id += 1;
        let last_active = Arc::new(AtomicU64::new(millis(epoch)));
        let close = Arc::new(Notify::new());
        if let Ok(mut open) = open.lock() {
            if open.len() >= options.tcp_max_connections.max(1) {
                // Make room by closing the connection that has been quiet longest.
                let idlest = open
                    .iter()
                    .min_by_key(|(_, c)| c.last_active.load(Ordering::Relaxed))
                    .map(|(&id, _)| id);
                if let Some(c) = idlest.and_then(|id| open.remove(&id)) {
                    c.close.notify_one();
                    metrics.tcp_evicted.fetch_add(1, Ordering::Relaxed);
                }
            }
            open.insert(
                id,
                Open {
                    last_active: Arc::clone(&last_active),
                    close: Arc::clone(&close),
                },
            );
        }
        let table = Arc::clone(&table);
        let counters = Arc::clone(&counters);
        let open = Arc::clone(&open);
        let options = options.clone();
        connections.spawn(async move {
            let connection = Connection {
                peer: peer.ip(),
                table,
                options: &options,
                counters: &counters,
                last_active: &last_active,
                close: &close,
                epoch,
            };
            connection.run(stream).await;
            if let Ok(mut open) = open.lock() {
                open.remove(&id);
            }
        });
    }
    // Shutdown: no new connections; each open one closes at its next read.
    drop(listener);
    if let Ok(open) = open.lock() {
        for c in open.values() {
            c.close.notify_one();
        }
    }
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

fn millis(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

struct Connection<'a> {
    peer: IpAddr,
    table: SharedTable,
    options: &'a ServerOptions,
    counters: &'a Counters,
    last_active: &'a AtomicU64,
    close: &'a Notify,
    epoch: Instant,
}

impl Connection<'_> {
    async fn run(&self, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let mut rng = SmallRng::from_rng(&mut rand::rng());
        let mut query = vec![0u8; MAX_QUERY];
        let mut answer = vec![0u8; 2 + 65_535];
        let keepalive =
            (self.options.tcp_idle_timeout.as_millis() / 100).min(u128::from(u16::MAX)) as u16;
        let transport = Transport::Tcp { keepalive };
        loop {
            let mut len = [0u8; 2];
            let idle =
                tokio::time::timeout(self.options.tcp_idle_timeout, stream.read_exact(&mut len));
            tokio::select! {
                read = idle => match read {
                    Ok(Ok(_)) => {}
                    // Idle timeout, clean close or reset: the connection ends.
                    _ => return,
                },
                _ = self.close.notified() => return,
            }
            let len = usize::from(u16::from_be_bytes(len));
            if len == 0 || len > MAX_QUERY {
                return;
            }
            let body = stream.read_exact(&mut query[..len]);
            match tokio::time::timeout(self.options.tcp_read_timeout, body).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            self.last_active
                .store(millis(self.epoch), Ordering::Relaxed);
            let current = self.table.load();
            let Some(n) = respond(
                &current,
                &query[..len],
                self.peer,
                transport,
                &mut rng,
                self.counters,
                &mut answer[2..],
            ) else {
                continue;
            };
            answer[..2].copy_from_slice(&(n as u16).to_be_bytes());
            let write = stream.write_all(&answer[..2 + n]);
            match tokio::time::timeout(self.options.tcp_idle_timeout, write).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }
}
