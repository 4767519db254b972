//! CANopen over EtherCAT: SDO upload/download, SDO information, emergencies.
//!
//! - [`sdo`]: sans-IO encoding/decoding of every SDO message and the CoE header.
//! - [`info`]: sans-IO SDO information (OD list, object and entry descriptions,
//!   fragment reassembly).
//! - [`abort`]: abort codes with the text of CiA 301 / ETG.1000.6.
//! - [`emergency`]: emergency messages and the meaning of their error codes.
//! - [`datatype`]: data type names and sizes.
//! - [`value`]: typed values as users write them (`u16`, `f32`, `string`, ...).
//! - [`client`]: [`CoeClient`], the async client over a terminal's mailbox.

pub mod abort;
pub mod client;
pub mod datatype;
pub mod emergency;
pub mod info;
pub mod sdo;
pub mod value;

pub use abort::AbortCode;
pub use client::{CoeClient, CoeError};
pub use emergency::Emergency;
pub use info::{EntryDescription, ObjectDescription, OdListType};
pub use sdo::{SdoAddress, SdoRequest, SdoResponse};
pub use value::ValueType;
