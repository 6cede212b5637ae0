//! Answer building: an [`Answer`] (or an error) written into a buffer the caller owns.
//!
//! Layout: header, the question copied byte for byte (so 0x20 case randomisation
//! survives), answer records owned by the qname (pointer to offset 12), authority records
//! owned by the origin (a pointer into the qname), then the OPT record. Room for the OPT
//! is reserved first; an RRset that does not fit is never cut: the answer is sent with
//! TC=1 and empty sections instead (RFC 2181 §9), and the client retries over TCP.
//!
//! # Every option fits 512 bytes
//!
//! An answer to an EDNS query carries an OPT record (RFC 6891 §7) with every option the
//! query asked for, and a UDP answer is never longer than 512 bytes unless the client
//! said it takes more (RFC 6891 §6.2.5). Both hold for any question because the one
//! option whose size the configuration sets, the NSID, is bounded ([`MAX_NSID_LEN`]) so
//! that the longest question and every option at its largest fill 512 bytes exactly:
//!
//! ```text
//! header                        12
//! question: 255-byte name + 4  259
//! OPT without options           11
//! ECS, an IPv6 /128             24   code, length 4 · family, prefixes 4 · address 16
//! cookie                        28   code, length 4 · client 8, server 16
//! keepalive (TCP only)           6   code, length 4 · timeout 2
//! EDE                           26   code, length 4 · info code 2 · longest text 20
//! NSID                         146   code, length 4 · payload 142
//!                              ---
//!                              512
//! ```
//!
//! Why a bound, not dropping options (NSID first) when room runs short: an NSID that comes
//! and goes with the length of the question is no help in telling a fleet's servers apart,
//! and 142 bytes is more than twice the longest host name (64 on Linux). Records that do not
//! fit beside the OPT truncate the answer (above), so the OPT never gives way to them.
//!
//! Only a caller passing a longer NSID than the configuration accepts can still run out
//! of room, and the answer stays well-formed: an OPT that does not fit beside the question
//! drops the question from the echo, and with it the records (their owners point into it)
//! with TC set; an OPT that does not fit at all is left out whole, TC set. Issue "The fleet
//! must agree and the shares must hold at the edges": with the 512-byte NSID the
//! configuration used to accept, a 512-byte reply was 27 bytes, all counts 0, then 15
//! bytes of a half-written OPT; and the room kept for the OPT missed the answer's EDE.

use super::parse::{option, walk_name};
use super::{ClientSubnet, Header, Question, Rcode, Tsig, cookie};
use crate::answer::{Answer, Ede, Records, Signatures};
use crate::name::MAX_NAME_LEN;
use crate::table::Rr;

/// The longest NSID payload (RFC 5001) the configuration accepts: what 512 bytes leave
/// after the header, the longest question and an OPT with every other option at its
/// largest (see the module doc).
pub const MAX_NSID_LEN: usize = 512
    - 12 // header
    - (MAX_NAME_LEN + 4) // question
    - 11 // OPT without options
    - (4 + 4 + 16) // ECS with an IPv6 /128
    - (4 + cookie::REPLY_LEN)
    - (4 + 2) // edns-tcp-keepalive
    - (4 + 2 + MAX_EDE_TEXT_LEN)
    - 4; // NSID code and length

/// Every Extended DNS Error pooldns sends; a new one belongs here, so that
/// [`MAX_NSID_LEN`] leaves room for its text.
const EDES: [Ede; 3] = [Ede::PROHIBITED, Ede::NOT_AUTHORITATIVE, Ede::NOT_SUPPORTED];

/// The longest EXTRA-TEXT of [`EDES`].
const MAX_EDE_TEXT_LEN: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < EDES.len() {
        if EDES[i].text.len() > max {
            max = EDES[i].text.len();
        }
        i += 1;
    }
    max
};

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

    /// RRSIG records at `owner` with the TTL of the RRset they cover.
    fn sigs(&mut self, owner: u16, ttl: u32, sigs: &[Box<[u8]>]) -> Result<u16, Full> {
        for sig in sigs {
            self.record(owner, super::rtype::RRSIG, super::class::IN, ttl, sig)?;
        }
        Ok(sigs.len() as u16) // one per signing key
    }

    /// A record of class IN whose owner is written in full (`name`, uncompressed wire).
    fn named_record(
        &mut self,
        name: &[u8],
        rtype: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<(), Full> {
        self.put(name)?;
        self.u16(rtype)?;
        self.u16(super::class::IN)?;
        self.u32(ttl)?;
        self.u16(rdata.len() as u16)?; // NSEC and RRSIG RDATA: well under 64 KiB
        self.put(rdata)
    }

    /// The NSEC records of a denial, each followed by its RRSIGs; the owner is written
    /// once, in full, and pointed to by the signatures (written again past the 16 KiB a
    /// pointer reaches).
    fn nsecs(&mut self, dnssec: &Signatures<'_>) -> Result<u16, Full> {
        let mut n = 0;
        let ttl = dnssec.nsec_ttl;
        for nsec in dnssec.nsec.iter().flatten() {
            let at = self.pos;
            self.named_record(&nsec.owner, super::rtype::NSEC, ttl, &nsec.rdata)?;
            for sig in nsec.sigs.iter() {
                match u16::try_from(at).ok().filter(|&at| at < 0x4000) {
                    Some(at) => {
                        self.record(0xc000 | at, super::rtype::RRSIG, super::class::IN, ttl, sig)?
                    }
                    None => self.named_record(&nsec.owner, super::rtype::RRSIG, ttl, sig)?,
                }
            }
            n += 1 + nsec.sigs.len() as u16; // one signature per key
        }
        Ok(n)
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
                addresses,
            } => {
                let mut n = 0;
                for &i in picks.as_slice() {
                    let Some(m) = addresses.get(i as usize) else {
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

/// The TTL of a section's RRset (0 when empty).
fn ttl_of(records: &Records<'_>) -> u32 {
    match records {
        Records::Empty => 0,
        Records::Set(set) => set.first().map_or(0, |r| r.ttl),
        Records::Txt { ttl, .. } | Records::Pool { ttl, .. } => *ttl,
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
    header: &Header<'_>,
    question: Option<&Question<'_>>,
    answer: &Answer<'_>,
    edns: Option<&EdnsReply<'_>>,
) -> usize {
    let limit = limit.min(buf.len());
    // The answer's EDE goes into the OPT unless the caller set one; the room kept for the
    // OPT counts it.
    let edns = edns.map(|e| EdnsReply {
        ede: e.ede.or(answer.ede),
        ..*e
    });
    let edns = edns.as_ref();
    // What follows the records: the OPT, then the TSIG (RFC 8945 §5.2: the last record).
    let tail_len = opt_len(edns) + header.tsig.as_ref().map_or(0, tsig_len);
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
        // NSID longer than the configuration accepts could do that: module doc).
        let before = w.pos;
        let fits = w.put(q.qname).is_ok() && w.u16(q.qtype).is_ok() && w.u16(q.qclass).is_ok();
        if fits && w.pos + tail_len <= w.limit {
            qdcount = 1;
        } else {
            w.pos = before;
        }
    }
    let after_question = w.pos;
    let full_limit = w.limit;
    w.limit = w.limit.saturating_sub(tail_len);
    let answer_owner = 0xc000 | 12u16;
    let authority_owner = 0xc000 | (12 + answer.origin_offset) as u16;
    let sections = if qdcount == 1 {
        (|| {
            let d = &answer.dnssec;
            let an = match d.cname {
                None => {
                    w.records(answer_owner, answer.class, &answer.answer)?
                        + w.sigs(answer_owner, ttl_of(&answer.answer), d.answer)?
                }
                Some(cname) => {
                    // The CNAME at the qname, then the records at its target, which they
                    // point to inside the CNAME's RDATA.
                    w.record(
                        answer_owner,
                        super::rtype::CNAME,
                        answer.class,
                        cname.rr.ttl,
                        &[],
                    )?;
                    let target = w.pos;
                    w.put(&cname.rr.rdata)?;
                    w.set_u16(target - 2, cname.rr.rdata.len() as u16); // a name: <= 255
                    let signatures = w.sigs(answer_owner, cname.rr.ttl, &cname.sigs)?;
                    let owner = 0xc000 | target as u16; // within the first 512 bytes
                    1 + signatures
                        + w.records(owner, answer.class, &answer.answer)?
                        + w.sigs(owner, ttl_of(&answer.answer), d.answer)?
                }
            };
            let ns = w.records(authority_owner, super::class::IN, &answer.authority)?
                + w.sigs(authority_owner, ttl_of(&answer.authority), d.authority)?
                + w.nsecs(d)?;
            Ok::<_, Full>((an, ns))
        })()
    } else if answer.answer.is_empty() && answer.authority.is_empty() {
        Ok((0, 0))
    } else {
        // The owners point into the question: without it no record can be written.
        Err(Full)
    };
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
        let opt_start = w.pos;
        if write_opt(&mut w, e, answer.rcode).is_ok() {
            arcount = 1;
        } else {
            // It does not fit even after the header alone: the question was dropped to
            // make room, and with it every record. Leave the OPT out whole and let the
            // client retry over TCP.
            w.pos = opt_start;
            flags |= 0x0200; // TC
        }
    }
    if let Some(t) = &header.tsig {
        let tsig_start = w.pos;
        if write_tsig(&mut w, t).is_ok() {
            arcount += 1;
        } else {
            // A key and algorithm name near 255 bytes each, over UDP: TC, retry over TCP.
            w.pos = tsig_start;
            flags |= 0x0200; // TC
        }
    }
    w.set_u16(2, flags);
    w.set_u16(4, qdcount);
    w.set_u16(6, ancount);
    w.set_u16(8, nscount);
    w.set_u16(10, arcount);
    w.pos
}

/// Size of the unsigned BADKEY TSIG record we send: the key name uncompressed, type, class,
/// TTL and length, then the algorithm name and 16 bytes of fixed fields and an empty MAC.
fn tsig_len(t: &Tsig<'_>) -> usize {
    let mut key = 0;
    // parse checked the name; a malformed one counts as 0 and then fails to write.
    let _ = walk_name(t.message, t.key_name.into(), |label| {
        key += label.len();
        Ok::<_, Full>(())
    });
    key + 10 + t.algorithm().len() + 16
}

/// RFC 8945 §5.3.2: "When a server detects an error relating to the key or MAC in the
/// incoming request, the server SHOULD send back an unsigned error message (MAC size == 0
/// and empty MAC)." Key name, algorithm, time signed, fudge and original id are the
/// request's, as NSD and Knot send them; error BADKEY (§5.2.1); no other data.
fn write_tsig(w: &mut Writer<'_>, t: &Tsig<'_>) -> Result<(), Full> {
    walk_name(t.message, t.key_name.into(), |label| w.put(label))?.ok_or(Full)?;
    w.u16(super::rtype::TSIG)?;
    w.u16(super::class::ANY)?;
    w.u32(0)?; // TTL
    let algorithm = t.algorithm();
    w.u16((algorithm.len() + 16) as u16)?; // a name of at most 255 bytes, and 16
    w.put(algorithm)?;
    let time_signed = t.time_signed();
    w.u16((time_signed >> 32) as u16)?;
    w.u32(time_signed as u32)?;
    w.u16(t.fudge())?;
    w.u16(0)?; // MAC size
    w.u16(t.original_id())?;
    w.u16(Tsig::BADKEY)?;
    w.u16(0) // other len
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
        w.u16(nsid.len() as u16)?; // config checks <= MAX_NSID_LEN
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

#[cfg(test)]
mod tests {
    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::opt::EdnsCode;
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

    use super::*;
    use crate::wire::{class, rtype};

    /// The longest name there is: 255 bytes on the wire.
    fn longest_name() -> Vec<u8> {
        let mut name = Vec::new();
        for len in [63u8, 63, 63, 61] {
            name.push(len);
            name.extend(std::iter::repeat_n(b'a', len.into()));
        }
        name.push(0);
        assert_eq!(name.len(), MAX_NAME_LEN);
        name
    }

    /// An OPT asking for every option at its largest: ECS for an IPv6 /128, a cookie,
    /// keepalive (TCP), an NSID of `nsid` bytes; the EDE comes from the answer.
    fn every_option(nsid: &[u8]) -> EdnsReply<'_> {
        let subnet = ClientSubnet {
            family: 2,
            source_prefix: 128,
            address: "2001:db8::1".parse().unwrap(),
        };
        EdnsReply {
            udp_payload: 1232,
            dnssec_ok: true,
            ecs: Some((subnet, 0)),
            nsid: Some(nsid),
            cookie: Some([7; cookie::REPLY_LEN]),
            keepalive: Some(1200),
            ede: None,
        }
    }

    /// Builds the answer to an A query for the longest name, with two A records and the
    /// longest EDE, into a 512-byte buffer.
    fn build_longest(edns: &EdnsReply<'_>) -> Vec<u8> {
        let qname = longest_name();
        let question = Question {
            qname: &qname,
            qtype: rtype::A,
            qclass: class::IN,
        };
        let header = Header {
            id: 0x1234,
            opcode: 0,
            rd: false,
            cd: false,
            tsig: None,
        };
        let records = [192, 193].map(|last| Rr {
            rtype: rtype::A,
            ttl: 150,
            rdata: Box::new([192, 0, 2, last]),
        });
        let answer = Answer {
            authoritative: true,
            answer: Records::Set(&records),
            ede: Some(Ede::NOT_SUPPORTED),
            ..Answer::error(Rcode::NOERROR)
        };
        let mut buf = [0u8; 512];
        let n = build(&mut buf, 512, &header, Some(&question), &answer, Some(edns));
        buf[..n].to_vec()
    }

    /// Parses a reply as a client would; every byte must belong to a counted section.
    fn parse_whole(reply: &[u8]) -> Message {
        let mut decoder = BinDecoder::new(reply);
        let m = Message::read(&mut decoder).unwrap_or_else(|e| panic!("{e}: {reply:?}"));
        assert!(
            decoder.is_empty(),
            "{} bytes after the counted sections of {reply:?}",
            decoder.len()
        );
        m
    }

    #[test]
    fn max_nsid_len_is_what_512_bytes_leave_beside_every_option() {
        assert_eq!(MAX_NSID_LEN, 142);
        let nsid = [b'n'; MAX_NSID_LEN];
        let every = EdnsReply {
            ede: Some(Ede::NOT_SUPPORTED),
            ..every_option(&nsid)
        };
        assert_eq!(12 + MAX_NAME_LEN + 4 + opt_len(Some(&every)), 512);
        assert!(EDES.iter().all(|e| e.text.len() <= MAX_EDE_TEXT_LEN));
        assert_eq!(Ede::NOT_SUPPORTED.text.len(), MAX_EDE_TEXT_LEN);
    }

    #[test]
    fn every_option_fits_512_bytes_beside_the_longest_question() {
        let nsid = [b'n'; MAX_NSID_LEN];
        let reply = build_longest(&every_option(&nsid));
        assert_eq!(reply.len(), 512);
        let m = parse_whole(&reply);
        // No room is left for the records: truncated, the OPT whole.
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty() && m.authorities.is_empty());
        assert_eq!(m.queries.len(), 1);
        assert_eq!(&reply[12..12 + MAX_NAME_LEN], &longest_name()[..]);
        let options = m.edns.expect("OPT").options().clone();
        for code in [
            EdnsCode::NSID,
            EdnsCode::Subnet,
            EdnsCode::Cookie,
            EdnsCode::Keepalive,
            EdnsCode::Unknown(option::EDE),
        ] {
            assert!(options.get(code).is_some(), "{code:?} missing");
        }
    }

    /// Issue "The fleet must agree and the shares must hold at the edges": with the
    /// 512-byte NSID the configuration used to accept, the reply was 27 bytes, all counts
    /// 0, then 15 bytes of a half-written OPT; with 143 bytes, the room kept for the OPT
    /// missed the answer's EDE and the OPT was cut off at byte 512.
    #[test]
    fn an_opt_that_does_not_fit_leaves_no_bytes_behind() {
        for len in [MAX_NSID_LEN + 1, 300, 480, 500, 512] {
            let nsid = vec![b'n'; len];
            let reply = build_longest(&every_option(&nsid));
            assert!(reply.len() <= 512, "NSID {len}: {} bytes", reply.len());
            let m = parse_whole(&reply);
            assert!(m.answers.is_empty(), "NSID {len}");
            assert!(
                m.edns.is_some() || m.metadata.truncation,
                "NSID {len}: neither the OPT nor TC"
            );
        }
        let m = parse_whole(&build_longest(&every_option(&[b'n'; 512])));
        assert!(m.edns.is_none() && m.additionals.is_empty());
        assert!(m.metadata.truncation);
    }

    /// A query for the longest name with a TSIG owned by `key` (uncompressed) and the
    /// algorithm `algorithm`; returns the message and the TSIG as parse reads it.
    fn signed_query(key: &[u8], algorithm: &[u8]) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend(longest_name());
        q.extend([0, 1, 0, 1]);
        q.extend_from_slice(key);
        q.extend([0, 250, 0, 255, 0, 0, 0, 0]);
        q.extend(((algorithm.len() + 16) as u16).to_be_bytes());
        q.extend_from_slice(algorithm);
        q.extend([
            0, 1, 0x65, 0x53, 0xf1, 0, 1, 44, 0, 0, 0xbe, 0xef, 0, 0, 0, 0,
        ]);
        q
    }

    fn build_refusal(query: &[u8], limit: usize, edns: Option<&EdnsReply<'_>>) -> Vec<u8> {
        let Err(super::super::ParseError::Reply {
            header,
            question,
            rcode,
            ..
        }) = super::super::parse(query)
        else {
            panic!("not refused");
        };
        assert_eq!(rcode, Rcode::NOTAUTH);
        let mut buf = [0u8; 2048];
        let n = build(
            &mut buf,
            limit,
            &header,
            question.as_ref(),
            &Answer::error(rcode),
            edns,
        );
        buf[..n].to_vec()
    }

    #[test]
    fn test_8945_5_3_2_badkey_tsig_is_unsigned_and_last() {
        let q = signed_query(b"\x03key\x00", b"\x0bhmac-sha256\x00");
        let edns = EdnsReply {
            udp_payload: 1232,
            ..EdnsReply::default()
        };
        let reply = build_refusal(&q, 1232, Some(&edns));
        let m = parse_whole(&reply);
        assert_eq!(m.metadata.response_code.low(), 9);
        assert!(m.edns.is_some());
        let expected_tail = [
            &b"\x03key\x00"[..],
            &[0, 250, 0, 255, 0, 0, 0, 0, 0, 29],
            b"\x0bhmac-sha256\x00",
            &[0, 1, 0x65, 0x53, 0xf1, 0], // time signed, as sent
            &[1, 44],                     // fudge, as sent
            &[0, 0],                      // MAC size 0, no MAC
            &[0xbe, 0xef],                // original id
            &[0, 17],                     // BADKEY
            &[0, 0],                      // other len
        ]
        .concat();
        assert!(reply.ends_with(&expected_tail), "{reply:02x?}");
        assert_eq!(u16::from_be_bytes([reply[10], reply[11]]), 2, "OPT, TSIG");
    }

    #[test]
    fn a_tsig_that_does_not_fit_512_bytes_sets_tc_and_leaves_no_bytes() {
        // A 255-byte key name and a 255-byte algorithm beside the longest question: 807
        // bytes over TCP, too long for 512.
        let mut key = Vec::new();
        for len in [63u8, 63, 63, 61] {
            key.push(len);
            key.extend(std::iter::repeat_n(b'k', len.into()));
        }
        key.push(0);
        let algorithm = longest_name();
        let q = signed_query(&key, &algorithm);
        let whole = build_refusal(&q, 65535, None);
        assert_eq!(whole.len(), 12 + 259 + 255 + 10 + 255 + 16);
        assert_eq!(parse_whole(&whole).additionals.len(), 1);
        let cut = build_refusal(&q, 512, None);
        let m = parse_whole(&cut);
        assert!(m.metadata.truncation);
        assert!(m.additionals.is_empty() && m.edns.is_none());
        assert_eq!(m.metadata.response_code.low(), 9);
    }
}
