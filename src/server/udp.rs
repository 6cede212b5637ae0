//! The UDP loop: receive, answer into a reused buffer, send. One table load per packet.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::net::UdpSocket;

use super::{SharedTable, Transport, respond};

/// Serves one socket until the task is aborted.
pub(super) async fn serve(socket: Arc<UdpSocket>, table: SharedTable) {
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut query = vec![0u8; 65_535];
    let mut answer = vec![0u8; 65_535];
    loop {
        let (len, peer) = match socket.recv_from(&mut query).await {
            Ok(r) => r,
            // ICMP errors from earlier sends surface here on some systems; keep serving.
            Err(_) => continue,
        };
        let current = table.load();
        if let Some(n) = respond(
            &current,
            &query[..len],
            peer.ip(),
            Transport::Udp,
            &mut rng,
            &mut answer,
        ) {
            // A send error (buffer full, peer gone) loses one answer; the client retries.
            let _ = socket.send_to(&answer[..n], peer).await;
        }
    }
}
