//! The syntax tree the parser builds and the renderer walks.
//!
//! Entry point: [`crate::parser::parse`] returns a [`Block`]. Nodes carry a
//! [`Pos`] (1-based line and column) so that runtime errors can point at the
//! template source.
//!
//! ```text
//! Block = Vec<Node>
//! Node  = Text | Ref(Reference) | Set | If | Foreach | Define | Macro call | Break | Stop
//! Reference = $[!][{]name (.prop | .method(args) | [index])*[}]
//! Expr  = literal | Interp(Block) | Ref | List | Map | Range | Unary | Binary
//! ```

use std::fmt;
use std::sync::Arc;

/// A 1-based line and column in the template source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A sequence of nodes rendered one after the other.
pub type Block = Vec<Node>;

/// One element of a template body.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Literal text, emitted as-is.
    Text(String),
    /// A reference whose value is rendered (`$x`, `$!x`, `${x.y}`).
    Ref(Reference),
    /// `#set($target = value)`.
    Set {
        /// Where the directive starts.
        pos: Pos,
        /// The left-hand side.
        target: Reference,
        /// The right-hand side.
        value: Expr,
    },
    /// `#if(..) .. #elseif(..) .. #else .. #end`.
    If {
        /// Each condition with the block it guards, in source order.
        branches: Vec<(Expr, Block)>,
        /// The `#else` block, if any.
        otherwise: Option<Block>,
    },
    /// `#foreach($var in iterable) .. #end`.
    Foreach {
        /// Where the directive starts.
        pos: Pos,
        /// The loop variable name, without `$`.
        var: String,
        /// The collection iterated over.
        iterable: Expr,
        /// The loop body.
        body: Block,
    },
    /// `#define($name) .. #end`: binds a block rendered when `$name` is.
    Define {
        /// The variable name, without `$`.
        name: String,
        /// The block, shared with the value bound at render time.
        body: Arc<Block>,
    },
    /// A call of a `#macro` defined earlier in the template.
    MacroCall {
        /// Where the call starts.
        pos: Pos,
        /// The macro name.
        name: String,
        /// Argument expressions.
        args: Vec<Expr>,
    },
    /// `#break`: leaves the innermost `#foreach` (or the template).
    Break,
    /// `#stop`: ends rendering; what was rendered so far is the output.
    Stop,
}

/// A macro defined with `#macro(name $a $b) .. #end`.
#[derive(Debug, Clone, PartialEq)]
pub struct Macro {
    /// Parameter names, without `$`.
    pub params: Vec<String>,
    /// The macro body.
    pub body: Block,
}

/// A reference such as `$!{a.b(1)[0]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Where the `$` is.
    pub pos: Pos,
    /// The root variable name.
    pub name: String,
    /// Property, method and index steps after the name.
    pub parts: Vec<Accessor>,
}

/// One step after a reference's root name.
#[derive(Debug, Clone, PartialEq)]
pub enum Accessor {
    /// `.name`: a map key or a Java-bean getter.
    Prop(String),
    /// `.name(args)`.
    Method(String, Vec<Expr>),
    /// `[expr]`.
    Index(Expr),
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `||`, `or`
    Or,
    /// `&&`, `and`
    And,
    /// `==`, `eq`
    Eq,
    /// `!=`, `ne`
    Ne,
    /// `<`, `lt`
    Lt,
    /// `<=`, `le`
    Le,
    /// `>`, `gt`
    Gt,
    /// `>=`, `ge`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

/// An expression inside a directive, method argument, index or literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `'text'` or a double-quoted string without `$` or `#`.
    Str(Arc<str>),
    /// A double-quoted string that is itself a small template.
    Interp(Block),
    /// An integer literal.
    Int(i64),
    /// A floating-point literal.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A reference.
    Ref(Reference),
    /// `[a, b, c]`.
    List(Vec<Expr>),
    /// `{k: v, ..}`.
    Map(Vec<(Expr, Expr)>),
    /// `[from..to]`, inclusive, counting down when `from > to`.
    Range(Box<Expr>, Box<Expr>),
    /// `!e`, `not e`.
    Not(Box<Expr>),
    /// `-e`.
    Neg(Box<Expr>),
    /// `l op r`.
    Binary(BinOp, Box<Expr>, Box<Expr>, Pos),
}
