//! A per-CPU counter: every CPU counts into its own copy, so the program needs no atomic
//! operation; the host reads the copies per CPU and their sum.
//!
//! Usage: `xdp_per_cpu IFACE [--generic]`.

use ferrocat::xdp::{XDP_PASS, Xdp, XdpMode, xdp_program};
use ferrocat_plugin_api::ebpf;
use std::time::Duration;

xdp_program! {
    /// Counts packets per CPU.
    pub struct PerCpuCounter {
        /// Entry 0: packets seen by each CPU.
        pub packets: per_cpu_array(u64, 1),
    }
    fn program(&self, b) {
        ebpf! { b =>
            self.packets.at(b, 0u32, |_, n| {
                n += 1;
            });
            b.exit(XDP_PASS);
        }
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
    let c = Xdp::<PerCpuCounter>::new()?.with_mode(mode);
    let _running = c.run(&iface)?;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        println!(
            "packets: {} (per CPU: {:?})",
            c.packets.sum(0)?,
            c.packets.per_cpu(0)?
        );
    }
    Ok(())
}
