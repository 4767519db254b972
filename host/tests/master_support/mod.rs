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
    let t = Transport::spawn(
        link,
        TransportConfig {
            identity: identity_for_pid(pid),
            ..TransportConfig::default()
        },
    );
    (t, handle)
}

/// A transport over a simulated bus of `names` with the sim's realistic wire-time model
/// (link and forwarding delays, so receive times differ along the line).
pub fn sim_transport_timed(names: &[&str], pid: u32) -> (Transport, BusHandle) {
    let paths: Vec<String> = names.iter().map(|n| eeprom(n)).collect();
    let mut segment = Segment::from_eeprom_files(&paths).expect("test EEPROMs load");
    segment.set_wire_time(ferrocat_sim::wiretime::WireTime::realistic());
    let (link, handle) = link_to(segment);
    let t = Transport::spawn(
        link,
        TransportConfig {
            identity: identity_for_pid(pid),
            ..TransportConfig::default()
        },
    );
    (t, handle)
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
    let t = Transport::spawn(
        link,
        TransportConfig {
            identity: identity_for_pid(pid),
            ..TransportConfig::default()
        },
    );
    (t, handle)
}
