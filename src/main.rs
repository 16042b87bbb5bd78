use clap::Parser;

fn main() -> std::process::ExitCode {
    arq_lockdown::run(arq_lockdown::cli::Cli::parse()).into()
}
