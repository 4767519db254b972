//! Fault injection, switchable at run time: lost, corrupt and delayed frames, silent or
//! failing terminals, link down.
//!
//! A [`Faults`] handle is cheap to clone and shared across threads: a test or the CLI
//! changes it while a bus is being served, the segment consults it for every frame.
//! Random choices come from a seeded generator, so a test run is reproducible.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::app::{AlState, AlStatusCode};

/// A one-shot action on a terminal, applied before the next frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminalFault {
    /// Power-cycle: back to INIT with registers at their reset values.
    PowerCycle,
    /// Fall back to `state` with the error flag and `code` (e.g. SAFE-OP, 0x001A).
    FallBack {
        /// State to fall back to.
        state: AlState,
        /// AL status code to report.
        code: AlStatusCode,
    },
}

/// The fault settings in force.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultSettings {
    /// Fraction (0..1) of frames lost.
    pub drop_ratio: f64,
    /// Fraction of replies in which one random bit of the EtherCAT payload is flipped.
    pub corrupt_ratio: f64,
    /// The cable those bit errors happen on, on the frame's way back: the one into port 0
    /// of the terminal at this position (0 = the master's cable); `None`: any cable the
    /// frame crosses, chosen at random per frame.
    pub corrupt_at: Option<usize>,
    /// Fraction of replies held back by `delay_ns`.
    pub delay_ratio: f64,
    /// The extra delay of a delayed reply.
    pub delay_ns: u64,
    /// No frame passes at all (cable pulled at the master).
    pub link_down: bool,
    /// The terminal at this position and all after it stop answering: the cable into its
    /// port 0 is cut. The terminal before it loses the link on port 1 and closes the
    /// loop there; this one loses the link on port 0. They stay powered: they keep their
    /// state and registers, their time and watchdogs run on, and they answer as they
    /// are now when the cable is back. (A terminal that loses power is
    /// [`TerminalFault::PowerCycle`].)
    pub silent_from: Option<usize>,
}

/// Which cables are in: the part of [`FaultSettings`] that changes the segment's links.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cables {
    /// The master's cable is pulled ([`FaultSettings::link_down`]).
    pub link_down: bool,
    /// The cable into this terminal is cut ([`FaultSettings::silent_from`]).
    pub silent_from: Option<usize>,
}

impl FaultSettings {
    /// The cables these settings leave in.
    pub fn cables(&self) -> Cables {
        Cables {
            link_down: self.link_down,
            silent_from: self.silent_from,
        }
    }
}

/// How many cable changes are kept until the segment takes them; beyond, the latest
/// replaces the last one kept (a port's lost-link counter saturates at 255 anyway).
const MAX_CABLE_CHANGES: usize = 256;

#[derive(Debug)]
struct FaultState {
    settings: FaultSettings,
    pending: Vec<(usize, TerminalFault)>,
    /// Every change of the cables since the segment last looked, in order: a cable
    /// pulled and plugged back between two frames still costs the link once.
    cable_changes: Vec<Cables>,
    rng: u64,
}

impl FaultState {
    /// Changes the settings with `change` and records the cables if they changed.
    fn change(&mut self, change: impl FnOnce(&mut FaultSettings)) {
        let before = self.settings.cables();
        change(&mut self.settings);
        let after = self.settings.cables();
        if after == before {
            return;
        }
        if self.cable_changes.len() < MAX_CABLE_CHANGES {
            self.cable_changes.push(after);
        } else if let Some(last) = self.cable_changes.last_mut() {
            *last = after;
        }
    }
}

/// A shareable, run-time switchable set of faults.
#[derive(Clone, Debug)]
pub struct Faults {
    inner: Arc<Mutex<FaultState>>,
    /// Whether any fault is set or pending: read for every frame without the lock.
    armed: Arc<AtomicBool>,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults::new(0x5EED_CAFE_F00D_0001)
    }
}

/// What the fault settings decide for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FrameFate {
    /// The frame is lost.
    pub drop: bool,
    /// Flip this bit (index into the EtherCAT payload, modulo its length).
    pub corrupt_bit: Option<u64>,
    /// The cable the bit flips on (see [`FaultSettings::corrupt_at`]): the position
    /// itself when `corrupt_pinned`, else a random number to take modulo the cables
    /// the frame crosses.
    pub corrupt_cable: u64,
    /// Whether `corrupt_cable` is a pinned position.
    pub corrupt_pinned: bool,
    /// Hold the reply back this long.
    pub delay_ns: u64,
}

impl Faults {
    /// No faults; `seed` drives the random choices.
    pub fn new(seed: u64) -> Faults {
        Faults {
            inner: Arc::new(Mutex::new(FaultState {
                settings: FaultSettings::default(),
                pending: Vec::new(),
                cable_changes: Vec::new(),
                rng: seed | 1,
            })),
            armed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn lock(&self) -> FaultGuard<'_> {
        // A panic elsewhere while holding the lock leaves plain data: keep using it.
        FaultGuard {
            state: self.inner.lock().unwrap_or_else(|e| e.into_inner()),
            armed: &self.armed,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> FaultSettings {
        self.lock().settings.clone()
    }

    /// Replaces all settings.
    pub fn set(&self, settings: FaultSettings) {
        self.lock().change(|s| *s = settings);
    }

    /// Loses a fraction (0..1) of frames.
    pub fn set_drop_ratio(&self, ratio: f64) {
        self.lock().settings.drop_ratio = ratio.clamp(0.0, 1.0);
    }

    /// Corrupts one bit in a fraction of replies.
    pub fn set_corrupt_ratio(&self, ratio: f64) {
        self.lock().settings.corrupt_ratio = ratio.clamp(0.0, 1.0);
    }

    /// Puts the bit errors of [`Faults::set_corrupt_ratio`] on the cable into port 0 of
    /// the terminal at `position` (0 = the master's cable); `None`: on any cable.
    pub fn set_corrupt_at(&self, position: Option<usize>) {
        self.lock().settings.corrupt_at = position;
    }

    /// Delays a fraction of replies by `delay_ns`.
    pub fn set_delay(&self, ratio: f64, delay_ns: u64) {
        let mut s = self.lock();
        s.settings.delay_ratio = ratio.clamp(0.0, 1.0);
        s.settings.delay_ns = delay_ns;
    }

    /// Pulls or plugs the cable at the master.
    pub fn set_link_down(&self, down: bool) {
        self.lock().change(|s| s.link_down = down);
    }

    /// Makes the terminal at `position` (and every one after it) stop answering, as if the
    /// cable into its port 0 were cut (see [`FaultSettings::silent_from`]); `None`
    /// restores them.
    pub fn set_silent_from(&self, position: Option<usize>) {
        self.lock().change(|s| s.silent_from = position);
    }

    /// Queues a one-shot action on the terminal at `position`.
    pub fn inject(&self, position: usize, fault: TerminalFault) {
        self.lock().pending.push((position, fault));
    }

    /// Removes and returns the queued one-shot actions.
    pub fn take_pending(&self) -> Vec<(usize, TerminalFault)> {
        std::mem::take(&mut self.lock().pending)
    }

    /// Removes and returns the cable changes since the last call, oldest first: the
    /// segment goes through each, so a link lost and back before it looked is counted.
    pub fn take_cable_changes(&self) -> Vec<Cables> {
        std::mem::take(&mut self.lock().cable_changes)
    }

    /// Decides the fate of one frame (link state and silent terminals are read separately
    /// through [`Faults::settings`]).
    pub fn roll(&self) -> FrameFate {
        let mut s = self.lock();
        let settings = s.settings.clone();
        let mut fate = FrameFate::default();
        if settings.drop_ratio > 0.0 && s.next_unit() < settings.drop_ratio {
            fate.drop = true;
        }
        if settings.corrupt_ratio > 0.0 && s.next_unit() < settings.corrupt_ratio {
            fate.corrupt_bit = Some(s.next_u64());
            match settings.corrupt_at {
                Some(p) => {
                    fate.corrupt_cable = p as u64;
                    fate.corrupt_pinned = true;
                }
                None => fate.corrupt_cable = s.next_u64(),
            }
        }
        if settings.delay_ratio > 0.0 && s.next_unit() < settings.delay_ratio {
            fate.delay_ns = settings.delay_ns;
        }
        fate
    }

    /// Whether any fault is configured or pending (lets the segment skip the work): one
    /// atomic load, kept up to date by every change.
    pub fn any(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }
}

/// The locked state; on release it records whether any fault is armed.
struct FaultGuard<'a> {
    state: MutexGuard<'a, FaultState>,
    armed: &'a AtomicBool,
}

impl std::ops::Deref for FaultGuard<'_> {
    type Target = FaultState;
    fn deref(&self) -> &FaultState {
        &self.state
    }
}

impl std::ops::DerefMut for FaultGuard<'_> {
    fn deref_mut(&mut self) -> &mut FaultState {
        &mut self.state
    }
}

impl Drop for FaultGuard<'_> {
    fn drop(&mut self) {
        let armed = self.state.settings != FaultSettings::default()
            || !self.state.pending.is_empty()
            || !self.state.cable_changes.is_empty();
        self.armed.store(armed, Ordering::Release);
    }
}

impl FaultState {
    fn next_u64(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_respected_and_reproducible() {
        let f = Faults::new(42);
        f.set_drop_ratio(0.25);
        let drops = (0..10_000).filter(|_| f.roll().drop).count();
        assert!((2_000..3_000).contains(&drops), "{drops}");
        let g = Faults::new(42);
        g.set_drop_ratio(0.25);
        let drops2 = (0..10_000).filter(|_| g.roll().drop).count();
        assert_eq!(drops, drops2);
        f.set_drop_ratio(0.0);
        assert!(!(0..1000).any(|_| f.roll().drop));
    }

    #[test]
    fn armed_flag_follows_settings_and_pending_actions() {
        let f = Faults::default();
        assert!(!f.any());
        f.set_drop_ratio(0.5);
        assert!(f.any());
        f.set(FaultSettings::default());
        assert!(!f.any());
        f.inject(0, TerminalFault::PowerCycle);
        assert!(f.any());
        assert_eq!(f.take_pending().len(), 1);
        assert!(!f.any());
    }

    #[test]
    fn cable_changes_are_kept_in_order_until_taken() {
        let f = Faults::default();
        f.set_link_down(true);
        f.set_link_down(true);
        f.set_drop_ratio(0.5);
        f.set_link_down(false);
        f.set_silent_from(Some(2));
        f.set(FaultSettings::default());
        assert!(f.any(), "changes wait for the segment");
        let down = Cables {
            link_down: true,
            silent_from: None,
        };
        let silent = Cables {
            link_down: false,
            silent_from: Some(2),
        };
        assert_eq!(
            f.take_cable_changes(),
            vec![down, Cables::default(), silent, Cables::default()]
        );
        assert!(f.take_cable_changes().is_empty());
        assert!(!f.any());
        // Bounded: beyond the limit the latest replaces the last one kept.
        for _ in 0..1000 {
            f.set_link_down(true);
            f.set_link_down(false);
        }
        f.set_link_down(true);
        let changes = f.take_cable_changes();
        assert_eq!(changes.len(), MAX_CABLE_CHANGES);
        assert_eq!(changes.last(), Some(&down));
    }

    #[test]
    fn handle_is_shared_across_threads() {
        let f = Faults::default();
        let g = f.clone();
        std::thread::spawn(move || {
            g.set_link_down(true);
            g.inject(2, TerminalFault::PowerCycle);
        })
        .join()
        .expect("thread");
        assert!(f.settings().link_down);
        assert_eq!(f.take_pending(), vec![(2, TerminalFault::PowerCycle)]);
        assert!(f.take_pending().is_empty());
    }
}
