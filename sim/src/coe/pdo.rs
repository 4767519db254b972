//! The process-data layout a terminal's PDO assignment (0x1C12/0x1C13, generally
//! 0x1C10+n for SyncManager n) and PDO mapping (0x16xx/0x1Axx) objects describe, and the
//! copying of process data between SyncManager buffers and dictionary entries.
//! ETG.1000.6 section 5.6.7.4.

use super::dictionary::{BitReader, BitWriter, ObjectDictionary, decode_mapping, le_u64};

/// SyncManager type values of object 0x1C00. ETG.1000.6 table 67.
pub mod sm_type {
    /// Unused.
    pub const UNUSED: u8 = 0;
    /// Mailbox receive (master to terminal).
    pub const MAILBOX_OUT: u8 = 1;
    /// Mailbox send (terminal to master).
    pub const MAILBOX_IN: u8 = 2;
    /// Process data outputs.
    pub const OUTPUTS: u8 = 3;
    /// Process data inputs.
    pub const INPUTS: u8 = 4;
}

/// One mapped entry placed in a SyncManager's process data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Object index (0 for a gap).
    pub index: u16,
    /// Subindex.
    pub sub: u8,
    /// Bit offset from the start of the SyncManager's data.
    pub bit_offset: u32,
    /// Bit length.
    pub bit_len: u8,
}

/// The process data of one SyncManager.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmLayout {
    /// The SyncManager number.
    pub sm: u8,
    /// Whether it carries outputs (RxPDOs) rather than inputs (TxPDOs).
    pub outputs: bool,
    /// The PDOs assigned, in order.
    pub pdos: Vec<u16>,
    /// The entries, in order.
    pub entries: Vec<Placed>,
    /// The total length in bits.
    pub bits: u32,
}

impl SmLayout {
    /// The length in bytes the SyncManager must be configured with.
    pub fn byte_len(&self) -> usize {
        self.bits.div_ceil(8) as usize
    }
}

/// Why the PDO objects do not describe a valid layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// An assigned PDO has no mapping object.
    #[error("SM{sm} assignment 0x{assign:04X} names PDO 0x{pdo:04X}, which does not exist")]
    MissingPdo {
        /// SyncManager.
        sm: u8,
        /// Assignment object.
        assign: u16,
        /// The PDO named.
        pdo: u16,
    },
    /// A mapping entry names an object that does not exist.
    #[error("PDO 0x{pdo:04X} maps 0x{index:04X}:{sub:02X}, which does not exist")]
    MissingEntry {
        /// Mapping object.
        pdo: u16,
        /// Mapped index.
        index: u16,
        /// Mapped subindex.
        sub: u8,
    },
}

/// The process-data layout of a terminal: one [`SmLayout`] per process-data SyncManager.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessDataLayout {
    /// The SyncManagers with outputs or inputs, by ascending number.
    pub sms: Vec<SmLayout>,
}

impl ProcessDataLayout {
    /// Reads the layout from the dictionary's 0x1C00, 0x1C1n and 0x16xx/0x1Axx objects.
    /// Without 0x1C00 the usual order is assumed (SM2 outputs, SM3 inputs).
    pub fn from_dictionary(od: &ObjectDictionary) -> Result<Self, LayoutError> {
        let mut sms = Vec::new();
        for sm in 0u8..32 {
            let assign = 0x1C10 + u16::from(sm);
            let Some(object) = od.object(assign) else {
                continue;
            };
            let kind = match od.value(0x1C00, sm + 1).and_then(|v| v.first().copied()) {
                Some(t) => t,
                None if sm == 2 => sm_type::OUTPUTS,
                None if sm == 3 => sm_type::INPUTS,
                None => continue,
            };
            if kind != sm_type::OUTPUTS && kind != sm_type::INPUTS {
                continue;
            }
            let count = object
                .entries
                .get(&0)
                .and_then(|e| e.value.first().copied())
                .unwrap_or(0);
            let mut layout = SmLayout {
                sm,
                outputs: kind == sm_type::OUTPUTS,
                ..SmLayout::default()
            };
            for n in 1..=count {
                let pdo = od.value_u64(assign, n).unwrap_or(0) as u16;
                let mapping = od
                    .object(pdo)
                    .ok_or(LayoutError::MissingPdo { sm, assign, pdo })?;
                layout.pdos.push(pdo);
                let entries = mapping
                    .entries
                    .get(&0)
                    .and_then(|e| e.value.first().copied())
                    .unwrap_or(0);
                for e in 1..=entries {
                    let Some(m) = mapping
                        .entries
                        .get(&e)
                        .and_then(|x| decode_mapping(&x.value))
                    else {
                        continue;
                    };
                    if m.index != 0 && od.entry(m.index, m.sub).is_err() {
                        return Err(LayoutError::MissingEntry {
                            pdo,
                            index: m.index,
                            sub: m.sub,
                        });
                    }
                    layout.entries.push(Placed {
                        index: m.index,
                        sub: m.sub,
                        bit_offset: layout.bits,
                        bit_len: m.bit_len,
                    });
                    layout.bits += u32::from(m.bit_len);
                }
            }
            sms.push(layout);
        }
        Ok(Self { sms })
    }

    /// The layout of SyncManager `sm`, if it carries process data.
    pub fn sm(&self, sm: u8) -> Option<&SmLayout> {
        self.sms.iter().find(|l| l.sm == sm)
    }

    /// Where the entry `index:sub` is placed, and in which SyncManager.
    pub fn find(&self, index: u16, sub: u8) -> Option<(u8, Placed)> {
        self.sms.iter().find_map(|l| {
            l.entries
                .iter()
                .find(|p| p.index == index && p.sub == sub)
                .map(|p| (l.sm, *p))
        })
    }
}

/// Copies an output SyncManager's buffer into the dictionary entries it maps; returns
/// the entries whose value changed with their new value.
pub fn unpack(layout: &SmLayout, buffer: &[u8], od: &mut ObjectDictionary) -> Vec<(u16, u8, u64)> {
    let mut changed = Vec::new();
    let mut reader = BitReader::new(buffer);
    for p in &layout.entries {
        let Some(v) = reader.bits(u16::from(p.bit_len)) else {
            break;
        };
        if p.index == 0 {
            continue;
        }
        let old = od.value(p.index, p.sub).map(le_u64);
        if old != Some(v) {
            od.set_value_u64(p.index, p.sub, v);
            changed.push((p.index, p.sub, v));
        }
    }
    changed
}

/// Fills an input SyncManager's buffer from the dictionary entries it maps.
pub fn pack(layout: &SmLayout, od: &ObjectDictionary) -> Vec<u8> {
    let mut writer = BitWriter::default();
    for p in &layout.entries {
        let v = if p.index == 0 {
            0
        } else {
            od.value(p.index, p.sub).map(le_u64).unwrap_or(0)
        };
        writer.push_bits(v, u16::from(p.bit_len));
    }
    let mut out = writer.finish();
    out.resize(layout.byte_len(), 0);
    out
}
