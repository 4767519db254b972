//! The decoded contents of SII categories (ETG.1000.6 §5.4, ETG.2010): general
//! information, FMMUs, SyncManagers, sync units, PDOs and distributed-clock modes.

use serde::Serialize;
use std::fmt;

/// Category types of the SII category list (ETG.1000.6 table 19, ETG.2010 table 2).
pub mod kind {
    /// Padding, no data.
    pub const NOP: u16 = 0;
    /// String repository.
    pub const STRINGS: u16 = 10;
    /// Data types (reserved for future use by the spec).
    pub const DATA_TYPES: u16 = 20;
    /// General information.
    pub const GENERAL: u16 = 30;
    /// FMMU usage.
    pub const FMMU: u16 = 40;
    /// SyncManager configuration.
    pub const SYNC_MANAGER: u16 = 41;
    /// FMMU extension (sync manager and sync unit of each FMMU).
    pub const FMMU_EX: u16 = 42;
    /// Sync units.
    pub const SYNC_UNIT: u16 = 43;
    /// TxPDO descriptions (inputs, terminal to master).
    pub const TX_PDO: u16 = 50;
    /// RxPDO descriptions (outputs, master to terminal).
    pub const RX_PDO: u16 = 51;
    /// Distributed-clock operation modes.
    pub const DC: u16 = 60;
    /// End of the category list.
    pub const END: u16 = 0xFFFF;

    /// Human-readable name of a category type.
    pub fn name(kind: u16) -> &'static str {
        match kind {
            NOP => "NOP",
            1..=9 => "device specific",
            STRINGS => "strings",
            DATA_TYPES => "data types",
            GENERAL => "general",
            FMMU => "FMMU",
            SYNC_MANAGER => "SyncManager",
            FMMU_EX => "FMMU extended",
            SYNC_UNIT => "sync unit",
            TX_PDO => "TxPDO",
            RX_PDO => "RxPDO",
            DC => "distributed clocks",
            0x0800..=0xFFFE => "vendor specific",
            END => "end",
            _ => "unknown",
        }
    }

    /// Whether a category type is one the spec defines (used to recognise a
    /// plausible category header when the list is damaged).
    pub fn is_known(kind: u16) -> bool {
        matches!(
            kind,
            STRINGS
                | DATA_TYPES
                | GENERAL
                | FMMU
                | SYNC_MANAGER
                | FMMU_EX
                | SYNC_UNIT
                | TX_PDO
                | RX_PDO
                | DC
        )
    }
}

/// Vendor id, product code, revision and serial number of a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Identity {
    /// EtherCAT vendor id (ETG-assigned).
    pub vendor_id: u32,
    /// Vendor's product code.
    pub product_code: u32,
    /// Revision number.
    pub revision: u32,
    /// Serial number (0 when the vendor does not record it).
    pub serial: u32,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vendor {:#010x} product {:#010x} revision {:#010x} serial {:#010x}",
            self.vendor_id, self.product_code, self.revision, self.serial
        )
    }
}

/// A mailbox area (offset and size in bytes) as recorded in the SII header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MailboxArea {
    /// ESC address of the area.
    pub offset: u16,
    /// Size of the area in bytes (0: not configured).
    pub size: u16,
}

/// Mailbox protocols a terminal supports (SII word 0x1C, ETG.1000.6 table 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MailboxProtocols(pub u16);

impl MailboxProtocols {
    /// ADS over EtherCAT.
    pub const AOE: u16 = 0x0001;
    /// Ethernet over EtherCAT.
    pub const EOE: u16 = 0x0002;
    /// CANopen over EtherCAT.
    pub const COE: u16 = 0x0004;
    /// File access over EtherCAT.
    pub const FOE: u16 = 0x0008;
    /// Servo drive profile over EtherCAT.
    pub const SOE: u16 = 0x0010;
    /// Vendor specific protocol over EtherCAT.
    pub const VOE: u16 = 0x0020;

    /// Whether CoE is supported.
    pub fn coe(self) -> bool {
        self.0 & Self::COE != 0
    }

    /// Names of the supported protocols.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Self::AOE, "AoE"),
            (Self::EOE, "EoE"),
            (Self::COE, "CoE"),
            (Self::FOE, "FoE"),
            (Self::SOE, "SoE"),
            (Self::VOE, "VoE"),
        ]
        .iter()
        .filter(|(bit, _)| self.0 & bit != 0)
        .map(|(_, n)| *n)
        .collect()
    }
}

/// The fixed header of the SII, words 0x00..0x3F (ETG.1000.6 table 16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiiHeader {
    /// Initial value of the PDI control register 0x0140.
    pub pdi_control: u16,
    /// Initial value of the PDI configuration register 0x0150.
    pub pdi_config: u16,
    /// SYNC impulse length in units of 10 ns.
    pub sync_impulse_len: u16,
    /// Initial value of the extended PDI configuration register 0x0152.
    pub pdi_config2: u16,
    /// Configured station alias (loaded into register 0x0012).
    pub station_alias: u16,
    /// Checksum byte stored in word 0x07.
    pub checksum: u8,
    /// Whether the stored checksum matches the CRC over words 0..6.
    pub checksum_ok: bool,
    /// Identity, words 0x08..0x0F.
    pub identity: Identity,
    /// Bootstrap receive mailbox (master to terminal), words 0x14..0x15.
    pub bootstrap_rx_mailbox: MailboxArea,
    /// Bootstrap send mailbox (terminal to master), words 0x16..0x17.
    pub bootstrap_tx_mailbox: MailboxArea,
    /// Standard receive mailbox (master to terminal), words 0x18..0x19.
    pub rx_mailbox: MailboxArea,
    /// Standard send mailbox (terminal to master), words 0x1A..0x1B.
    pub tx_mailbox: MailboxArea,
    /// Supported mailbox protocols, word 0x1C.
    pub mailbox_protocols: MailboxProtocols,
    /// EEPROM size in bytes, from word 0x3E ((value + 1) KiBit).
    pub eeprom_size_bytes: u32,
    /// SII version, word 0x3F.
    pub version: u16,
}

/// CoE details byte of the general category (ETG.2010 table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CoeDetails(pub u8);

impl CoeDetails {
    /// SDO transfers supported.
    pub fn sdo(self) -> bool {
        self.0 & 0x01 != 0
    }
    /// SDO information service supported.
    pub fn sdo_info(self) -> bool {
        self.0 & 0x02 != 0
    }
    /// PDO assignment can be written.
    pub fn pdo_assign(self) -> bool {
        self.0 & 0x04 != 0
    }
    /// PDO mapping can be written.
    pub fn pdo_config(self) -> bool {
        self.0 & 0x08 != 0
    }
    /// PDO configuration is uploaded at start-up.
    pub fn upload_at_startup(self) -> bool {
        self.0 & 0x10 != 0
    }
    /// SDO complete access supported.
    pub fn complete_access(self) -> bool {
        self.0 & 0x20 != 0
    }
}

/// The general category (type 30, ETG.2010 table 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct General {
    /// String index of the group type (0: none).
    pub group_index: u8,
    /// String index of the image name.
    pub image_index: u8,
    /// String index of the order number.
    pub order_index: u8,
    /// String index of the device name.
    pub name_index: u8,
    /// CoE capabilities.
    pub coe: CoeDetails,
    /// FoE details (bit 0: supported).
    pub foe: u8,
    /// EoE details (bit 0: supported).
    pub eoe: u8,
    /// Number of SoE channels.
    pub soe_channels: u8,
    /// Number of DS402 channels.
    pub ds402_channels: u8,
    /// Sysman class.
    pub sysman_class: u8,
    /// Flags: bit 0 enable SafeOp, bit 1 enable not-LRW, bit 2 mailbox data link
    /// layer, bit 3 identification via AL status code, bit 4 identification via PHY memory.
    pub flags: u8,
    /// Current consumption from the E-bus in mA (negative: feeds current).
    pub ebus_current_ma: i16,
    /// Physical port types, one nibble per port (0 none, 1 MII, 2 reserved, 3 EBUS, 4 fast hot connect).
    pub physical_ports: u16,
    /// Physical memory address for identification.
    pub physical_memory_address: u16,
}

impl General {
    /// Size of the category in bytes.
    pub const LEN: usize = 32;

    /// Whether the terminal can skip LRW (flag bit 1).
    pub fn not_lrw(&self) -> bool {
        self.flags & 0x02 != 0
    }
}

/// Use of one FMMU (FMMU category, ETG.2010 table 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FmmuUsage {
    /// Not used (0x00 or 0xFF).
    Unused,
    /// Maps outputs.
    Outputs,
    /// Maps inputs.
    Inputs,
    /// Maps the mailbox status (SyncManager status) of SM1.
    MailboxState,
    /// A value the spec does not define.
    Other(u8),
}

impl From<u8> for FmmuUsage {
    fn from(v: u8) -> Self {
        match v {
            0x00 | 0xFF => FmmuUsage::Unused,
            0x01 => FmmuUsage::Outputs,
            0x02 => FmmuUsage::Inputs,
            0x03 => FmmuUsage::MailboxState,
            other => FmmuUsage::Other(other),
        }
    }
}

/// The function of a SyncManager (SyncManager category byte 7, ETG.2010 table 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SmType {
    /// Not used or unknown.
    Unused,
    /// Mailbox out (master to terminal, normally SM0).
    MailboxOut,
    /// Mailbox in (terminal to master, normally SM1).
    MailboxIn,
    /// Process data outputs (master to terminal).
    ProcessDataOut,
    /// Process data inputs (terminal to master).
    ProcessDataIn,
    /// A value the spec does not define.
    Other(u8),
}

impl From<u8> for SmType {
    fn from(v: u8) -> Self {
        match v {
            0 => SmType::Unused,
            1 => SmType::MailboxOut,
            2 => SmType::MailboxIn,
            3 => SmType::ProcessDataOut,
            4 => SmType::ProcessDataIn,
            other => SmType::Other(other),
        }
    }
}

impl SmType {
    /// The value used in CoE object 0x1C00 and in the SII.
    pub fn code(self) -> u8 {
        match self {
            SmType::Unused => 0,
            SmType::MailboxOut => 1,
            SmType::MailboxIn => 2,
            SmType::ProcessDataOut => 3,
            SmType::ProcessDataIn => 4,
            SmType::Other(v) => v,
        }
    }
}

/// One SyncManager as the SII describes it (8 bytes, ETG.2010 table 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SiiSyncManager {
    /// Physical start address in the ESC memory.
    pub start: u16,
    /// Length in bytes (0 for process data: computed from the PDOs).
    pub length: u16,
    /// Control register value (register 0x0804 + 8n).
    pub control: u8,
    /// Status byte (not used by the master).
    pub status: u8,
    /// Enable byte: bit 0 enable, bit 1 fixed content, bit 2 virtual, bit 3 only in OP.
    pub enable: u8,
    /// What the SyncManager is used for.
    pub kind: SmType,
}

impl SiiSyncManager {
    /// Size of one entry in bytes.
    pub const LEN: usize = 8;

    /// Whether the enable bit is set.
    pub fn enabled(&self) -> bool {
        self.enable & 0x01 != 0
    }
}

/// One FMMU-extended entry (category 42, 4 bytes per FMMU).
///
/// ETG.2010 assigns each FMMU the SyncManager it maps and an optional sync unit; the
/// layout used here is the one of the EL2262 image in the test data (bytes 0..1
/// reserved, byte 2 SyncManager, byte 3 sync unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FmmuEx {
    /// Reserved word as stored.
    pub reserved: u16,
    /// SyncManager index this FMMU maps.
    pub sync_manager: u8,
    /// Sync unit index.
    pub sync_unit: u8,
}

impl FmmuEx {
    /// Size of one entry in bytes.
    pub const LEN: usize = 4;
}

/// One sync-unit entry (category 43, one word per sync unit), kept as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SyncUnit(pub u16);

/// Whether a PDO is received or transmitted by the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum PdoDirection {
    /// RxPDO: outputs, written by the master.
    Rx,
    /// TxPDO: inputs, read by the master.
    Tx,
}

/// One entry of a PDO in the SII (8 bytes, ETG.2010 table 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SiiPdoEntry {
    /// Object index of the mapped object (0 for a gap).
    pub index: u16,
    /// Subindex of the mapped object.
    pub subindex: u8,
    /// String index of the entry's name.
    pub name_index: u8,
    /// Data type code (ETG.1000.6 table 64 / CiA 301).
    pub data_type: u8,
    /// Length in bits.
    pub bit_len: u8,
    /// Flags (reserved).
    pub flags: u16,
}

impl SiiPdoEntry {
    /// Size of one entry in bytes.
    pub const LEN: usize = 8;
}

/// One PDO in the SII (8-byte header + entries, ETG.2010 table 8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiiPdo {
    /// Rx (outputs) or Tx (inputs).
    pub direction: PdoDirection,
    /// PDO index (0x16xx for RxPDOs, 0x1Axx for TxPDOs).
    pub index: u16,
    /// SyncManager the PDO is assigned to by default (0xFF: not assigned).
    pub sync_manager: u8,
    /// DC sync mode reference.
    pub dc_sync: u8,
    /// String index of the PDO's name.
    pub name_index: u8,
    /// PDO flags (ETG.2010: bit 0 mandatory, bit 1 default, bit 4 fixed content, ...).
    pub flags: u16,
    /// The mapped entries in order.
    pub entries: Vec<SiiPdoEntry>,
}

impl SiiPdo {
    /// Size of the PDO header in bytes.
    pub const HEADER_LEN: usize = 8;

    /// Whether the PDO is assigned to a SyncManager in the SII.
    pub fn assigned(&self) -> bool {
        self.sync_manager != 0xFF
    }

    /// Sum of the entries' bit lengths.
    pub fn bit_len(&self) -> u32 {
        self.entries.iter().map(|e| u32::from(e.bit_len)).sum()
    }
}

/// One distributed-clock operation mode (24 bytes, ETG.2010 table 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DcMode {
    /// SYNC0 cycle time in ns (0: the master's cycle time).
    pub cycle_time_0: u32,
    /// SYNC0 shift time in ns (may be negative).
    pub shift_time_0: i32,
    /// SYNC1 shift time in ns (may be negative).
    pub shift_time_1: i32,
    /// SYNC1 cycle time factor.
    pub sync1_cycle_factor: i16,
    /// Value for register 0x0980 (sync activation), little-endian.
    pub assign_activate: u16,
    /// SYNC0 cycle time factor.
    pub sync0_cycle_factor: i16,
    /// String index of the mode's name.
    pub name_index: u8,
    /// String index of the mode's description.
    pub description_index: u8,
}

impl DcMode {
    /// Size of one entry in bytes.
    pub const LEN: usize = 24;
}

/// Where a category sits in the image, for listings and raw dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CategoryInfo {
    /// Category type.
    pub kind: u16,
    /// Word address of the category header.
    pub word_offset: usize,
    /// Declared data size in words.
    pub size_words: u16,
    /// Data words actually present in the image.
    pub present_words: usize,
}

/// A category ferrocat does not decode (device or vendor specific, data types), kept raw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawCategory {
    /// Category type.
    pub kind: u16,
    /// The category's data bytes.
    pub data: Vec<u8>,
}
