//! The linker: plugin fragments plus prologue and epilogue become one eBPF program.
//!
//! It implements the host side of the fragment ABI (`docs/fragment-abi.md`):
//!
//! - [`link_group`] joins the fragments of a sync group ([`GroupLink`]: the devices in
//!   run order, each with its [`Fragment`](ferrocat_plugin_api::fragment::Fragment), its
//!   terminal links ([`TerminalLayout`] of [`VariableAddress`]es from the process image)
//!   and device links) into one program: prologue, fragments, epilogue
//!   `r0 = verdict; exit`, and `r0 = XDP_PASS; exit` for frames too short.
//! - [`link_standalone`] links a generic XDP program of one fragment ([`StandaloneLink`]),
//!   returning the fragment's verdict (`XDP_PASS` if it falls off its end without one).
//! - [`variable_block`] / [`standalone_variable_block`] place the device variables
//!   (naturally aligned) before linking, so the host can create the variable map of the
//!   right size first.
//!
//! Both return a [`LinkedProgram`]: instructions, the [`VariableBlock`] layout, `min_len`,
//! stack use and a source map (program slots → fragment and slot within it) for
//! annotating verifier errors. A failed link returns [`LinkErrors`] with every problem
//! found, each naming its fragment and, where there is one, the instruction.
//!
//! What the linker checks: the fragment is well formed (`Fragment::check`); it has no
//! `exit`, tail call, bpf-to-bpf call or map load; it never writes r8, r9 or r10; every
//! jump lands inside it or on its end; stack accesses carry `Stack` relocations and stay
//! inside its frame, which fits the 512-byte stack next to the prologue's 16 bytes (the
//! frames of all fragments overlay each other); r8 accesses carry `DeviceVar`
//! relocations and stay inside their variable; unrelocated packet accesses stay below
//! `fixed_packet_len`; calls go only to allowed helpers; terminal variables exist with
//! the declared bit length (byte-aligned for whole-byte types); foreign device variables
//! exist in the linked device with the same type; `Optional` regions are nested or
//! disjoint, single-entry and single-exit; a group refuses fragments that set a verdict.
//! Relocated values that do not fit their field are errors, never truncated.

mod block;
mod error;
mod input;
mod program;
mod resolve;

pub use block::{PlacedVariable, VariableBlock, type_name};
pub use error::{LinkError, LinkErrorKind, LinkErrors};
pub use input::{
    GroupDevice, GroupLink, StandaloneLink, TerminalLayout, VariableAddress, XDP_DROP, XDP_PASS,
    XDP_TX,
};
pub use program::{
    EPILOGUE_NAME, LinkedProgram, PROLOGUE_NAME, SourceRegion, link_group, link_standalone,
    standalone_variable_block, variable_block,
};
