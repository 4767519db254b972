//! The CLI subcommands `sii`, `pdos`, `sdos`, `upload` and `download` against the
//! reference bus of ferrocat-sim (configs/sim/reference.toml: EK1100, EL2004, EL2828,
//! EL2889, EL3164, EL4104, EL7041 with their recorded dictionaries), run in process.
//! Output and exit codes are asserted.

use ferrocat::cli::{CliError, Exit, LinkOpener, execute};
use ferrocat::ethercat::transport::{ChannelLink, Link};
use ferrocat_sim::inproc::{Bus, SimClock};
use ferrocat_sim::topology::Topology;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Output collected from a run.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The reference bus, kept across several commands.
#[derive(Clone)]
struct SharedBus(Arc<Mutex<Bus>>);

impl SharedBus {
    fn reference() -> SharedBus {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../configs/sim/reference.toml"
        ));
        let topo = Topology::load(path).expect("reference topology");
        let segment = ferrocat_sim::serve::build_segment(topo.build().expect("build"));
        SharedBus(Arc::new(Mutex::new(Bus::new(
            segment,
            SimClock::monotonic(),
        ))))
    }

    fn opener(&self) -> LinkOpener {
        let bus = self.0.clone();
        Box::new(move |iface| {
            assert_eq!(iface, "sim0");
            let (link, mut from_master, to_master) = ChannelLink::pair();
            let bus = bus.clone();
            tokio::spawn(async move {
                while let Some(frame) = from_master.recv().await {
                    let reply = bus.lock().expect("bus").exchange(frame);
                    if let Some(reply) = reply {
                        if to_master.send(reply).is_err() {
                            return;
                        }
                    }
                }
            });
            Ok(Box::new(link) as Box<dyn Link>)
        })
    }

    /// Runs `ferrocat -i sim0 ARGS` on this bus.
    async fn run(&self, args: &[&str]) -> (String, Result<(), CliError>) {
        let buf = Buf::default();
        let mut argv = vec!["ferrocat", "-i", "sim0"];
        argv.extend_from_slice(args);
        let result = execute(argv, Box::new(buf.clone()), self.opener()).await;
        let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("UTF-8");
        (out, result)
    }
}

async fn ferrocat(args: &[&str]) -> (String, Result<(), CliError>) {
    SharedBus::reference().run(args).await
}

fn eeprom(name: &str) -> String {
    format!(
        "{}/../../shared/testdata/eeprom/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test]
async fn sii_decodes_the_el2004() {
    let (out, r) = ferrocat(&["sii", "-p", "1"]).await;
    r.expect("sii succeeds");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "terminal 1 (0x1002)");
    assert_eq!(
        lines[1],
        "  Identity:    vendor 0x00000002 product 0x07d43052 revision 0x00100000 serial 0x00000000"
    );
    assert!(
        out.contains("  Name:        \"EL2004 4K. Dig. Ausgang 24V, 0.5A\"    Order: \"EL2004\""),
        "{out}"
    );
    assert!(
        out.contains(
            "  SM0:         start 0x0f00 length 0 control 0x44 enable 0x09 process data out"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "  RxPDO 0x1603 \"Channel 4\" SM0, 1 bit\n    0x7030:01   1 bit BOOL     \"Output\""
        ),
        "{out}"
    );
    assert!(out.contains("  Mailbox:     none"), "{out}");
    assert!(!out.contains("Warning"), "{out}");
}

#[tokio::test]
async fn sii_json_and_raw() {
    let bus = SharedBus::reference();
    let (out, r) = bus.run(&["--json", "sii", "-p", "6"]).await;
    r.expect("sii --json succeeds");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["station"], 0x1007);
    assert_eq!(v["header"]["identity"]["product_code"], 0x1B81_3052u32);
    assert_eq!(v["sync_managers"][2]["start"], 0x1100);
    assert_eq!(v["sync_managers"][3]["length"], 8);
    assert_eq!(v["name"], "EL7041 1K. Schrittmotor-Endstufe (50V, 5A)");

    let (out, r) = bus.run(&["sii", "-p", "1", "--raw"]).await;
    r.expect("sii --raw succeeds");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("terminal 1 (0x1002): "),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "  0000: 0104 0000 0000 000f 0000 0000 0000 00d8");
    assert_eq!(lines[2], "  0008: 0002 0000 3052 07d4 0000 0010 0000 0000");
}

#[tokio::test]
async fn sii_of_a_blank_image_file_is_an_error() {
    let (_, r) = ferrocat(&["sii", "--file", &eeprom("empty-eeprom.bin")]).await;
    let e = r.unwrap_err();
    assert_eq!(e.exit, Exit::DataErr);
    assert!(e.message.contains("blank SII"), "{}", e.message);
    let (out, r) = ferrocat(&["sii", "--file", &eeprom("akd-null-strings.bin")]).await;
    r.expect("a damaged image decodes with warnings");
    assert!(
        out.contains("  Warning:     implausible category header at word 0x0145"),
        "{out}"
    );
    assert!(out.contains("  TxPDO 0x1b01"), "{out}");
}

#[tokio::test]
async fn sii_of_an_endless_or_missing_file_is_an_error() {
    // A stream that never ends is refused after 128 KiB, not read until memory runs out.
    let (_, r) = ferrocat(&["sii", "--file", "/dev/zero"]).await;
    let e = r.unwrap_err();
    assert_eq!(e.exit, Exit::DataErr);
    assert_eq!(
        e.message,
        "/dev/zero is larger than an SII EEPROM (131072 bytes at most)"
    );
    let missing = format!("{}/no-such-image.bin", env!("CARGO_MANIFEST_DIR"));
    let (_, r) = ferrocat(&["sii", "--file", &missing]).await;
    let e = r.unwrap_err();
    assert_eq!(e.exit, Exit::NoInput);
    assert!(
        e.message.starts_with(&format!("cannot read {missing}: ")),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn pdos_from_coe_and_from_the_sii() {
    let bus = SharedBus::reference();
    let (out, r) = bus.run(&["pdos", "-p", "6"]).await;
    r.expect("pdos succeeds");
    assert!(
        out.starts_with(
            "Terminal 6 (0x1007) EL7041 1K. Schrittmotor-Endstufe (50V, 5A): PDOs from CoE\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("  SM2 outputs: 64 bit (8 bytes)\n    RxPDO 0x1600"),
        "{out}"
    );
    assert!(
        out.contains("    RxPDO 0x1604 16 bit\n      0x7010:21  16 bit\n"),
        "{out}"
    );
    assert!(
        out.contains("  SM3 inputs: 64 bit (8 bytes)\n    TxPDO 0x1a00"),
        "{out}"
    );
    assert!(out.contains("      0x0000:00   4 bit (gap)"), "{out}");

    let (out, r) = bus.run(&["pdos", "-p", "1"]).await;
    r.expect("pdos succeeds");
    assert!(
        out.contains("PDOs from SII (the terminal has no CoE mailbox)"),
        "{out}"
    );
    assert!(out.contains("  SM0 outputs: 4 bit (1 bytes)"), "{out}");
    // The SII names its PDOs and entries.
    assert!(
        out.contains(
            "    RxPDO 0x1600 \"Channel 1\" 1 bit\n      0x7000:01   1 bit BOOL     \"Output\"\n"
        ),
        "{out}"
    );

    let (out, r) = bus.run(&["--json", "pdos", "-p", "4"]).await;
    r.expect("pdos --json succeeds");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(v["layout"]["source"], "Coe");
    // The EL3164's 0x1C00 lists SM2 as outputs without PDOs, then SM3 inputs.
    let sms = v["layout"]["sync_managers"].as_array().expect("array");
    assert_eq!(sms.len(), 2);
    assert_eq!(
        (&sms[0]["sync_manager"], &sms[0]["direction"]),
        (&2.into(), &"Rx".into())
    );
    assert_eq!(sms[0]["pdos"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        (&sms[1]["sync_manager"], &sms[1]["direction"]),
        (&3.into(), &"Tx".into())
    );
    assert!(!sms[1]["pdos"].as_array().expect("pdos").is_empty());
}

#[tokio::test]
async fn sdos_lists_the_dictionary() {
    let (out, r) = ferrocat(&["sdos", "-p", "6", "--values"]).await;
    r.expect("sdos succeeds");
    assert!(out.contains("0x1018 RECORD \"Identity\"\n"), "{out}");
    let product = out
        .lines()
        .find(|l| l.starts_with("  0x1018:02 "))
        .expect("0x1018:02 listed");
    assert!(product.contains(" 32 bit "), "{product}");
    assert!(product.ends_with("= 461451346"), "{product}");
    let name = out
        .lines()
        .find(|l| l.starts_with("  0x1008:00 "))
        .expect("device name listed");
    assert!(name.ends_with("= EL7041"), "{name}");
    assert!(out.contains("0x1c12 "), "{out}");
}

#[tokio::test]
async fn upload_and_download_typed_values() {
    let bus = SharedBus::reference();
    let (out, r) = bus
        .run(&["upload", "-p", "6", "0x1018", "2", "--type", "u32"])
        .await;
    r.expect("upload succeeds");
    assert_eq!(out, "461451346\n");
    let (out, r) = bus.run(&["upload", "-p", "6", "0x1008", "0"]).await;
    r.expect("upload with the type from SDO information");
    assert_eq!(out, "EL7041\n");

    let (out, r) = bus
        .run(&[
            "--json", "download", "-p", "6", "0x8010", "1", "1400", "--type", "u16",
        ])
        .await;
    r.expect("download succeeds");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(
        (v["index"].as_u64(), v["len"].as_u64()),
        (Some(0x8010), Some(2))
    );
    let (out, r) = bus
        .run(&[
            "--json", "upload", "-p", "6", "0x8010", "1", "--type", "u16",
        ])
        .await;
    r.expect("upload succeeds");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(v["value"], "1400");
    assert_eq!(v["hex"], "7805");

    let (out, r) = bus
        .run(&["upload", "-p", "6", "0x1c12", "0", "--complete"])
        .await;
    r.expect("complete access");
    assert!(out.trim_end().ends_with("001602160416"), "{out}");
}

#[tokio::test]
async fn upload_and_download_accept_index_colon_subindex() {
    let bus = SharedBus::reference();
    let (out, r) = bus.run(&["upload", "-p", "6", "0x1018:2"]).await;
    r.expect("upload 0x1018:2");
    assert_eq!(out, "461451346\n");
    let (_, r) = bus
        .run(&["download", "-p", "6", "0x8010:1", "1250", "--type", "u16"])
        .await;
    r.expect("download 0x8010:1");
    let (out, r) = bus
        .run(&["upload", "-p", "6", "0x8010:01", "-t", "u16"])
        .await;
    r.expect("upload 0x8010:01");
    assert_eq!(out, "1250\n");

    for (args, what) in [
        (&["upload", "-p", "6", "0x1018"][..], "no subindex"),
        (
            &["upload", "-p", "6", "0x1018:2", "2"][..],
            "subindex twice",
        ),
        (&["upload", "-p", "6", "0x1018:"][..], "empty subindex"),
        (
            &["upload", "-p", "6", "0x1018:256"][..],
            "subindex over 8 bits",
        ),
        (&["upload", "-p", "6", ":2"][..], "empty index"),
        (
            &["download", "-p", "6", "0x8010:1", "1", "1250"][..],
            "subindex twice",
        ),
        (
            &["download", "-p", "6", "0x8010", "1250"][..],
            "no subindex",
        ),
    ] {
        let (_, r) = bus.run(args).await;
        let e = r.expect_err(what);
        assert_eq!(e.exit, Exit::Usage, "{what}: {}", e.message);
    }
}

#[tokio::test]
async fn transfer_errors_have_clear_messages_and_exit_codes() {
    let bus = SharedBus::reference();
    let (_, r) = bus.run(&["upload", "-p", "6", "0x5555", "0"]).await;
    let e = r.unwrap_err();
    assert_eq!(e.exit, Exit::NoInput);
    assert_eq!(
        e.message,
        "SDO 0x5555:00 on terminal 0x1007 aborted: 0x06020000 (The object does not exist in the object directory)"
    );
    let (_, r) = bus
        .run(&["download", "-p", "6", "0x1018", "1", "5", "--type", "u32"])
        .await;
    let e = r.unwrap_err();
    assert_eq!(e.exit, Exit::Protocol);
    assert!(
        e.message.contains("Attempt to write a read only object"),
        "{}",
        e.message
    );
    let (_, r) = bus
        .run(&[
            "download", "-p", "6", "0x8010", "1", "70000", "--type", "u16",
        ])
        .await;
    let e = r.unwrap_err();
    assert_eq!(e.exit, Exit::DataErr);
    assert!(
        e.message.contains("\"70000\" is not a valid u16"),
        "{}",
        e.message
    );
    let (_, r) = bus
        .run(&["upload", "-p", "6", "0x1018", "2", "--type", "u128"])
        .await;
    assert_eq!(r.unwrap_err().exit, Exit::Usage);
    let (_, r) = bus.run(&["upload", "-p", "1", "0x1000", "0"]).await;
    let e = r.unwrap_err();
    assert_eq!(e.exit, Exit::Unavailable);
    assert_eq!(
        e.message,
        "terminal 1 (0x1002) has no mailbox, so no CoE (its SII describes none)"
    );
    let (_, r) = bus.run(&["upload", "0x1000", "0"]).await;
    assert_eq!(r.unwrap_err().exit, Exit::Usage, "several terminals match");
}

#[tokio::test]
async fn sii_alias_and_serial_are_written() {
    let bus = SharedBus::reference();
    let (out, r) = bus
        .run(&[
            "sii",
            "-p",
            "2",
            "--set-alias",
            "0x1234",
            "--set-serial",
            "0xDEADBEEF",
        ])
        .await;
    r.expect("writes succeed");
    assert_eq!(
        out,
        "terminal 2 (0x1003): alias set to 0x1234 (header checksum recomputed); it takes effect after a power cycle\n\
         terminal 2 (0x1003): serial number set to 3735928559 (0xdeadbeef)\n"
    );
    let (out, r) = bus.run(&["--json", "sii", "-p", "2"]).await;
    r.expect("sii --json succeeds");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(v["header"]["station_alias"], 0x1234);
    assert_eq!(v["header"]["checksum_ok"], true);
    assert_eq!(v["header"]["identity"]["serial"], 0xDEAD_BEEFu32);
    assert_eq!(v["header"]["identity"]["product_code"], 0x0B0C_3052u32);
    let (_, r) = bus.run(&["sii", "--set-alias", "1"]).await;
    assert_eq!(
        r.unwrap_err().exit,
        Exit::Usage,
        "one terminal must be selected"
    );
}

#[test]
fn coe_subcommands_teach_with_examples() {
    use clap::CommandFactory;
    let mut cmd = ferrocat::cli::Cli::command();
    for name in ["sii", "pdos", "sdos", "upload", "download"] {
        let sub = cmd.find_subcommand_mut(name).expect(name);
        let help = sub.render_long_help().to_string();
        assert!(help.contains("Examples:"), "{name} --help:\n{help}");
        assert!(
            help.contains(&format!("ferrocat -i eth1 {name}")),
            "{name} --help:\n{help}"
        );
    }
}

/// EK1100 + EL7041 whose dictionary has a 2 KiB read-write buffer at 0x2100:00.
fn bus_with_buffer(dir: &Path) -> SharedBus {
    let data = format!("{}/../../shared/testdata", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(format!("{data}/sdo/el7041.json")).expect("json");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("json");
    json["objects"]["2100:00"] = serde_json::Value::String("00".repeat(2048));
    let dict = dir.join("el7041-buffer.json");
    std::fs::write(&dict, json.to_string()).expect("write dictionary");
    let toml = format!(
        "[[terminal]]\neeprom = {:?}\n\n[[terminal]]\neeprom = {:?}\ndictionary = {:?}\n",
        format!("{data}/eeprom/ek1100.bin"),
        format!("{data}/eeprom/el7041.bin"),
        dict
    );
    let topo = Topology::parse(&toml, Path::new("buffer.toml"), Path::new("/")).expect("topology");
    let segment = ferrocat_sim::serve::build_segment(topo.build().expect("build"));
    SharedBus(Arc::new(Mutex::new(Bus::new(
        segment,
        SimClock::monotonic(),
    ))))
}

/// tshark dissects every captured frame as EtherCAT (and its mailbox as CoE) and flags
/// nothing as malformed or worth a warning.
fn tshark_clean(path: &Path) -> usize {
    let run = |filter: &str| {
        let out = std::process::Command::new("tshark")
            .args(["-n", "-r"])
            .arg(path)
            .args(["-Y", filter])
            .output()
            .expect("tshark runs (install it with scripts/setup.sh)");
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run("_ws.malformed || _ws.expert.severity >= warning"), "");
    run("ecat_mailbox.coe").lines().count()
}

#[tokio::test]
async fn segmented_transfers_captured_pass_tshark() {
    let dir = std::env::temp_dir().join(format!("ferrocat-coe-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bus = bus_with_buffer(&dir);
    let value: String = (0..2048u32)
        .map(|i| format!("{:02x}", (i * 13 % 256) as u8))
        .collect();
    let down = dir.join("download.pcapng");
    let (_, r) = bus
        .run(&[
            "--capture",
            down.to_str().expect("path"),
            "download",
            "-p",
            "1",
            "0x2100",
            "0",
            &value,
            "--type",
            "hex",
        ])
        .await;
    r.expect("2 KiB download");
    let up = dir.join("upload.pcapng");
    let (out, r) = bus
        .run(&[
            "--capture",
            up.to_str().expect("path"),
            "upload",
            "-p",
            "1",
            "0x2100",
            "0",
            "--type",
            "hex",
        ])
        .await;
    r.expect("2 KiB upload");
    assert_eq!(out.trim(), value);
    // 2048 bytes in a 128-byte mailbox: an initiate and 17 segments each way, each
    // request and reply seen twice (sent and received) in the capture.
    assert!(tshark_clean(&down) >= 18 * 2, "CoE frames of the download");
    assert!(tshark_clean(&up) >= 18 * 2, "CoE frames of the upload");
    std::fs::remove_dir_all(&dir).ok();
}
