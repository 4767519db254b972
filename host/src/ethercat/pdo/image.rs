//! The logical process image: where every terminal's SyncManager areas and every PDO
//! entry live in the logical address space, to the bit, and the FMMUs that map them.
//!
//! Outputs of all terminals come first, then inputs. Each FMMU covers whole SyncManager
//! areas (physically adjacent areas of one direction share an FMMU). Areas start on a
//! byte boundary, except that an area whose bit length is not a whole number of bytes
//! is packed at the next free bit when its terminal's ESC supports bit-oriented FMMUs
//! (register 0x0008 bit 0 clear).

use super::config::{
    ConfigError, FMMU_READ, FMMU_WRITE, FmmuRegisters, SmRegisters, fmmus_for,
    process_data_sync_managers,
};
use super::layout::PdoLayout;
use crate::ethercat::sii::{PdoDirection, SiiImage};
use serde::Serialize;

/// One terminal to place in the image.
#[derive(Debug, Clone, Copy)]
pub struct TerminalInput<'a> {
    /// Configured station address.
    pub station: u16,
    /// Its SII.
    pub sii: &'a SiiImage,
    /// Its PDO layout.
    pub layout: &'a PdoLayout,
    /// Whether its ESC supports bit-oriented FMMUs.
    pub bit_oriented_fmmus: bool,
}

/// Where one PDO entry lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryLocation {
    /// Outputs (Rx) or inputs (Tx).
    pub direction: PdoDirection,
    /// SyncManager carrying it.
    pub sync_manager: u8,
    /// PDO containing it.
    pub pdo: u16,
    /// Mapped object index (0 for a gap).
    pub index: u16,
    /// Mapped subindex.
    pub subindex: u8,
    /// Length in bits.
    pub bit_len: u8,
    /// Name from the SII, if any.
    pub name: Option<String>,
    /// Absolute bit address in the logical address space.
    pub logical_bit: u64,
    /// Bit offset inside the SyncManager area (its physical position).
    pub sm_bit: u32,
}

impl EntryLocation {
    /// Logical byte address of the entry's first bit.
    pub fn logical_byte(&self) -> u32 {
        (self.logical_bit / 8) as u32
    }

    /// Bit (0..7) of the first bit within its byte.
    pub fn bit(&self) -> u8 {
        (self.logical_bit % 8) as u8
    }

    /// Reads the entry (up to 64 bits) from an image buffer that starts at logical
    /// byte `image_start`; `None` if the buffer does not cover it.
    pub fn read(&self, image: &[u8], image_start: u32) -> Option<u64> {
        let base = self.logical_bit.checked_sub(u64::from(image_start) * 8)?;
        let n = u32::from(self.bit_len.min(64));
        let mut v = 0u64;
        for i in 0..n {
            let bit = base + u64::from(i);
            let byte = *image.get(usize::try_from(bit / 8).ok()?)?;
            if byte >> (bit % 8) & 1 != 0 {
                v |= 1 << i;
            }
        }
        Some(v)
    }

    /// Writes the entry's low `bit_len` bits of `value` into an image buffer that
    /// starts at logical byte `image_start`, leaving every other bit alone. Returns
    /// false if the buffer does not cover the entry.
    pub fn write(&self, image: &mut [u8], image_start: u32, value: u64) -> bool {
        let Some(base) = self.logical_bit.checked_sub(u64::from(image_start) * 8) else {
            return false;
        };
        let n = u64::from(self.bit_len.min(64));
        let last = base + n.saturating_sub(1);
        if usize::try_from(last / 8).map_or(true, |b| b >= image.len()) {
            return false;
        }
        for i in 0..n {
            let bit = base + i;
            let byte = &mut image[(bit / 8) as usize];
            let mask = 1u8 << (bit % 8);
            if value >> i & 1 != 0 {
                *byte |= mask;
            } else {
                *byte &= !mask;
            }
        }
        true
    }
}

/// A terminal's part of the image and the registers that put it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TerminalImage {
    /// Configured station address.
    pub station: u16,
    /// Process-data SyncManager registers.
    pub sync_managers: Vec<SmRegisters>,
    /// FMMU registers.
    pub fmmus: Vec<FmmuRegisters>,
    /// Every entry of every assigned PDO.
    pub entries: Vec<EntryLocation>,
}

impl TerminalImage {
    /// The entry mapping object `index:subindex`.
    pub fn entry(&self, index: u16, subindex: u8) -> Option<&EntryLocation> {
        self.entries
            .iter()
            .find(|e| e.index == index && e.subindex == subindex && index != 0)
    }
}

/// A byte range of the logical address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogicalRange {
    /// First logical byte.
    pub start: u32,
    /// Number of bytes.
    pub len: u32,
}

/// The whole logical process image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessImage {
    /// Bytes holding outputs.
    pub outputs: LogicalRange,
    /// Bytes holding inputs.
    pub inputs: LogicalRange,
    /// Per terminal, in the order given.
    pub terminals: Vec<TerminalImage>,
}

impl ProcessImage {
    /// The logical range covering outputs and inputs.
    pub fn whole(&self) -> LogicalRange {
        LogicalRange {
            start: self.outputs.start,
            len: self.inputs.start + self.inputs.len - self.outputs.start,
        }
    }

    /// The part of terminal `station`.
    pub fn terminal(&self, station: u16) -> Option<&TerminalImage> {
        self.terminals.iter().find(|t| t.station == station)
    }

    /// A zeroed buffer for the whole image (starting at `whole().start`): set safe
    /// output values in it with [`EntryLocation::write`] before asking for OP.
    pub fn buffer(&self) -> Vec<u8> {
        vec![0; self.whole().len as usize]
    }

    /// Writes every terminal's process-data SyncManagers, then its FMMUs (in PRE-OP,
    /// before requesting SAFE-OP).
    pub async fn configure<T: crate::ethercat::station_io::StationIo + ?Sized>(
        &self,
        io: &T,
    ) -> Result<(), ConfigError> {
        for t in &self.terminals {
            super::config::write_sync_managers(io, t.station, &t.sync_managers).await?;
            super::config::write_fmmus(io, t.station, &t.fmmus).await?;
        }
        Ok(())
    }
}

/// One group of physically adjacent SyncManager areas mapped by one FMMU.
struct Region {
    sms: Vec<(u8, u16, u32)>, // (sm, physical start, bits)
    bytes: u32,
}

fn regions(sii_sms: &[SmRegisters], layout: &PdoLayout, direction: PdoDirection) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::new();
    for sm in layout.sync_managers_of(direction) {
        let bits = sm.bit_len();
        if bits == 0 {
            continue;
        }
        let Some(reg) = sii_sms.iter().find(|r| r.index == sm.sync_manager) else {
            continue;
        };
        let bytes = bits.div_ceil(8);
        if let Some(last) = out.last_mut() {
            let (_, first_start, _) = last.sms[0];
            if u32::from(first_start) + last.bytes == u32::from(reg.start) {
                last.sms.push((sm.sync_manager, reg.start, bits));
                last.bytes += bytes;
                continue;
            }
        }
        out.push(Region {
            sms: vec![(sm.sync_manager, reg.start, bits)],
            bytes,
        });
    }
    out
}

/// Places the terminals, in order, in a logical address space starting at byte
/// `logical_start`.
pub fn plan(
    terminals: &[TerminalInput<'_>],
    logical_start: u32,
) -> Result<ProcessImage, ConfigError> {
    let mut images: Vec<TerminalImage> = Vec::with_capacity(terminals.len());
    let mut planned = Vec::with_capacity(terminals.len());
    for t in terminals {
        let sms = process_data_sync_managers(t.station, t.sii, t.layout)?;
        images.push(TerminalImage {
            station: t.station,
            sync_managers: sms.clone(),
            fmmus: Vec::new(),
            entries: Vec::new(),
        });
        planned.push(sms);
    }
    let mut cursor = u64::from(logical_start) * 8;
    let mut ranges = [LogicalRange { start: 0, len: 0 }; 2];
    let mut next_fmmu = vec![0usize; terminals.len()];
    for (phase, direction) in [PdoDirection::Rx, PdoDirection::Tx].into_iter().enumerate() {
        cursor = cursor.div_ceil(8) * 8;
        let phase_start = cursor;
        for (ti, t) in terminals.iter().enumerate() {
            let regs = regions(&planned[ti], t.layout, direction);
            let available = fmmus_for(t.sii, direction);
            if let Some(list) = &available {
                if list.len() < regs.len() {
                    return Err(ConfigError::NotEnoughFmmus {
                        station: t.station,
                        needed: regs.len(),
                        available: list.len(),
                        what: match direction {
                            PdoDirection::Rx => "outputs",
                            PdoDirection::Tx => "inputs",
                        },
                    });
                }
            }
            for (ri, region) in regs.iter().enumerate() {
                let total_bits: u32 = region.sms.iter().map(|s| s.2).sum();
                let packed = t.bit_oriented_fmmus && region.sms.len() == 1 && total_bits % 8 != 0;
                if !packed {
                    cursor = cursor.div_ceil(8) * 8;
                }
                let start = cursor;
                let mapped_bits = if packed {
                    u64::from(total_bits)
                } else {
                    u64::from(region.bytes) * 8
                };
                let end = start + mapped_bits - 1;
                let index = match &available {
                    Some(list) => list[ri],
                    None => {
                        let i = next_fmmu[ti];
                        next_fmmu[ti] += 1;
                        i as u8
                    }
                };
                let (_, physical_start, _) = region.sms[0];
                images[ti].fmmus.push(FmmuRegisters {
                    index,
                    logical_start: (start / 8) as u32,
                    length: (end / 8 - start / 8 + 1) as u16,
                    logical_start_bit: (start % 8) as u8,
                    logical_end_bit: (end % 8) as u8,
                    physical_start,
                    physical_start_bit: 0,
                    kind: match direction {
                        PdoDirection::Rx => FMMU_WRITE,
                        PdoDirection::Tx => FMMU_READ,
                    },
                });
                for &(sm, sm_start, _) in &region.sms {
                    let sm_offset = u64::from(sm_start - physical_start) * 8;
                    let Some(sm_pdos) =
                        t.layout.sync_managers.iter().find(|s| s.sync_manager == sm)
                    else {
                        continue;
                    };
                    let mut bit = 0u32;
                    for pdo in &sm_pdos.pdos {
                        for e in &pdo.entries {
                            images[ti].entries.push(EntryLocation {
                                direction,
                                sync_manager: sm,
                                pdo: pdo.index,
                                index: e.index,
                                subindex: e.subindex,
                                bit_len: e.bit_len,
                                name: e.name.clone(),
                                logical_bit: start + sm_offset + u64::from(bit),
                                sm_bit: bit,
                            });
                            bit += u32::from(e.bit_len);
                        }
                    }
                }
                cursor = start + mapped_bits;
            }
        }
        let phase_end = cursor.div_ceil(8);
        ranges[phase] = LogicalRange {
            start: (phase_start / 8) as u32,
            len: (phase_end - phase_start / 8) as u32,
        };
        cursor = phase_end * 8;
    }
    Ok(ProcessImage {
        outputs: ranges[0],
        inputs: ranges[1],
        terminals: images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ethercat::sii::testdata::sii;

    #[test]
    fn byte_aligned_by_default() {
        let (a, b, c) = (sii("el2004.bin"), sii("el2004.bin"), sii("el3164.bin"));
        let (la, lb, lc) = (
            PdoLayout::from_sii(&a, "t"),
            PdoLayout::from_sii(&b, "t"),
            PdoLayout::from_sii(&c, "t"),
        );
        let img = plan(
            &[
                TerminalInput {
                    station: 0x1001,
                    sii: &a,
                    layout: &la,
                    bit_oriented_fmmus: false,
                },
                TerminalInput {
                    station: 0x1002,
                    sii: &b,
                    layout: &lb,
                    bit_oriented_fmmus: false,
                },
                TerminalInput {
                    station: 0x1003,
                    sii: &c,
                    layout: &lc,
                    bit_oriented_fmmus: false,
                },
            ],
            0x100,
        )
        .expect("plan");
        assert_eq!(
            img.outputs,
            LogicalRange {
                start: 0x100,
                len: 2
            }
        );
        assert_eq!(
            img.inputs,
            LogicalRange {
                start: 0x102,
                len: 16
            }
        );
        let t2 = img.terminal(0x1002).expect("t2");
        assert_eq!(t2.fmmus.len(), 1);
        let f = t2.fmmus[0];
        assert_eq!(
            (
                f.index,
                f.logical_start,
                f.length,
                f.logical_start_bit,
                f.logical_end_bit
            ),
            (0, 0x101, 1, 0, 7)
        );
        assert_eq!((f.physical_start, f.kind), (0x0F00, FMMU_WRITE));
        let ch3 = t2.entry(0x7020, 1).expect("channel 3");
        assert_eq!((ch3.logical_byte(), ch3.bit(), ch3.bit_len), (0x101, 2, 1));
        // EL3164 inputs: 4 x 32-bit standard PDOs, FMMU 0 covers the whole SM3 area.
        let t3 = img.terminal(0x1003).expect("t3");
        assert_eq!(t3.fmmus[0].length, 16);
        assert_eq!(t3.fmmus[0].physical_start, 0x1180);
        assert_eq!(t3.fmmus[0].kind, FMMU_READ);
        let limit1 = t3.entry(0x6010, 3).expect("ch2 limit 1");
        assert_eq!(limit1.bit_len, 2, "2-bit entries are entries of their own");
        assert_eq!((limit1.logical_byte(), limit1.bit()), (0x102 + 4, 2));
        let value = t3.entry(0x6030, 0x11).expect("ch4 value");
        assert_eq!(
            (value.logical_byte(), value.bit(), value.bit_len),
            (0x102 + 14, 0, 16)
        );
    }

    #[test]
    fn bit_packed_where_the_esc_allows() {
        let a = sii("el2004.bin");
        let la = PdoLayout::from_sii(&a, "t");
        let t = |s| TerminalInput {
            station: s,
            sii: &a,
            layout: &la,
            bit_oriented_fmmus: true,
        };
        let img = plan(&[t(1), t(2), t(3)], 0).expect("plan");
        assert_eq!(img.outputs, LogicalRange { start: 0, len: 2 });
        let f2 = img.terminal(2).expect("2").fmmus[0];
        assert_eq!(
            (
                f2.logical_start,
                f2.logical_start_bit,
                f2.logical_end_bit,
                f2.length
            ),
            (0, 4, 7, 1)
        );
        let f3 = img.terminal(3).expect("3").fmmus[0];
        assert_eq!(
            (f3.logical_start, f3.logical_start_bit, f3.logical_end_bit),
            (1, 0, 3)
        );
        let e = img.terminal(2).expect("2").entry(0x7010, 1).expect("ch2");
        assert_eq!((e.logical_byte(), e.bit()), (0, 5));
    }

    #[test]
    fn adjacent_sync_managers_share_one_fmmu() {
        let s = sii("el2889.bin");
        let l = PdoLayout::from_sii(&s, "t");
        let img = plan(
            &[TerminalInput {
                station: 7,
                sii: &s,
                layout: &l,
                bit_oriented_fmmus: false,
            }],
            0,
        )
        .expect("plan");
        let t = img.terminal(7).expect("t");
        assert_eq!(t.sync_managers.len(), 2);
        assert_eq!(t.fmmus.len(), 1);
        assert_eq!((t.fmmus[0].physical_start, t.fmmus[0].length), (0x0F00, 2));
        let ch9 = t.entry(0x7080, 1).expect("channel 9");
        assert_eq!((ch9.logical_byte(), ch9.bit(), ch9.sync_manager), (1, 0, 1));
    }

    #[test]
    fn el2262_outputs_in_two_fmmus() {
        let s = sii("el2262.bin");
        let l = PdoLayout::from_sii(&s, "t");
        let img = plan(
            &[TerminalInput {
                station: 7,
                sii: &s,
                layout: &l,
                bit_oriented_fmmus: false,
            }],
            0,
        )
        .expect("plan");
        let t = img.terminal(7).expect("t");
        let idx: Vec<_> = t
            .fmmus
            .iter()
            .map(|f| (f.index, f.physical_start, f.kind))
            .collect();
        assert_eq!(
            idx,
            vec![
                (0, 0x1000, FMMU_WRITE),
                (1, 0x1200, FMMU_WRITE),
                (2, 0x0998, FMMU_READ)
            ]
        );
        // Each output SM carries the PDOs the SII assigns to it: 16 + 1 + 8 bits and
        // gap PDOs of 1..7 bits, 53 bits in 7 bytes.
        assert_eq!(img.outputs.len, 14);
        let sample1 = t.entry(0x7000, 2).expect("sample 1");
        assert_eq!(
            (sample1.logical_byte(), sample1.bit(), sample1.sync_manager),
            (9, 0, 1)
        );
    }

    #[test]
    fn read_and_write_entries() {
        let e = EntryLocation {
            direction: PdoDirection::Rx,
            sync_manager: 2,
            pdo: 0x1600,
            index: 0x7000,
            subindex: 1,
            bit_len: 12,
            name: None,
            logical_bit: 0x10 * 8 + 6,
            sm_bit: 6,
        };
        let mut buf = vec![0xFFu8; 4];
        assert!(e.write(&mut buf, 0x10, 0xABC));
        assert_eq!(buf, vec![0x3F, 0xAF, 0xFE, 0xFF]);
        assert_eq!(e.read(&buf, 0x10), Some(0xABC));
        assert!(!e.write(&mut buf[..1], 0x10, 1));
        assert_eq!(e.read(&buf, 0x11), None);
    }
}
