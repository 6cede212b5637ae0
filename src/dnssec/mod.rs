//! DNSSEC (DESIGN §4.1): zone keys in BIND's key-file format ([`keyfile`], [`key`]).
//!
//! This is the first part of signed answers (issue 15): keys are read, made and checked,
//! and `pooldns ds` prints what the parent publishes. Signing answers comes next, at table
//! build time, never per query.

pub mod key;
pub mod keyfile;

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
