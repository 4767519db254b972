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
