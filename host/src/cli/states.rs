//! `ferrocat states`: request an AL state of all terminals or of one.

use super::{CliError, Context, TerminalSelector};
use crate::ethercat::al::{self, AlState};

/// Request an AL state (INIT, PREOP, BOOT, SAFEOP, OP).
///
/// Terminals are walked through the allowed transitions one at a time (INIT → PREOP →
/// SAFEOP → OP; down in one step; BOOT only through INIT), each with the ESI default
/// timeout. A refusal prints the terminal's AL status code and its meaning.
///
/// Examples:
///   ferrocat -i eth1 states PREOP           all terminals to PRE-OP
///   ferrocat -i eth1 states -p 3 INIT       only the terminal at position 3
///   ferrocat -i eth1 states BOOT -s 0x1002  firmware update mode (via INIT)
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Terminals are walked through the allowed transitions one at a time (INIT → PREOP →\nSAFEOP → OP; down in one step; BOOT only through INIT), each with the ESI default\ntimeout. A refusal prints the terminal's AL status code and its meaning.\n\nExamples:\n  ferrocat -i eth1 states PREOP           all terminals to PRE-OP\n  ferrocat -i eth1 states -p 3 INIT       only the terminal at position 3\n  ferrocat -i eth1 states BOOT -s 0x1002  firmware update mode (via INIT)"
)]
pub struct Args {
    /// Which terminal (default: all).
    #[command(flatten)]
    pub select: TerminalSelector,
    /// The state to reach.
    #[arg(value_name = "STATE", value_parser = parse_state)]
    pub state: AlState,
}

fn parse_state(s: &str) -> Result<AlState, String> {
    s.parse()
}

/// Run `ferrocat states`.
pub async fn run(args: Args, ctx: &mut Context) -> Result<(), CliError> {
    let json = ctx.json();
    let master = ctx.master().await?;
    if args.select.is_set() {
        let stations: Vec<u16> = args
            .select
            .select(master)?
            .iter()
            .map(|t| t.station)
            .collect();
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
