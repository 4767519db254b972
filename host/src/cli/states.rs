//! `ferrocat states`: request an AL state of all terminals or of one, with the bring-up
//! options (distributed clocks, SYNC signals, watchdog) that `capture` shares.

use super::{CliError, Context, TerminalSelector};
use crate::ethercat::al::{self, AlState};
use crate::ethercat::dc::DcModeSelection;
use crate::ethercat::master::{BringUpOptions, DEFAULT_WATCHDOG, DcOptions};
use std::time::Duration;

/// Request an AL state (INIT, PREOP, BOOT, SAFEOP, OP).
///
/// Terminals are walked through the allowed transitions one at a time (INIT → PREOP →
/// SAFEOP → OP; down in one step; BOOT only through INIT), each with the ESI default
/// timeout. A refusal prints the terminal's AL status code and its meaning.
///
/// On the way to SAFEOP (all terminals together) the process data, the SyncManager
/// watchdogs and distributed clocks are set up; with --dc-cycle the SYNC0/SYNC1 signals
/// of every terminal follow the DC mode its SII describes (the first mode that starts
/// SYNC0 unless --dc-mode chooses another). With -p/-s/-a only that terminal changes
/// state and nothing is set up, so the bring-up options are refused with them.
///
/// Examples:
///   ferrocat -i eth1 states PREOP           all terminals to PRE-OP
///   ferrocat -i eth1 states OP --dc-cycle 1ms   OP with SYNC signals every millisecond
///   ferrocat -i eth1 states OP --dc-cycle 1ms --dc-mode 3=DcSync2   terminal 3 oversamples
///   ferrocat -i eth1 states OP --no-dc --watchdog 0   no DC, watchdogs off
///   ferrocat -i eth1 states -p 3 INIT       only the terminal at position 3
///   ferrocat -i eth1 states BOOT -s 0x1002  firmware update mode (via INIT)
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Terminals are walked through the allowed transitions one at a time (INIT → PREOP →\nSAFEOP → OP; down in one step; BOOT only through INIT), each with the ESI default\ntimeout. A refusal prints the terminal's AL status code and its meaning.\n\nOn the way to SAFEOP (all terminals together) the process data, the SyncManager\nwatchdogs and distributed clocks are set up; with --dc-cycle the SYNC0/SYNC1 signals\nof every terminal follow the DC mode its SII describes (the first mode that starts\nSYNC0 unless --dc-mode chooses another). With -p/-s/-a only that terminal changes\nstate and nothing is set up, so the bring-up options are refused with them.\n\nExamples:\n  ferrocat -i eth1 states PREOP           all terminals to PRE-OP\n  ferrocat -i eth1 states OP --dc-cycle 1ms   OP with SYNC signals every millisecond\n  ferrocat -i eth1 states OP --dc-cycle 1ms --dc-mode 3=DcSync2   terminal 3 oversamples\n  ferrocat -i eth1 states OP --no-dc --watchdog 0   no DC, watchdogs off\n  ferrocat -i eth1 states -p 3 INIT       only the terminal at position 3\n  ferrocat -i eth1 states BOOT -s 0x1002  firmware update mode (via INIT)"
)]
#[command(group(
    clap::ArgGroup::new("one_terminal")
        .args(["position", "station", "alias"])
        .multiple(true)
        .conflicts_with("BringUpArgs")
))]
pub struct Args {
    /// Which terminal (default: all).
    #[command(flatten)]
    pub select: TerminalSelector,
    /// The state to reach.
    #[arg(value_name = "STATE", value_parser = parse_state)]
    pub state: AlState,
    /// What bring-up sets up on the way to SAFEOP.
    #[command(flatten)]
    pub bring_up: BringUpArgs,
}

/// Options of bring-up to SAFE-OP: distributed clocks, SYNC signals, watchdog.
#[derive(Debug, Clone, clap::Args)]
pub struct BringUpArgs {
    /// Do not set up distributed clocks on the way to SAFEOP.
    #[arg(long, conflicts_with_all = ["dc_cycle", "dc_mode", "dc_drift_frames"])]
    pub no_dc: bool,
    /// Bus cycle for the SYNC signals (e.g. 1ms, 250us, 1000000 = ns): configures SYNC0
    /// (and SYNC1) of every terminal whose SII lists DC modes.
    #[arg(long, value_name = "TIME", value_parser = parse_ns)]
    pub dc_cycle: Option<Duration>,
    /// DC mode of the terminals: MODE (every terminal that has it) or POS=MODE; MODE is
    /// a name from the SII (see `ferrocat sii`), its number (0 = first), auto or off.
    /// May be repeated; POS=MODE wins over MODE; needs --dc-cycle.
    #[arg(long, value_name = "[POS=]MODE", requires = "dc_cycle")]
    pub dc_mode: Vec<DcModeSelection>,
    /// Frames of static drift compensation.
    #[arg(long, value_name = "N", default_value_t = DcOptions::default().drift_frames)]
    pub dc_drift_frames: usize,
    /// SyncManager watchdog of every terminal, written on the way to SAFEOP (e.g. 100ms,
    /// 0 = off, at most 6.5535s; a bare number is milliseconds).
    #[arg(long, value_name = "TIME", value_parser = parse_watchdog, default_value_t = WatchdogTime(DEFAULT_WATCHDOG))]
    pub watchdog: WatchdogTime,
}

impl BringUpArgs {
    /// The distributed-clock options, `None` with `--no-dc`.
    pub fn dc(&self) -> Option<DcOptions> {
        (!self.no_dc).then(|| DcOptions {
            drift_frames: self.dc_drift_frames,
            sync_cycle: self.dc_cycle,
            modes: self.dc_mode.clone(),
        })
    }

    /// The options for [`crate::ethercat::master::Master::set_bring_up_options`].
    pub fn options(&self) -> BringUpOptions {
        BringUpOptions {
            dc: self.dc(),
            watchdog: Some(self.watchdog.0),
        }
    }
}

/// A SyncManager watchdog time as the command line writes it (`100ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogTime(pub Duration);

impl std::fmt::Display for WatchdogTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = self.0.as_nanos();
        match ns {
            0 => f.write_str("0"),
            n if n % 1_000_000 == 0 => write!(f, "{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => write!(f, "{}us", n / 1_000),
            n => write!(f, "{n}ns"),
        }
    }
}

fn parse_state(s: &str) -> Result<AlState, String> {
    s.parse()
}

/// A duration with an optional unit (ns, us, ms, s); a bare number is in `unit_ns`.
fn parse_duration(s: &str, unit_ns: u64) -> Result<Duration, String> {
    let t = s.trim().replace('_', "");
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let scale = match unit {
        "" => unit_ns,
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ns, us, ms, s)")),
    };
    let n: u64 = number
        .parse()
        .map_err(|e| format!("{s:?} is not a time (a number with ns, us, ms or s): {e}"))?;
    n.checked_mul(scale)
        .map(Duration::from_nanos)
        .ok_or_else(|| format!("{s} is too long"))
}

fn parse_ns(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s, 1)?;
    if d.is_zero() {
        return Err("a bus cycle of 0".into());
    }
    Ok(d)
}

fn parse_ms(s: &str) -> Result<Duration, String> {
    parse_duration(s, 1_000_000)
}

/// A watchdog time (a bare number is milliseconds) that its register holds.
fn parse_watchdog(s: &str) -> Result<WatchdogTime, String> {
    let time = parse_ms(s)?;
    al::watchdog_registers(time).map_err(|e| e.to_string())?;
    Ok(WatchdogTime(time))
}

/// Run `ferrocat states`.
pub async fn run(args: Args, ctx: &mut Context) -> Result<(), CliError> {
    let json = ctx.json();
    let master = ctx.master().await?;
    master.set_bring_up_options(args.bring_up.options());
    if args.select.is_set() {
        let stations: Vec<u16> = args
            .select
            .select(master)?
            .iter()
            .map(|t| t.station)
            .collect();
        if args.state == AlState::Boot {
            master.check_boot_offered(&stations)?;
        }
        for &station in &stations {
            let from = al::status(master.transport(), station).await?;
            for step in al::path(from.state().unwrap_or(AlState::Init), args.state) {
                if matches!(step, AlState::PreOp | AlState::Boot) {
                    master.configure_mailboxes_of(step, &[station]).await?;
                }
                al::request(master.transport(), station, step, step.default_timeout()).await?;
            }
        }
        master.refresh_status().await?;
    } else {
        master.request_state(args.state, None).await?;
    }
    let rows: Vec<(u16, u16, String)> = args
        .select
        .select(master)?
        .iter()
        .map(|t| (t.position, t.station, t.status.to_string()))
        .collect();
    let out = ctx.out();
    for (position, station, state) in rows {
        if json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"position": position, "station_address": station, "state": state})
            )?;
        } else {
            writeln!(out, "{position:<4} 0x{station:04x} {state}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_take_units() {
        assert_eq!(parse_ns("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_ns("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_ns("1000000"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_ms("100"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_ms("0"), Ok(Duration::ZERO));
        assert!(parse_ns("0").is_err());
        assert!(parse_ns("1h").is_err());
        assert!(parse_ns("ms").is_err());
    }

    #[test]
    fn watchdogs_longer_than_the_register_are_refused() {
        assert_eq!(
            parse_watchdog("6553500us"),
            Ok(WatchdogTime(al::MAX_WATCHDOG))
        );
        assert_eq!(
            parse_watchdog("7s"),
            Err("a SyncManager watchdog of 7s is longer than the registers hold: at most 6.5535s (65535 units of 100 µs)".into())
        );
        // The default shown in --help is the library's and reads back as it.
        let shown = WatchdogTime(DEFAULT_WATCHDOG).to_string();
        assert_eq!(shown, "100ms");
        assert_eq!(parse_watchdog(&shown), Ok(WatchdogTime(DEFAULT_WATCHDOG)));
        assert_eq!(
            WatchdogTime(Duration::from_micros(250)).to_string(),
            "250us"
        );
        assert_eq!(WatchdogTime(Duration::ZERO).to_string(), "0");
    }
}
