//! pooldns: a GeoDNS load-balancing authoritative nameserver for server pools such as
//! `pool.ntp.org`.
//!
//! # Data flow
//!
//! Data flows one way; each arrow is one module:
//!
//! ```text
//!  zones/*.toml ──config──┐
//!  servers.json ──feed────┼──table::build──▶ Table ──reload (ArcSwap)──▶ server
//!  *.mmdb ───────geo──────┘                                              │
//!                        bytes ──wire::parse──▶ Query ──answer──▶ Answer ──wire::build──▶ bytes
//! ```
//!
//! The health half is a separate flow, run as its own process (`pooldns monitor`,
//! [`monitor`]); it shares only the feed file with the nameserver:
//!
//! ```text
//!  registry.json ──monitor::registry──▶ probes (NTP) ──monitor::score──▶ servers.json (the feed)
//! ```
//!
//! Only [`server`] touches sockets and only [`wire`] touches bytes; [`select`] and
//! [`answer`] are plain functions that take the random source and the table as arguments.
//!
//! # Glossary
//!
//! * **server**: an NTP server of the feed (a pool member). Our own process is "pooldns" or
//!   "the nameserver", never "the server".
//! * **zone**: the DNS zone we are authoritative for (the *origin*, e.g. `pool.ntp.org`).
//! * **pool zone**: a set of servers a name draws from: global, a continent or a country.
//! * **eligible**: a server with `score >= min_score` and `netspeed > 0`.
//! * **numbered name**: `0`…`3` (optionally under a country, continent or vendor label),
//!   served from one of the disjoint subsets of a split of its pool zone.
//! * **split**: the division of a pool zone into numbered subsets, reshuffled every
//!   rotation period (an *epoch*).
//! * **pick**: drawing up to k distinct servers with inclusion probability proportional to
//!   net speed.
//! * **registry**: the feed without scores, the monitor's input.
//! * **probe**: one NTP request to a registered server (and one retry), ending in a result
//!   the **score** rule turns into a step; a server is usable from a score of 10.
//! * **peer**: another monitor whose scores enter the median written to the feed.
//! * **ECS**: EDNS Client Subnet (RFC 7871); **scope**: the prefix length the answer depends on.
//!
//! # Verbs
//!
//! `parse` = wire in, `build` = wire out (and table construction), `load` = file in,
//! `render` = text out, `pick` = selection.

// deny, not forbid: three calls are allowed where they are made, and nowhere else: adjtimex
// in monitor::clock, sched_setscheduler in server::sched and the cache hint in prefetch.
#![deny(unsafe_code)]

pub mod answer;

/// Time since the process started (first asked for at startup by `pooldns serve`).
pub fn uptime() -> std::time::Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

pub mod config;
pub mod continent;
pub mod dnssec;
pub mod feed;
pub mod fuzzing;
pub mod geo;
pub mod guard;
pub mod http;
pub mod metrics;
pub mod monitor;
pub mod name;
pub mod parallel;
pub mod plan;
pub mod prefetch;
pub mod querylog;
pub mod reload;
pub mod report;
pub mod reserve;
pub mod rrl;
pub mod select;
pub mod server;
pub mod state;
pub mod table;
pub mod watch;
pub mod wire;
