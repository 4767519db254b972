//! Which PDOs a terminal exchanges in which SyncManager, and what they map: read from
//! CoE (0x1C00 SM types, 0x1C10+n assignments, 0x16xx/0x1Axx mappings; ETG.1000.6
//! §5.6.7.4) or, for terminals without CoE or without those objects, from the SII.
//! Assignments and mappings are written on a driver's request.

use crate::ethercat::coe::{AbortCode, CoeClient, CoeError};
use crate::ethercat::sii::{PdoDirection, SiiImage, SmType};
use crate::ethercat::station_io::StationIo;
use serde::Serialize;

/// First SM PDO assignment object: 0x1C10 + SyncManager number (ETG.1000.6 table 67).
pub const SM_ASSIGN_BASE: u16 = 0x1C10;
/// SyncManager communication types object (ETG.1000.6 table 66).
pub const SM_TYPES: u16 = 0x1C00;

/// One mapped entry of a PDO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PdoEntry {
    /// Index of the mapped object (0 for a gap).
    pub index: u16,
    /// Subindex of the mapped object.
    pub subindex: u8,
    /// Length in bits (1..=255; 2..7-bit entries are entries of their own).
    pub bit_len: u8,
    /// Name, when the SII or the dictionary gives one.
    pub name: Option<String>,
    /// CoE data type, when known.
    pub data_type: Option<u16>,
}

impl PdoEntry {
    /// Decodes a mapping object's entry: index << 16 | subindex << 8 | bit length
    /// (ETG.1000.6 table 65).
    pub fn from_mapping(value: u32) -> Self {
        Self {
            index: (value >> 16) as u16,
            subindex: (value >> 8) as u8,
            bit_len: value as u8,
            name: None,
            data_type: None,
        }
    }

    /// The mapping object value of this entry.
    pub fn mapping(&self) -> u32 {
        (u32::from(self.index) << 16) | (u32::from(self.subindex) << 8) | u32::from(self.bit_len)
    }

    /// Whether the entry is padding.
    pub fn is_gap(&self) -> bool {
        self.index == 0
    }
}

/// One PDO and its entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pdo {
    /// PDO (mapping object) index.
    pub index: u16,
    /// Outputs (Rx) or inputs (Tx).
    pub direction: PdoDirection,
    /// Name, when the SII gives one.
    pub name: Option<String>,
    /// Mapped entries in order.
    pub entries: Vec<PdoEntry>,
}

impl Pdo {
    /// Sum of the entries' bit lengths.
    pub fn bit_len(&self) -> u32 {
        self.entries.iter().map(|e| u32::from(e.bit_len)).sum()
    }
}

/// The PDOs assigned to one process-data SyncManager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmPdos {
    /// SyncManager number.
    pub sync_manager: u8,
    /// Outputs (Rx) or inputs (Tx).
    pub direction: PdoDirection,
    /// Assigned PDOs in order.
    pub pdos: Vec<Pdo>,
}

impl SmPdos {
    /// Bits the SyncManager carries.
    pub fn bit_len(&self) -> u32 {
        self.pdos.iter().map(Pdo::bit_len).sum()
    }

    /// Bytes the SyncManager area needs (saturating at the 16-bit length register).
    pub fn byte_len(&self) -> u16 {
        u16::try_from(self.bit_len().div_ceil(8)).unwrap_or(u16::MAX)
    }
}

/// Where a layout was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum LayoutSource {
    /// From CoE objects 0x1C1x and 0x16xx/0x1Axx.
    Coe,
    /// From the SII, with the reason CoE was not used.
    Sii {
        /// Why the SII was used.
        reason: String,
    },
}

/// A terminal's process-data layout: PDOs per SyncManager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PdoLayout {
    /// Process-data SyncManagers in SyncManager order.
    pub sync_managers: Vec<SmPdos>,
    /// Where the layout came from.
    pub source: LayoutSource,
}

impl PdoLayout {
    /// The layout the SII describes: each PDO goes to the SyncManager its SII entry
    /// names (PDOs not assigned in the SII are left out), process-data SyncManagers
    /// without PDOs are kept empty.
    pub fn from_sii(sii: &SiiImage, reason: impl Into<String>) -> PdoLayout {
        let mut sms: Vec<SmPdos> = sii
            .sync_managers
            .iter()
            .enumerate()
            .filter_map(|(i, sm)| {
                let direction = match sm.kind {
                    SmType::ProcessDataOut => PdoDirection::Rx,
                    SmType::ProcessDataIn => PdoDirection::Tx,
                    _ => return None,
                };
                Some(SmPdos {
                    sync_manager: i as u8,
                    direction,
                    pdos: Vec::new(),
                })
            })
            .collect();
        for p in sii.pdos().filter(|p| p.assigned()) {
            let Some(sm) = sms
                .iter_mut()
                .find(|s| s.sync_manager == p.sync_manager && s.direction == p.direction)
            else {
                continue;
            };
            sm.pdos.push(Pdo {
                index: p.index,
                direction: p.direction,
                name: sii.text(p.name_index).map(|s| s.into_owned()),
                entries: p
                    .entries
                    .iter()
                    .map(|e| PdoEntry {
                        index: e.index,
                        subindex: e.subindex,
                        bit_len: e.bit_len,
                        name: sii.text(e.name_index).map(|s| s.into_owned()),
                        data_type: (e.data_type != 0).then_some(u16::from(e.data_type)),
                    })
                    .collect(),
            });
        }
        PdoLayout {
            sync_managers: sms,
            source: LayoutSource::Sii {
                reason: reason.into(),
            },
        }
    }

    /// The SyncManager carrying outputs or inputs, if any.
    pub fn sync_managers_of(&self, direction: PdoDirection) -> impl Iterator<Item = &SmPdos> {
        self.sync_managers
            .iter()
            .filter(move |s| s.direction == direction)
    }

    /// Bits of all outputs or all inputs.
    pub fn bit_len(&self, direction: PdoDirection) -> u32 {
        self.sync_managers_of(direction).map(SmPdos::bit_len).sum()
    }

    /// Fills in names and data types from the SII where the SII describes the same
    /// PDO and entry.
    pub fn name_from_sii(&mut self, sii: &SiiImage) {
        for sm in &mut self.sync_managers {
            for pdo in &mut sm.pdos {
                let Some(sp) = sii
                    .pdos()
                    .find(|p| p.index == pdo.index && p.direction == pdo.direction)
                else {
                    continue;
                };
                if pdo.name.is_none() {
                    pdo.name = sii.text(sp.name_index).map(|s| s.into_owned());
                }
                for e in &mut pdo.entries {
                    if let Some(se) = sp
                        .entries
                        .iter()
                        .find(|x| x.index == e.index && x.subindex == e.subindex && !e.is_gap())
                    {
                        if e.name.is_none() {
                            e.name = sii.text(se.name_index).map(|s| s.into_owned());
                        }
                        if e.data_type.is_none() && se.data_type != 0 {
                            e.data_type = Some(u16::from(se.data_type));
                        }
                    }
                }
            }
        }
    }
}

/// Failure reading or writing a PDO layout.
#[derive(Debug, thiserror::Error)]
pub enum PdoError {
    /// A CoE transfer failed.
    #[error("PDO configuration of terminal {station:#06x}: {source}")]
    Coe {
        /// Station address.
        station: u16,
        /// The CoE error.
        #[source]
        source: CoeError,
    },
    /// An object held something the layout cannot use.
    #[error("PDO configuration of terminal {station:#06x}: {detail}")]
    Invalid {
        /// Station address.
        station: u16,
        /// What is wrong.
        detail: String,
    },
}

/// Whether a CoE error means "this object is not there" (so the SII is the fallback).
fn missing_object(e: &CoeError) -> bool {
    matches!(
        e.abort_code(),
        Some(AbortCode(0x0602_0000)) | Some(AbortCode(0x0609_0011))
    )
}

/// Reads the layout over CoE, falling back to the SII when the terminal has no CoE
/// mailbox or lacks the assignment objects. `coe` is `None` for terminals without CoE.
pub async fn read_layout<T: StationIo>(
    coe: Option<&CoeClient<T>>,
    sii: &SiiImage,
) -> Result<PdoLayout, PdoError> {
    let Some(coe) = coe else {
        return Ok(PdoLayout::from_sii(sii, "the terminal has no CoE mailbox"));
    };
    match read_layout_coe(coe, sii).await {
        Ok(mut layout) => {
            layout.name_from_sii(sii);
            Ok(layout)
        }
        Err(PdoError::Coe { source, .. }) if missing_object(&source) => {
            tracing::info!(
                station = coe.mailbox().station(),
                "PDO objects missing over CoE ({source}); using the SII"
            );
            Ok(PdoLayout::from_sii(
                sii,
                format!("CoE PDO objects missing: {source}"),
            ))
        }
        Err(e) => Err(e),
    }
}

async fn upload_count<T: StationIo>(coe: &CoeClient<T>, index: u16) -> Result<u8, PdoError> {
    let station = coe.mailbox().station();
    coe.upload_u8(index, 0)
        .await
        .map_err(|source| PdoError::Coe { station, source })
}

/// Reads the layout over CoE only. SyncManager types come from 0x1C00, or from the
/// SII when 0x1C00 is missing.
pub async fn read_layout_coe<T: StationIo>(
    coe: &CoeClient<T>,
    sii: &SiiImage,
) -> Result<PdoLayout, PdoError> {
    let station = coe.mailbox().station();
    let coe_err = |source| PdoError::Coe { station, source };
    let types: Vec<SmType> = match upload_count(coe, SM_TYPES).await {
        Ok(n) => {
            let mut v = Vec::with_capacity(usize::from(n));
            for sub in 1..=n {
                v.push(SmType::from(
                    coe.upload_u8(SM_TYPES, sub).await.map_err(coe_err)?,
                ));
            }
            v
        }
        Err(PdoError::Coe { source, .. }) if missing_object(&source) => {
            sii.sync_managers.iter().map(|s| s.kind).collect()
        }
        Err(e) => return Err(e),
    };
    let mut sms = Vec::new();
    for (sm, kind) in types.iter().enumerate() {
        let direction = match kind {
            SmType::ProcessDataOut => PdoDirection::Rx,
            SmType::ProcessDataIn => PdoDirection::Tx,
            _ => continue,
        };
        let assign = SM_ASSIGN_BASE + sm as u16;
        let count = upload_count(coe, assign).await?;
        let mut pdos = Vec::with_capacity(usize::from(count));
        for sub in 1..=count {
            let pdo_index = coe.upload_u16(assign, sub).await.map_err(coe_err)?;
            let n = upload_count(coe, pdo_index).await?;
            let mut entries = Vec::with_capacity(usize::from(n));
            for esub in 1..=n {
                let v = coe.upload_u32(pdo_index, esub).await.map_err(coe_err)?;
                entries.push(PdoEntry::from_mapping(v));
            }
            pdos.push(Pdo {
                index: pdo_index,
                direction,
                name: None,
                entries,
            });
        }
        sms.push(SmPdos {
            sync_manager: sm as u8,
            direction,
            pdos,
        });
    }
    Ok(PdoLayout {
        sync_managers: sms,
        source: LayoutSource::Coe,
    })
}

/// Writes the PDO assignment of SyncManager `sm` (object 0x1C10 + sm) the way
/// ETG.1000.6 §5.6.7.4.9 prescribes: subindex 0 to 0, the entries, then the count.
pub async fn write_assignment<T: StationIo>(
    coe: &CoeClient<T>,
    sm: u8,
    pdos: &[u16],
) -> Result<(), PdoError> {
    let station = coe.mailbox().station();
    let coe_err = |source| PdoError::Coe { station, source };
    let Ok(count) = u8::try_from(pdos.len()) else {
        return Err(PdoError::Invalid {
            station,
            detail: format!("{} PDOs do not fit one assignment object", pdos.len()),
        });
    };
    let index = SM_ASSIGN_BASE + u16::from(sm);
    coe.download(index, 0, &[0]).await.map_err(coe_err)?;
    for (i, pdo) in pdos.iter().enumerate() {
        coe.download(index, i as u8 + 1, &pdo.to_le_bytes())
            .await
            .map_err(coe_err)?;
    }
    coe.download(index, 0, &[count]).await.map_err(coe_err)?;
    tracing::info!(station, sm, ?pdos, "PDO assignment written");
    Ok(())
}

/// Writes the mapping of one PDO the same way: subindex 0 to 0, entries, count.
pub async fn write_mapping<T: StationIo>(
    coe: &CoeClient<T>,
    pdo: u16,
    entries: &[PdoEntry],
) -> Result<(), PdoError> {
    let station = coe.mailbox().station();
    let coe_err = |source| PdoError::Coe { station, source };
    let Ok(count) = u8::try_from(entries.len()) else {
        return Err(PdoError::Invalid {
            station,
            detail: format!("{} entries do not fit one PDO", entries.len()),
        });
    };
    coe.download(pdo, 0, &[0]).await.map_err(coe_err)?;
    for (i, e) in entries.iter().enumerate() {
        coe.download(pdo, i as u8 + 1, &e.mapping().to_le_bytes())
            .await
            .map_err(coe_err)?;
    }
    coe.download(pdo, 0, &[count]).await.map_err(coe_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ethercat::sii::testdata::sii;

    #[test]
    fn mapping_value_round_trip() {
        let e = PdoEntry::from_mapping(0x7000_0101);
        assert_eq!((e.index, e.subindex, e.bit_len), (0x7000, 1, 1));
        assert_eq!(e.mapping(), 0x7000_0101);
        assert!(PdoEntry::from_mapping(0x0000_0004).is_gap());
    }

    #[test]
    fn el2004_layout_from_sii() {
        let l = PdoLayout::from_sii(&sii("el2004.bin"), "no mailbox");
        assert_eq!(l.sync_managers.len(), 1);
        let sm = &l.sync_managers[0];
        assert_eq!((sm.sync_manager, sm.direction), (0, PdoDirection::Rx));
        assert_eq!(sm.pdos.len(), 4);
        assert_eq!(sm.bit_len(), 4);
        assert_eq!(sm.byte_len(), 1);
        assert_eq!(sm.pdos[2].entries[0].name.as_deref(), Some("Output"));
        assert_eq!(sm.pdos[2].name.as_deref(), Some("Channel 3"));
    }

    #[test]
    fn akd_layout_from_sii_uses_only_assigned_pdos() {
        let l = PdoLayout::from_sii(&sii("akd.bin"), "no dictionary");
        let out: Vec<_> = l.sync_managers_of(PdoDirection::Rx).collect();
        let inp: Vec<_> = l.sync_managers_of(PdoDirection::Tx).collect();
        assert_eq!(out.len(), 1);
        assert_eq!(inp.len(), 1);
        assert_eq!(out[0].sync_manager, 2);
        assert_eq!(
            out[0].pdos.iter().map(|p| p.index).collect::<Vec<_>>(),
            vec![0x1701]
        );
        assert_eq!(out[0].bit_len(), 48);
        assert_eq!(inp[0].sync_manager, 3);
        assert_eq!(inp[0].pdos[0].index, 0x1B01);
        assert_eq!(
            inp[0].pdos[0].entries[1].name.as_deref(),
            Some("Statusword")
        );
        assert_eq!(l.bit_len(PdoDirection::Tx), 48);
    }

    #[test]
    fn el3164_limits_are_two_bit_entries() {
        let l = PdoLayout::from_sii(&sii("el3164.bin"), "test");
        let inp = l.sync_managers_of(PdoDirection::Tx).next().expect("inputs");
        assert_eq!(inp.sync_manager, 3);
        assert_eq!(inp.pdos.len(), 4, "standard PDOs assigned to SM3");
        assert_eq!(inp.bit_len(), 128);
        let limit = &inp.pdos[0].entries[2];
        assert_eq!((limit.index, limit.subindex, limit.bit_len), (0x6000, 3, 2));
    }
}
