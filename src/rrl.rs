//! Response rate limiting (RRL), beside the UDP loop: per-prefix accounting of the answers
//! we send, so that a spoofed-source flood cannot use pooldns as a reflector and cannot
//! crowd out real resolvers. The answer core never knows about it; the UDP worker asks
//! [`Limiter::filter`] about each answer it built and sends what it is told.
//!
//! The design follows BIND's and Knot's RRL (BIND ARM, "Response Rate Limiting"):
//!
//! * **Account**: (client prefix, response kind). The prefix is the source address cut to
//!   `ipv4_prefix_length` / `ipv6_prefix_length`; the kind is answer (NOERROR, including
//!   NODATA), NXDOMAIN or error (every other rcode), each with its own rate. Unlike BIND we
//!   do not key answers by qname: a pool zone is asked for the same few names by everyone,
//!   so the qname would add little and cost a hash of the name per query.
//! * **Credit** (BIND's scheme, kept as a "theoretical arrival time" so that one 64-bit word
//!   holds an account): each response costs 1/rate s; an account may run 1 s ahead of the
//!   clock (a burst of `rate` responses) and limited responses still add debt, up to
//!   `window` seconds. A flood over the rate therefore gets nothing at all, not `rate`
//!   answers a second, until it has stayed under the rate for `window` seconds.
//! * **Limited** responses are dropped, except every `slip`-th, which goes out as an empty
//!   TC=1 answer so that a real resolver behind a spoofed prefix retries over TCP (TCP is
//!   never limited: the handshake proves the source). With `log_only` nothing is dropped.
//! * **Never limited**: TCP, and (with `exempt_valid_cookies`) a query carrying a valid
//!   server cookie (RFC 7873 §5.3), since a spoofer cannot know the cookie of the address
//!   it spoofs. The cookie is checked only for responses that would be limited, so the
//!   common path parses nothing twice; such queries still add to their prefix's account.
//!
//! # The table
//!
//! A fixed array of 64-bit atomics, allocated once, shared by every UDP worker: no lock, no
//! allocation per query, and the same memory however many sources a flood spoofs. Accounts
//! are found by a SipHash keyed with a random key per process, so an attacker cannot aim
//! prefixes at one slot. Each account hashes to a set of [`WAYS`] slots in one cache line;
//! a new account replaces the slot least in debt, so spraying fresh prefixes evicts idle
//! accounts first, not the flooder's. A batch of answers charges each of its accounts once,
//! with a compare-and-swap retried when another worker got there first.
//!
//! ```text
//!  63          48 47                                              0
//! ┌──────────────┬─────────────────────────────────────────────────┐
//! │ tag (16 bit) │ theoretical arrival time, 1/16 µs ticks (48 bit)│
//! └──────────────┴─────────────────────────────────────────────────┘
//! ```
//!
//! The slip answer is built here rather than in `wire/` because it only rewrites the header
//! and cuts an answer `wire::build` already wrote after its question.

use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use siphasher::sip::SipHasher13;

use crate::config::Rrl;
use crate::metrics::{Counters, RrlAction};
use crate::wire;

/// Slots per set (one 32-byte half cache line).
pub const WAYS: usize = 4;
/// Sets in the table: 16,384 × 4 slots × 8 bytes = 512 KiB.
const SETS: usize = 1 << 14;
/// Time unit of the table: 1/16 µs, so that 1,000,000 responses a second is 16 ticks.
const TICKS_PER_SECOND: u64 = 16_000_000;
/// Times are kept modulo 2^48 ticks (203 days); differences are taken in that ring.
const TIME_BITS: u32 = 48;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;

/// Most answers [`Limiter::decide`] takes in one batch.
pub const MAX_BATCH: usize = 32;

/// An account: the client prefix (masked, IPv4 in the low 32 bits) and the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    prefix: u128,
    family: u8,
    kind: Kind,
}

impl Default for Key {
    fn default() -> Self {
        Key {
            prefix: 0,
            family: 0,
            kind: Kind::Answer,
        }
    }
}

impl Key {
    fn new(settings: &Rrl, source: IpAddr, kind: Kind) -> Key {
        match source {
            IpAddr::V4(v4) => Key {
                prefix: u128::from(u32::from(v4) & mask32(settings.ipv4_prefix_length)),
                family: 4,
                kind,
            },
            IpAddr::V6(v6) => Key {
                prefix: u128::from(v6) & mask128(settings.ipv6_prefix_length),
                family: 6,
                kind,
            },
        }
    }
}

/// The kind of response an account counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// NOERROR, with or without records.
    Answer = 0,
    /// NXDOMAIN.
    Nxdomain = 1,
    /// Any other rcode.
    Error = 2,
}

impl Kind {
    /// The kind of a built answer, from its header rcode.
    pub fn of(answer: &[u8]) -> Kind {
        match answer.get(3).map(|b| b & 0x0f) {
            Some(0) => Kind::Answer,
            Some(3) => Kind::Nxdomain,
            _ => Kind::Error,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Answer => "answers",
            Kind::Nxdomain => "NXDOMAIN answers",
            Kind::Error => "error answers",
        }
    }
}

/// What the accounting says about one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate (or its kind is not limited).
    Pass,
    /// Over the rate.
    Limited,
}

/// A point on the limiter's clock, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick(u64);

/// The shared accounting table; one per process, held by every UDP worker. It outlives
/// reloads: a new configuration changes the rates, not the accounts.
#[derive(Debug)]
pub struct Limiter {
    /// The accounts, `SETS` × `WAYS` slots; 0 is an empty slot.
    slots: Box<[AtomicU64]>,
    /// The random hash key, chosen when the limiter is made.
    key: (u64, u64),
    /// Tick 0.
    start: Instant,
    /// The second (since `start`) of the last log line; at most one line a second.
    last_log: AtomicU32,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

impl Limiter {
    /// An empty table with a fresh random key.
    pub fn new() -> Limiter {
        Limiter {
            slots: (0..SETS * WAYS).map(|_| AtomicU64::new(0)).collect(),
            key: rand::random(),
            start: Instant::now(),
            last_log: AtomicU32::new(u32::MAX),
        }
    }

    /// The current time; the UDP loop reads it once per batch.
    pub fn now(&self) -> Tick {
        let e = self.start.elapsed();
        Tick(e.as_secs() * TICKS_PER_SECOND + u64::from(e.subsec_nanos()) * 2 / 125)
    }

    /// Decides what to send for one UDP batch: `lens[j]` is the length of answer `j`, at
    /// `answers[j * stride..]`, built for `query(j)` from `sources[j]`. On return `lens[j]` is
    /// what to send: the answer, the slip answer written over it, or 0 (drop it). `slips`
    /// is the caller's count of limited answers, for `slip`.
    ///
    /// The answers of one account in the batch are charged together, with one
    /// compare-and-swap: a resolver's batch touches the shared slot once, not once per
    /// answer, so workers answering the same busy prefix do not fight over its cache line
    /// (measured: per-answer charging cost 7 % of UDP q/CPU-s, all from one prefix).
    #[allow(clippy::too_many_arguments)] // the UDP loop's state, borrowed piecewise
    pub fn decide<'q>(
        &self,
        settings: &Rrl,
        cookie_secret: &[u8; 16],
        now: Tick,
        answers: &mut [u8],
        stride: usize,
        lens: &mut [usize],
        sources: &[IpAddr],
        query: impl Fn(usize) -> &'q [u8],
        slips: &mut u32,
        counters: &Counters,
    ) {
        let n = lens.len().min(sources.len()).min(MAX_BATCH);
        // The batch's accounts: key, answers in the batch, answers that may pass.
        let mut groups = [(Key::default(), 0u64, 0u64); MAX_BATCH];
        let mut group_count = 0;
        let mut group_of = [0u8; MAX_BATCH];
        for j in 0..n {
            let kind = Kind::of(answers.get(j * stride..).unwrap_or_default());
            let key = Key::new(settings, sources[j], kind);
            let g = match groups[..group_count].iter().position(|g| g.0 == key) {
                Some(g) => g,
                None => {
                    groups[group_count].0 = key;
                    group_count += 1;
                    group_count - 1
                }
            };
            groups[g].1 += 1;
            group_of[j] = g as u8; // g < MAX_BATCH = 32
        }
        for group in &mut groups[..group_count] {
            group.2 = self.charge(settings, &group.0, group.1, now);
        }
        for j in 0..n {
            let group = &mut groups[usize::from(group_of[j])];
            if group.2 > 0 {
                group.2 -= 1;
                continue;
            }
            let key = group.0;
            if settings.exempt_valid_cookies
                && has_valid_cookie(query(j), cookie_secret, sources[j])
            {
                continue;
            }
            self.log(settings, &key, sources[j], now);
            if settings.log_only {
                counters.rrl(RrlAction::Logged);
                continue;
            }
            *slips = slips.wrapping_add(1);
            if settings.slip > 0 && *slips % settings.slip == 0 {
                let answer = answers
                    .get_mut(j * stride..j * stride + lens[j])
                    .unwrap_or_default();
                if let Some(len) = slip(answer) {
                    counters.rrl(RrlAction::Slipped);
                    lens[j] = len;
                    continue;
                }
            }
            counters.rrl(RrlAction::Dropped);
            lens[j] = 0;
        }
    }

    /// Charges one response of `kind` to the account of `source`'s prefix.
    pub fn account(&self, settings: &Rrl, source: IpAddr, kind: Kind, now: Tick) -> Verdict {
        if self.charge(settings, &Key::new(settings, source, kind), 1, now) == 1 {
            Verdict::Pass
        } else {
            Verdict::Limited
        }
    }

    /// Charges `count` responses to the account of `key`; returns how many of them are
    /// within the rate (the first ones pass, the rest are limited).
    fn charge(&self, settings: &Rrl, key: &Key, count: u64, now: Tick) -> u64 {
        let rate = match key.kind {
            Kind::Answer => settings.responses_per_second,
            Kind::Nxdomain => settings.nxdomains_per_second,
            Kind::Error => settings.errors_per_second,
        };
        if rate == 0 {
            return count;
        }
        let interval = (TICKS_PER_SECOND / u64::from(rate)).max(1);
        let burst = TICKS_PER_SECOND;
        let debt = u64::from(settings.window.max(1)) * TICKS_PER_SECOND;

        let hash = self.hash(key);
        // The low bits pick the set, the top 16 the tag (never 0, which marks an empty slot).
        let set = (hash as usize % SETS) * WAYS;
        let tag = (hash >> TIME_BITS) | 1;
        let now = now.0 & TIME_MASK;
        let Some(ways) = self.slots.get(set..set + WAYS) else {
            return count; // set < SETS * WAYS - WAYS + 1: the modulo above
        };
        // How far ahead of now a slot's account is: 0 for an empty slot, one that is behind,
        // or one left so long (months) that its time wrapped. Workers read the clock once
        // per batch, so another worker may have charged from a slightly later `now`: an
        // account up to a second past the largest debt is in debt, not stale (taking it for
        // stale let a flood through a burst at a time, issue 11's reflection run).
        let ahead = |word: u64| {
            let d = (word.wrapping_sub(now)) & TIME_MASK;
            if word == 0 || d > debt + TICKS_PER_SECOND {
                0
            } else {
                d
            }
        };
        let mut way = ways.iter().find(|w| w.load(Relaxed) >> TIME_BITS == tag);
        if way.is_none() {
            way = ways.iter().min_by_key(|w| ahead(w.load(Relaxed)));
        }
        let Some(slot) = way else {
            return count; // WAYS > 0
        };
        let mut old = slot.load(Relaxed);
        // Another worker may charge the same slot at the same time: try again with what it
        // wrote. After many lost races, pass (never a wrong drop).
        for _ in 0..16 {
            let was_ahead = if old >> TIME_BITS == tag {
                ahead(old)
            } else {
                0
            };
            // The k-th response passes while was_ahead + k * interval <= burst.
            let passes = (burst.saturating_sub(was_ahead) / interval).min(count);
            let next = was_ahead.saturating_add(count.saturating_mul(interval));
            let new = (tag << TIME_BITS) | (now.wrapping_add(next.min(debt)) & TIME_MASK);
            match slot.compare_exchange_weak(old, new, Relaxed, Relaxed) {
                Ok(_) => return passes,
                Err(current) => old = current,
            }
        }
        count
    }

    fn hash(&self, key: &Key) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write_u128(key.prefix);
        h.write_u8(key.family | (key.kind as u8) << 4);
        h.finish()
    }

    /// Logs a limited prefix, at most once a second over all workers (cold path).
    #[cold]
    fn log(&self, settings: &Rrl, key: &Key, source: IpAddr, now: Tick) {
        let kind = key.kind;
        let second = (now.0 / TICKS_PER_SECOND) as u32;
        let last = self.last_log.load(Relaxed);
        if last == second
            || self
                .last_log
                .compare_exchange(last, second, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let (prefix, len) = prefix_of(settings, source);
        let rate = match kind {
            Kind::Answer => settings.responses_per_second,
            Kind::Nxdomain => settings.nxdomains_per_second,
            Kind::Error => settings.errors_per_second,
        };
        let action = if settings.log_only {
            "would limit (log_only)"
        } else {
            "limiting"
        };
        tracing::warn!(
            "rrl: {action} {} to {prefix}/{len}: over {rate}/s (at most one line a second)",
            kind.label()
        );
    }
}

/// The prefix of `source` an account is kept for, and its length.
pub fn prefix_of(settings: &Rrl, source: IpAddr) -> (IpAddr, u8) {
    match source {
        IpAddr::V4(v4) => {
            let len = settings.ipv4_prefix_length;
            (IpAddr::V4((u32::from(v4) & mask32(len)).into()), len)
        }
        IpAddr::V6(v6) => {
            let len = settings.ipv6_prefix_length;
            (IpAddr::V6((u128::from(v6) & mask128(len)).into()), len)
        }
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

/// Whether the query carries a server cookie we made for `source` (RFC 7873 §5.3).
fn has_valid_cookie(query: &[u8], secret: &[u8; 16], source: IpAddr) -> bool {
    let edns = match wire::parse(query) {
        Ok(request) => request.edns,
        Err(wire::ParseError::Reply { edns, .. }) => edns,
        Err(wire::ParseError::Drop) => None,
    };
    edns.and_then(|e| e.cookie)
        .is_some_and(|c| c.is_valid(secret, source, crate::server::unix_now()))
}

/// Rewrites a built answer as the slip answer: the same header with TC=1 and no records,
/// and the question. Returns its length, or None if the answer cannot be read (then it is
/// dropped).
///
/// RFC 1035 §4.1: the question is right after the 12-byte header; `wire::build` writes its
/// name uncompressed.
pub fn slip(answer: &mut [u8]) -> Option<usize> {
    let questions = u16::from_be_bytes([*answer.get(4)?, *answer.get(5)?]);
    let mut end = 12;
    if questions > 0 {
        loop {
            let len = usize::from(*answer.get(end)?);
            if len == 0 {
                break;
            }
            if len & 0xc0 != 0 {
                return None;
            }
            end += 1 + len;
        }
        end += 1 + 4; // the root label, qtype and qclass
    }
    if end > answer.len() {
        return None;
    }
    answer[2] |= 0x02; // TC
    answer[5] = u8::from(questions > 0);
    answer[4] = 0;
    answer[6..12].fill(0); // ANCOUNT, NSCOUNT, ARCOUNT
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: u32) -> Rrl {
        Rrl {
            responses_per_second: rate,
            nxdomains_per_second: rate,
            errors_per_second: rate,
            ..Rrl::default()
        }
    }

    fn at(seconds: f64) -> Tick {
        Tick((seconds * TICKS_PER_SECOND as f64) as u64)
    }

    fn passed(l: &Limiter, s: &Rrl, ip: &str, kind: Kind, when: f64, tries: usize) -> usize {
        let ip: IpAddr = ip.parse().unwrap();
        (0..tries)
            .filter(|_| l.account(s, ip, kind, at(when)) == Verdict::Pass)
            .count()
    }

    #[test]
    fn a_burst_of_one_seconds_rate_passes_then_nothing_until_the_debt_is_paid() {
        let l = Limiter::new();
        let s = settings(10);
        assert_eq!(passed(&l, &s, "192.0.2.1", Kind::Answer, 100.0, 50), 10);
        // Same /24, same kind: same account.
        assert_eq!(passed(&l, &s, "192.0.2.200", Kind::Answer, 100.0, 5), 0);
        // Other kinds and other prefixes have accounts of their own.
        assert_eq!(passed(&l, &s, "192.0.2.1", Kind::Nxdomain, 100.0, 50), 10);
        assert_eq!(passed(&l, &s, "192.0.3.1", Kind::Answer, 100.0, 50), 10);
        // Still flooding a second later: the debt (up to the 15 s window) keeps it out.
        assert_eq!(passed(&l, &s, "192.0.2.1", Kind::Answer, 101.0, 50), 0);
        // Quiet for a window: a fresh burst.
        assert_eq!(passed(&l, &s, "192.0.2.1", Kind::Answer, 117.0, 50), 10);
    }

    #[test]
    fn a_client_under_the_rate_is_never_limited() {
        let l = Limiter::new();
        let s = settings(10);
        for i in 0..1000 {
            assert_eq!(
                passed(
                    &l,
                    &s,
                    "2001:db8::1",
                    Kind::Answer,
                    5.0 + f64::from(i) * 0.11,
                    1
                ),
                1
            );
        }
    }

    #[test]
    fn a_batch_is_charged_like_its_answers_one_by_one() {
        let l = Limiter::new();
        let s = settings(10);
        let key = Key::new(&s, "192.0.2.1".parse().unwrap(), Kind::Answer);
        assert_eq!(l.charge(&s, &key, 4, at(10.0)), 4);
        assert_eq!(l.charge(&s, &key, 32, at(10.0)), 6);
        assert_eq!(l.charge(&s, &key, 32, at(10.5)), 0);
        // Another worker's batch read the clock a little earlier: still in debt.
        assert_eq!(l.charge(&s, &key, 1, at(10.499)), 0);
        // The debt is capped at the window: 15 s after the last charge, a full burst.
        assert_eq!(l.charge(&s, &key, 32, at(25.5)), 10);
    }

    #[test]
    fn zero_turns_a_kind_off() {
        let l = Limiter::new();
        let s = Rrl {
            responses_per_second: 0,
            nxdomains_per_second: 5,
            ..Rrl::default()
        };
        assert_eq!(passed(&l, &s, "192.0.2.1", Kind::Answer, 1.0, 100), 100);
        assert_eq!(passed(&l, &s, "192.0.2.1", Kind::Nxdomain, 1.0, 100), 5);
    }

    #[test]
    fn ipv6_accounts_cover_the_prefix_length() {
        let l = Limiter::new();
        let s = settings(3);
        assert_eq!(passed(&l, &s, "2001:db8:0:ff::1", Kind::Answer, 1.0, 10), 3);
        // Same /56.
        assert_eq!(passed(&l, &s, "2001:db8:0:1::9", Kind::Answer, 1.0, 10), 0);
        // Another /56.
        assert_eq!(
            passed(&l, &s, "2001:db8:0:100::1", Kind::Answer, 1.0, 10),
            3
        );
        assert_eq!(
            prefix_of(&s, "2001:db8:0:ff::1".parse().unwrap()),
            ("2001:db8::".parse().unwrap(), 56)
        );
        assert_eq!(
            prefix_of(&s, "198.51.100.77".parse().unwrap()),
            ("198.51.100.0".parse().unwrap(), 24)
        );
    }

    #[test]
    fn a_spray_of_fresh_prefixes_does_not_evict_a_flooder_in_debt() {
        let l = Limiter::new();
        let s = settings(10);
        assert_eq!(passed(&l, &s, "192.0.2.1", Kind::Answer, 50.0, 500), 10);
        // A million one-query prefixes: 16 times the table.
        for i in 0u32..1_000_000 {
            let ip = IpAddr::V4((0x0a00_0000 + (i << 8)).into());
            l.account(&s, ip, Kind::Answer, at(50.5));
        }
        assert_eq!(passed(&l, &s, "192.0.2.1", Kind::Answer, 51.0, 50), 0);
    }

    #[test]
    fn slip_keeps_header_and_question_with_tc() {
        // id 0x1234, QR AA, rcode 0, 1 question, 1 answer, 0, 1 additional.
        let mut a = vec![0x12, 0x34, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 1];
        a.extend_from_slice(b"\x04pool\x04test\x00\x00\x01\x00\x01");
        let question_end = a.len();
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 150, 0, 4, 192, 0, 2, 1]);
        let n = slip(&mut a).unwrap();
        assert_eq!(n, question_end);
        assert_eq!(&a[..12], &[0x12, 0x34, 0x86, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(slip(&mut a[..20]), None);
    }

    #[test]
    fn kind_reads_the_rcode() {
        let mut h = [0u8; 12];
        assert_eq!(Kind::of(&h), Kind::Answer);
        h[3] = 3;
        assert_eq!(Kind::of(&h), Kind::Nxdomain);
        h[3] = 0x85;
        assert_eq!(Kind::of(&h), Kind::Error);
    }
}
