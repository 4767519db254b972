//! Unit tests of `ferrocat::xdp` on the bpf layer's fake kernel (no root needed): what
//! is loaded, map loads restored after linking, host access, and errors.

use super::*;
use crate::bpf::sys::{FakeKernel, use_fake};
use ferrocat_plugin_api::ebpf::insn::{BPF_PSEUDO_MAP_FD, RawInsn};

/// Opcode of a 64-bit immediate load (`BPF_LD | BPF_IMM | BPF_DW`).
const LD_IMM64: u8 = 0x18;
use ferrocat_plugin_api::fragment::{ScalarType, VarType};

#[derive(Debug)]
struct Count {
    count: Global<u64>,
    small: Global<u16>,
}

impl XdpProgram for Count {
    const NAME: &'static str = "count";
    fn declare(d: &mut Declare) -> Self {
        Count {
            count: d.global("count"),
            small: d.global("small"),
        }
    }
    fn program(&self, b: &Builder) {
        self.count.var(b).atomic_add(1u32);
        b.exit(XDP_PASS);
    }
}

#[derive(Debug)]
struct PerType {
    counts: HashMap<u16, u64>,
}

impl XdpProgram for PerType {
    const NAME: &'static str = "per-type!";
    fn declare(d: &mut Declare) -> Self {
        PerType {
            counts: d.hash_map("counts per type", 64),
        }
    }
    fn program(&self, b: &Builder) {
        let et = b.packet(12, VarType::be(ScalarType::U16));
        self.counts.add(b, et, 1u32);
    }
}

fn bytes(insns: &[RawInsn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

#[test]
fn the_linked_program_is_what_is_loaded_and_globals_are_shared_memory() {
    let fake = FakeKernel::new(2);
    let _g = use_fake(fake.clone());
    let x = Xdp::<Count>::new().expect("load on the fake");
    let loads = fake.loads();
    assert_eq!(loads.len(), 1);
    assert_eq!(loads[0].name, "count");
    assert_eq!(loads[0].insns, bytes(&x.linked().insns));
    // Both globals exist even though the program uses only one; each is placed
    // naturally aligned in declaration order.
    let block = &x.linked().variables;
    assert_eq!(block.offset("", "count"), Some(0));
    assert_eq!(block.offset("", "small"), Some(8));
    x.count.set(41).expect("set");
    assert_eq!(x.count.fetch_add(1).expect("add"), 41);
    assert_eq!(x.count.get().expect("get"), 42);
    x.small.set(0xbeef).expect("set");
    assert_eq!(x.small.get().expect("get"), 0xbeef);
    assert_eq!(x.count.get().expect("get"), 42, "no overlap");
}

#[test]
fn map_loads_survive_linking_with_the_map_descriptor() {
    let fake = FakeKernel::new(2);
    let _g = use_fake(fake.clone());
    let x = Xdp::<PerType>::new().expect("load on the fake");
    let fd = x.counts.map_ref().fd;
    assert!(fd >= 0);
    let loads: Vec<&RawInsn> = x
        .linked()
        .insns
        .iter()
        .filter(|i| i.code == LD_IMM64 && i.src() == BPF_PSEUDO_MAP_FD)
        .collect();
    assert_eq!(loads.len(), 3, "lookup, insert, lookup again");
    assert!(loads.iter().all(|i| i.imm == fd && i.dst() == 1));
    // No other 64-bit constant carries the descriptor: none was left as a constant.
    let plain = x
        .linked()
        .insns
        .iter()
        .filter(|i| i.code == LD_IMM64 && i.src() == 0)
        .count();
    assert_eq!(plain, 0);
    // Map names are made kernel-safe; the handle keeps the program's name.
    assert_eq!(x.counts.map_ref().key, ScalarType::U16);
    let name = x.decl.maps[0].get().expect("map").name().to_string();
    assert_eq!(name, "counts_per_type");
    assert_eq!(
        fake.loads()[0].name,
        "per_type_",
        "a name the kernel accepts"
    );
}

#[derive(Debug)]
struct BadAdd {
    narrow: HashMap<u16, u16>,
}

impl XdpProgram for BadAdd {
    const NAME: &'static str = "bad_add";
    fn declare(d: &mut Declare) -> Self {
        BadAdd {
            narrow: d.hash_map("narrow", 4),
        }
    }
    fn program(&self, b: &Builder) {
        self.narrow.add(b, 1u32, 1u32);
    }
}

#[test]
fn builder_errors_name_the_program_and_the_statement() {
    let fake = FakeKernel::new(1);
    let _g = use_fake(fake.clone());
    let e = Xdp::<BadAdd>::new().expect_err("u16 values cannot be added atomically");
    let text = e.to_string();
    assert!(matches!(e, Error::Build { .. }), "{text}");
    assert!(text.starts_with("building XDP program `bad_add`"), "{text}");
    assert!(text.contains("4- or 8-byte"), "{text}");
    assert!(text.contains("tests.rs"), "names where: {text}");
    assert!(fake.loads().is_empty(), "nothing loaded");
}

#[test]
fn host_access_before_loading_says_so() {
    let mut d = Declare::default();
    let c = Count::declare(&mut d);
    let e = c.count.get().expect_err("not loaded");
    assert!(matches!(e, Error::NotLoaded { .. }), "{e}");
    let p = PerType::declare(&mut d);
    let e = p.counts.get(1).expect_err("not loaded");
    assert_eq!(
        e.to_string(),
        "map `counts per type` is not loaded; create the program first"
    );
}

#[test]
fn listing_needs_no_kernel() {
    let text = listing::<PerType>(3).expect("listing");
    assert!(text.starts_with("; <prologue>\n"), "{text}");
    assert!(text.contains("; per-type!\n"), "{text}");
    assert!(text.contains("r1 = map[fd:-1]"), "{text}");
    assert!(text.contains("lock *(u64 *)(r0 +0) += r1"), "{text}");
}

/// Names that cannot work: a global twice (of another type), a map under a reserved
/// pin name, a map name with a `/`, an empty name, a map named like a global.
#[derive(Debug)]
struct BadNames {
    _a: Global<u64>,
    _b: Global<u16>,
    _c: Global<u8>,
    _m: HashMap<u16, u64>,
    _n: PerCpuArray<u64>,
    _o: HashMap<u16, u64>,
    _p: HashMap<u16, u64>,
}

impl XdpProgram for BadNames {
    const NAME: &'static str = "bad_names";
    fn declare(d: &mut Declare) -> Self {
        BadNames {
            _a: d.global("x"),
            _b: d.global("x"),
            _c: d.global(""),
            _m: d.hash_map("globals", 4),
            _n: d.per_cpu_array("a/b", 4),
            _o: d.hash_map("x", 4),
            _p: d.hash_map("link", 4),
        }
    }
    fn program(&self, b: &Builder) {
        b.exit(XDP_PASS);
    }
}

#[test]
fn bad_names_are_refused_before_any_map_exists() {
    let fake = FakeKernel::new(1);
    let _g = use_fake(fake.clone());
    let e = Xdp::<BadNames>::new().expect_err("bad names");
    assert!(matches!(e, Error::Declare { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with("declaring XDP program `bad_names`: "),
        "{text}"
    );
    let first = format!("{}:", file!());
    assert!(
        text.contains(&format!("global `x` at {first}"))
            && text.contains("is declared twice (first at"),
        "{text}"
    );
    assert!(
        text.contains("global `` at ") && text.contains("has an empty name"),
        "{text}"
    );
    assert!(
        text.contains("map `globals` at ")
            && text.contains("map `link` at ")
            && text.contains("takes a reserved pin name"),
        "{text}"
    );
    assert!(
        text.contains("map `a/b` at ") && text.contains("cannot be a pin name"),
        "{text}"
    );
    assert!(
        text.contains("map `x` at "),
        "a map named like a global: {text}"
    );
    assert_eq!(
        text.split("; ").count(),
        6,
        "one problem per bad name: {text}"
    );
    assert!(fake.loads().is_empty(), "nothing loaded");
    let e = listing::<BadNames>(3).expect_err("the listing checks too");
    assert!(matches!(e, Error::Declare { .. }), "{e}");
}

/// A real temporary directory (removed on drop, also when a test fails) that the fake
/// kernel takes for a bpffs mount.
struct FakeBpffs {
    root: PathBuf,
    fs: Bpffs,
}

impl FakeBpffs {
    /// Mounts it on the fake kernel in use; `tag` keeps tests apart.
    fn new(tag: &str) -> FakeBpffs {
        let root = std::env::temp_dir().join(format!("ferrocat-xdp-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("temporary directory");
        let fs = Bpffs::mount_at(&root).expect("fake bpffs");
        FakeBpffs { root, fs }
    }
}

impl Drop for FakeBpffs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A global and a map: two pins.
#[derive(Debug)]
struct Both {
    count: Global<u64>,
    counts: HashMap<u16, u64>,
}

impl XdpProgram for Both {
    const NAME: &'static str = "both";
    fn declare(d: &mut Declare) -> Self {
        Both {
            count: d.global("count"),
            counts: d.hash_map("counts", 4),
        }
    }
    fn program(&self, b: &Builder) {
        self.count.var(b).add_assign(1u32);
        self.counts.add(b, 1u32, 1u32);
    }
}

#[test]
fn a_pin_failing_half_way_removes_the_pins_made_and_the_directory() {
    let fake = FakeKernel::new(1);
    let _g = use_fake(fake.clone());
    let mount = FakeBpffs::new("pins");
    let (root, fs) = (&mount.root, &mount.fs);
    // Something already pinned where the second pin goes.
    let other = Map::create(&MapSpec::hash("other", 2, 8, 4)).expect("map");
    fs.pin(&other, "maps/counts").expect("pin");

    let x = Xdp::<Both>::new().expect("load");
    let dir = root.join("maps");
    let e = x.pin_maps(&dir).expect_err("counts is taken");
    assert!(
        matches!(&e, Error::Bpffs(bpffs::BpffsError::PathExists { path }) if path.ends_with("maps/counts")),
        "{e}"
    );
    assert!(
        !fake.unpin(&dir.join(GLOBALS_MAP)),
        "the globals pin made is removed"
    );
    assert!(!dir.exists(), "the directory made is removed");
    assert!(
        fake.unpin(&dir.join("counts")),
        "the pin that was there stays"
    );

    // The pins work once the place is free; an existing directory is refused.
    let path = x.pin_maps(&dir).expect("pin");
    assert_eq!(path, dir);
    let fresh = Xdp::<Both>::new().expect("load");
    let e = fresh.pin_maps(&dir).expect_err("exists");
    assert!(e.to_string().contains("the path exists"), "{e}");
    // One pin directory per instance, until it is unpinned.
    let elsewhere = root.join("elsewhere");
    let e = x.pin_maps(&elsewhere).expect_err("pinned already");
    assert!(matches!(e, Error::PinnedAlready { .. }), "{e}");
    assert!(
        e.to_string().ends_with("maps already; unpin_maps first"),
        "{e}"
    );
    assert!(!elsewhere.exists());
    x.count.set(3).expect("set");
    let y = Xdp::<Both>::load_maps(&dir).expect("open the pins");
    assert_eq!(y.count.get().expect("get"), 3);
    let e = y.pin_maps(&elsewhere).expect_err("opened from pins");
    assert!(matches!(e, Error::PinnedAlready { .. }), "{e}");
    y.unpin_maps().expect("unpin");
    assert!(!dir.exists());
    y.pin_maps(&elsewhere)
        .expect("pinned again after unpinning");
    assert_eq!(
        Xdp::<Both>::load_maps(&elsewhere)
            .expect("open")
            .count
            .get()
            .expect("get"),
        3
    );
    y.unpin_maps().expect("unpin");
    assert!(!elsewhere.exists());
}

/// Two `u64` globals, like `Both`'s layout would be if it had no map.
#[derive(Debug)]
struct TwoCounts {
    a: Global<u64>,
    b: Global<u64>,
}

impl XdpProgram for TwoCounts {
    const NAME: &'static str = "two_counts";
    fn declare(d: &mut Declare) -> Self {
        TwoCounts {
            a: d.global("a"),
            b: d.global("b"),
        }
    }
    fn program(&self, b: &Builder) {
        self.a.var(b).add_assign(1u32);
        self.b.var(b).add_assign(2u32);
    }
}

/// One `u64` global.
#[derive(Debug)]
struct One {
    _a: Global<u64>,
}

impl XdpProgram for One {
    const NAME: &'static str = "one";
    fn declare(d: &mut Declare) -> Self {
        One { _a: d.global("a") }
    }
    fn program(&self, b: &Builder) {
        b.exit(XDP_PASS);
    }
}

#[test]
fn globals_of_another_size_are_refused() {
    let fake = FakeKernel::new(1);
    let _g = use_fake(fake.clone());
    let mount = FakeBpffs::new("globals");
    let root = &mount.root;
    let x = Xdp::<TwoCounts>::new().expect("load");
    x.b.set(7).expect("set");
    let dir = x.pin_maps(root.join("two")).expect("pin");

    // Smaller globals (8 bytes of 16) used to be taken, reading `a` as `One`'s global.
    let e = Xdp::<One>::load_maps(&dir).expect_err("8 bytes, not 16");
    let text = e.to_string();
    assert!(matches!(e, Error::PinnedLayout { .. }), "{text}");
    assert!(
        text.contains("pinned map `globals` has 16-byte values, not 8"),
        "{text}"
    );
    let y = Xdp::<TwoCounts>::load_maps(&dir).expect("the same program");
    assert_eq!(y.b.get().expect("get"), 7);
    y.unpin_maps().expect("unpin");
}

/// A detach whose pin cleanup failed says the program was detached, which pins are
/// left and why, and that they keep the program loaded.
#[test]
fn pins_left_after_a_detach_are_named_with_the_reason() {
    let reason = || {
        Box::new(Error::Io {
            path: PathBuf::from("/sys/fs/bpf/m/link"),
            source: std::io::Error::from_raw_os_error(libc::EROFS),
        })
    };
    let e = Error::PinsLeft {
        iface: "eth1".into(),
        prog_id: 42,
        link_id: 7,
        unpinned: vec![],
        left: vec![PathBuf::from("/sys/fs/bpf/m/link")],
        source: reason(),
    };
    assert_eq!(
        e.to_string(),
        "eth1: XDP program id 42 detached (link id 7), but the link's pin /sys/fs/bpf/m/link was not removed: /sys/fs/bpf/m/link: Read-only file system (os error 30); while pinned, the link keeps the program loaded in the kernel"
    );
    let e = Error::PinsLeft {
        iface: "eth1".into(),
        prog_id: 42,
        link_id: 7,
        unpinned: vec![],
        left: vec![],
        source: reason(),
    };
    assert!(
        e.to_string()
            .contains("detached (link id 7), but the link's pins could not be looked for: "),
        "{e}"
    );
}
