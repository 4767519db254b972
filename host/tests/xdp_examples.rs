//! Kernel tests of the generic XDP examples (`host/examples/xdp_*.rs`): each program
//! runs on a veth pair whose far end sits in a private network namespace, frames of
//! known ether types are sent from there (AF_PACKET), and the values the host reads
//! equal what was sent. The permanent form runs the example binary: attach and exit,
//! read (until the count is there), then read, detach and unpin, after which the
//! program has left the kernel. They need root and fail without it.

#[path = "../../tests/src/lib.rs"]
#[allow(dead_code)]
mod e2e;

mod xdp_support;

#[path = "../examples/xdp_counter.rs"]
#[allow(dead_code)]
mod counter;
#[path = "../examples/xdp_ether_types.rs"]
#[allow(dead_code)]
mod ether_types;
#[path = "../examples/xdp_hash.rs"]
#[allow(dead_code)]
mod hash;
#[path = "../examples/xdp_per_cpu.rs"]
#[allow(dead_code)]
mod per_cpu;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use e2e::{BpffsMount, VethPair};
use ferrocat::bpf::xdp as kxdp;
use ferrocat::xdp::{Error, Xdp};

/// Frames are sent one test at a time (the tests share the machine's CPUs and the
/// counters must see exactly the frames sent).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// IEEE 802 local experimental ether type 1 (IEEE Std 802-2014, 9.2.4): never sent by
/// the kernel on its own.
const ETH_P_802_EX1: u16 = 0x88b5;

/// A 60-byte Ethernet frame of `ether_type` from a locally administered address.
fn frame(ether_type: u16, n: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, n]);
    f[12..14].copy_from_slice(&ether_type.to_be_bytes());
    f
}

fn frames(ether_type: u16, count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| frame(ether_type, i as u8)).collect()
}

/// Waits until `read` returns `want` (up to 10 s), then checks it stays there a
/// little while (no frame counted twice or late).
fn settle<T: PartialEq + std::fmt::Debug>(what: &str, want: T, mut read: impl FnMut() -> T) {
    let start = Instant::now();
    loop {
        let got = read();
        if got == want {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: {got:?} after 10 s, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        read(),
        want,
        "{what} changed after reaching the expected value"
    );
}

#[test]
fn counter_counts_every_frame_while_running_and_detaches_on_drop() {
    let _s = serial();
    let pair = VethPair::new("xdp-counter");
    let c = Xdp::<counter::Counter>::new().expect("load");
    {
        let running = c.run(pair.host()).expect("attach");
        assert_eq!(running.iface(), pair.host());
        assert_eq!(c.count.get().expect("read"), 0);
        pair.send_from_peer(&frames(ETH_P_802_EX1, 7))
            .expect("send");
        settle("count", 7, || c.count.get().expect("read"));
        // The host can write the variable too; the program goes on from there.
        c.count.set(100).expect("write");
        pair.send_from_peer(&frames(ETH_P_802_EX1, 3))
            .expect("send");
        settle("count", 103, || running.count.get().expect("read"));
    }
    assert_eq!(
        kxdp::attached_program(pair.host()).expect("query"),
        None,
        "dropping the guard detaches"
    );
    pair.send_from_peer(&frames(ETH_P_802_EX1, 2))
        .expect("send");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        c.count.get().expect("read"),
        103,
        "detached: nothing counted"
    );
}

#[test]
fn ether_types_counts_ipv4_and_ipv6_separately() {
    let _s = serial();
    let pair = VethPair::new("xdp-ethertypes");
    let c = Xdp::<ether_types::EtherTypes>::new().expect("load");
    let _running = c.run(pair.host()).expect("attach");
    let mut sent = frames(0x0800, 5);
    sent.extend(frames(0x86dd, 3));
    sent.extend(frames(ETH_P_802_EX1, 4));
    sent.extend(frames(0x0800, 1));
    pair.send_from_peer(&sent).expect("send");
    settle("ipv4, ipv6", (6, 3), || {
        (c.ipv4.get().expect("ipv4"), c.ipv6.get().expect("ipv6"))
    });
}

#[test]
fn per_cpu_counter_sums_over_cpus() {
    let _s = serial();
    let pair = VethPair::new("xdp-percpu");
    let c = Xdp::<per_cpu::PerCpuCounter>::new().expect("load");
    let _running = c.run(pair.host()).expect("attach");
    pair.send_from_peer(&frames(ETH_P_802_EX1, 9))
        .expect("send");
    settle("sum", 9, || c.packets.sum(0).expect("sum"));
    let per_cpu = c.packets.per_cpu(0).expect("per cpu");
    let cpus = ferrocat::bpf::sys::current()
        .possible_cpus()
        .expect("possible cpus");
    assert_eq!(per_cpu.len(), cpus);
    assert_eq!(per_cpu.iter().sum::<u64>(), 9);
    c.packets.set_all(0, 0).expect("reset");
    assert_eq!(c.packets.sum(0).expect("sum"), 0);
}

#[test]
fn hash_map_counts_per_ether_type() {
    let _s = serial();
    let pair = VethPair::new("xdp-hash");
    let c = Xdp::<hash::PerEtherType>::new().expect("load");
    let _running = c.run(pair.host()).expect("attach");
    let mut sent = frames(ETH_P_802_EX1, 4);
    sent.extend(frames(0x0800, 2));
    sent.extend(frames(0x88b6, 1));
    pair.send_from_peer(&sent).expect("send");
    settle(
        "entries",
        vec![(0x0800, 2), (0x88b5, 4), (0x88b6, 1)],
        || c.counts.entries().expect("entries"),
    );
    assert_eq!(c.counts.get(0x88b5).expect("get"), Some(4));
    assert_eq!(c.counts.get(0x86dd).expect("get"), None);
    // Host-side changes are seen by the program.
    c.counts.insert(0x88b6, 40).expect("insert");
    assert!(c.counts.remove(0x0800).expect("remove"));
    assert!(!c.counts.remove(0x0800).expect("remove again"));
    pair.send_from_peer(&frames(0x88b6, 2)).expect("send");
    settle("entries", vec![(0x88b5, 4), (0x88b6, 42)], || {
        c.counts.entries().expect("entries")
    });
}

fn run_permanent(args: &[&str]) -> String {
    let out = Command::new(xdp_support::example("xdp_permanent"))
        .args(args)
        .output()
        .expect("run xdp_permanent");
    assert!(
        out.status.success(),
        "xdp_permanent {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn permanent_program_survives_its_process_and_is_detached_by_another() {
    let _s = serial();
    let pair = VethPair::new("xdp-permanent");
    let fs = BpffsMount::new("xdp-permanent");
    let dir = fs.path().join("my_maps");
    let dir_s = dir.to_str().expect("utf-8 path");

    let out = run_permanent(&["attach", pair.host(), dir_s]);
    assert!(out.contains("attached to"), "{out}");
    // The attaching process has exited; the program still runs.
    let prog = kxdp::attached_program(pair.host())
        .expect("query")
        .expect("program detached with its process");
    assert!(xdp_support::program_loaded(prog));
    for name in ["globals", "link"] {
        assert!(dir.join(name).exists(), "{name} not pinned");
    }
    pair.send_from_peer(&frames(ETH_P_802_EX1, 6))
        .expect("send");
    let start = Instant::now();
    while run_permanent(&["read", dir_s]).trim() != "count 6" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "count never reached 6"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = run_permanent(&["detach", pair.host(), dir_s]);
    assert_eq!(out.trim(), "count 6");
    assert_eq!(kxdp::attached_program(pair.host()).expect("query"), None);
    assert!(kxdp::find_link(pair.host()).expect("links").is_none());
    assert!(!dir.exists(), "pin directory left behind");
    // Nothing holds the program any more: the kernel has freed it.
    xdp_support::wait_unloaded(prog, "after the permanent program's detach");
}

#[test]
fn errors_name_what_to_fix() {
    let _s = serial();
    // A missing interface.
    let c = Xdp::<counter::Counter>::new().expect("load");
    let e = c.run("fcnosuch0").expect_err("no such interface");
    assert!(
        matches!(e, Error::Xdp(kxdp::XdpError::InterfaceMissing { .. })),
        "{e}"
    );
    assert!(
        e.to_string().contains("interface fcnosuch0 does not exist"),
        "{e}"
    );

    // A directory that is not on a bpffs (removed again, also if the test fails).
    struct TmpDir(PathBuf);
    impl Drop for TmpDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let tmp =
        TmpDir(std::env::temp_dir().join(format!("ferrocat-xdp-notbpffs-{}", std::process::id())));
    std::fs::create_dir_all(&tmp.0).expect("tmp dir");
    let e = c.pin_maps(tmp.0.join("maps")).expect_err("not bpffs");
    assert!(e.to_string().contains("is not on a bpf filesystem"), "{e}");
    assert!(
        !tmp.0.join("maps").exists(),
        "nothing created outside bpffs"
    );

    // Pinning twice at the same place (two instances): the path exists.
    let fs = BpffsMount::new("xdp-errors");
    let dir = fs.path().join("maps");
    c.pin_maps(&dir).expect("first pin");
    let second = Xdp::<counter::Counter>::new().expect("load");
    let e = second.pin_maps(&dir).expect_err("pinned twice");
    assert!(e.to_string().contains("the path exists"), "{e}");

    // Opening the pins as another program whose maps differ: wrong map type.
    let e = Xdp::<hash::PerEtherType>::load_maps(&dir).expect_err("no counts map");
    assert!(e.to_string().contains("nothing is pinned"), "{e}");
    std::fs::rename(dir.join("globals"), dir.join("counts")).expect("rename pin");
    let e = Xdp::<hash::PerEtherType>::load_maps(&dir).expect_err("wrong type");
    assert!(
        matches!(
            e,
            Error::Bpffs(ferrocat::bpf::bpffs::BpffsError::WrongMapType { .. })
        ),
        "{e}"
    );
}
