//! CoE emergency messages (ETG.1000.6 §5.6.4 table 50) and the meaning of their CiA 301
//! error codes (CiA 301 table 21, ETG.1000.6 for the EtherCAT-specific ones).

use super::sdo::{COE_HEADER_LEN, DecodeError, coe_header, service};
use serde::Serialize;
use std::fmt;

/// An emergency message a terminal sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Emergency {
    /// Station address of the terminal that sent it.
    pub station: u16,
    /// CiA 301 error code.
    pub error_code: u16,
    /// Error register (object 0x1001).
    pub error_register: u8,
    /// Manufacturer-specific data.
    pub data: [u8; 5],
}

impl Emergency {
    /// Length of the emergency body after the CoE header.
    pub const BODY_LEN: usize = 8;

    /// Decodes the body of an emergency (after the CoE header).
    pub fn decode_body(station: u16, body: &[u8]) -> Result<Emergency, DecodeError> {
        match body {
            [c0, c1, reg, d @ ..] if d.len() >= 5 => Ok(Emergency {
                station,
                error_code: u16::from_le_bytes([*c0, *c1]),
                error_register: *reg,
                data: [d[0], d[1], d[2], d[3], d[4]],
            }),
            _ => Err(DecodeError::TooShort {
                len: body.len(),
                need: Self::BODY_LEN,
                what: "emergency",
            }),
        }
    }

    /// The CoE message of this emergency.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = coe_header(service::EMERGENCY).to_vec();
        v.extend_from_slice(&self.error_code.to_le_bytes());
        v.push(self.error_register);
        v.extend_from_slice(&self.data);
        debug_assert_eq!(v.len(), COE_HEADER_LEN + Self::BODY_LEN);
        v
    }

    /// The meaning of the error code.
    pub fn description(&self) -> &'static str {
        error_code_text(self.error_code)
    }
}

impl fmt::Display for Emergency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "emergency from terminal {:#06x}: error code {:#06x} ({}), error register {:#04x}, data {:02x?}",
            self.station,
            self.error_code,
            self.description(),
            self.error_register,
            self.data
        )
    }
}

/// The text of a CiA 301 emergency error code: the exact code if known, else its class.
pub fn error_code_text(code: u16) -> &'static str {
    const EXACT: &[(u16, &str)] = &[
        (0x0000, "error reset or no error"),
        (0x1000, "generic error"),
        (0x8110, "CAN overrun (objects lost)"),
        (0x8120, "CAN in error passive mode"),
        (0x8130, "life guard error or heartbeat error"),
        (0x8140, "recovered from bus off"),
        (0x8150, "CAN-ID collision"),
        (0x8210, "PDO not processed due to length error"),
        (0x8220, "PDO length exceeded"),
        (
            0x8230,
            "DAM MPDO not processed, destination object not available",
        ),
        (0x8240, "unexpected SYNC data length"),
        (0x8250, "RPDO timeout"),
        (0x8700, "sync controller error"),
        (
            0xA000,
            "EtherCAT state machine: transition PRE-OP to SAFE-OP failed",
        ),
        (
            0xA001,
            "EtherCAT state machine: transition SAFE-OP to OP failed",
        ),
    ];
    if let Some((_, t)) = EXACT.iter().find(|(c, _)| *c == code) {
        return t;
    }
    const CLASSES: &[(u16, u16, &str)] = &[
        (0xFF00, 0x2100, "current, device input side"),
        (0xFF00, 0x2200, "current inside the device"),
        (0xFF00, 0x2300, "current, device output side"),
        (0xF000, 0x2000, "current"),
        (0xFF00, 0x3100, "mains voltage"),
        (0xFF00, 0x3200, "voltage inside the device"),
        (0xFF00, 0x3300, "output voltage"),
        (0xF000, 0x3000, "voltage"),
        (0xFF00, 0x4100, "ambient temperature"),
        (0xFF00, 0x4200, "device temperature"),
        (0xF000, 0x4000, "temperature"),
        (0xF000, 0x5000, "device hardware"),
        (0xFF00, 0x6100, "internal software"),
        (0xFF00, 0x6200, "user software"),
        (0xFF00, 0x6300, "data set"),
        (0xF000, 0x6000, "device software"),
        (0xF000, 0x7000, "additional modules"),
        (0xFF00, 0x8100, "communication"),
        (0xFF00, 0x8200, "protocol error"),
        (0xF000, 0x8000, "monitoring"),
        (0xF000, 0x9000, "external error"),
        (0xF000, 0xA000, "EtherCAT state machine"),
        (0xFF00, 0xFF00, "device specific"),
        (0xF000, 0xF000, "additional functions"),
        (0xF000, 0x1000, "generic error"),
    ];
    CLASSES
        .iter()
        .find(|(mask, class, _)| code & mask == *class)
        .map_or("unknown error code", |(_, _, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethercat::coe::sdo::parse_coe_header;

    #[test]
    fn round_trip_and_text() {
        let e = Emergency {
            station: 0x1003,
            error_code: 0xA000,
            error_register: 0x01,
            data: [1, 2, 3, 4, 5],
        };
        let b = e.encode();
        let (svc, body) = parse_coe_header(&b).expect("header");
        assert_eq!(svc, service::EMERGENCY);
        assert_eq!(Emergency::decode_body(0x1003, body), Ok(e));
        assert!(
            e.to_string()
                .contains("transition PRE-OP to SAFE-OP failed")
        );
        assert_eq!(error_code_text(0x4210), "device temperature");
        assert_eq!(error_code_text(0xFF42), "device specific");
        assert!(Emergency::decode_body(1, &[1, 2, 3]).is_err());
    }
}
