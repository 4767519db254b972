//! Capture of the frames this process sends and receives, written as pcapng (link type
//! Ethernet, nanosecond timestamps, direction flags) for Wireshark and tshark.

use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use std::borrow::Cow;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by this process.
    Sent,
    /// Received by this process (a reply to one of its frames).
    Received,
}

/// Something that records frames as the transport sends and receives them.
pub trait FrameSink: Send {
    /// Record one frame.
    fn record(&mut self, direction: Direction, at: SystemTime, frame: &[u8]);
}

/// EPB flags word: inbound/outbound in bits 0–1 (pcapng specification §4.3.1, epb_flags).
fn direction_flags(direction: Direction) -> u32 {
    match direction {
        Direction::Received => 0b01,
        Direction::Sent => 0b10,
    }
}

/// Timestamp resolution option value for nanoseconds (10^-9), pcapng if_tsresol.
const TSRESOL_NANOSECONDS: u8 = 9;

/// A pcapng writer for EtherCAT frames.
pub struct PcapngSink<W: Write + Send> {
    writer: PcapNgWriter<W>,
    /// First write error; later frames are dropped and the error is reported by `finish`.
    error: Option<io::Error>,
    frames: u64,
}

impl<W: Write + Send> std::fmt::Debug for PcapngSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapngSink")
            .field("frames", &self.frames)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

fn pcap_err(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl<W: Write + Send> PcapngSink<W> {
    /// Start a capture on `writer`, describing the interface as `interface`.
    pub fn new(writer: W, interface: &str) -> io::Result<PcapngSink<W>> {
        let mut writer = PcapNgWriter::new(writer).map_err(pcap_err)?;
        let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0xFFFF);
        idb.options = vec![
            InterfaceDescriptionOption::IfName(Cow::Owned(interface.to_owned())),
            InterfaceDescriptionOption::IfTsResol(TSRESOL_NANOSECONDS),
        ];
        writer.write_pcapng_block(idb).map_err(pcap_err)?;
        Ok(PcapngSink {
            writer,
            error: None,
            frames: 0,
        })
    }

    /// Number of frames written.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flush and return the writer, or the first error that occurred.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.writer.get_mut().flush()?;
        Ok(self.writer.into_inner())
    }
}

impl<W: Write + Send> FrameSink for PcapngSink<W> {
    fn record(&mut self, direction: Direction, at: SystemTime, frame: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let timestamp = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let block = EnhancedPacketBlock {
            interface_id: 0,
            timestamp,
            original_len: frame.len() as u32,
            data: Cow::Borrowed(frame),
            options: vec![EnhancedPacketOption::Flags(direction_flags(direction))],
        };
        match self.writer.write_pcapng_block(block) {
            Ok(_) => self.frames += 1,
            Err(e) => self.error = Some(pcap_err(e)),
        }
    }
}

/// A sink shared between the transport and its owner, so the owner can take it back
/// (and finish the file) while the transport may still hold a handle.
#[derive(Debug)]
pub struct SharedSink<S>(std::sync::Arc<std::sync::Mutex<Option<S>>>);

impl<S> Clone for SharedSink<S> {
    fn clone(&self) -> Self {
        SharedSink(self.0.clone())
    }
}

impl<S> SharedSink<S> {
    /// Share `sink`.
    pub fn new(sink: S) -> SharedSink<S> {
        SharedSink(std::sync::Arc::new(std::sync::Mutex::new(Some(sink))))
    }

    /// Take the sink back; frames recorded afterwards are dropped.
    pub fn take(&self) -> Option<S> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }

    /// Run `f` on the sink, if it is still there.
    pub fn with<R>(&self, f: impl FnOnce(&S) -> R) -> Option<R> {
        self.0.lock().ok().and_then(|g| g.as_ref().map(f))
    }
}

impl<S: FrameSink> FrameSink for SharedSink<S> {
    fn record(&mut self, direction: Direction, at: SystemTime, frame: &[u8]) {
        if let Ok(mut g) = self.0.lock() {
            if let Some(s) = g.as_mut() {
                s.record(direction, at, frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::{Block, PcapNgReader};

    #[test]
    fn frames_read_back_with_direction_and_time() {
        let mut sink = PcapngSink::new(Vec::new(), "ecat0").unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        sink.record(Direction::Sent, t, &[1, 2, 3]);
        sink.record(Direction::Received, t + Duration::from_micros(5), &[4, 5]);
        assert_eq!(sink.frames(), 2);
        let bytes = sink.finish().unwrap();
        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        let mut packets = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.unwrap().into_owned() {
                Block::InterfaceDescription(idb) => assert_eq!(idb.linktype, DataLink::ETHERNET),
                Block::EnhancedPacket(epb) => {
                    packets.push((epb.timestamp, epb.data.to_vec(), epb.options.clone()))
                }
                _ => {}
            }
        }
        assert_eq!(packets.len(), 2);
        assert_eq!(
            packets[0].0,
            Duration::from_nanos(1_700_000_000_123_456_789)
        );
        assert_eq!(packets[0].1, vec![1, 2, 3]);
        assert_eq!(packets[0].2, vec![EnhancedPacketOption::Flags(2)]);
        assert_eq!(packets[1].1, vec![4, 5]);
        assert_eq!(packets[1].2, vec![EnhancedPacketOption::Flags(1)]);
    }
}
