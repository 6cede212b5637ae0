//! Deterministic generator of a realistic sample server feed (`servers.json`).
//!
//! # Usage
//!
//! ```text
//! cargo run --release --example gen_feed -- --servers 3000 --seed 1 > data/servers.json
//! ```
//!
//! Flags: `--servers N` (default 3000), `--seed S` (default 1), `--serial N` (default
//! 1763798400). The JSON feed goes to stdout, one server per line so diffs stay readable:
//!
//! ```text
//! {"serial": 1763798400, "servers": [
//!   {"id": 1001, "ip": "198.18.7.42", "netspeed": 100000, "score": 19.8, "country": "de"},
//!   {"id": 1002, "ip": "2001:db8:4c1e:12::123", "netspeed": 250000, "score": 12.5, "country": "us"}
//! ]}
//! ```
//!
//! The same seed (and the same `--servers` / `--serial`) always gives byte-identical output
//! (with the `rand` version pinned by `Cargo.lock`).
//!
//! # Distribution
//!
//! * **Countries**: about 100 lowercase ISO 3166-1 alpha-2 codes on all six continents
//!   (africa, asia, europe, north-america, oceania, south-america), skewed like the real
//!   NTP pool: many servers in `us`, `de`, `fr`, `gb`, `nl`; a sizable share in `ca`, `jp`,
//!   `au`, `ru`, `ch`, `se`, `fi`, `pl`, `cz`, `cn`, `sg`, `br`, ...; one or two in small
//!   countries (`is`, `lu`, `ee`, `ke`, `nz`, `uy`, `za`, `mx`, ...). The weights below are
//!   "servers per 3000"; each seed jitters them by ±20%, the counts are apportioned exactly
//!   (largest remainder), and once there are at least ten servers per country every country
//!   gets at least one. Countries are then shuffled over the ids.
//! * **Net speed** (kbit/s): the pool's values 512 … 3000000, most between 100000 and
//!   1000000, few at the extremes; about 3% have netspeed 0 (monitoring only).
//! * **Score**: one decimal in −100.0 … 20.0; about 72% in 15–20 (bunched near 20), 13% in
//!   10–15, and a tail below 10 down to −100 (about 85% above 10).
//! * **Addresses**: about a third IPv6. All addresses are unique and come only from
//!   documentation / benchmarking ranges: IPv4 from 192.0.2.0/24, 198.51.100.0/24,
//!   203.0.113.0/24 and 198.18.0.0/15 (skipping `.0` and `.255`, about 130,000 addresses;
//!   servers beyond that become IPv6), IPv6 from 2001:db8::/32.
//! * **ids**: unique and increasing from 1001.

use std::collections::HashSet;
use std::io::{self, BufWriter, Write};
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use clap::Parser;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

/// Command line flags.
#[derive(Parser, Debug)]
#[command(about = "Generate a deterministic sample NTP pool server feed (JSON on stdout)")]
struct Args {
    /// Number of servers to generate.
    #[arg(long, default_value_t = 3000)]
    servers: usize,
    /// Random seed; the same seed gives byte-identical output.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Feed serial number.
    #[arg(long, default_value_t = 1_763_798_400)]
    serial: u64,
}

/// Countries by continent with their weight ("servers per 3000").
const CONTINENTS: &[(&str, &[(&str, u32)])] = &[
    (
        "europe",
        &[
            ("de", 560),
            ("fr", 230),
            ("gb", 200),
            ("nl", 190),
            ("ru", 90),
            ("ch", 65),
            ("se", 60),
            ("fi", 60),
            ("pl", 55),
            ("cz", 55),
            ("at", 50),
            ("it", 45),
            ("es", 40),
            ("dk", 35),
            ("no", 30),
            ("be", 30),
            ("ua", 30),
            ("ro", 25),
            ("ie", 20),
            ("hu", 20),
            ("bg", 20),
            ("pt", 15),
            ("gr", 12),
            ("sk", 12),
            ("lt", 10),
            ("lv", 8),
            ("si", 8),
            ("hr", 7),
            ("rs", 7),
            ("ee", 2),
            ("lu", 2),
            ("md", 2),
            ("cy", 2),
            ("is", 1),
            ("mt", 1),
        ],
    ),
    (
        "north-america",
        &[("us", 680), ("ca", 100), ("mx", 2), ("cr", 1), ("pa", 1)],
    ),
    (
        "asia",
        &[
            ("jp", 70),
            ("cn", 55),
            ("sg", 50),
            ("hk", 30),
            ("in", 30),
            ("kr", 20),
            ("tw", 20),
            ("id", 12),
            ("tr", 12),
            ("th", 10),
            ("il", 10),
            ("vn", 8),
            ("my", 8),
            ("ae", 6),
            ("ph", 4),
            ("kz", 4),
            ("bd", 2),
            ("pk", 2),
            ("sa", 2),
            ("lk", 1),
        ],
    ),
    ("oceania", &[("au", 75), ("nz", 2), ("fj", 1)]),
    (
        "south-america",
        &[
            ("br", 45),
            ("ar", 2),
            ("cl", 2),
            ("co", 1),
            ("pe", 1),
            ("uy", 1),
            ("ec", 1),
        ],
    ),
    (
        "africa",
        &[
            ("za", 2),
            ("ke", 1),
            ("ng", 1),
            ("eg", 1),
            ("ma", 1),
            ("tn", 1),
            ("mu", 1),
        ],
    ),
];

/// Net speeds (kbit/s) with relative weights; 0 is "monitoring only".
const NETSPEEDS: &[(u32, u32)] = &[
    (0, 30),
    (512, 5),
    (1500, 5),
    (3000, 10),
    (6000, 15),
    (12000, 25),
    (25000, 40),
    (50000, 70),
    (100000, 180),
    (250000, 175),
    (500000, 140),
    (1000000, 225),
    (1500000, 35),
    (2000000, 25),
    (3000000, 20),
];

/// Split `n` servers over the countries in proportion to their (jittered) weights.
fn country_counts(rng: &mut StdRng, n: usize) -> Vec<(&'static str, usize)> {
    let countries: Vec<(&str, f64)> = CONTINENTS
        .iter()
        .flat_map(|(_, list)| list.iter())
        .map(|&(cc, w)| (cc, f64::from(w) * rng.random_range(0.8..1.2)))
        .collect();
    let total: f64 = countries.iter().map(|(_, w)| w).sum();

    // Largest-remainder apportionment: exact total, deterministic tie-breaks by index.
    let quotas: Vec<f64> = countries
        .iter()
        .map(|(_, w)| w / total * n as f64)
        .collect();
    let mut counts: Vec<usize> = quotas.iter().map(|q| q.floor() as usize).collect();
    let mut order: Vec<usize> = (0..countries.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (quotas[a].fract(), quotas[b].fract());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let assigned: usize = counts.iter().sum();
    for &i in order.iter().take(n - assigned) {
        counts[i] += 1;
    }

    // With enough servers, every country gets at least one (taken from the largest).
    if n >= 10 * countries.len() {
        for i in 0..counts.len() {
            if counts[i] == 0 {
                let largest = (0..counts.len())
                    .max_by_key(|&j| (counts[j], std::cmp::Reverse(j)))
                    .expect("non-empty");
                counts[largest] -= 1;
                counts[i] = 1;
            }
        }
    }

    countries
        .iter()
        .zip(counts)
        .map(|(&(cc, _), c)| (cc, c))
        .collect()
}

/// Score in tenths (−1000 … 200).
fn score_tenths(rng: &mut StdRng) -> i32 {
    let p: f64 = rng.random();
    if p < 0.72 {
        // 15.0 … 20.0, bunched towards 20.
        let u: f64 = rng.random();
        200 - (50.0 * u * u).round() as i32
    } else if p < 0.85 {
        rng.random_range(100..150)
    } else if p < 0.93 {
        rng.random_range(0..100)
    } else if p < 0.97 {
        rng.random_range(-200..0)
    } else {
        rng.random_range(-1000..-200)
    }
}

/// Format a score given in tenths with exactly one decimal (never "-0.0").
fn format_score(tenths: i32) -> String {
    let sign = if tenths < 0 { "-" } else { "" };
    let abs = tenths.unsigned_abs();
    format!("{sign}{}.{}", abs / 10, abs % 10)
}

/// The `i`-th usable documentation IPv4 address (skipping `.0` and `.255`).
fn ipv4_at(i: usize) -> Ipv4Addr {
    const TEST_NETS: [[u8; 3]; 3] = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];
    let per_24 = 254;
    if i < TEST_NETS.len() * per_24 {
        let [a, b, c] = TEST_NETS[i / per_24];
        return Ipv4Addr::new(a, b, c, (i % per_24 + 1) as u8);
    }
    // 198.18.0.0/15: 512 /24s.
    let j = i - TEST_NETS.len() * per_24;
    let block = j / per_24;
    Ipv4Addr::new(
        198,
        18 + (block / 256) as u8,
        (block % 256) as u8,
        (j % per_24 + 1) as u8,
    )
}

/// Number of usable documentation IPv4 addresses.
const IPV4_POOL: usize = (3 + 512) * 254;

/// A random address in 2001:db8::/32 in one of a few common styles.
fn random_ipv6(rng: &mut StdRng) -> Ipv6Addr {
    let site: u16 = rng.random();
    let subnet: u16 = if rng.random_bool(0.6) {
        rng.random_range(0..16)
    } else {
        rng.random()
    };
    let iid: [u16; 4] = match rng.random_range(0..10) {
        // Small manual host numbers: ::1, ::123, ::53.
        0..=4 => [0, 0, 0, rng.random_range(1..0x200)],
        // Two-part manual: ::1:5, ::10:2.
        5..=6 => [0, 0, rng.random_range(1..0x20), rng.random_range(1..0x100)],
        // Random / SLAAC-like interface identifier.
        _ => [rng.random(), rng.random(), rng.random(), rng.random()],
    };
    Ipv6Addr::new(0x2001, 0x0db8, site, subnet, iid[0], iid[1], iid[2], iid[3])
}

fn main() -> Result<()> {
    let args = Args::parse();
    match generate(&args) {
        // `gen_feed | head` is fine: stop quietly when the reader goes away.
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        r => r,
    }
}

/// Write the feed for `args` to stdout.
fn generate(args: &Args) -> Result<()> {
    let n = args.servers;
    let mut rng = StdRng::seed_from_u64(args.seed);

    // Countries, shuffled over the ids.
    let mut countries: Vec<&str> = country_counts(&mut rng, n)
        .into_iter()
        .flat_map(|(cc, c)| std::iter::repeat_n(cc, c))
        .collect();
    countries.shuffle(&mut rng);

    // About a third IPv6; IPv4 capped by the size of the documentation ranges.
    let mut is_v6: Vec<bool> = (0..n).map(|_| rng.random_bool(1.0 / 3.0)).collect();
    let mut n_v4 = is_v6.iter().filter(|v| !**v).count();
    for v in is_v6.iter_mut() {
        if n_v4 <= IPV4_POOL {
            break;
        }
        if !*v {
            *v = true;
            n_v4 -= 1;
        }
    }
    let mut v4_addrs = rand::seq::index::sample(&mut rng, IPV4_POOL, n_v4)
        .into_iter()
        .map(ipv4_at);
    let mut seen_v6 = HashSet::new();

    let netspeed_dist = WeightedIndex::new(NETSPEEDS.iter().map(|&(_, w)| w))?;

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    writeln!(out, "{{\"serial\": {}, \"servers\": [", args.serial)?;
    for (i, (country, v6)) in countries.iter().zip(&is_v6).enumerate() {
        let ip = if *v6 {
            loop {
                let a = random_ipv6(&mut rng);
                if seen_v6.insert(a) {
                    break a.to_string();
                }
            }
        } else {
            v4_addrs.next().expect("sampled enough IPv4").to_string()
        };
        let netspeed = NETSPEEDS[rng.sample(&netspeed_dist)].0;
        let score = format_score(score_tenths(&mut rng));
        let sep = if i + 1 < n { "," } else { "" };
        writeln!(
            out,
            "  {{\"id\": {}, \"ip\": \"{ip}\", \"netspeed\": {netspeed}, \"score\": {score}, \"country\": \"{country}\"}}{sep}",
            1001 + i,
        )?;
    }
    writeln!(out, "]}}")?;
    out.flush()?;
    Ok(())
}
