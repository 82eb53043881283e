use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fitsched_runtime::init_tracing();
    fitsched_scorer::run(fitsched_scorer::Args::parse()).await
}
