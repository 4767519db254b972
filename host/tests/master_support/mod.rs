//! Shared helpers of the master's integration tests: an in-process simulated bus
//! (ferrocat-sim) behind ferrocat's `ChannelLink`.

#![allow(dead_code, unreachable_pub)]

use ferrocat::ethercat::transport::{
    ChannelLink, Link, Transport, TransportConfig, identity_for_pid,
};
use ferrocat_sim::inproc::{Bus, BusHandle, SimClock};
use ferrocat_sim::segment::Segment;

/// Path of a test-data EEPROM image.
pub fn eeprom(name: &str) -> String {
    format!(
        "{}/../../shared/testdata/eeprom/{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The EEPROMs of the reference bus (configs/sim/reference.toml), in order.
pub const REFERENCE: [&str; 7] = [
    "ek1100", "el2004", "el2828", "el2889", "el3164", "el4104", "el7041",
];

/// Start a simulated bus of `names` and return a link to it plus its handle.
pub fn sim_link(names: &[&str]) -> (ChannelLink, BusHandle) {
    let paths: Vec<String> = names.iter().map(|n| eeprom(n)).collect();
    let segment = Segment::from_eeprom_files(&paths).expect("test EEPROMs load");
    link_to(segment)
}

/// A link to a spawned bus of `segment`, bridged onto unbounded channels.
pub fn link_to(segment: Segment) -> (ChannelLink, BusHandle) {
    bridge(Bus::new(segment, SimClock::monotonic()), || {})
}

/// A link to a bus of `segment` on a manual clock that moves `step_ns` forward with every
/// frame the master sends, and only then: simulated time is deterministic, and a test
/// can let it pass with `handle.clock().advance_ns(..)`.
pub fn stepped_link(segment: Segment, step_ns: u64) -> (ChannelLink, BusHandle) {
    let bus = Bus::new(segment, SimClock::manual());
    let clock = bus.clock().clone();
    bridge(bus, move || clock.advance_ns(step_ns))
}

/// Spawns `bus` and bridges it onto a `ChannelLink`; `before_frame` runs before each
/// frame of the master goes to the bus.
fn bridge(bus: Bus, before_frame: impl Fn() + Send + 'static) -> (ChannelLink, BusHandle) {
    let channels = bus.spawn(256);
    let (link, mut from_master, to_master) = ChannelLink::pair();
    let tx = channels.tx;
    let mut rx = channels.rx;
    tokio::spawn(async move {
        while let Some(frame) = from_master.recv().await {
            before_frame();
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if to_master.send(frame).is_err() {
                return;
            }
        }
    });
    (link, channels.handle)
}

/// A transport over a simulated bus of `names`, with identity `pid`.
pub fn sim_transport(names: &[&str], pid: u32) -> (Transport, BusHandle) {
    let (link, handle) = sim_link(names);
    (transport_on(link, pid), handle)
}

/// A transport over a simulated bus of `names` with the sim's realistic wire-time model
/// (link and forwarding delays, so receive times differ along the line).
pub fn sim_transport_timed(names: &[&str], pid: u32) -> (Transport, BusHandle) {
    let paths: Vec<String> = names.iter().map(|n| eeprom(n)).collect();
    let mut segment = Segment::from_eeprom_files(&paths).expect("test EEPROMs load");
    segment.set_wire_time(ferrocat_sim::wiretime::WireTime::realistic());
    let (link, handle) = link_to(segment);
    (transport_on(link, pid), handle)
}

/// A transport with identity `pid` over `link`.
pub fn transport_on(link: ChannelLink, pid: u32) -> Transport {
    Transport::spawn(
        link,
        TransportConfig {
            identity: identity_for_pid(pid),
            ..TransportConfig::default()
        },
    )
}

/// Boxed link for the CLI's link opener.
pub fn boxed(link: ChannelLink) -> Box<dyn Link> {
    Box::new(link)
}

/// The reference bus as `configs/sim/reference.toml` describes it (dictionaries, plant
/// models and wires included), with the realistic wire-time model.
pub fn reference_segment() -> Segment {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sim/reference.toml");
    let topology = ferrocat_sim::topology::Topology::load(&path).expect("reference topology loads");
    let built = topology.build().expect("reference topology builds");
    let mut segment = ferrocat_sim::serve::build_segment(built);
    segment.set_wire_time(ferrocat_sim::wiretime::WireTime::realistic());
    segment
}

/// A transport over the reference bus of `configs/sim/reference.toml`.
pub fn reference_transport(pid: u32) -> (Transport, BusHandle) {
    let (link, handle) = link_to(reference_segment());
    (transport_on(link, pid), handle)
}

/// The `len` bytes (up to 8) of a simulated terminal's register at `register`, little
/// endian, read without a frame (so without the side effects a read has on the bus).
pub fn peek_le(esc: &ferrocat_sim::esc::Esc, register: u16, len: u16) -> u64 {
    (0..len).fold(0, |v, k| v | u64::from(esc.peek(register + k)) << (8 * k))
}

/// A segment of the terminals `names` (EEPROMs of the test data, no firmware) whose
/// ESCs have no distributed clocks at all: feature bit 2 clear, no DC registers.
pub fn no_dc_segment(names: &[&str]) -> Segment {
    use ferrocat_sim::esc::regs::DcUnit;
    use ferrocat_sim::esc::{Esc, EscConfig};
    let mut segment = Segment::new();
    for name in names {
        let sii = ferrocat_sim::sii::Sii::load(std::path::Path::new(&eeprom(name)))
            .expect("test EEPROM loads");
        let mut config = EscConfig::for_sii(&sii);
        config.chip.features &= !ferrocat::ethercat::registers::features::DC_SUPPORTED;
        config.chip.dc = DcUnit::None;
        let app = ferrocat_sim::app::BasicApp::from_sii(&sii);
        segment.push(Esc::new(config, sii, Box::new(app)));
    }
    segment
}

/// A transport with identity `pid` over `segment` on a manual clock that moves `step_ns`
/// with every frame the master sends (see [`stepped_link`]).
pub fn stepped_transport(segment: Segment, step_ns: u64, pid: u32) -> (Transport, BusHandle) {
    let (link, handle) = stepped_link(segment, step_ns);
    (transport_on(link, pid), handle)
}

/// The system times (0x0910) of the terminals `stations`, read in one frame.
pub async fn system_times(t: &Transport, stations: &[u16]) -> Vec<u64> {
    use ferrocat::ethercat::registers::DC_SYSTEM_TIME;
    use ferrocat::ethercat::wire::{Address, Command, DatagramRepr};
    let reads = stations
        .iter()
        .map(|&station| {
            DatagramRepr::new(
                Command::Fprd,
                Address::Station {
                    station,
                    register: DC_SYSTEM_TIME,
                },
                vec![0; 8],
            )
        })
        .collect();
    let reply = t.exchange(reads).await.expect("system times");
    reply
        .iter()
        .zip(stations)
        .map(|(d, station)| {
            assert_eq!(d.wkc, 1, "system time of 0x{station:04x}");
            ferrocat::ethercat::dc::le_u64(&d.data)
        })
        .collect()
}
