//! A hash map (the seed's dictionaries): count packets per ether type. The program adds
//! atomically under the packet's ether type, inserting the key on first sight; the host
//! iterates the entries.
//!
//! Usage: `xdp_hash IFACE [--generic]`.

use ferrocat::xdp::{XDP_PASS, Xdp, XdpMode, xdp_program};
use ferrocat_plugin_api::fragment::{ScalarType, VarType};
use std::time::Duration;

xdp_program! {
    /// Counts packets per ether type.
    pub struct PerEtherType {
        /// Ether type → packets seen.
        pub counts: hash_map(u16, u64, 1024),
    }
    fn program(&self, b) {
        let ether_type = b.packet(12, VarType::be(ScalarType::U16));
        self.counts.add(b, ether_type, 1u32);
        b.exit(XDP_PASS);
    }
}

/// Runs the example; errors are printed as the user-facing message they carry.
#[allow(dead_code)]
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let iface = std::env::args().nth(1).unwrap_or_else(|| "eth0".into());
    let mode = match std::env::args().any(|a| a == "--generic") {
        true => XdpMode::Generic,
        false => XdpMode::Native,
    };
    let c = Xdp::<PerEtherType>::new()?.with_mode(mode);
    let _running = c.run(&iface)?;
    std::thread::sleep(Duration::from_secs(1));
    for (ether_type, n) in c.counts.entries()? {
        println!("{ether_type:#06x}: {n}");
    }
    Ok(())
}
