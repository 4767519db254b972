//! `ferrocat upload` and `ferrocat download`: read and write one CoE object entry (or a
//! whole object with complete access) as a typed value; and the CoE plumbing the other
//! CoE subcommands share.

use super::{CliError, Context, Exit, TerminalSelector, parse_u16};
use crate::ethercat::al::AlState;
use crate::ethercat::coe::value::{TYPE_NAMES, ValueType, hex};
use crate::ethercat::coe::{AbortCode, CoeClient, CoeError};
use crate::ethercat::mailbox::{Mailbox, MailboxConfig, MailboxError};
use crate::ethercat::master::Terminal;
use crate::ethercat::station_io::{RegisterError, StationIoError};
use crate::ethercat::transport::Transport;

/// Turns a CoE failure into a CLI error with a fitting exit code: no such object or
/// subindex 66, value refused 65, other aborts 76, timeouts 75, terminal gone 69.
pub fn coe_error(e: CoeError) -> CliError {
    let exit = match &e {
        CoeError::Abort { code, .. } | CoeError::InfoAbort { code, .. } => match code.0 {
            0x0602_0000 | 0x0609_0011 => Exit::NoInput,
            0x0607_0010..=0x0607_0013 | 0x0609_0030..=0x0609_0036 => Exit::DataErr,
            _ => Exit::Protocol,
        },
        CoeError::Mailbox(MailboxError::ResponseTimeout { .. })
        | CoeError::Mailbox(MailboxError::WriteTimeout { .. })
        | CoeError::Mailbox(MailboxError::RepeatFailed { .. }) => Exit::TempFail,
        CoeError::Mailbox(MailboxError::Register { source, .. }) => match source {
            RegisterError::WorkingCounter(_) => Exit::Unavailable,
            RegisterError::Io(StationIoError::Timeout { .. }) => Exit::TempFail,
            RegisterError::Io(StationIoError::OutOfRange { .. }) => Exit::Software,
            RegisterError::Io(_) => Exit::IoErr,
        },
        _ => Exit::Protocol,
    };
    CliError::new(exit, e.to_string())
}

/// The CoE client of the one selected terminal, after bringing the bus to PRE-OP if
/// that terminal is still in INIT (the mailbox only works from PRE-OP on).
pub async fn coe_client(
    ctx: &mut Context,
    select: &TerminalSelector,
) -> Result<(CoeClient<Transport>, Terminal), CliError> {
    let master = ctx.master().await?;
    let t = select.one(master)?.clone();
    let client = coe_for(master, &t).await?;
    Ok((client, t))
}

/// The CoE client of terminal `t` (bringing the bus to PRE-OP if `t` is below it).
pub async fn coe_for(
    master: &mut crate::ethercat::master::Master,
    t: &Terminal,
) -> Result<CoeClient<Transport>, CliError> {
    let label = format!("terminal {} (0x{:04x})", t.position, t.station);
    let Some(sii) = &t.sii else {
        return Err(CliError::new(
            Exit::Unavailable,
            format!(
                "{label}: its SII could not be read ({}), so its mailbox is unknown",
                t.sii_error.as_deref().unwrap_or("no SII")
            ),
        ));
    };
    let Some(config) = MailboxConfig::from_sii(sii) else {
        return Err(CliError::new(
            Exit::Unavailable,
            format!("{label} has no mailbox, so no CoE (its SII describes none)"),
        ));
    };
    if !sii.header.mailbox_protocols.coe() {
        return Err(CliError::new(
            Exit::Unavailable,
            format!(
                "{label} does not support CoE (mailbox protocols: {})",
                sii.header.mailbox_protocols.names().join(" ")
            ),
        ));
    }
    if matches!(
        t.status.state(),
        None | Some(AlState::Init) | Some(AlState::Boot)
    ) {
        tracing::info!(
            station = t.station,
            "bringing the bus to PRE-OP for the mailbox"
        );
        master.request_state(AlState::PreOp, None).await?;
    }
    Ok(CoeClient::new(Mailbox::new(
        master.transport().clone(),
        t.station,
        config,
    )))
}

/// Read one CoE entry (SDO upload) and print it as a typed value.
///
/// Without --type the entry's data type is asked for over SDO information; if the
/// terminal cannot tell, the value is shown as hex. Brings the bus to PRE-OP if the
/// terminal is in INIT.
///
/// Examples:
///   ferrocat -i eth1 upload -p 6 0x1018 2 --type u32     product code
///   ferrocat -i eth1 upload -p 6 0x1018:2                 the same, INDEX:SUB
///   ferrocat -i eth1 upload -p 6 0x1008 0 --type string  device name
///   ferrocat -i eth1 upload -p 6 0x1C12 0 --complete     whole PDO assignment, hex
///   ferrocat -i eth1 upload -p 6 0x8010 1 --json
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_long_help = "Read one CoE entry (SDO upload) and print it as a typed value.\n\nWithout --type the entry's data type is asked for over SDO information; if the\nterminal cannot tell, the value is shown as hex. Brings the bus to PRE-OP if the\nterminal is in INIT.\n\nExamples:\n  ferrocat -i eth1 upload -p 6 0x1018 2 --type u32     product code\n  ferrocat -i eth1 upload -p 6 0x1018:2                 the same, INDEX:SUB\n  ferrocat -i eth1 upload -p 6 0x1008 0 --type string  device name\n  ferrocat -i eth1 upload -p 6 0x1C12 0 --complete     whole PDO assignment, hex\n  ferrocat -i eth1 upload -p 6 0x8010 1 --json"
)]
pub struct UploadArgs {
    /// Which terminal (exactly one).
    #[command(flatten)]
    pub select: TerminalSelector,
    /// Object index (e.g. 0x1018), or index and subindex as INDEX:SUB (0x1018:2).
    #[arg(value_name = "INDEX[:SUB]")]
    pub object: String,
    /// Subindex (e.g. 2) when not given as INDEX:SUB; with --complete the first
    /// subindex transferred (0 or 1).
    #[arg(value_name = "SUBINDEX")]
    pub subindex: Option<String>,
    /// Value type: bool, u8, u16, u32, u64, i8, i16, i32, i64, f32, f64, string, hex.
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub ty: Option<String>,
    /// Complete access: the whole object from SUBINDEX on (shown as hex).
    #[arg(long)]
    pub complete: bool,
}

/// Write one CoE entry (SDO download) from a typed value.
///
/// Without --type the entry's data type is asked for over SDO information. Values of
/// any length are written (expedited, normal or segmented as needed). Brings the bus to
/// PRE-OP if the terminal is in INIT.
///
/// Examples:
///   ferrocat -i eth1 download -p 6 0x8010 1 1500 --type u16   maximal current, mA
///   ferrocat -i eth1 download -p 6 0x8010:1 1500              the same, INDEX:SUB
///   ferrocat -i eth1 download -p 6 0x1C12 0 0x00 --type u8    clear the RxPDO assignment
///   ferrocat -i eth1 download -p 6 0x2100 0 0a0b0c --type hex
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_long_help = "Write one CoE entry (SDO download) from a typed value.\n\nWithout --type the entry's data type is asked for over SDO information. Values of\nany length are written (expedited, normal or segmented as needed). Brings the bus to\nPRE-OP if the terminal is in INIT.\n\nExamples:\n  ferrocat -i eth1 download -p 6 0x8010 1 1500 --type u16   maximal current, mA\n  ferrocat -i eth1 download -p 6 0x8010:1 1500              the same, INDEX:SUB\n  ferrocat -i eth1 download -p 6 0x1C12 0 0x00 --type u8    clear the RxPDO assignment\n  ferrocat -i eth1 download -p 6 0x2100 0 0a0b0c --type hex"
)]
pub struct DownloadArgs {
    /// Which terminal (exactly one).
    #[command(flatten)]
    pub select: TerminalSelector,
    /// Object index (e.g. 0x8010), or index and subindex as INDEX:SUB (0x8010:1).
    #[arg(value_name = "INDEX[:SUB]")]
    pub object: String,
    /// `SUBINDEX VALUE`, or only `VALUE` after INDEX:SUB. The subindex (e.g. 1) is, with
    /// --complete, the first subindex written (0 or 1); the value is in the syntax of its
    /// type (numbers decimal or 0x-hex). A value starting with `-` that is not a
    /// number goes after `--`.
    #[arg(value_name = "[SUBINDEX] VALUE", num_args = 1..=2, required = true, allow_negative_numbers = true)]
    pub rest: Vec<String>,
    /// Value type: bool, u8, u16, u32, u64, i8, i16, i32, i64, f32, f64, string, hex.
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub ty: Option<String>,
    /// Complete access: the value covers the whole object from SUBINDEX on.
    #[arg(long)]
    pub complete: bool,
}

/// The object entry named on the command line: `INDEX SUB` or `INDEX:SUB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryAddress {
    /// Object index.
    pub index: u16,
    /// Subindex.
    pub subindex: u8,
}

impl EntryAddress {
    /// Parse `object` (`INDEX` or `INDEX:SUB`) and the separate `subindex`, which must
    /// be given exactly when `object` has no `:SUB`.
    pub fn parse(object: &str, subindex: Option<&str>) -> Result<EntryAddress, CliError> {
        let usage = |m: String| CliError::usage(m);
        let (index, sub) = match (object.split_once(':'), subindex) {
            (Some((i, s)), None) => (i, s),
            (None, Some(s)) => (object, s),
            (Some(_), Some(extra)) => {
                return Err(usage(format!(
                    "{object:?} already names the subindex; unexpected {extra:?}"
                )));
            }
            (None, None) => {
                return Err(usage(format!(
                    "no subindex for object {object}: give INDEX SUBINDEX or INDEX:SUB"
                )));
            }
        };
        Ok(EntryAddress {
            index: parse_u16(index).map_err(usage)?,
            subindex: parse_u8(sub).map_err(usage)?,
        })
    }
}

/// Parse an 8-bit number, decimal or 0x-hex.
pub fn parse_u8(s: &str) -> Result<u8, String> {
    let v = super::parse_u64(s)?;
    u8::try_from(v).map_err(|_| format!("{s} does not fit 8 bits"))
}

fn parse_type(t: &str) -> Result<ValueType, CliError> {
    t.parse::<ValueType>()
        .map_err(|e| CliError::usage(e.to_string()))
}

/// The type of an entry from SDO information, if the terminal offers it.
async fn entry_type(coe: &CoeClient<Transport>, index: u16, sub: u8) -> Option<ValueType> {
    let d = coe.entry_description(index, sub, 0).await.ok()?;
    ValueType::for_data_type(d.data_type)
}

/// Run `ferrocat upload`.
pub async fn upload(args: UploadArgs, ctx: &mut Context) -> Result<(), CliError> {
    let EntryAddress { index, subindex } =
        EntryAddress::parse(&args.object, args.subindex.as_deref())?;
    let explicit = args.ty.as_deref().map(parse_type).transpose()?;
    let (coe, t) = coe_client(ctx, &args.select).await?;
    let data = if args.complete {
        coe.upload_complete(index, subindex).await
    } else {
        coe.upload(index, subindex).await
    }
    .map_err(coe_error)?;
    let ty = match explicit {
        Some(t) => Some(t),
        None if args.complete => None,
        None => entry_type(&coe, index, subindex).await,
    };
    let shown = match ty {
        Some(ty) => ty
            .decode(&data)
            .map_err(|e| CliError::new(Exit::DataErr, e.to_string()))?,
        None => hex(&data),
    };
    report_emergencies(ctx, &coe)?;
    if ctx.json() {
        let v = serde_json::json!({
            "position": t.position,
            "station": t.station,
            "index": index,
            "subindex": subindex,
            "type": ty.map_or_else(|| "hex".to_string(), |t| t.to_string()),
            "value": shown,
            "hex": hex(&data),
            "len": data.len(),
        });
        writeln!(ctx.out(), "{v}")?;
    } else {
        writeln!(ctx.out(), "{shown}")?;
    }
    Ok(())
}

/// Run `ferrocat download`.
pub async fn download(args: DownloadArgs, ctx: &mut Context) -> Result<(), CliError> {
    let (sub, value) = match args.rest.as_slice() {
        [value] => (None, value),
        [sub, value] => (Some(sub.as_str()), value),
        _ => {
            return Err(CliError::usage(
                "download needs INDEX SUBINDEX VALUE or INDEX:SUB VALUE",
            ));
        }
    };
    let EntryAddress { index, subindex } = EntryAddress::parse(&args.object, sub)?;
    let explicit = args.ty.as_deref().map(parse_type).transpose()?;
    let (coe, t) = coe_client(ctx, &args.select).await?;
    let ty = match explicit {
        Some(t) => t,
        None => entry_type(&coe, index, subindex)
            .await
            .ok_or_else(|| {
                CliError::usage(format!(
                    "the type of 0x{index:04x}:{subindex:02x} is unknown (no SDO information): pass --type ({TYPE_NAMES})",
                ))
            })?,
    };
    let data = ty
        .encode(value)
        .map_err(|e| CliError::new(Exit::DataErr, e.to_string()))?;
    if args.complete {
        coe.download_complete(index, subindex, &data).await
    } else {
        coe.download(index, subindex, &data).await
    }
    .map_err(coe_error)?;
    report_emergencies(ctx, &coe)?;
    if ctx.json() {
        let v = serde_json::json!({
            "position": t.position,
            "station": t.station,
            "index": index,
            "subindex": subindex,
            "type": ty.to_string(),
            "len": data.len(),
        });
        writeln!(ctx.out(), "{v}")?;
    }
    Ok(())
}

/// Prints emergencies that arrived during a command on stderr.
pub fn report_emergencies(_ctx: &mut Context, coe: &CoeClient<Transport>) -> Result<(), CliError> {
    for e in coe.take_emergencies() {
        super::print_error(&format!("ferrocat: {e}\n"));
    }
    Ok(())
}

/// Whether an abort means the object or subindex does not exist.
pub fn is_missing(e: &CoeError) -> bool {
    matches!(
        e.abort_code(),
        Some(AbortCode(0x0602_0000)) | Some(AbortCode(0x0609_0011))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn download_args(argv: &[&str]) -> DownloadArgs {
        let mut all = vec!["ferrocat", "download"];
        all.extend_from_slice(argv);
        match Cli::try_parse_from(all).expect("parses").command {
            Command::Download(a) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn entry_address_in_both_notations() {
        let want = EntryAddress {
            index: 0x1018,
            subindex: 2,
        };
        assert_eq!(EntryAddress::parse("0x1018:2", None).unwrap(), want);
        assert_eq!(EntryAddress::parse("0x1018", Some("2")).unwrap(), want);
        assert_eq!(EntryAddress::parse("4120:0x02", None).unwrap(), want);
        for (object, sub) in [
            ("0x1018", None),
            ("0x1018:2", Some("2")),
            ("0x1018:", None),
            ("0x10000:0", None),
            ("0x1018:2:3", None),
            ("", Some("1")),
        ] {
            let e = EntryAddress::parse(object, sub).expect_err(object);
            assert_eq!(e.exit, Exit::Usage, "{object} {sub:?}");
        }
    }

    #[test]
    fn download_value_may_be_negative_in_either_notation() {
        let a = download_args(&["-p", "6", "0x8010:1", "-5", "--type", "i16"]);
        assert_eq!(
            (a.object.as_str(), a.rest.as_slice()),
            ("0x8010:1", &["-5".to_string()][..])
        );
        assert_eq!(a.ty.as_deref(), Some("i16"));
        let a = download_args(&["-p", "6", "0x8010", "1", "-5", "-t", "i16"]);
        assert_eq!(a.rest, ["1", "-5"]);
        assert_eq!(a.ty.as_deref(), Some("i16"));
        let a = download_args(&["-p", "6", "-t", "string", "0x2100:0", "--", "-abc"]);
        assert_eq!(
            (a.object.as_str(), a.rest.as_slice()),
            ("0x2100:0", &["-abc".to_string()][..])
        );
    }
}
