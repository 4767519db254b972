//! Sans-IO SDO information service (ETG.1000.6 §5.6.3, tables 42..48): OD list,
//! object description and entry description requests, their (possibly fragmented)
//! replies, and SDO information errors.

use super::abort::AbortCode;
use super::sdo::{DecodeError, coe_header, parse_coe_header, service};
use serde::Serialize;

/// Length of the SDO information header after the CoE header: opcode, reserved,
/// fragments left (ETG.1000.6 table 42).
pub const INFO_HEADER_LEN: usize = 4;

/// SDO information opcodes (ETG.1000.6 table 43).
pub mod opcode {
    /// Get OD list request.
    pub const GET_OD_LIST_REQ: u8 = 1;
    /// Get OD list response.
    pub const GET_OD_LIST_RESP: u8 = 2;
    /// Get object description request.
    pub const GET_OBJECT_DESC_REQ: u8 = 3;
    /// Get object description response.
    pub const GET_OBJECT_DESC_RESP: u8 = 4;
    /// Get entry description request.
    pub const GET_ENTRY_DESC_REQ: u8 = 5;
    /// Get entry description response.
    pub const GET_ENTRY_DESC_RESP: u8 = 6;
    /// SDO information error request.
    pub const ERROR_REQ: u8 = 7;
    /// Bit 7 of the opcode byte: more fragments follow.
    pub const INCOMPLETE: u8 = 0x80;
}

/// Which objects an OD list request asks for (ETG.1000.6 table 44).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OdListType {
    /// The number of objects in each of the other lists.
    Lengths,
    /// All objects.
    All,
    /// Objects mappable into RxPDOs.
    RxPdoMappable,
    /// Objects mappable into TxPDOs.
    TxPdoMappable,
    /// Objects to be stored for a device replacement.
    Backup,
    /// Objects used as start-up parameters.
    Settings,
}

impl OdListType {
    /// The list type code.
    pub fn code(self) -> u16 {
        match self {
            OdListType::Lengths => 0,
            OdListType::All => 1,
            OdListType::RxPdoMappable => 2,
            OdListType::TxPdoMappable => 3,
            OdListType::Backup => 4,
            OdListType::Settings => 5,
        }
    }
}

/// Value-info bits of an entry description request (ETG.1000.6 table 47).
pub mod value_info {
    /// Include the unit type.
    pub const UNIT_TYPE: u8 = 0x08;
    /// Include the default value.
    pub const DEFAULT: u8 = 0x10;
    /// Include the minimum value.
    pub const MINIMUM: u8 = 0x20;
    /// Include the maximum value.
    pub const MAXIMUM: u8 = 0x40;
}

/// Object codes (ETG.1000.6 table 45).
pub mod object_code {
    /// A single value.
    pub const VAR: u8 = 7;
    /// Entries of one type.
    pub const ARRAY: u8 = 8;
    /// Entries of different types.
    pub const RECORD: u8 = 9;
}

/// An object description reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectDescription {
    /// Object index.
    pub index: u16,
    /// Data type of the object.
    pub data_type: u16,
    /// Highest subindex.
    pub max_subindex: u8,
    /// Object code (VAR, ARRAY, RECORD).
    pub object_code: u8,
    /// Name of the object.
    pub name: String,
}

impl ObjectDescription {
    /// "VAR", "ARRAY", "RECORD" or the code.
    pub fn object_code_name(&self) -> String {
        match self.object_code {
            object_code::VAR => "VAR".into(),
            object_code::ARRAY => "ARRAY".into(),
            object_code::RECORD => "RECORD".into(),
            other => format!("{other}"),
        }
    }
}

/// Access rights of an entry (ETG.1000.6 table 48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ObjectAccess(pub u16);

impl ObjectAccess {
    /// Readable in PRE-OP, SAFE-OP and OP as "rrr"/"---" and writable as "www"/"---".
    pub fn summary(self) -> String {
        let r = |b: u16| if self.0 & b != 0 { 'r' } else { '-' };
        let w = |b: u16| if self.0 & b != 0 { 'w' } else { '-' };
        format!(
            "{}{}{} {}{}{}",
            r(0x01),
            r(0x02),
            r(0x04),
            w(0x08),
            w(0x10),
            w(0x20)
        )
    }
    /// Mappable into an RxPDO.
    pub fn rx_mappable(self) -> bool {
        self.0 & 0x40 != 0
    }
    /// Mappable into a TxPDO.
    pub fn tx_mappable(self) -> bool {
        self.0 & 0x80 != 0
    }
}

/// An entry description reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryDescription {
    /// Object index.
    pub index: u16,
    /// Subindex.
    pub subindex: u8,
    /// Value info bits the reply carries.
    pub value_info: u8,
    /// Data type.
    pub data_type: u16,
    /// Length in bits.
    pub bit_len: u16,
    /// Access rights.
    pub access: ObjectAccess,
    /// Unit type, when requested and given.
    pub unit_type: Option<u16>,
    /// Default value, when requested and given.
    pub default: Option<Vec<u8>>,
    /// Minimum value, when requested and given.
    pub minimum: Option<Vec<u8>>,
    /// Maximum value, when requested and given.
    pub maximum: Option<Vec<u8>>,
    /// Name of the entry.
    pub name: String,
}

/// The header of one SDO information fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoHeader {
    /// Opcode without the incomplete bit.
    pub opcode: u8,
    /// More fragments follow.
    pub incomplete: bool,
    /// Fragments still to come.
    pub fragments_left: u16,
}

/// Splits an SDO information message (CoE header included) into its header and data.
pub fn parse_info(coe: &[u8]) -> Result<(InfoHeader, &[u8]), DecodeError> {
    let (svc, body) = parse_coe_header(coe)?;
    if svc != service::SDO_INFO {
        return Err(DecodeError::NotSdo(svc));
    }
    match body {
        [op, _, f0, f1, rest @ ..] => Ok((
            InfoHeader {
                opcode: op & 0x7F,
                incomplete: op & opcode::INCOMPLETE != 0,
                fragments_left: u16::from_le_bytes([*f0, *f1]),
            },
            rest,
        )),
        _ => Err(DecodeError::TooShort {
            len: body.len(),
            need: INFO_HEADER_LEN,
            what: "SDO information header",
        }),
    }
}

/// Encodes an SDO information message (CoE header included).
pub fn encode_info(op: u8, incomplete: bool, fragments_left: u16, data: &[u8]) -> Vec<u8> {
    let mut v = coe_header(service::SDO_INFO).to_vec();
    v.push(op | if incomplete { opcode::INCOMPLETE } else { 0 });
    v.push(0);
    v.extend_from_slice(&fragments_left.to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// Get OD list request.
pub fn od_list_request(list: OdListType) -> Vec<u8> {
    encode_info(
        opcode::GET_OD_LIST_REQ,
        false,
        0,
        &list.code().to_le_bytes(),
    )
}

/// Get object description request.
pub fn object_description_request(index: u16) -> Vec<u8> {
    encode_info(opcode::GET_OBJECT_DESC_REQ, false, 0, &index.to_le_bytes())
}

/// Get entry description request.
pub fn entry_description_request(index: u16, subindex: u8, info: u8) -> Vec<u8> {
    let i = index.to_le_bytes();
    encode_info(
        opcode::GET_ENTRY_DESC_REQ,
        false,
        0,
        &[i[0], i[1], subindex, info],
    )
}

/// Joins the fragments of one SDO information reply.
#[derive(Debug, Default)]
pub struct Reassembly {
    opcode: Option<u8>,
    data: Vec<u8>,
    expected_left: Option<u16>,
}

/// Outcome of feeding one fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    /// More fragments are needed.
    More,
    /// The reply is complete: its opcode and joined data.
    Complete(u8, Vec<u8>),
    /// The terminal answered with an SDO information error.
    Error(AbortCode),
}

/// A fragment did not continue the reply in progress.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// A fragment's opcode differs from the first fragment's.
    #[error("SDO information fragment with opcode {got} in a reply with opcode {expected}")]
    OpcodeChanged {
        /// Opcode of the first fragment.
        expected: u8,
        /// Opcode of this fragment.
        got: u8,
    },
    /// The fragments-left counter did not count down by one.
    #[error("SDO information fragment says {got} fragments left, expected {expected}")]
    FragmentLost {
        /// Expected counter.
        expected: u16,
        /// Counter received.
        got: u16,
    },
}

impl Reassembly {
    /// Feeds one fragment (header and data from [`parse_info`]).
    pub fn push(&mut self, h: InfoHeader, data: &[u8]) -> Result<Fragment, ReassemblyError> {
        if h.opcode == opcode::ERROR_REQ {
            let code = match data {
                [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
                _ => AbortCode::GENERAL.0,
            };
            return Ok(Fragment::Error(AbortCode(code)));
        }
        if let Some(op) = self.opcode {
            if op != h.opcode {
                return Err(ReassemblyError::OpcodeChanged {
                    expected: op,
                    got: h.opcode,
                });
            }
        }
        if let Some(expected) = self.expected_left {
            if expected != h.fragments_left {
                return Err(ReassemblyError::FragmentLost {
                    expected,
                    got: h.fragments_left,
                });
            }
        }
        self.opcode = Some(h.opcode);
        self.data.extend_from_slice(data);
        if h.incomplete {
            self.expected_left = Some(h.fragments_left.saturating_sub(1));
            Ok(Fragment::More)
        } else {
            Ok(Fragment::Complete(h.opcode, std::mem::take(&mut self.data)))
        }
    }
}

fn latin1(b: &[u8]) -> String {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
    b[..end].iter().map(|&c| char::from(c)).collect()
}

/// Parses the joined data of an OD list reply: the list type, then indices. For
/// [`OdListType::Lengths`] the "indices" are the five list lengths.
pub fn parse_od_list(data: &[u8]) -> Result<(u16, Vec<u16>), DecodeError> {
    let Some((t, rest)) = data.split_first_chunk::<2>() else {
        return Err(DecodeError::TooShort {
            len: data.len(),
            need: 2,
            what: "OD list reply",
        });
    };
    Ok((
        u16::from_le_bytes(*t),
        rest.chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect(),
    ))
}

/// Parses an object description reply.
pub fn parse_object_description(data: &[u8]) -> Result<ObjectDescription, DecodeError> {
    match data {
        [i0, i1, t0, t1, max, code, name @ ..] => Ok(ObjectDescription {
            index: u16::from_le_bytes([*i0, *i1]),
            data_type: u16::from_le_bytes([*t0, *t1]),
            max_subindex: *max,
            object_code: *code,
            name: latin1(name),
        }),
        _ => Err(DecodeError::TooShort {
            len: data.len(),
            need: 6,
            what: "object description",
        }),
    }
}

/// Parses an entry description reply.
pub fn parse_entry_description(data: &[u8]) -> Result<EntryDescription, DecodeError> {
    let [i0, i1, sub, info, t0, t1, l0, l1, a0, a1, rest @ ..] = data else {
        return Err(DecodeError::TooShort {
            len: data.len(),
            need: 10,
            what: "entry description",
        });
    };
    let bit_len = u16::from_le_bytes([*l0, *l1]);
    let value_bytes = usize::from(bit_len).div_ceil(8);
    let mut rest = rest;
    let mut take = |n: usize, what: &'static str| -> Result<Vec<u8>, DecodeError> {
        if rest.len() < n {
            return Err(DecodeError::TooShort {
                len: rest.len(),
                need: n,
                what,
            });
        }
        let (a, b) = rest.split_at(n);
        rest = b;
        Ok(a.to_vec())
    };
    let unit_type = if info & value_info::UNIT_TYPE != 0 {
        let b = take(2, "unit type")?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    } else {
        None
    };
    let default = if info & value_info::DEFAULT != 0 {
        Some(take(value_bytes, "default value")?)
    } else {
        None
    };
    let minimum = if info & value_info::MINIMUM != 0 {
        Some(take(value_bytes, "minimum value")?)
    } else {
        None
    };
    let maximum = if info & value_info::MAXIMUM != 0 {
        Some(take(value_bytes, "maximum value")?)
    } else {
        None
    };
    Ok(EntryDescription {
        index: u16::from_le_bytes([*i0, *i1]),
        subindex: *sub,
        value_info: *info,
        data_type: u16::from_le_bytes([*t0, *t1]),
        bit_len,
        access: ObjectAccess(u16::from_le_bytes([*a0, *a1])),
        unit_type,
        default,
        minimum,
        maximum,
        name: latin1(rest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_encode() {
        assert_eq!(
            od_list_request(OdListType::All),
            vec![0x00, 0x80, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00]
        );
        assert_eq!(
            entry_description_request(0x1018, 2, 0),
            vec![0x00, 0x80, 0x05, 0x00, 0x00, 0x00, 0x18, 0x10, 0x02, 0x00]
        );
        assert_eq!(object_description_request(0x1C12)[6..], [0x12, 0x1C]);
    }

    #[test]
    fn fragments_join() {
        let f1 = encode_info(opcode::GET_OD_LIST_RESP, true, 2, &[1, 0, 0x00, 0x10]);
        let f2 = encode_info(opcode::GET_OD_LIST_RESP, true, 1, &[0x08, 0x10]);
        let f3 = encode_info(opcode::GET_OD_LIST_RESP, false, 0, &[0x18, 0x10]);
        let mut r = Reassembly::default();
        for f in [&f1, &f2] {
            let (h, d) = parse_info(f).expect("parse");
            assert_eq!(r.push(h, d), Ok(Fragment::More));
        }
        let (h, d) = parse_info(&f3).expect("parse");
        let Ok(Fragment::Complete(op, data)) = r.push(h, d) else {
            panic!("not complete");
        };
        assert_eq!(op, opcode::GET_OD_LIST_RESP);
        assert_eq!(parse_od_list(&data), Ok((1, vec![0x1000, 0x1008, 0x1018])));
    }

    #[test]
    fn lost_fragment_is_detected() {
        let mut r = Reassembly::default();
        let f1 = encode_info(2, true, 3, &[1, 0]);
        let (h, d) = parse_info(&f1).expect("parse");
        r.push(h, d).expect("first");
        let f2 = encode_info(2, true, 1, &[2, 0]);
        let (h, d) = parse_info(&f2).expect("parse");
        assert_eq!(
            r.push(h, d),
            Err(ReassemblyError::FragmentLost {
                expected: 2,
                got: 1
            })
        );
    }

    #[test]
    fn error_reply_is_an_abort_code() {
        let f = encode_info(opcode::ERROR_REQ, false, 0, &0x0602_0000u32.to_le_bytes());
        let (h, d) = parse_info(&f).expect("parse");
        assert_eq!(
            Reassembly::default().push(h, d),
            Ok(Fragment::Error(AbortCode::NO_OBJECT))
        );
    }

    #[test]
    fn descriptions_parse() {
        let mut od = vec![0x18, 0x10, 0x23, 0x00, 4, 9];
        od.extend_from_slice(b"Identity");
        let d = parse_object_description(&od).expect("od");
        assert_eq!(
            (d.index, d.data_type, d.max_subindex, d.object_code_name()),
            (0x1018, 0x23, 4, "RECORD".to_string())
        );
        assert_eq!(d.name, "Identity");

        let mut ed = vec![0x18, 0x10, 1, 0x30, 0x07, 0, 32, 0, 0x07, 0x00];
        ed.extend_from_slice(&[2, 0, 0, 0]); // default
        ed.extend_from_slice(&[0, 0, 0, 0]); // minimum
        ed.extend_from_slice(b"Vendor ID");
        let e = parse_entry_description(&ed).expect("entry");
        assert_eq!(e.default, Some(vec![2, 0, 0, 0]));
        assert_eq!(e.minimum, Some(vec![0, 0, 0, 0]));
        assert_eq!(e.maximum, None);
        assert_eq!(e.name, "Vendor ID");
        assert_eq!(e.access.summary(), "rrr ---");

        assert!(parse_entry_description(&ed[..12]).is_err());
        assert!(parse_object_description(&[1, 2]).is_err());
    }
}
