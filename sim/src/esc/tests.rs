//! Unit tests of the ESC: registers, SyncManagers, FMMUs, watchdog, EEPROM, AL state machine.
