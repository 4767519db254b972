//! Zero-copy views of an EtherCAT frame (Ethernet header, EtherCAT header, datagrams)
//! and their owned representations (ETG.1000.4 §5.3–5.4).
//!
//! [`Frame::new_checked`] validates every length once; afterwards the accessors and the
//! datagram iterator cannot fail. [`FrameRepr`] parses a view into owned values and emits
//! them back into a buffer.

use super::command::{Address, Command};
use core::fmt;

/// EtherType of EtherCAT frames (IEEE registration, ETG.1000.4 §5.3.1).
pub const ETHERTYPE_ETHERCAT: u16 = 0x88A4;
/// Length of the Ethernet header (destination, source, EtherType) without VLAN tag.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Length of the EtherCAT frame header (ETG.1000.4 table 2).
pub const ECAT_HEADER_LEN: usize = 2;
/// Length of a datagram header: command, index, address, length, IRQ (ETG.1000.4 table 5).
pub const DATAGRAM_HEADER_LEN: usize = 10;
/// Length of the working counter that follows a datagram's data.
pub const WKC_LEN: usize = 2;
/// EtherCAT frame type of DLPDUs (ETG.1000.4 table 2: type 1 = EtherCAT commands).
pub const ECAT_TYPE_DLPDU: u8 = 1;
/// Largest value the 11-bit length fields can carry (ETG.1000.4 tables 2 and 5).
pub const MAX_LEN_FIELD: usize = 0x7FF;
/// Largest Ethernet payload (without FCS): 1500 bytes.
pub const MAX_ETHERNET_PAYLOAD: usize = 1500;
/// Smallest Ethernet frame without FCS; shorter frames are padded.
pub const MIN_ETHERNET_FRAME: usize = 60;
/// Largest sum of datagram lengths (header, data, WKC) in one frame.
pub const MAX_DATAGRAMS_LEN: usize = MAX_ETHERNET_PAYLOAD - ECAT_HEADER_LEN;
/// Largest data length of a single datagram that fits one frame.
pub const MAX_DATAGRAM_DATA: usize = MAX_DATAGRAMS_LEN - DATAGRAM_HEADER_LEN - WKC_LEN;

mod field {
    use core::ops::Range;
    pub(super) const DESTINATION: Range<usize> = 0..6;
    pub(super) const SOURCE: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: Range<usize> = 12..14;
    pub(super) const ECAT_HEADER: Range<usize> = 14..16;
    pub(super) const DATAGRAMS: usize = 16;

    // Within a datagram.
    pub(super) const CMD: usize = 0;
    pub(super) const IDX: usize = 1;
    pub(super) const ADDRESS: Range<usize> = 2..6;
    pub(super) const LEN: Range<usize> = 6..8;
    pub(super) const IRQ: Range<usize> = 8..10;
    pub(super) const DATA: usize = 10;
}

/// Bit 14 of the datagram length field: the frame has circulated (ETG.1000.4 table 5).
const LEN_CIRCULATING: u16 = 1 << 14;
/// Bit 15 of the datagram length field: another datagram follows (ETG.1000.4 table 5).
const LEN_MORE: u16 = 1 << 15;

/// Why bytes are not a valid EtherCAT frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the Ethernet and EtherCAT headers.
    #[error("frame of {len} bytes is shorter than the Ethernet and EtherCAT headers (16 bytes)")]
    ShortFrame {
        /// Length of the bytes given.
        len: usize,
    },
    /// The EtherType is not EtherCAT.
    #[error("EtherType 0x{0:04x} is not EtherCAT (0x88a4)")]
    NotEtherCat(u16),
    /// The EtherCAT header announces a frame type other than DLPDU.
    #[error("EtherCAT frame type {0} is not supported (only type 1, EtherCAT commands)")]
    UnsupportedType(u8),
    /// The EtherCAT header's length runs past the end of the frame.
    #[error("EtherCAT header announces {announced} bytes of datagrams but only {available} follow")]
    HeaderLength {
        /// Length in the header.
        announced: usize,
        /// Bytes present after the header.
        available: usize,
    },
    /// The header's length is zero: a frame carries at least one datagram.
    #[error("EtherCAT frame carries no datagram")]
    NoDatagram,
    /// A datagram does not fit in the length announced by the EtherCAT header.
    #[error("datagram {index} at byte {offset} needs {needed} bytes but the frame has {available}")]
    DatagramTruncated {
        /// Position of the datagram in the frame.
        index: usize,
        /// Its offset within the datagram area.
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// A datagram carries a reserved command code.
    #[error("datagram {index} has reserved command code {code}")]
    ReservedCommand {
        /// Position of the datagram in the frame.
        index: usize,
        /// The code.
        code: u8,
    },
    /// The last datagram within the header's length still says "more follows".
    #[error("datagram chain inconsistent with the header length: {0}")]
    Chain(&'static str),
    /// A frame to emit does not fit one Ethernet frame.
    #[error("{needed} bytes of datagrams do not fit one frame (at most {MAX_DATAGRAMS_LEN})")]
    TooLong {
        /// Bytes the datagrams need.
        needed: usize,
    },
    /// A frame to emit carries no datagram.
    #[error("a frame must carry at least one datagram")]
    Empty,
    /// The buffer given to `emit` is too short.
    #[error("buffer of {got} bytes is too short for a frame of {needed}")]
    BufferTooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// A zero-copy view of one Ethernet frame carrying EtherCAT datagrams.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    /// Number of datagrams, counted during validation.
    count: usize,
    /// Bytes of the datagram chain (at most the header's length: real masters, e.g.
    /// TwinCAT, announce a length rounded up past the last datagram).
    chain_len: usize,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Validate `buffer` as an EtherCAT frame: Ethernet header, EtherCAT header and every
    /// datagram's length. After this, no accessor can fail or panic.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, WireError> {
        let bytes = buffer.as_ref();
        if bytes.len() < field::DATAGRAMS {
            return Err(WireError::ShortFrame { len: bytes.len() });
        }
        let ethertype = u16::from_be_bytes([bytes[12], bytes[13]]);
        if ethertype != ETHERTYPE_ETHERCAT {
            return Err(WireError::NotEtherCat(ethertype));
        }
        let header = u16_at(bytes, field::ECAT_HEADER.start);
        let ty = (header >> 12) as u8;
        if ty != ECAT_TYPE_DLPDU {
            return Err(WireError::UnsupportedType(ty));
        }
        let announced = usize::from(header & MAX_LEN_FIELD as u16);
        let available = bytes.len() - field::DATAGRAMS;
        if announced > available {
            return Err(WireError::HeaderLength {
                announced,
                available,
            });
        }
        if announced == 0 {
            return Err(WireError::NoDatagram);
        }
        let area = &bytes[field::DATAGRAMS..field::DATAGRAMS + announced];
        let mut offset = 0;
        let mut count = 0;
        loop {
            let rest = area.len() - offset;
            if rest < DATAGRAM_HEADER_LEN + WKC_LEN {
                return Err(WireError::DatagramTruncated {
                    index: count,
                    offset,
                    needed: DATAGRAM_HEADER_LEN + WKC_LEN,
                    available: rest,
                });
            }
            let d = &area[offset..];
            if Command::from_code(d[field::CMD]).is_none() {
                return Err(WireError::ReservedCommand {
                    index: count,
                    code: d[field::CMD],
                });
            }
            let len_field = u16_at(d, field::LEN.start);
            let data_len = usize::from(len_field & MAX_LEN_FIELD as u16);
            let needed = DATAGRAM_HEADER_LEN + data_len + WKC_LEN;
            if needed > rest {
                return Err(WireError::DatagramTruncated {
                    index: count,
                    offset,
                    needed,
                    available: rest,
                });
            }
            offset += needed;
            count += 1;
            let more = len_field & LEN_MORE != 0;
            if !more {
                break;
            }
            if offset == area.len() {
                return Err(WireError::Chain(
                    "the last datagram says another one follows",
                ));
            }
        }
        Ok(Frame {
            buffer,
            count,
            chain_len: offset,
        })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole frame's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Destination MAC address.
    pub fn destination(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        mac
    }

    /// Source MAC address.
    pub fn source(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        mac
    }

    /// Length of the datagram area announced by the EtherCAT header.
    pub fn ecat_len(&self) -> usize {
        usize::from(u16_at(self.buffer.as_ref(), field::ECAT_HEADER.start) & MAX_LEN_FIELD as u16)
    }

    /// Number of datagrams.
    pub fn datagram_count(&self) -> usize {
        self.count
    }

    /// Length of the datagram chain; bytes after it up to [`Frame::ecat_len`] are padding.
    pub fn chain_len(&self) -> usize {
        self.chain_len
    }

    /// The datagrams, in order.
    pub fn datagrams(&self) -> Datagrams<'_> {
        let bytes = self.buffer.as_ref();
        Datagrams {
            rest: &bytes[field::DATAGRAMS..field::DATAGRAMS + self.chain_len],
        }
    }

    /// The first datagram (a frame always has one).
    pub fn first(&self) -> Datagram<&[u8]> {
        let bytes = self.buffer.as_ref();
        let d = &bytes[field::DATAGRAMS..];
        let data_len = usize::from(u16_at(d, field::LEN.start) & MAX_LEN_FIELD as u16);
        Datagram {
            buffer: &d[..DATAGRAM_HEADER_LEN + data_len + WKC_LEN],
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// The datagrams, mutable, in order (e.g. for a simulated terminal writing data and
    /// working counters).
    pub fn datagrams_mut(&mut self) -> impl Iterator<Item = Datagram<&mut [u8]>> {
        let len = self.chain_len;
        let mut rest = &mut self.buffer.as_mut()[field::DATAGRAMS..field::DATAGRAMS + len];
        core::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let data_len = usize::from(u16_at(rest, field::LEN.start) & MAX_LEN_FIELD as u16);
            let taken = core::mem::take(&mut rest);
            let (this, tail) = taken.split_at_mut(DATAGRAM_HEADER_LEN + data_len + WKC_LEN);
            rest = tail;
            Some(Datagram { buffer: this })
        })
    }

    /// Set the source MAC address.
    pub fn set_source(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&mac);
    }
}

/// Iterator over the datagrams of a validated frame.
#[derive(Debug, Clone)]
pub struct Datagrams<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Datagrams<'a> {
    type Item = Datagram<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < DATAGRAM_HEADER_LEN + WKC_LEN {
            return None;
        }
        let data_len = usize::from(u16_at(self.rest, field::LEN.start) & MAX_LEN_FIELD as u16);
        let total = DATAGRAM_HEADER_LEN + data_len + WKC_LEN;
        if total > self.rest.len() {
            return None;
        }
        let (this, tail) = self.rest.split_at(total);
        self.rest = tail;
        Some(Datagram { buffer: this })
    }
}

/// A zero-copy view of one datagram inside a validated frame.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Datagram<T> {
    fn len_field(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LEN.start)
    }

    /// The command. Validation guarantees a known code; `Nop` is never returned for an
    /// unknown one because unknown codes are rejected by [`Frame::new_checked`].
    pub fn command(&self) -> Command {
        Command::from_code(self.buffer.as_ref()[field::CMD]).unwrap_or(Command::Nop)
    }

    /// The index byte.
    pub fn index(&self) -> u8 {
        self.buffer.as_ref()[field::IDX]
    }

    /// The raw 32-bit address field.
    pub fn raw_address(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::ADDRESS];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The address, interpreted for the command.
    pub fn address(&self) -> Address {
        Address::from_raw(self.command(), self.raw_address())
    }

    /// Length of the data.
    pub fn data_len(&self) -> usize {
        usize::from(self.len_field() & MAX_LEN_FIELD as u16)
    }

    /// The circulating bit.
    pub fn circulating(&self) -> bool {
        self.len_field() & LEN_CIRCULATING != 0
    }

    /// The more-follows bit.
    pub fn more_follows(&self) -> bool {
        self.len_field() & LEN_MORE != 0
    }

    /// The IRQ field.
    pub fn irq(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::IRQ.start)
    }

    /// The data.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..field::DATA + self.data_len()]
    }

    /// The working counter.
    pub fn wkc(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::DATA + self.data_len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Datagram<T> {
    /// The data, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let len = self.data_len();
        &mut self.buffer.as_mut()[field::DATA..field::DATA + len]
    }

    /// Set the working counter.
    pub fn set_wkc(&mut self, wkc: u16) {
        let at = field::DATA + self.data_len();
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&wkc.to_le_bytes());
    }

    /// Set the raw address field (terminals increment ADP of auto-increment commands).
    pub fn set_raw_address(&mut self, raw: u32) {
        self.buffer.as_mut()[field::ADDRESS].copy_from_slice(&raw.to_le_bytes());
    }
}

/// One datagram, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagramRepr {
    /// The command.
    pub command: Command,
    /// The index byte.
    pub index: u8,
    /// The raw 32-bit address field.
    pub address: u32,
    /// The circulating bit.
    pub circulating: bool,
    /// The IRQ field.
    pub irq: u16,
    /// The data.
    pub data: Vec<u8>,
    /// The working counter.
    pub wkc: u16,
}

impl DatagramRepr {
    /// A datagram for `command` at `address` with `data`, index 0, working counter 0.
    pub fn new(command: Command, address: Address, data: Vec<u8>) -> DatagramRepr {
        DatagramRepr {
            command,
            index: 0,
            address: address.to_raw(),
            circulating: false,
            irq: 0,
            data,
            wkc: 0,
        }
    }

    /// Parse a datagram view.
    pub fn parse<T: AsRef<[u8]>>(view: &Datagram<T>) -> DatagramRepr {
        DatagramRepr {
            command: view.command(),
            index: view.index(),
            address: view.raw_address(),
            circulating: view.circulating(),
            irq: view.irq(),
            data: view.data().to_vec(),
            wkc: view.wkc(),
        }
    }

    /// The address interpreted for the command.
    pub fn address(&self) -> Address {
        Address::from_raw(self.command, self.address)
    }

    /// Bytes this datagram takes in a frame.
    pub fn wire_len(&self) -> usize {
        DATAGRAM_HEADER_LEN + self.data.len() + WKC_LEN
    }
}

/// One EtherCAT frame, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRepr {
    /// Destination MAC address (EtherCAT frames are usually broadcast).
    pub destination: [u8; 6],
    /// Source MAC address.
    pub source: [u8; 6],
    /// The datagrams, in order.
    pub datagrams: Vec<DatagramRepr>,
}

impl FrameRepr {
    /// Parse a validated frame view.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> FrameRepr {
        FrameRepr {
            destination: frame.destination(),
            source: frame.source(),
            datagrams: frame.datagrams().map(|d| DatagramRepr::parse(&d)).collect(),
        }
    }

    /// Validate and parse bytes.
    pub fn parse_bytes(bytes: &[u8]) -> Result<FrameRepr, WireError> {
        Ok(FrameRepr::parse(&Frame::new_checked(bytes)?))
    }

    /// Length of the datagram area.
    pub fn datagrams_len(&self) -> usize {
        self.datagrams.iter().map(DatagramRepr::wire_len).sum()
    }

    /// Length of the emitted frame, padding included.
    pub fn buffer_len(&self) -> usize {
        (field::DATAGRAMS + self.datagrams_len()).max(MIN_ETHERNET_FRAME)
    }

    /// Check the frame can be emitted: at least one datagram, all fitting one frame.
    pub fn check(&self) -> Result<(), WireError> {
        if self.datagrams.is_empty() {
            return Err(WireError::Empty);
        }
        let needed = self.datagrams_len();
        if needed > MAX_DATAGRAMS_LEN {
            return Err(WireError::TooLong { needed });
        }
        Ok(())
    }

    /// Write the frame into `buffer` (at least [`FrameRepr::buffer_len`] bytes), padding
    /// with zeros; returns the number of bytes written.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<usize, WireError> {
        self.check()?;
        let total = self.buffer_len();
        if buffer.len() < total {
            return Err(WireError::BufferTooShort {
                needed: total,
                got: buffer.len(),
            });
        }
        let buffer = &mut buffer[..total];
        buffer.fill(0);
        buffer[field::DESTINATION].copy_from_slice(&self.destination);
        buffer[field::SOURCE].copy_from_slice(&self.source);
        buffer[field::ETHERTYPE].copy_from_slice(&ETHERTYPE_ETHERCAT.to_be_bytes());
        // check() bounds the length below 0x7FF.
        let header = (self.datagrams_len() as u16) | (u16::from(ECAT_TYPE_DLPDU) << 12);
        buffer[field::ECAT_HEADER].copy_from_slice(&header.to_le_bytes());
        let mut at = field::DATAGRAMS;
        let last = self.datagrams.len() - 1;
        for (i, d) in self.datagrams.iter().enumerate() {
            let out = &mut buffer[at..at + d.wire_len()];
            out[field::CMD] = d.command.code();
            out[field::IDX] = d.index;
            out[field::ADDRESS].copy_from_slice(&d.address.to_le_bytes());
            let mut len = d.data.len() as u16;
            if d.circulating {
                len |= LEN_CIRCULATING;
            }
            if i != last {
                len |= LEN_MORE;
            }
            out[field::LEN].copy_from_slice(&len.to_le_bytes());
            out[field::IRQ].copy_from_slice(&d.irq.to_le_bytes());
            out[field::DATA..field::DATA + d.data.len()].copy_from_slice(&d.data);
            let w = field::DATA + d.data.len();
            out[w..w + 2].copy_from_slice(&d.wkc.to_le_bytes());
            at += d.wire_len();
        }
        Ok(total)
    }

    /// Emit into a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut buffer = vec![0; self.buffer_len()];
        self.emit(&mut buffer)?;
        Ok(buffer)
    }
}

impl fmt::Display for DatagramRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} idx {} {} len {} wkc {}",
            self.command,
            self.index,
            self.address(),
            self.data.len(),
            self.wkc
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> FrameRepr {
        FrameRepr {
            destination: [0xff; 6],
            source: [0x02, 0xfc, 0, 0, 0x12, 0x34],
            datagrams: vec![
                DatagramRepr {
                    index: 7,
                    ..DatagramRepr::new(
                        Command::Brd,
                        Address::Broadcast { register: 0 },
                        vec![0; 2],
                    )
                },
                DatagramRepr {
                    index: 8,
                    wkc: 3,
                    ..DatagramRepr::new(
                        Command::Fpwr,
                        Address::Station {
                            station: 0x1001,
                            register: 0x0120,
                        },
                        vec![0x02, 0x00],
                    )
                },
            ],
        }
    }

    #[test]
    fn emits_known_bytes() {
        let bytes = sample().to_bytes().unwrap();
        assert_eq!(bytes.len(), 60, "padded to the Ethernet minimum");
        assert_eq!(&bytes[12..14], &[0x88, 0xa4]);
        // length 28 = 2 * (10 + 2 + 2), type 1.
        assert_eq!(&bytes[14..16], &[28, 0x10]);
        // BRD, idx 7, address 0, len 2 + more-follows.
        assert_eq!(&bytes[16..26], &[7, 7, 0, 0, 0, 0, 2, 0x80, 0, 0]);
        // FPWR to 0x1001:0x0120, last datagram.
        assert_eq!(
            &bytes[30..40],
            &[5, 8, 0x01, 0x10, 0x20, 0x01, 2, 0x00, 0, 0]
        );
        assert_eq!(&bytes[42..44], &[3, 0]);
    }

    #[test]
    fn views_read_emitted_frame() {
        let bytes = sample().to_bytes().unwrap();
        let frame = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.datagram_count(), 2);
        let d: Vec<_> = frame.datagrams().collect();
        assert_eq!(d[1].command(), Command::Fpwr);
        assert_eq!(
            d[1].address(),
            Address::Station {
                station: 0x1001,
                register: 0x0120
            }
        );
        assert!(d[0].more_follows() && !d[1].more_follows());
        assert_eq!(d[1].wkc(), 3);
        assert_eq!(FrameRepr::parse(&frame), sample());
    }

    #[test]
    fn mutable_views_write_data_and_wkc() {
        let mut bytes = sample().to_bytes().unwrap();
        let mut frame = Frame::new_checked(&mut bytes[..]).unwrap();
        for mut d in frame.datagrams_mut() {
            d.data_mut().copy_from_slice(&[0xaa, 0xbb]);
            d.set_wkc(5);
        }
        let repr = FrameRepr::parse_bytes(&bytes).unwrap();
        assert!(
            repr.datagrams
                .iter()
                .all(|d| d.data == [0xaa, 0xbb] && d.wkc == 5)
        );
    }

    #[test]
    fn malformed_frames_are_precise_errors() {
        let good = sample().to_bytes().unwrap();
        assert_eq!(
            Frame::new_checked(&good[..10]).unwrap_err(),
            WireError::ShortFrame { len: 10 }
        );
        let mut b = good.clone();
        b[12] = 0x08;
        b[13] = 0x00;
        assert_eq!(
            Frame::new_checked(&b[..]).unwrap_err(),
            WireError::NotEtherCat(0x0800)
        );
        let mut b = good.clone();
        b[15] = 0x50;
        assert_eq!(
            Frame::new_checked(&b[..]).unwrap_err(),
            WireError::UnsupportedType(5)
        );
        let mut b = good.clone();
        b[16] = 15;
        assert_eq!(
            Frame::new_checked(&b[..]).unwrap_err(),
            WireError::ReservedCommand { index: 0, code: 15 }
        );
        // Second datagram claims more data than the header allows.
        let mut b = good.clone();
        b[36] = 40;
        assert!(matches!(
            Frame::new_checked(&b[..]).unwrap_err(),
            WireError::DatagramTruncated { index: 1, .. }
        ));
        // Clear more-follows on the first datagram: the chain ends early and the rest of
        // the header's length is padding (TwinCAT rounds the length up like this).
        let mut b = good.clone();
        b[23] = 0;
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(
            (f.datagram_count(), f.datagrams().count(), f.chain_len()),
            (1, 1, 14)
        );
        assert_eq!(f.ecat_len(), 28);
        // More-follows on the last datagram.
        let mut b = good.clone();
        b[37] |= 0x80;
        assert!(matches!(
            Frame::new_checked(&b[..]).unwrap_err(),
            WireError::Chain(_)
        ));
        // Header longer than the frame.
        let mut b = good;
        b[14] = 0xff;
        b[15] = 0x17;
        assert!(matches!(
            Frame::new_checked(&b[..]).unwrap_err(),
            WireError::HeaderLength { .. }
        ));
    }

    #[test]
    fn emit_rejects_oversized_and_empty_frames() {
        let mut f = sample();
        f.datagrams[0].data = vec![0; MAX_DATAGRAM_DATA + 1];
        assert!(matches!(f.to_bytes(), Err(WireError::TooLong { .. })));
        f.datagrams.clear();
        assert_eq!(f.to_bytes(), Err(WireError::Empty));
        let mut small = [0u8; 20];
        assert!(matches!(
            sample().emit(&mut small),
            Err(WireError::BufferTooShort {
                needed: 60,
                got: 20
            })
        ));
    }

    pub(crate) fn arb_datagram() -> impl Strategy<Value = DatagramRepr> {
        (
            0u8..15,
            any::<u8>(),
            any::<u32>(),
            any::<bool>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..200),
            any::<u16>(),
        )
            .prop_map(
                |(c, index, address, circulating, irq, data, wkc)| DatagramRepr {
                    command: Command::from_code(c).unwrap_or(Command::Nop),
                    index,
                    address,
                    circulating,
                    irq,
                    data,
                    wkc,
                },
            )
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(
            destination in any::<[u8; 6]>(),
            source in any::<[u8; 6]>(),
            datagrams in proptest::collection::vec(arb_datagram(), 1..7),
        ) {
            let repr = FrameRepr { destination, source, datagrams };
            let bytes = repr.to_bytes().unwrap();
            prop_assert_eq!(bytes.len(), repr.buffer_len());
            prop_assert_eq!(FrameRepr::parse_bytes(&bytes).unwrap(), repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(frame) = Frame::new_checked(&bytes[..]) {
                let repr = FrameRepr::parse(&frame);
                prop_assert_eq!(repr.datagrams.len(), frame.datagram_count());
            }
        }

        #[test]
        fn ethercat_looking_bytes_never_panic(
            header in any::<u16>(),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut bytes = vec![0xff; 12];
            bytes.extend_from_slice(&[0x88, 0xa4]);
            bytes.extend_from_slice(&header.to_le_bytes());
            bytes.extend_from_slice(&body);
            if let Ok(frame) = Frame::new_checked(&bytes[..]) {
                let n = frame.datagrams().count();
                prop_assert_eq!(n, frame.datagram_count());
                let re = FrameRepr::parse(&frame).to_bytes().unwrap();
                prop_assert_eq!(FrameRepr::parse_bytes(&re).unwrap(), FrameRepr::parse(&frame));
            }
        }
    }
}
