//! The operator's HTTP surface: `/metrics` (Prometheus text format), `/healthz`, `/status`
//! (JSON) and `/` (a status page for people, server-rendered with an inline SVG chart and no
//! external assets). Everything here reads the live table and sums the query counters; none
//! of it touches the query path.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::continent::{self, Continent};
use crate::metrics::{ECS, GEO, Metrics, QTYPES, RCODES, TRANSPORTS};
use crate::reload::ReloadStatus;
use crate::server::SharedTable;
use crate::table::{Family, Table, ZoneId};

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The live table.
    pub table: SharedTable,
    /// Query counters.
    pub metrics: Arc<Metrics>,
    /// Load history.
    pub reload: Arc<ReloadStatus>,
    /// When the process started.
    pub started: Instant,
}

/// Serves the HTTP endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz(State(s): State<HttpState>) -> Response {
    // A table exists from startup on; it is "serving" once it has any eligible server.
    let t = s.table.load();
    if t.eligible(Family::V4) + t.eligible(Family::V6) > 0 {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no eligible servers\n").into_response()
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

async fn status(State(s): State<HttpState>) -> Response {
    let t = s.table.load();
    let zones: Vec<serde_json::Value> = zone_rows(&t)
        .into_iter()
        .map(|z| {
            serde_json::json!({
                "zone": z.label,
                "eligible_v4": z.count[0], "eligible_v6": z.count[1],
                "netspeed_v4": z.netspeed[0], "netspeed_v6": z.netspeed[1],
            })
        })
        .collect();
    let refusal = s.reload.last_refusal.lock().ok().and_then(|g| g.clone());
    let body = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": s.started.elapsed().as_secs(),
        "serial": t.serial,
        "epoch": t.epoch,
        "table_built": unix(t.built_at),
        "table_build_seconds": t.build_time.as_secs_f64(),
        "last_good_load": s.reload.last_good.lock().ok().and_then(|g| *g).map(unix),
        "feed": {
            "source": t.feed.source,
            "entries": t.feed.entries,
            "loaded": t.feed.loaded,
            "skipped": t.feed.skipped.iter().map(|k| k.render(&t.feed.source)).collect::<Vec<_>>(),
        },
        "eligible": { "v4": t.eligible(Family::V4), "v6": t.eligible(Family::V6) },
        "loads": {
            "ok": s.reload.loads_ok.load(Ordering::Relaxed),
            "refused": s.reload.loads_refused.load(Ordering::Relaxed),
        },
        "last_refusal": refusal.map(|(when, why)| serde_json::json!({"time": unix(when), "reason": why})),
        "zones": zones,
    });
    axum::Json(body).into_response()
}

/// One pool zone's counts, per family.
struct ZoneRow {
    label: &'static str,
    zone: ZoneId,
    count: [usize; 2],
    netspeed: [u64; 2],
}

/// Global, the continents and every country, with their eligible counts.
fn zone_rows(t: &Table) -> Vec<ZoneRow> {
    let mut zones = vec![ZoneId::Global];
    zones.extend(Continent::ALL.iter().map(|&c| ZoneId::Continent(c)));
    zones.extend((0..continent::countries().count()).map(|i| ZoneId::Country(i as u16)));
    zones
        .into_iter()
        .map(|zone| {
            let [v4, v6] = [Family::V4, Family::V6].map(|f| t.zone(zone, f));
            ZoneRow {
                label: t.zone_label(zone),
                zone,
                count: [v4.all.len(), v6.all.len()],
                netspeed: [v4.netspeed, v6.netspeed],
            }
        })
        .collect()
}

async fn metrics(State(s): State<HttpState>) -> Response {
    let t = s.table.load();
    let totals = s.metrics.totals();
    let mut out = String::with_capacity(64 * 1024);
    help(
        &mut out,
        "pooldns_build_info",
        "gauge",
        "Version of the running binary.",
    );
    let _ = writeln!(
        out,
        "pooldns_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    help(
        &mut out,
        "pooldns_queries_total",
        "counter",
        "Queries answered, by transport, qtype and rcode.",
    );
    for (tr, per_type) in totals.queries.iter().enumerate() {
        for (q, per_rcode) in per_type.iter().enumerate() {
            for (r, &n) in per_rcode.iter().enumerate() {
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "pooldns_queries_total{{transport=\"{}\",qtype=\"{}\",rcode=\"{}\"}} {n}",
                        TRANSPORTS[tr], QTYPES[q].1, RCODES[r].1
                    );
                }
            }
        }
    }
    single(
        &mut out,
        "pooldns_dropped_total",
        "counter",
        "Packets that got no reply (short, or QR set).",
        totals.dropped,
    );
    single(
        &mut out,
        "pooldns_truncated_total",
        "counter",
        "UDP answers sent with TC set.",
        totals.truncated,
    );
    help(
        &mut out,
        "pooldns_geo_decisions_total",
        "counter",
        "Pool answers by the kind of zone that answered (country hit, continent or global fallback).",
    );
    for (label, n) in GEO.iter().zip(totals.geo) {
        let _ = writeln!(out, "pooldns_geo_decisions_total{{zone=\"{label}\"}} {n}");
    }
    help(
        &mut out,
        "pooldns_ecs_total",
        "counter",
        "Queries by what their EDNS Client Subnet option did.",
    );
    for (label, n) in ECS.iter().zip(totals.ecs) {
        let _ = writeln!(out, "pooldns_ecs_total{{ecs=\"{label}\"}} {n}");
    }
    if let Some(log) = &s.metrics.query_log {
        help(
            &mut out,
            "pooldns_query_log_dropped_total",
            "counter",
            "Query log entries dropped because the writer fell behind.",
        );
        let dropped = log.dropped.load(Ordering::Relaxed);
        let _ = writeln!(out, "pooldns_query_log_dropped_total {dropped}");
        help(
            &mut out,
            "pooldns_query_log_written_total",
            "counter",
            "Query log entries written.",
        );
        let written = log.written.load(Ordering::Relaxed);
        let _ = writeln!(out, "pooldns_query_log_written_total {written}");
    }
    single(
        &mut out,
        "pooldns_tcp_connections_total",
        "counter",
        "TCP connections accepted.",
        s.metrics.tcp_accepted.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        "pooldns_tcp_evicted_total",
        "counter",
        "TCP connections closed to make room under the cap.",
        s.metrics.tcp_evicted.load(Ordering::Relaxed),
    );
    help(
        &mut out,
        "pooldns_feed_loads_total",
        "counter",
        "Feed loads, by result.",
    );
    let _ = writeln!(
        out,
        "pooldns_feed_loads_total{{result=\"ok\"}} {}",
        s.reload.loads_ok.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "pooldns_feed_loads_total{{result=\"refused\"}} {}",
        s.reload.loads_refused.load(Ordering::Relaxed)
    );
    help(
        &mut out,
        "pooldns_feed_entries_skipped_total",
        "counter",
        "Feed entries skipped, by reason.",
    );
    if let Ok(skipped) = s.reload.skipped.lock() {
        for (reason, n) in skipped.iter() {
            let _ = writeln!(
                out,
                "pooldns_feed_entries_skipped_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }
    help(
        &mut out,
        "pooldns_last_good_load_timestamp_seconds",
        "gauge",
        "When the last good feed was published.",
    );
    let last_good = s
        .reload
        .last_good
        .lock()
        .ok()
        .and_then(|g| *g)
        .map_or(0.0, unix);
    let _ = writeln!(out, "pooldns_last_good_load_timestamp_seconds {last_good}");
    single(
        &mut out,
        "pooldns_table_build_seconds",
        "gauge",
        "Time taken to build the serving table.",
        t.build_time.as_secs_f64(),
    );
    single(
        &mut out,
        "pooldns_soa_serial",
        "gauge",
        "SOA serial of the serving table.",
        t.serial,
    );
    help(
        &mut out,
        "pooldns_eligible_servers",
        "gauge",
        "Eligible servers per pool zone and family.",
    );
    let rows = zone_rows(&t);
    for z in rows.iter().filter(|z| z.count[0] + z.count[1] > 0) {
        for (f, family) in ["v4", "v6"].iter().enumerate() {
            let _ = writeln!(
                out,
                "pooldns_eligible_servers{{zone=\"{}\",family=\"{family}\"}} {}",
                z.label, z.count[f]
            );
        }
    }
    help(
        &mut out,
        "pooldns_netspeed_kbits",
        "gauge",
        "Total net speed of eligible servers per pool zone and family.",
    );
    for z in rows.iter().filter(|z| z.count[0] + z.count[1] > 0) {
        for (f, family) in ["v4", "v6"].iter().enumerate() {
            let _ = writeln!(
                out,
                "pooldns_netspeed_kbits{{zone=\"{}\",family=\"{family}\"}} {}",
                z.label, z.netspeed[f]
            );
        }
    }
    help(
        &mut out,
        "pooldns_server_answers_total",
        "counter",
        "Answers that carried each server, by feed id (since the table was built).",
    );
    for (m, &n) in t
        .members
        .iter()
        .zip(&s.metrics.served(t.generation, t.members.len()))
    {
        if n > 0 {
            let _ = writeln!(out, "pooldns_server_answers_total{{id=\"{}\"}} {n}", m.id);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Writes the HELP and TYPE lines of a metric.
fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

/// Writes a metric with one value and no labels.
fn single(out: &mut String, name: &str, kind: &str, text: &str, value: impl std::fmt::Display) {
    help(out, name, kind, text);
    let _ = writeln!(out, "{name} {value}");
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn page(State(s): State<HttpState>) -> Html<String> {
    let t = s.table.load();
    let mut html = String::with_capacity(256 * 1024);
    let origin = crate::name::render(&t.config.origin);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>pooldns: {origin}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}\
         td,th{{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}}td:first-child,th:first-child{{text-align:left}}\
         .bad{{background:#fee;border:1px solid #c00;padding:0.5em}}.ok{{background:#efe;border:1px solid #080;padding:0.5em}}</style></head><body>\
         <h1>pooldns for {origin}</h1>"
    );
    let _ = write!(
        html,
        "<p>Serial {} · {} eligible IPv4 and {} eligible IPv6 servers · feed {} ({} entries, {} skipped) · up {} s</p>",
        t.serial,
        t.eligible(Family::V4),
        t.eligible(Family::V6),
        escape(&t.feed.source),
        t.feed.entries,
        t.feed.skipped.len(),
        s.started.elapsed().as_secs()
    );
    match s.reload.last_refusal.lock().ok().and_then(|g| g.clone()) {
        Some((when, why)) => {
            let ago = SystemTime::now()
                .duration_since(when)
                .map_or(0, |d| d.as_secs());
            let _ = write!(
                html,
                "<p class=\"bad\" id=\"refusal\">The last feed was refused {ago} s ago, and the previous good table \
                 is still serving. Reason: {}</p>",
                escape(&why)
            );
        }
        None => html.push_str(
            "<p class=\"ok\" id=\"refusal\">No feed has been refused since the server started.</p>",
        ),
    }

    html.push_str("<h2>Answer shares</h2><p>Each dot is a server: its share of all answers so far (up) against its share \
        of the net speed of its address family (across). A fair pool puts the dots on the diagonal; geo-targeting moves \
        servers of busy regions above it.</p>");
    html.push_str(&share_chart(
        &t,
        &s.metrics.served(t.generation, t.members.len()),
    ));

    html.push_str("<h2>Zones</h2><table id=\"zones\"><tr><th>zone</th><th>IPv4 servers</th><th>IPv4 Mbit/s</th>\
        <th>IPv6 servers</th><th>IPv6 Mbit/s</th></tr>");
    let rows = zone_rows(&t);
    let mut empty = Vec::new();
    for z in &rows {
        let is_country = matches!(z.zone, ZoneId::Country(_));
        if is_country && z.count == [0, 0] {
            // Aliased countries (gb → uk) are served by their target: not empty.
            if let ZoneId::Country(i) = z.zone {
                if t.country(z.label) == Some(i) {
                    empty.push(z.label);
                }
            }
            continue;
        }
        let label = match z.zone {
            ZoneId::Global => "all servers".to_owned(),
            ZoneId::Continent(c) => format!("<b>{c}</b>"),
            ZoneId::Country(_) => z.label.to_owned(),
        };
        let _ = write!(
            html,
            "<tr><td>{label}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            z.count[0],
            z.netspeed[0] / 1000,
            z.count[1],
            z.netspeed[1] / 1000
        );
    }
    html.push_str("</table>");
    let _ = write!(
        html,
        "<h2>Countries without an eligible server</h2><p id=\"empty\">{} countries: {}</p></body></html>",
        empty.len(),
        empty.join(" ")
    );
    Html(html)
}

/// A scatter plot of observed answer share against expected (net-speed) share per server.
fn share_chart(t: &Table, counts: &[u64]) -> String {
    // Shares are within each address family: A and AAAA answers are separate pools.
    let mut served = [0u64; 2];
    let mut speed = [0u64; 2];
    for (m, &n) in t.members.iter().zip(counts) {
        served[Family::of(m.ip) as usize] += n;
        speed[Family::of(m.ip) as usize] += u64::from(m.netspeed);
    }
    let total_served = served[0] + served[1];
    let points: Vec<(f64, f64)> = t
        .members
        .iter()
        .zip(counts)
        .map(|(m, &n)| {
            let expected = m.netspeed as f64 / speed[Family::of(m.ip) as usize].max(1) as f64;
            let family = Family::of(m.ip) as usize;
            let observed = n as f64 / served[family].max(1) as f64;
            (expected, observed)
        })
        .collect();
    let max = points.iter().fold(1e-9f64, |m, &(e, o)| m.max(e).max(o)) * 1.05;
    let (w, h, pad) = (600.0, 400.0, 40.0);
    let x = |v: f64| pad + v / max * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v / max * (h - 2.0 * pad);
    let mut svg = format!(
        "<svg id=\"shares\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         role=\"img\" aria-label=\"observed against expected answer share per server\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>\
         <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\" stroke-dasharray=\"4\"/>\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#000\"/>\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"#000\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\">expected share (net speed) — max {:.3} %</text>\
         <text x=\"12\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">observed share of answers</text>",
        x(0.0),
        y(0.0),
        x(max),
        y(max),
        h - pad,
        w - pad,
        h - pad,
        h - pad,
        w / 2.0,
        h - 8.0,
        max * 100.0,
        h / 2.0,
        h / 2.0,
    );
    for (e, o) in points {
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"#2563eb\" fill-opacity=\"0.5\"/>",
            x(e),
            y(o)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"20\" font-size=\"12\">{} answers counted</text></svg>",
        pad, total_served
    );
    svg
}
