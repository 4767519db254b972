//! Serving a simulated bus on a network interface through an AF_PACKET socket.
//!
//! The server receives every EtherCAT frame (EtherType 0x88A4) arriving on its interface
//! with the kernel's receive timestamp (SO_TIMESTAMPNS), hands it to the segment, and sends
//! the processed frame back out. It attaches a trivial XDP_PASS program to its own
//! interface: on a veth, frames a master's XDP program bounces with XDP_TX are only
//! delivered if the peer has an XDP program attached (see DESIGN.md).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// EtherType of EtherCAT frames. ETG.1000.4 section 5.2.
pub const ETHERTYPE_ETHERCAT: u16 = 0x88A4;

/// `SO_TIMESTAMPNS` (linux/asm-generic/socket.h).
const SO_TIMESTAMPNS: libc::c_int = 35;
/// `PACKET_IGNORE_OUTGOING` (linux/if_packet.h): do not receive our own transmissions.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// An error serving a bus, naming the interface and the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The interface does not exist.
    #[error("interface {0:?} does not exist")]
    NoInterface(String),
    /// The idle tick is too short to serve with.
    #[error(
        "idle tick {0:?} is shorter than {MIN_IDLE_TICK:?}: the server would spin (and a receive timeout of 0 waits forever)"
    )]
    IdleTickTooShort(Duration),
    /// A system call failed.
    #[error("{what} on interface {interface:?}: {source}")]
    Sys {
        /// The step.
        what: &'static str,
        /// The interface.
        interface: String,
        /// The OS error.
        source: io::Error,
    },
}

fn sys<'a>(what: &'static str, interface: &'a str) -> impl FnOnce(io::Error) -> ServeError + 'a {
    move |source| ServeError::Sys {
        what,
        interface: interface.to_string(),
        source,
    }
}

/// The index of interface `name`.
pub fn interface_index(name: &str) -> Result<u32, ServeError> {
    let c = std::ffi::CString::new(name).map_err(|_| ServeError::NoInterface(name.to_string()))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        Err(ServeError::NoInterface(name.to_string()))
    } else {
        Ok(index)
    }
}

/// A raw EtherCAT socket bound to one interface.
#[derive(Debug)]
pub struct EthercatSocket {
    fd: OwnedFd,
    ifindex: u32,
    interface: String,
}

/// A received frame and its kernel receive time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The frame, from the destination MAC on.
    pub frame: Vec<u8>,
    /// Kernel receive timestamp, nanoseconds since the Unix epoch (0 if the kernel gave none).
    pub time_ns: u64,
}

impl EthercatSocket {
    /// Opens an AF_PACKET socket for EtherCAT frames on `interface`, with kernel receive
    /// timestamps, not seeing its own transmissions, and a receive timeout of `timeout`.
    pub fn open(interface: &str, timeout: Duration) -> Result<Self, ServeError> {
        let ifindex = interface_index(interface)?;
        let proto = ETHERTYPE_ETHERCAT.to_be();
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto)) };
        if fd < 0 {
            return Err(sys("socket(AF_PACKET)", interface)(
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let s = Self {
            fd,
            ifindex,
            interface: interface.to_string(),
        };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                s.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(sys("bind", interface)(io::Error::last_os_error()));
        }
        s.setsockopt(libc::SOL_SOCKET, SO_TIMESTAMPNS, &1i32, "SO_TIMESTAMPNS")?;
        s.setsockopt(
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            &1i32,
            "PACKET_IGNORE_OUTGOING",
        )?;
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        s.setsockopt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv, "SO_RCVTIMEO")?;
        Ok(s)
    }

    fn setsockopt<T>(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: &T,
        what: &'static str,
    ) -> Result<(), ServeError> {
        // SAFETY: `value` points at a live T of the size passed.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                std::mem::size_of::<T>() as u32,
            )
        };
        if r < 0 {
            return Err(sys(what, &self.interface)(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Receives one frame; `Ok(None)` when the receive timeout passed without one.
    pub fn recv(&self) -> Result<Option<Received>, ServeError> {
        self.recv_flags(0)
    }

    /// Receives one frame if one arrives within `wait` (which may be shorter than the
    /// socket's receive timeout); `Ok(None)` otherwise.
    pub fn recv_within(&self, wait: Duration) -> Result<Option<Received>, ServeError> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `pfd` and `ts` are live for the call; one descriptor, no signal mask.
        let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(sys("ppoll", &self.interface)(e))
            };
        }
        if r == 0 {
            return Ok(None);
        }
        self.recv_flags(libc::MSG_DONTWAIT)
    }

    fn recv_flags(&self, flags: libc::c_int) -> Result<Option<Received>, ServeError> {
        let mut buf = vec![0u8; 9216];
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; zeroed is a valid start.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: every pointer in `msg` refers to a live buffer of the stated size.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(sys("recvmsg", &self.interface)(e)),
            };
        }
        buf.truncate(n as usize);
        let mut time_ns = 0;
        // SAFETY: the CMSG macros walk the control buffer the kernel filled in.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == SO_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    time_ns = (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64;
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(Some(Received {
            frame: buf,
            time_ns,
        }))
    }

    /// Sends one frame (destination MAC first) out of the interface.
    pub fn send(&self, frame: &[u8]) -> Result<(), ServeError> {
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETHERTYPE_ETHERCAT.to_be();
        addr.sll_ifindex = self.ifindex as i32;
        addr.sll_halen = 6;
        let n = frame.len().min(6);
        addr.sll_addr[..n].copy_from_slice(&frame[..n]);
        // SAFETY: `frame` and `addr` are live for the call and sized as passed.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(sys("sendto", &self.interface)(io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// bpf(2) commands and attach types (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// An XDP program returning XDP_PASS attached to an interface; detached when dropped
/// (the link is not pinned, so it also goes when the process dies).
#[derive(Debug)]
pub struct XdpPass {
    _prog: OwnedFd,
    _link: OwnedFd,
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<RawFd> {
    // SAFETY: `attr` is a zero-padded bpf_attr of the size passed.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as RawFd)
    }
}

impl XdpPass {
    /// Loads `r0 = XDP_PASS; exit` and links it to `interface` (native mode where the
    /// driver supports it, generic otherwise).
    pub fn attach(interface: &str) -> Result<Self, ServeError> {
        let ifindex = interface_index(interface)?;
        // r0 = 2 (XDP_PASS): BPF_ALU64 | BPF_MOV | BPF_K; exit: BPF_JMP | BPF_EXIT.
        let insns: [u64; 2] = [
            u64::from_le_bytes([0xB7, 0x00, 0, 0, 2, 0, 0, 0]),
            u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let license = b"GPL\0";
        let mut log = vec![0u8; 4096];
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&BPF_PROG_TYPE_XDP.to_ne_bytes());
        attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
        attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        attr[24..28].copy_from_slice(&1u32.to_ne_bytes());
        attr[28..32].copy_from_slice(&(log.len() as u32).to_ne_bytes());
        attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
        attr[48..58].copy_from_slice(b"simxdppass");
        attr[68..72].copy_from_slice(&BPF_XDP.to_ne_bytes());
        let prog = bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
            let end = log.iter().position(|b| *b == 0).unwrap_or(0);
            let msg = String::from_utf8_lossy(&log[..end]).to_string();
            sys("loading the XDP_PASS program", interface)(io::Error::new(
                e.kind(),
                if msg.is_empty() {
                    e.to_string()
                } else {
                    format!("{e}: {msg}")
                },
            ))
        })?;
        // SAFETY: a fresh descriptor we own.
        let prog = unsafe { OwnedFd::from_raw_fd(prog) };
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
        attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        attr[8..12].copy_from_slice(&BPF_XDP.to_ne_bytes());
        let link = bpf(BPF_LINK_CREATE, &mut attr)
            .map_err(sys("attaching XDP_PASS (BPF_LINK_CREATE)", interface))?;
        // SAFETY: a fresh descriptor we own.
        let link = unsafe { OwnedFd::from_raw_fd(link) };
        Ok(Self {
            _prog: prog,
            _link: link,
        })
    }
}

/// Counters of a running server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Frames received.
    pub received: u64,
    /// Frames sent back.
    pub sent: u64,
    /// Frames the segment dropped (lost on the wire, faults).
    pub dropped: u64,
    /// Replies still held back by their delay (injected or wire time) when the server
    /// stopped: they are never sent.
    pub dropped_at_stop: u64,
}

/// A processed frame to send back, `delay_ns` after the frame arrived (wire time and
/// injected delay; 0 = at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The frame as the master receives it.
    pub frame: Vec<u8>,
    /// When it is due, counted from the frame's arrival (see [`reply_due`]).
    pub delay_ns: u64,
}

/// Nanoseconds since the Unix epoch on CLOCK_REALTIME, the clock of SO_TIMESTAMPNS.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// How often the server wakes up without frames to let timers (watchdogs) run.
pub const IDLE_TICK: Duration = Duration::from_millis(5);

/// The shortest idle tick [`serve_with_idle_tick`] takes: the socket's receive timeout
/// (SO_RCVTIMEO) counts in microseconds, and 0 means waiting forever.
pub const MIN_IDLE_TICK: Duration = Duration::from_micros(1);

/// A held reply due within this much of now goes out at once: waiting for so short a
/// time costs about as much in wake-up latency.
pub const SEND_AHEAD: Duration = Duration::from_micros(10);

/// The timer slack of the serving thread while it serves (prctl PR_SET_TIMERSLACK): the
/// default 50 µs would add up to that much to every wait for a held reply.
const SERVE_TIMER_SLACK_NS: libc::c_ulong = 1_000;

/// When the reply to a frame falls due: `delay` after the frame arrived, so the time
/// processing took counts towards it. `rx_ns` is the frame's kernel receive time on
/// CLOCK_REALTIME; `now` and `now_ns` are the monotonic and the realtime clock read
/// together. A receive time ahead of `now_ns` (the realtime clock stepped back) counts
/// as now. `None`: beyond the monotonic clock's range.
pub fn reply_due(now: Instant, now_ns: u64, rx_ns: u64, delay: Duration) -> Option<Instant> {
    let since_arrival = Duration::from_nanos(now_ns.saturating_sub(rx_ns));
    let arrived = now.checked_sub(since_arrival).unwrap_or(now);
    arrived.checked_add(delay)
}

/// The calling thread's timer slack set to [`SERVE_TIMER_SLACK_NS`]; the previous one
/// is restored on drop.
struct TimerSlack {
    previous: Option<libc::c_ulong>,
}

impl TimerSlack {
    fn tighten() -> TimerSlack {
        // SAFETY: PR_GET_TIMERSLACK takes no pointer; it returns the slack or -1.
        let previous = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK) };
        if previous <= 0 {
            return TimerSlack { previous: None };
        }
        // SAFETY: PR_SET_TIMERSLACK takes an integer; it only affects this thread.
        let r = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, SERVE_TIMER_SLACK_NS) };
        TimerSlack {
            previous: (r == 0).then_some(previous as libc::c_ulong),
        }
    }
}

impl Drop for TimerSlack {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            // SAFETY: as in `tighten`.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, previous) };
        }
    }
}

/// Replies held back by their delay, released in the order they fall due (replies due
/// at the same instant in the order they were held).
#[derive(Debug, Default)]
pub struct HeldReplies {
    /// (due, frame), sorted by due time.
    queue: std::collections::VecDeque<(Instant, Vec<u8>)>,
}

impl HeldReplies {
    /// Holds `frame` until `due`.
    pub fn hold(&mut self, due: Instant, frame: Vec<u8>) {
        let at = self.queue.partition_point(|(d, _)| *d <= due);
        self.queue.insert(at, (due, frame));
    }

    /// When the next held reply falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(d, _)| *d)
    }

    /// Takes the next reply due at or before `now`.
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_due()? <= now {
            self.queue.pop_front().map(|(_, f)| f)
        } else {
            None
        }
    }

    /// Number of replies held.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no reply is held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Serves a bus on `interface` until `stop` is set: attaches XDP_PASS, then for every
/// EtherCAT frame calls `process(frame, kernel_rx_time_ns)` and sends back what it
/// returns (`None`: the frame is lost), holding a reply back by its delay. Between frames
/// `idle(now_ns)` runs every few milliseconds ([`IDLE_TICK`]) so that timers expire on
/// time. Replies still held back when it stops are not sent; the returned counters say
/// how many ([`ServeStats::dropped_at_stop`]).
pub fn serve(
    interface: &str,
    stop: &Arc<AtomicBool>,
    process: impl FnMut(&[u8], u64) -> Option<Reply>,
    idle: impl FnMut(u64),
) -> Result<ServeStats, ServeError> {
    serve_with_idle_tick(interface, stop, IDLE_TICK, process, idle)
}

/// Sends every held reply due within [`SEND_AHEAD`] of now, in the order they fall due.
fn send_due(
    socket: &EthercatSocket,
    held: &mut HeldReplies,
    stats: &mut ServeStats,
) -> Result<(), ServeError> {
    while let Some(frame) = held.take_due(Instant::now() + SEND_AHEAD) {
        socket.send(&frame)?;
        stats.sent += 1;
    }
    Ok(())
}

/// [`serve`] with `idle` running every `idle_tick` (at least [`MIN_IDLE_TICK`]) without
/// frames. A held reply goes out when it falls due, its delay counted from the frame's
/// arrival ([`reply_due`]): the wait for the next frame ends then, not at the next tick.
/// While serving, the calling thread's timer slack is 1 µs.
pub fn serve_with_idle_tick(
    interface: &str,
    stop: &Arc<AtomicBool>,
    idle_tick: Duration,
    mut process: impl FnMut(&[u8], u64) -> Option<Reply>,
    mut idle: impl FnMut(u64),
) -> Result<ServeStats, ServeError> {
    if idle_tick < MIN_IDLE_TICK {
        return Err(ServeError::IdleTickTooShort(idle_tick));
    }
    let _xdp = XdpPass::attach(interface)?;
    let socket = EthercatSocket::open(interface, idle_tick)?;
    let _slack = TimerSlack::tighten();
    let mut stats = ServeStats::default();
    let mut held = HeldReplies::default();
    let mut last_idle = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        send_due(&socket, &mut held, &mut stats)?;
        let now = Instant::now();
        let next_idle = last_idle + idle_tick;
        let wake = held.next_due().map_or(next_idle, |due| due.min(next_idle));
        let Some(rx) = socket.recv_within(wake.saturating_duration_since(now))? else {
            if Instant::now() >= next_idle {
                last_idle = Instant::now();
                idle(realtime_ns());
            }
            continue;
        };
        stats.received += 1;
        let time = if rx.time_ns == 0 {
            realtime_ns()
        } else {
            rx.time_ns
        };
        match process(&rx.frame, time) {
            Some(reply) if reply.delay_ns == 0 => {
                socket.send(&reply.frame)?;
                stats.sent += 1;
            }
            Some(reply) => {
                let delay = Duration::from_nanos(reply.delay_ns);
                match reply_due(Instant::now(), realtime_ns(), time, delay) {
                    Some(due) => {
                        held.hold(due, reply.frame);
                        send_due(&socket, &mut held, &mut stats)?;
                    }
                    // Due beyond the clock's range: it would never go out.
                    None => stats.dropped += 1,
                }
            }
            None => stats.dropped += 1,
        }
    }
    stats.dropped_at_stop = held.len() as u64;
    Ok(stats)
}

/// Builds the segment of a built bus: its wire-time model, one ESC per terminal in order,
/// with its clock drift and, where the topology sets one, its station alias written into the EEPROM
/// image (word 4, checksum word 7 recomputed) as a real terminal would hold it.
pub fn build_segment(bus: crate::topology::BuiltBus) -> crate::segment::Segment {
    let mut segment = crate::segment::Segment::new();
    segment.set_wire_time(bus.wire_time);
    for t in bus.terminals {
        let mut sii = t.sii;
        if let Some(alias) = t.alias {
            set_alias(&mut sii, alias);
        }
        let mut config = crate::esc::EscConfig::for_sii(&sii);
        config.drift_ppm = t.drift_ppm;
        segment.push(crate::esc::Esc::new(config, sii, t.app));
    }
    segment
}

/// Writes `alias` into word 4 of the image and fixes the header checksum
/// ([`crate::sii::header_crc`]).
fn set_alias(sii: &mut crate::sii::Sii, alias: u16) {
    sii.station_alias = alias;
    if sii.raw.len() < 16 {
        return;
    }
    sii.raw[8..10].copy_from_slice(&alias.to_le_bytes());
    sii.raw[14] = crate::sii::header_crc(&sii.raw);
}

/// The segment of a bus behind [`serve`]: frame in, processed frame out.
#[derive(Debug)]
pub struct BusProcessor {
    segment: crate::segment::Segment,
}

impl BusProcessor {
    /// Processes one frame arriving at `now_ns`: `None` when the segment loses it
    /// (faults, malformed frame) or it is not EtherCAT.
    pub fn process(&mut self, frame: &[u8], now_ns: u64) -> Option<Reply> {
        // The segment brings every terminal to the frame's time, also those the frame
        // does not reach, so watchdogs and EEPROM timers run on time.
        let mut f = frame.to_vec();
        match self.segment.process(&mut f, now_ns) {
            crate::segment::FrameOutcome::Reply { delay_ns } => Some(Reply { frame: f, delay_ns }),
            crate::segment::FrameOutcome::Lost | crate::segment::FrameOutcome::NotEtherCat => None,
        }
    }

    /// Lets time pass without a frame (watchdogs expire on time).
    pub fn idle(&mut self, now_ns: u64) {
        self.segment.advance(now_ns);
    }

    /// The fault handle of the segment, switchable while serving.
    pub fn faults(&self) -> crate::fault::Faults {
        self.segment.faults()
    }

    /// The segment.
    pub fn segment(&self) -> &crate::segment::Segment {
        &self.segment
    }
}

/// Builds the [`BusProcessor`] of a built bus.
pub fn bus_processor(bus: crate::topology::BuiltBus) -> BusProcessor {
    BusProcessor {
        segment: build_segment(bus),
    }
}

/// The longest reply delay the `delay` fault command takes: replies held longer would
/// only pile up in the server (every frame of that time is held at once).
pub const MAX_FAULT_DELAY: Duration = Duration::from_secs(10);

/// Applies one fault-injection command to `faults` and returns what is now in force.
///
/// Commands (one per line): `drop RATIO`, `corrupt RATIO [POSITION]`,
/// `delay RATIO MICROSECONDS` (at most [`MAX_FAULT_DELAY`]),
/// `link down|up`, `silent POSITION|none`, `power-cycle POSITION`,
/// `fall-back POSITION init|preop|safeop CODE` (code in hex, e.g. 0x001A), `clear`, `show`.
/// Ratios are fractions 0..1 of frames; positions count terminals from 0.
pub fn apply_fault_command(faults: &crate::fault::Faults, line: &str) -> Result<String, String> {
    use crate::app::AlState;
    use crate::fault::{FaultSettings, TerminalFault};
    let words: Vec<&str> = line.split_whitespace().collect();
    let ratio = |w: Option<&&str>| -> Result<f64, String> {
        let w = w.ok_or("missing ratio (a fraction 0..1)")?;
        let r: f64 = w.parse().map_err(|_| format!("{w:?} is not a number"))?;
        if (0.0..=1.0).contains(&r) {
            Ok(r)
        } else {
            Err(format!("ratio {r} is not within 0..1"))
        }
    };
    let position = |w: Option<&&str>| -> Result<usize, String> {
        let w = w.ok_or("missing terminal position")?;
        w.parse()
            .map_err(|_| format!("{w:?} is not a terminal position"))
    };
    match words.as_slice() {
        ["drop", rest @ ..] => faults.set_drop_ratio(ratio(rest.first())?),
        ["corrupt", rest @ ..] => {
            let r = ratio(rest.first())?;
            let at = match rest.get(1) {
                Some(_) => Some(position(rest.get(1))?),
                None => None,
            };
            if rest.len() > 2 {
                return Err(format!("corrupt takes RATIO [POSITION], not {line:?}"));
            }
            faults.set_corrupt_ratio(r);
            faults.set_corrupt_at(at);
        }
        ["delay", rest @ ..] => {
            let r = ratio(rest.first())?;
            let us: u64 = rest
                .get(1)
                .ok_or("missing delay in microseconds")?
                .parse()
                .map_err(|_| "delay must be whole microseconds".to_string())?;
            let max_us = MAX_FAULT_DELAY.as_micros();
            if u128::from(us) > max_us {
                return Err(format!(
                    "delay of {us} µs is too long: at most {max_us} µs ({} s)",
                    MAX_FAULT_DELAY.as_secs()
                ));
            }
            faults.set_delay(r, us * 1000);
        }
        ["link", "down"] => faults.set_link_down(true),
        ["link", "up"] => faults.set_link_down(false),
        ["silent", "none"] => faults.set_silent_from(None),
        ["silent", rest @ ..] => faults.set_silent_from(Some(position(rest.first())?)),
        ["power-cycle", rest @ ..] => {
            faults.inject(position(rest.first())?, TerminalFault::PowerCycle)
        }
        ["fall-back", rest @ ..] => {
            let pos = position(rest.first())?;
            let state = match rest.get(1).copied() {
                Some("init") => AlState::Init,
                Some("preop") => AlState::PreOp,
                Some("safeop") => AlState::SafeOp,
                other => return Err(format!("state {other:?} is not init, preop or safeop")),
            };
            let code = rest.get(2).ok_or("missing AL status code")?;
            let code = u16::from_str_radix(code.trim_start_matches("0x"), 16)
                .map_err(|_| format!("{code:?} is not a hexadecimal AL status code"))?;
            faults.inject(pos, TerminalFault::FallBack { state, code });
        }
        ["clear"] => faults.set(FaultSettings::default()),
        ["show"] => {}
        _ => {
            return Err(format!(
                "unknown fault command {line:?} (drop, corrupt, delay, link, silent, power-cycle, fall-back, clear, show)"
            ));
        }
    }
    Ok(format!("{:?}", faults.settings()))
}

/// Serves fault-injection commands on the Unix socket at `path` (one command per
/// connection, one line back: `ok SETTINGS` or `error MESSAGE`) until the process ends.
pub fn spawn_control(
    path: &std::path::Path,
    faults: crate::fault::Faults,
) -> Result<std::thread::JoinHandle<()>, ServeError> {
    use std::io::{BufRead, BufReader, Write};
    let _ = std::fs::remove_file(path);
    let listener =
        std::os::unix::net::UnixListener::bind(path).map_err(|source| ServeError::Sys {
            what: "binding the control socket",
            interface: path.display().to_string(),
            source,
        })?;
    Ok(std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut line = String::new();
            if BufReader::new(&conn).read_line(&mut line).is_err() {
                continue;
            }
            let answer = match apply_fault_command(&faults, line.trim()) {
                Ok(s) => {
                    tracing::info!(command = line.trim(), "fault injection");
                    format!("ok {s}\n")
                }
                Err(e) => format!("error {e}\n"),
            };
            let _ = conn.write_all(answer.as_bytes());
        }
    }))
}

/// Sends one command to a server's control socket and returns its answer.
pub fn send_control(path: &std::path::Path, command: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("cannot reach the control socket {}: {e}", path.display()))?;
    s.write_all(format!("{command}\n").as_bytes())
        .map_err(|e| format!("writing to {}: {e}", path.display()))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("reading from {}: {e}", path.display()))?;
    match answer.trim().strip_prefix("ok ") {
        Some(settings) => Ok(settings.to_string()),
        None => Err(answer.trim().trim_start_matches("error ").to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_replies_fall_due_in_order() {
        let t0 = std::time::Instant::now();
        let ms = Duration::from_millis;
        let mut h = HeldReplies::default();
        h.hold(t0 + ms(30), vec![3]);
        h.hold(t0 + ms(10), vec![1]);
        h.hold(t0 + ms(30), vec![4]);
        h.hold(t0 + ms(20), vec![2]);
        assert_eq!(h.next_due(), Some(t0 + ms(10)));
        assert_eq!(h.take_due(t0 + ms(5)), None, "nothing due yet");
        assert_eq!(h.take_due(t0 + ms(25)), Some(vec![1]));
        assert_eq!(h.take_due(t0 + ms(25)), Some(vec![2]));
        assert_eq!(h.take_due(t0 + ms(25)), None);
        assert_eq!(h.next_due(), Some(t0 + ms(30)));
        // Equal due times keep the order they were held in.
        assert_eq!(h.take_due(t0 + ms(30)), Some(vec![3]));
        assert_eq!(h.take_due(t0 + ms(30)), Some(vec![4]));
        assert!(h.is_empty());
    }

    #[test]
    fn a_reply_is_due_its_delay_after_the_frame_arrived() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let rx = 1_700_000_000_000_000_000u64;
        // Processing took 3 ms: the reply is due 5 ms after arrival, 2 ms from now.
        let now = t0 + ms(3);
        let now_ns = rx + 3_000_000;
        assert_eq!(reply_due(now, now_ns, rx, ms(5)), Some(t0 + ms(5)));
        // Processing took longer than the delay: due already.
        assert_eq!(
            reply_due(t0 + ms(8), rx + 8_000_000, rx, ms(5)),
            Some(t0 + ms(5))
        );
        // A receive time after now (the realtime clock stepped back) counts as now.
        assert_eq!(reply_due(now, rx - 1, rx, ms(5)), Some(now + ms(5)));
        assert_eq!(reply_due(now, now_ns, rx, Duration::MAX), None);
        // Held in the order they fall due: a later frame whose short delay makes it due
        // first goes first.
        let mut h = HeldReplies::default();
        h.hold(reply_due(now, now_ns, rx, ms(9)).expect("due"), vec![1]);
        let later = reply_due(t0 + ms(6), rx + 6_000_000, rx + 1_000_000, ms(2));
        h.hold(later.expect("due"), vec![2]);
        assert_eq!(h.take_due(t0 + ms(9)), Some(vec![2]));
        assert_eq!(h.take_due(t0 + ms(9)), Some(vec![1]));
    }

    #[test]
    fn an_idle_tick_under_a_microsecond_is_refused() {
        let stop = Arc::new(AtomicBool::new(true));
        for tick in [Duration::ZERO, Duration::from_nanos(999)] {
            let e = serve_with_idle_tick("lo", &stop, tick, |_, _| None, |_| {})
                .expect_err("too short");
            assert!(
                matches!(e, ServeError::IdleTickTooShort(t) if t == tick),
                "{e}"
            );
            assert!(e.to_string().contains("shorter than 1µs"), "{e}");
        }
    }

    #[test]
    fn fault_commands_change_the_settings() {
        let f = crate::fault::Faults::default();
        apply_fault_command(&f, "drop 0.25").expect("drop");
        apply_fault_command(&f, "delay 0.5 200").expect("delay");
        apply_fault_command(&f, "silent 3").expect("silent");
        let s = f.settings();
        assert_eq!(s.drop_ratio, 0.25);
        assert_eq!((s.delay_ratio, s.delay_ns), (0.5, 200_000));
        assert_eq!(s.silent_from, Some(3));
        apply_fault_command(&f, "corrupt 0.5 2").expect("corrupt on a cable");
        assert_eq!(
            (f.settings().corrupt_ratio, f.settings().corrupt_at),
            (0.5, Some(2))
        );
        apply_fault_command(&f, "corrupt 0.25").expect("corrupt anywhere");
        assert_eq!(
            (f.settings().corrupt_ratio, f.settings().corrupt_at),
            (0.25, None)
        );
        assert!(apply_fault_command(&f, "corrupt 0.25 x").is_err());
        assert!(apply_fault_command(&f, "corrupt 0.25 1 2").is_err());
        apply_fault_command(&f, "fall-back 2 safeop 0x001A").expect("fall-back");
        assert_eq!(f.take_pending().len(), 1);
        assert!(apply_fault_command(&f, "drop 2").is_err());
        assert!(apply_fault_command(&f, "drop NaN").is_err());
        // A delay beyond 10 s (or whose nanoseconds overflow) is refused, the settings
        // stay; 10 s itself is taken.
        for us in ["18446744073709551615", "10000001"] {
            let e = apply_fault_command(&f, &format!("delay 0.5 {us}")).expect_err("too long");
            assert!(e.contains("too long") && e.contains("10000000 µs"), "{e}");
            assert_eq!(f.settings().delay_ns, 200_000);
        }
        apply_fault_command(&f, "delay 0.5 10000000").expect("10 s");
        assert_eq!(f.settings().delay_ns, 10_000_000_000);
        apply_fault_command(&f, "delay 0.5 200").expect("delay");
        assert!(apply_fault_command(&f, "delay 0.5 -1").is_err());
        assert_eq!(f.settings().delay_ns, 200_000);
        assert!(apply_fault_command(&f, "fall-back 2 safeop 0x10000").is_err());
        assert!(apply_fault_command(&f, "fall-back 2 op 0x001A").is_err());
        assert!(apply_fault_command(&f, "power-cycle -1").is_err());
        assert!(
            apply_fault_command(&f, "explode")
                .expect_err("unknown")
                .contains("unknown")
        );
        apply_fault_command(&f, "clear").expect("clear");
        assert_eq!(f.settings(), crate::fault::FaultSettings::default());
    }
}
