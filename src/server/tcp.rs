//! DNS over TCP (RFC 7766, RFC 9210): two-byte length framing, any number of pipelined
//! queries per connection (answered in arrival order as each is read: answering takes
//! microseconds, so no query waits behind another), an idle timeout between queries, a
//! read timeout inside a message, and a cap on concurrent connections that closes the most
//! idle one to make room (RFC 7766 §6.2.2). A zero-length or oversized frame closes the
//! connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::{ServerOptions, SharedTable, Transport, respond};
use crate::metrics::{Counters, Metrics};

/// Largest query accepted. Queries are a question and an OPT record: a few hundred bytes.
const MAX_QUERY: usize = 4096;

/// One open connection, as the accept loop sees it.
struct Open {
    /// Milliseconds since `epoch` at the connection's last complete query (or its start).
    last_active: Arc<AtomicU64>,
    /// Told when the accept loop closes the connection to make room.
    close: Arc<Notify>,
}

/// Accepts connections until the task is aborted.
pub(super) async fn serve(
    listener: TcpListener,
    table: SharedTable,
    options: ServerOptions,
    metrics: Arc<Metrics>,
) {
    // TCP queries are few; one set of counters serves every connection of this listener.
    let counters = metrics.register();
    let epoch = Instant::now();
    let open: Arc<Mutex<HashMap<u64, Open>>> = Arc::default();
    let mut next_id = 0u64;
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                // Out of file descriptors and the like: back off briefly.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
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
            tokio::select! {
                _ = connection(stream, peer.ip(), table, &options, &counters, &last_active, epoch) => {}
                _ = close.notified() => {}
            }
            if let Ok(mut open) = open.lock() {
                open.remove(&id);
            }
        });
    }
}

fn millis(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

async fn connection(
    mut stream: TcpStream,
    peer: IpAddr,
    table: SharedTable,
    options: &ServerOptions,
    counters: &Counters,
    last_active: &AtomicU64,
    epoch: Instant,
) {
    let _ = stream.set_nodelay(true);
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut query = vec![0u8; MAX_QUERY];
    let mut answer = vec![0u8; 2 + 65_535];
    let keepalive = (options.tcp_idle_timeout.as_millis() / 100).min(u128::from(u16::MAX)) as u16;
    let transport = Transport::Tcp { keepalive };
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(options.tcp_idle_timeout, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            // Idle timeout, clean close or reset: the connection ends.
            _ => return,
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len == 0 || len > MAX_QUERY {
            return;
        }
        let body = stream.read_exact(&mut query[..len]);
        match tokio::time::timeout(options.tcp_read_timeout, body).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        last_active.store(millis(epoch), Ordering::Relaxed);
        let current = table.load();
        let Some(n) = respond(
            &current,
            &query[..len],
            peer,
            transport,
            &mut rng,
            counters,
            &mut answer[2..],
        ) else {
            continue;
        };
        answer[..2].copy_from_slice(&(n as u16).to_be_bytes());
        let write = stream.write_all(&answer[..2 + n]);
        match tokio::time::timeout(options.tcp_idle_timeout, write).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}
