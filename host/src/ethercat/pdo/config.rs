//! SyncManager and FMMU register contents (ETG.1000.4 §6.6 tables 56..61, §6.7 table
//! 55) computed from the SII and a PDO layout, and writing them to a terminal.

use super::layout::PdoLayout;
use crate::ethercat::registers::PROCESS_RAM;
use crate::ethercat::sii::{FmmuUsage, PdoDirection, SiiImage, SmType};
use crate::ethercat::station_io::{RegisterError, StationIo, StationIoExt};
use serde::Serialize;

/// First SyncManager register block (ETG.1000.4 table 56); SyncManager n at +8n.
pub const REG_SM_BASE: u16 = 0x0800;
/// First FMMU register block (ETG.1000.4 table 55); FMMU n at +16n.
pub const REG_FMMU_BASE: u16 = 0x0600;
/// ESC features register; bit 0 set means FMMUs are byte-oriented only (ETG.1000.4 table 8).
pub const REG_ESC_FEATURES: u16 = 0x0008;
/// Number of FMMUs the ESC has (ETG.1000.4 table 5).
pub const REG_FMMU_COUNT: u16 = 0x0004;
/// Number of SyncManagers the ESC has (ETG.1000.4 table 6).
pub const REG_SM_COUNT: u16 = 0x0005;

/// SM activate register bit: enable (ETG.1000.4 table 60).
pub const SM_ENABLE: u8 = 0x01;
/// FMMU type: read (inputs, terminal to master) (ETG.1000.4 table 55).
pub const FMMU_READ: u8 = 0x01;
/// FMMU type: write (outputs, master to terminal) (ETG.1000.4 table 55).
pub const FMMU_WRITE: u8 = 0x02;

/// The eight bytes of one SyncManager's registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SmRegisters {
    /// SyncManager number.
    pub index: u8,
    /// Physical start address.
    pub start: u16,
    /// Length in bytes.
    pub length: u16,
    /// Control register (mode and direction).
    pub control: u8,
    /// Activate register (bit 0: enable).
    pub activate: u8,
}

impl SmRegisters {
    /// Register address of this SyncManager's block.
    pub fn address(&self) -> u16 {
        REG_SM_BASE + 8 * u16::from(self.index)
    }

    /// The register block: start, length, control, status (0), activate, PDI control (0).
    pub fn encode(&self) -> [u8; 8] {
        let s = self.start.to_le_bytes();
        let l = self.length.to_le_bytes();
        [s[0], s[1], l[0], l[1], self.control, 0, self.activate, 0]
    }
}

/// The sixteen bytes of one FMMU's registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FmmuRegisters {
    /// FMMU number.
    pub index: u8,
    /// Logical start address (byte).
    pub logical_start: u32,
    /// Length in bytes of the logical area touched.
    pub length: u16,
    /// First bit (0..7) at the logical start byte.
    pub logical_start_bit: u8,
    /// Last bit (0..7) at the logical end byte.
    pub logical_end_bit: u8,
    /// Physical start address in the ESC.
    pub physical_start: u16,
    /// First physical bit.
    pub physical_start_bit: u8,
    /// Read (inputs) or write (outputs).
    pub kind: u8,
}

impl FmmuRegisters {
    /// Register address of this FMMU's block.
    pub fn address(&self) -> u16 {
        REG_FMMU_BASE + 16 * u16::from(self.index)
    }

    /// The register block, activated.
    pub fn encode(&self) -> [u8; 16] {
        let ls = self.logical_start.to_le_bytes();
        let l = self.length.to_le_bytes();
        let p = self.physical_start.to_le_bytes();
        [
            ls[0],
            ls[1],
            ls[2],
            ls[3],
            l[0],
            l[1],
            self.logical_start_bit,
            self.logical_end_bit,
            p[0],
            p[1],
            self.physical_start_bit,
            self.kind,
            0x01,
            0,
            0,
            0,
        ]
    }
}

/// Why SyncManager or FMMU registers could not be computed or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The SII describes no SyncManager with this number.
    #[error("terminal {station:#06x}: the SII describes no SyncManager {sm}")]
    NoSyncManager {
        /// Station address.
        station: u16,
        /// SyncManager number.
        sm: u8,
    },
    /// More FMMUs needed than the terminal offers.
    #[error(
        "terminal {station:#06x}: {needed} FMMUs needed for {what}, the terminal offers {available}"
    )]
    NotEnoughFmmus {
        /// Station address.
        station: u16,
        /// FMMUs needed.
        needed: usize,
        /// FMMUs available.
        available: usize,
        /// For what.
        what: &'static str,
    },
    /// The PDOs of a SyncManager need more bytes than its length register holds.
    #[error(
        "terminal {station:#06x}: the PDOs of SyncManager {sm} need {bytes} bytes, more than a SyncManager can hold"
    )]
    TooLarge {
        /// Station address.
        station: u16,
        /// SyncManager number.
        sm: u8,
        /// Bytes needed.
        bytes: u32,
    },
    /// A SyncManager area reaches beyond the ESC's process RAM.
    #[error(
        "terminal {station:#06x}: SyncManager {sm} at {start:#06x}..{end:#06x} lies beyond the ESC's {ram_kib} KiB of process RAM (0x1000..{ram_end:#06x}); the SII's SyncManager or mailbox addresses do not fit this ESC"
    )]
    BeyondRam {
        /// Station address.
        station: u16,
        /// SyncManager number.
        sm: u8,
        /// First byte of the area.
        start: u16,
        /// End (exclusive) of the area.
        end: u32,
        /// Process RAM the ESC reports (register 0x0006).
        ram_kib: u8,
        /// End (exclusive) of the process RAM.
        ram_end: u32,
    },
    /// A register access failed.
    #[error("terminal {station:#06x}: {source}")]
    Register {
        /// Station address.
        station: u16,
        /// The register error.
        #[source]
        source: RegisterError,
    },
}

/// SyncManager registers of the standard mailbox (SM0 and SM1) from the SII, or an
/// empty list for terminals without mailbox. Written in INIT before asking for PRE-OP.
pub fn mailbox_sync_managers(sii: &SiiImage) -> Vec<SmRegisters> {
    if !sii.has_mailbox() {
        return Vec::new();
    }
    let h = &sii.header;
    let control_of = |kind, default| {
        sii.sync_managers
            .iter()
            .find(|s| s.kind == kind)
            .map_or(default, |s| s.control)
    };
    vec![
        SmRegisters {
            index: 0,
            start: h.rx_mailbox.offset,
            length: h.rx_mailbox.size,
            // Mailbox mode, write direction, ECAT/PDI interrupts (ETG.1000.4 table 58).
            control: control_of(SmType::MailboxOut, 0x26),
            activate: SM_ENABLE,
        },
        SmRegisters {
            index: 1,
            start: h.tx_mailbox.offset,
            length: h.tx_mailbox.size,
            control: control_of(SmType::MailboxIn, 0x22),
            activate: SM_ENABLE,
        },
    ]
}

/// SyncManager registers of the process-data SyncManagers in `layout`: start and
/// control from the SII, length from the layout; disabled when empty.
pub fn process_data_sync_managers(
    station: u16,
    sii: &SiiImage,
    layout: &PdoLayout,
) -> Result<Vec<SmRegisters>, ConfigError> {
    layout
        .sync_managers
        .iter()
        .map(|sm| {
            let s = sii.sync_managers.get(usize::from(sm.sync_manager)).ok_or(
                ConfigError::NoSyncManager {
                    station,
                    sm: sm.sync_manager,
                },
            )?;
            let bytes = sm.bit_len().div_ceil(8);
            let Ok(length) = u16::try_from(bytes) else {
                return Err(ConfigError::TooLarge {
                    station,
                    sm: sm.sync_manager,
                    bytes,
                });
            };
            Ok(SmRegisters {
                index: sm.sync_manager,
                start: s.start,
                length,
                control: s.control,
                activate: if length > 0 { SM_ENABLE } else { 0 },
            })
        })
        .collect()
}

/// Number of FMMUs usable for `direction` per the SII's FMMU category (`None`: the
/// SII does not say).
pub fn fmmus_for(sii: &SiiImage, direction: PdoDirection) -> Option<Vec<u8>> {
    if sii.fmmus.is_empty() {
        return None;
    }
    let want = match direction {
        PdoDirection::Rx => FmmuUsage::Outputs,
        PdoDirection::Tx => FmmuUsage::Inputs,
    };
    Some(
        sii.fmmus
            .iter()
            .enumerate()
            .filter(|(_, u)| **u == want)
            .map(|(i, _)| i as u8)
            .collect(),
    )
}

/// Writes SyncManager registers (each block in one datagram).
pub async fn write_sync_managers<T: StationIo + ?Sized>(
    io: &T,
    station: u16,
    sms: &[SmRegisters],
) -> Result<(), ConfigError> {
    for sm in sms {
        io.write_checked(station, sm.address(), &sm.encode())
            .await
            .map_err(|source| ConfigError::Register { station, source })?;
        tracing::debug!(
            station,
            sm = sm.index,
            start = sm.start,
            length = sm.length,
            "SyncManager configured"
        );
    }
    Ok(())
}

/// Checks that no enabled SyncManager of `sms` ends beyond the process RAM of an ESC
/// reporting `ram_kib` KiB (register 0x0006; the RAM starts at 0x1000, ETG.1000.4
/// §6.7), so that a misplaced area is named before a mailbox write silently goes
/// nowhere. Areas below 0x1000 are allowed: digital output terminals map their
/// SyncManager onto the digital I/O registers at 0x0F00. An ESC reporting 0 KiB is not
/// checked. Only the configured length is checked, not the three buffers of buffered
/// mode, whose reservation the SII's addresses account for.
pub fn check_ram(station: u16, ram_kib: u8, sms: &[SmRegisters]) -> Result<(), ConfigError> {
    if ram_kib == 0 {
        return Ok(());
    }
    let ram_end = u32::from(PROCESS_RAM) + 1024 * u32::from(ram_kib);
    for sm in sms.iter().filter(|s| s.activate & SM_ENABLE != 0) {
        let end = u32::from(sm.start) + u32::from(sm.length);
        if end > ram_end {
            return Err(ConfigError::BeyondRam {
                station,
                sm: sm.index,
                start: sm.start,
                end,
                ram_kib,
                ram_end,
            });
        }
    }
    Ok(())
}

/// Writes FMMU registers.
pub async fn write_fmmus<T: StationIo + ?Sized>(
    io: &T,
    station: u16,
    fmmus: &[FmmuRegisters],
) -> Result<(), ConfigError> {
    for f in fmmus {
        io.write_checked(station, f.address(), &f.encode())
            .await
            .map_err(|source| ConfigError::Register { station, source })?;
        tracing::debug!(
            station,
            fmmu = f.index,
            logical = f.logical_start,
            length = f.length,
            "FMMU configured"
        );
    }
    Ok(())
}

/// Reads whether the terminal's ESC supports bit-oriented FMMU mapping (register
/// 0x0008 bit 0 clear).
pub async fn supports_bit_fmmus<T: StationIo + ?Sized>(
    io: &T,
    station: u16,
) -> Result<bool, ConfigError> {
    let f = io
        .read_u16(station, REG_ESC_FEATURES)
        .await
        .map_err(|source| ConfigError::Register { station, source })?;
    Ok(f & 0x0001 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ethercat::sii::testdata::sii;

    #[test]
    fn el7041_mailbox_sync_managers() {
        let sms = mailbox_sync_managers(&sii("el7041.bin"));
        assert_eq!(sms.len(), 2);
        assert_eq!(sms[0].encode(), [0x00, 0x10, 0x80, 0x00, 0x26, 0, 1, 0]);
        assert_eq!(sms[1].encode(), [0x80, 0x10, 0x80, 0x00, 0x22, 0, 1, 0]);
        assert_eq!(sms[1].address(), 0x0808);
        assert!(mailbox_sync_managers(&sii("el2004.bin")).is_empty());
    }

    #[test]
    fn el2004_process_data_sync_manager_length_from_pdos() {
        let s = sii("el2004.bin");
        let layout = PdoLayout::from_sii(&s, "test");
        let sms = process_data_sync_managers(1, &s, &layout).expect("sms");
        assert_eq!(sms.len(), 1);
        // The SII says length 0; four 1-bit outputs need one byte.
        assert_eq!(sms[0].encode(), [0x00, 0x0F, 0x01, 0x00, 0x44, 0, 1, 0]);
        assert_eq!(fmmus_for(&s, PdoDirection::Rx), Some(vec![0]));
        assert_eq!(fmmus_for(&s, PdoDirection::Tx), Some(vec![]));
    }

    #[test]
    fn oversized_process_data_is_an_error() {
        use super::super::layout::{Pdo, PdoEntry, SmPdos};
        let s = sii("el2004.bin");
        let entry = PdoEntry::from_mapping(0x7000_01FF);
        let pdo = Pdo {
            index: 0x1600,
            direction: PdoDirection::Rx,
            name: None,
            entries: vec![entry; 255],
        };
        let mut layout = PdoLayout::from_sii(&s, "test");
        layout.sync_managers = vec![SmPdos {
            sync_manager: 0,
            direction: PdoDirection::Rx,
            pdos: vec![pdo; 10],
        }];
        let err = process_data_sync_managers(3, &s, &layout).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::TooLarge {
                    station: 3,
                    sm: 0,
                    bytes: 81_282
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn sync_managers_must_end_inside_the_process_ram() {
        // The EL2004's output SM on the digital I/O registers (0x0F00) and the EL7041's
        // mailboxes fit an ET1200's 1 KiB.
        let s = sii("el2004.bin");
        let layout = PdoLayout::from_sii(&s, "test");
        let sms = process_data_sync_managers(1, &s, &layout).expect("sms");
        check_ram(1, 1, &sms).expect("0x0F00 is allowed");
        check_ram(2, 1, &mailbox_sync_managers(&sii("el7041.bin"))).expect("fits 1 KiB");
        // A mailbox placed at 0x1800 does not fit 1 KiB but fits 8.
        let mut sms = mailbox_sync_managers(&sii("el7041.bin"));
        sms[1].start = 0x1800;
        let err = check_ram(0x1003, 1, &sms).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::BeyondRam {
                    station: 0x1003,
                    sm: 1,
                    start: 0x1800,
                    end: 0x1880,
                    ram_kib: 1,
                    ram_end: 0x1400
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "terminal 0x1003: SyncManager 1 at 0x1800..0x1880 lies beyond the ESC's 1 KiB of \
             process RAM (0x1000..0x1400); the SII's SyncManager or mailbox addresses do not \
             fit this ESC"
        );
        check_ram(0x1003, 8, &sms).expect("fits 8 KiB");
        check_ram(0x1003, 0, &sms).expect("0 KiB: unknown, not checked");
        // A disabled SM is not checked.
        sms[1].activate = 0;
        check_ram(0x1003, 1, &sms).expect("disabled");
    }

    #[test]
    fn fmmu_encoding() {
        let f = FmmuRegisters {
            index: 1,
            logical_start: 0x0001_0002,
            length: 3,
            logical_start_bit: 4,
            logical_end_bit: 3,
            physical_start: 0x1180,
            physical_start_bit: 0,
            kind: FMMU_READ,
        };
        assert_eq!(f.address(), 0x0610);
        assert_eq!(
            f.encode(),
            [2, 0, 1, 0, 3, 0, 4, 3, 0x80, 0x11, 0, 1, 1, 0, 0, 0]
        );
    }
}
