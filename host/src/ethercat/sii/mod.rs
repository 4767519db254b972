//! The SII EEPROM: reading it over the ESC and parsing its categories.
//!
//! - [`image`]: sans-IO parsing of a whole image into [`SiiImage`] (header, strings,
//!   general, FMMU, SyncManager, FMMU-extended, sync unit, PDOs, DC), with damage
//!   reported as warnings.
//! - [`category`]: the decoded category types.
//! - [`eeprom`]: the ESC EEPROM interface (registers 0x0500..0x050F) over
//!   [`StationIo`](crate::ethercat::station_io::StationIo): reading the image, writing
//!   the alias and serial number.
//! - [`bulk`]: reading the SII of many terminals at once, their EEPROM accesses packed
//!   into shared frames.

pub mod bulk;
pub mod category;
pub mod eeprom;
pub mod image;

pub use category::{
    DcMode, FmmuUsage, General, Identity, MailboxProtocols, PdoDirection, SiiHeader, SiiPdo,
    SiiPdoEntry, SiiSyncManager, SmType,
};
pub use eeprom::{Eeprom, EepromError, EepromOptions, image_complete_len, read_sii};
pub use image::{SiiError, SiiImage, SiiString, SiiWarning, header_checksum};
