//! Unit tests of the ESC: registers, SyncManagers, FMMUs, watchdog, EEPROM, AL state machine.

use super::*;
use crate::app::{BasicApp, MailboxHeader, PdDirection, PdSm, mailbox_type};
use std::sync::{Arc, Mutex};

fn sii(name: &str) -> Sii {
    let p = format!(
        "{}/../../shared/testdata/eeprom/{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    Sii::load(std::path::Path::new(&p)).expect("eeprom")
}

/// What the test application saw.
#[derive(Debug, Default)]
struct Seen {
    mailbox: Vec<Vec<u8>>,
    outputs: Vec<(u64, u8, Vec<u8>)>,
    safe: Vec<u64>,
    input_fills: usize,
}

/// A firmware application for tests: process data of `layout`, answers every CoE
/// mailbox message with its data reversed, counts input fills and records outputs.
#[derive(Debug)]
struct EchoApp {
    basic: BasicApp,
    seen: Arc<Mutex<Seen>>,
    next_input: u8,
}

impl TerminalApp for EchoApp {
    fn process_data_layout(&self) -> Vec<PdSm> {
        self.basic.process_data_layout()
    }
    fn mailbox_received(&mut self, _now: u64, message: &[u8], outbox: &mut MailboxOutbox) {
        self.seen
            .lock()
            .expect("seen")
            .mailbox
            .push(message.to_vec());
        let h = MailboxHeader::parse(message).expect("header");
        let data = &message[6..6 + usize::from(h.length)];
        let reversed: Vec<u8> = data.iter().rev().copied().collect();
        outbox.push(mailbox_type::COE, &reversed);
    }
    fn outputs_written(&mut self, now: u64, sm: u8, data: &[u8]) {
        self.seen
            .lock()
            .expect("seen")
            .outputs
            .push((now, sm, data.to_vec()));
    }
    fn fill_inputs(&mut self, _now: u64, _sm: u8, data: &mut [u8]) {
        self.seen.lock().expect("seen").input_fills += 1;
        self.next_input = self.next_input.wrapping_add(1);
        data.fill(self.next_input);
    }
    fn outputs_safe(&mut self, now: u64) {
        self.seen.lock().expect("seen").safe.push(now);
    }
}

/// An EL4104 (firmware, mailbox at 0x1000/0x1080) whose application has 2 output bytes
/// on SM2 and 2 input bytes on SM3.
fn firmware_terminal() -> (Esc, Arc<Mutex<Seen>>) {
    let s = sii("el4104");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = EchoApp {
        basic: BasicApp::with_layout(vec![
            PdSm {
                sm: 2,
                direction: PdDirection::Outputs,
                bytes: 2,
            },
            PdSm {
                sm: 3,
                direction: PdDirection::Inputs,
                bytes: 2,
            },
        ]),
        seen: seen.clone(),
        next_input: 0,
    };
    (Esc::new(EscConfig::for_sii(&s), s, Box::new(app)), seen)
}

fn sm_bytes(start: u16, len: u16, control: u8) -> [u8; 8] {
    let s = start.to_le_bytes();
    let l = len.to_le_bytes();
    [s[0], s[1], l[0], l[1], control, 0, 1, 0]
}

fn al_status(e: &mut Esc) -> (u8, u16) {
    let mut b = [0u8; 6];
    assert!(e.read(regs::AL_STATUS, &mut b, ReadMode::Replace));
    (b[0], u16::from_le_bytes([b[4], b[5]]))
}

fn request(e: &mut Esc, ctl: u8) -> (u8, u16) {
    assert!(e.write(regs::AL_CONTROL, &[ctl, 0]));
    al_status(e)
}

fn configure_mailbox(e: &mut Esc) {
    assert!(e.write(0x0800, &sm_bytes(0x1000, 0x80, 0x26)));
    assert!(e.write(0x0808, &sm_bytes(0x1080, 0x80, 0x22)));
}

fn configure_process_data(e: &mut Esc, out_len: u16) {
    assert!(e.write(0x0810, &sm_bytes(0x1100, out_len, 0x64)));
    assert!(e.write(0x0818, &sm_bytes(0x1180, 2, 0x20)));
}

fn to_safe_op(e: &mut Esc) {
    configure_mailbox(e);
    assert_eq!(request(e, 2), (0x02, 0));
    configure_process_data(e, 2);
    assert_eq!(request(e, 4), (0x04, 0));
}

#[test]
fn identity_registers_per_chip() {
    let mut e = Esc::new(
        EscConfig::for_sii(&sii("ek1100")),
        sii("ek1100"),
        Box::new(BasicApp::with_layout(vec![])),
    );
    let mut b = [0u8; 10];
    assert!(e.read(0x0000, &mut b, ReadMode::Replace));
    assert_eq!(b, [0x11, 0x00, 0x03, 0x00, 8, 8, 8, 0x3B, 0xFC, 0x00]);
    let mut dl = [0u8; 2];
    e.read(regs::DL_STATUS, &mut dl, ReadMode::Replace);
    // Port 0 link and communication, ports 1..3 loop closed; no PDI so bit 1 clear.
    assert_eq!(
        dl,
        [0x11, 0x56],
        "only port 0 has a link until the segment says so"
    );
    // Features (0x0008) as the captures read them, bit 0 clear: FMMUs work bit-wise
    // (ETG.1000.4 table 32; twincat-scan-boxes.pcapng frames 536/545).
    for (chip, features) in [
        (EscChip::ET1100_COUPLER, 0x00FC),
        (EscChip::ET1200, 0x00FC),
        (EscChip::ET1200_RECEIVE_TIMES_ONLY, 0x01FC),
        (EscChip::ET1200_EL2889, 0x00FC),
    ] {
        let s = sii("el2004");
        let mut e = Esc::new(
            EscConfig {
                chip,
                ..EscConfig::for_sii(&s)
            },
            s,
            Box::new(BasicApp::with_layout(vec![])),
        );
        let mut f = [0u8; 2];
        assert!(e.read(regs::FEATURES, &mut f, ReadMode::Replace));
        assert_eq!(u16::from_le_bytes(f), features, "{chip:?}");
        assert!(chip.bit_fmmus(), "{chip:?}");
    }
    let byte_wise = EscChip {
        features: 0x00FD,
        ..EscChip::ET1200
    };
    assert!(!byte_wise.bit_fmmus());
}

#[test]
fn al_state_machine_codes() {
    let (mut e, _) = firmware_terminal();
    assert_eq!(al_status(&mut e), (0x01, 0));
    // Unknown state 5.
    assert_eq!(request(&mut e, 5), (0x11, al_status::UNKNOWN_STATE));
    // Without acknowledge, a higher state is ignored while the error flag is set.
    assert_eq!(request(&mut e, 2), (0x11, al_status::UNKNOWN_STATE));
    // Acknowledge + INIT clears it.
    assert_eq!(request(&mut e, 0x11), (0x01, 0));
    // INIT -> OP is not a valid transition.
    assert_eq!(
        request(&mut e, 0x08),
        (0x11, al_status::INVALID_STATE_CHANGE)
    );
    // Bootstrap: the EL4104 has FoE and a bootstrap mailbox; BOOT goes only back to INIT.
    assert_eq!(request(&mut e, 0x13), (0x03, 0));
    assert_eq!(
        request(&mut e, 0x02),
        (0x13, al_status::INVALID_STATE_CHANGE)
    );
    assert_eq!(request(&mut e, 0x11), (0x01, 0));
    // PRE-OP without mailbox SyncManagers.
    assert_eq!(
        request(&mut e, 0x12),
        (0x11, al_status::INVALID_MAILBOX_CONFIG)
    );
    configure_mailbox(&mut e);
    assert_eq!(request(&mut e, 0x12), (0x02, 0));
    // SAFE-OP with a 3-byte output SM where 2 are expected.
    configure_process_data(&mut e, 3);
    assert_eq!(
        request(&mut e, 0x04),
        (0x12, al_status::INVALID_OUTPUT_CONFIG)
    );
    // The right length, but the output SM configured for reading (control 0x20).
    configure_process_data(&mut e, 2);
    assert!(e.write(0x0810, &sm_bytes(0x1100, 2, 0x20)));
    assert_eq!(request(&mut e, 0x14), (0x12, al_status::INVALID_SM_CONFIG));
    configure_process_data(&mut e, 2);
    assert_eq!(request(&mut e, 0x14), (0x04, 0));
    // OP before any valid outputs.
    assert_eq!(request(&mut e, 0x08), (0x14, al_status::NO_VALID_OUTPUTS));
    // Outputs arrive (last byte completes the buffer), then OP works.
    assert!(e.write(0x1100, &[0xAB, 0xCD]));
    assert_eq!(request(&mut e, 0x18), (0x08, 0));
    assert_eq!(e.al_state(), AlState::Op);
}

#[test]
fn bootstrap_without_foe_is_refused() {
    let mut raw = sii("el4104").raw;
    raw[0x1C * 2] &= !0x08; // mailbox protocols without FoE
    let s = Sii::parse(raw).expect("image");
    let mut e = Esc::new(
        EscConfig::for_sii(&s),
        s,
        Box::new(BasicApp::with_layout(vec![])),
    );
    assert_eq!(
        request(&mut e, 0x03),
        (0x11, al_status::BOOTSTRAP_NOT_SUPPORTED)
    );
}

#[test]
fn device_emulation_mirrors_al_control() {
    let s = sii("el2889");
    let mut e = Esc::new(
        EscConfig::for_sii(&s),
        s,
        Box::new(BasicApp::with_layout(vec![])),
    );
    assert!(e.device_emulation());
    // ek1100-el2828-el2889.pcapng frames 3/4 and 96: 0x0011 written, 0x0011 read back.
    assert_eq!(request(&mut e, 0x11), (0x11, 0));
    // INIT -> OP directly: mirrored, no firmware to refuse it.
    assert_eq!(request(&mut e, 0x08), (0x08, 0));
    assert_eq!(e.al_state(), AlState::Op);
}

#[test]
fn mailbox_handshake_and_repeat() {
    let (mut e, seen) = firmware_terminal();
    configure_mailbox(&mut e);
    // In INIT the firmware keeps the mailbox deactivated: a write is not taken.
    let mut msg = vec![0u8; 0x80];
    msg[..6].copy_from_slice(
        &MailboxHeader {
            length: 3,
            address: 0,
            channel: 0,
            priority: 0,
            mailbox_type: mailbox_type::COE,
            counter: 1,
        }
        .to_bytes(),
    );
    msg[6..9].copy_from_slice(&[1, 2, 3]);
    assert!(!e.write(0x1000, &msg), "mailbox off in INIT");
    assert_eq!(request(&mut e, 2), (0x02, 0));
    // Send mailbox empty: reading it is not counted and leaves the data.
    let mut buf = vec![0xEEu8; 0x80];
    assert!(!e.read(0x1080, &mut buf, ReadMode::Replace));
    assert_eq!(buf[0], 0xEE);
    // A write not reaching the last byte is not a message yet.
    assert!(e.write(0x1000, &msg[..0x40]));
    assert!(seen.lock().expect("seen").mailbox.is_empty());
    assert!(e.write(0x1000, &msg));
    assert_eq!(seen.lock().expect("seen").mailbox.len(), 1);
    // The reply is in SM1: status 0x09 (interrupt write, mailbox full); SM0 was read by
    // the firmware: 0x02 (interrupt read), as in ek1914-el3004-mailbox.pcapng.
    assert_eq!(e.peek(0x080D), 0x09);
    assert_eq!(e.peek(0x0805), 0x02);
    assert!(e.read(0x1080, &mut buf, ReadMode::Replace));
    assert_eq!(&buf[..9], &[3, 0, 0, 0, 0, 0x13, 3, 2, 1]);
    assert_eq!(e.peek(0x080D) & 0x08, 0, "read to the last byte empties it");
    assert!(!e.read(0x1080, &mut buf, ReadMode::Replace));
    // Repeat request: toggle 0x080E bit 1; the firmware writes the message again and
    // acknowledges in 0x080F bit 1.
    assert!(e.write(0x080E, &[0x03]));
    assert_eq!(e.peek(0x080F) & 0x02, 0x02);
    let mut again = vec![0u8; 0x80];
    assert!(e.read(0x1080, &mut again, ReadMode::Replace));
    assert_eq!(again[..9], buf[..9]);
}

#[test]
fn three_buffer_outputs_and_inputs() {
    let (mut e, seen) = firmware_terminal();
    to_safe_op(&mut e);
    e.begin_frame(1_000);
    // Part of the SM (no last byte): not visible, no outputs_written.
    assert!(e.write(0x1100, &[0x11]));
    assert_eq!(e.sm_buffer(2), Some(&[0, 0][..]));
    assert!(e.write(0x1101, &[0x22]));
    assert_eq!(e.sm_buffer(2), Some(&[0x11, 0x22][..]));
    assert!(
        seen.lock().expect("seen").outputs.is_empty(),
        "not applied in SAFE-OP"
    );
    assert_eq!(request(&mut e, 8), (0x08, 0));
    assert_eq!(
        seen.lock()
            .expect("seen")
            .outputs
            .last()
            .map(|o| o.2.clone()),
        Some(vec![0x11, 0x22]),
        "the latest buffer is applied on entering OP"
    );
    assert!(e.write(0x1100, &[0x33, 0x44]));
    assert_eq!(
        seen.lock()
            .expect("seen")
            .outputs
            .last()
            .map(|o| o.2.clone()),
        Some(vec![0x33, 0x44])
    );
    // Reading an output SM is not an access.
    let mut b = [0u8; 2];
    assert!(!e.read(0x1100, &mut b, ReadMode::Replace));
    // Inputs: a full read takes a fresh buffer each time.
    assert!(e.read(0x1180, &mut b, ReadMode::Replace));
    assert_eq!(b, [1, 1]);
    assert!(e.read(0x1180, &mut b, ReadMode::Replace));
    assert_eq!(b, [2, 2]);
    // Reading only the first byte never releases the buffer: stale from then on.
    let mut one = [0u8; 1];
    assert!(e.read(0x1180, &mut one, ReadMode::Replace));
    assert!(e.read(0x1180, &mut one, ReadMode::Replace));
    assert_eq!(one, [3]);
    assert_eq!(seen.lock().expect("seen").input_fills, 3);
    // Writing an input SM is not an access either.
    assert!(!e.write(0x1180, &[9, 9]));
}

#[test]
fn sm_watchdog_drops_firmware_terminal_to_safe_op() {
    let (mut e, seen) = firmware_terminal();
    to_safe_op(&mut e);
    e.begin_frame(0);
    assert!(e.write(0x1100, &[1, 2]));
    assert_eq!(request(&mut e, 8), (0x08, 0));
    e.advance(100_000_000);
    assert_eq!(e.al_state(), AlState::Op, "100 ms default not yet exceeded");
    assert_eq!(e.peek(regs::WD_STATUS) & 1, 1);
    e.advance(100_000_001);
    assert_eq!(al_status(&mut e), (0x14, al_status::SM_WATCHDOG));
    assert_eq!(e.peek(regs::WD_STATUS) & 1, 0);
    assert_eq!(e.peek(regs::WD_COUNTER_PD), 1);
    assert!(!seen.lock().expect("seen").safe.is_empty());
    // A write to the counter clears it.
    assert!(e.write(regs::WD_COUNTER_PD, &[0xFF]));
    assert_eq!(e.peek(regs::WD_COUNTER_PD), 0);
    // A shorter watchdog: 10 ticks of 100 µs.
    assert_eq!(request(&mut e, 0x14), (0x04, 0));
    assert!(e.write(regs::WD_PROCESS_DATA, &10u16.to_le_bytes()));
    e.begin_frame(200_000_000);
    assert!(e.write(0x1100, &[1, 2]));
    assert_eq!(request(&mut e, 8), (0x08, 0));
    e.advance(201_000_001);
    assert_eq!(al_status(&mut e), (0x14, al_status::SM_WATCHDOG));
}

#[test]
fn sm_watchdog_expiry_invalidates_the_outputs() {
    let (mut e, seen) = firmware_terminal();
    to_safe_op(&mut e);
    e.begin_frame(0);
    assert!(e.write(0x1100, &[1, 2]));
    assert_eq!(request(&mut e, 8), (0x08, 0));
    e.advance(100_000_001);
    assert_eq!(al_status(&mut e), (0x14, al_status::SM_WATCHDOG));
    let applied = seen.lock().expect("seen").outputs.len();
    // Acknowledge back to SAFE-OP: accepted. OP without fresh outputs: refused.
    assert_eq!(request(&mut e, 0x14), (0x04, 0));
    assert_eq!(request(&mut e, 0x08), (0x14, al_status::NO_VALID_OUTPUTS));
    assert_eq!(e.al_state(), AlState::SafeOp);
    assert_eq!(
        seen.lock().expect("seen").outputs.len(),
        applied,
        "the stale buffer is not applied"
    );
    // A fresh buffer makes OP possible again, and it is what the application gets.
    e.begin_frame(200_000_000);
    assert!(e.write(0x1100, &[3, 4]));
    assert_eq!(request(&mut e, 0x18), (0x08, 0));
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.outputs.len(), applied + 1);
    assert_eq!(seen.outputs.last().map(|o| o.2.clone()), Some(vec![3, 4]));
}

#[test]
fn sm_watchdog_in_safe_op_keeps_the_outputs_valid() {
    let (mut e, seen) = firmware_terminal();
    to_safe_op(&mut e);
    e.begin_frame(0);
    assert!(e.write(0x1100, &[5, 6]));
    // Long past the 100 ms watchdog, still in SAFE-OP: no error, and OP is granted with
    // the buffer written before.
    e.advance(500_000_000);
    assert_eq!(e.peek(regs::WD_STATUS) & 1, 0, "the ESC's watchdog expired");
    assert_eq!(al_status(&mut e), (0x04, 0));
    assert_eq!(request(&mut e, 0x08), (0x08, 0));
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.outputs.last().map(|o| o.2.clone()), Some(vec![5, 6]));
}

#[test]
fn device_emulation_watchdog_expiry_does_not_reapply_stale_outputs() {
    let s = sii("el2004");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = EchoApp {
        basic: BasicApp::from_sii(&s),
        seen: seen.clone(),
        next_input: 0,
    };
    let mut e = Esc::new(EscConfig::for_sii(&s), s, Box::new(app));
    assert!(e.device_emulation());
    // SM0 at 0x0F00, 1 byte, write with watchdog trigger (the EL2004's SII setting).
    assert!(e.write(0x0800, &sm_bytes(0x0F00, 1, 0x44)));
    assert_eq!(request(&mut e, 0x08), (0x08, 0));
    e.begin_frame(0);
    assert!(e.write(0x0F00, &[0x0F]));
    assert_eq!(seen.lock().expect("seen").outputs.len(), 1);
    e.advance(100_000_001);
    assert_eq!(e.peek(regs::WD_STATUS) & 1, 0, "expired");
    assert_eq!(seen.lock().expect("seen").safe.len(), 1, "outputs cleared");
    // The master leaves OP and comes back without writing: the outputs stay safe.
    assert_eq!(request(&mut e, 0x04), (0x04, 0));
    assert_eq!(request(&mut e, 0x08), (0x08, 0));
    assert_eq!(
        seen.lock().expect("seen").outputs.len(),
        1,
        "the expired buffer is not applied again"
    );
    e.begin_frame(200_000_000);
    assert!(e.write(0x0F00, &[0x05]));
    assert_eq!(
        seen.lock()
            .expect("seen")
            .outputs
            .last()
            .map(|o| o.2.clone()),
        Some(vec![0x05])
    );
}

fn sii_command(e: &mut Esc, control: u8, cmd: u8, addr: u32) {
    let mut b = [control, cmd, 0, 0, 0, 0];
    b[2..6].copy_from_slice(&addr.to_le_bytes());
    assert!(e.write(regs::SII_CONTROL, &b));
}

/// Writes the configuration area's checksum (word 7 low byte, ETG.2010) for the EEPROM's
/// words 0..6 as they are now, through the SII interface.
fn write_eeprom_checksum(e: &mut Esc) {
    let crc = crate::sii::header_crc(e.eeprom());
    let word7 = u16::from_le_bytes([crc, e.eeprom()[15]]);
    assert!(e.write(regs::SII_DATA, &word7.to_le_bytes()));
    sii_command(e, 0x01, 0x02, 0x07);
}

#[test]
fn eeprom_interface_read_write_reload() {
    let s = sii("el2004");
    let mut e = Esc::new(
        EscConfig::for_sii(&s),
        s,
        Box::new(BasicApp::with_layout(vec![])),
    );
    assert_eq!(e.peek(regs::SII_CONTROL), 0x50, "ET1200 reads 8 bytes");
    e.begin_frame(0);
    sii_command(&mut e, 0, 0x01, 0x08);
    assert_eq!(e.peek(regs::SII_CONTROL + 1), 0x81, "busy with the read");
    let mut data = [0u8; 8];
    e.read(regs::SII_DATA, &mut data, ReadMode::Replace);
    assert_eq!(
        data,
        [0x02, 0, 0, 0, 0x52, 0x30, 0xD4, 0x07],
        "vendor and product"
    );
    // Commands while busy are ignored.
    sii_command(&mut e, 0, 0x01, 0x40);
    e.begin_frame(1_000_000);
    assert_eq!(e.peek(regs::SII_CONTROL + 1), 0x00, "done");
    // Beyond the image an EEPROM reads erased.
    sii_command(&mut e, 0, 0x01, 0x7000);
    e.read(regs::SII_DATA, &mut data, ReadMode::Replace);
    assert_eq!(data, [0xFF; 8]);
    e.begin_frame(2_000_000);
    // A write without the enable bit fails with the write-enable error bit.
    assert!(e.write(regs::SII_DATA, &0x1234u16.to_le_bytes()));
    sii_command(&mut e, 0, 0x02, 0x04);
    assert_eq!(e.peek(regs::SII_CONTROL + 1) & 0x40, 0x40);
    sii_command(&mut e, 0x01, 0x02, 0x04);
    assert_eq!(e.peek(regs::SII_CONTROL + 1), 0x82);
    assert_eq!(e.eeprom()[8..10], [0x34, 0x12]);
    e.begin_frame(10_000_000);
    // Reload with the checksum no longer matching: checksum error and "not loaded"
    // (0x0502 bits 11/12), DL status bit 0 clear, 0x0012 keeps its value.
    sii_command(&mut e, 0, 0x04, 0);
    assert_eq!(e.peek(regs::STATION_ALIAS), 0);
    assert_eq!(
        e.peek(regs::SII_CONTROL + 1) & (SII_CHECKSUM_ERROR | SII_NOT_LOADED),
        SII_CHECKSUM_ERROR | SII_NOT_LOADED
    );
    assert_eq!(e.peek(regs::DL_STATUS) & 0x01, 0, "EEPROM not loaded");
    e.begin_frame(20_000_000);
    assert_eq!(e.peek(regs::SII_CONTROL + 1) & 0x87, 0);
    // With the checksum (word 7) fixed the reload takes, but the alias is only taken
    // over at the first load after power-on (ESC datasheet section II v3.3 2.2.2).
    write_eeprom_checksum(&mut e);
    e.begin_frame(30_000_000);
    sii_command(&mut e, 0, 0x04, 0);
    assert_eq!(
        e.peek(regs::SII_CONTROL + 1) & (SII_CHECKSUM_ERROR | SII_NOT_LOADED),
        0
    );
    assert_eq!(e.peek(regs::DL_STATUS) & 0x01, 1, "EEPROM loaded");
    assert_eq!(e.peek(regs::STATION_ALIAS), 0, "not at a reload");
    e.power_cycle(40_000_000);
    assert_eq!(
        [e.peek(regs::STATION_ALIAS), e.peek(regs::STATION_ALIAS + 1)],
        [0x34, 0x12],
        "at the first load after power-on"
    );
}

#[test]
fn a_configuration_area_with_a_bad_checksum_is_not_loaded() {
    // The blank image's words 0..2 hold 0x004F, 0x0000, 0xDCCF and its checksum does not
    // match: PDI control, PDI configuration, pulse length and alias keep their reset
    // value 0 (ESC datasheet section II v3.3 2.2.2, 2.6, 2.15.4.2), 0x0502 shows the
    // checksum error and "not loaded", DL status bit 0 "EEPROM not loaded".
    let raw = std::fs::read(format!(
        "{}/../../shared/testdata/eeprom/empty-eeprom.bin",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("blank image");
    let s = crate::sii::Sii::parse_allow_blank(raw).expect("accepted");
    let mut e = Esc::new(
        EscConfig::for_sii(&s),
        s,
        Box::new(BasicApp::with_layout(vec![])),
    );
    for (reg, len) in [
        (regs::PDI_CONTROL, 2),
        (regs::PDI_CONFIG, 2),
        (regs::DC_SYNC_PULSE_LENGTH, 2),
        (regs::STATION_ALIAS, 2),
    ] {
        let mut b = vec![0xEEu8; len];
        assert!(e.read(reg, &mut b, ReadMode::Replace));
        assert_eq!(b, vec![0; len], "register 0x{reg:04X}");
    }
    assert_eq!(
        e.peek(regs::SII_CONTROL + 1) & (SII_CHECKSUM_ERROR | SII_NOT_LOADED),
        SII_CHECKSUM_ERROR | SII_NOT_LOADED
    );
    assert_eq!(e.peek(regs::DL_STATUS) & 0x03, 0);
    // A reload does not change that.
    e.begin_frame(0);
    sii_command(&mut e, 0, 0x04, 0);
    e.begin_frame(10_000_000);
    assert_eq!(
        [e.peek(0x0982), e.peek(0x0983)],
        [0, 0],
        "pulse length still 0"
    );
    assert_eq!(
        e.peek(regs::SII_CONTROL + 1),
        SII_CHECKSUM_ERROR | SII_NOT_LOADED
    );
}

/// Reads `words` words of the EEPROM from word 0 through the SII interface as a master
/// does (ETG.1000.4 table 48): address and read command into 0x0502..0x0507, wait until
/// busy (0x0502 bit 15) clears, take 4 or 8 bytes from 0x0508 as 0x0502 bit 6 says.
fn read_eeprom_through_registers(e: &mut Esc, words: usize, now: &mut u64) -> Vec<u8> {
    let mut ctl = [0u8; 2];
    assert!(e.read(regs::SII_CONTROL, &mut ctl, ReadMode::Replace));
    let chunk = if ctl[0] & 0x40 != 0 { 8 } else { 4 };
    let mut out = Vec::with_capacity(2 * words + chunk);
    while out.len() < 2 * words {
        let addr = (out.len() / 2) as u32;
        sii_command(e, 0, SII_CMD_READ, addr);
        assert_eq!(
            e.peek(regs::SII_CONTROL + 1) & SII_BUSY,
            SII_BUSY,
            "busy at {addr}"
        );
        *now += 1_000_000;
        e.advance(*now);
        let mut status = [0u8; 2];
        assert!(e.read(regs::SII_CONTROL, &mut status, ReadMode::Replace));
        assert_eq!(
            status[1] & (SII_BUSY | SII_COMMAND_ERROR),
            0,
            "done at {addr}"
        );
        let mut data = vec![0u8; chunk];
        assert!(e.read(regs::SII_DATA, &mut data, ReadMode::Replace));
        out.extend_from_slice(&data);
    }
    out.truncate(2 * words);
    out
}

#[test]
fn every_eeprom_image_reads_back_through_the_sii_registers() {
    let dir = format!(
        "{}/../../shared/testdata/eeprom",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut images: Vec<_> = std::fs::read_dir(&dir)
        .expect("eeprom directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    images.sort();
    assert!(images.len() >= 15, "{images:?}");
    for path in images {
        let raw = std::fs::read(&path).expect("image");
        let name = path.display().to_string();
        let s = Sii::parse_allow_blank(raw.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The terminal's own chip (every chip here reads 8 bytes), and the same chip
        // reading 4 bytes (0x0502 bit 6 clear).
        let chip = EscConfig::for_sii(&s).chip;
        let four = EscChip {
            sii_control_reset: chip.sii_control_reset & !0x40,
            ..chip
        };
        for (chip, size) in [(chip, 8), (four, 4)] {
            let config = EscConfig {
                chip,
                ..EscConfig::for_sii(&s)
            };
            let app = Box::new(BasicApp::with_layout(vec![]));
            let mut e = Esc::new(config, s.clone(), app);
            assert_eq!(e.peek(regs::SII_CONTROL) & 0x40 != 0, size == 8, "{name}");
            // The whole image and 16 words past its end.
            let words = raw.len().div_ceil(2) + 16;
            let mut now = 0;
            let read = read_eeprom_through_registers(&mut e, words, &mut now);
            assert_eq!(read[..raw.len()], raw[..], "{name}, {size}-byte reads");
            // Past the end of the file (where the truncated images stop) the EEPROM reads
            // erased, as the complete images do after their end category.
            assert!(
                read[raw.len()..].iter().all(|b| *b == 0xFF),
                "{name}, {size}-byte reads: {:02X?}",
                &read[raw.len()..]
            );
        }
    }
}

/// The SYNC pulse length a master reads at 0x0982 (working counter and value).
fn read_pulse_length(e: &mut Esc) -> Option<u16> {
    let mut b = [0u8; 2];
    e.read(regs::DC_SYNC_PULSE_LENGTH, &mut b, ReadMode::Replace)
        .then(|| u16::from_le_bytes(b))
}

#[test]
fn sync_pulse_length_comes_from_sii_word_2() {
    // SII word 2, "sync impulse length" in 10 ns units, as the images hold it: the
    // EL3164/EL7031/EL7041 20 µs, the ClipX 10 µs, the EK1814 100 ns, the EL2262 160 ns;
    // 0 (acknowledge mode) in the others.
    let expected = [
        ("ek1814", 0x000A),
        ("el2262", 0x0010),
        ("el3164", 0x07D0),
        ("el7031", 0x07D0),
        ("el7041", 0x07D0),
        ("hbm-clipx", 0x03E8),
        ("ek1100", 0),
        ("el2889", 0),
        ("el4104", 0),
        ("akd", 0),
    ];
    for (name, pulse) in expected {
        let s = sii(name);
        assert_eq!(s.word(2), pulse, "{name}: SII word 2");
        let mut e = Esc::new(
            EscConfig::for_sii(&s),
            s,
            Box::new(BasicApp::with_layout(vec![])),
        );
        assert_eq!(read_pulse_length(&mut e), Some(pulse), "{name}");
        // Read-only over EtherCAT: a write neither counts nor changes it.
        assert!(
            !e.write(regs::DC_SYNC_PULSE_LENGTH, &[0x34, 0x12]),
            "{name}"
        );
        assert_eq!(read_pulse_length(&mut e), Some(pulse), "{name}");
    }
    // The EL2828's ESC has receive times only: no SYNC unit, no register.
    let s = sii("el2828");
    let mut e = Esc::new(
        EscConfig::for_sii(&s),
        s,
        Box::new(BasicApp::with_layout(vec![])),
    );
    assert_eq!(read_pulse_length(&mut e), None);
}

#[test]
fn sync_pulse_length_follows_eeprom_reload_and_power_cycle() {
    let s = sii("el7041");
    let mut e = Esc::new(
        EscConfig::for_sii(&s),
        s,
        Box::new(BasicApp::with_layout(vec![])),
    );
    assert_eq!(read_pulse_length(&mut e), Some(2000));
    // The master writes SII word 2 = 500 (5 µs): the register keeps the old value until
    // the ESC reloads its configuration, and a reload only takes once the checksum
    // (word 7) matches again.
    e.begin_frame(0);
    assert!(e.write(regs::SII_DATA, &500u16.to_le_bytes()));
    sii_command(&mut e, 0x01, 0x02, 0x02);
    e.begin_frame(10_000_000);
    assert_eq!(e.eeprom()[4..6], 500u16.to_le_bytes());
    assert_eq!(read_pulse_length(&mut e), Some(2000), "not before a reload");
    sii_command(&mut e, 0, 0x04, 0);
    assert_eq!(
        read_pulse_length(&mut e),
        Some(2000),
        "bad checksum: no load"
    );
    e.begin_frame(20_000_000);
    write_eeprom_checksum(&mut e);
    e.begin_frame(30_000_000);
    sii_command(&mut e, 0, 0x04, 0);
    assert_eq!(read_pulse_length(&mut e), Some(500), "EEPROM reload");
    // Power-up loads it from the EEPROM as it is now.
    e.begin_frame(40_000_000);
    e.power_cycle(40_000_000);
    assert_eq!(read_pulse_length(&mut e), Some(500), "power cycle");
}

#[test]
fn complete_images_are_erased_after_their_last_category() {
    // The evidence for reading 0xFFFF past the end of a truncated image: in every image
    // with an end marker (category type 0xFFFF, ETG.1000.6 table 19), all bytes after it
    // are 0xFF, as the EEPROM left them.
    for name in [
        "ek1100",
        "el2004",
        "el2262",
        "el2828",
        "el2889",
        "akd",
        "hbm-clipx",
    ] {
        let raw = sii(name).raw;
        let word = |i: usize| u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]);
        let mut i = 0x40;
        while word(i) != 0xFFFF {
            i += 2 + usize::from(word(i + 1));
        }
        let tail = &raw[2 * (i + 1)..];
        assert!(tail.len() > 300, "{name}");
        assert!(tail.iter().all(|b| *b == 0xFF), "{name}");
    }
}

#[test]
fn fmmu_bitwise_and_partial_mapping() {
    let s = sii("el2004");
    let mut e = Esc::new(
        EscConfig::for_sii(&s),
        s,
        Box::new(BasicApp::with_layout(vec![])),
    );
    // FMMU0: logical 0x100 bits 4..7 -> physical 0x1000 bits 0..3, write.
    let f0 = [0x00, 0x01, 0, 0, 1, 0, 4, 7, 0x00, 0x10, 0, 2, 1, 0, 0, 0];
    assert!(e.write(0x0600, &f0));
    // FMMU1: logical 0x100 bits 0..3 -> physical 0x1001 bits 4..7, read.
    let f1 = [0x00, 0x01, 0, 0, 1, 0, 0, 3, 0x01, 0x10, 4, 1, 1, 0, 0, 0];
    assert!(e.write(0x0610, &f1));
    assert!(e.write(0x1001, &[0xA0]));
    let mut d = [0x5Cu8];
    let wkc = e.logical(LogicalCommand::ReadWrite, 0x100, &mut d);
    assert_eq!(wkc, 3);
    assert_eq!(
        e.peek(0x1000),
        0x05,
        "upper nibble 0x5 written to bits 0..3"
    );
    assert_eq!(d, [0x5A], "bits 0..3 read from 0x1001 bits 4..7");
    // A datagram not reaching the FMMU window.
    let mut d = [0u8; 4];
    assert_eq!(e.logical(LogicalCommand::ReadWrite, 0x101, &mut d), 0);
    // LWR counts 1, LRD only the read FMMU.
    assert_eq!(e.logical(LogicalCommand::Write, 0x0FF, &mut [0, 0xF0]), 1);
    assert_eq!(e.peek(0x1000), 0x0F);
    assert_eq!(e.logical(LogicalCommand::Read, 0x100, &mut [0]), 1);
}

#[test]
fn byte_wise_fmmus_ignore_the_bit_fields() {
    // The FMMUs of fmmu_bitwise_and_partial_mapping on an ESC whose features bit 0 says
    // its FMMUs work byte-wise (ETG.1000.4 table 32): start and stop bits are ignored,
    // whole bytes move.
    let s = sii("el2004");
    let chip = EscChip {
        features: EscChip::ET1200.features | 0x0001,
        ..EscChip::ET1200
    };
    let mut e = Esc::new(
        EscConfig {
            chip,
            ..EscConfig::for_sii(&s)
        },
        s,
        Box::new(BasicApp::with_layout(vec![])),
    );
    let f0 = [0x00, 0x01, 0, 0, 1, 0, 4, 7, 0x00, 0x10, 0, 2, 1, 0, 0, 0];
    assert!(e.write(0x0600, &f0));
    let f1 = [0x00, 0x01, 0, 0, 1, 0, 0, 3, 0x01, 0x10, 4, 1, 1, 0, 0, 0];
    assert!(e.write(0x0610, &f1));
    assert!(e.write(0x1001, &[0xA0]));
    let mut d = [0x5Cu8];
    assert_eq!(e.logical(LogicalCommand::ReadWrite, 0x100, &mut d), 3);
    assert_eq!(e.peek(0x1000), 0x5C, "the whole byte written");
    assert_eq!(d, [0xA0], "the whole byte read");
    // A window of several bytes maps byte for byte.
    let f2 = [0x00, 0x02, 0, 0, 3, 0, 3, 5, 0x10, 0x10, 6, 2, 1, 0, 0, 0];
    assert!(e.write(0x0620, &f2));
    assert_eq!(
        e.logical(LogicalCommand::Write, 0x1FF, &mut [9, 1, 2, 3, 4]),
        1
    );
    assert_eq!([e.peek(0x1010), e.peek(0x1011), e.peek(0x1012)], [1, 2, 3]);
}

#[test]
fn partial_fmmu_never_completes_an_output_buffer() {
    let s = sii("el2004");
    let mut e = Esc::new(
        EscConfig::for_sii(&s),
        s,
        Box::new(BasicApp::with_layout(vec![])),
    );
    assert!(e.write(0x0800, &sm_bytes(0x1000, 2, 0x64)));
    // The FMMU covers only the first byte of the 2-byte SM.
    let f0 = [0, 0, 0, 0, 1, 0, 0, 7, 0x00, 0x10, 0, 2, 1, 0, 0, 0];
    assert!(e.write(0x0600, &f0));
    for v in 1..5u8 {
        assert_eq!(e.logical(LogicalCommand::ReadWrite, 0, &mut [v]), 2);
    }
    assert_eq!(
        e.sm_buffer(0),
        Some(&[0, 0][..]),
        "never visible without the last byte"
    );
    assert_eq!(e.peek(regs::WD_STATUS) & 1, 1);
}

/// Terminal `name` without firmware whose DC clock reads `start_ns` at bus time 0 and
/// drifts by `drift_ppm`.
fn clocked_terminal(name: &str, start_ns: u64, drift_ppm: f64) -> Esc {
    let s = sii(name);
    let mut cfg = EscConfig::for_sii(&s);
    cfg.drift_ppm = drift_ppm;
    cfg.clock_start_ns = Some(start_ns);
    Esc::new(cfg, s, Box::new(BasicApp::with_layout(vec![])))
}

#[test]
fn dc_drift_offset_and_latch() {
    let mut e = clocked_terminal("el2889", 5_000, 100.0);
    e.begin_frame(1_000_000_000);
    let mut t = [0u8; 8];
    assert!(e.read(regs::DC_SYSTEM_TIME, &mut t, ReadMode::Replace));
    assert_eq!(u64::from_le_bytes(t), 1_000_000_000 + 100_000 + 5_000);
    assert!(e.write(regs::DC_SYSTEM_OFFSET, &(-5_000i64).to_le_bytes()));
    e.read(regs::DC_SYSTEM_TIME, &mut t, ReadMode::Replace);
    assert_eq!(u64::from_le_bytes(t), 1_000_100_000);
    // A read gives the time when the frame passed the reference clock: less the delay.
    assert!(e.write(regs::DC_SYSTEM_DELAY, &700u32.to_le_bytes()));
    e.read(regs::DC_SYSTEM_TIME, &mut t, ReadMode::Replace);
    assert_eq!(u64::from_le_bytes(t), 1_000_100_000 - 700);
    // A write is compared with that same time (here equal: no difference) and leaves it
    // in the register.
    assert!(e.write(
        regs::DC_SYSTEM_TIME,
        &(1_000_100_000u64 - 700).to_le_bytes()
    ));
    assert_eq!(difference_register(&mut e), (0, true));
    let held: Vec<u8> = (0..8).map(|k| e.peek(regs::DC_SYSTEM_TIME + k)).collect();
    assert_eq!(held, (1_000_100_000u64 - 700).to_le_bytes());
    assert!(e.write(regs::DC_SYSTEM_DELAY, &0u32.to_le_bytes()));
    // Latch: port 0 time (32 bit) and the EPU's 64-bit time.
    assert!(e.write(regs::DC_RECV_TIME_PORT0, &[0; 4]));
    let mut p = [0u8; 16];
    e.read(regs::DC_RECV_TIME_PORT0, &mut p, ReadMode::Replace);
    assert_eq!(u32::from_le_bytes([p[0], p[1], p[2], p[3]]), 1_000_105_000);
    assert_eq!(
        &p[4..8],
        b"hoff",
        "port 1 without link keeps its reset pattern"
    );
}

/// The system time difference register 0x092C: magnitude and bit 31 (local copy greater
/// than or equal to the received time, ESC datasheet section II v3.3 2.15.2.4).
fn difference_register(e: &mut Esc) -> (u32, bool) {
    let mut b = [0u8; 4];
    assert!(e.read(regs::DC_SYSTEM_DIFF, &mut b, ReadMode::Replace));
    let v = u32::from_le_bytes(b);
    (v & 0x7FFF_FFFF, v & 0x8000_0000 != 0)
}

fn speed_counter_diff(e: &mut Esc) -> i16 {
    let mut b = [0u8; 2];
    assert!(e.read(regs::DC_SPEED_COUNTER_DIFF, &mut b, ReadMode::Replace));
    i16::from_le_bytes(b)
}

#[test]
fn speed_counter_diff_means_what_the_datasheet_says() {
    // Deviation = diff / (5 · (start + diff + 2) · (start − diff + 2)) (ESC datasheet
    // section II table 105), within ±(start − 0x7F).
    assert_eq!(speed_counter_speed(0, 0x1000), 0.0);
    let one = speed_counter_speed(1, 0x1000);
    assert!((one - 1.0 / (5.0 * 4099.0 * 4097.0)).abs() < 1e-18, "{one}");
    let max = speed_counter_speed(0x1000 - 0x7F, 0x1000);
    assert!((max * 1e6 - 762.8).abs() < 0.1, "{max}");
    assert_eq!(speed_counter_speed(-(0x1000 - 0x7F), 0x1000), -max);
    // A smaller start adjusts in coarser steps.
    assert!(speed_counter_speed(1, 0x0400) > 15.0 * one);
}

#[test]
fn speed_counter_start_outside_its_valid_range_is_taken_as_the_nearest_valid_value() {
    // Valid values 0x0080..=0x3FFF (ESC datasheet section II v3.3 2.15.2.5); the speed
    // counter diff stays within ±(start − 0x7F) (2.15.2.6). A clock 10 ms ahead drives
    // the diff to its limit.
    for (written, start) in [
        (0x7FFFu16, 0x3FFFi32),
        (0xFFFF, 0x3FFF),
        (0x4000, 0x3FFF),
        (0x0010, 0x0080),
        (0x0000, 0x0080),
        (0x1000, 0x1000),
    ] {
        let mut e = clocked_terminal("el2889", 0, 0.0);
        e.begin_frame(1_000_000_000);
        assert!(e.write(regs::DC_SPEED_COUNTER_START, &written.to_le_bytes()));
        assert!(e.write(regs::DC_SYSTEM_TIME, &990_000_000u64.to_le_bytes()));
        assert_eq!(
            i32::from(speed_counter_diff(&mut e)),
            -(start - 0x7F),
            "0x0930 = 0x{written:04X}"
        );
    }
    assert_eq!(
        speed_counter_speed(1, 0x7FFF),
        speed_counter_speed(1, 0x3FFF)
    );
}

#[test]
fn time_control_loop_removes_phase_and_drift_over_compares() {
    // A terminal whose oscillator runs 100 ppm fast, 100 µs ahead of a reference clock
    // that keeps bus time; the reference's time arrives once a millisecond.
    let mut e = clocked_terminal("el2889", 0, 100.0);
    e.begin_frame(1_000_000_000);
    assert!(e.write(regs::DC_SYSTEM_OFFSET, &0u64.to_le_bytes()));
    assert_eq!(e.system_time(1_000_000_000), 1_000_100_000);
    let mut now = 1_000_000_000u64;
    let compare = |e: &mut Esc, now: u64| {
        e.begin_frame(now);
        assert!(e.write(regs::DC_SYSTEM_TIME, &now.to_le_bytes()));
    };
    compare(&mut e, now);
    // 0x092C holds the difference, local copy ahead (bit 31 set); the loop slows the
    // clock down as far as it can (−(start − 0x7F)).
    assert_eq!(difference_register(&mut e), (100_000, true));
    assert_eq!(speed_counter_diff(&mut e), -(0x1000 - 0x7F));
    // No phase step: the loop only changes the clock's speed, so right after the compare
    // the time is still ahead.
    assert_eq!(e.system_time(now), 1_000_100_000);
    for _ in 0..2000 {
        now += 1_000_000;
        compare(&mut e, now);
    }
    let (diff, _) = difference_register(&mut e);
    assert!(diff < 5, "{diff} ns after two seconds of compares");
    assert!(e.system_time(now).abs_diff(now) < 5);
    // The speed counter diff now cancels the 100 ppm.
    let speed = speed_counter_speed(i32::from(speed_counter_diff(&mut e)), 0x1000);
    assert!((speed * 1e6 + 100.0).abs() < 0.05, "{speed}");
    // A clock behind the reference clears bit 31.
    assert!(e.write(regs::DC_SYSTEM_OFFSET, &(-2_000i64).to_le_bytes()));
    compare(&mut e, now);
    let (diff, not_behind) = difference_register(&mut e);
    assert!(!not_behind && diff > 0, "{diff} {not_behind}");
    // Writing the speed counter start resets the filters, 0x092C and 0x0932; the time
    // keeps what the loop did so far.
    let before = e.system_time(now);
    assert!(e.write(regs::DC_SPEED_COUNTER_START, &0x1000u16.to_le_bytes()));
    assert_eq!(difference_register(&mut e), (0, false));
    assert_eq!(speed_counter_diff(&mut e), 0);
    assert_eq!(e.system_time(now), before);
}

#[test]
fn system_time_difference_sets_bit_31_when_the_local_copy_is_not_behind() {
    // ESC datasheet section II v3.3 2.15.2.4: bit 31 = 0 "local copy of system time less
    // than received system time", 1 "greater than or equal to".
    let read = |e: &mut Esc| {
        let mut b = [0u8; 4];
        assert!(e.read(regs::DC_SYSTEM_DIFF, &mut b, ReadMode::Replace));
        u32::from_le_bytes(b)
    };
    let now = 1_000_000_000u64;
    for (local_minus_received, expected) in [
        (0i64, 0x8000_0000u32),
        (250, 0x8000_0000 | 250),
        (-250, 250),
    ] {
        let mut e = clocked_terminal("el2889", 0, 0.0);
        e.begin_frame(now);
        assert_eq!(read(&mut e), 0, "reset value before any compare");
        let received = now.wrapping_add_signed(-local_minus_received);
        assert!(e.write(regs::DC_SYSTEM_TIME, &received.to_le_bytes()));
        assert_eq!(
            read(&mut e),
            expected,
            "local copy − received = {local_minus_received} ns"
        );
    }
}

#[test]
fn power_cycle_restarts_the_local_clock_from_zero() {
    // Powered up 5 µs before bus time 0, running 100 ppm fast.
    let mut e = clocked_terminal("el2889", 5_000, 100.0);
    e.begin_frame(1_000_000_000);
    assert_eq!(e.local_time(1_000_000_000), 1_000_105_000);
    e.power_cycle(1_000_000_000);
    assert_eq!(e.local_time(1_000_000_000), 0);
    // 10 ms later: 10 ms and its 100 ppm, read over EtherCAT as the system time (offset
    // and delay back at 0) and latched as the port 0 receive time.
    let later = 1_010_000_000;
    e.begin_frame(later);
    assert_eq!(read64(&mut e, regs::DC_SYSTEM_TIME), 10_001_000);
    assert!(e.write(regs::DC_RECV_TIME_PORT0, &[0; 4]));
    let mut p = [0u8; 4];
    assert!(e.read(regs::DC_RECV_TIME_PORT0, &mut p, ReadMode::Replace));
    assert_eq!(u32::from_le_bytes(p), 10_001_000);
}

#[test]
fn power_cycle_resets_registers() {
    let (mut e, seen) = firmware_terminal();
    assert!(e.write(regs::STATION_ADDRESS, &[0x05, 0x10]));
    to_safe_op(&mut e);
    e.power_cycle(5);
    assert_eq!(e.station_address(), 0);
    assert_eq!(al_status(&mut e), (0x01, 0));
    assert!(e.sm_configs().iter().all(|s| !s.enabled()));
    assert!(seen.lock().expect("seen").safe.contains(&5));
}

#[test]
fn error_counters_clear_on_write() {
    let (mut e, _) = firmware_terminal();
    e.count_rx_error(1);
    assert_eq!(e.peek(0x0302), 1);
    assert!(e.write(0x0300, &[0; 8]));
    assert_eq!(e.peek(0x0302), 0);
}

#[test]
fn mailbox_firmware_latency() {
    let s = sii("el4104");
    let mut cfg = EscConfig::for_sii(&s);
    cfg.mailbox_latency_ns = 500_000;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = EchoApp {
        basic: BasicApp::with_layout(vec![]),
        seen: seen.clone(),
        next_input: 0,
    };
    let mut e = Esc::new(cfg, s, Box::new(app));
    configure_mailbox(&mut e);
    assert_eq!(request(&mut e, 2), (0x02, 0));
    e.begin_frame(1_000_000);
    let mut msg = vec![0u8; 0x80];
    msg[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x13]);
    msg[6..8].copy_from_slice(&[7, 8]);
    assert!(e.write(0x1000, &msg));
    assert_eq!(e.peek(0x0805) & 0x09, 0x09, "SM0 full, not yet taken");
    assert!(
        !e.write(0x1000, &msg),
        "a full mailbox refuses the next write"
    );
    e.begin_frame(1_400_000);
    assert_eq!(e.peek(0x080D) & 0x08, 0, "no reply yet");
    e.begin_frame(1_500_000);
    assert_eq!(e.peek(0x0805), 0x02);
    assert_eq!(e.peek(0x080D), 0x09);
    assert_eq!(seen.lock().expect("seen").mailbox.len(), 1);
}

#[test]
fn hostile_configurations_touch_nothing_outside_the_esc() {
    let (mut e, _) = firmware_terminal();
    to_safe_op(&mut e);
    // An input SM reaching past the 1 KiB of RAM (0x1000..0x1400).
    assert!(e.write(0x0818, &sm_bytes(0x13F0, 0x100, 0x20)));
    let mut b = [0u8; 0x20];
    assert!(e.read(0x13F0, &mut b, ReadMode::Replace));
    // An EEPROM write far beyond any EEPROM.
    assert!(e.write(regs::SII_DATA, &[1, 2]));
    sii_command(&mut e, 0x01, 0x02, 0x7FFF_FFFF);
    assert_eq!(
        e.peek(regs::SII_CONTROL + 1) & SII_COMMAND_ERROR,
        SII_COMMAND_ERROR
    );
    assert!(e.eeprom().len() <= 128 * 1024);
    // FMMUs with zero length, huge lengths and wrapping addresses.
    let f = [
        0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 3, 1, 0xF0, 0xFF, 5, 3, 1, 0, 0, 0,
    ];
    assert!(e.write(0x0600, &f));
    // The window maps physical 0xFFF0.., beyond the ESC's memory: nothing is read or
    // written, the frame's data stays as it came, and the window does not wrap to 0.
    let mut d = vec![0x5Au8; 64];
    assert_eq!(e.logical(LogicalCommand::ReadWrite, 0xFFFF_FFE0, &mut d), 0);
    assert_eq!(d, vec![0x5A; 64]);
    assert_eq!(e.logical(LogicalCommand::ReadWrite, 0, &mut d), 0);
    assert_eq!(d, vec![0x5A; 64]);
    // Reads and writes running off the end of the address space: no byte exists there.
    let mut big = vec![0x77u8; 2048];
    assert!(!e.read(0xFC00, &mut big, ReadMode::Replace));
    assert_eq!(big, vec![0x77; 2048]);
    assert!(!e.write(0xFC00, &big));
    // The terminal still works: SAFE-OP, and its RAM reads back what was written.
    assert_eq!(e.peek(0x0130) & 0x0F, 0x04);
    assert!(e.write(0x1200, &[1, 2, 3]));
    let mut back = [0u8; 3];
    assert!(e.read(0x1200, &mut back, ReadMode::Replace));
    assert_eq!(back, [1, 2, 3]);
}

/// A terminal whose system time is the bus time (clock started at 0, no drift, offset
/// 0), so SYNC times can be written as bus times.
fn terminal_on_bus_time(name: &str) -> Esc {
    clocked_terminal(name, 0, 0.0)
}

fn read64(e: &mut Esc, addr: u16) -> u64 {
    let mut b = [0u8; 8];
    assert!(e.read(addr, &mut b, ReadMode::Replace), "0x{addr:04X}");
    u64::from_le_bytes(b)
}

fn read8(e: &mut Esc, addr: u16) -> u8 {
    let mut b = [0u8; 1];
    assert!(e.read(addr, &mut b, ReadMode::Replace), "0x{addr:04X}");
    b[0]
}

/// What the SYNC registers show at bus time `now`: next SYNC0 (0x0990), next SYNC1
/// (0x0998), SYNC0 and SYNC1 status (0x098E, 0x098F), and the pulses so far.
fn sync_at(e: &mut Esc, now: u64) -> (u64, u64, u8, u8, SyncPulses) {
    e.begin_frame(now);
    (
        read64(e, regs::DC_START_TIME),
        read64(e, regs::DC_NEXT_SYNC1),
        read8(e, regs::DC_SYNC0_STATUS),
        read8(e, regs::DC_SYNC1_STATUS),
        e.sync_pulses(),
    )
}

/// Programs the SYNC unit as a master does: off, cycle times, start time, activation.
/// Returns the pulses given until it was switched off.
fn program_sync(
    e: &mut Esc,
    now: u64,
    start: u64,
    sync0: u32,
    sync1: u32,
    activation: u8,
) -> SyncPulses {
    e.begin_frame(now);
    assert!(e.write(regs::DC_SYNC_ACTIVATION, &[0]));
    let before = e.sync_pulses();
    let mut cycles = sync0.to_le_bytes().to_vec();
    cycles.extend_from_slice(&sync1.to_le_bytes());
    assert!(e.write(regs::DC_SYNC0_CYCLE, &cycles));
    assert!(e.write(regs::DC_START_TIME, &start.to_le_bytes()));
    assert!(e.write(regs::DC_SYNC_ACTIVATION, &[activation]));
    before
}

fn pulses(sync0: u64, sync1: u64) -> SyncPulses {
    SyncPulses { sync0, sync1 }
}

const MS: u64 = 1_000_000;
const US: u64 = 1_000;

#[test]
fn sync0_and_sync1_pulse_over_time() {
    // The EL7041's SII sets a pulse length of 2000 × 10 ns = 20 µs.
    let mut e = terminal_on_bus_time("el7041");
    // Start at 12 ms, SYNC0 every 1 ms, SYNC1 300 µs after each SYNC0 pulse (shorter
    // than the cycle), both on: AssignActivate 0x0700.
    program_sync(&mut e, 10 * MS, 12 * MS, MS as u32, 300_000, 0x07);
    assert_eq!(
        sync_at(&mut e, 10 * MS),
        (12 * MS, 12 * MS + 300 * US, 0, 0, pulses(0, 0)),
        "first pulses ahead"
    );
    assert_eq!(
        sync_at(&mut e, 12 * MS),
        (13 * MS, 12 * MS + 300 * US, 1, 0, pulses(1, 0)),
        "SYNC0 at the start time, active for its pulse length"
    );
    assert_eq!(sync_at(&mut e, 12 * MS + 19 * US).2, 1);
    assert_eq!(
        sync_at(&mut e, 12 * MS + 20 * US),
        (13 * MS, 12 * MS + 300 * US, 0, 0, pulses(1, 0)),
        "20 µs later the pulse is over"
    );
    assert_eq!(
        sync_at(&mut e, 12 * MS + 300 * US),
        (13 * MS, 13 * MS + 300 * US, 0, 1, pulses(1, 1)),
        "SYNC1 300 µs after SYNC0"
    );
    assert_eq!(
        sync_at(&mut e, 14 * MS + 500 * US),
        (15 * MS, 15 * MS + 300 * US, 0, 0, pulses(3, 3)),
        "12, 13, 14 ms and 12.3, 13.3, 14.3 ms"
    );
    // A start time written while cyclic operation runs counts and is kept for the next
    // activation, but 0x0990 goes on showing the next SYNC0 pulse.
    assert!(e.write(regs::DC_START_TIME, &(30 * MS).to_le_bytes()));
    assert_eq!(read64(&mut e, regs::DC_START_TIME), 15 * MS);
    // Switched off: no more pulses, no status.
    assert!(e.write(regs::DC_SYNC_ACTIVATION, &[0]));
    let (_, _, s0, s1, p) = sync_at(&mut e, 20 * MS);
    assert_eq!((s0, s1, p), (0, 0, pulses(3, 3)));
    // Switched on again without a new write: the start time written while it ran is
    // used ("register value is used when 0x0981[0] has a transition to 1", ESC
    // datasheet section II v3.3 2.15.4.9).
    assert!(e.write(regs::DC_SYNC_ACTIVATION, &[0x07]));
    let (next0, _, _, _, p) = sync_at(&mut e, 29 * MS);
    assert_eq!((next0, p), (30 * MS, pulses(3, 3)));
    let (next0, _, _, _, p) = sync_at(&mut e, 31 * MS + 500 * US);
    assert_eq!(
        (next0, p),
        (32 * MS, pulses(5, 5)),
        "30, 31 ms and 30.3, 31.3 ms"
    );
}

#[test]
fn a_start_time_written_in_parts_while_running_is_used_at_reactivation() {
    let mut e = terminal_on_bus_time("el7041");
    program_sync(&mut e, 10 * MS, 12 * MS, MS as u32, 0, 0x03);
    assert_eq!(sync_at(&mut e, 12 * MS + 500 * US).4, pulses(1, 0));
    // The master writes the low half, then the high half of a start time far ahead,
    // in separate frames, while the unit runs.
    let start = (1u64 << 32) + 7 * MS;
    assert!(e.write(regs::DC_START_TIME, &(start as u32).to_le_bytes()));
    assert!(e.write(
        regs::DC_START_TIME + 4,
        &((start >> 32) as u32).to_le_bytes()
    ));
    assert_eq!(read64(&mut e, regs::DC_START_TIME), 13 * MS, "next pulse");
    assert!(e.write(regs::DC_SYNC_ACTIVATION, &[0]));
    assert!(e.write(regs::DC_SYNC_ACTIVATION, &[0x03]));
    let (next0, _, _, _, p) = sync_at(&mut e, 20 * MS);
    assert_eq!((next0, p), (start, pulses(1, 0)), "the written start time");
}

#[test]
fn hostile_sync_settings_neither_overflow_nor_run_faster_than_the_minimum_cycle() {
    // SYNC0 cycle 1 ns, below the 60 ns minimum for cyclic operation (ESC datasheet
    // section II v3.3 2.15.4.11): it runs at 60 ns.
    let mut e = terminal_on_bus_time("el7041");
    program_sync(&mut e, 10 * MS, 10 * MS + 100, 1, 0, 0x03);
    assert_eq!(
        read64(&mut e, regs::DC_SYNC0_CYCLE) as u32,
        1,
        "kept as written"
    );
    let (next0, _, _, _, p) = sync_at(&mut e, 10 * MS + 700);
    assert_eq!(p.sync0, 11, "pulses at +100, +160, ..., +700 ns");
    assert_eq!(next0, 10 * MS + 760);
    // The offset stepped forward by 2^62 ns again and again: ~10^17 pulses each time; the
    // count saturates instead of overflowing.
    let mut now = 10 * MS + 700;
    let mut offset = 0u64;
    for _ in 0..300 {
        now += 1_000;
        offset = offset.wrapping_add(1 << 62);
        e.begin_frame(now);
        assert!(e.write(regs::DC_SYSTEM_OFFSET, &offset.to_le_bytes()));
    }
    e.begin_frame(now + 1_000);
    assert_eq!(e.sync_pulses().sync0, u64::MAX);
}

#[test]
fn sync1_cycle_time_counts_from_the_sync0_pulse_that_starts_it() {
    // ESC datasheet section I 9.2.3.5, figure 31: a SYNC0 pulse starts the SYNC1 delay
    // unless one is running; SYNC1 comes the SYNC1 cycle time after it.
    let mut e = terminal_on_bus_time("el7041");
    // Equal to the SYNC0 cycle: SYNC1 with every second SYNC0 pulse (13, 15, 17 ms).
    program_sync(&mut e, 10 * MS, 12 * MS, MS as u32, MS as u32, 0x07);
    let (next0, next1, _, _, p) = sync_at(&mut e, 17 * MS + 500 * US);
    assert_eq!((next0, next1, p), (18 * MS, 19 * MS, pulses(6, 3)));
    // 2.5 cycles: SYNC1 with every third SYNC0 pulse, half a cycle after it
    // (14.5, 17.5, 20.5 ms after a start at 12 ms).
    let before = program_sync(
        &mut e,
        11 * MS + 17 * MS,
        12 * MS + 17 * MS,
        MS as u32,
        2_500_000,
        0x07,
    );
    let (next0, next1, _, _, p) = sync_at(&mut e, 21 * MS + 17 * MS);
    assert_eq!(
        (next0, next1),
        (22 * MS + 17 * MS, 23 * MS + 500 * US + 17 * MS)
    );
    assert_eq!(
        (p.sync0 - before.sync0, p.sync1 - before.sync1),
        (10, 3),
        "SYNC0 at 29..38 ms, SYNC1 at 31.5, 34.5, 37.5 ms"
    );
    // 0: SYNC1 reflects SYNC0.
    let before = program_sync(&mut e, 40 * MS, 41 * MS, MS as u32, 0, 0x07);
    let (next0, next1, s0, s1, p) = sync_at(&mut e, 44 * MS);
    assert_eq!((next0, next1, s0, s1), (45 * MS, 45 * MS, 1, 1));
    assert_eq!((p.sync0 - before.sync0, p.sync1 - before.sync1), (4, 4));
}

#[test]
fn sync_activation_bits_and_start_times_in_the_past() {
    let mut e = terminal_on_bus_time("el7041");
    // A start time already passed never fires: the 64-bit system time would have to come
    // round to it again. 0x0990 keeps showing that pending first pulse.
    program_sync(&mut e, 10 * MS, 9 * MS, MS as u32, 0, 0x07);
    assert_eq!(
        sync_at(&mut e, 30 * MS),
        (9 * MS, 9 * MS, 0, 0, pulses(0, 0)),
        "start time in the past"
    );
    // Cyclic operation without SYNC0 or SYNC1 generation: the unit runs (0x0990 shows the
    // next pulse) but no signal pulses.
    program_sync(&mut e, 30 * MS, 31 * MS, MS as u32, 0, 0x01);
    let (next0, _, s0, s1, p) = sync_at(&mut e, 33 * MS + 500 * US);
    assert_eq!((next0, s0, s1, p), (34 * MS, 0, 0, pulses(0, 0)));
    // SYNC1 only (0x05): SYNC1 pulses, SYNC0 does not.
    program_sync(&mut e, 40 * MS, 41 * MS, MS as u32, 0, 0x05);
    let (_, next1, s0, s1, p) = sync_at(&mut e, 43 * MS + 10 * US);
    assert_eq!((next1, s0, s1, p), (44 * MS, 0, 1, pulses(0, 3)));
    // SYNC0 set but not cyclic operation (0x02): nothing runs.
    let before = program_sync(&mut e, 50 * MS, 51 * MS, MS as u32, 0, 0x02);
    assert_eq!(before, pulses(0, 10), "SYNC1 at 41..50 ms");
    let (next0, _, _, _, p) = sync_at(&mut e, 60 * MS);
    assert_eq!(
        (next0, p),
        (51 * MS, before),
        "0x0990 holds what was written"
    );
    // Single shot (SYNC0 cycle 0): one pulse at the start time, then none.
    program_sync(&mut e, 60 * MS, 61 * MS, 0, 0, 0x03);
    let (next0, _, _, _, p) = sync_at(&mut e, 70 * MS);
    assert_eq!((next0, p), (61 * MS, pulses(1, 10)));
}

#[test]
fn sync_status_in_acknowledge_mode_stays_set() {
    // The EL2889's SII leaves the pulse length 0: acknowledge mode, where the signal stays
    // active until the PDI reads the status, and no simulated firmware does.
    let mut e = terminal_on_bus_time("el2889");
    program_sync(&mut e, 10 * MS, 12 * MS, MS as u32, 0, 0x03);
    assert_eq!(sync_at(&mut e, 11 * MS).2, 0);
    assert_eq!(sync_at(&mut e, 12 * MS + 500 * US).2, 1);
    assert_eq!(sync_at(&mut e, 20 * MS + 500 * US).2, 1);
    assert!(e.write(regs::DC_SYNC_ACTIVATION, &[0]));
    assert_eq!(
        read8(&mut e, regs::DC_SYNC0_STATUS),
        0,
        "cleared when switched off"
    );
}

#[test]
fn sync_follows_the_system_time_not_the_bus_time() {
    // A clock 100 ppm fast with an offset: the pulses come when its system time passes
    // them, and a power cycle stops the unit.
    let mut e = clocked_terminal("el7041", 0, 100.0);
    e.begin_frame(0);
    assert!(e.write(regs::DC_SYSTEM_OFFSET, &(5 * MS).to_le_bytes()));
    // System time = 1.0001 · t + 5 ms: 100 ms at t = 94.99 ms.
    program_sync(&mut e, 0, 100 * MS, 10 * MS as u32, 0, 0x03);
    assert_eq!(sync_at(&mut e, 94_990_000).4, pulses(0, 0));
    assert_eq!(sync_at(&mut e, 94_991_000).4, pulses(1, 0));
    e.power_cycle(95 * MS);
    assert_eq!(
        sync_at(&mut e, 200 * MS).4,
        pulses(0, 0),
        "reset by the power cycle"
    );
    assert_eq!(read8(&mut e, regs::DC_SYNC_ACTIVATION), 0);
}

#[test]
fn the_esc_has_room_for_every_area_its_sii_places() {
    // The AKD's mailboxes are at 0x1800..0x1FFF: past an ET1200's 1 KiB of process RAM.
    let akd = sii("akd");
    let end = usize::from(akd.tx_mailbox.offset) + usize::from(akd.tx_mailbox.size);
    assert!(end > EscChip::ET1200.memory_size());
    let chip = EscConfig::for_sii(&akd).chip;
    assert!(chip.memory_size() >= end, "{} < {end}", chip.memory_size());
    // A terminal whose areas fit keeps the chip known for its product.
    let el2004 = sii("el2004");
    assert_eq!(EscConfig::for_sii(&el2004).chip, EscChip::ET1200);
}
