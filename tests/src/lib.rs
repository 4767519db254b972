//! Helpers for ferrocat's end-to-end tests: namespaces and veth pairs that clean up after
//! themselves, and paths to the shared test data.
//!
//! - [`VethPair`]: a veth pair with one end in the test's network namespace and the
//!   other in a fresh namespace; both removed on drop, also when the test panics.
//! - [`BpffsMount`]: a private bpf filesystem mounted on a temporary directory.
//! - [`testdata_dir`]: `../shared/testdata` of the project.
//! - [`SimBus`]: ferrocat-sim serving a topology behind a [`VethPair`], with its run-time
//!   fault switches; [`Cycle`] keeps a master's process data cycling; [`FrameCounter`]
//!   counts the frames a transport sends and receives.
//!
//! Everything here needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and panics with the failing
//! command's output otherwise: kernel tests fail, they do not skip.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The project's shared test data (EEPROM images, CoE dictionaries, captures):
/// `../shared/testdata` relative to the project root.
pub fn testdata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A number unique in this process, for names.
fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The output of a program run to its end: exit code (`None` if a signal ended it),
/// stdout and stderr.
pub type ProgramOutput = (Option<i32>, String, String);

/// Runs `program` with `args` to its end, whatever its exit code; panics only if it
/// cannot be started.
pub fn run_output(program: &str, args: &[&str]) -> ProgramOutput {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command, panicking with its output if it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{program} {} failed ({}): {}{}(kernel tests need root: CAP_NET_ADMIN and CAP_SYS_ADMIN)",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A veth pair: [`host`](Self::host) in the test's network namespace,
/// [`peer`](Self::peer) in the namespace [`netns`](Self::netns), both up. Removed on drop.
///
/// Names are unique per process and call (pid and a counter; the namespace's name also
/// carries the test's tag), so tests may run in parallel.
#[derive(Debug)]
pub struct VethPair {
    netns: String,
    host: String,
    peer: String,
}

impl VethPair {
    /// Creates the namespace and the pair. `tag` names the test in the namespace name.
    pub fn new(tag: &str) -> VethPair {
        let pid = std::process::id();
        let n = next_id();
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(24)
            .collect();
        // Interface names have at most 15 bytes: "fc" + pid (hex) + counter + end.
        let base = format!("fc{pid:x}x{n}");
        let pair = VethPair {
            netns: format!("ferrocat-{tag}-{pid}-{n}"),
            host: format!("{base}a"),
            peer: format!("{base}b"),
        };
        assert!(
            pair.host.len() <= 15,
            "interface name {} too long",
            pair.host
        );
        // From here on, drop cleans up whatever was created.
        run("ip", &["netns", "add", &pair.netns]);
        run(
            "ip",
            &[
                "link",
                "add",
                &pair.host,
                "type",
                "veth",
                "peer",
                "name",
                &pair.peer,
                "netns",
                &pair.netns,
            ],
        );
        // No IPv6 on the test links: no router solicitations or DAD frames among the
        // frames a test counts.
        for (ns, dev) in [(None, &pair.host), (Some(&pair.netns), &pair.peer)] {
            let key = format!("net.ipv6.conf.{dev}.disable_ipv6=1");
            match ns {
                None => drop(Command::new("sysctl").args(["-qw", &key]).status()),
                Some(ns) => drop(
                    Command::new("ip")
                        .args(["netns", "exec", ns, "sysctl", "-qw", &key])
                        .status(),
                ),
            }
        }
        run("ip", &["link", "set", &pair.host, "up"]);
        run("ip", &["-n", &pair.netns, "link", "set", &pair.peer, "up"]);
        run("ip", &["-n", &pair.netns, "link", "set", "lo", "up"]);
        pair
    }

    /// The namespace holding the peer end.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The end in the test's own namespace.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The end in [`netns`](Self::netns).
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Runs `f` on a thread that has entered the pair's namespace (setns), and returns
    /// its result. Sockets made there stay in that namespace.
    pub fn in_netns<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.netns);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path)
                    .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
                // SAFETY: setns on this thread only, with a namespace descriptor.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns({path}): {}", io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Sends `frames` (whole Ethernet frames) out of the peer end, from inside its
    /// namespace, through an AF_PACKET socket: they arrive at [`host`](Self::host).
    pub fn send_from_peer(&self, frames: &[Vec<u8>]) -> io::Result<()> {
        let peer = self.peer.clone();
        self.in_netns(move || {
            let sock = PacketSocket::bind(&peer)?;
            for f in frames {
                sock.send(f)?;
            }
            Ok(())
        })
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting the namespace deletes the peer and with it the pair; delete the host
        // end too in case the namespace was never populated. Errors are ignored: drop
        // must not panic while a test is already panicking.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

/// `ETH_P_ALL` (include/uapi/linux/if_ether.h), in network byte order for sockets.
const ETH_P_ALL_BE: u16 = 0x0003u16.to_be();

/// A raw AF_PACKET socket bound to one interface, for sending test frames.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    /// Opens a socket on interface `iface` of the calling thread's namespace.
    pub fn bind(iface: &str) -> io::Result<PacketSocket> {
        let name = CString::new(iface).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain socket creation.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL_BE),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let sock = PacketSocket { fd, ifindex };
        let addr = sock.addr();
        // SAFETY: valid address for the call.
        let rc = unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    fn addr(&self) -> libc::sockaddr_ll {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL_BE;
        addr.sll_ifindex = self.ifindex;
        addr
    }

    /// The next frame that arrived on the interface (frames this host sent are
    /// skipped), or `None` if none came within `timeout`.
    pub fn recv_incoming(&self, timeout: std::time::Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd for the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                return Ok(None);
            }
            // SAFETY: all-zero is a valid sockaddr_ll.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: valid buffer and address storage for the call.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(buf[..n as usize].to_vec()));
        }
    }

    /// Sends one whole Ethernet frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let addr = self.addr();
        // SAFETY: valid buffer and address for the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A bpf filesystem mounted on a fresh temporary directory; unmounted and removed on
/// drop.
#[derive(Debug)]
pub struct BpffsMount {
    path: PathBuf,
}

impl BpffsMount {
    /// Mounts a private bpffs. `tag` names the test in the directory name.
    pub fn new(tag: &str) -> BpffsMount {
        let path = std::env::temp_dir().join(format!(
            "ferrocat-bpffs-{tag}-{}-{}",
            std::process::id(),
            next_id()
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        let guard = BpffsMount { path };
        let dir = CString::new(guard.path.to_string_lossy().as_bytes())
            .unwrap_or_else(|_| panic!("temporary path holds a NUL byte"));
        // SAFETY: NUL-terminated strings.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                dir.as_ptr(),
                c"bpf".as_ptr(),
                0,
                c"mode=0700".as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount -t bpf on {}: {} (needs CAP_SYS_ADMIN)",
            guard.path.display(),
            io::Error::last_os_error()
        );
        guard
    }

    /// The mount point.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for BpffsMount {
    fn drop(&mut self) {
        if let Ok(dir) = CString::new(self.path.to_string_lossy().as_bytes()) {
            // SAFETY: NUL-terminated path; a lazy unmount cannot fail on busy pins.
            unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// A bus of ferrocat-sim served behind a [`VethPair`]: the simulator answers on the peer
/// end inside the pair's namespace (on its own thread, through the simulator's library
/// API, as `ferrocat-sim serve` does), a master uses [`SimBus::interface`] in the test's
/// namespace through a real AF_PACKET socket. Stopped and removed on drop, also when the
/// test panics.
#[derive(Debug)]
pub struct SimBus {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    server: Option<std::thread::JoinHandle<Result<ferrocat_sim::serve::ServeStats, String>>>,
    faults: ferrocat_sim::fault::Faults,
    terminals: usize,
    // Dropped after the server has stopped (fields drop after `Drop::drop`).
    veth: VethPair,
}

impl SimBus {
    /// Serves the bus described by the topology file `topology` (docs/sim.md). Panics
    /// if the topology does not load or the bus does not answer within 10 s.
    pub fn from_topology(tag: &str, topology: &std::path::Path) -> SimBus {
        let built = ferrocat_sim::topology::Topology::load(topology)
            .and_then(|t| t.build())
            .unwrap_or_else(|e| panic!("topology {}: {e}", topology.display()));
        SimBus::from_segment(tag, ferrocat_sim::serve::build_segment(built))
    }

    /// Serves `segment`. Panics if the bus does not answer within 10 s.
    pub fn from_segment(tag: &str, segment: ferrocat_sim::segment::Segment) -> SimBus {
        use ferrocat_sim::segment::FrameOutcome;
        let veth = VethPair::new(tag);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let faults = segment.faults();
        let terminals = segment.len();
        let path = format!("/run/netns/{}", veth.netns());
        let peer = veth.peer().to_string();
        let stop2 = stop.clone();
        let server = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
            // SAFETY: setns on this thread only, with a namespace descriptor.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns({path}): {}", io::Error::last_os_error()));
            }
            let segment = std::cell::RefCell::new(segment);
            ferrocat_sim::serve::serve(
                &peer,
                &stop2,
                |frame, now| {
                    let mut segment = segment.borrow_mut();
                    // Timers (watchdogs) run up to the frame's arrival first.
                    segment.advance(now);
                    let mut f = frame.to_vec();
                    match segment.process(&mut f, now) {
                        FrameOutcome::Reply { delay_ns } => {
                            Some(ferrocat_sim::serve::Reply { frame: f, delay_ns })
                        }
                        FrameOutcome::Lost | FrameOutcome::NotEtherCat => None,
                    }
                },
                |now| segment.borrow_mut().advance(now),
            )
            .map_err(|e| e.to_string())
        });
        let bus = SimBus {
            stop,
            server: Some(server),
            faults,
            terminals,
            veth,
        };
        let wkc =
            ferrocat_sim::netns::wait_for_bus(bus.interface(), std::time::Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("probing {}: {e}", bus.interface()));
        assert!(
            wkc.is_some(),
            "the simulated bus does not answer on {}",
            bus.interface()
        );
        bus
    }

    /// The interface a master uses (the pair's end in the test's namespace).
    pub fn interface(&self) -> &str {
        self.veth.host()
    }

    /// Number of terminals on the bus.
    pub fn terminals(&self) -> usize {
        self.terminals
    }

    /// The run-time fault switches of the served bus.
    pub fn faults(&self) -> &ferrocat_sim::fault::Faults {
        &self.faults
    }

    /// Applies a fault command exactly as `ferrocat-sim fault` does (`drop 0.2`,
    /// `silent 7`, `fall-back 7 safeop 0x001A`, `clear`, ...; docs/sim.md) and returns
    /// the settings now in force. Panics on a command the simulator rejects.
    pub fn fault(&self, command: &str) -> String {
        ferrocat_sim::serve::apply_fault_command(&self.faults, command)
            .unwrap_or_else(|e| panic!("fault command {command:?}: {e}"))
    }
}

impl Drop for SimBus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(server) = self.server.take() {
            // A server that failed is reported unless the test is failing already.
            match server.join() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if !std::thread::panicking() => panic!("simulator: {e}"),
                _ => {}
            }
        }
    }
}

/// The project root (`CARGO_MANIFEST_DIR/..`), for configs and docs.
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Process data kept cycling by a master (an LRW of its whole process image every
/// millisecond, outputs zero), so that the terminals' SyncManager watchdogs stay quiet
/// while a test looks at a bus in OP. Stops on drop. Needs a tokio runtime.
#[derive(Debug)]
pub struct Cycle(tokio::task::JoinHandle<()>);

impl Cycle {
    /// Starts cycling the process image of `master` (configured by bring-up to SAFE-OP).
    pub fn start(master: &ferrocat::ethercat::master::Master) -> Cycle {
        use ferrocat::ethercat::wire::{Address, Command, DatagramRepr};
        let image = master
            .process_image()
            .unwrap_or_else(|| panic!("no process image: bring the bus to SAFE-OP first"));
        let whole = image.whole();
        let buffer = image.buffer();
        let t = master.transport().clone();
        Cycle(tokio::spawn(async move {
            loop {
                let lrw =
                    DatagramRepr::new(Command::Lrw, Address::Logical(whole.start), buffer.clone());
                let _ = t.exchange(vec![lrw]).await;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }))
    }
}

impl Drop for Cycle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Frames counted by direction as a transport records them (its capture hook), passed
/// on to an optional inner sink.
#[derive(Debug, Clone, Default)]
pub struct FrameCounter {
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    received: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FrameCounter {
    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Replies received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// A capture hook for `TransportConfig::capture` that counts into `self` and hands
    /// every frame on to `inner`, if given.
    pub fn sink(
        &self,
        inner: Option<Box<dyn ferrocat::ethercat::capture::FrameSink>>,
    ) -> Box<dyn ferrocat::ethercat::capture::FrameSink> {
        Box::new(CountingSink {
            counter: self.clone(),
            inner,
        })
    }
}

struct CountingSink {
    counter: FrameCounter,
    inner: Option<Box<dyn ferrocat::ethercat::capture::FrameSink>>,
}

impl ferrocat::ethercat::capture::FrameSink for CountingSink {
    fn record(
        &mut self,
        direction: ferrocat::ethercat::capture::Direction,
        at: std::time::SystemTime,
        frame: &[u8],
    ) {
        let n = match direction {
            ferrocat::ethercat::capture::Direction::Sent => &self.counter.sent,
            ferrocat::ethercat::capture::Direction::Received => &self.counter.received,
        };
        n.fetch_add(1, Ordering::Relaxed);
        if let Some(inner) = &mut self.inner {
            inner.record(direction, at, frame);
        }
    }
}
