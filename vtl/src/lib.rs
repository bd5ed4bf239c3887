//! Apache Velocity (VTL) for API Gateway mapping templates.
//!
//! Parse once (at config load) with [`Template::parse`], render per request
//! with [`Template::render`]:
//!
//! ```text
//!  source --lexer/parser--> ast::Block --render(RequestData)--> Rendered { body, overrides }
//!                                           |  value (Java-style values)
//!                                           |  methods (String/List/Map methods)
//!                                           |  apigw ($input, $util, $context, $stageVariables)
//!                                           `  jsonpath ($input.path / $input.json)
//! ```
//!
//! The dialect is Velocity 1.7 with the differences AWS shows (see
//! `vtl/README.md`): null references render as "", maps print Java-style,
//! JSON arrays print as JSON. Every failure is a [`VtlError`] with a line and
//! column; nothing in this crate panics on any template or request.

pub mod apigw;
pub mod ast;
pub mod jsonpath;
pub mod lexer;
pub mod methods;
pub mod parser;
pub mod render;
pub mod value;

pub use apigw::{Overrides, Rendered, RequestData};
pub use ast::Pos;

/// A template error. Every variant maps to an API Gateway response through
/// [`VtlError::status_code`] and [`VtlError::gateway_response_type`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VtlError {
    /// The template does not parse.
    #[error("{pos}: syntax error: {message}")]
    Syntax {
        /// Where the problem is.
        pos: Pos,
        /// What is wrong.
        message: String,
    },
    /// The template is larger than [`Limits::template_bytes`].
    #[error("template is {size} bytes; the limit is {limit}")]
    TemplateTooLarge {
        /// The template's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// Evaluation failed (a Java method would have thrown).
    #[error("{pos}: {message}")]
    Runtime {
        /// The construct being evaluated.
        pos: Pos,
        /// What went wrong.
        message: String,
    },
    /// A render limit (output size, steps, nesting) was reached.
    #[error("{pos}: limit exceeded: {what}")]
    LimitExceeded {
        /// The construct being evaluated.
        pos: Pos,
        /// Which limit.
        what: &'static str,
    },
    /// The request payload starts like JSON but is not valid JSON, and the
    /// template asked for it through `$input.path` or `$input.json`.
    #[error("could not parse the request payload as JSON: {message}")]
    InvalidPayload {
        /// The parser's message.
        message: String,
    },
}

impl VtlError {
    /// The HTTP status API Gateway answers with: 400 for an unparsable
    /// payload, 500 for everything else.
    pub fn status_code(&self) -> u16 {
        match self {
            VtlError::InvalidPayload { .. } => 400,
            _ => 500,
        }
    }

    /// The API Gateway gateway-response type this error selects.
    pub fn gateway_response_type(&self) -> &'static str {
        match self {
            VtlError::InvalidPayload { .. } => "BAD_REQUEST_BODY",
            _ => "API_CONFIGURATION_ERROR",
        }
    }

    /// Where in the template the error is, when it has a position.
    pub fn pos(&self) -> Option<Pos> {
        match self {
            VtlError::Syntax { pos, .. }
            | VtlError::Runtime { pos, .. }
            | VtlError::LimitExceeded { pos, .. } => Some(*pos),
            _ => None,
        }
    }
}

/// Crate result type.
pub type Result<T, E = VtlError> = std::result::Result<T, E>;

/// Resource limits. The defaults are API Gateway's where it documents one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest template source accepted by [`Template::parse`] (AWS: 300 KB).
    pub template_bytes: usize,
    /// Iterations one `#foreach` runs before it stops (AWS: 1000).
    pub foreach_iterations: usize,
    /// Largest rendered body, and largest string a template may build.
    pub output_bytes: usize,
    /// Evaluation steps per render (nodes, expressions, iterations, method
    /// calls), which bounds the time a render may take.
    pub steps: u64,
    /// Nesting budget. At parse time a block costs 2 units, a parenthesis,
    /// unary operator or binary operator in a chain 1. At render time twice
    /// this budget bounds blocks, expressions and `#define`/macro expansion
    /// together. It keeps recursion within a 2 MiB thread stack.
    pub depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            template_bytes: 300 * 1024,
            foreach_iterations: 1000,
            output_bytes: 10 * 1024 * 1024,
            steps: 5_000_000,
            depth: 100,
        }
    }
}

/// Parse and render options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// Resource limits.
    pub limits: Limits,
    /// Velocity's `directive.set.null.allowed`. `false` (the 1.7 default):
    /// `#set($x = <null>)` leaves `$x` unchanged. AWS behaviour is unrecorded.
    pub set_null_allowed: bool,
}

/// A parsed mapping template, ready to render many times. `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Template {
    parsed: parser::Parsed,
    options: Options,
}

impl Template {
    /// Parses `src` with default [`Options`].
    pub fn parse(src: &str) -> Result<Template> {
        Template::parse_with(src, Options::default())
    }

    /// Parses `src` with the given options.
    pub fn parse_with(src: &str, options: Options) -> Result<Template> {
        if src.len() > options.limits.template_bytes {
            return Err(VtlError::TemplateTooLarge {
                size: src.len(),
                limit: options.limits.template_bytes,
            });
        }
        let parsed = parser::parse(src, options.limits.depth)?;
        Ok(Template { parsed, options })
    }

    /// Renders the template against one request.
    pub fn render(&self, request: &RequestData) -> Result<Rendered> {
        render::render(&self.parsed, &self.options, request)
    }

    /// The parsed body (for inspection and tests).
    pub fn ast(&self) -> &ast::Block {
        &self.parsed.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Template>();
        check::<VtlError>();
    }

    #[test]
    fn deepest_accepted_template_renders_without_overflowing_the_stack() {
        // Run on a thread with the 2 MiB stack tokio workers have.
        let h = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let inner = format!("{}1{}", "(".repeat(40), " + 1)".repeat(40));
                let chain = format!("1{}", " + 1".repeat(70));
                let src = format!(
                    "{}#set($a = {inner})#set($b = {chain})$a $b{}",
                    "#if(true)".repeat(10),
                    "#end".repeat(10)
                );
                Template::parse(&src)
                    .and_then(|t| t.render(&RequestData::default()))
                    .map(|r| r.body)
            })
            .expect("spawn");
        assert_eq!(h.join().expect("no overflow"), Ok("41 71".to_string()));
    }

    #[test]
    fn worst_case_render_recursion_fits_a_small_stack() {
        let h = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let ifs = 45;
                let mac = format!(
                    "#macro(m){}#m(){}#end#m()",
                    "#if(true)".repeat(ifs),
                    "#end".repeat(ifs)
                );
                let def = format!(
                    "#define($d){}\"$d\"{}#end$d",
                    "#if(true)".repeat(ifs),
                    "#end".repeat(ifs)
                );
                let set = format!("#define($d){}#set($x = \"$d\")#end$d", "(".repeat(0));
                [mac, def, set].map(|src| {
                    Template::parse(&src)
                        .and_then(|t| t.render(&RequestData::default()))
                        .is_err()
                })
            })
            .expect("spawn");
        assert_eq!(h.join().expect("no overflow"), [true, true, true]);
    }

    #[test]
    fn oversized_template_is_refused() {
        let src = "a".repeat(300 * 1024 + 1);
        assert!(matches!(
            Template::parse(&src),
            Err(VtlError::TemplateTooLarge { .. })
        ));
    }

    #[test]
    fn errors_map_to_gateway_responses() {
        let e = VtlError::InvalidPayload {
            message: "x".into(),
        };
        assert_eq!(e.status_code(), 400);
        let e = Template::parse("#if(").unwrap_err();
        assert_eq!(e.status_code(), 500);
        assert_eq!(e.gateway_response_type(), "API_CONFIGURATION_ERROR");
        assert_eq!(e.pos(), Some(Pos { line: 1, col: 5 }));
    }
}
