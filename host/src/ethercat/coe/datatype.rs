//! CoE data types (CiA 301 table 44, ETG.1000.6 table 64): names and sizes.

/// Name and bit size (0 for variable-length types) of a data type code.
pub fn data_type_info(code: u16) -> Option<(&'static str, u32)> {
    Some(match code {
        0x0001 => ("BOOL", 1),
        0x0002 => ("SINT", 8),
        0x0003 => ("INT", 16),
        0x0004 => ("DINT", 32),
        0x0005 => ("USINT", 8),
        0x0006 => ("UINT", 16),
        0x0007 => ("UDINT", 32),
        0x0008 => ("REAL", 32),
        0x0009 => ("STRING", 0),
        0x000A => ("OCTET_STRING", 0),
        0x000B => ("UNICODE_STRING", 0),
        0x000C => ("TIME_OF_DAY", 48),
        0x000D => ("TIME_DIFFERENCE", 48),
        0x000F => ("DOMAIN", 0),
        0x0010 => ("INT24", 24),
        0x0011 => ("LREAL", 64),
        0x0012 => ("INT40", 40),
        0x0013 => ("INT48", 48),
        0x0014 => ("INT56", 56),
        0x0015 => ("LINT", 64),
        0x0016 => ("UINT24", 24),
        0x0018 => ("UINT40", 40),
        0x0019 => ("UINT48", 48),
        0x001A => ("UINT56", 56),
        0x001B => ("ULINT", 64),
        0x001E => ("BYTE", 8),
        0x001F => ("WORD", 16),
        0x0020 => ("PDO_MAPPING", 0),
        0x0021 => ("IDENTITY", 0),
        0x0023 => ("COMMAND_PAR", 0),
        0x0025 => ("SYNC_PAR", 0),
        0x0027 => ("DWORD", 32),
        0x0029 => ("SM_SYNC", 0),
        0x002D => ("BITARR8", 8),
        0x002E => ("BITARR16", 16),
        0x002F => ("BITARR32", 32),
        0x0030 => ("BIT1", 1),
        0x0031 => ("BIT2", 2),
        0x0032 => ("BIT3", 3),
        0x0033 => ("BIT4", 4),
        0x0034 => ("BIT5", 5),
        0x0035 => ("BIT6", 6),
        0x0036 => ("BIT7", 7),
        0x0037 => ("BIT8", 8),
        _ => return None,
    })
}

/// Name of a data type code, or its hex value.
pub fn data_type_name(code: u16) -> String {
    data_type_info(code).map_or_else(|| format!("{code:#06x}"), |(n, _)| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes() {
        assert_eq!(data_type_info(0x0007), Some(("UDINT", 32)));
        assert_eq!(data_type_info(0x0031), Some(("BIT2", 2)));
        assert_eq!(data_type_name(0x0009), "STRING");
        assert_eq!(data_type_name(0x0800), "0x0800");
    }
}
