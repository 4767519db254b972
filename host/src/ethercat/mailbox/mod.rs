//! The mailbox protocol: headers, counters, repeat requests, timeouts.
//!
//! - [`header`]: sans-IO encoding of the 6-byte header and decoding of error replies.
//! - [`client`]: [`Mailbox`], the master's end of one terminal's SM0/SM1 mailbox over
//!   [`StationIo`](crate::ethercat::station_io::StationIo).

pub mod client;
pub mod header;

pub use client::{
    Mailbox, MailboxArea, MailboxConfig, MailboxError, MailboxMessage, MailboxOptions,
    MailboxSession,
};
pub use header::{Counter, MailboxErrorCode, MailboxHeader, MailboxType};
