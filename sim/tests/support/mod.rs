//! Helpers the wire-level tests share: writing the frames a test saw to pcapng, and
//! checking them with tshark.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Writes `frames` (bus time in ns, Ethernet frame) as a pcapng file of one Ethernet
/// interface.
pub fn write_pcapng(path: &Path, frames: &[(u64, Vec<u8>)]) {
    use pcap_file::DataLink;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    let file = std::fs::File::create(path).expect("pcapng file");
    let mut w = PcapNgWriter::new(file).expect("pcapng header");
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0xFFFF,
        options: vec![],
    })
    .expect("idb");
    for (t, f) in frames {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(*t),
            original_len: f.len() as u32,
            data: std::borrow::Cow::Borrowed(f),
            options: vec![],
        })
        .expect("epb");
    }
}

/// The summary lines tshark prints for the frames of `pcap` matching display `filter`
/// (tshark must run and succeed).
pub fn tshark_matching(pcap: &Path, filter: &str) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-Y", filter])
        .output()
        .expect("tshark installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "tshark -Y {filter:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Asserts that tshark flags no frame of `pcap` as malformed or with a warning.
pub fn assert_tshark_clean(pcap: &Path) {
    let flagged = tshark_matching(pcap, "_ws.malformed || _ws.expert.severity >= warning");
    assert!(
        flagged.is_empty(),
        "tshark flags frames in {}:\n{}",
        pcap.display(),
        flagged.join("\n")
    );
}
