//! `ferrocat capture`: bring the bus up (to a chosen state) while recording every frame
//! this process sends and receives as pcapng.

use super::states::BringUpArgs;
use super::{CliError, Context};
use crate::ethercat::al::AlState;
use std::path::PathBuf;

/// Record the bus traffic of a bring-up as pcapng, for Wireshark or tshark.
///
/// Scans the bus (SII included), optionally sets up distributed clocks and requests a
/// state (with the bring-up options of `states`), capturing every frame this process
/// sends and every reply it receives. --watchdog and --no-dc need --state; --dc-cycle,
/// --dc-mode and --dc-drift-frames need --state or --dc.
/// (Frames bounced in the kernel by ferrocat's cyclic XDP programs never reach a
/// socket; they are not in this capture.) To capture any other subcommand, pass the
/// global `--capture FILE` option to it instead.
///
/// Examples:
///   ferrocat -i eth1 capture -o scan.pcapng                scan only
///   ferrocat -i eth1 capture -o up.pcapng --state PREOP --dc
///   tshark -r up.pcapng -Y ecat
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Scans the bus (SII included), optionally sets up distributed clocks and requests a\nstate (with the bring-up options of `states`), capturing every frame this process\nsends and every reply it receives. --watchdog and --no-dc need --state; --dc-cycle,\n--dc-mode and --dc-drift-frames need --state or --dc.\n(Frames bounced in the kernel by ferrocat's cyclic XDP programs never reach a\nsocket; they are not in this capture.) To capture any other subcommand, pass the\nglobal `--capture FILE` option to it instead.\n\nExamples:\n  ferrocat -i eth1 capture -o scan.pcapng                scan only\n  ferrocat -i eth1 capture -o up.pcapng --state PREOP --dc\n  tshark -r up.pcapng -Y ecat"
)]
#[command(group(clap::ArgGroup::new("state_or_dc").args(["state", "dc"]).multiple(true)))]
#[command(group(
    clap::ArgGroup::new("bring_up_only")
        .args(["watchdog", "no_dc"])
        .multiple(true)
        .requires("state")
))]
#[command(group(
    clap::ArgGroup::new("dc_setup")
        .args(["dc_cycle", "dc_mode", "dc_drift_frames"])
        .multiple(true)
        .requires("state_or_dc")
))]
pub struct Args {
    /// The pcapng file to write.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
    /// The state to bring all terminals to (default: leave states alone).
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub state: Option<AlState>,
    /// Set up distributed clocks (delays, offsets, drift compensation, SYNC signals with
    /// --dc-cycle) right after the scan, whatever state is requested.
    #[arg(long, conflicts_with = "no_dc")]
    pub dc: bool,
    /// What bring-up sets up on the way to SAFEOP.
    #[command(flatten)]
    pub bring_up: BringUpArgs,
}

fn parse_state(s: &str) -> Result<AlState, String> {
    s.parse()
}

/// Run `ferrocat capture`.
pub async fn run(args: Args, ctx: &mut Context) -> Result<(), CliError> {
    ctx.capture_to(&args.output)?;
    let master = ctx.master().await?;
    let mut bring_up = args.bring_up.options();
    if args.dc {
        if let Some(dc) = bring_up.dc.take() {
            master.configure_dc(&dc).await?;
        }
    }
    master.set_bring_up_options(bring_up);
    if let Some(state) = args.state {
        master.request_state(state, None).await?;
    }
    let terminals = master.terminals().len();
    let frames = ctx.captured_frames();
    ctx.finish_capture()?;
    writeln!(
        ctx.out(),
        "{frames} frames from {terminals} terminals written to {}",
        args.output.display()
    )?;
    Ok(())
}
