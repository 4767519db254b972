//! Links: what carries whole Ethernet frames between the transport and a bus. A raw
//! AF_PACKET socket on a network interface for real buses, a channel pair for an
//! in-process bus (the simulator, or a test's fake).

use std::io;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A carrier of whole Ethernet frames (without FCS).
pub trait Link: Send + 'static {
    /// Send one frame, or register the waker and return `Pending` if the link is busy.
    fn poll_send(&mut self, cx: &mut Context<'_>, frame: &[u8]) -> Poll<io::Result<()>>;
    /// Receive one frame into `buf`, returning its length.
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
}

/// An in-process link over a pair of channels: frames sent go to `tx`, frames received
/// come from `rx`. The other end is a simulated bus (`ferrocat-sim`'s in-process mode)
/// or a test's fake terminal.
#[derive(Debug)]
pub struct ChannelLink {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl ChannelLink {
    /// A link sending into `tx` and receiving from `rx`.
    pub fn new(tx: mpsc::UnboundedSender<Vec<u8>>, rx: mpsc::UnboundedReceiver<Vec<u8>>) -> Self {
        ChannelLink { tx, rx }
    }

    /// A link and the bus side of it: (link, frames the master sent, sender of replies).
    pub fn pair() -> (
        ChannelLink,
        mpsc::UnboundedReceiver<Vec<u8>>,
        mpsc::UnboundedSender<Vec<u8>>,
    ) {
        let (to_bus, from_master) = mpsc::unbounded_channel();
        let (to_master, from_bus) = mpsc::unbounded_channel();
        (ChannelLink::new(to_bus, from_bus), from_master, to_master)
    }
}

impl Link for ChannelLink {
    fn poll_send(&mut self, _cx: &mut Context<'_>, frame: &[u8]) -> Poll<io::Result<()>> {
        Poll::Ready(
            self.tx.send(frame.to_vec()).map_err(|_| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the in-process bus is gone")
            }),
        )
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the in-process bus is gone",
            ))),
            Poll::Ready(Some(frame)) => {
                let n = frame.len().min(buf.len());
                buf[..n].copy_from_slice(&frame[..n]);
                Poll::Ready(Ok(n))
            }
        }
    }
}

impl Link for Box<dyn Link> {
    fn poll_send(&mut self, cx: &mut Context<'_>, frame: &[u8]) -> Poll<io::Result<()>> {
        (**self).poll_send(cx, frame)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        (**self).poll_recv(cx, buf)
    }
}
