//! The CoE client against the simulator's CoE server serving the EL7041's recorded
//! dictionary: dictionary upload, SDO information, large transfers, aborts,
//! emergencies and injected faults.

mod coe_esc;

use coe_esc::{CoeTerminal, SM0, SM1};
use ferrocat::ethercat::coe::{AbortCode, CoeClient, CoeError, OdListType};
use ferrocat::ethercat::mailbox::{
    Mailbox, MailboxArea, MailboxConfig, MailboxError, MailboxOptions,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const STATION: u16 = 0x1001;

fn config() -> MailboxConfig {
    MailboxConfig {
        write: MailboxArea {
            sync_manager: 0,
            start: SM0.0,
            length: SM0.1,
        },
        read: MailboxArea {
            sync_manager: 1,
            start: SM1.0,
            length: SM1.1,
        },
    }
}

fn client(t: &Arc<CoeTerminal>) -> CoeClient<Arc<CoeTerminal>> {
    let options = MailboxOptions {
        response_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_millis(300),
        repeat_attempts: 3,
    };
    CoeClient::new(Mailbox::with_options(t.clone(), STATION, config(), options))
}

fn recorded() -> BTreeMap<(u16, u8), Vec<u8>> {
    let path = format!(
        "{}/../../shared/testdata/sdo/el7041.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("el7041.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut out = BTreeMap::new();
    for (key, hex) in json["objects"].as_object().expect("objects") {
        let (i, s) = key.split_once(':').expect("INDEX:SUB");
        let hex = hex.as_str().expect("hex string");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|p| u8::from_str_radix(&hex[p..p + 2], 16).expect("hex"))
            .collect();
        out.insert(
            (
                u16::from_str_radix(i, 16).expect("index"),
                u8::from_str_radix(s, 16).expect("sub"),
            ),
            bytes,
        );
    }
    out
}

/// Every one of the 388 recorded entries uploads byte for byte as recorded: nothing
/// writes to this terminal, and the simulator's CoE server keeps the recorded values
/// (its dictionary only narrows the declared type of entries PDOs map with fewer bits;
/// the EL7041's recording holds those booleans as one byte, which it keeps).
#[tokio::test]
async fn dictionary_upload_matches_the_recording() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    let recorded = recorded();
    assert_eq!(recorded.len(), 388);
    let mut differ = Vec::new();
    for (&(index, sub), want) in &recorded {
        let got = coe
            .upload(index, sub)
            .await
            .unwrap_or_else(|e| panic!("{index:#06x}:{sub:02x}: {e}"));
        if got != *want {
            differ.push(format!("{index:#06x}:{sub:02x} {want:02x?} -> {got:02x?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "uploaded values differ:\n{}",
        differ.join("\n")
    );
    // Identity and device name through the typed helpers.
    assert_eq!(
        coe.upload_u32(0x1018, 2).await.expect("product"),
        0x1B81_3052
    );
    assert_eq!(coe.upload(0x1008, 0).await.expect("name"), b"EL7041");
    assert_eq!(coe.upload_u16(0x1C12, 1).await.expect("assign"), 0x1600);
}

#[tokio::test]
async fn long_string_uploads_segmented() {
    // 0x10F3:06 (diagnosis message) is 28 bytes: a normal upload.
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    let want = recorded()[&(0x10F3, 6)].clone();
    assert_eq!(want.len(), 28);
    assert_eq!(coe.upload(0x10F3, 6).await.expect("upload"), want);
}

#[tokio::test]
async fn two_kib_download_and_upload_round_trip() {
    let t = Arc::new(CoeTerminal::el7041_with_domain(STATION));
    let coe = client(&t);
    // Sizes around the initiate (112 bytes) and segment (119 bytes) capacities of a
    // 128-byte mailbox; descending, as the string object keeps the last length.
    for len in [4096usize, 2048, 239, 232, 231, 126, 119, 113, 112, 111, 5] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        coe.download(0x2100, 0, &data)
            .await
            .unwrap_or_else(|e| panic!("download {len}: {e}"));
        assert_eq!(
            t.value(0x2100, 0).as_deref(),
            Some(&data[..]),
            "stored {len}"
        );
        let back = coe.upload(0x2100, 0).await.expect("upload");
        assert_eq!(back, data, "round trip of {len} bytes");
    }
}

#[tokio::test]
async fn expedited_download_and_complete_access() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    // 0x8010:01 maximal current (u16) of the EL7041.
    let before = coe.upload_u16(0x8010, 1).await.expect("read");
    coe.download(0x8010, 1, &(before - 100).to_le_bytes())
        .await
        .expect("write");
    assert_eq!(coe.upload_u16(0x8010, 1).await.expect("read"), before - 100);
    // Complete access of the RxPDO assignment: subindex 0 then three u16 entries
    // (subindex 0 padded to a word, ETG.1000.6 §5.6.2.1.3).
    let all = coe.upload_complete(0x1C12, 0).await.expect("complete");
    assert_eq!(all[0], 3, "{all:02x?}");
    let tail = &all[all.len() - 6..];
    assert_eq!(tail, &[0x00, 0x16, 0x02, 0x16, 0x04, 0x16]);
}

#[tokio::test]
async fn abort_codes_are_decoded() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    let err = coe.upload(0x5555, 0).await.unwrap_err();
    assert_eq!(err.abort_code(), Some(AbortCode::NO_OBJECT));
    assert_eq!(
        err.to_string(),
        "SDO 0x5555:00 on terminal 0x1001 aborted: 0x06020000 (The object does not exist in the object directory)"
    );
    let err = coe.download(0x1018, 1, &[1, 2, 3, 4]).await.unwrap_err();
    assert_eq!(err.abort_code(), Some(AbortCode(0x0601_0002)), "{err}");
    assert!(
        err.to_string()
            .contains("Attempt to write a read only object")
    );
    // The client is usable after an abort.
    assert_eq!(coe.upload_u32(0x1018, 1).await.expect("vendor"), 2);
}

#[tokio::test]
async fn sdo_information_lists_and_describes_the_dictionary() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    let list = coe.od_list(OdListType::All).await.expect("od list");
    let recorded: std::collections::BTreeSet<u16> = recorded().keys().map(|k| k.0).collect();
    for index in &recorded {
        assert!(
            list.contains(index),
            "{index:#06x} missing from the OD list"
        );
    }
    // 62 objects need more than one 128-byte mailbox: the reply was fragmented.
    assert!(list.len() * 2 > 128 - 12, "{} objects", list.len());
    let od = coe.object_description(0x1018).await.expect("object");
    assert_eq!(od.index, 0x1018);
    assert!(od.max_subindex >= 4);
    let e = coe.entry_description(0x1018, 2, 0).await.expect("entry");
    assert_eq!((e.index, e.subindex, e.bit_len), (0x1018, 2, 32));
    let err = coe.object_description(0x5555).await.unwrap_err();
    assert_eq!(err.abort_code(), Some(AbortCode::NO_OBJECT), "{err}");
}

#[tokio::test]
async fn emergencies_are_queued_and_reported() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    t.emergency(ferrocat_sim::coe::Emergency {
        error_code: 0x8700,
        error_register: 0x11,
        data: [1, 2, 3, 4, 5],
    });
    // The emergency arrives ahead of the SDO reply; the upload still succeeds.
    assert_eq!(coe.upload_u32(0x1018, 1).await.expect("vendor"), 2);
    let ems = coe.take_emergencies();
    assert_eq!(ems.len(), 1);
    assert_eq!(ems[0].error_code, 0x8700);
    assert_eq!(ems[0].station, STATION);
    assert!(ems[0].to_string().contains("sync controller error"));
    // One that arrives unasked is picked up by polling.
    t.emergency(ferrocat_sim::coe::Emergency {
        error_code: 0xA000,
        error_register: 0,
        data: [0; 5],
    });
    let ems = coe
        .poll_emergencies(Duration::from_millis(20))
        .await
        .expect("poll");
    assert_eq!(
        ems.iter().map(|e| e.error_code).collect::<Vec<_>>(),
        vec![0xA000]
    );
}

#[tokio::test]
async fn lost_reply_is_repeated() {
    let t = Arc::new(CoeTerminal::el7041_with_domain(STATION));
    let coe = client(&t);
    t.faults(|f| f.lose_reply_reads = 1);
    assert_eq!(
        coe.upload_u32(0x1018, 2).await.expect("product"),
        0x1B81_3052
    );
    // A lost reply in the middle of a segmented transfer.
    let data: Vec<u8> = (0..2048).map(|i| (i % 251) as u8).collect();
    coe.download(0x2100, 0, &data).await.expect("download");
    t.faults(|f| f.lose_reply_reads = 3);
    assert_eq!(coe.upload(0x2100, 0).await.expect("upload"), data);
}

#[tokio::test]
async fn replies_lost_every_time_end_in_an_error() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    t.faults(|f| f.lose_reply_reads = u32::MAX);
    let err = tokio::time::timeout(Duration::from_secs(10), coe.upload(0x1018, 1))
        .await
        .expect("no endless repeating")
        .unwrap_err();
    assert!(
        matches!(
            err,
            CoeError::Mailbox(MailboxError::ResponseTimeout {
                station: STATION,
                ..
            }) | CoeError::Mailbox(MailboxError::RepeatFailed {
                station: STATION,
                ..
            })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn requests_lost_every_time_end_in_an_error() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    t.faults(|f| f.lose_requests_before = u32::MAX);
    let err = tokio::time::timeout(Duration::from_secs(10), coe.upload(0x1018, 1))
        .await
        .expect("no endless resending")
        .unwrap_err();
    assert!(
        matches!(
            err,
            CoeError::Mailbox(MailboxError::WriteTimeout {
                station: STATION,
                ..
            })
        ),
        "{err}"
    );
}

/// A mailbox frame (ETG.1000.4 table 29: length, address, channel, type CoE = 3 with
/// counter 1) carrying an SDO response (CoE service 3) of `sdo` bytes.
fn sdo_response_frame(sdo: &[u8]) -> Vec<u8> {
    let mut coe = vec![0x00, 0x30];
    coe.extend_from_slice(sdo);
    let mut f = (coe.len() as u16).to_le_bytes().to_vec();
    f.extend_from_slice(&[0, 0, 0, 0x13]);
    f.extend_from_slice(&coe);
    f
}

#[tokio::test]
async fn hostile_upload_replies_end_in_errors() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    // Normal upload announcing 4 GiB - 1: refused before any segment is asked for.
    let announce = |total: u32| {
        let mut sdo = vec![0x41, 0x18, 0x10, 0x01];
        sdo.extend_from_slice(&total.to_le_bytes());
        sdo_response_frame(&sdo)
    };
    t.faults(|f| f.script = [announce(u32::MAX)].into());
    let err = coe.upload(0x1018, 1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "SDO 0x1018:01 on terminal {STATION:#06x}: the terminal announces 4294967295 bytes, more than the 16777216 an upload may hold"
        )
    );
    // 100 bytes announced, then an empty segment that is not the last: it would go on
    // for ever.
    let empty_segment = sdo_response_frame(&[0x0E, 0, 0, 0, 0, 0, 0, 0]);
    t.faults(|f| f.script = [announce(100), empty_segment].into());
    let err = tokio::time::timeout(Duration::from_secs(10), coe.upload(0x1018, 1))
        .await
        .expect("no endless upload")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "SDO 0x1018:01 on terminal {STATION:#06x}: an empty upload segment that is not the last"
        )
    );
}

#[tokio::test]
async fn lost_requests_are_resent_once() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    t.faults(|f| f.lose_requests_before = 1);
    assert_eq!(coe.upload_u32(0x1018, 1).await.expect("vendor"), 2);
    let before = t.requests();
    // Lost after the terminal took it: the resend carries the same counter and the
    // terminal does not execute it twice.
    t.faults(|f| f.lose_requests_after = 1);
    assert_eq!(coe.upload_u32(0x1018, 1).await.expect("vendor"), 2);
    assert_eq!(t.requests() - before, 2, "request written twice");
    assert_eq!(coe.upload_u32(0x1018, 1).await.expect("vendor"), 2);
}

#[tokio::test]
async fn vanished_terminal_is_an_error_not_a_hang() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    t.faults(|f| f.gone = true);
    let err = tokio::time::timeout(Duration::from_secs(5), coe.upload(0x1018, 1))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(
        matches!(
            err,
            CoeError::Mailbox(MailboxError::Register {
                station: STATION,
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("working counter 0"), "{err}");
}

#[tokio::test]
async fn silent_terminal_times_out() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    t.faults(|f| f.mute = true);
    let err = tokio::time::timeout(Duration::from_secs(5), coe.upload(0x1018, 1))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(
        matches!(
            err,
            CoeError::Mailbox(MailboxError::ResponseTimeout {
                station: STATION,
                ..
            })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn terminal_sending_only_emergencies_times_out() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    t.faults(|f| f.babble = true);
    let err = tokio::time::timeout(Duration::from_secs(10), coe.upload(0x1018, 1))
        .await
        .expect("no endless wait while emergencies keep coming")
        .unwrap_err();
    assert!(
        matches!(
            err,
            CoeError::Mailbox(MailboxError::ResponseTimeout {
                station: STATION,
                ..
            })
        ),
        "{err}"
    );
    let ems = coe.take_emergencies();
    assert!(!ems.is_empty(), "the emergencies are kept for the user");
    assert!(ems.iter().all(|e| e.error_code == 0xFF00));
    // Polling for emergencies ends after its wait, however many keep coming.
    let ems = tokio::time::timeout(
        Duration::from_secs(10),
        coe.poll_emergencies(Duration::from_millis(50)),
    )
    .await
    .expect("polling ends")
    .expect("poll");
    assert!(!ems.is_empty());
    // SDO information waits the same way.
    let err = tokio::time::timeout(Duration::from_secs(10), coe.od_list(OdListType::All))
        .await
        .expect("no endless wait for SDO information")
        .unwrap_err();
    assert!(
        matches!(err, CoeError::Mailbox(MailboxError::ResponseTimeout { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn mailbox_error_reply_is_decoded() {
    use ferrocat::ethercat::mailbox::{MailboxErrorCode, MailboxType};
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    let mut s = coe.mailbox().session().await;
    // The terminal offers CoE only: a FoE request gets a mailbox error reply.
    s.send(MailboxType::Foe, &[1, 0, 0, 0, 0, 0])
        .await
        .expect("send");
    let err = s.receive().await.unwrap_err();
    match err {
        MailboxError::ErrorReply { station, code } => {
            assert_eq!(station, STATION);
            assert_eq!(code, MailboxErrorCode(0x0002));
        }
        other => panic!("expected a mailbox error reply, got {other}"),
    }
    drop(s);
    // A request too big for the mailbox is refused before anything is written.
    let mut s = coe.mailbox().session().await;
    let err = s.send(MailboxType::Coe, &[0; 200]).await.unwrap_err();
    assert!(
        matches!(
            err,
            MailboxError::TooLarge {
                len: 206,
                mailbox: 128,
                ..
            }
        ),
        "{err}"
    );
}
