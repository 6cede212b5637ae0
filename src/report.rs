//! Text reports for operators: the summary `pooldns check` prints and the walk-through
//! `pooldns explain` prints. Both read a built table, exactly as `serve` would use it.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::answer::{self, Client};
use crate::config::AaaaPolicy;
use crate::continent::{self, Continent};
use crate::name;
use crate::plan::Source;
use crate::table::{Family, Table, Target, ZoneId};
use crate::wire::rtype;

/// The `check` summary: servers, zones, empty countries and skipped entries.
pub fn check_summary(table: &Table) -> String {
    let mut out = String::new();
    let config = &table.config;
    let _ = writeln!(
        out,
        "zone {} ({})",
        name::render(&config.origin),
        config.path.display()
    );
    let _ = writeln!(
        out,
        "geoip {}: {}",
        table.geo.path.display(),
        table.geo.describe()
    );
    let _ = writeln!(
        out,
        "feed {}: {} entries, {} loaded, {} skipped, serial {}",
        table.feed.source,
        table.feed.entries,
        table.feed.loaded,
        table.feed.skipped.len(),
        table.serial
    );
    if let (Some(d), Some(z)) = (&config.dnssec, &table.signed) {
        let _ = writeln!(
            out,
            "dnssec: keys {} ({}); {} signatures in {:.0} ms, valid {} to {}",
            d.keys_dir.written,
            d.keys_dir.path.display(),
            z.signatures,
            z.signing_time.as_secs_f64() * 1e3,
            utc_time(z.inception),
            utc_time(z.expiration)
        );
        for &(tag, algorithm, ksk, active) in &z.keys {
            let _ = writeln!(
                out,
                "  key {tag}: algorithm {algorithm} ({}), {}, {}",
                crate::dnssec::keyfile::algorithm_name(algorithm),
                if ksk { "KSK" } else { "ZSK" },
                if active {
                    "signing"
                } else {
                    "published, not signing"
                }
            );
        }
        let zone = name::render(&config.origin);
        match crate::dnssec::ds_text(&d.keys_dir.path, &zone) {
            Ok(ds) => {
                let _ = writeln!(out, "  DS for the parent zone:");
                for line in ds.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "  DS: {e}");
            }
        }
    }
    let families = [Family::V4, Family::V6];
    let [v4, v6] = families.map(|f| table.eligible(f));
    let _ = writeln!(
        out,
        "eligible servers: {v4} IPv4, {v6} IPv6 (min score {}, netspeed > 0)",
        config.min_score
    );
    let _ = writeln!(
        out,
        "\n{:<16} {:>8} {:>14} {:>8} {:>14}",
        "zone", "IPv4", "IPv4 Mbit/s", "IPv6", "IPv6 Mbit/s"
    );
    let mut row = |zone: ZoneId| {
        let [a, b] = families.map(|f| table.zone(zone, f));
        if a.all.is_empty() && b.all.is_empty() && matches!(zone, ZoneId::Country(_)) {
            return;
        }
        let _ = writeln!(
            out,
            "{:<16} {:>8} {:>14} {:>8} {:>14}",
            table.zone_label(zone),
            a.all.len(),
            a.netspeed / 1000,
            b.all.len(),
            b.netspeed / 1000
        );
    };
    row(ZoneId::Global);
    for c in Continent::ALL {
        row(ZoneId::Continent(c));
    }
    for i in 0..continent::countries().count() {
        row(ZoneId::Country(i as u16));
    }
    let empty: Vec<&str> = (0..continent::countries().count() as u16)
        .filter(|&i| {
            let zone = ZoneId::Country(i);
            // Aliased countries (gb → uk) are served by their target; skip them.
            table.country(table.zone_label(zone)) == Some(i)
                && families.iter().all(|&f| table.zone(zone, f).all.is_empty())
        })
        .map(|i| table.zone_label(ZoneId::Country(i)))
        .collect();
    let _ = writeln!(
        out,
        "\ncountries with no eligible server ({}): {}",
        empty.len(),
        empty.join(" ")
    );
    if !table.feed.skipped.is_empty() {
        let _ = writeln!(out, "\nskipped entries:");
        for s in table.feed.skipped.iter() {
            let _ = writeln!(out, "  {}", s.render(&table.feed.source));
        }
    }
    out
}

/// One line per address family without an eligible server: its queries get NODATA
/// everywhere. `check` fails on them; `serve` logs them as warnings.
pub fn empty_families(table: &Table) -> Vec<String> {
    [(Family::V4, "IPv4", "A"), (Family::V6, "IPv6", "AAAA")]
        .into_iter()
        .filter(|&(family, _, _)| table.eligible(family) == 0)
        .map(|(_, name, rtype)| {
            format!(
                "{}: no eligible {name} server (score >= {} and netspeed > 0): every {rtype} \
                 query would get NODATA",
                table.feed.source, table.config.min_score
            )
        })
        .collect()
}

/// Why `explain` could not explain.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The name is not a name.
    #[error("{0:?} is not a domain name: {1}")]
    BadName(String, name::NameError),
    /// The name is outside the zone: the server refuses it.
    #[error("{name} is not in the zone {origin}: the server answers REFUSED")]
    NotInZone {
        /// The name asked for, as text.
        name: String,
        /// The zone's origin, as text.
        origin: String,
    },
}

/// Walks through how a query for `qname` from `ip` would be answered. `ip` is taken as the
/// client subnet a resolver on loopback sends (`ip/32` or `ip/128`), and the question goes
/// through the server's own [`answer::answer`], so the rcode and the ECS scope printed are
/// the ones the server sends.
pub fn explain(table: &Table, ip: IpAddr, qname: &str, qtype: u16) -> Result<String, ExplainError> {
    let wire = name::from_text(qname).map_err(|e| ExplainError::BadName(qname.to_owned(), e))?;
    let client = Client {
        source: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        ecs: Some(crate::wire::ClientSubnet {
            family: if ip.is_ipv4() { 1 } else { 2 },
            source_prefix: if ip.is_ipv4() { 32 } else { 128 },
            address: ip,
        }),
        dnssec_ok: false,
    };
    let question = crate::wire::Question {
        qname: &wire,
        qtype,
        qclass: crate::wire::class::IN,
    };
    let sent = answer::answer(table, &question, &client, &mut rand::rng());
    let origin = name::render(&table.config.origin);
    if sent.rcode == crate::wire::Rcode::REFUSED {
        return Err(ExplainError::NotInZone {
            name: name::render(&wire),
            origin,
        });
    }
    let mut out = String::new();
    let public = crate::geo::is_public(ip);
    let location = table.geo.locate(ip);
    let _ = writeln!(
        out,
        "query   {} {} from {ip}",
        name::render(&wire),
        rtype::name(qtype)
    );
    if public {
        let network = mask(ip, location.prefix_len);
        let _ = writeln!(
            out,
            "geoip   network {network}/{} → country {}",
            location.prefix_len,
            location.country_str().unwrap_or("unknown")
        );
    } else {
        let _ = writeln!(
            out,
            "geoip   {ip} is not a public address: the client is placed by the resolver's \
             address (here loopback: the global zone)"
        );
    }
    let (region, _) = answer::locate(table, &client);
    let scope = sent.ecs_scope;
    let _ = writeln!(
        out,
        "region  country {} · continent {} · ECS scope /{scope} (sent to a resolver's ECS {ip}/{})",
        region
            .country
            .map_or("unknown", |c| table.zone_label(ZoneId::Country(c))),
        region
            .continent
            .map_or("unknown".to_owned(), |c| c.to_string()),
        if ip.is_ipv4() { 32 } else { 128 },
    );
    let Some(node) = answer::node_of(table, &wire) else {
        let _ = writeln!(
            out,
            "answer  NXDOMAIN: {origin} has no name {}",
            name::render(&wire)
        );
        return Ok(out);
    };
    let Some(pool) = node.pool else {
        let _ = writeln!(out, "answer  static records only (no pool at this name)");
        return Ok(out);
    };
    let family = if qtype == rtype::AAAA {
        Family::V6
    } else {
        Family::V4
    };
    if let (Family::V6, AaaaPolicy::OnlyNumbered(n)) = (family, table.config.aaaa) {
        if pool.number != Some(n) {
            let _ = writeln!(out, "answer  NODATA: AAAA is only served under {n}.");
            return Ok(out);
        }
    }
    let client = match pool.target {
        Target::Geo => Some(region.country),
        Target::Country(c) => Some(Some(c)),
        Target::Continent(_) | Target::Source(_) => None,
    };
    if let (Some(plans), Some(client)) = (&table.plan, client) {
        explain_plan(
            table,
            &plans[family as usize],
            family,
            pool.number,
            client,
            &mut out,
        );
        return Ok(out);
    }
    let region = if pool.target == Target::Geo {
        region
    } else {
        Default::default()
    };
    let chain = table.chain(pool.target, region);
    let mut chosen = None;
    let _ = write!(out, "chain  ");
    for zone in chain.zones() {
        let n = table.zone(zone, family).all.len();
        let _ = write!(out, " {} ({n} eligible)", table.zone_label(zone));
        if chosen.is_none() && n > 0 {
            chosen = Some(zone);
            let _ = write!(out, " ← answers");
            break;
        }
        let _ = write!(out, " →");
    }
    let _ = writeln!(out);
    let Some(zone) = chosen else {
        let _ = writeln!(
            out,
            "answer  NODATA: no eligible server of this family anywhere"
        );
        return Ok(out);
    };
    let sets = table.zone(zone, family);
    let sampler = match pool.number {
        Some(n) if !sets.numbered.is_empty() => {
            let _ = writeln!(
                out,
                "subset  {n} of {} (epoch {})",
                sets.numbered.len(),
                table.epoch
            );
            &sets.numbered[usize::from(n).min(sets.numbered.len() - 1)]
        }
        Some(_)
            if family == Family::V6 && matches!(table.config.aaaa, AaaaPolicy::OnlyNumbered(_)) =>
        {
            let _ = writeln!(
                out,
                "subset  none: AAAA is served only here, from the whole IPv6 zone"
            );
            &sets.all
        }
        Some(_) => {
            let _ = writeln!(
                out,
                "subset  the zone is not split (fewer than 8 servers, or no split keeps every \
                 server's share within 10 %): every server"
            );
            &sets.all
        }
        None => &sets.all,
    };
    let _ = writeln!(
        out,
        "answer  {} of {} candidates, each with this probability of being in an answer:",
        table.config.records.min(sampler.len()),
        sampler.len()
    );
    let rows = sampler
        .inclusion()
        .iter()
        .copied()
        .zip(sampler.members().iter().copied());
    candidate_rows(table, rows, &mut out);
    Ok(out)
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// The plan part of `explain`: the client country's sources with their shares, and each
/// candidate's probability of being in an answer over all of them.
fn explain_plan(
    table: &Table,
    plan: &crate::plan::FamilyPlan,
    family: Family,
    number: Option<u8>,
    client: Option<u16>,
    out: &mut String,
) {
    let row = plan.row(client);
    let mut sources: Vec<(Source, f64)> = row.shares().to_vec();
    sources.sort_by(|a, b| b.1.total_cmp(&a.1));
    let listed: Vec<String> = sources
        .iter()
        .map(|&(s, share)| format!("{} {:.1} %", source_label(table, s), share * 100.0))
        .collect();
    let _ = writeln!(
        out,
        "plan    clients in {} get answers from {} (balance.mode = \"plan\", max_load {})",
        client.map_or("an unknown country", |c| table
            .zone_label(ZoneId::Country(c))),
        listed.join(", "),
        table.config.balance.max_load
    );
    if let Some(n) = number {
        let _ = writeln!(out, "subset  {n} of each source (epoch {})", table.epoch);
    }
    let mut probability: std::collections::BTreeMap<u32, f64> = Default::default();
    for &(source, share) in &sources {
        let zone = match source {
            Source::Country(c) => ZoneId::Country(c),
            Source::Global => ZoneId::Global,
        };
        let sampler = table.sampler(zone, family, number);
        for (&m, &p) in sampler.members().iter().zip(sampler.inclusion()) {
            *probability.entry(m).or_default() += share * p;
        }
    }
    let _ = writeln!(
        out,
        "answer  {} servers per answer from {} candidates, each with this probability of being \
         in an answer (answers from a source of fewer servers are filled from the whole pool; \
         not counted here):",
        table.config.records.min(table.eligible(family)),
        probability.len()
    );
    candidate_rows(table, probability.into_iter().map(|(m, p)| (p, m)), out);
}

/// `explain`'s candidate rows, most likely first: probability, id, address, net speed.
fn candidate_rows(table: &Table, rows: impl Iterator<Item = (f64, u32)>, out: &mut String) {
    let mut rows: Vec<(f64, u32)> = rows.collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (p, m) in rows {
        let member = &table.members[m as usize];
        let _ = writeln!(
            out,
            "  {:>7.3} %  id {:<8} {:<40} {:>10} kbit/s",
            p * 100.0,
            member.id,
            member.ip,
            member.netspeed
        );
    }
}

/// Loads per server of one family under one way of answering: each server's expected
/// records ÷ its fair share, with the summary numbers `plan` prints.
#[derive(Debug, Clone, Default)]
pub struct LoadSummary {
    /// Expected load ÷ fair, by member id (members of the family only).
    pub ratios: Vec<(u32, f64)>,
    /// Share of the demand answered in the client's country.
    pub in_country: f64,
    /// Share answered within the client's continent.
    pub in_continent: f64,
}

impl LoadSummary {
    /// The ratio at quantile `q` (0 … 1) of the servers.
    pub fn quantile(&self, q: f64) -> f64 {
        let mut v: Vec<f64> = self.ratios.iter().map(|&(_, r)| r).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        v[i]
    }
}

/// The plan's loads for a family: None unless the table is in plan mode.
pub fn plan_loads(table: &Table, family: Family) -> Option<LoadSummary> {
    let plan = &table.plan.as_ref()?[family as usize];
    let members = table.zone(ZoneId::Global, family).all.members();
    Some(LoadSummary {
        ratios: members
            .iter()
            .map(|&m| (m, plan.expected.get(m as usize).copied().unwrap_or(0.0)))
            .collect(),
        in_country: plan.in_country,
        in_continent: plan.in_continent,
    })
}

/// The loads strict zones would give for the same demand: each client country's demand
/// goes to the first zone of its chain (country, continent, global) with servers.
pub fn zones_loads(table: &Table, family: Family, demand: &[f64]) -> LoadSummary {
    let global = &table.zone(ZoneId::Global, family).all;
    let total_weight: f64 = global
        .members()
        .iter()
        .map(|&m| f64::from(table.members[m as usize].weight))
        .sum();
    let records = table.config.records.min(global.len()) as f64;
    let total_demand: f64 = demand.iter().sum();
    let mut load = vec![0.0; table.members.len()];
    let (mut in_country, mut in_continent) = (0.0, 0.0);
    for (c, &d) in demand.iter().enumerate() {
        if d <= 0.0 {
            continue;
        }
        let country = c as u16;
        let region = crate::table::Region {
            country: Some(country),
            continent: table.continent_of(country),
        };
        let chain = table.chain(Target::Geo, region);
        let Some(zone) = chain
            .zones()
            .find(|&z| !table.zone(z, family).all.is_empty())
        else {
            continue;
        };
        match zone {
            ZoneId::Country(_) => {
                in_country += d;
                in_continent += d;
            }
            ZoneId::Continent(_) => in_continent += d,
            ZoneId::Global => {}
        }
        let set = &table.zone(zone, family).all;
        for (&m, &p) in set.members().iter().zip(set.inclusion()) {
            load[m as usize] += d * p;
        }
    }
    // The fair load is what the records actually served make per unit of weight: a
    // zone of fewer than k servers answers with fewer records.
    let served: f64 = load.iter().sum();
    let fair = if served > 0.0 {
        served / total_weight.max(1.0)
    } else {
        records * total_demand / total_weight.max(1.0)
    };
    LoadSummary {
        ratios: global
            .members()
            .iter()
            .map(|&m| {
                let w = f64::from(table.members[m as usize].weight);
                (m, load[m as usize] / (fair * w).max(f64::MIN_POSITIVE))
            })
            .collect(),
        in_country: in_country / total_demand.max(f64::MIN_POSITIVE),
        in_continent: in_continent / total_demand.max(f64::MIN_POSITIVE),
    }
}

/// `pooldns plan` as text: per family, zones mode and plan mode side by side, the client
/// countries and where their answers go, and the most loaded servers.
pub fn plan_text(table: &Table) -> String {
    let mut out = String::new();
    let Some(plans) = &table.plan else {
        let _ = writeln!(
            out,
            "{}: balance.mode is \"zones\": there is no plan (set mode = \"plan\")",
            table.config.path.display()
        );
        return out;
    };
    for family in [Family::V4, Family::V6] {
        let plan = &plans[family as usize];
        let name = if family == Family::V4 { "IPv4" } else { "IPv6" };
        let servers = table.eligible(family);
        let _ = writeln!(out, "{name}: {servers} eligible servers");
        if servers == 0 {
            let _ = writeln!(out);
            continue;
        }
        let planned = plan_loads(table, family).unwrap_or_default();
        let zoned = zones_loads(table, family, &plan.demand);
        let _ = writeln!(
            out,
            "  demand {}; load = expected records ÷ the server's fair share (fair = 1); cap {}",
            match (plan.demand_known, table.demand_from_file) {
                (true, true) => "from the demand file",
                (true, false) => "from the GeoIP database's address space (no demand file)",
                (false, _) => "unknown: assumed in proportion to net speed",
            },
            table.config.balance.max_load
        );
        let _ = writeln!(out, "  {:<14} {:>10} {:>10}", "", "zones", "plan");
        for (label, q) in [("max load", 1.0), ("p99", 0.99), ("p50", 0.5), ("min", 0.0)] {
            let _ = writeln!(
                out,
                "  {label:<14} {:>9.2}× {:>9.2}×",
                zoned.quantile(q),
                planned.quantile(q)
            );
        }
        for (label, z, p) in [
            ("in-country", zoned.in_country, planned.in_country),
            ("in-continent", zoned.in_continent, planned.in_continent),
            (
                "elsewhere",
                (1.0 - zoned.in_continent).max(0.0),
                (1.0 - planned.in_continent).max(0.0),
            ),
        ] {
            let _ = writeln!(out, "  {label:<14} {:>9.1}% {:>9.1}%", z * 100.0, p * 100.0);
        }
        let mut clients: Vec<usize> = (0..plan.demand.len())
            .filter(|&c| plan.demand[c] > 0.0)
            .collect();
        clients.sort_by(|&a, &b| plan.demand[b].total_cmp(&plan.demand[a]));
        let _ = writeln!(
            out,
            "  {:<4} {:>8} {:>9}  answers from",
            "cc", "demand", "capacity"
        );
        for c in clients {
            let row = plan.row(Some(c as u16));
            let mut sources: Vec<(Source, f64)> = row.shares().to_vec();
            sources.sort_by(|a, b| b.1.total_cmp(&a.1));
            let listed: Vec<String> = sources
                .iter()
                .take(6)
                .map(|&(s, share)| format!("{} {:.1}%", source_label(table, s), share * 100.0))
                .collect();
            let more = sources.len().saturating_sub(6);
            let _ = writeln!(
                out,
                "  {:<4} {:>7.2}% {:>8.2}%  {}{}",
                table.zone_label(ZoneId::Country(c as u16)),
                plan.demand[c] * 100.0,
                plan.capacity.get(c).copied().unwrap_or(0.0) * 100.0,
                listed.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
        let mut top = planned.ratios.clone();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let _ = writeln!(out, "  most loaded servers (plan):");
        for &(m, r) in top.iter().take(10) {
            let member = &table.members[m as usize];
            let _ = writeln!(
                out,
                "    {r:>6.2}×  id {:<8} {:<40} {:>10} kbit/s",
                member.id, member.ip, member.netspeed
            );
        }
        let _ = writeln!(out);
    }
    out
}

/// `pooldns plan --format json` (the form is in README).
pub fn plan_json(table: &Table) -> serde_json::Value {
    let mut root = serde_json::Map::new();
    let Some(plans) = &table.plan else {
        return serde_json::Value::Object(root);
    };
    for family in [Family::V4, Family::V6] {
        let plan = &plans[family as usize];
        let planned = plan_loads(table, family).unwrap_or_default();
        let zoned = zones_loads(table, family, &plan.demand);
        let global = table.zone(ZoneId::Global, family);
        let mbps = global.netspeed as f64 / 1000.0;
        let summary = |l: &LoadSummary| {
            serde_json::json!({
                "in_country": l.in_country,
                "in_continent": l.in_continent,
                "max": l.quantile(1.0),
                "p99": l.quantile(0.99),
                "p50": l.quantile(0.5),
                "min": l.quantile(0.0),
            })
        };
        let servers: serde_json::Map<String, serde_json::Value> = planned
            .ratios
            .iter()
            .map(|&(m, r)| {
                (
                    table.members[m as usize].id.to_string(),
                    serde_json::json!(r),
                )
            })
            .collect();
        let countries: serde_json::Map<String, serde_json::Value> = (0..plan.demand.len())
            .filter(|&c| plan.demand[c] > 0.0 || plan.capacity.get(c).is_some_and(|&x| x > 0.0))
            .map(|c| {
                let country = c as u16;
                let continent = table.continent_of(country);
                let shares = plan.row(Some(country)).shares();
                let own: f64 = shares
                    .iter()
                    .filter(|&&(s, _)| s == Source::Country(country))
                    .map(|&(_, x)| x)
                    .sum();
                let near: f64 = shares
                    .iter()
                    .filter(|&&(s, _)| match s {
                        Source::Country(x) => table.continent_of(x) == continent,
                        Source::Global => false,
                    })
                    .map(|&(_, x)| x)
                    .sum();
                let sources: serde_json::Map<String, serde_json::Value> = shares
                    .iter()
                    .map(|&(s, x)| (source_label(table, s).to_owned(), serde_json::json!(x)))
                    .collect();
                (
                    table.zone_label(ZoneId::Country(country)).to_owned(),
                    serde_json::json!({
                        "demand": plan.demand[c],
                        "capacity": plan.capacity.get(c).copied().unwrap_or(0.0),
                        "in_country": own,
                        "in_continent": near,
                        "sources": sources,
                    }),
                )
            })
            .collect();
        root.insert(
            family_key(family).to_owned(),
            serde_json::json!({
                "fair": if mbps > 0.0 { 1.0 / mbps } else { 0.0 },
                "max_load": table.config.balance.max_load,
                "demand_known": plan.demand_known,
                "in_country": plan.in_country,
                "in_continent": plan.in_continent,
                "overflow": plan.overflow,
                "plan": summary(&planned),
                "zones": summary(&zoned),
                "servers": servers,
                "countries": countries,
            }),
        );
    }
    serde_json::Value::Object(root)
}

fn family_key(family: Family) -> &'static str {
    match family {
        Family::V4 => "v4",
        Family::V6 => "v6",
    }
}

/// A source as text: a country code or the global zone's label.
pub fn source_label(table: &Table, source: Source) -> &'static str {
    match source {
        Source::Country(c) => table.zone_label(ZoneId::Country(c)),
        Source::Global => table.zone_label(ZoneId::Global),
    }
}

/// A unix time as a UTC date and time, `2026-11-29 14:05:00 UTC`. Times before 1970 or
/// past year 9999 are printed as the raw number.
pub fn utc_time(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    match civil_from_days(days) {
        Some((y, m, d)) => format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        ),
        None => unix.to_string(),
    }
}

/// A UTC date from days since 1970-01-01 (the proleptic Gregorian calendar; the
/// era-based method of Howard Hinnant's "chrono-Compatible Low-Level Date Algorithms").
pub fn civil_from_days(days: u64) -> Option<(u32, u32, u32)> {
    let z = days.checked_add(719_468)?;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y <= 9999).then_some((y as u32, m as u32, d as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_handles_leap_days_and_century_rules() {
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
            assert_eq!(utc_time(unix), text, "{unix}");
        }
        // Every day from 1970 to 2110 follows the one before it.
        let mut previous = civil_from_days(0).unwrap();
        for days in 1..51_000 {
            let (y, m, d) = civil_from_days(days).unwrap();
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
    fn utc_time_renders_known_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_763_798_400), "2025-11-22 08:00:00 UTC");
        assert_eq!(utc_time(4_102_444_799), "2099-12-31 23:59:59 UTC");
        assert_eq!(utc_time(u64::MAX), u64::MAX.to_string());
    }
}
