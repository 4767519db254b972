//! `ferrocat sii`: show a terminal's SII EEPROM decoded category by category or as raw
//! hex, decode an image file, and write the station alias or serial number.

use super::{CliError, Context, Exit, TerminalSelector, parse_u16, parse_u64};
use crate::ethercat::coe::datatype::data_type_name;
use crate::ethercat::sii::category::kind;
use crate::ethercat::sii::{Eeprom, EepromError, SiiError, SiiImage, SmType};
use std::io::Write;

/// Show the SII (EEPROM) of terminals, decoded or raw; write alias or serial number.
///
/// Decodes every category: identity, mailbox, general, strings, FMMUs, SyncManagers,
/// FMMU extensions, sync units, PDOs and DC modes, with any damage found. Reads the bus
/// without changing any AL state.
///
/// Examples:
///   ferrocat -i eth1 sii -p 1                 decoded SII of the terminal at position 1
///   ferrocat -i eth1 sii -p 1 --raw           the same image as hex words
///   ferrocat -i eth1 sii --json | jq .header.identity
///   ferrocat sii --file el2004.bin            decode an image file (no bus needed)
///   ferrocat -i eth1 sii -p 3 --set-alias 0x0100   write the station alias (checksum
///                                             recomputed; effective after power cycle)
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_long_help = "Show the SII (EEPROM) of terminals, decoded or raw; write alias or serial number.\n\nDecodes every category: identity, mailbox, general, strings, FMMUs, SyncManagers,\nFMMU extensions, sync units, PDOs and DC modes, with any damage found. Reads the bus\nwithout changing any AL state.\n\nExamples:\n  ferrocat -i eth1 sii -p 1                 decoded SII of the terminal at position 1\n  ferrocat -i eth1 sii -p 1 --raw           the same image as hex words\n  ferrocat -i eth1 sii --json | jq .header.identity\n  ferrocat sii --file el2004.bin            decode an image file (no bus needed)\n  ferrocat -i eth1 sii -p 3 --set-alias 0x0100   write the station alias (checksum\n                                            recomputed; effective after power cycle)"
)]
pub struct Args {
    /// Which terminal (default: all).
    #[command(flatten)]
    pub select: TerminalSelector,
    /// Print the image as hex (16 bytes per line with the word address), not decoded.
    #[arg(long)]
    pub raw: bool,
    /// Decode an image file instead of reading a terminal.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["set_alias", "set_serial"])]
    pub file: Option<std::path::PathBuf>,
    /// Write this configured station alias into the SII (word 0x04) of one terminal.
    #[arg(long, value_name = "ALIAS", value_parser = parse_u16)]
    pub set_alias: Option<u16>,
    /// Write this serial number into the SII (words 0x0E..0x0F) of one terminal.
    #[arg(long, value_name = "SERIAL", value_parser = parse_u64)]
    pub set_serial: Option<u64>,
}

fn eeprom_error(e: EepromError) -> CliError {
    match e {
        EepromError::Register { source, .. } => {
            let base = CliError::from(source);
            CliError::new(base.exit, format!("reading the SII: {}", base.message))
        }
        EepromError::Busy { .. } => CliError::new(Exit::TempFail, e.to_string()),
        EepromError::Parse { .. } => CliError::new(Exit::DataErr, e.to_string()),
        _ => CliError::new(Exit::Protocol, e.to_string()),
    }
}

/// Largest SII image file read: 128 KiB, the largest EEPROM image in the test data
/// (`empty-eeprom.bin`, a blank 1 Mbit EEPROM) and far above the few KiB real SIIs hold.
const MAX_IMAGE_FILE: u64 = 128 * 1024;

/// Reads an image file of at most [`MAX_IMAGE_FILE`] bytes; a longer file or a stream
/// that does not end (`/dev/zero`) is an error, not an endless read.
fn read_image_file(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    let cannot = |e: std::io::Error| {
        CliError::new(
            Exit::NoInput,
            format!("cannot read {}: {e}", path.display()),
        )
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_IMAGE_FILE + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_IMAGE_FILE {
        return Err(CliError::new(
            Exit::DataErr,
            format!(
                "{} is larger than an SII EEPROM ({MAX_IMAGE_FILE} bytes at most)",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}

/// Run `ferrocat sii`.
pub async fn run(args: Args, ctx: &mut Context) -> Result<(), CliError> {
    if let Some(path) = &args.file {
        let bytes = read_image_file(path)?;
        let label = path.display().to_string();
        return show(ctx, &label, None, &bytes, args.raw);
    }
    if args.set_alias.is_some() || args.set_serial.is_some() {
        return write(args, ctx).await;
    }
    let json = ctx.json();
    let master = ctx.master_without_sii().await?;
    let transport = master.transport().clone();
    let chosen = args.select.addresses(master)?;
    let mut failed = None;
    for (position, station) in chosen {
        let label = format!("terminal {position} (0x{station:04x})");
        match Eeprom::new(&transport, station).read_image().await {
            Ok(bytes) => {
                if let Err(e) = show(ctx, &label, Some((position, station)), &bytes, args.raw) {
                    writeln!(ctx.out(), "{e}")?;
                    failed = Some(e);
                }
            }
            Err(e) => {
                let e = eeprom_error(e);
                if json {
                    let line = serde_json::json!({
                        "position": position, "station": station, "error": e.message,
                    });
                    writeln!(ctx.out(), "{line}")?;
                } else {
                    writeln!(ctx.out(), "{label}: {e}")?;
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

async fn write(args: Args, ctx: &mut Context) -> Result<(), CliError> {
    let master = ctx.master_without_sii().await?;
    let t = args.select.one(master)?.clone();
    let transport = master.transport().clone();
    let eeprom = Eeprom::new(&transport, t.station);
    let label = format!("terminal {} (0x{:04x})", t.position, t.station);
    if let Some(alias) = args.set_alias {
        eeprom.write_alias(alias).await.map_err(eeprom_error)?;
        writeln!(
            ctx.out(),
            "{label}: alias set to 0x{alias:04x} (header checksum recomputed); it takes effect after a power cycle"
        )?;
    }
    if let Some(serial) = args.set_serial {
        let serial = u32::try_from(serial)
            .map_err(|_| CliError::usage(format!("serial {serial} does not fit 32 bits")))?;
        eeprom.write_serial(serial).await.map_err(eeprom_error)?;
        writeln!(
            ctx.out(),
            "{label}: serial number set to {serial} (0x{serial:08x})"
        )?;
    }
    Ok(())
}

fn show(
    ctx: &mut Context,
    label: &str,
    at: Option<(u16, u16)>,
    bytes: &[u8],
    raw: bool,
) -> Result<(), CliError> {
    let json = ctx.json();
    if raw {
        if json {
            let mut v = serde_json::json!({ "len": bytes.len(), "hex": crate::ethercat::coe::value::hex(bytes) });
            if let Some((p, s)) = at {
                v["position"] = p.into();
                v["station"] = s.into();
            }
            writeln!(ctx.out(), "{v}")?;
        } else {
            writeln!(ctx.out(), "{label}: {} bytes", bytes.len())?;
            for (i, chunk) in bytes.chunks(16).enumerate() {
                let words: Vec<String> = chunk
                    .chunks(2)
                    .map(|w| match w {
                        [a, b] => format!("{:04x}", u16::from_le_bytes([*a, *b])),
                        [a] => format!("{a:02x}"),
                        _ => String::new(),
                    })
                    .collect();
                writeln!(ctx.out(), "  {:04x}: {}", i * 8, words.join(" "))?;
            }
        }
        return Ok(());
    }
    let img = SiiImage::parse(bytes).map_err(|e| {
        let exit = match e {
            SiiError::TooShort { .. } | SiiError::Blank { .. } => Exit::DataErr,
        };
        CliError::new(exit, format!("{label}: {e}"))
    })?;
    if json {
        let mut v =
            serde_json::to_value(&img).map_err(|e| CliError::new(Exit::Software, e.to_string()))?;
        if let Some((p, s)) = at {
            v["position"] = p.into();
            v["station"] = s.into();
        }
        v["name"] = img.name().map(|s| s.into_owned()).into();
        v["warnings_text"] = img
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .into();
        writeln!(ctx.out(), "{v}")?;
        return Ok(());
    }
    print_decoded(ctx.out(), label, &img)?;
    Ok(())
}

fn sm_kind(k: SmType) -> String {
    match k {
        SmType::Unused => "unused".into(),
        SmType::MailboxOut => "mailbox out".into(),
        SmType::MailboxIn => "mailbox in".into(),
        SmType::ProcessDataOut => "process data out".into(),
        SmType::ProcessDataIn => "process data in".into(),
        SmType::Other(v) => format!("type {v}"),
    }
}

fn text(img: &SiiImage, i: u8) -> String {
    match img.string(i) {
        None => "-".into(),
        Some(s) if s.is_printable() => format!("{:?}", s.text()),
        Some(s) => format!("<{} bytes of binary data>", s.0.len()),
    }
}

/// Writes the decoded SII as text.
pub fn print_decoded(out: &mut dyn Write, label: &str, img: &SiiImage) -> std::io::Result<()> {
    let h = &img.header;
    writeln!(out, "{label}")?;
    writeln!(out, "  Identity:    {}", h.identity)?;
    writeln!(
        out,
        "  Alias:       0x{:04x}    Checksum: 0x{:02x} ({})    EEPROM: {} bytes, SII version {}",
        h.station_alias,
        h.checksum,
        if h.checksum_ok { "ok" } else { "WRONG" },
        h.eeprom_size_bytes,
        h.version
    )?;
    if let Some(g) = &img.general {
        writeln!(
            out,
            "  Name:        {}    Order: {}    Group: {}",
            text(img, g.name_index),
            text(img, g.order_index),
            text(img, g.group_index)
        )?;
        writeln!(
            out,
            "  General:     CoE details 0x{:02x} (SDO {}, SDO info {}, PDO assign {}, PDO config {}, complete access {}), FoE {}, EoE {}, E-bus current {} mA, flags 0x{:02x}, ports 0x{:04x}",
            g.coe.0,
            g.coe.sdo(),
            g.coe.sdo_info(),
            g.coe.pdo_assign(),
            g.coe.pdo_config(),
            g.coe.complete_access(),
            g.foe & 1 != 0,
            g.eoe & 1 != 0,
            g.ebus_current_ma,
            g.flags,
            g.physical_ports
        )?;
    }
    if img.has_mailbox() {
        writeln!(
            out,
            "  Mailbox:     out 0x{:04x}+{}, in 0x{:04x}+{}, protocols {}",
            h.rx_mailbox.offset,
            h.rx_mailbox.size,
            h.tx_mailbox.offset,
            h.tx_mailbox.size,
            h.mailbox_protocols.names().join(" ")
        )?;
    } else {
        writeln!(out, "  Mailbox:     none")?;
    }
    writeln!(out, "  Strings ({}):", img.strings.len())?;
    for i in 1..=img.strings.len().min(255) {
        writeln!(out, "    {i:>3} {}", text(img, i as u8))?;
    }
    if !img.fmmus.is_empty() {
        let f: Vec<String> = img
            .fmmus
            .iter()
            .enumerate()
            .map(|(i, u)| format!("{i}: {u:?}"))
            .collect();
        writeln!(out, "  FMMUs:       {}", f.join(", "))?;
    }
    for (i, f) in img.fmmu_ex.iter().enumerate() {
        writeln!(
            out,
            "  FMMU ext {i}:  SyncManager {}, sync unit {}",
            f.sync_manager, f.sync_unit
        )?;
    }
    if !img.sync_units.is_empty() {
        let s: Vec<String> = img
            .sync_units
            .iter()
            .map(|u| format!("0x{:04x}", u.0))
            .collect();
        writeln!(out, "  Sync units:  {}", s.join(", "))?;
    }
    for (i, sm) in img.sync_managers.iter().enumerate() {
        writeln!(
            out,
            "  SM{i}:         start 0x{:04x} length {} control 0x{:02x} enable 0x{:02x} {}",
            sm.start,
            sm.length,
            sm.control,
            sm.enable,
            sm_kind(sm.kind)
        )?;
    }
    for p in img.pdos() {
        let dir = match p.direction {
            crate::ethercat::sii::PdoDirection::Rx => "RxPDO",
            crate::ethercat::sii::PdoDirection::Tx => "TxPDO",
        };
        let sm = if p.assigned() {
            format!("SM{}", p.sync_manager)
        } else {
            "not assigned".into()
        };
        writeln!(
            out,
            "  {dir} 0x{:04x} {} {sm}, {} bit",
            p.index,
            text(img, p.name_index),
            p.bit_len()
        )?;
        for e in &p.entries {
            if e.index == 0 {
                writeln!(out, "    0x0000:00 {:>3} bit gap", e.bit_len)?;
            } else {
                writeln!(
                    out,
                    "    0x{:04x}:{:02x} {:>3} bit {:<8} {}",
                    e.index,
                    e.subindex,
                    e.bit_len,
                    data_type_name(u16::from(e.data_type)),
                    text(img, e.name_index)
                )?;
            }
        }
    }
    for d in &img.dc_modes {
        writeln!(
            out,
            "  DC mode {}: assign/activate 0x{:04x}, cycle {} ns, shift {} ns / {} ns, SYNC0 factor {}, SYNC1 factor {}",
            text(img, d.name_index),
            d.assign_activate,
            d.cycle_time_0,
            d.shift_time_0,
            d.shift_time_1,
            d.sync0_cycle_factor,
            d.sync1_cycle_factor
        )?;
    }
    for c in &img.other {
        writeln!(
            out,
            "  Category {} (type 0x{:04x}): {} bytes not decoded",
            kind::name(c.kind),
            c.kind,
            c.data.len()
        )?;
    }
    let cats: Vec<String> = img
        .categories
        .iter()
        .map(|c| format!("{}@0x{:04x}", kind::name(c.kind), c.word_offset))
        .collect();
    writeln!(out, "  Categories:  {}", cats.join(" "))?;
    for w in &img.warnings {
        writeln!(out, "  Warning:     {w}")?;
    }
    Ok(())
}
