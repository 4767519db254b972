//! Distributed clocks: local and system time with drift, receive-time latch, time
//! control loop (ETG.1000.4 9.1).

use super::*;

impl Esc {
    // ----- distributed clocks --------------------------------------------------------

    /// The terminal's local clock at bus time `now_ns` (drift and start offset applied,
    /// plus the corrections of the time control loop).
    pub fn local_time(&self, now_ns: u64) -> u64 {
        let drift = (now_ns as f64 * self.config.drift_ppm * 1e-6) as i64;
        (self.config.clock_start_ns.unwrap_or(0) as i64)
            .wrapping_add(now_ns as i64)
            .wrapping_add(drift)
            .wrapping_add(self.dc_correction_ns) as u64
    }

    /// The terminal's DC system time (local time + offset 0x0920) at bus time `now_ns`.
    pub fn system_time(&self, now_ns: u64) -> u64 {
        self.local_time(now_ns)
            .wrapping_add(self.get64(regs::DC_SYSTEM_OFFSET))
    }

    pub(super) fn latch_receive_times(&mut self) {
        let t0 = self.local_time(self.now_ns);
        self.put32(regs::DC_RECV_TIME_PORT0, t0 as u32);
        if self.links[1] {
            let t1 = self.local_time(self.now_ns + self.downstream_rtt_ns);
            self.put32(regs::DC_RECV_TIME_PORT0 + 4, t1 as u32);
        }
        if self.config.chip.dc == DcUnit::Full {
            self.put64(regs::DC_RECV_TIME_EPU, t0);
        }
    }

    pub(super) fn system_time_written(&mut self) {
        // ETG.1000.4 9.1.4: a write of 0x0910 gives the reference's system time as it left
        // the reference; the time control loop compares it with the local copy (after the
        // propagation delay 0x0928) and slews the local clock towards it.
        let received = self.get64(regs::DC_SYSTEM_TIME);
        let delay = u64::from(self.get32(regs::DC_SYSTEM_DELAY));
        let local = self.system_time(self.now_ns);
        let diff = received.wrapping_add(delay).wrapping_sub(local) as i64;
        let magnitude = diff.unsigned_abs().min(0x7FFF_FFFF) as u32;
        let sign = if diff > 0 { 0x8000_0000 } else { 0 };
        self.put32(regs::DC_SYSTEM_DIFF, magnitude | sign);
        // Slew by a fraction of the difference per compare, as the ESC's filter does.
        self.dc_correction_ns += diff / 4;
        let now = self.system_time(self.now_ns);
        self.put64(regs::DC_SYSTEM_TIME, now);
    }
}
