//! ESC register addresses, the chip description a terminal is built with, and the table of
//! which register bytes exist and are writable from EtherCAT (ETG.1000.4 clause 6).

/// Type (ETG.1000.4 table 31).
pub const TYPE: u16 = 0x0000;
/// Revision.
pub const REVISION: u16 = 0x0001;
/// Build (u16).
pub const BUILD: u16 = 0x0002;
/// Number of FMMUs supported.
pub const FMMU_COUNT: u16 = 0x0004;
/// Number of SyncManagers supported.
pub const SM_COUNT: u16 = 0x0005;
/// Process RAM size in KiB.
pub const RAM_SIZE: u16 = 0x0006;
/// Port descriptor (2 bits per port: 00 none, 01 not configured, 10 EBUS, 11 MII).
pub const PORT_DESCRIPTOR: u16 = 0x0007;
/// ESC features supported (u16), ETG.1000.4 table 32.
pub const FEATURES: u16 = 0x0008;
/// Configured station address (u16).
pub const STATION_ADDRESS: u16 = 0x0010;
/// Configured station alias (u16), loaded from SII word 4.
pub const STATION_ALIAS: u16 = 0x0012;
/// DL control (u32), ETG.1000.4 table 37; byte 3 bit 0 enables the alias.
pub const DL_CONTROL: u16 = 0x0100;
/// DL status (u16), ETG.1000.4 table 39.
pub const DL_STATUS: u16 = 0x0110;
/// AL control (u16).
pub const AL_CONTROL: u16 = 0x0120;
/// AL status (u16).
pub const AL_STATUS: u16 = 0x0130;
/// AL status code (u16).
pub const AL_STATUS_CODE: u16 = 0x0134;
/// PDI control (u16), loaded from SII word 0.
pub const PDI_CONTROL: u16 = 0x0140;
/// PDI configuration (u16), loaded from SII word 1.
pub const PDI_CONFIG: u16 = 0x0150;
/// ECAT event mask (u16): which event request bits go into the datagrams' IRQ field.
pub const ECAT_EVENT_MASK: u16 = 0x0200;
/// ECAT event request (u16), ETG.1000.4 table 44: bit 2 DL status changed (cleared by
/// reading 0x0110), bit 3 AL status changed (cleared by reading 0x0130), bits 4..11
/// SyncManager n has something for the master.
pub const ECAT_EVENT_REQUEST: u16 = 0x0210;
/// Error counters 0x0300..=0x0313 (a write clears them). First: the RX error counters,
/// per port p an invalid frame counter at 0x0300 + 2p and a physical RX error counter at
/// 0x0301 + 2p.
pub const ERROR_COUNTERS: u16 = 0x0300;
/// Forwarded RX error counters, one byte per port (0x0308..=0x030B).
pub const FORWARDED_RX_ERRORS: u16 = 0x0308;
/// Lost link counters, one byte per port (0x0310..=0x0313).
pub const LOST_LINKS: u16 = 0x0310;
/// Last error counter byte.
pub const ERROR_COUNTERS_END: u16 = 0x0313;
/// Watchdog divider (u16): watchdog ticks are 40 ns * (divider + 2).
pub const WD_DIVIDER: u16 = 0x0400;
/// PDI watchdog time (u16).
pub const WD_PDI: u16 = 0x0410;
/// Process data (SyncManager) watchdog time (u16).
pub const WD_PROCESS_DATA: u16 = 0x0420;
/// Watchdog status process data (bit 0: 1 = active or disabled, 0 = expired).
pub const WD_STATUS: u16 = 0x0440;
/// Watchdog counter process data (u8).
pub const WD_COUNTER_PD: u16 = 0x0442;
/// SII EEPROM configuration (0x0500) and PDI access state (0x0501).
pub const SII_CONFIG: u16 = 0x0500;
/// SII EEPROM control/status (u16), ETG.1000.4 table 48.
pub const SII_CONTROL: u16 = 0x0502;
/// SII EEPROM address (u32, word address).
pub const SII_ADDRESS: u16 = 0x0504;
/// SII EEPROM data (4 or 8 bytes).
pub const SII_DATA: u16 = 0x0508;
/// First FMMU (16 bytes each).
pub const FMMU_BASE: u16 = 0x0600;
/// First SyncManager (8 bytes each).
pub const SM_BASE: u16 = 0x0800;
/// DC receive time port 0 (u32); a write latches all ports.
pub const DC_RECV_TIME_PORT0: u16 = 0x0900;
/// DC system time (u64).
pub const DC_SYSTEM_TIME: u16 = 0x0910;
/// DC receive time of the processing unit (u64).
pub const DC_RECV_TIME_EPU: u16 = 0x0918;
/// DC system time offset (u64).
pub const DC_SYSTEM_OFFSET: u16 = 0x0920;
/// DC system time delay (u32).
pub const DC_SYSTEM_DELAY: u16 = 0x0928;
/// DC system time difference (u32): bits 30:0 |received − local copy|, bit 31 set when the
/// local copy is greater than or equal to the received time (ESC datasheet section II
/// v3.3 2.15.2.4).
pub const DC_SYSTEM_DIFF: u16 = 0x092C;
/// DC speed counter start (u16): the time control loop's bandwidth; a write resets the
/// loop's filters.
pub const DC_SPEED_COUNTER_START: u16 = 0x0930;
/// DC speed counter diff (i16, read-only): the loop's speed adjustment.
pub const DC_SPEED_COUNTER_DIFF: u16 = 0x0932;
/// DC system time difference filter depth (u8, bits 3:0).
pub const DC_DIFFERENCE_FILTER_DEPTH: u16 = 0x0934;
/// DC speed counter filter depth (u8, bits 3:0).
pub const DC_SPEED_FILTER_DEPTH: u16 = 0x0935;
/// DC cyclic unit control (u8): which of the SYNC/latch units EtherCAT or the PDI owns.
pub const DC_CYCLIC_UNIT_CONTROL: u16 = 0x0980;
/// DC SYNC activation (u8): bit 0 cyclic operation, bit 1 SYNC0, bit 2 SYNC1.
pub const DC_SYNC_ACTIVATION: u16 = 0x0981;
/// DC pulse length of the SYNC signals (u16, in 10 ns units; 0 = acknowledge mode),
/// read-only over EtherCAT, loaded from SII word 2 (ESC datasheet section II table 111).
pub const DC_SYNC_PULSE_LENGTH: u16 = 0x0982;
/// DC SYNC0 status (u8, bit 0).
pub const DC_SYNC0_STATUS: u16 = 0x098E;
/// DC SYNC1 status (u8, bit 0).
pub const DC_SYNC1_STATUS: u16 = 0x098F;
/// DC start time of cyclic operation (write) / next SYNC0 pulse (read), u64.
pub const DC_START_TIME: u16 = 0x0990;
/// DC next SYNC1 pulse (u64, read-only).
pub const DC_NEXT_SYNC1: u16 = 0x0998;
/// DC SYNC0 cycle time (u32, ns; 0 = a single pulse).
pub const DC_SYNC0_CYCLE: u16 = 0x09A0;
/// DC SYNC1 cycle time (u32, ns): SYNC1 comes this long after a SYNC0 pulse.
pub const DC_SYNC1_CYCLE: u16 = 0x09A4;
/// Digital I/O output data (u32), used as SM area by digital output terminals.
pub const DIGITAL_OUTPUT: u16 = 0x0F00;
/// First byte of the user RAM (ET1100/ET1200 datasheets, register overview).
pub const USER_RAM: u16 = 0x0F80;
/// Last byte of the user RAM.
pub const USER_RAM_END: u16 = 0x0FFF;
/// Start of process RAM.
pub const PROCESS_RAM: u16 = 0x1000;

/// Readable from EtherCAT.
pub const R: u8 = 0x01;
/// Writable from EtherCAT.
pub const W: u8 = 0x02;

/// What kind of DC unit the ESC has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DcUnit {
    /// No distributed clocks at all.
    None,
    /// Port receive times only (0x0900..0x090F): no system time, no SYNC
    /// (e.g. the EL2828 of ek1100-el2828-el2889.pcapng frames 510, 522: 0x0918 and
    /// 0x0920 give working counter 0, 0x0900 gives 1).
    ReceiveTimesOnly,
    /// Full 64-bit DC: system time, offset, delay, SYNC0/1.
    Full,
}

/// The fixed description of a terminal's ESC chip: what registers 0x0000..0x0009 read and
/// which units exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EscChip {
    /// Register 0x0000.
    pub esc_type: u8,
    /// Register 0x0001.
    pub revision: u8,
    /// Register 0x0002.
    pub build: u16,
    /// Number of FMMUs (0x0004, at most 16).
    pub fmmus: u8,
    /// Number of SyncManagers (0x0005, at most 16).
    pub sync_managers: u8,
    /// Process RAM in KiB (0x0006).
    pub ram_kib: u8,
    /// Port descriptor (0x0007).
    pub port_descriptor: u8,
    /// Features (0x0008); bit 0 set = FMMUs operate byte-wise only.
    pub features: u16,
    /// DC unit.
    pub dc: DcUnit,
    /// Low byte of the SII control register (0x0502) at reset: bit 6 = reads 8 bytes.
    pub sii_control_reset: u8,
}

impl EscChip {
    /// An ET1100 as in an EK1100 coupler: 8 FMMUs, 8 SMs, 8 KiB RAM, ports MII/EBUS/MII,
    /// features 0x00FC: twincat-scan-boxes.pcapng frame 536 reads 0x0000..0x0009 as
    /// 11 00 0300 08 08 08 3B FC00 (also ek1100-el2828-el2889.pcapng frame 214; frames
    /// 12..52 there: FMMU 3..7 and SM 4..7 exist on one terminal only).
    pub const ET1100_COUPLER: EscChip = EscChip {
        esc_type: 0x11,
        revision: 0x00,
        build: 0x0003,
        fmmus: 8,
        sync_managers: 8,
        ram_kib: 8,
        port_descriptor: 0x3B,
        features: 0x00FC,
        dc: DcUnit::Full,
        // ek1100-el2828-el2889.pcapng frame 102: 0x0502 reads 0x0040.
        sii_control_reset: 0x40,
    };

    /// An ET1200 as in EL terminals: 3 FMMUs, 4 SMs, 1 KiB RAM, two EBUS ports, full DC
    /// (ek1100-el2828-el2889.pcapng frames 10..14 and 44..46: FMMU 2 and SM 3 exist on
    /// every terminal, FMMU 3 and SM 4 on one; frame 498 features 0x00FC; soem-sdinfo frame
    /// 203 port descriptor 0x4A; frame 2308: 0x0502 reads 0x0050).
    pub const ET1200: EscChip = EscChip {
        esc_type: 0x12,
        revision: 0x00,
        build: 0x0001,
        fmmus: 3,
        sync_managers: 4,
        ram_kib: 1,
        port_descriptor: 0x4A,
        features: 0x00FC,
        dc: DcUnit::Full,
        sii_control_reset: 0x50,
    };

    /// The ET1200 of an EL1004 or EL2828: revision 1, features 0x01FC, DC receive times
    /// only, SII control 0x0040. twincat-scan-boxes.pcapng frame 545 reads 0x0000..0x0009
    /// of an EL1004 as 12 01 0100 03 04 01 4A FC01; soem-sdinfo-ek1100-el1004.pcapng
    /// frames 21..27 (DC writes counted by the EK1100 only), 537 (0x0502 = 0x0040);
    /// ek1100-el2828-el2889.pcapng frames 366, 510, 522 for the EL2828 (which reads
    /// 0x0502 as 0x0050, frame 2308).
    pub const ET1200_RECEIVE_TIMES_ONLY: EscChip = EscChip {
        revision: 0x01,
        build: 0x0001,
        features: 0x01FC,
        dc: DcUnit::ReceiveTimesOnly,
        sii_control_reset: 0x40,
        ..EscChip::ET1200
    };

    /// The ET1200 of an EL2889: like [`EscChip::ET1200`] but its SII control register reads
    /// 0x0040 (ek1100-el2828-el2889.pcapng frames 378..386).
    pub const ET1200_EL2889: EscChip = EscChip {
        sii_control_reset: 0x40,
        ..EscChip::ET1200
    };

    /// The chip of a terminal with this vendor id and product code: the couplers' ET1100,
    /// the EL2828's receive-times-only ET1200, the EL2889's, else a standard ET1200.
    pub fn for_product(vendor_id: u32, product_code: u32) -> EscChip {
        const BECKHOFF: u32 = 0x0000_0002;
        const EK1100: u32 = 0x044C_2C52;
        const EK1814: u32 = 0x0716_2C52;
        const EL1004: u32 = 0x03EC_3052;
        const EL2828: u32 = 0x0B0C_3052;
        const EL2889: u32 = 0x0B49_3052;
        match (vendor_id, product_code) {
            (BECKHOFF, EK1100 | EK1814) => EscChip::ET1100_COUPLER,
            (BECKHOFF, EL1004) => EscChip::ET1200_RECEIVE_TIMES_ONLY,
            (BECKHOFF, EL2828) => EscChip {
                sii_control_reset: 0x50,
                ..EscChip::ET1200_RECEIVE_TIMES_ONLY
            },
            (BECKHOFF, EL2889) => EscChip::ET1200_EL2889,
            _ => EscChip::ET1200,
        }
    }

    /// Whether FMMUs support bit-wise mapping (features bit 0 clear).
    pub fn bit_fmmus(&self) -> bool {
        self.features & 0x0001 == 0
    }

    /// Size of the address space (registers plus process RAM).
    pub fn memory_size(&self) -> usize {
        usize::from(PROCESS_RAM) + usize::from(self.ram_kib) * 1024
    }
}

fn mark(table: &mut [u8], from: u16, to_inclusive: u16, flags: u8) {
    for a in from..=to_inclusive {
        if let Some(b) = table.get_mut(usize::from(a)) {
            *b = flags;
        }
    }
}

/// The access table for addresses 0x0000..0x0FFF: per byte [`R`] and/or [`W`], 0 where the
/// chip has no register (a datagram touching only such bytes is not counted and leaves the
/// frame's data alone, as ek1100-el2828-el2889.pcapng frame 508 shows for 0x090C..0x090F).
pub fn access_table(chip: &EscChip) -> Vec<u8> {
    let mut t = vec![0u8; usize::from(PROCESS_RAM)];
    let rw = R | W;
    mark(&mut t, 0x0000, 0x0009, R);
    mark(&mut t, 0x0010, 0x0011, rw);
    mark(&mut t, 0x0012, 0x0013, R);
    mark(&mut t, 0x0020, 0x0021, rw); // write register enable/protection
    mark(&mut t, 0x0030, 0x0031, rw); // ESC write enable/protection
    mark(&mut t, 0x0040, 0x0041, rw); // ESC reset
    mark(&mut t, 0x0100, 0x0103, rw);
    mark(&mut t, 0x0108, 0x0109, rw);
    mark(&mut t, 0x0110, 0x0111, R);
    mark(&mut t, 0x0120, 0x0121, rw);
    mark(&mut t, 0x0130, 0x0131, R);
    mark(&mut t, 0x0134, 0x0135, R);
    mark(&mut t, 0x0140, 0x0141, R);
    mark(&mut t, 0x014E, 0x014F, R);
    mark(&mut t, 0x0150, 0x0153, R);
    mark(&mut t, 0x0200, 0x0201, rw);
    mark(&mut t, 0x0204, 0x0207, R);
    mark(&mut t, 0x0210, 0x0211, R);
    mark(&mut t, 0x0220, 0x0223, R);
    // twincat-run-ek1100-el1004.pcapng: BWR 0x0300 len 8 counts on both terminals.
    mark(&mut t, ERROR_COUNTERS, ERROR_COUNTERS_END, rw);
    mark(&mut t, 0x0400, 0x0401, rw);
    mark(&mut t, 0x0410, 0x0411, rw);
    mark(&mut t, 0x0420, 0x0421, rw);
    mark(&mut t, 0x0440, 0x0441, R);
    mark(&mut t, 0x0442, 0x0443, rw);
    mark(&mut t, 0x0500, 0x0501, rw);
    mark(&mut t, 0x0502, 0x0503, rw);
    mark(&mut t, 0x0504, 0x0507, rw);
    mark(&mut t, 0x0508, 0x050F, rw);
    for n in 0..u16::from(chip.fmmus.min(16)) {
        let b = FMMU_BASE + 16 * n;
        mark(&mut t, b, b + 0x0C, rw);
        mark(&mut t, b + 0x0D, b + 0x0F, R);
    }
    for n in 0..u16::from(chip.sync_managers.min(16)) {
        let b = SM_BASE + 8 * n;
        mark(&mut t, b, b + 4, rw);
        mark(&mut t, b + 5, b + 5, R);
        mark(&mut t, b + 6, b + 6, rw);
        mark(&mut t, b + 7, b + 7, R);
    }
    match chip.dc {
        DcUnit::None => {}
        DcUnit::ReceiveTimesOnly => {
            mark(&mut t, 0x0900, 0x090F, R);
            mark(&mut t, 0x0900, 0x0903, rw);
        }
        DcUnit::Full => {
            mark(&mut t, 0x0900, 0x090F, R);
            mark(&mut t, 0x0900, 0x0903, rw);
            mark(&mut t, 0x0910, 0x0917, rw);
            mark(&mut t, 0x0918, 0x091F, R);
            mark(&mut t, 0x0920, 0x092B, rw);
            // 0x092C is read-only: BWR 0x092C gives working counter 0
            // (ek1100-el2828-el2889.pcapng frame 76).
            mark(&mut t, 0x092C, 0x092F, R);
            mark(&mut t, 0x0930, 0x0931, rw);
            mark(&mut t, 0x0932, 0x0933, R);
            mark(&mut t, 0x0934, 0x0935, rw);
            mark(&mut t, 0x0980, 0x0981, rw);
            mark(&mut t, 0x0982, 0x0983, R);
            mark(&mut t, 0x098E, 0x098F, R);
            mark(&mut t, 0x0990, 0x0997, rw);
            mark(&mut t, 0x0998, 0x099F, R);
            mark(&mut t, 0x09A0, 0x09A7, rw);
            mark(&mut t, 0x09A8, 0x09A9, rw);
            mark(&mut t, 0x09AE, 0x09AF, R);
            mark(&mut t, 0x09B0, 0x09CF, R);
        }
    }
    mark(&mut t, 0x0E00, 0x0E07, R); // power-on values / product id
    mark(&mut t, DIGITAL_OUTPUT, DIGITAL_OUTPUT + 3, rw);
    mark(&mut t, 0x0F10, 0x0F17, rw); // general purpose outputs
    mark(&mut t, 0x0F18, 0x0F1F, R); // general purpose inputs
    // User RAM, 128 bytes a master may use freely (ET1100 and ET1200 datasheets,
    // section II "Register overview": 0x0F80:0x0FFF).
    mark(&mut t, USER_RAM, USER_RAM_END, rw);
    t
}
