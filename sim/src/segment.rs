//! A chain of terminals processing each frame in order, as on the wire.
//!
//! [`Segment::process`] takes one Ethernet frame as the master sent it and turns it into
//! the frame the master receives back: each terminal in order handles every datagram
//! (addressing, register and logical access, working counter), then the first terminal's
//! port 0 sets the locally-administered bit of the source MAC. The rules and the capture
//! frames they come from are listed in `sim/NOTES-core.md`.

use std::path::Path;

use crate::app::BasicApp;
use crate::esc::{Esc, EscConfig, LogicalCommand, PortRoute, ReadMode};
use crate::fault::{Faults, TerminalFault};
use crate::sii::{Sii, SiiError};
use crate::wiretime::WireTime;

/// EtherType of EtherCAT frames, ETG.1000.4 5.2.
pub const ETHERTYPE_ETHERCAT: u16 = 0x88A4;
/// EtherType of an IEEE 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherCAT frame header type for datagrams (DLPDU), ETG.1000.4 table 8.
pub const ECAT_TYPE_DATAGRAMS: u16 = 1;
/// Size of a datagram header (cmd, idx, address, length, irq), ETG.1000.4 table 9.
pub const DATAGRAM_HEADER_LEN: usize = 10;
/// Size of the working counter after a datagram's data.
pub const WKC_LEN: usize = 2;
/// Bit 1 of the source MAC's first byte: set by port 0 of the first terminal on every
/// EtherCAT frame it returns (ek1100-el2828-el2889.pcapng: 10:10:.. → 12:10:..;
/// twincat-run-ek1100-el1004.pcapng: 00:.. → 02:..; soem-sdinfo: 01:.. → 03:..).
pub const SOURCE_MAC_PROCESSED_BIT: u8 = 0x02;

/// Datagram commands, ETG.1000.4 table 12.
pub mod command {
    /// No operation.
    pub const NOP: u8 = 0;
    /// Auto-increment physical read.
    pub const APRD: u8 = 1;
    /// Auto-increment physical write.
    pub const APWR: u8 = 2;
    /// Auto-increment physical read-write.
    pub const APRW: u8 = 3;
    /// Configured address physical read.
    pub const FPRD: u8 = 4;
    /// Configured address physical write.
    pub const FPWR: u8 = 5;
    /// Configured address physical read-write.
    pub const FPRW: u8 = 6;
    /// Broadcast read.
    pub const BRD: u8 = 7;
    /// Broadcast write.
    pub const BWR: u8 = 8;
    /// Broadcast read-write.
    pub const BRW: u8 = 9;
    /// Logical read.
    pub const LRD: u8 = 10;
    /// Logical write.
    pub const LWR: u8 = 11;
    /// Logical read-write.
    pub const LRW: u8 = 12;
    /// Auto-increment read, multiple write.
    pub const ARMW: u8 = 13;
    /// Configured address read, multiple write.
    pub const FRMW: u8 = 14;
}

/// What became of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameOutcome {
    /// The frame (modified in place) returns to the master after `delay_ns` (the wire
    /// time plus any injected delay).
    Reply {
        /// When the reply is due, relative to the time the frame was sent.
        delay_ns: u64,
    },
    /// The frame is lost (link down, injected loss, or malformed EtherCAT frame, which the
    /// ESC invalidates and counts in 0x0300).
    Lost,
    /// Not an EtherCAT frame: with DL control bit 0 set (reset value) terminals forward it
    /// unmodified, so it comes back unchanged; a server may choose not to echo it.
    NotEtherCat,
}

/// Why a frame could not be processed (counted, never a panic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than an Ethernet header plus EtherCAT header.
    #[error("frame of {0} bytes is too short for Ethernet + EtherCAT headers")]
    TooShort(usize),
    /// The EtherCAT header's length exceeds the frame.
    #[error("EtherCAT header says {declared} bytes but only {available} follow")]
    LengthMismatch {
        /// Declared length.
        declared: usize,
        /// Bytes after the header.
        available: usize,
    },
    /// A datagram runs past the end of the EtherCAT payload.
    #[error("datagram {index} at byte {offset} runs past the end of the frame")]
    DatagramOverrun {
        /// Index of the datagram in the frame.
        index: usize,
        /// Its offset in the frame.
        offset: usize,
    },
}

/// Where a datagram sits in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DatagramSpan {
    /// Offset of the datagram header in the frame.
    header: usize,
    /// Data length.
    len: usize,
}

/// Where the EtherCAT payload and its datagrams are in `frame`, or why not.
fn parse_frame(frame: &[u8], spans: &mut Vec<DatagramSpan>) -> Result<Option<()>, FrameError> {
    spans.clear();
    if frame.len() < 14 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let mut at = 12;
    let mut ethertype = u16::from_be_bytes([frame[at], frame[at + 1]]);
    if ethertype == ETHERTYPE_VLAN {
        at += 4;
        if frame.len() < at + 2 {
            return Err(FrameError::TooShort(frame.len()));
        }
        ethertype = u16::from_be_bytes([frame[at], frame[at + 1]]);
    }
    if ethertype != ETHERTYPE_ETHERCAT {
        return Ok(None);
    }
    at += 2;
    let Some(h) = frame.get(at..at + 2) else {
        return Err(FrameError::TooShort(frame.len()));
    };
    let header = u16::from_le_bytes([h[0], h[1]]);
    if header >> 12 != ECAT_TYPE_DATAGRAMS {
        // Other EtherCAT frame types (network variables, mailbox gateway) are forwarded.
        return Ok(None);
    }
    let declared = usize::from(header & 0x07FF);
    at += 2;
    let available = frame.len() - at;
    if declared > available {
        return Err(FrameError::LengthMismatch {
            declared,
            available,
        });
    }
    let end = at + declared;
    let mut index = 0;
    loop {
        if at + DATAGRAM_HEADER_LEN > end {
            return Err(FrameError::DatagramOverrun { index, offset: at });
        }
        let lenw = u16::from_le_bytes([frame[at + 6], frame[at + 7]]);
        let len = usize::from(lenw & 0x07FF);
        if at + DATAGRAM_HEADER_LEN + len + WKC_LEN > end {
            return Err(FrameError::DatagramOverrun { index, offset: at });
        }
        spans.push(DatagramSpan { header: at, len });
        at += DATAGRAM_HEADER_LEN + len + WKC_LEN;
        index += 1;
        if lenw & 0x8000 == 0 {
            break;
        }
    }
    Ok(Some(()))
}

/// Builds an EtherCAT frame as a master sends it, for tests, examples and benchmarks:
/// broadcast destination, source MAC 10:10:10:10:10:10, one datagram per `(command,
/// adp, ado, data)` with indexes 0, 1, …, IRQ field and working counter 0. Data longer
/// than the 11-bit length field (2047 bytes) is the caller's mistake: the field is cut.
pub fn master_frame(datagrams: &[(u8, u16, u16, Vec<u8>)]) -> Vec<u8> {
    let mut f = vec![0xFF; 6];
    f.extend_from_slice(&[0x10; 6]);
    f.extend_from_slice(&ETHERTYPE_ETHERCAT.to_be_bytes());
    let body: usize = datagrams
        .iter()
        .map(|d| DATAGRAM_HEADER_LEN + d.3.len() + WKC_LEN)
        .sum();
    let header = (body as u16 & 0x07FF) | (ECAT_TYPE_DATAGRAMS << 12);
    f.extend_from_slice(&header.to_le_bytes());
    for (i, (cmd, adp, ado, data)) in datagrams.iter().enumerate() {
        // Bit 15 of the length word: another datagram follows. ETG.1000.4 table 9.
        let more = if i + 1 < datagrams.len() { 0x8000 } else { 0 };
        f.push(*cmd);
        f.push(i as u8);
        f.extend_from_slice(&adp.to_le_bytes());
        f.extend_from_slice(&ado.to_le_bytes());
        f.extend_from_slice(&((data.len() as u16 & 0x07FF) | more).to_le_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(data);
        f.extend_from_slice(&[0, 0]);
    }
    f
}

/// A chain of simulated terminals (position 0 is next to the master).
#[derive(Debug, Default)]
pub struct Segment {
    terminals: Vec<Esc>,
    wire: WireTime,
    faults: Faults,
    spans: Vec<DatagramSpan>,
    silent_from: Option<usize>,
    link_down: bool,
    last_error: Option<FrameError>,
}

impl Segment {
    /// An empty segment (frames come back with working counter 0).
    pub fn new() -> Segment {
        Segment::default()
    }

    /// A segment of terminals without firmware ([`BasicApp`]) built from EEPROM files,
    /// in order.
    pub fn from_eeprom_files<P: AsRef<Path>>(paths: &[P]) -> Result<Segment, SiiError> {
        let mut seg = Segment::new();
        for p in paths {
            let sii = Sii::load(p.as_ref())?;
            seg.push(basic_terminal(sii));
        }
        Ok(seg)
    }

    /// Appends a terminal at the end of the chain. A terminal whose configuration leaves
    /// the DC power-on offset open gets one from its position (see
    /// [`EscConfig::clock_start_ns`]).
    pub fn push(&mut self, mut esc: Esc) {
        if esc.clock_start_unset() {
            esc.set_clock_start_ns(power_on_offset_ns(self.terminals.len()));
        }
        self.terminals.push(esc);
        self.update_topology();
    }

    /// The terminals in order.
    pub fn terminals(&self) -> &[Esc] {
        &self.terminals
    }

    /// Terminal `i`.
    pub fn terminal(&self, i: usize) -> Option<&Esc> {
        self.terminals.get(i)
    }

    /// Terminal `i`, mutable.
    pub fn terminal_mut(&mut self, i: usize) -> Option<&mut Esc> {
        self.terminals.get_mut(i)
    }

    /// Number of terminals.
    pub fn len(&self) -> usize {
        self.terminals.len()
    }

    /// Whether there is no terminal.
    pub fn is_empty(&self) -> bool {
        self.terminals.is_empty()
    }

    /// The fault handle (clone it to switch faults from another thread).
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    /// Uses `faults` as the fault handle.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// The wire-time model.
    pub fn wire_time(&self) -> &WireTime {
        &self.wire
    }

    /// Sets the wire-time model.
    pub fn set_wire_time(&mut self, wire: WireTime) {
        self.wire = wire;
        self.update_topology();
    }

    /// Why the last lost frame was malformed, if it was.
    pub fn last_error(&self) -> Option<FrameError> {
        self.last_error
    }

    fn reachable(&self) -> usize {
        self.silent_from
            .unwrap_or(self.terminals.len())
            .min(self.terminals.len())
    }

    /// Sets every terminal's links from the faults in force: the master's cable pulled
    /// (`link_down`: terminal 0 loses port 0), the cable into port 0 of terminal
    /// `silent_from` cut (the terminal before loses port 1, that terminal port 0; it and
    /// the ones behind it stay powered and linked to each other, keep their state and
    /// run on, but no frame reaches them).
    fn update_topology(&mut self) {
        let n = self.reachable();
        let count = self.terminals.len();
        let link_down = self.link_down;
        // From the last reachable terminal back: the time behind each one's port 1 grows
        // by the forwarding delays of the terminal after it, there and back.
        let mut downstream_rtt_ns = 0;
        for (i, t) in self.terminals.iter_mut().enumerate().rev() {
            if i < n {
                t.set_links([i > 0 || !link_down, i + 1 < n, false, false]);
                t.set_downstream_rtt_ns(downstream_rtt_ns);
                downstream_rtt_ns += 2 * self.wire.forward_delay(i);
            } else {
                t.set_links([i > n, i + 1 < count, false, false]);
            }
        }
    }

    /// Advances every terminal's time without a frame (watchdogs, EEPROM busy), after
    /// applying any cable change (a link lost meanwhile is counted without a frame).
    pub fn advance(&mut self, now_ns: u64) {
        if self.faults.any() {
            self.apply_cable_changes();
        }
        self.advance_from(0, now_ns);
    }

    /// Advances terminals `first..` to the time a frame sent at `now_ns` would reach
    /// them.
    fn advance_from(&mut self, first: usize, now_ns: u64) {
        if first >= self.terminals.len() {
            return;
        }
        let mut offset = self.wire.arrival_offset_ns(first);
        for (i, t) in self.terminals.iter_mut().enumerate().skip(first) {
            t.advance(now_ns + offset);
            offset += self.wire.forward_delay(i);
        }
    }

    /// Goes through the cable changes of the fault handle in order, each moving the
    /// terminals' links (and lost-link counters), then makes sure the links follow the
    /// settings in force (a handle given by [`Segment::set_faults`] may have changed
    /// before this segment saw it).
    fn apply_cable_changes(&mut self) {
        let changes = self.faults.take_cable_changes();
        let now = self.faults.settings().cables();
        for cables in changes.into_iter().chain([now]) {
            if cables.silent_from != self.silent_from || cables.link_down != self.link_down {
                self.silent_from = cables.silent_from;
                self.link_down = cables.link_down;
                self.update_topology();
            }
        }
    }

    fn apply_faults(&mut self, now_ns: u64) {
        self.apply_cable_changes();
        for (pos, fault) in self.faults.take_pending() {
            let Some(t) = self.terminals.get_mut(pos) else {
                continue;
            };
            match fault {
                TerminalFault::PowerCycle => t.power_cycle(now_ns),
                TerminalFault::FallBack { state, code } => t.fall_back(state, code),
            }
        }
    }

    /// Processes one frame sent by the master at bus time `now_ns`, in place. Every
    /// terminal's time moves on to the frame's time, also of those it does not reach.
    pub fn process(&mut self, frame: &mut [u8], now_ns: u64) -> FrameOutcome {
        let (outcome, reached) = self.process_reaching(frame, now_ns);
        self.advance_from(reached, now_ns);
        outcome
    }

    /// [`Segment::process`] without moving the time of the terminals the frame does
    /// not reach; also returns how many it reached (they moved on as it passed).
    fn process_reaching(&mut self, frame: &mut [u8], now_ns: u64) -> (FrameOutcome, usize) {
        let fate = if self.faults.any() || self.silent_from.is_some() || self.link_down {
            self.apply_faults(now_ns);
            if self.link_down {
                return (FrameOutcome::Lost, 0);
            }
            self.faults.roll()
        } else {
            Default::default()
        };
        if fate.drop {
            return (FrameOutcome::Lost, 0);
        }
        let mut reached = 0;
        let mut spans = std::mem::take(&mut self.spans);
        let parsed = parse_frame(frame, &mut spans);
        let outcome = match parsed {
            Err(e @ FrameError::TooShort(_)) => {
                // Not even an Ethernet frame with an EtherCAT header: nothing to count.
                self.last_error = Some(e);
                FrameOutcome::Lost
            }
            Err(e) => {
                // The first ESC invalidates the frame and counts it: 0x0300 (invalid frame
                // counter port 0), ETG.1000.4 table 45.
                self.last_error = Some(e);
                if let Some(t) = self.terminals.first_mut() {
                    t.count_rx_error(0);
                }
                FrameOutcome::Lost
            }
            Ok(None) => FrameOutcome::NotEtherCat,
            Ok(Some(())) => {
                let mut n = self.reachable();
                let mut lost = false;
                let mut offset = 0;
                for i in 0..n {
                    let esc = &mut self.terminals[i];
                    esc.begin_frame(now_ns + offset);
                    reached = i + 1;
                    offset += self.wire.forward_delay(i);
                    // The port decides when the frame's start passes, before this
                    // frame's own writes to DL control take effect.
                    let route = esc.port1_route();
                    for span in &spans {
                        process_datagram(esc, frame, *span);
                    }
                    match route {
                        PortRoute::Forward => {}
                        // The last terminal, or the master closed port 1 (DL control
                        // loop setting): the frame turns back here.
                        PortRoute::TurnBack => {
                            n = i + 1;
                            break;
                        }
                        PortRoute::Lost => {
                            lost = true;
                            break;
                        }
                    }
                }
                if lost {
                    self.spans = spans;
                    return (FrameOutcome::Lost, reached);
                }
                if n > 0 {
                    frame[6] |= SOURCE_MAC_PROCESSED_BIT;
                }
                if let Some(bit) = fate.corrupt_bit {
                    self.corrupt(frame, &spans, bit, &fate, n);
                }
                FrameOutcome::Reply {
                    // Saturating: the injected delay is whatever the fault handle holds.
                    delay_ns: self
                        .wire
                        .round_trip_ns(frame.len(), n)
                        .saturating_add(fate.delay_ns),
                }
            }
        };
        self.spans = spans;
        (outcome, reached)
    }
}

impl Segment {
    /// A bit error on the frame's way back (after every terminal processed it, so the
    /// processing stands): flips one bit of the EtherCAT payload and moves the error
    /// counters of the terminals that receive the damaged frame. The frame crossed `n`
    /// terminals; cable k is the one into port 0 of terminal k (0 = the master's cable).
    /// On cable k ≥ 1 terminal k-1 receives it on port 1 with a bad checksum and counts
    /// an invalid frame; it marks the frame, so the terminals before it count a forwarded
    /// error on port 1 ("RX Error Counter" and "Forwarded RX Error Counter", ETG.1000.4 /
    /// ESC datasheet). On the master's cable no terminal sees it. A pinned cable the frame
    /// does not reach leaves the frame alone.
    fn corrupt(
        &mut self,
        frame: &mut [u8],
        spans: &[DatagramSpan],
        bit: u64,
        fate: &crate::fault::FrameFate,
        n: usize,
    ) {
        let cable = if fate.corrupt_pinned {
            match usize::try_from(fate.corrupt_cable) {
                Ok(c) if c < n.max(1) => c,
                _ => return,
            }
        } else {
            (fate.corrupt_cable % n.max(1) as u64) as usize
        };
        let Some(first) = spans.first() else { return };
        let start = first.header;
        let len = frame.len() - start;
        let b = (bit % (len as u64 * 8)) as usize;
        frame[start + b / 8] ^= 1 << (b % 8);
        if cable >= 1 {
            self.terminals[cable - 1].count_rx_error(1);
            for t in &mut self.terminals[..cable - 1] {
                t.count_forwarded_rx_error(1);
            }
        }
    }
}

/// A deterministic power-on offset of the DC clock of the terminal at `position`:
/// 0..20 ms, spread by a SplitMix64 hash of the position.
fn power_on_offset_ns(position: usize) -> u64 {
    let mut z = (position as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    z % 20_000_000
}

/// A terminal without firmware built from an EEPROM image: chip from the product code,
/// [`BasicApp`] for process data.
pub fn basic_terminal(sii: Sii) -> Esc {
    let app = BasicApp::from_sii(&sii);
    Esc::new(EscConfig::for_sii(&sii), sii, Box::new(app))
}

fn process_datagram(esc: &mut Esc, frame: &mut [u8], span: DatagramSpan) {
    let h = span.header;
    let cmd = frame[h];
    let adp = u16::from_le_bytes([frame[h + 2], frame[h + 3]]);
    let ado = u16::from_le_bytes([frame[h + 4], frame[h + 5]]);
    let data_at = h + DATAGRAM_HEADER_LEN;
    let wkc_at = data_at + span.len;
    let irq = esc.irq();
    if irq != 0 {
        let v = u16::from_le_bytes([frame[h + 8], frame[h + 9]]) | irq;
        frame[h + 8..h + 10].copy_from_slice(&v.to_le_bytes());
    }
    let (head, tail) = frame.split_at_mut(wkc_at);
    let data = &mut head[data_at..];
    let wkc_bytes = &mut tail[..WKC_LEN];
    let mut wkc_inc: u16 = 0;
    use command::*;
    match cmd {
        APRD | APWR | APRW | ARMW => {
            let addressed = adp == 0;
            // Every terminal increments the address (ETG.1000.4 5.3.2).
            frame_set_adp(head, h, adp.wrapping_add(1));
            let data = &mut head[data_at..];
            wkc_inc = physical(esc, cmd, addressed, ado, data);
        }
        FPRD | FPWR | FPRW | FRMW => {
            let addressed = adp == esc.station_address() || esc.active_alias() == Some(adp);
            wkc_inc = physical(esc, cmd, addressed, ado, data);
        }
        BRD | BWR | BRW => {
            frame_set_adp(head, h, adp.wrapping_add(1));
            let data = &mut head[data_at..];
            wkc_inc = match cmd {
                BRD => u16::from(esc.read(ado, data, ReadMode::Or)),
                BWR => u16::from(esc.write(ado, data)),
                _ => esc.read_write(ado, data, ReadMode::Or),
            };
        }
        LRD | LWR | LRW => {
            let lad = u32::from(adp) | (u32::from(ado) << 16);
            let c = match cmd {
                LRD => LogicalCommand::Read,
                LWR => LogicalCommand::Write,
                _ => LogicalCommand::ReadWrite,
            };
            wkc_inc = esc.logical(c, lad, data);
        }
        _ => {} // NOP and reserved commands pass untouched.
    }
    if wkc_inc != 0 {
        let wkc = u16::from_le_bytes([wkc_bytes[0], wkc_bytes[1]]).wrapping_add(wkc_inc);
        wkc_bytes.copy_from_slice(&wkc.to_le_bytes());
    }
}

fn frame_set_adp(head: &mut [u8], h: usize, adp: u16) {
    head[h + 2..h + 4].copy_from_slice(&adp.to_le_bytes());
}

fn physical(esc: &mut Esc, cmd: u8, addressed: bool, ado: u16, data: &mut [u8]) -> u16 {
    use command::*;
    match cmd {
        APRD | FPRD if addressed => u16::from(esc.read(ado, data, ReadMode::Replace)),
        APWR | FPWR if addressed => u16::from(esc.write(ado, data)),
        APRW | FPRW if addressed => esc.read_write(ado, data, ReadMode::Replace),
        // ARMW/FRMW: the addressed terminal reads, every other one writes
        // (ek1100-el2828-el2889.pcapng frame 530: FRMW 0x0910 at the EK1100 gives 2 with
        // the EL2828 lacking a system time).
        ARMW | FRMW => {
            if addressed {
                u16::from(esc.read(ado, data, ReadMode::Replace))
            } else {
                u16::from(esc.write(ado, data))
            }
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
