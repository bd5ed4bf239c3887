//! The runtime value model and its Java-compatible `toString`.
//!
//! Entry points: [`Value`], [`Value::write_display`] (what a reference renders
//! as) and [`Value::write_json`] (json-smart serialisation, used for JSON
//! arrays and `$input.json`).
//!
//! AWS runs Velocity 1.7 over Java objects, so output depends on the Java
//! class behind each value (vtl-semantics.md §3.3):
//!
//! ```text
//! Value::Map                  LinkedHashMap  -> {a=1, b=x}
//! Value::List(kind = Json)    JSONArray      -> [{"a":1},"x"]   (compact JSON)
//! Value::List(kind = Java)    ArrayList/Set  -> [1, x, true]
//! Value::Float                Double         -> 1.0, 1.0E7
//! Value::Null                 null           -> "" at top level, "null" inside
//! ```
//!
//! Lists and maps are shared and mutable (`Rc<RefCell<..>>`), as Java
//! references are: `$m.put(..)` is seen through every alias. Every container
//! a render creates is registered in a [`Heap`], which empties them all when
//! the render ends, so reference cycles built by a template cannot leak and
//! deep structures are freed without recursion.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt::Write as _;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use indexmap::IndexMap;

use crate::ast::Block;

/// How deep `toString`, JSON serialisation and equality descend.
pub const MAX_VALUE_DEPTH: u32 = 256;

/// A shared, mutable list.
pub type ListRef = Rc<RefCell<List>>;
/// A shared, mutable, insertion-ordered map.
pub type MapRef = Rc<RefCell<Map>>;

/// A list and the Java class it stands for.
#[derive(Debug, Default)]
pub struct List {
    /// The elements.
    pub items: Vec<Value>,
    /// Which Java class it is (decides how it prints).
    pub kind: ListKind,
}

/// The Java class behind a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListKind {
    /// `java.util.ArrayList` (VTL literals, `split`, `keySet`): prints `[a, b]`.
    #[default]
    Java,
    /// json-smart `JSONArray` (from a payload): prints compact JSON.
    Json,
}

/// An insertion-ordered map (Java `LinkedHashMap`). Keys are strings.
#[derive(Debug, Default)]
pub struct Map {
    /// The entries in insertion order.
    pub entries: IndexMap<String, Value>,
}

/// `$foreach` inside a loop body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeachScope {
    /// 0-based index of the current iteration.
    pub index: i64,
    /// Whether another iteration follows.
    pub has_next: bool,
}

/// A runtime value.
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// Java `null`, and every undefined reference.
    #[default]
    Null,
    /// `Boolean`.
    Bool(bool),
    /// `Integer`/`Long`.
    Int(i64),
    /// `Double`.
    Float(f64),
    /// `String`.
    Str(Arc<str>),
    /// A list (see [`ListKind`]).
    List(ListRef),
    /// A map.
    Map(MapRef),
    /// A `Map.Entry` from `entrySet()`.
    Entry(Rc<(String, Value)>),
    /// The `$foreach` loop scope.
    Foreach(ForeachScope),
    /// API Gateway's `$input`.
    Input,
    /// API Gateway's `$util`.
    Util,
    /// A `#define` block, rendered where referenced.
    Define(Arc<Block>),
}

/// Why writing a value stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The output would pass its size limit.
    TooLarge,
    /// The value nests deeper than [`MAX_VALUE_DEPTH`] (or is cyclic).
    TooDeep,
}

/// A size-capped string being written to.
#[derive(Debug)]
pub struct Sink<'a> {
    /// The output.
    pub out: &'a mut String,
    /// The most bytes `out` may hold.
    pub limit: usize,
}

impl Sink<'_> {
    /// Appends `s`, or fails without writing when the limit would be passed.
    pub fn push_str(&mut self, s: &str) -> Result<(), WriteError> {
        if self.out.len().saturating_add(s.len()) > self.limit {
            return Err(WriteError::TooLarge);
        }
        self.out.push_str(s);
        Ok(())
    }

    fn push(&mut self, c: char) -> Result<(), WriteError> {
        let mut b = [0u8; 4];
        self.push_str(c.encode_utf8(&mut b))
    }
}

/// Registers the containers one render creates and empties them at its end.
#[derive(Debug, Default)]
pub struct Heap {
    lists: Vec<Weak<RefCell<List>>>,
    maps: Vec<Weak<RefCell<Map>>>,
}

impl Heap {
    /// A new registered list.
    pub fn list(&mut self, items: Vec<Value>, kind: ListKind) -> Value {
        let rc = Rc::new(RefCell::new(List { items, kind }));
        self.lists.push(Rc::downgrade(&rc));
        Value::List(rc)
    }

    /// A new registered map.
    pub fn map(&mut self, entries: IndexMap<String, Value>) -> Value {
        let rc = Rc::new(RefCell::new(Map { entries }));
        self.maps.push(Rc::downgrade(&rc));
        Value::Map(rc)
    }

    /// Empties every container still alive. Strong handles to all of them are
    /// taken first, so clearing one never frees another mid-way (which could
    /// recurse as deep as the structure); afterwards each drops on its own.
    pub fn clear(&mut self) {
        let lists: Vec<ListRef> = self.lists.drain(..).filter_map(|w| w.upgrade()).collect();
        let maps: Vec<MapRef> = self.maps.drain(..).filter_map(|w| w.upgrade()).collect();
        let mut garbage = Vec::new();
        for l in &lists {
            if let Ok(mut l) = l.try_borrow_mut() {
                garbage.push(std::mem::take(&mut l.items));
            }
        }
        let mut map_garbage = Vec::new();
        for m in &maps {
            if let Ok(mut m) = m.try_borrow_mut() {
                map_garbage.push(std::mem::take(&mut m.entries));
            }
        }
        drop(garbage);
        drop(map_garbage);
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        self.clear();
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(Arc::from(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(Arc::from(s))
    }
}

/// Java's `Double.toString`: plain between 10^-3 and 10^7, otherwise
/// scientific with `E`; always at least one fractional digit.
pub fn java_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let a = d.abs();
    if (1e-3..1e7).contains(&a) {
        let mut s = format!("{d}");
        if !s.contains('.') {
            s.push_str(".0");
        }
        s
    } else {
        let s = format!("{d:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        let mut m = mant.to_string();
        if !m.contains('.') {
            m.push_str(".0");
        }
        format!("{m}E{exp}")
    }
}

impl Value {
    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Velocity 1.7 `#if` truthiness: null is false, a Boolean is itself,
    /// anything else (the empty string included) is true.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            _ => true,
        }
    }

    /// The number this value holds, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The Java `toString` of this value as a new string (null gives "").
    pub fn to_display(&self, limit: usize) -> Result<String, WriteError> {
        if let Value::Str(s) = self {
            return Ok(s.to_string());
        }
        let mut out = String::new();
        self.write_display(
            &mut Sink {
                out: &mut out,
                limit,
            },
            0,
        )?;
        Ok(out)
    }

    /// Writes what the value renders as: Java `toString`, with null as "".
    pub fn write_display(&self, w: &mut Sink<'_>, depth: u32) -> Result<(), WriteError> {
        match self {
            Value::Null => Ok(()),
            _ => self.write_java(w, depth),
        }
    }

    /// Java `toString` as nested inside a collection (null is `null`).
    fn write_java(&self, w: &mut Sink<'_>, depth: u32) -> Result<(), WriteError> {
        if depth > MAX_VALUE_DEPTH {
            return Err(WriteError::TooDeep);
        }
        match self {
            Value::Null => w.push_str("null"),
            Value::Bool(b) => w.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let mut buf = String::new();
                let _ = write!(buf, "{i}");
                w.push_str(&buf)
            }
            Value::Float(f) => w.push_str(&java_double(*f)),
            Value::Str(s) => w.push_str(s),
            Value::List(l) => {
                let l = l.try_borrow().map_err(|_| WriteError::TooDeep)?;
                if l.kind == ListKind::Json {
                    return write_json_list(&l.items, w, depth);
                }
                w.push('[')?;
                for (i, v) in l.items.iter().enumerate() {
                    if i > 0 {
                        w.push_str(", ")?;
                    }
                    v.write_java(w, depth + 1)?;
                }
                w.push(']')
            }
            Value::Map(m) => {
                let m = m.try_borrow().map_err(|_| WriteError::TooDeep)?;
                w.push('{')?;
                for (i, (k, v)) in m.entries.iter().enumerate() {
                    if i > 0 {
                        w.push_str(", ")?;
                    }
                    w.push_str(k)?;
                    w.push('=')?;
                    v.write_java(w, depth + 1)?;
                }
                w.push('}')
            }
            Value::Entry(e) => {
                w.push_str(&e.0)?;
                w.push('=')?;
                e.1.write_java(w, depth + 1)
            }
            Value::Foreach(_) | Value::Input | Value::Util | Value::Define(_) => Ok(()),
        }
    }

    /// Serialises as json-smart does by default: compact, keys and strings
    /// quoted, `/` escaped as `\/`, numbers in Java `toString` form.
    pub fn write_json(&self, w: &mut Sink<'_>, depth: u32) -> Result<(), WriteError> {
        if depth > MAX_VALUE_DEPTH {
            return Err(WriteError::TooDeep);
        }
        match self {
            Value::Null => w.push_str("null"),
            Value::Bool(_) | Value::Int(_) => self.write_java(w, depth),
            Value::Float(f) if f.is_finite() => w.push_str(&java_double(*f)),
            Value::Float(_) => w.push_str("null"),
            Value::Str(s) => write_json_str(s, w),
            Value::List(l) => {
                let l = l.try_borrow().map_err(|_| WriteError::TooDeep)?;
                write_json_list(&l.items, w, depth)
            }
            Value::Map(m) => {
                let m = m.try_borrow().map_err(|_| WriteError::TooDeep)?;
                w.push('{')?;
                for (i, (k, v)) in m.entries.iter().enumerate() {
                    if i > 0 {
                        w.push(',')?;
                    }
                    write_json_str(k, w)?;
                    w.push(':')?;
                    v.write_json(w, depth + 1)?;
                }
                w.push('}')
            }
            Value::Entry(e) => {
                w.push('{')?;
                write_json_str(&e.0, w)?;
                w.push(':')?;
                e.1.write_json(w, depth + 1)?;
                w.push('}')
            }
            Value::Foreach(_) | Value::Input | Value::Util | Value::Define(_) => {
                write_json_str("", w)
            }
        }
    }

    /// Java `equals`: same kind and same value (lists and maps element-wise).
    pub fn java_equals(&self, other: &Value, depth: u32) -> bool {
        if depth > MAX_VALUE_DEPTH {
            return false;
        }
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::List(a), Value::List(b)) => {
                if Rc::ptr_eq(a, b) {
                    return true;
                }
                let (Ok(a), Ok(b)) = (a.try_borrow(), b.try_borrow()) else {
                    return false;
                };
                a.items.len() == b.items.len()
                    && a.items
                        .iter()
                        .zip(&b.items)
                        .all(|(x, y)| x.java_equals(y, depth + 1))
            }
            (Value::Map(a), Value::Map(b)) => {
                if Rc::ptr_eq(a, b) {
                    return true;
                }
                let (Ok(a), Ok(b)) = (a.try_borrow(), b.try_borrow()) else {
                    return false;
                };
                a.entries.len() == b.entries.len()
                    && a.entries.iter().all(|(k, v)| {
                        b.entries
                            .get(k)
                            .is_some_and(|w| v.java_equals(w, depth + 1))
                    })
            }
            (Value::Entry(a), Value::Entry(b)) => a.0 == b.0 && a.1.java_equals(&b.1, depth + 1),
            (Value::Foreach(a), Value::Foreach(b)) => a == b,
            (Value::Input, Value::Input) | (Value::Util, Value::Util) => true,
            _ => false,
        }
    }

    /// The `==` operator as AWS behaves (vtl-semantics.md §3.2): null equals
    /// null and the empty string; numbers compare numerically; values of one
    /// kind use `equals`; otherwise the `toString` forms are compared.
    pub fn loose_eq(&self, other: &Value, limit: usize) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Null, Value::Str(s)) | (Value::Str(s), Value::Null) => s.is_empty(),
            (Value::Null, _) | (_, Value::Null) => false,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                self.as_f64() == other.as_f64()
            }
            _ if std::mem::discriminant(self) == std::mem::discriminant(other) => {
                self.java_equals(other, 0)
            }
            _ => match (self.to_display(limit), other.to_display(limit)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            },
        }
    }

    /// `<`, `<=`, `>`, `>=`: numbers only (Velocity 1.7); `None` otherwise.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            _ => self.as_f64()?.partial_cmp(&other.as_f64()?),
        }
    }
}

fn write_json_list(items: &[Value], w: &mut Sink<'_>, depth: u32) -> Result<(), WriteError> {
    w.push('[')?;
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            w.push(',')?;
        }
        v.write_json(w, depth + 1)?;
    }
    w.push(']')
}

/// A JSON string as json-smart's default `ESCAPE4Web` writes it.
fn write_json_str(s: &str, w: &mut Sink<'_>) -> Result<(), WriteError> {
    w.push('"')?;
    let mut run_start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        let unicode =
            matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2000}'..='\u{20ff}');
        if esc.is_none() && !unicode {
            continue;
        }
        w.push_str(s.get(run_start..i).unwrap_or_default())?;
        run_start = i + c.len_utf8();
        match esc {
            Some(e) => w.push_str(e)?,
            None => w.push_str(&format!("\\u{:04X}", c as u32))?,
        }
    }
    w.push_str(s.get(run_start..).unwrap_or_default())?;
    w.push('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(v: &Value) -> String {
        v.to_display(1 << 20).expect("fits")
    }

    fn json(v: &Value) -> String {
        let mut out = String::new();
        v.write_json(
            &mut Sink {
                out: &mut out,
                limit: 1 << 20,
            },
            0,
        )
        .expect("fits");
        out
    }

    #[test]
    fn doubles_print_like_java() {
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(1.99), "1.99");
        assert_eq!(java_double(249.99), "249.99");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(1.5e-5), "1.5E-5");
        assert_eq!(java_double(0.001), "0.001");
        assert_eq!(java_double(-2.5e10), "-2.5E10");
    }

    #[test]
    fn maps_print_java_style_and_json_arrays_as_json() {
        let mut h = Heap::default();
        let arr = h.list(vec![Value::from("x/y"), Value::Null], ListKind::Json);
        let mut e = IndexMap::new();
        e.insert("a".to_string(), Value::Int(1));
        e.insert("b".to_string(), Value::from("x"));
        e.insert("c".to_string(), arr.clone());
        e.insert("d".to_string(), Value::Null);
        let m = h.map(e);
        assert_eq!(show(&m), r#"{a=1, b=x, c=["x\/y",null], d=null}"#);
        let jl = h.list(vec![m.clone()], ListKind::Json);
        assert_eq!(show(&jl), r#"[{"a":1,"b":"x","c":["x\/y",null],"d":null}]"#);
        let java = h.list(
            vec![Value::Int(1), Value::from("a"), Value::Bool(true)],
            ListKind::Java,
        );
        assert_eq!(show(&java), "[1, a, true]");
        assert_eq!(json(&Value::from("\u{1}é\u{2028}")), "\"\\u0001é\\u2028\"");
    }

    #[test]
    fn cycles_stop_at_the_depth_limit() {
        let mut h = Heap::default();
        let l = h.list(Vec::new(), ListKind::Java);
        if let Value::List(rc) = &l {
            rc.borrow_mut().items.push(l.clone());
        }
        assert_eq!(l.to_display(1 << 20), Err(WriteError::TooDeep));
        assert!(l.java_equals(&l, 0));
        h.clear();
    }

    #[test]
    fn output_limit_is_enforced() {
        assert_eq!(Value::Int(123456).to_display(3), Err(WriteError::TooLarge));
    }

    #[test]
    fn null_equals_empty_string_and_mixed_kinds_compare_as_text() {
        let lim = 1 << 20;
        assert!(Value::Null.loose_eq(&Value::from(""), lim));
        assert!(!Value::Null.loose_eq(&Value::from("x"), lim));
        assert!(Value::Int(1).loose_eq(&Value::Float(1.0), lim));
        assert!(Value::Int(1).loose_eq(&Value::from("1"), lim));
        assert!(Value::Bool(true).loose_eq(&Value::from("true"), lim));
        assert!(Value::from("").truthy());
        assert!(!Value::Null.truthy());
    }
}
