//! A [`Link`] over an AF_PACKET raw socket bound to one network interface, receiving only
//! EtherCAT frames (EtherType 0x88A4) and never its own transmissions.

use super::link::Link;
use crate::ethercat::wire::frame::ETHERTYPE_ETHERCAT;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::task::{Context, Poll, ready};
use tokio::io::unix::AsyncFd;

/// `PACKET_IGNORE_OUTGOING` socket option (linux/if_packet.h, since Linux 4.20): the
/// socket does not see frames sent on the interface, ours or other processes'.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// A raw socket on one interface.
#[derive(Debug)]
pub struct RawSocketLink {
    fd: AsyncFd<OwnedFd>,
    ifindex: i32,
    interface: String,
}

fn os_error(what: &str, interface: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what} on interface {interface}: {e}"))
}

impl RawSocketLink {
    /// Open a raw EtherCAT socket on `interface`. Needs CAP_NET_RAW; must be called inside
    /// a tokio runtime.
    pub fn open(interface: &str) -> io::Result<RawSocketLink> {
        let name = std::ffi::CString::new(interface).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface name contains a NUL byte",
            )
        })?;
        // SAFETY: if_nametoindex reads a NUL-terminated string we own.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no network interface named {interface}"),
            ));
        }
        let protocol = ETHERTYPE_ETHERCAT.to_be();
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from(protocol),
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                " (raw sockets need root or CAP_NET_RAW)"
            } else {
                ""
            };
            return Err(io::Error::new(
                e.kind(),
                format!("cannot open a raw socket for {interface}: {e}{hint}"),
            ));
        }
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a pointer to a live c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_IGNORE_OUTGOING,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(os_error("PACKET_IGNORE_OUTGOING", interface));
        }
        let rcvbuf: libc::c_int = 4 << 20;
        // SAFETY: as above; a failure only leaves the default buffer size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&rcvbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: bind with a pointer to a live sockaddr_ll and its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(os_error("bind", interface));
        }
        // SAFETY: `fd` is a valid descriptor owned by the AsyncFd, which neither replaces
        // nor closes it while registered.
        let fd = unsafe { AsyncFd::register(fd)? };
        Ok(RawSocketLink {
            fd,
            ifindex: ifindex as i32,
            interface: interface.to_owned(),
        })
    }

    /// The interface name.
    pub fn interface(&self) -> &str {
        &self.interface
    }
}

impl Link for RawSocketLink {
    fn poll_send(&mut self, cx: &mut Context<'_>, frame: &[u8]) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = ETHERTYPE_ETHERCAT.to_be();
            addr.sll_ifindex = self.ifindex;
            addr.sll_halen = 6;
            let result = guard.try_io(|fd| {
                // SAFETY: sendto with a live buffer and address of the given sizes.
                let n = unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&addr as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match result {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let result = guard.try_io(|fd| {
                // SAFETY: recv into a live buffer of the given size.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }
}
