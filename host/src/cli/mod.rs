//! The `ferrocat` command-line tool: global options, subcommand registry, exit codes.
//!
//! Every subcommand lives in its own file here with a `clap::Args` struct and an
//! `async fn run(args, &mut Context) -> Result<(), CliError>`; it is registered with one
//! line in the [`subcommands!`] list below (plus its `mod` line).

use crate::ethercat::al::AlError;
use crate::ethercat::capture::{FrameSink, PcapngSink, SharedSink};
use crate::ethercat::master::{Master, MasterError, ScanOptions, Terminal};
use crate::ethercat::station_io::{RegisterError, StationIoError};
use crate::ethercat::transport::{Link, RawSocketLink, Transport, TransportConfig, TransportError};
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

// One `mod` line per subcommand file.
pub mod capture;
pub mod diag;
pub mod disasm;
pub mod pdos;
pub mod reg;
pub mod sdos;
pub mod sii;
pub mod slaves;
pub mod states;
pub mod transfer;
pub mod xdp;

subcommands! {
    /// List the terminals: position, address, alias, state, identity, name.
    Slaves(slaves::Args) => slaves::run,
    /// Request an AL state (INIT, PREOP, BOOT, SAFEOP, OP).
    States(states::Args) => states::run,
    /// Read or write ESC registers (typed values, by address or name).
    Reg(reg::Args) => reg::run,
    /// ESC error counters and DL status per port.
    Diag(diag::Args) => diag::run,
    /// Record the frames of a bring-up as pcapng.
    Capture(capture::Args) => capture::run,
    /// Show a terminal's SII EEPROM decoded or raw; write alias or serial number.
    Sii(sii::Args) => sii::run,
    /// Show the PDO assignment and mapping of terminals (CoE or SII).
    Pdos(pdos::Args) => pdos::run,
    /// List a terminal's object dictionary via SDO information.
    Sdos(sdos::Args) => sdos::run,
    /// Read one CoE object entry (SDO upload) as a typed value.
    Upload(transfer::UploadArgs) => transfer::upload,
    /// Write one CoE object entry (SDO download) from a typed value.
    Download(transfer::DownloadArgs) => transfer::download,
    /// Disassemble a fragment file or raw eBPF instruction bytes.
    Disasm(disasm::Args) => disasm::run,
    /// Show or detach the XDP program of an interface (generic XDP programs).
    Xdp(xdp::Args) => xdp::run,
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
    /// Record every frame this run sends and receives into FILE (pcapng).
    #[arg(long, global = true, value_name = "FILE")]
    pub capture: Option<std::path::PathBuf>,
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
    /// 141 (128 + SIGPIPE): whoever read the output closed it early (`ferrocat slaves |
    /// head -1`). Nothing is printed, as for a C tool that SIGPIPE ended.
    BrokenPipe = 141,
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
            // Not an error to report: the reader of stdout has gone.
            std::io::ErrorKind::BrokenPipe => return CliError::new(Exit::BrokenPipe, ""),
            std::io::ErrorKind::PermissionDenied => Exit::NoPerm,
            std::io::ErrorKind::NotFound => Exit::NoInput,
            std::io::ErrorKind::TimedOut => Exit::TempFail,
            _ => Exit::IoErr,
        };
        CliError::new(exit, e.to_string())
    }
}

/// Opens the link for an interface name; the binary opens a raw socket, tests an
/// in-process simulated bus.
pub type LinkOpener = Box<dyn Fn(&str) -> std::io::Result<Box<dyn Link>> + Send>;

/// What a subcommand runs with: the global options, where its output goes, and the bus
/// (opened and scanned on first use).
pub struct Context {
    /// Options every subcommand understands.
    pub global: GlobalArgs,
    out: Box<dyn Write + Send>,
    opener: LinkOpener,
    transport: Option<Transport>,
    master: Option<Master>,
    capture: Option<SharedSink<PcapngSink<std::io::BufWriter<std::fs::File>>>>,
    capture_path: Option<std::path::PathBuf>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("global", &self.global)
            .finish_non_exhaustive()
    }
}

fn open_raw_socket(interface: &str) -> std::io::Result<Box<dyn Link>> {
    Ok(Box::new(RawSocketLink::open(interface)?))
}

impl Context {
    /// A context writing to `out` and opening raw sockets.
    pub fn new(global: GlobalArgs, out: Box<dyn Write + Send>) -> Context {
        Context::with_opener(global, out, Box::new(open_raw_socket))
    }

    /// A context writing to `out` and opening links with `opener`.
    pub fn with_opener(
        global: GlobalArgs,
        out: Box<dyn Write + Send>,
        opener: LinkOpener,
    ) -> Context {
        Context {
            global,
            out,
            opener,
            transport: None,
            master: None,
            capture: None,
            capture_path: None,
        }
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

    /// Record every frame of this run into `path` as pcapng. Must be called before the
    /// bus is first used.
    pub fn capture_to(&mut self, path: &std::path::Path) -> Result<(), CliError> {
        if self.transport.is_some() {
            return Err(CliError::new(
                Exit::Software,
                "capture requested after the bus was opened",
            ));
        }
        let file = std::fs::File::create(path).map_err(|e| {
            CliError::new(
                Exit::CantCreate,
                format!("cannot create {}: {e}", path.display()),
            )
        })?;
        let iface = self.global.interface.clone().unwrap_or_default();
        let sink = PcapngSink::new(std::io::BufWriter::new(file), &iface).map_err(|e| {
            CliError::new(Exit::IoErr, format!("cannot write {}: {e}", path.display()))
        })?;
        self.capture = Some(SharedSink::new(sink));
        self.capture_path = Some(path.to_owned());
        Ok(())
    }

    /// Number of frames captured so far.
    pub fn captured_frames(&self) -> u64 {
        self.capture
            .as_ref()
            .and_then(|c| c.with(|s| s.frames()))
            .unwrap_or(0)
    }

    /// Flush the capture file, if any.
    pub fn finish_capture(&mut self) -> Result<(), CliError> {
        let Some(sink) = self.capture.take() else {
            return Ok(());
        };
        self.transport = None;
        self.master = None;
        let path = self.capture_path.take().unwrap_or_default();
        let Some(inner) = sink.take() else {
            return Ok(());
        };
        inner.finish().map_err(|e| {
            CliError::new(Exit::IoErr, format!("cannot write {}: {e}", path.display()))
        })?;
        Ok(())
    }

    /// The transport to the bus, opened on first use.
    pub async fn transport(&mut self) -> Result<Transport, CliError> {
        if let Some(t) = &self.transport {
            return Ok(t.clone());
        }
        let interface = self.interface()?.to_owned();
        let link = (self.opener)(&interface).map_err(CliError::from)?;
        let config = TransportConfig {
            capture: self
                .capture
                .as_ref()
                .map(|c| Box::new(c.clone()) as Box<dyn FrameSink>),
            ..TransportConfig::default()
        };
        let t = Transport::spawn(link, config);
        self.transport = Some(t.clone());
        Ok(t)
    }

    /// The bus, scanned on first use: station addresses assigned, ESC information, DL
    /// status, topology, SII and AL status read. No AL state is changed.
    pub async fn master(&mut self) -> Result<&mut Master, CliError> {
        if self.master.is_none() {
            let transport = self.transport().await?;
            let m = Master::scan(transport, &ScanOptions::default()).await?;
            self.master = Some(m);
        }
        self.master
            .as_mut()
            .ok_or_else(|| CliError::new(Exit::Software, "bus scan lost"))
    }

    /// The bus, scanned without reading the SII (faster, for register access).
    pub async fn master_without_sii(&mut self) -> Result<&mut Master, CliError> {
        if self.master.is_none() {
            let transport = self.transport().await?;
            let m = Master::scan(transport, &ScanOptions { read_sii: false }).await?;
            self.master = Some(m);
        }
        self.master
            .as_mut()
            .ok_or_else(|| CliError::new(Exit::Software, "bus scan lost"))
    }
}

/// Selects one terminal: by position, station address or alias.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TerminalSelector {
    /// Terminal position on the bus (0 is the first).
    #[arg(short = 'p', long, value_name = "POS", conflicts_with_all = ["station", "alias"])]
    pub position: Option<u16>,
    /// Configured station address (e.g. 0x1001).
    #[arg(short = 's', long, value_name = "ADDR", value_parser = parse_u16, conflicts_with = "alias")]
    pub station: Option<u16>,
    /// Station alias (register 0x0012).
    #[arg(short = 'a', long, value_name = "ALIAS", value_parser = parse_u16)]
    pub alias: Option<u16>,
}

impl TerminalSelector {
    /// Whether any terminal was selected.
    pub fn is_set(&self) -> bool {
        self.position.is_some() || self.station.is_some() || self.alias.is_some()
    }

    /// The selected terminals of `master` (all when nothing was selected), or an error
    /// naming what matched nothing.
    pub fn select<'m>(&self, master: &'m Master) -> Result<Vec<&'m Terminal>, CliError> {
        let all = master.terminals();
        let chosen: Vec<&Terminal> = all
            .iter()
            .filter(|t| {
                self.position.is_none_or(|p| t.position == p)
                    && self.station.is_none_or(|s| t.station == s)
                    && self.alias.is_none_or(|a| t.alias == a)
            })
            .collect();
        if chosen.is_empty() {
            let what = if let Some(p) = self.position {
                format!("position {p}")
            } else if let Some(s) = self.station {
                format!("station address 0x{s:04x}")
            } else {
                format!("alias {}", self.alias.unwrap_or(0))
            };
            return Err(CliError::new(
                Exit::NoInput,
                format!(
                    "no terminal at {what} (the bus has {} terminals)",
                    all.len()
                ),
            ));
        }
        Ok(chosen)
    }

    /// Position and station address of each selected terminal (all when nothing was
    /// selected), for subcommands that talk to them after borrowing the master ends.
    pub fn addresses(&self, master: &Master) -> Result<Vec<(u16, u16)>, CliError> {
        Ok(self
            .select(master)?
            .iter()
            .map(|t| (t.position, t.station))
            .collect())
    }

    /// Exactly one terminal: the selected one, or an error if none or several match.
    pub fn one<'m>(&self, master: &'m Master) -> Result<&'m Terminal, CliError> {
        let chosen = self.select(master)?;
        match chosen.as_slice() {
            [one] => Ok(one),
            _ => Err(CliError::usage(format!(
                "{} terminals match; select one with -p POS, -s ADDR or -a ALIAS",
                chosen.len()
            ))),
        }
    }
}

/// Parse a number given in decimal or with a 0x prefix in hexadecimal.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        t.parse()
    };
    r.map_err(|e| format!("{s:?} is not a number (decimal or 0x-hex): {e}"))
}

/// Parse a 16-bit number, decimal or 0x-hex.
pub fn parse_u16(s: &str) -> Result<u16, String> {
    let v = parse_u64(s)?;
    u16::try_from(v).map_err(|_| format!("{s} does not fit 16 bits"))
}

impl From<MasterError> for CliError {
    fn from(e: MasterError) -> CliError {
        let exit = match &e {
            MasterError::NoTerminals => Exit::Unavailable,
            MasterError::Transport { source, .. } => transport_exit(source),
            MasterError::Al(AlError::Timeout { .. }) => Exit::TempFail,
            MasterError::Al(AlError::WatchdogTooLong(_)) => Exit::Config,
            MasterError::Al(AlError::Register(r)) | MasterError::Register(r) => register_exit(r),
            MasterError::Al(_) | MasterError::Topology(_) | MasterError::Changed(_) => {
                Exit::Protocol
            }
            MasterError::Pdo(_) | MasterError::ProcessImage(_) => Exit::Protocol,
            MasterError::Hook { .. } => Exit::Software,
            MasterError::Sync(_) => Exit::Config,
            MasterError::SyncStart(_) => Exit::TempFail,
            MasterError::BootNotOffered { .. } => Exit::Unavailable,
        };
        CliError::new(exit, e.to_string())
    }
}

impl From<TransportError> for CliError {
    fn from(e: TransportError) -> CliError {
        CliError::new(transport_exit(&e), e.to_string())
    }
}

impl From<AlError> for CliError {
    fn from(e: AlError) -> CliError {
        MasterError::Al(e).into()
    }
}

impl From<RegisterError> for CliError {
    fn from(e: RegisterError) -> CliError {
        CliError::new(register_exit(&e), e.to_string())
    }
}

fn transport_exit(e: &TransportError) -> Exit {
    match e {
        TransportError::Timeout { .. } => Exit::TempFail,
        TransportError::WorkingCounter { .. } => Exit::Protocol,
        TransportError::Link(_) | TransportError::Closed => Exit::IoErr,
        TransportError::Wire(_) | TransportError::NopFirst => Exit::Software,
    }
}

fn register_exit(e: &RegisterError) -> Exit {
    match e {
        RegisterError::WorkingCounter(_) => Exit::Protocol,
        RegisterError::Io(StationIoError::Timeout { .. }) => Exit::TempFail,
        RegisterError::Io(StationIoError::OutOfRange { .. }) => Exit::Usage,
        RegisterError::Io(_) => Exit::IoErr,
    }
}

/// Parse `args` (including the program name) and run the subcommand, writing to `out`.
/// Returns the process exit code; errors are printed to stderr as `ferrocat: ...`.
pub async fn run_with<I, S>(args: I, out: Box<dyn Write + Send>) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    run_with_opener(args, out, Box::new(open_raw_socket)).await
}

/// [`run_with`], opening links with `opener` (tests pass an in-process bus).
pub async fn run_with_opener<I, S>(
    args: I,
    out: Box<dyn Write + Send>,
    opener: LinkOpener,
) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    match execute(args, out, opener).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                print_error(&format!("ferrocat: {e}\n"));
            }
            ExitCode::from(e.exit as u8)
        }
    }
}

/// Parse `args` and run the subcommand, writing its output to `out`; the error carries
/// the exit code and the message `ferrocat` prints. `--help` and `--version` print to
/// stdout and succeed; a command-line error is printed as clap words it, prefixed
/// `ferrocat: `, and returned with an empty message and exit code 64.
pub async fn execute<I, S>(
    args: I,
    out: Box<dyn Write + Send>,
    opener: LinkOpener,
) -> Result<(), CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // clap's message with ferrocat's prefix instead of its `error: `.
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            print_error(&format!("ferrocat: {text}"));
            return Err(CliError::new(Exit::Usage, ""));
        }
        Err(e) => {
            // --help and --version, to stdout.
            let _ = e.print();
            return Ok(());
        }
    };
    init_logging(cli.global.verbose);
    let capture = cli.global.capture.clone();
    let mut ctx = Context::with_opener(cli.global, out, opener);
    let result = match capture {
        Some(path) => match ctx.capture_to(&path) {
            Ok(()) => cli.command.run(&mut ctx).await,
            Err(e) => Err(e),
        },
        None => cli.command.run(&mut ctx).await,
    };
    let result = match (result, ctx.finish_capture()) {
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    };
    let _ = ctx.out().flush();
    result
}

/// Writes `text` to stderr. Unlike `eprint!` it does not panic when stderr is a closed
/// pipe (`ferrocat ... 2>&1 | head -1`): there is nobody left to tell.
pub fn print_error(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
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
