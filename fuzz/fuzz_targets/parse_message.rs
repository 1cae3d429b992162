//! Any bytes into the XML reader and the typed model: an error is fine, a panic or hang is not.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = wxedge_core::message::Message::parse(text) {
            let _ = m.dedupe_key("");
            let _ = m.is_from_follower();
        }
    }
});
