//! Checking a `[[step]]` table: each kind's fields, paths and references to sources.

use super::*;
use std::collections::BTreeMap;

use toml::Spanned;

use crate::diag::did_you_mean;
use crate::paths::RelPath;

pub(super) fn check_step(
    c: &mut Checker<'_>,
    st: &Spanned<RawStep>,
    sources: &[Source],
) -> Option<Step> {
    let span = st.span();
    let r = st.get_ref();
    let kind = *r.kind.get_ref();
    let allowed = kind.fields();
    let mut ok = true;
    for (field, fspan) in r.present() {
        if !allowed.contains(&field) {
            ok = false;
            let list = allowed.join("`, `");
            c.err_help(
                fspan,
                format!("`{field}` is not a field of a `{}` step", kind.name()),
                match did_you_mean(field, allowed.iter().copied()) {
                    Some(b) => format!(
                        "did you mean `{b}`? A `{}` step takes `{list}`",
                        kind.name()
                    ),
                    None => format!("a `{}` step takes `{list}`", kind.name()),
                },
            );
        }
    }
    if !ok {
        return None;
    }

    macro_rules! need {
        ($field:ident, $key:literal) => {
            match &r.$field {
                Some(v) => v,
                None => {
                    c.err(
                        span.clone(),
                        format!("a `{}` step needs `{}`", kind.name(), $key),
                    );
                    return None;
                }
            }
        };
    }

    let owner = Owner {
        uid: r.uid.as_ref().map_or(0, |v| *v.get_ref()),
        gid: r.gid.as_ref().map_or(0, |v| *v.get_ref()),
    };

    // `from` names a source of this recipe; `member` a path inside an unpacked source.
    let source_ref = |c: &mut Checker<'_>, need_tree: bool| -> Option<(String, Option<RelPath>)> {
        let from = r.from.as_ref()?;
        let Some(src) = sources.iter().find(|s| &s.name == from.get_ref()) else {
            let hint = did_you_mean(from.get_ref(), sources.iter().map(|s| s.name.as_str()));
            let msg = format!("no source named `{}` in this recipe", from.get_ref());
            match hint {
                Some(b) => c.err_help(from.span(), msg, format!("did you mean `{b}`?")),
                None => c.err(from.span(), msg),
            }
            return None;
        };
        let member = match &r.member {
            Some(m) => {
                let p = c.rel_path("member", m)?;
                if !src.may_have_members() {
                    c.err_help(
                        m.span(),
                        format!(
                            "source `{}` is not unpacked, so it has no members",
                            src.name
                        ),
                        "set `unpack` on the source, or drop `member` to use the file itself",
                    );
                    return None;
                }
                Some(p)
            }
            None => None,
        };
        if need_tree && !src.may_have_members() {
            c.err_help(
                from.span(),
                format!(
                    "a `tree` step needs a directory, and source `{}` is a single file",
                    src.name
                ),
                "set `unpack` on the source, or use a `file` step",
            );
            return None;
        }
        Some((src.name.clone(), member))
    };

    let content = |c: &mut Checker<'_>| -> Option<Content> {
        match (&r.content, &r.from) {
            (Some(_), Some(f)) => {
                c.err(
                    f.span(),
                    format!(
                        "a `{}` step takes `content` or `from`, not both",
                        kind.name()
                    ),
                );
                None
            }
            (Some(text), None) => {
                if let Some(m) = &r.member {
                    c.err(m.span(), "`member` only goes with `from`");
                    return None;
                }
                Some(Content::Inline(text.get_ref().clone()))
            }
            (None, Some(_)) => {
                let (source, member) = source_ref(c, false)?;
                Some(Content::Source { source, member })
            }
            (None, None) => {
                c.err(
                    span.clone(),
                    format!("a `{}` step needs `content` or `from`", kind.name()),
                );
                None
            }
        }
    };

    let action = match kind {
        StepKind::File => {
            let path = c.image_path(need!(path, "path"));
            let content = content(c);
            let mode = r.mode.as_ref().map(|_| c.mode(&r.mode, 0o644));
            Action::File {
                path: path?,
                content: content?,
                mode,
                owner,
            }
        }
        StepKind::Template => {
            let path = c.image_path(need!(path, "path"));
            let template = content(c);
            Action::Template {
                path: path?,
                template: template?,
                mode: c.mode(&r.mode, 0o644),
                owner,
            }
        }
        StepKind::Tree => {
            let path = c.image_path(need!(path, "path"));
            need!(from, "from");
            let (source, member) = source_ref(c, true)?;
            let mut executable = Vec::new();
            for p in r
                .executable
                .as_ref()
                .map(|e| e.get_ref().as_slice())
                .unwrap_or(&[])
            {
                let pat = p.get_ref();
                if pat.is_empty()
                    || pat.starts_with('/')
                    || pat.split('/').any(|s| s.is_empty() || s == "..")
                {
                    c.err_help(
                        p.span(),
                        format!("`{pat}` is not a pattern of paths inside the tree"),
                        "write relative paths with `*` inside a name, e.g. `bin/*`",
                    );
                    return None;
                }
                executable.push(pat.clone());
            }
            Action::Tree {
                path: path?,
                source,
                member: member.unwrap_or(RelPath::parse(".").ok()?),
                owner,
                executable,
            }
        }
        StepKind::Mkdir => Action::Mkdir {
            path: c.image_path(need!(path, "path"))?,
            mode: c.mode(&r.mode, 0o755),
            owner,
        },
        StepKind::Symlink => {
            let path = c.image_path(need!(path, "path"));
            let target = need!(target, "target");
            if target.get_ref().is_empty() || target.get_ref().contains('\0') {
                c.err(
                    target.span(),
                    "a symlink target may not be empty or contain NUL",
                );
                return None;
            }
            Action::Symlink {
                path: path?,
                target: target.get_ref().clone(),
            }
        }
        StepKind::Unit => {
            let name = need!(name, "name");
            if !unit_name_ok(name.get_ref()) {
                c.err_help(
                    name.span(),
                    format!("`{}` is not a systemd unit name", name.get_ref()),
                    "unit names end in a unit type, e.g. `hello.service` or `backup.timer`",
                );
            }
            let wanted_by: Vec<String> = r
                .wanted_by
                .as_ref()
                .map(|w| w.get_ref().iter().map(|t| t.get_ref().clone()).collect())
                .unwrap_or_default();
            if let Some(w) = &r.wanted_by {
                for t in w.get_ref() {
                    if !unit_name_ok(t.get_ref()) {
                        c.err(
                            t.span(),
                            format!("`{}` is not a systemd unit name", t.get_ref()),
                        );
                    }
                }
            }
            let content = content(c)?;
            Action::Unit {
                name: name.get_ref().clone(),
                content,
                template: r.template.as_ref().is_some_and(|t| *t.get_ref()),
                enable: r.enable.as_ref().is_some_and(|t| *t.get_ref()),
                wanted_by,
            }
        }
        StepKind::User => {
            let name = need!(name, "name");
            let n = name.get_ref();
            if !sysusers_name_ok(n) {
                c.err(name.span(), format!("`{n}` is not a valid user name"));
            }
            for (what, v) in [
                ("description", &r.description),
                ("home", &r.home),
                ("shell", &r.shell),
            ] {
                if let Some(v) = v
                    && (v.get_ref().contains(['"', '\n']) || v.get_ref().is_empty())
                {
                    c.err(
                        v.span(),
                        format!("`{what}` may not be empty or contain `\"` or a newline"),
                    );
                }
            }
            let mut groups = Vec::new();
            if let Some(g) = &r.groups {
                for grp in g.get_ref() {
                    if !sysusers_name_ok(grp.get_ref()) {
                        c.err(
                            grp.span(),
                            format!("`{}` is not a valid group name", grp.get_ref()),
                        );
                    }
                    groups.push(grp.get_ref().clone());
                }
            }
            Action::User {
                name: n.clone(),
                uid: r.uid.as_ref().map(|u| *u.get_ref()),
                description: r.description.as_ref().map(|v| v.get_ref().clone()),
                home: r.home.as_ref().map(|v| v.get_ref().clone()),
                shell: r.shell.as_ref().map(|v| v.get_ref().clone()),
                groups,
            }
        }
        StepKind::Group => {
            let name = need!(name, "name");
            if !sysusers_name_ok(name.get_ref()) {
                c.err(
                    name.span(),
                    format!("`{}` is not a valid group name", name.get_ref()),
                );
            }
            Action::Group {
                name: name.get_ref().clone(),
                gid: r.gid.as_ref().map(|g| *g.get_ref()),
            }
        }
        StepKind::EnvFile => {
            let path = c.image_path(need!(path, "path"));
            let vars_raw = need!(vars, "vars");
            let mut vars = BTreeMap::new();
            for (k, v) in vars_raw.get_ref() {
                if !env_name_ok(k.get_ref()) {
                    c.err(
                        k.span(),
                        format!("`{}` is not an environment variable name", k.get_ref()),
                    );
                }
                if v.get_ref().contains('\n') {
                    c.err(v.span(), "environment values may not contain newlines");
                }
                vars.insert(k.get_ref().clone(), v.get_ref().clone());
            }
            Action::EnvFile {
                path: path?,
                vars,
                mode: c.mode(&r.mode, 0o644),
            }
        }
        StepKind::Build => {
            let path = c.image_path(need!(path, "path"));
            check_build(c, r, span.clone(), sources, path?, owner)?
        }
    };
    Some(Step { action, span })
}

/// A `build` step: `command` or `script`, the sources it sees, its extra environment.
fn check_build(
    c: &mut Checker<'_>,
    r: &RawStep,
    span: std::ops::Range<usize>,
    sources: &[Source],
    path: ImagePath,
    owner: Owner,
) -> Option<Action> {
    let run = match (&r.command, &r.script) {
        (Some(cmd), None) => {
            let argv: Vec<String> = cmd.get_ref().iter().map(|a| a.get_ref().clone()).collect();
            match argv.first() {
                None => {
                    c.err(
                        cmd.span(),
                        "`command` is empty: give the program and its arguments",
                    );
                    return None;
                }
                Some(p) if p.is_empty() || p.contains('\0') => {
                    c.err(
                        cmd.span(),
                        "the program of `command` may not be empty or contain NUL",
                    );
                    return None;
                }
                Some(_) => Run::Command(argv),
            }
        }
        (None, Some(script)) => Run::Script(script.get_ref().clone()),
        (Some(_), Some(script)) => {
            c.err(
                script.span(),
                "a `build` step takes `command` or `script`, not both",
            );
            return None;
        }
        (None, None) => {
            c.err_help(
                span,
                "a `build` step needs `command` or `script`",
                "`command = [\"go\", \"build\", ...]` runs a program; `script = \"...\"` runs `/bin/sh -eu`",
            );
            return None;
        }
    };
    let mut mounted = Vec::new();
    let mut ok = true;
    for name in r
        .sources
        .as_ref()
        .map(|s| s.get_ref().as_slice())
        .unwrap_or(&[])
    {
        let n = name.get_ref();
        if !sources.iter().any(|s| &s.name == n) {
            ok = false;
            let msg = format!("no source named `{n}` in this recipe");
            match did_you_mean(n, sources.iter().map(|s| s.name.as_str())) {
                Some(b) => c.err_help(name.span(), msg, format!("did you mean `{b}`?")),
                None => c.err(name.span(), msg),
            }
        } else if mounted.contains(n) {
            ok = false;
            c.err(name.span(), format!("source `{n}` is listed twice"));
        } else {
            mounted.push(n.clone());
        }
    }
    let mut env = BTreeMap::new();
    for (k, v) in r
        .env
        .as_ref()
        .map(|e| e.get_ref().iter())
        .into_iter()
        .flatten()
    {
        let key = k.get_ref();
        if !env_name_ok(key) {
            ok = false;
            c.err(
                k.span(),
                format!("`{key}` is not an environment variable name"),
            );
        } else if SANDBOX_ENV.contains(&key.as_str()) {
            ok = false;
            c.err_help(
                k.span(),
                format!("`{key}` is set by the sandbox"),
                "the sandbox fixes PATH, HOME, TMPDIR, TZ, LC_ALL, SOURCE_DATE_EPOCH, out and src so every build sees the same; remove it",
            );
        } else if v.get_ref().contains('\0') {
            ok = false;
            c.err(v.span(), "environment values may not contain NUL");
        }
        env.insert(key.clone(), v.get_ref().clone());
    }
    ok.then_some(Action::Build {
        path,
        run,
        sources: mounted,
        env,
        template: r.template.as_ref().is_some_and(|t| *t.get_ref()),
        owner,
    })
}

pub(super) fn sysusers_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && name.len() <= 31
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}
