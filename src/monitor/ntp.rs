//! The NTPv4 client packet codec (RFC 5905 §7.3): `build` a client-mode request, `parse` a
//! server's reply, and [`measure`] it against the request's timestamps. Bytes in, values
//! out; no sockets and no clock (the caller passes its times in), so every case is a unit
//! test.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |LI | VN  |Mode |    Stratum    |     Poll      |   Precision   |
//! |                root delay, root dispersion (2 x 32)           |
//! |                          Reference ID                         |
//! |          reference, origin, receive, transmit (4 x 64)        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The request's transmit timestamp is random, not our clock: a reply must echo it as its
//! origin timestamp, which an off-path spoofer cannot guess (RFC 9109 §3 argues the same for
//! ports; chrony does this by default). Our own send time stays with us as T1. Left out on
//! purpose: extension fields and MACs (NTS, symmetric keys): the pool's servers are probed
//! unauthenticated, as the pool's monitor does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of an NTP header without extensions.
pub const PACKET_LEN: usize = 48;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A 64-bit NTP timestamp: seconds since 1900 (mod 2^32) in the high half, the fraction in
/// the low half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The timestamp of a system time (era 0, the one that holds 1968–2036; differences
    /// taken with [`Timestamp::seconds_since`] work across the 2036 rollover).
    pub fn from_system(t: SystemTime) -> Timestamp {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let seconds = since.as_secs().wrapping_add(NTP_UNIX_OFFSET) & 0xffff_ffff;
        let fraction = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
        Timestamp((seconds << 32) | fraction)
    }

    /// `self − earlier` in seconds, read as the shorter way round the 2^32-second era
    /// (right while the two are less than 68 years apart).
    pub fn seconds_since(self, earlier: Timestamp) -> f64 {
        self.0.wrapping_sub(earlier.0) as i64 as f64 / 4_294_967_296.0
    }
}

/// The leap indicator (RFC 5905 §7.3): 3 means the server's clock is not synchronised.
pub const LEAP_UNSYNCHRONISED: u8 = 3;
/// Mode 3: a client's request.
pub const MODE_CLIENT: u8 = 3;
/// Mode 4: a server's reply.
pub const MODE_SERVER: u8 = 4;

/// Builds a client-mode NTPv4 request carrying `transmit` (a random value, see the module
/// doc) as its transmit timestamp.
pub fn build_request(transmit: Timestamp) -> [u8; PACKET_LEN] {
    let mut packet = [0u8; PACKET_LEN];
    // LI 0, version 4, mode 3.
    packet[0] = (4 << 3) | MODE_CLIENT;
    packet[40..48].copy_from_slice(&transmit.0.to_be_bytes());
    packet
}

/// A reply's header fields, as sent (nothing checked but the length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Leap indicator, 0–3.
    pub leap: u8,
    /// Version number.
    pub version: u8,
    /// Mode; a server's reply is [`MODE_SERVER`].
    pub mode: u8,
    /// Stratum: 0 is a Kiss-o'-Death (or unspecified), 1 primary, 16 unsynchronised.
    pub stratum: u8,
    /// Reference id: a refclock name at stratum 1, a kiss code at stratum 0, an address
    /// (hash) otherwise.
    pub refid: [u8; 4],
    /// Origin timestamp: must be the request's transmit timestamp.
    pub origin: Timestamp,
    /// Receive timestamp T2.
    pub receive: Timestamp,
    /// Transmit timestamp T3.
    pub transmit: Timestamp,
}

/// Why bytes are not an NTP reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the 48-byte header.
    #[error("{0} bytes, shorter than the 48-byte NTP header")]
    Truncated(usize),
}

/// Parses the header of a reply. Extension fields and MACs after the header are ignored,
/// not refused: a server may append them.
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, ParseError> {
    let Some(header) = bytes.get(..PACKET_LEN) else {
        return Err(ParseError::Truncated(bytes.len()));
    };
    let word = |at: usize| -> u64 {
        let mut b = [0u8; 8];
        // `header` is PACKET_LEN long and `at` ≤ 40: the 8 bytes are there.
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let mut refid = [0u8; 4];
    refid.copy_from_slice(&header[12..16]);
    Ok(Reply {
        leap: header[0] >> 6,
        version: (header[0] >> 3) & 7,
        mode: header[0] & 7,
        stratum: header[1],
        refid,
        origin: Timestamp(word(24)),
        receive: Timestamp(word(32)),
        transmit: Timestamp(word(40)),
    })
}

/// A Kiss-o'-Death code the score rule tells apart (RFC 5905 §7.4). Other codes (INIT,
/// STEP, ...) refuse nothing: such a reply is "stratum 0 without a kiss code" to the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kiss {
    /// RATE: we ask too often.
    Rate,
    /// RSTR: access denied by a restriction.
    Restrict,
    /// DENY: access denied.
    Deny,
}

/// What one probe found; the score rule ([`super::score`]) turns it into a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// No matching reply within the timeout, after one retry.
    NoResponse,
    /// A Kiss-o'-Death: stratum 0 with a kiss code.
    Kiss(Kiss),
    /// Stratum 0 and no kiss code we know, or an offset of exactly zero: a reply that
    /// carries no trusted time.
    Untrusted(Measurement),
    /// A reply with no usable time: leap 3 (not synchronised), stratum 16 or more, a mode
    /// that is not "server", or no transmit timestamp.
    Unusable(Unusable),
    /// A usable reply.
    Time(Measurement),
}

/// Why a reply carries no usable time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Leap indicator 3.
    Unsynchronised,
    /// Stratum 16 or more.
    Stratum(u8),
    /// Mode is not 4.
    Mode(u8),
    /// The transmit timestamp is zero.
    NoTransmitTime,
}

/// The numbers read off a reply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// θ = ((T2 − T1) + (T3 − T4)) / 2, seconds; positive when the server is ahead.
    pub offset: f64,
    /// δ = (T4 − T1) − (T3 − T2), seconds.
    pub delay: f64,
    /// The server's stratum.
    pub stratum: u8,
    /// The server's leap indicator.
    pub leap: u8,
    /// Its reference id.
    pub refid: [u8; 4],
}

impl Outcome {
    /// The measurement, when the reply had times.
    pub fn measurement(&self) -> Option<&Measurement> {
        match self {
            Outcome::Untrusted(m) | Outcome::Time(m) => Some(m),
            _ => None,
        }
    }

    /// A short stable name, for metrics labels, the history and the pages.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::NoResponse => "no_response",
            Outcome::Kiss(Kiss::Rate) => "kod_rate",
            Outcome::Kiss(Kiss::Restrict) => "kod_rstr",
            Outcome::Kiss(Kiss::Deny) => "kod_deny",
            Outcome::Untrusted(_) => "untrusted",
            Outcome::Unusable(Unusable::Unsynchronised) => "leap_unsynchronised",
            Outcome::Unusable(Unusable::Stratum(_)) => "stratum_unsynchronised",
            Outcome::Unusable(Unusable::Mode(_)) => "bad_mode",
            Outcome::Unusable(Unusable::NoTransmitTime) => "no_transmit_time",
            Outcome::Time(_) => "ok",
        }
    }
}

/// Every [`Outcome::kind`], for metrics that list each label.
pub const KINDS: [&str; 10] = [
    "ok",
    "no_response",
    "kod_rate",
    "kod_rstr",
    "kod_deny",
    "untrusted",
    "leap_unsynchronised",
    "stratum_unsynchronised",
    "bad_mode",
    "no_transmit_time",
];

/// Classifies a reply whose origin matched: `sent` is T1 (our clock when the request
/// left), `received` T4 (our clock when the reply arrived).
pub fn measure(reply: &Reply, sent: Timestamp, received: Timestamp) -> Outcome {
    if reply.mode != MODE_SERVER {
        return Outcome::Unusable(Unusable::Mode(reply.mode));
    }
    let measurement = || Measurement {
        offset: (reply.receive.seconds_since(sent) + reply.transmit.seconds_since(received)) / 2.0,
        delay: received.seconds_since(sent) - reply.transmit.seconds_since(reply.receive),
        stratum: reply.stratum,
        leap: reply.leap,
        refid: reply.refid,
    };
    if reply.stratum == 0 {
        // RFC 5905 §7.4: stratum 0 carries a kiss code in the reference id.
        return match &reply.refid {
            b"RATE" => Outcome::Kiss(Kiss::Rate),
            b"RSTR" => Outcome::Kiss(Kiss::Restrict),
            b"DENY" => Outcome::Kiss(Kiss::Deny),
            _ => Outcome::Untrusted(measurement()),
        };
    }
    if reply.leap == LEAP_UNSYNCHRONISED {
        return Outcome::Unusable(Unusable::Unsynchronised);
    }
    if reply.stratum >= 16 {
        return Outcome::Unusable(Unusable::Stratum(reply.stratum));
    }
    if reply.transmit.0 == 0 {
        return Outcome::Unusable(Unusable::NoTransmitTime);
    }
    let m = measurement();
    if m.offset == 0.0 {
        Outcome::Untrusted(m)
    } else {
        Outcome::Time(m)
    }
}

/// A reference id as text: four printable ASCII characters as they are (a refclock or a
/// kiss code), else the dotted quad.
pub fn render_refid(refid: [u8; 4]) -> String {
    let text: String = refid
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric()) {
        text
    } else {
        std::net::Ipv4Addr::from(refid).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's reply with the given fields, origin echoing `origin`.
    fn reply(
        leap: u8,
        mode: u8,
        stratum: u8,
        refid: &[u8; 4],
        origin: u64,
        t2: u64,
        t3: u64,
    ) -> Vec<u8> {
        let mut p = vec![0u8; PACKET_LEN];
        p[0] = (leap << 6) | (4 << 3) | mode;
        p[1] = stratum;
        p[12..16].copy_from_slice(refid);
        p[24..32].copy_from_slice(&origin.to_be_bytes());
        p[32..40].copy_from_slice(&t2.to_be_bytes());
        p[40..48].copy_from_slice(&t3.to_be_bytes());
        p
    }

    const SECOND: u64 = 1 << 32;

    #[test]
    fn a_request_is_version_4_client_mode_with_the_given_transmit_time() {
        let p = build_request(Timestamp(0x0102_0304_0506_0708));
        assert_eq!(p[0], 0x23);
        assert_eq!(&p[1..40], &[0u8; 39][..]);
        assert_eq!(&p[40..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn every_strict_prefix_of_a_reply_is_refused_and_garbage_never_panics() {
        let full = reply(0, 4, 2, b"GPS\0", 1, 2, 3);
        for n in 0..PACKET_LEN {
            assert_eq!(parse_reply(&full[..n]), Err(ParseError::Truncated(n)));
        }
        assert!(parse_reply(&full).is_ok());
        // Longer (an extension field) parses; random bytes of any length never panic.
        let mut long = full.clone();
        long.extend_from_slice(&[0xff; 20]);
        assert_eq!(parse_reply(&long), parse_reply(&full));
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            if let Ok(r) = parse_reply(&bytes) {
                let _ = measure(&r, Timestamp(seed), Timestamp(seed.wrapping_add(SECOND)));
            }
        }
    }

    #[test]
    fn offset_and_delay_follow_rfc_5905() {
        // T1 = 100 s, T2 = 100.5 + 0.010, T3 = T2 + 0.002, T4 = 100.020 (our clock):
        // one-way 10 ms each way, server 0.5 s ahead.
        let t1 = 100 * SECOND;
        let frac = |s: f64| (s * SECOND as f64) as u64;
        let t2 = t1 + frac(0.510);
        let t3 = t1 + frac(0.512);
        let t4 = t1 + frac(0.022);
        let r = parse_reply(&reply(0, 4, 2, b"\x0a\0\0\x01", 7, t2, t3)).unwrap();
        let Outcome::Time(m) = measure(&r, Timestamp(t1), Timestamp(t4)) else {
            panic!("usable reply")
        };
        assert!((m.offset - 0.5).abs() < 1e-6, "{}", m.offset);
        assert!((m.delay - 0.020).abs() < 1e-6, "{}", m.delay);
        assert_eq!(m.stratum, 2);
    }

    #[test]
    fn the_era_rollover_does_not_change_the_offset() {
        // T1 just before 2036-02-07 (NTP seconds 2^32 − 1), the server's times just after.
        let t1 = (u64::from(u32::MAX)) << 32;
        let t2 = SECOND / 2; // 1.5 s later, in era 1
        let r = parse_reply(&reply(0, 4, 1, b"GPS\0", 0, t2, t2)).unwrap();
        let Outcome::Time(m) = measure(&r, Timestamp(t1), Timestamp(t1)) else {
            panic!("usable reply")
        };
        assert!((m.offset - 1.5).abs() < 1e-6);
    }

    #[test]
    fn kiss_codes_leap_stratum_and_mode_are_told_apart() {
        let t = 50 * SECOND;
        let outcome = |leap, mode, stratum, refid: &[u8; 4], t3| {
            let r = parse_reply(&reply(leap, mode, stratum, refid, 0, t + 1, t3)).unwrap();
            measure(&r, Timestamp(t), Timestamp(t + 2))
        };
        assert_eq!(outcome(3, 4, 0, b"RATE", t).kind(), "kod_rate");
        assert_eq!(outcome(3, 4, 0, b"RSTR", t).kind(), "kod_rstr");
        assert_eq!(outcome(3, 4, 0, b"DENY", t).kind(), "kod_deny");
        assert_eq!(outcome(0, 4, 0, b"\0\0\0\0", t + 5).kind(), "untrusted");
        assert_eq!(outcome(3, 4, 2, b"GPS\0", t).kind(), "leap_unsynchronised");
        assert_eq!(
            outcome(0, 4, 16, b"GPS\0", t).kind(),
            "stratum_unsynchronised"
        );
        assert_eq!(outcome(0, 3, 2, b"GPS\0", t).kind(), "bad_mode");
        assert_eq!(outcome(0, 4, 2, b"GPS\0", 0).kind(), "no_transmit_time");
        // T2 = T1 + 1, T3 = T4 − 1 (in 2^-32 s): the offset is exactly zero.
        assert_eq!(outcome(0, 4, 2, b"GPS\0", t + 1).kind(), "untrusted");
        assert_eq!(outcome(0, 4, 2, b"GPS\0", t + 9).kind(), "ok");
    }

    #[test]
    fn refids_render_as_codes_or_addresses() {
        assert_eq!(render_refid(*b"GPS\0"), "GPS");
        assert_eq!(render_refid(*b"RATE"), "RATE");
        assert_eq!(render_refid([10, 0, 0, 1]), "10.0.0.1");
    }

    #[test]
    fn system_times_convert_to_ntp_seconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        let ts = Timestamp::from_system(t);
        assert_eq!(ts.0 >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(ts.0 & 0xffff_ffff, SECOND / 2);
    }
}
