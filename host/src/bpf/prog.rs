//! eBPF programs: loading with the verifier log, test runs and run statistics.
//!
//! [`Program::load`] hands instructions to the verifier. On success it returns the
//! program with the verifier's figures ([`VerifierStats`]: processed instructions, peak
//! states); on rejection a [`LoadError::Rejected`] whose `Display` shows the verifier's
//! message, the failing instruction with the disassembly around it and the fragment it
//! came from (given a [`SourceMap`]), and the verifier log.

use std::ffi::CString;
use std::fmt;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use ferrocat_plugin_api::ebpf::disasm;
use ferrocat_plugin_api::ebpf::insn::{self, RawInsn};

use super::sys::{self, IdKind, Kernel, ProgLoad, SysError, TestRunIo};

/// Program types ferrocat loads (`enum bpf_prog_type`, include/uapi/linux/bpf.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgType {
    /// `BPF_PROG_TYPE_SOCKET_FILTER`
    SocketFilter,
    /// `BPF_PROG_TYPE_SCHED_CLS` (tc classifier)
    SchedCls,
    /// `BPF_PROG_TYPE_XDP`
    Xdp,
}

impl ProgType {
    /// The kernel's number for the type.
    pub const fn number(self) -> u32 {
        match self {
            ProgType::SocketFilter => 1,
            ProgType::SchedCls => 3,
            ProgType::Xdp => 6,
        }
    }

    /// The `expected_attach_type` given at load (`BPF_XDP` = 37 for XDP programs, so
    /// they can be attached through `BPF_LINK_CREATE`).
    const fn expected_attach_type(self) -> u32 {
        match self {
            ProgType::Xdp => BPF_XDP,
            _ => 0,
        }
    }
}

/// `BPF_XDP`, the attach type of XDP programs and links (`enum bpf_attach_type`).
pub const BPF_XDP: u32 = 37;

/// XDP verdicts (`enum xdp_action`, include/uapi/linux/bpf.h).
pub mod xdp_action {
    /// Drop the frame and count an error (`XDP_ABORTED`).
    pub const ABORTED: u32 = 0;
    /// Drop the frame (`XDP_DROP`).
    pub const DROP: u32 = 1;
    /// Pass the frame to the network stack (`XDP_PASS`).
    pub const PASS: u32 = 2;
    /// Send the frame back out of the interface it came in on (`XDP_TX`).
    pub const TX: u32 = 3;
    /// Redirect the frame (`XDP_REDIRECT`).
    pub const REDIRECT: u32 = 4;
}

// Verifier log levels (include/linux/bpf_verifier.h, `BPF_LOG_*`).
/// Log every instruction the verifier walks and the states at branches.
const BPF_LOG_LEVEL1: u32 = 1;
/// Log only the final statistics (`processed N insns ...`).
const BPF_LOG_STATS: u32 = 4;

/// Log buffer for the statistics-only load.
const STATS_LOG_SIZE: usize = 64 * 1024;
/// First log buffer for the full log of a rejected program.
const FULL_LOG_SIZE: usize = 1024 * 1024;
/// Largest log buffer ferrocat offers; beyond it the log's tail is kept (the kernel's
/// rotating log keeps the end, where the error is).
const MAX_LOG_SIZE: usize = 256 * 1024 * 1024;
/// Lines of the verifier log an error message shows (its end, where the verdict is).
const LOG_LINES_SHOWN: usize = 60;
/// Instructions of context shown before and after a failing one.
const CONTEXT_SLOTS: usize = 6;

/// Which fragment each slot range of a program came from, to name it in verifier errors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceMap {
    ranges: Vec<(Range<usize>, String)>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Records that `slots` of the program came from the fragment `name`.
    pub fn push(&mut self, slots: Range<usize>, name: impl Into<String>) {
        self.ranges.push((slots, name.into()));
    }

    /// The fragment holding `slot` and its slot range, if any.
    pub fn fragment_at(&self, slot: usize) -> Option<(&str, Range<usize>)> {
        self.ranges
            .iter()
            .find(|(r, _)| r.contains(&slot))
            .map(|(r, n)| (n.as_str(), r.clone()))
    }
}

/// A function showing slots `from..to` of a program, one instruction per line, each
/// line starting with its slot number (as [`disasm::listing_range`] does).
pub type Disassembler = fn(&[RawInsn], usize, usize) -> String;

/// How to load a program.
#[derive(Clone, Debug)]
pub struct LoadOptions<'a> {
    /// Program type.
    pub prog_type: ProgType,
    /// Name shown by bpftool and in errors (the kernel keeps 15 bytes of
    /// `[A-Za-z0-9_.]`).
    pub name: &'a str,
    /// License; GPL-only helpers need a GPL-compatible one.
    pub license: &'a str,
    /// Which fragment each slot came from, for errors.
    pub source_map: Option<&'a SourceMap>,
    /// Disassembler for errors ([`disasm::listing_range`] if `None`).
    pub disassembler: Option<Disassembler>,
}

impl<'a> LoadOptions<'a> {
    /// Options for an XDP program named `name`, GPL license, no source map.
    pub fn xdp(name: &'a str) -> LoadOptions<'a> {
        LoadOptions {
            prog_type: ProgType::Xdp,
            name,
            license: "GPL",
            source_map: None,
            disassembler: None,
        }
    }

    /// The same options with a source map.
    pub fn with_source_map(mut self, map: &'a SourceMap) -> LoadOptions<'a> {
        self.source_map = Some(map);
        self
    }
}

/// The verifier's figures for an accepted program (the last lines of its log).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifierStats {
    /// Instructions the verifier processed (`processed N insns`), summed over all paths.
    pub processed_insns: u64,
    /// The verifier's limit on processed instructions.
    pub insn_limit: u64,
    /// Largest number of states kept for one instruction.
    pub max_states_per_insn: u64,
    /// States created in total.
    pub total_states: u64,
    /// Most states alive at once.
    pub peak_states: u64,
    /// Verification time in microseconds, if the kernel printed it.
    pub verification_time_us: Option<u64>,
    /// Stack depth of each subprogram in bytes, if the kernel printed it.
    pub stack_depth: Vec<u32>,
}

impl VerifierStats {
    /// Parses the statistics lines of a verifier log; `None` if there are none.
    pub fn parse(log: &str) -> Option<VerifierStats> {
        let line = log.lines().rev().find(|l| l.starts_with("processed "))?;
        let mut stats = VerifierStats::default();
        let words: Vec<&str> = line.split_whitespace().collect();
        let number_after = |key: &str| -> Option<u64> {
            let i = words
                .iter()
                .position(|w| w.trim_start_matches('(') == key)?;
            words.get(i + 1)?.trim_end_matches(')').parse().ok()
        };
        stats.processed_insns = words.get(1)?.parse().ok()?;
        stats.insn_limit = number_after("limit").unwrap_or(0);
        stats.max_states_per_insn = number_after("max_states_per_insn").unwrap_or(0);
        stats.total_states = number_after("total_states").unwrap_or(0);
        stats.peak_states = number_after("peak_states").unwrap_or(0);
        for l in log.lines() {
            if let Some(rest) = l.strip_prefix("verification time ") {
                stats.verification_time_us =
                    rest.split_whitespace().next().and_then(|n| n.parse().ok());
            }
            if let Some(rest) = l.strip_prefix("stack depth ") {
                stats.stack_depth = rest
                    .split('+')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect();
            }
        }
        Some(stats)
    }
}

impl fmt::Display for VerifierStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "processed {} insns (limit {}), peak states {}, total states {}",
            self.processed_insns, self.insn_limit, self.peak_states, self.total_states
        )
    }
}

/// A program the verifier rejected: its log and where it failed.
#[derive(Debug)]
pub struct VerifierError {
    /// The program's name.
    pub program: String,
    /// The load's error (`EACCES` or `EINVAL` for a rejection).
    pub error: SysError,
    /// The verifier's complete log (its tail, if it was longer than ferrocat's largest
    /// buffer: see `truncated`).
    pub log: String,
    /// The log is the tail of a longer log.
    pub truncated: bool,
    /// The verifier's complaint: the log lines after the last instruction it walked.
    pub message: String,
    /// Slot of the failing instruction, if the log names one.
    pub failing_insn: Option<usize>,
    /// The fragment the failing instruction belongs to and its slot range.
    pub fragment: Option<(String, Range<usize>)>,
    /// Disassembly around the failing instruction, the failing one marked with `>`.
    pub listing: String,
}

impl fmt::Display for VerifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the verifier rejected program `{}` ({}): {}",
            self.program,
            self.error,
            self.message.trim()
        )?;
        match (self.failing_insn, &self.fragment) {
            (Some(slot), Some((name, range))) => write!(
                f,
                "\nat instruction {slot}, in fragment `{name}` (slots {}..{}):",
                range.start, range.end
            )?,
            (Some(slot), None) => write!(f, "\nat instruction {slot}:")?,
            (None, _) => {}
        }
        if !self.listing.is_empty() {
            write!(f, "\n{}", self.listing.trim_end())?;
        }
        let lines: Vec<&str> = self.log.trim_end().lines().collect();
        let shown = lines.len().saturating_sub(LOG_LINES_SHOWN);
        let tail = if self.truncated { " (tail)" } else { "" };
        write!(f, "\nverifier log{tail}:")?;
        if shown > 0 {
            write!(
                f,
                "\n... {shown} earlier lines (the whole log is in VerifierError::log)"
            )?;
        }
        for line in &lines[shown..] {
            write!(f, "\n{line}")?;
        }
        Ok(())
    }
}

/// Why a program could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The verifier refused the program.
    #[error("{0}")]
    Rejected(Box<VerifierError>),
    /// The load failed before verification (no permission, too many instructions,
    /// program type not supported ...), with no verifier log.
    #[error(
        "loading program `{program}` failed: {error}{}",
        permission_hint(error)
    )]
    Sys {
        /// The program's name.
        program: String,
        /// The kernel's error.
        error: SysError,
    },
    /// There were no instructions.
    #[error("program `{0}` has no instructions")]
    Empty(String),
}

/// A hint naming the capability a failed call needs, if the kernel said `EPERM`.
pub(crate) fn permission_hint(e: &SysError) -> &'static str {
    match e.errno() {
        Some(libc::EPERM) => {
            " (bpf(2) needs CAP_BPF, plus CAP_NET_ADMIN for XDP and CAP_PERFMON for \
             pointer arithmetic, or CAP_SYS_ADMIN; run as root or grant them)"
        }
        _ => "",
    }
}

/// A program loaded into the kernel. Closing its last descriptor (and detaching it
/// everywhere) unloads it.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    kernel: Arc<dyn Kernel>,
    name: String,
    stats: Option<VerifierStats>,
}

/// Result of one [`Program::test_run`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (the XDP verdict for XDP programs).
    pub retval: u32,
    /// The packet as the program left it.
    pub data: Vec<u8>,
    /// Mean duration of one run in nanoseconds, as the kernel measured it.
    pub duration_ns: u32,
}

/// Identity and run statistics of a loaded program (`struct bpf_prog_info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgInfo {
    /// Program type number.
    pub prog_type: u32,
    /// Kernel-wide program id.
    pub id: u32,
    /// The kernel's hash of the instructions.
    pub tag: [u8; 8],
    /// Name (up to 15 bytes).
    pub name: String,
    /// Instructions after the verifier's rewriting, in bytes.
    pub xlated_len: u32,
    /// JIT-compiled size in bytes.
    pub jited_len: u32,
    /// Total time spent in the program while statistics were enabled, in ns.
    pub run_time_ns: u64,
    /// Number of runs while statistics were enabled.
    pub run_cnt: u64,
    /// Instructions the verifier processed.
    pub verified_insns: u32,
}

// Offsets in `struct bpf_prog_info` (include/uapi/linux/bpf.h; run_time_ns/run_cnt
// verified at 192/200 on the target kernel).
mod prog_info {
    pub(super) const TYPE: usize = 0;
    pub(super) const ID: usize = 4;
    pub(super) const TAG: usize = 8;
    pub(super) const JITED_LEN: usize = 16;
    pub(super) const XLATED_LEN: usize = 20;
    pub(super) const NAME: usize = 64;
    pub(super) const RUN_TIME_NS: usize = 192;
    pub(super) const RUN_CNT: usize = 200;
    pub(super) const VERIFIED_INSNS: usize = 216;
    pub(super) const SIZE: usize = 232;
}

pub(crate) fn get_u32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

pub(crate) fn get_u64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

pub(crate) fn get_name(b: &[u8], off: usize) -> String {
    let raw = b.get(off..off + 16).unwrap_or(&[]);
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

impl Program {
    /// Loads an XDP program named `name`.
    pub fn load_xdp(name: &str, slots: &[RawInsn]) -> Result<Program, LoadError> {
        Program::load(slots, &LoadOptions::xdp(name))
    }

    /// Loads `slots` into the kernel of this thread ([`sys::current`]).
    ///
    /// The verifier runs once with statistics only; if it rejects the program, it runs
    /// again with the full log (growing the buffer while the kernel says `ENOSPC`) to
    /// build the annotated error.
    pub fn load(slots: &[RawInsn], opts: &LoadOptions<'_>) -> Result<Program, LoadError> {
        Program::load_with(sys::current(), slots, opts)
    }

    /// Loads `slots` through `kernel`.
    pub fn load_with(
        kernel: Arc<dyn Kernel>,
        slots: &[RawInsn],
        opts: &LoadOptions<'_>,
    ) -> Result<Program, LoadError> {
        if slots.is_empty() {
            return Err(LoadError::Empty(opts.name.to_string()));
        }
        let image = insn::to_bytes(slots);
        let license =
            CString::new(opts.license.replace('\0', "")).unwrap_or_else(|_| CString::from(c"GPL"));
        let mut attr = ProgLoad {
            prog_type: opts.prog_type.number(),
            expected_attach_type: opts.prog_type.expected_attach_type(),
            insns: &image,
            license: &license,
            name: opts.name,
            log_level: BPF_LOG_STATS,
        };
        let mut log = vec![0u8; STATS_LOG_SIZE];
        // The program with the verifier's figures from the log of the load that took it.
        let loaded = |fd: OwnedFd, kernel: Arc<dyn Kernel>, log: &[u8]| Program {
            fd,
            kernel,
            name: opts.name.to_string(),
            stats: VerifierStats::parse(&log_text(log)),
        };
        let first = kernel.prog_load(&attr, &mut log);
        let error = match first.fd {
            Ok(fd) => return Ok(loaded(fd, kernel, &log)),
            Err(e) => e,
        };
        // ENOSPC on the statistics load means even the statistics did not fit: only
        // possible with a tiny buffer; treat like any other failure and get the log.
        attr.log_level = BPF_LOG_LEVEL1 | BPF_LOG_STATS;
        let mut size = FULL_LOG_SIZE;
        let (error, log, truncated) = loop {
            let mut log = vec![0u8; size];
            let again = kernel.prog_load(&attr, &mut log);
            match again.fd {
                // Accepted the second time (the first failure was transient).
                Ok(fd) => return Ok(loaded(fd, kernel, &log)),
                Err(e) if e.errno() == Some(libc::ENOSPC) && size < MAX_LOG_SIZE => {
                    let wanted = again.log_true_size as usize + 1;
                    size = wanted.max(size * 2).min(MAX_LOG_SIZE);
                }
                Err(e) if e.errno() == Some(libc::ENOSPC) => break (error, log_text(&log), true),
                Err(e) => break (e, log_text(&log), false),
            }
        };
        if log.trim().is_empty() {
            return Err(LoadError::Sys {
                program: opts.name.to_string(),
                error,
            });
        }
        Err(LoadError::Rejected(Box::new(annotate(
            opts, slots, error, log, truncated,
        ))))
    }

    /// Wraps a descriptor of an already loaded program (from bpffs or an id).
    pub fn from_fd(fd: OwnedFd, name: impl Into<String>) -> Program {
        Program {
            fd,
            kernel: sys::current(),
            name: name.into(),
            stats: None,
        }
    }

    /// Opens the loaded program with kernel-wide id `id`.
    pub fn from_id(id: u32) -> Result<Program, SysError> {
        let kernel = sys::current();
        let fd = kernel.get_fd_by_id(IdKind::Prog, id)?;
        Ok(Program {
            fd,
            kernel,
            name: format!("prog#{id}"),
            stats: None,
        })
    }

    /// The program's name as given at load.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier's figures from the load (`None` for programs not loaded here, or if
    /// the kernel printed none).
    pub fn verifier_stats(&self) -> Option<&VerifierStats> {
        self.stats.as_ref()
    }

    /// The kernel this program lives in.
    pub fn kernel(&self) -> &Arc<dyn Kernel> {
        &self.kernel
    }

    /// Runs the program once on `packet` with `BPF_PROG_TEST_RUN`.
    pub fn test_run(&self, packet: &[u8]) -> Result<TestRun, SysError> {
        self.test_run_repeat(packet, 1)
    }

    /// Runs the program `repeat` times on `packet`; the duration is the mean per run.
    pub fn test_run_repeat(&self, packet: &[u8], repeat: u32) -> Result<TestRun, SysError> {
        // XDP may grow a frame by its headroom and up to a page at the tail.
        let mut out = vec![0u8; packet.len() + 4096];
        let mut io = TestRunIo {
            data_in: packet,
            data_out: &mut out,
            repeat,
            data_size_out: 0,
            retval: 0,
            duration_ns: 0,
        };
        self.kernel.prog_test_run(self.fd.as_fd(), &mut io)?;
        let (retval, duration_ns, len) = (io.retval, io.duration_ns, io.data_size_out as usize);
        out.truncate(len.min(out.len()));
        Ok(TestRun {
            retval,
            data: out,
            duration_ns,
        })
    }

    /// The program's id, type, name and run statistics.
    pub fn info(&self) -> Result<ProgInfo, SysError> {
        prog_info_of(&*self.kernel, self.fd.as_fd())
    }

    /// The kernel-wide program id.
    pub fn id(&self) -> Result<u32, SysError> {
        Ok(self.info()?.id)
    }
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Reads `struct bpf_prog_info` of a program descriptor.
pub fn prog_info_of(kernel: &dyn Kernel, fd: BorrowedFd<'_>) -> Result<ProgInfo, SysError> {
    let mut b = vec![0u8; prog_info::SIZE];
    kernel.obj_get_info(fd, &mut b)?;
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&b[prog_info::TAG..prog_info::TAG + 8]);
    Ok(ProgInfo {
        prog_type: get_u32(&b, prog_info::TYPE),
        id: get_u32(&b, prog_info::ID),
        tag,
        name: get_name(&b, prog_info::NAME),
        xlated_len: get_u32(&b, prog_info::XLATED_LEN),
        jited_len: get_u32(&b, prog_info::JITED_LEN),
        run_time_ns: get_u64(&b, prog_info::RUN_TIME_NS),
        run_cnt: get_u64(&b, prog_info::RUN_CNT),
        verified_insns: get_u32(&b, prog_info::VERIFIED_INSNS),
    })
}

fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The slot number of a verifier log line `N: (xx) ...`, the form in which the
/// verifier prints each instruction it walks.
fn insn_line_slot(line: &str) -> Option<usize> {
    let (num, rest) = line.split_once(": (")?;
    let code = rest.get(..3)?;
    if !code.ends_with(')') || !code[..2].chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    num.parse().ok()
}

/// The first `insn N` a message names (control-flow errors: `back-edge from insn 5 to
/// 3`, `unreachable insn 7`, `jump out of range from insn 1 to 10`).
fn insn_in_message(message: &str) -> Option<usize> {
    let mut rest = message;
    while let Some(i) = rest.find("insn ") {
        rest = &rest[i + 5..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(n) = digits.parse() {
            return Some(n);
        }
    }
    None
}

/// The statistics lines the verifier prints after its verdict.
fn is_stats_line(line: &str) -> bool {
    ["processed ", "verification time ", "stack depth "]
        .iter()
        .any(|p| line.starts_with(p))
}

/// Parses the failing instruction and the verifier's message out of a log: the last
/// `N: (xx) ...` line is the instruction the verifier was checking, the lines after it
/// (up to the statistics) are its complaint.
pub fn parse_failure(log: &str) -> (Option<usize>, String) {
    let lines: Vec<&str> = log.lines().collect();
    let stats = lines
        .iter()
        .rposition(|l| l.starts_with("processed "))
        .unwrap_or(lines.len());
    let body = &lines[..stats];
    let last_insn = body.iter().rposition(|l| insn_line_slot(l).is_some());
    let (slot, message_lines) = match last_insn {
        Some(i) => (body.get(i).and_then(|l| insn_line_slot(l)), &body[i + 1..]),
        None => (None, body),
    };
    let message: Vec<&str> = message_lines
        .iter()
        .copied()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';') && !is_stats_line(l))
        .collect();
    let message = if message.is_empty() {
        body.iter()
            .rev()
            .find(|l| !l.trim().is_empty() && !is_stats_line(l))
            .copied()
            .unwrap_or("")
            .to_string()
    } else {
        message.join("\n")
    };
    let slot = slot.or_else(|| insn_in_message(&message));
    (slot, message)
}

fn annotate(
    opts: &LoadOptions<'_>,
    slots: &[RawInsn],
    error: SysError,
    log: String,
    truncated: bool,
) -> VerifierError {
    let (failing_insn, message) = parse_failure(&log);
    let fragment = failing_insn.and_then(|s| {
        opts.source_map
            .and_then(|m| m.fragment_at(s))
            .map(|(n, r)| (n.to_string(), r))
    });
    let listing = match failing_insn {
        Some(slot) if slot < slots.len() => {
            let dis = opts.disassembler.unwrap_or(disasm::listing_range);
            let from = slot.saturating_sub(CONTEXT_SLOTS);
            let to = (slot + CONTEXT_SLOTS + 1).min(slots.len());
            mark_line(&dis(slots, from, to), slot, opts.source_map)
        }
        _ => String::new(),
    };
    VerifierError {
        program: opts.name.to_string(),
        error,
        log,
        truncated,
        message,
        failing_insn,
        fragment,
        listing,
    }
}

/// Indents a listing, marks the line of `slot` with `>` and notes where fragments
/// start.
fn mark_line(listing: &str, slot: usize, map: Option<&SourceMap>) -> String {
    let mut out = String::new();
    for line in listing.lines() {
        let n = line
            .split(':')
            .next()
            .and_then(|n| n.trim().parse::<usize>().ok());
        if let (Some(n), Some(map)) = (n, map)
            && let Some((name, range)) = map.fragment_at(n)
            && range.start == n
        {
            out.push_str(&format!("   ; fragment `{name}`\n"));
        }
        let marker = if n == Some(slot) { " > " } else { "   " };
        out.push_str(marker);
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The sysctl switching run statistics on for the whole system.
const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Kernel run statistics (`run_time_ns`, `run_cnt` of every program) stay enabled while
/// this guard lives (`BPF_ENABLE_STATS`). A program entered by `bpf_tail_call` records
/// none of its own: its time is booked to the caller.
#[derive(Debug)]
pub struct RunStats {
    _fd: OwnedFd,
}

/// `BPF_STATS_RUN_TIME` (`enum bpf_stats_type`).
const BPF_STATS_RUN_TIME: u32 = 0;

impl RunStats {
    /// Enables run statistics until the returned guard is dropped.
    pub fn enable() -> Result<RunStats, SysError> {
        let fd = sys::current().enable_stats(BPF_STATS_RUN_TIME)?;
        Ok(RunStats { _fd: fd })
    }

    /// Whether statistics are enabled system-wide through the sysctl
    /// `kernel.bpf_stats_enabled` (by anyone).
    pub fn sysctl_enabled() -> std::io::Result<bool> {
        let text = std::fs::read_to_string(STATS_SYSCTL)?;
        Ok(text.trim() != "0")
    }

    /// Sets the sysctl `kernel.bpf_stats_enabled` (root): statistics stay on after this
    /// process exits, unlike with [`RunStats::enable`].
    pub fn set_sysctl(enabled: bool) -> std::io::Result<()> {
        std::fs::write(STATS_SYSCTL, if enabled { "1\n" } else { "0\n" })
    }
}

/// Iterates the ids of all loaded programs.
pub fn program_ids() -> Result<Vec<u32>, SysError> {
    let kernel = sys::current();
    let mut ids = Vec::new();
    let mut start = 0;
    while let Some(id) = kernel.get_next_id(IdKind::Prog, start)? {
        ids.push(id);
        start = id;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::sys::{FakeKernel, ScriptedLoad};
    use ferrocat_plugin_api::ebpf::insn::{AluOp, Insn, Reg, Size, Src, encode};

    const REJECTED_LOG: &str = "func#0 @0\n\
0: R1=ctx() R10=fp0\n\
0: (61) r2 = *(u32 *)(r1 +0)          ; R1=ctx() R2_w=pkt(r=0)\n\
1: (71) r0 = *(u8 *)(r2 +0)\n\
invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)\n\
R2 offset is outside of the packet\n\
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";

    fn prog() -> Vec<RawInsn> {
        encode(&[
            Insn::Load {
                size: Size::W,
                signed: false,
                dst: Reg::R2,
                src: Reg::R1,
                off: 0,
            },
            Insn::Load {
                size: Size::B,
                signed: false,
                dst: Reg::R0,
                src: Reg::R2,
                off: 0,
            },
            Insn::Alu {
                wide: true,
                op: AluOp::Mov,
                dst: Reg::R0,
                src: Src::Imm(2),
            },
            Insn::Exit,
        ])
    }

    #[test]
    fn stats_are_parsed() {
        let s = VerifierStats::parse(
            "processed 12 insns (limit 1000000) max_states_per_insn 1 total_states 3 \
             peak_states 2 mark_read 1\nverification time 27 usec\nstack depth 16+8\n",
        )
        .expect("stats");
        assert_eq!(s.processed_insns, 12);
        assert_eq!(s.insn_limit, 1_000_000);
        assert_eq!(s.max_states_per_insn, 1);
        assert_eq!(s.total_states, 3);
        assert_eq!(s.peak_states, 2);
        assert_eq!(s.verification_time_us, Some(27));
        assert_eq!(s.stack_depth, vec![16, 8]);
        assert_eq!(VerifierStats::parse("nothing here"), None);
    }

    #[test]
    fn failure_is_the_last_walked_instruction() {
        let (slot, message) = parse_failure(REJECTED_LOG);
        assert_eq!(slot, Some(1));
        assert_eq!(
            message,
            "invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)\n\
             R2 offset is outside of the packet"
        );
        let (slot, message) = parse_failure("back-edge from insn 5 to 3\nprocessed 0 insns\n");
        assert_eq!(slot, Some(5));
        assert_eq!(message, "back-edge from insn 5 to 3");
    }

    #[test]
    fn accepted_load_reports_stats_and_asks_only_for_stats() {
        let fake = FakeKernel::new(2);
        let p = Program::load_with(fake.clone(), &prog(), &LoadOptions::xdp("ok")).expect("load");
        assert_eq!(p.verifier_stats().map(|s| s.processed_insns), Some(4));
        let loads = fake.loads();
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0].log_level, BPF_LOG_STATS);
        assert_eq!(loads[0].prog_type, 6);
        assert_eq!(loads[0].expected_attach_type, BPF_XDP);
        assert_eq!(loads[0].insns, insn::to_bytes(&prog()));
    }

    #[test]
    fn rejection_names_instruction_fragment_and_disassembly() {
        let fake = FakeKernel::new(2);
        fake.script_load(ScriptedLoad {
            errno: Some(libc::EACCES),
            log: "processed 2 insns (limit 1000000)\n".into(),
        });
        fake.script_load(ScriptedLoad {
            errno: Some(libc::EACCES),
            log: REJECTED_LOG.into(),
        });
        let mut map = SourceMap::new();
        map.push(0..1, "prologue");
        map.push(1..4, "motor_3");
        let opts = LoadOptions::xdp("group").with_source_map(&map);
        let err = Program::load_with(fake.clone(), &prog(), &opts).expect_err("rejected");
        let LoadError::Rejected(v) = &err else {
            panic!("expected a rejection, got {err}");
        };
        assert_eq!(v.failing_insn, Some(1));
        assert_eq!(v.fragment, Some(("motor_3".to_string(), 1..4)));
        let text = err.to_string();
        assert!(
            text.contains("R2 offset is outside of the packet"),
            "{text}"
        );
        assert!(
            text.contains("in fragment `motor_3` (slots 1..4)"),
            "{text}"
        );
        assert!(text.contains(" > 1: (71) r0 = *(u8 *)(r2 +0)"), "{text}");
        assert!(text.contains("   ; fragment `motor_3`"), "{text}");
        assert!(text.contains("   0: (61) r2 = *(u32 *)(r1 +0)"), "{text}");
        let loads = fake.loads();
        assert_eq!(loads.len(), 2);
        assert_eq!(loads[1].log_level, BPF_LOG_LEVEL1 | BPF_LOG_STATS);
    }

    #[test]
    fn log_buffer_grows_on_enospc() {
        let fake = FakeKernel::new(2);
        let long = format!(
            "{}{REJECTED_LOG}",
            "0: R1=ctx()\n".repeat(FULL_LOG_SIZE / 10)
        );
        fake.script_load(ScriptedLoad {
            errno: Some(libc::EACCES),
            log: String::new(),
        });
        fake.script_load(ScriptedLoad {
            errno: Some(libc::EACCES),
            log: long.clone(),
        });
        fake.script_load(ScriptedLoad {
            errno: Some(libc::EACCES),
            log: long.clone(),
        });
        let err = Program::load_with(fake.clone(), &prog(), &LoadOptions::xdp("big"))
            .expect_err("rejected");
        let LoadError::Rejected(v) = err else {
            panic!("expected a rejection");
        };
        assert!(!v.truncated);
        assert_eq!(v.log.len(), long.len());
        let text = v.to_string();
        assert!(
            text.contains("earlier lines (the whole log is in"),
            "{text}"
        );
        assert!(text.ends_with("mark_read 0"), "{text}");
        assert!(text.lines().count() < LOG_LINES_SHOWN + 30, "{text}");
        let loads = fake.loads();
        assert_eq!(loads.len(), 3);
        assert!(loads[2].log_size > long.len());
    }

    #[test]
    fn permission_errors_name_capabilities() {
        let fake = FakeKernel::new(2);
        for _ in 0..2 {
            fake.script_load(ScriptedLoad {
                errno: Some(libc::EPERM),
                log: String::new(),
            });
        }
        let err = Program::load_with(fake, &prog(), &LoadOptions::xdp("p")).expect_err("eperm");
        let text = err.to_string();
        assert!(matches!(err, LoadError::Sys { .. }));
        assert!(
            text.contains("CAP_BPF") && text.contains("CAP_NET_ADMIN"),
            "{text}"
        );
    }

    #[test]
    fn test_run_returns_verdict_and_packet() {
        let fake = FakeKernel::new(2);
        fake.set_test_run(Arc::new(|p: &[u8]| (3, p.iter().rev().copied().collect())));
        let p = Program::load_with(fake, &prog(), &LoadOptions::xdp("run")).expect("load");
        let r = p.test_run(&[1, 2, 3]).expect("run");
        assert_eq!(r.retval, 3);
        assert_eq!(r.data, vec![3, 2, 1]);
    }
}
