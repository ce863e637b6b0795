//! deb822 control data (Release, Packages, `.deb` control files, `.sources`) and package
//! relationship fields (`Depends: a (>= 1) | b, c:any`).

use std::collections::BTreeMap;

use crate::version::Version;

/// One paragraph: fields in order of appearance, values with continuation lines joined
/// by `\n` (as deb822 keeps them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
}

impl Paragraph {
    /// A field's value; field names are case-insensitive.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    pub fn push(&mut self, name: &str, value: &str) {
        self.fields.push((name.to_string(), value.to_string()));
    }

    /// The paragraph as text (a trailing newline, no blank line).
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.fields {
            s.push_str(k);
            s.push(':');
            for (i, line) in v.split('\n').enumerate() {
                if i == 0 {
                    if !line.is_empty() {
                        s.push(' ');
                        s.push_str(line);
                    }
                } else {
                    s.push_str("\n ");
                    s.push_str(if line.is_empty() { "." } else { line });
                }
            }
            s.push('\n');
        }
        s
    }
}

/// Splits deb822 text into paragraphs. Comment lines (`#`) are skipped.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, String> {
    let mut out = Vec::new();
    let mut cur = Paragraph::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, v)) = cur.fields.last_mut() else {
                return Err(format!("line {}: continuation line without a field", n + 1));
            };
            v.push('\n');
            let t = line.trim();
            v.push_str(if t == "." { "" } else { t });
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(format!(
                "line {}: expected `Field: value`, found `{line}`",
                n + 1
            ));
        };
        cur.fields
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// A version constraint operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }

    pub fn allows(self, have: &Version, want: &Version) -> bool {
        let o = have.cmp(want);
        match self {
            Op::Lt => o.is_lt(),
            Op::Le => o.is_le(),
            Op::Eq => o.is_eq(),
            Op::Ge => o.is_ge(),
            Op::Gt => o.is_gt(),
        }
    }
}

/// One alternative of a relationship: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    pub constraint: Option<(Op, Version)>,
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.constraint {
            Some((op, v)) => write!(f, "{} ({} {v})", self.name, op.as_str()),
            None => f.write_str(&self.name),
        }
    }
}

/// `a (>= 1) | b, c` → `[[a (>= 1), b], [c]]`. Architecture qualifiers (`:any`,
/// `:native`) are dropped; architecture restrictions (`[amd64]`) and build profiles
/// (`<!nocheck>`) only appear in source packages and are refused here.
pub fn parse_relations(s: &str) -> Result<Vec<Vec<Relation>>, String> {
    let mut out = Vec::new();
    for group in s.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let mut alts = Vec::new();
        for alt in group.split('|') {
            let alt = alt.trim();
            if alt.contains('[') || alt.contains('<') && !alt.contains('(') {
                return Err(format!("unsupported relation `{alt}`"));
            }
            let (name, constraint) = match alt.split_once('(') {
                Some((n, c)) => {
                    let c = c
                        .strip_suffix(')')
                        .ok_or_else(|| format!("unclosed `(` in `{alt}`"))?
                        .trim();
                    let split = c
                        .find(|ch: char| !matches!(ch, '<' | '>' | '='))
                        .ok_or_else(|| format!("no version in `{alt}`"))?;
                    let op = Op::parse(c[..split].trim())
                        .ok_or_else(|| format!("unknown operator in `{alt}`"))?;
                    (n.trim(), Some((op, Version::parse(c[split..].trim())?)))
                }
                None => (alt, None),
            };
            let name = name.split(':').next().unwrap_or(name).trim();
            if name.is_empty() {
                return Err(format!("empty package name in `{group}`"));
            }
            alts.push(Relation {
                name: name.to_string(),
                constraint,
            });
        }
        out.push(alts);
    }
    Ok(out)
}

/// Hash lines of a Release file's `SHA256:` field: path → (sha256 hex, size).
pub fn checksums(field: &str) -> BTreeMap<String, (String, u64)> {
    field
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let sha = it.next()?;
            let size = it.next()?.parse().ok()?;
            let path = it.next()?;
            Some((path.to_string(), (sha.to_string(), size)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_and_continuations() {
        let text = "Package: a\nDescription: short\n long\n .\n more\n\n# comment\nPackage: b\n";
        let ps = parse(text).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("description"), Some("short\nlong\n\nmore"));
        assert_eq!(ps[1].get("Package"), Some("b"));
        assert_eq!(
            ps[0].render(),
            "Package: a\nDescription: short\n long\n .\n more\n"
        );
    }

    #[test]
    fn relations() {
        let r = parse_relations("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any")
            .unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0][0].name, "libc6");
        assert_eq!(
            r[0][0].constraint.as_ref().map(|(o, v)| (*o, v.as_str())),
            Some((Op::Ge, "2.34"))
        );
        assert_eq!(r[1].len(), 2);
        assert_eq!(r[1][1].name, "debconf-2.0");
        assert_eq!(r[2][0].name, "python3");
        assert!(parse_relations("a (>= 1").is_err());
        let r = parse_relations("x (<< 1:2.0~)").unwrap();
        assert_eq!(r[0][0].to_string(), "x (<< 1:2.0~)");
    }
}
