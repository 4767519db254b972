//! Typed values as a user writes them on the command line (`--type u16 1500`,
//! `--type string "abc"`, `--type hex 0a0b`) and as they are shown, encoded
//! little-endian as CoE transfers them (ETG.1000.6 §5.6.2).

use std::fmt;
use std::str::FromStr;

/// A value type a user can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// BOOL, one byte 0/1.
    Bool,
    /// USINT.
    U8,
    /// UINT.
    U16,
    /// UDINT.
    U32,
    /// ULINT.
    U64,
    /// SINT.
    I8,
    /// INT.
    I16,
    /// DINT.
    I32,
    /// LINT.
    I64,
    /// REAL.
    F32,
    /// LREAL.
    F64,
    /// VISIBLE_STRING: bytes as text.
    String,
    /// Raw bytes in hexadecimal.
    Hex,
}

/// Names accepted by [`ValueType::from_str`], for help texts.
pub const TYPE_NAMES: &str = "bool, u8, u16, u32, u64, i8, i16, i32, i64, f32, f64, string, hex";

/// A value that does not fit its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Unknown type name.
    #[error("unknown type {0:?} (one of: {TYPE_NAMES})")]
    UnknownType(String),
    /// The text is not a value of the type.
    #[error("{text:?} is not a valid {ty}: {reason}")]
    Parse {
        /// The type.
        ty: ValueType,
        /// The text given.
        text: String,
        /// Why.
        reason: String,
    },
    /// The bytes have the wrong length for the type.
    #[error("{len} bytes cannot be shown as {ty} ({need} bytes)")]
    Length {
        /// The type.
        ty: ValueType,
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::Bool => "bool",
            ValueType::U8 => "u8",
            ValueType::U16 => "u16",
            ValueType::U32 => "u32",
            ValueType::U64 => "u64",
            ValueType::I8 => "i8",
            ValueType::I16 => "i16",
            ValueType::I32 => "i32",
            ValueType::I64 => "i64",
            ValueType::F32 => "f32",
            ValueType::F64 => "f64",
            ValueType::String => "string",
            ValueType::Hex => "hex",
        })
    }
}

impl FromStr for ValueType {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "bool" | "boolean" => ValueType::Bool,
            "u8" | "uint8" | "usint" => ValueType::U8,
            "u16" | "uint16" | "uint" => ValueType::U16,
            "u32" | "uint32" | "udint" => ValueType::U32,
            "u64" | "uint64" | "ulint" => ValueType::U64,
            "i8" | "int8" | "sint" => ValueType::I8,
            "i16" | "int16" | "int" => ValueType::I16,
            "i32" | "int32" | "dint" => ValueType::I32,
            "i64" | "int64" | "lint" => ValueType::I64,
            "f32" | "float" | "real" => ValueType::F32,
            "f64" | "double" | "lreal" => ValueType::F64,
            "string" | "str" => ValueType::String,
            "hex" | "bytes" | "raw" => ValueType::Hex,
            other => return Err(ValueError::UnknownType(other.to_string())),
        })
    }
}

impl ValueType {
    /// Fixed size in bytes, `None` for strings and raw bytes.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            ValueType::Bool | ValueType::U8 | ValueType::I8 => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 => 8,
            ValueType::String | ValueType::Hex => return None,
        })
    }

    /// The type matching a CoE data type code, for showing values of known entries.
    pub fn for_data_type(code: u16) -> Option<ValueType> {
        Some(match code {
            0x0001 => ValueType::Bool,
            0x0002 => ValueType::I8,
            0x0003 => ValueType::I16,
            0x0004 => ValueType::I32,
            0x0005 | 0x001E => ValueType::U8,
            0x0006 | 0x001F => ValueType::U16,
            0x0007 | 0x0027 => ValueType::U32,
            0x0008 => ValueType::F32,
            0x0009 => ValueType::String,
            0x0011 => ValueType::F64,
            0x0015 => ValueType::I64,
            0x001B => ValueType::U64,
            _ => return None,
        })
    }

    /// Encodes the text of a value.
    pub fn encode(self, text: &str) -> Result<Vec<u8>, ValueError> {
        let err = |reason: String| ValueError::Parse {
            ty: self,
            text: text.to_string(),
            reason,
        };
        let t = text.trim();
        let int = |t: &str| -> Result<i128, String> {
            let t = t.replace('_', "");
            let (neg, body) = match t.strip_prefix('-') {
                Some(b) => (true, b.to_string()),
                None => (false, t.clone()),
            };
            let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
                i128::from_str_radix(h, 16)
            } else {
                body.parse::<i128>()
            }
            .map_err(|e| e.to_string())?;
            Ok(if neg { -v } else { v })
        };
        macro_rules! integer {
            ($ty:ty) => {{
                let v = int(t).map_err(err)?;
                let v = <$ty>::try_from(v)
                    .map_err(|_| err(format!("out of range {}..={}", <$ty>::MIN, <$ty>::MAX)))?;
                v.to_le_bytes().to_vec()
            }};
        }
        Ok(match self {
            ValueType::Bool => match t.to_ascii_lowercase().as_str() {
                "1" | "true" | "on" => vec![1],
                "0" | "false" | "off" => vec![0],
                _ => return Err(err("expected true/false or 1/0".into())),
            },
            ValueType::U8 => integer!(u8),
            ValueType::U16 => integer!(u16),
            ValueType::U32 => integer!(u32),
            ValueType::U64 => integer!(u64),
            ValueType::I8 => integer!(i8),
            ValueType::I16 => integer!(i16),
            ValueType::I32 => integer!(i32),
            ValueType::I64 => integer!(i64),
            ValueType::F32 => t
                .parse::<f32>()
                .map_err(|e| err(e.to_string()))?
                .to_le_bytes()
                .to_vec(),
            ValueType::F64 => t
                .parse::<f64>()
                .map_err(|e| err(e.to_string()))?
                .to_le_bytes()
                .to_vec(),
            ValueType::String => text.as_bytes().to_vec(),
            ValueType::Hex => parse_hex_bytes(t).map_err(err)?,
        })
    }

    /// Shows bytes as a value of this type.
    pub fn decode(self, bytes: &[u8]) -> Result<String, ValueError> {
        if let Some(need) = self.size() {
            // Expedited replies may carry more bytes than the type has; the value is in
            // the low bytes. Fewer bytes are an error.
            if bytes.len() < need {
                return Err(ValueError::Length {
                    ty: self,
                    len: bytes.len(),
                    need,
                });
            }
        }
        let b = bytes;
        Ok(match self {
            ValueType::Bool => (b[0] != 0).to_string(),
            ValueType::U8 => b[0].to_string(),
            ValueType::U16 => u16::from_le_bytes([b[0], b[1]]).to_string(),
            ValueType::U32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string(),
            ValueType::U64 => u64::from_le_bytes(eight(b)).to_string(),
            ValueType::I8 => (b[0] as i8).to_string(),
            ValueType::I16 => i16::from_le_bytes([b[0], b[1]]).to_string(),
            ValueType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string(),
            ValueType::I64 => i64::from_le_bytes(eight(b)).to_string(),
            ValueType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string(),
            ValueType::F64 => f64::from_le_bytes(eight(b)).to_string(),
            ValueType::String => {
                let end = b.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
                b[..end].iter().map(|&c| char::from(c)).collect()
            }
            ValueType::Hex => hex(b),
        })
    }
}

fn eight(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// Bytes as lowercase hex without separators.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses bytes written as hex digits, two per byte, with an optional `0x` in front and
/// white space, `:` or `_` anywhere between them (`0a 0b`, `0x0a0b`, `de:ad`). Anything
/// else, or an odd number of digits, is an error saying so.
pub fn parse_hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    let digits = text
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':' && *c != '_')
        .map(|c| {
            c.to_digit(16)
                .map(|d| d as u8)
                .ok_or_else(|| format!("{c:?} is not a hex digit"))
        })
        .collect::<Result<Vec<u8>, _>>()?;
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    Ok(digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_decode() {
        assert_eq!(ValueType::U16.encode("1500"), Ok(vec![0xDC, 0x05]));
        assert_eq!(ValueType::U16.encode("0x05dc"), Ok(vec![0xDC, 0x05]));
        assert_eq!(
            ValueType::I32.encode("-2"),
            Ok(vec![0xFE, 0xFF, 0xFF, 0xFF])
        );
        assert_eq!(ValueType::Hex.encode("0a 0B"), Ok(vec![0x0A, 0x0B]));
        assert_eq!(ValueType::String.encode("EL7041"), Ok(b"EL7041".to_vec()));
        assert_eq!(
            ValueType::F32.decode(&1.5f32.to_le_bytes()),
            Ok("1.5".into())
        );
        assert_eq!(ValueType::I16.decode(&[0xFF, 0xFF]), Ok("-1".into()));
        assert_eq!(ValueType::U16.decode(&[1, 0, 0, 0]), Ok("1".into()));
        assert_eq!(ValueType::String.decode(b"EL7041\0"), Ok("EL7041".into()));
        assert_eq!("UDINT".parse::<ValueType>(), Ok(ValueType::U32));
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(matches!(
            ValueType::U8.encode("256"),
            Err(ValueError::Parse { .. })
        ));
        assert!(ValueType::Hex.encode("abc").is_err());
        // Multi-byte characters once split a string slice mid-character (a panic).
        for hostile in ["aéa", "éé", "0x+1", "1 é", "ü"] {
            assert!(
                matches!(
                    ValueType::Hex.encode(hostile),
                    Err(ValueError::Parse { .. })
                ),
                "{hostile}"
            );
        }
        assert_eq!(
            ValueType::Hex.encode("0xDE:ad_be ef"),
            Ok(vec![0xDE, 0xAD, 0xBE, 0xEF])
        );
        assert!(ValueType::Bool.encode("maybe").is_err());
        assert_eq!(
            ValueType::U32.decode(&[1, 2]),
            Err(ValueError::Length {
                ty: ValueType::U32,
                len: 2,
                need: 4
            })
        );
        assert!(matches!(
            "u128".parse::<ValueType>(),
            Err(ValueError::UnknownType(_))
        ));
    }
}
