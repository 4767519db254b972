//! ferrocat-sim: a virtual EtherCAT segment of emulated terminals, faithful enough that
//! an independent master cannot tell it from real hardware.

pub mod app;
pub mod coe;
pub mod esc;
pub mod fault;
pub mod inproc;
pub mod models;
pub mod netns;
pub mod segment;
pub mod serve;
pub mod sii;
pub mod topology;
pub mod wiretime;
