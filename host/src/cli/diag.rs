//! `ferrocat diag`: ESC error counters (0x0300–0x0313) and DL status per port.

use super::{CliError, Context, TerminalSelector};
use crate::ethercat::registers;
use crate::ethercat::topology::Ports;
use serde::Serialize;

/// Show ESC error counters and the state of every port.
///
/// Per port: physical link, loop (closed: frames turn around here), communication
/// established, and the counters for invalid frames, RX errors, forwarded RX errors and
/// lost links. Per terminal: processing-unit and PDI error counters. Counters saturate
/// at 255; `--clear` resets them (any write to 0x0300 clears them, ETG.1000.4 table 39).
///
/// Examples:
///   ferrocat -i eth1 diag              every terminal
///   ferrocat -i eth1 diag -p 4 --json  one terminal, machine-readable
///   ferrocat -i eth1 diag --clear      read, then reset the counters
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Per port: physical link, loop (closed: frames turn around here), communication\nestablished, and the counters for invalid frames, RX errors, forwarded RX errors and\nlost links. Per terminal: processing-unit and PDI error counters. Counters saturate\nat 255; `--clear` resets them (any write to 0x0300 clears them, ETG.1000.4 table 39).\n\nExamples:\n  ferrocat -i eth1 diag              every terminal\n  ferrocat -i eth1 diag -p 4 --json  one terminal, machine-readable\n  ferrocat -i eth1 diag --clear      read, then reset the counters"
)]
pub struct Args {
    /// Which terminal (default: all).
    #[command(flatten)]
    pub select: TerminalSelector,
    /// Reset the error counters after reading them.
    #[arg(long)]
    pub clear: bool,
}

/// Diagnosis of one port.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PortDiag {
    /// Port number 0..3.
    pub port: u8,
    /// Physical link detected.
    pub link: bool,
    /// Port closed (looped back).
    pub loop_closed: bool,
    /// Communication established.
    pub communication: bool,
    /// Invalid frame counter (0x0300 + 2 × port).
    pub invalid_frames: u8,
    /// RX error counter (0x0301 + 2 × port).
    pub rx_errors: u8,
    /// Forwarded RX error counter (0x0308 + port).
    pub forwarded_errors: u8,
    /// Lost link counter (0x0310 + port).
    pub lost_links: u8,
}

/// Diagnosis of one terminal.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TerminalDiag {
    /// Position.
    pub position: u16,
    /// Station address.
    pub station_address: u16,
    /// DL status register.
    pub dl_status: u16,
    /// ECAT processing unit error counter (0x030C).
    pub processing_unit_errors: u8,
    /// PDI error counter (0x030D).
    pub pdi_errors: u8,
    /// The four ports.
    pub ports: Vec<PortDiag>,
}

/// Decode DL status and the counter block 0x0300..=0x0313.
pub fn decode(position: u16, station: u16, dl_status: u16, c: &[u8]) -> TerminalDiag {
    let at = |i: usize| c.get(i).copied().unwrap_or(0);
    let ports = Ports { dl_status };
    TerminalDiag {
        position,
        station_address: station,
        dl_status,
        processing_unit_errors: at(0x0C),
        pdi_errors: at(0x0D),
        ports: (0..4u8)
            .map(|p| PortDiag {
                port: p,
                link: ports.link(p),
                loop_closed: ports.loop_closed(p),
                communication: ports.communication(p),
                invalid_frames: at(2 * usize::from(p)),
                rx_errors: at(2 * usize::from(p) + 1),
                forwarded_errors: at(0x08 + usize::from(p)),
                lost_links: at(0x10 + usize::from(p)),
            })
            .collect(),
    }
}

/// Run `ferrocat diag`.
pub async fn run(args: Args, ctx: &mut Context) -> Result<(), CliError> {
    let json = ctx.json();
    let master = ctx.master_without_sii().await?;
    let targets = args.select.addresses(master)?;
    let transport = master.transport().clone();
    let mut diags = Vec::new();
    for (position, station) in targets {
        let dl = transport.fprd(station, registers::DL_STATUS, 2).await?;
        let counters = transport
            .fprd(
                station,
                registers::RX_ERROR_COUNTER,
                registers::ERROR_COUNTERS_LEN,
            )
            .await?;
        diags.push(decode(
            position,
            station,
            u16::from_le_bytes([dl[0], dl[1]]),
            &counters,
        ));
        if args.clear {
            transport
                .fpwr(station, registers::RX_ERROR_COUNTER, &[0])
                .await?;
        }
    }
    let out = ctx.out();
    if json {
        for d in &diags {
            let line = serde_json::to_string(d)
                .map_err(|e| CliError::new(super::Exit::Software, e.to_string()))?;
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<4} {:<6} {:<4} {:<4} {:<6} {:<4} {:>7} {:>6} {:>7} {:>9}",
        "POS", "ADDR", "PORT", "LINK", "LOOP", "COMM", "INVALID", "RX_ERR", "FWD_ERR", "LOST_LINK"
    )?;
    for d in &diags {
        for p in &d.ports {
            writeln!(
                out,
                "{:<4} 0x{:04x} {:<4} {:<4} {:<6} {:<4} {:>7} {:>6} {:>7} {:>9}",
                d.position,
                d.station_address,
                p.port,
                if p.link { "up" } else { "down" },
                if p.loop_closed { "closed" } else { "open" },
                if p.communication { "yes" } else { "no" },
                p.invalid_frames,
                p.rx_errors,
                p.forwarded_errors,
                p.lost_links
            )?;
        }
        writeln!(
            out,
            "{:<4} 0x{:04x} processing unit errors {}, PDI errors {}",
            d.position, d.station_address, d.processing_unit_errors, d.pdi_errors
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_land_on_their_ports() {
        let mut c = [0u8; 0x14];
        c[2] = 5; // port 1 invalid frames
        c[3] = 6; // port 1 RX errors
        c[0x09] = 7; // port 1 forwarded
        c[0x0C] = 8;
        c[0x0D] = 9;
        c[0x11] = 10; // port 1 lost links
        // Port 0 and 1 link + communication, 2 and 3 closed.
        let dl = 0x0010 | 0x0020 | 0x0200 | 0x0800 | 0x1000 | 0x4000;
        let d = decode(1, 0x1002, dl, &c);
        assert_eq!(d.processing_unit_errors, 8);
        assert_eq!(d.pdi_errors, 9);
        let p1 = &d.ports[1];
        assert!(p1.link && p1.communication && !p1.loop_closed);
        assert_eq!(
            (
                p1.invalid_frames,
                p1.rx_errors,
                p1.forwarded_errors,
                p1.lost_links
            ),
            (5, 6, 7, 10)
        );
        assert!(d.ports[2].loop_closed && !d.ports[2].link);
    }
}
