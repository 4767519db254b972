//! `ferrocat disasm`: the listing of a fragment file or of raw eBPF instruction bytes,
//! in the kernel verifier's syntax, with relocations annotated.

use super::{CliError, Context, Exit};
use ferrocat_plugin_api::ebpf::disasm;
use ferrocat_plugin_api::ebpf::insn::RawInsn;
use ferrocat_plugin_api::fragment::encoding::MAGIC;
use ferrocat_plugin_api::fragment::{
    FRAGMENT_FORMAT_VERSION, Fragment, RelocKind, VarDecl, VarKind,
};
use std::io::Read;
use std::path::PathBuf;

/// Disassemble a fragment file or raw instruction bytes.
///
/// A file starting with "FCFR" is read as a fragment (docs/fragment-abi.md): its
/// variables are listed, then each instruction with the relocations that patch it and
/// the Optional regions that contain it. Any other file (or `--raw`) is read as
/// 8-byte `struct bpf_insn` slots. Slots that do not decode are shown as such.
///
/// Examples:
///   ferrocat disasm motor.fcfr          a fragment, annotated
///   ferrocat disasm --raw prog.bin      raw instruction bytes
///   ferrocat disasm motor.fcfr --json   one JSON object per instruction
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The file to read (`-` for standard input).
    pub file: PathBuf,
    /// Read raw instruction bytes even if the file starts like a fragment.
    #[arg(long)]
    pub raw: bool,
}

/// What a file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An encoded fragment.
    Fragment(Fragment),
    /// Raw instruction slots.
    Raw(Vec<RawInsn>),
}

/// Reads `bytes` as a fragment (if they start with the fragment magic and `raw` is not
/// set) or as raw instruction slots.
pub fn parse_input(bytes: &[u8], raw: bool) -> Result<Input, CliError> {
    if !raw && bytes.starts_with(&MAGIC) {
        return Fragment::from_bytes(bytes)
            .map(Input::Fragment)
            .map_err(|e| CliError::new(Exit::DataErr, format!("not a valid fragment: {e}")));
    }
    if bytes.len() % 8 != 0 {
        return Err(CliError::new(
            Exit::DataErr,
            format!(
                "{} bytes is not a whole number of 8-byte instructions (and not a fragment: \
                 no \"FCFR\" magic)",
                bytes.len()
            ),
        ));
    }
    Ok(Input::Raw(
        bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                RawInsn::from_bytes(b)
            })
            .collect(),
    ))
}

fn var_text(v: &VarDecl) -> String {
    let ty = crate::link::type_name(v.ty);
    match &v.kind {
        VarKind::Terminal { link, optional } => format!(
            "terminal {link}.{}: {ty}{}",
            v.name,
            if *optional { " (optional link)" } else { "" }
        ),
        VarKind::Device => format!("device {}: {ty}", v.name),
        VarKind::Foreign { link } => format!("foreign {link}.{}: {ty}", v.name),
    }
}

fn var_ref(f: &Fragment, index: u32) -> String {
    match f.vars.get(index as usize) {
        Some(v) => match &v.kind {
            VarKind::Terminal { link, .. } | VarKind::Foreign { link } => {
                format!("{link}.{}", v.name)
            }
            VarKind::Device => v.name.clone(),
        },
        None => format!("<variable {index}>"),
    }
}

/// The annotation of one relocation, e.g. `TerminalByte stepper.velocity`.
pub fn reloc_text(f: &Fragment, kind: &RelocKind) -> String {
    match kind {
        RelocKind::TerminalByte(v) => format!("TerminalByte {}", var_ref(f, *v)),
        RelocKind::TerminalBitShift(v) => format!("TerminalBitShift {}", var_ref(f, *v)),
        RelocKind::TerminalBitMask(v) => format!("TerminalBitMask {}", var_ref(f, *v)),
        RelocKind::TerminalBitClear(v) => format!("TerminalBitClear {}", var_ref(f, *v)),
        RelocKind::DeviceVar(v) => format!("DeviceVar {}", var_ref(f, *v)),
        RelocKind::Stack => "Stack".to_string(),
        RelocKind::Helper(id) => match disasm::helper_name(*id) {
            Some(name) => format!("Helper {name}#{id}"),
            None => format!("Helper #{id}"),
        },
        RelocKind::Optional { link, len } => {
            format!(
                "Optional {link:?} ({len} slot{})",
                if *len == 1 { "" } else { "s" }
            )
        }
    }
}

/// One listing line: slot, `(code) text`, and the relocations on that slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingLine {
    /// Slot of the instruction.
    pub slot: usize,
    /// `(code) text` as the verifier prints it.
    pub text: String,
    /// Annotations: relocations of this slot, Optional regions starting or ending here.
    pub notes: Vec<String>,
}

/// The lines of a fragment's listing.
pub fn fragment_lines(f: &Fragment) -> Vec<ListingLine> {
    disasm::disassemble(&f.insns)
        .into_iter()
        .map(|(slot, text)| {
            let mut notes: Vec<String> = f
                .relocs
                .iter()
                .filter(|r| r.insn as usize == slot)
                .map(|r| reloc_text(f, &r.kind))
                .collect();
            for r in &f.relocs {
                if let RelocKind::Optional { link, len } = &r.kind
                    && len > &0
                    && r.insn as usize + *len as usize == slot + 1
                {
                    notes.push(format!("end of Optional {link:?}"));
                }
            }
            ListingLine { slot, text, notes }
        })
        .collect()
}

/// The annotated listing of a fragment, header first.
pub fn render_fragment(f: &Fragment) -> String {
    let mut out = format!(
        "; fragment {:?}, format version {FRAGMENT_FORMAT_VERSION}: {} slots, frame {} bytes, fixed packet length {}",
        f.name,
        f.insns.len(),
        f.frame_size,
        f.fixed_packet_len
    );
    if f.uses_cycle_time {
        out.push_str(", uses cycle time");
    }
    if f.sets_verdict {
        out.push_str(", sets verdict");
    }
    out.push('\n');
    for (i, v) in f.vars.iter().enumerate() {
        out.push_str(&format!("; var {i}: {}\n", var_text(v)));
    }
    for line in fragment_lines(f) {
        out.push_str(&format!("{}: {}", line.slot, line.text));
        if !line.notes.is_empty() {
            out.push_str(&format!("    ; {}", line.notes.join(", ")));
        }
        out.push('\n');
    }
    out
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    let mut bytes = Vec::new();
    let result = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    result.map_err(|e| {
        CliError::new(
            Exit::NoInput,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    Ok(bytes)
}

/// Run `ferrocat disasm`.
pub async fn run(args: Args, ctx: &mut Context) -> Result<(), CliError> {
    let bytes = read_file(&args.file)?;
    let input = parse_input(&bytes, args.raw)?;
    let json = ctx.json();
    let text = match (&input, json) {
        (Input::Fragment(f), false) => render_fragment(f),
        (Input::Raw(slots), false) => disasm::listing(slots),
        (Input::Fragment(f), true) => fragment_lines(f)
            .into_iter()
            .map(|l| {
                serde_json::json!({
                    "fragment": f.name,
                    "slot": l.slot,
                    "text": l.text,
                    "relocations": l.notes,
                })
                .to_string()
                    + "\n"
            })
            .collect(),
        (Input::Raw(slots), true) => disasm::disassemble(slots)
            .into_iter()
            .map(|(slot, text)| serde_json::json!({"slot": slot, "text": text}).to_string() + "\n")
            .collect(),
    };
    ctx.out()
        .write_all(text.as_bytes())
        .map_err(|e| CliError::new(Exit::IoErr, format!("cannot write the listing: {e}")))
}
