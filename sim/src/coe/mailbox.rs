//! Mailbox messages the CoE server queues: a message behind its header, and mailbox
//! error replies. ETG.1000.4 section 5.6 (table 29 header, table 30 error reply). The
//! header, the mailbox types and the error codes are the ESC side's, in [`crate::app`].

use crate::app::mailbox_type;
pub use crate::app::{MAILBOX_HEADER_LEN as HEADER_LEN, MailboxHeader};

/// Builds a complete mailbox message of `mailbox_type` with `data`, from station
/// address 0 on channel 0 with priority 0.
pub fn message(mailbox_type: u8, counter: u8, data: &[u8]) -> Vec<u8> {
    let header = MailboxHeader {
        length: u16::try_from(data.len()).unwrap_or(u16::MAX),
        address: 0,
        channel: 0,
        priority: 0,
        mailbox_type,
        counter,
    };
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

/// A mailbox error reply with `detail` (one of [`crate::app::mailbox_error`]).
/// ETG.1000.4 table 30.
pub fn error_reply(counter: u8, detail: u16) -> Vec<u8> {
    // Command 0x0001: mailbox error. ETG.1000.4 table 30.
    let mut data = 0x0001u16.to_le_bytes().to_vec();
    data.extend_from_slice(&detail.to_le_bytes());
    message(mailbox_type::ERR, counter, &data)
}
