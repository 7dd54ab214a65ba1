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
        return explain(&cfg, request, headers, *json);
    }
    if args.test {
        println!("config OK");
        return 0;
    }
    crate::logging::init(cfg.logging.level);
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
