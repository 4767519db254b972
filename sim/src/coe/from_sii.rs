//! Deriving an object dictionary from a terminal's SII EEPROM, for terminals without a
//! recorded dictionary: identity (0x1018), device name (0x1008), SyncManager types
//! (0x1C00), PDO mappings (0x16xx/0x1Axx) and assignments (0x1C1n) from the TxPDO/RxPDO
//! categories, and the process-data objects those PDOs map (ETG.2010 tables 7, 10, 11).

use std::collections::BTreeMap;

use super::dictionary::{Object, ObjectCode, ObjectDictionary, default_entry, object_name};
use crate::sii::{Sii, SmType};

/// The dictionary of the terminal `sii` describes.
pub fn dictionary_from_sii(sii: &Sii) -> ObjectDictionary {
    let mut values: BTreeMap<(u16, u8), Vec<u8>> = BTreeMap::new();
    values.insert((0x1000, 0), 0u32.to_le_bytes().to_vec());
    if let Some(name) = sii.name() {
        values.insert((0x1008, 0), name.as_bytes().to_vec());
    }
    values.insert((0x1018, 1), sii.vendor_id.to_le_bytes().to_vec());
    values.insert((0x1018, 2), sii.product_code.to_le_bytes().to_vec());
    values.insert((0x1018, 3), sii.revision.to_le_bytes().to_vec());
    values.insert((0x1018, 4), sii.serial.to_le_bytes().to_vec());
    for (n, sm) in sii.sync_managers.iter().enumerate().take(32) {
        let t = match sm.sm_type {
            SmType::Unused => 0,
            SmType::MailboxOut => 1,
            SmType::MailboxIn => 2,
            SmType::ProcessDataOutputs => 3,
            SmType::ProcessDataInputs => 4,
            SmType::Other(t) => t,
        };
        values.insert((0x1C00, n as u8 + 1), vec![t]);
    }
    let mut assigned: BTreeMap<u8, Vec<u16>> = BTreeMap::new();
    for pdo in sii.rx_pdos.iter().chain(sii.tx_pdos.iter()) {
        for (n, e) in pdo.entries.iter().enumerate().take(254) {
            let raw =
                (u32::from(e.index) << 16) | (u32::from(e.subindex) << 8) | u32::from(e.bit_length);
            values.insert((pdo.index, n as u8 + 1), raw.to_le_bytes().to_vec());
            if e.index != 0 {
                values
                    .entry((e.index, e.subindex))
                    .or_insert_with(|| vec![0; usize::from(e.bit_length.div_ceil(8)).max(1)]);
            }
        }
        if let Some(sm) = pdo.sync_manager {
            assigned.entry(sm).or_default().push(pdo.index);
        }
    }
    // Process-data SMs without assigned PDOs still get an (empty) assignment object.
    for (n, sm) in sii.sync_managers.iter().enumerate().take(32) {
        if matches!(
            sm.sm_type,
            SmType::ProcessDataOutputs | SmType::ProcessDataInputs
        ) {
            assigned.entry(n as u8).or_default();
        }
    }
    let mut od = ObjectDictionary::from_values(&values);
    for (sm, pdos) in &assigned {
        let index = 0x1C10 + u16::from(*sm);
        let mut entries = BTreeMap::new();
        entries.insert(0, default_entry(index, 0, vec![pdos.len() as u8]));
        for (n, pdo) in pdos.iter().enumerate() {
            let sub = n as u8 + 1;
            entries.insert(sub, default_entry(index, sub, pdo.to_le_bytes().to_vec()));
        }
        od.insert(Object {
            index,
            name: object_name(index),
            code: ObjectCode::Array,
            entries,
        });
    }
    // PDOs with no entries have no mapping values: give them an empty mapping object.
    for pdo in sii.rx_pdos.iter().chain(sii.tx_pdos.iter()) {
        if od.object(pdo.index).is_none() {
            let mut entries = BTreeMap::new();
            entries.insert(0, default_entry(pdo.index, 0, vec![0]));
            od.insert(Object {
                index: pdo.index,
                name: object_name(pdo.index),
                code: ObjectCode::Record,
                entries,
            });
        }
    }
    name_from_sii(&mut od, sii);
    od
}

/// Gives PDOs and process-data entries the names and types the SII's PDO categories
/// state (used for recorded dictionaries too, which carry no names).
pub fn name_from_sii(od: &mut ObjectDictionary, sii: &Sii) {
    for pdo in sii.rx_pdos.iter().chain(sii.tx_pdos.iter()) {
        if let (Some(name), Some(o)) = (&pdo.name, od.object_mut(pdo.index)) {
            o.name.clone_from(name);
        }
        for e in &pdo.entries {
            if e.index == 0 {
                continue;
            }
            let Some(o) = od.object_mut(e.index) else {
                continue;
            };
            let Some(entry) = o.entries.get_mut(&e.subindex) else {
                continue;
            };
            if let Some(name) = &e.name {
                entry.name.clone_from(name);
            }
            // SII data types use the CoE codes (ETG.2010 table 11).
            if e.data_type != 0 {
                entry.data_type = u16::from(e.data_type);
            }
            if e.bit_length != 0 && u16::from(e.bit_length) < entry.bit_len {
                entry.bit_len = u16::from(e.bit_length);
            }
        }
    }
}
