//! Distributed clocks at start-up: propagation delays from latched receive times
//! (topology-aware), system time offsets, static drift compensation, and SYNC0/SYNC1
//! following the terminals' SII DC modes (ETG.1000.4 §9.1, ESC DC registers
//! 0x0900–0x09A7; ETG.2010 table 10).
//!
//! The delay computation and the SYNC settings are pure (receive times or SII in, values
//! out); the bus steps are thin functions over the [`Transport`].

use super::registers;
use super::sii::SiiImage;
use super::topology::{Attachment, FORWARDING_ORDER, Ports};
use super::transport::{Transport, TransportError};
use super::wire::{Address, Command, DatagramRepr};
use std::time::SystemTime;

/// Seconds from the Unix epoch to the EtherCAT epoch, 2000-01-01 00:00:00 UTC
/// (ETG.1000.4 §9.1.3: system time counts ns since then).
pub const ETHERCAT_EPOCH_UNIX_SECS: u64 = 946_684_800;

/// Now as EtherCAT system time (ns since 2000-01-01).
pub fn ethercat_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| (d.as_nanos() as u64).saturating_sub(ETHERCAT_EPOCH_UNIX_SECS * 1_000_000_000))
        .unwrap_or(0)
}

/// Receive times of one DC terminal latched by a write to 0x0900.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latch {
    /// Receive time on ports 0..3 (local time, lower 32 bits), registers 0x0900..0x090F.
    pub ports: [u32; 4],
    /// Local time at which port 0 received the latch frame, 64 bits (0x0918); `None`
    /// for ESCs that only have port receive times and no system time (e.g. the ET1200
    /// of an EL2828 answers 0x0918 with working counter 0).
    pub processing_unit: Option<u64>,
}

/// Propagation delay of each DC terminal from the reference clock (the first DC
/// terminal), in ns, from latched receive times and the tree.
///
/// For a terminal `c` behind port `x` of its parent `p`: the frame left `p` towards `c`
/// when it came back on the port before `x` in forwarding order (or arrived on port 0),
/// and returned on `x`. That loop minus the time the frame spent in `c`'s own subtree is
/// twice the link delay. `c`'s delay = `p`'s delay + time in `p` before leaving on `x` +
/// the link delay. Terminals without DC (`None`) pass frames on but get no delay; the
/// computation works along the tree through them using their latches when present.
pub fn propagation_delays(
    latches: &[Option<Latch>],
    ports: &[Ports],
    tree: &[Option<Attachment>],
) -> Vec<Option<u32>> {
    let n = latches.len();
    let mut delay: Vec<Option<u32>> = vec![None; n];
    let Some(reference) = latches.iter().position(Option::is_some) else {
        return delay;
    };
    delay[reference] = Some(0);
    // Time the frame spends in the subtree behind a terminal's port 0 (enter to leave).
    let subtree = |i: usize| -> u32 {
        let Some(l) = latches[i] else { return 0 };
        let last = ports[i].downstream().last().copied();
        match last {
            Some(p) => l.ports[usize::from(p)].wrapping_sub(l.ports[0]),
            None => 0,
        }
    };
    for c in reference + 1..n {
        let Some(Attachment { parent, port }) = tree.get(c).copied().flatten() else {
            continue;
        };
        let p = usize::from(parent);
        let (Some(lp), Some(dp)) = (latches[p], delay[p]) else {
            continue;
        };
        if latches[c].is_none() {
            continue;
        }
        let order: Vec<u8> = ports[p].downstream();
        let Some(k) = order.iter().position(|&q| q == port) else {
            continue;
        };
        let before = if k == 0 { 0 } else { order[k - 1] };
        let left_at = lp.ports[usize::from(before)];
        let back_at = lp.ports[usize::from(port)];
        let loop_time = back_at.wrapping_sub(left_at);
        let link = loop_time.saturating_sub(subtree(c)) / 2;
        let inside_parent = left_at.wrapping_sub(lp.ports[0]);
        delay[c] = Some(dp.wrapping_add(inside_parent).wrapping_add(link));
    }
    // Delays count from the reference clock: the first terminal with a system time.
    if let Some(r) = latches
        .iter()
        .position(|l| l.is_some_and(|l| l.processing_unit.is_some()))
    {
        let base = delay[r].unwrap_or(0);
        for d in delay.iter_mut().flatten() {
            *d = d.saturating_sub(base);
        }
    }
    delay
}

/// Offsets to write into 0x0920 so that every DC terminal's system time equals the
/// master's clock `master_now` at the moment of the latch, shifted by its delay.
pub fn offsets(
    latches: &[Option<Latch>],
    delays: &[Option<u32>],
    master_now: u64,
) -> Vec<Option<u64>> {
    latches
        .iter()
        .zip(delays)
        .map(|(l, d)| match (l, d) {
            (Some(l), Some(d)) => l
                .processing_unit
                .map(|pu| master_now.wrapping_add(u64::from(*d)).wrapping_sub(pu)),
            _ => None,
        })
        .collect()
}

/// Broadcast a write to 0x0900 so every terminal latches its port receive times.
pub async fn latch(transport: &Transport) -> Result<u16, TransportError> {
    transport
        .bwr(registers::DC_RECEIVE_TIME_PORT0, &[0; 4])
        .await
}

/// Read the latched receive times of terminal `station`.
pub async fn read_latch(transport: &Transport, station: u16) -> Result<Latch, TransportError> {
    let p = transport
        .fprd(station, registers::DC_RECEIVE_TIME_PORT0, 16)
        .await?;
    let u = transport
        .datagram(
            Command::Fprd,
            Address::Station {
                station,
                register: registers::DC_RECEIVE_TIME_PROCESSING_UNIT,
            },
            vec![0; 8],
        )
        .await?;
    let word = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let processing_unit = (u.wkc == 1 && u.data.len() == 8).then(|| {
        let mut pu = [0u8; 8];
        pu.copy_from_slice(&u.data);
        u64::from_le_bytes(pu)
    });
    Ok(Latch {
        ports: [word(0), word(4), word(8), word(12)],
        processing_unit,
    })
}

/// Static drift compensation: `frames` FRMW datagrams reading the reference clock's
/// system time (0x0910) and writing it to every following terminal, which adjust their
/// clock speed (ETG.1000.4 §9.1.4). Sent `in_flight` at a time. `expected_wkc` is the
/// number of DC terminals.
pub async fn compensate_drift(
    transport: &Transport,
    reference: u16,
    frames: usize,
    in_flight: usize,
) -> Result<(), TransportError> {
    let mut sent = 0;
    while sent < frames {
        let batch = in_flight.min(frames - sent).max(1);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let t = transport.clone();
            set.spawn(async move {
                t.exchange(vec![DatagramRepr::new(
                    Command::Frmw,
                    Address::Station {
                        station: reference,
                        register: registers::DC_SYSTEM_TIME,
                    },
                    vec![0; 8],
                )])
                .await
            });
        }
        while let Some(r) = set.join_next().await {
            let reply = r.map_err(|_| TransportError::Closed)??;
            if reply.first().is_none_or(|d| d.wkc == 0) {
                return Err(TransportError::WorkingCounter {
                    command: Command::Frmw,
                    address: Address::Station {
                        station: reference,
                        register: registers::DC_SYSTEM_TIME,
                    },
                    expected: 1,
                    got: 0,
                });
            }
        }
        sent += batch;
    }
    Ok(())
}

/// Lead time from reading the reference clock to the first SYNC pulse: far more than the
/// two round trips that write the SYNC settings of every terminal and read them back
/// (a start time in the past would only fire after the 64-bit system time wraps).
pub const SYNC_START_LEAD_NS: u64 = 100_000_000;

/// How often the SYNC start is placed before giving up, each time further ahead.
pub const SYNC_START_ATTEMPTS: usize = 4;

/// The longest lead tried for the SYNC start: a bus that needs more to take two frames
/// is not fit for SYNC signals.
pub const SYNC_START_LEAD_MAX_NS: u64 = 2_000_000_000;

/// The lead of the next attempt after one with `lead` missed its start: twice as much,
/// and at least twice the bus time `took` from reading the reference clock to reading
/// the start back.
pub fn next_sync_lead(lead: u64, took: u64) -> u64 {
    lead.saturating_mul(2).max(took.saturating_mul(2))
}

/// Activation bits (register 0x0981, the high byte of AssignActivate) a DC mode needs to
/// produce SYNC0 pulses: cyclic operation and SYNC0 (ETG.1000.4 table 71).
const SYNC0_ACTIVATION: u8 = registers::dc_activation::CYCLIC | registers::dc_activation::SYNC0;

/// Which of a terminal's SII DC modes (ETG.2010 table 10, the ESI's `Dc/OpMode`) its
/// SYNC signals follow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DcModeChoice {
    /// The first mode whose AssignActivate starts cyclic operation and SYNC0; no SYNC
    /// signals if no mode does (the terminal runs free or SyncManager-synchronous).
    #[default]
    Auto,
    /// No SYNC signals: activation 0.
    Off,
    /// The mode with this name (case-insensitive), e.g. `DcSync2`.
    Named(String),
    /// The mode at this place of the SII DC category (0 is the first).
    Index(usize),
}

impl std::str::FromStr for DcModeChoice {
    type Err = String;

    /// `auto`, `off`, a number (the mode's place in the SII) or a mode name.
    fn from_str(s: &str) -> Result<DcModeChoice, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty DC mode (give a name, a number, auto or off)".into());
        }
        Ok(if s.eq_ignore_ascii_case("auto") {
            DcModeChoice::Auto
        } else if s.eq_ignore_ascii_case("off") {
            DcModeChoice::Off
        } else if let Ok(i) = s.parse::<usize>() {
            DcModeChoice::Index(i)
        } else {
            DcModeChoice::Named(s.to_owned())
        })
    }
}

impl std::fmt::Display for DcModeChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DcModeChoice::Auto => f.write_str("auto"),
            DcModeChoice::Off => f.write_str("off"),
            DcModeChoice::Named(n) => write!(f, "{n:?}"),
            DcModeChoice::Index(i) => write!(f, "#{i}"),
        }
    }
}

/// A DC mode choice for one terminal (by bus position) or for all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DcModeSelection {
    /// The terminal's position; `None`: every terminal that has the mode.
    pub position: Option<u16>,
    /// The choice.
    pub choice: DcModeChoice,
}

impl std::str::FromStr for DcModeSelection {
    type Err = String;

    /// `MODE` (all terminals) or `POS=MODE` (the terminal at position POS).
    fn from_str(s: &str) -> Result<DcModeSelection, String> {
        match s.split_once('=') {
            Some((pos, mode)) => Ok(DcModeSelection {
                position: Some(
                    pos.trim()
                        .parse()
                        .map_err(|e| format!("{pos:?} in {s:?} is not a position: {e}"))?,
                ),
                choice: mode.parse()?,
            }),
            None => Ok(DcModeSelection {
                position: None,
                choice: s.parse()?,
            }),
        }
    }
}

/// The SYNC signal settings of one terminal (ESC registers 0x0980..0x09A7), from one of
/// its SII DC modes and the bus cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    /// The mode's place in the SII DC category.
    pub mode: usize,
    /// AssignActivate: the low byte goes to 0x0980 (cyclic unit control: which latch and
    /// SYNC units the PDI owns), the high byte to 0x0981 (activation: cyclic operation,
    /// SYNC0, SYNC1; ETG.1000.4 tables 70, 71).
    pub assign_activate: u16,
    /// SYNC0 cycle time in ns (0x09A0).
    pub sync0_cycle_ns: u32,
    /// The SYNC1 cycle time register in ns (0x09A4): time from a SYNC0 pulse to the SYNC1
    /// pulse; the ESC starts the next SYNC1 interval with the SYNC0 pulse after it.
    pub sync1_cycle_ns: u32,
    /// Shift of the SYNC0 pulses from the bus cycle grid, ns (the mode's ShiftTimeSync0).
    pub shift_ns: i32,
}

/// Why the SYNC signals of the terminals cannot be configured as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The terminal has no mode the choice names.
    #[error("terminal 0x{station:04x} has no DC mode {choice} (its SII lists {available})")]
    NoSuchMode {
        /// The terminal.
        station: u16,
        /// What was asked for.
        choice: DcModeChoice,
        /// The modes it has, by place and name.
        available: String,
    },
    /// A choice for all terminals that no terminal has.
    #[error("no terminal has a DC mode {choice}")]
    UnusedChoice {
        /// What was asked for.
        choice: DcModeChoice,
    },
    /// A choice for a position where there is no terminal that could follow it.
    #[error("no terminal with a DC system time and DC modes in its SII at position {position}")]
    NoTerminal {
        /// The position.
        position: u16,
    },
    /// Two different choices for one position.
    #[error("two DC modes for the terminal at position {position}: {first} and {second}")]
    Conflicting {
        /// The position.
        position: u16,
        /// The first choice.
        first: DcModeChoice,
        /// The other.
        second: DcModeChoice,
    },
    /// The mode divides the bus cycle into a fraction of a nanosecond.
    #[error(
        "terminal 0x{station:04x}, DC mode {mode}: the bus cycle of {cycle_ns} ns divided by {divisor} (its SYNC0 cycle factor) is not a whole number of ns"
    )]
    InexactCycle {
        /// The terminal.
        station: u16,
        /// The mode's name or place.
        mode: String,
        /// The bus cycle.
        cycle_ns: u64,
        /// The divisor.
        divisor: u32,
    },
    /// A cycle time that does not fit its 32-bit register.
    #[error(
        "terminal 0x{station:04x}, DC mode {mode}: {what} would be {ns} ns, outside the 32-bit register"
    )]
    OutOfRange {
        /// The terminal.
        station: u16,
        /// The mode's name or place.
        mode: String,
        /// Which time.
        what: &'static str,
        /// The value.
        ns: i128,
    },
    /// A bus cycle of zero.
    #[error("a SYNC bus cycle of 0 ns")]
    ZeroCycle,
}

/// How a mode is named in messages: its SII name, else its place.
pub fn mode_label(sii: &SiiImage, index: usize) -> String {
    let name = sii.dc_modes.get(index).and_then(|m| sii.text(m.name_index));
    match name {
        Some(n) => format!("{n:?} (#{index})"),
        None => format!("#{index}"),
    }
}

/// The mode `choice` picks among the DC modes of `sii`; `Ok(None)`: no SYNC signals.
pub fn choose_mode(
    station: u16,
    sii: &SiiImage,
    choice: &DcModeChoice,
) -> Result<Option<usize>, SyncError> {
    let modes = &sii.dc_modes;
    let found = match choice {
        DcModeChoice::Off => return Ok(None),
        DcModeChoice::Auto => {
            return Ok(modes.iter().position(|m| {
                (m.assign_activate >> 8) as u8 & SYNC0_ACTIVATION == SYNC0_ACTIVATION
            }));
        }
        DcModeChoice::Index(i) => (*i < modes.len()).then_some(*i),
        DcModeChoice::Named(name) => modes.iter().position(|m| {
            sii.text(m.name_index)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        }),
    };
    match found {
        Some(i) => Ok(Some(i)),
        None => Err(SyncError::NoSuchMode {
            station,
            choice: choice.clone(),
            available: if modes.is_empty() {
                "none".into()
            } else {
                (0..modes.len())
                    .map(|i| mode_label(sii, i))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

/// The SYNC settings of DC mode `index` of `sii` for a bus cycle of `cycle_ns`
/// (ETG.2000 `Dc/OpMode`, stored as ETG.2010 table 10); `Ok(None)` when the mode starts
/// no SYNC0 (AssignActivate without cyclic operation and SYNC0: free run).
///
/// - SYNC0 cycle: the mode's CycleTimeSync0 if not 0, else the bus cycle times its
///   SYNC0 factor (a negative factor divides: −8 gives eight SYNC0 pulses per cycle, as
///   the EL2262's oversampling modes ask; 0 counts as 1).
/// - SYNC1 (when its activation bit is set) repeats every SYNC0 cycle times a positive
///   SYNC1 factor, every bus cycle times the magnitude of a negative one, and with each
///   SYNC0 pulse for 0; it comes ShiftTimeSync1 after the SYNC0 pulse that starts its
///   interval. Register 0x09A4 holds the time from that SYNC0 pulse: interval − SYNC0
///   cycle + shift.
pub fn sync_settings(
    station: u16,
    sii: &SiiImage,
    index: usize,
    cycle_ns: u64,
) -> Result<Option<SyncSettings>, SyncError> {
    let Some(mode) = sii.dc_modes.get(index) else {
        return Err(SyncError::NoSuchMode {
            station,
            choice: DcModeChoice::Index(index),
            available: format!("{} modes", sii.dc_modes.len()),
        });
    };
    if cycle_ns == 0 {
        return Err(SyncError::ZeroCycle);
    }
    let activation = (mode.assign_activate >> 8) as u8;
    if activation & SYNC0_ACTIVATION != SYNC0_ACTIVATION {
        return Ok(None);
    }
    let label = || mode_label(sii, index);
    let fit = |what: &'static str, ns: i128| {
        u32::try_from(ns).map_err(|_| SyncError::OutOfRange {
            station,
            mode: label(),
            what,
            ns,
        })
    };
    let bus = i128::from(cycle_ns);
    let sync0 = if mode.cycle_time_0 != 0 {
        mode.cycle_time_0
    } else {
        match mode.sync0_cycle_factor {
            f if f < 0 => {
                let divisor = u32::from(f.unsigned_abs());
                if cycle_ns % u64::from(divisor) != 0 {
                    return Err(SyncError::InexactCycle {
                        station,
                        mode: label(),
                        cycle_ns,
                        divisor,
                    });
                }
                fit("the SYNC0 cycle", bus / i128::from(divisor))?
            }
            f => fit("the SYNC0 cycle", bus * i128::from(f.max(1)))?,
        }
    };
    let sync1 = if activation & registers::dc_activation::SYNC1 != 0 {
        let interval = match mode.sync1_cycle_factor {
            f if f > 0 => i128::from(sync0) * i128::from(f),
            f if f < 0 => bus * i128::from(f.unsigned_abs()),
            _ => i128::from(sync0),
        };
        fit(
            "the SYNC1 cycle register",
            interval - i128::from(sync0) + i128::from(mode.shift_time_1),
        )?
    } else {
        0
    };
    Ok(Some(SyncSettings {
        mode: index,
        assign_activate: mode.assign_activate,
        sync0_cycle_ns: sync0,
        sync1_cycle_ns: sync1,
        shift_ns: mode.shift_time_0,
    }))
}

/// One terminal whose SYNC signals are to be configured.
#[derive(Debug, Clone, Copy)]
pub struct SyncCandidate<'a> {
    /// Its index in the master's list of terminals.
    pub index: usize,
    /// Bus position.
    pub position: u16,
    /// Station address.
    pub station: u16,
    /// Its SII (with at least one DC mode).
    pub sii: &'a SiiImage,
}

/// The SYNC settings planned for one terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedSync {
    /// Its index in the master's list of terminals (as in its [`SyncCandidate`]).
    pub index: usize,
    /// Station address.
    pub station: u16,
    /// The settings; `None`: SYNC off.
    pub settings: Option<SyncSettings>,
}

/// The SYNC settings of every candidate for a bus cycle of `cycle_ns`, following
/// `selections`, checked as a whole before anything is written:
///
/// - a selection for a position decides for the terminal there, whatever its place
///   among the selections; it must name a mode that terminal has, there must be a
///   candidate at the position, and two selections for one position that pick
///   different modes are refused;
/// - a terminal without a selection of its own follows the last selection for all
///   whose mode it has (`auto` and `off` every terminal has), else
///   [`DcModeChoice::Auto`]; a named or numbered mode for all must exist on at least
///   one candidate.
///
/// `None` settings: SYNC off.
pub fn plan_sync(
    candidates: &[SyncCandidate<'_>],
    selections: &[DcModeSelection],
    cycle_ns: u64,
) -> Result<Vec<PlannedSync>, SyncError> {
    if cycle_ns == 0 {
        return Err(SyncError::ZeroCycle);
    }
    // The mode each position-specific selection picks, with the selection.
    let mut by_position: std::collections::BTreeMap<u16, (Option<usize>, &DcModeChoice)> =
        std::collections::BTreeMap::new();
    for s in selections {
        let Some(position) = s.position else { continue };
        let Some(c) = candidates.iter().find(|c| c.position == position) else {
            return Err(SyncError::NoTerminal { position });
        };
        let mode = choose_mode(c.station, c.sii, &s.choice)?;
        match by_position.insert(position, (mode, &s.choice)) {
            Some((first_mode, first)) if first_mode != mode => {
                return Err(SyncError::Conflicting {
                    position,
                    first: first.clone(),
                    second: s.choice.clone(),
                });
            }
            _ => {}
        }
    }
    let for_all: Vec<&DcModeChoice> = selections
        .iter()
        .filter(|s| s.position.is_none())
        .map(|s| &s.choice)
        .collect();
    for choice in &for_all {
        let named = !matches!(choice, DcModeChoice::Auto | DcModeChoice::Off);
        if named
            && !candidates
                .iter()
                .any(|c| choose_mode(c.station, c.sii, choice).is_ok())
        {
            return Err(SyncError::UnusedChoice {
                choice: (*choice).clone(),
            });
        }
    }
    candidates
        .iter()
        .map(|c| {
            let mode = match by_position.get(&c.position) {
                Some(&(mode, _)) => mode,
                None => match for_all
                    .iter()
                    .rev()
                    .find_map(|choice| choose_mode(c.station, c.sii, choice).ok())
                {
                    Some(mode) => mode,
                    None => choose_mode(c.station, c.sii, &DcModeChoice::Auto)?,
                },
            };
            let settings = match mode {
                Some(i) => sync_settings(c.station, c.sii, i, cycle_ns)?,
                None => None,
            };
            Ok(PlannedSync {
                index: c.index,
                station: c.station,
                settings,
            })
        })
        .collect()
}

/// The first SYNC pulse of a terminal: the shared start `grid_start` (a multiple of the
/// bus cycle) shifted by the terminal's SYNC0 shift.
pub fn sync_start(grid_start: u64, settings: &SyncSettings) -> u64 {
    grid_start.wrapping_add_signed(i64::from(settings.shift_ns))
}

/// The shared grid start of the first SYNC pulses: `lead_ns` after `reference_now`,
/// rounded up to a multiple of the bus cycle.
pub fn sync_grid_start(reference_now: u64, cycle_ns: u64, lead_ns: u64) -> u64 {
    let cycle = cycle_ns.max(1);
    reference_now
        .saturating_add(lead_ns)
        .div_ceil(cycle)
        .saturating_mul(cycle)
}

fn write(station: u16, register: u16, data: Vec<u8>) -> DatagramRepr {
    DatagramRepr::new(Command::Fpwr, Address::Station { station, register }, data)
}

fn read(station: u16, register: u16, len: usize) -> DatagramRepr {
    DatagramRepr::new(
        Command::Fprd,
        Address::Station { station, register },
        vec![0; len],
    )
}

/// The writes that set the SYNC signals of terminal `station` (ETG.1000.4 tables
/// 70–77), in the order the ESC must see them, to go in one frame
/// ([`Transport::batch_groups`]): switch them off (0x0980..0x0981 = 0); then, for
/// `Some((settings, start))`, the SYNC0 and SYNC1 cycle times (0x09A0, 0x09A4), the
/// start time `start` (system time of the first pulse, 0x0990) and AssignActivate to
/// 0x0980..0x0981 last, which starts cyclic operation.
///
/// The pulse length (0x0982) is not the master's to set: the ESC loads it from SII word
/// 0x0002 and EtherCAT can only read it.
pub fn sync_writes(station: u16, sync: Option<(&SyncSettings, u64)>) -> Vec<DatagramRepr> {
    let mut writes = vec![write(
        station,
        registers::DC_CYCLIC_UNIT_CONTROL,
        vec![0, 0],
    )];
    if let Some((settings, start)) = sync {
        let mut cycles = settings.sync0_cycle_ns.to_le_bytes().to_vec();
        cycles.extend_from_slice(&settings.sync1_cycle_ns.to_le_bytes());
        writes.push(write(station, registers::DC_SYNC0_CYCLE, cycles));
        writes.push(write(
            station,
            registers::DC_START_TIME,
            start.to_le_bytes().to_vec(),
        ));
        writes.push(write(
            station,
            registers::DC_CYCLIC_UNIT_CONTROL,
            settings.assign_activate.to_le_bytes().to_vec(),
        ));
    }
    writes
}

/// The reads that check a SYNC start of terminal `station`, for one frame: its system
/// time (0x0910) and its next SYNC0 pulse (0x0990, which reads the start time until the
/// first pulse).
pub fn start_check_reads(station: u16) -> Vec<DatagramRepr> {
    vec![
        read(station, registers::DC_SYSTEM_TIME, 8),
        read(station, registers::DC_START_TIME, 8),
    ]
}

/// Whether the start time `start` written to a terminal is still to come, from what
/// [`start_check_reads`] read after activation: its system time is before `start` and
/// 0x0990 still holds `start`. Otherwise the activation may have come after the start
/// (an ESC then waits for the 64-bit system time to wrap), and the start is placed again.
pub fn start_ahead(start: u64, system_time: u64, next_pulse: u64) -> bool {
    system_time < start && next_pulse == start
}

/// A little-endian u64 from up to eight bytes (a register as a datagram read it).
pub fn le_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(b)
}

/// The SYNC start could not be placed ahead of a terminal's system time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "terminal 0x{station:04x}: the first SYNC0 pulse at system time {start} ns was not ahead of its system time {system_time} ns when read back (0x0990 read {next_pulse}) on attempt {attempts} with a lead of {} ms; the bus takes too long to configure SYNC signals",
    .lead_ns / 1_000_000
)]
pub struct StartMissed {
    /// The terminal.
    pub station: u16,
    /// The start time written.
    pub start: u64,
    /// Its system time when read back.
    pub system_time: u64,
    /// What 0x0990 read.
    pub next_pulse: u64,
    /// Attempts made (this was the last).
    pub attempts: usize,
    /// The lead of that attempt.
    pub lead_ns: u64,
}

/// The order in which frames leave a terminal, re-exported for documentation.
pub const PORT_ORDER: [u8; 3] = FORWARDING_ORDER;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethercat::topology::{attach, ports};

    /// A line of three terminals, 100 ns per link, 20 ns through each terminal.
    #[test]
    fn line_delays_accumulate_link_and_forwarding_time() {
        let p = [ports(&[0, 1]), ports(&[0, 1]), ports(&[0])];
        let tree = attach(&p).unwrap();
        // Frame arrives at t=0 at terminal 0 (its clock: 1000 + t).
        // It reaches 1 at 120 (20 fwd + 100 link), 2 at 240. Returns: 2 turns around
        // (20), back to 1 at 240+20+100 = 360, back at 0 port 1 at 360+20+100 = 480.
        let l0 = Latch {
            ports: [1000, 1480, 0, 0],
            processing_unit: Some(1000),
        };
        let l1 = Latch {
            ports: [5120, 5360, 0, 0],
            processing_unit: Some(5120),
        };
        let l2 = Latch {
            ports: [9240, 0, 0, 0],
            processing_unit: Some(9240),
        };
        let d = propagation_delays(&[Some(l0), Some(l1), Some(l2)], &p, &tree);
        // Link delay seen from 0: (480 - (360-120)) / 2 = 120 (link + forwarding).
        assert_eq!(d, vec![Some(0), Some(120), Some(240)]);
        let o = offsets(&[Some(l0), Some(l1), Some(l2)], &d, 1_000_000);
        // Every clock shows master time + its delay at the latch.
        assert_eq!(o[0], Some(1_000_000 - 1000));
        assert_eq!(o[1].map(|o| o.wrapping_add(5120)), Some(1_000_120));
        assert_eq!(o[2].map(|o| o.wrapping_add(9240)), Some(1_000_240));
    }

    fn image(name: &str) -> SiiImage {
        crate::ethercat::sii::testdata::sii(name)
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn auto_picks_the_first_mode_that_starts_sync0() {
        // EL7041: "Synchron" (AssignActivate 0) then "DC" (0x0300).
        let el7041 = image("el7041.bin");
        assert_eq!(choose_mode(1, &el7041, &DcModeChoice::Auto), Ok(Some(1)));
        let s = sync_settings(1, &el7041, 1, MS).unwrap().unwrap();
        assert_eq!(
            s,
            SyncSettings {
                mode: 1,
                assign_activate: 0x0300,
                sync0_cycle_ns: 1_000_000,
                sync1_cycle_ns: 0,
                shift_ns: 0
            }
        );
        // Choosing "Synchron" by name means no SYNC signals.
        let synchron = choose_mode(1, &el7041, &"synchron".parse().unwrap()).unwrap();
        assert_eq!(synchron, Some(0));
        assert_eq!(sync_settings(1, &el7041, 0, MS), Ok(None));
        assert_eq!(choose_mode(1, &el7041, &DcModeChoice::Off), Ok(None));
    }

    #[test]
    fn sync1_follows_its_shift_and_factor() {
        // EL3164 "DC": 0x0700, SYNC1 factor 0, shift 25 µs: SYNC1 25 µs after each SYNC0.
        let el3164 = image("el3164.bin");
        let s = sync_settings(5, &el3164, 1, MS).unwrap().unwrap();
        assert_eq!(
            (s.assign_activate, s.sync0_cycle_ns, s.sync1_cycle_ns),
            (0x0700, 1_000_000, 25_000)
        );
        // "DCIN": the SYNC0 pulses shifted 100 µs ahead of the grid.
        let s = sync_settings(5, &el3164, 2, MS).unwrap().unwrap();
        assert_eq!(s.shift_ns, -100_000);
        assert_eq!(sync_start(10 * MS, &s), 10 * MS - 100_000);
    }

    #[test]
    fn oversampling_divides_the_cycle_and_keeps_every_assign_activate_bit() {
        // EL2262 "DcSync2": AssignActivate 0x0730 (latch units to the PDI, cyclic, SYNC0,
        // SYNC1), SYNC0 factor -8, SYNC1 factor -1: eight SYNC0 pulses per bus cycle and
        // one SYNC1 per bus cycle, 7/8 of a cycle after the SYNC0 that starts it.
        let el2262 = image("el2262.bin");
        let i = choose_mode(3, &el2262, &"DcSync2".parse().unwrap()).unwrap();
        assert_eq!(i, Some(1));
        let s = sync_settings(3, &el2262, 1, MS).unwrap().unwrap();
        assert_eq!(s.assign_activate, 0x0730);
        assert_eq!(s.sync0_cycle_ns, 125_000);
        assert_eq!(s.sync1_cycle_ns, 875_000);
        // A cycle that eight does not divide into whole ns is refused, naming the mode.
        let e = sync_settings(3, &el2262, 1, 1_000_001).unwrap_err();
        assert_eq!(
            e.to_string(),
            "terminal 0x0003, DC mode \"DcSync2\" (#1): the bus cycle of 1000001 ns divided by 8 (its SYNC0 cycle factor) is not a whole number of ns"
        );
        // A cycle beyond the 32-bit register.
        let e = sync_settings(3, &el2262, 0, 5_000_000_000).unwrap_err();
        assert!(matches!(e, SyncError::OutOfRange { .. }), "{e}");
    }

    #[test]
    fn unknown_modes_are_refused_with_the_list() {
        let el7041 = image("el7041.bin");
        let e = choose_mode(0x1007, &el7041, &"DcSync9".parse().unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "terminal 0x1007 has no DC mode \"DcSync9\" (its SII lists \"Synchron\" (#0), \"DC\" (#1))"
        );
        assert!(choose_mode(0x1007, &el7041, &DcModeChoice::Index(2)).is_err());
    }

    fn selections(s: &[&str]) -> Vec<DcModeSelection> {
        s.iter()
            .map(|s| s.parse().expect("selection parses"))
            .collect()
    }

    #[test]
    fn selections_apply_by_position_then_for_all() {
        let el7041 = image("el7041.bin");
        let el2262 = image("el2262.bin");
        let c = [
            SyncCandidate {
                index: 3,
                position: 3,
                station: 0x1004,
                sii: &el2262,
            },
            SyncCandidate {
                index: 6,
                position: 6,
                station: 0x1007,
                sii: &el7041,
            },
        ];
        // Nothing chosen: both in their first SYNC0 mode.
        let plan = plan_sync(&c, &[], MS).unwrap();
        assert_eq!(plan[0].settings.map(|s| s.mode), Some(0));
        assert_eq!(plan[1].settings.map(|s| s.mode), Some(1));
        assert_eq!((plan[0].index, plan[1].index), (3, 6));
        // A name for all applies where it exists; a position overrides.
        let plan = plan_sync(&c, &selections(&["DcSync2", "6=off"]), MS).unwrap();
        assert_eq!(plan[0].settings.map(|s| s.sync0_cycle_ns), Some(125_000));
        assert_eq!(
            plan[1],
            PlannedSync {
                index: 6,
                station: 0x1007,
                settings: None
            }
        );
        // A name no terminal has, or a position without DC modes, is an error.
        let e = plan_sync(&c, &selections(&["DcSync9"]), MS).unwrap_err();
        assert_eq!(e.to_string(), "no terminal has a DC mode \"DcSync9\"");
        let e = plan_sync(&c, &selections(&["2=auto"]), MS).unwrap_err();
        assert_eq!(e, SyncError::NoTerminal { position: 2 });
        assert_eq!(
            e.to_string(),
            "no terminal with a DC system time and DC modes in its SII at position 2"
        );
        // A name given for one position must exist there.
        let e = plan_sync(&c, &selections(&["6=DcSync2"]), MS).unwrap_err();
        assert!(
            matches!(
                e,
                SyncError::NoSuchMode {
                    station: 0x1007,
                    ..
                }
            ),
            "{e}"
        );
    }

    /// A selection for a position wins over one for all, before or after it.
    #[test]
    fn a_position_wins_over_all_in_any_order() {
        let el3164 = image("el3164.bin");
        let el4104 = image("el4104.bin");
        let c = [
            SyncCandidate {
                index: 4,
                position: 4,
                station: 0x1005,
                sii: &el3164,
            },
            SyncCandidate {
                index: 5,
                position: 5,
                station: 0x1006,
                sii: &el4104,
            },
        ];
        for order in [["4=DCIN", "auto"], ["auto", "4=DCIN"]] {
            let plan = plan_sync(&c, &selections(&order), MS).expect("planned");
            assert_eq!(
                plan[0].settings.map(|s| (s.mode, s.shift_ns)),
                Some((2, -100_000)),
                "terminal 4 in DCIN with {order:?}"
            );
            assert_eq!(plan[1].settings.map(|s| s.mode), Some(1), "{order:?}");
        }
        // `off` for all leaves the position's own choice alone too.
        let plan = plan_sync(&c, &selections(&["4=DCIN", "off"]), MS).expect("planned");
        assert_eq!(plan[0].settings.map(|s| s.mode), Some(2));
        assert_eq!(plan[1].settings, None);
        // The same mode twice for a position is fine (names are case-insensitive, a
        // number names the same mode); two different ones are refused, naming both.
        let plan = plan_sync(&c, &selections(&["4=DCIN", "4=dcin", "4=2"]), MS).expect("one mode");
        assert_eq!(plan[0].settings.map(|s| s.mode), Some(2));
        let e = plan_sync(&c, &selections(&["4=DCIN", "4=DC"]), MS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "two DC modes for the terminal at position 4: \"DCIN\" and \"DC\""
        );
    }

    #[test]
    fn a_zero_cycle_is_refused_even_without_candidates() {
        assert_eq!(plan_sync(&[], &[], 0), Err(SyncError::ZeroCycle));
        // Blanket choices need no terminal; a named one or a position does.
        assert_eq!(
            plan_sync(&[], &selections(&["auto", "off"]), MS),
            Ok(vec![])
        );
        assert_eq!(
            plan_sync(&[], &selections(&["3=DCIN"]), MS),
            Err(SyncError::NoTerminal { position: 3 })
        );
        assert!(matches!(
            plan_sync(&[], &selections(&["DcSync2"]), MS),
            Err(SyncError::UnusedChoice { .. })
        ));
    }

    /// The writes of one terminal: off first, AssignActivate last, the start between.
    #[test]
    fn sync_writes_switch_off_first_and_activate_last() {
        let el3164 = image("el3164.bin");
        let s = sync_settings(5, &el3164, 1, MS).unwrap().unwrap();
        let writes = sync_writes(0x1005, Some((&s, 42 * MS)));
        let regs: Vec<(u16, Vec<u8>)> = writes
            .iter()
            .map(|d| match d.address() {
                Address::Station { station, register } => {
                    assert_eq!(station, 0x1005);
                    assert_eq!(d.command, Command::Fpwr);
                    (register, d.data.clone())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        let mut cycles = 1_000_000u32.to_le_bytes().to_vec();
        cycles.extend_from_slice(&25_000u32.to_le_bytes());
        assert_eq!(
            regs,
            vec![
                (registers::DC_CYCLIC_UNIT_CONTROL, vec![0, 0]),
                (registers::DC_SYNC0_CYCLE, cycles),
                (registers::DC_START_TIME, (42 * MS).to_le_bytes().to_vec()),
                (registers::DC_CYCLIC_UNIT_CONTROL, vec![0x00, 0x07]),
            ]
        );
        assert_eq!(sync_writes(0x1005, None).len(), 1, "SYNC off: one write");
    }

    #[test]
    fn a_start_is_ahead_only_before_it_and_as_written() {
        assert!(start_ahead(10 * MS, 9 * MS, 10 * MS));
        assert!(!start_ahead(10 * MS, 10 * MS, 10 * MS), "due now");
        assert!(
            !start_ahead(10 * MS, 12 * MS, 13 * MS),
            "passed, pulses moved on"
        );
        assert!(
            !start_ahead(10 * MS, 9 * MS, 0),
            "the register does not hold it"
        );
        // The next lead doubles, or covers twice what the last attempt took.
        assert_eq!(next_sync_lead(100 * MS, 20 * MS), 200 * MS);
        assert_eq!(next_sync_lead(100 * MS, 300 * MS), 600 * MS);
    }

    #[test]
    fn mode_selections_parse() {
        let s: DcModeSelection = "3=DcSync2".parse().unwrap();
        assert_eq!(s.position, Some(3));
        assert_eq!(s.choice, DcModeChoice::Named("DcSync2".into()));
        let s: DcModeSelection = "1".parse().unwrap();
        assert_eq!((s.position, s.choice), (None, DcModeChoice::Index(1)));
        assert_eq!("OFF".parse::<DcModeChoice>(), Ok(DcModeChoice::Off));
        assert!("x=DC".parse::<DcModeSelection>().is_err());
        assert!("3=".parse::<DcModeSelection>().is_err());
    }

    #[test]
    fn the_grid_starts_on_a_cycle_boundary_after_the_lead() {
        assert_eq!(sync_grid_start(1_234_567, MS, 100 * MS), 102 * MS);
        assert_eq!(sync_grid_start(2 * MS, MS, 0), 2 * MS);
    }

    /// A junction: terminal 0 with a leaf behind port 3 and another behind port 1.
    #[test]
    fn junction_delay_includes_earlier_branches() {
        let p = [ports(&[0, 1, 3]), ports(&[0]), ports(&[0])];
        let tree = attach(&p).unwrap();
        // 0 forwards to port 3 at t=10, leaf 1 gets it at 110, returns at port 3 at 210+...:
        // leaf turnaround 10 -> back at 0's port 3 at 220. Then out on port 1 at 220,
        // leaf 2 at 320, back at 0's port 1 at 430.
        let l0 = Latch {
            ports: [0, 430, 0, 220],
            processing_unit: Some(0),
        };
        let l1 = Latch {
            ports: [110, 0, 0, 0],
            processing_unit: Some(110),
        };
        let l2 = Latch {
            ports: [320, 0, 0, 0],
            processing_unit: Some(320),
        };
        let d = propagation_delays(&[Some(l0), Some(l1), Some(l2)], &p, &tree);
        // Half the loop through branch 3 (forwarding time split evenly both ways).
        assert_eq!(d[1], Some(110), "(220 - 0) / 2 with no subtree");
        // Leaves 0 when branch 3 came back (220), then half the loop (430-220)/2.
        assert_eq!(d[2], Some(220 + 105), "leaves after branch 3 came back");
    }

    #[test]
    fn terminals_without_dc_get_no_delay() {
        let p = [ports(&[0, 1]), ports(&[0])];
        let tree = attach(&p).unwrap();
        let d = propagation_delays(&[None, Some(Latch::default())], &p, &tree);
        assert_eq!(
            d,
            vec![None, Some(0)],
            "the first DC terminal is the reference"
        );
    }

    #[test]
    fn receive_time_only_terminals_measure_but_get_no_offset() {
        let p = [ports(&[0, 1]), ports(&[0])];
        let tree = attach(&p).unwrap();
        let l0 = Latch {
            ports: [0, 200, 0, 0],
            processing_unit: None,
        };
        let l1 = Latch {
            ports: [100, 0, 0, 0],
            processing_unit: Some(100),
        };
        let d = propagation_delays(&[Some(l0), Some(l1)], &p, &tree);
        // Terminal 1 is the reference clock; terminal 0 precedes it and saturates at 0.
        assert_eq!(d, vec![Some(0), Some(0)]);
        let o = offsets(&[Some(l0), Some(l1)], &d, 5000);
        assert_eq!(o, vec![None, Some(4900)]);
    }
}
