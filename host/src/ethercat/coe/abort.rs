//! SDO abort codes and their meaning (CiA 301 §7.2.4.3.17, ETG.1000.6 table 41).

use std::fmt;

/// An SDO abort code as sent in an abort transfer request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbortCode(pub u32);

/// Every abort code CiA 301 and ETG.1000.6 define, with the spec's text.
pub const ABORT_CODES: &[(u32, &str)] = &[
    (0x0503_0000, "Toggle bit not changed"),
    (0x0504_0000, "SDO protocol timeout"),
    (
        0x0504_0001,
        "Client/Server command specifier not valid or unknown",
    ),
    (0x0504_0002, "Invalid block size (block mode only)"),
    (0x0504_0003, "Invalid sequence number (block mode only)"),
    (0x0504_0004, "CRC error (block mode only)"),
    (0x0504_0005, "Out of memory"),
    (0x0601_0000, "Unsupported access to an object"),
    (0x0601_0001, "Attempt to read a write only object"),
    (0x0601_0002, "Attempt to write a read only object"),
    (
        0x0601_0003,
        "Subindex cannot be written, SI0 must be 0 for write access",
    ),
    (
        0x0601_0004,
        "SDO Complete access not supported for objects of variable length such as ENUM object types",
    ),
    (0x0601_0005, "Object length exceeds mailbox size"),
    (0x0601_0006, "Object mapped to RxPDO, SDO Download blocked"),
    (
        0x0602_0000,
        "The object does not exist in the object directory",
    ),
    (0x0604_0041, "The object can not be mapped into the PDO"),
    (
        0x0604_0042,
        "The number and length of the objects to be mapped would exceed the PDO length",
    ),
    (0x0604_0043, "General parameter incompatibility reason"),
    (
        0x0604_0047,
        "General internal incompatibility in the device",
    ),
    (0x0606_0000, "Access failed due to a hardware error"),
    (
        0x0607_0010,
        "Data type does not match, length of service parameter does not match",
    ),
    (
        0x0607_0012,
        "Data type does not match, length of service parameter too high",
    ),
    (
        0x0607_0013,
        "Data type does not match, length of service parameter too low",
    ),
    (0x0609_0011, "Subindex does not exist"),
    (
        0x0609_0030,
        "Value range of parameter exceeded (only for write access)",
    ),
    (0x0609_0031, "Value of parameter written too high"),
    (0x0609_0032, "Value of parameter written too low"),
    (0x0609_0036, "Maximum value is less than minimum value"),
    (0x060A_0023, "Resource not available: SDO connection"),
    (0x0800_0000, "General error"),
    (
        0x0800_0020,
        "Data cannot be transferred or stored to the application",
    ),
    (
        0x0800_0021,
        "Data cannot be transferred or stored to the application because of local control",
    ),
    (
        0x0800_0022,
        "Data cannot be transferred or stored to the application because of the present device state",
    ),
    (
        0x0800_0023,
        "Object dictionary dynamic generation fails or no object dictionary is present",
    ),
    (0x0800_0024, "No data available"),
];

impl AbortCode {
    /// Toggle bit not changed.
    pub const TOGGLE_BIT: AbortCode = AbortCode(0x0503_0000);
    /// SDO protocol timeout.
    pub const TIMEOUT: AbortCode = AbortCode(0x0504_0000);
    /// Command specifier not valid or unknown.
    pub const INVALID_COMMAND: AbortCode = AbortCode(0x0504_0001);
    /// Out of memory.
    pub const OUT_OF_MEMORY: AbortCode = AbortCode(0x0504_0005);
    /// The object does not exist.
    pub const NO_OBJECT: AbortCode = AbortCode(0x0602_0000);
    /// Length of service parameter does not match.
    pub const LENGTH_MISMATCH: AbortCode = AbortCode(0x0607_0010);
    /// Subindex does not exist.
    pub const NO_SUBINDEX: AbortCode = AbortCode(0x0609_0011);
    /// General error.
    pub const GENERAL: AbortCode = AbortCode(0x0800_0000);

    /// The spec's text for this code, or `None` for codes it does not define.
    pub fn description(self) -> Option<&'static str> {
        ABORT_CODES
            .iter()
            .find(|(c, _)| *c == self.0)
            .map(|(_, t)| *t)
    }
}

impl fmt::Display for AbortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(t) => write!(f, "{:#010x} ({t})", self.0),
            None => write!(f, "{:#010x} (unknown abort code)", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_codes() {
        assert_eq!(
            AbortCode(0x0602_0000).to_string(),
            "0x06020000 (The object does not exist in the object directory)"
        );
        assert_eq!(
            AbortCode(0x0609_0011).description(),
            Some("Subindex does not exist")
        );
        assert_eq!(
            AbortCode(0x1234_5678).to_string(),
            "0x12345678 (unknown abort code)"
        );
    }

    #[test]
    fn table_has_no_duplicates() {
        let mut codes: Vec<u32> = ABORT_CODES.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ABORT_CODES.len());
    }
}
