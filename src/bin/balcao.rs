//! balcao: the builder. Turns a recipe into a Debian 12 appliance image and
//! boot-tests images in QEMU.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use balcao::build::{self, BuildOptions};
use balcao::qemu::{self, Accel, BootSpec, Firmware, Hardware};
use balcao::recipe::Recipe;

#[derive(Parser)]
#[command(
    name = "balcao",
    version,
    about = "Builds the Balcão Virtual appliance image"
)]
struct Cli {
    /// Show each external command (-v) or everything (-vv)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a recipe (needs root)
    Build {
        /// The recipe, e.g. recipes/balcao-virtual.toml
        recipe: PathBuf,
        /// Where the images, SHA256SUMS and the package manifest go
        #[arg(long, default_value = "dist")]
        out: PathBuf,
        /// Comma-separated formats: ova (VMware, VirtualBox), qcow2 (Proxmox,
        /// OpenStack, KVM), vhdx (Hyper-V), vhd (Azure), vmdk, raw (AWS), gce; or all
        #[arg(long, default_value = "all")]
        format: String,
        /// Debian mirror to use instead of the recipe's and the host's
        #[arg(long)]
        mirror: Option<String>,
        /// The balcaoctl binary to put in the image (default: next to balcao)
        #[arg(long)]
        balcaoctl: Option<PathBuf>,
        /// Where root filesystems are cached between builds
        #[arg(long, env = "BALCAO_CACHE", default_value = "/var/cache/balcao")]
        cache: PathBuf,
        /// Build everything from scratch, neither reading nor writing the cache
        #[arg(long)]
        no_cache: bool,
        /// Use another mirror for one of the recipe's repositories:
        /// NAME=URL[,key=PATH_OR_URL][,fingerprint=HEX] (repeatable)
        #[arg(long = "repo", value_name = "NAME=URL,...")]
        repos: Vec<balcao::build::repository::RepoOverride>,
        /// Accept baked packages that differ from the recipe's lockfile, and rewrite it
        #[arg(long)]
        update_lock: bool,
        /// The lockfile (default: the recipe's path with .lock)
        #[arg(long)]
        lockfile: Option<PathBuf>,
        /// Build twice and compare the results byte for byte; reports the
        /// first difference (with --no-cache both builds start from the mirror)
        #[arg(long)]
        check_reproducible: bool,
    },
    /// Record every Debian package of the recipe's image (version and SHA-256)
    /// in its lockfile; later builds install exactly those or fail (needs root)
    Lock {
        recipe: PathBuf,
        /// The lockfile (default: the recipe's path with .lock)
        #[arg(long)]
        lockfile: Option<PathBuf>,
        /// Debian mirror to use instead of the recipe's and the host's
        #[arg(long)]
        mirror: Option<String>,
        /// Where root filesystems are cached between builds
        #[arg(long, env = "BALCAO_CACHE", default_value = "/var/cache/balcao")]
        cache: PathBuf,
        /// Ask the mirror afresh, ignoring the cache
        #[arg(long)]
        no_cache: bool,
        /// Use another mirror for one of the recipe's repositories (see build)
        #[arg(long = "repo", value_name = "NAME=URL,...")]
        repos: Vec<balcao::build::repository::RepoOverride>,
    },
    /// Manage the cache of root filesystems
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Boot an image in QEMU and report whether it reaches a login prompt
    Test {
        image: PathBuf,
        #[arg(long, default_value = "uefi")]
        firmware: Firmware,
        /// tcg (software, works everywhere) or kvm
        #[arg(long, default_value = "tcg")]
        accel: Accel,
        /// virtio, virtualbox (AHCI+E1000), vmware-pvscsi, vmware-sata
        #[arg(long, default_value = "virtio")]
        hardware: Hardware,
        /// Seconds to wait for the login prompt
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        #[arg(long, default_value_t = 1024)]
        memory: u32,
    },
}

#[derive(Subcommand)]
enum CacheAction {
    /// Remove every cached root filesystem
    Clean {
        #[arg(long, env = "BALCAO_CACHE", default_value = "/var/cache/balcao")]
        cache: PathBuf,
    },
}

/// The `balcaoctl` to put in the image: the given one, or the one next to
/// this binary.
fn balcaoctl_path(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(path) => Ok(path),
        None => Ok(std::env::current_exe()
            .context("finding the balcao binary's folder")?
            .with_file_name("balcaoctl")),
    }
}

fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Ok(Some(v.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH is `{v}`; it must be seconds since 1970, e.g. `date +%s`")
        })?)),
        Err(_) => Ok(None),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    balcao::logging::init(cli.verbose);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if build::interrupted() => {
            // The signal handler removes the unfinished build and exits 130.
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Build {
            recipe,
            out,
            format,
            mirror,
            balcaoctl,
            cache,
            no_cache,
            repos,
            update_lock,
            lockfile,
            check_reproducible,
        } => {
            let recipe = Recipe::load(&recipe)?;
            let formats = balcao::export::parse_formats(&format)?;
            let mut options = BuildOptions {
                out_dir: out,
                formats,
                mirror,
                balcaoctl: balcaoctl_path(balcaoctl)?,
                cache_dir: (!no_cache).then_some(cache),
                epoch: source_date_epoch()?,
                repo_overrides: repos,
                update_lock,
                lockfile,
                lock_only: false,
            };
            build::install_interrupt_handler();
            if check_reproducible {
                if options.epoch.is_none() {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)?
                        .as_secs();
                    println!("SOURCE_DATE_EPOCH not set; both builds use {now}");
                    options.epoch = Some(now);
                }
                let differences = build::check_reproducible(&recipe, &options)?;
                if differences.is_empty() {
                    println!(
                        "reproducible: both builds of {} are identical, byte for byte \
                         (SOURCE_DATE_EPOCH={}); the images are in {}",
                        recipe.artifact_stem(),
                        options.epoch.unwrap_or_default(),
                        options.out_dir.display()
                    );
                    return Ok(());
                }
                anyhow::bail!(
                    "the two builds differ:\n  {}\nBoth are kept under {} for inspection.",
                    differences.join("\n  "),
                    options.out_dir.join(build::REPRODUCIBLE_DIRS).display()
                );
            }
            let report = build::build(&recipe, &options)?;
            let total: Duration = report.stages.iter().map(|(_, d)| *d).sum();
            println!(
                "built {} in {:.1} s:",
                recipe.artifact_stem(),
                total.as_secs_f64()
            );
            for (name, took) in &report.stages {
                println!("  {name:<16} {:>7.1} s", took.as_secs_f64());
            }
            for path in &report.artifacts {
                let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                println!("  {}  ({:.1} MiB)", path.display(), size as f64 / 1048576.0);
            }
            Ok(())
        }
        Command::Lock {
            recipe,
            lockfile,
            mirror,
            cache,
            no_cache,
            repos,
        } => {
            let recipe = Recipe::load(&recipe)?;
            let scratch = tempfile::Builder::new()
                .prefix("balcao-lock-")
                .tempdir_in(std::env::temp_dir())?;
            build::install_interrupt_handler();
            let report = build::build(
                &recipe,
                &BuildOptions {
                    out_dir: scratch.path().to_owned(),
                    formats: Vec::new(),
                    mirror,
                    balcaoctl: balcaoctl_path(None).unwrap_or_default(),
                    cache_dir: (!no_cache).then_some(cache),
                    epoch: source_date_epoch()?,
                    repo_overrides: repos,
                    update_lock: false,
                    lockfile,
                    lock_only: true,
                },
            )?;
            for path in &report.artifacts {
                println!("{} written; review its diff and commit it", path.display());
            }
            Ok(())
        }
        Command::Cache {
            action: CacheAction::Clean { cache },
        } => {
            let (files, bytes) = build::clean_cache(&cache)?;
            println!(
                "{}: {files} files removed, {:.1} MiB freed",
                cache.display(),
                bytes as f64 / 1048576.0
            );
            Ok(())
        }
        Command::Test {
            image,
            firmware,
            accel,
            hardware,
            timeout,
            memory,
        } => {
            let mut spec = BootSpec::new(&image, firmware);
            spec.accel = accel;
            spec.hardware = hardware;
            spec.memory_mib = memory;
            let (took, marker) = qemu::boot_until_up(&spec, Duration::from_secs(timeout))
                .with_context(|| format!("{} did not boot", image.display()))?;
            let what = if marker == qemu::UP_MARKERS[0] {
                "login prompt"
            } else {
                "first-boot wizard"
            };
            println!(
                "{}: {what} after {:.1} s ({firmware:?}, {accel:?}, {hardware:?})",
                image.display(),
                took.as_secs_f64()
            );
            Ok(())
        }
    }
}
