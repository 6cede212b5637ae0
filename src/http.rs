//! The operator's HTTP surface: `/metrics` (Prometheus text format), `/healthz`, `/status`
//! (JSON) and `/` (a status page for people, server-rendered with an inline SVG chart and no
//! external assets). Everything here reads the live table and sums the query counters; none
//! of it touches the query path.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::continent::{self, Continent};
use crate::metrics::{ECS, FAMILIES, GEO, Metrics, QTYPES, RCODES, TRANSPORTS, UNKNOWN_COUNTRY};
use crate::reload::{AdminHandle, Input, ReloadStatus};
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
    /// The reloader, for `POST /reload` from loopback; None turns the endpoint off.
    pub admin: Option<AdminHandle>,
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
        .route("/reload", post(reload))
        .with_state(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// `POST /reload[?accept-shrink=true]`: what `pooldns reload` sends. Reloads every input
/// as SIGHUP does; with `accept-shrink`, one feed may drop more than half of the eligible
/// servers. Only loopback peers may ask, whatever address the listener is on: metrics may
/// be scraped from afar, the pool may not be emptied from afar.
async fn reload(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(options): Query<ReloadOptions>,
) -> Response {
    if !peer.ip().is_loopback() && !peer.ip().to_canonical().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "reload is only accepted from loopback\n",
        )
            .into_response();
    }
    let Some(admin) = s.admin else {
        return (StatusCode::NOT_FOUND, "reload is not available here\n").into_response();
    };
    match admin.reload(options.accept_shrink).await {
        Ok(text) => (StatusCode::OK, format!("{text}\n")).into_response(),
        Err(text) => (StatusCode::CONFLICT, format!("{text}\n")).into_response(),
    }
}

/// The query of `POST /reload`.
#[derive(Debug, Default, serde::Deserialize)]
struct ReloadOptions {
    #[serde(default, rename = "accept-shrink")]
    accept_shrink: bool,
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

/// When an input last loaded fine, and from where.
fn last_good(reload: &ReloadStatus, input: Input) -> Option<(SystemTime, String)> {
    reload
        .input(input)
        .last_good
        .lock()
        .ok()
        .and_then(|g| g.clone())
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
    let inputs: serde_json::Map<String, serde_json::Value> = Input::ALL
        .into_iter()
        .map(|input| {
            let status = s.reload.input(input);
            let good = last_good(&s.reload, input);
            let error = status.error.lock().ok().and_then(|g| g.clone());
            let value = serde_json::json!({
                "source": good.as_ref().map(|(_, from)| from.clone()),
                "last_good": good.map(|(when, _)| unix(when)),
                "ok": status.ok.load(Ordering::Relaxed),
                "refused": status.refused.load(Ordering::Relaxed),
                "error": error.map(|(when, why)| serde_json::json!({"time": unix(when), "reason": why})),
            });
            (input.label().to_owned(), value)
        })
        .collect();
    let body = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": s.started.elapsed().as_secs(),
        "serial": t.serial,
        "epoch": t.epoch,
        "table_built": unix(t.built_at),
        "table_build_seconds": t.build_time.as_secs_f64(),
        "last_good_load": last_good(&s.reload, Input::Feed).map(|(when, _)| unix(when)),
        "feed": {
            "source": t.feed.source,
            "entries": t.feed.entries,
            "loaded": t.feed.loaded,
            "skipped": t.feed.skipped.iter().map(|k| k.render(&t.feed.source)).collect::<Vec<_>>(),
        },
        "eligible": { "v4": t.eligible(Family::V4), "v6": t.eligible(Family::V6) },
        "inputs": inputs,
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
    help(
        &mut out,
        "pooldns_client_queries_total",
        "counter",
        "Pool-name queries answered from the pool, by the clients' country (where GeoIP \
         placed them; the named country at country names; unknown: not placed, or a \
         continent name) and family (v4: A, v6: AAAA): the demand of the serving plan.",
    );
    for (slot, counts) in totals.client_queries.iter().enumerate() {
        let country = if slot == UNKNOWN_COUNTRY {
            "unknown"
        } else {
            // Slots below UNKNOWN_COUNTRY are country indices (fewer than 255).
            t.zone_label(ZoneId::Country(slot as u16))
        };
        for (family, &n) in FAMILIES.iter().zip(counts) {
            if n > 0 {
                let _ = writeln!(
                    out,
                    "pooldns_client_queries_total{{country=\"{country}\",family=\"{family}\"}} {n}"
                );
            }
        }
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
        "pooldns_loads_total",
        "counter",
        "Loads of each input (feed, config, geoip), by result.",
    );
    for input in Input::ALL {
        let status = s.reload.input(input);
        for (result, n) in [("ok", &status.ok), ("refused", &status.refused)] {
            let _ = writeln!(
                out,
                "pooldns_loads_total{{input=\"{}\",result=\"{result}\"}} {}",
                input.label(),
                n.load(Ordering::Relaxed)
            );
        }
    }
    help(
        &mut out,
        "pooldns_load_failing",
        "gauge",
        "1 while the latest load of the input failed (the last good one keeps serving).",
    );
    for input in Input::ALL {
        let failing = s
            .reload
            .input(input)
            .error
            .lock()
            .ok()
            .is_some_and(|e| e.is_some());
        let _ = writeln!(
            out,
            "pooldns_load_failing{{input=\"{}\"}} {}",
            input.label(),
            u8::from(failing)
        );
    }
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
        "When each input last loaded fine.",
    );
    for input in Input::ALL {
        let last_good = last_good(&s.reload, input).map_or(0.0, |(when, _)| unix(when));
        let _ = writeln!(
            out,
            "pooldns_last_good_load_timestamp_seconds{{input=\"{}\"}} {last_good}",
            input.label()
        );
    }
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
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{PAGE_REFRESH}\"><title>pooldns: {origin}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}\
         td,th{{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}}td:first-child,th:first-child{{text-align:left}}\
         td.country{{padding-left:2em}}\
         .bad{{background:#fee;border:1px solid #c00;padding:0.5em}}.ok{{background:#efe;border:1px solid #080;padding:0.5em}}</style></head><body>\
         <h1>pooldns for {origin}</h1>"
    );
    let _ = write!(
        html,
        "<p id=\"summary\">Serial {} · {} eligible IPv4 and {} eligible IPv6 servers · feed {} ({} entries, {} skipped) · up {}</p>",
        serial_text(t.serial, SystemTime::now()),
        t.eligible(Family::V4),
        t.eligible(Family::V6),
        escape(&t.feed.source),
        t.feed.entries,
        t.feed.skipped.len(),
        uptime_text(s.started.elapsed())
    );
    html.push_str(&input_boxes(&s.reload, SystemTime::now()));

    html.push_str("<h2>Records served per server</h2><p>Each dot is a server: its share of the A or AAAA records \
        served for its address family since the table was built (up) against its share of that family's net speed \
        (across), both on log scales. An answer carries several records, one per server. A fair pool puts the dots on \
        the diagonal; geo-targeting moves servers of busy regions above it.</p>");
    html.push_str(&share_chart(
        &t,
        &s.metrics.served(t.generation, t.members.len()),
    ));

    html.push_str(&zone_table(&t));
    let _ = write!(
        html,
        "<p>This page reloads itself every {PAGE_REFRESH} s.</p></body></html>"
    );
    Html(html)
}

/// One box per input: green while its latest load was good, red with the whole error
/// (its lines kept) while it fails; both say when it last loaded fine.
fn input_boxes(reload: &ReloadStatus, now: SystemTime) -> String {
    let ago = |when: SystemTime| {
        let secs = now.duration_since(when).map_or(0, |d| d.as_secs());
        match secs {
            0..120 => format!("{secs} s ago"),
            120..7200 => format!("{} min ago", secs / 60),
            _ => format!("{} h ago", secs / 3600),
        }
    };
    let mut html = String::from("<div id=\"inputs\">");
    for input in Input::ALL {
        let status = reload.input(input);
        if status.ok.load(Ordering::Relaxed) + status.refused.load(Ordering::Relaxed) == 0 {
            continue; // not an input of this server (no demand file)
        }
        let good = last_good(reload, input);
        let good_text = match &good {
            Some((when, from)) => format!(
                "last loaded fine {} from <code>{}</code>",
                ago(*when),
                escape(from)
            ),
            None => "never loaded".to_owned(),
        };
        let counts = format!(
            "{} loads, {} refused",
            status.ok.load(Ordering::Relaxed),
            status.refused.load(Ordering::Relaxed)
        );
        match status.error.lock().ok().and_then(|g| g.clone()) {
            Some((when, why)) => {
                let _ = write!(
                    html,
                    "<div class=\"bad\" id=\"input-{label}\"><b>{title}</b>: the latest load was refused {}; \
                     the last good one keeps serving ({good_text}; {counts}).<pre>{}</pre></div>",
                    ago(when),
                    escape(&why),
                    label = input.label(),
                    title = input.title(),
                );
            }
            None => {
                let _ = write!(
                    html,
                    "<div class=\"ok\" id=\"input-{label}\"><b>{title}</b>: {good_text} ({counts}).</div>",
                    label = input.label(),
                    title = input.title(),
                );
            }
        }
    }
    html.push_str("</div>");
    html
}

/// A scatter plot, one dot per server, of its share of the A or AAAA records served for its
/// address family against its share of that family's net speed. Both axes are logarithmic:
/// shares span decades (in a pool of 3,000 servers some have 0.001 % and some 1 %), and on
/// linear axes all but the largest servers sat in one corner. One colour per family.
fn share_chart(t: &Table, counts: &[u64]) -> String {
    const FAMILIES: [(&str, &str, &str); 2] =
        [("v4", "IPv4", "#2563eb"), ("v6", "IPv6", "#ea580c")];
    // Shares are within each address family: A and AAAA answers are separate pools.
    let mut served = [0u64; 2];
    let mut speed = [0u64; 2];
    let mut servers = [0usize; 2];
    for (m, &n) in t.members.iter().zip(counts) {
        let family = Family::of(m.ip) as usize;
        served[family] += n;
        speed[family] += u64::from(m.netspeed);
        servers[family] += 1;
    }
    // (member, family, expected share, observed share)
    let dots: Vec<(&crate::table::Member, usize, f64, f64)> = t
        .members
        .iter()
        .zip(counts)
        .map(|(m, &n)| {
            let family = Family::of(m.ip) as usize;
            let expected = f64::from(m.netspeed) / speed[family].max(1) as f64;
            let observed = n as f64 / served[family].max(1) as f64;
            (m, family, expected, observed)
        })
        .collect();
    let axis = LogAxis::covering(dots.iter().flat_map(|&(_, _, e, o)| [e, o]));
    let (w, h) = (640.0, 460.0);
    let (left, right, top, bottom) = (70.0, 20.0, 50.0, 50.0);
    let x = |v: f64| left + axis.fraction(v) * (w - left - right);
    let y = |v: f64| h - bottom - axis.fraction(v) * (h - top - bottom);
    let (lo, hi) = (10f64.powi(axis.lo), 10f64.powi(axis.hi));
    let mut svg = format!(
        "<svg id=\"shares\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         role=\"img\" aria-label=\"share of records served against share of net speed per server, log scales\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>"
    );
    for (v, label) in axis.ticks() {
        let (tx, ty) = (x(v), y(v));
        let _ = write!(
            svg,
            "<line x1=\"{tx:.1}\" y1=\"{top}\" x2=\"{tx:.1}\" y2=\"{}\" stroke=\"#eee\"/>\
             <line x1=\"{left}\" y1=\"{ty:.1}\" x2=\"{}\" y2=\"{ty:.1}\" stroke=\"#eee\"/>\
             <text x=\"{tx:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" class=\"tick\">{label}</text>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\" class=\"tick\">{label}</text>",
            h - bottom,
            w - right,
            h - bottom + 16.0,
            left - 6.0,
            ty + 4.0,
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"4\"/>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#000\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#000\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\">share of the family's net speed</text>\
         <text x=\"14\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">\
         share of the family's A/AAAA records served</text>",
        x(lo),
        y(lo),
        x(hi),
        y(hi),
        h - bottom,
        w - right,
        h - bottom,
        h - bottom,
        (left + w - right) / 2.0,
        h - 12.0,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
    );
    for (m, family, expected, observed) in dots {
        let (class, name, colour) = FAMILIES[family];
        // A server not served yet has no place on a log scale: hollow, on the bottom axis.
        let fill = if observed > 0.0 { "0.6" } else { "0" };
        let _ = write!(
            svg,
            "<circle class=\"{class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\" fill-opacity=\"{fill}\" \
             stroke=\"{colour}\"><title>id {} {}: {:.3} % of {name} records served, {:.3} % of {name} net speed</title></circle>",
            x(expected),
            y(observed),
            m.id,
            m.ip,
            observed * 100.0,
            expected * 100.0,
        );
    }
    // Legend and count, above the plot.
    let total = served[0] + served[1];
    let _ = write!(
        svg,
        "<text x=\"{left}\" y=\"18\" font-size=\"12\">{total} A/AAAA records served since the table was built</text>"
    );
    let mut lx = left;
    for (i, (class, name, colour)) in FAMILIES.into_iter().enumerate() {
        let _ = write!(
            svg,
            "<rect class=\"legend-{class}\" x=\"{lx}\" y=\"28\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"37\" font-size=\"12\">{name} ({} servers)</text>",
            lx + 14.0,
            servers[i],
        );
        lx += 130.0;
    }
    let _ = write!(
        svg,
        "<line x1=\"{lx}\" y1=\"33\" x2=\"{}\" y2=\"33\" stroke=\"#999\" stroke-dasharray=\"4\"/>\
         <text x=\"{}\" y=\"37\" font-size=\"12\">fair share · hollow: not served yet</text></svg>",
        lx + 20.0,
        lx + 24.0,
    );
    svg
}

/// How often the status page reloads itself, seconds.
const PAGE_REFRESH: u32 = 30;

/// The zone table: the global zone, then each continent with its countries under it, by
/// name; then the countries without an eligible server, by continent.
fn zone_table(t: &Table) -> String {
    let rows = zone_rows(t);
    let global = t.zone_label(ZoneId::Global);
    let mut html = format!(
        "<h2>Zones</h2><p><code>{global}</code> is the whole pool: every eligible server. \
         Each continent is followed by its countries.</p>\
         <table id=\"zones\"><tr><th>zone</th><th>IPv4 servers</th><th>IPv4 Mbit/s</th>\
         <th>IPv6 servers</th><th>IPv6 Mbit/s</th></tr>"
    );
    let row = |html: &mut String, cell: &str, z: &ZoneRow| {
        let _ = write!(
            html,
            "<tr>{cell}<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            z.count[0],
            z.netspeed[0] / 1000,
            z.count[1],
            z.netspeed[1] / 1000
        );
    };
    let mut empty: Vec<(Continent, Vec<String>)> = Vec::new();
    for z in rows.iter().filter(|z| z.zone == ZoneId::Global) {
        row(&mut html, &format!("<td>{}</td>", escape(global)), z);
    }
    for continent in Continent::ALL {
        if let Some(z) = rows.iter().find(|z| z.zone == ZoneId::Continent(continent)) {
            row(&mut html, &format!("<td><b>{continent}</b></td>"), z);
        }
        let mut countries: Vec<(&ZoneRow, u16, String)> = rows
            .iter()
            .filter_map(|z| match z.zone {
                ZoneId::Country(i) if t.continent_of(i) == Some(continent) => {
                    Some((z, i, country_name(z.label)))
                }
                _ => None,
            })
            .collect();
        countries.sort_by_cached_key(|(_, _, name)| sort_key(name));
        let mut without = Vec::new();
        for (z, i, name) in countries {
            if z.count != [0, 0] {
                row(&mut html, &format!("<td class=\"country\">{name}</td>"), z);
            } else if t.country(z.label) == Some(i) {
                // Aliased codes (gb → uk) are served by their target: not empty.
                without.push(name);
            }
        }
        if !without.is_empty() {
            empty.push((continent, without));
        }
    }
    html.push_str("</table>");
    let count: usize = empty.iter().map(|(_, names)| names.len()).sum();
    let _ = write!(
        html,
        "<h2>Countries without an eligible server</h2><p>{count} countries. Clients there get \
         servers of their continent, or of the whole pool when it has none.</p><ul id=\"empty\">"
    );
    for (continent, names) in empty {
        let _ = write!(
            html,
            "<li><b>{continent}</b> ({}): {}</li>",
            names.len(),
            names.join(", ")
        );
    }
    html.push_str("</ul>");
    html
}

/// "Germany (de)": the country's name and its zone label, escaped for HTML.
fn country_name(code: &str) -> String {
    match continent::name_of(code) {
        Some(name) => format!("{} ({code})", escape(name)),
        None => escape(code),
    }
}

/// Sorts names the way people look them up: "Åland Islands" with the A's, "Türkiye" with
/// the T's. Only the letters with diacritics that the country names use are folded.
fn sort_key(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'Å' => 'A',
            'ç' => 'c',
            'é' => 'e',
            'ô' => 'o',
            'ü' => 'u',
            c => c,
        })
        .collect()
}

/// A serial as the page shows it: the number, and the UTC time it stands for when it is a
/// plausible unix time (2000-01-01 up to a day from now). Serials are unix times when the
/// feed has none, and feeds often write one; a date-shaped serial such as 2026112201
/// (which, read as a unix time, would be in 2034) is shown as the number alone.
fn serial_text(serial: u32, now: SystemTime) -> String {
    const Y2000: u64 = 946_684_800;
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let when = u64::from(serial);
    if (Y2000..=now + 86_400).contains(&when) {
        format!("{serial} ({})", utc_text(when))
    } else {
        serial.to_string()
    }
}

/// "2025-11-22 08:00:00 UTC" for a unix time.
fn utc_text(unix: u64) -> String {
    let (year, month, day) = civil_from_days(unix / 86_400);
    let secs = unix % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The Gregorian (year, month, day) of a count of days since 1970-01-01: Howard Hinnant's
/// `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>), which counts
/// in 400-year eras of 146,097 days from 0000-03-01 so that leap days fall at the end of a
/// year. Unsigned: days before 1970 are not asked for.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// "3 d 4 h"; under a day "4 h 12 min", under an hour "12 min".
fn uptime_text(up: Duration) -> String {
    let secs = up.as_secs();
    let (days, hours, minutes) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes} min"),
        (0, _) => format!("{hours} h {minutes} min"),
        _ => format!("{days} d {hours} h"),
    }
}

/// A logarithmic axis over whole decades, 10^lo … 10^hi, for shares (0 … 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogAxis {
    lo: i32,
    hi: i32,
}

impl LogAxis {
    /// At most this many decades: smaller shares are drawn at the axis' start.
    const MAX_DECADES: i32 = 6;

    /// The decades around every positive value; 0.1 % … 100 % when there is none.
    fn covering(values: impl IntoIterator<Item = f64>) -> LogAxis {
        let (mut min, mut max) = (f64::INFINITY, 0.0f64);
        for v in values.into_iter().filter(|v| *v > 0.0 && v.is_finite()) {
            min = min.min(v);
            max = max.max(v);
        }
        if max == 0.0 {
            return LogAxis { lo: -3, hi: 0 };
        }
        // Shares are small: the casts hold exponents between about -10 and 0.
        let hi = max.log10().ceil() as i32;
        let lo = (min.log10().floor() as i32)
            .max(hi - Self::MAX_DECADES)
            .min(hi - 1);
        LogAxis { lo, hi }
    }

    /// Where `v` lies: 0 at 10^lo (and below, 0 included), 1 at 10^hi.
    fn fraction(self, v: f64) -> f64 {
        if v <= 0.0 {
            return 0.0;
        }
        ((v.log10() - f64::from(self.lo)) / f64::from(self.hi - self.lo)).clamp(0.0, 1.0)
    }

    /// The ticks: each decade, and 2 and 5 within each when the axis spans at most two
    /// decades; as (value, label in percent).
    fn ticks(self) -> Vec<(f64, String)> {
        let steps: &[u32] = if self.hi - self.lo <= 2 {
            &[1, 2, 5]
        } else {
            &[1]
        };
        let mut ticks = Vec::new();
        for exponent in self.lo..=self.hi {
            for &step in steps {
                if exponent == self.hi && step > 1 {
                    break;
                }
                // step · 10^exponent as a share is step · 10^(exponent + 2) percent.
                let decimals = usize::try_from(-(exponent + 2)).unwrap_or(0);
                let percent = f64::from(step) * 10f64.powi(exponent + 2);
                ticks.push((
                    f64::from(step) * 10f64.powi(exponent),
                    format!("{percent:.decimals$} %"),
                ));
            }
        }
        ticks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_a_serial_that_is_a_plausible_unix_time() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_000_000); // 2025-11-24
        assert_eq!(
            serial_text(1_763_798_400, now),
            "1763798400 (2025-11-22 08:00:00 UTC)"
        );
        assert_eq!(
            serial_text(946_684_800, now),
            "946684800 (2000-01-01 00:00:00 UTC)"
        );
        // Before 2000, far in the future (a date-shaped serial read as seconds), or small.
        for raw in [946_684_799, 2_026_112_201, 7, 0, u32::MAX] {
            assert_eq!(serial_text(raw, now), raw.to_string());
        }
        // Up to a day ahead of the clock still reads as a time.
        assert!(serial_text(1_764_086_400, now).ends_with("UTC)"));
        assert!(!serial_text(1_764_086_401, now).ends_with("UTC)"));
    }

    #[test]
    fn utc_text_handles_leap_days_and_century_rules() {
        for (unix, text) in [
            (0, "1970-01-01 00:00:00 UTC"),
            (951_782_400, "2000-02-29 00:00:00 UTC"),
            (951_868_799, "2000-02-29 23:59:59 UTC"),
            (951_868_800, "2000-03-01 00:00:00 UTC"),
            (1_709_164_800, "2024-02-29 00:00:00 UTC"),
            (1_735_689_599, "2024-12-31 23:59:59 UTC"),
            (4_107_542_400, "2100-03-01 00:00:00 UTC"),
            (4_294_967_295, "2106-02-07 06:28:15 UTC"),
        ] {
            assert_eq!(utc_text(unix), text, "{unix}");
        }
        // Every day from 1970 to 2110 follows the one before it.
        let mut previous = civil_from_days(0);
        for days in 1..51_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = (y, m, d) == (py, pm + 1, 1);
            let next_year = (y, m, d) == (py + 1, 1, 1) && (pm, pd) == (12, 31);
            assert!(
                next_day || next_month || next_year,
                "{previous:?} → {:?}",
                (y, m, d)
            );
            previous = (y, m, d);
        }
    }

    #[test]
    fn uptime_in_days_and_hours() {
        let text = |secs| uptime_text(Duration::from_secs(secs));
        assert_eq!(text(0), "0 min");
        assert_eq!(text(59 * 60 + 59), "59 min");
        assert_eq!(text(4 * 3600 + 12 * 60), "4 h 12 min");
        assert_eq!(text(3 * 86_400 + 4 * 3600 + 59 * 60), "3 d 4 h");
        assert_eq!(text(86_400), "1 d 0 h");
    }

    #[test]
    fn log_axis_covers_whole_decades_with_percent_ticks() {
        let axis = LogAxis::covering([0.004, 0.06, 0.0, 0.02]);
        assert_eq!(axis, LogAxis { lo: -3, hi: -1 });
        let labels: Vec<String> = axis.ticks().into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            labels,
            ["0.1 %", "0.2 %", "0.5 %", "1 %", "2 %", "5 %", "10 %"]
        );
        assert_eq!(axis.fraction(0.0), 0.0);
        assert_eq!(axis.fraction(0.000_01), 0.0);
        assert!((axis.fraction(0.01) - 0.5).abs() < 1e-12);
        assert_eq!(axis.fraction(0.1), 1.0);
        // Wide: decades only, at most six of them.
        let wide = LogAxis::covering([1e-9, 0.5]);
        assert_eq!(wide, LogAxis { lo: -6, hi: 0 });
        let labels: Vec<String> = wide.ticks().into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            labels,
            [
                "0.0001 %", "0.001 %", "0.01 %", "0.1 %", "1 %", "10 %", "100 %"
            ]
        );
        // One value, or none: still an axis.
        assert_eq!(LogAxis::covering([1.0]), LogAxis { lo: -1, hi: 0 });
        assert_eq!(LogAxis::covering([]), LogAxis { lo: -3, hi: 0 });
    }

    #[test]
    fn countries_by_name_sorted_as_people_read() {
        assert_eq!(country_name("de"), "Germany (de)");
        assert_eq!(country_name("ci"), "Côte d'Ivoire (ci)");
        assert_eq!(
            country_name("uk"),
            "United Kingdom of Great Britain and Northern Ireland (uk)"
        );
        let mut names = ["Austria", "Åland Islands", "Albania", "Türkiye", "Tunisia"];
        names.sort_by_cached_key(|n| sort_key(n));
        assert_eq!(
            names,
            ["Åland Islands", "Albania", "Austria", "Tunisia", "Türkiye"]
        );
    }
}
