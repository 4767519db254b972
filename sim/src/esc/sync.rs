//! The SYNC signal unit of a simulated ESC ("SYNC out unit"): SYNC0 and SYNC1 pulses at
//! system times given by a start time and cycle times, their status and next-pulse
//! registers (ESC datasheet section I 9.2.3, section II tables 110..118; ETG.1000.4
//! tables 70..77). `sim/NOTES-core.md` lists the rules and where they come from.

use super::*;

/// Activation 0x0981 bit 0: cyclic operation (the SYNC unit runs), section II table 110.
const ACTIVATION_CYCLIC: u8 = 0x01;
/// Activation bit 1: SYNC0 pulses are generated.
const ACTIVATION_SYNC0: u8 = 0x02;
/// Activation bit 2: SYNC1 pulses are generated.
const ACTIVATION_SYNC1: u8 = 0x04;
/// The pulse length register counts in 10 ns (section II table 111).
const PULSE_LENGTH_UNIT_NS: u64 = 10;
/// A step of the 64-bit system time by half its range or more is a step backwards.
const BACKWARDS: u64 = 1 << 63;
/// SYNC0 cycle time: "Minimum value for cyclic operation: 60 [ns]" (ESC datasheet section
/// II v3.3 2.15.4.11). The datasheet does not say what a smaller value does; the
/// simulator runs such a cycle at the minimum.
const SYNC0_CYCLE_MIN_NS: u64 = 60;

/// The pulses of one SYNC signal, at system times.
#[derive(Clone, Copy, Debug, Default)]
struct PulseTrain {
    /// System time of the next pulse.
    next: u64,
    /// Time between pulses; 0: a single pulse.
    period: u64,
    /// The single pulse has been given.
    spent: bool,
    /// System time of the last pulse given.
    last: Option<u64>,
}

impl PulseTrain {
    /// Gives the pulses whose time the system time passed on its way from `from` forward
    /// by `elapsed` ns (a pulse at `from` itself included) and returns how many. A pulse
    /// time is only ever reached going forward: one the system time already passed
    /// comes round again after the 64-bit time wraps.
    fn pass(&mut self, from: u64, elapsed: u64) -> u64 {
        let ahead = self.next.wrapping_sub(from);
        if self.spent || ahead > elapsed {
            return 0;
        }
        if self.period == 0 {
            self.last = Some(self.next);
            self.spent = true;
            return 1;
        }
        let pulses = (elapsed - ahead) / self.period + 1;
        self.last = Some(
            self.next
                .wrapping_add((pulses - 1).wrapping_mul(self.period)),
        );
        self.next = self.next.wrapping_add(pulses.wrapping_mul(self.period));
        pulses
    }
}

/// How many SYNC pulses a terminal has given since power-on (on the signals its
/// activation register switched on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncPulses {
    /// Pulses on SYNC0.
    pub sync0: u64,
    /// Pulses on SYNC1.
    pub sync1: u64,
}

/// The state of the SYNC unit.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SyncUnit {
    /// Cyclic operation runs (activation bit 0 was set).
    active: bool,
    /// The system time the unit last looked at.
    seen: u64,
    sync0: PulseTrain,
    sync1: PulseTrain,
    pulses: SyncPulses,
    /// A pulse waits for its acknowledge (pulse length 0): SYNC0, SYNC1.
    unacknowledged: [bool; 2],
    /// The start time last written to 0x0990 (while the unit runs the register shows the
    /// next SYNC0 pulse instead); used at the next activation.
    written_start: u64,
}

impl SyncUnit {
    /// The pulses given so far.
    pub(super) fn pulses(&self) -> SyncPulses {
        self.pulses
    }
}

/// The SYNC1 period for SYNC0 cycle `sync0` and SYNC1 cycle time register `sync1`:
/// a SYNC0 pulse starts the SYNC1 delay unless one is running, and SYNC1 comes `sync1`
/// after it (section I 9.2.3.5 and figure 31), so SYNC1 repeats every
/// (⌊sync1 / sync0⌋ + 1) SYNC0 cycles — with each SYNC0 pulse when `sync1` is shorter than
/// the cycle, with every second one when it equals it.
fn sync1_period(sync0: u64, sync1: u64) -> u64 {
    if sync0 == 0 {
        return 0;
    }
    (sync1 / sync0 + 1) * sync0
}

impl Esc {
    /// The SYNC0 and SYNC1 cycle times in use: 0x09A0 (0 = single shot, below the
    /// minimum taken as [`SYNC0_CYCLE_MIN_NS`]) and 0x09A4.
    fn sync_cycles(&self) -> (u64, u64) {
        let sync0 = match u64::from(self.get32(regs::DC_SYNC0_CYCLE)) {
            0 => 0,
            c => c.max(SYNC0_CYCLE_MIN_NS),
        };
        (sync0, u64::from(self.get32(regs::DC_SYNC1_CYCLE)))
    }

    /// A write of the activation register 0x0981: setting bit 0 starts cyclic operation
    /// at the start time last written to 0x0990 ("register value is used when 0x0981[0]
    /// has a transition to 1", ESC datasheet section II v3.3 2.15.4.9; the first SYNC0
    /// pulse there, the first SYNC1 the SYNC1 cycle time later); clearing it stops the
    /// unit and its signals.
    pub(super) fn sync_activation_written(&mut self) {
        let activation = self.mem[usize::from(regs::DC_SYNC_ACTIVATION)];
        let cyclic = activation & ACTIVATION_CYCLIC != 0;
        if cyclic && !self.sync.active {
            let start = self.sync.written_start;
            let (sync0, sync1) = self.sync_cycles();
            self.sync = SyncUnit {
                active: true,
                seen: self.system_time(self.now_ns),
                sync0: PulseTrain {
                    next: start,
                    period: sync0,
                    ..PulseTrain::default()
                },
                sync1: PulseTrain {
                    next: start.wrapping_add(sync1),
                    period: sync1_period(sync0, sync1),
                    ..PulseTrain::default()
                },
                pulses: self.sync.pulses,
                unacknowledged: [false; 2],
                written_start: start,
            };
        } else if !cyclic {
            self.sync.active = false;
            self.sync.unacknowledged = [false; 2];
        }
        if activation & ACTIVATION_SYNC0 == 0 {
            self.sync.unacknowledged[0] = false;
        }
        if activation & ACTIVATION_SYNC1 == 0 {
            self.sync.unacknowledged[1] = false;
        }
        self.update_sync();
    }

    /// A write of (part of) the start time 0x0990..0x0997, bytes `from..to`: the
    /// written bytes become the start time of the next activation (section II v3.3
    /// 2.15.4.9: written, the start time; read, the next SYNC0 pulse; older issues'
    /// table 115 said "only writable if 0x0981.0 = 0", the current one lets the write
    /// take and uses it "when 0x0981[0] has a transition to 1"). While the unit runs the
    /// register goes on showing the next SYNC0 pulse.
    pub(super) fn start_time_written(&mut self, from: u32, to: u32) {
        let mut start = self.sync.written_start.to_le_bytes();
        for (k, byte) in start.iter_mut().enumerate() {
            let a = u32::from(regs::DC_START_TIME) + k as u32;
            if (from..to).contains(&a) {
                *byte = self.mem[a as usize];
            }
        }
        self.sync.written_start = u64::from_le_bytes(start);
        let shown = if self.sync.active {
            self.sync.sync0.next
        } else {
            self.sync.written_start
        };
        self.put64(regs::DC_START_TIME, shown);
    }

    /// Brings the SYNC unit to the current system time: gives the pulses it passed and
    /// shows the next pulses (0x0990 SYNC0, 0x0998 SYNC1) and the signals' status
    /// (0x098E, 0x098F). Cycle times changed while the unit runs apply from the next
    /// pulse on.
    pub(super) fn update_sync(&mut self) {
        let activation = self.mem[usize::from(regs::DC_SYNC_ACTIVATION)];
        if !self.sync.active {
            self.mem[usize::from(regs::DC_SYNC0_STATUS)] = 0;
            self.mem[usize::from(regs::DC_SYNC1_STATUS)] = 0;
            return;
        }
        let now = self.system_time(self.now_ns);
        let elapsed = now.wrapping_sub(self.sync.seen);
        if elapsed < BACKWARDS {
            let (sync0, sync1) = self.sync_cycles();
            let unit = &mut self.sync;
            unit.sync0.period = sync0;
            unit.sync1.period = sync1_period(sync0, sync1);
            let given = [
                unit.sync0.pass(unit.seen, elapsed),
                unit.sync1.pass(unit.seen, elapsed),
            ];
            for (k, (bit, count)) in [
                (ACTIVATION_SYNC0, &mut unit.pulses.sync0),
                (ACTIVATION_SYNC1, &mut unit.pulses.sync1),
            ]
            .into_iter()
            .enumerate()
            {
                if activation & bit != 0 && given[k] > 0 {
                    // Saturating: a cycle of 60 ns and a forward step of the offset by
                    // 2^62 ns give ~10^17 pulses at once.
                    *count = count.saturating_add(given[k]);
                    unit.unacknowledged[k] = true;
                }
            }
        }
        // Backwards (a new offset): no pulse time is passed; the unit waits for the time
        // to come round to its next pulse.
        self.sync.seen = now;
        self.put64(regs::DC_START_TIME, self.sync.sync0.next);
        if activation & ACTIVATION_SYNC1 != 0 {
            self.put64(regs::DC_NEXT_SYNC1, self.sync.sync1.next);
        }
        // Status bit 0: the signal is active — for the pulse length after a pulse, or in
        // acknowledge mode (pulse length 0) from a pulse until the PDI acknowledges it,
        // which no simulated firmware does (section I 9.2.3, section II tables 113/114).
        let length = u64::from(self.get16(regs::DC_SYNC_PULSE_LENGTH)) * PULSE_LENGTH_UNIT_NS;
        let unit = self.sync;
        let status = |k: usize, bit: u8, train: &PulseTrain| -> u8 {
            let on = activation & bit != 0
                && if length == 0 {
                    unit.unacknowledged[k]
                } else {
                    train
                        .last
                        .is_some_and(|p| unit.unacknowledged[k] && now.wrapping_sub(p) < length)
                };
            u8::from(on)
        };
        self.mem[usize::from(regs::DC_SYNC0_STATUS)] = status(0, ACTIVATION_SYNC0, &unit.sync0);
        self.mem[usize::from(regs::DC_SYNC1_STATUS)] = status(1, ACTIVATION_SYNC1, &unit.sync1);
    }

    /// The SYNC pulses this terminal has given since power-on.
    pub fn sync_pulses(&self) -> SyncPulses {
        self.sync.pulses()
    }
}
