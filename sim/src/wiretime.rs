//! The optional wire-time model: 80 ns per byte at 100 Mbit/s plus forwarding delays.
