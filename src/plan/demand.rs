//! Demand: how many pool-name queries come from clients in each country, per address
//! family (A → IPv4, AAAA → IPv6). It is the plan's "demand" input (DESIGN §3.1, §8):
//! feed + config + demand → table. Two sources give it:
//!
//! * a **demand file** ([`load_file`], [`render`]), written by `pooldns demand` from the
//!   fleet's `pooldns_client_queries_total` counters:
//!
//!   ```json
//!   {"v4": {"us": 123.0, "de": 45.5, "uk": 80}, "v6": {"jp": 7}}
//!   ```
//!
//!   Weights of any scale (only their shares count), finite and ≥ 0. Keys are ISO 3166
//!   alpha-2 country codes (lowercase as written by pooldns, any case accepted); `gb` and
//!   `uk` are the same country, kept as `uk` (the pool's zone name), and summed when both
//!   are given. Either family may be missing: a family without weight says nothing about
//!   demand, and the plan uses the prior for it.
//! * without a file, the **address-space prior** ([`prior`]): the IPv4 addresses and IPv6
//!   /48s that the GeoIP database assigns to each country ([`crate::geo::AddressSpace`]).
//!
//! `pooldns demand` makes the file from a running fleet: [`from_prometheus`] asks a
//! Prometheus server that scrapes every instance for the counters' increase over a window
//! (Prometheus is the engine that sums across instances and survives their restarts);
//! [`from_metrics`] sums the counters of the instances' `/metrics` pages as they are now.
//! Both leave out the clients that could not be placed (`country="unknown"`).
//!
//! The file is untrusted input: anything but an object of `v4` and `v6` objects of known
//! countries with weights fails the load as a whole, with the file, the entry and the
//! reason (`demand.json: v4.zz: not a known ISO 3166 country code`), so that the last good
//! demand stays in use. Nothing here panics on input.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};

use crate::continent;
use crate::geo::GeoDb;
use crate::table::Family;

/// Demand per client country, for each family.
///
/// Keys are canonical country codes ([`canonical`]); weights are finite and ≥ 0, of any
/// scale, and so is each family's total. Only [`Demand::add`] puts weights in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    v4: BTreeMap<&'static str, f64>,
    v6: BTreeMap<&'static str, f64>,
}

impl Demand {
    /// The weights of a family, by canonical country code.
    pub fn family(&self, family: Family) -> &BTreeMap<&'static str, f64> {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// The sum of a family's weights (finite; 0 when the family says nothing).
    pub fn total(&self, family: Family) -> f64 {
        self.family(family).values().sum()
    }

    /// A country's share of its family's demand, 0 … 1 (any spelling of the code; 0 for
    /// a country without weight or a family without any).
    pub fn share(&self, family: Family, country: &str) -> f64 {
        let total = self.total(family);
        match canonical(country).and_then(|c| self.family(family).get(c)) {
            Some(&w) if total > 0.0 => w / total,
            _ => 0.0,
        }
    }

    /// Adds `weight` to a country's demand (summing `gb` into `uk`, and any other spelling
    /// of a code into its canonical one). Refused, and nothing changed, for an unknown
    /// country, a weight that is negative or not finite, or a sum that would not be.
    pub fn add(&mut self, family: Family, country: &str, weight: f64) -> Result<(), Refused> {
        let code = canonical(country).ok_or(Refused::UnknownCountry)?;
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(Refused::NotAWeight(weight));
        }
        let total = self.total(family) + weight;
        if !total.is_finite() {
            return Err(Refused::TooLarge);
        }
        let map = match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        };
        *map.entry(code).or_insert(0.0) += weight;
        Ok(())
    }
}

/// Why [`Demand::add`] refused a weight.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Refused {
    /// The key is not in the built-in country table.
    #[error("not a known ISO 3166 country code")]
    UnknownCountry,
    /// Negative, infinite or NaN.
    #[error("{0} is not a weight ≥ 0")]
    NotAWeight(f64),
    /// The family's weights would add up to more than an `f64` holds.
    #[error("the weights add up to more than 1.8e308")]
    TooLarge,
}

/// The code a country is kept under: its lowercase ISO 3166 alpha-2 code from the built-in
/// country table ([`continent::countries`]), except that `gb` is kept as `uk`, the pool's
/// zone name for the United Kingdom. ASCII case-insensitive; None for anything not in the
/// table (`zz`, `eu`, `unknown`).
pub fn canonical(code: &str) -> Option<&'static str> {
    let lower = code.to_ascii_lowercase();
    let wanted = if lower == "gb" { "uk" } else { lower.as_str() };
    continent::countries()
        .map(|(c, _)| c)
        .find(|&c| c == wanted)
}

/// Why a demand file was refused.
#[derive(Debug, thiserror::Error)]
pub enum DemandError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The demand file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not JSON, or not an object of `v4` and `v6` objects.
    #[error("{origin}: {reason}")]
    Parse {
        /// The file (or other source) it came from.
        origin: String,
        /// What is wrong, with line and column.
        reason: String,
    },
    /// One entry is not a known country with a weight.
    #[error("{origin}: {entry}: {reason}")]
    Entry {
        /// The file (or other source) it came from.
        origin: String,
        /// The entry: `v4.zz`.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The largest demand file: 1 MiB. One has at most two weights per country, about 10 KiB.
pub const MAX_DEMAND_BYTES: u64 = 1 << 20;

/// Loads the demand file at `path`; one over [`MAX_DEMAND_BYTES`] is refused unread.
pub fn load_file(path: &Path) -> Result<Demand, DemandError> {
    let bytes =
        crate::feed::source::read_bounded(path, MAX_DEMAND_BYTES, "demand").map_err(|source| {
            DemandError::Read {
                path: path.to_owned(),
                source,
            }
        })?;
    load_slice(&path.display().to_string(), &bytes)
}

/// Loads demand from the bytes of a demand file; `origin` names it in messages.
pub fn load_slice(origin: &str, bytes: &[u8]) -> Result<Demand, DemandError> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| DemandError::Parse {
        origin: origin.to_owned(),
        reason: e.to_string(),
    })?;
    let mut demand = Demand::default();
    for (family, label, members) in [(Family::V4, "v4", &file.v4), (Family::V6, "v6", &file.v6)] {
        let mut seen = std::collections::HashSet::new();
        for (key, value) in members.iter().flat_map(|m| &m.0) {
            let refuse = |reason: String| DemandError::Entry {
                origin: origin.to_owned(),
                entry: format!("{label}.{}", shown(key)),
                reason,
            };
            if !seen.insert(key.as_str()) {
                return Err(refuse("appears twice".into()));
            }
            if canonical(key).is_none() {
                return Err(refuse(Refused::UnknownCountry.to_string()));
            }
            let weight = value
                .as_f64()
                .ok_or_else(|| refuse(format!("{} is not a number", shown_json(value))))?;
            demand
                .add(family, key, weight)
                .map_err(|e| refuse(e.to_string()))?;
        }
    }
    Ok(demand)
}

/// The demand file's text: pretty JSON with both families, countries sorted, a newline at
/// the end. [`load_slice`] reads it back to the same [`Demand`].
pub fn render(demand: &Demand) -> String {
    #[derive(serde::Serialize)]
    struct Rendered<'d> {
        v4: &'d BTreeMap<&'static str, f64>,
        v6: &'d BTreeMap<&'static str, f64>,
    }
    let rendered = Rendered {
        v4: &demand.v4,
        v6: &demand.v6,
    };
    // Maps of strings to finite numbers ([`Demand::add`] checks) always serialize.
    let mut text = serde_json::to_string_pretty(&rendered).expect("string → f64 maps serialize");
    text.push('\n');
    text
}

/// The demand prior: the address space the GeoIP database assigns to each country
/// ([`GeoDb::address_space`]), IPv4 addresses for `v4` and IPv6 /48s for `v6`. A
/// measured demand file replaces it. Computed once per database (about 0.13 s for
/// DB-IP's country database on a release build) and kept by the database; codes that
/// are not countries (`eu`, `ap`, `zz` in some databases) are left out, `gb` counts as
/// `uk`.
pub fn prior(geo: &GeoDb) -> Demand {
    let space = geo.address_space();
    let mut demand = Demand::default();
    for (code, &addresses) in &space.v4 {
        // At most 2^32 addresses in all: no sum can be refused.
        let _ = demand.add(Family::V4, code, addresses as f64);
    }
    for (code, &blocks) in &space.v6 {
        let _ = demand.add(Family::V6, code, blocks);
    }
    demand
}

/// The counter the fleet's demand is read from.
pub const METRIC: &str = "pooldns_client_queries_total";

/// How long one request of `pooldns demand` may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read from Prometheus or a `/metrics` page.
const MAX_BODY: u64 = 64 << 20;

/// Why demand could not be read from Prometheus or from the instances.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct CollectError {
    /// What was asked (the whole request URL, or the `--window` given).
    pub url: String,
    /// What was wrong: no connection, an HTTP status, Prometheus's own error, a result of
    /// an unexpected shape, a bad sample.
    pub reason: String,
}

/// The PromQL query of [`from_prometheus`]: every instance's counters, summed, over the
/// last `window`.
pub fn prometheus_query(window: &str) -> String {
    format!("sum by (country, family) (increase({METRIC}[{window}]))")
}

/// Reads demand from a Prometheus server that scrapes the fleet: the increase of
/// `pooldns_client_queries_total` over `window` (a Prometheus duration: `7d`, `12h`,
/// `90m`), summed over every instance, from its HTTP API (`GET base/api/v1/query`).
/// Clients of no known country are left out. Blocks for up to [`FETCH_TIMEOUT`].
pub fn from_prometheus(base: &str, window: &str) -> Result<Demand, CollectError> {
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    if !is_duration(window) {
        return Err(CollectError {
            url: format!("--window {window:?}"),
            reason: "not a Prometheus duration such as 7d, 12h or 1h30m".into(),
        });
    }
    let query = prometheus_query(window);
    let shown_url = format!("{url}?query={}", percent_encode(&query));
    let (status, body) = get(&agent(), &url, Some(("query", &query)), &shown_url)?;
    let demand = parse_prometheus(&shown_url, status, &body)?;
    if demand.total(Family::V4) + demand.total(Family::V6) <= 0.0 {
        return Err(CollectError {
            url: shown_url,
            reason: format!(
                "no {METRIC} of a known country increased in the last {window}: does \
                 Prometheus scrape the pooldns instances' /metrics?"
            ),
        });
    }
    Ok(demand)
}

/// Reads a Prometheus instant-query answer (`status`, then its JSON body) into demand:
/// a vector of samples labelled `country` and `family`. `url` names the request in errors.
pub fn parse_prometheus(url: &str, status: u16, body: &[u8]) -> Result<Demand, CollectError> {
    let fail = |reason: String| CollectError {
        url: url.to_owned(),
        reason,
    };
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(e) if (200..300).contains(&status) => {
            return Err(fail(format!("the answer is not JSON: {e}")));
        }
        Err(_) => return Err(fail(format!("HTTP status {status}: {}", first_line(body)))),
    };
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    match json.get("status").and_then(text).as_deref() {
        Some("success") => {}
        Some("error") => {
            let kind = json.get("errorType").and_then(text).unwrap_or_default();
            let error = json.get("error").and_then(text).unwrap_or_default();
            return Err(fail(format!(
                "HTTP status {status}: Prometheus answered status \"error\": {kind}: {error}"
            )));
        }
        _ => {
            return Err(fail(format!(
                "HTTP status {status}: not a Prometheus API answer (no \"status\": \
                 \"success\"): {}",
                shown_line(&json.to_string())
            )));
        }
    }
    let data = json.get("data");
    let kind = data.and_then(|d| d.get("resultType")).and_then(text);
    if kind.as_deref() != Some("vector") {
        return Err(fail(format!(
            "expected a result of type \"vector\", got {}",
            kind.map_or("none".to_owned(), |k| format!("{k:?}"))
        )));
    }
    let Some(samples) = data
        .and_then(|d| d.get("result"))
        .and_then(|r| r.as_array())
    else {
        return Err(fail("the vector has no \"result\" array".into()));
    };
    let mut demand = Demand::default();
    for sample in samples {
        let label = |name: &str| {
            sample
                .get("metric")
                .and_then(|m| m.get(name))
                .and_then(text)
        };
        let value = sample
            .get("value")
            .and_then(|v| v.as_array())
            .and_then(|pair| pair.get(1))
            .and_then(text);
        let (Some(country), Some(family), Some(value)) = (label("country"), label("family"), value)
        else {
            return Err(fail(format!(
                "a sample without a country, a family or a value: {}",
                shown_line(&sample.to_string())
            )));
        };
        add_sample(&mut demand, &country, &family, &value).map_err(fail)?;
    }
    Ok(demand)
}

/// Sums the current `pooldns_client_queries_total` counters of one or more instances
/// (`http://ns1:8053/metrics`; a URL without a path gets `/metrics`). Every instance
/// must answer: a sum that silently missed one would misstate the demand. Clients of no
/// known country are left out.
pub fn from_metrics(urls: &[String]) -> Result<Demand, CollectError> {
    let agent = agent();
    let mut demand = Demand::default();
    for url in urls {
        let url = metrics_url(url);
        let (status, body) = get(&agent, &url, None, &url)?;
        let fail = |reason: String| CollectError {
            url: url.clone(),
            reason,
        };
        if !(200..300).contains(&status) {
            return Err(fail(format!("HTTP status {status}: {}", first_line(&body))));
        }
        let text =
            std::str::from_utf8(&body).map_err(|e| fail(format!("the page is not UTF-8: {e}")))?;
        add_exposition(&mut demand, text).map_err(fail)?;
    }
    if demand.total(Family::V4) + demand.total(Family::V6) <= 0.0 {
        return Err(CollectError {
            url: urls.join(", "),
            reason: format!(
                "no {METRIC} of a known country: have the instances answered pool names?"
            ),
        });
    }
    Ok(demand)
}

/// Adds the `pooldns_client_queries_total` samples of a Prometheus text exposition to
/// `demand`. Other metrics, comments and blank lines are passed over; labels may come in
/// any order; a timestamp after the value is allowed. Errors name the line.
pub fn add_exposition(demand: &mut Demand, text: &str) -> Result<(), String> {
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_ascii_whitespace())
            .unwrap_or(line.len());
        if &line[..name_end] != METRIC {
            continue;
        }
        let at = |reason: String| format!("line {}: {reason}: {}", n + 1, shown_line(line));
        let (labels, rest) = parse_labels(&line[name_end..]).map_err(at)?;
        let value = rest
            .split_ascii_whitespace()
            .next()
            .ok_or_else(|| at("no value".into()))?;
        let label = |name: &str| {
            labels
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| at(format!("no {name} label")))
        };
        add_sample(demand, label("country")?, label("family")?, value).map_err(at)?;
    }
    Ok(())
}

/// Writes a demand file the safe way: aside, then renamed over `path`, so that a server
/// watching it never reads half a file.
pub fn write_file(path: &Path, demand: &Demand) -> std::io::Result<()> {
    let name = path.file_name().map_or_else(
        || "demand.json".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let aside = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&aside, render(demand))?;
    std::fs::rename(&aside, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&aside);
    })
}

/// Adds one sample: `unknown` is left out; anything but a known country, `v4`/`v6` and a
/// weight is refused.
fn add_sample(demand: &mut Demand, country: &str, family: &str, value: &str) -> Result<(), String> {
    if country == "unknown" {
        return Ok(());
    }
    let family = match family {
        "v4" => Family::V4,
        "v6" => Family::V6,
        other => return Err(format!("family {} is neither v4 nor v6", shown(other))),
    };
    let weight: f64 = value
        .parse()
        .map_err(|_| format!("value {} is not a number", shown(value)))?;
    demand
        .add(family, country, weight)
        .map_err(|e| format!("country {}: {e}", shown(country)))
}

/// The labels of a sample: (name, value) in the order written.
type Labels = Vec<(String, String)>;

/// The labels of a sample, `{k="v",…}` (or nothing), and the text after them.
fn parse_labels(text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let Some(mut rest) = text.trim_start().strip_prefix('{') else {
        return Ok((labels, text));
    };
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("a label without a value")?;
        let name = rest[..eq].trim().to_owned();
        let Some(quoted) = rest[eq + 1..].trim_start().strip_prefix('"') else {
            return Err(format!("label {} has no quoted value", shown(&name)));
        };
        // The value up to the closing quote, with the exposition format's escapes:
        // \\, \" and \n.
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an unfinished escape".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("label {} is not closed", shown(&name))),
            }
        };
        labels.push((name, value));
        rest = quoted[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// An HTTP client for `pooldns demand`: a timeout, and error statuses read as answers.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .timeout_connect(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .user_agent(concat!("pooldns/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// One GET (with one query parameter, URL-encoded by the client): the status and body.
/// `shown` names the request in errors.
fn get(
    agent: &ureq::Agent,
    url: &str,
    query: Option<(&str, &str)>,
    shown: &str,
) -> Result<(u16, Vec<u8>), CollectError> {
    let fail = |reason: String| CollectError {
        url: shown.to_owned(),
        reason,
    };
    let mut request = agent.get(url);
    if let Some((name, value)) = query {
        request = request.query(name, value);
    }
    let mut response = request.call().map_err(|e| fail(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| fail(format!("reading the answer: {e}")))?;
    Ok((status, body))
}

/// A `/metrics` URL: as given, or with `/metrics` when it has no path.
fn metrics_url(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    match after_scheme.find('/') {
        None => format!("{url}/metrics"),
        Some(i) if after_scheme[i..] == *"/" => format!("{url}metrics"),
        Some(_) => url.to_owned(),
    }
}

/// Whether `text` is a Prometheus duration: one or more `<digits><unit>`, units ms, s, m,
/// h, d, w, y. Checked before it goes into the query.
fn is_duration(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// Percent-encodes a query parameter for messages (the request itself is encoded by the
/// HTTP client).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The first line of a body, for a message.
fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        "(empty body)".into()
    } else {
        shown_line(line)
    }
}

/// A line of text for a message, cut when long.
fn shown_line(line: &str) -> String {
    let cut: String = line.chars().take(120).collect();
    if cut.len() < line.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// A key or value for a message: as it is when it is short and plain, quoted and cut
/// otherwise (the file is untrusted; a key may hold anything).
fn shown(text: &str) -> String {
    let plain = !text.is_empty()
        && text.len() <= 32
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    if plain {
        return text.to_owned();
    }
    let cut: String = text.chars().take(32).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// A JSON value for a message, cut when long.
fn shown_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    let cut: String = text.chars().take(32).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// The file as written: at most one `v4` and one `v6`, nothing else.
struct File {
    v4: Option<Members>,
    v6: Option<Members>,
}

/// The members of one JSON object, in file order and with repeated keys kept (a
/// `serde_json::Map` keeps only the last of them, hiding the mistake).
struct Members(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for File {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<File, D::Error> {
        struct FileVisitor;
        impl<'de> Visitor<'de> for FileVisitor {
            type Value = File;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a demand object: {"v4": {"us": 123.0, …}, "v6": {…}}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<File, A::Error> {
                let mut file = File { v4: None, v6: None };
                while let Some(key) = map.next_key::<String>()? {
                    let slot = match key.as_str() {
                        "v4" => &mut file.v4,
                        "v6" => &mut file.v6,
                        other => {
                            return Err(A::Error::custom(format!(
                                r#"unknown key {}: a demand file has only "v4" and "v6""#,
                                shown_json(&serde_json::Value::from(other))
                            )));
                        }
                    };
                    if slot.is_some() {
                        return Err(A::Error::custom(format!("\"{key}\" appears twice")));
                    }
                    *slot = Some(map.next_value()?);
                }
                Ok(file)
            }
        }
        d.deserialize_map(FileVisitor)
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Members, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an object of countries and weights: {"us": 123.0, …}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demand_file_over_the_size_limit_is_refused_unread_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demand.json");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(2 * MAX_DEMAND_BYTES)
            .unwrap();
        assert_eq!(
            load_file(&path).unwrap_err().to_string(),
            format!(
                "{}: cannot read: 2 MiB, but demand files are limited to 1 MiB",
                path.display()
            )
        );
    }

    fn load(text: &str) -> Result<Demand, String> {
        load_slice("demand.json", text.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn loads_weights_of_both_families() {
        let d = load(r#"{"v4": {"us": 123.0, "de": 45.5, "gb": 10}, "v6": {"jp": 7}}"#).unwrap();
        let v4: Vec<(&str, f64)> = d.family(Family::V4).iter().map(|(&c, &w)| (c, w)).collect();
        assert_eq!(v4, [("de", 45.5), ("uk", 10.0), ("us", 123.0)]);
        assert_eq!(d.total(Family::V4), 178.5);
        assert_eq!(d.share(Family::V6, "jp"), 1.0);
        assert_eq!(d.share(Family::V4, "GB"), 10.0 / 178.5);
        assert_eq!(d.share(Family::V4, "fr"), 0.0);
    }

    #[test]
    fn gb_and_uk_are_one_country_and_any_case_is_read() {
        let d = load(r#"{"v4": {"gb": 1, "uk": 2.5, "DE": 3}}"#).unwrap();
        assert_eq!(d.family(Family::V4).get("uk"), Some(&3.5));
        assert_eq!(d.family(Family::V4).get("de"), Some(&3.0));
        assert_eq!(d.family(Family::V4).get("gb"), None);
        assert_eq!(canonical("GB"), Some("uk"));
        assert_eq!(canonical("xk"), Some("xk"));
        for code in ["zz", "eu", "unknown", "", "d", "deu"] {
            assert_eq!(canonical(code), None, "{code:?}");
        }
    }

    #[test]
    fn a_missing_or_empty_family_says_nothing() {
        for text in [r#"{"v4": {"de": 1}}"#, r#"{"v4": {"de": 1}, "v6": {}}"#] {
            let d = load(text).unwrap();
            assert!(d.family(Family::V6).is_empty());
            assert_eq!(d.total(Family::V6), 0.0);
            assert_eq!(d.share(Family::V6, "de"), 0.0);
        }
        assert_eq!(load("{}").unwrap(), Demand::default());
    }

    #[test]
    fn errors_name_the_file_the_entry_and_the_reason() {
        for (text, message) in [
            (
                r#"{"v4": {"zz": 1}}"#,
                "demand.json: v4.zz: not a known ISO 3166 country code",
            ),
            (
                r#"{"v4": {"de": 1}, "v6": {"de": -3}}"#,
                "demand.json: v6.de: -3 is not a weight ≥ 0",
            ),
            (
                r#"{"v4": {"de": "12"}}"#,
                r#"demand.json: v4.de: "12" is not a number"#,
            ),
            (
                r#"{"v4": {"de": null}}"#,
                "demand.json: v4.de: null is not a number",
            ),
            (
                r#"{"v4": {"de": 1, "de": 2}}"#,
                "demand.json: v4.de: appears twice",
            ),
            (
                r#"{"v4": {"unknown": 5}}"#,
                "demand.json: v4.unknown: not a known ISO 3166 country code",
            ),
            (
                r#"{"v4": {"a\nb": 5}}"#,
                r#"demand.json: v4."a\nb": not a known ISO 3166 country code"#,
            ),
            (
                r#"{"v4": {"de": 1e308, "us": 1e308}}"#,
                "demand.json: v4.us: the weights add up to more than 1.8e308",
            ),
            (
                r#"{"V4": {"de": 1}}"#,
                r#"demand.json: unknown key "V4": a demand file has only "v4" and "v6" at line 1 column 5"#,
            ),
            (
                r#"{"v4": {}, "v4": {}}"#,
                r#"demand.json: "v4" appears twice at line 1 column 15"#,
            ),
            (
                r#"[1, 2]"#,
                r#"demand.json: invalid type: sequence, expected a demand object: {"v4": {"us": 123.0, …}, "v6": {…}} at line 1 column 0"#,
            ),
            (
                r#"{"v4": [1]}"#,
                r#"demand.json: invalid type: sequence, expected an object of countries and weights: {"us": 123.0, …} at line 1 column 7"#,
            ),
            (
                r#"{"v4": {"de": 1e999}}"#,
                "demand.json: number out of range at line 1 column 19",
            ),
        ] {
            assert_eq!(load(text).unwrap_err(), message, "{text}");
        }
        let e = load_file(Path::new("/nonexistent/demand.json")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/demand.json: cannot read: "),
            "{e}"
        );
    }

    #[test]
    fn render_writes_sorted_pretty_json_that_loads_back() {
        let d = load(r#"{"v6": {"jp": 7}, "v4": {"us": 123.0, "de": 45.5, "gb": 0.25}}"#).unwrap();
        let text = render(&d);
        assert_eq!(
            text,
            "{\n  \"v4\": {\n    \"de\": 45.5,\n    \"uk\": 0.25,\n    \"us\": 123.0\n  },\n  \
             \"v6\": {\n    \"jp\": 7.0\n  }\n}\n"
        );
        assert_eq!(load(&text).unwrap(), d);
        assert_eq!(
            render(&Demand::default()),
            "{\n  \"v4\": {},\n  \"v6\": {}\n}\n"
        );
    }

    #[test]
    fn add_refuses_unknown_countries_and_non_weights_without_changing_anything() {
        let mut d = Demand::default();
        assert_eq!(d.add(Family::V4, "de", 2.0), Ok(()));
        assert_eq!(d.add(Family::V4, "zz", 1.0), Err(Refused::UnknownCountry));
        for w in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                d.add(Family::V4, "de", w),
                Err(Refused::NotAWeight(_))
            ));
        }
        assert_eq!(d.add(Family::V4, "us", f64::MAX), Ok(()));
        assert_eq!(d.add(Family::V4, "fr", f64::MAX), Err(Refused::TooLarge));
        assert_eq!(d.family(Family::V4).len(), 2);
        assert_eq!(d.family(Family::V4).get("de"), Some(&2.0));
    }

    #[test]
    fn prior_is_the_address_space_with_gb_as_uk() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let geo = GeoDb::open(&root.join("tests/data/geoip/GeoIP2-Country-Test.mmdb")).unwrap();
        let d = prior(&geo);
        assert_eq!(d.family(Family::V4).get("uk"), Some(&74.0));
        assert_eq!(d.family(Family::V4).get("gb"), None);
        assert_eq!(d.family(Family::V4).get("us"), Some(&6169.0));
        assert_eq!(d.total(Family::V4), 12_027.0);
        assert_eq!(d.family(Family::V6).get("jp"), Some(&(14.0 * 65536.0)));
    }

    // -----------------------------------------------------------------------------------
    // Collecting from Prometheus and /metrics

    const PROMETHEUS_ANSWER: &str = r#"{"status":"success","data":{"resultType":"vector",
        "result":[
          {"metric":{"country":"de","family":"v4"},"value":[1764428400.123,"45.5"]},
          {"metric":{"family":"v4","country":"uk"},"value":[1764428400.123,"80"]},
          {"metric":{"country":"gb","family":"v4"},"value":[1764428400.123,"20"]},
          {"metric":{"country":"unknown","family":"v4"},"value":[1764428400.123,"999"]},
          {"metric":{"country":"jp","family":"v6"},"value":[1764428400.123,"7.25"]}
        ]}}"#;

    #[test]
    fn reads_a_prometheus_vector_summing_gb_into_uk_and_leaving_unknown_out() {
        let d = parse_prometheus("http://p/api", 200, PROMETHEUS_ANSWER.as_bytes()).unwrap();
        assert_eq!(
            render(&d),
            "{\n  \"v4\": {\n    \"de\": 45.5,\n    \"uk\": 100.0\n  },\n  \"v6\": {\n    \
             \"jp\": 7.25\n  }\n}\n"
        );
    }

    #[test]
    fn prometheus_errors_name_the_url_and_what_was_wrong() {
        let url = "http://p:9090/api/v1/query?query=x";
        for (status, body, message) in [
            (
                400,
                r#"{"status":"error","errorType":"bad_data","error":"1:1: parse error"}"#,
                "HTTP status 400: Prometheus answered status \"error\": bad_data: 1:1: parse error",
            ),
            (
                502,
                "<html>Bad Gateway</html>\nmore",
                "HTTP status 502: <html>Bad Gateway</html>",
            ),
            (
                200,
                "not json",
                "the answer is not JSON: expected ident at line 1 column 2",
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                "expected a result of type \"vector\", got \"matrix\"",
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector"}}"#,
                "the vector has no \"result\" array",
            ),
            (
                200,
                r#"{"data":{}}"#,
                r#"HTTP status 200: not a Prometheus API answer (no "status": "success"): {"data":{}}"#,
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"country":"de"},"value":[1,"3"]}]}}"#,
                r#"a sample without a country, a family or a value: {"metric":{"country":"de"},"value":[1,"3"]}"#,
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"country":"de","family":"v4"},"value":[1,"NaN"]}]}}"#,
                "country de: NaN is not a weight ≥ 0",
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"country":"zz","family":"v4"},"value":[1,"3"]}]}}"#,
                "country zz: not a known ISO 3166 country code",
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"country":"de","family":"ipv4"},"value":[1,"3"]}]}}"#,
                "family ipv4 is neither v4 nor v6",
            ),
        ] {
            let e = parse_prometheus(url, status, body.as_bytes()).unwrap_err();
            assert_eq!(e.to_string(), format!("{url}: {message}"), "{body}");
        }
    }

    #[test]
    fn from_prometheus_sends_the_encoded_query_and_reports_http_errors() {
        let (base, request) = respond_once(200, PROMETHEUS_ANSWER);
        let d = from_prometheus(&base, "7d").unwrap();
        assert_eq!(d.family(Family::V4).get("uk"), Some(&100.0));
        // The query arrives whole (the client encodes it; Prometheus decodes it).
        let request = request.recv().unwrap();
        let target = request.split(' ').nth(1).unwrap();
        let query = target.strip_prefix("/api/v1/query?query=").unwrap();
        assert_eq!(percent_decode(query), prometheus_query("7d"), "{request}");
        let (base, _) = respond_once(
            422,
            r#"{"status":"error","errorType":"execution","error":"query timed out"}"#,
        );
        let e = from_prometheus(&base, "5m").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{base}/api/v1/query?query=sum%20by%20%28country")),
            "{e}"
        );
        assert!(
            e.ends_with(
                "HTTP status 422: Prometheus answered status \"error\": execution: query timed out"
            ),
            "{e}"
        );
        // Nothing of a known country: no file that would silently turn the plan off.
        let (base, _) = respond_once(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        );
        let e = from_prometheus(&base, "5m").unwrap_err().to_string();
        assert!(
            e.contains(
                "no pooldns_client_queries_total of a known country increased in the last 5m"
            ),
            "{e}"
        );
        let e = from_prometheus("http://127.0.0.1:9", "7d")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("http://127.0.0.1:9/api/v1/query?query="),
            "{e}"
        );
        let e = from_prometheus(&base, "7d) or vector(1")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--window \"7d) or vector(1\": not a Prometheus duration such as 7d, 12h or 1h30m"
        );
    }

    #[test]
    fn reads_only_the_demand_metric_of_an_exposition_in_any_label_order() {
        let text = "# HELP pooldns_client_queries_total Pool-name queries.\n\
            # TYPE pooldns_client_queries_total counter\n\
            pooldns_client_queries_total{country=\"de\",family=\"v4\"} 3\n\
            pooldns_client_queries_total{family=\"v4\", country=\"gb\"} 2 1764428400000\n\
            pooldns_client_queries_total { country = \"uk\" , family = \"v4\" , } 1\n\
            pooldns_client_queries_total{country=\"unknown\",family=\"v6\"} 40\n\
            pooldns_client_queries_total_created{country=\"de\",family=\"v4\"} 1.7e9\n\
            pooldns_queries_total{transport=\"udp\",qtype=\"A\",rcode=\"NOERROR\"} 99\n\
            other{note=\"a \\\"quoted\\\" } brace\"} 5\n\
            \n\
            pooldns_client_queries_total{country=\"jp\",family=\"v6\",instance=\"a\\\\b\"} 1.5e1\n";
        let mut d = Demand::default();
        add_exposition(&mut d, text).unwrap();
        add_exposition(&mut d, text).unwrap();
        assert_eq!(d.family(Family::V4).get("de"), Some(&6.0));
        assert_eq!(d.family(Family::V4).get("uk"), Some(&6.0));
        assert_eq!(d.family(Family::V6).get("jp"), Some(&30.0));
        assert_eq!(d.family(Family::V6).len(), 1);
        for (line, message) in [
            (
                "pooldns_client_queries_total{country=\"de\"} 3",
                "line 1: no family label: pooldns_client_queries_total{country=\"de\"} 3",
            ),
            (
                "pooldns_client_queries_total{country=\"de\",family=\"v4\"}",
                "line 1: no value: pooldns_client_queries_total{country=\"de\",family=\"v4\"}",
            ),
            (
                "pooldns_client_queries_total{country=\"de} 3",
                "line 1: label country is not closed: pooldns_client_queries_total{country=\"de} 3",
            ),
            (
                "pooldns_client_queries_total{country=de} 3",
                "line 1: label country has no quoted value: pooldns_client_queries_total{country=de} 3",
            ),
            (
                "pooldns_client_queries_total{country=\"de\",family=\"v4\"} -1",
                "line 1: country de: -1 is not a weight ≥ 0: \
                 pooldns_client_queries_total{country=\"de\",family=\"v4\"} -1",
            ),
        ] {
            let e = add_exposition(&mut Demand::default(), line).unwrap_err();
            assert_eq!(e, message);
        }
    }

    #[test]
    fn durations_and_metrics_urls() {
        for ok in ["7d", "5m", "1h30m", "100ms", "2w", "1y"] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in [
            "",
            "7",
            "d",
            "7 d",
            "7d]",
            "-1d",
            "7d) or vector(1)",
            "1.5h",
        ] {
            assert!(!is_duration(bad), "{bad}");
        }
        assert_eq!(metrics_url("http://ns1:8053"), "http://ns1:8053/metrics");
        assert_eq!(metrics_url("http://ns1:8053/"), "http://ns1:8053/metrics");
        assert_eq!(
            metrics_url("http://ns1:8053/metrics"),
            "http://ns1:8053/metrics"
        );
        assert_eq!(
            metrics_url("https://x/pooldns/metrics"),
            "https://x/pooldns/metrics"
        );
    }

    #[test]
    fn write_file_renames_a_whole_file_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demand.json");
        let d = load(r#"{"v4": {"de": 2}}"#).unwrap();
        write_file(&path, &d).unwrap();
        assert_eq!(load_file(&path).unwrap(), d);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["demand.json"]);
    }

    fn percent_decode(text: &str) -> String {
        let mut out = Vec::new();
        let mut bytes = text.bytes();
        while let Some(b) = bytes.next() {
            match b {
                b'%' => {
                    let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                    out.push(u8::from_str_radix(&hex, 16).unwrap());
                }
                b'+' => out.push(b' '),
                b => out.push(b),
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// An HTTP server on loopback that answers one request with `status` and `body`;
    /// its base URL, and the request it got.
    fn respond_once(status: u16, body: &str) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let body = body.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        });
        (base, rx)
    }

    proptest::proptest! {
        /// Hostile bytes: an error or a demand, never a panic; whatever loads has known
        /// countries, weights ≥ 0 and a finite total, and renders to itself.
        #[test]
        fn any_bytes_load_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(d) = load_slice("fuzz", &bytes) {
                check(&d);
            }
        }

        /// JSON-shaped input with any keys and values: the same.
        #[test]
        fn any_json_shape_loads_or_fails_cleanly(
            entries in proptest::collection::vec(
                ("(v4|v6|v5)", "[a-zA-Z]{0,3}", proptest::prop_oneof![
                    proptest::num::f64::ANY.prop_map(|f| f.to_string()),
                    proptest::strategy::Just("\"1\"".to_owned()),
                    proptest::strategy::Just("[]".to_owned()),
                    (0u64..u64::MAX).prop_map(|n| n.to_string()),
                ]),
                0..12,
            )
        ) {
            let mut text = String::from("{");
            for (i, (family, key, value)) in entries.iter().enumerate() {
                if i > 0 { text.push(','); }
                text.push_str(&format!("{family:?}: {{{key:?}: {value}}}"));
            }
            text.push('}');
            match load_slice("fuzz", text.as_bytes()) {
                Ok(d) => check(&d),
                Err(e) => proptest::prop_assert!(e.to_string().starts_with("fuzz: ")),
            }
        }
    }

    use proptest::strategy::Strategy as _;

    fn check(d: &Demand) {
        for family in [Family::V4, Family::V6] {
            for (&code, &w) in d.family(family) {
                assert_eq!(canonical(code), Some(code));
                assert!(w.is_finite() && w >= 0.0);
            }
            assert!(d.total(family).is_finite());
        }
        assert_eq!(
            load_slice("again", render(d).as_bytes()).ok().as_ref(),
            Some(d)
        );
    }
}
