//! Character cursor and the expression-mode tokenizer.
//!
//! Velocity's lexing depends on context: template text is scanned character
//! by character by the parser (through [`Cursor`]), while the insides of
//! directive parentheses, method arguments and literals are split into
//! [`Token`]s by [`Cursor::token`]. References (`$x`) are recognised by the
//! parser in both modes, so the tokenizer stops at `$`.
//!
//! The cursor works on a `Vec<char>`: positions are character indexes, so no
//! slicing can ever fall inside a UTF-8 sequence.

use crate::VtlError;
use crate::ast::Pos;

/// A saved cursor position for backtracking.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    idx: usize,
    line: u32,
    col: u32,
}

/// A position in the template source with line and column tracking.
#[derive(Debug)]
pub struct Cursor {
    chars: Vec<char>,
    idx: usize,
    line: u32,
    col: u32,
}

/// A token of expression mode.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `:`
    Colon,
    /// `..`
    DotDot,
    /// `=`
    Assign,
    /// An operator, spelled in its symbolic form (`&&`, `==`, `+`, `!`, ...).
    Op(&'static str),
    /// An integer literal (kept as text so overflow is reported by the parser).
    Int(String),
    /// A floating-point literal.
    Float(String),
    /// A quoted string: `double` says whether it interpolates.
    Str {
        /// The characters between the quotes, doubled quotes collapsed.
        text: String,
        /// `true` for `"..."`, `false` for `'...'`.
        double: bool,
    },
    /// A bare word: `true`, `false`, `in`, `and`, `eq`, ...
    Word(String),
    /// A `$`, left unconsumed.
    Dollar,
    /// End of input.
    Eof,
}

/// True for characters that may start a Velocity identifier.
pub fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// True for characters that may continue a Velocity 1.7 identifier (hyphen included).
pub fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl Cursor {
    /// A cursor at the start of `src`, at line 1, column 1.
    pub fn new(src: &str) -> Self {
        Self::at(src, Pos { line: 1, col: 1 })
    }

    /// A cursor over `src` whose first character is reported at `start`.
    pub fn at(src: &str, start: Pos) -> Self {
        Cursor {
            chars: src.chars().collect(),
            idx: 0,
            line: start.line,
            col: start.col,
        }
    }

    /// The current position.
    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    /// Saves the position for [`Cursor::reset`].
    pub fn mark(&self) -> Mark {
        Mark {
            idx: self.idx,
            line: self.line,
            col: self.col,
        }
    }

    /// Returns to a saved position.
    pub fn reset(&mut self, m: Mark) {
        self.idx = m.idx;
        self.line = m.line;
        self.col = m.col;
    }

    /// The characters between a mark and the current position.
    pub fn since(&self, m: Mark) -> String {
        self.chars
            .get(m.idx..self.idx)
            .map(|s| s.iter().collect())
            .unwrap_or_default()
    }

    /// The current character, if any.
    pub fn peek(&self) -> Option<char> {
        self.chars.get(self.idx).copied()
    }

    /// The character `n` places ahead.
    pub fn peek_at(&self, n: usize) -> Option<char> {
        self.idx
            .checked_add(n)
            .and_then(|i| self.chars.get(i).copied())
    }

    /// True when the input continues with `s`.
    pub fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, c)| self.chars.get(self.idx + k) == Some(&c))
    }

    /// True at the end of input.
    pub fn eof(&self) -> bool {
        self.idx >= self.chars.len()
    }

    /// Consumes one character.
    pub fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.idx += 1;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }

    /// Consumes `n` characters.
    pub fn bump_n(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }

    /// Consumes `s` if the input continues with it.
    pub fn eat(&mut self, s: &str) -> bool {
        if self.starts_with(s) {
            self.bump_n(s.chars().count());
            true
        } else {
            false
        }
    }

    /// Consumes an identifier (`[A-Za-z_][A-Za-z0-9_-]*`), if one starts here.
    pub fn ident(&mut self) -> Option<String> {
        if !self.peek().is_some_and(is_ident_start) {
            return None;
        }
        let mut s = String::new();
        while let Some(c) = self.peek().filter(|c| is_ident_char(*c)) {
            s.push(c);
            self.bump();
        }
        Some(s)
    }

    /// Consumes spaces, tabs and newlines.
    pub fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// Consumes `[ \t]*` followed by one line end, if that is what follows.
    /// This is Velocity 1.7's rule for the newline after a directive.
    pub fn eat_line_end(&mut self) -> bool {
        let m = self.mark();
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
        if self.eat("\r\n") || self.eat("\n") || self.eat("\r") {
            return true;
        }
        self.reset(m);
        false
    }

    /// True when only `[ \t]*` then a line end or the end of input follow.
    pub fn at_line_end(&self) -> bool {
        let mut i = self.idx;
        while matches!(self.chars.get(i), Some(' ' | '\t')) {
            i += 1;
        }
        matches!(self.chars.get(i), None | Some('\n' | '\r'))
    }

    /// A syntax error at the current position.
    pub fn error(&self, message: impl Into<String>) -> VtlError {
        VtlError::Syntax {
            pos: self.pos(),
            message: message.into(),
        }
    }

    /// Counts the spaces and tabs just before a mark when only they separate
    /// it from the start of its line (or of the input).
    pub fn indent_before_mark(&self, m: Mark) -> Option<usize> {
        let mut i = m.idx;
        let mut n = 0;
        while i > 0 {
            match self.chars.get(i - 1) {
                Some(' ' | '\t') => n += 1,
                Some('\n' | '\r') => return Some(n),
                _ => return None,
            }
            i -= 1;
        }
        Some(n)
    }

    /// Reads one expression-mode token after skipping whitespace. At `$` it
    /// returns [`Token::Dollar`] without consuming it: the parser reads references.
    pub fn token(&mut self) -> Result<Token, VtlError> {
        self.skip_ws();
        let Some(c) = self.peek() else {
            return Ok(Token::Eof);
        };
        let two = |a: char, b: char| c == a && self.peek_at(1) == Some(b);
        let tok = match c {
            '(' => Token::LParen,
            ')' => Token::RParen,
            '[' => Token::LBracket,
            ']' => Token::RBracket,
            '{' => Token::LBrace,
            '}' => Token::RBrace,
            ',' => Token::Comma,
            ':' => Token::Colon,
            '.' if self.peek_at(1) == Some('.') => {
                self.bump_n(2);
                return Ok(Token::DotDot);
            }
            _ if two('&', '&') => return Ok(self.op2("&&")),
            _ if two('|', '|') => return Ok(self.op2("||")),
            _ if two('=', '=') => return Ok(self.op2("==")),
            _ if two('!', '=') => return Ok(self.op2("!=")),
            _ if two('<', '=') => return Ok(self.op2("<=")),
            _ if two('>', '=') => return Ok(self.op2(">=")),
            '=' => Token::Assign,
            '!' => Token::Op("!"),
            '<' => Token::Op("<"),
            '>' => Token::Op(">"),
            '+' => Token::Op("+"),
            '-' => Token::Op("-"),
            '*' => Token::Op("*"),
            '/' => Token::Op("/"),
            '%' => Token::Op("%"),
            '"' | '\'' => return self.string(c),
            '$' => return Ok(Token::Dollar),
            _ if c.is_ascii_digit() => return Ok(self.number()),
            _ if is_ident_start(c) => {
                let w = self.ident().unwrap_or_default();
                return Ok(Token::Word(w));
            }
            _ => return Err(self.error(format!("unexpected character {c:?}"))),
        };
        self.bump();
        Ok(tok)
    }

    fn op2(&mut self, op: &'static str) -> Token {
        self.bump_n(2);
        Token::Op(op)
    }

    fn number(&mut self) -> Token {
        let mut s = String::new();
        while let Some(c) = self.peek().filter(char::is_ascii_digit) {
            s.push(c);
            self.bump();
        }
        // `1..3` is a range, not the float `1.`.
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            s.push('.');
            self.bump();
            while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                s.push(c);
                self.bump();
            }
            if matches!(self.peek(), Some('e' | 'E')) {
                let m = self.mark();
                let mut exp = String::from("e");
                self.bump();
                if let Some(sign) = self.peek().filter(|c| *c == '-' || *c == '+') {
                    exp.push(sign);
                    self.bump();
                }
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                        exp.push(c);
                        self.bump();
                    }
                    s.push_str(&exp);
                } else {
                    self.reset(m);
                }
            }
            return Token::Float(s);
        }
        Token::Int(s)
    }

    /// A quoted string. Backslashes are kept verbatim (Velocity 1.7 does not
    /// unescape), but a backslash still protects the next character from
    /// ending the string; a doubled quote stands for one quote.
    fn string(&mut self, quote: char) -> Result<Token, VtlError> {
        let start = self.pos();
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(VtlError::Syntax {
                        pos: start,
                        message: "unterminated string literal".into(),
                    });
                }
                Some('\\') => {
                    text.push('\\');
                    if let Some(n) = self.bump() {
                        text.push(n);
                    }
                }
                Some(c) if c == quote => {
                    if self.peek() == Some(quote) {
                        self.bump();
                        text.push(quote);
                    } else {
                        break;
                    }
                }
                Some(c) => text.push(c),
            }
        }
        Ok(Token::Str {
            text,
            double: quote == '"',
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(src: &str) -> Vec<Token> {
        let mut c = Cursor::new(src);
        let mut out = Vec::new();
        loop {
            let t = c.token().expect("valid tokens");
            if t == Token::Eof {
                return out;
            }
            out.push(t);
        }
    }

    #[test]
    fn operators_and_literals_are_split() {
        assert_eq!(
            tokens("( 1..3 ) >= 2.5 && 'a''b' != \"x\\\"y\""),
            vec![
                Token::LParen,
                Token::Int("1".into()),
                Token::DotDot,
                Token::Int("3".into()),
                Token::RParen,
                Token::Op(">="),
                Token::Float("2.5".into()),
                Token::Op("&&"),
                Token::Str {
                    text: "a'b".into(),
                    double: false
                },
                Token::Op("!="),
                Token::Str {
                    text: "x\\\"y".into(),
                    double: true
                },
            ]
        );
    }

    #[test]
    fn positions_follow_lines() {
        let mut c = Cursor::new("ab\ncd");
        c.bump_n(4);
        assert_eq!(c.pos(), Pos { line: 2, col: 2 });
    }

    #[test]
    fn unterminated_string_is_an_error() {
        let mut c = Cursor::new("'abc");
        assert!(c.token().is_err());
    }

    #[test]
    fn identifiers_allow_hyphens() {
        let mut c = Cursor::new("X-Amz-Target.x");
        assert_eq!(c.ident().as_deref(), Some("X-Amz-Target"));
    }
}
