//! `ferrocat slaves`: list the terminals on the bus with address, alias, state, identity
//! and name.

use super::{CliError, Context, TerminalSelector};
use crate::ethercat::master::Terminal;
use serde::Serialize;

/// List the terminals on the bus.
///
/// Scans the bus (assigning station addresses 0x1001, 0x1002, ... or the alias where a
/// terminal has a unique one), reads each terminal's SII and AL status. Changes no state.
///
/// Examples:
///   ferrocat -i eth1 slaves                 table of all terminals
///   ferrocat -i eth1 slaves -p 2            only the terminal at position 2
///   ferrocat -i eth1 slaves --json | jq .name
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Scans the bus (assigning station addresses 0x1001, 0x1002, ... or the alias where a\nterminal has a unique one), reads each terminal's SII and AL status. Changes no state.\n\nExamples:\n  ferrocat -i eth1 slaves                 table of all terminals\n  ferrocat -i eth1 slaves -p 2            only the terminal at position 2\n  ferrocat -i eth1 slaves --json | jq .name"
)]
pub struct Args {
    /// Which terminal (default: all).
    #[command(flatten)]
    pub select: TerminalSelector,
    /// Also show ESC details and where each terminal hangs off (parent position:port).
    #[arg(short = 'l', long)]
    pub long: bool,
}

/// One terminal in `--json` output.
#[derive(Debug, Serialize)]
pub struct SlaveJson<'a> {
    /// Position on the bus.
    pub position: u16,
    /// Configured station address.
    pub station_address: u16,
    /// Station alias.
    pub alias: u16,
    /// Vendor id.
    pub vendor_id: u32,
    /// Product code.
    pub product_code: u32,
    /// Revision number.
    pub revision: u32,
    /// Serial number.
    pub serial: u32,
    /// Device name from the SII, if any.
    pub name: Option<&'a str>,
    /// AL state (INIT, PREOP, BOOT, SAFEOP, OP; "+ERR" when the error flag is set).
    pub state: String,
    /// Position of the terminal this one hangs off, and that terminal's port.
    pub parent: Option<(u16, u8)>,
    /// Whether the ESC supports distributed clocks.
    pub dc: bool,
    /// Why the SII could not be read, if it could not.
    pub sii_error: Option<&'a str>,
}

impl<'a> From<&'a Terminal> for SlaveJson<'a> {
    fn from(t: &'a Terminal) -> SlaveJson<'a> {
        SlaveJson {
            position: t.position,
            station_address: t.station,
            alias: t.alias,
            vendor_id: t.identity.vendor_id,
            product_code: t.identity.product_code,
            revision: t.identity.revision,
            serial: t.identity.serial,
            name: t.name.as_deref(),
            state: t.status.to_string(),
            parent: t.attachment.map(|a| (a.parent, a.port)),
            dc: t.esc.dc(),
            sii_error: t.sii_error.as_deref(),
        }
    }
}

/// Run `ferrocat slaves`.
pub async fn run(args: Args, ctx: &mut Context) -> Result<(), CliError> {
    let json = ctx.json();
    let master = ctx.master().await?;
    let chosen: Vec<Terminal> = args.select.select(master)?.into_iter().cloned().collect();
    let out = ctx.out();
    if json {
        for t in &chosen {
            let line = serde_json::to_string(&SlaveJson::from(t))
                .map_err(|e| CliError::new(super::Exit::Software, e.to_string()))?;
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    write!(
        out,
        "{:<4} {:<6} {:<5} {:<7} {:<10} {:<10} {:<10} {:<10}",
        "POS", "ADDR", "ALIAS", "STATE", "VENDOR", "PRODUCT", "REVISION", "SERIAL"
    )?;
    if args.long {
        write!(out, " {:<7} {:<3} {:<4}", "PARENT", "DC", "PORTS")?;
    }
    writeln!(out, " NAME")?;
    for t in &chosen {
        write!(
            out,
            "{:<4} 0x{:04x} {:<5} {:<7} 0x{:08x} 0x{:08x} 0x{:08x} 0x{:08x}",
            t.position,
            t.station,
            t.alias,
            t.status.to_string(),
            t.identity.vendor_id,
            t.identity.product_code,
            t.identity.revision,
            t.identity.serial,
        )?;
        if args.long {
            let parent = t
                .attachment
                .map(|a| format!("{}:{}", a.parent, a.port))
                .unwrap_or_else(|| "master".into());
            let ports: String = (0..4u8)
                .map(|p| if t.ports.communication(p) { '+' } else { '-' })
                .collect();
            write!(
                out,
                " {:<7} {:<3} {:<4}",
                parent,
                if t.esc.dc() { "yes" } else { "no" },
                ports
            )?;
        }
        let name = match (&t.name, &t.sii_error) {
            (Some(n), _) => n.clone(),
            (None, Some(e)) => format!("(SII unreadable: {e})"),
            (None, None) => "-".into(),
        };
        writeln!(out, " {name}")?;
    }
    Ok(())
}
