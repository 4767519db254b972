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
use std::time::Duration;

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
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
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
}

/// Serves a bus on `interface` until `stop` is set: attaches XDP_PASS, then for every
/// EtherCAT frame calls `process(frame, kernel_rx_time_ns)` and sends back what it
/// returns (`None`: the frame is lost). The processed frame is what the last terminal
/// sends back towards the master.
pub fn serve(
    interface: &str,
    stop: &Arc<AtomicBool>,
    mut process: impl FnMut(&[u8], u64) -> Option<Vec<u8>>,
) -> Result<ServeStats, ServeError> {
    let _xdp = XdpPass::attach(interface)?;
    let socket = EthercatSocket::open(interface, Duration::from_millis(100))?;
    let mut stats = ServeStats::default();
    while !stop.load(Ordering::Relaxed) {
        let Some(rx) = socket.recv()? else { continue };
        stats.received += 1;
        match process(&rx.frame, rx.time_ns) {
            Some(reply) => {
                socket.send(&reply)?;
                stats.sent += 1;
            }
            None => stats.dropped += 1,
        }
    }
    Ok(stats)
}

/// Builds the segment of a built bus: one ESC per terminal in order, with its clock
/// drift and, where the topology sets one, its station alias written into the EEPROM
/// image (word 4, checksum word 7 recomputed) as a real terminal would hold it.
pub fn build_segment(bus: crate::topology::BuiltBus) -> crate::segment::Segment {
    let mut segment = crate::segment::Segment::new();
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

/// Writes `alias` into word 4 of the image and fixes the header checksum (word 7, CRC-8
/// with polynomial 0x07 and initial value 0xFF over bytes 0..13, ETG.2010 table 2).
fn set_alias(sii: &mut crate::sii::Sii, alias: u16) {
    sii.station_alias = alias;
    if sii.raw.len() < 16 {
        return;
    }
    sii.raw[8..10].copy_from_slice(&alias.to_le_bytes());
    let mut crc: u8 = 0xFF;
    for b in &sii.raw[..14] {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    sii.raw[14] = crc;
}

/// Turns a built bus into the frame processor [`serve`] runs: frame in, processed frame
/// out, `None` when the segment loses it (faults, malformed frame) or it is not EtherCAT.
pub fn bus_processor(
    bus: crate::topology::BuiltBus,
) -> Result<impl FnMut(&[u8], u64) -> Option<Vec<u8>>, ServeError> {
    let mut segment = build_segment(bus);
    Ok(move |frame: &[u8], now_ns: u64| {
        // Watchdogs and EEPROM timers run on time, not only on frames: bring every
        // terminal to the frame's arrival time first.
        segment.advance(now_ns);
        let mut f = frame.to_vec();
        match segment.process(&mut f, now_ns) {
            crate::segment::FrameOutcome::Reply { .. } => Some(f),
            crate::segment::FrameOutcome::Lost | crate::segment::FrameOutcome::NotEtherCat => None,
        }
    })
}
