//! Any text as safe-mode ciphertext, under the current key and during a rotation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wxedge_core::crypto::{AesKey, KeyRing};

fuzz_target!(|data: &[u8]| {
    let current = AesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
    let previous = AesKey::parse("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg").unwrap();
    let ring = KeyRing { current: current.clone(), previous: Some(previous) };
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ring.decrypt(text, "wxb11529c136998cb6");
    }
    // Also raw bytes as the ciphertext itself, so the fuzzer reaches the padding and length checks.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    if let Ok((msg, _)) = ring.decrypt(&b64, "wxb11529c136998cb6") {
        // Whatever decrypts must re-encrypt to something that decrypts to the same message.
        let again = current.encrypt(&msg, "wxb11529c136998cb6", [7; 16]);
        assert_eq!(current.decrypt(&again, "wxb11529c136998cb6").unwrap(), msg);
    }
});
