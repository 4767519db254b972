//! PDO layouts read over CoE from the simulator's EL7041 (its recorded dictionary),
//! assignments written and read back, and the SII fallback for a drive whose
//! dictionary lacks the PDO objects.

mod coe_esc;

use coe_esc::{CoeTerminal, SM0, SM1};
use ferrocat::ethercat::coe::CoeClient;
use ferrocat::ethercat::mailbox::{Mailbox, MailboxArea, MailboxConfig};
use ferrocat::ethercat::pdo::{LayoutSource, TerminalInput, plan, read_layout, write_assignment};
use ferrocat::ethercat::sii::{PdoDirection, SiiImage};
use ferrocat_sim::coe::ObjectDictionary;
use std::sync::Arc;

const STATION: u16 = 0x1002;

fn sii(name: &str) -> SiiImage {
    let p = format!(
        "{}/../../shared/testdata/eeprom/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    SiiImage::parse(&std::fs::read(&p).expect("read")).expect("parse")
}

fn client(t: &Arc<CoeTerminal>) -> CoeClient<Arc<CoeTerminal>> {
    let config = MailboxConfig {
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
    };
    CoeClient::new(Mailbox::new(t.clone(), STATION, config))
}

#[tokio::test]
async fn el7041_layout_from_coe() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    let s = sii("el7041.bin");
    let layout = read_layout(Some(&coe), &s).await.expect("layout");
    assert_eq!(layout.source, LayoutSource::Coe);
    let out: Vec<_> = layout.sync_managers_of(PdoDirection::Rx).collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].sync_manager, 2);
    assert_eq!(
        out[0]
            .pdos
            .iter()
            .map(|p| (p.index, p.entries.len(), p.bit_len()))
            .collect::<Vec<_>>(),
        vec![(0x1600, 7, 32), (0x1602, 5, 16), (0x1604, 1, 16)]
    );
    let inp: Vec<_> = layout.sync_managers_of(PdoDirection::Tx).collect();
    assert_eq!(inp[0].sync_manager, 3);
    assert_eq!(
        inp[0]
            .pdos
            .iter()
            .map(|p| (p.index, p.entries.len(), p.bit_len()))
            .collect::<Vec<_>>(),
        vec![(0x1A00, 17, 48), (0x1A03, 14, 16)]
    );
    // The SII's SyncManager lengths (8 bytes each) match the layout.
    assert_eq!(out[0].byte_len(), s.sync_managers[2].length);
    assert_eq!(inp[0].byte_len(), s.sync_managers[3].length);

    // Placed in the image: velocity 0x7010:21 (16 bit) at output byte 6.
    let img = plan(
        &[TerminalInput {
            station: STATION,
            sii: &s,
            layout: &layout,
            bit_oriented_fmmus: false,
        }],
        0,
    )
    .expect("plan");
    let t_img = img.terminal(STATION).expect("terminal");
    let velocity = t_img.entry(0x7010, 0x21).expect("velocity");
    assert_eq!(
        (velocity.logical_byte(), velocity.bit(), velocity.bit_len),
        (6, 0, 16)
    );
    let position = t_img.entry(0x6000, 0x11).expect("counter value");
    assert_eq!((position.logical_byte(), position.bit_len), (8 + 2, 16));
    assert_eq!(img.outputs.len, 8);
    assert_eq!(img.inputs.len, 8);
    let kinds: Vec<_> = t_img
        .fmmus
        .iter()
        .map(|f| (f.index, f.physical_start, f.length))
        .collect();
    assert_eq!(kinds, vec![(0, 0x1100, 8), (1, 0x1180, 8)]);
}

#[tokio::test]
async fn assignment_written_and_read_back() {
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    let s = sii("el7041.bin");
    write_assignment(&coe, 2, &[0x1601, 0x1602])
        .await
        .expect("assign");
    assert_eq!(t.value(0x1C12, 0), Some(vec![2]));
    let layout = read_layout(Some(&coe), &s).await.expect("layout");
    let out = layout
        .sync_managers_of(PdoDirection::Rx)
        .next()
        .expect("outputs");
    assert_eq!(
        out.pdos.iter().map(|p| p.index).collect::<Vec<_>>(),
        vec![0x1601, 0x1602]
    );
    // 0x1601 maps a 32-bit target (48 bits in all), 0x1602 16 bits.
    assert_eq!(out.bit_len(), 64);
}

#[tokio::test]
async fn drive_without_pdo_objects_falls_back_to_the_sii() {
    // The AKD image has no recorded dictionary: its CoE server knows no PDO objects.
    let t = Arc::new(CoeTerminal::new(STATION, ObjectDictionary::new()));
    let coe = client(&t);
    let s = sii("akd.bin");
    let layout = read_layout(Some(&coe), &s).await.expect("layout");
    match &layout.source {
        LayoutSource::Sii { reason } => assert!(reason.contains("0x06020000"), "{reason}"),
        other => panic!("expected the SII fallback, got {other:?}"),
    }
    let out = layout
        .sync_managers_of(PdoDirection::Rx)
        .next()
        .expect("outputs");
    assert_eq!(out.pdos[0].index, 0x1701);
    assert_eq!(out.pdos[0].entries[1].name.as_deref(), Some("Controlword"));
}

#[tokio::test]
async fn terminal_without_mailbox_uses_the_sii() {
    let s = sii("el2004.bin");
    let layout = read_layout::<Arc<CoeTerminal>>(None, &s)
        .await
        .expect("layout");
    assert!(matches!(layout.source, LayoutSource::Sii { .. }));
    assert_eq!(layout.bit_len(PdoDirection::Rx), 4);
}

#[tokio::test]
async fn mapping_written_and_read_back() {
    use ferrocat::ethercat::pdo::{PdoEntry, write_mapping};
    let t = Arc::new(CoeTerminal::el7041(STATION));
    let coe = client(&t);
    let s = sii("el7041.bin");
    // 0x1602 (STM control) reduced to its three control bits and a 5-bit gap.
    let entries: Vec<PdoEntry> = [0x7010_0101u32, 0x7010_0201, 0x7010_0301, 0x0000_0005]
        .into_iter()
        .map(PdoEntry::from_mapping)
        .collect();
    write_mapping(&coe, 0x1602, &entries)
        .await
        .expect("mapping");
    assert_eq!(t.value(0x1602, 0), Some(vec![4]));
    assert_eq!(
        t.value(0x1602, 4),
        Some(0x0000_0005u32.to_le_bytes().to_vec())
    );
    let layout = read_layout(Some(&coe), &s).await.expect("layout");
    let out = layout
        .sync_managers_of(PdoDirection::Rx)
        .next()
        .expect("outputs");
    let p = out.pdos.iter().find(|p| p.index == 0x1602).expect("0x1602");
    assert_eq!(p.entries, entries);
    assert_eq!(out.bit_len(), 32 + 8 + 16);
}
