//! Demand: how many pool-name queries come from clients in each country, per address
//! family (A → IPv4, AAAA → IPv6). It is the plan's "demand" input (DESIGN §3.1, §8):
//! feed + config + demand → table. Two sources give it:
//!
//! * a **demand file** ([`load_file`], [`render`]), written by `pooldns demand` from the
//!   fleet's `pooldns_client_queries_total` counters:
//!
//!   ```json
//!   {"v4": {"us": 123.0, "de": 45.5, "uk": 80}, "v6": {"jp": 7}}
//!   ```
//!
//!   Weights of any scale (only their shares count), finite and ≥ 0. Keys are ISO 3166
//!   alpha-2 country codes (lowercase as written by pooldns, any case accepted); `gb` and
//!   `uk` are the same country, kept as `uk` (the pool's zone name), and summed when both
//!   are given. Either family may be missing: a family without weight says nothing about
//!   demand, and the plan uses the prior for it.
//! * without a file, the **address-space prior** ([`prior`]): the IPv4 addresses and IPv6
//!   /48s that the GeoIP database assigns to each country ([`crate::geo::AddressSpace`]).
//!
//! The file is untrusted input: anything but an object of `v4` and `v6` objects of known
//! countries with weights fails the load as a whole, with the file, the entry and the
//! reason (`demand.json: v4.zz: not a known ISO 3166 country code`), so that the last good
//! demand stays in use. Nothing here panics on input.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};

use crate::continent;
use crate::geo::GeoDb;
use crate::table::Family;

/// Demand per client country, for each family.
///
/// Keys are canonical country codes ([`canonical`]); weights are finite and ≥ 0, of any
/// scale, and so is each family's total. Only [`Demand::add`] puts weights in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    v4: BTreeMap<&'static str, f64>,
    v6: BTreeMap<&'static str, f64>,
}

impl Demand {
    /// The weights of a family, by canonical country code.
    pub fn family(&self, family: Family) -> &BTreeMap<&'static str, f64> {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// The sum of a family's weights (finite; 0 when the family says nothing).
    pub fn total(&self, family: Family) -> f64 {
        self.family(family).values().sum()
    }

    /// A country's share of its family's demand, 0 … 1 (any spelling of the code; 0 for
    /// a country without weight or a family without any).
    pub fn share(&self, family: Family, country: &str) -> f64 {
        let total = self.total(family);
        match canonical(country).and_then(|c| self.family(family).get(c)) {
            Some(&w) if total > 0.0 => w / total,
            _ => 0.0,
        }
    }

    /// Adds `weight` to a country's demand (summing `gb` into `uk`, and any other spelling
    /// of a code into its canonical one). Refused, and nothing changed, for an unknown
    /// country, a weight that is negative or not finite, or a sum that would not be.
    pub fn add(&mut self, family: Family, country: &str, weight: f64) -> Result<(), Refused> {
        let code = canonical(country).ok_or(Refused::UnknownCountry)?;
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(Refused::NotAWeight(weight));
        }
        let total = self.total(family) + weight;
        if !total.is_finite() {
            return Err(Refused::TooLarge);
        }
        let map = match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        };
        *map.entry(code).or_insert(0.0) += weight;
        Ok(())
    }
}

/// Why [`Demand::add`] refused a weight.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Refused {
    /// The key is not in the built-in country table.
    #[error("not a known ISO 3166 country code")]
    UnknownCountry,
    /// Negative, infinite or NaN.
    #[error("{0} is not a weight ≥ 0")]
    NotAWeight(f64),
    /// The family's weights would add up to more than an `f64` holds.
    #[error("the weights add up to more than 1.8e308")]
    TooLarge,
}

/// The code a country is kept under: its lowercase ISO 3166 alpha-2 code from the built-in
/// country table ([`continent::countries`]), except that `gb` is kept as `uk`, the pool's
/// zone name for the United Kingdom. ASCII case-insensitive; None for anything not in the
/// table (`zz`, `eu`, `unknown`).
pub fn canonical(code: &str) -> Option<&'static str> {
    let lower = code.to_ascii_lowercase();
    let wanted = if lower == "gb" { "uk" } else { lower.as_str() };
    continent::countries()
        .map(|(c, _)| c)
        .find(|&c| c == wanted)
}

/// Why a demand file was refused.
#[derive(Debug, thiserror::Error)]
pub enum DemandError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The demand file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not JSON, or not an object of `v4` and `v6` objects.
    #[error("{origin}: {reason}")]
    Parse {
        /// The file (or other source) it came from.
        origin: String,
        /// What is wrong, with line and column.
        reason: String,
    },
    /// One entry is not a known country with a weight.
    #[error("{origin}: {entry}: {reason}")]
    Entry {
        /// The file (or other source) it came from.
        origin: String,
        /// The entry: `v4.zz`.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Loads the demand file at `path`.
pub fn load_file(path: &Path) -> Result<Demand, DemandError> {
    let bytes = std::fs::read(path).map_err(|source| DemandError::Read {
        path: path.to_owned(),
        source,
    })?;
    load_slice(&path.display().to_string(), &bytes)
}

/// Loads demand from the bytes of a demand file; `origin` names it in messages.
pub fn load_slice(origin: &str, bytes: &[u8]) -> Result<Demand, DemandError> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| DemandError::Parse {
        origin: origin.to_owned(),
        reason: e.to_string(),
    })?;
    let mut demand = Demand::default();
    for (family, label, members) in [(Family::V4, "v4", &file.v4), (Family::V6, "v6", &file.v6)] {
        let mut seen = std::collections::HashSet::new();
        for (key, value) in members.iter().flat_map(|m| &m.0) {
            let refuse = |reason: String| DemandError::Entry {
                origin: origin.to_owned(),
                entry: format!("{label}.{}", shown(key)),
                reason,
            };
            if !seen.insert(key.as_str()) {
                return Err(refuse("appears twice".into()));
            }
            if canonical(key).is_none() {
                return Err(refuse(Refused::UnknownCountry.to_string()));
            }
            let weight = value
                .as_f64()
                .ok_or_else(|| refuse(format!("{} is not a number", shown_json(value))))?;
            demand
                .add(family, key, weight)
                .map_err(|e| refuse(e.to_string()))?;
        }
    }
    Ok(demand)
}

/// The demand file's text: pretty JSON with both families, countries sorted, a newline at
/// the end. [`load_slice`] reads it back to the same [`Demand`].
pub fn render(demand: &Demand) -> String {
    #[derive(serde::Serialize)]
    struct Rendered<'d> {
        v4: &'d BTreeMap<&'static str, f64>,
        v6: &'d BTreeMap<&'static str, f64>,
    }
    let rendered = Rendered {
        v4: &demand.v4,
        v6: &demand.v6,
    };
    // Maps of strings to finite numbers ([`Demand::add`] checks) always serialize.
    let mut text = serde_json::to_string_pretty(&rendered).expect("string → f64 maps serialize");
    text.push('\n');
    text
}

/// The demand prior: the address space the GeoIP database assigns to each country
/// ([`GeoDb::address_space`]), IPv4 addresses for `v4` and IPv6 /48s for `v6`. A
/// measured demand file replaces it. Computed once per database (about 0.13 s for
/// DB-IP's country database on a release build) and kept by the database; codes that
/// are not countries (`eu`, `ap`, `zz` in some databases) are left out, `gb` counts as
/// `uk`.
pub fn prior(geo: &GeoDb) -> Demand {
    let space = geo.address_space();
    let mut demand = Demand::default();
    for (code, &addresses) in &space.v4 {
        // At most 2^32 addresses in all: no sum can be refused.
        let _ = demand.add(Family::V4, code, addresses as f64);
    }
    for (code, &blocks) in &space.v6 {
        let _ = demand.add(Family::V6, code, blocks);
    }
    demand
}

/// A key or value for a message: as it is when it is short and plain, quoted and cut
/// otherwise (the file is untrusted; a key may hold anything).
fn shown(text: &str) -> String {
    let plain = !text.is_empty()
        && text.len() <= 32
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    if plain {
        return text.to_owned();
    }
    let cut: String = text.chars().take(32).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// A JSON value for a message, cut when long.
fn shown_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    let cut: String = text.chars().take(32).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// The file as written: at most one `v4` and one `v6`, nothing else.
struct File {
    v4: Option<Members>,
    v6: Option<Members>,
}

/// The members of one JSON object, in file order and with repeated keys kept (a
/// `serde_json::Map` keeps only the last of them, hiding the mistake).
struct Members(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for File {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<File, D::Error> {
        struct FileVisitor;
        impl<'de> Visitor<'de> for FileVisitor {
            type Value = File;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a demand object: {"v4": {"us": 123.0, …}, "v6": {…}}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<File, A::Error> {
                let mut file = File { v4: None, v6: None };
                while let Some(key) = map.next_key::<String>()? {
                    let slot = match key.as_str() {
                        "v4" => &mut file.v4,
                        "v6" => &mut file.v6,
                        other => {
                            return Err(A::Error::custom(format!(
                                r#"unknown key {}: a demand file has only "v4" and "v6""#,
                                shown_json(&serde_json::Value::from(other))
                            )));
                        }
                    };
                    if slot.is_some() {
                        return Err(A::Error::custom(format!("\"{key}\" appears twice")));
                    }
                    *slot = Some(map.next_value()?);
                }
                Ok(file)
            }
        }
        d.deserialize_map(FileVisitor)
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Members, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an object of countries and weights: {"us": 123.0, …}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Demand, String> {
        load_slice("demand.json", text.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn loads_weights_of_both_families() {
        let d = load(r#"{"v4": {"us": 123.0, "de": 45.5, "gb": 10}, "v6": {"jp": 7}}"#).unwrap();
        let v4: Vec<(&str, f64)> = d.family(Family::V4).iter().map(|(&c, &w)| (c, w)).collect();
        assert_eq!(v4, [("de", 45.5), ("uk", 10.0), ("us", 123.0)]);
        assert_eq!(d.total(Family::V4), 178.5);
        assert_eq!(d.share(Family::V6, "jp"), 1.0);
        assert_eq!(d.share(Family::V4, "GB"), 10.0 / 178.5);
        assert_eq!(d.share(Family::V4, "fr"), 0.0);
    }

    #[test]
    fn gb_and_uk_are_one_country_and_any_case_is_read() {
        let d = load(r#"{"v4": {"gb": 1, "uk": 2.5, "DE": 3}}"#).unwrap();
        assert_eq!(d.family(Family::V4).get("uk"), Some(&3.5));
        assert_eq!(d.family(Family::V4).get("de"), Some(&3.0));
        assert_eq!(d.family(Family::V4).get("gb"), None);
        assert_eq!(canonical("GB"), Some("uk"));
        assert_eq!(canonical("xk"), Some("xk"));
        for code in ["zz", "eu", "unknown", "", "d", "deu"] {
            assert_eq!(canonical(code), None, "{code:?}");
        }
    }

    #[test]
    fn a_missing_or_empty_family_says_nothing() {
        for text in [r#"{"v4": {"de": 1}}"#, r#"{"v4": {"de": 1}, "v6": {}}"#] {
            let d = load(text).unwrap();
            assert!(d.family(Family::V6).is_empty());
            assert_eq!(d.total(Family::V6), 0.0);
            assert_eq!(d.share(Family::V6, "de"), 0.0);
        }
        assert_eq!(load("{}").unwrap(), Demand::default());
    }

    #[test]
    fn errors_name_the_file_the_entry_and_the_reason() {
        for (text, message) in [
            (
                r#"{"v4": {"zz": 1}}"#,
                "demand.json: v4.zz: not a known ISO 3166 country code",
            ),
            (
                r#"{"v4": {"de": 1}, "v6": {"de": -3}}"#,
                "demand.json: v6.de: -3 is not a weight ≥ 0",
            ),
            (
                r#"{"v4": {"de": "12"}}"#,
                r#"demand.json: v4.de: "12" is not a number"#,
            ),
            (
                r#"{"v4": {"de": null}}"#,
                "demand.json: v4.de: null is not a number",
            ),
            (
                r#"{"v4": {"de": 1, "de": 2}}"#,
                "demand.json: v4.de: appears twice",
            ),
            (
                r#"{"v4": {"unknown": 5}}"#,
                "demand.json: v4.unknown: not a known ISO 3166 country code",
            ),
            (
                r#"{"v4": {"a\nb": 5}}"#,
                r#"demand.json: v4."a\nb": not a known ISO 3166 country code"#,
            ),
            (
                r#"{"v4": {"de": 1e308, "us": 1e308}}"#,
                "demand.json: v4.us: the weights add up to more than 1.8e308",
            ),
            (
                r#"{"V4": {"de": 1}}"#,
                r#"demand.json: unknown key "V4": a demand file has only "v4" and "v6" at line 1 column 5"#,
            ),
            (
                r#"{"v4": {}, "v4": {}}"#,
                r#"demand.json: "v4" appears twice at line 1 column 15"#,
            ),
            (
                r#"[1, 2]"#,
                r#"demand.json: invalid type: sequence, expected a demand object: {"v4": {"us": 123.0, …}, "v6": {…}} at line 1 column 0"#,
            ),
            (
                r#"{"v4": [1]}"#,
                r#"demand.json: invalid type: sequence, expected an object of countries and weights: {"us": 123.0, …} at line 1 column 7"#,
            ),
            (
                r#"{"v4": {"de": 1e999}}"#,
                "demand.json: number out of range at line 1 column 19",
            ),
        ] {
            assert_eq!(load(text).unwrap_err(), message, "{text}");
        }
        let e = load_file(Path::new("/nonexistent/demand.json")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/demand.json: cannot read: "),
            "{e}"
        );
    }

    #[test]
    fn render_writes_sorted_pretty_json_that_loads_back() {
        let d = load(r#"{"v6": {"jp": 7}, "v4": {"us": 123.0, "de": 45.5, "gb": 0.25}}"#).unwrap();
        let text = render(&d);
        assert_eq!(
            text,
            "{\n  \"v4\": {\n    \"de\": 45.5,\n    \"uk\": 0.25,\n    \"us\": 123.0\n  },\n  \
             \"v6\": {\n    \"jp\": 7.0\n  }\n}\n"
        );
        assert_eq!(load(&text).unwrap(), d);
        assert_eq!(
            render(&Demand::default()),
            "{\n  \"v4\": {},\n  \"v6\": {}\n}\n"
        );
    }

    #[test]
    fn add_refuses_unknown_countries_and_non_weights_without_changing_anything() {
        let mut d = Demand::default();
        assert_eq!(d.add(Family::V4, "de", 2.0), Ok(()));
        assert_eq!(d.add(Family::V4, "zz", 1.0), Err(Refused::UnknownCountry));
        for w in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                d.add(Family::V4, "de", w),
                Err(Refused::NotAWeight(_))
            ));
        }
        assert_eq!(d.add(Family::V4, "us", f64::MAX), Ok(()));
        assert_eq!(d.add(Family::V4, "fr", f64::MAX), Err(Refused::TooLarge));
        assert_eq!(d.family(Family::V4).len(), 2);
        assert_eq!(d.family(Family::V4).get("de"), Some(&2.0));
    }

    #[test]
    fn prior_is_the_address_space_with_gb_as_uk() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let geo = GeoDb::open(&root.join("tests/data/geoip/GeoIP2-Country-Test.mmdb")).unwrap();
        let d = prior(&geo);
        assert_eq!(d.family(Family::V4).get("uk"), Some(&74.0));
        assert_eq!(d.family(Family::V4).get("gb"), None);
        assert_eq!(d.family(Family::V4).get("us"), Some(&6169.0));
        assert_eq!(d.total(Family::V4), 12_027.0);
        assert_eq!(d.family(Family::V6).get("jp"), Some(&(14.0 * 65536.0)));
    }

    proptest::proptest! {
        /// Hostile bytes: an error or a demand, never a panic; whatever loads has known
        /// countries, weights ≥ 0 and a finite total, and renders to itself.
        #[test]
        fn any_bytes_load_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(d) = load_slice("fuzz", &bytes) {
                check(&d);
            }
        }

        /// JSON-shaped input with any keys and values: the same.
        #[test]
        fn any_json_shape_loads_or_fails_cleanly(
            entries in proptest::collection::vec(
                ("(v4|v6|v5)", "[a-zA-Z]{0,3}", proptest::prop_oneof![
                    proptest::num::f64::ANY.prop_map(|f| f.to_string()),
                    proptest::strategy::Just("\"1\"".to_owned()),
                    proptest::strategy::Just("[]".to_owned()),
                    (0u64..u64::MAX).prop_map(|n| n.to_string()),
                ]),
                0..12,
            )
        ) {
            let mut text = String::from("{");
            for (i, (family, key, value)) in entries.iter().enumerate() {
                if i > 0 { text.push(','); }
                text.push_str(&format!("{family:?}: {{{key:?}: {value}}}"));
            }
            text.push('}');
            match load_slice("fuzz", text.as_bytes()) {
                Ok(d) => check(&d),
                Err(e) => proptest::prop_assert!(e.to_string().starts_with("fuzz: ")),
            }
        }
    }

    use proptest::strategy::Strategy as _;

    fn check(d: &Demand) {
        for family in [Family::V4, Family::V6] {
            for (&code, &w) in d.family(family) {
                assert_eq!(canonical(code), Some(code));
                assert!(w.is_finite() && w >= 0.0);
            }
            assert!(d.total(family).is_finite());
        }
        assert_eq!(
            load_slice("again", render(d).as_bytes()).ok().as_ref(),
            Some(d)
        );
    }
}
