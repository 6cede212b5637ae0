//! The operator's HTTP surface: `/metrics` (Prometheus text format), `/healthz`, `/status`
//! (JSON) and `/` (a status page for people, server-rendered with inline SVG charts and no
//! external assets: load per Mbit/s by country against the fair line, each server's observed
//! load against its expected one, demand against capacity per continent). Everything here
//! reads the live table and sums the query counters; none of it touches the query path.

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

use crate::config::BalanceMode;
use crate::continent::{self, Continent};
use crate::metrics::{
    ECS, FAMILIES, GEO, Metrics, QTYPES, RCODES, RRL_ACTIONS, TRANSPORTS, UNKNOWN_COUNTRY,
};
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
        "dnssec": t.signed.as_ref().map(|z| serde_json::json!({
            "signatures": z.signatures,
            "signing_seconds": z.signing_time.as_secs_f64(),
            "inception": z.inception,
            "expiration": z.expiration,
            "keys": z.keys.iter().map(|&(tag, algorithm, ksk, active)| serde_json::json!({
                "tag": tag, "algorithm": algorithm, "ksk": ksk, "signing": active,
            })).collect::<Vec<_>>(),
        })),
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
    help(
        &mut out,
        "pooldns_rrl_total",
        "counter",
        "UDP answers over the response rate limit, by what was done with them.",
    );
    for (label, n) in RRL_ACTIONS.iter().zip(totals.rrl) {
        let _ = writeln!(out, "pooldns_rrl_total{{action=\"{label}\"}} {n}");
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
        "pooldns_udp_workers_active",
        "gauge",
        "UDP workers the kernel sends queries to, per listening address: 1 at low rates, all of them at high rates.",
    );
    let steering = s.metrics.udp_steering();
    for (addr, _, active, _) in &steering {
        let addr = addr.map_or_else(|| "?".to_string(), |a| a.to_string());
        let _ = writeln!(
            out,
            "pooldns_udp_workers_active{{listen=\"{addr}\"}} {active}"
        );
    }
    help(
        &mut out,
        "pooldns_udp_steering_switches_total",
        "counter",
        "Switches between one UDP worker and all of them, per listening address.",
    );
    for (addr, _, _, switches) in &steering {
        let addr = addr.map_or_else(|| "?".to_string(), |a| a.to_string());
        let _ = writeln!(
            out,
            "pooldns_udp_steering_switches_total{{listen=\"{addr}\"}} {switches}"
        );
    }
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
    if let Some(z) = &t.signed {
        single(
            &mut out,
            "pooldns_dnssec_signing_seconds",
            "gauge",
            "Time taken to sign the serving table.",
            z.signing_time.as_secs_f64(),
        );
        single(
            &mut out,
            "pooldns_dnssec_signatures",
            "gauge",
            "Signatures made for the serving table.",
            z.signatures,
        );
        single(
            &mut out,
            "pooldns_dnssec_expiration_timestamp_seconds",
            "gauge",
            "When the serving table's signatures expire (the earliest).",
            z.expiration,
        );
        help(
            &mut out,
            "pooldns_dnssec_key",
            "gauge",
            "The zone's published keys: 1 for a key that signs now, 0 for one only published.",
        );
        for &(tag, algorithm, ksk, active) in &z.keys {
            let role = if ksk { "ksk" } else { "zsk" };
            let _ = writeln!(
                out,
                "pooldns_dnssec_key{{tag=\"{tag}\",algorithm=\"{algorithm}\",role=\"{role}\"}} {}",
                u8::from(active)
            );
        }
    }
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
    for (m, &n) in t.members.iter().zip(&t.answers()) {
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
    match &t.signed {
        Some(z) => {
            let keys: Vec<String> = z
                .keys
                .iter()
                .map(|&(tag, algorithm, ksk, active)| {
                    format!(
                        "{} {tag} (algorithm {algorithm}{})",
                        if ksk { "KSK" } else { "ZSK" },
                        if active { "" } else { ", published only" }
                    )
                })
                .collect();
            let _ = write!(
                html,
                "<p id=\"dnssec\">Signed (DNSSEC): {} signatures, valid until {}; keys {}</p>",
                z.signatures,
                crate::report::utc_time(z.expiration),
                escape(&keys.join(", "))
            );
        }
        None => {
            html.push_str("<p id=\"dnssec\">Not signed (no [dnssec] in the zone configuration)</p>")
        }
    }

    html.push_str(&charts(&t, &t.answers()));

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

// ---------------------------------------------------------------------------------------
// The charts (issue 9, "See it"): load per Mbit/s by country against the fair line, each
// server's observed load against its expected one, and demand against capacity per
// continent. Every load is a multiple of the family's fair load: what a server would get
// if every server got traffic in proportion to its weight (its net speed, on the score
// ramp). 1× is fair, whatever the pool's size.

/// Each family's class (in the SVG), name and colour.
const CHART_FAMILIES: [(&str, &str, &str); 2] =
    [("v4", "IPv4", "#2563eb"), ("v6", "IPv6", "#ea580c")];

/// Where the expected loads come from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Basis {
    /// The serving plan (`balance.mode = "plan"`); `demand_known` is false when the plan
    /// had no demand and assumed it in proportion to weight.
    Plan { demand_known: bool, max_load: f64 },
    /// Strict zones for the demand the plan was made for.
    ZonesForPlanDemand,
    /// Strict zones for demand in proportion to each country's weight: no demand is known.
    ZonesForWeight,
}

/// One server's numbers in one family, as the charts use them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct ServerLoad {
    /// Its sampler weight (0: not a server of the family).
    weight: f64,
    /// Its expected load ÷ fair.
    expected: f64,
    /// Records that carried it since the table was built.
    served: u64,
}

/// What the charts show of one family.
struct FamilyLoads {
    family: Family,
    /// By member id; the other family's members are `ServerLoad::default()`.
    servers: Vec<ServerLoad>,
    /// The family's records served and total weight: the observed fair load is
    /// `served ÷ weight` per unit of weight.
    served: u64,
    weight: f64,
    /// Per country index: the share of the family's demand and of its weight.
    demand: Vec<f64>,
    capacity: Vec<f64>,
}

impl FamilyLoads {
    /// The expected loads of `family` under `basis`, with the records served per member.
    fn new(t: &Table, family: Family, basis: Basis, served: &[u64]) -> FamilyLoads {
        let global = t.zone(ZoneId::Global, family);
        // A zone's `netspeed` is the sum of its members' weights.
        let weight_shares: Vec<f64> = (0..continent::countries().count() as u16)
            .map(|c| {
                t.zone(ZoneId::Country(c), family).netspeed as f64 / global.netspeed.max(1) as f64
            })
            .collect();
        let plan = t.plan.as_ref().map(|p| &p[family as usize]);
        let (ratios, demand, capacity) = match (basis, plan) {
            (Basis::Plan { .. }, Some(p)) => (
                crate::report::plan_loads(t, family).map_or_else(Vec::new, |l| l.ratios),
                p.demand.to_vec(),
                p.capacity.to_vec(),
            ),
            (Basis::ZonesForPlanDemand, Some(p)) => (
                crate::report::zones_loads(t, family, &p.demand).ratios,
                p.demand.to_vec(),
                p.capacity.to_vec(),
            ),
            _ => (
                crate::report::zones_loads(t, family, &weight_shares).ratios,
                weight_shares.clone(),
                weight_shares,
            ),
        };
        let mut servers = vec![ServerLoad::default(); t.members.len()];
        for (m, ratio) in ratios {
            let Some(slot) = servers.get_mut(m as usize) else {
                continue;
            };
            *slot = ServerLoad {
                weight: f64::from(t.members[m as usize].weight),
                expected: ratio,
                served: served.get(m as usize).copied().unwrap_or(0),
            };
        }
        // The global zone holds every member of the family once.
        let (served_total, weight) = global.all.members().iter().fold((0, 0.0), |(n, w), &m| {
            let s = servers.get(m as usize).copied().unwrap_or_default();
            (n + s.served, w + s.weight)
        });
        if !matches!(basis, Basis::Plan { .. }) {
            // Strict zones answer with fewer than k records where a zone has fewer than k
            // servers, while `zones_loads` takes the fair load to be k records per answer:
            // its loads then average below 1. Scale them to average 1 (weighted), as the
            // observed loads do, so that the two compare. The plan fills every answer to
            // min(k, eligible), so its loads average 1 already and are shown as they are.
            let load: f64 = servers.iter().map(|s| s.expected * s.weight).sum();
            if load > 0.0 && weight > 0.0 {
                let mean = load / weight;
                for s in &mut servers {
                    s.expected /= mean;
                }
            }
        }
        FamilyLoads {
            family,
            servers,
            served: served_total,
            weight,
            demand,
            capacity,
        }
    }

    /// A server's observed load ÷ fair; None while nothing of the family was served.
    fn observed(&self, s: ServerLoad) -> Option<f64> {
        observed_ratio(s.served, s.weight, self.served, self.weight)
    }

    /// The family's countries with servers, by expected load, highest first.
    fn countries(&self, t: &Table) -> Vec<CountryLoad> {
        let sets: Vec<(u16, &[u32])> = (0..continent::countries().count() as u16)
            .map(|c| (c, t.zone(ZoneId::Country(c), self.family).all.members()))
            .collect();
        country_loads(&sets, &self.servers, (self.served, self.weight))
    }

    /// Each continent's share of demand and of weight, in `Continent::ALL` order.
    fn continents(&self, t: &Table) -> Vec<ContinentShares> {
        Continent::ALL
            .iter()
            .map(|&continent| {
                let (mut demand, mut capacity) = (0.0, 0.0);
                for c in 0..self.demand.len().max(self.capacity.len()) {
                    if t.continent_of(c as u16) == Some(continent) {
                        demand += self.demand.get(c).copied().unwrap_or(0.0);
                        capacity += self.capacity.get(c).copied().unwrap_or(0.0);
                    }
                }
                ContinentShares {
                    continent,
                    demand,
                    capacity,
                }
            })
            .collect()
    }
}

/// A continent's share of a family's demand and of its weight (capacity).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ContinentShares {
    continent: Continent,
    demand: f64,
    capacity: f64,
}

/// Observed load ÷ fair: the server's share of the family's records served ÷ its share of
/// the family's weight, so that over the whole family it averages 1 (weighted). None while
/// nothing was served, or for a server of no weight.
fn observed_ratio(served: u64, weight: f64, total_served: u64, total_weight: f64) -> Option<f64> {
    if total_served == 0 || weight <= 0.0 || total_weight <= 0.0 {
        return None;
    }
    Some((served as f64 / total_served as f64) / (weight / total_weight))
}

/// One country's servers of a family, summed.
#[derive(Debug, Clone, PartialEq)]
struct CountryLoad {
    /// The country index.
    country: u16,
    /// Its servers of the family.
    servers: usize,
    /// Their weight.
    weight: f64,
    /// Σ expected load of its servers ÷ Σ their weight ÷ fair.
    expected: f64,
    /// Records served to its servers and that per unit of weight ÷ the family's (None while
    /// nothing was served).
    served: u64,
    observed: Option<f64>,
}

/// Sums each country's servers: `sets` are (country index, member ids), `servers` the
/// loads by member id, `total` the family's records served and weight. Countries without
/// servers are left out; the rest come highest expected load first (then by index).
fn country_loads(
    sets: &[(u16, &[u32])],
    servers: &[ServerLoad],
    total: (u64, f64),
) -> Vec<CountryLoad> {
    let mut loads: Vec<CountryLoad> = sets
        .iter()
        .filter(|(_, members)| !members.is_empty())
        .map(|&(country, members)| {
            let (mut weight, mut load, mut served) = (0.0, 0.0, 0);
            for &m in members {
                let s = servers.get(m as usize).copied().unwrap_or_default();
                weight += s.weight;
                // expected = load ÷ (fair · weight), so load ÷ fair = expected · weight.
                load += s.expected * s.weight;
                served += s.served;
            }
            CountryLoad {
                country,
                servers: members.len(),
                weight,
                expected: if weight > 0.0 { load / weight } else { 0.0 },
                served,
                observed: observed_ratio(served, weight, total.0, total.1),
            }
        })
        .collect();
    loads.sort_by(|a, b| {
        b.expected
            .total_cmp(&a.expected)
            .then(a.country.cmp(&b.country))
    });
    loads
}

/// The three charts with a sentence above each, and one saying where the expected loads
/// come from.
fn charts(t: &Table, served: &[u64]) -> String {
    let basis = match (&t.plan, t.config.balance.mode) {
        (Some(plans), BalanceMode::Plan) => Basis::Plan {
            demand_known: plans.iter().any(|p| p.demand_known),
            max_load: t.config.balance.max_load,
        },
        (Some(_), BalanceMode::Zones) => Basis::ZonesForPlanDemand,
        (None, _) => Basis::ZonesForWeight,
    };
    let loads = [Family::V4, Family::V6].map(|f| FamilyLoads::new(t, f, basis, served));
    let total = loads[0].served + loads[1].served;
    let mut html = String::new();
    let where_from = match basis {
        Basis::Plan {
            demand_known: true,
            max_load,
        } => format!(
            "Expected loads are the serving plan's (<code>balance.mode = \"plan\"</code>, \
             cap {max_load}× fair) for the demand it was made for."
        ),
        Basis::Plan {
            demand_known: false,
            max_load,
        } => format!(
            "Expected loads are the serving plan's (<code>balance.mode = \"plan\"</code>, \
             cap {max_load}× fair); no demand is known, so the plan assumes each country asks \
             in proportion to its servers' net speed."
        ),
        Basis::ZonesForPlanDemand => "Expected loads are what strict country zones \
            (<code>balance.mode = \"zones\"</code>) give for the demand of the plan."
            .to_owned(),
        Basis::ZonesForWeight => "Expected loads are what strict country zones \
            (<code>balance.mode = \"zones\"</code>) give if each country asked in proportion to \
            its servers' net speed: zones mode knows no demand, so they are about fair wherever \
            a country has servers, and the observed marks show where clients really are."
            .to_owned(),
    };
    let _ = write!(
        html,
        "<h2>Load per Mbit/s</h2><p id=\"basis\">A server's load is the traffic it gets per \
         Mbit/s of net speed, as a multiple of the fair load: 1× is what every server would get \
         if traffic went to servers in proportion to their net speed, wherever they are. \
         {where_from} Observed loads count the {total} A/AAAA records served since the table \
         was built.</p>"
    );
    html.push_str(
        "<h3>By country</h3><p>Each bar is a country with servers, rising from the fair line \
         to its servers' expected load per Mbit/s (down when they get less than fair), and the \
         black mark is what they observed; point at a bar for the country's name and numbers.</p>",
    );
    html.push_str(&country_chart(t, &loads, basis));
    html.push_str(
        "<h3>Per server</h3><p>Each dot is a server, placed across by its expected load and up \
         by its observed one on log scales, so servers on the diagonal get what was expected \
         (with few records counted they scatter around it by chance); point at a dot for the \
         server.</p>",
    );
    html.push_str(&server_chart(t, &loads));
    html.push_str(
        "<h3>Demand and capacity per continent</h3><p>For each continent, the left bar is its \
         share of the family's client demand and the right bar its share of the family's net \
         speed: where demand is the taller, its clients need servers from elsewhere for loads \
         to stay fair.</p>",
    );
    html.push_str(&continent_chart(&loads, t));
    html
}

/// Chart 1: one panel per family, a bar per country with servers from the fair line to
/// its expected load (log scale), a mark at its observed load, the fair line and the cap.
fn country_chart(t: &Table, loads: &[FamilyLoads; 2], basis: Basis) -> String {
    let cap = match basis {
        Basis::Plan { max_load, .. } => Some(max_load),
        _ => None,
    };
    let panels: Vec<(&FamilyLoads, Vec<CountryLoad>)> = loads
        .iter()
        .map(|l| (l, l.countries(t)))
        .filter(|(_, countries)| !countries.is_empty())
        .collect();
    let axis = LogAxis::covering(
        panels
            .iter()
            .flat_map(|(_, cs)| cs.iter().flat_map(|c| [Some(c.expected), c.observed]))
            .flatten()
            .chain(cap),
    );
    let most = panels.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let (left, right, panel_h, plot_h) = (60.0, 80.0, 250.0, 180.0);
    let slot = (880.0 / most.max(1) as f64).clamp(16.0, 60.0);
    let w = (left + right + slot * most as f64).max(480.0);
    let h = 10.0 + panel_h * panels.len().max(1) as f64;
    let mut svg = format!(
        "<div style=\"overflow-x:auto\"><svg id=\"country-loads\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"expected and observed load per Mbit/s of each country, against the fair load\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>"
    );
    if panels.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{left}\" y=\"30\" font-size=\"12\">no eligible server</text>"
        );
    }
    for (i, (family, countries)) in panels.iter().enumerate() {
        let (class, name, colour) = CHART_FAMILIES[family.family as usize];
        let top = 10.0 + panel_h * i as f64 + 24.0;
        let y = |v: f64| top + plot_h - axis.fraction(v) * plot_h;
        let right_edge = w - right;
        let _ = write!(
            svg,
            "<text x=\"{left}\" y=\"{:.1}\" font-size=\"13\" font-weight=\"bold\">{name}: {} countries</text>",
            top - 8.0,
            countries.len()
        );
        for v in axis.ticks() {
            let _ = write!(
                svg,
                "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{right_edge}\" y2=\"{0:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\" font-size=\"11\" class=\"tick\">{3}</text>",
                y(v),
                left - 6.0,
                y(v) + 4.0,
                times_text(v)
            );
        }
        let fair_y = y(1.0);
        for (j, c) in countries.iter().enumerate() {
            let x = left + slot * j as f64;
            let (bar_top, bar_bottom) = if c.expected >= 1.0 {
                (y(c.expected), fair_y)
            } else {
                (fair_y, y(c.expected))
            };
            let label = t.zone_label(ZoneId::Country(c.country));
            let netspeed: u64 = t
                .zone(ZoneId::Country(c.country), family.family)
                .all
                .members()
                .iter()
                .map(|&m| u64::from(t.members[m as usize].netspeed))
                .sum();
            let observed = match c.observed {
                Some(o) => format!("observed {o:.2}× ({} records)", c.served),
                None => "nothing served yet".to_owned(),
            };
            let _ = write!(
                svg,
                "<g class=\"country {class}\"><title>{}: {} {name} server{}, {} Mbit/s; expected \
                 {:.2}× fair, {observed}</title>\
                 <rect class=\"expected {class}\" x=\"{:.1}\" y=\"{bar_top:.1}\" width=\"{:.1}\" \
                 height=\"{:.1}\" fill=\"{colour}\" fill-opacity=\"0.7\"/>",
                country_name(label),
                c.servers,
                if c.servers == 1 { "" } else { "s" },
                netspeed as f64 / 1000.0,
                c.expected,
                x + slot * 0.15,
                slot * 0.7,
                (bar_bottom - bar_top).max(1.0),
            );
            if let Some(o) = c.observed {
                let _ = write!(
                    svg,
                    "<line class=\"observed\" x1=\"{:.1}\" y1=\"{2:.1}\" x2=\"{:.1}\" y2=\"{2:.1}\" \
                     stroke=\"#000\" stroke-width=\"3\"/>",
                    x + slot * 0.05,
                    x + slot * 0.95,
                    y(o),
                );
            }
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{label}</text></g>",
                x + slot / 2.0,
                top + plot_h + 14.0,
            );
        }
        let _ = write!(
            svg,
            "<line class=\"fair\" x1=\"{left}\" y1=\"{fair_y:.1}\" x2=\"{right_edge}\" y2=\"{fair_y:.1}\" \
             stroke=\"#000\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\">fair 1×</text>\
             <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#000\"/>",
            right_edge + 4.0,
            fair_y + 4.0,
            top + plot_h,
        );
        if let Some(cap) = cap {
            let cap_y = y(cap);
            let _ = write!(
                svg,
                "<line class=\"cap\" x1=\"{left}\" y1=\"{cap_y:.1}\" x2=\"{right_edge}\" y2=\"{cap_y:.1}\" \
                 stroke=\"#c00\" stroke-dasharray=\"6 3\"/>\
                 <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" fill=\"#c00\">cap {cap}×</text>",
                right_edge + 4.0,
                cap_y - 2.0,
            );
        }
        // The key: what a bar and a mark are.
        let key_y = top + plot_h + 34.0;
        let _ = write!(
            svg,
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\" fill-opacity=\"0.7\"/>\
             <text x=\"{}\" y=\"{key_y:.1}\" font-size=\"11\">expected load per Mbit/s</text>\
             <line x1=\"{}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#000\" stroke-width=\"3\"/>\
             <text x=\"{}\" y=\"{key_y:.1}\" font-size=\"11\">observed</text>",
            key_y - 9.0,
            left + 14.0,
            left + 170.0,
            key_y - 4.0,
            left + 184.0,
            key_y - 4.0,
            left + 188.0,
        );
    }
    svg.push_str("</svg></div>");
    svg
}

/// Chart 2: one dot per server, observed load against expected load on log axes, the
/// diagonal, one colour per family and a legend.
fn server_chart(t: &Table, loads: &[FamilyLoads; 2]) -> String {
    // (member, family, expected, observed)
    let dots: Vec<(usize, usize, ServerLoad, Option<f64>)> = loads
        .iter()
        .enumerate()
        .flat_map(|(f, l)| {
            l.servers
                .iter()
                .enumerate()
                .filter(|(_, s)| s.weight > 0.0)
                .map(move |(m, &s)| (m, f, s, l.observed(s)))
        })
        .collect();
    let axis = LogAxis::covering(
        dots.iter()
            .flat_map(|&(_, _, s, o)| [Some(s.expected), o])
            .flatten(),
    );
    let (w, h) = (640.0, 480.0);
    let (left, right, top, bottom) = (70.0, 20.0, 50.0, 50.0);
    let x = |v: f64| left + axis.fraction(v) * (w - left - right);
    let y = |v: f64| h - bottom - axis.fraction(v) * (h - top - bottom);
    let (lo, hi) = (10f64.powi(axis.lo), 10f64.powi(axis.hi));
    let mut svg = format!(
        "<svg id=\"server-loads\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"observed against expected load per Mbit/s of each server, log scales\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>"
    );
    for v in axis.ticks() {
        let (tx, ty) = (x(v), y(v));
        let label = times_text(v);
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
        "<line class=\"diagonal\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" \
         stroke-dasharray=\"4\"/>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#000\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#000\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\">expected load per Mbit/s (× fair)</text>\
         <text x=\"14\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">\
         observed load per Mbit/s (× fair)</text>",
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
    for (m, family, s, observed) in dots {
        let (class, name, colour) = CHART_FAMILIES[family];
        let member = &t.members[m];
        // Not served yet: no place on a log scale; hollow, on the bottom axis.
        let (fill, observed_text) = match observed {
            Some(o) if o > 0.0 => ("0.6", format!("observed {o:.2}× ({} records)", s.served)),
            Some(_) => ("0", "not served yet".to_owned()),
            None => ("0", "nothing served yet".to_owned()),
        };
        let _ = write!(
            svg,
            "<circle class=\"{class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\" \
             fill-opacity=\"{fill}\" stroke=\"{colour}\"><title>id {} {} ({name}), {} Mbit/s{}: \
             expected {:.2}× fair, {observed_text}</title></circle>",
            x(s.expected),
            y(observed.unwrap_or(0.0)),
            member.id,
            member.ip,
            f64::from(member.netspeed) / 1000.0,
            ramp_text(member),
            s.expected,
        );
    }
    // Legend above the plot.
    let mut lx = left;
    for (l, (class, name, colour)) in loads.iter().zip(CHART_FAMILIES) {
        let servers = l.servers.iter().filter(|s| s.weight > 0.0).count();
        let _ = write!(
            svg,
            "<rect class=\"legend-{class}\" x=\"{lx}\" y=\"20\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"29\" font-size=\"12\">{name} ({servers} servers)</text>",
            lx + 14.0,
        );
        lx += 130.0;
    }
    let _ = write!(
        svg,
        "<line x1=\"{lx}\" y1=\"25\" x2=\"{}\" y2=\"25\" stroke=\"#999\" stroke-dasharray=\"4\"/>\
         <text x=\"{}\" y=\"29\" font-size=\"12\">observed = expected · hollow: not served yet</text></svg>",
        lx + 20.0,
        lx + 24.0,
    );
    svg
}

/// Chart 3: one panel per family with servers, a pair of bars per continent: its share of
/// demand and its share of capacity.
fn continent_chart(loads: &[FamilyLoads; 2], t: &Table) -> String {
    const DEMAND: &str = "#7c3aed";
    const CAPACITY: &str = "#16a34a";
    let panels: Vec<(&FamilyLoads, Vec<ContinentShares>)> = loads
        .iter()
        .filter(|l| l.weight > 0.0)
        .map(|l| (l, l.continents(t)))
        .collect();
    let (w, left, right, panel_h, plot_h) = (640.0, 50.0, 20.0, 230.0, 160.0);
    let h = 40.0 + panel_h * panels.len().max(1) as f64;
    let mut svg = format!(
        "<svg id=\"continent-demand\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"share of demand and share of capacity per continent\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>\
         <rect x=\"{left}\" y=\"10\" width=\"10\" height=\"10\" fill=\"{DEMAND}\"/>\
         <text x=\"{}\" y=\"19\" font-size=\"12\">share of client demand</text>\
         <rect x=\"{}\" y=\"10\" width=\"10\" height=\"10\" fill=\"{CAPACITY}\"/>\
         <text x=\"{}\" y=\"19\" font-size=\"12\">share of net speed (capacity)</text>",
        left + 14.0,
        left + 180.0,
        left + 194.0,
    );
    if panels.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{left}\" y=\"50\" font-size=\"12\">no eligible server</text>"
        );
    }
    for (i, (family, continents)) in panels.iter().enumerate() {
        let (class, name, _) = CHART_FAMILIES[family.family as usize];
        let top = 40.0 + panel_h * i as f64 + 20.0;
        let highest = continents
            .iter()
            .map(|c| c.demand.max(c.capacity))
            .fold(0.0, f64::max);
        let scale = ShareScale::covering(highest);
        let y = |v: f64| top + plot_h - (v / scale.top).clamp(0.0, 1.0) * plot_h;
        let _ = write!(
            svg,
            "<text x=\"{left}\" y=\"{:.1}\" font-size=\"13\" font-weight=\"bold\">{name}</text>",
            top - 8.0
        );
        for v in scale.ticks() {
            let _ = write!(
                svg,
                "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\" font-size=\"11\" class=\"tick\">{4:.0} %</text>",
                y(v),
                w - right,
                left - 6.0,
                y(v) + 4.0,
                v * 100.0
            );
        }
        let slot = (w - left - right) / continents.len().max(1) as f64;
        for (j, c) in continents.iter().enumerate() {
            let ContinentShares {
                continent,
                demand,
                capacity,
            } = *c;
            let x = left + slot * j as f64;
            let bar = slot * 0.35;
            let _ = write!(svg, "<g class=\"continent {class}\">");
            for (kind, share, colour, bx, what) in [
                ("demand", demand, DEMAND, x + slot * 0.12, "client demand"),
                ("capacity", capacity, CAPACITY, x + slot * 0.53, "net speed"),
            ] {
                let _ = write!(
                    svg,
                    "<rect class=\"{kind} {class}\" x=\"{bx:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" \
                     height=\"{:.1}\" fill=\"{colour}\"><title>{continent}: {:.1} % of the {name} \
                     {what}</title></rect>",
                    y(share),
                    top + plot_h - y(share),
                    share * 100.0,
                );
            }
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{continent}</text></g>",
                x + slot / 2.0,
                top + plot_h + 16.0,
            );
        }
        let _ = write!(
            svg,
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#000\"/>",
            top + plot_h,
            w - right,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A linear axis for shares from 0 up to a round top: 10 % steps up to 50 %, else 20 %.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ShareScale {
    top: f64,
    step: f64,
}

impl ShareScale {
    /// The smallest round top at or above `highest` (a share, 0 … 1); 10 % at least.
    fn covering(highest: f64) -> ShareScale {
        let highest = if highest.is_finite() {
            highest.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let step = if highest > 0.5 { 0.2 } else { 0.1 };
        // Tenths, so that rounding (0.30000000000000004) does not add a step.
        let tenths = (highest * 10.0 - 1e-9).ceil().max(1.0);
        let steps = (tenths / (step * 10.0)).ceil();
        ShareScale {
            top: (steps * step).min(1.0),
            step,
        }
    }

    /// 0, step, 2·step … top.
    fn ticks(self) -> Vec<f64> {
        let n = (self.top / self.step).round() as usize;
        (0..=n).map(|i| i as f64 * self.step).collect()
    }
}

/// ", weighted as 2.5 Mbit/s on the score ramp" for a server whose weight is below its net
/// speed (its score is below `answers.full_weight_score`); else nothing.
fn ramp_text(member: &crate::table::Member) -> String {
    if member.weight < member.netspeed {
        format!(
            ", weighted as {} Mbit/s on the score ramp",
            f64::from(member.weight) / 1000.0
        )
    } else {
        String::new()
    }
}

/// A load as the axes label it: "0.01×", "0.5×", "2×", "100×".
fn times_text(v: f64) -> String {
    // Ticks are 1, 2 or 5 times a power of ten: as many decimals as the power is below 0.
    let decimals = usize::try_from(-((v.log10() + 1e-9).floor() as i32)).unwrap_or(0);
    format!("{v:.decimals$}×")
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
        format!("{serial} ({})", crate::report::utc_time(when))
    } else {
        serial.to_string()
    }
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

/// A logarithmic axis over whole decades, 10^lo … 10^hi, for loads (multiples of fair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogAxis {
    lo: i32,
    hi: i32,
}

impl LogAxis {
    /// At most this many decades: smaller values are drawn at the axis' start.
    const MAX_DECADES: i32 = 6;

    /// The decades around every positive value, 0.1 … 10 at least (fair, 1, in the
    /// middle when nothing is far from it).
    fn covering(values: impl IntoIterator<Item = f64>) -> LogAxis {
        let (mut min, mut max) = (0.1f64, 10f64);
        for v in values.into_iter().filter(|v| *v > 0.0 && v.is_finite()) {
            min = min.min(v);
            max = max.max(v);
        }
        // Loads of servers and countries lie within about 1e-9 … 1e9 (finite, positive,
        // ratios of counts and weights): the casts hold exponents of a few digits.
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
    /// decades.
    fn ticks(self) -> Vec<f64> {
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
                ticks.push(f64::from(step) * 10f64.powi(exponent));
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
    fn uptime_in_days_and_hours() {
        let text = |secs| uptime_text(Duration::from_secs(secs));
        assert_eq!(text(0), "0 min");
        assert_eq!(text(59 * 60 + 59), "59 min");
        assert_eq!(text(4 * 3600 + 12 * 60), "4 h 12 min");
        assert_eq!(text(3 * 86_400 + 4 * 3600 + 59 * 60), "3 d 4 h");
        assert_eq!(text(86_400), "1 d 0 h");
    }

    #[test]
    fn log_axis_covers_whole_decades_around_fair_with_load_ticks() {
        let axis = LogAxis::covering([0.04, 0.6, 0.0, 2.0]);
        assert_eq!(axis, LogAxis { lo: -2, hi: 1 });
        let labels: Vec<String> = axis.ticks().into_iter().map(times_text).collect();
        assert_eq!(labels, ["0.01×", "0.1×", "1×", "10×"]);
        assert_eq!(axis.fraction(0.0), 0.0);
        assert_eq!(axis.fraction(0.000_01), 0.0);
        assert!((axis.fraction(1.0) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(axis.fraction(10.0), 1.0);
        assert_eq!(axis.fraction(500.0), 1.0);
        // Near fair: 0.1× … 10× with 2 and 5 between the decades.
        let near = LogAxis::covering([0.8, 1.0, 1.3]);
        assert_eq!(near, LogAxis { lo: -1, hi: 1 });
        let labels: Vec<String> = near.ticks().into_iter().map(times_text).collect();
        assert_eq!(labels, ["0.1×", "0.2×", "0.5×", "1×", "2×", "5×", "10×"]);
        // Wide (zones mode gives a lone server hundreds of times its share): decades only,
        // at most six of them, the smallest values at the start.
        let wide = LogAxis::covering([1e-9, 286.0]);
        assert_eq!(wide, LogAxis { lo: -3, hi: 3 });
        let labels: Vec<String> = wide.ticks().into_iter().map(times_text).collect();
        assert_eq!(
            labels,
            ["0.001×", "0.01×", "0.1×", "1×", "10×", "100×", "1000×"]
        );
        // Nothing, or nothing positive: still an axis around fair.
        assert_eq!(LogAxis::covering([]), LogAxis { lo: -1, hi: 1 });
        assert_eq!(
            LogAxis::covering([0.0, f64::NAN]),
            LogAxis { lo: -1, hi: 1 }
        );
    }

    #[test]
    fn share_scale_rounds_up_to_tens_of_percent() {
        let ticks = |s: ShareScale| -> Vec<String> {
            s.ticks()
                .iter()
                .map(|v| format!("{:.0}", v * 100.0))
                .collect()
        };
        assert_eq!(ShareScale::covering(0.0).top, 0.1);
        assert_eq!(ticks(ShareScale::covering(0.0)), ["0", "10"]);
        assert_eq!(ticks(ShareScale::covering(0.3)), ["0", "10", "20", "30"]);
        assert_eq!(
            ticks(ShareScale::covering(0.31)),
            ["0", "10", "20", "30", "40"]
        );
        assert_eq!(
            ticks(ShareScale::covering(0.62)),
            ["0", "20", "40", "60", "80"]
        );
        assert_eq!(
            ticks(ShareScale::covering(1.0)),
            ["0", "20", "40", "60", "80", "100"]
        );
        assert_eq!(ShareScale::covering(f64::NAN).top, 1.0);
    }

    #[test]
    fn observed_load_is_the_share_served_over_the_share_of_weight() {
        // A server of a quarter of the weight that got half the records: twice fair.
        assert_eq!(observed_ratio(50, 25.0, 100, 100.0), Some(2.0));
        assert_eq!(observed_ratio(0, 25.0, 100, 100.0), Some(0.0));
        // Nothing served yet, or no weight: no observed load.
        assert_eq!(observed_ratio(0, 25.0, 0, 100.0), None);
        assert_eq!(observed_ratio(5, 0.0, 100, 100.0), None);
    }

    #[test]
    fn a_countrys_load_is_its_servers_load_over_their_weight() {
        let load = |weight: f64, expected: f64, served: u64| ServerLoad {
            weight,
            expected,
            served,
        };
        // Members 0, 1 in country 3; member 2 alone in country 1; country 2 empty;
        // member 3 belongs to the other family.
        let servers = [
            load(1000.0, 0.5, 10),
            load(3000.0, 1.5, 50),
            load(500.0, 4.0, 40),
            ServerLoad::default(),
        ];
        let total = (100, 4500.0);
        let sets: [(u16, &[u32]); 3] = [(1, &[2]), (2, &[]), (3, &[0, 1])];
        let countries = country_loads(&sets, &servers, total);
        assert_eq!(
            countries,
            [
                CountryLoad {
                    country: 1,
                    servers: 1,
                    weight: 500.0,
                    expected: 4.0,
                    served: 40,
                    // 40 % of the records for 1/9 of the weight.
                    observed: Some((40.0 / 100.0) / (500.0 / 4500.0)),
                },
                CountryLoad {
                    country: 3,
                    servers: 2,
                    weight: 4000.0,
                    // (0.5 · 1000 + 1.5 · 3000) ÷ 4000
                    expected: 1.25,
                    served: 60,
                    observed: Some(0.6 / (4000.0 / 4500.0)),
                },
            ]
        );
        // Over the family, observed loads average to fair, weighted by weight.
        let mean: f64 = countries
            .iter()
            .map(|c| c.observed.unwrap() * c.weight)
            .sum::<f64>()
            / total.1;
        assert!((mean - 1.0).abs() < 1e-12, "{mean}");
        // Nothing served: expected loads only.
        let quiet = country_loads(&sets, &servers, (0, 4500.0));
        assert!(quiet.iter().all(|c| c.observed.is_none()), "{quiet:?}");
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
