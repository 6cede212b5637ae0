//! BIND's key files, as `dnssec-keygen` writes them: `K<zone>.+<alg>+<tag>.key` holds the
//! public DNSKEY record, `K<zone>.+<alg>+<tag>.private` the private key and the key's
//! timing (v1.3 of the format). This module reads and writes the text; what a key does
//! with it is in [`super::key`].

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// What one `.key` file says: the DNSKEY record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicFile {
    /// The owner, as written ("pool.ntp.org.").
    pub owner: String,
    /// Flags: 256 a zone key, 257 a zone key with the secure entry point bit (a KSK).
    pub flags: u16,
    /// Always 3.
    pub protocol: u8,
    /// The algorithm number (13, 15, …).
    pub algorithm: u8,
    /// The public key, decoded.
    pub public_key: Vec<u8>,
}

/// What one `.private` file says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrivateFile {
    /// The algorithm number.
    pub algorithm: u8,
    /// The private key, decoded: the P-256 scalar for algorithm 13, the Ed25519 seed
    /// for 15.
    pub private_key: Vec<u8>,
    /// The key's timing, in Unix seconds.
    pub timing: Timing,
}

/// A key's timing fields (BIND's `dnssec-settime`), each absent or a Unix time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// When the key was made.
    pub created: Option<u64>,
    /// From when its DNSKEY is published.
    pub publish: Option<u64>,
    /// From when it signs.
    pub activate: Option<u64>,
    /// From when it no longer signs (it stays published).
    pub inactive: Option<u64>,
    /// From when it is no longer published.
    pub delete: Option<u64>,
    /// From when CDS/CDNSKEY for it are published (a KSK).
    pub sync_publish: Option<u64>,
    /// From when they are no longer published.
    pub sync_delete: Option<u64>,
}

/// Reads the DNSKEY record of a `.key` file. `file` names the file in errors.
pub fn parse_public(file: &Path, text: &str) -> Result<PublicFile, String> {
    let line = text
        .lines()
        .map(|l| l.split(';').next().unwrap_or("").trim())
        .find(|l| !l.is_empty())
        .ok_or_else(|| format!("{}: no DNSKEY record", file.display()))?;
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    let at = fields
        .iter()
        .position(|f| f.eq_ignore_ascii_case("DNSKEY"))
        .ok_or_else(|| format!("{}: the record is not a DNSKEY: {line:?}", file.display()))?;
    let owner = fields[0].to_owned();
    let rest = &fields[at + 1..];
    if rest.len() < 4 {
        return Err(format!(
            "{}: a DNSKEY needs flags, protocol, algorithm and key: {line:?}",
            file.display()
        ));
    }
    let number = |what: &str, text: &str| {
        text.parse::<u16>()
            .map_err(|_| format!("{}: DNSKEY {what} {text:?} is not a number", file.display()))
    };
    let flags = number("flags", rest[0])?;
    let protocol = number("protocol", rest[1])?;
    let algorithm = number("algorithm", rest[2])?;
    if protocol != 3 {
        return Err(format!(
            "{}: DNSKEY protocol {protocol}, which must be 3 (RFC 4034)",
            file.display()
        ));
    }
    let algorithm = u8::try_from(algorithm).map_err(|_| {
        format!(
            "{}: DNSKEY algorithm {algorithm} out of range",
            file.display()
        )
    })?;
    let public_key = BASE64
        .decode(rest[3..].concat())
        .map_err(|e| format!("{}: the DNSKEY's key is not base64: {e}", file.display()))?;
    Ok(PublicFile {
        owner,
        flags,
        protocol: 3,
        algorithm,
        public_key,
    })
}

/// Reads a `.private` file (format v1.2 or v1.3). `file` names the file in errors.
pub fn parse_private(file: &Path, text: &str) -> Result<PrivateFile, String> {
    let mut out = PrivateFile::default();
    let mut format = None;
    let mut algorithm = None;
    let mut key = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            return Err(format!(
                "{}: line {}: not \"Field: value\"",
                file.display(),
                n + 1
            ));
        };
        let value = value.trim();
        let time = |what: &str| {
            parse_time(value).ok_or_else(|| {
                format!(
                    "{}: line {}: {what} {value:?} is not a time YYYYMMDDHHMMSS",
                    file.display(),
                    n + 1
                )
            })
        };
        match field.trim() {
            "Private-key-format" => format = Some(value.to_owned()),
            "Algorithm" => {
                // "13 (ECDSAP256SHA256)"
                let number = value.split_ascii_whitespace().next().unwrap_or("");
                algorithm = Some(number.parse::<u8>().map_err(|_| {
                    format!(
                        "{}: line {}: algorithm {value:?} is not a number",
                        file.display(),
                        n + 1
                    )
                })?);
            }
            "PrivateKey" => {
                key = Some(BASE64.decode(value).map_err(|e| {
                    format!(
                        "{}: line {}: PrivateKey is not base64: {e}",
                        file.display(),
                        n + 1
                    )
                })?);
            }
            "Created" => out.timing.created = Some(time("Created")?),
            "Publish" => out.timing.publish = Some(time("Publish")?),
            "Activate" => out.timing.activate = Some(time("Activate")?),
            "Inactive" => out.timing.inactive = Some(time("Inactive")?),
            "Delete" => out.timing.delete = Some(time("Delete")?),
            "SyncPublish" => out.timing.sync_publish = Some(time("SyncPublish")?),
            "SyncDelete" => out.timing.sync_delete = Some(time("SyncDelete")?),
            // Fields of other algorithms (RSA's Modulus, …) and of BIND's key manager.
            _ => {}
        }
    }
    match format.as_deref() {
        Some(v) if v.starts_with("v1.") => {}
        Some(v) => {
            return Err(format!(
                "{}: Private-key-format {v:?}; v1.2 and v1.3 are read",
                file.display()
            ));
        }
        None => {
            return Err(format!(
                "{}: no Private-key-format line: not a BIND private key file",
                file.display()
            ));
        }
    }
    out.algorithm = algorithm.ok_or_else(|| format!("{}: no Algorithm line", file.display()))?;
    out.private_key = key.ok_or_else(|| {
        format!(
            "{}: no PrivateKey line (only algorithms 13 and 15 are supported)",
            file.display()
        )
    })?;
    Ok(out)
}

/// The name of an algorithm as BIND writes it.
pub fn algorithm_name(algorithm: u8) -> &'static str {
    match algorithm {
        5 => "RSASHA1",
        7 => "NSEC3RSASHA1",
        8 => "RSASHA256",
        10 => "RSASHA512",
        13 => "ECDSAP256SHA256",
        14 => "ECDSAP384SHA384",
        15 => "ED25519",
        16 => "ED448",
        _ => "UNKNOWN",
    }
}

/// The `.key` text for a key made now (`now` in Unix seconds).
pub fn render_public(zone: &str, public: &PublicFile, tag: u16, now: u64) -> String {
    let kind = if public.flags & 1 == 1 {
        "key-signing"
    } else {
        "zone-signing"
    };
    let stamp = render_time(now);
    format!(
        "; This is a {kind} key, keyid {tag}, for {zone}\n\
         ; Created: {stamp}\n\
         ; Publish: {stamp}\n\
         ; Activate: {stamp}\n\
         {zone} IN DNSKEY {} {} {} {}\n",
        public.flags,
        public.protocol,
        public.algorithm,
        BASE64.encode(&public.public_key)
    )
}

/// The `.private` text (format v1.3) for a key made now.
pub fn render_private(private: &PrivateFile, now: u64) -> String {
    let stamp = render_time(now);
    format!(
        "Private-key-format: v1.3\n\
         Algorithm: {} ({})\n\
         PrivateKey: {}\n\
         Created: {stamp}\n\
         Publish: {stamp}\n\
         Activate: {stamp}\n",
        private.algorithm,
        algorithm_name(private.algorithm),
        BASE64.encode(&private.private_key)
    )
}

/// A key file time, YYYYMMDDHHMMSS in UTC, as Unix seconds.
pub fn parse_time(text: &str) -> Option<u64> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |range: std::ops::Range<usize>| text[range].parse::<u64>().ok();
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, s) = (n(8..10)?, n(10..12)?, n(12..14)?);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60
    {
        return None;
    }
    let days = days_from_civil(y, mo, d)?;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

/// Unix seconds as YYYYMMDDHHMMSS in UTC.
pub fn render_time(unix: u64) -> String {
    let (y, m, d) = crate::report::civil_from_days(unix / 86_400).unwrap_or((9999, 12, 31));
    let s = unix % 86_400;
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date from 1970 on (the inverse of
/// [`crate::report::civil_from_days`], by the same era-based method).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y % 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_dnssec_keygen_writes() {
        let key = "; This is a key-signing key, keyid 9852, for pool.ntp.org.\n\
                   ; Created: 20261129174240 (Sun Nov 29 17:42:40 2026)\n\
                   pool.ntp.org. IN DNSKEY 257 3 13 plFgzaFVWxQ1322wDHhUpbt2rByCvqyU0WpPp3gggs/zhAgsFwEewAZ8 zP0or3N/T8agQfLl4r36Y2qo+HejBA==\n";
        let public = parse_public(Path::new("K.key"), key).unwrap();
        assert_eq!(
            (public.owner.as_str(), public.flags, public.algorithm),
            ("pool.ntp.org.", 257, 13)
        );
        assert_eq!(public.public_key.len(), 64);
        // With a TTL, as some tools write it.
        let ttl =
            "pool.ntp.org. 3600 IN DNSKEY 256 3 15 r2wBE3zVOabAA+8QxsbQSsG3yiHrdNZObmS/+u0cQnw=";
        assert_eq!(
            parse_public(Path::new("K.key"), ttl)
                .unwrap()
                .public_key
                .len(),
            32
        );

        let private = "Private-key-format: v1.3\n\
                       Algorithm: 13 (ECDSAP256SHA256)\n\
                       PrivateKey: 0hWUlIrPlnyDAb00lkhV63Jp5lRXij2DNOTf6ND9Dxk=\n\
                       Created: 20261129174240\n\
                       Publish: 20261129174240\n\
                       Activate: 20261129174240\n\
                       Inactive: 20270101000000\n";
        let p = parse_private(Path::new("K.private"), private).unwrap();
        assert_eq!(p.algorithm, 13);
        assert_eq!(p.private_key.len(), 32);
        assert_eq!(p.timing.activate, Some(1_795_974_160));
        assert_eq!(p.timing.inactive, Some(1_798_761_600));
        assert_eq!(p.timing.delete, None);
    }

    #[test]
    fn bad_files_say_which_file_and_what() {
        let e = parse_public(Path::new("Kx.key"), "x. IN DS 1 2 3 abcd").unwrap_err();
        assert!(e.contains("Kx.key") && e.contains("not a DNSKEY"), "{e}");
        let e = parse_public(Path::new("Kx.key"), "x. IN DNSKEY 257 2 13 AAAA").unwrap_err();
        assert!(e.contains("protocol 2"), "{e}");
        let e = parse_public(Path::new("Kx.key"), "x. IN DNSKEY 257 3 13 !!!").unwrap_err();
        assert!(e.contains("base64"), "{e}");
        let e = parse_private(Path::new("Kx.private"), "Algorithm: 13\nPrivateKey: AAAA\n")
            .unwrap_err();
        assert!(e.contains("Private-key-format"), "{e}");
        let e = parse_private(
            Path::new("Kx.private"),
            "Private-key-format: v1.3\nAlgorithm: 13\nPrivateKey: AAAA\nActivate: 2026\n",
        )
        .unwrap_err();
        assert!(e.contains("line 4") && e.contains("Activate"), "{e}");
        for garbage in ["", "\u{0}\u{1}", "::::", "Private-key-format: v1.3"] {
            assert!(parse_private(Path::new("K"), garbage).is_err());
            assert!(parse_public(Path::new("K"), garbage).is_err());
        }
    }

    #[test]
    fn times_round_trip_and_reject_impossible_dates() {
        for unix in [0, 951_782_400, 1_795_974_160, 4_102_444_799] {
            assert_eq!(parse_time(&render_time(unix)), Some(unix), "{unix}");
        }
        assert_eq!(parse_time("20260229000000"), None);
        assert_eq!(parse_time("20240229000000"), Some(1_709_164_800));
        assert_eq!(parse_time("20261301000000"), None);
        assert_eq!(parse_time("2026112917424"), None);
        assert_eq!(parse_time("19691231235959"), None);
    }
}
