//! Kernel tests of bpffs: mounting it where it is absent, pinning maps, programs and
//! opening them with kind and type checks. They need root and fail without it.

mod bpf_asm;
#[path = "../../tests/src/lib.rs"]
#[allow(dead_code)]
mod e2e;

use std::path::Path;

use bpf_asm::*;
use e2e::BpffsMount;
use ferrocat::bpf::bpffs::{self, Bpffs, BpffsError, DEFAULT_BPFFS};
use ferrocat::bpf::map::{Map, MapSpec, MapType, UpdateMode};
use ferrocat::bpf::prog::{Program, xdp_action};
use ferrocat::bpf::sys::{self, BPF_FS_MAGIC, ObjKind};
use ferrocat_plugin_api::ebpf::insn::encode;

#[test]
fn pinned_map_outlives_its_descriptor_and_is_type_checked() {
    let mount = BpffsMount::new("pin-map");
    let fs = Bpffs::at(mount.path()).expect("private bpffs");
    assert!(
        bpffs::bpffs_mounts()
            .expect("mountinfo")
            .iter()
            .any(|p| p == mount.path()),
        "the private mount is listed in mountinfo"
    );
    {
        let map = Map::create(&MapSpec::hash("pinned", 4, 8, 8)).expect("map");
        map.update(&5u32.to_ne_bytes(), &55u64.to_ne_bytes(), UpdateMode::Any)
            .expect("update");
        fs.create_dir("group").expect("mkdir");
        let path = fs.pin(&map, "group/pinned").expect("pin");
        assert!(path.exists());
        let e = fs.pin(&map, "group/pinned").expect_err("exists");
        assert!(matches!(e, BpffsError::PathExists { .. }), "{e}");
    }
    let map = fs.open_map("group/pinned", MapType::Hash).expect("open");
    assert_eq!(map.spec().key_size, 4);
    assert_eq!(map.spec().value_size, 8);
    assert_eq!(
        map.lookup(&5u32.to_ne_bytes()).expect("lookup"),
        Some(55u64.to_ne_bytes().to_vec())
    );
    let e = fs
        .open_map("group/pinned", MapType::Array)
        .expect_err("wrong type");
    assert!(
        matches!(
            e,
            BpffsError::WrongMapType {
                expected: MapType::Array,
                found: 1,
                ..
            }
        ),
        "{e}"
    );
    let e = fs.open_prog("group/pinned").expect_err("not a program");
    assert!(
        matches!(
            e,
            BpffsError::WrongKind {
                expected: ObjKind::Prog,
                found: ObjKind::Map,
                ..
            }
        ),
        "{e}"
    );
    let e = fs
        .open_map("group/absent", MapType::Hash)
        .expect_err("absent");
    assert!(matches!(e, BpffsError::NotFound { .. }), "{e}");
    assert!(fs.unpin("group/pinned").expect("unpin"));
    assert!(!fs.unpin("group/pinned").expect("unpin again"));
}

#[test]
fn pinned_program_can_be_opened_and_run() {
    let mount = BpffsMount::new("pin-prog");
    let fs = Bpffs::at(mount.path()).expect("private bpffs");
    {
        let insns = encode(&ret(xdp_action::TX));
        let p = Program::load_xdp("pinned_tx", &insns).expect("load");
        fs.pin(&p, "prog").expect("pin");
    }
    let p = fs.open_prog("prog").expect("open");
    assert_eq!(p.info().expect("info").name, "pinned_tx");
    assert_eq!(p.test_run(&frame(60)).expect("run").retval, xdp_action::TX);
    let e = fs.open_map("prog", MapType::Hash).expect_err("not a map");
    assert!(matches!(e, BpffsError::WrongKind { .. }), "{e}");
}

#[test]
fn a_directory_that_is_not_bpffs_is_refused() {
    let dir = std::env::temp_dir();
    let e = Bpffs::at(&dir).expect_err("tmp is not bpffs");
    assert!(matches!(e, BpffsError::NotBpffs { .. }), "{e}");
    assert!(e.to_string().contains("mount -t bpf"), "{e}");
}

#[test]
fn default_bpffs_is_mounted_when_absent() {
    // In a private mount namespace (this thread only), so the host's mounts stay as
    // they are.
    std::thread::spawn(|| {
        // SAFETY: affects this thread's mount namespace only.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNS) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        // SAFETY: NUL-terminated path; makes our copies of the mounts private.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "make-rprivate: {}", std::io::Error::last_os_error());
        let default = Path::new(DEFAULT_BPFFS);
        // Remove any bpffs stacked there in this namespace.
        // SAFETY: NUL-terminated path.
        while unsafe { libc::umount2(c"/sys/fs/bpf".as_ptr(), libc::MNT_DETACH) } == 0 {}
        assert_ne!(sys::current().fs_magic(default).ok(), Some(BPF_FS_MAGIC));

        let fs = Bpffs::default_mount().expect("mounted");
        assert_eq!(fs.root(), default);
        assert_eq!(sys::current().fs_magic(default).ok(), Some(BPF_FS_MAGIC));
        // Mounted once: a second call finds it.
        Bpffs::default_mount().expect("found");
        let map = Map::create(&MapSpec::array("probe", 4, 1)).expect("map");
        fs.pin(&map, "ferrocat-test-probe").expect("pin");
        assert!(fs.unpin("ferrocat-test-probe").expect("unpin"));
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}
