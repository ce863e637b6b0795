//! Recipe::parse: the raw document checked into the model, with every problem found at once.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{Diagnostics, SourceFile, did_you_mean};

pub(super) fn unit_name_ok(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        ".service",
        ".socket",
        ".timer",
        ".target",
        ".path",
        ".mount",
        ".automount",
        ".slice",
        ".scope",
        ".swap",
        ".device",
    ];
    SUFFIXES
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':' | '\\'))
}

pub(super) fn env_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Last path segment of a URL, without query or fragment.
pub(super) fn url_file_name(url: &str) -> Option<String> {
    let no_query = url.split(['?', '#']).next()?;
    let path = no_query
        .split_once("://")
        .map_or(no_query, |(_, rest)| rest);
    let (_, path) = path.split_once('/')?;
    let last = path.rsplit('/').next()?;
    (!last.is_empty()).then(|| last.to_string())
}

impl Recipe {
    /// Parses and validates a recipe file. `stem` is the file name without `.toml`; the
    /// recipe's `name` must match it so `forge build NAME` finds `recipes/NAME.toml`.
    pub fn parse(file: &SourceFile, stem: &str) -> Result<Recipe, Diagnostics> {
        let raw: RawRecipe = toml::from_str(&file.text).map_err(|e| file.from_toml(&e))?;
        let mut c = Checker {
            file,
            errors: Vec::new(),
        };

        let name = c.name("recipe", &raw.name);
        if name != stem {
            c.err_help(
                raw.name.span(),
                format!("recipe `{name}` is in a file named `{stem}.toml`"),
                format!("rename the file to `recipes/{name}.toml` or set `name = \"{stem}\"`"),
            );
        }
        let version = raw.version.get_ref().trim().to_string();
        if version.is_empty() {
            c.err(raw.version.span(), "`version` may not be empty");
        }

        let mut input_spans = BTreeMap::new();
        for input in &raw.inputs {
            let n = c.name("input recipe", input);
            if n == name {
                c.err(
                    input.span(),
                    format!("recipe `{name}` lists itself as an input"),
                );
            }
            input_spans.insert(n, input.span());
        }
        let mut tool_spans = BTreeMap::new();
        for tool in &raw.tools {
            let n = c.name("tool recipe", tool);
            if n == name {
                c.err(
                    tool.span(),
                    format!("recipe `{name}` lists itself as a tool"),
                );
            }
            tool_spans.insert(n, tool.span());
        }

        let mut parameters = BTreeMap::new();
        for (pname, p) in &raw.parameters {
            let n = c.name("parameter", pname);
            let p_ref = p.get_ref();
            let default = match &p_ref.default {
                None => None,
                Some(d) => match ParamValue::from_toml(p_ref.ty, d.get_ref()) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        c.err(d.span(), format!("default of parameter `{n}`: {e}"));
                        None
                    }
                },
            };
            parameters.insert(
                n,
                Parameter {
                    ty: p_ref.ty,
                    default,
                    description: p_ref.description.clone().unwrap_or_default(),
                },
            );
        }

        let mut sources = Vec::new();
        let mut source_names = BTreeSet::new();
        for s in &raw.source {
            if let Some(src) = check_source(&mut c, s) {
                if !source_names.insert(src.name.clone()) {
                    c.err(
                        s.get_ref().name.span(),
                        format!("two sources are named `{}`", src.name),
                    );
                }
                sources.push(src);
            }
        }

        let mut steps = Vec::new();
        for st in &raw.step {
            if let Some(step) = check_step(&mut c, st, &sources) {
                if matches!(step.action, Action::Build { .. }) && tool_spans.is_empty() {
                    c.err_help(
                        step.span.clone(),
                        "a `build` step runs in a sandbox that holds only the recipe's tools, and this recipe has none",
                        "add `tools = [\"...\"]`: the recipes that install the programs the step runs (a shell, a compiler)",
                    );
                }
                steps.push(step);
            }
        }

        if !c.errors.is_empty() {
            return Err(c.errors.into());
        }
        Ok(Recipe {
            name,
            version,
            description: raw.description.unwrap_or_default().trim().to_string(),
            inputs: input_spans.keys().cloned().collect(),
            tools: tool_spans.keys().cloned().collect(),
            parameters,
            sources,
            steps,
            file: file.clone(),
            input_spans,
            tool_spans,
        })
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Parameter values: declared defaults, replaced by `overrides`. Every parameter must end
    /// up with a value of its type.
    pub fn resolve_parameters(
        &self,
        overrides: &BTreeMap<String, toml::Value>,
    ) -> Result<BTreeMap<String, ParamValue>, String> {
        for key in overrides.keys() {
            if !self.parameters.contains_key(key) {
                let hint = did_you_mean(key, self.parameters.keys().map(String::as_str))
                    .map(|b| format!(" (did you mean `{b}`?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "recipe `{}` has no parameter `{key}`{hint}",
                    self.name
                ));
            }
        }
        let mut out = BTreeMap::new();
        for (name, p) in &self.parameters {
            let value = match overrides.get(name) {
                Some(v) => ParamValue::from_toml(p.ty, v)
                    .map_err(|e| format!("parameter `{name}` of recipe `{}`: {e}", self.name))?,
                None => p.default.clone().ok_or_else(|| {
                    format!(
                        "parameter `{name}` of recipe `{}` has no default and no value was given",
                        self.name
                    )
                })?,
            };
            out.insert(name.clone(), value);
        }
        Ok(out)
    }
}
