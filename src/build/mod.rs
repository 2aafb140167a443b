//! Building an image from a recipe: recipe -> root filesystem -> disk ->
//! formats. Everything is made inside a work folder next to the output, and
//! each result is renamed to its final name only once it is complete, so an
//! interrupted or failed build leaves nothing half-written under a final name.

pub mod customize;
pub mod lock;
pub mod repository;
pub mod reproducible;
pub mod rootfs;
pub mod stage;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::command::{require_tools, CommandError, HostTool, MissingTools};
use crate::disk::assemble::{self, AssembleError, FilesystemIds};
use crate::disk::Layout;
use crate::export;
use crate::recipe::Recipe;

use stage::Stage;

/// Tools the build host needs, with the Debian packages that bring them.
pub const HOST_TOOLS: &[HostTool] = &[
    HostTool {
        program: "mmdebstrap",
        package: "mmdebstrap",
    },
    HostTool {
        program: "mkfs.ext4",
        package: "e2fsprogs",
    },
    HostTool {
        program: "mkfs.vfat",
        package: "dosfstools",
    },
    HostTool {
        program: "mcopy",
        package: "mtools",
    },
    HostTool {
        program: "mmd",
        package: "mtools",
    },
    HostTool {
        program: "qemu-img",
        package: "qemu-utils",
    },
    HostTool {
        program: "tar",
        package: "tar",
    },
    HostTool {
        program: "chroot",
        package: "coreutils",
    },
];

/// Everything a build needs besides the recipe file itself.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub out_dir: PathBuf,
    pub formats: Vec<export::Format>,
    /// Overrides the recipe's mirror and the host's.
    pub mirror: Option<String>,
    /// The `balcaoctl` binary copied into the image.
    pub balcaoctl: PathBuf,
    /// Where root tarballs are kept between builds; None builds from scratch.
    pub cache_dir: Option<PathBuf>,
    /// SOURCE_DATE_EPOCH: timestamps in the image are clamped to it.
    pub epoch: Option<u64>,
    /// `--repo NAME=URL,...`: other mirrors for the recipe's repositories.
    pub repo_overrides: Vec<repository::RepoOverride>,
    /// Accept baked packages that differ from the lockfile, and rewrite it.
    pub update_lock: bool,
    /// The lockfile; default: the recipe's path with `.lock`.
    pub lockfile: Option<PathBuf>,
    /// `balcao lock`: make the root filesystem, record its Debian packages
    /// in the lockfile, and stop there.
    pub lock_only: bool,
}

/// What a finished build produced.
#[derive(Debug)]
pub struct BuildReport {
    /// Final paths of the disk images, manifest and checksums.
    pub artifacts: Vec<PathBuf>,
    pub stages: Vec<(&'static str, Duration)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    MissingTools(#[from] MissingTools),
    #[error(
        "the builder must run as root (mmdebstrap and chroot need it); try: sudo balcao build ..."
    )]
    NotRoot,
    #[error("balcaoctl binary not found at {0}; build it with `cargo build --release` or pass --balcaoctl PATH")]
    NoBalcaoctl(PathBuf),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Customize(#[from] customize::CustomizeError),
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    #[error(transparent)]
    Layout(#[from] crate::disk::gpt::GptError),
    #[error(transparent)]
    Repository(#[from] repository::RepositoryError),
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Export(#[from] export::ExportError),
    #[error(transparent)]
    Reproducible(#[from] reproducible::ReproducibleError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Work folders to remove if the build is interrupted.
static WORK_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Set once a signal has asked the build to stop.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a signal stopped the build: the failure the main thread then sees
/// is the stopped tool's, and the handler is already cleaning up and exiting.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// On SIGINT, SIGTERM or SIGHUP: stop the running tool, remove the work
/// folders, exit 130. The tools clean up their own mounts on SIGTERM.
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        // Not eprintln!: when the terminal or the parent is gone (SIGHUP,
        // a dropped SSH session), writing fails, and a panic here would
        // leave the mounts and the work folder behind.
        say("interrupted: stopping and removing the unfinished build");
        crate::command::terminate_children(Duration::from_secs(15));
        if let Ok(dirs) = WORK_DIRS.lock() {
            for dir in dirs.iter() {
                // A killed mmdebstrap leaves /proc, /sys and /dev mounted in
                // its chroot: undo them, deepest first, before deleting.
                let mut mounted = mounts_under(dir);
                mounted.sort_by_key(|m| std::cmp::Reverse(m.len()));
                for point in &mounted {
                    let plain = std::process::Command::new("umount").arg(point).status();
                    if !plain.is_ok_and(|s| s.success()) {
                        let _ = std::process::Command::new("umount")
                            .args(["-l", point])
                            .status();
                    }
                }
                // Never delete through a mount that is still there.
                let mounted = mounts_under(dir);
                if mounted.is_empty() {
                    let _ = fs::remove_dir_all(dir);
                } else {
                    say(&format!(
                        "still mounted, left in place: {}\nunmount them, then remove {}",
                        mounted.join(", "),
                        dir.display()
                    ));
                }
            }
        }
        std::process::exit(130);
    });
}

/// Writes a line to stderr, ignoring failure (the reader may be gone).
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Mount points at or below `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Builds the recipe's image into `options.out_dir`.
pub fn build(recipe: &Recipe, options: &BuildOptions) -> Result<BuildReport, BuildError> {
    require_tools(HOST_TOOLS)?;
    if !is_root() {
        return Err(BuildError::NotRoot);
    }
    if !options.lock_only && !options.balcaoctl.is_file() {
        return Err(BuildError::NoBalcaoctl(options.balcaoctl.clone()));
    }

    if options.epoch.is_some() && reproducible::mke2fs_honours_epoch() == Some(false) {
        tracing::warn!(
            "this host's mke2fs (e2fsprogs before 1.47.1) copies the host's file change times \
             into the image, so it will not be bit-for-bit reproducible; on Debian 12 install \
             the newer one with `apt-get install -t bookworm-backports e2fsprogs`"
        );
    }
    fs::create_dir_all(&options.out_dir).map_err(io(&options.out_dir))?;
    let work = tempfile::Builder::new()
        .prefix(".balcao-work-")
        .tempdir_in(&options.out_dir)
        .map_err(io(&options.out_dir))?;
    if let Ok(mut dirs) = WORK_DIRS.lock() {
        dirs.push(work.path().to_owned());
    }
    let result = build_in(recipe, options, work.path());
    if let Ok(mut dirs) = WORK_DIRS.lock() {
        dirs.retain(|d| d != work.path());
    }
    result
}

fn build_in(
    recipe: &Recipe,
    options: &BuildOptions,
    work: &Path,
) -> Result<BuildReport, BuildError> {
    let mut stages = Vec::new();
    let stem = recipe.artifact_stem();
    let scratch = work.join("scratch");
    fs::create_dir_all(&scratch).map_err(io(&scratch))?;

    // Root filesystem, from the cache when the same inputs built it before.
    let mirror = options
        .mirror
        .clone()
        .or_else(|| recipe.debian.mirror.clone())
        .or_else(rootfs::host_mirror)
        .unwrap_or_else(|| rootfs::FALLBACK_MIRROR.to_owned());
    tracing::info!("building {stem} from {mirror}");
    let mut recipe = recipe.clone();
    recipe.repositories =
        repository::apply_overrides(&recipe.repositories, &options.repo_overrides)
            .map_err(BuildError::Options)?;
    let recipe = &recipe;
    let mut sources = rootfs::debian_sources(recipe, &mirror);

    // Extra repositories: keys checked against the recipe's pins first, so a
    // rotated or tampered key stops the build before anything is installed.
    let mut checked = Vec::new();
    let mut hooks = Vec::new();
    if !recipe.repositories.is_empty() {
        let stage = Stage::start("repository keys");
        for repo in &recipe.repositories {
            let c = repository::check_key(repo, &scratch)?;
            let file = work.join(format!("{}.sources", repo.name));
            fs::write(&file, repository::build_sources(&c)).map_err(io(&file))?;
            sources.push(file.display().to_string());
            if !repo.bake.is_empty() {
                hooks.push(repository::bake_hook(repo));
            }
            checked.push(c);
        }
        stages.push(("repository keys", stage.done()));
    }
    // The Debian half of the lockfile: a locked build asks apt for exactly
    // those versions, and checks what it got.
    hooks.push(lock::index_hook());
    let lock_path = options
        .lockfile
        .clone()
        .unwrap_or_else(|| recipe.path.with_extension("lock"));
    let existing_lock = lock::read(&lock_path)?;
    let debian_lock = existing_lock
        .clone()
        .filter(|_| !options.update_lock && !options.lock_only);
    let pins = debian_lock.as_deref().map(lock::pins).unwrap_or_default();
    let make_root = |tarball: &Path| -> Result<(), BuildError> {
        rootfs::debootstrap(
            recipe,
            &sources,
            &hooks,
            &pins,
            tarball,
            &scratch,
            options.epoch,
        )
        .map_err(|e| match lock::gone_versions(&lock_path, &e.to_string()) {
            Some(gone) => gone.into(),
            None => e.into(),
        })
    };

    // The root tarball does not depend on the lockfile: whatever it holds is
    // checked against the lockfile after unpacking.
    // The hooks are inputs too: a builder that records or bakes differently
    // makes a different root.
    let mut key_inputs = sources_for_key(&sources, &checked);
    key_inputs.extend(hooks.iter().cloned());
    let key = rootfs::cache_key(recipe, &key_inputs, options.epoch);
    let (tarball, from_cache) = match &options.cache_dir {
        Some(cache) => {
            fs::create_dir_all(cache).map_err(io(cache))?;
            let tarball = cache.join(format!("rootfs-{key}.tar"));
            if cache_entry_is_sound(&tarball)? {
                tracing::info!("root filesystem from cache ({})", tarball.display());
                (tarball, true)
            } else {
                let started = std::time::Instant::now();
                make_root(&tarball)?;
                seal_cache_entry(&tarball)?;
                stages.push(("root filesystem", started.elapsed()));
                (tarball, false)
            }
        }
        None => {
            let tarball = work.join("rootfs.tar");
            let started = std::time::Instant::now();
            make_root(&tarball)?;
            stages.push(("root filesystem", started.elapsed()));
            (tarball, false)
        }
    };

    let stage = Stage::start("unpack");
    let root = work.join("root");
    rootfs::unpack(&tarball, &root)?;
    let mut installed = lock::take_installed(&root)?;
    stages.push(("unpack", stage.done()));

    if options.lock_only || (options.update_lock && existing_lock.is_some()) {
        lock::write(&lock_path, &installed)?;
        tracing::info!(
            "lockfile {}: {} Debian packages recorded",
            lock_path.display(),
            installed.len()
        );
        if options.lock_only {
            return Ok(BuildReport {
                artifacts: vec![lock_path],
                stages,
            });
        }
    }
    if let Some(locked) = &debian_lock {
        if let Err(moved) = lock::check(&lock_path, locked, &installed) {
            if !(from_cache && lock::versions_differ(locked, &installed)) {
                return Err(moved.into());
            }
            // A cached root from an older state of the mirror: make it again,
            // with the lockfile's versions.
            tracing::warn!("the cached root filesystem has other package versions than the lockfile; making it again");
            fs::remove_dir_all(&root).map_err(io(&root))?;
            let _ = fs::remove_file(tarball.with_extension("tar.sha256"));
            let started = std::time::Instant::now();
            make_root(&tarball)?;
            seal_cache_entry(&tarball)?;
            stages.push(("root filesystem", started.elapsed()));
            rootfs::unpack(&tarball, &root)?;
            installed = lock::take_installed(&root)?;
            lock::check(&lock_path, locked, &installed)?;
        }
        tracing::info!(
            "{} Debian packages match the lockfile {}",
            installed.len(),
            lock_path.display()
        );
    }

    // Each extra repository: its keyring and a signed-by source in the image,
    // and its baked packages indexed and held to the lockfile.
    for c in &checked {
        let name = &c.repo.name;
        let keyring = root.join(repository::keyring_path(name).trim_start_matches('/'));
        fs::create_dir_all(keyring.parent().expect("keyring has a folder"))
            .map_err(io(&keyring))?;
        fs::write(&keyring, &c.keyring).map_err(io(&keyring))?;
        let list = root.join(format!("etc/apt/sources.list.d/{name}.list"));
        fs::write(&list, repository::image_list(&c.repo)).map_err(io(&list))?;
        // mmdebstrap copied the build-time deb822 file in; the list above
        // replaces it.
        // (mmdebstrap names it NNNN{name}.sources after its position).
        let list_dir = root.join("etc/apt/sources.list.d");
        for entry in fs::read_dir(&list_dir).map_err(io(&list_dir))?.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let copied = file
                .strip_suffix(&format!("{name}.sources"))
                .is_some_and(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()));
            if copied {
                fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        if !c.repo.bake.is_empty() {
            let baked = repository::index_baked(&root, &c.repo)?;
            repository::check_lock(&lock_path, name, &baked, options.update_lock)?;
            tracing::info!(
                "{name}: {} packages baked for an offline first boot",
                baked.len()
            );
        }
    }

    // Customize: overlays, balcaoctl, boot configuration, services, GRUB.
    let stage = Stage::start("customize");
    let layout = Layout::cloud(recipe.disk.size_bytes, &stem)?;
    let ids = FilesystemIds::for_layout(&layout);
    for overlay in &recipe.overlays {
        let n = customize::apply_overlay(overlay, &root)?;
        stage.progress(&format!("overlay {}: {n} files", overlay.display()));
    }
    customize::install_balcaoctl(&options.balcaoctl, &root)?;
    customize::write_boot_config(&root, &ids)?;
    customize::enable_services(&root, &recipe.services)?;
    let title = if recipe.description.is_empty() {
        stem.clone()
    } else {
        recipe.description.clone()
    };
    let (core_img, efi_loader) = assemble::install_grub(&root, &ids, &title)?;
    let manifest = customize::package_manifest(&root)?;
    customize::clean(&root)?;
    if let Some(epoch) = options.epoch {
        let n = reproducible::clamp_times(&root, epoch)?;
        stage.progress(&format!(
            "{n} file times clamped to SOURCE_DATE_EPOCH {epoch}"
        ));
    }
    stages.push(("customize", stage.done()));

    // Disk: ESP image, then ext4 from the folder and the boot sectors.
    let stage = Stage::start("disk");
    let esp = work.join("esp.img");
    assemble::make_esp(
        &esp,
        layout.esp.size(),
        &ids,
        &efi_loader,
        &scratch,
        options.epoch,
    )?;
    let disk = work.join("disk.raw");
    assemble::assemble(
        &disk,
        &layout,
        &ids,
        &assemble::Contents {
            root: &root,
            core_img: &core_img,
            esp_img: &esp,
        },
        &scratch,
        options.epoch,
    )?;
    fs::remove_dir_all(&root).map_err(io(&root))?;
    stages.push(("disk", stage.done()));

    // Formats: each made and checked in the work folder, then all renamed
    // into place together.
    let stage = Stage::start("formats");
    let appliance = export::Appliance {
        name: recipe.name.clone(),
        version: recipe.version.clone(),
        description: if recipe.description.is_empty() {
            stem.clone()
        } else {
            recipe.description.clone()
        },
        cpus: recipe.machine.cpus,
        memory_mib: recipe.machine.memory_mib,
        // The disk boots both ways; UEFI is what current VMware defaults to.
        firmware: export::Firmware::Efi,
    };
    let made_dir = work.join("made");
    fs::create_dir_all(&made_dir).map_err(io(&made_dir))?;
    let mut ready: Vec<(PathBuf, String)> = Vec::new();
    let raw = export::Format::Raw;
    for format in options.formats.iter().filter(|f| **f != raw) {
        let made = export::export(&disk, *format, &made_dir, &appliance)?;
        ready.push((made, format.file_name(&appliance)));
    }
    // Raw last: it is the disk itself, moved once the others are made from it.
    if options.formats.contains(&raw) {
        let made = export::adopt_raw(&disk, &made_dir, &appliance)?;
        ready.push((made, raw.file_name(&appliance)));
    }
    let manifest_name = format!("{stem}.packages");
    let manifest_path = work.join(&manifest_name);
    fs::write(&manifest_path, manifest).map_err(io(&manifest_path))?;
    ready.push((manifest_path, manifest_name));

    let mut sums = String::new();
    for (path, name) in &ready {
        sums.push_str(&format!("{}  {name}\n", export::sha256_file(path)?));
    }
    let sums_path = work.join("SHA256SUMS");
    fs::write(&sums_path, sums).map_err(io(&sums_path))?;
    ready.push((sums_path, "SHA256SUMS".into()));

    let mut artifacts = Vec::new();
    for (path, name) in ready {
        let final_path = options.out_dir.join(&name);
        fs::rename(&path, &final_path).map_err(io(&final_path))?;
        artifacts.push(final_path);
    }
    stages.push(("formats", stage.done()));
    Ok(BuildReport { artifacts, stages })
}

/// Where `--check-reproducible` keeps both builds, under the output folder,
/// when they differ.
pub const REPRODUCIBLE_DIRS: &str = ".reproducible";

/// Builds twice with the same inputs and compares every artifact. When all
/// are identical the first build's files are moved into the output folder
/// and the list is empty; otherwise both builds stay under
/// [`REPRODUCIBLE_DIRS`] and each difference is a line of the list.
pub fn check_reproducible(
    recipe: &Recipe,
    options: &BuildOptions,
) -> Result<Vec<String>, BuildError> {
    let base = options.out_dir.join(REPRODUCIBLE_DIRS);
    if base.exists() {
        fs::remove_dir_all(&base).map_err(io(&base))?;
    }
    let runs = [base.join("1"), base.join("2")];
    for (n, dir) in runs.iter().enumerate() {
        tracing::info!("reproducibility check: build {} of 2", n + 1);
        let once = BuildOptions {
            out_dir: dir.clone(),
            ..options.clone()
        };
        build(recipe, &once)?;
    }
    let layout = Layout::cloud(recipe.disk.size_bytes, &recipe.artifact_stem())?;
    let mut report = reproducible::compare_outputs(&runs[0], &runs[1], &layout)?;
    if report.is_empty() {
        for entry in fs::read_dir(&runs[0]).map_err(io(&runs[0]))?.flatten() {
            let to = options.out_dir.join(entry.file_name());
            fs::rename(entry.path(), &to).map_err(io(&to))?;
        }
        fs::remove_dir_all(&base).map_err(io(&base))?;
    } else if let Some(details) = reproducible::diffoscope(&runs[0], &runs[1], &report, &base) {
        report.push(details);
    }
    Ok(report)
}

/// Removes every cached root filesystem (and any partial one); returns how
/// many files went and how many bytes they held.
pub fn clean_cache(cache: &Path) -> Result<(usize, u64), BuildError> {
    let entries = match fs::read_dir(cache) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(io(cache)(e)),
    };
    let (mut files, mut bytes) = (0, 0);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("rootfs-") && name.contains(".tar") {
            bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            files += 1;
        }
    }
    Ok((files, bytes))
}

/// What identifies the sources for the cache: the one-line sources as they
/// are, and each extra repository by its URL, suite and pinned key (the
/// deb822 file's path changes with every work folder).
fn sources_for_key(sources: &[String], checked: &[repository::CheckedRepository]) -> Vec<String> {
    sources
        .iter()
        .filter(|s| s.starts_with("deb "))
        .cloned()
        .chain(checked.iter().map(|c| repository::image_list(&c.repo)))
        .collect()
}

/// A cache entry is used only when its recorded digest matches its bytes; a
/// partial or corrupt one is removed and rebuilt.
fn cache_entry_is_sound(tarball: &Path) -> Result<bool, BuildError> {
    let seal = tarball.with_extension("tar.sha256");
    let (Ok(recorded), true) = (fs::read_to_string(&seal), tarball.is_file()) else {
        let _ = fs::remove_file(tarball);
        let _ = fs::remove_file(&seal);
        return Ok(false);
    };
    if recorded.trim() == export::sha256_file(tarball)? {
        Ok(true)
    } else {
        tracing::warn!(
            "cache entry {} is damaged; rebuilding it",
            tarball.display()
        );
        let _ = fs::remove_file(tarball);
        let _ = fs::remove_file(&seal);
        Ok(false)
    }
}

fn seal_cache_entry(tarball: &Path) -> Result<(), BuildError> {
    let seal = tarball.with_extension("tar.sha256");
    let partial = tarball.with_extension("tar.sha256.partial");
    fs::write(&partial, export::sha256_file(tarball)?).map_err(io(&partial))?;
    fs::rename(&partial, &seal).map_err(io(&seal))
}

fn is_root() -> bool {
    // The effective uid is the owner of /proc/self.
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_cache_entries_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("rootfs-x.tar");
        fs::write(&t, "complete").unwrap();
        seal_cache_entry(&t).unwrap();
        assert!(cache_entry_is_sound(&t).unwrap());
        fs::write(&t, "changed").unwrap();
        assert!(!cache_entry_is_sound(&t).unwrap());
        assert!(!t.exists());
        // A tarball without its seal was cut short.
        fs::write(&t, "partial").unwrap();
        assert!(!cache_entry_is_sound(&t).unwrap());
    }

    #[test]
    fn cleaning_the_cache_removes_only_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("rootfs-y.tar");
        fs::write(&t, "0123456789").unwrap();
        seal_cache_entry(&t).unwrap();
        fs::write(dir.path().join("rootfs-z.tar.partial"), "01").unwrap();
        fs::write(dir.path().join("notes.txt"), "keep").unwrap();
        assert_eq!(clean_cache(dir.path()).unwrap(), (3, 10 + 64 + 2));
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(clean_cache(&dir.path().join("none")).unwrap(), (0, 0));
    }
}
