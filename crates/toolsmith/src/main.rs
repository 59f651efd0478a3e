//! The `toolsmith` binary.

use clap::Parser;
use toolsmith::config::{Cli, Command};
use toolsmith::{admin, keys, server};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => server::serve(args).await,
        Command::Migrate(storage) => server::open_store(&storage).await.map(|store| {
            println!("database is up to date");
            drop(store);
        }),
        Command::Admin { storage, action } => {
            async {
                let store = server::open_store(&storage).await?;
                let token_key = keys::load_token_key(&storage.data_dir)?;
                let result = admin::run(&store, action, &storage, token_key).await;
                store.close().await;
                result
            }
            .await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("toolsmith: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
