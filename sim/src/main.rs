//! The `ferrocat-sim` command-line tool: serve a simulated bus on an interface, or bring
//! one up behind a veth pair in its own network namespace and take it down again.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferrocat_sim::{netns, serve, topology::Topology};

/// A virtual EtherCAT segment of emulated terminals.
#[derive(Debug, Parser)]
#[command(name = "ferrocat-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the bus TOPOLOGY describes on an existing interface (runs until SIGINT/SIGTERM).
    Serve {
        /// The interface the master's frames arrive on.
        #[arg(long)]
        interface: String,
        /// The topology file (see docs/sim.md).
        topology: PathBuf,
        /// A Unix socket path on which to accept fault-injection commands.
        #[arg(long)]
        control: Option<PathBuf>,
    },
    /// Create namespace NAME with a veth pair (master end: interface NAME here), serve the
    /// bus inside it in the background, and return once it answers.
    Up {
        /// Name of the namespace and of the master's interface.
        #[arg(long)]
        name: String,
        /// The topology file.
        topology: PathBuf,
        /// Seconds to wait for the bus to answer.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Stop the bus NAME and remove its namespace and veth pair (idempotent, works after a crash).
    Down {
        /// Name given to `up`.
        #[arg(long)]
        name: String,
    },
    /// Switch fault injection of a running bus: `drop RATIO`, `corrupt RATIO [POSITION]`,
    /// `delay RATIO MICROSECONDS`, `link down|up`, `silent POSITION|none`,
    /// `power-cycle POSITION`, `fall-back POSITION init|preop|safeop CODE`, `clear`, `show`.
    Fault {
        /// Name given to `up`.
        #[arg(long, conflicts_with = "control")]
        name: Option<String>,
        /// The control socket given to `serve --control`.
        #[arg(long)]
        control: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocat-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve {
            interface,
            topology,
            control,
        } => {
            let topo = Topology::load(&topology).map_err(|e| e.to_string())?;
            let bus = topo.build().map_err(|e| e.to_string())?;
            serve::interface_index(&interface).map_err(|e| e.to_string())?;
            let stop = Arc::new(AtomicBool::new(false));
            install_signal_handlers(&stop);
            let names: Vec<String> = bus.terminals.iter().map(|t| t.name.clone()).collect();
            let processor = std::cell::RefCell::new(serve::bus_processor(bus));
            if let Some(path) = &control {
                serve::spawn_control(path, processor.borrow().faults())
                    .map_err(|e| e.to_string())?;
            }
            tracing::info!(interface, terminals = ?names, "serving");
            let stats = serve::serve(
                &interface,
                &stop,
                |frame, t| processor.borrow_mut().process(frame, t),
                |now| processor.borrow_mut().idle(now),
            )
            .map_err(|e| e.to_string())?;
            tracing::info!(?stats, "stopped");
            Ok(())
        }
        Command::Up {
            name,
            topology,
            timeout,
        } => {
            // Check the topology here so that errors show up at once, not in a log.
            let topo = Topology::load(&topology).map_err(|e| e.to_string())?;
            topo.build().map_err(|e| e.to_string())?;
            let topology = std::fs::canonicalize(&topology)
                .map_err(|e| format!("{}: {e}", topology.display()))?;
            let exe =
                std::env::current_exe().map_err(|e| format!("finding own executable: {e}"))?;
            netns::create(&name).map_err(|e| e.to_string())?;
            let result = (|| {
                let pid = netns::spawn_server(&name, &exe, &topology).map_err(|e| e.to_string())?;
                match netns::wait_for_bus(&name, Duration::from_secs(timeout))
                    .map_err(|e| e.to_string())?
                {
                    Some(wkc) => {
                        println!(
                            "bus {name} is up: interface {name}, server pid {pid}, {wkc} terminals answer"
                        );
                        Ok(())
                    }
                    None => Err(netns::NetnsError::NoAnswer {
                        name: name.clone(),
                        seconds: timeout,
                        log: kept_log(&name).display().to_string(),
                    }
                    .to_string()),
                }
            })();
            if result.is_err() {
                // Keep the log for the user (down removes the run directory), remove the
                // rest.
                let log =
                    std::fs::read_to_string(netns::run_dir(&name).join("log")).unwrap_or_default();
                if let Err(e) = std::fs::write(kept_log(&name), &log) {
                    eprintln!(
                        "cannot keep the server log in {}: {e}",
                        kept_log(&name).display()
                    );
                }
                let _ = netns::down(&name);
                if !log.trim().is_empty() {
                    eprintln!("server log:\n{}", log.trim_end());
                }
            }
            result
        }
        Command::Fault {
            name,
            control,
            command,
        } => {
            let path = match (name, control) {
                (Some(n), _) => netns::run_dir(&n).join("control"),
                (None, Some(p)) => p,
                (None, None) => return Err("give --name NAME or --control PATH".to_string()),
            };
            let settings = serve::send_control(&path, &command.join(" "))?;
            println!("{settings}");
            Ok(())
        }
        Command::Down { name } => {
            netns::down(&name).map_err(|e| e.to_string())?;
            println!("bus {name} is down");
            Ok(())
        }
    }
}

static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(s) = STOP.get() {
        s.store(true, Ordering::Relaxed);
    }
}

fn install_signal_handlers(stop: &Arc<AtomicBool>) {
    let _ = STOP.set(stop.clone());
    // SAFETY: the handler only performs an atomic store.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Where `up` keeps the server's log of bus `name` when the bus did not come up.
fn kept_log(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ferrocat-sim-{name}.log"))
}
