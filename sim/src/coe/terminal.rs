//! The application ("firmware") of a simulated terminal built on an object dictionary:
//! CoE on the mailbox (if the terminal has one), process data laid out by the PDO
//! objects, outputs handed to the [`Plant`](crate::models::Plant) and inputs taken from it.

use super::dictionary::{AccessState, ObjectDictionary};
use super::pdo::{self, LayoutError, ProcessDataLayout};
use super::server::{CoeServer, Emergency};
use crate::app::{
    AlState, AlStatusCode, MailboxOutbox, PdDirection, PdSm, TerminalApp, Transition, al_status,
    check_process_data_sms, mailbox_error,
};
use crate::coe::mailbox::HEADER_LEN;
use crate::models::{PlantHandle, Signal};

/// Emergency error code sent when a local error makes the terminal fall back (SM
/// watchdog, injected fault): "EtherCAT state machine transition error", data = the AL
/// status code of the error. ETG.1000.6 table 50.
pub const EMERGENCY_AL_TRANSITION: u16 = 0xA000;
/// Error register of that emergency: generic error (bit 0) and communication error
/// (bit 4), the layout of object 0x1001 (CiA 301 7.5.2.2).
pub const EMERGENCY_AL_TRANSITION_REGISTER: u8 = 0x11;

/// The send mailbox size the CoE server assumes until the first request tells it the
/// one the master configured (the smallest mailbox of the terminals in the test data).
const INITIAL_MAILBOX_IN: usize = 128;

/// Whether the values of object `index` survive a power cycle: the manufacturer area
/// (0x2000-0x5FFF) and the settings (0x8000-0x8FFF). Beckhoff terminals store CoE
/// parameters changed online in their EEPROM, so they are still there after a restart
/// ("Data management", CoE chapter of the Beckhoff terminal documentation). Everything
/// else (PDO mapping and assignment, outputs 0x7xxx, inputs 0x6xxx, the code word
/// 0xF008) starts from its power-on value: a master must configure the PDOs again
/// after a cold start, as its start-up list does anyway.
pub fn survives_power_cycle(index: u16) -> bool {
    matches!(index, 0x2000..=0x5FFF | 0x8000..=0x8FFF)
}

/// A terminal application over an object dictionary.
#[derive(Debug)]
pub struct DictionaryTerminal {
    position: usize,
    od: ObjectDictionary,
    /// The dictionary as the terminal was built (its power-on values).
    power_on: ObjectDictionary,
    coe: Option<CoeServer>,
    plant: PlantHandle,
    state: AlState,
}

impl DictionaryTerminal {
    /// The terminal at bus `position` with dictionary `od` (its power-on values); `coe`
    /// says whether it answers CoE on its mailbox; outputs and inputs go through `plant`.
    pub fn new(position: usize, od: ObjectDictionary, coe: bool, plant: PlantHandle) -> Self {
        let coe = coe.then(|| CoeServer::new(od.clone(), INITIAL_MAILBOX_IN));
        Self {
            position,
            power_on: od.clone(),
            od,
            coe,
            plant,
            state: AlState::Init,
        }
    }

    /// The dictionary (the CoE server's copy when the terminal has one).
    pub fn dictionary(&self) -> &ObjectDictionary {
        match &self.coe {
            Some(c) => c.dictionary(),
            None => &self.od,
        }
    }

    fn dictionary_mut(&mut self) -> &mut ObjectDictionary {
        match &mut self.coe {
            Some(c) => c.dictionary_mut(),
            None => &mut self.od,
        }
    }

    /// The process-data layout the PDO objects currently describe.
    pub fn layout(&self) -> Result<ProcessDataLayout, LayoutError> {
        ProcessDataLayout::from_dictionary(self.dictionary())
    }
}

impl TerminalApp for DictionaryTerminal {
    fn process_data_layout(&self) -> Vec<PdSm> {
        self.layout()
            .unwrap_or_default()
            .sms
            .iter()
            .map(|l| PdSm {
                sm: l.sm,
                direction: if l.outputs {
                    PdDirection::Outputs
                } else {
                    PdDirection::Inputs
                },
                bytes: u16::try_from(l.byte_len()).unwrap_or(u16::MAX),
            })
            .collect()
    }

    fn check_transition(&mut self, _now_ns: u64, t: Transition<'_>) -> Result<(), AlStatusCode> {
        if t.from == AlState::PreOp && t.to == AlState::SafeOp {
            if let Err(e) = self.layout() {
                let pdo = match e {
                    LayoutError::MissingPdo { pdo, .. } | LayoutError::MissingEntry { pdo, .. } => {
                        pdo
                    }
                };
                return Err(if pdo < 0x1A00 {
                    al_status::INVALID_OUTPUT_MAPPING
                } else {
                    al_status::INVALID_INPUT_MAPPING
                });
            }
            check_process_data_sms(&self.process_data_layout(), t.sms)
        } else {
            Ok(())
        }
    }

    fn state_changed(&mut self, _now_ns: u64, _from: AlState, to: AlState) {
        self.state = to;
        if to == AlState::Init {
            if let Some(c) = &mut self.coe {
                c.reset();
            }
        }
    }

    fn mailbox_received(&mut self, _now_ns: u64, message: &[u8], outbox: &mut MailboxOutbox) {
        let state = AccessState::from_al_state(self.state.code());
        let Some(coe) = &mut self.coe else {
            outbox.push_error(mailbox_error::UNSUPPORTED_PROTOCOL);
            return;
        };
        coe.set_mailbox_in_size(outbox.max_data_len() + HEADER_LEN);
        coe.handle(message, state);
        forward_replies(coe, outbox);
    }

    fn outputs_written(&mut self, now_ns: u64, sm: u8, data: &[u8]) {
        let Ok(layout) = self.layout() else { return };
        let Some(sm_layout) = layout.sm(sm) else {
            return;
        };
        let changed = pdo::unpack(sm_layout, data, self.dictionary_mut());
        let mut plant = self.plant.lock();
        for (index, sub, value) in changed {
            plant.apply_output(now_ns, Signal::new(self.position, index, sub), value, false);
        }
    }

    fn fill_inputs(&mut self, now_ns: u64, sm: u8, data: &mut [u8]) {
        let Ok(layout) = self.layout() else { return };
        let Some(sm_layout) = layout.sm(sm) else {
            return;
        };
        {
            let mut plant = self.plant.lock();
            plant.advance(now_ns);
            let position = self.position;
            let updates: Vec<(u16, u8, u64)> = sm_layout
                .entries
                .iter()
                .filter_map(|p| {
                    plant
                        .input(Signal::new(position, p.index, p.sub))
                        .map(|v| (p.index, p.sub, v))
                })
                .collect();
            drop(plant);
            let od = self.dictionary_mut();
            for (index, sub, v) in updates {
                od.set_value_u64(index, sub, v);
            }
        }
        let packed = pdo::pack(sm_layout, self.dictionary());
        let n = packed.len().min(data.len());
        data[..n].copy_from_slice(&packed[..n]);
    }

    fn outputs_safe(&mut self, now_ns: u64) {
        let Ok(layout) = self.layout() else { return };
        let position = self.position;
        let mut safe = Vec::new();
        for l in layout.sms.iter().filter(|l| l.outputs) {
            for p in l.entries.iter().filter(|p| p.index != 0) {
                safe.push((p.index, p.sub));
            }
        }
        let od = self.dictionary_mut();
        for (index, sub) in &safe {
            od.set_value_u64(*index, *sub, 0);
        }
        let mut plant = self.plant.lock();
        for (index, sub) in safe {
            plant.apply_output(now_ns, Signal::new(position, index, sub), 0, true);
        }
    }
    fn error_indicated(
        &mut self,
        _now_ns: u64,
        _state: AlState, // PRE-OP or SAFE-OP: the ESC hands no fall-back to INIT over
        code: AlStatusCode,
        outbox: &mut MailboxOutbox,
    ) {
        let Some(coe) = &mut self.coe else { return };
        let c = code.to_le_bytes();
        coe.queue_emergency(Emergency {
            error_code: EMERGENCY_AL_TRANSITION,
            error_register: EMERGENCY_AL_TRANSITION_REGISTER,
            data: [c[0], c[1], 0, 0, 0],
        });
        forward_replies(coe, outbox);
    }

    fn power_cycled(&mut self, _now_ns: u64) {
        let mut od = self.power_on.clone();
        for object in self
            .dictionary()
            .objects()
            .filter(|o| survives_power_cycle(o.index))
        {
            od.insert(object.clone());
        }
        // A fresh CoE server: no transfer in progress, mailbox counters from the start.
        if self.coe.is_some() {
            self.coe = Some(CoeServer::new(od.clone(), INITIAL_MAILBOX_IN));
        }
        self.od = od;
        self.state = AlState::Init;
    }
}

/// Moves the CoE server's queued replies into the outbox. The outbox numbers messages
/// itself: it gets each reply's mailbox type and data only.
fn forward_replies(coe: &mut CoeServer, outbox: &mut MailboxOutbox) {
    while let Some(reply) = coe.pop_reply() {
        let kind = reply.get(5).copied().unwrap_or(0) & 0x0F;
        outbox.push(kind, reply.get(HEADER_LEN..).unwrap_or(&[]));
    }
}
