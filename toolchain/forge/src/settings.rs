//! Settings: flags over environment variables over platform.toml over defaults, resolved
//! once per command into typed values (raw flags in `cli`, resolved settings here, as
//! ripgrep's lowargs/hiargs and uv's settings.rs). Nothing else in the CLI reads the
//! environment or decides a default.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use forge_build::engine::BuildSettings;
use forge_exoscale::{Client, ClientOptions, Config};
use forge_fetch::FetchOptions;
use forge_project::{Definitions, Project, ProjectOptions};
use forge_schema::platform::Platform;
use forge_store::Store;
use forge_vault::Secret;

use crate::cli::{AccelArg, Cli, FetchOpts};
use crate::env::{self, Env};
use crate::printer::Printer;

/// What every command shares.
pub struct Globals {
    /// `-C DIR`, else the current directory.
    pub start_dir: PathBuf,
    /// `--variant`, else `FORGE_VARIANT`.
    pub variant: Option<String>,
    /// `--store`, else `FORGE_STORE`, else `$XDG_CACHE_HOME/forge/store` (`None` when no
    /// home is known either).
    pub store: Option<PathBuf>,
    pub printer: Printer,
    pub env: Env,
}

impl Globals {
    pub fn resolve(cli: &Cli, env: Env, printer: Printer) -> Result<Self> {
        let start_dir = match &cli.directory {
            Some(d) => d.clone(),
            None => std::env::current_dir().context("cannot read the current directory")?,
        };
        Ok(Self {
            start_dir,
            variant: cli.variant.clone().or_else(|| env.get(env::FORGE_VARIANT)),
            store: store_path(cli.store.as_deref(), &env),
            printer,
            env,
        })
    }

    /// The project around the start directory; `lockfile` (`--lock`) replaces its own.
    pub fn project(&self, lockfile: Option<&Path>) -> Result<Project> {
        Ok(Project::discover(
            &self.start_dir,
            &ProjectOptions {
                variant: self.variant.clone(),
                lockfile: lockfile.map(Path::to_path_buf),
            },
        )?)
    }

    pub fn store_path(&self) -> Result<&Path> {
        self.store.as_deref().ok_or_else(|| {
            anyhow!(
                "cannot find a store directory: set FORGE_STORE, XDG_CACHE_HOME or HOME, or pass --store"
            )
        })
    }

    /// The store, shared (`exclusive` for gc and repairs).
    pub fn open_store(&self, exclusive: bool) -> Result<Arc<Store>> {
        let path = self.store_path()?;
        let printer = self.printer.clone();
        let notice = move |msg: &str| printer.status("Blocking", msg);
        let store = if exclusive {
            Store::open_exclusive(path, &notice)
        } else {
            Store::open(path, &notice)
        };
        Ok(Arc::new(store.with_context(|| {
            format!("cannot open the store at `{}`", path.display())
        })?))
    }

    /// The async runtime of a command that talks to the network.
    pub fn runtime(&self) -> Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    }
}

/// `--store`, else `FORGE_STORE`, else `$XDG_CACHE_HOME/forge/store` (an absolute
/// `XDG_CACHE_HOME` only, as the XDG spec says), else `$HOME/.cache/forge/store`.
pub fn store_path(flag: Option<&Path>, env: &Env) -> Option<PathBuf> {
    if let Some(s) = flag {
        return Some(s.to_path_buf());
    }
    if let Some(s) = env.get(env::FORGE_STORE) {
        return Some(PathBuf::from(s));
    }
    xdg_dir(env, env::XDG_CACHE_HOME, ".cache").map(|c| c.join("forge").join("store"))
}

/// An XDG base directory: the variable when absolute, else `$HOME/<fallback>`.
fn xdg_dir(env: &Env, var: &str, fallback: &str) -> Option<PathBuf> {
    match env.get(var) {
        Some(d) if Path::new(&d).is_absolute() => Some(PathBuf::from(d)),
        _ => env.get(env::HOME).map(|h| PathBuf::from(h).join(fallback)),
    }
}

/// `-j`, else `FORGE_JOBS`, else the number of CPUs; at least 1.
pub fn jobs(flag: Option<usize>, env: &Env) -> usize {
    flag.or_else(|| env.get(env::FORGE_JOBS).and_then(|j| j.parse().ok()))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// How a build, lock or fetch gets its inputs.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub jobs: usize,
    /// `--source-dir` (repeated), then `FORGE_SOURCE_DIRS`.
    pub source_dirs: Vec<PathBuf>,
    pub offline: bool,
    /// `--debian-mirror`, else `FORGE_DEBIAN_MIRROR` (else, per suite, the host's apt
    /// sources: [`FetchSettings::debian_mirror`]).
    pub debian_mirror: Option<String>,
    /// `--debian-keyring`, else `FORGE_DEBIAN_KEYRING`, else Debian's keyring.
    pub debian_keyring: PathBuf,
    /// `--go-proxy`, else `GOPROXY` (else, when a recipe has Go module sources, what
    /// `go env GOPROXY` says: [`FetchSettings::go_proxy`]). `Some("")` means none.
    pub go_proxy: Option<String>,
    /// The PATH the image tools run with.
    pub tool_path: OsString,
}

impl FetchSettings {
    pub fn resolve(opts: &FetchOpts, offline: bool, env: &Env) -> Self {
        let mut source_dirs = opts.source_dirs.clone();
        if let Some(dirs) = env.get(env::FORGE_SOURCE_DIRS) {
            source_dirs.extend(dirs.split(':').filter(|d| !d.is_empty()).map(PathBuf::from));
        }
        Self {
            jobs: jobs(opts.jobs, env),
            source_dirs,
            offline: offline || opts.offline,
            debian_mirror: opts
                .debian_mirror
                .clone()
                .or_else(|| env.get(env::FORGE_DEBIAN_MIRROR)),
            debian_keyring: opts
                .debian_keyring
                .clone()
                .or_else(|| env.get(env::FORGE_DEBIAN_KEYRING).map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(forge_image::base::DEBIAN_KEYRING)),
            go_proxy: opts
                .go_proxy
                .clone()
                .or_else(|| env.get(env::GOPROXY))
                .map(|list| first_proxy(&list).unwrap_or_default()),
            tool_path: tool_path(env),
        }
    }

    /// The Go module proxy: the flag or `GOPROXY`, else, if a recipe has a Go module or
    /// go.sum source, the configuration of this host's Go (`go env GOPROXY`; the host's Go is
    /// asked for its configuration only, it never builds anything).
    pub fn go_proxy(&self, defs: Option<&Definitions>) -> Option<String> {
        if let Some(p) = &self.go_proxy {
            return (!p.is_empty()).then(|| p.clone());
        }
        let wanted = defs.is_some_and(|d| {
            d.recipes.values().any(|r| {
                r.sources.iter().any(|s| {
                    matches!(
                        s.kind,
                        forge_schema::recipe::SourceKind::GoModule(_)
                            | forge_schema::recipe::SourceKind::GoSum { .. }
                    )
                })
            })
        });
        if !wanted || self.offline {
            return None;
        }
        let out = std::process::Command::new("go")
            .args(["env", "GOPROXY"])
            .env("PATH", &self.tool_path)
            .output()
            .ok()?;
        first_proxy(String::from_utf8_lossy(&out.stdout).trim())
    }

    /// The Debian archive root for the project's images: the flag or variable, else the
    /// mirror of this host's apt sources that lists the images' suite.
    pub fn debian_mirror(&self, defs: Option<&Definitions>) -> Option<String> {
        self.debian_mirror.clone().or_else(|| {
            let suite = defs
                .and_then(|d| d.images.values().next())
                .map_or("bookworm", |i| i.base.suite.as_str());
            forge_debian::mirror::mirror_for(
                &forge_debian::mirror::host_sources(Path::new("/etc/apt")),
                suite,
            )
        })
    }

    pub fn build(&self, defs: Option<&Definitions>) -> BuildSettings {
        BuildSettings {
            jobs: self.jobs,
            fetch: FetchOptions {
                source_dirs: self.source_dirs.clone(),
                offline: self.offline,
                parallel: self.jobs.max(4),
                debian_mirror: self.debian_mirror(defs),
                go_proxy: self.go_proxy(defs),
                ..FetchOptions::default()
            },
        }
    }

    pub fn images(
        &self,
        defs: &Definitions,
        resolve: forge_image::run::Resolve,
    ) -> forge_image::run::ImageOptions {
        forge_image::run::ImageOptions {
            build: self.build(Some(defs)),
            mirror: self.debian_mirror(Some(defs)),
            keyring: self.debian_keyring.clone(),
            resolve,
            tool_path: self.tool_path.clone(),
        }
    }
}

/// The PATH external tools are found in and run with: forge's own, else the system's.
pub fn tool_path(env: &Env) -> OsString {
    env.get_os(env::PATH)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into())
}

/// The first proxy URL of a `GOPROXY` list (`,` or `|` separated; `direct` and `off`
/// are not proxies forge can use).
pub fn first_proxy(list: &str) -> Option<String> {
    list.split([',', '|'])
        .map(str::trim)
        .find(|p| p.starts_with("https://") || p.starts_with("http://") || p.starts_with("file://"))
        .map(|p| p.trim_end_matches('/').to_string())
}

/// `TMPDIR`, else `/tmp`.
pub fn temp_dir(env: &Env) -> PathBuf {
    env.get(env::TMPDIR)
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

/// `--accel`, else `FORGE_VM_ACCEL`, else auto.
pub fn vm_accel(flag: Option<AccelArg>, env: &Env) -> forge_image::vm::Accel {
    use forge_image::vm::Accel;
    match flag {
        Some(AccelArg::Kvm) => Accel::Kvm,
        Some(AccelArg::Tcg) => Accel::Tcg,
        Some(AccelArg::Auto) => Accel::Auto,
        None => match env.get(env::FORGE_VM_ACCEL).as_deref() {
            Some("kvm") => Accel::Kvm,
            Some("tcg") => Accel::Tcg,
            _ => Accel::Auto,
        },
    }
}

/// How forge reaches the Exoscale API for a platform.
#[derive(Debug, Clone)]
pub struct CloudSettings {
    pub config: Config,
    pub options: ClientOptions,
}

impl CloudSettings {
    /// Credentials and endpoints from the environment; `EXOSCALE_ZONE`, when set, must be
    /// the platform's zone (forge refuses to deploy a platform into another zone).
    pub fn resolve(env: &Env, platform: &Platform) -> Result<Self> {
        if let Some(z) = env.get(env::EXOSCALE_ZONE)
            && z != platform.zone
        {
            bail!(
                "EXOSCALE_ZONE is {z} but platform.toml deploys to {}: unset EXOSCALE_ZONE or change [platform] zone",
                platform.zone
            );
        }
        Ok(Self {
            config: Config::from_lookup(Some(&platform.zone), &env.lookup())?,
            options: ClientOptions::from_lookup(&env.lookup()),
        })
    }

    pub fn client(&self, zone: &str) -> Result<Client> {
        Ok(Client::for_zone(&self.config, zone, self.options.clone())?)
    }
}

/// Where the Vault stages find Vault and keep secrets.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub secrets_dir: PathBuf,
    /// `FORGE_AGE_IDENTITY`: decrypts an age-encrypted secrets directory.
    pub age_identity: Option<PathBuf>,
    /// `VAULT_ADDR`.
    pub addr: Option<String>,
    /// `VAULT_CACERT`.
    pub ca_cert: Option<PathBuf>,
    /// `VAULT_TOKEN`.
    pub token: Option<Secret>,
    /// `FORGE_SSH_IDENTITY`.
    pub ssh_identity: Option<PathBuf>,
}

impl VaultSettings {
    pub fn resolve(
        secrets_flag: Option<&Path>,
        env: &Env,
        root: &Path,
        platform: &Platform,
    ) -> Result<Self> {
        Ok(Self {
            secrets_dir: secrets_dir(secrets_flag, env, root, platform)?,
            age_identity: env.get(env::FORGE_AGE_IDENTITY).map(PathBuf::from),
            addr: env.get(env::VAULT_ADDR),
            ca_cert: env.get(env::VAULT_CACERT).map(PathBuf::from),
            token: env.get(env::VAULT_TOKEN).map(Secret::new),
            ssh_identity: env.get(env::FORGE_SSH_IDENTITY).map(PathBuf::from),
        })
    }
}

/// `--secrets-dir`, else `FORGE_SECRETS_DIR`, else platform.toml's `[secrets] dir`
/// (relative to the project root), else `$XDG_DATA_HOME/forge/secrets/<platform>`.
pub fn secrets_dir(flag: Option<&Path>, env: &Env, root: &Path, p: &Platform) -> Result<PathBuf> {
    if let Some(d) = flag {
        return Ok(d.to_path_buf());
    }
    if let Some(d) = env.get(env::FORGE_SECRETS_DIR) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = &p.secrets.dir {
        return Ok(root.join(d));
    }
    let data = xdg_dir(env, env::XDG_DATA_HOME, ".local/share").ok_or_else(|| {
        anyhow!(
            "cannot find a secrets directory: set FORGE_SECRETS_DIR, XDG_DATA_HOME or HOME, or pass --secrets-dir"
        )
    })?;
    Ok(data.join("forge/secrets").join(&p.name))
}

/// How an apply runs: `-j` calls in flight (1 to 32, default 4) and `--max-rounds`.
pub fn apply_jobs(flag: Option<usize>) -> usize {
    flag.unwrap_or(4).clamp(1, 32)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn platform(secrets_dir: Option<&str>) -> Platform {
        let mut text = String::from(
            "[platform]\nname = \"p\"\nzone = \"ch-gva-2\"\ndomain = \"p.example.net\"\nadmin-networks = [\"198.51.100.0/24\"]\n",
        );
        if let Some(d) = secrets_dir {
            text.push_str(&format!("\n[secrets]\ndir = \"{d}\"\n"));
        }
        Platform::parse(&forge_schema::SourceFile::new("platform.toml", text)).unwrap()
    }

    #[test]
    fn the_store_is_flag_then_variable_then_xdg_then_home() {
        let all = Env::from_pairs([
            ("FORGE_STORE", "/s/env"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(
            store_path(Some(Path::new("/s/flag")), &all),
            Some("/s/flag".into())
        );
        assert_eq!(store_path(None, &all), Some("/s/env".into()));
        let xdg = Env::from_pairs([("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(store_path(None, &xdg), Some("/xdg/forge/store".into()));
        // A relative XDG_CACHE_HOME is ignored, as the XDG spec says; so is an empty one.
        for bad in ["rel/cache", ""] {
            let env = Env::from_pairs([("XDG_CACHE_HOME", bad), ("HOME", "/home/u")]);
            assert_eq!(
                store_path(None, &env),
                Some("/home/u/.cache/forge/store".into())
            );
        }
        assert_eq!(store_path(None, &Env::default()), None);
    }

    #[test]
    fn jobs_come_from_the_flag_then_the_variable_and_are_at_least_one() {
        let env = Env::from_pairs([("FORGE_JOBS", "3")]);
        assert_eq!(jobs(Some(5), &env), 5);
        assert_eq!(jobs(None, &env), 3);
        assert_eq!(jobs(Some(0), &env), 1);
        let junk = Env::from_pairs([("FORGE_JOBS", "many")]);
        assert!(jobs(None, &junk) >= 1);
    }

    #[test]
    fn fetch_settings_merge_flags_and_variables() {
        let opts = FetchOpts {
            offline: false,
            source_dirs: vec!["/flag".into()],
            jobs: None,
            debian_mirror: None,
            debian_keyring: None,
            go_proxy: None,
        };
        let env = Env::from_pairs([
            ("GOPROXY", "https://proxy.invalid/go/,direct"),
            ("FORGE_SOURCE_DIRS", "/a::/b"),
            ("FORGE_DEBIAN_MIRROR", "http://mirror.invalid/debian"),
            ("PATH", "/opt/bin:/usr/bin"),
        ]);
        let s = FetchSettings::resolve(&opts, true, &env);
        assert_eq!(
            s.source_dirs,
            [PathBuf::from("/flag"), "/a".into(), "/b".into()]
        );
        assert!(s.offline, "--frozen makes a build offline");
        assert_eq!(
            s.debian_mirror(None).as_deref(),
            Some("http://mirror.invalid/debian")
        );
        assert_eq!(
            s.debian_keyring,
            PathBuf::from(forge_image::base::DEBIAN_KEYRING)
        );
        assert_eq!(s.tool_path, OsString::from("/opt/bin:/usr/bin"));
        // GOPROXY is a list: its first URL is the proxy; `off` alone means none.
        assert_eq!(
            s.go_proxy(None).as_deref(),
            Some("https://proxy.invalid/go")
        );
        let off = FetchSettings::resolve(&opts, false, &Env::from_pairs([("GOPROXY", "off")]));
        assert_eq!(off.go_proxy(None), None);
        assert_eq!(
            first_proxy("direct|file:///srv/mods"),
            Some("file:///srv/mods".into())
        );
        let flagged = FetchOpts {
            debian_mirror: Some("http://flag.invalid".into()),
            debian_keyring: Some("/k.gpg".into()),
            ..opts
        };
        let s = FetchSettings::resolve(&flagged, false, &env);
        assert_eq!(
            s.debian_mirror(None).as_deref(),
            Some("http://flag.invalid")
        );
        assert_eq!(s.debian_keyring, PathBuf::from("/k.gpg"));
        assert!(!s.offline);
    }

    #[test]
    fn the_secrets_directory_is_flag_variable_platform_then_xdg() {
        let root = Path::new("/project");
        let env = Env::from_pairs([
            ("FORGE_SECRETS_DIR", "/secrets/env"),
            ("XDG_DATA_HOME", "/data"),
            ("HOME", "/home/u"),
        ]);
        let p = platform(Some("secrets"));
        assert_eq!(
            secrets_dir(Some(Path::new("/flag")), &env, root, &p).unwrap(),
            PathBuf::from("/flag")
        );
        assert_eq!(
            secrets_dir(None, &env, root, &p).unwrap(),
            PathBuf::from("/secrets/env")
        );
        let env = Env::from_pairs([("XDG_DATA_HOME", "/data"), ("HOME", "/home/u")]);
        assert_eq!(
            secrets_dir(None, &env, root, &p).unwrap(),
            PathBuf::from("/project/secrets")
        );
        let p = platform(None);
        assert_eq!(
            secrets_dir(None, &env, root, &p).unwrap(),
            PathBuf::from("/data/forge/secrets/p")
        );
        let home = Env::from_pairs([("HOME", "/home/u")]);
        assert_eq!(
            secrets_dir(None, &home, root, &p).unwrap(),
            PathBuf::from("/home/u/.local/share/forge/secrets/p")
        );
        let e = secrets_dir(None, &Env::default(), root, &p).unwrap_err();
        assert!(e.to_string().contains("pass --secrets-dir"), "{e}");
    }

    #[test]
    fn the_cloud_refuses_another_zone_and_reads_its_test_knobs() {
        let p = platform(None);
        let env = Env::from_pairs([
            ("EXOSCALE_API_KEY", "EXOkey"),
            ("EXOSCALE_API_SECRET", "secret"),
            ("EXOSCALE_ZONE", "de-fra-1"),
        ]);
        let e = CloudSettings::resolve(&env, &p).unwrap_err();
        assert!(e.to_string().contains("EXOSCALE_ZONE is de-fra-1"), "{e}");
        let env = Env::from_pairs([
            ("EXOSCALE_KEY", "EXOkey"),
            ("EXOSCALE_SECRET", "secret"),
            ("FORGE_EXOSCALE_POLL_MIN_MS", "20"),
        ]);
        let c = CloudSettings::resolve(&env, &p).unwrap();
        assert_eq!(c.config.zone, "ch-gva-2");
        assert_eq!(c.config.credentials.key, "EXOkey");
        assert_eq!(
            c.options.poll.min_interval,
            std::time::Duration::from_millis(20)
        );
        let e = CloudSettings::resolve(&Env::default(), &p).unwrap_err();
        assert!(e.to_string().contains("EXOSCALE_API_KEY"), "{e}");
    }

    #[test]
    fn every_variable_the_exoscale_client_reads_is_registered() {
        for name in forge_exoscale::config::ENV_VARS {
            assert!(env::registered(name), "`{name}` is missing from env.rs");
        }
        // And the list is complete: a lookup that records what it was asked.
        let asked = std::sync::Mutex::new(Vec::new());
        let get = |n: &str| {
            asked.lock().unwrap().push(n.to_string());
            match n {
                "EXOSCALE_API_KEY" => Some("k".to_string()),
                "EXOSCALE_API_SECRET" => Some("s".to_string()),
                _ => None,
            }
        };
        let _ = Config::from_lookup(None, &get);
        let _ = ClientOptions::from_lookup(&get);
        for n in asked.lock().unwrap().iter() {
            assert!(
                forge_exoscale::config::ENV_VARS.contains(&n.as_str()),
                "`{n}` is read but not in forge_exoscale::config::ENV_VARS"
            );
        }
    }
}
