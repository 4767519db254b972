//! A coverage-free, structure-aware fuzzer of the SII parser that runs on the stable
//! toolchain (the same approach as the frame codec's `master_fuzz_frame.rs`), plus the
//! replay of its corpus as ordinary tests.
//!
//! Seeds are the real EEPROM images in `../shared/testdata/eeprom/` and the files in
//! `host/fuzz/corpus/sii/`. Mutations know the format: they rewrite category types and
//! sizes, string counts and lengths, PDO entry counts and bit lengths, the header
//! checksum and mailbox words, splice categories of two images, truncate and extend,
//! besides flipping bits. The oracle: parsing never panics and is deterministic; an
//! accepted image's categories lie inside it; everything derived from it (names, JSON,
//! the `ferrocat sii` text, PDO layouts, the process image with and without bit
//! packing, SyncManager registers) is computed without panicking.
//!
//! `FERROCAT_FUZZ_SECS` sets the time budget (default 2 s; CI may run longer);
//! `FERROCAT_FUZZ_SEED` replays a run. An input that breaks the oracle is written to
//! `host/fuzz/corpus/sii/crash-<hash>.bin` and the test fails naming it.

use ferrocat::cli::sii::print_decoded;
use ferrocat::ethercat::pdo::{PdoLayout, TerminalInput, mailbox_sync_managers, plan};
use ferrocat::ethercat::sii::SiiImage;
use std::path::PathBuf;
use std::time::Instant;

mod fuzz_support;
use fuzz_support::{Rng, budget, run_oracle, save_crash, seed_from_env};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sii")
}

fn eeprom_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/eeprom")
}

fn files(dir: &PathBuf) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(d) = std::fs::read_dir(dir) {
        for e in d.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) == Some("bin") {
                if let Ok(b) = std::fs::read(&p) {
                    out.push((p, b));
                }
            }
        }
    }
    out.sort();
    out
}

/// Seeds: the real images (the 128 KiB blank one cut to 4 KiB) and the corpus.
fn seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = files(&eeprom_dir())
        .into_iter()
        .map(|(_, mut b)| {
            b.truncate(4096);
            b
        })
        .collect();
    v.extend(files(&corpus_dir()).into_iter().map(|(_, b)| b));
    v
}

fn check(bytes: &[u8]) -> Result<(), String> {
    let first = SiiImage::parse(bytes);
    let again = SiiImage::parse(bytes);
    if first != again {
        return Err("parsing the same bytes twice gave different results".into());
    }
    let Ok(img) = first else {
        let e = first.unwrap_err();
        let _ = e.to_string();
        return Ok(());
    };
    let words = bytes.len() / 2;
    for c in &img.categories {
        if c.word_offset + 2 + c.present_words > words {
            return Err(format!(
                "category at word {:#x} with {} words runs past the {}-word image",
                c.word_offset, c.present_words, words
            ));
        }
    }
    for w in &img.warnings {
        let _ = w.to_string();
    }
    let _ = img.name();
    let _ = img.order_number();
    for i in 0..=255u8 {
        let _ = img.text(i);
    }
    serde_json::to_string(&img).map_err(|e| format!("JSON: {e}"))?;
    let mut text = Vec::new();
    print_decoded(&mut text, "fuzz", &img).map_err(|e| format!("text: {e}"))?;
    let layout = PdoLayout::from_sii(&img, "fuzz");
    let _ = mailbox_sync_managers(&img);
    for bits in [false, true] {
        let input = TerminalInput {
            station: 0x1001,
            sii: &img,
            layout: &layout,
            bit_oriented_fmmus: bits,
        };
        if let Ok(image) = plan(&[input, input], 0) {
            let whole = image.whole();
            let mut buf = vec![0u8; whole.len as usize];
            for t in &image.terminals {
                for e in &t.entries {
                    if e.write(&mut buf, whole.start, u64::MAX) && e.bit_len <= 64 {
                        let want = if e.bit_len >= 64 {
                            u64::MAX
                        } else {
                            (1u64 << e.bit_len) - 1
                        };
                        if e.read(&buf, whole.start) != Some(want) {
                            return Err(format!(
                                "entry {:#06x}:{} does not read back what was written",
                                e.index, e.subindex
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// (word offset, type, size) of the category headers, walking as far as plausible.
fn categories(b: &[u8]) -> Vec<(usize, u16, u16)> {
    let w = |i: usize| -> Option<u16> {
        Some(u16::from_le_bytes([*b.get(i * 2)?, *b.get(i * 2 + 1)?]))
    };
    let mut out = Vec::new();
    let mut at = 0x40;
    while out.len() < 64 {
        let (Some(t), Some(s)) = (w(at), w(at + 1)) else {
            break;
        };
        if t == 0xFFFF {
            break;
        }
        out.push((at, t, s));
        at += 2 + usize::from(s);
    }
    out
}

fn put_word(b: &mut [u8], word: usize, v: u16) {
    if word * 2 + 2 <= b.len() {
        b[word * 2..word * 2 + 2].copy_from_slice(&v.to_le_bytes());
    }
}

const TYPES: [u16; 14] = [0, 1, 3, 10, 20, 30, 40, 41, 42, 43, 50, 51, 60, 0x800];

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.len() < 2 {
            b.resize(2, 0);
        }
        let cats = categories(&b);
        let pick = |rng: &mut Rng| cats[rng.below(cats.len())];
        match rng.below(12) {
            0 => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(b.len());
                b[i] = [0, 0xFF, 0x7F, 0x80, 0x01, 0x08][rng.below(6)];
            }
            2 if !cats.is_empty() => {
                // A category's type.
                let (at, _, _) = pick(rng);
                let t = if rng.below(4) == 0 {
                    rng.next() as u16
                } else {
                    TYPES[rng.below(TYPES.len())]
                };
                put_word(&mut b, at, t);
            }
            3 if !cats.is_empty() => {
                // A category's size: random, off by one or two, zero, huge.
                let (at, _, s) = pick(rng);
                let v = match rng.below(5) {
                    0 => rng.next() as u16,
                    1 => s.wrapping_add(1),
                    2 => s.wrapping_sub(2),
                    3 => 0,
                    _ => 0xFFFE,
                };
                put_word(&mut b, at + 1, v);
            }
            4 if !cats.is_empty() => {
                // A byte early in a category's data: string counts and lengths, PDO
                // entry counts and SyncManager numbers, bit lengths.
                let (at, _, s) = pick(rng);
                let off = (at + 2) * 2 + rng.below(usize::from(s.min(16)) * 2 + 1);
                if off < b.len() {
                    b[off] = [0, 1, 2, 7, 8, 0x3F, 0x40, 0xFF][rng.below(8)];
                }
            }
            5 => {
                // Truncate anywhere (also inside the header).
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            6 => {
                // Extend with erased or zeroed EEPROM.
                let fill = if rng.below(2) == 0 { 0xFF } else { 0 };
                let n = rng.below(512);
                b.extend(std::iter::repeat_n(fill, n));
            }
            7 if !cats.is_empty() => {
                // Splice a category of the other image in.
                let oc = categories(other);
                if let Some(&(oat, _, os)) = oc.get(rng.below(oc.len().max(1))) {
                    let src = &other[(oat * 2).min(other.len())
                        ..((oat + 2 + usize::from(os)) * 2).min(other.len())];
                    let (at, _, _) = pick(rng);
                    let dst = (at * 2).min(b.len());
                    let mut nb = b[..dst].to_vec();
                    nb.extend_from_slice(src);
                    nb.extend_from_slice(&b[dst..]);
                    b = nb;
                }
            }
            8 if !cats.is_empty() => {
                // Duplicate a category.
                let (at, _, s) = pick(rng);
                let start = (at * 2).min(b.len());
                let end = ((at + 2 + usize::from(s)) * 2).min(b.len());
                let copy = b[start..end].to_vec();
                let mut nb = b[..end].to_vec();
                nb.extend_from_slice(&copy);
                nb.extend_from_slice(&b[end..]);
                b = nb;
            }
            9 => {
                // Header: checksum, mailbox words, EEPROM size.
                let word = [7usize, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x3E][rng.below(7)];
                put_word(&mut b, word, rng.next() as u16);
            }
            10 if b.len() % 2 == 0 => {
                // Odd length.
                b.push(rng.next() as u8);
            }
            _ => {
                // Remove the end marker or put one somewhere.
                let at = rng.below(b.len() / 2 + 1);
                put_word(&mut b, at, 0xFFFF);
            }
        }
    }
    b.truncate(64 * 1024);
    b
}

#[test]
fn fuzz_sii_parser() {
    let seed = seed_from_env();
    println!("sii fuzz seed {seed} (replay with FERROCAT_FUZZ_SEED={seed})");
    let mut rng = Rng(seed);
    let seeds = seeds();
    assert!(seeds.len() >= 15, "the EEPROM images are the seeds");
    let mut pool = seeds.clone();
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    let mut accepted = 0u64;
    while Instant::now() < deadline {
        let a = &pool[rng.below(pool.len())];
        let b = &pool[rng.below(pool.len())];
        let input = mutate(&mut rng, a, b);
        if let Err(why) = run_oracle(check, &input) {
            let path = save_crash(&corpus_dir(), &input);
            panic!(
                "SII parser oracle broken ({why}) by {} (seed {seed})",
                path.display()
            );
        }
        if SiiImage::parse(&input).is_ok() {
            accepted += 1;
            // Keep some accepted mutants to mutate further.
            if pool.len() < 256 && rng.below(16) == 0 {
                pool.push(input);
            }
        }
        runs += 1;
    }
    println!("sii fuzz: {runs} inputs, {accepted} accepted as images");
    assert!(runs > 100, "only {runs} inputs in the budget");
    assert!(
        accepted > 0,
        "no mutant parsed: the mutator only produces garbage"
    );
}

#[test]
fn corpus_and_images_replay_cleanly() {
    let mut n = 0;
    for (path, bytes) in files(&eeprom_dir()).into_iter().chain(files(&corpus_dir())) {
        if let Err(why) = run_oracle(check, &bytes) {
            panic!("{}: {why}", path.display());
        }
        n += 1;
    }
    assert!(n >= 15, "{n} files replayed");
}
