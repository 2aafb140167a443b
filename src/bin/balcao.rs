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
        /// The lockfile of baked packages (default: the recipe's path with .lock)
        #[arg(long)]
        lockfile: Option<PathBuf>,
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
        } => {
            let recipe = Recipe::load(&recipe)?;
            let formats = balcao::export::parse_formats(&format)?;
            let balcaoctl = match balcaoctl {
                Some(path) => path,
                None => std::env::current_exe()
                    .context("finding the balcao binary's folder")?
                    .with_file_name("balcaoctl"),
            };
            let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
                Ok(v) => Some(v.trim().parse().with_context(|| {
                    format!("SOURCE_DATE_EPOCH is `{v}`; it must be seconds since 1970")
                })?),
                Err(_) => None,
            };
            build::install_interrupt_handler();
            let report = build::build(
                &recipe,
                &BuildOptions {
                    out_dir: out,
                    formats,
                    mirror,
                    balcaoctl,
                    cache_dir: (!no_cache).then_some(cache),
                    epoch,
                    repo_overrides: repos,
                    update_lock,
                    lockfile,
                },
            )?;
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
