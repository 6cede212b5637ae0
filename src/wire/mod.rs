//! DNS messages on the wire: [`parse`] turns the bytes of a query into a [`Request`],
//! [`build`] writes an [`crate::answer::Answer`] into a buffer the caller owns. Nothing
//! else in pooldns reads or writes DNS bytes.

pub mod build;
pub mod cookie;
pub mod parse;

pub use build::{EdnsReply, build};
pub use parse::{ParseError, parse};

use std::net::IpAddr;

/// Record types pooldns knows by name (an open set: unknown ones pass through as numbers).
pub mod rtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Nameserver.
    pub const NS: u16 = 2;
    /// Canonical name.
    pub const CNAME: u16 = 5;
    /// Start of authority.
    pub const SOA: u16 = 6;
    /// Host information (RFC 8482 answers to ANY).
    pub const HINFO: u16 = 13;
    /// Mail exchanger.
    pub const MX: u16 = 15;
    /// Text.
    pub const TXT: u16 = 16;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// Signature; in a query's additional section, a SIG(0) (RFC 2931).
    pub const SIG: u16 = 24;
    /// Service location.
    pub const SRV: u16 = 33;
    /// Delegation signer (RFC 4034).
    pub const DS: u16 = 43;
    /// A signature (RFC 4034).
    pub const RRSIG: u16 = 46;
    /// Next secure (RFC 4034).
    pub const NSEC: u16 = 47;
    /// A zone key (RFC 4034).
    pub const DNSKEY: u16 = 48;
    /// Child DS (RFC 7344).
    pub const CDS: u16 = 59;
    /// Child DNSKEY (RFC 7344).
    pub const CDNSKEY: u16 = 60;
    /// EDNS(0) pseudo-record.
    pub const OPT: u16 = 41;
    /// Transaction signature (RFC 8945).
    pub const TSIG: u16 = 250;
    /// Incremental zone transfer.
    pub const IXFR: u16 = 251;
    /// Full zone transfer.
    pub const AXFR: u16 = 252;
    /// Any type (RFC 8482 minimal answers).
    pub const ANY: u16 = 255;

    /// The mnemonic of a type, or "TYPEnnn" (RFC 3597 §5).
    pub fn name(rtype: u16) -> std::borrow::Cow<'static, str> {
        let known = match rtype {
            A => "A",
            NS => "NS",
            CNAME => "CNAME",
            SOA => "SOA",
            HINFO => "HINFO",
            MX => "MX",
            TXT => "TXT",
            AAAA => "AAAA",
            SIG => "SIG",
            SRV => "SRV",
            OPT => "OPT",
            TSIG => "TSIG",
            IXFR => "IXFR",
            AXFR => "AXFR",
            ANY => "ANY",
            other => return format!("TYPE{other}").into(),
        };
        known.into()
    }
}

/// Classes.
pub mod class {
    /// Internet.
    pub const IN: u16 = 1;
    /// Chaos (identity names).
    pub const CH: u16 = 3;
    /// Any class (the class of a TSIG record, RFC 8945 §4.2).
    pub const ANY: u16 = 255;
}

/// Response codes, extended ones included (RFC 6891 §6.1.3): the low 4 bits go in the
/// header, the rest in the OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rcode(pub u16);

impl Rcode {
    /// No error.
    pub const NOERROR: Rcode = Rcode(0);
    /// Format error.
    pub const FORMERR: Rcode = Rcode(1);
    /// Server failure.
    pub const SERVFAIL: Rcode = Rcode(2);
    /// Name does not exist.
    pub const NXDOMAIN: Rcode = Rcode(3);
    /// Not implemented.
    pub const NOTIMP: Rcode = Rcode(4);
    /// Refused.
    pub const REFUSED: Rcode = Rcode(5);
    /// Not authorized: a TSIG or SIG(0) we cannot verify (RFC 8945 §5.2.1).
    pub const NOTAUTH: Rcode = Rcode(9);
    /// Bad EDNS version (extended).
    pub const BADVERS: Rcode = Rcode(16);

    /// Short name, for logs and metrics.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "NOERROR",
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            9 => "NOTAUTH",
            16 => "BADVERS",
            _ => "OTHER",
        }
    }
}

/// What an answer echoes of a query's header, and of its TSIG record when it had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Message id.
    pub id: u16,
    /// Opcode (0 = QUERY).
    pub opcode: u8,
    /// Recursion desired: copied into the answer (RFC 1035 §4.1.1).
    pub rd: bool,
    /// Checking disabled: copied into the answer (RFC 4035 §3.1.6).
    pub cd: bool,
    /// The query's TSIG record: the answer carries an unsigned TSIG with error BADKEY
    /// (RFC 8945 §5.2.1), since pooldns knows no keys. Set only with rcode NOTAUTH.
    pub tsig: Option<Tsig<'a>>,
}

/// A query's TSIG record (RFC 8945 §4.2), checked by [`parse`], as far as the refusal
/// echoes it. Offsets into the query, not copies: it rides in every [`Request`]'s header,
/// so it stays small (3 words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tsig<'a> {
    /// The whole query: the key name may be compressed and point anywhere before it.
    pub message: &'a [u8],
    /// Where the key name (the record's owner) starts in `message`.
    pub key_name: u16,
    /// Where the record's rdata starts in `message`: the algorithm name, uncompressed as
    /// RFC 8945 §4.2 requires, then time signed, fudge, MAC size, MAC, original id.
    pub rdata: u16,
}

impl<'a> Tsig<'a> {
    /// TSIG error BADKEY: the key is not known (RFC 8945 §5.2.1).
    pub const BADKEY: u16 = 17;

    /// The algorithm name, root label included.
    pub fn algorithm(&self) -> &'a [u8] {
        let start = usize::from(self.rdata);
        let mut end = start;
        // parse checked it is a plain name inside the message; stop at the end anyway.
        while let Some(&len) = self.message.get(end) {
            end += 1 + usize::from(len);
            if len == 0 {
                break;
            }
        }
        self.message.get(start..end).unwrap_or_default()
    }

    /// The fixed fields after the algorithm name.
    fn field(&self, at: usize, len: usize) -> u64 {
        let start = usize::from(self.rdata) + self.algorithm().len() + at;
        self.message
            .get(start..start + len)
            .map_or(0, |b| b.iter().fold(0, |v, &x| v << 8 | u64::from(x)))
    }

    /// Time signed, seconds since the epoch (48 bits).
    pub fn time_signed(&self) -> u64 {
        self.field(0, 6)
    }

    /// Fudge, seconds.
    pub fn fudge(&self) -> u16 {
        self.field(6, 2) as u16
    }

    /// Original id: after the MAC.
    pub fn original_id(&self) -> u16 {
        let mac_len = self.field(8, 2) as usize;
        self.field(10 + mac_len, 2) as u16
    }
}

/// The question of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question<'a> {
    /// The name exactly as sent (case kept), uncompressed, root label included.
    pub qname: &'a [u8],
    /// Query type.
    pub qtype: u16,
    /// Query class.
    pub qclass: u16,
}

/// An EDNS Client Subnet option as sent (RFC 7871 §6), checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    /// 1 = IPv4, 2 = IPv6.
    pub family: u16,
    /// Source prefix length.
    pub source_prefix: u8,
    /// The address, bits past the prefix zero.
    pub address: IpAddr,
}

impl ClientSubnet {
    /// Number of address bytes on the wire: ceil(source / 8).
    pub fn address_len(&self) -> usize {
        usize::from(self.source_prefix).div_ceil(8)
    }
}

/// The EDNS(0) part of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size.
    pub udp_payload: u16,
    /// EDNS version.
    pub version: u8,
    /// DNSSEC OK bit.
    pub dnssec_ok: bool,
    /// Client subnet, when sent.
    pub ecs: Option<ClientSubnet>,
    /// NSID requested (RFC 5001).
    pub nsid: bool,
    /// DNS cookie, when sent (RFC 7873).
    pub cookie: Option<cookie::Cookie>,
    /// edns-tcp-keepalive requested (RFC 7828).
    pub keepalive: bool,
    /// The ECS option was present but malformed (the query gets FORMERR).
    pub ecs_malformed: bool,
}

/// A parsed query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// Header fields to echo.
    pub header: Header<'a>,
    /// The one question.
    pub question: Question<'a>,
    /// EDNS, when the query had an OPT record.
    pub edns: Option<Edns>,
}
