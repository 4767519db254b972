//! Parsing a whole SII image (header words 0x00..0x3F and the category list from word
//! 0x40, ETG.1000.6 §5.4 / ETG.2010) into [`SiiImage`], tolerating truncated, damaged
//! and blank EEPROMs: damage after the header becomes a [`SiiWarning`], never a panic.

use super::category::{
    CategoryInfo, CoeDetails, DcMode, FmmuEx, FmmuUsage, General, Identity, MailboxArea,
    MailboxProtocols, PdoDirection, RawCategory, SiiHeader, SiiPdo, SiiPdoEntry, SiiSyncManager,
    SmType, SyncUnit, kind,
};
use serde::Serialize;
use std::borrow::Cow;
use std::fmt;

/// Word address of the first category header (ETG.1000.6 §5.4).
pub const CATEGORY_START_WORD: usize = 0x40;
/// Word address of the station alias (ETG.1000.6 table 16).
pub const ALIAS_WORD: u16 = 0x04;
/// Word address of the header checksum (ETG.1000.6 table 16).
pub const CHECKSUM_WORD: u16 = 0x07;
/// Word address of the serial number, low word (ETG.1000.6 table 16).
pub const SERIAL_WORD: u16 = 0x0E;

/// CRC-8 over the first 14 bytes (words 0..6) of the SII, stored in the low byte of word 7:
/// polynomial x^8 + x^2 + x + 1 (0x07), initial value 0xFF, no reflection (ETG.1000.6 §5.4).
pub fn header_checksum(bytes: &[u8]) -> u8 {
    let mut crc: u8 = 0xFF;
    for &b in bytes.iter().take(14) {
        crc ^= b;
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

/// Why an image could not be parsed at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiiError {
    /// Fewer bytes than the fixed header (words 0x00..0x3F, 128 bytes) holds.
    #[error("SII image of {len} bytes is shorter than its 128-byte header (words 0x00..0x3F)")]
    TooShort {
        /// Length of the image in bytes.
        len: usize,
    },
    /// An erased or never programmed EEPROM.
    #[error("blank SII: {reason}")]
    Blank {
        /// What made the image look blank.
        reason: String,
    },
}

/// Damage found while parsing; the parts that could be read are still returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SiiWarning {
    /// The checksum in word 0x07 does not match the CRC over words 0..6.
    ChecksumMismatch {
        /// Value stored in the image.
        stored: u8,
        /// Value computed over words 0..6.
        computed: u8,
    },
    /// The image has an odd number of bytes; the last byte was ignored.
    OddLength {
        /// Length of the image in bytes.
        len: usize,
    },
    /// The category list ends at the end of the image without an 0xFFFF end marker.
    NoEndMarker {
        /// Word address where the list stopped.
        word: usize,
    },
    /// A category's declared size runs past the end of the image; what was present is parsed.
    CategoryTruncated {
        /// Category type.
        kind: u16,
        /// Word address of the category header.
        word: usize,
        /// Declared size in words.
        declared_words: u16,
        /// Words present in the image.
        present_words: usize,
    },
    /// A category header was implausible (its size runs past the end of the image while
    /// well-formed categories follow): the list was resumed at the next plausible header.
    CategoryListDamaged {
        /// Word address of the implausible header.
        word: usize,
        /// Its category type.
        kind: u16,
        /// Its declared size in words.
        size_words: u16,
        /// Word address where parsing resumed.
        resumed_at: usize,
    },
    /// A category's contents do not fit its size.
    MalformedCategory {
        /// Category type.
        kind: u16,
        /// Word address of the category header.
        word: usize,
        /// What is wrong.
        detail: String,
    },
    /// A category type the spec does not define, kept raw.
    UnknownCategory {
        /// Category type.
        kind: u16,
        /// Word address of the category header.
        word: usize,
    },
}

impl fmt::Display for SiiWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiiWarning::ChecksumMismatch { stored, computed } => write!(
                f,
                "header checksum (word 0x07) is {stored:#04x}, computed {computed:#04x} over words 0..6"
            ),
            SiiWarning::OddLength { len } => {
                write!(
                    f,
                    "image has an odd length ({len} bytes); last byte ignored"
                )
            }
            SiiWarning::NoEndMarker { word } => write!(
                f,
                "category list ends at word {word:#06x} (end of image) without an 0xFFFF end marker"
            ),
            SiiWarning::CategoryTruncated {
                kind: k,
                word,
                declared_words,
                present_words,
            } => write!(
                f,
                "{} category (type {k}) at word {word:#06x} declares {declared_words} words but only {present_words} are present",
                kind::name(*k)
            ),
            SiiWarning::CategoryListDamaged {
                word,
                kind: k,
                size_words,
                resumed_at,
            } => write!(
                f,
                "implausible category header at word {word:#06x} (type {k:#06x}, {size_words} words, past the end of the image); resumed at word {resumed_at:#06x}"
            ),
            SiiWarning::MalformedCategory {
                kind: k,
                word,
                detail,
            } => write!(
                f,
                "{} category (type {k}) at word {word:#06x}: {detail}",
                kind::name(*k)
            ),
            SiiWarning::UnknownCategory { kind: k, word } => {
                write!(f, "unknown category type {k:#06x} at word {word:#06x}")
            }
        }
    }
}

/// How the category list ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ListEnd {
    /// At an 0xFFFF end marker at this word address.
    EndMarker(usize),
    /// At the end of the image (truncated recording).
    EndOfImage,
}

/// One string of the string repository, kept as its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiiString(pub Vec<u8>);

impl SiiString {
    /// The string as text: bytes are ISO 8859-1 (Beckhoff images use 0xB5 for µ);
    /// trailing NULs are dropped and other control bytes shown as U+FFFD.
    pub fn text(&self) -> Cow<'_, str> {
        let trimmed = trim_nuls(&self.0);
        if trimmed
            .iter()
            .all(|b| (0x20..0x7F).contains(b) || *b == b'\t')
        {
            // ASCII: zero-copy.
            Cow::Borrowed(std::str::from_utf8(trimmed).unwrap_or_default())
        } else {
            Cow::Owned(
                trimmed
                    .iter()
                    .map(|&b| match b {
                        0x00..=0x1F | 0x7F..=0x9F => '\u{FFFD}',
                        _ => char::from(b),
                    })
                    .collect(),
            )
        }
    }

    /// Whether the string holds only printable ISO 8859-1 characters (not binary data).
    pub fn is_printable(&self) -> bool {
        trim_nuls(&self.0)
            .iter()
            .all(|&b| !matches!(b, 0x00..=0x08 | 0x0B..=0x1F | 0x7F..=0x9F))
    }
}

impl Serialize for SiiString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_printable() {
            s.serialize_str(&self.text())
        } else {
            s.serialize_none()
        }
    }
}

fn trim_nuls(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
    &b[..end]
}

/// A parsed SII image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiiImage {
    /// The fixed header.
    pub header: SiiHeader,
    /// The string repository (string index `i` is `strings[i - 1]`).
    pub strings: Vec<SiiString>,
    /// The general category, when present.
    pub general: Option<General>,
    /// FMMU usage, one per FMMU.
    pub fmmus: Vec<FmmuUsage>,
    /// SyncManagers in order (index = SyncManager number).
    pub sync_managers: Vec<SiiSyncManager>,
    /// FMMU extensions, one per FMMU.
    pub fmmu_ex: Vec<FmmuEx>,
    /// Sync units.
    pub sync_units: Vec<SyncUnit>,
    /// TxPDOs (inputs).
    pub tx_pdos: Vec<SiiPdo>,
    /// RxPDOs (outputs).
    pub rx_pdos: Vec<SiiPdo>,
    /// Distributed-clock operation modes.
    pub dc_modes: Vec<DcMode>,
    /// Categories kept raw (device specific, vendor specific, data types, unknown).
    pub other: Vec<RawCategory>,
    /// Every category header found, in order.
    pub categories: Vec<CategoryInfo>,
    /// How the list ended.
    pub end: ListEnd,
    /// Damage found while parsing.
    pub warnings: Vec<SiiWarning>,
}

/// Little-endian reads that yield 0 past the end, so truncated data never panics.
struct Le<'a>(&'a [u8]);

impl Le<'_> {
    fn u8(&self, at: usize) -> u8 {
        self.0.get(at).copied().unwrap_or(0)
    }
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.u8(at), self.u8(at + 1)])
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes([
            self.u8(at),
            self.u8(at + 1),
            self.u8(at + 2),
            self.u8(at + 3),
        ])
    }
}

fn word(words: &[u16], at: usize) -> u16 {
    words.get(at).copied().unwrap_or(0)
}

impl SiiImage {
    /// Parses an image read from word 0 (raw little-endian words).
    ///
    /// Fails only when there is no usable header (shorter than 128 bytes) or the
    /// EEPROM is blank; every other kind of damage is recorded in `warnings`.
    pub fn parse(bytes: &[u8]) -> Result<SiiImage, SiiError> {
        if bytes.len() < CATEGORY_START_WORD * 2 {
            return Err(SiiError::TooShort { len: bytes.len() });
        }
        let mut warnings = Vec::new();
        if bytes.len() % 2 != 0 {
            warnings.push(SiiWarning::OddLength { len: bytes.len() });
        }
        let words: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();

        let header_words = &words[..CATEGORY_START_WORD];
        if header_words.iter().all(|&w| w == 0) || header_words.iter().all(|&w| w == 0xFFFF) {
            return Err(SiiError::Blank {
                reason: format!(
                    "header words 0x00..0x3F are all {:#06x} (erased or never programmed EEPROM)",
                    header_words[0]
                ),
            });
        }
        let header = parse_header(bytes, &words);
        if !header.checksum_ok {
            warnings.push(SiiWarning::ChecksumMismatch {
                stored: header.checksum,
                computed: header_checksum(bytes),
            });
        }

        let mut image = SiiImage {
            header,
            strings: Vec::new(),
            general: None,
            fmmus: Vec::new(),
            sync_managers: Vec::new(),
            fmmu_ex: Vec::new(),
            sync_units: Vec::new(),
            tx_pdos: Vec::new(),
            rx_pdos: Vec::new(),
            dc_modes: Vec::new(),
            other: Vec::new(),
            categories: Vec::new(),
            end: ListEnd::EndOfImage,
            warnings,
        };
        image.parse_categories(bytes, &words);

        let real_categories = image.categories.iter().any(|c| kind::is_known(c.kind));
        if !real_categories && !image.header.checksum_ok {
            return Err(SiiError::Blank {
                reason: format!(
                    "header checksum {:#04x} does not match the computed {:#04x} and no category the spec defines follows word 0x40 (erased or never programmed EEPROM)",
                    image.header.checksum,
                    header_checksum(bytes)
                ),
            });
        }
        Ok(image)
    }

    fn parse_categories(&mut self, bytes: &[u8], words: &[u16]) {
        let n = words.len();
        let mut pos = CATEGORY_START_WORD;
        loop {
            if words.get(pos) == Some(&kind::END) {
                self.end = ListEnd::EndMarker(pos);
                break;
            }
            if pos + 2 > n {
                self.end = ListEnd::EndOfImage;
                self.warnings.push(SiiWarning::NoEndMarker { word: pos });
                break;
            }
            let k = words[pos];
            let size = words[pos + 1];
            let data_start = pos + 2;
            let data_end = data_start + usize::from(size);
            if data_end > n {
                if let Some(resume) = resync(words, pos + 1) {
                    self.warnings.push(SiiWarning::CategoryListDamaged {
                        word: pos,
                        kind: k,
                        size_words: size,
                        resumed_at: resume,
                    });
                    pos = resume;
                    continue;
                }
                let present = n - data_start;
                self.warnings.push(SiiWarning::CategoryTruncated {
                    kind: k,
                    word: pos,
                    declared_words: size,
                    present_words: present,
                });
                self.categories.push(CategoryInfo {
                    kind: k,
                    word_offset: pos,
                    size_words: size,
                    present_words: present,
                });
                self.parse_category(k, pos, &bytes[data_start * 2..n * 2]);
                self.end = ListEnd::EndOfImage;
                break;
            }
            self.categories.push(CategoryInfo {
                kind: k,
                word_offset: pos,
                size_words: size,
                present_words: usize::from(size),
            });
            self.parse_category(k, pos, &bytes[data_start * 2..data_end * 2]);
            pos = data_end;
        }
    }

    fn malformed(&mut self, k: u16, word: usize, detail: String) {
        self.warnings.push(SiiWarning::MalformedCategory {
            kind: k,
            word,
            detail,
        });
    }

    fn parse_category(&mut self, k: u16, word: usize, data: &[u8]) {
        match k {
            kind::NOP => {}
            kind::STRINGS => self.parse_strings(word, data),
            kind::GENERAL => {
                if data.len() < General::LEN {
                    self.malformed(
                        k,
                        word,
                        format!("{} bytes, expected {}", data.len(), General::LEN),
                    );
                }
                let d = Le(data);
                self.general = Some(General {
                    group_index: d.u8(0),
                    image_index: d.u8(1),
                    order_index: d.u8(2),
                    name_index: d.u8(3),
                    coe: CoeDetails(d.u8(5)),
                    foe: d.u8(6),
                    eoe: d.u8(7),
                    soe_channels: d.u8(8),
                    ds402_channels: d.u8(9),
                    sysman_class: d.u8(10),
                    flags: d.u8(11),
                    ebus_current_ma: d.u16(12) as i16,
                    physical_ports: d.u16(16),
                    physical_memory_address: d.u16(18),
                });
            }
            kind::FMMU => self.fmmus = data.iter().map(|&b| FmmuUsage::from(b)).collect(),
            kind::SYNC_MANAGER => {
                self.check_multiple(k, word, data.len(), SiiSyncManager::LEN);
                self.sync_managers = data
                    .chunks_exact(SiiSyncManager::LEN)
                    .map(|c| {
                        let d = Le(c);
                        SiiSyncManager {
                            start: d.u16(0),
                            length: d.u16(2),
                            control: d.u8(4),
                            status: d.u8(5),
                            enable: d.u8(6),
                            kind: SmType::from(d.u8(7)),
                        }
                    })
                    .collect();
            }
            kind::FMMU_EX => {
                self.check_multiple(k, word, data.len(), FmmuEx::LEN);
                self.fmmu_ex = data
                    .chunks_exact(FmmuEx::LEN)
                    .map(|c| {
                        let d = Le(c);
                        FmmuEx {
                            reserved: d.u16(0),
                            sync_manager: d.u8(2),
                            sync_unit: d.u8(3),
                        }
                    })
                    .collect();
            }
            kind::SYNC_UNIT => {
                self.sync_units = data
                    .chunks_exact(2)
                    .map(|c| SyncUnit(u16::from_le_bytes([c[0], c[1]])))
                    .collect();
            }
            kind::TX_PDO => {
                let pdos = self.parse_pdos(k, word, data, PdoDirection::Tx);
                self.tx_pdos.extend(pdos);
            }
            kind::RX_PDO => {
                let pdos = self.parse_pdos(k, word, data, PdoDirection::Rx);
                self.rx_pdos.extend(pdos);
            }
            kind::DC => {
                self.check_multiple(k, word, data.len(), DcMode::LEN);
                self.dc_modes = data
                    .chunks_exact(DcMode::LEN)
                    .map(|c| {
                        let d = Le(c);
                        DcMode {
                            cycle_time_0: d.u32(0),
                            shift_time_0: d.u32(4) as i32,
                            shift_time_1: d.u32(8) as i32,
                            sync1_cycle_factor: d.u16(12) as i16,
                            assign_activate: d.u16(14),
                            sync0_cycle_factor: d.u16(16) as i16,
                            name_index: d.u8(18),
                            description_index: d.u8(19),
                        }
                    })
                    .collect();
            }
            other => {
                let known_raw = other == kind::DATA_TYPES
                    || (1..=9).contains(&other)
                    || (0x0800..=0xFFFE).contains(&other);
                if !known_raw {
                    self.warnings
                        .push(SiiWarning::UnknownCategory { kind: other, word });
                }
                self.other.push(RawCategory {
                    kind: other,
                    data: data.to_vec(),
                });
            }
        }
    }

    fn check_multiple(&mut self, k: u16, word: usize, len: usize, unit: usize) {
        if len % unit != 0 {
            self.malformed(
                k,
                word,
                format!(
                    "{len} bytes is not a multiple of the {unit}-byte entry; the last {} bytes are ignored",
                    len % unit
                ),
            );
        }
    }

    fn parse_strings(&mut self, word: usize, data: &[u8]) {
        let Some((&count, mut rest)) = data.split_first() else {
            self.malformed(kind::STRINGS, word, "empty category".into());
            return;
        };
        let mut strings = Vec::with_capacity(usize::from(count));
        for i in 0..count {
            let Some((&len, tail)) = rest.split_first() else {
                self.malformed(
                    kind::STRINGS,
                    word,
                    format!("declares {count} strings but ends after {i}"),
                );
                break;
            };
            let len = usize::from(len);
            if tail.len() < len {
                strings.push(SiiString(tail.to_vec()));
                self.malformed(
                    kind::STRINGS,
                    word,
                    format!(
                        "string {} declares {len} bytes but only {} remain",
                        i + 1,
                        tail.len()
                    ),
                );
                break;
            }
            strings.push(SiiString(tail[..len].to_vec()));
            rest = &tail[len..];
        }
        self.strings = strings;
    }

    fn parse_pdos(&mut self, k: u16, word: usize, data: &[u8], dir: PdoDirection) -> Vec<SiiPdo> {
        let mut pdos = Vec::new();
        let mut off = 0;
        while off + SiiPdo::HEADER_LEN <= data.len() {
            let d = Le(&data[off..]);
            let count = usize::from(d.u8(2));
            let mut pdo = SiiPdo {
                direction: dir,
                index: d.u16(0),
                sync_manager: d.u8(3),
                dc_sync: d.u8(4),
                name_index: d.u8(5),
                flags: d.u16(6),
                entries: Vec::with_capacity(count),
            };
            off += SiiPdo::HEADER_LEN;
            for i in 0..count {
                if off + SiiPdoEntry::LEN > data.len() {
                    self.malformed(
                        k,
                        word,
                        format!(
                            "PDO {:#06x} declares {count} entries but the category ends after {i}",
                            pdo.index
                        ),
                    );
                    break;
                }
                let e = Le(&data[off..off + SiiPdoEntry::LEN]);
                pdo.entries.push(SiiPdoEntry {
                    index: e.u16(0),
                    subindex: e.u8(2),
                    name_index: e.u8(3),
                    data_type: e.u8(4),
                    bit_len: e.u8(5),
                    flags: e.u16(6),
                });
                off += SiiPdoEntry::LEN;
            }
            pdos.push(pdo);
        }
        if off < data.len() && data[off..].iter().any(|&b| b != 0) {
            self.malformed(
                k,
                word,
                format!("{} trailing bytes after the last PDO", data.len() - off),
            );
        }
        pdos
    }

    /// String number `index` (1-based; 0 means "no string").
    pub fn string(&self, index: u8) -> Option<&SiiString> {
        usize::from(index)
            .checked_sub(1)
            .and_then(|i| self.strings.get(i))
    }

    /// Text of string number `index`, if present and printable.
    pub fn text(&self, index: u8) -> Option<Cow<'_, str>> {
        self.string(index)
            .filter(|s| s.is_printable())
            .map(|s| s.text())
    }

    /// The device name from the general category (its name string).
    pub fn name(&self) -> Option<Cow<'_, str>> {
        self.general.as_ref().and_then(|g| self.text(g.name_index))
    }

    /// The order number (e.g. "EL2004") from the general category.
    pub fn order_number(&self) -> Option<Cow<'_, str>> {
        self.general.as_ref().and_then(|g| self.text(g.order_index))
    }

    /// The terminal's identity from the header.
    pub fn identity(&self) -> Identity {
        self.header.identity
    }

    /// All PDOs, RxPDOs first.
    pub fn pdos(&self) -> impl Iterator<Item = &SiiPdo> {
        self.rx_pdos.iter().chain(self.tx_pdos.iter())
    }

    /// Whether the terminal has a standard mailbox (both areas configured).
    pub fn has_mailbox(&self) -> bool {
        self.header.rx_mailbox.size > 0 && self.header.tx_mailbox.size > 0
    }
}

fn parse_header(bytes: &[u8], words: &[u16]) -> SiiHeader {
    let w = |i| word(words, i);
    let dw = |i| u32::from(w(i)) | (u32::from(w(i + 1)) << 16);
    let checksum = (w(usize::from(CHECKSUM_WORD)) & 0xFF) as u8;
    SiiHeader {
        pdi_control: w(0x00),
        pdi_config: w(0x01),
        sync_impulse_len: w(0x02),
        pdi_config2: w(0x03),
        station_alias: w(usize::from(ALIAS_WORD)),
        checksum,
        checksum_ok: checksum == header_checksum(bytes),
        identity: Identity {
            vendor_id: dw(0x08),
            product_code: dw(0x0A),
            revision: dw(0x0C),
            serial: dw(usize::from(SERIAL_WORD)),
        },
        bootstrap_rx_mailbox: MailboxArea {
            offset: w(0x14),
            size: w(0x15),
        },
        bootstrap_tx_mailbox: MailboxArea {
            offset: w(0x16),
            size: w(0x17),
        },
        rx_mailbox: MailboxArea {
            offset: w(0x18),
            size: w(0x19),
        },
        tx_mailbox: MailboxArea {
            offset: w(0x1A),
            size: w(0x1B),
        },
        mailbox_protocols: MailboxProtocols(w(0x1C)),
        eeprom_size_bytes: (u32::from(w(0x3E)) + 1) * 128,
        version: w(0x3F),
    }
}

/// Looks for the first word address at or after `from` where a well-formed category
/// list starts: a known category type whose chain of headers stays inside the image and
/// ends at an end marker or exactly at the end of the image.
fn resync(words: &[u16], from: usize) -> Option<usize> {
    (from..words.len().saturating_sub(1))
        .find(|&p| kind::is_known(words[p]) && chain_plausible(words, p))
}

fn chain_plausible(words: &[u16], mut pos: usize) -> bool {
    let n = words.len();
    loop {
        if words.get(pos) == Some(&kind::END) {
            return true;
        }
        if pos + 2 > n {
            return pos >= n.saturating_sub(1);
        }
        let k = words[pos];
        let plausible_kind = kind::is_known(k) || (0x0800..0xFFFF).contains(&k) || k == kind::NOP;
        let end = pos + 2 + usize::from(words[pos + 1]);
        if !plausible_kind || end > n {
            return false;
        }
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal_header() -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b[0x08 * 2] = 0x02; // vendor 2
        b[0x0A * 2..0x0A * 2 + 4].copy_from_slice(&0x07D4_3052u32.to_le_bytes());
        b[0x3E * 2] = 0x0F;
        let crc = header_checksum(&b);
        b[14] = crc;
        b
    }

    #[test]
    fn checksum_matches_known_header() {
        // ETG.1000.6: CRC-8 (0x07, init 0xFF) over words 0..6; EK1100 image stores 0x46.
        let bytes = [0x00, 0x0D, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(header_checksum(&bytes), 0x46);
    }

    #[test]
    fn too_short_is_an_error() {
        assert_eq!(
            SiiImage::parse(&[0u8; 100]),
            Err(SiiError::TooShort { len: 100 })
        );
    }

    #[test]
    fn all_ff_is_blank() {
        let e = SiiImage::parse(&[0xFF; 512]).unwrap_err();
        assert!(matches!(e, SiiError::Blank { .. }), "{e}");
    }

    #[test]
    fn header_only_image_reports_missing_end_marker() {
        let img = SiiImage::parse(&minimal_header()).expect("parse");
        assert_eq!(img.identity().product_code, 0x07D4_3052);
        assert_eq!(img.end, ListEnd::EndOfImage);
        assert_eq!(img.warnings, vec![SiiWarning::NoEndMarker { word: 0x40 }]);
    }

    #[test]
    fn strings_running_past_their_category_are_reported() {
        let mut b = minimal_header();
        // Strings category of 3 words: count 2, "ab", then a 9-byte string that is cut.
        b.extend_from_slice(&[10, 0, 3, 0, 2, 2, b'a', b'b', 9, b'x']);
        b.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        let img = SiiImage::parse(&b).expect("parse");
        assert_eq!(img.text(1).as_deref(), Some("ab"));
        assert_eq!(img.strings.len(), 2);
        assert!(
            img.warnings
                .iter()
                .any(|w| matches!(w, SiiWarning::MalformedCategory { kind: 10, .. })),
            "{:?}",
            img.warnings
        );
    }

    #[test]
    fn pdo_with_too_many_entries_keeps_the_ones_present() {
        let mut b = minimal_header();
        // RxPDO category: one PDO header declaring 3 entries but only 1 present.
        let mut data = vec![0x00, 0x16, 3, 0, 0, 0, 0, 0];
        data.extend_from_slice(&[0x00, 0x70, 1, 0, 1, 1, 0, 0]);
        b.extend_from_slice(&51u16.to_le_bytes());
        b.extend_from_slice(&((data.len() / 2) as u16).to_le_bytes());
        b.extend_from_slice(&data);
        b.extend_from_slice(&[0xFF, 0xFF]);
        let img = SiiImage::parse(&b).expect("parse");
        assert_eq!(img.rx_pdos.len(), 1);
        assert_eq!(img.rx_pdos[0].entries.len(), 1);
        assert_eq!(img.rx_pdos[0].entries[0].index, 0x7000);
        assert_eq!(img.end, ListEnd::EndMarker(0x40 + 2 + 8));
    }

    #[test]
    fn latin1_strings_decode() {
        let s = SiiString(b"1\xb5s".to_vec());
        assert_eq!(s.text(), "1µs");
        assert!(s.is_printable());
        assert!(!SiiString(vec![b'B', b'M', 0x00, 0x01, b'x']).is_printable());
    }
}
