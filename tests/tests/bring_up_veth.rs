//! End to end over a veth pair: ferrocat-sim serves the reference bus plus a Kollmorgen
//! AKD (configs/sim/reference-akd.toml) in its own network namespace, ferrocat's master
//! brings every terminal to OP through a real AF_PACKET socket, the frames of that
//! bring-up (ferrocat's pcapng capture) decode in tshark without malformed or warning
//! items, and the `ferrocat` program's `slaves --json` lists every terminal as it is;
//! `ferrocat capture --state OP --dc` records a clean bring-up and `states INIT` takes
//! the bus down again.
//!
//! Needs root and tshark (scripts/setup.sh installs it): fails, does not skip, without.

use ferrocat::ethercat::al::AlState;
use ferrocat::ethercat::capture::{PcapngSink, SharedSink};
use ferrocat::ethercat::master::{Master, ScanOptions};
use ferrocat::ethercat::pdo::PdoLayout;
use ferrocat::ethercat::transport::{Transport, TransportConfig};
use ferrocat_tests::{
    Cycle, FrameCounter, ProgramOutput, SimBus, project_dir, run_output, testdata_dir,
};
use std::time::Duration;

/// Tests here keep process data cycling on their bus: one at a time.
/// (An async mutex: its guard is held across awaits, and a failed test does not poison it.)
static CYCLIC: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One terminal of configs/sim/reference-akd.toml as its data sheet describes it.
struct Expected {
    eeprom: &'static str,
    vendor: u32,
    product: u32,
    revision: u32,
    name: &'static str,
}

/// The bus in order. Vendor, product and revision as `../shared/testdata/README.md`
/// lists them; names are the SII's device names.
const BUS: [Expected; 8] = [
    Expected {
        eeprom: "ek1100",
        vendor: 0x2,
        product: 0x044C2C52,
        revision: 0x00120000,
        name: "EK1100 EtherCAT-Koppler (2A E-Bus)",
    },
    Expected {
        eeprom: "el2004",
        vendor: 0x2,
        product: 0x07D43052,
        revision: 0x00100000,
        name: "EL2004 4K. Dig. Ausgang 24V, 0.5A",
    },
    Expected {
        eeprom: "el2828",
        vendor: 0x2,
        product: 0x0B0C3052,
        revision: 0x00110000,
        name: "EL2828 8K. Dig. Ausgang 24V, 2A",
    },
    Expected {
        eeprom: "el2889",
        vendor: 0x2,
        product: 0x0B493052,
        revision: 0x00110000,
        name: "EL2889 16K. Dig. Ausgang 24V, 0.5A, negativ",
    },
    Expected {
        eeprom: "el3164",
        vendor: 0x2,
        product: 0x0C5C3052,
        revision: 0x00140000,
        name: "EL3164 4K. Ana. Eingang 0-10V",
    },
    Expected {
        eeprom: "el4104",
        vendor: 0x2,
        product: 0x10083052,
        revision: 0x03FC0000,
        name: "EL4104 4Ch. Ana. Ausgang 0-10V, 16bit",
    },
    Expected {
        eeprom: "el7041",
        vendor: 0x2,
        product: 0x1B813052,
        revision: 0x00170000,
        name: "EL7041 1K. Schrittmotor-Endstufe (50V, 5A)",
    },
    Expected {
        eeprom: "akd",
        vendor: 0x6A,
        product: 0x00414B44,
        revision: 0x2,
        name: "AKD EtherCAT Drive (CoE)",
    },
];

/// Station address of position `p` (no terminal of this bus has an alias).
fn station(p: usize) -> u16 {
    0x1001 + p as u16
}

/// Serial number of an EEPROM image: SII words 0x0E..0x0F (ETG.1000.6 table 16), read
/// from the file, not through ferrocat.
fn serial_in_eeprom(name: &str) -> u32 {
    let path = testdata_dir().join(format!("eeprom/{name}.bin"));
    let image = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let word = 0x0E * 2;
    u32::from_le_bytes([
        image[word],
        image[word + 1],
        image[word + 2],
        image[word + 3],
    ])
}

fn start_bus(tag: &str) -> SimBus {
    SimBus::from_topology(tag, &project_dir().join("configs/sim/reference-akd.toml"))
}

/// Asserts what the master knows of every terminal after bring-up to OP.
fn assert_terminals_in_op(m: &Master) {
    assert_eq!(m.terminals().len(), BUS.len(), "terminals found");
    for (p, (t, e)) in m.terminals().iter().zip(&BUS).enumerate() {
        let what = format!("position {p} ({})", e.eeprom);
        assert_eq!(t.position as usize, p, "{what}");
        assert_eq!(t.station, station(p), "{what}");
        assert_eq!(t.alias, 0, "{what}");
        assert_eq!(t.identity.vendor_id, e.vendor, "{what}");
        assert_eq!(t.identity.product_code, e.product, "{what}");
        assert_eq!(t.identity.revision, e.revision, "{what}");
        assert_eq!(t.identity.serial, serial_in_eeprom(e.eeprom), "{what}");
        assert_eq!(t.name.as_deref(), Some(e.name), "{what}");
        assert_eq!(t.sii_error, None, "{what}");
        assert_eq!(t.status.state(), Some(AlState::Op), "{what}: {}", t.status);
        assert!(!t.status.error(), "{what}: {}", t.status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_bus_and_akd_reach_op_and_the_capture_decodes_cleanly() {
    let _serial = CYCLIC.lock().await;
    let bus = start_bus("bringup");
    let dir = TempDir::new();
    let pcap = dir.0.join("bring-up.pcapng");
    let file = std::fs::File::create(&pcap).expect("capture file");
    let sink = SharedSink::new(PcapngSink::new(file, bus.interface()).expect("pcapng header"));
    let counter = FrameCounter::default();
    let config = TransportConfig {
        capture: Some(counter.sink(Some(Box::new(sink.clone())))),
        ..TransportConfig::default()
    };
    let t = Transport::open(bus.interface(), config).expect("raw socket on the veth end");
    let mut m = tokio::time::timeout(Duration::from_secs(60), async {
        let mut m = Master::scan(t, &ScanOptions::default())
            .await
            .expect("scan");
        m.request_state(AlState::Op, None).await.expect("OP");
        m
    })
    .await
    .expect("bring-up finishes");
    // The capture ends with the bring-up.
    let frames = sink
        .take()
        .expect("capture still held")
        .finish()
        .map(drop)
        .map(|()| counter.sent() + counter.received())
        .expect("capture written");
    let _cycle = Cycle::start(&m);
    m.refresh_status().await.expect("AL status");
    assert_terminals_in_op(&m);

    // The AKD has no recorded dictionary: its process data is what its SII describes.
    let akd = &m.terminals()[7];
    let sii = akd.sii.as_ref().expect("AKD SII parsed");
    let layout = m.layouts()[7].as_ref().expect("AKD layout");
    assert_eq!(
        layout.sync_managers,
        PdoLayout::from_sii(sii, "reference").sync_managers,
        "AKD process data as its SII assigns it"
    );
    let image = m.process_image().expect("process image");
    let akd_image = image.terminal(station(7)).expect("AKD in the image");
    assert!(
        !akd_image.fmmus.is_empty() && !akd_image.entries.is_empty(),
        "AKD has FMMUs and entries: {akd_image:?}"
    );

    // Every frame of the bring-up in the capture, none malformed or with a warning.
    let (sent, received) = (counter.sent(), counter.received());
    assert!(
        received > 0 && sent >= received,
        "sent {sent}, received {received}"
    );
    let path = pcap.to_str().expect("UTF-8 path");
    let all = tshark(&["-r", path, "-T", "fields", "-e", "frame.protocols"]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len() as u64, frames, "frames in the capture");
    assert!(
        lines.iter().all(|l| l.starts_with("eth:ethertype:ecat")),
        "every frame decodes as EtherCAT: {:?}",
        lines.iter().find(|l| !l.starts_with("eth:ethertype:ecat"))
    );
    let bad = tshark(&[
        "-r",
        path,
        "-Y",
        "_ws.malformed || _ws.expert.severity >= warning",
    ]);
    assert_eq!(bad, "", "tshark finds malformed or warning items");
    drop(m);
}

/// A temporary directory, removed on drop (also when the test panics).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ferrocat-e2e-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("temporary directory {}: {e}", dir.display()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs tshark, panicking with its output if it fails or is missing.
fn tshark(args: &[&str]) -> String {
    let out = std::process::Command::new("tshark")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("tshark (scripts/setup.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 from tshark")
}

/// Runs the `ferrocat` program with `args`; returns exit code, stdout and stderr.
fn ferrocat(args: &[&str]) -> ProgramOutput {
    run_output(env!("CARGO_BIN_EXE_ferrocat-cli"), args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferrocat_slaves_json_lists_every_terminal_in_op() {
    let _serial = CYCLIC.lock().await;
    let bus = start_bus("slaves");
    let t = Transport::open(bus.interface(), TransportConfig::default()).expect("raw socket");
    let mut m = tokio::time::timeout(Duration::from_secs(60), async {
        let mut m = Master::scan(t, &ScanOptions::default())
            .await
            .expect("scan");
        m.request_state(AlState::Op, None).await.expect("OP");
        m
    })
    .await
    .expect("bring-up finishes");
    let _cycle = Cycle::start(&m);
    let iface = bus.interface().to_string();
    // Another process on the same interface, while this one keeps the bus cycling.
    let (code, out, err) =
        tokio::task::spawn_blocking(move || ferrocat(&["-i", &iface, "--json", "slaves"]))
            .await
            .expect("ferrocat finished");
    assert_eq!(code, Some(0), "ferrocat slaves failed: {err}");
    let objects: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(objects.len(), BUS.len(), "one object per terminal:\n{out}");
    for (p, (o, e)) in objects.iter().zip(&BUS).enumerate() {
        let what = format!("position {p} ({}): {o}", e.eeprom);
        assert_eq!(o["position"], p, "{what}");
        assert_eq!(o["station_address"], station(p), "{what}");
        assert_eq!(o["alias"], 0, "{what}");
        assert_eq!(o["vendor_id"], e.vendor, "{what}");
        assert_eq!(o["product_code"], e.product, "{what}");
        assert_eq!(o["revision"], e.revision, "{what}");
        assert_eq!(o["serial"], serial_in_eeprom(e.eeprom), "{what}");
        assert_eq!(o["name"], e.name, "{what}");
        assert_eq!(o["state"], "OP", "{what}");
        assert_eq!(o["sii_error"], serde_json::Value::Null, "{what}");
    }
    // The scan of the other process changed nothing here.
    m.refresh_status().await.expect("AL status");
    assert_terminals_in_op(&m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferrocat_capture_of_a_bring_up_with_dc_decodes_cleanly_then_states_init() {
    let _serial = CYCLIC.lock().await;
    let bus = start_bus("capture");
    let dir = TempDir::new();
    let pcap = dir.0.join("cli-bring-up.pcapng");
    let path = pcap.to_str().expect("UTF-8 path").to_string();
    let iface = bus.interface().to_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        ferrocat(&[
            "-i", &iface, "capture", "-o", &path, "--state", "OP", "--dc",
        ])
    })
    .await
    .expect("ferrocat finished");
    assert_eq!(code, Some(0), "ferrocat capture failed: {err}");
    let path = pcap.to_str().expect("UTF-8 path");
    let (frames, rest) = out
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("unexpected output: {out}"));
    assert_eq!(
        rest,
        format!("frames from 8 terminals written to {path}"),
        "{out}"
    );
    let frames: usize = frames.parse().expect("frame count");
    // Scan, SII, DC (2000 drift frames), PRE-OP, CoE, SAFE-OP, OP: thousands of frames.
    assert!(frames > 2000, "{frames} frames");
    let all = tshark(&["-r", path, "-T", "fields", "-e", "frame.protocols"]);
    assert_eq!(all.lines().count(), frames, "frames in the file");
    assert!(
        all.lines().all(|l| l.starts_with("eth:ethertype:ecat")),
        "every frame decodes as EtherCAT"
    );
    let bad = tshark(&[
        "-r",
        path,
        "-Y",
        "_ws.malformed || _ws.expert.severity >= warning",
    ]);
    assert_eq!(bad, "", "tshark finds malformed or warning items");

    // The bus was left in OP without cycling; `states INIT` brings every terminal down
    // (acknowledging the watchdog errors of the output terminals on the way).
    let iface = bus.interface().to_string();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || ferrocat(&["-i", &iface, "--json", "states", "INIT"]))
            .await
            .expect("ferrocat finished");
    assert_eq!(code, Some(0), "ferrocat states failed: {err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(rows.len(), BUS.len(), "{out}");
    for (p, row) in rows.iter().enumerate() {
        assert_eq!(
            *row,
            serde_json::json!({"position": p, "station_address": station(p), "state": "INIT"}),
        );
    }
}
