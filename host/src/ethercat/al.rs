//! The AL state machine of a terminal: requesting states, waiting, acknowledging errors,
//! decoding AL status codes (ETG.1000.6 §6.4, tables 9–11), and watchdog configuration.
//!
//! Everything here is generic over [`StationIo`], so it runs over the real transport and
//! over in-memory register spaces in tests.

use super::registers::{self, al as bits};
use super::station_io::{RegisterError, StationIo, StationIoExt};
use std::fmt;
use std::time::Duration;

/// An AL state (ETG.1000.6 table 9, AL control bits 0–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum AlState {
    /// INIT: no mailbox, no process data.
    Init = 1,
    /// PRE-OPERATIONAL: mailbox communication.
    PreOp = 2,
    /// BOOTSTRAP: firmware update over FoE.
    Boot = 3,
    /// SAFE-OPERATIONAL: inputs are updated, outputs stay in their safe state.
    SafeOp = 4,
    /// OPERATIONAL: inputs and outputs are exchanged.
    Op = 8,
}

impl AlState {
    /// The state for the low four bits of AL status, if they name one.
    pub fn from_bits(bits: u16) -> Option<AlState> {
        match bits & registers::al::STATE_MASK {
            1 => Some(AlState::Init),
            2 => Some(AlState::PreOp),
            3 => Some(AlState::Boot),
            4 => Some(AlState::SafeOp),
            8 => Some(AlState::Op),
            _ => None,
        }
    }

    /// The name used by the specification and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AlState::Init => "INIT",
            AlState::PreOp => "PREOP",
            AlState::Boot => "BOOT",
            AlState::SafeOp => "SAFEOP",
            AlState::Op => "OP",
        }
    }

    /// Rank on the way up INIT < PREOP < SAFEOP < OP (BOOT ranks with INIT).
    pub fn rank(self) -> u8 {
        match self {
            AlState::Init | AlState::Boot => 0,
            AlState::PreOp => 1,
            AlState::SafeOp => 2,
            AlState::Op => 3,
        }
    }

    /// How long a terminal may take to reach this state, by the ESI defaults of
    /// ETG.2000 (`PreopTimeout` 2 s, `SafeopOpTimeout` 10 s, `BackToInitTimeout` 5 s).
    pub fn default_timeout(self) -> Duration {
        match self {
            AlState::PreOp => Duration::from_secs(2),
            AlState::SafeOp | AlState::Op => Duration::from_secs(10),
            AlState::Init | AlState::Boot => Duration::from_secs(5),
        }
    }
}

impl fmt::Display for AlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AlState {
    type Err = String;
    fn from_str(s: &str) -> Result<AlState, String> {
        match s.to_ascii_uppercase().replace(['-', '_'], "").as_str() {
            "INIT" => Ok(AlState::Init),
            "PREOP" => Ok(AlState::PreOp),
            "BOOT" => Ok(AlState::Boot),
            "SAFEOP" => Ok(AlState::SafeOp),
            "OP" => Ok(AlState::Op),
            _ => Err(format!(
                "unknown AL state {s:?}: expected INIT, PREOP, BOOT, SAFEOP or OP"
            )),
        }
    }
}

/// The AL status register as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlStatus {
    /// The raw register value.
    pub raw: u16,
}

impl AlStatus {
    /// The state, or `None` if the bits name no state.
    pub fn state(self) -> Option<AlState> {
        AlState::from_bits(self.raw)
    }

    /// Whether the error indication (bit 4) is set.
    pub fn error(self) -> bool {
        self.raw & bits::ERROR != 0
    }
}

impl fmt::Display for AlStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state() {
            Some(s) => write!(f, "{s}")?,
            None => write!(f, "0x{:x}", self.raw & bits::STATE_MASK)?,
        }
        if self.error() {
            f.write_str("+ERR")?;
        }
        Ok(())
    }
}

/// An AL status code (register 0x0134) with its meaning from ETG.1000.6 table 11.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlStatusCode(pub u16);

impl AlStatusCode {
    /// The meaning of the code, as in ETG.1000.6 table 11 (and ETG.1020 for the
    /// vendor-independent extensions).
    pub fn text(self) -> &'static str {
        match self.0 {
            0x0000 => "No error",
            0x0001 => "Unspecified error",
            0x0002 => "No memory",
            0x0003 => "Invalid device setup",
            0x0004 => "Invalid revision",
            0x0005 => "Reserved (compatibility)",
            0x0006 => "SII/EEPROM information does not match firmware",
            0x0007 => "Firmware update not successful, old firmware still running",
            0x000E => "License error",
            0x0011 => "Invalid requested state change",
            0x0012 => "Unknown requested state",
            0x0013 => "Bootstrap not supported",
            0x0014 => "No valid firmware",
            0x0015 => "Invalid mailbox configuration (BOOT)",
            0x0016 => "Invalid mailbox configuration (PREOP)",
            0x0017 => "Invalid SyncManager configuration",
            0x0018 => "No valid inputs available",
            0x0019 => "No valid outputs",
            0x001A => "Synchronization error",
            0x001B => "SyncManager watchdog",
            0x001C => "Invalid SyncManager types",
            0x001D => "Invalid output configuration",
            0x001E => "Invalid input configuration",
            0x001F => "Invalid watchdog configuration",
            0x0020 => "Terminal needs cold start",
            0x0021 => "Terminal needs INIT",
            0x0022 => "Terminal needs PREOP",
            0x0023 => "Terminal needs SAFEOP",
            0x0024 => "Invalid input mapping",
            0x0025 => "Invalid output mapping",
            0x0026 => "Inconsistent settings",
            0x0027 => "Free run not supported",
            0x0028 => "Synchronization not supported",
            0x0029 => "Free run needs 3-buffer mode",
            0x002A => "Background watchdog",
            0x002B => "No valid inputs and outputs",
            0x002C => "Fatal sync error",
            0x002D => "No sync error (SYNC signal not received)",
            0x002E => "Cycle time too small",
            0x0030 => "Invalid DC SYNC configuration",
            0x0031 => "Invalid DC latch configuration",
            0x0032 => "PLL error",
            0x0033 => "DC sync I/O error",
            0x0034 => "DC sync timeout",
            0x0035 => "DC invalid sync cycle time",
            0x0036 => "DC invalid SYNC0 cycle time",
            0x0037 => "DC invalid SYNC1 cycle time",
            0x0041 => "Mailbox AoE error",
            0x0042 => "Mailbox EoE error",
            0x0043 => "Mailbox CoE error",
            0x0044 => "Mailbox FoE error",
            0x0045 => "Mailbox SoE error",
            0x004F => "Mailbox VoE error",
            0x0050 => "EEPROM no access",
            0x0051 => "EEPROM error",
            0x0052 => "External hardware not ready",
            0x0060 => "Terminal restarted locally",
            0x0061 => "Device identification value updated",
            0x0070 => "Detected module ident list does not match",
            0x00F0 => "Application controller available",
            0x8000..=0xFFFF => "Vendor-specific error",
            _ => "Reserved code",
        }
    }
}

impl fmt::Display for AlStatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x} ({})", self.0, self.text())
    }
}

/// Why a state change failed.
#[derive(Debug, thiserror::Error)]
pub enum AlError {
    /// The terminal refused the state and set its error indication.
    #[error(
        "terminal 0x{station:04x} refused {requested}: it is in {status} with AL status code {code}"
    )]
    Refused {
        /// Station address.
        station: u16,
        /// The state requested.
        requested: AlState,
        /// Its AL status when it refused.
        status: AlStatus,
        /// Its AL status code.
        code: AlStatusCode,
    },
    /// The terminal did not reach the state in time.
    #[error(
        "terminal 0x{station:04x} did not reach {requested} within {waited:?}: still in {status}"
    )]
    Timeout {
        /// Station address.
        station: u16,
        /// The state requested.
        requested: AlState,
        /// Its last AL status.
        status: AlStatus,
        /// How long we waited.
        waited: Duration,
    },
    /// The terminal reported a state the master cannot leave in the required direction.
    #[error("terminal 0x{station:04x}: AL status 0x{raw:04x} names no state")]
    UnknownState {
        /// Station address.
        station: u16,
        /// The raw AL status.
        raw: u16,
    },
    /// A register access failed.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// The watchdog asked for does not fit its register.
    #[error(transparent)]
    WatchdogTooLong(#[from] WatchdogTooLong),
}

/// How often AL status is polled while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Read AL status of terminal `station`.
pub async fn status<S: StationIo>(io: &S, station: u16) -> Result<AlStatus, RegisterError> {
    Ok(AlStatus {
        raw: io.read_u16(station, registers::AL_STATUS).await?,
    })
}

/// Read AL status code of terminal `station`.
pub async fn status_code<S: StationIo>(
    io: &S,
    station: u16,
) -> Result<AlStatusCode, RegisterError> {
    Ok(AlStatusCode(
        io.read_u16(station, registers::AL_STATUS_CODE).await?,
    ))
}

/// Acknowledge a terminal's error indication by writing its current state with the
/// acknowledge bit (ETG.1000.6 §6.4.1.1).
pub async fn acknowledge<S: StationIo>(
    io: &S,
    station: u16,
    status: AlStatus,
) -> Result<(), RegisterError> {
    let state = status.raw & bits::STATE_MASK;
    io.write_u16(station, registers::AL_CONTROL, state | bits::ERROR)
        .await
}

/// Request one state (a single transition) and wait until the terminal is in it, the
/// terminal refuses (the error is acknowledged, the code returned in the error), or
/// `timeout` passes.
pub async fn request<S: StationIo>(
    io: &S,
    station: u16,
    target: AlState,
    timeout: Duration,
) -> Result<(), AlError> {
    let span =
        tracing::debug_span!("al_request", station = format_args!("0x{station:04x}"), %target);
    let _enter = span.enter();
    io.write_u16(station, registers::AL_CONTROL, target as u16)
        .await?;
    let start = tokio::time::Instant::now();
    loop {
        let st = status(io, station).await?;
        if st.error() {
            let code = status_code(io, station).await?;
            tracing::warn!(%st, %code, "terminal refused the state");
            acknowledge(io, station, st).await?;
            return Err(AlError::Refused {
                station,
                requested: target,
                status: st,
                code,
            });
        }
        if st.state() == Some(target) {
            tracing::debug!("state reached");
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(AlError::Timeout {
                station,
                requested: target,
                status: st,
                waited,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The single transitions that lead from `from` to `to` (ETG.1000.6 figure 16): up one
/// state at a time, down in one step, BOOT only through INIT.
pub fn path(from: AlState, to: AlState) -> Vec<AlState> {
    use AlState::*;
    if from == to {
        return vec![];
    }
    if to == Boot {
        return if from == Init {
            vec![Boot]
        } else {
            vec![Init, Boot]
        };
    }
    if from == Boot {
        let mut p = vec![Init];
        p.extend(path(Init, to));
        return p;
    }
    if to.rank() < from.rank() {
        return vec![to];
    }
    [PreOp, SafeOp, Op]
        .into_iter()
        .filter(|s| s.rank() > from.rank() && s.rank() <= to.rank())
        .collect()
}

/// Bring terminal `station` from whatever state it is in to `target`, one allowed
/// transition at a time, with each state's default timeout. A pending error indication
/// is acknowledged first.
pub async fn transition<S: StationIo>(
    io: &S,
    station: u16,
    target: AlState,
) -> Result<(), AlError> {
    let st = status(io, station).await?;
    if st.error() {
        acknowledge(io, station, st).await?;
    }
    let from = st.state().ok_or(AlError::UnknownState {
        station,
        raw: st.raw,
    })?;
    for step in path(from, target) {
        request(io, station, step, step.default_timeout()).await?;
    }
    Ok(())
}

/// The watchdog divider ferrocat writes: units of (2498 + 2) × 40 ns = 100 µs
/// (ETG.1000.4 table 44; the ETG.2000 ESI default).
pub const WATCHDOG_DIVIDER_100US: u16 = 2498;

/// The longest process-data watchdog in [`WATCHDOG_DIVIDER_100US`] units: 65535 × 100 µs.
pub const MAX_WATCHDOG: Duration = Duration::from_nanos(
    u16::MAX as u64 * (WATCHDOG_DIVIDER_100US as u64 + 2) * registers::WATCHDOG_BASE_NS,
);

/// A process-data watchdog longer than its 16-bit register holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a SyncManager watchdog of {time:?} is longer than the registers hold: at most {MAX_WATCHDOG:?} (65535 units of 100 µs)"
)]
pub struct WatchdogTooLong {
    /// The time asked for.
    pub time: Duration,
}

/// Register values for a process-data watchdog of `time`: (divider, watchdog time).
/// The watchdog unit is (divider + 2) × 40 ns (ETG.1000.4 table 44); the divider
/// [`WATCHDOG_DIVIDER_100US`] gives 100 µs units, a time between them is rounded up. Times
/// beyond [`MAX_WATCHDOG`] are refused (the divider also scales the PDI watchdog, so
/// it is not changed to reach further).
pub fn watchdog_registers(time: Duration) -> Result<(u16, u16), WatchdogTooLong> {
    let unit_ns = (u64::from(WATCHDOG_DIVIDER_100US) + 2) * registers::WATCHDOG_BASE_NS;
    let units = time.as_nanos().div_ceil(u128::from(unit_ns));
    let units = u16::try_from(units).map_err(|_| WatchdogTooLong { time })?;
    Ok((WATCHDOG_DIVIDER_100US, units))
}

/// Configure the process-data (SyncManager) watchdog of terminal `station` to `time`;
/// `Duration::ZERO` disables it. A time beyond [`MAX_WATCHDOG`] is refused before
/// anything is written.
pub async fn configure_watchdog<S: StationIo>(
    io: &S,
    station: u16,
    time: Duration,
) -> Result<(), AlError> {
    let (divider, units) = watchdog_registers(time)?;
    io.write_u16(station, registers::WATCHDOG_DIVIDER, divider)
        .await?;
    io.write_u16(station, registers::WATCHDOG_TIME_PROCESS_DATA, units)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethercat::station_io::fake::{FakeStation, Hooks};

    /// A terminal that follows AL control, refusing OP with 0x0019 unless `outputs_ok`.
    struct AlTerminal {
        outputs_ok: bool,
        refuse_silently: bool,
    }
    impl Hooks for AlTerminal {
        fn after_write(&mut self, regs: &mut [u8], register: u16, _len: usize) {
            if register != registers::AL_CONTROL {
                return;
            }
            let ctl = u16::from_le_bytes([regs[0x120], regs[0x121]]);
            let cur = u16::from_le_bytes([regs[0x130], regs[0x131]]);
            if ctl & bits::ERROR != 0 {
                // Acknowledge: clear the error indication.
                let v = cur & !bits::ERROR;
                regs[0x130..0x132].copy_from_slice(&v.to_le_bytes());
                return;
            }
            if self.refuse_silently {
                return;
            }
            let (state, code) = if ctl == 8 && !self.outputs_ok {
                (cur & 0xF | bits::ERROR, 0x0019u16)
            } else {
                (ctl & 0xF, 0)
            };
            regs[0x130..0x132].copy_from_slice(&state.to_le_bytes());
            regs[0x134..0x136].copy_from_slice(&code.to_le_bytes());
        }
        fn before_read(&mut self, _: &mut [u8], _: u16, _: usize) {}
    }

    fn terminal(outputs_ok: bool, refuse_silently: bool) -> FakeStation<AlTerminal> {
        let t = FakeStation::new(
            0x1001,
            AlTerminal {
                outputs_ok,
                refuse_silently,
            },
        );
        t.with(|regs, _| regs[0x130] = 1);
        t
    }

    #[test]
    fn paths_follow_the_state_diagram() {
        use AlState::*;
        assert_eq!(path(Init, Op), vec![PreOp, SafeOp, Op]);
        assert_eq!(path(PreOp, SafeOp), vec![SafeOp]);
        assert_eq!(path(Op, Init), vec![Init]);
        assert_eq!(path(Op, PreOp), vec![PreOp]);
        assert_eq!(path(SafeOp, Boot), vec![Init, Boot]);
        assert_eq!(path(Boot, PreOp), vec![Init, PreOp]);
        assert_eq!(path(Op, Op), vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn walks_up_to_op() {
        let t = terminal(true, false);
        transition(&t, 0x1001, AlState::Op).await.unwrap();
        assert_eq!(status(&t, 0x1001).await.unwrap().state(), Some(AlState::Op));
        transition(&t, 0x1001, AlState::Init).await.unwrap();
        assert_eq!(
            status(&t, 0x1001).await.unwrap().state(),
            Some(AlState::Init)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refusal_names_the_code_and_is_acknowledged() {
        let t = terminal(false, false);
        let err = transition(&t, 0x1001, AlState::Op).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "terminal 0x1001 refused OP: it is in SAFEOP+ERR with AL status code 0x0019 (No valid outputs)"
        );
        let st = status(&t, 0x1001).await.unwrap();
        assert!(!st.error(), "error indication acknowledged");
        assert_eq!(st.state(), Some(AlState::SafeOp));
    }

    #[tokio::test(start_paused = true)]
    async fn silent_terminal_times_out() {
        let t = terminal(true, true);
        let err = request(&t, 0x1001, AlState::PreOp, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AlError::Timeout { requested: AlState::PreOp, status, .. } if status.state() == Some(AlState::Init)),
            "{err}"
        );
    }

    #[test]
    fn status_codes_decode() {
        assert_eq!(
            AlStatusCode(0x001B).to_string(),
            "0x001b (SyncManager watchdog)"
        );
        assert_eq!(AlStatusCode(0x0036).text(), "DC invalid SYNC0 cycle time");
        assert_eq!(AlStatusCode(0x9001).text(), "Vendor-specific error");
        assert_eq!(AlStatusCode(0x0008).text(), "Reserved code");
    }

    #[test]
    fn watchdog_units_are_100us() {
        assert_eq!(
            watchdog_registers(Duration::from_millis(100)),
            Ok((2498, 1000))
        );
        assert_eq!(watchdog_registers(Duration::ZERO), Ok((2498, 0)));
        assert_eq!(
            watchdog_registers(Duration::from_micros(150)),
            Ok((2498, 2)),
            "rounded up"
        );
        // 6.5535 s is the most the register holds; beyond it is refused, not capped.
        assert_eq!(MAX_WATCHDOG, Duration::from_micros(6_553_500));
        assert_eq!(watchdog_registers(MAX_WATCHDOG), Ok((2498, u16::MAX)));
        let e = watchdog_registers(MAX_WATCHDOG + Duration::from_nanos(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a SyncManager watchdog of 6.553500001s is longer than the registers hold: at most 6.5535s (65535 units of 100 µs)"
        );
        assert!(watchdog_registers(Duration::from_secs(100)).is_err());
    }

    #[test]
    fn states_parse_from_user_text() {
        assert_eq!("safe-op".parse::<AlState>(), Ok(AlState::SafeOp));
        assert_eq!("PREOP".parse::<AlState>(), Ok(AlState::PreOp));
        assert!("run".parse::<AlState>().is_err());
    }
}
