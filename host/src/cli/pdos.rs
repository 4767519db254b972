//! `ferrocat pdos`: the PDO assignment and mapping of terminals, per SyncManager, read
//! over CoE or from the SII.

use super::transfer::coe_for;
use super::{CliError, Context, Exit, TerminalSelector};
use crate::ethercat::coe::datatype::data_type_name;
use crate::ethercat::master::Terminal;
use crate::ethercat::pdo::{LayoutSource, PdoLayout, read_layout};
use crate::ethercat::sii::PdoDirection;
use std::io::Write;

/// Show which PDOs each process-data SyncManager carries and what they map.
///
/// Terminals with CoE are asked over CoE (objects 0x1C12/0x1C13 and 0x16xx/0x1Axx; the
/// bus is brought to PRE-OP if they are in INIT); terminals without CoE, or without
/// those objects, are described from their SII. --sii uses the SII for all.
///
/// Examples:
///   ferrocat -i eth1 pdos                 every terminal
///   ferrocat -i eth1 pdos -p 6            the terminal at position 6
///   ferrocat -i eth1 pdos --sii --json    SII defaults, one JSON object per terminal
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_long_help = "Show which PDOs each process-data SyncManager carries and what they map.\n\nTerminals with CoE are asked over CoE (objects 0x1C12/0x1C13 and 0x16xx/0x1Axx; the\nbus is brought to PRE-OP if they are in INIT); terminals without CoE, or without\nthose objects, are described from their SII. --sii uses the SII for all.\n\nExamples:\n  ferrocat -i eth1 pdos                 every terminal\n  ferrocat -i eth1 pdos -p 6            the terminal at position 6\n  ferrocat -i eth1 pdos --sii --json    SII defaults, one JSON object per terminal"
)]
pub struct Args {
    /// Which terminal (default: all).
    #[command(flatten)]
    pub select: TerminalSelector,
    /// Use the SII's PDO descriptions even where CoE is available (no state change).
    #[arg(long)]
    pub sii: bool,
}

/// Run `ferrocat pdos`.
pub async fn run(args: Args, ctx: &mut Context) -> Result<(), CliError> {
    let json = ctx.json();
    let master = ctx.master().await?;
    let chosen: Vec<Terminal> = args.select.select(master)?.into_iter().cloned().collect();
    let mut results = Vec::new();
    for t in &chosen {
        let label = format!("terminal {} (0x{:04x})", t.position, t.station);
        let Some(sii) = &t.sii else {
            results.push((
                t.clone(),
                Err(CliError::new(
                    Exit::Unavailable,
                    format!(
                        "{label}: SII unreadable ({})",
                        t.sii_error.as_deref().unwrap_or("not read")
                    ),
                )),
            ));
            continue;
        };
        let uses_coe = !args.sii && sii.has_mailbox() && sii.header.mailbox_protocols.coe();
        let layout = if uses_coe {
            match coe_for(master, t).await {
                Ok(coe) => read_layout(Some(&coe), sii)
                    .await
                    .map_err(|e| CliError::new(Exit::Protocol, e.to_string())),
                Err(e) => Err(e),
            }
        } else {
            let reason = if args.sii {
                "--sii given"
            } else {
                "the terminal has no CoE mailbox"
            };
            Ok(PdoLayout::from_sii(sii, reason))
        };
        results.push((t.clone(), layout));
    }
    let mut failed = None;
    for (t, r) in results {
        let out = ctx.out();
        match r {
            Ok(layout) => {
                if json {
                    let v = serde_json::json!({
                        "position": t.position,
                        "station": t.station,
                        "name": t.name,
                        "layout": layout,
                    });
                    writeln!(out, "{v}")?;
                } else {
                    print_layout(out, &t, &layout)?;
                }
            }
            Err(e) => {
                if json {
                    let v = serde_json::json!({
                        "position": t.position, "station": t.station, "error": e.message,
                    });
                    writeln!(out, "{v}")?;
                } else {
                    writeln!(out, "{}", e.message)?;
                }
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(CliError::new(e.exit, format!("{} (see above)", e.message))),
        None => Ok(()),
    }
}

/// Writes a layout as text.
pub fn print_layout(out: &mut dyn Write, t: &Terminal, layout: &PdoLayout) -> std::io::Result<()> {
    let source = match &layout.source {
        LayoutSource::Coe => "CoE".to_string(),
        LayoutSource::Sii { reason } => format!("SII ({reason})"),
    };
    writeln!(
        out,
        "Terminal {} (0x{:04x}) {}: PDOs from {source}",
        t.position,
        t.station,
        t.name.as_deref().unwrap_or("-")
    )?;
    if layout.sync_managers.is_empty() {
        writeln!(out, "  no process data")?;
    }
    for sm in &layout.sync_managers {
        let dir = match sm.direction {
            PdoDirection::Rx => "outputs",
            PdoDirection::Tx => "inputs",
        };
        writeln!(
            out,
            "  SM{} {dir}: {} bit ({} bytes)",
            sm.sync_manager,
            sm.bit_len(),
            sm.byte_len()
        )?;
        for p in &sm.pdos {
            let kind = match p.direction {
                PdoDirection::Rx => "RxPDO",
                PdoDirection::Tx => "TxPDO",
            };
            writeln!(
                out,
                "    {kind} 0x{:04x}{} {} bit",
                p.index,
                quoted(p.name.as_deref()),
                p.bit_len()
            )?;
            for e in &p.entries {
                if e.is_gap() {
                    writeln!(out, "      0x0000:00 {:>3} bit (gap)", e.bit_len)?;
                } else {
                    let line = format!(
                        "      0x{:04x}:{:02x} {:>3} bit {:<8}{}",
                        e.index,
                        e.subindex,
                        e.bit_len,
                        e.data_type.map(data_type_name).unwrap_or_default(),
                        quoted(e.name.as_deref())
                    );
                    writeln!(out, "{}", line.trim_end())?;
                }
            }
        }
    }
    Ok(())
}

/// ` "name"` for a name the terminal gave, nothing where it gave none (PDOs read over CoE
/// carry no names).
fn quoted(name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!(" \"{n}\""),
        _ => String::new(),
    }
}
