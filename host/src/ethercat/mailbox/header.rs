//! The 6-byte mailbox header (ETG.1000.4 §5.6 table 29), mailbox types, the counter
//! and mailbox error replies (type 0, ETG.1000.4 table 30). Sans-IO.

use std::fmt;

/// Length of the mailbox header in bytes (ETG.1000.4 table 29).
pub const HEADER_LEN: usize = 6;

/// The protocol a mailbox message carries (ETG.1000.4 table 29, "Type").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailboxType {
    /// Mailbox error reply.
    Error,
    /// ADS over EtherCAT.
    Aoe,
    /// Ethernet over EtherCAT.
    Eoe,
    /// CANopen over EtherCAT.
    Coe,
    /// File access over EtherCAT.
    Foe,
    /// Servo profile over EtherCAT.
    Soe,
    /// Vendor specific.
    Voe,
    /// A value the spec reserves.
    Reserved(u8),
}

impl MailboxType {
    /// The 4-bit code.
    pub fn code(self) -> u8 {
        match self {
            MailboxType::Error => 0x0,
            MailboxType::Aoe => 0x1,
            MailboxType::Eoe => 0x2,
            MailboxType::Coe => 0x3,
            MailboxType::Foe => 0x4,
            MailboxType::Soe => 0x5,
            MailboxType::Voe => 0xF,
            MailboxType::Reserved(v) => v & 0x0F,
        }
    }

    /// The type of a 4-bit code.
    pub fn from_code(code: u8) -> Self {
        match code & 0x0F {
            0x0 => MailboxType::Error,
            0x1 => MailboxType::Aoe,
            0x2 => MailboxType::Eoe,
            0x3 => MailboxType::Coe,
            0x4 => MailboxType::Foe,
            0x5 => MailboxType::Soe,
            0xF => MailboxType::Voe,
            v => MailboxType::Reserved(v),
        }
    }
}

/// The session counter of a mailbox message: 1..=7, cycling; 0 means "not used"
/// (ETG.1000.4 §5.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter(u8);

impl Counter {
    /// A counter value (masked to 3 bits).
    pub fn new(v: u8) -> Self {
        Counter(v & 0x07)
    }

    /// The value 0..=7.
    pub fn get(self) -> u8 {
        self.0
    }

    /// The counter after this one: 1, 2, .., 7, 1, .. (0 is skipped).
    pub fn next(self) -> Self {
        Counter(if self.0 >= 7 { 1 } else { self.0 + 1 })
    }
}

/// A mailbox header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxHeader {
    /// Length of the data that follows the header.
    pub length: u16,
    /// Station address: of the destination in requests from the master (0 for the
    /// terminal itself), of the source in replies.
    pub address: u16,
    /// Channel, bits 0..5 of byte 4 (0 normally).
    pub channel: u8,
    /// Priority, bits 6..7 of byte 4.
    pub priority: u8,
    /// Protocol of the data.
    pub kind: MailboxType,
    /// Session counter, bits 4..6 of byte 5.
    pub counter: Counter,
}

/// Errors of decoding a mailbox message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer than six bytes.
    #[error("mailbox message of {len} bytes is shorter than its 6-byte header")]
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The length field runs past the mailbox.
    #[error("mailbox header declares {length} data bytes but the mailbox holds only {available}")]
    LengthExceedsMailbox {
        /// Declared length.
        length: u16,
        /// Bytes after the header.
        available: usize,
    },
}

impl MailboxHeader {
    /// Parses the header of a mailbox buffer and returns it with the data it declares.
    pub fn parse(bytes: &[u8]) -> Result<(MailboxHeader, &[u8]), HeaderError> {
        let Some((h, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(HeaderError::TooShort { len: bytes.len() });
        };
        let header = MailboxHeader {
            length: u16::from_le_bytes([h[0], h[1]]),
            address: u16::from_le_bytes([h[2], h[3]]),
            channel: h[4] & 0x3F,
            priority: h[4] >> 6,
            kind: MailboxType::from_code(h[5] & 0x0F),
            counter: Counter::new(h[5] >> 4),
        };
        let len = usize::from(header.length);
        if len > rest.len() {
            return Err(HeaderError::LengthExceedsMailbox {
                length: header.length,
                available: rest.len(),
            });
        }
        Ok((header, &rest[..len]))
    }

    /// The six header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let l = self.length.to_le_bytes();
        let a = self.address.to_le_bytes();
        [
            l[0],
            l[1],
            a[0],
            a[1],
            (self.channel & 0x3F) | (self.priority << 6),
            self.kind.code() | (self.counter.get() << 4),
        ]
    }
}

/// Builds a complete mailbox message of exactly `mailbox_size` bytes (the whole SM0
/// area must be written for the terminal to see it), or `None` when `data` does not fit.
pub fn encode_message(
    kind: MailboxType,
    counter: Counter,
    data: &[u8],
    mailbox_size: usize,
) -> Option<Vec<u8>> {
    if HEADER_LEN + data.len() > mailbox_size {
        return None;
    }
    let header = MailboxHeader {
        length: u16::try_from(data.len()).ok()?,
        address: 0,
        channel: 0,
        priority: 0,
        kind,
        counter,
    };
    let mut buf = vec![0u8; mailbox_size];
    buf[..HEADER_LEN].copy_from_slice(&header.encode());
    buf[HEADER_LEN..HEADER_LEN + data.len()].copy_from_slice(data);
    Some(buf)
}

/// The detail code of a mailbox error reply (ETG.1000.4 table 30).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxErrorCode(pub u16);

impl MailboxErrorCode {
    /// The spec's text for the code.
    pub fn description(self) -> &'static str {
        match self.0 {
            0x0001 => "syntax of the 6-octet mailbox header is wrong",
            0x0002 => "the mailbox protocol is not supported",
            0x0003 => "the channel field contains a wrong value",
            0x0004 => "the service in the mailbox protocol is not supported",
            0x0005 => "the mailbox protocol header of the mailbox protocol is wrong",
            0x0006 => "length of received mailbox data is too short",
            0x0007 => "mailbox protocol cannot be processed because of limited resources",
            0x0008 => "the length of data is inconsistent",
            0x0009 => "service in work (the terminal is still processing a previous request)",
            _ => "unknown mailbox error code",
        }
    }
}

impl fmt::Display for MailboxErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x} ({})", self.0, self.description())
    }
}

/// Decodes the data of a type-0 mailbox error reply: command 0x0001 followed by the
/// detail code (ETG.1000.4 table 30).
pub fn decode_error_reply(data: &[u8]) -> Option<MailboxErrorCode> {
    match data {
        [_, _, lo, hi, ..] => Some(MailboxErrorCode(u16::from_le_bytes([*lo, *hi]))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = MailboxHeader {
            length: 10,
            address: 0x1001,
            channel: 0,
            priority: 3,
            kind: MailboxType::Coe,
            counter: Counter::new(5),
        };
        let b = h.encode();
        assert_eq!(b, [10, 0, 0x01, 0x10, 0xC0, 0x53]);
        let mut buf = b.to_vec();
        buf.extend_from_slice(&[0xAA; 12]);
        let (back, data) = MailboxHeader::parse(&buf).expect("parse");
        assert_eq!(back, h);
        assert_eq!(data.len(), 10);
    }

    #[test]
    fn counter_cycles_one_to_seven() {
        let mut c = Counter::default();
        let seq: Vec<u8> = (0..9)
            .map(|_| {
                c = c.next();
                c.get()
            })
            .collect();
        assert_eq!(seq, vec![1, 2, 3, 4, 5, 6, 7, 1, 2]);
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert_eq!(
            MailboxHeader::parse(&[1, 2, 3]),
            Err(HeaderError::TooShort { len: 3 })
        );
        assert_eq!(
            MailboxHeader::parse(&[20, 0, 0, 0, 0, 3, 1, 2]),
            Err(HeaderError::LengthExceedsMailbox {
                length: 20,
                available: 2
            })
        );
    }

    #[test]
    fn message_fills_the_mailbox() {
        let m = encode_message(MailboxType::Coe, Counter::new(1), &[1, 2, 3], 16).expect("fits");
        assert_eq!(m.len(), 16);
        assert_eq!(&m[..9], &[3, 0, 0, 0, 0, 0x13, 1, 2, 3]);
        assert!(encode_message(MailboxType::Coe, Counter::new(1), &[0; 11], 16).is_none());
    }

    #[test]
    fn error_reply_decodes() {
        let code = decode_error_reply(&[0x01, 0x00, 0x02, 0x00]).expect("code");
        assert_eq!(code, MailboxErrorCode(2));
        assert_eq!(
            code.to_string(),
            "0x0002 (the mailbox protocol is not supported)"
        );
        assert_eq!(decode_error_reply(&[1]), None);
    }
}
