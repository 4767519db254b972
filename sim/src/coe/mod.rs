//! A CoE server on a simulated terminal's mailbox: SDOs, SDO information, emergencies.

pub mod abort;
pub mod dictionary;
pub mod from_sii;

pub use abort::AbortCode;
pub use dictionary::{AccessState, ObjectDictionary};
pub mod mailbox;
pub mod pdo;
pub mod server;
pub mod terminal;

pub use server::{CoeServer, Emergency};
