//! DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018): every instance of a
//! fleet that shares the secret creates and accepts the same cookies.
//!
//! Server cookie, version 1: `01 000000 <timestamp u32> <hash 8>`, where hash =
//! SipHash-2-4(secret; client cookie | 01 000000 | timestamp | client address).
//!
//! pooldns does not enforce cookies (it never sends BADCOOKIE): a missing, stale or wrong
//! server cookie gets a normal answer with a fresh cookie (RFC 7873 §5.2.3–5.2.4). Whether
//! the cookie was valid is reported for statistics.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher24;

/// A cookie option as sent by a client, checked for length (RFC 7873 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookie {
    /// The client cookie.
    pub client: [u8; 8],
    /// The server cookie bytes (8 to 32), zero-padded.
    server: [u8; 32],
    /// Length of the server cookie; 0 when the client sent only its own.
    server_len: u8,
}

/// How long a server cookie stays valid (RFC 9018 §4.3: one hour) and how far in the
/// future its timestamp may lie (five minutes of clock skew between instances).
const LIFETIME: u32 = 3600;
const SKEW: u32 = 300;

/// Size of the cookie option data we send: client 8 + server 16.
pub const REPLY_LEN: usize = 24;

impl Cookie {
    /// Reads the option data; None for a length RFC 7873 §5.2.2 calls malformed (not 8,
    /// and not 16 to 40).
    pub fn parse(data: &[u8]) -> Option<Cookie> {
        let len = data.len();
        if len != 8 && !(16..=40).contains(&len) {
            return None;
        }
        let mut client = [0u8; 8];
        client.copy_from_slice(&data[..8]);
        let mut server = [0u8; 32];
        server[..len - 8].copy_from_slice(&data[8..]);
        Some(Cookie {
            client,
            server,
            server_len: (len - 8) as u8, // at most 32
        })
    }

    /// The server cookie the client sent, if any.
    pub fn server(&self) -> &[u8] {
        &self.server[..usize::from(self.server_len)]
    }

    /// Whether the client's server cookie is one we (or a fleet sibling) made for this
    /// client address within its lifetime.
    pub fn is_valid(&self, secret: &[u8; 16], client: IpAddr, now: u32) -> bool {
        let s = self.server();
        if s.len() != 16 || s[..4] != [1, 0, 0, 0] {
            return false;
        }
        let timestamp = u32::from_be_bytes([s[4], s[5], s[6], s[7]]);
        // Serial-number style comparison (RFC 1982) so the check survives 2106.
        let age = now.wrapping_sub(timestamp);
        let fresh = age <= LIFETIME || timestamp.wrapping_sub(now) <= SKEW;
        fresh && s[8..16] == hash(secret, &self.client, timestamp, client)
    }

    /// The option data to send back: the client cookie and a fresh server cookie.
    pub fn reply(&self, secret: &[u8; 16], client: IpAddr, now: u32) -> [u8; REPLY_LEN] {
        let mut out = [0u8; REPLY_LEN];
        out[..8].copy_from_slice(&self.client);
        out[8] = 1;
        out[12..16].copy_from_slice(&now.to_be_bytes());
        out[16..].copy_from_slice(&hash(secret, &self.client, now, client));
        out
    }
}

fn hash(secret: &[u8; 16], client_cookie: &[u8; 8], timestamp: u32, client: IpAddr) -> [u8; 8] {
    let mut h = SipHasher24::new_with_key(secret);
    h.write(client_cookie);
    h.write(&[1, 0, 0, 0]);
    h.write(&timestamp.to_be_bytes());
    match client {
        IpAddr::V4(v4) => h.write(&v4.octets()),
        IpAddr::V6(v6) => h.write(&v6.octets()),
    }
    h.finish().to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 9018 Appendix A.1: a learning client, IPv4.
    #[test]
    fn matches_rfc_9018_test_vector() {
        let secret: [u8; 16] = hex("e5e973e5a6b2a43f48e7dc849e37bfcf").try_into().unwrap();
        let client: IpAddr = "198.51.100.100".parse().unwrap();
        let c = Cookie::parse(&hex("2464c4abcf10c957")).unwrap();
        let reply = c.reply(&secret, client, 1559731985);
        assert_eq!(
            reply.to_vec(),
            hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480")
        );
        let back = Cookie::parse(&reply).unwrap();
        assert!(back.is_valid(&secret, client, 1559731985 + 100));
        assert!(!back.is_valid(&secret, client, 1559731985 + 3601));
        assert!(!back.is_valid(&secret, "198.51.100.101".parse().unwrap(), 1559731985));
        assert!(!back.is_valid(&[0; 16], client, 1559731985));
    }

    #[test]
    fn rejects_malformed_lengths() {
        for len in [0, 1, 7, 9, 15, 41] {
            assert!(Cookie::parse(&vec![0; len]).is_none(), "{len}");
        }
        for len in [8, 16, 24, 40] {
            assert!(Cookie::parse(&vec![0; len]).is_some(), "{len}");
        }
    }
}
