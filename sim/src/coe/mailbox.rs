//! The mailbox header every mailbox message starts with, and mailbox error replies.
//! ETG.1000.4 section 5.6 (table 29 header, table 30 error reply).

/// Length of the mailbox header. ETG.1000.4 table 29.
pub const HEADER_LEN: usize = 6;

/// Mailbox type: error reply. ETG.1000.4 table 29.
pub const TYPE_ERROR: u8 = 0x00;
/// Mailbox type: CAN application protocol over EtherCAT. ETG.1000.4 table 29.
pub const TYPE_COE: u8 = 0x03;

/// Mailbox error detail: syntax error of the 6 octets mailbox header. ETG.1000.4 table 30.
pub const ERR_SYNTAX: u16 = 0x0001;
/// Mailbox error detail: the mailbox protocol is not supported. ETG.1000.4 table 30.
pub const ERR_UNSUPPORTED_PROTOCOL: u16 = 0x0002;
/// Mailbox error detail: service in the mailbox protocol is not supported. ETG.1000.4 table 30.
pub const ERR_SERVICE_NOT_SUPPORTED: u16 = 0x0004;
/// Mailbox error detail: length of the mailbox protocol header is wrong. ETG.1000.4 table 30.
pub const ERR_INVALID_HEADER: u16 = 0x0005;
/// Mailbox error detail: mailbox data too short. ETG.1000.4 table 30.
pub const ERR_SIZE_TOO_SHORT: u16 = 0x0006;
/// Mailbox error detail: the length field exceeds the mailbox. ETG.1000.4 table 30.
pub const ERR_INVALID_SIZE: u16 = 0x0008;

/// A parsed mailbox header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxHeader {
    /// Length of the data following the header.
    pub length: u16,
    /// Station address of the source (master to terminal) or destination.
    pub address: u16,
    /// Channel (bits 0-5) and priority (bits 6-7).
    pub channel_priority: u8,
    /// Mailbox type (bits 0-3 of byte 5).
    pub mailbox_type: u8,
    /// Counter 1..7 (0: not used), bits 4-6 of byte 5.
    pub counter: u8,
}

impl MailboxHeader {
    /// Parses the header at the start of `bytes`, or None if fewer than six bytes.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let h = bytes.get(..HEADER_LEN)?;
        Some(Self {
            length: u16::from_le_bytes([h[0], h[1]]),
            address: u16::from_le_bytes([h[2], h[3]]),
            channel_priority: h[4],
            mailbox_type: h[5] & 0x0F,
            counter: (h[5] >> 4) & 0x07,
        })
    }

    /// The six header bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let l = self.length.to_le_bytes();
        let a = self.address.to_le_bytes();
        [
            l[0],
            l[1],
            a[0],
            a[1],
            self.channel_priority,
            (self.mailbox_type & 0x0F) | ((self.counter & 0x07) << 4),
        ]
    }
}

/// Builds a complete mailbox message of `mailbox_type` with `data`.
pub fn message(mailbox_type: u8, counter: u8, data: &[u8]) -> Vec<u8> {
    let header = MailboxHeader {
        length: data.len() as u16,
        address: 0,
        channel_priority: 0,
        mailbox_type,
        counter,
    };
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

/// A mailbox error reply with `detail` (one of the `ERR_*` codes). ETG.1000.4 table 30.
pub fn error_reply(counter: u8, detail: u16) -> Vec<u8> {
    // Command 0x0001: mailbox error. ETG.1000.4 table 30.
    let mut data = 0x0001u16.to_le_bytes().to_vec();
    data.extend_from_slice(&detail.to_le_bytes());
    message(TYPE_ERROR, counter, &data)
}
