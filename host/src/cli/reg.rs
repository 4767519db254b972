//! `ferrocat reg read|write`: raw ESC register access with typed values.

use super::{CliError, Context, Exit, TerminalSelector, parse_u16, parse_u64};
use crate::ethercat::coe::value::parse_hex_bytes;
use crate::ethercat::registers;
use crate::ethercat::transport::expect_wkc;
use crate::ethercat::wire::frame::MAX_DATAGRAM_DATA;
use crate::ethercat::wire::{Address, Command, DatagramRepr};

/// Read or write ESC registers.
///
/// REGISTER is an address (decimal or 0x-hex) or a name such as AL_STATUS, DL_STATUS,
/// STATION_ALIAS, DC_SYSTEM_TIME (see docs/cli.md for the list). Without a terminal
/// selection, `read` reads every terminal one by one.
///
/// Examples:
///   ferrocat -i eth1 reg read AL_STATUS                 AL status of every terminal
///   ferrocat -i eth1 reg read -p 0 0x0000 10 -t hex     ESC information bytes
///   ferrocat -i eth1 reg read --broadcast 0x0130        OR of all AL status values
///   ferrocat -i eth1 reg write -s 0x1002 0x0120 2 -t u16   request PRE-OP directly
#[derive(Debug, clap::Args)]
#[command(
    after_help = "REGISTER is an address (decimal or 0x-hex) or a name such as AL_STATUS, DL_STATUS,\nSTATION_ALIAS, DC_SYSTEM_TIME (see docs/cli.md for the list). Without a terminal\nselection, `read` reads every terminal one by one.\n\nExamples:\n  ferrocat -i eth1 reg read AL_STATUS                 AL status of every terminal\n  ferrocat -i eth1 reg read -p 0 0x0000 10 -t hex     ESC information bytes\n  ferrocat -i eth1 reg read --broadcast 0x0130        OR of all AL status values\n  ferrocat -i eth1 reg write -s 0x1002 0x0120 2 -t u16   request PRE-OP directly"
)]
pub struct Args {
    /// read or write.
    #[command(subcommand)]
    pub op: Op,
}

/// A register operation.
#[derive(Debug, clap::Subcommand)]
pub enum Op {
    /// Read a register.
    Read(ReadArgs),
    /// Write a register.
    Write(WriteArgs),
}

/// How a register value is shown or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ValueType {
    /// Unsigned 8 bit.
    U8,
    /// Unsigned 16 bit, little-endian.
    U16,
    /// Unsigned 32 bit, little-endian.
    U32,
    /// Unsigned 64 bit, little-endian.
    U64,
    /// Signed 8 bit.
    I8,
    /// Signed 16 bit, little-endian.
    I16,
    /// Signed 32 bit, little-endian.
    I32,
    /// Signed 64 bit, little-endian.
    I64,
    /// Raw bytes in hex.
    Hex,
    /// Text (bytes up to the first NUL).
    String,
}

impl ValueType {
    fn width(self) -> Option<usize> {
        match self {
            ValueType::U8 | ValueType::I8 => Some(1),
            ValueType::U16 | ValueType::I16 => Some(2),
            ValueType::U32 | ValueType::I32 => Some(4),
            ValueType::U64 | ValueType::I64 => Some(8),
            ValueType::Hex | ValueType::String => None,
        }
    }

    fn for_len(len: usize) -> ValueType {
        match len {
            1 => ValueType::U8,
            2 => ValueType::U16,
            4 => ValueType::U32,
            8 => ValueType::U64,
            _ => ValueType::Hex,
        }
    }
}

/// Arguments of `reg read`.
#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    /// Which terminal (default: all, one by one).
    #[command(flatten)]
    pub select: TerminalSelector,
    /// Read with one broadcast (BRD): the terminals' values ORed, and how many answered.
    #[arg(short = 'b', long, conflicts_with_all = ["position", "station", "alias"])]
    pub broadcast: bool,
    /// Register address or name.
    #[arg(value_name = "REGISTER")]
    pub register: String,
    /// Bytes to read (default: the type's width or the named register's length).
    #[arg(value_name = "LENGTH", value_parser = parse_u16)]
    pub length: Option<u16>,
    /// How to show the value.
    #[arg(short = 't', long = "type", value_enum)]
    pub ty: Option<ValueType>,
}

/// Arguments of `reg write`.
#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    /// Which terminal.
    #[command(flatten)]
    pub select: TerminalSelector,
    /// Write to every terminal with one broadcast (BWR).
    #[arg(short = 'b', long, conflicts_with_all = ["position", "station", "alias"])]
    pub broadcast: bool,
    /// Register address or name.
    #[arg(value_name = "REGISTER")]
    pub register: String,
    /// The value: a number (decimal or 0x-hex) for integer types, hex bytes ("01 02" or
    /// "0102") for hex, text for string.
    #[arg(value_name = "VALUE", allow_hyphen_values = true)]
    pub value: String,
    /// How to parse the value (default: the named register's width, else u8/u16/u32 by
    /// the value's size).
    #[arg(short = 't', long = "type", value_enum)]
    pub ty: Option<ValueType>,
}

/// Resolve a register name or number: (address, natural length if named).
pub fn resolve(register: &str) -> Result<(u16, Option<usize>), CliError> {
    if let Some(r) = registers::by_name(register) {
        return Ok((r.address, Some(r.len)));
    }
    parse_u16(register).map(|a| (a, None)).map_err(|_| {
        CliError::usage(format!(
            "{register:?} is neither a register address nor a known register name"
        ))
    })
}

/// Format `bytes` as `ty`.
pub fn format_value(bytes: &[u8], ty: ValueType) -> String {
    let mut le = [0u8; 8];
    let n = bytes.len().min(8);
    le[..n].copy_from_slice(&bytes[..n]);
    let u = u64::from_le_bytes(le);
    match ty {
        ValueType::U8 | ValueType::U16 | ValueType::U32 | ValueType::U64 => {
            let digits = bytes.len() * 2;
            format!("0x{u:0digits$x} ({u})")
        }
        ValueType::I8 => format!("{}", bytes.first().copied().unwrap_or(0) as i8),
        ValueType::I16 => format!("{}", u as u16 as i16),
        ValueType::I32 => format!("{}", u as u32 as i32),
        ValueType::I64 => format!("{}", u as i64),
        ValueType::Hex => bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
        ValueType::String => {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            String::from_utf8_lossy(&bytes[..end]).into_owned()
        }
    }
}

/// Parse a value given on the command line as `ty`.
pub fn parse_value(value: &str, ty: ValueType) -> Result<Vec<u8>, CliError> {
    let bad = |why: String| CliError::new(Exit::DataErr, why);
    match ty {
        ValueType::Hex => match parse_hex_bytes(value) {
            Ok(bytes) if !bytes.is_empty() => Ok(bytes),
            Ok(_) => Err(bad(format!("{value:?} holds no hex bytes"))),
            Err(why) => Err(bad(format!(
                "{value:?} is not a sequence of hex bytes (two digits each): {why}"
            ))),
        },
        ValueType::String => Ok(value.as_bytes().to_vec()),
        ValueType::I8 | ValueType::I16 | ValueType::I32 | ValueType::I64 => {
            let width = ty.width().unwrap_or(8);
            let v: i64 = value
                .parse()
                .map_err(|e| bad(format!("{value:?} is not a signed integer: {e}")))?;
            let bits = width * 8;
            let (min, max) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
            if i128::from(v) < min || i128::from(v) > max {
                return Err(bad(format!("{v} does not fit {bits} bits")));
            }
            Ok(v.to_le_bytes()[..width].to_vec())
        }
        _ => {
            let width = ty.width().unwrap_or(8);
            let v = parse_u64(value).map_err(bad)?;
            if width < 8 && v >> (width * 8) != 0 {
                return Err(bad(format!("{value} does not fit {} bits", width * 8)));
            }
            Ok(v.to_le_bytes()[..width].to_vec())
        }
    }
}

/// Run `ferrocat reg`.
pub async fn run(args: Args, ctx: &mut Context) -> Result<(), CliError> {
    match args.op {
        Op::Read(a) => read(a, ctx).await,
        Op::Write(a) => write(a, ctx).await,
    }
}

async fn read(args: ReadArgs, ctx: &mut Context) -> Result<(), CliError> {
    let (address, natural) = resolve(&args.register)?;
    let len = match (args.length, args.ty.and_then(ValueType::width), natural) {
        (Some(l), _, _) => usize::from(l),
        (None, Some(w), _) => w,
        (None, None, Some(n)) => n,
        (None, None, None) => 1,
    };
    if len == 0 || len > MAX_DATAGRAM_DATA || usize::from(address) + len > 0x1_0000 {
        return Err(CliError::usage(format!(
            "cannot read {len} bytes at 0x{address:04x}: a read covers 1..={MAX_DATAGRAM_DATA} bytes within 0x0000..=0xffff"
        )));
    }
    let ty = args.ty.unwrap_or(ValueType::for_len(len));
    let json = ctx.json();
    if args.broadcast {
        let transport = ctx.transport().await?;
        let (data, wkc) = transport.brd(address, len).await?;
        let value = format_value(&data, ty);
        let out = ctx.out();
        if json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"register": address, "bytes": data, "value": value, "working_counter": wkc})
            )?;
        } else {
            writeln!(out, "{value} (working counter {wkc})")?;
        }
        return Ok(());
    }
    let master = ctx.master_without_sii().await?;
    let targets = args.select.addresses(master)?;
    let transport = master.transport().clone();
    let mut rows = Vec::new();
    // One FPRD per terminal, packed into as few frames as fit.
    let replies = transport
        .batch(
            targets
                .iter()
                .map(|&(_, station)| {
                    DatagramRepr::new(
                        Command::Fprd,
                        Address::Station {
                            station,
                            register: address,
                        },
                        vec![0; len],
                    )
                })
                .collect(),
        )
        .await?;
    for ((position, station), reply) in targets.into_iter().zip(replies) {
        expect_wkc(&reply, 1)?;
        rows.push((position, station, reply.data));
    }
    let single = args.select.is_set() && rows.len() == 1;
    let out = ctx.out();
    for (position, station, data) in rows {
        let value = format_value(&data, ty);
        if json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"position": position, "station_address": station, "register": address, "bytes": data, "value": value})
            )?;
        } else if single {
            writeln!(out, "{value}")?;
        } else {
            writeln!(out, "{position:<4} 0x{station:04x} {value}")?;
        }
    }
    Ok(())
}

async fn write(args: WriteArgs, ctx: &mut Context) -> Result<(), CliError> {
    let (address, natural) = resolve(&args.register)?;
    let ty = match (args.ty, natural) {
        (Some(t), _) => t,
        (None, Some(n)) => ValueType::for_len(n),
        (None, None) => {
            let v = parse_u64(&args.value).map_err(|e| CliError::new(Exit::DataErr, e))?;
            if v <= 0xff {
                ValueType::U8
            } else if v <= 0xffff {
                ValueType::U16
            } else if v <= 0xffff_ffff {
                ValueType::U32
            } else {
                ValueType::U64
            }
        }
    };
    let data = parse_value(&args.value, ty)?;
    if data.len() > MAX_DATAGRAM_DATA || usize::from(address) + data.len() > 0x1_0000 {
        return Err(CliError::usage(format!(
            "cannot write {} bytes at 0x{address:04x}",
            data.len()
        )));
    }
    if args.broadcast {
        let transport = ctx.transport().await?;
        let wkc = transport.bwr(address, &data).await?;
        writeln!(ctx.out(), "written to {wkc} terminals")?;
        return Ok(());
    }
    if !args.select.is_set() {
        return Err(CliError::usage(
            "reg write needs a terminal (-p POS, -s ADDR or -a ALIAS) or --broadcast",
        ));
    }
    let master = ctx.master_without_sii().await?;
    let station = args.select.one(master)?.station;
    master.transport().fpwr(station, address, &data).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_and_parse() {
        assert_eq!(format_value(&[0x02, 0x00], ValueType::U16), "0x0002 (2)");
        assert_eq!(format_value(&[0xff, 0xff], ValueType::I16), "-1");
        assert_eq!(format_value(&[0xde, 0xad], ValueType::Hex), "de ad");
        assert_eq!(format_value(b"EK1100\0\0", ValueType::String), "EK1100");
        assert_eq!(
            parse_value("0x1234", ValueType::U16).unwrap(),
            vec![0x34, 0x12]
        );
        assert_eq!(parse_value("-2", ValueType::I8).unwrap(), vec![0xfe]);
        assert_eq!(
            parse_value("01 0a ff", ValueType::Hex).unwrap(),
            vec![1, 10, 255]
        );
        assert_eq!(
            parse_value("0x100", ValueType::U8).unwrap_err().exit,
            Exit::DataErr
        );
        assert_eq!(
            parse_value("128", ValueType::I8).unwrap_err().exit,
            Exit::DataErr
        );
        assert_eq!(
            parse_value("abc", ValueType::Hex).unwrap_err().exit,
            Exit::DataErr
        );
        // Multi-byte characters once split a string slice mid-character (a panic).
        for hostile in ["aéa", "0xé1", "", "  ", "+1"] {
            let e = parse_value(hostile, ValueType::Hex).unwrap_err();
            assert_eq!(e.exit, Exit::DataErr, "{hostile:?}: {}", e.message);
        }
    }

    #[test]
    fn registers_resolve_by_name_or_number() {
        assert_eq!(resolve("AL_STATUS").unwrap(), (0x0130, Some(2)));
        assert_eq!(resolve("0x0910").unwrap(), (0x0910, None));
        assert_eq!(resolve("bogus").unwrap_err().exit, Exit::Usage);
    }
}
