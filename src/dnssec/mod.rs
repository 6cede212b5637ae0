//! DNSSEC (DESIGN §4.1): zone keys in BIND's key-file format ([`keyfile`], [`key`]), and
//! the design by which randomised, weighted pool answers are signed without losing their
//! shares.
//!
//! # Where it happens
//!
//! Keys are read with the zone configuration ([`key`], [`keyfile`]); every RRset, NSEC
//! record and pool answer is signed when a table is built ([`zone`], [`sign`]), on a few
//! threads; a DO=1 query picks what was made ([`answer`]): no signing and no allocation per
//! query.
//!
//! # Why a signed pool answer keeps its shares
//!
//! An RRSIG covers one exact RRset: owner, type, TTL and every record. A pool answer is 4
//! records drawn per query; it cannot be signed per query (12 µs of CPU for an ECDSA P-256
//! signature on this project's 2-core machine, more than the whole query), so the answers
//! are drawn and signed when the table is built, and a DO=1 query picks one of them.
//!
//! The unsigned pick ([`crate::select`]) draws an ordering o and a point u in [0, unit)
//! and takes the members whose segments hold u, u + unit, …: member i is taken for a
//! total length of u equal to its segment, π_i·unit, in every ordering. As u sweeps
//! [0, unit) the answer changes only where one of the k points crosses a segment end,
//! that is at the ends taken modulo the unit: at most n cut points, so at most n distinct
//! answers per ordering, answer j holding an interval of length ℓ_j.
//!
//! * **Exact variants** ([`crate::select::Sampler::variants_exact`]): sign every distinct
//!   answer of an ordering with weight ℓ_j, and let a DO=1 query draw u as the unsigned
//!   path does and take the answer whose interval holds u. That is the same answer the
//!   unsigned pick gives at the same point (a test checks it point by point), so member i
//!   is in answers of total weight Σ_{j ∋ i} ℓ_j = π_i·unit: its share is exactly what it
//!   is without DO, not on average but in every table. Cost: n signatures per ordering and
//!   owner name.
//! * **Sampled variants** ([`crate::select::Sampler::variants_sampled`]), for sets too
//!   large to sign every answer: V answers at the points (i + U)/V of the unit, U uniform
//!   in [0, 1), each of weight 1/V. Member i's segment of length π_i holds ⌊π_i·V⌋ or
//!   ⌈π_i·V⌉ of the points, and E_U(hits) = π_i·V exactly (a segment of length π_i on a
//!   circle of circumference 1 holds V·π_i of V equally spaced points on average over a
//!   uniform shift). So each table gives every member its share to within 1/V, and
//!   drawing U (and the ordering) afresh at every table build and rotation makes the
//!   shares exact over time, as the numbered split's rotation already does.
//!
//! The choice between the two is a signature budget per build: exact variants wherever
//! they fit (every small set, which is where one answer more or less would show), sampled
//! variants with V as large as the budget allows for the rest.
//!
//! # Why signed answers go through a CNAME to their source
//!
//! A signature also covers the owner name, and many names draw from the same set: the
//! apex, `0`…`3` and every `<n>.<vendor>` answer from the client's sources, and in plan
//! mode a country name answers like the apex does for a client there. Signing every
//! (name, source, variant) is far over budget: on the bundled configuration with a
//! 100,000-server feed, about 55 geo names × 180 sources × 2 families × V variants,
//! 20,000·V signatures (12 µs each) before the country and continent names. So a DO=1
//! query for a pool name is answered with a CNAME from the name to a name of its drawn
//! source and number (one signed CNAME per name and source, whatever the family or the
//! variant), followed by that name's signed A or AAAA variant: the variants are signed
//! once per source, number and family, about 180 × 5 × 2 × V, and a query to the source
//! name itself draws from that source. The source is drawn exactly as without DO (the
//! plan's alias table or the zones chain), and the variant as above, so the shares are
//! those of the unsigned path; resolvers follow in-zone CNAMEs in the same answer.
//!
//! Two exceptions: the apex cannot be a CNAME (it holds the SOA and NS), so its answers
//! are the same variants signed once more with the apex as owner; and a source of fewer
//! than k servers is filled from the whole pool as the unsigned path fills it, a uniformly
//! random `need` of the pool answer's other members, so each of those combinations is a
//! variant of its own, sharing the pool answer's weight equally.
//!
//! # Denial: NSEC
//!
//! Every name of the zone is known when the table is built and none is secret (the pool's
//! country, continent and vendor names are documented), so a precomputed, pre-signed NSEC
//! chain proves NXDOMAIN and NODATA with no work per query. NSEC3 would hide nothing worth
//! hiding and costs a hash per negative query; compact denial (RFC 9824) needs a signature
//! per query.

pub mod answer;
pub mod key;
pub mod keyfile;
pub mod sign;
pub mod zone;

use std::path::Path;

/// The DS records (SHA-256) of the zone's keys in `dir`, one per line in zone-file syntax:
/// for every key-signing key, or for every key when there is none (combined keys).
pub fn ds_text(dir: &Path, zone: &str) -> Result<String, String> {
    let keys = key::load_dir(dir, zone)?;
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    let wire = crate::name::from_text(&zone).map_err(|e| e.to_string())?;
    let any_ksk = keys.iter().any(key::Key::is_ksk);
    let mut out = String::new();
    for k in keys.iter().filter(|k| k.is_ksk() || !any_ksk) {
        let rdata = k.ds_rdata(&wire);
        let digest: String = rdata[4..].iter().map(|b| format!("{b:02X}")).collect();
        out.push_str(&format!(
            "{zone}. IN DS {} {} 2 {digest}\n",
            k.tag, k.algorithm
        ));
    }
    Ok(out)
}
