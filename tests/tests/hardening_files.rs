//! Issue 12 items 6 to 8 end to end, through the real `remote-agents mcp` over stdio in bypass
//! mode: the node's own config file and data dir stay out of reach (by name and through a hard
//! link), listings leave them out, and a refused `create_dirs` write makes no folder.

use serde_json::json;

use remote_agents_tests::node::McpProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_own_files_are_out_of_reach_over_mcp_even_in_bypass() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let work = std::fs::canonicalize(tmp.path())?;
    let data = work.join("data");
    let config = work.join("cfg/config.toml");
    std::fs::create_dir_all(config.parent().unwrap())?;
    std::fs::write(&config, "")?;
    let mut node = McpProcess::start(
        &[
            "--data-dir",
            &data.display().to_string(),
            "--config",
            &config.display().to_string(),
            "--mode",
            "bypass",
        ],
        &[],
    )
    .await?;

    // A read-only operator read the config; a write-only one rewrote it.
    let read = node.call_tool("read_file", json!({"path": config})).await?;
    assert_eq!(read["isError"], json!(true), "{read}");
    assert!(read.to_string().contains("hard limit"), "{read}");
    let write = node
        .call_tool(
            "write_file",
            json!({"path": config, "content": "mode = \"bypass\""}),
        )
        .await?;
    assert_eq!(write["isError"], json!(true), "{write}");
    assert_eq!(std::fs::read_to_string(&config)?, "");

    // The data dir is neither listed nor shown in its parent's listing.
    let listing = node.call_tool("list_dir", json!({"path": data})).await?;
    assert_eq!(listing["isError"], json!(true), "{listing}");
    let parent = node.call_tool("list_dir", json!({"path": work})).await?;
    assert_eq!(parent["isError"], json!(false), "{parent}");
    let names: Vec<&str> = parent["structuredContent"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        names.contains(&"cfg") && !names.contains(&"data"),
        "{names:?}"
    );

    // A hard link to the identity key is refused like the key.
    std::fs::hard_link(data.join("identity.key"), work.join("notes.txt"))?;
    let linked = node
        .call_tool("read_file", json!({"path": work.join("notes.txt")}))
        .await?;
    assert_eq!(linked["isError"], json!(true), "{linked}");

    // A refused write with create_dirs leaves no folder behind.
    let create = node
        .call_tool(
            "write_file",
            json!({"path": data.join("new/x"), "content": "x", "create_dirs": true}),
        )
        .await?;
    assert_eq!(create["isError"], json!(true), "{create}");
    assert!(!data.join("new").exists());
    Ok(())
}
