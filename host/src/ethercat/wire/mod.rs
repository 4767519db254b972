//! The EtherCAT frame and datagram format, as zero-copy views and owned representations.
//!
//! - [`command`]: the fifteen datagram commands and their addressing.
//! - [`frame`]: Ethernet + EtherCAT header + datagrams: [`Frame`] views and [`FrameRepr`].

pub mod command;
pub mod frame;

pub use command::{Address, AddressMode, Command};
pub use frame::{Datagram, DatagramRepr, Frame, FrameRepr, WireError};
