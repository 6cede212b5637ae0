//! Zone signing keys: loaded from BIND's key files, made by `pooldns keygen`, and used to
//! sign. The cryptography is ring's (ECDSA P-256 with SHA-256, algorithm 13, RFC 6605;
//! Ed25519, algorithm 15, RFC 8080); this module only moves bytes between the key files,
//! ring and the DNS wire forms (DNSKEY, DS, key tag).

use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

use super::keyfile::{self, PrivateFile, PublicFile, Timing};

/// Algorithm 13: ECDSA with curve P-256 and SHA-256.
pub const ECDSAP256SHA256: u8 = 13;
/// Algorithm 15: Ed25519.
pub const ED25519: u8 = 15;
/// DNSKEY flags of a zone key.
pub const ZONE_KEY: u16 = 256;
/// The secure entry point bit: a key-signing key (KSK).
pub const SEP: u16 = 1;

/// One zone key: its public DNSKEY, its timing and what signs with it.
pub struct Key {
    /// The `.private` file it came from (for messages).
    pub file: PathBuf,
    /// DNSKEY flags: 256 (ZSK) or 257 (KSK, or a combined key when alone).
    pub flags: u16,
    /// The algorithm number.
    pub algorithm: u8,
    /// The public key as the DNSKEY carries it.
    pub public_key: Vec<u8>,
    /// The key tag (RFC 4034 Appendix B).
    pub tag: u16,
    /// When it is published, signs, retires, goes.
    pub timing: Timing,
    signer: Signer,
}

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("Key")
            .field("file", &self.file)
            .field("flags", &self.flags)
            .field("algorithm", &self.algorithm)
            .field("tag", &self.tag)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Loads the key of `key_file` (a `.key` file) and the `.private` file beside it.
    /// `zone` is the zone's lowercase name without the final dot.
    pub fn load(key_file: &Path, zone: &str) -> Result<Key, String> {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))
        };
        let public = keyfile::parse_public(key_file, &read(key_file)?)?;
        let private_file = key_file.with_extension("private");
        let private = keyfile::parse_private(&private_file, &read(&private_file)?)?;
        Key::from_files(&private_file, zone, &public, &private)
    }

    /// A key from the contents of its two files; `file` names the private one.
    pub fn from_files(
        file: &Path,
        zone: &str,
        public: &PublicFile,
        private: &PrivateFile,
    ) -> Result<Key, String> {
        let owner = public.owner.trim_end_matches('.').to_ascii_lowercase();
        if owner != zone.trim_end_matches('.').to_ascii_lowercase() {
            return Err(format!(
                "{}: a key for {:?}, not for the zone {zone:?}",
                file.display(),
                public.owner
            ));
        }
        if public.flags & ZONE_KEY == 0 {
            return Err(format!(
                "{}: DNSKEY flags {} lack the zone key bit (256)",
                file.display(),
                public.flags
            ));
        }
        if public.algorithm != private.algorithm {
            return Err(format!(
                "{}: algorithm {} in the .private file, {} in the .key file",
                file.display(),
                private.algorithm,
                public.algorithm
            ));
        }
        let rejected = |e: ring::error::KeyRejected| {
            format!(
                "{}: the private key does not match the public key or is not valid: {e}",
                file.display()
            )
        };
        let signer = match public.algorithm {
            ECDSAP256SHA256 => {
                // BIND writes the scalar without its leading zero bytes (1 key in 256 has
                // 31 bytes): pad it back to 32.
                let mut scalar = [0u8; 32];
                let len = private.private_key.len();
                if (1..=32).contains(&len) {
                    scalar[32 - len..].copy_from_slice(&private.private_key);
                }
                if public.public_key.len() != 64 || !(1..=32).contains(&len) {
                    return Err(format!(
                        "{}: an algorithm 13 key has a 64-byte public and a 32-byte private key",
                        file.display()
                    ));
                }
                let mut uncompressed = Vec::with_capacity(65);
                uncompressed.push(4);
                uncompressed.extend_from_slice(&public.public_key);
                Signer::Ecdsa(
                    EcdsaKeyPair::from_private_key_and_public_key(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        &scalar,
                        &uncompressed,
                        &SystemRandom::new(),
                    )
                    .map_err(rejected)?,
                )
            }
            ED25519 => Signer::Ed25519(
                Ed25519KeyPair::from_seed_and_public_key(&private.private_key, &public.public_key)
                    .map_err(rejected)?,
            ),
            other => {
                return Err(format!(
                    "{}: algorithm {other} ({}) is not supported; use 13 (ECDSAP256SHA256) or \
                     15 (ED25519)",
                    file.display(),
                    keyfile::algorithm_name(other)
                ));
            }
        };
        let mut key = Key {
            file: file.to_path_buf(),
            flags: public.flags,
            algorithm: public.algorithm,
            public_key: public.public_key.clone(),
            tag: 0,
            timing: private.timing,
            signer,
        };
        key.tag = key_tag(&key.dnskey_rdata());
        Ok(key)
    }

    /// Whether the key has the secure entry point bit (a KSK, or a combined key).
    pub fn is_ksk(&self) -> bool {
        self.flags & SEP != 0
    }

    /// The DNSKEY RDATA: flags, protocol 3, algorithm, public key.
    pub fn dnskey_rdata(&self) -> Vec<u8> {
        let mut rdata = Vec::with_capacity(4 + self.public_key.len());
        rdata.extend_from_slice(&self.flags.to_be_bytes());
        rdata.push(3);
        rdata.push(self.algorithm);
        rdata.extend_from_slice(&self.public_key);
        rdata
    }

    /// The DS RDATA with a SHA-256 digest (digest type 2) for the zone `owner_wire` (the
    /// zone's lowercase wire name, root label included).
    pub fn ds_rdata(&self, owner_wire: &[u8]) -> Vec<u8> {
        let mut data = owner_wire.to_vec();
        data.extend_from_slice(&self.dnskey_rdata());
        let digest = ring::digest::digest(&ring::digest::SHA256, &data);
        let mut rdata = Vec::with_capacity(4 + 32);
        rdata.extend_from_slice(&self.tag.to_be_bytes());
        rdata.push(self.algorithm);
        rdata.push(2);
        rdata.extend_from_slice(digest.as_ref());
        rdata
    }

    /// Signs `data` (an RRSIG's RDATA without the signature, then the RRset in canonical
    /// form; RFC 4034 §3.1.8.1); the signature in the RRSIG's wire format.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        match &self.signer {
            // r and s, 32 bytes each: the FIXED encoding is RFC 6605's.
            Signer::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), data)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| format!("{}: signing failed", self.file.display())),
            Signer::Ed25519(pair) => Ok(pair.sign(data).as_ref().to_vec()),
        }
    }

    /// Whether the DNSKEY is published at Unix time `now`: from Publish (or always) until
    /// Delete.
    pub fn published_at(&self, now: u64) -> bool {
        self.timing.publish.is_none_or(|t| t <= now) && self.timing.delete.is_none_or(|t| now < t)
    }

    /// Whether the key signs at `now`: from Activate (or always) until Inactive, and only
    /// while published.
    pub fn active_at(&self, now: u64) -> bool {
        self.published_at(now)
            && self.timing.activate.is_none_or(|t| t <= now)
            && self.timing.inactive.is_none_or(|t| now < t)
    }

    /// Whether CDS and CDNSKEY records for it are published at `now` (RFC 7344): a KSK that
    /// signs, from SyncPublish (or always) until SyncDelete.
    pub fn sync_at(&self, now: u64) -> bool {
        self.is_ksk()
            && self.active_at(now)
            && self.timing.sync_publish.is_none_or(|t| t <= now)
            && self.timing.sync_delete.is_none_or(|t| now < t)
    }
}

/// The key tag of a DNSKEY RDATA (RFC 4034 Appendix B).
pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, &b) in rdata.iter().enumerate() {
        ac += if i & 1 == 0 {
            u32::from(b) << 8
        } else {
            u32::from(b)
        };
    }
    ac += (ac >> 16) & 0xffff;
    (ac & 0xffff) as u16
}

/// Every key of `zone` in `dir`: the `K<zone>.+<alg>+<tag>.key` files, each with its
/// `.private` file. An unreadable or unsupported key is an error naming its file.
pub fn load_dir(dir: &Path, zone: &str) -> Result<Vec<Key>, String> {
    let prefix = format!("K{}.+", zone.trim_end_matches('.').to_ascii_lowercase());
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name
            .to_ascii_lowercase()
            .starts_with(&prefix.to_ascii_lowercase())
            && name.ends_with(".key")
        {
            files.push(entry.path());
        }
    }
    files.sort();
    let keys: Vec<Key> = files
        .iter()
        .map(|f| Key::load(f, zone))
        .collect::<Result<_, _>>()?;
    if keys.is_empty() {
        return Err(format!(
            "{}: no key files {prefix}*.key (make them with `pooldns keygen` or dnssec-keygen)",
            dir.display()
        ));
    }
    Ok(keys)
}

/// Makes a new key for `zone` (algorithm 13 or 15; a KSK with `ksk`) and writes its two
/// files into `dir`, the private one readable by its owner only. Returns the `.key` path.
pub fn generate(
    zone: &str,
    algorithm: u8,
    ksk: bool,
    dir: &Path,
    now: u64,
) -> Result<PathBuf, String> {
    let rng = SystemRandom::new();
    let (private_key, public_key) = match algorithm {
        ECDSAP256SHA256 => {
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| "cannot generate a P-256 key".to_owned())?;
            p256_from_pkcs8(pkcs8.as_ref())
                .ok_or_else(|| "ring's P-256 PKCS#8 document has an unexpected layout".to_owned())?
        }
        ED25519 => {
            let mut seed = [0u8; 32];
            rng.fill(&mut seed)
                .map_err(|_| "no random bytes for an Ed25519 key".to_owned())?;
            let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
                .map_err(|e| format!("cannot make an Ed25519 key: {e}"))?;
            (seed.to_vec(), pair.public_key().as_ref().to_vec())
        }
        other => {
            return Err(format!(
                "algorithm {other} is not supported; use 13 (ECDSAP256SHA256) or 15 (ED25519)"
            ));
        }
    };
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    let public = PublicFile {
        owner: format!("{zone}."),
        flags: ZONE_KEY | if ksk { SEP } else { 0 },
        protocol: 3,
        algorithm,
        public_key,
    };
    let private = PrivateFile {
        algorithm,
        private_key,
        timing: Timing::default(),
    };
    // Check the pair the way it will be loaded.
    let key = Key::from_files(Path::new("new key"), &zone, &public, &private)?;
    let base = format!("K{zone}.+{algorithm:03}+{:05}", key.tag);
    let key_path = dir.join(format!("{base}.key"));
    let private_path = dir.join(format!("{base}.private"));
    if key_path.exists() || private_path.exists() {
        return Err(format!("{}: exists already", key_path.display()));
    }
    write_new(
        &private_path,
        &keyfile::render_private(&private, now),
        0o600,
    )?;
    write_new(
        &key_path,
        &keyfile::render_public(&format!("{zone}."), &public, key.tag, now),
        0o644,
    )?;
    Ok(key_path)
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

/// The private scalar and the public point (x ‖ y) of a P-256 key in the PKCS#8 v1
/// document ring makes: ring does not hand out the scalar, and BIND's file needs it. The
/// document is DER with a fixed layout; every byte around the two values is checked.
fn p256_from_pkcs8(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    const HEAD: [u8; 36] = [
        0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
        0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30,
        0x6b, 0x02, 0x01, 0x01, 0x04, 0x20,
    ];
    const MIDDLE: [u8; 6] = [0xa1, 0x44, 0x03, 0x42, 0x00, 0x04];
    if der.len() != HEAD.len() + 32 + MIDDLE.len() + 64 || der[..36] != HEAD {
        return None;
    }
    let private = &der[36..68];
    if der[68..74] != MIDDLE {
        return None;
    }
    Some((private.to_vec(), der[74..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key made by BIND 9.18's dnssec-keygen -a ECDSAP256SHA256 -f KSK pool.ntp.org.
    const BIND_KEY: &str = "pool.ntp.org. IN DNSKEY 257 3 13 plFgzaFVWxQ1322wDHhUpbt2rByCvqyU0WpPp3gggs/zhAgsFwEewAZ8 zP0or3N/T8agQfLl4r36Y2qo+HejBA==";
    const BIND_PRIVATE: &str = "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n\
                                PrivateKey: 0hWUlIrPlnyDAb00lkhV63Jp5lRXij2DNOTf6ND9Dxk=\n";

    fn bind_key() -> Key {
        let public = keyfile::parse_public(Path::new("K.key"), BIND_KEY).unwrap();
        let private = keyfile::parse_private(Path::new("K.private"), BIND_PRIVATE).unwrap();
        Key::from_files(Path::new("K.private"), "pool.ntp.org", &public, &private).unwrap()
    }

    #[test]
    fn a_bind_key_loads_with_bind_s_key_tag_and_signs_verifiably() {
        let key = bind_key();
        assert_eq!(key.tag, 9852, "the tag in dnssec-keygen's file name");
        assert!(key.is_ksk());
        let data = b"rrsig rdata and rrset";
        let sig = key.sign(data).unwrap();
        assert_eq!(sig.len(), 64);
        let mut point = vec![4];
        point.extend_from_slice(&key.public_key);
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
            .verify(data, &sig)
            .expect("verifies");
    }

    #[test]
    fn ds_matches_dnssec_dsfromkey() {
        // dnssec-dsfromkey -2 for the key above.
        let key = bind_key();
        let wire = crate::name::from_text("pool.ntp.org").unwrap();
        let ds = key.ds_rdata(&wire);
        assert_eq!(&ds[..4], &[0x26, 0x7c, 13, 2]);
        let digest: String = ds[4..].iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(
            digest,
            "74526CB6AC7B29AA3E31A7D84F0016433E6D64695B22FC7448148E2E2469B537"
        );
    }

    #[test]
    fn generated_keys_load_back_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        for (algorithm, ksk) in [(ECDSAP256SHA256, true), (ED25519, false)] {
            let path =
                generate("pool.ntp.org.", algorithm, ksk, dir.path(), 1_800_000_000).unwrap();
            let key = Key::load(&path, "pool.ntp.org").unwrap();
            assert_eq!((key.algorithm, key.is_ksk()), (algorithm, ksk));
            assert!(
                path.to_str()
                    .unwrap()
                    .ends_with(&format!("+{:05}.key", key.tag))
            );
            assert!(key.active_at(1_800_000_000) && !key.active_at(1_799_999_999));
            assert_eq!(key.sign(b"x").unwrap().len(), 64);
        }
        let keys = load_dir(dir.path(), "pool.ntp.org").unwrap();
        assert_eq!(keys.len(), 2);
        assert!(load_dir(dir.path(), "example.org").is_err());
    }

    #[test]
    fn a_scalar_bind_wrote_without_its_leading_zero_loads() {
        // Made until the scalar's first byte was 0, as dnssec-keygen then writes 31 bytes.
        let dir = tempfile::tempdir().unwrap();
        let path = loop {
            let p = generate("pool.ntp.org", ECDSAP256SHA256, true, dir.path(), 0).unwrap();
            let private = p.to_str().unwrap().replace(".key", ".private");
            let text = std::fs::read_to_string(&private).unwrap();
            let parsed = keyfile::parse_private(Path::new("p"), &text).unwrap();
            if parsed.private_key[0] == 0 {
                let short = keyfile::render_private(
                    &PrivateFile {
                        private_key: parsed.private_key[1..].to_vec(),
                        ..parsed
                    },
                    0,
                );
                std::fs::write(&private, short).unwrap();
                break p;
            }
            std::fs::remove_file(&private).unwrap();
            std::fs::remove_file(&p).unwrap();
        };
        let key = Key::load(&path, "pool.ntp.org").expect("a 31-byte scalar loads");
        assert_eq!(key.sign(b"x").unwrap().len(), 64);
    }

    #[test]
    fn mismatched_or_foreign_keys_are_refused_by_name() {
        let public = keyfile::parse_public(Path::new("K.key"), BIND_KEY).unwrap();
        let mut private = keyfile::parse_private(Path::new("K.private"), BIND_PRIVATE).unwrap();
        let e =
            Key::from_files(Path::new("K.private"), "example.org", &public, &private).unwrap_err();
        assert!(e.contains("not for the zone"), "{e}");
        private.private_key[0] ^= 1;
        let e =
            Key::from_files(Path::new("K.private"), "pool.ntp.org", &public, &private).unwrap_err();
        assert!(
            e.contains("K.private") && e.contains("does not match"),
            "{e}"
        );
        private.algorithm = 8;
        let mut rsa = public.clone();
        rsa.algorithm = 8;
        let e =
            Key::from_files(Path::new("K.private"), "pool.ntp.org", &rsa, &private).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
    }

    #[test]
    fn timing_decides_publish_sign_and_sync() {
        let mut key = bind_key();
        key.timing = Timing {
            publish: Some(100),
            activate: Some(200),
            inactive: Some(300),
            delete: Some(400),
            ..Timing::default()
        };
        let states: Vec<(bool, bool, bool)> = [50, 150, 250, 350, 450]
            .iter()
            .map(|&t| (key.published_at(t), key.active_at(t), key.sync_at(t)))
            .collect();
        assert_eq!(
            states,
            [
                (false, false, false),
                (true, false, false),
                (true, true, true),
                (true, false, false),
                (false, false, false)
            ]
        );
    }
}
