//! The permanent form: one process attaches a packet counter, pins its maps (and the
//! link) under bpffs and exits, the program keeps running; later another process opens
//! the pinned maps, reads the counter, detaches the program and removes the pins.
//!
//! Usage:
//! - `xdp_permanent attach IFACE DIR [--generic]`: attach, pin under DIR (a new
//!   directory on a bpffs, e.g. `/sys/fs/bpf/my_maps`), exit.
//! - `xdp_permanent read DIR`: print `count N`.
//! - `xdp_permanent detach IFACE DIR`: print `count N`, detach, unpin.

use ferrocat::xdp::{XDP_PASS, Xdp, XdpMode, xdp_program};
use ferrocat_plugin_api::ebpf;

xdp_program! {
    /// Counts packets.
    pub struct Permanent {
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str, Box<dyn std::error::Error>> {
        args.get(i).map(String::as_str).ok_or_else(|| {
            "usage: xdp_permanent attach IFACE DIR | read DIR | detach IFACE DIR".into()
        })
    };
    match arg(0)? {
        "attach" => {
            let mode = match args.iter().any(|a| a == "--generic") {
                true => XdpMode::Generic,
                false => XdpMode::Native,
            };
            let program = Xdp::<Permanent>::new()?.with_mode(mode);
            program.attach(arg(1)?)?;
            let dir = program.pin_maps(arg(2)?)?;
            println!("attached to {}, maps pinned in {}", arg(1)?, dir.display());
        }
        "read" => {
            let program = Xdp::<Permanent>::load_maps(arg(1)?)?;
            println!("count {}", program.count.get()?);
        }
        "detach" => {
            let program = Xdp::<Permanent>::load_maps(arg(2)?)?;
            println!("count {}", program.count.get()?);
            program.detach(arg(1)?)?;
            program.unpin_maps()?;
        }
        other => return Err(format!("unknown command {other:?}").into()),
    }
    Ok(())
}
