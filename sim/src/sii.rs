//! Reading the SII EEPROM image a simulated terminal is built from.
