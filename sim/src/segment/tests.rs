//! Tests of the segment: addressing, working counters, malformed frames, faults, and
//! replays of real captures whose replies the simulated bus must reproduce.

use super::*;
use crate::app::AlState;
use crate::app::BasicApp;
use crate::esc::EscConfig;
use crate::fault::TerminalFault;

fn testdata(rel: &str) -> String {
    format!("{}/../../shared/testdata/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn bus(names: &[&str]) -> Segment {
    let paths: Vec<String> = names
        .iter()
        .map(|n| testdata(&format!("eeprom/{n}.bin")))
        .collect();
    Segment::from_eeprom_files(&paths).expect("eeproms load")
}

/// A frame of datagrams (cmd, adp, ado, data) from a master MAC 10:10:10:10:10:10.
fn frame(datagrams: &[(u8, u16, u16, Vec<u8>)]) -> Vec<u8> {
    master_frame(datagrams)
}

/// (adp, data, wkc) of each datagram of a reply.
fn parsed(f: &[u8]) -> Vec<(u16, Vec<u8>, u16)> {
    let mut spans = Vec::new();
    parse_frame(f, &mut spans).expect("valid frame");
    spans
        .iter()
        .map(|s| {
            let h = s.header;
            let d = h + DATAGRAM_HEADER_LEN;
            (
                u16::from_le_bytes([f[h + 2], f[h + 3]]),
                f[d..d + s.len].to_vec(),
                u16::from_le_bytes([f[d + s.len], f[d + s.len + 1]]),
            )
        })
        .collect()
}

fn exchange(
    seg: &mut Segment,
    dg: &[(u8, u16, u16, Vec<u8>)],
    now: u64,
) -> Vec<(u16, Vec<u8>, u16)> {
    let mut f = frame(dg);
    let out = seg.process(&mut f, now);
    assert!(matches!(out, FrameOutcome::Reply { .. }), "{out:?}");
    parsed(&f)
}

use command::*;

#[test]
fn brd_counts_terminals_and_ors_data() {
    let mut seg = bus(&["ek1100", "el2828", "el2889"]);
    let mut f = frame(&[(BRD, 0, 0x0000, vec![0, 0])]);
    seg.process(&mut f, 0);
    assert_eq!(f[6], 0x12, "source MAC bit 1 set");
    let r = parsed(&f);
    // Types 0x11 | 0x12 | 0x12, revisions 0 | 1 | 0; adp incremented by each terminal
    // (capture frame 2: Adp 0x3, Wc 3).
    assert_eq!(r[0], (3, vec![0x13, 0x01], 3));
}

#[test]
fn auto_increment_and_configured_addressing() {
    let mut seg = bus(&["ek1100", "el2828", "el2889"]);
    for (i, adp) in [0u16, 0xFFFF, 0xFFFE].into_iter().enumerate() {
        let addr = 0x1000 + i as u16;
        let r = exchange(
            &mut seg,
            &[(APWR, adp, 0x0010, addr.to_le_bytes().to_vec())],
            0,
        );
        assert_eq!(r[0].2, 1);
    }
    assert_eq!(seg.terminal(2).expect("t").station_address(), 0x1002);
    let r = exchange(
        &mut seg,
        &[
            (FPRD, 0x1001, 0x0000, vec![0; 1]),
            (FPRD, 0x1003, 0x0000, vec![0; 1]),
            (APRD, 0xFFFE, 0x0010, vec![0; 2]),
            (NOP, 0, 0, vec![0; 4]),
        ],
        0,
    );
    assert_eq!(r[0], (0x1001, vec![0x12], 1));
    assert_eq!(r[1], (0x1003, vec![0x00], 0), "nobody has 0x1003");
    assert_eq!(r[2], (0x0001, vec![0x02, 0x10], 1));
    assert_eq!(r[3].2, 0);
}

#[test]
fn alias_addressing_needs_dl_control_enable() {
    let mut seg = bus(&["el2004"]);
    // el2004.bin word 4 is 0x0000; the alias register is read-only from EtherCAT, so set up
    // the EEPROM word through the SII write and reload commands.
    let t = seg.terminal_mut(0).expect("t");
    assert_eq!(t.active_alias(), None);
    let r = exchange(&mut seg, &[(APWR, 0, 0x0103, vec![1])], 0);
    assert_eq!(r[0].2, 1);
    assert_eq!(seg.terminal(0).expect("t").active_alias(), Some(0));
    let r = exchange(&mut seg, &[(FPRD, 0x0000, 0x0000, vec![0])], 0);
    assert_eq!(r[0].2, 1, "alias 0 now matches");
}

#[test]
fn read_write_counts_three_and_read_only_write_counts_zero() {
    let mut seg = bus(&["ek1100"]);
    let r = exchange(&mut seg, &[(APRW, 0, 0x0010, vec![0x34, 0x12])], 0);
    assert_eq!(r[0].1, vec![0, 0], "old value returned");
    assert_eq!(r[0].2, 3);
    let r = exchange(&mut seg, &[(APRW, 0, 0x0130, vec![0x08, 0])], 0);
    assert_eq!(r[0].2, 1, "AL status is read-only");
    let r = exchange(&mut seg, &[(APWR, 0, 0x0130, vec![0x08, 0])], 0);
    assert_eq!(r[0].2, 0);
    let r = exchange(&mut seg, &[(APRD, 0, 0x0680, vec![0xAA; 16])], 0);
    assert_eq!(
        r[0],
        (1, vec![0xAA; 16], 0),
        "FMMU 8 does not exist: untouched"
    );
}

#[test]
fn malformed_frames_are_lost_and_counted() {
    let mut seg = bus(&["ek1100", "el2004"]);
    for bad in [
        vec![],
        vec![0u8; 13],
        {
            let mut f = frame(&[(BRD, 0, 0, vec![0; 4])]);
            f.truncate(f.len() - 3);
            f
        },
        {
            let mut f = frame(&[(BRD, 0, 0, vec![0; 4])]);
            f[22] = 0xFF; // datagram length 0x7FF
            f[23] = 0x07;
            f
        },
    ] {
        let mut f = bad.clone();
        assert_eq!(seg.process(&mut f, 0), FrameOutcome::Lost, "{bad:?}");
    }
    assert!(seg.last_error().is_some());
    assert_eq!(seg.terminal(0).expect("t").peek(0x0300), 2);
    let mut ip = frame(&[(BRD, 0, 0, vec![0; 4])]);
    ip[12] = 0x08;
    ip[13] = 0x00;
    let copy = ip.clone();
    assert_eq!(seg.process(&mut ip, 0), FrameOutcome::NotEtherCat);
    assert_eq!(ip, copy);
}

#[test]
fn random_bytes_are_answered_forwarded_or_lost() {
    let mut seg = bus(&["ek1100", "el2828"]);
    let mut x: u64 = 0x1234_5678;
    for n in 0..20_000usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x as usize) % 200;
        let mut f: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8 ^ i as u8).collect();
        if f.len() > 16 && n % 2 == 0 {
            f[12] = 0x88;
            f[13] = 0xA4;
            f[15] = 0x10 | (f[15] & 0x07);
        }
        let sent = f.clone();
        // EtherType 0x88A4 (after an optional VLAN tag) with a datagram header type.
        let at = if f.get(12..14) == Some(&[0x81, 0x00]) {
            16
        } else {
            12
        };
        let ethercat =
            f.get(at..at + 2) == Some(&[0x88, 0xA4]) && f.get(at + 3).is_some_and(|h| h >> 4 == 1);
        match seg.process(&mut f, n as u64 * 1000) {
            FrameOutcome::NotEtherCat => {
                assert!(!ethercat, "frame {n} is EtherCAT");
                assert_eq!(f, sent, "frame {n}: forwarded unchanged");
            }
            FrameOutcome::Lost => {
                assert_eq!(f, sent, "frame {n}: lost frames untouched");
                assert!(seg.last_error().is_some() || sent.len() < 14, "frame {n}");
            }
            FrameOutcome::Reply { .. } => {
                assert!(ethercat, "frame {n} answered but not EtherCAT");
                assert_eq!(f.len(), sent.len(), "frame {n}");
                assert_eq!(f[6], sent[6] | SOURCE_MAC_PROCESSED_BIT, "frame {n}");
            }
        }
    }
}

#[test]
fn faults_drop_silence_power_cycle_fall_back() {
    let mut seg = bus(&["ek1100", "el2828", "el2889"]);
    let faults = seg.faults();
    faults.set_link_down(true);
    let mut f = frame(&[(BRD, 0, 0, vec![0])]);
    assert_eq!(seg.process(&mut f, 0), FrameOutcome::Lost);
    faults.set_link_down(false);
    faults.set_silent_from(Some(1));
    let r = exchange(&mut seg, &[(BRD, 0, 0, vec![0])], 0);
    assert_eq!(r[0].2, 1, "only the coupler answers");
    assert_eq!(
        seg.terminal(0).expect("t").peek(0x0110) & 0x20,
        0,
        "port 1 link down"
    );
    faults.set_silent_from(None);
    let r = exchange(&mut seg, &[(BRD, 0, 0, vec![0])], 0);
    assert_eq!(r[0].2, 3);
    // Station address, PRE-OP, then a power cycle resets both.
    exchange(&mut seg, &[(APWR, 0xFFFF, 0x0010, vec![0x01, 0x10])], 0);
    exchange(&mut seg, &[(FPWR, 0x1001, 0x0120, vec![0x02, 0])], 0);
    assert_eq!(seg.terminal(1).expect("t").al_state(), AlState::PreOp);
    faults.inject(1, TerminalFault::PowerCycle);
    let r = exchange(&mut seg, &[(FPRD, 0x1001, 0x0130, vec![0; 2])], 0);
    assert_eq!(r[0].2, 0, "station address lost with the power cycle");
    let r = exchange(&mut seg, &[(APRD, 0xFFFF, 0x0130, vec![0; 2])], 0);
    assert_eq!(r[0].1, vec![0x01, 0x00]);
    faults.inject(
        2,
        TerminalFault::FallBack {
            state: AlState::Init,
            code: 0x0001,
        },
    );
    let r = exchange(&mut seg, &[(APRD, 0xFFFE, 0x0130, vec![0; 6])], 0);
    assert_eq!(r[0].1, vec![0x11, 0, 0, 0, 0x01, 0]);
}

#[test]
fn injected_corruption_and_delay() {
    let mut seg = bus(&["ek1100"]);
    let faults = seg.faults();
    faults.set_corrupt_ratio(1.0);
    let mut f = frame(&[(APRD, 0, 0x0000, vec![0; 8])]);
    let mut clean = f.clone();
    seg.process(&mut f, 0);
    faults.set_corrupt_ratio(0.0);
    seg.process(&mut clean, 0);
    let diff: u32 = f
        .iter()
        .zip(&clean)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(diff, 1, "exactly one bit flipped");
    faults.set_delay(1.0, 5_000_000);
    let mut f = frame(&[(APRD, 0, 0x0000, vec![0; 8])]);
    assert_eq!(
        seg.process(&mut f, 0),
        FrameOutcome::Reply {
            delay_ns: 5_000_000
        }
    );
}

/// The error counters 0x0300..=0x0313 of terminal `i`.
fn error_counters(seg: &Segment, i: usize) -> Vec<u8> {
    let t = seg.terminal(i).expect("terminal");
    (0x0300..=0x0313).map(|a| t.peek(a)).collect()
}

/// Invalid frames counted on port 1 (0x0302) and forwarded errors on port 1 (0x0309).
fn port1_errors(seg: &Segment, i: usize) -> (u8, u8) {
    let c = error_counters(seg, i);
    (c[0x02], c[0x09])
}

#[test]
fn corrupt_replies_move_the_counters_of_the_terminals_that_receive_them() {
    let mut seg = bus(&["ek1100", "el2828", "el2889", "el2004"]);
    let faults = seg.faults();
    faults.set_corrupt_ratio(1.0);
    // The bit error on the cable into the EL2889 (position 2): the EL2828 receives the
    // damaged frame on port 1 and counts it as invalid; it marks it, so the EK1100
    // counts a forwarded error.
    faults.set_corrupt_at(Some(2));
    let mut f = frame(&[(BRD, 0, 0x0000, vec![0; 2])]);
    let mut clean = f.clone();
    seg.process(&mut f, 0);
    assert_eq!(port1_errors(&seg, 0), (0, 1), "EK1100");
    assert_eq!(port1_errors(&seg, 1), (1, 0), "EL2828");
    assert_eq!(
        error_counters(&seg, 2),
        vec![0; 20],
        "EL2889: sent it, saw nothing"
    );
    assert_eq!(error_counters(&seg, 3), vec![0; 20], "EL2004");
    faults.set_corrupt_ratio(0.0);
    seg.process(&mut clean, 0);
    let flipped: u32 = f
        .iter()
        .zip(&clean)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(flipped, 1);
    // On the master's cable no terminal sees it; on a cable the frame never crosses
    // (the master closed the EL2828's port 1) nothing happens.
    faults.set_corrupt_ratio(1.0);
    faults.set_corrupt_at(Some(0));
    let mut f = frame(&[(BRD, 0, 0x0000, vec![0; 2])]);
    seg.process(&mut f, 0);
    assert_eq!(
        (port1_errors(&seg, 0), port1_errors(&seg, 1)),
        ((0, 1), (1, 0))
    );
    faults.set_corrupt_ratio(0.0);
    exchange(&mut seg, &[(APWR, 0xFFFF, 0x0101, vec![0x0C])], 0);
    faults.set_corrupt_ratio(1.0);
    faults.set_corrupt_at(Some(3));
    let mut f = frame(&[(BRD, 0, 0x0000, vec![0; 2])]);
    seg.process(&mut f, 0);
    faults.set_corrupt_ratio(0.0);
    let mut clean = frame(&[(BRD, 0, 0x0000, vec![0; 2])]);
    seg.process(&mut clean, 0);
    assert_eq!(parsed(&f)[0].2, 2, "the frame turned back at the EL2828");
    assert_eq!(f, clean, "no bit flipped");
    assert_eq!(port1_errors(&seg, 1), (1, 0), "nothing more counted");
}

#[test]
fn random_bit_errors_are_counted_consistently_along_the_line() {
    let mut seg = bus(&["ek1100", "el2828", "el2889", "el2004"]);
    let faults = seg.faults();
    faults.set_corrupt_ratio(1.0);
    for n in 0..200 {
        let mut f = frame(&[(BRD, 0, 0x0000, vec![0; 2])]);
        seg.process(&mut f, n * 1000);
    }
    let invalid: Vec<u32> = (0..4).map(|i| u32::from(port1_errors(&seg, i).0)).collect();
    let forwarded: Vec<u32> = (0..4).map(|i| u32::from(port1_errors(&seg, i).1)).collect();
    // Each error is counted once as invalid (cables 1..3) or by nobody (cable 0), and
    // as forwarded by every terminal closer to the master than the one that found it.
    let total: u32 = invalid.iter().sum();
    assert!((100..200).contains(&total), "{invalid:?}");
    assert_eq!(
        invalid[3], 0,
        "nothing comes back into the last terminal's port 1"
    );
    for i in 0..4 {
        assert_eq!(
            forwarded[i],
            invalid[i + 1..].iter().sum::<u32>(),
            "{i}: {forwarded:?}"
        );
    }
    assert!(
        invalid[..3].iter().all(|c| *c > 20),
        "every cable gets errors: {invalid:?}"
    );
}

#[test]
fn lost_links_are_counted_by_the_port_that_lost_them() {
    let mut seg = bus(&["ek1100", "el2828", "el2889"]);
    let faults = seg.faults();
    let lost = |seg: &Segment, i: usize| error_counters(seg, i)[0x10..0x14].to_vec();
    // The master's cable pulled and plugged back: the EK1100's port 0.
    faults.set_link_down(true);
    let mut f = frame(&[(BRD, 0, 0, vec![0])]);
    assert_eq!(seg.process(&mut f, 0), FrameOutcome::Lost);
    faults.set_link_down(false);
    let r = exchange(&mut seg, &[(APRD, 0, 0x0110, vec![0; 2])], 0);
    assert_eq!(r[0].1[0] & 0x10, 0x10, "port 0 link back");
    assert_eq!(lost(&seg, 0), vec![1, 0, 0, 0]);
    // The cable into the EL2889 is cut twice: both ends count it, the EL2828's port 1
    // and the EL2889's port 0 (it stays powered).
    for _ in 0..2 {
        faults.set_silent_from(Some(2));
        exchange(&mut seg, &[(BRD, 0, 0, vec![0])], 0);
        faults.set_silent_from(None);
        exchange(&mut seg, &[(BRD, 0, 0, vec![0])], 0);
    }
    assert_eq!(lost(&seg, 1), vec![0, 2, 0, 0]);
    assert_eq!(lost(&seg, 2), vec![2, 0, 0, 0]);
    assert_eq!(lost(&seg, 0), vec![1, 0, 0, 0]);
    // A port whose loop the master keeps closed counts nothing.
    exchange(&mut seg, &[(APWR, 0xFFFF, 0x0101, vec![0x0C])], 0);
    faults.set_silent_from(Some(2));
    exchange(&mut seg, &[(BRD, 0, 0, vec![0])], 0);
    assert_eq!(lost(&seg, 1), vec![0, 2, 0, 0]);
    assert_eq!(lost(&seg, 2), vec![3, 0, 0, 0]);
    // A write clears the counters (ETG.1000.4: error counters are cleared by writing).
    exchange(&mut seg, &[(BWR, 0, 0x0310, vec![0; 4])], 0);
    assert_eq!(lost(&seg, 0), vec![0; 4]);
}

#[test]
fn a_link_lost_and_back_without_a_frame_in_between_is_counted() {
    let mut seg = bus(&["ek1100", "el2828", "el2889"]);
    let faults = seg.faults();
    let lost = |seg: &Segment, i: usize| error_counters(seg, i)[0x10..0x14].to_vec();
    // Pulled and plugged back between two frames, twice, then a cable cut and mended:
    // the next frame finds every change counted.
    for _ in 0..2 {
        faults.set_link_down(true);
        faults.set_link_down(false);
    }
    faults.set_silent_from(Some(1));
    faults.set_silent_from(None);
    exchange(&mut seg, &[(BRD, 0, 0, vec![0])], 0);
    assert_eq!(lost(&seg, 0), vec![2, 1, 0, 0]);
    assert_eq!(lost(&seg, 1), vec![1, 0, 0, 0]);
    // Without any frame: time passing (a server's idle tick) applies them as well.
    faults.set_link_down(true);
    seg.advance(1_000_000);
    faults.set_link_down(false);
    seg.advance(2_000_000);
    assert_eq!(lost(&seg, 0), vec![3, 1, 0, 0]);
    let dl = seg.terminal(0).expect("t0").peek(0x0110);
    assert_eq!(dl & 0x10, 0x10, "port 0 link back");
}

#[test]
fn time_runs_on_for_terminals_a_frame_does_not_reach() {
    // The EL2889's outputs guarded by the SM watchdog (100 ms), then the cable into it
    // cut: frames to the EK1100 alone still move its time on, so the watchdog expires
    // (0x0440 bit 0 clear, counter 0x0442) without a frame reaching it.
    let mut seg = bus(&["ek1100", "el2889"]);
    let faults = seg.faults();
    exchange(&mut seg, &[(APWR, 0xFFFF, 0x0010, vec![0x02, 0x10])], 0);
    let sm0 = vec![0x00, 0x0F, 1, 0, 0x44, 0, 1, 0];
    exchange(&mut seg, &[(FPWR, 0x1002, 0x0800, sm0)], 0);
    let r = exchange(&mut seg, &[(FPWR, 0x1002, 0x0F00, vec![0x55])], 1_000_000);
    assert_eq!(r[0].2, 1, "outputs written");
    faults.set_silent_from(Some(1));
    exchange(&mut seg, &[(BRD, 0, 0x0000, vec![0])], 50_000_000);
    let el2889 = |seg: &Segment| {
        let t = seg.terminal(1).expect("EL2889");
        (t.peek(0x0440) & 0x01, t.peek(0x0442))
    };
    assert_eq!(el2889(&seg), (1, 0), "within the watchdog time");
    exchange(&mut seg, &[(BRD, 0, 0x0000, vec![0])], 200_000_000);
    assert_eq!(el2889(&seg), (0, 1), "expired while cut off");
}

#[test]
fn a_silent_terminal_stays_powered_and_keeps_its_state() {
    // `silent` cuts the cable into a terminal: it keeps its station address, AL state and
    // registers, its time runs on (its port 0 shows no link meanwhile), and it answers
    // as it is when the cable is back. A power cycle is what resets it.
    let mut seg = bus(&["ek1100", "el2828", "el2889"]);
    let faults = seg.faults();
    exchange(&mut seg, &[(APWR, 0xFFFE, 0x0010, vec![0x03, 0x10])], 0);
    exchange(&mut seg, &[(FPWR, 0x1003, 0x0120, vec![0x02, 0])], 0);
    exchange(&mut seg, &[(FPWR, 0x1003, 0x0F80, vec![0xA5])], 0);
    faults.set_silent_from(Some(2));
    let r = exchange(&mut seg, &[(FPRD, 0x1003, 0x0130, vec![0; 2])], 1_000_000);
    assert_eq!(r[0].2, 0, "not reachable");
    let dl = seg.terminal(2).expect("t2").peek(0x0110);
    assert_eq!(dl & 0x10, 0, "no link on its port 0 meanwhile");
    faults.set_silent_from(None);
    let r = exchange(
        &mut seg,
        &[
            (FPRD, 0x1003, 0x0130, vec![0; 2]),
            (FPRD, 0x1003, 0x0F80, vec![0]),
            (FPRD, 0x1003, 0x0110, vec![0; 2]),
        ],
        2_000_000,
    );
    assert_eq!(
        (r[0].1[0], r[0].2),
        (0x02, 1),
        "still PRE-OP at its address"
    );
    assert_eq!(r[1].1, vec![0xA5], "user RAM kept");
    assert_eq!(r[2].1[0] & 0x10, 0x10, "port 0 link back");
}

#[test]
fn wire_time_delays_reply_and_port_receive_times() {
    let mut seg = bus(&["ek1100", "el2889"]);
    seg.set_wire_time(WireTime::realistic());
    let mut f = frame(&[(BWR, 0, 0x0900, vec![0; 4])]);
    let out = seg.process(&mut f, 1_000_000);
    assert_eq!(
        out,
        FrameOutcome::Reply {
            delay_ns: WireTime::serialisation_ns(f.len()) + 2 * 2 * 500
        }
    );
    let t = seg.terminal(0).expect("t");
    let p0 = u32::from_le_bytes([t.peek(0x900), t.peek(0x901), t.peek(0x902), t.peek(0x903)]);
    let p1 = u32::from_le_bytes([t.peek(0x904), t.peek(0x905), t.peek(0x906), t.peek(0x907)]);
    assert_eq!(u64::from(p0), t.local_time(1_000_000) & 0xFFFF_FFFF);
    assert_eq!(p1 - p0, 1000, "through the EL2889 and back");
    // Terminals powered up at different moments: their local clocks differ.
    let other = seg.terminal(1).expect("t");
    assert_ne!(t.local_time(0), other.local_time(0));
    assert!(t.local_time(0) < 20_000_000 && other.local_time(0) < 20_000_000);
}

// ----- replay of real captures -------------------------------------------------------

/// One frame of a capture: number (1-based, as Wireshark shows it), time in ns, bytes.
struct Captured {
    number: usize,
    ts_ns: u64,
    data: Vec<u8>,
}

/// A minimal pcapng reader (section header, interface description with if_tsresol,
/// enhanced packet blocks), enough for the shared captures.
fn read_pcapng(path: &str) -> Vec<Captured> {
    let d = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let u32at = |i: usize| u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
    let mut out = Vec::new();
    let mut i = 0;
    let mut ns_per_unit: u64 = 1000;
    let mut n = 0;
    while i + 12 <= d.len() {
        let kind = u32at(i);
        let len = u32at(i + 4) as usize;
        assert!(len >= 12 && i + len <= d.len(), "{path}: bad block at {i}");
        match kind {
            1 => {
                // Options after 8 bytes of fixed fields (link type, reserved, snap len).
                let mut o = i + 16;
                while o + 4 <= i + len - 4 {
                    let code = u16::from_le_bytes([d[o], d[o + 1]]);
                    let olen = usize::from(u16::from_le_bytes([d[o + 2], d[o + 3]]));
                    if code == 0 {
                        break;
                    }
                    if code == 9 && olen >= 1 {
                        let r = d[o + 4];
                        assert_eq!(r & 0x80, 0, "power-of-two resolution unsupported");
                        ns_per_unit = 10u64.pow(9u32.saturating_sub(u32::from(r)));
                    }
                    o += 4 + olen.div_ceil(4) * 4;
                }
            }
            6 => {
                n += 1;
                let ts = (u64::from(u32at(i + 12)) << 32) | u64::from(u32at(i + 16));
                let cap = u32at(i + 20) as usize;
                out.push(Captured {
                    number: n,
                    ts_ns: ts * ns_per_unit,
                    data: d[i + 28..i + 28 + cap].to_vec(),
                });
            }
            _ => {}
        }
        i += len;
    }
    out
}

#[derive(Default, Debug)]
struct ReplayReport {
    frames: usize,
    datagrams: usize,
    wkc_mismatches: Vec<String>,
    data_mismatches: Vec<String>,
    skipped_data: usize,
}

/// Whether a datagram's data legitimately differs between the simulator and the real
/// terminals (documented in NOTES-core.md): DC times (0x0900..0x09FF) depend on the
/// oscillators; the EEPROM busy bit and pending command (0x0502 bits 8..10, 15) depend on
/// the EEPROM's timing.
fn data_may_differ(cmd: u8, ado: u16, len: usize) -> bool {
    let end = u32::from(ado) + len as u32;
    let physical = !matches!(cmd, LRD | LWR | LRW);
    physical && u32::from(ado) < 0x0A00 && end > 0x0900
}

/// Replays every request frame of `capture` through `seg` and compares each datagram of
/// the simulated reply with the real one.
fn replay(seg: &mut Segment, capture: &str, from_frame: usize) -> ReplayReport {
    replay_with(seg, capture, from_frame, &|_, _, _| false, false)
}

/// [`replay`], not comparing the data of datagrams for which `skip(cmd, adp, ado)` holds
/// (their working counters still are).
fn replay_with(
    seg: &mut Segment,
    capture: &str,
    from_frame: usize,
    skip: &dyn Fn(u8, u16, u16) -> bool,
    ignore_irq: bool,
) -> ReplayReport {
    let frames = read_pcapng(&testdata(&format!("captures/{capture}")));
    let t0 = frames.first().map(|f| f.ts_ns).unwrap_or(0);
    let mut report = ReplayReport::default();
    let mut k = 0;
    while k < frames.len() {
        let req = &frames[k];
        k += 1;
        if req.number < from_frame
            || req.data.len() < 14
            || req.data[12..14] != ETHERTYPE_ETHERCAT.to_be_bytes()
            || req.data[6] & SOURCE_MAC_PROCESSED_BIT != 0
        {
            continue;
        }
        // The reply is the next processed frame with the same length and first datagram
        // index (TwinCAT keeps several frames in flight).
        // Requests are captured before padding, replies padded to 60 bytes.
        let Some(reply) = frames[k..].iter().take(16).find(|f| {
            f.data.len() == req.data.len().max(60)
                && f.data[6] & SOURCE_MAC_PROCESSED_BIT != 0
                && f.data.get(17) == req.data.get(17)
                && f.data.get(16) == req.data.get(16)
        }) else {
            continue;
        };
        let mut sim = req.data.clone();
        let outcome = seg.process(&mut sim, req.ts_ns - t0);
        report.frames += 1;
        if !matches!(outcome, FrameOutcome::Reply { .. }) {
            report
                .wkc_mismatches
                .push(format!("frame {}: {outcome:?}", req.number));
            continue;
        }
        assert_eq!(
            sim[6], reply.data[6],
            "source MAC of frame {}",
            reply.number
        );
        let mut spans = Vec::new();
        if parse_frame(&reply.data[..req.data.len()], &mut spans).is_err() {
            continue;
        }
        for (j, s) in spans.iter().enumerate() {
            report.datagrams += 1;
            let h = s.header;
            let d = h + DATAGRAM_HEADER_LEN;
            let cmd = reply.data[h];
            let ado = u16::from_le_bytes([reply.data[h + 4], reply.data[h + 5]]);
            let adp = u16::from_le_bytes([reply.data[h + 2], reply.data[h + 3]]);
            let w = d + s.len;
            let what = format!(
                "frame {} datagram {j} cmd {cmd} adp {adp:#06x} ado {ado:#06x} len {}",
                reply.number, s.len
            );
            let header_differs = if ignore_irq {
                sim[h..h + 8] != reply.data[h..h + 8]
            } else {
                sim[h..d] != reply.data[h..d]
            };
            if header_differs {
                report.wkc_mismatches.push(format!(
                    "{what}: header sim {} real {}",
                    hex(&sim[h..d]),
                    hex(&reply.data[h..d])
                ));
            }
            if sim[w..w + 2] != reply.data[w..w + 2] {
                report.wkc_mismatches.push(format!(
                    "{what}: wkc sim {} real {}",
                    u16::from_le_bytes([sim[w], sim[w + 1]]),
                    u16::from_le_bytes([reply.data[w], reply.data[w + 1]])
                ));
            }
            let req_adp = u16::from_le_bytes([req.data[h + 2], req.data[h + 3]]);
            if data_may_differ(cmd, ado, s.len) || skip(cmd, req_adp, ado) {
                report.skipped_data += 1;
                continue;
            }
            let mut a = sim[d..w].to_vec();
            let mut b = reply.data[d..w].to_vec();
            // 0x0502: the EEPROM busy bit and pending command depend on its timing.
            let from = u32::from(ado);
            for (i, (x, y)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
                if !matches!(cmd, LRD | LWR | LRW) && from + i as u32 == 0x0503 {
                    *x &= !0x87;
                    *y &= !0x87;
                }
                // 0x0502 bit 4 is reserved (ETG.1000.4 table 48) and its value on the
                // ET1200s of the captures follows no rule found (see NOTES-core.md).
                if !matches!(cmd, LRD | LWR | LRW) && from + i as u32 == 0x0502 {
                    *x &= !0x10;
                    *y &= !0x10;
                }
            }
            if a != b {
                report.data_mismatches.push(format!(
                    "{what}: data sim {} real {}",
                    hex(&sim[d..w]),
                    hex(&reply.data[d..w])
                ));
            }
        }
    }
    report
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn assert_faithful(report: &ReplayReport) {
    let show = |v: &[String]| v.iter().take(25).cloned().collect::<Vec<_>>().join("\n");
    assert!(
        report.wkc_mismatches.is_empty() && report.data_mismatches.is_empty(),
        "{} frames, {} datagrams ({} with DC data skipped)\n{} wkc/header mismatches:\n{}\n{} data mismatches:\n{}",
        report.frames,
        report.datagrams,
        report.skipped_data,
        report.wkc_mismatches.len(),
        show(&report.wkc_mismatches),
        report.data_mismatches.len(),
        show(&report.data_mismatches),
    );
    assert!(
        report.frames > 100,
        "too few frames compared: {}",
        report.frames
    );
}

#[test]
fn replay_ethercrab_ek1100_el2828_el2889() {
    let mut seg = bus(&["ek1100", "el2828", "el2889"]);
    let report = replay(&mut seg, "ek1100-el2828-el2889.pcapng", 0);
    assert_faithful(&report);
}

#[test]
fn replay_ethercrab_dc() {
    let mut seg = bus(&["ek1100", "el2828", "el2889"]);
    let report = replay(&mut seg, "dc.pcapng", 0);
    assert_faithful(&report);
}

#[test]
fn replay_twincat_run_ek1100_el1004() {
    // No EEPROM image of the EL1004 was recorded; its ESC (ET1200 in device emulation, no
    // process data in this capture) is register-for-register an EL2004's. TwinCAT had set
    // the station addresses 0x03E9/0x03EA and PRE-OP before the capture starts: prime the
    // bus the same way.
    let mut seg = ek1100_el1004();
    for (pos, addr) in [(0u16, 0x03E9u16), (0xFFFF, 0x03EA)] {
        let r = exchange(
            &mut seg,
            &[(APWR, pos, 0x0010, addr.to_le_bytes().to_vec())],
            0,
        );
        assert_eq!(r[0].2, 1);
    }
    let r = exchange(&mut seg, &[(BWR, 0, 0x0120, vec![0x02, 0])], 0);
    assert_eq!(r[0].2, 2);
    let report = replay(&mut seg, "twincat-run-ek1100-el1004.pcapng", 0);
    assert_faithful(&report);
}

#[test]
fn replay_soem_ek1100_el1004() {
    // SOEM's scan from power-on: the EL1004 stands in as an EL2004 (same ESC, see the
    // TwinCAT replay); its EEPROM contents therefore differ and are not compared.
    let mut seg = ek1100_el1004();
    // SII data of the EL1004 (station 0x1002, or position 1 = 0xFFFF before addresses).
    let skip = |_cmd: u8, adp: u16, ado: u16| (0x0508..0x0510).contains(&ado) && adp == 0x1002;
    let report = replay_with(
        &mut seg,
        "soem-sdinfo-ek1100-el1004.pcapng",
        0,
        &skip,
        false,
    );
    assert_faithful(&report);
}

/// The bus of the TwinCAT and SOEM captures: an EK1100 and an EL1004 stand-in.
fn ek1100_el1004() -> Segment {
    let mut seg = bus(&["ek1100"]);
    seg.push(el1004_standin());
    seg
}

/// An EL1004 for the replays: its EEPROM was not recorded, so the EL2004 image (same
/// terminal family, no mailbox, device emulation) with the EL1004's ESC chip.
fn el1004_standin() -> Esc {
    let sii = crate::sii::Sii::load(std::path::Path::new(&testdata("eeprom/el2004.bin")))
        .expect("el2004");
    let mut cfg = EscConfig::for_sii(&sii);
    cfg.chip = crate::esc::regs::EscChip::ET1200_RECEIVE_TIMES_ONLY;
    let app = BasicApp::from_sii(&sii);
    Esc::new(cfg, sii, Box::new(app))
}

#[test]
fn vlan_tagged_frames_are_processed() {
    let mut seg = bus(&["ek1100", "el2004"]);
    let plain = frame(&[(BRD, 0, 0x0000, vec![0])]);
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    tagged.extend_from_slice(&plain[12..]);
    assert!(matches!(
        seg.process(&mut tagged, 0),
        FrameOutcome::Reply { .. }
    ));
    let wkc_at = tagged.len() - 2;
    assert_eq!(tagged[wkc_at], 2);
    assert_eq!(tagged[wkc_at - 1], 0x13);
}

#[test]
fn armw_brw_and_logical_inputs() {
    let mut seg = bus(&["ek1100", "el2889", "ek1814"]);
    for (i, adp) in [0u16, 0xFFFF, 0xFFFE].into_iter().enumerate() {
        exchange(
            &mut seg,
            &[(
                APWR,
                adp,
                0x0010,
                (0x1000 + i as u16).to_le_bytes().to_vec(),
            )],
            0,
        );
    }
    // ARMW from position 1: the EL2889 reads its station address (+1), every other
    // terminal writes the data as it arrives (+1 each): the EK1100 upstream gets the
    // frame's zeros, the EK1814 downstream the EL2889's address.
    let r = exchange(&mut seg, &[(ARMW, 0xFFFF, 0x0010, vec![0; 2])], 0);
    assert_eq!(r[0], (0x0002, vec![0x01, 0x10], 3));
    assert_eq!(seg.terminal(0).expect("t").station_address(), 0x0000);
    assert_eq!(seg.terminal(2).expect("t").station_address(), 0x1001);
    // BRW: each terminal ORs its old value into the frame and writes what it received,
    // upstream ORs included.
    let r = exchange(&mut seg, &[(BRW, 0, 0x0010, vec![0x00, 0x20])], 0);
    assert_eq!(r[0], (3, vec![0x01, 0x30], 9));
    let addrs: Vec<u16> = seg
        .terminals()
        .iter()
        .map(|t| t.station_address())
        .collect();
    assert_eq!(addrs, [0x2000, 0x2000, 0x3001]);
    // The EK1814's inputs (SII TxPDOs on SM3) through a read FMMU and LRD.
    let ek1814 = seg.terminal(2).expect("t");
    let sms = &ek1814.sii().sync_managers;
    let input_sm = sms
        .iter()
        .position(|s| s.sm_type == crate::sii::SmType::ProcessDataInputs)
        .expect("input SM");
    let start = sms[input_sm].start;
    let sm_reg = 0x0800 + 8 * input_sm as u16;
    let s = start.to_le_bytes();
    exchange(
        &mut seg,
        &[(APWR, 0xFFFE, sm_reg, vec![s[0], s[1], 1, 0, 0x00, 0, 1, 0])],
        0,
    );
    let mut f = vec![0u8; 16];
    f[..4].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    f[4] = 1;
    f[7] = 7;
    f[8..10].copy_from_slice(&start.to_le_bytes());
    f[11] = 1;
    f[12] = 1;
    exchange(&mut seg, &[(APWR, 0xFFFE, 0x0600, f)], 0);
    let r = exchange(&mut seg, &[(LRD, 0x0000, 0x0001, vec![0xEE])], 0);
    assert_eq!(r[0].2, 1);
    assert_eq!(r[0].1, vec![0x00], "inputs read zero until set");
}

#[test]
fn blank_eeprom_terminal_still_answers() {
    let raw = std::fs::read(testdata("eeprom/empty-eeprom.bin")).expect("image");
    let sii = crate::sii::Sii::parse_allow_blank(raw).expect("accepted");
    let mut seg = Segment::new();
    seg.push(basic_terminal(sii));
    let r = exchange(&mut seg, &[(BRD, 0, 0x0000, vec![0])], 0);
    assert_eq!(r[0], (1, vec![0x12], 1));
    // Its EEPROM reads the blank image's words.
    exchange(&mut seg, &[(APWR, 0, 0x0502, vec![0, 1, 0x08, 0, 0, 0])], 0);
    let r = exchange(&mut seg, &[(APRD, 0, 0x0508, vec![0; 4])], 0);
    assert_eq!(r[0].1, vec![0x01, 0, 0, 0]);
}

#[test]
fn closing_port_1_turns_frames_back() {
    let mut seg = bus(&["ek1100", "el2828", "el2889"]);
    let r = exchange(&mut seg, &[(BRD, 0, 0, vec![0])], 0);
    assert_eq!(r[0].2, 3);
    // DL control of the EL2828: loop port 1 "closed" (0x0101 bits 2..3 = 11).
    let r = exchange(&mut seg, &[(APWR, 0xFFFF, 0x0101, vec![0x0C])], 0);
    assert_eq!(r[0].2, 1);
    let r = exchange(&mut seg, &[(BRD, 0, 0, vec![0])], 0);
    assert_eq!((r[0].0, r[0].2), (2, 2), "the EL2889 is cut off");
    // DL status of the EL2828 shows port 1's loop closed, without communication.
    let r = exchange(&mut seg, &[(APRD, 0xFFFF, 0x0111, vec![0])], 0);
    assert_eq!(r[0].1[0] & 0x0C, 0x04);
    exchange(&mut seg, &[(APWR, 0xFFFF, 0x0101, vec![0x00])], 0);
    let r = exchange(&mut seg, &[(BRD, 0, 0, vec![0])], 0);
    assert_eq!(r[0].2, 3);
    // The last terminal's port 1 forced open (0b10) without a link: frames are lost.
    exchange(&mut seg, &[(APWR, 0xFFFE, 0x0101, vec![0x08])], 0);
    let mut f = frame(&[(BRD, 0, 0, vec![0])]);
    assert_eq!(seg.process(&mut f, 0), FrameOutcome::Lost);
}

#[test]
fn random_valid_datagrams_keep_the_frame_intact() {
    // Well-formed frames with random commands, addresses and data hit every register
    // side effect (AL control, SII commands, SM/FMMU configuration, DC) in odd orders.
    let mut seg = bus(&["ek1100", "el2828", "el2889", "el4104"]);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for n in 0..30_000u64 {
        let count = 1 + (next() % 3) as usize;
        let dgs: Vec<(u8, u16, u16, Vec<u8>)> = (0..count)
            .map(|_| {
                let r = next();
                let cmd = (r % 16) as u8;
                let adp = if r & 0x100 != 0 {
                    (r >> 16) as u16
                } else {
                    0x1000 + (r >> 9) as u16 % 4
                };
                // Bias addresses towards the interesting registers and RAM.
                let ado = match (r >> 32) % 4 {
                    0 => 0x0100 + ((r >> 40) % 0x60) as u16 * 8,
                    1 => 0x0500 + ((r >> 40) % 0x10) as u16,
                    2 => 0x0800 + ((r >> 40) % 0x200) as u16,
                    _ => 0x0F00 + ((r >> 40) % 0x600) as u16,
                };
                let len = (next() % 24) as usize;
                let data = (0..len).map(|_| next() as u8).collect();
                (cmd, adp, ado, data)
            })
            .collect();
        let mut f = frame(&dgs);
        let sent = f.clone();
        match seg.process(&mut f, n * 50_000) {
            FrameOutcome::Reply { .. } => {
                assert_eq!(f.len(), sent.len(), "frame {n}");
                let reply = parsed(&f);
                assert_eq!(reply.len(), dgs.len(), "frame {n}: datagrams kept");
                for (r, d) in reply.iter().zip(&dgs) {
                    assert_eq!(r.1.len(), d.3.len(), "frame {n}: data length kept");
                }
            }
            // A random DL control write may open a port without a link.
            FrameOutcome::Lost => assert_eq!(f, sent, "frame {n}: lost frames untouched"),
            FrameOutcome::NotEtherCat => panic!("frame {n} taken for a non-EtherCAT frame"),
        }
    }
}

#[test]
fn replay_twincat_scan_ek1100_el1004() {
    let mut seg = ek1100_el1004();
    // EEPROM contents of the stand-in (reads of 0x0502..0x050F of position 1 / 0x03EA).
    let skip = |_cmd: u8, adp: u16, ado: u16| {
        (0x0502..0x0510).contains(&ado) && (adp == 0x03EA || adp == 0xFFFF)
    };
    // TwinCAT re-initialises its network adapter between scans (gaps of up to a second
    // in the capture): the EK1100's port 0 link drops and the DL status event shows up
    // in the IRQ field of the next frames. Link events of the master's adapter are not
    // in the capture, so the IRQ field is not compared here.
    let report = replay_with(&mut seg, "twincat-scan-boxes.pcapng", 0, &skip, true);
    assert_faithful(&report);
}

/// A bus of an EK1100 (the reference clock, no drift) and EL2889s whose clocks drift by
/// `drift_ppm`, with the wire-time model on, station addresses 0x1000 + position.
fn drifting_bus(drift_ppm: &[f64]) -> Segment {
    let mut seg = Segment::new();
    for (i, ppm) in std::iter::once(0.0)
        .chain(drift_ppm.iter().copied())
        .enumerate()
    {
        let name = if i == 0 { "ek1100" } else { "el2889" };
        let sii = crate::sii::Sii::load(std::path::Path::new(&testdata(&format!(
            "eeprom/{name}.bin"
        ))))
        .expect("eeprom");
        let mut cfg = EscConfig::for_sii(&sii);
        cfg.drift_ppm = ppm;
        let app = BasicApp::from_sii(&sii);
        seg.push(Esc::new(cfg, sii, Box::new(app)));
    }
    seg.set_wire_time(WireTime::realistic());
    for i in 0..seg.len() {
        let adp = (i as u16).wrapping_neg();
        let station = (0x1000 + i as u16).to_le_bytes().to_vec();
        exchange(&mut seg, &[(APWR, adp, 0x0010, station)], 0);
    }
    seg
}

/// The ETG.1020 DC start-up a master performs at bus time `now` on a line of terminals
/// with a system time: latch the receive times (BWR 0x0900), read them, write each
/// terminal's propagation delay (0x0928) and offset to the reference's time (0x0920).
fn dc_start_up(seg: &mut Segment, now: u64) {
    let n = seg.len();
    exchange(seg, &[(BWR, 0, 0x0900, vec![0; 4])], now);
    let mut epu = Vec::new();
    let mut port = Vec::new();
    for i in 0..n as u16 {
        let r = exchange(seg, &[(FPRD, 0x1000 + i, 0x0918, vec![0; 8])], now);
        epu.push(u64::from_le_bytes(
            r[0].1.clone().try_into().expect("8 bytes"),
        ));
        let r = exchange(seg, &[(FPRD, 0x1000 + i, 0x0900, vec![0; 8])], now);
        let p0 = u32::from_le_bytes([r[0].1[0], r[0].1[1], r[0].1[2], r[0].1[3]]);
        let p1 = u32::from_le_bytes([r[0].1[4], r[0].1[5], r[0].1[6], r[0].1[7]]);
        port.push((p0, p1));
    }
    // Propagation delay of terminal i: half the loop time behind the terminals before it.
    let mut delays = vec![0u64; n];
    for i in 1..n {
        let loop_before = u64::from(port[i - 1].1.wrapping_sub(port[i - 1].0));
        let loop_here = if i + 1 < n {
            u64::from(port[i].1.wrapping_sub(port[i].0))
        } else {
            0
        };
        delays[i] = delays[i - 1] + (loop_before - loop_here) / 2;
    }
    for i in 0..n {
        let station = 0x1000 + i as u16;
        let offset = epu[0].wrapping_sub(epu[i]);
        exchange(
            seg,
            &[(FPWR, station, 0x0920, offset.to_le_bytes().to_vec())],
            now,
        );
        let d = delays[i] as u32;
        exchange(
            seg,
            &[(FPWR, station, 0x0928, d.to_le_bytes().to_vec())],
            now,
        );
    }
}

/// The magnitude of terminal `i`'s system time difference (0x092C bits 30:0).
fn system_time_difference(seg: &mut Segment, i: u16, now: u64) -> u32 {
    let r = exchange(seg, &[(FPRD, 0x1000 + i, 0x092C, vec![0; 4])], now);
    u32::from_le_bytes([r[0].1[0], r[0].1[1], r[0].1[2], r[0].1[3]]) & 0x7FFF_FFFF
}

/// How far each terminal's system time is from the reference's when a frame passes them
/// at `now` (arrival offsets taken out), ns.
fn system_time_errors(seg: &Segment, now: u64) -> Vec<i64> {
    let wire = seg.wire_time();
    let at = |i: usize| {
        let t = now + wire.arrival_offset_ns(i);
        seg.terminal(i).expect("t").system_time(t) - wire.arrival_offset_ns(i)
    };
    let reference = at(0);
    (1..seg.len())
        .map(|i| at(i).wrapping_sub(reference) as i64)
        .collect()
}

#[test]
fn dc_procedure_brings_drifting_clocks_into_step() {
    // The ETG.1020 DC start-up against clocks that start at different moments and drift
    // (+80 ppm on the first EL2889, -30 ppm on the second).
    let mut seg = drifting_bus(&[80.0, -30.0]);
    let mut now = 1_000_000u64;
    dc_start_up(&mut seg, now);
    // Static drift compensation: the reference's time to everyone, once per millisecond.
    for _ in 0..3000 {
        now += 1_000_000;
        exchange(&mut seg, &[(FRMW, 0x1000, 0x0910, vec![0; 8])], now);
    }
    for i in 1..3u16 {
        let diff = system_time_difference(&mut seg, i, now);
        assert!(diff < 50, "terminal {i} still {diff} ns off");
    }
    // System times agree when the frame passes each terminal (arrival offsets included).
    let errors = system_time_errors(&seg, now);
    assert!(errors.iter().all(|e| e.abs() < 100), "{errors:?}");
}

#[test]
fn drift_compensation_converges_within_a_second_of_compares() {
    // Clocks ±30 ppm off the reference. Compares once a millisecond and every 100 µs,
    // with the ESC's reset settings of the loop and with the filter settings ethercrab
    // writes (ETG.1020: 0x0934 = 0x0C00, then 0x0930 = 0x1000 to reset the filters).
    const SECOND: u64 = 1_000_000_000;
    for (interval, ethercrab_filters) in [
        (1_000_000u64, false),
        (100_000, false),
        (1_000_000, true),
        (100_000, true),
    ] {
        let what = format!("compares every {interval} ns, ethercrab filters {ethercrab_filters}");
        let mut seg = drifting_bus(&[30.0, -30.0]);
        let mut now = 1_000_000u64;
        dc_start_up(&mut seg, now);
        if ethercrab_filters {
            exchange(&mut seg, &[(BWR, 0, 0x0934, vec![0x00, 0x0C])], now);
            exchange(&mut seg, &[(BWR, 0, 0x0930, vec![0x00, 0x10])], now);
        }
        let end = now + SECOND;
        let mut worst_last_100ms = 0i64;
        while now < end {
            now += interval;
            exchange(&mut seg, &[(FRMW, 0x1000, 0x0910, vec![0; 8])], now);
            if end - now < SECOND / 10 {
                let errors = system_time_errors(&seg, now);
                worst_last_100ms = errors.iter().fold(worst_last_100ms, |w, e| w.max(e.abs()));
            }
        }
        assert!(
            worst_last_100ms < 100,
            "{what}: up to {worst_last_100ms} ns off in the last 100 ms"
        );
        for (i, ppm) in [(1u16, 30.0), (2, -30.0)] {
            let diff = system_time_difference(&mut seg, i, now);
            assert!(diff < 100, "{what}: terminal {i} shows {diff} ns in 0x092C");
            // The speed counter diff (0x0932) cancels the oscillator's drift: a fast clock
            // is slowed down (negative), a slow one sped up.
            let r = exchange(&mut seg, &[(FPRD, 0x1000 + i, 0x0932, vec![0; 2])], now);
            let diff = i16::from_le_bytes([r[0].1[0], r[0].1[1]]);
            let speed_ppm = crate::esc::speed_counter_speed(i32::from(diff), 0x1000) * 1e6;
            assert!(
                (speed_ppm + ppm).abs() < 0.2,
                "{what}: terminal {i}: speed counter diff {diff} = {speed_ppm} ppm for a drift of {ppm} ppm"
            );
        }
        // Left alone for another second, the clocks stay together: the drift is
        // compensated, not just the phase.
        let later = now + SECOND;
        exchange(&mut seg, &[(BRD, 0, 0x0000, vec![0; 2])], later);
        let errors = system_time_errors(&seg, later);
        assert!(
            errors.iter().all(|e| e.abs() < 200),
            "{what}: a second without compares: {errors:?}"
        );
    }
}

#[test]
fn without_drift_compensation_clocks_drift_apart() {
    // The same bus and start-up without compares: ±30 ppm are 30 µs per second each way,
    // the figure the loop has to remove.
    let mut seg = drifting_bus(&[30.0, -30.0]);
    let now = 1_000_000u64;
    dc_start_up(&mut seg, now);
    let later = now + 1_000_000_000;
    exchange(&mut seg, &[(BRD, 0, 0x0000, vec![0; 2])], later);
    let errors = system_time_errors(&seg, later);
    assert!(errors[0] > 29_000 && errors[1] < -29_000, "{errors:?}");
}

/// A cyclic-looking frame of four datagrams: APRD, FPWR into a mailbox, LRW, BRD.
fn four_datagram_frame() -> Vec<u8> {
    frame(&[
        (APRD, 0, 0x0130, vec![0; 2]),
        (FPWR, 0x1001, 0x1000, vec![0x11; 8]),
        (LRW, 0, 0, vec![0x55; 6]),
        (BRD, 0, 0x0000, vec![0; 4]),
    ])
}

#[test]
fn frames_truncated_at_every_byte_are_lost_and_counted() {
    let mut seg = bus(&["ek1100", "el2828", "el2889"]);
    let whole = four_datagram_frame();
    let header_end = 16; // Ethernet header (14) + EtherCAT header (2)
    let mut counted = 0u8;
    for cut in 0..whole.len() {
        // As it arrives: cut short, the EtherCAT header still declaring the whole body.
        let mut f = whole[..cut].to_vec();
        let before = f.clone();
        assert_eq!(seg.process(&mut f, 0), FrameOutcome::Lost, "cut at {cut}");
        assert_eq!(f, before, "a lost frame is not modified (cut at {cut})");
        if cut >= header_end {
            counted += 1;
            assert!(
                matches!(
                    seg.last_error(),
                    Some(FrameError::LengthMismatch { available, .. }) if available == cut - header_end
                ),
                "cut at {cut}: {:?}",
                seg.last_error()
            );
        } else {
            assert_eq!(
                seg.last_error(),
                Some(FrameError::TooShort(cut)),
                "cut at {cut}"
            );
        }
        // Cut short with the header agreeing: the datagram chain runs past the end.
        if cut >= header_end {
            let mut f = whole[..cut].to_vec();
            let declared = (cut - header_end) as u16 | (ECAT_TYPE_DATAGRAMS << 12);
            f[14..16].copy_from_slice(&declared.to_le_bytes());
            assert_eq!(
                seg.process(&mut f, 0),
                FrameOutcome::Lost,
                "declared cut at {cut}"
            );
            counted += 1;
            assert!(
                matches!(seg.last_error(), Some(FrameError::DatagramOverrun { .. })),
                "declared cut at {cut}: {:?}",
                seg.last_error()
            );
        }
    }
    // Only the first terminal sees the invalid frame (port 0 invalid frame counter);
    // the counter saturates at 0xFF (ETG.1000.4 table 45).
    assert_eq!(seg.terminal(0).expect("t0").peek(0x0300), counted);
    assert_eq!(seg.terminal(1).expect("t1").peek(0x0300), 0);
    // The whole frame still goes through every terminal.
    let mut f = whole.clone();
    assert!(matches!(seg.process(&mut f, 0), FrameOutcome::Reply { .. }));
    let reply = parsed(&f);
    assert_eq!(reply.len(), 4);
    assert_eq!(reply[3].2, 3, "BRD counted by all three terminals");
}

#[test]
fn hostile_datagrams_keep_the_frame_intact() {
    // Well-formed frames whose datagrams reach anywhere in the 64 KiB address space
    // (past the end of the ESC, wrapping at 0xFFFF), with long data, random FMMU and
    // SyncManager configurations, DC times near the end of the 64-bit range and logical
    // addresses near 4 GiB. Whatever the terminals make of them, every reply keeps the
    // frame's structure: same length, same datagrams with the same commands and lengths.
    let mut seg = bus(&["ek1100", "el2828", "el2889", "el4104", "el7041"]);
    let mut x: u64 = 0xD1B5_4A32_D192_ED03;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut replies = 0;
    for n in 0..20_000u64 {
        let count = 1 + (next() % 4) as usize;
        let dgs: Vec<(u8, u16, u16, Vec<u8>)> = (0..count)
            .map(|_| {
                let r = next();
                let cmd = (r % 16) as u8;
                let adp = match (r >> 4) % 3 {
                    0 => 0,
                    1 => 0x1000 + ((r >> 8) % 5) as u16,
                    _ => (r >> 8) as u16,
                };
                let ado = match (r >> 24) % 6 {
                    0 => 0x0600 + ((r >> 32) % 0x100) as u16, // FMMUs
                    1 => 0x0800 + ((r >> 32) % 0x80) as u16,  // SyncManagers
                    2 => 0x0900 + ((r >> 32) % 0xA0) as u16,  // DC
                    3 => 0xFFFF - ((r >> 32) % 0x40) as u16,  // wraps at the top
                    _ => (r >> 32) as u16,                    // anywhere
                };
                let len = match (r >> 48) % 4 {
                    0 => (next() % 300) as usize,
                    _ => (next() % 20) as usize,
                };
                let data = (0..len)
                    .map(|i| {
                        if (r >> 56) & 1 == 0 {
                            next() as u8
                        } else {
                            0xFF ^ i as u8
                        }
                    })
                    .collect();
                (cmd, adp, ado, data)
            })
            .collect();
        let mut f = frame(&dgs);
        let sent = f.clone();
        let now = n.wrapping_mul(0x9E37_79B9) | (next() & 0xFFFF_0000_0000_0000);
        match seg.process(&mut f, now) {
            FrameOutcome::Reply { .. } => {
                replies += 1;
                assert_eq!(f.len(), sent.len(), "frame {n}");
                let reply = parsed(&f);
                assert_eq!(reply.len(), dgs.len(), "frame {n}");
                let mut spans = Vec::new();
                parse_frame(&f, &mut spans).expect("reply parses");
                for (s, d) in spans.iter().zip(&dgs) {
                    assert_eq!(f[s.header], d.0, "frame {n}: command kept");
                    assert_eq!(s.len, d.3.len(), "frame {n}: length kept");
                }
            }
            // A random write to DL control may open a port without a link.
            FrameOutcome::Lost => assert_eq!(f, sent, "frame {n}: lost frames untouched"),
            FrameOutcome::NotEtherCat => panic!("frame {n} taken for a non-EtherCAT frame"),
        }
    }
    assert!(replies > 1_000, "only {replies} frames answered");
}

/// An EK1100 whose system time is 1 ms below the wrap of the 64-bit range at bus time 0.
fn bus_near_the_wrap() -> Segment {
    let mut seg = bus(&["ek1100"]);
    let local = seg.terminal(0).expect("t0").local_time(0);
    let offset = (u64::MAX - 1_000_000).wrapping_sub(local);
    exchange(
        &mut seg,
        &[(APWR, 0, 0x0920, offset.to_le_bytes().to_vec())],
        0,
    );
    seg
}

/// Reads 8 bytes at `ado` of the first terminal at bus time `now`.
fn read64_at(seg: &mut Segment, ado: u16, now: u64) -> u64 {
    let r = exchange(seg, &[(APRD, 0, ado, vec![0; 8])], now);
    u64::from_le_bytes(r[0].1.clone().try_into().expect("8 bytes"))
}

/// Programs the first terminal's SYNC0 at bus time 0: off, cycle, start time, on.
fn program_sync0(seg: &mut Segment, start: u64, cycle: u32) {
    exchange(seg, &[(APWR, 0, 0x0981, vec![0x00])], 0);
    exchange(seg, &[(APWR, 0, 0x09A0, cycle.to_le_bytes().to_vec())], 0);
    exchange(seg, &[(APWR, 0, 0x0990, start.to_le_bytes().to_vec())], 0);
    exchange(seg, &[(APWR, 0, 0x0981, vec![0x03])], 0);
}

#[test]
fn sync_pulses_go_on_across_the_64_bit_wrap() {
    // A master may write any system time offset, start time and cycle: the SYNC pulses
    // go on across the wrap of the 64-bit system time instead of overflowing. First
    // pulse 0.5 ms ahead, 1 ms cycle: after 3 ms the pulses at −0.5 ms, +0.5 ms and
    // +1.5 ms around the wrap have come, the next is at +2.5 ms.
    let mut seg = bus_near_the_wrap();
    let start = u64::MAX - 499_999;
    program_sync0(&mut seg, start, 1_000_000);
    assert_eq!(
        read64_at(&mut seg, 0x0990, 3_000_000),
        start.wrapping_add(3_000_000)
    );
    assert_eq!(seg.terminal(0).expect("t0").sync_pulses().sync0, 3);
}

#[test]
fn a_passed_start_time_stays_pending_near_the_wrap_even_with_the_longest_cycle() {
    // The longest cycle a master can write, from a start 2 s before now: the system time
    // passed it, so nothing fires until it comes round again.
    let mut seg = bus_near_the_wrap();
    let now = seg.terminal(0).expect("t0").system_time(0);
    let past = now.wrapping_sub(2_000_000_000);
    program_sync0(&mut seg, past, u32::MAX);
    assert_eq!(read64_at(&mut seg, 0x0990, 10_000_000_000), past);
    assert_eq!(seg.terminal(0).expect("t0").sync_pulses().sync0, 0);
}

#[test]
fn extreme_system_time_compares_do_not_overflow_the_clock() {
    // Alternating 0x0910 writes at both ends of the 64-bit range make the time control
    // loop's differences as large as they get (±2^31 ns after its 32-bit compare): its
    // speed saturates within the speed counter diff's range and the local clock wraps,
    // it never overflows.
    let mut seg = bus(&["ek1100", "el7041"]);
    for (i, t) in [i64::MAX as u64, 0, u64::MAX, i64::MIN as u64, 1 << 62]
        .iter()
        .cycle()
        .take(40)
        .enumerate()
    {
        let now = i as u64 * 1_000_000;
        exchange(&mut seg, &[(BWR, 0, 0x0910, t.to_le_bytes().to_vec())], now);
        let reply = exchange(&mut seg, &[(BRD, 0, 0x0910, vec![0; 8])], now);
        assert_eq!(reply[0].2, 2, "both terminals answer compare {i}");
        for adp in [0u16, 0xFFFF] {
            let r = exchange(&mut seg, &[(APRD, adp, 0x0932, vec![0; 2])], now);
            let diff = i16::from_le_bytes([r[0].1[0], r[0].1[1]]);
            assert!(diff.unsigned_abs() <= 0x1000 - 0x7F, "compare {i}: {diff}");
        }
    }
}

#[test]
fn the_longest_injected_delay_saturates() {
    let mut seg = bus(&["ek1100"]);
    seg.set_wire_time(WireTime::realistic());
    seg.faults().set_delay(1.0, u64::MAX);
    let mut f = frame(&[(BRD, 0, 0, vec![0; 2])]);
    assert_eq!(
        seg.process(&mut f, 0),
        FrameOutcome::Reply { delay_ns: u64::MAX }
    );
    assert_eq!(parsed(&f)[0].2, 1);
}
