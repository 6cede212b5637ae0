//! The optional query log: one JSON line per query (time, client, ECS and the scope sent
//! back, qname, qtype, rcode, the answer section's records, the pool zone used, transport),
//! written by a background thread.
//!
//! The query path only copies a fixed-size [`Entry`] into a preallocated lock-free ring
//! (no allocation, no lock, no syscall); when the ring is full the entry is dropped and
//! counted, so a slow disk never slows or blocks queries. The entry holds the answer's
//! records as wire rdata ([`Records`]); the writer turns them into text. It rotates the
//! file by size: `PATH` becomes `PATH.1` (replacing the older one) and a new `PATH` is
//! started.
//!
//! A write that fails (a full disk, a quota, an I/O error) loses its entries: they are
//! counted with the ring's drops, the first failure is logged, and the writer goes on
//! with the next batch, so the log resumes by itself once there is room. The query path
//! never sees the disk, so a full disk neither blocks nor stops the server (issue 11).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

/// Entries the ring holds before it drops.
pub const CAPACITY: usize = 16_384;
/// Bytes of records an entry keeps: the largest pool answer, sixteen AAAA records, takes
/// 16 × (4 + 16) = 320, which leaves room for static RRsets of a few records. An entry is
/// then about 900 bytes, and the ring, allocated when the log starts, about 15 MB.
pub const RECORD_BYTES: usize = 512;

/// One query, as the query path hands it over: plain data, no heap.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Packet source.
    pub client: IpAddr,
    /// ECS address and source prefix, when sent.
    pub ecs: Option<(IpAddr, u8)>,
    /// The ECS scope prefix of the answer's OPT, when it carried an ECS option.
    pub scope: Option<u8>,
    /// The qname as sent (wire form), possibly empty.
    pub qname: [u8; 255],
    /// Its length.
    pub qname_len: u8,
    /// Query type.
    pub qtype: u16,
    /// Response code (extended).
    pub rcode: u16,
    /// The answer section's records.
    pub answers: Records,
    /// Label of the pool zone used ("" when none).
    pub zone: &'static str,
    /// "udp" or "tcp".
    pub transport: &'static str,
}

/// Records of an answer section, kept without heap: each as its type, rdata length and
/// rdata, one after the other in a fixed buffer. What does not fit is counted.
#[derive(Clone, Copy)]
pub struct Records {
    bytes: [u8; RECORD_BYTES],
    len: u16,
    /// Records left out because the buffer was full.
    pub omitted: u16,
}

impl Records {
    /// No records.
    pub const EMPTY: Records = Records {
        bytes: [0; RECORD_BYTES],
        len: 0,
        omitted: 0,
    };

    /// Adds a record of type `rtype` with wire `rdata` (names uncompressed), or counts it as
    /// omitted when it does not fit. After one is omitted, so are the rest: the records kept
    /// are the first ones of the section.
    pub fn push(&mut self, rtype: u16, rdata: &[u8]) {
        let start = usize::from(self.len);
        let end = start + 4 + rdata.len();
        if self.omitted > 0 || end > RECORD_BYTES {
            self.omitted = self.omitted.saturating_add(1);
            return;
        }
        self.bytes[start..start + 2].copy_from_slice(&rtype.to_be_bytes());
        // rdata.len() < RECORD_BYTES, checked above.
        self.bytes[start + 2..start + 4].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.bytes[start + 4..end].copy_from_slice(rdata);
        self.len = end as u16; // end <= RECORD_BYTES
    }

    /// Adds an A or AAAA record.
    pub fn push_address(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.push(crate::wire::rtype::A, &v4.octets()),
            IpAddr::V6(v6) => self.push(crate::wire::rtype::AAAA, &v6.octets()),
        }
    }

    /// The records kept, as (type, rdata).
    pub fn iter(&self) -> impl Iterator<Item = (u16, &[u8])> {
        let mut rest = &self.bytes[..usize::from(self.len)];
        std::iter::from_fn(move || {
            // Only `push` writes the buffer: every record is complete.
            let (head, tail) = rest.split_first_chunk::<4>()?;
            let rtype = u16::from_be_bytes([head[0], head[1]]);
            let len = usize::from(u16::from_be_bytes([head[2], head[3]])).min(tail.len());
            let (rdata, after) = tail.split_at(len);
            rest = after;
            Some((rtype, rdata))
        })
    }
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()?;
        if self.omitted > 0 {
            write!(f, " and {} omitted", self.omitted)?;
        }
        Ok(())
    }
}

/// The log: a ring the query path pushes to and a writer thread that empties it.
#[derive(Debug)]
pub struct QueryLog {
    ring: ArrayQueue<Entry>,
    /// Entries dropped: the ring was full (the writer fell behind), or writing them failed
    /// (a full disk).
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
            out: file,
            max_bytes: max_bytes.max(4096),
            batch: String::with_capacity(BATCH_BYTES + 4096),
            in_batch: 0,
            failing: false,
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

/// Bytes of lines the writer collects before one write.
const BATCH_BYTES: usize = 64 << 10;

/// The writer thread's state.
struct Writer {
    log: Arc<QueryLog>,
    path: PathBuf,
    /// The open log file; replaced on rotation.
    out: File,
    /// Bytes in the current file.
    size: u64,
    max_bytes: u64,
    /// Lines not yet written, whole: a batch is written or lost as a whole, so `written`
    /// and `dropped` count exactly (a buffered writer would report lines as written that
    /// are stuck in its buffer).
    batch: String,
    /// Entries in `batch`.
    in_batch: u64,
    /// The last write failed: logged once, until a write succeeds again.
    failing: bool,
}

impl Writer {
    fn run(mut self) {
        loop {
            let mut wrote = false;
            while let Some(entry) = self.log.ring.pop() {
                render(&mut self.batch, &entry);
                self.in_batch += 1;
                if self.batch.len() >= BATCH_BYTES {
                    self.write_batch();
                }
                wrote = true;
            }
            self.write_batch();
            if self.log.closed.load(Ordering::Relaxed) && self.log.ring.is_empty() {
                return;
            }
            if !wrote {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Writes the batch, or counts its entries as dropped; rotates past the size limit.
    fn write_batch(&mut self) {
        if self.in_batch == 0 {
            return;
        }
        match self.out.write_all(self.batch.as_bytes()) {
            Ok(()) => {
                self.size += self.batch.len() as u64;
                self.log.written.fetch_add(self.in_batch, Ordering::Relaxed);
                if self.failing {
                    tracing::info!("query log {}: writing again", self.path.display());
                    self.failing = false;
                }
            }
            Err(e) => {
                self.log.dropped.fetch_add(self.in_batch, Ordering::Relaxed);
                if !self.failing {
                    tracing::warn!(
                        "query log {}: cannot write: {e}; dropping entries (counted in \
                         pooldns_query_log_dropped_total) until it can",
                        self.path.display()
                    );
                    self.failing = true;
                }
            }
        }
        self.batch.clear();
        self.in_batch = 0;
        if self.failing {
            // Part of the batch may have reached the file: the next one starts on a line
            // of its own, so that the torn line stays one bad line.
            self.batch.push('\n');
        }
        if self.size >= self.max_bytes {
            self.rotate();
        }
    }

    fn rotate(&mut self) {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        if let Err(e) = std::fs::rename(&self.path, &old) {
            tracing::warn!("query log {}: cannot rotate: {e}", self.path.display());
        }
        match open(&self.path) {
            Ok(f) => {
                self.out = f;
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
    match e.scope {
        Some(scope) => {
            let _ = write!(out, "\"scope\":{scope},");
        }
        None => out.push_str("\"scope\":null,"),
    }
    out.push_str("\"qname\":");
    json_string(out, &qname);
    let _ = write!(
        out,
        ",\"qtype\":\"{}\",\"rcode\":\"{}\",\"answers\":[",
        crate::wire::rtype::name(e.qtype),
        crate::wire::Rcode(e.rcode).name()
    );
    let mut text = String::new();
    for (i, (rtype, rdata)) in e.answers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        text.clear();
        render_rdata(&mut text, rtype, rdata);
        json_string(out, &text);
    }
    out.push(']');
    if e.answers.omitted > 0 {
        let _ = write!(out, ",\"omitted\":{}", e.answers.omitted);
    }
    let _ = writeln!(
        out,
        ",\"zone\":\"{}\",\"transport\":\"{}\"}}",
        e.zone, e.transport
    );
}

/// Writes `text` as a JSON string (RFC 8259 §7).
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Renders one record's rdata as text: the address of A/AAAA, the name of NS/CNAME/PTR,
/// the strings of TXT (joined by a space), "PREFERENCE EXCHANGE" for MX, "PRIORITY WEIGHT
/// PORT TARGET" for SRV and "MNAME RNAME SERIAL" for SOA (the timers are the zone's, the
/// same in every answer). Other types, and rdata that does not read as its type, in the
/// generic form of RFC 3597 §5 (`\# LENGTH HEX`).
fn render_rdata(out: &mut String, rtype: u16, rdata: &[u8]) {
    use crate::name::{Rendered, split_name};
    use crate::wire::rtype;
    let u16_at = |b: &[u8]| -> Option<u16> { Some(u16::from_be_bytes(*b.first_chunk()?)) };
    let text = match rtype {
        rtype::A => <[u8; 4]>::try_from(rdata)
            .ok()
            .map(|a| std::net::Ipv4Addr::from(a).to_string()),
        rtype::AAAA => <[u8; 16]>::try_from(rdata)
            .ok()
            .map(|a| std::net::Ipv6Addr::from(a).to_string()),
        rtype::NS | rtype::CNAME | PTR => match split_name(rdata) {
            Some((name, [])) => Some(Rendered(name).to_string()),
            _ => None,
        },
        rtype::MX => rdata.split_at_checked(2).and_then(|(pref, rest)| {
            match (u16_at(pref), split_name(rest)) {
                (Some(pref), Some((name, []))) => Some(format!("{pref} {}", Rendered(name))),
                _ => None,
            }
        }),
        rtype::SRV => rdata.split_at_checked(6).and_then(|(numbers, rest)| {
            let (p, w, port) = (
                u16_at(numbers)?,
                u16_at(&numbers[2..])?,
                u16_at(&numbers[4..])?,
            );
            match split_name(rest) {
                Some((target, [])) => Some(format!("{p} {w} {port} {}", Rendered(target))),
                _ => None,
            }
        }),
        rtype::SOA => split_name(rdata).and_then(|(mname, rest)| {
            let (rname, timers) = split_name(rest)?;
            // Serial, refresh, retry, expire, minimum: five 32-bit numbers.
            let serial = timers.first_chunk::<4>().filter(|_| timers.len() == 20)?;
            Some(format!(
                "{} {} {}",
                Rendered(mname),
                Rendered(rname),
                u32::from_be_bytes(*serial)
            ))
        }),
        rtype::TXT => txt_strings(rdata).map(|strings| {
            strings
                .iter()
                .map(|s| String::from_utf8_lossy(s))
                .collect::<Vec<_>>()
                .join(" ")
        }),
        _ => None,
    };
    match text {
        Some(text) => out.push_str(&text),
        None => {
            let _ = write!(out, "\\# {}", rdata.len());
            if !rdata.is_empty() {
                out.push(' ');
                for b in rdata {
                    let _ = write!(out, "{b:02x}");
                }
            }
        }
    }
}

/// PTR (RFC 1035 §3.3.12): not served from the zone today, but a name like NS and CNAME.
const PTR: u16 = 12;

/// The character-strings of TXT rdata (RFC 1035 §3.3.14), or None when a length runs past
/// the end.
fn txt_strings(mut rdata: &[u8]) -> Option<Vec<&[u8]>> {
    let mut strings = Vec::new();
    while let Some((&len, rest)) = rdata.split_first() {
        let (s, after) = rest.split_at_checked(usize::from(len))?;
        strings.push(s);
        rdata = after;
    }
    Some(strings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(qname: &[u8]) -> Entry {
        let mut e = Entry {
            time_ms: 1_763_798_400_123,
            client: "127.0.0.1".parse().unwrap(),
            ecs: Some(("81.2.69.0".parse().unwrap(), 24)),
            scope: Some(18),
            qname: [0; 255],
            qname_len: qname.len() as u8,
            qtype: 1,
            rcode: 0,
            answers: Records::EMPTY,
            zone: "uk",
            transport: "udp",
        };
        e.qname[..qname.len()].copy_from_slice(qname);
        e.answers.push_address("192.0.2.1".parse().unwrap());
        e.answers.push_address("2001:db8::1".parse().unwrap());
        e
    }

    #[test]
    fn renders_json_lines() {
        let mut line = String::new();
        render(&mut line, &entry(b"\x01\x30\x04pool\x03ntp\x03org\x00"));
        assert_eq!(
            line,
            "{\"ts\":1763798400.123,\"client\":\"127.0.0.1\",\"ecs\":\"81.2.69.0/24\",\"scope\":18,\
             \"qname\":\"0.pool.ntp.org.\",\"qtype\":\"A\",\"rcode\":\"NOERROR\",\"answers\":[\"192.0.2.1\",\"2001:db8::1\"],\"zone\":\"uk\",\"transport\":\"udp\"}\n"
        );
        let mut odd = String::new();
        render(&mut odd, &entry(b"\x03a\"b\x00"));
        let v: serde_json::Value = serde_json::from_str(&odd).unwrap();
        assert_eq!(v["qname"], "a\"b.");
    }

    #[test]
    fn renders_each_record_type_as_text() {
        let text = |rtype: u16, rdata: &[u8]| {
            let mut out = String::new();
            render_rdata(&mut out, rtype, rdata);
            out
        };
        let name = |t: &str| crate::name::from_text(t).unwrap();
        assert_eq!(text(1, &[192, 0, 2, 53]), "192.0.2.53");
        let v6: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(text(28, &v6.octets()), "2001:db8::1");
        assert_eq!(text(2, &name("ns1.pool.test")), "ns1.pool.test.");
        assert_eq!(text(5, &name("www.example.net")), "www.example.net.");
        assert_eq!(
            text(15, &[&[0, 10][..], &name("mx.example")].concat()),
            "10 mx.example."
        );
        assert_eq!(text(15, &[0, 0, 0]), "0 .");
        let srv = [&[0, 1, 0, 2, 0, 123][..], &name("pool.test")].concat();
        assert_eq!(text(33, &srv), "1 2 123 pool.test.");
        let mut soa = [name("ns1.pool.test"), name("hostmaster.pool.test")].concat();
        for n in [2_026_112_201u32, 5400, 5400, 1_209_600, 600] {
            soa.extend(n.to_be_bytes());
        }
        assert_eq!(
            text(6, &soa),
            "ns1.pool.test. hostmaster.pool.test. 2026112201"
        );
        assert_eq!(text(16, b"\x05hello"), "hello");
        assert_eq!(text(16, b"\x05hello\x00\x03a\"b"), "hello  a\"b");
        // Unknown types and rdata that does not read as its type: RFC 3597 §5.
        assert_eq!(text(99, &[1, 0xab]), "\\# 2 01ab");
        assert_eq!(text(1, &[1, 2, 3]), "\\# 3 010203");
        assert_eq!(text(16, b"\x09short"), "\\# 6 0973686f7274");
        assert_eq!(
            text(6, &soa[..soa.len() - 1]).split(' ').next(),
            Some("\\#")
        );
        assert_eq!(text(0, &[]), "\\# 0");
    }

    #[test]
    fn keeps_sixteen_aaaa_records_and_counts_what_does_not_fit() {
        let mut e = entry(b"\x00");
        e.answers = Records::EMPTY;
        let v6: Vec<IpAddr> = (1..=16)
            .map(|i| format!("2001:db8::{i:x}").parse().unwrap())
            .collect();
        for &ip in &v6 {
            e.answers.push_address(ip);
        }
        assert_eq!(e.answers.iter().count(), 16);
        assert_eq!(e.answers.omitted, 0);
        // A TXT record larger than what is left, and then one that would fit: both out.
        e.answers.push(16, &[200; 201]);
        e.answers.push(1, &[192, 0, 2, 1]);
        assert_eq!(e.answers.omitted, 2);
        let mut line = String::new();
        render(&mut line, &e);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let logged: Vec<IpAddr> = v["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(logged, v6);
        assert_eq!(v["omitted"], 2);
        assert_eq!(v["scope"], 18);
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

    /// Issue 11: a full disk (here /dev/full, where every write fails with ENOSPC) drops
    /// and counts every entry; the query path's `record` never waits, and the writer
    /// neither dies nor hangs.
    #[test]
    fn a_full_disk_drops_and_counts_every_entry_and_never_blocks() {
        let (log, writer) = QueryLog::start(Path::new("/dev/full"), 1 << 20).unwrap();
        let started = std::time::Instant::now();
        let mut recorded = 0;
        for round in 0..20 {
            for _ in 0..500 {
                log.record(entry(b"\x01\x30\x04pool\x03ntp\x03org\x00"));
                recorded += 1;
            }
            if round % 5 == 0 {
                std::thread::sleep(Duration::from_millis(30));
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "recording took {:?}",
            started.elapsed()
        );
        log.close();
        writer.join().expect("the writer ends cleanly");
        assert_eq!(log.written.load(Ordering::Relaxed), 0);
        assert_eq!(log.dropped.load(Ordering::Relaxed), recorded);
    }
}
