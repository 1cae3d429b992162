//! Callback signatures: `hex(sha1(concat(sort(parts))))`, compared in constant time so a forger
//! cannot learn the right signature byte by byte from response timing.

use sha1::{Digest, Sha1};

/// The signature WeChat computes over `parts` (token, timestamp, nonce, and for safe mode the
/// `Encrypt` text). Sorting is plain byte order, not numeric.
pub fn sign(parts: &[&str]) -> String {
    crate::encoding::hex(&digest(parts))
}

/// The SHA-1 under the signature: `sha1(concat(sort(parts)))`.
fn digest(parts: &[&str]) -> [u8; 20] {
    // WeChat signs three or four parts: sort them on the stack (this runs on every callback).
    let mut few = [""; 4];
    let mut many = Vec::new();
    let sorted: &mut [&str] = if parts.len() <= few.len() {
        few[..parts.len()].copy_from_slice(parts);
        &mut few[..parts.len()]
    } else {
        many.extend_from_slice(parts);
        &mut many
    };
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for p in sorted.iter() {
        hasher.update(p.as_bytes());
    }
    hasher.finalize().into()
}

/// Checks a hex signature (case-insensitive, as some proxies upper-case it) in constant time,
/// digit against digit of the digest, with no string built on the way (every push is checked).
pub fn verify(given: &str, parts: &[&str]) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let given = given.as_bytes();
    if given.len() != 40 {
        return false;
    }
    let digest = digest(parts);
    let diff = digest.iter().zip(given.chunks_exact(2)).fold(0u8, |diff, (d, pair)| {
        diff | (pair[0].to_ascii_lowercase() ^ DIGITS[usize::from(d >> 4)]) | (pair[1].to_ascii_lowercase() ^ DIGITS[usize::from(d & 15)])
    });
    diff == 0
}

/// Equality whose time depends only on the lengths, for secrets such as the admin token.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Hex SHA-1 of `bytes` (content-derived ids, not signatures).
pub fn sha1_hex(bytes: &[u8]) -> String {
    sha1_hex_of(&[bytes])
}

/// Hex SHA-1 of the concatenation of `parts`, without building it.
pub fn sha1_hex_of(parts: &[&[u8]]) -> String {
    let mut hasher = Sha1::new();
    for p in parts {
        hasher.update(p);
    }
    crate::encoding::hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_wechatpy_vector() {
        // wechatpy test_check_signature_should_ok: token "test", ts 1410685589, nonce "test".
        assert_eq!(sign(&["test", "1410685589", "test"]), "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff");
        assert!(verify("f21891de399b4e33a1a93c9a7b8a8fffb5a443ff", &["test", "1410685589", "test"]));
        assert!(verify("F21891DE399B4E33A1A93C9A7B8A8FFFB5A443FF", &["test", "1410685589", "test"]));
    }

    #[test]
    fn more_than_four_parts_sort_the_same_way() {
        let parts = ["e", "c", "a", "d", "b"];
        assert_eq!(sign(&parts), sha1_hex(b"abcde"));
        assert_eq!(sign(&parts[..4]), sha1_hex(b"acde"));
        assert!(!verify(&sign(&parts)[..39], &parts), "a shorter signature never matches");
    }

    #[test]
    fn sort_is_lexicographic_not_numeric() {
        assert_eq!(sign(&["789", "456", "123"]), "f7c3bc1d808e04732adf679965ccc34ca7ae3441");
        assert_eq!(sign(&["9", "10"]), sign(&["10", "9"]));
    }

    #[test]
    fn msg_signature_with_encrypt_part() {
        let parts = ["RMNlACHlV5ThzfRlVS4D4", "timestamp", "nonce", "encrypt"];
        assert_eq!(sign(&parts), "8edac0945683c119ee71c9f6256d76c48aa08a96");
    }

    #[test]
    fn rejects_near_misses() {
        let parts = ["test", "1410685589", "test"];
        assert!(!verify("f21891de399b4e33a1a93c9a7b8a8fffb5a443fe", &parts));
        assert!(!verify("f21891de399b4e33a1a93c9a7b8a8fffb5a443f", &parts));
        assert!(!verify("", &parts));
        assert!(!verify("f21891de399b4e33a1a93c9a7b8a8fffb5a443ffx", &parts));
    }
}
