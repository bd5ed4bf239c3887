//! The interpreter: walks the AST against one request.
//!
//! Entry point: [`render`] (called by [`crate::Template::render`]). A
//! [`Renderer`] holds the per-render state: variables, the container
//! [`Heap`], the lazily parsed payload and the step counter.
//!
//! Limits (see [`crate::Limits`]): a `#foreach` stops after
//! `foreach_iterations` (as Velocity's `directive.foreach.maxloops`), the
//! output and every built string are capped at `output_bytes`, evaluation is
//! capped at `steps`, and `#define`/macro expansion at `depth`.
//!
//! Arithmetic is Java's on `long`/`double`: integer overflow falls back to a
//! double, division or remainder by zero gives null (Velocity 1.7 logs and
//! returns null), and `null` operands give null.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use regex::Regex;

use crate::apigw::{self, Rendered, RequestData};
use crate::ast::{Accessor, BinOp, Block, Expr, Node, Pos, Reference};
use crate::parser::Parsed;
use crate::value::{ForeachScope, Heap, ListKind, MapRef, Sink, Value, WriteError};
use crate::{Options, VtlError, methods};

/// How a block ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Stop,
}

/// Renders a parsed template.
pub fn render(parsed: &Parsed, options: &Options, req: &RequestData) -> Result<Rendered, VtlError> {
    let mut r = Renderer::new(parsed, options, req);
    let mut out = String::new();
    let result = r.block(&parsed.body, &mut out);
    let overrides = match result {
        Ok(_) => apigw::collect_overrides(&r),
        Err(e) => Err(e),
    };
    // Empty every container now, while variables still hold them, so that
    // nothing is freed recursively and no cycle outlives the render.
    r.heap.clear();
    Ok(Rendered {
        body: out,
        overrides: overrides?,
    })
}

/// Per-render interpreter state.
pub struct Renderer<'t> {
    parsed: &'t Parsed,
    /// Options in force.
    pub options: &'t Options,
    /// The request being rendered.
    pub req: &'t RequestData,
    vars: HashMap<String, Value>,
    /// Containers created by this render.
    pub heap: Heap,
    /// `$context` as first bound (overrides are read back from it).
    pub context: Option<MapRef>,
    /// The parsed payload, once `$input.path`/`json` asked for it.
    pub payload: Option<Result<Value, VtlError>>,
    /// `$input.params()`, once built.
    pub params: Option<Value>,
    regexes: HashMap<String, Regex>,
    steps: u64,
    depth: u32,
}

/// Largest regular expression (compiled size) a template may use.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Compiled expressions kept per render.
const REGEX_CACHE: usize = 64;

impl<'t> Renderer<'t> {
    fn new(parsed: &'t Parsed, options: &'t Options, req: &'t RequestData) -> Self {
        let mut r = Renderer {
            parsed,
            options,
            req,
            vars: HashMap::new(),
            heap: Heap::default(),
            context: None,
            payload: None,
            params: None,
            regexes: HashMap::new(),
            steps: 0,
            depth: 0,
        };
        apigw::bind(&mut r);
        r
    }

    /// Binds a variable.
    pub fn set_var(&mut self, name: &str, v: Value) {
        self.vars.insert(name.to_string(), v);
    }

    /// The output and string size limit.
    pub fn limit(&self) -> usize {
        self.options.limits.output_bytes
    }

    /// Counts `n` evaluation steps against the budget.
    pub fn step(&mut self, n: u64, pos: Pos) -> Result<(), VtlError> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.options.limits.steps {
            return Err(VtlError::LimitExceeded {
                pos,
                what: "evaluation steps",
            });
        }
        Ok(())
    }

    /// A string value, refused when longer than the output limit.
    pub fn string(&self, s: String, pos: Pos) -> Result<Value, VtlError> {
        if s.len() > self.limit() {
            return Err(too_large(pos));
        }
        Ok(Value::Str(Arc::from(s)))
    }

    /// `toString` of a value (null gives ""), within the size limit.
    pub fn display(&self, v: &Value, pos: Pos) -> Result<String, VtlError> {
        v.to_display(self.limit()).map_err(|e| write_error(e, pos))
    }

    /// A compiled regular expression (Java pattern syntax, as far as the
    /// `regex` crate shares it), cached for the render.
    pub fn regex(&mut self, pattern: &str, pos: Pos) -> Result<Regex, VtlError> {
        if let Some(re) = self.regexes.get(pattern) {
            return Ok(re.clone());
        }
        let re = regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| VtlError::Runtime {
                pos,
                message: format!("invalid regular expression {pattern:?}: {e}"),
            })?;
        if self.regexes.len() < REGEX_CACHE {
            self.regexes.insert(pattern.to_string(), re.clone());
        }
        Ok(re)
    }

    fn push_text(&self, out: &mut String, s: &str, pos: Pos) -> Result<(), VtlError> {
        if out.len().saturating_add(s.len()) > self.limit() {
            return Err(too_large(pos));
        }
        out.push_str(s);
        Ok(())
    }

    fn block(&mut self, block: &Block, out: &mut String) -> Result<Flow, VtlError> {
        self.enter(Pos::default())?;
        let r = self.block_inner(block, out);
        self.depth -= 1;
        r
    }

    fn block_inner(&mut self, block: &Block, out: &mut String) -> Result<Flow, VtlError> {
        for node in block {
            let flow = self.node(node, out)?;
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn node(&mut self, node: &Node, out: &mut String) -> Result<Flow, VtlError> {
        match node {
            Node::Text(t) => {
                self.step(1, Pos::default())?;
                self.push_text(out, t, Pos::default())?;
            }
            Node::Ref(r) => {
                self.step(1, r.pos)?;
                let v = self.reference(r)?;
                self.write_value(&v, out, r.pos)?;
            }
            Node::Set { pos, target, value } => {
                self.step(1, *pos)?;
                let v = self.eval(value, *pos)?;
                if !v.is_null() || self.options.set_null_allowed {
                    self.assign(target, v)?;
                }
            }
            Node::If {
                branches,
                otherwise,
            } => {
                for (cond, body) in branches {
                    if self.eval(cond, Pos::default())?.truthy() {
                        return self.block(body, out);
                    }
                }
                if let Some(body) = otherwise {
                    return self.block(body, out);
                }
            }
            Node::Foreach {
                pos,
                var,
                iterable,
                body,
            } => return self.foreach(*pos, var, iterable, body, out),
            Node::Define { name, body } => {
                self.vars
                    .insert(name.clone(), Value::Define(Arc::clone(body)));
            }
            Node::MacroCall { pos, name, args } => return self.call_macro(*pos, name, args, out),
            Node::Break => return Ok(Flow::Break),
            Node::Stop => return Ok(Flow::Stop),
        }
        Ok(Flow::Normal)
    }

    /// Writes a value as a reference renders it; `#define` blocks render here.
    fn write_value(&mut self, v: &Value, out: &mut String, pos: Pos) -> Result<(), VtlError> {
        if let Value::Define(body) = v {
            self.enter(pos)?;
            let r = self.block(body, out);
            self.depth -= 1;
            r?;
            return Ok(());
        }
        let limit = self.limit();
        v.write_display(&mut Sink { out, limit }, 0)
            .map_err(|e| write_error(e, pos))
    }

    /// One level of render recursion (block, expression, expansion); the
    /// budget is twice the parse-time nesting limit.
    fn enter(&mut self, pos: Pos) -> Result<(), VtlError> {
        if self.depth >= self.options.limits.depth.saturating_mul(2) {
            return Err(VtlError::LimitExceeded {
                pos,
                what: "nesting (#define/macro expansion, blocks, expressions)",
            });
        }
        self.depth += 1;
        Ok(())
    }

    fn foreach(
        &mut self,
        pos: Pos,
        var: &str,
        iterable: &Expr,
        body: &Block,
        out: &mut String,
    ) -> Result<Flow, VtlError> {
        let source = self.eval(iterable, pos)?;
        // Maps iterate over their values, as Velocity does; a snapshot is
        // taken so the body may modify the map.
        let snapshot: Option<Vec<Value>> = match &source {
            Value::List(_) => None,
            Value::Map(m) => Some(
                m.try_borrow()
                    .map(|m| m.entries.values().cloned().collect())
                    .unwrap_or_default(),
            ),
            _ => return Ok(Flow::Normal),
        };
        let saved: Vec<(&str, Option<Value>)> =
            [var, "foreach", "velocityCount", "velocityHasNext"]
                .into_iter()
                .map(|k| (k, self.vars.get(k).cloned()))
                .collect();
        let max = self.options.limits.foreach_iterations;
        let mut flow = Flow::Normal;
        let mut i = 0usize;
        while i < max {
            // Lists are read live (one element at a time) so that no borrow
            // is held while the body runs.
            let (item, len) = match (&snapshot, &source) {
                (Some(items), _) => (items.get(i).cloned(), items.len()),
                (None, Value::List(l)) => match l.try_borrow() {
                    Ok(l) => (l.items.get(i).cloned(), l.items.len()),
                    Err(_) => (None, 0),
                },
                _ => (None, 0),
            };
            let Some(item) = item else { break };
            self.step(1, pos)?;
            let has_next = i + 1 < len && i + 1 < max;
            let index = i64::try_from(i).unwrap_or(i64::MAX);
            self.set_var(var, item);
            self.set_var("foreach", Value::Foreach(ForeachScope { index, has_next }));
            self.set_var("velocityCount", Value::Int(index.saturating_add(1)));
            self.set_var("velocityHasNext", Value::Bool(has_next));
            match self.block(body, out)? {
                Flow::Normal => {}
                Flow::Break => break,
                Flow::Stop => {
                    flow = Flow::Stop;
                    break;
                }
            }
            i += 1;
        }
        // Velocity 1.7 restores the loop variable (and `$foreach`) afterwards.
        for (k, v) in saved {
            match v {
                Some(v) => self.set_var(k, v),
                None => {
                    self.vars.remove(k);
                }
            }
        }
        Ok(flow)
    }

    fn call_macro(
        &mut self,
        pos: Pos,
        name: &str,
        args: &[Expr],
        out: &mut String,
    ) -> Result<Flow, VtlError> {
        let Some(mac) = self.parsed.macros.get(name).cloned() else {
            return Ok(Flow::Normal);
        };
        let mut values = Vec::with_capacity(args.len());
        for a in args {
            values.push(self.eval(a, pos)?);
        }
        let saved: Vec<(String, Option<Value>)> = mac
            .params
            .iter()
            .map(|p| (p.clone(), self.vars.get(p).cloned()))
            .collect();
        for (p, v) in mac.params.iter().zip(values) {
            self.set_var(p, v);
        }
        self.enter(pos)?;
        let r = self.block(&mac.body, out);
        self.depth -= 1;
        for (k, v) in saved {
            match v {
                Some(v) => self.set_var(&k, v),
                None => {
                    self.vars.remove(&k);
                }
            }
        }
        r
    }

    fn assign(&mut self, target: &Reference, v: Value) -> Result<(), VtlError> {
        let Some((last, prefix)) = target.parts.split_last() else {
            self.vars.insert(target.name.clone(), v);
            return Ok(());
        };
        let base = self.walk(target, prefix)?;
        let key = match last {
            Accessor::Prop(name) => Value::Str(Arc::from(name.as_str())),
            Accessor::Index(e) => self.eval(e, target.pos)?,
            Accessor::Method(..) => {
                return Err(VtlError::Runtime {
                    pos: target.pos,
                    message: "cannot #set a method call".into(),
                });
            }
        };
        match &base {
            Value::Map(m) => {
                let k = self.display(&key, target.pos)?;
                if let Ok(mut m) = m.try_borrow_mut() {
                    m.entries.insert(k, v);
                }
            }
            Value::List(l) => {
                if let Value::Int(i) = key
                    && let Ok(mut l) = l.try_borrow_mut()
                {
                    let len = l.items.len();
                    match index_of(i, len) {
                        Some(i) => {
                            if let Some(slot) = l.items.get_mut(i) {
                                *slot = v;
                            }
                        }
                        None => {
                            return Err(VtlError::Runtime {
                                pos: target.pos,
                                message: format!("index {i} out of bounds for length {len}"),
                            });
                        }
                    }
                }
            }
            // Velocity logs and ignores a property set it cannot perform.
            _ => {}
        }
        Ok(())
    }

    /// Evaluates a reference's root and the given accessors.
    fn walk(&mut self, r: &Reference, parts: &[Accessor]) -> Result<Value, VtlError> {
        let mut cur = self.vars.get(&r.name).cloned().unwrap_or_default();
        for part in parts {
            if cur.is_null() {
                return Ok(Value::Null);
            }
            cur = match part {
                Accessor::Prop(name) => self.property(&cur, name, r.pos)?,
                Accessor::Method(name, args) => {
                    let mut vals = Vec::with_capacity(args.len());
                    for a in args {
                        vals.push(self.eval(a, r.pos)?);
                    }
                    self.step(1, r.pos)?;
                    methods::call(self, &cur, name, vals, r.pos)?
                }
                Accessor::Index(e) => {
                    let idx = self.eval(e, r.pos)?;
                    self.index(&cur, &idx, r.pos)?
                }
            };
        }
        Ok(cur)
    }

    /// Evaluates a reference.
    pub fn reference(&mut self, r: &Reference) -> Result<Value, VtlError> {
        self.walk(r, &r.parts)
    }

    /// `$v.name`: a map key, a builtin's property, or a Java-bean getter
    /// (`getName()`, then `isName()`).
    fn property(&mut self, v: &Value, name: &str, pos: Pos) -> Result<Value, VtlError> {
        match v {
            Value::Map(m) => Ok(m
                .try_borrow()
                .ok()
                .and_then(|m| m.entries.get(name).cloned())
                .unwrap_or_default()),
            Value::Foreach(s) => Ok(match name {
                "index" => Value::Int(s.index),
                "count" => Value::Int(s.index.saturating_add(1)),
                "hasNext" => Value::Bool(s.has_next),
                "first" => Value::Bool(s.index == 0),
                "last" => Value::Bool(!s.has_next),
                _ => Value::Null,
            }),
            Value::Entry(e) => Ok(match name {
                "key" => Value::Str(Arc::from(e.0.as_str())),
                "value" => e.1.clone(),
                _ => Value::Null,
            }),
            _ => {
                let mut chars = name.chars();
                let cap: String = match chars.next() {
                    Some(c) => c.to_uppercase().chain(chars).collect(),
                    None => return Ok(Value::Null),
                };
                for getter in [format!("get{cap}"), format!("is{cap}")] {
                    let got = methods::call(self, v, &getter, Vec::new(), pos)?;
                    if !got.is_null() {
                        return Ok(got);
                    }
                }
                Ok(Value::Null)
            }
        }
    }

    /// `$v[idx]`: list position (negative counts from the end) or map key.
    fn index(&mut self, v: &Value, idx: &Value, pos: Pos) -> Result<Value, VtlError> {
        match (v, idx) {
            (Value::List(l), Value::Int(i)) => Ok(l
                .try_borrow()
                .ok()
                .and_then(|l| index_of(*i, l.items.len()).and_then(|i| l.items.get(i).cloned()))
                .unwrap_or_default()),
            (Value::Map(m), k) if !k.is_null() => {
                let k = self.display(k, pos)?;
                Ok(m.try_borrow()
                    .ok()
                    .and_then(|m| m.entries.get(&k).cloned())
                    .unwrap_or_default())
            }
            _ => Ok(Value::Null),
        }
    }

    /// Evaluates an expression.
    pub fn eval(&mut self, e: &Expr, pos: Pos) -> Result<Value, VtlError> {
        self.enter(pos)?;
        let r = self.eval_inner(e, pos);
        self.depth -= 1;
        r
    }

    fn eval_inner(&mut self, e: &Expr, pos: Pos) -> Result<Value, VtlError> {
        self.step(1, pos)?;
        Ok(match e {
            Expr::Str(s) => Value::Str(Arc::clone(s)),
            Expr::Interp(block) => {
                let mut s = String::new();
                self.block(block, &mut s)?;
                Value::Str(Arc::from(s))
            }
            Expr::Int(i) => Value::Int(*i),
            Expr::Float(f) => Value::Float(*f),
            Expr::Bool(b) => Value::Bool(*b),
            Expr::Ref(r) => self.reference(r)?,
            Expr::List(items) => {
                let mut vals = Vec::with_capacity(items.len());
                for i in items {
                    vals.push(self.eval(i, pos)?);
                }
                self.heap.list(vals, ListKind::Java)
            }
            Expr::Map(entries) => {
                let mut map = IndexMap::with_capacity(entries.len());
                for (k, v) in entries {
                    let k = self.eval(k, pos)?;
                    let k = if k.is_null() {
                        "null".to_string()
                    } else {
                        self.display(&k, pos)?
                    };
                    let v = self.eval(v, pos)?;
                    map.insert(k, v);
                }
                self.heap.map(map)
            }
            Expr::Range(a, b) => self.range(a, b, pos)?,
            Expr::Not(e) => Value::Bool(!self.eval(e, pos)?.truthy()),
            Expr::Neg(e) => match self.eval(e, pos)? {
                Value::Int(i) => i
                    .checked_neg()
                    .map_or(Value::Float(-(i as f64)), Value::Int),
                Value::Float(f) => Value::Float(-f),
                _ => Value::Null,
            },
            Expr::Binary(op, l, r, p) => self.binary(*op, l, r, *p)?,
        })
    }

    fn range(&mut self, a: &Expr, b: &Expr, pos: Pos) -> Result<Value, VtlError> {
        let as_int = |v: Value| match v {
            Value::Int(i) => Some(i),
            Value::Float(f) if f.is_finite() => Some(f as i64),
            Value::Str(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let (Some(from), Some(to)) = (as_int(self.eval(a, pos)?), as_int(self.eval(b, pos)?))
        else {
            return Ok(Value::Null);
        };
        let len = from.abs_diff(to).saturating_add(1);
        self.step(len, pos)?;
        let items: Vec<Value> = if from <= to {
            (from..=to).map(Value::Int).collect()
        } else {
            (to..=from).rev().map(Value::Int).collect()
        };
        Ok(self.heap.list(items, ListKind::Java))
    }

    fn binary(&mut self, op: BinOp, l: &Expr, r: &Expr, pos: Pos) -> Result<Value, VtlError> {
        match op {
            BinOp::And => {
                return Ok(Value::Bool(
                    self.eval(l, pos)?.truthy() && self.eval(r, pos)?.truthy(),
                ));
            }
            BinOp::Or => {
                return Ok(Value::Bool(
                    self.eval(l, pos)?.truthy() || self.eval(r, pos)?.truthy(),
                ));
            }
            _ => {}
        }
        let a = self.eval(l, pos)?;
        let b = self.eval(r, pos)?;
        let limit = self.limit();
        Ok(match op {
            BinOp::Eq => Value::Bool(a.loose_eq(&b, limit)),
            BinOp::Ne => Value::Bool(!a.loose_eq(&b, limit)),
            BinOp::Lt => Value::Bool(a.compare(&b).is_some_and(|o| o.is_lt())),
            BinOp::Le => Value::Bool(a.compare(&b).is_some_and(|o| o.is_le())),
            BinOp::Gt => Value::Bool(a.compare(&b).is_some_and(|o| o.is_gt())),
            BinOp::Ge => Value::Bool(a.compare(&b).is_some_and(|o| o.is_ge())),
            _ => self.arith(op, &a, &b, pos)?,
        })
    }

    fn arith(&mut self, op: BinOp, a: &Value, b: &Value, pos: Pos) -> Result<Value, VtlError> {
        if a.is_null() || b.is_null() {
            return Ok(Value::Null);
        }
        if op == BinOp::Add && (matches!(a, Value::Str(_)) || matches!(b, Value::Str(_))) {
            let mut s = self.display(a, pos)?;
            s.push_str(&self.display(b, pos)?);
            return self.string(s, pos);
        }
        if let (Value::Int(x), Value::Int(y)) = (a, b) {
            let (x, y) = (*x, *y);
            let exact = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div if y == 0 => return Ok(Value::Null),
                BinOp::Div => x.checked_div(y),
                BinOp::Rem if y == 0 => return Ok(Value::Null),
                BinOp::Rem => x.checked_rem(y),
                _ => None,
            };
            if let Some(v) = exact {
                return Ok(Value::Int(v));
            }
        }
        let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
            return Ok(Value::Null);
        };
        Ok(match op {
            BinOp::Add => Value::Float(x + y),
            BinOp::Sub => Value::Float(x - y),
            BinOp::Mul => Value::Float(x * y),
            BinOp::Div if y == 0.0 => Value::Null,
            BinOp::Div => Value::Float(x / y),
            BinOp::Rem if y == 0.0 => Value::Null,
            BinOp::Rem => Value::Float(x % y),
            _ => Value::Null,
        })
    }
}

/// A list position, negative counting from the end; `None` when outside.
pub fn index_of(i: i64, len: usize) -> Option<usize> {
    let len_i = i64::try_from(len).ok()?;
    let i = if i < 0 { i.checked_add(len_i)? } else { i };
    if (0..len_i).contains(&i) {
        usize::try_from(i).ok()
    } else {
        None
    }
}

fn too_large(pos: Pos) -> VtlError {
    VtlError::LimitExceeded {
        pos,
        what: "output size",
    }
}

/// Maps a value-writing failure to an error at `pos`.
pub fn write_error(e: WriteError, pos: Pos) -> VtlError {
    match e {
        WriteError::TooLarge => too_large(pos),
        WriteError::TooDeep => VtlError::LimitExceeded {
            pos,
            what: "value nesting (or a cyclic structure)",
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::{Limits, Options, RequestData, Template};

    fn run(src: &str) -> String {
        Template::parse(src)
            .expect("parses")
            .render(&RequestData::default())
            .expect("renders")
            .body
    }

    #[test]
    fn arithmetic_follows_java() {
        assert_eq!(run("#set($a = 7 / 2)$a"), "3");
        assert_eq!(run("#set($a = -7 % 3)$a"), "-1");
        assert_eq!(run("#set($a = 7.0 / 2)$a"), "3.5");
        assert_eq!(run("#set($a = 1 / 0)[$a]"), "[]");
        assert_eq!(
            run("#set($a = 9223372036854775807 + 1)$a"),
            "9.223372036854776E18"
        );
        assert_eq!(run("#set($a = 'a' + 1)$a"), "a1");
        assert_eq!(run("#set($a = $nope + 1)[$a]"), "[]");
    }

    #[test]
    fn foreach_stops_at_the_iteration_limit() {
        assert_eq!(run("#foreach($i in [1..5000])x#end").len(), 1000);
    }

    #[test]
    fn step_budget_ends_runaway_templates() {
        let opts = Options {
            limits: Limits {
                steps: 10_000,
                ..Limits::default()
            },
            ..Options::default()
        };
        let t = Template::parse_with(
            "#foreach($i in [1..1000])#foreach($j in [1..1000])x#end#end",
            opts,
        )
        .expect("parses");
        assert!(t.render(&RequestData::default()).is_err());
    }

    #[test]
    fn string_doubling_hits_the_size_limit() {
        let t = Template::parse("#set($s = 'ab')#foreach($i in [1..100])#set($s = \"$s$s\")#end")
            .expect("parses");
        let e = t.render(&RequestData::default()).unwrap_err();
        assert!(e.to_string().contains("output size"), "{e}");
    }

    #[test]
    fn recursive_define_is_bounded() {
        let t = Template::parse("#define($a)x$a#end$a").expect("parses");
        assert!(t.render(&RequestData::default()).is_err());
        let t = Template::parse("#macro(m)#m()#end#m()").expect("parses");
        assert!(t.render(&RequestData::default()).is_err());
    }

    #[test]
    fn cyclic_list_render_is_an_error_not_a_crash() {
        let t = Template::parse("#set($l = [])#set($x = $l.add($l))$l").expect("parses");
        assert!(t.render(&RequestData::default()).is_err());
    }
}
