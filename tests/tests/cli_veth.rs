//! The `ferrocat` program over a veth pair: every subcommand of the data layer and the
//! register tools, run as its own process through a real AF_PACKET socket against
//! ferrocat-sim serving the reference bus (configs/sim/reference.toml), with the values
//! checked against the test data the simulator was built from (the EEPROM images and
//! the EL7041's recorded dictionary), not against what ferrocat printed before.
//!
//! Needs root: fails, does not skip, without.

use ferrocat_tests::{ProgramOutput, SimBus, project_dir, run_output, testdata_dir};
use serde_json::Value;

/// Runs the `ferrocat` program on `iface` with `args`; returns exit code, stdout, stderr.
fn ferrocat(iface: &str, args: &[&str]) -> ProgramOutput {
    let mut all = vec!["-i", iface];
    all.extend_from_slice(args);
    run_output(env!("CARGO_BIN_EXE_ferrocat-cli"), &all)
}

/// Runs `ferrocat --json ARGS`, asserts success and parses one object per line.
fn json(iface: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = ferrocat(iface, &all);
    assert_eq!(code, Some(0), "ferrocat {args:?} failed: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A little-endian u32 of an EEPROM image at SII word `word` (ETG.1000.6 table 16).
fn eeprom_u32(name: &str, word: usize) -> u32 {
    let path = testdata_dir().join(format!("eeprom/{name}.bin"));
    let image = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let b = &image[word * 2..word * 2 + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Lower-case hex of `bytes`.
fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The EL7041's recorded value of `key` ("INDEX:SUB") as bytes.
fn recorded_el7041(key: &str) -> Vec<u8> {
    let path = testdata_dir().join("sdo/el7041.json");
    let text = std::fs::read_to_string(&path).expect("el7041.json");
    let all: Value = serde_json::from_str(&text).expect("JSON");
    let hex = all["objects"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} not recorded"));
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn every_subcommand_over_a_real_socket() {
    let bus = SimBus::from_topology("cli", &project_dir().join("configs/sim/reference.toml"));
    let iface = bus.interface();

    // sii: the identity as the image holds it (words 8..0xF).
    let sii = json(iface, &["sii", "-p", "1"]);
    assert_eq!(sii.len(), 1, "{sii:?}");
    let id = &sii[0]["header"]["identity"];
    assert_eq!(id["vendor_id"], eeprom_u32("el2004", 0x08));
    assert_eq!(id["product_code"], eeprom_u32("el2004", 0x0A));
    assert_eq!(id["revision"], eeprom_u32("el2004", 0x0C));
    assert_eq!(sii[0]["name"], "EL2004 4K. Dig. Ausgang 24V, 0.5A");
    assert_eq!(sii[0]["header"]["checksum_ok"], true);
    // The raw image read over the bus is the file the simulator was given, byte for
    // byte, up to and including the end marker of its category list (word 195).
    let raw = json(iface, &["sii", "-p", "1", "--raw"]);
    let image = std::fs::read(testdata_dir().join("eeprom/el2004.bin")).expect("image");
    let hex = raw[0]["hex"].as_str().expect("hex");
    let end = 2 * (195 + 1);
    assert_eq!(&image[end - 2..end], [0xff, 0xff], "end marker in the file");
    assert!(hex.len() >= 2 * end, "{} bytes read", hex.len() / 2);
    assert_eq!(
        hex,
        to_hex(&image[..hex.len() / 2]),
        "SII image over the bus"
    );

    // pdos: the EL2004 has no mailbox; its four 1-bit RxPDOs come from the SII.
    let pdos = json(iface, &["pdos", "-p", "1"]);
    let sms = pdos[0]["layout"]["sync_managers"]
        .as_array()
        .expect("sync managers");
    assert_eq!(sms.len(), 1, "{pdos:?}");
    let indices: Vec<u64> = sms[0]["pdos"]
        .as_array()
        .expect("pdos")
        .iter()
        .map(|p| p["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(indices, [0x1600, 0x1601, 0x1602, 0x1603]);
    assert!(
        pdos[0]["layout"]["source"]["Sii"].is_object(),
        "layout from the SII: {pdos:?}"
    );

    // sdos: the EL7041's dictionary through SDO information, with the identity object.
    let sdos = json(iface, &["sdos", "-p", "6"]);
    let identity = sdos
        .iter()
        .find(|o| o["index"] == 0x1018)
        .unwrap_or_else(|| panic!("0x1018 listed: {} objects", sdos.len()));
    assert_eq!(identity["object_code"], "RECORD");
    assert_eq!(identity["name"], "Identity");
    assert!(sdos.len() > 20, "{} objects", sdos.len());

    // upload: the recorded product code and device name.
    let (code, out, err) = ferrocat(iface, &["upload", "-p", "6", "0x1018:2"]);
    assert_eq!(code, Some(0), "upload: {err}");
    let product = u32::from_le_bytes(recorded_el7041("1018:02").try_into().expect("4 bytes"));
    assert_eq!(out.trim(), product.to_string());
    let name = json(iface, &["upload", "-p", "6", "0x1008:0"]);
    assert_eq!(
        name[0]["value"].as_str().map(str::as_bytes),
        Some(recorded_el7041("1008:00").as_slice()),
        "{name:?}"
    );

    // download then upload: the terminal keeps the value (a u16 setting of the EL7041).
    let before = u16::from_le_bytes(recorded_el7041("8010:01").try_into().expect("2 bytes"));
    let new = before.wrapping_add(111).to_string();
    let (code, _, err) = ferrocat(
        iface,
        &["download", "-p", "6", "0x8010:1", "-t", "u16", &new],
    );
    assert_eq!(code, Some(0), "download: {err}");
    let (code, out, err) = ferrocat(iface, &["upload", "-p", "6", "0x8010:1", "-t", "u16"]);
    assert_eq!(code, Some(0), "upload: {err}");
    assert_eq!(out.trim(), new);
    // A missing object is EX_NOINPUT with the abort's text.
    let (code, _, err) = ferrocat(iface, &["upload", "-p", "6", "0x5fff:0"]);
    assert_eq!(code, Some(66), "{err}");
    assert!(err.contains("0x06020000"), "abort code named: {err}");

    // reg read / write: station addresses as the scan assigned them, a RAM byte written.
    let addr = json(iface, &["reg", "read", "-p", "2", "STATION_ADDRESS"]);
    assert_eq!(addr[0]["bytes"], serde_json::json!([0x03, 0x10]));
    let (code, _, err) = ferrocat(
        iface,
        &["reg", "write", "-p", "2", "0x0f80", "0x5a", "-t", "u8"],
    );
    assert_eq!(code, Some(0), "reg write: {err}");
    let ram = json(iface, &["reg", "read", "-p", "2", "0x0f80", "1"]);
    assert_eq!(ram[0]["bytes"], serde_json::json!([0x5a]));
    let all = json(iface, &["reg", "read", "--broadcast", "TYPE"]);
    assert_eq!(all.len(), 1, "{all:?}");

    // diag: the line topology, port 0 open on every terminal, port 1 closed at the end.
    let diag = json(iface, &["diag"]);
    assert_eq!(diag.len(), bus.terminals(), "{diag:?}");
    for (p, t) in diag.iter().enumerate() {
        assert_eq!(t["position"], p);
        assert_eq!(t["ports"][0]["link"], true, "{t}");
        assert_eq!(t["ports"][0]["communication"], true, "{t}");
    }
    assert_eq!(
        diag[bus.terminals() - 1]["ports"][1]["communication"],
        false
    );

    // The CoE subcommands brought the bus to PRE-OP (docs/cli.md); `states` of one
    // terminal takes it back to INIT, which the next process's scan sees.
    let slaves = json(iface, &["slaves"]);
    assert!(slaves.iter().all(|t| t["state"] == "PREOP"), "{slaves:?}");
    let (code, _, err) = ferrocat(iface, &["states", "-p", "1", "INIT"]);
    assert_eq!(code, Some(0), "states: {err}");
    let slaves = json(iface, &["slaves"]);
    let states: Vec<&str> = slaves
        .iter()
        .map(|t| t["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        states,
        ["PREOP", "INIT", "PREOP", "PREOP", "PREOP", "PREOP", "PREOP"]
    );
}

#[test]
fn a_silent_terminal_is_an_error_with_its_exit_code() {
    let bus = SimBus::from_topology(
        "clisilent",
        &project_dir().join("configs/sim/reference.toml"),
    );
    let iface = bus.interface();
    bus.fault("silent 6");
    // A terminal that stopped answering is not counted: the selection matches nothing.
    let (code, _, err) = ferrocat(iface, &["upload", "-p", "6", "0x1018:2"]);
    assert_eq!(code, Some(66), "{err}");
    assert_eq!(
        err.trim_end(),
        "ferrocat: no terminal at position 6 (the bus has 6 terminals)"
    );
    bus.fault("clear");
    let (code, _, err) = ferrocat(iface, &["upload", "-p", "6", "0x1018:2"]);
    assert_eq!(code, Some(0), "after the fault is cleared: {err}");
}
