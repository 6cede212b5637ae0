//! Text reports for operators: the summary `pooldns check` prints and the walk-through
//! `pooldns explain` prints. Both read a built table, exactly as `serve` would use it.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::answer::{self, Client};
use crate::config::AaaaPolicy;
use crate::continent::{self, Continent};
use crate::name;
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
            let _ = writeln!(out, "subset  the zone is too small to split: every server");
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
    let mut rows: Vec<(f64, usize)> = sampler
        .inclusion()
        .iter()
        .zip(sampler.members())
        .map(|(&p, &m)| (p, m as usize))
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (p, m) in rows {
        let member = &table.members[m];
        let _ = writeln!(
            out,
            "  {:>7.3} %  id {:<8} {:<40} {:>10} kbit/s",
            p * 100.0,
            member.id,
            member.ip,
            member.netspeed
        );
    }
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
    fn utc_time_renders_known_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_763_798_400), "2025-11-22 08:00:00 UTC");
        assert_eq!(utc_time(4_102_444_799), "2099-12-31 23:59:59 UTC");
        assert_eq!(utc_time(u64::MAX), u64::MAX.to_string());
    }
}
