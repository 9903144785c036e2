//! `mamori`: the command line. Thin: parse, then call into the library.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use mamori::cli::{capture, rules as cmd_rules, rules_events, run};
use mamori::pipeline::{parse_kinds, KernelArgs};

/// mamori (守り) — runtime security sensor for Kubernetes nodes.
///
/// Watches exec, connect and open syscalls with eBPF, follows the process
/// tree, and matches events against Falco-syntax rules.
#[derive(Parser)]
#[command(name = "mamori", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print live kernel events (needs root). Stops on Ctrl-C / SIGTERM.
    Capture {
        /// One JSON object per line (the format `mamori replay` reads).
        #[arg(long)]
        json: bool,
        /// Only events whose process name (comm) is NAME.
        #[arg(long, value_name = "NAME")]
        comm: Option<String>,
        /// Only events of process PID and its descendants.
        #[arg(long, value_name = "PID")]
        pid: Option<u32>,
        /// Write to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        kernel: KernelFlags,
    },
    /// Run the sensor: evaluate rules on live events, print alerts (needs root).
    Run {
        /// Rule files or directories (default: /etc/mamori/rules, else ./rules).
        #[arg(long, short, value_name = "PATH")]
        rules: Vec<PathBuf>,
        #[command(flatten)]
        kernel: KernelFlags,
        /// Configuration file (default: /etc/mamori/mamori.yaml if it exists;
        /// see mamori.example.yaml).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Override a config key, e.g. `-o outputs.syslog.address=udp://127.0.0.1:514`
        /// (repeatable; beats MAMORI_OUTPUTS__... env vars and the file).
        #[arg(short = 'o', long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        /// Serve `GET /healthz` on ADDR (e.g. 0.0.0.0:8765): 503 while
        /// starting, 200 once the kernel programs are attached.
        #[arg(long, value_name = "ADDR")]
        health_addr: Option<std::net::SocketAddr>,
    },
    /// Author and check rules without a kernel.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// List the fields rules and outputs can use.
    Fields {
        #[arg(long)]
        json: bool,
    },
    /// Evaluate rules against recorded events (`mamori capture --json` output).
    Replay {
        /// The recorded events (JSON lines).
        events: PathBuf,
        #[arg(long, short, value_name = "PATH", required = true)]
        rules: Vec<PathBuf>,
    },
    /// Print the version.
    Version,
}

/// Kernel-side flags of `capture` and `run`.
#[derive(clap::Args)]
struct KernelFlags {
    /// Kernel ring buffer size in bytes (power of two).
    #[arg(long, value_name = "BYTES")]
    ring_size: Option<u32>,
    /// Event kinds to capture: exec, fork, exit, open, connect, the
    /// table-driven families net, fds, identity, inject, fileop, chdir (for
    /// `run`, of those only the syscalls a loaded rule needs), flow and dns
    /// (default: all but flow and dns; `run` adds those when a rule asks).
    #[arg(long, value_delimiter = ',', value_name = "KIND,...")]
    events: Vec<String>,
    /// Read the clock for every open and connect event. By default those
    /// carry their CPU's first clock reading of the current scheduler tick
    /// (at most 1/HZ, 1-4 ms, early; exec/fork/exit are always exact), which
    /// saves a clock read per event.
    #[arg(long)]
    precise_time: bool,
}

impl KernelFlags {
    fn parse(self) -> anyhow::Result<KernelArgs> {
        Ok(KernelArgs {
            ring_bytes: self.ring_size,
            kinds: parse_kinds(&self.events)?,
            precise_time: self.precise_time,
            syscalls: None,
        })
    }
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Check rule files; exit non-zero on errors.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List rules with priority, tags, event types and whether they are active.
    List {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Print the syscalls the kernel captures for these rules instead
        /// (the per-syscall selection `mamori run` makes).
        #[arg(long)]
        events: bool,
    },
    /// Run rule test cases (see rules/README.md).
    Test {
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Rules to test against (default: as the cases say).
        #[arg(long, short, value_name = "PATH")]
        rules: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_target(false)
        .init();
    match dispatch(cli.cmd, cli.verbose) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mamori: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn dispatch(cmd: Cmd, verbose: u8) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Capture {
            json,
            comm,
            pid,
            output,
            kernel,
        } => {
            let args = capture::CaptureArgs {
                json,
                comm,
                pid,
                output,
                kernel: kernel.parse()?,
            };
            runtime()?.block_on(capture::capture(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run {
            rules,
            kernel,
            config,
            options,
            health_addr,
        } => {
            let kernel = kernel.parse()?;
            let rc = run::RunConfig {
                config,
                overrides: options,
                verbose: verbose > 0,
                health_addr,
            };
            runtime()?.block_on(run::run(rules, kernel, rc))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rules { cmd } => match cmd {
            RulesCmd::Validate { paths, json } => cmd_rules::validate(&paths, json),
            RulesCmd::List {
                paths,
                json,
                events: true,
            } => rules_events::list_events(&paths, json),
            RulesCmd::List { paths, json, .. } => cmd_rules::list(&paths, json),
            RulesCmd::Test { dirs, rules } => cmd_rules::test(&dirs, &rules),
        },
        Cmd::Fields { json } => cmd_rules::fields(json),
        Cmd::Replay { events, rules } => cmd_rules::replay(&events, &rules),
        Cmd::Version => {
            println!("mamori {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}
