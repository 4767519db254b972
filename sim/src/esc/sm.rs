//! SyncManagers: one-buffer (mailbox) and three-buffer (process data) semantics, status
//! and PDI control bits, mailbox repeat.

use super::*;

/// Run-time state of one SyncManager besides its registers.
#[derive(Clone, Debug, Default)]
pub(super) struct SmRuntime {
    pub(super) cfg: SmConfig,
    /// One-buffer mode: the buffer holds a message (status bit 3).
    pub(super) mailbox_full: bool,
    /// Three-buffer read direction: a buffer is locked for the master until its last byte is read.
    pub(super) read_locked: bool,
    /// Three-buffer write direction: the buffer being written (visible on its last byte).
    pub(super) pending: Vec<u8>,
    /// Bytes of `pending` written since the last completed buffer.
    pub(super) pending_touched: bool,
    /// Status bit 0, "interrupt write": the buffer was written completely (by the
    /// master for SM0, by the firmware for SM1).
    pub(super) irq_write: bool,
    /// Status bit 1, "interrupt read": the buffer was read completely.
    pub(super) irq_read: bool,
}

impl SmRuntime {
    pub(super) fn end(&self) -> u32 {
        u32::from(self.cfg.start) + u32::from(self.cfg.length)
    }

    pub(super) fn contains(&self, addr: u32) -> bool {
        self.cfg.enabled() && addr >= u32::from(self.cfg.start) && addr < self.end()
    }

    pub(super) fn last(&self) -> u32 {
        self.end() - 1
    }
}

/// The side effects of one access, without allocating (an access completes at most one
/// event per SyncManager, and there are at most 16).
#[derive(Clone, Copy, Debug)]
pub(super) struct SmEvents {
    pub(super) items: [SmEvent; 16],
    pub(super) len: usize,
}

impl SmEvents {
    pub(super) fn new() -> SmEvents {
        SmEvents {
            items: [SmEvent::BufferReleased(0); 16],
            len: 0,
        }
    }

    pub(super) fn push(&mut self, ev: SmEvent) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = ev;
            self.len += 1;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn as_slice(&self) -> &[SmEvent] {
        &self.items[..self.len]
    }
}

/// Side effects collected while bytes are accessed, applied after the datagram's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SmEvent {
    MailboxWritten(usize),
    MailboxRead(usize),
    BufferWritten(usize),
    BufferReleased(usize),
}

impl Esc {
    // ----- SyncManagers --------------------------------------------------------------

    pub(super) fn is_output_buffer(&self, n: usize) -> bool {
        self.sms.get(n).is_some_and(|s| {
            s.cfg.enabled()
                && s.cfg.mode() == Some(SmMode::Buffered)
                && s.cfg.direction() == Some(SmDirection::Write)
        })
    }

    /// Whether the firmware keeps SM `n` deactivated through its PDI control register
    /// (0x0807 + 8n bit 0): firmware terminals enable the mailbox from PRE-OP and process
    /// data from SAFE-OP (ETG.1000.6 6.4.1); terminals without firmware never do.
    pub(super) fn pdi_deactivated(&self, n: usize) -> bool {
        if !self.has_firmware {
            return false;
        }
        let Some(s) = self.sms.get(n) else {
            return true;
        };
        match s.cfg.mode() {
            Some(SmMode::Mailbox) => matches!(self.state, AlState::Init),
            _ => !matches!(self.state, AlState::SafeOp | AlState::Op),
        }
    }

    pub(super) fn update_sm_registers(&mut self) {
        for n in 0..self.sms.len() {
            let base = usize::from(regs::SM_BASE) + 8 * n;
            let s = &self.sms[n];
            // ETG.1000.4 table 59: bit 0 interrupt write, bit 1 interrupt read, bit 3
            // mailbox full. ek1914-el3004-mailbox.pcapng: SM1 reads 0x09 when a reply
            // waits (frame 964), SM0 reads 0x02 once the firmware took a request (970).
            let mut status = self.mem[base + 5] & !0x0B;
            if s.mailbox_full {
                status |= 0x08;
            }
            if s.irq_write {
                status |= 0x01;
            }
            if s.irq_read {
                status |= 0x02;
            }
            self.mem[base + 5] = status;
            let has_mail = s.mailbox_full && s.cfg.direction() == Some(SmDirection::Read);
            if n < 8 {
                let bit = 1u16 << (4 + n);
                if has_mail {
                    self.raise_event(bit);
                } else {
                    self.clear_event(bit);
                }
            }
            let deact = self.pdi_deactivated(n);
            let pdi = &mut self.mem[base + 7];
            if deact {
                *pdi |= 0x01;
            } else {
                *pdi &= !0x01;
            }
        }
    }

    pub(super) fn sm_registers_written(&mut self, from: u32, to: u32) {
        for n in 0..self.sms.len() {
            let base = u32::from(regs::SM_BASE) + 8 * n as u32;
            if to <= base || from >= base + 8 {
                continue;
            }
            let b = base as usize;
            let new = SmConfig {
                start: u16::from_le_bytes([self.mem[b], self.mem[b + 1]]),
                length: u16::from_le_bytes([self.mem[b + 2], self.mem[b + 3]]),
                control: self.mem[b + 4],
                activate: self.mem[b + 6],
            };
            let old = self.sms[n].cfg;
            let repeat_toggled = (old.activate ^ new.activate) & 0x02 != 0;
            let reconfigured = old.start != new.start
                || old.length != new.length
                || old.control != new.control
                || old.enabled() != new.enabled();
            let s = &mut self.sms[n];
            s.cfg = new;
            if reconfigured {
                s.irq_write = false;
                s.irq_read = false;
                s.mailbox_full = false;
                s.read_locked = false;
                s.pending = vec![0; usize::from(new.length)];
                s.pending_touched = false;
                if n == 1 && new.mode() == Some(SmMode::Mailbox) {
                    self.outbox.set_capacity(usize::from(new.length));
                }
            }
            if repeat_toggled && !reconfigured {
                self.mailbox_repeat(n);
            }
        }
        self.update_sm_registers();
        self.load_send_mailbox();
    }

    /// Repeat request (0x0806 bit 1 toggled): the firmware writes the last message again
    /// and acknowledges by copying the bit into 0x0807 bit 1 (ETG.1000.6 5.6 mailbox repeat).
    pub(super) fn mailbox_repeat(&mut self, n: usize) {
        let base = usize::from(regs::SM_BASE) + 8 * n;
        if let Some(msg) = self.last_mailbox.clone() {
            let s = &self.sms[n];
            let start = usize::from(s.cfg.start);
            let len = usize::from(s.cfg.length);
            if let Some(area) = self.mem.get_mut(start..start + len) {
                area.fill(0);
                let k = msg.len().min(len);
                area[..k].copy_from_slice(&msg[..k]);
                self.sms[n].mailbox_full = true;
            }
        }
        let req = self.mem[base + 6] & 0x02;
        self.mem[base + 7] = (self.mem[base + 7] & !0x02) | req;
        self.update_sm_registers();
    }

    /// The send mailbox SM (SM1 as configured for mailbox reading), if usable.
    pub(super) fn send_mailbox_sm(&self) -> Option<usize> {
        let s = self.sms.get(1)?;
        (s.cfg.enabled()
            && s.cfg.mode() == Some(SmMode::Mailbox)
            && s.cfg.direction() == Some(SmDirection::Read)
            && !self.pdi_deactivated(1))
        .then_some(1)
    }

    pub(super) fn load_send_mailbox(&mut self) {
        let Some(n) = self.send_mailbox_sm() else {
            return;
        };
        if self.sms[n].mailbox_full {
            return;
        }
        let Some(msg) = self.outbox.pop() else {
            return;
        };
        let start = usize::from(self.sms[n].cfg.start);
        let len = usize::from(self.sms[n].cfg.length);
        if let Some(area) = self.mem.get_mut(start..start + len) {
            area.fill(0);
            let k = msg.len().min(len);
            area[..k].copy_from_slice(&msg[..k]);
            self.sms[n].mailbox_full = true;
            self.sms[n].irq_write = true;
            self.last_mailbox = Some(msg);
        }
        self.update_sm_registers();
    }

    pub(super) fn apply_sm_events(&mut self, events: &[SmEvent]) {
        for &ev in events {
            match ev {
                SmEvent::MailboxWritten(n) => {
                    // Interrupt write for the PDI: a complete request is in the buffer.
                    self.sms[n].irq_write = true;
                    self.sms[n].irq_read = false;
                    if self.config.mailbox_latency_ns == 0 {
                        self.take_mailbox_request(n);
                    } else {
                        // The firmware looks at the mailbox a while later; until then
                        // SM0 stays full (status bit 3) and refuses further writes.
                        self.mailbox_due = Some((n, self.now_ns + self.config.mailbox_latency_ns));
                    }
                }
                SmEvent::MailboxRead(n) => {
                    self.sms[n].mailbox_full = false;
                    self.sms[n].irq_write = false;
                }
                SmEvent::BufferWritten(n) => {
                    let s = &mut self.sms[n];
                    let start = usize::from(s.cfg.start);
                    let len = usize::from(s.cfg.length);
                    s.pending_touched = false;
                    let buf = std::mem::take(&mut s.pending);
                    self.mem[start..start + len].copy_from_slice(&buf[..len]);
                    self.sms[n].pending = buf;
                    self.outputs_valid = true;
                    // The SM watchdog is retriggered by each completed buffer of an SM
                    // with control bit 6 set (ETG.1000.4 table 58).
                    if self.sms[n].cfg.control & 0x40 != 0 {
                        self.wd_last_ns = Some(self.now_ns);
                        self.mem[usize::from(regs::WD_STATUS)] |= 0x01;
                    }
                    if self.state == AlState::Op {
                        let data = &self.mem[start..start + len];
                        self.app.outputs_written(self.now_ns, n as u8, data);
                    }
                }
                SmEvent::BufferReleased(n) => {
                    self.sms[n].read_locked = false;
                }
            }
        }
        self.update_sm_registers();
        self.load_send_mailbox();
    }

    pub(super) fn sm_at(&self, addr: u32) -> Option<usize> {
        self.sms.iter().position(|s| s.contains(addr))
    }

    /// The firmware takes the request in receive mailbox `n` and answers it.
    pub(super) fn take_mailbox_request(&mut self, n: usize) {
        let Some(s) = self.sms.get(n) else { return };
        if !s.mailbox_full {
            return;
        }
        let start = usize::from(s.cfg.start);
        let len = usize::from(s.cfg.length);
        let msg = self.mem[start..start + len].to_vec();
        self.sms[n].mailbox_full = false;
        self.sms[n].irq_write = false;
        self.sms[n].irq_read = true;
        self.app
            .mailbox_received(self.now_ns, &msg, &mut self.outbox);
        self.update_sm_registers();
        self.load_send_mailbox();
    }

    /// Delivers a delayed mailbox request once the firmware latency has passed.
    pub(super) fn poll_mailbox_due(&mut self) {
        if let Some((n, due)) = self.mailbox_due {
            if self.now_ns >= due {
                self.mailbox_due = None;
                self.take_mailbox_request(n);
            }
        }
    }
}
