//! The operator's surface (issue 5): `/metrics` counts every query of a known mix by
//! transport, qtype and rcode, with its geo decision, ECS use, truncation and TCP
//! connection, the feed loads and the answers per server; `/healthz`; `/status` and the last
//! refusal; the status page rendered by a real headless browser (Debian's chromium), with a
//! screenshot kept under `target/test-artifacts/`; `pooldns check` and `pooldns explain` as
//! operators run them; the debug names `_country` (public, ECS-aware) and `_status`
//! (loopback only unless `[identity] status_public`); and `contrib/pooldns.service` (its
//! hardening, flags `serve` knows, and `systemd-analyze verify` where systemd is installed).
//!
//! Servers run in-process with the HTTP side on an ephemeral port; the binary runs with
//! explicit flags only. Counts are exact: each test has its own server and feed, and every
//! counter is bumped before the reply that a test waits for is sent.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use pooldns::reload::{ReloadStatus, Reloader, Sources};
use pooldns::server::{Listeners, SharedTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

// ---------------------------------------------------------------------------------------
// /metrics, /healthz, /status

#[tokio::test]
async fn metrics_count_a_known_query_mix_exactly() {
    let ops = Ops::start(&txt_config(), &small_feed()).await;
    let dns = ops.dns;

    // UDP, no EDNS, from loopback: the global zone (4 IPv4, 2 IPv6 servers).
    for _ in 0..3 {
        let r = udp(dns, &query("@", RecordType::A)).await;
        assert_eq!(sorted(addresses(&r)), ips(&V4_ALL));
    }
    let r = udp(dns, &query("2", RecordType::AAAA)).await;
    assert_eq!(sorted(addresses(&r)), ips(&V6_ALL));
    let r = udp(dns, &query("nothing", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let r = udp(dns, &query("example.com.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    // A client subnet option one address byte short (RFC 7871 §6): FORMERR.
    let raw = raw_udp(dns, &malformed_ecs_query(), Duration::from_secs(2))
        .await
        .expect("FORMERR reply");
    assert_eq!(raw[3] & 0x0f, 1, "rcode of {raw:?}");

    // ECS: a UK subnet (country hit), a Swedish one (no server in se: Europe), a private one
    // (ignored: the loopback source places the client).
    let r = udp(dns, &with_ecs(query("@", RecordType::A), "81.2.69.142", 32)).await;
    assert_eq!(sorted(addresses(&r)), ips(&["192.0.2.1", "192.0.2.2"]));
    assert_eq!(echoed_ecs(&r).map(|e| e.2), Some(31));
    let r = udp(
        dns,
        &with_ecs(query("@", RecordType::A), "89.160.20.112", 28),
    )
    .await;
    assert_eq!(
        sorted(addresses(&r)),
        ips(&["192.0.2.1", "192.0.2.2", "192.0.2.3"])
    );
    assert_eq!(echoed_ecs(&r).map(|e| e.2), Some(28));
    let r = udp(dns, &with_ecs(query("@", RecordType::A), "10.0.0.0", 8)).await;
    assert_eq!(sorted(addresses(&r)), ips(&V4_ALL));
    assert_eq!(echoed_ecs(&r).map(|e| e.2), Some(8));

    // Too big for 512 bytes: TC over UDP, then whole over TCP; then A over TCP.
    let r = udp(dns, &query("big", RecordType::TXT)).await;
    assert!(r.metadata.truncation);
    let r = tcp(dns, &query("big", RecordType::TXT)).await;
    assert!(!r.metadata.truncation && r.answers.len() == 10);
    let r = tcp(dns, &query("@", RecordType::A)).await;
    assert_eq!(sorted(addresses(&r)), ips(&V4_ALL));

    let response = get(ops.http, "/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{response:?}"
    );
    let m = Samples::parse(&response.body);
    let queries: BTreeMap<String, f64> = m
        .family("pooldns_queries_total")
        .map(|(labels, v)| {
            let l = |k: &str| labels.get(k).map_or("-", String::as_str).to_owned();
            (
                format!("{} {} {}", l("transport"), l("qtype"), l("rcode")),
                v,
            )
        })
        .collect();
    let expected: BTreeMap<String, f64> = [
        ("udp A NOERROR", 6.0),
        ("udp AAAA NOERROR", 1.0),
        ("udp A NXDOMAIN", 1.0),
        ("udp A REFUSED", 1.0),
        // A FORMERR answer echoes no question: its qtype is counted as "other".
        ("udp other FORMERR", 1.0),
        ("udp TXT NOERROR", 1.0),
        ("tcp TXT NOERROR", 1.0),
        ("tcp A NOERROR", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(queries, expected);
    assert_eq!(m.get("pooldns_truncated_total", &[]), Some(1.0));
    assert_eq!(m.get("pooldns_dropped_total", &[]), Some(0.0));
    for (zone, n) in [("country", 1.0), ("continent", 1.0), ("global", 6.0)] {
        let got = m.get("pooldns_geo_decisions_total", &[("zone", zone)]);
        assert_eq!(got, Some(n), "geo {zone}");
    }
    for (ecs, n) in [
        ("absent", 9.0),
        ("used", 2.0),
        ("ignored", 1.0),
        ("invalid", 1.0),
    ] {
        let got = m.get("pooldns_ecs_total", &[("ecs", ecs)]);
        assert_eq!(got, Some(n), "ecs {ecs}");
    }
    assert_eq!(m.get("pooldns_tcp_connections_total", &[]), Some(2.0));
    assert_eq!(m.get("pooldns_tcp_evicted_total", &[]), Some(0.0));
    // A handful of queries: one worker takes them all, whatever the number of cores.
    let listen = dns.to_string();
    let steering = |name| m.get(name, &[("listen", listen.as_str())]);
    assert_eq!(steering("pooldns_udp_workers_active"), Some(1.0));
    assert_eq!(steering("pooldns_udp_steering_switches_total"), Some(0.0));
    for input in ["feed", "config", "geoip"] {
        let loads = |result| {
            m.get(
                "pooldns_loads_total",
                &[("input", input), ("result", result)],
            )
        };
        assert_eq!((loads("ok"), loads("refused")), (Some(1.0), Some(0.0)));
        assert_eq!(
            m.get("pooldns_load_failing", &[("input", input)]),
            Some(0.0)
        );
    }
    assert_eq!(
        m.get(
            "pooldns_feed_entries_skipped_total",
            &[("reason", "bad_address")]
        ),
        Some(1.0)
    );
    assert_eq!(m.get("pooldns_soa_serial", &[]), Some(2_026_112_201.0));
    let now = unix_now();
    for input in ["feed", "config", "geoip"] {
        let last_good = m
            .get(
                "pooldns_last_good_load_timestamp_seconds",
                &[("input", input)],
            )
            .unwrap();
        assert!(
            last_good <= now && last_good > now - 60.0,
            "{input} {last_good}"
        );
    }
    let build = m.get("pooldns_table_build_seconds", &[]).unwrap();
    assert!(build > 0.0 && build < 10.0, "{build}");
    assert_eq!(
        m.get(
            "pooldns_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // Eligible servers and net speed per pool zone and family, for every zone with any.
    let per_zone = |name: &str| -> BTreeMap<String, f64> {
        m.family(name)
            .map(|(l, v)| (format!("{} {}", l["zone"], l["family"]), v))
            .collect()
    };
    let zones = [
        "@",
        "europe",
        "north-america",
        "asia",
        "uk",
        "de",
        "us",
        "jp",
    ];
    let counts = [
        [4, 2],
        [3, 1],
        [1, 0],
        [0, 1],
        [2, 0],
        [1, 1],
        [1, 0],
        [0, 1],
    ];
    let speeds = [
        [10_000, 11_000],
        [6_000, 5_000],
        [4_000, 0],
        [0, 6_000],
        [3_000, 0],
        [3_000, 5_000],
        [4_000, 0],
        [0, 6_000],
    ];
    let table_of = |values: &[[u64; 2]]| -> BTreeMap<String, f64> {
        zones
            .iter()
            .zip(values)
            .flat_map(|(z, [v4, v6])| {
                [
                    (format!("{z} v4"), *v4 as f64),
                    (format!("{z} v6"), *v6 as f64),
                ]
            })
            .collect()
    };
    assert_eq!(per_zone("pooldns_eligible_servers"), table_of(&counts));
    assert_eq!(per_zone("pooldns_netspeed_kbits"), table_of(&speeds));

    // Answers per server: every answer of a zone of at most 4 carries all its servers.
    let served: BTreeMap<String, f64> = m
        .family("pooldns_server_answers_total")
        .map(|(l, v)| (l["id"].clone(), v))
        .collect();
    let expected: BTreeMap<String, f64> = [("1", 7.0), ("2", 7.0), ("3", 6.0), ("4", 5.0)]
        .into_iter()
        .chain([("5", 1.0), ("6", 1.0)])
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(served, expected);

    let health = get(ops.http, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    ops.stop().await;
}

#[tokio::test]
async fn healthz_is_503_while_no_server_is_eligible() {
    let feed = feed_json(&[S {
        score: 5.0,
        ..s(1, "192.0.2.1", 1000, "de")
    }]);
    let ops = Ops::start(CONFIG, &feed).await;
    let health = get(ops.http, "/healthz").await;
    assert_eq!(health.status, 503, "{health:?}");
    assert!(health.body.contains("no eligible servers"), "{health:?}");
    ops.stop().await;
}

#[tokio::test]
async fn status_reports_serial_load_times_feed_zones_and_the_last_refusal() {
    let ops = Ops::start(CONFIG, &small_feed()).await;
    let before = unix_now();
    let status = status_json(ops.http).await;
    assert_eq!(status["serial"], 2_026_112_201u32);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    for key in ["table_built", "last_good_load"] {
        let t = status[key].as_f64().unwrap_or_else(|| panic!("{key}"));
        assert!(t <= before && t > before - 60.0, "{key} {t}");
    }
    let feed = &status["feed"];
    assert_eq!(feed["source"], ops.feed_path.display().to_string());
    assert_eq!(
        (feed["entries"].as_u64(), feed["loaded"].as_u64()),
        (Some(7), Some(6))
    );
    let skipped = feed["skipped"][0].as_str().unwrap();
    assert!(
        skipped.ends_with("servers[6] (id 7): ip \"10.0.0\" is not an address"),
        "{skipped}"
    );
    assert_eq!(status["eligible"], serde_json::json!({"v4": 4, "v6": 2}));
    for input in ["feed", "config", "geoip"] {
        let i = &status["inputs"][input];
        assert_eq!((&i["ok"], &i["refused"]), (&1.into(), &0.into()), "{input}");
        assert!(i["error"].is_null(), "{status}");
        let t = i["last_good"].as_f64().unwrap();
        assert!(t <= before && t > before - 60.0, "{input} {t}");
    }
    assert_eq!(
        status["inputs"]["feed"]["source"],
        ops.feed_path.display().to_string()
    );
    let zone = |status: &serde_json::Value, label: &str| -> serde_json::Value {
        status["zones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["zone"] == label)
            .unwrap_or_else(|| panic!("no zone {label}"))
            .clone()
    };
    assert_eq!(
        zone(&status, "@"),
        serde_json::json!({"zone": "@", "eligible_v4": 4, "eligible_v6": 2,
                           "netspeed_v4": 10_000, "netspeed_v6": 11_000})
    );
    assert_eq!(
        zone(&status, "uk"),
        serde_json::json!({"zone": "uk", "eligible_v4": 2, "eligible_v6": 0,
                           "netspeed_v4": 3_000, "netspeed_v6": 0})
    );
    assert_eq!(zone(&status, "se")["eligible_v4"], 0);

    // A feed that is not JSON: refused, named, and the old table serves on.
    ops.replace_feed("<html>not JSON</html>\n");
    ops.wait_refusals(1).await;
    let status = status_json(ops.http).await;
    let feed = &status["inputs"]["feed"];
    assert_eq!((&feed["ok"], &feed["refused"]), (&1.into(), &1.into()));
    assert_eq!(status["serial"], 2_026_112_201u32);
    let reason = feed["error"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&ops.feed_path.display().to_string()),
        "{reason}"
    );
    assert!(reason.contains("not a feed"), "{reason}");
    let when = feed["error"]["time"].as_f64().unwrap();
    assert!(when >= before - 1.0 && when <= unix_now() + 1.0, "{when}");

    // A feed that would drop more than half of the servers: refused, and now the reason.
    ops.replace_feed(&feed_json(&[s(9, "192.0.2.9", 1000, "de")]));
    ops.wait_refusals(2).await;
    let status = status_json(ops.http).await;
    let feed = &status["inputs"]["feed"];
    assert_eq!((&feed["ok"], &feed["refused"]), (&1.into(), &2.into()));
    let reason = feed["error"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("1 eligible servers where the pool had up to 6"),
        "{reason}"
    );
    let m = Samples::parse(&get(ops.http, "/metrics").await.body);
    let loads = |result| {
        m.get(
            "pooldns_loads_total",
            &[("input", "feed"), ("result", result)],
        )
    };
    assert_eq!((loads("ok"), loads("refused")), (Some(1.0), Some(2.0)));
    assert_eq!(
        m.get("pooldns_load_failing", &[("input", "feed")]),
        Some(1.0)
    );
    ops.stop().await;
}

/// Issue 10 item 7: a feed that drops more than half of the servers was refused, also
/// after SIGHUP, with no way to accept it but a restart. `pooldns reload --accept-shrink`
/// accepts one such feed in the running server; the next one is guarded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooldns_reload_accept_shrink_takes_one_shrinking_feed() {
    let ops = Ops::start(CONFIG, &small_feed()).await;
    let shrunk = feed_json(&[s(9, "192.0.2.9", 1000, "de")]);
    ops.replace_feed(&shrunk);
    ops.wait_refusals(1).await;
    let reload = |extra: &[&str]| {
        let mut args = vec![
            "reload".to_owned(),
            "--http".to_owned(),
            ops.http.to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let dir = ops.dir.path().to_owned();
        tokio::task::spawn_blocking(move || pooldns(&args, &dir))
    };
    // Without the flag: refused again, with the reason and what still serves.
    let out = reload(&[]).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("409"), "{stderr}");
    assert!(
        stderr.contains("1 eligible servers where the pool had up to 6"),
        "{stderr}"
    );
    assert!(
        stderr.contains("still serving 4 IPv4 and 2 IPv6 eligible servers"),
        "{stderr}"
    );
    // With it: accepted, and live when the command returns.
    let out = reload(&["--accept-shrink"]).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("reloaded; serving 1 IPv4 and 0 IPv6 eligible servers"),
        "{stdout}"
    );
    let r = udp(ops.dns, &query("@", RecordType::A)).await;
    assert_eq!(addresses(&r), ["192.0.2.9".parse::<IpAddr>().unwrap()]);
    // Only once: the small feed back is fine (it grows), a shrink after it is refused.
    ops.replace_feed(&small_feed());
    let grown = eventually(Duration::from_secs(5), async || {
        addresses(&udp(ops.dns, &query("@", RecordType::A)).await).len() == 4
    })
    .await;
    assert!(grown);
    let refused = ops.reload.loads_refused();
    ops.replace_feed(&shrunk);
    ops.wait_refusals(refused + 1).await;
    ops.stop().await;
}

/// Issue 10 item 6: a broken zone configuration was shown and counted as a refused feed,
/// its error flattened, and the box stayed red after the file was fixed. Each input is
/// reported on its own, keeps the error's lines, and clears when it loads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_input_is_reported_on_its_own_and_clears_when_it_loads_again() {
    let ops = Ops::start(CONFIG, &small_feed()).await;
    let config = ops.dir.path().join("zone.toml");
    // TOML that does not parse: a multi-line message from the parser.
    std::fs::write(&config, "origin =\n[soa]\n").unwrap();
    ops.wait_refusals(1).await;
    let status = status_json(ops.http).await;
    let failed = &status["inputs"]["config"];
    assert_eq!((&failed["ok"], &failed["refused"]), (&1.into(), &1.into()));
    let reason = failed["error"]["reason"].as_str().unwrap();
    assert!(reason.contains(&config.display().to_string()), "{reason}");
    assert!(reason.lines().count() > 2, "lines kept: {reason:?}");
    for input in ["feed", "geoip"] {
        let i = &status["inputs"][input];
        assert_eq!(i["refused"], 0, "{input}: {status}");
        assert!(i["error"].is_null(), "{input}: {status}");
    }
    let m = Samples::parse(&get(ops.http, "/metrics").await.body);
    let loads = |m: &Samples, input, result| {
        m.get(
            "pooldns_loads_total",
            &[("input", input), ("result", result)],
        )
    };
    assert_eq!(loads(&m, "config", "refused"), Some(1.0));
    assert_eq!(loads(&m, "feed", "refused"), Some(0.0));
    assert_eq!(
        m.get("pooldns_load_failing", &[("input", "config")]),
        Some(1.0)
    );
    // The page: the configuration's box is red, with the parser's lines in a <pre>; the
    // feed's is green.
    let page = get(ops.http, "/").await.body;
    let boxed = section(&page, "id=\"input-config\"", "</div>");
    assert!(
        page.contains("<div class=\"bad\" id=\"input-config\">"),
        "{page}"
    );
    assert!(boxed.contains("<pre>") && boxed.contains("\n"), "{boxed}");
    assert!(
        page.contains("<div class=\"ok\" id=\"input-feed\">"),
        "{page}"
    );
    assert!(!page.contains("The last feed was refused"), "{page}");

    // Fixed: the box clears, the counts stay.
    std::fs::write(&config, CONFIG).unwrap();
    let cleared = eventually(Duration::from_secs(5), async || {
        status_json(ops.http).await["inputs"]["config"]["error"].is_null()
    })
    .await;
    assert!(
        cleared,
        "the configuration's error stayed after a good load"
    );
    let status = status_json(ops.http).await;
    let config_status = &status["inputs"]["config"];
    assert_eq!(
        (&config_status["ok"], &config_status["refused"]),
        (&2.into(), &1.into())
    );
    let page = get(ops.http, "/").await.body;
    assert!(
        page.contains("<div class=\"ok\" id=\"input-config\">"),
        "{page}"
    );
    let m = Samples::parse(&get(ops.http, "/metrics").await.body);
    assert_eq!(
        m.get("pooldns_load_failing", &[("input", "config")]),
        Some(0.0)
    );
    ops.stop().await;
}

// ---------------------------------------------------------------------------------------
// The status page in a real browser

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium_shows_zones_chart_and_refusal() {
    let Some(chromium) = chromium("status_page_in_headless_chromium") else {
        return;
    };
    let (feed, members) = browser_feed();
    let ops = Ops::start(CONFIG, &feed).await;
    // Queries from several places, so the chart has a spread of answer shares.
    for i in 0..300u32 {
        let q = match i % 6 {
            0 | 1 => query("@", RecordType::A),
            2 => with_ecs(query("@", RecordType::A), "81.2.69.142", 32),
            3 => with_ecs(query("1", RecordType::A), "216.160.83.56", 32),
            4 => with_ecs(query("2", RecordType::AAAA), "2001:218::", 32),
            _ => with_ecs(query("@", RecordType::A), "89.160.20.112", 28),
        };
        udp(ops.dns, &q).await;
    }
    ops.replace_feed("{\"serial\": 1, \"servers\": [\n  {\"id\": 1,\n");
    ops.wait_refusals(1).await;

    let artifact = artifacts_dir().join("status.png");
    let _ = std::fs::remove_file(&artifact);
    let dom = browse(chromium, &ops, &artifact).await;

    // The page rendered (not an error page) with the summary, the zone table, the chart
    // with one dot per server, and the refusal in plain words.
    assert!(dom.contains("<h1>pooldns for pool.test.</h1>"), "{dom}");
    assert!(dom.contains("Serial 2026112201"), "{dom}");
    let zones = section(&dom, "<table id=\"zones\">", "</table>");
    for row in [
        "<td><b>europe</b></td>",
        "<td><b>asia</b></td>",
        "(uk)</td>",
        "<td class=\"country\">Japan (jp)</td>",
    ] {
        assert!(zones.contains(row), "{row} not in {zones}");
    }
    // The per-server chart replaced the share scatter (issue 9): still one dot per server;
    // the count of records served moved to the sentence above the charts.
    let chart = section(&dom, "<svg id=\"server-loads\"", "</svg>");
    assert_eq!(chart.matches("<circle").count(), members, "{chart}");
    let basis = section(&dom, "<p id=\"basis\">", "</p>");
    assert!(basis.contains("A/AAAA records served"), "{basis}");
    let refusal = section(&dom, "id=\"input-feed\"", "</div>");
    assert!(
        refusal.contains("the latest load was refused")
            && refusal.contains("the last good one keeps serving")
            && refusal.contains(&ops.feed_path.display().to_string()),
        "{refusal}"
    );
    assert!(
        dom.contains("Countries without an eligible server"),
        "{dom}"
    );

    let png = std::fs::read(&artifact).expect("screenshot written");
    assert!(png.len() > 1000, "{} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1200, 2000));
    eprintln!("status page screenshot: {}", artifact.display());
    ops.stop().await;
}

/// The status page for new operators: countries by name under their continents, the
/// global zone under the name `check`, `/status` and `_country` use, the serial as a date,
/// a page that refreshes itself, and a chart of records served against net speed on log
/// axes with one colour per address family.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_names_countries_under_continents_dates_the_serial_and_refreshes() {
    let Some(chromium) = chromium("status_page_names_countries") else {
        return;
    };
    let (feed, members) = browser_feed();
    let mut feed: serde_json::Value = serde_json::from_str(&feed).unwrap();
    feed["serial"] = 1_763_798_400u32.into(); // a unix time: 2025-11-22 08:00:00 UTC
    let ops = Ops::start(CONFIG, &feed.to_string()).await;
    for i in 0..200u32 {
        let q = match i % 4 {
            0 => query("@", RecordType::A),
            1 => with_ecs(query("@", RecordType::A), "81.2.69.142", 32),
            2 => query("2", RecordType::AAAA),
            _ => with_ecs(query("@", RecordType::A), "216.160.83.56", 32),
        };
        udp(ops.dns, &q).await;
    }
    let dom = browse(
        chromium,
        &ops,
        &artifacts_dir().join("status-countries.png"),
    )
    .await;

    assert!(
        dom.contains("<meta http-equiv=\"refresh\" content=\"30\">"),
        "{dom}"
    );
    let summary = section(&dom, "<p id=\"summary\">", "</p>");
    assert!(
        summary.contains("Serial 1763798400 (2025-11-22 08:00:00 UTC)"),
        "{summary}"
    );
    // Uptime in days and hours, minutes while it is shorter than an hour.
    assert!(summary.ends_with(" · up 0 min</p>"), "{summary}");

    // One name for the global zone: the table's, as `check` and `/status` print it.
    let global = {
        let (_dir, table) = load_table(CONFIG, &small_feed());
        let label = table.load().zone_label(pooldns::table::ZoneId::Global);
        label.to_owned()
    };
    assert!(!dom.contains("all servers"), "{dom}");
    let zones = section(&dom, "<table id=\"zones\">", "</table>");
    let first_cells: Vec<&str> = zones
        .split("<tr")
        .skip(2) // before the first row; the header row
        .map(|row| {
            let cell = row.split_once("<td").expect("a cell").1;
            let text = cell.split_once('>').expect("cell start").1;
            text.split_once("</td>").expect("cell end").0
        })
        .collect();
    assert_eq!(
        first_cells,
        [
            global.as_str(),
            "<b>africa</b>",
            "<b>asia</b>",
            "Japan (jp)",
            "<b>europe</b>",
            "France (fr)",
            "Germany (de)",
            "Netherlands, Kingdom of the (nl)",
            "Sweden (se)",
            "United Kingdom of Great Britain and Northern Ireland (uk)",
            "<b>north-america</b>",
            "United States of America (us)",
            "<b>oceania</b>",
            "Australia (au)",
            "<b>south-america</b>",
        ],
        "{zones}"
    );
    // Empty countries by name under their continents, aliases (gb) left out.
    let empty = section(&dom, "<ul id=\"empty\">", "</ul>");
    let africa = section(empty, "<li><b>africa</b>", "</li>");
    assert!(africa.contains("Algeria (dz), Angola (ao)"), "{africa}");
    let europe = section(empty, "<li><b>europe</b>", "</li>");
    assert!(
        europe.contains("Åland Islands (ax), Albania (al)"),
        "{europe}"
    );
    assert!(
        !europe.contains("(gb)") && !europe.contains("(de)"),
        "{europe}"
    );

    // The per-server chart: what is counted, log axes with tick labels (loads as multiples
    // of fair now, not shares in percent: issue 9), a colour and a legend entry per
    // family, every server a dot. Zones mode without a plan says what it assumed.
    let basis = section(&dom, "<p id=\"basis\">", "</p>");
    assert!(basis.contains("A/AAAA records served"), "{basis}");
    assert!(!basis.contains("answers counted"), "{basis}");
    assert!(
        basis.contains("balance.mode = \"zones\"")
            && basis.contains("in proportion to its servers' net speed"),
        "{basis}"
    );
    let chart = section(&dom, "<svg id=\"server-loads\"", "</svg>");
    for tick in ["0.1×", "1×", "10×"] {
        assert!(
            chart.contains(&format!("class=\"tick\">{tick}</text>")),
            "{tick} not in {chart}"
        );
    }
    let v4 = chart.matches("<circle class=\"v4").count();
    let v6 = chart.matches("<circle class=\"v6").count();
    assert_eq!((v4, v6), (members - members / 3, members / 3), "{chart}");
    assert!(
        chart.contains(">IPv4 (32 servers)</text>") && chart.contains(">IPv6 (16 servers)</text>"),
        "{chart}"
    );
    let colour = |class: &str| {
        let dot = section(chart, &format!("<circle class=\"{class}"), ">");
        section(dot, "fill=\"", "\" ").to_owned()
    };
    assert_ne!(colour("v4"), colour("v6"));
    ops.stop().await;
}

/// The status page in plan mode (issue 9, "See it"), with a lone server in Nigeria: load
/// per Mbit/s by country against the fair line and the cap, each server's observed load
/// against its expected one with a tooltip naming it, and demand against capacity per
/// continent, each chart an SVG of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_plan_mode_charts_loads_by_country_by_server_and_by_continent() {
    let Some(chromium) = chromium("status_page_in_plan_mode") else {
        return;
    };
    let (feed, _) = browser_feed();
    let mut feed: serde_json::Value = serde_json::from_str(&feed).unwrap();
    feed["servers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"id": 2000, "ip": "192.0.2.200", "netspeed": 5000, "score": 19.5, "country": "ng"}
        ));
    let servers: Vec<(u64, String, String)> = feed["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap().to_owned();
            (s["id"].as_u64().unwrap(), field("ip"), field("country"))
        })
        .collect();
    let config = format!("{CONFIG}\n[balance]\nmode = \"plan\"\n");
    let ops = Ops::start(&config, &feed.to_string()).await;
    for i in 0..200u32 {
        let q = match i % 4 {
            0 => query("@", RecordType::A),
            1 => with_ecs(query("@", RecordType::A), "81.2.69.142", 32),
            2 => query("2", RecordType::AAAA),
            _ => with_ecs(query("ng", RecordType::A), "216.160.83.56", 32),
        };
        udp(ops.dns, &q).await;
    }
    let dom = browse(chromium, &ops, &artifacts_dir().join("status-plan.png")).await;

    let basis = section(&dom, "<p id=\"basis\">", "</p>");
    assert!(
        basis.contains("the serving plan's (<code>balance.mode = \"plan\"</code>, cap 1.5× fair)"),
        "{basis}"
    );
    let families = ["v4", "v6"];
    // Countries with servers, per family: all 8 of the browser feed in both, and Nigeria
    // in IPv4 (gb is served as uk).
    let countries = |family: &str| -> BTreeSet<String> {
        servers
            .iter()
            .filter(|(_, ip, _)| (family == "v6") == ip.contains(':'))
            .map(|(_, _, cc)| {
                if cc == "gb" {
                    "uk".to_owned()
                } else {
                    cc.clone()
                }
            })
            .collect()
    };
    assert_eq!((countries("v4").len(), countries("v6").len()), (9, 8));

    // 1. By country: a bar per country with servers, named in its tooltip; the fair line
    //    and the cap in each family's panel; the lone Nigerian server's bar at the plan's
    //    expected load.
    let by_country = section(&dom, "<svg id=\"country-loads\"", "</svg>");
    for family in families {
        let bars = by_country
            .matches(&format!("<rect class=\"expected {family}\""))
            .count();
        assert_eq!(bars, countries(family).len(), "{family}: {by_country}");
        for cc in countries(family) {
            let group = by_country
                .split(&format!("<g class=\"country {family}\">"))
                .skip(1)
                .map(|g| section(g, "", "</g>"))
                .find(|g| g.contains(&format!("({cc}):")))
                .unwrap_or_else(|| panic!("no {family} bar for {cc}: {by_country}"));
            assert!(
                group.contains("<title>") && group.contains("fair"),
                "{group}"
            );
        }
    }
    assert_eq!(
        by_country.matches("<line class=\"fair\"").count(),
        2,
        "{by_country}"
    );
    assert_eq!(
        by_country.matches("<line class=\"cap\"").count(),
        2,
        "{by_country}"
    );
    assert!(by_country.contains(">cap 1.5×</text>"), "{by_country}");
    let nigeria = section(
        by_country,
        "<title>Nigeria (ng): 1 IPv4 server, 5 Mbit/s",
        "</title>",
    );
    // The bar shows the plan's own number for the lone server, as `pooldns plan` prints it
    // (whether the plan keeps it under the cap is the plan's tests' business).
    let planned = {
        let (_dir, table) = load_table(&config, &feed.to_string());
        let json = pooldns::report::plan_json(&table.load());
        json["v4"]["servers"]["2000"]
            .as_f64()
            .expect("server 2000 in the plan")
    };
    let expected = format!(" expected {planned:.2}× fair, ");
    assert!(nigeria.contains(&expected), "{expected} not in {nigeria}");

    // 2. Per server: one dot per server, its tooltip naming it; a legend entry per family.
    let by_server = section(&dom, "<svg id=\"server-loads\"", "</svg>");
    assert_eq!(
        by_server.matches("<circle").count(),
        servers.len(),
        "{by_server}"
    );
    for (id, ip, _) in &servers {
        let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
        let title = format!("<title>id {id} {ip} ({family}), ");
        assert_eq!(
            by_server.matches(&title).count(),
            1,
            "{title} in {by_server}"
        );
        if *id == 2000 {
            let dot = section(by_server, &title, "</title>");
            assert!(dot.contains(&expected), "{expected} not in {dot}");
        }
    }
    for family in families {
        assert!(
            by_server.contains(&format!("<rect class=\"legend-{family}\"")),
            "{family}: {by_server}"
        );
    }
    assert!(
        by_server.contains(">IPv4 (33 servers)</text>")
            && by_server.contains(">IPv6 (16 servers)</text>"),
        "{by_server}"
    );
    assert!(
        by_server.contains("<line class=\"diagonal\""),
        "{by_server}"
    );

    // 3. Per continent: a pair of bars, demand and capacity, for each of the six
    //    continents in each family's panel.
    let by_continent = section(&dom, "<svg id=\"continent-demand\"", "</svg>");
    for family in families {
        for kind in ["demand", "capacity"] {
            let bars = by_continent
                .matches(&format!("<rect class=\"{kind} {family}\""))
                .count();
            assert_eq!(bars, 6, "{kind} {family}: {by_continent}");
        }
        for continent in ["africa", "europe", "south-america"] {
            let group = by_continent
                .split(&format!("<g class=\"continent {family}\">"))
                .skip(1)
                .map(|g| section(g, "", "</g>"))
                .find(|g| g.contains(&format!("<title>{continent}: ")))
                .unwrap_or_else(|| panic!("{continent} {family}: {by_continent}"));
            assert_eq!(group.matches("<rect").count(), 2, "{group}");
        }
    }
    ops.stop().await;
}

// ---------------------------------------------------------------------------------------
// pooldns check

#[test]
fn check_prints_the_summary_and_exits_0_on_the_bundled_defaults() {
    // No flags, from the repository: exactly what an operator runs after a clone.
    let out = pooldns(&["check".to_owned()], &repo("."));
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let feed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("data/servers.json")).unwrap()).unwrap();
    let servers = feed["servers"].as_array().unwrap();
    let eligible = |v6: bool| {
        servers
            .iter()
            .filter(|s| s["score"].as_f64().unwrap() >= 10.0 && s["netspeed"].as_u64() > Some(0))
            .filter(|s| s["ip"].as_str().unwrap().contains(':') == v6)
            .count()
    };
    let (v4, v6) = (eligible(false), eligible(true));
    for line in [
        "zone pool.ntp.org. (zones/pool.ntp.org.toml)".to_owned(),
        // The configuration's `geoip` is relative to the configuration file (item 9);
        // its description, type and build date follow (item 13).
        "geoip zones/../data/dbip-country.mmdb: ".to_owned(),
        format!(
            "feed data/servers.json: {n} entries, {n} loaded, 0 skipped, serial {}",
            feed["serial"],
            n = servers.len()
        ),
        format!("eligible servers: {v4} IPv4, {v6} IPv6 (min score 10, netspeed > 0)"),
        "countries with no eligible server (".to_owned(),
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&line)),
            "{line:?} not in:\n{stdout}"
        );
    }
    let global: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("@ "))
        .expect("global zone row")
        .split_whitespace()
        .collect();
    assert_eq!((global[1], global[3]), (&*v4.to_string(), &*v6.to_string()));
    for zone in ["europe ", "asia ", "de ", "us "] {
        assert!(stdout.lines().any(|l| l.starts_with(zone)), "{zone}");
    }
    assert_eq!(stdout.lines().last(), Some("ok"));
}

/// Issue 10 item 3: `check` called a feed with no eligible server ok.
#[test]
fn check_fails_when_a_family_has_no_eligible_server() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("servers.json");
    let config = repo("zones/pool.ntp.org.toml");
    let low_score = r#"{"servers": [{"id": 1, "ip": "192.0.2.1", "netspeed": 1000, "score": 5, "country": "de"}]}"#;
    let v4_only = feed_json(&[s(1, "192.0.2.1", 1000, "de")]);
    let v6_only = feed_json(&[s(1, "2001:db8::1", 1000, "de")]);
    for (text, missing) in [
        ("{\"servers\": []}", &["IPv4", "IPv6"][..]),
        (low_score, &["IPv4", "IPv6"]),
        (&v4_only, &["IPv6"]),
        (&v6_only, &["IPv4"]),
    ] {
        std::fs::write(&feed, text).unwrap();
        let out = pooldns(&check_args(&config, &feed), dir.path());
        assert_eq!(out.status.code(), Some(1), "{text}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for family in ["IPv4", "IPv6"] {
            let said = stderr.contains(&format!(
                "{}: no eligible {family} server (score >= 10 and netspeed > 0)",
                feed.display()
            ));
            assert_eq!(said, missing.contains(&family), "{text}: {stderr}");
        }
        assert!(!String::from_utf8_lossy(&out.stdout).ends_with("ok\n"));
    }
}

/// Issue 10 item 9: the configuration's `geoip` was resolved against the working
/// directory, and an error did not say that the path came from the configuration.
#[test]
fn the_configured_geoip_path_is_relative_to_the_configuration_file() {
    let elsewhere = tempfile::tempdir().unwrap();
    let args = |config: &Path| {
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        vec![
            "check".to_owned(),
            "--config".into(),
            path(config),
            "--feed".into(),
            path(&repo("data/servers.json")),
        ]
    };
    // The bundled configuration from another directory, without --geoip.
    let out = pooldns(&args(&repo("zones/pool.ntp.org.toml")), elsewhere.path());
    assert!(out.status.success(), "{out:?}");
    // A configuration naming a database that is not there: the file, the key, the value.
    let config = elsewhere.path().join("zone.toml");
    std::fs::write(&config, format!("geoip = \"missing.mmdb\"\n{CONFIG}")).unwrap();
    let out = pooldns(&args(&config), &repo("."));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "pooldns: {}: geoip = \"missing.mmdb\": {}: not a usable GeoIP database",
        config.display(),
        elsewhere.path().join("missing.mmdb").display()
    );
    assert!(stderr.contains(&expected), "{expected} not in {stderr}");
}

/// Issue 10 item 8: colour codes only for a terminal, and never with NO_COLOR.
#[test]
fn log_lines_are_coloured_only_on_a_terminal_without_no_color() {
    let has_escape = |bytes: &[u8]| bytes.contains(&0x1b);
    // stderr to a pipe: plain.
    let out = pooldns(&["check".to_owned()], &repo("."));
    assert!(out.status.success(), "{out:?}");
    let logged = Command::new(env!("CARGO_BIN_EXE_pooldns"))
        .arg("check")
        .current_dir(repo("."))
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(!logged.stderr.is_empty());
    assert!(!has_escape(&logged.stderr), "{logged:?}");
    // On a terminal (util-linux `script` gives one): coloured, unless NO_COLOR is set.
    if !Path::new("/usr/bin/script").exists() {
        return;
    }
    let on_terminal = |no_color: Option<&str>| {
        let mut cmd = Command::new("/usr/bin/script");
        cmd.args(["-q", "-e", "-c"])
            .arg(format!(
                "{} check >/dev/null",
                env!("CARGO_BIN_EXE_pooldns")
            ))
            .arg("/dev/null")
            .current_dir(repo("."))
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        out.stdout
    };
    assert!(has_escape(&on_terminal(None)));
    assert!(has_escape(&on_terminal(Some(""))));
    assert!(!has_escape(&on_terminal(Some("1"))));
}

/// Issue 10 item 13: the help text of --tcp-read-timeout ended mid-sentence.
#[test]
fn serve_help_says_what_the_tcp_timeouts_are() {
    let out = pooldns(&["serve".to_owned(), "--help".to_owned()], &repo("."));
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for text in [
        "--tcp-read-timeout <SECS> Seconds a TCP query may take to arrive in full, counted \
         from the arrival of its two-byte length prefix; a slower client is disconnected \
         [default: 2]",
        "--tcp-idle-timeout <SECS> Seconds a TCP connection may stay idle before it is closed",
    ] {
        assert!(help.contains(text), "{text:?} not in {help}");
    }
}

#[test]
fn check_exits_nonzero_naming_a_bad_feed_entry() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("servers.json");
    std::fs::write(&feed, small_feed()).unwrap();
    let out = pooldns(
        &check_args(&repo("zones/pool.ntp.org.toml"), &feed),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The summary still shows what would serve, then the entry and why.
    assert!(
        stdout.contains("7 entries, 6 loaded, 1 skipped"),
        "{stdout}"
    );
    assert!(
        stdout.contains("eligible servers: 4 IPv4, 2 IPv6"),
        "{stdout}"
    );
    let entry = format!(
        "{}: servers[6] (id 7): ip \"10.0.0\" is not an address",
        feed.display()
    );
    assert!(
        stdout.contains(&format!("skipped entries:\n  {entry}")),
        "{stdout}"
    );
    assert!(
        stderr.contains("pooldns: 1 feed entry was skipped"),
        "{stderr}"
    );
    assert!(!stdout.lines().any(|l| l == "ok"), "{stdout}");
}

#[test]
fn check_exits_nonzero_on_a_bad_config_or_a_broken_feed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("zone.toml");
    let feed = dir.path().join("servers.json");
    std::fs::write(&feed, feed_json(&[s(1, "192.0.2.1", 1000, "de")])).unwrap();
    std::fs::write(
        &config,
        CONFIG.replace("value = \"192.0.2.53\"", "value = \"192.0.2\""),
    )
    .unwrap();
    let out = pooldns(&check_args(&config, &feed), dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("pooldns: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(line.contains(&config.display().to_string()), "{line}");
    assert!(
        line.contains("records[0] (ns1 A): value is not an IPv4 address"),
        "{line}"
    );
    assert!(out.stdout.is_empty(), "a summary of nothing: {out:?}");

    std::fs::write(&config, CONFIG).unwrap();
    std::fs::write(&feed, "{\"servers\": [\n").unwrap();
    let out = pooldns(&check_args(&config, &feed), dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&feed.display().to_string()) && stderr.contains("not a feed"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// pooldns explain

#[test]
fn explain_shows_region_network_scope_chain_and_candidates_summing_to_min_4_n() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("servers.json");
    std::fs::write(&feed, explain_feed()).unwrap();
    // Zones mode: the chains of country, continent and global.
    let config = zones_mode_config(dir.path());
    let run = |ip: &str, name: &str, qtype: &str| -> Explained {
        let mut args = check_args(&config, &feed);
        args[0] = "explain".into();
        args.extend(["--ip".into(), ip.into(), "--qtype".into(), qtype.into()]);
        args.push(name.into());
        let out = pooldns(&args, dir.path());
        assert!(out.status.success(), "{out:?}");
        Explained::parse(&String::from_utf8_lossy(&out.stdout))
    };

    // A UK address: its GeoIP network, the uk zone, a quarter of it under 0.
    let e = run("81.2.69.142", "0.pool.ntp.org", "A");
    assert_eq!(e.line("query"), "0.pool.ntp.org. A from 81.2.69.142");
    assert_eq!(e.line("geoip"), "network 81.2.69.142/31 → country gb");
    assert!(
        e.line("region")
            .starts_with("country uk · continent europe · ECS scope /31"),
        "{e:?}"
    );
    assert_eq!(e.line("chain"), "uk (12 eligible) ← answers");
    // One 1 Gbit server and eleven of 2–12 Mbit: no split keeps the big one's share, so
    // the zone is served whole under every number (issue 12 item 2).
    assert!(
        e.line("subset").starts_with("the zone is not split"),
        "{e:?}"
    );
    e.assert_probabilities();

    // The whole country at the apex; the big server is always in the answer.
    let e = run("81.2.69.142", "pool.ntp.org", "A");
    assert_eq!(e.candidates.len(), 12);
    assert_eq!(e.candidates[0], (100.0, 101));
    e.assert_probabilities();

    // Sweden has no server: the chain falls back to Europe.
    let e = run("89.160.20.112", "pool.ntp.org", "A");
    assert_eq!(e.line("geoip"), "network 89.160.20.112/28 → country se");
    assert!(e.line("region").contains("ECS scope /28"), "{e:?}");
    assert_eq!(
        e.line("chain"),
        "se (0 eligible) → europe (19 eligible) ← answers"
    );
    assert_eq!(e.candidates.len(), 19);
    e.assert_probabilities();

    // Fewer than 4 servers: every one of them, with certainty.
    let e = run("216.160.83.56", "pool.ntp.org", "A");
    assert_eq!(e.line("chain"), "us (2 eligible) ← answers");
    assert_eq!(e.candidates.iter().map(|c| c.0).sum::<f64>(), 200.0);
    e.assert_probabilities();

    // IPv6 under 2: Japan's two IPv6 servers; AAAA elsewhere is NODATA.
    let e = run("2001:218::1", "2.pool.ntp.org", "AAAA");
    assert_eq!(e.line("geoip"), "network 2001:218::/32 → country jp");
    assert!(
        e.line("region")
            .starts_with("country jp · continent asia · ECS scope /32"),
        "{e:?}"
    );
    assert_eq!(e.line("chain"), "jp (2 eligible) ← answers");
    assert_eq!(
        e.line("subset"),
        "none: AAAA is served only here, from the whole IPv6 zone"
    );
    assert_eq!(e.candidates.len(), 2);
    e.assert_probabilities();
    let e = run("2001:218::1", "0.pool.ntp.org", "AAAA");
    assert_eq!(e.line("answer"), "NODATA: AAAA is only served under 2.");

    // An address in no GeoIP network, and a private one: the global zone.
    let e = run("1.1.1.1", "pool.ntp.org", "A");
    assert!(e.line("geoip").ends_with("→ country unknown"), "{e:?}");
    assert!(e.line("chain").starts_with("@ (21 eligible)"), "{e:?}");
    e.assert_probabilities();
    let e = run("10.1.2.3", "pool.ntp.org", "A");
    assert!(
        e.line("geoip")
            .starts_with("10.1.2.3 is not a public address: the client is placed by"),
        "{e:?}"
    );
    assert!(e.line("region").contains("ECS scope /32"), "{e:?}");
    e.assert_probabilities();
}

/// Issue 10 item 2: `explain` printed scope /18 for `de` while the server sent /0. Both now
/// come from one rule; this compares them name by name, address by address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_prints_the_ecs_scope_the_server_sends() {
    let ops = Ops::start(CONFIG, &explain_feed()).await;
    let config = ops.dir.path().join("zone.toml");
    for ip in [
        "81.2.69.142",
        "89.160.20.112",
        "1.1.1.1",
        "10.1.2.3",
        "2001:218::1",
    ] {
        for name in [
            "@", "0", "2", "uk", "1.uk", "europe", "debian", "www", "ns1",
        ] {
            let mut args = check_args(&config, &ops.feed_path);
            args[0] = "explain".into();
            args.extend(["--ip".into(), ip.into()]);
            args.push(if name == "@" {
                "pool.test".to_owned()
            } else {
                format!("{name}.pool.test")
            });
            let out = pooldns(&args, ops.dir.path());
            assert!(out.status.success(), "{out:?}");
            let e = Explained::parse(&String::from_utf8_lossy(&out.stdout));
            let region = e.line("region");
            let printed: u8 = region
                .split("ECS scope /")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("no scope in {region:?}"));
            let full = if ip.contains(':') { 128 } else { 32 };
            let r = udp(ops.dns, &with_ecs(query(name, RecordType::A), ip, full)).await;
            let sent = echoed_ecs(&r).expect("ECS echoed").2;
            assert_eq!(printed, sent, "{name} from {ip}: explain says /{printed}");
        }
    }
    ops.stop().await;
}

/// Issue 9: in plan mode `explain` shows where the client country's answers come from, and
/// every candidate's probability over all of those sources.
#[test]
fn explain_in_plan_mode_shows_the_sources_of_the_clients_country() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("servers.json");
    std::fs::write(&feed, explain_feed()).unwrap();
    let mut args = check_args(&repo("zones/pool.ntp.org.toml"), &feed);
    args[0] = "explain".into();
    args.extend(["--ip".into(), "81.2.69.142".into(), "pool.ntp.org".into()]);
    let out = pooldns(&args, dir.path());
    assert!(out.status.success(), "{out:?}");
    let e = Explained::parse(&String::from_utf8_lossy(&out.stdout));
    let plan = e.line("plan");
    assert!(plan.starts_with("clients in uk get answers from "), "{e:?}");
    assert!(plan.contains("max_load 1.5"), "{plan}");
    assert!(
        e.line("answer").starts_with("4 servers per answer from "),
        "{e:?}"
    );
    // The sources' probabilities add up to about 4 (fill for small sources aside).
    let sum: f64 = e.candidates.iter().map(|c| c.0).sum();
    assert!(sum > 300.0 && sum <= 400.0 + 1e-6, "{sum}");
}

/// Issue 10 item 13: the kbit/s column of `explain` was aligned left, so the numbers of
/// different widths did not line up.
#[test]
fn explain_aligns_the_net_speed_column_right() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("servers.json");
    std::fs::write(&feed, explain_feed()).unwrap();
    let mut args = check_args(&repo("zones/pool.ntp.org.toml"), &feed);
    args[0] = "explain".into();
    args.extend(["--ip".into(), "81.2.69.142".into(), "pool.ntp.org".into()]);
    let out = pooldns(&args, dir.path());
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let ends: BTreeSet<usize> = text
        .lines()
        .filter(|l| l.ends_with(" kbit/s"))
        .map(|l| l.chars().count())
        .collect();
    let widths: BTreeSet<usize> = text
        .lines()
        .filter_map(|l| l.strip_suffix(" kbit/s"))
        .filter_map(|l| l.split_whitespace().last().map(str::len))
        .collect();
    assert!(widths.len() > 1, "numbers of one width only: {text}");
    assert_eq!(ends.len(), 1, "rows end at different columns:\n{text}");
}

/// Issue 10 item 4: `explain` said "NXDOMAIN or REFUSED" and exited 0 for either.
#[test]
fn explain_tells_nxdomain_from_refused_and_fails_outside_the_zone() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("servers.json");
    std::fs::write(&feed, explain_feed()).unwrap();
    let run = |name: &str| {
        let mut args = check_args(&repo("zones/pool.ntp.org.toml"), &feed);
        args[0] = "explain".into();
        args.extend(["--ip".into(), "81.2.69.142".into(), name.into()]);
        pooldns(&args, dir.path())
    };
    let out = run("nothing.pool.ntp.org");
    assert!(out.status.success(), "{out:?}");
    let e = Explained::parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        e.line("answer"),
        "NXDOMAIN: pool.ntp.org. has no name nothing.pool.ntp.org."
    );
    for outside in ["example.com", "ntp.org", "xpool.ntp.org"] {
        let out = run(outside);
        assert_eq!(out.status.code(), Some(1), "{outside}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "{outside}. is not in the zone pool.ntp.org.: the server answers REFUSED"
            )),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Debug names

#[tokio::test]
async fn country_txt_without_ecs_describes_the_packet_source() {
    let ops = Ops::start(CONFIG, &small_feed()).await;
    let r = udp(ops.dns, &query("_country", RecordType::TXT)).await;
    assert_eq!(
        debug_txt(&r),
        [
            "resolver 127.0.0.1",
            "ecs none",
            "address 127.0.0.1 (packet source)",
            "country unknown",
            "continent unknown",
            "zone @",
            "scope 0",
        ]
    );
    assert!(r.edns.is_none());
    // A private subnet is not used: the packet source decides, and the answer holds for
    // that subnet only (scope = its source prefix, issue 10 item 1).
    let r = udp(
        ops.dns,
        &with_ecs(query("_country", RecordType::TXT), "10.1.0.0", 16),
    )
    .await;
    let txt = debug_txt(&r);
    assert_eq!(txt[1], "ecs 10.1.0.0/16");
    assert_eq!(txt[2], "address 127.0.0.1 (packet source)");
    assert_eq!(txt[6], "scope 16");
    assert_eq!(echoed_ecs(&r), Some(("10.1.0.0".parse().unwrap(), 16, 16)));
    ops.stop().await;
}

#[tokio::test]
async fn country_txt_with_ecs_names_the_subnet_country_zone_and_scope_echoed_in_the_opt() {
    let ops = Ops::start(CONFIG, &small_feed()).await;
    for (subnet, source, country, continent, zone, scope) in [
        ("81.2.69.142", 32, "uk", "europe", "uk", 31),
        ("89.160.20.112", 28, "se", "europe", "europe", 28),
        ("216.160.83.56", 29, "us", "north-america", "us", 29),
        // Japan and Asia have IPv6 servers only; the zone named is the one answering A.
        ("2001:218::", 32, "jp", "asia", "@", 32),
    ] {
        let q = with_ecs(query("_country", RecordType::TXT), subnet, source);
        for r in [udp(ops.dns, &q).await, tcp(ops.dns, &q).await] {
            assert_eq!(
                debug_txt(&r),
                [
                    "resolver 127.0.0.1".to_owned(),
                    format!("ecs {subnet}/{source}"),
                    format!("address {subnet} (from ecs)"),
                    format!("country {country}"),
                    format!("continent {continent}"),
                    format!("zone {zone}"),
                    format!("scope {scope}"),
                ]
            );
            assert_eq!(
                echoed_ecs(&r),
                Some((subnet.parse().unwrap(), source, scope)),
                "{subnet}"
            );
        }
    }
    ops.stop().await;
}

#[tokio::test]
async fn status_txt_answers_from_loopback() {
    let ops = Ops::start(CONFIG, &small_feed()).await;
    let r = udp(ops.dns, &query("_status", RecordType::TXT)).await;
    let txt = debug_txt(&r);
    let keys: Vec<&str> = txt.iter().map(|t| t.split(' ').next().unwrap()).collect();
    assert_eq!(
        keys,
        ["version", "instance", "uptime", "serial", "feed-age"],
        "{txt:?}"
    );
    assert_eq!(txt[0], format!("version {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(txt[3], "serial 2026112201");
    let age: u64 = txt[4]["feed-age ".len()..].parse().unwrap();
    assert!(age < 60, "{txt:?}");
    let _: u64 = txt[2]["uptime ".len()..].parse().unwrap();
    // Other types at the name: NODATA.
    let r = udp(ops.dns, &query("_status", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty() && !r.authorities.is_empty());
    ops.stop().await;
}

#[test]
fn status_txt_says_not_public_to_a_public_source_unless_status_public() {
    use pooldns::answer::{Client, Records, answer};
    use pooldns::wire::{ClientSubnet, Question, Rcode, class, rtype};
    use rand::SeedableRng;

    let question = Question {
        qname: b"\x07_status\x04pool\x04test\x00",
        qtype: rtype::TXT,
        qclass: class::IN,
    };
    let client = |source: &str, ecs: Option<&str>| Client {
        source: source.parse().unwrap(),
        ecs: ecs.map(|a| ClientSubnet {
            family: 1,
            source_prefix: 32,
            address: a.parse().unwrap(),
        }),
        dnssec_ok: false,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for public in [false, true] {
        let config = if public {
            format!("{CONFIG}\n[identity]\nstatus_public = true\n")
        } else {
            CONFIG.to_owned()
        };
        let (_dir, table) = load_table(&config, &small_feed());
        let table = table.load();
        for (source, ecs) in [
            ("81.2.69.142", None),
            ("2001:218::1", None),
            // A loopback subnet does not make a public resolver local.
            ("81.2.69.142", Some("127.0.0.1")),
        ] {
            let a = answer(&table, &question, &client(source, ecs), &mut rng);
            if public {
                assert_eq!(a.rcode, Rcode::NOERROR, "{source}");
                assert!(matches!(a.answer, Records::Txt { ttl: 1, .. }), "{source}");
            } else {
                // Issue 10 item 5: REFUSED made resolvers retry every server. A cacheable
                // NOERROR with a TXT that says why, and NODATA for other types.
                assert_eq!(a.rcode, Rcode::NOERROR, "{source}");
                assert_eq!(a.ede, None, "{source}");
                assert!(a.authoritative, "{source}");
                let Records::Txt { ttl, data } = &a.answer else {
                    panic!("{source}: {:?}", a.answer)
                };
                assert_eq!(*ttl, pooldns::answer::STATUS_PRIVATE_TTL);
                let text = String::from_utf8_lossy(data.as_bytes()).into_owned();
                assert!(text.contains("not public"), "{text}");
                let other = Question {
                    qtype: rtype::A,
                    ..question
                };
                let a = answer(&table, &other, &client(source, ecs), &mut rng);
                assert_eq!(a.rcode, Rcode::NOERROR, "{source}");
                assert!(a.answer.is_empty() && !a.authority.is_empty(), "{source}");
            }
        }
        // Loopback, IPv4 and IPv6, always; also with a public subnet.
        for (source, ecs) in [
            ("127.0.0.1", None),
            ("::1", None),
            ("127.0.0.1", Some("81.2.69.142")),
        ] {
            let a = answer(&table, &question, &client(source, ecs), &mut rng);
            assert_eq!(a.rcode, Rcode::NOERROR, "{source}");
            assert!(matches!(a.answer, Records::Txt { ttl: 1, .. }), "{source}");
        }
        // `_country` is public either way.
        let country = Question {
            qname: b"\x08_country\x04pool\x04test\x00",
            ..question
        };
        let a = answer(&table, &country, &client("81.2.69.142", None), &mut rng);
        assert_eq!(a.rcode, Rcode::NOERROR);
        assert!(matches!(a.answer, Records::Txt { ttl: 1, .. }));
    }
}

// ---------------------------------------------------------------------------------------
// contrib/pooldns.service

#[test]
fn systemd_unit_is_hardened_uses_real_flags_and_verifies() {
    let unit = std::fs::read_to_string(repo("contrib/pooldns.service")).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for directive in [
        "DynamicUser=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ConfigurationDirectory=pooldns",
        "StateDirectory=pooldns",
    ] {
        assert!(lines.contains(&directive), "{directive} missing");
    }
    assert!(lines.iter().any(|l| l.starts_with("LimitNOFILE=")));
    assert!(
        !lines.iter().any(|l| l.starts_with("User=")),
        "runs as a dynamic user"
    );

    // Every flag of ExecStart is one `pooldns serve` knows, it listens on port 53, and
    // systemd accepts the unit.
    let words = check_unit_exec(&unit, "pooldns.service", "serve");
    assert!(words.iter().any(|w| w == "[::]:53"), "{words:?}");
}

// ---------------------------------------------------------------------------------------
// Helpers: an in-process server with its HTTP side

/// A server answering DNS on `dns` and HTTP on `http`, both on 127.0.0.1.
struct Ops {
    dns: SocketAddr,
    http: SocketAddr,
    reload: Arc<ReloadStatus>,
    dir: tempfile::TempDir,
    feed_path: PathBuf,
    serving: InProcess,
}

impl Ops {
    /// Starts with a zone configuration and a feed (written to a temporary directory, the
    /// feed watched), and the GeoIP test database.
    async fn start(config: &str, feed: &str) -> Ops {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config_path, feed_path) = write_inputs(dir.path(), config, feed);
        let mut reloader = Reloader::load(Sources {
            config: config_path,
            feed: feed_path.clone(),
            geoip: Some(repo(TEST_GEOIP)),
            ..Default::default()
        })
        .expect("load");
        reloader.start_watching();
        let listeners = Listeners::bind_with(&["127.0.0.1:0".parse().unwrap()], 2).expect("bind");
        let dns = listeners.udp_addrs()[0];
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind HTTP");
        let http = http_listener.local_addr().unwrap();
        let reload = reloader.status();
        let state = pooldns::http::HttpState {
            table: reloader.table(),
            metrics: Arc::new(pooldns::metrics::Metrics::default()),
            reload: reload.clone(),
            started: Instant::now(),
            admin: Some(reloader.admin()),
        };
        let serving = InProcess::start(listeners, http_listener, state, Some(reloader));
        Ops {
            dns,
            http,
            reload,
            dir,
            feed_path,
            serving,
        }
    }

    /// Replaces the feed file the way deploy tools do (write aside, rename over).
    fn replace_feed(&self, json: &str) {
        let tmp = self.dir.path().join(".servers.json.tmp");
        std::fs::write(&tmp, json).expect("write feed");
        std::fs::rename(&tmp, &self.feed_path).expect("rename feed");
    }

    /// Waits until `n` loads have been refused.
    async fn wait_refusals(&self, n: u64) {
        let reload = self.reload.clone();
        let seen = eventually(Duration::from_secs(5), async || reload.loads_refused() >= n).await;
        assert!(seen, "feed not refused within 5 s");
    }

    async fn stop(self) {
        self.serving.stop().await;
    }
}

fn write_inputs(dir: &Path, config: &str, feed: &str) -> (PathBuf, PathBuf) {
    let (config_path, feed_path) = (dir.join("zone.toml"), dir.join("servers.json"));
    std::fs::write(&config_path, config).expect("write config");
    std::fs::write(&feed_path, feed).expect("write feed");
    (config_path, feed_path)
}

/// A table loaded exactly as `serve` loads it (no server around it).
fn load_table(config: &str, feed: &str) -> (tempfile::TempDir, SharedTable) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, feed) = write_inputs(dir.path(), config, feed);
    let reloader = Reloader::load(Sources {
        config,
        feed,
        geoip: Some(repo(TEST_GEOIP)),
        ..Default::default()
    })
    .expect("load");
    (dir, reloader.table())
}

// ---------------------------------------------------------------------------------------
// Helpers: feeds and DNS

const V4_ALL: [&str; 4] = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.4"];
const V6_ALL: [&str; 2] = ["2001:db8::5", "2001:db8::6"];

/// Two UK servers, one German and one American (IPv4); a German and a Japanese IPv6 server;
/// and entry 6 (id 7), whose address is not one.
fn small_feed() -> String {
    feed_json(&[
        s(1, "192.0.2.1", 1000, "gb"),
        s(2, "192.0.2.2", 2000, "gb"),
        s(3, "192.0.2.3", 3000, "de"),
        s(4, "198.51.100.4", 4000, "us"),
        s(5, "2001:db8::5", 5000, "de"),
        s(6, "2001:db8::6", 6000, "jp"),
        s(7, "10.0.0", 1000, "de"),
    ])
}

/// For `explain`: 12 UK servers (id 101 heavier than the other 11 together), 3 German,
/// 2 American and 4 Dutch IPv4 servers (21, 19 of them in Europe); 2 Japanese and 2 German
/// IPv6 servers.
fn explain_feed() -> String {
    let mut servers = vec![serde_json::json!(
        {"id": 101, "ip": "192.0.2.101", "netspeed": 1_000_000, "score": 20.0, "country": "gb"}
    )];
    let mut add = |id: u32, ip: String, netspeed: u32, country: &str| {
        servers.push(serde_json::json!(
            {"id": id, "ip": ip, "netspeed": netspeed, "score": 15.0, "country": country}
        ));
    };
    for i in 2..=12 {
        add(100 + i, format!("192.0.2.{}", 100 + i), 1000 * i, "gb");
    }
    for i in 1..=3 {
        add(200 + i, format!("198.51.100.{i}"), 5000 * i, "de");
    }
    for i in 1..=2 {
        add(300 + i, format!("203.0.113.{i}"), 2000, "us");
    }
    for i in 1..=4 {
        add(400 + i, format!("198.51.100.{}", 40 + i), 3000, "nl");
    }
    for i in 1..=2 {
        add(500 + i, format!("2001:db8::5:{i}"), 4000 * i, "jp");
        add(600 + i, format!("2001:db8::6:{i}"), 4000, "de");
    }
    serde_json::json!({"serial": 7, "servers": servers}).to_string()
}

/// For the browser: 48 servers in 8 countries on 4 continents, a third of them IPv6, with
/// net speeds from 1 to 10 Mbit/s; and the number of servers.
fn browser_feed() -> (String, usize) {
    const COUNTRIES: [&str; 8] = ["gb", "de", "us", "se", "jp", "fr", "nl", "au"];
    let servers: Vec<serde_json::Value> = (0..48u32)
        .map(|i| {
            let ip = if i % 3 == 2 {
                format!("2001:db8::{:x}", i + 1)
            } else {
                format!("192.0.2.{}", i + 1)
            };
            serde_json::json!({
                "id": 1000 + i, "ip": ip, "netspeed": 1000 * (1 + (i * 7) % 10),
                "score": 19.5, "country": COUNTRIES[i as usize % COUNTRIES.len()],
            })
        })
        .collect();
    let n = servers.len();
    (
        serde_json::json!({"serial": 2_026_112_201u32, "servers": servers}).to_string(),
        n,
    )
}

/// The test configuration plus a TXT RRset at `big` of 10 records of 200 bytes: too big for
/// 512 bytes.
fn txt_config() -> String {
    let mut config = CONFIG.to_owned();
    for i in 0..10u8 {
        let text = String::from_utf8(vec![b'a' + i; 200]).unwrap();
        config.push_str(&format!(
            "\n[[records]]\nname = \"big\"\ntype = \"TXT\"\nvalue = \"{text}\"\n"
        ));
    }
    config
}

/// `pool.test A` with an OPT whose client subnet says /24 but carries two address bytes.
fn malformed_ecs_query() -> Vec<u8> {
    let mut q = vec![0xbe, 0xef, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x04pool\x04test\x00\x00\x01\x00\x01");
    let option = [0, 8, 0, 6, 0, 1, 24, 0, 81, 2];
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    q.extend_from_slice(&(option.len() as u16).to_be_bytes());
    q.extend_from_slice(&option);
    q
}

async fn udp(addr: SocketAddr, q: &Message) -> Message {
    let raw = raw_udp(addr, &q.to_vec().unwrap(), Duration::from_secs(2))
        .await
        .expect("no answer over UDP");
    let r = Message::from_vec(&raw).expect("answer parses");
    assert_eq!(r.metadata.id, q.metadata.id);
    r
}

async fn tcp(addr: SocketAddr, q: &Message) -> Message {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    write_framed(&mut stream, &q.to_vec().unwrap())
        .await
        .unwrap();
    let raw = read_framed(&mut stream).await.expect("no answer over TCP");
    Message::from_vec(&raw).expect("answer parses")
}

/// The character-strings of the one TXT record of a debug name (TTL 1).
fn debug_txt(r: &Message) -> Vec<String> {
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1, "{r:?}");
    let record = &r.answers[0];
    assert_eq!(record.ttl, 1);
    match &record.data {
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
        other => panic!("not TXT: {other:?}"),
    }
}

fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.sort();
    v
}

fn ips(text: &[&str]) -> Vec<IpAddr> {
    sorted(text.iter().map(|t| t.parse().unwrap()).collect())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------
// Helpers: HTTP and Prometheus text

#[derive(Debug)]
struct HttpResponse {
    status: u16,
    head: String,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// One HTTP/1.1 GET with `Connection: close`.
async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect HTTP");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("HTTP answer within 5 s");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8(raw[..split].to_vec()).expect("head");
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    HttpResponse {
        status,
        head,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n").expect("size");
        let size = std::str::from_utf8(&body[..eol]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 2 + size + 2..];
    }
}

async fn status_json(http: SocketAddr) -> serde_json::Value {
    let response = get(http, "/status").await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    serde_json::from_str(&response.body).expect("JSON")
}

/// The samples of a Prometheus text exposition: (name, labels, value).
struct Samples(Vec<(String, BTreeMap<String, String>, f64)>);

impl Samples {
    fn parse(text: &str) -> Samples {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line.rsplit_once(' ').expect("value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').expect("closing brace");
                    let labels = rest
                        .split(',')
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label");
                            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                            (k.to_owned(), v.expect("quoted").to_owned())
                        })
                        .collect();
                    (name, labels)
                }
            };
            samples.push((name.to_owned(), labels, value));
        }
        Samples(samples)
    }

    /// Every sample of one metric.
    fn family<'s>(
        &'s self,
        name: &'s str,
    ) -> impl Iterator<Item = (&'s BTreeMap<String, String>, f64)> + 's {
        self.0
            .iter()
            .filter(move |(n, _, _)| n == name)
            .map(|(_, l, v)| (l, *v))
    }

    /// The sample with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut found = self.family(name).filter(|(l, _)| **l == want);
        let (_, value) = found.next()?;
        assert!(found.next().is_none(), "{name} {labels:?} twice");
        Some(value)
    }
}

// ---------------------------------------------------------------------------------------
// Helpers: the binary and the browser

fn pooldns(args: &[String], dir: &Path) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_pooldns"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pooldns");
    let out = child.wait_with_output().expect("wait for pooldns");
    assert!(out.status.code().is_some(), "killed: {out:?}");
    out
}

/// The bundled zone configuration in zones mode (it is in plan mode), written to `dir`.
fn zones_mode_config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo("zones/pool.ntp.org.toml")).unwrap();
    assert!(text.contains("mode = \"plan\""));
    let path = dir.join("zones-mode.toml");
    std::fs::write(&path, text.replace("mode = \"plan\"", "mode = \"zones\"")).unwrap();
    path
}

fn check_args(config: &Path, feed: &Path) -> Vec<String> {
    let path = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
    vec![
        "check".into(),
        "--config".into(),
        path(config),
        "--feed".into(),
        path(feed),
        "--geoip".into(),
        path(&repo(TEST_GEOIP)),
    ]
}

/// `pooldns explain` output: its labelled lines and the candidate rows (percent, id),
/// most likely first.
#[derive(Debug)]
struct Explained {
    lines: Vec<(String, String)>,
    candidates: Vec<(f64, u64)>,
}

impl Explained {
    fn parse(text: &str) -> Explained {
        let mut lines = Vec::new();
        let mut candidates = Vec::new();
        for line in text.lines() {
            if let Some(row) = line.strip_prefix("  ") {
                // "  100.000 %  id 101      192.0.2.101    1000000 kbit/s"
                let words: Vec<&str> = row.split_whitespace().collect();
                assert_eq!((words[1], words[2]), ("%", "id"), "{line}");
                candidates.push((words[0].parse().unwrap(), words[3].parse().unwrap()));
            } else {
                let (label, rest) = line.split_once(' ').expect("label");
                lines.push((label.to_owned(), rest.trim_start().to_owned()));
            }
        }
        Explained { lines, candidates }
    }

    fn line(&self, label: &str) -> &str {
        self.lines
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, text)| text.as_str())
            .unwrap_or_else(|| panic!("no {label} line in {self:?}"))
    }

    /// The answer line announces min(4, n) of n candidates, there are n rows, each a
    /// probability, and they sum to min(4, n) (each row rounded to 0.001 %).
    fn assert_probabilities(&self) {
        let n = self.candidates.len();
        let k = n.min(4);
        assert!(n > 0, "{self:?}");
        assert!(
            self.line("answer")
                .starts_with(&format!("{k} of {n} candidates")),
            "{self:?}"
        );
        assert!(self.candidates.iter().all(|&(p, _)| p > 0.0 && p <= 100.0));
        let sum: f64 = self.candidates.iter().map(|c| c.0).sum();
        assert!(
            (sum - 100.0 * k as f64).abs() <= 0.0005 * n as f64 + 1e-9,
            "sum {sum} for {k} of {n}: {self:?}"
        );
        let ids: BTreeSet<u64> = self.candidates.iter().map(|c| c.1).collect();
        assert_eq!(ids.len(), n, "a server listed twice");
        assert!(
            self.candidates.windows(2).all(|w| w[0].0 >= w[1].0),
            "not sorted"
        );
    }
}

/// Debian's chromium (or $POOLDNS_CHROMIUM), if installed; when it is not, `test` skips or,
/// in CI, fails ([`installed`]).
fn chromium(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("POOLDNS_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    installed(&[path.to_str()?], "chromium", test).then_some(path)
}

/// Where test artifacts go: `target/test-artifacts/` (or under $CARGO_TARGET_DIR).
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create artifacts directory");
    dir
}

/// The status page of `ops` as headless `chromium` renders it (its DOM), with a screenshot
/// written to `png`.
async fn browse(chromium: PathBuf, ops: &Ops, png: &Path) -> String {
    let url = format!("http://{}/", ops.http);
    let png = png.to_owned();
    tokio::task::spawn_blocking(move || run_chromium(&chromium, &url, &png))
        .await
        .expect("chromium thread")
}

/// Loads `url` in headless chromium, writes a 1200×2000 screenshot to `png` and returns the
/// rendered DOM. Chromium gets a fresh profile, no sandbox (CI runs as root), and no
/// background traffic: the only connection it makes is to `url`. Killed after 60 s.
fn run_chromium(chromium: &Path, url: &str, png: &Path) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,2000")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    // Read both pipes on threads so a chatty chromium never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium still running after 60 s: {}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = stdout.join().unwrap_or_default();
    let errors = stderr.join().unwrap_or_default();
    assert!(status.success(), "chromium: {status:?}\n{errors}");
    assert!(!dom.is_empty(), "chromium printed no DOM:\n{errors}");
    dom
}

/// The text from `start` to the next `end` (inclusive).
fn section<'d>(dom: &'d str, start: &str, end: &str) -> &'d str {
    let from = dom
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in:\n{dom}"));
    let to = dom[from..]
        .find(end)
        .map_or(dom.len(), |i| from + i + end.len());
    &dom[from..to]
}
