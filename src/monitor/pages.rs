//! The monitor's HTTP surface (`--http`): `/metrics` (probes by result, offsets and delays,
//! the clock), `/monitor/scores.json` (what peers read), `/monitor/feed.json` (the feed as
//! written, for `serve --feed URL`), `/` (the servers by score) and
//! `/monitor/servers/{id}` (a server's score and offset over time as server-rendered SVG,
//! like the pool's score graph, with no external assets) with its data at
//! `/monitor/servers/{id}/history.json`. Everything reads the book; nothing here probes.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::history::Probe;
use super::ntp::{KINDS, render_refid};
use super::probe::Prober;
use super::{Book, DELAY_BUCKETS, Histogram, Monitor, OFFSET_BUCKETS, peers, unix};

/// What the handlers read.
#[derive(Clone)]
struct Pages {
    monitor: Arc<Monitor>,
    prober: Arc<Prober>,
}

/// The monitor's routes.
pub fn router(monitor: Arc<Monitor>, prober: Arc<Prober>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/monitor/scores.json", get(scores))
        .route("/monitor/feed.json", get(feed))
        .route("/monitor/servers/{id}", get(server_page))
        .route("/monitor/servers/{id}/history.json", get(history_json))
        .with_state(Pages { monitor, prober })
}

async fn scores(State(p): State<Pages>) -> Response {
    let file = {
        let book = p.monitor.book();
        peers::render_scores(&book, SystemTime::now(), p.monitor.options.window)
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&file).unwrap_or_default(),
    )
        .into_response()
}

/// `/monitor/feed.json`: the feed as last written to `--out`, for `serve --feed URL`;
/// `304 Not Modified` when the client already has it.
async fn feed(State(p): State<Pages>, headers: axum::http::HeaderMap) -> Response {
    let Some(feed) = p.monitor.feed() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no feed written yet\n").into_response();
    };
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == feed.etag || tag.trim() == "*");
    if matches {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, feed.etag.clone())],
        )
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::ETAG, feed.etag.clone()),
        ],
        feed.bytes.clone(),
    )
        .into_response()
}

fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, bounds: &[f64], h: &Histogram) {
    let mut cumulative = 0;
    for (i, bound) in bounds.iter().enumerate() {
        cumulative += h.counts.get(i).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

async fn metrics(State(p): State<Pages>) -> Response {
    let book = p.monitor.book();
    let mut out = String::with_capacity(4096);
    help(
        &mut out,
        "pooldns_monitor_probes_total",
        "counter",
        "Probes ended, by result.",
    );
    for (i, kind) in KINDS.iter().enumerate() {
        let _ = writeln!(
            out,
            "pooldns_monitor_probes_total{{result=\"{kind}\"}} {}",
            book.counters.probes[i]
        );
    }
    help(
        &mut out,
        "pooldns_monitor_unscored_probes_total",
        "counter",
        "Probes not scored because the local clock was unsynchronised or suspect.",
    );
    let _ = writeln!(
        out,
        "pooldns_monitor_unscored_probes_total {}",
        book.counters.unscored
    );
    help(
        &mut out,
        "pooldns_monitor_replies_ignored_total",
        "counter",
        "Replies dropped: malformed, or matching no request waiting (wrong origin timestamp, \
         unknown source, too late).",
    );
    for (reason, n) in [
        ("malformed", &p.prober.ignored.malformed),
        ("unmatched", &p.prober.ignored.unmatched),
    ] {
        let _ = writeln!(
            out,
            "pooldns_monitor_replies_ignored_total{{reason=\"{reason}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    help(
        &mut out,
        "pooldns_monitor_offset_seconds",
        "histogram",
        "Absolute offsets of the replies with times.",
    );
    histogram(
        &mut out,
        "pooldns_monitor_offset_seconds",
        &OFFSET_BUCKETS,
        &book.counters.offsets,
    );
    help(
        &mut out,
        "pooldns_monitor_delay_seconds",
        "histogram",
        "Round-trip delays of the replies with times.",
    );
    histogram(
        &mut out,
        "pooldns_monitor_delay_seconds",
        &DELAY_BUCKETS,
        &book.counters.delays,
    );
    help(
        &mut out,
        "pooldns_monitor_clock_synchronised",
        "gauge",
        "1 while the local clock is synchronised (kernel adjtimex).",
    );
    let synced = book.clock.as_ref().is_some_and(|c| c.is_synchronised());
    let _ = writeln!(
        out,
        "pooldns_monitor_clock_synchronised {}",
        u8::from(synced)
    );
    help(
        &mut out,
        "pooldns_monitor_clock_suspect",
        "gauge",
        "1 while most servers disagree with the local clock in the same direction.",
    );
    let _ = writeln!(
        out,
        "pooldns_monitor_clock_suspect {}",
        u8::from(book.suspect)
    );
    help(
        &mut out,
        "pooldns_monitor_scoring",
        "gauge",
        "1 while probes are scored; 0 while the last scores are kept.",
    );
    let _ = writeln!(out, "pooldns_monitor_scoring {}", u8::from(book.scoring()));
    help(
        &mut out,
        "pooldns_monitor_servers",
        "gauge",
        "Registered servers, and those with a score of at least 10.",
    );
    let usable = book
        .servers
        .iter()
        .filter(|t| t.score >= super::score::USABLE)
        .count();
    let _ = writeln!(
        out,
        "pooldns_monitor_servers{{state=\"registered\"}} {}",
        book.servers.len()
    );
    let _ = writeln!(out, "pooldns_monitor_servers{{state=\"usable\"}} {usable}");
    help(
        &mut out,
        "pooldns_monitor_feed_writes_total",
        "counter",
        "Feed files written, and writes that failed.",
    );
    let _ = writeln!(
        out,
        "pooldns_monitor_feed_writes_total{{outcome=\"ok\"}} {}",
        book.counters.feed_writes
    );
    let _ = writeln!(
        out,
        "pooldns_monitor_feed_writes_total{{outcome=\"error\"}} {}",
        book.counters.feed_write_errors
    );
    help(
        &mut out,
        "pooldns_monitor_peer_up",
        "gauge",
        "1 when the last read of a peer's scores succeeded.",
    );
    for peer in &book.peers {
        let _ = writeln!(
            out,
            "pooldns_monitor_peer_up{{peer=\"{}\"}} {}",
            peer.url.replace(['"', '\\', '\n'], "_"),
            u8::from(peer.fetched_at.is_some() && peer.error.is_none())
        );
    }
    drop(book);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Minimal HTML escaping for text in element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}\
td:nth-child(2),th:nth-child(2){text-align:left}.warn{background:#fdd;padding:8px;border:1px solid #c00}\
.ok{color:#070}.bad{color:#b00}";

fn clock_banner(book: &Book) -> String {
    match book.not_scoring_because() {
        Some(why) => format!(
            "<p class=\"warn\">Not scoring: {}. The last scores are kept.</p>",
            escape(&why)
        ),
        None => "<p class=\"ok\">The local clock is synchronised: scoring.</p>".to_owned(),
    }
}

fn offset_ms(offset: Option<f64>) -> String {
    offset.map_or("–".to_owned(), |o| format!("{:.3}", o * 1000.0))
}

async fn index(State(p): State<Pages>) -> Html<String> {
    let book = p.monitor.book();
    let now = unix(SystemTime::now());
    let mut order: Vec<usize> = (0..book.servers.len()).collect();
    order.sort_by(|&a, &b| {
        book.servers[b]
            .score
            .total_cmp(&book.servers[a].score)
            .then(book.servers[a].server.id.cmp(&book.servers[b].server.id))
    });
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>pooldns monitor</title>\
         <style>{STYLE}</style></head><body><h1>pooldns monitor</h1>{}\
         <p>{} servers; a server is served from a score of 10.</p>\
         <table><tr><th>id</th><th>address</th><th>country</th><th>score</th><th>feed score</th>\
         <th>probes</th><th>last result</th><th>offset ms</th></tr>",
        clock_banner(&book),
        book.servers.len()
    );
    // A registry of 100,000 servers: the page lists the first 5,000 by score.
    for &i in order.iter().take(5000) {
        let t = &book.servers[i];
        let last = t.last.as_ref();
        let _ = write!(
            html,
            "<tr><td><a href=\"/monitor/servers/{id}\">{id}</a></td><td>{ip}</td><td>{cc}</td>\
             <td class=\"{class}\">{score:.2}</td><td>{feed:.2}</td><td>{probes}</td><td>{result}</td>\
             <td>{offset}</td></tr>",
            id = t.server.id,
            ip = t.server.ip,
            cc = escape(&t.server.country),
            class = if t.score >= super::score::USABLE {
                "ok"
            } else {
                "bad"
            },
            score = t.score,
            feed = peers::feed_score(&book, i, now, p.monitor.options.window),
            probes = t.probes,
            result = last.map_or("–", |l| l.outcome.kind()),
            offset = offset_ms(last.and_then(|l| l.outcome.measurement()).map(|m| m.offset)),
        );
    }
    html.push_str("</table></body></html>");
    Html(html)
}

async fn history_json(State(p): State<Pages>, Path(id): Path<String>) -> Response {
    let book = p.monitor.book();
    let Some(&i) = id.parse::<u64>().ok().and_then(|id| book.by_id.get(&id)) else {
        return (StatusCode::NOT_FOUND, "no such server\n").into_response();
    };
    let t = &book.servers[i];
    let recent: Vec<serde_json::Value> = t
        .history
        .recent()
        .map(|p: &Probe| {
            serde_json::json!({
                "time": p.time, "score": p.score, "offset": p.offset(), "result": p.kind()
            })
        })
        .collect();
    let points: Vec<serde_json::Value> = t
        .history
        .points()
        .iter()
        .map(|p| serde_json::json!({"time": p.time, "score": p.score, "offset": p.offset}))
        .collect();
    let body = serde_json::json!({
        "id": t.server.id,
        "ip": t.server.ip,
        "score": t.score,
        "probes": t.probes,
        "recent": recent,
        "days": points,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn server_page(State(p): State<Pages>, Path(id): Path<String>) -> Response {
    let book = p.monitor.book();
    let Some(&i) = id.parse::<u64>().ok().and_then(|id| book.by_id.get(&id)) else {
        return (StatusCode::NOT_FOUND, "no such server\n").into_response();
    };
    let t = &book.servers[i];
    let now = unix(SystemTime::now());
    let days: Vec<(u64, f64, Option<f64>)> = t
        .history
        .points()
        .iter()
        .map(|p| (p.time, p.score, p.offset))
        .collect();
    let recent: Vec<(u64, f64, Option<f64>)> = t
        .history
        .recent()
        .map(|p| (u64::from(p.time), f64::from(p.score), p.offset()))
        .collect();
    let last = t.last.as_ref();
    let m = last.and_then(|l| l.outcome.measurement());
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{ip} – pooldns monitor</title>\
         <style>{STYLE}</style></head><body><p><a href=\"/\">all servers</a></p>\
         <h1>{ip} (id {id})</h1>{banner}\
         <p>Score {score:.2} (feed {feed:.2}) after {probes} probes. Last: {result}, offset {offset} ms, \
         delay {delay} ms, stratum {stratum}, refid {refid}.</p>\
         <h2>Last 30 days</h2>{days_svg}<h2>Recent probes</h2>{recent_svg}\
         <p>Score (line, left axis, −25 to 20; the dashed line is 10) and offset (dots, right \
         axis, ±100 ms; green within 25 ms, orange within 100 ms, red beyond, drawn at the edge).</p>\
         </body></html>",
        ip = t.server.ip,
        id = t.server.id,
        banner = clock_banner(&book),
        score = t.score,
        feed = peers::feed_score(&book, i, now, p.monitor.options.window),
        probes = t.probes,
        result = last.map_or("–", |l| l.outcome.kind()),
        offset = offset_ms(m.map(|m| m.offset)),
        delay = offset_ms(m.map(|m| m.delay)),
        stratum = m.map_or("–".to_owned(), |m| m.stratum.to_string()),
        refid = m.map_or("–".to_owned(), |m| escape(&render_refid(m.refid))),
        days_svg = render_chart(&days, Some((now.saturating_sub(30 * 86_400), now))),
        recent_svg = render_chart(&recent, None),
    );
    Html(html).into_response()
}

/// Score and offset over time as an inline SVG: `points` are (unix time, score, offset);
/// the time axis spans `span` (unix seconds) when given, else the points.
pub fn render_chart(points: &[(u64, f64, Option<f64>)], span: Option<(u64, u64)>) -> String {
    const W: f64 = 760.0;
    const H: f64 = 236.0;
    const PAD: f64 = 48.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" role=\"img\"><rect width=\"{W}\" height=\"{H}\" fill=\"#fafafa\"/>"
    );
    if points.is_empty() {
        svg.push_str("<text x=\"20\" y=\"110\">no probes scored yet</text></svg>");
        return svg;
    }
    let (first, last) = span.unwrap_or((
        points.first().map_or(0, |p| p.0),
        points.last().map_or(0, |p| p.0),
    ));
    let t0 = first as f64;
    let t1 = (last as f64).max(t0 + 1.0);
    let x = |t: u64| PAD + (t as f64 - t0) / (t1 - t0) * (W - 2.0 * PAD);
    // The plot spans y = 16 … H − 32; the bottom strip holds the time labels.
    let (top, bottom) = (16.0, H - 32.0);
    let y_score = |s: f64| {
        let s = s.clamp(-25.0, 20.0);
        top + (20.0 - s) / 45.0 * (bottom - top)
    };
    let y_offset = |o: f64| {
        let o = o.clamp(-0.1, 0.1);
        top + (0.1 - o) / 0.2 * (bottom - top)
    };
    for (label, s) in [("20", 20.0), ("10", 10.0), ("0", 0.0), ("≤-25", -25.0)] {
        let y = y_score(s);
        let dash = if s == 10.0 {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        };
        let _ = write!(
            svg,
            "<line x1=\"{PAD}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ccc\"{dash}/>\
             <text x=\"4\" y=\"{ty:.1}\" font-size=\"10\">{label}</text>",
            x2 = W - PAD,
            ty = y + 3.0
        );
    }
    for (label, o) in [("+100 ms", 0.1), ("0 ms", 0.0), ("-100 ms", -0.1)] {
        let _ = write!(
            svg,
            "<text x=\"{tx}\" y=\"{ty:.1}\" font-size=\"10\">{label}</text>",
            tx = W - PAD + 4.0,
            ty = y_offset(o) + 3.0
        );
    }
    for (anchor, x, t) in [("start", PAD, t0 as u64), ("end", W - PAD, t1 as u64)] {
        let _ = write!(
            svg,
            "<text x=\"{x}\" y=\"{y}\" font-size=\"10\" text-anchor=\"{anchor}\">{}</text>",
            crate::report::utc_time(t),
            y = H - 12.0
        );
    }
    for &(t, _, offset) in points {
        if let Some(o) = offset {
            let colour = match o.abs() {
                a if a <= 0.025 => "#2a2",
                a if a <= 0.1 => "#e90",
                _ => "#c22",
            };
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{colour}\"/>",
                x(t),
                y_offset(o)
            );
        }
    }
    svg.push_str("<polyline fill=\"none\" stroke=\"#246\" stroke-width=\"1.5\" points=\"");
    for &(t, s, _) in points {
        let _ = write!(svg, "{:.1},{:.1} ", x(t), y_score(s));
    }
    svg.push_str("\"/>");
    // A line needs two points: mark each score too while there are few.
    if points.len() < 3 {
        for &(t, s, _) in points {
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"5\" height=\"5\" fill=\"#246\"/>",
                x(t) - 2.5,
                y_score(s) - 2.5
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_self_contained_svg() {
        let svg = render_chart(
            &[
                (100, 0.0, Some(0.001)),
                (160, 1.0, None),
                (220, 1.95, Some(0.3)),
            ],
            None,
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        assert!(!svg.contains("href"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(render_chart(&[], None).contains("no probes"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
