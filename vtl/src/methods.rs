//! Java-style methods on strings, numbers, booleans, lists, maps and map
//! entries, plus dispatch to the API Gateway builtins.
//!
//! Entry point: [`call`]. An unknown method yields null (Velocity logs it and
//! the reference renders empty on AWS); a method that would throw in Java
//! (`substring` out of range, a null argument, a bad regex) is a runtime
//! error, which API Gateway turns into a 500.
//!
//! String positions count Unicode scalar values (Java counts UTF-16 units;
//! they differ only for characters outside the Basic Multilingual Plane).

use std::sync::Arc;

use indexmap::IndexMap;

use crate::VtlError;
use crate::apigw;
use crate::ast::Pos;
use crate::render::{Renderer, index_of};
use crate::value::{ListKind, Value};

/// Calls `name(args)` on `recv`.
pub fn call(
    r: &mut Renderer<'_>,
    recv: &Value,
    name: &str,
    args: Vec<Value>,
    pos: Pos,
) -> Result<Value, VtlError> {
    match recv {
        Value::Null => Ok(Value::Null),
        Value::Input => apigw::input_method(r, name, &args, pos),
        Value::Util => apigw::util_method(r, name, &args, pos),
        Value::Str(s) => string_method(r, s, name, &args, pos),
        Value::List(_) => list_method(r, recv, name, args, pos),
        Value::Map(_) => map_method(r, recv, name, args, pos),
        Value::Entry(e) => Ok(match (name, args.len()) {
            ("getKey", 0) => Value::Str(Arc::from(e.0.as_str())),
            ("getValue", 0) => e.1.clone(),
            _ => common(r, recv, name, &args, pos)?,
        }),
        Value::Int(_) | Value::Float(_) => number_method(r, recv, name, &args, pos),
        Value::Bool(b) => Ok(match (name, args.len()) {
            ("booleanValue", 0) => Value::Bool(*b),
            _ => common(r, recv, name, &args, pos)?,
        }),
        Value::Foreach(s) => Ok(match (name, args.len()) {
            ("getIndex", 0) => Value::Int(s.index),
            ("getCount", 0) => Value::Int(s.index.saturating_add(1)),
            ("hasNext", 0) | ("getHasNext", 0) => Value::Bool(s.has_next),
            ("isFirst", 0) | ("getFirst", 0) => Value::Bool(s.index == 0),
            ("isLast", 0) | ("getLast", 0) => Value::Bool(!s.has_next),
            _ => Value::Null,
        }),
        Value::Define(_) => {
            // A #define block outside a reference position behaves as "".
            call(r, &Value::from(""), name, args, pos)
        }
    }
}

/// `toString`, `equals` and `hashCode`-free basics every object has.
fn common(
    r: &mut Renderer<'_>,
    recv: &Value,
    name: &str,
    args: &[Value],
    pos: Pos,
) -> Result<Value, VtlError> {
    Ok(match (name, args) {
        ("toString", []) => {
            let s = r.display(recv, pos)?;
            r.string(s, pos)?
        }
        ("equals", [o]) => Value::Bool(recv.java_equals(o, 0)),
        _ => Value::Null,
    })
}

fn err(pos: Pos, message: impl Into<String>) -> VtlError {
    VtlError::Runtime {
        pos,
        message: message.into(),
    }
}

/// A `String` parameter: null throws in Java; other values use `toString`.
fn str_arg(r: &Renderer<'_>, v: &Value, pos: Pos, method: &str) -> Result<String, VtlError> {
    match v {
        Value::Null => Err(err(pos, format!("null argument to {method}()"))),
        Value::Str(s) => Ok(s.to_string()),
        other => r.display(other, pos),
    }
}

/// An `int` parameter; `None` when the value is not an integer (in Java the
/// method would not be found, so the call yields null).
fn int_arg(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn char_count(s: &str) -> i64 {
    i64::try_from(s.chars().count()).unwrap_or(i64::MAX)
}

/// Byte offset of the `n`th char, or the end when `n` is the length.
fn byte_at(s: &str, n: usize) -> Option<usize> {
    if n == 0 {
        return Some(0);
    }
    s.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .nth(n)
}

fn char_index_of(s: &str, byte: usize) -> i64 {
    i64::try_from(s.get(..byte).map_or(0, |p| p.chars().count())).unwrap_or(i64::MAX)
}

fn string_method(
    r: &mut Renderer<'_>,
    s: &Arc<str>,
    name: &str,
    args: &[Value],
    pos: Pos,
) -> Result<Value, VtlError> {
    let s: &str = s;
    Ok(match (name, args) {
        ("length", []) => Value::Int(char_count(s)),
        ("isEmpty", []) => Value::Bool(s.is_empty()),
        ("toString", []) => Value::from(s),
        // Java's trim removes every character up to U+0020.
        ("trim", []) => Value::from(s.trim_matches(|c: char| c <= ' ')),
        ("toUpperCase", []) => r.string(s.to_uppercase(), pos)?,
        ("toLowerCase", []) => r.string(s.to_lowercase(), pos)?,
        ("charAt", [i]) => {
            let Some(i) = int_arg(i) else {
                return Ok(Value::Null);
            };
            match usize::try_from(i).ok().and_then(|i| s.chars().nth(i)) {
                Some(c) => Value::from(c.to_string()),
                None => return Err(err(pos, format!("charAt({i}) out of range"))),
            }
        }
        ("contains", [o]) => Value::Bool(s.contains(&*str_arg(r, o, pos, name)?)),
        ("startsWith", [o]) => Value::Bool(s.starts_with(&*str_arg(r, o, pos, name)?)),
        ("startsWith", [o, off]) => {
            let p = str_arg(r, o, pos, name)?;
            let Some(off) = int_arg(off) else {
                return Ok(Value::Null);
            };
            let rest = usize::try_from(off)
                .ok()
                .and_then(|o| byte_at(s, o))
                .and_then(|b| s.get(b..));
            Value::Bool(rest.is_some_and(|rest| rest.starts_with(&*p)))
        }
        ("endsWith", [o]) => Value::Bool(s.ends_with(&*str_arg(r, o, pos, name)?)),
        ("equals", [o]) => Value::Bool(matches!(o, Value::Str(t) if &**t == s)),
        ("equalsIgnoreCase", [o]) => Value::Bool(match o {
            Value::Null => false,
            o => {
                let t = r.display(o, pos)?;
                s.chars().count() == t.chars().count()
                    && s.chars().zip(t.chars()).all(|(a, b)| {
                        a == b
                            || a.to_uppercase().eq(b.to_uppercase())
                            || a.to_lowercase().eq(b.to_lowercase())
                    })
            }
        }),
        ("compareTo", [o]) => {
            let t = str_arg(r, o, pos, name)?;
            Value::Int(java_compare(s, &t))
        }
        ("indexOf", [o]) => {
            let t = str_arg(r, o, pos, name)?;
            Value::Int(s.find(&*t).map_or(-1, |b| char_index_of(s, b)))
        }
        ("indexOf", [o, from]) => {
            let t = str_arg(r, o, pos, name)?;
            let Some(from) = int_arg(from) else {
                return Ok(Value::Null);
            };
            let from = usize::try_from(from.max(0)).unwrap_or(usize::MAX);
            match byte_at(s, from) {
                Some(b) => Value::Int(
                    s.get(b..)
                        .and_then(|rest| rest.find(&*t))
                        .map_or(-1, |f| char_index_of(s, b + f)),
                ),
                None => Value::Int(-1),
            }
        }
        ("lastIndexOf", [o]) => {
            let t = str_arg(r, o, pos, name)?;
            Value::Int(s.rfind(&*t).map_or(-1, |b| char_index_of(s, b)))
        }
        ("substring", [b]) => {
            let Some(b) = int_arg(b) else {
                return Ok(Value::Null);
            };
            substring(s, b, char_count(s), pos)?
        }
        ("substring", [b, e]) => {
            let (Some(b), Some(e)) = (int_arg(b), int_arg(e)) else {
                return Ok(Value::Null);
            };
            substring(s, b, e, pos)?
        }
        ("concat", [o]) => {
            let t = str_arg(r, o, pos, name)?;
            r.string(format!("{s}{t}"), pos)?
        }
        ("replace", [a, b]) => {
            let (a, b) = (str_arg(r, a, pos, name)?, str_arg(r, b, pos, name)?);
            if a.is_empty() {
                // Java inserts the replacement between every character.
                let mut out = b.clone();
                for c in s.chars() {
                    out.push(c);
                    out.push_str(&b);
                    if out.len() > r.limit() {
                        break;
                    }
                }
                r.string(out, pos)?
            } else {
                let est = s
                    .len()
                    .saturating_add(s.matches(&*a).count().saturating_mul(b.len()));
                if est > r.limit().saturating_add(s.len()) {
                    return Err(err(pos, "replace result too large"));
                }
                r.string(s.replace(&*a, &b), pos)?
            }
        }
        ("replaceAll", [p, rep]) | ("replaceFirst", [p, rep]) => {
            let (p, rep) = (str_arg(r, p, pos, name)?, str_arg(r, rep, pos, name)?);
            let re = r.regex(&p, pos)?;
            let all = name == "replaceAll";
            let out = java_replace(&re, s, &rep, all, r.limit(), pos)?;
            r.string(out, pos)?
        }
        ("matches", [p]) => {
            let p = str_arg(r, p, pos, name)?;
            let re = r.regex(&format!("^(?:{p})$"), pos)?;
            Value::Bool(re.is_match(s))
        }
        ("split", [p]) => split(r, s, p, 0, pos)?,
        ("split", [p, limit]) => {
            let Some(limit) = int_arg(limit) else {
                return Ok(Value::Null);
            };
            split(r, s, p, limit, pos)?
        }
        ("hashCode", []) => {
            let h = s
                .encode_utf16()
                .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
            Value::Int(i64::from(h))
        }
        _ => Value::Null,
    })
}

fn java_compare(a: &str, b: &str) -> i64 {
    for (x, y) in a.encode_utf16().zip(b.encode_utf16()) {
        if x != y {
            return i64::from(x) - i64::from(y);
        }
    }
    char_count(a).saturating_sub(char_count(b))
}

fn substring(s: &str, b: i64, e: i64, pos: Pos) -> Result<Value, VtlError> {
    let len = char_count(s);
    if b < 0 || e > len || b > e {
        return Err(err(
            pos,
            format!("substring({b}, {e}) out of range for length {len}"),
        ));
    }
    let (Ok(b), Ok(e)) = (usize::try_from(b), usize::try_from(e)) else {
        return Ok(Value::Null);
    };
    let (Some(bs), Some(es)) = (byte_at(s, b), byte_at(s, e)) else {
        return Ok(Value::Null);
    };
    Ok(Value::from(s.get(bs..es).unwrap_or_default()))
}

/// Java `String.split(regex, limit)`: with `limit == 0` trailing empty
/// strings are removed; a positive limit caps the number of pieces.
fn split(
    r: &mut Renderer<'_>,
    s: &str,
    p: &Value,
    limit: i64,
    pos: Pos,
) -> Result<Value, VtlError> {
    let p = str_arg(r, p, pos, "split")?;
    let re = r.regex(&p, pos)?;
    let mut parts: Vec<&str> = Vec::new();
    let mut last = 0;
    for m in re.find_iter(s) {
        if limit > 0 && i64::try_from(parts.len()).unwrap_or(i64::MAX) >= limit - 1 {
            break;
        }
        // A zero-width match at the very start yields no leading empty piece.
        if m.end() == 0 {
            continue;
        }
        if m.start() == m.end() && m.start() >= s.len() {
            break;
        }
        parts.push(s.get(last..m.start()).unwrap_or_default());
        last = m.end();
    }
    parts.push(s.get(last..).unwrap_or_default());
    if limit == 0 {
        while parts.len() > 1 && parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        if parts.len() == 1 && parts.first().is_some_and(|p| p.is_empty()) && !s.is_empty() {
            parts.clear();
        }
    }
    r.step(u64::try_from(parts.len()).unwrap_or(u64::MAX), pos)?;
    let items = parts.into_iter().map(Value::from).collect();
    Ok(r.heap.list(items, ListKind::Java))
}

/// Java `Matcher.replaceAll`/`replaceFirst`: `$n` and `${name}` insert
/// groups, a backslash quotes the next character.
fn java_replace(
    re: &regex::Regex,
    s: &str,
    rep: &str,
    all: bool,
    limit: usize,
    pos: Pos,
) -> Result<String, VtlError> {
    let rep: Vec<char> = rep.chars().collect();
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(s) {
        let Some(m) = caps.get(0) else { continue };
        out.push_str(s.get(last..m.start()).unwrap_or_default());
        let mut i = 0;
        while let Some(&c) = rep.get(i) {
            match c {
                '\\' => {
                    let Some(&n) = rep.get(i + 1) else {
                        return Err(err(pos, "character to be escaped is missing"));
                    };
                    out.push(n);
                    i += 2;
                }
                '$' if rep.get(i + 1) == Some(&'{') => {
                    let end = rep
                        .iter()
                        .skip(i + 2)
                        .position(|c| *c == '}')
                        .ok_or_else(|| err(pos, "named capturing group is missing trailing '}'"))?;
                    let name: String = rep.iter().skip(i + 2).take(end).collect();
                    let g = caps
                        .name(&name)
                        .ok_or_else(|| err(pos, format!("no group with name {{{name}}}")))?;
                    out.push_str(g.as_str());
                    i += end + 3;
                }
                '$' => {
                    // Java takes as many digits as still form a valid group number.
                    let mut j = i + 1;
                    let mut group: Option<usize> = None;
                    while let Some(d) = rep.get(j).and_then(|c| c.to_digit(10)) {
                        let g = group
                            .unwrap_or(0)
                            .saturating_mul(10)
                            .saturating_add(d as usize);
                        if group.is_some() && g >= caps.len() {
                            break;
                        }
                        group = Some(g);
                        j += 1;
                    }
                    let g = group.ok_or_else(|| err(pos, "illegal group reference"))?;
                    if g >= caps.len() {
                        return Err(err(pos, format!("no group {g}")));
                    }
                    out.push_str(caps.get(g).map_or("", |m| m.as_str()));
                    i = j;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
            if out.len() > limit {
                return Err(VtlError::LimitExceeded {
                    pos,
                    what: "output size",
                });
            }
        }
        last = m.end();
        if !all {
            break;
        }
    }
    out.push_str(s.get(last..).unwrap_or_default());
    Ok(out)
}

fn number_method(
    r: &mut Renderer<'_>,
    recv: &Value,
    name: &str,
    args: &[Value],
    pos: Pos,
) -> Result<Value, VtlError> {
    let f = recv.as_f64().unwrap_or_default();
    Ok(match (name, args) {
        ("intValue", []) | ("longValue", []) => match recv {
            Value::Int(i) => Value::Int(*i),
            _ => Value::Int(f as i64),
        },
        ("doubleValue", []) | ("floatValue", []) => Value::Float(f),
        ("isNaN", []) => Value::Bool(f.is_nan()),
        ("compareTo", [o]) => match recv.compare(o) {
            Some(o) => Value::Int(o as i64),
            None => Value::Null,
        },
        // Static methods reached through an instance, as Java allows:
        // `$zero.parseInt("42")`.
        ("parseInt", [s]) | ("parseLong", [s]) | ("valueOf", [s])
            if matches!(recv, Value::Int(_)) =>
        {
            let t = str_arg(r, s, pos, name)?;
            Value::Int(t.parse::<i64>().map_err(|_| {
                err(
                    pos,
                    format!("NumberFormatException: For input string: \"{t}\""),
                )
            })?)
        }
        ("parseDouble", [s]) | ("valueOf", [s]) => {
            let t = str_arg(r, s, pos, name)?;
            Value::Float(t.trim().parse::<f64>().map_err(|_| {
                err(
                    pos,
                    format!("NumberFormatException: For input string: \"{t}\""),
                )
            })?)
        }
        _ => common(r, recv, name, args, pos)?,
    })
}

fn list_method(
    r: &mut Renderer<'_>,
    recv: &Value,
    name: &str,
    args: Vec<Value>,
    pos: Pos,
) -> Result<Value, VtlError> {
    let Value::List(l) = recv else {
        return Ok(Value::Null);
    };
    let busy = || err(pos, "list modified while in use");
    let len = l.try_borrow().map_err(|_| busy())?.items.len();
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let get = |i: usize| l.try_borrow().ok().and_then(|l| l.items.get(i).cloned());
    let out_of_bounds = |i: i64| err(pos, format!("index {i} out of bounds for length {len}"));
    Ok(match (name, args.as_slice()) {
        ("size", []) => Value::Int(len_i),
        ("isEmpty", []) => Value::Bool(len == 0),
        ("get", [i]) => {
            let Some(i) = int_arg(i) else {
                return Ok(Value::Null);
            };
            let idx = usize::try_from(i).ok().filter(|i| *i < len);
            idx.and_then(get).ok_or_else(|| out_of_bounds(i))?
        }
        ("contains", [v]) => Value::Bool(
            l.try_borrow()
                .map_err(|_| busy())?
                .items
                .iter()
                .any(|x| x.java_equals(v, 0)),
        ),
        ("indexOf", [v]) => Value::Int(
            l.try_borrow()
                .map_err(|_| busy())?
                .items
                .iter()
                .position(|x| x.java_equals(v, 0))
                .map_or(-1, |p| i64::try_from(p).unwrap_or(-1)),
        ),
        ("add", [_]) => {
            let [v] = <[Value; 1]>::try_from(args).map_err(|_| busy())?;
            l.try_borrow_mut().map_err(|_| busy())?.items.push(v);
            Value::Bool(true)
        }
        ("add", [i, _]) => {
            let Some(i) = int_arg(i) else {
                return Ok(Value::Null);
            };
            let idx = usize::try_from(i)
                .ok()
                .filter(|i| *i <= len)
                .ok_or_else(|| out_of_bounds(i))?;
            let v = args.into_iter().nth(1).unwrap_or_default();
            l.try_borrow_mut().map_err(|_| busy())?.items.insert(idx, v);
            Value::Null
        }
        ("addAll", [Value::List(other)]) => {
            let items = other.try_borrow().map_err(|_| busy())?.items.clone();
            r.step(u64::try_from(items.len()).unwrap_or(u64::MAX), pos)?;
            l.try_borrow_mut().map_err(|_| busy())?.items.extend(items);
            Value::Bool(true)
        }
        ("set", [i, _]) => {
            let Some(i) = int_arg(i) else {
                return Ok(Value::Null);
            };
            let idx = usize::try_from(i)
                .ok()
                .filter(|i| *i < len)
                .ok_or_else(|| out_of_bounds(i))?;
            let v = args.into_iter().nth(1).unwrap_or_default();
            let mut lb = l.try_borrow_mut().map_err(|_| busy())?;
            match lb.items.get_mut(idx) {
                Some(slot) => std::mem::replace(slot, v),
                None => Value::Null,
            }
        }
        ("remove", [Value::Int(i)]) => {
            let idx = usize::try_from(*i)
                .ok()
                .filter(|x| *x < len)
                .ok_or_else(|| out_of_bounds(*i))?;
            l.try_borrow_mut().map_err(|_| busy())?.items.remove(idx)
        }
        ("remove", [v]) => {
            let p = l
                .try_borrow()
                .map_err(|_| busy())?
                .items
                .iter()
                .position(|x| x.java_equals(v, 0));
            match p {
                Some(p) => {
                    l.try_borrow_mut().map_err(|_| busy())?.items.remove(p);
                    Value::Bool(true)
                }
                None => Value::Bool(false),
            }
        }
        ("clear", []) => {
            l.try_borrow_mut().map_err(|_| busy())?.items.clear();
            Value::Null
        }
        ("subList", [a, b]) => {
            let (Some(a), Some(b)) = (int_arg(a), int_arg(b)) else {
                return Ok(Value::Null);
            };
            if a < 0 || b > len_i || a > b {
                return Err(err(
                    pos,
                    format!("subList({a}, {b}) out of range for length {len}"),
                ));
            }
            let (a, b) = (
                usize::try_from(a).unwrap_or(0),
                usize::try_from(b).unwrap_or(0),
            );
            let items = l
                .try_borrow()
                .map_err(|_| busy())?
                .items
                .get(a..b)
                .map(<[Value]>::to_vec)
                .unwrap_or_default();
            r.heap.list(items, ListKind::Java)
        }
        ("getFirst", []) if len > 0 => get(0).unwrap_or_default(),
        ("getLast", []) if len > 0 => index_of(-1, len).and_then(get).unwrap_or_default(),
        _ => common(r, recv, name, &args, pos)?,
    })
}

fn map_method(
    r: &mut Renderer<'_>,
    recv: &Value,
    name: &str,
    args: Vec<Value>,
    pos: Pos,
) -> Result<Value, VtlError> {
    let Value::Map(m) = recv else {
        return Ok(Value::Null);
    };
    let busy = || err(pos, "map modified while in use");
    let key = |r: &Renderer<'_>, v: &Value| -> Result<String, VtlError> {
        match v {
            Value::Null => Ok("null".into()),
            v => r.display(v, pos),
        }
    };
    Ok(match (name, args.as_slice()) {
        ("size", []) => Value::Int(
            i64::try_from(m.try_borrow().map_err(|_| busy())?.entries.len()).unwrap_or(i64::MAX),
        ),
        ("isEmpty", []) => Value::Bool(m.try_borrow().map_err(|_| busy())?.entries.is_empty()),
        ("get", [k]) => {
            let k = key(r, k)?;
            m.try_borrow()
                .map_err(|_| busy())?
                .entries
                .get(&k)
                .cloned()
                .unwrap_or_default()
        }
        ("getOrDefault", [k, d]) => {
            let k = key(r, k)?;
            m.try_borrow()
                .map_err(|_| busy())?
                .entries
                .get(&k)
                .cloned()
                .unwrap_or_else(|| d.clone())
        }
        ("containsKey", [k]) => {
            let k = key(r, k)?;
            Value::Bool(m.try_borrow().map_err(|_| busy())?.entries.contains_key(&k))
        }
        ("containsValue", [v]) => Value::Bool(
            m.try_borrow()
                .map_err(|_| busy())?
                .entries
                .values()
                .any(|x| x.java_equals(v, 0)),
        ),
        ("put", [k, _]) => {
            let k = key(r, k)?;
            let v = args.into_iter().nth(1).unwrap_or_default();
            m.try_borrow_mut()
                .map_err(|_| busy())?
                .entries
                .insert(k, v)
                .unwrap_or_default()
        }
        ("putAll", [Value::Map(other)]) => {
            let entries: Vec<(String, Value)> = other
                .try_borrow()
                .map_err(|_| busy())?
                .entries
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            r.step(u64::try_from(entries.len()).unwrap_or(u64::MAX), pos)?;
            m.try_borrow_mut()
                .map_err(|_| busy())?
                .entries
                .extend(entries);
            Value::Null
        }
        ("remove", [k]) => {
            let k = key(r, k)?;
            m.try_borrow_mut()
                .map_err(|_| busy())?
                .entries
                .shift_remove(&k)
                .unwrap_or_default()
        }
        ("clear", []) => {
            m.try_borrow_mut().map_err(|_| busy())?.entries.clear();
            Value::Null
        }
        ("keySet", []) => {
            let keys: Vec<Value> = m
                .try_borrow()
                .map_err(|_| busy())?
                .entries
                .keys()
                .map(|k| Value::from(k.as_str()))
                .collect();
            r.step(u64::try_from(keys.len()).unwrap_or(u64::MAX), pos)?;
            r.heap.list(keys, ListKind::Java)
        }
        ("values", []) => {
            let vals: Vec<Value> = m
                .try_borrow()
                .map_err(|_| busy())?
                .entries
                .values()
                .cloned()
                .collect();
            r.step(u64::try_from(vals.len()).unwrap_or(u64::MAX), pos)?;
            r.heap.list(vals, ListKind::Java)
        }
        ("entrySet", []) => {
            let entries: Vec<Value> = m
                .try_borrow()
                .map_err(|_| busy())?
                .entries
                .iter()
                .map(|(k, v)| Value::Entry(std::rc::Rc::new((k.clone(), v.clone()))))
                .collect();
            r.step(u64::try_from(entries.len()).unwrap_or(u64::MAX), pos)?;
            r.heap.list(entries, ListKind::Java)
        }
        _ => common(r, recv, name, &args, pos)?,
    })
}

/// Builds a registered map from string pairs (used by the builtins).
pub fn string_map<'a>(
    r: &mut Renderer<'_>,
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Value {
    let entries: IndexMap<String, Value> = pairs
        .into_iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    r.heap.map(entries)
}
