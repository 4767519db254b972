//! Distributed clocks: local and system time with drift, receive-time latch, and the time
//! control loop that compensates the drift (ETG.1000.4 9.1; ESC datasheet section I
//! 9.1.4/9.1.5, section II 0x0910..0x0935). `sim/NOTES-core.md` says how the loop is
//! modelled.

use super::*;

/// The usable speed counter start values: "Valid values: 0x0080 to 0x3FFF" (ESC
/// datasheet section II v3.3 2.15.2.5, bits 14:0; bit 15 reserved). The datasheet does
/// not say what other values do; the simulator takes them as the nearest valid one.
const SPEED_COUNTER_START_MIN: u16 = 0x0080;
const SPEED_COUNTER_START_MAX: u16 = 0x3FFF;
/// The speed counter diff stays within ±(speed counter start − 0x7F) (section II
/// table 105).
const SPEED_COUNTER_DIFF_MARGIN: i32 = 0x7F;
/// The loop's phase time constant per unit of speed counter start ("bandwidth for
/// adjustment of local copy of System Time (larger values → smaller bandwidth)",
/// table 104): the reset value 0x1000 corrects a phase difference with a time constant
/// of ~102 ms. The datasheet gives no figure; this is the simulator's choice.
const PHASE_NS_PER_SPEED_COUNT: f64 = 25_000.0;
/// 0x092C bit 31: the local copy of the system time is greater than or equal to the
/// received system time (ESC datasheet section II v3.3 2.15.2.4).
const SYSTEM_DIFF_LOCAL_NOT_BEHIND: u32 = 0x8000_0000;
/// A change of the difference between two compares that no oscillator could cause
/// (a quartz is off by some 100 ppm; the loop adjusts by at most ~760 ppm) is a time step
/// (a new offset, another reference): it moves the phase term, not the drift estimate.
const PLAUSIBLE_DEVIATION: f64 = 2e-3;
/// Slack for the whole-ns resolution of the difference in that check.
const PLAUSIBLE_SLACK_NS: f64 = 4.0;

/// The speed counter start the loop uses for the value `start` of 0x0930: bits 14:0,
/// within [`SPEED_COUNTER_START_MIN`]..=[`SPEED_COUNTER_START_MAX`].
fn usable_start(start: u16) -> u16 {
    (start & 0x7FFF).clamp(SPEED_COUNTER_START_MIN, SPEED_COUNTER_START_MAX)
}

/// The clock speed the loop applies for speed counter diff `diff` (ns per ns, positive =
/// faster). The local copy of the system time normally advances 10 ns per 10 ns clock
/// cycle; the loop adds 1 ns every (start − diff + 2) cycles and takes 1 ns away every
/// (start + diff + 2) cycles, which gives the deviation formula of section II table 105:
/// diff / (5 · (start + diff + 2) · (start − diff + 2)).
pub fn speed_counter_speed(diff: i32, start: u16) -> f64 {
    let s = f64::from(usable_start(start));
    let d = f64::from(diff);
    d / (5.0 * (s + d + 2.0) * (s - d + 2.0))
}

/// The speed counter diff whose speed is nearest `speed` (the inverse of [`speed_counter_speed`]),
/// within the register's range.
fn diff_for(speed: f64, start: u16) -> i32 {
    let start = usable_start(start);
    let limit = i32::from(start) - SPEED_COUNTER_DIFF_MARGIN;
    // speed · 5 · (a − d²) = d with a = (start + 2)²: the root near 0, written so that it
    // stays exact for small speeds.
    let a = (f64::from(start) + 2.0).powi(2);
    let d = 10.0 * speed * a / (1.0 + (1.0 + 100.0 * speed * speed * a).sqrt());
    if !d.is_finite() {
        return 0;
    }
    (d.round() as i64).clamp(-i64::from(limit), i64::from(limit)) as i32
}

/// The loop's registers: speed counter start (0x0930) and the two filter depths (0x0934,
/// 0x0935, low nibble each).
#[derive(Clone, Copy, Debug)]
pub(super) struct LoopSettings {
    pub(super) speed_counter_start: u16,
    pub(super) difference_depth: u8,
    pub(super) speed_depth: u8,
}

/// The state of the time control loop: the correction it has applied to the local copy of
/// the system time, and its filters (reset by a write of 0x0930).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct DcLoop {
    /// Bus time of the last speed change.
    anchor_ns: u64,
    /// Correction (ns) at `anchor_ns`.
    anchor_correction_ns: f64,
    /// The speed applied since `anchor_ns` (ns per ns).
    speed: f64,
    /// The speed counter diff behind `speed` (0x0932).
    speed_counter_diff: i32,
    /// Mean of the last compares' differences (0x092C), ns; local ahead = positive.
    mean_difference_ns: f64,
    /// How many differences the mean holds (at most 2^depth).
    difference_samples: u32,
    /// The previous compare: bus time and difference.
    previous: Option<(u64, i64)>,
    /// The oscillator's deviation from the reference, as a weighted mean of the change of
    /// the difference (the loop's own correction taken out) over the time it took.
    deviation_ns: f64,
    deviation_over_ns: f64,
}

impl DcLoop {
    /// A loop with empty filters and no speed adjustment, keeping the correction made so
    /// far (a write of 0x0930 resets the filters; the time stays as it is).
    pub(super) fn reset_at(&self, now_ns: u64) -> DcLoop {
        DcLoop {
            anchor_ns: now_ns,
            anchor_correction_ns: self.correction_at(now_ns),
            ..DcLoop::default()
        }
    }

    /// The correction (ns) at bus time `now_ns`: the one at the last speed change plus the
    /// speed since.
    pub(super) fn correction_at(&self, now_ns: u64) -> f64 {
        let since = now_ns.wrapping_sub(self.anchor_ns) as i64 as f64;
        self.anchor_correction_ns + since * self.speed
    }

    /// The mean difference (0x092C) and speed counter diff (0x0932) to show.
    pub(super) fn registers(&self) -> (f64, i32) {
        (self.mean_difference_ns, self.speed_counter_diff)
    }

    /// Whether a compare has happened since the loop was last reset.
    pub(super) fn compared(&self) -> bool {
        self.difference_samples > 0
    }

    /// One compare at bus time `now_ns`: `difference_ns` = local copy of the system time
    /// − propagation delay − received system time (ESC datasheet section I 9.1.5: "if Δt
    /// is positive, the local time is running faster than the System time, and has to be
    /// slowed down"). Updates the mean difference (over up to 2^0x0934 compares), the
    /// estimate of the oscillator's deviation (weights decaying by 2^−0x0935 per
    /// compare) and sets the speed: the deviation cancelled, and the mean difference
    /// corrected over the phase time constant.
    pub(super) fn compare(&mut self, now_ns: u64, difference_ns: i64, settings: LoopSettings) {
        let depth = u32::from(settings.difference_depth.min(15));
        self.difference_samples = (self.difference_samples + 1).min(1 << depth);
        self.mean_difference_ns +=
            (difference_ns as f64 - self.mean_difference_ns) / f64::from(self.difference_samples);
        let mut interval_ns = 0.0;
        if let Some((then, previous)) = self.previous {
            let dt = now_ns.saturating_sub(then) as f64;
            if dt > 0.0 {
                interval_ns = dt;
                let change = difference_ns.wrapping_sub(previous) as f64 - self.speed * dt;
                if change.abs() <= PLAUSIBLE_DEVIATION * dt + PLAUSIBLE_SLACK_NS {
                    let keep = 1.0 - (-f64::from(settings.speed_depth.min(15))).exp2();
                    self.deviation_ns = self.deviation_ns * keep + change;
                    self.deviation_over_ns = self.deviation_over_ns * keep + dt;
                }
            }
        }
        self.previous = Some((now_ns, difference_ns));
        let deviation = if self.deviation_over_ns > 0.0 {
            self.deviation_ns / self.deviation_over_ns
        } else {
            0.0
        };
        let start = usable_start(settings.speed_counter_start);
        // Never more phase correction in one compare interval than the difference itself.
        let phase_ns = (f64::from(start) * PHASE_NS_PER_SPEED_COUNT).max(interval_ns);
        let wanted = -deviation - self.mean_difference_ns / phase_ns;
        let diff = diff_for(wanted, start);
        self.anchor_correction_ns = self.correction_at(now_ns);
        self.anchor_ns = now_ns;
        self.speed_counter_diff = diff;
        self.speed = speed_counter_speed(diff, start);
    }
}

impl Esc {
    // ----- distributed clocks --------------------------------------------------------

    /// The terminal's local clock at bus time `now_ns`: its power-on offset, its
    /// oscillator's drift, and the time control loop's correction. A power cycle
    /// restarts it from 0, as an ESC's local time counter starts at reset.
    pub fn local_time(&self, now_ns: u64) -> u64 {
        let (origin_bus, origin_local) = match self.clock_restarted_at {
            Some(at) => (at, 0),
            None => (0, self.config.clock_start_ns.unwrap_or(0)),
        };
        let since = now_ns.wrapping_sub(origin_bus) as i64;
        let drift = (since as f64 * self.config.drift_ppm * 1e-6) as i64;
        let correction = self.dc_loop.correction_at(now_ns).round() as i64;
        (origin_local as i64)
            .wrapping_add(since)
            .wrapping_add(drift)
            .wrapping_add(correction) as u64
    }

    /// The terminal's DC system time (local time + offset 0x0920) at bus time `now_ns`.
    pub fn system_time(&self, now_ns: u64) -> u64 {
        self.local_time(now_ns)
            .wrapping_add(self.get64(regs::DC_SYSTEM_OFFSET))
    }

    /// The local copy of the system time when the frame being processed passed the
    /// reference clock: the system time at the frame's start here less the propagation
    /// delay 0x0928 (ESC datasheet section II v3.3 2.15.2.1, "ECAT read access ...
    /// including system time delay"; section I table 30). An EtherCAT read of 0x0910
    /// gives it, and a write of 0x0910 is compared with it.
    pub(super) fn time_at_reference(&self) -> u64 {
        let delay = u64::from(self.get32(regs::DC_SYSTEM_DELAY));
        self.system_time(self.now_ns).wrapping_sub(delay)
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

    fn dc_loop_settings(&self) -> LoopSettings {
        LoopSettings {
            speed_counter_start: self.get16(regs::DC_SPEED_COUNTER_START),
            difference_depth: self.mem[usize::from(regs::DC_DIFFERENCE_FILTER_DEPTH)] & 0x0F,
            speed_depth: self.mem[usize::from(regs::DC_SPEED_FILTER_DEPTH)] & 0x0F,
        }
    }

    /// Shows the loop's state: the mean difference in 0x092C and the speed counter diff in
    /// 0x0932 (two's complement, section II 2.15.2.6 / table 105). 0x092C holds
    /// "Difference = received system time − local copy of system time" as bits 30:0 the
    /// magnitude and bit 31 "1: local copy of system time greater than or equal to
    /// received system time" (ESC datasheet section II v3.3 2.15.2.4; v2.8 corrected
    /// the bit's description, older issues' table 103 have it the other way round).
    /// Reset value 0: after a reset of the loop, before any compare, it reads 0.
    fn show_dc_loop(&mut self) {
        let (mean, diff) = self.dc_loop.registers();
        let magnitude = mean.abs().round().min(f64::from(0x7FFF_FFFFu32)) as u32;
        let local_not_behind = self.dc_loop.compared() && mean >= 0.0;
        let sign = if local_not_behind {
            SYSTEM_DIFF_LOCAL_NOT_BEHIND
        } else {
            0
        };
        self.put32(regs::DC_SYSTEM_DIFF, magnitude | sign);
        self.put16(regs::DC_SPEED_COUNTER_DIFF, diff as i16 as u16);
    }

    /// A write of the speed counter start (0x0930) resets the loop's filters, the system
    /// time difference and the speed counter diff (section I 9.1.4, section II table 104);
    /// the local time keeps the correction made so far.
    pub(super) fn speed_counter_start_written(&mut self) {
        self.dc_loop = self.dc_loop.reset_at(self.now_ns);
        self.show_dc_loop();
    }

    /// A write of 0x0910: the received system time of the reference clock goes to the time
    /// control loop (section I 9.1.5): its lower 32 bits are compared with
    /// [`Esc::time_at_reference`]. The register then reads that time again.
    pub(super) fn system_time_written(&mut self) {
        let received = self.get32(regs::DC_SYSTEM_TIME);
        let local = self.time_at_reference() as u32;
        let difference = i64::from(local.wrapping_sub(received) as i32);
        let settings = self.dc_loop_settings();
        self.dc_loop.compare(self.now_ns, difference, settings);
        self.show_dc_loop();
        let shown = self.time_at_reference();
        self.put64(regs::DC_SYSTEM_TIME, shown);
    }
}
