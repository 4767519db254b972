//! Distributed clocks: local and system time with drift, receive-time latch, time
//! control loop (ETG.1000.4 9.1).

use super::*;

/// Differences above this are corrected in phase only (the loop's coarse mode).
const DC_RATE_CAPTURE_NS: u64 = 10_000;
/// The speed adjustment the loop can apply, in ppm.
const DC_MAX_RATE_PPM: f64 = 1000.0;

/// The state of the time control loop.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct DcLoop {
    /// Bus time of the last correction.
    pub(super) anchor_ns: u64,
    /// Correction (ns) at `anchor_ns`.
    pub(super) anchor_correction_ns: i64,
    /// Speed adjustment in ppm.
    pub(super) rate_ppm: f64,
    /// Bus time of the previous compare.
    pub(super) last_compare_ns: Option<u64>,
}

impl Esc {
    // ----- distributed clocks --------------------------------------------------------

    /// The terminal's local clock at bus time `now_ns`: its power-on offset, its
    /// oscillator's drift, and the time control loop's phase and rate corrections.
    pub fn local_time(&self, now_ns: u64) -> u64 {
        let drift = (now_ns as f64 * self.config.drift_ppm * 1e-6) as i64;
        (self.config.clock_start_ns.unwrap_or(0) as i64)
            .wrapping_add(now_ns as i64)
            .wrapping_add(drift)
            .wrapping_add(self.dc_correction_at(now_ns)) as u64
    }

    /// The control loop's correction at the current frame's time.
    pub(super) fn dc_correction_now(&self) -> i64 {
        self.dc_correction_at(self.now_ns)
    }

    /// The control loop's correction at `now_ns`: the phase at the last compare plus the
    /// rate adjustment since.
    fn dc_correction_at(&self, now_ns: u64) -> i64 {
        let since = now_ns as i64 - self.dc_loop.anchor_ns as i64;
        self.dc_loop.anchor_correction_ns + (since as f64 * self.dc_loop.rate_ppm * 1e-6) as i64
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
        // The ESC's loop (ETG.1000.4 9.1.4) slews the phase by a fraction of the
        // difference and adjusts the clock's speed from the difference accumulated since
        // the previous compare, so a drifting oscillator ends up in step (a PI loop).
        let now = self.now_ns;
        let correction = self.dc_correction_at(now) + diff / 4;
        if let Some(last) = self.dc_loop.last_compare_ns {
            let dt = now.saturating_sub(last);
            if dt > 0 && diff.unsigned_abs() < DC_RATE_CAPTURE_NS {
                let rate_error_ppm = diff as f64 / dt as f64 * 1e6;
                self.dc_loop.rate_ppm = (self.dc_loop.rate_ppm + rate_error_ppm / 2.0)
                    .clamp(-DC_MAX_RATE_PPM, DC_MAX_RATE_PPM);
            }
        }
        self.dc_loop.anchor_ns = now;
        self.dc_loop.anchor_correction_ns = correction;
        self.dc_loop.last_compare_ns = Some(now);
        let now = self.system_time(self.now_ns);
        self.put64(regs::DC_SYSTEM_TIME, now);
    }
}
