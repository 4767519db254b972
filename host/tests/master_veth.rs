//! The master over a real AF_PACKET socket: ferrocat-sim serves the reference bus on one
//! end of a veth pair inside its own network namespace, ferrocat runs on the other end.
//! Needs root; fails (does not skip) without it.

mod master_support;

use ferrocat::ethercat::al::AlState;
use ferrocat::ethercat::master::{Master, ScanOptions};
use ferrocat::ethercat::transport::{Transport, TransportConfig, identity_for_pid};
use ferrocat_sim::{netns, serve, topology::Topology};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace with the simulated reference bus behind a veth pair; removed on drop,
/// also when the test panics.
struct SimBus {
    name: String,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl SimBus {
    fn start() -> SimBus {
        assert!(
            netns::is_root(),
            "the veth tests need root (network namespaces, AF_PACKET)"
        );
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("fcm{}x{n}", std::process::id() % 100_000);
        netns::create(&name).expect("namespace and veth pair");
        let stop = Arc::new(AtomicBool::new(false));
        let mut bus = SimBus {
            name: name.clone(),
            stop: stop.clone(),
            server: None,
        };
        let topology =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sim/reference.toml");
        bus.server = Some(std::thread::spawn(move || {
            let ns = std::fs::File::open(format!("/run/netns/{name}"))
                .map_err(|e| format!("open netns {name}: {e}"))?;
            // SAFETY: setns on this thread only, with a valid namespace descriptor.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns: {}", std::io::Error::last_os_error()));
            }
            let built = Topology::load(&topology)
                .and_then(|t| t.build())
                .map_err(|e| e.to_string())?;
            let processor = std::cell::RefCell::new(serve::bus_processor(built));
            serve::serve(
                netns::SIM_INTERFACE,
                &stop,
                |frame, t| processor.borrow_mut().process(frame, t),
                |now| processor.borrow_mut().idle(now),
            )
            .map(drop)
            .map_err(|e| e.to_string())
        }));
        let wkc = netns::wait_for_bus(&bus.name, Duration::from_secs(10)).expect("probe");
        assert_eq!(wkc, Some(7), "the simulated bus answers on {}", bus.name);
        bus
    }
}

impl Drop for SimBus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
        let _ = netns::down(&self.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_bus_reaches_op_over_a_raw_socket() {
    let bus = SimBus::start();
    let t = Transport::open(&bus.name, TransportConfig::default()).expect("raw socket");
    let mut m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("scan");
    assert_eq!(m.terminals().len(), 7);
    assert_eq!(m.terminals()[6].identity.product_code, 0x1B813052);
    m.request_state(AlState::Op, None).await.expect("OP");
    assert!(
        m.terminals()
            .iter()
            .all(|t| t.status.state() == Some(AlState::Op))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_interface() {
    let bus = SimBus::start();
    let a = Transport::open(
        &bus.name,
        TransportConfig {
            identity: identity_for_pid(1_000_001),
            ..TransportConfig::default()
        },
    )
    .expect("raw socket a");
    let b = Transport::open(
        &bus.name,
        TransportConfig {
            identity: identity_for_pid(1_000_002),
            ..TransportConfig::default()
        },
    )
    .expect("raw socket b");
    // Both read the ESC type of every terminal, interleaved, 200 times each: every
    // transaction must get its own reply (same datagram indices on both sides).
    let run = |t: Transport| async move {
        for _ in 0..200 {
            let (data, wkc) = t.brd(0x0000, 1).await?;
            assert_eq!(wkc, 7);
            assert_ne!(data[0], 0);
        }
        Ok::<_, ferrocat::ethercat::transport::TransportError>(())
    };
    let (ra, rb) = tokio::join!(run(a), run(b));
    ra.expect("process a");
    rb.expect("process b");
}

#[test]
fn ferrocat_binary_lists_the_terminals() {
    let bus = SimBus::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrocat"))
        .args(["-i", &bus.name, "--json", "slaves"])
        .output()
        .expect("ferrocat runs");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let v: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 7);
    assert_eq!(v[0]["product_code"], 0x044C2C52);
    assert_eq!(v[6]["station_address"], 0x1007);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrocat"))
        .args(["-i", &bus.name, "states", "-p", "9", "PREOP"])
        .output()
        .expect("ferrocat runs");
    assert_eq!(
        out.status.code(),
        Some(66),
        "no terminal at position 9 is EX_NOINPUT"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "ferrocat: no terminal at position 9 (the bus has 7 terminals)"
    );
}

#[test]
fn ferrocat_binary_is_quiet_when_stdout_closes_early() {
    let bus = SimBus::start();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferrocat"))
        .args(["-i", &bus.name, "slaves"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ferrocat runs");
    // The reader goes away before ferrocat has scanned the bus, like `| head -0`.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("ferrocat ends");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "no 'Broken pipe' message"
    );
    assert_eq!(out.status.code(), Some(141), "128 + SIGPIPE, like a C tool");
}

/// The exit codes of docs/cli.md, from the binary: errors on stderr as one
/// `ferrocat: ` line, nothing on stdout.
#[test]
fn ferrocat_binary_exit_codes_match_the_documentation() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferrocat"))
            .args(args)
            .env_remove("FERROCAT_INTERFACE")
            .output()
            .expect("ferrocat runs")
    };
    let missing = format!("fcnone{}", std::process::id() % 100_000);
    for (args, code, stderr) in [
        (
            vec!["-i", missing.as_str(), "slaves"],
            66,
            format!("ferrocat: no network interface named {missing}\n"),
        ),
        (
            vec!["slaves"],
            64,
            "ferrocat: no interface given: pass -i IFACE (or set FERROCAT_INTERFACE)\n".into(),
        ),
        (
            vec!["-i", missing.as_str(), "upload", "-p", "0", "0x1018"],
            64,
            "ferrocat: no subindex for object 0x1018: give INDEX SUBINDEX or INDEX:SUB\n".into(),
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), stderr, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A command-line error is clap's message with the same prefix, also exit 64.
    let out = run(&["slaves", "--bogus"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("ferrocat: unexpected argument '--bogus' found\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ferrocat_binary_survives_a_closed_stderr() {
    let missing = format!("fcnone{}", std::process::id() % 100_000);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferrocat"))
        .args(["-i", &missing, "slaves"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ferrocat runs");
    // Whoever read stderr has gone before the error is printed.
    drop(child.stderr.take());
    let status = child.wait().expect("ferrocat ends");
    assert_eq!(
        status.code(),
        Some(66),
        "the documented code, not a panic (101)"
    );
}
