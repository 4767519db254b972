//! Kernel tests of XDP attachment on a veth pair in a private network namespace: native
//! and generic mode, atomic program replacement, pinned links, detach. Frames are sent
//! from the far end with an AF_PACKET socket. They need root and fail without it.

mod bpf_asm;
#[path = "../../tests/src/lib.rs"]
#[allow(dead_code)]
mod e2e;

use std::time::{Duration, Instant};

use bpf_asm::*;
use e2e::{BpffsMount, VethPair};
use ferrocat::bpf::bpffs::Bpffs;
use ferrocat::bpf::map::{Map, MapMemory, MapSpec};
use ferrocat::bpf::prog::{Program, xdp_action};
use ferrocat::bpf::sys;
use ferrocat::bpf::xdp::{self, XdpError, XdpLink, XdpMode};
use ferrocat_plugin_api::ebpf::insn::{Insn, JmpCond, Reg, Size, encode};

/// EtherCAT's ether type (IEEE registry; ETG.1000.4 5.2).
const ETHERTYPE_ETHERCAT: u16 = 0x88a4;

/// Counts frames of ether type 0x88a4 in the u64 at `offset` of `vars` and drops them;
/// passes everything else.
fn counter(vars: &Map, offset: u32, name: &str) -> Program {
    let mut insns = vec![
        mov_reg(Reg::R6, Reg::R1),
        Insn::LdMapValue {
            dst: Reg::R7,
            fd: vars.raw_fd(),
            off: offset,
        },
    ];
    insns.extend(packet_check(Reg::R6, 14, 6));
    insns.extend([
        ldx(Size::H, Reg::R5, Reg::R2, 12),
        // Loaded little endian from big-endian wire bytes.
        jmp_imm(
            JmpCond::Ne,
            Reg::R5,
            i32::from(ETHERTYPE_ETHERCAT.swap_bytes()),
            4,
        ),
        mov(Reg::R1, 1),
        atomic_add64(Reg::R7, 0, Reg::R1),
        mov(Reg::R0, xdp_action::DROP as i32),
        Insn::Exit,
    ]);
    insns.extend(ret(xdp_action::PASS));
    Program::load_xdp(name, &encode(&insns)).unwrap_or_else(|e| panic!("{e}"))
}

fn ethercat_frames(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut f = vec![0xff; 6];
            f.extend([0x02, 0, 0, 0, 0, i as u8]);
            f.extend(ETHERTYPE_ETHERCAT.to_be_bytes());
            f.extend(std::iter::repeat_n(0u8, 46));
            f
        })
        .collect()
}

/// Waits until the counter at `offset` reaches `want` (generous timeout), returns it.
fn wait_count(mem: &MapMemory, offset: usize, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = mem.read_u64(offset).expect("read counter");
        if got >= want || Instant::now() > deadline {
            // Let stragglers arrive so an over-count would show.
            std::thread::sleep(Duration::from_millis(50));
            return mem.read_u64(offset).expect("read counter");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn attach_and_count(mode: XdpMode, expected_attach_mode: u8) {
    let pair = VethPair::new(&format!("xdp-{mode}"));
    let vars = Map::create(&MapSpec::mmapable_array("counts", 16, 1)).expect("map");
    let mem = vars.mmap().expect("mmap");
    let prog = counter(&vars, 0, "count");
    let link = XdpLink::attach(&prog, pair.host(), mode).unwrap_or_else(|e| panic!("{e}"));
    let index = xdp::ifindex(pair.host()).expect("ifindex");
    let attached = sys::current().xdp_attached(index).expect("netlink");
    assert_eq!(attached.mode, expected_attach_mode);
    assert_eq!(attached.prog_id, Some(prog.id().expect("id")));

    pair.send_from_peer(&ethercat_frames(25)).expect("send");
    assert_eq!(wait_count(&mem, 0, 25), 25);

    let info = link.info().expect("link info");
    assert_eq!(info.ifindex, index);
    assert_eq!(info.prog_id, prog.id().expect("id"));
    link.detach().expect("detach");
    assert_eq!(xdp::attached_program(pair.host()).expect("query"), None);
    // Wait until the host end has received the frames (not a fixed sleep: on a busy
    // machine they may take longer), so the check below cannot pass because they are
    // still in flight.
    let rx_before = rx_packets(pair.host());
    pair.send_from_peer(&ethercat_frames(5)).expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx_packets(pair.host()) < rx_before + 5 {
        assert!(
            Instant::now() < deadline,
            "frames sent after detach never arrived"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        mem.read_u64(0).expect("read"),
        25,
        "detached program still counts"
    );
}

/// Frames the interface has received (its kernel statistics).
fn rx_packets(iface: &str) -> u64 {
    let path = format!("/sys/class/net/{iface}/statistics/rx_packets");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {text:?}: {e}"))
}

#[test]
fn native_xdp_counts_frames_from_the_peer() {
    attach_and_count(XdpMode::Native, 1);
}

#[test]
fn generic_xdp_counts_frames_from_the_peer() {
    attach_and_count(XdpMode::Generic, 2);
}

#[test]
fn link_update_replaces_the_program_atomically() {
    let pair = VethPair::new("xdp-replace");
    let vars = Map::create(&MapSpec::mmapable_array("counts", 16, 1)).expect("map");
    let mem = vars.mmap().expect("mmap");
    let a = counter(&vars, 0, "count_a");
    let b = counter(&vars, 8, "count_b");
    let link = XdpLink::attach(&a, pair.host(), XdpMode::Native).unwrap_or_else(|e| panic!("{e}"));
    pair.send_from_peer(&ethercat_frames(10)).expect("send");
    assert_eq!(wait_count(&mem, 0, 10), 10);

    link.replace_if(&a, &b).expect("replace a by b");
    assert_eq!(
        xdp::attached_program(pair.host()).expect("query"),
        Some(b.id().expect("id"))
    );
    pair.send_from_peer(&ethercat_frames(7)).expect("send");
    assert_eq!(wait_count(&mem, 8, 7), 7);
    assert_eq!(
        mem.read_u64(0).expect("read"),
        10,
        "program A ran after replacement"
    );

    let e = link
        .replace_if(&a, &b)
        .expect_err("A is no longer attached");
    assert!(matches!(e, XdpError::NotExpectedProgram { .. }), "{e}");
    link.replace(&a).expect("unconditional replace");
    pair.send_from_peer(&ethercat_frames(3)).expect("send");
    assert_eq!(wait_count(&mem, 0, 13), 13);
    assert_eq!(mem.read_u64(8).expect("read"), 7);
}

#[test]
fn second_attach_names_the_attached_program() {
    let pair = VethPair::new("xdp-busy");
    let vars = Map::create(&MapSpec::mmapable_array("counts", 16, 1)).expect("map");
    let a = counter(&vars, 0, "first");
    let b = counter(&vars, 8, "second");
    let _link = XdpLink::attach(&a, pair.host(), XdpMode::Native).unwrap_or_else(|e| panic!("{e}"));
    let e = XdpLink::attach(&b, pair.host(), XdpMode::Native).expect_err("busy");
    let a_id = a.id().expect("id");
    assert!(
        matches!(e, XdpError::AlreadyAttached { prog_id: Some(id), .. } if id == a_id),
        "{e}"
    );
    let e = XdpLink::attach(&b, "fc-no-such-if", XdpMode::Native).expect_err("missing");
    assert!(matches!(e, XdpError::InterfaceMissing { .. }), "{e}");
}

#[test]
fn unpinned_link_detaches_on_drop_pinned_link_stays_until_detached() {
    let pair = VethPair::new("xdp-pin");
    let fs_mount = BpffsMount::new("xdp-pin");
    let fs = Bpffs::at(fs_mount.path()).expect("private bpffs");
    let vars = Map::create(&MapSpec::mmapable_array("counts", 16, 1)).expect("map");
    let mem = vars.mmap().expect("mmap");
    let prog = counter(&vars, 0, "pinned");
    let prog_id = prog.id().expect("id");

    let link = XdpLink::attach(&prog, pair.host(), XdpMode::Native).expect("attach");
    drop(link);
    assert_eq!(xdp::attached_program(pair.host()).expect("query"), None);
    assert!(xdp::find_link(pair.host()).expect("find").is_none());

    let link = XdpLink::attach(&prog, pair.host(), XdpMode::Native).expect("attach");
    let path = link.pin(&fs, "link").expect("pin");
    drop(link);
    drop(prog);
    assert_eq!(
        xdp::attached_program(pair.host()).expect("query"),
        Some(prog_id)
    );
    pair.send_from_peer(&ethercat_frames(4)).expect("send");
    assert_eq!(wait_count(&mem, 0, 4), 4);

    let reopened = XdpLink::open_pinned(&path).expect("open pinned link");
    assert_eq!(reopened.iface(), pair.host());
    assert_eq!(reopened.info().expect("info").prog_id, prog_id);
    drop(reopened);
    let found = xdp::find_link(pair.host()).expect("find").expect("a link");
    assert_eq!(found.info().expect("info").prog_id, prog_id);
    drop(found);

    assert!(xdp::detach_interface(pair.host()).expect("detach"));
    assert_eq!(xdp::attached_program(pair.host()).expect("query"), None);
    assert!(!xdp::detach_interface(pair.host()).expect("nothing left"));
    assert!(fs.unpin("link").expect("unpin"));
    assert!(!path.exists());
}

/// Marks EtherCAT frames (byte 14 := 0x42) and bounces them with XDP_TX.
fn bouncer() -> Program {
    let mut insns = vec![mov_reg(Reg::R6, Reg::R1)];
    insns.extend(packet_check(Reg::R6, 15, 5));
    insns.extend([
        ldx(Size::H, Reg::R5, Reg::R2, 12),
        jmp_imm(
            JmpCond::Ne,
            Reg::R5,
            i32::from(ETHERTYPE_ETHERCAT.swap_bytes()),
            3,
        ),
        st(Size::B, Reg::R2, 14, 0x42),
        mov(Reg::R0, xdp_action::TX as i32),
        Insn::Exit,
    ]);
    insns.extend(ret(xdp_action::PASS));
    Program::load_xdp("bounce", &encode(&insns)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn xdp_tx_bounces_frames_back_to_a_peer_running_xdp() {
    let pair = VethPair::new("xdp-tx");
    let bounce = bouncer();
    let _link = XdpLink::attach(&bounce, pair.host(), XdpMode::Native).expect("attach");
    let pass = Program::load_xdp("pass", &encode(&ret(xdp_action::PASS))).expect("load");
    let frames = ethercat_frames(5);
    let received = pair.in_netns(|| {
        // XDP_TX on a veth delivers only if the receiving end runs XDP too.
        let _peer_link = XdpLink::attach(&pass, pair.peer(), XdpMode::Native).expect("attach");
        let sock = e2e::PacketSocket::bind(pair.peer()).expect("socket");
        let mut got = Vec::new();
        for f in &frames {
            sock.send(f).expect("send");
            match sock.recv_incoming(Duration::from_secs(5)).expect("recv") {
                Some(frame) => got.push(frame),
                None => break,
            }
        }
        got
    });
    let expected: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f[14] = 0x42;
            f
        })
        .collect();
    assert_eq!(received, expected);
}
