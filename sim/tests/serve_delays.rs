//! Serving on an interface: a reply held back by an injected delay goes out when it falls
//! due, although no further frame arrives and the server's idle tick is an hour away.
//!
//! Needs root (veth pair, AF_PACKET, XDP): fails, does not skip, without it.

mod veth;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrocat_sim::segment::{command, master_frame};
use ferrocat_sim::serve::{self, EthercatSocket};
use ferrocat_sim::topology::Topology;
use veth::Veth;

/// Offset of the first datagram's address offset (ADO) in a frame: Ethernet header (14),
/// EtherCAT header (2), command, index, ADP (4). ETG.1000.4 table 9.
const ADO_AT: usize = 20;
/// Long enough that a reply released only by the next idle tick never arrives in a test.
const IDLE_TICK: Duration = Duration::from_secs(3600);
/// How long the test waits for replies at most (generous: a busy machine).
const PATIENCE: Duration = Duration::from_secs(20);

/// A BRD of `ado`, which the reply carries back as a tag.
fn tagged(ado: u16) -> Vec<u8> {
    master_frame(&[(command::BRD, 0, ado, vec![0; 2])])
}

fn tag(frame: &[u8]) -> u16 {
    u16::from_le_bytes([frame[ADO_AT], frame[ADO_AT + 1]])
}

/// The tags of the replies received until `count` arrived or `patience` passed.
fn replies(master: &EthercatSocket, count: usize, patience: Duration) -> Vec<u16> {
    let deadline = Instant::now() + patience;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        if let Some(rx) = master.recv().expect("recv") {
            got.push(tag(&rx.frame));
        }
    }
    got
}

#[test]
fn a_delayed_reply_goes_out_when_due_without_another_frame() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/sim");
    let text = "[[terminal]]\neeprom = \"../../../shared/testdata/eeprom/ek1100.bin\"\n";
    let topology = Topology::parse(text, &dir.join("inline.toml"), &dir).expect("topology");
    let processor = serve::bus_processor(topology.build().expect("bus"));
    let faults = processor.faults();

    let (veth, sim_if) = Veth::new();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let processor = RefCell::new(processor);
            serve::serve_with_idle_tick(
                &sim_if,
                &stop,
                IDLE_TICK,
                |frame, t| processor.borrow_mut().process(frame, t),
                |now| processor.borrow_mut().idle(now),
            )
        })
    };
    let master = EthercatSocket::open(&veth.master, Duration::from_millis(50)).expect("socket");
    // Wait for the server: undelayed BRDs until one is answered.
    let deadline = Instant::now() + PATIENCE;
    loop {
        master.send(&tagged(0x0000)).expect("send");
        if master.recv().expect("recv").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the server never answered");
    }
    // Replies to earlier pings that were still on their way.
    while master.recv().expect("recv").is_some() {}

    // Every reply held back 2 ms; three frames back to back, then nothing.
    faults.set_delay(1.0, 2_000_000);
    for ado in [0x0001, 0x0002, 0x0003] {
        master.send(&tagged(ado)).expect("send");
    }
    assert_eq!(
        replies(&master, 3, PATIENCE),
        vec![0x0001, 0x0002, 0x0003],
        "all three released, in order, without a further frame"
    );
    assert_eq!(
        replies(&master, 1, Duration::from_millis(200)),
        Vec::<u16>::new(),
        "and nothing else"
    );

    // Stop: one more frame wakes the server up to see the flag.
    faults.set_delay(0.0, 0);
    stop.store(true, Ordering::Relaxed);
    master.send(&tagged(0x0004)).expect("send");
    let stats = server.join().expect("server thread").expect("serve");
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.sent, stats.received, "{stats:?}");
}
