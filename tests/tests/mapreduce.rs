//! MapReduce across a real fleet: word count over 8 node processes equals the single-process
//! count (host-local files from a declared job, and input shipped from fleetctl), and killing 2
//! nodes in the middle of a job still gives the identical result.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use remote_agents_tests::fleet::{NodeSpec, TestFleet, node_dir};
use remote_agents_tests::net::DEADLINE;

/// The map of every word count here: counts per word of its stdin.
const WORD_COUNT_AWK: &str = "{for(i=1;i<=NF;i++)c[$i]++} END{for(w in c)print w, c[w]}";

/// A deterministic text of `lines` lines of words from a small vocabulary (so words repeat
/// across partitions and the sums matter).
fn generate_text(lines: usize, seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let vocabulary: Vec<String> = (0..300)
        .map(|i| {
            let len = 2 + i % 7;
            (0..len)
                .map(|k| (b'a' + ((i * 7 + k * 3) % 26) as u8) as char)
                .collect::<String>()
                + &i.to_string()
        })
        .collect();
    let mut text = String::new();
    for _ in 0..lines {
        let words = rng.usize(1..12);
        let line: Vec<&str> = (0..words)
            .map(|_| vocabulary[rng.usize(..vocabulary.len())].as_str())
            .collect();
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    text
}

/// The single-process answer, computed here.
fn count_words(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for word in text.split_whitespace() {
        *counts.entry(word.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Parses `WORD COUNT` lines.
fn parse_counts(result: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    result
        .lines()
        .map(|line| {
            let (word, count) = line
                .rsplit_once(' ')
                .with_context(|| format!("not `word count`: {line:?}"))?;
            Ok((word.to_string(), count.parse()?))
        })
        .collect()
}

fn eight_nodes(mode: &str) -> Vec<NodeSpec> {
    (1..=8)
        .map(|i| NodeSpec::new(&format!("mr-{i}"), &["mr"], mode))
        .collect()
}

/// Runs `fleetctl mapreduce run ... -o json` and returns the parsed report.
async fn run_job(fleet: &TestFleet, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut all = vec!["mapreduce", "run", "-q", "-o", "json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = fleet.fleetctl(&all).await?;
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .with_context(|| format!("fleetctl printed no JSON (exit {code}): {stdout}\n{stderr}"))?;
    anyhow::ensure!(code == 0, "exit {code}: {report:#}\n{stderr}");
    Ok(report)
}

fn counts_of(report: &serde_json::Value) -> anyhow::Result<BTreeMap<String, u64>> {
    parse_counts(report["result"].as_str().context("no result")?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_over_eight_nodes_equals_the_single_process_count() -> anyhow::Result<()> {
    // Bypass mode grants the shell that feeds a host-local file to the map's stdin.
    let fleet = TestFleet::start(&eight_nodes("bypass")).await?;
    let text = generate_text(40_000, 7);
    let expected = count_words(&text);

    // 1. A declared job over files each host holds itself: every node gets its own share of
    //    the text, split over two files, and expands `input/*.txt` in its home itself.
    let lines: Vec<&str> = text.lines().collect();
    let shares = lines.chunks(lines.len().div_ceil(16)).collect::<Vec<_>>();
    for (index, share) in shares.iter().enumerate() {
        let host = format!("mr-{}", index / 2 + 1);
        let dir = node_dir(&fleet, &host).join("input");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join(format!("part-{index}.txt")),
            share.join("\n") + "\n",
        )?;
    }
    let spec = fleet.dir.path().join("spec");
    std::fs::create_dir_all(&spec)?;
    std::fs::write(
        spec.join("wordcount.yaml"),
        format!(
            "apiVersion: remote-agents.dev/v1\nkind: MapReduceJob\nmetadata:\n  name: wordcount\n\
             spec:\n  target: tag:mr\n  input:\n    files: [\"input/*.txt\"]\n  map:\n    \
             command: [awk, {awk:?}]\n  reduce:\n    builtin: sum\n  retries: 1\n",
            awk = WORD_COUNT_AWK
        ),
    )?;
    let report = run_job(&fleet, &["wordcount", "-f", spec.to_str().unwrap()]).await?;
    assert_eq!(report["partitions"], 16, "{report:#}");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["hosts"].as_array().map(Vec::len), Some(8));
    // The hosts read their own files: nothing was shipped from the caller.
    assert_eq!(report["shipped_bytes"], 0);
    assert_eq!(report["input_bytes"], 0);
    assert_eq!(counts_of(&report)?, expected);

    // 2. The same text shipped from fleetctl in chunks, reduced by the same awk summing on the
    //    caller, with argv map (no shell on the hosts), at most two maps in flight fleet-wide.
    let local = fleet.dir.path().join("words.txt");
    std::fs::write(&local, &text)?;
    let report = run_job(
        &fleet,
        &[
            "--target",
            "tag:mr",
            "--input-local",
            local.to_str().unwrap(),
            "--partitions",
            "3",
            "--max-in-flight",
            "2",
            "--map-arg",
            "awk",
            "--map-arg",
            WORD_COUNT_AWK,
            "--reduce",
            "awk '{c[$1]+=$2} END{for(w in c)print w, c[w]}'",
        ],
    )
    .await?;
    assert_eq!(report["partitions"], 24, "{report:#}");
    assert_eq!(report["input_bytes"], text.len() as u64);
    // Every partition was shipped at least once (backups of stragglers send theirs again).
    assert!(report["shipped_bytes"].as_u64().unwrap_or(0) >= text.len() as u64);
    assert_eq!(counts_of(&report)?, expected);

    // 3. Inline items, and a reduce command run on a chosen host instead of the caller.
    let mut args = vec!["--target", "tag:mr", "--map-arg", "wc", "--map-arg", "-w"];
    let items: Vec<String> = (0..20).map(|i| format!("w{i} x{i} y{i}")).collect();
    for item in &items {
        args.extend_from_slice(&["--input-item", item]);
    }
    args.extend_from_slice(&[
        "--reduce",
        "awk '{s+=$1} END{print s, ENVIRON[\"TEST_NODE_NAME\"]}'",
        "--reduce-on",
        "mr-5",
    ]);
    let report = run_job(&fleet, &args).await?;
    assert_eq!(report["result"], "60 mr-5\n", "{report:#}");

    // 4. The lines a command prints on the caller, split over the hosts.
    let report = run_job(
        &fleet,
        &[
            "--target",
            "tag:mr",
            "--input-command",
            "seq 1 1000",
            "--map-arg",
            "wc",
            "--map-arg",
            "-l",
            "--reduce",
            "sum",
        ],
    )
    .await?;
    assert_eq!(report["partitions"], 8, "{report:#}");
    assert_eq!(report["result"], "1000\n", "{report:#}");
    Ok(())
}

/// Waits until `dir` holds at least `count` entries.
async fn wait_for_entries(dir: &Path, count: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + DEADLINE * 3;
    loop {
        let present = std::fs::read_dir(dir)?.count();
        if present >= count {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {present} of {count} map attempts started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_two_nodes_mid_job_still_gives_the_identical_result() -> anyhow::Result<()> {
    let mut fleet = TestFleet::start(&eight_nodes("edit")).await?;
    let text = generate_text(30_000, 11);
    let expected = count_words(&text);
    let local = fleet.dir.path().join("words.txt");
    std::fs::write(&local, &text)?;
    // Each map attempt says it started (a marker file), then holds until the test releases
    // it: so the job is surely mid-way, with a partition on every host, when nodes die.
    let marks = fleet.dir.path().join("started");
    std::fs::create_dir_all(&marks)?;
    let go = fleet.dir.path().join("go");
    let script = format!(
        "touch '{marks}'/\"$TEST_NODE_NAME.$$\"; while [ ! -e '{go}' ]; do sleep 0.02; done; \
         exec awk '{WORD_COUNT_AWK}'",
        marks = marks.display(),
        go = go.display()
    );
    let job = fleet
        .fleetctl_command(&[
            "mapreduce",
            "run",
            "-q",
            "-o",
            "json",
            "--target",
            "tag:mr",
            "--input-local",
            local.to_str().unwrap(),
            "--partitions",
            "2",
            "--per-host",
            "1",
            "--retries",
            "0",
            "--map-arg",
            "sh",
            "--map-arg",
            "-c",
            "--map-arg",
            &script,
            "--reduce",
            "sum",
        ])?
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    wait_for_entries(&marks, 8).await?;
    fleet.kill("mr-3").await?;
    fleet.kill("mr-6").await?;
    std::fs::write(&go, "")?;
    let output = tokio::time::timeout(Duration::from_secs(120), job.wait_with_output())
        .await
        .context("the job did not finish")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).with_context(|| {
        format!(
            "no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["partitions"], 16);
    assert_eq!(report["failed"], 0, "{report:#}");
    let mut lost: Vec<&str> = report["hosts_lost"]
        .as_array()
        .context("hosts_lost")?
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    lost.sort_unstable();
    assert_eq!(lost, vec!["mr-3", "mr-6"], "{report:#}");
    // Their partitions moved: every kept output came from a live host, and some partition
    // needed a second attempt.
    for done in report["committed"].as_array().context("committed")? {
        let host = done["host"].as_str().unwrap_or_default();
        assert!(host != "mr-3" && host != "mr-6", "{done}");
    }
    assert!(report["attempts"].as_u64().unwrap_or(0) > 16, "{report:#}");
    assert_eq!(counts_of(&report)?, expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_runs_mapreduce_and_sees_partitions_progress() -> anyhow::Result<()> {
    let fleet = TestFleet::start(&[
        NodeSpec::new("w-1", &["w"], "edit"),
        NodeSpec::new("w-2", &["w"], "edit"),
        NodeSpec::new("w-3", &["w"], "edit"),
    ])
    .await?;
    let mut mcp = fleet.start_mcp_operator().await?;
    let items: Vec<String> = (0..30).map(|i| format!("a{i} b{i} c{i}")).collect();
    let arguments = serde_json::json!({
        "target": "tag:w",
        "input": {"items": items},
        "partitions": 2,
        "map": {"command": ["wc", "-w"]},
        "reduce": {"builtin": "sum"},
    });
    // The MCP node joins the room in the background: retry until it sees all three hosts.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let result = mcp.call_tool("mapreduce", arguments.clone()).await?;
        if result["structuredContent"]["hosts"]
            .as_array()
            .map(Vec::len)
            == Some(3)
        {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "fleet never complete: {result}"
        );
    }
    // Now with a progress token: partitions done / total arrive before the result.
    let id = mcp
        .send(
            "tools/call",
            serde_json::json!({
                "name": "mapreduce",
                "arguments": arguments,
                "_meta": {"progressToken": "mr"},
            }),
        )
        .await?;
    let mut progress = Vec::new();
    let response = loop {
        let message = mcp.next_message(Duration::from_secs(30)).await?;
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "mr");
            progress.push(message["params"].clone());
        } else if message["id"] == serde_json::json!(id) {
            break message;
        }
    };
    let report = &response["result"]["structuredContent"];
    assert_eq!(report["partitions"], 6, "{response}");
    assert_eq!(report["complete"], true, "{response}");
    assert_eq!(report["result"], "90\n");
    assert!(
        progress
            .iter()
            .any(|p| p["total"].as_f64() == Some(6.0) && p["progress"].as_f64() == Some(6.0)),
        "{progress:?}"
    );
    assert!(
        progress.iter().any(|p| p["message"]
            .as_str()
            .unwrap_or("")
            .contains("partitions done")),
        "{progress:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_hosts_own_files_are_reported_failed_with_the_reason() -> anyhow::Result<()> {
    let mut fleet = TestFleet::start(&[
        NodeSpec::new("f-1", &["f"], "bypass"),
        NodeSpec::new("f-2", &["f"], "bypass"),
        NodeSpec::new("f-3", &["f"], "bypass"),
    ])
    .await?;
    for host in ["f-1", "f-2", "f-3"] {
        let dir = node_dir(&fleet, host).join("input");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("a.txt"), "one two\n")?;
        std::fs::write(dir.join("b.txt"), "three\n")?;
    }
    let marks = fleet.dir.path().join("started");
    std::fs::create_dir_all(&marks)?;
    let go = fleet.dir.path().join("go");
    let map = format!(
        "touch '{marks}'/\"$TEST_NODE_NAME\"; while [ ! -e '{go}' ]; do sleep 0.02; done; wc -w",
        marks = marks.display(),
        go = go.display()
    );
    let job = fleet
        .fleetctl_command(&[
            "mapreduce",
            "run",
            "-q",
            "-o",
            "json",
            "--target",
            "tag:f",
            "--input-files",
            "input/*.txt",
            "--per-host",
            "1",
            "--map",
            &map,
            "--reduce",
            "sum",
        ])?
        .spawn()?;
    wait_for_entries(&marks, 3).await?;
    fleet.kill("f-2").await?;
    std::fs::write(&go, "")?;
    let output = tokio::time::timeout(Duration::from_secs(120), job.wait_with_output())
        .await
        .context("the job did not finish")??;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    // Incomplete: exit 1, and the result covers only the live hosts' files.
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(report["complete"], false);
    assert_eq!(report["done"], 4, "{report:#}");
    assert_eq!(report["result"], "6\n");
    let failed = report["failed_partitions"].as_array().context("failed")?;
    assert_eq!(failed.len(), 2, "{report:#}");
    for failure in failed {
        assert_eq!(failure["host"], "f-2", "{failure}");
        assert!(
            failure["input"].as_str().unwrap_or("").starts_with("f-2:"),
            "{failure}"
        );
        assert!(
            failure["error"]
                .as_str()
                .unwrap_or("")
                .contains("cannot be read elsewhere"),
            "{failure}"
        );
    }
    Ok(())
}
