//! Sans-IO encoding and decoding of the CoE header and of every SDO message: initiate
//! (expedited and normal), segments, and abort, in both directions (ETG.1000.6 §5.6.2,
//! tables 29..40; CiA 301 §7.2.4.3).

use super::abort::AbortCode;

/// Length of the CoE header (ETG.1000.6 table 29).
pub const COE_HEADER_LEN: usize = 2;
/// Length of an SDO initiate/abort body: command, index, subindex, 4 data bytes.
pub const SDO_HEADER_LEN: usize = 8;
/// Minimum data bytes of a segment; shorter segments are padded (ETG.1000.6 table 36).
pub const MIN_SEGMENT_DATA: usize = 7;

/// CoE services (ETG.1000.6 table 29).
pub mod service {
    /// Emergency.
    pub const EMERGENCY: u8 = 1;
    /// SDO request.
    pub const SDO_REQUEST: u8 = 2;
    /// SDO response.
    pub const SDO_RESPONSE: u8 = 3;
    /// TxPDO.
    pub const TX_PDO: u8 = 4;
    /// RxPDO.
    pub const RX_PDO: u8 = 5;
    /// TxPDO remote request.
    pub const TX_PDO_REMOTE: u8 = 6;
    /// RxPDO remote request.
    pub const RX_PDO_REMOTE: u8 = 7;
    /// SDO information.
    pub const SDO_INFO: u8 = 8;
}

/// SDO command specifiers, bits 5..7 of the command byte (ETG.1000.6 tables 30..40).
mod cs {
    /// Client: download segment. Server: upload segment.
    pub(super) const SEGMENT_DOWNLOAD_OR_UPLOAD_RESP: u8 = 0;
    /// Client: initiate download. Server: download segment response.
    pub(super) const INITIATE_DOWNLOAD_OR_SEGMENT_RESP: u8 = 1;
    /// Client: initiate upload. Server: initiate upload response.
    pub(super) const INITIATE_UPLOAD: u8 = 2;
    /// Client: upload segment. Server: initiate download response.
    pub(super) const UPLOAD_SEGMENT_OR_DOWNLOAD_RESP: u8 = 3;
    /// Abort transfer.
    pub(super) const ABORT: u8 = 4;
}

const SIZE_INDICATED: u8 = 0x01;
const EXPEDITED: u8 = 0x02;
const COMPLETE_ACCESS: u8 = 0x10;
const TOGGLE: u8 = 0x10;
const LAST_SEGMENT: u8 = 0x01;

/// Why a CoE message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message is shorter than its fixed part.
    #[error("CoE message of {len} bytes is shorter than the {need} bytes its {what} needs")]
    TooShort {
        /// Bytes available.
        len: usize,
        /// Bytes needed.
        need: usize,
        /// Which part.
        what: &'static str,
    },
    /// The CoE service is not the one expected.
    #[error("CoE service {0} is not an SDO message")]
    NotSdo(u8),
    /// The command specifier is not valid in this direction.
    #[error("SDO command byte {0:#04x} is not valid here")]
    BadCommand(u8),
    /// A segment declares more unused bytes than it has.
    #[error("SDO segment with {unused} unused bytes is cut short at {len} bytes")]
    BadSegmentLength {
        /// Declared unused bytes.
        unused: usize,
        /// Bytes present.
        len: usize,
    },
}

/// The 2-byte CoE header: PDO number (bits 0..8) and service (bits 12..15).
pub fn coe_header(service: u8) -> [u8; COE_HEADER_LEN] {
    (u16::from(service) << 12).to_le_bytes()
}

/// Splits a CoE message into its service and body.
pub fn parse_coe_header(data: &[u8]) -> Result<(u8, &[u8]), DecodeError> {
    match data {
        [lo, hi, body @ ..] => Ok(((u16::from_le_bytes([*lo, *hi]) >> 12) as u8, body)),
        _ => Err(DecodeError::TooShort {
            len: data.len(),
            need: COE_HEADER_LEN,
            what: "CoE header",
        }),
    }
}

/// The object an SDO transfer addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SdoAddress {
    /// Object index.
    pub index: u16,
    /// Subindex (for complete access: 0 or 1, the first subindex transferred).
    pub subindex: u8,
    /// Complete access: the whole object from `subindex` on.
    pub complete_access: bool,
}

impl SdoAddress {
    /// A single entry.
    pub fn entry(index: u16, subindex: u8) -> Self {
        Self {
            index,
            subindex,
            complete_access: false,
        }
    }

    /// A whole object, starting at `subindex` (0 includes subindex 0).
    pub fn complete(index: u16, subindex: u8) -> Self {
        Self {
            index,
            subindex,
            complete_access: true,
        }
    }
}

/// A request from the master (SDO client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdoRequest {
    /// Initiate download with 1..=4 bytes carried in the request itself.
    DownloadExpedited {
        /// Target object.
        address: SdoAddress,
        /// The data (1..=4 bytes).
        data: Vec<u8>,
    },
    /// Initiate download of `total` bytes, carrying the first ones.
    DownloadNormal {
        /// Target object.
        address: SdoAddress,
        /// Size of the whole transfer.
        total: u32,
        /// First part of the data.
        data: Vec<u8>,
    },
    /// One download segment.
    DownloadSegment {
        /// Toggle bit, alternating from 0.
        toggle: bool,
        /// No more segments follow.
        last: bool,
        /// Segment data.
        data: Vec<u8>,
    },
    /// Initiate upload.
    Upload {
        /// Source object.
        address: SdoAddress,
    },
    /// Request the next upload segment.
    UploadSegment {
        /// Toggle bit, alternating from 0.
        toggle: bool,
    },
    /// Abort the transfer.
    Abort {
        /// Object of the transfer.
        index: u16,
        /// Subindex of the transfer.
        subindex: u8,
        /// Why.
        code: AbortCode,
    },
}

/// A response from the terminal (SDO server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdoResponse {
    /// Initiate upload response with the data (1..=4 bytes) inside.
    UploadExpedited {
        /// Object index.
        index: u16,
        /// Subindex.
        subindex: u8,
        /// The data; 4 bytes when the size was not indicated.
        data: Vec<u8>,
    },
    /// Initiate upload response of a normal transfer with the first data.
    UploadNormal {
        /// Object index.
        index: u16,
        /// Subindex.
        subindex: u8,
        /// Size of the whole object.
        total: u32,
        /// First part of the data.
        data: Vec<u8>,
    },
    /// One upload segment.
    UploadSegment {
        /// Toggle bit.
        toggle: bool,
        /// This is the last segment.
        last: bool,
        /// Segment data.
        data: Vec<u8>,
    },
    /// Initiate download response.
    DownloadInitiated {
        /// Object index.
        index: u16,
        /// Subindex.
        subindex: u8,
    },
    /// Download segment response.
    DownloadSegment {
        /// Toggle bit of the segment acknowledged.
        toggle: bool,
    },
    /// The terminal aborted the transfer.
    Abort {
        /// Object index.
        index: u16,
        /// Subindex.
        subindex: u8,
        /// Why.
        code: AbortCode,
    },
}

fn command(cs: u8, bits: u8) -> u8 {
    (cs << 5) | (bits & 0x1F)
}

fn ca_bit(a: &SdoAddress) -> u8 {
    if a.complete_access {
        COMPLETE_ACCESS
    } else {
        0
    }
}

fn initiate(cmd: u8, index: u16, subindex: u8, data4: [u8; 4]) -> Vec<u8> {
    let i = index.to_le_bytes();
    let mut v = Vec::with_capacity(COE_HEADER_LEN + SDO_HEADER_LEN);
    v.extend_from_slice(&[cmd, i[0], i[1], subindex]);
    v.extend_from_slice(&data4);
    v
}

fn segment(cmd_base: u8, toggle: bool, last: bool, data: &[u8]) -> Vec<u8> {
    let unused = MIN_SEGMENT_DATA.saturating_sub(data.len()) as u8;
    let mut cmd = cmd_base | (unused << 1);
    if toggle {
        cmd |= TOGGLE;
    }
    if last {
        cmd |= LAST_SEGMENT;
    }
    let mut v = vec![cmd];
    v.extend_from_slice(data);
    v.resize(1 + data.len().max(MIN_SEGMENT_DATA), 0);
    v
}

fn with_header(service: u8, body: Vec<u8>) -> Vec<u8> {
    let mut v = coe_header(service).to_vec();
    v.extend_from_slice(&body);
    v
}

fn head(body: &[u8]) -> Result<(u8, u16, u8, [u8; 4]), DecodeError> {
    match body {
        [cmd, i0, i1, sub, d0, d1, d2, d3, ..] => Ok((
            *cmd,
            u16::from_le_bytes([*i0, *i1]),
            *sub,
            [*d0, *d1, *d2, *d3],
        )),
        _ => Err(DecodeError::TooShort {
            len: body.len(),
            need: SDO_HEADER_LEN,
            what: "SDO initiate header",
        }),
    }
}

fn segment_data(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let Some((&cmd, payload)) = body.split_first() else {
        return Err(DecodeError::TooShort {
            len: 0,
            need: 1,
            what: "SDO segment",
        });
    };
    let unused = usize::from((cmd >> 1) & 0x07);
    // `unused` counts from the end of the (at least 7-byte) segment data.
    let window = payload.len().max(MIN_SEGMENT_DATA);
    let len = window - unused;
    if len > payload.len() {
        return Err(DecodeError::BadSegmentLength {
            unused,
            len: payload.len(),
        });
    }
    Ok(payload[..len].to_vec())
}

impl SdoRequest {
    /// The CoE message (CoE header + SDO body) of this request.
    pub fn encode(&self) -> Vec<u8> {
        let body = match self {
            SdoRequest::DownloadExpedited { address, data } => {
                // 1..=4 data bytes; an empty one is sent as one zero byte.
                let n = data.len().clamp(1, 4);
                let mut d = [0u8; 4];
                let copy = data.len().min(4);
                d[..copy].copy_from_slice(&data[..copy]);
                let bits = SIZE_INDICATED | EXPEDITED | (((4 - n) as u8) << 2) | ca_bit(address);
                initiate(
                    command(cs::INITIATE_DOWNLOAD_OR_SEGMENT_RESP, bits),
                    address.index,
                    address.subindex,
                    d,
                )
            }
            SdoRequest::DownloadNormal {
                address,
                total,
                data,
            } => {
                let bits = SIZE_INDICATED | ca_bit(address);
                let mut v = initiate(
                    command(cs::INITIATE_DOWNLOAD_OR_SEGMENT_RESP, bits),
                    address.index,
                    address.subindex,
                    total.to_le_bytes(),
                );
                v.extend_from_slice(data);
                v
            }
            SdoRequest::DownloadSegment { toggle, last, data } => segment(
                command(cs::SEGMENT_DOWNLOAD_OR_UPLOAD_RESP, 0),
                *toggle,
                *last,
                data,
            ),
            SdoRequest::Upload { address } => initiate(
                command(cs::INITIATE_UPLOAD, ca_bit(address)),
                address.index,
                address.subindex,
                [0; 4],
            ),
            SdoRequest::UploadSegment { toggle } => {
                let mut cmd = command(cs::UPLOAD_SEGMENT_OR_DOWNLOAD_RESP, 0);
                if *toggle {
                    cmd |= TOGGLE;
                }
                let mut v = vec![cmd];
                v.resize(1 + MIN_SEGMENT_DATA, 0);
                v
            }
            SdoRequest::Abort {
                index,
                subindex,
                code,
            } => initiate(
                command(cs::ABORT, 0),
                *index,
                *subindex,
                code.0.to_le_bytes(),
            ),
        };
        with_header(service::SDO_REQUEST, body)
    }

    /// Decodes a CoE SDO request (as a terminal would receive it).
    pub fn decode(coe: &[u8]) -> Result<SdoRequest, DecodeError> {
        let (svc, body) = parse_coe_header(coe)?;
        if svc != service::SDO_REQUEST {
            return Err(DecodeError::NotSdo(svc));
        }
        let cmd = *body.first().ok_or(DecodeError::TooShort {
            len: 0,
            need: 1,
            what: "SDO command",
        })?;
        let address = |index, subindex| SdoAddress {
            index,
            subindex,
            complete_access: cmd & COMPLETE_ACCESS != 0,
        };
        match cmd >> 5 {
            cs::INITIATE_DOWNLOAD_OR_SEGMENT_RESP => {
                let (_, index, sub, d) = head(body)?;
                if cmd & EXPEDITED != 0 {
                    let n = if cmd & SIZE_INDICATED != 0 {
                        4 - usize::from((cmd >> 2) & 0x03)
                    } else {
                        4
                    };
                    Ok(SdoRequest::DownloadExpedited {
                        address: address(index, sub),
                        data: d[..n].to_vec(),
                    })
                } else {
                    Ok(SdoRequest::DownloadNormal {
                        address: address(index, sub),
                        total: u32::from_le_bytes(d),
                        data: body[SDO_HEADER_LEN..].to_vec(),
                    })
                }
            }
            cs::SEGMENT_DOWNLOAD_OR_UPLOAD_RESP => Ok(SdoRequest::DownloadSegment {
                toggle: cmd & TOGGLE != 0,
                last: cmd & LAST_SEGMENT != 0,
                data: segment_data(body)?,
            }),
            cs::INITIATE_UPLOAD => {
                let (_, index, sub, _) = head(body)?;
                Ok(SdoRequest::Upload {
                    address: address(index, sub),
                })
            }
            cs::UPLOAD_SEGMENT_OR_DOWNLOAD_RESP => Ok(SdoRequest::UploadSegment {
                toggle: cmd & TOGGLE != 0,
            }),
            cs::ABORT => {
                let (_, index, subindex, d) = head(body)?;
                Ok(SdoRequest::Abort {
                    index,
                    subindex,
                    code: AbortCode(u32::from_le_bytes(d)),
                })
            }
            _ => Err(DecodeError::BadCommand(cmd)),
        }
    }
}

impl SdoResponse {
    /// The CoE message (CoE header + SDO body) of this response.
    pub fn encode(&self) -> Vec<u8> {
        let body = match self {
            SdoResponse::UploadExpedited {
                index,
                subindex,
                data,
            } => {
                let n = data.len().clamp(1, 4);
                let mut d = [0u8; 4];
                d[..n.min(data.len())].copy_from_slice(&data[..n.min(data.len())]);
                let bits = SIZE_INDICATED | EXPEDITED | (((4 - n) as u8) << 2);
                initiate(command(cs::INITIATE_UPLOAD, bits), *index, *subindex, d)
            }
            SdoResponse::UploadNormal {
                index,
                subindex,
                total,
                data,
            } => {
                let mut v = initiate(
                    command(cs::INITIATE_UPLOAD, SIZE_INDICATED),
                    *index,
                    *subindex,
                    total.to_le_bytes(),
                );
                v.extend_from_slice(data);
                v
            }
            SdoResponse::UploadSegment { toggle, last, data } => segment(
                command(cs::SEGMENT_DOWNLOAD_OR_UPLOAD_RESP, 0),
                *toggle,
                *last,
                data,
            ),
            SdoResponse::DownloadInitiated { index, subindex } => initiate(
                command(cs::UPLOAD_SEGMENT_OR_DOWNLOAD_RESP, 0),
                *index,
                *subindex,
                [0; 4],
            ),
            SdoResponse::DownloadSegment { toggle } => {
                let mut cmd = command(cs::INITIATE_DOWNLOAD_OR_SEGMENT_RESP, 0);
                if *toggle {
                    cmd |= TOGGLE;
                }
                let mut v = vec![cmd];
                v.resize(SDO_HEADER_LEN, 0);
                v
            }
            SdoResponse::Abort {
                index,
                subindex,
                code,
            } => initiate(
                command(cs::ABORT, 0),
                *index,
                *subindex,
                code.0.to_le_bytes(),
            ),
        };
        with_header(service::SDO_RESPONSE, body)
    }

    /// Decodes the body of a CoE SDO response (after the CoE header).
    pub fn decode_body(body: &[u8]) -> Result<SdoResponse, DecodeError> {
        let cmd = *body.first().ok_or(DecodeError::TooShort {
            len: 0,
            need: 1,
            what: "SDO command",
        })?;
        match cmd >> 5 {
            cs::INITIATE_UPLOAD => {
                let (_, index, subindex, d) = head(body)?;
                if cmd & EXPEDITED != 0 {
                    let n = if cmd & SIZE_INDICATED != 0 {
                        4 - usize::from((cmd >> 2) & 0x03)
                    } else {
                        4
                    };
                    Ok(SdoResponse::UploadExpedited {
                        index,
                        subindex,
                        data: d[..n].to_vec(),
                    })
                } else {
                    Ok(SdoResponse::UploadNormal {
                        index,
                        subindex,
                        total: u32::from_le_bytes(d),
                        data: body[SDO_HEADER_LEN..].to_vec(),
                    })
                }
            }
            cs::SEGMENT_DOWNLOAD_OR_UPLOAD_RESP => Ok(SdoResponse::UploadSegment {
                toggle: cmd & TOGGLE != 0,
                last: cmd & LAST_SEGMENT != 0,
                data: segment_data(body)?,
            }),
            cs::UPLOAD_SEGMENT_OR_DOWNLOAD_RESP => {
                let (_, index, subindex, _) = head(body)?;
                Ok(SdoResponse::DownloadInitiated { index, subindex })
            }
            cs::INITIATE_DOWNLOAD_OR_SEGMENT_RESP => Ok(SdoResponse::DownloadSegment {
                toggle: cmd & TOGGLE != 0,
            }),
            cs::ABORT => {
                let (_, index, subindex, d) = head(body)?;
                Ok(SdoResponse::Abort {
                    index,
                    subindex,
                    code: AbortCode(u32::from_le_bytes(d)),
                })
            }
            _ => Err(DecodeError::BadCommand(cmd)),
        }
    }

    /// Decodes a whole CoE SDO response (CoE header + body).
    pub fn decode(coe: &[u8]) -> Result<SdoResponse, DecodeError> {
        let (svc, body) = parse_coe_header(coe)?;
        if svc != service::SDO_RESPONSE {
            return Err(DecodeError::NotSdo(svc));
        }
        Self::decode_body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expedited_download_encoding() {
        // Write 0x1234 (u16) to 0x8000:01: command 0x2B (cs 1, n = 2, e, s).
        let r = SdoRequest::DownloadExpedited {
            address: SdoAddress::entry(0x8000, 1),
            data: vec![0x34, 0x12],
        };
        let b = r.encode();
        assert_eq!(
            b,
            vec![0x00, 0x20, 0x2B, 0x00, 0x80, 0x01, 0x34, 0x12, 0, 0]
        );
        assert_eq!(SdoRequest::decode(&b), Ok(r));
    }

    #[test]
    fn upload_request_with_complete_access() {
        let r = SdoRequest::Upload {
            address: SdoAddress::complete(0x1C12, 0),
        };
        let b = r.encode();
        assert_eq!(b, vec![0x00, 0x20, 0x50, 0x12, 0x1C, 0x00, 0, 0, 0, 0]);
        assert_eq!(SdoRequest::decode(&b), Ok(r));
    }

    #[test]
    fn every_request_round_trips() {
        let cases = vec![
            SdoRequest::DownloadExpedited {
                address: SdoAddress::complete(0x1C12, 0),
                data: vec![1],
            },
            SdoRequest::DownloadNormal {
                address: SdoAddress::entry(0x2000, 3),
                total: 300,
                data: vec![9; 100],
            },
            SdoRequest::DownloadSegment {
                toggle: true,
                last: true,
                data: vec![1, 2, 3],
            },
            SdoRequest::DownloadSegment {
                toggle: false,
                last: false,
                data: vec![7; 50],
            },
            SdoRequest::UploadSegment { toggle: true },
            SdoRequest::Abort {
                index: 0x6000,
                subindex: 2,
                code: AbortCode::TOGGLE_BIT,
            },
        ];
        for r in cases {
            assert_eq!(SdoRequest::decode(&r.encode()), Ok(r.clone()), "{r:?}");
        }
    }

    #[test]
    fn every_response_round_trips() {
        let cases = vec![
            SdoResponse::UploadExpedited {
                index: 0x1018,
                subindex: 1,
                data: vec![2, 0, 0, 0],
            },
            SdoResponse::UploadExpedited {
                index: 0x1C12,
                subindex: 0,
                data: vec![1],
            },
            SdoResponse::UploadNormal {
                index: 0x1008,
                subindex: 0,
                total: 6,
                data: b"EL7041".to_vec(),
            },
            SdoResponse::UploadSegment {
                toggle: true,
                last: false,
                data: vec![5; 20],
            },
            SdoResponse::UploadSegment {
                toggle: false,
                last: true,
                data: vec![1, 2],
            },
            SdoResponse::DownloadInitiated {
                index: 0x8000,
                subindex: 1,
            },
            SdoResponse::DownloadSegment { toggle: true },
            SdoResponse::Abort {
                index: 0x1234,
                subindex: 0,
                code: AbortCode::NO_OBJECT,
            },
        ];
        for r in cases {
            assert_eq!(SdoResponse::decode(&r.encode()), Ok(r.clone()), "{r:?}");
        }
    }

    #[test]
    fn short_segment_is_padded_to_seven_bytes() {
        let b = SdoRequest::DownloadSegment {
            toggle: false,
            last: true,
            data: vec![0xAA, 0xBB],
        }
        .encode();
        // cmd: cs 0, n = 5 (bits 1..3), c = 1.
        assert_eq!(b[2], 0x0B);
        assert_eq!(b.len(), 2 + 1 + 7);
    }

    #[test]
    fn empty_expedited_download_does_not_panic() {
        let b = SdoRequest::DownloadExpedited {
            address: SdoAddress::entry(0x2000, 0),
            data: Vec::new(),
        }
        .encode();
        assert_eq!(b[2], 0x2F, "one byte indicated");
        assert_eq!(&b[6..], &[0, 0, 0, 0]);
    }

    #[test]
    fn abort_response_decodes_code() {
        let body = [0x80, 0x00, 0x60, 0x01, 0x11, 0x00, 0x09, 0x06];
        assert_eq!(
            SdoResponse::decode_body(&body),
            Ok(SdoResponse::Abort {
                index: 0x6000,
                subindex: 1,
                code: AbortCode::NO_SUBINDEX
            })
        );
    }

    #[test]
    fn malformed_responses_are_errors() {
        assert!(matches!(
            SdoResponse::decode(&[0x00]),
            Err(DecodeError::TooShort { .. })
        ));
        assert_eq!(
            SdoResponse::decode(&[0x00, 0x10, 0, 0]),
            Err(DecodeError::NotSdo(1))
        );
        assert!(matches!(
            SdoResponse::decode_body(&[0x41, 0x00]),
            Err(DecodeError::TooShort { .. })
        ));
        assert_eq!(
            SdoResponse::decode_body(&[0xE0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::BadCommand(0xE0))
        );
        // Upload segment declaring 6 data bytes but holding 2.
        assert_eq!(
            SdoResponse::decode_body(&[0x02, 1, 2]),
            Err(DecodeError::BadSegmentLength { unused: 1, len: 2 })
        );
    }
}
