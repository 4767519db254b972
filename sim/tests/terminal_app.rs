//! The dictionary-based terminal application: process-data layouts derived from the SII
//! agree with the SII's own PDO sizes, recorded dictionaries give the real EL7041 layout,
//! and outputs/inputs flow through the plant with the output log.

use std::path::PathBuf;

use ferrocat_sim::app::{BasicApp, PdDirection, TerminalApp};
use ferrocat_sim::coe::ObjectDictionary;
use ferrocat_sim::coe::from_sii::{dictionary_from_sii, name_from_sii};
use ferrocat_sim::coe::terminal::DictionaryTerminal;
use ferrocat_sim::models::{Model, PlantHandle, Signal};
use ferrocat_sim::sii::Sii;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata")
}

fn sii(name: &str) -> Sii {
    Sii::load(&testdata().join("eeprom").join(name)).expect("eeprom")
}

#[test]
fn sii_derived_layouts_match_the_sii_pdo_sizes() {
    for name in [
        "ek1100.bin",
        "el2004.bin",
        "el2828.bin",
        "el2889.bin",
        "el2262.bin",
    ] {
        let s = sii(name);
        let t = DictionaryTerminal::new(0, dictionary_from_sii(&s), false, PlantHandle::default());
        assert_eq!(
            t.process_data_layout(),
            BasicApp::from_sii(&s).process_data_layout(),
            "{name}"
        );
        let od = t.dictionary();
        assert_eq!(
            od.value_u64(0x1018, 1),
            Some(u64::from(s.vendor_id)),
            "{name}"
        );
        assert_eq!(
            od.value_u64(0x1018, 2),
            Some(u64::from(s.product_code)),
            "{name}"
        );
    }
}

#[test]
fn recorded_el7041_dictionary_gives_the_real_layout() {
    let s = sii("el7041.bin");
    let mut od =
        ObjectDictionary::from_json_file(&testdata().join("sdo/el7041.json")).expect("json");
    name_from_sii(&mut od, &s);
    let t = DictionaryTerminal::new(6, od, true, PlantHandle::default());
    let layout = t.process_data_layout();
    let bytes = |dir| {
        layout
            .iter()
            .filter(|l| l.direction == dir)
            .map(|l| l.bytes)
            .sum::<u16>()
    };
    // 0x1600 (4) + 0x1602 (2) + 0x1604 (2); 0x1A00 (6) + 0x1A03 (2).
    assert_eq!(bytes(PdDirection::Outputs), 8);
    assert_eq!(bytes(PdDirection::Inputs), 8);
    let l = t.layout().expect("layout");
    let (sm, velocity) = l.find(0x7010, 0x21).expect("velocity mapped");
    assert_eq!((sm, velocity.bit_offset, velocity.bit_len), (2, 48, 16));
    let (sm, encoder) = l.find(0x6000, 0x11).expect("encoder mapped");
    assert_eq!((sm, encoder.bit_offset, encoder.bit_len), (3, 16, 16));
}

#[test]
fn outputs_are_logged_and_wired_back_as_inputs() {
    let s = sii("el7041.bin");
    let od = ObjectDictionary::from_json_file(&testdata().join("sdo/el7041.json")).expect("json");
    let velocity = Signal::new(0, 0x7010, 0x21);
    let plant = PlantHandle::new(vec![Model::Stepper(ferrocat_sim::models::Stepper {
        velocity,
        enable: Some(Signal::new(0, 0x7010, 0x01)),
        encoder: Signal::new(0, 0x6000, 0x11),
        counts_per_second: 10_000.0,
        position: 0.0,
        low_limit_input: Some(Signal::new(0, 0x6010, 0x0C)),
        low_limit: -1000.0,
        high_limit_input: Some(Signal::new(0, 0x6010, 0x0D)),
        high_limit: 1000.0,
        ready_inputs: vec![],
    })]);
    let _ = s;
    let mut t = DictionaryTerminal::new(0, od, true, plant.clone());
    let mut inputs = [0u8; 8];
    t.fill_inputs(0, 3, &mut inputs);
    // Enable (0x7010:01 = bit 32) and half speed forward.
    let mut outputs = [0u8; 8];
    outputs[4] = 0x01;
    outputs[6..8].copy_from_slice(&16384i16.to_le_bytes());
    t.outputs_written(0, 2, &outputs);
    t.fill_inputs(100_000_000, 3, &mut inputs);
    let encoder = u16::from_le_bytes([inputs[2], inputs[3]]);
    assert_eq!(encoder, 500, "10000 counts/s * 0.5 * 0.1 s");
    let log = plant.output_log();
    assert!(
        log.iter()
            .any(|e| e.signal == velocity && e.value == 16384 && e.time_ns == 0)
    );
    t.outputs_safe(200_000_000);
    let log = plant.output_log();
    let last = log
        .iter()
        .rev()
        .find(|e| e.signal == velocity)
        .expect("logged");
    assert!(last.safe_state && last.value == 0);
}

#[test]
fn pdo_assignment_written_over_coe_decides_the_expected_sm_sizes() {
    use ferrocat_sim::app::{AlState, MailboxOutbox, SmConfig, Transition, al_status};
    let od = ObjectDictionary::from_json_file(&testdata().join("sdo/el3164.json")).expect("json");
    let mut t = DictionaryTerminal::new(0, od, true, PlantHandle::default());
    t.state_changed(0, AlState::Init, AlState::PreOp);
    let inputs = |t: &DictionaryTerminal| {
        t.process_data_layout()
            .iter()
            .filter(|l| l.direction == PdDirection::Inputs)
            .map(|l| l.bytes)
            .sum::<u16>()
    };
    assert_eq!(inputs(&t), 16, "four channels of 4 bytes");
    // Complete-access download of 0x1C13 = [0x1A00, 0x1A02], as a master does in PRE-OP.
    let mut outbox = MailboxOutbox::new(128);
    let mut req = vec![16, 0, 0, 0, 0, 0x13, 0x00, 0x20, 0x31, 0x13, 0x1C, 0x00];
    req.extend_from_slice(&6u32.to_le_bytes());
    req.extend_from_slice(&[2, 0, 0x00, 0x1A, 0x02, 0x1A]);
    req.resize(128, 0);
    t.mailbox_received(0, &req, &mut outbox);
    let reply = outbox.pop().expect("reply");
    assert_eq!(
        reply[8], 0x70,
        "download initiate response with complete access"
    );
    assert_eq!(inputs(&t), 8, "two channels now");
    let sm = |len| SmConfig {
        start: 0x1180,
        length: len,
        control: 0x20,
        activate: 1,
    };
    let mut sms = [SmConfig::default(); 4];
    sms[3] = sm(16);
    fn to_safeop(sms: &[SmConfig]) -> Transition<'_> {
        Transition {
            from: AlState::PreOp,
            to: AlState::SafeOp,
            sms,
        }
    }
    assert_eq!(
        t.check_transition(0, to_safeop(&sms)),
        Err(al_status::INVALID_INPUT_CONFIG),
        "the old 16-byte SM3 no longer fits"
    );
    sms[3] = sm(8);
    assert_eq!(t.check_transition(0, to_safeop(&sms)), Ok(()));
}

#[test]
fn real_mappings_never_map_more_bits_than_an_entry_has_but_may_map_fewer() {
    // What justifies the rule for PDO mapping writes (abort 0x06040041 beyond the entry's
    // length, shorter accepted): no real terminal's dictionary maps an entry with more
    // bits than it has, and the stepper terminals' compact PDOs map 32-bit entries with
    // 16 bits (EL7041 0x1A00 maps the encoder 0x6000:11, 0x1600 the target 0x7000:11).
    use ferrocat_sim::coe::dictionary::{decode_mapping, is_pdo_mapping};
    let mut dictionaries = Vec::new();
    for name in ["el3164", "el4104", "el6022", "el7031", "el7041"] {
        let path = testdata().join(format!("sdo/{name}.json"));
        let od = ObjectDictionary::from_json_file(&path).expect("json");
        dictionaries.push((name.to_string(), od));
    }
    for name in [
        "ek1100",
        "ek1814",
        "el2004",
        "el2262",
        "el2828",
        "el2889",
        "akd",
        "hbm-clipx",
    ] {
        let s = sii(&format!("{name}.bin"));
        dictionaries.push((format!("{name} (SII)"), dictionary_from_sii(&s)));
    }
    let mut checked = 0;
    let mut shorter = Vec::new();
    for (name, od) in &dictionaries {
        for object in od.objects().filter(|o| is_pdo_mapping(o.index)) {
            for entry in object.entries.range(1..).map(|(_, e)| e) {
                let Some(m) = decode_mapping(&entry.value) else {
                    continue;
                };
                if m.index == 0 {
                    continue;
                }
                let mapped = od.entry(m.index, m.sub).expect("mapped entry exists");
                let at = format!(
                    "{name}: 0x{:04X} maps 0x{:04X}:{:02X}",
                    object.index, m.index, m.sub
                );
                assert!(
                    m.bit_len > 0 && u16::from(m.bit_len) <= mapped.bit_len,
                    "{at}"
                );
                if u16::from(m.bit_len) < mapped.bit_len {
                    shorter.push(at);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked}");
    assert!(
        shorter.contains(&"el7041: 0x1A00 maps 0x6000:11".to_string()),
        "{shorter:?}"
    );
}

#[test]
fn a_pdo_assignment_naming_what_does_not_exist_is_refused_with_the_mapping_codes() {
    use ferrocat_sim::app::{AlState, SmConfig, Transition, al_status};
    // SM2 outputs, SM3 inputs (0x1C00); an assignment naming a PDO that does not exist
    // gives 0x0025 (outputs), a mapping naming an entry that does not exist 0x0024
    // (inputs), ETG.1000.6 table 11.
    let cases = [
        (
            r#"{"objects": {"1C00:03": "03", "1C00:04": "04", "1C12:01": "0516",
                "1600:01": "10010070", "7000:01": "0000"}}"#,
            al_status::INVALID_OUTPUT_MAPPING,
        ),
        (
            r#"{"objects": {"1C00:03": "03", "1C00:04": "04", "1C13:01": "001A",
                "1A00:01": "10110060"}}"#,
            al_status::INVALID_INPUT_MAPPING,
        ),
    ];
    for (json, code) in cases {
        let od = ObjectDictionary::from_json_str(json).expect("dictionary");
        let mut t = DictionaryTerminal::new(0, od, true, PlantHandle::default());
        t.state_changed(0, AlState::Init, AlState::PreOp);
        let sms = [SmConfig::default(); 4];
        let to_safe_op = Transition {
            from: AlState::PreOp,
            to: AlState::SafeOp,
            sms: &sms,
        };
        assert_eq!(t.check_transition(0, to_safe_op), Err(code), "{json}");
    }
}
