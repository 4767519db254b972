//! ferrocat-sim: a virtual EtherCAT segment of emulated terminals, faithful enough that
//! an independent master cannot tell it from real hardware.
