//! Link errors: every problem names the fragment (and, where there is one, the slot of
//! the instruction at fault); a failed link reports all of them at once.

use ferrocat_plugin_api::fragment::encoding::FragmentCheckError;
use std::fmt;

/// One problem found while linking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkError {
    /// Name of the fragment at fault (or of the group, for problems of the whole
    /// program).
    pub fragment: String,
    /// Slot of the instruction at fault within the fragment as it was given, if any.
    pub slot: Option<usize>,
    /// What is wrong.
    pub kind: LinkErrorKind,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fragment {:?}", self.fragment)?;
        if let Some(slot) = self.slot {
            write!(f, ", slot {slot}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for LinkError {}

/// What is wrong, in [`LinkError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkErrorKind {
    /// The fragment is malformed (see `Fragment::check`).
    #[error("{0}")]
    Malformed(FragmentCheckError),
    /// Two devices of a group have the same name.
    #[error("device name {0:?} is used twice in the group")]
    DuplicateDevice(String),
    /// A fragment that sets a verdict was given to a sync group.
    #[error("sets a verdict (an early exit), which only a standalone program may do")]
    SetsVerdictInGroup,
    /// The fragment's frame does not fit the stack next to the prologue's slots.
    #[error("frame of {frame} bytes plus the prologue's {prologue} exceeds the {max}-byte stack")]
    FrameTooLarge {
        /// The fragment's frame size.
        frame: u32,
        /// Bytes the prologue reserves.
        prologue: u32,
        /// The kernel's stack limit.
        max: u32,
    },
    /// An `exit` instruction.
    #[error("contains `exit`; a fragment leaves by falling off its end")]
    Exit,
    /// A tail call.
    #[error("contains a tail call, which fragments may not make")]
    TailCall,
    /// A bpf-to-bpf or kfunc call.
    #[error(
        "contains a call with pseudo source {0} (bpf-to-bpf or kfunc); only helper calls are allowed"
    )]
    PseudoCall(u8),
    /// A call without a `Helper` relocation.
    #[error("calls helper {0} without a Helper relocation")]
    CallWithoutRelocation(i32),
    /// A helper the fragment may not call.
    #[error("calls helper {id}, which is not allowed (allowed: {allowed:?})")]
    HelperNotAllowed {
        /// The helper id.
        id: i32,
        /// The helpers that are allowed.
        allowed: Vec<i32>,
    },
    /// A map load of a map the program was not given; fragments of sync groups reach
    /// memory only through relocations.
    #[error(
        "loads a map address it was not given; fragments reach maps only through r8 and \
         DeviceVar relocations (standalone programs: the maps listed in StandaloneLink::map_fds)"
    )]
    MapLoad,
    /// An instruction writes r8, r9 or r10.
    #[error("writes r{0}, which a fragment may only read")]
    WritesReservedRegister(u8),
    /// A jump whose target lies outside the fragment.
    #[error("jumps to slot {target}, outside the fragment's slots 0..={len}")]
    JumpOutside {
        /// Target slot (fragment-relative; may be negative).
        target: i64,
        /// The fragment's length.
        len: usize,
    },
    /// A jump into the middle of a 64-bit immediate load.
    #[error("jumps to slot {0}, the second half of a 64-bit immediate load")]
    JumpIntoWideLoad(usize),
    /// A stack access without a `Stack` relocation (other than reading the cycle time).
    #[error("accesses the stack at r10{0:+} without a Stack relocation")]
    UnrelocatedStack(i16),
    /// A stack access outside the fragment's frame.
    #[error("accesses {size} bytes at frame offset {off}, outside its {frame}-byte frame")]
    StackOutsideFrame {
        /// Offset relative to the frame base.
        off: i16,
        /// Access width.
        size: u32,
        /// The frame size.
        frame: u32,
    },
    /// An r8 access without a `DeviceVar` relocation.
    #[error("accesses the variable block (r8{0:+}) without a DeviceVar relocation")]
    UnrelocatedDeviceAccess(i16),
    /// A fixed packet access beyond the declared `fixed_packet_len`.
    #[error(
        "accesses packet bytes {start}..{end} without a relocation, beyond its fixed_packet_len {fixed}"
    )]
    FixedPacketBeyondLen {
        /// First byte accessed.
        start: i64,
        /// End of the access.
        end: i64,
        /// The declared fixed length.
        fixed: u32,
    },
    /// A required terminal link is not connected.
    #[error("terminal link {link:?} (variable {var:?}) is not connected")]
    TerminalLinkNotConnected {
        /// The link.
        link: String,
        /// A variable that needs it.
        var: String,
    },
    /// A variable of an unconnected optional link is used outside an `Optional` region.
    #[error(
        "uses variable {var:?} of unconnected optional link {link:?} outside an Optional region of that link"
    )]
    OptionalUseOutsideRegion {
        /// The link.
        link: String,
        /// The variable.
        var: String,
    },
    /// The terminal has no variable of that name.
    #[error("terminal {terminal:?} (link {link:?}) has no variable {var:?}")]
    UnknownTerminalVariable {
        /// The link.
        link: String,
        /// The terminal connected to it.
        terminal: String,
        /// The variable asked for.
        var: String,
    },
    /// The declared type does not match the terminal driver's entry.
    #[error(
        "variable {var:?} of terminal {terminal:?} is declared as {declared} but the process image has {bit_len} bits at bit {bit_offset}"
    )]
    TerminalTypeMismatch {
        /// The variable.
        var: String,
        /// The terminal.
        terminal: String,
        /// The declared type, as text.
        declared: String,
        /// Bits in the process image.
        bit_len: u32,
        /// Bit position in the first byte.
        bit_offset: u8,
    },
    /// The configuration names a terminal or device link with a `.` in it, which the
    /// fragment ABI reserves for paths through device links.
    #[error("link name {0:?} contains '.', which separates the steps of a link path")]
    DottedLinkName(String),
    /// A device link is not connected.
    #[error("device link {link:?} (variable {var:?}) is not connected")]
    DeviceLinkNotConnected {
        /// The link.
        link: String,
        /// A variable that needs it.
        var: String,
    },
    /// A device link names a device that is not in this group.
    #[error("device link {link:?} names device {device:?}, which is not in this sync group")]
    ForeignDeviceNotInGroup {
        /// The link.
        link: String,
        /// The device it names.
        device: String,
    },
    /// The other device declares no such variable.
    #[error("device {device:?} (link {link:?}) has no device variable {var:?}")]
    UnknownForeignVariable {
        /// The link.
        link: String,
        /// The other device.
        device: String,
        /// The variable asked for.
        var: String,
    },
    /// The types of a (foreign) device variable disagree.
    #[error(
        "device variable {var:?} of device {device:?} is {actual}, declared here as {declared}"
    )]
    DeviceVarTypeMismatch {
        /// The device owning the variable.
        device: String,
        /// The variable.
        var: String,
        /// The owner's type.
        actual: String,
        /// This declaration's type.
        declared: String,
    },
    /// A memory access reaches outside the variable it is relocated against.
    #[error("accesses {size} bytes at offset {addend} of variable {var:?}, which has {var_bytes}")]
    AccessOutsideVariable {
        /// The variable.
        var: String,
        /// Offset within the variable (the relocation's addend).
        addend: i64,
        /// Access width.
        size: u32,
        /// The variable's size (its load window for bit fields).
        var_bytes: u32,
    },
    /// A relocated value does not fit its field.
    #[error("{what}: {value} does not fit the {field} field")]
    FieldOverflow {
        /// What was being resolved (e.g. `variable "velocity"`).
        what: String,
        /// The value that does not fit.
        value: i64,
        /// `off` (16 bits) or `imm` (32 bits).
        field: &'static str,
    },
    /// A jump enters an `Optional` region from outside.
    #[error("jump to slot {target} enters the Optional region {start}..{end} of link {link:?}")]
    JumpIntoOptional {
        /// Jump target.
        target: usize,
        /// Region start.
        start: usize,
        /// Region end.
        end: usize,
        /// The region's link.
        link: String,
    },
    /// A jump leaves an `Optional` region other than by its end.
    #[error("jump to slot {target} leaves the Optional region {start}..{end} of link {link:?}")]
    JumpOutOfOptional {
        /// Jump target.
        target: usize,
        /// Region start.
        start: usize,
        /// Region end.
        end: usize,
        /// The region's link.
        link: String,
    },
    /// Two `Optional` regions overlap without one containing the other.
    #[error("Optional regions {a_start}..{a_end} and {b_start}..{b_end} overlap")]
    OptionalOverlap {
        /// First region start.
        a_start: usize,
        /// First region end.
        a_end: usize,
        /// Second region start.
        b_start: usize,
        /// Second region end.
        b_end: usize,
    },
    /// The fragment declares device variables but no map holds them.
    #[error("declares device variables but the program has no variable map")]
    NoVariableMap,
    /// A standalone fragment uses a foreign device variable.
    #[error("uses foreign device variable {0:?}, but a standalone program has no other devices")]
    ForeignInStandalone(String),
    /// An early-exit sequence (`r0 = verdict; goto end`) that another jump enters in its
    /// middle, so the verdict would be undefined.
    #[error("a jump lands on the `goto` of an exit sequence, skipping its verdict")]
    JumpIntoExitSequence,
    /// The linked program's jump from the prologue cannot be encoded.
    #[error("the program is too long: {0} slots")]
    ProgramTooLong(usize),
}

/// Every problem of a failed link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkErrors(pub Vec<LinkError>);

impl LinkErrors {
    /// The problems of fragment `name`.
    pub fn of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a LinkError> + 'a {
        self.0.iter().filter(move |e| e.fragment == name)
    }
}

impl fmt::Display for LinkErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link failed with {} error(s):", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LinkErrors {}
