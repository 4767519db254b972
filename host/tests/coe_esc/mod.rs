//! A terminal for CoE tests: the simulator's CoE server (ferrocat-sim) behind an ESC
//! register space whose SM0/SM1 behave as mailbox SyncManagers (ETG.1000.4 §8.2.2):
//! a write of SM0 hands the request to the server, SM1 holds one reply at a time and is
//! emptied by reading it, the SM1 repeat bit re-presents the last reply. Faults can be
//! injected: lost frames (before or after the terminal), a vanished terminal.

#![allow(dead_code)]

use ferrocat::ethercat::station_io::{StationIo, StationIoError};
use ferrocat_sim::coe::dictionary::{Access, Entry, Object, ObjectCode};
use ferrocat_sim::coe::{AccessState, CoeServer, ObjectDictionary};
use std::future::Future;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// SM0 (master to terminal) of the EL7041: 0x1000, 128 bytes (its SII).
pub const SM0: (u16, u16) = (0x1000, 0x80);
/// SM1 (terminal to master) of the EL7041: 0x1080, 128 bytes (its SII).
pub const SM1: (u16, u16) = (0x1080, 0x80);

/// Faults to inject, counted down as they happen.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Reads of SM1 whose frame is lost after the terminal emptied SM1.
    pub lose_reply_reads: u32,
    /// Writes of SM0 whose frame is lost before reaching the terminal.
    pub lose_requests_before: u32,
    /// Writes of SM0 whose frame is lost after the terminal took the request.
    pub lose_requests_after: u32,
    /// The terminal no longer answers (working counter 0 on everything).
    pub gone: bool,
    /// The terminal never answers its mailbox (requests are taken but not served).
    pub mute: bool,
    /// The terminal answers no request but has an emergency in SM1 whenever the master
    /// looks.
    pub babble: bool,
    /// Mailbox frames (header included) sent in place of the terminal's own replies,
    /// one per request, for replies no honest terminal gives.
    pub script: std::collections::VecDeque<Vec<u8>>,
}

struct Inner {
    regs: Vec<u8>,
    server: CoeServer,
    /// The reply currently in SM1.
    presented: Option<Vec<u8>>,
    /// Repeat acknowledge bit of SM1 (0x080F bit 1).
    repeat_ack: bool,
    faults: Faults,
    /// Requests the terminal handled.
    requests: u32,
    state: AccessState,
}

/// One simulated CoE terminal at a station address.
pub struct CoeTerminal {
    pub station: u16,
    inner: Mutex<Inner>,
}

fn overlaps(reg: u16, len: usize, start: u16, size: u16) -> bool {
    let (a, b) = (usize::from(reg), usize::from(reg) + len);
    let (s, e) = (usize::from(start), usize::from(start) + usize::from(size));
    a < e && s < b
}

fn testdata(rel: &str) -> String {
    format!("{}/../../shared/testdata/{rel}", env!("CARGO_MANIFEST_DIR"))
}

impl CoeTerminal {
    /// A terminal serving `od`.
    pub fn new(station: u16, od: ObjectDictionary) -> Self {
        Self {
            station,
            inner: Mutex::new(Inner {
                regs: vec![0; 0x1_0000],
                server: CoeServer::new(od, usize::from(SM1.1)),
                presented: None,
                repeat_ack: false,
                faults: Faults::default(),
                requests: 0,
                state: AccessState::PreOp,
            }),
        }
    }

    /// The EL7041 with its recorded dictionary.
    pub fn el7041(station: u16) -> Self {
        let od = ObjectDictionary::from_json_file(Path::new(&testdata("sdo/el7041.json")))
            .expect("el7041.json loads");
        Self::new(station, od)
    }

    /// The EL7041 plus a 4 KiB read-write octet-string object 0x2100:00 for large transfers.
    pub fn el7041_with_domain(station: u16) -> Self {
        let mut od = ObjectDictionary::from_json_file(Path::new(&testdata("sdo/el7041.json")))
            .expect("el7041.json loads");
        let mut entries = std::collections::BTreeMap::new();
        entries.insert(
            0,
            Entry {
                name: "Large buffer".into(),
                data_type: 0x000A,
                bit_len: 4096 * 8,
                access: Access(Access::READ_ALL | Access::WRITE_ALL),
                value: vec![0; 4096],
            },
        );
        od.insert(Object {
            index: 0x2100,
            name: "Large buffer".into(),
            code: ObjectCode::Var,
            entries,
        });
        Self::new(station, od)
    }

    /// Changes the injected faults.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        let mut g = self.inner.lock().expect("lock");
        f(&mut g.faults);
    }

    /// Queues an emergency in the terminal's mailbox.
    pub fn emergency(&self, e: ferrocat_sim::coe::Emergency) {
        let mut g = self.inner.lock().expect("lock");
        g.server.queue_emergency(e);
    }

    /// Requests handled so far.
    pub fn requests(&self) -> u32 {
        self.inner.lock().expect("lock").requests
    }

    /// A value of the terminal's dictionary.
    pub fn value(&self, index: u16, sub: u8) -> Option<Vec<u8>> {
        let g = self.inner.lock().expect("lock");
        g.server.dictionary().value(index, sub).map(<[u8]>::to_vec)
    }

    fn lost(&self, register: u16) -> StationIoError {
        StationIoError::Timeout {
            station: self.station,
            register,
            timeout: Duration::from_millis(1),
        }
    }

    fn refill(g: &mut Inner) {
        if g.presented.is_none() && g.faults.babble {
            // Replies are lost inside the terminal; an emergency is always waiting.
            while g.server.pop_reply().is_some() {}
            g.server.queue_emergency(ferrocat_sim::coe::Emergency {
                error_code: 0xFF00,
                error_register: 0x80,
                data: [0; 5],
            });
            g.presented = g.server.pop_reply();
            return;
        }
        if g.presented.is_none() && !g.faults.script.is_empty() {
            if g.server.pop_reply().is_some() {
                g.presented = g.faults.script.pop_front();
            }
            return;
        }
        if g.presented.is_none() && !g.faults.mute {
            g.presented = g.server.pop_reply();
        }
    }
}

impl StationIo for CoeTerminal {
    fn read(
        &self,
        station: u16,
        register: u16,
        buf: &mut [u8],
    ) -> impl Future<Output = Result<u16, StationIoError>> + Send {
        let r = (|| {
            let mut g = self.inner.lock().expect("lock");
            if station != self.station || g.faults.gone {
                return Ok(0);
            }
            let end = usize::from(register) + buf.len();
            if end > 0x1_0000 {
                return Err(StationIoError::OutOfRange {
                    station,
                    register,
                    len: buf.len(),
                });
            }
            Self::refill(&mut g);
            // SM status registers: SM0 always empty (requests are handled at once),
            // SM1 full while a reply is presented.
            let full = g.presented.is_some();
            g.regs[0x0805] = 0;
            g.regs[0x080D] = if full { 0x08 } else { 0 };
            g.regs[0x080F] = if g.repeat_ack { 0x02 } else { 0 };
            if overlaps(register, buf.len(), SM1.0, SM1.1) {
                let Some(reply) = g.presented.take() else {
                    // Reading an empty mailbox is refused.
                    return Ok(0);
                };
                let start = usize::from(SM1.0);
                g.regs[start..start + usize::from(SM1.1)].fill(0);
                g.regs[start..start + reply.len()].copy_from_slice(&reply);
                buf.copy_from_slice(&g.regs[usize::from(register)..end]);
                if g.faults.lose_reply_reads > 0 {
                    g.faults.lose_reply_reads -= 1;
                    return Err(self.lost(register));
                }
                return Ok(1);
            }
            buf.copy_from_slice(&g.regs[usize::from(register)..end]);
            Ok(1)
        })();
        std::future::ready(r)
    }

    fn write(
        &self,
        station: u16,
        register: u16,
        data: &[u8],
    ) -> impl Future<Output = Result<u16, StationIoError>> + Send {
        let r = (|| {
            let mut g = self.inner.lock().expect("lock");
            if station != self.station || g.faults.gone {
                return Ok(0);
            }
            let start = usize::from(register);
            if start + data.len() > 0x1_0000 {
                return Err(StationIoError::OutOfRange {
                    station,
                    register,
                    len: data.len(),
                });
            }
            if overlaps(register, data.len(), SM0.0, SM0.1) {
                if g.faults.lose_requests_before > 0 {
                    g.faults.lose_requests_before -= 1;
                    return Err(self.lost(register));
                }
                let state = g.state;
                g.requests += 1;
                g.server.handle(data, state);
                if g.faults.lose_requests_after > 0 {
                    g.faults.lose_requests_after -= 1;
                    return Err(self.lost(register));
                }
                return Ok(1);
            }
            if register == 0x080E && data.len() == 1 {
                let old = g.regs[0x080E];
                if (old ^ data[0]) & 0x02 != 0 {
                    // Repeat request: present the last reply again and acknowledge.
                    g.presented = g.server.last_reply().map(<[u8]>::to_vec);
                    g.repeat_ack = data[0] & 0x02 != 0;
                }
            }
            g.regs[start..start + data.len()].copy_from_slice(data);
            Ok(1)
        })();
        std::future::ready(r)
    }
}
