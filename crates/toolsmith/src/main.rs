//! The `toolsmith` binary.

use clap::Parser;
use toolsmith::admin::AdminAction;
use toolsmith::config::{Cli, Command};
use toolsmith::{admin, backup, keys, server};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("toolsmith: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    // Work cut at the end of a shutdown's grace may still sit in blocking threads; they must
    // not keep the process from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("toolsmith: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => server::serve(args).await,
        Command::Mcp(args) => toolsmith::mcp::bridge::run(args).await,
        Command::Migrate(storage) => server::open_store(&storage).await.map(|store| {
            println!("database is up to date");
            drop(store);
        }),
        // Neither opens the store: a backup reads a live database through SQLite's backup API,
        // and a restore needs an empty data directory, which opening the store would fill.
        Command::Admin { storage, action: AdminAction::Backup { dir } } => {
            let summary = tokio::task::spawn_blocking(move || backup::backup(&storage, &dir).map(|s| (s, dir))).await?;
            let (summary, dir) = summary?;
            println!("backup written to {}: {summary}", dir.display());
            if summary.database {
                println!("restore with: toolsmith admin --data-dir <empty directory> restore {}", dir.display());
            } else {
                println!(
                    "the PostgreSQL database is not in it: take it with pg_dump before this backup (see the README)"
                );
            }
            if backup::keys_from_environment() {
                println!(
                    "{} / {} are set: keep those keys with this backup; without them its secrets cannot be opened",
                    keys::SECRET_KEYS_ENV,
                    keys::TOKEN_KEY_ENV
                );
            }
            Ok(())
        }
        Command::Admin { storage, action: AdminAction::Restore { dir } } => {
            let target = storage.clone();
            let summary = tokio::task::spawn_blocking(move || backup::restore(&target, &dir)).await??;
            // Opening the store applies the migrations a newer toolsmith needs and proves the
            // restored database and keys go together.
            let store = server::open_store(&storage).await?;
            let orgs = store.list_orgs().await?;
            store.close().await;
            println!(
                "restored into {}: {summary}; {} organizations: {}",
                storage.data_dir.display(),
                orgs.len(),
                orgs.iter().map(|o| o.id.as_str()).collect::<Vec<_>>().join(", ")
            );
            Ok(())
        }
        Command::Admin { storage, action } => {
            let store = server::open_store(&storage).await?;
            let token_key = keys::load_token_key(&storage.data_dir)?;
            let result = admin::run(&store, action, &storage, token_key).await;
            store.close().await;
            result
        }
    }
}
