//! The CoE server against the dictionaries recorded from real EL7041 and EL3164
//! terminals: every object uploads as recorded, segmented transfers both ways, complete
//! access, SDO information, and each abort code a master can provoke.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ferrocat_sim::coe::dictionary::AccessState;
use ferrocat_sim::coe::mailbox::MailboxHeader;
use ferrocat_sim::coe::{AbortCode, CoeServer, Emergency, ObjectDictionary};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata")
}

fn recorded(name: &str) -> BTreeMap<(u16, u8), Vec<u8>> {
    let text = std::fs::read_to_string(testdata().join("sdo").join(name)).expect("dictionary file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut out = BTreeMap::new();
    for (k, v) in json["objects"].as_object().expect("objects") {
        let (i, s) = k.split_once(':').expect("key");
        let v = v.as_str().expect("hex");
        let bytes: Vec<u8> = (0..v.len())
            .step_by(2)
            .map(|n| u8::from_str_radix(&v[n..n + 2], 16).expect("hex digit"))
            .collect();
        out.insert(
            (
                u16::from_str_radix(i, 16).expect("index"),
                u8::from_str_radix(s, 16).expect("sub"),
            ),
            bytes,
        );
    }
    out
}

fn server(name: &str, mailbox: usize) -> CoeServer {
    let od = ObjectDictionary::from_json_file(&testdata().join("sdo").join(name)).expect("load");
    CoeServer::new(od, mailbox)
}

/// A minimal SDO client written from ETG.1000.6 tables 30-39, independent of the server.
struct Client {
    counter: u8,
}

enum Reply {
    Data(Vec<u8>),
    Abort(u32),
}

impl Client {
    fn new() -> Self {
        Self { counter: 0 }
    }

    fn request(&mut self, coe_and_sdo: &[u8]) -> Vec<u8> {
        self.counter = self.counter % 7 + 1;
        let mut m = (coe_and_sdo.len() as u16).to_le_bytes().to_vec();
        m.extend_from_slice(&[0, 0, 0, 0x03 | (self.counter << 4)]);
        m.extend_from_slice(coe_and_sdo);
        m
    }

    fn exchange(&mut self, s: &mut CoeServer, body: &[u8], state: AccessState) -> Vec<u8> {
        let m = self.request(body);
        s.handle(&m, state);
        let reply = s.pop_reply().expect("a reply");
        assert!(!s.has_reply(), "exactly one reply");
        let h = MailboxHeader::parse(&reply).expect("header");
        assert_eq!(h.mailbox_type, 3, "CoE reply");
        assert_eq!(usize::from(h.length) + 6, reply.len());
        reply[6..].to_vec()
    }

    fn upload(&mut self, s: &mut CoeServer, index: u16, sub: u8, ca: bool) -> Reply {
        let i = index.to_le_bytes();
        let cmd = 0x40 | if ca { 0x10 } else { 0 };
        let r = self.exchange(
            s,
            &[0, 0x20, cmd, i[0], i[1], sub, 0, 0, 0, 0],
            AccessState::PreOp,
        );
        if r[2] == 0x80 {
            return Reply::Abort(u32::from_le_bytes([r[6], r[7], r[8], r[9]]));
        }
        assert_eq!(r[1] >> 4, 3, "SDO response service");
        assert_eq!(u16::from_le_bytes([r[3], r[4]]), index);
        assert_eq!(r[5], sub);
        let cmd = r[2];
        assert_eq!(cmd >> 5, 2, "upload initiate response");
        if cmd & 0x02 != 0 {
            let n = 4 - usize::from((cmd >> 2) & 3);
            return Reply::Data(r[6..6 + n].to_vec());
        }
        let total = u32::from_le_bytes([r[6], r[7], r[8], r[9]]) as usize;
        let mut data = r[10..].to_vec();
        let mut toggle = 0u8;
        while data.len() < total {
            let seg = self.exchange(
                s,
                &[0, 0x20, 0x60 | toggle, 0, 0, 0, 0, 0, 0, 0],
                AccessState::PreOp,
            );
            assert_eq!(seg[2] & 0xE0, 0, "upload segment response");
            assert_eq!(seg[2] & 0x10, toggle, "toggle echoed");
            let payload = &seg[3..];
            let n = if payload.len() == 7 {
                7 - usize::from((seg[2] >> 1) & 7)
            } else {
                payload.len()
            };
            data.extend_from_slice(&payload[..n]);
            let last = seg[2] & 1 != 0;
            assert_eq!(last, data.len() >= total, "last-segment flag");
            toggle ^= 0x10;
        }
        assert_eq!(data.len(), total);
        Reply::Data(data)
    }

    #[allow(clippy::too_many_arguments)]
    fn download(
        &mut self,
        s: &mut CoeServer,
        index: u16,
        sub: u8,
        data: &[u8],
        ca: bool,
        state: AccessState,
        first_room: usize,
    ) -> Result<(), u32> {
        let i = index.to_le_bytes();
        let ca_bit = if ca { 0x10 } else { 0 };
        let r = if data.len() <= 4 && !ca {
            let mut body = vec![
                0,
                0x20,
                0x23 | ((4 - data.len() as u8) << 2),
                i[0],
                i[1],
                sub,
            ];
            let mut d = data.to_vec();
            d.resize(4, 0);
            body.extend_from_slice(&d);
            self.exchange(s, &body, state)
        } else {
            let mut body = vec![0, 0x20, 0x21 | ca_bit, i[0], i[1], sub];
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            let first = data.len().min(first_room);
            body.extend_from_slice(&data[..first]);
            let r = self.exchange(s, &body, state);
            if r[2] == 0x80 {
                return Err(u32::from_le_bytes([r[6], r[7], r[8], r[9]]));
            }
            assert_eq!(r[2], 0x60 | ca_bit, "download initiate response");
            let mut sent = first;
            let mut toggle = 0u8;
            let mut last_reply = r;
            while sent < data.len() {
                let n = (data.len() - sent).min(first_room);
                let last = sent + n == data.len();
                let mut chunk = data[sent..sent + n].to_vec();
                let unused = 7usize.saturating_sub(n) as u8;
                chunk.resize(n.max(7), 0);
                let mut body = vec![0, 0x20, toggle | (unused << 1) | u8::from(last)];
                body.extend_from_slice(&chunk);
                last_reply = self.exchange(s, &body, state);
                if last_reply[2] == 0x80 {
                    return Err(u32::from_le_bytes([
                        last_reply[6],
                        last_reply[7],
                        last_reply[8],
                        last_reply[9],
                    ]));
                }
                assert_eq!(last_reply[2], 0x20 | toggle, "download segment response");
                sent += n;
                toggle ^= 0x10;
            }
            last_reply
        };
        if r[2] == 0x80 {
            return Err(u32::from_le_bytes([r[6], r[7], r[8], r[9]]));
        }
        Ok(())
    }
}

#[test]
fn every_recorded_el7041_object_uploads_as_recorded() {
    let values = recorded("el7041.json");
    // A small mailbox forces the long objects (0x10F3 diagnosis messages) through
    // segmented upload.
    let mut s = server("el7041.json", 32);
    let mut c = Client::new();
    let mut segmented = 0;
    for (&(index, sub), value) in &values {
        match c.upload(&mut s, index, sub, false) {
            Reply::Data(got) => assert_eq!(&got, value, "{index:04X}:{sub:02X}"),
            Reply::Abort(code) => panic!("{index:04X}:{sub:02X} aborted with {code:#010x}"),
        }
        if value.len() > 32 - 16 {
            segmented += 1;
        }
    }
    assert!(
        segmented > 5,
        "the long objects went segmented ({segmented})"
    );
    assert_eq!(values.len(), 388);
}

#[test]
fn every_recorded_el3164_object_uploads_as_recorded() {
    let values = recorded("el3164.json");
    let mut s = server("el3164.json", 128);
    let mut c = Client::new();
    for (&(index, sub), value) in &values {
        match c.upload(&mut s, index, sub, false) {
            Reply::Data(got) => assert_eq!(&got, value, "{index:04X}:{sub:02X}"),
            Reply::Abort(code) => panic!("{index:04X}:{sub:02X} aborted with {code:#010x}"),
        }
    }
}

#[test]
fn subindex_zero_is_derived_where_not_recorded() {
    let mut s = server("el7041.json", 128);
    let mut c = Client::new();
    let up = |c: &mut Client, s: &mut CoeServer, i, n| match c.upload(s, i, n, false) {
        Reply::Data(d) => d,
        Reply::Abort(code) => panic!("abort {code:#x}"),
    };
    assert_eq!(up(&mut c, &mut s, 0x1018, 0), vec![4]);
    assert_eq!(up(&mut c, &mut s, 0x1C12, 0), vec![3]);
    assert_eq!(
        up(&mut c, &mut s, 0x1C13, 0),
        vec![2],
        "two PDOs assigned, three free slots"
    );
    assert_eq!(up(&mut c, &mut s, 0x1A00, 0), vec![17]);
    assert_eq!(up(&mut c, &mut s, 0x1C32, 0), vec![0x20]);
}

#[test]
fn complete_access_upload_and_download_of_pdo_assignment() {
    let mut s = server("el7041.json", 128);
    let mut c = Client::new();
    let Reply::Data(d) = c.upload(&mut s, 0x1C12, 0, true) else {
        panic!("abort")
    };
    assert_eq!(d, vec![3, 0, 0x00, 0x16, 0x02, 0x16, 0x04, 0x16]);
    // Assign 0x1601 and 0x1604 instead, as a master does with complete access in PRE-OP.
    c.download(
        &mut s,
        0x1C12,
        0,
        &[2, 0, 0x01, 0x16, 0x04, 0x16],
        true,
        AccessState::PreOp,
        100,
    )
    .expect("accepted in PRE-OP");
    let Reply::Data(d) = c.upload(&mut s, 0x1C12, 0, true) else {
        panic!("abort")
    };
    assert_eq!(d, vec![2, 0, 0x01, 0x16, 0x04, 0x16, 0x04, 0x16]);
    // Not in SAFE-OP. ETG.1000.6: PDO assignment may only change in PRE-OP.
    assert_eq!(
        c.download(
            &mut s,
            0x1C12,
            0,
            &[1, 0, 0x00, 0x16],
            true,
            AccessState::SafeOp,
            100
        ),
        Err(AbortCode::DEVICE_STATE.0)
    );
    // An assignment naming a TxPDO in the RxPDO list is refused.
    assert_eq!(
        c.download(
            &mut s,
            0x1C12,
            0,
            &[1, 0, 0x00, 0x1A],
            true,
            AccessState::PreOp,
            100
        ),
        Err(AbortCode::VALUE_RANGE.0)
    );
}

#[test]
fn segmented_download_of_a_long_value_then_segmented_upload() {
    // A 30-byte complete-access write of RxPDO mapping 0x1600 through a 32-byte mailbox:
    // 16 bytes in the initiate request and the rest in segments.
    let mut s = server("el7041.json", 32);
    let mut c = Client::new();
    let mut mapping = vec![3u8, 0];
    for m in [0x7000_0101u32, 0x7000_0201, 0x0000_0006] {
        mapping.extend_from_slice(&m.to_le_bytes());
    }
    // Entries 4..7 keep their old values (still in the complete-access image).
    for m in [0x7000_0401u32, 0x0000_0004, 0x0000_0008, 0x7000_1110] {
        mapping.extend_from_slice(&m.to_le_bytes());
    }
    assert_eq!(mapping.len(), 30);
    c.download(&mut s, 0x1600, 0, &mapping, true, AccessState::PreOp, 16)
        .expect("segmented download");
    let Reply::Data(back) = c.upload(&mut s, 0x1600, 0, true) else {
        panic!("abort")
    };
    assert_eq!(back, mapping);
    let od = s.dictionary();
    assert_eq!(od.value_u64(0x1600, 3), Some(0x0000_0006));
}

#[test]
fn toggle_bit_error_aborts_the_transfer() {
    let mut s = server("el7041.json", 32);
    let mut c = Client::new();
    // Start a segmented upload of a 28-byte diagnosis message.
    let r = c.exchange(
        &mut s,
        &[0, 0x20, 0x40, 0xF3, 0x10, 0x06, 0, 0, 0, 0],
        AccessState::PreOp,
    );
    assert_eq!(r[2], 0x41, "normal upload, more to come");
    // First segment must carry toggle 0; send 1.
    let r = c.exchange(
        &mut s,
        &[0, 0x20, 0x70, 0, 0, 0, 0, 0, 0, 0],
        AccessState::PreOp,
    );
    assert_eq!(r[2], 0x80);
    assert_eq!(
        u32::from_le_bytes([r[6], r[7], r[8], r[9]]),
        AbortCode::TOGGLE_BIT.0
    );
    // The transfer is gone: another segment request is now a command-specifier error.
    let r = c.exchange(
        &mut s,
        &[0, 0x20, 0x60, 0, 0, 0, 0, 0, 0, 0],
        AccessState::PreOp,
    );
    assert_eq!(
        u32::from_le_bytes([r[6], r[7], r[8], r[9]]),
        AbortCode::COMMAND_SPECIFIER.0
    );
}

#[test]
fn each_abort_code() {
    let mut s = server("el3164.json", 128);
    let mut c = Client::new();
    let abort = |r: Vec<u8>| -> u32 {
        assert_eq!(r[2], 0x80, "abort transfer");
        assert_eq!(r[1] >> 4, 2, "abort is an SDO request service");
        u32::from_le_bytes([r[6], r[7], r[8], r[9]])
    };
    let pre = AccessState::PreOp;
    // Object does not exist.
    let r = c.exchange(&mut s, &[0, 0x20, 0x40, 0x34, 0x12, 0, 0, 0, 0, 0], pre);
    assert_eq!(abort(r), 0x0602_0000);
    // Subindex does not exist.
    let r = c.exchange(&mut s, &[0, 0x20, 0x40, 0x18, 0x10, 0x09, 0, 0, 0, 0], pre);
    assert_eq!(abort(r), 0x0609_0011);
    // Write to a read-only object (identity vendor id).
    let r = c.exchange(&mut s, &[0, 0x20, 0x23, 0x18, 0x10, 0x01, 1, 2, 3, 4], pre);
    assert_eq!(abort(r), 0x0601_0002);
    // Length too high: four bytes into a 16-bit setting (0x8000:11 filter is u16? use a 1-byte one).
    let one_byte = s
        .dictionary()
        .objects()
        .filter(|o| (0x8000..0x9000).contains(&o.index))
        .flat_map(|o| {
            o.entries
                .iter()
                .map(move |(sub, e)| (o.index, *sub, e.value.len()))
        })
        .find(|(_, sub, len)| *sub != 0 && *len == 2)
        .expect("a 16-bit setting");
    let i = one_byte.0.to_le_bytes();
    let r = c.exchange(
        &mut s,
        &[0, 0x20, 0x23, i[0], i[1], one_byte.1, 1, 2, 3, 4],
        pre,
    );
    assert_eq!(abort(r), 0x0607_0012);
    // Length too low: one byte into it.
    let r = c.exchange(
        &mut s,
        &[0, 0x20, 0x2F, i[0], i[1], one_byte.1, 1, 0, 0, 0],
        pre,
    );
    assert_eq!(abort(r), 0x0607_0013);
    // Length mismatch of a segmented download that ends short.
    let r = c.exchange(
        &mut s,
        &[0, 0x20, 0x21, 0x00, 0x80, 0x01, 20, 0, 0, 0, 1, 2],
        pre,
    );
    assert_eq!(r[2], 0x60, "segments expected");
    let r = c.exchange(
        &mut s,
        &[0, 0x20, 0x01 | (5 << 1), 3, 4, 0, 0, 0, 0, 0],
        pre,
    );
    assert_eq!(abort(r), 0x0607_0010, "segments shorter than announced");
    // Unknown command specifier (7).
    let r = c.exchange(&mut s, &[0, 0x20, 0xE0, 0x00, 0x10, 0, 0, 0, 0, 0], pre);
    assert_eq!(abort(r), 0x0504_0001);
    // Subindex 0 must be 0 before a mapping entry is written.
    let r = c.exchange(
        &mut s,
        &[0, 0x20, 0x23, 0x00, 0x1A, 0x01, 0x10, 0x01, 0x11, 0x60],
        pre,
    );
    assert_eq!(abort(r), 0x0601_0003);
    // Write-only does not occur in a recorded dictionary: mark an entry so and read it.
    if let Some(o) = s.dictionary_mut().object_mut(0x8000) {
        if let Some(e) = o.entries.get_mut(&1) {
            e.access.0 = ferrocat_sim::coe::dictionary::Access::WRITE_ALL;
        }
    }
    let r = c.exchange(&mut s, &[0, 0x20, 0x40, 0x00, 0x80, 0x01, 0, 0, 0, 0], pre);
    assert_eq!(abort(r), 0x0601_0001);
    // Settings are writable in OP, mapping objects are not.
    let r = c.exchange(
        &mut s,
        &[0, 0x20, 0x2F, 0x13, 0x1C, 0x00, 0, 0, 0, 0],
        AccessState::Op,
    );
    assert_eq!(abort(r), 0x0800_0022);
}

#[test]
fn repeated_counter_is_ignored_and_other_mailbox_types_get_an_error() {
    let mut s = server("el3164.json", 128);
    let req = [
        10u8, 0, 0, 0, 0, 0x13, 0, 0x20, 0x40, 0x00, 0x10, 0, 0, 0, 0, 0,
    ];
    s.handle(&req, AccessState::PreOp);
    assert!(s.pop_reply().is_some());
    s.handle(&req, AccessState::PreOp);
    assert!(
        s.pop_reply().is_none(),
        "a retry with the same counter is dropped"
    );
    // FoE (type 4) is not supported: mailbox error, detail 2.
    s.handle(&[4, 0, 0, 0, 0, 0x24, 1, 2, 3, 4], AccessState::PreOp);
    let r = s.pop_reply().expect("error reply");
    assert_eq!(r[5] & 0x0F, 0);
    assert_eq!(&r[6..10], &[1, 0, 2, 0]);
}

fn info_fragments(s: &mut CoeServer, c: &mut Client, body: &[u8]) -> (u8, Vec<u8>, usize) {
    let m = c.request(body);
    s.handle(&m, AccessState::PreOp);
    let mut payload = Vec::new();
    let mut fragments = 0;
    let mut opcode = 0;
    while let Some(r) = s.pop_reply() {
        assert_eq!(r[7] >> 4, 8, "SDO information service");
        let left = u16::from_le_bytes([r[10], r[11]]);
        opcode = r[8] & 0x7F;
        assert_eq!(
            r[8] & 0x80 != 0,
            left > 0,
            "incomplete flag matches fragments left"
        );
        payload.extend_from_slice(&r[12..]);
        fragments += 1;
        if left == 0 {
            break;
        }
    }
    (opcode, payload, fragments)
}

#[test]
fn sdo_information_lists_and_describes() {
    let mut s = server("el7041.json", 64);
    let mut c = Client::new();
    let objects = s.dictionary().len();
    // Get OD list, all objects: long, so fragmented through a 64-byte mailbox.
    let (op, payload, fragments) = info_fragments(&mut s, &mut c, &[0, 0x80, 1, 0, 0, 0, 1, 0]);
    assert_eq!(op, 2);
    assert!(fragments > 1, "fragmented");
    assert_eq!(u16::from_le_bytes([payload[0], payload[1]]), 1);
    let indices: Vec<u16> = payload[2..]
        .chunks(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(indices.len(), objects);
    assert!(indices.contains(&0x1018) && indices.contains(&0x7010));
    // Object description of 0x1018.
    let (op, p, _) = info_fragments(&mut s, &mut c, &[0, 0x80, 3, 0, 0, 0, 0x18, 0x10]);
    assert_eq!(op, 4);
    assert_eq!(u16::from_le_bytes([p[0], p[1]]), 0x1018);
    assert_eq!(p[4], 4, "max subindex");
    assert_eq!(p[5], 9, "RECORD");
    assert_eq!(&p[6..], b"Identity");
    // Entry description of 0x1018:02 with default value.
    let (op, p, _) = info_fragments(&mut s, &mut c, &[0, 0x80, 5, 0, 0, 0, 0x18, 0x10, 2, 0x10]);
    assert_eq!(op, 6);
    assert_eq!(u16::from_le_bytes([p[4], p[5]]), 7, "UNSIGNED32");
    assert_eq!(u16::from_le_bytes([p[6], p[7]]), 32, "bits");
    assert_eq!(&p[10..14], &0x1B81_3052u32.to_le_bytes());
    assert_eq!(&p[14..], b"Product code");
    // A mapped boolean gets its real bit length from the PDO mapping.
    let (_, p, _) = info_fragments(&mut s, &mut c, &[0, 0x80, 5, 0, 0, 0, 0x10, 0x70, 1, 0]);
    assert_eq!(u16::from_le_bytes([p[4], p[5]]), 1, "BOOLEAN");
    assert_eq!(u16::from_le_bytes([p[6], p[7]]), 1);
    // Missing object: SDO info error with the abort code.
    let (op, p, _) = info_fragments(&mut s, &mut c, &[0, 0x80, 3, 0, 0, 0, 0x34, 0x12]);
    assert_eq!(op, 7);
    assert_eq!(u32::from_le_bytes([p[0], p[1], p[2], p[3]]), 0x0602_0000);
}

#[test]
fn emergency_is_queued_as_a_coe_message() {
    let mut s = server("el3164.json", 128);
    s.queue_emergency(Emergency {
        error_code: 0x8700,
        error_register: 0x11,
        data: [1, 2, 3, 4, 5],
    });
    let r = s.pop_reply().expect("emergency");
    assert_eq!(&r[..2], &[10, 0]);
    assert_eq!(r[5] & 0x0F, 3);
    assert_eq!(r[7] >> 4, 1, "emergency service");
    assert_eq!(&r[8..], &[0x00, 0x87, 0x11, 1, 2, 3, 4, 5]);
}

#[test]
fn hostile_mailbox_messages_get_well_formed_replies() {
    // Random mailbox messages (random lengths, header fields, CoE services, SDO command
    // specifiers, indexes and sizes, biased towards real objects) in every state: each
    // reply is a complete mailbox message of type CoE or error, fits the mailbox, and
    // the server still answers a plain upload of the identity afterwards.
    let mut s = server("el7041.json", 128);
    let mut x: u64 = 0x0123_4567_89AB_CDEF;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let states = [AccessState::PreOp, AccessState::SafeOp, AccessState::Op];
    let indexes = [
        0x1000u16, 0x1018, 0x1600, 0x1A00, 0x1C12, 0x1C13, 0x7010, 0x8010, 0xF000,
    ];
    let mut replies = 0;
    for n in 0..20_000u64 {
        let r = next();
        let len = (r % 64) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if body.len() >= 6 && r & 0x100 != 0 {
            // A CoE SDO request or SDO information request on a real object.
            body[0] = 0;
            body[1] = if r & 0x200 != 0 { 0x20 } else { 0x80 };
            let index = indexes[(r >> 16) as usize % indexes.len()];
            body[3..5].copy_from_slice(&index.to_le_bytes());
        }
        let mut m = if r & 0x400 != 0 {
            // Header length agreeing with the body, type CoE.
            let mut m = (body.len() as u16).to_le_bytes().to_vec();
            m.extend_from_slice(&[0, 0, 0, 0x03 | (((n % 7) as u8 + 1) << 4)]);
            m
        } else {
            (0..6).map(|_| next() as u8).collect()
        };
        m.extend_from_slice(&body);
        m.truncate((next() % 80) as usize);
        s.handle(&m, states[(r >> 40) as usize % states.len()]);
        while let Some(reply) = s.pop_reply() {
            replies += 1;
            let h = MailboxHeader::parse(&reply).expect("reply header");
            assert_eq!(usize::from(h.length) + 6, reply.len(), "message {n}");
            assert!(reply.len() <= 128, "message {n}: reply fits the mailbox");
            assert!(matches!(h.mailbox_type, 0 | 3), "message {n}: type {h:?}");
        }
    }
    assert!(replies > 10_000, "{replies} replies");
    // Still serving: an expedited upload of the vendor id (0x1018:01). Sent with two
    // counters, so that one differs from the last random message's (a repeat is dropped).
    let upload = [0x00, 0x20, 0x40, 0x18, 0x10, 0x01, 0, 0, 0, 0];
    let mut last = None;
    for counter in [1u8, 2] {
        let mut m = (upload.len() as u16).to_le_bytes().to_vec();
        m.extend_from_slice(&[0, 0, 0, 0x03 | (counter << 4)]);
        m.extend_from_slice(&upload);
        s.handle(&m, AccessState::PreOp);
        while let Some(r) = s.pop_reply() {
            last = Some(r);
        }
    }
    let reply = last.expect("an answer");
    assert_eq!(reply[8] & 0xE0, 0x40, "upload response: {reply:02x?}");
    assert_eq!(&reply[12..16], &2u32.to_le_bytes(), "Beckhoff vendor id");
}

#[test]
fn a_mapping_longer_than_its_entry_is_refused() {
    // EL7041 RxPDO 0x1604 maps the 16-bit velocity 0x7010:21. The entries are checked
    // when subindex 0 makes them count (ETG.1000.6 5.6.7.4).
    let mut s = server("el7041.json", 128);
    let mut c = Client::new();
    let pre = AccessState::PreOp;
    let mut map = |s: &mut CoeServer, bits: u8| {
        c.download(s, 0x1604, 0, &[0], false, pre, 0)
            .expect("sub 0 = 0 first");
        c.download(s, 0x1604, 1, &[bits, 0x21, 0x10, 0x70], false, pre, 0)
            .expect("an entry is taken while sub 0 is 0");
        c.download(s, 0x1604, 0, &[1], false, pre, 0)
    };
    for bits in [17, 32, 64, 0] {
        assert_eq!(
            map(&mut s, bits),
            Err(0x0604_0041),
            "{bits} bits of a 16-bit entry"
        );
        assert_eq!(
            s.dictionary().value_u64(0x1604, 0),
            Some(0),
            "nothing mapped"
        );
    }
    // Its own length, or its low-order part as compact PDOs map it.
    for bits in [8, 16] {
        map(&mut s, bits).unwrap_or_else(|e| panic!("{bits} bits: abort {e:#010X}"));
        assert_eq!(
            s.dictionary().value_u64(0x1604, 1),
            Some(0x7010_2100 | u64::from(bits))
        );
    }
}
