//! Parsing and checking recipes.
use super::*;
use crate::diag::Diagnostics;

fn parse(text: &str) -> Result<Recipe, Diagnostics> {
    Recipe::parse(&SourceFile::new("recipes/hello.toml", text), "hello")
}

const GOOD: &str = r#"
name = "hello"
version = "1.0"
description = "says hello"
inputs = ["base"]

[parameters.greeting]
type = "string"
default = "hi"

[[source]]
name = "text"
path = "files/hello.txt"

[[source]]
name = "tool"
urls = ["https://example.org/dl/tool-1.0.tar.gz?x=1"]
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
unpack = "tar.gz"
strip-components = 1

[[step]]
kind = "file"
path = "/usr/share/hello/hello.txt"
from = "text"

[[step]]
kind = "tree"
path = "/opt/tool"
from = "tool"
member = "bin"

[[step]]
kind = "unit"
name = "hello.service"
content = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
enable = true

[[step]]
kind = "mkdir"
path = "/var/lib/hello/"
mode = "0750"
"#;

#[test]
fn parses_and_normalises() {
    let r = parse(GOOD).unwrap();
    assert_eq!(r.name, "hello");
    assert_eq!(r.inputs, ["base"]);
    assert_eq!(r.sources[1].file_name, "tool-1.0.tar.gz");
    assert_eq!(r.sources[0].file_name, "hello.txt");
    assert_eq!(r.steps.len(), 4);
    match &r.steps[0].action {
        Action::File { mode, path, .. } => {
            assert_eq!(*mode, None);
            assert_eq!(path.relative(), "usr/share/hello/hello.txt");
        }
        other => panic!("{other:?}"),
    }
    match &r.steps[3].action {
        Action::Mkdir { mode, path, .. } => {
            assert_eq!(*mode, 0o750);
            assert_eq!(path.relative(), "var/lib/hello");
        }
        other => panic!("{other:?}"),
    }
}

fn first_error(text: &str) -> TomlError {
    parse(text).unwrap_err().errors.remove(0)
}

#[test]
fn unknown_top_level_key_suggests() {
    let e = first_error("name = \"hello\"\nversoin = \"1\"\n");
    assert!(e.message.contains("unknown field `versoin`"), "{e}");
    assert_eq!((e.line, e.col), (2, 1));
    assert_eq!(e.help.as_deref(), Some("did you mean `version`?"));
}

#[test]
fn wrong_field_for_kind() {
    let e = first_error(
        "name = \"hello\"\nversion = \"1\"\n[[step]]\nkind = \"file\"\npath = \"/x\"\ncontent = \"\"\ntarget = \"y\"\n",
    );
    assert!(
        e.message
            .contains("`target` is not a field of a `file` step"),
        "{e}"
    );
    assert_eq!((e.line, e.col), (7, 10));
}

#[test]
fn integer_mode_is_refused() {
    let e = first_error(
        "name = \"hello\"\nversion = \"1\"\n[[step]]\nkind = \"mkdir\"\npath = \"/x\"\nmode = 755\n",
    );
    assert!(e.message.contains("integer"), "{e}");
    assert_eq!(
        e.help.as_deref(),
        Some("write it as a string of octal digits, e.g. `mode = \"0755\"`")
    );
}

#[test]
fn url_source_needs_sha() {
    let e = first_error(
        "name = \"hello\"\nversion = \"1\"\n[[source]]\nname = \"x\"\nurls = [\"https://a/b\"]\n",
    );
    assert!(e.message.contains("no `sha256`"), "{e}");
}

#[test]
fn unknown_source_reference() {
    let e = first_error(
        "name = \"hello\"\nversion = \"1\"\n[[source]]\nname = \"text\"\npath = \"a\"\n[[step]]\nkind = \"file\"\npath = \"/x\"\nfrom = \"txt\"\n",
    );
    assert!(e.message.contains("no source named `txt`"), "{e}");
    assert_eq!(e.help.as_deref(), Some("did you mean `text`?"));
}

#[test]
fn name_must_match_file() {
    let e = Recipe::parse(
        &SourceFile::new("recipes/x.toml", "name = \"y\"\nversion = \"1\"\n"),
        "x",
    )
    .unwrap_err();
    assert!(e.errors[0].message.contains("in a file named `x.toml`"));
}

#[test]
fn parameters_resolve() {
    let r = parse(GOOD).unwrap();
    let v = r.resolve_parameters(&BTreeMap::new()).unwrap();
    assert_eq!(v["greeting"], ParamValue::String("hi".into()));
    let mut o = BTreeMap::new();
    o.insert("greting".to_string(), toml::Value::String("x".into()));
    assert!(
        r.resolve_parameters(&o)
            .unwrap_err()
            .contains("did you mean `greeting`")
    );
    let mut o = BTreeMap::new();
    o.insert("greeting".to_string(), toml::Value::Integer(1));
    assert!(
        r.resolve_parameters(&o)
            .unwrap_err()
            .contains("expected a value of type `string`")
    );
}

#[test]
fn url_file_names() {
    assert_eq!(
        url_file_name("https://a/b/c.tgz?x#y").as_deref(),
        Some("c.tgz")
    );
    assert_eq!(url_file_name("https://a/"), None);
    assert_eq!(url_file_name("https://a"), None);
}

const BUILD: &str = "name = \"hello\"\nversion = \"1\"\ntools = [\"go\", \"busybox\", \"go\"]\n[[source]]\nname = \"src\"\npath = \"src\"\n[[step]]\nkind = \"build\"\npath = \"/usr/bin\"\nsources = [\"src\"]\ncommand = [\"go\", \"build\", \"-o\", \"/out/hello\", \".\"]\nenv = { CGO_ENABLED = \"0\" }\n";

#[test]
fn a_build_step_parses_with_its_tools() {
    let r = parse(BUILD).unwrap();
    assert_eq!(r.tools, ["busybox", "go"]);
    assert!(r.inputs.is_empty());
    match &r.steps[0].action {
        Action::Build {
            run: Run::Command(argv),
            sources,
            env,
            template,
            ..
        } => {
            assert_eq!(argv[0], "go");
            assert_eq!(sources, &["src"]);
            assert_eq!(env["CGO_ENABLED"], "0");
            assert!(!template);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn build_step_mistakes_are_named_where_they_are() {
    // No tools: nothing to run the program with.
    let e = first_error(&BUILD.replace("tools = [\"go\", \"busybox\", \"go\"]\n", ""));
    assert!(e.message.contains("this recipe has none"), "{e}");
    // The sandbox's own variables cannot be set.
    let e = first_error(&BUILD.replace("CGO_ENABLED", "PATH"));
    assert!(e.message.contains("`PATH` is set by the sandbox"), "{e}");
    assert_eq!((e.line, e.col), (12, 9));
    // A source that does not exist, with a suggestion.
    let e = first_error(&BUILD.replace("sources = [\"src\"]", "sources = [\"srcs\"]"));
    assert!(e.message.contains("no source named `srcs`"), "{e}");
    assert_eq!(e.help.as_deref(), Some("did you mean `src`?"));
    // Both a command and a script, or neither.
    let e = first_error(&BUILD.replace("env =", "script = \"make\"\nenv ="));
    assert!(e.message.contains("`command` or `script`, not both"), "{e}");
    let e = first_error(&BUILD.replace(
        "command = [\"go\", \"build\", \"-o\", \"/out/hello\", \".\"]\n",
        "",
    ));
    assert!(e.message.contains("needs `command` or `script`"), "{e}");
    let e = first_error(&BUILD.replace("[\"go\", \"build\", \"-o\", \"/out/hello\", \".\"]", "[]"));
    assert!(e.message.contains("`command` is empty"), "{e}");
}

#[test]
fn go_sources_parse_and_their_mistakes_are_named() {
    let text = "name = \"hello\"\nversion = \"1\"\n[[source]]\nname = \"go\"\ngo-module = \"golang.org/toolchain\"\nversion = \"v0.0.1-go1.18.2.linux-amd64\"\nh1 = \"h1:pxDmqemSKnjdHq87KPhXycuoRsVt7aqvH/HuRILWGNI=\"\n[[source]]\nname = \"mods\"\ngo-sum = \"go/app/go.sum\"\n";
    let r = parse(text).unwrap();
    match &r.sources[0].kind {
        SourceKind::GoModule(g) => assert_eq!(g.path, "golang.org/toolchain"),
        other => panic!("{other:?}"),
    }
    // The zip's `module@version/` directory is stripped: two path segments here.
    assert_eq!(r.sources[0].strip_components, 2);
    assert_eq!(r.sources[0].unpack, Unpack::Zip);
    assert!(matches!(r.sources[1].kind, SourceKind::GoSum { .. }));
    assert!(r.sources[1].may_have_members());
    let e = first_error(&text.replace("h1:pxDm", "sha256:pxDm"));
    assert!(e.message.contains("is not an `h1:` hash"), "{e}");
    let e =
        first_error(&text.replace("version = \"v0.0.1", "unpack = \"zip\"\nversion = \"v0.0.1"));
    assert!(
        e.message
            .contains("`unpack` does not apply to a `go-module` source"),
        "{e}"
    );
    let e = first_error(&text.replace("go/app/go.sum", "go/app/go.mod"));
    assert!(e.message.contains("is not a go.sum file"), "{e}");
    let e = first_error(&text.replace(
        "h1 = \"h1:pxDmqemSKnjdHq87KPhXycuoRsVt7aqvH/HuRILWGNI=\"\n",
        "",
    ));
    assert!(e.message.contains("has no `h1`"), "{e}");
}
