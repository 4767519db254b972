//! Distributed clocks at start-up: propagation delays from latched receive times
//! (topology-aware), system time offsets, static drift compensation, SYNC0
//! (ETG.1000.4 §9.1, ESC DC registers 0x0900–0x09A7).
//!
//! The delay computation is pure (receive times in, delays out); the bus steps are thin
//! functions over the [`Transport`].

use super::registers;
use super::topology::{Attachment, FORWARDING_ORDER, Ports};
use super::transport::{Transport, TransportError, expect_wkc};
use super::wire::{Address, Command, DatagramRepr};
use std::time::{Duration, SystemTime};

/// Seconds from the Unix epoch to the EtherCAT epoch, 2000-01-01 00:00:00 UTC
/// (ETG.1000.4 §9.1.3: system time counts ns since then).
pub const ETHERCAT_EPOCH_UNIX_SECS: u64 = 946_684_800;

/// Now as EtherCAT system time (ns since 2000-01-01).
pub fn ethercat_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| (d.as_nanos() as u64).saturating_sub(ETHERCAT_EPOCH_UNIX_SECS * 1_000_000_000))
        .unwrap_or(0)
}

/// Receive times of one DC terminal latched by a write to 0x0900.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latch {
    /// Receive time on ports 0..3 (local time, lower 32 bits), registers 0x0900..0x090F.
    pub ports: [u32; 4],
    /// Local time at which port 0 received the latch frame, 64 bits (0x0918); `None`
    /// for ESCs that only have port receive times and no system time (e.g. the ET1200
    /// of an EL2828 answers 0x0918 with working counter 0).
    pub processing_unit: Option<u64>,
}

/// Propagation delay of each DC terminal from the reference clock (the first DC
/// terminal), in ns, from latched receive times and the tree.
///
/// For a terminal `c` behind port `x` of its parent `p`: the frame left `p` towards `c`
/// when it came back on the port before `x` in forwarding order (or arrived on port 0),
/// and returned on `x`. That loop minus the time the frame spent in `c`'s own subtree is
/// twice the link delay. `c`'s delay = `p`'s delay + time in `p` before leaving on `x` +
/// the link delay. Terminals without DC (`None`) pass frames on but get no delay; the
/// computation works along the tree through them using their latches when present.
pub fn propagation_delays(
    latches: &[Option<Latch>],
    ports: &[Ports],
    tree: &[Option<Attachment>],
) -> Vec<Option<u32>> {
    let n = latches.len();
    let mut delay: Vec<Option<u32>> = vec![None; n];
    let Some(reference) = latches.iter().position(Option::is_some) else {
        return delay;
    };
    delay[reference] = Some(0);
    // Time the frame spends in the subtree behind a terminal's port 0 (enter to leave).
    let subtree = |i: usize| -> u32 {
        let Some(l) = latches[i] else { return 0 };
        let last = ports[i].downstream().last().copied();
        match last {
            Some(p) => l.ports[usize::from(p)].wrapping_sub(l.ports[0]),
            None => 0,
        }
    };
    for c in reference + 1..n {
        let Some(Attachment { parent, port }) = tree.get(c).copied().flatten() else {
            continue;
        };
        let p = usize::from(parent);
        let (Some(lp), Some(dp)) = (latches[p], delay[p]) else {
            continue;
        };
        if latches[c].is_none() {
            continue;
        }
        let order: Vec<u8> = ports[p].downstream();
        let Some(k) = order.iter().position(|&q| q == port) else {
            continue;
        };
        let before = if k == 0 { 0 } else { order[k - 1] };
        let left_at = lp.ports[usize::from(before)];
        let back_at = lp.ports[usize::from(port)];
        let loop_time = back_at.wrapping_sub(left_at);
        let link = loop_time.saturating_sub(subtree(c)) / 2;
        let inside_parent = left_at.wrapping_sub(lp.ports[0]);
        delay[c] = Some(dp.wrapping_add(inside_parent).wrapping_add(link));
    }
    // Delays count from the reference clock: the first terminal with a system time.
    if let Some(r) = latches
        .iter()
        .position(|l| l.is_some_and(|l| l.processing_unit.is_some()))
    {
        let base = delay[r].unwrap_or(0);
        for d in delay.iter_mut().flatten() {
            *d = d.saturating_sub(base);
        }
    }
    delay
}

/// Offsets to write into 0x0920 so that every DC terminal's system time equals the
/// master's clock `master_now` at the moment of the latch, shifted by its delay.
pub fn offsets(
    latches: &[Option<Latch>],
    delays: &[Option<u32>],
    master_now: u64,
) -> Vec<Option<u64>> {
    latches
        .iter()
        .zip(delays)
        .map(|(l, d)| match (l, d) {
            (Some(l), Some(d)) => l
                .processing_unit
                .map(|pu| master_now.wrapping_add(u64::from(*d)).wrapping_sub(pu)),
            _ => None,
        })
        .collect()
}

/// Broadcast a write to 0x0900 so every terminal latches its port receive times.
pub async fn latch(transport: &Transport) -> Result<u16, TransportError> {
    transport
        .bwr(registers::DC_RECEIVE_TIME_PORT0, &[0; 4])
        .await
}

/// Read the latched receive times of terminal `station`.
pub async fn read_latch(transport: &Transport, station: u16) -> Result<Latch, TransportError> {
    let p = transport
        .fprd(station, registers::DC_RECEIVE_TIME_PORT0, 16)
        .await?;
    let u = transport
        .datagram(
            Command::Fprd,
            Address::Station {
                station,
                register: registers::DC_RECEIVE_TIME_PROCESSING_UNIT,
            },
            vec![0; 8],
        )
        .await?;
    let word = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let processing_unit = (u.wkc == 1 && u.data.len() == 8).then(|| {
        let mut pu = [0u8; 8];
        pu.copy_from_slice(&u.data);
        u64::from_le_bytes(pu)
    });
    Ok(Latch {
        ports: [word(0), word(4), word(8), word(12)],
        processing_unit,
    })
}

/// Static drift compensation: `frames` FRMW datagrams reading the reference clock's
/// system time (0x0910) and writing it to every following terminal, which adjust their
/// clock speed (ETG.1000.4 §9.1.4). Sent `in_flight` at a time. `expected_wkc` is the
/// number of DC terminals.
pub async fn compensate_drift(
    transport: &Transport,
    reference: u16,
    frames: usize,
    in_flight: usize,
) -> Result<(), TransportError> {
    let mut sent = 0;
    while sent < frames {
        let batch = in_flight.min(frames - sent).max(1);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let t = transport.clone();
            set.spawn(async move {
                t.exchange(vec![DatagramRepr::new(
                    Command::Frmw,
                    Address::Station {
                        station: reference,
                        register: registers::DC_SYSTEM_TIME,
                    },
                    vec![0; 8],
                )])
                .await
            });
        }
        while let Some(r) = set.join_next().await {
            let reply = r.map_err(|_| TransportError::Closed)??;
            if reply.first().is_none_or(|d| d.wkc == 0) {
                return Err(TransportError::WorkingCounter {
                    command: Command::Frmw,
                    address: Address::Station {
                        station: reference,
                        register: registers::DC_SYSTEM_TIME,
                    },
                    expected: 1,
                    got: 0,
                });
            }
        }
        sent += batch;
    }
    Ok(())
}

/// Configure SYNC0 of terminal `station`: cycle `cycle`, first pulse at system time
/// `start` (ns since 2000), then activate cyclic operation and SYNC0
/// (ETG.1000.4 tables 71, 75, 76).
pub async fn configure_sync0(
    transport: &Transport,
    station: u16,
    cycle: Duration,
    start: u64,
) -> Result<(), TransportError> {
    transport
        .fpwr(station, registers::DC_ACTIVATION, &[0])
        .await?;
    let cycle_ns = u32::try_from(cycle.as_nanos()).unwrap_or(u32::MAX);
    transport
        .fpwr(station, registers::DC_SYNC0_CYCLE, &cycle_ns.to_le_bytes())
        .await?;
    transport
        .fpwr(station, registers::DC_START_TIME, &start.to_le_bytes())
        .await?;
    let reply = transport
        .datagram(
            Command::Fpwr,
            Address::Station {
                station,
                register: registers::DC_ACTIVATION,
            },
            vec![registers::dc_activation::CYCLIC | registers::dc_activation::SYNC0],
        )
        .await?;
    expect_wkc(&reply, 1)
}

/// The order in which frames leave a terminal, re-exported for documentation.
pub const PORT_ORDER: [u8; 3] = FORWARDING_ORDER;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethercat::topology::{attach, ports};

    /// A line of three terminals, 100 ns per link, 20 ns through each terminal.
    #[test]
    fn line_delays_accumulate_link_and_forwarding_time() {
        let p = [ports(&[0, 1]), ports(&[0, 1]), ports(&[0])];
        let tree = attach(&p).unwrap();
        // Frame arrives at t=0 at terminal 0 (its clock: 1000 + t).
        // It reaches 1 at 120 (20 fwd + 100 link), 2 at 240. Returns: 2 turns around
        // (20), back to 1 at 240+20+100 = 360, back at 0 port 1 at 360+20+100 = 480.
        let l0 = Latch {
            ports: [1000, 1480, 0, 0],
            processing_unit: Some(1000),
        };
        let l1 = Latch {
            ports: [5120, 5360, 0, 0],
            processing_unit: Some(5120),
        };
        let l2 = Latch {
            ports: [9240, 0, 0, 0],
            processing_unit: Some(9240),
        };
        let d = propagation_delays(&[Some(l0), Some(l1), Some(l2)], &p, &tree);
        // Link delay seen from 0: (480 - (360-120)) / 2 = 120 (link + forwarding).
        assert_eq!(d, vec![Some(0), Some(120), Some(240)]);
        let o = offsets(&[Some(l0), Some(l1), Some(l2)], &d, 1_000_000);
        // Every clock shows master time + its delay at the latch.
        assert_eq!(o[0], Some(1_000_000 - 1000));
        assert_eq!(o[1].map(|o| o.wrapping_add(5120)), Some(1_000_120));
        assert_eq!(o[2].map(|o| o.wrapping_add(9240)), Some(1_000_240));
    }

    /// A junction: terminal 0 with a leaf behind port 3 and another behind port 1.
    #[test]
    fn junction_delay_includes_earlier_branches() {
        let p = [ports(&[0, 1, 3]), ports(&[0]), ports(&[0])];
        let tree = attach(&p).unwrap();
        // 0 forwards to port 3 at t=10, leaf 1 gets it at 110, returns at port 3 at 210+...:
        // leaf turnaround 10 -> back at 0's port 3 at 220. Then out on port 1 at 220,
        // leaf 2 at 320, back at 0's port 1 at 430.
        let l0 = Latch {
            ports: [0, 430, 0, 220],
            processing_unit: Some(0),
        };
        let l1 = Latch {
            ports: [110, 0, 0, 0],
            processing_unit: Some(110),
        };
        let l2 = Latch {
            ports: [320, 0, 0, 0],
            processing_unit: Some(320),
        };
        let d = propagation_delays(&[Some(l0), Some(l1), Some(l2)], &p, &tree);
        // Half the loop through branch 3 (forwarding time split evenly both ways).
        assert_eq!(d[1], Some(110), "(220 - 0) / 2 with no subtree");
        // Leaves 0 when branch 3 came back (220), then half the loop (430-220)/2.
        assert_eq!(d[2], Some(220 + 105), "leaves after branch 3 came back");
    }

    #[test]
    fn terminals_without_dc_get_no_delay() {
        let p = [ports(&[0, 1]), ports(&[0])];
        let tree = attach(&p).unwrap();
        let d = propagation_delays(&[None, Some(Latch::default())], &p, &tree);
        assert_eq!(
            d,
            vec![None, Some(0)],
            "the first DC terminal is the reference"
        );
    }

    #[test]
    fn receive_time_only_terminals_measure_but_get_no_offset() {
        let p = [ports(&[0, 1]), ports(&[0])];
        let tree = attach(&p).unwrap();
        let l0 = Latch {
            ports: [0, 200, 0, 0],
            processing_unit: None,
        };
        let l1 = Latch {
            ports: [100, 0, 0, 0],
            processing_unit: Some(100),
        };
        let d = propagation_delays(&[Some(l0), Some(l1)], &p, &tree);
        // Terminal 1 is the reference clock; terminal 0 precedes it and saturates at 0.
        assert_eq!(d, vec![Some(0), Some(0)]);
        let o = offsets(&[Some(l0), Some(l1)], &d, 5000);
        assert_eq!(o, vec![None, Some(4900)]);
    }
}
