//! The `portcullis` command: parses flags, sets up logging and the runtime, and hands
//! over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use portcullis::{Config, Gateway};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A JWT-verifying reverse proxy for Better Auth and any JWKS issuer"
)]
struct Cli {
    /// The config file.
    #[arg(
        long,
        short,
        global = true,
        env = "PORTCULLIS_CONFIG",
        default_value = "config/portcullis.toml"
    )]
    config: PathBuf,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the config file and print a summary of providers and routes.
    Check,
    /// Revoke a user's tokens, one token or one session on every gateway sharing the
    /// config's [redis].
    Revoke(RevokeArgs),
}

#[derive(clap::Args)]
#[group(required = true, multiple = false, id = "what")]
struct RevokeArgs {
    /// Refuse this user's (`sub`) tokens issued before --before.
    #[arg(long, group = "what")]
    sub: Option<String>,
    /// With --sub: Unix time in seconds; tokens issued before it are refused. Default: the next second
    /// (every token issued up to now).
    #[arg(long, requires = "sub")]
    before: Option<i64>,
    /// Refuse the token with this `jti`.
    #[arg(long, group = "what")]
    jti: Option<String>,
    /// Refuse every token of this session (the providers' session_claim).
    #[arg(long, group = "what")]
    sid: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _flush_logs = init_logging(cli.log_format);
    // Dropped before the other logs' guard, once the gateway has drained: every request
    // of a clean shutdown has its access line. `PORTCULLIS_LOG` can still turn it off
    // (`warn`, or `portcullis::access=off`), as when it was a `tracing` event.
    let _flush_access_log = tracing::enabled!(target: "portcullis::access", tracing::Level::INFO)
        .then(|| {
            portcullis::access_log::start(match cli.log_format {
                LogFormat::Text => portcullis::access_log::Format::Text,
                LogFormat::Json => portcullis::access_log::Format::Json,
            })
        });
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => match Config::load(&cli.config) {
            Ok(config) => {
                print!("{}: ok\n{}", cli.config.display(), config.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                // Through anyhow, so `{:#}` also prints the OS reason an unreadable file gives.
                eprintln!("error: {:#}", anyhow::Error::from(e));
                ExitCode::from(2)
            }
        },
        Command::Revoke(args) => {
            let what = portcullis::Revocation {
                sub: args.sub,
                before: args.before,
                jti: args.jti,
                sid: args.sid,
            };
            let done = Config::load(&cli.config)
                .map_err(anyhow::Error::from)
                .and_then(|config| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(portcullis::revoke(&config, what))
                });
            match done {
                Ok(()) => {
                    println!("revoked");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run => {
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(cli.config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// The runtime every connection runs on: one thread per core (`TOKIO_WORKER_THREADS`
/// sets the count), and with a single one, tokio's current-thread scheduler.
///
/// Why not the multi-thread scheduler with one worker: its per-worker run queue holds
/// 256 tasks. With 1,000 busy keep-alive connections more than that are ready at once,
/// and each overflow moves the *oldest* half of the queue to the global queue, which a
/// busy worker only looks at once every few dozen polls while the I/O driver keeps
/// refilling its local queue. The connections that waited longest waited longer still:
/// at 1k connections the median request took 11 ms and the 99th percentile 320 ms
/// (nginx: 28 and 49 ms). The current-thread scheduler's queue is unbounded and served
/// in order, so every ready connection gets its turn (1k connections: 32 ms median,
/// 70 ms p99 in the same conditions). With several workers the overflow can still
/// happen once a worker has more than 256 ready tasks.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all().build()
}

/// Serves until SIGTERM or SIGINT; SIGHUP reloads the config file.
async fn run(path: PathBuf) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let gateway = Gateway::start_from(path).await?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                // Refusals are logged by the gateway; the old config keeps serving.
                let _ = gateway.reload().await;
            }
        }
    }
    gateway.shutdown().await;
    Ok(())
}

/// Logs go to stderr through a writer thread, so a request never waits on the log
/// pipe. Nothing is dropped when the pipe is slow: the buffer applies back-pressure
/// instead. The guard flushes what is queued when `main` returns. The access log has its
/// own batching writer (`access_log.rs`), also on stderr.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}
