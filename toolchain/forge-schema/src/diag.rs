//! Diagnostics for forge's TOML files: what is wrong, where (`file:line:col`), what to do.
//!
//! Every parse or validation error of a recipe, the lockfile or (later) an image carries the
//! file's text and the byte span of the offending value, so the CLI can render a snippet with
//! miette and machines still get a plain `file:line:col: message` line from `Display`.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

/// A TOML document as read from disk: its display name (project-relative path) and text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, col)
    }

    /// An error at `span` of this file.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> TomlError {
        let (line, col) = self.line_col(span.start);
        TomlError {
            message: message.into(),
            file: self.name.clone(),
            line,
            col,
            label: None,
            help: None,
            src: NamedSource::new(self.name.clone(), self.text.clone()),
            span: SourceSpan::from(span.start..span.end.max(span.start)),
        }
    }

    /// Converts a `toml` deserialisation error, adding a "did you mean" hint where serde
    /// reported an unknown field or variant.
    pub fn from_toml(&self, err: &toml::de::Error) -> TomlError {
        let span = err.span().unwrap_or(0..0);
        let message = err.message().trim().to_string();
        let help = suggestion(&message);
        let mut e = self.error(span, message);
        e.help = help;
        e
    }
}

/// One problem in one TOML file.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("{file}:{line}:{col}: {message}")]
pub struct TomlError {
    pub message: String,
    pub file: String,
    pub line: usize,
    pub col: usize,
    #[label("{}", label.as_deref().unwrap_or("here"))]
    span: SourceSpan,
    label: Option<String>,
    #[help]
    pub help: Option<String>,
    #[source_code]
    src: NamedSource<Arc<str>>,
}

impl TomlError {
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

/// All problems found in one or more files; shown one after the other.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub struct Diagnostics {
    #[related]
    pub errors: Vec<TomlError>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} errors:", many.len())?;
                for e in many {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl From<TomlError> for Diagnostics {
    fn from(e: TomlError) -> Self {
        Self { errors: vec![e] }
    }
}

impl From<Vec<TomlError>> for Diagnostics {
    fn from(errors: Vec<TomlError>) -> Self {
        Self { errors }
    }
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Builds a hint from serde's standard messages
/// ("unknown field `x`, expected one of `a`, `b`" / "unknown variant `x`, expected ...").
fn suggestion(message: &str) -> Option<String> {
    let (what, rest) = if let Some(rest) = message.strip_prefix("unknown field `") {
        ("field", rest)
    } else if let Some(rest) = message.strip_prefix("unknown variant `") {
        ("value", rest)
    } else {
        return None;
    };
    let (word, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    match did_you_mean(word, expected.iter().copied()) {
        Some(best) => Some(format!("did you mean `{best}`?")),
        None if !expected.is_empty() => Some(format!(
            "valid {what}s here: {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let f = SourceFile::new("a.toml", "a = 1\nbé = 2\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(6), (2, 1));
        // `=` after "bé " is the 4th character of line 2 (é is two bytes).
        assert_eq!(f.line_col(10), (2, 4));
    }

    #[test]
    fn suggests_close_field() {
        let s = suggestion("unknown field `nmae`, expected one of `name`, `version`");
        assert_eq!(s.as_deref(), Some("did you mean `name`?"));
        let s = suggestion("unknown variant `tgz`, expected one of `tar`, `tar.gz`");
        assert_eq!(s.as_deref(), Some("valid values here: `tar`, `tar.gz`"));
        assert_eq!(suggestion("missing field `name`"), None);
    }
}
