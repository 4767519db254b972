//! The EtherCAT master: wire format, transport, SII, mailbox and CoE, process data,
//! the AL state machine and bring-up.

pub mod al;
pub mod capture;
pub mod coe;
pub mod dc;
pub mod mailbox;
pub mod master;
pub mod pdo;
pub mod registers;
pub mod sii;
pub mod station_io;
pub mod topology;
pub mod transport;
pub mod wire;
