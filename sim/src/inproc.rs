//! The in-process mode: a simulated bus behind a pair of channels, for unit tests.
//!
//! Two ways to use a [`Bus`]:
//!
//! * synchronous and sans-IO: [`Bus::process`] turns a request frame into the reply in
//!   place, at the time the bus's [`SimClock`] says (a manual clock the test sets, or the
//!   monotonic clock);
//! * asynchronous: [`Bus::spawn`] runs the bus on a tokio task behind a pair of
//!   `tokio::sync::mpsc` channels of `Vec<u8>` frames, as a network interface would be,
//!   and keeps advancing its time (watchdogs fire when the master stops sending).
//!
//! ```
//! use ferrocat_sim::inproc::{Bus, SimClock};
//! use ferrocat_sim::segment::Segment;
//!
//! let eeprom = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/eeprom/ek1100.bin");
//! let mut bus = Bus::new(Segment::from_eeprom_files(&[eeprom]).unwrap(), SimClock::manual());
//! // BRD of register 0x0000 (ESC type) from MAC 10:10:10:10:10:10.
//! let mut frame = vec![0xFF; 6];
//! frame.extend_from_slice(&[0x10; 6]);
//! frame.extend_from_slice(&[0x88, 0xA4, 0x0D, 0x10]);
//! frame.extend_from_slice(&[7, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
//! let reply = bus.exchange(frame).expect("the bus answers");
//! assert_eq!(reply[26], 0x11); // ET1100
//! assert_eq!(reply[27], 1); // working counter
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::segment::{FrameOutcome, Segment};

/// Where a bus gets its time from.
#[derive(Clone, Debug)]
pub enum SimClock {
    /// Time set by the test (nanoseconds), shared by clones.
    Manual(Arc<AtomicU64>),
    /// Nanoseconds since the clock was created, from the monotonic clock.
    Monotonic(Instant),
}

impl SimClock {
    /// A manual clock at 0.
    pub fn manual() -> SimClock {
        SimClock::Manual(Arc::new(AtomicU64::new(0)))
    }

    /// The monotonic clock, 0 now.
    pub fn monotonic() -> SimClock {
        SimClock::Monotonic(Instant::now())
    }

    /// The current time in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        match self {
            SimClock::Manual(t) => t.load(Ordering::Acquire),
            SimClock::Monotonic(start) => {
                u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
            }
        }
    }

    /// Sets a manual clock (ignored by the monotonic one).
    pub fn set_ns(&self, ns: u64) {
        if let SimClock::Manual(t) = self {
            t.store(ns, Ordering::Release);
        }
    }

    /// Advances a manual clock by `ns` (ignored by the monotonic one).
    pub fn advance_ns(&self, ns: u64) {
        if let SimClock::Manual(t) = self {
            t.fetch_add(ns, Ordering::AcqRel);
        }
    }
}

/// A simulated bus in the test's process.
#[derive(Debug)]
pub struct Bus {
    segment: Arc<Mutex<Segment>>,
    clock: SimClock,
}

/// The master's end of a spawned bus: send request frames on `tx`, receive replies on
/// `rx`. `handle` reaches the segment (inspect terminals, inject faults) while it runs.
#[derive(Debug)]
pub struct BusChannels {
    /// Request frames to the bus.
    pub tx: mpsc::Sender<Vec<u8>>,
    /// Reply frames from the bus.
    pub rx: mpsc::Receiver<Vec<u8>>,
    /// The running bus.
    pub handle: BusHandle,
}

/// Shared access to a bus's segment and clock.
#[derive(Clone, Debug)]
pub struct BusHandle {
    segment: Arc<Mutex<Segment>>,
    clock: SimClock,
}

impl BusHandle {
    /// Locks the segment (keep it short: the bus waits meanwhile).
    pub fn segment(&self) -> MutexGuard<'_, Segment> {
        lock(&self.segment)
    }

    /// The bus's clock.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }
}

fn lock(m: &Mutex<Segment>) -> MutexGuard<'_, Segment> {
    // A test that panicked while holding the lock leaves a usable segment.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How often a spawned bus advances its terminals' time without frames.
pub const IDLE_TICK: Duration = Duration::from_millis(1);

impl Bus {
    /// A bus of `segment` on `clock`.
    pub fn new(segment: Segment, clock: SimClock) -> Bus {
        Bus {
            segment: Arc::new(Mutex::new(segment)),
            clock,
        }
    }

    /// The clock.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Shared access to the segment and clock.
    pub fn handle(&self) -> BusHandle {
        BusHandle {
            segment: self.segment.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Locks the segment.
    pub fn segment(&self) -> MutexGuard<'_, Segment> {
        lock(&self.segment)
    }

    /// Processes one frame in place at the clock's time.
    pub fn process(&mut self, frame: &mut [u8]) -> FrameOutcome {
        let now = self.clock.now_ns();
        lock(&self.segment).process(frame, now)
    }

    /// Sends `frame` and returns what comes back: the reply of an EtherCAT frame, the
    /// unchanged frame for anything else (terminals forward it), `None` if it is lost.
    pub fn exchange(&mut self, mut frame: Vec<u8>) -> Option<Vec<u8>> {
        match self.process(&mut frame) {
            FrameOutcome::Reply { .. } | FrameOutcome::NotEtherCat => Some(frame),
            FrameOutcome::Lost => None,
        }
    }

    /// Advances the terminals to the clock's time without a frame (watchdogs).
    pub fn advance(&mut self) {
        let now = self.clock.now_ns();
        lock(&self.segment).advance(now);
    }

    /// Runs the bus on the current tokio runtime behind channels holding up to `depth`
    /// frames each way. Replies of frames with an injected delay are sent after it (at
    /// tokio's millisecond timer granularity); the task ends when `tx` is dropped.
    pub fn spawn(self, depth: usize) -> BusChannels {
        let (req_tx, mut req_rx) = mpsc::channel::<Vec<u8>>(depth.max(1));
        let (rep_tx, rep_rx) = mpsc::channel::<Vec<u8>>(depth.max(1));
        let handle = self.handle();
        let segment = self.segment.clone();
        let clock = self.clock.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(IDLE_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    frame = req_rx.recv() => {
                        let Some(mut frame) = frame else { break };
                        let now = clock.now_ns();
                        let outcome = lock(&segment).process(&mut frame, now);
                        let delay = match outcome {
                            FrameOutcome::Reply { delay_ns } => delay_ns,
                            FrameOutcome::NotEtherCat => 0,
                            FrameOutcome::Lost => continue,
                        };
                        if delay >= 1_000_000 {
                            let tx = rep_tx.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_nanos(delay)).await;
                                let _ = tx.send(frame).await;
                            });
                        } else if rep_tx.send(frame).await.is_err() {
                            break;
                        }
                    }
                    _ = tick.tick() => {
                        let now = clock.now_ns();
                        lock(&segment).advance(now);
                    }
                }
            }
        });
        BusChannels {
            tx: req_tx,
            rx: rep_rx,
            handle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AlState;

    fn eeprom(name: &str) -> String {
        format!(
            "{}/../../shared/testdata/eeprom/{name}.bin",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    fn datagram_frame(cmd: u8, adp: u16, ado: u16, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0xFF; 6];
        f.extend_from_slice(&[0x10; 6]);
        f.extend_from_slice(&[0x88, 0xA4]);
        let len = (10 + data.len() + 2) as u16 | 0x1000;
        f.extend_from_slice(&len.to_le_bytes());
        f.push(cmd);
        f.push(0x42);
        f.extend_from_slice(&adp.to_le_bytes());
        f.extend_from_slice(&ado.to_le_bytes());
        f.extend_from_slice(&(data.len() as u16).to_le_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(data);
        f.extend_from_slice(&[0, 0]);
        f
    }

    fn wkc(f: &[u8]) -> u16 {
        u16::from_le_bytes([f[f.len() - 2], f[f.len() - 1]])
    }

    #[test]
    fn manual_clock_drives_the_watchdog() {
        let seg = Segment::from_eeprom_files(&[eeprom("ek1100"), eeprom("el2004")]).expect("load");
        let mut bus = Bus::new(seg, SimClock::manual());
        let ex = |bus: &mut Bus, cmd, adp, ado, data: &[u8]| {
            bus.exchange(datagram_frame(cmd, adp, ado, data))
                .expect("reply")
        };
        // EL2004: SM0 at 0x0F00, 1 byte, write + watchdog; FMMU0 logical 0 -> 0x0F00.
        ex(
            &mut bus,
            2,
            0xFFFF,
            0x0800,
            &[0x00, 0x0F, 1, 0, 0x44, 0, 1, 0],
        );
        ex(
            &mut bus,
            2,
            0xFFFF,
            0x0600,
            &[0, 0, 0, 0, 1, 0, 0, 7, 0x00, 0x0F, 0, 2, 1, 0, 0, 0],
        );
        ex(&mut bus, 8, 0, 0x0120, &[0x02, 0]);
        ex(&mut bus, 8, 0, 0x0120, &[0x04, 0]);
        ex(&mut bus, 8, 0, 0x0120, &[0x08, 0]);
        let r = ex(&mut bus, 12, 0, 0, &[0x0F]);
        assert_eq!(wkc(&r), 2, "LRW write to the EL2004 counts 2");
        assert_eq!(
            bus.segment().terminal(1).expect("t").sm_buffer(0),
            Some(&[0x0F][..])
        );
        bus.clock().advance_ns(99_000_000);
        bus.advance();
        assert_eq!(bus.segment().terminal(1).expect("t").peek(0x0440) & 1, 1);
        bus.clock().advance_ns(2_000_000);
        bus.advance();
        let seg = bus.segment();
        let t = seg.terminal(1).expect("t");
        assert_eq!(
            t.peek(0x0440) & 1,
            0,
            "process data watchdog expired after 100 ms"
        );
        assert_eq!(t.peek(0x0442), 1);
        // Device emulation: the AL state stays what the master wrote.
        assert_eq!(t.al_state(), AlState::Op);
    }

    #[tokio::test]
    async fn channels_carry_frames_both_ways() {
        let seg = Segment::from_eeprom_files(&[eeprom("ek1100"), eeprom("el2889")]).expect("load");
        let mut ch = Bus::new(seg, SimClock::monotonic()).spawn(4);
        ch.tx
            .send(datagram_frame(7, 0, 0x0000, &[0]))
            .await
            .expect("send");
        let r = tokio::time::timeout(Duration::from_secs(5), ch.rx.recv())
            .await
            .expect("in time")
            .expect("reply");
        assert_eq!(wkc(&r), 2);
        assert_eq!(r[6], 0x12);
        ch.handle.segment().faults().set_link_down(true);
        ch.tx
            .send(datagram_frame(7, 0, 0x0000, &[0]))
            .await
            .expect("send");
        let lost = tokio::time::timeout(Duration::from_millis(50), ch.rx.recv()).await;
        assert!(lost.is_err(), "no reply while the link is down");
    }
}
