//! The bit-packed process image end to end: ferrocat brings a simulated bus of 4-bit
//! terminals (EK1814 with 4 outputs and 4 inputs, two EL2004) to OP, their areas share
//! bytes of the logical image through bit-oriented FMMUs, and output bits written with
//! LWR reach each terminal's SyncManager and its physical outputs, while the inputs
//! (wired to outputs in the simulator) read back through the packed input FMMU.

mod master_support;

use ferrocat::ethercat::al::AlState;
use ferrocat::ethercat::master::{BringUpOptions, Master, ScanOptions};
use ferrocat::ethercat::pdo::ProcessImage;
use ferrocat::ethercat::transport::{Transport, TransportConfig, identity_for_pid};
use ferrocat::ethercat::wire::{Address, Command, DatagramRepr};
use ferrocat_sim::models::{PlantHandle, Signal};
use master_support::*;

/// EK1814, then two EL2004 ("A", "B"); EK1814 input 1 shows its own output 5, input 2
/// output 2 of A, input 4 output 4 of B.
fn bus() -> (Transport, ferrocat_sim::inproc::BusHandle, PlantHandle) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sim");
    let eeprom = |n: &str| format!("../../../shared/testdata/eeprom/{n}.bin");
    let text = format!(
        "[[terminal]]\nname = \"EK1814\"\neeprom = {:?}\n\n\
         [[terminal]]\nname = \"A\"\neeprom = {:?}\n\n\
         [[terminal]]\nname = \"B\"\neeprom = {:?}\n\n\
         [[wire]]\nfrom = \"EK1814/7080:01\"\nto = \"EK1814/6000:01\"\n\n\
         [[wire]]\nfrom = \"A/7010:01\"\nto = \"EK1814/6010:01\"\n\n\
         [[wire]]\nfrom = \"B/7030:01\"\nto = \"EK1814/6030:01\"\n",
        eeprom("ek1814"),
        eeprom("el2004"),
        eeprom("el2004"),
    );
    let topology = ferrocat_sim::topology::Topology::parse(&text, &dir.join("packed.toml"), &dir)
        .expect("topology");
    let built = topology.build().expect("build");
    let plant = built.plant.clone();
    let (link, handle) = link_to(ferrocat_sim::serve::build_segment(built));
    let t = Transport::spawn(
        link,
        TransportConfig {
            identity: identity_for_pid(0x00B1_7000),
            ..TransportConfig::default()
        },
    );
    (t, handle, plant)
}

/// Sets output `index:01` of the terminal at `station` in `buf` (the output image).
fn set(image: &ProcessImage, buf: &mut [u8], station: u16, index: u16, on: bool) {
    let e = image
        .terminal(station)
        .and_then(|t| t.entry(index, 1))
        .unwrap_or_else(|| panic!("0x{station:04x} maps 0x{index:04x}:01"));
    assert!(e.write(buf, image.outputs.start, u64::from(on)));
}

/// One logical datagram (LWR, LRD) at `address`; its reply.
async fn logical(t: &Transport, command: Command, address: u32, data: Vec<u8>) -> DatagramRepr {
    let mut reply = t
        .exchange(vec![DatagramRepr::new(
            command,
            Address::Logical(address),
            data,
        )])
        .await
        .unwrap_or_else(|e| panic!("{command:?} at 0x{address:08x}: {e}"));
    reply.pop().expect("one datagram back")
}

#[tokio::test]
async fn packed_outputs_reach_the_terminals_and_inputs_read_back() {
    let (t, bus, plant) = bus();
    let mut m = Master::scan(t.clone(), &ScanOptions::default())
        .await
        .expect("scan");
    // No watchdog: the outputs stay as written while the test looks at them.
    m.set_bring_up_options(BringUpOptions {
        watchdog: Some(std::time::Duration::ZERO),
        ..BringUpOptions::default()
    });
    m.request_state(AlState::Op, None).await.expect("OP");
    let image = m.process_image().expect("process image").clone();
    let (ek, a, b) = (0x1001, 0x1002, 0x1003);

    // Four output bits each: EK1814 bits 0..3 and A bits 4..7 share the first byte, B
    // takes bits 0..3 of the second; the EK1814's four inputs sit in the next byte.
    assert_eq!((image.outputs.start, image.outputs.len), (0x0001_0000, 2));
    assert_eq!((image.inputs.start, image.inputs.len), (0x0001_0002, 1));
    let fmmu = |station: u16| {
        let f = image.terminal(station).expect("terminal").fmmus[0];
        (f.logical_start, f.logical_start_bit, f.logical_end_bit)
    };
    assert_eq!(fmmu(ek), (0x0001_0000, 0, 3));
    assert_eq!(fmmu(a), (0x0001_0000, 4, 7));
    assert_eq!(fmmu(b), (0x0001_0001, 0, 3));
    let input = image.terminal(ek).expect("EK1814").fmmus[1];
    assert_eq!(
        (
            input.logical_start,
            input.logical_start_bit,
            input.logical_end_bit
        ),
        (0x0001_0002, 0, 3)
    );

    let mut out = vec![0u8; image.outputs.len as usize];
    set(&image, &mut out, ek, 0x7080, true);
    set(&image, &mut out, ek, 0x70A0, true);
    set(&image, &mut out, a, 0x7010, true);
    set(&image, &mut out, a, 0x7020, true);
    set(&image, &mut out, b, 0x7000, true);
    set(&image, &mut out, b, 0x7030, true);
    assert_eq!(out, [0b0110_0101, 0b0000_1001]);
    let reply = logical(&t, Command::Lwr, image.outputs.start, out.clone()).await;
    assert_eq!(reply.wkc, 3, "three terminals took their bits");

    {
        let seg = bus.segment();
        let sm = |i: usize| {
            seg.terminal(i)
                .expect("terminal")
                .sm_buffer(0)
                .map(<[u8]>::to_vec)
        };
        assert_eq!(sm(0), Some(vec![0b0101]), "EK1814 SM0 (0x0F01)");
        assert_eq!(sm(1), Some(vec![0b0110]), "A: channels 2 and 3");
        assert_eq!(sm(2), Some(vec![0b1001]), "B: channels 1 and 4");
    }
    let outputs = |position: usize, indices: [u16; 4]| -> Vec<u64> {
        let p = plant.lock();
        indices
            .iter()
            .map(|&i| p.output(Signal::new(position, i, 1)))
            .collect()
    };
    assert_eq!(outputs(0, [0x7080, 0x7090, 0x70A0, 0x70B0]), [1, 0, 1, 0]);
    assert_eq!(outputs(1, [0x7000, 0x7010, 0x7020, 0x7030]), [0, 1, 1, 0]);
    assert_eq!(outputs(2, [0x7000, 0x7010, 0x7020, 0x7030]), [1, 0, 0, 1]);

    // Inputs through the packed FMMU: bits 4..7 of the byte are nobody's and come back
    // as sent.
    let reply = logical(&t, Command::Lrd, image.inputs.start, vec![0xF0]).await;
    assert_eq!(reply.wkc, 1);
    let byte = reply.data[0];
    assert_eq!(byte, 0xF0 | 0b1011, "inputs 1, 2 and 4 on: {byte:08b}");
    let entry = |index: u16| {
        image
            .terminal(ek)
            .and_then(|t| t.entry(index, 1))
            .and_then(|e| e.read(&reply.data, image.inputs.start))
    };
    assert_eq!(
        [0x6000, 0x6010, 0x6020, 0x6030].map(entry),
        [Some(1), Some(1), Some(0), Some(1)]
    );

    // Switching A's channel 2 off shows on input 2 and leaves the neighbours' bits.
    set(&image, &mut out, a, 0x7010, false);
    logical(&t, Command::Lwr, image.outputs.start, out).await;
    let reply = logical(&t, Command::Lrd, image.inputs.start, vec![0]).await;
    assert_eq!(reply.data, [0b1001]);
    let seg = bus.segment();
    assert_eq!(
        seg.terminal(0).expect("EK1814").sm_buffer(0),
        Some(&[0b0101][..])
    );
    assert_eq!(
        seg.terminal(1).expect("A").sm_buffer(0),
        Some(&[0b0100][..])
    );
}
