//! Faults injected at run time into a bus that ferrocat-sim serves behind a veth pair
//! (the switches of `ferrocat-sim fault`, docs/sim.md), seen by ferrocat's master through
//! a real AF_PACKET socket: lost frames are retried without the caller noticing, a
//! terminal that stops answering is named in the error without a hang, and a terminal
//! that falls back to SAFE-OP with an AL status code has that code decoded.
//! (host/tests/master_faults.rs covers the same faults against the in-process bus.)
//!
//! Needs root: fails, does not skip, without.

use ferrocat::ethercat::al::{self, AlError, AlState, AlStatusCode};
use ferrocat::ethercat::master::{Master, MasterError, ScanOptions};
use ferrocat::ethercat::transport::{Policy, Transport, TransportConfig};
use ferrocat_tests::{Cycle, FrameCounter, SimBus, project_dir};
use std::time::Duration;

/// Tests here keep process data cycling or load the bus with retries: one at a time.
/// (An async mutex: its guard is held across awaits, and a failed test does not poison it.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Generous bound on a whole bring-up: reaching it means a hang, not slowness.
const HANG: Duration = Duration::from_secs(120);

/// Station address of the AKD, the last terminal (position 7).
const AKD: u16 = 0x1008;
/// Station address of the EL4104 (position 5).
const EL4104: u16 = 0x1006;

fn start_bus(tag: &str) -> SimBus {
    SimBus::from_topology(tag, &project_dir().join("configs/sim/reference-akd.toml"))
}

async fn scan(t: Transport) -> Master {
    tokio::time::timeout(HANG, Master::scan(t, &ScanOptions::default()))
        .await
        .expect("scan does not hang")
        .expect("scan")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_frames_are_retried_transparently_up_to_op() {
    let _serial = SERIAL.lock().await;
    let bus = start_bus("drop");
    assert!(bus.fault("drop 0.2").contains("drop_ratio: 0.2"));
    let counter = FrameCounter::default();
    let t = Transport::open(
        bus.interface(),
        TransportConfig {
            policy: Policy {
                timeout: Duration::from_millis(20),
                retries: 12,
            },
            capture: Some(counter.sink(None)),
            ..TransportConfig::default()
        },
    )
    .expect("raw socket");
    let mut m = scan(t).await;
    assert_eq!(m.terminals().len(), 8);
    tokio::time::timeout(HANG, m.request_state(AlState::Op, None))
        .await
        .expect("bring-up does not hang")
        .expect("OP despite a fifth of the frames lost");
    let _cycle = Cycle::start(&m);
    bus.fault("clear");
    m.refresh_status().await.expect("AL status");
    for t in m.terminals() {
        assert_eq!(
            t.status.state(),
            Some(AlState::Op),
            "terminal 0x{:04x}: {}",
            t.station,
            t.status
        );
    }
    // Identities survived the losses (the SII reads were retried too).
    assert_eq!(m.terminals()[7].identity.product_code, 0x00414B44);
    assert_eq!(m.terminals()[6].identity.product_code, 0x1B813052);
    // Frames were really lost and resent: more requests than replies.
    let (sent, received) = (counter.sent(), counter.received());
    assert!(
        sent > received + received / 10,
        "sent {sent}, received {received}: about a fifth should be lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_that_stops_answering_is_named() {
    let _serial = SERIAL.lock().await;
    let bus = start_bus("silent");
    let t = Transport::open(
        bus.interface(),
        TransportConfig {
            // A silent terminal costs no timeouts (frames come back with working
            // counter 0); the generous policy keeps a loaded machine from failing others.
            policy: Policy {
                timeout: Duration::from_millis(200),
                retries: 2,
            },
            ..TransportConfig::default()
        },
    )
    .expect("raw socket");
    let mut m = scan(t).await;
    tokio::time::timeout(HANG, m.request_state(AlState::PreOp, None))
        .await
        .expect("PRE-OP does not hang")
        .expect("PRE-OP");
    // The AKD (position 7) loses power: the EL7041 before it closes its port.
    assert!(bus.fault("silent 7").contains("silent_from: Some(7)"));
    let err = tokio::time::timeout(HANG, m.request_state(AlState::SafeOp, None))
        .await
        .expect("the failing bring-up does not hang")
        .expect_err("SAFE-OP cannot be reached without the AKD");
    let text = err.to_string();
    assert!(
        text.contains(&format!("terminal {AKD:#06x}")),
        "the error names the AKD: {text}"
    );
    assert!(
        !text.contains("0x1007"),
        "only the silent terminal is blamed: {text}"
    );
    // The terminals before it are still there and answer.
    for station in 0x1001..=0x1007 {
        let st = al::status(m.transport(), station)
            .await
            .unwrap_or_else(|e| panic!("terminal 0x{station:04x}: {e}"));
        assert!(st.state().is_some(), "0x{station:04x}: {st}");
    }
    let err = al::status(m.transport(), AKD)
        .await
        .expect_err("the AKD is silent");
    assert_eq!(
        err.to_string(),
        format!("read of register 0x0130 on terminal {AKD:#06x}: working counter 0, expected 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_al_error_is_reported_with_its_decoded_code() {
    let _serial = SERIAL.lock().await;
    let bus = start_bus("alerr");
    let t = Transport::open(bus.interface(), TransportConfig::default()).expect("raw socket");
    let mut m = scan(t).await;
    tokio::time::timeout(HANG, m.request_state(AlState::Op, None))
        .await
        .expect("bring-up does not hang")
        .expect("OP");
    let cycle = Cycle::start(&m);
    // The EL4104 falls back to SAFE-OP with "synchronization error".
    bus.fault("fall-back 5 safeop 0x001A");
    let t = m.transport().clone();
    let status = tokio::time::timeout(HANG, async {
        loop {
            let st = al::status(&t, EL4104).await.expect("AL status");
            if st.error() {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the fall-back shows");
    assert_eq!(status.state(), Some(AlState::SafeOp), "{status}");
    assert_eq!(status.to_string(), "SAFEOP+ERR");
    let code = al::status_code(&t, EL4104).await.expect("AL status code");
    assert_eq!(code, AlStatusCode(0x001A));
    assert_eq!(code.to_string(), "0x001a (Synchronization error)");
    m.refresh_status().await.expect("AL status");
    for t in m.terminals() {
        let expected = if t.station == EL4104 {
            "SAFEOP+ERR"
        } else {
            "OP"
        };
        assert_eq!(
            t.status.to_string(),
            expected,
            "terminal 0x{:04x}",
            t.station
        );
    }
    // Asking for OP without acknowledging: the terminal keeps its error, the master
    // reports the code with its meaning and acknowledges it.
    let err = al::request(&t, EL4104, AlState::Op, Duration::from_secs(10))
        .await
        .expect_err("OP refused while the error is pending");
    assert!(
        matches!(
            err,
            AlError::Refused {
                station: EL4104,
                requested: AlState::Op,
                code: AlStatusCode(0x001A),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "terminal 0x1006 refused OP: it is in SAFEOP+ERR with AL status code 0x001a (Synchronization error)"
    );
    assert!(
        !al::status(&t, EL4104).await.expect("AL status").error(),
        "the master acknowledged the error"
    );
    // The whole bus goes back to OP.
    tokio::time::timeout(HANG, m.request_state(AlState::Op, None))
        .await
        .expect("back to OP does not hang")
        .map_err(|e: MasterError| e.to_string())
        .expect("back to OP");
    assert!(
        m.terminals()
            .iter()
            .all(|t| t.status.state() == Some(AlState::Op) && !t.status.error())
    );
    drop(cycle);
}
