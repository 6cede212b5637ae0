//! The optional query log: one JSON line per query (time, client, ECS, qname, qtype, rcode,
//! answers, the pool zone used, transport), written by a background thread.
//!
//! The query path only copies a fixed-size [`Entry`] into a preallocated lock-free ring
//! (no allocation, no lock, no syscall); when the ring is full the entry is dropped and
//! counted, so a slow disk never slows or blocks queries. The writer rotates the file by
//! size: `PATH` becomes `PATH.1` (replacing the older one) and a new `PATH` is started.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

/// Entries the ring holds before it drops.
pub const CAPACITY: usize = 16_384;
/// Addresses kept per entry.
pub const MAX_ANSWERS: usize = 8;

/// One query, as the query path hands it over: plain data, no heap.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Packet source.
    pub client: IpAddr,
    /// ECS address and source prefix, when sent.
    pub ecs: Option<(IpAddr, u8)>,
    /// The qname as sent (wire form), possibly empty.
    pub qname: [u8; 255],
    /// Its length.
    pub qname_len: u8,
    /// Query type.
    pub qtype: u16,
    /// Response code (extended).
    pub rcode: u16,
    /// Addresses answered.
    pub answers: [Option<IpAddr>; MAX_ANSWERS],
    /// Label of the pool zone used ("" when none).
    pub zone: &'static str,
    /// "udp" or "tcp".
    pub transport: &'static str,
}

/// The log: a ring the query path pushes to and a writer thread that empties it.
#[derive(Debug)]
pub struct QueryLog {
    ring: ArrayQueue<Entry>,
    /// Entries dropped because the ring was full.
    pub dropped: AtomicU64,
    /// Entries written.
    pub written: AtomicU64,
    closed: AtomicBool,
}

impl QueryLog {
    /// Opens `path` for appending and starts the writer; rotates past `max_bytes`.
    pub fn start(
        path: &Path,
        max_bytes: u64,
    ) -> std::io::Result<(Arc<QueryLog>, std::thread::JoinHandle<()>)> {
        let file = open(path)?;
        let log = Arc::new(QueryLog {
            ring: ArrayQueue::new(CAPACITY),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let writer = Writer {
            log: Arc::clone(&log),
            path: path.to_owned(),
            size: file.metadata().map_or(0, |m| m.len()),
            out: BufWriter::new(file),
            max_bytes: max_bytes.max(4096),
            line: String::with_capacity(512),
        };
        let handle = std::thread::Builder::new()
            .name("query-log".into())
            .spawn(move || writer.run())?;
        Ok((log, handle))
    }

    /// Hands an entry to the writer, or drops and counts it when the ring is full.
    pub fn record(&self, entry: Entry) {
        if self.ring.push(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the writer to write what is queued and stop.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("query log {}: {e}", path.display())))
}

struct Writer {
    log: Arc<QueryLog>,
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    max_bytes: u64,
    line: String,
}

impl Writer {
    fn run(mut self) {
        loop {
            let mut wrote = false;
            while let Some(entry) = self.log.ring.pop() {
                self.write(&entry);
                wrote = true;
            }
            if wrote {
                let _ = self.out.flush();
            }
            if self.log.closed.load(Ordering::Relaxed) && self.log.ring.is_empty() {
                let _ = self.out.flush();
                return;
            }
            if !wrote {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn write(&mut self, e: &Entry) {
        self.line.clear();
        render(&mut self.line, e);
        if self.out.write_all(self.line.as_bytes()).is_ok() {
            self.size += self.line.len() as u64;
            self.log.written.fetch_add(1, Ordering::Relaxed);
        }
        if self.size >= self.max_bytes {
            self.rotate();
        }
    }

    fn rotate(&mut self) {
        let _ = self.out.flush();
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        if let Err(e) = std::fs::rename(&self.path, &old) {
            tracing::warn!("query log {}: cannot rotate: {e}", self.path.display());
        }
        match open(&self.path) {
            Ok(f) => {
                self.out = BufWriter::new(f);
                self.size = 0;
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

/// Renders one JSON line.
pub fn render(out: &mut String, e: &Entry) {
    let qname = crate::name::render(&e.qname[..usize::from(e.qname_len)]);
    let _ = write!(
        out,
        "{{\"ts\":{}.{:03},\"client\":\"{}\",",
        e.time_ms / 1000,
        e.time_ms % 1000,
        e.client
    );
    match e.ecs {
        Some((addr, prefix)) => {
            let _ = write!(out, "\"ecs\":\"{addr}/{prefix}\",");
        }
        None => out.push_str("\"ecs\":null,"),
    }
    out.push_str("\"qname\":\"");
    for c in qname.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    let _ = write!(
        out,
        "\",\"qtype\":\"{}\",\"rcode\":\"{}\",\"answers\":[",
        crate::wire::rtype::name(e.qtype),
        crate::wire::Rcode(e.rcode).name()
    );
    for (i, a) in e.answers.iter().flatten().enumerate() {
        let _ = write!(out, "{}\"{a}\"", if i > 0 { "," } else { "" });
    }
    let _ = writeln!(
        out,
        "],\"zone\":\"{}\",\"transport\":\"{}\"}}",
        e.zone, e.transport
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(qname: &[u8]) -> Entry {
        let mut e = Entry {
            time_ms: 1_763_798_400_123,
            client: "127.0.0.1".parse().unwrap(),
            ecs: Some(("81.2.69.0".parse().unwrap(), 24)),
            qname: [0; 255],
            qname_len: qname.len() as u8,
            qtype: 1,
            rcode: 0,
            answers: [None; MAX_ANSWERS],
            zone: "uk",
            transport: "udp",
        };
        e.qname[..qname.len()].copy_from_slice(qname);
        e.answers[0] = Some("192.0.2.1".parse().unwrap());
        e.answers[1] = Some("2001:db8::1".parse().unwrap());
        e
    }

    #[test]
    fn renders_json_lines() {
        let mut line = String::new();
        render(&mut line, &entry(b"\x01\x30\x04pool\x03ntp\x03org\x00"));
        assert_eq!(
            line,
            "{\"ts\":1763798400.123,\"client\":\"127.0.0.1\",\"ecs\":\"81.2.69.0/24\",\"qname\":\"0.pool.ntp.org.\",\
             \"qtype\":\"A\",\"rcode\":\"NOERROR\",\"answers\":[\"192.0.2.1\",\"2001:db8::1\"],\"zone\":\"uk\",\"transport\":\"udp\"}\n"
        );
        let mut odd = String::new();
        render(&mut odd, &entry(b"\x03a\"b\x00"));
        let v: serde_json::Value = serde_json::from_str(&odd).unwrap();
        assert_eq!(v["qname"], "a\"b.");
    }

    #[test]
    fn writes_rotates_and_drops_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queries.log");
        let (log, writer) = QueryLog::start(&path, 4096).unwrap();
        for _ in 0..100 {
            log.record(entry(b"\x01\x30\x04pool\x03ntp\x03org\x00"));
        }
        log.close();
        writer.join().unwrap();
        assert_eq!(log.written.load(Ordering::Relaxed), 100);
        let rotated = std::fs::read_to_string(dir.path().join("queries.log.1")).unwrap();
        let current = std::fs::read_to_string(&path).unwrap();
        let lines = rotated.lines().count() + current.lines().count();
        assert!(lines <= 100 && rotated.len() >= 4096, "{lines}");
        for l in current.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        // A ring nobody empties drops past its capacity, counting what it drops.
        let full = QueryLog {
            ring: ArrayQueue::new(2),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        };
        for _ in 0..5 {
            full.record(entry(b"\x00"));
        }
        assert_eq!(full.dropped.load(Ordering::Relaxed), 3);
    }
}
