//! The stable-toolchain fuzzing harness shared by the frame-codec and SII fuzzers
//! (`master_fuzz_frame.rs`, `sii_fuzz.rs`): a small deterministic generator, the time
//! budget and seed taken from the environment, an oracle run that turns a panic into an
//! error, and saving of inputs that break the oracle into the regression corpus.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// xorshift64*: small, deterministic, good enough for choosing mutations.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// The run's seed: `FERROCAT_FUZZ_SEED` to replay a run, else the clock. Never 0 (an
/// xorshift state of 0 stays 0).
pub fn seed_from_env() -> u64 {
    std::env::var("FERROCAT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
        | 1
}

/// The time budget: `FERROCAT_FUZZ_SECS` seconds, 2 by default (CI may run longer).
pub fn budget() -> Duration {
    let secs: f64 = std::env::var("FERROCAT_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

/// Runs `check` on `bytes`; a panic becomes an error carrying its message.
pub fn run_oracle(check: fn(&[u8]) -> Result<(), String>, bytes: &[u8]) -> Result<(), String> {
    match std::panic::catch_unwind(|| check(bytes)) {
        Ok(r) => r,
        Err(p) => Err(format!(
            "panic: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// Writes an input that broke the oracle into `dir` as `crash-<hash>.bin`, so that it
/// joins the corpus replayed as a test; returns its path.
pub fn save_crash(dir: &Path, bytes: &[u8]) -> PathBuf {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    });
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("crash-{h:016x}.bin"));
    let _ = std::fs::write(&path, bytes);
    path
}
