//! Digital loop-back through the topology's wiring: outputs of an EL2004 wired to inputs
//! of an EK1814; a master's cyclic LRW sees the inputs follow the outputs.

use std::path::PathBuf;

use ferrocat_sim::models::Signal;
use ferrocat_sim::segment::{FrameOutcome, Segment, command, master_frame};
use ferrocat_sim::topology::Topology;

const TOPOLOGY: &str = "\
[[terminal]]
name = \"EL2004\"
eeprom = \"../../../shared/testdata/eeprom/el2004.bin\"

[[terminal]]
name = \"EK1814\"
eeprom = \"../../../shared/testdata/eeprom/ek1814.bin\"

[[wire]]
from = \"EL2004/7000:01\"
to = \"EK1814/6000:01\"

[[wire]]
from = \"EL2004/7010:01\"
to = \"EK1814/6010:01\"
";

/// Logical addresses of the process image: EL2004 outputs, EK1814 outputs, EK1814 inputs.
const EL2004_OUT: u32 = 0;
const EK1814_OUT: u32 = 1;
const EK1814_IN: u32 = 2;

/// (data, working counter) of each datagram of a reply.
fn send(seg: &mut Segment, datagrams: &[(u8, u16, u16, Vec<u8>)], now: u64) -> Vec<(Vec<u8>, u16)> {
    let mut f = master_frame(datagrams);
    assert!(matches!(
        seg.process(&mut f, now),
        FrameOutcome::Reply { .. }
    ));
    // Datagrams start after the Ethernet (14) and EtherCAT (2) headers; each is a 10-byte
    // header, the data, a 2-byte working counter (ETG.1000.4 table 9).
    let mut at = 16;
    datagrams
        .iter()
        .map(|d| {
            let data = f[at + 10..at + 10 + d.3.len()].to_vec();
            let w = at + 10 + d.3.len();
            at = w + 2;
            (data, u16::from_le_bytes([f[w], f[w + 1]]))
        })
        .collect()
}

/// SyncManager registers (0x0800 + 8n): start, length, control, activate.
fn sm(start: u16, len: u16, control: u8) -> Vec<u8> {
    let s = start.to_le_bytes();
    let l = len.to_le_bytes();
    vec![s[0], s[1], l[0], l[1], control, 0, 1, 0]
}

/// FMMU registers (0x0600 + 16n): one logical byte to one physical byte, bits 0..7,
/// `kind` 1 = read, 2 = write, active (ETG.1000.4 table 55).
fn fmmu(logical: u32, physical: u16, kind: u8) -> Vec<u8> {
    let l = logical.to_le_bytes();
    let p = physical.to_le_bytes();
    vec![
        l[0], l[1], l[2], l[3], 1, 0, 0, 7, p[0], p[1], 0, kind, 1, 0, 0, 0,
    ]
}

#[test]
fn a_wired_digital_output_drives_the_input_over_frames() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/sim");
    let topology = Topology::parse(TOPOLOGY, &dir.join("inline.toml"), &dir).expect("parses");
    let bus = topology.build().expect("builds");
    let plant = bus.plant.clone();
    let mut seg = ferrocat_sim::serve::build_segment(bus);
    use command::{APWR, BWR, LRW};
    // The SyncManagers as the SIIs place them: EL2004 outputs at 0x0F00; EK1814 outputs
    // at 0x0F01, inputs at 0x1000. Position 0 is addressed as 0x0000, position 1 as 0xFFFF.
    let setup = [
        (APWR, 0x0000, 0x0800, sm(0x0F00, 1, 0x44)),
        (APWR, 0x0000, 0x0600, fmmu(EL2004_OUT, 0x0F00, 2)),
        (APWR, 0xFFFF, 0x0800, sm(0x0F01, 1, 0x44)),
        (APWR, 0xFFFF, 0x0808, sm(0x1000, 1, 0x00)),
        (APWR, 0xFFFF, 0x0600, fmmu(EK1814_OUT, 0x0F01, 2)),
        (APWR, 0xFFFF, 0x0610, fmmu(EK1814_IN, 0x1000, 1)),
    ];
    for (i, r) in send(&mut seg, &setup, 0).iter().enumerate() {
        assert_eq!(r.1, 1, "setup datagram {i}");
    }
    for state in [0x02, 0x04, 0x08] {
        assert_eq!(
            send(&mut seg, &[(BWR, 0, 0x0120, vec![state, 0])], 0)[0].1,
            2
        );
    }
    // Cycle through every pattern of the EL2004's four outputs, two frames each: the
    // EK1814's inputs 1 and 2 follow outputs 1 and 2; inputs 3 and 4 are not wired.
    let mut now = 1_000_000;
    for pattern in [0x1u8, 0x3, 0x2, 0x0, 0xF, 0xC, 0x5, 0x0] {
        let mut last = Vec::new();
        for _ in 0..2 {
            now += 1_000_000;
            last = send(&mut seg, &[(LRW, 0, 0, vec![pattern, 0, 0])], now);
        }
        let (data, wkc) = &last[0];
        // EL2004 write (+2), EK1814 write (+2) and read (+1), ETG.1000.4 table 26.
        assert_eq!(*wkc, 5);
        assert_eq!(
            data[EK1814_IN as usize] & 0x0F,
            pattern & 0x03,
            "pattern {pattern:#x}"
        );
    }
    // The plant saw each change of output 1, in order, with its time.
    let ch1 = Signal::new(0, 0x7000, 0x01);
    let values: Vec<u64> = plant
        .output_log()
        .iter()
        .filter(|e| e.signal == ch1 && !e.safe_state)
        .map(|e| e.value)
        .collect();
    assert_eq!(values, [1, 0, 1, 0, 1, 0]);
}
