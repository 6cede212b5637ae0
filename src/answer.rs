//! The answer core: a question, who asked, and the table in; an [`Answer`] out. No bytes,
//! no sockets: the same function serves UDP and TCP and is called directly by tests.
//!
//! Names and their answers are in DESIGN §3; the duties of an authoritative server
//! (AA, NXDOMAIN vs NODATA with the SOA, REFUSED outside the zone) in RFC 1034 §4.3.2 and
//! RFC 2308 §2.

use std::net::IpAddr;

use rand::Rng;

use crate::config::AaaaPolicy;
use crate::geo;
use crate::select::Picks;
use crate::table::{Address, DebugName, Family, Node, PoolName, Region, Rr, Table, Target, ZoneId};
use crate::wire::{ClientSubnet, Question, Rcode, class, rtype};

/// Who asked: the packet's source and the client subnet it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Source address of the packet (the resolver).
    pub source: IpAddr,
    /// EDNS Client Subnet, when the query had a valid one.
    pub ecs: Option<ClientSubnet>,
    /// The DO bit: the client wants DNSSEC records (RFC 4035 §3.2.1).
    pub dnssec_ok: bool,
}

impl Client {
    /// The address the client is placed by, and whether it came from ECS (DESIGN §4,
    /// RFC 7871 §7.1.2): a public ECS address with a non-zero source prefix, otherwise the
    /// packet source.
    pub fn placed_address(&self) -> (IpAddr, bool) {
        match self.ecs {
            Some(e) if e.source_prefix > 0 && geo::is_public(e.address) => (e.address, true),
            _ => (self.source, false),
        }
    }
}

/// The records of one section.
#[derive(Debug, Clone)]
pub enum Records<'t> {
    /// Nothing.
    Empty,
    /// A static RRset (owner: the qname in the answer section, the origin in authority).
    Set(&'t [Rr]),
    /// One TXT record made for this query (debugging names). Boxed: the debugging names
    /// are rare, and an inline 512-byte buffer made every answer a kilobyte to move around
    /// (callgrind: +107 instructions per query in memcpy).
    Txt {
        /// TTL.
        ttl: u32,
        /// The rdata.
        data: Box<TxtData>,
    },
    /// Servers picked from the pool, as A or AAAA records at the qname.
    Pool {
        /// A or AAAA.
        rtype: u16,
        /// TTL of each record.
        ttl: u32,
        /// Picked member indices.
        picks: Picks,
        /// The addresses of the members they index.
        addresses: &'t [Address],
    },
}

impl Records<'_> {
    /// Number of records.
    pub fn len(&self) -> usize {
        match self {
            Records::Empty => 0,
            Records::Set(s) => s.len(),
            Records::Txt { .. } => 1,
            Records::Pool { picks, .. } => picks.as_slice().len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A transport-free answer.
#[derive(Debug, Clone)]
pub struct Answer<'t> {
    /// Response code.
    pub rcode: Rcode,
    /// AA flag: set for everything answered from our zone.
    pub authoritative: bool,
    /// Answer section (owner: the qname).
    pub answer: Records<'t>,
    /// Authority section (owner: the origin).
    pub authority: Records<'t>,
    /// Where the origin starts inside the qname, for compression pointers.
    pub origin_offset: usize,
    /// ECS scope prefix: the bits of the client address the answer depends on.
    pub ecs_scope: u8,
    /// The pool zone the servers came from, for pool answers.
    pub zone: Option<ZoneId>,
    /// For pool answers, the country whose clients the answer is for, by country index:
    /// where [`locate`] placed the client at the apex, numbered and vendor names; the named
    /// country at a country name (its answers serve that country's clients). None for
    /// continent names, unplaced clients and every other answer. The demand counters
    /// (`pooldns_client_queries_total`) count by it.
    pub client_country: Option<u16>,
    /// Class of the answer records (IN, or CH for identity names).
    pub class: u16,
    /// Extended DNS Error to attach when the query had EDNS (RFC 8914).
    pub ede: Option<Ede>,
    /// DNSSEC records, for a DO=1 query to a signed zone.
    pub dnssec: Signatures<'t>,
    /// The zone's name the question landed on, if it exists (for the DNSSEC records, so
    /// that the name is looked up once).
    pub node: Option<&'t Node>,
}

/// The DNSSEC records of an answer: RRSIGs after each section's RRset, and the NSEC
/// records (with theirs) that deny a name or a type.
#[derive(Debug, Clone, Default)]
pub struct Signatures<'t> {
    /// RRSIGs of the answer section's RRset (owner: the qname), with its TTL.
    pub answer: &'t [Box<[u8]>],
    /// RRSIGs of the authority section's RRset (the SOA of a negative answer).
    pub authority: &'t [Box<[u8]>],
    /// NSEC records in the authority section: up to two, each with its RRSIGs.
    pub nsec: [Option<&'t crate::dnssec::zone::Nsec>; 2],
    /// The NSEC records' TTL.
    pub nsec_ttl: u32,
    /// A pool answer's CNAME from the qname to its source name: the answer section is the
    /// CNAME and its RRSIGs, then the pool records and `answer`'s RRSIGs at the source
    /// name.
    pub cname: Option<&'t crate::dnssec::zone::Cname>,
}
/// An Extended DNS Error (RFC 8914 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ede {
    /// INFO-CODE.
    pub code: u16,
    /// EXTRA-TEXT.
    pub text: &'static str,
}

impl Ede {
    /// 18: the request is not allowed (zone transfers, identity names turned off).
    pub const PROHIBITED: Ede = Ede {
        code: 18,
        text: "prohibited",
    };
    /// 20: the name is not in a zone we serve.
    pub const NOT_AUTHORITATIVE: Ede = Ede {
        code: 20,
        text: "not authoritative",
    };
    /// 21: the opcode is not supported.
    pub const NOT_SUPPORTED: Ede = Ede {
        code: 21,
        text: "opcode not supported",
    };
}

impl<'t> Answer<'t> {
    /// An answer with only an rcode (REFUSED and the like; AA clear).
    pub fn error(rcode: Rcode) -> Answer<'t> {
        Answer {
            rcode,
            authoritative: false,
            answer: Records::Empty,
            authority: Records::Empty,
            origin_offset: 0,
            ecs_scope: 0,
            zone: None,
            client_country: None,
            class: class::IN,
            ede: None,
            dnssec: Signatures::default(),
            node: None,
        }
    }

    /// REFUSED with an Extended DNS Error.
    pub fn refused(ede: Ede) -> Answer<'t> {
        Answer {
            ede: Some(ede),
            ..Answer::error(Rcode::REFUSED)
        }
    }
}

/// TTL of the "not public" answer at `_status`: long enough that resolvers keep it.
pub const STATUS_PRIVATE_TTL: u32 = 3600;

/// Answers a question from the table; with the DO bit and a signed zone, with its DNSSEC
/// records ([`crate::dnssec::answer`]).
pub fn answer<'t, R: Rng + ?Sized>(
    table: &'t Table,
    question: &Question<'_>,
    client: &Client,
    rng: &mut R,
) -> Answer<'t> {
    let a = answer_unsigned(table, question, client, rng);
    match (client.dnssec_ok, table.signed.as_deref()) {
        (true, Some(zone)) if a.class == class::IN && a.authoritative => {
            crate::dnssec::answer::sign(table, zone, question, a, rng)
        }
        _ => a,
    }
}

fn answer_unsigned<'t, R: Rng + ?Sized>(
    table: &'t Table,
    question: &Question<'_>,
    client: &Client,
    rng: &mut R,
) -> Answer<'t> {
    if question.qclass == class::CH {
        return chaos(table, question);
    }
    if question.qclass != class::IN {
        return Answer::refused(Ede::NOT_AUTHORITATIVE);
    }
    let mut key_buf = [0u8; crate::name::MAX_NAME_LEN];
    let Some((key, origin_offset)) =
        relative_key(question.qname, &table.config.origin, &mut key_buf)
    else {
        return Answer::refused(Ede::NOT_AUTHORITATIVE);
    };
    // RFC 5936 §2.2 / RFC 1995: pooldns is not a primary; transfers are refused.
    if matches!(question.qtype, rtype::AXFR | rtype::IXFR) {
        return Answer::refused(Ede::PROHIBITED);
    }
    let mut a = Answer {
        rcode: Rcode::NOERROR,
        authoritative: true,
        answer: Records::Empty,
        authority: Records::Empty,
        origin_offset,
        ecs_scope: 0,
        zone: None,
        client_country: None,
        class: class::IN,
        ede: None,
        dnssec: Signatures::default(),
        node: None,
    };
    let Some(node) = table.names.get(key) else {
        a.rcode = Rcode::NXDOMAIN;
        a.authority = Records::Set(std::slice::from_ref(&table.soa_negative));
        return a;
    };
    a.node = Some(node);
    let apex = key.is_empty();
    let qtype = question.qtype;
    if let Some(debug) = node.debug {
        // `_status` from afar, when it is not public: a cacheable NOERROR that says so.
        // REFUSED made resolvers answer SERVFAIL and retry every server of the zone (one
        // question cost 30 queries through Unbound).
        let private = debug == DebugName::Status
            && !table.config.identity.status_public
            && !client.source.is_loopback();
        if private && matches!(qtype, rtype::TXT | rtype::ANY) {
            let mut text = TxtData::new();
            text.string(format_args!(
                "not public: _status is answered to loopback askers only"
            ));
            a.answer = Records::Txt {
                ttl: STATUS_PRIVATE_TTL,
                data: Box::new(text),
            };
        } else if private {
            a.authority = Records::Set(std::slice::from_ref(&table.soa_negative));
        } else if matches!(qtype, rtype::TXT | rtype::ANY) {
            if debug == DebugName::Country {
                // The text names the client's country: it depends on the address.
                a.ecs_scope = locate(table, client).1;
            }
            a.answer = Records::Txt {
                ttl: 1,
                data: Box::new(match debug {
                    DebugName::Country => country_txt(table, client),
                    DebugName::Status => status_txt(table),
                }),
            };
        } else {
            a.authority = Records::Set(std::slice::from_ref(&table.soa_negative));
        }
        return a;
    }

    if let Some(cname) = node.rrset(rtype::CNAME) {
        // RFC 1034 §4.3.2 step 3a: the CNAME answers every type at its name.
        a.answer = Records::Set(cname);
        return a;
    }
    let wanted = match qtype {
        // RFC 8482 §4.2: answer ANY with one RRset, never the whole node.
        rtype::ANY if node.pool.is_some() => rtype::A,
        rtype::ANY if apex => rtype::SOA,
        rtype::ANY => node
            .rrsets
            .first()
            .and_then(|s| s.first())
            .map_or(rtype::ANY, |r| r.rtype),
        other => other,
    };
    // The keys of a signed zone are zone data, with or without the DO bit.
    let keys = table.signed.as_deref().and_then(|z| z.keys(wanted));
    match wanted {
        _ if apex && keys.is_some() => a.answer = Records::Set(keys.unwrap_or_default()),
        rtype::SOA if apex => a.answer = Records::Set(std::slice::from_ref(&table.soa)),
        rtype::NS if apex => a.answer = Records::Set(&table.ns),
        rtype::A | rtype::AAAA if node.pool.is_some() => {
            let pool = node.pool.expect("checked is_some on this arm");
            pool_answer(table, pool, wanted, client, rng, &mut a);
        }
        other => {
            if let Some(set) = node.rrset(other) {
                a.answer = Records::Set(set);
            }
        }
    }
    if a.answer.is_empty() {
        // NODATA (RFC 2308 §2.2): NOERROR, no answers, the SOA in authority.
        a.authority = Records::Set(std::slice::from_ref(&table.soa_negative));
    }
    a
}

fn pool_answer<'t, R: Rng + ?Sized>(
    table: &'t Table,
    pool: PoolName,
    qtype: u16,
    client: &Client,
    rng: &mut R,
    a: &mut Answer<'t>,
) {
    let family = if qtype == rtype::AAAA {
        if let AaaaPolicy::OnlyNumbered(n) = table.config.aaaa {
            if pool.number != Some(n) {
                return;
            }
        }
        Family::V6
    } else {
        Family::V4
    };
    let region = if pool.target == Target::Geo {
        let (region, scope) = locate(table, client);
        a.ecs_scope = scope;
        a.client_country = region.country;
        region
    } else {
        if let Target::Country(c) = pool.target {
            a.client_country = Some(c);
        }
        Region::default()
    };
    if let Some((zone, picks)) = table.pick(pool, family, region, rng) {
        a.zone = Some(zone);
        a.answer = Records::Pool {
            rtype: qtype,
            ttl: table.config.answer_ttl,
            picks,
            addresses: &table.addresses,
        };
    }
}

/// Identity names in class CHAOS (the BIND convention, RFC 4892 §2): TXT at
/// `version.bind`, `version.server`, `hostname.bind`, `id.server`. A name that is turned off
/// is REFUSED (prohibited); any other CHAOS name is REFUSED (not ours).
fn chaos<'t>(table: &'t Table, question: &Question<'_>) -> Answer<'t> {
    let mut lower = [0u8; crate::name::MAX_NAME_LEN];
    let Some(name) = lower.get_mut(..question.qname.len()) else {
        return Answer::refused(Ede::NOT_AUTHORITATIVE);
    };
    for (d, s) in name.iter_mut().zip(question.qname) {
        *d = s.to_ascii_lowercase();
    }
    let record = match &*name {
        b"\x07version\x04bind\x00" | b"\x07version\x06server\x00" => &table.identity.version,
        b"\x08hostname\x04bind\x00" | b"\x02id\x06server\x00" => &table.identity.hostname,
        _ => return Answer::refused(Ede::NOT_AUTHORITATIVE),
    };
    let Some(record) = record else {
        return Answer::refused(Ede::PROHIBITED);
    };
    let mut a = Answer {
        authoritative: true,
        class: class::CH,
        ..Answer::error(Rcode::NOERROR)
    };
    if matches!(question.qtype, rtype::TXT | rtype::ANY) {
        a.answer = Records::Set(std::slice::from_ref(record));
    }
    a
}

/// TXT rdata built per query in a fixed buffer: no allocation.
#[derive(Clone, Copy)]
pub struct TxtData {
    buf: [u8; 512],
    len: usize,
}

impl std::fmt::Debug for TxtData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TxtData({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl TxtData {
    fn new() -> TxtData {
        TxtData {
            buf: [0; 512],
            len: 0,
        }
    }

    /// The rdata: a run of character-strings.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends one character-string; text that does not fit is cut.
    fn string(&mut self, args: std::fmt::Arguments<'_>) {
        struct Cursor<'b> {
            out: &'b mut [u8],
            len: usize,
        }
        impl std::fmt::Write for Cursor<'_> {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                let room = self.out.len() - self.len;
                let n = s.len().min(room);
                self.out[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
                self.len += n;
                Ok(())
            }
        }
        if self.len >= self.buf.len() {
            return;
        }
        let start = self.len;
        let end = (start + 1 + 255).min(self.buf.len());
        let mut cursor = Cursor {
            out: &mut self.buf[start + 1..end],
            len: 0,
        };
        let _ = std::fmt::write(&mut cursor, args);
        let written = cursor.len;
        self.buf[start] = written as u8; // at most 255
        self.len = start + 1 + written;
    }
}

/// `_country`: who asked, from where, what we made of it, and which zone answers it.
fn country_txt(table: &Table, client: &Client) -> TxtData {
    let mut t = TxtData::new();
    t.string(format_args!("resolver {}", client.source));
    match client.ecs {
        Some(e) => t.string(format_args!("ecs {}/{}", e.address, e.source_prefix)),
        None => t.string(format_args!("ecs none")),
    }
    let (address, from_ecs) = client.placed_address();
    t.string(format_args!(
        "address {address} ({})",
        if from_ecs {
            "from ecs"
        } else {
            "packet source"
        }
    ));
    let (region, scope) = locate(table, client);
    match region.country {
        Some(c) => t.string(format_args!(
            "country {}",
            table.zone_label(ZoneId::Country(c))
        )),
        None => t.string(format_args!("country unknown")),
    }
    match region.continent {
        Some(c) => t.string(format_args!("continent {c}")),
        None => t.string(format_args!("continent unknown")),
    }
    let chain = table.chain(Target::Geo, region);
    let zone = chain
        .zones()
        .find(|&z| !table.zone(z, Family::V4).all.is_empty())
        .map_or("none", |z| table.zone_label(z));
    t.string(format_args!("zone {zone}"));
    t.string(format_args!("scope {scope}"));
    t
}

/// `_status`: version, instance, uptime, serial and feed age.
fn status_txt(table: &Table) -> TxtData {
    let mut t = TxtData::new();
    let now = std::time::SystemTime::now();
    t.string(format_args!("version {}", env!("CARGO_PKG_VERSION")));
    t.string(format_args!(
        "instance {}",
        table.config.identity.hostname.as_deref().unwrap_or("-")
    ));
    t.string(format_args!("uptime {}", crate::uptime().as_secs()));
    t.string(format_args!("serial {}", table.serial));
    let age = now
        .duration_since(table.feed.loaded_at)
        .map_or(0, |d| d.as_secs());
    t.string(format_args!("feed-age {age}"));
    t
}

/// Where the client is, and the ECS scope prefix the answer must carry (DESIGN §4,
/// RFC 7871 §7.2.1). This is the one rule for the scope: the server and `pooldns explain`
/// both come through here.
///
/// * No ECS, or ECS with source prefix 0 (the resolver asked for an answer it may give to
///   every client, RFC 7871 §7.1.2): the packet source is placed and the scope is 0.
/// * A public ECS address: it is placed, and the scope is the width of the GeoIP network
///   that decided the region, counted in the option's own family: an IPv4-mapped subnet
///   (`::ffff:81.2.69.0/120`) gets the IPv4 width plus 96.
/// * An ECS address that cannot be placed (private, loopback, documentation, reserved):
///   the packet source is placed instead, and the scope is the source prefix length. The
///   answer then holds for that client subnet only. Scope 0 would tell the resolver the
///   answer holds for every client, and it would hand this resolver-located answer to
///   clients in other countries from its cache.
pub fn locate(table: &Table, client: &Client) -> (Region, u8) {
    let (address, from_ecs) = client.placed_address();
    // One lookup per query: private addresses are never looked up.
    let location = if geo::is_public(address) {
        table.geo.locate(address)
    } else {
        geo::Location::default()
    };
    let country = location.country_str().and_then(|c| table.country(c));
    let region = Region {
        country,
        continent: country.and_then(|c| table.continent_of(c)),
    };
    let scope = match client.ecs {
        Some(e) if from_ecs => match e.address {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
                location.prefix_len.saturating_add(96)
            }
            _ => location.prefix_len,
        },
        Some(e) => e.source_prefix,
        None => 0,
    };
    (region, scope)
}

/// Finds the origin at the end of `qname` (case-insensitively, on a label boundary) and
/// writes the lowercase labels before it into `buf`. Returns the key and the offset of the
/// origin in the qname; None when the name is not in the zone.
pub(crate) fn relative_key<'b>(
    qname: &[u8],
    origin: &[u8],
    buf: &'b mut [u8],
) -> Option<(&'b [u8], usize)> {
    let mut offset = 0;
    loop {
        let rest = qname.get(offset..)?;
        if rest.len() == origin.len() {
            if !rest.eq_ignore_ascii_case(origin) {
                return None;
            }
            let key = buf.get_mut(..offset)?;
            for (dst, src) in key.iter_mut().zip(&qname[..offset]) {
                *dst = src.to_ascii_lowercase();
            }
            return Some((key, offset));
        }
        let len = usize::from(*rest.first()?);
        if len == 0 || rest.len() < origin.len() {
            return None;
        }
        offset += len + 1;
    }
}

/// The node a question lands on, for the debugging surface.
pub fn node_of<'t>(table: &'t Table, qname: &[u8]) -> Option<&'t Node> {
    let mut buf = [0u8; crate::name::MAX_NAME_LEN];
    let (key, _) = relative_key(qname, &table.config.origin, &mut buf)?;
    table.names.get(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_origin_on_a_label_boundary() {
        let origin = b"\x04pool\x03ntp\x03org\x00";
        let mut buf = [0u8; 255];
        let (key, off) = relative_key(
            b"\x01\x30\x02DE\x04POOL\x03ntp\x03org\x00",
            origin,
            &mut buf,
        )
        .unwrap();
        assert_eq!((key, off), (&b"\x010\x02de"[..], 5));
        let (key, off) = relative_key(b"\x04pool\x03ntp\x03org\x00", origin, &mut buf).unwrap();
        assert_eq!((key, off), (&b""[..], 0));
        // "xpool.ntp.org" ends with the bytes of "pool.ntp.org" but not on a boundary.
        assert!(relative_key(b"\x05xpool\x03ntp\x03org\x00", origin, &mut buf).is_none());
        assert!(relative_key(b"\x03ntp\x03org\x00", origin, &mut buf).is_none());
        assert!(relative_key(b"\x00", origin, &mut buf).is_none());
        assert!(relative_key(b"\x04pool\x03ntp\x03com\x00", origin, &mut buf).is_none());
    }
}
