//! The SII EEPROM: reading it over the ESC and parsing its categories.
