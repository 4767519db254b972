//! The EtherCAT slave controller of a simulated terminal: registers, SyncManagers, FMMUs,
//! AL state machine, watchdogs, EEPROM interface, distributed clocks.
//!
//! An [`Esc`] owns the terminal's address space (registers 0x0000..0x0FFF plus process
//! RAM), its SII EEPROM and its application ([`TerminalApp`]). The segment hands it each
//! datagram's access (`read`, `write`, `read_write`, `logical`) with the time the frame
//! reached the terminal; the ESC answers whether the access counts for the working
//! counter and applies the side effects real hardware has. Behaviour that the captures
//! in `../shared/testdata/captures/` show is cited next to the code; see
//! `sim/NOTES-core.md` for the rules and where they come from.

pub mod regs;

use crate::app::{
    AlState, AlStatusCode, MailboxOutbox, SmConfig, SmDirection, SmMode, TerminalApp, Transition,
    al_status,
};
use crate::sii::Sii;
use regs::{DcUnit, EscChip};

/// The settings a terminal's ESC is built with besides its EEPROM and application.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EscConfig {
    /// The chip (registers 0x0000..0x0009, units present).
    pub chip: EscChip,
    /// Clock drift of the terminal's DC oscillator in parts per million (positive = fast).
    pub drift_ppm: f64,
    /// The local DC time at bus time 0 (terminals power up at different moments).
    pub clock_start_ns: u64,
    /// How long an EEPROM read keeps the SII interface busy.
    pub eeprom_read_ns: u64,
    /// How long an EEPROM write keeps the SII interface busy.
    pub eeprom_write_ns: u64,
}

impl EscConfig {
    /// The configuration for a terminal described by `sii`: its chip from
    /// [`EscChip::for_product`], no drift, EEPROM timings of an I²C EEPROM: 640 µs per
    /// read (in ek1100-el2828-el2889.pcapng the interface is still busy up to ~600 µs
    /// after a read command and free from ~676 µs, e.g. frames 104..110), ~5 ms per write.
    pub fn for_sii(sii: &Sii) -> EscConfig {
        EscConfig {
            chip: EscChip::for_product(sii.vendor_id, sii.product_code),
            drift_ppm: 0.0,
            clock_start_ns: 0,
            eeprom_read_ns: 640_000,
            eeprom_write_ns: 5_000_000,
        }
    }
}

/// A logical datagram command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogicalCommand {
    /// LRD.
    Read,
    /// LWR.
    Write,
    /// LRW.
    ReadWrite,
}

/// How a read combines with the data already in the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// The register value replaces the frame's byte (APRD, FPRD).
    Replace,
    /// The register value is ORed into the frame's byte (BRD).
    Or,
}

/// One FMMU as configured in 0x0600 + 16 * n (ETG.1000.4 table 55).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fmmu {
    /// Logical start address.
    pub logical_start: u32,
    /// Length in bytes of the logical window.
    pub length: u16,
    /// Logical start bit (0..7).
    pub start_bit: u8,
    /// Logical stop bit (0..7).
    pub stop_bit: u8,
    /// Physical start address.
    pub physical_start: u16,
    /// Physical start bit.
    pub physical_start_bit: u8,
    /// Type: bit 0 read, bit 1 write.
    pub kind: u8,
    /// Activate bit 0.
    pub active: bool,
}

impl Fmmu {
    fn parse(b: &[u8]) -> Fmmu {
        let g = |i: usize| b.get(i).copied().unwrap_or(0);
        Fmmu {
            logical_start: u32::from_le_bytes([g(0), g(1), g(2), g(3)]),
            length: u16::from_le_bytes([g(4), g(5)]),
            start_bit: g(6) & 7,
            stop_bit: g(7) & 7,
            physical_start: u16::from_le_bytes([g(8), g(9)]),
            physical_start_bit: g(10) & 7,
            kind: g(11) & 3,
            active: g(12) & 1 != 0,
        }
    }

    fn is_bitwise(&self) -> bool {
        self.start_bit != 0 || self.stop_bit != 7 || self.physical_start_bit != 0
    }
}

/// Run-time state of one SyncManager besides its registers.
#[derive(Clone, Debug, Default)]
struct SmRuntime {
    cfg: SmConfig,
    /// One-buffer mode: the buffer holds a message (status bit 3).
    mailbox_full: bool,
    /// Three-buffer read direction: a buffer is locked for the master until its last byte is read.
    read_locked: bool,
    /// Three-buffer write direction: the buffer being written (visible on its last byte).
    pending: Vec<u8>,
    /// Bytes of `pending` written since the last completed buffer.
    pending_touched: bool,
    /// Status bit 0, "interrupt write": the buffer was written completely (by the
    /// master for SM0, by the firmware for SM1).
    irq_write: bool,
    /// Status bit 1, "interrupt read": the buffer was read completely.
    irq_read: bool,
}

impl SmRuntime {
    fn end(&self) -> u32 {
        u32::from(self.cfg.start) + u32::from(self.cfg.length)
    }

    fn contains(&self, addr: u32) -> bool {
        self.cfg.enabled() && addr >= u32::from(self.cfg.start) && addr < self.end()
    }

    fn last(&self) -> u32 {
        self.end() - 1
    }
}

/// The side effects of one access, without allocating (an access completes at most one
/// event per SyncManager, and there are at most 16).
#[derive(Clone, Copy, Debug)]
struct SmEvents {
    items: [SmEvent; 16],
    len: usize,
}

impl SmEvents {
    fn new() -> SmEvents {
        SmEvents {
            items: [SmEvent::BufferReleased(0); 16],
            len: 0,
        }
    }

    fn push(&mut self, ev: SmEvent) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = ev;
            self.len += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn as_slice(&self) -> &[SmEvent] {
        &self.items[..self.len]
    }
}

/// Side effects collected while bytes are accessed, applied after the datagram's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SmEvent {
    MailboxWritten(usize),
    MailboxRead(usize),
    BufferWritten(usize),
    BufferReleased(usize),
}

/// Default watchdog divider: (2498 + 2) * 40 ns = 100 µs per tick, ETG.1000.4 table 50.
const WD_DIVIDER_DEFAULT: u16 = 0x09C2;
/// Default PDI and process data watchdog time: 1000 ticks = 100 ms.
const WD_TIME_DEFAULT: u16 = 0x03E8;
/// SII control command bits (bits 8..10), ETG.1000.4 table 48.
const SII_CMD_READ: u8 = 0x01;
const SII_CMD_WRITE: u8 = 0x02;
const SII_CMD_RELOAD: u8 = 0x04;
/// SII status bits in the high byte of 0x0502.
const SII_CHECKSUM_ERROR: u8 = 0x08;
const SII_COMMAND_ERROR: u8 = 0x20;
const SII_WRITE_ENABLE_ERROR: u8 = 0x40;
const SII_BUSY: u8 = 0x80;
/// ECAT event request bits, ETG.1000.4 table 44.
const EVENT_DL_STATUS: u16 = 0x0004;
const EVENT_AL_STATUS: u16 = 0x0008;
/// AL status error indication bit, ETG.1000.6 table 9.
const AL_ERROR_FLAG: u8 = 0x10;

/// The EtherCAT slave controller of one terminal.
#[derive(Debug)]
pub struct Esc {
    config: EscConfig,
    access: Vec<u8>,
    mem: Vec<u8>,
    sii: Sii,
    eeprom: Vec<u8>,
    app: Box<dyn TerminalApp>,
    outbox: MailboxOutbox,
    fmmus: Vec<Fmmu>,
    sms: Vec<SmRuntime>,
    state: AlState,
    error: bool,
    status_code: AlStatusCode,
    has_firmware: bool,
    outputs_valid: bool,
    last_mailbox: Option<Vec<u8>>,
    sii_busy_until: u64,
    sii_pending_cmd: u8,
    wd_last_ns: Option<u64>,
    dc_correction_ns: i64,
    downstream_rtt_ns: u64,
    links: [bool; 4],
    now_ns: u64,
    /// Reused buffer for the incoming bytes of logical writes.
    scratch: Vec<u8>,
}

impl Esc {
    /// A powered-up terminal in INIT with registers at their reset values, built from its
    /// EEPROM image and application.
    pub fn new(config: EscConfig, sii: Sii, app: Box<dyn TerminalApp>) -> Esc {
        let eeprom = sii.raw.clone();
        // PDI control 0x0141 bit 0 (SII word 0 bit 8), "device emulation": the ESC itself
        // copies AL control into AL status and there is no firmware to check anything
        // (ETG.1000.4 table 41). EK1100, EL2828 and EL2889 have it: ethercrab writes 0x0011
        // and reads back status 0x0011, error flag included
        // (ek1100-el2828-el2889.pcapng frames 3/4 and 96).
        let has_firmware = word0_of(&sii) & 0x0100 == 0;
        let mut esc = Esc {
            access: regs::access_table(&config.chip),
            mem: Vec::new(),
            eeprom,
            app,
            outbox: MailboxOutbox::new(usize::from(sii.tx_mailbox.size)),
            fmmus: Vec::new(),
            sms: Vec::new(),
            state: AlState::Init,
            error: false,
            status_code: 0,
            has_firmware,
            outputs_valid: false,
            last_mailbox: None,
            sii_busy_until: 0,
            sii_pending_cmd: 0,
            wd_last_ns: None,
            dc_correction_ns: 0,
            downstream_rtt_ns: 0,
            links: [true, false, false, false],
            now_ns: 0,
            scratch: Vec::new(),
            sii,
            config,
        };
        esc.reset_registers();
        esc
    }

    fn reset_registers(&mut self) {
        let chip = self.config.chip;
        self.mem = vec![0; chip.memory_size()];
        self.mem[0] = chip.esc_type;
        self.mem[1] = chip.revision;
        self.put16(regs::BUILD, chip.build);
        self.mem[4] = chip.fmmus;
        self.mem[5] = chip.sync_managers;
        self.mem[6] = chip.ram_kib;
        self.mem[7] = chip.port_descriptor;
        self.put16(regs::FEATURES, chip.features);
        self.put16(regs::STATION_ALIAS, self.eeprom_word(4));
        self.put16(regs::PDI_CONTROL, self.eeprom_word(0));
        self.put16(regs::PDI_CONFIG, self.eeprom_word(1));
        // DL control reset value 0x00C0_0001 (forwarding rule, temporary loop settings).
        self.put32(regs::DL_CONTROL, 0x0000_0001);
        self.put16(regs::WD_DIVIDER, WD_DIVIDER_DEFAULT);
        self.put16(regs::WD_PDI, WD_TIME_DEFAULT);
        self.put16(regs::WD_PROCESS_DATA, WD_TIME_DEFAULT);
        self.put16(regs::WD_STATUS, 0x0001);
        let sii_low = chip.sii_control_reset;
        let sii_high = if self.sii_checksum_ok() {
            0
        } else {
            SII_CHECKSUM_ERROR
        };
        self.mem[usize::from(regs::SII_CONTROL)] = sii_low;
        self.mem[usize::from(regs::SII_CONTROL) + 1] = sii_high;
        if chip.dc != DcUnit::None {
            // Unlatched port receive times read the ESC's reset pattern: "hoff" on port 1
            // of an ET1200, "Verl" on port 3 (ek1100-el2828-el2889.pcapng frames 508, 516;
            // soem-sdinfo-ek1100-el1004.pcapng frames 463, 471).
            if chip.esc_type == 0x12 {
                self.mem[0x0904..0x0908].copy_from_slice(b"hoff");
            }
            self.mem[0x090C..0x0910].copy_from_slice(b"Verl");
        }
        if chip.dc == DcUnit::Full {
            // Speed counter start and filter depths (ETG.1000.4 table 61 reset values).
            self.put16(0x0930, 0x1000);
            self.put16(0x0934, 0x0C04);
        }
        self.fmmus = vec![Fmmu::default(); usize::from(chip.fmmus.min(16))];
        self.sms = vec![SmRuntime::default(); usize::from(chip.sync_managers.min(16))];
        self.state = AlState::Init;
        self.error = false;
        self.status_code = 0;
        self.outputs_valid = false;
        self.last_mailbox = None;
        self.outbox.clear();
        self.sii_busy_until = 0;
        self.sii_pending_cmd = 0;
        self.wd_last_ns = None;
        self.dc_correction_ns = 0;
        self.update_al_registers();
        self.update_dl_status();
        self.update_sm_registers();
        // Links came up at power-on: the DL status event is pending until 0x0110 is read.
        self.put16(regs::ECAT_EVENT_REQUEST, EVENT_DL_STATUS);
    }

    fn sii_checksum_ok(&self) -> bool {
        // ETG.1000.6 5.4: CRC-8 (polynomial x^8 + x^2 + x + 1, initial 0xFF) over words 0..6,
        // stored in the low byte of word 7.
        let mut crc: u8 = 0xFF;
        for i in 0..14 {
            let b = self.eeprom.get(i).copied().unwrap_or(0xFF);
            crc ^= b;
            for _ in 0..8 {
                crc = if crc & 0x80 != 0 {
                    (crc << 1) ^ 0x07
                } else {
                    crc << 1
                };
            }
        }
        self.eeprom.get(14).copied() == Some(crc)
    }

    fn eeprom_word(&self, w: usize) -> u16 {
        match self.eeprom.get(2 * w..2 * w + 2) {
            Some(b) => u16::from_le_bytes([b[0], b[1]]),
            None => 0xFFFF,
        }
    }

    fn get16(&self, a: u16) -> u16 {
        let a = usize::from(a);
        u16::from_le_bytes([self.mem[a], self.mem[a + 1]])
    }

    fn get32(&self, a: u16) -> u32 {
        let a = usize::from(a);
        u32::from_le_bytes([
            self.mem[a],
            self.mem[a + 1],
            self.mem[a + 2],
            self.mem[a + 3],
        ])
    }

    fn get64(&self, a: u16) -> u64 {
        u64::from(self.get32(a)) | (u64::from(self.get32(a + 4)) << 32)
    }

    fn put16(&mut self, a: u16, v: u16) {
        let a = usize::from(a);
        self.mem[a..a + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn put32(&mut self, a: u16, v: u32) {
        let a = usize::from(a);
        self.mem[a..a + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn put64(&mut self, a: u16, v: u64) {
        let a = usize::from(a);
        self.mem[a..a + 8].copy_from_slice(&v.to_le_bytes());
    }

    // ----- accessors ---------------------------------------------------------------

    /// The EEPROM the terminal was built from.
    pub fn sii(&self) -> &Sii {
        &self.sii
    }

    /// The chip description.
    pub fn chip(&self) -> &EscChip {
        &self.config.chip
    }

    /// The current AL state.
    pub fn al_state(&self) -> AlState {
        self.state
    }

    /// Whether the AL status error flag is set.
    pub fn al_error(&self) -> bool {
        self.error
    }

    /// The AL status code (0x0134).
    pub fn al_status_code(&self) -> AlStatusCode {
        self.status_code
    }

    /// The configured station address (0x0010).
    pub fn station_address(&self) -> u16 {
        self.get16(regs::STATION_ADDRESS)
    }

    /// The station alias (0x0012) if DL control enables alias addressing (0x0100 bit 24).
    pub fn active_alias(&self) -> Option<u16> {
        if self.mem[usize::from(regs::DL_CONTROL) + 3] & 0x01 != 0 {
            Some(self.get16(regs::STATION_ALIAS))
        } else {
            None
        }
    }

    /// A register or RAM byte as it is stored (no side effects); 0 outside the memory.
    pub fn peek(&self, addr: u16) -> u8 {
        self.mem.get(usize::from(addr)).copied().unwrap_or(0)
    }

    /// The SyncManager configurations the master has written.
    pub fn sm_configs(&self) -> Vec<SmConfig> {
        self.sms.iter().map(|s| s.cfg).collect()
    }

    /// The FMMU configurations the master has written.
    pub fn fmmus(&self) -> &[Fmmu] {
        &self.fmmus
    }

    /// The terminal's application.
    pub fn app(&self) -> &dyn TerminalApp {
        self.app.as_ref()
    }

    /// The terminal's application, mutable (to inject inputs or faults in tests).
    pub fn app_mut(&mut self) -> &mut dyn TerminalApp {
        self.app.as_mut()
    }

    /// The latest complete buffer of output SyncManager `sm` (what the outputs would be).
    pub fn sm_buffer(&self, sm: usize) -> Option<&[u8]> {
        let s = self.sms.get(sm)?;
        let start = usize::from(s.cfg.start);
        self.mem.get(start..start + usize::from(s.cfg.length))
    }

    /// Which ports have a link (port 0 is upstream). Sets the DL status register.
    pub fn set_links(&mut self, links: [bool; 4]) {
        if links != self.links {
            self.links = links;
            self.update_dl_status();
            self.raise_event(EVENT_DL_STATUS);
        }
    }

    /// The bits this terminal ORs into the IRQ field of every datagram passing it: ECAT
    /// event request (0x0210) masked by the ECAT event mask (0x0200), ETG.1000.4 5.3.3
    /// (soem-sdinfo-ek1100-el1004.pcapng frame 15: IRQ 0x0004 once SOEM unmasked the DL
    /// status event in frame 13).
    pub fn irq(&self) -> u16 {
        self.get16(regs::ECAT_EVENT_REQUEST) & self.get16(regs::ECAT_EVENT_MASK)
    }

    fn raise_event(&mut self, bits: u16) {
        let v = self.get16(regs::ECAT_EVENT_REQUEST) | bits;
        self.put16(regs::ECAT_EVENT_REQUEST, v);
    }

    fn clear_event(&mut self, bits: u16) {
        let v = self.get16(regs::ECAT_EVENT_REQUEST) & !bits;
        self.put16(regs::ECAT_EVENT_REQUEST, v);
    }

    /// The time a frame takes from leaving port 1 until it returns there (the rest of the
    /// chain), used for the port 1 receive time latch.
    pub fn set_downstream_rtt_ns(&mut self, ns: u64) {
        self.downstream_rtt_ns = ns;
    }

    /// Counts an invalid frame received on `port` (0x0300 + 2 * port, saturating at 255),
    /// as the ESC does for a frame with a bad length or checksum.
    pub fn count_rx_error(&mut self, port: usize) {
        let a = usize::from(regs::ERROR_COUNTERS) + 2 * port.min(3);
        self.mem[a] = self.mem[a].saturating_add(1);
    }

    /// Sets the DC clock drift in ppm.
    pub fn set_drift_ppm(&mut self, ppm: f64) {
        self.config.drift_ppm = ppm;
    }

    // ----- time, watchdogs -----------------------------------------------------------

    /// Called when a frame reaches the terminal at bus time `now_ns` before any of its
    /// datagrams: advances the watchdogs and lets the application run.
    pub fn begin_frame(&mut self, now_ns: u64) {
        self.advance(now_ns);
        self.app.poll(now_ns, &mut self.outbox);
        self.load_send_mailbox();
    }

    /// Advances time without a frame: watchdog expiry, EEPROM busy.
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        self.update_sii_status();
        self.check_watchdog();
    }

    fn wd_timeout_ns(&self) -> Option<u64> {
        let ticks = u64::from(self.get16(regs::WD_PROCESS_DATA));
        if ticks == 0 {
            return None;
        }
        let divider = u64::from(self.get16(regs::WD_DIVIDER));
        Some(ticks * (divider + 2) * 40)
    }

    fn check_watchdog(&mut self) {
        let (Some(last), Some(timeout)) = (self.wd_last_ns, self.wd_timeout_ns()) else {
            return;
        };
        if self.now_ns.saturating_sub(last) <= timeout {
            return;
        }
        // Expired: ETG.1000.4 table 52 (0x0440 bit 0 = 0), counter 0x0442 increments.
        self.wd_last_ns = None;
        self.mem[usize::from(regs::WD_STATUS)] &= !0x01;
        let c = usize::from(regs::WD_COUNTER_PD);
        self.mem[c] = self.mem[c].saturating_add(1);
        self.app.outputs_safe(self.now_ns);
        // Firmware drops to SAFE-OP with 0x001B (ETG.1000.6 table 11); an ESC in device
        // emulation only clears its outputs, its AL status mirrors AL control.
        if self.has_firmware && self.state == AlState::Op {
            self.fall_back(AlState::SafeOp, al_status::SM_WATCHDOG);
        }
    }

    // ----- AL state machine ----------------------------------------------------------

    fn update_al_registers(&mut self) {
        let status = self.state.code() | if self.error { AL_ERROR_FLAG } else { 0 };
        self.set_al_status_byte(status);
        self.mem[usize::from(regs::AL_STATUS) + 1] = 0;
        self.put16(regs::AL_STATUS_CODE, self.status_code);
    }

    fn set_al_status_byte(&mut self, status: u8) {
        let at = usize::from(regs::AL_STATUS);
        if self.mem[at] != status {
            self.mem[at] = status;
            self.raise_event(EVENT_AL_STATUS);
        }
    }

    fn set_state(&mut self, to: AlState) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        if from == AlState::Op {
            self.app.outputs_safe(self.now_ns);
        }
        if matches!(to, AlState::Init | AlState::PreOp) {
            self.outputs_valid = false;
        }
        if to == AlState::Init {
            self.outbox.clear();
            self.last_mailbox = None;
            for s in &mut self.sms {
                s.mailbox_full = false;
            }
        }
        self.app.state_changed(self.now_ns, from, to);
        if to == AlState::Op && self.outputs_valid {
            // Firmware applies the latest complete output buffer once in OP.
            for n in 0..self.sms.len() {
                if self.is_output_buffer(n) {
                    if let Some(buf) = self.sm_buffer(n).map(<[u8]>::to_vec) {
                        self.app.outputs_written(self.now_ns, n as u8, &buf);
                    }
                }
            }
        }
        self.update_sm_registers();
    }

    /// Drops to `to` with the error flag and `code`, as firmware does on a local error
    /// (fault injection and the SM watchdog use it).
    pub fn fall_back(&mut self, to: AlState, code: AlStatusCode) {
        self.error = true;
        self.status_code = code;
        self.set_state(to);
        self.update_al_registers();
    }

    /// Power-cycles the terminal: outputs safe, registers to reset values, INIT.
    pub fn power_cycle(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        self.app.outputs_safe(self.now_ns);
        self.app.power_cycled(self.now_ns);
        let from = self.state;
        self.reset_registers();
        if from != AlState::Init {
            self.app.state_changed(self.now_ns, from, AlState::Init);
        }
        self.update_dl_status();
    }

    /// Whether AL status mirrors AL control (device emulation, no firmware).
    pub fn device_emulation(&self) -> bool {
        !self.has_firmware
    }

    fn al_control_written(&mut self) {
        let ctl = self.mem[usize::from(regs::AL_CONTROL)];
        if !self.has_firmware {
            if let Some(to) = AlState::from_code(ctl & 0x0F) {
                self.set_state(to);
            }
            self.error = ctl & AL_ERROR_FLAG != 0;
            self.update_al_registers();
            self.set_al_status_byte(ctl & 0x1F);
            return;
        }
        let ack = ctl & AL_ERROR_FLAG != 0;
        let code = ctl & 0x0F;
        if self.error && !ack {
            // ETG.1000.6 6.4.1.4: with the error indication set, a request without
            // acknowledge is ignored unless it goes to a lower state.
            match AlState::from_code(code) {
                Some(to) if state_rank(to) < state_rank(self.state) => {}
                _ => return,
            }
        }
        if ack {
            self.error = false;
            self.status_code = 0;
        }
        let result = self.request_state(code);
        if let Err(code) = result {
            self.error = true;
            self.status_code = code;
        }
        self.update_al_registers();
    }

    fn request_state(&mut self, code: u8) -> Result<(), AlStatusCode> {
        let Some(to) = AlState::from_code(code) else {
            return Err(al_status::UNKNOWN_STATE);
        };
        let from = self.state;
        if to == from {
            return Ok(());
        }
        use AlState::*;
        match (from, to) {
            (_, Init) => {}
            (Init, Bootstrap) => {
                let foe = self.sii.mailbox_protocols & crate::sii::mailbox_protocol::FOE != 0;
                if !foe || self.sii.bootstrap_rx_mailbox.size == 0 {
                    return Err(al_status::BOOTSTRAP_NOT_SUPPORTED);
                }
            }
            (Init, PreOp) => self.check_mailbox_sms()?,
            (PreOp, SafeOp) => {}
            (SafeOp, Op) => {
                // Firmware terminals refuse OP until valid outputs arrived (ETG.1000.6
                // table 11, 0x0019). Terminals without firmware (ESC-driven digital I/O)
                // go to OP anyway: ek1100-el2828-el2889.pcapng frames 2300..2304 bring an
                // EL2889 to OP before the first LRW (frame 3053).
                if self.has_firmware && self.expects_outputs() && !self.outputs_valid {
                    return Err(al_status::NO_VALID_OUTPUTS);
                }
            }
            (Op | SafeOp, PreOp) | (Op, SafeOp) => {}
            (Bootstrap, _) | (_, Bootstrap) | (Init, _) | (PreOp, Op) => {
                return Err(al_status::INVALID_STATE_CHANGE);
            }
            _ => return Err(al_status::INVALID_STATE_CHANGE),
        }
        let sms = self.sm_configs();
        self.app.check_transition(
            self.now_ns,
            Transition {
                from,
                to,
                sms: &sms,
            },
        )?;
        self.set_state(to);
        Ok(())
    }

    fn expects_outputs(&self) -> bool {
        self.app
            .process_data_layout()
            .iter()
            .any(|p| p.direction == crate::app::PdDirection::Outputs && p.bytes > 0)
    }

    fn check_mailbox_sms(&self) -> Result<(), AlStatusCode> {
        if !self.sii.has_mailbox() {
            return Ok(());
        }
        let bad = Err(al_status::INVALID_MAILBOX_CONFIG);
        let (Some(rx), Some(tx)) = (self.sms.first(), self.sms.get(1)) else {
            return bad;
        };
        let ok_rx = rx.cfg.enabled()
            && rx.cfg.mode() == Some(SmMode::Mailbox)
            && rx.cfg.direction() == Some(SmDirection::Write)
            && rx.cfg.length >= 8;
        let ok_tx = tx.cfg.enabled()
            && tx.cfg.mode() == Some(SmMode::Mailbox)
            && tx.cfg.direction() == Some(SmDirection::Read)
            && tx.cfg.length >= 8;
        let overlap = u32::from(rx.cfg.start) < tx.end() && u32::from(tx.cfg.start) < rx.end();
        if ok_rx && ok_tx && !overlap {
            Ok(())
        } else {
            bad
        }
    }

    // ----- SyncManagers --------------------------------------------------------------

    fn is_output_buffer(&self, n: usize) -> bool {
        self.sms.get(n).is_some_and(|s| {
            s.cfg.enabled()
                && s.cfg.mode() == Some(SmMode::Buffered)
                && s.cfg.direction() == Some(SmDirection::Write)
        })
    }

    /// Whether the firmware keeps SM `n` deactivated through its PDI control register
    /// (0x0807 + 8n bit 0): firmware terminals enable the mailbox from PRE-OP and process
    /// data from SAFE-OP (ETG.1000.6 6.4.1); terminals without firmware never do.
    fn pdi_deactivated(&self, n: usize) -> bool {
        if !self.has_firmware {
            return false;
        }
        let Some(s) = self.sms.get(n) else {
            return true;
        };
        match s.cfg.mode() {
            Some(SmMode::Mailbox) => matches!(self.state, AlState::Init),
            _ => !matches!(self.state, AlState::SafeOp | AlState::Op),
        }
    }

    fn update_sm_registers(&mut self) {
        for n in 0..self.sms.len() {
            let base = usize::from(regs::SM_BASE) + 8 * n;
            let s = &self.sms[n];
            // ETG.1000.4 table 59: bit 0 interrupt write, bit 1 interrupt read, bit 3
            // mailbox full. ek1914-el3004-mailbox.pcapng: SM1 reads 0x09 when a reply
            // waits (frame 964), SM0 reads 0x02 once the firmware took a request (970).
            let mut status = self.mem[base + 5] & !0x0B;
            if s.mailbox_full {
                status |= 0x08;
            }
            if s.irq_write {
                status |= 0x01;
            }
            if s.irq_read {
                status |= 0x02;
            }
            self.mem[base + 5] = status;
            let has_mail = s.mailbox_full && s.cfg.direction() == Some(SmDirection::Read);
            if n < 8 {
                let bit = 1u16 << (4 + n);
                if has_mail {
                    self.raise_event(bit);
                } else {
                    self.clear_event(bit);
                }
            }
            let deact = self.pdi_deactivated(n);
            let pdi = &mut self.mem[base + 7];
            if deact {
                *pdi |= 0x01;
            } else {
                *pdi &= !0x01;
            }
        }
    }

    fn sm_registers_written(&mut self, from: u32, to: u32) {
        for n in 0..self.sms.len() {
            let base = u32::from(regs::SM_BASE) + 8 * n as u32;
            if to <= base || from >= base + 8 {
                continue;
            }
            let b = base as usize;
            let new = SmConfig {
                start: u16::from_le_bytes([self.mem[b], self.mem[b + 1]]),
                length: u16::from_le_bytes([self.mem[b + 2], self.mem[b + 3]]),
                control: self.mem[b + 4],
                activate: self.mem[b + 6],
            };
            let old = self.sms[n].cfg;
            let repeat_toggled = (old.activate ^ new.activate) & 0x02 != 0;
            let reconfigured = old.start != new.start
                || old.length != new.length
                || old.control != new.control
                || old.enabled() != new.enabled();
            let s = &mut self.sms[n];
            s.cfg = new;
            if reconfigured {
                s.irq_write = false;
                s.irq_read = false;
                s.mailbox_full = false;
                s.read_locked = false;
                s.pending = vec![0; usize::from(new.length)];
                s.pending_touched = false;
                if n == 1 && new.mode() == Some(SmMode::Mailbox) {
                    self.outbox.set_capacity(usize::from(new.length));
                }
            }
            if repeat_toggled && !reconfigured {
                self.mailbox_repeat(n);
            }
        }
        self.update_sm_registers();
        self.load_send_mailbox();
    }

    /// Repeat request (0x0806 bit 1 toggled): the firmware writes the last message again
    /// and acknowledges by copying the bit into 0x0807 bit 1 (ETG.1000.6 5.6 mailbox repeat).
    fn mailbox_repeat(&mut self, n: usize) {
        let base = usize::from(regs::SM_BASE) + 8 * n;
        if let Some(msg) = self.last_mailbox.clone() {
            let s = &self.sms[n];
            let start = usize::from(s.cfg.start);
            let len = usize::from(s.cfg.length);
            if let Some(area) = self.mem.get_mut(start..start + len) {
                area.fill(0);
                let k = msg.len().min(len);
                area[..k].copy_from_slice(&msg[..k]);
                self.sms[n].mailbox_full = true;
            }
        }
        let req = self.mem[base + 6] & 0x02;
        self.mem[base + 7] = (self.mem[base + 7] & !0x02) | req;
        self.update_sm_registers();
    }

    /// The send mailbox SM (SM1 as configured for mailbox reading), if usable.
    fn send_mailbox_sm(&self) -> Option<usize> {
        let s = self.sms.get(1)?;
        (s.cfg.enabled()
            && s.cfg.mode() == Some(SmMode::Mailbox)
            && s.cfg.direction() == Some(SmDirection::Read)
            && !self.pdi_deactivated(1))
        .then_some(1)
    }

    fn load_send_mailbox(&mut self) {
        let Some(n) = self.send_mailbox_sm() else {
            return;
        };
        if self.sms[n].mailbox_full {
            return;
        }
        let Some(msg) = self.outbox.pop() else {
            return;
        };
        let start = usize::from(self.sms[n].cfg.start);
        let len = usize::from(self.sms[n].cfg.length);
        if let Some(area) = self.mem.get_mut(start..start + len) {
            area.fill(0);
            let k = msg.len().min(len);
            area[..k].copy_from_slice(&msg[..k]);
            self.sms[n].mailbox_full = true;
            self.sms[n].irq_write = true;
            self.last_mailbox = Some(msg);
        }
        self.update_sm_registers();
    }

    fn apply_sm_events(&mut self, events: &[SmEvent]) {
        for &ev in events {
            match ev {
                SmEvent::MailboxWritten(n) => {
                    let s = &self.sms[n];
                    let start = usize::from(s.cfg.start);
                    let len = usize::from(s.cfg.length);
                    let msg = self.mem[start..start + len].to_vec();
                    // The firmware takes the message at once: the buffer is free again.
                    self.sms[n].mailbox_full = false;
                    self.sms[n].irq_write = false;
                    self.sms[n].irq_read = true;
                    self.app
                        .mailbox_received(self.now_ns, &msg, &mut self.outbox);
                }
                SmEvent::MailboxRead(n) => {
                    self.sms[n].mailbox_full = false;
                    self.sms[n].irq_write = false;
                }
                SmEvent::BufferWritten(n) => {
                    let s = &mut self.sms[n];
                    let start = usize::from(s.cfg.start);
                    let len = usize::from(s.cfg.length);
                    s.pending_touched = false;
                    let buf = std::mem::take(&mut s.pending);
                    self.mem[start..start + len].copy_from_slice(&buf[..len]);
                    self.sms[n].pending = buf;
                    self.outputs_valid = true;
                    // The SM watchdog is retriggered by each completed buffer of an SM
                    // with control bit 6 set (ETG.1000.4 table 58).
                    if self.sms[n].cfg.control & 0x40 != 0 {
                        self.wd_last_ns = Some(self.now_ns);
                        self.mem[usize::from(regs::WD_STATUS)] |= 0x01;
                    }
                    if self.state == AlState::Op {
                        let data = &self.mem[start..start + len];
                        self.app.outputs_written(self.now_ns, n as u8, data);
                    }
                }
                SmEvent::BufferReleased(n) => {
                    self.sms[n].read_locked = false;
                }
            }
        }
        self.update_sm_registers();
        self.load_send_mailbox();
    }

    fn sm_at(&self, addr: u32) -> Option<usize> {
        self.sms.iter().position(|s| s.contains(addr))
    }

    // ----- byte access ---------------------------------------------------------------

    /// Reads `buf.len()` bytes from `addr` as the EtherCAT side does: bytes that do not
    /// exist or that a SyncManager refuses leave the frame untouched. Returns whether any
    /// byte was read (the working counter rule for reads).
    pub fn read(&mut self, addr: u16, buf: &mut [u8], mode: ReadMode) -> bool {
        let from = u32::from(addr);
        let to = from + buf.len() as u32;
        self.refresh_dynamic(from, to);
        let mut any = false;
        let mut events = SmEvents::new();
        let mem_len = self.mem.len() as u32;
        for (i, out) in buf.iter_mut().enumerate() {
            let a = from + i as u32;
            if a >= mem_len {
                break;
            }
            let value = if let Some(n) = self.sm_at(a) {
                match self.sm_read_byte(n, a, &mut events) {
                    Some(v) => v,
                    None => continue,
                }
            } else if a < u32::from(regs::PROCESS_RAM) {
                if self.access[a as usize] & regs::R == 0 {
                    continue;
                }
                self.mem[a as usize]
            } else {
                self.mem[a as usize]
            };
            any = true;
            match mode {
                ReadMode::Replace => *out = value,
                ReadMode::Or => *out |= value,
            }
        }
        if !events.is_empty() {
            self.apply_sm_events(events.as_slice());
        }
        if any && from < 0x0132 && to > 0x0110 {
            if from < 0x0112 {
                self.clear_event(EVENT_DL_STATUS);
            }
            if from < 0x0132 && to > 0x0130 {
                self.clear_event(EVENT_AL_STATUS);
            }
        }
        any
    }

    fn sm_read_byte(&mut self, n: usize, a: u32, events: &mut SmEvents) -> Option<u8> {
        if self.pdi_deactivated(n) {
            return None;
        }
        let s = &self.sms[n];
        if s.cfg.direction() != Some(SmDirection::Read) {
            return None;
        }
        let last = a == s.last();
        match s.cfg.mode() {
            Some(SmMode::Mailbox) => {
                if !s.mailbox_full {
                    return None;
                }
                if last {
                    events.push(SmEvent::MailboxRead(n));
                }
            }
            Some(SmMode::Buffered) => {
                if !s.read_locked {
                    // The master gets the newest buffer the firmware completed.
                    let start = usize::from(s.cfg.start);
                    let len = usize::from(s.cfg.length);
                    let mut data = self.mem[start..start + len].to_vec();
                    self.app.fill_inputs(self.now_ns, n as u8, &mut data);
                    self.mem[start..start + len].copy_from_slice(&data);
                    self.sms[n].read_locked = true;
                }
                if last {
                    events.push(SmEvent::BufferReleased(n));
                }
            }
            None => return None,
        }
        Some(self.mem[a as usize])
    }

    /// Writes `data` at `addr` as the EtherCAT side does. Returns whether any byte was
    /// written (the working counter rule for writes).
    pub fn write(&mut self, addr: u16, data: &[u8]) -> bool {
        let from = u32::from(addr);
        let to = from + data.len() as u32;
        let mut any = false;
        let mut events = SmEvents::new();
        let mem_len = self.mem.len() as u32;
        for (i, &v) in data.iter().enumerate() {
            let a = from + i as u32;
            if a >= mem_len {
                break;
            }
            if let Some(n) = self.sm_at(a) {
                if self.sm_write_byte(n, a, v, &mut events) {
                    any = true;
                }
                continue;
            }
            if a < u32::from(regs::PROCESS_RAM) && self.access[a as usize] & regs::W == 0 {
                continue;
            }
            self.mem[a as usize] = v;
            any = true;
        }
        if any {
            self.registers_written(from, to.min(mem_len));
        }
        if !events.is_empty() {
            self.apply_sm_events(events.as_slice());
        }
        any
    }

    fn sm_write_byte(&mut self, n: usize, a: u32, v: u8, events: &mut SmEvents) -> bool {
        if self.pdi_deactivated(n) {
            return false;
        }
        let s = &mut self.sms[n];
        if s.cfg.direction() != Some(SmDirection::Write) {
            return false;
        }
        let last = a == s.last();
        match s.cfg.mode() {
            Some(SmMode::Mailbox) => {
                if s.mailbox_full {
                    return false;
                }
                self.mem[a as usize] = v;
                if last {
                    self.sms[n].mailbox_full = true;
                    events.push(SmEvent::MailboxWritten(n));
                }
                true
            }
            Some(SmMode::Buffered) => {
                let off = (a - u32::from(s.cfg.start)) as usize;
                if s.pending.len() != usize::from(s.cfg.length) {
                    s.pending = vec![0; usize::from(s.cfg.length)];
                }
                s.pending[off] = v;
                s.pending_touched = true;
                if last {
                    events.push(SmEvent::BufferWritten(n));
                }
                true
            }
            None => false,
        }
    }

    /// A read followed by a write of the same bytes (APRW, FPRW, BRW): returns the working
    /// counter increment (+1 read, +2 write, ETG.1000.4 table 26). `buf` receives the old
    /// contents where readable.
    pub fn read_write(&mut self, addr: u16, buf: &mut [u8], mode: ReadMode) -> u16 {
        let incoming = buf.to_vec();
        let mut wkc = 0;
        if self.read(addr, buf, mode) {
            wkc += 1;
        }
        if self.write(addr, &incoming) {
            wkc += 2;
        }
        wkc
    }

    fn refresh_dynamic(&mut self, from: u32, to: u32) {
        let hit = |a: u16, len: u32| from < u32::from(a) + len && u32::from(a) < to;
        if self.config.chip.dc == DcUnit::Full {
            if hit(regs::DC_SYSTEM_TIME, 8) {
                let t = self.system_time(self.now_ns);
                self.put64(regs::DC_SYSTEM_TIME, t);
            }
            if hit(regs::DC_START_TIME, 8)
                && self.mem[usize::from(regs::DC_SYNC_ACTIVATION)] & 1 != 0
            {
                let start = self.get64(regs::DC_START_TIME);
                let cycle = u64::from(self.get32(regs::DC_SYNC0_CYCLE));
                let now = self.system_time(self.now_ns);
                if cycle > 0 && now > start {
                    let next = start + (now - start).div_ceil(cycle) * cycle;
                    self.put64(regs::DC_START_TIME, next);
                }
            }
        }
        if hit(regs::SII_CONTROL, 2) {
            self.update_sii_status();
        }
    }

    fn registers_written(&mut self, from: u32, to: u32) {
        let hit = |a: u16, len: u32| from < u32::from(a) + len && u32::from(a) < to;
        if hit(regs::AL_CONTROL, 1) {
            self.al_control_written();
        }
        if hit(regs::ERROR_COUNTERS, 0x14) {
            // A write to any error counter clears it (ETG.1000.4 table 45).
            let a = from.max(u32::from(regs::ERROR_COUNTERS)) as usize;
            let b = to.min(u32::from(regs::ERROR_COUNTERS_END) + 1) as usize;
            self.mem[a..b].fill(0);
        }
        if hit(regs::WD_COUNTER_PD, 2) {
            let a = from.max(u32::from(regs::WD_COUNTER_PD)) as usize;
            let b = to.min(u32::from(regs::WD_COUNTER_PD) + 2) as usize;
            self.mem[a..b].fill(0);
        }
        if hit(regs::SII_CONTROL + 1, 1) {
            self.sii_command();
        }
        if hit(regs::FMMU_BASE, 0x100) {
            for (n, f) in self.fmmus.iter_mut().enumerate() {
                let b = usize::from(regs::FMMU_BASE) + 16 * n;
                *f = Fmmu::parse(&self.mem[b..b + 16]);
            }
        }
        if hit(regs::SM_BASE, 0x80) {
            self.sm_registers_written(from, to);
        }
        if self.config.chip.dc != DcUnit::None && hit(regs::DC_RECV_TIME_PORT0, 4) {
            self.latch_receive_times();
        }
        if self.config.chip.dc == DcUnit::Full && hit(regs::DC_SYSTEM_TIME, 8) {
            self.system_time_written();
        }
    }

    // ----- EEPROM interface ----------------------------------------------------------

    fn update_sii_status(&mut self) {
        if self.sii_pending_cmd != 0 && self.now_ns >= self.sii_busy_until {
            self.sii_pending_cmd = 0;
            let hi = usize::from(regs::SII_CONTROL) + 1;
            self.mem[hi] &= !(SII_BUSY | 0x07);
        }
    }

    fn sii_command(&mut self) {
        let hi = usize::from(regs::SII_CONTROL) + 1;
        let lo = usize::from(regs::SII_CONTROL);
        // Only bit 0 (write enable) of the low byte is writable; the read size (bit 6) and
        // the other bits are fixed (ek1100-el2828-el2889.pcapng frames 103/106: written
        // 0x00, read back 0x40).
        self.mem[lo] = self.config.chip.sii_control_reset | (self.mem[lo] & 0x01);
        let written = self.mem[hi];
        let cmd = written & 0x07;
        // Status bits are read-only: keep what the ESC shows.
        let mut status = self.mem[hi] & SII_CHECKSUM_ERROR;
        if self.sii_pending_cmd != 0 {
            // A command while busy is ignored.
            self.mem[hi] = SII_BUSY | self.sii_pending_cmd | status;
            return;
        }
        if cmd == 0 {
            self.mem[hi] = status;
            return;
        }
        let word_addr = self.get32(regs::SII_ADDRESS) as usize;
        let busy_ns = match cmd {
            SII_CMD_READ => {
                let eight = self.mem[usize::from(regs::SII_CONTROL)] & 0x40 != 0;
                let words = if eight { 4 } else { 2 };
                for k in 0..words {
                    let w = self.eeprom_word(word_addr + k).to_le_bytes();
                    let at = usize::from(regs::SII_DATA) + 2 * k;
                    self.mem[at..at + 2].copy_from_slice(&w);
                }
                self.config.eeprom_read_ns
            }
            SII_CMD_WRITE => {
                if self.mem[usize::from(regs::SII_CONTROL)] & 0x01 == 0 {
                    self.mem[hi] = status | SII_WRITE_ENABLE_ERROR;
                    return;
                }
                let v = self.get16(regs::SII_DATA);
                let at = 2 * word_addr;
                if self.eeprom.len() < at + 2 {
                    self.eeprom.resize(at + 2, 0xFF);
                }
                self.eeprom[at..at + 2].copy_from_slice(&v.to_le_bytes());
                self.config.eeprom_write_ns
            }
            SII_CMD_RELOAD => {
                self.put16(regs::STATION_ALIAS, self.eeprom_word(4));
                status = if self.sii_checksum_ok() {
                    0
                } else {
                    SII_CHECKSUM_ERROR
                };
                self.config.eeprom_read_ns
            }
            _ => {
                self.mem[hi] = status | SII_COMMAND_ERROR;
                return;
            }
        };
        self.sii_pending_cmd = cmd;
        self.sii_busy_until = self.now_ns + busy_ns;
        self.mem[hi] = status | SII_BUSY | cmd;
        // Write enable (bit 0) is self-clearing after a command.
        self.mem[usize::from(regs::SII_CONTROL)] &= !0x01;
    }

    /// The EEPROM contents as the ESC sees them now (including writes by the master).
    pub fn eeprom(&self) -> &[u8] {
        &self.eeprom
    }

    // ----- distributed clocks --------------------------------------------------------

    /// The terminal's local clock at bus time `now_ns` (drift and start offset applied,
    /// plus the corrections of the time control loop).
    pub fn local_time(&self, now_ns: u64) -> u64 {
        let drift = (now_ns as f64 * self.config.drift_ppm * 1e-6) as i64;
        (self.config.clock_start_ns as i64)
            .wrapping_add(now_ns as i64)
            .wrapping_add(drift)
            .wrapping_add(self.dc_correction_ns) as u64
    }

    /// The terminal's DC system time (local time + offset 0x0920) at bus time `now_ns`.
    pub fn system_time(&self, now_ns: u64) -> u64 {
        self.local_time(now_ns)
            .wrapping_add(self.get64(regs::DC_SYSTEM_OFFSET))
    }

    fn latch_receive_times(&mut self) {
        let t0 = self.local_time(self.now_ns);
        self.put32(regs::DC_RECV_TIME_PORT0, t0 as u32);
        if self.links[1] {
            let t1 = self.local_time(self.now_ns + self.downstream_rtt_ns);
            self.put32(regs::DC_RECV_TIME_PORT0 + 4, t1 as u32);
        }
        if self.config.chip.dc == DcUnit::Full {
            self.put64(regs::DC_RECV_TIME_EPU, t0);
        }
    }

    fn system_time_written(&mut self) {
        // ETG.1000.4 9.1.4: a write of 0x0910 gives the reference's system time as it left
        // the reference; the time control loop compares it with the local copy (after the
        // propagation delay 0x0928) and slews the local clock towards it.
        let received = self.get64(regs::DC_SYSTEM_TIME);
        let delay = u64::from(self.get32(regs::DC_SYSTEM_DELAY));
        let local = self.system_time(self.now_ns);
        let diff = received.wrapping_add(delay).wrapping_sub(local) as i64;
        let magnitude = diff.unsigned_abs().min(0x7FFF_FFFF) as u32;
        let sign = if diff > 0 { 0x8000_0000 } else { 0 };
        self.put32(regs::DC_SYSTEM_DIFF, magnitude | sign);
        // Slew by a fraction of the difference per compare, as the ESC's filter does.
        self.dc_correction_ns += diff / 4;
        let now = self.system_time(self.now_ns);
        self.put64(regs::DC_SYSTEM_TIME, now);
    }

    // ----- DL status -------------------------------------------------------------------

    fn update_dl_status(&mut self) {
        // ETG.1000.4 table 39. Bit 0: PDI operational (EEPROM loaded); bit 1: PDI watchdog
        // not expired, 0 without a PDI (EK1100 reads 0x5A31, EL2828 0x5A33, EL2889 0x5613
        // in ek1100-el2828-el2889.pcapng frames 218, 370, 502).
        let mut v: u16 = 0x0001;
        if self.eeprom_word(0) & 0x00FF != 0 {
            v |= 0x0002;
        }
        for (p, &link) in self.links.iter().enumerate() {
            if link {
                v |= 1 << (4 + p);
                v |= 1 << (9 + 2 * p); // communication established
            } else {
                v |= 1 << (8 + 2 * p); // loop closed
            }
        }
        self.put16(regs::DL_STATUS, v);
    }

    // ----- logical addressing --------------------------------------------------------

    /// A logical datagram (LRD, LWR, LRW) at logical address `lad` over `data`: applies
    /// every active FMMU of this terminal and returns its working counter increment
    /// (read +1, write +1 for LWR, +2 for LRW; ETG.1000.4 table 26).
    pub fn logical(&mut self, cmd: LogicalCommand, lad: u32, data: &mut [u8]) -> u16 {
        let want_read = matches!(cmd, LogicalCommand::Read | LogicalCommand::ReadWrite);
        let want_write = matches!(cmd, LogicalCommand::Write | LogicalCommand::ReadWrite);
        let end = u64::from(lad) + data.len() as u64;
        let mut read_ok = false;
        let mut write_ok = false;
        let overlaps = |f: &Fmmu| {
            let f_start = u64::from(f.logical_start);
            let f_end = f_start + u64::from(f.length);
            f.active && f.length > 0 && f_end > u64::from(lad) && f_start < end
        };
        // Reads see the memory before this datagram's writes (on-the-fly processing reads
        // a byte as it passes and writes the frame's incoming byte), so the incoming bytes
        // of each write window are taken before any read replaces them.
        let mut writes = [(Fmmu::default(), 0u32, 0usize, 0usize); 16];
        let mut n_writes = 0;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if want_write {
            for f in self.fmmus.iter().filter(|f| overlaps(f) && f.kind & 2 != 0) {
                let (d_off, _, n) = Self::overlap(f, lad, data.len());
                if n > 0 && n_writes < writes.len() {
                    let slice_lad = lad.wrapping_add(d_off as u32);
                    writes[n_writes] = (*f, slice_lad, scratch.len(), n);
                    n_writes += 1;
                    scratch.extend_from_slice(&data[d_off..d_off + n]);
                }
            }
        }
        if want_read {
            for i in 0..self.fmmus.len() {
                let f = self.fmmus[i];
                if overlaps(&f) && f.kind & 1 != 0 && self.fmmu_read(&f, lad, data) {
                    read_ok = true;
                }
            }
        }
        for (f, slice_lad, at, n) in &writes[..n_writes] {
            if self.fmmu_write(f, *slice_lad, &scratch[*at..*at + *n]) {
                write_ok = true;
            }
        }
        self.scratch = scratch;
        let mut wkc = 0;
        if read_ok {
            wkc += 1;
        }
        if write_ok {
            wkc += if cmd == LogicalCommand::ReadWrite {
                2
            } else {
                1
            };
        }
        wkc
    }

    /// The overlap of FMMU `f` with a datagram at `lad` of `len` bytes:
    /// (offset in the datagram, offset in the FMMU window, length).
    fn overlap(f: &Fmmu, lad: u32, len: usize) -> (usize, usize, usize) {
        let d_start = u64::from(lad);
        let f_start = u64::from(f.logical_start);
        let start = d_start.max(f_start);
        let stop = (d_start + len as u64).min(f_start + u64::from(f.length));
        (
            (start - d_start) as usize,
            (start - f_start) as usize,
            stop.saturating_sub(start) as usize,
        )
    }

    fn fmmu_read(&mut self, f: &Fmmu, lad: u32, data: &mut [u8]) -> bool {
        let (d_off, f_off, n) = Self::overlap(f, lad, data.len());
        if n == 0 {
            return false;
        }
        if !f.is_bitwise() || !self.config.chip.bit_fmmus() {
            let phys = f.physical_start.wrapping_add(f_off as u16);
            return self.read(phys, &mut data[d_off..d_off + n], ReadMode::Replace);
        }
        // Bit-wise: logical bit k of the window maps to physical bit physical_start_bit + k.
        let (first_bit, last_bit) = Self::window_bits(f, f_off, n);
        let p_first = u32::from(f.physical_start) * 8 + u32::from(f.physical_start_bit);
        let total_bits = last_bit - first_bit + 1;
        let p_from = (p_first + (first_bit - u32::from(f.start_bit))) / 8;
        let p_to = (p_first + (last_bit - u32::from(f.start_bit))) / 8;
        let mut phys = vec![0u8; (p_to - p_from + 1) as usize];
        if !self.read(p_from as u16, &mut phys, ReadMode::Replace) {
            return false;
        }
        for k in 0..total_bits {
            let lbit = first_bit + k; // bit index from the FMMU's logical start byte
            let pbit = p_first + (lbit - u32::from(f.start_bit)) - p_from * 8;
            let v = (phys[(pbit / 8) as usize] >> (pbit % 8)) & 1;
            let dbit = lbit as usize - f_off * 8 + d_off * 8;
            let byte = &mut data[dbit / 8];
            *byte = (*byte & !(1 << (dbit % 8))) | (v << (dbit % 8));
        }
        true
    }

    /// The logical bit range (from the FMMU's first logical byte, bit 0) covered by a
    /// datagram overlap starting `f_off` bytes into the window for `n` bytes.
    fn window_bits(f: &Fmmu, f_off: usize, n: usize) -> (u32, u32) {
        let win_first = u32::from(f.start_bit);
        let win_last = (u32::from(f.length) - 1) * 8 + u32::from(f.stop_bit);
        let first = (f_off as u32 * 8).max(win_first);
        let last = ((f_off + n) as u32 * 8 - 1).min(win_last);
        (first, last.max(first))
    }

    fn fmmu_write(&mut self, f: &Fmmu, lad: u32, data: &[u8]) -> bool {
        let (d_off, f_off, n) = Self::overlap(f, lad, data.len());
        if n == 0 {
            return false;
        }
        if !f.is_bitwise() || !self.config.chip.bit_fmmus() {
            let phys = f.physical_start.wrapping_add(f_off as u16);
            return self.write(phys, &data[d_off..d_off + n]);
        }
        let (first_bit, last_bit) = Self::window_bits(f, f_off, n);
        let p_first = u32::from(f.physical_start) * 8 + u32::from(f.physical_start_bit);
        let p_from = (p_first + (first_bit - u32::from(f.start_bit))) / 8;
        let p_to = (p_first + (last_bit - u32::from(f.start_bit))) / 8;
        // Merge into the current physical bytes (the pending buffer for an output SM).
        let mut phys: Vec<u8> = (p_from..=p_to)
            .map(|a| self.current_write_byte(a))
            .collect();
        for k in 0..=(last_bit - first_bit) {
            let lbit = first_bit + k;
            let pbit = p_first + (lbit - u32::from(f.start_bit)) - p_from * 8;
            let dbit = lbit as usize - f_off * 8 + d_off * 8;
            let v = (data[dbit / 8] >> (dbit % 8)) & 1;
            let byte = &mut phys[(pbit / 8) as usize];
            *byte = (*byte & !(1 << (pbit % 8))) | (v << (pbit % 8));
        }
        self.write(p_from as u16, &phys)
    }

    fn current_write_byte(&self, a: u32) -> u8 {
        if let Some(n) = self.sm_at(a) {
            let s = &self.sms[n];
            if s.cfg.mode() == Some(SmMode::Buffered) {
                let off = (a - u32::from(s.cfg.start)) as usize;
                if s.pending_touched {
                    return s.pending.get(off).copied().unwrap_or(0);
                }
            }
        }
        self.mem.get(a as usize).copied().unwrap_or(0)
    }
}

fn word0_of(sii: &Sii) -> u16 {
    sii.word(0)
}

fn state_rank(s: AlState) -> u8 {
    match s {
        AlState::Init => 0,
        AlState::Bootstrap | AlState::PreOp => 1,
        AlState::SafeOp => 2,
        AlState::Op => 3,
    }
}

#[cfg(test)]
mod tests;
