//! The `pooldns` command line: parses arguments, calls the library, turns errors into exit
//! codes. Nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc instead of glibc malloc: tables are built on a blocking thread and freed on
// another, which left glibc's per-thread arenas holding the old tables' memory (RSS grew
// from 214 MB to 560 MB over a few reloads of a 100,000-server feed).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use pooldns::feed::PollOptions;
use pooldns::reload::{Reloader, Sources};
use pooldns::server::{self, Listeners, ServerOptions};

#[derive(Parser)]
#[command(
    name = "pooldns",
    version,
    about = "GeoDNS load-balancing authoritative nameserver for server pools"
)]
struct Cli {
    /// Log format on stderr: "text" for people, "json" for log shippers. The level comes
    /// from RUST_LOG (default "info").
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the zone over UDP and TCP.
    Serve(ServeArgs),
    /// Load configuration, feed and GeoIP database exactly as `serve` would, print a
    /// summary, and exit non-zero on any error or skipped feed entry.
    Check(InputArgs),
    /// Show how a query for NAME from ADDR would be answered (offline).
    Explain(ExplainArgs),
    /// Print the serving plan: per family, loads and locality in zones mode and in plan
    /// mode side by side, where each client country's answers go, the most loaded servers.
    Plan(PlanArgs),
    /// Ask the running server to reload its inputs, as SIGHUP does, and print the outcome.
    /// Talks to the server's HTTP listener, which accepts this from loopback only.
    Reload(ReloadArgs),
    /// Write a demand file (the serving plan's demand per client country and family) from
    /// a fleet's pooldns_client_queries_total counters: their increase over a window from
    /// Prometheus, or their current sum from the instances' /metrics.
    Demand(DemandArgs),
    /// Make a DNSSEC zone key (BIND's key-file format, as dnssec-keygen writes it) and
    /// print the name of its .key file.
    Keygen(KeygenArgs),
    /// Print the DS records the parent zone publishes for the zone's key-signing keys (a
    /// combined key when there is no KSK), from the key files in a directory.
    Ds(DsArgs),
    /// Probe the registered NTP servers, score them the pool's way and write the feed that
    /// `serve` reads: the health half of the pool, run as its own process.
    Monitor(MonitorArgs),
}

#[derive(clap::Args)]
struct KeygenArgs {
    /// The zone the key signs.
    #[arg(long, default_value = "pool.ntp.org")]
    zone: String,
    /// Directory for the two key files (K<zone>.+<alg>+<tag>.key and .private).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// 13: ECDSA P-256 with SHA-256; 15: Ed25519.
    #[arg(long, default_value_t = 13, value_parser = clap::value_parser!(u8).range(13..=15))]
    algorithm: u8,
    /// A key-signing key (flags 257, for the DS at the parent); without it a zone-signing
    /// key (256). A lone key of either kind signs everything.
    #[arg(long)]
    ksk: bool,
}

#[derive(clap::Args)]
struct DsArgs {
    /// The zone.
    #[arg(long, default_value = "pool.ntp.org")]
    zone: String,
    /// Directory of the zone's key files.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

#[derive(clap::Args)]
struct MonitorArgs {
    /// The registry (JSON): the feed without scores, {"servers": [{"id", "ip", "netspeed",
    /// "country" (optional: placed by --geoip), "zones" (optional)}]}. Re-read when it
    /// changes and on SIGHUP.
    #[arg(long, value_name = "PATH")]
    servers: PathBuf,
    /// The feed to write, with scores filled in (written aside, then renamed over it).
    #[arg(long, value_name = "PATH", required_unless_present = "once")]
    out: Option<PathBuf>,
    /// Scores and history, kept across restarts (saved every few minutes and on exit).
    #[arg(long, value_name = "PATH", required_unless_present = "once")]
    state: Option<PathBuf>,
    /// HTTP address for /metrics, /monitor/scores.json and the pages; "none" turns it off.
    #[arg(long, default_value = "127.0.0.1:8054")]
    http: String,
    /// Mean time between two probes of a server (±5 % jitter), e.g. 60s, 2m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    interval: std::time::Duration,
    /// Most probes per second, all servers together; a registry larger than
    /// interval × max-rate is probed less often, evenly.
    #[arg(long, value_name = "N", default_value_t = 500.0)]
    max_rate: f64,
    /// Wait this long for a reply, then retry once and wait as long again.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    timeout: std::time::Duration,
    /// Another monitor's base URL (http://host:port); repeatable. The feed gets the median
    /// of the monitors' latest scores.
    #[arg(long = "peer", value_name = "URL")]
    peers: Vec<String>,
    /// How old a monitor's latest score may be to count in the median.
    #[arg(long, default_value = "20m", value_parser = parse_duration)]
    peer_window: std::time::Duration,
    /// Country GeoIP database for registry entries without a country; default:
    /// data/dbip-country.mmdb when present.
    #[arg(long)]
    geoip: Option<PathBuf>,
    /// Probe every server once, print a table and exit (non-zero when any probe lost
    /// points): for an operator adding a server.
    #[arg(long)]
    once: bool,
    /// The UDP port probed (tests only).
    #[arg(long, default_value_t = 123, hide = true)]
    port: u16,
    /// Least time between two feed writes.
    #[arg(long, default_value = "5s", value_parser = parse_duration, hide = true)]
    write_interval: std::time::Duration,
    /// Time between two state saves.
    #[arg(long, default_value = "5m", value_parser = parse_duration, hide = true)]
    save_interval: std::time::Duration,
    /// Time between two reads of each peer.
    #[arg(long, default_value = "30s", value_parser = parse_duration, hide = true)]
    peer_interval: std::time::Duration,
}

/// A duration as "500ms", "60s", "20m", "1h" or a plain number of seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 60s, 500ms, 20m or 1h"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unit {unit:?} is not ms, s, m or h")),
    };
    if !(seconds > 0.0 && seconds < 1e9) {
        return Err(format!("{text:?} must be more than zero"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["prometheus", "metrics"])))]
struct DemandArgs {
    /// A Prometheus server that scrapes every instance: its base URL
    /// (http://prometheus:9090).
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
    /// How far back --prometheus looks: a Prometheus duration (7d, 24h, 1h30m).
    #[arg(long, default_value = "7d")]
    window: String,
    /// An instance's /metrics URL (http://ns1:8053/metrics; without a path, /metrics is
    /// added); repeatable: the counters of every instance are summed.
    #[arg(long = "metrics", value_name = "URL", conflicts_with = "prometheus")]
    metrics: Vec<String>,
    /// Write the file here (written aside, then renamed over it); default: stdout.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct PlanArgs {
    #[command(flatten)]
    inputs: InputArgs,
    /// "text" for people, "json" for programs.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

#[derive(clap::Args)]
struct ReloadArgs {
    /// The running server's HTTP address (its --http).
    #[arg(long, default_value = "127.0.0.1:8053")]
    http: SocketAddr,
    /// Accept one feed that drops more than half of the eligible servers, which is
    /// otherwise refused as a likely broken feed. Logged by the server.
    #[arg(long)]
    accept_shrink: bool,
}

#[derive(clap::Args)]
struct InputArgs {
    /// Zone configuration (TOML).
    #[arg(long, default_value = "zones/pool.ntp.org.toml")]
    config: PathBuf,
    /// Server feed (JSON): a file, or an http:// or https:// URL fetched once.
    #[arg(long, default_value = "data/servers.json")]
    feed: PathBuf,
    /// Country GeoIP database; default: the configuration's `geoip`.
    #[arg(long)]
    geoip: Option<PathBuf>,
    /// The plan's demand file (JSON, queries per client country and family); default:
    /// the configuration's `balance.demand`, else the GeoIP database's address space.
    #[arg(long)]
    demand: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ExplainArgs {
    #[command(flatten)]
    inputs: InputArgs,
    /// The client's address (a resolver's, or the subnet address it sends as ECS).
    #[arg(long)]
    ip: std::net::IpAddr,
    /// Query type: A or AAAA.
    #[arg(long, default_value = "A")]
    qtype: String,
    /// The name asked for, e.g. 0.pool.ntp.org.
    name: String,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Zone configuration (TOML).
    #[arg(long, default_value = "zones/pool.ntp.org.toml")]
    config: PathBuf,
    /// Server feed (JSON): a file, watched for changes, or an http:// or https:// URL,
    /// polled with conditional requests (ETag, Last-Modified).
    #[arg(long, default_value = "data/servers.json")]
    feed: PathBuf,
    /// Seconds between requests when --feed is a URL (plus up to 10 % jitter; backoff on
    /// errors from 2 s up to 8 times this).
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    feed_interval: u64,
    /// Country GeoIP database (MaxMind format); default: the configuration's `geoip`, else
    /// the bundled data/dbip-country.mmdb.
    #[arg(long)]
    geoip: Option<PathBuf>,
    /// The plan's demand file (watched, reloaded on change); default: the
    /// configuration's `balance.demand`, else the GeoIP database's address space.
    #[arg(long)]
    demand: Option<PathBuf>,
    /// Directory for what the server keeps between runs: the last good feed (served after
    /// a restart while the feed's source is down or broken) and the shrink guard's history.
    /// Created when missing; "none" keeps nothing.
    #[arg(long, value_name = "DIR", default_value = "state")]
    state_dir: PathBuf,
    /// Accept a first feed that drops more than half of the eligible servers of the
    /// history kept in --state-dir (a running server takes `pooldns reload --accept-shrink`).
    #[arg(long)]
    accept_shrink: bool,
    /// Address to serve UDP and TCP on; repeatable.
    #[arg(long = "listen", default_values = ["127.0.0.1:5300", "[::1]:5300"])]
    listen: Vec<SocketAddr>,
    /// HTTP address for /metrics, /healthz, /status and the status page; "none" turns it off.
    #[arg(long, default_value = "127.0.0.1:8053")]
    http: String,
    /// Write a JSON line per query to this file (off by default). Written by a background
    /// thread; when it falls behind, entries are dropped and counted, never queries delayed.
    #[arg(long)]
    query_log: Option<PathBuf>,
    /// Rotate the query log when it reaches this many megabytes (PATH → PATH.1).
    #[arg(long, default_value_t = 100)]
    query_log_max_mb: u64,
    /// UDP worker threads (each with its own SO_REUSEPORT socket per address); default:
    /// one per core.
    #[arg(long)]
    udp_workers: Option<usize>,
    /// How the UDP queries of an address are shared among its workers: "auto" sends them
    /// all to one worker while it keeps up (less CPU per query at moderate rates) and
    /// spreads them over every worker when it gets busy; "off" always spreads them by the
    /// kernel's hash of the client address and port.
    #[arg(long, default_value = "auto", value_parser = ["auto", "off"])]
    udp_steering: String,
    /// The UDP workers' scheduling policy: "batch" (SCHED_BATCH: a worker woken by a query
    /// does not preempt the thread running on its core, which costs less CPU a query at
    /// moderate rates) or "normal" (the default policy, as every other thread).
    #[arg(long, default_value = "batch", value_parser = ["batch", "normal"])]
    udp_sched: String,
    /// Seconds a TCP connection may stay idle before it is closed (announced to clients
    /// by edns-tcp-keepalive).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    tcp_idle_timeout: u64,
    /// Seconds a TCP query may take to arrive in full, counted from the arrival of its
    /// two-byte length prefix; a slower client is disconnected.
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    tcp_read_timeout: u64,
    /// Most concurrent TCP connections; a new one closes an idle one: one that has not
    /// completed a query if any, else the one whose last answer is oldest.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    tcp_max_connections: usize,
    /// Most TCP connections one client /24 (IPv4) or /56 (IPv6) may hold; one more is
    /// closed at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    tcp_max_connections_per_client: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_logs())
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check(args) => check(args),
        Command::Explain(args) => explain(args),
        Command::Reload(args) => reload(args),
        Command::Demand(args) => demand(args),
        Command::Plan(args) => plan(args),
        Command::Keygen(args) => keygen(args),
        Command::Ds(args) => ds(args),
        Command::Monitor(args) => monitor(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Our errors carry their cause in their own message; printing the chain would repeat it.
            eprintln!("pooldns: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Colour in log lines only for a person at a terminal: not in files or journald, and
/// not when `NO_COLOR` is set to anything but the empty string (no-color.org).
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn load(args: InputArgs) -> anyhow::Result<Reloader> {
    Ok(Reloader::load(Sources {
        config: args.config,
        feed: args.feed,
        geoip: args.geoip,
        demand: args.demand,
        // check and explain read the inputs as they are and keep nothing.
        ..Sources::default()
    })?)
}

fn check(args: InputArgs) -> anyhow::Result<()> {
    let reloader = load(args)?;
    let table = reloader.table().load_full();
    print!("{}", pooldns::report::check_summary(&table));
    // Every family is served (AAAA at least under one numbered name): a family without
    // an eligible server answers NODATA everywhere.
    let empty = pooldns::report::empty_families(&table);
    if !empty.is_empty() {
        anyhow::bail!("{}", empty.join("; "));
    }
    if !table.feed.skipped.is_empty() {
        let n = table.feed.skipped.len();
        anyhow::bail!(
            "{n} feed {} skipped",
            if n == 1 { "entry was" } else { "entries were" }
        );
    }
    println!("\nok");
    Ok(())
}

fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let qtype = match args.qtype.to_ascii_uppercase().as_str() {
        "A" => pooldns::wire::rtype::A,
        "AAAA" => pooldns::wire::rtype::AAAA,
        other => anyhow::bail!("--qtype {other:?}: only A and AAAA are drawn from the pool"),
    };
    let reloader = load(args.inputs)?;
    let table = reloader.table().load_full();
    print!(
        "{}",
        pooldns::report::explain(&table, args.ip, &args.name, qtype)?
    );
    Ok(())
}

fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let reloader = load(args.inputs)?;
    let table = reloader.table().load_full();
    if table.plan.is_none() {
        anyhow::bail!(
            "{}: balance.mode is \"zones\": there is no plan to show (set mode = \"plan\")",
            table.config.path.display()
        );
    }
    if args.format == "json" {
        println!("{}", pooldns::report::plan_json(&table));
    } else {
        print!("{}", pooldns::report::plan_text(&table));
    }
    Ok(())
}

fn reload(args: ReloadArgs) -> anyhow::Result<()> {
    let url = format!(
        "http://{}/reload{}",
        args.http,
        if args.accept_shrink {
            "?accept-shrink=true"
        } else {
            ""
        }
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(120)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.post(&url).send_empty().map_err(|e| {
        anyhow::anyhow!(
            "{url}: {e} (is `pooldns serve` running with --http {})?",
            args.http
        )
    })?;
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if status.is_success() {
        print!("{body}");
        Ok(())
    } else {
        anyhow::bail!("{url}: {status}: {}", body.trim_end())
    }
}

fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = pooldns::dnssec::key::generate(&args.zone, args.algorithm, args.ksk, &args.dir, now)
        .map_err(anyhow::Error::msg)?;
    println!("{}", path.display());
    Ok(())
}

fn ds(args: DsArgs) -> anyhow::Result<()> {
    print!(
        "{}",
        pooldns::dnssec::ds_text(&args.dir, &args.zone).map_err(anyhow::Error::msg)?
    );
    Ok(())
}

fn demand(args: DemandArgs) -> anyhow::Result<()> {
    use pooldns::plan::demand;
    use pooldns::table::Family;
    let measured = match &args.prometheus {
        Some(url) => demand::from_prometheus(url, &args.window)?,
        None => demand::from_metrics(&args.metrics)?,
    };
    match &args.out {
        Some(path) => demand::write_file(path, &measured)
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))?,
        None => print!("{}", demand::render(&measured)),
    }
    for (label, family) in [("v4", Family::V4), ("v6", Family::V6)] {
        eprintln!(
            "{label}: {} countries, {} queries",
            measured.family(family).len(),
            measured.total(family).round()
        );
    }
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    pooldns::uptime(); // start the uptime clock
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve_in_runtime(args))
}

async fn serve_in_runtime(args: ServeArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Catch signals before loading: a SIGHUP (log rotation) or SIGTERM that arrives while
    // the feed loads must not kill the process with the default action.
    let hangup = signal(SignalKind::hangup()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();

    let sources = Sources {
        config: args.config,
        feed: args.feed,
        geoip: args.geoip,
        state: (args.state_dir.as_os_str() != "none").then_some(args.state_dir),
        demand: args.demand,
        accept_shrink: args.accept_shrink,
    };
    let poll = PollOptions::every(std::time::Duration::from_secs(args.feed_interval));
    // A feed URL is fetched with a blocking client: off the runtime's threads.
    let mut reloader =
        tokio::task::spawn_blocking(move || Reloader::load_with(sources, poll)).await??;
    reloader.start_watching();
    let http_addr: Option<SocketAddr> =
        match args.http.as_str() {
            "none" => None,
            text => Some(text.parse().map_err(|_| {
                anyhow::anyhow!("--http {text:?} is neither ADDR:PORT nor \"none\"")
            })?),
        };
    let http_listener = http_addr
        .map(|addr| {
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| anyhow::anyhow!("cannot listen on HTTP {addr}: {e}"))
        })
        .transpose()?;
    let workers = args.udp_workers.unwrap_or_else(server::default_udp_workers);
    let listeners = Listeners::bind_with(&args.listen, workers)?;
    let options = ServerOptions {
        tcp_idle_timeout: std::time::Duration::from_secs(args.tcp_idle_timeout),
        tcp_read_timeout: std::time::Duration::from_secs(args.tcp_read_timeout),
        tcp_max_connections: args.tcp_max_connections,
        tcp_max_connections_per_client: args.tcp_max_connections_per_client,
        udp_steering: args.udp_steering == "auto",
        udp_batch: args.udp_sched == "batch",
    };
    for addr in listeners.udp_addrs() {
        tracing::info!("serving on {addr} (UDP and TCP)");
    }
    let table = reloader.table();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let query_log = match &args.query_log {
        Some(path) => Some(pooldns::querylog::QueryLog::start(
            path,
            args.query_log_max_mb.saturating_mul(1 << 20),
        )?),
        None => None,
    };
    let metrics = std::sync::Arc::new(pooldns::metrics::Metrics::with_query_log(
        query_log.as_ref().map(|(log, _)| log.clone()),
    ));
    let http = match http_listener {
        Some(listener) => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tracing::info!("HTTP on {}", listener.local_addr()?);
            let state = pooldns::http::HttpState {
                table: table.clone(),
                metrics: metrics.clone(),
                reload: reloader.status(),
                started: std::time::Instant::now(),
                admin: Some(reloader.admin()),
            };
            let mut http_stop = stop_rx.clone();
            Some(tokio::spawn(pooldns::http::serve(
                listener,
                state,
                async move {
                    let _ = http_stop.changed().await;
                },
            )))
        }
        None => None,
    };
    let mut reload_stop = stop_rx.clone();
    let reload = tokio::spawn(reloader.run(hangup, async move {
        let _ = reload_stop.changed().await;
    }));
    let result = server::run(listeners, table, metrics, options, async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(terminate.take()) => tracing::info!("SIGTERM: stopping"),
            _ = wait(interrupt.take()) => tracing::info!("SIGINT: stopping"),
        }
        let _ = stop_tx.send(true);
    })
    .await;
    let _ = reload.await;
    if let Some(http) = http {
        let _ = http.await;
    }
    if let Some((log, writer)) = query_log {
        log.close();
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
    tracing::info!("stopped");
    Ok(result?)
}

fn monitor(args: MonitorArgs) -> anyhow::Result<()> {
    use pooldns::monitor::{self, Book, Monitor, Options, persist, registry};
    let geoip = args.geoip.clone().or_else(|| {
        let bundled = PathBuf::from("data/dbip-country.mmdb");
        bundled.exists().then_some(bundled)
    });
    let geo = geoip
        .as_deref()
        .map(pooldns::geo::GeoDb::open)
        .transpose()?;
    let registry = registry::load_file(&args.servers, geo.as_ref())?;
    for message in registry.skipped.iter().take(20) {
        tracing::warn!("skipped: {message}");
    }
    if registry.skipped.len() > 20 {
        tracing::warn!("... {} entries skipped in all", registry.skipped.len());
    }
    if registry.servers.is_empty() {
        anyhow::bail!("{}: no server to monitor", args.servers.display());
    }
    if !(args.max_rate.is_finite() && args.max_rate > 0.0) {
        anyhow::bail!("--max-rate must be more than zero");
    }
    let skipped = registry.skipped.clone();
    let mut book = Book::new(registry.servers);
    book.skipped = skipped;
    let mut options = Options::new(
        args.out.clone().unwrap_or_default(),
        args.state.clone().unwrap_or_default(),
    );
    options.interval = args.interval;
    options.max_rate = args.max_rate;
    options.timeout = args.timeout;
    options.port = args.port;
    options.peers = args.peers.clone();
    options.window = args.peer_window;
    options.write_interval = args.write_interval;
    options.save_interval = args.save_interval;
    options.peer_interval = args.peer_interval;
    options.clock = monitor::clock::ClockSource::from_env();
    options.registry = Some(args.servers.clone());
    options.geo = geo.map(std::sync::Arc::new);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.once {
        let monitor = Monitor::new(options, book);
        let all_good = runtime.block_on(monitor_once(monitor))?;
        if !all_good {
            anyhow::bail!("some servers lost points");
        }
        return Ok(());
    }
    if let Some(state) = &args.state {
        let restored = persist::load(state, &mut book).map_err(anyhow::Error::msg)?;
        for message in &restored.skipped {
            tracing::warn!("state: {message}");
        }
        tracing::info!(
            "{}: {} of {} servers restored",
            state.display(),
            restored.servers,
            book.servers.len()
        );
    }
    let monitor = Monitor::new(options, book);
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let http = match args.http.as_str() {
            "none" => None,
            text => {
                let addr: SocketAddr = text.parse().map_err(|_| {
                    anyhow::anyhow!("--http {text:?} is neither ADDR:PORT nor \"none\"")
                })?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on HTTP {addr}: {e}"))?;
                tracing::info!("HTTP on {}", listener.local_addr()?);
                Some(listener)
            }
        };
        tracing::info!(
            "monitoring {} servers every {:?}, at most {} probes/s",
            monitor.book().servers.len(),
            monitor.options.interval,
            monitor.options.max_rate
        );
        monitor::run(monitor, http, async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: saving and stopping"),
                _ = interrupt.recv() => tracing::info!("SIGINT: saving and stopping"),
            }
        })
        .await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// `monitor --once`: probes every server once and prints a table; true when no probe lost
/// points.
async fn monitor_once(monitor: std::sync::Arc<pooldns::monitor::Monitor>) -> anyhow::Result<bool> {
    use pooldns::monitor::{probe::Prober, render_once, schedule};
    let prober = Prober::bind(monitor.options.port, monitor.options.timeout)?;
    let outcomes = schedule::once(&monitor, prober.clone()).await;
    prober.close();
    let (table, all_good) = render_once(&monitor.book(), &outcomes);
    print!("{table}");
    // Offsets are only as good as our clock: say so when it is not synchronised.
    if let pooldns::monitor::clock::ClockState::Unsynchronised(why) = monitor.options.clock.read() {
        eprintln!(
            "pooldns: note: the offsets are against a local clock that is not synchronised: {why}"
        );
    }
    Ok(all_good)
}
