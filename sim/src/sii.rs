//! Reading the SII EEPROM image a simulated terminal is built from.
//!
//! Layout (ETG.1000.6 5.4, ETG.2010): little-endian 16-bit words from address 0; words
//! 0x00..0x3F are a fixed header (identity, mailbox sizes, protocols), categories
//! follow from word 0x40, each `type: u16, size in words: u16, data`, until type 0xFFFF.
//! Images recorded from real terminals are often truncated after the last category
//! (no 0xFFFF): the end of the file then ends the category list.

use std::fmt;
use std::path::Path;

/// Word address of the first category, ETG.2010 table 2.
pub const FIRST_CATEGORY_WORD: usize = 0x40;

/// Category types, ETG.2010 table 3.
pub mod category {
    /// No operation (skipped).
    pub const NOP: u16 = 0;
    /// String repository.
    pub const STRINGS: u16 = 10;
    /// Data types.
    pub const DATA_TYPES: u16 = 20;
    /// General information.
    pub const GENERAL: u16 = 30;
    /// FMMU usage.
    pub const FMMU: u16 = 40;
    /// SyncManager configuration.
    pub const SYNC_MANAGER: u16 = 41;
    /// FMMU extended.
    pub const FMMU_EXTENDED: u16 = 42;
    /// Sync units.
    pub const SYNC_UNIT: u16 = 43;
    /// TxPDO description (inputs).
    pub const TXPDO: u16 = 50;
    /// RxPDO description (outputs).
    pub const RXPDO: u16 = 51;
    /// Distributed clock operation modes.
    pub const DC: u16 = 60;
    /// End of the category list.
    pub const END: u16 = 0xFFFF;
}

/// Mailbox protocol bits of header word 0x1C, ETG.2010 table 2.
pub mod mailbox_protocol {
    /// ADS over EtherCAT.
    pub const AOE: u16 = 0x0001;
    /// Ethernet over EtherCAT.
    pub const EOE: u16 = 0x0002;
    /// CANopen over EtherCAT.
    pub const COE: u16 = 0x0004;
    /// File access over EtherCAT.
    pub const FOE: u16 = 0x0008;
    /// Servo profile over EtherCAT.
    pub const SOE: u16 = 0x0010;
    /// Vendor specific over EtherCAT.
    pub const VOE: u16 = 0x0020;
}

/// Why an image cannot describe a terminal.
#[derive(Debug, thiserror::Error)]
pub enum SiiError {
    /// The file could not be read.
    #[error("cannot read EEPROM image {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The image is shorter than the 128-byte header.
    #[error("EEPROM image of {len} bytes is shorter than the 128-byte SII header")]
    TooShort {
        /// Length of the image in bytes.
        len: usize,
    },
    /// The image is erased: no category that describes a device (no strings, general,
    /// SyncManager, FMMU or PDO category). Use [`Sii::parse_allow_blank`] to emulate such a
    /// terminal anyway.
    #[error("EEPROM image is blank: no category describes a device (erased EEPROM)")]
    Blank,
}

/// A mailbox's location in ESC memory, from the SII header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxArea {
    /// Physical start address.
    pub offset: u16,
    /// Size in bytes.
    pub size: u16,
}

/// The General category (type 30), ETG.2010 table 5.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct General {
    /// Group name (string).
    pub group: Option<String>,
    /// Image name (string).
    pub image: Option<String>,
    /// Order number (string), e.g. "EL2004".
    pub order: Option<String>,
    /// Device name (string).
    pub name: Option<String>,
    /// CoE details: bit 0 SDO, 1 SDO information, 2 PDO assign, 3 PDO configuration,
    /// 4 upload at startup, 5 SDO complete access.
    pub coe_details: u8,
    /// FoE details (bit 0 = supported).
    pub foe_details: u8,
    /// EoE details (bit 0 = supported).
    pub eoe_details: u8,
    /// Flags: bit 0 enable SAFEOP, 1 enable not LRW, 2 mailbox data link layer, 3
    /// identity in 0x0134 (ID selector), 4 ID selector mirrored in 0x0134.
    pub flags: u8,
    /// Current consumption on E-Bus in mA (negative = feeds current).
    pub ebus_current_ma: i16,
    /// Physical port types (4 bits per port: 0 none, 1 MII, 2 reserved, 3 EBUS).
    pub physical_ports: u16,
}

/// Bits of [`General::coe_details`], ETG.2010 table 5.
pub mod coe_details {
    /// SDO supported.
    pub const SDO: u8 = 0x01;
    /// SDO information supported.
    pub const SDO_INFO: u8 = 0x02;
    /// PDO assignment writable.
    pub const PDO_ASSIGN: u8 = 0x04;
    /// PDO mapping writable.
    pub const PDO_CONFIG: u8 = 0x08;
    /// Upload at startup.
    pub const UPLOAD_AT_STARTUP: u8 = 0x10;
    /// SDO complete access.
    pub const COMPLETE_ACCESS: u8 = 0x20;
}

/// What the SII says an FMMU is for (FMMU category, ETG.2010 table 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FmmuUsage {
    /// Not used (0x00 or 0xFF).
    Unused,
    /// Outputs (0x01).
    Outputs,
    /// Inputs (0x02).
    Inputs,
    /// SyncManager status / mailbox state (0x03).
    SyncManagerStatus,
    /// Any other value.
    Other(u8),
}

/// The type of a SyncManager in the SII (SyncManager category byte 7, ETG.2010 table 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmType {
    /// Not used (0).
    Unused,
    /// Mailbox out, master → terminal (1).
    MailboxOut,
    /// Mailbox in, terminal → master (2).
    MailboxIn,
    /// Process data outputs (3).
    ProcessDataOutputs,
    /// Process data inputs (4).
    ProcessDataInputs,
    /// Any other value.
    Other(u8),
}

/// One SyncManager entry of the SyncManager category (8 bytes), ETG.2010 table 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiiSyncManager {
    /// Physical start address.
    pub start: u16,
    /// Default length in bytes.
    pub length: u16,
    /// Control register value.
    pub control: u8,
    /// Enable byte (bit 0 enable, bit 1 fixed content, bit 2 virtual, bit 3 OP only).
    pub enable: u8,
    /// The SM's use.
    pub sm_type: SmType,
}

/// One entry of a PDO (8 bytes), ETG.2010 table 11.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdoEntry {
    /// Object index (0 for padding).
    pub index: u16,
    /// Subindex.
    pub subindex: u8,
    /// Name (string).
    pub name: Option<String>,
    /// Data type index.
    pub data_type: u8,
    /// Length in bits.
    pub bit_length: u8,
}

/// A PDO from a TxPDO or RxPDO category, ETG.2010 table 10.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdo {
    /// PDO index (0x16xx RxPDO, 0x1Axx TxPDO).
    pub index: u16,
    /// SyncManager the PDO is assigned to by default; `None` (0xFF) if not assigned.
    pub sync_manager: Option<u8>,
    /// DC sync unit.
    pub sync_unit: u8,
    /// Name (string).
    pub name: Option<String>,
    /// Flags (bit 0 mandatory, 1 default, 4 fixed content, …).
    pub flags: u16,
    /// Entries.
    pub entries: Vec<PdoEntry>,
}

impl Pdo {
    /// Sum of the entries' bit lengths.
    pub fn bit_length(&self) -> u32 {
        self.entries.iter().map(|e| u32::from(e.bit_length)).sum()
    }
}

/// A DC operation mode (24 bytes), ETG.2010 table 13.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DcMode {
    /// SYNC0 cycle time (ns, 0 = from the master).
    pub cycle_time_sync0: u32,
    /// SYNC0 shift time (ns).
    pub shift_time_sync0: u32,
    /// SYNC1 shift time (ns).
    pub shift_time_sync1: u32,
    /// SYNC1 cycle factor.
    pub sync1_cycle_factor: i16,
    /// Value for register 0x0980 (assign activate).
    pub assign_activate: u16,
    /// SYNC0 cycle factor.
    pub sync0_cycle_factor: i16,
    /// Name (string).
    pub name: Option<String>,
}

/// One category as found in the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CategoryInfo {
    /// Category type ([`category`]).
    pub kind: u16,
    /// Word address of the category's data.
    pub word_address: usize,
    /// Declared size in words.
    pub words: u16,
    /// Whether the image ended before the declared size.
    pub truncated: bool,
}

/// A parsed SII EEPROM image. The raw image is kept: the ESC's EEPROM interface serves
/// reads from it (0xFFFF beyond the end, as an erased EEPROM reads).
#[derive(Clone, PartialEq, Eq)]
pub struct Sii {
    /// The image's bytes (words little-endian).
    pub raw: Vec<u8>,
    /// PDI control (word 0x00): loaded into ESC register 0x0140.
    pub pdi_control: u16,
    /// PDI configuration (word 0x01): loaded into ESC register 0x0150.
    pub pdi_config: u16,
    /// Configured station alias (word 0x04): loaded into ESC register 0x0012.
    pub station_alias: u16,
    /// Vendor id (words 0x08..0x09).
    pub vendor_id: u32,
    /// Product code (words 0x0A..0x0B).
    pub product_code: u32,
    /// Revision number (words 0x0C..0x0D).
    pub revision: u32,
    /// Serial number (words 0x0E..0x0F).
    pub serial: u32,
    /// Bootstrap receive mailbox (words 0x14..0x15).
    pub bootstrap_rx_mailbox: MailboxArea,
    /// Bootstrap send mailbox (words 0x16..0x17).
    pub bootstrap_tx_mailbox: MailboxArea,
    /// Standard receive mailbox, master → terminal (words 0x18..0x19).
    pub rx_mailbox: MailboxArea,
    /// Standard send mailbox, terminal → master (words 0x1A..0x1B).
    pub tx_mailbox: MailboxArea,
    /// Supported mailbox protocols (word 0x1C, [`mailbox_protocol`]).
    pub mailbox_protocols: u16,
    /// EEPROM size in bytes, from word 0x3E ((value + 1) KiBit).
    pub eeprom_size_bytes: u32,
    /// SII version (word 0x3F).
    pub version: u16,
    /// The strings category (index 1 = first string).
    pub strings: Vec<String>,
    /// The General category.
    pub general: Option<General>,
    /// The FMMU category.
    pub fmmus: Vec<FmmuUsage>,
    /// The SyncManager category.
    pub sync_managers: Vec<SiiSyncManager>,
    /// TxPDOs (inputs).
    pub tx_pdos: Vec<Pdo>,
    /// RxPDOs (outputs).
    pub rx_pdos: Vec<Pdo>,
    /// DC operation modes.
    pub dc_modes: Vec<DcMode>,
    /// Every category in the image, in order.
    pub categories: Vec<CategoryInfo>,
    /// Whether the category list ended with 0xFFFF (false for truncated recordings).
    pub has_end_marker: bool,
}

impl fmt::Debug for Sii {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sii")
            .field("vendor_id", &format_args!("{:#x}", self.vendor_id))
            .field("product_code", &format_args!("{:#x}", self.product_code))
            .field("revision", &format_args!("{:#x}", self.revision))
            .field("name", &self.name())
            .field("categories", &self.categories.len())
            .finish_non_exhaustive()
    }
}

/// The checksum of the SII header: CRC-8 (polynomial x^8 + x^2 + x + 1, initial 0xFF)
/// over bytes 0..13 (words 0..6), stored in the low byte of word 7 (ETG.1000.6 5.4,
/// ETG.2010 table 2). Bytes beyond a short image count as erased (0xFF).
pub fn header_crc(raw: &[u8]) -> u8 {
    let mut crc: u8 = 0xFF;
    for i in 0..14 {
        crc ^= raw.get(i).copied().unwrap_or(0xFF);
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn word(raw: &[u8], w: usize) -> u16 {
    match raw.get(2 * w..2 * w + 2) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]),
        None => 0xFFFF,
    }
}

fn dword(raw: &[u8], w: usize) -> u32 {
    u32::from(word(raw, w)) | (u32::from(word(raw, w + 1)) << 16)
}

fn le16(d: &[u8], at: usize) -> u16 {
    match d.get(at..at + 2) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]),
        None => 0,
    }
}

fn le32(d: &[u8], at: usize) -> u32 {
    match d.get(at..at + 4) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

fn byte(d: &[u8], at: usize) -> u8 {
    d.get(at).copied().unwrap_or(0)
}

impl Sii {
    /// Reads and parses an image file.
    pub fn load(path: &Path) -> Result<Sii, SiiError> {
        let raw = std::fs::read(path).map_err(|source| SiiError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Sii::parse(raw)
    }

    /// Parses an image. Damaged categories are skipped or cut, never a panic; an image
    /// shorter than the header or an erased one is an error.
    pub fn parse(raw: Vec<u8>) -> Result<Sii, SiiError> {
        let sii = Sii::parse_allow_blank(raw)?;
        if sii.is_blank() {
            return Err(SiiError::Blank);
        }
        Ok(sii)
    }

    /// Whether no category of the image describes a device (an erased EEPROM).
    pub fn is_blank(&self) -> bool {
        !self.categories.iter().any(|c| {
            matches!(
                c.kind,
                category::STRINGS
                    | category::GENERAL
                    | category::SYNC_MANAGER
                    | category::FMMU
                    | category::TXPDO
                    | category::RXPDO
            )
        })
    }

    /// Parses an image like [`Sii::parse`] but accepts a blank one: a terminal whose
    /// EEPROM was erased still answers on the bus (its ESC works, it has no mailbox
    /// and no process data), as real hardware does.
    pub fn parse_allow_blank(raw: Vec<u8>) -> Result<Sii, SiiError> {
        if raw.len() < 2 * FIRST_CATEGORY_WORD {
            return Err(SiiError::TooShort { len: raw.len() });
        }
        let mut sii = Sii {
            pdi_control: word(&raw, 0x00),
            pdi_config: word(&raw, 0x01),
            station_alias: word(&raw, 0x04),
            vendor_id: dword(&raw, 0x08),
            product_code: dword(&raw, 0x0A),
            revision: dword(&raw, 0x0C),
            serial: dword(&raw, 0x0E),
            bootstrap_rx_mailbox: MailboxArea {
                offset: word(&raw, 0x14),
                size: word(&raw, 0x15),
            },
            bootstrap_tx_mailbox: MailboxArea {
                offset: word(&raw, 0x16),
                size: word(&raw, 0x17),
            },
            rx_mailbox: MailboxArea {
                offset: word(&raw, 0x18),
                size: word(&raw, 0x19),
            },
            tx_mailbox: MailboxArea {
                offset: word(&raw, 0x1A),
                size: word(&raw, 0x1B),
            },
            mailbox_protocols: word(&raw, 0x1C),
            eeprom_size_bytes: (u32::from(word(&raw, 0x3E)) + 1) * 128,
            version: word(&raw, 0x3F),
            strings: Vec::new(),
            general: None,
            fmmus: Vec::new(),
            sync_managers: Vec::new(),
            tx_pdos: Vec::new(),
            rx_pdos: Vec::new(),
            dc_modes: Vec::new(),
            categories: Vec::new(),
            has_end_marker: false,
            raw: Vec::new(),
        };
        sii.scan_categories(&raw);
        sii.raw = raw;
        Ok(sii)
    }

    fn scan_categories(&mut self, raw: &[u8]) {
        let total_words = raw.len() / 2;
        let mut w = FIRST_CATEGORY_WORD;
        // Strings first: other categories refer to them.
        let mut found = Vec::new();
        while w + 2 <= total_words {
            let kind = word(raw, w);
            if kind == category::END {
                self.has_end_marker = true;
                break;
            }
            let words = word(raw, w + 1);
            if kind == category::NOP && words == 0 {
                // Zeroed memory (an erased or never-written EEPROM), not a category list.
                break;
            }
            let start = w + 2;
            let end = start + usize::from(words);
            let truncated = end > total_words;
            found.push(CategoryInfo {
                kind,
                word_address: start,
                words,
                truncated,
            });
            if truncated {
                break;
            }
            w = end;
        }
        let data_of = |c: &CategoryInfo| {
            let from = 2 * c.word_address;
            let to = (from + 2 * usize::from(c.words)).min(raw.len());
            raw.get(from..to).unwrap_or(&[])
        };
        if let Some(c) = found.iter().find(|c| c.kind == category::STRINGS) {
            self.strings = parse_strings(data_of(c));
        }
        for c in &found {
            let d = data_of(c);
            match c.kind {
                category::GENERAL => self.general = Some(self.parse_general(d)),
                category::FMMU => {
                    self.fmmus = d
                        .iter()
                        .map(|&b| match b {
                            0x00 | 0xFF => FmmuUsage::Unused,
                            0x01 => FmmuUsage::Outputs,
                            0x02 => FmmuUsage::Inputs,
                            0x03 => FmmuUsage::SyncManagerStatus,
                            other => FmmuUsage::Other(other),
                        })
                        .collect();
                }
                category::SYNC_MANAGER => {
                    self.sync_managers = d
                        .chunks_exact(8)
                        .map(|e| SiiSyncManager {
                            start: le16(e, 0),
                            length: le16(e, 2),
                            control: e[4],
                            enable: e[6],
                            sm_type: match e[7] {
                                0 => SmType::Unused,
                                1 => SmType::MailboxOut,
                                2 => SmType::MailboxIn,
                                3 => SmType::ProcessDataOutputs,
                                4 => SmType::ProcessDataInputs,
                                other => SmType::Other(other),
                            },
                        })
                        .collect();
                }
                category::TXPDO => {
                    let p = self.parse_pdos(d);
                    self.tx_pdos.extend(p);
                }
                category::RXPDO => {
                    let p = self.parse_pdos(d);
                    self.rx_pdos.extend(p);
                }
                category::DC => {
                    self.dc_modes = d
                        .chunks_exact(24)
                        .map(|e| DcMode {
                            cycle_time_sync0: le32(e, 0),
                            shift_time_sync0: le32(e, 4),
                            shift_time_sync1: le32(e, 8),
                            sync1_cycle_factor: le16(e, 12) as i16,
                            assign_activate: le16(e, 14),
                            sync0_cycle_factor: le16(e, 16) as i16,
                            name: self.string(e[18]),
                        })
                        .collect();
                }
                _ => {}
            }
        }
        self.categories = found;
    }

    fn parse_general(&self, d: &[u8]) -> General {
        General {
            group: self.string(byte(d, 0)),
            image: self.string(byte(d, 1)),
            order: self.string(byte(d, 2)),
            name: self.string(byte(d, 3)),
            coe_details: byte(d, 5),
            foe_details: byte(d, 6),
            eoe_details: byte(d, 7),
            flags: byte(d, 11),
            ebus_current_ma: le16(d, 12) as i16,
            physical_ports: le16(d, 16),
        }
    }

    fn parse_pdos(&self, d: &[u8]) -> Vec<Pdo> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= d.len() {
            let n = usize::from(d[at + 2]);
            let sm = d[at + 3];
            let mut pdo = Pdo {
                index: le16(d, at),
                sync_manager: if sm == 0xFF { None } else { Some(sm) },
                sync_unit: d[at + 4],
                name: self.string(d[at + 5]),
                flags: le16(d, at + 6),
                entries: Vec::with_capacity(n),
            };
            at += 8;
            for _ in 0..n {
                let Some(e) = d.get(at..at + 8) else { break };
                pdo.entries.push(PdoEntry {
                    index: le16(e, 0),
                    subindex: e[2],
                    name: self.string(e[3]),
                    data_type: e[4],
                    bit_length: e[5],
                });
                at += 8;
            }
            out.push(pdo);
        }
        out
    }

    /// String `index` of the strings category (1-based; 0 = none).
    pub fn string(&self, index: u8) -> Option<String> {
        let i = usize::from(index).checked_sub(1)?;
        self.strings.get(i).cloned()
    }

    /// The device name from the General category, if present.
    pub fn name(&self) -> Option<&str> {
        self.general.as_ref().and_then(|g| g.name.as_deref())
    }

    /// The word at `address` as an EEPROM reads it: 0xFFFF beyond the image (erased).
    pub fn word(&self, address: usize) -> u16 {
        word(&self.raw, address)
    }

    /// Whether the terminal has a standard mailbox (non-zero SM0/SM1 sizes in the header).
    pub fn has_mailbox(&self) -> bool {
        self.rx_mailbox.size != 0 && self.tx_mailbox.size != 0
    }
}

fn parse_strings(d: &[u8]) -> Vec<String> {
    let Some((&count, mut rest)) = d.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let Some((&len, tail)) = rest.split_first() else {
            break;
        };
        let len = usize::from(len).min(tail.len());
        let (s, tail) = tail.split_at(len);
        // SII strings are ISO 8859-1 (Beckhoff writes "1µs" as 0xB5): every byte is
        // the code point of the same value, so damaged binary strings decode too.
        out.push(s.iter().map(|&b| char::from(b)).collect());
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str) -> Vec<u8> {
        let p = format!(
            "{}/../../shared/testdata/eeprom/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&p).unwrap_or_else(|e| panic!("test data {p}: {e}"))
    }

    fn load(name: &str) -> Sii {
        Sii::parse(image(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn identities_match_the_readme_table() {
        let table: [(&str, u32, u32, u32); 14] = [
            ("ek1100.bin", 0x2, 0x044C2C52, 0x00120000),
            ("ek1814.bin", 0x2, 0x07162C52, 0x00120000),
            ("el2004.bin", 0x2, 0x07D43052, 0x00100000),
            ("el2828.bin", 0x2, 0x0B0C3052, 0x00110000),
            ("el2889.bin", 0x2, 0x0B493052, 0x00110000),
            ("el2262.bin", 0x2, 0x08D63052, 0x00030000),
            ("el3164.bin", 0x2, 0x0C5C3052, 0x00140000),
            ("el4104.bin", 0x2, 0x10083052, 0x03FC0000),
            ("el6022.bin", 0x2, 0x17863052, 0x00130000),
            ("el7031.bin", 0x2, 0x1B773052, 0x00170000),
            ("el7041.bin", 0x2, 0x1B813052, 0x00170000),
            ("akd.bin", 0x6A, 0x00414B44, 0x2),
            ("akd-null-strings.bin", 0x6A, 0x00414B44, 0x2),
            ("hbm-clipx.bin", 0x11D, 0x00000F01, 0x1),
        ];
        for (name, vendor, product, revision) in table {
            let s = load(name);
            assert_eq!(
                (s.vendor_id, s.product_code, s.revision),
                (vendor, product, revision),
                "{name}"
            );
            assert!(!s.categories.is_empty(), "{name} has categories");
        }
    }

    #[test]
    fn categories_as_each_image_holds_them() {
        use category::*;
        // (image, ends with 0xFFFF, category types in order, device name)
        let table: [(&str, bool, &[u16], Option<&str>); 14] = [
            (
                "ek1100.bin",
                true,
                &[STRINGS, GENERAL],
                Some("EK1100 EtherCAT-Koppler (2A E-Bus)"),
            ),
            (
                "ek1814.bin",
                false,
                &[
                    STRINGS,
                    GENERAL,
                    FMMU,
                    SYNC_MANAGER,
                    SYNC_UNIT,
                    TXPDO,
                    RXPDO,
                ],
                Some(
                    "EK1814 EtherCAT-EA-Koppler (1A E-Bus, 4 K. Dig. Ein, 3ms, 4 K. Dig. Aus 24V, 0,5A)",
                ),
            ),
            (
                "el2004.bin",
                true,
                &[STRINGS, GENERAL, FMMU, SYNC_MANAGER, SYNC_UNIT, RXPDO],
                Some("EL2004 4K. Dig. Ausgang 24V, 0.5A"),
            ),
            (
                "el2828.bin",
                true,
                &[3, STRINGS, GENERAL, FMMU, SYNC_MANAGER, SYNC_UNIT, RXPDO],
                Some("EL2828 8K. Dig. Ausgang 24V, 2A"),
            ),
            (
                "el2889.bin",
                true,
                &[STRINGS, GENERAL, FMMU, SYNC_MANAGER, SYNC_UNIT, RXPDO],
                Some("EL2889 16K. Dig. Ausgang 24V, 0.5A, negativ"),
            ),
            (
                "el2262.bin",
                true,
                &[
                    1,
                    STRINGS,
                    GENERAL,
                    FMMU,
                    SYNC_MANAGER,
                    FMMU_EXTENDED,
                    SYNC_UNIT,
                    TXPDO,
                    RXPDO,
                    DC,
                ],
                Some("EL2262 2K. Dig. Ausgang 24V, 1\u{b5}s, DC Oversample"),
            ),
            (
                "el3164.bin",
                false,
                &[STRINGS, GENERAL, FMMU, SYNC_MANAGER, TXPDO, DC],
                Some("EL3164 4K. Ana. Eingang 0-10V"),
            ),
            (
                "el4104.bin",
                false,
                &[STRINGS, GENERAL, FMMU, SYNC_MANAGER, RXPDO, DC],
                Some("EL4104 4Ch. Ana. Ausgang 0-10V, 16bit"),
            ),
            (
                "el6022.bin",
                false,
                &[STRINGS, GENERAL, FMMU, SYNC_MANAGER],
                Some("EL6022 Schnittstelle 2K. (RS422/485)"),
            ),
            (
                "el7031.bin",
                false,
                &[STRINGS, GENERAL, FMMU, SYNC_MANAGER, DC],
                Some("EL7031 1K. Schrittmotor-Endstufe (24V, 1.5A)"),
            ),
            (
                "el7041.bin",
                false,
                &[STRINGS, GENERAL, FMMU, SYNC_MANAGER, DC],
                Some("EL7041 1K. Schrittmotor-Endstufe (50V, 5A)"),
            ),
            (
                "akd.bin",
                true,
                &[
                    0x0800,
                    0x0801,
                    STRINGS,
                    GENERAL,
                    FMMU,
                    SYNC_MANAGER,
                    SYNC_UNIT,
                    TXPDO,
                    RXPDO,
                    DC,
                ],
                Some("AKD EtherCAT Drive (CoE)"),
            ),
            // The damaged image: after the strings a category claims more words than
            // the file has; the general category is lost, the rest parses.
            (
                "akd-null-strings.bin",
                false,
                &[0x0800, 0x0801, STRINGS, 0x0100],
                None,
            ),
            (
                "hbm-clipx.bin",
                true,
                &[STRINGS, GENERAL, FMMU, SYNC_MANAGER],
                Some("ClipX"),
            ),
        ];
        for (name, end, kinds, device) in table {
            let s = load(name);
            let got: Vec<u16> = s.categories.iter().map(|c| c.kind).collect();
            assert_eq!(got, kinds, "{name} categories");
            assert_eq!(s.has_end_marker, end, "{name} end marker");
            assert_eq!(s.name(), device, "{name} name");
        }
        let akd = load("akd.bin");
        assert_eq!(
            (
                akd.tx_pdos.len(),
                akd.rx_pdos.len(),
                akd.sync_managers.len()
            ),
            (12, 12, 4)
        );
        assert_eq!(
            akd.mailbox_protocols & mailbox_protocol::COE,
            mailbox_protocol::COE
        );
        let damaged = load("akd-null-strings.bin");
        assert!(damaged.categories.last().is_some_and(|c| c.truncated));
    }

    #[test]
    fn blank_eeprom_is_reported() {
        assert!(matches!(
            Sii::parse(image("empty-eeprom.bin")),
            Err(SiiError::Blank)
        ));
        let s = Sii::parse_allow_blank(image("empty-eeprom.bin")).expect("blank accepted");
        assert!(s.is_blank() && !s.has_mailbox() && s.name().is_none());
        assert!(matches!(
            Sii::parse(vec![0; 10]),
            Err(SiiError::TooShort { len: 10 })
        ));
    }

    #[test]
    fn ek1100_no_mailbox_no_pdos() {
        let s = load("ek1100.bin");
        assert!(!s.has_mailbox());
        assert_eq!(s.name(), Some("EK1100 EtherCAT-Koppler (2A E-Bus)"));
        assert!(s.rx_pdos.is_empty() && s.tx_pdos.is_empty());
        assert!(s.has_end_marker);
        let g = s.general.as_ref().expect("general");
        assert_eq!(g.order.as_deref(), Some("EK1100"));
        assert_eq!(g.ebus_current_ma, -2000);
    }

    #[test]
    fn el2004_rx_pdos_in_sii() {
        let s = load("el2004.bin");
        assert_eq!(s.name(), Some("EL2004 4K. Dig. Ausgang 24V, 0.5A"));
        assert_eq!(s.rx_pdos.len(), 4);
        assert!(s.tx_pdos.is_empty());
        for (i, p) in s.rx_pdos.iter().enumerate() {
            assert_eq!(p.index, 0x1600 + i as u16);
            assert_eq!(p.sync_manager, Some(0));
            assert_eq!(p.entries.len(), 1);
            assert_eq!(p.entries[0].index, 0x7000 + 0x10 * i as u16);
            assert_eq!(p.entries[0].subindex, 1);
            assert_eq!(p.entries[0].bit_length, 1);
        }
        assert_eq!(s.sync_managers.len(), 1);
        assert_eq!(s.sync_managers[0].start, 0x0F00);
        assert_eq!(s.sync_managers[0].sm_type, SmType::ProcessDataOutputs);
        assert_eq!(s.fmmus, [FmmuUsage::Outputs, FmmuUsage::Unused]);
    }

    #[test]
    fn coe_terminal_mailboxes_and_truncation() {
        for name in [
            "el3164.bin",
            "el4104.bin",
            "el6022.bin",
            "el7031.bin",
            "el7041.bin",
        ] {
            let s = load(name);
            assert!(s.has_mailbox(), "{name}");
            assert_eq!(s.rx_mailbox.offset, 0x1000, "{name}");
            assert_ne!(s.mailbox_protocols & mailbox_protocol::COE, 0, "{name}");
            assert!(!s.has_end_marker, "{name} is truncated");
        }
        let s = load("el7041.bin");
        assert_eq!(s.rx_mailbox.size, 0x80);
        assert_eq!(
            s.tx_mailbox,
            MailboxArea {
                offset: 0x1080,
                size: 0x80
            }
        );
        assert_eq!(s.name(), Some("EL7041 1K. Schrittmotor-Endstufe (50V, 5A)"));
        let g = s.general.as_ref().expect("general");
        assert_ne!(g.coe_details & coe_details::SDO, 0);
        let types: Vec<SmType> = s.sync_managers.iter().map(|m| m.sm_type).collect();
        assert_eq!(
            types,
            [
                SmType::MailboxOut,
                SmType::MailboxIn,
                SmType::ProcessDataOutputs,
                SmType::ProcessDataInputs
            ]
        );
    }

    #[test]
    fn damaged_images_parse() {
        let s = load("akd-null-strings.bin");
        assert_eq!(s.vendor_id, 0x6A);
        let s = load("hbm-clipx.bin");
        assert!(!s.strings.is_empty());
        let s = load("el2262.bin");
        assert!(!s.dc_modes.is_empty());
        assert!(
            s.categories
                .iter()
                .any(|c| c.kind == category::FMMU_EXTENDED)
        );
        assert!(s.categories.iter().any(|c| c.kind == category::SYNC_UNIT));
        // Every prefix of a real image parses with the header's identity, or is refused
        // as too short (below the header) or blank (cut before the first category).
        let raw = image("el2828.bin");
        let whole = load("el2828.bin");
        for len in 0..raw.len() {
            match Sii::parse(raw[..len].to_vec()) {
                Ok(s) => {
                    assert!(len >= 2 * FIRST_CATEGORY_WORD, "{len}");
                    assert_eq!(
                        (s.vendor_id, s.product_code),
                        (whole.vendor_id, whole.product_code)
                    );
                    assert!(s.categories.len() <= whole.categories.len(), "{len}");
                    assert!(s.categories.iter().all(|c| c.word_address <= len / 2 + 1));
                }
                Err(SiiError::TooShort { len: l }) => {
                    assert_eq!(l, len);
                    assert!(len < 2 * FIRST_CATEGORY_WORD);
                }
                Err(SiiError::Blank) => assert!(len >= 2 * FIRST_CATEGORY_WORD, "{len}"),
                Err(e) => panic!("prefix of {len} bytes: {e}"),
            }
        }
    }

    #[test]
    fn random_and_mutated_images_parse_or_are_refused() {
        // Random bytes, and every real image with random bytes overwritten in its
        // category area: parsing never panics, and what it gives agrees with the bytes.
        let names = [
            "akd-null-strings",
            "akd",
            "ek1100",
            "ek1814",
            "el2004",
            "el2262",
            "el2828",
            "el2889",
            "el3164",
            "el4104",
            "el6022",
            "el7031",
            "el7041",
            "hbm-clipx",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut parsed = 0;
        for round in 0..3_000 {
            let mut raw = if round % 3 == 0 {
                let len = (next() % 1024) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                image(&format!("{}.bin", names[round % names.len()]))
            };
            if round % 3 != 0 {
                for _ in 0..1 + next() % 16 {
                    let len = raw.len() - 2 * FIRST_CATEGORY_WORD;
                    let at = 2 * FIRST_CATEGORY_WORD + (next() as usize) % len;
                    raw[at] = next() as u8;
                }
                if round % 5 == 0 {
                    raw.truncate(2 * FIRST_CATEGORY_WORD + (next() as usize) % 256);
                }
            }
            let Ok(s) = Sii::parse_allow_blank(raw.clone()) else {
                assert!(raw.len() < 2 * FIRST_CATEGORY_WORD, "round {round} refused");
                continue;
            };
            parsed += 1;
            assert_eq!(s.vendor_id, dword(&raw, 0x08), "round {round}");
            assert_eq!(s.product_code, dword(&raw, 0x0A), "round {round}");
            assert_eq!(s.word(0x3F), word(&raw, 0x3F), "round {round}");
            for c in &s.categories {
                let end = c.word_address + usize::from(c.words);
                assert_eq!(c.truncated, end > raw.len() / 2, "round {round}: {c:?}");
            }
            assert!(s.categories.iter().filter(|c| c.truncated).count() <= 1);
            assert!(s.string(0).is_none());
            // A terminal built from it comes up in INIT with the image's identity in
            // its dictionary, whatever its categories say.
            let od = crate::coe::from_sii::dictionary_from_sii(&s);
            assert_eq!(od.value_u64(0x1018, 1), Some(u64::from(s.vendor_id)));
            let app = crate::coe::terminal::DictionaryTerminal::new(
                0,
                od,
                s.has_mailbox(),
                crate::models::PlantHandle::new(Vec::new()),
            );
            let _ = app.layout();
            let esc = crate::segment::basic_terminal(s);
            assert_eq!(esc.peek(0x0130) & 0x0F, 1, "round {round}: INIT");
        }
        assert!(parsed > 2_000, "only {parsed} images parsed");
    }

    #[test]
    fn header_crc_matches_every_recorded_image() {
        // The vendors' tools wrote word 7 of each real image: the CRC must agree.
        for name in [
            "ek1100", "el2004", "el2828", "el2889", "el3164", "el4104", "el7041",
        ] {
            let raw = image(&format!("{name}.bin"));
            assert_eq!(header_crc(&raw), raw[14], "{name}");
        }
        // An image shorter than the header counts its missing bytes as erased.
        assert_eq!(header_crc(&[]), header_crc(&[0xFF; 14]));
    }

    #[test]
    fn reads_beyond_the_image_are_erased() {
        let s = load("el7041.bin");
        assert_eq!(s.word(0x08), 0x0002);
        assert_eq!(s.word(10_000), 0xFFFF);
    }
}
