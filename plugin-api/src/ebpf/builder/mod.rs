//! The builder: generates a device's eBPF [`Fragment`] from Rust code that reads like
//! the device logic it implements (`b.if_(x.gt(y), |b| v.assign(0))`).
//!
//! # Deviations from the API contract (`builder-api.md`)
//! - Shifts: the result of `a << b` / `a >> b` has the signedness of `a` alone (so
//!   `unsigned >> 16` is a logical shift although `16` is a signed literal); `>>` of a
//!   signed value is arithmetic.
//! - Added: [`Builder::local_named`] (a local with a name for error messages; `local`
//!   names it by the place it was declared), [`Builder::packet_bits_be`] (network-order
//!   bit fields such as IPv4's fragment offset), the free function [`if_`] for the DSL,
//!   `IntoExpr for Cond` (a condition used as a value is 0 or 1).
//!
//! # Values
//! Handles ([`Var`], [`Expr`], [`Cond`]) are `Copy` indices into an arena inside the
//! [`Builder`]; each carries the builder, so `v.assign(e)` needs no builder argument.
//! Expressions are trees built by operators and compiled when a statement uses them
//! (`assign`, `if_`, `temp`, ...), so an expression reads its variables at the statement
//! that uses it. Helper calls ([`Builder::ktime_get_ns`], [`Builder::get_prandom_u32`])
//! run at each use; bind them with [`Builder::temp`] to call once. Atomic operations
//! that return the old value (`fetch_add`, `xchg`, `cmpxchg`) run where they are called
//! and return an expression reading the saved old value.
//!
//! # Arithmetic (the rules the differential test checks in the kernel)
//! - All arithmetic happens in 64-bit registers. Loading a narrower variable
//!   zero-extends it (unsigned) or sign-extends it (signed). Storing truncates to the
//!   variable's width; storing into a `bool` stores `value != 0`.
//! - An expression is signed if either operand is signed; literals `i64`/`i32` are
//!   signed, `u64`/`u32` unsigned. Shifts take the left operand's signedness (above).
//!   Signed: `SDiv`/`SMod`, arithmetic `>>`, signed comparisons; unsigned otherwise.
//! - eBPF semantics: `x / 0 == 0`, `x % 0 == x`, `MIN / -1 == MIN`, `MIN % -1 == 0`,
//!   shift amounts masked to 6 bits, wrapping `+ - *`, `abs(MIN) == MIN`.
//! - Comparisons are conditions ([`Cond`]); [`Cond::as_value`] gives 0 or 1 (unsigned).
//!
//! # Registers and stack
//! r8 (device variables), r9 (packet) and r10 (frame) belong to the ABI
//! (`docs/fragment-abi.md`); the builder allocates r0–r7. Locals live in r6/r7 while
//! those are free (they survive helper calls), else in 8-byte stack slots; a local dies
//! at the end of the closure that declared it. Temporaries use any free register and
//! spill to the stack when none is left; live temporaries are moved to r6/r7 or spilled
//! before a helper call. Reading a local that is not assigned on every path to the read
//! is a [`BuildError::MaybeUninitialised`] naming it.
//!
//! # Tight code
//! Constants become immediates (`LdImm64` only when they do not fit 32 bits), a
//! comparison jumps directly, a local is computed in place in its register, and equal
//! expressions share one node. Registers remember which variable or computed expression
//! they hold along straight-line code and across joins where every incoming path
//! agrees, so a variable just compared is not loaded again; every store forgets the
//! stored variable (all packet fields for packet memory: fields may share bytes) and
//! every computed expression.

mod codegen;
mod ir;
mod ops;

pub use codegen::maps::{MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MapRef};

use std::cell::RefCell;
use std::fmt;
use std::panic::Location;

use codegen::{ArmEnd, Inner, Label, Local};
use ir::{BinOp, CondKind, CondNode, Node, NodeKind, Place, PlaceKind, Rel, eval_bin};

use crate::ebpf::insn::AtomicOp;
use crate::fragment::{ByteOrder, Fragment, ScalarType, VarDecl, VarKind, VarType};

impl From<ScalarType> for VarType {
    fn from(scalar: ScalarType) -> VarType {
        VarType::le(scalar)
    }
}

/// Why a fragment could not be built. Each names what is wrong and where the statement
/// that caused it was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A local is read where it may not have been assigned on every path.
    #[error("local `{local}` (declared at {declared}) may be uninitialised when read at {at}")]
    MaybeUninitialised {
        /// The local's name.
        local: String,
        /// Where it was declared.
        declared: &'static Location<'static>,
        /// The statement reading it.
        at: &'static Location<'static>,
    },
    /// A local is used after the closure that declared it ended.
    #[error("local `{local}` (declared at {declared}) is used at {at}, outside its scope")]
    LocalOutOfScope {
        /// The local's name.
        local: String,
        /// Where it was declared.
        declared: &'static Location<'static>,
        /// The statement using it.
        at: &'static Location<'static>,
    },
    /// An atomic operation on packet memory (the verifier rejects it).
    #[error(
        "atomic operation on packet variable `{var}` at {at}: only device variables and locals allow atomics"
    )]
    AtomicOnPacket {
        /// The variable.
        var: String,
        /// The statement.
        at: &'static Location<'static>,
    },
    /// An atomic operation on a variable that is not 4 or 8 bytes wide.
    #[error("atomic operation on `{var}` at {at}: atomics need a 4- or 8-byte variable")]
    AtomicWidth {
        /// The variable.
        var: String,
        /// The statement.
        at: &'static Location<'static>,
    },
    /// A variable of an optional terminal link is used outside `if_linked` of its link.
    #[error(
        "`{var}` at {at} belongs to optional link `{link}`: use it inside `if_linked(\"{link}\", ..)`"
    )]
    OptionalOutsideIfLinked {
        /// The variable.
        var: String,
        /// Its link.
        link: String,
        /// The statement.
        at: &'static Location<'static>,
    },
    /// `exit` inside an `if_linked` region (the region must be left by its end).
    #[error(
        "exit at {at} inside `if_linked(\"{link}\")`: an optional region may only be left by its end"
    )]
    ExitInOptional {
        /// The region's link.
        link: String,
        /// The statement.
        at: &'static Location<'static>,
    },
    /// A variable is declared twice with different types or kinds.
    #[error("`{var}` is declared at {at} as {ty:?}, but earlier differently")]
    Redeclared {
        /// The variable.
        var: String,
        /// The new type.
        ty: VarType,
        /// The second declaration.
        at: &'static Location<'static>,
    },
    /// A type that the variable's memory cannot hold.
    #[error("`{var}` declared at {at}: {what}")]
    BadType {
        /// The variable.
        var: String,
        /// What is wrong.
        what: &'static str,
        /// The declaration.
        at: &'static Location<'static>,
    },
    /// Code was generated between an `if_` and its `else_`/`else_if`.
    #[error("statement at {at} was generated between an if_ and its else_: chain them directly")]
    IfChainInterleaved {
        /// The `else_`/`else_if`.
        at: &'static Location<'static>,
    },
    /// An expression needs more registers than exist even with spilling.
    #[error("expression at {at} is too complex to compile")]
    TooComplex {
        /// The statement.
        at: &'static Location<'static>,
    },
    /// The fragment's stack frame exceeds the program stack.
    #[error(
        "fragment `{fragment}` needs {bytes} bytes of stack (including the prologue's), more than 512"
    )]
    StackTooLarge {
        /// The fragment.
        fragment: String,
        /// Bytes needed.
        bytes: u32,
    },
    /// A jump does not fit even a 32-bit offset.
    #[error("fragment `{fragment}`: a jump is too far even for gotol")]
    JumpTooFar {
        /// The fragment.
        fragment: String,
    },
}

/// Generates one fragment. See the module documentation.
pub struct Builder {
    inner: RefCell<Inner>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.inner.borrow();
        f.debug_struct("Builder")
            .field("name", &i.name)
            .field("vars", &i.decls.len())
            .finish_non_exhaustive()
    }
}

/// A place that can be read and assigned: a packet field, a (foreign) device variable
/// or a local.
#[derive(Clone, Copy)]
pub struct Var<'b> {
    b: &'b Builder,
    id: u32,
}

/// A 64-bit value computed at run time, signed or unsigned.
#[derive(Clone, Copy)]
pub struct Expr<'b> {
    b: &'b Builder,
    id: u32,
}

/// A run-time truth value (a comparison, a bool variable, and/or/not of those).
#[derive(Clone, Copy)]
pub struct Cond<'b> {
    b: &'b Builder,
    id: u32,
}

impl fmt::Debug for Var<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.b.inner.borrow();
        let p = &i.places[self.id as usize];
        write!(f, "Var({}: {:?})", p.name, p.ty)
    }
}

impl fmt::Debug for Expr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr(#{})", self.id)
    }
}

impl fmt::Debug for Cond<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cond(#{})", self.id)
    }
}

/// Anything usable as an expression: [`Var`], [`Expr`], [`Cond`] (0/1), integer
/// literals and `bool`.
pub trait IntoExpr<'b> {
    /// The expression.
    fn into_expr(self, b: &'b Builder) -> Expr<'b>;
}

/// Anything usable as a condition: [`Cond`], a `bool` [`Var`], an [`Expr`] or [`Var`]
/// (true if not zero), a `bool` literal.
pub trait IntoCond<'b> {
    /// The condition.
    fn into_cond(self, b: &'b Builder) -> Cond<'b>;
}

impl<'b> IntoExpr<'b> for Expr<'b> {
    fn into_expr(self, _: &'b Builder) -> Expr<'b> {
        self
    }
}

impl<'b> IntoExpr<'b> for Var<'b> {
    fn into_expr(self, b: &'b Builder) -> Expr<'b> {
        b.node(NodeKind::Read(self.id), self.signed())
    }
}

impl<'b> IntoExpr<'b> for Cond<'b> {
    fn into_expr(self, _: &'b Builder) -> Expr<'b> {
        self.as_value()
    }
}

impl<'b> IntoExpr<'b> for i64 {
    fn into_expr(self, b: &'b Builder) -> Expr<'b> {
        b.node(NodeKind::Const(self), true)
    }
}

impl<'b> IntoExpr<'b> for i32 {
    fn into_expr(self, b: &'b Builder) -> Expr<'b> {
        b.node(NodeKind::Const(i64::from(self)), true)
    }
}

impl<'b> IntoExpr<'b> for u64 {
    fn into_expr(self, b: &'b Builder) -> Expr<'b> {
        b.node(NodeKind::Const(self as i64), false)
    }
}

impl<'b> IntoExpr<'b> for u32 {
    fn into_expr(self, b: &'b Builder) -> Expr<'b> {
        b.node(NodeKind::Const(i64::from(self)), false)
    }
}

impl<'b> IntoExpr<'b> for bool {
    fn into_expr(self, b: &'b Builder) -> Expr<'b> {
        b.node(NodeKind::Const(i64::from(self)), false)
    }
}

impl<'b> IntoCond<'b> for Cond<'b> {
    fn into_cond(self, _: &'b Builder) -> Cond<'b> {
        self
    }
}

impl<'b> IntoCond<'b> for bool {
    fn into_cond(self, b: &'b Builder) -> Cond<'b> {
        b.cond(CondKind::Const(self))
    }
}

impl<'b> IntoCond<'b> for Expr<'b> {
    fn into_cond(self, _: &'b Builder) -> Cond<'b> {
        self.is_true()
    }
}

impl<'b> IntoCond<'b> for Var<'b> {
    fn into_cond(self, b: &'b Builder) -> Cond<'b> {
        let bit = {
            let i = b.inner.borrow();
            let p = &i.places[self.id as usize];
            p.ty.scalar == ScalarType::Bool
                && matches!(
                    p.kind,
                    PlaceKind::Terminal { .. } | PlaceKind::PacketBits { .. }
                )
        };
        if bit {
            b.cond(CondKind::BitSet(self.id))
        } else {
            self.into_expr(b).is_true()
        }
    }
}

/// `x` as a Q16 fixed-point constant (`x * 2^16`, truncated toward zero like the seed's
/// `int(x * (1 << 16))`, saturating at the `i64` range): multiply a run-time value by it
/// and shift right by 16 to scale by `x` in integer arithmetic.
pub fn q16(x: f64) -> i64 {
    (x * 65536.0) as i64
}

/// Joins a device-link path and a link name: `link_path("", "stepper")` is `"stepper"`,
/// `link_path("leader", "stepper")` is `"leader.stepper"` — the terminal link `stepper`
/// of the device that device link `leader` names (the linker follows the path; see the
/// fragment ABI's *Variables*).
pub fn link_path(via: &str, link: &str) -> String {
    if via.is_empty() {
        link.to_string()
    } else {
        format!("{via}.{link}")
    }
}

/// Runs `then` if `cond` holds; the builder is reached through the condition (for the
/// `ebpf!` DSL). Chain `else_if`/`else_` on the result.
#[track_caller]
pub fn if_<'b>(cond: Cond<'b>, then: impl FnOnce()) -> IfChain<'b> {
    cond.b.if_(cond, |_| then())
}

/// An `if` whose `else` may still follow; dropping it closes the `if`.
pub struct IfChain<'b> {
    b: &'b Builder,
    /// Where the current condition jumps when false.
    next: Label,
    end: Label,
    before: Vec<bool>,
    arms: Vec<ArmEnd>,
    stmt: u64,
    closed: bool,
}

impl fmt::Debug for IfChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IfChain")
            .field("arms", &self.arms.len())
            .finish_non_exhaustive()
    }
}

impl<'b> IfChain<'b> {
    /// Checks nothing was generated since the chain's last arm.
    fn check_adjacent(&self) {
        let mut i = self.b.inner.borrow_mut();
        if i.stmt != self.stmt {
            let at = Location::caller();
            i.error(BuildError::IfChainInterleaved { at });
        }
    }

    /// Ends the current arm and starts the next at the current false target.
    fn next_arm(&mut self) {
        let mut i = self.b.inner.borrow_mut();
        let end = ArmEnd {
            reachable: i.reachable,
            assigned: i.assigned.clone(),
        };
        self.arms.push(end);
        let e = self.end;
        i.jump(e);
        let next = self.next;
        i.place(next);
        i.assigned.clone_from(&self.before);
    }

    /// `else if cond { f }`.
    #[track_caller]
    pub fn else_if(mut self, cond: impl IntoCond<'b>, f: impl FnOnce(&'b Builder)) -> IfChain<'b> {
        self.check_adjacent();
        let c = cond.into_cond(self.b);
        self.next_arm();
        self.next = self.b.branch_then(c, f);
        self.stmt = self.b.inner.borrow().stmt;
        self
    }

    /// `else { f }`.
    #[track_caller]
    pub fn else_(mut self, f: impl FnOnce(&'b Builder)) {
        self.check_adjacent();
        self.next_arm();
        let b = self.b;
        b.scoped(f);
        let mut i = b.inner.borrow_mut();
        let end = ArmEnd {
            reachable: i.reachable,
            assigned: i.assigned.clone(),
        };
        self.arms.push(end);
        let e = self.end;
        i.place(e);
        merge(&mut i, &self.arms);
        self.closed = true;
    }
}

impl Drop for IfChain<'_> {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let mut i = self.b.inner.borrow_mut();
        if i.stmt != self.stmt {
            let at = i.at;
            i.error(BuildError::IfChainInterleaved { at });
        }
        let end = ArmEnd {
            reachable: i.reachable,
            assigned: i.assigned.clone(),
        };
        self.arms.push(end);
        let next = self.next;
        i.place(next);
        let implicit = ArmEnd {
            reachable: i.reachable,
            assigned: self.before.clone(),
        };
        self.arms.push(implicit);
        let e = self.end;
        i.place(e);
        merge(&mut i, &self.arms);
    }
}

/// Definite assignment after an if: assigned on every arm that reaches the end.
fn merge(i: &mut Inner, arms: &[ArmEnd]) {
    let mut live = arms.iter().filter(|a| a.reachable);
    if let Some(first) = live.next() {
        let mut acc = first.assigned.clone();
        for a in live {
            for (x, y) in acc.iter_mut().zip(&a.assigned) {
                *x &= *y;
            }
        }
        // Locals declared inside an arm are dead anyway; keep the vector's length.
        acc.resize(i.assigned.len(), false);
        i.assigned = acc;
    }
}

impl Builder {
    /// A builder for the fragment called `name` (normally the device's name).
    #[track_caller]
    pub fn new(name: &str) -> Builder {
        Builder {
            inner: RefCell::new(Inner::new(name)),
        }
    }

    // ------------------------------------------------------------ arena

    fn node(&self, kind: NodeKind, signed: bool) -> Expr<'_> {
        let mut i = self.inner.borrow_mut();
        let id = push_node(&mut i, kind, signed);
        Expr { b: self, id }
    }

    fn cond(&self, kind: CondKind) -> Cond<'_> {
        let mut i = self.inner.borrow_mut();
        let id = push_cond(&mut i, kind);
        Cond { b: self, id }
    }

    fn place(&self, place: Place) -> Var<'_> {
        let mut i = self.inner.borrow_mut();
        i.places.push(place);
        Var {
            b: self,
            id: (i.places.len() - 1) as u32,
        }
    }

    /// Starts a statement written at `at`.
    fn stmt(&self, at: &'static Location<'static>) -> std::cell::RefMut<'_, Inner> {
        let mut i = self.inner.borrow_mut();
        i.at = at;
        i.stmt += 1;
        i
    }

    /// Declares a variable (once per kind and name) and returns its index.
    fn declare(
        &self,
        kind: VarKind,
        name: &str,
        ty: VarType,
        at: &'static Location<'static>,
    ) -> u32 {
        let mut i = self.inner.borrow_mut();
        let same_var = |d: &VarDecl| {
            d.name == name
                && match (&d.kind, &kind) {
                    (VarKind::Terminal { link: a, .. }, VarKind::Terminal { link: b, .. }) => {
                        a == b
                    }
                    (VarKind::Device, VarKind::Device) => true,
                    (VarKind::Foreign { link: a }, VarKind::Foreign { link: b }) => a == b,
                    _ => false,
                }
        };
        if let Some(k) = i.decls.iter().position(same_var) {
            if i.decls[k].ty != ty || i.decls[k].kind != kind {
                i.error(BuildError::Redeclared {
                    var: name.to_string(),
                    ty,
                    at,
                });
            }
            return k as u32;
        }
        // All variables of one terminal link agree on whether it is optional.
        if let VarKind::Terminal { link, optional } = &kind {
            let clash = i.decls.iter().any(|d| {
                matches!(&d.kind, VarKind::Terminal { link: l, optional: o } if l == link && o != optional)
            });
            if clash {
                i.error(BuildError::Redeclared {
                    var: format!("{link}.{name}"),
                    ty,
                    at,
                });
            }
        }
        i.decls.push(VarDecl {
            kind,
            name: name.to_string(),
            ty,
        });
        (i.decls.len() - 1) as u32
    }

    fn terminal_var(
        &self,
        link: &str,
        name: &str,
        ty: VarType,
        optional: bool,
        at: &'static Location<'static>,
    ) -> Var<'_> {
        if ty.scalar.is_bit_field() && ty.order == ByteOrder::Big {
            self.inner.borrow_mut().error(BuildError::BadType {
                var: format!("{link}.{name}"),
                what: "terminal bit fields are little endian (EtherCAT process data)",
                at,
            });
        }
        if let ScalarType::Bits(n) = ty.scalar
            && !(1..=57).contains(&n)
        {
            self.inner.borrow_mut().error(BuildError::BadType {
                var: format!("{link}.{name}"),
                what: "bits(n) needs 1 <= n <= 57",
                at,
            });
        }
        let kind = VarKind::Terminal {
            link: link.to_string(),
            optional,
        };
        let decl = self.declare(kind, name, ty, at);
        self.place(Place {
            ty,
            kind: PlaceKind::Terminal {
                decl,
                optional: optional.then(|| link.to_string()),
            },
            name: format!("{link}.{name}"),
        })
    }

    // ------------------------------------------------------------ declarations

    /// A terminal variable: `name` of the terminal linked as `link`.
    #[track_caller]
    pub fn terminal(&self, link: &str, name: &str, ty: impl Into<VarType>) -> Var<'_> {
        self.terminal_var(link, name, ty.into(), false, Location::caller())
    }

    /// A terminal variable of an optional link: usable only inside
    /// [`Builder::if_linked`] of that link.
    #[track_caller]
    pub fn optional_terminal(&self, link: &str, name: &str, ty: impl Into<VarType>) -> Var<'_> {
        self.terminal_var(link, name, ty.into(), true, Location::caller())
    }

    fn device_var(
        &self,
        kind: VarKind,
        display: String,
        name: &str,
        ty: VarType,
        at: &'static Location<'static>,
    ) -> Var<'_> {
        if matches!(ty.scalar, ScalarType::Bits(_)) {
            self.inner.borrow_mut().error(BuildError::BadType {
                var: display.clone(),
                what: "bit fields exist only in the packet; use an integer type",
                at,
            });
        }
        let decl = self.declare(kind, name, ty, at);
        self.place(Place {
            ty,
            kind: PlaceKind::Device { decl },
            name: display,
        })
    }

    /// A variable of this device in the group's variable block (host-visible).
    #[track_caller]
    pub fn device(&self, name: &str, ty: impl Into<VarType>) -> Var<'_> {
        self.device_var(
            VarKind::Device,
            name.to_string(),
            name,
            ty.into(),
            Location::caller(),
        )
    }

    /// A device variable of another device of the sync group, linked as `link`.
    #[track_caller]
    pub fn foreign(&self, link: &str, name: &str, ty: impl Into<VarType>) -> Var<'_> {
        let kind = VarKind::Foreign {
            link: link.to_string(),
        };
        self.device_var(
            kind,
            format!("{link}.{name}"),
            name,
            ty.into(),
            Location::caller(),
        )
    }

    // --------------------------------------- declarations through a device link

    /// Device variable `name` of the device reached through the device-link path `via`:
    /// this device's own ([`Builder::device`]) if `via` is empty, otherwise a foreign
    /// variable through `via` ([`Builder::foreign`]). `device!` declares device
    /// variables with it; terminal and foreign variables through a path are declared
    /// with their link joined to it ([`link_path`]).
    #[track_caller]
    pub fn device_via(&self, via: &str, name: &str, ty: impl Into<VarType>) -> Var<'_> {
        let (ty, at) = (ty.into(), Location::caller());
        if via.is_empty() {
            self.device_var(VarKind::Device, name.to_string(), name, ty, at)
        } else {
            let kind = VarKind::Foreign {
                link: via.to_string(),
            };
            self.device_var(kind, format!("{via}.{name}"), name, ty, at)
        }
    }

    /// A whole-byte packet field at a fixed offset from the packet start (generic XDP).
    /// A `bool`/`bits` type is the field at bit 0 (the least significant bit for little
    /// endian, the most significant for big endian).
    #[track_caller]
    pub fn packet(&self, offset: u32, ty: impl Into<VarType>) -> Var<'_> {
        let ty = ty.into();
        let at = Location::caller();
        if ty.scalar.is_bit_field() {
            let n = ir::value_bits(ty.scalar) as u8;
            return self.packet_field_bits(offset, 0, n, ty.order, at);
        }
        let bytes = ty.scalar.memory_bytes();
        self.fixed_len(offset, bytes, at);
        self.place(Place {
            ty,
            kind: PlaceKind::Packet { offset },
            name: format!("packet[{offset}]"),
        })
    }

    /// An unsigned bit field of the packet at a fixed position: `width` bits starting
    /// at bit `bit` (counted from the least significant bit) of byte `offset`, extending
    /// into the following bytes (EtherCAT / little-endian bit order). `width == 1` is a
    /// bool.
    #[track_caller]
    pub fn packet_bits(&self, offset: u32, bit: u8, width: u8) -> Var<'_> {
        self.packet_field_bits(offset, bit, width, ByteOrder::Little, Location::caller())
    }

    /// A bit field in network order: `width` bits starting at bit `bit` counted from the
    /// most significant bit of byte `offset` (as RFC diagrams draw them), e.g. IPv4's
    /// fragment offset is `packet_bits_be(20, 3, 13)` for a frame with an Ethernet
    /// header. `width == 1` is a bool.
    #[track_caller]
    pub fn packet_bits_be(&self, offset: u32, bit: u8, width: u8) -> Var<'_> {
        self.packet_field_bits(offset, bit, width, ByteOrder::Big, Location::caller())
    }

    fn packet_field_bits(
        &self,
        offset: u32,
        bit: u8,
        width: u8,
        order: ByteOrder,
        at: &'static Location<'static>,
    ) -> Var<'_> {
        let name = format!("packet[{offset}].{bit}:{width}");
        let first = offset.saturating_add(u32::from(bit / 8));
        let b = u32::from(bit % 8);
        let n = u32::from(width);
        let window = [1u32, 2, 4, 8].into_iter().find(|w| b + n <= w * 8);
        let (Some(window), true) = (window, (1..=57).contains(&width)) else {
            self.inner.borrow_mut().error(BuildError::BadType {
                var: name,
                what: "a fixed bit field needs 1..=57 bits within 8 bytes",
                at,
            });
            return self.place(Place {
                ty: VarType::le(ScalarType::U8),
                kind: PlaceKind::Packet { offset },
                name: format!("packet[{offset}]"),
            });
        };
        let pos = match order {
            ByteOrder::Little => b,
            ByteOrder::Big => window * 8 - b - n,
        };
        self.fixed_len(first, window, at);
        let scalar = if width == 1 {
            ScalarType::Bool
        } else {
            ScalarType::Bits(width)
        };
        self.place(Place {
            ty: VarType { scalar, order },
            kind: PlaceKind::PacketBits {
                offset: first,
                window,
                pos,
            },
            name,
        })
    }

    fn fixed_len(&self, offset: u32, bytes: u32, at: &'static Location<'static>) {
        let mut i = self.inner.borrow_mut();
        let end = offset.saturating_add(bytes);
        if end > i16::MAX as u32 {
            i.error(BuildError::BadType {
                var: format!("packet[{offset}]"),
                what: "fixed packet offsets must be below 32767",
                at,
            });
        }
        i.fixed_packet_len = i.fixed_packet_len.max(end);
    }

    /// A local variable, uninitialised until assigned. It lives until the end of the
    /// closure (or fragment) that declared it.
    #[track_caller]
    pub fn local(&self, ty: impl Into<VarType>) -> Var<'_> {
        let at = Location::caller();
        let name = format!("local@{}:{}", at.line(), at.column());
        self.new_local(&name, ty.into().scalar, at)
    }

    /// A local with a name for error messages.
    #[track_caller]
    pub fn local_named(&self, name: &str, ty: impl Into<VarType>) -> Var<'_> {
        self.new_local(name, ty.into().scalar, Location::caller())
    }

    fn new_local(&self, name: &str, ty: ScalarType, at: &'static Location<'static>) -> Var<'_> {
        let id = {
            let mut i = self.inner.borrow_mut();
            let id = i.locals.len() as u32;
            let store = i.local_store(id);
            i.locals.push(Local {
                ty,
                name: name.to_string(),
                declared: at,
                store,
                alive: true,
                writes: 0,
            });
            i.assigned.push(false);
            if let Some(s) = i.scopes.last_mut() {
                s.push(id);
            }
            id
        };
        self.place(Place {
            ty: VarType::le(ty),
            kind: PlaceKind::Local(id),
            name: name.to_string(),
        })
    }

    /// A 64-bit local initialised with `init` now (`i64` if `init` is signed, else
    /// `u64`).
    #[track_caller]
    pub fn temp<'b>(&'b self, init: impl IntoExpr<'b>) -> Var<'b> {
        let at = Location::caller();
        let e = init.into_expr(self);
        let ty = if e.signed() {
            ScalarType::I64
        } else {
            ScalarType::U64
        };
        let name = format!("temp@{}:{}", at.line(), at.column());
        let v = self.new_local(&name, ty, at);
        let mut i = self.stmt(at);
        i.assign(v.id, e.id);
        v
    }

    // ------------------------------------------------------------ run-time values

    /// `bpf_ktime_get_ns()`, called at each use of the expression.
    pub fn ktime_get_ns(&self) -> Expr<'_> {
        self.node(NodeKind::Call(crate::fragment::helper::KTIME_GET_NS), false)
    }

    /// `bpf_get_prandom_u32()`, called at each use of the expression.
    pub fn get_prandom_u32(&self) -> Expr<'_> {
        self.node(
            NodeKind::Call(crate::fragment::helper::GET_PRANDOM_U32),
            false,
        )
    }

    /// The cycle time the prologue read once for all fragments (`r10 - 8`); sets the
    /// fragment's `uses_cycle_time`.
    pub fn cycle_time(&self) -> Expr<'_> {
        self.node(NodeKind::CycleTime, false)
    }

    /// A signed constant.
    pub fn constant(&self, v: i64) -> Expr<'_> {
        self.node(NodeKind::Const(v), true)
    }

    // ------------------------------------------------------------ control flow

    /// Runs `f` in a new scope of locals.
    fn scoped<'b>(&'b self, f: impl FnOnce(&'b Builder)) {
        self.inner.borrow_mut().scopes.push(Vec::new());
        f(self);
        self.inner.borrow_mut().pop_scope();
    }

    /// Emits `if !c goto next; f` and returns `next`.
    fn branch_then<'b>(&'b self, c: Cond<'b>, f: impl FnOnce(&'b Builder)) -> Label {
        let next = {
            let mut i = self.stmt(Location::caller());
            let next = i.new_label();
            i.branch(c.id, next, false);
            next
        };
        self.scoped(f);
        next
    }

    /// `if cond { then }`; chain [`IfChain::else_if`] / [`IfChain::else_`].
    #[track_caller]
    pub fn if_<'b>(
        &'b self,
        cond: impl IntoCond<'b>,
        then: impl FnOnce(&'b Builder),
    ) -> IfChain<'b> {
        let at = Location::caller();
        let c = cond.into_cond(self);
        let (before, end) = {
            let mut i = self.stmt(at);
            (i.assigned.clone(), i.new_label())
        };
        let next = {
            let mut i = self.inner.borrow_mut();
            let next = i.new_label();
            i.branch(c.id, next, false);
            next
        };
        self.scoped(then);
        let stmt = self.inner.borrow().stmt;
        IfChain {
            b: self,
            next,
            end,
            before,
            arms: Vec::new(),
            stmt,
            closed: false,
        }
    }

    /// Code present only if terminal link `link` is connected: the linker deletes the
    /// region (an `Optional` relocation) otherwise. Variables of optional links may be
    /// used only inside such a region.
    #[track_caller]
    pub fn if_linked<'b>(&'b self, link: &str, then: impl FnOnce(&'b Builder)) {
        let at = Location::caller();
        let (r, before) = {
            let mut i = self.stmt(at);
            i.linked.push(link.to_string());
            (i.region_start(link), i.assigned.clone())
        };
        self.scoped(then);
        let mut i = self.inner.borrow_mut();
        i.region_end(r);
        i.linked.pop();
        let after = i.assigned.clone();
        for (k, a) in i.assigned.iter_mut().enumerate() {
            *a = after[k] && before.get(k).copied().unwrap_or(false);
        }
        i.stmt += 1;
    }

    /// Ends the program with `verdict` (`r0 = verdict; goto end`); marks the fragment
    /// `sets_verdict`. Code after it in the same block is never generated.
    #[track_caller]
    pub fn exit(&self, verdict: i32) {
        let at = Location::caller();
        let mut i = self.stmt(at);
        if let Some(link) = i.linked.last().cloned() {
            i.error(BuildError::ExitInOptional { link, at });
            return;
        }
        i.exit(verdict);
    }

    /// The fragment, or the first error found while building.
    pub fn finish(self) -> Result<Fragment, BuildError> {
        self.inner.into_inner().finish()
    }

    /// Reads `var` into a fresh temporary local (used by atomics on locals).
    fn snapshot<'b>(&'b self, v: Var<'b>, at: &'static Location<'static>) -> Var<'b> {
        let ty = if v.signed() {
            ScalarType::I64
        } else {
            ScalarType::U64
        };
        let l = self.new_local("old value", ty, at);
        let e = v.into_expr(self);
        self.stmt(at).assign(l.id, e.id);
        l
    }
}

/// Appends an expression node, folding constants.
fn push_node(i: &mut Inner, kind: NodeKind, signed: bool) -> u32 {
    let get = |n: u32| i.nodes[n as usize];
    let konst = |n: u32| match i.nodes[n as usize].kind {
        NodeKind::Const(c) => Some(c),
        _ => None,
    };
    // Folding.
    let folded = match kind {
        NodeKind::Bin(op, a, b) => match (konst(a), konst(b)) {
            (Some(x), Some(y)) => Some(NodeKind::Const(eval_bin(op, signed, x, y))),
            (_, Some(y)) => match (op, y) {
                (BinOp::Div, 0) | (BinOp::Mul | BinOp::And, 0) => Some(NodeKind::Const(0)),
                (BinOp::Rem, -1) if signed => Some(NodeKind::Const(0)),
                (BinOp::Rem, 1) => Some(NodeKind::Const(0)),
                (BinOp::Div, -1) if signed => Some(NodeKind::Neg(a)),
                (BinOp::Rem, 0) | (BinOp::Div | BinOp::Mul, 1) | (BinOp::And, -1) => {
                    Some(NodeKind::Same(a))
                }
                (BinOp::Add | BinOp::Sub | BinOp::Or | BinOp::Xor, 0) => Some(NodeKind::Same(a)),
                (BinOp::Shl | BinOp::Shr, y) if y & 63 == 0 => Some(NodeKind::Same(a)),
                _ => None,
            },
            _ => None,
        },
        NodeKind::Neg(a) => konst(a).map(|x| NodeKind::Const(x.wrapping_neg())),
        NodeKind::Not(a) => konst(a).map(|x| NodeKind::Const(!x)),
        NodeKind::Abs(a) => {
            konst(a).map(|x| NodeKind::Const(if signed { x.wrapping_abs() } else { x }))
        }
        NodeKind::MinMax { max, a, b } => match (konst(a), konst(b)) {
            (Some(x), Some(y)) => {
                let lt = Rel::Lt.holds(signed, x, y);
                Some(NodeKind::Const(if lt != max { x } else { y }))
            }
            _ => None,
        },
        NodeKind::Same(a) => konst(a).map(NodeKind::Const),
        NodeKind::CondValue(c) => match i.conds[c as usize].kind {
            CondKind::Const(v) => Some(NodeKind::Const(i64::from(v))),
            _ => None,
        },
        _ => None,
    };
    let kind = folded.unwrap_or(kind);
    let (need, call, bool01) = match kind {
        NodeKind::Const(c) => (0, false, c == 0 || c == 1),
        NodeKind::Read(p) => {
            let place = &i.places[p as usize];
            let bool01 = place.ty.scalar == ScalarType::Bool
                && !matches!(place.kind, PlaceKind::Device { .. });
            (1, false, bool01)
        }
        NodeKind::Call(_) => (1, true, false),
        NodeKind::CycleTime => (1, false, false),
        NodeKind::Bin(op, a, b) => {
            let (x, y) = (get(a), get(b));
            let bool01 = match op {
                BinOp::And => x.bool01 || y.bool01,
                BinOp::Or | BinOp::Xor => x.bool01 && y.bool01,
                _ => false,
            };
            (su_need(x.need, y.need), x.call || y.call, bool01)
        }
        NodeKind::MinMax { a, b, .. } => {
            let (x, y) = (get(a), get(b));
            (
                su_need(x.need, y.need),
                x.call || y.call,
                x.bool01 && y.bool01,
            )
        }
        NodeKind::Neg(a) | NodeKind::Not(a) | NodeKind::Abs(a) => {
            let x = get(a);
            (x.need.max(1), x.call, false)
        }
        NodeKind::Same(a) => {
            let x = get(a);
            (x.need, x.call, x.bool01)
        }
        NodeKind::CondValue(c) => {
            let x = i.conds[c as usize];
            (x.need.saturating_add(1), x.call, true)
        }
    };
    if let Some(&id) = i.node_ids.get(&(kind, signed)) {
        return id;
    }
    i.nodes.push(Node {
        kind,
        signed,
        need,
        call,
        bool01,
    });
    let id = (i.nodes.len() - 1) as u32;
    // Helper calls give a new value each time: never shared.
    if !call {
        i.node_ids.insert((kind, signed), id);
    }
    id
}

/// Sethi–Ullman register need of a binary node.
fn su_need(a: u8, b: u8) -> u8 {
    let a = a.max(1);
    if a == b {
        a.saturating_add(1)
    } else {
        a.max(b)
    }
}

/// Appends a condition node, folding constants.
fn push_cond(i: &mut Inner, kind: CondKind) -> u32 {
    let konst = |c: u32| match i.conds[c as usize].kind {
        CondKind::Const(v) => Some(v),
        _ => None,
    };
    let folded = match kind {
        CondKind::Cmp(rel, a, b) => {
            let (x, y) = (i.nodes[a as usize], i.nodes[b as usize]);
            match (x.kind, y.kind) {
                (NodeKind::Const(p), NodeKind::Const(q)) => {
                    Some(CondKind::Const(rel.holds(x.signed || y.signed, p, q)))
                }
                _ => None,
            }
        }
        CondKind::And(x, y) => match (konst(x), konst(y)) {
            (Some(false), _) | (_, Some(false)) => Some(CondKind::Const(false)),
            (Some(true), _) => Some(i.conds[y as usize].kind),
            (_, Some(true)) => Some(i.conds[x as usize].kind),
            _ => None,
        },
        CondKind::Or(x, y) => match (konst(x), konst(y)) {
            (Some(true), _) | (_, Some(true)) => Some(CondKind::Const(true)),
            (Some(false), _) => Some(i.conds[y as usize].kind),
            (_, Some(false)) => Some(i.conds[x as usize].kind),
            _ => None,
        },
        CondKind::Not(x) => match i.conds[x as usize].kind {
            CondKind::Const(v) => Some(CondKind::Const(!v)),
            CondKind::Not(y) => Some(i.conds[y as usize].kind),
            _ => None,
        },
        CondKind::Truthy(e) => match i.nodes[e as usize].kind {
            NodeKind::Const(v) => Some(CondKind::Const(v != 0)),
            NodeKind::CondValue(c) => Some(i.conds[c as usize].kind),
            _ => None,
        },
        _ => None,
    };
    let kind = folded.unwrap_or(kind);
    let (need, call) = match kind {
        CondKind::Const(_) => (0, false),
        CondKind::Cmp(_, a, b) => {
            let (x, y) = (i.nodes[a as usize], i.nodes[b as usize]);
            (su_need(x.need, y.need), x.call || y.call)
        }
        CondKind::And(x, y) | CondKind::Or(x, y) => {
            let (x, y) = (i.conds[x as usize], i.conds[y as usize]);
            (x.need.max(y.need), x.call || y.call)
        }
        CondKind::Not(x) => {
            let x = i.conds[x as usize];
            (x.need, x.call)
        }
        CondKind::Truthy(e) => {
            let x = i.nodes[e as usize];
            (x.need.max(1), x.call)
        }
        CondKind::BitSet(_) => (1, false),
    };
    i.conds.push(CondNode { kind, need, call });
    (i.conds.len() - 1) as u32
}

impl<'b> Var<'b> {
    fn signed(self) -> bool {
        self.b.inner.borrow().places[self.id as usize]
            .ty
            .scalar
            .is_signed()
    }

    /// The variable's type.
    pub fn ty(self) -> VarType {
        self.b.inner.borrow().places[self.id as usize].ty
    }

    /// The variable's current value.
    pub fn get(self) -> Expr<'b> {
        self.into_expr(self.b)
    }

    /// `self = e`.
    #[track_caller]
    pub fn assign(self, e: impl IntoExpr<'b>) {
        let e = e.into_expr(self.b);
        self.b.stmt(Location::caller()).assign(self.id, e.id);
    }

    #[track_caller]
    fn op_assign(self, op: BinOp, e: impl IntoExpr<'b>) {
        let e = e.into_expr(self.b);
        let cur = self.get();
        let signed = match op {
            BinOp::Shl | BinOp::Shr => cur.signed(),
            _ => cur.signed() || e.signed(),
        };
        let v = self.b.node(NodeKind::Bin(op, cur.id, e.id), signed);
        self.b.stmt(Location::caller()).assign(self.id, v.id);
    }

    /// `self += e` (load, add, store; not atomic).
    #[track_caller]
    pub fn add_assign(self, e: impl IntoExpr<'b>) {
        self.op_assign(BinOp::Add, e);
    }
    /// `self -= e`.
    #[track_caller]
    pub fn sub_assign(self, e: impl IntoExpr<'b>) {
        self.op_assign(BinOp::Sub, e);
    }
    /// `self *= e`.
    #[track_caller]
    pub fn mul_assign(self, e: impl IntoExpr<'b>) {
        self.op_assign(BinOp::Mul, e);
    }
    /// `self /= e`.
    #[track_caller]
    pub fn div_assign(self, e: impl IntoExpr<'b>) {
        self.op_assign(BinOp::Div, e);
    }
    /// `self %= e`.
    #[track_caller]
    pub fn rem_assign(self, e: impl IntoExpr<'b>) {
        self.op_assign(BinOp::Rem, e);
    }
    /// `self <<= e`.
    #[track_caller]
    pub fn shl_assign(self, e: impl IntoExpr<'b>) {
        self.op_assign(BinOp::Shl, e);
    }
    /// `self >>= e`.
    #[track_caller]
    pub fn shr_assign(self, e: impl IntoExpr<'b>) {
        self.op_assign(BinOp::Shr, e);
    }
    /// `self &= e`.
    #[track_caller]
    pub fn and_assign(self, e: impl IntoExpr<'b>) {
        self.op_assign(BinOp::And, e);
    }
    /// `self |= e`.
    #[track_caller]
    pub fn or_assign(self, e: impl IntoExpr<'b>) {
        self.op_assign(BinOp::Or, e);
    }
    /// `self ^= e`.
    #[track_caller]
    pub fn xor_assign(self, e: impl IntoExpr<'b>) {
        self.op_assign(BinOp::Xor, e);
    }

    /// Checks an atomic is possible on this variable; `Some(is_device)` if so.
    fn atomic_ok(self, at: &'static Location<'static>) -> Option<bool> {
        let mut i = self.b.inner.borrow_mut();
        let p = i.places[self.id as usize].clone();
        if p.is_packet() {
            i.error(BuildError::AtomicOnPacket { var: p.name, at });
            return None;
        }
        if let PlaceKind::Device { .. } = p.kind {
            if !matches!(p.ty.scalar.memory_bytes(), 4 | 8) {
                i.error(BuildError::AtomicWidth { var: p.name, at });
                return None;
            }
            return Some(true);
        }
        Some(false)
    }

    fn atomic_fetch(self, op: AtomicOp, e: Expr<'b>, at: &'static Location<'static>) -> Expr<'b> {
        match self.atomic_ok(at) {
            None => self.b.constant(0),
            Some(false) => {
                let old = self.b.snapshot(self, at);
                let new = match op {
                    AtomicOp::FetchAdd => self.b.node(
                        NodeKind::Bin(BinOp::Add, old.get().id, e.id),
                        self.signed() || e.signed(),
                    ),
                    _ => e,
                };
                self.b.stmt(at).assign(self.id, new.id);
                old.get()
            }
            Some(true) => {
                let old = self.b.new_local("old value", self.old_type(), at);
                let mut i = self.b.stmt(at);
                if let Some(t) = i.atomic_device(self.id, op, e.id) {
                    let id = local_id(&i, old.id);
                    i.temp_into_local(t, id);
                }
                drop(i);
                old.get()
            }
        }
    }

    fn old_type(self) -> ScalarType {
        if self.signed() {
            ScalarType::I64
        } else {
            ScalarType::U64
        }
    }

    /// Atomically `self += e` (device variables of 4 or 8 bytes; plain `+=` on locals;
    /// a [`BuildError::AtomicOnPacket`] on packet variables).
    #[track_caller]
    pub fn atomic_add(self, e: impl IntoExpr<'b>) {
        let at = Location::caller();
        let e = e.into_expr(self.b);
        match self.atomic_ok(at) {
            None => {}
            Some(false) => self.op_assign(BinOp::Add, e),
            Some(true) => {
                self.b.stmt(at).atomic_device(self.id, AtomicOp::Add, e.id);
            }
        }
    }

    /// Atomically `self += e`, returning the old value.
    #[track_caller]
    pub fn fetch_add(self, e: impl IntoExpr<'b>) -> Expr<'b> {
        let e = e.into_expr(self.b);
        self.atomic_fetch(AtomicOp::FetchAdd, e, Location::caller())
    }

    /// Atomically `self = e`, returning the old value.
    #[track_caller]
    pub fn xchg(self, e: impl IntoExpr<'b>) -> Expr<'b> {
        let e = e.into_expr(self.b);
        self.atomic_fetch(AtomicOp::Xchg, e, Location::caller())
    }

    /// Atomically: if `self == expected` then `self = new`; returns the old value.
    #[track_caller]
    pub fn cmpxchg(self, expected: impl IntoExpr<'b>, new: impl IntoExpr<'b>) -> Expr<'b> {
        let at = Location::caller();
        let expected = expected.into_expr(self.b);
        let new = new.into_expr(self.b);
        match self.atomic_ok(at) {
            None => self.b.constant(0),
            Some(false) => {
                let old = self.b.snapshot(self, at);
                let c = self
                    .b
                    .cond(CondKind::Cmp(Rel::Eq, old.get().id, expected.id));
                let b = self.b;
                let chain = b.if_(c, |_| {
                    b.stmt(at).assign(self.id, new.id);
                });
                drop(chain);
                old.get()
            }
            Some(true) => {
                let old = self.b.new_local("old value", self.old_type(), at);
                let mut i = self.b.stmt(at);
                if let Some(t) = i.cmpxchg_device(self.id, expected.id, new.id) {
                    let id = local_id(&i, old.id);
                    i.temp_into_local(t, id);
                }
                drop(i);
                old.get()
            }
        }
    }
}

fn local_id(i: &Inner, place: u32) -> u32 {
    match i.places[place as usize].kind {
        PlaceKind::Local(id) => id,
        _ => 0,
    }
}

impl<'b> Expr<'b> {
    fn signed(self) -> bool {
        self.b.inner.borrow().nodes[self.id as usize].signed
    }

    fn unary(self, kind: NodeKind) -> Expr<'b> {
        let s = self.signed();
        self.b.node(kind, s)
    }

    fn cmp(self, rel: Rel, o: impl IntoExpr<'b>) -> Cond<'b> {
        let o = o.into_expr(self.b);
        self.b.cond(CondKind::Cmp(rel, self.id, o.id))
    }

    fn minmax(self, max: bool, o: impl IntoExpr<'b>) -> Expr<'b> {
        let o = o.into_expr(self.b);
        let s = self.signed() || o.signed();
        self.b.node(
            NodeKind::MinMax {
                max,
                a: self.id,
                b: o.id,
            },
            s,
        )
    }

    pub(crate) fn bin(self, op: BinOp, o: Expr<'b>) -> Expr<'b> {
        let signed = match op {
            BinOp::Shl | BinOp::Shr => self.signed(),
            _ => self.signed() || o.signed(),
        };
        self.b.node(NodeKind::Bin(op, self.id, o.id), signed)
    }

    /// `|self|` (`abs(MIN) == MIN`); an unsigned value is its own absolute value.
    pub fn abs(self) -> Expr<'b> {
        if self.signed() {
            self.unary(NodeKind::Abs(self.id))
        } else {
            self
        }
    }
    /// The smaller of `self` and `o`.
    pub fn min(self, o: impl IntoExpr<'b>) -> Expr<'b> {
        self.minmax(false, o)
    }
    /// The larger of `self` and `o`.
    pub fn max(self, o: impl IntoExpr<'b>) -> Expr<'b> {
        self.minmax(true, o)
    }
    /// `self` limited to `lo..=hi` (`max(lo)` then `min(hi)`).
    pub fn clamp(self, lo: impl IntoExpr<'b>, hi: impl IntoExpr<'b>) -> Expr<'b> {
        self.max(lo).min(hi)
    }
    /// `self` scaled by the generation-time real `factor` in Q16 fixed point:
    /// `(self * q16(factor)) >> 16` (see [`q16`]; the shift is arithmetic for a signed
    /// `self`, and the product is computed in 64 bits, so `|self * factor|` must stay
    /// below 2^47).
    pub fn scale(self, factor: f64) -> Expr<'b> {
        (self * q16(factor)) >> 16
    }
    /// `self > o`.
    pub fn gt(self, o: impl IntoExpr<'b>) -> Cond<'b> {
        self.cmp(Rel::Gt, o)
    }
    /// `self >= o`.
    pub fn ge(self, o: impl IntoExpr<'b>) -> Cond<'b> {
        self.cmp(Rel::Ge, o)
    }
    /// `self < o`.
    pub fn lt(self, o: impl IntoExpr<'b>) -> Cond<'b> {
        self.cmp(Rel::Lt, o)
    }
    /// `self <= o`.
    pub fn le(self, o: impl IntoExpr<'b>) -> Cond<'b> {
        self.cmp(Rel::Le, o)
    }
    /// `self == o`.
    pub fn eq(self, o: impl IntoExpr<'b>) -> Cond<'b> {
        self.cmp(Rel::Eq, o)
    }
    /// `self != o`.
    pub fn ne(self, o: impl IntoExpr<'b>) -> Cond<'b> {
        self.cmp(Rel::Ne, o)
    }
    /// The same bits, treated as signed.
    pub fn as_signed(self) -> Expr<'b> {
        self.b.node(NodeKind::Same(self.id), true)
    }
    /// The same bits, treated as unsigned.
    pub fn as_unsigned(self) -> Expr<'b> {
        self.b.node(NodeKind::Same(self.id), false)
    }
    /// `self != 0`.
    pub fn is_true(self) -> Cond<'b> {
        self.b.cond(CondKind::Truthy(self.id))
    }
}

impl<'b> Cond<'b> {
    /// Both hold (the second is not evaluated if the first fails).
    pub fn and(self, o: impl IntoCond<'b>) -> Cond<'b> {
        let o = o.into_cond(self.b);
        self.b.cond(CondKind::And(self.id, o.id))
    }
    /// Either holds (the second is not evaluated if the first holds).
    pub fn or(self, o: impl IntoCond<'b>) -> Cond<'b> {
        let o = o.into_cond(self.b);
        self.b.cond(CondKind::Or(self.id, o.id))
    }
    /// The condition does not hold.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Cond<'b> {
        self.b.cond(CondKind::Not(self.id))
    }
    /// 1 if the condition holds, else 0 (unsigned).
    pub fn as_value(self) -> Expr<'b> {
        self.b.node(NodeKind::CondValue(self.id), false)
    }
}

/// Expression methods on variables (a variable read is an expression).
impl<'b> Var<'b> {
    /// `|self|`.
    pub fn abs(self) -> Expr<'b> {
        self.get().abs()
    }
    /// The smaller of `self` and `o`.
    pub fn min(self, o: impl IntoExpr<'b>) -> Expr<'b> {
        self.get().min(o)
    }
    /// The larger of `self` and `o`.
    pub fn max(self, o: impl IntoExpr<'b>) -> Expr<'b> {
        self.get().max(o)
    }
    /// `self` limited to `lo..=hi`.
    pub fn clamp(self, lo: impl IntoExpr<'b>, hi: impl IntoExpr<'b>) -> Expr<'b> {
        self.get().clamp(lo, hi)
    }
    /// `self` scaled by `factor` in Q16 fixed point ([`Expr::scale`]).
    pub fn scale(self, factor: f64) -> Expr<'b> {
        self.get().scale(factor)
    }
    /// `self > o`.
    pub fn gt(self, o: impl IntoExpr<'b>) -> Cond<'b> {
        self.get().gt(o)
    }
    /// `self >= o`.
    pub fn ge(self, o: impl IntoExpr<'b>) -> Cond<'b> {
        self.get().ge(o)
    }
    /// `self < o`.
    pub fn lt(self, o: impl IntoExpr<'b>) -> Cond<'b> {
        self.get().lt(o)
    }
    /// `self <= o`.
    pub fn le(self, o: impl IntoExpr<'b>) -> Cond<'b> {
        self.get().le(o)
    }
    /// `self == o`.
    pub fn eq(self, o: impl IntoExpr<'b>) -> Cond<'b> {
        self.get().eq(o)
    }
    /// `self != o`.
    pub fn ne(self, o: impl IntoExpr<'b>) -> Cond<'b> {
        self.get().ne(o)
    }
    /// The value treated as signed.
    pub fn as_signed(self) -> Expr<'b> {
        self.get().as_signed()
    }
    /// The value treated as unsigned.
    pub fn as_unsigned(self) -> Expr<'b> {
        self.get().as_unsigned()
    }
    /// `self != 0` (for a bool packet bit: the bit is set).
    pub fn is_true(self) -> Cond<'b> {
        self.into_cond(self.b)
    }
}

#[cfg(test)]
mod tests;
