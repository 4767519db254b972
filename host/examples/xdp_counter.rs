//! The seed's first XDP example: count every packet arriving on an interface. The
//! counter is one variable, incremented by the eBPF program and read by this process
//! while the program runs.
//!
//! Usage: `xdp_counter IFACE [--generic]` (needs root: CAP_BPF and CAP_NET_ADMIN).

use ferrocat::xdp::{XDP_PASS, Xdp, XdpMode, xdp_program};
use ferrocat_plugin_api::ebpf;
use std::time::Duration;

xdp_program! {
    /// Counts packets.
    pub struct Counter {
        /// Packets seen.
        pub count: global(u64),
    }
    fn program(&self, b) {
        ebpf! { b =>
            count += 1;
            b.exit(XDP_PASS);
        }
    }
}

/// `--generic` selects generic XDP (works on every interface).
#[allow(dead_code)]
fn mode() -> XdpMode {
    match std::env::args().any(|a| a == "--generic") {
        true => XdpMode::Generic,
        false => XdpMode::Native,
    }
}

/// Runs the example; errors are printed as the user-facing message they carry.
#[allow(dead_code)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let iface = std::env::args().nth(1).unwrap_or_else(|| "eth0".into());
    let c = Xdp::<Counter>::new()?.with_mode(mode());
    let _running = c.run(&iface)?;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        println!("number of packets: {}", c.count.get()?);
    }
    Ok(())
}
