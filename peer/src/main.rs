//! `peer`: argument parsing and exit codes; the commands live in the library.

use std::process::ExitCode;

use peer::cli::{self, Cli, Command, Ctx, Out};

/// `peer completions SHELL` and `peer man`: hidden helpers for packagers, outside the
/// contract's commands (so they are taken before the CLI proper parses argv).
fn generated_docs() -> Option<ExitCode> {
    use clap::{CommandFactory, ValueEnum};
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["completions", shell] => match clap_complete::Shell::from_str(shell, true) {
            Ok(shell) => {
                clap_complete::generate(shell, &mut Cli::command(), "peer", &mut std::io::stdout());
                Some(ExitCode::SUCCESS)
            }
            Err(_) => {
                eprintln!("error: unknown shell {shell:?} (bash, zsh, fish, elvish, powershell)");
                Some(ExitCode::from(2))
            }
        },
        ["man"] => Some(match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write the man page: {e}");
                ExitCode::from(1)
            }
        }),
        _ => None,
    }
}

fn main() -> ExitCode {
    if let Some(code) = generated_docs() {
        return code;
    }
    let parsed = cli::parse_args();
    if !matches!(parsed.command, Command::Daemon { .. }) {
        proto::stdout::exit_quietly_on_closed_stdout();
    }
    let default_level = if matches!(parsed.command, Command::Daemon { .. }) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();

    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = Out::new(parsed.global.json);
    let code = rt.block_on(async {
        let mut ctx = match Ctx::new(parsed.global.clone()) {
            Ok(c) => c,
            Err(e) => {
                out.error(&e);
                return e.exit_code;
            }
        };
        // The shell sits above the commands it runs: `cli` never calls back up into it.
        let result = match parsed.command {
            Command::Shell => peer::shell::run(&mut ctx).await,
            command => cli::run_command(&mut ctx, command, &mut out).await,
        };
        match result {
            Ok(()) => 0,
            Err(e) => {
                out.error(&e);
                e.exit_code
            }
        }
    });
    ExitCode::from(code)
}
