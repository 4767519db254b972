//! Process data: PDO assignment and mapping, and the logical process image.
//!
//! - [`layout`]: which PDOs each SyncManager carries and what they map, read over CoE
//!   or from the SII; writing assignments and mappings.
//! - [`config`]: SyncManager and FMMU register contents and writing them.
//! - [`image`]: placing terminals in the logical address space, to the bit.

pub mod config;
pub mod image;
pub mod layout;

pub use config::{
    ConfigError, FmmuRegisters, SmRegisters, check_ram, mailbox_sync_managers,
    process_data_sync_managers, supports_bit_fmmus, write_fmmus, write_sync_managers,
};
pub use image::{EntryLocation, LogicalRange, ProcessImage, TerminalImage, TerminalInput, plan};
pub use layout::{
    LayoutSource, Pdo, PdoEntry, PdoError, PdoLayout, SmPdos, read_layout, read_layout_coe,
    write_assignment, write_mapping,
};
