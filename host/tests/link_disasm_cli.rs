//! `ferrocat disasm` end to end: a fragment file, raw instruction bytes and damaged
//! input, through the real binary.

use ferrocat_plugin_api::ebpf::insn::{AluOp, Insn, Reg, Size, Src, encode, to_bytes};
use ferrocat_plugin_api::fragment::{
    Fragment, RelocKind, Relocation, ScalarType, VarDecl, VarKind, VarType, helper,
};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A temporary file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(bytes: &[u8]) -> TempFile {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "ferrocat-disasm-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, bytes).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn ferrocat(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrocat"))
        .args(args)
        .output()
        .expect("run ferrocat");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sample() -> Fragment {
    let r = |n| Reg::new(n).expect("register");
    Fragment {
        name: "motor0".into(),
        uses_cycle_time: false,
        sets_verdict: false,
        frame_size: 8,
        fixed_packet_len: 0,
        vars: vec![
            VarDecl {
                kind: VarKind::Terminal {
                    link: "stepper".into(),
                    optional: true,
                },
                name: "velocity".into(),
                ty: VarType::le(ScalarType::I16),
            },
            VarDecl {
                kind: VarKind::Device,
                name: "target".into(),
                ty: VarType::le(ScalarType::I32),
            },
        ],
        insns: encode(&[
            Insn::Load {
                size: Size::W,
                signed: false,
                dst: r(1),
                src: r(8),
                off: 0,
            },
            Insn::Store {
                size: Size::H,
                dst: r(9),
                off: 0,
                src: Src::Reg(r(1)),
            },
            Insn::Call { helper: 0 },
            Insn::Store {
                size: Size::DW,
                dst: r(10),
                off: -8,
                src: Src::Reg(r(0)),
            },
            Insn::Alu {
                wide: true,
                op: AluOp::Mov,
                dst: r(0),
                src: Src::Imm(0),
            },
        ]),
        relocs: vec![
            Relocation {
                insn: 0,
                kind: RelocKind::DeviceVar(1),
            },
            Relocation {
                insn: 1,
                kind: RelocKind::Optional {
                    link: "stepper".into(),
                    len: 1,
                },
            },
            Relocation {
                insn: 1,
                kind: RelocKind::TerminalByte(0),
            },
            Relocation {
                insn: 2,
                kind: RelocKind::Helper(helper::KTIME_GET_NS),
            },
            Relocation {
                insn: 3,
                kind: RelocKind::Stack,
            },
        ],
    }
}

#[test]
fn fragment_file_is_listed_with_relocations() {
    let file = TempFile::new(&sample().to_bytes());
    let (code, out, err) = ferrocat(&["disasm", file.0.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "\
; fragment \"motor0\", format version 1: 5 slots, frame 8 bytes, fixed packet length 0
; var 0: terminal stepper.velocity: i16 (optional link)
; var 1: device target: i32
0: (61) r1 = *(u32 *)(r8 +0)    ; DeviceVar target
1: (6b) *(u16 *)(r9 +0) = r1    ; Optional \"stepper\" (1 slot), TerminalByte stepper.velocity, end of Optional \"stepper\"
2: (85) call unknown#0    ; Helper bpf_ktime_get_ns#5
3: (7b) *(u64 *)(r10 -8) = r0    ; Stack
4: (b7) r0 = 0
"
    );
    let (code, out, _) = ferrocat(&["--json", "disasm", file.0.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0);
    let first: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("a line")).expect("json");
    assert_eq!(first["slot"], 0);
    assert_eq!(first["text"], "(61) r1 = *(u32 *)(r8 +0)");
    assert_eq!(first["relocations"][0], "DeviceVar target");
}

#[test]
fn raw_bytes_and_bad_input() {
    let raw = to_bytes(&encode(&[
        Insn::LdImm64 {
            dst: Reg::R1,
            imm: 0x1234567890,
        },
        Insn::Exit,
    ]));
    let file = TempFile::new(&raw);
    let (code, out, err) = ferrocat(&["disasm", file.0.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "0: (18) r1 = 0x1234567890\n2: (95) exit\n");

    let mut damaged = sample().to_bytes();
    damaged[4] = 9; // format version 9
    let file = TempFile::new(&damaged);
    let (code, _, err) = ferrocat(&["disasm", file.0.to_str().expect("utf-8 path")]);
    assert_eq!(code, 65, "{err}");
    assert!(
        err.contains("\"motor0\" has format version 9; this host links versions [1]"),
        "{err}"
    );

    let file = TempFile::new(&[1, 2, 3]);
    let (code, _, err) = ferrocat(&["disasm", file.0.to_str().expect("utf-8 path")]);
    assert_eq!(code, 65);
    assert!(
        err.contains("not a whole number of 8-byte instructions"),
        "{err}"
    );

    let (code, _, err) = ferrocat(&["disasm", "/nonexistent/ferrocat-fragment"]);
    assert_eq!(code, 66, "{err}");
}
