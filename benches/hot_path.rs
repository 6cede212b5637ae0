//! Criterion benchmarks of the per-query work: the weighted pick at 100 / 10k / 100k
//! servers, the GeoIP lookup, the name lookup, answer building, and a whole query from bytes
//! to bytes. Run with `cargo bench --bench hot_path`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use pooldns::config::ZoneConfig;
use pooldns::continent;
use pooldns::feed::{self, Feed};
use pooldns::geo::GeoDb;
use pooldns::select::Sampler;
use pooldns::server::{Transport, respond};
use pooldns::table::{Names, Table};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const SPEEDS: [u32; 14] = [
    512, 1500, 3000, 6000, 12000, 25000, 50000, 100_000, 250_000, 500_000, 1_000_000, 1_500_000,
    2_000_000, 3_000_000,
];

fn root(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A synthetic feed of `n` servers spread over every country (IPv4 from 198.18.0.0/15).
fn synthetic_feed(n: usize) -> Feed {
    let mut rng = SmallRng::seed_from_u64(1);
    let countries: Vec<&str> = continent::countries().map(|(c, _)| c).collect();
    let servers: Vec<String> = (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(0xc612_0000u32 + i as u32 + 1);
            format!(
                r#"{{"id": {}, "ip": "{ip}", "netspeed": {}, "score": 19.5, "country": "{}"}}"#,
                i + 1,
                SPEEDS[rng.random_range(0..SPEEDS.len())],
                countries[rng.random_range(0..countries.len())]
            )
        })
        .collect();
    let json = format!("{{\"servers\": [{}]}}", servers.join(","));
    feed::load_slice("synthetic", json.as_bytes()).expect("feed")
}

fn table_for(feed: &Feed) -> Table {
    let config = ZoneConfig::load(&root("zones/pool.ntp.org.toml")).expect("config");
    let names = Names::build(&config).expect("names");
    let geo = GeoDb::open(&root("data/dbip-country.mmdb")).expect("geoip");
    Table::build(Arc::new(config), Arc::new(names), Arc::new(geo), feed, 0)
}

/// `n` net speeds drawn from the pool's.
fn speeds(n: usize, rng: &mut SmallRng) -> Vec<u32> {
    (0..n)
        .map(|_| SPEEDS[rng.random_range(0..SPEEDS.len())])
        .collect()
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    let mut rng = SmallRng::seed_from_u64(2);
    for n in [100usize, 10_000, 100_000] {
        let weights = speeds(n, &mut rng);
        let sampler = Sampler::new((0..n as u32).collect(), &weights, 4, &mut rng);
        group.bench_with_input(BenchmarkId::from_parameter(n), &sampler, |b, s| {
            b.iter(|| black_box(s.pick(&mut rng)))
        });
    }
    // As in a server: many large sets, each query in another, so that the pick's reads
    // miss the caches (32 sets of 100,000: about 200 MB of orderings, past any L3).
    let samplers: Vec<Sampler> = (0..32)
        .map(|_| {
            let weights = speeds(100_000, &mut rng);
            Sampler::new((0..100_000).collect(), &weights, 4, &mut rng)
        })
        .collect();
    group.bench_function("cold_32x100000", |b| {
        b.iter(|| black_box(samplers[rng.random_range(0..samplers.len())].pick(&mut rng)))
    });
    group.finish();
}

fn geo(c: &mut Criterion) {
    let geo = GeoDb::open(&root("data/dbip-country.mmdb")).expect("geoip");
    let mut rng = SmallRng::seed_from_u64(3);
    let addrs: Vec<IpAddr> = (0..1024)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.random::<u32>())))
        .collect();
    let mut i = 0;
    c.bench_function("geo_locate_v4", |b| {
        b.iter(|| {
            i = (i + 1) % addrs.len();
            black_box(geo.locate(addrs[i]))
        })
    });
}

fn query_bytes(name: &str, ecs: Option<[u8; 3]>) -> Vec<u8> {
    let mut q = vec![
        0x12,
        0x34,
        0x00,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(ecs.is_some()),
    ];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some(addr) = ecs {
        q.extend_from_slice(&[
            0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 24, 0,
        ]);
        q.extend_from_slice(&addr);
    }
    q
}

fn whole_query(c: &mut Criterion) {
    let mut group = c.benchmark_group("respond");
    let mut rng = SmallRng::seed_from_u64(4);
    let mut out = vec![0u8; 65_535];
    let source: IpAddr = "127.0.0.1".parse().unwrap();
    let counters = pooldns::metrics::Counters::default();
    for n in [1_000usize, 100_000] {
        let table = table_for(&synthetic_feed(n));
        for (label, q) in [
            ("0.pool.ntp.org", query_bytes("0.pool.ntp.org", None)),
            (
                "pool.ntp.org+ecs",
                query_bytes("pool.ntp.org", Some([81, 2, 69])),
            ),
            ("de.pool.ntp.org", query_bytes("de.pool.ntp.org", None)),
            ("nxdomain", query_bytes("nothing.pool.ntp.org", None)),
        ] {
            group.bench_function(BenchmarkId::new(label, n), |b| {
                b.iter(|| {
                    black_box(respond(
                        &table,
                        &q,
                        source,
                        Transport::Udp,
                        &mut rng,
                        &counters,
                        &mut out,
                    ))
                })
            });
        }
    }
    group.finish();
}

fn build_table(c: &mut Criterion) {
    let feed = synthetic_feed(10_000);
    let mut group = c.benchmark_group("table");
    group.sample_size(10);
    group.bench_function("build_10k", |b| b.iter(|| black_box(table_for(&feed))));
    group.finish();
}

criterion_group!(benches, pick, geo, whole_query, build_table);
criterion_main!(benches);
