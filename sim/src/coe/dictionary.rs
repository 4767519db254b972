//! The object dictionary behind a simulated terminal's CoE server: objects, entries, access
//! rights by index range, and loading from the recorded `INDEX:SUB` JSON dictionaries.
//!
//! Access rights are decided from the index ranges of CiA 301 / ETG.1000.6 section 5.6.7
//! (see `docs/sim.md`): the communication area 0x1000-0x1FFF is read-only except the PDO
//! mapping (0x1600-0x17FF, 0x1A00-0x1BFF) and assignment (0x1C10-0x1C2F) objects, which
//! are writable in PRE-OP only; 0x6000-0x6FFF (inputs), 0x9000-0x9FFF (information) and
//! 0xA000-0xAFFF (diagnosis) and 0xF000-0xFFFF (device profile, except the code word
//! 0xF008) are read-only; 0x2000-0x5FFF, 0x7000-0x7FFF (outputs) and 0x8000-0x8FFF
//! (settings) are writable in PRE-OP, SAFE-OP and OP.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::abort::AbortCode;

/// CoE data type codes. ETG.1000.6 table 64 (CiA 301 table 44).
pub mod data_type {
    /// BOOLEAN.
    pub const BOOLEAN: u16 = 0x0001;
    /// INTEGER8.
    pub const INTEGER8: u16 = 0x0002;
    /// INTEGER16.
    pub const INTEGER16: u16 = 0x0003;
    /// INTEGER32.
    pub const INTEGER32: u16 = 0x0004;
    /// UNSIGNED8.
    pub const UNSIGNED8: u16 = 0x0005;
    /// UNSIGNED16.
    pub const UNSIGNED16: u16 = 0x0006;
    /// UNSIGNED32.
    pub const UNSIGNED32: u16 = 0x0007;
    /// VISIBLE_STRING.
    pub const VISIBLE_STRING: u16 = 0x0009;
    /// OCTET_STRING.
    pub const OCTET_STRING: u16 = 0x000A;
    /// UNSIGNED64.
    pub const UNSIGNED64: u16 = 0x001B;
    /// BIT1; BIT2..BIT8 follow as 0x0031..0x0037.
    pub const BIT1: u16 = 0x0030;
}

/// Object codes of an object description. ETG.1000.6 table 62.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectCode {
    /// A single value (subindex 0 only).
    Var,
    /// Several entries of one data type.
    Array,
    /// Several entries of possibly different types.
    Record,
}

impl ObjectCode {
    /// The code as sent on the wire. ETG.1000.6 table 62.
    pub fn code(self) -> u8 {
        match self {
            Self::Var => 7,
            Self::Array => 8,
            Self::Record => 9,
        }
    }
}

/// The AL state that decides which objects may be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessState {
    /// INIT or BOOTSTRAP: no mailbox, treated as PRE-OP by the dictionary.
    Init,
    /// PRE-OPERATIONAL.
    PreOp,
    /// SAFE-OPERATIONAL.
    SafeOp,
    /// OPERATIONAL.
    Op,
}

impl AccessState {
    /// From the state bits of the AL status register (0x0130 bits 0-3). ETG.1000.4 table 31.
    pub fn from_al_state(code: u8) -> Self {
        match code & 0x0F {
            2 => Self::PreOp,
            4 => Self::SafeOp,
            8 => Self::Op,
            _ => Self::Init,
        }
    }
}

/// Object access flags of an entry description. ETG.1000.6 table 55.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access(pub u16);

impl Access {
    /// Readable in PRE-OP.
    pub const READ_PREOP: u16 = 1 << 0;
    /// Readable in SAFE-OP.
    pub const READ_SAFEOP: u16 = 1 << 1;
    /// Readable in OP.
    pub const READ_OP: u16 = 1 << 2;
    /// Writable in PRE-OP.
    pub const WRITE_PREOP: u16 = 1 << 3;
    /// Writable in SAFE-OP.
    pub const WRITE_SAFEOP: u16 = 1 << 4;
    /// Writable in OP.
    pub const WRITE_OP: u16 = 1 << 5;
    /// Mappable into an RxPDO.
    pub const RXPDO: u16 = 1 << 6;
    /// Mappable into a TxPDO.
    pub const TXPDO: u16 = 1 << 7;
    /// Part of the backup parameters.
    pub const BACKUP: u16 = 1 << 8;
    /// Part of the settings.
    pub const SETTINGS: u16 = 1 << 9;
    /// Readable in every state.
    pub const READ_ALL: u16 = Self::READ_PREOP | Self::READ_SAFEOP | Self::READ_OP;
    /// Writable in every state.
    pub const WRITE_ALL: u16 = Self::WRITE_PREOP | Self::WRITE_SAFEOP | Self::WRITE_OP;

    /// Whether the entry may be read in `state`.
    pub fn readable(self, state: AccessState) -> bool {
        self.0
            & match state {
                AccessState::Init | AccessState::PreOp => Self::READ_PREOP,
                AccessState::SafeOp => Self::READ_SAFEOP,
                AccessState::Op => Self::READ_OP,
            }
            != 0
    }

    /// Whether the entry may be written in `state`.
    pub fn writable(self, state: AccessState) -> bool {
        self.0
            & match state {
                AccessState::Init | AccessState::PreOp => Self::WRITE_PREOP,
                AccessState::SafeOp => Self::WRITE_SAFEOP,
                AccessState::Op => Self::WRITE_OP,
            }
            != 0
    }

    /// Whether the entry can be written in some state (as opposed to read-only).
    pub fn writable_somewhere(self) -> bool {
        self.0 & Self::WRITE_ALL != 0
    }

    /// Whether the entry can be read in some state (as opposed to write-only).
    pub fn readable_somewhere(self) -> bool {
        self.0 & Self::READ_ALL != 0
    }
}

/// The access rights of an entry by its index (see the module documentation).
pub fn access_for(index: u16, sub: u8) -> Access {
    let ro = Access::READ_ALL;
    let rw = Access::READ_ALL | Access::WRITE_ALL;
    let rw_preop = Access::READ_ALL | Access::WRITE_PREOP;
    Access(match index {
        _ if is_pdo_mapping(index) || is_pdo_assign(index) => rw_preop,
        0x1000..=0x1FFF => ro,
        0x2000..=0x5FFF => rw,
        0x6000..=0x6FFF if sub == 0 => ro,
        0x6000..=0x6FFF => ro | Access::TXPDO,
        0x7000..=0x7FFF if sub == 0 => ro,
        0x7000..=0x7FFF => rw | Access::RXPDO,
        0x8000..=0x8FFF if sub == 0 => ro,
        0x8000..=0x8FFF => rw | Access::BACKUP | Access::SETTINGS,
        0xF008 => rw,
        _ => ro,
    })
}

/// Whether `index` is a PDO mapping object (RxPDO 0x1600-0x17FF, TxPDO 0x1A00-0x1BFF). ETG.1000.6 table 65.
pub fn is_pdo_mapping(index: u16) -> bool {
    matches!(index, 0x1600..=0x17FF | 0x1A00..=0x1BFF)
}

/// Whether `index` is a SyncManager PDO assignment object (0x1C10-0x1C2F). ETG.1000.6 table 67.
pub fn is_pdo_assign(index: u16) -> bool {
    matches!(index, 0x1C10..=0x1C2F)
}

/// One entry (subindex) of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name, as the SDO information service reports it.
    pub name: String,
    /// Its CoE data type (see [`data_type`]).
    pub data_type: u16,
    /// Its length in bits.
    pub bit_len: u16,
    /// Its access rights.
    pub access: Access,
    /// Its current value, little-endian, `ceil(bit_len / 8)` bytes for fixed-size types.
    pub value: Vec<u8>,
}

impl Entry {
    /// Whether the entry holds a string, whose length may vary.
    pub fn is_string(&self) -> bool {
        matches!(
            self.data_type,
            data_type::VISIBLE_STRING | data_type::OCTET_STRING
        )
    }
}

/// One object of the dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its index.
    pub index: u16,
    /// Its name.
    pub name: String,
    /// VAR, ARRAY or RECORD.
    pub code: ObjectCode,
    /// Its entries by subindex (subindex 0 of an ARRAY/RECORD holds the number of entries).
    pub entries: BTreeMap<u8, Entry>,
}

impl Object {
    /// The highest subindex the object has.
    pub fn max_subindex(&self) -> u8 {
        self.entries.keys().next_back().copied().unwrap_or(0)
    }

    /// The data type reported in an object description: that of subindex 0 for a VAR, of
    /// subindex 1 for an ARRAY, and 0x002A-style record types are not modelled so a RECORD
    /// reports the type of its first entry.
    pub fn data_type(&self) -> u16 {
        let sub = if self.code == ObjectCode::Var { 0 } else { 1 };
        self.entries
            .get(&sub)
            .or_else(|| self.entries.values().next())
            .map_or(0, |e| e.data_type)
    }
}

/// An error loading a dictionary file.
#[derive(Debug, thiserror::Error)]
pub enum DictionaryError {
    /// The file could not be read.
    #[error("cannot read dictionary {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("dictionary {path} is not valid: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// A CoE object dictionary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectDictionary {
    objects: BTreeMap<u16, Object>,
}

/// The shape of `../shared/testdata/sdo/*.json`.
#[derive(serde::Deserialize)]
struct DictionaryFile {
    objects: BTreeMap<String, String>,
}

impl ObjectDictionary {
    /// An empty dictionary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads a dictionary recorded as `{"objects": {"INDEX:SUB": "hex LE value"}}`.
    pub fn from_json_file(path: &Path) -> Result<Self, DictionaryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DictionaryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_str(&text).map_err(|message| DictionaryError::Format {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses a recorded dictionary from JSON text; the error names the offending key.
    pub fn from_json_str(text: &str) -> Result<Self, String> {
        let file: DictionaryFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut values = BTreeMap::new();
        for (key, hex) in &file.objects {
            let (index, sub) = parse_key(key).ok_or_else(|| {
                format!("key {key:?} is not INDEX:SUB in hexadecimal (e.g. \"1018:01\")")
            })?;
            let value = parse_hex(hex).ok_or_else(|| {
                format!("value {hex:?} of {key} is not an even-length hex string")
            })?;
            values.insert((index, sub), value);
        }
        Ok(Self::from_values(&values))
    }

    /// Builds a dictionary from raw `(index, subindex) -> value` pairs: subindex 0 of
    /// records is derived where missing (the number of non-zero entries for PDO mapping
    /// and assignment objects, the highest subindex otherwise), data types and bit lengths
    /// from the value's length and from the PDO mappings that reference the entry.
    pub fn from_values(values: &BTreeMap<(u16, u8), Vec<u8>>) -> Self {
        let mut od = Self::new();
        let mut by_index: BTreeMap<u16, BTreeMap<u8, Vec<u8>>> = BTreeMap::new();
        for (&(index, sub), value) in values {
            by_index
                .entry(index)
                .or_default()
                .insert(sub, value.clone());
        }
        for (index, subs) in by_index {
            let only_sub0 = subs.len() == 1 && subs.contains_key(&0);
            let code = if only_sub0 {
                ObjectCode::Var
            } else if is_pdo_assign(index) || index == 0x1C00 {
                ObjectCode::Array
            } else {
                ObjectCode::Record
            };
            let mut object = Object {
                index,
                name: object_name(index),
                code,
                entries: BTreeMap::new(),
            };
            for (&sub, value) in &subs {
                object
                    .entries
                    .insert(sub, default_entry(index, sub, value.clone()));
            }
            if code != ObjectCode::Var && !subs.contains_key(&0) {
                let count = if is_pdo_mapping(index) || is_pdo_assign(index) {
                    subs.range(1..)
                        .take_while(|(s, v)| {
                            usize::from(**s) == subs.range(1..**s).count() + 1
                                && v.iter().any(|b| *b != 0)
                        })
                        .count() as u8
                } else {
                    subs.keys().next_back().copied().unwrap_or(0)
                };
                object
                    .entries
                    .insert(0, default_entry(index, 0, vec![count]));
            }
            od.objects.insert(index, object);
        }
        od.refine_from_mappings();
        od
    }

    /// Sets bit lengths and types of entries that PDO mappings map with fewer bits than
    /// their stored value has (booleans and bit fields recorded as whole bytes).
    fn refine_from_mappings(&mut self) {
        let mut widest: BTreeMap<(u16, u8), u16> = BTreeMap::new();
        for object in self.objects.values().filter(|o| is_pdo_mapping(o.index)) {
            for (sub, entry) in object.entries.range(1..) {
                let _ = sub;
                if let Some(m) = decode_mapping(&entry.value) {
                    if m.index != 0 {
                        let w = widest.entry((m.index, m.sub)).or_insert(0);
                        *w = (*w).max(u16::from(m.bit_len));
                    }
                }
            }
        }
        for ((index, sub), bits) in widest {
            if let Some(entry) = self
                .objects
                .get_mut(&index)
                .and_then(|o| o.entries.get_mut(&sub))
            {
                if bits < entry.bit_len && !entry.is_string() {
                    entry.bit_len = bits;
                    entry.data_type = match bits {
                        1 => data_type::BOOLEAN,
                        2..=7 => data_type::BIT1 + bits - 1,
                        8 => data_type::UNSIGNED8,
                        _ => data_type::UNSIGNED16,
                    };
                    entry.value.truncate(usize::from(bits.div_ceil(8)));
                }
            }
        }
    }

    /// Inserts or replaces an object.
    pub fn insert(&mut self, object: Object) {
        self.objects.insert(object.index, object);
    }

    /// The object at `index`.
    pub fn object(&self, index: u16) -> Option<&Object> {
        self.objects.get(&index)
    }

    /// The object at `index`, mutably.
    pub fn object_mut(&mut self, index: u16) -> Option<&mut Object> {
        self.objects.get_mut(&index)
    }

    /// Every object, by ascending index.
    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.objects.values()
    }

    /// The number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the dictionary has no object.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The entry at `index:sub`, or the abort code a master would get for it.
    pub fn entry(&self, index: u16, sub: u8) -> Result<&Entry, AbortCode> {
        self.objects
            .get(&index)
            .ok_or(AbortCode::OBJECT_DOES_NOT_EXIST)?
            .entries
            .get(&sub)
            .ok_or(AbortCode::SUBINDEX_DOES_NOT_EXIST)
    }

    /// The raw value at `index:sub`, without access checks (for the terminal's own use).
    pub fn value(&self, index: u16, sub: u8) -> Option<&[u8]> {
        self.entry(index, sub).ok().map(|e| e.value.as_slice())
    }

    /// The value at `index:sub` as an unsigned integer (up to 8 bytes, little-endian).
    pub fn value_u64(&self, index: u16, sub: u8) -> Option<u64> {
        self.value(index, sub).map(le_u64)
    }

    /// Sets the raw value at `index:sub` without access checks, keeping the entry's length
    /// (for the terminal's own use: process data, models). Returns false if there is no
    /// such entry.
    pub fn set_value(&mut self, index: u16, sub: u8, value: &[u8]) -> bool {
        match self
            .objects
            .get_mut(&index)
            .and_then(|o| o.entries.get_mut(&sub))
        {
            Some(entry) => {
                let n = entry.value.len().max(1);
                let mut v = value.to_vec();
                v.resize(n, 0);
                entry.value = v;
                true
            }
            None => false,
        }
    }

    /// Sets the value at `index:sub` from an unsigned integer (truncated to the entry's
    /// length). Returns false if there is no such entry.
    pub fn set_value_u64(&mut self, index: u16, sub: u8, value: u64) -> bool {
        self.set_value(index, sub, &value.to_le_bytes())
    }

    /// An SDO upload of one entry as a master does it: checks existence and read access.
    pub fn upload(&self, index: u16, sub: u8, state: AccessState) -> Result<Vec<u8>, AbortCode> {
        let entry = self.entry(index, sub)?;
        if !entry.access.readable_somewhere() {
            return Err(AbortCode::WRITE_ONLY);
        }
        if !entry.access.readable(state) {
            return Err(AbortCode::DEVICE_STATE);
        }
        Ok(entry.value.clone())
    }

    /// A complete-access upload starting at subindex 0 or 1: every entry in order, subindex
    /// 0 padded to 16 bits (ETG.1000.6 5.6.2.1.2), bit-sized entries packed.
    pub fn upload_complete(
        &self,
        index: u16,
        first_sub: u8,
        state: AccessState,
    ) -> Result<Vec<u8>, AbortCode> {
        let object = self
            .objects
            .get(&index)
            .ok_or(AbortCode::OBJECT_DOES_NOT_EXIST)?;
        if first_sub > 1 {
            return Err(AbortCode::SUBINDEX_DOES_NOT_EXIST);
        }
        if object.code == ObjectCode::Var {
            return self.upload(index, 0, state);
        }
        let mut bits = BitWriter::default();
        for (&sub, entry) in object.entries.range(first_sub..) {
            if !entry.access.readable(state) {
                return Err(if entry.access.readable_somewhere() {
                    AbortCode::DEVICE_STATE
                } else {
                    AbortCode::WRITE_ONLY
                });
            }
            if sub == 0 {
                bits.push_bytes(&[entry.value.first().copied().unwrap_or(0), 0]);
            } else if entry.bit_len % 8 == 0 || entry.is_string() {
                bits.align();
                bits.push_bytes(&entry.value);
            } else {
                bits.push_bits(le_u64(&entry.value), entry.bit_len);
            }
        }
        Ok(bits.finish())
    }

    /// An SDO download of one entry as a master does it: existence, write access in
    /// `state`, length, and the PDO mapping/assignment rules of ETG.1000.6 5.6.7.4.
    pub fn download(
        &mut self,
        index: u16,
        sub: u8,
        data: &[u8],
        state: AccessState,
    ) -> Result<(), AbortCode> {
        let entry = self.entry(index, sub)?;
        if !entry.access.writable_somewhere() {
            return Err(AbortCode::READ_ONLY);
        }
        if !entry.access.writable(state) {
            return Err(AbortCode::DEVICE_STATE);
        }
        let value = if entry.is_string() {
            if data.len() > entry.value.len().max(1) {
                return Err(AbortCode::LENGTH_TOO_HIGH);
            }
            data.to_vec()
        } else {
            let want = usize::from(entry.bit_len.div_ceil(8)).max(1);
            match data.len().cmp(&want) {
                std::cmp::Ordering::Greater => return Err(AbortCode::LENGTH_TOO_HIGH),
                std::cmp::Ordering::Less => return Err(AbortCode::LENGTH_TOO_LOW),
                std::cmp::Ordering::Equal => data.to_vec(),
            }
        };
        if is_pdo_mapping(index) || is_pdo_assign(index) {
            self.check_pdo_write(index, sub, &value)?;
        }
        if let Some(e) = self
            .objects
            .get_mut(&index)
            .and_then(|o| o.entries.get_mut(&sub))
        {
            e.value = value;
        }
        Ok(())
    }

    /// A complete-access download starting at subindex 0 or 1 (layout as in
    /// [`Self::upload_complete`]).
    pub fn download_complete(
        &mut self,
        index: u16,
        first_sub: u8,
        data: &[u8],
        state: AccessState,
    ) -> Result<(), AbortCode> {
        let object = self
            .objects
            .get(&index)
            .ok_or(AbortCode::OBJECT_DOES_NOT_EXIST)?;
        if first_sub > 1 {
            return Err(AbortCode::SUBINDEX_DOES_NOT_EXIST);
        }
        if object.code == ObjectCode::Var {
            return self.download(index, 0, data, state);
        }
        // Lay the data out over the entries; a short buffer may stop early (a master
        // writing sub 0 and only the entries it counts), a long one is an error.
        let mut reader = BitReader::new(data);
        let mut updates: Vec<(u8, Vec<u8>)> = Vec::new();
        for (&sub, entry) in object.entries.range(first_sub..) {
            if reader.remaining_bits() == 0 {
                break;
            }
            let value = if sub == 0 {
                let v = reader.bytes(2).ok_or(AbortCode::LENGTH_TOO_LOW)?;
                vec![v[0]]
            } else if entry.bit_len % 8 == 0 || entry.is_string() {
                reader
                    .bytes(entry.value.len())
                    .ok_or(AbortCode::LENGTH_TOO_LOW)?
            } else {
                let v = reader
                    .bits(entry.bit_len)
                    .ok_or(AbortCode::LENGTH_TOO_LOW)?;
                v.to_le_bytes()[..usize::from(entry.bit_len.div_ceil(8))].to_vec()
            };
            if !entry.access.writable(state) && entry.value != value {
                return Err(if entry.access.writable_somewhere() {
                    AbortCode::DEVICE_STATE
                } else {
                    AbortCode::READ_ONLY
                });
            }
            updates.push((sub, value));
        }
        if reader.remaining_bits() >= 8 {
            return Err(AbortCode::LENGTH_TOO_HIGH);
        }
        let pdo = is_pdo_mapping(index) || is_pdo_assign(index);
        // Apply with sub 0 last so that mapping checks see the new entries.
        let mut trial = self.clone();
        let count = updates
            .iter()
            .find(|(s, _)| *s == 0)
            .map(|(_, v)| v.clone());
        if pdo {
            trial.set_value(index, 0, &[0]);
        }
        for (sub, value) in &updates {
            if *sub != 0 {
                if let Some(e) = trial
                    .objects
                    .get_mut(&index)
                    .and_then(|o| o.entries.get_mut(sub))
                {
                    e.value = value.clone();
                }
            }
        }
        if let Some(count) = count {
            if pdo {
                trial.check_pdo_write(index, 0, &count)?;
            }
            trial.set_value(index, 0, &count);
        }
        *self = trial;
        Ok(())
    }

    /// The rules for writing PDO mapping and assignment objects. ETG.1000.6 5.6.7.4.
    fn check_pdo_write(&self, index: u16, sub: u8, value: &[u8]) -> Result<(), AbortCode> {
        let object = self
            .objects
            .get(&index)
            .ok_or(AbortCode::OBJECT_DOES_NOT_EXIST)?;
        let count = object
            .entries
            .get(&0)
            .and_then(|e| e.value.first().copied())
            .unwrap_or(0);
        if sub != 0 {
            return if count != 0 {
                Err(AbortCode::SUBINDEX0_MUST_BE_ZERO)
            } else {
                Ok(())
            };
        }
        let new_count = value.first().copied().unwrap_or(0);
        if new_count > object.max_subindex() {
            return Err(AbortCode::VALUE_RANGE);
        }
        for n in 1..=new_count {
            let raw = object
                .entries
                .get(&n)
                .map(|e| e.value.as_slice())
                .unwrap_or(&[]);
            if is_pdo_assign(index) {
                let pdo = u16::from_le_bytes([
                    raw.first().copied().unwrap_or(0),
                    raw.get(1).copied().unwrap_or(0),
                ]);
                let rx = (0x1C10..=0x1C1F).contains(&index) && index % 2 == 0;
                let ok = if rx {
                    (0x1600..=0x17FF).contains(&pdo)
                } else {
                    (0x1A00..=0x1BFF).contains(&pdo)
                };
                if !ok || !self.objects.contains_key(&pdo) {
                    return Err(AbortCode::VALUE_RANGE);
                }
            } else {
                let m = decode_mapping(raw).ok_or(AbortCode::CANNOT_BE_MAPPED)?;
                if m.index == 0 {
                    continue; // a gap
                }
                let entry = self
                    .entry(m.index, m.sub)
                    .map_err(|_| AbortCode::CANNOT_BE_MAPPED)?;
                let flag = if index < 0x1A00 {
                    Access::RXPDO
                } else {
                    Access::TXPDO
                };
                // At most the entry's own length (beyond: abort 0x06040041 "object cannot
                // be mapped to the PDO"); fewer bits map its low-order part,
                // as the compact PDOs of real terminals do (EL7041 0x1A00 maps the 32-bit
                // encoder 0x6000:11 with 16 bits).
                let bits = u16::from(m.bit_len);
                if entry.access.0 & flag == 0 || bits == 0 || bits > entry.bit_len {
                    return Err(AbortCode::CANNOT_BE_MAPPED);
                }
            }
        }
        Ok(())
    }
}

/// One entry of a PDO mapping object: object index, subindex and bit length. ETG.1000.6 table 66.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingEntry {
    /// The mapped object's index (0 for a gap).
    pub index: u16,
    /// The mapped entry's subindex.
    pub sub: u8,
    /// The number of bits mapped.
    pub bit_len: u8,
}

/// Decodes a PDO mapping entry value (UNSIGNED32: index << 16 | sub << 8 | bits).
pub fn decode_mapping(raw: &[u8]) -> Option<MappingEntry> {
    let v: [u8; 4] = raw.get(..4)?.try_into().ok()?;
    let v = u32::from_le_bytes(v);
    Some(MappingEntry {
        index: (v >> 16) as u16,
        sub: (v >> 8) as u8,
        bit_len: v as u8,
    })
}

/// A little-endian unsigned value of up to 8 bytes.
pub fn le_u64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .enumerate()
        .fold(0, |acc, (i, b)| acc | u64::from(*b) << (8 * i))
}

fn parse_key(key: &str) -> Option<(u16, u8)> {
    let (i, s) = key.split_once(':')?;
    Some((
        u16::from_str_radix(i, 16).ok()?,
        u8::from_str_radix(s, 16).ok()?,
    ))
}

fn parse_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// An entry with the default name, type and access for its place in the dictionary.
pub fn default_entry(index: u16, sub: u8, value: Vec<u8>) -> Entry {
    let text_like = matches!(index, 0x1008..=0x100A)
        || (value.len() > 8 && value.iter().all(|b| b.is_ascii_graphic() || *b == b' '));
    let data_type = match value.len() {
        _ if sub == 0 && !matches!(index, 0x1000..=0x100A) && value.len() == 1 => {
            data_type::UNSIGNED8
        }
        _ if text_like => data_type::VISIBLE_STRING,
        1 => data_type::UNSIGNED8,
        2 => data_type::UNSIGNED16,
        4 => data_type::UNSIGNED32,
        8 => data_type::UNSIGNED64,
        _ => data_type::OCTET_STRING,
    };
    let mut access = access_for(index, sub);
    if sub == 0 && !(is_pdo_mapping(index) || is_pdo_assign(index)) && index >= 0x1000 {
        // Subindex 0 of a record only counts its entries.
        if value.len() == 1 && !matches!(index, 0x1000..=0x100A) {
            access = Access(Access::READ_ALL);
        }
    }
    Entry {
        name: entry_name(index, sub),
        data_type,
        bit_len: (value.len() * 8) as u16,
        access,
        value,
    }
}

/// The name the SDO information service gives an object.
pub fn object_name(index: u16) -> String {
    let fixed = match index {
        0x1000 => "Device type",
        0x1008 => "Device name",
        0x1009 => "Hardware version",
        0x100A => "Software version",
        0x1011 => "Restore default parameters",
        0x1018 => "Identity",
        0x10F0 => "Backup parameter handling",
        0x10F3 => "Diagnosis History",
        0x10F8 => "Actual Time Stamp",
        0x1C00 => "Sync manager type",
        0x1C32 => "SM output parameter",
        0x1C33 => "SM input parameter",
        0xF000 => "Modular device profile",
        0xF008 => "Code word",
        0xF010 => "Module list",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_string();
    }
    match index {
        0x1400..=0x15FF => format!("RxPDO-Par {:#06x}", index),
        0x1600..=0x17FF => format!("RxPDO-Map {:#06x}", index),
        0x1800..=0x19FF => format!("TxPDO-Par {:#06x}", index),
        0x1A00..=0x1BFF => format!("TxPDO-Map {:#06x}", index),
        0x1C10..=0x1C2F => format!("SM{} PDO assign", index - 0x1C10),
        0x6000..=0x6FFF => format!("Inputs {:#06x}", index),
        0x7000..=0x7FFF => format!("Outputs {:#06x}", index),
        0x8000..=0x8FFF => format!("Settings {:#06x}", index),
        0x9000..=0x9FFF => format!("Info data {:#06x}", index),
        0xA000..=0xAFFF => format!("Diag data {:#06x}", index),
        _ => format!("Object {:#06x}", index),
    }
}

/// The name the SDO information service gives an entry.
pub fn entry_name(index: u16, sub: u8) -> String {
    let fixed = match (index, sub) {
        (0x1018, 1) => "Vendor ID",
        (0x1018, 2) => "Product code",
        (0x1018, 3) => "Revision",
        (0x1018, 4) => "Serial number",
        (_, 0) => "SubIndex 000",
        _ => "",
    };
    if fixed.is_empty() {
        format!("SubIndex {sub:03}")
    } else {
        fixed.to_string()
    }
}

impl fmt::Display for ObjectDictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "object dictionary of {} objects", self.objects.len())
    }
}

/// Packs values LSB-first into bytes, as complete access and process data lay them out.
#[derive(Debug, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    bit: usize,
}

impl BitWriter {
    /// Appends the low `n` bits of `value`.
    pub fn push_bits(&mut self, value: u64, n: u16) {
        for i in 0..usize::from(n) {
            let byte = self.bit / 8;
            if byte >= self.bytes.len() {
                self.bytes.push(0);
            }
            if i < 64 && (value >> i) & 1 != 0 {
                self.bytes[byte] |= 1 << (self.bit % 8);
            }
            self.bit += 1;
        }
    }

    /// Moves to the next byte boundary.
    pub fn align(&mut self) {
        self.bit = self.bit.div_ceil(8) * 8;
        self.bytes.resize(self.bit / 8, 0);
    }

    /// Appends whole bytes at the next byte boundary.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.align();
        self.bytes.extend_from_slice(bytes);
        self.bit += bytes.len() * 8;
    }

    /// The packed bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.align();
        self.bytes
    }
}

/// Reads values LSB-first out of bytes (the inverse of [`BitWriter`]).
#[derive(Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, bit: 0 }
    }

    /// The bits not read yet.
    pub fn remaining_bits(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.bit)
    }

    /// Reads `n` bits (at most 64), or None past the end.
    pub fn bits(&mut self, n: u16) -> Option<u64> {
        if usize::from(n) > self.remaining_bits() || n > 64 {
            return None;
        }
        let mut v = 0u64;
        for i in 0..usize::from(n) {
            let b = self.data[self.bit / 8] >> (self.bit % 8) & 1;
            v |= u64::from(b) << i;
            self.bit += 1;
        }
        Some(v)
    }

    /// Reads `n` whole bytes from the next byte boundary, or None past the end.
    pub fn bytes(&mut self, n: usize) -> Option<Vec<u8>> {
        self.bit = self.bit.div_ceil(8) * 8;
        let start = self.bit / 8;
        let out = self.data.get(start..start + n)?.to_vec();
        self.bit += n * 8;
        Some(out)
    }
}
