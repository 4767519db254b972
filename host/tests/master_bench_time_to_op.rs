//! Benchmark: time from nothing to every terminal in OP, for 1, 16 and 128 simulated
//! terminals, for ferrocat and, in the same run on the same simulated bus, for the
//! ethercrab crate. Both talk to ferrocat-sim over a veth pair through AF_PACKET.
//!
//! Prints a table (run with `--nocapture`); asserts that both masters reach OP with every
//! terminal, not how long they take. Needs root.

mod master_support;

use ethercrab::std::{ethercat_now, tx_rx_task};
use ethercrab::{MainDevice, MainDeviceConfig, PduStorage, Timeouts};
use ferrocat::ethercat::al::AlState;
use ferrocat::ethercat::master::{Master, ScanOptions};
use ferrocat::ethercat::transport::{Transport, TransportConfig};
use ferrocat_sim::segment::{FrameOutcome, Segment};
use ferrocat_sim::serve;
use master_support::eeprom;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

const MAX_SUBDEVICES: usize = 128;
const PDI_LEN: usize = 512;
const MAX_FRAMES: usize = 16;
const MAX_PDU_DATA: usize = PduStorage::element_size(1100);

// ethercrab's PDU storage can be split once per process: one per bus size.
static STORAGE_1: PduStorage<MAX_FRAMES, MAX_PDU_DATA> = PduStorage::new();
static STORAGE_16: PduStorage<MAX_FRAMES, MAX_PDU_DATA> = PduStorage::new();
static STORAGE_128: PduStorage<MAX_FRAMES, MAX_PDU_DATA> = PduStorage::new();

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
        std::thread::sleep(Duration::from_millis(200));
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

async fn ferrocat_to_op(interface: &str, n: usize) -> Duration {
    let start = Instant::now();
    let t = Transport::open(interface, TransportConfig::default()).expect("raw socket");
    let mut m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("ferrocat scan");
    assert_eq!(m.terminals().len(), n);
    m.request_state(AlState::Op, None)
        .await
        .expect("ferrocat OP");
    let took = start.elapsed();
    assert!(
        m.terminals()
            .iter()
            .all(|t| t.status.state() == Some(AlState::Op))
    );
    took
}

async fn ethercrab_to_op(
    interface: &str,
    n: usize,
    storage: &'static PduStorage<MAX_FRAMES, MAX_PDU_DATA>,
) -> Duration {
    let start = Instant::now();
    let (tx, rx, pdu_loop) = storage.try_split().expect("split once");
    let maindevice = Arc::new(MainDevice::new(
        pdu_loop,
        Timeouts {
            wait_loop_delay: Duration::from_millis(2),
            state_transition: Duration::from_secs(10),
            pdu: Duration::from_secs(1),
            eeprom: Duration::from_secs(1),
            ..Default::default()
        },
        MainDeviceConfig::default(),
    ));
    let task = tokio::spawn(tx_rx_task(interface, tx, rx).expect("ethercrab tx/rx"));
    let group = maindevice
        .init_single_group::<MAX_SUBDEVICES, PDI_LEN>(ethercat_now)
        .await
        .expect("ethercrab scan and PRE-OP");
    assert_eq!(group.len(), n);
    let group = group
        .into_safe_op(&maindevice)
        .await
        .expect("ethercrab SAFE-OP");
    group.tx_rx(&maindevice).await.expect("ethercrab cycle");
    let group = group
        .request_into_op(&maindevice)
        .await
        .expect("ethercrab request OP");
    let mut cycles = 0;
    while !group
        .tx_rx(&maindevice)
        .await
        .expect("ethercrab cycle")
        .all_op()
    {
        cycles += 1;
        assert!(cycles < 5000, "ethercrab: terminals did not reach OP");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = start.elapsed();
    task.abort();
    took
}

#[test]
fn time_to_op_for_1_16_128_terminals() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    for (n, storage) in [(1, &STORAGE_1), (16, &STORAGE_16), (128, &STORAGE_128)] {
        let ours = {
            let bus = Bus::start(segment(n));
            rt.block_on(ferrocat_to_op(&bus.master, n))
        };
        let theirs = {
            let bus = Bus::start(segment(n));
            rt.block_on(ethercrab_to_op(&bus.master, n, storage))
        };
        rows.push((n, ours, theirs));
    }
    println!("time to OP over a veth pair (ferrocat-sim, EK1100 + digital outputs)");
    println!("{:>9} {:>12} {:>12}", "terminals", "ferrocat", "ethercrab");
    for (n, ours, theirs) in &rows {
        println!(
            "{n:>9} {:>9.1} ms {:>9.1} ms",
            ours.as_secs_f64() * 1e3,
            theirs.as_secs_f64() * 1e3
        );
    }
}
