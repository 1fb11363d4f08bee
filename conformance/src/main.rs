//! `comnestor-conformance`: see `conformance/README.md`.

use clap::Parser;
use comnestor_conformance::cli::{self, Cli, Command, Format};

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let args = match cli.command {
        Command::List => {
            print!("{}", cli::list());
            return;
        }
        Command::Run(args) => args,
    };
    let cfg = match args.config() {
        Ok(cfg) => cfg,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(2);
        }
    };
    let report = comnestor_conformance::run(cfg).await;
    let writes = [(&args.junit, report.junit()), (&args.json, report.json())];
    for (path, content) in writes {
        let Some(path) = path else { continue };
        if let Err(error) = std::fs::write(path, content) {
            eprintln!("error: cannot write {}: {error}", path.display());
            std::process::exit(2);
        }
    }
    match args.format {
        Format::Text => print!("{}", report.text()),
        Format::Json => println!("{}", report.json()),
        Format::Junit => print!("{}", report.junit()),
    }
    std::process::exit(report.exit_code());
}
