//! Safe-mode (AES) message crypto.
//!
//! WeChat pads to a **32-byte** PKCS#7 block, so standard 16-byte unpadders reject about half of
//! real ciphertexts. We decrypt with no padding and strip the pad ourselves, then check the
//! length field and the appid suffix before trusting anything.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::error::{Error, Result};

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

const PAD_BLOCK: usize = 32;

/// A decoded EncodingAESKey. The IV is the first 16 bytes of the key, as WeChat defines it.
#[derive(Clone, PartialEq, Eq)]
pub struct AesKey([u8; 32]);

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesKey(..)") // never print key material into logs
    }
}

impl AesKey {
    /// Parses the 43-character EncodingAESKey shown in the WeChat console.
    pub fn parse(encoding_aes_key: &str) -> std::result::Result<Self, String> {
        let s = encoding_aes_key.trim();
        if s.len() != 43 {
            return Err(format!("must be 43 characters, got {}", s.len()));
        }
        let mut padded = String::with_capacity(44);
        padded.push_str(s);
        padded.push('=');
        // The 43rd character carries 2 spare bits that WeChat does not zero, so the canonical
        // (strict) decoder would refuse real keys.
        let lenient =
            base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true));
        let bytes = lenient.decode(padded.as_bytes()).map_err(|_| "is not valid base64".to_string())?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| "does not decode to 32 bytes".to_string())?;
        Ok(AesKey(key))
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.0[..16]);
        iv
    }

    /// Encrypts `msg` for `appid` with the given 16-byte random prefix; returns base64.
    pub fn encrypt(&self, msg: &str, appid: &str, random_prefix: [u8; 16]) -> String {
        let body_len = 16 + 4 + msg.len() + appid.len();
        let pad = PAD_BLOCK - body_len % PAD_BLOCK; // 1..=32, never 0
        let mut buf = Vec::with_capacity(body_len + pad);
        buf.extend_from_slice(&random_prefix);
        buf.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        buf.extend_from_slice(msg.as_bytes());
        buf.extend_from_slice(appid.as_bytes());
        buf.resize(body_len + pad, pad as u8);
        let len = buf.len();
        let out = Enc::new(&self.0.into(), &self.iv().into())
            .encrypt_padded_mut::<NoPadding>(&mut buf, len)
            .expect("buffer is a whole number of blocks by construction");
        B64.encode(out)
    }

    /// Decrypts base64 `encrypted` and checks the pad, the length field and the appid.
    pub fn decrypt(&self, encrypted: &str, appid: &str) -> Result<String> {
        let mut buf = B64.decode(encrypted.trim().as_bytes()).map_err(|_| Error::Decrypt("Encrypt is not base64"))?;
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err(Error::Decrypt("ciphertext is not a whole number of AES blocks"));
        }
        let plain = Dec::new(&self.0.into(), &self.iv().into()).decrypt_padded_mut::<NoPadding>(&mut buf).map_err(|_| Error::Decrypt("AES-CBC failed"))?;
        let pad = *plain.last().ok_or(Error::Decrypt("empty plaintext"))? as usize;
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(Error::Decrypt("bad padding"));
        }
        let plain = &plain[..plain.len() - pad];
        if plain.len() < 20 {
            return Err(Error::Decrypt("plaintext too short"));
        }
        let msg_len = u32::from_be_bytes([plain[16], plain[17], plain[18], plain[19]]) as usize;
        let rest = &plain[20..];
        if msg_len > rest.len() {
            return Err(Error::Decrypt("length field exceeds the plaintext"));
        }
        let (msg, tail) = rest.split_at(msg_len);
        if tail != appid.as_bytes() {
            return Err(Error::WrongAppId);
        }
        String::from_utf8(msg.to_vec()).map_err(|_| Error::Decrypt("message is not UTF-8"))
    }
}

/// The current EncodingAESKey and, during a rotation, the previous one (WeChat's FAQ: keep both
/// and answer with whichever decrypted the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRing {
    pub current: AesKey,
    pub previous: Option<AesKey>,
}

impl KeyRing {
    /// Decrypts with the current key, then the previous one; returns the message and the key
    /// that worked so the reply is encrypted with the same key.
    pub fn decrypt(&self, encrypted: &str, appid: &str) -> Result<(String, &AesKey)> {
        match self.current.decrypt(encrypted, appid) {
            Ok(msg) => Ok((msg, &self.current)),
            Err(first) => match &self.previous {
                Some(prev) => prev.decrypt(encrypted, appid).map(|m| (m, prev)).map_err(|_| first),
                None => Err(first),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wxb11529c136998cb6";
    const PREFIX: [u8; 16] = *b"aaaabbbbccccdddd";

    #[test]
    fn wxjava_deterministic_vector() {
        let key = AesKey::parse(KEY).unwrap();
        let enc = key.encrypt("我是中文abcd123", APPID, PREFIX);
        assert_eq!(enc, "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==");
        assert_eq!(key.decrypt(&enc, APPID).unwrap(), "我是中文abcd123");
    }

    #[test]
    fn every_pad_value_round_trips() {
        // msg lengths 25, 10, 9, 27, 26 give pad values 1, 16, 17, 31, 32 (a 16-byte unpadder
        // fails on 17..=32).
        let key = AesKey::parse(KEY).unwrap();
        let cases = [
            (25, "jn1L23DB+6ELqJ+6bruv2+kYEKnjOllx0vu67To/q3GbnMS0uObVt/vm2ls1rtRa8D4dFzKJmYwgOitfskjphg=="),
            (9, "jn1L23DB+6ELqJ+6bruv27ArjwbzrzMqIzRrmTUw7p16JPxSDNd886f00HMOlOPUSylzP5lorbzjbaRsSZBMdA=="),
            (26, "jn1L23DB+6ELqJ+6bruv2whn1fDIMpmLPYOiQU5ZlCf5ISusdxHOJKY4l/VvGZXv1gdIWBk2mReXBoyRsZWbYWp3WTghbH/zS/0xHsPUs416Ez/Wti2iAH72px6IwxBl"),
        ];
        for (n, expected) in cases {
            let msg = "x".repeat(n);
            assert_eq!(key.encrypt(&msg, APPID, PREFIX), expected, "len {n}");
            assert_eq!(key.decrypt(expected, APPID).unwrap(), msg);
        }
        for n in 0..100 {
            let msg = "y".repeat(n);
            assert_eq!(key.decrypt(&key.encrypt(&msg, APPID, PREFIX), APPID).unwrap(), msg);
        }
    }

    #[test]
    fn rejects_wrong_appid_bad_key_and_garbage() {
        let key = AesKey::parse(KEY).unwrap();
        let enc = key.encrypt("hello", APPID, PREFIX);
        assert_eq!(key.decrypt(&enc, "wx0000000000000000"), Err(Error::WrongAppId));
        let other = AesKey::parse("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg").unwrap();
        assert!(other.decrypt(&enc, APPID).is_err());
        assert!(key.decrypt("not base64!!", APPID).is_err());
        assert!(key.decrypt("", APPID).is_err());
        assert!(key.decrypt("YWJj", APPID).is_err()); // 3 bytes, not a block
        assert!(AesKey::parse("short").is_err());
        assert!(AesKey::parse(&"!".repeat(43)).is_err());
    }

    #[test]
    fn rotation_falls_back_to_previous_key() {
        let old = AesKey::parse(KEY).unwrap();
        let new = AesKey::parse("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg").unwrap();
        let ring = KeyRing { current: new.clone(), previous: Some(old.clone()) };
        let (msg, used) = ring.decrypt(&old.encrypt("m1", APPID, PREFIX), APPID).unwrap();
        assert_eq!((msg.as_str(), used), ("m1", &old));
        let (_, used) = ring.decrypt(&new.encrypt("m2", APPID, PREFIX), APPID).unwrap();
        assert_eq!(used, &new);
        let lone = KeyRing { current: new, previous: None };
        assert!(lone.decrypt(&old.encrypt("m1", APPID, PREFIX), APPID).is_err());
    }
}
