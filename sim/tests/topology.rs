//! The reference topology builds from a clean checkout with the shared test data beside it.

use std::path::PathBuf;

use ferrocat_sim::app::PdDirection;
use ferrocat_sim::topology::Topology;

#[test]
fn reference_topology_builds_in_order() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/sim/reference.toml");
    let topology = Topology::load(&path).expect("reference.toml parses");
    let bus = topology.build().expect("reference bus builds");
    let products: Vec<u32> = bus.terminals.iter().map(|t| t.sii.product_code).collect();
    assert_eq!(
        products,
        [
            0x044C2C52, 0x07D43052, 0x0B0C3052, 0x0B493052, 0x0C5C3052, 0x10083052, 0x1B813052
        ]
    );
    let names: Vec<&str> = bus.terminals.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "EK1100", "EL2004", "EL2828", "EL2889", "EL3164", "EL4104", "EL7041"
        ]
    );
    // Output bytes per terminal as the PDO objects say.
    let out: Vec<u16> = bus
        .terminals
        .iter()
        .map(|t| {
            t.app
                .process_data_layout()
                .iter()
                .filter(|l| l.direction == PdDirection::Outputs)
                .map(|l| l.bytes)
                .sum()
        })
        .collect();
    assert_eq!(out, [0, 1, 1, 2, 0, 8, 8]);
    assert_eq!(bus.terminals[6].drift_ppm, 15.0);
    assert_eq!(bus.plant.lock().models().len(), 4);
}

#[test]
fn alias_is_written_into_the_eeprom_image_and_loaded_by_the_esc() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/sim");
    let text = "[[terminal]]\nname = \"EL2004\"\neeprom = \"../../../shared/testdata/eeprom/el2004.bin\"\nalias = 0x1234\n";
    let topology = Topology::parse(text, &dir.join("inline.toml"), &dir).expect("parses");
    let segment = ferrocat_sim::serve::build_segment(topology.build().expect("builds"));
    let esc = segment.terminal(0).expect("terminal");
    // Word 4 of the image, and the alias register 0x0012 loaded from it. ETG.1000.4 table 33.
    assert_eq!(&esc.eeprom()[8..10], &[0x34, 0x12]);
    assert_eq!([esc.peek(0x0012), esc.peek(0x0013)], [0x34, 0x12]);
}

#[test]
fn wire_time_in_the_topology_delays_replies_and_spreads_port_receive_times() {
    use ferrocat_sim::segment::{command, master_frame};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/sim");
    let eeprom = |n: &str| format!("eeprom = \"../../../shared/testdata/eeprom/{n}.bin\"\n");
    let text = format!(
        "[wire_time]\nforward_delay_ns = 700\n\n\
         [[terminal]]\n{}\n[[terminal]]\n{}forward_delay_ns = 300\n\n[[terminal]]\n{}",
        eeprom("ek1100"),
        eeprom("el2828"),
        eeprom("el2889")
    );
    let topology = Topology::parse(&text, &dir.join("inline.toml"), &dir).expect("parses");
    let mut bus = ferrocat_sim::serve::bus_processor(topology.build().expect("builds"));
    // BWR 0x0900 latches every port's receive time (ETG.1000.4 table 60).
    let frame = master_frame(&[(command::BWR, 0, 0x0900, vec![0; 4])]);
    let reply = bus.process(&frame, 1_000_000_000).expect("a reply");
    // 80 ns per byte on the wire (frame padded to 60 bytes, plus preamble, FCS and gap:
    // 24 bytes), and each terminal's forwarding delay out and back.
    let wire_bytes = frame.len().max(60) as u64 + 24;
    assert_eq!(reply.delay_ns, wire_bytes * 80 + 2 * (700 + 300 + 700));
    assert_eq!(
        reply.frame[reply.frame.len() - 2],
        3,
        "every terminal latched"
    );
    let port_times = |i: usize| {
        let t = bus.segment().terminal(i).expect("terminal");
        let word =
            |a: u16| u32::from_le_bytes([t.peek(a), t.peek(a + 1), t.peek(a + 2), t.peek(a + 3)]);
        (word(0x0900), word(0x0904))
    };
    // Port 1 sees the frame come back after the terminals behind it, out and back.
    let (p0, p1) = port_times(0);
    assert_eq!(p1.wrapping_sub(p0), 2 * (300 + 700), "EK1100");
    let (p0, p1) = port_times(1);
    assert_eq!(p1.wrapping_sub(p0), 2 * 700, "EL2828");
}

#[test]
fn without_wire_time_replies_are_immediate() {
    use ferrocat_sim::segment::{command, master_frame};
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/sim/reference.toml");
    let mut bus = ferrocat_sim::serve::bus_processor(
        Topology::load(&path)
            .expect("parses")
            .build()
            .expect("builds"),
    );
    let frame = master_frame(&[(command::BRD, 0, 0x0000, vec![0; 2])]);
    assert_eq!(bus.process(&frame, 0).expect("a reply").delay_ns, 0);
}
