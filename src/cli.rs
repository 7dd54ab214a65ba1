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
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let args = Args::parse();
    crate::signals::install_early();
    if args.demo {
        return crate::demo::run();
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
