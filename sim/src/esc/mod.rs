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

mod al;
mod dc;
mod eeprom;
mod fmmu;
pub mod regs;
mod sm;
mod sync;

pub use dc::speed_counter_speed;
pub use fmmu::Fmmu;
use sm::{SmEvent, SmEvents, SmRuntime};
pub use sync::SyncPulses;

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
    /// `None`: the segment gives the terminal a power-on offset from its position
    /// (deterministic, 0..20 ms, like the local times in the captures, which differ by
    /// ~10 ms between the terminals of one bus, e.g. ek1100-el2828-el2889.pcapng
    /// frames 506..516), so a master's DC code has offsets to compute.
    pub clock_start_ns: Option<u64>,
    /// How long an EEPROM read keeps the SII interface busy.
    pub eeprom_read_ns: u64,
    /// How long an EEPROM write keeps the SII interface busy.
    pub eeprom_write_ns: u64,
    /// How long the firmware takes to pick up a mailbox request (0 = at once). Real
    /// firmware needs a while: in ek1914-el3004-mailbox.pcapng the EL3004's reply shows
    /// in SM1 about two polls (~0.5 ms) after the request (frames 958..964).
    pub mailbox_latency_ns: u64,
}

impl EscConfig {
    /// The configuration for a terminal described by `sii`: its chip from
    /// [`EscChip::for_product`], no drift, EEPROM timings of an I²C EEPROM: 640 µs per
    /// read (in ek1100-el2828-el2889.pcapng the interface is still busy up to ~600 µs
    /// after a read command and free from ~676 µs, e.g. frames 104..110), ~5 ms per write.
    pub fn for_sii(sii: &Sii) -> EscConfig {
        EscConfig {
            chip: chip_for_sii(sii),
            drift_ppm: 0.0,
            clock_start_ns: None,
            eeprom_read_ns: 640_000,
            eeprom_write_ns: 5_000_000,
            mailbox_latency_ns: 0,
        }
    }
}

/// The ESC a terminal with this SII has: the chip known for its product, or, where the
/// SII places mailboxes or SyncManagers beyond that chip's process RAM (the AKD servo
/// drive's mailboxes sit at 0x1800..0x1FFF, past an ET1200's 1 KiB), an ET1100-class
/// ESC with 8 KiB, enough for every image in the test data.
fn chip_for_sii(sii: &Sii) -> EscChip {
    let chip = EscChip::for_product(sii.vendor_id, sii.product_code);
    let mailbox_ends = [
        &sii.rx_mailbox,
        &sii.tx_mailbox,
        &sii.bootstrap_rx_mailbox,
        &sii.bootstrap_tx_mailbox,
    ]
    .into_iter()
    .map(|m| usize::from(m.offset) + usize::from(m.size));
    let sm_ends = sii
        .sync_managers
        .iter()
        .map(|sm| usize::from(sm.start) + usize::from(sm.length));
    let needed = mailbox_ends.chain(sm_ends).max().unwrap_or(0);
    if needed <= chip.memory_size() {
        return chip;
    }
    let big = EscChip::ET1100_COUPLER;
    if needed > big.memory_size() {
        tracing::warn!(
            vendor = sii.vendor_id,
            product = sii.product_code,
            needed,
            "SII places areas beyond the 8 KiB of process RAM emulated; they stay unreachable"
        );
    }
    big
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

/// Where a frame goes after a terminal's port 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRoute {
    /// On to the next terminal.
    Forward,
    /// Back towards the master (loop closed).
    TurnBack,
    /// Out of an open port without a link: the frame is lost.
    Lost,
}

/// How a read combines with the data already in the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// The register value replaces the frame's byte (APRD, FPRD).
    Replace,
    /// The register value is ORed into the frame's byte (BRD).
    Or,
}

/// Default watchdog divider: (2498 + 2) * 40 ns = 100 µs per tick, ETG.1000.4 table 50.
const WD_DIVIDER_DEFAULT: u16 = 0x09C2;
/// Default PDI and process data watchdog time: 1000 ticks = 100 ms.
const WD_TIME_DEFAULT: u16 = 0x03E8;
/// SII control command bits (bits 8..10), ETG.1000.4 table 48.
const SII_CMD_READ: u8 = 0x01;
const SII_CMD_WRITE: u8 = 0x02;
const SII_CMD_RELOAD: u8 = 0x04;
/// SII status bits in the high byte of 0x0502 (ESC datasheet section II v3.3 2.11.3):
/// bit 11 checksum error in the ESC configuration area, bit 12 EEPROM loading status
/// ("1: EEPROM not loaded, device information not available").
const SII_CHECKSUM_ERROR: u8 = 0x08;
const SII_NOT_LOADED: u8 = 0x10;
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
    /// The last load of the configuration area succeeded (DL status bit 0).
    eeprom_loaded: bool,
    /// The station alias was taken over since power-on (it is only at the first load).
    alias_loaded: bool,
    wd_last_ns: Option<u64>,
    dc_loop: dc::DcLoop,
    /// The bus time of the last power cycle: the local clock restarted from 0 then.
    /// `None`: it runs from power-on, [`EscConfig::clock_start_ns`] at bus time 0.
    clock_restarted_at: Option<u64>,
    sync: sync::SyncUnit,
    downstream_rtt_ns: u64,
    links: [bool; 4],
    now_ns: u64,
    /// Reused buffer for the incoming bytes of logical writes.
    scratch: Vec<u8>,
    /// Reused plan of a logical datagram's writes (FMMU, address, scratch range).
    write_plan: Vec<(usize, u32, usize, usize)>,
    /// A mailbox request waiting for the firmware: (SM, due time).
    mailbox_due: Option<(usize, u64)>,
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
            eeprom_loaded: false,
            alias_loaded: false,
            wd_last_ns: None,
            dc_loop: dc::DcLoop::default(),
            clock_restarted_at: None,
            sync: sync::SyncUnit::default(),
            downstream_rtt_ns: 0,
            links: [true, false, false, false],
            now_ns: 0,
            scratch: Vec::new(),
            mailbox_due: None,
            write_plan: Vec::new(),
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
        self.eeprom_loaded = false;
        self.alias_loaded = false;
        self.load_config_area();
        // DL control reset value: forwarding rule (bit 0), loops auto, RX FIFO size 7 and
        // byte 2 = 0xC7 as twincat-scan-boxes.pcapng frames 536/545 read it.
        self.put32(regs::DL_CONTROL, 0x00C7_0001);
        self.put16(regs::WD_DIVIDER, WD_DIVIDER_DEFAULT);
        self.put16(regs::WD_PDI, WD_TIME_DEFAULT);
        self.put16(regs::WD_PROCESS_DATA, WD_TIME_DEFAULT);
        self.put16(regs::WD_STATUS, 0x0001);
        self.mem[usize::from(regs::SII_CONTROL)] = chip.sii_control_reset;
        self.mem[usize::from(regs::SII_CONTROL) + 1] = self.load_status();
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
            // Speed counter start and filter depths at their reset values (ETG.1000.4
            // table 61; ESC datasheet section II, 0x0930 and 0x0934/0x0935).
            self.put16(regs::DC_SPEED_COUNTER_START, 0x1000);
            self.mem[usize::from(regs::DC_DIFFERENCE_FILTER_DEPTH)] = 0x04;
            self.mem[usize::from(regs::DC_SPEED_FILTER_DEPTH)] = 0x0C;
        }
        self.fmmus = vec![Fmmu::default(); usize::from(chip.fmmus.min(16))];
        self.sms = vec![SmRuntime::default(); usize::from(chip.sync_managers.min(16))];
        self.state = AlState::Init;
        self.error = false;
        self.status_code = 0;
        self.outputs_valid = false;
        self.last_mailbox = None;
        self.outbox.clear();
        self.mailbox_due = None;
        self.sii_busy_until = 0;
        self.sii_pending_cmd = 0;
        self.wd_last_ns = None;
        self.dc_loop = dc::DcLoop::default();
        self.sync = sync::SyncUnit::default();
        self.update_al_registers();
        self.update_dl_status();
        self.update_sm_registers();
        // Links came up at power-on: the DL status event is pending until 0x0110 is read.
        self.put16(regs::ECAT_EVENT_REQUEST, EVENT_DL_STATUS);
    }

    /// Loads the registers an ESC takes from the SII's configuration area (words 0..7,
    /// ETG.2010) at power-up and on an EEPROM reload command: PDI control
    /// (word 0), PDI configuration (word 1), the SYNC pulse length (word 2, "sync impulse
    /// length" in 10 ns units; only where the chip has SYNC signals) and the station
    /// alias (word 4). ESC datasheet section II v3.3: these registers read 0 "until first
    /// EEPROM load, then EEPROM word A0/A1/A2/A4" (2.6, 2.15.4.2, 2.2.2), and a load
    /// only takes when the configuration area's checksum is right ("transferred to the
    /// designated registers ... if the CRC is correct", 2.11.5.2; document history 1.5:
    /// "EEPROM value after EEPROM was loaded successful"); a failed load leaves them as
    /// they are and shows in 0x0502 bits 11/12 and DL status bit 0. The alias is only
    /// taken over at the first load after power-on or reset (2.2.2; the ESC20, which
    /// takes it at every reload, is not emulated).
    fn load_config_area(&mut self) {
        self.eeprom_loaded = self.sii_checksum_ok();
        if !self.eeprom_loaded {
            return;
        }
        self.put16(regs::PDI_CONTROL, self.eeprom_word(0));
        self.put16(regs::PDI_CONFIG, self.eeprom_word(1));
        if self.config.chip.dc == DcUnit::Full {
            self.put16(regs::DC_SYNC_PULSE_LENGTH, self.eeprom_word(2));
        }
        if !self.alias_loaded {
            self.put16(regs::STATION_ALIAS, self.eeprom_word(4));
            self.alias_loaded = true;
        }
    }

    /// The 0x0502 status bits the last load of the configuration area left: checksum
    /// error and "EEPROM not loaded" when it failed, none when it took.
    fn load_status(&self) -> u8 {
        if self.eeprom_loaded {
            0
        } else {
            SII_CHECKSUM_ERROR | SII_NOT_LOADED
        }
    }

    fn sii_checksum_ok(&self) -> bool {
        self.eeprom.get(14).copied() == Some(crate::sii::header_crc(&self.eeprom))
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

    /// Where a frame goes after this terminal: on through port 1, back (port 1 closed,
    /// by DL control or for want of a link), or nowhere (port 1 forced open without a
    /// link: the frame leaves into an unconnected port and is lost).
    pub fn port1_route(&self) -> PortRoute {
        let setting = (self.mem[usize::from(regs::DL_CONTROL) + 1] >> 2) & 0x03;
        match (setting, self.links[1]) {
            (3, _) => PortRoute::TurnBack,
            (2, false) => PortRoute::Lost,
            (_, true) => PortRoute::Forward,
            (_, false) => PortRoute::TurnBack,
        }
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

    /// Which ports have a link (port 0 is upstream). Sets the DL status register; each
    /// link lost counts in the port's "Lost Link Counter" 0x0310 + port (ETG.1000.4 /
    /// ESC datasheet, saturating at 255), unless the master keeps the port's loop closed
    /// (DL control 0x0101 setting 11: nothing passes through the port anyway).
    pub fn set_links(&mut self, links: [bool; 4]) {
        if links == self.links {
            return;
        }
        let loops = self.mem[usize::from(regs::DL_CONTROL) + 1];
        for (p, (&was, &is)) in self.links.iter().zip(&links).enumerate() {
            let closed = (loops >> (2 * p)) & 0x03 == 3;
            if was && !is && !closed {
                let at = usize::from(regs::LOST_LINKS) + p;
                self.mem[at] = self.mem[at].saturating_add(1);
            }
        }
        self.links = links;
        self.update_dl_status();
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

    /// Counts an invalid frame received on `port`, as the ESC does for a frame with a bad
    /// length or checksum that no ESC before it marked: "invalid frame counter" of the
    /// port, 0x0300 + 2 * port (ETG.1000.4 / ESC datasheet "RX Error Counter"
    /// 0x0300:0x0307), saturating at 255.
    pub fn count_rx_error(&mut self, port: usize) {
        self.count_error(usize::from(regs::ERROR_COUNTERS) + 2 * port.min(3));
    }

    /// Counts a frame received on `port` that an ESC before this one already found
    /// invalid and marked: "Forwarded RX Error Counter" 0x0308 + port (ETG.1000.4 / ESC
    /// datasheet), saturating at 255. Only the first ESC to see an error counts it as an
    /// invalid frame; the ones after it count it here, so a master can tell where it
    /// happened.
    pub fn count_forwarded_rx_error(&mut self, port: usize) {
        self.count_error(usize::from(regs::FORWARDED_RX_ERRORS) + port.min(3));
    }

    fn count_error(&mut self, at: usize) {
        self.mem[at] = self.mem[at].saturating_add(1);
    }

    /// Whether the configuration leaves the clock's power-on offset to the segment.
    pub fn clock_start_unset(&self) -> bool {
        self.config.clock_start_ns.is_none()
    }

    /// Sets the local DC time at bus time 0 (see [`EscConfig::clock_start_ns`]).
    pub fn set_clock_start_ns(&mut self, ns: u64) {
        self.config.clock_start_ns = Some(ns);
    }

    /// Sets the DC clock drift in ppm.
    pub fn set_drift_ppm(&mut self, ppm: f64) {
        self.config.drift_ppm = ppm;
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
                    // An SM configured past the end of the RAM has only its part inside.
                    let end = (start + len).min(self.mem.len());
                    if let Some(area) = self.mem.get_mut(start..end) {
                        self.app.fill_inputs(self.now_ns, n as u8, area);
                    }
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
        if self.config.chip.dc == DcUnit::Full && hit(regs::DC_SYSTEM_TIME, 8) {
            // One frame reads the same value from every synchronised clock.
            let t = self.time_at_reference();
            self.put64(regs::DC_SYSTEM_TIME, t);
        }
        if hit(regs::SII_CONTROL, 2) {
            self.update_sii_status();
        }
    }

    fn registers_written(&mut self, from: u32, to: u32) {
        let hit = |a: u16, len: u32| from < u32::from(a) + len && u32::from(a) < to;
        if hit(regs::DL_CONTROL + 1, 1) {
            self.update_dl_status();
        }
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
        if self.config.chip.dc == DcUnit::Full && hit(regs::DC_SYNC_ACTIVATION, 1) {
            self.sync_activation_written();
        }
        if self.config.chip.dc == DcUnit::Full && hit(regs::DC_START_TIME, 8) {
            self.start_time_written(from, to);
        }
        if self.config.chip.dc == DcUnit::Full && hit(regs::DC_SPEED_COUNTER_START, 2) {
            self.speed_counter_start_written();
        }
        // The compare needs at least the first byte, 0x0910 (section II table 100).
        if self.config.chip.dc == DcUnit::Full && hit(regs::DC_SYSTEM_TIME, 1) {
            self.system_time_written();
        }
    }

    // ----- DL status -------------------------------------------------------------------

    /// Whether port `p`'s loop is open: DL control 0x0101 bits 2p..2p+1 (00 auto and 01
    /// auto-close: open with a link; 10 always open; 11 always closed), ETG.1000.4 table 37.
    fn port_open(&self, p: usize) -> bool {
        let setting = (self.mem[usize::from(regs::DL_CONTROL) + 1] >> (2 * p)) & 0x03;
        match setting {
            0 | 1 => self.links[p],
            2 => true,
            _ => false,
        }
    }

    fn update_dl_status(&mut self) {
        // ETG.1000.4 table 39. Bit 0: PDI operational (EEPROM loaded correctly, ESC
        // datasheet section II v3.3 2.4.3); bit 1: PDI watchdog not expired, 0 without a
        // PDI (PDI control 0x0140 = 0: EK1100 reads 0x5A31, EL2828 0x5A33, EL2889 0x5613
        // in ek1100-el2828-el2889.pcapng frames 218, 370, 502).
        let mut v: u16 = u16::from(self.eeprom_loaded);
        if self.mem[usize::from(regs::PDI_CONTROL)] != 0 {
            v |= 0x0002;
        }
        for p in 0..4 {
            let link = self.links[p];
            let open = self.port_open(p);
            if link {
                v |= 1 << (4 + p);
            }
            if !open {
                v |= 1 << (8 + 2 * p); // loop closed
            }
            if link && open {
                v |= 1 << (9 + 2 * p); // communication established
            }
        }
        if self.get16(regs::DL_STATUS) != v {
            self.put16(regs::DL_STATUS, v);
            self.raise_event(EVENT_DL_STATUS);
        }
    }
}

fn word0_of(sii: &Sii) -> u16 {
    sii.word(0)
}

#[cfg(test)]
mod tests;
