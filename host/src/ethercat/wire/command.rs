//! EtherCAT datagram commands and their addressing modes (ETG.1000.4 table 7).

use core::fmt;

/// A datagram command (ETG.1000.4 §5.4, table 7: "EtherCAT command types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    /// No operation: terminals ignore the datagram.
    Nop = 0,
    /// Auto-increment physical read.
    Aprd = 1,
    /// Auto-increment physical write.
    Apwr = 2,
    /// Auto-increment physical read/write.
    Aprw = 3,
    /// Configured-address physical read.
    Fprd = 4,
    /// Configured-address physical write.
    Fpwr = 5,
    /// Configured-address physical read/write.
    Fprw = 6,
    /// Broadcast read.
    Brd = 7,
    /// Broadcast write.
    Bwr = 8,
    /// Broadcast read/write.
    Brw = 9,
    /// Logical memory read.
    Lrd = 10,
    /// Logical memory write.
    Lwr = 11,
    /// Logical memory read/write.
    Lrw = 12,
    /// Auto-increment physical read, multiple write.
    Armw = 13,
    /// Configured-address physical read, multiple write.
    Frmw = 14,
}

/// How a command addresses terminals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMode {
    /// No terminal processes the datagram.
    None,
    /// By position: ADP is a negative position, incremented by every terminal.
    AutoIncrement,
    /// By configured station address (ADP), register offset ADO.
    Configured,
    /// Every terminal, register offset ADO (ADP is incremented).
    Broadcast,
    /// A 32-bit logical address mapped through the FMMUs.
    Logical,
}

impl Command {
    /// All fifteen commands, in code order.
    pub const ALL: [Command; 15] = [
        Command::Nop,
        Command::Aprd,
        Command::Apwr,
        Command::Aprw,
        Command::Fprd,
        Command::Fpwr,
        Command::Fprw,
        Command::Brd,
        Command::Bwr,
        Command::Brw,
        Command::Lrd,
        Command::Lwr,
        Command::Lrw,
        Command::Armw,
        Command::Frmw,
    ];

    /// The command for a wire code, or `None` for a reserved code.
    pub fn from_code(code: u8) -> Option<Command> {
        Command::ALL.get(usize::from(code)).copied()
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The addressing mode of the command.
    pub fn address_mode(self) -> AddressMode {
        use Command::*;
        match self {
            Nop => AddressMode::None,
            Aprd | Apwr | Aprw | Armw => AddressMode::AutoIncrement,
            Fprd | Fpwr | Fprw | Frmw => AddressMode::Configured,
            Brd | Bwr | Brw => AddressMode::Broadcast,
            Lrd | Lwr | Lrw => AddressMode::Logical,
        }
    }

    /// Working-counter increment per terminal that processes the datagram successfully:
    /// 1 for a read or a write, 3 for a read/write that both reads and writes
    /// (ETG.1000.4 §5.4.3, working counter).
    pub fn wkc_per_terminal(self) -> u16 {
        use Command::*;
        match self {
            Nop => 0,
            Aprw | Fprw | Brw | Lrw => 3,
            _ => 1,
        }
    }

    /// Whether the datagram's data is overwritten with what the terminals hold.
    pub fn reads(self) -> bool {
        use Command::*;
        matches!(
            self,
            Aprd | Aprw | Fprd | Fprw | Brd | Brw | Lrd | Lrw | Armw | Frmw
        )
    }

    /// The mnemonic, as in the specification.
    pub fn mnemonic(self) -> &'static str {
        use Command::*;
        match self {
            Nop => "NOP",
            Aprd => "APRD",
            Apwr => "APWR",
            Aprw => "APRW",
            Fprd => "FPRD",
            Fpwr => "FPWR",
            Fprw => "FPRW",
            Brd => "BRD",
            Bwr => "BWR",
            Brw => "BRW",
            Lrd => "LRD",
            Lwr => "LWR",
            Lrw => "LRW",
            Armw => "ARMW",
            Frmw => "FRMW",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mnemonic())
    }
}

/// The address a datagram carries, interpreted by its command's addressing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address {
    /// No address (NOP): the raw 32-bit field.
    Raw(u32),
    /// Auto-increment position (0, -1, -2, ... on the wire) and register.
    Position {
        /// Position of the terminal on the bus, counted from 0.
        position: u16,
        /// ESC register (ADO).
        register: u16,
    },
    /// Configured station address and register.
    Station {
        /// Configured station address (ADP).
        station: u16,
        /// ESC register (ADO).
        register: u16,
    },
    /// Broadcast to a register.
    Broadcast {
        /// ESC register (ADO).
        register: u16,
    },
    /// Logical address.
    Logical(u32),
}

impl Address {
    /// The 32-bit address field as sent (ADP in the low 16 bits, ADO in the high 16 bits).
    pub fn to_raw(self) -> u32 {
        match self {
            Address::Raw(raw) | Address::Logical(raw) => raw,
            Address::Position { position, register } => {
                u32::from(position.wrapping_neg()) | (u32::from(register) << 16)
            }
            Address::Station { station, register } => {
                u32::from(station) | (u32::from(register) << 16)
            }
            Address::Broadcast { register } => u32::from(register) << 16,
        }
    }

    /// Interpret a raw 32-bit address field for `command` (as it was sent, i.e. before
    /// terminals incremented ADP).
    pub fn from_raw(command: Command, raw: u32) -> Address {
        let adp = raw as u16;
        let ado = (raw >> 16) as u16;
        match command.address_mode() {
            AddressMode::None => Address::Raw(raw),
            AddressMode::AutoIncrement => Address::Position {
                position: adp.wrapping_neg(),
                register: ado,
            },
            AddressMode::Configured => Address::Station {
                station: adp,
                register: ado,
            },
            AddressMode::Broadcast => Address::Broadcast { register: ado },
            AddressMode::Logical => Address::Logical(raw),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Address::Raw(raw) => write!(f, "0x{raw:08x}"),
            Address::Position { position, register } => {
                write!(f, "position {position} register 0x{register:04x}")
            }
            Address::Station { station, register } => {
                write!(f, "station 0x{station:04x} register 0x{register:04x}")
            }
            Address::Broadcast { register } => write!(f, "broadcast register 0x{register:04x}"),
            Address::Logical(addr) => write!(f, "logical 0x{addr:08x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_reserved_codes_are_none() {
        for c in Command::ALL {
            assert_eq!(Command::from_code(c.code()), Some(c));
        }
        assert_eq!(Command::from_code(15), None);
        assert_eq!(Command::from_code(0xff), None);
    }

    #[test]
    fn position_address_is_negated_on_the_wire() {
        let a = Address::Position {
            position: 2,
            register: 0x0010,
        };
        assert_eq!(a.to_raw(), 0x0010_fffe);
        assert_eq!(Address::from_raw(Command::Aprd, 0x0010_fffe), a);
        let s = Address::Station {
            station: 0x1001,
            register: 0x0130,
        };
        assert_eq!(s.to_raw(), 0x0130_1001);
        assert_eq!(Address::from_raw(Command::Fprd, s.to_raw()), s);
    }
}
