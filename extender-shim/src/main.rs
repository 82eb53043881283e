use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fitsched_runtime::init_tracing();
    fitsched_shim::run(fitsched_shim::Args::parse()).await
}
