//! ESC register addresses and bit fields (ETG.1000.4 §6, register map in table 31 and
//! the per-register tables cited below).

/// ESC type, u8 (ETG.1000.4 §6.1.1, table 32).
pub const TYPE: u16 = 0x0000;
/// ESC revision, u8 (ETG.1000.4 table 32).
pub const REVISION: u16 = 0x0001;
/// ESC build, u16 (ETG.1000.4 table 32).
pub const BUILD: u16 = 0x0002;
/// Number of FMMUs supported, u8 (ETG.1000.4 table 32).
pub const FMMU_COUNT: u16 = 0x0004;
/// Number of SyncManagers supported, u8 (ETG.1000.4 table 32).
pub const SM_COUNT: u16 = 0x0005;
/// Process data RAM size in KiB, u8 (ETG.1000.4 table 32).
pub const RAM_SIZE: u16 = 0x0006;
/// Port descriptor, u8: two bits per port (ETG.1000.4 table 32).
pub const PORT_DESCRIPTOR: u16 = 0x0007;
/// ESC features supported, u16 (ETG.1000.4 table 32).
pub const FEATURES: u16 = 0x0008;

/// Bit fields of [`FEATURES`] (ETG.1000.4 table 32).
pub mod features {
    /// FMMU operation is bit-oriented (0) or byte-oriented (1).
    pub const FMMU_BYTE_ORIENTED: u16 = 1 << 0;
    /// Distributed clocks are supported.
    pub const DC_SUPPORTED: u16 = 1 << 2;
    /// DC system time is 64 bits wide (otherwise 32).
    pub const DC_64BIT: u16 = 1 << 3;
}

/// Configured station address, u16 (ETG.1000.4 §6.1.2, table 33).
pub const STATION_ADDRESS: u16 = 0x0010;
/// Configured station alias, u16, loaded from SII word 4 (ETG.1000.4 table 33).
pub const STATION_ALIAS: u16 = 0x0012;

/// DL control, u32 (ETG.1000.4 §6.1.4, table 35).
pub const DL_CONTROL: u16 = 0x0100;
/// DL status, u16 (ETG.1000.4 §6.1.5, table 36).
pub const DL_STATUS: u16 = 0x0110;

/// Bit fields of [`DL_STATUS`] (ETG.1000.4 table 36).
pub mod dl_status {
    /// The PDI is operational (the EEPROM was loaded).
    pub const PDI_OPERATIONAL: u16 = 1 << 0;
    /// Physical link on port `p` (0..=3).
    pub const fn link(port: u8) -> u16 {
        1 << (4 + port)
    }
    /// Port `p` is closed (looped back).
    pub const fn loop_closed(port: u8) -> u16 {
        1 << (8 + 2 * port)
    }
    /// Communication established (signal detected) on port `p`.
    pub const fn communication(port: u8) -> u16 {
        1 << (9 + 2 * port)
    }
}

/// AL control, u16 (ETG.1000.4 §6.1.6 / ETG.1000.6 table 9).
pub const AL_CONTROL: u16 = 0x0120;
/// AL status, u16 (ETG.1000.6 table 10).
pub const AL_STATUS: u16 = 0x0130;
/// AL status code, u16 (ETG.1000.6 table 11).
pub const AL_STATUS_CODE: u16 = 0x0134;

/// Bit fields of [`AL_CONTROL`] and [`AL_STATUS`] (ETG.1000.6 tables 9 and 10).
pub mod al {
    /// Mask of the state bits.
    pub const STATE_MASK: u16 = 0x000F;
    /// AL control: acknowledge the error indication. AL status: error indication.
    pub const ERROR: u16 = 1 << 4;
    /// AL control: request the device identification value in AL status code.
    pub const DEVICE_ID_REQUEST: u16 = 1 << 5;
}

/// PDI control, u8 (ETG.1000.4 table 31).
pub const PDI_CONTROL: u16 = 0x0140;

/// RX error counters: per port an invalid-frame counter (u8) and an RX-error counter
/// (u8), ports 0..3 at 0x0300..0x0307 (ETG.1000.4 §6.2, table 39).
pub const RX_ERROR_COUNTER: u16 = 0x0300;
/// Forwarded RX error counters, u8 per port at 0x0308..0x030B (ETG.1000.4 table 40).
pub const FORWARDED_RX_ERROR_COUNTER: u16 = 0x0308;
/// ECAT processing unit error counter, u8 (ETG.1000.4 table 41).
pub const PROCESSING_UNIT_ERROR_COUNTER: u16 = 0x030C;
/// PDI error counter, u8 (ETG.1000.4 table 42).
pub const PDI_ERROR_COUNTER: u16 = 0x030D;
/// Lost link counters, u8 per port at 0x0310..0x0313 (ETG.1000.4 table 43).
pub const LOST_LINK_COUNTER: u16 = 0x0310;
/// Length of the error counter block 0x0300..=0x0313.
pub const ERROR_COUNTERS_LEN: usize = 0x14;

/// Watchdog divider, u16, in units of 40 ns (ETG.1000.4 §6.3, table 44).
pub const WATCHDOG_DIVIDER: u16 = 0x0400;
/// PDI watchdog time, u16, in divider units (ETG.1000.4 table 45).
pub const WATCHDOG_TIME_PDI: u16 = 0x0410;
/// Process-data (SyncManager) watchdog time, u16, in divider units (ETG.1000.4 table 46).
pub const WATCHDOG_TIME_PROCESS_DATA: u16 = 0x0420;
/// Watchdog status process data, u16: bit 0 = 1 while the watchdog has not expired.
pub const WATCHDOG_STATUS: u16 = 0x0440;
/// Watchdog counter process data, u8.
pub const WATCHDOG_COUNTER_PROCESS_DATA: u16 = 0x0442;
/// Watchdog counter PDI, u8.
pub const WATCHDOG_COUNTER_PDI: u16 = 0x0443;
/// Base clock of the watchdog divider: 40 ns (ETG.1000.4 table 44).
pub const WATCHDOG_BASE_NS: u64 = 40;

/// SII (EEPROM) interface: configuration/access, u16 (ETG.1000.4 §6.4, table 47).
pub const SII_ACCESS: u16 = 0x0500;
/// SII control/status, u16 (ETG.1000.4 table 48).
pub const SII_CONTROL: u16 = 0x0502;
/// SII word address, u32 (ETG.1000.4 table 49).
pub const SII_ADDRESS: u16 = 0x0504;
/// SII data, 4 or 8 bytes (ETG.1000.4 table 50).
pub const SII_DATA: u16 = 0x0508;

/// First FMMU, 16 bytes each (ETG.1000.4 §6.6, table 57).
pub const FMMU_BASE: u16 = 0x0600;
/// Size of one FMMU register block.
pub const FMMU_LEN: u16 = 16;
/// First SyncManager, 8 bytes each (ETG.1000.4 §6.7, table 58).
pub const SM_BASE: u16 = 0x0800;
/// Size of one SyncManager register block.
pub const SM_LEN: u16 = 8;

/// DC receive time of port 0, u32; ports 1..3 follow at +4 each. A write to 0x0900
/// latches the receive times of the frame on every port (ETG.1000.4 §6.8.1, table 60).
pub const DC_RECEIVE_TIME_PORT0: u16 = 0x0900;
/// DC system time, u64 (ETG.1000.4 table 61). ARMW/FRMW on it distribute the
/// reference clock.
pub const DC_SYSTEM_TIME: u16 = 0x0910;
/// Local time at which port 0 received the latch frame, u64 (ETG.1000.4 table 62).
pub const DC_RECEIVE_TIME_PROCESSING_UNIT: u16 = 0x0918;
/// DC system time offset, u64 (ETG.1000.4 table 63).
pub const DC_SYSTEM_TIME_OFFSET: u16 = 0x0920;
/// DC system time transmission delay, u32 (ETG.1000.4 table 64).
pub const DC_SYSTEM_TIME_DELAY: u16 = 0x0928;
/// DC system time difference, u32, sign in bit 31 (ETG.1000.4 table 65).
pub const DC_SYSTEM_TIME_DIFFERENCE: u16 = 0x092C;
/// DC speed counter start, u16 (ETG.1000.4 table 66).
pub const DC_SPEED_COUNTER_START: u16 = 0x0930;
/// DC system time difference filter depth, u8 (ETG.1000.4 table 68).
pub const DC_TIME_FILTER_DEPTH: u16 = 0x0934;
/// DC speed counter filter depth, u8 (ETG.1000.4 table 69).
pub const DC_SPEED_FILTER_DEPTH: u16 = 0x0935;
/// DC cyclic unit control, u8 (ETG.1000.4 §6.8.3, table 70).
pub const DC_CYCLIC_UNIT_CONTROL: u16 = 0x0980;
/// DC activation, u8: bit 0 cyclic operation, bit 1 SYNC0, bit 2 SYNC1 (table 71).
pub const DC_ACTIVATION: u16 = 0x0981;
/// Length of the SYNC pulses in units of 10 ns, u16; 0: a SYNC signal stays active until
/// its status register (0x098E/0x098F) is read. Loaded by the ESC from SII word 0x0002
/// and read-only from EtherCAT (ETG.1000.4 §6.8.3).
pub const DC_SYNC_PULSE_LENGTH: u16 = 0x0982;
/// DC start time of cyclic operation, u64 (ETG.1000.4 table 75).
pub const DC_START_TIME: u16 = 0x0990;
/// DC SYNC0 cycle time in ns, u32 (ETG.1000.4 table 76).
pub const DC_SYNC0_CYCLE: u16 = 0x09A0;
/// DC SYNC1 cycle time in ns, u32 (ETG.1000.4 table 77).
pub const DC_SYNC1_CYCLE: u16 = 0x09A4;

/// Bit fields of [`DC_ACTIVATION`] (ETG.1000.4 table 71).
pub mod dc_activation {
    /// Cyclic operation enabled.
    pub const CYCLIC: u8 = 1 << 0;
    /// SYNC0 signal generation enabled.
    pub const SYNC0: u8 = 1 << 1;
    /// SYNC1 signal generation enabled.
    pub const SYNC1: u8 = 1 << 2;
}

/// Start of the process data RAM (ETG.1000.4 table 31).
pub const PROCESS_RAM: u16 = 0x1000;

/// A named register, for the CLI (`ferrocat reg read AL_STATUS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedRegister {
    /// The name, as used on the command line.
    pub name: &'static str,
    /// The address.
    pub address: u16,
    /// Its natural length in bytes.
    pub len: usize,
}

/// Registers that can be named on the command line.
pub const NAMED: &[NamedRegister] = &[
    NamedRegister {
        name: "TYPE",
        address: TYPE,
        len: 1,
    },
    NamedRegister {
        name: "REVISION",
        address: REVISION,
        len: 1,
    },
    NamedRegister {
        name: "BUILD",
        address: BUILD,
        len: 2,
    },
    NamedRegister {
        name: "FMMU_COUNT",
        address: FMMU_COUNT,
        len: 1,
    },
    NamedRegister {
        name: "SM_COUNT",
        address: SM_COUNT,
        len: 1,
    },
    NamedRegister {
        name: "RAM_SIZE",
        address: RAM_SIZE,
        len: 1,
    },
    NamedRegister {
        name: "PORT_DESCRIPTOR",
        address: PORT_DESCRIPTOR,
        len: 1,
    },
    NamedRegister {
        name: "FEATURES",
        address: FEATURES,
        len: 2,
    },
    NamedRegister {
        name: "STATION_ADDRESS",
        address: STATION_ADDRESS,
        len: 2,
    },
    NamedRegister {
        name: "STATION_ALIAS",
        address: STATION_ALIAS,
        len: 2,
    },
    NamedRegister {
        name: "DL_CONTROL",
        address: DL_CONTROL,
        len: 4,
    },
    NamedRegister {
        name: "DL_STATUS",
        address: DL_STATUS,
        len: 2,
    },
    NamedRegister {
        name: "AL_CONTROL",
        address: AL_CONTROL,
        len: 2,
    },
    NamedRegister {
        name: "AL_STATUS",
        address: AL_STATUS,
        len: 2,
    },
    NamedRegister {
        name: "AL_STATUS_CODE",
        address: AL_STATUS_CODE,
        len: 2,
    },
    NamedRegister {
        name: "PDI_CONTROL",
        address: PDI_CONTROL,
        len: 1,
    },
    NamedRegister {
        name: "WATCHDOG_DIVIDER",
        address: WATCHDOG_DIVIDER,
        len: 2,
    },
    NamedRegister {
        name: "WATCHDOG_TIME_PDI",
        address: WATCHDOG_TIME_PDI,
        len: 2,
    },
    NamedRegister {
        name: "WATCHDOG_TIME_PROCESS_DATA",
        address: WATCHDOG_TIME_PROCESS_DATA,
        len: 2,
    },
    NamedRegister {
        name: "SII_CONTROL",
        address: SII_CONTROL,
        len: 2,
    },
    NamedRegister {
        name: "DC_RECEIVE_TIME_PORT0",
        address: DC_RECEIVE_TIME_PORT0,
        len: 4,
    },
    NamedRegister {
        name: "DC_SYSTEM_TIME",
        address: DC_SYSTEM_TIME,
        len: 8,
    },
    NamedRegister {
        name: "DC_SYSTEM_TIME_OFFSET",
        address: DC_SYSTEM_TIME_OFFSET,
        len: 8,
    },
    NamedRegister {
        name: "DC_SYSTEM_TIME_DELAY",
        address: DC_SYSTEM_TIME_DELAY,
        len: 4,
    },
    NamedRegister {
        name: "DC_SYSTEM_TIME_DIFFERENCE",
        address: DC_SYSTEM_TIME_DIFFERENCE,
        len: 4,
    },
    NamedRegister {
        name: "DC_ACTIVATION",
        address: DC_ACTIVATION,
        len: 1,
    },
    NamedRegister {
        name: "DC_CYCLIC_UNIT_CONTROL",
        address: DC_CYCLIC_UNIT_CONTROL,
        len: 1,
    },
    NamedRegister {
        name: "DC_SYNC_PULSE_LENGTH",
        address: DC_SYNC_PULSE_LENGTH,
        len: 2,
    },
    NamedRegister {
        name: "DC_START_TIME",
        address: DC_START_TIME,
        len: 8,
    },
    NamedRegister {
        name: "DC_SYNC0_CYCLE",
        address: DC_SYNC0_CYCLE,
        len: 4,
    },
    NamedRegister {
        name: "DC_SYNC1_CYCLE",
        address: DC_SYNC1_CYCLE,
        len: 4,
    },
];

/// Look up a register by name (case-insensitive).
pub fn by_name(name: &str) -> Option<NamedRegister> {
    NAMED
        .iter()
        .copied()
        .find(|r| r.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dl_status_bits_follow_table_36() {
        assert_eq!(dl_status::link(0), 0x0010);
        assert_eq!(dl_status::link(3), 0x0080);
        assert_eq!(dl_status::loop_closed(1), 0x0400);
        assert_eq!(dl_status::communication(0), 0x0200);
        assert_eq!(dl_status::communication(3), 0x8000);
    }

    #[test]
    fn names_resolve() {
        assert_eq!(by_name("al_status").map(|r| r.address), Some(0x0130));
        assert_eq!(by_name("nonsense"), None);
    }
}
