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
    /// Service location.
    pub const SRV: u16 = 33;
    /// EDNS(0) pseudo-record.
    pub const OPT: u16 = 41;
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
            SRV => "SRV",
            OPT => "OPT",
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
            16 => "BADVERS",
            _ => "OTHER",
        }
    }
}

/// The header fields of a query that an answer echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message id.
    pub id: u16,
    /// Opcode (0 = QUERY).
    pub opcode: u8,
    /// Recursion desired: copied into the answer (RFC 1035 §4.1.1).
    pub rd: bool,
    /// Checking disabled: copied into the answer (RFC 4035 §3.1.6).
    pub cd: bool,
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
    pub header: Header,
    /// The one question.
    pub question: Question<'a>,
    /// EDNS, when the query had an OPT record.
    pub edns: Option<Edns>,
}
