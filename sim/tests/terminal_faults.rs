//! A firmware terminal (an EL4104 with its recorded dictionary) as a master sees it
//! through the ESC's registers when something goes wrong: the emergencies a local error
//! sends over the mailbox, and what a power cycle resets.

use std::path::PathBuf;

use ferrocat_sim::app::{AlState, MailboxHeader, PdDirection, al_status, mailbox_type};
use ferrocat_sim::coe::ObjectDictionary;
use ferrocat_sim::coe::from_sii::name_from_sii;
use ferrocat_sim::coe::terminal::{
    DictionaryTerminal, EMERGENCY_AL_TRANSITION, EMERGENCY_AL_TRANSITION_REGISTER,
};
use ferrocat_sim::esc::{Esc, EscConfig, ReadMode};
use ferrocat_sim::models::PlantHandle;
use ferrocat_sim::sii::Sii;

/// Where the test puts the EL4104's output SyncManager (SM2), and its 8 bytes: four
/// 16-bit channels with the recorded PDO assignment 0x1600..0x1603.
const SM2_START: u16 = 0x1100;
const SM2_LEN: u16 = 8;
/// SM2 control: three-buffer, master writes, watchdog trigger (ETG.1000.4 table 58).
const SM2_CONTROL: u8 = 0x64;
/// CoE service "emergency" in bits 12..15 of the CoE header, ETG.1000.6 table 29.
const COE_SERVICE_EMERGENCY: u16 = 1;
/// Status register of SM1, the send mailbox (0x0800 + 8 · 1 + 5), ETG.1000.4 table 58.
const SM1_STATUS: u16 = 0x080D;
/// SM status bit 3 in mailbox mode: the mailbox is full.
const SM_STATUS_MAILBOX_FULL: u8 = 0x08;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata")
}

/// A master's view of one EL4104.
struct Terminal {
    esc: Esc,
    sii: Sii,
    now: u64,
    counter: u8,
}

impl Terminal {
    fn el4104() -> Terminal {
        let sii = Sii::load(&testdata().join("eeprom/el4104.bin")).expect("eeprom");
        let mut od =
            ObjectDictionary::from_json_file(&testdata().join("sdo/el4104.json")).expect("json");
        name_from_sii(&mut od, &sii);
        let app = DictionaryTerminal::new(0, od, true, PlantHandle::default());
        let esc = Esc::new(EscConfig::for_sii(&sii), sii.clone(), Box::new(app));
        Terminal {
            esc,
            sii,
            now: 0,
            counter: 0,
        }
    }

    /// A new frame `ns` after the last one.
    fn tick(&mut self, ns: u64) {
        self.now += ns;
        self.esc.begin_frame(self.now);
    }

    fn sm(&mut self, n: u16, start: u16, len: u16, control: u8) {
        let s = start.to_le_bytes();
        let l = len.to_le_bytes();
        let regs = [s[0], s[1], l[0], l[1], control, 0, 1, 0];
        assert!(self.esc.write(0x0800 + 8 * n, &regs), "SM{n} configured");
    }

    /// Writes AL control and returns (AL status, AL status code).
    fn request(&mut self, control: u8) -> (u8, u16) {
        assert!(self.esc.write(0x0120, &[control, 0]));
        let mut b = [0u8; 6];
        assert!(self.esc.read(0x0130, &mut b, ReadMode::Replace));
        (b[0], u16::from_le_bytes([b[4], b[5]]))
    }

    /// INIT → PRE-OP with the SII's mailboxes.
    fn bring_to_preop(&mut self) {
        let (rx, tx) = (self.sii.rx_mailbox, self.sii.tx_mailbox);
        self.sm(0, rx.offset, rx.size, 0x26);
        self.sm(1, tx.offset, tx.size, 0x22);
        assert_eq!(self.request(0x02), (0x02, 0));
    }

    /// PRE-OP → SAFE-OP → OP with `outputs` written in between.
    fn bring_to_op(&mut self, outputs: &[u8]) {
        self.sm(2, SM2_START, SM2_LEN, SM2_CONTROL);
        assert_eq!(self.request(0x04), (0x04, 0));
        self.write_outputs(outputs);
        assert_eq!(self.request(0x08), (0x08, 0));
    }

    fn write_outputs(&mut self, outputs: &[u8]) {
        assert!(self.esc.write(SM2_START, outputs));
    }

    /// The message in the send mailbox, if there is one.
    fn read_mailbox(&mut self) -> Option<Vec<u8>> {
        let tx = self.sii.tx_mailbox;
        let mut buf = vec![0u8; usize::from(tx.size)];
        if !self.esc.read(tx.offset, &mut buf, ReadMode::Replace) {
            return None;
        }
        let h = MailboxHeader::parse(&buf).expect("mailbox header");
        buf.truncate(6 + usize::from(h.length));
        Some(buf)
    }

    /// Sends an SDO request (`cmd`, `index:sub`, 4 data bytes) and returns the reply.
    fn sdo(&mut self, cmd: u8, index: u16, sub: u8, data: [u8; 4]) -> Vec<u8> {
        self.counter = self.counter % 7 + 1;
        let rx = self.sii.rx_mailbox;
        let mut m = vec![0u8; usize::from(rx.size)];
        // Mailbox header: 10 bytes of CoE, type CoE, counter. ETG.1000.4 table 29.
        m[..6].copy_from_slice(&[10, 0, 0, 0, 0, mailbox_type::COE | (self.counter << 4)]);
        // CoE header: SDO request (service 2), ETG.1000.6 table 29.
        let i = index.to_le_bytes();
        m[6..12].copy_from_slice(&[0x00, 0x20, cmd, i[0], i[1], sub]);
        m[12..16].copy_from_slice(&data);
        assert!(self.esc.write(rx.offset, &m), "request taken");
        self.read_mailbox().expect("SDO reply")
    }

    /// An expedited SDO download of `data` (1..4 bytes) into `index:sub`; the reply's
    /// SDO command byte (0x60 = done, 0x80 = abort).
    fn sdo_download(&mut self, index: u16, sub: u8, data: &[u8]) -> u8 {
        // Expedited download with size indicated: 0x23 | (4 - n) << 2, ETG.1000.6 table 31.
        let cmd = 0x23 | ((4 - data.len() as u8) << 2);
        let mut d = [0u8; 4];
        d[..data.len()].copy_from_slice(data);
        self.sdo(cmd, index, sub, d)[8]
    }

    /// An SDO upload of `index:sub` answered expedited (values of 1..4 bytes).
    fn sdo_upload(&mut self, index: u16, sub: u8) -> Vec<u8> {
        let r = self.sdo(0x40, index, sub, [0; 4]);
        // Expedited upload response: 0x43 | (4 - n) << 2, ETG.1000.6 table 33.
        assert_eq!(
            r[8] & 0xF3,
            0x43,
            "expedited upload of {index:04X}:{sub:02X}: {r:02X?}"
        );
        let n = 4 - usize::from((r[8] >> 2) & 3);
        r[12..12 + n].to_vec()
    }

    /// Output bytes the terminal expects with its current PDO assignment.
    fn output_bytes(&self) -> u16 {
        self.esc
            .app()
            .process_data_layout()
            .iter()
            .filter(|l| l.direction == PdDirection::Outputs)
            .map(|l| l.bytes)
            .sum()
    }
}

/// (error code, error register, AL status code in the data) of an emergency message,
/// checking that it is one. ETG.1000.6 5.6.4, table 50.
fn emergency(msg: &[u8]) -> (u16, u8, u16) {
    let h = MailboxHeader::parse(msg).expect("header");
    assert_eq!(h.mailbox_type, mailbox_type::COE, "{msg:02X?}");
    assert_eq!(h.length, 10, "CoE header + 8 bytes: {msg:02X?}");
    let coe = u16::from_le_bytes([msg[6], msg[7]]);
    assert_eq!(coe >> 12, COE_SERVICE_EMERGENCY, "{msg:02X?}");
    (
        u16::from_le_bytes([msg[8], msg[9]]),
        msg[10],
        u16::from_le_bytes([msg[11], msg[12]]),
    )
}

#[test]
fn sm_watchdog_sends_an_emergency_with_0x001b() {
    let mut t = Terminal::el4104();
    t.bring_to_preop();
    t.bring_to_op(&[1, 0, 2, 0, 3, 0, 4, 0]);
    assert_eq!(t.read_mailbox(), None, "nothing to say in OP");
    // No outputs for longer than the 100 ms default watchdog.
    t.tick(100_000_001);
    assert_eq!(t.esc.al_state(), AlState::SafeOp);
    assert_eq!(t.esc.al_status_code(), al_status::SM_WATCHDOG);
    let msg = t.read_mailbox().expect("an emergency");
    assert_eq!(
        emergency(&msg),
        (
            EMERGENCY_AL_TRANSITION,
            EMERGENCY_AL_TRANSITION_REGISTER,
            al_status::SM_WATCHDOG
        )
    );
    assert_eq!(t.read_mailbox(), None, "exactly one");
}

#[test]
fn an_injected_fall_back_reports_its_own_code() {
    let mut t = Terminal::el4104();
    t.bring_to_preop();
    t.bring_to_op(&[0; 8]);
    t.esc.fall_back(AlState::SafeOp, al_status::SYNC_ERROR);
    let msg = t.read_mailbox().expect("an emergency");
    assert_eq!(emergency(&msg).2, al_status::SYNC_ERROR, "{msg:02X?}");
    // From SAFE-OP down to PRE-OP (no outputs involved) it is reported too.
    assert_eq!(t.request(0x14), (0x04, 0));
    t.esc
        .fall_back(AlState::PreOp, al_status::INVALID_WATCHDOG_CONFIG);
    let msg = t.read_mailbox().expect("an emergency");
    assert_eq!(emergency(&msg).2, al_status::INVALID_WATCHDOG_CONFIG);
    // A fall-back to INIT has no mailbox to report on, and nothing waits for PRE-OP.
    t.esc.fall_back(AlState::Init, al_status::SYNC_ERROR);
    assert_eq!(t.request(0x11), (0x01, 0));
    t.bring_to_preop();
    t.tick(1_000_000);
    assert_eq!(t.read_mailbox(), None);
}

#[test]
fn no_emergency_survives_a_power_cycle() {
    let mut t = Terminal::el4104();
    t.bring_to_preop();
    t.bring_to_op(&[0; 8]);
    // Power lost in OP, and again with an emergency waiting in the send mailbox.
    t.esc.power_cycle(t.now);
    t.tick(1_000_000);
    t.bring_to_preop();
    t.tick(1_000_000);
    assert_eq!(t.read_mailbox(), None, "power cycle from OP");
    t.bring_to_op(&[0; 8]);
    t.tick(100_000_001);
    assert_eq!(t.esc.al_status_code(), al_status::SM_WATCHDOG);
    assert_eq!(
        t.esc.peek(SM1_STATUS) & SM_STATUS_MAILBOX_FULL,
        SM_STATUS_MAILBOX_FULL,
        "the emergency waits in the send mailbox"
    );
    t.esc.power_cycle(t.now);
    t.tick(1_000_000);
    assert_eq!(t.esc.al_state(), AlState::Init);
    t.bring_to_preop();
    t.tick(1_000_000);
    assert_eq!(
        t.read_mailbox(),
        None,
        "power cycle with an emergency pending"
    );
    // The mailbox works: an SDO download is answered, and only that.
    assert_eq!(t.sdo_download(0x8000, 0x01, &[1]), 0x60);
    assert_eq!(t.read_mailbox(), None);
}

#[test]
fn a_power_cycle_forgets_the_pdo_assignment_and_outputs_but_keeps_settings() {
    let mut t = Terminal::el4104();
    t.bring_to_preop();
    assert_eq!(t.output_bytes(), 8, "recorded 0x1C12: four channels");
    // The master assigns only channel 1 (0x1C12:00 = 1) and changes a setting.
    assert_eq!(t.sdo_download(0x1C12, 0, &[1]), 0x60);
    assert_eq!(t.sdo_download(0x8000, 0x01, &[1]), 0x60);
    assert_eq!(t.output_bytes(), 2);
    t.sm(2, SM2_START, 2, SM2_CONTROL);
    assert_eq!(t.request(0x04), (0x04, 0));
    t.write_outputs(&[0x34, 0x12]);
    assert_eq!(t.request(0x08), (0x08, 0));
    // Cold start.
    t.esc.power_cycle(t.now);
    t.tick(1_000_000);
    t.bring_to_preop();
    assert_eq!(
        t.sdo_upload(0x1C12, 0),
        vec![4],
        "assignment back to power-on"
    );
    assert_eq!(t.output_bytes(), 8);
    assert_eq!(
        t.sdo_upload(0x7000, 0x01),
        vec![0x60, 0x09],
        "output value back to the recorded power-on value, not 0x1234"
    );
    assert_eq!(t.sdo_upload(0x8000, 0x01), vec![1], "a setting is kept");
    // The SyncManager size of the old assignment no longer fits.
    t.sm(2, SM2_START, 2, SM2_CONTROL);
    assert_eq!(t.request(0x04), (0x12, al_status::INVALID_OUTPUT_CONFIG));
    t.sm(2, SM2_START, SM2_LEN, SM2_CONTROL);
    assert_eq!(t.request(0x14), (0x04, 0));
}
