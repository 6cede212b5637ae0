//! The UDP path allocates nothing per query (DESIGN §6): a counting allocator watches the
//! thread that runs a real UDP worker over thousands of queries of every common shape, with
//! the query log off and on.

// A global allocator cannot be written without unsafe; it only forwards to System.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::UdpSocket;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pooldns::metrics::{Counters, Metrics};
use pooldns::querylog::QueryLog;
use pooldns::reload::{Reloader, Sources};
use pooldns::server::udp::{BATCH, Worker};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    // Per thread: the tests run side by side, each counting its own worker.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn query(id: u16, name: &str, qtype: u16, opt: &[u8]) -> Vec<u8> {
    let mut q = vec![
        (id >> 8) as u8,
        id as u8,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(!opt.is_empty()),
    ];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q.extend_from_slice(opt);
    q
}

#[test]
fn udp_worker_allocates_nothing_per_query() {
    let (answered, allocations) = serve_every_shape(Arc::default(), None);
    assert!(answered >= 195 * BATCH * 9 / 11, "only {answered} answers");
    assert_eq!(
        allocations, 0,
        "{allocations} heap allocations over {answered} queries"
    );
}

/// With the query log on, the worker hands each answer's records (static ones too) to the
/// log's ring as plain data; the writer thread, not counted here, renders them.
#[test]
fn udp_worker_with_the_query_log_allocates_nothing_per_query() {
    let dir = tempfile::tempdir().unwrap();
    let (log, writer) = QueryLog::start(&dir.path().join("queries.log"), 1 << 30).unwrap();
    let metrics = Metrics::with_query_log(Some(Arc::clone(&log)));
    let (answered, allocations) = serve_every_shape(metrics.register(), None);
    log.close();
    writer.join().unwrap();
    assert!(answered >= 195 * BATCH * 9 / 11, "only {answered} answers");
    assert_eq!(
        allocations, 0,
        "{allocations} heap allocations over {answered} queries"
    );
    let logged = std::fs::read_to_string(dir.path().join("queries.log")).unwrap();
    let dropped = log.dropped.load(std::sync::atomic::Ordering::Relaxed);
    // Every answer (the garbage gets none) is logged, or dropped and counted.
    assert_eq!(logged.lines().count() as u64 + dropped, answered as u64);
    // The apex TXT, a static record, is logged with its text.
    let txt = "\"qtype\":\"TXT\",\"rcode\":\"NOERROR\",\"answers\":[\"";
    assert!(logged.contains(txt), "{logged:.2000}");
}

/// With response rate limiting on (at a rate nothing here reaches), every answer is
/// accounted in the shared table: atomics in memory allocated when the worker starts.
#[test]
fn udp_worker_with_rate_limiting_allocates_nothing_per_query() {
    let (answered, allocations) = serve_every_shape(
        Arc::default(),
        Some("[rrl]\nresponses_per_second = 1000000\n"),
    );
    assert!(answered >= 195 * BATCH * 9 / 11, "only {answered} answers");
    assert_eq!(
        allocations, 0,
        "{allocations} heap allocations over {answered} queries"
    );
}

/// With the zone signed and the DO bit on every EDNS query, answers carry their RRSIGs,
/// pool answers their CNAME and signed variant, NXDOMAIN and NODATA their NSEC records:
/// all made when the table was built, only looked up here.
#[test]
fn udp_worker_with_signed_answers_allocates_nothing_per_query() {
    let keys = tempfile::tempdir().unwrap();
    for ksk in [true, false] {
        pooldns::dnssec::key::generate("pool.ntp.org", 13, ksk, keys.path(), 0).unwrap();
    }
    let extra = format!("[dnssec]\nkeys = \"{}\"\n", keys.path().display());
    let (answered, allocations) = serve_every_shape(Arc::default(), Some(&extra));
    assert!(answered >= 195 * BATCH * 9 / 11, "only {answered} answers");
    assert_eq!(
        allocations, 0,
        "{allocations} heap allocations over {answered} signed queries"
    );
}

/// Runs a UDP worker with `counters` over 200 batches of every query shape, with `extra`
/// appended to the bundled zone configuration; returns the answers sent and the
/// allocations its thread made after the first 5 batches. With `[dnssec]` in `extra`,
/// every EDNS query has the DO bit.
fn serve_every_shape(counters: Arc<Counters>, extra: Option<&str>) -> (usize, usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bundled = root.join("zones/pool.ntp.org.toml");
    let dir = tempfile::tempdir().unwrap();
    let config = match extra {
        None => bundled,
        Some(extra) => {
            // The GeoIP path is given below, so the copy may live elsewhere.
            let path = dir.path().join("pool.ntp.org.toml");
            let text = std::fs::read_to_string(&bundled).unwrap();
            std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
            path
        }
    };
    let reloader = Reloader::load(Sources {
        config,
        feed: root.join("data/servers.json"),
        geoip: Some(root.join("data/dbip-country.mmdb")),
        ..Default::default()
    })
    .expect("load");
    let signed = extra.is_some_and(|e| e.contains("[dnssec]"));
    assert_eq!(
        reloader.table().load().config.rrl.is_on(),
        extra.is_some_and(|e| e.contains("[rrl]"))
    );
    assert_eq!(reloader.table().load().signed.is_some(), signed);
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    // The leader of a steering group of two, so that steering is counted too (it looks at
    // the clocks every 250 ms; the rounds below take longer than that).
    let group = std::sync::Arc::new(pooldns::server::steer::Group::new(2));
    let mut worker = Worker::new(server, reloader.table(), counters)
        .unwrap()
        .in_group(&group, 0);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();

    // Byte 7 holds the DO bit.
    let d = if signed { 0x80 } else { 0 };
    let plain_opt = [0, 0, 41, 0x04, 0xd0, 0, 0, d, 0, 0, 0];
    let ecs_opt = [
        0, 0, 41, 0x04, 0xd0, 0, 0, d, 0, 0, 11, 0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69,
    ];
    let cookie_opt = [
        0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8,
    ];
    let nsid_opt = [0, 0, 41, 0x04, 0xd0, 0, 0, d, 0, 0, 4, 0, 3, 0, 0];
    let shapes: Vec<Vec<u8>> = vec![
        query(1, "0.pool.ntp.org", 1, &[]),
        query(2, "pool.ntp.org", 1, &ecs_opt),
        query(3, "2.pool.ntp.org", 28, &plain_opt),
        query(4, "de.pool.ntp.org", 1, &cookie_opt),
        query(5, "1.europe.pool.ntp.org", 1, &nsid_opt),
        query(6, "nothing.pool.ntp.org", 1, &plain_opt),
        query(7, "pool.ntp.org", 16, &[]),
        query(8, "example.com", 1, &plain_opt),
        query(9, "0.debian.pool.ntp.org", 1, &ecs_opt),
        query(10, "version.bind", 16, &[])
            .iter()
            .enumerate()
            .map(|(i, &b)| if i == 12 + 14 { 3 } else { b })
            .collect(),
        vec![0xff; 40], // garbage: FORMERR or no reply
    ];

    let mut answered = 0;
    let mut signed_answers = 0usize;
    for round in 0..200 {
        let batch: Vec<&Vec<u8>> = (0..BATCH)
            .map(|i| &shapes[(round + i) % shapes.len()])
            .collect();
        for q in &batch {
            client.send_to(q, addr).unwrap();
        }
        // Let the whole batch arrive so one recvmmsg sees it.
        std::thread::sleep(Duration::from_millis(2));
        let counting = round >= 5; // the first rounds warm up thread-locals
        COUNTING.with(|c| c.set(counting));
        let mut sent = 0;
        while sent < batch.len() - batch.iter().filter(|q| q[0] == 0xff).count() {
            sent += worker.serve_batch().expect("serve");
        }
        COUNTING.with(|c| c.set(false));
        let mut buf = [0u8; 4096];
        for _ in 0..sent {
            let n = client.recv(&mut buf).expect("answer");
            if signed {
                let m = hickory_proto::op::Message::from_vec(&buf[..n]).expect("parses");
                let rrsig = hickory_proto::rr::RecordType::RRSIG;
                let records = m.answers.iter().chain(&m.authorities);
                if records.into_iter().any(|r| r.record_type() == rrsig) {
                    signed_answers += 1;
                }
            }
        }
        answered += sent;
    }
    if signed {
        // The DO=1 shapes (apex, numbered, country, continent and vendor names, NXDOMAIN)
        // were answered with their signatures: the signed path is the one counted.
        assert!(
            signed_answers >= 195 * BATCH * 6 / 11,
            "only {signed_answers} of {answered} answers signed"
        );
    }
    (answered, ALLOCATIONS.with(Cell::get))
}
