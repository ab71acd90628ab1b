//! Runs simulated benchmark nodes in a process of their own (see `simulated::SimulatedFleet`,
//! which starts it): `sim-nodes RELAY_URL WORK_DIR PROCESS/COUNT`, then one `FIRST LAST` line
//! on stdin per wave of nodes `sim-FIRST`..=`sim-LAST`, of which this process starts its share
//! (every COUNT-th). The nodes run until stdin closes.

// The allocator of the remote-agents binary, so the simulated nodes allocate the way real ones do.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage =
        "usage: sim-nodes RELAY_URL WORK_DIR PROCESS/COUNT (then `FIRST LAST` lines on stdin)";
    let (Some(relay_url), Some(work), Some(share), None) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        anyhow::bail!(usage);
    };
    let (process, count) = share
        .split_once('/')
        .and_then(|(p, c)| Some((p.parse::<usize>().ok()?, c.parse::<usize>().ok()?)))
        .filter(|(process, count)| process < count)
        .ok_or_else(|| anyhow::anyhow!("{usage}: PROCESS/COUNT, got {share:?}"))?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(remote_agents_tests::simulated::serve_nodes(
            relay_url,
            work.into(),
            process,
            count,
        ))
}
