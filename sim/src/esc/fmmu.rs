//! FMMUs and logical addressing (ETG.1000.4 table 55 and 5.4).

use super::*;

/// One FMMU as configured in 0x0600 + 16 * n (ETG.1000.4 table 55).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fmmu {
    /// Logical start address.
    pub logical_start: u32,
    /// Length in bytes of the logical window.
    pub length: u16,
    /// Logical start bit (0..7).
    pub start_bit: u8,
    /// Logical stop bit (0..7).
    pub stop_bit: u8,
    /// Physical start address.
    pub physical_start: u16,
    /// Physical start bit.
    pub physical_start_bit: u8,
    /// Type: bit 0 read, bit 1 write.
    pub kind: u8,
    /// Activate bit 0.
    pub active: bool,
}

impl Fmmu {
    pub(super) fn parse(b: &[u8]) -> Fmmu {
        let g = |i: usize| b.get(i).copied().unwrap_or(0);
        Fmmu {
            logical_start: u32::from_le_bytes([g(0), g(1), g(2), g(3)]),
            length: u16::from_le_bytes([g(4), g(5)]),
            start_bit: g(6) & 7,
            stop_bit: g(7) & 7,
            physical_start: u16::from_le_bytes([g(8), g(9)]),
            physical_start_bit: g(10) & 7,
            kind: g(11) & 3,
            active: g(12) & 1 != 0,
        }
    }

    fn is_bitwise(&self) -> bool {
        self.start_bit != 0 || self.stop_bit != 7 || self.physical_start_bit != 0
    }
}

impl Esc {
    // ----- logical addressing --------------------------------------------------------

    /// A logical datagram (LRD, LWR, LRW) at logical address `lad` over `data`: applies
    /// every active FMMU of this terminal and returns its working counter increment
    /// (read +1, write +1 for LWR, +2 for LRW; ETG.1000.4 table 26).
    pub fn logical(&mut self, cmd: LogicalCommand, lad: u32, data: &mut [u8]) -> u16 {
        let want_read = matches!(cmd, LogicalCommand::Read | LogicalCommand::ReadWrite);
        let want_write = matches!(cmd, LogicalCommand::Write | LogicalCommand::ReadWrite);
        let end = u64::from(lad) + data.len() as u64;
        let mut read_ok = false;
        let mut write_ok = false;
        let overlaps = |f: &Fmmu| {
            let f_start = u64::from(f.logical_start);
            let f_end = f_start + u64::from(f.length);
            f.active && f.length > 0 && f_end > u64::from(lad) && f_start < end
        };
        // Reads see the memory before this datagram's writes (on-the-fly processing reads
        // a byte as it passes and writes the frame's incoming byte), so the incoming bytes
        // of each write window are taken before any read replaces them.
        // (FMMU index, logical address of the slice, offset in scratch, length)
        let mut plan = std::mem::take(&mut self.write_plan);
        plan.clear();
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if want_write {
            for (i, f) in self.fmmus.iter().enumerate() {
                if !overlaps(f) || f.kind & 2 == 0 {
                    continue;
                }
                let (d_off, _, n) = Self::overlap(f, lad, data.len());
                if n > 0 {
                    let slice_lad = lad.wrapping_add(d_off as u32);
                    plan.push((i, slice_lad, scratch.len(), n));
                    scratch.extend_from_slice(&data[d_off..d_off + n]);
                }
            }
        }
        if want_read {
            for i in 0..self.fmmus.len() {
                let f = self.fmmus[i];
                if overlaps(&f) && f.kind & 1 != 0 && self.fmmu_read(&f, lad, data) {
                    read_ok = true;
                }
            }
        }
        for &(i, slice_lad, at, n) in &plan {
            let f = self.fmmus[i];
            if self.fmmu_write(&f, slice_lad, &scratch[at..at + n]) {
                write_ok = true;
            }
        }
        self.write_plan = plan;
        self.scratch = scratch;
        let mut wkc = 0;
        if read_ok {
            wkc += 1;
        }
        if write_ok {
            wkc += if cmd == LogicalCommand::ReadWrite {
                2
            } else {
                1
            };
        }
        wkc
    }

    /// The overlap of FMMU `f` with a datagram at `lad` of `len` bytes:
    /// (offset in the datagram, offset in the FMMU window, length).
    pub(super) fn overlap(f: &Fmmu, lad: u32, len: usize) -> (usize, usize, usize) {
        let d_start = u64::from(lad);
        let f_start = u64::from(f.logical_start);
        let start = d_start.max(f_start);
        let stop = (d_start + len as u64).min(f_start + u64::from(f.length));
        (
            (start - d_start) as usize,
            (start - f_start) as usize,
            stop.saturating_sub(start) as usize,
        )
    }

    pub(super) fn fmmu_read(&mut self, f: &Fmmu, lad: u32, data: &mut [u8]) -> bool {
        let (d_off, f_off, n) = Self::overlap(f, lad, data.len());
        if n == 0 {
            return false;
        }
        if !f.is_bitwise() || !self.config.chip.bit_fmmus() {
            let phys = f.physical_start.wrapping_add(f_off as u16);
            return self.read(phys, &mut data[d_off..d_off + n], ReadMode::Replace);
        }
        // Bit-wise: logical bit k of the window maps to physical bit physical_start_bit + k.
        let (first_bit, last_bit) = Self::window_bits(f, f_off, n);
        let p_first = u32::from(f.physical_start) * 8 + u32::from(f.physical_start_bit);
        let total_bits = last_bit - first_bit + 1;
        let p_from = (p_first + (first_bit - u32::from(f.start_bit))) / 8;
        let p_to = (p_first + (last_bit - u32::from(f.start_bit))) / 8;
        let mut phys = vec![0u8; (p_to - p_from + 1) as usize];
        if !self.read(p_from as u16, &mut phys, ReadMode::Replace) {
            return false;
        }
        for k in 0..total_bits {
            let lbit = first_bit + k; // bit index from the FMMU's logical start byte
            let pbit = p_first + (lbit - u32::from(f.start_bit)) - p_from * 8;
            let v = (phys[(pbit / 8) as usize] >> (pbit % 8)) & 1;
            let dbit = lbit as usize - f_off * 8 + d_off * 8;
            let byte = &mut data[dbit / 8];
            *byte = (*byte & !(1 << (dbit % 8))) | (v << (dbit % 8));
        }
        true
    }

    /// The logical bit range (from the FMMU's first logical byte, bit 0) covered by a
    /// datagram overlap starting `f_off` bytes into the window for `n` bytes.
    pub(super) fn window_bits(f: &Fmmu, f_off: usize, n: usize) -> (u32, u32) {
        let win_first = u32::from(f.start_bit);
        let win_last = (u32::from(f.length) - 1) * 8 + u32::from(f.stop_bit);
        let first = (f_off as u32 * 8).max(win_first);
        let last = ((f_off + n) as u32 * 8 - 1).min(win_last);
        (first, last.max(first))
    }

    pub(super) fn fmmu_write(&mut self, f: &Fmmu, lad: u32, data: &[u8]) -> bool {
        let (d_off, f_off, n) = Self::overlap(f, lad, data.len());
        if n == 0 {
            return false;
        }
        if !f.is_bitwise() || !self.config.chip.bit_fmmus() {
            let phys = f.physical_start.wrapping_add(f_off as u16);
            return self.write(phys, &data[d_off..d_off + n]);
        }
        let (first_bit, last_bit) = Self::window_bits(f, f_off, n);
        let p_first = u32::from(f.physical_start) * 8 + u32::from(f.physical_start_bit);
        let p_from = (p_first + (first_bit - u32::from(f.start_bit))) / 8;
        let p_to = (p_first + (last_bit - u32::from(f.start_bit))) / 8;
        // Merge into the current physical bytes (the pending buffer for an output SM).
        let mut phys: Vec<u8> = (p_from..=p_to)
            .map(|a| self.current_write_byte(a))
            .collect();
        for k in 0..=(last_bit - first_bit) {
            let lbit = first_bit + k;
            let pbit = p_first + (lbit - u32::from(f.start_bit)) - p_from * 8;
            let dbit = lbit as usize - f_off * 8 + d_off * 8;
            let v = (data[dbit / 8] >> (dbit % 8)) & 1;
            let byte = &mut phys[(pbit / 8) as usize];
            *byte = (*byte & !(1 << (pbit % 8))) | (v << (pbit % 8));
        }
        self.write(p_from as u16, &phys)
    }

    pub(super) fn current_write_byte(&self, a: u32) -> u8 {
        if let Some(n) = self.sm_at(a) {
            let s = &self.sms[n];
            if s.cfg.mode() == Some(SmMode::Buffered) {
                let off = (a - u32::from(s.cfg.start)) as usize;
                if s.pending_touched {
                    return s.pending.get(off).copied().unwrap_or(0);
                }
            }
        }
        self.mem.get(a as usize).copied().unwrap_or(0)
    }
}
