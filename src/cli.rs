//! Command line: `-c FILE`, `-t`, `-d`, `-u`, `--demo`, `--version`, `--help`.

use crate::app::{self, StartOptions};
use crate::config;
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "gatehouse",
    version,
    about = "An API gateway on Cloudflare's Pingora"
)]
pub struct Args {
    /// Config file
    #[arg(
        short = 'c',
        long = "conf",
        value_name = "FILE",
        default_value = "/etc/gatehouse/gatehouse.yaml"
    )]
    pub conf: PathBuf,
    /// Validate the config and exit (0 and `config OK`, or the errors and 1)
    #[arg(short = 't', long = "test")]
    pub test: bool,
    /// Run in the background (pid file from `server.pid_file`)
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Take over the listening sockets of a running instance (zero-downtime upgrade)
    #[arg(short = 'u', long = "upgrade")]
    pub upgrade: bool,
    /// Run on 127.0.0.1:8080 with three built-in demo services
    #[arg(long = "demo")]
    pub demo: bool,
    /// With --demo: export traces of every demo request to this OTLP/HTTP URL
    /// (tracing is off otherwise)
    #[arg(long = "otlp", value_name = "URL", requires = "demo")]
    pub otlp: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Say what the config does with one request, without serving it:
    /// `explain 'GET https://api.example.com/users/7' -H 'Authorization: Bearer x'`
    Explain {
        /// `METHOD URL`; URL is `http(s)://host/path?query` or `/path?query`
        request: String,
        /// A request header, `Name: value` (repeatable)
        #[arg(short = 'H', long = "header", value_name = "HEADER")]
        headers: Vec<String>,
        /// The explanation as JSON
        #[arg(long)]
        json: bool,
    },
    /// Cluster mode: validate FILE as `-t` would, then write it to etcd with
    /// a compare-and-swap and print the new revision
    Push {
        /// The shared config document (upstreams, routes, auth, ...)
        #[arg(required_unless_present = "rollback", conflicts_with = "rollback")]
        file: Option<PathBuf>,
        /// Push the document of an earlier revision again, as a new revision
        #[arg(long, value_name = "REV")]
        rollback: Option<u64>,
        /// Write only if the config is still at this revision
        #[arg(long, value_name = "REV")]
        if_revision: Option<u64>,
    },
    /// Cluster mode: every live node, what it runs, and whether all agree
    Cluster {
        /// As JSON (the document of `GET /cluster`)
        #[arg(long)]
        json: bool,
    },
}

/// `push` and `cluster`: commands that need the local file's `cluster`.
fn fleet_command(cfg: &config::Config, conf: &std::path::Path, cmd: &Command) -> Option<i32> {
    use crate::cluster::cli::{self as ccli, PushSource};
    let needs_cluster = || {
        eprintln!(
            "{} has no `cluster` section: push and cluster work in cluster mode only",
            conf.display()
        );
        1
    };
    match cmd {
        Command::Push {
            file,
            rollback,
            if_revision,
        } => Some(match (&cfg.cluster, file, rollback) {
            (None, _, _) => needs_cluster(),
            (Some(c), _, Some(rev)) => {
                ccli::push(c, conf, PushSource::Rollback(*rev), *if_revision)
            }
            (Some(c), Some(f), None) => ccli::push(c, conf, PushSource::File(f), *if_revision),
            (Some(_), None, None) => 2,
        }),
        Command::Cluster { json } => Some(match &cfg.cluster {
            None => needs_cluster(),
            Some(c) => ccli::status(c, *json),
        }),
        Command::Explain { .. } => None,
    }
}

/// `explain`: 0 whether or not a route matches, 1 when the request (or
/// the config) cannot be read.
fn explain(cfg: &config::Config, request: &str, headers: &[String], as_json: bool) -> i32 {
    use crate::proxy::explain::{self, ExplainRequest};
    let parsed = explain::parse_line(request).and_then(|(method, url)| {
        let mut hs = Vec::new();
        for h in headers {
            let Some((n, v)) = h.split_once(':') else {
                return Err(explain::Unparseable(format!(
                    "header `{h}` is not `Name: value`"
                )));
            };
            hs.push((n.to_string(), v.to_string()));
        }
        explain::offline(
            cfg,
            &ExplainRequest {
                method,
                url,
                headers: hs,
            },
        )
    });
    // A closed pipe (`| head`) is not an error worth a panic.
    use std::io::Write;
    match parsed {
        Ok(doc) => {
            let text = if as_json {
                serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
            } else {
                explain::render(&doc)
            };
            let _ = std::io::stdout().write_all(text.as_bytes());
            0
        }
        Err(e) => {
            eprintln!("explain: {}", e.0);
            1
        }
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let args = Args::parse();
    crate::signals::install_early();
    if args.demo {
        return crate::demo::run(args.otlp.as_deref());
    }
    let cfg = match config::load_file(&args.conf) {
        Ok(c) => c,
        Err(e) => {
            for line in e.errors() {
                eprintln!("{line}");
            }
            if matches!(e, config::LoadError::Invalid { .. }) {
                eprintln!("config {} has errors", args.conf.display());
            }
            return 1;
        }
    };
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
        log::warn!("config: {w}");
    }
    if let Some(Command::Explain {
        request,
        headers,
        json,
    }) = &args.command
    {
        return match crate::cluster::boot::offline(cfg, &args.conf) {
            Ok(cfg) => explain(&cfg, request, headers, *json),
            Err(e) => {
                eprintln!("explain: {e}");
                1
            }
        };
    }
    if let Some(code) = args
        .command
        .as_ref()
        .and_then(|c| fleet_command(&cfg, &args.conf, c))
    {
        return code;
    }
    if args.test {
        println!("config OK");
        return 0;
    }
    crate::logging::init(cfg.logging.level);
    // Cluster mode: the shared part comes from etcd (or the snapshot file).
    let (cfg, doc) = match crate::cluster::boot::start(cfg, &args.conf) {
        Ok(start) => (start.config, start.doc),
        Err(e) => {
            eprintln!("cluster: {e}");
            return 1;
        }
    };
    log::info!(
        "gatehouse {} starting: listeners {:?}, {} routes, {} upstreams",
        env!("CARGO_PKG_VERSION"),
        cfg.server.listen,
        cfg.routes.len(),
        cfg.upstreams.len()
    );
    let config_path = std::fs::canonicalize(&args.conf).unwrap_or(args.conf.clone());
    let opts = StartOptions {
        daemon: args.daemon,
        upgrade: args.upgrade,
        config_path: Some(config_path),
        cluster_doc: doc,
        signals: true,
    };
    match app::build(cfg, opts) {
        Ok(app) => {
            app.run_with_signals();
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
