//! RRSIG records (RFC 4034 §3): the canonical form of an RRset and its signature by a
//! zone key. Build time only; the query path copies the bytes made here.

use std::cmp::Ordering;

use super::key::Key;
use crate::wire::rtype;

/// One RRset to sign, in wire form: owner in lowercase uncompressed wire form (root label
/// included), every RDATA already canonical (RFC 4034 §6.2: names uncompressed and
/// lowercase in the types that have them).
#[derive(Debug, Clone)]
pub struct RrSet<'a> {
    /// Owner name.
    pub owner: &'a [u8],
    /// Type.
    pub rtype: u16,
    /// Class (IN).
    pub class: u16,
    /// The TTL every record is served with (the RRSIG's original TTL).
    pub ttl: u32,
    /// The records' RDATA, any order, no duplicates needed.
    pub rdatas: Vec<&'a [u8]>,
}

/// The validity of a signature, in Unix seconds (serial number arithmetic makes the
/// 32-bit fields wrap in 2106; RFC 4034 §3.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Not before.
    pub inception: u64,
    /// Not after.
    pub expiration: u64,
}

/// The number of labels of an owner name for the RRSIG Labels field: root excluded, and a
/// leading wildcard label excluded (RFC 4034 §3.1.3).
pub fn labels(owner: &[u8]) -> u8 {
    let mut count = 0u8;
    let mut i = 0;
    let mut first = true;
    while let Some(&len) = owner.get(i) {
        if len == 0 {
            break;
        }
        let is_star = first && len == 1 && owner.get(i + 1) == Some(&b'*');
        if !is_star {
            count = count.saturating_add(1);
        }
        first = false;
        i += 1 + usize::from(len);
    }
    count
}

/// Canonical order of names (RFC 4034 §6.1): label by label from the root, each label
/// compared as lowercase octets, a shorter label first when it is a prefix of the other.
/// No allocation: the query path uses it to find the NSEC that covers a name.
pub fn canonical_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut oa, mut ob) = ([0u8; 128], [0u8; 128]);
    let (na, nb) = (label_offsets(a, &mut oa), label_offsets(b, &mut ob));
    for (&x, &y) in oa[..na].iter().rev().zip(ob[..nb].iter().rev()) {
        let (la, lb) = (label_at(a, x), label_at(b, y));
        match la
            .iter()
            .map(u8::to_ascii_lowercase)
            .cmp(lb.iter().map(u8::to_ascii_lowercase))
        {
            Ordering::Equal => {}
            other => return other,
        }
    }
    na.cmp(&nb)
}

/// The label at offset `at` of a wire name, without its length byte.
fn label_at(name: &[u8], at: u8) -> &[u8] {
    let at = usize::from(at);
    let len = usize::from(name[at]);
    name.get(at + 1..at + 1 + len).unwrap_or(&[])
}

/// Offsets of the non-root labels of a wire name, leftmost first, into `out`; returns how
/// many (a name of at most 255 bytes has at most 127 labels; a longer one is cut).
fn label_offsets(name: &[u8], out: &mut [u8; 128]) -> usize {
    let mut count = 0;
    let mut i = 0;
    while let Some(&len) = name.get(i) {
        if len == 0 || i + 1 + usize::from(len) > name.len() || count == out.len() || i > 255 {
            break;
        }
        out[count] = i as u8;
        count += 1;
        i += 1 + usize::from(len);
    }
    count
}

/// The RRSIG RDATA for `set` signed by `key` of the zone `signer` (lowercase wire name):
/// the fixed fields, the signer's name and the signature over them and the RRset in
/// canonical form (RFC 4034 §3.1.8.1).
pub fn rrsig_rdata(
    set: &RrSet<'_>,
    key: &Key,
    signer: &[u8],
    validity: Validity,
) -> Result<Vec<u8>, String> {
    let mut rdata = Vec::with_capacity(18 + signer.len() + 64);
    rdata.extend_from_slice(&set.rtype.to_be_bytes());
    rdata.push(key.algorithm);
    rdata.push(labels(set.owner));
    rdata.extend_from_slice(&set.ttl.to_be_bytes());
    // Serial number arithmetic: the low 32 bits.
    rdata.extend_from_slice(&(validity.expiration as u32).to_be_bytes());
    rdata.extend_from_slice(&(validity.inception as u32).to_be_bytes());
    rdata.extend_from_slice(&key.tag.to_be_bytes());
    rdata.extend_from_slice(signer);
    let mut data = rdata.clone();
    let mut rdatas = set.rdatas.clone();
    rdatas.sort_unstable();
    rdatas.dedup();
    for r in rdatas {
        data.extend_from_slice(set.owner);
        data.extend_from_slice(&set.rtype.to_be_bytes());
        data.extend_from_slice(&set.class.to_be_bytes());
        data.extend_from_slice(&set.ttl.to_be_bytes());
        let len = u16::try_from(r.len()).map_err(|_| "an RDATA over 65535 bytes".to_owned())?;
        data.extend_from_slice(&len.to_be_bytes());
        data.extend_from_slice(r);
    }
    rdata.extend_from_slice(&key.sign(&data)?);
    Ok(rdata)
}

/// The RRSIG RDATAs of `set` by each of `keys`: one signature per key, as a zone in a
/// rollover or with several algorithms carries.
pub fn rrsigs(
    set: &RrSet<'_>,
    keys: &[&Key],
    signer: &[u8],
    validity: Validity,
) -> Result<Box<[Box<[u8]>]>, String> {
    keys.iter()
        .map(|k| rrsig_rdata(set, k, signer, validity).map(Vec::into_boxed_slice))
        .collect()
}

/// The NSEC type bit maps field (RFC 4034 §4.1.2) of `types` (any order, duplicates
/// allowed).
pub fn type_bitmaps(types: &[u16]) -> Vec<u8> {
    let mut types = types.to_vec();
    types.sort_unstable();
    types.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < types.len() {
        let window = (types[i] >> 8) as u8;
        let mut bitmap = [0u8; 32];
        let mut used = 0;
        while i < types.len() && (types[i] >> 8) as u8 == window {
            let low = (types[i] & 0xff) as usize;
            bitmap[low / 8] |= 0x80 >> (low % 8);
            used = used.max(low / 8 + 1);
            i += 1;
        }
        out.push(window);
        out.push(used as u8);
        out.extend_from_slice(&bitmap[..used]);
    }
    out
}

/// The NSEC chain of a zone: for each owner (lowercase wire names, with the types it
/// has), in canonical order, the NSEC RDATA naming the next owner (the apex after the
/// last) and its types plus RRSIG and NSEC. `names` must hold the apex.
pub fn nsec_chain(names: &[(Vec<u8>, Vec<u16>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut sorted: Vec<&(Vec<u8>, Vec<u16>)> = names.iter().collect();
    sorted.sort_by(|a, b| canonical_cmp(&a.0, &b.0));
    sorted.dedup_by(|a, b| canonical_cmp(&a.0, &b.0) == Ordering::Equal);
    let mut chain = Vec::with_capacity(sorted.len());
    for (i, (owner, types)) in sorted.iter().enumerate() {
        let next = &sorted[(i + 1) % sorted.len()].0;
        let mut all = types.clone();
        all.extend_from_slice(&[rtype::RRSIG, rtype::NSEC]);
        let mut rdata = next.clone();
        rdata.extend_from_slice(&type_bitmaps(&all));
        chain.push((owner.clone(), rdata));
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::from_text;

    #[test]
    fn labels_skip_the_root_and_a_leading_wildcard() {
        assert_eq!(labels(&from_text("pool.ntp.org").unwrap()), 3);
        assert_eq!(labels(&from_text("0.de.pool.ntp.org").unwrap()), 5);
        assert_eq!(labels(&from_text("*.pool.ntp.org").unwrap()), 3);
        assert_eq!(labels(&[0]), 0);
        assert_eq!(labels(&[5, b'a']), 1, "a truncated name does not panic");
    }

    #[test]
    fn canonical_order_is_rfc_4034_s_example() {
        // RFC 4034 §6.1, in order.
        let names = [
            "example",
            "a.example",
            "yljkjljk.a.example",
            "Z.a.example",
            "zABC.a.EXAMPLE",
            "z.example",
            "\u{1}.z.example",
            "*.z.example",
            "\u{80}.z.example",
        ];
        let wire: Vec<Vec<u8>> = names
            .iter()
            .map(|n| {
                let mut w = Vec::new();
                for label in n.split('.') {
                    w.push(label.len() as u8);
                    w.extend(label.chars().map(|c| c as u32 as u8));
                }
                w.push(0);
                w
            })
            .collect();
        for pair in wire.windows(2) {
            assert_eq!(
                canonical_cmp(&pair[0], &pair[1]),
                Ordering::Less,
                "{pair:?}"
            );
        }
    }

    #[test]
    fn type_bitmaps_match_rfc_4034_s_example() {
        // RFC 4034 §4.3: A MX RRSIG NSEC TYPE1234.
        let got = type_bitmaps(&[1, 15, 46, 47, 1234]);
        let want = [
            0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20,
        ];
        assert_eq!(got, want);
    }
}
