//! SDO abort codes a CoE server answers with (ETG.1000.6 table 41, taken over from CiA 301).

use std::fmt;

/// An SDO abort code, as carried in the last four bytes of an abort transfer request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbortCode(pub u32);

impl AbortCode {
    /// Toggle bit not changed. ETG.1000.6 table 41.
    pub const TOGGLE_BIT: Self = Self(0x0503_0000);
    /// SDO protocol timeout. ETG.1000.6 table 41.
    pub const TIMEOUT: Self = Self(0x0504_0000);
    /// Client/server command specifier not valid or unknown. ETG.1000.6 table 41.
    pub const COMMAND_SPECIFIER: Self = Self(0x0504_0001);
    /// Out of memory. ETG.1000.6 table 41.
    pub const OUT_OF_MEMORY: Self = Self(0x0504_0005);
    /// Unsupported access to an object. ETG.1000.6 table 41.
    pub const UNSUPPORTED_ACCESS: Self = Self(0x0601_0000);
    /// Attempt to read a write-only object. ETG.1000.6 table 41.
    pub const WRITE_ONLY: Self = Self(0x0601_0001);
    /// Attempt to write a read-only object. ETG.1000.6 table 41.
    pub const READ_ONLY: Self = Self(0x0601_0002);
    /// Subindex cannot be written, subindex 0 must be 0 for write access. ETG.1000.6 table 41.
    pub const SUBINDEX0_MUST_BE_ZERO: Self = Self(0x0601_0003);
    /// Complete access not supported for objects of variable length. ETG.1000.6 table 41.
    pub const COMPLETE_ACCESS_UNSUPPORTED: Self = Self(0x0601_0004);
    /// Object length exceeds the mailbox size. ETG.1000.6 table 41.
    pub const EXCEEDS_MAILBOX: Self = Self(0x0601_0005);
    /// Object mapped to an RxPDO, SDO download blocked. ETG.1000.6 table 41.
    pub const MAPPED_TO_RXPDO: Self = Self(0x0601_0006);
    /// The object does not exist in the object dictionary. ETG.1000.6 table 41.
    pub const OBJECT_DOES_NOT_EXIST: Self = Self(0x0602_0000);
    /// The object cannot be mapped into the PDO. ETG.1000.6 table 41.
    pub const CANNOT_BE_MAPPED: Self = Self(0x0604_0041);
    /// The number and length of the objects to be mapped would exceed the PDO length. ETG.1000.6 table 41.
    pub const PDO_LENGTH_EXCEEDED: Self = Self(0x0604_0042);
    /// General parameter incompatibility. ETG.1000.6 table 41.
    pub const PARAMETER_INCOMPATIBLE: Self = Self(0x0604_0043);
    /// Data type does not match, length of service parameter does not match. ETG.1000.6 table 41.
    pub const LENGTH_MISMATCH: Self = Self(0x0607_0010);
    /// Data type does not match, length of service parameter too high. ETG.1000.6 table 41.
    pub const LENGTH_TOO_HIGH: Self = Self(0x0607_0012);
    /// Data type does not match, length of service parameter too low. ETG.1000.6 table 41.
    pub const LENGTH_TOO_LOW: Self = Self(0x0607_0013);
    /// Subindex does not exist. ETG.1000.6 table 41.
    pub const SUBINDEX_DOES_NOT_EXIST: Self = Self(0x0609_0011);
    /// Value range of parameter exceeded (only for write access). ETG.1000.6 table 41.
    pub const VALUE_RANGE: Self = Self(0x0609_0030);
    /// General error. ETG.1000.6 table 41.
    pub const GENERAL: Self = Self(0x0800_0000);
    /// Data cannot be transferred or stored to the application. ETG.1000.6 table 41.
    pub const CANNOT_TRANSFER: Self = Self(0x0800_0020);
    /// Data cannot be transferred because of the present device state. ETG.1000.6 table 41.
    pub const DEVICE_STATE: Self = Self(0x0800_0022);

    /// A short description of the code, as the specification words it.
    pub fn description(self) -> &'static str {
        match self {
            Self::TOGGLE_BIT => "toggle bit not changed",
            Self::TIMEOUT => "SDO protocol timeout",
            Self::COMMAND_SPECIFIER => "client/server command specifier not valid or unknown",
            Self::OUT_OF_MEMORY => "out of memory",
            Self::UNSUPPORTED_ACCESS => "unsupported access to an object",
            Self::WRITE_ONLY => "attempt to read a write-only object",
            Self::READ_ONLY => "attempt to write a read-only object",
            Self::SUBINDEX0_MUST_BE_ZERO => "subindex cannot be written, subindex 0 must be 0",
            Self::COMPLETE_ACCESS_UNSUPPORTED => "complete access not supported",
            Self::EXCEEDS_MAILBOX => "object length exceeds mailbox size",
            Self::MAPPED_TO_RXPDO => "object mapped to RxPDO, SDO download blocked",
            Self::OBJECT_DOES_NOT_EXIST => "object does not exist in the object dictionary",
            Self::CANNOT_BE_MAPPED => "object cannot be mapped to the PDO",
            Self::PDO_LENGTH_EXCEEDED => "mapped objects would exceed the PDO length",
            Self::PARAMETER_INCOMPATIBLE => "general parameter incompatibility",
            Self::LENGTH_MISMATCH => "length of service parameter does not match",
            Self::LENGTH_TOO_HIGH => "length of service parameter too high",
            Self::LENGTH_TOO_LOW => "length of service parameter too low",
            Self::SUBINDEX_DOES_NOT_EXIST => "subindex does not exist",
            Self::VALUE_RANGE => "value range of parameter exceeded",
            Self::GENERAL => "general error",
            Self::CANNOT_TRANSFER => "data cannot be transferred or stored to the application",
            Self::DEVICE_STATE => "data cannot be transferred because of the present device state",
            _ => "unknown abort code",
        }
    }
}

impl fmt::Display for AbortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SDO abort {:#010x} ({})", self.0, self.description())
    }
}
