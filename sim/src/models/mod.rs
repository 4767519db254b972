//! Physical behaviour models behind terminals: loop-backs, analog wiring, stepper motors, counters.
//!
//! The [`Plant`] is the simulated machine: it receives every output value a terminal
//! applies (logging it with its time), and produces the input values terminals report.
//! Terminals reach it through a shared [`PlantHandle`]; signals are named by terminal
//! position and object entry (`index:sub`), the entries the terminal's PDO mapping places
//! in the process data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A process-data signal: one entry of one terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal {
    /// The terminal's position on the bus (0 = first).
    pub terminal: usize,
    /// Object index (0x6000.. inputs, 0x7000.. outputs).
    pub index: u16,
    /// Subindex.
    pub sub: u8,
}

impl Signal {
    /// A signal of terminal `terminal` at `index:sub`.
    pub fn new(terminal: usize, index: u16, sub: u8) -> Self {
        Self {
            terminal,
            index,
            sub,
        }
    }
}

/// One output value a terminal applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputEvent {
    /// Bus time in nanoseconds.
    pub time_ns: u64,
    /// The output.
    pub signal: Signal,
    /// The value applied (raw, zero-extended).
    pub value: u64,
    /// Whether it is the safe state (watchdog or leaving OP) rather than a master's value.
    pub safe_state: bool,
}

/// A stepper motor behind a stepper terminal (EL7041): the position integrates the
/// commanded velocity while enabled, the encoder reports it, limit switches close at
/// configured positions.
#[derive(Debug, Clone, PartialEq)]
pub struct Stepper {
    /// Commanded velocity (signed 16-bit; ±32767 = full scale), EL7041 0x7010:21.
    pub velocity: Signal,
    /// Enable output (EL7041 0x7010:01); `None`: always enabled.
    pub enable: Option<Signal>,
    /// Encoder input (EL7041 0x6000:11), wraps at its mapped width.
    pub encoder: Signal,
    /// Counts per second at full-scale velocity.
    pub counts_per_second: f64,
    /// Position in counts.
    pub position: f64,
    /// Input that closes at or below `low_limit`.
    pub low_limit_input: Option<Signal>,
    /// Lower limit position in counts.
    pub low_limit: f64,
    /// Input that closes at or above `high_limit`.
    pub high_limit_input: Option<Signal>,
    /// Upper limit position in counts.
    pub high_limit: f64,
    /// Inputs reporting "ready" (EL7041 0x6010:01/02) while enabled.
    pub ready_inputs: Vec<Signal>,
}

/// One physical model.
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// An output wired to an input: the input reads `output * scale + offset`
    /// (a digital loop-back with the defaults, analog wiring with a scale).
    Wire {
        /// The output driving the wire.
        from: Signal,
        /// The input reading it.
        to: Signal,
        /// Gain.
        scale: f64,
        /// Offset added after the gain.
        offset: f64,
        /// Whether the output is a signed 16-bit value (analog outputs).
        signed: bool,
    },
    /// A stepper motor.
    Stepper(Stepper),
    /// A free-running counter: `rate_hz` counts per second since the plant's first
    /// advance (the bus starting), so a 16-bit input wraps only after 65 536 counts.
    Counter {
        /// The input showing the count.
        signal: Signal,
        /// Counts per second.
        rate_hz: f64,
    },
}

/// The simulated machine behind the bus.
#[derive(Debug)]
pub struct Plant {
    outputs: HashMap<Signal, u64>,
    inputs: HashMap<Signal, u64>,
    models: Vec<Model>,
    log: Vec<OutputEvent>,
    log_limit: usize,
    last_ns: Option<u64>,
    /// Bus time of the first advance: counters count from here.
    start_ns: Option<u64>,
}

/// Default number of output events kept (oldest dropped first).
const DEFAULT_LOG_LIMIT: usize = 1_000_000;

impl Default for Plant {
    /// A plant without models, keeping the default number of output events.
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Plant {
    /// A plant with `models`.
    pub fn new(models: Vec<Model>) -> Self {
        Self {
            outputs: HashMap::new(),
            inputs: HashMap::new(),
            models,
            log: Vec::new(),
            log_limit: DEFAULT_LOG_LIMIT,
            last_ns: None,
            start_ns: None,
        }
    }

    /// An output was applied by terminal firmware at `time_ns`.
    pub fn apply_output(&mut self, time_ns: u64, signal: Signal, value: u64, safe_state: bool) {
        self.outputs.insert(signal, value);
        if self.log.len() >= self.log_limit {
            let drop = self.log_limit / 2;
            self.log.drain(..drop.max(1));
        }
        self.log.push(OutputEvent {
            time_ns,
            signal,
            value,
            safe_state,
        });
    }

    /// The last value applied to `signal` (0 if none yet).
    pub fn output(&self, signal: Signal) -> u64 {
        self.outputs.get(&signal).copied().unwrap_or(0)
    }

    /// The input value models produce for `signal`, if a model drives it.
    pub fn input(&self, signal: Signal) -> Option<u64> {
        self.inputs.get(&signal).copied()
    }

    /// Sets an input directly (a test playing the machine).
    pub fn set_input(&mut self, signal: Signal, value: u64) {
        self.inputs.insert(signal, value);
    }

    /// Every output value applied so far, oldest first.
    pub fn output_log(&self) -> &[OutputEvent] {
        &self.log
    }

    /// The models.
    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// The stepper models' positions in counts, in model order.
    pub fn stepper_positions(&self) -> Vec<f64> {
        self.models
            .iter()
            .filter_map(|m| match m {
                Model::Stepper(s) => Some(s.position),
                _ => None,
            })
            .collect()
    }

    /// Advances every model to bus time `now_ns` and recomputes the inputs they drive.
    pub fn advance(&mut self, now_ns: u64) {
        let dt = match self.last_ns {
            Some(last) if now_ns > last => (now_ns - last) as f64 * 1e-9,
            _ => 0.0,
        };
        if self.last_ns.is_none_or(|l| now_ns > l) {
            self.last_ns = Some(now_ns);
        }
        let since_start = now_ns.saturating_sub(*self.start_ns.get_or_insert(now_ns));
        let mut inputs = std::mem::take(&mut self.inputs);
        let outputs = &self.outputs;
        let out = |s: Signal| outputs.get(&s).copied().unwrap_or(0);
        for model in &mut self.models {
            match model {
                Model::Wire {
                    from,
                    to,
                    scale,
                    offset,
                    signed,
                } => {
                    let raw = out(*from);
                    let x = if *signed {
                        f64::from(raw as u16 as i16)
                    } else {
                        raw as f64
                    };
                    let y = x * *scale + *offset;
                    let v = if *signed {
                        y.round().clamp(-32768.0, 32767.0) as i64 as u64
                    } else {
                        y.round().max(0.0) as u64
                    };
                    inputs.insert(*to, v);
                }
                Model::Counter { signal, rate_hz } => {
                    let v = (since_start as f64 * 1e-9 * *rate_hz) as u64;
                    inputs.insert(*signal, v);
                }
                Model::Stepper(s) => {
                    let enabled = s.enable.is_none_or(|e| out(e) & 1 != 0);
                    if enabled {
                        let v = f64::from(out(s.velocity) as u16 as i16) / 32767.0;
                        s.position += v * s.counts_per_second * dt;
                    }
                    inputs.insert(s.encoder, s.position.round() as i64 as u64);
                    if let Some(sig) = s.low_limit_input {
                        inputs.insert(sig, u64::from(s.position <= s.low_limit));
                    }
                    if let Some(sig) = s.high_limit_input {
                        inputs.insert(sig, u64::from(s.position >= s.high_limit));
                    }
                    for sig in &s.ready_inputs {
                        inputs.insert(*sig, u64::from(enabled));
                    }
                }
            }
        }
        self.inputs = inputs;
    }
}

/// The plant shared by every terminal of a bus and the tests that watch it.
#[derive(Debug, Clone, Default)]
pub struct PlantHandle(Arc<Mutex<Plant>>);

impl PlantHandle {
    /// A handle to a new plant with `models`.
    pub fn new(models: Vec<Model>) -> Self {
        Self(Arc::new(Mutex::new(Plant::new(models))))
    }

    /// Locks the plant (a poisoned lock is taken over: the plant holds plain values).
    pub fn lock(&self) -> MutexGuard<'_, Plant> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the output log.
    pub fn output_log(&self) -> Vec<OutputEvent> {
        self.lock().output_log().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stepper_integrates_velocity_and_closes_limits() {
        let vel = Signal::new(6, 0x7010, 0x21);
        let en = Signal::new(6, 0x7010, 0x01);
        let enc = Signal::new(6, 0x6000, 0x11);
        let hi = Signal::new(6, 0x6010, 0x0D);
        let mut p = Plant::new(vec![Model::Stepper(Stepper {
            velocity: vel,
            enable: Some(en),
            encoder: enc,
            counts_per_second: 1000.0,
            position: 0.0,
            low_limit_input: None,
            low_limit: f64::NEG_INFINITY,
            high_limit_input: Some(hi),
            high_limit: 500.0,
            ready_inputs: vec![],
        })]);
        p.advance(0);
        p.apply_output(0, vel, 32767, false);
        p.advance(100_000_000);
        assert_eq!(p.input(enc), Some(0), "not enabled: no motion");
        p.apply_output(100_000_000, en, 1, false);
        p.advance(400_000_000);
        assert_eq!(p.input(enc), Some(300));
        assert_eq!(p.input(hi), Some(0));
        p.advance(700_000_000);
        assert_eq!(p.input(hi), Some(1));
        p.apply_output(700_000_000, vel, (-32767i16) as u16 as u64, false);
        p.advance(1_700_000_000);
        assert_eq!(p.input(enc), Some((-400i64) as u64));
        assert_eq!(p.output_log().len(), 3);
    }

    #[test]
    fn a_default_plant_logs_outputs() {
        let plant = PlantHandle::default();
        let s = Signal::new(0, 0x7000, 0x01);
        plant.lock().apply_output(5, s, 1, false);
        plant.lock().apply_output(6, s, 0, true);
        let log = plant.output_log();
        assert_eq!(log.len(), 2);
        assert_eq!(
            (log[1].time_ns, log[1].value, log[1].safe_state),
            (6, 0, true)
        );
        assert_eq!(plant.lock().output(s), 0);
    }

    #[test]
    fn wire_and_counter() {
        let ao = Signal::new(5, 0x7000, 0x01);
        let ai = Signal::new(4, 0x6000, 0x11);
        let c = Signal::new(4, 0x6010, 0x11);
        let mut p = Plant::new(vec![
            Model::Wire {
                from: ao,
                to: ai,
                scale: 0.5,
                offset: 0.0,
                signed: true,
            },
            Model::Counter {
                signal: c,
                rate_hz: 10.0,
            },
        ]);
        p.apply_output(0, ao, (-1000i16) as u16 as u64, false);
        // The counter starts with the bus, whatever the clock said then.
        p.advance(1_700_000_000_000_000_000);
        assert_eq!(p.input(c), Some(0));
        p.advance(1_700_000_002_000_000_000);
        assert_eq!(p.input(ai), Some((-500i64) as u64));
        assert_eq!(p.input(c), Some(20));
    }
}
