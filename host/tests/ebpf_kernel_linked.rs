//! Builder fragments linked by the real linker (`ferrocat::link`) and run in the kernel:
//! a generic XDP program (fixed packet fields, early exits, atomics on its globals), a
//! group whose follower reads its leader's device variable, and 64 of the seed's motor
//! fragments in one program that fits the stack and passes the verifier. Needs root;
//! fails without it.

use ferrocat::bpf::map::{Map, MapSpec, UpdateMode};
use ferrocat::bpf::prog::Program;
use ferrocat::link::{
    GroupDevice, GroupLink, LinkedProgram, StandaloneLink, TerminalLayout, VariableAddress,
    XDP_DROP, XDP_PASS, XDP_TX, link_group, link_standalone, variable_block,
};
use ferrocat_plugin_api::devices::motor::Motor;
use ferrocat_plugin_api::ebpf::builder::Builder;
use ferrocat_plugin_api::fragment::{ScalarType as T, VarType};

/// The variable block map for `linked`, with the program loaded against it.
fn load(mut linked: LinkedProgram, name: &str) -> (Program, Map) {
    let map = Map::create(&MapSpec::mmapable_array(
        "fc_linked",
        linked.variables.size.max(8),
        1,
    ))
    .expect("create the variable block (needs root and bpf(2))");
    linked.set_variable_map_fd(map.raw_fd());
    let prog = Program::load_xdp(name, &linked.insns)
        .unwrap_or_else(|e| panic!("{e}\n{}", linked.listing()));
    (prog, map)
}

fn block(map: &Map) -> Vec<u8> {
    map.lookup(&0u32.to_le_bytes())
        .expect("lookup")
        .expect("entry 0")
}

fn put(map: &Map, off: u32, bytes: &[u8]) {
    let mut b = block(map);
    b[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
    map.update(&0u32.to_le_bytes(), &b, UpdateMode::Any)
        .expect("update");
}

fn u64_at(b: &[u8], off: u32) -> u64 {
    u64::from_le_bytes(
        b[off as usize..off as usize + 8]
            .try_into()
            .expect("8 bytes"),
    )
}

fn frame(ether_type: u16, proto: u8, ttl: u8) -> Vec<u8> {
    let mut p = vec![0u8; 64];
    p[12..14].copy_from_slice(&ether_type.to_be_bytes());
    p[22] = ttl;
    p[23] = proto;
    p
}

#[test]
fn a_generic_xdp_program() {
    let b = Builder::new("classifier");
    let ether_type = b.packet(12, VarType::be(T::U16));
    let ttl = b.packet(22, T::U8);
    let proto = b.packet(23, T::U8);
    let ipv4 = b.device("ipv4", T::U64);
    let udp = b.device("udp", T::U64);
    let other = b.device("other", T::U64);
    b.if_(ether_type.eq(0x0800), |b| {
        ipv4.atomic_add(1);
        b.if_(proto.eq(17), |b| {
            udp.atomic_add(1);
            ttl.sub_assign(1);
            b.exit(XDP_TX);
        });
    })
    .else_(|b| {
        other.atomic_add(1);
        b.exit(XDP_DROP);
    });
    let f = b.finish().expect("builds");
    let linked = link_standalone(&StandaloneLink::new(f).with_variable_map(0)).expect("links");
    let (ipv4, udp, other) = (
        linked.variables.offset("", "ipv4").expect("placed"),
        linked.variables.offset("", "udp").expect("placed"),
        linked.variables.offset("", "other").expect("placed"),
    );
    let (prog, map) = load(linked, "classifier");
    let r = prog.test_run(&frame(0x0800, 17, 64)).expect("run");
    assert_eq!(r.retval, XDP_TX as u32, "IPv4/UDP is sent back");
    assert_eq!(r.data[22], 63, "TTL decremented");
    let r = prog.test_run(&frame(0x0800, 6, 64)).expect("run");
    assert_eq!(r.retval, XDP_PASS as u32, "IPv4/TCP falls off the end");
    assert_eq!(r.data[22], 64);
    let r = prog.test_run(&frame(0x0806, 0, 0)).expect("run");
    assert_eq!(r.retval, XDP_DROP as u32, "ARP dropped");
    let r = prog.test_run(&[0u8; 14]).expect("run");
    assert_eq!(r.retval, XDP_PASS as u32, "too short for the fixed fields");
    let blk = block(&map);
    assert_eq!(u64_at(&blk, ipv4), 2);
    assert_eq!(u64_at(&blk, udp), 1);
    assert_eq!(u64_at(&blk, other), 1);
}

#[test]
fn a_follower_reads_its_leaders_variable() {
    let leader = {
        let b = Builder::new("leader");
        let pos = b.terminal("drive", "position", T::I32);
        b.device("encoder", T::I64).assign(pos);
        b.finish().expect("builds")
    };
    let follower = {
        let b = Builder::new("follower");
        let enc = b.foreign("leader", "encoder", T::I64);
        let offset = b.device("offset", T::I64);
        let target = b.terminal("drive", "target", T::I32);
        target.assign(((enc * 3) >> 1) + offset);
        b.device("leader_seen", T::I64).assign(enc);
        b.finish().expect("builds")
    };
    let drive = |at: u32| {
        TerminalLayout::new("drive")
            .with("position", VariableAddress::bytes(at, 32))
            .with("target", VariableAddress::bytes(at + 4, 32))
    };
    let devices = vec![
        GroupDevice::new("lead", leader).terminal("drive", drive(20)),
        GroupDevice::new("follow", follower)
            .terminal("drive", drive(28))
            .device_link("leader", "lead"),
    ];
    let linked = link_group(&GroupLink::new(devices, 0)).expect("links");
    let vars = linked.variables.clone();
    let (prog, map) = load(linked, "group");
    put(
        &map,
        vars.offset("follow", "offset").expect("placed"),
        &7i64.to_le_bytes(),
    );
    let mut p = vec![0u8; 64];
    p[20..24].copy_from_slice(&(-1000i32).to_le_bytes());
    let r = prog.test_run(&p).expect("run");
    assert_eq!(r.retval, XDP_TX as u32);
    assert_eq!(&r.data[32..36], &(-1500i32 + 7).to_le_bytes());
    let blk = block(&map);
    let seen = vars.offset("follow", "leader_seen").expect("placed");
    assert_eq!(u64_at(&blk, seen) as i64, -1000);
}

#[test]
fn sixty_four_motors_fit_one_program() {
    let mut devices = Vec::new();
    for k in 0..64u32 {
        let b = Builder::new(&format!("motor{k}"));
        let m = Motor::declare(&b, &|_: &str| false);
        m.program(&b, |s| m.calculate_speed(s));
        let f = b.finish().expect("the motor builds");
        let stepper = TerminalLayout::new(format!("stepper {k}"))
            .with("velocity", VariableAddress::bytes(14 + 8 * k, 16))
            .with("encoder", VariableAddress::bytes(16 + 8 * k, 32))
            .with("control_word", VariableAddress::bytes(20 + 8 * k, 16))
            .with("enabled", VariableAddress::bits(20 + 8 * k + 2, 0, 1));
        devices.push(GroupDevice::new(format!("m{k}"), f).terminal("stepper", stepper));
    }
    let block_layout = variable_block(&devices).expect("variables placed");
    let linked = link_group(&GroupLink::new(devices, 0)).expect("links");
    assert!(linked.stack_size <= 512, "stack {}", linked.stack_size);
    println!(
        "64 motors: {} instructions, {} bytes of stack",
        linked.insns.len(),
        linked.stack_size
    );
    let (prog, map) = load(linked, "motors");
    for k in 0..64u32 {
        let off = block_layout
            .offset(&format!("m{k}"), "set_control_word")
            .expect("placed");
        put(&map, off, &(0x100 + k as u16).to_le_bytes());
    }
    let r = prog.test_run(&vec![0u8; 14 + 8 * 64 + 8]).expect("run");
    assert_eq!(r.retval, XDP_TX as u32);
    for k in 0..64usize {
        let at = 20 + 8 * k;
        assert_eq!(
            u16::from_le_bytes([r.data[at], r.data[at + 1]]),
            0x100 + k as u16,
            "motor {k} copied its control word"
        );
    }
}
