//! The sans-IO CoE server of a simulated terminal: mailbox requests in, mailbox replies out.
//! SDO upload/download (expedited, normal, segmented), complete access, SDO information
//! (fragmented when long) and emergency messages. ETG.1000.6 section 5.6.

use std::collections::VecDeque;

use super::abort::AbortCode;
use super::dictionary::{Access, AccessState, ObjectDictionary};
use super::mailbox::{self, HEADER_LEN, MailboxHeader};
use crate::app::mailbox_error;
use crate::app::mailbox_type::COE as TYPE_COE;

/// CoE service: emergency. ETG.1000.6 table 29.
pub const SERVICE_EMERGENCY: u8 = 1;
/// CoE service: SDO request. ETG.1000.6 table 29.
pub const SERVICE_SDO_REQUEST: u8 = 2;
/// CoE service: SDO response. ETG.1000.6 table 29.
pub const SERVICE_SDO_RESPONSE: u8 = 3;
/// CoE service: SDO information. ETG.1000.6 table 29.
pub const SERVICE_SDO_INFO: u8 = 8;

/// Length of the CoE header. ETG.1000.6 table 29.
const COE_HEADER_LEN: usize = 2;
/// Length of an SDO initiate header after the CoE header (command, index, subindex, data/size).
const SDO_HEADER_LEN: usize = 8;
/// Minimum data bytes of an SDO segment (padded below). ETG.1000.6 table 36.
const MIN_SEGMENT_DATA: usize = 7;

/// Command specifiers (bits 5-7 of the SDO command byte). ETG.1000.6 tables 30-39.
mod cs {
    /// Client: download segment. Server: upload segment response.
    pub const DOWNLOAD_SEGMENT: u8 = 0;
    /// Client: initiate download. Server: download segment response.
    pub const INITIATE_DOWNLOAD: u8 = 1;
    /// Client: initiate upload. Server: upload initiate response.
    pub const INITIATE_UPLOAD: u8 = 2;
    /// Client: upload segment. Server: download initiate response.
    pub const UPLOAD_SEGMENT: u8 = 3;
    /// Abort transfer, either side.
    pub const ABORT: u8 = 4;
}

/// Command byte bits. ETG.1000.6 tables 30-39.
const CMD_SIZE_INDICATED: u8 = 0x01;
const CMD_EXPEDITED: u8 = 0x02;
const CMD_COMPLETE_ACCESS: u8 = 0x10;
const CMD_TOGGLE: u8 = 0x10;
const CMD_LAST_SEGMENT: u8 = 0x01;

/// SDO information opcodes. ETG.1000.6 table 43.
mod info_op {
    pub const GET_OD_LIST_REQ: u8 = 1;
    pub const GET_OD_LIST_RESP: u8 = 2;
    pub const GET_OBJECT_DESC_REQ: u8 = 3;
    pub const GET_OBJECT_DESC_RESP: u8 = 4;
    pub const GET_ENTRY_DESC_REQ: u8 = 5;
    pub const GET_ENTRY_DESC_RESP: u8 = 6;
    pub const ERROR_REQ: u8 = 7;
    /// Bit 7 of the opcode byte: more fragments follow.
    pub const INCOMPLETE: u8 = 0x80;
}

/// A segmented download in progress.
#[derive(Debug, Clone)]
struct Download {
    index: u16,
    sub: u8,
    complete_access: bool,
    total: usize,
    data: Vec<u8>,
    toggle: bool,
}

/// A segmented upload in progress.
#[derive(Debug, Clone)]
struct Upload {
    index: u16,
    sub: u8,
    data: Vec<u8>,
    sent: usize,
    toggle: bool,
}

/// An emergency message. ETG.1000.6 table 50.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emergency {
    /// The CiA 301 error code (e.g. 0x8700 sync controller error).
    pub error_code: u16,
    /// The error register (0x1001 layout).
    pub error_register: u8,
    /// Manufacturer-specific data.
    pub data: [u8; 5],
}

/// The CoE server of one terminal.
#[derive(Debug, Clone)]
pub struct CoeServer {
    od: ObjectDictionary,
    mailbox_in_size: usize,
    counter: u8,
    last_request_counter: Option<u8>,
    download: Option<Download>,
    upload: Option<Upload>,
    replies: VecDeque<Vec<u8>>,
    last_reply: Option<Vec<u8>>,
}

impl CoeServer {
    /// A server over `od` whose replies must fit a mailbox of `mailbox_in_size` bytes
    /// (the length of the terminal-to-master mailbox SyncManager).
    pub fn new(od: ObjectDictionary, mailbox_in_size: usize) -> Self {
        Self {
            od,
            mailbox_in_size: mailbox_in_size.max(HEADER_LEN + COE_HEADER_LEN + 8 + 8),
            counter: 0,
            last_request_counter: None,
            download: None,
            upload: None,
            replies: VecDeque::new(),
            last_reply: None,
        }
    }

    /// The dictionary.
    pub fn dictionary(&self) -> &ObjectDictionary {
        &self.od
    }

    /// The dictionary, mutably (for the terminal's own updates of process-data objects).
    pub fn dictionary_mut(&mut self) -> &mut ObjectDictionary {
        &mut self.od
    }

    /// Changes the size the replies must fit (after the master reconfigured the mailbox SM).
    pub fn set_mailbox_in_size(&mut self, size: usize) {
        self.mailbox_in_size = size.max(HEADER_LEN + COE_HEADER_LEN + 16);
    }

    /// Forgets transfers in progress and queued replies (on a state change to INIT).
    pub fn reset(&mut self) {
        self.download = None;
        self.upload = None;
        self.replies.clear();
        self.last_request_counter = None;
    }

    /// Whether a reply is waiting to be read by the master.
    pub fn has_reply(&self) -> bool {
        !self.replies.is_empty()
    }

    /// Takes the next reply to place into the terminal-to-master mailbox.
    pub fn pop_reply(&mut self) -> Option<Vec<u8>> {
        let r = self.replies.pop_front();
        if r.is_some() {
            self.last_reply.clone_from(&r);
        }
        r
    }

    /// The last reply handed out, for the mailbox repeat service. ETG.1000.4 5.6.2.
    pub fn last_reply(&self) -> Option<&[u8]> {
        self.last_reply.as_deref()
    }

    /// Queues an emergency message. ETG.1000.6 5.6.4.
    pub fn queue_emergency(&mut self, emergency: Emergency) {
        let mut data = coe_header(SERVICE_EMERGENCY).to_vec();
        data.extend_from_slice(&emergency.error_code.to_le_bytes());
        data.push(emergency.error_register);
        data.extend_from_slice(&emergency.data);
        self.push(TYPE_COE, &data);
    }

    fn next_counter(&mut self) -> u8 {
        // Counter 1..7, 0 is reserved for "not used". ETG.1000.4 table 29.
        self.counter = if self.counter >= 7 {
            1
        } else {
            self.counter + 1
        };
        self.counter
    }

    fn push(&mut self, mailbox_type: u8, data: &[u8]) {
        let counter = self.next_counter();
        self.replies
            .push_back(mailbox::message(mailbox_type, counter, data));
    }

    /// Handles one mailbox message written by the master. Replies are queued for
    /// [`Self::pop_reply`]; a request repeated with the same non-zero counter is ignored
    /// as a retry (ETG.1000.4 5.6.1).
    pub fn handle(&mut self, request: &[u8], state: AccessState) {
        let Some(header) = MailboxHeader::parse(request) else {
            let counter = self.next_counter();
            self.replies
                .push_back(mailbox::error_reply(counter, mailbox_error::SIZE_TOO_SHORT));
            return;
        };
        let end = HEADER_LEN + usize::from(header.length);
        let Some(data) = request.get(HEADER_LEN..end) else {
            let counter = self.next_counter();
            self.replies
                .push_back(mailbox::error_reply(counter, mailbox_error::INVALID_SIZE));
            return;
        };
        if header.counter != 0 && self.last_request_counter == Some(header.counter) {
            return;
        }
        self.last_request_counter = Some(header.counter);
        if header.mailbox_type != TYPE_COE {
            let counter = self.next_counter();
            self.replies.push_back(mailbox::error_reply(
                counter,
                mailbox_error::UNSUPPORTED_PROTOCOL,
            ));
            return;
        }
        if data.len() < COE_HEADER_LEN {
            let counter = self.next_counter();
            self.replies
                .push_back(mailbox::error_reply(counter, mailbox_error::SIZE_TOO_SHORT));
            return;
        }
        let service = data[1] >> 4;
        let body = &data[COE_HEADER_LEN..];
        match service {
            SERVICE_SDO_REQUEST => self.sdo(body, state),
            SERVICE_SDO_INFO => self.info(body),
            _ => {
                let counter = self.next_counter();
                self.replies.push_back(mailbox::error_reply(
                    counter,
                    mailbox_error::SERVICE_NOT_SUPPORTED,
                ));
            }
        }
    }

    fn abort(&mut self, index: u16, sub: u8, code: AbortCode) {
        self.download = None;
        self.upload = None;
        // An abort is an "Abort SDO Transfer Request" of the server. ETG.1000.6 table 39.
        let mut data = coe_header(SERVICE_SDO_REQUEST).to_vec();
        data.push(cs::ABORT << 5);
        data.extend_from_slice(&index.to_le_bytes());
        data.push(sub);
        data.extend_from_slice(&code.0.to_le_bytes());
        self.push(TYPE_COE, &data);
    }

    fn respond(&mut self, command: u8, index: u16, sub: u8, tail: &[u8]) {
        let mut data = coe_header(SERVICE_SDO_RESPONSE).to_vec();
        data.push(command);
        data.extend_from_slice(&index.to_le_bytes());
        data.push(sub);
        data.extend_from_slice(tail);
        self.push(TYPE_COE, &data);
    }

    fn sdo(&mut self, body: &[u8], state: AccessState) {
        let Some(&command) = body.first() else {
            let counter = self.next_counter();
            self.replies
                .push_back(mailbox::error_reply(counter, mailbox_error::SIZE_TOO_SHORT));
            return;
        };
        let index = u16::from_le_bytes([
            body.get(1).copied().unwrap_or(0),
            body.get(2).copied().unwrap_or(0),
        ]);
        let sub = body.get(3).copied().unwrap_or(0);
        match command >> 5 {
            cs::INITIATE_UPLOAD | cs::INITIATE_DOWNLOAD if body.len() < SDO_HEADER_LEN => {
                let counter = self.next_counter();
                self.replies
                    .push_back(mailbox::error_reply(counter, mailbox_error::SIZE_TOO_SHORT));
            }
            cs::INITIATE_UPLOAD => self.initiate_upload(command, index, sub, state),
            cs::UPLOAD_SEGMENT => self.upload_segment(command),
            cs::INITIATE_DOWNLOAD => self.initiate_download(command, body, state),
            cs::DOWNLOAD_SEGMENT => self.download_segment(command, body, state),
            cs::ABORT => {
                // The master gave up: forget the transfer, no reply. ETG.1000.6 5.6.2.7.
                self.download = None;
                self.upload = None;
            }
            _ => self.abort(index, sub, AbortCode::COMMAND_SPECIFIER),
        }
    }

    fn initiate_upload(&mut self, command: u8, index: u16, sub: u8, state: AccessState) {
        self.upload = None;
        self.download = None;
        let complete = command & CMD_COMPLETE_ACCESS != 0;
        let value = if complete {
            self.od.upload_complete(index, sub, state)
        } else {
            self.od.upload(index, sub, state)
        };
        let value = match value {
            Ok(v) => v,
            Err(code) => return self.abort(index, sub, code),
        };
        let ca = if complete { CMD_COMPLETE_ACCESS } else { 0 };
        if value.len() <= 4 && !value.is_empty() && !complete {
            // Expedited: size in bits 2-3 as 4 - n. ETG.1000.6 table 33.
            let command = (cs::INITIATE_UPLOAD << 5)
                | (((4 - value.len()) as u8) << 2)
                | CMD_EXPEDITED
                | CMD_SIZE_INDICATED;
            let mut tail = value.clone();
            tail.resize(4, 0);
            return self.respond(command, index, sub, &tail);
        }
        let room = self.mailbox_in_size - HEADER_LEN - COE_HEADER_LEN - SDO_HEADER_LEN;
        let first = value.len().min(room);
        let mut tail = (value.len() as u32).to_le_bytes().to_vec();
        tail.extend_from_slice(&value[..first]);
        let command = (cs::INITIATE_UPLOAD << 5) | CMD_SIZE_INDICATED | ca;
        self.respond(command, index, sub, &tail);
        if first < value.len() {
            self.upload = Some(Upload {
                index,
                sub,
                data: value,
                sent: first,
                toggle: false,
            });
        }
    }

    fn upload_segment(&mut self, command: u8) {
        let Some(mut upload) = self.upload.take() else {
            return self.abort(0, 0, AbortCode::COMMAND_SPECIFIER);
        };
        let toggle = command & CMD_TOGGLE != 0;
        if toggle != upload.toggle {
            return self.abort(upload.index, upload.sub, AbortCode::TOGGLE_BIT);
        }
        let room = self.mailbox_in_size - HEADER_LEN - COE_HEADER_LEN - 1;
        let n = (upload.data.len() - upload.sent).min(room);
        let mut chunk = upload.data[upload.sent..upload.sent + n].to_vec();
        upload.sent += n;
        let last = upload.sent >= upload.data.len();
        let unused = MIN_SEGMENT_DATA.saturating_sub(n) as u8;
        chunk.resize(n.max(MIN_SEGMENT_DATA), 0);
        let mut reply = coe_header(SERVICE_SDO_RESPONSE).to_vec();
        reply.push(
            (cs::DOWNLOAD_SEGMENT << 5)
                | if toggle { CMD_TOGGLE } else { 0 }
                | (unused << 1)
                | if last { CMD_LAST_SEGMENT } else { 0 },
        );
        reply.extend_from_slice(&chunk);
        self.push(TYPE_COE, &reply);
        if !last {
            upload.toggle = !upload.toggle;
            self.upload = Some(upload);
        }
    }

    fn initiate_download(&mut self, command: u8, body: &[u8], state: AccessState) {
        self.upload = None;
        self.download = None;
        let index = u16::from_le_bytes([body[1], body[2]]);
        let sub = body[3];
        let complete = command & CMD_COMPLETE_ACCESS != 0;
        let ca = if complete { CMD_COMPLETE_ACCESS } else { 0 };
        if command & CMD_EXPEDITED != 0 {
            let n = if command & CMD_SIZE_INDICATED != 0 {
                4 - usize::from((command >> 2) & 0x03)
            } else {
                // Size not indicated: as long as the entry is, at most four bytes.
                match self.od.entry(index, sub) {
                    Ok(e) => e.value.len().clamp(1, 4),
                    Err(code) => return self.abort(index, sub, code),
                }
            };
            let data = body[4..4 + n].to_vec();
            return self.finish_download(index, sub, complete, &data, state, ca);
        }
        if command & CMD_SIZE_INDICATED == 0 {
            return self.abort(index, sub, AbortCode::COMMAND_SPECIFIER);
        }
        let total = u32::from_le_bytes([body[4], body[5], body[6], body[7]]) as usize;
        let here = &body[SDO_HEADER_LEN..];
        if here.len() >= total {
            let data = here[..total].to_vec();
            return self.finish_download(index, sub, complete, &data, state, ca);
        }
        // Segments follow. Check the target now so a master learns early. ETG.1000.6 5.6.2.3.
        if let Err(code) = self.check_writable(index, sub, complete, state) {
            return self.abort(index, sub, code);
        }
        self.download = Some(Download {
            index,
            sub,
            complete_access: complete,
            total,
            data: here.to_vec(),
            toggle: false,
        });
        self.respond((cs::UPLOAD_SEGMENT << 5) | ca, index, sub, &[0; 4]);
    }

    fn check_writable(
        &self,
        index: u16,
        sub: u8,
        complete: bool,
        state: AccessState,
    ) -> Result<(), AbortCode> {
        let object = self
            .od
            .object(index)
            .ok_or(AbortCode::OBJECT_DOES_NOT_EXIST)?;
        if complete {
            return Ok(());
        }
        let entry = object
            .entries
            .get(&sub)
            .ok_or(AbortCode::SUBINDEX_DOES_NOT_EXIST)?;
        if !entry.access.writable_somewhere() {
            return Err(AbortCode::READ_ONLY);
        }
        if !entry.access.writable(state) {
            return Err(AbortCode::DEVICE_STATE);
        }
        Ok(())
    }

    fn finish_download(
        &mut self,
        index: u16,
        sub: u8,
        complete: bool,
        data: &[u8],
        state: AccessState,
        ca: u8,
    ) {
        let result = if complete {
            self.od.download_complete(index, sub, data, state)
        } else {
            self.od.download(index, sub, data, state)
        };
        match result {
            Ok(()) => self.respond((cs::UPLOAD_SEGMENT << 5) | ca, index, sub, &[0; 4]),
            Err(code) => self.abort(index, sub, code),
        }
    }

    fn download_segment(&mut self, command: u8, body: &[u8], state: AccessState) {
        let Some(mut download) = self.download.take() else {
            return self.abort(0, 0, AbortCode::COMMAND_SPECIFIER);
        };
        let toggle = command & CMD_TOGGLE != 0;
        if toggle != download.toggle {
            return self.abort(download.index, download.sub, AbortCode::TOGGLE_BIT);
        }
        let seg = &body[1..];
        let n = if seg.len() <= MIN_SEGMENT_DATA {
            MIN_SEGMENT_DATA.saturating_sub(usize::from((command >> 1) & 0x07))
        } else {
            seg.len()
        };
        let Some(chunk) = seg.get(..n) else {
            return self.abort(download.index, download.sub, AbortCode::LENGTH_MISMATCH);
        };
        download.data.extend_from_slice(chunk);
        // More or fewer bytes than the initiate request announced: the service's length
        // does not match. ETG.1000.6 table 41.
        if download.data.len() > download.total {
            return self.abort(download.index, download.sub, AbortCode::LENGTH_MISMATCH);
        }
        let last = command & CMD_LAST_SEGMENT != 0;
        if last {
            if download.data.len() != download.total {
                return self.abort(download.index, download.sub, AbortCode::LENGTH_MISMATCH);
            }
            let result = if download.complete_access {
                self.od
                    .download_complete(download.index, download.sub, &download.data, state)
            } else {
                self.od
                    .download(download.index, download.sub, &download.data, state)
            };
            if let Err(code) = result {
                return self.abort(download.index, download.sub, code);
            }
        }
        let mut reply = coe_header(SERVICE_SDO_RESPONSE).to_vec();
        reply.push((cs::INITIATE_DOWNLOAD << 5) | if toggle { CMD_TOGGLE } else { 0 });
        reply.extend_from_slice(&[0; 7]);
        self.push(TYPE_COE, &reply);
        if !last {
            download.toggle = !download.toggle;
            self.download = Some(download);
        }
    }

    fn info_error(&mut self, code: AbortCode) {
        let mut data = coe_header(SERVICE_SDO_INFO).to_vec();
        data.extend_from_slice(&[info_op::ERROR_REQ, 0, 0, 0]);
        data.extend_from_slice(&code.0.to_le_bytes());
        self.push(TYPE_COE, &data);
    }

    /// Queues `payload` as one or more SDO information fragments. ETG.1000.6 5.6.3.2.
    fn info_reply(&mut self, opcode: u8, payload: &[u8]) {
        let room = self.mailbox_in_size - HEADER_LEN - COE_HEADER_LEN - 4;
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![&[]]
        } else {
            payload.chunks(room).collect()
        };
        let total = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let left = (total - 1 - i) as u16;
            let mut data = coe_header(SERVICE_SDO_INFO).to_vec();
            data.push(opcode | if left > 0 { info_op::INCOMPLETE } else { 0 });
            data.push(0);
            data.extend_from_slice(&left.to_le_bytes());
            data.extend_from_slice(chunk);
            self.push(TYPE_COE, &data);
        }
    }

    fn info(&mut self, body: &[u8]) {
        let Some(&opcode) = body.first() else {
            return self.info_error(AbortCode::COMMAND_SPECIFIER);
        };
        let args = body.get(4..).unwrap_or(&[]);
        let u16_at = |i: usize| -> Option<u16> {
            Some(u16::from_le_bytes([*args.get(i)?, *args.get(i + 1)?]))
        };
        match opcode & 0x7F {
            info_op::GET_OD_LIST_REQ => {
                let Some(list_type) = u16_at(0) else {
                    return self.info_error(AbortCode::LENGTH_TOO_LOW);
                };
                let mut payload = list_type.to_le_bytes().to_vec();
                // List types. ETG.1000.6 table 45.
                let filters: [fn(u16) -> bool; 5] = [
                    |_| true,
                    |a| a & Access::RXPDO != 0,
                    |a| a & Access::TXPDO != 0,
                    |a| a & Access::BACKUP != 0,
                    |a| a & Access::SETTINGS != 0,
                ];
                let select = |f: fn(u16) -> bool| -> Vec<u16> {
                    self.od
                        .objects()
                        .filter(|o| o.entries.values().any(|e| f(e.access.0)))
                        .map(|o| o.index)
                        .collect()
                };
                match list_type {
                    0 => {
                        for f in filters {
                            payload.extend_from_slice(&(select(f).len() as u16).to_le_bytes());
                        }
                    }
                    1..=5 => {
                        for index in select(filters[usize::from(list_type) - 1]) {
                            payload.extend_from_slice(&index.to_le_bytes());
                        }
                    }
                    _ => return self.info_error(AbortCode::VALUE_RANGE),
                }
                self.info_reply(info_op::GET_OD_LIST_RESP, &payload);
            }
            info_op::GET_OBJECT_DESC_REQ => {
                let Some(index) = u16_at(0) else {
                    return self.info_error(AbortCode::LENGTH_TOO_LOW);
                };
                let Some(object) = self.od.object(index) else {
                    return self.info_error(AbortCode::OBJECT_DOES_NOT_EXIST);
                };
                // Object description. ETG.1000.6 table 47.
                let mut payload = index.to_le_bytes().to_vec();
                payload.extend_from_slice(&object.data_type().to_le_bytes());
                payload.push(object.max_subindex());
                payload.push(object.code.code());
                payload.extend_from_slice(object.name.as_bytes());
                self.info_reply(info_op::GET_OBJECT_DESC_RESP, &payload);
            }
            info_op::GET_ENTRY_DESC_REQ => {
                let (Some(index), Some(&sub), Some(&value_info)) =
                    (u16_at(0), args.get(2), args.get(3))
                else {
                    return self.info_error(AbortCode::LENGTH_TOO_LOW);
                };
                let entry = match self.od.entry(index, sub) {
                    Ok(e) => e.clone(),
                    Err(code) => return self.info_error(code),
                };
                // Entry description; value info bit 3 unit type, bit 4 default value.
                // Minimum and maximum (bits 5, 6) are not modelled and left out. ETG.1000.6 table 49.
                let given = value_info & 0x18;
                let mut payload = index.to_le_bytes().to_vec();
                payload.push(sub);
                payload.push(given);
                payload.extend_from_slice(&entry.data_type.to_le_bytes());
                payload.extend_from_slice(&entry.bit_len.to_le_bytes());
                payload.extend_from_slice(&entry.access.0.to_le_bytes());
                if given & 0x08 != 0 {
                    payload.extend_from_slice(&0u32.to_le_bytes());
                }
                if given & 0x10 != 0 {
                    payload.extend_from_slice(&entry.value);
                }
                payload.extend_from_slice(entry.name.as_bytes());
                self.info_reply(info_op::GET_ENTRY_DESC_RESP, &payload);
            }
            _ => self.info_error(AbortCode::COMMAND_SPECIFIER),
        }
    }
}

fn coe_header(service: u8) -> [u8; 2] {
    // Number 0 (bits 0-8), service in bits 12-15. ETG.1000.6 table 29.
    [0, service << 4]
}
