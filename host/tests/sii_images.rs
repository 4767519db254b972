//! The SII parser against every real EEPROM image in `../shared/testdata/eeprom/`:
//! identity, names, PDOs and SyncManagers as read off the hardware.

use ferrocat::ethercat::sii::image::{ListEnd, SiiError, SiiWarning};
use ferrocat::ethercat::sii::{FmmuUsage, PdoDirection, SiiImage, SmType};

fn load(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../shared/testdata/eeprom/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn parse(name: &str) -> SiiImage {
    SiiImage::parse(&load(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// (file, vendor, product, revision) from the test data README.
const IDENTITIES: &[(&str, u32, u32, u32)] = &[
    ("ek1100.bin", 0x2, 0x044C2C52, 0x00120000),
    ("ek1814.bin", 0x2, 0x07162C52, 0x00120000),
    ("el2004.bin", 0x2, 0x07D43052, 0x00100000),
    ("el2828.bin", 0x2, 0x0B0C3052, 0x00110000),
    ("el2889.bin", 0x2, 0x0B493052, 0x00110000),
    ("el2262.bin", 0x2, 0x08D63052, 0x00030000),
    ("el3164.bin", 0x2, 0x0C5C3052, 0x00140000),
    ("el4104.bin", 0x2, 0x10083052, 0x03FC0000),
    ("el6022.bin", 0x2, 0x17863052, 0x00130000),
    ("el7031.bin", 0x2, 0x1B773052, 0x00170000),
    ("el7041.bin", 0x2, 0x1B813052, 0x00170000),
    ("akd.bin", 0x6A, 0x00414B44, 0x2),
    ("akd-null-strings.bin", 0x6A, 0x00414B44, 0x2),
    ("hbm-clipx.bin", 0x11D, 0x00000F01, 0x1),
];

#[test]
fn identities_of_every_image() {
    for &(file, vendor, product, revision) in IDENTITIES {
        let img = parse(file);
        let id = img.identity();
        assert_eq!(
            (id.vendor_id, id.product_code, id.revision),
            (vendor, product, revision),
            "{file}"
        );
        assert!(img.header.checksum_ok, "{file}: header checksum");
    }
}

#[test]
fn beckhoff_names_and_order_numbers() {
    let cases = [
        ("ek1100.bin", "EK1100", "EK1100 EtherCAT-Koppler (2A E-Bus)"),
        ("el2004.bin", "EL2004", "EL2004 4K. Dig. Ausgang 24V, 0.5A"),
        ("el2828.bin", "EL2828", "EL2828 8K. Dig. Ausgang 24V, 2A"),
        (
            "el2262.bin",
            "EL2262",
            "EL2262 2K. Dig. Ausgang 24V, 1µs, DC Oversample",
        ),
        ("el3164.bin", "EL3164", "EL3164 4K. Ana. Eingang 0-10V"),
        (
            "el4104.bin",
            "EL4104",
            "EL4104 4Ch. Ana. Ausgang 0-10V, 16bit",
        ),
        (
            "el6022.bin",
            "EL6022",
            "EL6022 Schnittstelle 2K. (RS422/485)",
        ),
        (
            "el7041.bin",
            "EL7041",
            "EL7041 1K. Schrittmotor-Endstufe (50V, 5A)",
        ),
        ("akd.bin", "AKD", "AKD EtherCAT Drive (CoE)"),
        ("hbm-clipx.bin", "ClipX", "ClipX"),
    ];
    for (file, order, name) in cases {
        let img = parse(file);
        assert_eq!(img.order_number().as_deref(), Some(order), "{file}");
        assert_eq!(img.name().as_deref(), Some(name), "{file}");
    }
}

#[test]
fn ek1100_has_no_mailbox_and_no_process_data() {
    let img = parse("ek1100.bin");
    assert!(!img.has_mailbox());
    assert!(img.sync_managers.is_empty());
    assert_eq!(img.pdos().count(), 0);
    assert_eq!(img.general.as_ref().map(|g| g.ebus_current_ma), Some(-2000));
    assert_eq!(img.end, ListEnd::EndMarker(118));
    assert!(img.warnings.is_empty(), "{:?}", img.warnings);
}

#[test]
fn el2004_rx_pdos_from_sii() {
    let img = parse("el2004.bin");
    assert!(!img.has_mailbox());
    assert_eq!(img.sync_managers.len(), 1);
    let sm = img.sync_managers[0];
    assert_eq!((sm.start, sm.length, sm.control), (0x0F00, 0, 0x44));
    assert_eq!(sm.kind, SmType::ProcessDataOut);
    assert_eq!(img.fmmus, vec![FmmuUsage::Outputs, FmmuUsage::Unused]);
    assert!(img.tx_pdos.is_empty());
    let idx: Vec<u16> = img.rx_pdos.iter().map(|p| p.index).collect();
    assert_eq!(idx, vec![0x1600, 0x1601, 0x1602, 0x1603]);
    for (i, pdo) in img.rx_pdos.iter().enumerate() {
        assert_eq!(pdo.direction, PdoDirection::Rx);
        assert_eq!(pdo.sync_manager, 0);
        assert_eq!(pdo.entries.len(), 1);
        let e = pdo.entries[0];
        assert_eq!(
            (e.index, e.subindex, e.bit_len),
            (0x7000 + 0x10 * i as u16, 1, 1)
        );
        assert_eq!(img.text(e.name_index).as_deref(), Some("Output"));
        assert_eq!(
            img.text(pdo.name_index).as_deref(),
            Some(format!("Channel {}", i + 1).as_str())
        );
    }
}

#[test]
fn el2889_two_output_sync_managers() {
    let img = parse("el2889.bin");
    let starts: Vec<u16> = img.sync_managers.iter().map(|s| s.start).collect();
    assert_eq!(starts, vec![0x0F00, 0x0F01]);
    assert_eq!(img.rx_pdos.len(), 16);
    assert_eq!(
        img.rx_pdos.iter().filter(|p| p.sync_manager == 1).count(),
        8
    );
    assert_eq!(img.rx_pdos[15].entries[0].index, 0x70F0);
}

#[test]
fn el2828_eight_outputs() {
    let img = parse("el2828.bin");
    assert_eq!(img.rx_pdos.len(), 8);
    assert_eq!(img.sync_managers[0].length, 1);
    // A device-specific category (type 3) precedes the strings; it is kept raw.
    assert_eq!(img.other.len(), 1);
    assert_eq!(img.other[0].kind, 3);
}

#[test]
fn el2262_fmmu_ex_sync_units_and_dc() {
    let img = parse("el2262.bin");
    assert_eq!(
        img.fmmus,
        vec![
            FmmuUsage::Outputs,
            FmmuUsage::Outputs,
            FmmuUsage::Inputs,
            FmmuUsage::Unused
        ]
    );
    let sms: Vec<_> = img.fmmu_ex.iter().map(|f| f.sync_manager).collect();
    assert_eq!(sms, vec![0, 1, 2]);
    assert_eq!(img.sync_units.len(), 2);
    assert_eq!(img.dc_modes.len(), 4);
    assert_eq!(img.dc_modes[0].assign_activate, 0x0730);
    assert_eq!(img.dc_modes[1].sync0_cycle_factor, -8);
    assert_eq!(
        img.text(img.dc_modes[1].name_index).as_deref(),
        Some("DcSync2")
    );
    // Gap PDOs of 2..7 bits are real entries with their own widths.
    let gaps: Vec<u8> = img
        .rx_pdos
        .iter()
        .filter(|p| (0x1710..=0x1716).contains(&p.index))
        .map(|p| p.entries[0].bit_len)
        .collect();
    assert_eq!(gaps, vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(img.tx_pdos.len(), 1);
    assert_eq!(img.tx_pdos[0].index, 0x1702);
    assert_eq!(img.tx_pdos[0].bit_len(), 32);
}

#[test]
fn ek1814_truncated_without_end_marker() {
    let img = parse("ek1814.bin");
    assert_eq!(img.end, ListEnd::EndOfImage);
    assert_eq!(img.warnings, vec![SiiWarning::NoEndMarker { word: 0x110 }]);
    assert_eq!(img.tx_pdos.len(), 4);
    assert_eq!(img.rx_pdos.len(), 4);
    assert_eq!(img.rx_pdos[0].index, 0x1608);
    assert_eq!(img.tx_pdos[3].entries[0].index, 0x6030);
    assert_eq!(
        img.sync_managers
            .iter()
            .map(|s| (s.start, s.kind))
            .collect::<Vec<_>>(),
        vec![
            (0x0F01, SmType::ProcessDataOut),
            (0x1000, SmType::ProcessDataIn)
        ]
    );
}

#[test]
fn el3164_truncated_coe_device() {
    let img = parse("el3164.bin");
    assert!(img.has_mailbox());
    assert!(img.header.mailbox_protocols.coe());
    assert_eq!(
        (img.header.rx_mailbox.offset, img.header.rx_mailbox.size),
        (0x1000, 128)
    );
    assert_eq!(
        (img.header.tx_mailbox.offset, img.header.tx_mailbox.size),
        (0x1080, 128)
    );
    let sms: Vec<_> = img
        .sync_managers
        .iter()
        .map(|s| (s.start, s.length, s.kind))
        .collect();
    assert_eq!(
        sms,
        vec![
            (0x1000, 0x80, SmType::MailboxOut),
            (0x1080, 0x80, SmType::MailboxIn),
            (0x1100, 0, SmType::ProcessDataOut),
            (0x1180, 0x10, SmType::ProcessDataIn)
        ]
    );
    assert_eq!(img.tx_pdos.len(), 8);
    let standard = &img.tx_pdos[0];
    assert_eq!(standard.index, 0x1A00);
    assert_eq!(standard.entries.len(), 11);
    assert_eq!(standard.bit_len(), 32);
    // The 2-bit limit entries are entries of their own.
    assert_eq!(standard.entries[2].bit_len, 2);
    assert_eq!(standard.entries[2].subindex, 3);
    assert_eq!(img.dc_modes[2].shift_time_0, -100_000);
    assert!(img.general.as_ref().is_some_and(|g| g.coe.sdo_info()));
}

#[test]
fn el4104_and_el6022_and_el7031_sync_managers() {
    let el4104 = parse("el4104.bin");
    assert_eq!(el4104.rx_pdos.len(), 4);
    assert_eq!(el4104.rx_pdos[3].entries[0].index, 0x7030);
    assert_eq!(el4104.rx_pdos[3].entries[0].bit_len, 16);
    assert_eq!(el4104.sync_managers[2].length, 8);

    let el6022 = parse("el6022.bin");
    assert_eq!(el6022.pdos().count(), 0);
    assert_eq!(el6022.sync_managers[3].start, 0x1220);
    assert_eq!(el6022.sync_managers[3].length, 0x30);

    let el7031 = parse("el7031.bin");
    assert_eq!(el7031.identity().serial, 0xEB1A8499);
    assert_eq!(el7031.sync_managers.len(), 4);
}

#[test]
fn el7041_sync_managers_and_dc() {
    let img = parse("el7041.bin");
    let sms: Vec<_> = img
        .sync_managers
        .iter()
        .map(|s| (s.start, s.length, s.control, s.kind))
        .collect();
    assert_eq!(
        sms,
        vec![
            (0x1000, 0x80, 0x26, SmType::MailboxOut),
            (0x1080, 0x80, 0x22, SmType::MailboxIn),
            (0x1100, 8, 0x24, SmType::ProcessDataOut),
            (0x1180, 8, 0x20, SmType::ProcessDataIn)
        ]
    );
    assert_eq!(img.pdos().count(), 0, "PDOs of the EL7041 come from CoE");
    assert_eq!(img.dc_modes[1].assign_activate, 0x0300);
    assert_eq!(img.text(img.dc_modes[1].name_index).as_deref(), Some("DC"));
    assert_eq!(img.end, ListEnd::EndOfImage);
}

#[test]
fn akd_pdos_from_sii() {
    let img = parse("akd.bin");
    assert!(img.warnings.is_empty(), "{:?}", img.warnings);
    assert_eq!(img.rx_pdos.len(), 12);
    assert_eq!(img.tx_pdos.len(), 12);
    let assigned: Vec<_> = img
        .pdos()
        .filter(|p| p.assigned())
        .map(|p| (p.index, p.sync_manager))
        .collect();
    assert_eq!(assigned, vec![(0x1701, 2), (0x1B01, 3)]);
    let p1701 = img
        .rx_pdos
        .iter()
        .find(|p| p.index == 0x1701)
        .expect("0x1701");
    assert_eq!(
        p1701
            .entries
            .iter()
            .map(|e| (e.index, e.subindex, e.bit_len))
            .collect::<Vec<_>>(),
        vec![(0x60C1, 1, 32), (0x6040, 0, 16)]
    );
    assert_eq!(
        img.text(p1701.entries[1].name_index).as_deref(),
        Some("Controlword")
    );
    let p1b20 = img
        .tx_pdos
        .iter()
        .find(|p| p.index == 0x1B20)
        .expect("0x1B20");
    assert_eq!(p1b20.entries.len(), 10);
    assert_eq!(p1b20.bit_len(), 256);
    assert_eq!(
        (img.header.rx_mailbox.offset, img.header.rx_mailbox.size),
        (0x1800, 0x400)
    );
    assert_eq!(img.sync_managers[3].start, 0x1140);
    assert_eq!(
        img.other.iter().map(|c| c.kind).collect::<Vec<_>>(),
        vec![0x800, 0x801]
    );
}

#[test]
fn akd_with_damaged_strings_still_yields_pdos_and_sync_managers() {
    let good = parse("akd.bin");
    let img = parse("akd-null-strings.bin");
    assert!(
        img.warnings.iter().any(|w| matches!(
            w,
            SiiWarning::CategoryListDamaged {
                word: 0x145,
                kind: 0x100,
                resumed_at: 0x151,
                ..
            }
        )),
        "{:?}",
        img.warnings
    );
    // The general category header was destroyed by the damage.
    assert!(img.general.is_none());
    assert_eq!(img.sync_managers, good.sync_managers);
    assert_eq!(img.fmmus, good.fmmus);
    let strip = |i: &SiiImage| {
        i.pdos()
            .map(|p| {
                (
                    p.index,
                    p.sync_manager,
                    p.entries
                        .iter()
                        .map(|e| (e.index, e.subindex, e.bit_len))
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&img), strip(&good));
    assert_eq!(img.dc_modes.len(), 2);
    assert_eq!(img.text(5).as_deref(), Some(""));
    assert_eq!(img.text(4).as_deref(), Some("AKD EtherCA"));
}

#[test]
fn clipx_binary_first_string() {
    let img = parse("hbm-clipx.bin");
    assert_eq!(img.header.eeprom_size_bytes, 4096);
    assert!(!img.strings[0].is_printable(), "first string is a bitmap");
    assert_eq!(img.text(1), None);
    assert_eq!(img.sync_managers[3].start, 0x1D00);
    assert_eq!(img.sync_managers[2].length, 0xC8);
    // JSON output never carries the binary string as text.
    let json = serde_json::to_value(&img).expect("json");
    assert!(json["strings"][0].is_null());
    assert_eq!(json["strings"][1], "ClipX");
}

#[test]
fn blank_eeprom_is_reported() {
    let err = SiiImage::parse(&load("empty-eeprom.bin")).unwrap_err();
    match &err {
        SiiError::Blank { reason } => assert!(reason.contains("checksum"), "{reason}"),
        other => panic!("expected Blank, got {other:?}"),
    }
    assert!(err.to_string().starts_with("blank SII"));
}

#[test]
fn every_image_prefix_parses_without_panic() {
    let dir = format!(
        "{}/../../shared/testdata/eeprom",
        env!("CARGO_MANIFEST_DIR")
    );
    for entry in std::fs::read_dir(&dir).expect("eeprom dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        let limit = bytes.len().min(4096);
        for cut in (0..limit).step_by(7) {
            let _ = SiiImage::parse(&bytes[..cut]);
        }
    }
}
