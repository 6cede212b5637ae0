//! Integration tests: the real server, started in-process on ephemeral loopback ports,
//! queried over UDP and TCP with a DNS client library (hickory-proto messages) or, where a
//! library would refuse to build the packet, with raw bytes.

mod cli;
mod compare;
mod demand;
mod dnssec;
mod extensions;
mod fairness;
mod feed_source;
mod geo;
mod harness;
mod monitor;
mod names;
mod netns;
mod ops;
mod plan;
mod protocol;
mod query_log;
mod reload;
mod resolver;
mod rrl;
mod smoke;
mod split;
mod tcp_abuse;
