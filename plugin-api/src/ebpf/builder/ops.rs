//! `std::ops` for [`Var`] and [`Expr`] (and integer literals on either side), and `!` for
//! [`Cond`]: arithmetic builds expression trees.

use std::ops::{Add, BitAnd, BitOr, BitXor, Div, Mul, Neg, Not, Rem, Shl, Shr, Sub};

use super::ir::{BinOp, NodeKind};
use super::{Cond, Expr, IntoExpr, Var};

macro_rules! binops {
    ($($tr:ident $m:ident $op:ident;)*) => {$(
        impl<'b, R: IntoExpr<'b>> $tr<R> for Expr<'b> {
            type Output = Expr<'b>;
            fn $m(self, rhs: R) -> Expr<'b> {
                let r = rhs.into_expr(self.b);
                self.bin(BinOp::$op, r)
            }
        }
        impl<'b, R: IntoExpr<'b>> $tr<R> for Var<'b> {
            type Output = Expr<'b>;
            fn $m(self, rhs: R) -> Expr<'b> {
                let r = rhs.into_expr(self.b);
                self.get().bin(BinOp::$op, r)
            }
        }
        binops!(@lit $tr $m $op; i64 i32 u64 u32);
    )*};
    (@lit $tr:ident $m:ident $op:ident; $($t:ty)*) => {$(
        impl<'b> $tr<Expr<'b>> for $t {
            type Output = Expr<'b>;
            fn $m(self, rhs: Expr<'b>) -> Expr<'b> {
                let l = self.into_expr(rhs.b);
                l.bin(BinOp::$op, rhs)
            }
        }
        impl<'b> $tr<Var<'b>> for $t {
            type Output = Expr<'b>;
            fn $m(self, rhs: Var<'b>) -> Expr<'b> {
                let l = self.into_expr(rhs.b);
                l.bin(BinOp::$op, rhs.get())
            }
        }
    )*};
}

binops! {
    Add add Add;
    Sub sub Sub;
    Mul mul Mul;
    Div div Div;
    Rem rem Rem;
    Shl shl Shl;
    Shr shr Shr;
    BitAnd bitand And;
    BitOr bitor Or;
    BitXor bitxor Xor;
}

impl<'b> Neg for Expr<'b> {
    type Output = Expr<'b>;
    fn neg(self) -> Expr<'b> {
        self.unary(NodeKind::Neg(self.id))
    }
}

impl<'b> Neg for Var<'b> {
    type Output = Expr<'b>;
    fn neg(self) -> Expr<'b> {
        -self.get()
    }
}

impl<'b> Not for Expr<'b> {
    type Output = Expr<'b>;
    fn not(self) -> Expr<'b> {
        self.unary(NodeKind::Not(self.id))
    }
}

impl<'b> Not for Var<'b> {
    type Output = Expr<'b>;
    fn not(self) -> Expr<'b> {
        !self.get()
    }
}

impl<'b> Not for Cond<'b> {
    type Output = Cond<'b>;
    fn not(self) -> Cond<'b> {
        Cond::not(self)
    }
}
