//! The `gatehouse` binary: parse the command line, load the config, run, and turn errors into a clear
//! message and exit code (78 for an invalid configuration, 1 for anything else).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use gatehouse::cli::{self, Cli, Command, DebugAction, DemoAction};
use gatehouse::config::{self, ConfigError, EXIT_CONFIG};
use gatehouse::{app, demo, supervise};

fn main() -> ExitCode {
    // `--version` names the build and the models it finds (sha256 prefixes from the manifest).
    let models = gatehouse::recognize::Manifest::load(&cli::default_manifest())
        .map(|m| m.fingerprint())
        .unwrap_or_else(|_| "models: manifest not found".into());
    let long: &'static str = Box::leak(format!("{}\nmodels: {models}", cli::VERSION).into_boxed_str());
    let matches = <Cli as clap::CommandFactory>::command()
        .long_version(long)
        .get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    supervise::init_logging(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigError>() {
                eprintln!("Invalid configuration: {ce}");
                return ExitCode::from(EXIT_CONFIG);
            }
            eprintln!("gatehouse: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config } => {
            // Start-up: config (touches nothing) -> panic hook -> runtime -> app (opens devices, models, db).
            let cfg = cli::load_unlocked(&config)?;
            supervise::install_panic_hook(true);
            let parts = app::Parts::real(&cfg)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let summary = rt.block_on(app::run(cfg, parts, supervise::shutdown_signal()));
            // A part that overran its stop deadline is still being joined on a blocking thread: dropping
            // the runtime would wait for it forever, so give it two more seconds and go.
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            let summary = summary?;
            println!(
                "stopped: {} frames ({} dropped), {} decisions, {} opened, {} events committed",
                summary.frames, summary.frames_dropped, summary.decisions, summary.opened, summary.events_committed
            );
            Ok(())
        }
        Command::CheckConfig { config } => {
            let cfg = cli::load_unlocked(&config)?;
            // The models `run` loads, checked as `run` checks them (each file against its sha256).
            gatehouse::recognize::Manifest::load(&cfg.recognize.manifest)
                .and_then(|m| m.verify_files())
                .map_err(|e| {
                    ConfigError::Invalid(vec![config::ConfigIssue {
                        path: "recognize.manifest".into(),
                        problem: e.to_string(),
                        fix: "re-run scripts/setup.sh to fetch the models, or correct the manifest".into(),
                    }])
                })?;
            print!("{}", cfg.summary());
            cli::check_storage(&cfg)?;
            println!("configuration OK");
            Ok(())
        }
        Command::Recognize {
            input,
            annotate,
            json,
            models,
        } => cli::recognize(&input, annotate.as_deref(), json, &models),
        Command::Eval {
            dir,
            json,
            threads,
            top_n,
            split,
            failures,
            models,
        } => cli::eval(&dir, json, threads, top_n, split, failures.as_deref(), &models),
        Command::EvalPasses {
            dir,
            frames,
            fps,
            seed,
            split,
            threads,
            json,
            models,
        } => cli::eval_passes(&dir, frames, fps, seed, split, threads, json, &models),
        Command::Speed {
            dir,
            rounds,
            baseline,
            models,
        } => cli::speed(&dir, rounds, baseline.as_deref(), &models),
        Command::Allowlist { config, action } => cli::allowlist(&config, action),
        Command::Keys { action } => cli::keys(action),
        Command::Dsar { action } => cli::dsar(action),
        Command::Audit { config, action } => cli::audit_cmd(&config, action),
        Command::Backup {
            config,
            recipient,
            out,
            events,
        } => cli::backup(&config, &recipient, &out, events),
        Command::BackupKey { dir, id } => cli::backup_key(&dir, &id),
        Command::Restore {
            config,
            from,
            key,
            other_site,
        } => cli::restore(&config, &from, &key, other_site),
        Command::User { config, action } => cli::user(&config, action),
        Command::Panel {
            action: cli::PanelAction::Cert { dir, hosts },
        } => cli::panel_cert(&dir, &hosts),
        Command::PrivacyPolicy { config } => {
            let cfg = config::load(&config)?;
            print!(
                "{}",
                gatehouse::privacy::policy(&cfg.site.name, &cfg.privacy.effective, cfg.privacy.contact.as_deref())
            );
            Ok(())
        }
        Command::Events { config, action } => cli::events(&config, action),
        Command::Sync {
            config,
            action: cli::SyncAction::Status { json },
        } => cli::sync_status(&config, json),
        Command::Demo {
            action:
                DemoAction::Video {
                    out,
                    plates,
                    fps,
                    seconds,
                    gap,
                    still_road,
                },
        } => {
            let passes = if plates.is_empty() {
                demo::default_passes()
            } else {
                plates
                    .into_iter()
                    .map(|plate| demo::DemoPass { plate, seconds })
                    .collect()
            };
            let n = demo::render(&out, &passes, fps, gap, still_road)?;
            println!("wrote {} ({n} frames, {} vehicles)", out.display(), passes.len());
            Ok(())
        }
        Command::Debug {
            action: DebugAction::EventBurst { config, count },
        } => cli::event_burst(&config, count),
    }
}
