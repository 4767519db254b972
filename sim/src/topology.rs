//! The TOML topology: terminal order, EEPROM images, models and wiring.
