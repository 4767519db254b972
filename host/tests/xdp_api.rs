//! Kernel tests of `ferrocat::xdp` beyond the examples: a verifier rejection reported
//! with its annotated listing, generic mode, the error a process without privileges
//! gets, and `ferrocat xdp show` / `ferrocat xdp detach`. They need root and fail
//! without it.

#[path = "../../tests/src/lib.rs"]
#[allow(dead_code)]
mod e2e;

mod xdp_support;

#[path = "../examples/xdp_counter.rs"]
#[allow(dead_code)]
mod counter;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use e2e::{BpffsMount, VethPair};
use ferrocat::bpf::prog::LoadError;
use ferrocat::bpf::xdp as kxdp;
use ferrocat::xdp::{
    Builder, Declare, Error, MapRef, PerCpuArray, XDP_PASS, Xdp, XdpMode, XdpProgram,
};
use ferrocat_plugin_api::fragment::ScalarType;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// IEEE 802 local experimental ether type 1 (IEEE Std 802-2014, 9.2.4).
const ETH_P_802_EX1: u16 = 0x88b5;

fn frames(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut f = vec![0u8; 60];
            f[..6].copy_from_slice(&[0xff; 6]);
            f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 1, i as u8]);
            f[12..14].copy_from_slice(&ETH_P_802_EX1.to_be_bytes());
            f
        })
        .collect()
}

/// Reads 8 bytes from a map whose values have 4: the verifier refuses the access.
#[derive(Debug)]
struct TooWide {
    small: PerCpuArray<u32>,
}

impl XdpProgram for TooWide {
    const NAME: &'static str = "too_wide";

    fn declare(d: &mut Declare) -> Self {
        TooWide {
            small: d.per_cpu_array("small", 1),
        }
    }

    fn program(&self, b: &Builder) {
        let wrong = MapRef {
            value: ScalarType::U64,
            ..self.small.map_ref()
        };
        b.map_lookup(wrong, 0u32, |_, v| v.add_assign(1));
        b.exit(XDP_PASS);
    }
}

#[test]
fn verifier_rejection_shows_the_failing_instruction_in_context() {
    let e = Xdp::<TooWide>::new().expect_err("the verifier refuses it");
    let Error::Load(LoadError::Rejected(v)) = &e else {
        panic!("expected a verifier rejection, got {e}");
    };
    assert!(
        v.message.contains("invalid access to map value"),
        "{}",
        v.message
    );
    let slot = v.failing_insn.expect("the log names the instruction");
    let (fragment, _) = v.fragment.clone().expect("in a fragment");
    assert_eq!(fragment, "too_wide");
    // The listing marks the failing line, a load of 8 bytes through the map pointer.
    let marked = v
        .listing
        .lines()
        .find(|l| l.trim_start().starts_with('>'))
        .unwrap_or_else(|| panic!("no marked line in\n{}", v.listing));
    assert!(marked.contains(&format!("{slot}:")), "{marked}");
    assert!(marked.contains("*(u64 *)(r0 +0)"), "{marked}");
    let text = e.to_string();
    assert!(
        text.contains("the verifier rejected program `too_wide`"),
        "{text}"
    );
    assert!(text.contains("verifier log"), "{text}");
}

#[test]
fn generic_mode_counts_too() {
    let _s = serial();
    let pair = VethPair::new("xdp-generic");
    let c = Xdp::<counter::Counter>::new()
        .expect("load")
        .with_mode(XdpMode::Generic);
    let _running = c.run(pair.host()).expect("attach generic");
    pair.send_from_peer(&frames(5)).expect("send");
    let start = Instant::now();
    while c.count.get().expect("read") != 5 {
        assert!(start.elapsed() < Duration::from_secs(10), "count stuck");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.count.get().expect("read"), 5);
}

#[test]
fn without_privileges_the_error_names_the_capabilities() {
    // The counter example run as nobody with every capability dropped (it fails on
    // its first map, before it would look for the interface).
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(xdp_support::example("xdp_counter"))
        .arg("fcnosuch0")
        .output()
        .expect("run setpriv (util-linux)");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(err.contains("CAP_BPF"), "{err}");
    assert!(err.contains("run as root or grant them"), "{err}");
}

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn ferrocat(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferrocat"))
        .args(args)
        .output()
        .expect("run ferrocat")
}

#[test]
fn cli_shows_and_detaches_a_permanent_program() {
    let p = permanent("xdp-cli");
    let (pair, fs, dir, prog) = (&p.pair, &p.fs, &p.dir, p.prog);

    let out = ferrocat(&["xdp", "show", pair.host()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("XDP program id {prog}, link id")),
        "{text}"
    );

    // Detach removes the link's pin, which would keep the program loaded, and keeps
    // the map pins, saying where they are.
    let out = ferrocat(&["xdp", "detach", pair.host()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("XDP program id {prog} detached")),
        "{text}"
    );
    let link = dir.join("link");
    assert!(
        text.contains(&format!("removed the link's pin {}", link.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("ferrocat xdp unpin {}", dir.display())),
        "{text}"
    );
    assert_eq!(kxdp::attached_program(pair.host()).expect("query"), None);
    assert!(!link.exists(), "the link's pin is left");
    assert!(dir.join("globals").exists(), "the map pin is kept");
    xdp_support::wait_unloaded(prog, "after `ferrocat xdp detach`");

    // The kept pins go with `ferrocat xdp unpin DIR`; a bpffs mount itself is refused.
    let out = ferrocat(&["xdp", "unpin", path_str(fs.path())]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("it is a bpffs mount"), "{err}");
    assert!(dir.join("globals").exists());
    let out = ferrocat(&["xdp", "unpin", path_str(dir)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("removed {}", dir.join("globals").display())),
        "{text}"
    );
    assert!(!dir.exists(), "the pin directory is left");
    let out = ferrocat(&["xdp", "unpin", path_str(dir)]);
    assert_eq!(out.status.code(), Some(66), "nothing there any more");

    // Nothing left to detach: exit 69 (EX_UNAVAILABLE) and a message.
    let out = ferrocat(&["xdp", "detach", pair.host()]);
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no XDP program attached"), "{err}");

    let out = ferrocat(&["xdp", "show", pair.host()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no XDP program"), "{text}");

    let out = ferrocat(&["xdp", "detach", "fcnosuch0"]);
    assert_eq!(out.status.code(), Some(66));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interface fcnosuch0 does not exist"), "{err}");
}

/// The permanent example attached to a fresh veth pair by a process that has exited,
/// its pins in `dir` on a private bpffs; holds the lock of the tests that attach.
struct Permanent {
    pair: VethPair,
    fs: BpffsMount,
    dir: std::path::PathBuf,
    /// The id of the program left attached.
    prog: u32,
    _serial: std::sync::MutexGuard<'static, ()>,
}

fn permanent(tag: &str) -> Permanent {
    let serial = serial();
    let pair = VethPair::new(tag);
    let fs = BpffsMount::new(tag);
    let dir = fs.path().join("maps");
    let out = Command::new(xdp_support::example("xdp_permanent"))
        .args(["attach", pair.host()])
        .arg(&dir)
        .output()
        .expect("run xdp_permanent");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prog = kxdp::attached_program(pair.host())
        .expect("query")
        .expect("attached after the process exited");
    Permanent {
        pair,
        fs,
        dir,
        prog,
        _serial: serial,
    }
}

/// `xdp detach` suggests `xdp unpin DIR` only for a directory that unpin takes: a
/// directory holding a directory, and a bpffs mount itself, are named with the reason
/// instead, their pins kept.
#[test]
fn detach_suggests_unpin_only_where_it_works() {
    let p = permanent("xdp-kept");
    let (pair, fs, dir, prog) = (&p.pair, &p.fs, &p.dir, p.prog);
    std::fs::create_dir(dir.join("sub")).expect("a directory among the pins");
    // The link pinned a second time, at the mount itself (next to `maps`).
    let link = kxdp::XdpLink::open_pinned(&dir.join("link")).expect("the pinned link");
    let fs_root = ferrocat::bpf::bpffs::Bpffs::at(fs.path()).expect("bpffs");
    link.pin(&fs_root, "link2").expect("pin at the mount");
    drop(link);

    let out = ferrocat(&["xdp", "detach", pair.host()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pin in [dir.join("link"), fs.path().join("link2")] {
        assert!(
            text.contains(&format!("removed the link's pin {}", pin.display())),
            "{text}"
        );
        assert!(!pin.exists(), "{} left", pin.display());
    }
    assert!(
        !text.contains("ferrocat xdp unpin "),
        "no unpin to suggest:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "kept the other pins in {} (not a pin directory for `ferrocat xdp unpin`: it holds the directory `sub`; remove them one by one)",
            dir.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "kept the other pins in {} (not a pin directory for `ferrocat xdp unpin`: it is a bpffs mount, not a pin directory in one;",
            fs.path().display()
        )),
        "{text}"
    );
    assert!(dir.join("globals").exists(), "the map pin is kept");
    xdp_support::wait_unloaded(prog, "after `ferrocat xdp detach`");
}

/// Makes the mount at `path` read-only (`ro`) or writable again, this mount only.
fn set_read_only(path: &std::path::Path, ro: bool) {
    let c = std::ffi::CString::new(path_str(path)).expect("no NUL in the path");
    let flags = libc::MS_REMOUNT | libc::MS_BIND | if ro { libc::MS_RDONLY } else { 0 };
    // SAFETY: a NUL-terminated path; the other pointers may be null for a remount.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    assert_eq!(
        rc,
        0,
        "remount {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// When the link's pin cannot be removed after the program was detached (here: the
/// bpffs mount is read-only), `xdp detach` fails saying what it did and what is left:
/// the program is detached, the pin stays and keeps the program loaded, and why.
#[test]
fn detach_reports_a_pin_it_could_not_remove() {
    let p = permanent("xdp-ro");
    let (pair, fs, dir, prog) = (&p.pair, &p.fs, &p.dir, p.prog);
    set_read_only(fs.path(), true);
    let out = ferrocat(&["xdp", "detach", pair.host()]);
    set_read_only(fs.path(), false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(71), "{err}");
    let link = dir.join("link");
    assert!(
        err.contains(&format!("XDP program id {prog} detached (link id ")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "but the link's pin {} was not removed: ",
            link.display()
        )),
        "{err}"
    );
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(
        err.contains("while pinned, the link keeps the program loaded in the kernel"),
        "{err}"
    );
    assert_eq!(kxdp::attached_program(pair.host()).expect("query"), None);
    assert!(link.exists(), "the pin is left");
    assert!(xdp_support::program_loaded(prog), "held by the pinned link");
    // Once the mount is writable, unpin removes what is left and the program goes.
    let out = ferrocat(&["xdp", "unpin", path_str(dir)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    xdp_support::wait_unloaded(prog, "after unpinning the pin detach left");
}

#[test]
fn a_panic_in_the_business_logic_detaches() {
    let _s = serial();
    let pair = VethPair::new("xdp-panic");
    let c = Xdp::<counter::Counter>::new().expect("load");
    let host = pair.host().to_string();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _running = c.run(&host).expect("attach");
        assert!(kxdp::attached_program(&host).expect("query").is_some());
        panic!("business logic failed");
    }));
    assert!(r.is_err());
    assert_eq!(kxdp::attached_program(pair.host()).expect("query"), None);
}

#[test]
fn handles_can_move_to_other_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Xdp<counter::Counter>>();
    send_sync::<Xdp<TooWide>>();
}

/// The hash example's map name with 4-byte keys instead of 2.
#[derive(Debug)]
struct WideKeys {
    counts: ferrocat::xdp::HashMap<u32, u64>,
}

impl XdpProgram for WideKeys {
    const NAME: &'static str = "wide_keys";

    fn declare(d: &mut Declare) -> Self {
        WideKeys {
            counts: d.hash_map("counts", 1024),
        }
    }

    fn program(&self, b: &Builder) {
        self.counts.add(b, 1u32, 1u32);
    }
}

#[path = "../examples/xdp_hash.rs"]
#[allow(dead_code)]
mod hash;

#[test]
fn pins_of_another_layout_are_refused_and_pins_are_removed_by_their_owner() {
    let _s = serial();
    let pair = VethPair::new("xdp-pins");
    let fs = BpffsMount::new("xdp-pins");
    let dir = fs.path().join("per_type");
    let c = Xdp::<hash::PerEtherType>::new().expect("load");
    c.attach(pair.host()).expect("attach");
    c.pin_maps(&dir).expect("pin");
    assert!(dir.join("counts").exists() && dir.join("link").exists());

    let e = Xdp::<WideKeys>::load_maps(&dir).expect_err("other key size");
    assert!(matches!(e, Error::PinnedLayout { .. }), "{e}");
    assert!(e.to_string().contains("2-byte keys, not 4"), "{e}");

    // The same data through the right type.
    let other = Xdp::<hash::PerEtherType>::load_maps(&dir).expect("open pins");
    other.counts.insert(0x1234, 5).expect("insert");
    assert_eq!(c.counts.get(0x1234).expect("get"), Some(5));
    drop(other);

    // The instance that pinned detaches and unpins: nothing is left.
    c.detach(pair.host()).expect("detach");
    c.unpin_maps().expect("unpin");
    assert_eq!(kxdp::attached_program(pair.host()).expect("query"), None);
    assert!(!dir.exists());
    let e = c.detach(pair.host()).expect_err("nothing attached");
    assert!(matches!(e, Error::NotAttached { .. }), "{e}");
}

/// The counter's layout (one `u64` global) under another program name.
#[derive(Debug)]
struct SameLayout {
    _packets: ferrocat::xdp::Global<u64>,
}

impl XdpProgram for SameLayout {
    const NAME: &'static str = "same_layout";

    fn declare(d: &mut Declare) -> Self {
        SameLayout {
            _packets: d.global("packets"),
        }
    }

    fn program(&self, b: &Builder) {
        b.exit(XDP_PASS);
    }
}

#[test]
fn globals_pinned_by_another_program_of_the_same_layout_are_refused() {
    let fs = BpffsMount::new("xdp-same-layout");
    let dir = fs.path().join("counter");
    let c = Xdp::<counter::Counter>::new().expect("load");
    c.count.set(5).expect("set");
    c.pin_maps(&dir).expect("pin");
    let e = Xdp::<SameLayout>::load_maps(&dir).expect_err("another program's globals");
    assert!(matches!(e, Error::PinnedLayout { .. }), "{e}");
    assert!(
        e.to_string().contains(
            "pinned map `globals` has the globals of program `Counter`, not of `same_layout`"
        ),
        "{e}"
    );
    let same = Xdp::<counter::Counter>::load_maps(&dir).expect("the same program");
    assert_eq!(same.count.get().expect("get"), 5);
    same.unpin_maps().expect("unpin");
    assert!(!dir.exists());
}

#[test]
fn detach_leaves_another_program_and_another_interface_alone() {
    let _s = serial();
    let pair = VethPair::new("xdp-detach");
    let c = Xdp::<counter::Counter>::new().expect("load");
    c.attach(pair.host()).expect("attach");
    let prog = kxdp::attached_program(pair.host()).expect("query");
    assert!(prog.is_some());
    let e = c.attach(pair.host()).expect_err("attached already");
    assert!(matches!(e, Error::AttachedAlready { .. }), "{e}");
    assert_eq!(kxdp::attached_program(pair.host()).expect("query"), prog);

    // Asked for another interface, the instance keeps its own link.
    let e = c.detach("fcnosuch0").expect_err("no such interface");
    assert!(
        e.to_string().contains("interface fcnosuch0 does not exist"),
        "{e}"
    );
    assert_eq!(kxdp::attached_program(pair.host()).expect("query"), prog);

    // An instance of another program does not detach the counter.
    let other = Xdp::<SameLayout>::new().expect("load");
    let e = other.detach(pair.host()).expect_err("not its program");
    assert!(matches!(e, Error::OtherProgram { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("runs program `Counter`, not `same_layout`; not detached"),
        "{e}"
    );
    assert_eq!(kxdp::attached_program(pair.host()).expect("query"), prog);

    // Another instance of the counter does (the seed's detach from a later process).
    let again = Xdp::<counter::Counter>::new().expect("load");
    again.detach(pair.host()).expect("detach");
    assert_eq!(kxdp::attached_program(pair.host()).expect("query"), None);
    let e = other.detach(pair.host()).expect_err("nothing attached");
    assert!(matches!(e, Error::NotAttached { .. }), "{e}");
}

#[test]
fn pinning_before_attaching_keeps_the_program_running_too() {
    let _s = serial();
    let pair = VethPair::new("xdp-pinfirst");
    let second = VethPair::new("xdp-pinfirst2");
    let fs = BpffsMount::new("xdp-pinfirst");
    let dir = fs.path().join("maps");
    {
        let c = Xdp::<counter::Counter>::new().expect("load");
        c.pin_maps(&dir).expect("pin");
        assert!(!dir.join("link").exists(), "not attached yet");
        c.attach(pair.host()).expect("attach");
        assert!(
            dir.join("link").exists(),
            "attach pins the link next to the maps"
        );
        // A second link cannot take the pin: another instance on the same pins
        // attaching to another interface fails and leaves nothing attached there.
        let other = Xdp::<counter::Counter>::load_maps(&dir).expect("open the pins");
        let e = other
            .attach(second.host())
            .expect_err("the link pin is taken");
        assert!(e.to_string().contains("the path exists"), "{e}");
        assert_eq!(kxdp::attached_program(second.host()).expect("query"), None);
    }
    // The instance is gone; the pinned link keeps the program running.
    assert!(
        kxdp::attached_program(pair.host())
            .expect("query")
            .is_some()
    );
    pair.send_from_peer(&frames(3)).expect("send");
    let later = Xdp::<counter::Counter>::load_maps(&dir).expect("open the pins");
    let start = Instant::now();
    while later.count.get().expect("read") != 3 {
        assert!(start.elapsed() < Duration::from_secs(10), "count stuck");
        std::thread::sleep(Duration::from_millis(20));
    }
    later.detach(pair.host()).expect("detach");
    later.unpin_maps().expect("unpin");
    assert_eq!(kxdp::attached_program(pair.host()).expect("query"), None);
    assert!(!dir.exists());
}

#[test]
fn detach_through_the_pins_names_the_interface_the_program_is_on() {
    let _s = serial();
    let pair = VethPair::new("xdp-pinned-if");
    let other_if = VethPair::new("xdp-pinned-if2");
    let fs = BpffsMount::new("xdp-pinned-if");
    let dir = fs.path().join("maps");
    let c = Xdp::<counter::Counter>::new().expect("load");
    c.attach(pair.host()).expect("attach");
    c.pin_maps(&dir).expect("pin");
    let prog = kxdp::attached_program(pair.host())
        .expect("query")
        .expect("attached");
    drop(c);

    // Asked for the wrong interface, the instance on the pins detaches nothing.
    let later = Xdp::<counter::Counter>::load_maps(&dir).expect("open the pins");
    let e = later
        .detach(other_if.host())
        .expect_err("the pinned link is on the other interface");
    assert!(matches!(e, Error::AttachedElsewhere { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "program `Counter` is not attached to {}: its pinned link {} attaches it to {}",
            other_if.host(),
            dir.join("link").display(),
            pair.host()
        )),
        "{text}"
    );
    assert_eq!(
        kxdp::attached_program(pair.host()).expect("query"),
        Some(prog)
    );
    assert!(dir.join("link").exists(), "the link's pin is kept");

    // Asked for the right one, it detaches and removes the pin: the program is freed.
    later.detach(pair.host()).expect("detach");
    assert_eq!(kxdp::attached_program(pair.host()).expect("query"), None);
    assert!(!dir.join("link").exists());
    xdp_support::wait_unloaded(prog, "after the detach through the pins");

    // A pinned link that something else detached is only unpinned.
    let c = Xdp::<counter::Counter>::load_maps(&dir).expect("open the pins");
    c.attach(pair.host())
        .expect("attach again, pinning the link");
    let prog = kxdp::attached_program(pair.host())
        .expect("query")
        .expect("attached");
    drop(c);
    kxdp::find_link(pair.host())
        .expect("links")
        .expect("the pinned link")
        .detach()
        .expect("detach the link itself");
    assert!(dir.join("link").exists());
    let later = Xdp::<counter::Counter>::load_maps(&dir).expect("open the pins");
    let e = later.detach(pair.host()).expect_err("detached already");
    assert!(matches!(e, Error::NotAttached { .. }), "{e}");
    assert!(!dir.join("link").exists(), "the stale pin is removed");
    xdp_support::wait_unloaded(prog, "after unpinning the stale link");
    later.unpin_maps().expect("unpin");
    assert!(!dir.exists());
}
