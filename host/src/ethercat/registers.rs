//! ESC register addresses and bit fields (ETG.1000.4).
