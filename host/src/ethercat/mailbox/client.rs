//! The master's end of one terminal's mailbox over [`StationIo`]: writing requests into
//! the SM0 area, reading replies from SM1 when its status says full, repeat requests
//! when a reply is lost (ETG.1000.4 §5.6.2.4), timeouts and error replies.

use super::header::{
    Counter, HeaderError, MailboxErrorCode, MailboxHeader, MailboxType, decode_error_reply,
    encode_message,
};
use crate::ethercat::sii::SiiImage;
use crate::ethercat::station_io::{RegisterError, StationIo, StationIoError, StationIoExt};
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

/// First SyncManager register block; SyncManager n is at 0x0800 + 8n (ETG.1000.4 table 57).
pub const REG_SM_BASE: u16 = 0x0800;
/// Offset of the status register in a SyncManager block (ETG.1000.4 table 59).
pub const SM_STATUS: u16 = 5;
/// Offset of the activate register (ETG.1000.4 table 60).
pub const SM_ACTIVATE: u16 = 6;
/// Offset of the PDI control register (ETG.1000.4 table 61).
pub const SM_PDI_CONTROL: u16 = 7;
/// Status bit: the mailbox is full (ETG.1000.4 table 59).
pub const SM_STATUS_MAILBOX_FULL: u8 = 0x08;
/// Activate bit: repeat request, toggled by the master (ETG.1000.4 table 60).
pub const SM_ACTIVATE_REPEAT: u8 = 0x02;
/// PDI control bit: repeat acknowledge, toggled by the terminal (ETG.1000.4 table 61).
pub const SM_PDI_REPEAT_ACK: u8 = 0x02;

/// Address of register `offset` of SyncManager `sm`.
pub fn sm_register(sm: u8, offset: u16) -> u16 {
    REG_SM_BASE + 8 * u16::from(sm) + offset
}

/// One mailbox SyncManager area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxArea {
    /// SyncManager number.
    pub sync_manager: u8,
    /// ESC address of the area.
    pub start: u16,
    /// Size in bytes.
    pub length: u16,
}

/// Where a terminal's mailboxes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxConfig {
    /// The area the master writes (SM0, the terminal's receive mailbox).
    pub write: MailboxArea,
    /// The area the master reads (SM1, the terminal's send mailbox).
    pub read: MailboxArea,
}

impl MailboxConfig {
    /// The standard mailbox from the SII header (words 0x18..0x1B) on SM0/SM1, or
    /// `None` when the terminal has no mailbox.
    pub fn from_sii(sii: &SiiImage) -> Option<Self> {
        Self::from_areas(sii.header.rx_mailbox, sii.header.tx_mailbox)
    }

    /// The bootstrap mailbox from the SII header (words 0x14..0x17), for BOOT state.
    pub fn bootstrap_from_sii(sii: &SiiImage) -> Option<Self> {
        Self::from_areas(
            sii.header.bootstrap_rx_mailbox,
            sii.header.bootstrap_tx_mailbox,
        )
    }

    fn from_areas(
        rx: crate::ethercat::sii::category::MailboxArea,
        tx: crate::ethercat::sii::category::MailboxArea,
    ) -> Option<Self> {
        // A mailbox needs room for its header and a protocol header.
        if rx.size < 8 || tx.size < 8 {
            return None;
        }
        Some(Self {
            write: MailboxArea {
                sync_manager: 0,
                start: rx.offset,
                length: rx.size,
            },
            read: MailboxArea {
                sync_manager: 1,
                start: tx.offset,
                length: tx.size,
            },
        })
    }
}

/// Timeouts of mailbox exchanges.
#[derive(Debug, Clone, Copy)]
pub struct MailboxOptions {
    /// How long a reply may take.
    pub response_timeout: Duration,
    /// How long SM0 may stay full before a write gives up.
    pub write_timeout: Duration,
    /// How many repeat requests are made for one lost reply.
    pub repeat_attempts: u32,
}

impl Default for MailboxOptions {
    fn default() -> Self {
        Self {
            response_timeout: Duration::from_millis(1000),
            write_timeout: Duration::from_millis(1000),
            repeat_attempts: 3,
        }
    }
}

/// Failure of a mailbox exchange.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    /// A register access failed (transport error, or the terminal did not answer).
    #[error("mailbox of terminal {station:#06x}: {source}")]
    Register {
        /// Station address.
        station: u16,
        /// The register error.
        #[source]
        source: RegisterError,
    },
    /// The message does not fit the mailbox.
    #[error(
        "mailbox of terminal {station:#06x}: a {len}-byte message does not fit the {mailbox}-byte mailbox"
    )]
    TooLarge {
        /// Station address.
        station: u16,
        /// Message length including the mailbox header.
        len: usize,
        /// Mailbox size.
        mailbox: usize,
    },
    /// The terminal did not take the request out of SM0 in time.
    #[error(
        "mailbox of terminal {station:#06x}: SM0 still full after {waited:?}; the terminal does not read its mailbox"
    )]
    WriteTimeout {
        /// Station address.
        station: u16,
        /// How long the master waited.
        waited: Duration,
    },
    /// No reply arrived in time.
    #[error("mailbox of terminal {station:#06x}: no reply within {waited:?}")]
    ResponseTimeout {
        /// Station address.
        station: u16,
        /// How long the master waited.
        waited: Duration,
    },
    /// A lost reply could not be repeated.
    #[error(
        "mailbox of terminal {station:#06x}: reply lost and {attempts} repeat requests were not acknowledged"
    )]
    RepeatFailed {
        /// Station address.
        station: u16,
        /// Repeat requests made.
        attempts: u32,
    },
    /// A reply's header is malformed.
    #[error("mailbox of terminal {station:#06x}: malformed reply: {source}")]
    Malformed {
        /// Station address.
        station: u16,
        /// What is wrong.
        #[source]
        source: HeaderError,
    },
    /// The terminal answered with a mailbox error reply.
    #[error("mailbox of terminal {station:#06x} replied with mailbox error {code}")]
    ErrorReply {
        /// Station address.
        station: u16,
        /// The decoded error code.
        code: MailboxErrorCode,
    },
}

/// A received mailbox message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxMessage {
    /// Its header.
    pub header: MailboxHeader,
    /// The data the header declares.
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
struct MailboxState {
    /// Counter of the last message sent, `None` before the first.
    sent: Option<Counter>,
    /// Counter of the last message received.
    received: Option<Counter>,
}

/// The mailbox of one terminal.
#[derive(Debug)]
pub struct Mailbox<T> {
    io: T,
    station: u16,
    config: MailboxConfig,
    options: MailboxOptions,
    state: Mutex<MailboxState>,
}

/// Exclusive use of a mailbox for one conversation (e.g. a segmented SDO transfer).
#[derive(Debug)]
pub struct MailboxSession<'a, T> {
    mailbox: &'a Mailbox<T>,
    state: MutexGuard<'a, MailboxState>,
}

impl<T: StationIo> Mailbox<T> {
    /// The mailbox of terminal `station` with the given areas.
    pub fn new(io: T, station: u16, config: MailboxConfig) -> Self {
        Self::with_options(io, station, config, MailboxOptions::default())
    }

    /// Same as [`Mailbox::new`] with explicit timeouts.
    pub fn with_options(
        io: T,
        station: u16,
        config: MailboxConfig,
        options: MailboxOptions,
    ) -> Self {
        Self {
            io,
            station,
            config,
            options,
            state: Mutex::new(MailboxState::default()),
        }
    }

    /// The terminal's station address.
    pub fn station(&self) -> u16 {
        self.station
    }

    /// The mailbox areas.
    pub fn config(&self) -> MailboxConfig {
        self.config
    }

    /// The timeouts in use.
    pub fn options(&self) -> MailboxOptions {
        self.options
    }

    /// The register access this mailbox uses.
    pub fn io(&self) -> &T {
        &self.io
    }

    /// Largest payload (after the 6-byte mailbox header) a request can carry.
    pub fn max_data(&self) -> usize {
        usize::from(self.config.write.length).saturating_sub(super::header::HEADER_LEN)
    }

    /// Largest payload a reply can carry.
    pub fn max_reply_data(&self) -> usize {
        usize::from(self.config.read.length).saturating_sub(super::header::HEADER_LEN)
    }

    /// Starts a conversation; other conversations wait until this one is dropped.
    pub async fn session(&self) -> MailboxSession<'_, T> {
        MailboxSession {
            mailbox: self,
            state: self.state.lock().await,
        }
    }

    fn reg_err(&self, source: impl Into<RegisterError>) -> MailboxError {
        MailboxError::Register {
            station: self.station,
            source: source.into(),
        }
    }

    async fn sm_byte(&self, sm: u8, offset: u16) -> Result<u8, MailboxError> {
        self.io
            .read_u8(self.station, sm_register(sm, offset))
            .await
            .map_err(|e| self.reg_err(e))
    }
}

/// Polls: a few immediate retries, then 1 ms sleeps.
async fn backoff(polls: &mut u32) {
    *polls += 1;
    if *polls < 8 {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

impl<T: StationIo> MailboxSession<'_, T> {
    /// How long a reply may take ([`MailboxOptions::response_timeout`]).
    pub fn response_timeout(&self) -> Duration {
        self.mailbox.options.response_timeout
    }

    /// Writes one request into SM0, waiting while the terminal has not yet read the
    /// previous one. A write whose reply frame was lost is resent with the same
    /// counter, which the terminal recognises as a repetition.
    pub async fn send(&mut self, kind: MailboxType, data: &[u8]) -> Result<(), MailboxError> {
        let mb = self.mailbox;
        let size = usize::from(mb.config.write.length);
        // The first request carries the start value 0 (ETG.1000.4 table 29), which a
        // terminal never drops as a repetition: it may still remember the last counter
        // of an earlier master process. Later requests cycle 1..7.
        let counter = self.state.sent.map_or(Counter::new(0), Counter::next);
        let Some(frame) = encode_message(kind, counter, data, size) else {
            return Err(MailboxError::TooLarge {
                station: mb.station,
                len: data.len() + super::header::HEADER_LEN,
                mailbox: size,
            });
        };
        let start = Instant::now();
        let mut polls = 0;
        loop {
            match mb.io.write(mb.station, mb.config.write.start, &frame).await {
                Ok(1) => break,
                Ok(_) => {
                    // SM0 still holds an earlier request, or the terminal is gone:
                    // the status read fails in the second case.
                    mb.sm_byte(mb.config.write.sync_manager, SM_STATUS).await?;
                }
                Err(StationIoError::Timeout { .. }) => {
                    // The frame was lost: if SM0 is full, the write reached the
                    // terminal before the frame was lost.
                    let status = mb.sm_byte(mb.config.write.sync_manager, SM_STATUS).await?;
                    if status & SM_STATUS_MAILBOX_FULL != 0 {
                        break;
                    }
                    // Not written, or already read by the terminal: the resend carries
                    // the same counter, which marks it as a repetition (ETG.1000.4 §5.6.2.4).
                    // Writes lost again and again end at the write timeout below.
                    tracing::debug!(station = mb.station, "mailbox write lost, resending");
                }
                Err(e) => return Err(mb.reg_err(e)),
            }
            let waited = start.elapsed();
            if waited >= mb.options.write_timeout {
                return Err(MailboxError::WriteTimeout {
                    station: mb.station,
                    waited,
                });
            }
            backoff(&mut polls).await;
        }
        self.state.sent = Some(counter);
        tracing::trace!(
            station = mb.station,
            ?kind,
            counter = counter.get(),
            len = data.len(),
            "mailbox request sent"
        );
        Ok(())
    }

    /// Waits for the next message in SM1 (up to the response timeout), repeating it
    /// if the frame that read it was lost. A type-0 error reply is returned as
    /// [`MailboxError::ErrorReply`].
    pub async fn receive(&mut self) -> Result<MailboxMessage, MailboxError> {
        let timeout = self.mailbox.options.response_timeout;
        self.receive_within(timeout).await
    }

    /// Same as [`MailboxSession::receive`] with an explicit timeout.
    pub async fn receive_within(
        &mut self,
        timeout: Duration,
    ) -> Result<MailboxMessage, MailboxError> {
        let mb = self.mailbox;
        let area = mb.config.read;
        let start = Instant::now();
        let mut polls = 0;
        loop {
            let status = mb.sm_byte(area.sync_manager, SM_STATUS).await?;
            if status & SM_STATUS_MAILBOX_FULL != 0 {
                let mut buf = vec![0u8; usize::from(area.length)];
                match mb.io.read(mb.station, area.start, &mut buf).await {
                    Ok(1) => {
                        if let Some(msg) = self.accept(&buf)? {
                            return Ok(msg);
                        }
                        continue;
                    }
                    Ok(_) | Err(StationIoError::Timeout { .. }) => {
                        // The read emptied SM1 but its frame never came back.
                        tracing::debug!(
                            station = mb.station,
                            "mailbox reply lost, requesting a repeat"
                        );
                        self.repeat().await?;
                        // Replies lost again and again must not outlast the timeout.
                        let waited = start.elapsed();
                        if waited >= timeout {
                            return Err(MailboxError::ResponseTimeout {
                                station: mb.station,
                                waited,
                            });
                        }
                        continue;
                    }
                    Err(e) => return Err(mb.reg_err(e)),
                }
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(MailboxError::ResponseTimeout {
                    station: mb.station,
                    waited,
                });
            }
            backoff(&mut polls).await;
        }
    }

    fn accept(&mut self, buf: &[u8]) -> Result<Option<MailboxMessage>, MailboxError> {
        let station = self.mailbox.station;
        let (header, data) = MailboxHeader::parse(buf)
            .map_err(|source| MailboxError::Malformed { station, source })?;
        self.state.received = Some(header.counter);
        if header.kind == MailboxType::Error {
            let code = decode_error_reply(data).unwrap_or(MailboxErrorCode(0));
            return Err(MailboxError::ErrorReply { station, code });
        }
        tracing::trace!(station, kind = ?header.kind, counter = header.counter.get(), len = data.len(), "mailbox reply received");
        Ok(Some(MailboxMessage {
            header,
            data: data.to_vec(),
        }))
    }

    /// Asks the terminal to put its last reply into SM1 again: toggles the repeat bit
    /// of SM1's activate register and waits for the acknowledge toggle.
    pub async fn repeat(&mut self) -> Result<(), MailboxError> {
        let mb = self.mailbox;
        let sm = mb.config.read.sync_manager;
        for _ in 0..mb.options.repeat_attempts.max(1) {
            let activate = mb.sm_byte(sm, SM_ACTIVATE).await?;
            let want = (activate ^ SM_ACTIVATE_REPEAT) & SM_ACTIVATE_REPEAT;
            mb.io
                .write_checked(
                    mb.station,
                    sm_register(sm, SM_ACTIVATE),
                    &[activate ^ SM_ACTIVATE_REPEAT],
                )
                .await
                .map_err(|e| mb.reg_err(e))?;
            let start = Instant::now();
            let mut polls = 0;
            loop {
                let pdi = mb.sm_byte(sm, SM_PDI_CONTROL).await?;
                if pdi & SM_PDI_REPEAT_ACK == want {
                    return Ok(());
                }
                if start.elapsed() >= mb.options.response_timeout {
                    break;
                }
                backoff(&mut polls).await;
            }
        }
        Err(MailboxError::RepeatFailed {
            station: mb.station,
            attempts: mb.options.repeat_attempts.max(1),
        })
    }

    /// Reads and drops whatever waits in SM1 (stale replies of an earlier conversation).
    pub async fn drain(&mut self) -> Result<usize, MailboxError> {
        let mb = self.mailbox;
        let area = mb.config.read;
        let mut dropped = 0;
        loop {
            let status = mb.sm_byte(area.sync_manager, SM_STATUS).await?;
            if status & SM_STATUS_MAILBOX_FULL == 0 {
                return Ok(dropped);
            }
            let mut buf = vec![0u8; usize::from(area.length)];
            mb.io
                .read_checked(mb.station, area.start, &mut buf)
                .await
                .map_err(|e| mb.reg_err(e))?;
            dropped += 1;
            if dropped > 16 {
                return Ok(dropped);
            }
        }
    }

    /// The mailbox this session uses.
    pub fn mailbox(&self) -> &Mailbox<T> {
        self.mailbox
    }
}
