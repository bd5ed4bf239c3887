//! The JSONPath subset API Gateway templates use (Jayway-style).
//!
//! Entry points: [`parse`] then [`select`]. Supported: an optional leading
//! `$`, `.name`, `['name']` / `["name"]` (several names separated by commas),
//! `[n]` (negative from the end, several separated by commas), `[a:b]`
//! slices, `.*` / `[*]` wildcards and `..name` / `..*` deep scan. Filters
//! (`[?(..)]`) and functions (`.length()`) are refused with an error.
//!
//! As in Jayway, a *definite* path (names and single indexes only) yields one
//! value or nothing; any other path yields the list of everything it matched.

use crate::value::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `.name` or `['name', ..]`.
    Keys(Vec<String>),
    /// `[n, ..]`.
    Indexes(Vec<i64>),
    /// `[a:b]`.
    Slice(Option<i64>, Option<i64>),
    /// `.*` or `[*]`.
    Wildcard,
    /// `..name`.
    DeepKey(String),
    /// `..*`.
    DeepWildcard,
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// The steps after the root.
    pub steps: Vec<Step>,
}

impl Path {
    /// True when the path can match at most one value.
    pub fn is_definite(&self) -> bool {
        self.steps.iter().all(|s| match s {
            Step::Keys(k) => k.len() == 1,
            Step::Indexes(i) => i.len() == 1,
            _ => false,
        })
    }
}

/// Parses a path such as `$.a['b'][0].*`.
pub fn parse(src: &str) -> Result<Path, String> {
    let chars: Vec<char> = src.trim().chars().collect();
    let mut i = 0;
    if chars.first() == Some(&'$') {
        i = 1;
    } else if !chars.is_empty() && chars.first() != Some(&'[') && chars.first() != Some(&'.') {
        // `foo.bar` is read as `$.foo.bar`.
        return parse(&format!("$.{}", src.trim()));
    }
    let mut steps = Vec::new();
    while let Some(&c) = chars.get(i) {
        match c {
            '.' if chars.get(i + 1) == Some(&'.') => {
                i += 2;
                if chars.get(i) == Some(&'*') {
                    i += 1;
                    steps.push(Step::DeepWildcard);
                } else if chars.get(i) == Some(&'[') {
                    // `..['name']`: a deep scan for a bracketed name.
                    let (step, next) = bracket(&chars, i)?;
                    i = next;
                    match step {
                        Step::Keys(k) if k.len() == 1 => {
                            steps.push(Step::DeepKey(k.into_iter().next().unwrap_or_default()));
                        }
                        Step::Wildcard => steps.push(Step::DeepWildcard),
                        _ => return Err(format!("unsupported deep scan in {src:?}")),
                    }
                } else {
                    let (name, next) = dotted_name(&chars, i);
                    if name.is_empty() {
                        return Err(format!("empty name after '..' in {src:?}"));
                    }
                    i = next;
                    steps.push(Step::DeepKey(name));
                }
            }
            '.' => {
                i += 1;
                if chars.get(i) == Some(&'*') {
                    i += 1;
                    steps.push(Step::Wildcard);
                    continue;
                }
                let (name, next) = dotted_name(&chars, i);
                if name.is_empty() {
                    return Err(format!("empty name after '.' in {src:?}"));
                }
                if chars.get(next) == Some(&'(') {
                    return Err(format!("JSONPath functions are not supported: {src:?}"));
                }
                i = next;
                steps.push(Step::Keys(vec![name]));
            }
            '[' => {
                let (step, next) = bracket(&chars, i)?;
                i = next;
                steps.push(step);
            }
            _ => return Err(format!("unexpected {c:?} in JSONPath {src:?}")),
        }
    }
    Ok(Path { steps })
}

fn dotted_name(chars: &[char], mut i: usize) -> (String, usize) {
    let mut name = String::new();
    while let Some(&c) = chars.get(i) {
        if c == '.' || c == '[' || c == '(' {
            break;
        }
        name.push(c);
        i += 1;
    }
    (name.trim().to_string(), i)
}

/// Parses `[...]` starting at `chars[i] == '['`; returns the step and the
/// index after `]`.
fn bracket(chars: &[char], i: usize) -> Result<(Step, usize), String> {
    let mut j = i + 1;
    let skip_ws = |j: &mut usize| {
        while chars.get(*j).is_some_and(|c| c.is_whitespace()) {
            *j += 1;
        }
    };
    skip_ws(&mut j);
    match chars.get(j) {
        Some('*') => {
            j += 1;
            skip_ws(&mut j);
            expect_close(chars, j).map(|n| (Step::Wildcard, n))
        }
        Some('?') => Err("JSONPath filters are not supported".into()),
        Some('\'' | '"') => {
            let mut names = Vec::new();
            loop {
                let Some(&q) = chars.get(j).filter(|c| **c == '\'' || **c == '"') else {
                    return Err("expected a quoted name in JSONPath brackets".into());
                };
                j += 1;
                let mut name = String::new();
                loop {
                    match chars.get(j) {
                        None => return Err("unterminated name in JSONPath".into()),
                        Some('\\') => {
                            if let Some(&n) = chars.get(j + 1) {
                                name.push(n);
                            }
                            j += 2;
                        }
                        Some(&c) if c == q => {
                            j += 1;
                            break;
                        }
                        Some(&c) => {
                            name.push(c);
                            j += 1;
                        }
                    }
                }
                names.push(name);
                skip_ws(&mut j);
                if chars.get(j) == Some(&',') {
                    j += 1;
                    skip_ws(&mut j);
                    continue;
                }
                return expect_close(chars, j).map(|n| (Step::Keys(names), n));
            }
        }
        _ => {
            let close = chars
                .iter()
                .skip(j)
                .position(|c| *c == ']')
                .ok_or("missing ']' in JSONPath")?;
            let inner: String = chars.iter().skip(j).take(close).collect();
            let next = j + close + 1;
            if let Some((a, b)) = inner.split_once(':') {
                let num = |s: &str| -> Result<Option<i64>, String> {
                    let s = s.trim();
                    if s.is_empty() {
                        Ok(None)
                    } else {
                        s.parse()
                            .map(Some)
                            .map_err(|_| format!("bad slice bound {s:?}"))
                    }
                };
                return Ok((Step::Slice(num(a)?, num(b)?), next));
            }
            let idx: Result<Vec<i64>, _> =
                inner.split(',').map(|s| s.trim().parse::<i64>()).collect();
            idx.map(|v| (Step::Indexes(v), next))
                .map_err(|_| format!("bad JSONPath index [{inner}]"))
        }
    }
}

fn expect_close(chars: &[char], j: usize) -> Result<usize, String> {
    if chars.get(j) == Some(&']') {
        Ok(j + 1)
    } else {
        Err("expected ']' in JSONPath".into())
    }
}

/// Applies `path` to `root`, pushing every match into `out`. `budget` caps
/// the nodes visited (deep scans over big payloads); it is decremented.
pub fn select(root: &Value, path: &Path, out: &mut Vec<Value>, budget: &mut u64) {
    let mut current = vec![root.clone()];
    for step in &path.steps {
        let mut next = Vec::new();
        for v in &current {
            apply(v, step, &mut next, budget);
            if *budget == 0 {
                return;
            }
        }
        current = next;
    }
    out.extend(current);
}

fn child(v: &Value, key: &str) -> Option<Value> {
    match v {
        Value::Map(m) => m.try_borrow().ok()?.entries.get(key).cloned(),
        _ => None,
    }
}

fn children(v: &Value) -> Vec<Value> {
    match v {
        Value::Map(m) => m
            .try_borrow()
            .map(|m| m.entries.values().cloned().collect())
            .unwrap_or_default(),
        Value::List(l) => l.try_borrow().map(|l| l.items.clone()).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn list_items(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::List(l) => l.try_borrow().ok().map(|l| l.items.clone()),
        _ => None,
    }
}

fn apply(v: &Value, step: &Step, out: &mut Vec<Value>, budget: &mut u64) {
    *budget = budget.saturating_sub(1);
    match step {
        Step::Keys(keys) => out.extend(keys.iter().filter_map(|k| child(v, k))),
        Step::Indexes(idx) => {
            if let Some(items) = list_items(v) {
                for i in idx {
                    if let Some(x) =
                        crate::render::index_of(*i, items.len()).and_then(|i| items.get(i))
                    {
                        out.push(x.clone());
                    }
                }
            }
        }
        Step::Slice(a, b) => {
            if let Some(items) = list_items(v) {
                let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
                let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                let from = norm(a.unwrap_or(0));
                let to = norm(b.unwrap_or(len));
                let (from, to) = (
                    usize::try_from(from).unwrap_or(0),
                    usize::try_from(to).unwrap_or(0),
                );
                if from < to {
                    out.extend(items.get(from..to).unwrap_or_default().iter().cloned());
                }
            }
        }
        Step::Wildcard => out.extend(children(v)),
        Step::DeepKey(_) | Step::DeepWildcard => {
            // Iterative pre-order walk: no recursion however deep the payload.
            let mut stack = vec![v.clone()];
            while let Some(node) = stack.pop() {
                if *budget == 0 {
                    return;
                }
                *budget -= 1;
                match step {
                    Step::DeepKey(k) => {
                        if let Some(x) = child(&node, k) {
                            out.push(x);
                        }
                    }
                    _ => out.extend(children(&node)),
                }
                let mut kids = children(&node);
                kids.reverse();
                stack.extend(
                    kids.into_iter()
                        .filter(|k| matches!(k, Value::Map(_) | Value::List(_))),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_common_forms() {
        assert_eq!(parse("$").unwrap().steps, vec![]);
        assert_eq!(
            parse("$.a['b c'][0]").unwrap().steps,
            vec![
                Step::Keys(vec!["a".into()]),
                Step::Keys(vec!["b c".into()]),
                Step::Indexes(vec![0])
            ]
        );
        assert_eq!(parse("a.b").unwrap(), parse("$.a.b").unwrap());
        assert!(parse("$..x").unwrap().steps == vec![Step::DeepKey("x".into())]);
        assert!(parse("$.a[*]").unwrap().steps.contains(&Step::Wildcard));
        assert!(!parse("$.a[*]").unwrap().is_definite());
        assert!(parse("$.a[1:2]").is_ok());
        assert!(parse("$.a[?(@.x)]").is_err());
        assert!(parse("$.a.length()").is_err());
        assert!(parse("$.a[").is_err());
    }
}
