//! DNSSEC keys against BIND's own tools (Debian's bind9-utils, which CI installs): keys
//! made by `pooldns keygen` give the DS that `dnssec-dsfromkey` computes and sign a zone
//! that `dnssec-signzone` and `dnssec-verify` accept; keys made by `dnssec-keygen` give
//! `pooldns ds` the DS that BIND computes.

use std::path::Path;
use std::process::{Command, Output};

const KEYGEN: &str = "/usr/bin/dnssec-keygen";
const DSFROMKEY: &str = "/usr/bin/dnssec-dsfromkey";
const SIGNZONE: &str = "/usr/bin/dnssec-signzone";
const VERIFY: &str = "/usr/bin/dnssec-verify";

/// Whether BIND's tools are here; with CI set, they must be.
fn bind_tools() -> bool {
    crate::harness::installed(
        &[KEYGEN, DSFROMKEY, SIGNZONE, VERIFY],
        "bind9-utils",
        "dnssec",
    )
}

fn run(program: &str, args: &[&str], dir: &Path) -> Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn pooldns(args: &[&str], dir: &Path) -> String {
    String::from_utf8(run(env!("CARGO_BIN_EXE_pooldns"), args, dir).stdout).expect("utf-8")
}

/// The DS lines of BIND's dnssec-dsfromkey -2 for every .key file in `dir` whose key has
/// flags `flags`, sorted.
fn bind_ds(dir: &Path, flags: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.ends_with(".key") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.contains(&format!("DNSKEY {flags} ")) {
            continue;
        }
        let out = run(DSFROMKEY, &["-2", &name], dir);
        lines.extend(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    lines.sort();
    lines
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn keys_made_by_pooldns_keygen_work_in_bind_s_tools() {
    if !bind_tools() {
        return;
    }
    for algorithm in ["13", "15"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let ksk = pooldns(
            &["keygen", "--dir", d, "--algorithm", algorithm, "--ksk"],
            dir.path(),
        );
        let zsk = pooldns(
            &["keygen", "--dir", d, "--algorithm", algorithm],
            dir.path(),
        );
        assert!(ksk.trim().ends_with(".key") && zsk.trim().ends_with(".key"));
        // The DS of the KSK only, as BIND computes it.
        let ours = pooldns(&["ds", "--dir", d], dir.path());
        assert_eq!(
            sorted_lines(&ours),
            bind_ds(dir.path(), "257"),
            "alg {algorithm}"
        );
        assert_eq!(ours.lines().count(), 1);

        // BIND signs a zone with the two keys and verifies it: it read our .private files.
        let mut zone = String::from(
            "pool.ntp.org. 3600 IN SOA ns1.pool.ntp.org. hostmaster.ntp.org. 1 3600 600 86400 60\n\
             pool.ntp.org. 3600 IN NS ns1.pool.ntp.org.\n\
             ns1.pool.ntp.org. 3600 IN A 192.0.2.1\n",
        );
        for key in [&ksk, &zsk] {
            zone.push_str(&std::fs::read_to_string(key.trim()).unwrap());
        }
        std::fs::write(dir.path().join("zone"), zone).unwrap();
        run(
            SIGNZONE,
            &["-o", "pool.ntp.org", "-K", ".", "-f", "zone.signed", "zone"],
            dir.path(),
        );
        run(VERIFY, &["-o", "pool.ntp.org", "zone.signed"], dir.path());
    }
}

#[test]
fn pooldns_ds_agrees_with_bind_on_keys_made_by_dnssec_keygen() {
    if !bind_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    run(
        KEYGEN,
        &["-q", "-a", "ECDSAP256SHA256", "-f", "KSK", "pool.ntp.org"],
        dir.path(),
    );
    run(
        KEYGEN,
        &["-q", "-a", "ECDSAP256SHA256", "pool.ntp.org"],
        dir.path(),
    );
    run(
        KEYGEN,
        &["-q", "-a", "ED25519", "-f", "KSK", "pool.ntp.org"],
        dir.path(),
    );
    let ours = pooldns(&["ds", "--dir", d], dir.path());
    assert_eq!(sorted_lines(&ours), bind_ds(dir.path(), "257"));
    assert_eq!(ours.lines().count(), 2);

    // A combined key alone (a ZSK's flags, no KSK): its DS is printed.
    let alone = tempfile::tempdir().unwrap();
    let a = alone.path().to_str().unwrap();
    run(
        KEYGEN,
        &["-q", "-a", "ED25519", "pool.ntp.org"],
        alone.path(),
    );
    let ours = pooldns(&["ds", "--dir", a], alone.path());
    assert_eq!(sorted_lines(&ours), bind_ds(alone.path(), "256"));
}

#[test]
fn a_damaged_key_directory_is_refused_by_file_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pooldns"))
        .args(["ds", "--dir", d])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no key files"), "{err}");

    let key = pooldns(&["keygen", "--dir", d, "--ksk"], dir.path());
    let private = key.trim().replace(".key", ".private");
    let text = std::fs::read_to_string(&private).unwrap();
    std::fs::write(&private, text.replace("PrivateKey: ", "PrivateKey: AAAA")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pooldns"))
        .args(["ds", "--dir", d])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".private"), "{err}");
}

/// A zone signed by pooldns' signer and NSEC chain, written out with every record in the
/// generic RFC 3597 form, passes BIND's dnssec-verify: canonical form, RRSIG fields, key
/// tags, the NSEC chain and its type bitmaps all agree with BIND's.
#[test]
fn a_zone_signed_by_pooldns_passes_dnssec_verify() {
    use pooldns::dnssec::key::{self, Key};
    use pooldns::dnssec::sign::{RrSet, Validity, nsec_chain, rrsig_rdata};
    if !bind_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let zone = "pool.ntp.org";
    let ksk = Key::load(
        &key::generate(zone, 13, true, dir.path(), now).unwrap(),
        zone,
    )
    .unwrap();
    let zsk = Key::load(
        &key::generate(zone, 13, false, dir.path(), now).unwrap(),
        zone,
    )
    .unwrap();
    let name = |n: &str| pooldns::name::from_text(n).unwrap();
    let apex = name(zone);
    let mut soa = name("ns1.pool.ntp.org");
    soa.extend(name("hostmaster.ntp.org"));
    for v in [1u32, 3600, 600, 86400, 60] {
        soa.extend(v.to_be_bytes());
    }
    /// Owner, type, TTL, records.
    type Set = (Vec<u8>, u16, u32, Vec<Vec<u8>>);
    let mut sets: Vec<Set> = vec![
        (apex.clone(), 6, 3600, vec![soa]),
        (apex.clone(), 2, 3600, vec![name("ns1.pool.ntp.org")]),
        (
            apex.clone(),
            1,
            150,
            vec![vec![192, 0, 2, 1], vec![192, 0, 2, 2]],
        ),
        (
            apex.clone(),
            48,
            3600,
            vec![ksk.dnskey_rdata(), zsk.dnskey_rdata()],
        ),
        (name("ns1.pool.ntp.org"), 1, 3600, vec![vec![192, 0, 2, 53]]),
        (name("0.pool.ntp.org"), 1, 150, vec![vec![192, 0, 2, 3]]),
        (name("de.pool.ntp.org"), 1, 150, vec![vec![192, 0, 2, 4]]),
        (
            name("de.pool.ntp.org"),
            28,
            150,
            vec![vec![0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]],
        ),
        (
            name("_status.pool.ntp.org"),
            16,
            0,
            vec![b"\x02ok".to_vec()],
        ),
    ];
    let mut owners: Vec<(Vec<u8>, Vec<u16>)> = Vec::new();
    for (owner, t, _, _) in &sets {
        match owners.iter_mut().find(|(o, _)| o == owner) {
            Some((_, types)) => types.push(*t),
            None => owners.push((owner.clone(), vec![*t])),
        }
    }
    for (owner, rdata) in nsec_chain(&owners) {
        sets.push((owner, 47, 60, vec![rdata]));
    }
    let validity = Validity {
        inception: now - 3600,
        expiration: now + 14 * 86400,
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let text_name = |w: &[u8]| {
        let mut out = String::new();
        let mut i = 0;
        while w[i] != 0 {
            let len = w[i] as usize;
            out.push_str(std::str::from_utf8(&w[i + 1..i + 1 + len]).unwrap());
            out.push('.');
            i += 1 + len;
        }
        out
    };
    let mut text = String::new();
    for (owner, t, ttl, rdatas) in &sets {
        for r in rdatas {
            text.push_str(&format!(
                "{} {ttl} IN TYPE{t} \\# {} {}\n",
                text_name(owner),
                r.len(),
                hex(r)
            ));
        }
        let signer = if *t == 48 { &ksk } else { &zsk };
        let set = RrSet {
            owner,
            rtype: *t,
            class: 1,
            ttl: *ttl,
            rdatas: rdatas.iter().map(Vec::as_slice).collect(),
        };
        let sig = rrsig_rdata(&set, signer, &apex, validity).unwrap();
        text.push_str(&format!(
            "{} {ttl} IN TYPE46 \\# {} {}\n",
            text_name(owner),
            sig.len(),
            hex(&sig)
        ));
    }
    std::fs::write(dir.path().join("zone.signed"), &text).unwrap();
    run(VERIFY, &["-o", zone, "zone.signed"], dir.path());

    // One address changed after signing: BIND must find the bad signature.
    assert!(text.contains("c0000203"));
    std::fs::write(
        dir.path().join("tampered"),
        text.replace("c0000203", "c0000209"),
    )
    .unwrap();
    let out = Command::new(VERIFY)
        .args(["-o", zone, "tampered"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "dnssec-verify accepted a tampered zone"
    );
}

// ---------------------------------------------------------------------------------------
// Signed answers from the real server

/// Servers of the signed test zone: the fairness tests' skewed set in `de` (IPv4), a few
/// in `nl`, and IPv6 servers in `de`.
use crate::fairness::SKEWED as SIGNED_DE;

fn signed_feed() -> String {
    use crate::harness::{feed_json, s};
    let mut servers: Vec<_> = SIGNED_DE
        .iter()
        .enumerate()
        .map(|(i, &(ip, w))| s(i as u64 + 1, ip, w, "de"))
        .collect();
    for (i, ip) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .iter()
        .enumerate()
    {
        servers.push(s(100 + i as u64, ip, 10_000, "nl"));
    }
    for (i, ip) in [
        "2001:db8::1",
        "2001:db8::2",
        "2001:db8::3",
        "2001:db8::4",
        "2001:db8::5",
    ]
    .iter()
    .enumerate()
    {
        servers.push(s(200 + i as u64, ip, 10_000, "de"));
    }
    feed_json(&servers)
}

/// A DO=1 question for NAME (relative to pool.test; "@" the apex) of `rtype`, with a client
/// subnet `ecs`/24 when given, and the RD bit when it goes to a resolver.
fn do_query(
    name: &str,
    rtype: hickory_proto::rr::RecordType,
    ecs: Option<&str>,
    recursion: bool,
) -> hickory_proto::op::Message {
    let q = crate::harness::query(name, rtype);
    let mut q = match ecs {
        Some(addr) => crate::harness::with_ecs(q, addr, 24),
        None => crate::harness::with_edns(q, 1232),
    };
    q.edns.as_mut().expect("edns").set_dnssec_ok(true);
    q.metadata.recursion_desired = recursion;
    q
}

/// Sends `q` to `to` and waits `wait` for the answer with its id; `tries` sends at most.
async fn exchange(
    socket: &tokio::net::UdpSocket,
    to: std::net::SocketAddr,
    q: &hickory_proto::op::Message,
    wait: std::time::Duration,
    tries: usize,
) -> Option<hickory_proto::op::Message> {
    let bytes = q.to_vec().ok()?;
    let mut buf = vec![0u8; 4096];
    for _ in 0..tries {
        socket.send_to(&bytes, to).await.ok()?;
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok(len)) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            if let Ok(m) = hickory_proto::op::Message::from_vec(&buf[..len]) {
                if m.metadata.id == q.metadata.id {
                    return Some(m);
                }
            }
        }
    }
    None
}

/// The harness server with `config`, serving [`signed_feed`].
async fn start_signed(config: &str) -> crate::harness::TestServer {
    crate::harness::TestServer::start_with(
        config,
        &signed_feed(),
        pooldns::server::ServerOptions::default(),
    )
    .await
}

/// Whether delv and BIND's tools are here; with CI set, they must be.
fn delv_present() -> bool {
    bind_tools() && crate::harness::installed(&["/usr/bin/delv"], "bind9-dnsutils", "dnssec")
}

/// A KSK and a ZSK (algorithm 13) in `dir`; the harness configuration signed with them;
/// and delv's trust anchor for the zone.
fn signed_setup(dir: &Path) -> (String, String) {
    let (config, anchor, _) = signed_setup_with_dnskey(dir);
    (config, anchor)
}

/// [`signed_setup`], and the KSK's DNSKEY record in zone-file syntax.
fn signed_setup_with_dnskey(dir: &Path) -> (String, String, String) {
    signed_setup_of(dir, 13)
}

/// [`signed_setup_with_dnskey`] with keys of `algorithm`.
fn signed_setup_of(dir: &Path, algorithm: u8) -> (String, String, String) {
    use pooldns::dnssec::key;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ksk = key::generate("pool.test", algorithm, true, dir, now).unwrap();
    key::generate("pool.test", algorithm, false, dir, now).unwrap();
    let config = format!(
        "{}\n[dnssec]\nkeys = \"{}\"\n",
        crate::harness::CONFIG,
        dir.display()
    );
    let text = std::fs::read_to_string(ksk).unwrap();
    let line = text.lines().find(|l| l.contains("DNSKEY 257")).unwrap();
    let (anchor, dnskey) = anchors_of("pool.test.", line);
    (config, anchor, dnskey)
}

/// From a KSK's DNSKEY line (a `.key` file's, its key possibly split by spaces): delv's
/// trust-anchors file for `zone` and the record in zone-file syntax, for Unbound and kresd.
fn anchors_of(zone: &str, dnskey_line: &str) -> (String, String) {
    let fields: Vec<&str> = dnskey_line.split_whitespace().collect();
    let at = fields
        .iter()
        .position(|f| *f == "DNSKEY")
        .expect("a DNSKEY");
    let (flags, protocol, algorithm) = (fields[at + 1], fields[at + 2], fields[at + 3]);
    let key = fields[at + 4..].concat();
    (
        format!(
            "trust-anchors {{\n {zone} static-key {flags} {protocol} {algorithm} \"{key}\";\n}};\n"
        ),
        format!("{zone} DNSKEY {flags} {protocol} {algorithm} {key}"),
    )
}

/// delv's verdict on NAME TYPE asked of `server` with `anchors`: its output.
fn delv(server: std::net::SocketAddr, anchors: &Path, name: &str, rtype: &str) -> String {
    let out = Command::new("/usr/bin/delv")
        .args([
            &format!("@{}", server.ip()),
            "-p",
            &server.port().to_string(),
            "-a",
            anchors.to_str().unwrap(),
            "+root=pool.test",
            name,
            rtype,
        ])
        .output()
        .expect("delv");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delv_validates_every_kind_of_answer_and_rejects_a_tampered_one() {
    if !delv_present() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let (config, anchor) = signed_setup(keys.path());
    let anchors = keys.path().join("anchors");
    std::fs::write(&anchors, anchor).unwrap();
    let server = start_signed(&config).await;
    let addr = server.addr;
    let cases = [
        ("pool.test", "SOA", "fully validated"),
        ("pool.test", "NS", "fully validated"),
        ("pool.test", "DNSKEY", "fully validated"),
        ("pool.test", "TXT", "fully validated"),
        ("pool.test", "A", "fully validated"),
        ("0.pool.test", "A", "fully validated"),
        ("2.pool.test", "AAAA", "fully validated"),
        ("de.pool.test", "A", "fully validated"),
        ("1.de.pool.test", "A", "fully validated"),
        ("europe.pool.test", "A", "fully validated"),
        ("0.debian.pool.test", "A", "fully validated"),
        ("ns1.pool.test", "A", "fully validated"),
        ("www.pool.test", "CNAME", "fully validated"),
        (
            "nothing.pool.test",
            "A",
            "negative response, fully validated",
        ),
        (
            "x.y.de.pool.test",
            "A",
            "negative response, fully validated",
        ),
        ("ns1.pool.test", "TXT", "negative response, fully validated"),
        (
            "_status.pool.test",
            "TXT",
            "negative response, fully validated",
        ),
        ("_src.pool.test", "A", "negative response, fully validated"),
        ("0.de._src.pool.test", "A", "fully validated"),
        ("0.pool.test", "AAAA", "fully validated"),
    ];
    let results = tokio::task::spawn_blocking(move || {
        cases
            .iter()
            .map(|&(name, rtype, want)| (name, rtype, want, delv(addr, &anchors, name, rtype)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (name, rtype, want, out) in results {
        assert!(out.contains(want), "{name} {rtype}: {out}");
    }

    // A proxy that changes the last byte of every 192.0.2.x address in the answers.
    let proxy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    proxy
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = stop.clone();
    let relay = std::thread::spawn(move || {
        let upstream = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        upstream
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 4096];
        while !stopper.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((n, client)) = proxy.recv_from(&mut buf) else {
                continue;
            };
            upstream.send_to(&buf[..n], addr).unwrap();
            let Ok(m) = upstream.recv(&mut buf) else {
                continue;
            };
            let mut reply = buf[..m].to_vec();
            for i in 12..reply.len().saturating_sub(4) {
                // An A record's RDATA: length 4, then 192.0.2.x.
                if reply[i..i + 2] == [0, 4] && reply[i + 2..i + 5] == [192, 0, 2] {
                    reply[i + 5] ^= 0x40;
                }
            }
            proxy.send_to(&reply, client).unwrap();
        }
    });
    let anchors = keys.path().join("anchors");
    let out = tokio::task::spawn_blocking(move || delv(proxy_addr, &anchors, "de.pool.test", "A"))
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    relay.join().unwrap();
    // The CNAME is untouched and validates; the addresses do not.
    assert!(
        out.contains("resolution failed") && out.contains("RRSIG failed to verify"),
        "a tampered answer validated: {out}"
    );
    server.stop().await;
}

/// With DO=1 every server keeps its share: the signed answers of the skewed `de` zone,
/// counted over 20,000 queries, against 4·w/W per server (within 6 standard errors each),
/// and they stay varied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_answers_keep_every_share_and_stay_varied() {
    use crate::harness::addresses;
    use hickory_proto::rr::RecordType;
    let keys = tempfile::tempdir().unwrap();
    let (config, _) = signed_setup(keys.path());
    let server = start_signed(&config).await;
    let n = 20_000;
    let mut tasks = Vec::new();
    for client in 0..8 {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut answers = Vec::new();
            for i in 0..n / 8 {
                let mut q = do_query("de", RecordType::A, None, false);
                q.metadata.id = (client * 10_000 + i) as u16;
                let wait = std::time::Duration::from_secs(2);
                let m = exchange(&socket, addr, &q, wait, 5)
                    .await
                    .expect("an answer");
                let signatures = m
                    .answers
                    .iter()
                    .filter(|r| r.record_type() == RecordType::RRSIG)
                    .count();
                assert_eq!(signatures, 2, "the CNAME's and the addresses' RRSIG");
                answers.push(addresses(&m));
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await.unwrap());
    }
    let total: f64 = SIGNED_DE.iter().map(|&(_, w)| f64::from(w)).sum();
    for &(ip, w) in &SIGNED_DE {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let p = 4.0 * f64::from(w) / total;
        let count = answers.iter().filter(|a| a.contains(&ip)).count() as f64;
        let se = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (count - n as f64 * p).abs() < 6.0 * se,
            "{ip}: {count} of {n}, expected {:.0}",
            n as f64 * p
        );
    }
    for a in &answers {
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert_eq!((a.len(), distinct.len()), (4, 4), "{a:?}");
    }
    let sets: std::collections::BTreeSet<std::collections::BTreeSet<_>> = answers
        .iter()
        .map(|a| a.iter().copied().collect())
        .collect();
    assert!(
        sets.len() > 40,
        "only {} distinct signed answers",
        sets.len()
    );
    server.stop().await;
}

/// Unbound, with the zone's KSK as its trust anchor and its subnet cache sending ECS,
/// marks signed answers authentic (AD) for every kind of name, with and without a client
/// subnet, and for denials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_validates_signed_answers_with_and_without_ecs() {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;
    let keys = tempfile::tempdir().unwrap();
    let (config, _, dnskey) = signed_setup_with_dnskey(keys.path());
    let server = start_signed(&config).await;
    let Some(unbound) = crate::resolver::start_unbound_with(server.addr, Some(&dnskey)) else {
        return;
    };
    let cases: [(&str, RecordType, Option<&str>, ResponseCode); 11] = [
        ("0", RecordType::A, None, ResponseCode::NoError),
        ("2", RecordType::AAAA, None, ResponseCode::NoError),
        (
            "@",
            RecordType::A,
            Some("81.2.69.142"),
            ResponseCode::NoError,
        ),
        ("1", RecordType::A, Some("2.16.0.1"), ResponseCode::NoError),
        ("de", RecordType::A, None, ResponseCode::NoError),
        ("@", RecordType::SOA, None, ResponseCode::NoError),
        ("@", RecordType::NS, None, ResponseCode::NoError),
        ("@", RecordType::TXT, None, ResponseCode::NoError),
        ("nothing", RecordType::A, None, ResponseCode::NXDomain),
        ("ns1", RecordType::TXT, None, ResponseCode::NoError),
        (
            "0",
            RecordType::AAAA,
            Some("81.2.69.142"),
            ResponseCode::NoError,
        ),
    ];
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (name, rtype, ecs, rcode) in cases {
        let q = do_query(name, rtype, ecs, true);
        let wait = std::time::Duration::from_secs(5);
        let m = exchange(&socket, unbound.addr, &q, wait, 3)
            .await
            .expect("Unbound answers");
        assert_eq!(m.metadata.response_code, rcode, "{name} {rtype}: {m:?}");
        assert!(
            m.metadata.authentic_data,
            "{name} {rtype} (ECS {ecs:?}): Unbound did not validate it: {m:?}"
        );
    }
    drop(unbound);
    server.stop().await;
}

/// Ed25519 keys, a ZSK published ahead of its activation (the first step of a pre-publish
/// rollover), and a second instance with the same keys and inputs: every answer validates
/// from either instance, and the DNSKEY RRset holds the waiting key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_a_pre_published_zsk_and_a_second_instance_all_validate() {
    if !delv_present() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let (config, anchor, _) = signed_setup_of(keys.path(), 15);
    // The next ZSK: published now, signing from 2100 on.
    let next = pooldns::dnssec::key::generate("pool.test", 15, false, keys.path(), 0).unwrap();
    let private = next.to_str().unwrap().replace(".key", ".private");
    let text = std::fs::read_to_string(&private).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("Activate:") {
                "Activate: 21000101000000".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&private, text + "\n").unwrap();
    let anchors = keys.path().join("anchors");
    std::fs::write(&anchors, anchor).unwrap();
    let a = start_signed(&config).await;
    let b = start_signed(&config).await;
    let (addr_a, addr_b) = (a.addr, b.addr);
    let results = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for addr in [addr_a, addr_b] {
            for (name, rtype) in [
                ("pool.test", "DNSKEY"),
                ("0.pool.test", "A"),
                ("de.pool.test", "A"),
                ("nothing.pool.test", "A"),
            ] {
                out.push((addr, name, delv(addr, &anchors, name, rtype)));
            }
        }
        out
    })
    .await
    .unwrap();
    for (addr, name, out) in results {
        assert!(out.contains("fully validated"), "{addr} {name}: {out}");
        if name == "pool.test" {
            let dnskeys = out.lines().filter(|l| l.contains("\tDNSKEY\t")).count();
            assert_eq!(dnskeys, 3, "KSK, ZSK and the waiting ZSK: {out}");
            assert!(out.contains("RRSIG\tDNSKEY 15 "), "{out}");
        }
    }
    a.stop().await;
    b.stop().await;
}

/// Knot Resolver (kresd), forwarding the zone to pooldns with the zone's KSK as its trust
/// anchor, marks signed answers authentic (AD), denials included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knot_resolver_validates_signed_answers() {
    use crate::harness::signal_group;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::RecordType;
    use std::os::unix::process::CommandExt;
    const KRESD: &str = "/usr/sbin/kresd";
    if !crate::harness::installed(&[KRESD], "knot-resolver", "dnssec") {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let (config, _, dnskey) = signed_setup_with_dnskey(keys.path());
    let server = start_signed(&config).await;
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let conf = dir.path().join("kresd.conf");
    std::fs::write(
        &conf,
        format!(
            "net.listen('127.0.0.1', {port}, {{ kind = 'dns' }})\n\
             trust_anchors.remove('.')\n\
             trust_anchors.add('{dnskey}')\n\
             policy.add(policy.suffix(policy.FORWARD({{'127.0.0.1@{}'}}), {{todname('pool.test.')}}))\n",
            server.addr.port()
        ),
    )
    .unwrap();
    let mut child = Command::new(KRESD)
        .arg("-n")
        .arg("-c")
        .arg(&conf)
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start kresd");
    let kresd: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ask = async |name: &str, rtype: RecordType| -> Option<Message> {
        // "ecs:NAME" asks NAME with a client subnet.
        let q = match name.strip_prefix("ecs:") {
            Some(name) => do_query(name, rtype, Some("81.2.69.142"), true),
            None => do_query(name, rtype, None, true),
        };
        exchange(&socket, kresd, &q, std::time::Duration::from_secs(3), 1).await
    };
    // Until kresd answers and has the zone's keys (it starts by priming its anchor).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let m = ask("@", RecordType::SOA).await;
        if m.is_some_and(|m| m.metadata.authentic_data) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kresd never validated the SOA"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let cases = [
        ("0", RecordType::A, ResponseCode::NoError),
        ("2", RecordType::AAAA, ResponseCode::NoError),
        ("de", RecordType::A, ResponseCode::NoError),
        ("0.debian", RecordType::A, ResponseCode::NoError),
        ("@", RecordType::NS, ResponseCode::NoError),
        ("nothing", RecordType::A, ResponseCode::NXDomain),
        ("ns1", RecordType::TXT, ResponseCode::NoError),
        ("@", RecordType::TXT, ResponseCode::NoError),
        ("0", RecordType::AAAA, ResponseCode::NoError),
        ("ecs:@", RecordType::A, ResponseCode::NoError),
        ("ecs:1", RecordType::A, ResponseCode::NoError),
    ];
    for (name, rtype, rcode) in cases {
        let m = ask(name, rtype).await.expect("kresd answers");
        assert_eq!(m.metadata.response_code, rcode, "{name} {rtype}: {m:?}");
        assert!(
            m.metadata.authentic_data,
            "{name} {rtype}: not validated: {m:?}"
        );
    }
    signal_group(child.id(), "KILL");
    let _ = child.wait();
    server.stop().await;
}

/// The chain of trust as resolvers meet it on the Internet, in a network namespace the test
/// creates: a test root, `org.` and `ntp.org.` served by NSD (10.99.0.1) and signed by BIND's
/// tools, each delegating with a DS; `pool.ntp.org` delegated to pooldns (10.99.0.2) with the
/// DS `pooldns ds` prints; Unbound (10.99.0.3) with only the test root's key as its trust
/// anchor, resolving from its own root hints. Unbound marks pool answers, denials and the
/// apex authentic, and delv (validating itself from the root key) says "fully validated".
#[test]
fn a_signed_chain_from_a_test_root_validates_in_a_namespace() {
    use crate::netns::{Daemon, Netns};
    const NSD: &str = "/usr/sbin/nsd";
    const UNBOUND: &str = "/usr/sbin/unbound";
    let test = "a_signed_chain_from_a_test_root_validates_in_a_namespace";
    if !bind_tools()
        || !crate::harness::installed(&[NSD], "nsd", test)
        || !crate::harness::installed(&[UNBOUND], "unbound", test)
    {
        return;
    }
    let Some(ns) = Netns::create(&[1, 2, 3]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keygen = |zone: &str| {
        let out = run(
            KEYGEN,
            &["-q", "-a", "ECDSAP256SHA256", "-f", "KSK", zone],
            d,
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let ds_of = |key: &str| {
        String::from_utf8(run(DSFROMKEY, &["-2", &format!("{key}.key")], d).stdout).unwrap()
    };
    let sign = |zone: &str, file: &str, text: String, key: &str| {
        let mut text = text;
        text.push_str(&std::fs::read_to_string(d.join(format!("{key}.key"))).unwrap());
        std::fs::write(d.join(file), text).unwrap();
        run(
            SIGNZONE,
            &[
                "-z",
                "-o",
                zone,
                "-K",
                ".",
                "-f",
                &format!("{file}.signed"),
                file,
            ],
            d,
        );
    };
    let soa = |zone: &str, ns: &str| {
        format!(
            "{zone} 3600 IN SOA {ns} hostmaster.test. 1 3600 600 86400 60\n{zone} 3600 IN NS {ns}\n"
        )
    };

    // pooldns' zone and keys.
    let keys = d.join("pool-keys");
    std::fs::create_dir(&keys).unwrap();
    let k = keys.to_str().unwrap();
    pooldns(&["keygen", "--dir", k, "--ksk"], d);
    pooldns(&["keygen", "--dir", k], d);
    let pool_ds = pooldns(&["ds", "--dir", k], d);
    let geoip = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/dbip-country.mmdb");
    std::fs::write(
        d.join("pool.toml"),
        format!(
            "origin = \"pool.ntp.org\"\n\
             [soa]\nmname = \"ns1.pool.ntp.org\"\nrname = \"hostmaster.pool.ntp.org\"\n\
             [ns]\nnames = [\"ns1.pool.ntp.org\"]\n\
             [[records]]\nname = \"ns1\"\ntype = \"A\"\nvalue = \"10.99.0.2\"\n\
             [dnssec]\nkeys = \"{k}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("feed.json"),
        signed_feed().replace("pool.test", "pool.ntp.org"),
    )
    .unwrap();

    // The parents, signed bottom up: each holds its child's DS.
    let ntp_key = keygen("ntp.org");
    let org_key = keygen("org");
    let root_key = keygen(".");
    sign(
        "ntp.org",
        "ntp.org.zone",
        format!(
            "{}ns.ntp.org. 3600 IN A 10.99.0.1\n\
             pool.ntp.org. 3600 IN NS ns1.pool.ntp.org.\n\
             ns1.pool.ntp.org. 3600 IN A 10.99.0.2\n{pool_ds}",
            soa("ntp.org.", "ns.ntp.org.")
        ),
        &ntp_key,
    );
    sign(
        "org",
        "org.zone",
        format!(
            "{}ns.org. 3600 IN A 10.99.0.1\n\
             ntp.org. 3600 IN NS ns.ntp.org.\nns.ntp.org. 3600 IN A 10.99.0.1\n{}",
            soa("org.", "ns.org."),
            ds_of(&ntp_key)
        ),
        &org_key,
    );
    sign(
        ".",
        "root.zone",
        format!(
            "{}ns. 3600 IN A 10.99.0.1\n\
             org. 3600 IN NS ns.org.\nns.org. 3600 IN A 10.99.0.1\n{}",
            soa(".", "ns."),
            ds_of(&org_key)
        ),
        &root_key,
    );
    let root_dnskey = std::fs::read_to_string(d.join(format!("{root_key}.key")))
        .unwrap()
        .lines()
        .find(|l| l.contains("DNSKEY 257"))
        .unwrap()
        .to_owned();

    let nsd_conf = d.join("nsd.conf");
    std::fs::write(
        &nsd_conf,
        format!(
            "server:\n  ip-address: 10.99.0.1\n  do-ip6: no\n  username: \"\"\n  chroot: \"\"\n  \
             zonesdir: \"{dir}\"\n  database: \"\"\n  pidfile: \"{dir}/nsd.pid\"\n  \
             xfrdfile: \"{dir}/xfrd.state\"\n  xfrdir: \"{dir}\"\n  zonelistfile: \"{dir}/zone.list\"\n  \
             rrl-ratelimit: 0\nremote-control:\n  control-enable: no\n\
             zone:\n  name: \".\"\n  zonefile: \"root.zone.signed\"\n\
             zone:\n  name: \"org\"\n  zonefile: \"org.zone.signed\"\n\
             zone:\n  name: \"ntp.org\"\n  zonefile: \"ntp.org.zone.signed\"\n",
            dir = d.display()
        ),
    )
    .unwrap();
    let spawn = |mut c: Command| Daemon {
        child: c
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start"),
    };
    let mut nsd = ns.command(NSD);
    nsd.args(["-d", "-c"]).arg(&nsd_conf);
    let _nsd = spawn(nsd);
    let mut server = ns.command(env!("CARGO_BIN_EXE_pooldns"));
    server
        .args(["serve", "--config"])
        .arg(d.join("pool.toml"))
        .arg("--feed")
        .arg(d.join("feed.json"))
        .arg("--geoip")
        .arg(&geoip)
        .args([
            "--listen",
            "10.99.0.2:53",
            "--http",
            "none",
            "--state-dir",
            "none",
        ]);
    let _pooldns = spawn(server);
    std::fs::write(
        d.join("root.hints"),
        ". 3600 IN NS ns.\nns. 3600 IN A 10.99.0.1\n",
    )
    .unwrap();
    let unbound_conf = d.join("unbound.conf");
    std::fs::write(
        &unbound_conf,
        format!(
            "server:\n  interface: 10.99.0.3\n  port: 53\n  do-daemonize: no\n  username: \"\"\n  \
             chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  \
             logfile: \"{dir}/unbound.log\"\n  do-ip6: no\n  access-control: 10.0.0.0/8 allow\n  \
             root-hints: \"{dir}/root.hints\"\n  trust-anchor: \"{anchor}\"\n  \
             module-config: \"validator iterator\"\n  qname-minimisation: no\n  \
             val-log-level: 2\nremote-control:\n  control-enable: no\n",
            dir = d.display(),
            anchor = root_dnskey.replace('\t', " ")
        ),
    )
    .unwrap();
    let mut unbound = ns.command(UNBOUND);
    unbound.args(["-d", "-c"]).arg(&unbound_conf);
    let _unbound = spawn(unbound);

    let dig = |name: &str, rtype: &str| {
        let out = ns
            .command("/usr/bin/dig")
            .args(["@10.99.0.3", "+dnssec", "+time=2", "+tries=1", name, rtype])
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Until every server is up and Unbound validates the apex.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = dig("pool.ntp.org", "SOA");
        if out.contains(" ad;") || out.contains(" ad ") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Unbound never validated pool.ntp.org SOA: {out}\n{}",
            std::fs::read_to_string(d.join("unbound.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    for (name, rtype, status) in [
        ("0.pool.ntp.org", "A", "NOERROR"),
        ("2.pool.ntp.org", "AAAA", "NOERROR"),
        ("de.pool.ntp.org", "A", "NOERROR"),
        ("pool.ntp.org", "NS", "NOERROR"),
        ("nothing.pool.ntp.org", "A", "NXDOMAIN"),
        ("ns1.pool.ntp.org", "TXT", "NOERROR"),
    ] {
        let out = dig(name, rtype);
        assert!(
            out.contains(&format!("status: {status}")),
            "{name} {rtype}: {out}"
        );
        let flags = out.lines().find(|l| l.contains(";; flags:")).unwrap_or("");
        assert!(flags.contains(" ad"), "{name} {rtype} not authentic: {out}");
    }
    // delv validates on its own, from the root key, through Unbound.
    std::fs::write(d.join("anchors"), anchors_of(".", &root_dnskey).0).unwrap();
    let out = ns
        .command("/usr/bin/delv")
        .args(["@10.99.0.3", "-a"])
        .arg(d.join("anchors"))
        .args(["0.pool.ntp.org", "A"])
        .output()
        .expect("delv");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("fully validated"), "{text}");

    // DNSViz: probe through Unbound, from the root down, then assess with the root key.
    const DNSVIZ: &str = "/usr/bin/dnsviz";
    if !crate::harness::installed(&[DNSVIZ], "dnsviz", test) {
        return;
    }
    let probe = ns
        .command(DNSVIZ)
        .args(["probe", "-s", "10.99.0.3", "-o"])
        .arg(d.join("probe.json"))
        .args([
            "pool.ntp.org",
            "0.pool.ntp.org",
            "2.pool.ntp.org",
            "de.pool.ntp.org",
            "nothing.pool.ntp.org",
        ])
        .output()
        .expect("dnsviz probe");
    assert!(
        probe.status.success(),
        "dnsviz probe: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    std::fs::write(
        d.join("tk.txt"),
        format!("{}\n", root_dnskey.replace('\t', " ")),
    )
    .unwrap();
    // Debian's dnsviz 0.9.4 checks for pygraphviz.release, which Debian's pygraphviz 1.10
    // no longer has (grok draws nothing): a site hook supplies it.
    let shim = d.join("pyshim");
    std::fs::create_dir(&shim).unwrap();
    std::fs::write(
        shim.join("sitecustomize.py"),
        "import sys, types\ntry:\n    import pygraphviz\n    m = types.ModuleType('pygraphviz.release')\n    \
         m.version = pygraphviz.__version__\n    sys.modules['pygraphviz.release'] = m\n    \
         pygraphviz.release = m\nexcept Exception:\n    pass\n",
    )
    .unwrap();
    let grok = Command::new(DNSVIZ)
        .env("PYTHONPATH", &shim)
        .args(["grok", "-P", "-r"])
        .arg(d.join("probe.json"))
        .arg("-t")
        .arg(d.join("tk.txt"))
        .output()
        .expect("dnsviz grok");
    let report = String::from_utf8_lossy(&grok.stdout).into_owned();
    assert!(
        grok.status.success(),
        "dnsviz grok: {}",
        String::from_utf8_lossy(&grok.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&report).expect("grok JSON");
    let mut problems = Vec::new();
    find_problems(&json, "", &mut problems);
    assert!(problems.is_empty(), "DNSViz found: {problems:#?}");
    for zone in ["org.", "ntp.org.", "pool.ntp.org."] {
        assert_eq!(
            json[zone]["delegation"]["status"], "SECURE",
            "{zone}: {}",
            json[zone]
        );
    }
    for name in ["0.pool.ntp.org.", "2.pool.ntp.org.", "de.pool.ntp.org."] {
        assert_eq!(json[name]["status"], "NOERROR", "{name}: {}", json[name]);
    }
    assert_eq!(json["nothing.pool.ntp.org."]["status"], "NXDOMAIN");

    // Zonemaster's DNSSEC test cases, from the test root's hints.
    const ZONEMASTER: &str = "/usr/bin/zonemaster-cli";
    if !crate::harness::installed(&[ZONEMASTER], "zonemaster-cli", test) {
        return;
    }
    std::fs::write(
        d.join("zm.hints"),
        ". 3600 IN NS ns.\nns. 3600 IN A 10.99.0.1\n",
    )
    .unwrap();
    let zm = ns
        .command(ZONEMASTER)
        .args([
            "--no-ipv6",
            "--level",
            "INFO",
            "--test",
            "dnssec",
            "--raw",
            "--hints",
        ])
        .arg(d.join("zm.hints"))
        .arg("pool.ntp.org")
        .output()
        .expect("zonemaster-cli");
    let report =
        String::from_utf8_lossy(&zm.stdout).into_owned() + &String::from_utf8_lossy(&zm.stderr);
    let bad: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("WARNING") || l.contains("ERROR") || l.contains("CRITICAL"))
        .collect();
    assert!(bad.is_empty(), "Zonemaster: {report}");
    // The test cases ran: the key algorithms were checked and the NSEC chain found.
    assert!(
        report.contains("ALGORITHM_OK") && report.contains("DS10_HAS_NSEC"),
        "Zonemaster ran no DNSSEC test: {report}"
    );
}

/// Every "errors" (and "warnings") entry of a DNSViz grok report, with where it is.
fn find_problems(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "errors" || k == "warnings" {
                    out.push(format!("{at}/{k}: {v}"));
                } else {
                    find_problems(v, &format!("{at}/{k}"), out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                find_problems(v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The numbered split holds for DO=1 answers: under `0`…`3` the signed answers come from the
/// table's four disjoint subsets of the pool, each subset seen whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_numbered_names_keep_the_split() {
    use crate::harness::{addresses, feed_json, s};
    use hickory_proto::rr::RecordType;
    use pooldns::table::{Family, ZoneId};
    use std::collections::BTreeSet;
    let servers: Vec<_> = (0..40u64)
        .map(|i| {
            let ip: &'static str = Box::leak(format!("192.0.2.{}", i + 1).into_boxed_str());
            s(i + 1, ip, 5000 + (i * 2_654_435_761 % 19_501) as u32, "de")
        })
        .collect();
    let keys = tempfile::tempdir().unwrap();
    let (config, _) = signed_setup(keys.path());
    let server = crate::harness::TestServer::start_with(
        &config,
        &feed_json(&servers),
        pooldns::server::ServerOptions::default(),
    )
    .await;
    for _attempt in 0..3 {
        let table = server.table.load_full();
        let sets = &table.zone(ZoneId::Global, Family::V4).numbered;
        assert_eq!(sets.len(), 4, "40 servers are split");
        let split: Vec<BTreeSet<std::net::IpAddr>> = sets
            .iter()
            .map(|s| {
                s.members()
                    .iter()
                    .map(|&m| table.members[m as usize].ip)
                    .collect()
            })
            .collect();
        let mut seen = vec![BTreeSet::new(); 4];
        for (n, seen) in seen.iter_mut().enumerate() {
            for _ in 0..300 {
                let q = do_query(&n.to_string(), RecordType::A, None, false);
                seen.extend(addresses(&server.udp(&q).await));
            }
        }
        if server.table.load().epoch != table.epoch {
            continue; // the split rotated meanwhile
        }
        // The lightest server is in a subset's answers with probability at least 0.13:
        // 300 answers miss it with probability below 1e-18.
        assert_eq!(
            seen, split,
            "signed answers under 0…3 are the table's split"
        );
        server.stop().await;
        return;
    }
    panic!("the split rotated during every attempt");
}
