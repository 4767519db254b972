//! Map access for standalone (generic XDP) programs: `bpf_map_lookup_elem` through a map
//! descriptor, with the null check the verifier demands, and the looked-up value as a
//! variable of the program.
//!
//! Fragments of sync groups have no maps besides their variable block (the linker
//! refuses map loads there, `docs/fragment-abi.md`); standalone programs may use any map
//! the kernel allows. The map is named by its descriptor ([`MapRef`]), so the map must
//! exist before the program is built, as the program is generated at run time anyway.
//!
//! Generated code (`key` on the stack, `ptr` in a stack slot while the body runs):
//!
//! ```text
//!   *(key width *)(r10 - k) = key
//!   r1 = map[fd] ; r2 = r10 ; r2 += -k ; call 1     bpf_map_lookup_elem
//!   [if r0 != 0 goto found                           only `map_entry`/`map_add`:
//!    *(u64 *)(r10 - v) = 0                           insert a zero value
//!    r1 = map[fd] ; r2 = &key ; r3 = &zero ; r4 = 1 (BPF_NOEXIST) ; call 2
//!    r1 = map[fd] ; r2 = &key ; call 1               and look it up again
//!   found:]
//!   if r0 == 0 goto skip
//!   body on a copy of the value, written back through the pointer at the end
//!   (only if the body assigns the copy somewhere)
//! skip:
//! ```
//!
//! The stack addresses passed to the helpers are computed from r10 with the ABI's fixed
//! prologue size ([`PROLOGUE_STACK`]) already applied, because a relocation patches only
//! the `off` of a memory access, not the `imm` of an addition.

use std::panic::Location;

use super::super::{Builder, IntoExpr, Var, local_id};
use super::{Inner, Label, LocalStore, Mem, Opnd};
use crate::ebpf::insn::{AluOp, AtomicOp, Insn, JmpCond, Reg, Size, Src};
use crate::fragment::{PROLOGUE_STACK, RelocKind, ScalarType};

/// `BPF_FUNC_map_lookup_elem` (include/uapi/linux/bpf.h).
pub const MAP_LOOKUP_ELEM: i32 = 1;
/// `BPF_FUNC_map_update_elem` (include/uapi/linux/bpf.h).
pub const MAP_UPDATE_ELEM: i32 = 2;
/// `BPF_NOEXIST` (include/uapi/linux/bpf.h): create only.
const BPF_NOEXIST: i32 = 1;

/// A map a standalone program uses: its descriptor and the types of its keys and
/// values (scalars: the key is stored, and the value loaded, with their widths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRef {
    /// The map's file descriptor in the process building the program.
    pub fd: i32,
    /// Type of a key (for arrays `u32`).
    pub key: ScalarType,
    /// Type of a value.
    pub value: ScalarType,
}

impl Inner {
    /// `dst = r10 + (frame offset of slot s)`, the frame base already applied.
    fn slot_addr(&mut self, dst: Reg, s: u32) {
        let off = i32::from(Self::slot_mem(s).off) - i32::from(PROLOGUE_STACK);
        self.alu(AluOp::Mov, dst, Src::Reg(Reg::R10));
        self.alu(AluOp::Add, dst, Src::Imm(off));
    }

    fn call_helper(&mut self, id: i32) {
        self.emit_r(Insn::Call { helper: 0 }, Some(RelocKind::Helper(id)));
    }

    /// `r0 = bpf_map_lookup_elem(map, &key_slot)`.
    fn lookup_call(&mut self, fd: i32, key_slot: u32) {
        self.emit(Insn::LdMapFd { dst: Reg::R1, fd });
        self.slot_addr(Reg::R2, key_slot);
        self.call_helper(MAP_LOOKUP_ELEM);
    }

    /// Stores expression `key` on the stack with the width of `ty`; returns the slot.
    fn key_to_stack(&mut self, key: u32, ty: ScalarType) -> u32 {
        let s = self.alloc_slot();
        let m = Self::slot_mem(s);
        let size = Size::from_bytes(ty.memory_bytes()).unwrap_or(Size::DW);
        let o = self.compile(key, None);
        match o {
            Opnd::Imm(c) => self.store_const(size, &m, super::normalise(ty, c)),
            _ => {
                let (r, o) = self.reg_of(o);
                self.store_reg(size, &m, r);
                self.free(o);
            }
        }
        s
    }

    /// Looks `key` up in `map` (inserting a zero value first if `insert` and absent);
    /// leaves the value pointer in r0, checked not null. Returns the label jumped to when
    /// there is no value.
    fn lookup_checked(&mut self, map: MapRef, key: u32, insert: bool) -> Label {
        let key_slot = self.key_to_stack(key, map.key);
        self.save_caller_saved();
        let skip = self.new_label();
        self.lookup_call(map.fd, key_slot);
        if insert {
            let found = self.new_label();
            self.jump_if(JmpCond::Ne, Reg::R0, Src::Imm(0), found);
            let zero = self.alloc_slot();
            self.store_imm(Size::DW, &Self::slot_mem(zero), 0);
            self.emit(Insn::LdMapFd {
                dst: Reg::R1,
                fd: map.fd,
            });
            self.slot_addr(Reg::R2, key_slot);
            self.slot_addr(Reg::R3, zero);
            self.alu(AluOp::Mov, Reg::R4, Src::Imm(BPF_NOEXIST));
            self.call_helper(MAP_UPDATE_ELEM);
            self.free_slot(zero);
            // Inserted by us or, racing, by another CPU: look it up again.
            self.lookup_call(map.fd, key_slot);
            self.place(found);
        }
        self.free_slot(key_slot);
        self.jump_if(JmpCond::Eq, Reg::R0, Src::Imm(0), skip);
        skip
    }

    /// Start of `map_lookup`/`map_entry`: the pointer saved in a new stack slot
    /// (returned with the skip label).
    pub(crate) fn map_value_begin(&mut self, map: MapRef, key: u32, insert: bool) -> (Label, u32) {
        let skip = self.lookup_checked(map, key, insert);
        let ptr = self.alloc_slot();
        self.store_reg(Size::DW, &Self::slot_mem(ptr), Reg::R0);
        (skip, ptr)
    }

    /// Copies the value at the pointer in r0 into local `id` (right after
    /// [`map_value_begin`](Self::map_value_begin)).
    pub(crate) fn map_value_load(&mut self, ty: ScalarType, id: u32) {
        let tp = self.new_temp(Reg::R0);
        self.temps[tp as usize].pinned = true;
        let (tv, rv) = self.alloc_temp(None);
        let size = Size::from_bytes(ty.memory_bytes()).unwrap_or(Size::DW);
        let m = Mem {
            base: Reg::R0,
            off: 0,
            reloc: None,
        };
        self.load(size, ty.is_signed(), rv, &m);
        if ty == ScalarType::Bool {
            self.alu(AluOp::And, rv, Src::Imm(1));
        }
        self.free_temp(tp);
        self.temp_into_local(tv, id);
    }

    /// Writes local `id` back through the pointer saved in `ptr` and frees the slot.
    pub(crate) fn map_value_store(&mut self, ty: ScalarType, id: u32, ptr: u32) {
        let (tp, rp) = self.alloc_temp(None);
        self.temps[tp as usize].pinned = true;
        self.load(Size::DW, false, rp, &Self::slot_mem(ptr));
        let size = Size::from_bytes(ty.memory_bytes()).unwrap_or(Size::DW);
        let at = Mem {
            base: rp,
            off: 0,
            reloc: None,
        };
        match self.locals[id as usize].store {
            LocalStore::Reg(r) => self.store_reg(size, &at, r),
            LocalStore::Stack(s) => {
                let (tv, rv) = self.alloc_temp(None);
                self.load(Size::DW, false, rv, &Self::slot_mem(s));
                self.store_reg(size, &at, rv);
                self.free_temp(tv);
            }
        }
        self.free_temp(tp);
        self.free_slot(ptr);
    }

    /// `*lookup_or_insert(map, key) += delta`, atomically.
    pub(crate) fn map_add(&mut self, map: MapRef, key: u32, delta: u32) {
        let skip = self.lookup_checked(map, key, true);
        let size = match map.value.memory_bytes() {
            4 => Size::W,
            _ => Size::DW,
        };
        let tp = self.new_temp(Reg::R0);
        self.temps[tp as usize].pinned = true;
        let o = self.compile(delta, None);
        let (rv, o) = self.reg_of(o);
        self.pin(o, true);
        let rp = self.ensure_reg(tp);
        self.emit(Insn::Atomic {
            size,
            op: AtomicOp::Add,
            dst: rp,
            src: rv,
            off: 0,
        });
        self.pin(o, false);
        self.free(o);
        self.free_temp(tp);
        self.place(skip);
    }
}

/// Errors of map access found while building.
fn value_ok(b: &Builder, map: MapRef, what: &'static str, at: &'static Location<'static>) -> bool {
    let bad = match map.value {
        ScalarType::Bits(_) => Some("map values are whole-byte integers, not bit fields"),
        s if what == "map_add" && !matches!(s.memory_bytes(), 4 | 8) => {
            Some("map_add needs 4- or 8-byte values (atomic add)")
        }
        _ => None,
    }
    .or(match map.key {
        ScalarType::Bits(_) => Some("map keys are whole-byte integers, not bit fields"),
        _ => None,
    });
    match bad {
        Some(w) => {
            b.inner
                .borrow_mut()
                .error(super::super::BuildError::BadType {
                    var: format!("map fd {}", map.fd),
                    what: w,
                    at,
                });
            false
        }
        None => true,
    }
}

impl Builder {
    /// Runs `f` with the value stored under `key` in `map`, if there is one
    /// (`bpf_map_lookup_elem`; for arrays, every index below `max_entries`). `f` gets a
    /// copy of the value as a local; if `f` assigns it anywhere, whatever it holds when
    /// `f` ends is written back (not atomically: for counters shared between CPUs use a
    /// per-CPU map or [`Builder::map_add`]). A body that only reads the value writes
    /// nothing back, so it never undoes what other CPUs store meanwhile.
    #[track_caller]
    pub fn map_lookup<'b>(
        &'b self,
        map: MapRef,
        key: impl IntoExpr<'b>,
        f: impl FnOnce(&'b Builder, Var<'b>),
    ) {
        self.map_value(map, key.into_expr(self).id, false, f, Location::caller());
    }

    /// Like [`Builder::map_lookup`], but inserts a zero value first if `key` is absent
    /// (hash maps: counting per key). If the map is full the insert fails and `f` is
    /// skipped.
    #[track_caller]
    pub fn map_entry<'b>(
        &'b self,
        map: MapRef,
        key: impl IntoExpr<'b>,
        f: impl FnOnce(&'b Builder, Var<'b>),
    ) {
        self.map_value(map, key.into_expr(self).id, true, f, Location::caller());
    }

    fn map_value<'b>(
        &'b self,
        map: MapRef,
        key: u32,
        insert: bool,
        f: impl FnOnce(&'b Builder, Var<'b>),
        at: &'static Location<'static>,
    ) {
        if !value_ok(self, map, "map_lookup", at) {
            return;
        }
        let (skip, ptr, before) = {
            let mut i = self.stmt(at);
            let before = i.assigned.clone();
            let (skip, ptr) = i.map_value_begin(map, key, insert);
            (skip, ptr, before)
        };
        self.inner.borrow_mut().scopes.push(Vec::new());
        let v = self.new_local("map value", map.value, at);
        let (id, loaded) = {
            let mut i = self.inner.borrow_mut();
            let id = local_id(&i, v.id);
            i.map_value_load(map.value, id);
            if i.reachable {
                i.assigned[id as usize] = true;
            }
            (id, i.locals[id as usize].writes)
        };
        f(self, v);
        let mut i = self.stmt(at);
        if i.locals[id as usize].writes != loaded {
            i.map_value_store(map.value, id, ptr);
        } else {
            // Read only: nothing to write back, and writing the copy back would undo
            // what other CPUs stored in between.
            i.free_slot(ptr);
        }
        i.pop_scope();
        i.place(skip);
        // Assigned afterwards only if assigned before (the value may be absent).
        let n = i.assigned.len();
        for (k, a) in i.assigned.iter_mut().enumerate().take(n) {
            *a = *a && before.get(k).copied().unwrap_or(false);
        }
        i.stmt += 1;
    }

    /// Atomically adds `delta` to the value under `key` in `map`, inserting a zero
    /// value first if the key is absent (a counter per key; on arrays, keys beyond
    /// `max_entries` are ignored). The value must be 4 or 8 bytes.
    #[track_caller]
    pub fn map_add<'b>(&'b self, map: MapRef, key: impl IntoExpr<'b>, delta: impl IntoExpr<'b>) {
        let at = Location::caller();
        if !value_ok(self, map, "map_add", at) {
            return;
        }
        let key = key.into_expr(self).id;
        let delta = delta.into_expr(self).id;
        self.stmt(at).map_add(map, key, delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::disasm;

    const COUNTS: MapRef = MapRef {
        fd: 7,
        key: ScalarType::U16,
        value: ScalarType::U64,
    };

    #[test]
    fn lookup_copies_in_and_writes_back() {
        let b = Builder::new("t");
        let et = b.packet(12, crate::fragment::VarType::be(ScalarType::U16));
        b.map_lookup(COUNTS, et, |_, v| v.add_assign(1));
        let f = b.finish().expect("builds");
        let text: Vec<String> = disasm::disassemble(&f.insns)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let text = text.join("\n");
        assert!(text.contains("map[fd:7]"), "{text}");
        // Lookup, null check, pointer saved, value copied, written back through the
        // reloaded pointer.
        assert!(text.contains("r2 = r10"), "{text}");
        assert!(text.contains("*(u64 *)(r10 -8) = r0"), "{text}");
        assert!(text.contains("*(u64 *)(r0 +0)"), "{text}");
        assert!(text.contains("if r0 == 0x0 goto"), "{text}");
        // The key is stored with its width (u16), the value with its own (u64).
        assert!(text.contains("*(u16 *)(r10 -8) = r0"), "{text}");
        let helpers: Vec<i32> = f
            .relocs
            .iter()
            .filter_map(|r| match r.kind {
                RelocKind::Helper(h) => Some(h),
                _ => None,
            })
            .collect();
        assert_eq!(helpers, vec![MAP_LOOKUP_ELEM]);
    }

    /// Stores through a pointer register other than the frame pointer (r10) and the
    /// variable base (r8): writes into map memory.
    fn map_stores(f: &crate::fragment::Fragment) -> Vec<String> {
        disasm::disassemble(&f.insns)
            .into_iter()
            .filter_map(|(_, t)| {
                let text = t.split_once(") ").map_or(t.as_str(), |(_, rest)| rest);
                (text.starts_with("*(") && !text.contains("(r10 ")).then(|| text.to_string())
            })
            .collect()
    }

    #[test]
    fn a_read_only_body_writes_nothing_back() {
        let b = Builder::new("t");
        let seen = b.device("seen", ScalarType::U64);
        b.map_lookup(COUNTS, 1u32, |_, v| seen.assign(v + 1));
        let read_only = b.finish().expect("builds");
        assert_eq!(
            map_stores(&read_only),
            ["*(u64 *)(r8 +0) = r0".to_string()],
            "only the device variable is stored"
        );

        // Assigned on one path only: written back (on every path).
        let b = Builder::new("t");
        b.map_lookup(COUNTS, 1u32, |b, v| {
            b.if_(v.gt(10), |_| v.assign(0));
        });
        let some_path = b.finish().expect("builds");
        let stores = map_stores(&some_path);
        assert_eq!(stores.len(), 1, "{stores:?}");
        assert!(stores[0].starts_with("*(u64 *)(r"), "{stores:?}");
        assert!(!stores[0].contains("(r8 "), "{stores:?}");
    }

    #[test]
    fn entry_inserts_then_looks_up_again() {
        let b = Builder::new("t");
        b.map_entry(COUNTS, 0x0800u32, |_, v| v.add_assign(1));
        let f = b.finish().expect("builds");
        let helpers: Vec<i32> = f
            .relocs
            .iter()
            .filter_map(|r| match r.kind {
                RelocKind::Helper(h) => Some(h),
                _ => None,
            })
            .collect();
        assert_eq!(
            helpers,
            vec![MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_LOOKUP_ELEM]
        );
    }

    #[test]
    fn locals_assigned_inside_are_not_assigned_after() {
        let b = Builder::new("t");
        let x = b.local(ScalarType::U64);
        b.map_lookup(COUNTS, 1u32, |_, v| x.assign(v));
        let y = b.device("y", ScalarType::U64);
        y.assign(x);
        let e = b.finish().expect_err("x may be unassigned");
        assert!(
            matches!(
                e,
                super::super::super::BuildError::MaybeUninitialised { .. }
            ),
            "{e}"
        );
    }

    #[test]
    fn map_add_needs_a_wide_value() {
        let b = Builder::new("t");
        let m = MapRef {
            value: ScalarType::U16,
            ..COUNTS
        };
        b.map_add(m, 1u32, 1u32);
        let e = b.finish().expect_err("u16 atomic");
        assert!(e.to_string().contains("4- or 8-byte"), "{e}");
    }
}
