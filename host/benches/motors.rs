//! Benchmark of the seed's motor control law for 1, 8 and 64 motors in one sync-group
//! program: generated with the `ebpf!` DSL (`ferrocat_plugin_api::devices::motor`) and,
//! for comparison, from a hand-written minimal listing of the same logic (one motor's
//! instructions assembled by hand, repeated). For each it prints the instructions, the
//! time to build the fragments, link (including the variable map's creation), and
//! verify + load the program ("load ms"), the verifier's
//! processed instructions, and the kernel's nanoseconds per run (`BPF_PROG_TEST_RUN`
//! with repeat). Needs root. Run with `cargo bench -p ferrocat --bench motors`.
//!
//! Figures to beat (ebpfcat 1.0.0, DESIGN.md): 8 motors 459 instructions 378 ns per run;
//! 64 motors 3539 instructions, 3.4 us per run, ~110 ms from Python to a loaded program.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferrocat::bpf::map::{Map, MapSpec};
use ferrocat::bpf::prog::{LoadOptions, Program, xdp_action};
use ferrocat::link::{
    GroupDevice, GroupLink, LinkedProgram, TerminalLayout, VariableAddress, link_group,
    variable_block,
};
use ferrocat_plugin_api::devices::motor::Motor;
use ferrocat_plugin_api::ebpf::builder::Builder;
use ferrocat_plugin_api::ebpf::insn::{AluOp, Insn, JmpCond, Reg, Size, Src};
use ferrocat_plugin_api::fragment::{Fragment, RelocKind, Relocation, VarDecl};

/// Bytes before the first motor's process data.
const IMAGE_START: u32 = 16;
/// Bytes of process data per motor.
const STRIDE: u32 = 12;
/// How much to measure: the full benchmark under `cargo bench`, a quick check of the
/// same code paths when `cargo test --all-targets` runs this program without `--bench`.
#[derive(Clone, Copy)]
struct Effort {
    /// Times each build + link + load is repeated (the median is printed).
    rounds: usize,
    /// Runs per `BPF_PROG_TEST_RUN` measurement.
    repeat: u32,
}

fn base(i: usize) -> u32 {
    IMAGE_START + STRIDE * i as u32
}

fn stepper(i: usize) -> TerminalLayout {
    let b = base(i);
    TerminalLayout::new(format!("EL7041 #{i}"))
        .with("encoder", VariableAddress::bytes(b, 32))
        .with("velocity", VariableAddress::bytes(b + 4, 16))
        .with("control_word", VariableAddress::bytes(b + 6, 16))
        .with("enabled", VariableAddress::bits(b + 8, 0, 1))
        .with("encoder_error", VariableAddress::bits(b + 8, 1, 1))
        .with("reduced_current", VariableAddress::bits(b + 9, 0, 1))
}

fn switches(i: usize) -> TerminalLayout {
    let b = base(i);
    TerminalLayout::new(format!("EL1008 #{i}"))
        .with("low_switch", VariableAddress::bits(b + 8, 3, 1))
        .with("high_switch", VariableAddress::bits(b + 8, 4, 1))
}

/// One motor from the DSL, with every optional terminal variable.
fn dsl_motor(name: &str) -> Fragment {
    let b = Builder::new(name);
    let m = Motor::declare(&b, &|_| true);
    m.program(&b, |s| m.calculate_speed(s));
    match b.finish() {
        Ok(f) => f,
        Err(e) => panic!("the DSL motor does not build: {e}"),
    }
}

/// A hand-assembled fragment: instructions with relocations by variable name, jumps by
/// label.
struct Asm<'a> {
    vars: &'a [VarDecl],
    items: Vec<(Insn, Vec<RelocKind>, Option<&'static str>)>,
    labels: BTreeMap<&'static str, usize>,
}

fn r(n: u8) -> Reg {
    Reg::new(n).unwrap_or_else(|| panic!("register r{n}"))
}

impl<'a> Asm<'a> {
    fn var(&self, name: &str) -> u32 {
        self.vars
            .iter()
            .position(|v| v.name == name)
            .unwrap_or_else(|| panic!("variable {name}")) as u32
    }
    fn emit(&mut self, insn: Insn, relocs: Vec<RelocKind>) {
        self.items.push((insn, relocs, None));
    }
    fn label(&mut self, l: &'static str) {
        self.labels.insert(l, self.items.len());
    }
    fn alu(&mut self, op: AluOp, dst: u8, src: Src) {
        self.emit(
            Insn::Alu {
                wide: true,
                op,
                dst: r(dst),
                src,
            },
            vec![],
        );
    }
    fn alu_reloc(&mut self, op: AluOp, dst: u8, reloc: RelocKind) {
        self.emit(
            Insn::Alu {
                wide: true,
                op,
                dst: r(dst),
                src: Src::Imm(0),
            },
            vec![reloc],
        );
    }
    /// `dst = *(size *)(r8 + device var)`.
    fn ld_dev(&mut self, size: Size, dst: u8, var: &str) {
        let v = self.var(var);
        self.emit(
            Insn::Load {
                size,
                signed: false,
                dst: r(dst),
                src: r(8),
                off: 0,
            },
            vec![RelocKind::DeviceVar(v)],
        );
    }
    fn st_dev(&mut self, size: Size, var: &str, src: Src) {
        let v = self.var(var);
        self.emit(
            Insn::Store {
                size,
                dst: r(8),
                off: 0,
                src,
            },
            vec![RelocKind::DeviceVar(v)],
        );
    }
    /// `dst = *(size *)(r9 + terminal var)`.
    fn ld_term(&mut self, size: Size, signed: bool, dst: u8, var: &str) {
        let v = self.var(var);
        self.emit(
            Insn::Load {
                size,
                signed,
                dst: r(dst),
                src: r(9),
                off: 0,
            },
            vec![RelocKind::TerminalByte(v)],
        );
    }
    fn st_term(&mut self, size: Size, var: &str, src: u8) {
        let v = self.var(var);
        self.emit(
            Insn::Store {
                size,
                dst: r(9),
                off: 0,
                src: Src::Reg(r(src)),
            },
            vec![RelocKind::TerminalByte(v)],
        );
    }
    /// `dst = bit var & mask` (non-zero if set).
    fn bit(&mut self, dst: u8, var: &str) {
        self.ld_term(Size::B, false, dst, var);
        let v = self.var(var);
        self.alu_reloc(AluOp::And, dst, RelocKind::TerminalBitMask(v));
    }
    fn jmp(&mut self, cond: JmpCond, dst: u8, src: Src, to: &'static str) {
        self.items.push((
            Insn::Jmp {
                wide: true,
                cond,
                dst: r(dst),
                src,
                off: 0,
            },
            vec![],
            Some(to),
        ));
    }
    fn ja(&mut self, to: &'static str) {
        self.items.push((Insn::Ja { off: 0 }, vec![], Some(to)));
    }

    fn finish(self, name: &str) -> Fragment {
        let mut insns = Vec::new();
        let mut relocs = Vec::new();
        for (at, (insn, kinds, target)) in self.items.iter().enumerate() {
            let insn = match (insn, target) {
                (
                    Insn::Jmp {
                        wide,
                        cond,
                        dst,
                        src,
                        ..
                    },
                    Some(t),
                ) => Insn::Jmp {
                    wide: *wide,
                    cond: *cond,
                    dst: *dst,
                    src: *src,
                    off: (self.labels[t] as i16) - at as i16 - 1,
                },
                (Insn::Ja { .. }, Some(t)) => Insn::Ja {
                    off: (self.labels[t] as i16) - at as i16 - 1,
                },
                (other, _) => *other,
            };
            for k in kinds {
                relocs.push(Relocation {
                    insn: insns.len() as u32,
                    kind: k.clone(),
                });
            }
            insn.encode(&mut insns);
        }
        Fragment {
            name: name.into(),
            uses_cycle_time: true,
            sets_verdict: false,
            frame_size: 0,
            fixed_packet_len: 0,
            vars: self.vars.to_vec(),
            insns,
            relocs,
        }
    }
}

/// The seed's law for one motor (all options), assembled by hand with every value kept
/// in a register: r4 = velocity_diff, r5 = speed, r6 = velocity, r7 = last_velocity.
fn hand_motor(name: &str, vars: &[VarDecl]) -> Fragment {
    use AluOp::*;
    use JmpCond::*;
    let imm = Src::Imm;
    let reg = |n| Src::Reg(r(n));
    let mut a = Asm {
        vars,
        items: Vec::new(),
        labels: BTreeMap::new(),
    };
    // velocity_diff = (max_acceleration * (now - lasttime)) >> 32
    a.emit(
        Insn::Load {
            size: Size::DW,
            signed: false,
            dst: r(1),
            src: r(10),
            off: -8,
        },
        vec![],
    );
    a.ld_dev(Size::DW, 2, "lasttime");
    a.alu(Mov, 3, reg(1));
    a.alu(Sub, 3, reg(2));
    a.ld_dev(Size::DW, 4, "max_acceleration");
    a.alu(Mul, 4, reg(3));
    a.alu(Rsh, 4, imm(32));
    a.jmp(SLe, 4, imm(0), "no_time");
    a.st_dev(Size::DW, "lasttime", reg(1));
    a.label("no_time");
    // control_word = set_control_word
    a.ld_dev(Size::H, 1, "set_control_word");
    a.st_term(Size::H, "control_word", 1);
    // error = target - encoder; reduced current by |error| vs deadband
    a.ld_dev(Size::DW, 5, "target");
    a.ld_term(Size::W, true, 1, "encoder");
    a.alu(Sub, 5, reg(1));
    a.alu(Mov, 1, reg(5));
    a.jmp(SGe, 1, imm(0), "positive");
    a.emit(
        Insn::Neg {
            wide: true,
            dst: r(1),
        },
        vec![],
    );
    a.label("positive");
    a.ld_dev(Size::DW, 2, "deadband");
    a.ld_term(Size::B, false, 3, "reduced_current");
    a.jmp(SLe, 1, reg(2), "inside");
    let rc = a.var("reduced_current");
    a.alu_reloc(And, 3, RelocKind::TerminalBitClear(rc));
    a.st_dev(Size::B, "deadband_exceeded", imm(1));
    a.ja("rc_done");
    a.label("inside");
    a.alu_reloc(Or, 3, RelocKind::TerminalBitMask(rc));
    a.label("rc_done");
    a.st_term(Size::B, "reduced_current", 3);
    // speed = (proportional * error) >> 16, limited to +-max_velocity
    a.ld_dev(Size::DW, 1, "proportional");
    a.alu(Mul, 5, reg(1));
    a.alu(Arsh, 5, imm(16));
    a.ld_dev(Size::DW, 2, "max_velocity");
    a.jmp(SLe, 5, reg(2), "below_max");
    a.alu(Mov, 5, reg(2));
    a.label("below_max");
    a.alu(Mov, 1, reg(5));
    a.alu(Add, 1, reg(2));
    a.jmp(SGe, 1, imm(0), "above_min");
    a.alu(Mov, 5, reg(2));
    a.emit(
        Insn::Neg {
            wide: true,
            dst: r(5),
        },
        vec![],
    );
    a.label("above_min");
    // limit switches and encoder error
    a.bit(1, "low_switch");
    a.jmp(Eq, 1, imm(0), "low_ok");
    a.jmp(SGe, 5, imm(0), "low_ok");
    a.alu(Mov, 5, imm(0));
    a.label("low_ok");
    a.bit(1, "high_switch");
    a.jmp(Eq, 1, imm(0), "high_ok");
    a.jmp(SLe, 5, imm(0), "high_ok");
    a.alu(Mov, 5, imm(0));
    a.label("high_ok");
    a.bit(1, "encoder_error");
    a.jmp(Eq, 1, imm(0), "no_error");
    a.alu(Mov, 5, imm(0));
    a.label("no_error");
    // velocity = speed, limited to last_velocity +- velocity_diff
    a.ld_dev(Size::DW, 7, "last_velocity");
    a.alu(Mov, 6, reg(5));
    a.alu(Mov, 2, reg(7));
    a.alu(Add, 2, reg(4));
    a.jmp(SLe, 5, reg(2), "not_faster");
    a.alu(Mov, 6, reg(2));
    a.ja("limited");
    a.label("not_faster");
    a.alu(Add, 5, reg(4));
    a.jmp(SLe, 7, reg(5), "limited");
    a.alu(Mov, 6, reg(7));
    a.alu(Sub, 6, reg(4));
    a.label("limited");
    a.st_term(Size::H, "velocity", 6);
    // last_velocity = enabled ? (i16) velocity : 0
    a.bit(1, "enabled");
    a.alu(Mov, 7, imm(0));
    a.jmp(Eq, 1, imm(0), "disabled");
    a.emit(
        Insn::MovSx {
            wide: true,
            dst: r(7),
            src: r(6),
            bits: 16,
        },
        vec![],
    );
    a.label("disabled");
    a.st_dev(Size::DW, "last_velocity", reg(7));
    a.finish(name)
}

/// Makes one motor's fragment from its name.
type MakeMotor<'a> = Box<dyn Fn(&str) -> Fragment + 'a>;

/// Figures of one variant for one motor count.
struct Figures {
    insns: usize,
    build: Duration,
    link: Duration,
    load: Duration,
    processed: u64,
    run_ns: u32,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Builds, links, loads and runs `n` motors made by `make`.
fn measure(n: usize, name: &str, make: &dyn Fn(&str) -> Fragment, effort: Effort) -> Figures {
    let (mut builds, mut links, mut loads) = (Vec::new(), Vec::new(), Vec::new());
    let mut last: Option<(LinkedProgram, Program, Map)> = None;
    for _ in 0..effort.rounds {
        let t = Instant::now();
        let fragments: Vec<Fragment> = (0..n).map(|i| make(&format!("motor{i}"))).collect();
        builds.push(t.elapsed());

        let t = Instant::now();
        let devices: Vec<GroupDevice> = fragments
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                GroupDevice::new(format!("motor{i}"), f)
                    .terminal("stepper", stepper(i))
                    .terminal("switches", switches(i))
            })
            .collect();
        let block = variable_block(&devices).unwrap_or_else(|e| panic!("{e}"));
        let map = Map::create(&MapSpec::mmapable_array("ferrocat_bench", block.size, 1))
            .unwrap_or_else(|e| panic!("variable map (needs root): {e}"));
        let linked =
            link_group(&GroupLink::new(devices, map.raw_fd())).unwrap_or_else(|e| panic!("{e}"));
        links.push(t.elapsed());

        let t = Instant::now();
        let source = linked.bpf_source_map();
        let prog = Program::load(
            &linked.insns,
            &LoadOptions::xdp(name).with_source_map(&source),
        )
        .unwrap_or_else(|e| panic!("load failed: {e}"));
        loads.push(t.elapsed());
        last = Some((linked, prog, map));
    }
    let Some((linked, prog, map)) = last else {
        panic!("no round ran");
    };

    // Moving motors: far from target, enabled, no switch, no acceleration limit.
    let mem = map.mmap().unwrap_or_else(|e| panic!("mmap: {e}"));
    let mut frame = vec![0u8; base(n) as usize + 4];
    for i in 0..n {
        let dev = format!("motor{i}");
        let off = |v: &str| {
            linked
                .variables
                .offset(&dev, v)
                .unwrap_or_else(|| panic!("{dev}.{v}")) as usize
        };
        let set = |v: &str, x: i64| {
            mem.write::<i64>(off(v), x)
                .unwrap_or_else(|e| panic!("{v}: {e}"))
        };
        set("target", 100_000 + i as i64);
        set("max_velocity", 1000);
        set("max_acceleration", 1 << 32);
        set("deadband", 10);
        set("proportional", 1 << 16);
        frame[base(i) as usize + 8] = 1; // enabled
    }
    let first = prog
        .test_run(&frame)
        .unwrap_or_else(|e| panic!("test run: {e}"));
    assert_eq!(first.retval, xdp_action::TX);
    for i in 0..n {
        let b = base(i) as usize + 4;
        let v = i16::from_le_bytes([first.data[b], first.data[b + 1]]);
        assert_eq!(v, 1000, "{name}: motor {i} runs at max_velocity");
    }
    let run_ns = (0..3)
        .map(|_| {
            prog.test_run_repeat(&frame, effort.repeat)
                .unwrap_or_else(|e| panic!("test run: {e}"))
                .duration_ns
        })
        .min()
        .unwrap_or(0);
    Figures {
        insns: linked.insns.len(),
        build: median(builds),
        link: median(links),
        load: median(loads),
        processed: prog.verifier_stats().map_or(0, |s| s.processed_insns),
        run_ns,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let effort = if std::env::args().any(|a| a == "--bench") {
        Effort {
            rounds: 7,
            repeat: 200_000,
        }
    } else {
        Effort {
            rounds: 1,
            repeat: 100,
        }
    };
    let template = dsl_motor("template");
    let vars = template.vars.clone();
    println!(
        "seed motor law, one sync-group program (median of {} builds, best of 3 x {} runs)",
        effort.rounds, effort.repeat
    );
    println!(
        "{:>6} {:<5} {:>6} {:>9} {:>8} {:>10} {:>9} {:>10} {:>9}",
        "motors",
        "code",
        "insns",
        "build ms",
        "link ms",
        "load ms",
        "total ms",
        "processed",
        "ns/run"
    );
    for n in [1usize, 8, 64] {
        let variants: [(&str, MakeMotor<'_>); 2] = [
            ("dsl", Box::new(dsl_motor)),
            ("hand", Box::new(|name: &str| hand_motor(name, &vars))),
        ];
        for (code, make) in variants {
            let f = measure(n, &format!("motors{n}_{code}"), &*make, effort);
            println!(
                "{:>6} {:<5} {:>6} {:>9.3} {:>8.3} {:>10.3} {:>9.3} {:>10} {:>9}",
                n,
                code,
                f.insns,
                ms(f.build),
                ms(f.link),
                ms(f.load),
                ms(f.build + f.link + f.load),
                f.processed,
                f.run_ns
            );
        }
    }
    println!(
        "ebpfcat 1.0.0: 8 motors 459 insns 378 ns/run; 64 motors 3539 insns 3400 ns/run, ~110 ms to load"
    );
}
