//! Kernel tests of the builder's map access (`map_lookup`, `map_entry`, `map_add`) as
//! generic XDP programs use it: each program is loaded through the verifier and run with
//! `BPF_PROG_TEST_RUN` on crafted packets, and the map contents the host reads are
//! compared with what the program must have done. They need root and fail without it.

use ferrocat::xdp::{
    Builder, Declare, Global, HashMap, PerCpuArray, XDP_DROP, XDP_PASS, Xdp, XdpProgram,
};
use ferrocat_plugin_api::fragment::{ScalarType, VarType};

/// A 60-byte frame with `ether_type` and byte 14 = `b14`.
fn packet(ether_type: u16, b14: u8) -> Vec<u8> {
    let mut p = vec![0u8; 60];
    p[12..14].copy_from_slice(&ether_type.to_be_bytes());
    p[14] = b14;
    p
}

fn run<P: XdpProgram>(x: &Xdp<P>, packet: &[u8]) -> u32 {
    x.kernel_program()
        .expect("loaded")
        .test_run(packet)
        .expect("test run")
        .retval
}

/// Signed 4-byte values: `entry` inserts 0, the closure subtracts byte 14.
#[derive(Debug)]
struct Signed {
    debt: HashMap<u16, i32>,
}

impl XdpProgram for Signed {
    const NAME: &'static str = "signed";
    fn declare(d: &mut Declare) -> Self {
        Signed {
            debt: d.hash_map("debt", 16),
        }
    }
    fn program(&self, b: &Builder) {
        let et = b.packet(12, VarType::be(ScalarType::U16));
        let amount = b.packet(14, ScalarType::U8);
        self.debt.entry(b, et, |_, v| v.sub_assign(amount));
    }
}

#[test]
fn entry_inserts_and_signed_values_round_trip() {
    let x = Xdp::<Signed>::new().expect("load");
    for _ in 0..3 {
        assert_eq!(run(&x, &packet(0x1111, 7)), 2);
    }
    run(&x, &packet(0x2222, 200));
    assert_eq!(x.debt.get(0x1111).expect("get"), Some(-21));
    assert_eq!(x.debt.get(0x2222).expect("get"), Some(-200));
    x.debt.insert(0x1111, i32::MIN + 1).expect("insert");
    run(&x, &packet(0x1111, 2));
    assert_eq!(x.debt.get(0x1111).expect("get"), Some(i32::MAX), "wraps");
}

/// `lookup` of a missing key skips the body; an exit inside the body skips the
/// write-back; the value variable may live on the stack when r6/r7 hold locals.
#[derive(Debug)]
struct Lookups {
    table: HashMap<u8, u64>,
    seen: Global<u64>,
}

impl XdpProgram for Lookups {
    const NAME: &'static str = "lookups";
    fn declare(d: &mut Declare) -> Self {
        Lookups {
            table: d.hash_map("table", 16),
            seen: d.global("seen"),
        }
    }
    fn program(&self, b: &Builder) {
        let key = b.packet(14, ScalarType::U8);
        let seen = self.seen.var(b);
        // Two locals take r6 and r7: the map value gets a stack slot.
        let a = b.temp(b.packet(12, VarType::be(ScalarType::U16)));
        let c = b.temp(a.get() + 1u32);
        self.table.lookup(b, key, |b, v| {
            seen.assign(v);
            b.if_(v.gt(1000u32), |b| {
                v.assign(0u32);
                b.exit(XDP_DROP);
            });
            v.add_assign(c.get() - a.get());
        });
    }
}

#[test]
fn lookup_skips_missing_keys_and_exit_skips_the_write_back() {
    let x = Xdp::<Lookups>::new().expect("load");
    assert_eq!(run(&x, &packet(0x0800, 5)), 2);
    assert_eq!(x.table.get(5).expect("get"), None, "lookup does not insert");
    assert_eq!(x.seen.get().expect("seen"), 0, "body skipped");

    x.table.insert(5, 40).expect("insert");
    assert_eq!(run(&x, &packet(0x0800, 5)), 2);
    assert_eq!(x.seen.get().expect("seen"), 40);
    assert_eq!(x.table.get(5).expect("get"), Some(41));

    x.table.insert(6, 5000).expect("insert");
    assert_eq!(
        run(&x, &packet(0x0800, 6)),
        1,
        "XDP_DROP from inside the body"
    );
    assert_eq!(x.seen.get().expect("seen"), 5000);
    assert_eq!(
        x.table.get(6).expect("get"),
        Some(5000),
        "an exit skips the write-back"
    );
}

/// `map_add` with a delta that calls a helper after the lookup (the value pointer in
/// r0 must survive the call), and array indexes out of range.
#[derive(Debug)]
struct Adds {
    per_cpu: PerCpuArray<u64>,
    counts: HashMap<u32, u64>,
}

impl XdpProgram for Adds {
    const NAME: &'static str = "adds";
    fn declare(d: &mut Declare) -> Self {
        Adds {
            per_cpu: d.per_cpu_array("per_cpu", 4),
            counts: d.hash_map("counts", 16),
        }
    }
    fn program(&self, b: &Builder) {
        let index = b.packet(14, ScalarType::U8);
        // ktime is never 0 here: the delta is 2, computed after the lookup.
        let two = b.ktime_get_ns().ne(0u32).as_value() + 1u32;
        self.counts.add(b, index, two);
        self.per_cpu.at(b, index, |_, v| v.add_assign(3u32));
        b.exit(XDP_PASS);
    }
}

#[test]
fn map_add_survives_a_helper_call_and_arrays_ignore_bad_indexes() {
    let x = Xdp::<Adds>::new().expect("load");
    for i in [0u8, 3, 3, 9] {
        assert_eq!(run(&x, &packet(0x0800, i)), 2);
    }
    assert_eq!(
        x.counts.entries().expect("entries"),
        vec![(0, 2), (3, 4), (9, 2)]
    );
    assert_eq!(x.per_cpu.sum(0).expect("sum"), 3);
    assert_eq!(x.per_cpu.sum(3).expect("sum"), 6);
    assert_eq!(x.per_cpu.sum(1).expect("sum"), 0);
    // Index 9 is beyond the 4 entries: nothing to look up, nothing written.
    assert_eq!(
        x.per_cpu.per_cpu(9).expect("absent index"),
        Vec::<u64>::new()
    );
    // The delta's helper call comes after the last lookup, while r0 holds the pointer.
    let listing = x.listing();
    let lookups: Vec<usize> = listing
        .match_indices("call bpf_map_lookup_elem")
        .map(|(i, _)| i)
        .collect();
    let ktime = listing.find("call bpf_ktime_get_ns").expect("ktime call");
    let add = listing.find("lock *(u64 *)").expect("atomic add");
    assert!(lookups[1] < ktime && ktime < add, "{listing}");
}
