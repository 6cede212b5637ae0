//! Query parsing: bytes → [`Request`], or the error answer to send ([`ParseError`]).
//!
//! Checks, in order (RFC 1035 §4.1, RFC 6891, RFC 7871, RFC 8945):
//! 1. shorter than a header, or QR=1 → no reply at all (answering answers invites loops);
//! 2. a well-formed TSIG record last in the additional section, with everything else
//!    well-formed and no EDNS version > 0 → NOTAUTH with an unsigned TSIG record, error
//!    BADKEY (RFC 8945 §5.2.1: pooldns knows no keys);
//! 3. opcode other than QUERY → NOTIMP;
//! 4. QDCOUNT = 0 with a cookie and nothing else wrong → a cookie-only query, answered
//!    NOERROR with a cookie (RFC 7873 §5.4);
//!    QDCOUNT ≠ 1, ANCOUNT ≠ 0, a malformed question (compression pointer, label > 63,
//!    name > 255, truncated type/class), a malformed record in the other sections, more
//!    than one OPT, an OPT not owned by the root, a malformed ECS option, a TSIG that
//!    breaks RFC 8945's rules, a SIG(0), or trailing bytes → FORMERR (the records of a
//!    query that change its meaning are listed at [`read_records`]);
//! 5. EDNS version > 0 → BADVERS (RFC 6891 §6.1.3).
//!
//! Every read is bounds-checked; nothing here panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cookie::Cookie;
use super::{ClientSubnet, Edns, Header, Question, Rcode, Request, Tsig, class, rtype};

/// Why a query gets no normal answer: parsing alone decides the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// Send nothing.
    Drop,
    /// Send an error answer with this rcode, echoing what could be read.
    Reply {
        /// Header fields (and the TSIG record to refuse, with NOTAUTH).
        header: Header<'a>,
        /// The question, when it was readable.
        question: Option<Question<'a>>,
        /// The OPT record, when it was readable.
        edns: Option<Edns>,
        /// FORMERR, NOTAUTH, NOTIMP or BADVERS; NOERROR for a cookie-only query.
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
// The error carries what the Ok carries (header with its TSIG, question, EDNS) and is no
// larger than it, so boxing it would save nothing and cost an allocation per refusal.
#[allow(clippy::result_large_err)]
pub fn parse(bytes: &[u8]) -> Result<Request<'_>, ParseError<'_>> {
    if bytes.len() < 12 {
        return Err(ParseError::Drop);
    }
    let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
    if flags & 0x8000 != 0 {
        return Err(ParseError::Drop);
    }
    let mut header = Header {
        id: u16::from_be_bytes([bytes[0], bytes[1]]),
        opcode: ((flags >> 11) & 0x0f) as u8,
        rd: flags & 0x0100 != 0,
        cd: flags & 0x0010 != 0,
        tsig: None,
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
    let (edns, tsig, records_ok) = match records {
        Ok(Additional { edns, tsig }) => (edns, tsig, !trailing),
        Err(OptError::Malformed) => (None, None, false),
        Err(OptError::BadOption(edns)) => (Some(edns), None, false),
        Err(OptError::BadRecord(edns)) => (edns, None, false),
    };
    let version_known = edns.is_none_or(|e| e.version == 0);
    if let Some(tsig) = tsig.filter(|_| records_ok && qdcount <= 1 && ancount == 0 && version_known)
    {
        // RFC 8945 §5.2.1: "If a non-forwarding server does not recognize the key or
        // algorithm used by the client [...], the server MUST generate an error response
        // with RCODE 9 (NOTAUTH) and TSIG ERROR 17 (BADKEY). This response MUST be
        // unsigned". pooldns knows no keys, so every well-formed TSIG gets this, before
        // the opcode is looked at: the request cannot be verified. An unknown EDNS version
        // comes first (BADVERS, as Knot; NSD ORs both rcodes into 25).
        header.tsig = Some(tsig);
        return Err(ParseError::Reply {
            header,
            question: question.filter(|_| qdcount == 1),
            edns,
            rcode: Rcode::NOTAUTH,
        });
    }
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
    /// Every record reads, but a TSIG or SIG(0) breaks a rule (not last, not alone,
    /// malformed rdata, wrong class): FORMERR, echoing the OPT if there was one.
    BadRecord(Option<Edns>),
}

/// What the additional section of a query says.
struct Additional<'a> {
    edns: Option<Edns>,
    tsig: Option<Tsig<'a>>,
}

impl From<Malformed> for OptError {
    fn from(_: Malformed) -> Self {
        OptError::Malformed
    }
}

/// Reads the remaining sections; returns the OPT and TSIG records, if there are any.
///
/// # Records in a query that change its meaning
///
/// None may be silently ignored (issue 11). Checked against NSD 4.x and Knot 3.x in
/// `tests/it/compare.rs` (shapes `tsig-*`, `sig0*`, `additional-*`):
///
/// | in the query                         | pooldns                  | NSD      | Knot     |
/// |--------------------------------------|--------------------------|----------|----------|
/// | non-empty answer section             | FORMERR                  | FORMERR  | FORMERR  |
/// | SOA in authority (IXFR, RFC 1995)    | REFUSED, as AXFR         | REFUSED  | NOTAUTH  |
/// | TSIG in answer or authority          | FORMERR (RFC 8945 §5.2)  |          |          |
/// | second OPT, OPT not at the root      | FORMERR (RFC 6891 §6.1.1)| FORMERR  | FORMERR  |
/// | OPT version > 0                      | BADVERS (RFC 6891 §6.1.3)| BADVERS  | BADVERS  |
/// | TSIG, last, class ANY (any key)      | NOTAUTH + TSIG BADKEY    | same     | same     |
/// | TSIG not last, two TSIGs, bad rdata  | FORMERR (RFC 8945 §5.2)  | FORMERR  | FORMERR  |
/// | TSIG of a class other than ANY       | FORMERR (RFC 8945 §4.2)  | FORMERR  | NOTAUTH  |
/// | SIG(0) (RFC 2931), any SIG           | FORMERR                  | FORMERR  | ignored  |
/// | any other type in additional         | ignored (RFC 1035 §4.1)  | FORMERR  | ignored  |
///
/// Why FORMERR for SIG(0), not an answer: pooldns cannot check the signature, and an
/// answer would read as if the request had been verified; NSD refuses it the same way.
/// Why other records are ignored, not FORMERR: they mean nothing in a query (RFC 1035
/// §4.1 gives the additional section of a query no use) and Knot answers them; NSD's
/// FORMERR would break clients that send one for no harm.
fn read_records<'a>(
    r: &mut Reader<'a>,
    an: u16,
    ns: u16,
    ar: u16,
) -> Result<Additional<'a>, OptError> {
    for _ in 0..u32::from(an) + u32::from(ns) {
        // RFC 8945 §5.2: a TSIG belongs in the additional section only.
        if skip_record(r)? == rtype::TSIG {
            return Err(OptError::BadRecord(None));
        }
    }
    let mut edns = None;
    let mut tsig = None;
    // A rule a TSIG or SIG broke; the rest is still read so that the OPT can be echoed.
    let mut bad_record = false;
    for i in 0..ar {
        let owner = r.pos;
        let root = r.skip_name()?;
        let rt = r.u16()?;
        let class = r.u16()?;
        let ttl = r.u32()?;
        let len = r.u16()?;
        let rdata_at = r.pos;
        let rdata = r.take(usize::from(len))?;
        if rt == rtype::TSIG {
            // RFC 8945 §5.2: "If the TSIG RR is not the last record in the additional
            // section [or there is more than one], the server MUST return FORMERR";
            // §4.2: CLASS MUST be ANY, TTL MUST be 0.
            let last = i + 1 == ar;
            match read_tsig(r.bytes, owner, rdata_at, rdata) {
                Ok(t) if last && tsig.is_none() && class == class::ANY && ttl == 0 => {
                    tsig = Some(t)
                }
                _ => bad_record = true,
            }
            continue;
        }
        if rt == rtype::SIG {
            // SIG(0), RFC 2931 §3: a signature we cannot check (see the table above).
            bad_record = true;
            continue;
        }
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
    if bad_record {
        return Err(OptError::BadRecord(edns));
    }
    Ok(Additional { edns, tsig })
}

/// A TSIG record's rdata (RFC 8945 §4.2) and its owner, the key name, which starts at
/// `owner` in `message` and may be compressed; `rdata` starts at `rdata_at`.
fn read_tsig<'a>(
    message: &'a [u8],
    owner: usize,
    rdata_at: usize,
    rdata: &[u8],
) -> Result<Tsig<'a>, Malformed> {
    check_name(message, owner)?;
    let mut r = Reader {
        bytes: rdata,
        pos: 0,
    };
    // "As per [RFC3597], this name MUST NOT be compressed."
    r.plain_name()?;
    r.take(6 + 2)?; // time signed, fudge
    let mac_len = r.u16()?;
    r.take(usize::from(mac_len))?;
    r.take(2 + 2)?; // original id, error
    let other_len = r.u16()?;
    r.take(usize::from(other_len))?;
    if r.pos != rdata.len() {
        return Err(Malformed);
    }
    Ok(Tsig {
        message,
        key_name: u16::try_from(owner).map_err(|_| Malformed)?,
        rdata: u16::try_from(rdata_at).map_err(|_| Malformed)?,
    })
}

/// Checks that the (possibly compressed) name at `start` reads whole: labels of at most
/// 63 bytes, pointers that go strictly backwards (so the walk ends), 255 bytes at most.
fn check_name(message: &[u8], start: usize) -> Result<(), Malformed> {
    walk_name(message, start, |_| Ok::<_, Malformed>(()))?.ok_or(Malformed)
}

/// Calls `label` with each label of the name at `start` in `message` (length byte
/// included), following compression pointers, then with the root label `[0]`. Returns
/// None when the name is malformed (see [`check_name`]); `label`'s error stops the walk.
pub(crate) fn walk_name<E>(
    message: &[u8],
    start: usize,
    mut label: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Option<()>, E> {
    let mut pos = start;
    let mut total = 0usize;
    loop {
        let Some(&len) = message.get(pos) else {
            return Ok(None);
        };
        match len {
            0 => {
                label(&[0])?;
                return Ok(Some(()));
            }
            1..=63 => {
                let Some(bytes) = message.get(pos..pos + 1 + usize::from(len)) else {
                    return Ok(None);
                };
                total += bytes.len();
                if total + 1 > crate::name::MAX_NAME_LEN {
                    return Ok(None);
                }
                label(bytes)?;
                pos += bytes.len();
            }
            0xc0..=0xff => {
                let Some(&low) = message.get(pos + 1) else {
                    return Ok(None);
                };
                let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                if target >= pos {
                    return Ok(None);
                }
                pos = target;
            }
            _ => return Ok(None),
        }
    }
}

/// Skips a record; returns its type.
fn skip_record(r: &mut Reader<'_>) -> Result<u16, Malformed> {
    r.skip_name()?;
    let rt = r.u16()?;
    r.take(6)?;
    let len = r.u16()?;
    r.take(usize::from(len))?;
    Ok(rt)
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

    /// A TSIG record owned by `owner`: hmac-sha256, time signed 0x0001_6553_f100 (past
    /// 32 bits), fudge 300, a 32-byte MAC, original id 0xbeef.
    fn tsig(owner: &[u8], class: u16, ttl: u32) -> Vec<u8> {
        let mut rdata = b"\x0bhmac-sha256\x00".to_vec();
        rdata.extend([0, 1, 0x65, 0x53, 0xf1, 0x00]);
        rdata.extend(300u16.to_be_bytes());
        rdata.extend(32u16.to_be_bytes());
        rdata.extend([9; 32]);
        rdata.extend(0xbeefu16.to_be_bytes());
        rdata.extend([0, 0, 0, 0]);
        let mut rr = owner.to_vec();
        rr.extend(rtype::TSIG.to_be_bytes());
        rr.extend(class.to_be_bytes());
        rr.extend(ttl.to_be_bytes());
        rr.extend((rdata.len() as u16).to_be_bytes());
        rr.extend(rdata);
        rr
    }

    const KEY: &[u8] = b"\x03key\x07example\x00";

    #[test]
    fn test_8945_5_2_1_any_tsig_gets_notauth_with_its_fields() {
        // The key name a pointer to the qname: compressed owners are allowed.
        for (owner, opcode) in [(KEY, 0u8), (&[0xc0, 12][..], 0), (KEY, 4)] {
            let mut q = query(NAME, 1, &tsig(owner, class::ANY, 0), 1);
            q[2] |= opcode << 3;
            let Err(ParseError::Reply {
                header,
                question,
                rcode,
                ..
            }) = parse(&q)
            else {
                panic!("{owner:?}: not refused");
            };
            assert_eq!(rcode, Rcode::NOTAUTH, "{owner:?} opcode {opcode}");
            assert_eq!(question.map(|q| q.qname), Some(NAME));
            let t = header.tsig.expect("the TSIG to echo");
            assert_eq!(usize::from(t.key_name), 12 + NAME.len() + 4);
            assert_eq!(t.algorithm(), b"\x0bhmac-sha256\x00");
            assert_eq!(t.time_signed(), 0x0001_6553_f100);
            assert_eq!((t.fudge(), t.original_id()), (300, 0xbeef));
            assert!(check_name(t.message, t.key_name.into()).is_ok());
        }
        // After an OPT: still refused, the OPT echoed.
        let q = query(NAME, 1, &[opt(&[]), tsig(KEY, class::ANY, 0)].concat(), 2);
        assert!(matches!(
            parse(&q),
            Err(ParseError::Reply {
                rcode: Rcode::NOTAUTH,
                edns: Some(_),
                ..
            })
        ));
        // An unknown EDNS version comes first.
        let mut v1 = opt(&[]);
        v1[6] = 1;
        let q = query(NAME, 1, &[v1, tsig(KEY, class::ANY, 0)].concat(), 2);
        assert_eq!(rcode_of(&q), Some(Rcode::BADVERS));
    }

    #[test]
    fn test_8945_5_2_tsig_not_last_or_malformed_and_sig0_get_formerr() {
        let good = tsig(KEY, class::ANY, 0);
        let mut trailing_rdata = good.clone();
        trailing_rdata.push(0);
        let len_at = KEY.len() + 8;
        let len = u16::from_be_bytes([good[len_at], good[len_at + 1]]);
        trailing_rdata[len_at..len_at + 2].copy_from_slice(&(len + 1).to_be_bytes());
        let mut compressed_algorithm = tsig(KEY, class::ANY, 0);
        compressed_algorithm.splice(KEY.len() + 10..KEY.len() + 23, [0xc0, 12]);
        compressed_algorithm[len_at..len_at + 2].copy_from_slice(&(len - 11).to_be_bytes());
        let mut sig0 = vec![0, 0, 24, 0, 255, 0, 0, 0, 0, 0, 18];
        sig0.extend([0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        let cases: [(&str, Vec<u8>, u16); 8] = [
            ("not last", [good.clone(), opt(&[])].concat(), 2),
            ("two", [good.clone(), good.clone()].concat(), 2),
            ("class IN", tsig(KEY, class::IN, 0), 1),
            ("TTL 300", tsig(KEY, class::ANY, 300), 1),
            ("rdata too long", trailing_rdata, 1),
            ("algorithm compressed", compressed_algorithm, 1),
            ("SIG(0)", sig0.clone(), 1),
            ("SIG(0) after OPT", [opt(&[]), sig0].concat(), 2),
        ];
        for (what, additional, arcount) in cases {
            let q = query(NAME, 1, &additional, arcount);
            assert_eq!(rcode_of(&q), Some(Rcode::FORMERR), "{what}");
        }
        // A TSIG in the authority section.
        let mut q = query(NAME, 1, &good, 0);
        q[9] = 1;
        assert_eq!(rcode_of(&q), Some(Rcode::FORMERR));
        // Other records in the additional section mean nothing in a query: ignored.
        let a = [
            &[0xc0, 12][..],
            &[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1],
        ]
        .concat();
        assert!(parse(&query(NAME, 1, &a, 1)).is_ok());
    }

    #[test]
    fn the_error_is_no_larger_than_the_request() {
        // The claim beside `parse`'s allow(clippy::result_large_err).
        assert!(size_of::<ParseError<'_>>() <= size_of::<Request<'_>>());
    }

    #[test]
    fn key_names_that_loop_point_forward_or_grow_past_255_bytes_are_malformed() {
        let q = query(NAME, 1, &[], 0);
        let at = q.len();
        for (name, why) in [
            (vec![0xc0, at as u8], "points at itself"),
            (vec![0xc0, (at + 2) as u8, 0], "points forward"),
            (vec![3, b'k', b'e'], "cut short"),
            (vec![0x40, 0], "extended label type"),
        ] {
            let message = [q.clone(), name].concat();
            assert!(check_name(&message, at).is_err(), "{why}");
        }
        // 4 labels of 63 through a pointer chain: 257 bytes.
        let mut message = q.clone();
        let label = [&[63u8][..], &[b'a'; 63]].concat();
        let first = message.len();
        message.extend(&label);
        message.extend(&label);
        message.extend(&label);
        message.push(0);
        let second = message.len();
        message.extend(&label);
        message.extend([0xc0 | (first >> 8) as u8, first as u8]);
        assert!(check_name(&message, first).is_ok(), "193 bytes");
        assert!(check_name(&message, second).is_err(), "257 bytes");
    }

    #[test]
    fn every_strict_prefix_of_a_signed_query_fails_cleanly() {
        let q = query(
            NAME,
            1,
            &[opt(&[]), tsig(&[0xc0, 12], class::ANY, 0)].concat(),
            2,
        );
        assert_eq!(rcode_of(&q), Some(Rcode::NOTAUTH));
        for len in 0..q.len() {
            let r = rcode_of(&q[..len]);
            assert!(
                matches!(r, Some(Rcode::FORMERR) | Some(Rcode(999))),
                "prefix {len}: {r:?}"
            );
        }
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
