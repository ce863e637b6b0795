//! Command-line arguments (clap derive). Parsing only: `settings` resolves them against
//! the environment and platform.toml, and `commands` calls the stages.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (a build, fetch, check or verification failed)
  2  usage error (bad arguments)";

/// forge: hermetic, content-addressed builds of a Vault + Kubernetes platform.
#[derive(Debug, Parser)]
#[command(name = "forge", version, about, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    /// Run as if started in DIR (the project is the nearest ancestor holding `recipes/`,
    /// `platform.toml` or `lockfile.toml`).
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,

    /// Store directory [env: FORGE_STORE] [default: $XDG_CACHE_HOME/forge/store].
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Load variant NAME over the project (`variants/NAME/`: recipes that replace the
    /// project's, image changes, its own lockfile) [env: FORGE_VARIANT].
    #[arg(long, global = true, value_name = "NAME")]
    pub variant: Option<String>,

    /// Print less: only errors and warnings.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more (-v info logs, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Machine-readable JSON on stdout; no progress bars.
    #[arg(long, global = true)]
    pub json: bool,

    /// When to use colours [NO_COLOR disables them].
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build recipes into layers in the store and record them in lockfile.toml.
    Build(BuildArgs),
    /// Pin every input in lockfile.toml: recipe hashes and sources, image package sets,
    /// tool versions, image hashes (nothing is built; `forge build` records outputs).
    Lock(LockArgs),
    /// Download the sources of recipes and the locked .debs of images into the store,
    /// without building (then build `--offline`).
    Fetch(FetchArgs),
    /// Print SHA-256 of files in `sha256sum` format (to fill in recipes).
    Hash(HashArgs),
    /// Inspect and repair the store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Delete what no registered lockfile references.
    Gc(GcArgs),
    /// Boot a built image under QEMU, serial console on stdout.
    Vm(VmArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Show what `forge deploy` would change in the cloud (Terraform-style diff).
    Plan(PlanArgs),
    /// Create or update the platform's cloud resources from the lockfile.
    Deploy(DeployArgs),
    /// Remove the cloud resources of a stage and of every later one (default: all).
    Destroy(DestroyArgs),
    /// Upload built images to SOS and register them as Exoscale templates.
    Publish(PublishArgs),
}

/// Deployment stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StageArg {
    /// Security groups, the Vault anti-affinity group, elastic IP and instance pool, the
    /// SSH key (spec §4.1).
    Base,
    /// The etcd groups, elastic IP and 3-member pool (spec §4.3.2); needs the base and
    /// Vault stages (its members log in to Vault).
    Etcd,
    /// The Vault cluster: root CA and TLS bootstrap of each `[[vault.member]]`, init,
    /// unseal, raft join (spec §6.2-6.4), then its configuration (`vault-config`).
    Vault,
    /// Vault's configuration only (spec §5.3-5.8), against VAULT_ADDR or the first member.
    VaultConfig,
}

impl StageArg {
    /// The cloud stage, for the stages of cloud resources.
    pub fn cloud(self) -> Option<forge_deploy::Stage> {
        match self {
            StageArg::Base => Some(forge_deploy::Stage::Base),
            StageArg::Etcd => Some(forge_deploy::Stage::Etcd),
            StageArg::Vault | StageArg::VaultConfig => None,
        }
    }

    /// `Some(with_lifecycle)` for the Vault stages.
    pub fn vault(self) -> Option<bool> {
        match self {
            StageArg::Base | StageArg::Etcd => None,
            StageArg::Vault => Some(true),
            StageArg::VaultConfig => Some(false),
        }
    }

    /// The name of a Vault stage (`with_lifecycle` as [`StageArg::vault`] gives it).
    pub fn vault_name(with_lifecycle: bool) -> &'static str {
        if with_lifecycle {
            "vault"
        } else {
            "vault-config"
        }
    }
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The lockfile to deploy from, and no other [default: the project's lockfile.toml].
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// The stage to work on.
    #[arg(long, value_enum, default_value_t = StageArg::Base)]
    pub stage: StageArg,
    /// Vault stages: where secrets (root CA key, unseal keys, tokens) are kept
    /// [env: FORGE_SECRETS_DIR] [default: platform.toml [secrets] dir, else
    /// $XDG_DATA_HOME/forge/secrets/PLATFORM].
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "Exit codes with --detailed-exitcode: 0 no changes, 1 error, 2 changes.")]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Exit with 2 when there are changes (as `terraform plan -detailed-exitcode`).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// API calls in flight at once.
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Plan-and-apply rounds before giving up (each round re-reads what exists).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_rounds: u32,
    /// etcd stage: seconds to wait for the cluster to match the pool (every instance a
    /// healthy member, one leader); 0 checks once and only warns.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub wait_timeout: u64,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// API calls in flight at once.
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Rounds before giving up.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_rounds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BootArg {
    Bios,
    Uefi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Args)]
pub struct VmArgs {
    /// A built image of the project (`NAME` or `image:NAME`) or a disk file (`.qcow2`, `.raw`).
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// cloud-init user-data, given to the machine as a NoCloud seed.
    #[arg(long, value_name = "FILE")]
    pub user_data: Option<PathBuf>,

    /// Forward 127.0.0.1:HOSTPORT to the guest's GUESTPORT (repeatable).
    #[arg(long = "forward", value_name = "HOSTPORT:GUESTPORT")]
    pub forwards: Vec<String>,

    /// Exit 0 as soon as a console line matches REGEX (for tests and smoke checks).
    #[arg(long, value_name = "REGEX")]
    pub expect: Option<String>,

    /// Give up (exit 1) after this many seconds [default with --expect: 300].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// Firmware: legacy BIOS (SeaBIOS) or UEFI (OVMF) [default: the image's first boot mode].
    #[arg(long, value_enum)]
    pub boot: Option<BootArg>,

    /// Acceleration [env: FORGE_VM_ACCEL] [default: auto = KVM when usable, else TCG].
    #[arg(long, value_enum)]
    pub accel: Option<AccelArg>,

    /// Memory in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,

    /// Virtual CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
}

/// Options shared by commands that fetch.
#[derive(Debug, Args, Clone)]
pub struct FetchOpts {
    /// Never touch the network; fail listing every missing source.
    #[arg(long)]
    pub offline: bool,

    /// Look for sources in DIR first, by sha256 and by file name (repeatable)
    /// [env: FORGE_SOURCE_DIRS, colon-separated].
    #[arg(long = "source-dir", value_name = "DIR")]
    pub source_dirs: Vec<PathBuf>,

    /// Recipes built (and downloads run) at once [env: FORGE_JOBS] [default: CPUs].
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Debian archive root URL for image package sets [env: FORGE_DEBIAN_MIRROR]
    /// [default: the mirror of this host's apt sources].
    #[arg(long, value_name = "URL")]
    pub debian_mirror: Option<String>,

    /// Keyring the archive's signed index must verify against [env: FORGE_DEBIAN_KEYRING]
    /// [default: /usr/share/keyrings/debian-archive-keyring.gpg].
    #[arg(long, value_name = "FILE")]
    pub debian_keyring: Option<PathBuf>,

    /// Go module proxy that Go module sources come from [env: GOPROXY, its first URL]
    /// [default: what `go env GOPROXY` says].
    #[arg(long, value_name = "URL")]
    pub go_proxy: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// What to build: `NAME`, `recipe:NAME`, `image:NAME`, or `images` for every image;
    /// nothing means everything.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Copy built disk images here: a file for one image, a directory (holding
    /// `NAME.qcow2`) for several.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Fail instead of changing lockfile.toml (for CI).
    #[arg(long)]
    pub locked: bool,

    /// `--locked` and `--offline` together.
    #[arg(long)]
    pub frozen: bool,

    /// Rebuild in a fresh store and compare with lockfile.toml; fail on any difference.
    #[arg(long)]
    pub check: bool,

    #[command(flatten)]
    pub fetch: FetchOpts,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Re-resolve only these recipes or images (and what depends on them); keep the other
    /// entries.
    #[arg(long, value_name = "NAME")]
    pub update: Vec<String>,

    /// SOURCE_DATE_EPOCH of every output (seconds since 1970); kept in the lockfile.
    #[arg(long, value_name = "SECONDS")]
    pub source_date_epoch: Option<u64>,

    /// Resolve every image's package set again against the archive (newest versions),
    /// not only those that are missing or whose `[base]` changed.
    #[arg(long)]
    pub upgrade: bool,

    /// Fail instead of changing lockfile.toml: check it is current (for CI).
    #[arg(long, conflicts_with_all = ["upgrade", "update", "source_date_epoch"])]
    pub locked: bool,

    #[command(flatten)]
    pub fetch: FetchOpts,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Recipes and images whose sources to fetch; nothing means all.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    #[command(flatten)]
    pub fetch: FetchOpts,
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// Files to hash (`-` for standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Print the store path of a built recipe's layer (`NAME`, `recipe:NAME`) or a blob
    /// (`sha256:HEX`).
    Path {
        #[arg(value_name = "TARGET")]
        target: String,
    },
    /// Re-hash every blob and check every output record.
    Verify {
        /// Delete damaged entries so the next build fetches or rebuilds them.
        #[arg(long)]
        repair: bool,
    },
    /// List registered GC roots (lockfiles whose pins `forge gc` keeps).
    Roots,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Report what would be deleted without deleting it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Images to publish [default: every image of the lockfile].
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    /// The lockfile to read the image outputs from and record templates in.
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// Also delete this platform's templates the lockfile no longer references.
    #[arg(long)]
    pub prune: bool,
}
