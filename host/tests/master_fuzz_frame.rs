//! A coverage-free, structure-aware fuzzer of the frame codec that runs on the stable
//! toolchain, plus the replay of its corpus as ordinary tests.
//!
//! Seeds are the frames of the real-hardware captures in `../shared/testdata/captures/`
//! and the files in `host/fuzz/corpus/frame/`. Mutations know the format: they rewrite
//! the 11-bit length fields, the more-follows bit and command codes, splice datagram
//! chains, truncate and extend, besides flipping bits. The oracle: validation never
//! panics; a frame that validates parses, re-emits and re-parses to the same value; the
//! transaction layer never panics on it.
//!
//! `FERROCAT_FUZZ_SECS` sets the time budget (default 2 s; CI may run longer);
//! `FERROCAT_FUZZ_SEED` replays a run. An input that breaks the oracle is written to
//! `host/fuzz/corpus/frame/crash-<hash>.bin` and the test fails naming it; the replay
//! test then keeps it as a regression test once fixed.

use ferrocat::ethercat::transport::core::{Policy, Transactions};
use ferrocat::ethercat::transport::identity_for_pid;
use ferrocat::ethercat::wire::{Address, Command, DatagramRepr, Frame, FrameRepr};
use std::path::PathBuf;
use std::time::Instant;

mod fuzz_support;
use fuzz_support::{Rng, budget, run_oracle, save_crash, seed_from_env};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frame")
}

fn captures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/captures")
}

/// Every EtherCAT frame of the real captures.
fn capture_frames() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let Ok(dir) = std::fs::read_dir(captures_dir()) else {
        return frames;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pcapng") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(mut reader) = pcap_file::pcapng::PcapNgReader::new(&bytes[..]) else {
            continue;
        };
        while let Some(block) = reader.next_block() {
            let Ok(block) = block else { break };
            if let pcap_file::pcapng::Block::EnhancedPacket(epb) = block {
                if epb.data.len() >= 14 && epb.data[12..14] == [0x88, 0xa4] {
                    frames.push(epb.data.to_vec());
                }
            }
        }
    }
    frames
}

fn corpus_files() -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir(corpus_dir()) {
        for e in dir.flatten() {
            if let Ok(b) = std::fs::read(e.path()) {
                out.push((e.path(), b));
            }
        }
    }
    out.sort();
    out
}

/// The oracle: returns a description of the violation, if any. Panics inside are caught
/// by the caller.
fn check(bytes: &[u8]) -> Result<(), String> {
    if let Ok(frame) = Frame::new_checked(bytes) {
        let repr = FrameRepr::parse(&frame);
        if repr.datagrams.len() != frame.datagram_count() {
            return Err("datagram count differs between view and repr".into());
        }
        if frame.datagrams().count() != frame.datagram_count() {
            return Err("iterator yields a different number of datagrams".into());
        }
        let re = repr
            .to_bytes()
            .map_err(|e| format!("a valid frame does not re-emit: {e}"))?;
        let again = FrameRepr::parse_bytes(&re)
            .map_err(|e| format!("a re-emitted frame does not validate: {e}"))?;
        if again != repr {
            return Err("re-emitted frame parses to a different value".into());
        }
    }
    // The transaction layer takes any bytes.
    let mut tx = Transactions::new(identity_for_pid(1));
    let now = Instant::now();
    let _ = tx.submit(
        0,
        vec![DatagramRepr::new(
            Command::Brd,
            Address::Broadcast { register: 0 },
            vec![0; 2],
        )],
        Policy::default(),
        now,
    );
    let _ = tx.poll_transmit();
    tx.on_receive(bytes, now);
    Ok(())
}

fn datagram_offsets(b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 16;
    while at + 12 <= b.len() && out.len() < 64 {
        out.push(at);
        let len = usize::from(u16::from_le_bytes([b[at + 6], b[at + 7]]) & 0x7ff);
        let more = b[at + 7] & 0x80 != 0;
        at += 12 + len;
        if !more {
            break;
        }
    }
    out
}

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        if b.is_empty() {
            b.push(0);
        }
        let offs = datagram_offsets(&b);
        match rng.below(11) {
            0 => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(b.len());
                b[i] = [0, 0xff, 0x7f, 0x80, 0x0f, 0x10][rng.below(6)];
            }
            2 if b.len() >= 16 => {
                // EtherCAT header length: random, off by one, or zero.
                let cur = u16::from_le_bytes([b[14], b[15]]);
                let len = match rng.below(3) {
                    0 => (rng.next() & 0x7ff) as u16,
                    1 => (cur & 0x7ff).wrapping_add(1) & 0x7ff,
                    _ => (cur & 0x7ff).wrapping_sub(1) & 0x7ff,
                };
                let v = (cur & 0xf800) | len;
                b[14..16].copy_from_slice(&v.to_le_bytes());
            }
            3 if !offs.is_empty() => {
                // A datagram length field.
                let at = offs[rng.below(offs.len())];
                let cur = u16::from_le_bytes([b[at + 6], b[at + 7]]);
                let len = match rng.below(3) {
                    0 => (rng.next() & 0x7ff) as u16,
                    1 => (cur & 0x7ff).saturating_add(2) & 0x7ff,
                    _ => (cur & 0x7ff).saturating_sub(2),
                };
                let v = (cur & 0xf800) | len;
                b[at + 6..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            4 if !offs.is_empty() => {
                // Toggle more-follows.
                let at = offs[rng.below(offs.len())];
                b[at + 7] ^= 0x80;
            }
            5 if !offs.is_empty() => {
                // Command code: valid or reserved.
                let at = offs[rng.below(offs.len())];
                b[at] = rng.below(20) as u8;
            }
            6 => {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            7 => {
                let n = rng.below(64);
                for _ in 0..n {
                    b.push(rng.next() as u8);
                }
            }
            8 if !other.is_empty() => {
                // Splice: our head, the other frame's tail.
                let cut = rng.below(b.len());
                let from = rng.below(other.len());
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
            }
            9 if offs.len() >= 2 => {
                // Duplicate a datagram in the chain and fix the header length.
                let k = rng.below(offs.len() - 1);
                let (s, e) = (offs[k], offs[k + 1]);
                let d = b[s..e].to_vec();
                b.splice(s..s, d.iter().copied());
                let cur = u16::from_le_bytes([b[14], b[15]]);
                let v = (cur & 0xf800) | (((cur & 0x7ff) as usize + d.len()) as u16 & 0x7ff);
                b[14..16].copy_from_slice(&v.to_le_bytes());
            }
            _ => {
                // Ethernet type and EtherCAT type nibble.
                if b.len() >= 16 {
                    b[12] = 0x88;
                    b[13] = 0xa4;
                    b[15] = (b[15] & 0x0f) | ((rng.below(3) as u8) << 4);
                }
            }
        }
        if b.len() > 2048 {
            b.truncate(2048);
        }
    }
    b
}

#[test]
fn fuzz_frame_codec_for_a_bounded_time() {
    let budget = budget();
    let seed = seed_from_env();
    let mut seeds = capture_frames();
    assert!(
        seeds.len() > 100,
        "the real captures in ../shared/testdata/captures seed the fuzzer"
    );
    seeds.extend(corpus_files().into_iter().map(|(_, b)| b));
    // Distinct outcome classes found, to keep mutating interesting inputs.
    let mut pool: Vec<Vec<u8>> = seeds.clone();
    let mut classes = std::collections::HashSet::new();
    let mut rng = Rng(seed);
    let deadline = Instant::now() + budget;
    let mut runs = 0u64;
    let mut valid = 0u64;
    while Instant::now() < deadline {
        for _ in 0..256 {
            let a = &pool[rng.below(pool.len())];
            let o = &pool[rng.below(pool.len())];
            let input = mutate(&mut rng, a, o);
            runs += 1;
            if let Err(why) = run_oracle(check, &input) {
                let path = save_crash(&corpus_dir(), &input);
                panic!(
                    "seed {seed}: {why}; input saved to {} (replay: FERROCAT_FUZZ_SEED={seed})",
                    path.display()
                );
            }
            let class = match Frame::new_checked(&input[..]) {
                Ok(f) => {
                    valid += 1;
                    format!("ok/{}", f.datagram_count().min(8))
                }
                Err(e) => format!("{:?}", std::mem::discriminant(&e)),
            };
            if classes.insert(class) && pool.len() < 10_000 {
                pool.push(input);
            }
        }
    }
    println!(
        "fuzzed {runs} inputs in {budget:?} (seed {seed}): {valid} valid frames, {} outcome classes",
        classes.len()
    );
    assert!(runs > 1000, "the fuzzer ran");
    assert!(valid > 0, "mutations keep some frames valid");
    assert!(
        classes.len() >= 6,
        "mutations reach several error kinds: {classes:?}"
    );
}

#[test]
fn corpus_and_captures_replay_cleanly() {
    let files = corpus_files();
    assert!(
        !files.is_empty(),
        "host/fuzz/corpus/frame holds the regression corpus"
    );
    for (path, bytes) in &files {
        if let Err(why) = run_oracle(check, bytes) {
            panic!("{}: {why}", path.display());
        }
    }
    let frames = capture_frames();
    let mut ok = 0;
    for f in &frames {
        run_oracle(check, f).unwrap_or_else(|why| panic!("capture frame: {why}"));
        match Frame::new_checked(&f[..]) {
            Ok(_) => ok += 1,
            Err(e) => println!(
                "capture frame of {} bytes rejected: {e}: {:02x?}",
                f.len(),
                &f[..f.len().min(40)]
            ),
        }
    }
    assert_eq!(
        ok,
        frames.len(),
        "every frame of the real captures validates"
    );
}
