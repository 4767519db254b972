//! Many terminals over a real AF_PACKET socket: ferrocat brings an EK1100 and 15
//! digital output terminals, served by ferrocat-sim on a veth pair, to OP and every
//! terminal reports OP. (How long bring-up takes, next to ethercrab, is measured by the
//! benchmark in host/benches.) Needs root; fails without it.

mod master_support;

use ferrocat::ethercat::al::AlState;
use ferrocat::ethercat::master::{Master, ScanOptions};
use ferrocat::ethercat::transport::{Transport, TransportConfig};
use ferrocat_sim::segment::{FrameOutcome, Segment};
use ferrocat_sim::serve;
use master_support::eeprom;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// EK1100 followed by digital output terminals (no firmware, no CoE), `n` in all.
fn segment(n: usize) -> Segment {
    let kinds = ["el2004", "el2828", "el2889"];
    let mut paths = vec![eeprom("ek1100")];
    for i in 1..n {
        paths.push(eeprom(kinds[i % kinds.len()]));
    }
    Segment::from_eeprom_files(&paths).expect("EEPROMs load")
}

/// A veth pair (removed on drop) with ferrocat-sim serving `segment` on one end.
struct Bus {
    master: String,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl Bus {
    fn start(segment: Segment) -> Bus {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() % 100_000;
        let master = format!("fcbm{pid}x{n}");
        let sim = format!("fcbs{pid}x{n}");
        let ok = Command::new("ip")
            .args(["link", "add", &master, "type", "veth", "peer", "name", &sim])
            .status()
            .expect("ip runs");
        assert!(ok.success(), "creating veth {master}/{sim} needs root");
        let mut bus = Bus {
            master: master.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            server: None,
        };
        for i in [&master, &sim] {
            let ok = Command::new("ip")
                .args(["link", "set", i, "up"])
                .status()
                .expect("ip");
            assert!(ok.success());
        }
        let stop = bus.stop.clone();
        bus.server = Some(std::thread::spawn(move || {
            let segment = std::cell::RefCell::new(segment);
            let _ = serve::serve(
                &sim,
                &stop,
                |frame, t| {
                    let mut f = frame.to_vec();
                    match segment.borrow_mut().process(&mut f, t) {
                        FrameOutcome::Reply { delay_ns } => {
                            Some(serve::Reply { frame: f, delay_ns })
                        }
                        _ => None,
                    }
                },
                |now| segment.borrow_mut().advance(now),
            );
        }));
        // Wait until the server answers (a busy machine may take a while to start it).
        let answered = ferrocat_sim::netns::wait_for_bus(&bus.master, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("probing {}: {e}", bus.master));
        assert!(
            answered.is_some(),
            "the simulated bus on {} does not answer",
            bus.master
        );
        bus
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.server.take() {
            let _ = s.join();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.master])
            .status();
    }
}

/// Scans the bus on `interface`, checks it holds `n` terminals with the expected
/// identities, brings it to OP and returns the master.
async fn bring_to_op(interface: &str, n: usize) -> Master {
    let t = Transport::open(interface, TransportConfig::default()).expect("raw socket");
    let mut m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("ferrocat scan");
    assert_eq!(m.terminals().len(), n);
    let products: Vec<u32> = m
        .terminals()
        .iter()
        .map(|t| t.identity.product_code)
        .collect();
    assert_eq!(products[0], 0x044c_2c52, "EK1100 first");
    assert!(
        m.terminals().iter().all(|t| t.sii_error.is_none()),
        "every SII reads"
    );
    m.request_state(AlState::Op, None)
        .await
        .expect("ferrocat OP");
    m
}

#[test]
fn sixteen_terminals_reach_op_over_a_raw_socket() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bus = Bus::start(segment(16));
    let m = rt.block_on(bring_to_op(&bus.master, 16));
    let states: Vec<Option<AlState>> = m.terminals().iter().map(|t| t.status.state()).collect();
    assert_eq!(states, vec![Some(AlState::Op); 16]);
    let stations: Vec<u16> = m.terminals().iter().map(|t| t.station).collect();
    assert_eq!(stations, (0x1001..=0x1010).collect::<Vec<u16>>());
    // The terminals themselves report OP, not only the master's record.
    let reported = rt.block_on(async {
        let mut out = Vec::new();
        for t in m.terminals() {
            let s = m
                .transport()
                .fprd(t.station, 0x0130, 2)
                .await
                .expect("AL status");
            out.push(s[0] & 0x0f);
        }
        out
    });
    assert_eq!(
        reported,
        vec![0x08; 16],
        "AL status 0x0130 of every terminal"
    );
}
