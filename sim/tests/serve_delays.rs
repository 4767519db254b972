//! Serving on an interface: a reply held back by an injected delay goes out when it falls
//! due, although no further frame arrives and the server's idle tick is an hour away, its
//! delay counted from the frame's arrival; a topology with `[wire_time]` is served with
//! its delays; replies still held when the server stops are counted.
//!
//! Needs root (veth pair, AF_PACKET, XDP): fails, does not skip, without it.

mod veth;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrocat_sim::fault::Faults;
use ferrocat_sim::segment::{command, master_frame};
use ferrocat_sim::serve::{self, EthercatSocket, ServeStats};
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

/// The tags of the replies received until `count` arrived or `patience` passed. Late
/// replies to the start-up pings (tag 0) are passed over.
fn replies(master: &EthercatSocket, count: usize, patience: Duration) -> Vec<u16> {
    let deadline = Instant::now() + patience;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        if let Some(rx) = master.recv().expect("recv") {
            if tag(&rx.frame) != 0x0000 {
                got.push(tag(&rx.frame));
            }
        }
    }
    got
}

/// The next reply that is not a late reply to a start-up ping (tag 0), within `patience`.
fn next_reply(master: &EthercatSocket, patience: Duration) -> Vec<u8> {
    let deadline = Instant::now() + patience;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let rx = master
            .recv_within(left)
            .expect("recv")
            .unwrap_or_else(|| panic!("no reply within {patience:?}"));
        if tag(&rx.frame) != 0x0000 {
            return rx.frame;
        }
    }
}

/// A bus served on the simulator's end of a veth pair, with a socket on the master's end.
struct Served {
    master: EthercatSocket,
    faults: Faults,
    stop: Arc<AtomicBool>,
    server: std::thread::JoinHandle<Result<ServeStats, serve::ServeError>>,
    _veth: Veth,
}

impl Served {
    /// Serves the bus of `topology` (TOML text, paths relative to `configs/sim`) with an
    /// idle tick of [`IDLE_TICK`], and waits until it answers.
    fn start(topology: &str) -> Served {
        Served::start_adjusting(topology, |_, _| {})
    }

    /// [`Served::start`], letting `adjust` change the reply to each frame (its delay) or
    /// take its time, after the bus processed it.
    fn start_adjusting(topology: &str, adjust: fn(&[u8], &mut serve::Reply)) -> Served {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/sim");
        let topology = Topology::parse(topology, &dir.join("inline.toml"), &dir).expect("topology");
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
                    |frame, t| {
                        let mut reply = processor.borrow_mut().process(frame, t)?;
                        adjust(frame, &mut reply);
                        Some(reply)
                    },
                    |now| processor.borrow_mut().idle(now),
                )
            })
        };
        let master = EthercatSocket::open(&veth.master, Duration::from_millis(50)).expect("socket");
        // Wait for the server: BRDs until one is answered.
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
        Served {
            master,
            faults,
            stop,
            server,
            _veth: veth,
        }
    }

    /// Stops the server (one more frame wakes it up to see the flag; with the delay fault
    /// off it is answered at once unless the topology has a wire time) and returns its
    /// counters.
    fn stop(self) -> ServeStats {
        self.faults.set_delay(0.0, 0);
        self.stop.store(true, Ordering::Relaxed);
        self.master.send(&tagged(0xFFFF)).expect("send");
        self.server.join().expect("server thread").expect("serve")
    }
}

#[test]
fn a_delayed_reply_goes_out_when_due_without_another_frame() {
    let bus =
        Served::start("[[terminal]]\neeprom = \"../../../shared/testdata/eeprom/ek1100.bin\"\n");
    // Every reply held back 2 ms; three frames back to back, then nothing.
    bus.faults.set_delay(1.0, 2_000_000);
    for ado in [0x0001, 0x0002, 0x0003] {
        bus.master.send(&tagged(ado)).expect("send");
    }
    assert_eq!(
        replies(&bus.master, 3, PATIENCE),
        vec![0x0001, 0x0002, 0x0003],
        "all three released, in order, without a further frame"
    );
    assert_eq!(
        replies(&bus.master, 1, Duration::from_millis(200)),
        Vec::<u16>::new(),
        "and nothing else"
    );
    let stats = bus.stop();
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.dropped_at_stop, 0);
    assert_eq!(stats.sent, stats.received, "{stats:?}");
}

#[test]
fn replies_still_held_when_the_server_stops_are_counted() {
    // The replies to the frames tagged 1 and 2 are held back a minute, every other one
    // goes out at once: once the reply to 3 is back, the server holds the other two.
    let bus = Served::start_adjusting(
        "[[terminal]]\neeprom = \"../../../shared/testdata/eeprom/ek1100.bin\"\n",
        |frame, reply| {
            if matches!(tag(frame), 0x0001 | 0x0002) {
                reply.delay_ns = 60_000_000_000;
            }
        },
    );
    for ado in [0x0001, 0x0002, 0x0003] {
        bus.master.send(&tagged(ado)).expect("send");
    }
    assert_eq!(replies(&bus.master, 1, PATIENCE), vec![0x0003]);
    let stats = bus.stop();
    assert_eq!(stats.dropped_at_stop, 2, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(
        stats.sent + stats.dropped_at_stop,
        stats.received,
        "every frame received is accounted for: {stats:?}"
    );
}

#[test]
fn a_reply_is_due_its_delay_after_the_frame_arrived_not_after_processing() {
    // Two frames sent back to back. The reply to 1 is held 500 ms; the frame tagged 2
    // takes 600 ms to process and its reply is held 10 ms. Counted from arrival, the
    // reply to 2 is due at ~10 ms, long before the one to 1 at ~500 ms: 2 comes first.
    // (Counted from the end of processing it would be due at ~610 ms, after 1.) The
    // order holds unless the second frame reaches the server ~490 ms after the first.
    let bus = Served::start_adjusting(
        "[[terminal]]\neeprom = \"../../../shared/testdata/eeprom/ek1100.bin\"\n",
        |frame, reply| match tag(frame) {
            0x0001 => reply.delay_ns = 500_000_000,
            0x0002 => {
                std::thread::sleep(Duration::from_millis(600));
                reply.delay_ns = 10_000_000;
            }
            _ => {}
        },
    );
    for ado in [0x0001, 0x0002] {
        bus.master.send(&tagged(ado)).expect("send");
    }
    assert_eq!(replies(&bus.master, 2, PATIENCE), vec![0x0002, 0x0001]);
    let stats = bus.stop();
    assert_eq!((stats.dropped, stats.dropped_at_stop), (0, 0), "{stats:?}");
    assert_eq!(stats.sent, stats.received, "{stats:?}");
}

#[test]
fn a_wire_time_topology_is_served_with_its_delays() {
    // Forwarding delays of 1.5 µs: the EK1100's port 1 sees a frame come back 3 µs after
    // it left, through the EL2889 and back.
    let bus = Served::start(
        "[wire_time]\nforward_delay_ns = 1500\n\n\
         [[terminal]]\neeprom = \"../../../shared/testdata/eeprom/ek1100.bin\"\n\
         [[terminal]]\neeprom = \"../../../shared/testdata/eeprom/el2889.bin\"\n",
    );
    bus.master
        .send(&master_frame(&[(command::BWR, 0, 0x0900, vec![0; 4])]))
        .expect("send");
    let latched = next_reply(&bus.master, PATIENCE);
    assert_eq!(latched[latched.len() - 2], 2, "both latched");
    bus.master
        .send(&master_frame(&[(command::APRD, 0, 0x0900, vec![0; 8])]))
        .expect("send");
    let reply = next_reply(&bus.master, PATIENCE);
    let d = &reply[26..34];
    let p0 = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    let p1 = u32::from_le_bytes([d[4], d[5], d[6], d[7]]);
    assert_eq!(p1.wrapping_sub(p0), 2 * 1500);
    // The reply of the frame that stops the server may still be held when it stops.
    let stats = bus.stop();
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert!(stats.dropped_at_stop <= 1, "{stats:?}");
    assert_eq!(
        stats.sent + stats.dropped_at_stop,
        stats.received,
        "{stats:?}"
    );
}
