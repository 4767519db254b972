//! The master against ferrocat-sim in process: scan, addresses, topology, SII identity,
//! AL states up to OP, distributed clocks.

mod master_support;

use ferrocat::ethercat::al::AlState;
use ferrocat::ethercat::master::{BringUpOptions, DcOptions, Master, ScanOptions};
use ferrocat::ethercat::registers;
use ferrocat::ethercat::sii::bulk::read_images;
use ferrocat::ethercat::sii::{Eeprom, EepromOptions};
use master_support::*;

/// Identity of each reference terminal (shared/testdata/README.md).
const IDENTITIES: [(u32, u32, u32, &str); 7] = [
    (0x2, 0x044C2C52, 0x00120000, "EK1100"),
    (0x2, 0x07D43052, 0x00100000, "EL2004"),
    (0x2, 0x0B0C3052, 0x00110000, "EL2828"),
    (0x2, 0x0B493052, 0x00110000, "EL2889"),
    (0x2, 0x0C5C3052, 0x00140000, "EL3164"),
    (0x2, 0x10083052, 0x03FC0000, "EL4104"),
    (0x2, 0x1B813052, 0x00170000, "EL7041"),
];

#[tokio::test]
async fn scan_finds_the_reference_bus() {
    let (t, _bus) = sim_transport(&REFERENCE, 1);
    let m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("scan");
    assert_eq!(m.terminals().len(), 7);
    for (i, term) in m.terminals().iter().enumerate() {
        let (vendor, product, revision, name) = IDENTITIES[i];
        assert_eq!(term.position, i as u16);
        assert_eq!(term.station, 0x1001 + i as u16);
        assert_eq!(term.identity.vendor_id, vendor, "vendor of {name}");
        assert_eq!(term.identity.product_code, product, "product of {name}");
        assert_eq!(term.identity.revision, revision, "revision of {name}");
        let got = term.name.clone().unwrap_or_default();
        assert!(
            got.starts_with(name),
            "name {got:?} of position {i} starts with {name}"
        );
        assert_eq!(term.status.state(), Some(AlState::Init));
        println!(
            "{i}: {:?} dl 0x{:04x} {:?}",
            term.name, term.ports.dl_status, term.attachment
        );
    }
    // A line: every terminal after the first hangs off its predecessor.
    assert_eq!(m.terminals()[0].attachment, None);
    for i in 1..7 {
        let a = m.terminals()[i].attachment.expect("attached");
        assert_eq!(a.parent, i as u16 - 1);
    }
}

#[tokio::test]
async fn reference_bus_reaches_preop_and_back() {
    let (t, _bus) = sim_transport(&REFERENCE, 2);
    let mut m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("scan");
    m.request_state(AlState::PreOp, None).await.expect("PRE-OP");
    assert!(
        m.terminals()
            .iter()
            .all(|t| t.status.state() == Some(AlState::PreOp))
    );
    m.request_state(AlState::Init, None).await.expect("INIT");
    assert!(
        m.terminals()
            .iter()
            .all(|t| t.status.state() == Some(AlState::Init))
    );
}

#[tokio::test]
async fn distributed_clocks_agree_after_setup() {
    let (t, _bus) = sim_transport_timed(&REFERENCE, 3);
    let mut m = Master::scan(t.clone(), &ScanOptions::default())
        .await
        .expect("scan");
    m.configure_dc(&DcOptions {
        drift_frames: 500,
        ..DcOptions::default()
    })
    .await
    .expect("DC");
    let dc: Vec<_> = m
        .terminals()
        .iter()
        .filter(|t| t.dc_delay_ns.is_some())
        .cloned()
        .collect();
    assert!(
        dc.len() >= 2,
        "the reference bus has several terminals with system time"
    );
    let delays: Vec<u32> = dc.iter().map(|t| t.dc_delay_ns.unwrap_or(0)).collect();
    assert_eq!(delays[0], 0, "the reference clock has no delay");
    assert!(
        delays.windows(2).all(|w| w[1] > w[0]),
        "delays grow along the line: {delays:?}"
    );
    // Read every system time in one frame: each terminal gives its system time when the
    // frame passed the reference clock (its delay taken off), so they must agree.
    let stations: Vec<u16> = dc.iter().map(|t| t.station).collect();
    let times: Vec<i128> = system_times(&t, &stations)
        .await
        .iter()
        .map(|&time| i128::from(time))
        .collect();
    for (t, v) in dc.iter().zip(&times) {
        println!(
            "0x{:04x} delay {:?} system time {v}",
            t.station, t.dc_delay_ns
        );
    }
    let spread = times.iter().max().unwrap_or(&0) - times.iter().min().unwrap_or(&0);
    assert!(
        spread < 5_000,
        "system times differ by {spread} ns after compensation"
    );
    // The system time is the master's clock (ns since 2000): within a minute of it.
    let now = ferrocat::ethercat::dc::ethercat_now() as i128;
    assert!(
        (times[0] - now).abs() < 60_000_000_000,
        "reference clock {} vs master {now}",
        times[0]
    );
}

#[tokio::test]
async fn basic_terminals_reach_op_with_pdos_from_the_sii() {
    // Terminals without firmware: CoE is refused, the SII's PDOs are used.
    let (t, bus) = sim_transport(&REFERENCE, 5);
    let mut m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("scan");
    m.request_state(AlState::Op, None).await.expect("OP");
    assert!(
        m.terminals()
            .iter()
            .all(|t| t.status.state() == Some(AlState::Op))
    );
    let seg = bus.segment();
    for i in 0..REFERENCE.len() {
        let esc = seg.terminal(i).expect("terminal");
        assert_eq!(
            format!("{:?}", esc.al_state()).to_uppercase(),
            "OP",
            "terminal {i}"
        );
    }
}

#[tokio::test]
async fn reference_bus_reaches_op_with_safe_outputs() {
    let (t, bus) = reference_transport(4);
    let mut m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("scan");
    m.request_state(AlState::Op, None).await.expect("OP");
    for term in m.terminals() {
        assert_eq!(
            term.status.state(),
            Some(AlState::Op),
            "0x{:04x}",
            term.station
        );
        assert!(!term.status.error());
    }
    let image = m.process_image().expect("process image configured");
    assert!(image.outputs.len > 0 && image.inputs.len > 0, "{image:?}");
    let seg = bus.segment();
    for i in 0..REFERENCE.len() {
        let esc = seg.terminal(i).expect("terminal");
        assert_eq!(
            format!("{:?}", esc.al_state()).to_uppercase(),
            "OP",
            "terminal {i}"
        );
    }
}

/// The SYNC unit of a simulated terminal: cyclic unit control (0x0980), activation
/// (0x0981), SYNC0 cycle (0x09A0), SYNC1 cycle (0x09A4), start time (0x0990).
fn sync_unit(esc: &ferrocat_sim::esc::Esc) -> (u8, u8, u32, u32, u64) {
    (
        esc.peek(registers::DC_CYCLIC_UNIT_CONTROL),
        esc.peek(registers::DC_ACTIVATION),
        peek_le(esc, registers::DC_SYNC0_CYCLE, 4) as u32,
        peek_le(esc, registers::DC_SYNC1_CYCLE, 4) as u32,
        peek_le(esc, registers::DC_START_TIME, 8),
    )
}

/// Bring-up to SAFE-OP with a 1 ms bus cycle: every terminal whose SII lists DC modes
/// gets the SYNC settings of its chosen mode (the first that starts SYNC0, the EL3164
/// its "DCIN" with SYNC0 100 µs ahead of the grid), AssignActivate, SYNC1 shift and
/// all; the first pulses lie on one 1 ms grid, each moved by its mode's SYNC0 shift.
#[tokio::test]
async fn bring_up_configures_sync_signals_as_the_sii_dc_modes_say() {
    let (t, bus) = reference_transport(6);
    let mut m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("scan");
    m.set_bring_up_options(BringUpOptions {
        dc: Some(DcOptions {
            drift_frames: 200,
            sync_cycle: Some(std::time::Duration::from_millis(1)),
            modes: vec!["4=DCIN".parse().expect("selection")],
        }),
        ..BringUpOptions::default()
    });
    m.request_state(AlState::SafeOp, None)
        .await
        .expect("SAFE-OP with SYNC signals");
    // EL3164 "DCIN": 0x0700, SYNC1 25 µs after SYNC0; EL4104 "DC": 0x0700, SYNC1 100 µs
    // after; EL7041 "DC": 0x0300 (the first modes of the EL4104 and EL7041, "Synchron",
    // start no SYNC0). The others have no DC modes and are left alone.
    let want: [(u8, u8, u32, u32, Option<usize>); 7] = [
        (0, 0, 0, 0, None),
        (0, 0, 0, 0, None),
        (0, 0, 0, 0, None),
        (0, 0, 0, 0, None),
        (0x00, 0x07, 1_000_000, 25_000, Some(2)),
        (0x00, 0x07, 1_000_000, 100_000, Some(1)),
        (0x00, 0x03, 1_000_000, 0, Some(1)),
    ];
    let seg = bus.segment();
    let mut grid = Vec::new();
    for (i, &(cuc, act, c0, c1, mode)) in want.iter().enumerate() {
        let unit = sync_unit(seg.terminal(i).expect("terminal"));
        assert_eq!(
            (unit.0, unit.1, unit.2, unit.3),
            (cuc, act, c0, c1),
            "SYNC unit of terminal {i}"
        );
        let recorded = m.terminals()[i].dc_sync;
        assert_eq!(
            recorded.map(|s| (s.assign_activate, s.mode)),
            mode.map(|mode| (u16::from(act) << 8 | u16::from(cuc), mode)),
            "settings of terminal {i}"
        );
        if let Some(s) = recorded {
            // The start minus the mode's SYNC0 shift is the common grid point.
            grid.push(i128::from(unit.4) - i128::from(s.shift_ns));
        }
    }
    let dcin = m.terminals()[4].dc_sync.expect("EL3164 SYNC");
    assert_eq!(dcin.shift_ns, -100_000, "a mode with a shift is among them");
    assert_eq!(grid.len(), 3);
    assert!(
        grid.iter().all(|g| g % 1_000_000 == 0),
        "every start less its shift on the 1 ms grid: {grid:?}"
    );
    assert!(grid.windows(2).all(|w| w[0] == w[1]), "one grid: {grid:?}");
    assert!(
        m.terminals()
            .iter()
            .all(|t| t.status.state() == Some(AlState::SafeOp))
    );
}

/// A DC mode chosen by name: the EL2262's oversampling mode keeps the latch-unit bits of
/// 0x0980 and the SYNC1 bit, divides the cycle by eight. A mode the later EL7041 lacks
/// is refused before any register of any terminal is written: the EL2262 before it,
/// whose own choice is fine, keeps its SYNC unit and offset untouched.
#[tokio::test]
async fn a_chosen_dc_mode_sets_every_assign_activate_bit_and_cycle() {
    let (t, bus) = sim_transport(&["ek1100", "el2262", "el7041"], 10);
    let mut m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("scan");
    let err = m
        .configure_dc(&DcOptions {
            drift_frames: 10,
            sync_cycle: Some(std::time::Duration::from_millis(1)),
            modes: vec![
                "1=DcSync2".parse().expect("selection"),
                "2=DcSync2".parse().expect("selection"),
            ],
        })
        .await
        .expect_err("the EL7041 has no mode DcSync2");
    assert_eq!(
        err.to_string(),
        "terminal 0x1003 has no DC mode \"DcSync2\" (its SII lists \"Synchron\" (#0), \"DC\" (#1))"
    );
    {
        let seg = bus.segment();
        for i in 0..3 {
            let esc = seg.terminal(i).expect("terminal");
            assert_eq!(
                sync_unit(esc),
                (0, 0, 0, 0, 0),
                "SYNC unit of terminal {i} untouched"
            );
            assert_eq!(
                peek_le(esc, registers::DC_SYSTEM_TIME_OFFSET, 8),
                0,
                "offset of terminal {i} untouched"
            );
            assert_eq!(
                peek_le(esc, registers::DC_SYSTEM_TIME_DELAY, 4),
                0,
                "delay of terminal {i} untouched"
            );
        }
    }
    m.configure_dc(&DcOptions {
        drift_frames: 10,
        sync_cycle: Some(std::time::Duration::from_millis(1)),
        modes: vec!["1=DcSync2".parse().expect("selection")],
    })
    .await
    .expect("DC with SYNC");
    let seg = bus.segment();
    let (cuc, act, c0, c1, _) = sync_unit(seg.terminal(1).expect("EL2262"));
    assert_eq!((cuc, act, c0, c1), (0x30, 0x07, 125_000, 875_000));
    let (cuc, act, c0, c1, _) = sync_unit(seg.terminal(2).expect("EL7041"));
    assert_eq!((cuc, act, c0, c1), (0x00, 0x03, 1_000_000, 0));
    assert_ne!(
        peek_le(
            seg.terminal(1).expect("EL2262"),
            registers::DC_SYSTEM_TIME_OFFSET,
            8
        ),
        0,
        "offsets written this time"
    );
}

/// The reference terminals on a clock that moves `step_ns` with every frame the master
/// sends (and only then), scanned.
async fn stepped_master(
    step_ns: u64,
    pid: u32,
) -> (
    Master,
    ferrocat::ethercat::transport::Transport,
    ferrocat_sim::inproc::BusHandle,
) {
    let paths: Vec<String> = REFERENCE.iter().map(|n| eeprom(n)).collect();
    let segment =
        ferrocat_sim::segment::Segment::from_eeprom_files(&paths).expect("test EEPROMs load");
    let (t, bus) = stepped_transport(segment, step_ns, pid);
    let m = Master::scan(t.clone(), &ScanOptions::default())
        .await
        .expect("scan");
    (m, t, bus)
}

/// SYNC with a 1 ms cycle on the stepped reference bus.
fn sync_1ms() -> DcOptions {
    DcOptions {
        drift_frames: 10,
        sync_cycle: Some(std::time::Duration::from_millis(1)),
        modes: Vec::new(),
    }
}

/// The system time of every terminal with SYNC signals (read in one frame) and the
/// start time written to it (peeked, so as written).
async fn starts_and_times(
    m: &Master,
    t: &ferrocat::ethercat::transport::Transport,
    bus: &ferrocat_sim::inproc::BusHandle,
) -> Vec<(u16, u64, u64)> {
    let synced: Vec<(usize, u16)> = m
        .terminals()
        .iter()
        .enumerate()
        .filter(|(_, t)| t.dc_sync.is_some())
        .map(|(i, t)| (i, t.station))
        .collect();
    let stations: Vec<u16> = synced.iter().map(|&(_, station)| station).collect();
    let times = system_times(t, &stations).await;
    let seg = bus.segment();
    synced
        .iter()
        .zip(times)
        .map(|(&(i, station), time)| {
            let esc = seg.terminal(i).expect("terminal");
            (station, peek_le(esc, registers::DC_START_TIME, 8), time)
        })
        .collect()
}

/// On a bus where every frame takes 10 ms, the SYNC settings of all terminals still
/// arrive before the first pulse: they go out together, not five frames per terminal
/// one after the other (which took 150 ms here, past the 100 ms lead). A real ESC
/// whose start time has passed waits for the 64-bit system time to wrap (the simulator
/// fires on the grid anyway), so every start must still be ahead once configuration
/// is done.
#[tokio::test]
async fn sync_starts_are_still_ahead_on_a_slow_bus() {
    let (mut m, t, bus) = stepped_master(10_000_000, 15).await;
    m.configure_dc(&sync_1ms()).await.expect("DC with SYNC");
    let starts = starts_and_times(&m, &t, &bus).await;
    assert_eq!(starts.len(), 3, "EL3164, EL4104, EL7041");
    for (station, start, now) in starts {
        println!("0x{station:04x}: start {start}, system time {now}");
        assert!(
            start > now,
            "0x{station:04x}: start {start} passed at {now}"
        );
        assert_eq!(start % 1_000_000, 0, "on the 1 ms grid");
    }
}

/// A bus so slow (150 ms a frame) that the 100 ms lead runs out before the writes
/// arrive: the read-back sees it, and the start is placed again further ahead.
#[tokio::test]
async fn a_missed_sync_start_is_placed_again_further_ahead() {
    let (mut m, t, bus) = stepped_master(150_000_000, 17).await;
    m.configure_dc(&sync_1ms()).await.expect("DC with SYNC");
    let starts = starts_and_times(&m, &t, &bus).await;
    assert_eq!(starts.len(), 3);
    for (station, start, now) in starts {
        assert!(
            start > now,
            "0x{station:04x}: start {start} passed at {now}"
        );
        assert_eq!(start % 1_000_000, 0, "on the 1 ms grid");
    }
}

/// A bus where a frame takes a second cannot be given a start ahead of its system time
/// within the longest lead: a clear error naming the terminal, and the SYNC signals
/// are switched off again.
#[tokio::test]
async fn a_bus_too_slow_for_any_sync_start_is_refused() {
    let (mut m, _t, bus) = stepped_master(1_000_000_000, 19).await;
    let e = m
        .configure_dc(&sync_1ms())
        .await
        .expect_err("no start can be placed ahead");
    let text = e.to_string();
    assert!(
        text.starts_with("terminal 0x1005: the first SYNC0 pulse at system time "),
        "{text}"
    );
    assert!(
        text.ends_with(
            "on attempt 1 with a lead of 100 ms; the bus takes too long to configure SYNC signals"
        ),
        "{text}"
    );
    assert!(matches!(
        e,
        ferrocat::ethercat::master::MasterError::SyncStart(_)
    ));
    let seg = bus.segment();
    for i in 0..REFERENCE.len() {
        let esc = seg.terminal(i).expect("terminal");
        assert_eq!(
            esc.peek(registers::DC_ACTIVATION),
            0,
            "terminal {i}: SYNC off"
        );
    }
    assert!(m.terminals().iter().all(|t| t.dc_sync.is_none()));
}

/// Names of the spans opened while a future runs on this thread.
#[derive(Clone, Default)]
struct SpanNames(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanNames {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Ok(mut v) = self.0.lock() {
            v.push(attrs.metadata().name().to_owned());
        }
    }
}

/// Bring-up to SAFE-OP sets up distributed clocks (offsets and delays written, each step
/// in its span) and the watchdogs; without DC the DC registers stay untouched.
#[tokio::test]
async fn bring_up_to_safeop_sets_up_dc_and_watchdogs() {
    use tracing_subscriber::layer::SubscriberExt;
    for dc in [true, false] {
        let (t, bus) = reference_transport(11 + u32::from(dc));
        let mut m = Master::scan(t, &ScanOptions::default())
            .await
            .expect("scan");
        m.set_bring_up_options(BringUpOptions {
            dc: dc.then(|| DcOptions {
                drift_frames: 100,
                ..DcOptions::default()
            }),
            watchdog: Some(std::time::Duration::from_millis(50)),
        });
        let names = SpanNames::default();
        let subscriber = tracing_subscriber::registry().with(names.clone());
        let _guard = tracing::subscriber::set_default(subscriber);
        m.request_state(AlState::SafeOp, None)
            .await
            .expect("SAFE-OP");
        let names = names.0.lock().expect("span names").clone();
        for step in ["request_state", "process_data", "watchdogs"] {
            assert!(names.iter().any(|n| n == step), "{step} span in {names:?}");
        }
        for step in ["dc", "dc_delays", "dc_drift"] {
            assert_eq!(
                names.iter().any(|n| n == step),
                dc,
                "{step} span (DC {dc}) in {names:?}"
            );
        }
        let seg = bus.segment();
        let mut with_offset = 0;
        for (i, term) in m.terminals().iter().enumerate() {
            let esc = seg.terminal(i).expect("terminal");
            let word = |a: u16| u16::from_le_bytes([esc.peek(a), esc.peek(a + 1)]);
            assert_eq!(word(registers::WATCHDOG_TIME_PROCESS_DATA), 500, "50 ms");
            let offset = peek_le(esc, registers::DC_SYSTEM_TIME_OFFSET, 8);
            if offset != 0 {
                with_offset += 1;
            }
            assert_eq!(term.dc_delay_ns.is_some(), offset != 0, "terminal {i}");
        }
        // Six of the seven have a system time (the EL2828 has receive times only).
        assert_eq!(with_offset, if dc { 6 } else { 0 }, "offsets (DC {dc})");
    }
}

#[tokio::test]
async fn aliases_become_station_addresses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sim");
    let text = "[[terminal]]\nname = \"EK1100\"\neeprom = \"../../../shared/testdata/eeprom/ek1100.bin\"\n\n\
                [[terminal]]\nname = \"EL2004\"\neeprom = \"../../../shared/testdata/eeprom/el2004.bin\"\nalias = 0x1002\n\n\
                [[terminal]]\nname = \"EL2828\"\neeprom = \"../../../shared/testdata/eeprom/el2828.bin\"\nalias = 0x0300\n";
    let topology = ferrocat_sim::topology::Topology::parse(text, &dir.join("alias.toml"), &dir)
        .expect("topology");
    let segment = ferrocat_sim::serve::build_segment(topology.build().expect("build"));
    let (link, _bus) = link_to(segment);
    let t = ferrocat::ethercat::transport::Transport::spawn(link, Default::default());
    let m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("scan");
    let got: Vec<(u16, u16)> = m.terminals().iter().map(|t| (t.alias, t.station)).collect();
    // Position 0 has no alias and skips 0x1002, which position 1 claims as its alias.
    assert_eq!(got, vec![(0, 0x1001), (0x1002, 0x1002), (0x0300, 0x0300)]);
    assert_eq!(m.terminals()[2].identity.product_code, 0x0B0C3052);
}

#[tokio::test]
async fn watchdogs_are_configured_in_100_us_units() {
    let (t, bus) = sim_transport(&REFERENCE[..3], 7);
    let m = Master::scan(t, &ScanOptions { read_sii: false })
        .await
        .expect("scan");
    m.configure_watchdogs(std::time::Duration::from_millis(50))
        .await
        .expect("watchdogs");
    let seg = bus.segment();
    for i in 0..3 {
        let esc = seg.terminal(i).expect("terminal");
        let word = |a: u16| u16::from_le_bytes([esc.peek(a), esc.peek(a + 1)]);
        assert_eq!(word(registers::WATCHDOG_DIVIDER), 2498, "100 us units");
        assert_eq!(word(registers::WATCHDOG_TIME_PROCESS_DATA), 500, "50 ms");
    }
}

#[tokio::test]
async fn damaged_eeproms_do_not_stop_the_scan() {
    let (t, _bus) = sim_transport(&["ek1100", "akd-null-strings", "hbm-clipx"], 8);
    let m = Master::scan(t, &ScanOptions::default())
        .await
        .expect("scan");
    assert_eq!(m.terminals().len(), 3);
    let akd = &m.terminals()[1];
    assert_eq!(
        akd.identity.vendor_id, 0x6A,
        "identity read despite damaged strings"
    );
    assert_eq!(akd.identity.product_code, 0x00414B44);
    assert_eq!(akd.name, None, "its strings section is damaged");
    let clipx = &m.terminals()[2];
    assert_eq!(clipx.identity.vendor_id, 0x11D);
    assert_eq!(clipx.name.as_deref(), Some("ClipX"));
}

/// Every EEPROM image of the test data on one bus: the SII of all terminals read
/// together (commands and polls of all terminals sharing frames) is, byte for byte, what
/// the reader of one terminal reads, and a prefix of the image file; a station address
/// nobody has fails alone.
#[tokio::test]
async fn sii_of_all_terminals_read_together_matches_one_by_one() {
    let dir = format!(
        "{}/../../shared/testdata/eeprom",
        env!("CARGO_MANIFEST_DIR")
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("test data")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".bin").map(str::to_owned))
        .collect();
    // The simulator cannot build an ESC around a blank EEPROM (empty-eeprom.bin); the
    // reader's handling of it is unit-tested with an emulated EEPROM interface.
    let (mut names, refused): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|n| ferrocat_sim::segment::Segment::from_eeprom_files(&[eeprom(n)]).is_ok());
    assert_eq!(refused, ["empty-eeprom"]);
    names.sort();
    assert_eq!(names.len(), 14, "{names:?}");
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (t, _bus) = sim_transport(&refs, 9);
    let m = Master::scan(t.clone(), &ScanOptions { read_sii: false })
        .await
        .expect("scan");
    let mut stations: Vec<u16> = m.terminals().iter().map(|t| t.station).collect();
    stations.push(0x7777);
    let together = read_images(&t, &stations, EepromOptions::default()).await;
    assert_eq!(together.len(), names.len() + 1);
    for ((name, station), got) in names.iter().zip(&stations).zip(&together) {
        let alone = Eeprom::new(&t, *station).read_image().await;
        match (got, alone) {
            (Ok(got), Ok(alone)) => {
                assert_eq!(got, &alone, "{name}: read together vs alone");
                let file = std::fs::read(eeprom(name)).expect("image file");
                assert!(got.len() >= 128, "{name}: at least the header");
                // A truncated file (akd-null-strings) reads on as the simulator's erased
                // cells beyond its end.
                let n = got.len().min(file.len());
                assert_eq!(&file[..n], &got[..n], "{name}: prefix of the file");
            }
            (Err(got), Err(alone)) => assert_eq!(got.to_string(), alone.to_string(), "{name}"),
            (got, alone) => panic!("{name}: together {got:?}, alone {alone:?}"),
        }
    }
    let missing = together.last().expect("one result per station");
    let e = missing.as_ref().expect_err("no terminal at 0x7777");
    assert_eq!(
        e.to_string(),
        "EEPROM interface of terminal 0x7777: read of register 0x0500 on terminal 0x7777: working counter 0, expected 1"
    );
}

/// Drift of each reference terminal's clock in ppm (the EL7041's as in
/// configs/sim/reference.toml); the EK1100, the reference clock, keeps time.
const DRIFT_PPM: [f64; 7] = [0.0, -20.0, 0.0, 10.0, 30.0, -5.0, 15.0];

/// Simulated time per frame the master sends: the drift frames come once a millisecond.
/// (The simulated ESC adjusts its clock's speed from each single compare, in whole ns:
/// compares microseconds apart would quantise the speed to tens of ppm.)
const STEP_NS: u64 = 1_000_000;

/// The spread (max − min, ns) of the system times (as at the reference clock) of the terminals with
/// a system time, read in one frame `after_ns` of simulated time after DC start-up with
/// `drift_frames` frames of static drift compensation.
async fn spread_after(drift_frames: usize, after_ns: u64, pid: u32) -> i128 {
    let paths: Vec<String> = REFERENCE.iter().map(|n| eeprom(n)).collect();
    let mut segment =
        ferrocat_sim::segment::Segment::from_eeprom_files(&paths).expect("test EEPROMs load");
    segment.set_wire_time(ferrocat_sim::wiretime::WireTime::realistic());
    for (i, ppm) in DRIFT_PPM.iter().enumerate() {
        segment
            .terminal_mut(i)
            .expect("terminal")
            .set_drift_ppm(*ppm);
    }
    let (t, bus) = stepped_transport(segment, STEP_NS, pid);
    let mut m = Master::scan(t.clone(), &ScanOptions::default())
        .await
        .expect("scan");
    m.configure_dc(&DcOptions {
        drift_frames,
        ..DcOptions::default()
    })
    .await
    .expect("DC");
    bus.clock().advance_ns(after_ns);
    let dc: Vec<(u16, u32)> = m
        .terminals()
        .iter()
        .filter_map(|t| Some((t.station, t.dc_delay_ns?)))
        .collect();
    assert_eq!(dc.len(), 6, "six terminals with a system time");
    let stations: Vec<u16> = dc.iter().map(|&(station, _)| station).collect();
    let times: Vec<i128> = system_times(&t, &stations)
        .await
        .iter()
        .map(|&time| i128::from(time))
        .collect();
    println!("drift frames {drift_frames}: system times {times:?}");
    times.iter().max().unwrap_or(&0) - times.iter().min().unwrap_or(&0)
}

/// Static drift compensation brings drifting clocks (−20..+30 ppm) into step: a second
/// of simulated time later they still agree within a microsecond, while without it
/// they are tens of microseconds apart. Simulated time passes only with the master's
/// frames and the test's own step, so the figures do not depend on the machine.
#[tokio::test]
async fn drift_compensation_keeps_drifting_clocks_together() {
    const SECOND: u64 = 1_000_000_000;
    let without = spread_after(0, SECOND, 13).await;
    let with = spread_after(2000, SECOND, 14).await;
    println!("spread after 1 s: {without} ns without compensation, {with} ns with");
    assert!(
        without > 40_000,
        "50 ppm apart: {without} ns after a second"
    );
    assert!(
        with < 1_000,
        "{with} ns after a second despite compensation"
    );
}
