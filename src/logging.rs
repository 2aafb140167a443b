//! Log output for both programs: one line per stage on stderr, each external
//! command with `-v`, everything with `-vv`.

use tracing_subscriber::EnvFilter;

/// Sets up the stderr logger. `verbosity` counts the `-v` flags; `BALCAO_LOG`
/// (an `EnvFilter` string) overrides it.
pub fn init(verbosity: u8) {
    let level = match verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("BALCAO_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("balcao={level},balcaoctl={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .without_time()
        .try_init();
}
