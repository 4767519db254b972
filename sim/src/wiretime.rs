//! The optional wire-time model: 80 ns per byte at 100 Mbit/s plus forwarding delays.
//!
//! With the model on, each terminal sees a frame later than the one before it (the
//! forwarding delay of the terminals in between), the port receive-time latch of DC gets
//! realistic propagation delays, and [`WireTime::round_trip_ns`] says how long a frame
//! would take on a real bus, so cycle figures can be stated for hardware as well as for
//! the simulator. With it off every terminal sees a frame at the same instant. A
//! topology switches it on with its `[wire_time]` table (`docs/sim.md`).

/// Time per byte at 100 Mbit/s (IEEE 802.3: 10 ns per bit).
pub const NS_PER_BYTE: u64 = 80;
/// Preamble + start-of-frame delimiter (8), FCS (4) and inter-frame gap (12) bytes around
/// every Ethernet frame on the wire, IEEE 802.3 clause 3/4.
pub const FRAMING_BYTES: u64 = 8 + 4 + 12;
/// Minimum Ethernet frame size without FCS (padding up to it goes on the wire).
pub const MIN_FRAME_BYTES: u64 = 60;
/// A typical forwarding delay of an EBUS terminal through its processing unit and back
/// (Beckhoff states ~1 µs per terminal round trip for ET1100/ET1200 processing plus
/// forwarding): 500 ns each way.
pub const DEFAULT_FORWARD_DELAY_NS: u64 = 500;

/// The wire-time model of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireTime {
    /// Whether the model applies; when off, every terminal sees a frame at the same time
    /// and [`WireTime::round_trip_ns`] is 0.
    pub enabled: bool,
    /// Forwarding delay of each terminal in one direction (index = position); terminals
    /// beyond the list use [`WireTime::default_forward_delay_ns`].
    pub forward_delay_ns: Vec<u64>,
    /// Forwarding delay for terminals not in `forward_delay_ns`.
    pub default_forward_delay_ns: u64,
}

impl Default for WireTime {
    fn default() -> WireTime {
        WireTime::off()
    }
}

impl WireTime {
    /// The model switched off.
    pub fn off() -> WireTime {
        WireTime {
            enabled: false,
            forward_delay_ns: Vec::new(),
            default_forward_delay_ns: DEFAULT_FORWARD_DELAY_NS,
        }
    }

    /// The model on with the default forwarding delay for every terminal.
    pub fn realistic() -> WireTime {
        WireTime {
            enabled: true,
            ..WireTime::off()
        }
    }

    /// Forwarding delay of terminal `i` in one direction (0 when the model is off).
    pub fn forward_delay(&self, i: usize) -> u64 {
        if !self.enabled {
            return 0;
        }
        self.forward_delay_ns
            .get(i)
            .copied()
            .unwrap_or(self.default_forward_delay_ns)
    }

    /// Time a frame of `frame_len` bytes (without FCS) occupies the wire.
    pub fn serialisation_ns(frame_len: usize) -> u64 {
        (frame_len as u64).max(MIN_FRAME_BYTES) * NS_PER_BYTE + FRAMING_BYTES * NS_PER_BYTE
    }

    /// When the frame's first byte reaches terminal `i`, relative to leaving the master.
    pub fn arrival_offset_ns(&self, i: usize) -> u64 {
        if !self.enabled {
            return 0;
        }
        (0..i).map(|k| self.forward_delay(k)).sum()
    }

    /// Time from the first bit leaving the master until the last bit of the reply
    /// arrives, through `terminals` terminals and back (0 when the model is off).
    pub fn round_trip_ns(&self, frame_len: usize, terminals: usize) -> u64 {
        if !self.enabled {
            return 0;
        }
        Self::serialisation_ns(frame_len) + 2 * self.arrival_offset_ns(terminals)
    }

    /// Time from a frame leaving terminal `i`'s port 1 until it comes back there through
    /// the terminals after it (`terminals` in total): the DC port 1 receive-time offset.
    pub fn downstream_rtt_ns(&self, i: usize, terminals: usize) -> u64 {
        (i + 1..terminals).map(|k| 2 * self.forward_delay(k)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_is_instant() {
        let w = WireTime::off();
        assert_eq!(w.round_trip_ns(100, 10), 0);
        assert_eq!(w.arrival_offset_ns(5), 0);
    }

    #[test]
    fn eighty_ns_per_byte_plus_forwarding() {
        let w = WireTime::realistic();
        // 100-byte frame: (100 + 24) * 80 ns on the wire, plus 2 * 3 * 500 ns.
        assert_eq!(w.round_trip_ns(100, 3), 124 * 80 + 3000);
        // Short frames are padded to 60 bytes.
        assert_eq!(WireTime::serialisation_ns(20), 84 * 80);
        let w = WireTime {
            forward_delay_ns: vec![1000, 200],
            ..WireTime::realistic()
        };
        assert_eq!(w.arrival_offset_ns(2), 1200);
        assert_eq!(w.downstream_rtt_ns(0, 3), 2 * 200 + 2 * 500);
        assert_eq!(w.downstream_rtt_ns(2, 3), 0);
    }
}
