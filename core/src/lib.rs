//! wxedge's pure core: the WeChat Official Account protocol with no platform dependency.
//!
//! Everything here runs the same natively (tests, simulator, benchmarks) and in wasm (worker,
//! widget). Platform effects come in through the small traits below.

pub mod api;
pub mod callback;
pub mod china;
pub mod config;
pub mod crypto;
pub mod encoding;
pub mod error;
pub mod flows;
pub mod follower;
pub mod forward;
pub mod keys;
pub mod ledger;
pub mod login;
pub mod message;
pub mod notify;
pub mod ports;
pub mod qrsvg;
pub mod reply;
pub mod rules;
pub mod shard;
pub mod signature;
pub mod sql;
pub mod visits;
pub mod xml;

pub use error::{Error, Result};

/// Randomness, provided by the platform (WebCrypto in the worker, the OS natively).
pub trait Entropy {
    fn fill(&mut self, buf: &mut [u8]);
}

/// A deterministic generator for tests and the simulator's reproducible runs. Not for secrets.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SplitMix(pub u64);

impl Entropy for SplitMix {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}
