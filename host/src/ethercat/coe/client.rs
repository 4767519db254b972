//! The async CoE client of one terminal: SDO upload and download of any size
//! (expedited, normal, segmented; complete access), SDO information with fragmented
//! replies, and emergencies queued as they arrive.

use super::abort::AbortCode;
use super::emergency::Emergency;
use super::info::{
    self, EntryDescription, Fragment, ObjectDescription, OdListType, Reassembly, opcode,
};
use super::sdo::{
    COE_HEADER_LEN, DecodeError, SDO_HEADER_LEN, SdoAddress, SdoRequest, SdoResponse,
    parse_coe_header, service,
};
use crate::ethercat::mailbox::{
    Mailbox, MailboxError, MailboxMessage, MailboxSession, MailboxType,
};
use crate::ethercat::station_io::StationIo;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// Bytes of a download segment request before its data: CoE header and command byte.
const SEGMENT_OVERHEAD: usize = COE_HEADER_LEN + 1;
/// Bytes of a normal initiate request before its data.
const INITIATE_OVERHEAD: usize = COE_HEADER_LEN + SDO_HEADER_LEN;

/// Failure of a CoE transfer.
#[derive(Debug, thiserror::Error)]
pub enum CoeError {
    /// The mailbox exchange failed (timeout, terminal gone, mailbox error reply).
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    /// The terminal aborted the transfer.
    #[error("SDO {index:#06x}:{subindex:02x} on terminal {station:#06x} aborted: {code}")]
    Abort {
        /// Station address.
        station: u16,
        /// Object index.
        index: u16,
        /// Subindex.
        subindex: u8,
        /// The abort code with its meaning.
        code: AbortCode,
    },
    /// The terminal answered with something the protocol does not allow here.
    #[error("SDO {index:#06x}:{subindex:02x} on terminal {station:#06x}: {detail}")]
    Protocol {
        /// Station address.
        station: u16,
        /// Object index.
        index: u16,
        /// Subindex.
        subindex: u8,
        /// What was wrong.
        detail: String,
    },
    /// An SDO information request failed.
    #[error("SDO information on terminal {station:#06x} ({what}): {code}")]
    InfoAbort {
        /// Station address.
        station: u16,
        /// Which request.
        what: String,
        /// The error code.
        code: AbortCode,
    },
    /// An SDO information reply was malformed.
    #[error("SDO information on terminal {station:#06x} ({what}): {detail}")]
    InfoProtocol {
        /// Station address.
        station: u16,
        /// Which request.
        what: String,
        /// What was wrong.
        detail: String,
    },
}

impl CoeError {
    /// The abort code, if the terminal aborted.
    pub fn abort_code(&self) -> Option<AbortCode> {
        match self {
            CoeError::Abort { code, .. } | CoeError::InfoAbort { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The CoE client of one terminal.
#[derive(Debug)]
pub struct CoeClient<T> {
    mailbox: Mailbox<T>,
    emergencies: Mutex<VecDeque<Emergency>>,
}

/// Largest number of emergencies kept before the oldest are dropped.
const MAX_QUEUED_EMERGENCIES: usize = 64;

enum Reply {
    Sdo(SdoResponse),
    Info(Vec<u8>),
    Malformed(DecodeError),
}

/// Largest SDO upload accepted, whatever size the terminal announces (ETG.1000.6 allows
/// up to 2³² − 1 bytes; the largest objects of real terminals are a few KiB).
pub const MAX_UPLOAD: usize = 16 * 1024 * 1024;

impl<T: StationIo> CoeClient<T> {
    /// A CoE client over a terminal's mailbox.
    pub fn new(mailbox: Mailbox<T>) -> Self {
        Self {
            mailbox,
            emergencies: Mutex::new(VecDeque::new()),
        }
    }

    /// The mailbox used.
    pub fn mailbox(&self) -> &Mailbox<T> {
        &self.mailbox
    }

    fn station(&self) -> u16 {
        self.mailbox.station()
    }

    fn queue_emergency(&self, e: Emergency) {
        tracing::warn!(station = e.station, code = e.error_code, "{e}");
        let mut q = self.emergencies.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= MAX_QUEUED_EMERGENCIES {
            q.pop_front();
        }
        q.push_back(e);
    }

    /// Takes the emergencies received so far (oldest first).
    pub fn take_emergencies(&self) -> Vec<Emergency> {
        let mut q = self.emergencies.lock().unwrap_or_else(|p| p.into_inner());
        q.drain(..).collect()
    }

    /// Reads whatever the terminal has put into its mailbox unasked (emergencies) for
    /// `wait` at most, and returns all queued emergencies.
    pub async fn poll_emergencies(&self, wait: Duration) -> Result<Vec<Emergency>, CoeError> {
        let mut s = self.mailbox.session().await;
        // `wait` in all, also when the terminal keeps its mailbox full.
        let start = tokio::time::Instant::now();
        let mut looked = false;
        loop {
            match self
                .receive_by(&mut s, start, start + wait, &mut looked)
                .await
            {
                Ok(msg) => {
                    self.classify(&msg);
                }
                Err(CoeError::Mailbox(MailboxError::ResponseTimeout { .. })) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(self.take_emergencies())
    }

    /// Sorts one message: emergencies are queued, SDO and SDO-information replies
    /// returned, anything else dropped with a log line.
    fn classify(&self, msg: &MailboxMessage) -> Option<Reply> {
        if msg.header.kind != MailboxType::Coe {
            tracing::debug!(station = self.station(), kind = ?msg.header.kind, "ignoring non-CoE mailbox message");
            return None;
        }
        let (svc, body) = match parse_coe_header(&msg.data) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(station = self.station(), "malformed CoE message: {e}");
                return None;
            }
        };
        match svc {
            service::EMERGENCY => {
                match Emergency::decode_body(self.station(), body) {
                    Ok(e) => self.queue_emergency(e),
                    Err(e) => tracing::warn!(station = self.station(), "malformed emergency: {e}"),
                }
                None
            }
            service::SDO_RESPONSE => match SdoResponse::decode_body(body) {
                Ok(r) => Some(Reply::Sdo(r)),
                Err(e) => Some(Reply::Malformed(e)),
            },
            // A server's abort is an "abort SDO transfer request": service 2, command
            // specifier 4 (ETG.1000.6 table 39).
            service::SDO_REQUEST if body.first().is_some_and(|c| c >> 5 == 4) => {
                match SdoResponse::decode_body(body) {
                    Ok(r) => Some(Reply::Sdo(r)),
                    Err(e) => Some(Reply::Malformed(e)),
                }
            }
            service::SDO_INFO => Some(Reply::Info(msg.data.clone())),
            other => {
                tracing::debug!(
                    station = self.station(),
                    service = other,
                    "ignoring CoE service"
                );
                None
            }
        }
    }

    async fn sdo_reply(
        &self,
        s: &mut MailboxSession<'_, T>,
        a: SdoAddress,
    ) -> Result<SdoResponse, CoeError> {
        // Emergencies and stray messages do not extend the wait: a terminal that sends
        // nothing but them ends in a response timeout, not an endless loop.
        let start = tokio::time::Instant::now();
        let deadline = start + s.response_timeout();
        let mut looked = false;
        loop {
            let msg = self.receive_by(s, start, deadline, &mut looked).await?;
            match self.classify(&msg) {
                Some(Reply::Sdo(SdoResponse::Abort {
                    index,
                    subindex,
                    code,
                })) => {
                    return Err(CoeError::Abort {
                        station: self.station(),
                        index: if index == 0 { a.index } else { index },
                        subindex: if index == 0 { a.subindex } else { subindex },
                        code,
                    });
                }
                Some(Reply::Sdo(r)) => return Ok(r),
                Some(Reply::Malformed(e)) => {
                    return Err(self.protocol(a, format!("malformed SDO response: {e}")));
                }
                Some(Reply::Info(_)) | None => continue,
            }
        }
    }

    /// The next mailbox message of a wait that began at `start` and ends at `deadline`.
    /// The mailbox is always looked at once (`looked` is false), so a busy machine that
    /// is late to the first look still sees a message that is there; after that, past
    /// the deadline is a response timeout, even while the terminal keeps sending
    /// messages that are not the awaited reply.
    async fn receive_by(
        &self,
        s: &mut MailboxSession<'_, T>,
        start: tokio::time::Instant,
        deadline: tokio::time::Instant,
        looked: &mut bool,
    ) -> Result<MailboxMessage, CoeError> {
        let now = tokio::time::Instant::now();
        if *looked && now >= deadline {
            return Err(MailboxError::ResponseTimeout {
                station: self.station(),
                waited: now - start,
            }
            .into());
        }
        *looked = true;
        Ok(s.receive_within(deadline.saturating_duration_since(now))
            .await?)
    }

    fn protocol(&self, a: SdoAddress, detail: impl Into<String>) -> CoeError {
        CoeError::Protocol {
            station: self.station(),
            index: a.index,
            subindex: a.subindex,
            detail: detail.into(),
        }
    }

    async fn abort(&self, s: &mut MailboxSession<'_, T>, a: SdoAddress, code: AbortCode) {
        let req = SdoRequest::Abort {
            index: a.index,
            subindex: a.subindex,
            code,
        };
        if let Err(e) = s.send(MailboxType::Coe, &req.encode()).await {
            tracing::debug!(station = self.station(), "sending SDO abort failed: {e}");
        }
    }

    /// Uploads (reads) one entry.
    pub async fn upload(&self, index: u16, subindex: u8) -> Result<Vec<u8>, CoeError> {
        self.upload_address(SdoAddress::entry(index, subindex))
            .await
    }

    /// Uploads a whole object with complete access, from `subindex` (0 or 1) on.
    pub async fn upload_complete(&self, index: u16, subindex: u8) -> Result<Vec<u8>, CoeError> {
        self.upload_address(SdoAddress::complete(index, subindex))
            .await
    }

    /// Uploads an entry or object; any size, expedited, normal or segmented.
    pub async fn upload_address(&self, a: SdoAddress) -> Result<Vec<u8>, CoeError> {
        let mut s = self.mailbox.session().await;
        s.send(
            MailboxType::Coe,
            &SdoRequest::Upload { address: a }.encode(),
        )
        .await?;
        let (total, mut data) = match self.sdo_reply(&mut s, a).await? {
            SdoResponse::UploadExpedited {
                index,
                subindex,
                data,
            } => {
                self.check_echo(a, index, subindex)?;
                return Ok(data);
            }
            SdoResponse::UploadNormal {
                index,
                subindex,
                total,
                mut data,
            } => {
                self.check_echo(a, index, subindex)?;
                let total = usize::try_from(total).unwrap_or(usize::MAX);
                if total > MAX_UPLOAD {
                    self.abort(&mut s, a, AbortCode::OUT_OF_MEMORY).await;
                    return Err(self.protocol(
                        a,
                        format!("the terminal announces {total} bytes, more than the {MAX_UPLOAD} an upload may hold"),
                    ));
                }
                data.truncate(total);
                (total, data)
            }
            other => {
                self.abort(&mut s, a, AbortCode::INVALID_COMMAND).await;
                return Err(self.protocol(a, format!("unexpected reply to upload: {other:?}")));
            }
        };
        let mut toggle = false;
        while data.len() < total {
            s.send(
                MailboxType::Coe,
                &SdoRequest::UploadSegment { toggle }.encode(),
            )
            .await?;
            match self.sdo_reply(&mut s, a).await? {
                SdoResponse::UploadSegment {
                    toggle: t,
                    last,
                    data: seg,
                } => {
                    if t != toggle {
                        self.abort(&mut s, a, AbortCode::TOGGLE_BIT).await;
                        return Err(self.protocol(
                            a,
                            format!("upload segment toggle {t} where {toggle} was expected"),
                        ));
                    }
                    if seg.is_empty() && !last {
                        // It would never end: every segment but the last carries data.
                        self.abort(&mut s, a, AbortCode::INVALID_COMMAND).await;
                        return Err(
                            self.protocol(a, "an empty upload segment that is not the last")
                        );
                    }
                    data.extend_from_slice(&seg);
                    if last {
                        break;
                    }
                }
                other => {
                    self.abort(&mut s, a, AbortCode::INVALID_COMMAND).await;
                    return Err(
                        self.protocol(a, format!("unexpected reply to upload segment: {other:?}"))
                    );
                }
            }
            toggle = !toggle;
        }
        if data.len() < total {
            return Err(self.protocol(
                a,
                format!(
                    "upload ended after {} of {total} announced bytes",
                    data.len()
                ),
            ));
        }
        data.truncate(total);
        tracing::debug!(
            station = self.station(),
            index = a.index,
            subindex = a.subindex,
            len = data.len(),
            "SDO upload"
        );
        Ok(data)
    }

    fn check_echo(&self, a: SdoAddress, index: u16, subindex: u8) -> Result<(), CoeError> {
        if index != a.index || (!a.complete_access && subindex != a.subindex) {
            return Err(self.protocol(a, format!("reply is for {index:#06x}:{subindex:02x}")));
        }
        Ok(())
    }

    /// Downloads (writes) one entry.
    pub async fn download(&self, index: u16, subindex: u8, data: &[u8]) -> Result<(), CoeError> {
        self.download_address(SdoAddress::entry(index, subindex), data)
            .await
    }

    /// Downloads a whole object with complete access, from `subindex` (0 or 1) on.
    pub async fn download_complete(
        &self,
        index: u16,
        subindex: u8,
        data: &[u8],
    ) -> Result<(), CoeError> {
        self.download_address(SdoAddress::complete(index, subindex), data)
            .await
    }

    /// Downloads an entry or object of any size: expedited up to 4 bytes, otherwise
    /// normal with as much data as the mailbox takes, then segments.
    pub async fn download_address(&self, a: SdoAddress, data: &[u8]) -> Result<(), CoeError> {
        let max = self.mailbox.max_data();
        if max < INITIATE_OVERHEAD + 1 {
            return Err(self.protocol(
                a,
                format!("mailbox of {max} data bytes is too small for SDO"),
            ));
        }
        let Ok(total) = u32::try_from(data.len()) else {
            return Err(self.protocol(a, "data longer than 4 GiB"));
        };
        let mut s = self.mailbox.session().await;
        let expedited = !data.is_empty() && data.len() <= 4;
        let first = if expedited {
            data.len()
        } else {
            data.len().min(max - INITIATE_OVERHEAD)
        };
        let req = if expedited {
            SdoRequest::DownloadExpedited {
                address: a,
                data: data.to_vec(),
            }
        } else {
            SdoRequest::DownloadNormal {
                address: a,
                total,
                data: data[..first].to_vec(),
            }
        };
        s.send(MailboxType::Coe, &req.encode()).await?;
        match self.sdo_reply(&mut s, a).await? {
            SdoResponse::DownloadInitiated { index, subindex } => {
                self.check_echo(a, index, subindex)?
            }
            other => {
                self.abort(&mut s, a, AbortCode::INVALID_COMMAND).await;
                return Err(self.protocol(a, format!("unexpected reply to download: {other:?}")));
            }
        }
        let mut sent = first;
        let mut toggle = false;
        let seg_max = max - SEGMENT_OVERHEAD;
        while sent < data.len() {
            let n = (data.len() - sent).min(seg_max);
            let last = sent + n == data.len();
            let req = SdoRequest::DownloadSegment {
                toggle,
                last,
                data: data[sent..sent + n].to_vec(),
            };
            s.send(MailboxType::Coe, &req.encode()).await?;
            match self.sdo_reply(&mut s, a).await? {
                SdoResponse::DownloadSegment { toggle: t } if t == toggle => {}
                SdoResponse::DownloadSegment { toggle: t } => {
                    self.abort(&mut s, a, AbortCode::TOGGLE_BIT).await;
                    return Err(self.protocol(
                        a,
                        format!("download segment acknowledged with toggle {t}, expected {toggle}"),
                    ));
                }
                other => {
                    self.abort(&mut s, a, AbortCode::INVALID_COMMAND).await;
                    return Err(self.protocol(
                        a,
                        format!("unexpected reply to download segment: {other:?}"),
                    ));
                }
            }
            sent += n;
            toggle = !toggle;
        }
        tracing::debug!(
            station = self.station(),
            index = a.index,
            subindex = a.subindex,
            len = data.len(),
            "SDO download"
        );
        Ok(())
    }

    /// Uploads a `u8` entry.
    pub async fn upload_u8(&self, index: u16, subindex: u8) -> Result<u8, CoeError> {
        let v = self.upload_exact::<1>(index, subindex).await?;
        Ok(v[0])
    }

    /// Uploads a `u16` entry.
    pub async fn upload_u16(&self, index: u16, subindex: u8) -> Result<u16, CoeError> {
        Ok(u16::from_le_bytes(
            self.upload_exact(index, subindex).await?,
        ))
    }

    /// Uploads a `u32` entry.
    pub async fn upload_u32(&self, index: u16, subindex: u8) -> Result<u32, CoeError> {
        Ok(u32::from_le_bytes(
            self.upload_exact(index, subindex).await?,
        ))
    }

    async fn upload_exact<const N: usize>(
        &self,
        index: u16,
        subindex: u8,
    ) -> Result<[u8; N], CoeError> {
        let v = self.upload(index, subindex).await?;
        // Terminals may answer an expedited upload with 4 bytes for a smaller type.
        if v.len() < N {
            return Err(self.protocol(
                SdoAddress::entry(index, subindex),
                format!("{} bytes where {N} were expected", v.len()),
            ));
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&v[..N]);
        Ok(out)
    }

    async fn info_request(&self, request: &[u8], what: &str) -> Result<(u8, Vec<u8>), CoeError> {
        let mut s = self.mailbox.session().await;
        s.send(MailboxType::Coe, request).await?;
        let mut r = Reassembly::default();
        let station = self.station();
        // Each fragment must come within the response timeout; other messages in
        // between (emergencies) do not extend the wait.
        let mut start = tokio::time::Instant::now();
        let mut deadline = start + s.response_timeout();
        let mut looked = false;
        loop {
            let msg = self
                .receive_by(&mut s, start, deadline, &mut looked)
                .await?;
            let Some(reply) = self.classify(&msg) else {
                continue;
            };
            let Reply::Info(coe) = reply else {
                continue;
            };
            start = tokio::time::Instant::now();
            deadline = start + s.response_timeout();
            looked = false;
            let (h, data) = info::parse_info(&coe).map_err(|e| CoeError::InfoProtocol {
                station,
                what: what.into(),
                detail: e.to_string(),
            })?;
            match r.push(h, data) {
                Ok(Fragment::More) => continue,
                Ok(Fragment::Complete(op, data)) => return Ok((op, data)),
                Ok(Fragment::Error(code)) => {
                    return Err(CoeError::InfoAbort {
                        station,
                        what: what.into(),
                        code,
                    });
                }
                Err(e) => {
                    return Err(CoeError::InfoProtocol {
                        station,
                        what: what.into(),
                        detail: e.to_string(),
                    });
                }
            }
        }
    }

    fn info_decode<V>(
        &self,
        what: &str,
        expected_op: u8,
        op: u8,
        r: Result<V, DecodeError>,
    ) -> Result<V, CoeError> {
        if op != expected_op {
            return Err(CoeError::InfoProtocol {
                station: self.station(),
                what: what.into(),
                detail: format!("reply opcode {op}, expected {expected_op}"),
            });
        }
        r.map_err(|e| CoeError::InfoProtocol {
            station: self.station(),
            what: what.into(),
            detail: e.to_string(),
        })
    }

    /// Reads the list of object indices of one kind (SDO information, get OD list).
    pub async fn od_list(&self, list: OdListType) -> Result<Vec<u16>, CoeError> {
        let what = format!("OD list {list:?}");
        let (op, data) = self
            .info_request(&info::od_list_request(list), &what)
            .await?;
        let (_, indices) = self.info_decode(
            &what,
            opcode::GET_OD_LIST_RESP,
            op,
            info::parse_od_list(&data),
        )?;
        Ok(indices)
    }

    /// Reads the description of one object.
    pub async fn object_description(&self, index: u16) -> Result<ObjectDescription, CoeError> {
        let what = format!("object description {index:#06x}");
        let (op, data) = self
            .info_request(&info::object_description_request(index), &what)
            .await?;
        self.info_decode(
            &what,
            opcode::GET_OBJECT_DESC_RESP,
            op,
            info::parse_object_description(&data),
        )
    }

    /// Reads the description of one entry; `value_info` selects the optional parts
    /// (see [`info::value_info`]).
    pub async fn entry_description(
        &self,
        index: u16,
        subindex: u8,
        value_info: u8,
    ) -> Result<EntryDescription, CoeError> {
        let what = format!("entry description {index:#06x}:{subindex:02x}");
        let (op, data) = self
            .info_request(
                &info::entry_description_request(index, subindex, value_info),
                &what,
            )
            .await?;
        self.info_decode(
            &what,
            opcode::GET_ENTRY_DESC_RESP,
            op,
            info::parse_entry_description(&data),
        )
    }
}
