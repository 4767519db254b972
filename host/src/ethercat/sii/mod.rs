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

/// The EEPROM images of the shared test data, for unit tests.
#[cfg(test)]
pub(crate) mod testdata {
    use super::SiiImage;

    /// Folder of the images: `../shared/testdata/eeprom` next to the project.
    pub(crate) fn dir() -> String {
        format!(
            "{}/../../shared/testdata/eeprom",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    /// The bytes of image file `name` (e.g. `el2004.bin`).
    pub(crate) fn bytes(name: &str) -> Vec<u8> {
        let p = format!("{}/{name}", dir());
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    /// Image file `name`, parsed.
    pub(crate) fn sii(name: &str) -> SiiImage {
        SiiImage::parse(&bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}
