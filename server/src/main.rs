use clap::Parser;
use comnestor_server::cli::{self, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One process-wide TLS provider: sea-orm's sqlx brings ring, and rustls refuses to guess
    // when more than one provider is compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("comnestor: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
