//! Property tests of recipe hashing: the hash depends on what a recipe means, not on how
//! its TOML is written. Reformatting, comments, key order, string styles, explicit
//! defaults and mirror URLs keep it; any meaningful value change changes it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use forge_schema::hash::{BUILDER_VERSION, HashInputs, recipe_hash};
use forge_schema::recipe::Recipe;
use forge_schema::{Sha256Digest, SourceFile};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum GStep {
    Mkdir {
        path: String,
        mode: Option<u32>,
    },
    File {
        path: String,
        content: String,
    },
    Symlink {
        path: String,
        target: String,
    },
    Env {
        path: String,
        vars: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone)]
struct GSource {
    name: String,
    sha: [u8; 32],
    unpack: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct Gen {
    version: String,
    description: String,
    params: Vec<(String, i64)>,
    sources: Vec<GSource>,
    steps: Vec<GStep>,
}

fn ident() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,6}"
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9 \n]{0,40}"
}

fn abs_path() -> impl Strategy<Value = String> {
    prop::collection::vec(ident(), 1..4).prop_map(|parts| format!("/{}", parts.join("/")))
}

fn step() -> impl Strategy<Value = GStep> {
    prop_oneof![
        (
            abs_path(),
            prop::option::of(prop::sample::select(vec![0o700u32, 0o750, 0o755]))
        )
            .prop_map(|(path, mode)| GStep::Mkdir { path, mode }),
        (abs_path(), text()).prop_map(|(path, content)| GStep::File { path, content }),
        (abs_path(), abs_path()).prop_map(|(path, target)| GStep::Symlink { path, target }),
        (
            abs_path(),
            prop::collection::btree_map("[A-Z][A-Z0-9_]{0,5}", "[a-z0-9 ]{0,10}", 1..4)
        )
            .prop_map(|(path, vars)| GStep::Env {
                path,
                vars: vars.into_iter().collect()
            }),
    ]
}

fn recipe() -> impl Strategy<Value = Gen> {
    (
        "[0-9]\\.[0-9]{1,2}",
        "[a-z ]{0,20}",
        prop::collection::vec((ident(), any::<i64>()), 0..3),
        prop::collection::vec(
            (
                ident(),
                any::<[u8; 32]>(),
                prop::option::of(prop::sample::select(vec!["tar", "tar.gz", "zip"])),
            ),
            0..3,
        ),
        prop::collection::vec(step(), 0..5),
    )
        .prop_map(|(version, description, params, sources, steps)| {
            let mut seen = std::collections::BTreeSet::new();
            let params = params
                .into_iter()
                .filter(|(n, _)| seen.insert(format!("p{n}")))
                .map(|(n, v)| (format!("p{n}"), v))
                .collect();
            let mut seen = std::collections::BTreeSet::new();
            let sources = sources
                .into_iter()
                .filter(|(n, _, _)| seen.insert(n.clone()))
                .map(|(name, sha, unpack)| GSource { name, sha, unpack })
                .collect();
            // Distinct destinations, so the recipe is valid.
            let mut seen = std::collections::BTreeSet::new();
            let steps = steps
                .into_iter()
                .filter(|s| {
                    let p = match s {
                        GStep::Mkdir { path, .. }
                        | GStep::File { path, .. }
                        | GStep::Symlink { path, .. }
                        | GStep::Env { path, .. } => path.clone(),
                    };
                    seen.insert(p)
                })
                .collect();
            Gen {
                version,
                description,
                params,
                sources,
                steps,
            }
        })
}

/// How to write the TOML.
#[derive(Debug, Clone, Copy)]
struct Style {
    seed: u64,
    fancy: bool,
}

impl Style {
    fn next(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        if !self.fancy {
            return;
        }
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }

    fn string(&mut self, s: &str) -> String {
        if self.fancy && !s.contains('\'') && !s.contains('\n') && self.next().is_multiple_of(2) {
            format!("'{s}'")
        } else if self.fancy && s.contains('\n') {
            format!("\"\"\"\n{s}\"\"\"")
        } else {
            format!("{s:?}")
        }
    }

    fn gap(&mut self) -> &'static str {
        if !self.fancy {
            return "";
        }
        match self.next() % 4 {
            0 => "\n# a comment\n",
            1 => "\n\n",
            2 => "   # trailing comment\n",
            _ => "\n",
        }
    }

    fn eq(&mut self) -> &'static str {
        if self.fancy && self.next().is_multiple_of(2) {
            "   =  "
        } else {
            " = "
        }
    }

    /// Renders a table body: keys in (maybe) shuffled order.
    fn table(&mut self, mut kvs: Vec<(String, String)>) -> String {
        self.shuffle(&mut kvs);
        let mut out = String::new();
        for (k, v) in kvs {
            let eq = self.eq();
            out.push_str(&format!("{k}{eq}{v}"));
            out.push_str(if self.fancy { self.gap() } else { "\n" });
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }
}

fn render(g: &Gen, mut st: Style, urls: &[&str]) -> String {
    let mut out = String::new();
    let top = vec![
        ("name".to_string(), st.string("r")),
        ("version".to_string(), st.string(&g.version)),
        ("description".to_string(), st.string(&g.description)),
    ];
    out.push_str(&st.table(top));
    let mut params: Vec<_> = g.params.clone();
    st.shuffle(&mut params);
    // Some parameters as inline tables under one `[parameters]`, the rest as sub-tables.
    let (inline, tables): (Vec<_>, Vec<_>) = params
        .iter()
        .partition(|_| st.fancy && st.next().is_multiple_of(2));
    if !inline.is_empty() {
        out.push_str("\n[parameters]\n");
        for (name, default) in inline {
            out.push_str(&format!(
                "{name} = {{ default = {default}, type = \"integer\" }}\n"
            ));
        }
    }
    for (name, default) in tables {
        out.push_str(&format!("\n[parameters.{name}]\n"));
        let kv = vec![
            ("type".to_string(), "\"integer\"".to_string()),
            ("default".to_string(), default.to_string()),
        ];
        out.push_str(&st.table(kv));
    }
    for s in &g.sources {
        out.push_str("\n[[source]]\n");
        let mut kv = vec![
            ("name".to_string(), st.string(&s.name)),
            (
                "urls".to_string(),
                format!(
                    "[{}]",
                    urls.iter()
                        .map(|u| format!("\"{u}/{}\"", s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            (
                "sha256".to_string(),
                st.string(&Sha256Digest::from_bytes(s.sha).to_hex()),
            ),
        ];
        match s.unpack {
            Some(u) => kv.push(("unpack".into(), st.string(u))),
            None if st.fancy => kv.push(("unpack".into(), st.string("none"))),
            None => {}
        }
        out.push_str(&st.table(kv));
    }
    for step in &g.steps {
        out.push_str(&format!("{}[[step]]\n", st.gap()));
        let slash = |st: &mut Style, p: &str| {
            // A trailing slash or doubled slash normalises away.
            if st.fancy && st.next().is_multiple_of(3) {
                format!("{}/", p.replacen('/', "//", 1))
            } else {
                p.to_string()
            }
        };
        let kv = match step {
            GStep::Mkdir { path, mode } => {
                let p = slash(&mut st, path);
                let mut kv = vec![
                    ("kind".into(), "\"mkdir\"".into()),
                    ("path".into(), st.string(&p)),
                ];
                match mode {
                    Some(m) => kv.push(("mode".into(), format!("\"{m:04o}\""))),
                    None if st.fancy => kv.push(("mode".into(), "\"0755\"".into())),
                    None => {}
                }
                if st.fancy {
                    kv.push(("uid".into(), "0".into()));
                }
                kv
            }
            GStep::File { path, content } => vec![
                ("kind".into(), "\"file\"".into()),
                ("path".into(), st.string(path)),
                ("content".into(), st.string(content)),
            ],
            GStep::Symlink { path, target } => {
                let p = slash(&mut st, path);
                vec![
                    ("kind".into(), "\"symlink\"".into()),
                    ("path".into(), st.string(&p)),
                    ("target".into(), st.string(target)),
                ]
            }
            GStep::Env { path, vars } => {
                let mut vs: Vec<String> =
                    vars.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
                st.shuffle(&mut vs);
                vec![
                    ("kind".into(), "\"env-file\"".into()),
                    ("path".into(), st.string(path)),
                    ("vars".into(), format!("{{ {} }}", vs.join(", "))),
                ]
            }
        };
        out.push_str(&st.table(kv));
    }
    out
}

fn hash(text: &str) -> Result<Sha256Digest, String> {
    let r = Recipe::parse(&SourceFile::new("r.toml", text), "r")
        .map_err(|e| format!("{e}\n---\n{text}"))?;
    let params = r.resolve_parameters(&BTreeMap::new())?;
    let none = BTreeMap::new();
    Ok(recipe_hash(
        &r,
        &HashInputs {
            builder: BUILDER_VERSION,
            source_date_epoch: 315_532_800,
            parameters: &params,
            path_sources: &none,
            inputs: &none,
        },
    ))
}

/// One meaningful change to a recipe.
fn mutate(g: &Gen, which: usize) -> Option<Gen> {
    let mut m = g.clone();
    match which % 7 {
        0 => m.version.push('1'),
        1 => m.description.push('x'),
        2 => {
            let (_, v) = m.params.first_mut()?;
            *v = v.wrapping_add(1);
        }
        3 => m.sources.first_mut()?.sha[0] ^= 1,
        4 => {
            let s = m.sources.first_mut()?;
            s.unpack = if s.unpack == Some("zip") {
                Some("tar")
            } else {
                Some("zip")
            };
        }
        5 => match m.steps.first_mut()? {
            GStep::Mkdir { path, .. }
            | GStep::File { path, .. }
            | GStep::Symlink { path, .. }
            | GStep::Env { path, .. } => path.push('z'),
        },
        _ => match m.steps.first_mut()? {
            GStep::Mkdir { mode, .. } => {
                *mode = Some(if *mode == Some(0o700) { 0o750 } else { 0o700 })
            }
            GStep::File { content, .. } => content.push('!'),
            GStep::Symlink { target, .. } => target.push('z'),
            GStep::Env { vars, .. } => vars[0].1.push('z'),
        },
    }
    Some(m)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Failures are reported with their minimal input; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn formatting_comments_and_order_keep_the_hash(g in recipe(), seed in 1u64..) {
        let plain = render(&g, Style { seed, fancy: false }, &["https://a.example"]);
        let fancy = render(&g, Style { seed, fancy: true }, &["https://mirror.example/x", "https://b.example"]);
        let a = hash(&plain).map_err(TestCaseError::fail)?;
        let b = hash(&fancy).map_err(TestCaseError::fail)?;
        prop_assert_eq!(a, b, "plain:\n{}\nfancy:\n{}", plain, fancy);
    }

    #[test]
    fn meaningful_changes_change_the_hash(g in recipe(), which in 0usize..7, seed in 1u64..) {
        if let Some(m) = mutate(&g, which) {
            let a = hash(&render(&g, Style { seed, fancy: true }, &["https://a.example"])).map_err(TestCaseError::fail)?;
            let b = hash(&render(&m, Style { seed, fancy: true }, &["https://a.example"])).map_err(TestCaseError::fail)?;
            prop_assert_ne!(a, b);
        }
    }
}
