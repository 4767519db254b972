//! Transactions over a link: request/response matching, timeouts, retries, working counters.
//!
//! [`core::Transactions`] is the sans-IO state machine; [`Transport`] is the thin async
//! shell around it: one driver task owns the [`Link`] and the state machine, callers send
//! requests to it and await their replies. Many transactions may be in flight at once.

pub mod core;
pub mod link;
pub mod raw;

pub use self::core::{Policy, identity_for_pid};
pub use link::{ChannelLink, Link};
pub use raw::RawSocketLink;

use crate::ethercat::capture::{Direction, FrameSink};
use crate::ethercat::station_io::{StationIo, StationIoError};
use crate::ethercat::wire::{Address, Command, DatagramRepr, WireError};
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// Why a transaction failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// No reply came back in time, after all retries.
    #[error("no reply to {command} {address} after {attempts} attempts of {timeout:?} each")]
    Timeout {
        /// Command of the frame's first datagram.
        command: Command,
        /// Its address.
        address: Address,
        /// How many times the frame was sent.
        attempts: u8,
        /// How long each attempt waited.
        timeout: Duration,
    },
    /// A reply came back with an unexpected working counter.
    #[error("{command} {address}: working counter {got}, expected {expected}")]
    WorkingCounter {
        /// The datagram's command.
        command: Command,
        /// Its address.
        address: Address,
        /// The expected working counter.
        expected: u16,
        /// The working counter that came back.
        got: u16,
    },
    /// The frame cannot be built.
    #[error("cannot build the frame: {0}")]
    Wire(#[from] WireError),
    /// The frame starts with a NOP datagram, which is reserved for cyclic frames' tags.
    #[error(
        "a non-cyclic frame must not start with a NOP datagram (reserved for cyclic frame tags)"
    )]
    NopFirst,
    /// The link failed (socket error, in-process bus gone).
    #[error("link error: {0}")]
    Link(Arc<std::io::Error>),
    /// The transport's driver has stopped.
    #[error("the EtherCAT transport is closed")]
    Closed,
}

/// Settings of a transport.
pub struct TransportConfig {
    /// Source MAC address identifying this process's frames.
    pub identity: [u8; 6],
    /// Default timeout and retries.
    pub policy: Policy,
    /// Where to record every frame sent and every reply received, if anywhere.
    pub capture: Option<Box<dyn FrameSink>>,
}

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportConfig")
            .field("identity", &self.identity)
            .field("policy", &self.policy)
            .field("capture", &self.capture.is_some())
            .finish()
    }
}

impl Default for TransportConfig {
    fn default() -> TransportConfig {
        TransportConfig {
            identity: identity_for_pid(std::process::id()),
            policy: Policy::default(),
            capture: None,
        }
    }
}

struct Request {
    datagrams: Vec<DatagramRepr>,
    policy: Policy,
    reply: oneshot::Sender<Result<Vec<DatagramRepr>, TransportError>>,
}

/// A handle to the transport; cheap to clone, usable from many tasks at once.
#[derive(Debug, Clone)]
pub struct Transport {
    requests: mpsc::UnboundedSender<Request>,
    policy: Policy,
    identity: [u8; 6],
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("datagrams", &self.datagrams.len())
            .finish()
    }
}

impl Transport {
    /// Start a transport over `link`: spawns its driver task on the current tokio runtime.
    /// The driver stops when the last handle is dropped.
    pub fn spawn(link: impl Link, config: TransportConfig) -> Transport {
        let (tx, rx) = mpsc::unbounded_channel();
        let transport = Transport {
            requests: tx,
            policy: config.policy,
            identity: config.identity,
        };
        tokio::spawn(drive(link, config, rx));
        transport
    }

    /// Open a raw socket on `interface` and start a transport over it.
    pub fn open(interface: &str, config: TransportConfig) -> std::io::Result<Transport> {
        Ok(Transport::spawn(RawSocketLink::open(interface)?, config))
    }

    /// The default timeout and retry policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The source MAC address identifying this process's frames.
    pub fn identity(&self) -> [u8; 6] {
        self.identity
    }

    /// Send `datagrams` in one frame and return them as they came back (data and working
    /// counters), using the default policy.
    pub async fn exchange(
        &self,
        datagrams: Vec<DatagramRepr>,
    ) -> Result<Vec<DatagramRepr>, TransportError> {
        self.exchange_with(datagrams, self.policy).await
    }

    /// [`Transport::exchange`] with an explicit timeout and retry policy.
    pub async fn exchange_with(
        &self,
        datagrams: Vec<DatagramRepr>,
        policy: Policy,
    ) -> Result<Vec<DatagramRepr>, TransportError> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Request {
                datagrams,
                policy,
                reply,
            })
            .map_err(|_| TransportError::Closed)?;
        rx.await.map_err(|_| TransportError::Closed)?
    }

    /// Send many datagrams packed into as few frames as fit, all frames in flight at
    /// once; returns the datagrams as they came back, in the order given.
    pub async fn batch(
        &self,
        datagrams: Vec<DatagramRepr>,
    ) -> Result<Vec<DatagramRepr>, TransportError> {
        let groups = datagrams.into_iter().map(|d| vec![d]).collect();
        Ok(self
            .batch_groups(groups)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Send groups of datagrams, each group whole in one frame and in its order, as many
    /// groups per frame as fit, all frames in flight at once; returns each group as it
    /// came back. A terminal sees the datagrams of a group in order and all or none of
    /// them (a lost frame is resent whole), which a sequence of register writes that
    /// must arrive together needs (e.g. SYNC start time before activation).
    pub async fn batch_groups(
        &self,
        groups: Vec<Vec<DatagramRepr>>,
    ) -> Result<Vec<Vec<DatagramRepr>>, TransportError> {
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        let frames = pack_groups(groups);
        let mut set = tokio::task::JoinSet::new();
        let count = frames.len();
        for (i, frame) in frames.into_iter().enumerate() {
            let t = self.clone();
            set.spawn(async move { (i, t.exchange(frame).await) });
        }
        let mut replies: Vec<Option<Vec<DatagramRepr>>> = vec![None; count];
        while let Some(done) = set.join_next().await {
            let (i, reply) = done.map_err(|_| TransportError::Closed)?;
            replies[i] = Some(reply?);
        }
        let mut flat = replies.into_iter().flatten().flatten();
        Ok(sizes
            .iter()
            .map(|&n| flat.by_ref().take(n).collect())
            .collect())
    }

    /// One datagram of `command` at `address` carrying `data`; returns the datagram
    /// that came back.
    pub async fn datagram(
        &self,
        command: Command,
        address: Address,
        data: Vec<u8>,
    ) -> Result<DatagramRepr, TransportError> {
        let mut reply = self
            .exchange(vec![DatagramRepr::new(command, address, data)])
            .await?;
        reply.pop().ok_or(TransportError::Closed)
    }

    /// One datagram whose working counter must equal `expected`; returns its data.
    pub async fn checked(
        &self,
        command: Command,
        address: Address,
        data: Vec<u8>,
        expected: u16,
    ) -> Result<Vec<u8>, TransportError> {
        let reply = self.datagram(command, address, data).await?;
        expect_wkc(&reply, expected)?;
        Ok(reply.data)
    }

    /// Broadcast read of `len` bytes at `register`: (data ORed over terminals, working
    /// counter = number of terminals that answered).
    pub async fn brd(&self, register: u16, len: usize) -> Result<(Vec<u8>, u16), TransportError> {
        let d = self
            .datagram(Command::Brd, Address::Broadcast { register }, vec![0; len])
            .await?;
        Ok((d.data, d.wkc))
    }

    /// Broadcast write of `data` at `register`; returns the working counter.
    pub async fn bwr(&self, register: u16, data: &[u8]) -> Result<u16, TransportError> {
        let d = self
            .datagram(Command::Bwr, Address::Broadcast { register }, data.to_vec())
            .await?;
        Ok(d.wkc)
    }

    /// Read `len` bytes at `register` of the terminal at `position` (working counter 1).
    pub async fn aprd(
        &self,
        position: u16,
        register: u16,
        len: usize,
    ) -> Result<Vec<u8>, TransportError> {
        self.checked(
            Command::Aprd,
            Address::Position { position, register },
            vec![0; len],
            1,
        )
        .await
    }

    /// Write `data` at `register` of the terminal at `position` (working counter 1).
    pub async fn apwr(
        &self,
        position: u16,
        register: u16,
        data: &[u8],
    ) -> Result<(), TransportError> {
        self.checked(
            Command::Apwr,
            Address::Position { position, register },
            data.to_vec(),
            1,
        )
        .await
        .map(drop)
    }

    /// Read `len` bytes at `register` of terminal `station` (working counter 1).
    pub async fn fprd(
        &self,
        station: u16,
        register: u16,
        len: usize,
    ) -> Result<Vec<u8>, TransportError> {
        self.checked(
            Command::Fprd,
            Address::Station { station, register },
            vec![0; len],
            1,
        )
        .await
    }

    /// Write `data` at `register` of terminal `station` (working counter 1).
    pub async fn fpwr(
        &self,
        station: u16,
        register: u16,
        data: &[u8],
    ) -> Result<(), TransportError> {
        self.checked(
            Command::Fpwr,
            Address::Station { station, register },
            data.to_vec(),
            1,
        )
        .await
        .map(drop)
    }
}

/// The frames that carry `groups`: each group whole, in order, as many groups per frame
/// as fit in [`MAX_DATAGRAMS_LEN`](crate::ethercat::wire::frame::MAX_DATAGRAMS_LEN)
/// bytes of datagrams (a group larger than that gets a frame of its own).
fn pack_groups(groups: Vec<Vec<DatagramRepr>>) -> Vec<Vec<DatagramRepr>> {
    let mut frames: Vec<Vec<DatagramRepr>> = Vec::new();
    let mut current = Vec::new();
    let mut len = 0;
    for group in groups {
        let l: usize = group.iter().map(DatagramRepr::wire_len).sum();
        if !current.is_empty() && len + l > crate::ethercat::wire::frame::MAX_DATAGRAMS_LEN {
            frames.push(std::mem::take(&mut current));
            len = 0;
        }
        len += l;
        current.extend(group);
    }
    if !current.is_empty() {
        frames.push(current);
    }
    frames
}

/// Check a reply datagram's working counter.
pub fn expect_wkc(reply: &DatagramRepr, expected: u16) -> Result<(), TransportError> {
    if reply.wkc == expected {
        Ok(())
    } else {
        Err(TransportError::WorkingCounter {
            command: reply.command,
            address: reply.address(),
            expected,
            got: reply.wkc,
        })
    }
}

/// A transport failure of one register access to `station`, as [`StationIo`] reports it.
pub(crate) fn station_error(station: u16, register: u16, e: TransportError) -> StationIoError {
    match e {
        TransportError::Timeout {
            attempts,
            timeout: each,
            ..
        } => StationIoError::Timeout {
            station,
            register,
            timeout: each * u32::from(attempts).max(1),
        },
        TransportError::Closed => StationIoError::Closed,
        TransportError::Wire(WireError::TooLong { needed }) => StationIoError::OutOfRange {
            station,
            register,
            len: needed,
        },
        other => StationIoError::Transport {
            station,
            register,
            source: Box::new(other),
        },
    }
}

fn check_range(station: u16, register: u16, len: usize) -> Result<(), StationIoError> {
    if usize::from(register) + len > 0x1_0000
        || len > crate::ethercat::wire::frame::MAX_DATAGRAM_DATA
    {
        return Err(StationIoError::OutOfRange {
            station,
            register,
            len,
        });
    }
    Ok(())
}

impl StationIo for Transport {
    fn read(
        &self,
        station: u16,
        register: u16,
        buf: &mut [u8],
    ) -> impl Future<Output = Result<u16, StationIoError>> + Send {
        let len = buf.len();
        async move {
            check_range(station, register, len)?;
            let reply = self
                .datagram(
                    Command::Fprd,
                    Address::Station { station, register },
                    vec![0; len],
                )
                .await
                .map_err(|e| station_error(station, register, e))?;
            if reply.wkc != 0 {
                buf.copy_from_slice(&reply.data);
            }
            Ok(reply.wkc)
        }
    }

    fn write(
        &self,
        station: u16,
        register: u16,
        data: &[u8],
    ) -> impl Future<Output = Result<u16, StationIoError>> + Send {
        let data = data.to_vec();
        async move {
            check_range(station, register, data.len())?;
            let reply = self
                .datagram(Command::Fpwr, Address::Station { station, register }, data)
                .await
                .map_err(|e| station_error(station, register, e))?;
            Ok(reply.wkc)
        }
    }
}

/// The driver task: owns the link and the state machine.
async fn drive(
    mut link: impl Link,
    mut config: TransportConfig,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let mut tx = self::core::Transactions::new(config.identity);
    let mut waiting: HashMap<u64, oneshot::Sender<Result<Vec<DatagramRepr>, TransportError>>> =
        HashMap::new();
    let mut next_id: u64 = 0;
    let mut buf = vec![0u8; 2048];
    let mut open = true;
    loop {
        let now = tokio::time::Instant::now().into_std();
        while let Some((id, frame)) = tx.poll_transmit() {
            if let Some(sink) = config.capture.as_mut() {
                sink.record(Direction::Sent, SystemTime::now(), &frame);
            }
            if let Err(e) = poll_fn(|cx| link.poll_send(cx, &frame)).await {
                tracing::warn!(error = %e, "sending a frame failed");
                tx.fail(id, TransportError::Link(Arc::new(e)), now);
            }
        }
        while let Some(c) = tx.poll_completion() {
            if let Some(reply) = waiting.remove(&c.id) {
                let _ = reply.send(c.result);
            }
        }
        if !open && waiting.is_empty() {
            return;
        }
        let deadline = tx.next_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            req = requests.recv(), if open => match req {
                None => open = false,
                Some(r) => {
                    let id = next_id;
                    next_id += 1;
                    match tx.submit(id, r.datagrams, r.policy, tokio::time::Instant::now().into_std()) {
                        Ok(()) => { waiting.insert(id, r.reply); }
                        Err(e) => { let _ = r.reply.send(Err(e)); }
                    }
                }
            },
            got = poll_fn(|cx| link.poll_recv(cx, &mut buf)) => match got {
                Ok(n) => {
                    let frame = &buf[..n];
                    if tx.on_receive(frame, tokio::time::Instant::now().into_std()) {
                        if let Some(sink) = config.capture.as_mut() {
                            sink.record(Direction::Received, SystemTime::now(), frame);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "the link failed; failing all transactions");
                    let e = Arc::new(e);
                    for (_, reply) in waiting.drain() {
                        let _ = reply.send(Err(TransportError::Link(e.clone())));
                    }
                    return;
                }
            },
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => tx.on_timeout(tokio::time::Instant::now().into_std()),
        }
    }
}

#[cfg(test)]
mod tests;
