//! The SII EEPROM interface (0x0500..0x050F, ETG.1000.4 table 48).

use super::*;

/// The largest EEPROM image the interface writes to (128 KiB, the size of the blank
/// image in the test data); writes beyond fail with the command error bit.
const MAX_EEPROM_BYTES: usize = 128 * 1024;

impl Esc {
    // ----- EEPROM interface ----------------------------------------------------------

    pub(super) fn update_sii_status(&mut self) {
        if self.sii_pending_cmd != 0 && self.now_ns >= self.sii_busy_until {
            self.sii_pending_cmd = 0;
            let hi = usize::from(regs::SII_CONTROL) + 1;
            self.mem[hi] &= !(SII_BUSY | 0x07);
        }
    }

    pub(super) fn sii_command(&mut self) {
        let hi = usize::from(regs::SII_CONTROL) + 1;
        let lo = usize::from(regs::SII_CONTROL);
        // Only bit 0 (write enable) of the low byte is writable; the read size (bit 6) and
        // the other bits are fixed (ek1100-el2828-el2889.pcapng frames 103/106: written
        // 0x00, read back 0x40).
        self.mem[lo] = self.config.chip.sii_control_reset | (self.mem[lo] & 0x01);
        let written = self.mem[hi];
        let cmd = written & 0x07;
        // Status bits are read-only: keep what the ESC shows.
        let mut status = self.mem[hi] & (SII_CHECKSUM_ERROR | SII_NOT_LOADED);
        if self.sii_pending_cmd != 0 {
            // A command while busy is ignored.
            self.mem[hi] = SII_BUSY | self.sii_pending_cmd | status;
            return;
        }
        if cmd == 0 {
            self.mem[hi] = status;
            return;
        }
        let word_addr = self.get32(regs::SII_ADDRESS) as usize;
        let busy_ns = match cmd {
            SII_CMD_READ => {
                let eight = self.mem[usize::from(regs::SII_CONTROL)] & 0x40 != 0;
                let words = if eight { 4 } else { 2 };
                for k in 0..words {
                    let w = self.eeprom_word(word_addr + k).to_le_bytes();
                    let at = usize::from(regs::SII_DATA) + 2 * k;
                    self.mem[at..at + 2].copy_from_slice(&w);
                }
                self.config.eeprom_read_ns
            }
            SII_CMD_WRITE => {
                if self.mem[usize::from(regs::SII_CONTROL)] & 0x01 == 0 {
                    self.mem[hi] = status | SII_WRITE_ENABLE_ERROR;
                    return;
                }
                let v = self.get16(regs::SII_DATA);
                let at = 2 * word_addr;
                if at + 2 > MAX_EEPROM_BYTES {
                    // Beyond the largest SII EEPROM (ETG.2010: 16 Mbit addressing is not
                    // used; 128 KiB here): the command fails instead of growing memory.
                    self.mem[hi] = status | SII_COMMAND_ERROR;
                    return;
                }
                if self.eeprom.len() < at + 2 {
                    self.eeprom.resize(at + 2, 0xFF);
                }
                self.eeprom[at..at + 2].copy_from_slice(&v.to_le_bytes());
                self.config.eeprom_write_ns
            }
            SII_CMD_RELOAD => {
                self.load_config_area();
                status = self.load_status();
                self.update_dl_status();
                self.config.eeprom_read_ns
            }
            _ => {
                self.mem[hi] = status | SII_COMMAND_ERROR;
                return;
            }
        };
        self.sii_pending_cmd = cmd;
        self.sii_busy_until = self.now_ns + busy_ns;
        self.mem[hi] = status | SII_BUSY | cmd;
        // Write enable (bit 0) is self-clearing after a command.
        self.mem[usize::from(regs::SII_CONTROL)] &= !0x01;
    }

    /// The EEPROM contents as the ESC sees them now (including writes by the master).
    pub fn eeprom(&self) -> &[u8] {
        &self.eeprom
    }
}
