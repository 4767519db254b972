//! Reading the SII of many terminals at once: all readers go in lock-step, and the
//! EEPROM commands and status polls of every terminal share frames, so a bus of 128
//! terminals needs a few frames per 8-byte chunk instead of a few frames per terminal.
//!
//! The register protocol is the one of [`Eeprom::read_chunk`](super::eeprom::Eeprom):
//! command and word address in one write to 0x0502..0x0507, then 0x0502..0x050F polled
//! until the busy bit clears (ETG.1000.4 §6.4, table 50); the walk over the categories
//! is [`image_complete_len`].

use super::eeprom::{
    EepromError, EepromOptions, REG_EEPROM_CONFIG, REG_EEPROM_CONTROL, control, image_complete_len,
};
use crate::ethercat::station_io::{Access, RegisterError, WorkingCounterError};
use crate::ethercat::transport::{Transport, TransportError, station_error};
use crate::ethercat::wire::{Address, Command, DatagramRepr};
use std::time::Duration;

/// Bytes polled at 0x0502: control/status, address and the 8-byte data register.
const POLL_LEN: usize = 14;

/// Poll rounds sent back to back before the poller sleeps a millisecond between rounds:
/// an EEPROM read keeps the interface busy for about half a millisecond to a
/// millisecond, a round trip over a short bus takes tens of microseconds.
const SPIN_POLLS: u32 = 32;

/// Where one terminal's read stands.
#[derive(Debug)]
struct Reader {
    station: u16,
    image: Vec<u8>,
    /// Read commands of the current chunk the EEPROM did not acknowledge.
    refused: u32,
    /// The outcome, once there is one.
    done: Option<Result<Vec<u8>, EepromError>>,
}

impl Reader {
    fn fail(&mut self, e: EepromError) {
        self.done = Some(Err(e));
    }

    fn register_error(&mut self, access: Access, register: u16, wkc: u16) {
        let source = RegisterError::WorkingCounter(WorkingCounterError {
            access,
            station: self.station,
            register,
            expected: 1,
            got: wkc,
        });
        self.fail(EepromError::Register {
            station: self.station,
            source,
        });
    }
}

/// Reads the SII images of the terminals at `stations` together; returns one result per
/// station, in order, each as [`Eeprom::read_image`](super::eeprom::Eeprom::read_image)
/// of that terminal would. A terminal that fails does not stop the others.
pub async fn read_images(
    transport: &Transport,
    stations: &[u16],
    options: EepromOptions,
) -> Vec<Result<Vec<u8>, EepromError>> {
    let mut readers: Vec<Reader> = stations
        .iter()
        .map(|&station| Reader {
            station,
            image: Vec::new(),
            refused: 0,
            done: None,
        })
        .collect();
    take_ownership(transport, &mut readers).await;
    // The PDI may have left a command running: wait for it before the first command.
    poll_until_idle(transport, &mut readers, &options).await;
    loop {
        for r in readers.iter_mut().filter(|r| r.done.is_none()) {
            if let Some(len) = image_complete_len(&r.image, options.max_bytes) {
                let mut image = std::mem::take(&mut r.image);
                image.truncate(len);
                r.done = Some(Ok(image));
            }
        }
        if readers.iter().all(|r| r.done.is_some()) {
            break;
        }
        send_read_commands(transport, &mut readers).await;
        let polled = poll_until_idle(transport, &mut readers, &options).await;
        for (i, regs) in polled {
            take_chunk(&mut readers[i], &regs, &options);
        }
    }
    readers
        .into_iter()
        .map(|r| r.done.unwrap_or_else(|| Ok(Vec::new())))
        .collect()
}

/// Datagrams for every active reader, sent packed; `None` when the whole exchange
/// failed (each reader then carries the error).
async fn exchange(
    transport: &Transport,
    readers: &mut [Reader],
    active: &[usize],
    command: Command,
    register: u16,
    data: impl Fn(&Reader) -> Vec<u8>,
) -> Option<Vec<DatagramRepr>> {
    let datagrams = active
        .iter()
        .map(|&i| {
            let station = readers[i].station;
            DatagramRepr::new(
                command,
                Address::Station { station, register },
                data(&readers[i]),
            )
        })
        .collect();
    match transport.batch(datagrams).await {
        Ok(replies) if replies.len() == active.len() => Some(replies),
        Ok(_) => {
            fail_all(readers, active, register, TransportError::Closed);
            None
        }
        Err(e) => {
            fail_all(readers, active, register, e);
            None
        }
    }
}

fn fail_all(readers: &mut [Reader], active: &[usize], register: u16, e: TransportError) {
    for &i in active {
        let station = readers[i].station;
        let source = RegisterError::Io(station_error(station, register, e.clone()));
        readers[i].fail(EepromError::Register { station, source });
    }
}

fn active(readers: &[Reader]) -> Vec<usize> {
    (0..readers.len())
        .filter(|&i| readers[i].done.is_none())
        .collect()
}

/// Takes the EEPROM from the PDI where it is offered to or held by it (0x0500: 0x02,
/// then 0x00; ETG.1000.4 table 48), as `Eeprom::take_ownership` does per terminal.
async fn take_ownership(transport: &Transport, readers: &mut [Reader]) {
    let all = active(readers);
    let Some(config) = exchange(
        transport,
        readers,
        &all,
        Command::Fprd,
        REG_EEPROM_CONFIG,
        |_| vec![0; 2],
    )
    .await
    else {
        return;
    };
    let mut held = Vec::new();
    for (&i, d) in all.iter().zip(&config) {
        if d.wkc != 1 {
            readers[i].register_error(Access::Read, REG_EEPROM_CONFIG, d.wkc);
        } else if d.data.iter().any(|b| b & 0x01 != 0) {
            tracing::debug!(
                station = readers[i].station,
                "taking the EEPROM from the PDI"
            );
            held.push(i);
        }
    }
    for v in [0x02u8, 0x00] {
        let Some(replies) = exchange(
            transport,
            readers,
            &held,
            Command::Fpwr,
            REG_EEPROM_CONFIG,
            |_| vec![v],
        )
        .await
        else {
            return;
        };
        for (&i, d) in held.iter().zip(&replies) {
            if d.wkc != 1 {
                readers[i].register_error(Access::Write, REG_EEPROM_CONFIG, d.wkc);
            }
        }
        held.retain(|&i| readers[i].done.is_none());
    }
}

/// Read command and word address (the next chunk) to every active reader.
async fn send_read_commands(transport: &Transport, readers: &mut [Reader]) {
    let all = active(readers);
    let command = |r: &Reader| {
        let mut cmd = Vec::with_capacity(6);
        cmd.extend_from_slice(&control::CMD_READ.to_le_bytes());
        cmd.extend_from_slice(&((r.image.len() / 2) as u32).to_le_bytes());
        cmd
    };
    let Some(replies) = exchange(
        transport,
        readers,
        &all,
        Command::Fpwr,
        REG_EEPROM_CONTROL,
        command,
    )
    .await
    else {
        return;
    };
    for (&i, d) in all.iter().zip(&replies) {
        if d.wkc != 1 {
            readers[i].register_error(Access::Write, REG_EEPROM_CONTROL, d.wkc);
        }
    }
}

/// Polls 0x0502..0x050F of every active reader until its interface is idle; returns the
/// registers of each reader that became idle. A reader still busy after
/// `options.read_timeout` fails with [`EepromError::Busy`].
async fn poll_until_idle(
    transport: &Transport,
    readers: &mut [Reader],
    options: &EepromOptions,
) -> Vec<(usize, [u8; POLL_LEN])> {
    let start = tokio::time::Instant::now();
    let mut waiting = active(readers);
    let mut idle = Vec::with_capacity(waiting.len());
    let mut polls = 0u32;
    while !waiting.is_empty() {
        let Some(replies) = exchange(
            transport,
            readers,
            &waiting,
            Command::Fprd,
            REG_EEPROM_CONTROL,
            |_| vec![0; POLL_LEN],
        )
        .await
        else {
            break;
        };
        let waited = start.elapsed();
        let mut busy = Vec::new();
        for (&i, d) in waiting.iter().zip(&replies) {
            let mut regs = [0u8; POLL_LEN];
            if d.wkc != 1 || d.data.len() != POLL_LEN {
                readers[i].register_error(Access::Read, REG_EEPROM_CONTROL, d.wkc);
                continue;
            }
            regs.copy_from_slice(&d.data);
            let ctl = u16::from_le_bytes([regs[0], regs[1]]);
            if ctl & control::BUSY == 0 {
                idle.push((i, regs));
            } else if waited >= options.read_timeout {
                readers[i].fail(EepromError::Busy {
                    station: readers[i].station,
                    word: (readers[i].image.len() / 2) as u32,
                    control: ctl,
                    waited,
                });
            } else {
                busy.push(i);
            }
        }
        waiting = busy;
        polls += 1;
        if polls < SPIN_POLLS {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    idle
}

/// Appends the chunk of an idle reader, or counts a refused command (retried with the
/// next round until `options.attempts`).
fn take_chunk(r: &mut Reader, regs: &[u8; POLL_LEN], options: &EepromOptions) {
    let ctl = u16::from_le_bytes([regs[0], regs[1]]);
    let word = (r.image.len() / 2) as u32;
    if ctl & control::ACK_ERROR != 0 {
        r.refused += 1;
        tracing::debug!(
            station = r.station,
            word,
            ctl,
            "EEPROM read not acknowledged"
        );
        if r.refused >= options.attempts.max(1) {
            r.fail(EepromError::NoAcknowledge {
                station: r.station,
                word,
                command: "read",
                control: ctl,
                attempts: options.attempts.max(1),
            });
        }
        return;
    }
    r.refused = 0;
    let n = if ctl & control::READ_8_BYTES != 0 {
        8
    } else {
        4
    };
    r.image.extend_from_slice(&regs[6..6 + n]);
}
