//! `build` steps in the real sandbox (bubblewrap): what the program sees (only its tools,
//! its sources read-only, `$out`, a fixed environment, no network), what happens when it
//! fails (the last lines shown, the log kept, nothing registered), and that its output is
//! normalised like every layer (same bytes from another directory, umask and store).
//!
//! The tool is the host's statically linked busybox (Debian's `busybox-static`, which
//! `toolchain/setup-host.sh` installs), copied into each test project as a path source.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use forge_build::BuildError;
use forge_build::engine::{BuildSettings, Silent, build};
use forge_build::plan::Plan;
use forge_fetch::FetchOptions;
use forge_project::Project;
use forge_schema::recipe::Unpack;
use forge_store::Store;

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "cat", "ls", "mkdir", "cp", "chmod", "touch", "echo", "env", "id", "hostname", "nc",
    "seq", "printf", "test", "sort", "head", "ln", "pwd",
];

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A project with the busybox tool recipe and `recipe` (the text of `recipes/NAME.toml`).
fn project(dir: &Path, name: &str, recipe: &str) {
    std::fs::create_dir_all(dir.join("tools")).unwrap();
    std::fs::copy(BUSYBOX, dir.join("tools/busybox")).unwrap_or_else(|e| {
        panic!("{BUSYBOX}: {e} (install Debian's busybox-static: toolchain/setup-host.sh)")
    });
    let mut bb = String::from(
        "name = \"busybox\"\nversion = \"1\"\n\n[[source]]\nname = \"bin\"\npath = \"tools/busybox\"\n\n[[step]]\nkind = \"file\"\npath = \"/bin/busybox\"\nfrom = \"bin\"\nmode = \"0755\"\n",
    );
    for a in APPLETS {
        bb.push_str(&format!(
            "\n[[step]]\nkind = \"symlink\"\npath = \"/bin/{a}\"\ntarget = \"busybox\"\n"
        ));
    }
    write(dir, "recipes/busybox.toml", &bb);
    write(dir, "files/input.txt", "from the project\n");
    write(dir, &format!("recipes/{name}.toml"), recipe);
}

/// A recipe with one `build` step running `script`, with the `input` source mounted.
fn script_recipe(name: &str, script: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"2.0\"\ntools = [\"busybox\"]\n\n[[source]]\nname = \"input\"\npath = \"files/input.txt\"\n\n[[step]]\nkind = \"build\"\npath = \"/opt/{name}\"\nsources = [\"input\"]\nenv = {{ GREETING = \"hello\" }}\nscript = '''\n{script}\n'''\n"
    )
}

fn plan(dir: &Path) -> Arc<Plan> {
    let p = Project::open(dir, None, None).unwrap();
    Arc::new(Plan::resolve(&p, None).unwrap())
}

fn settings() -> BuildSettings {
    BuildSettings {
        jobs: 2,
        fetch: FetchOptions {
            offline: true,
            ..FetchOptions::default()
        },
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn run(plan: &Arc<Plan>, store: &Arc<Store>, name: &str) -> Result<PathBuf, BuildError> {
    let built = rt().block_on(build(
        plan,
        store,
        &[name.to_string()],
        &settings(),
        Arc::new(Silent),
    ))?;
    let o = built.iter().find(|o| o.name == name).unwrap();
    Ok(o.path.clone())
}

/// The layer unpacked into a new directory.
fn unpack(layer: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    forge_archive::unpack(
        layer,
        Unpack::TarZst,
        0,
        d.path(),
        &Default::default(),
        "layer",
    )
    .unwrap();
    d
}

#[test]
fn a_build_step_sees_only_its_tools_sources_and_fixed_environment() {
    let d = tempfile::tempdir().unwrap();
    let script = r#"
cat /src/input > $out/input.txt
env | sort > $out/env.txt
id -u > $out/uid.txt
hostname > $out/hostname.txt
ls / > $out/root.txt
pwd > $out/pwd.txt
if touch /etc/x 2>/dev/null; then echo wrote > $out/etc.txt; fi
if touch /src/input 2>/dev/null; then echo wrote > $out/src.txt; fi
mkdir -p $out/bin
printf '#!/bin/sh\necho hi\n' > $out/bin/hi
chmod 700 $out/bin/hi
"#;
    project(d.path(), "probe", &script_recipe("probe", script));
    let plan = plan(d.path());
    let sd = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(sd.path(), &|_| {}).unwrap());
    let layer = run(&plan, &store, "probe").unwrap();
    let out = unpack(&layer);
    let read = |p: &str| std::fs::read_to_string(out.path().join("opt/probe").join(p)).unwrap();
    assert_eq!(read("input.txt"), "from the project\n");
    assert_eq!(read("uid.txt"), "1000\n");
    assert_eq!(read("hostname.txt"), "forge-build\n");
    assert_eq!(read("pwd.txt"), "/build\n");
    assert_eq!(
        read("root.txt"),
        "bin\nbuild\ndev\netc\nout\nproc\nsrc\ntmp\n"
    );
    let env = read("env.txt");
    for line in [
        "GREETING=hello",
        "HOME=/build/home",
        "LC_ALL=C.UTF-8",
        "PATH=/bin",
        "SOURCE_DATE_EPOCH=315532800",
        "TMPDIR=/build/tmp",
        "TZ=UTC",
        "USER=forge",
        "out=/out",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing in:\n{env}");
    }
    // Nothing of the host's environment leaks in.
    assert!(!env.contains("CARGO"), "{env}");
    // The root and the sources are read-only.
    assert!(!out.path().join("opt/probe/etc.txt").exists());
    assert!(!out.path().join("opt/probe/src.txt").exists());
    // Modes are normalised: an executable is 0755 whatever the step set.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.path().join("opt/probe/bin/hi"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    // The tool is not part of the layer: only what the step wrote.
    assert!(!out.path().join("bin/busybox").exists());
    // The log is kept beside the output.
    let hash = plan.recipes["probe"].hash;
    assert!(store.log_path(&hash, 1).is_file());
}

#[test]
fn the_sandbox_has_no_network() {
    let d = tempfile::tempdir().unwrap();
    // (busybox's nc: its static wget crashes without the NSS modules of a full root)
    let script = "echo GET | nc -w 5 192.0.2.1 80 > $out/page";
    project(d.path(), "net", &script_recipe("net", script));
    let plan = plan(d.path());
    let sd = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(sd.path(), &|_| {}).unwrap());
    let e = run(&plan, &store, "net").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, BuildError::StepFailed(_)), "{msg}");
    assert!(msg.contains("the sandbox has no network"), "{msg}");
    assert!(store.output(&plan.recipes["net"].hash).unwrap().is_none());
}

#[test]
fn a_failing_step_shows_its_last_lines_keeps_its_log_and_registers_nothing() {
    let d = tempfile::tempdir().unwrap();
    let script = "for i in $(seq 1 40); do echo line $i; done\necho half > $out/partial\nexit 3";
    project(d.path(), "fails", &script_recipe("fails", script));
    let plan = plan(d.path());
    let sd = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(sd.path(), &|_| {}).unwrap());
    let e = run(&plan, &store, "fails").unwrap_err();
    let BuildError::StepFailed(ref f) = e else {
        panic!("{e}");
    };
    let (status, tail, log, location) = (&f.status, &f.tail, &f.log, &f.location);
    assert!(status.contains('3'), "{status}");
    assert!(location.starts_with("recipes/fails.toml:"), "{location}");
    assert!(tail.contains("| line 40"), "{tail}");
    assert!(!tail.contains("| line 15\n"), "only the last lines: {tail}");
    let kept = std::fs::read_to_string(log).unwrap();
    assert!(kept.starts_with("line 1\n"), "{kept}");
    assert!(log.starts_with(store.root()), "{}", log.display());
    assert!(store.output(&plan.recipes["fails"].hash).unwrap().is_none());
    // The tool it ran with was built and registered; the failed recipe was not.
    assert!(
        store
            .output(&plan.recipes["busybox"].hash)
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_program_no_tool_provides_is_named_before_anything_runs() {
    let d = tempfile::tempdir().unwrap();
    let recipe = "name = \"gobuild\"\nversion = \"1\"\ntools = [\"busybox\"]\n\n[[step]]\nkind = \"build\"\npath = \"/usr/local/bin\"\ncommand = [\"go\", \"build\", \"-o\", \"/out/x\"]\n";
    project(d.path(), "gobuild", recipe);
    let plan = plan(d.path());
    let sd = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(sd.path(), &|_| {}).unwrap());
    let e = run(&plan, &store, "gobuild").unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, BuildError::ToolMissing { program, .. } if program == "go"),
        "{msg}"
    );
    assert!(
        msg.contains("add the recipe that installs `go` to `tools`"),
        "{msg}"
    );

    // In a script, the shell's 127 gets the same advice.
    let d = tempfile::tempdir().unwrap();
    project(
        d.path(),
        "cc",
        &script_recipe("cc", "gcc --version > $out/v"),
    );
    let plan = self::plan(d.path());
    let e = run(&plan, &store, "cc").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("status 127 means a command was not found"),
        "{msg}"
    );
}

#[test]
fn the_layer_is_the_same_from_another_directory_umask_and_store() {
    let script = "mkdir -p $out/a/b\necho data > $out/a/b/file\nchmod 600 $out/a/b/file\ntouch $out/empty\nln -s b/file $out/a/link";
    let build_in = |umask: &str| {
        let d = tempfile::tempdir().unwrap();
        project(d.path(), "same", &script_recipe("same", script));
        let plan = plan(d.path());
        let sd = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(sd.path(), &|_| {}).unwrap());
        // The umask of the process running forge must not reach the output.
        let old = rustix_umask(umask);
        let layer = run(&plan, &store, "same");
        rustix_umask(&old);
        let layer = layer.unwrap();
        (
            plan.recipes["same"].hash,
            forge_store::fsutil::hash_file(&layer).unwrap().0,
        )
    };
    let (h1, l1) = build_in("022");
    let (h2, l2) = build_in("077");
    assert_eq!(h1, h2, "the recipe hash depends on the directory");
    assert_eq!(l1, l2, "the layer depends on the directory, umask or store");
}

/// Sets the process umask (for every thread of this test process) and returns the old one.
fn rustix_umask(mask: &str) -> String {
    let old = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string()))
        .unwrap();
    let m = u32::from_str_radix(mask, 8).unwrap();
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(m));
    old
}

#[test]
fn tools_are_built_first_change_the_hash_and_are_not_layers_of_an_image() {
    use forge_build::plan::{build_closure, closure, dependents};
    let d = tempfile::tempdir().unwrap();
    project(d.path(), "app", &script_recipe("app", "echo x > $out/x"));
    let p = plan(d.path());
    // An image that takes `app` takes only `app`; building it needs busybox first.
    assert_eq!(closure(&p, &["app".into()]), ["app"]);
    assert_eq!(build_closure(&p, &["app".into()]), ["busybox", "app"]);
    let deps = dependents(&p, &["busybox".into()]);
    assert!(deps.contains("app"), "{deps:?}");
    let locked = p.locked_entry("app", None).unwrap();
    assert_eq!(locked.tools, ["busybox"]);
    // Another tool (here: one more applet) is another recipe hash.
    let before = p.recipes["app"].hash;
    let bb = std::fs::read_to_string(d.path().join("recipes/busybox.toml")).unwrap();
    write(
        d.path(),
        "recipes/busybox.toml",
        &format!("{bb}\n[[step]]\nkind = \"symlink\"\npath = \"/bin/tr\"\ntarget = \"busybox\"\n"),
    );
    assert_ne!(plan(d.path()).recipes["app"].hash, before);
}

fn go_proxy() -> String {
    forge_test_support::go::proxy()
}

/// The Go 1.18.2 toolchain, a module of the proxy pinned by its go.sum hash (notes: the
/// zip carries no modes, so the tree step marks the programs executable).
const GO_RECIPE: &str = r#"
name = "go"
version = "1.18.2"

[[source]]
name = "toolchain"
go-module = "golang.org/toolchain"
version = "v0.0.1-go1.18.2.linux-amd64"
h1 = "h1:pxDmqemSKnjdHq87KPhXycuoRsVt7aqvH/HuRILWGNI="

[[step]]
kind = "tree"
path = "/usr/local/go"
from = "toolchain"
executable = ["bin/*", "pkg/tool/*/*"]

[[step]]
kind = "symlink"
path = "/usr/local/bin/go"
target = "/usr/local/go/bin/go"
"#;

/// The C library the `go` command is linked against (the official Go builds of `cmd/go`
/// are dynamically linked), copied from this Debian 12 host into a tool recipe.
fn libc_recipe(dir: &Path) {
    const LIB: &str = "/lib/x86_64-linux-gnu";
    let mut recipe = String::from("name = \"libc\"\nversion = \"host\"\n");
    for f in ["ld-linux-x86-64.so.2", "libc.so.6", "libpthread.so.0"] {
        std::fs::create_dir_all(dir.join("libc")).unwrap();
        std::fs::copy(Path::new(LIB).join(f), dir.join("libc").join(f)).unwrap();
        recipe.push_str(&format!(
            "\n[[source]]\nname = \"{f}\"\npath = \"libc/{f}\"\n\n[[step]]\nkind = \"file\"\npath = \"{LIB}/{f}\"\nfrom = \"{f}\"\nmode = \"0755\"\n"
        ));
    }
    recipe.push_str(&format!(
        "\n[[step]]\nkind = \"symlink\"\npath = \"/lib64/ld-linux-x86-64.so.2\"\ntarget = \"{LIB}/ld-linux-x86-64.so.2\"\n"
    ));
    write(dir, "recipes/libc.toml", &recipe);
}

/// A project with `recipe` and the tools of a Go build: busybox, the toolchain, libc.
fn go_project(dir: &Path, name: &str, recipe: &str) {
    project(dir, name, recipe);
    write(dir, "recipes/go.toml", GO_RECIPE);
    libc_recipe(dir);
}

/// Settings that fetch Go modules from the machine's proxy.
fn go_settings(jobs: usize) -> BuildSettings {
    BuildSettings {
        jobs,
        fetch: FetchOptions {
            go_proxy: Some(go_proxy()),
            ..FetchOptions::default()
        },
    }
}

#[test]
fn a_go_program_builds_with_the_pinned_toolchain_offline_and_reproducibly() {
    let d = tempfile::tempdir().unwrap();
    let recipe = r#"
name = "hello"
version = "1.0.0"
tools = ["go", "busybox", "libc"]

[[source]]
name = "app"
path = "app"

[[step]]
kind = "build"
path = "/usr/bin"
sources = ["app"]
template = true
env = { CGO_ENABLED = "0", GOFLAGS = "-trimpath -buildvcs=false -mod=mod", GOPROXY = "off" }
script = """
cd /src/app
go version > $out/go-version
go build -ldflags "-buildid= -X main.version={{ recipe.version }}" -o $out/hello .
"""
"#;
    go_project(d.path(), "hello", recipe);
    write(
        d.path(),
        "app/go.mod",
        "module example.com/hello\n\ngo 1.18\n",
    );
    write(
        d.path(),
        "app/main.go",
        "package main\n\nimport \"fmt\"\n\nvar version = \"dev\"\n\nfunc main() { fmt.Println(\"hello from go\", version) }\n",
    );
    let plan = plan(d.path());
    let build_once = |store: &Arc<Store>| {
        let built = rt()
            .block_on(build(
                &plan,
                store,
                &["hello".into()],
                &go_settings(2),
                Arc::new(Silent),
            ))
            .unwrap();
        built
            .iter()
            .find(|o| o.name == "hello")
            .unwrap()
            .record
            .layer_sha256
    };
    let s1 = tempfile::tempdir().unwrap();
    let store1 = Arc::new(Store::open(s1.path(), &|_| {}).unwrap());
    let layer = build_once(&store1);
    let out = unpack(&store1.blob_path(&layer));
    let version = std::fs::read_to_string(out.path().join("usr/bin/go-version")).unwrap();
    assert!(
        version.starts_with("go version go1.18.2 linux/amd64"),
        "{version}"
    );
    // A static program: it runs on the host as it will in an image.
    let run = std::process::Command::new(out.path().join("usr/bin/hello"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "hello from go 1.0.0\n"
    );

    // Again in a fresh store, offline, with the toolchain taken from the first store (as
    // `--check` does) and one job instead of two: the same layer.
    let s2 = tempfile::tempdir().unwrap();
    let store2 = Arc::new(Store::open(s2.path(), &|_| {}).unwrap());
    let settings = BuildSettings {
        jobs: 1,
        fetch: FetchOptions {
            upstream: Some(store1.clone()),
            offline: true,
            ..FetchOptions::default()
        },
    };
    let again = rt()
        .block_on(build(
            &plan,
            &store2,
            &["hello".into()],
            &settings,
            Arc::new(Silent),
        ))
        .unwrap();
    let again = again.iter().find(|o| o.name == "hello").unwrap();
    assert!(!again.cached);
    assert_eq!(
        again.record.layer_sha256, layer,
        "the Go build is not reproducible"
    );
}

/// rsc.io/quote v1.5.2 and what it needs, as `go mod tidy` pins them.
const QUOTE_GO_SUM: &str = "golang.org/x/text v0.0.0-20170915032832-14c0d48ead0c h1:qgOY6WgZOaTkIIMiVjBQcw93ERBE4m30iBm00nkL0i8=
golang.org/x/text v0.0.0-20170915032832-14c0d48ead0c/go.mod h1:NqM8EUOU14njkJ3fqMW+pc6Ldnwhi/IjpwHt7yyuwOQ=
rsc.io/quote v1.5.2 h1:w5fcysjrx7yqtD/aO+QwRjYZOKnaM9Uh2b40tElTs3Y=
rsc.io/quote v1.5.2/go.mod h1:LzX7hefJvL54yjefDEDHNONDjII0t9xZLPXsUe+TKr0=
rsc.io/sampler v1.3.0 h1:7uVkIFmeBqHfdjD+gZwtXXI+RODJ2Wc4O7MPEh/QiW4=
rsc.io/sampler v1.3.0/go.mod h1:T1hPZKmBbMNahiBKFy5HrXp6adAjACjK9JXDnKaTXpA=
";

#[test]
fn a_go_program_with_dependencies_builds_from_its_go_sum_without_network() {
    let d = tempfile::tempdir().unwrap();
    let recipe = r#"
name = "quote"
version = "1.0.0"
tools = ["go", "busybox", "libc"]

[[source]]
name = "app"
path = "app"

[[source]]
name = "modules"
go-sum = "app/go.sum"

[[step]]
kind = "build"
path = "/usr/bin"
sources = ["app", "modules"]
env = { CGO_ENABLED = "0", GOFLAGS = "-trimpath -buildvcs=false -mod=mod", GOPROXY = "file:///src/modules", GOSUMDB = "off" }
script = "cd /src/app && go build -ldflags=-buildid= -o $out/quote ."
"#;
    go_project(d.path(), "quote", recipe);
    write(
        d.path(),
        "app/go.mod",
        "module example.com/hello\n\ngo 1.18\n\nrequire rsc.io/quote v1.5.2\n\nrequire (\n\tgolang.org/x/text v0.0.0-20170915032832-14c0d48ead0c // indirect\n\trsc.io/sampler v1.3.0 // indirect\n)\n",
    );
    write(d.path(), "app/go.sum", QUOTE_GO_SUM);
    write(
        d.path(),
        "app/main.go",
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"rsc.io/quote\"\n)\n\nfunc main() { fmt.Println(quote.Hello()) }\n",
    );
    // A line that is not a go.sum line is named by file and line.
    write(
        d.path(),
        "app/go.sum",
        &format!("{QUOTE_GO_SUM}rsc.io/x v1\n"),
    );
    let p = Project::open(d.path(), None, None).unwrap();
    let e = Plan::resolve(&p, None).unwrap_err().to_string();
    assert!(
        e.contains("app/go.sum:7: expected `module version h1:hash`"),
        "{e}"
    );
    write(d.path(), "app/go.sum", QUOTE_GO_SUM);
    let plan = plan(d.path());
    // The lockfile lists every module the go.sum pins (and so `forge gc` keeps them).
    let locked = plan.locked_entry("quote", None).unwrap();
    let source = locked.sources.iter().find(|s| s.name == "modules").unwrap();
    let modules = &source.modules;
    assert_eq!(modules.len(), 6);
    assert_eq!(
        modules[0],
        "golang.org/x/text v0.0.0-20170915032832-14c0d48ead0c h1:qgOY6WgZOaTkIIMiVjBQcw93ERBE4m30iBm00nkL0i8="
    );
    assert_eq!(source.module_record_keys().count(), 6);
    let sd = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(sd.path(), &|_| {}).unwrap());
    let settings = go_settings(2);
    let built = rt()
        .block_on(build(
            &plan,
            &store,
            &["quote".into()],
            &settings,
            Arc::new(Silent),
        ))
        .unwrap();
    let layer = &built.iter().find(|o| o.name == "quote").unwrap().path;
    let out = unpack(layer);
    // rsc.io/sampler picks the greeting by the locale.
    let run = std::process::Command::new(out.path().join("usr/bin/quote"))
        .env_clear()
        .env("LANG", "en_US.UTF-8")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "Hello, world.\n");

    // A go.sum whose pin does not match what the proxy serves: both hashes, nothing built.
    let wrong = QUOTE_GO_SUM.replace(
        "h1:7uVkIFmeBqHfdjD+gZwtXXI+RODJ2Wc4O7MPEh/QiW4=",
        "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    write(d.path(), "app/go.sum", &wrong);
    let plan = self::plan(d.path());
    let e = rt()
        .block_on(build(
            &plan,
            &store,
            &["quote".into()],
            &settings,
            Arc::new(Silent),
        ))
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("rsc.io/sampler@v1.3.0: h1 mismatch"), "{msg}");
    assert!(
        msg.contains("h1:7uVkIFmeBqHfdjD+gZwtXXI+RODJ2Wc4O7MPEh/QiW4="),
        "{msg}"
    );

    // A go.sum that leaves out a module the build needs: the build fails offline, and
    // what it shows names the module.
    let missing: String = QUOTE_GO_SUM
        .lines()
        .filter(|l| !l.starts_with("rsc.io/sampler"))
        .map(|l| format!("{l}\n"))
        .collect();
    write(d.path(), "app/go.sum", &missing);
    let plan = self::plan(d.path());
    let e = rt()
        .block_on(build(
            &plan,
            &store,
            &["quote".into()],
            &settings,
            Arc::new(Silent),
        ))
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, BuildError::StepFailed(_)), "{msg}");
    assert!(msg.contains("rsc.io/sampler"), "{msg}");
}
