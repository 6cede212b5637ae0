//! Built-in country → continent table.
//!
//! Maps every ISO 3166-1 alpha-2 country code (lowercase), plus the pool's
//! `uk` zone name for the United Kingdom and the de-facto `xk` code for
//! Kosovo, to one of the six continent zones the NTP Pool uses: `africa`,
//! `asia`, `europe`, `north-america`, `oceania` and `south-america`.
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

/// Country code → continent, sorted by code (checked by a test).
static COUNTRIES: [(&str, Continent); 251] = [
    ("ad", EU),
    ("ae", AS),
    ("af", AS),
    ("ag", NA),
    ("ai", NA),
    ("al", EU),
    // Armenia: the pool's GeoDNS country table puts the Caucasus in asia.
    ("am", AS),
    ("ao", AF),
    // Antarctica: no antarctica zone; most stations are reached and supplied
    // via New Zealand and Australia, so oceania.
    ("aq", OC),
    ("ar", SA),
    ("as", OC),
    ("at", EU),
    ("au", OC),
    // Aruba: Caribbean, north-america like the rest of the Caribbean even
    // though it lies off the South American coast.
    ("aw", NA),
    ("ax", EU),
    // Azerbaijan: Caucasus, asia (pool GeoDNS table).
    ("az", AS),
    ("ba", EU),
    ("bb", NA),
    ("bd", AS),
    ("be", EU),
    ("bf", AF),
    ("bg", EU),
    ("bh", AS),
    ("bi", AF),
    ("bj", AF),
    // Saint Barthélemy: French Caribbean, north-america.
    ("bl", NA),
    // Bermuda: North Atlantic, north-america.
    ("bm", NA),
    ("bn", AS),
    ("bo", SA),
    // Caribbean Netherlands (Bonaire, Sint Eustatius, Saba): north-america.
    ("bq", NA),
    ("br", SA),
    ("bs", NA),
    ("bt", AS),
    // Bouvet Island: sub-Antarctic, no antarctica zone; nearest continent
    // is Africa.
    ("bv", AF),
    ("bw", AF),
    ("by", EU),
    ("bz", NA),
    ("ca", NA),
    // Cocos (Keeling) Islands: Indian Ocean, asia (pool GeoDNS table).
    ("cc", AS),
    ("cd", AF),
    ("cf", AF),
    ("cg", AF),
    ("ch", EU),
    ("ci", AF),
    ("ck", OC),
    ("cl", SA),
    ("cm", AF),
    ("cn", AS),
    ("co", SA),
    ("cr", NA),
    ("cu", NA),
    ("cv", AF),
    // Curaçao: Caribbean, north-america.
    ("cw", NA),
    // Christmas Island: Indian Ocean next to Java, asia (pool GeoDNS table).
    ("cx", AS),
    // Cyprus: the pool's cy zone is in europe.
    ("cy", EU),
    ("cz", EU),
    ("de", EU),
    ("dj", AF),
    ("dk", EU),
    ("dm", NA),
    ("do", NA),
    ("dz", AF),
    ("ec", SA),
    ("ee", EU),
    // Egypt: africa, including Sinai.
    ("eg", AF),
    ("eh", AF),
    ("er", AF),
    ("es", EU),
    ("et", AF),
    ("fi", EU),
    ("fj", OC),
    // Falkland Islands: south-america.
    ("fk", SA),
    ("fm", OC),
    ("fo", EU),
    ("fr", EU),
    ("ga", AF),
    // United Kingdom by its ISO code; the pool's zone is named uk (below).
    ("gb", EU),
    ("gd", NA),
    // Georgia: Caucasus, asia (pool GeoDNS table).
    ("ge", AS),
    // French Guiana: French overseas region, but on the South American
    // mainland, so south-america.
    ("gf", SA),
    ("gg", EU),
    ("gh", AF),
    ("gi", EU),
    // Greenland: geographically North America (pool GeoDNS table).
    ("gl", NA),
    ("gm", AF),
    ("gn", AF),
    // Guadeloupe: French Caribbean, north-america.
    ("gp", NA),
    ("gq", AF),
    ("gr", EU),
    // South Georgia and the South Sandwich Islands: sub-Antarctic, no
    // antarctica zone; next to the Falklands, so south-america.
    ("gs", SA),
    ("gt", NA),
    // Guam: Pacific island, oceania.
    ("gu", OC),
    ("gw", AF),
    ("gy", SA),
    ("hk", AS),
    // Heard Island and McDonald Islands: sub-Antarctic Australian
    // territory, no antarctica zone; oceania with Australia.
    ("hm", OC),
    ("hn", NA),
    ("hr", EU),
    ("ht", NA),
    ("hu", EU),
    // Indonesia: asia, including its New Guinea provinces.
    ("id", AS),
    ("ie", EU),
    ("il", AS),
    ("im", EU),
    ("in", AS),
    // British Indian Ocean Territory: asia (pool GeoDNS table).
    ("io", AS),
    ("iq", AS),
    ("ir", AS),
    ("is", EU),
    ("it", EU),
    ("je", EU),
    ("jm", NA),
    ("jo", AS),
    ("jp", AS),
    ("ke", AF),
    ("kg", AS),
    ("kh", AS),
    ("ki", OC),
    // Comoros: Indian Ocean, africa.
    ("km", AF),
    ("kn", NA),
    ("kp", AS),
    ("kr", AS),
    ("kw", AS),
    // Cayman Islands: Caribbean, north-america.
    ("ky", NA),
    // Kazakhstan: mostly in Asia, asia (pool GeoDNS table).
    ("kz", AS),
    ("la", AS),
    ("lb", AS),
    ("lc", NA),
    ("li", EU),
    ("lk", AS),
    ("lr", AF),
    ("ls", AF),
    ("lt", EU),
    ("lu", EU),
    ("lv", EU),
    ("ly", AF),
    ("ma", AF),
    ("mc", EU),
    ("md", EU),
    ("me", EU),
    // Saint Martin (French part): Caribbean, north-america.
    ("mf", NA),
    // Madagascar: africa.
    ("mg", AF),
    ("mh", OC),
    ("mk", EU),
    ("ml", AF),
    ("mm", AS),
    ("mn", AS),
    ("mo", AS),
    // Northern Mariana Islands: Pacific, oceania.
    ("mp", OC),
    // Martinique: French Caribbean, north-america.
    ("mq", NA),
    ("mr", AF),
    ("ms", NA),
    ("mt", EU),
    // Mauritius: Indian Ocean, africa.
    ("mu", AF),
    // Maldives: Indian Ocean, asia.
    ("mv", AS),
    ("mw", AF),
    ("mx", NA),
    ("my", AS),
    ("mz", AF),
    ("na", AF),
    ("nc", OC),
    ("ne", AF),
    ("nf", OC),
    ("ng", AF),
    ("ni", NA),
    ("nl", EU),
    ("no", EU),
    ("np", AS),
    ("nr", OC),
    ("nu", OC),
    ("nz", OC),
    ("om", AS),
    // Panama: Central America, north-america.
    ("pa", NA),
    ("pe", SA),
    ("pf", OC),
    ("pg", OC),
    ("ph", AS),
    ("pk", AS),
    ("pl", EU),
    // Saint Pierre and Miquelon: French islands off Newfoundland,
    // north-america.
    ("pm", NA),
    ("pn", OC),
    ("pr", NA),
    ("ps", AS),
    ("pt", EU),
    ("pw", OC),
    ("py", SA),
    ("qa", AS),
    // Réunion: French overseas region in the Indian Ocean, africa.
    ("re", AF),
    ("ro", EU),
    ("rs", EU),
    // Russia: the pool's ru zone is in europe, Siberia included.
    ("ru", EU),
    ("rw", AF),
    ("sa", AS),
    ("sb", OC),
    // Seychelles: Indian Ocean, africa.
    ("sc", AF),
    ("sd", AF),
    ("se", EU),
    ("sg", AS),
    // Saint Helena, Ascension and Tristan da Cunha: South Atlantic, africa.
    ("sh", AF),
    ("si", EU),
    // Svalbard and Jan Mayen: Norwegian, europe.
    ("sj", EU),
    ("sk", EU),
    ("sl", AF),
    ("sm", EU),
    ("sn", AF),
    ("so", AF),
    ("sr", SA),
    // South Sudan: africa.
    ("ss", AF),
    // São Tomé and Príncipe: Gulf of Guinea, africa.
    ("st", AF),
    ("sv", NA),
    // Sint Maarten (Dutch part): Caribbean, north-america.
    ("sx", NA),
    ("sy", AS),
    ("sz", AF),
    ("tc", NA),
    ("td", AF),
    // French Southern Territories: sub-Antarctic islands administered from
    // Réunion, no antarctica zone; africa like Réunion.
    ("tf", AF),
    ("tg", AF),
    ("th", AS),
    ("tj", AS),
    ("tk", OC),
    // Timor-Leste: asia (pool GeoDNS table).
    ("tl", AS),
    ("tm", AS),
    ("tn", AF),
    ("to", OC),
    // Turkey: the pool's tr zone is in europe.
    ("tr", EU),
    // Trinidad and Tobago: Caribbean, north-america.
    ("tt", NA),
    ("tv", OC),
    ("tw", AS),
    ("tz", AF),
    ("ua", EU),
    ("ug", AF),
    // The pool's zone name for the United Kingdom (ISO code gb).
    ("uk", EU),
    // United States Minor Outlying Islands: mostly Pacific atolls, oceania.
    ("um", OC),
    ("us", NA),
    ("uy", SA),
    ("uz", AS),
    ("va", EU),
    ("vc", NA),
    ("ve", SA),
    ("vg", NA),
    ("vi", NA),
    ("vn", AS),
    ("vu", OC),
    ("wf", OC),
    ("ws", OC),
    // Kosovo: not ISO-assigned, but GeoIP databases use xk; europe.
    ("xk", EU),
    ("ye", AS),
    // Mayotte: French department in the Indian Ocean, africa.
    ("yt", AF),
    ("za", AF),
    ("zm", AF),
    ("zw", AF),
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

/// Continent of a country code, ASCII case-insensitive ("DE" and "de" both work). None for unknown codes.
#[must_use]
pub fn continent_of(country: &str) -> Option<Continent> {
    // Called per feed entry and per server of a table build: a table by the two letters
    // instead of a search of the sorted list.
    static BY_LETTERS: std::sync::OnceLock<[Option<Continent>; 26 * 26]> =
        std::sync::OnceLock::new();
    let table = BY_LETTERS.get_or_init(|| {
        let mut table = [None; 26 * 26];
        for &(code, continent) in &COUNTRIES {
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
    COUNTRIES.iter().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for (code, _) in COUNTRIES {
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
