//! DNSSEC keys against BIND's own tools (Debian's bind9-utils, which CI installs): keys
//! made by `pooldns keygen` give the DS that `dnssec-dsfromkey` computes and sign a zone
//! that `dnssec-signzone` and `dnssec-verify` accept; keys made by `dnssec-keygen` give
//! `pooldns ds` the DS that BIND computes.

use std::path::Path;
use std::process::{Command, Output};

const KEYGEN: &str = "/usr/bin/dnssec-keygen";
const DSFROMKEY: &str = "/usr/bin/dnssec-dsfromkey";
const SIGNZONE: &str = "/usr/bin/dnssec-signzone";
const VERIFY: &str = "/usr/bin/dnssec-verify";

/// Whether BIND's tools are here; with CI set, they must be.
fn bind_tools() -> bool {
    let present = [KEYGEN, DSFROMKEY, SIGNZONE, VERIFY]
        .iter()
        .all(|t| Path::new(t).exists());
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "BIND's DNSSEC tools are not installed; CI must have them (apt-get install bind9-utils)"
        );
        eprintln!("dnssec: bind9-utils not installed: SKIPPING");
    }
    present
}

fn run(program: &str, args: &[&str], dir: &Path) -> Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn pooldns(args: &[&str], dir: &Path) -> String {
    String::from_utf8(run(env!("CARGO_BIN_EXE_pooldns"), args, dir).stdout).expect("utf-8")
}

/// The DS lines of BIND's dnssec-dsfromkey -2 for every .key file in `dir` whose key has
/// flags `flags`, sorted.
fn bind_ds(dir: &Path, flags: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.ends_with(".key") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.contains(&format!("DNSKEY {flags} ")) {
            continue;
        }
        let out = run(DSFROMKEY, &["-2", &name], dir);
        lines.extend(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    lines.sort();
    lines
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn keys_made_by_pooldns_keygen_work_in_bind_s_tools() {
    if !bind_tools() {
        return;
    }
    for algorithm in ["13", "15"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let ksk = pooldns(
            &["keygen", "--dir", d, "--algorithm", algorithm, "--ksk"],
            dir.path(),
        );
        let zsk = pooldns(
            &["keygen", "--dir", d, "--algorithm", algorithm],
            dir.path(),
        );
        assert!(ksk.trim().ends_with(".key") && zsk.trim().ends_with(".key"));
        // The DS of the KSK only, as BIND computes it.
        let ours = pooldns(&["ds", "--dir", d], dir.path());
        assert_eq!(
            sorted_lines(&ours),
            bind_ds(dir.path(), "257"),
            "alg {algorithm}"
        );
        assert_eq!(ours.lines().count(), 1);

        // BIND signs a zone with the two keys and verifies it: it read our .private files.
        let mut zone = String::from(
            "pool.ntp.org. 3600 IN SOA ns1.pool.ntp.org. hostmaster.ntp.org. 1 3600 600 86400 60\n\
             pool.ntp.org. 3600 IN NS ns1.pool.ntp.org.\n\
             ns1.pool.ntp.org. 3600 IN A 192.0.2.1\n",
        );
        for key in [&ksk, &zsk] {
            zone.push_str(&std::fs::read_to_string(key.trim()).unwrap());
        }
        std::fs::write(dir.path().join("zone"), zone).unwrap();
        run(
            SIGNZONE,
            &["-o", "pool.ntp.org", "-K", ".", "-f", "zone.signed", "zone"],
            dir.path(),
        );
        run(VERIFY, &["-o", "pool.ntp.org", "zone.signed"], dir.path());
    }
}

#[test]
fn pooldns_ds_agrees_with_bind_on_keys_made_by_dnssec_keygen() {
    if !bind_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    run(
        KEYGEN,
        &["-q", "-a", "ECDSAP256SHA256", "-f", "KSK", "pool.ntp.org"],
        dir.path(),
    );
    run(
        KEYGEN,
        &["-q", "-a", "ECDSAP256SHA256", "pool.ntp.org"],
        dir.path(),
    );
    run(
        KEYGEN,
        &["-q", "-a", "ED25519", "-f", "KSK", "pool.ntp.org"],
        dir.path(),
    );
    let ours = pooldns(&["ds", "--dir", d], dir.path());
    assert_eq!(sorted_lines(&ours), bind_ds(dir.path(), "257"));
    assert_eq!(ours.lines().count(), 2);

    // A combined key alone (a ZSK's flags, no KSK): its DS is printed.
    let alone = tempfile::tempdir().unwrap();
    let a = alone.path().to_str().unwrap();
    run(
        KEYGEN,
        &["-q", "-a", "ED25519", "pool.ntp.org"],
        alone.path(),
    );
    let ours = pooldns(&["ds", "--dir", a], alone.path());
    assert_eq!(sorted_lines(&ours), bind_ds(alone.path(), "256"));
}

#[test]
fn a_damaged_key_directory_is_refused_by_file_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pooldns"))
        .args(["ds", "--dir", d])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no key files"), "{err}");

    let key = pooldns(&["keygen", "--dir", d, "--ksk"], dir.path());
    let private = key.trim().replace(".key", ".private");
    let text = std::fs::read_to_string(&private).unwrap();
    std::fs::write(&private, text.replace("PrivateKey: ", "PrivateKey: AAAA")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pooldns"))
        .args(["ds", "--dir", d])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".private"), "{err}");
}
