//! [`Project`]: a forge project on disk, found from a start directory, whose parts are
//! read when a command first needs them. A project with a lockfile can become a
//! [`Project<Locked>`], the only kind the stages that need pins (check, publish, deploy)
//! accept.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use forge_schema::lockfile::{LOCKFILE_NAME, LockedImage, LockedTemplate, Lockfile, changes};
use forge_schema::platform::{PLATFORM_FILE, Platform};
use forge_schema::variant::VARIANTS_DIR;
use forge_schema::{Sha256Digest, SourceFile};
use forge_store::Store;

use crate::ProjectError;
use crate::definitions::{Definitions, IMAGES_DIR, RECIPES_DIR, check_variant};
use crate::lock::LockChanges;

/// Files and directories that mark a project root: the nearest ancestor of the start
/// directory holding one of them is the root. A build checkout has all of them; a deploy
/// checkout has only platform.toml, the lockfile and manifests/.
pub const ROOT_MARKERS: &[&str] = &[RECIPES_DIR, PLATFORM_FILE, LOCKFILE_NAME];

/// How to open a project.
#[derive(Debug, Clone, Default)]
pub struct ProjectOptions {
    /// `--variant NAME`: `variants/NAME/` over the project, with its own lockfile.
    pub variant: Option<String>,
    /// `--lock FILE`: this lockfile and no other (resolved against the start directory).
    pub lockfile: Option<PathBuf>,
}

/// A lockfile as read from disk.
#[derive(Debug, Clone)]
pub struct Loaded {
    lockfile: Lockfile,
    /// SHA-256 of its text.
    text_sha256: Sha256Digest,
}

/// Whether the project's lockfile is known to exist. Sealed: [`Unlocked`] or [`Locked`].
pub trait LockState: sealed::Sealed {
    /// The lockfile, if it is there.
    fn loaded(&self) -> Option<&Loaded>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Unlocked {}
    impl Sealed for super::Locked {}
}

/// A project that may have no lockfile yet.
#[derive(Debug, Clone)]
pub struct Unlocked {
    loaded: Option<Loaded>,
}

/// A project whose lockfile exists and parsed.
#[derive(Debug, Clone)]
pub struct Locked {
    loaded: Loaded,
}

impl LockState for Unlocked {
    fn loaded(&self) -> Option<&Loaded> {
        self.loaded.as_ref()
    }
}

impl LockState for Locked {
    fn loaded(&self) -> Option<&Loaded> {
        Some(&self.loaded)
    }
}

/// A forge project.
#[derive(Debug)]
pub struct Project<S: LockState = Unlocked> {
    root: PathBuf,
    variant: Option<String>,
    lock_path: PathBuf,
    /// The lockfile was named with `--lock`.
    lock_given: bool,
    definitions: OnceLock<Definitions>,
    platform: OnceLock<Platform>,
    state: S,
}

/// The locked output of an image (its disk in the store, once built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOutput {
    pub name: String,
    pub sha256: Sha256Digest,
    pub format: String,
    pub boot_modes: Vec<String>,
}

/// What a lockfile write did.
#[derive(Debug, Clone)]
pub struct Written {
    /// The lockfile on disk before the write, if there was one.
    pub before: Option<Lockfile>,
    pub after: Lockfile,
    /// Whether the file's text changed.
    pub changed: bool,
}

/// `lock` initialised once from `init`, whose failure is returned (and tried again on
/// the next call).
fn get_or_try<T, E>(lock: &OnceLock<T>, init: impl FnOnce() -> Result<T, E>) -> Result<&T, E> {
    if let Some(v) = lock.get() {
        return Ok(v);
    }
    let v = init()?;
    Ok(lock.get_or_init(|| v))
}

impl Project<Unlocked> {
    /// The project whose root is the nearest ancestor of `start` (itself included) that
    /// holds one of [`ROOT_MARKERS`].
    pub fn discover(start: &Path, options: &ProjectOptions) -> Result<Self, ProjectError> {
        let canonical = std::fs::canonicalize(start).map_err(|e| ProjectError::io(start, e))?;
        let root = canonical
            .ancestors()
            .find(|dir| ROOT_MARKERS.iter().any(|m| dir.join(m).exists()))
            .ok_or_else(|| ProjectError::NoProject {
                start: canonical.clone(),
            })?
            .to_path_buf();
        let lockfile = options.lockfile.as_ref().map(|l| start.join(l));
        Self::open(&root, options.variant.as_deref(), lockfile)
    }

    /// The project at `root`, without discovery. `lockfile` overrides the project's.
    pub fn open(
        root: &Path,
        variant: Option<&str>,
        lockfile: Option<PathBuf>,
    ) -> Result<Self, ProjectError> {
        if let Some(v) = variant {
            check_variant(root, v)?;
        }
        let lock_given = lockfile.is_some();
        let lock_path = lockfile.unwrap_or_else(|| match variant {
            Some(v) => root.join(VARIANTS_DIR).join(v).join(LOCKFILE_NAME),
            None => root.join(LOCKFILE_NAME),
        });
        let mut project = Project {
            root: root.to_path_buf(),
            variant: variant.map(str::to_string),
            lock_path,
            lock_given,
            definitions: OnceLock::new(),
            platform: OnceLock::new(),
            state: Unlocked { loaded: None },
        };
        project.state.loaded = project.read_lockfile()?;
        if lock_given && project.state.loaded.is_none() {
            return Err(ProjectError::NoLockfile {
                lockfile: project.lockfile_display(),
                advice: "--lock names a lockfile that is not there; check the path",
            });
        }
        Ok(project)
    }

    /// The project's lockfile, if it has one.
    pub fn lockfile(&self) -> Option<&Lockfile> {
        self.state.loaded.as_ref().map(|l| &l.lockfile)
    }

    /// The project with its lockfile, which must exist (`advice` says how to make one).
    pub fn locked(self, advice: &'static str) -> Result<Project<Locked>, ProjectError> {
        let Some(loaded) = self.state.loaded else {
            return Err(ProjectError::NoLockfile {
                lockfile: self.lockfile_display(),
                advice,
            });
        };
        Ok(Project {
            root: self.root,
            variant: self.variant,
            lock_path: self.lock_path,
            lock_given: self.lock_given,
            definitions: self.definitions,
            platform: self.platform,
            state: Locked { loaded },
        })
    }
}

impl<S: LockState> Project<S> {
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The variant's name, if one was loaded.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    pub fn lockfile_path(&self) -> &Path {
        &self.lock_path
    }

    /// The lockfile's path for messages: relative to the root when inside it
    /// (`lockfile.toml`, `variants/NAME/lockfile.toml`), else as given.
    pub fn lockfile_display(&self) -> String {
        self.display(&self.lock_path)
    }

    fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// The lockfile, if there is one (always, for a [`Project<Locked>`]).
    pub fn current_lockfile(&self) -> Option<&Lockfile> {
        self.state.loaded().map(|l| &l.lockfile)
    }

    /// The recipes and images (read on first use).
    pub fn definitions(&self) -> Result<&Definitions, ProjectError> {
        get_or_try(&self.definitions, || {
            if !self.root.join(RECIPES_DIR).is_dir() && !self.root.join(IMAGES_DIR).is_dir() {
                return Err(ProjectError::NoDefinitions {
                    root: self.root.clone(),
                });
            }
            Definitions::load(&self.root, self.variant.as_deref())
        })
    }

    /// platform.toml, validated (read on first use).
    pub fn platform(&self) -> Result<&Platform, ProjectError> {
        get_or_try(&self.platform, || {
            let path = self.root.join(PLATFORM_FILE);
            if !path.is_file() {
                return Err(ProjectError::NoPlatform { path });
            }
            Platform::parse(&self.read_toml(&path)?).map_err(ProjectError::Diagnostics)
        })
    }

    /// A file of the project as a [`SourceFile`] named by its path from the root, so
    /// errors point at `platform.toml:9:8`.
    pub fn read_toml(&self, path: &Path) -> Result<SourceFile, ProjectError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProjectError::io(path, e))?;
        Ok(SourceFile::new(self.display(path), text))
    }

    fn read_lockfile(&self) -> Result<Option<Loaded>, ProjectError> {
        let text = match std::fs::read_to_string(&self.lock_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ProjectError::io(&self.lock_path, e)),
        };
        let text_sha256 = Sha256Digest::of(text.as_bytes());
        let file = SourceFile::new(self.lockfile_display(), text);
        let lockfile = Lockfile::parse(&file).map_err(ProjectError::Diagnostics)?;
        Ok(Some(Loaded {
            lockfile,
            text_sha256,
        }))
    }

    /// Errors unless `changes` leave the lockfile as it is (`--locked`).
    pub fn check_lockfile(&self, changes_: &LockChanges) -> Result<(), ProjectError> {
        let Some(old) = self.current_lockfile() else {
            return Err(ProjectError::NoLockfile {
                lockfile: self.lockfile_display(),
                advice: "--locked forbids creating it; run `forge lock` and commit it",
            });
        };
        let new = changes_.apply(Some(old)).unwrap_or_else(|| old.clone());
        let diff = changes(old, &new, None);
        if diff.is_empty() {
            Ok(())
        } else {
            Err(ProjectError::Locked {
                lockfile: self.lockfile_display(),
                changes: diff,
            })
        }
    }

    /// Applies `changes` to the lockfile as it is on disk now and writes the result if
    /// its text changes: atomically (temp file, fsync, rename), holding the project's lock
    /// in the store so two forge processes do not interleave their updates, and
    /// registering the lockfile as a root of `forge gc`. A lockfile that does not parse is
    /// left alone.
    pub fn write_lockfile(
        &self,
        store: &Store,
        changes_: &LockChanges,
    ) -> Result<Written, ProjectError> {
        let key = format!(
            "project-{}",
            Sha256Digest::of(self.lock_path.to_string_lossy().as_bytes()).short()
        );
        let _lock = store.lock(&key, &|_| {})?;
        remove_stale_temps(&self.lock_path);
        let before = self.read_lockfile()?.map(|l| l.lockfile);
        let after = changes_
            .apply(before.as_ref())
            .ok_or_else(|| ProjectError::NoLockfile {
                lockfile: self.lockfile_display(),
                advice: "it was removed while forge ran; run `forge lock`",
            })?;
        let text = after.render();
        let changed = std::fs::read_to_string(&self.lock_path).map_or(true, |t| t != text);
        if changed {
            forge_store::fsutil::write_atomic(&self.lock_path, text.as_bytes(), None)
                .map_err(|e| ProjectError::io(&self.lock_path, e))?;
        }
        store.add_root(&self.lock_path)?;
        Ok(Written {
            before,
            after,
            changed,
        })
    }

    /// Registers the lockfile as a root of `forge gc` without writing it.
    pub fn register_root(&self, store: &Store) -> Result<(), ProjectError> {
        Ok(store.add_root(&self.lock_path)?)
    }
}

impl Project<Locked> {
    pub fn lockfile(&self) -> &Lockfile {
        &self.state.loaded.lockfile
    }

    /// `sha256-<12 hex>` of the lockfile's text: the label of what a deploy was made from.
    pub fn lockfile_label(&self) -> String {
        format!("sha256-{}", &self.state.loaded.text_sha256.to_hex()[..12])
    }

    /// The template of `image` in `zone`, checked against the image's locked output.
    pub fn template(&self, image: &str, zone: &str) -> Result<&LockedTemplate, ProjectError> {
        let lock = self.lockfile();
        let key = forge_schema::lockfile::template_key(image, zone);
        let Some(t) = lock.templates.get(&key) else {
            return Err(ProjectError::NoTemplate {
                lockfile: self.lockfile_display(),
                image: image.to_string(),
                zone: zone.to_string(),
                zones: lock
                    .templates
                    .values()
                    .filter(|t| t.image == image)
                    .map(|t| t.zone.clone())
                    .collect(),
            });
        };
        if let Some(out) = lock.images.get(image).and_then(|i| i.output_sha256)
            && out != t.output_sha256
        {
            return Err(ProjectError::Pin {
                lockfile: self.lockfile_display(),
                message: format!(
                    "the template of `{image}` in {zone} ({}) was registered from output {}, but the image's locked output is {out}: run `forge publish`",
                    t.id, t.output_sha256
                ),
            });
        }
        Ok(t)
    }

    /// The locked output of image `name`.
    pub fn image_output(&self, name: &str) -> Result<ImageOutput, ProjectError> {
        let lock = self.lockfile();
        let locked: &LockedImage = lock.images.get(name).ok_or_else(|| {
            let known: Vec<&str> = lock.images.keys().map(String::as_str).collect();
            ProjectError::Pin {
                lockfile: self.lockfile_display(),
                message: format!(
                    "image `{name}` is not locked{}",
                    if known.is_empty() {
                        "; it locks no image: run `forge build images`".to_string()
                    } else {
                        format!(": locked images are {}", known.join(", "))
                    }
                ),
            }
        })?;
        let sha256 = locked.output_sha256.ok_or_else(|| ProjectError::Pin {
            lockfile: self.lockfile_display(),
            message: format!(
                "image `{name}` has no recorded output: run `forge build image:{name}`"
            ),
        })?;
        Ok(ImageOutput {
            name: name.to_string(),
            sha256,
            format: locked.format.clone(),
            boot_modes: locked.boot_modes.clone(),
        })
    }

    /// The locked output of image `name` and its disk in `store`.
    pub fn image_disk(
        &self,
        store: &Store,
        name: &str,
    ) -> Result<(ImageOutput, PathBuf), ProjectError> {
        let out = self.image_output(name)?;
        let path = store.blob_path(&out.sha256);
        if !path.is_file() {
            return Err(ProjectError::Pin {
                lockfile: self.lockfile_display(),
                message: format!(
                    "the output of image `{name}` (sha256 {}) is not in the store at `{}`: run `forge build image:{name}`",
                    out.sha256,
                    store.root().display()
                ),
            });
        }
        Ok((out, path))
    }
}

/// Deletes `.lockfile.toml.*.tmp` files a killed forge left beside the lockfile. Only
/// called with the project lock held, so no other process is writing one.
fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&prefix) && n.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
