//! The `ferrocat` command-line tool: global options, subcommand registry, exit codes.
//!
//! Every subcommand lives in its own file here with a `clap::Args` struct and an
//! `async fn run(args, &mut Context) -> Result<(), CliError>`; it is registered with one
//! line in the [`subcommands!`] list below (plus its `mod` line).

use clap::{Parser, Subcommand};
use std::fmt;
use std::io::Write;
use std::process::ExitCode;

/// Declares the subcommands: `Variant(path::Args) => path::run,` per subcommand. The doc
/// comment on each line becomes the subcommand's one-line help.
macro_rules! subcommands {
    ($( $(#[$meta:meta])* $variant:ident($args:ty) => $run:path, )*) => {
        /// A subcommand of `ferrocat`.
        #[derive(Debug, Subcommand)]
        pub enum Command {
            $( $(#[$meta])* $variant($args), )*
        }

        impl Command {
            /// Run the subcommand.
            pub async fn run(self, ctx: &mut Context) -> Result<(), CliError> {
                let _ = &ctx;
                match self {
                    $( Command::$variant(args) => $run(args, ctx).await, )*
                }
            }
        }
    };
}

// One `mod` line per subcommand file, e.g. `pub mod slaves;`.

subcommands! {
    // One line per subcommand, e.g.:
    // /// List the terminals on the bus.
    // Slaves(slaves::Args) => slaves::run,
}

/// `ferrocat`: an EtherCAT master for Linux.
#[derive(Debug, Parser)]
#[command(
    name = "ferrocat",
    version,
    about = "An EtherCAT master for Linux: scan a bus, inspect and configure terminals.",
    after_help = "Examples:\n  ferrocat -i eth1 slaves            list the terminals on eth1\n  ferrocat -i eth1 slaves --json     the same, one JSON object per line\n  ferrocat -i eth1 reg read -p 0 0x0130 2   AL status of the first terminal\n\nThe interface can also be given as FERROCAT_INTERFACE. Run `ferrocat help SUBCOMMAND`\nfor each subcommand's options and examples."
)]
pub struct Cli {
    /// Options every subcommand understands.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand understands.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Network interface the EtherCAT bus is connected to (e.g. eth1).
    #[arg(
        short = 'i',
        long,
        global = true,
        env = "FERROCAT_INTERFACE",
        value_name = "IFACE"
    )]
    pub interface: Option<String>,
    /// Print machine-readable JSON (one object per line) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log bring-up steps (repeat for more detail: -v info, -vv debug, -vvv trace).
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Exit codes, following BSD sysexits.h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// EX_USAGE (64): the command was used incorrectly.
    Usage = 64,
    /// EX_DATAERR (65): input data was incorrect (e.g. a value that does not parse).
    DataErr = 65,
    /// EX_NOINPUT (66): an input file did not exist or was not readable.
    NoInput = 66,
    /// EX_UNAVAILABLE (69): a service (the bus, a terminal) is unavailable.
    Unavailable = 69,
    /// EX_SOFTWARE (70): an internal error.
    Software = 70,
    /// EX_OSERR (71): an operating-system error (e.g. socket creation failed).
    OsErr = 71,
    /// EX_CANTCREAT (73): an output file cannot be created.
    CantCreate = 73,
    /// EX_IOERR (74): an error while doing I/O.
    IoErr = 74,
    /// EX_TEMPFAIL (75): a temporary failure (timeout); retrying may help.
    TempFail = 75,
    /// EX_PROTOCOL (76): the remote side answered something the protocol forbids.
    Protocol = 76,
    /// EX_NOPERM (77): insufficient permission (raw sockets need CAP_NET_RAW).
    NoPerm = 77,
    /// EX_CONFIG (78): a configuration error.
    Config = 78,
}

/// An error a subcommand ends with: a message for the user and an exit code.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong, in words a user can act on.
    pub message: String,
}

impl CliError {
    /// An error with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError {
            exit,
            message: message.into(),
        }
    }

    /// A usage error (exit 64).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(Exit::Usage, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        let exit = match e.kind() {
            std::io::ErrorKind::PermissionDenied => Exit::NoPerm,
            std::io::ErrorKind::NotFound => Exit::NoInput,
            std::io::ErrorKind::TimedOut => Exit::TempFail,
            _ => Exit::IoErr,
        };
        CliError::new(exit, e.to_string())
    }
}

/// What a subcommand runs with: the global options and where its output goes.
pub struct Context {
    /// Options every subcommand understands.
    pub global: GlobalArgs,
    out: Box<dyn Write + Send>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("global", &self.global)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context writing to `out`.
    pub fn new(global: GlobalArgs, out: Box<dyn Write + Send>) -> Context {
        Context { global, out }
    }

    /// Where the subcommand writes its normal output (stdout in the binary).
    pub fn out(&mut self) -> &mut dyn Write {
        &mut *self.out
    }

    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.global.json
    }

    /// The interface given with `-i`, or a usage error naming the option.
    pub fn interface(&self) -> Result<&str, CliError> {
        self.global.interface.as_deref().ok_or_else(|| {
            CliError::usage("no interface given: pass -i IFACE (or set FERROCAT_INTERFACE)")
        })
    }
}

/// Parse `args` (including the program name) and run the subcommand, writing to `out`.
/// Returns the process exit code; errors are printed to stderr as `ferrocat: ...`.
pub async fn run_with<I, S>(args: I, out: Box<dyn Write + Send>) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(Exit::Usage as u8)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.global.verbose);
    let mut ctx = Context::new(cli.global, out);
    match cli.command.run(&mut ctx).await {
        Ok(()) => {
            let _ = ctx.out().flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = ctx.out().flush();
            eprintln!("ferrocat: {e}");
            ExitCode::from(e.exit as u8)
        }
    }
}

/// Log to stderr at a level chosen by `-v` (or `RUST_LOG`); a no-op when a subscriber is
/// already installed (tests run several commands in one process).
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
