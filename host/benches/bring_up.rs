//! Benchmark: time from nothing to every terminal in OP, for ferrocat and, in the same
//! run and on the same simulated bus, for the ethercrab crate.
//!
//! ferrocat-sim serves an EK1100 followed by digital output terminals (EL2004, EL2828,
//! EL2889 from `../shared/testdata/eeprom/`) in its own network namespace behind a veth
//! pair; both masters use an AF_PACKET socket on the other end. A fresh bus (all
//! terminals in INIT, power-on state) is served for every run. Both masters do the same
//! work: scan, distributed-clock start-up with [`DRIFT_FRAMES`] static drift frames,
//! PRE-OP, process-data configuration, SAFE-OP, OP with valid outputs.
//!
//! `cargo bench -p ferrocat --bench bring_up` measures 1, 16 and 128 terminals (median
//! of several runs) and prints a table. Without `--bench` (as `cargo test --all-targets`
//! runs it) it is a smoke test: 1 terminal, one run of each master. Needs root; fails
//! without.

use ethercrab::std::{ethercat_now, tx_rx_task};
use ethercrab::{MainDevice, MainDeviceConfig, PduStorage, Timeouts};
use ferrocat::ethercat::al::AlState;
use ferrocat::ethercat::master::{BringUpOptions, DcOptions, Master, ScanOptions};
use ferrocat::ethercat::transport::{Transport, TransportConfig};
use ferrocat_sim::segment::{FrameOutcome, Segment};
use ferrocat_sim::{netns, serve};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Static drift-compensation frames of the DC start-up, for both masters.
const DRIFT_FRAMES: u32 = 1000;

/// ethercrab's limits: terminals per group, process image bytes, frames in flight.
const MAX_SUBDEVICES: usize = 128;
const PDI_LEN: usize = 512;
const MAX_FRAMES: usize = 16;
const MAX_PDU_DATA: usize = PduStorage::element_size(1100);

/// Path of a test-data EEPROM image.
fn eeprom(name: &str) -> String {
    format!(
        "{}/../../shared/testdata/eeprom/{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// EK1100 followed by digital output terminals (no mailbox), `n` terminals in all.
fn segment(n: usize) -> Segment {
    let kinds = ["el2004", "el2828", "el2889"];
    let mut paths = vec![eeprom("ek1100")];
    for i in 1..n {
        paths.push(eeprom(kinds[(i - 1) % kinds.len()]));
    }
    Segment::from_eeprom_files(&paths).expect("test EEPROMs load")
}

/// ferrocat-sim serving a segment in namespace `name` behind a veth pair whose master end
/// is the interface `name` here. Stopped and removed on drop, also on panic.
struct SimBus {
    name: String,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl SimBus {
    fn start(segment: Segment) -> SimBus {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        assert!(
            netns::is_root(),
            "the bring-up benchmark needs root (network namespaces, AF_PACKET)"
        );
        let name = format!(
            "fcbu{}x{}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        netns::create(&name).unwrap_or_else(|e| panic!("namespace and veth pair {name}: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let mut bus = SimBus {
            name: name.clone(),
            stop: stop.clone(),
            server: None,
        };
        bus.server = Some(std::thread::spawn(move || {
            let path = format!("/run/netns/{name}");
            let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            // SAFETY: setns on this thread only, with a namespace descriptor.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns: {}", std::io::Error::last_os_error()));
            }
            let segment = std::cell::RefCell::new(segment);
            serve::serve(
                netns::SIM_INTERFACE,
                &stop,
                |frame, now| {
                    let mut segment = segment.borrow_mut();
                    segment.advance(now);
                    let mut f = frame.to_vec();
                    match segment.process(&mut f, now) {
                        FrameOutcome::Reply { delay_ns } => {
                            Some(serve::Reply { frame: f, delay_ns })
                        }
                        FrameOutcome::Lost | FrameOutcome::NotEtherCat => None,
                    }
                },
                |now| segment.borrow_mut().advance(now),
            )
            .map(drop)
            .map_err(|e| e.to_string())
        }));
        let answer = netns::wait_for_bus(&bus.name, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("probing {}: {e}", bus.name));
        assert!(
            answer.is_some(),
            "the simulated bus {} does not answer",
            bus.name
        );
        bus
    }
}

impl Drop for SimBus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(server) = self.server.take() {
            if let Ok(Err(e)) = server.join() {
                if !std::thread::panicking() {
                    panic!("simulator: {e}");
                }
            }
        }
        let _ = netns::down(&self.name);
    }
}

/// ferrocat: scan, DC start-up, OP. Returns the time taken.
async fn ferrocat_to_op(interface: &str, n: usize) -> Duration {
    let start = Instant::now();
    let t = Transport::open(interface, TransportConfig::default()).expect("raw socket");
    let mut m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("ferrocat: scan");
    // DC start-up is part of the way to SAFE-OP.
    m.set_bring_up_options(BringUpOptions {
        dc: Some(DcOptions {
            drift_frames: DRIFT_FRAMES as usize,
            ..DcOptions::default()
        }),
        ..BringUpOptions::default()
    });
    m.request_state(AlState::Op, None)
        .await
        .expect("ferrocat: OP");
    let took = start.elapsed();
    assert_eq!(m.terminals().len(), n, "ferrocat: terminals found");
    assert!(
        m.terminals()
            .iter()
            .all(|t| t.status.state() == Some(AlState::Op) && !t.status.error()),
        "ferrocat: every terminal in OP"
    );
    took
}

/// ethercrab: scan (with its DC start-up), PRE-OP, SAFE-OP, OP with process data
/// cycling until every terminal reports OP. Returns the time taken.
async fn ethercrab_to_op(interface: &str, n: usize) -> Duration {
    // ethercrab's storage can be split once: a new one for every run.
    let storage: &'static PduStorage<MAX_FRAMES, MAX_PDU_DATA> =
        Box::leak(Box::new(PduStorage::new()));
    let start = Instant::now();
    let (tx, rx, pdu_loop) = storage.try_split().expect("fresh PDU storage");
    let maindevice = Arc::new(MainDevice::new(
        pdu_loop,
        // Generous limits that cost nothing when replies come: the simulator's EEPROM
        // interface is as slow as a real one, and a loaded machine may hold a frame
        // back longer than ethercrab's 10 ms EEPROM default.
        Timeouts {
            state_transition: Duration::from_secs(20),
            eeprom: Duration::from_secs(1),
            pdu: Duration::from_millis(200),
            ..Timeouts::default()
        },
        MainDeviceConfig {
            dc_static_sync_iterations: DRIFT_FRAMES,
            ..MainDeviceConfig::default()
        },
    ));
    let task = tokio::spawn(tx_rx_task(interface, tx, rx).expect("ethercrab: raw socket"));
    let group = maindevice
        .init_single_group::<MAX_SUBDEVICES, PDI_LEN>(ethercat_now)
        .await
        .expect("ethercrab: scan and PRE-OP");
    assert_eq!(group.len(), n, "ethercrab: terminals found");
    let group = group
        .into_safe_op(&maindevice)
        .await
        .expect("ethercrab: SAFE-OP");
    let group = group
        .request_into_op(&maindevice)
        .await
        .expect("ethercrab: request OP");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !group
        .tx_rx(&maindevice)
        .await
        .expect("ethercrab: process data")
        .all_op()
    {
        assert!(
            Instant::now() < deadline,
            "ethercrab: terminals did not reach OP"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = start.elapsed();
    task.abort();
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let sizes: &[(usize, usize)] = if bench {
        &[(1, 7), (16, 5), (128, 3)]
    } else {
        &[(1, 1)]
    };
    let mut rows = Vec::new();
    for &(n, runs) in sizes {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..runs {
            // Alternate the masters, each on a fresh bus.
            let bus = SimBus::start(segment(n));
            ours.push(runtime.block_on(ferrocat_to_op(&bus.name, n)));
            drop(bus);
            let bus = SimBus::start(segment(n));
            theirs.push(runtime.block_on(ethercrab_to_op(&bus.name, n)));
            drop(bus);
        }
        rows.push((n, runs, median(ours), median(theirs)));
    }
    println!(
        "time to OP over a veth pair (ferrocat-sim: EK1100 + digital outputs; DC start-up with {DRIFT_FRAMES} drift frames), median of runs"
    );
    println!(
        "{:>9} {:>4} {:>12} {:>13} {:>7}",
        "terminals", "runs", "ferrocat ms", "ethercrab ms", "ratio"
    );
    for (n, runs, ours, theirs) in rows {
        println!(
            "{n:>9} {runs:>4} {:>12.1} {:>13.1} {:>6.1}x",
            ours.as_secs_f64() * 1e3,
            theirs.as_secs_f64() * 1e3,
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
}
