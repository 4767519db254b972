//! Kernel tests of program loading, verifier errors, test runs and run statistics.
//! They need root (CAP_BPF, CAP_NET_ADMIN) and fail without it.

use ferrocat::bpf::prog::{
    LoadError, LoadOptions, ProgType, Program, RunStats, SourceMap, xdp_action,
};
use ferrocat_plugin_api::ebpf::disasm;
use ferrocat_plugin_api::ebpf::insn::{AluOp, Insn, JmpCond, RawInsn, Reg, Size, Src, encode};

fn mov(dst: Reg, imm: i32) -> Insn {
    Insn::Alu {
        wide: true,
        op: AluOp::Mov,
        dst,
        src: Src::Imm(imm),
    }
}

fn load(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
    Insn::Load {
        size,
        signed: false,
        dst,
        src,
        off,
    }
}

/// Writes 0xaa into byte 0 of frames of at least 14 bytes and bounces them (XDP_TX);
/// drops shorter ones.
fn marker_program() -> Vec<RawInsn> {
    encode(&[
        load(Size::W, Reg::R2, Reg::R1, 0), // data
        load(Size::W, Reg::R3, Reg::R1, 4), // data_end
        Insn::Alu {
            wide: true,
            op: AluOp::Mov,
            dst: Reg::R4,
            src: Src::Reg(Reg::R2),
        },
        Insn::Alu {
            wide: true,
            op: AluOp::Add,
            dst: Reg::R4,
            src: Src::Imm(14),
        },
        Insn::Jmp {
            wide: true,
            cond: JmpCond::Gt,
            dst: Reg::R4,
            src: Src::Reg(Reg::R3),
            off: 3,
        },
        Insn::Store {
            size: Size::B,
            dst: Reg::R2,
            off: 0,
            src: Src::Imm(0xaa),
        },
        mov(Reg::R0, xdp_action::TX as i32),
        Insn::Exit,
        mov(Reg::R0, xdp_action::DROP as i32),
        Insn::Exit,
    ])
}

fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

#[test]
fn xdp_program_loads_and_test_run_returns_verdict_and_packet() {
    let p = Program::load_xdp("marker", &marker_program())
        .unwrap_or_else(|e| panic!("load failed: {e}"));
    let stats = p.verifier_stats().expect("verifier statistics on success");
    assert!(stats.processed_insns >= 9, "{stats}");
    assert_eq!(stats.insn_limit, 1_000_000);

    let input = frame(60);
    let run = p.test_run(&input).expect("test run");
    assert_eq!(run.retval, xdp_action::TX);
    let mut expected = input.clone();
    expected[0] = 0xaa;
    assert_eq!(run.data, expected);

    let info = p.info().expect("info");
    assert_eq!(info.prog_type, ProgType::Xdp.number());
    assert_eq!(info.name, "marker");
    assert!(info.id > 0);
    assert!(info.verified_insns >= 9);
}

#[test]
fn rejected_program_error_shows_the_failing_instruction_and_fragment() {
    // Reads the packet without checking data_end: rejected at slot 4.
    let insns = [
        mov(Reg::R0, 2),
        load(Size::W, Reg::R2, Reg::R1, 0),
        mov(Reg::R3, 1),
        mov(Reg::R4, 2),
        load(Size::B, Reg::R0, Reg::R2, 3),
        Insn::Exit,
    ];
    let slots = encode(&insns);
    let mut map = SourceMap::new();
    map.push(0..2, "prologue");
    map.push(2..6, "reader");
    let opts = LoadOptions::xdp("unchecked").with_source_map(&map);
    let err = Program::load(&slots, &opts).expect_err("the verifier must reject it");
    let LoadError::Rejected(v) = &err else {
        panic!("expected a verifier rejection, got: {err}");
    };
    assert_eq!(v.failing_insn, Some(4), "{err}");
    assert_eq!(v.fragment.as_ref().map(|f| f.0.as_str()), Some("reader"));
    assert!(v.message.contains("outside of the packet"), "{}", v.message);
    let text = err.to_string();
    let failing = disasm::format_insn(&insns[4]);
    assert!(text.contains(&format!(" > 4: (71) {failing}")), "{text}");
    assert!(text.contains("in fragment `reader`"), "{text}");
    assert!(
        text.contains(&format!("4: (71) {failing}")),
        "the verifier log too: {text}"
    );
}

#[test]
fn control_flow_errors_name_the_instruction() {
    // A jump past the end of the program.
    let slots = encode(&[mov(Reg::R0, 2), Insn::Ja { off: 5 }, Insn::Exit]);
    let err = Program::load_xdp("loop", &slots).expect_err("rejected");
    let LoadError::Rejected(v) = &err else {
        panic!("expected a verifier rejection, got: {err}");
    };
    assert_eq!(v.failing_insn, Some(1), "{err}");
    assert!(v.message.contains("jump out of range"), "{err}");
    assert!(!v.message.contains("verification time"), "{err}");
}

#[test]
fn run_statistics_count_test_runs() {
    let _stats = RunStats::enable().expect("BPF_ENABLE_STATS");
    let p = Program::load_xdp("counted", &marker_program()).expect("load");
    let run = p.test_run_repeat(&frame(64), 1000).expect("test run");
    assert_eq!(run.retval, xdp_action::TX);
    let info = p.info().expect("info");
    assert_eq!(info.run_cnt, 1000);
    assert!(info.run_time_ns > 0);
}

#[test]
fn a_bare_ethernet_header_passes_the_bounds_check_shorter_frames_are_refused() {
    let p = Program::load_xdp("marker", &marker_program()).expect("load");
    // 14 bytes: data + 14 == data_end, the program may write byte 0.
    let run = p.test_run(&frame(14)).expect("test run");
    assert_eq!(run.retval, xdp_action::TX);
    assert_eq!(run.data[0], 0xaa);
    assert_eq!(run.data[1..], frame(14)[1..]);
    // Shorter than an Ethernet header: the kernel refuses the test run itself.
    let e = p.test_run(&frame(13)).expect_err("13 bytes");
    assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
}

#[test]
fn loaded_programs_are_listed_and_reopened_by_id() {
    let p = Program::load_xdp("listed", &marker_program()).expect("load");
    let id = p.id().expect("id");
    let ids = ferrocat::bpf::prog::program_ids().expect("ids");
    assert!(ids.contains(&id), "{id} not in {ids:?}");
    let again = Program::from_id(id).expect("open by id");
    assert_eq!(again.info().expect("info").name, "listed");
    assert_eq!(
        again.test_run(&frame(20)).expect("run").retval,
        xdp_action::TX
    );
}

/// An exclusive lock every process running the sysctl test takes (flock on a file in
/// the temporary directory), so that two concurrent runs cannot restore the system-wide
/// setting under each other; released when dropped, also on panic.
struct SysctlLock(#[allow(dead_code)] std::fs::File);

impl SysctlLock {
    fn take() -> SysctlLock {
        let path = std::env::temp_dir().join("ferrocat-test-bpf-stats-sysctl.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        SysctlLock(f)
    }
}

/// Puts `kernel.bpf_stats_enabled` back when dropped, also on panic.
struct RestoreSysctl(bool);

impl Drop for RestoreSysctl {
    fn drop(&mut self) {
        if let Err(e) = RunStats::set_sysctl(self.0) {
            eprintln!("cannot restore kernel.bpf_stats_enabled: {e}");
        }
    }
}

#[test]
fn run_statistics_through_the_sysctl() {
    let _lock = SysctlLock::take();
    let before = RunStats::sysctl_enabled().expect("read kernel.bpf_stats_enabled");
    let _restore = RestoreSysctl(before);
    RunStats::set_sysctl(true).expect("write kernel.bpf_stats_enabled");
    assert!(RunStats::sysctl_enabled().expect("read back"));
    let p = Program::load_xdp("sysctl_counted", &marker_program()).expect("load");
    let result = p.test_run_repeat(&frame(64), 10);
    let info = p.info();
    assert_eq!(result.expect("run").retval, xdp_action::TX);
    assert_eq!(info.expect("info").run_cnt, 10);
}
