//! CoE on the wire, checked by an independent decoder: a minimal master written here from
//! ETG.1000.4 brings the reference bus's EL7041 to PRE-OP through raw frames and runs SDO
//! uploads and downloads (expedited, normal, complete access, abort), SDO information
//! (a fragmented OD list, object and entry descriptions, an error) and a mailbox error
//! through the simulated segment. Every frame is written to pcapng and must decode in
//! tshark as EtherCAT with no malformed or warning item.

mod support;

use std::path::PathBuf;

use ferrocat_sim::serve::{BusProcessor, bus_processor};
use ferrocat_sim::topology::Topology;
use support::{assert_tshark_clean, tshark_matching, write_pcapng};

/// Datagram commands. ETG.1000.4 table 12.
const APWR: u8 = 2;
const FPRD: u8 = 4;
const FPWR: u8 = 5;
const STATION: u16 = 0x1007;

struct Master {
    bus: BusProcessor,
    now_ns: u64,
    frames: Vec<(u64, Vec<u8>)>,
    index: u8,
}

impl Master {
    /// Sends one datagram, returns its data and working counter.
    fn datagram(&mut self, cmd: u8, adp: u16, ado: u16, data: &[u8]) -> (Vec<u8>, u16) {
        let mut f = vec![0xFF; 6];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x88, 0xA4]);
        let len = 10 + data.len() + 2;
        f.extend_from_slice(&((len as u16) | (1 << 12)).to_le_bytes());
        self.index = self.index.wrapping_add(1);
        f.extend_from_slice(&[cmd, self.index]);
        f.extend_from_slice(&adp.to_le_bytes());
        f.extend_from_slice(&ado.to_le_bytes());
        f.extend_from_slice(&(data.len() as u16).to_le_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(data);
        f.extend_from_slice(&[0, 0]);
        f.resize(f.len().max(60), 0);
        self.now_ns += 1_000_000;
        self.frames.push((self.now_ns, f.clone()));
        let reply = self.bus.process(&f, self.now_ns).expect("frame answered");
        self.frames
            .push((self.now_ns + 20_000, reply.frame.clone()));
        let r = reply.frame;
        let d = r[26..26 + data.len()].to_vec();
        let wkc = u16::from_le_bytes([r[26 + data.len()], r[27 + data.len()]]);
        (d, wkc)
    }

    fn write(&mut self, ado: u16, data: &[u8]) {
        let (_, wkc) = self.datagram(FPWR, STATION, ado, data);
        assert_eq!(wkc, 1, "FPWR {ado:#06x}");
    }

    fn read(&mut self, ado: u16, len: usize) -> Vec<u8> {
        let (d, wkc) = self.datagram(FPRD, STATION, ado, &vec![0; len]);
        assert_eq!(wkc, 1, "FPRD {ado:#06x}");
        d
    }

    /// Writes a mailbox message (padded to the SM0 length) and returns the replies that
    /// become readable from SM1 until `count` have arrived.
    fn mailbox(&mut self, message: &[u8], count: usize) -> Vec<Vec<u8>> {
        let mut m = message.to_vec();
        m.resize(128, 0);
        self.write(0x1000, &m);
        let mut replies = Vec::new();
        for _ in 0..200 {
            if replies.len() == count {
                break;
            }
            // SM1 status bit 3: mailbox full. ETG.1000.4 table 59.
            if self.read(0x080D, 1)[0] & 0x08 != 0 {
                let r = self.read(0x1080, 128);
                let len = usize::from(u16::from_le_bytes([r[0], r[1]]));
                replies.push(r[..6 + len].to_vec());
            }
        }
        assert_eq!(replies.len(), count, "mailbox replies");
        replies
    }
}

fn coe(counter: u8, body: &[u8]) -> Vec<u8> {
    let mut m = (body.len() as u16).to_le_bytes().to_vec();
    m.extend_from_slice(&[0, 0, 0, 0x03 | (counter << 4)]);
    m.extend_from_slice(body);
    m
}

#[test]
fn coe_traffic_decodes_in_tshark() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let topology = Topology::load(&root.join("../configs/sim/reference.toml")).expect("topology");
    let mut m = Master {
        bus: bus_processor(topology.build().expect("bus")),
        now_ns: 1_700_000_000_000_000_000,
        frames: Vec::new(),
        index: 0,
    };
    // Station address of the 7th terminal (auto-increment address -6).
    let (_, wkc) = m.datagram(APWR, 0u16.wrapping_sub(6), 0x0010, &STATION.to_le_bytes());
    assert_eq!(wkc, 1);
    // Mailbox SyncManagers as the EL7041's SII says. ETG.1000.4 table 57.
    m.write(0x0800, &[0x00, 0x10, 0x80, 0x00, 0x26, 0x00, 0x01, 0x00]);
    m.write(0x0808, &[0x80, 0x10, 0x80, 0x00, 0x22, 0x00, 0x01, 0x00]);
    m.write(0x0120, &[0x02, 0x00]);
    let mut state = 0;
    for _ in 0..100 {
        state = m.read(0x0130, 2)[0];
        if state & 0x0F == 2 {
            break;
        }
    }
    assert_eq!(state, 0x02, "EL7041 in PRE-OP without error");

    // Expedited upload of the product code.
    let r = m.mailbox(&coe(1, &[0, 0x20, 0x40, 0x18, 0x10, 0x02, 0, 0, 0, 0]), 1);
    assert_eq!(
        &r[0][8..16],
        &[0x43, 0x18, 0x10, 0x02, 0x52, 0x30, 0x81, 0x1B]
    );
    // Normal upload of the device name.
    let r = m.mailbox(&coe(2, &[0, 0x20, 0x40, 0x08, 0x10, 0x00, 0, 0, 0, 0]), 1);
    assert_eq!(&r[0][16..], b"EL7041");
    // Complete access upload of the RxPDO assignment.
    let r = m.mailbox(&coe(3, &[0, 0x20, 0x50, 0x12, 0x1C, 0x00, 0, 0, 0, 0]), 1);
    assert_eq!(&r[0][16..], &[3, 0, 0x00, 0x16, 0x02, 0x16, 0x04, 0x16]);
    // Abort: object does not exist.
    let r = m.mailbox(&coe(4, &[0, 0x20, 0x40, 0x34, 0x12, 0x00, 0, 0, 0, 0]), 1);
    assert_eq!(
        &r[0][8..16],
        &[0x80, 0x34, 0x12, 0x00, 0x00, 0x00, 0x02, 0x06]
    );
    // Expedited download of a setting.
    let r = m.mailbox(
        &coe(5, &[0, 0x20, 0x2B, 0x10, 0x80, 0x01, 0xE8, 0x03, 0, 0]),
        1,
    );
    assert_eq!(r[0][8], 0x60);
    // SDO information: OD list of all objects, fragmented through the 128-byte mailbox.
    let objects = topology_objects();
    let fragments = (2 + 2 * objects).div_ceil(128 - 12);
    let r = m.mailbox(&coe(6, &[0, 0x80, 0x01, 0, 0, 0, 0x01, 0x00]), fragments);
    assert!(fragments > 1);
    assert_eq!(r[0][8], 0x82, "OD list response, incomplete");
    assert_eq!(r[fragments - 1][8], 0x02, "last fragment");
    // Object and entry description, and an SDO information error.
    let r = m.mailbox(&coe(7, &[0, 0x80, 0x03, 0, 0, 0, 0x18, 0x10]), 1);
    assert_eq!(&r[0][18..], b"Identity");
    let r = m.mailbox(
        &coe(1, &[0, 0x80, 0x05, 0, 0, 0, 0x18, 0x10, 0x02, 0x00]),
        1,
    );
    assert_eq!(&r[0][22..], b"Product code");
    let r = m.mailbox(&coe(2, &[0, 0x80, 0x03, 0, 0, 0, 0x34, 0x12]), 1);
    assert_eq!(r[0][8], 0x07);
    // A mailbox protocol the terminal does not speak (FoE, type 4): mailbox error.
    let mut foe = vec![6, 0, 0, 0, 0, 0x34];
    foe.extend_from_slice(&[0x01, 0, 0, 0, 0, 0]);
    let r = m.mailbox(&foe, 1);
    assert_eq!(r[0][5] & 0x0F, 0, "mailbox error reply");

    let dir = std::env::temp_dir().join(format!("ferrocat-sim-coe-wire-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pcap = dir.join("coe.pcapng");
    write_pcapng(&pcap, &m.frames);
    assert_tshark_clean(&pcap);
    let coe_frames = tshark_matching(&pcap, "ecat_mailbox.coe").len();
    assert!(coe_frames >= 2 * 10, "{coe_frames} CoE frames dissected");
    let _ = std::fs::remove_dir_all(&dir);
}

fn topology_objects() -> usize {
    let od = ferrocat_sim::coe::ObjectDictionary::from_json_file(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/sdo/el7041.json"),
    )
    .expect("dictionary");
    od.len()
}
