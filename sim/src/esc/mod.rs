//! The EtherCAT slave controller of a simulated terminal: registers, SyncManagers, FMMUs, AL state machine, watchdogs, EEPROM interface, distributed clocks.
