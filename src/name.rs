//! Domain names as pooldns keeps them: lowercase, uncompressed wire form.
//!
//! A *full name* ends with the root label (a zero byte). A *key* is the part of a name
//! below the origin, without the origin and without the root label: the apex has the empty
//! key, `0.de.pool.ntp.org` has the key `\x010\x02de`. Keys index the table's name map.

use std::fmt;

/// Longest name on the wire (RFC 1035 §2.3.4), root label included.
pub const MAX_NAME_LEN: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a name written as text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Two dots in a row, or a dot at the start.
    #[error("name {0:?} has an empty label")]
    EmptyLabel(String),
    /// A label longer than 63 bytes.
    #[error("name {0:?} has a label longer than 63 bytes")]
    LongLabel(String),
    /// More than 255 bytes on the wire.
    #[error("name {0:?} is longer than 255 bytes")]
    TooLong(String),
    /// Characters we do not accept in configured names.
    #[error("name {0:?} has a character other than letters, digits, '-', '_' or '*'")]
    BadCharacter(String),
}

/// Builds the lowercase wire form of `text` ("pool.ntp.org" or "pool.ntp.org."), root label
/// included. The root itself is "." or "".
pub fn from_text(text: &str) -> Result<Vec<u8>, NameError> {
    let mut wire = key_from_text(text.strip_suffix('.').unwrap_or(text))?;
    wire.push(0);
    if wire.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(text.to_owned()));
    }
    Ok(wire)
}

/// Builds the key of a relative name ("0.de"; "" or "@" is the apex): lowercase wire
/// labels without a root label.
pub fn key_from_text(text: &str) -> Result<Vec<u8>, NameError> {
    let mut key = Vec::with_capacity(text.len() + 1);
    if text.is_empty() || text == "@" {
        return Ok(key);
    }
    for label in text.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel(text.to_owned()));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LongLabel(text.to_owned()));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
        {
            return Err(NameError::BadCharacter(text.to_owned()));
        }
        key.push(label.len() as u8); // checked: label.len() <= 63
        key.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    if key.len() >= MAX_NAME_LEN {
        return Err(NameError::TooLong(text.to_owned()));
    }
    Ok(key)
}

/// Iterates over the labels of a key or a full name (the root label ends the walk).
pub fn labels(wire: &[u8]) -> Labels<'_> {
    Labels { rest: wire }
}

/// Iterator over the labels of a wire name; see [`labels`].
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, tail) = self.rest.split_first()?;
        let len = usize::from(len);
        if len == 0 || tail.len() < len {
            self.rest = &[];
            return None;
        }
        let (label, rest) = tail.split_at(len);
        self.rest = rest;
        Some(label)
    }
}

/// Splits a full name off the front of `wire` (uncompressed, as in the rdata the table
/// keeps): the name with its root label, and the bytes after it. None when a label runs
/// past the end, is longer than 63 bytes (a compression pointer is one), or no root label
/// comes within 255 bytes.
pub fn split_name(wire: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut at = 0;
    loop {
        let len = usize::from(*wire.get(at)?);
        at += 1 + len;
        if len > MAX_LABEL_LEN || at > MAX_NAME_LEN || at > wire.len() {
            return None;
        }
        if len == 0 {
            return Some(wire.split_at(at));
        }
    }
}

/// Renders a key or a full name as text; the apex/root renders as "@" / ".".
pub fn render(wire: &[u8]) -> String {
    Rendered(wire).to_string()
}

/// Display adapter for a wire name, escaping bytes outside printable ASCII.
#[derive(Debug, Clone, Copy)]
pub struct Rendered<'a>(pub &'a [u8]);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for label in labels(self.0) {
            if !first {
                f.write_str(".")?;
            }
            first = false;
            for &b in label {
                match b {
                    b'.' | b'\\' => write!(f, "\\{}", b as char)?,
                    0x21..=0x7e => write!(f, "{}", b as char)?,
                    _ => write!(f, "\\{b:03}")?,
                }
            }
        }
        if first {
            f.write_str(if self.0.first() == Some(&0) { "." } else { "@" })?;
        } else if self.0.last() == Some(&0) {
            f.write_str(".")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_lowercase_wire_names() {
        assert_eq!(
            from_text("Pool.NTP.org.").unwrap(),
            b"\x04pool\x03ntp\x03org\x00"
        );
        assert_eq!(
            from_text("pool.ntp.org").unwrap(),
            b"\x04pool\x03ntp\x03org\x00"
        );
        assert_eq!(from_text(".").unwrap(), b"\x00");
        assert_eq!(key_from_text("0.DE").unwrap(), b"\x010\x02de");
        assert_eq!(key_from_text("@").unwrap(), b"");
    }

    #[test]
    fn splits_a_name_off_the_front_of_rdata() {
        let rdata = b"\x03ns1\x04pool\x04test\x00\x00\x00\x00\x07";
        assert_eq!(
            split_name(rdata),
            Some((&rdata[..15], &b"\x00\x00\x00\x07"[..]))
        );
        assert_eq!(split_name(b"\x00"), Some((&b"\x00"[..], &b""[..])));
        for bad in [&b""[..], b"\x03ns", b"\x03ns1", b"\xc0\x0c", b"\x40"] {
            assert_eq!(split_name(bad), None, "{bad:?}");
        }
        let long: Vec<u8> = [&[63u8][..], &[b'a'; 63]].concat().repeat(4);
        assert_eq!(split_name(&[&long[..], &[0]].concat()), None);
    }

    #[test]
    fn rejects_bad_names() {
        assert!(matches!(
            key_from_text("a..b"),
            Err(NameError::EmptyLabel(_))
        ));
        assert!(matches!(
            key_from_text(&"a".repeat(64)),
            Err(NameError::LongLabel(_))
        ));
        let long = vec!["abcdefghij"; 30].join(".");
        assert!(matches!(from_text(&long), Err(NameError::TooLong(_))));
        assert!(matches!(
            key_from_text("a b"),
            Err(NameError::BadCharacter(_))
        ));
    }

    #[test]
    fn renders_names() {
        assert_eq!(render(b"\x010\x02de"), "0.de");
        assert_eq!(render(b"\x04pool\x03ntp\x03org\x00"), "pool.ntp.org.");
        assert_eq!(render(b""), "@");
        assert_eq!(render(b"\x00"), ".");
        assert_eq!(render(b"\x03a.b\x01\x07"), "a\\.b.\\007");
    }
}
