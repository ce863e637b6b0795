//! Every environment variable forge reads, in one registry, and the one place that reads
//! the process environment ([`Env::from_process`]). `docs/environment.md` is generated from
//! the registry (a test keeps the two in step, and another that no other file reads the
//! environment).

use std::collections::BTreeMap;
use std::ffi::OsString;

/// One environment variable.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    pub name: &'static str,
    pub description: &'static str,
}

pub const FORGE_STORE: &str = "FORGE_STORE";
pub const FORGE_SOURCE_DIRS: &str = "FORGE_SOURCE_DIRS";
pub const FORGE_LOG: &str = "FORGE_LOG";
pub const FORGE_JOBS: &str = "FORGE_JOBS";
pub const NO_COLOR: &str = "NO_COLOR";
pub const FORGE_DEBIAN_MIRROR: &str = "FORGE_DEBIAN_MIRROR";
pub const FORGE_DEBIAN_KEYRING: &str = "FORGE_DEBIAN_KEYRING";
pub const FORGE_VM_ACCEL: &str = "FORGE_VM_ACCEL";
pub const FORGE_VARIANT: &str = "FORGE_VARIANT";
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
pub const HOME: &str = "HOME";
pub const XDG_DATA_HOME: &str = "XDG_DATA_HOME";
pub const FORGE_SECRETS_DIR: &str = "FORGE_SECRETS_DIR";
pub const FORGE_AGE_IDENTITY: &str = "FORGE_AGE_IDENTITY";
pub const VAULT_ADDR: &str = "VAULT_ADDR";
pub const FORGE_SSH_IDENTITY: &str = "FORGE_SSH_IDENTITY";
pub const VAULT_CACERT: &str = "VAULT_CACERT";
pub const VAULT_TOKEN: &str = "VAULT_TOKEN";
pub const ETCDCTL_CACERT: &str = "ETCDCTL_CACERT";
pub const ETCDCTL_CERT: &str = "ETCDCTL_CERT";
pub const ETCDCTL_KEY: &str = "ETCDCTL_KEY";
pub const EXOSCALE_ZONE: &str = "EXOSCALE_ZONE";
pub const PATH: &str = "PATH";
pub const TMPDIR: &str = "TMPDIR";
pub const GOPROXY: &str = "GOPROXY";

/// The registry.
pub const ALL: &[EnvVar] = &[
    EnvVar {
        name: FORGE_STORE,
        description: "Store directory, as `--store`. Default: `$XDG_CACHE_HOME/forge/store`.",
    },
    EnvVar {
        name: FORGE_SOURCE_DIRS,
        description: "Colon-separated directories searched for sources (by sha256 and by file name) before any URL, as repeated `--source-dir`.",
    },
    EnvVar {
        name: FORGE_JOBS,
        description: "Default for `-j/--jobs` of `build`, `lock` and `fetch`: recipes built at once. Default: the number of CPUs.",
    },
    EnvVar {
        name: FORGE_DEBIAN_MIRROR,
        description: "Debian archive root URL for image package sets, as `--debian-mirror`. Default: the mirror of the host's apt sources for the image's suite.",
    },
    EnvVar {
        name: FORGE_DEBIAN_KEYRING,
        description: "Keyring the archive's InRelease must verify against, as `--debian-keyring`. Default: `/usr/share/keyrings/debian-archive-keyring.gpg`.",
    },
    EnvVar {
        name: GOPROXY,
        description: "Go module proxy list, as Go reads it; forge uses its first URL for Go module sources, as `--go-proxy`. Default: what `go env GOPROXY` says (the host's Go is asked for its configuration only).",
    },
    EnvVar {
        name: FORGE_VARIANT,
        description: "Variant to load over the project, as `--variant` (`variants/NAME/`).",
    },
    EnvVar {
        name: FORGE_VM_ACCEL,
        description: "Accelerator for `forge vm`, as `--accel`: `kvm`, `tcg` or `auto` (KVM when `/dev/kvm` is usable).",
    },
    EnvVar {
        name: FORGE_LOG,
        description: "Log filter in `tracing` syntax (e.g. `forge_fetch=debug`); overrides `-v`/`-q`.",
    },
    EnvVar {
        name: NO_COLOR,
        description: "When set to a non-empty value, no colours in output (https://no-color.org).",
    },
    EnvVar {
        name: XDG_CACHE_HOME,
        description: "Base of the default store (`$XDG_CACHE_HOME/forge/store`); `$HOME/.cache` when unset.",
    },
    EnvVar {
        name: HOME,
        description: "Used for the default store and secrets directory when the XDG variables are unset.",
    },
    EnvVar {
        name: XDG_DATA_HOME,
        description: "Base of the default secrets directory (`$XDG_DATA_HOME/forge/secrets/PLATFORM`); `$HOME/.local/share` when unset.",
    },
    EnvVar {
        name: FORGE_SECRETS_DIR,
        description: "Secrets directory of the Vault stages, as `--secrets-dir` (root CA key, unseal keys, tokens; 0700, files 0600).",
    },
    EnvVar {
        name: FORGE_AGE_IDENTITY,
        description: "age identity file that decrypts the secrets directory when platform.toml sets `[secrets] age-recipient`.",
    },
    EnvVar {
        name: FORGE_SSH_IDENTITY,
        description: "Private key file for SSH to Vault members (`ssh -i`); default: ssh's agent and configuration. Host keys are pinned in `known_hosts` of the secrets directory.",
    },
    EnvVar {
        name: VAULT_ADDR,
        description: "Vault API address of the Vault stages. Default: the first `[[vault.member]]`.",
    },
    EnvVar {
        name: VAULT_CACERT,
        description: "PEM file of the CA that signed Vault's certificate. Default: the platform root CA from the secrets directory.",
    },
    EnvVar {
        name: VAULT_TOKEN,
        description: "Token for `--stage vault-config`. Default: forge's token, else the root token, from the secrets directory.",
    },
    EnvVar {
        name: ETCDCTL_CACERT,
        description: "etcd stage: PEM file of the etcd CA, as etcdctl reads it. With `ETCDCTL_CERT` and `ETCDCTL_KEY`, forge checks the cluster against the pool after `deploy --stage etcd` and in `plan --stage etcd`.",
    },
    EnvVar {
        name: ETCDCTL_CERT,
        description: "etcd stage: PEM file of a client certificate of the etcd CA (as etcdctl).",
    },
    EnvVar {
        name: ETCDCTL_KEY,
        description: "etcd stage: PEM file of that certificate's key (as etcdctl; never printed).",
    },
    EnvVar {
        name: "EXOSCALE_API_KEY",
        description: "Exoscale API key of `publish`, `plan`, `deploy` and `destroy` (an IAM key of the organisation to deploy into). Alias: `EXOSCALE_KEY`.",
    },
    EnvVar {
        name: "EXOSCALE_KEY",
        description: "Alias of `EXOSCALE_API_KEY`, as the `exo` CLI reads it.",
    },
    EnvVar {
        name: "EXOSCALE_API_SECRET",
        description: "The API key's secret (never logged, never written). Aliases: `EXOSCALE_SECRET`, `EXOSCALE_SECRET_KEY`.",
    },
    EnvVar {
        name: "EXOSCALE_SECRET",
        description: "Alias of `EXOSCALE_API_SECRET`.",
    },
    EnvVar {
        name: "EXOSCALE_SECRET_KEY",
        description: "Alias of `EXOSCALE_API_SECRET`.",
    },
    EnvVar {
        name: EXOSCALE_ZONE,
        description: "Zone of the API calls; must equal platform.toml's `[platform] zone` when set (forge refuses a mismatch rather than deploy elsewhere).",
    },
    EnvVar {
        name: "EXOSCALE_API_ENDPOINT",
        description: "API base URL ending in `/v2`, `{zone}` replaced by the zone. Default: `https://api-{zone}.exoscale.com/v2` (an emulator or proxy: a URL without `{zone}`).",
    },
    EnvVar {
        name: "EXOSCALE_SOS_ENDPOINT",
        description: "Object storage (SOS, S3 API) endpoint of `publish`, `{zone}` replaced by the zone. Default: `https://sos-{zone}.exo.io`. Alias: `EXOSCALE_STORAGE_API_ENDPOINT`.",
    },
    EnvVar {
        name: "EXOSCALE_STORAGE_API_ENDPOINT",
        description: "Alias of `EXOSCALE_SOS_ENDPOINT`.",
    },
    EnvVar {
        name: "FORGE_EXOSCALE_RETRY_MIN_MS",
        description: "First wait, in milliseconds, before the Exoscale client retries a failed call (default 1000, doubling to 30 s); for emulators, whose answers take milliseconds.",
    },
    EnvVar {
        name: "FORGE_EXOSCALE_POLL_MIN_MS",
        description: "Shortest interval, in milliseconds, between polls of an Exoscale operation (default: the official schedule from 3 s); for emulators.",
    },
    EnvVar {
        name: PATH,
        description: "Where forge finds the external tools (mmdebstrap, mke2fs, qemu-img, qemu-system-x86_64, ssh); also the PATH of the image tools' own children.",
    },
    EnvVar {
        name: TMPDIR,
        description: "Directory of `forge vm`'s scratch files (the NoCloud seed); `/tmp` when unset. Builds use the store's own `tmp/`.",
    },
    EnvVar {
        name: "HTTPS_PROXY / HTTP_PROXY / NO_PROXY",
        description: "Proxies for downloads and API calls, with the usual meaning (read by the HTTP client).",
    },
];

/// `docs/environment.md`.
pub fn markdown() -> String {
    let mut s = String::from(
        "# Environment variables\n\n<!-- Generated from toolchain/forge/src/env.rs; `cargo test` checks it is current. -->\n\nforge reads these and no others. Flags win over variables, variables over platform.toml and defaults; `SOURCE_DATE_EPOCH` is deliberately ignored (the lockfile holds it, so a value left in a shell cannot change outputs).\n\n| variable | meaning |\n| --- | --- |\n",
    );
    for v in ALL {
        s.push_str(&format!("| `{}` | {} |\n", v.name, v.description));
    }
    s
}

/// Whether `name` is in the registry.
pub fn registered(name: &str) -> bool {
    ALL.iter().any(|v| v.name == name)
}

/// The environment as forge sees it: a snapshot taken once, at start.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<OsString, OsString>,
}

impl Env {
    /// The process environment: the only place forge reads it.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os().collect(),
        }
    }

    /// An environment of these variables (tests).
    pub fn from_pairs<K: Into<OsString>, V: Into<OsString>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value, when set, valid UTF-8 and not empty. `name` must be in the
    /// registry (checked in debug builds, so every test run checks every read).
    pub fn get(&self, name: &str) -> Option<String> {
        debug_assert!(registered(name), "`{name}` is not in the env registry");
        self.vars
            .get(std::ffi::OsStr::new(name))
            .and_then(|v| v.to_str())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// A variable's raw value (`PATH` may hold non-UTF-8 directories).
    pub fn get_os(&self, name: &str) -> Option<OsString> {
        debug_assert!(registered(name), "`{name}` is not in the env registry");
        self.vars.get(std::ffi::OsStr::new(name)).cloned()
    }

    /// A lookup for libraries that take one (`forge_exoscale::Config::from_lookup`).
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |n| self.get(n)
    }
}
