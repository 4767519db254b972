//! The seed's motor controller (`ferrocat_plugin_api::devices::motor`, written with the
//! `ebpf!` DSL) linked into sync-group programs, loaded through the kernel's verifier
//! and run with `BPF_PROG_TEST_RUN`: the velocity it writes matches a plain-Rust model
//! of the same control law over a table of inputs, and 64 motors (32 followers of the
//! other 32) link into one program within the 512-byte stack, load, and each computes
//! its own result. Needs root (CAP_BPF, CAP_NET_ADMIN) and fails without it.

use ferrocat::bpf::map::{Map, MapMemory, MapSpec};
use ferrocat::bpf::prog::{LoadOptions, Program, xdp_action};
use ferrocat::link::{
    GroupDevice, GroupLink, LinkedProgram, TerminalLayout, VariableAddress, VariableBlock,
    link_group, variable_block,
};
use ferrocat_plugin_api::devices::motor::{Follower, Motor};
use ferrocat_plugin_api::ebpf::builder::Builder;
use ferrocat_plugin_api::fragment::{Fragment, MAX_STACK};

/// Bytes before the first motor's process data in the test frames.
const IMAGE_START: u32 = 16;
/// Bytes of process data per motor in the test frames.
const STRIDE: u32 = 12;

/// Byte offset of motor `i`'s process data.
fn base(i: usize) -> u32 {
    IMAGE_START + STRIDE * i as u32
}

/// The stepper terminal of motor `i`: encoder (i32), velocity (i16), control word (u16),
/// status bits (enabled, encoder error), and the reduced-current output bit.
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

/// The digital inputs with motor `i`'s limit switches (bits 3 and 4 of its status byte).
fn switches(i: usize) -> TerminalLayout {
    let b = base(i);
    TerminalLayout::new(format!("EL1008 #{i}"))
        .with("low_switch", VariableAddress::bits(b + 8, 3, 1))
        .with("high_switch", VariableAddress::bits(b + 8, 4, 1))
}

fn motor_fragment(name: &str, all_options: bool) -> Fragment {
    let b = Builder::new(name);
    let m = Motor::declare(&b, &|_| all_options);
    m.program(&b, |s| m.calculate_speed(s));
    b.finish().expect("the motor builds")
}

/// Generation-time parameters of the followers.
const FOLLOW_FACTOR: f64 = 0.75;
const MOTORS_FACTOR: f64 = 1.5;
const FOLLOW_LAG: i64 = 5000;

fn follower_fragment(name: &str) -> Fragment {
    let b = Builder::new(name);
    let f = Follower {
        follow_factor: FOLLOW_FACTOR,
        motors_factor: MOTORS_FACTOR,
        follow_lag: FOLLOW_LAG,
        ..Follower::declare(&b, &|_| true)
    };
    f.program(&b);
    b.finish().expect("the follower builds")
}

/// A linked group with its variable map.
struct Group {
    prog: Program,
    map: Map,
    block: VariableBlock,
    linked: LinkedProgram,
}

fn load_group(devices: Vec<GroupDevice>, name: &str) -> Group {
    let block = variable_block(&devices).unwrap_or_else(|e| panic!("{e}"));
    let map = Map::create(&MapSpec::mmapable_array("ferrocat_motor", block.size, 1))
        .expect("variable map (needs root)");
    let linked =
        link_group(&GroupLink::new(devices, map.raw_fd())).unwrap_or_else(|e| panic!("{e}"));
    let source = linked.bpf_source_map();
    let prog = Program::load(
        &linked.insns,
        &LoadOptions::xdp(name).with_source_map(&source),
    )
    .unwrap_or_else(|e| panic!("load failed: {e}"));
    Group {
        prog,
        map,
        block,
        linked,
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock `bpf_ktime_get_ns` reads.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One motor's inputs: its device variables and terminal inputs.
#[derive(Clone, Copy, Debug)]
struct Inputs {
    target: i64,
    encoder: i32,
    max_velocity: i64,
    max_acceleration: u64,
    deadband: i64,
    proportional: i64,
    last_velocity: i64,
    /// Nanoseconds between `lasttime` and the clock when the frame is built.
    dt: u64,
    low: bool,
    high: bool,
    enabled: bool,
    encoder_error: bool,
    set_control_word: u16,
}

impl Default for Inputs {
    fn default() -> Inputs {
        Inputs {
            target: 0,
            encoder: 0,
            max_velocity: 1000,
            // velocity_diff = (max_acceleration * dt) >> 32 = dt: no acceleration limit.
            max_acceleration: 1 << 32,
            deadband: 10,
            proportional: 1 << 16,
            last_velocity: 0,
            dt: 1 << 40,
            low: false,
            high: false,
            enabled: true,
            encoder_error: false,
            set_control_word: 0x1,
        }
    }
}

/// What the control law produces for one motor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outputs {
    velocity: i16,
    control_word: u16,
    last_velocity: i64,
    lasttime_updated: bool,
    reduced_current: Option<bool>,
    deadband_exceeded: i8,
}

/// The seed's control law in plain Rust, with eBPF's 64-bit wrapping arithmetic:
/// `calculate_speed` is `extra` applied after the proportional term.
fn model(
    i: &Inputs,
    options: bool,
    now: u64,
    lasttime: u64,
    extra: impl Fn(i64) -> i64,
) -> Outputs {
    let diff = (i.max_acceleration.wrapping_mul(now.wrapping_sub(lasttime)) >> 32) as i64;
    let lasttime_updated = diff > 0;
    let error = i.target.wrapping_sub(i.encoder as i64);
    let (reduced_current, deadband_exceeded) = if !options {
        (None, 0)
    } else if error.wrapping_abs() > i.deadband {
        (Some(false), 1)
    } else {
        (Some(true), 0)
    };
    let mut speed = extra(i.proportional.wrapping_mul(error) >> 16);
    if speed > i.max_velocity {
        speed = i.max_velocity;
    }
    if speed.wrapping_add(i.max_velocity) < 0 {
        speed = i.max_velocity.wrapping_neg();
    }
    if options {
        if i.low && speed < 0 {
            speed = 0;
        }
        if i.high && speed > 0 {
            speed = 0;
        }
        if i.encoder_error {
            speed = 0;
        }
    }
    let mut velocity = speed as i16;
    if speed > i.last_velocity.wrapping_add(diff) {
        velocity = i.last_velocity.wrapping_add(diff) as i16;
    } else if i.last_velocity > speed.wrapping_add(diff) {
        velocity = i.last_velocity.wrapping_sub(diff) as i16;
    }
    Outputs {
        velocity,
        control_word: i.set_control_word,
        last_velocity: if i.enabled { velocity as i64 } else { 0 },
        lasttime_updated,
        reduced_current,
        deadband_exceeded,
    }
}

/// Writes motor `i`'s inputs into the frame and the variable block of `device`.
fn put_inputs(
    frame: &mut [u8],
    mem: &MapMemory,
    block: &VariableBlock,
    device: &str,
    i: usize,
    x: &Inputs,
    lasttime: u64,
) {
    let off = |n: &str| {
        block
            .offset(device, n)
            .unwrap_or_else(|| panic!("{device}.{n} placed")) as usize
    };
    mem.write::<i64>(off("target"), x.target).expect("target");
    mem.write::<i64>(off("max_velocity"), x.max_velocity)
        .expect("max_velocity");
    mem.write::<u64>(off("max_acceleration"), x.max_acceleration)
        .expect("max_acceleration");
    mem.write::<i64>(off("deadband"), x.deadband)
        .expect("deadband");
    mem.write::<i64>(off("proportional"), x.proportional)
        .expect("proportional");
    mem.write::<i64>(off("last_velocity"), x.last_velocity)
        .expect("last_velocity");
    mem.write::<u64>(off("lasttime"), lasttime)
        .expect("lasttime");
    mem.write::<u16>(off("set_control_word"), x.set_control_word)
        .expect("set_control_word");
    mem.write::<i8>(off("deadband_exceeded"), 0)
        .expect("deadband_exceeded");
    let b = base(i) as usize;
    frame[b..b + 4].copy_from_slice(&x.encoder.to_le_bytes());
    frame[b + 4..b + 8].fill(0);
    frame[b + 8] = u8::from(x.enabled)
        | u8::from(x.encoder_error) << 1
        | u8::from(x.low) << 3
        | u8::from(x.high) << 4;
    frame[b + 9] = rc_preset(x);
}

/// The byte holding `reduced_current` before a run: bit 0 the opposite of what the law
/// writes for `x`'s own target, the other bits a pattern that must survive.
fn rc_preset(x: &Inputs) -> u8 {
    let inside = x.target.wrapping_sub(x.encoder as i64).wrapping_abs() <= x.deadband;
    0x5a | u8::from(!inside)
}

/// Reads motor `i`'s outputs back; `lasttime` is returned to recover the kernel's clock.
fn get_outputs(
    frame: &[u8],
    mem: &MapMemory,
    block: &VariableBlock,
    device: &str,
    (i, x): (usize, &Inputs),
    options: bool,
    lasttime_before: u64,
) -> (Outputs, u64) {
    let off = |n: &str| block.offset(device, n).expect("placed") as usize;
    let b = base(i) as usize;
    let lasttime = mem.read::<u64>(off("lasttime")).expect("lasttime");
    let out = Outputs {
        velocity: i16::from_le_bytes([frame[b + 4], frame[b + 5]]),
        control_word: u16::from_le_bytes([frame[b + 6], frame[b + 7]]),
        last_velocity: mem.read::<i64>(off("last_velocity")).expect("last"),
        lasttime_updated: lasttime != lasttime_before,
        reduced_current: options.then_some(frame[b + 9] & 1 == 1),
        deadband_exceeded: mem.read::<i8>(off("deadband_exceeded")).expect("db"),
    };
    assert_eq!(
        frame[b + 9] & !1,
        0x5a,
        "{device}: bits next to reduced_current kept"
    );
    if !options {
        assert_eq!(
            frame[b + 9],
            rc_preset(x),
            "{device}: no reduced_current without the option"
        );
    }
    (out, lasttime)
}

/// The table: each row exercises one part of the law.
fn table() -> Vec<(&'static str, Inputs)> {
    let d = Inputs::default();
    vec![
        (
            "far ahead: limited to max_velocity",
            Inputs {
                target: 100_000,
                ..d
            },
        ),
        (
            "far behind: limited to -max_velocity",
            Inputs {
                target: -100_000,
                encoder: 5,
                ..d
            },
        ),
        (
            "inside the deadband: reduced current, small speed",
            Inputs {
                target: 7,
                encoder: 2,
                ..d
            },
        ),
        (
            "proportional 0.5",
            Inputs {
                target: 301,
                proportional: 1 << 15,
                ..d
            },
        ),
        (
            "negative encoder, sign-extended",
            Inputs {
                target: -60_000,
                encoder: -59_900,
                ..d
            },
        ),
        (
            "low switch stops a move down",
            Inputs {
                target: -500,
                low: true,
                ..d
            },
        ),
        (
            "low switch lets a move up pass",
            Inputs {
                target: 500,
                low: true,
                ..d
            },
        ),
        (
            "high switch stops a move up",
            Inputs {
                target: 500,
                high: true,
                ..d
            },
        ),
        (
            "encoder error stops",
            Inputs {
                target: 500,
                encoder_error: true,
                ..d
            },
        ),
        (
            "disabled: last_velocity cleared",
            Inputs {
                target: 500,
                enabled: false,
                last_velocity: 77,
                ..d
            },
        ),
        (
            "acceleration limit: 2 per 2^30 ns, for 3.5 * 2^30 ns",
            Inputs {
                target: 100_000,
                last_velocity: 100,
                max_acceleration: 2 << 2,
                dt: 7 << 29,
                ..d
            },
        ),
        (
            "deceleration limit",
            Inputs {
                target: 0,
                encoder: 0,
                last_velocity: 500,
                max_acceleration: 2 << 2,
                dt: 7 << 29,
                ..d
            },
        ),
        (
            "no time passed: velocity held, lasttime kept",
            Inputs {
                target: 100_000,
                last_velocity: 321,
                max_acceleration: 1,
                dt: 0,
                ..d
            },
        ),
        (
            "velocity beyond i16 is truncated when stored",
            Inputs {
                target: 1 << 20,
                max_velocity: 70_000,
                ..d
            },
        ),
        (
            "negative max_velocity",
            Inputs {
                target: 50,
                max_velocity: -20,
                ..d
            },
        ),
        (
            "control word copied",
            Inputs {
                target: 3,
                set_control_word: 0xbeef,
                ..d
            },
        ),
    ]
}

/// The `now` the kernel saw: the new `lasttime` if the law updated it, else the clock
/// before the run (the law then saw no time worth a velocity step at either end).
fn check_row(
    what: &str,
    x: &Inputs,
    options: bool,
    got: Outputs,
    (lasttime_before, lasttime_after): (u64, u64),
    (t0, t1): (u64, u64),
    extra: impl Fn(i64) -> i64,
) {
    let now = if got.lasttime_updated {
        assert!(
            (t0..=t1).contains(&lasttime_after),
            "{what}: lasttime {lasttime_after} outside the run's clock {t0}..{t1}"
        );
        lasttime_after
    } else {
        let at_end = model(x, options, t1, lasttime_before, &extra);
        assert!(!at_end.lasttime_updated, "{what}: time would have advanced");
        t0
    };
    let want = model(x, options, now, lasttime_before, &extra);
    assert_eq!(got, want, "{what} (options {options}): inputs {x:?}");
}

#[test]
fn seed_motor_computes_the_velocity_of_the_model() {
    for options in [true, false] {
        let mut dev =
            GroupDevice::new("m", motor_fragment("m", options)).terminal("stepper", stepper(0));
        if options {
            dev = dev.terminal("switches", switches(0));
        }
        let g = load_group(vec![dev], "seed_motor");
        let mem = g.map.mmap().expect("mmap");
        let stats = g.prog.verifier_stats().expect("verifier statistics");
        assert!(stats.processed_insns > 0);
        for (what, x) in table() {
            let mut frame = vec![0u8; base(1) as usize + 4];
            let t0 = monotonic_ns();
            let lasttime = t0.wrapping_sub(x.dt);
            put_inputs(&mut frame, &mem, &g.block, "m", 0, &x, lasttime);
            let run = g.prog.test_run(&frame).expect("test run");
            let t1 = monotonic_ns();
            assert_eq!(run.retval, xdp_action::TX, "{what}");
            let (got, after) =
                get_outputs(&run.data, &mem, &g.block, "m", (0, &x), options, lasttime);
            check_row(what, &x, options, got, (lasttime, after), (t0, t1), |s| s);
        }
    }
}

#[test]
fn sixty_four_motors_half_following_link_load_and_compute() {
    const N: usize = 32;
    let mut devices = Vec::new();
    for i in 0..N {
        devices.push(
            GroupDevice::new(
                format!("leader{i}"),
                motor_fragment(&format!("leader{i}"), true),
            )
            .terminal("stepper", stepper(i))
            .terminal("switches", switches(i)),
        );
    }
    for i in 0..N {
        let j = N + i;
        devices.push(
            GroupDevice::new(
                format!("follower{i}"),
                follower_fragment(&format!("follower{i}")),
            )
            .terminal("stepper", stepper(j))
            .terminal("switches", switches(j))
            .device_link("leader", format!("leader{i}")),
        );
    }
    let g = load_group(devices, "seed_motors64");
    assert!(
        g.linked.stack_size <= MAX_STACK,
        "stack {} bytes",
        g.linked.stack_size
    );
    let mem = g.map.mmap().expect("mmap");
    let off = |d: &str, n: &str| g.block.offset(d, n).expect("placed") as usize;

    let mut frame = vec![0u8; base(2 * N) as usize + 4];
    let t0 = monotonic_ns();
    let d = Inputs::default();
    let leaders: Vec<Inputs> = (0..N)
        .map(|i| Inputs {
            target: 1000 * i as i64 - 16_000,
            encoder: 37 * i as i32,
            last_velocity: 10 * i as i64,
            max_acceleration: 2 << 2,
            dt: 7 << 29,
            enabled: i % 5 != 0,
            low: i % 7 == 3,
            ..d
        })
        .collect();
    // Followers: even ones follow (the odd ones' lag exceeds FOLLOW_LAG for i % 4 == 1).
    let followers: Vec<(Inputs, bool, i64)> = (0..N)
        .map(|i| {
            let x = Inputs {
                target: 0,
                encoder: 20 * i as i32 + if i % 4 == 1 { 50_000 } else { 0 },
                last_velocity: -(5 * i as i64),
                ..d
            };
            (x, i % 2 == 1 || i % 4 == 1, 100 * i as i64)
        })
        .collect();
    for (i, x) in leaders.iter().enumerate() {
        put_inputs(
            &mut frame,
            &mem,
            &g.block,
            &format!("leader{i}"),
            i,
            x,
            t0.wrapping_sub(x.dt),
        );
    }
    for (i, (x, follow, offset)) in followers.iter().enumerate() {
        let name = format!("follower{i}");
        put_inputs(
            &mut frame,
            &mem,
            &g.block,
            &name,
            N + i,
            x,
            t0.wrapping_sub(x.dt),
        );
        mem.write::<u8>(off(&name, "do_follow"), u8::from(*follow))
            .expect("do_follow");
        mem.write::<i64>(off(&name, "follow_offset"), *offset)
            .expect("offset");
    }
    let run = g.prog.test_run(&frame).expect("test run");
    let t1 = monotonic_ns();
    assert_eq!(run.retval, xdp_action::TX);

    let mut leader_out = Vec::new();
    for (i, x) in leaders.iter().enumerate() {
        let name = format!("leader{i}");
        let (got, after) = get_outputs(
            &run.data,
            &mem,
            &g.block,
            &name,
            (i, x),
            true,
            t0.wrapping_sub(x.dt),
        );
        check_row(
            &name,
            x,
            true,
            got,
            (t0.wrapping_sub(x.dt), after),
            (t0, t1),
            |s| s,
        );
        leader_out.push(got);
    }
    for (i, (x, follow, offset)) in followers.iter().enumerate() {
        let name = format!("follower{i}");
        let leader = &leaders[i];
        // The follower's prefix: track the leader, switch off on too large a lag.
        let mut x = *x;
        let mut still_following = *follow;
        let mut leader_switched_off = false;
        if *follow {
            x.target = ((leader.encoder as i64 * (FOLLOW_FACTOR * 65536.0) as i64) >> 16) + offset;
            if (x.target - x.encoder as i64).abs() > FOLLOW_LAG {
                x.set_control_word = 0;
                still_following = false;
                leader_switched_off = true;
            }
        }
        let factor = (MOTORS_FACTOR * FOLLOW_FACTOR * 65536.0) as i64;
        let leader_velocity = leader_out[i].velocity as i64;
        let leader_enabled = leader.enabled;
        let extra = |s: i64| {
            if still_following && leader_enabled {
                s + ((factor * leader_velocity) >> 16)
            } else {
                s
            }
        };
        let (got, after) = get_outputs(
            &run.data,
            &mem,
            &g.block,
            &name,
            (N + i, &x),
            true,
            t0.wrapping_sub(x.dt),
        );
        check_row(
            &name,
            &x,
            true,
            got,
            (t0.wrapping_sub(x.dt), after),
            (t0, t1),
            extra,
        );
        assert_eq!(
            mem.read::<i64>(off(&name, "target")).expect("target"),
            x.target,
            "{name} target"
        );
        assert_eq!(
            mem.read::<u8>(off(&name, "do_follow")).expect("do_follow"),
            u8::from(still_following),
            "{name} do_follow"
        );
        let leader_cw = mem
            .read::<u16>(off(&format!("leader{i}"), "set_control_word"))
            .expect("leader control word");
        assert_eq!(
            leader_cw,
            if leader_switched_off {
                0
            } else {
                leader.set_control_word
            },
            "{name} switches its leader off only on lag"
        );
        assert!(
            *follow || !leader_switched_off,
            "a follower that does not follow never switches its leader off"
        );
    }
    assert!(
        followers.iter().any(|(_, f, _)| *f),
        "the table has following followers"
    );
}
