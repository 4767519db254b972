//! The sans-IO transaction layer: assigns frame identities, matches replies, runs
//! timeouts and retries. Bytes and the current time go in; frames to send and completed
//! transactions come out (quinn-proto style), so tests drive it with virtual time.
//!
//! Frame identity: every frame this process sends carries the process's source MAC
//! address (see [`identity_for_pid`]) and one index byte shared by all its datagrams. A
//! reply is ours only if its source MAC equals ours with bit 1 of the first byte set
//! (every terminal sets it, so a frame that never passed a terminal — e.g. our own
//! transmission looped back — is not a reply), its first datagram's index is a pending
//! transaction, and its datagrams repeat the request's commands and lengths.

use super::TransportError;
use crate::ethercat::wire::{Command, DatagramRepr, Frame, FrameRepr};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Broadcast destination MAC used for every frame (ETG.1000.4 §5.3: terminals do not
/// evaluate the destination).
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// Bit of the first source-MAC byte that terminals set on frames they forward
/// ("locally administered"), ETG.1000.4 §5.3.1 / ESC datasheets (port 0 processing).
pub const MAC_BIT_SET_BY_TERMINALS: u8 = 0x02;

/// The source MAC address that identifies this process's frames: unicast, bit 1 of the
/// first byte clear, `10:fc` followed by the process id in big-endian order. Terminals
/// set bit 1 of the first byte, so replies come back as `12:fc:<pid>`.
pub fn identity_for_pid(pid: u32) -> [u8; 6] {
    let p = pid.to_be_bytes();
    [0x10, 0xfc, p[0], p[1], p[2], p[3]]
}

/// Timeout and retry policy of one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long to wait for the reply of one attempt.
    pub timeout: Duration,
    /// How many times to resend after a timeout (0: send once).
    pub retries: u8,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            timeout: Duration::from_millis(50),
            retries: 3,
        }
    }
}

/// Caller-chosen identifier of a transaction.
pub type TxId = u64;

/// A completed transaction.
#[derive(Debug)]
pub struct Completion {
    /// The transaction.
    pub id: TxId,
    /// The reply's datagrams (data and working counters as they came back), or why none came.
    pub result: Result<Vec<DatagramRepr>, TransportError>,
}

#[derive(Debug)]
struct Pending {
    id: TxId,
    bytes: Vec<u8>,
    request: Vec<DatagramRepr>,
    policy: Policy,
    attempts: u8,
    deadline: Instant,
}

#[derive(Debug)]
struct Queued {
    id: TxId,
    datagrams: Vec<DatagramRepr>,
    policy: Policy,
}

/// The transaction state machine of one process.
#[derive(Debug)]
pub struct Transactions {
    identity: [u8; 6],
    next_index: u8,
    pending: HashMap<u8, Pending>,
    queue: VecDeque<Queued>,
    transmit: VecDeque<(TxId, Vec<u8>)>,
    completed: VecDeque<Completion>,
}

/// The source MAC a reply to a frame sent from `identity` carries.
fn as_returned(identity: [u8; 6]) -> [u8; 6] {
    let mut m = identity;
    m[0] |= MAC_BIT_SET_BY_TERMINALS;
    m
}

impl Transactions {
    /// A state machine whose frames carry `identity` as source MAC. Bit 1 of the first
    /// byte is cleared: it marks frames that passed a terminal.
    pub fn new(identity: [u8; 6]) -> Transactions {
        let mut identity = identity;
        identity[0] &= !MAC_BIT_SET_BY_TERMINALS;
        Transactions {
            identity,
            next_index: 0,
            pending: HashMap::new(),
            queue: VecDeque::new(),
            transmit: VecDeque::new(),
            completed: VecDeque::new(),
        }
    }

    /// The source MAC address of this process's frames.
    pub fn identity(&self) -> [u8; 6] {
        self.identity
    }

    /// Number of transactions waiting for a reply.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Start a transaction of `datagrams` in one frame. Rejects frames that start with a
    /// NOP datagram: those are reserved for cyclic frames' sync-group tags (see NOTES).
    pub fn submit(
        &mut self,
        id: TxId,
        datagrams: Vec<DatagramRepr>,
        policy: Policy,
        now: Instant,
    ) -> Result<(), TransportError> {
        match datagrams.first() {
            None => {
                return Err(TransportError::Wire(
                    crate::ethercat::wire::WireError::Empty,
                ));
            }
            Some(d) if d.command == Command::Nop => return Err(TransportError::NopFirst),
            Some(_) => {}
        }
        // Validate size now so the error goes to the caller, not to the driver.
        FrameRepr {
            destination: BROADCAST_MAC,
            source: self.identity,
            datagrams: datagrams.clone(),
        }
        .check()?;
        self.queue.push_back(Queued {
            id,
            datagrams,
            policy,
        });
        self.start_queued(now);
        Ok(())
    }

    fn start_queued(&mut self, now: Instant) {
        while self.pending.len() < 256 {
            let Some(q) = self.queue.pop_front() else {
                return;
            };
            let mut index = self.next_index;
            while self.pending.contains_key(&index) {
                index = index.wrapping_add(1);
            }
            self.next_index = index.wrapping_add(1);
            let mut datagrams = q.datagrams;
            for d in &mut datagrams {
                d.index = index;
            }
            let frame = FrameRepr {
                destination: BROADCAST_MAC,
                source: self.identity,
                datagrams,
            };
            let bytes = match frame.to_bytes() {
                Ok(b) => b,
                Err(e) => {
                    self.completed.push_back(Completion {
                        id: q.id,
                        result: Err(e.into()),
                    });
                    continue;
                }
            };
            self.transmit.push_back((q.id, bytes.clone()));
            self.pending.insert(
                index,
                Pending {
                    id: q.id,
                    bytes,
                    request: frame.datagrams,
                    policy: q.policy,
                    attempts: 1,
                    deadline: now + q.policy.timeout,
                },
            );
        }
    }

    /// The next frame to send, with the transaction it belongs to.
    pub fn poll_transmit(&mut self) -> Option<(TxId, Vec<u8>)> {
        self.transmit.pop_front()
    }

    /// The next completed transaction.
    pub fn poll_completion(&mut self) -> Option<Completion> {
        self.completed.pop_front()
    }

    /// The earliest moment [`Transactions::on_timeout`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Fail transaction `id` (e.g. the link could not send its frame).
    pub fn fail(&mut self, id: TxId, error: TransportError, now: Instant) {
        if let Some(index) = self
            .pending
            .iter()
            .find_map(|(i, p)| (p.id == id).then_some(*i))
        {
            self.pending.remove(&index);
            self.completed.push_back(Completion {
                id,
                result: Err(error),
            });
            self.start_queued(now);
        }
    }

    /// Offer a received frame. Returns whether it was a reply to one of our transactions;
    /// anything else (other processes' frames, cyclic frames, malformed bytes, duplicates)
    /// is ignored.
    pub fn on_receive(&mut self, bytes: &[u8], now: Instant) -> bool {
        let Ok(frame) = Frame::new_checked(bytes) else {
            return false;
        };
        if frame.source() != as_returned(self.identity) {
            return false;
        }
        let first = frame.first();
        if first.command() == Command::Nop {
            return false;
        }
        let index = first.index();
        let Some(pending) = self.pending.get(&index) else {
            return false;
        };
        let matches = frame.datagram_count() == pending.request.len()
            && frame.datagrams().zip(&pending.request).all(|(got, sent)| {
                got.command() == sent.command
                    && got.index() == sent.index
                    && got.data_len() == sent.data.len()
            });
        if !matches {
            return false;
        }
        let reply = FrameRepr::parse(&frame).datagrams;
        if let Some(p) = self.pending.remove(&index) {
            self.completed.push_back(Completion {
                id: p.id,
                result: Ok(reply),
            });
        }
        self.start_queued(now);
        true
    }

    /// Resend or fail every transaction whose deadline has passed.
    pub fn on_timeout(&mut self, now: Instant) {
        let expired: Vec<u8> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(i, _)| *i)
            .collect();
        for index in expired {
            let Some(p) = self.pending.get_mut(&index) else {
                continue;
            };
            if p.attempts <= p.policy.retries {
                p.attempts += 1;
                p.deadline = now + p.policy.timeout;
                tracing::debug!(index, attempt = p.attempts, "no reply, resending frame");
                self.transmit.push_back((p.id, p.bytes.clone()));
            } else if let Some(p) = self.pending.remove(&index) {
                let first = &p.request[0];
                self.completed.push_back(Completion {
                    id: p.id,
                    result: Err(TransportError::Timeout {
                        command: first.command,
                        address: first.address(),
                        attempts: p.attempts,
                        timeout: p.policy.timeout,
                    }),
                });
            }
        }
        self.start_queued(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethercat::wire::{Address, Frame};

    fn brd() -> Vec<DatagramRepr> {
        vec![DatagramRepr::new(
            Command::Brd,
            Address::Broadcast { register: 0 },
            vec![0; 2],
        )]
    }

    /// What a bus of `n` terminals does to a BRD frame: data stays, WKC grows, bit 1
    /// of the source MAC gets set.
    fn bus_reply(bytes: &[u8], n: u16) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[6] |= MAC_BIT_SET_BY_TERMINALS;
        let mut f = Frame::new_checked(&mut out[..]).unwrap();
        for mut d in f.datagrams_mut() {
            d.set_wkc(n);
        }
        out
    }

    #[test]
    fn reply_is_matched_by_identity_and_index() {
        let t0 = Instant::now();
        let mut tx = Transactions::new(identity_for_pid(4242));
        tx.submit(1, brd(), Policy::default(), t0).unwrap();
        tx.submit(2, brd(), Policy::default(), t0).unwrap();
        let (id1, f1) = tx.poll_transmit().unwrap();
        let (id2, f2) = tx.poll_transmit().unwrap();
        assert_eq!((id1, id2), (1, 2));
        assert_eq!(tx.in_flight(), 2);
        // Replies out of order.
        assert!(tx.on_receive(&bus_reply(&f2, 5), t0));
        assert!(tx.on_receive(&bus_reply(&f1, 7), t0));
        let c = tx.poll_completion().unwrap();
        assert_eq!(c.id, 2);
        assert_eq!(c.result.unwrap()[0].wkc, 5);
        let c = tx.poll_completion().unwrap();
        assert_eq!(c.id, 1);
        assert_eq!(c.result.unwrap()[0].wkc, 7);
        // A duplicate is ignored.
        assert!(!tx.on_receive(&bus_reply(&f1, 7), t0));
    }

    #[test]
    fn two_processes_never_take_each_others_replies() {
        let t0 = Instant::now();
        let mut a = Transactions::new(identity_for_pid(100));
        let mut b = Transactions::new(identity_for_pid(200));
        a.submit(1, brd(), Policy::default(), t0).unwrap();
        b.submit(1, brd(), Policy::default(), t0).unwrap();
        let (_, fa) = a.poll_transmit().unwrap();
        let (_, fb) = b.poll_transmit().unwrap();
        // Both use datagram index 0: only the MAC tells them apart.
        assert_eq!(fa[17], fb[17]);
        let ra = bus_reply(&fa, 1);
        let rb = bus_reply(&fb, 2);
        // Both sockets see both replies.
        assert!(!a.on_receive(&rb, t0));
        assert!(a.on_receive(&ra, t0));
        assert!(b.on_receive(&rb, t0));
        assert!(!b.on_receive(&ra, t0));
        assert_eq!(a.poll_completion().unwrap().result.unwrap()[0].wkc, 1);
        assert_eq!(b.poll_completion().unwrap().result.unwrap()[0].wkc, 2);
    }

    #[test]
    fn own_frame_looped_back_is_not_a_reply() {
        let t0 = Instant::now();
        let mut tx = Transactions::new(identity_for_pid(5));
        tx.submit(1, brd(), Policy::default(), t0).unwrap();
        let (_, f) = tx.poll_transmit().unwrap();
        assert!(!tx.on_receive(&f, t0), "never passed a terminal");
        assert!(tx.on_receive(&bus_reply(&f, 0), t0));
    }

    #[test]
    fn reply_of_a_different_shape_is_not_ours() {
        let t0 = Instant::now();
        let mut tx = Transactions::new(identity_for_pid(1));
        tx.submit(1, brd(), Policy::default(), t0).unwrap();
        let (_, f) = tx.poll_transmit().unwrap();
        // A frame with our identity and index but a different command is not ours.
        let mut other = f.clone();
        other[16] = Command::Aprd.code();
        assert!(!tx.on_receive(&other, t0));
        assert!(!tx.on_receive(&f[..20], t0), "malformed bytes are ignored");
        assert_eq!(tx.in_flight(), 1);
    }

    #[test]
    fn timeouts_resend_then_fail_with_context() {
        let t0 = Instant::now();
        let mut tx = Transactions::new(identity_for_pid(1));
        let policy = Policy {
            timeout: Duration::from_millis(10),
            retries: 2,
        };
        let req = vec![DatagramRepr::new(
            Command::Fprd,
            Address::Station {
                station: 0x1001,
                register: 0x0130,
            },
            vec![0; 2],
        )];
        tx.submit(9, req, policy, t0).unwrap();
        let (_, first) = tx.poll_transmit().unwrap();
        assert_eq!(tx.next_deadline(), Some(t0 + Duration::from_millis(10)));
        tx.on_timeout(t0 + Duration::from_millis(5));
        assert!(tx.poll_transmit().is_none(), "not yet expired");
        tx.on_timeout(t0 + Duration::from_millis(10));
        let (_, again) = tx.poll_transmit().expect("first retry");
        assert_eq!(again, first, "a retry resends the same frame");
        tx.on_timeout(t0 + Duration::from_millis(20));
        assert!(tx.poll_transmit().is_some(), "second retry");
        tx.on_timeout(t0 + Duration::from_millis(30));
        assert!(tx.poll_transmit().is_none());
        let c = tx.poll_completion().unwrap();
        assert_eq!(c.id, 9);
        let err = c.result.unwrap_err();
        assert_eq!(
            err.to_string(),
            "no reply to FPRD station 0x1001 register 0x0130 after 3 attempts of 10ms each"
        );
        assert_eq!(tx.in_flight(), 0);
    }

    #[test]
    fn late_reply_after_retry_completes_once() {
        let t0 = Instant::now();
        let mut tx = Transactions::new(identity_for_pid(1));
        tx.submit(3, brd(), Policy::default(), t0).unwrap();
        let (_, f) = tx.poll_transmit().unwrap();
        tx.on_timeout(t0 + Duration::from_secs(1));
        let _retry = tx.poll_transmit().unwrap();
        assert!(tx.on_receive(&bus_reply(&f, 1), t0 + Duration::from_secs(1)));
        assert!(!tx.on_receive(&bus_reply(&f, 1), t0 + Duration::from_secs(1)));
        assert_eq!(tx.poll_completion().unwrap().id, 3);
        assert!(tx.poll_completion().is_none());
    }

    #[test]
    fn frames_starting_with_nop_are_refused_and_ignored() {
        let t0 = Instant::now();
        let mut tx = Transactions::new(identity_for_pid(1));
        let nop = vec![DatagramRepr::new(
            Command::Nop,
            Address::Raw(0x0001_0000),
            vec![],
        )];
        assert!(matches!(
            tx.submit(1, nop.clone(), Policy::default(), t0),
            Err(TransportError::NopFirst)
        ));
        // A cyclic-looking frame with our identity is never taken as a reply.
        tx.submit(2, brd(), Policy::default(), t0).unwrap();
        let (_, f) = tx.poll_transmit().unwrap();
        let mut cyclic = FrameRepr::parse_bytes(&f).unwrap();
        cyclic.datagrams.insert(0, nop[0].clone());
        let bytes = cyclic.to_bytes().unwrap();
        assert!(!tx.on_receive(&bytes, t0));
    }

    #[test]
    fn more_than_256_transactions_queue_and_all_complete() {
        let t0 = Instant::now();
        let mut tx = Transactions::new(identity_for_pid(1));
        for id in 0..300 {
            tx.submit(id, brd(), Policy::default(), t0).unwrap();
        }
        assert_eq!(tx.in_flight(), 256);
        let mut done = 0;
        while let Some((_, f)) = tx.poll_transmit() {
            assert!(tx.on_receive(&bus_reply(&f, 1), t0));
            done += 1;
        }
        assert_eq!(done, 300);
        let mut ids: Vec<_> = std::iter::from_fn(|| tx.poll_completion())
            .map(|c| c.id)
            .collect();
        ids.sort();
        assert_eq!(ids, (0..300).collect::<Vec<_>>());
    }
}
