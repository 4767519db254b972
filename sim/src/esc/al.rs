//! The AL state machine (ETG.1000.6 6.4) and the SyncManager watchdog of a simulated ESC.

use super::*;

impl Esc {
    // ----- time, watchdogs -----------------------------------------------------------

    /// Called when a frame reaches the terminal at bus time `now_ns` before any of its
    /// datagrams: advances the watchdogs and lets the application run.
    pub fn begin_frame(&mut self, now_ns: u64) {
        self.advance(now_ns);
        self.app.poll(now_ns, &mut self.outbox);
        self.load_send_mailbox();
    }

    /// Advances time without a frame: watchdog expiry, EEPROM busy, SYNC pulses.
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        self.update_sync();
        self.update_sii_status();
        self.check_watchdog();
        self.poll_mailbox_due();
    }

    pub(super) fn wd_timeout_ns(&self) -> Option<u64> {
        let ticks = u64::from(self.get16(regs::WD_PROCESS_DATA));
        if ticks == 0 {
            return None;
        }
        let divider = u64::from(self.get16(regs::WD_DIVIDER));
        Some(ticks * (divider + 2) * 40)
    }

    pub(super) fn check_watchdog(&mut self) {
        let (Some(last), Some(timeout)) = (self.wd_last_ns, self.wd_timeout_ns()) else {
            return;
        };
        if self.now_ns.saturating_sub(last) <= timeout {
            return;
        }
        // Expired: ETG.1000.4 table 52 (0x0440 bit 0 = 0), counter 0x0442 increments.
        self.wd_last_ns = None;
        self.mem[usize::from(regs::WD_STATUS)] &= !0x01;
        let c = usize::from(regs::WD_COUNTER_PD);
        self.mem[c] = self.mem[c].saturating_add(1);
        // Firmware watches the process-data watchdog only in OP (as firmware built on the
        // EtherCAT slave stack code does): in SAFE-OP its outputs are safe already and a
        // buffer written there stays valid. Otherwise the buffer the watchdog guarded is
        // stale: OP needs a fresh one (0x0019 until it arrives) and must not apply the
        // old one. Firmware in OP drops to SAFE-OP with 0x001B (ETG.1000.6 table 11),
        // its outputs going to their safe state; an ESC in device emulation has no such
        // state: its outputs are cleared and stay so until the next write.
        if self.has_firmware && self.state != AlState::Op {
            return;
        }
        self.outputs_valid = false;
        if self.has_firmware {
            self.fall_back(AlState::SafeOp, al_status::SM_WATCHDOG);
        } else {
            self.app.outputs_safe(self.now_ns);
        }
    }

    // ----- AL state machine ----------------------------------------------------------

    pub(super) fn update_al_registers(&mut self) {
        let status = self.state.code() | if self.error { AL_ERROR_FLAG } else { 0 };
        self.set_al_status_byte(status);
        self.mem[usize::from(regs::AL_STATUS) + 1] = 0;
        self.put16(regs::AL_STATUS_CODE, self.status_code);
    }

    pub(super) fn set_al_status_byte(&mut self, status: u8) {
        let at = usize::from(regs::AL_STATUS);
        if self.mem[at] != status {
            self.mem[at] = status;
            self.raise_event(EVENT_AL_STATUS);
        }
    }

    pub(super) fn set_state(&mut self, to: AlState) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        if from == AlState::Op {
            self.app.outputs_safe(self.now_ns);
        }
        if matches!(to, AlState::Init | AlState::PreOp) {
            self.outputs_valid = false;
        }
        if to == AlState::Init {
            self.outbox.clear();
            self.mailbox_due = None;
            self.last_mailbox = None;
            for s in &mut self.sms {
                s.mailbox_full = false;
            }
        }
        self.app.state_changed(self.now_ns, from, to);
        if to == AlState::Op && self.outputs_valid {
            // Firmware applies the latest complete output buffer once in OP.
            for n in 0..self.sms.len() {
                if self.is_output_buffer(n) {
                    if let Some(buf) = self.sm_buffer(n).map(<[u8]>::to_vec) {
                        self.app.outputs_written(self.now_ns, n as u8, &buf);
                    }
                }
            }
        }
        self.update_sm_registers();
    }

    /// Drops to `to` with the error flag and `code`, as firmware does on a local error
    /// (fault injection and the SM watchdog use it). The application may report it in
    /// the mailbox, which exists from PRE-OP on: a fall-back to INIT (whose mailbox
    /// `set_state` has closed) is not handed to it (ETG.1000.6 6.4.1).
    pub fn fall_back(&mut self, to: AlState, code: AlStatusCode) {
        self.error = true;
        self.status_code = code;
        self.set_state(to);
        self.update_al_registers();
        if self.state != AlState::Init {
            self.app
                .error_indicated(self.now_ns, to, code, &mut self.outbox);
            self.load_send_mailbox();
        }
    }

    /// Power-cycles the terminal: outputs safe, registers to reset values, INIT, the local
    /// DC clock restarting from 0.
    pub fn power_cycle(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        self.app.outputs_safe(self.now_ns);
        self.app.power_cycled(self.now_ns);
        let from = self.state;
        self.reset_registers();
        self.clock_restarted_at = Some(self.now_ns);
        if from != AlState::Init {
            self.app.state_changed(self.now_ns, from, AlState::Init);
        }
        self.update_dl_status();
    }

    /// Whether AL status mirrors AL control (device emulation, no firmware).
    pub fn device_emulation(&self) -> bool {
        !self.has_firmware
    }

    pub(super) fn al_control_written(&mut self) {
        let ctl = self.mem[usize::from(regs::AL_CONTROL)];
        if !self.has_firmware {
            if let Some(to) = AlState::from_code(ctl & 0x0F) {
                self.set_state(to);
            }
            self.error = ctl & AL_ERROR_FLAG != 0;
            self.update_al_registers();
            self.set_al_status_byte(ctl & 0x1F);
            return;
        }
        let ack = ctl & AL_ERROR_FLAG != 0;
        let code = ctl & 0x0F;
        if self.error && !ack {
            // ETG.1000.6 6.4.1.4: with the error indication set, a request without
            // acknowledge is ignored unless it goes to a lower state.
            match AlState::from_code(code) {
                Some(to) if state_rank(to) < state_rank(self.state) => {}
                _ => return,
            }
        }
        if ack {
            self.error = false;
            self.status_code = 0;
        }
        let result = self.request_state(code);
        if let Err(code) = result {
            self.error = true;
            self.status_code = code;
        }
        self.update_al_registers();
    }

    pub(super) fn request_state(&mut self, code: u8) -> Result<(), AlStatusCode> {
        let Some(to) = AlState::from_code(code) else {
            return Err(al_status::UNKNOWN_STATE);
        };
        let from = self.state;
        if to == from {
            return Ok(());
        }
        use AlState::*;
        match (from, to) {
            (_, Init) => {}
            (Init, Bootstrap) => {
                let foe = self.sii.mailbox_protocols & crate::sii::mailbox_protocol::FOE != 0;
                if !foe || self.sii.bootstrap_rx_mailbox.size == 0 {
                    return Err(al_status::BOOTSTRAP_NOT_SUPPORTED);
                }
            }
            (Init, PreOp) => self.check_mailbox_sms()?,
            (PreOp, SafeOp) => {}
            (SafeOp, Op) => {
                // Firmware terminals refuse OP until valid outputs arrived (ETG.1000.6
                // table 11, 0x0019). Terminals without firmware (ESC-driven digital I/O)
                // go to OP anyway: ek1100-el2828-el2889.pcapng frames 2300..2304 bring an
                // EL2889 to OP before the first LRW (frame 3053).
                if self.has_firmware && self.expects_outputs() && !self.outputs_valid {
                    return Err(al_status::NO_VALID_OUTPUTS);
                }
            }
            (Op | SafeOp, PreOp) | (Op, SafeOp) => {}
            (Bootstrap, _) | (_, Bootstrap) | (Init, _) | (PreOp, Op) => {
                return Err(al_status::INVALID_STATE_CHANGE);
            }
            _ => return Err(al_status::INVALID_STATE_CHANGE),
        }
        let sms = self.sm_configs();
        self.app.check_transition(
            self.now_ns,
            Transition {
                from,
                to,
                sms: &sms,
            },
        )?;
        self.set_state(to);
        Ok(())
    }

    pub(super) fn expects_outputs(&self) -> bool {
        self.app
            .process_data_layout()
            .iter()
            .any(|p| p.direction == crate::app::PdDirection::Outputs && p.bytes > 0)
    }

    pub(super) fn check_mailbox_sms(&self) -> Result<(), AlStatusCode> {
        if !self.sii.has_mailbox() {
            return Ok(());
        }
        let bad = Err(al_status::INVALID_MAILBOX_CONFIG);
        let (Some(rx), Some(tx)) = (self.sms.first(), self.sms.get(1)) else {
            return bad;
        };
        let ok_rx = rx.cfg.enabled()
            && rx.cfg.mode() == Some(SmMode::Mailbox)
            && rx.cfg.direction() == Some(SmDirection::Write)
            && rx.cfg.length >= 8;
        let ok_tx = tx.cfg.enabled()
            && tx.cfg.mode() == Some(SmMode::Mailbox)
            && tx.cfg.direction() == Some(SmDirection::Read)
            && tx.cfg.length >= 8;
        let overlap = u32::from(rx.cfg.start) < tx.end() && u32::from(tx.cfg.start) < rx.end();
        if ok_rx && ok_tx && !overlap {
            Ok(())
        } else {
            bad
        }
    }
}

fn state_rank(s: AlState) -> u8 {
    match s {
        AlState::Init => 0,
        AlState::Bootstrap | AlState::PreOp => 1,
        AlState::SafeOp => 2,
        AlState::Op => 3,
    }
}
