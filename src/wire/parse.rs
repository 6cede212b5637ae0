//! Query parsing: bytes → [`Request`], or the error answer to send ([`ParseError`]).
//!
//! Checks, in order (RFC 1035 §4.1, RFC 6891, RFC 7871):
//! 1. shorter than a header, or QR=1 → no reply at all (answering answers invites loops);
//! 2. opcode other than QUERY → NOTIMP;
//! 3. QDCOUNT = 0 with a cookie and nothing else wrong → a cookie-only query, answered
//!    NOERROR with a cookie (RFC 7873 §5.4);
//!    QDCOUNT ≠ 1, ANCOUNT ≠ 0, a malformed question (compression pointer, label > 63,
//!    name > 255, truncated type/class), a malformed record in the other sections, more
//!    than one OPT, an OPT not owned by the root, a malformed ECS option, or trailing
//!    bytes → FORMERR;
//! 4. EDNS version > 0 → BADVERS (RFC 6891 §6.1.3).
//!
//! Every read is bounds-checked; nothing here panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cookie::Cookie;
use super::{ClientSubnet, Edns, Header, Question, Rcode, Request, rtype};

/// Why a query gets no normal answer: parsing alone decides the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// Send nothing.
    Drop,
    /// Send an error answer with this rcode, echoing what could be read.
    Reply {
        /// Header fields.
        header: Header,
        /// The question, when it was readable.
        question: Option<Question<'a>>,
        /// The OPT record, when it was readable.
        edns: Option<Edns>,
        /// FORMERR, NOTIMP or BADVERS; NOERROR for a cookie-only query.
        rcode: Rcode,
    },
}

/// EDNS option codes.
pub(crate) mod option {
    pub const NSID: u16 = 3;
    pub const ECS: u16 = 8;
    pub const COOKIE: u16 = 10;
    pub const KEEPALIVE: u16 = 11;
    pub const EDE: u16 = 15;
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// A read past the end or a rule broken: the message is malformed.
struct Malformed;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(Malformed)?;
        let s = self.bytes.get(self.pos..end).ok_or(Malformed)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// An uncompressed name (the question's); returns its bytes, root included.
    fn plain_name(&mut self) -> Result<&'a [u8], Malformed> {
        let start = self.pos;
        loop {
            let len = self.u8()?;
            match len {
                0 => break,
                1..=63 => {
                    self.take(usize::from(len))?;
                }
                // 0b11 pointer, 0b01/0b10 extended label types: not in a question.
                _ => return Err(Malformed),
            }
            if self.pos - start > crate::name::MAX_NAME_LEN {
                return Err(Malformed);
            }
        }
        if self.pos - start > crate::name::MAX_NAME_LEN {
            return Err(Malformed);
        }
        Ok(&self.bytes[start..self.pos])
    }

    /// Skips a possibly compressed name; returns whether it was the root name.
    fn skip_name(&mut self) -> Result<bool, Malformed> {
        let mut first = true;
        let mut total = 0usize;
        loop {
            let len = self.u8()?;
            match len {
                0 => return Ok(first),
                1..=63 => {
                    self.take(usize::from(len))?;
                    total += usize::from(len) + 1;
                    if total > crate::name::MAX_NAME_LEN {
                        return Err(Malformed);
                    }
                }
                0xc0..=0xff => {
                    // A pointer ends the name; it must point backwards into the message.
                    let low = self.u8()?;
                    let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                    if target >= self.pos - 2 {
                        return Err(Malformed);
                    }
                    return Ok(false);
                }
                _ => return Err(Malformed),
            }
            first = false;
        }
    }
}

/// Parses a query.
pub fn parse(bytes: &[u8]) -> Result<Request<'_>, ParseError<'_>> {
    if bytes.len() < 12 {
        return Err(ParseError::Drop);
    }
    let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
    if flags & 0x8000 != 0 {
        return Err(ParseError::Drop);
    }
    let header = Header {
        id: u16::from_be_bytes([bytes[0], bytes[1]]),
        opcode: ((flags >> 11) & 0x0f) as u8,
        rd: flags & 0x0100 != 0,
        cd: flags & 0x0010 != 0,
    };
    let count = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    let (qdcount, ancount, nscount, arcount) = (count(4), count(6), count(8), count(10));
    let formerr = |question, edns| ParseError::Reply {
        header,
        question,
        edns,
        rcode: Rcode::FORMERR,
    };

    let mut r = Reader { bytes, pos: 12 };
    // Read every section first, so that error answers can echo the OPT record whenever
    // it was readable (RFC 6891 §7: a responder includes an OPT when the request had one).
    let mut question = None;
    let mut questions_read = true;
    for i in 0..qdcount {
        let read = if i == 0 {
            read_question(&mut r).map(|q| question = Some(q))
        } else {
            r.skip_name().and_then(|_| r.take(4)).map(|_| ())
        };
        if read.is_err() {
            questions_read = false;
            break;
        }
    }
    let records = if questions_read {
        read_records(&mut r, ancount, nscount, arcount)
    } else {
        Err(OptError::Malformed)
    };
    let trailing = r.pos != bytes.len();
    let (edns, records_ok) = match records {
        Ok(edns) => (edns, !trailing),
        Err(OptError::Malformed) => (None, false),
        Err(OptError::BadOption(edns)) => (Some(edns), false),
    };
    if header.opcode != 0 {
        // RFC 1035 §4.1.1: opcodes we do not implement get NOTIMP.
        return Err(ParseError::Reply {
            header,
            question: question.filter(|_| qdcount == 1),
            edns: edns.filter(|_| records_ok),
            rcode: Rcode::NOTIMP,
        });
    }
    if qdcount == 0 && ancount == 0 && records_ok {
        // RFC 7873 §5.4: a query with no question but a cookie asks for a server cookie.
        if let Some(e) = edns.filter(|e| e.cookie.is_some() && e.version == 0) {
            return Err(ParseError::Reply {
                header,
                question: None,
                edns: Some(e),
                rcode: Rcode::NOERROR,
            });
        }
    }
    let question = match question {
        Some(q) if qdcount == 1 && ancount == 0 && records_ok => q,
        _ => return Err(formerr(None, edns)),
    };
    if let Some(e) = edns {
        if e.version > 0 {
            // Echo the question, as NSD and Knot do: resolvers match answers by it.
            return Err(ParseError::Reply {
                header,
                question: Some(question),
                edns: Some(e),
                rcode: Rcode::BADVERS,
            });
        }
    }
    Ok(Request {
        header,
        question,
        edns,
    })
}

fn read_question<'a>(r: &mut Reader<'a>) -> Result<Question<'a>, Malformed> {
    let qname = r.plain_name()?;
    let qtype = r.u16()?;
    let qclass = r.u16()?;
    Ok(Question {
        qname,
        qtype,
        qclass,
    })
}

enum OptError {
    /// The message itself is broken: no OPT to echo.
    Malformed,
    /// The OPT reads but one of its options is malformed: echo the OPT with FORMERR.
    BadOption(Edns),
}

impl From<Malformed> for OptError {
    fn from(_: Malformed) -> Self {
        OptError::Malformed
    }
}

/// Reads the remaining sections; returns the OPT record, if there is one.
fn read_records(r: &mut Reader<'_>, an: u16, ns: u16, ar: u16) -> Result<Option<Edns>, OptError> {
    for _ in 0..u32::from(an) + u32::from(ns) {
        skip_record(r)?;
    }
    let mut edns = None;
    for _ in 0..ar {
        let root = r.skip_name()?;
        let rt = r.u16()?;
        let class = r.u16()?;
        let ttl = r.u32()?;
        let len = r.u16()?;
        let rdata = r.take(usize::from(len))?;
        if rt != rtype::OPT {
            continue;
        }
        // RFC 6891 §6.1.1: one OPT at most, owned by the root.
        if edns.is_some() || !root {
            return Err(OptError::Malformed);
        }
        let mut e = Edns {
            udp_payload: class,
            version: (ttl >> 16) as u8,
            dnssec_ok: ttl & 0x8000 != 0,
            ecs: None,
            nsid: false,
            cookie: None,
            keepalive: false,
            ecs_malformed: false,
        };
        if let Err(bad) = read_options(rdata, &mut e) {
            return Err(OptError::BadOption(Edns {
                ecs: None,
                cookie: None,
                ecs_malformed: bad == Some(option::ECS),
                ..e
            }));
        }
        edns = Some(e);
    }
    Ok(edns)
}

fn skip_record(r: &mut Reader<'_>) -> Result<(), Malformed> {
    r.skip_name()?;
    r.take(8)?;
    let len = r.u16()?;
    r.take(usize::from(len))?;
    Ok(())
}

/// Reads the options into `e`; on error, the code of the option that was malformed (None
/// when the option list itself is cut short).
fn read_options(rdata: &[u8], e: &mut Edns) -> Result<(), Option<u16>> {
    let mut r = Reader {
        bytes: rdata,
        pos: 0,
    };
    while r.pos < rdata.len() {
        let (Ok(code), Ok(len)) = (r.u16(), r.u16()) else {
            return Err(None);
        };
        let data = r.take(usize::from(len)).map_err(|_| Some(code))?;
        read_option(code, data, e).map_err(|_| Some(code))?;
    }
    Ok(())
}

fn read_option(code: u16, data: &[u8], e: &mut Edns) -> Result<(), Malformed> {
    match code {
        option::ECS => {
            if e.ecs.is_some() {
                return Err(Malformed);
            }
            e.ecs = Some(read_ecs(data)?);
        }
        option::NSID => e.nsid = true,
        option::COOKIE => {
            if e.cookie.is_some() {
                return Err(Malformed);
            }
            e.cookie = Some(Cookie::parse(data).ok_or(Malformed)?);
        }
        // RFC 7828 §3.2.1: a query carries the option without a timeout.
        option::KEEPALIVE if !data.is_empty() => return Err(Malformed),
        option::KEEPALIVE => e.keepalive = true,
        // RFC 6891 §6.1.2: unknown options are ignored.
        _ => {}
    }
    Ok(())
}

/// RFC 7871 §6: FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH (0 in queries), and
/// exactly ceil(source/8) address bytes with the bits past the prefix zero.
fn read_ecs(data: &[u8]) -> Result<ClientSubnet, Malformed> {
    let mut r = Reader {
        bytes: data,
        pos: 0,
    };
    let family = r.u16()?;
    let source = r.u8()?;
    let scope = r.u8()?;
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return Err(Malformed),
    };
    if source > max || scope != 0 {
        return Err(Malformed);
    }
    let addr = &data[4..];
    if addr.len() != usize::from(source).div_ceil(8) {
        return Err(Malformed);
    }
    if source % 8 != 0 {
        if let Some(&last) = addr.last() {
            let mask = 0xffu8 >> (source % 8);
            if last & mask != 0 {
                return Err(Malformed);
            }
        }
    }
    let address = if family == 1 {
        let mut b = [0u8; 4];
        b[..addr.len()].copy_from_slice(addr);
        IpAddr::V4(Ipv4Addr::from(b))
    } else {
        let mut b = [0u8; 16];
        b[..addr.len()].copy_from_slice(addr);
        IpAddr::V6(Ipv6Addr::from(b))
    };
    Ok(ClientSubnet {
        family,
        source_prefix: source,
        address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(qname: &[u8], qtype: u16, additional: &[u8], arcount: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        q.extend(arcount.to_be_bytes());
        q.extend_from_slice(qname);
        q.extend(qtype.to_be_bytes());
        q.extend(1u16.to_be_bytes());
        q.extend_from_slice(additional);
        q
    }

    fn opt(options: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0];
        o.extend((options.len() as u16).to_be_bytes());
        o.extend_from_slice(options);
        o
    }

    fn ecs(family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 8];
        o.extend(((4 + addr.len()) as u16).to_be_bytes());
        o.extend(family.to_be_bytes());
        o.push(source);
        o.push(scope);
        o.extend_from_slice(addr);
        o
    }

    const NAME: &[u8] = b"\x01\x30\x04Pool\x03ntp\x03org\x00";

    fn rcode_of(bytes: &[u8]) -> Option<Rcode> {
        match parse(bytes) {
            Ok(_) => None,
            Err(ParseError::Drop) => Some(Rcode(999)),
            Err(ParseError::Reply { rcode, .. }) => Some(rcode),
        }
    }

    #[test]
    fn parses_a_plain_query() {
        let q = query(NAME, 1, &[], 0);
        let r = parse(&q).unwrap();
        assert_eq!(r.header.id, 0x1234);
        assert!(r.header.rd);
        assert_eq!(r.question.qname, NAME);
        assert_eq!((r.question.qtype, r.question.qclass), (1, 1));
        assert_eq!(r.edns, None);
    }

    #[test]
    fn parses_edns_with_ecs() {
        let q = query(NAME, 1, &opt(&ecs(1, 24, 0, &[81, 2, 69])), 1);
        let e = parse(&q).unwrap().edns.unwrap();
        assert_eq!(e.udp_payload, 1232);
        assert!(e.dnssec_ok);
        let s = e.ecs.unwrap();
        assert_eq!(s.source_prefix, 24);
        assert_eq!(s.address, "81.2.69.0".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn rejects_malformed_ecs() {
        for bad in [
            ecs(3, 24, 0, &[1, 2, 3]),       // unknown family
            ecs(1, 33, 0, &[1, 2, 3, 4, 5]), // source too long
            ecs(1, 24, 8, &[81, 2, 69]),     // scope set in a query
            ecs(1, 24, 0, &[81, 2, 69, 0]),  // too many bytes
            ecs(1, 24, 0, &[81, 2]),         // too few
            ecs(1, 20, 0, &[81, 2, 0x4f]),   // bits set past the prefix
            ecs(2, 129, 0, &[0; 17]),
        ] {
            assert_eq!(
                rcode_of(&query(NAME, 1, &opt(&bad), 1)),
                Some(Rcode::FORMERR),
                "{bad:?}"
            );
        }
        let two = [ecs(1, 0, 0, &[]), ecs(1, 0, 0, &[])].concat();
        assert_eq!(
            rcode_of(&query(NAME, 1, &opt(&two), 1)),
            Some(Rcode::FORMERR)
        );
    }

    #[test]
    fn error_shapes() {
        assert_eq!(rcode_of(&[0; 11]), Some(Rcode(999)));
        let mut answer = query(NAME, 1, &[], 0);
        answer[2] |= 0x80;
        assert_eq!(rcode_of(&answer), Some(Rcode(999)));
        let mut notify = query(NAME, 6, &[], 0);
        notify[2] |= 4 << 3;
        assert_eq!(rcode_of(&notify), Some(Rcode::NOTIMP));
        let mut two = query(NAME, 1, &[], 0);
        two[5] = 2;
        assert_eq!(rcode_of(&two), Some(Rcode::FORMERR));
        let mut none = query(NAME, 1, &[], 0);
        none[5] = 0;
        assert_eq!(rcode_of(&none), Some(Rcode::FORMERR));
        assert_eq!(
            rcode_of(&query(b"\x04pool\xc0\x0c", 1, &[], 0)),
            Some(Rcode::FORMERR)
        );
        let long_label = [&[64u8][..], &[b'a'; 64], &[0]].concat();
        assert_eq!(
            rcode_of(&query(&long_label, 1, &[], 0)),
            Some(Rcode::FORMERR)
        );
        let long_name: Vec<u8> = (0..5)
            .flat_map(|_| [&[63u8][..], &[b'a'; 63]].concat())
            .chain([0])
            .collect();
        assert_eq!(
            rcode_of(&query(&long_name, 1, &[], 0)),
            Some(Rcode::FORMERR)
        );
        let mut trailing = query(NAME, 1, &[], 0);
        trailing.push(0);
        assert_eq!(rcode_of(&trailing), Some(Rcode::FORMERR));
        let full = query(NAME, 1, &[], 0);
        assert_eq!(rcode_of(&full[..full.len() - 1]), Some(Rcode::FORMERR));
        let two_opts = [opt(&[]), opt(&[])].concat();
        assert_eq!(
            rcode_of(&query(NAME, 1, &two_opts, 2)),
            Some(Rcode::FORMERR)
        );
        let mut v1 = opt(&[]);
        v1[6] = 1;
        assert_eq!(rcode_of(&query(NAME, 1, &v1, 1)), Some(Rcode::BADVERS));
    }

    fn cookie(data: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 10];
        o.extend((data.len() as u16).to_be_bytes());
        o.extend_from_slice(data);
        o
    }

    #[test]
    fn cookie_only_query_and_bad_cookies() {
        let mut q = query(NAME, 1, &opt(&cookie(&[7; 8])), 1);
        // Remove the question: QDCOUNT 0.
        q[5] = 0;
        q.drain(12..12 + NAME.len() + 4);
        assert_eq!(rcode_of(&q), Some(Rcode::NOERROR));
        let mut no_cookie = query(NAME, 1, &opt(&[]), 1);
        no_cookie[5] = 0;
        no_cookie.drain(12..12 + NAME.len() + 4);
        assert_eq!(rcode_of(&no_cookie), Some(Rcode::FORMERR));
        for len in [5, 9, 41] {
            let q = query(NAME, 1, &opt(&cookie(&vec![1; len])), 1);
            assert_eq!(rcode_of(&q), Some(Rcode::FORMERR), "{len}");
        }
        let ok = query(NAME, 1, &opt(&cookie(&[1; 24])), 1);
        assert!(parse(&ok).unwrap().edns.unwrap().cookie.is_some());
    }

    #[test]
    fn formerr_echoes_a_readable_opt() {
        let edns_of = |bytes: &[u8]| match parse(bytes) {
            Err(ParseError::Reply { edns, rcode, .. }) => (rcode, edns.is_some()),
            other => panic!("{other:?}"),
        };
        // Two questions, then an OPT.
        let mut two = query(NAME, 1, &[], 0);
        two[5] = 2;
        two.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1]);
        two.extend_from_slice(&opt(&[]));
        two[11] = 1;
        assert_eq!(edns_of(&two), (Rcode::FORMERR, true));
        // A malformed ECS still leaves the OPT readable.
        let bad = query(NAME, 1, &opt(&ecs(1, 24, 8, &[81, 2, 69])), 1);
        assert_eq!(edns_of(&bad), (Rcode::FORMERR, true));
        // A broken question hides the OPT.
        let broken = query(b"\x04pool\xc0\x0c", 1, &opt(&[]), 1);
        assert_eq!(edns_of(&broken), (Rcode::FORMERR, false));
    }

    #[test]
    fn keepalive_with_a_timeout_is_malformed() {
        let asked = query(NAME, 1, &opt(&[0, 11, 0, 0]), 1);
        assert!(parse(&asked).unwrap().edns.unwrap().keepalive);
        let with_timeout = query(NAME, 1, &opt(&[0, 11, 0, 2, 0, 100]), 1);
        assert_eq!(rcode_of(&with_timeout), Some(Rcode::FORMERR));
    }

    #[test]
    fn every_strict_prefix_fails_cleanly() {
        let q = query(
            NAME,
            1,
            &opt(&ecs(2, 56, 0, &[0x20, 1, 2, 0x18, 0, 0, 0])),
            1,
        );
        assert!(parse(&q).is_ok());
        for len in 0..q.len() {
            assert!(parse(&q[..len]).is_err(), "prefix {len}");
        }
    }
}
