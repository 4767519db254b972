//! Kernel tests of maps: values shared between programs and the host through mmap,
//! per-CPU values, hash iteration, ring buffer records. They need root and fail
//! without it.

mod bpf_asm;

use std::time::Duration;

use bpf_asm::*;
use ferrocat::bpf::map::{Map, MapSpec, RingBufReader, UpdateMode};
use ferrocat::bpf::prog::{Program, xdp_action};
use ferrocat_plugin_api::ebpf::insn::{Insn, JmpCond, Reg, Size, encode};

#[test]
fn mmapped_array_is_shared_between_program_and_host() {
    let vars = Map::create(&MapSpec::mmapable_array("vars", 16, 1)).expect("create");
    let mem = vars.mmap().expect("mmap");
    // The program counts runs at offset 0 (atomic add on map memory) and copies the u32
    // the host wrote at offset 8 into packet bytes 14..18.
    let mut insns = vec![
        mov_reg(Reg::R7, Reg::R1),
        Insn::LdMapValue {
            dst: Reg::R6,
            fd: vars.raw_fd(),
            off: 0,
        },
        mov(Reg::R1, 1),
        atomic_add64(Reg::R6, 0, Reg::R1),
    ];
    insns.extend(packet_check(Reg::R7, 18, 4));
    insns.extend([
        ldx(Size::W, Reg::R5, Reg::R6, 8),
        stx(Size::W, Reg::R2, 14, Reg::R5),
    ]);
    insns.extend(ret(xdp_action::TX));
    insns.extend(ret(xdp_action::DROP));
    let p = Program::load_xdp("shared", &encode(&insns)).unwrap_or_else(|e| panic!("{e}"));

    mem.write_u32(8, 0xdead_beef).expect("host write");
    let mut last = Vec::new();
    for _ in 0..5 {
        let run = p.test_run(&frame(64)).expect("run");
        assert_eq!(run.retval, xdp_action::TX);
        last = run.data;
    }
    assert_eq!(mem.read_u64(0).expect("host read"), 5);
    assert_eq!(&last[14..18], &0xdead_beefu32.to_ne_bytes());
    // The host's atomic add and the program's see each other.
    assert_eq!(mem.fetch_add::<u64>(0, 10).expect("add"), 5);
    p.test_run(&frame(64)).expect("run");
    assert_eq!(mem.read_u64(0).expect("read"), 16);
    // The syscall view agrees with the mapping.
    let v = vars
        .lookup(&0u32.to_ne_bytes())
        .expect("lookup")
        .expect("entry");
    assert_eq!(&v[0..8], &16u64.to_ne_bytes());
}

fn percpu_counter(map: &Map) -> Program {
    let insns = [
        st(Size::W, Reg::R10, -4, 0),
        mov_reg(Reg::R2, Reg::R10),
        add(Reg::R2, -4),
        Insn::LdMapFd {
            dst: Reg::R1,
            fd: map.raw_fd(),
        },
        Insn::Call {
            helper: BPF_FUNC_MAP_LOOKUP_ELEM,
        },
        jmp_imm(JmpCond::Eq, Reg::R0, 0, 2),
        mov(Reg::R1, 1),
        atomic_add64(Reg::R0, 0, Reg::R1),
        mov(Reg::R0, xdp_action::PASS as i32),
        Insn::Exit,
    ];
    Program::load_xdp("percpu", &encode(&insns)).unwrap_or_else(|e| panic!("{e}"))
}

fn run_on_cpu(p: &Program, cpu: usize, times: u32) {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe { libc::CPU_SET(cpu, &mut set) };
            // SAFETY: pins this (scoped) thread only.
            let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
            assert_eq!(rc, 0, "pinning to CPU {cpu}");
            let run = p.test_run_repeat(&frame(64), times).expect("run");
            assert_eq!(run.retval, xdp_action::PASS);
        });
    });
}

#[test]
fn percpu_values_are_read_per_cpu_and_summed() {
    let map = Map::create(&MapSpec::percpu_array("pcount", 8, 1)).expect("create");
    let p = percpu_counter(&map);
    let cpus = map.possible_cpus().expect("cpus");
    let online = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(cpus);
    let mut expected = vec![0u64; cpus];
    for (cpu, slot) in expected.iter_mut().enumerate().take(online) {
        let times = 10 * (cpu as u32 + 1);
        run_on_cpu(&p, cpu, times);
        *slot = u64::from(times);
    }
    let values = map
        .lookup_percpu(&0u32.to_ne_bytes())
        .expect("lookup")
        .expect("entry");
    let got: Vec<u64> = values
        .iter()
        .map(|v| u64::from_ne_bytes(v[..8].try_into().expect("8 bytes")))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        map.sum_percpu(&0u32.to_ne_bytes(), 0, 8).expect("sum"),
        Some(expected.iter().sum())
    );
}

#[test]
fn hash_entries_from_program_and_host_iterate() {
    let map = Map::create(&MapSpec::hash("dict", 4, 8, 64)).expect("create");
    // The program stores 7 => 42.
    let insns = [
        st(Size::W, Reg::R10, -4, 7),
        st(Size::DW, Reg::R10, -16, 42),
        mov_reg(Reg::R2, Reg::R10),
        add(Reg::R2, -4),
        mov_reg(Reg::R3, Reg::R10),
        add(Reg::R3, -16),
        mov(Reg::R4, 0),
        Insn::LdMapFd {
            dst: Reg::R1,
            fd: map.raw_fd(),
        },
        Insn::Call {
            helper: BPF_FUNC_MAP_UPDATE_ELEM,
        },
        mov(Reg::R0, xdp_action::PASS as i32),
        Insn::Exit,
    ];
    let p = Program::load_xdp("dict", &encode(&insns)).unwrap_or_else(|e| panic!("{e}"));
    for k in [1u32, 2, 3] {
        map.update(
            &k.to_ne_bytes(),
            &u64::from(k * 100).to_ne_bytes(),
            UpdateMode::NoExist,
        )
        .expect("insert");
    }
    p.test_run(&frame(64)).expect("run");
    let mut entries: Vec<(u32, u64)> = map
        .entries()
        .expect("entries")
        .into_iter()
        .map(|(k, v)| {
            (
                u32::from_ne_bytes(k[..4].try_into().expect("key")),
                u64::from_ne_bytes(v[..8].try_into().expect("value")),
            )
        })
        .collect();
    entries.sort();
    assert_eq!(entries, vec![(1, 100), (2, 200), (3, 300), (7, 42)]);
    assert!(map.delete(&2u32.to_ne_bytes()).expect("delete"));
    assert_eq!(map.keys().expect("keys").len(), 3);
    assert_eq!(map.lookup(&2u32.to_ne_bytes()).expect("lookup"), None);
}

#[test]
fn ring_buffer_delivers_records_in_order() {
    let rb = Map::create(&MapSpec::ring_buf("tap", 4096)).expect("create");
    let mut reader = RingBufReader::new(&rb).expect("mmap");
    assert_eq!(reader.next(), None);
    // The program copies the first 8 bytes of each frame into the ring buffer.
    let mut insns = vec![mov_reg(Reg::R6, Reg::R1)];
    insns.extend(packet_check(Reg::R6, 8, 9));
    insns.extend([
        ldx(Size::DW, Reg::R5, Reg::R2, 0),
        stx(Size::DW, Reg::R10, -8, Reg::R5),
        mov_reg(Reg::R2, Reg::R10),
        add(Reg::R2, -8),
        mov(Reg::R3, 8),
        mov(Reg::R4, 0),
        Insn::LdMapFd {
            dst: Reg::R1,
            fd: rb.raw_fd(),
        },
        Insn::Call {
            helper: BPF_FUNC_RINGBUF_OUTPUT,
        },
    ]);
    insns.extend(ret(xdp_action::PASS));
    let p = Program::load_xdp("tap", &encode(&insns)).unwrap_or_else(|e| panic!("{e}"));
    let frames: Vec<Vec<u8>> = (0..600u32)
        .map(|i| {
            let mut f = frame(60);
            f[..4].copy_from_slice(&i.to_be_bytes());
            f
        })
        .collect();
    // 600 records of 16 bytes exceed the 4 KiB buffer: read as we go, so the data
    // area wraps around several times.
    let mut got = Vec::new();
    for f in &frames {
        p.test_run(f).expect("run");
        got.extend(reader.drain());
    }
    let expected: Vec<Vec<u8>> = frames.iter().map(|f| f[..8].to_vec()).collect();
    assert_eq!(got, expected);
    assert_eq!(reader.next(), None);

    // Waiting: nothing within a short timeout, then a record written by another thread
    // wakes the reader.
    assert!(!reader.wait(Duration::from_millis(20)).expect("wait"));
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            p.test_run(&frames[7]).expect("run");
        });
        assert!(reader.wait(Duration::from_secs(10)).expect("wait"));
    });
    assert_eq!(reader.next(), Some(frames[7][..8].to_vec()));
}

/// `bpf_tail_call` (`enum bpf_func_id`).
const BPF_FUNC_TAIL_CALL: i32 = 12;

/// A dispatcher that tail-calls slot `slot` of `slots` and passes the frame if the slot
/// is empty.
fn dispatcher(slots: &Map, slot: i32) -> Program {
    let insns = [
        Insn::LdMapFd {
            dst: Reg::R2,
            fd: slots.raw_fd(),
        },
        mov(Reg::R3, slot),
        Insn::Call {
            helper: BPF_FUNC_TAIL_CALL,
        },
        mov(Reg::R0, xdp_action::PASS as i32),
        Insn::Exit,
    ];
    Program::load_xdp("dispatch", &encode(&insns)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn prog_array_slots_route_tail_calls() {
    let slots = Map::create(&MapSpec::prog_array("slots", 4)).expect("create");
    let group = Program::load_xdp("group", &encode(&ret(xdp_action::TX))).expect("load");
    let d = dispatcher(&slots, 2);
    assert_eq!(
        d.test_run(&frame(60)).expect("run").retval,
        xdp_action::PASS
    );
    slots.set_prog(2, &group).expect("set");
    assert_eq!(
        slots.prog_id_at(2).expect("slot"),
        Some(group.id().expect("id"))
    );
    assert_eq!(d.test_run(&frame(60)).expect("run").retval, xdp_action::TX);
    assert!(slots.clear_prog(2).expect("clear"));
    assert_eq!(slots.prog_id_at(2).expect("slot"), None);
    assert_eq!(
        d.test_run(&frame(60)).expect("run").retval,
        xdp_action::PASS
    );

    // The kernel fact the dispatcher must live with: closing the last descriptor of an
    // unpinned PROG_ARRAY empties it although the dispatcher still references the map.
    slots.set_prog(2, &group).expect("set");
    assert_eq!(d.test_run(&frame(60)).expect("run").retval, xdp_action::TX);
    drop(slots);
    // The kernel empties it from a work queue: poll with a generous timeout.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while d.test_run(&frame(60)).expect("run").retval != xdp_action::PASS {
        assert!(
            std::time::Instant::now() < deadline,
            "PROG_ARRAY was not emptied"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
