//! `ferrocat-sim up` / `down` end to end: namespace, veth pair, background server that
//! answers a BRD from every terminal, clear errors, and cleanup also after a crash.
//!
//! Needs root (namespaces, veth, AF_PACKET, XDP): fails, does not skip, without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrocat-sim"))
        .args(args)
        .output()
        .expect("run ferrocat-sim")
}

/// Takes the bus down when the test ends, also on panic.
struct Bus(String);

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = sim(&["down", "--name", &self.0]);
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn up_answers_then_down_removes_everything_even_after_a_crash() {
    let topology = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/sim/reference.toml");
    let topology = topology.to_str().expect("utf-8 path");
    // Unique per process (tests of other crates may bring up buses at the same time).
    let name = format!("fcsu{}x0", std::process::id() % 100_000);
    let bus = Bus(name.clone());

    // A generous start-up timeout: `up` returns as soon as the bus answers.
    let up = sim(&["up", "--name", &name, "--timeout", "60", topology]);
    assert!(up.status.success(), "up: {}", text(&up));
    assert!(
        String::from_utf8_lossy(&up.stdout).contains("7 terminals answer"),
        "all seven terminals answer the BRD: {}",
        text(&up)
    );
    assert!(
        Path::new("/sys/class/net").join(&name).exists(),
        "master interface"
    );
    assert!(Path::new("/run/netns").join(&name).exists(), "namespace");
    let pid_file = Path::new("/run/ferrocat-sim").join(&name).join("pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");

    // Fault injection at run time: with the link down nothing answers, back up it does.
    let f = sim(&["fault", "--name", &name, "link", "down"]);
    assert!(f.status.success(), "fault: {}", text(&f));
    assert!(
        String::from_utf8_lossy(&f.stdout).contains("link_down: true"),
        "{}",
        text(&f)
    );
    let wkc = ferrocat_sim::netns::wait_for_bus(&name, Duration::from_millis(600)).expect("probe");
    assert_eq!(wkc, None, "no answer with the link down");
    let f = sim(&["fault", "--name", &name, "link", "up"]);
    assert!(f.status.success(), "fault: {}", text(&f));
    let wkc = ferrocat_sim::netns::wait_for_bus(&name, Duration::from_secs(30)).expect("probe");
    assert_eq!(wkc, Some(7), "all seven answer again");
    let f = sim(&["fault", "--name", &name, "drop", "1.5"]);
    assert!(!f.status.success());
    assert!(
        String::from_utf8_lossy(&f.stderr).contains("not within 0..1"),
        "{}",
        text(&f)
    );

    // The name is taken now.
    let again = sim(&["up", "--name", &name, topology]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        text(&again)
    );

    // A crash: the server dies without cleaning up; down still removes everything.
    // SAFETY: kill(2) on the pid of the server this test started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let down = sim(&["down", "--name", &name]);
    assert!(down.status.success(), "down: {}", text(&down));
    assert!(
        !Path::new("/sys/class/net").join(&name).exists(),
        "veth removed"
    );
    assert!(
        !Path::new("/run/netns").join(&name).exists(),
        "namespace removed"
    );
    assert!(!pid_file.exists(), "run directory removed");
    // Idempotent.
    let down = sim(&["down", "--name", &name]);
    assert!(down.status.success(), "second down: {}", text(&down));
    drop(bus);
}

#[test]
fn bad_topology_and_missing_interface_give_clear_errors() {
    let dir = std::env::temp_dir().join(format!("ferrocat-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[terminal]]\neeprom = \"x.bin\"\ncolour = \"red\"\n").expect("write");
    // Unique per process, so a concurrent run cannot make "nothing created" fail.
    let name = format!("fcsb{}x0", std::process::id() % 100_000);
    let o = sim(&["up", "--name", &name, bad.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("colour") && err.contains("line 3"), "{err}");
    assert!(
        !Path::new("/run/netns").join(&name).exists(),
        "nothing created"
    );
    assert!(
        !Path::new("/sys/class/net").join(&name).exists(),
        "nothing created"
    );
    // A misspelt wire-time key is named with its line.
    std::fs::write(
        &bad,
        "[[terminal]]\neeprom = \"x.bin\"\n\n[wire_time]\nforward_delay = 300\n",
    )
    .expect("write");
    let o = sim(&["up", "--name", &name, bad.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("forward_delay") && err.contains("line 5"),
        "{err}"
    );
    assert!(
        !Path::new("/run/netns").join(&name).exists(),
        "nothing created"
    );

    let topology = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/sim/reference.toml");
    let o = sim(&[
        "serve",
        "--interface",
        "fcs-nonexist",
        topology.to_str().expect("utf-8"),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("\"fcs-nonexist\" does not exist"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
