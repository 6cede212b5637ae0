//! DNS over TCP (RFC 7766): two-byte length framing, several queries per connection, an
//! idle timeout, and a cap on concurrent connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{ServerOptions, SharedTable, Transport, respond};

/// Accepts connections until the task is aborted.
pub(super) async fn serve(listener: TcpListener, table: SharedTable, options: ServerOptions) {
    let open = Arc::new(AtomicUsize::new(0));
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
        if open.load(Ordering::Relaxed) >= options.tcp_max_connections {
            drop(stream);
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let table = Arc::clone(&table);
        let open = Arc::clone(&open);
        let options = options.clone();
        connections.spawn(async move {
            let _ = connection(stream, peer.ip(), table, &options).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: std::net::IpAddr,
    table: SharedTable,
    options: &ServerOptions,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut query = vec![0u8; 65_535];
    let mut answer = vec![0u8; 2 + 65_535];
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(options.tcp_idle_timeout, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            // Idle timeout, clean close or reset: the connection ends.
            _ => return Ok(()),
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len == 0 {
            return Ok(());
        }
        match tokio::time::timeout(
            options.tcp_idle_timeout,
            stream.read_exact(&mut query[..len]),
        )
        .await
        {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let current = table.load();
        let Some(n) = respond(
            &current,
            &query[..len],
            peer,
            Transport::Tcp,
            &mut rng,
            &mut answer[2..],
        ) else {
            continue;
        };
        answer[..2].copy_from_slice(&(n as u16).to_be_bytes());
        stream.write_all(&answer[..2 + n]).await?;
    }
}
