//! Kernel tests of builder-made fragments linked by `ferrocat::link`: a controller
//! against a table of inputs, a follower reading its leader's variable, an optional
//! link absent or present, a standalone program with early exits, and 64 controllers
//! in one program. Every program loads through the real verifier and runs with
//! `BPF_PROG_TEST_RUN`; results are asserted against Rust computations. Needs root.

use ferrocat::bpf::map::{Map, MapMemory, MapSpec};
use ferrocat::bpf::prog::{LoadOptions, Program, xdp_action};
use ferrocat::link::*;
use ferrocat_plugin_api::ebpf::builder::Builder;
use ferrocat_plugin_api::fragment::{Fragment, ScalarType::*, VarType};

/// `velocity = clamp((target - position) * gain, -1000, 1000)` outside the deadband,
/// else 0; `enable` set while moving; `runs` counts cycles.
fn controller(name: &str) -> Fragment {
    let b = Builder::new(name);
    let position = b.terminal("encoder", "position", I32);
    let velocity = b.terminal("stepper", "velocity", I16);
    let enable = b.terminal("stepper", "enable", Bool);
    let target = b.device("target", I64);
    let deadband = b.device("deadband", I64);
    let gain = b.device("gain", I64);
    let runs = b.device("runs", U64);
    let error = b.temp(target - position);
    b.if_(error.abs().gt(deadband), |_| {
        velocity.assign((error * gain).clamp(-1000, 1000));
        enable.assign(true);
    })
    .else_(|_| {
        velocity.assign(0);
        enable.assign(false);
    });
    runs.atomic_add(1);
    b.finish()
        .unwrap_or_else(|e| panic!("controller builds: {e}"))
}

fn expected_velocity(target: i64, position: i32, deadband: i64, gain: i64) -> i16 {
    let error = target.wrapping_sub(i64::from(position));
    if error.wrapping_abs() > deadband {
        error.wrapping_mul(gain).clamp(-1000, 1000) as i16
    } else {
        0
    }
}

/// The process image of controller `i`: 8 bytes per controller from byte 14.
fn terminals(i: u32) -> (TerminalLayout, TerminalLayout) {
    let base = 14 + 8 * i;
    (
        TerminalLayout::new(format!("encoder {i}"))
            .with("position", VariableAddress::bytes(base, 32)),
        TerminalLayout::new(format!("stepper {i}"))
            .with("velocity", VariableAddress::bytes(base + 4, 16))
            .with("enable", VariableAddress::bits(base + 6, 3, 1)),
    )
}

fn controller_device(i: u32) -> GroupDevice {
    let (encoder, stepper) = terminals(i);
    GroupDevice::new(format!("ctl{i}"), controller(&format!("ctl{i}")))
        .terminal("encoder", encoder)
        .terminal("stepper", stepper)
}

/// Links `devices`, creates their variable map and loads the program.
fn build(devices: Vec<GroupDevice>, name: &str) -> (LinkedProgram, Map, MapMemory, Program) {
    let block = variable_block(&devices).unwrap_or_else(|e| panic!("{e}"));
    let map = Map::create(&MapSpec::mmapable_array("ferrocat_vars", block.size, 1))
        .expect("variable map");
    let p = link_group(&GroupLink::new(devices, map.raw_fd())).unwrap_or_else(|e| panic!("{e}"));
    let sm = p.bpf_source_map();
    let prog = Program::load(&p.insns, &LoadOptions::xdp(name).with_source_map(&sm))
        .unwrap_or_else(|e| panic!("load failed: {e}\n{}", p.listing()));
    let mem = map.mmap().expect("mmap");
    (p, map, mem, prog)
}

fn off(p: &LinkedProgram, device: &str, var: &str) -> usize {
    p.variables.offset(device, var).expect("placed") as usize
}

#[test]
fn controller_computes_the_table() {
    let (p, _map, mem, prog) = build(vec![controller_device(0)], "link_ctl");
    let table: &[(i64, i32, i64, i64)] = &[
        (500, -1234, 10, 3),
        (500, 495, 10, 3),
        (500, 490, 10, 3),
        (500, 489, 10, 3),
        (-100, 100, 0, 2),
        (-100, 100, 0, -2),
        (0, i32::MIN, 5, 1),
        (i64::MAX, -1, 0, 1),
        (7, 7, -1, 100),
    ];
    for (n, &(target, position, deadband, gain)) in table.iter().enumerate() {
        mem.write::<i64>(off(&p, "ctl0", "target"), target)
            .expect("target");
        mem.write::<i64>(off(&p, "ctl0", "deadband"), deadband)
            .expect("deadband");
        mem.write::<i64>(off(&p, "ctl0", "gain"), gain)
            .expect("gain");
        let mut frame = vec![0u8; 60];
        frame[14..18].copy_from_slice(&position.to_le_bytes());
        frame[18..20].copy_from_slice(&0x7777i16.to_le_bytes());
        frame[20] = 0b1111_0111; // enable (bit 3) clear, neighbours set
        let run = prog.test_run(&frame).expect("test run");
        assert_eq!(run.retval, xdp_action::TX);
        let v = expected_velocity(target, position, deadband, gain);
        let mut want = frame.clone();
        want[18..20].copy_from_slice(&v.to_le_bytes());
        let moving = target.wrapping_sub(i64::from(position)).wrapping_abs() > deadband;
        want[20] = if moving { 0xff } else { 0b1111_0111 };
        assert_eq!(
            run.data, want,
            "case {n}: {target} {position} {deadband} {gain}"
        );
        assert_eq!(
            mem.read::<u64>(off(&p, "ctl0", "runs")).expect("runs"),
            n as u64 + 1
        );
    }
}

#[test]
fn follower_reads_its_leaders_variable() {
    let leader = {
        let b = Builder::new("leader");
        let position = b.terminal("encoder", "position", I32);
        let encoder = b.device("encoder", I32);
        encoder.assign(position);
        b.finish().expect("leader builds")
    };
    let follower = {
        let b = Builder::new("follower");
        let leader_encoder = b.foreign("leader", "encoder", I32);
        let velocity = b.terminal("stepper", "velocity", I16);
        velocity.assign((leader_encoder / 4).clamp(-300, 300));
        b.finish().expect("follower builds")
    };
    let (encoder, _) = terminals(0);
    let (_, stepper) = terminals(1);
    let devices = vec![
        GroupDevice::new("leader", leader).terminal("encoder", encoder),
        GroupDevice::new("follower", follower)
            .terminal("stepper", stepper)
            .device_link("leader", "leader"),
    ];
    let (_p, _map, _mem, prog) = build(devices, "link_follow");
    for position in [-4000i32, -5, 0, 9, 1000, 5000] {
        let mut frame = vec![0u8; 60];
        frame[14..18].copy_from_slice(&position.to_le_bytes());
        let run = prog.test_run(&frame).expect("run");
        let v = i16::from_le_bytes([run.data[26], run.data[27]]);
        // Signed division truncates toward zero, as eBPF's sdiv does.
        assert_eq!(i32::from(v), (position / 4).clamp(-300, 300), "{position}");
    }
}

#[test]
fn optional_link_region_follows_the_configuration() {
    let make = || {
        let b = Builder::new("limited");
        let velocity = b.terminal("stepper", "velocity", I16);
        let low = b.optional_terminal("switches", "low", Bool);
        velocity.assign(100);
        b.if_linked("switches", |b| {
            b.if_(low, |_| velocity.assign(0));
        });
        b.finish().expect("builds")
    };
    let (_, stepper) = terminals(0);
    let switches = TerminalLayout::new("EL1004").with("low", VariableAddress::bits(30, 6, 1));
    for (connected, low_bit, want) in [(false, true, 100), (true, false, 100), (true, true, 0)] {
        let mut dev = GroupDevice::new("limited", make()).terminal("stepper", stepper.clone());
        if connected {
            dev = dev.terminal("switches", switches.clone());
        }
        let (p, _map, _mem, prog) = build(vec![dev], "link_limits");
        assert_eq!(p.min_len, if connected { 31 } else { 20 });
        let mut frame = vec![0u8; 40];
        frame[30] = u8::from(low_bit) << 6;
        let run = prog.test_run(&frame).expect("run");
        assert_eq!(
            i16::from_le_bytes([run.data[18], run.data[19]]),
            want,
            "connected {connected}, low {low_bit}"
        );
    }
}

#[test]
fn standalone_builder_program_returns_its_verdicts() {
    // Drops EtherCAT frames addressed to a counter that has reached its limit; counts
    // the others and passes everything else.
    let f = {
        let b = Builder::new("ecat_limit");
        let ether_type = b.packet(12, VarType::be(U16));
        let seen = b.device("seen", U64);
        let limit = b.device("limit", U64);
        b.if_(ether_type.eq(0x88a4), |b| {
            b.if_(seen.ge(limit), |b| b.exit(XDP_DROP));
            seen.atomic_add(1);
            b.exit(XDP_TX);
        });
        b.finish().expect("builds")
    };
    assert!(f.sets_verdict);
    let block = standalone_variable_block(&f).expect("block");
    let map = Map::create(&MapSpec::mmapable_array("ferrocat_glob", block.size, 1)).expect("map");
    let p = link_standalone(&StandaloneLink::new(f).with_variable_map(map.raw_fd()))
        .unwrap_or_else(|e| panic!("{e}"));
    let sm = p.bpf_source_map();
    let prog = Program::load(
        &p.insns,
        &LoadOptions::xdp("link_limit").with_source_map(&sm),
    )
    .unwrap_or_else(|e| panic!("load failed: {e}\n{}", p.listing()));
    let mem = map.mmap().expect("mmap");
    mem.write::<u64>(p.variables.offset("", "limit").expect("limit") as usize, 2)
        .expect("limit");
    let mut ecat = vec![0u8; 60];
    ecat[12..14].copy_from_slice(&[0x88, 0xa4]);
    let mut ip = vec![0u8; 60];
    ip[12..14].copy_from_slice(&[0x08, 0x00]);
    let verdicts: Vec<u32> = [&ecat, &ip, &ecat, &ecat, &ip]
        .iter()
        .map(|f| prog.test_run(f).expect("run").retval)
        .collect();
    use xdp_action::{DROP, PASS, TX};
    assert_eq!(verdicts, [TX, PASS, TX, DROP, PASS]);
    assert_eq!(
        mem.read::<u64>(p.variables.offset("", "seen").expect("seen") as usize)
            .expect("seen"),
        2
    );
    // The prologue checks the EtherType is in the frame (BPF_PROG_TEST_RUN refuses XDP
    // frames shorter than an Ethernet header, so shorter frames are not run here).
    assert_eq!(p.min_len, 14);
}

#[test]
fn sixty_four_builder_controllers_link_load_and_run() {
    let devices: Vec<GroupDevice> = (0..64).map(controller_device).collect();
    let (p, _map, mem, prog) = build(devices, "link_ctl64");
    assert!(p.stack_size <= 512, "{}", p.stack_size);
    for i in 0..64 {
        let d = format!("ctl{i}");
        mem.write::<i64>(off(&p, &d, "target"), 1000 * i64::from(i))
            .expect("target");
        mem.write::<i64>(off(&p, &d, "deadband"), 3)
            .expect("deadband");
        mem.write::<i64>(off(&p, &d, "gain"), i64::from(i % 5) - 2)
            .expect("gain");
    }
    let mut frame = vec![0u8; 14 + 8 * 64];
    for i in 0..64u32 {
        let at = (14 + 8 * i) as usize;
        frame[at..at + 4].copy_from_slice(&(i as i32 * 997 - 20_000).to_le_bytes());
    }
    let run = prog.test_run(&frame).expect("run");
    assert_eq!(run.retval, xdp_action::TX);
    for i in 0..64u32 {
        let at = (14 + 8 * i) as usize;
        let v = i16::from_le_bytes([run.data[at + 4], run.data[at + 5]]);
        let want = expected_velocity(
            1000 * i64::from(i),
            i as i32 * 997 - 20_000,
            3,
            i64::from(i % 5) - 2,
        );
        assert_eq!(v, want, "controller {i}");
    }
}
