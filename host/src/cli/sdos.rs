//! `ferrocat sdos`: a terminal's object dictionary as its SDO information service
//! describes it, optionally with every value.

use super::transfer::{coe_client, coe_error, is_missing, report_emergencies};
use super::{CliError, Context, Exit, TerminalSelector};
use crate::ethercat::coe::datatype::data_type_name;
use crate::ethercat::coe::info::{EntryDescription, OdListType};
use crate::ethercat::coe::value::{ValueType, hex};
use serde::Serialize;

/// List the object dictionary of one terminal via SDO information.
///
/// For each object: index, object code, name; for each entry: subindex, data type, bit
/// length, access (read in PRE-OP/SAFE-OP/OP, write in PRE-OP/SAFE-OP/OP) and name.
/// With --values each readable entry is also uploaded. Brings the bus to PRE-OP if the
/// terminal is in INIT.
///
/// Examples:
///   ferrocat -i eth1 sdos -p 6                   the EL7041's dictionary
///   ferrocat -i eth1 sdos -p 6 --values          with the current values
///   ferrocat -i eth1 sdos -p 6 --list rx         objects mappable into RxPDOs
///   ferrocat -i eth1 sdos -p 6 --json | jq 'select(.index == 4120)'
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_long_help = "List the object dictionary of one terminal via SDO information.\n\nFor each object: index, object code, name; for each entry: subindex, data type, bit\nlength, access (read in PRE-OP/SAFE-OP/OP, write in PRE-OP/SAFE-OP/OP) and name.\nWith --values each readable entry is also uploaded. Brings the bus to PRE-OP if the\nterminal is in INIT.\n\nExamples:\n  ferrocat -i eth1 sdos -p 6                   the EL7041's dictionary\n  ferrocat -i eth1 sdos -p 6 --values          with the current values\n  ferrocat -i eth1 sdos -p 6 --list rx         objects mappable into RxPDOs\n  ferrocat -i eth1 sdos -p 6 --json | jq 'select(.index == 4120)'"
)]
pub struct Args {
    /// Which terminal (exactly one).
    #[command(flatten)]
    pub select: TerminalSelector,
    /// Also upload and show every readable entry's value.
    #[arg(long)]
    pub values: bool,
    /// Which objects: all, rx (RxPDO mappable), tx (TxPDO mappable), backup, settings.
    #[arg(long, default_value = "all", value_parser = parse_list)]
    pub list: OdListType,
}

fn parse_list(s: &str) -> Result<OdListType, String> {
    Ok(match s {
        "all" => OdListType::All,
        "rx" => OdListType::RxPdoMappable,
        "tx" => OdListType::TxPdoMappable,
        "backup" => OdListType::Backup,
        "settings" => OdListType::Settings,
        _ => return Err(format!("{s:?} is not one of all, rx, tx, backup, settings")),
    })
}

/// One entry in `--json` output.
#[derive(Debug, Serialize)]
struct EntryJson {
    subindex: u8,
    name: String,
    data_type: String,
    bit_len: u16,
    access: String,
    value: Option<String>,
    error: Option<String>,
}

/// One object in `--json` output.
#[derive(Debug, Serialize)]
struct ObjectJson {
    index: u16,
    name: String,
    object_code: String,
    max_subindex: u8,
    entries: Vec<EntryJson>,
}

/// Run `ferrocat sdos`.
pub async fn run(args: Args, ctx: &mut Context) -> Result<(), CliError> {
    let json = ctx.json();
    let (coe, t) = coe_client(ctx, &args.select).await?;
    if let Some(sii) = &t.sii {
        if sii.general.as_ref().is_some_and(|g| !g.coe.sdo_info()) {
            tracing::warn!(
                station = t.station,
                "the SII says SDO information is not supported; trying anyway"
            );
        }
    }
    let indices = coe.od_list(args.list).await.map_err(|e| {
        let base = coe_error(e);
        CliError::new(
            if base.exit == Exit::Protocol {
                Exit::Unavailable
            } else {
                base.exit
            },
            format!(
                "{} (does the terminal offer SDO information?)",
                base.message
            ),
        )
    })?;
    for index in indices {
        let od = coe.object_description(index).await.map_err(coe_error)?;
        let mut entries: Vec<(EntryDescription, Option<Result<String, String>>)> = Vec::new();
        for sub in 0..=od.max_subindex {
            let e = match coe.entry_description(index, sub, 0).await {
                Ok(e) => e,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(coe_error(e)),
            };
            let value = if args.values && e.access.0 & 0x07 != 0 {
                Some(match coe.upload(index, sub).await {
                    Ok(v) => Ok(match ValueType::for_data_type(e.data_type) {
                        Some(ty) => ty.decode(&v).unwrap_or_else(|_| hex(&v)),
                        None => hex(&v),
                    }),
                    Err(err) => Err(err
                        .abort_code()
                        .map_or_else(|| err.to_string(), |c| c.to_string())),
                })
            } else {
                None
            };
            entries.push((e, value));
        }
        let out = ctx.out();
        if json {
            let o = ObjectJson {
                index,
                name: od.name.clone(),
                object_code: od.object_code_name(),
                max_subindex: od.max_subindex,
                entries: entries
                    .iter()
                    .map(|(e, v)| EntryJson {
                        subindex: e.subindex,
                        name: e.name.clone(),
                        data_type: data_type_name(e.data_type),
                        bit_len: e.bit_len,
                        access: e.access.summary(),
                        value: v.as_ref().and_then(|r| r.as_ref().ok().cloned()),
                        error: v.as_ref().and_then(|r| r.as_ref().err().cloned()),
                    })
                    .collect(),
            };
            let line = serde_json::to_string(&o)
                .map_err(|e| CliError::new(Exit::Software, e.to_string()))?;
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "0x{index:04x} {:<6} \"{}\"",
                od.object_code_name(),
                od.name
            )?;
            for (e, v) in &entries {
                write!(
                    out,
                    "  0x{index:04x}:{:02x} {:<8} {:>4} bit {} \"{}\"",
                    e.subindex,
                    data_type_name(e.data_type),
                    e.bit_len,
                    e.access.summary(),
                    e.name
                )?;
                match v {
                    Some(Ok(v)) => writeln!(out, " = {v}")?,
                    Some(Err(err)) => writeln!(out, " (read failed: {err})")?,
                    None => writeln!(out)?,
                }
            }
        }
    }
    report_emergencies(ctx, &coe)?;
    Ok(())
}
