//! The TOML topology: terminal order, EEPROM images, models and wiring.
//!
//! The format is documented for users in `docs/sim.md`. Unknown keys are errors that name
//! the key and its line; relative paths are resolved against the TOML file's directory.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::app::TerminalApp;
use crate::coe::ObjectDictionary;
use crate::coe::from_sii::{dictionary_from_sii, name_from_sii};
use crate::coe::terminal::DictionaryTerminal;
use crate::models::{Model, PlantHandle, Signal, Stepper};
use crate::sii::{Sii, mailbox_protocol};
use crate::wiretime::{DEFAULT_FORWARD_DELAY_NS, WireTime};

/// The topology file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyFile {
    /// The terminals in bus order.
    #[serde(default, rename = "terminal")]
    pub terminals: Vec<TerminalSpec>,
    /// Outputs wired to inputs (digital loop-backs, analog wiring).
    #[serde(default, rename = "wire")]
    pub wires: Vec<WireSpec>,
    /// Stepper motors behind stepper terminals.
    #[serde(default, rename = "stepper")]
    pub steppers: Vec<StepperSpec>,
    /// Free-running counters.
    #[serde(default, rename = "counter")]
    pub counters: Vec<CounterSpec>,
    /// The wire-time model (off without this table).
    pub wire_time: Option<WireTimeSpec>,
}

/// The `[wire_time]` table: 80 ns per byte plus a forwarding delay per terminal
/// ([`WireTime`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireTimeSpec {
    /// Whether the model applies (default true: the table switches it on).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Forwarding delay of every terminal in one direction, ns (default 500); a
    /// terminal's own `forward_delay_ns` overrides it.
    pub forward_delay_ns: Option<Spanned<u64>>,
}

/// One terminal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalSpec {
    /// A name to refer to the terminal in wiring (default: its position `#N`).
    pub name: Option<Spanned<String>>,
    /// The SII EEPROM image.
    pub eeprom: Spanned<String>,
    /// A recorded CoE dictionary (`INDEX:SUB` JSON); default: derived from the SII.
    pub dictionary: Option<Spanned<String>>,
    /// The station alias the terminal reports (0x0012), as if stored in its EEPROM.
    pub alias: Option<u16>,
    /// Drift of the terminal's local clock in parts per million.
    #[serde(default)]
    pub drift_ppm: f64,
    /// This terminal's forwarding delay in one direction, ns (needs `[wire_time]`).
    pub forward_delay_ns: Option<Spanned<u64>>,
}

/// An output wired to an input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireSpec {
    /// The output, `TERMINAL/INDEX:SUB`.
    pub from: Spanned<String>,
    /// The input, `TERMINAL/INDEX:SUB`.
    pub to: Spanned<String>,
    /// Gain (default 1).
    #[serde(default = "one")]
    pub scale: f64,
    /// Offset (default 0).
    #[serde(default)]
    pub offset: f64,
    /// Whether the output is a signed 16-bit analog value (default false).
    #[serde(default)]
    pub signed: bool,
}

/// A stepper motor (defaults fit the EL7041's default PDO assignment).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepperSpec {
    /// The stepper terminal.
    pub terminal: Spanned<String>,
    /// Velocity output entry (default `7010:21`).
    #[serde(default = "default_velocity")]
    pub velocity: Spanned<String>,
    /// Enable output entry (default `7010:01`; `""` for always enabled).
    #[serde(default = "default_enable")]
    pub enable: Spanned<String>,
    /// Encoder input entry (default `6000:11`).
    #[serde(default = "default_encoder")]
    pub encoder: Spanned<String>,
    /// Counts per second at full-scale velocity (default 128000: 2000 full steps/s, 64 microsteps).
    #[serde(default = "default_counts")]
    pub counts_per_second: f64,
    /// Start position in counts.
    #[serde(default)]
    pub position: f64,
    /// Lower limit switch position in counts (none if absent).
    pub low_limit: Option<f64>,
    /// Input closed at the lower limit (default `6010:0C`, digital input 1).
    #[serde(default = "default_low_input")]
    pub low_limit_input: Spanned<String>,
    /// Upper limit switch position in counts (none if absent).
    pub high_limit: Option<f64>,
    /// Input closed at the upper limit (default `6010:0D`, digital input 2).
    #[serde(default = "default_high_input")]
    pub high_limit_input: Spanned<String>,
}

/// A free-running counter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterSpec {
    /// The input, `TERMINAL/INDEX:SUB`.
    pub signal: Spanned<String>,
    /// Counts per second.
    pub rate_hz: f64,
}

fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn spanned(s: &str) -> Spanned<String> {
    Spanned::new(0..0, s.to_string())
}
fn default_velocity() -> Spanned<String> {
    spanned("7010:21")
}
fn default_enable() -> Spanned<String> {
    spanned("7010:01")
}
fn default_encoder() -> Spanned<String> {
    spanned("6000:11")
}
fn default_low_input() -> Spanned<String> {
    spanned("6010:0C")
}
fn default_high_input() -> Spanned<String> {
    spanned("6010:0D")
}
fn default_counts() -> f64 {
    128_000.0
}

/// An error in a topology, naming the file and, where it applies, the line.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read topology {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown key (the message names key and line).
    #[error("topology {path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// toml's message, with line and column.
        message: String,
    },
    /// A value is wrong.
    #[error("topology {path}, line {line}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// A loaded topology: the parsed file and where it came from.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The parsed file.
    pub file: TopologyFile,
    /// The file's path (for messages).
    pub path: PathBuf,
    /// The directory relative paths are resolved against.
    pub base: PathBuf,
    text: String,
}

/// A terminal ready to be put on a segment.
#[derive(Debug)]
pub struct BuiltTerminal {
    /// Its name (from the topology, else `#N`).
    pub name: String,
    /// Its EEPROM.
    pub sii: Sii,
    /// Its application.
    pub app: Box<dyn TerminalApp>,
    /// The station alias it reports, if configured.
    pub alias: Option<u16>,
    /// Local clock drift in ppm.
    pub drift_ppm: f64,
}

/// A bus built from a topology: terminals in order and the plant behind them.
#[derive(Debug)]
pub struct BuiltBus {
    /// The terminals in bus order.
    pub terminals: Vec<BuiltTerminal>,
    /// The plant: models and the output log.
    pub plant: PlantHandle,
    /// The wire-time model (off unless the topology has `[wire_time]`).
    pub wire_time: WireTime,
}

/// The largest forwarding delay a topology may give a terminal: 1 ms, three orders of
/// magnitude above a real ESC's (~0.5 µs, [`crate::wiretime::DEFAULT_FORWARD_DELAY_NS`]).
pub const MAX_FORWARD_DELAY_NS: u64 = 1_000_000;

impl Topology {
    /// Reads and parses a topology file.
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, path, &base)
    }

    /// Parses topology text; `path` is used in messages, `base` resolves relative paths.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Self, TopologyError> {
        let file: TopologyFile = toml::from_str(text).map_err(|e| TopologyError::Syntax {
            path: path.display().to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let t = Self {
            file,
            path: path.to_path_buf(),
            base: base.to_path_buf(),
            text: text.to_string(),
        };
        if t.file.terminals.is_empty() {
            return Err(t.invalid(&(0..0), "no [[terminal]] is listed".to_string()));
        }
        Ok(t)
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].matches('\n').count() + 1
    }

    fn invalid(&self, span: &Range<usize>, message: String) -> TopologyError {
        TopologyError::Invalid {
            path: self.path.display().to_string(),
            line: self.line_of(span),
            message,
        }
    }

    /// Resolves a path from the file against its directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// The names terminals are referred to by, in order.
    pub fn terminal_names(&self) -> Vec<String> {
        self.file
            .terminals
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.name
                    .as_ref()
                    .map_or_else(|| format!("#{i}"), |n| n.get_ref().clone())
            })
            .collect()
    }

    fn terminal_index(&self, name: &Spanned<String>) -> Result<usize, TopologyError> {
        let n = name.get_ref();
        if let Some(pos) = n.strip_prefix('#') {
            if let Ok(i) = pos.parse::<usize>() {
                if i < self.file.terminals.len() {
                    return Ok(i);
                }
            }
        }
        self.terminal_names()
            .iter()
            .position(|t| t == n)
            .ok_or_else(|| {
                self.invalid(
                    &name.span(),
                    format!(
                        "no terminal named {n:?} (known: {})",
                        self.terminal_names().join(", ")
                    ),
                )
            })
    }

    fn entry(
        &self,
        s: &Spanned<String>,
        context: &Spanned<String>,
    ) -> Result<(u16, u8), TopologyError> {
        let span = if s.span().is_empty() {
            context.span()
        } else {
            s.span()
        };
        parse_entry(s.get_ref()).ok_or_else(|| {
            self.invalid(
                &span,
                format!(
                    "{:?} is not an object entry INDEX:SUB in hexadecimal (e.g. 7000:01)",
                    s.get_ref()
                ),
            )
        })
    }

    fn signal(&self, s: &Spanned<String>) -> Result<Signal, TopologyError> {
        let Some((term, entry)) = s.get_ref().rsplit_once('/') else {
            return Err(self.invalid(
                &s.span(),
                format!(
                    "{:?} is not TERMINAL/INDEX:SUB (e.g. EL2004/7000:01)",
                    s.get_ref()
                ),
            ));
        };
        let terminal = self.terminal_index(&Spanned::new(s.span(), term.to_string()))?;
        let (index, sub) = self.entry(&Spanned::new(s.span(), entry.to_string()), s)?;
        Ok(Signal::new(terminal, index, sub))
    }

    /// Loads every EEPROM and dictionary and builds the terminals and the plant.
    pub fn build(&self) -> Result<BuiltBus, TopologyError> {
        let names = self.terminal_names();
        for (i, t) in self.file.terminals.iter().enumerate() {
            if let Some(n) = &t.name {
                if names.iter().take(i).any(|m| m == n.get_ref()) {
                    return Err(self.invalid(
                        &n.span(),
                        format!("terminal name {:?} is used twice", n.get_ref()),
                    ));
                }
            }
        }
        let mut models = Vec::new();
        for w in &self.file.wires {
            models.push(Model::Wire {
                from: self.signal(&w.from)?,
                to: self.signal(&w.to)?,
                scale: w.scale,
                offset: w.offset,
                signed: w.signed,
            });
        }
        for c in &self.file.counters {
            models.push(Model::Counter {
                signal: self.signal(&c.signal)?,
                rate_hz: c.rate_hz,
            });
        }
        for s in &self.file.steppers {
            let t = self.terminal_index(&s.terminal)?;
            let sig = |e: &Spanned<String>| -> Result<Signal, TopologyError> {
                let (index, sub) = self.entry(e, &s.terminal)?;
                Ok(Signal::new(t, index, sub))
            };
            models.push(Model::Stepper(Stepper {
                velocity: sig(&s.velocity)?,
                enable: if s.enable.get_ref().is_empty() {
                    None
                } else {
                    Some(sig(&s.enable)?)
                },
                encoder: sig(&s.encoder)?,
                counts_per_second: s.counts_per_second,
                position: s.position,
                low_limit_input: s.low_limit.map(|_| sig(&s.low_limit_input)).transpose()?,
                low_limit: s.low_limit.unwrap_or(f64::NEG_INFINITY),
                high_limit_input: s.high_limit.map(|_| sig(&s.high_limit_input)).transpose()?,
                high_limit: s.high_limit.unwrap_or(f64::INFINITY),
                ready_inputs: vec![Signal::new(t, 0x6010, 0x01), Signal::new(t, 0x6010, 0x02)],
            }));
        }
        let plant = PlantHandle::new(models.clone());
        let mut terminals = Vec::new();
        for (i, t) in self.file.terminals.iter().enumerate() {
            let eeprom = self.resolve(t.eeprom.get_ref());
            let sii =
                Sii::load(&eeprom).map_err(|e| self.invalid(&t.eeprom.span(), e.to_string()))?;
            let coe = sii.has_mailbox() && sii.mailbox_protocols & mailbox_protocol::COE != 0;
            let od = match &t.dictionary {
                Some(d) => {
                    let mut od = ObjectDictionary::from_json_file(&self.resolve(d.get_ref()))
                        .map_err(|e| self.invalid(&d.span(), e.to_string()))?;
                    name_from_sii(&mut od, &sii);
                    od
                }
                None => dictionary_from_sii(&sii),
            };
            // Every signal a model uses must exist in the terminal's dictionary.
            for m in &models {
                let sigs: Vec<Signal> = match m {
                    Model::Wire { from, to, .. } => vec![*from, *to],
                    Model::Counter { signal, .. } => vec![*signal],
                    Model::Stepper(s) => [
                        Some(s.velocity),
                        s.enable,
                        Some(s.encoder),
                        s.low_limit_input,
                        s.high_limit_input,
                    ]
                    .into_iter()
                    .flatten()
                    .collect(),
                };
                for s in sigs.into_iter().filter(|s| s.terminal == i) {
                    if od.entry(s.index, s.sub).is_err() {
                        return Err(self.invalid(
                            &t.eeprom.span(),
                            format!(
                                "a model uses {}/{:04X}:{:02X}, which terminal {} does not have",
                                names[i], s.index, s.sub, names[i]
                            ),
                        ));
                    }
                }
            }
            let app = DictionaryTerminal::new(i, od, coe, plant.clone());
            terminals.push(BuiltTerminal {
                name: names[i].clone(),
                sii,
                app: Box::new(app),
                alias: t.alias,
                drift_ppm: t.drift_ppm,
            });
        }
        let wire_time = self.wire_time()?;
        Ok(BuiltBus {
            terminals,
            plant,
            wire_time,
        })
    }

    /// The wire-time model `[wire_time]` and the terminals' `forward_delay_ns` describe.
    fn wire_time(&self) -> Result<WireTime, TopologyError> {
        let check = |d: &Spanned<u64>, key: &str| -> Result<u64, TopologyError> {
            if *d.get_ref() > MAX_FORWARD_DELAY_NS {
                return Err(self.invalid(
                    &d.span(),
                    format!(
                        "{key} = {} is more than {MAX_FORWARD_DELAY_NS} ns",
                        d.get_ref()
                    ),
                ));
            }
            Ok(*d.get_ref())
        };
        let spec = self.file.wire_time.as_ref();
        let enabled = spec.is_some_and(|w| w.enabled);
        let default_forward_delay_ns = match spec.and_then(|w| w.forward_delay_ns.as_ref()) {
            Some(d) if !enabled => {
                return Err(self.invalid(
                    &d.span(),
                    "[wire_time] forward_delay_ns has no effect: the wire-time model is off \
                     (enabled = false)"
                        .to_string(),
                ));
            }
            Some(d) => check(d, "[wire_time] forward_delay_ns")?,
            None => DEFAULT_FORWARD_DELAY_NS,
        };
        let mut forward_delay_ns = Vec::new();
        for t in &self.file.terminals {
            let delay = match &t.forward_delay_ns {
                Some(d) if !enabled => {
                    return Err(self.invalid(
                        &d.span(),
                        "forward_delay_ns has no effect: the wire-time model is off \
                         ([wire_time] missing or enabled = false)"
                            .to_string(),
                    ));
                }
                Some(d) => check(d, "forward_delay_ns")?,
                None => default_forward_delay_ns,
            };
            forward_delay_ns.push(delay);
        }
        Ok(WireTime {
            enabled,
            forward_delay_ns,
            default_forward_delay_ns,
        })
    }
}

fn parse_entry(s: &str) -> Option<(u16, u8)> {
    let (i, sub) = s.trim().split_once(':')?;
    let i = i.trim_start_matches("0x");
    Some((
        u16::from_str_radix(i, 16).ok()?,
        u8::from_str_radix(sub, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = "[[terminal]]\neeprom = \"x.bin\"\ndrift = 3\n";
        let e =
            Topology::parse(text, Path::new("t.toml"), Path::new(".")).expect_err("unknown key");
        let m = e.to_string();
        assert!(m.contains("drift") && m.contains("line 3"), "{m}");
    }

    #[test]
    fn unknown_terminal_in_wiring_names_line() {
        let text = "[[terminal]]\nname = \"A\"\neeprom = \"x.bin\"\n\n[[wire]]\nfrom = \"A/7000:01\"\nto = \"B/6000:01\"\n";
        let t = Topology::parse(text, Path::new("t.toml"), Path::new(".")).expect("parses");
        let m = t.build().expect_err("B unknown").to_string();
        assert!(m.contains("line 7") && m.contains("\"B\""), "{m}");
    }

    /// Parses `text` with relative paths against the shared test data, then builds it:
    /// the error message either step gives.
    fn error_of(text: &str) -> String {
        let base = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata"
        ));
        match Topology::parse(text, Path::new("bad.toml"), &base) {
            Err(e) => e.to_string(),
            Ok(t) => match t.build() {
                Err(e) => e.to_string(),
                Ok(_) => panic!("accepted:\n{text}"),
            },
        }
    }

    #[test]
    fn hostile_topologies_are_errors_that_say_what_and_where() {
        let el2004 = "[[terminal]]\nname = \"A\"\neeprom = \"eeprom/el2004.bin\"\n";
        let cases: Vec<(String, &[&str])> = vec![
            ("".into(), &["bad.toml", "no [[terminal]]"]),
            ("\u{0}\u{ff}[[[".into(), &["bad.toml"]),
            ("terminal = 3\n".into(), &["bad.toml", "terminal"]),
            ("[[terminal]]\nname = \"A\"\n".into(), &["eeprom"]),
            ("[[terminal]]\neeprom = 7\n".into(), &["line 2"]),
            (format!("{el2004}alias = 70000\n"), &["line 4"]),
            (format!("{el2004}alias = -1\n"), &["line 4"]),
            (
                "[[terminal]]\neeprom = \"eeprom/none.bin\"\n".into(),
                &["line 2", "none.bin"],
            ),
            (
                "[[terminal]]\neeprom = \"eeprom/empty-eeprom.bin\"\n".into(),
                &["line 2"],
            ),
            (
                "[[terminal]]\neeprom = \"eeprom/README.md\"\n".into(),
                &["line 2"],
            ),
            (
                format!("{el2004}dictionary = \"sdo/none.json\"\n"),
                &["line 4", "none.json"],
            ),
            (
                format!("{el2004}dictionary = \"eeprom/el2004.bin\"\n"),
                &["line 4"],
            ),
            (
                format!("{el2004}[[wire]]\nfrom = \"A\"\nto = \"A/7000:01\"\n"),
                &["line 5", "TERMINAL/INDEX:SUB"],
            ),
            (
                format!("{el2004}[[wire]]\nfrom = \"A/7000:100\"\nto = \"A/7000:01\"\n"),
                &["line 5", "INDEX:SUB"],
            ),
            (
                format!("{el2004}[[wire]]\nfrom = \"A/zz:01\"\nto = \"A/7000:01\"\n"),
                &["line 5", "INDEX:SUB"],
            ),
            (
                format!("{el2004}[[wire]]\nfrom = \"#99/7000:01\"\nto = \"A/7000:01\"\n"),
                &["line 5", "#99"],
            ),
            (
                format!("{el2004}[[wire]]\nfrom = \"A/7000:01\"\nto = \"A/7FFF:01\"\n"),
                &["7FFF:01"],
            ),
            (
                format!("{el2004}[[stepper]]\nterminal = \"A\"\nvelocity = \"\"\n"),
                &["line 6", "INDEX:SUB"],
            ),
            (
                format!("{el2004}[[counter]]\nsignal = \"A/7000:01\"\n"),
                &["rate_hz"],
            ),
            (
                format!("{el2004}[[terminal]]\nname = \"A\"\neeprom = \"eeprom/el2004.bin\"\n"),
                &["line 5", "used twice"],
            ),
            (
                format!("{el2004}[wire_time]\nforward_delay = 300\n"),
                &["line 5", "forward_delay", "forward_delay_ns"],
            ),
            (
                format!("{el2004}[wire_time]\nforward_delay_ns = -1\n"),
                &["line 5", "forward_delay_ns"],
            ),
            (
                format!("{el2004}[wire_time]\nforward_delay_ns = 2000000\n"),
                &["line 5", "forward_delay_ns", "more than 1000000 ns"],
            ),
            (
                format!("{el2004}[wire_time]\nenabled = \"yes\"\n"),
                &["line 5", "enabled"],
            ),
            (
                format!("{el2004}[wire_time]\nenabled = false\nforward_delay_ns = 700\n"),
                &["line 6", "forward_delay_ns", "wire-time model is off"],
            ),
            (
                format!("{el2004}forward_delay_ns = 700\n"),
                &["line 4", "forward_delay_ns", "wire-time model is off"],
            ),
            (
                format!("{el2004}forward_delay_ns = 700\n[wire_time]\nenabled = false\n"),
                &["line 4", "forward_delay_ns", "wire-time model is off"],
            ),
            (
                format!("{el2004}forward_delay_ns = 1000001\n[wire_time]\n"),
                &["line 4", "forward_delay_ns", "more than"],
            ),
        ];
        for (text, wanted) in &cases {
            let m = error_of(text);
            for w in *wanted {
                assert!(m.contains(w), "{text:?}: {m:?} lacks {w:?}");
            }
        }
    }
}
