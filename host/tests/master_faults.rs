//! Injected faults (ferrocat-sim, in process) give the documented errors without a hang:
//! lost frames are retried, a dead link and a vanished terminal are named, AL errors
//! carry their code and text.

mod master_support;

use ferrocat::ethercat::al::{self, AlError, AlState, AlStatusCode};
use ferrocat::ethercat::master::{Master, MasterError, ScanOptions};
use ferrocat::ethercat::station_io::RegisterError;
use ferrocat::ethercat::transport::{Policy, Transport, TransportConfig, identity_for_pid};
use ferrocat_sim::fault::TerminalFault;
use master_support::*;
use std::time::Duration;

fn transport_with(
    link: ferrocat::ethercat::transport::ChannelLink,
    pid: u32,
    policy: Policy,
) -> Transport {
    Transport::spawn(
        link,
        TransportConfig {
            identity: identity_for_pid(pid),
            policy,
            capture: None,
        },
    )
}

#[tokio::test]
async fn lost_frames_are_retried_through_scan_and_preop() {
    let (link, bus) = sim_link(&REFERENCE);
    bus.segment().faults().set_drop_ratio(0.1);
    let t = transport_with(
        link,
        11,
        // Each loss costs one timeout; long enough that a busy machine's slow reply is
        // not a loss too.
        Policy {
            timeout: Duration::from_millis(50),
            retries: 8,
        },
    );
    let mut m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("scan despite losses");
    assert_eq!(m.terminals().len(), 7);
    assert_eq!(m.terminals()[6].identity.product_code, 0x1B813052);
    m.request_state(AlState::PreOp, None)
        .await
        .expect("PRE-OP despite losses");
    assert!(
        m.terminals()
            .iter()
            .all(|t| t.status.state() == Some(AlState::PreOp))
    );
}

#[tokio::test]
async fn link_down_is_a_timeout_naming_the_step() {
    let (link, bus) = sim_link(&REFERENCE);
    bus.segment().faults().set_link_down(true);
    let t = transport_with(
        link,
        12,
        Policy {
            timeout: Duration::from_millis(10),
            retries: 1,
        },
    );
    let err = Master::scan(t, &ScanOptions::default()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "counting terminals (BRD 0x0000): no reply to BRD broadcast register 0x0000 after 2 attempts of 10ms each"
    );
}

#[tokio::test]
async fn vanished_terminal_is_named() {
    let (link, bus) = sim_link(&REFERENCE);
    // Generous: the error is a working counter, not a timeout, so the wait costs
    // nothing, and a busy machine must not turn a slow reply into a lost one.
    let t = transport_with(
        link,
        13,
        Policy {
            timeout: Duration::from_millis(500),
            retries: 1,
        },
    );
    let mut m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("scan");
    bus.segment().faults().set_silent_from(Some(3));
    let err = m.request_state(AlState::PreOp, None).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, MasterError::Register(RegisterError::WorkingCounter(ref e)) if e.station >= 0x1004 && e.got == 0)
            || matches!(err, MasterError::Al(AlError::Register(RegisterError::WorkingCounter(ref e))) if e.station >= 0x1004 && e.got == 0),
        "{text}"
    );
    assert!(text.contains("working counter 0, expected 1"), "{text}");
}

#[tokio::test]
async fn al_error_of_a_terminal_is_decoded_and_acknowledged() {
    let (t, bus) = reference_transport(14);
    let mut m = Master::scan(t.clone(), &ScanOptions::default())
        .await
        .expect("scan");
    m.request_state(AlState::Op, None).await.expect("OP");
    bus.segment().faults().inject(
        6,
        TerminalFault::FallBack {
            state: ferrocat_sim::app::AlState::SafeOp,
            code: 0x001A,
        },
    );
    // The fault applies before the next frame.
    let _ = t.brd(0x0000, 1).await.expect("frame");
    m.refresh_status().await.expect("status");
    let st = m.terminals()[6].status;
    assert_eq!(st.state(), Some(AlState::SafeOp));
    assert!(st.error());
    let code = al::status_code(&t, 0x1007).await.expect("code");
    assert_eq!(code, AlStatusCode(0x001A));
    assert_eq!(code.to_string(), "0x001a (Synchronization error)");
    // Bringing the bus back to OP acknowledges the error first.
    m.request_state(AlState::Op, None)
        .await
        .expect("back to OP");
    assert_eq!(m.terminals()[6].status.state(), Some(AlState::Op));
    assert!(!m.terminals()[6].status.error());
}

#[tokio::test]
async fn op_without_outputs_is_refused_with_0x0019() {
    let (t, _bus) = reference_transport(15);
    let mut m = Master::scan(t.clone(), &ScanOptions::default())
        .await
        .expect("scan");
    m.request_state(AlState::SafeOp, None)
        .await
        .expect("SAFE-OP");
    // Ask the EL4104 (firmware, analog outputs) for OP directly, without outputs.
    let err = al::request(&t, 0x1006, AlState::Op, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "terminal 0x1006 refused OP: it is in SAFEOP+ERR with AL status code 0x0019 (No valid outputs)"
    );
    let st = al::status(&t, 0x1006).await.expect("status");
    assert!(!st.error(), "the refusal was acknowledged");
}

#[tokio::test]
async fn terminals_silent_during_the_sii_read_are_named_and_the_others_read() {
    let (link, bus) = sim_link(&REFERENCE);
    let t = transport_with(
        link,
        15,
        Policy {
            timeout: Duration::from_millis(500),
            retries: 1,
        },
    );
    let mut m = Master::scan(t, &ScanOptions { read_sii: false })
        .await
        .expect("scan");
    bus.segment().faults().set_silent_from(Some(4));
    tokio::time::timeout(Duration::from_secs(30), m.read_sii())
        .await
        .expect("the SII read ends");
    for term in &m.terminals()[..4] {
        assert!(
            term.sii.is_some(),
            "{:#06x}: {:?}",
            term.station,
            term.sii_error
        );
    }
    assert_eq!(m.terminals()[3].identity.product_code, 0x0B493052);
    for term in &m.terminals()[4..] {
        let e = term
            .sii_error
            .as_deref()
            .expect("silent terminal has an error");
        assert_eq!(
            e,
            format!(
                "EEPROM interface of terminal {0:#06x}: read of register 0x0500 on terminal {0:#06x}: working counter 0, expected 1",
                term.station
            )
        );
        assert_eq!(term.identity.product_code, 0);
    }
}

#[tokio::test]
async fn terminal_silent_during_dc_setup_is_named() {
    let (link, bus) = sim_link(&REFERENCE);
    let t = transport_with(
        link,
        16,
        Policy {
            timeout: Duration::from_millis(500),
            retries: 1,
        },
    );
    let mut m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("scan");
    bus.segment().faults().set_silent_from(Some(5));
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        m.configure_dc(&ferrocat::ethercat::master::DcOptions::default()),
    )
    .await
    .expect("DC setup ends")
    .expect_err("a silent terminal fails DC setup");
    let text = err.to_string();
    // The first silent terminal whose receive times are read is named.
    assert!(
        [0x1006, 0x1007].iter().any(|s| text
            == format!(
                "reading receive times of {s:#06x}: FPRD station {s:#06x} register 0x0900: working counter 0, expected 1"
            )),
        "{text}"
    );
}
