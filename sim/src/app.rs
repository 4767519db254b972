//! The firmware side of a simulated terminal: what the ESC hands to the application
//! (mailbox, process data, state checks).
//!
//! A real terminal is an EtherCAT slave controller (ESC) plus a microcontroller or
//! logic that runs the "application": it answers mailbox requests, produces inputs,
//! consumes outputs and decides whether an AL state change is acceptable. In the
//! simulator the ESC is [`crate::esc::Esc`]; the application is anything that
//! implements [`TerminalApp`]. The ESC calls the application at these points:
//!
//! | when (ESC side)                                          | call |
//! |----------------------------------------------------------|------|
//! | master requests an AL state change the ESC itself accepts | [`TerminalApp::check_transition`] |
//! | the AL state changed                                     | [`TerminalApp::state_changed`] |
//! | the master completed a write to the receive mailbox (SM0)  | [`TerminalApp::mailbox_received`] |
//! | once per frame a terminal sees (advance models, emergencies) | [`TerminalApp::poll`] |
//! | a three-buffer output SM received a complete buffer in OP (or OP entered) | [`TerminalApp::outputs_written`] |
//! | the master is about to read a three-buffer input SM      | [`TerminalApp::fill_inputs`] |
//! | SM watchdog expired or the state left OP                 | [`TerminalApp::outputs_safe`] |
//! | the terminal fell back with the error flag (SM watchdog, injected fault) | [`TerminalApp::error_indicated`] |
//! | the terminal was power-cycled                            | [`TerminalApp::power_cycled`] |
//!
//! Mailbox messages the application sends (replies and spontaneous emergencies) go into
//! a [`MailboxOutbox`]; the ESC copies them one at a time into the send mailbox (SM1)
//! whenever the master has emptied it, and keeps the last one for a repeat request.
//!
//! [`BasicApp`] is the application of terminals without a mailbox (couplers, simple
//! digital I/O): its process data sizes come from the SII PDO categories.

use std::collections::VecDeque;
use std::fmt;

use crate::sii::{Sii, SmType};

/// An AL status code (register 0x0134), ETG.1000.6 table 11.
pub type AlStatusCode = u16;

/// AL status codes, ETG.1000.6 table 11 (ETG.1020 adds some).
pub mod al_status {
    use super::AlStatusCode;
    /// No error.
    pub const NO_ERROR: AlStatusCode = 0x0000;
    /// Unspecified error.
    pub const UNSPECIFIED: AlStatusCode = 0x0001;
    /// No memory.
    pub const NO_MEMORY: AlStatusCode = 0x0002;
    /// Invalid requested state change.
    pub const INVALID_STATE_CHANGE: AlStatusCode = 0x0011;
    /// Unknown requested state.
    pub const UNKNOWN_STATE: AlStatusCode = 0x0012;
    /// Bootstrap not supported.
    pub const BOOTSTRAP_NOT_SUPPORTED: AlStatusCode = 0x0013;
    /// No valid firmware.
    pub const NO_VALID_FIRMWARE: AlStatusCode = 0x0014;
    /// Invalid mailbox configuration (bootstrap).
    pub const INVALID_MAILBOX_CONFIG_BOOT: AlStatusCode = 0x0015;
    /// Invalid mailbox configuration (PREOP).
    pub const INVALID_MAILBOX_CONFIG: AlStatusCode = 0x0016;
    /// Invalid sync manager configuration.
    pub const INVALID_SM_CONFIG: AlStatusCode = 0x0017;
    /// No valid inputs available.
    pub const NO_VALID_INPUTS: AlStatusCode = 0x0018;
    /// No valid outputs.
    pub const NO_VALID_OUTPUTS: AlStatusCode = 0x0019;
    /// Synchronization error.
    pub const SYNC_ERROR: AlStatusCode = 0x001A;
    /// Sync manager watchdog.
    pub const SM_WATCHDOG: AlStatusCode = 0x001B;
    /// Invalid sync manager types.
    pub const INVALID_SM_TYPES: AlStatusCode = 0x001C;
    /// Invalid output configuration.
    pub const INVALID_OUTPUT_CONFIG: AlStatusCode = 0x001D;
    /// Invalid input configuration.
    pub const INVALID_INPUT_CONFIG: AlStatusCode = 0x001E;
    /// Invalid watchdog configuration.
    pub const INVALID_WATCHDOG_CONFIG: AlStatusCode = 0x001F;
    /// Slave needs cold start.
    pub const NEEDS_COLD_START: AlStatusCode = 0x0020;
    /// Slave needs INIT.
    pub const NEEDS_INIT: AlStatusCode = 0x0021;
    /// Slave needs PREOP.
    pub const NEEDS_PREOP: AlStatusCode = 0x0022;
    /// Slave needs SAFEOP.
    pub const NEEDS_SAFEOP: AlStatusCode = 0x0023;
    /// Invalid input mapping.
    pub const INVALID_INPUT_MAPPING: AlStatusCode = 0x0024;
    /// Invalid output mapping.
    pub const INVALID_OUTPUT_MAPPING: AlStatusCode = 0x0025;
    /// Inconsistent settings.
    pub const INCONSISTENT_SETTINGS: AlStatusCode = 0x0026;
    /// Invalid DC SYNC configuration.
    pub const INVALID_DC_SYNC_CONFIG: AlStatusCode = 0x0030;
}

/// An AL state (register 0x0120/0x0130 bits 0..3), ETG.1000.6 table 9.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlState {
    /// INIT (1).
    Init,
    /// PRE-OPERATIONAL (2).
    PreOp,
    /// BOOTSTRAP (3).
    Bootstrap,
    /// SAFE-OPERATIONAL (4).
    SafeOp,
    /// OPERATIONAL (8).
    Op,
}

impl AlState {
    /// The state's code in the AL control/status registers.
    pub fn code(self) -> u8 {
        match self {
            AlState::Init => 1,
            AlState::PreOp => 2,
            AlState::Bootstrap => 3,
            AlState::SafeOp => 4,
            AlState::Op => 8,
        }
    }

    /// The state for a register code (bits 0..3), `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<AlState> {
        match code & 0x0F {
            1 => Some(AlState::Init),
            2 => Some(AlState::PreOp),
            3 => Some(AlState::Bootstrap),
            4 => Some(AlState::SafeOp),
            8 => Some(AlState::Op),
            _ => None,
        }
    }
}

impl fmt::Display for AlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlState::Init => "INIT",
            AlState::PreOp => "PRE-OP",
            AlState::Bootstrap => "BOOT",
            AlState::SafeOp => "SAFE-OP",
            AlState::Op => "OP",
        })
    }
}

/// Direction of a SyncManager as the master configured it (control register bits 2..3,
/// ETG.1000.4 table 58).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmDirection {
    /// ECAT reads, PDI writes: inputs / send mailbox (bits 2..3 = 00).
    Read,
    /// ECAT writes, PDI reads: outputs / receive mailbox (bits 2..3 = 01).
    Write,
}

/// Operation mode of a SyncManager (control register bits 0..1, ETG.1000.4 table 58).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmMode {
    /// Three-buffer (process data) mode (00).
    Buffered,
    /// One-buffer (mailbox) mode (10).
    Mailbox,
}

/// One SyncManager's configuration as the master wrote it into 0x0800 + 8 * n.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmConfig {
    /// Physical start address (bytes 0..1).
    pub start: u16,
    /// Length in bytes (bytes 2..3).
    pub length: u16,
    /// Control register (byte 4).
    pub control: u8,
    /// Activate register (byte 6): bit 0 = enable.
    pub activate: u8,
}

impl SmConfig {
    /// Whether the SM is enabled (activate bit 0) with a non-zero length.
    pub fn enabled(&self) -> bool {
        self.activate & 0x01 != 0 && self.length > 0
    }

    /// The mode bits (control bits 0..1); `None` for the reserved codes 01 and 11.
    pub fn mode(&self) -> Option<SmMode> {
        match self.control & 0x03 {
            0 => Some(SmMode::Buffered),
            2 => Some(SmMode::Mailbox),
            _ => None,
        }
    }

    /// The direction bits (control bits 2..3); `None` for the reserved codes 10 and 11.
    pub fn direction(&self) -> Option<SmDirection> {
        match (self.control >> 2) & 0x03 {
            0 => Some(SmDirection::Read),
            1 => Some(SmDirection::Write),
            _ => None,
        }
    }
}

/// A state change the ESC asks the application to accept.
#[derive(Clone, Copy, Debug)]
pub struct Transition<'a> {
    /// The current state.
    pub from: AlState,
    /// The requested state.
    pub to: AlState,
    /// The SyncManager configuration the master has written (index = SM number).
    pub sms: &'a [SmConfig],
}

/// Direction of process data, seen from the master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PdDirection {
    /// Outputs (RxPDOs, master writes).
    Outputs,
    /// Inputs (TxPDOs, master reads).
    Inputs,
}

/// The process data one SyncManager carries with the current PDO assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PdSm {
    /// SyncManager number.
    pub sm: u8,
    /// Outputs or inputs.
    pub direction: PdDirection,
    /// Size in bytes (sum of the assigned PDOs' bit lengths rounded up to bytes).
    pub bytes: u16,
}

/// Checks a transition to SAFE-OP/OP against the expected process data layout, as
/// real firmware does: an enabled process-data SM must have exactly the size of the
/// assigned PDOs and the right direction. Returns 0x001D (outputs) or 0x001E (inputs)
/// on a mismatch, ETG.1000.6 table 11. SMs with zero expected bytes may be disabled.
pub fn check_process_data_sms(layout: &[PdSm], sms: &[SmConfig]) -> Result<(), AlStatusCode> {
    for pd in layout {
        let code = match pd.direction {
            PdDirection::Outputs => al_status::INVALID_OUTPUT_CONFIG,
            PdDirection::Inputs => al_status::INVALID_INPUT_CONFIG,
        };
        let cfg = sms.get(usize::from(pd.sm)).copied().unwrap_or_default();
        if pd.bytes == 0 {
            if cfg.enabled() && cfg.length != 0 {
                return Err(code);
            }
            continue;
        }
        if !cfg.enabled() || cfg.length != pd.bytes {
            return Err(code);
        }
        let want_dir = match pd.direction {
            PdDirection::Outputs => SmDirection::Write,
            PdDirection::Inputs => SmDirection::Read,
        };
        if cfg.mode() != Some(SmMode::Buffered) || cfg.direction() != Some(want_dir) {
            return Err(al_status::INVALID_SM_CONFIG);
        }
    }
    Ok(())
}

/// Mailbox types (header byte 5 bits 0..3), ETG.1000.6 table 29.
pub mod mailbox_type {
    /// Error reply (ERR).
    pub const ERR: u8 = 0x00;
    /// ADS over EtherCAT.
    pub const AOE: u8 = 0x01;
    /// Ethernet over EtherCAT.
    pub const EOE: u8 = 0x02;
    /// CANopen over EtherCAT.
    pub const COE: u8 = 0x03;
    /// File access over EtherCAT.
    pub const FOE: u8 = 0x04;
    /// Servo profile over EtherCAT.
    pub const SOE: u8 = 0x05;
    /// Vendor specific.
    pub const VOE: u8 = 0x0F;
}

/// Mailbox error reply codes (ERR service data), ETG.1000.6 table 30.
pub mod mailbox_error {
    /// Syntax of the 6-byte mailbox header is wrong.
    pub const SYNTAX: u16 = 0x0001;
    /// The mailbox protocol is not supported.
    pub const UNSUPPORTED_PROTOCOL: u16 = 0x0002;
    /// Channel field contains a wrong value.
    pub const INVALID_CHANNEL: u16 = 0x0003;
    /// The service is not supported.
    pub const SERVICE_NOT_SUPPORTED: u16 = 0x0004;
    /// The mailbox header is invalid (length too short).
    pub const INVALID_HEADER: u16 = 0x0005;
    /// Length of received data is too short.
    pub const SIZE_TOO_SHORT: u16 = 0x0006;
    /// No more memory in the slave.
    pub const NO_MORE_MEMORY: u16 = 0x0007;
    /// The length of the data is inconsistent.
    pub const INVALID_SIZE: u16 = 0x0008;
}

/// Size of the mailbox header, ETG.1000.6 table 29.
pub const MAILBOX_HEADER_LEN: usize = 6;

/// The 6-byte header of a mailbox message, ETG.1000.6 table 29.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxHeader {
    /// Length of the data after the header.
    pub length: u16,
    /// Station address of the originator (0 = master).
    pub address: u16,
    /// Channel (bits 0..5 of byte 4).
    pub channel: u8,
    /// Priority (bits 6..7 of byte 4).
    pub priority: u8,
    /// Mailbox type (bits 0..3 of byte 5), see [`mailbox_type`].
    pub mailbox_type: u8,
    /// Counter 1..7 (bits 4..6 of byte 5), 0 if unused.
    pub counter: u8,
}

impl MailboxHeader {
    /// Parses the header at the start of `message`; `None` if it is shorter than 6 bytes.
    pub fn parse(message: &[u8]) -> Option<MailboxHeader> {
        let h = message.get(..MAILBOX_HEADER_LEN)?;
        Some(MailboxHeader {
            length: u16::from_le_bytes([h[0], h[1]]),
            address: u16::from_le_bytes([h[2], h[3]]),
            channel: h[4] & 0x3F,
            priority: h[4] >> 6,
            mailbox_type: h[5] & 0x0F,
            counter: (h[5] >> 4) & 0x07,
        })
    }

    /// The header's 6 bytes.
    pub fn to_bytes(&self) -> [u8; MAILBOX_HEADER_LEN] {
        let l = self.length.to_le_bytes();
        let a = self.address.to_le_bytes();
        [
            l[0],
            l[1],
            a[0],
            a[1],
            (self.channel & 0x3F) | (self.priority << 6),
            (self.mailbox_type & 0x0F) | ((self.counter & 0x07) << 4),
        ]
    }
}

/// Mailbox messages a terminal's application wants to send to the master.
///
/// The ESC moves the oldest one into the send mailbox (SM1) whenever it is empty. The
/// outbox assigns the header's counter (1..7, wrapping to 1, ETG.1000.6 5.6) so the master
/// can tell new messages from repeated ones.
#[derive(Debug, Default)]
pub struct MailboxOutbox {
    queue: VecDeque<Vec<u8>>,
    counter: u8,
    capacity: usize,
}

impl MailboxOutbox {
    /// An empty outbox for a send mailbox of `sm1_length` bytes (header included).
    pub fn new(sm1_length: usize) -> MailboxOutbox {
        MailboxOutbox {
            queue: VecDeque::new(),
            counter: 0,
            capacity: sm1_length,
        }
    }

    /// The largest data length (after the 6-byte header) one message may have: the
    /// send mailbox size the master configured for SM1, minus the header. An
    /// application segments anything longer (e.g. SDO segmented upload).
    pub fn max_data_len(&self) -> usize {
        self.capacity.saturating_sub(MAILBOX_HEADER_LEN)
    }

    /// Sets the send mailbox size (called by the ESC when SM1 is configured).
    pub fn set_capacity(&mut self, sm1_length: usize) {
        self.capacity = sm1_length;
    }

    /// Queues a message of `mailbox_type` with `data` (after the header), from station
    /// address 0 on channel 0 with priority 0. Data longer than [`Self::max_data_len`]
    /// is cut to fit (a well-behaved application segments instead).
    pub fn push(&mut self, mailbox_type: u8, data: &[u8]) {
        let data = &data[..data.len().min(self.max_data_len())];
        self.counter = if self.counter >= 7 {
            1
        } else {
            self.counter + 1
        };
        let header = MailboxHeader {
            length: u16::try_from(data.len()).unwrap_or(u16::MAX),
            address: 0,
            channel: 0,
            priority: 0,
            mailbox_type,
            counter: self.counter,
        };
        let mut msg = Vec::with_capacity(MAILBOX_HEADER_LEN + data.len());
        msg.extend_from_slice(&header.to_bytes());
        msg.extend_from_slice(data);
        self.queue.push_back(msg);
    }

    /// Queues a mailbox error reply (type ERR) with `code` from [`mailbox_error`].
    pub fn push_error(&mut self, code: u16) {
        // ETG.1000.6 table 30: Type (u16, 0x01 = mailbox command) then Detail (u16).
        let mut data = [0u8; 4];
        data[..2].copy_from_slice(&0x0001u16.to_le_bytes());
        data[2..].copy_from_slice(&code.to_le_bytes());
        self.push(mailbox_type::ERR, &data);
    }

    /// Takes the oldest queued message (header included), if any.
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        self.queue.pop_front()
    }

    /// Number of queued messages.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no message is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Drops every queued message (on a transition to INIT, as firmware resets its mailbox).
    pub fn clear(&mut self) {
        self.queue.clear();
    }
}

/// The application ("firmware") of a simulated terminal. See the module documentation
/// for when the ESC calls each method. All times are nanoseconds on the bus's clock
/// (passed in, never read from the system by the ESC).
pub trait TerminalApp: Send + fmt::Debug {
    /// The process data layout with the current PDO assignment: one entry per
    /// process-data SyncManager. The ESC uses it for nothing but
    /// [`check_transition`](Self::check_transition)'s default; applications with
    /// configurable PDO assignment return the current one.
    fn process_data_layout(&self) -> Vec<PdSm>;

    /// Accepts or refuses an AL state change the ESC has already found valid (known state,
    /// allowed transition, mailbox SMs consistent with the SII). Returns the AL status code
    /// to refuse with. The default checks the process data SMs on a transition to
    /// SAFE-OP ([`check_process_data_sms`]).
    fn check_transition(&mut self, now_ns: u64, t: Transition<'_>) -> Result<(), AlStatusCode> {
        let _ = now_ns;
        if t.from == AlState::PreOp && t.to == AlState::SafeOp {
            check_process_data_sms(&self.process_data_layout(), t.sms)
        } else {
            Ok(())
        }
    }

    /// The AL state changed (after an accepted request, a watchdog or a fault).
    fn state_changed(&mut self, now_ns: u64, from: AlState, to: AlState) {
        let _ = (now_ns, from, to);
    }

    /// The master wrote a complete message into the receive mailbox (SM0). `message`
    /// starts with the 6-byte header and has the full SM0 length (padding included).
    /// Replies go into `outbox`. The default answers every message with a mailbox error
    /// "unsupported protocol" (ETG.1000.6 table 30).
    fn mailbox_received(&mut self, now_ns: u64, message: &[u8], outbox: &mut MailboxOutbox) {
        let _ = (now_ns, message);
        outbox.push_error(mailbox_error::UNSUPPORTED_PROTOCOL);
    }

    /// Called once per frame the terminal processes, before any datagram of it: advance
    /// physical models, queue spontaneous messages (emergencies) into `outbox`.
    fn poll(&mut self, now_ns: u64, outbox: &mut MailboxOutbox) {
        let _ = (now_ns, outbox);
    }

    /// Apply these outputs: a three-buffer output SyncManager `sm` received a complete
    /// buffer (its last byte was written) while the terminal is in OP, or the terminal
    /// just entered OP and this is the latest buffer received before. Outputs are never
    /// applied below OP (ETG.1000.6: outputs stay in their safe state in SAFE-OP).
    fn outputs_written(&mut self, now_ns: u64, sm: u8, data: &[u8]);

    /// The master is about to read the three-buffer input SyncManager `sm` and no buffer
    /// is locked for it: write the current input values into `data` (it holds the
    /// previous values). Called in every state in which the SM can be read.
    fn fill_inputs(&mut self, now_ns: u64, sm: u8, data: &mut [u8]);

    /// Outputs must go to their safe state: the SM watchdog expired, or the state left OP.
    fn outputs_safe(&mut self, now_ns: u64);

    /// The terminal detected a local error and fell back to `state` with the AL status
    /// error flag and `code` (the SM watchdog's 0x001B, or an injected fall-back): the
    /// state change has already happened. A CoE terminal reports it with an emergency
    /// message in `outbox` (ETG.1000.6 5.6.4). Only called for a fall-back to PRE-OP or
    /// SAFE-OP: in INIT there is no mailbox (ETG.1000.6 6.4.1), a fall-back there only
    /// shows in [`state_changed`](Self::state_changed). Not called for a state request
    /// the terminal refuses (the master reads that code from 0x0134 itself) nor for a
    /// power cycle.
    fn error_indicated(
        &mut self,
        now_ns: u64,
        state: AlState,
        code: AlStatusCode,
        outbox: &mut MailboxOutbox,
    ) {
        let _ = (now_ns, state, code, outbox);
    }

    /// The terminal was power-cycled: forget volatile settings (e.g. a PDO assignment the
    /// master wrote over CoE) as the firmware would on a cold start, and whatever was in
    /// progress (mailbox transfers). The ESC calls [`outputs_safe`](Self::outputs_safe)
    /// first and is back in INIT afterwards.
    fn power_cycled(&mut self, now_ns: u64) {
        let _ = now_ns;
    }
}

/// The application of a terminal without a mailbox (EK1100, EL1004, EL2004, …): the
/// process data layout comes from the SII's RxPDO/TxPDO categories, outputs are kept
/// (readable through [`BasicApp::outputs`]) and drive nothing, inputs read zero unless
/// set with [`BasicApp::set_inputs`].
#[derive(Debug, Clone)]
pub struct BasicApp {
    layout: Vec<PdSm>,
    outputs: Vec<(u8, Vec<u8>)>,
    inputs: Vec<(u8, Vec<u8>)>,
}

impl BasicApp {
    /// The application for the terminal described by `sii`: one process data SM per SM
    /// the SII's PDOs are assigned to (the PDO's SM byte), sized by the sum of their
    /// entries' bit lengths rounded up to bytes. SMs of type process-data outputs/inputs in
    /// the SyncManager category without PDOs get zero bytes.
    pub fn from_sii(sii: &Sii) -> BasicApp {
        let mut layout: Vec<PdSm> = Vec::new();
        let mut add = |sm: u8, direction: PdDirection, bits: u32| {
            if let Some(e) = layout.iter_mut().find(|e| e.sm == sm) {
                e.bytes = e.bytes.saturating_add(bits_to_bytes(bits));
            } else {
                layout.push(PdSm {
                    sm,
                    direction,
                    bytes: bits_to_bytes(bits),
                });
            }
        };
        for (idx, sm) in sii.sync_managers.iter().enumerate() {
            let Ok(n) = u8::try_from(idx) else { break };
            match sm.sm_type {
                SmType::ProcessDataOutputs => add(n, PdDirection::Outputs, 0),
                SmType::ProcessDataInputs => add(n, PdDirection::Inputs, 0),
                _ => {}
            }
        }
        // Bits are summed per SM, not bytes per PDO: PDOs pack bit-wise into one SM.
        let mut bits_per_sm: Vec<(u8, PdDirection, u32)> = Vec::new();
        for (pdos, dir) in [
            (&sii.rx_pdos, PdDirection::Outputs),
            (&sii.tx_pdos, PdDirection::Inputs),
        ] {
            for pdo in pdos.iter() {
                let Some(sm) = pdo.sync_manager else { continue };
                let bits: u32 = pdo.entries.iter().map(|e| u32::from(e.bit_length)).sum();
                if let Some(e) = bits_per_sm.iter_mut().find(|e| e.0 == sm) {
                    e.2 += bits;
                } else {
                    bits_per_sm.push((sm, dir, bits));
                }
            }
        }
        for (sm, dir, bits) in bits_per_sm {
            add(sm, dir, bits);
        }
        layout.sort_by_key(|e| e.sm);
        BasicApp::with_layout(layout)
    }

    /// An application with an explicit process data layout.
    pub fn with_layout(layout: Vec<PdSm>) -> BasicApp {
        let outputs = layout
            .iter()
            .filter(|e| e.direction == PdDirection::Outputs)
            .map(|e| (e.sm, vec![0; usize::from(e.bytes)]))
            .collect();
        let inputs = layout
            .iter()
            .filter(|e| e.direction == PdDirection::Inputs)
            .map(|e| (e.sm, vec![0; usize::from(e.bytes)]))
            .collect();
        BasicApp {
            layout,
            outputs,
            inputs,
        }
    }

    /// The outputs last applied on SM `sm` (zeros after [`TerminalApp::outputs_safe`]).
    pub fn outputs(&self, sm: u8) -> Option<&[u8]> {
        self.outputs
            .iter()
            .find(|(n, _)| *n == sm)
            .map(|(_, v)| v.as_slice())
    }

    /// Sets the input values reported on SM `sm` (cut or zero-padded to its size).
    pub fn set_inputs(&mut self, sm: u8, values: &[u8]) {
        if let Some((_, v)) = self.inputs.iter_mut().find(|(n, _)| *n == sm) {
            let n = v.len().min(values.len());
            v[..n].copy_from_slice(&values[..n]);
            v[n..].fill(0);
        }
    }
}

fn bits_to_bytes(bits: u32) -> u16 {
    u16::try_from(bits.div_ceil(8)).unwrap_or(u16::MAX)
}

impl TerminalApp for BasicApp {
    fn process_data_layout(&self) -> Vec<PdSm> {
        self.layout.clone()
    }

    fn outputs_written(&mut self, _now_ns: u64, sm: u8, data: &[u8]) {
        if let Some((_, v)) = self.outputs.iter_mut().find(|(n, _)| *n == sm) {
            let n = v.len().min(data.len());
            v[..n].copy_from_slice(&data[..n]);
        }
    }

    fn fill_inputs(&mut self, _now_ns: u64, sm: u8, data: &mut [u8]) {
        if let Some((_, v)) = self.inputs.iter().find(|(n, _)| *n == sm) {
            let n = v.len().min(data.len());
            data[..n].copy_from_slice(&v[..n]);
        }
    }

    fn outputs_safe(&mut self, _now_ns: u64) {
        for (_, v) in &mut self.outputs {
            v.fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_header_round_trip() {
        let h = MailboxHeader {
            length: 10,
            address: 0x1001,
            channel: 3,
            priority: 2,
            mailbox_type: mailbox_type::COE,
            counter: 5,
        };
        let b = h.to_bytes();
        assert_eq!(b, [10, 0, 0x01, 0x10, 0x83, 0x53]);
        assert_eq!(MailboxHeader::parse(&b), Some(h));
        assert_eq!(MailboxHeader::parse(&b[..5]), None);
    }

    #[test]
    fn outbox_counts_1_to_7_and_cuts_to_capacity() {
        let mut o = MailboxOutbox::new(10);
        let mut counters = Vec::new();
        for _ in 0..8 {
            o.push(mailbox_type::COE, &[1, 2, 3, 4, 5, 6]);
            let m = o.pop().expect("queued");
            assert_eq!(m.len(), 10, "cut to 4 data bytes");
            counters.push(MailboxHeader::parse(&m).expect("header").counter);
        }
        assert_eq!(counters, [1, 2, 3, 4, 5, 6, 7, 1]);
        o.push_error(mailbox_error::UNSUPPORTED_PROTOCOL);
        assert_eq!(o.pop().expect("queued")[5] & 0x0F, mailbox_type::ERR);
    }

    #[test]
    fn process_data_check_codes() {
        let layout = [
            PdSm {
                sm: 2,
                direction: PdDirection::Outputs,
                bytes: 1,
            },
            PdSm {
                sm: 3,
                direction: PdDirection::Inputs,
                bytes: 0,
            },
        ];
        let mut sms = [SmConfig::default(); 4];
        assert_eq!(
            check_process_data_sms(&layout, &sms),
            Err(al_status::INVALID_OUTPUT_CONFIG)
        );
        sms[2] = SmConfig {
            start: 0x0F00,
            length: 1,
            control: 0x44,
            activate: 1,
        };
        assert_eq!(check_process_data_sms(&layout, &sms), Ok(()));
        sms[2].length = 2;
        assert_eq!(
            check_process_data_sms(&layout, &sms),
            Err(al_status::INVALID_OUTPUT_CONFIG)
        );
        // The right length in mailbox mode, or in the wrong direction.
        sms[2].length = 1;
        sms[2].control = 0x46;
        assert_eq!(
            check_process_data_sms(&layout, &sms),
            Err(al_status::INVALID_SM_CONFIG)
        );
        sms[2].control = 0x40;
        assert_eq!(
            check_process_data_sms(&layout, &sms),
            Err(al_status::INVALID_SM_CONFIG)
        );
        sms[2].control = 0x44;
        sms[3] = SmConfig {
            start: 0x1000,
            length: 1,
            control: 0x20,
            activate: 1,
        };
        assert_eq!(
            check_process_data_sms(&layout, &sms),
            Err(al_status::INVALID_INPUT_CONFIG)
        );
    }

    #[test]
    fn al_state_codes() {
        for s in [
            AlState::Init,
            AlState::PreOp,
            AlState::Bootstrap,
            AlState::SafeOp,
            AlState::Op,
        ] {
            assert_eq!(AlState::from_code(s.code()), Some(s));
        }
        assert_eq!(AlState::from_code(5), None);
        assert_eq!(AlState::from_code(0), None);
    }
}
