//! Answer building: an [`Answer`] (or an error) written into a buffer the caller owns.
//!
//! Layout: header, the question copied byte for byte (so 0x20 case randomisation
//! survives), answer records owned by the qname (pointer to offset 12), authority records
//! owned by the origin (a pointer into the qname), then the OPT record. Room for the OPT
//! is reserved first; an RRset that does not fit is never cut: the answer is sent with
//! TC=1 and empty sections instead (RFC 2181 §9), and the client retries over TCP.

use super::parse::option;
use super::{ClientSubnet, Header, Question, Rcode, cookie};
use crate::answer::{Answer, Ede, Records};
use crate::table::Rr;

/// What the OPT record of an answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EdnsReply<'a> {
    /// Our UDP payload size.
    pub udp_payload: u16,
    /// DO bit, echoed from the query.
    pub dnssec_ok: bool,
    /// The client subnet to echo, with the scope prefix to send.
    pub ecs: Option<(ClientSubnet, u8)>,
    /// NSID payload, when asked and configured.
    pub nsid: Option<&'a [u8]>,
    /// Cookie option data (client + server cookie).
    pub cookie: Option<[u8; cookie::REPLY_LEN]>,
    /// edns-tcp-keepalive timeout in units of 100 ms (RFC 7828), over TCP when asked.
    pub keepalive: Option<u16>,
    /// Extended DNS Error.
    pub ede: Option<Ede>,
}

struct Full;

struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
    limit: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Full> {
        let end = self.pos + bytes.len();
        if end > self.limit {
            return Err(Full);
        }
        self.buf[self.pos..end].copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    fn u16(&mut self, v: u16) -> Result<(), Full> {
        self.put(&v.to_be_bytes())
    }

    fn u32(&mut self, v: u32) -> Result<(), Full> {
        self.put(&v.to_be_bytes())
    }

    fn set_u16(&mut self, at: usize, v: u16) {
        self.buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    fn record(
        &mut self,
        owner: u16,
        rtype: u16,
        class: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<(), Full> {
        self.u16(owner)?;
        self.u16(rtype)?;
        self.u16(class)?;
        self.u32(ttl)?;
        self.u16(rdata.len() as u16)?; // rdata comes from checked config (<= 4096) or addresses
        self.put(rdata)
    }

    fn records(&mut self, owner: u16, class: u16, records: &Records<'_>) -> Result<u16, Full> {
        match records {
            Records::Empty => Ok(0),
            Records::Txt { ttl, data } => {
                self.record(owner, super::rtype::TXT, class, *ttl, data.as_bytes())?;
                Ok(1)
            }
            Records::Set(set) => {
                for Rr { rtype, ttl, rdata } in set.iter() {
                    self.record(owner, *rtype, class, *ttl, rdata)?;
                }
                Ok(set.len() as u16)
            }
            Records::Pool {
                rtype,
                ttl,
                picks,
                members,
            } => {
                let mut n = 0;
                for &i in picks.as_slice() {
                    let Some(m) = members.get(i as usize) else {
                        continue;
                    };
                    match m.ip {
                        std::net::IpAddr::V4(v4) => {
                            self.record(owner, *rtype, class, *ttl, &v4.octets())?
                        }
                        std::net::IpAddr::V6(v6) => {
                            self.record(owner, *rtype, class, *ttl, &v6.octets())?
                        }
                    }
                    n += 1;
                }
                Ok(n)
            }
        }
    }
}

/// Size of the OPT record we send.
fn opt_len(edns: Option<&EdnsReply<'_>>) -> usize {
    match edns {
        None => 0,
        Some(e) => 11 + options_len(e),
    }
}

/// Size of the OPT rdata: each option is 4 bytes of code and length plus its data.
fn options_len(e: &EdnsReply<'_>) -> usize {
    e.ecs.map_or(0, |(s, _)| 8 + s.address_len())
        + e.nsid.map_or(0, |n| 4 + n.len())
        + e.cookie.map_or(0, |c| 4 + c.len())
        + e.keepalive.map_or(0, |_| 6)
        + e.ede.map_or(0, |d| 6 + d.text.len())
}

/// Writes an answer into `buf`, never more than `limit` bytes (the client's UDP payload
/// size, or 65535 over TCP); returns the length. `buf` must hold at least 512 bytes.
pub fn build(
    buf: &mut [u8],
    limit: usize,
    header: &Header,
    question: Option<&Question<'_>>,
    answer: &Answer<'_>,
    edns: Option<&EdnsReply<'_>>,
) -> usize {
    let limit = limit.min(buf.len());
    let mut w = Writer { buf, pos: 0, limit };
    let mut flags: u16 = 0x8000 | u16::from(header.opcode & 0x0f) << 11;
    if answer.authoritative {
        flags |= 0x0400;
    }
    if header.rd {
        flags |= 0x0100;
    }
    if header.cd {
        flags |= 0x0010;
    }
    flags |= answer.rcode.0 & 0x000f;
    let header_bytes = [0u8; 12];
    if w.put(&header_bytes).is_err() {
        return 0;
    }
    w.set_u16(0, header.id);
    let mut qdcount = 0;
    if let Some(q) = question {
        // A question that leaves no room for the OPT is dropped from the echo (only an
        // unanswerable 512-byte limit with a 255-byte name could do that).
        let before = w.pos;
        let fits = w.put(q.qname).is_ok() && w.u16(q.qtype).is_ok() && w.u16(q.qclass).is_ok();
        if fits && w.pos + opt_len(edns) <= w.limit {
            qdcount = 1;
        } else {
            w.pos = before;
        }
    }
    let after_question = w.pos;
    let full_limit = w.limit;
    w.limit = w.limit.saturating_sub(opt_len(edns));
    let answer_owner = 0xc000 | 12u16;
    let authority_owner = 0xc000 | (12 + answer.origin_offset) as u16;
    let sections = (|| {
        let an = w.records(answer_owner, answer.class, &answer.answer)?;
        let ns = w.records(authority_owner, super::class::IN, &answer.authority)?;
        Ok::<_, Full>((an, ns))
    })();
    let (ancount, nscount) = match sections {
        Ok(counts) => counts,
        Err(Full) => {
            flags |= 0x0200; // TC
            w.pos = after_question;
            (0, 0)
        }
    };
    w.limit = full_limit;
    let mut arcount = 0;
    if let Some(e) = edns {
        let ede = e.ede.or(answer.ede);
        if write_opt(&mut w, &EdnsReply { ede, ..*e }, answer.rcode).is_ok() {
            arcount = 1;
        }
    }
    w.set_u16(2, flags);
    w.set_u16(4, qdcount);
    w.set_u16(6, ancount);
    w.set_u16(8, nscount);
    w.set_u16(10, arcount);
    w.pos
}

/// RFC 6891 §6.1.2–6.1.3; options: ECS (RFC 7871 §7.2), NSID (RFC 5001), cookie
/// (RFC 7873), edns-tcp-keepalive (RFC 7828), Extended DNS Error (RFC 8914).
fn write_opt(w: &mut Writer<'_>, e: &EdnsReply<'_>, rcode: Rcode) -> Result<(), Full> {
    w.put(&[0])?; // root owner
    w.u16(super::rtype::OPT)?;
    w.u16(e.udp_payload)?;
    let ext_rcode = (rcode.0 >> 4) as u8;
    w.put(&[ext_rcode, 0])?; // extended rcode, version 0
    w.u16(if e.dnssec_ok { 0x8000 } else { 0 })?; // other flags are cleared
    w.u16(options_len(e) as u16)?; // small: bounded by the fields above
    if let Some((s, scope)) = e.ecs {
        let n = s.address_len();
        w.u16(option::ECS)?;
        w.u16((4 + n) as u16)?;
        w.u16(s.family)?;
        w.put(&[s.source_prefix, scope])?;
        match s.address {
            std::net::IpAddr::V4(v4) => w.put(&v4.octets()[..n.min(4)])?,
            std::net::IpAddr::V6(v6) => w.put(&v6.octets()[..n.min(16)])?,
        }
    }
    if let Some(nsid) = e.nsid {
        w.u16(option::NSID)?;
        w.u16(nsid.len() as u16)?; // config checks <= 512
        w.put(nsid)?;
    }
    if let Some(c) = &e.cookie {
        w.u16(option::COOKIE)?;
        w.u16(c.len() as u16)?;
        w.put(c)?;
    }
    if let Some(timeout) = e.keepalive {
        w.u16(option::KEEPALIVE)?;
        w.u16(2)?;
        w.u16(timeout)?;
    }
    if let Some(Ede { code, text }) = e.ede {
        w.u16(option::EDE)?;
        w.u16((2 + text.len()) as u16)?;
        w.u16(code)?;
        w.put(text.as_bytes())?;
    }
    Ok(())
}
