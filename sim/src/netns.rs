//! Network namespaces and veth pairs for `ferrocat-sim up` and `down`.
//!
//! `up NAME` creates namespace NAME and a veth pair whose master end is the interface NAME
//! in the caller's namespace and whose simulator end is [`SIM_INTERFACE`] inside the
//! namespace; the server runs there in the background with its pid file and log under
//! [`RUN_DIR`]`/NAME/`. `down NAME` removes all of it, also after a crash, and is idempotent.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::serve::{ETHERTYPE_ETHERCAT, EthercatSocket};

/// Where `up` keeps the pid file and log of each bus.
pub const RUN_DIR: &str = "/run/ferrocat-sim";
/// The simulator's end of the veth pair, inside the namespace.
pub const SIM_INTERFACE: &str = "ecat-sim";

/// An error setting up or tearing down a simulated bus.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Not running as root.
    #[error("{0} needs root (namespaces, veth pairs and raw sockets)")]
    NotRoot(&'static str),
    /// The name is unusable or already in use.
    #[error("{0}")]
    NameTaken(String),
    /// An `ip` command failed.
    #[error("`ip {args}` failed: {stderr}")]
    Ip {
        /// The arguments.
        args: String,
        /// What it printed.
        stderr: String,
    },
    /// Other I/O.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The bus did not answer in time.
    #[error("the simulated bus {name} did not answer a BRD within {seconds} s (log: {log})")]
    NoAnswer {
        /// The bus.
        name: String,
        /// The timeout.
        seconds: u64,
        /// The server's log file.
        log: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetnsError {
    let what = what.into();
    move |source| NetnsError::Io { what, source }
}

/// Runs `ip ARGS`, returning its stdout or an error with its stderr.
pub fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(io_err("running ip"))?;
    if !out.status.success() {
        return Err(NetnsError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Whether we run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether namespace `name` exists.
pub fn netns_exists(name: &str) -> bool {
    PathBuf::from("/run/netns").join(name).exists()
}

/// Whether interface `name` exists in our namespace.
pub fn interface_exists(name: &str) -> bool {
    PathBuf::from("/sys/class/net").join(name).exists()
}

/// The directory of bus `name`'s pid file and log.
pub fn run_dir(name: &str) -> PathBuf {
    PathBuf::from(RUN_DIR).join(name)
}

fn check_name(name: &str) -> Result<(), NetnsError> {
    // Interface names are at most 15 bytes (IFNAMSIZ - 1).
    if name.is_empty()
        || name.len() > 15
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(NetnsError::NameTaken(format!(
            "{name:?} is not a usable name: 1-15 characters of letters, digits, - and _"
        )));
    }
    Ok(())
}

/// Creates namespace `name` and the veth pair (master end `name` here, [`SIM_INTERFACE`]
/// inside), both up. Undoes what it did on failure.
pub fn create(name: &str) -> Result<(), NetnsError> {
    if !is_root() {
        return Err(NetnsError::NotRoot("ferrocat-sim up"));
    }
    check_name(name)?;
    if netns_exists(name) {
        return Err(NetnsError::NameTaken(format!(
            "network namespace {name:?} already exists (`ferrocat-sim down --name {name}` removes it)"
        )));
    }
    if interface_exists(name) {
        return Err(NetnsError::NameTaken(format!(
            "an interface {name:?} already exists in this namespace"
        )));
    }
    ip(&["netns", "add", name])?;
    let r = (|| {
        ip(&[
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            SIM_INTERFACE,
            "netns",
            name,
        ])?;
        ip(&["link", "set", name, "up"])?;
        ip(&["-n", name, "link", "set", SIM_INTERFACE, "up"])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    })();
    if r.is_err() {
        let _ = destroy_links(name);
    }
    r
}

fn destroy_links(name: &str) -> Result<(), NetnsError> {
    if interface_exists(name) {
        ip(&["link", "del", name])?;
    }
    if netns_exists(name) {
        ip(&["netns", "del", name])?;
    }
    Ok(())
}

/// Starts `exe serve --interface SIM_INTERFACE TOPOLOGY` inside namespace `name`, detached
/// (own session), logging to `RUN_DIR/NAME/log`, its pid in `RUN_DIR/NAME/pid`.
pub fn spawn_server(
    name: &str,
    exe: &std::path::Path,
    topology: &std::path::Path,
) -> Result<u32, NetnsError> {
    let dir = run_dir(name);
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let log_path = dir.join("log");
    let log = std::fs::File::create(&log_path)
        .map_err(io_err(format!("creating {}", log_path.display())))?;
    let log2 = log
        .try_clone()
        .map_err(io_err("duplicating the log file"))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", name])
        .arg(exe)
        .args(["serve", "--interface", SIM_INTERFACE, "--control"])
        .arg(dir.join("control"))
        .arg(topology)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // SAFETY: setsid is async-signal-safe and has no preconditions in the child.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(io_err("starting the server"))?;
    let pid = child.id();
    std::fs::write(dir.join("pid"), format!("{pid}\n")).map_err(io_err("writing the pid file"))?;
    Ok(pid)
}

/// A BRD of register 0x0000 (2 bytes) in an Ethernet frame, for checking that a bus answers.
pub fn brd_probe_frame() -> Vec<u8> {
    let mut f = vec![0xFF; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&ETHERTYPE_ETHERCAT.to_be_bytes());
    // EtherCAT header: length 14 (10 header + 2 data + 2 WKC), type 1. ETG.1000.4 table 4.
    f.extend_from_slice(&(14u16 | (1 << 12)).to_le_bytes());
    // BRD (7), index 0x5A, ADP 0, ADO 0x0000, length 2, IRQ 0. ETG.1000.4 table 11.
    f.extend_from_slice(&[7, 0x5A, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    f.resize(60, 0);
    f
}

/// Sends BRD probes on `interface` until one comes back with a non-zero working counter
/// (some terminal answered) or `timeout` passes. Returns the working counter.
pub fn wait_for_bus(interface: &str, timeout: Duration) -> Result<Option<u16>, NetnsError> {
    let socket = EthercatSocket::open(interface, Duration::from_millis(200)).map_err(|e| {
        NetnsError::Io {
            what: e.to_string(),
            source: std::io::Error::other("socket"),
        }
    })?;
    let probe = brd_probe_frame();
    let start = Instant::now();
    while start.elapsed() < timeout {
        let _ = socket.send(&probe);
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            let Ok(Some(rx)) = socket.recv() else { break };
            let f = &rx.frame;
            // Our datagram came back: index 0x5A at offset 15, WKC after 2 data bytes.
            if f.len() >= 30
                && f[12..14] == ETHERTYPE_ETHERCAT.to_be_bytes()
                && f[14 + 2] == 7
                && f[14 + 3] == 0x5A
            {
                let wkc = u16::from_le_bytes([f[28], f[29]]);
                if wkc > 0 {
                    return Ok(Some(wkc));
                }
            }
        }
    }
    Ok(None)
}

/// Kills the server of bus `name` (by pid file) and removes namespace, veth pair and run
/// directory. Does nothing for parts already gone.
pub fn down(name: &str) -> Result<(), NetnsError> {
    if !is_root() {
        return Err(NetnsError::NotRoot("ferrocat-sim down"));
    }
    check_name(name)?;
    let dir = run_dir(name);
    if let Ok(text) = std::fs::read_to_string(dir.join("pid")) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            if pid > 1 {
                kill_session(pid);
            }
        }
    }
    // Also any process still running inside the namespace (the server after `ip netns exec`).
    if netns_exists(name) {
        if let Ok(pids) = ip(&["netns", "pids", name]) {
            for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                kill_session(pid);
            }
        }
    }
    destroy_links(name)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))?;
    }
    Ok(())
}

fn kill_session(pid: i32) {
    // SAFETY: kill(2) with a specific pid; errors (already gone) are ignored.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let start = Instant::now();
    // SAFETY: signal 0 only checks for existence.
    while unsafe { libc::kill(pid, 0) } == 0 && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
        // Reap it if it is our child.
        // SAFETY: non-blocking waitpid on a specific pid.
        unsafe {
            libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
        }
    }
    // SAFETY: as above.
    if unsafe { libc::kill(pid, 0) } == 0 {
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}
