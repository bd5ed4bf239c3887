//! Recursive-descent parser from template source to [`ast`](crate::ast).
//!
//! Entry point: [`parse`]. Template text is scanned with the [`Cursor`];
//! directive arguments and literals use its expression tokenizer.
//!
//! Whitespace follows Velocity 1.7 ("backward compatible" gobbling):
//! - `#set(..)`, `#if(..)`, `#elseif(..)`, `#foreach(..)`, `#define(..)`,
//!   `#macro(..)`, `#else` and `#end` eat `[ \t]*` and one line end after them;
//! - a line holding only `#set(..)` also loses its indentation.
//!
//! Nesting (blocks, parentheses, interpolated strings) is capped by
//! `max_depth`, so hostile input cannot overflow the stack.

use std::collections::HashMap;
use std::sync::Arc;

use crate::VtlError;
use crate::ast::{Accessor, BinOp, Block, Expr, Macro, Node, Pos, Reference};
use crate::lexer::{Cursor, Token};

/// A parsed template: its body and the macros it defines.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The top-level block.
    pub body: Block,
    /// Macros by name (`#macro(name ..)`).
    pub macros: HashMap<String, Arc<Macro>>,
}

/// Parses a whole template. `max_depth` bounds nesting of every kind.
pub fn parse(src: &str, max_depth: u32) -> Result<Parsed, VtlError> {
    let mut p = Parser {
        cur: Cursor::new(src),
        depth: 0,
        max_depth,
        macros: HashMap::new(),
    };
    let (body, end) = p.block()?;
    match end {
        Terminator::Eof => Ok(Parsed {
            body,
            macros: p.macros,
        }),
        Terminator::End(pos) => Err(VtlError::Syntax {
            pos,
            message: "#end without a matching directive".into(),
        }),
        Terminator::Else(pos) | Terminator::ElseIf(pos, _) => Err(VtlError::Syntax {
            pos,
            message: "#else or #elseif outside #if".into(),
        }),
    }
}

/// What ended a block.
enum Terminator {
    Eof,
    End(Pos),
    Else(Pos),
    ElseIf(Pos, Expr),
}

/// Directives Velocity knows. Anything else after `#` is text, unless it
/// names a macro defined earlier.
const DIRECTIVES: &[&str] = &[
    "set", "if", "elseif", "else", "end", "foreach", "break", "stop", "define", "macro", "include",
    "parse", "evaluate",
];

struct Parser {
    cur: Cursor,
    depth: u32,
    max_depth: u32,
    macros: HashMap<String, Arc<Macro>>,
}

fn flush(text: &mut String, out: &mut Block) {
    if !text.is_empty() {
        out.push(Node::Text(std::mem::take(text)));
    }
}

impl Parser {
    fn enter(&mut self) -> Result<(), VtlError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self
                .cur
                .error(format!("nesting deeper than {} levels", self.max_depth)));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Parses template text up to the end of input or a block terminator.
    fn block(&mut self) -> Result<(Block, Terminator), VtlError> {
        // A block costs two units: its parse and render frames are the largest.
        self.enter()?;
        if let Err(e) = self.enter() {
            self.leave();
            return Err(e);
        }
        let r = self.block_inner();
        self.leave();
        self.leave();
        r
    }

    fn block_inner(&mut self) -> Result<(Block, Terminator), VtlError> {
        let mut out = Block::new();
        let mut text = String::new();
        loop {
            let Some(c) = self.cur.peek() else {
                flush(&mut text, &mut out);
                return Ok((out, Terminator::Eof));
            };
            match c {
                '\\' => self.escapes(&mut text),
                '$' => match self.reference()? {
                    Some(r) => {
                        flush(&mut text, &mut out);
                        out.push(Node::Ref(r));
                    }
                    None => {
                        text.push('$');
                        self.cur.bump();
                    }
                },
                '#' => {
                    if let Some(end) = self.hash(&mut text, &mut out)? {
                        flush(&mut text, &mut out);
                        return Ok((out, end));
                    }
                }
                _ => {
                    text.push(c);
                    self.cur.bump();
                }
            }
        }
    }

    /// A run of backslashes: before a reference or directive, pairs become one
    /// backslash and an odd one makes the reference or directive literal.
    fn escapes(&mut self, text: &mut String) {
        let mut n = 0usize;
        while self.cur.peek() == Some('\\') {
            n += 1;
            self.cur.bump();
        }
        let m = self.cur.mark();
        let escapable = match self.cur.peek() {
            Some('$') => matches!(self.reference(), Ok(Some(_))),
            Some('#') => {
                self.cur.bump();
                self.cur.eat("{");
                self.cur.ident().is_some_and(|w| {
                    DIRECTIVES.contains(&w.as_str()) || self.macros.contains_key(&w)
                })
            }
            _ => false,
        };
        let raw = self.cur.since(m);
        self.cur.reset(m);
        if !escapable {
            text.extend(std::iter::repeat_n('\\', n));
            return;
        }
        text.extend(std::iter::repeat_n('\\', n / 2));
        if n % 2 == 1 {
            text.push_str(&raw);
            self.cur.bump_n(raw.chars().count());
        }
    }

    /// Handles `#`: comments, unparsed blocks, directives, macro calls, or a
    /// literal `#`. Returns `Some` when a block terminator was read.
    fn hash(&mut self, text: &mut String, out: &mut Block) -> Result<Option<Terminator>, VtlError> {
        let start = self.cur.pos();
        if self.cur.eat("##") {
            while let Some(c) = self.cur.bump() {
                if c == '\n' {
                    break;
                }
            }
            return Ok(None);
        }
        if self.cur.eat("#*") {
            loop {
                if self.cur.eat("*#") {
                    return Ok(None);
                }
                if self.cur.bump().is_none() {
                    return Err(VtlError::Syntax {
                        pos: start,
                        message: "unterminated #* comment".into(),
                    });
                }
            }
        }
        if self.cur.eat("#[[") {
            loop {
                if self.cur.eat("]]#") {
                    return Ok(None);
                }
                match self.cur.bump() {
                    Some(c) => text.push(c),
                    None => {
                        return Err(VtlError::Syntax {
                            pos: start,
                            message: "unterminated #[[ block".into(),
                        });
                    }
                }
            }
        }
        let m = self.cur.mark();
        self.cur.bump();
        let braced = self.cur.eat("{");
        let name = match self.cur.ident() {
            Some(n) if !braced || self.cur.eat("}") => n,
            _ => {
                self.cur.reset(m);
                text.push('#');
                self.cur.bump();
                return Ok(None);
            }
        };
        // `#end`, `#else` and friends: the identifier rule allows `-`, but
        // directive names are plain words; `#endif` is not `#end`.
        match name.as_str() {
            "end" => {
                if !braced {
                    self.cur.eat_line_end();
                }
                Ok(Some(Terminator::End(start)))
            }
            "else" => {
                if !braced {
                    self.cur.eat_line_end();
                }
                Ok(Some(Terminator::Else(start)))
            }
            "elseif" => {
                let cond = self.paren_expr()?;
                Ok(Some(Terminator::ElseIf(start, cond)))
            }
            "set" => {
                let indent = self.cur.indent_before_mark(m);
                self.open_paren()?;
                self.cur.skip_ws();
                let target = self
                    .reference()?
                    .ok_or_else(|| self.cur.error("#set needs a reference on the left"))?;
                self.cur.skip_ws();
                if self.cur.token()? != Token::Assign {
                    return Err(self.cur.error("expected '=' in #set"));
                }
                let value = self.expr()?;
                self.close_paren()?;
                // A line holding only `#set(..)` disappears entirely.
                if let Some(n) = indent
                    && self.cur.at_line_end()
                {
                    let keep = text.len().saturating_sub(n);
                    if text.is_char_boundary(keep) {
                        text.truncate(keep);
                    }
                }
                self.cur.eat_line_end();
                flush(text, out);
                out.push(Node::Set {
                    pos: start,
                    target,
                    value,
                });
                Ok(None)
            }
            "if" => {
                let mut cond = self.paren_expr()?;
                self.cur.eat_line_end();
                let mut branches = Vec::new();
                loop {
                    let (body, end) = self.block()?;
                    branches.push((cond, body));
                    match end {
                        Terminator::ElseIf(_, c) => {
                            self.cur.eat_line_end();
                            cond = c;
                        }
                        Terminator::Else(_) => {
                            let (body, end) = self.block()?;
                            if !matches!(end, Terminator::End(_)) {
                                return Err(VtlError::Syntax {
                                    pos: start,
                                    message: "#if without a matching #end".into(),
                                });
                            }
                            flush(text, out);
                            out.push(Node::If {
                                branches,
                                otherwise: Some(body),
                            });
                            return Ok(None);
                        }
                        Terminator::End(_) => {
                            flush(text, out);
                            out.push(Node::If {
                                branches,
                                otherwise: None,
                            });
                            return Ok(None);
                        }
                        Terminator::Eof => {
                            return Err(VtlError::Syntax {
                                pos: start,
                                message: "#if without a matching #end".into(),
                            });
                        }
                    }
                }
            }
            "foreach" => {
                self.open_paren()?;
                self.cur.skip_ws();
                let var = self.simple_var()?;
                self.cur.skip_ws();
                if self.cur.token()? != Token::Word("in".into()) {
                    return Err(self.cur.error("expected 'in' in #foreach"));
                }
                let iterable = self.expr()?;
                self.close_paren()?;
                self.cur.eat_line_end();
                let body = self.block_until_end(start, "#foreach")?;
                flush(text, out);
                out.push(Node::Foreach {
                    pos: start,
                    var,
                    iterable,
                    body,
                });
                Ok(None)
            }
            "define" => {
                self.open_paren()?;
                self.cur.skip_ws();
                let name = self.simple_var()?;
                self.close_paren()?;
                self.cur.eat_line_end();
                let body = self.block_until_end(start, "#define")?;
                flush(text, out);
                out.push(Node::Define {
                    name,
                    body: Arc::new(body),
                });
                Ok(None)
            }
            "macro" => {
                self.open_paren()?;
                self.cur.skip_ws();
                let name = self
                    .cur
                    .ident()
                    .ok_or_else(|| self.cur.error("#macro needs a name"))?;
                let mut params = Vec::new();
                loop {
                    self.cur.skip_ws();
                    if self.cur.eat(",") {
                        continue;
                    }
                    if self.cur.peek() == Some(')') {
                        break;
                    }
                    params.push(self.simple_var()?);
                }
                self.close_paren()?;
                self.cur.eat_line_end();
                // Registered before the body is parsed, so a macro may call itself.
                self.macros.insert(
                    name.clone(),
                    Arc::new(Macro {
                        params: params.clone(),
                        body: Block::new(),
                    }),
                );
                let body = self.block_until_end(start, "#macro")?;
                self.macros.insert(name, Arc::new(Macro { params, body }));
                Ok(None)
            }
            "break" | "stop" => {
                // `#break($foreach)` names the scope; only the innermost is supported.
                if self.cur.peek() == Some('(') {
                    self.cur.bump();
                    self.cur.skip_ws();
                    if self.cur.peek() != Some(')') {
                        self.expr()?;
                    }
                    self.close_paren()?;
                }
                flush(text, out);
                out.push(if name == "break" {
                    Node::Break
                } else {
                    Node::Stop
                });
                Ok(None)
            }
            "include" | "parse" | "evaluate" => Err(VtlError::Syntax {
                pos: start,
                message: format!("#{name} is not supported in API Gateway mapping templates"),
            }),
            _ if self.macros.contains_key(&name) && self.paren_follows() => {
                self.open_paren()?;
                let mut args = Vec::new();
                loop {
                    self.cur.skip_ws();
                    if self.cur.eat(",") {
                        continue;
                    }
                    if self.cur.peek() == Some(')') || self.cur.eof() {
                        break;
                    }
                    args.push(self.expr()?);
                }
                self.close_paren()?;
                flush(text, out);
                out.push(Node::MacroCall {
                    pos: start,
                    name,
                    args,
                });
                Ok(None)
            }
            _ => {
                self.cur.reset(m);
                text.push('#');
                self.cur.bump();
                Ok(None)
            }
        }
    }

    fn block_until_end(&mut self, start: Pos, what: &str) -> Result<Block, VtlError> {
        let (body, end) = self.block()?;
        match end {
            Terminator::End(_) => Ok(body),
            _ => Err(VtlError::Syntax {
                pos: start,
                message: format!("{what} without a matching #end"),
            }),
        }
    }

    fn paren_follows(&self) -> bool {
        let mut i = 0;
        while matches!(self.cur.peek_at(i), Some(' ' | '\t')) {
            i += 1;
        }
        self.cur.peek_at(i) == Some('(')
    }

    fn open_paren(&mut self) -> Result<(), VtlError> {
        while matches!(self.cur.peek(), Some(' ' | '\t')) {
            self.cur.bump();
        }
        if self.cur.eat("(") {
            Ok(())
        } else {
            Err(self.cur.error("expected '(' after directive"))
        }
    }

    fn close_paren(&mut self) -> Result<(), VtlError> {
        self.cur.skip_ws();
        if self.cur.eat(")") {
            Ok(())
        } else {
            Err(self.cur.error("expected ')'"))
        }
    }

    fn paren_expr(&mut self) -> Result<Expr, VtlError> {
        self.open_paren()?;
        let e = self.expr()?;
        self.close_paren()?;
        Ok(e)
    }

    /// `$name` or `${name}` with no accessors (loop and macro variables).
    fn simple_var(&mut self) -> Result<String, VtlError> {
        let pos = self.cur.pos();
        match self.reference()? {
            Some(r) if r.parts.is_empty() => Ok(r.name),
            _ => Err(VtlError::Syntax {
                pos,
                message: "expected a plain $variable".into(),
            }),
        }
    }

    /// A reference at `$`, or `None` (cursor unmoved) when the text there is
    /// not one (`$.`, `$1`, `$"`): Velocity leaves such text as it is.
    fn reference(&mut self) -> Result<Option<Reference>, VtlError> {
        let m = self.cur.mark();
        let pos = self.cur.pos();
        if !self.cur.eat("$") {
            return Ok(None);
        }
        self.cur.eat("!");
        let braced = self.cur.eat("{");
        let Some(name) = self.cur.ident() else {
            self.cur.reset(m);
            return Ok(None);
        };
        let parts = self.accessors()?;
        if braced && !self.cur.eat("}") {
            self.cur.reset(m);
            return Ok(None);
        }
        Ok(Some(Reference { pos, name, parts }))
    }

    fn accessors(&mut self) -> Result<Vec<Accessor>, VtlError> {
        let mut parts = Vec::new();
        loop {
            match self.cur.peek() {
                Some('.')
                    if self
                        .cur
                        .peek_at(1)
                        .is_some_and(crate::lexer::is_ident_start) =>
                {
                    self.cur.bump();
                    let name = self.cur.ident().unwrap_or_default();
                    if self.cur.peek() == Some('(') {
                        self.cur.bump();
                        let args = self.args()?;
                        parts.push(Accessor::Method(name, args));
                    } else {
                        parts.push(Accessor::Prop(name));
                    }
                }
                Some('[') => {
                    let m = self.cur.mark();
                    let depth = self.depth;
                    self.cur.bump();
                    let idx = self.expr().and_then(|e| {
                        self.cur.skip_ws();
                        if self.cur.eat("]") {
                            Ok(e)
                        } else {
                            Err(self.cur.error("expected ']'"))
                        }
                    });
                    match idx {
                        Ok(e) => parts.push(Accessor::Index(e)),
                        Err(_) => {
                            // Not an index after all (`$x[abc]` in text): leave it as text.
                            self.depth = depth;
                            self.cur.reset(m);
                            return Ok(parts);
                        }
                    }
                }
                _ => return Ok(parts),
            }
        }
    }

    /// Method arguments after `(`, through `)`.
    fn args(&mut self) -> Result<Vec<Expr>, VtlError> {
        let mut args = Vec::new();
        self.cur.skip_ws();
        if self.cur.eat(")") {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            self.cur.skip_ws();
            if self.cur.eat(",") {
                continue;
            }
            if self.cur.eat(")") {
                return Ok(args);
            }
            return Err(self.cur.error("expected ',' or ')' in method arguments"));
        }
    }

    fn peek_token(&mut self) -> Result<Token, VtlError> {
        let m = self.cur.mark();
        let t = self.cur.token();
        self.cur.reset(m);
        t
    }

    /// One expression (lowest precedence: `||`).
    pub(crate) fn expr(&mut self) -> Result<Expr, VtlError> {
        self.enter()?;
        let r = self.binary(0);
        self.leave();
        r
    }

    /// Precedence climbing over the five binary levels.
    fn binary(&mut self, level: usize) -> Result<Expr, VtlError> {
        if level == 6 {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        // Each operator deepens the (left-nested) tree the renderer walks
        // recursively, so a long chain counts against the nesting limit.
        let mut chain = 0;
        let r = self.chain(level, &mut left, &mut chain);
        self.depth = self.depth.saturating_sub(chain);
        r.map(|()| left)
    }

    fn chain(&mut self, level: usize, left: &mut Expr, chain: &mut u32) -> Result<(), VtlError> {
        loop {
            let pos = self.cur.pos();
            let tok = self.peek_token()?;
            let op = match (level, &tok) {
                (0, Token::Op("||")) => BinOp::Or,
                (0, Token::Word(w)) if w == "or" => BinOp::Or,
                (1, Token::Op("&&")) => BinOp::And,
                (1, Token::Word(w)) if w == "and" => BinOp::And,
                (2, Token::Op("==")) => BinOp::Eq,
                (2, Token::Op("!=")) => BinOp::Ne,
                (2, Token::Word(w)) if w == "eq" => BinOp::Eq,
                (2, Token::Word(w)) if w == "ne" => BinOp::Ne,
                (3, Token::Op("<")) => BinOp::Lt,
                (3, Token::Op("<=")) => BinOp::Le,
                (3, Token::Op(">")) => BinOp::Gt,
                (3, Token::Op(">=")) => BinOp::Ge,
                (3, Token::Word(w)) if w == "lt" => BinOp::Lt,
                (3, Token::Word(w)) if w == "le" => BinOp::Le,
                (3, Token::Word(w)) if w == "gt" => BinOp::Gt,
                (3, Token::Word(w)) if w == "ge" => BinOp::Ge,
                (4, Token::Op("+")) => BinOp::Add,
                (4, Token::Op("-")) => BinOp::Sub,
                (5, Token::Op("*")) => BinOp::Mul,
                (5, Token::Op("/")) => BinOp::Div,
                (5, Token::Op("%")) => BinOp::Rem,
                _ => return Ok(()),
            };
            self.cur.token()?;
            self.enter()?;
            *chain += 1;
            let right = self.binary(level + 1)?;
            let l = std::mem::replace(left, Expr::Bool(false));
            *left = Expr::Binary(op, Box::new(l), Box::new(right), pos);
        }
    }

    fn unary(&mut self) -> Result<Expr, VtlError> {
        let tok = self.peek_token()?;
        let not = matches!(&tok, Token::Op("!")) || matches!(&tok, Token::Word(w) if w == "not");
        if not || tok == Token::Op("-") {
            self.cur.token()?;
            self.enter()?;
            let inner = self.unary();
            self.leave();
            let inner = Box::new(inner?);
            return Ok(if not {
                Expr::Not(inner)
            } else {
                Expr::Neg(inner)
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, VtlError> {
        self.cur.skip_ws();
        let pos = self.cur.pos();
        let tok = self.cur.token()?;
        match tok {
            Token::Dollar => match self.reference()? {
                Some(r) => Ok(Expr::Ref(r)),
                None => Err(self.cur.error("expected a reference after '$'")),
            },
            Token::Int(s) => s
                .parse::<i64>()
                .map(Expr::Int)
                .map_err(|_| VtlError::Syntax {
                    pos,
                    message: format!("integer literal {s} is out of range"),
                }),
            Token::Float(s) => s
                .parse::<f64>()
                .map(Expr::Float)
                .map_err(|_| VtlError::Syntax {
                    pos,
                    message: format!("bad number {s}"),
                }),
            Token::Str { text, double } => {
                if double && (text.contains('$') || text.contains('#')) {
                    self.interpolated(&text, pos)
                } else {
                    Ok(Expr::Str(Arc::from(text)))
                }
            }
            Token::Word(w) if w == "true" => Ok(Expr::Bool(true)),
            Token::Word(w) if w == "false" => Ok(Expr::Bool(false)),
            Token::LParen => {
                let e = self.expr()?;
                self.close_paren()?;
                Ok(e)
            }
            Token::LBracket => self.list_or_range(),
            Token::LBrace => self.map_literal(),
            other => Err(VtlError::Syntax {
                pos,
                message: format!("unexpected {}", describe(&other)),
            }),
        }
    }

    /// A double-quoted string: its content is parsed as a template.
    fn interpolated(&mut self, text: &str, pos: Pos) -> Result<Expr, VtlError> {
        self.enter()?;
        // The content starts one column after the opening quote.
        let start = Pos {
            line: pos.line,
            col: pos.col.saturating_add(1),
        };
        let outer = std::mem::replace(&mut self.cur, Cursor::at(text, start));
        let r = self.block();
        self.cur = outer;
        self.leave();
        match r? {
            (body, Terminator::Eof) => Ok(Expr::Interp(body)),
            (_, Terminator::End(p) | Terminator::Else(p) | Terminator::ElseIf(p, _)) => {
                Err(VtlError::Syntax {
                    pos: p,
                    message: "unbalanced directive inside a string literal".into(),
                })
            }
        }
    }

    fn list_or_range(&mut self) -> Result<Expr, VtlError> {
        if self.peek_token()? == Token::RBracket {
            self.cur.token()?;
            return Ok(Expr::List(Vec::new()));
        }
        let first = self.expr()?;
        if self.peek_token()? == Token::DotDot {
            self.cur.token()?;
            let last = self.expr()?;
            self.expect(Token::RBracket, "']' after range")?;
            return Ok(Expr::Range(Box::new(first), Box::new(last)));
        }
        let mut items = vec![first];
        loop {
            match self.cur.token()? {
                Token::Comma => items.push(self.expr()?),
                Token::RBracket => return Ok(Expr::List(items)),
                other => {
                    return Err(self.cur.error(format!(
                        "expected ',' or ']' in list, found {}",
                        describe(&other)
                    )));
                }
            }
        }
    }

    fn map_literal(&mut self) -> Result<Expr, VtlError> {
        let mut entries = Vec::new();
        if self.peek_token()? == Token::RBrace {
            self.cur.token()?;
            return Ok(Expr::Map(entries));
        }
        loop {
            let k = self.expr()?;
            self.expect(Token::Colon, "':' in map literal")?;
            let v = self.expr()?;
            entries.push((k, v));
            match self.cur.token()? {
                Token::Comma => {}
                Token::RBrace => return Ok(Expr::Map(entries)),
                other => {
                    return Err(self.cur.error(format!(
                        "expected ',' or '}}' in map, found {}",
                        describe(&other)
                    )));
                }
            }
        }
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), VtlError> {
        let t = self.cur.token()?;
        if t == want {
            Ok(())
        } else {
            Err(self
                .cur
                .error(format!("expected {what}, found {}", describe(&t))))
        }
    }
}

fn describe(t: &Token) -> String {
    match t {
        Token::Eof => "end of input".into(),
        Token::Word(w) => format!("word '{w}'"),
        Token::Op(o) => format!("'{o}'"),
        Token::Int(s) | Token::Float(s) => format!("number {s}"),
        Token::Str { .. } => "string literal".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> Block {
        parse(src, 64).expect("parses").body
    }

    #[test]
    fn text_and_references_alternate() {
        let b = p("a $x b");
        assert_eq!(b.len(), 3);
        assert!(matches!(&b[1], Node::Ref(r) if r.name == "x"));
    }

    #[test]
    fn invalid_reference_text_stays_text() {
        assert_eq!(p("$.a $1 $\""), vec![Node::Text("$.a $1 $\"".into())]);
    }

    #[test]
    fn method_then_index_chain_parses() {
        let b = p("$input.path('$.foo')[1][1]");
        let Node::Ref(r) = &b[0] else {
            panic!("expected a reference")
        };
        assert_eq!(r.parts.len(), 3);
        assert!(matches!(r.parts[2], Accessor::Index(Expr::Int(1))));
    }

    #[test]
    fn bracket_that_is_not_an_index_is_text() {
        let b = p("$x[abc]");
        assert_eq!(b.len(), 2);
        assert_eq!(b[1], Node::Text("[abc]".into()));
    }

    #[test]
    fn set_alone_on_a_line_leaves_nothing() {
        let b = p("  #set($a = 1)\nx");
        assert!(matches!(&b[0], Node::Set { .. }));
        assert_eq!(b[1], Node::Text("x".into()));
    }

    #[test]
    fn unbalanced_blocks_are_errors_with_positions() {
        let e = parse("ab\n  #if($x)", 64).unwrap_err();
        assert_eq!(
            e.to_string(),
            "2:3: syntax error: #if without a matching #end"
        );
        assert!(parse("#end", 64).is_err());
        assert!(parse("#else", 64).is_err());
        assert!(parse("#set($a = )", 64).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let src = "#if(true)".repeat(500);
        assert!(parse(&src, 64).is_err());
        let src = format!("{}x{}", "#if(true)".repeat(20), "#end".repeat(20));
        assert!(parse(&src, 64).is_ok());
        let src = format!("#set($a = {}1{})", "(".repeat(1000), ")".repeat(1000));
        assert!(parse(&src, 64).is_err());
        let src = format!("#set($a = {}1)", "!".repeat(1000));
        assert!(parse(&src, 64).is_err());
        let src = format!("#set($a = 1{})", " + 1".repeat(1000));
        assert!(parse(&src, 64).is_err());
        let src = format!("#set($a = 1{})", " + 1".repeat(50));
        assert!(parse(&src, 64).is_ok());
    }

    #[test]
    fn unknown_directive_is_text() {
        assert_eq!(p("#foo #123 #"), vec![Node::Text("#foo #123 #".into())]);
    }

    #[test]
    fn escaped_reference_is_literal() {
        assert_eq!(p("\\$x"), vec![Node::Text("$x".into())]);
        assert_eq!(p("\\#if"), vec![Node::Text("#if".into())]);
        assert_eq!(p("a\\b"), vec![Node::Text("a\\b".into())]);
    }

    #[test]
    fn include_and_parse_are_refused() {
        assert!(parse("#include('x')", 64).is_err());
        assert!(parse("#parse('x')", 64).is_err());
    }
}
