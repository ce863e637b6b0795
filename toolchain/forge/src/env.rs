//! Every environment variable forge reads, in one registry. `docs/environment.md` is
//! generated from it (a test keeps the two in step).

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
        description: "Default for `-j/--jobs`: recipes built at once. Default: the number of CPUs.",
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
        description: "Used for the default store when `XDG_CACHE_HOME` is unset.",
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
        name: "HTTPS_PROXY / HTTP_PROXY / NO_PROXY",
        description: "Proxies for downloads, with the usual meaning.",
    },
];

/// `docs/environment.md`.
pub fn markdown() -> String {
    let mut s = String::from(
        "# Environment variables\n\n<!-- Generated from toolchain/forge/src/env.rs; `cargo test` checks it is current. -->\n\n| variable | meaning |\n| --- | --- |\n",
    );
    for v in ALL {
        s.push_str(&format!("| `{}` | {} |\n", v.name, v.description));
    }
    s
}

/// A variable's value, when set and not empty.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
