//! The variable block: where each device variable of a program lives in the value of
//! the one-entry map that r8 points at, shared with the host through mmap.

use super::error::{LinkError, LinkErrorKind};
use ferrocat_plugin_api::fragment::{Fragment, ScalarType, VarKind, VarType};
use std::collections::HashMap;

/// One device variable placed in the block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedVariable {
    /// The device owning it.
    pub device: String,
    /// The variable's name.
    pub name: String,
    /// Its type.
    pub ty: VarType,
    /// Byte offset from the start of the map value (a multiple of its size).
    pub offset: u32,
}

/// The layout of a program's variable block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VariableBlock {
    /// The variables, device by device in group order, each device's in declaration
    /// order.
    pub vars: Vec<PlacedVariable>,
    /// Bytes the map value needs: the end of the last variable rounded up to 8, at
    /// least 8 (a map value cannot be empty).
    pub size: u32,
}

impl VariableBlock {
    /// The placed variable `name` of device `device`.
    pub fn get(&self, device: &str, name: &str) -> Option<&PlacedVariable> {
        self.vars
            .iter()
            .find(|v| v.device == device && v.name == name)
    }

    /// Byte offset of variable `name` of device `device`.
    pub fn offset(&self, device: &str, name: &str) -> Option<u32> {
        self.get(device, name).map(|v| v.offset)
    }

    /// Places the device variables of `devices` (device name, fragment), each naturally
    /// aligned. A variable declared twice by one fragment with different types is an
    /// error naming the fragment.
    pub fn place<'a>(
        devices: impl IntoIterator<Item = (&'a str, &'a Fragment)>,
    ) -> Result<VariableBlock, Vec<LinkError>> {
        let mut block = VariableBlock::default();
        let mut errors = Vec::new();
        let mut end = 0u32;
        let mut placed: HashMap<(&str, &str), usize> = HashMap::new();
        for (device, fragment) in devices {
            for decl in &fragment.vars {
                if decl.kind != VarKind::Device {
                    continue;
                }
                if let Some(prev) = placed
                    .get(&(device, decl.name.as_str()))
                    .map(|&i| &block.vars[i])
                {
                    if prev.ty.scalar != decl.ty.scalar {
                        errors.push(LinkError {
                            fragment: fragment.name.clone(),
                            slot: None,
                            kind: LinkErrorKind::DeviceVarTypeMismatch {
                                device: device.to_string(),
                                var: decl.name.clone(),
                                actual: type_name(prev.ty),
                                declared: type_name(decl.ty),
                            },
                        });
                    }
                    continue;
                }
                let size = decl.ty.scalar.memory_bytes();
                let offset = end.next_multiple_of(size);
                end = offset + size;
                placed.insert((device, decl.name.as_str()), block.vars.len());
                block.vars.push(PlacedVariable {
                    device: device.to_string(),
                    name: decl.name.clone(),
                    ty: decl.ty,
                    offset,
                });
            }
        }
        block.size = end.next_multiple_of(8).max(8);
        if errors.is_empty() {
            Ok(block)
        } else {
            Err(errors)
        }
    }
}

/// Lookup of placed variables by (device, name), for linking many fragments.
pub(crate) struct BlockIndex<'a>(HashMap<(&'a str, &'a str), &'a PlacedVariable>);

impl<'a> BlockIndex<'a> {
    /// Indexes `block`.
    pub(crate) fn new(block: &'a VariableBlock) -> BlockIndex<'a> {
        BlockIndex(
            block
                .vars
                .iter()
                .map(|v| ((v.device.as_str(), v.name.as_str()), v))
                .collect(),
        )
    }

    /// The placed variable `name` of `device`.
    pub(crate) fn get(&self, device: &str, name: &str) -> Option<&'a PlacedVariable> {
        self.0.get(&(device, name)).copied()
    }
}

/// A type as the errors print it: `u16`, `bits(3)`, `i32 big-endian`.
pub fn type_name(ty: VarType) -> String {
    let base = match ty.scalar {
        ScalarType::U8 => "u8".to_string(),
        ScalarType::U16 => "u16".to_string(),
        ScalarType::U32 => "u32".to_string(),
        ScalarType::U64 => "u64".to_string(),
        ScalarType::I8 => "i8".to_string(),
        ScalarType::I16 => "i16".to_string(),
        ScalarType::I32 => "i32".to_string(),
        ScalarType::I64 => "i64".to_string(),
        ScalarType::Bool => "bool".to_string(),
        ScalarType::Bits(n) => format!("bits({n})"),
    };
    match ty.order {
        ferrocat_plugin_api::fragment::ByteOrder::Little => base,
        ferrocat_plugin_api::fragment::ByteOrder::Big => format!("{base} big-endian"),
    }
}
