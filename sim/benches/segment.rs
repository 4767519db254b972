//! Frames per second of a simulated segment processing a typical cyclic frame (a BRD of
//! the AL status plus an LRW over every terminal's process data) for 1, 16 and 256
//! terminals. Run with `cargo bench -p ferrocat-sim --bench segment`.
//!
//! Without a `--bench` argument (as `cargo test --all-targets` runs it) it only builds
//! each bus and processes a few frames, checking the replies, so CI stays fast.

use std::time::{Duration, Instant};

use ferrocat_sim::segment::{FrameOutcome, Segment, command, master_frame as frame};

fn eeprom(name: &str) -> String {
    format!(
        "{}/../../shared/testdata/eeprom/{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn send(seg: &mut Segment, dg: &[(u8, u16, u16, Vec<u8>)]) -> Vec<u8> {
    let mut f = frame(dg);
    match seg.process(&mut f, 0) {
        FrameOutcome::Reply { .. } => f,
        other => panic!("setup frame not answered: {other:?}"),
    }
}

/// A bus of `n` EL2889 (16 digital outputs, two 1-byte SMs) in OP, each mapped to 2
/// logical bytes; returns it and the cyclic frame.
fn bus(n: usize) -> (Segment, Vec<u8>) {
    let paths: Vec<String> = (0..n).map(|_| eeprom("el2889")).collect();
    let mut seg = Segment::from_eeprom_files(&paths).expect("eeprom");
    for i in 0..n {
        let adp = (i as u16).wrapping_neg();
        let lad = (2 * i) as u32;
        let mut fmmu0 = vec![0u8; 16];
        fmmu0[..4].copy_from_slice(&lad.to_le_bytes());
        fmmu0[4] = 1;
        fmmu0[7] = 7;
        fmmu0[8..10].copy_from_slice(&0x0F00u16.to_le_bytes());
        fmmu0[11] = 2;
        fmmu0[12] = 1;
        let mut fmmu1 = fmmu0.clone();
        fmmu1[..4].copy_from_slice(&(lad + 1).to_le_bytes());
        fmmu1[8..10].copy_from_slice(&0x0F01u16.to_le_bytes());
        send(
            &mut seg,
            &[
                (
                    command::APWR,
                    adp,
                    0x0010,
                    (0x1000 + i as u16).to_le_bytes().to_vec(),
                ),
                (
                    command::APWR,
                    adp,
                    0x0800,
                    vec![0x00, 0x0F, 1, 0, 0x44, 0, 1, 0],
                ),
                (
                    command::APWR,
                    adp,
                    0x0808,
                    vec![0x01, 0x0F, 1, 0, 0x44, 0, 1, 0],
                ),
                (command::APWR, adp, 0x0600, fmmu0),
                (command::APWR, adp, 0x0610, fmmu1),
            ],
        );
    }
    for state in [0x02u8, 0x04, 0x08] {
        send(&mut seg, &[(command::BWR, 0, 0x0120, vec![state, 0])]);
    }
    let cyclic = frame(&[
        (command::BRD, 0, 0x0130, vec![0, 0]),
        (command::LRW, 0, 0, vec![0x55; 2 * n]),
    ]);
    // Check once that every terminal takes part.
    let mut check = cyclic.clone();
    seg.process(&mut check, 0);
    let wkc_at = check.len() - 2;
    let wkc = u16::from_le_bytes([check[wkc_at], check[wkc_at + 1]]);
    assert_eq!(usize::from(wkc), 2 * n, "LRW working counter");
    (seg, cyclic)
}

/// Frames a smoke run (no `--bench` argument) processes per bus size.
const SMOKE_FRAMES: usize = 8;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this without it.
    if !std::env::args().any(|a| a == "--bench") {
        smoke();
        return;
    }
    println!("ferrocat-sim segment benchmark: BRD 0x0130 + LRW over all process data");
    for n in [1usize, 16, 256] {
        let (mut seg, cyclic) = bus(n);
        let mut buf = cyclic.clone();
        let budget = Duration::from_millis(700);
        let start = Instant::now();
        let mut frames: u64 = 0;
        let mut now: u64 = 0;
        while start.elapsed() < budget {
            for _ in 0..64 {
                buf.copy_from_slice(&cyclic);
                now += 1_000;
                std::hint::black_box(seg.process(&mut buf, now));
            }
            frames += 64;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{n:>4} terminals: {:>10.0} frames/s ({:>8.2} µs per frame, {} bytes)",
            frames as f64 / secs,
            secs * 1e6 / frames as f64,
            cyclic.len()
        );
    }
}

/// A few cyclic frames per bus size, each answered with every terminal in the LRW
/// working counter: proves the benchmark's setup without measuring.
fn smoke() {
    for n in [1usize, 16, 256] {
        let (mut seg, cyclic) = bus(n);
        for i in 0..SMOKE_FRAMES {
            let mut buf = cyclic.clone();
            let now = 1_000 * (i as u64 + 1);
            assert!(
                matches!(seg.process(&mut buf, now), FrameOutcome::Reply { .. }),
                "cyclic frame {i} on {n} terminals not answered"
            );
            let wkc_at = buf.len() - 2;
            let wkc = u16::from_le_bytes([buf[wkc_at], buf[wkc_at + 1]]);
            assert_eq!(
                usize::from(wkc),
                2 * n,
                "LRW working counter on {n} terminals"
            );
        }
    }
    println!("ferrocat-sim segment benchmark: smoke run passed (use --bench to measure)");
}
