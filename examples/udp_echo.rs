//! A trivial UDP "DNS echo" server: the floor of what any UDP DNS server can cost per query on
//! this machine, for `benches/load.sh --compare` (the "/ echo" column of its ratio table).
//!
//! # Usage
//!
//! ```text
//! cargo build --release --example udp_echo
//! target/release/examples/udp_echo --listen 127.0.0.1:5300 --workers 2
//! ```
//!
//! It does what pooldns' UDP path does minus the DNS: `--workers` threads, each with its own
//! SO_REUSEPORT socket on the same address (4 MiB receive and send buffers), each in a
//! blocking loop that receives up to 32 datagrams with `recvmmsg` (`MSG_WAITFORONE`), sets the
//! QR bit of each (so that dnsperf counts it as the response to its query) and sends them back
//! to their senders with `sendmmsg`. Nothing else is parsed: every datagram of at least a DNS
//! header's 12 bytes is answered with its own bytes, so the answers are as small as the
//! queries. It runs until it is killed.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use anyhow::{Context, Result};
use clap::Parser;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use socket2::{Domain, Protocol, Socket, Type};

/// Datagrams per batch (as pooldns).
const BATCH: usize = 32;
/// Largest datagram read; longer ones are cut (a dnsperf query is far shorter).
const DATAGRAM_MAX: usize = 4096;
/// A DNS header: shorter datagrams are not answered.
const HEADER: usize = 12;
/// Socket buffer sizes (as pooldns asks for; the kernel may cap them).
const SOCKET_BUFFER: usize = 4 << 20;

/// Command line flags.
#[derive(Parser, Debug)]
#[command(about = "Trivial UDP DNS echo server (the floor for benches/load.sh --compare)")]
struct Args {
    /// Address to listen on (UDP only).
    #[arg(long, default_value = "127.0.0.1:5300")]
    listen: SocketAddr,
    /// Worker threads, each with its own SO_REUSEPORT socket.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let first =
        reuseport_udp(args.listen).with_context(|| format!("cannot bind UDP {}", args.listen))?;
    // With port 0 the other sockets join the port the first one got.
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..args.workers.max(1) {
        sockets.push(reuseport_udp(bound).with_context(|| format!("cannot bind UDP {bound}"))?);
    }
    eprintln!("udp_echo: {} workers on {bound}", sockets.len());
    let threads = sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            std::thread::Builder::new()
                .name(format!("echo-{i}"))
                .spawn(move || echo(&socket))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

/// A UDP socket with SO_REUSEPORT and large buffers, bound to `addr`.
fn reuseport_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Echoes batches of datagrams back to their senders, with QR set, forever.
fn echo(socket: &UdpSocket) {
    let fd = socket.as_raw_fd();
    let mut buffers = vec![0u8; BATCH * DATAGRAM_MAX].into_boxed_slice();
    // The datagrams to answer: chunk of `buffers` each is in, its length, its sender.
    let mut chunk_of = [0usize; BATCH];
    let mut lengths = [0usize; BATCH];
    let mut peers: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    // The headers hold raw pointers (not Send): made here, on the worker's thread.
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    loop {
        let count = {
            let mut chunks = buffers.chunks_exact_mut(DATAGRAM_MAX);
            let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
                // BATCH chunks exist: the buffer is BATCH * DATAGRAM_MAX long.
                [IoSliceMut::new(chunks.next().unwrap_or_default())]
            });
            let Ok(results) = recvmmsg(
                fd,
                &mut recv_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) else {
                // EINTR, or the ICMP error of an earlier send (ECONNREFUSED): go on.
                continue;
            };
            let mut count = 0;
            for (chunk, message) in results.enumerate() {
                let len = message.bytes.min(DATAGRAM_MAX);
                if len >= HEADER && message.address.is_some() {
                    chunk_of[count] = chunk;
                    lengths[count] = len;
                    peers[count] = message.address;
                    count += 1;
                }
            }
            count
        };
        for &chunk in &chunk_of[..count] {
            buffers[chunk * DATAGRAM_MAX + 2] |= 0x80; // QR: a response
        }

        let mut sent = 0;
        while sent < count {
            let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|j| {
                let j = sent + j;
                [IoSlice::new(if j < count {
                    let start = chunk_of[j] * DATAGRAM_MAX;
                    &buffers[start..start + lengths[j]]
                } else {
                    &[]
                })]
            });
            match sendmmsg(
                fd,
                &mut send_headers,
                slices[..count - sent].iter(),
                &peers[sent..count],
                [] as [ControlMessage<'_>; 0],
                MsgFlags::empty(),
            ) {
                Ok(results) => {
                    let n = results.count();
                    if n == 0 {
                        break;
                    }
                    sent += n;
                }
                // That datagram is lost (the client retries); go on with the rest.
                Err(_) => sent += 1,
            }
        }
    }
}
