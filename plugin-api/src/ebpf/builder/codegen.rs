//! Code generation: the builder's mutable state, register allocation, expression and
//! condition compilation, and the final layout (jump offsets, long jumps, relocations).

use std::panic::Location;

use super::BuildError;
use super::ir::{
    BinOp, BitPos, CondKind, CondNode, Node, NodeKind, Place, PlaceKind, Rel, fits_imm, normalise,
    swapped, terminal_window, value_bits,
};
use crate::ebpf::insn::{AluOp, AtomicOp, Endian, Insn, JmpCond, Reg, Size, Src};
use crate::fragment::{
    Fragment, MAX_STACK, PROLOGUE_STACK, RelocKind, Relocation, ScalarType, VarDecl,
};

#[path = "maps.rs"]
pub(crate) mod maps;

/// Registers the builder allocates (r8, r9, r10 belong to the ABI).
const ALLOCATABLE: usize = 8;
/// Registers that keep their value across helper calls.
const CALLEE_SAVED: [Reg; 2] = [Reg::R6, Reg::R7];
/// Stack offset of the cycle time the prologue stores (docs/fragment-abi.md).
const CYCLE_TIME_OFF: i16 = crate::fragment::CYCLE_TIME_SLOT;

/// A jump target; placed once.
pub(crate) type Label = usize;

/// One item of the code before layout.
#[derive(Clone, Debug)]
enum Item {
    Insn(Insn, Option<RelocKind>),
    /// Conditional jump to a label.
    Jmp {
        cond: JmpCond,
        dst: Reg,
        src: Src,
        label: Label,
        reloc: Option<RelocKind>,
    },
    /// Unconditional jump to a label.
    Ja(Label),
    Label(Label),
    /// Start / end of an `Optional` region (index into `regions`).
    RegionStart(usize),
    RegionEnd(usize),
}

/// Who holds a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegUse {
    Free,
    Local(u32),
    Temp(u32),
}

/// Where a temporary value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TempLoc {
    Reg(Reg),
    Stack(u32),
    Dead,
}

#[derive(Clone, Copy, Debug)]
struct Temp {
    loc: TempLoc,
    pinned: bool,
}

/// Storage of a local.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LocalStore {
    Reg(Reg),
    Stack(u32),
}

/// A local variable of the fragment.
#[derive(Clone, Debug)]
pub(crate) struct Local {
    pub(crate) ty: ScalarType,
    pub(crate) name: String,
    pub(crate) declared: &'static Location<'static>,
    pub(crate) store: LocalStore,
    pub(crate) alive: bool,
    /// How many writes to it were generated (on any path).
    pub(crate) writes: u32,
}

/// The result of compiling an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opnd {
    /// A constant.
    Imm(i64),
    /// A temporary the caller owns (and must free).
    Temp(u32),
    /// A local's register, read only.
    Borrowed(Reg),
}

/// A memory operand: base register, offset and the relocation of the offset.
#[derive(Clone, Debug)]
struct Mem {
    base: Reg,
    off: i16,
    reloc: Option<RelocKind>,
}

/// A bit field access: its window, byte order and position.
#[derive(Clone, Debug)]
struct BitAcc {
    mem: Mem,
    window: u32,
    be: bool,
    pos: BitPos,
    n: u32,
}

/// One `if` arm's end state for definite assignment.
#[derive(Clone, Debug)]
pub(crate) struct ArmEnd {
    pub(crate) reachable: bool,
    pub(crate) assigned: Vec<bool>,
}

/// What a cached register holds: a variable's value as reading it yields.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Place(PlaceKind, crate::fragment::VarType),
    CycleTime,
    /// The value of a computed expression node (forgotten at every store).
    Node(u32),
}

impl Key {
    fn is_packet(&self) -> bool {
        matches!(
            self,
            Key::Place(
                PlaceKind::Terminal { .. }
                    | PlaceKind::Packet { .. }
                    | PlaceKind::PacketBits { .. },
                _
            )
        )
    }
}

type Cache = Vec<(Reg, Key)>;

/// The facts both caches hold.
fn intersect(a: &Cache, b: &Cache) -> Cache {
    a.iter().filter(|e| b.contains(e)).cloned().collect()
}

/// The builder's state.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) nodes: Vec<Node>,
    /// Hash-consing of nodes: equal expressions share one node (and its cached value).
    pub(crate) node_ids: std::collections::HashMap<(NodeKind, bool), u32>,
    pub(crate) conds: Vec<CondNode>,
    pub(crate) places: Vec<Place>,
    pub(crate) decls: Vec<VarDecl>,
    pub(crate) locals: Vec<Local>,
    /// Definite assignment: which locals hold a value on every path to here.
    pub(crate) assigned: Vec<bool>,
    /// Locals declared per open scope.
    pub(crate) scopes: Vec<Vec<u32>>,
    code: Vec<Item>,
    labels: Vec<bool>,
    /// Registers known to hold a variable's value (straight-line code; at a label, the
    /// facts every incoming path agrees on).
    cache: Cache,
    /// Per label: the cache facts of the jumps to it so far.
    label_cache: Vec<Option<Cache>>,
    /// Cache facts at the start of each open `if_linked` region (the linker may delete
    /// the region, so its end is also reached from its start).
    region_cache: Vec<Cache>,
    /// Whether the current point can be reached (code after `exit` cannot).
    pub(crate) reachable: bool,
    regs: [RegUse; ALLOCATABLE],
    temps: Vec<Temp>,
    /// Stack slots (8 bytes each): whether in use.
    slots: Vec<bool>,
    max_slots: u32,
    /// Register of the local being assigned, usable for the result.
    reserved: Option<Reg>,
    /// Register of the local being assigned whose single read may become the result.
    inplace: Option<Reg>,
    pub(crate) errors: Vec<BuildError>,
    pub(crate) uses_cycle_time: bool,
    pub(crate) sets_verdict: bool,
    pub(crate) fixed_packet_len: u32,
    /// Terminal links of the `if_linked` regions we are in.
    pub(crate) linked: Vec<String>,
    regions: Vec<String>,
    pub(crate) end: Label,
    /// Where the statement being compiled was written.
    pub(crate) at: &'static Location<'static>,
    /// Counts statements, to detect code between an `if_` and its `else_`.
    pub(crate) stmt: u64,
}

impl Inner {
    pub(crate) fn new(name: &str) -> Inner {
        Inner {
            name: name.to_string(),
            nodes: Vec::new(),
            node_ids: std::collections::HashMap::new(),
            conds: Vec::new(),
            places: Vec::new(),
            decls: Vec::new(),
            locals: Vec::new(),
            assigned: Vec::new(),
            scopes: vec![Vec::new()],
            code: Vec::new(),
            labels: vec![false],
            cache: Vec::new(),
            label_cache: vec![None],
            region_cache: Vec::new(),
            reachable: true,
            regs: [RegUse::Free; ALLOCATABLE],
            temps: Vec::new(),
            slots: Vec::new(),
            max_slots: 0,
            reserved: None,
            inplace: None,
            errors: Vec::new(),
            uses_cycle_time: false,
            sets_verdict: false,
            fixed_packet_len: 0,
            linked: Vec::new(),
            regions: Vec::new(),
            end: 0,
            at: Location::caller(),
            stmt: 0,
        }
    }

    pub(crate) fn error(&mut self, e: BuildError) {
        self.errors.push(e);
    }

    // ---------------------------------------------------------------- emission

    fn emit(&mut self, insn: Insn) {
        self.emit_r(insn, None);
    }

    fn emit_r(&mut self, insn: Insn, reloc: Option<RelocKind>) {
        if self.reachable {
            self.track(&insn);
            self.code.push(Item::Insn(insn, reloc));
        }
    }

    /// Updates the cache for the registers `insn` writes.
    fn track(&mut self, insn: &Insn) {
        let written: &[Reg] = match insn {
            Insn::Alu { dst, .. }
            | Insn::Neg { dst, .. }
            | Insn::MovSx { dst, .. }
            | Insn::End { dst, .. }
            | Insn::Load { dst, .. }
            | Insn::LdImm64 { dst, .. }
            | Insn::LdMapFd { dst, .. }
            | Insn::LdMapValue { dst, .. } => &[*dst],
            Insn::Atomic { op, src, .. } => match op {
                AtomicOp::Add | AtomicOp::Or | AtomicOp::And | AtomicOp::Xor => &[],
                AtomicOp::CmpXchg => &[Reg::R0],
                _ => &[*src],
            },
            Insn::Call { .. } => &[Reg::R0, Reg::R1, Reg::R2, Reg::R3, Reg::R4, Reg::R5],
            Insn::Store { .. } | Insn::Ja { .. } | Insn::JaLong { .. } | Insn::Jmp { .. } => &[],
            Insn::Exit => &[],
        };
        let copied: Vec<Key> = match insn {
            Insn::Alu {
                op: AluOp::Mov,
                wide: true,
                src: Src::Reg(from),
                ..
            } => self
                .cache
                .iter()
                .filter(|(r, _)| r == from)
                .map(|(_, k)| k.clone())
                .collect(),
            _ => Vec::new(),
        };
        self.cache.retain(|(r, _)| !written.contains(r));
        if let Some(dst) = written.first() {
            let dst = *dst;
            for k in copied {
                self.remember(dst, k);
            }
        }
    }

    /// Forgets every register holding `key`'s variable (and, for packet memory, every
    /// packet variable: fields may share bytes).
    fn forget(&mut self, key: &Key) {
        let packet = key.is_packet();
        self.cache
            .retain(|(_, k)| k != key && !(packet && k.is_packet()) && !matches!(k, Key::Node(_)));
    }

    /// Notes that `r` holds `key`'s value (the cache keeps the most recent facts only).
    fn remember(&mut self, r: Reg, key: Key) {
        const CACHE_FACTS: usize = 32;
        self.cache.retain(|e| e.0 != r || e.1 != key);
        self.cache.push((r, key));
        if self.cache.len() > CACHE_FACTS {
            self.cache.remove(0);
        }
    }

    /// A register holding `key`'s value that no one uses, as a new temporary.
    fn cached(&mut self, key: &Key) -> Option<(u32, Reg)> {
        let r = self
            .cache
            .iter()
            .find(|(r, k)| k == key && self.regs[r.index() as usize] == RegUse::Free)
            .map(|(r, _)| *r)?;
        Some((self.new_temp(r), r))
    }

    fn alu(&mut self, op: AluOp, dst: Reg, src: Src) {
        self.emit(Insn::Alu {
            wide: true,
            op,
            dst,
            src,
        });
    }

    pub(crate) fn new_label(&mut self) -> Label {
        self.labels.push(false);
        self.label_cache.push(None);
        self.labels.len() - 1
    }

    /// Records a jump to `l` from here (reachable code only).
    fn jumps_to(&mut self, l: Label) {
        self.labels[l] = true;
        let merged = match self.label_cache[l].take() {
            None => self.cache.clone(),
            Some(c) => intersect(&c, &self.cache),
        };
        self.label_cache[l] = Some(merged);
    }

    /// Places `l` here; code after it is reachable if anything jumps to it.
    pub(crate) fn place(&mut self, l: Label) {
        self.code.push(Item::Label(l));
        let incoming = self.label_cache[l].take();
        self.cache = match (self.reachable, incoming) {
            (true, Some(c)) => intersect(&c, &self.cache),
            (true, None) => std::mem::take(&mut self.cache),
            (false, Some(c)) => c,
            (false, None) => Vec::new(),
        };
        if self.labels[l] {
            self.reachable = true;
        }
    }

    /// `goto l`; code after it is unreachable until a label is placed.
    pub(crate) fn jump(&mut self, l: Label) {
        if self.reachable {
            self.code.push(Item::Ja(l));
            self.jumps_to(l);
            self.reachable = false;
        }
    }

    fn jump_if(&mut self, cond: JmpCond, dst: Reg, src: Src, l: Label) {
        if self.reachable {
            self.code.push(Item::Jmp {
                cond,
                dst,
                src,
                label: l,
                reloc: None,
            });
            self.jumps_to(l);
        }
    }

    pub(crate) fn region_start(&mut self, link: &str) -> usize {
        self.regions.push(link.to_string());
        let r = self.regions.len() - 1;
        self.code.push(Item::RegionStart(r));
        self.region_cache.push(self.cache.clone());
        r
    }

    pub(crate) fn region_end(&mut self, r: usize) {
        self.code.push(Item::RegionEnd(r));
        let before = self.region_cache.pop().unwrap_or_default();
        self.cache = intersect(&before, &self.cache);
    }

    /// `r0 = verdict; goto end`.
    pub(crate) fn exit(&mut self, verdict: i32) {
        self.alu(AluOp::Mov, Reg::R0, Src::Imm(verdict));
        let end = self.end;
        self.jump(end);
        self.sets_verdict = true;
    }

    // ---------------------------------------------------------------- stack slots

    fn alloc_slot(&mut self) -> u32 {
        if let Some(i) = self.slots.iter().position(|u| !u) {
            self.slots[i] = true;
            return i as u32;
        }
        self.slots.push(true);
        let n = self.slots.len() as u32;
        self.max_slots = self.max_slots.max(n);
        n - 1
    }

    fn free_slot(&mut self, s: u32) {
        self.slots[s as usize] = false;
    }

    fn slot_mem(s: u32) -> Mem {
        Mem {
            base: Reg::R10,
            // Frames beyond the stack are refused by `finish`; never overflow here.
            off: (-8 * (i64::from(s) + 1)).max(i64::from(i16::MIN)) as i16,
            reloc: Some(RelocKind::Stack),
        }
    }

    // ---------------------------------------------------------------- registers

    /// A register for a new temporary: `want` if free, else the first free one (the
    /// reserved one last), else one freed by spilling a temporary to the stack.
    fn alloc_reg(&mut self, want: Option<Reg>) -> Reg {
        if let Some(w) = want
            && self.regs[w.index() as usize] == RegUse::Free
        {
            return w;
        }
        let free = |i: usize| self.regs[i] == RegUse::Free;
        if let Some(i) =
            (0..ALLOCATABLE).find(|&i| free(i) && Some(i as u8) != self.reserved.map(Reg::index))
        {
            return reg(i);
        }
        if let Some(r) = self.reserved
            && free(r.index() as usize)
        {
            return r;
        }
        // Spill the oldest unpinned temporary in a register.
        let victim = (0..self.temps.len())
            .find(|&t| !self.temps[t].pinned && matches!(self.temps[t].loc, TempLoc::Reg(_)));
        match victim {
            Some(t) => {
                let r = self.spill(t as u32);
                self.regs[r.index() as usize] = RegUse::Free;
                r
            }
            None => {
                let at = self.at;
                self.error(BuildError::TooComplex { at });
                Reg::R0
            }
        }
    }

    /// Moves temporary `t` from its register to a stack slot; returns the register.
    fn spill(&mut self, t: u32) -> Reg {
        let TempLoc::Reg(r) = self.temps[t as usize].loc else {
            return Reg::R0;
        };
        let s = self.alloc_slot();
        let m = Self::slot_mem(s);
        self.store_reg(Size::DW, &m, r);
        self.temps[t as usize].loc = TempLoc::Stack(s);
        self.regs[r.index() as usize] = RegUse::Free;
        r
    }

    fn new_temp(&mut self, r: Reg) -> u32 {
        let t = self.temps.len() as u32;
        self.temps.push(Temp {
            loc: TempLoc::Reg(r),
            pinned: false,
        });
        self.regs[r.index() as usize] = RegUse::Temp(t);
        t
    }

    fn alloc_temp(&mut self, want: Option<Reg>) -> (u32, Reg) {
        let r = self.alloc_reg(want);
        (self.new_temp(r), r)
    }

    /// The register holding temporary `t`, reloading it if it was spilled.
    fn ensure_reg(&mut self, t: u32) -> Reg {
        match self.temps[t as usize].loc {
            TempLoc::Reg(r) => r,
            TempLoc::Stack(s) => {
                let was = self.temps[t as usize].pinned;
                self.temps[t as usize].pinned = true;
                let r = self.alloc_reg(None);
                self.temps[t as usize].pinned = was;
                let m = Self::slot_mem(s);
                self.load(Size::DW, false, r, &m);
                self.free_slot(s);
                self.temps[t as usize].loc = TempLoc::Reg(r);
                self.regs[r.index() as usize] = RegUse::Temp(t);
                r
            }
            TempLoc::Dead => Reg::R0,
        }
    }

    fn free_temp(&mut self, t: u32) {
        match self.temps[t as usize].loc {
            TempLoc::Reg(r) => self.regs[r.index() as usize] = RegUse::Free,
            TempLoc::Stack(s) => self.free_slot(s),
            TempLoc::Dead => {}
        }
        self.temps[t as usize].loc = TempLoc::Dead;
        // Drop trailing dead temporaries so the victim search stays short.
        while self.temps.last().is_some_and(|t| t.loc == TempLoc::Dead) {
            self.temps.pop();
        }
    }

    fn free(&mut self, o: Opnd) {
        if let Opnd::Temp(t) = o {
            self.free_temp(t);
        }
    }

    fn pin(&mut self, o: Opnd, on: bool) {
        if let Opnd::Temp(t) = o {
            self.temps[t as usize].pinned = on;
        }
    }

    fn free_regs(&self) -> usize {
        self.regs.iter().filter(|r| **r == RegUse::Free).count()
    }

    /// Saves every temporary in r0–r5 before a helper call: into a free r6/r7, else on
    /// the stack.
    fn save_caller_saved(&mut self) {
        for i in 0..6 {
            if let RegUse::Temp(t) = self.regs[i] {
                let free = CALLEE_SAVED
                    .into_iter()
                    .find(|r| self.regs[r.index() as usize] == RegUse::Free);
                match free {
                    Some(to) => {
                        self.alu(AluOp::Mov, to, Src::Reg(reg(i)));
                        self.regs[i] = RegUse::Free;
                        self.regs[to.index() as usize] = RegUse::Temp(t);
                        self.temps[t as usize].loc = TempLoc::Reg(to);
                    }
                    None => {
                        self.spill(t);
                    }
                }
            }
        }
    }

    /// Allocates a local's storage: r6 or r7 if free, else a stack slot.
    pub(crate) fn local_store(&mut self, id: u32) -> LocalStore {
        for r in CALLEE_SAVED {
            if self.regs[r.index() as usize] == RegUse::Free {
                self.regs[r.index() as usize] = RegUse::Local(id);
                return LocalStore::Reg(r);
            }
        }
        LocalStore::Stack(self.alloc_slot())
    }

    /// Closes the innermost scope: its locals die and give back their storage.
    pub(crate) fn pop_scope(&mut self) {
        let Some(ids) = self.scopes.pop() else {
            return;
        };
        for id in ids {
            let l = &mut self.locals[id as usize];
            l.alive = false;
            match l.store {
                LocalStore::Reg(r) => self.regs[r.index() as usize] = RegUse::Free,
                LocalStore::Stack(s) => self.free_slot(s),
            }
        }
    }

    // ---------------------------------------------------------------- memory

    fn load(&mut self, size: Size, signed: bool, dst: Reg, m: &Mem) {
        self.emit_r(
            Insn::Load {
                size,
                signed: signed && size != Size::DW,
                dst,
                src: m.base,
                off: m.off,
            },
            m.reloc.clone(),
        );
    }

    fn store_reg(&mut self, size: Size, m: &Mem, src: Reg) {
        self.emit_r(
            Insn::Store {
                size,
                dst: m.base,
                off: m.off,
                src: Src::Reg(src),
            },
            m.reloc.clone(),
        );
    }

    fn store_imm(&mut self, size: Size, m: &Mem, imm: i32) {
        self.emit_r(
            Insn::Store {
                size,
                dst: m.base,
                off: m.off,
                src: Src::Imm(imm),
            },
            m.reloc.clone(),
        );
    }

    /// `dst = c` in the fewest slots.
    fn load_const(&mut self, dst: Reg, c: i64) {
        if fits_imm(c) {
            self.alu(AluOp::Mov, dst, Src::Imm(c as i32));
        } else if (0..=i64::from(u32::MAX)).contains(&c) {
            // A 32-bit move zero-extends.
            self.emit(Insn::Alu {
                wide: false,
                op: AluOp::Mov,
                dst,
                src: Src::Imm(c as u32 as i32),
            });
        } else {
            self.emit(Insn::LdImm64 { dst, imm: c });
        }
    }

    /// Byte-aligned memory of a place (not a local in a register, not a bit field).
    fn place_mem(&self, p: &Place) -> Option<Mem> {
        match &p.kind {
            PlaceKind::Terminal { decl, .. } => Some(Mem {
                base: Reg::R9,
                off: 0,
                reloc: Some(RelocKind::TerminalByte(*decl)),
            }),
            PlaceKind::Device { decl } => Some(Mem {
                base: Reg::R8,
                off: 0,
                reloc: Some(RelocKind::DeviceVar(*decl)),
            }),
            PlaceKind::Packet { offset } | PlaceKind::PacketBits { offset, .. } => Some(Mem {
                base: Reg::R9,
                off: *offset as i16,
                reloc: None,
            }),
            PlaceKind::Local(id) => match self.locals[*id as usize].store {
                LocalStore::Stack(s) => Some(Self::slot_mem(s)),
                LocalStore::Reg(_) => None,
            },
        }
    }

    /// The bit field access of a place, if it is a packet bit field.
    fn bit_acc(&self, p: &Place) -> Option<BitAcc> {
        let mem = self.place_mem(p)?;
        match &p.kind {
            PlaceKind::Terminal { decl, .. } if p.ty.scalar.is_bit_field() => {
                let n = value_bits(p.ty.scalar);
                Some(BitAcc {
                    mem,
                    window: terminal_window(n),
                    be: false,
                    pos: BitPos::Reloc(*decl),
                    n,
                })
            }
            PlaceKind::PacketBits { window, pos, .. } => Some(BitAcc {
                mem,
                window: *window,
                be: swapped(p.ty, *window),
                pos: BitPos::Known(*pos),
                n: value_bits(p.ty.scalar),
            }),
            _ => None,
        }
    }

    /// Checks that place `p` may be accessed here.
    fn check_access(&mut self, p: u32) {
        let place = &self.places[p as usize];
        if let PlaceKind::Terminal {
            optional: Some(link),
            ..
        } = &place.kind
            && !self.linked.contains(link)
        {
            let e = BuildError::OptionalOutsideIfLinked {
                var: place.name.clone(),
                link: link.clone(),
                at: self.at,
            };
            self.error(e);
        }
    }

    // ---------------------------------------------------------------- expressions

    fn owned(&mut self, o: Opnd, want: Option<Reg>) -> (u32, Reg) {
        match o {
            Opnd::Imm(c) => {
                let (t, r) = self.alloc_temp(want);
                self.load_const(r, c);
                (t, r)
            }
            Opnd::Borrowed(src) if want == Some(src) && self.inplace == Some(src) => {
                // The local's only read becomes the result computed in place.
                self.inplace = None;
                (self.new_temp(src), src)
            }
            Opnd::Borrowed(src) => {
                let (t, r) = self.alloc_temp(want);
                self.alu(AluOp::Mov, r, Src::Reg(src));
                (t, r)
            }
            Opnd::Temp(t) => (t, self.ensure_reg(t)),
        }
    }

    /// The operand as an instruction source: an immediate if it fits, else a register.
    fn src_of(&mut self, o: Opnd) -> (Src, Opnd) {
        match o {
            Opnd::Imm(c) if fits_imm(c) => (Src::Imm(c as i32), o),
            Opnd::Imm(_) => {
                let (t, r) = self.owned(o, None);
                (Src::Reg(r), Opnd::Temp(t))
            }
            Opnd::Borrowed(r) => (Src::Reg(r), o),
            Opnd::Temp(t) => (Src::Reg(self.ensure_reg(t)), o),
        }
    }

    /// The operand in a register (read only).
    fn reg_of(&mut self, o: Opnd) -> (Reg, Opnd) {
        match o {
            Opnd::Borrowed(r) => (r, o),
            Opnd::Temp(t) => (self.ensure_reg(t), o),
            Opnd::Imm(_) => {
                let (t, r) = self.owned(o, None);
                (r, Opnd::Temp(t))
            }
        }
    }

    /// Compiles two operands, the more demanding (or the one calling a helper) first.
    fn compile_pair(&mut self, a: u32, b: u32, want: Option<Reg>) -> (Opnd, Opnd) {
        let (na, nb) = (self.nodes[a as usize], self.nodes[b as usize]);
        let b_first = (nb.call && !na.call) || (nb.call == na.call && nb.need > na.need);
        // The first result may be spilled while the second is computed; `combine`
        // reloads it.
        if b_first {
            let ob = self.compile(b, None);
            let oa = self.compile(a, want);
            (oa, ob)
        } else {
            let oa = self.compile(a, want);
            let ob = self.compile(b, None);
            (oa, ob)
        }
    }

    /// Compiles expression node `n`; `want` is the preferred register of the result.
    pub(crate) fn compile(&mut self, n: u32, want: Option<Reg>) -> Opnd {
        let node = self.nodes[n as usize];
        let computed = matches!(
            node.kind,
            NodeKind::Bin(..)
                | NodeKind::Neg(_)
                | NodeKind::Not(_)
                | NodeKind::Abs(_)
                | NodeKind::MinMax { .. }
        ) && !node.call;
        if computed {
            if let Some((t, _)) = self.cached(&Key::Node(n)) {
                return Opnd::Temp(t);
            }
            let o = self.compile_node(n, node, want);
            if let Opnd::Temp(t) = o
                && let TempLoc::Reg(r) = self.temps[t as usize].loc
            {
                self.remember(r, Key::Node(n));
            }
            return o;
        }
        self.compile_node(n, node, want)
    }

    fn compile_node(&mut self, n: u32, node: Node, want: Option<Reg>) -> Opnd {
        let _ = n;
        match node.kind {
            NodeKind::Const(c) => Opnd::Imm(c),
            NodeKind::Same(a) => self.compile(a, want),
            NodeKind::Read(p) => self.read_place(p, want),
            NodeKind::CycleTime => {
                self.uses_cycle_time = true;
                if let Some((t, _)) = self.cached(&Key::CycleTime) {
                    return Opnd::Temp(t);
                }
                let (t, r) = self.alloc_temp(want);
                let m = Mem {
                    base: Reg::R10,
                    off: CYCLE_TIME_OFF,
                    reloc: None,
                };
                self.load(Size::DW, false, r, &m);
                self.remember(r, Key::CycleTime);
                Opnd::Temp(t)
            }
            NodeKind::Call(helper) => {
                self.save_caller_saved();
                self.emit_r(Insn::Call { helper: 0 }, Some(RelocKind::Helper(helper)));
                for i in 0..6 {
                    if let RegUse::Temp(_) = self.regs[i] {
                        // save_caller_saved emptied them; nothing may remain.
                        let at = self.at;
                        self.error(BuildError::TooComplex { at });
                    }
                }
                let t = self.new_temp(Reg::R0);
                Opnd::Temp(t)
            }
            NodeKind::Bin(op, a, b) => {
                let (oa, ob) = self.compile_pair(a, b, want);
                self.combine(op, node.signed, self.nodes[a as usize].signed, oa, ob, want)
            }
            NodeKind::Neg(a) => {
                let o = self.compile(a, want);
                let (t, r) = self.owned(o, want);
                self.emit(Insn::Neg { wide: true, dst: r });
                Opnd::Temp(t)
            }
            NodeKind::Not(a) => {
                let o = self.compile(a, want);
                let (t, r) = self.owned(o, want);
                self.alu(AluOp::Xor, r, Src::Imm(-1));
                Opnd::Temp(t)
            }
            NodeKind::Abs(a) => {
                let o = self.compile(a, want);
                let (t, r) = self.owned(o, want);
                let done = self.new_label();
                self.jump_if(JmpCond::SGe, r, Src::Imm(0), done);
                self.emit(Insn::Neg { wide: true, dst: r });
                self.place(done);
                Opnd::Temp(t)
            }
            NodeKind::MinMax { max, a, b } => {
                let (oa, ob) = self.compile_pair(a, b, want);
                let (oa, ob) = match (oa, ob) {
                    (Opnd::Imm(_), Opnd::Temp(_) | Opnd::Borrowed(_)) => (ob, oa),
                    _ => (oa, ob),
                };
                self.pin(ob, true);
                let (t, r) = self.owned(oa, want);
                self.pin(ob, false);
                let (src, ob) = self.src_of(ob);
                let keep = match (max, node.signed) {
                    (false, false) => JmpCond::Le,
                    (false, true) => JmpCond::SLe,
                    (true, false) => JmpCond::Ge,
                    (true, true) => JmpCond::SGe,
                };
                let done = self.new_label();
                self.jump_if(keep, r, src, done);
                self.alu(AluOp::Mov, r, src);
                self.place(done);
                self.free(ob);
                Opnd::Temp(t)
            }
            NodeKind::CondValue(c) => self.cond_value(c, want),
        }
    }

    /// `oa op ob`, consuming both.
    fn combine(
        &mut self,
        op: BinOp,
        signed: bool,
        left_signed: bool,
        oa: Opnd,
        ob: Opnd,
        want: Option<Reg>,
    ) -> Opnd {
        let alu = match op {
            BinOp::Add => AluOp::Add,
            BinOp::Sub => AluOp::Sub,
            BinOp::Mul => AluOp::Mul,
            BinOp::Div if signed => AluOp::SDiv,
            BinOp::Div => AluOp::Div,
            BinOp::Rem if signed => AluOp::SMod,
            BinOp::Rem => AluOp::Mod,
            BinOp::Shl => AluOp::Lsh,
            BinOp::Shr if left_signed => AluOp::Arsh,
            BinOp::Shr => AluOp::Rsh,
            BinOp::And => AluOp::And,
            BinOp::Or => AluOp::Or,
            BinOp::Xor => AluOp::Xor,
        };
        let (oa, ob) = match (oa, ob) {
            (Opnd::Imm(c), Opnd::Temp(_) | Opnd::Borrowed(_))
                if op.commutative() && fits_imm(c) =>
            {
                (ob, oa)
            }
            // Compute into the operand we own, or in place into the assigned local.
            (Opnd::Borrowed(_), Opnd::Temp(_)) if op.commutative() => (ob, oa),
            (_, Opnd::Borrowed(r))
                if op.commutative() && want == Some(r) && self.inplace == Some(r) =>
            {
                (ob, oa)
            }
            _ => (oa, ob),
        };
        let ob = match (op, ob) {
            (BinOp::Shl | BinOp::Shr, Opnd::Imm(c)) => Opnd::Imm(c & 63),
            _ => ob,
        };
        self.pin(ob, true);
        let (t, r) = self.owned(oa, want);
        self.pin(ob, false);
        let (src, ob) = self.src_of(ob);
        self.alu(alu, r, src);
        self.free(ob);
        Opnd::Temp(t)
    }

    /// Loads place `p` into a register (or borrows a local's register).
    fn read_place(&mut self, p: u32, want: Option<Reg>) -> Opnd {
        self.check_access(p);
        let place = self.places[p as usize].clone();
        if let PlaceKind::Local(id) = place.kind {
            let l = self.locals[id as usize].clone();
            if !l.alive {
                let e = BuildError::LocalOutOfScope {
                    local: l.name.clone(),
                    declared: l.declared,
                    at: self.at,
                };
                self.error(e);
                return Opnd::Imm(0);
            }
            if self.reachable && !self.assigned[id as usize] {
                let e = BuildError::MaybeUninitialised {
                    local: l.name.clone(),
                    declared: l.declared,
                    at: self.at,
                };
                self.error(e);
            }
            if let LocalStore::Reg(r) = l.store {
                return Opnd::Borrowed(r);
            }
        }
        let key = Key::Place(place.kind.clone(), place.ty);
        if let Some((t, _)) = self.cached(&key) {
            return Opnd::Temp(t);
        }
        if let Some(acc) = self.bit_acc(&place) {
            let (t, r) = self.alloc_temp(want);
            self.load_window(&acc, r);
            self.shift_pos(AluOp::Rsh, r, &acc);
            if !matches!(acc.pos, BitPos::Known(s) if s + acc.n >= acc.window * 8) {
                self.truncate(r, acc.n);
            }
            self.remember(r, key);
            return Opnd::Temp(t);
        }
        let Some(m) = self.place_mem(&place) else {
            return Opnd::Imm(0);
        };
        let scalar = place.ty.scalar;
        let bytes = scalar.memory_bytes();
        let size = Size::from_bytes(bytes).unwrap_or(Size::DW);
        let (t, r) = self.alloc_temp(want);
        if matches!(place.kind, PlaceKind::Local(_)) {
            self.load(Size::DW, false, r, &m);
        } else if place.is_packet() && swapped(place.ty, bytes) {
            self.load(size, false, r, &m);
            self.emit(Insn::End {
                op: Endian::ToBe,
                dst: r,
                bits: (bytes * 8) as u8,
            });
            if scalar.is_signed() && bytes < 8 {
                self.emit(Insn::MovSx {
                    wide: true,
                    dst: r,
                    src: r,
                    bits: (bytes * 8) as u8,
                });
            }
        } else {
            self.load(size, scalar.is_signed(), r, &m);
        }
        self.remember(r, key);
        Opnd::Temp(t)
    }

    /// Loads a bit field's window (converted to host order) into `r`.
    fn load_window(&mut self, acc: &BitAcc, r: Reg) {
        let size = Size::from_bytes(acc.window).unwrap_or(Size::DW);
        self.load(size, false, r, &acc.mem);
        self.window_order(acc, r);
    }

    fn window_order(&mut self, acc: &BitAcc, r: Reg) {
        if acc.be && acc.window > 1 {
            self.emit(Insn::End {
                op: Endian::ToBe,
                dst: r,
                bits: (acc.window * 8) as u8,
            });
        }
    }

    /// `r op= bit position` (`op` is Lsh or Rsh).
    fn shift_pos(&mut self, op: AluOp, r: Reg, acc: &BitAcc) {
        match acc.pos {
            BitPos::Known(0) => {}
            BitPos::Known(s) => self.alu(op, r, Src::Imm(s as i32)),
            BitPos::Reloc(d) => self.emit_r(
                Insn::Alu {
                    wide: true,
                    op,
                    dst: r,
                    src: Src::Imm(0),
                },
                Some(RelocKind::TerminalBitShift(d)),
            ),
        }
    }

    /// Keeps the low `n` bits of `r`.
    fn truncate(&mut self, r: Reg, n: u32) {
        if n >= 64 {
        } else if n <= 31 {
            self.alu(AluOp::And, r, Src::Imm(((1i64 << n) - 1) as i32));
        } else if n == 32 {
            self.emit(Insn::Alu {
                wide: false,
                op: AluOp::Mov,
                dst: r,
                src: Src::Reg(r),
            });
        } else {
            self.alu(AluOp::Lsh, r, Src::Imm(64 - n as i32));
            self.alu(AluOp::Rsh, r, Src::Imm(64 - n as i32));
        }
    }

    /// Normalises register `r` to scalar type `ty` (truncate, then extend).
    fn normalise_reg(&mut self, r: Reg, ty: ScalarType, bool01: bool) {
        match ty {
            ScalarType::U64 | ScalarType::I64 => {}
            ScalarType::U8 => self.truncate(r, 8),
            ScalarType::U16 => self.truncate(r, 16),
            ScalarType::U32 => self.truncate(r, 32),
            ScalarType::I8 | ScalarType::I16 | ScalarType::I32 => self.emit(Insn::MovSx {
                wide: true,
                dst: r,
                src: r,
                bits: ty.packet_bits() as u8,
            }),
            ScalarType::Bool => {
                if !bool01 {
                    let done = self.new_label();
                    self.jump_if(JmpCond::Eq, r, Src::Imm(0), done);
                    self.alu(AluOp::Mov, r, Src::Imm(1));
                    self.place(done);
                }
            }
            ScalarType::Bits(n) => self.truncate(r, u32::from(n)),
        }
    }

    /// 1 or 0 as a condition holds, in a register.
    fn cond_value(&mut self, c: u32, want: Option<Reg>) -> Opnd {
        let cn = self.conds[c as usize];
        if let CondKind::Const(v) = cn.kind {
            return Opnd::Imm(i64::from(v));
        }
        // Every temporary live now must stay where it is across the condition's jumps:
        // save or spill what the condition could disturb before the first jump, then pin.
        let need = usize::from(cn.need) + 1;
        if cn.call {
            self.save_caller_saved();
        } else if self.free_regs() < need {
            // Under pressure, move everything movable out of the way now, once.
            for t in 0..self.temps.len() {
                if !self.temps[t].pinned && matches!(self.temps[t].loc, TempLoc::Reg(_)) {
                    self.spill(t as u32);
                }
            }
        }
        let pinned: Vec<usize> = (0..self.temps.len())
            .filter(|&t| !self.temps[t].pinned && self.temps[t].loc != TempLoc::Dead)
            .collect();
        for &t in &pinned {
            self.temps[t].pinned = true;
        }
        let out = if cn.call {
            let yes = self.new_label();
            let done = self.new_label();
            self.branch(c, yes, true);
            let (t, r) = self.alloc_temp(want);
            self.alu(AluOp::Mov, r, Src::Imm(0));
            self.jump(done);
            self.place(yes);
            self.alu(AluOp::Mov, r, Src::Imm(1));
            self.place(done);
            t
        } else if self.free_regs() >= need {
            let (t, r) = self.alloc_temp(want);
            self.temps[t as usize].pinned = true;
            self.alu(AluOp::Mov, r, Src::Imm(1));
            let done = self.new_label();
            self.branch(c, done, true);
            self.alu(AluOp::Mov, r, Src::Imm(0));
            self.place(done);
            self.temps[t as usize].pinned = false;
            t
        } else {
            // Registers are scarce (nested conditions): the result lives on the stack,
            // where nothing moves it, and the condition keeps every register.
            let s = self.alloc_slot();
            let t = self.temps.len() as u32;
            self.temps.push(Temp {
                loc: TempLoc::Stack(s),
                pinned: true,
            });
            let m = Self::slot_mem(s);
            self.store_imm(Size::DW, &m, 1);
            let done = self.new_label();
            self.branch(c, done, true);
            self.store_imm(Size::DW, &m, 0);
            self.place(done);
            self.temps[t as usize].pinned = false;
            t
        };
        for t in pinned {
            if t < self.temps.len() {
                self.temps[t].pinned = false;
            }
        }
        Opnd::Temp(out)
    }

    // ---------------------------------------------------------------- conditions

    /// Jumps to `target` if condition `c` is `jump_if`; falls through otherwise.
    pub(crate) fn branch(&mut self, c: u32, target: Label, jump_if: bool) {
        let cn = self.conds[c as usize];
        match cn.kind {
            CondKind::Const(v) => {
                if v == jump_if {
                    self.jump(target);
                }
            }
            CondKind::Not(x) => self.branch(x, target, !jump_if),
            CondKind::And(x, y) => {
                if jump_if {
                    let skip = self.new_label();
                    self.branch(x, skip, false);
                    self.branch(y, target, true);
                    self.place(skip);
                } else {
                    self.branch(x, target, false);
                    self.branch(y, target, false);
                }
            }
            CondKind::Or(x, y) => {
                if jump_if {
                    self.branch(x, target, true);
                    self.branch(y, target, true);
                } else {
                    let skip = self.new_label();
                    self.branch(x, skip, true);
                    self.branch(y, target, false);
                    self.place(skip);
                }
            }
            CondKind::Cmp(rel, a, b) => {
                let signed = self.nodes[a as usize].signed || self.nodes[b as usize].signed;
                let (oa, ob) = self.compile_pair(a, b, None);
                let (oa, ob, rel) = match (oa, ob) {
                    (Opnd::Imm(_), Opnd::Temp(_) | Opnd::Borrowed(_)) => (ob, oa, swap(rel)),
                    _ => (oa, ob, rel),
                };
                let mut cond = jmp_cond(rel, signed);
                if !jump_if {
                    cond = cond.negate().unwrap_or(cond);
                }
                self.pin(ob, true);
                let (dst, oa) = self.reg_of(oa);
                self.pin(oa, true);
                let (src, ob) = self.src_of(ob);
                self.pin(oa, false);
                self.pin(ob, false);
                self.jump_if(cond, dst, src, target);
                self.free(oa);
                self.free(ob);
            }
            CondKind::Truthy(e) => {
                let o = self.compile(e, None);
                if let Opnd::Imm(v) = o {
                    if (v != 0) == jump_if {
                        self.jump(target);
                    }
                    return;
                }
                let (r, o) = self.reg_of(o);
                let cond = if jump_if { JmpCond::Ne } else { JmpCond::Eq };
                self.jump_if(cond, r, Src::Imm(0), target);
                self.free(o);
            }
            CondKind::BitSet(p) => {
                self.check_access(p);
                let place = self.places[p as usize].clone();
                let Some(acc) = self.bit_acc(&place) else {
                    return;
                };
                let (t, r) = self.alloc_temp(None);
                self.load_window(&acc, r);
                let (imm, reloc) = match acc.pos {
                    BitPos::Known(s) => ((1u64 << s) as u32 as i32, None),
                    BitPos::Reloc(d) => (0, Some(RelocKind::TerminalBitMask(d))),
                };
                let jset = |target| Item::Jmp {
                    cond: JmpCond::Set,
                    dst: r,
                    src: Src::Imm(imm),
                    label: target,
                    reloc: None,
                };
                if jump_if {
                    self.push_reloc_jump(jset(target), reloc, target);
                } else {
                    // jset cannot be inverted: mask, then jump if nothing is left.
                    self.emit_r(
                        Insn::Alu {
                            wide: true,
                            op: AluOp::And,
                            dst: r,
                            src: Src::Imm(imm),
                        },
                        reloc,
                    );
                    self.jump_if(JmpCond::Eq, r, Src::Imm(0), target);
                }
                self.free_temp(t);
            }
        }
    }

    /// A conditional jump whose `imm` may carry a relocation.
    fn push_reloc_jump(&mut self, item: Item, reloc: Option<RelocKind>, target: Label) {
        if !self.reachable {
            return;
        }
        self.jumps_to(target);
        let item = match item {
            Item::Jmp {
                cond,
                dst,
                src,
                label,
                ..
            } => Item::Jmp {
                cond,
                dst,
                src,
                label,
                reloc,
            },
            other => other,
        };
        self.code.push(item);
    }
}

fn reg(i: usize) -> Reg {
    Reg::new(i as u8).unwrap_or(Reg::R0)
}

fn swap(rel: Rel) -> Rel {
    match rel {
        Rel::Eq | Rel::Ne => rel,
        Rel::Gt => Rel::Lt,
        Rel::Lt => Rel::Gt,
        Rel::Ge => Rel::Le,
        Rel::Le => Rel::Ge,
    }
}

fn jmp_cond(rel: Rel, signed: bool) -> JmpCond {
    match (rel, signed) {
        (Rel::Eq, _) => JmpCond::Eq,
        (Rel::Ne, _) => JmpCond::Ne,
        (Rel::Gt, false) => JmpCond::Gt,
        (Rel::Gt, true) => JmpCond::SGt,
        (Rel::Ge, false) => JmpCond::Ge,
        (Rel::Ge, true) => JmpCond::SGe,
        (Rel::Lt, false) => JmpCond::Lt,
        (Rel::Lt, true) => JmpCond::SLt,
        (Rel::Le, false) => JmpCond::Le,
        (Rel::Le, true) => JmpCond::SLe,
    }
}

/// Statements and the final layout.
impl Inner {
    /// How often expression `n` reads local `id` (2 means "more than once").
    fn count_reads(&self, n: u32, id: u32) -> u32 {
        let c = match self.nodes[n as usize].kind {
            NodeKind::Read(p) => u32::from(self.places[p as usize].kind == PlaceKind::Local(id)),
            NodeKind::Bin(_, a, b) => self.count_reads(a, id) + self.count_reads(b, id),
            // Both operands stay live across the compare: never in place.
            NodeKind::MinMax { a, b, .. } => {
                2 * (self.count_reads(a, id) + self.count_reads(b, id))
            }
            NodeKind::Neg(a) | NodeKind::Not(a) | NodeKind::Abs(a) | NodeKind::Same(a) => {
                self.count_reads(a, id)
            }
            NodeKind::CondValue(c) => 2 * self.cond_reads(c, id),
            NodeKind::Const(_) | NodeKind::Call(_) | NodeKind::CycleTime => 0,
        };
        c.min(2)
    }

    fn cond_reads(&self, c: u32, id: u32) -> u32 {
        let c = match self.conds[c as usize].kind {
            CondKind::Const(_) | CondKind::BitSet(_) => 0,
            CondKind::Cmp(_, a, b) => self.count_reads(a, id) + self.count_reads(b, id),
            CondKind::And(x, y) | CondKind::Or(x, y) => {
                self.cond_reads(x, id) + self.cond_reads(y, id)
            }
            CondKind::Not(x) => self.cond_reads(x, id),
            CondKind::Truthy(e) => self.count_reads(e, id),
        };
        c.min(2)
    }

    /// Reports a dead local; returns whether it is alive.
    fn check_alive(&mut self, id: u32) -> bool {
        let l = &self.locals[id as usize];
        if l.alive {
            return true;
        }
        let e = BuildError::LocalOutOfScope {
            local: l.name.clone(),
            declared: l.declared,
            at: self.at,
        };
        self.error(e);
        false
    }

    /// `place = expression`.
    pub(crate) fn assign(&mut self, p: u32, e: u32) {
        self.check_access(p);
        let place = self.places[p as usize].clone();
        let node = self.nodes[e as usize];
        let scalar = place.ty.scalar;
        let key = Key::Place(place.kind.clone(), place.ty);
        if let PlaceKind::Local(id) = place.kind {
            if !self.check_alive(id) {
                return;
            }
            self.locals[id as usize].writes += 1;
            match self.locals[id as usize].store {
                LocalStore::Reg(r) => self.assign_reg_local(id, r, e),
                LocalStore::Stack(s) => {
                    let m = Self::slot_mem(s);
                    if let NodeKind::Const(c) = node.kind {
                        self.forget(&key);
                        self.store_const(Size::DW, &m, normalise(scalar, c));
                    } else {
                        let o = self.compile(e, None);
                        self.forget(&key);
                        if needs_normalising(scalar, node.bool01) {
                            let (t, r) = self.owned(o, None);
                            self.normalise_reg(r, scalar, node.bool01);
                            self.store_reg(Size::DW, &m, r);
                            self.remember(r, key);
                            self.free_temp(t);
                        } else {
                            let (r, o) = self.reg_of(o);
                            self.store_reg(Size::DW, &m, r);
                            self.remember(r, key);
                            self.free(o);
                        }
                    }
                }
            }
            if self.reachable {
                self.assigned[id as usize] = true;
            }
            return;
        }
        if let Some(acc) = self.bit_acc(&place) {
            self.write_bits(&acc, scalar, e);
            self.forget(&key);
            return;
        }
        let Some(m) = self.place_mem(&place) else {
            return;
        };
        let bytes = scalar.memory_bytes();
        let size = Size::from_bytes(bytes).unwrap_or(Size::DW);
        let be = place.is_packet() && swapped(place.ty, bytes);
        if let NodeKind::Const(c) = node.kind {
            let mut v = normalise(scalar, c);
            if be {
                v = match bytes {
                    2 => i64::from((v as u16).swap_bytes()),
                    4 => i64::from((v as u32).swap_bytes()),
                    _ => (v as u64).swap_bytes() as i64,
                };
            }
            self.forget(&key);
            self.store_const(size, &m, v);
            return;
        }
        let o = self.compile(e, None);
        self.forget(&key);
        let bool_fix = scalar == ScalarType::Bool && !node.bool01;
        if be || bool_fix {
            let (t, r) = self.owned(o, None);
            if bool_fix {
                self.normalise_reg(r, scalar, false);
            }
            if be {
                self.emit(Insn::End {
                    op: Endian::ToBe,
                    dst: r,
                    bits: (bytes * 8) as u8,
                });
            }
            self.store_reg(size, &m, r);
            self.free_temp(t);
        } else {
            let (r, o) = self.reg_of(o);
            self.store_reg(size, &m, r);
            if size == Size::DW {
                // A 64-bit variable reads back exactly what was stored.
                self.remember(r, key);
            }
            self.free(o);
        }
    }

    /// Stores constant `v` (already in memory order) with an immediate if possible.
    fn store_const(&mut self, size: Size, m: &Mem, v: i64) {
        if size != Size::DW || fits_imm(v) {
            self.store_imm(size, m, v as i32);
        } else {
            let (t, r) = self.alloc_temp(None);
            self.load_const(r, v);
            self.store_reg(size, m, r);
            self.free_temp(t);
        }
    }

    /// `local = e` for a local living in register `r`: computes straight into `r` when
    /// `e` does not read the local.
    fn assign_reg_local(&mut self, id: u32, r: Reg, e: u32) {
        let node = self.nodes[e as usize];
        // Computed values may depend on the local's old value.
        self.cache.retain(|(_, k)| !matches!(k, Key::Node(_)));
        let scalar = self.locals[id as usize].ty;
        if let NodeKind::Const(c) = node.kind {
            self.load_const(r, normalise(scalar, c));
            return;
        }
        let ri = r.index() as usize;
        let reads = self.count_reads(e, id);
        if reads == 0 {
            self.regs[ri] = RegUse::Free;
            self.reserved = Some(r);
        } else if reads == 1 {
            self.inplace = Some(r);
        }
        let o = self.compile(e, Some(r));
        match o {
            Opnd::Imm(c) => self.load_const(r, normalise(scalar, c)),
            Opnd::Borrowed(src) => {
                if src != r {
                    self.alu(AluOp::Mov, r, Src::Reg(src));
                }
            }
            Opnd::Temp(t) => {
                let tr = self.ensure_reg(t);
                if tr != r {
                    self.alu(AluOp::Mov, r, Src::Reg(tr));
                }
                self.free_temp(t);
            }
        }
        self.reserved = None;
        self.inplace = None;
        self.regs[ri] = RegUse::Local(id);
        // Values computed from the local's old value (in this statement) are stale now.
        self.cache.retain(|(_, k)| !matches!(k, Key::Node(_)));
        if !matches!(o, Opnd::Imm(_)) && needs_normalising(scalar, node.bool01) {
            self.normalise_reg(r, scalar, node.bool01);
        }
    }

    /// Writes expression `e` into a packet bit field.
    fn write_bits(&mut self, acc: &BitAcc, scalar: ScalarType, e: u32) {
        let n = acc.n;
        let mask_n: u64 = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        let node = self.nodes[e as usize];
        let size = Size::from_bytes(acc.window).unwrap_or(Size::DW);
        let small = acc.window <= 4;
        let known_imm = |v: u64, s: u32| (v << s) as u32 as i32;
        let clear = |this: &mut Inner, w: Reg| match acc.pos {
            BitPos::Known(s) => this.alu(AluOp::And, w, Src::Imm(!known_imm(mask_n, s))),
            BitPos::Reloc(d) => this.emit_r(
                Insn::Alu {
                    wide: true,
                    op: AluOp::And,
                    dst: w,
                    src: Src::Imm(0),
                },
                Some(RelocKind::TerminalBitClear(d)),
            ),
        };
        if let (NodeKind::Const(c), true) = (node.kind, small) {
            let c = (normalise(scalar, c) as u64) & mask_n;
            let (tw, w) = self.alloc_temp(None);
            self.load_window(acc, w);
            if c == mask_n {
                match acc.pos {
                    BitPos::Known(s) => self.alu(AluOp::Or, w, Src::Imm(known_imm(mask_n, s))),
                    BitPos::Reloc(d) => self.emit_r(
                        Insn::Alu {
                            wide: true,
                            op: AluOp::Or,
                            dst: w,
                            src: Src::Imm(0),
                        },
                        Some(RelocKind::TerminalBitMask(d)),
                    ),
                }
            } else {
                clear(self, w);
                if c != 0 {
                    match acc.pos {
                        BitPos::Known(s) => self.alu(AluOp::Or, w, Src::Imm(known_imm(c, s))),
                        BitPos::Reloc(_) => {
                            let (tv, v) = self.alloc_temp(None);
                            self.load_const(v, c as i64);
                            self.shift_pos(AluOp::Lsh, v, acc);
                            self.alu(AluOp::Or, w, Src::Reg(v));
                            self.free_temp(tv);
                        }
                    }
                }
            }
            self.window_order(acc, w);
            self.store_reg(size, &acc.mem, w);
            self.free_temp(tw);
            return;
        }
        let o = self.compile(e, None);
        let (tv, v) = self.owned(o, None);
        self.temps[tv as usize].pinned = true;
        if small {
            if scalar == ScalarType::Bool {
                self.normalise_reg(v, scalar, node.bool01);
            } else {
                self.truncate(v, n);
            }
            self.shift_pos(AluOp::Lsh, v, acc);
            let (tw, w) = self.alloc_temp(None);
            self.load_window(acc, w);
            clear(self, w);
            let v = self.ensure_reg(tv);
            self.alu(AluOp::Or, w, Src::Reg(v));
            self.window_order(acc, w);
            self.store_reg(size, &acc.mem, w);
            self.free_temp(tw);
        } else {
            // w ^= (((w >> pos) ^ v) & mask) << pos: no mask that needs 64 bits.
            let (tw, w) = self.alloc_temp(None);
            self.temps[tw as usize].pinned = true;
            self.load_window(acc, w);
            let (tt, t) = self.alloc_temp(None);
            let v = self.ensure_reg(tv);
            let w = self.ensure_reg(tw);
            self.alu(AluOp::Mov, t, Src::Reg(w));
            self.shift_pos(AluOp::Rsh, t, acc);
            self.alu(AluOp::Xor, t, Src::Reg(v));
            self.truncate(t, n);
            self.shift_pos(AluOp::Lsh, t, acc);
            self.alu(AluOp::Xor, w, Src::Reg(t));
            self.window_order(acc, w);
            self.store_reg(size, &acc.mem, w);
            self.free_temp(tt);
            self.free_temp(tw);
        }
        self.free_temp(tv);
    }

    /// A read-modify-write of a (foreign) device variable: `op` with operand `e`;
    /// returns the temporary holding the old value for fetching operations.
    pub(crate) fn atomic_device(&mut self, p: u32, op: AtomicOp, e: u32) -> Option<u32> {
        let place = self.places[p as usize].clone();
        let m = self.place_mem(&place)?;
        let size = Size::from_bytes(place.ty.scalar.memory_bytes()).unwrap_or(Size::DW);
        let o = self.compile(e, None);
        self.forget(&Key::Place(place.kind.clone(), place.ty));
        let fetch = !matches!(
            op,
            AtomicOp::Add | AtomicOp::Or | AtomicOp::And | AtomicOp::Xor
        );
        let (src, o) = if fetch {
            let (t, r) = self.owned(o, None);
            (r, Opnd::Temp(t))
        } else {
            self.reg_of(o)
        };
        self.emit_r(
            Insn::Atomic {
                size,
                op,
                dst: m.base,
                src,
                off: m.off,
            },
            m.reloc.clone(),
        );
        if !fetch {
            self.free(o);
            return None;
        }
        if place.ty.scalar.is_signed() && size == Size::W {
            self.emit(Insn::MovSx {
                wide: true,
                dst: src,
                src,
                bits: 32,
            });
        }
        match o {
            Opnd::Temp(t) => Some(t),
            _ => None,
        }
    }

    /// `r0 = cmpxchg(device variable p, expected, new)`; returns the temporary holding
    /// the old value.
    pub(crate) fn cmpxchg_device(&mut self, p: u32, expected: u32, new: u32) -> Option<u32> {
        let place = self.places[p as usize].clone();
        let m = self.place_mem(&place)?;
        let size = Size::from_bytes(place.ty.scalar.memory_bytes()).unwrap_or(Size::DW);
        let oe = self.compile(expected, Some(Reg::R0));
        let (te, _) = self.owned(oe, Some(Reg::R0));
        self.temps[te as usize].pinned = true;
        let on = self.compile(new, None);
        let (_, on) = self.reg_of(on);
        self.pin(on, true);
        let re = self.ensure_reg(te);
        if re != Reg::R0 {
            match self.regs[0] {
                RegUse::Temp(x) if Opnd::Temp(x) == on => {
                    let r2 = self.alloc_reg(None);
                    self.alu(AluOp::Mov, r2, Src::Reg(Reg::R0));
                    self.regs[r2.index() as usize] = RegUse::Temp(x);
                    self.temps[x as usize].loc = TempLoc::Reg(r2);
                }
                RegUse::Temp(x) => {
                    self.spill(x);
                }
                _ => {}
            }
            self.alu(AluOp::Mov, Reg::R0, Src::Reg(re));
            self.regs[re.index() as usize] = RegUse::Free;
            self.regs[0] = RegUse::Temp(te);
            self.temps[te as usize].loc = TempLoc::Reg(Reg::R0);
        }
        let (rn, on) = self.reg_of(on);
        self.forget(&Key::Place(place.kind.clone(), place.ty));
        self.emit_r(
            Insn::Atomic {
                size,
                op: AtomicOp::CmpXchg,
                dst: m.base,
                src: rn,
                off: m.off,
            },
            m.reloc.clone(),
        );
        self.pin(on, false);
        self.free(on);
        self.temps[te as usize].pinned = false;
        if place.ty.scalar.is_signed() && size == Size::W {
            self.emit(Insn::MovSx {
                wide: true,
                dst: Reg::R0,
                src: Reg::R0,
                bits: 32,
            });
        }
        Some(te)
    }

    /// Stores temporary `t` into local `id` (which is assigned from now on) and frees it.
    pub(crate) fn temp_into_local(&mut self, t: u32, id: u32) {
        self.locals[id as usize].writes += 1;
        let r = self.ensure_reg(t);
        match self.locals[id as usize].store {
            LocalStore::Reg(lr) => {
                if lr != r {
                    self.alu(AluOp::Mov, lr, Src::Reg(r));
                }
            }
            LocalStore::Stack(s) => {
                let m = Self::slot_mem(s);
                let key = Key::Place(
                    PlaceKind::Local(id),
                    crate::fragment::VarType::le(self.locals[id as usize].ty),
                );
                self.forget(&key);
                self.store_reg(Size::DW, &m, r);
            }
        }
        self.free_temp(t);
        if self.reachable {
            self.assigned[id as usize] = true;
        }
    }

    /// Lays the code out: resolves labels, widens out-of-range conditional jumps into an
    /// inverted jump around a `gotol`, and collects relocations.
    pub(crate) fn finish(mut self) -> Result<Fragment, BuildError> {
        if let Some(e) = self.errors.first() {
            return Err(e.clone());
        }
        let end = self.end;
        self.reachable = true;
        self.place(end);
        let frame_size = self.max_slots * 8;
        let stack = frame_size + PROLOGUE_STACK as u32;
        if stack > MAX_STACK {
            return Err(BuildError::StackTooLarge {
                fragment: self.name.clone(),
                bytes: stack,
            });
        }
        self.drop_jumps_to_next();
        let n = self.code.len();
        let mut long = vec![false; n];
        let mut addr = vec![0usize; n + 1];
        let mut label_addr = vec![0usize; self.labels.len()];
        loop {
            let mut a = 0;
            for (i, it) in self.code.iter().enumerate() {
                addr[i] = a;
                a += match it {
                    Item::Insn(x, _) => x.slots(),
                    Item::Jmp { cond, .. } if long[i] => {
                        if cond.negate().is_some() {
                            2
                        } else {
                            3
                        }
                    }
                    Item::Jmp { .. } | Item::Ja(_) => 1,
                    Item::Label(l) => {
                        label_addr[*l] = a;
                        0
                    }
                    Item::RegionStart(_) | Item::RegionEnd(_) => 0,
                };
            }
            addr[n] = a;
            let mut changed = false;
            for (i, it) in self.code.iter().enumerate() {
                if let Item::Jmp { label, .. } = it
                    && !long[i]
                {
                    let off = label_addr[*label] as i64 - (addr[i] as i64 + 1);
                    if i16::try_from(off).is_err() {
                        long[i] = true;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut out = Vec::with_capacity(addr[n]);
        let mut relocs = Vec::new();
        let mut region_start = vec![0usize; self.regions.len()];
        let too_far = |fragment: &str| BuildError::JumpTooFar {
            fragment: fragment.to_string(),
        };
        for (i, it) in self.code.iter().enumerate() {
            let at = addr[i];
            let rel = |target: usize, from: usize| target as i64 - from as i64;
            match it {
                Item::Insn(x, r) => {
                    if let Some(k) = r {
                        relocs.push(Relocation {
                            insn: at as u32,
                            kind: k.clone(),
                        });
                    }
                    x.encode(&mut out);
                }
                Item::Jmp {
                    cond,
                    dst,
                    src,
                    label,
                    reloc,
                } => {
                    if let Some(k) = reloc {
                        relocs.push(Relocation {
                            insn: at as u32,
                            kind: k.clone(),
                        });
                    }
                    let target = label_addr[*label];
                    let jmp = |cond, off| Insn::Jmp {
                        wide: true,
                        cond,
                        dst: *dst,
                        src: *src,
                        off,
                    };
                    if !long[i] {
                        let off =
                            i16::try_from(rel(target, at + 1)).map_err(|_| too_far(&self.name))?;
                        jmp(*cond, off).encode(&mut out);
                    } else if let Some(neg) = cond.negate() {
                        jmp(neg, 1).encode(&mut out);
                        let imm =
                            i32::try_from(rel(target, at + 2)).map_err(|_| too_far(&self.name))?;
                        Insn::JaLong { imm }.encode(&mut out);
                    } else {
                        jmp(*cond, 1).encode(&mut out);
                        Insn::Ja { off: 1 }.encode(&mut out);
                        let imm =
                            i32::try_from(rel(target, at + 3)).map_err(|_| too_far(&self.name))?;
                        Insn::JaLong { imm }.encode(&mut out);
                    }
                }
                Item::Ja(label) => {
                    let d = rel(label_addr[*label], at + 1);
                    match i16::try_from(d) {
                        Ok(off) => Insn::Ja { off }.encode(&mut out),
                        Err(_) => {
                            let imm = i32::try_from(d).map_err(|_| too_far(&self.name))?;
                            Insn::JaLong { imm }.encode(&mut out);
                        }
                    }
                }
                Item::Label(_) => {}
                Item::RegionStart(r) => region_start[*r] = at,
                Item::RegionEnd(r) => {
                    let start = region_start[*r];
                    if at > start {
                        relocs.push(Relocation {
                            insn: start as u32,
                            kind: RelocKind::Optional {
                                link: self.regions[*r].clone(),
                                len: (at - start) as u32,
                            },
                        });
                    }
                }
            }
        }
        Ok(Fragment {
            name: self.name,
            uses_cycle_time: self.uses_cycle_time,
            sets_verdict: self.sets_verdict,
            frame_size,
            fixed_packet_len: self.fixed_packet_len,
            vars: self.decls,
            insns: out,
            relocs,
        })
    }
}

impl Inner {
    /// Removes every `goto` whose target label follows it with only labels between.
    fn drop_jumps_to_next(&mut self) {
        let mut keep = vec![true; self.code.len()];
        for (i, it) in self.code.iter().enumerate() {
            if let Item::Ja(l) = it {
                let mut j = i + 1;
                while let Some(Item::Label(k)) = self.code.get(j) {
                    if k == l {
                        keep[i] = false;
                        break;
                    }
                    j += 1;
                }
            }
        }
        let mut k = keep.into_iter();
        self.code.retain(|_| k.next().unwrap_or(true));
    }
}

/// Whether storing a value of this type into a 64-bit local needs code.
fn needs_normalising(ty: ScalarType, bool01: bool) -> bool {
    match ty {
        ScalarType::U64 | ScalarType::I64 => false,
        ScalarType::Bool => !bool01,
        _ => true,
    }
}
