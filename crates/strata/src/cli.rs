//! The command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, ConfigError, LogFormat, Sources};

/// Strata: a performance layer for web backends.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the cache API, admin API and /metrics, and the caching HTTP proxy and the
    /// PostgreSQL proxy when configured.
    #[command(after_help = "Examples:\n  \
        strata serve                                  # memory tier on 127.0.0.1:7070\n  \
        strata serve --redis-url redis://127.0.0.1:6379\n  \
        strata serve --upstream http://127.0.0.1:8000  # + caching proxy on 127.0.0.1:7080\n  \
        strata serve --pg-upstream postgres://127.0.0.1:5432  # + PostgreSQL proxy on 127.0.0.1:6433\n  \
        strata serve --config /etc/strata/strata.toml\n  \
        STRATA__SERVER__LISTEN=127.0.0.1:9000 strata serve")]
    Serve(ServeArgs),
    /// Generate load and measure it honestly (HDR histograms, coordinated omission
    /// corrected in open loop), with gates for CI.
    #[command(after_help = "Examples:\n  \
        strata load-test http://127.0.0.1:7070 --namespace user -u 50 -d 60s\n  \
        strata load-test 'http://127.0.0.1:8000/api/items/{key}' --rate 2000 --stages 30s:2000,2m:2000\n  \
        strata load-test redis://127.0.0.1:6379 --workload ycsb-b --keys 1000000\n  \
        strata load-test engine --mix get=80,set=20 --json run.json --threshold 'p99<1ms'\n  \
        strata load-test http://127.0.0.1:7070 --namespace user --baseline run.json --max-regression 10%\n  \
        strata load-test --scenario examples/load-test/scenario.toml --metrics-listen 127.0.0.1:7090\n\n\
        Exit codes: 0 passed, 2 bad arguments, 3 a threshold failed, 4 regressed against the baseline.")]
    LoadTest(Box<crate::loadtest::LoadTestArgs>),
    /// A fixed-count micro-benchmark of one operation against the engine or a server.
    #[command(after_help = "Examples:\n  \
        strata benchmark --operation get --count 1000000\n  \
        strata benchmark http://127.0.0.1:7070 --operation mixed -u 16 --count 200000\n  \
        strata benchmark redis://127.0.0.1:6379 --operation get --batch-size 10")]
    Benchmark(crate::loadtest::BenchmarkArgs),
    /// Time invalidations and their propagation to a second instance sharing Redis.
    #[command(after_help = "Examples:\n  \
        strata invalidation-test --redis-url redis://127.0.0.1:6379 --entries 10000\n  \
        strata invalidation-test --redis-url redis+cluster://127.0.0.1:7000 --pattern 'user:{n}' --json inv.json\n\n\
        Exit codes: 0 every invalidation reached the second instance, 3 some did not within --timeout.")]
    InvalidationTest(crate::invtest::InvalidationTestArgs),
    /// Watch a running server's rates (requests, errors, p99, hits, memory) live.
    #[command(after_help = "Examples:\n  \
        strata metrics --url http://127.0.0.1:7070 --duration 60s --interval 5s\n  \
        strata metrics --interval 1s --json | jq .hit_rate")]
    Metrics(crate::watch::MetricsArgs),
    /// Re-render a saved load-test run, with details and recommendations.
    #[command(after_help = "Examples:\n  \
        strata report --input run.json --detailed --recommendations\n  \
        strata report --input run.json --html run.html")]
    Report(crate::loadtest::ReportArgs),
    /// PostgreSQL: sizes and usage, slowest statements, index advice.
    #[command(subcommand)]
    Db(crate::db::DbCommand),
    /// Check or print configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration (with environment overrides) and print the
    /// effective result.
    #[command(after_help = "Examples:\n  \
        strata config check strata.toml\n  \
        strata config check --json strata.toml | jq .server")]
    Check {
        /// The file (default: $STRATA_CONFIG, else ./strata.toml if present).
        file: Option<PathBuf>,
        /// Print the effective configuration as JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// Print a commented configuration with every setting.
    #[command(after_help = "Example:\n  strata config example > strata.toml")]
    Example,
    /// Print the configuration reference (Markdown) generated from the config types.
    #[command(after_help = "Example:\n  strata config reference > docs/configuration.md")]
    Reference,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (default: ./strata.toml if present, else built-in defaults).
    #[arg(long, short, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address of the API and /metrics (server.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Redis URL, adding the Redis tier (redis.url).
    #[arg(long)]
    redis_url: Option<String>,
    /// development, staging or production (profile).
    #[arg(long)]
    profile: Option<String>,
    /// Memory tier size, e.g. 512MiB (memory.max_bytes).
    #[arg(long)]
    max_memory: Option<String>,
    /// Log format (log.format).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. debug or strata=debug,info (log.level).
    #[arg(long)]
    log_level: Option<String>,
    /// Origin of the caching HTTP proxy, e.g. http://127.0.0.1:8000 (http.upstream);
    /// turns the proxy on.
    #[arg(long)]
    upstream: Option<String>,
    /// Listen address of the HTTP proxy (http.listen, default 127.0.0.1:7080).
    #[arg(long)]
    http_listen: Option<String>,
    /// PostgreSQL server for the query-measuring proxy, e.g.
    /// postgres://127.0.0.1:5432 (postgres.upstream); turns the proxy on.
    #[arg(long)]
    pg_upstream: Option<String>,
    /// Listen address of the PostgreSQL proxy (postgres.listen, default 127.0.0.1:6433).
    #[arg(long)]
    pg_listen: Option<String>,
}

impl ServeArgs {
    fn flags(&self) -> Vec<(String, toml::Value)> {
        let s = |v: &str| toml::Value::String(v.to_owned());
        let mut f = Vec::new();
        let mut add = |path: &str, v: Option<toml::Value>| {
            if let Some(v) = v {
                f.push((path.to_owned(), v));
            }
        };
        add("server.listen", self.listen.as_deref().map(s));
        add("redis.url", self.redis_url.as_deref().map(s));
        add("profile", self.profile.as_deref().map(s));
        add("memory.max_bytes", self.max_memory.as_deref().map(s));
        add("http.upstream", self.upstream.as_deref().map(s));
        add("http.listen", self.http_listen.as_deref().map(s));
        add("postgres.upstream", self.pg_upstream.as_deref().map(s));
        add("postgres.listen", self.pg_listen.as_deref().map(s));
        add(
            "log.format",
            self.log_format.map(|f| match f {
                LogFormat::Json => s("json"),
                LogFormat::Pretty => s("pretty"),
            }),
        );
        add("log.level", self.log_level.as_deref().map(s));
        f
    }
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::LoadTest(args) => crate::loadtest::main(*args),
        Command::Report(args) => crate::loadtest::report(args),
        Command::Benchmark(args) => crate::loadtest::benchmark(args),
        Command::Metrics(args) => crate::watch::main(args),
        Command::Db(cmd) => crate::db::main(cmd),
        Command::InvalidationTest(args) => crate::invtest::main(args),
        Command::Config(ConfigCommand::Reference) => {
            print!("{}", config::reference());
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Example) => {
            print!("{}", config::EXAMPLE);
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Check { file, json }) => check(file, json),
    }
}

/// The file to read: the one given, else ./strata.toml when it exists.
fn sources(file: Option<PathBuf>, flags: Vec<(String, toml::Value)>) -> Result<Sources, String> {
    let file = file.or_else(|| {
        let default = Path::new("strata.toml");
        default.exists().then(|| default.to_path_buf())
    });
    let text = match file {
        Some(p) => {
            let t = std::fs::read_to_string(&p)
                .map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
            Some((p.display().to_string(), t))
        }
        None => None,
    };
    Ok(Sources {
        text,
        env: std::env::vars().collect(),
        flags,
    })
}

fn report(errs: &[ConfigError]) {
    for e in errs {
        eprintln!("error: {e}");
    }
    eprintln!(
        "{} configuration error{}; nothing was started",
        errs.len(),
        if errs.len() == 1 { "" } else { "s" }
    );
}

fn check(file: Option<PathBuf>, json: bool) -> ExitCode {
    let src = match sources(file, Vec::new()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let origin = src
        .text
        .as_ref()
        .map_or("built-in defaults".to_owned(), |(o, _)| o.clone());
    match config::load(&src) {
        Ok(cfg) => {
            let eff = cfg.effective();
            let out = if json {
                serde_json::to_string_pretty(&eff).map_err(|e| e.to_string())
            } else {
                toml::to_string(&eff).map_err(|e| e.to_string())
            };
            match out {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("error: cannot print the configuration: {e}");
                    return ExitCode::FAILURE;
                }
            }
            eprintln!("{origin}: OK");
            ExitCode::SUCCESS
        }
        Err(errs) => {
            report(&errs);
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    // A server must outlive clients that hang up: a write to a reset socket fails
    // with EPIPE instead of killing the process (main restores the default for
    // the printing commands).
    #[cfg(unix)]
    // SAFETY: setting one signal's disposition before the runtime starts threads.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let flags = args.flags();
    let cfg: Config = match sources(args.config, flags).map(|s| config::load(&s)) {
        Ok(Ok(c)) => c,
        Ok(Err(errs)) => {
            report(&errs);
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init(&cfg.log_level(), cfg.log_format());
    let rt = match runtime(true) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let server = match crate::server::Server::bind(cfg).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        server.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// The Tokio runtime a command runs on (a thread per core, or the calling thread);
/// on failure, the error is printed and the exit code returned.
pub(crate) fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut b = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("signal received");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Splits an example command line the way a POSIX shell would for these simple
    /// cases: whitespace, single quotes, `VAR=value` prefixes; a `# comment`,
    /// redirection or pipe ends it.
    fn words(line: &str) -> Vec<String> {
        // What follows a comment, a redirection or a pipe is not strata's.
        let line = [" #", " > ", " | "]
            .iter()
            .filter_map(|m| line.find(m))
            .min()
            .map_or(line, |i| &line[..i]);
        let (mut out, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
        for c in line.chars() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    any = true;
                }
                c if c.is_whitespace() && !quoted => {
                    if any {
                        out.push(std::mem::take(&mut cur));
                        any = false;
                    }
                }
                c => {
                    cur.push(c);
                    any = true;
                }
            }
        }
        if any {
            out.push(cur);
        }
        while out
            .first()
            .is_some_and(|w| w.contains('=') && w != "strata")
        {
            out.remove(0);
        }
        out
    }

    #[test]
    fn every_example_in_help_parses() {
        let mut checked = 0;
        let mut cmd = Cli::command();
        cmd.build();
        let mut stack: Vec<clap::Command> = vec![cmd];
        while let Some(c) = stack.pop() {
            if let Some(help) = c.get_after_help() {
                for line in help.to_string().lines() {
                    let line = line.trim();
                    let argv = words(line);
                    if argv.first().map(String::as_str) != Some("strata") {
                        continue; // prose
                    }
                    if let Err(e) = Cli::try_parse_from(&argv) {
                        panic!("`{line}` does not parse: {e}");
                    }
                    checked += 1;
                }
            }
            stack.extend(c.get_subcommands().cloned());
        }
        assert!(checked >= 20, "only {checked} examples found");
    }
}
