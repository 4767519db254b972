//! A veth pair for the tests that serve a bus on a network interface (needs root).

use std::process::Command;
use std::sync::atomic::Ordering;

/// A veth pair in this namespace, removed on drop (also when the test panics).
pub struct Veth {
    /// The master's end.
    pub master: String,
}

impl Veth {
    /// Creates a uniquely named pair and brings both ends up; returns it and the name of
    /// the simulator's end.
    pub fn new() -> (Self, String) {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let pid = std::process::id() % 100_000;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 100;
        let master = format!("fcsm{pid}x{n}");
        let sim = format!("fcss{pid}x{n}");
        let ok = Command::new("ip")
            .args(["link", "add", &master, "type", "veth", "peer", "name", &sim])
            .status()
            .expect("run ip");
        assert!(
            ok.success(),
            "creating veth pair {master}/{sim} (needs root)"
        );
        let guard = Self {
            master: master.clone(),
        };
        for i in [&master, &sim] {
            assert!(
                Command::new("ip")
                    .args(["link", "set", i, "up"])
                    .status()
                    .expect("ip")
                    .success()
            );
        }
        (guard, sim)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.master])
            .status();
    }
}
