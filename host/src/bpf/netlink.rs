//! The one rtnetlink query the BPF layer needs: which XDP program an interface of this
//! network namespace runs (`IFLA_XDP` of `RTM_GETLINK`). BPF link ids are global, but
//! interface indexes are per namespace; this tells the links of our namespace apart.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::sys::{Cmd, SysError, XdpAttached};

// include/uapi/linux/netlink.h and rtnetlink.h, if_link.h.
const NLMSG_HDR_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const IFINFOMSG_LEN: usize = 16;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;
/// `NLA_F_NESTED`: flag bit of nested attribute types.
const NLA_TYPE_MASK: u16 = 0x3fff;

fn err(e: io::Error) -> SysError {
    SysError {
        cmd: Cmd::Netlink,
        source: e,
    }
}

fn invalid(what: &str) -> SysError {
    err(io::Error::new(io::ErrorKind::InvalidData, what.to_string()))
}

/// The request: a netlink header and an `ifinfomsg` naming the interface.
fn request(ifindex: u32, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDR_LEN + IFINFOMSG_LEN;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // ifinfomsg: family AF_UNSPEC, pad, type, index, flags, change.
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&[0; 8]);
    m
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Walks the attributes (`struct rtattr`: u16 len, u16 type, payload, 4-aligned).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16_at(b, 0)? as usize;
        let ty = u16_at(b, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = b.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
        Some((ty, payload))
    })
}

/// Parses the answer to [`request`]: the interface's `RTM_NEWLINK`, or the kernel's
/// error.
pub(crate) fn parse_reply(reply: &[u8]) -> Result<XdpAttached, SysError> {
    let mut rest = reply;
    while rest.len() >= NLMSG_HDR_LEN {
        let len = u32_at(rest, 0).ok_or_else(|| invalid("short netlink header"))? as usize;
        let ty = u16_at(rest, 4).ok_or_else(|| invalid("short netlink header"))?;
        if len < NLMSG_HDR_LEN || len > rest.len() {
            return Err(invalid("netlink message length out of range"));
        }
        let body = &rest[NLMSG_HDR_LEN..len];
        match ty {
            NLMSG_ERROR => {
                let code = u32_at(body, 0).ok_or_else(|| invalid("short netlink error"))? as i32;
                if code != 0 {
                    // The kernel sends -errno; any other value is a malformed reply.
                    let errno = code
                        .checked_neg()
                        .filter(|e| *e > 0)
                        .ok_or_else(|| invalid("netlink error code is not a negative errno"))?;
                    return Err(err(io::Error::from_raw_os_error(errno)));
                }
            }
            RTM_NEWLINK => {
                let attributes = body
                    .get(IFINFOMSG_LEN..)
                    .ok_or_else(|| invalid("short ifinfomsg"))?;
                let mut out = XdpAttached::default();
                for (t, payload) in attrs(attributes) {
                    if t != IFLA_XDP {
                        continue;
                    }
                    for (x, v) in attrs(payload) {
                        match x {
                            IFLA_XDP_ATTACHED => out.mode = v.first().copied().unwrap_or(0),
                            IFLA_XDP_PROG_ID => out.prog_id = u32_at(v, 0),
                            _ => {}
                        }
                    }
                }
                return Ok(out);
            }
            NLMSG_DONE => break,
            _ => {}
        }
        rest = rest.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
    }
    Err(invalid("no RTM_NEWLINK in the netlink reply"))
}

/// Asks the kernel which XDP program interface `ifindex` runs.
pub(crate) fn xdp_attached(ifindex: u32) -> Result<XdpAttached, SysError> {
    // SAFETY: plain socket creation.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: a new descriptor owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let req = request(ifindex, 1);
    // SAFETY: a zeroed sockaddr_nl addresses the kernel (pid 0).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: valid buffer and address for the call's duration.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: valid buffer for the call's duration.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    parse_reply(&buf[..n as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn message(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR_LEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn xdp_attribute_is_found() {
        let mut nested = attr(IFLA_XDP_ATTACHED, &[2]);
        nested.extend(attr(IFLA_XDP_PROG_ID, &77u32.to_ne_bytes()));
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body.extend(attr(3, b"veth0\0"));
        body.extend(attr(IFLA_XDP | 0x8000, &nested));
        let reply = message(RTM_NEWLINK, &body);
        assert_eq!(
            parse_reply(&reply).expect("parse"),
            XdpAttached {
                mode: 2,
                prog_id: Some(77)
            }
        );
    }

    #[test]
    fn errors_and_garbage_are_errors() {
        let reply = message(NLMSG_ERROR, &(-libc::ENODEV).to_ne_bytes());
        let e = parse_reply(&reply).expect_err("error");
        assert_eq!(e.errno(), Some(libc::ENODEV));
        assert!(parse_reply(&[1, 2, 3]).is_err());
        let mut bad = message(RTM_NEWLINK, &[0; 4]);
        bad[0] = 200;
        assert!(parse_reply(&bad).is_err());
    }

    #[test]
    fn hostile_replies_are_errors_not_panics() {
        // Error codes that are not a negative errno.
        for code in [i32::MIN, 1, i32::MAX] {
            let e = parse_reply(&message(NLMSG_ERROR, &code.to_ne_bytes())).expect_err("code");
            assert_eq!(e.errno(), None, "{code}: {e}");
        }
        // A valid reply cut at every byte, and with every length byte overwritten.
        let mut nested = attr(IFLA_XDP_ATTACHED, &[1]);
        nested.extend(attr(IFLA_XDP_PROG_ID, &5u32.to_ne_bytes()));
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body.extend(attr(IFLA_XDP, &nested));
        let whole = message(RTM_NEWLINK, &body);
        let ok = XdpAttached {
            mode: 1,
            prog_id: Some(5),
        };
        assert_eq!(parse_reply(&whole).expect("whole"), ok);
        for cut in 0..whole.len() {
            assert!(parse_reply(&whole[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..whole.len() {
            for v in [0u8, 1, 3, 0x7F, 0xFF] {
                let mut m = whole.clone();
                m[at] = v;
                // Whatever it yields, mode and id come from where the attributes say:
                // the attached byte at 40 and the id at 48..52 (or absent).
                if let Ok(x) = parse_reply(&m) {
                    assert!(x.mode == 0 || x.mode == m[40], "byte {at} = {v}: {x:?}");
                    assert!(
                        x.prog_id.is_none() || x.prog_id == u32_at(&m, 48),
                        "byte {at} = {v}: {x:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn request_names_the_interface() {
        let r = request(9, 1);
        assert_eq!(r.len(), 32);
        assert_eq!(u16_at(&r, 4), Some(RTM_GETLINK));
        assert_eq!(u32_at(&r, 20), Some(9));
    }
}
