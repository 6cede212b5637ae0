//! Built-in country table: country → continent, and the country's name.
//!
//! Maps every ISO 3166-1 alpha-2 country code (lowercase), plus the pool's
//! `uk` zone name for the United Kingdom and the de-facto `xk` code for
//! Kosovo, to one of the six continent zones the NTP Pool uses: `africa`,
//! `asia`, `europe`, `north-america`, `oceania` and `south-america`; and to
//! its English short name for pages people read ([`name_of`]).
//!
//! The assignments follow the NTP Pool's own zones (for example `ru`, `tr`
//! and `cy` are in `europe`) and, where the pool has no country zone, the
//! country → continent table of its `geodns` server. There is no
//! `antarctica` zone, so Antarctica and the sub-Antarctic islands are put in
//! the nearest continent that has one. Non-obvious choices are commented in
//! the table.
//!
//! Lookups are allocation-free binary searches over a static sorted array.

use std::fmt;

/// A continent zone of the NTP Pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Continent {
    /// The `africa` zone.
    Africa,
    /// The `asia` zone.
    Asia,
    /// The `europe` zone.
    Europe,
    /// The `north-america` zone (includes Central America and the Caribbean).
    NorthAmerica,
    /// The `oceania` zone (includes the Pacific islands).
    Oceania,
    /// The `south-america` zone.
    SouthAmerica,
}

impl Continent {
    /// All six, in this order.
    pub const ALL: [Continent; 6] = [
        Continent::Africa,
        Continent::Asia,
        Continent::Europe,
        Continent::NorthAmerica,
        Continent::Oceania,
        Continent::SouthAmerica,
    ];

    /// Zone label: "africa", "asia", "europe", "north-america", "oceania", "south-america".
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Continent::Africa => "africa",
            Continent::Asia => "asia",
            Continent::Europe => "europe",
            Continent::NorthAmerica => "north-america",
            Continent::Oceania => "oceania",
            Continent::SouthAmerica => "south-america",
        }
    }

    /// Inverse of label, ASCII case-insensitive.
    #[must_use]
    pub fn from_label(label: &str) -> Option<Continent> {
        Continent::ALL
            .into_iter()
            .find(|c| c.label().eq_ignore_ascii_case(label))
    }

    /// Index 0..6 in ALL order (for arrays indexed by continent).
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            Continent::Africa => 0,
            Continent::Asia => 1,
            Continent::Europe => 2,
            Continent::NorthAmerica => 3,
            Continent::Oceania => 4,
            Continent::SouthAmerica => 5,
        }
    }
}

impl fmt::Display for Continent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

// Short names to keep the table readable.
use Continent::{
    Africa as AF, Asia as AS, Europe as EU, NorthAmerica as NA, Oceania as OC, SouthAmerica as SA,
};

/// ISO 3166-1's name for gb, which the pool's zone uk has too.
const UNITED_KINGDOM: &str = "United Kingdom of Great Britain and Northern Ireland";

/// Country code → continent and English short name, sorted by code (checked by a test).
///
/// The names are those of ISO 3166-1 (the English short names as the standard lists them,
/// "Korea, Republic of"), written out here rather than read from a data package; `uk` has
/// the name of `gb`, and `xk` the name in use for Kosovo.
static COUNTRIES: [(&str, Continent, &str); 251] = [
    ("ad", EU, "Andorra"),
    ("ae", AS, "United Arab Emirates"),
    ("af", AS, "Afghanistan"),
    ("ag", NA, "Antigua and Barbuda"),
    ("ai", NA, "Anguilla"),
    ("al", EU, "Albania"),
    // Armenia: the pool's GeoDNS country table puts the Caucasus in asia.
    ("am", AS, "Armenia"),
    ("ao", AF, "Angola"),
    // Antarctica: no antarctica zone; most stations are reached and supplied
    // via New Zealand and Australia, so oceania.
    ("aq", OC, "Antarctica"),
    ("ar", SA, "Argentina"),
    ("as", OC, "American Samoa"),
    ("at", EU, "Austria"),
    ("au", OC, "Australia"),
    // Aruba: Caribbean, north-america like the rest of the Caribbean even
    // though it lies off the South American coast.
    ("aw", NA, "Aruba"),
    ("ax", EU, "Åland Islands"),
    // Azerbaijan: Caucasus, asia (pool GeoDNS table).
    ("az", AS, "Azerbaijan"),
    ("ba", EU, "Bosnia and Herzegovina"),
    ("bb", NA, "Barbados"),
    ("bd", AS, "Bangladesh"),
    ("be", EU, "Belgium"),
    ("bf", AF, "Burkina Faso"),
    ("bg", EU, "Bulgaria"),
    ("bh", AS, "Bahrain"),
    ("bi", AF, "Burundi"),
    ("bj", AF, "Benin"),
    // Saint Barthélemy: French Caribbean, north-america.
    ("bl", NA, "Saint Barthélemy"),
    // Bermuda: North Atlantic, north-america.
    ("bm", NA, "Bermuda"),
    ("bn", AS, "Brunei Darussalam"),
    ("bo", SA, "Bolivia (Plurinational State of)"),
    // Caribbean Netherlands (Bonaire, Sint Eustatius, Saba): north-america.
    ("bq", NA, "Bonaire, Sint Eustatius and Saba"),
    ("br", SA, "Brazil"),
    ("bs", NA, "Bahamas"),
    ("bt", AS, "Bhutan"),
    // Bouvet Island: sub-Antarctic, no antarctica zone; nearest continent
    // is Africa.
    ("bv", AF, "Bouvet Island"),
    ("bw", AF, "Botswana"),
    ("by", EU, "Belarus"),
    ("bz", NA, "Belize"),
    ("ca", NA, "Canada"),
    // Cocos (Keeling) Islands: Indian Ocean, asia (pool GeoDNS table).
    ("cc", AS, "Cocos (Keeling) Islands"),
    ("cd", AF, "Congo, Democratic Republic of the"),
    ("cf", AF, "Central African Republic"),
    ("cg", AF, "Congo"),
    ("ch", EU, "Switzerland"),
    ("ci", AF, "Côte d'Ivoire"),
    ("ck", OC, "Cook Islands"),
    ("cl", SA, "Chile"),
    ("cm", AF, "Cameroon"),
    ("cn", AS, "China"),
    ("co", SA, "Colombia"),
    ("cr", NA, "Costa Rica"),
    ("cu", NA, "Cuba"),
    ("cv", AF, "Cabo Verde"),
    // Curaçao: Caribbean, north-america.
    ("cw", NA, "Curaçao"),
    // Christmas Island: Indian Ocean next to Java, asia (pool GeoDNS table).
    ("cx", AS, "Christmas Island"),
    // Cyprus: the pool's cy zone is in europe.
    ("cy", EU, "Cyprus"),
    ("cz", EU, "Czechia"),
    ("de", EU, "Germany"),
    ("dj", AF, "Djibouti"),
    ("dk", EU, "Denmark"),
    ("dm", NA, "Dominica"),
    ("do", NA, "Dominican Republic"),
    ("dz", AF, "Algeria"),
    ("ec", SA, "Ecuador"),
    ("ee", EU, "Estonia"),
    // Egypt: africa, including Sinai.
    ("eg", AF, "Egypt"),
    ("eh", AF, "Western Sahara"),
    ("er", AF, "Eritrea"),
    ("es", EU, "Spain"),
    ("et", AF, "Ethiopia"),
    ("fi", EU, "Finland"),
    ("fj", OC, "Fiji"),
    // Falkland Islands: south-america.
    ("fk", SA, "Falkland Islands (Malvinas)"),
    ("fm", OC, "Micronesia (Federated States of)"),
    ("fo", EU, "Faroe Islands"),
    ("fr", EU, "France"),
    ("ga", AF, "Gabon"),
    // United Kingdom by its ISO code; the pool's zone is named uk (below).
    ("gb", EU, UNITED_KINGDOM),
    ("gd", NA, "Grenada"),
    // Georgia: Caucasus, asia (pool GeoDNS table).
    ("ge", AS, "Georgia"),
    // French Guiana: French overseas region, but on the South American
    // mainland, so south-america.
    ("gf", SA, "French Guiana"),
    ("gg", EU, "Guernsey"),
    ("gh", AF, "Ghana"),
    ("gi", EU, "Gibraltar"),
    // Greenland: geographically North America (pool GeoDNS table).
    ("gl", NA, "Greenland"),
    ("gm", AF, "Gambia"),
    ("gn", AF, "Guinea"),
    // Guadeloupe: French Caribbean, north-america.
    ("gp", NA, "Guadeloupe"),
    ("gq", AF, "Equatorial Guinea"),
    ("gr", EU, "Greece"),
    // South Georgia and the South Sandwich Islands: sub-Antarctic, no
    // antarctica zone; next to the Falklands, so south-america.
    ("gs", SA, "South Georgia and the South Sandwich Islands"),
    ("gt", NA, "Guatemala"),
    // Guam: Pacific island, oceania.
    ("gu", OC, "Guam"),
    ("gw", AF, "Guinea-Bissau"),
    ("gy", SA, "Guyana"),
    ("hk", AS, "Hong Kong"),
    // Heard Island and McDonald Islands: sub-Antarctic Australian
    // territory, no antarctica zone; oceania with Australia.
    ("hm", OC, "Heard Island and McDonald Islands"),
    ("hn", NA, "Honduras"),
    ("hr", EU, "Croatia"),
    ("ht", NA, "Haiti"),
    ("hu", EU, "Hungary"),
    // Indonesia: asia, including its New Guinea provinces.
    ("id", AS, "Indonesia"),
    ("ie", EU, "Ireland"),
    ("il", AS, "Israel"),
    ("im", EU, "Isle of Man"),
    ("in", AS, "India"),
    // British Indian Ocean Territory: asia (pool GeoDNS table).
    ("io", AS, "British Indian Ocean Territory"),
    ("iq", AS, "Iraq"),
    ("ir", AS, "Iran (Islamic Republic of)"),
    ("is", EU, "Iceland"),
    ("it", EU, "Italy"),
    ("je", EU, "Jersey"),
    ("jm", NA, "Jamaica"),
    ("jo", AS, "Jordan"),
    ("jp", AS, "Japan"),
    ("ke", AF, "Kenya"),
    ("kg", AS, "Kyrgyzstan"),
    ("kh", AS, "Cambodia"),
    ("ki", OC, "Kiribati"),
    // Comoros: Indian Ocean, africa.
    ("km", AF, "Comoros"),
    ("kn", NA, "Saint Kitts and Nevis"),
    ("kp", AS, "Korea (Democratic People's Republic of)"),
    ("kr", AS, "Korea, Republic of"),
    ("kw", AS, "Kuwait"),
    // Cayman Islands: Caribbean, north-america.
    ("ky", NA, "Cayman Islands"),
    // Kazakhstan: mostly in Asia, asia (pool GeoDNS table).
    ("kz", AS, "Kazakhstan"),
    ("la", AS, "Lao People's Democratic Republic"),
    ("lb", AS, "Lebanon"),
    ("lc", NA, "Saint Lucia"),
    ("li", EU, "Liechtenstein"),
    ("lk", AS, "Sri Lanka"),
    ("lr", AF, "Liberia"),
    ("ls", AF, "Lesotho"),
    ("lt", EU, "Lithuania"),
    ("lu", EU, "Luxembourg"),
    ("lv", EU, "Latvia"),
    ("ly", AF, "Libya"),
    ("ma", AF, "Morocco"),
    ("mc", EU, "Monaco"),
    ("md", EU, "Moldova, Republic of"),
    ("me", EU, "Montenegro"),
    // Saint Martin (French part): Caribbean, north-america.
    ("mf", NA, "Saint Martin (French part)"),
    // Madagascar: africa.
    ("mg", AF, "Madagascar"),
    ("mh", OC, "Marshall Islands"),
    ("mk", EU, "North Macedonia"),
    ("ml", AF, "Mali"),
    ("mm", AS, "Myanmar"),
    ("mn", AS, "Mongolia"),
    ("mo", AS, "Macao"),
    // Northern Mariana Islands: Pacific, oceania.
    ("mp", OC, "Northern Mariana Islands"),
    // Martinique: French Caribbean, north-america.
    ("mq", NA, "Martinique"),
    ("mr", AF, "Mauritania"),
    ("ms", NA, "Montserrat"),
    ("mt", EU, "Malta"),
    // Mauritius: Indian Ocean, africa.
    ("mu", AF, "Mauritius"),
    // Maldives: Indian Ocean, asia.
    ("mv", AS, "Maldives"),
    ("mw", AF, "Malawi"),
    ("mx", NA, "Mexico"),
    ("my", AS, "Malaysia"),
    ("mz", AF, "Mozambique"),
    ("na", AF, "Namibia"),
    ("nc", OC, "New Caledonia"),
    ("ne", AF, "Niger"),
    ("nf", OC, "Norfolk Island"),
    ("ng", AF, "Nigeria"),
    ("ni", NA, "Nicaragua"),
    ("nl", EU, "Netherlands, Kingdom of the"),
    ("no", EU, "Norway"),
    ("np", AS, "Nepal"),
    ("nr", OC, "Nauru"),
    ("nu", OC, "Niue"),
    ("nz", OC, "New Zealand"),
    ("om", AS, "Oman"),
    // Panama: Central America, north-america.
    ("pa", NA, "Panama"),
    ("pe", SA, "Peru"),
    ("pf", OC, "French Polynesia"),
    ("pg", OC, "Papua New Guinea"),
    ("ph", AS, "Philippines"),
    ("pk", AS, "Pakistan"),
    ("pl", EU, "Poland"),
    // Saint Pierre and Miquelon: French islands off Newfoundland,
    // north-america.
    ("pm", NA, "Saint Pierre and Miquelon"),
    ("pn", OC, "Pitcairn"),
    ("pr", NA, "Puerto Rico"),
    ("ps", AS, "Palestine, State of"),
    ("pt", EU, "Portugal"),
    ("pw", OC, "Palau"),
    ("py", SA, "Paraguay"),
    ("qa", AS, "Qatar"),
    // Réunion: French overseas region in the Indian Ocean, africa.
    ("re", AF, "Réunion"),
    ("ro", EU, "Romania"),
    ("rs", EU, "Serbia"),
    // Russia: the pool's ru zone is in europe, Siberia included.
    ("ru", EU, "Russian Federation"),
    ("rw", AF, "Rwanda"),
    ("sa", AS, "Saudi Arabia"),
    ("sb", OC, "Solomon Islands"),
    // Seychelles: Indian Ocean, africa.
    ("sc", AF, "Seychelles"),
    ("sd", AF, "Sudan"),
    ("se", EU, "Sweden"),
    ("sg", AS, "Singapore"),
    // Saint Helena, Ascension and Tristan da Cunha: South Atlantic, africa.
    ("sh", AF, "Saint Helena, Ascension and Tristan da Cunha"),
    ("si", EU, "Slovenia"),
    // Svalbard and Jan Mayen: Norwegian, europe.
    ("sj", EU, "Svalbard and Jan Mayen"),
    ("sk", EU, "Slovakia"),
    ("sl", AF, "Sierra Leone"),
    ("sm", EU, "San Marino"),
    ("sn", AF, "Senegal"),
    ("so", AF, "Somalia"),
    ("sr", SA, "Suriname"),
    // South Sudan: africa.
    ("ss", AF, "South Sudan"),
    // São Tomé and Príncipe: Gulf of Guinea, africa.
    ("st", AF, "Sao Tome and Principe"),
    ("sv", NA, "El Salvador"),
    // Sint Maarten (Dutch part): Caribbean, north-america.
    ("sx", NA, "Sint Maarten (Dutch part)"),
    ("sy", AS, "Syrian Arab Republic"),
    ("sz", AF, "Eswatini"),
    ("tc", NA, "Turks and Caicos Islands"),
    ("td", AF, "Chad"),
    // French Southern Territories: sub-Antarctic islands administered from
    // Réunion, no antarctica zone; africa like Réunion.
    ("tf", AF, "French Southern Territories"),
    ("tg", AF, "Togo"),
    ("th", AS, "Thailand"),
    ("tj", AS, "Tajikistan"),
    ("tk", OC, "Tokelau"),
    // Timor-Leste: asia (pool GeoDNS table).
    ("tl", AS, "Timor-Leste"),
    ("tm", AS, "Turkmenistan"),
    ("tn", AF, "Tunisia"),
    ("to", OC, "Tonga"),
    // Turkey: the pool's tr zone is in europe.
    ("tr", EU, "Türkiye"),
    // Trinidad and Tobago: Caribbean, north-america.
    ("tt", NA, "Trinidad and Tobago"),
    ("tv", OC, "Tuvalu"),
    ("tw", AS, "Taiwan, Province of China"),
    ("tz", AF, "Tanzania, United Republic of"),
    ("ua", EU, "Ukraine"),
    ("ug", AF, "Uganda"),
    // The pool's zone name for the United Kingdom (ISO code gb).
    ("uk", EU, UNITED_KINGDOM),
    // United States Minor Outlying Islands: mostly Pacific atolls, oceania.
    ("um", OC, "United States Minor Outlying Islands"),
    ("us", NA, "United States of America"),
    ("uy", SA, "Uruguay"),
    ("uz", AS, "Uzbekistan"),
    ("va", EU, "Holy See"),
    ("vc", NA, "Saint Vincent and the Grenadines"),
    ("ve", SA, "Venezuela (Bolivarian Republic of)"),
    ("vg", NA, "Virgin Islands (British)"),
    ("vi", NA, "Virgin Islands (U.S.)"),
    ("vn", AS, "Viet Nam"),
    ("vu", OC, "Vanuatu"),
    ("wf", OC, "Wallis and Futuna"),
    ("ws", OC, "Samoa"),
    // Kosovo: not ISO-assigned, but GeoIP databases use xk; europe.
    ("xk", EU, "Kosovo"),
    ("ye", AS, "Yemen"),
    // Mayotte: French department in the Indian Ocean, africa.
    ("yt", AF, "Mayotte"),
    ("za", AF, "South Africa"),
    ("zm", AF, "Zambia"),
    ("zw", AF, "Zimbabwe"),
];

/// Lowercases a two-letter ASCII code into a stack key; `None` otherwise.
fn key(country: &str) -> Option<[u8; 2]> {
    let &[a, b] = country.as_bytes() else {
        return None;
    };
    if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() {
        Some([a.to_ascii_lowercase(), b.to_ascii_lowercase()])
    } else {
        None
    }
}

/// A server's `zones` (in a feed or a registry) lowercased, each a country code or a
/// continent label; Err with the first that is neither.
pub fn zone_labels<S: AsRef<str>>(labels: &[S]) -> Result<Vec<String>, &str> {
    labels
        .iter()
        .map(|z| {
            let lower = z.as_ref().to_ascii_lowercase();
            if continent_of(&lower).is_some() || Continent::from_label(&lower).is_some() {
                Ok(lower)
            } else {
                Err(z.as_ref())
            }
        })
        .collect()
}

/// Continent of a country code, ASCII case-insensitive ("DE" and "de" both work). None for unknown codes.
#[must_use]
pub fn continent_of(country: &str) -> Option<Continent> {
    // Called per feed entry and per server of a table build: a table by the two letters
    // instead of a search of the sorted list.
    static BY_LETTERS: std::sync::OnceLock<[Option<Continent>; 26 * 26]> =
        std::sync::OnceLock::new();
    let table = BY_LETTERS.get_or_init(|| {
        let mut table = [None; 26 * 26];
        for &(code, continent, _) in &COUNTRIES {
            if let Some(i) = code_slot(code) {
                table[i] = Some(continent);
            }
        }
        table
    });
    code_slot(country).and_then(|i| table[i])
}

/// Where a two-letter code goes in a table of 26 × 26 (ASCII case-insensitive); None for
/// anything but two letters.
pub fn code_slot(code: &str) -> Option<usize> {
    key(code).map(|[a, b]| usize::from(a - b'a') * 26 + usize::from(b - b'a'))
}

/// Every known country code (lowercase) with its continent, sorted by code.
pub fn countries() -> impl Iterator<Item = (&'static str, Continent)> {
    COUNTRIES
        .iter()
        .map(|&(code, continent, _)| (code, continent))
}

/// The English short name of a country code ("de" → "Germany"), ASCII case-insensitive;
/// None for unknown codes. For pages and reports, not the query path.
#[must_use]
pub fn name_of(country: &str) -> Option<&'static str> {
    let key = key(country)?;
    COUNTRIES
        .binary_search_by(|&(code, _, _)| code.as_bytes().cmp(&key[..]))
        .ok()
        .map(|i| COUNTRIES[i].2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_labels_lowercase_countries_and_continents_and_name_the_first_bad_one() {
        assert_eq!(
            zone_labels(&["DE", "europe", "Asia"]),
            Ok(vec![
                "de".to_owned(),
                "europe".to_owned(),
                "asia".to_owned()
            ])
        );
        assert_eq!(zone_labels(&["de", "Atlantis", "xx"]), Err("Atlantis"));
        assert_eq!(zone_labels::<&str>(&[]), Ok(vec![]));
    }

    /// Every ISO 3166-1 alpha-2 code currently assigned (249).
    const ISO_CODES: &str = "\
        ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi \
        bj bl bm bn bo bq br bs bt bv bw by bz ca cc cd cf cg ch ci ck cl cm cn \
        co cr cu cv cw cx cy cz de dj dk dm do dz ec ee eg eh er es et fi fj fk \
        fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm \
        hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km kn \
        kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mf mg mh mk \
        ml mm mn mo mp mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np \
        nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt pw py qa re ro rs ru rw \
        sa sb sc sd se sg sh si sj sk sl sm sn so sr ss st sv sx sy sz tc td tf \
        tg th tj tk tl tm tn to tr tt tv tw tz ua ug um us uy uz va vc ve vg vi \
        vn vu wf ws ye yt za zm zw";

    #[test]
    fn table_is_sorted_lowercase_without_duplicates() {
        for pair in COUNTRIES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} !< {}", pair[0].0, pair[1].0);
        }
        for (code, _, _) in COUNTRIES {
            assert_eq!(code.len(), 2, "{code}");
            assert!(code.bytes().all(|b| b.is_ascii_lowercase()), "{code}");
        }
    }

    #[test]
    fn every_iso_code_maps() {
        let codes: Vec<&str> = ISO_CODES.split_whitespace().collect();
        assert_eq!(codes.len(), 249);
        for code in codes {
            assert!(continent_of(code).is_some(), "{code} has no continent");
        }
        // Everything beyond ISO is deliberate: uk (pool zone) and xk (Kosovo).
        assert_eq!(COUNTRIES.len(), 249 + 2);
    }

    #[test]
    fn pool_assignments() {
        for code in ["ru", "tr", "cy", "uk", "gb", "de"] {
            assert_eq!(continent_of(code), Some(Continent::Europe), "{code}");
        }
        for code in ["us", "ca", "mx", "pa", "pr"] {
            assert_eq!(continent_of(code), Some(Continent::NorthAmerica), "{code}");
        }
        for code in ["br", "ar", "gf"] {
            assert_eq!(continent_of(code), Some(Continent::SouthAmerica), "{code}");
        }
        for code in ["au", "nz", "fj"] {
            assert_eq!(continent_of(code), Some(Continent::Oceania), "{code}");
        }
        for code in ["jp", "cn", "in"] {
            assert_eq!(continent_of(code), Some(Continent::Asia), "{code}");
        }
        for code in ["za", "eg", "ng", "re", "yt"] {
            assert_eq!(continent_of(code), Some(Continent::Africa), "{code}");
        }
    }

    #[test]
    fn case_insensitive() {
        assert_eq!(continent_of("DE"), Some(Continent::Europe));
        assert_eq!(continent_of("De"), Some(Continent::Europe));
        assert_eq!(continent_of("dE"), Some(Continent::Europe));
        assert_eq!(continent_of("UK"), Some(Continent::Europe));
        assert_eq!(continent_of("Us"), Some(Continent::NorthAmerica));
    }

    #[test]
    fn unknown_codes() {
        for code in [
            "", "d", "deu", "usa", "zz", "xx", "eu", "ap", "a1", "1a", "--", "d\u{e9}", "\u{e9}",
            " de", "de ",
        ] {
            assert_eq!(continent_of(code), None, "{code:?}");
        }
    }

    #[test]
    fn labels_round_trip() {
        for (i, c) in Continent::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(Continent::from_label(c.label()), Some(c));
            assert_eq!(
                Continent::from_label(&c.label().to_ascii_uppercase()),
                Some(c)
            );
            assert_eq!(c.to_string(), c.label());
        }
        assert_eq!(
            Continent::from_label("north-america"),
            Some(Continent::NorthAmerica)
        );
        assert_eq!(Continent::from_label("antarctica"), None);
        assert_eq!(Continent::from_label(""), None);
        assert_eq!(Continent::from_label("north america"), None);
    }

    #[test]
    fn every_code_has_its_english_short_name() {
        for (code, _, name) in COUNTRIES {
            assert_eq!(name_of(code), Some(name), "{code}");
            assert_eq!(name_of(&code.to_ascii_uppercase()), Some(name), "{code}");
            assert!(!name.is_empty() && name.trim() == name, "{code}: {name:?}");
        }
        for (code, name) in [
            ("de", "Germany"),
            ("us", "United States of America"),
            ("jp", "Japan"),
            ("ci", "Côte d'Ivoire"),
            ("kr", "Korea, Republic of"),
            ("xk", "Kosovo"),
        ] {
            assert_eq!(name_of(code), Some(name), "{code}");
        }
        // The pool's uk zone is the United Kingdom, gb in ISO 3166.
        assert_eq!(name_of("uk"), name_of("gb"));
        for code in ["", "zz", "deu", "eu", " de"] {
            assert_eq!(name_of(code), None, "{code:?}");
        }
    }

    #[test]
    fn every_continent_has_a_country() {
        for c in Continent::ALL {
            assert!(countries().any(|(_, cc)| cc == c), "{c} has no country");
        }
    }

    #[test]
    fn countries_iterates_whole_table_in_order() {
        let all: Vec<_> = countries().collect();
        assert_eq!(all.len(), COUNTRIES.len());
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(all.first(), Some(&("ad", Continent::Europe)));
        for (code, c) in all {
            assert_eq!(continent_of(code), Some(c));
        }
    }
}
