//! Tests of the async transport over an in-process fake bus, with virtual time.

use super::*;
use crate::ethercat::station_io::StationIoExt;
use crate::ethercat::wire::Frame;

/// A bus of terminals with 64 KiB register spaces each, station addresses at 0x0010.
/// Drops the first `drop_first` frames it sees.
fn fake_bus(
    terminals: usize,
    drop_first: usize,
) -> (ChannelLink, Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let (link, mut from_master, to_master) = ChannelLink::pair();
    let mem = Arc::new(std::sync::Mutex::new(vec![vec![0u8; 0x1_0000]; terminals]));
    let regs = mem.clone();
    tokio::spawn(async move {
        let mut seen = 0;
        while let Some(mut frame) = from_master.recv().await {
            seen += 1;
            if seen <= drop_first {
                continue;
            }
            frame[6] |= 0x02;
            let mut f = Frame::new_checked(&mut frame[..]).expect("master sends valid frames");
            let mut regs = regs.lock().unwrap();
            for mut d in f.datagrams_mut() {
                let mut wkc = d.wkc();
                let raw = d.raw_address();
                let ado = (raw >> 16) as usize;
                let len = d.data_len();
                for (pos, t) in regs.iter_mut().enumerate() {
                    let station = u16::from_le_bytes([t[0x10], t[0x11]]);
                    let hit = match d.command() {
                        Command::Brd | Command::Bwr => true,
                        Command::Fprd | Command::Fpwr => station == raw as u16,
                        Command::Aprd | Command::Apwr => (raw as u16).wrapping_add(pos as u16) == 0,
                        _ => false,
                    };
                    if !hit {
                        continue;
                    }
                    wkc += 1;
                    match d.command() {
                        Command::Brd => {
                            let data = d.data_mut();
                            for i in 0..len {
                                data[i] |= t[ado + i];
                            }
                        }
                        Command::Fprd | Command::Aprd => {
                            d.data_mut().copy_from_slice(&t[ado..ado + len])
                        }
                        _ => t[ado..ado + len].copy_from_slice(d.data()),
                    }
                }
                d.set_wkc(wkc);
            }
            drop(regs);
            if to_master.send(frame).is_err() {
                return;
            }
        }
    });
    (link, mem)
}

fn config(policy: Policy) -> TransportConfig {
    TransportConfig {
        identity: identity_for_pid(77),
        policy,
        capture: None,
    }
}

#[tokio::test(start_paused = true)]
async fn broadcast_counts_terminals_and_station_io_reads_back() {
    let (link, _mem) = fake_bus(3, 0);
    let t = Transport::spawn(link, config(Policy::default()));
    let (_, wkc) = t.brd(0x0000, 1).await.unwrap();
    assert_eq!(wkc, 3);
    for pos in 0..3u16 {
        t.apwr(pos, 0x0010, &(0x1001 + pos).to_le_bytes())
            .await
            .unwrap();
    }
    t.write_u16(0x1002, 0x0120, 0x0004).await.unwrap();
    assert_eq!(t.read_u16(0x1002, 0x0120).await.unwrap(), 4);
    assert_eq!(t.fprd(0x1002, 0x0120, 2).await.unwrap(), vec![4, 0]);
    let err = t.read_u16(0x1009, 0x0130).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "read of register 0x0130 on terminal 0x1009: working counter 0, expected 1"
    );
    let err = t.fprd(0x1009, 0x0130, 2).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "FPRD station 0x1009 register 0x0130: working counter 0, expected 1"
    );
}

#[tokio::test(start_paused = true)]
async fn lost_frames_are_resent() {
    let (link, _mem) = fake_bus(2, 2);
    let t = Transport::spawn(
        link,
        config(Policy {
            timeout: Duration::from_millis(20),
            retries: 2,
        }),
    );
    let start = tokio::time::Instant::now();
    let (_, wkc) = t.brd(0x0000, 2).await.unwrap();
    assert_eq!(wkc, 2);
    assert!(
        start.elapsed() >= Duration::from_millis(40),
        "two timeouts passed"
    );
}

#[tokio::test(start_paused = true)]
async fn silent_bus_times_out_with_context() {
    let (link, _mem) = fake_bus(1, usize::MAX);
    let t = Transport::spawn(
        link,
        config(Policy {
            timeout: Duration::from_millis(10),
            retries: 1,
        }),
    );
    let err = t.fprd(0x1001, 0x0130, 2).await.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Timeout {
                command: Command::Fprd,
                attempts: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let e = StationIo::read(&t, 0x1001, 0x0130, &mut [0; 2])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StationIoError::Timeout {
                station: 0x1001,
                register: 0x0130,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn many_transactions_in_flight_complete_independently() {
    let (link, mem) = fake_bus(1, 0);
    mem.lock().unwrap()[0][0x10] = 0x01;
    for i in 0..600usize {
        mem.lock().unwrap()[0][0x1000 + i] = i as u8;
    }
    let t = Transport::spawn(link, config(Policy::default()));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..600u16 {
        let t = t.clone();
        set.spawn(async move { (i, t.fprd(0x0001, 0x1000 + i, 1).await) });
    }
    let mut n = 0;
    while let Some(done) = set.join_next().await {
        let (i, data) = done.unwrap();
        assert_eq!(data.unwrap(), vec![i as u8]);
        n += 1;
    }
    assert_eq!(n, 600);
}

#[tokio::test(start_paused = true)]
async fn nop_first_frames_are_refused_before_sending() {
    let (link, _mem) = fake_bus(1, 0);
    let t = Transport::spawn(link, config(Policy::default()));
    let err = t
        .exchange(vec![DatagramRepr::new(
            Command::Nop,
            Address::Raw(0),
            vec![],
        )])
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::NopFirst));
    // A NOP after the first datagram is fine.
    let reply = t
        .exchange(vec![
            DatagramRepr::new(Command::Brd, Address::Broadcast { register: 0 }, vec![0]),
            DatagramRepr::new(Command::Nop, Address::Raw(0), vec![]),
        ])
        .await
        .unwrap();
    assert_eq!(reply[0].wkc, 1);
    assert_eq!(reply[1].wkc, 0);
}

#[tokio::test(start_paused = true)]
async fn capture_records_requests_and_replies() {
    use crate::ethercat::capture::{PcapngSink, SharedSink};
    let (link, _mem) = fake_bus(2, 0);
    let sink = SharedSink::new(PcapngSink::new(Vec::new(), "fake").unwrap());
    let t = Transport::spawn(
        link,
        TransportConfig {
            capture: Some(Box::new(sink.clone())),
            ..config(Policy::default())
        },
    );
    t.brd(0x0000, 1).await.unwrap();
    t.brd(0x0000, 1).await.unwrap();
    assert_eq!(sink.with(|s| s.frames()), Some(4));
    let bytes = sink.take().unwrap().finish().unwrap();
    assert!(
        bytes.len() > 4 * 60,
        "four frames of at least 60 bytes were written"
    );
}

#[tokio::test(start_paused = true)]
async fn link_failure_fails_waiting_transactions() {
    let (link, from_master, to_master) = ChannelLink::pair();
    drop(to_master);
    let t = Transport::spawn(link, config(Policy::default()));
    let err = t.brd(0, 1).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Link(_) | TransportError::Closed),
        "{err:?}"
    );
    drop(from_master);
}

#[tokio::test(start_paused = true)]
async fn batch_packs_frames_and_keeps_order() {
    let (link, mem) = fake_bus(1, 0);
    mem.lock().unwrap()[0][0x10] = 0x01;
    for i in 0..400usize {
        mem.lock().unwrap()[0][0x2000 + i] = (i * 7) as u8;
    }
    let t = Transport::spawn(link, config(Policy::default()));
    // 400 datagrams of 13 bytes: more than one frame holds.
    let datagrams: Vec<DatagramRepr> = (0..400u16)
        .map(|i| {
            DatagramRepr::new(
                Command::Fprd,
                Address::Station {
                    station: 1,
                    register: 0x2000 + i,
                },
                vec![0],
            )
        })
        .collect();
    let reply = t.batch(datagrams).await.unwrap();
    assert_eq!(reply.len(), 400);
    for (i, d) in reply.iter().enumerate() {
        assert_eq!(d.data, vec![(i * 7) as u8], "datagram {i} in order");
        assert_eq!(d.wkc, 1);
    }
}

/// Groups are never split between frames: 30 groups of four 8-byte writes (20 bytes
/// each on the wire, 80 a group) fill a frame with 18 groups (1440 of 1498 bytes), where
/// packing datagram by datagram would have put two datagrams of the 19th group in it.
#[test]
fn groups_stay_whole_in_one_frame() {
    let write = |station: u16, register: u16| {
        DatagramRepr::new(
            Command::Fpwr,
            Address::Station { station, register },
            vec![0; 8],
        )
    };
    let groups: Vec<Vec<DatagramRepr>> = (0..30u16)
        .map(|s| (0..4u16).map(|r| write(s, r * 8)).collect())
        .collect();
    let frames = pack_groups(groups.clone());
    let sizes: Vec<usize> = frames.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![18 * 4, 12 * 4]);
    for frame in &frames {
        let bytes: usize = frame.iter().map(DatagramRepr::wire_len).sum();
        assert!(bytes <= crate::ethercat::wire::frame::MAX_DATAGRAMS_LEN);
    }
    // In order, nothing lost.
    let flat: Vec<DatagramRepr> = frames.into_iter().flatten().collect();
    assert_eq!(flat, groups.into_iter().flatten().collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn batch_groups_returns_each_group_as_it_came_back() {
    let (link, mem) = fake_bus(1, 0);
    mem.lock().unwrap()[0][0x10] = 0x01;
    let t = Transport::spawn(link, config(Policy::default()));
    let groups: Vec<Vec<DatagramRepr>> = (0..100u16)
        .map(|g| {
            vec![
                DatagramRepr::new(
                    Command::Fpwr,
                    Address::Station {
                        station: 1,
                        register: 0x2000 + 2 * g,
                    },
                    g.to_le_bytes().to_vec(),
                ),
                DatagramRepr::new(
                    Command::Fprd,
                    Address::Station {
                        station: 1,
                        register: 0x2000 + 2 * g,
                    },
                    vec![0; 2],
                ),
            ]
        })
        .collect();
    let reply = t.batch_groups(groups).await.unwrap();
    assert_eq!(reply.len(), 100);
    for (g, group) in reply.iter().enumerate() {
        assert_eq!(group.len(), 2);
        assert_eq!(
            group[1].data,
            (g as u16).to_le_bytes(),
            "group {g} reads its write"
        );
    }
}
