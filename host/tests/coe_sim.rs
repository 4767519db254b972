//! CoE over the whole stack: ferrocat's transport and bring-up talking to the in-process
//! ferrocat-sim bus (the EL7041 with its recorded dictionary), with frames lost and a
//! terminal disappearing.

mod master_support;

use ferrocat::ethercat::al::AlState;
use ferrocat::ethercat::coe::{AbortCode, CoeClient, CoeError, OdListType};
use ferrocat::ethercat::mailbox::{Mailbox, MailboxConfig, MailboxError, MailboxOptions};
use ferrocat::ethercat::master::{Master, ScanOptions};
use ferrocat::ethercat::pdo::{LayoutSource, read_layout};
use ferrocat::ethercat::sii::PdoDirection;
use ferrocat::ethercat::transport::{Transport, TransportConfig, identity_for_pid};
use ferrocat_sim::fault::{Faults, TerminalFault};
use ferrocat_sim::topology::Topology;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const EL7041_PRODUCT: u32 = 0x1B81_3052;

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}/../../shared/testdata/{rel}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The EL7041's recorded dictionary plus a 2 KiB read-write octet string at 0x2100:00,
/// written to a unique temporary file.
fn dictionary_with_buffer() -> PathBuf {
    let text = std::fs::read_to_string(testdata("sdo/el7041.json")).expect("el7041.json");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("json");
    json["objects"]["2100:00"] = serde_json::Value::String("00".repeat(2048));
    let path = std::env::temp_dir().join(format!(
        "ferrocat-coe-{}-{}.json",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, serde_json::to_string(&json).expect("encode")).expect("write");
    path
}

struct Rig {
    transport: Transport,
    master: Master,
    faults: Faults,
    station: u16,
    _dictionary: TempFile,
}

struct TempFile(PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// EK1100 + EL7041 on an in-process bus, scanned and brought to PRE-OP by ferrocat.
async fn rig() -> Rig {
    let dict = TempFile(dictionary_with_buffer());
    let toml = format!(
        "[[terminal]]\nname = \"EK1100\"\neeprom = {:?}\n\n[[terminal]]\nname = \"EL7041\"\neeprom = {:?}\ndictionary = {:?}\n",
        testdata("eeprom/ek1100.bin"),
        testdata("eeprom/el7041.bin"),
        dict.0,
    );
    let topo = Topology::parse(&toml, Path::new("coe-sim.toml"), Path::new("/")).expect("topology");
    let segment = ferrocat_sim::serve::build_segment(topo.build().expect("build"));
    let faults = segment.faults();
    let (link, _bus) = master_support::link_to(segment);
    let transport = Transport::spawn(
        link,
        TransportConfig {
            identity: identity_for_pid(0x00C0_E000 + COUNTER.fetch_add(1, Ordering::Relaxed)),
            ..TransportConfig::default()
        },
    );
    let mut master = Master::scan(transport.clone(), &ScanOptions::default())
        .await
        .expect("scan");
    master
        .request_state(AlState::PreOp, None)
        .await
        .expect("PRE-OP");
    let station = master
        .terminals()
        .iter()
        .find(|t| t.identity.product_code == EL7041_PRODUCT)
        .expect("EL7041 on the bus")
        .station;
    Rig {
        transport,
        master,
        faults,
        station,
        _dictionary: dict,
    }
}

impl Rig {
    fn coe(&self, options: MailboxOptions) -> CoeClient<Transport> {
        let t = self.master.terminal(self.station).expect("terminal");
        let sii = t.sii.as_ref().expect("SII read");
        let config = MailboxConfig::from_sii(sii).expect("mailbox in the SII");
        CoeClient::new(Mailbox::with_options(
            self.transport.clone(),
            self.station,
            config,
            options,
        ))
    }
}

fn recorded() -> Vec<((u16, u8), Vec<u8>)> {
    let text = std::fs::read_to_string(testdata("sdo/el7041.json")).expect("el7041.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    json["objects"]
        .as_object()
        .expect("objects")
        .iter()
        .map(|(k, v)| {
            let (i, s) = k.split_once(':').expect("INDEX:SUB");
            let hex = v.as_str().expect("hex");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|p| u8::from_str_radix(&hex[p..p + 2], 16).expect("hex"))
                .collect();
            (
                (
                    u16::from_str_radix(i, 16).expect("index"),
                    u8::from_str_radix(s, 16).expect("sub"),
                ),
                bytes,
            )
        })
        .collect()
}

/// The entries of the recording whose upload differs from it, as readable lines.
async fn differences(coe: &CoeClient<Transport>, recorded: &[((u16, u8), Vec<u8>)]) -> Vec<String> {
    let mut differ = Vec::new();
    for ((index, sub), want) in recorded {
        let got = coe
            .upload(*index, *sub)
            .await
            .unwrap_or_else(|e| panic!("{index:#06x}:{sub:02x}: {e}"));
        if got != *want {
            differ.push(format!("{index:#06x}:{sub:02x} {want:02x?} -> {got:02x?}"));
        }
    }
    differ
}

/// Over the bus every recorded entry uploads byte for byte as recorded, in PRE-OP and
/// again after bring-up to OP. No entry may differ: bring-up only reads the EL7041's
/// objects (PDO assignment and mapping), and the outputs it writes through the process
/// image in SAFE-OP (0x7000:xx, 0x7010:xx, all zero) are what the recording holds.
#[tokio::test]
async fn el7041_dictionary_over_the_bus_matches_the_recording() {
    let mut rig = rig().await;
    let coe = rig.coe(MailboxOptions::default());
    let recorded = recorded();
    assert_eq!(recorded.len(), 388);
    let differ = differences(&coe, &recorded).await;
    assert!(differ.is_empty(), "in PRE-OP:\n{}", differ.join("\n"));
    let list = coe.od_list(OdListType::All).await.expect("OD list");
    for ((index, _), _) in &recorded {
        assert!(list.contains(index), "{index:#06x} not in the OD list");
    }
    let layout = read_layout(
        Some(&coe),
        rig.master
            .terminal(rig.station)
            .and_then(|t| t.sii.as_ref())
            .expect("sii"),
    )
    .await
    .expect("layout");
    assert_eq!(layout.source, LayoutSource::Coe);
    assert_eq!(layout.bit_len(PdoDirection::Rx), 64);
    assert_eq!(layout.bit_len(PdoDirection::Tx), 64);
    rig.master
        .request_state(AlState::Op, None)
        .await
        .expect("OP");
    let differ = differences(&coe, &recorded).await;
    assert!(
        differ.is_empty(),
        "after bring-up to OP:\n{}",
        differ.join("\n")
    );
}

#[tokio::test]
async fn two_kib_round_trip_over_the_bus() {
    let rig = rig().await;
    let coe = rig.coe(MailboxOptions::default());
    let data: Vec<u8> = (0..2048u32).map(|i| (i * 31 % 256) as u8).collect();
    coe.download(0x2100, 0, &data).await.expect("download");
    assert_eq!(coe.upload(0x2100, 0).await.expect("upload"), data);
    let err = coe.upload(0x2101, 0).await.unwrap_err();
    assert_eq!(err.abort_code(), Some(AbortCode::NO_OBJECT), "{err}");
}

#[tokio::test]
async fn lost_frames_do_not_break_transfers() {
    let rig = rig().await;
    let coe = rig.coe(MailboxOptions {
        response_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
        repeat_attempts: 5,
    });
    let data: Vec<u8> = (0..2048u32).map(|i| (i * 7 % 253) as u8).collect();
    rig.faults.set_drop_ratio(0.1);
    let mut ok = 0;
    for round in 0..4 {
        // Shrinking lengths: the octet string keeps the length last written.
        let chunk = &data[..512 * (4 - round)];
        // A transfer may still fail if the transport gives up on a frame; it must
        // then fail with an error, never hang or return wrong data.
        let r = tokio::time::timeout(Duration::from_secs(20), async {
            coe.download(0x2100, 0, chunk).await?;
            coe.upload(0x2100, 0).await
        })
        .await
        .expect("no hang");
        match r {
            Ok(back) => {
                assert_eq!(back, chunk, "round {round}");
                ok += 1;
            }
            Err(e) => eprintln!("round {round} failed cleanly: {e}"),
        }
    }
    rig.faults.set_drop_ratio(0.0);
    assert!(ok >= 3, "only {ok} of 4 transfers survived 10 % frame loss");
    // After the losses the mailbox is in step again.
    assert_eq!(
        coe.upload_u32(0x1018, 2).await.expect("product"),
        EL7041_PRODUCT
    );
}

#[tokio::test]
async fn terminal_gone_gives_an_error_without_hanging() {
    let rig = rig().await;
    let coe = rig.coe(MailboxOptions {
        response_timeout: Duration::from_millis(500),
        write_timeout: Duration::from_millis(500),
        repeat_attempts: 2,
    });
    assert_eq!(coe.upload_u32(0x1018, 1).await.expect("vendor"), 2);
    rig.faults.set_silent_from(Some(1));
    let err = tokio::time::timeout(Duration::from_secs(10), coe.upload(0x1018, 1))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(
        matches!(
            err,
            CoeError::Mailbox(MailboxError::Register { .. })
                | CoeError::Mailbox(MailboxError::ResponseTimeout { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("{:#06x}", rig.station)),
        "{err}"
    );
}

#[tokio::test]
async fn emergency_of_a_fallback_from_op_is_surfaced() {
    let mut rig = rig().await;
    // Bring-up configures the process data and writes safe outputs before OP.
    rig.master
        .request_state(AlState::Op, None)
        .await
        .expect("OP");
    let coe = rig.coe(MailboxOptions::default());
    assert!(coe.take_emergencies().is_empty());
    // The EL7041 (position 1) leaves OP on its own, with an error: its firmware
    // sends an emergency (0xA000, the AL status code in the manufacturer data).
    rig.faults.inject(
        1,
        TerminalFault::FallBack {
            state: ferrocat_sim::app::AlState::SafeOp,
            code: 0x001B,
        },
    );
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.extend(
            coe.poll_emergencies(Duration::from_millis(50))
                .await
                .expect("mailbox readable in SAFE-OP"),
        );
        if !seen.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    let e = seen[0];
    assert_eq!(e.station, rig.station);
    assert_eq!(e.error_code, 0xA000);
    assert_eq!(&e.data[..2], &[0x1B, 0x00]);
    assert!(e.to_string().contains("EtherCAT state machine"), "{e}");
    // An SDO transfer still works after the emergency was taken out of the mailbox.
    assert_eq!(
        coe.upload_u32(0x1018, 2).await.expect("product"),
        EL7041_PRODUCT
    );
}
