use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fitsched_runtime::init_tracing();
    fitsched_agent::run(fitsched_agent::Args::parse()).await
}
