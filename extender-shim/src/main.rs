use clap::Parser;

fn main() -> anyhow::Result<()> {
    fitsched_runtime::init_tracing();
    // At least two workers: under a CPU limit below one core Tokio would start one, and a
    // large body being decoded there would hold every other answer, and its deadline, behind it.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(fitsched_shim::run(fitsched_shim::Args::parse()))
}
