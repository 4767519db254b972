//! The ESC's EEPROM interface (registers 0x0500..0x050F, ETG.1000.4 §6.4): taking the
//! EEPROM from the PDI, reading the SII 4 or 8 bytes at a time (as the ESC offers,
//! 0x0502 bit 6), writing single words (alias and serial number, with the header
//! checksum recomputed).

use super::image::{
    ALIAS_WORD, CATEGORY_START_WORD, CHECKSUM_WORD, SERIAL_WORD, SiiError, SiiImage,
    header_checksum,
};
use crate::ethercat::station_io::{RegisterError, StationIo, StationIoExt};
use std::time::Duration;

/// EEPROM configuration register: bit 0 offers the EEPROM to the PDI, bit 1 forces
/// EtherCAT access (ETG.1000.4 table 48).
pub const REG_EEPROM_CONFIG: u16 = 0x0500;
/// EEPROM PDI access state: bit 0 set while the PDI holds the EEPROM (ETG.1000.4 table 49).
pub const REG_EEPROM_PDI_ACCESS: u16 = 0x0501;
/// EEPROM control/status register (ETG.1000.4 table 50).
pub const REG_EEPROM_CONTROL: u16 = 0x0502;
/// EEPROM word address register, 32 bit (ETG.1000.4 table 51).
pub const REG_EEPROM_ADDRESS: u16 = 0x0504;
/// EEPROM data register, 4 or 8 bytes (ETG.1000.4 table 52).
pub const REG_EEPROM_DATA: u16 = 0x0508;

/// Bits of the EEPROM control/status register 0x0502 (ETG.1000.4 table 50).
pub mod control {
    /// Write enable, written together with the write command.
    pub const WRITE_ENABLE: u16 = 0x0001;
    /// The EEPROM is emulated by the PDI.
    pub const EMULATION: u16 = 0x0020;
    /// Reads return 8 bytes (clear: 4 bytes).
    pub const READ_8_BYTES: u16 = 0x0040;
    /// The EEPROM uses two address bytes.
    pub const TWO_ADDRESS_BYTES: u16 = 0x0080;
    /// Command field mask.
    pub const COMMAND_MASK: u16 = 0x0700;
    /// Read command.
    pub const CMD_READ: u16 = 0x0100;
    /// Write command.
    pub const CMD_WRITE: u16 = 0x0200;
    /// Reload command (reloads the ESC configuration area).
    pub const CMD_RELOAD: u16 = 0x0400;
    /// Checksum error in the ESC configuration area.
    pub const CHECKSUM_ERROR: u16 = 0x0800;
    /// The device information could not be loaded.
    pub const LOAD_ERROR: u16 = 0x1000;
    /// Missing acknowledge from the EEPROM or invalid command.
    pub const ACK_ERROR: u16 = 0x2000;
    /// Write without write enable.
    pub const WRITE_ENABLE_ERROR: u16 = 0x4000;
    /// The EEPROM interface is busy.
    pub const BUSY: u16 = 0x8000;
}

/// Failure of an EEPROM access.
#[derive(Debug, thiserror::Error)]
pub enum EepromError {
    /// A register access failed (transport, or the terminal did not answer).
    #[error("EEPROM interface of terminal {station:#06x}: {source}")]
    Register {
        /// Station address of the terminal.
        station: u16,
        /// The register error.
        #[source]
        source: RegisterError,
    },
    /// The EEPROM interface stayed busy.
    #[error(
        "EEPROM of terminal {station:#06x} still busy after {waited:?} (word {word:#06x}, control {control:#06x})"
    )]
    Busy {
        /// Station address of the terminal.
        station: u16,
        /// Word address of the access.
        word: u32,
        /// Last value of the control/status register.
        control: u16,
        /// How long the master waited.
        waited: Duration,
    },
    /// The EEPROM did not acknowledge the command (control bit 13).
    #[error(
        "EEPROM of terminal {station:#06x} did not acknowledge the {command} of word {word:#06x} (control {control:#06x}) after {attempts} attempts"
    )]
    NoAcknowledge {
        /// Station address of the terminal.
        station: u16,
        /// Word address of the access.
        word: u32,
        /// "read" or "write".
        command: &'static str,
        /// Value of the control/status register.
        control: u16,
        /// How many times the command was issued.
        attempts: u32,
    },
    /// A write was refused for lack of write enable (control bit 14).
    #[error(
        "EEPROM of terminal {station:#06x} refused the write of word {word:#06x}: write enable error"
    )]
    WriteEnable {
        /// Station address of the terminal.
        station: u16,
        /// Word address of the write.
        word: u32,
    },
    /// A written word did not read back.
    #[error(
        "EEPROM of terminal {station:#06x}: word {word:#06x} reads back {read:#06x} after writing {wrote:#06x}"
    )]
    Verify {
        /// Station address of the terminal.
        station: u16,
        /// Word address.
        word: u32,
        /// Value written.
        wrote: u16,
        /// Value read back.
        read: u16,
    },
    /// The image read is not a usable SII.
    #[error("SII of terminal {station:#06x}: {source}")]
    Parse {
        /// Station address of the terminal.
        station: u16,
        /// The parse error.
        #[source]
        source: SiiError,
    },
}

/// Timing and size limits of EEPROM accesses.
#[derive(Debug, Clone, Copy)]
pub struct EepromOptions {
    /// How long a read may keep the interface busy before giving up.
    pub read_timeout: Duration,
    /// How long a write may keep the interface busy (EEPROM writes take milliseconds).
    pub write_timeout: Duration,
    /// How many times a command is reissued when the EEPROM does not acknowledge.
    pub attempts: u32,
    /// Largest image read, in bytes, whatever the header claims.
    pub max_bytes: usize,
}

impl Default for EepromOptions {
    fn default() -> Self {
        Self {
            read_timeout: Duration::from_millis(100),
            write_timeout: Duration::from_millis(500),
            attempts: 3,
            max_bytes: 64 * 1024,
        }
    }
}

/// The EEPROM interface of one terminal.
#[derive(Debug)]
pub struct Eeprom<'a, T: ?Sized> {
    io: &'a T,
    station: u16,
    options: EepromOptions,
}

impl<'a, T: StationIo + ?Sized> Eeprom<'a, T> {
    /// The EEPROM of the terminal at configured station address `station`.
    pub fn new(io: &'a T, station: u16) -> Self {
        Self::with_options(io, station, EepromOptions::default())
    }

    /// Same as [`Eeprom::new`] with explicit limits.
    pub fn with_options(io: &'a T, station: u16, options: EepromOptions) -> Self {
        Self {
            io,
            station,
            options,
        }
    }

    fn reg_err(&self, source: RegisterError) -> EepromError {
        EepromError::Register {
            station: self.station,
            source,
        }
    }

    /// Makes sure the master (EtherCAT side) owns the EEPROM: if the PDI holds it or
    /// it is offered to the PDI, forces EtherCAT access and takes it back
    /// (writes 0x02 then 0x00 to 0x0500).
    pub async fn take_ownership(&self) -> Result<(), EepromError> {
        let mut b = [0u8; 2];
        self.io
            .read_checked(self.station, REG_EEPROM_CONFIG, &mut b)
            .await
            .map_err(|e| self.reg_err(e))?;
        if b[0] & 0x01 != 0 || b[1] & 0x01 != 0 {
            tracing::debug!(station = self.station, "taking the EEPROM from the PDI");
            for v in [0x02u8, 0x00] {
                self.io
                    .write_checked(self.station, REG_EEPROM_CONFIG, &[v])
                    .await
                    .map_err(|e| self.reg_err(e))?;
            }
        }
        Ok(())
    }

    /// Offers the EEPROM to the terminal's PDI (writes 0x01 to 0x0500), as some
    /// terminals require before leaving INIT.
    pub async fn release_to_pdi(&self) -> Result<(), EepromError> {
        self.io
            .write_checked(self.station, REG_EEPROM_CONFIG, &[0x01])
            .await
            .map_err(|e| self.reg_err(e))
    }

    /// Reads control/status, address and data registers (0x0502..0x050F) until the
    /// interface is no longer busy.
    async fn wait_idle(&self, word: u32, timeout: Duration) -> Result<[u8; 14], EepromError> {
        let start = tokio::time::Instant::now();
        let mut polls = 0u32;
        loop {
            let mut regs = [0u8; 14];
            self.io
                .read_checked(self.station, REG_EEPROM_CONTROL, &mut regs)
                .await
                .map_err(|e| self.reg_err(e))?;
            let ctl = u16::from_le_bytes([regs[0], regs[1]]);
            if ctl & control::BUSY == 0 {
                return Ok(regs);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(EepromError::Busy {
                    station: self.station,
                    word,
                    control: ctl,
                    waited,
                });
            }
            polls += 1;
            if polls < 8 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Reads the 4 or 8 bytes (as the ESC offers) starting at word address `word`.
    pub async fn read_chunk(&self, word: u32) -> Result<Vec<u8>, EepromError> {
        self.wait_idle(word, self.options.read_timeout).await?;
        let mut last_ctl = 0;
        for _ in 0..self.options.attempts.max(1) {
            // Command and address in one datagram (0x0502..0x0507): the ESC starts the
            // command at the end of the frame, with the address already in place.
            let mut cmd = [0u8; 6];
            cmd[..2].copy_from_slice(&control::CMD_READ.to_le_bytes());
            cmd[2..].copy_from_slice(&word.to_le_bytes());
            self.io
                .write_checked(self.station, REG_EEPROM_CONTROL, &cmd)
                .await
                .map_err(|e| self.reg_err(e))?;
            let regs = self.wait_idle(word, self.options.read_timeout).await?;
            let ctl = u16::from_le_bytes([regs[0], regs[1]]);
            last_ctl = ctl;
            if ctl & control::ACK_ERROR != 0 {
                tracing::debug!(
                    station = self.station,
                    word,
                    ctl,
                    "EEPROM read not acknowledged"
                );
                continue;
            }
            let n = if ctl & control::READ_8_BYTES != 0 {
                8
            } else {
                4
            };
            return Ok(regs[6..6 + n].to_vec());
        }
        Err(EepromError::NoAcknowledge {
            station: self.station,
            word,
            command: "read",
            control: last_ctl,
            attempts: self.options.attempts.max(1),
        })
    }

    /// Reads `count` words starting at `word`, as bytes.
    pub async fn read_words(&self, word: u32, count: usize) -> Result<Vec<u8>, EepromError> {
        let mut out = Vec::with_capacity(count * 2 + 8);
        while out.len() < count * 2 {
            let at = word + (out.len() / 2) as u32;
            let chunk = self.read_chunk(at).await?;
            out.extend_from_slice(&chunk);
        }
        out.truncate(count * 2);
        Ok(out)
    }

    /// Reads one word.
    pub async fn read_word(&self, word: u32) -> Result<u16, EepromError> {
        let b = self.read_words(word, 1).await?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Reads the whole SII image: the header, then category by category up to the end
    /// marker, the size the header declares, or [`EepromOptions::max_bytes`].
    pub async fn read_image(&self) -> Result<Vec<u8>, EepromError> {
        self.take_ownership().await?;
        let mut image = Vec::new();
        loop {
            if let Some(len) = image_complete_len(&image, self.options.max_bytes) {
                image.truncate(len);
                return Ok(image);
            }
            let chunk = self.read_chunk((image.len() / 2) as u32).await?;
            image.extend_from_slice(&chunk);
        }
    }

    /// Reads and parses the SII.
    pub async fn read_sii(&self) -> Result<SiiImage, EepromError> {
        let bytes = self.read_image().await?;
        SiiImage::parse(&bytes).map_err(|source| EepromError::Parse {
            station: self.station,
            source,
        })
    }

    /// Writes one word and checks that it reads back.
    pub async fn write_word(&self, word: u32, value: u16) -> Result<(), EepromError> {
        self.take_ownership().await?;
        self.wait_idle(word, self.options.write_timeout).await?;
        let mut last_ctl = 0;
        let mut done = false;
        for _ in 0..self.options.attempts.max(1) {
            self.io
                .write_checked(self.station, REG_EEPROM_DATA, &value.to_le_bytes())
                .await
                .map_err(|e| self.reg_err(e))?;
            self.io
                .write_checked(self.station, REG_EEPROM_ADDRESS, &word.to_le_bytes())
                .await
                .map_err(|e| self.reg_err(e))?;
            self.io
                .write_u16(
                    self.station,
                    REG_EEPROM_CONTROL,
                    control::CMD_WRITE | control::WRITE_ENABLE,
                )
                .await
                .map_err(|e| self.reg_err(e))?;
            let regs = self.wait_idle(word, self.options.write_timeout).await?;
            let ctl = u16::from_le_bytes([regs[0], regs[1]]);
            last_ctl = ctl;
            if ctl & control::WRITE_ENABLE_ERROR != 0 {
                return Err(EepromError::WriteEnable {
                    station: self.station,
                    word,
                });
            }
            if ctl & control::ACK_ERROR != 0 {
                continue;
            }
            done = true;
            break;
        }
        if !done {
            return Err(EepromError::NoAcknowledge {
                station: self.station,
                word,
                command: "write",
                control: last_ctl,
                attempts: self.options.attempts.max(1),
            });
        }
        let read = self.read_word(word).await?;
        if read != value {
            return Err(EepromError::Verify {
                station: self.station,
                word,
                wrote: value,
                read,
            });
        }
        Ok(())
    }

    /// Writes the configured station alias (word 0x04) and the header checksum
    /// (word 0x07) recomputed over words 0..6. The ESC loads the alias into register
    /// 0x0012 at its next EEPROM reload (power cycle).
    pub async fn write_alias(&self, alias: u16) -> Result<(), EepromError> {
        let mut header = self.read_words(0, 8).await?;
        let at = usize::from(ALIAS_WORD) * 2;
        header[at..at + 2].copy_from_slice(&alias.to_le_bytes());
        let crc = header_checksum(&header);
        let ck = usize::from(CHECKSUM_WORD) * 2;
        let checksum_word = u16::from_le_bytes([crc, header[ck + 1]]);
        self.write_word(u32::from(ALIAS_WORD), alias).await?;
        self.write_word(u32::from(CHECKSUM_WORD), checksum_word)
            .await?;
        tracing::info!(
            station = self.station,
            alias,
            crc,
            "wrote station alias to the SII"
        );
        Ok(())
    }

    /// Writes the serial number (words 0x0E..0x0F; not covered by the header checksum).
    pub async fn write_serial(&self, serial: u32) -> Result<(), EepromError> {
        self.write_word(u32::from(SERIAL_WORD), serial as u16)
            .await?;
        self.write_word(u32::from(SERIAL_WORD) + 1, (serial >> 16) as u16)
            .await?;
        tracing::info!(
            station = self.station,
            serial,
            "wrote serial number to the SII"
        );
        Ok(())
    }
}

/// Whether the first bytes of an SII image, read from word 0 on, are all there is to
/// read: `Some(len)` when the image is complete at `len` bytes (the header, then the
/// categories up to the end marker, the size the header declares, or `max_bytes`);
/// `None` when the next chunk (at word `image.len() / 2`) is needed. A blank EEPROM
/// (bad checksum, category type 0 first) is complete after its header. Sans-IO: the
/// same walk serves the reader of one terminal and the reader of all terminals.
pub fn image_complete_len(image: &[u8], max_bytes: usize) -> Option<usize> {
    let header_bytes = CATEGORY_START_WORD * 2;
    if image.len() < header_bytes {
        return None;
    }
    let word = |w: usize| u16::from_le_bytes([image[w * 2], image[w * 2 + 1]]);
    // Word 0x3E: EEPROM size in KiBit − 1 (ETG.2010 table 2).
    let declared = (usize::from(word(0x3E)) + 1) * 128;
    let limit_words = declared.min(max_bytes) / 2;
    let have_words = image.len() / 2;
    let complete = Some(image.len().min(limit_words * 2));
    let checksum_ok = header_checksum(image) == image[usize::from(CHECKSUM_WORD) * 2];
    let mut pos = CATEGORY_START_WORD;
    loop {
        if pos >= limit_words {
            return complete;
        }
        if have_words < (pos + 2).min(limit_words) {
            return None;
        }
        if have_words < pos + 2 {
            return complete;
        }
        let kind = word(pos);
        if kind == 0xFFFF {
            return complete;
        }
        if !checksum_ok && pos == CATEGORY_START_WORD && kind == 0 {
            // A blank EEPROM: nothing more worth reading.
            return complete;
        }
        pos += 2 + usize::from(word(pos + 1));
        if have_words < pos.min(limit_words) {
            return None;
        }
    }
}

/// Reads and parses the SII of the terminal at `station` with default options.
pub async fn read_sii<T: StationIo + ?Sized>(
    io: &T,
    station: u16,
) -> Result<SiiImage, EepromError> {
    Eeprom::new(io, station).read_sii().await
}

#[cfg(test)]
pub(crate) mod fake {
    //! An ESC EEPROM interface in front of an in-memory image, for unit tests.

    use super::{REG_EEPROM_ADDRESS, REG_EEPROM_CONTROL, REG_EEPROM_DATA, control};
    use crate::ethercat::station_io::fake::Hooks;

    /// Emulates registers 0x0500..0x050F over `image`.
    pub(crate) struct FakeEeprom {
        pub(crate) image: Vec<u8>,
        pub(crate) eight_bytes: bool,
        /// Number of status reads that report busy after each command.
        pub(crate) busy_polls: u32,
        busy_left: u32,
        /// Number of commands that fail with an acknowledge error.
        pub(crate) ack_failures: u32,
        /// Every command seen, as (command bits, word address).
        pub(crate) commands: Vec<(u16, u32)>,
    }

    impl FakeEeprom {
        pub(crate) fn new(image: Vec<u8>, eight_bytes: bool) -> Self {
            Self {
                image,
                eight_bytes,
                busy_polls: 2,
                busy_left: 0,
                ack_failures: 0,
                commands: Vec::new(),
            }
        }
    }

    fn ctl(regs: &[u8]) -> u16 {
        let a = usize::from(REG_EEPROM_CONTROL);
        u16::from_le_bytes([regs[a], regs[a + 1]])
    }

    fn set_ctl(regs: &mut [u8], v: u16) {
        let a = usize::from(REG_EEPROM_CONTROL);
        regs[a..a + 2].copy_from_slice(&v.to_le_bytes());
    }

    impl Hooks for FakeEeprom {
        fn after_write(&mut self, regs: &mut [u8], register: u16, len: usize) {
            let covers = |r: u16| register <= r && usize::from(register) + len > usize::from(r);
            if !covers(REG_EEPROM_CONTROL + 1) {
                return;
            }
            let written = ctl(regs);
            let cmd = written & control::COMMAND_MASK;
            let a = usize::from(REG_EEPROM_ADDRESS);
            let addr = u32::from_le_bytes([regs[a], regs[a + 1], regs[a + 2], regs[a + 3]]);
            self.commands.push((cmd, addr));
            let mut status = if self.eight_bytes {
                control::READ_8_BYTES
            } else {
                0
            };
            self.busy_left = self.busy_polls;
            if self.ack_failures > 0 && cmd != 0 {
                self.ack_failures -= 1;
                set_ctl(regs, status | control::ACK_ERROR);
                return;
            }
            let byte = addr as usize * 2;
            let d = usize::from(REG_EEPROM_DATA);
            match cmd {
                control::CMD_READ => {
                    for i in 0..8 {
                        regs[d + i] = self.image.get(byte + i).copied().unwrap_or(0xFF);
                    }
                }
                control::CMD_WRITE => {
                    if written & control::WRITE_ENABLE == 0 {
                        status |= control::WRITE_ENABLE_ERROR;
                    } else {
                        if self.image.len() < byte + 2 {
                            self.image.resize(byte + 2, 0xFF);
                        }
                        self.image[byte] = regs[d];
                        self.image[byte + 1] = regs[d + 1];
                    }
                }
                _ => {}
            }
            set_ctl(regs, status);
        }

        fn before_read(&mut self, regs: &mut [u8], register: u16, len: usize) {
            if register <= REG_EEPROM_CONTROL + 1
                && usize::from(register) + len > usize::from(REG_EEPROM_CONTROL)
            {
                let c = ctl(regs);
                if self.busy_left > 0 {
                    self.busy_left -= 1;
                    set_ctl(regs, c | control::BUSY);
                } else {
                    set_ctl(regs, c & !control::BUSY);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeEeprom;
    use super::*;
    use crate::ethercat::station_io::fake::FakeStation;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    use crate::ethercat::sii::testdata::bytes as testdata;

    #[test]
    fn reads_el2004_image_with_8_and_4_byte_reads() {
        let original = testdata("el2004.bin");
        for eight in [true, false] {
            let esc = FakeStation::new(0x1001, FakeEeprom::new(original.clone(), eight));
            let bytes = rt()
                .block_on(Eeprom::new(&esc, 0x1001).read_image())
                .expect("read");
            // Up to and including the end marker at word 195.
            assert!(bytes.len() >= 196 * 2, "{} bytes", bytes.len());
            assert_eq!(bytes[..392], original[..392]);
            let img = SiiImage::parse(&bytes).expect("parse");
            assert_eq!(img.identity().product_code, 0x07D4_3052);
            assert_eq!(img.rx_pdos.len(), 4);
            // Only what is needed was read: not the whole 2 KiB.
            let reads = esc.with(|_, h| h.commands.len());
            let per = if eight { 4 } else { 2 };
            assert!(reads <= 200 / per + 2, "{reads} reads");
        }
    }

    #[test]
    fn truncated_image_reads_to_the_declared_size() {
        let original = testdata("el7041.bin");
        let esc = FakeStation::new(7, FakeEeprom::new(original.clone(), true));
        let img = rt().block_on(read_sii(&esc, 7)).expect("read");
        assert_eq!(img.identity().product_code, 0x1B81_3052);
        assert_eq!(img.sync_managers.len(), 4);
    }

    #[test]
    fn blank_eeprom_stops_early_and_is_reported() {
        let original = testdata("empty-eeprom.bin");
        let esc = FakeStation::new(7, FakeEeprom::new(original, true));
        let err = rt().block_on(read_sii(&esc, 7)).unwrap_err();
        assert!(
            matches!(
                err,
                EepromError::Parse {
                    station: 7,
                    source: SiiError::Blank { .. }
                }
            ),
            "{err}"
        );
        assert!(esc.with(|_, h| h.commands.len()) < 40);
    }

    #[test]
    fn acknowledge_errors_are_retried_then_reported() {
        let esc = FakeStation::new(7, FakeEeprom::new(testdata("el2004.bin"), true));
        esc.with(|_, h| h.ack_failures = 2);
        let w = rt()
            .block_on(Eeprom::new(&esc, 7).read_word(0x0A))
            .expect("read after retries");
        assert_eq!(w, 0x3052);

        esc.with(|_, h| h.ack_failures = 10);
        let err = rt()
            .block_on(Eeprom::new(&esc, 7).read_word(0x0A))
            .unwrap_err();
        assert!(
            matches!(
                err,
                EepromError::NoAcknowledge {
                    attempts: 3,
                    word: 0x0A,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn stuck_busy_times_out() {
        let esc = FakeStation::new(7, FakeEeprom::new(testdata("el2004.bin"), true));
        esc.with(|_, h| h.busy_polls = u32::MAX);
        let opts = EepromOptions {
            read_timeout: Duration::from_millis(20),
            ..EepromOptions::default()
        };
        let err = rt()
            .block_on(Eeprom::with_options(&esc, 7, opts).read_word(0))
            .unwrap_err();
        assert!(matches!(err, EepromError::Busy { station: 7, .. }), "{err}");
    }

    #[test]
    fn missing_terminal_is_a_register_error() {
        let esc = FakeStation::new(7, FakeEeprom::new(testdata("el2004.bin"), true));
        let err = rt().block_on(read_sii(&esc, 8)).unwrap_err();
        assert!(err.to_string().contains("working counter 0"), "{err}");
    }

    #[test]
    fn alias_write_recomputes_checksum() {
        let esc = FakeStation::new(7, FakeEeprom::new(testdata("el2004.bin"), true));
        let rt = rt();
        rt.block_on(Eeprom::new(&esc, 7).write_alias(0x1234))
            .expect("alias");
        rt.block_on(Eeprom::new(&esc, 7).write_serial(0xDEAD_BEEF))
            .expect("serial");
        let image = esc.with(|_, h| h.image.clone());
        let img = SiiImage::parse(&image).expect("parse");
        assert_eq!(img.header.station_alias, 0x1234);
        assert!(img.header.checksum_ok, "checksum recomputed");
        assert_ne!(img.header.checksum, 0xD8, "checksum changed with the alias");
        assert_eq!(img.identity().serial, 0xDEAD_BEEF);
        assert_eq!(img.identity().product_code, 0x07D4_3052);
    }

    #[test]
    fn completeness_of_every_test_image_grows_with_its_prefix() {
        let dir = crate::ethercat::sii::testdata::dir();
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("test data") {
            let path = entry.expect("entry").path();
            let file = std::fs::read(&path).expect("image");
            let name = path.display().to_string();
            // Beyond a truncated file (el4104.bin) the cells read erased, as in an ESC.
            let mut file = file;
            file.resize(64 * 1024, 0xFF);
            // Read 8 bytes at a time, as the reader does: the first complete prefix is
            // all it reads, and it decodes as the whole EEPROM does.
            let read = (0..=file.len())
                .step_by(8)
                .find_map(|len| image_complete_len(&file[..len], 64 * 1024))
                .unwrap_or_else(|| panic!("{name}: never complete"));
            assert!((128..file.len()).contains(&read), "{name}: {read}");
            assert_eq!(
                image_complete_len(&file[..read], 64 * 1024),
                Some(read),
                "{name}"
            );
            match (SiiImage::parse(&file[..read]), SiiImage::parse(&file)) {
                (Ok(part), Ok(all)) => {
                    assert_eq!(part.identity(), all.identity(), "{name}");
                    assert_eq!(part.name(), all.name(), "{name}");
                }
                (Err(part), Err(all)) => assert_eq!(part.to_string(), all.to_string()),
                (part, all) => panic!("{name}: prefix {part:?}, whole {all:?}"),
            }
            seen += 1;
        }
        assert_eq!(seen, 15, "every image of the test data");
        let blank = testdata("empty-eeprom.bin");
        assert_eq!(
            image_complete_len(&blank, 64 * 1024),
            Some(128),
            "blank: header only"
        );
    }

    #[test]
    fn completeness_of_hostile_images_is_bounded() {
        assert_eq!(image_complete_len(&[], 64 * 1024), None);
        assert_eq!(image_complete_len(&[0xFF; 127], 64 * 1024), None);
        // Erased header: the declared size (8 MiB) is capped by max_bytes, the first
        // category word is the end marker.
        let erased = vec![0xFF; 136];
        assert_eq!(image_complete_len(&erased[..128], 64 * 1024), None);
        assert_eq!(image_complete_len(&erased, 64 * 1024), Some(136));
        // A category claiming 0xFFFF words runs to max_bytes and no further, also when
        // the last chunk overshoots.
        let mut huge = vec![0u8; 64 * 1024 + 8];
        huge[0x7C..0x7E].copy_from_slice(&0xFFFFu16.to_le_bytes());
        huge[128..132].copy_from_slice(&[0x0A, 0x00, 0xFF, 0xFF]);
        assert_eq!(image_complete_len(&huge[..4096], 64 * 1024), None);
        assert_eq!(image_complete_len(&huge, 64 * 1024), Some(64 * 1024));
        assert_eq!(image_complete_len(&huge[..1024], 512), Some(512));
        // A header declaring the smallest EEPROM (128 bytes) is complete at its header.
        let mut small = vec![0u8; 128];
        small[0x7C] = 0;
        assert_eq!(image_complete_len(&small, 64 * 1024), Some(128));
    }
}
