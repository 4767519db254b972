//! The `ferrocat` subcommands of the master (slaves, states, reg, diag, capture) run
//! against ferrocat-sim in process; their output is asserted.

mod master_support;

use ferrocat::cli::{CliError, Exit, LinkOpener, execute};
use ferrocat_sim::inproc::BusHandle;
use master_support::*;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Output collected from a run.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Run `ferrocat -i sim0 ARGS` against a fresh bus of the reference terminals without
/// firmware; returns output, result and the bus (for inspection).
async fn ferrocat(args: &[&str]) -> (String, Result<(), CliError>, Option<BusHandle>) {
    ferrocat_on(args, false).await
}

/// Run `ferrocat -i sim0 ARGS` against the full reference bus of
/// configs/sim/reference.toml (firmware, dictionaries, plant).
async fn ferrocat_reference(args: &[&str]) -> (String, Result<(), CliError>, Option<BusHandle>) {
    ferrocat_on(args, true).await
}

async fn ferrocat_on(
    args: &[&str],
    full: bool,
) -> (String, Result<(), CliError>, Option<BusHandle>) {
    ferrocat_with(args, move || {
        if full {
            link_to(reference_segment())
        } else {
            sim_link(&REFERENCE)
        }
    })
    .await
}

/// Run `ferrocat -i sim0 ARGS` against the bus `open` makes.
async fn ferrocat_with(
    args: &[&str],
    open: impl Fn() -> (ferrocat::ethercat::transport::ChannelLink, BusHandle) + Send + 'static,
) -> (String, Result<(), CliError>, Option<BusHandle>) {
    let buf = Buf::default();
    let handle: Arc<Mutex<Option<BusHandle>>> = Arc::default();
    let h = handle.clone();
    let opener: LinkOpener = Box::new(move |iface| {
        assert_eq!(iface, "sim0");
        let (link, bus) = open();
        *h.lock().unwrap() = Some(bus);
        Ok(boxed(link))
    });
    let mut argv = vec!["ferrocat", "-i", "sim0"];
    argv.extend_from_slice(args);
    let result = execute(argv, Box::new(buf.clone()), opener).await;
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).expect("UTF-8 output");
    let bus = handle.lock().unwrap().take();
    (out, result, bus)
}

#[tokio::test]
async fn slaves_prints_a_table() {
    let (out, result, _) = ferrocat(&["slaves"]).await;
    result.expect("slaves succeeds");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "header + 7 terminals:\n{out}");
    assert!(
        lines[0].starts_with("POS  ADDR   ALIAS STATE   VENDOR"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "0    0x1001 0     INIT    0x00000002 0x044c2c52 0x00120000 0x00000000 EK1100 EtherCAT-Koppler (2A E-Bus)"
    );
    assert!(
        lines[7].starts_with("6    0x1007 0     INIT    0x00000002 0x1b813052 0x00170000"),
        "{}",
        lines[7]
    );
    assert!(lines[7].ends_with("EL7041 1K. Schrittmotor-Endstufe (50V, 5A)"));
}

#[tokio::test]
async fn slaves_json_has_one_object_per_terminal() {
    let (out, result, _) = ferrocat(&["--json", "slaves"]).await;
    result.expect("slaves --json succeeds");
    let objects: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(objects.len(), 7);
    let el2004 = &objects[1];
    assert_eq!(el2004["position"], 1);
    assert_eq!(el2004["station_address"], 0x1002);
    assert_eq!(el2004["alias"], 0);
    assert_eq!(el2004["vendor_id"], 2);
    assert_eq!(el2004["product_code"], 0x07D43052);
    assert_eq!(el2004["revision"], 0x00100000);
    assert_eq!(el2004["serial"], 0);
    assert_eq!(el2004["state"], "INIT");
    assert!(el2004["name"].as_str().unwrap_or("").starts_with("EL2004"));
    assert_eq!(el2004["parent"], serde_json::json!([0, 1]));
}

#[tokio::test]
async fn slaves_selects_one_terminal_or_says_none_matches() {
    let (out, result, _) = ferrocat(&["slaves", "-p", "3", "-l"]).await;
    result.expect("one terminal");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("PARENT"), "long format: {}", lines[0]);
    assert!(lines[1].starts_with("3    0x1004"), "{}", lines[1]);
    assert!(
        lines[1].contains(" 2:1 "),
        "hangs off position 2 port 1: {}",
        lines[1]
    );
    let (_, result, _) = ferrocat(&["slaves", "-p", "9"]).await;
    let e = result.unwrap_err();
    assert_eq!(e.exit, Exit::NoInput);
    assert_eq!(
        e.message,
        "no terminal at position 9 (the bus has 7 terminals)"
    );
}

#[tokio::test]
async fn states_brings_the_bus_to_preop() {
    let (out, result, bus) = ferrocat(&["states", "PREOP"]).await;
    result.expect("PRE-OP");
    assert_eq!(out.lines().count(), 7);
    assert!(out.lines().all(|l| l.ends_with(" PREOP")), "{out}");
    let bus = bus.expect("bus opened");
    let seg = bus.segment();
    for i in 0..7 {
        let t = seg.terminal(i).expect("terminal");
        assert_eq!(
            format!("{:?}", t.al_state())
                .to_uppercase()
                .replace('_', ""),
            "PREOP"
        );
    }
}

#[tokio::test]
async fn states_op_brings_the_reference_bus_to_op() {
    let (out, result, bus) = ferrocat_reference(&["--json", "states", "OP"]).await;
    result.expect("OP");
    let v: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 7);
    assert!(v.iter().all(|t| t["state"] == "OP"), "{out}");
    let bus = bus.expect("bus opened");
    let seg = bus.segment();
    for i in 0..7 {
        assert_eq!(
            format!("{:?}", seg.terminal(i).unwrap().al_state()).to_uppercase(),
            "OP"
        );
    }
}

/// `states --dc-cycle` configures the SYNC signals from the SII's DC modes, `--dc-mode`
/// chooses per position (winning over a later choice for all), `--watchdog` sets the
/// SyncManager watchdog.
#[tokio::test]
async fn states_with_a_dc_cycle_configures_sync_signals() {
    let (out, result, bus) = ferrocat_reference(&[
        "states",
        "SAFEOP",
        "--dc-cycle",
        "500us",
        "--dc-mode",
        "4=DCIN",
        "--dc-mode",
        "6=off",
        "--dc-mode",
        "auto",
        "--dc-drift-frames",
        "100",
        "--watchdog",
        "20ms",
    ])
    .await;
    result.expect("SAFE-OP");
    assert!(out.lines().all(|l| l.ends_with(" SAFEOP")), "{out}");
    let bus = bus.expect("bus opened");
    let seg = bus.segment();
    let unit = |i: usize| {
        let esc = seg.terminal(i).expect("terminal");
        (
            esc.peek(0x0980),
            esc.peek(0x0981),
            peek_le(esc, 0x09A0, 4),
            peek_le(esc, 0x09A4, 4),
            peek_le(esc, 0x0990, 8),
            peek_le(esc, 0x0420, 2),
        )
    };
    // EL3164 "DCIN": SYNC0 100 µs before the grid, SYNC1 25 µs after SYNC0.
    let (cuc, act, c0, c1, start, wd) = unit(4);
    assert_eq!((cuc, act, c0, c1), (0, 0x07, 500_000, 25_000));
    assert_eq!(start % 500_000, 400_000, "shifted by -100 µs");
    assert_eq!(wd, 200, "20 ms in 100 µs units");
    // EL4104 in its default DC mode, the EL7041 without SYNC.
    let (_, act, c0, c1, _, _) = unit(5);
    assert_eq!((act, c0, c1), (0x07, 500_000, 100_000));
    assert_eq!(unit(6).1, 0, "EL7041 SYNC off");
}

/// A DC mode that the terminal does not have is a configuration error naming the modes
/// it has; it is found before anything is written: no state changes, no DC register.
#[tokio::test]
async fn states_refuses_an_unknown_dc_mode() {
    let (_, result, bus) = ferrocat(&[
        "states",
        "OP",
        "--dc-cycle",
        "1ms",
        "--dc-mode",
        "6=DcSync2",
    ])
    .await;
    let e = result.expect_err("EL7041 has no mode DcSync2");
    assert_eq!(e.exit, Exit::Config);
    assert_eq!(
        e.message,
        "terminal 0x1007 has no DC mode \"DcSync2\" (its SII lists \"Synchron\" (#0), \"DC\" (#1))"
    );
    let bus = bus.expect("bus opened");
    for i in 0..REFERENCE.len() {
        let seg = bus.segment();
        let esc = seg.terminal(i).expect("terminal");
        assert_eq!(format!("{:?}", esc.al_state()).to_uppercase(), "INIT");
        assert_eq!(
            peek_le(esc, 0x0120, 2),
            0,
            "terminal {i}: AL control never written"
        );
        assert_eq!(
            peek_le(esc, 0x0920, 8),
            0,
            "terminal {i}: no DC offset written"
        );
    }
    // A mode without a cycle is a usage error.
    let (_, result, _) = ferrocat(&["states", "OP", "--dc-mode", "off"]).await;
    assert_eq!(result.expect_err("needs --dc-cycle").exit, Exit::Usage);
}

/// On a bus without any DC unit a mode for a position has no terminal to apply to: the
/// same configuration error (exit 78) as anywhere else, before anything is written.
#[tokio::test]
async fn a_dc_mode_on_a_bus_without_dc_is_a_configuration_error() {
    let (_, result, bus) = ferrocat_with(
        &[
            "states",
            "SAFEOP",
            "--dc-cycle",
            "1ms",
            "--dc-mode",
            "3=DcSync2",
        ],
        || link_to(no_dc_segment(&REFERENCE)),
    )
    .await;
    let e = result.expect_err("no terminal with DC modes at position 3");
    assert_eq!(e.exit, Exit::Config);
    assert_eq!(
        e.message,
        "no terminal with a DC system time and DC modes in its SII at position 3"
    );
    let bus = bus.expect("bus opened");
    assert_eq!(bus.segment().terminal(3).expect("terminal").peek(0x0120), 0);
    // A mode for all that no terminal has, likewise; `auto` and `off` need none.
    let (_, result, _) = ferrocat_with(
        &[
            "states",
            "SAFEOP",
            "--dc-cycle",
            "1ms",
            "--dc-mode",
            "DcSync2",
        ],
        || link_to(no_dc_segment(&REFERENCE)),
    )
    .await;
    assert_eq!(result.expect_err("no DcSync2").exit, Exit::Config);
    let (out, result, _) = ferrocat_with(
        &["states", "SAFEOP", "--dc-cycle", "1ms", "--dc-mode", "off"],
        || link_to(no_dc_segment(&REFERENCE)),
    )
    .await;
    result.expect("SAFE-OP without DC");
    assert!(out.lines().all(|l| l.ends_with(" SAFEOP")), "{out}");
}

/// Bring-up options that would be ignored are usage errors (exit 64), before the bus is
/// opened: with -p/-s/-a `states` sets nothing up; `capture` sets up only with --state
/// (the watchdog, --no-dc) or --state/--dc (the DC options); --no-dc conflicts with
/// every DC option; a watchdog beyond its register is refused.
#[tokio::test]
async fn ignored_bring_up_options_are_usage_errors() {
    let refused: [&[&str]; 9] = [
        &["states", "-p", "3", "OP", "--dc-cycle", "1ms"],
        &["states", "-s", "0x1002", "SAFEOP", "--watchdog", "50ms"],
        &["states", "-a", "7", "SAFEOP", "--no-dc"],
        &["states", "-p", "1", "SAFEOP", "--dc-drift-frames", "10"],
        &["states", "OP", "--no-dc", "--dc-drift-frames", "10"],
        &["capture", "-o", "x.pcapng", "--watchdog", "50ms"],
        &["capture", "-o", "x.pcapng", "--dc-cycle", "1ms"],
        &["capture", "-o", "x.pcapng", "--dc", "--watchdog", "50ms"],
        &["states", "OP", "--watchdog", "7s"],
    ];
    for args in refused {
        let (_, result, bus) = ferrocat(args).await;
        let e = result.expect_err("refused");
        assert_eq!(e.exit, Exit::Usage, "{args:?}: {}", e.message);
        assert!(bus.is_none(), "{args:?}: the bus is not opened");
    }
}

#[tokio::test]
async fn states_of_one_terminal_leaves_the_others() {
    let (out, result, bus) = ferrocat(&["states", "-s", "0x1003", "preop"]).await;
    result.expect("one terminal to PRE-OP");
    assert_eq!(out.trim(), "2    0x1003 PREOP");
    let bus = bus.expect("bus opened");
    let seg = bus.segment();
    let state = |i| format!("{:?}", seg.terminal(i).expect("terminal").al_state()).to_uppercase();
    assert_eq!(state(2), "PREOP");
    assert_eq!(state(1), "INIT");
}

#[tokio::test]
async fn states_rejects_unknown_state() {
    let (_, result, _) = ferrocat(&["states", "RUN"]).await;
    assert_eq!(result.unwrap_err().exit, Exit::Usage);
}

#[tokio::test]
async fn reg_read_decodes_typed_values() {
    let (out, result, _) = ferrocat(&["reg", "read", "-p", "0", "AL_STATUS"]).await;
    result.expect("read");
    assert_eq!(out.trim(), "0x0001 (1)");
    let (out, result, _) = ferrocat(&["reg", "read", "-p", "1", "STATION_ADDRESS"]).await;
    result.expect("read");
    assert_eq!(out.trim(), "0x1002 (4098)");
    let (out, result, _) = ferrocat(&["reg", "read", "0x0000", "2", "-t", "hex"]).await;
    result.expect("read all");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7);
    assert!(lines[0].starts_with("0    0x1001 "), "{}", lines[0]);
    let (out, result, _) = ferrocat(&["reg", "read", "--broadcast", "AL_STATUS"]).await;
    result.expect("broadcast read");
    assert_eq!(out.trim(), "0x0001 (1) (working counter 7)");
}

#[tokio::test]
async fn reg_write_reaches_the_terminal() {
    let (out, result, bus) =
        ferrocat(&["reg", "write", "-p", "2", "0x0f00", "0xa5", "-t", "u8"]).await;
    result.expect("write");
    assert_eq!(out, "");
    let bus = bus.expect("bus opened");
    assert_eq!(
        bus.segment().terminal(2).expect("terminal").peek(0x0f00),
        0xa5
    );
    let (_, result, _) = ferrocat(&["reg", "write", "0x0f00", "1"]).await;
    let e = result.unwrap_err();
    assert_eq!(e.exit, Exit::Usage, "{}", e.message);
    let (_, result, _) =
        ferrocat(&["reg", "write", "-p", "0", "0x0f00", "0x1ff", "-t", "u8"]).await;
    assert_eq!(result.unwrap_err().exit, Exit::DataErr);
}

#[tokio::test]
async fn diag_shows_ports_and_counters() {
    let (out, result, _) = ferrocat(&["diag", "-p", "6"]).await;
    result.expect("diag");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "header, 4 ports, totals:\n{out}");
    assert!(
        lines[1].starts_with("6    0x1007 0    up   open   yes"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("6    0x1007 1    down closed no"),
        "{}",
        lines[2]
    );
    assert_eq!(
        lines[5],
        "6    0x1007 processing unit errors 0, PDI errors 0"
    );
    let (out, result, _) = ferrocat(&["--json", "diag"]).await;
    result.expect("diag --json");
    let v: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 7);
    assert_eq!(v[0]["ports"][1]["communication"], true);
    assert_eq!(v[6]["ports"][1]["communication"], false);
}

#[tokio::test]
async fn capture_writes_pcapng_of_the_bring_up() {
    let dir = std::env::temp_dir().join(format!("ferrocat-master-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bringup.pcapng");
    let p = path.to_str().unwrap().to_owned();
    let (out, result, _) = ferrocat(&["capture", "-o", &p, "--state", "PREOP"]).await;
    result.expect("capture");
    assert!(out.contains("frames from 7 terminals written to"), "{out}");
    let bytes = std::fs::read(&path).unwrap();
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).expect("pcapng");
    let mut frames = 0;
    let mut sent = 0;
    while let Some(block) = reader.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(epb) = block.expect("valid block") {
            frames += 1;
            let f = ferrocat::ethercat::wire::Frame::new_checked(&epb.data[..])
                .expect("every captured frame is EtherCAT");
            if f.source()[0] & 0x02 == 0 {
                sent += 1;
            }
        }
    }
    assert!(
        frames > 100,
        "a bring-up with SII reads takes many frames: {frames}"
    );
    assert_eq!(sent * 2, frames, "every request has its reply");
    let n: usize = out.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(n, frames);
    assert_tshark_clean(&path, frames);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn capture_of_a_full_bring_up_to_op_with_dc_passes_tshark() {
    let dir = std::env::temp_dir().join(format!("ferrocat-master-cli-op-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("op.pcapng");
    let p = path.to_str().unwrap().to_owned();
    let (out, result, _) =
        ferrocat_reference(&["capture", "-o", &p, "--dc", "--state", "OP"]).await;
    result.expect("capture of a bring-up to OP");
    let frames: usize = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        frames > 1000,
        "SII, CoE, DC drift frames and states: {frames}"
    );
    assert_tshark_clean(&path, frames);
    std::fs::remove_dir_all(&dir).ok();
}

/// tshark (installed by scripts/setup.sh) dissects every frame as EtherCAT and flags
/// nothing as malformed or worth a warning.
fn assert_tshark_clean(path: &std::path::Path, frames: usize) {
    let run = |filter: &str| {
        let out = std::process::Command::new("tshark")
            .args(["-n", "-r"])
            .arg(path)
            .args(["-Y", filter])
            .output()
            .expect("tshark runs (install it with scripts/setup.sh)");
        assert!(
            out.status.success(),
            "tshark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let bad = run("_ws.malformed || _ws.expert.severity >= warning");
    assert_eq!(bad, "", "tshark flags frames of the capture");
    let ecat = run("ecat");
    assert_eq!(
        ecat.lines().count(),
        frames,
        "tshark sees every frame as EtherCAT"
    );
}

#[tokio::test]
async fn no_interface_is_a_usage_error() {
    let buf = Buf::default();
    let opener: LinkOpener = Box::new(|_| unreachable!("no bus without -i"));
    let e = execute(["ferrocat", "slaves"], Box::new(buf), opener)
        .await
        .unwrap_err();
    assert_eq!(e.exit, Exit::Usage);
    assert!(e.message.contains("-i IFACE"));
}

#[test]
fn every_master_subcommand_teaches_with_examples() {
    use clap::CommandFactory;
    let mut cmd = ferrocat::cli::Cli::command();
    let top = cmd.render_long_help().to_string();
    assert!(top.contains("Examples:"), "{top}");
    for name in ["slaves", "states", "reg", "diag", "capture"] {
        let sub = cmd.find_subcommand_mut(name).expect(name);
        let help = sub.render_long_help().to_string();
        assert!(help.contains("Examples:"), "{name} --help:\n{help}");
        assert!(
            help.contains(&format!("ferrocat -i eth1 {name}")),
            "{name} --help:\n{help}"
        );
    }
}

#[tokio::test]
async fn states_boot_uses_the_bootstrap_mailbox() {
    let (out, result, bus) = ferrocat(&["states", "-p", "6", "BOOT"]).await;
    result.expect("EL7041 to BOOT");
    assert_eq!(out.trim(), "6    0x1007 BOOT");
    let bus = bus.expect("bus opened");
    let seg = bus.segment();
    let el7041 = seg.terminal(6).expect("EL7041");
    let sm0 = &el7041.sm_configs()[0];
    // The EL7041's SII: bootstrap receive mailbox at 0x1000, 244 bytes.
    assert_eq!((sm0.start, sm0.length), (0x1000, 244));
}

/// BOOT asked of a terminal whose SII has no bootstrap mailbox is refused, naming it,
/// before any AL control write.
#[tokio::test]
async fn states_boot_of_a_terminal_without_bootstrap_is_refused() {
    let (out, result, bus) = ferrocat(&["states", "-p", "1", "BOOT"]).await;
    let e = result.expect_err("the EL2004 has no bootstrap mailbox");
    assert_eq!(e.exit, Exit::Unavailable);
    assert_eq!(
        e.message,
        "terminal 0x1002 (EL2004 4K. Dig. Ausgang 24V, 0.5A) does not offer BOOT: its SII has no bootstrap mailbox (words 0x14..0x17)"
    );
    assert!(out.is_empty(), "{out}");
    {
        let bus = bus.expect("bus opened");
        let seg = bus.segment();
        let el2004 = seg.terminal(1).expect("EL2004");
        assert_eq!(format!("{:?}", el2004.al_state()).to_uppercase(), "INIT");
        assert_eq!(el2004.peek(0x0120), 0, "AL control never written");
    }
    // All terminals: the first one without BOOT is named; the EL7041, which offers it,
    // is not moved either.
    let (_, result, bus) = ferrocat(&["states", "BOOT"]).await;
    let e = result.expect_err("the EK1100 has no bootstrap mailbox");
    assert!(
        e.message.starts_with("terminal 0x1001 (EK1100"),
        "{}",
        e.message
    );
    let bus = bus.expect("bus opened");
    let seg = bus.segment();
    assert_eq!(seg.terminal(6).expect("EL7041").peek(0x0120), 0);
}

#[tokio::test]
async fn states_preop_uses_the_standard_mailbox() {
    let (out, result, bus) = ferrocat(&["states", "-p", "6", "PREOP"]).await;
    result.expect("EL7041 to PRE-OP");
    assert_eq!(out.trim(), "6    0x1007 PREOP");
    let bus = bus.expect("bus opened");
    let seg = bus.segment();
    let sm0 = &seg.terminal(6).expect("EL7041").sm_configs()[0];
    // The EL7041's SII: standard receive mailbox at 0x1000, 128 bytes.
    assert_eq!((sm0.start, sm0.length), (0x1000, 128));
}

#[tokio::test]
async fn global_capture_records_any_subcommand() {
    let dir = std::env::temp_dir().join(format!("ferrocat-master-cli-g-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("reg.pcapng");
    let p = path.to_str().unwrap().to_owned();
    let (out, result, _) =
        ferrocat(&["--capture", &p, "reg", "read", "--broadcast", "AL_STATUS"]).await;
    result.expect("reg read with capture");
    assert_eq!(out.trim(), "0x0001 (1) (working counter 7)");
    let bytes = std::fs::read(&path).expect("capture written");
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).expect("pcapng");
    let mut frames = Vec::new();
    while let Some(block) = reader.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(epb) = block.expect("block") {
            frames.push(epb.data.to_vec());
        }
    }
    // One BRD of 0x0130 and its reply.
    assert_eq!(frames.len(), 2);
    let reply = ferrocat::ethercat::wire::FrameRepr::parse_bytes(&frames[1]).expect("EtherCAT");
    assert_eq!(
        reply.datagrams[0].command,
        ferrocat::ethercat::wire::Command::Brd
    );
    assert_eq!(reply.datagrams[0].wkc, 7);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn diag_clear_resets_the_counters() {
    let buf = Buf::default();
    let handle: Arc<Mutex<Option<BusHandle>>> = Arc::default();
    let h = handle.clone();
    let opener: LinkOpener = Box::new(move |_| {
        let (link, bus) = sim_link(&REFERENCE);
        // Two invalid frames on port 0 of the EL2004 before the master looks.
        if let Some(t) = bus.segment().terminal_mut(1) {
            t.count_rx_error(0);
            t.count_rx_error(0);
        }
        *h.lock().unwrap() = Some(bus);
        Ok(boxed(link))
    });
    execute(
        [
            "ferrocat", "-i", "sim0", "--json", "diag", "-p", "1", "--clear",
        ],
        Box::new(buf.clone()),
        opener,
    )
    .await
    .expect("diag --clear");
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["ports"][0]["invalid_frames"], 2, "{out}");
    assert_eq!(v["ports"][0]["rx_errors"], 0, "{out}");
    let bus = handle.lock().unwrap().take().expect("bus");
    let seg = bus.segment();
    assert_eq!(seg.terminal(1).expect("EL2004").peek(0x0300), 0, "cleared");
}

/// A stdout whose reader goes away after the first line, like `ferrocat slaves | head -1`.
struct ClosedAfterOneLine {
    lines: usize,
}

impl Write for ClosedAfterOneLine {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.lines >= 1 {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.lines += b.iter().filter(|&&c| c == b'\n').count();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn stdout_closed_early_ends_quietly() {
    let opener: LinkOpener = Box::new(|_| Ok(boxed(sim_link(&REFERENCE).0)));
    let out = Box::new(ClosedAfterOneLine { lines: 0 });
    let e = execute(["ferrocat", "-i", "sim0", "slaves"], out, opener)
        .await
        .expect_err("the second line cannot be written");
    assert_eq!(e.exit, Exit::BrokenPipe);
    assert_eq!(e.exit as u8, 141);
    assert_eq!(e.message, "", "nothing is printed for a closed stdout");
}
