//! The seed's packet-access example: read the ether type (a big-endian u16 at byte 12)
//! and count IPv4 and IPv6 packets separately, with if / else-if. Packets shorter than
//! the fields the program reads (14 bytes here) are passed without running it: the
//! length check the verifier demands is generated from the fields used.
//!
//! Usage: `xdp_ether_types IFACE [--generic]`.

use ferrocat::xdp::{XDP_PASS, Xdp, XdpMode, xdp_program};
use ferrocat_plugin_api::ebpf;
use ferrocat_plugin_api::fragment::{ScalarType, VarType};
use std::time::Duration;

/// `ETH_P_IP` (include/uapi/linux/if_ether.h).
pub const ETH_P_IP: u32 = 0x0800;
/// `ETH_P_IPV6` (include/uapi/linux/if_ether.h).
pub const ETH_P_IPV6: u32 = 0x86dd;

xdp_program! {
    /// Counts IPv4 and IPv6 packets.
    pub struct EtherTypes {
        /// IPv4 packets seen.
        pub ipv4: global(u64),
        /// IPv6 packets seen.
        pub ipv6: global(u64),
    }
    fn program(&self, b) {
        let ether_type = b.packet(12, VarType::be(ScalarType::U16));
        ebpf! { b =>
            if ether_type == ETH_P_IP {
                ipv4 += 1;
            } else if ether_type == ETH_P_IPV6 {
                ipv6 += 1;
            }
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
    let c = Xdp::<EtherTypes>::new()?.with_mode(mode);
    let _running = c.run(&iface)?;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        println!("IPv4: {}  IPv6: {}", c.ipv4.get()?, c.ipv6.get()?);
    }
    Ok(())
}
