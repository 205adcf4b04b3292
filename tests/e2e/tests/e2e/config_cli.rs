//! Configuration files (TOML, mcpServers JSON, imports, `${VAR}`) and the command line
//! (`patchbay ops`, `check`, `--help`, the embedded demo).

use std::time::Duration;

use patchbay_e2e::*;
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(30);
/// One `patchbay` command that starts fixture upstreams and answers.
const CLI: Duration = Duration::from_secs(30);
const MISSING_VAR: &str = "PATCHBAY_E2E_SURELY_UNSET_VARIABLE";

fn mcp_servers_json(name: &str, flags: &[&str]) -> String {
    json!({"mcpServers": {name: {"command": fixture().display().to_string(), "args": flags}}})
        .to_string()
}

#[tokio::test]
async fn mcp_servers_json_works_unchanged() {
    let ws = Workspace::new();
    let config = ws.write("servers.json", &mcp_servers_json("fx", &[]));
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(READY).await;
    let client = hub.client().await;
    let r = call_one(&client, "fx.echo", json!({"text": "from json"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "from json", "{r}");
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn toml_imports_mcp_servers_files() {
    let ws = Workspace::new();
    ws.write("mcp.json", &mcp_servers_json("imported", &[]));
    let config = ws.write(
        "patchbay.toml",
        &format!(
            "import = [\"mcp.json\"]\n\n{}",
            fixture_upstream("own", &[], "")
        ),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(READY).await;
    let namespaces: Vec<Value> = hub.readyz().await["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["namespace"].clone())
        .collect();
    assert_eq!(namespaces, [json!("imported"), json!("own")]);
    let client = hub.client().await;
    for tool in ["imported.echo", "own.echo"] {
        let r = call_one(&client, tool, json!({"text": tool})).await;
        assert_eq!(r["result"]["content"][0]["text"], tool, "{r}");
    }
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn a_missing_variable_stops_serve_and_check() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &fixture_upstream(
            "fx",
            &[],
            &format!("env = {{ TOKEN = \"${{{MISSING_VAR}}}\" }}"),
        ),
    );
    let config = config.to_str().unwrap();
    for command in [
        &["serve", "--listen", "127.0.0.1:0", "--config", config][..],
        &["check", "--config", config][..],
    ] {
        let (code, stdout, stderr) = run_patchbay(command, ws.dir.path(), &[], CLI).await;
        assert!(
            code.is_some_and(|c| c != 0),
            "{command:?} exited {code:?}; stdout: {stdout}"
        );
        assert!(
            stderr.contains(MISSING_VAR),
            "{command:?}: the error names the variable: {stderr}"
        );
        assert!(
            !stdout.contains("listening"),
            "{command:?} must not serve: {stdout}"
        );
    }

    // With the variable set, and with a default, the same config is fine.
    let (code, stdout, stderr) = run_patchbay(
        &["check", "--config", config],
        ws.dir.path(),
        &[(MISSING_VAR, "set")],
        CLI,
    )
    .await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let with_default = ws.write(
        "default.toml",
        &fixture_upstream(
            "fx",
            &[],
            &format!("env = {{ TOKEN = \"${{{MISSING_VAR}:-fallback}}\" }}"),
        ),
    );
    let (code, stdout, _) = run_patchbay(
        &[
            "ops",
            "--config",
            with_default.to_str().unwrap(),
            "call",
            "fx.env",
            r#"{"name": "TOKEN"}"#,
        ],
        ws.dir.path(),
        &[],
        CLI,
    )
    .await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("fallback"), "{stdout}");
}

#[tokio::test]
async fn unknown_config_fields_are_errors() {
    let ws = Workspace::new();
    for (file, text, field) in [
        (
            "server.toml",
            "[server]\nlisten_addr = \"127.0.0.1:0\"\n".to_owned(),
            "listen_addr",
        ),
        (
            "upstream.toml",
            fixture_upstream("fx", &[], "comand = \"typo\""),
            "comand",
        ),
        (
            "top.toml",
            format!("imports = []\n{}", fixture_upstream("fx", &[], "")),
            "imports",
        ),
    ] {
        let config = ws.write(file, &text);
        let (code, stdout, stderr) = run_patchbay(
            &["check", "--config", config.to_str().unwrap()],
            ws.dir.path(),
            &[],
            CLI,
        )
        .await;
        assert!(
            code.is_some_and(|c| c != 0),
            "{file}: exited {code:?}: {stdout}"
        );
        assert!(
            stderr.contains(field),
            "{file}: the error names `{field}`: {stderr}"
        );
        let (code, stdout, _) = run_patchbay(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--config",
                config.to_str().unwrap(),
            ],
            ws.dir.path(),
            &[],
            CLI,
        )
        .await;
        assert!(
            code.is_some_and(|c| c != 0),
            "{file}: serve exited {code:?}: {stdout}"
        );
    }
}

fn json_out(stdout: &str) -> Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn ops_against_a_config() {
    let ws = Workspace::new();
    let config = ws.write("patchbay.toml", &fixture_upstream("fx", &[], ""));
    let config = config.to_str().unwrap();
    let dir = ws.dir.path();
    let ops = |rest: &[&str]| {
        let mut v = vec!["ops", "--config", config];
        v.extend_from_slice(rest);
        v.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_patchbay(&refs, dir, &[], CLI).await
    };

    let (code, out, err) = run(ops(&["list"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("TOOL") && out.contains("fx.echo") && out.contains("fx.add"),
        "{out}"
    );
    assert!(
        out.contains("Add two numbers"),
        "summaries are shown: {out}"
    );

    let (code, out, _) = run(ops(&["--json", "list"])).await;
    assert_eq!(code, Some(0));
    let v = json_out(&out);
    assert_eq!(v["operations"].as_array().unwrap().len(), 13, "{v}");

    let (code, out, _) = run(ops(&["search", "echo", "text", "back", "--json"])).await;
    assert_eq!(code, Some(0));
    assert_eq!(json_out(&out)["results"][0]["tool"], "fx.echo", "{out}");
    let (code, out, _) = run(ops(&["search", "echo", "text", "back"])).await;
    assert_eq!(code, Some(0));
    assert!(
        out.lines().next().is_some_and(|l| l.contains("fx.echo")),
        "{out}"
    );

    let (code, out, _) = run(ops(&["schema", "fx.add"])).await;
    assert_eq!(code, Some(0));
    assert_eq!(
        json_out(&out)["inputSchema"]["required"],
        json!(["a", "b"]),
        "{out}"
    );
    let (code, out, _) = run(ops(&["schema", "fx.nope"])).await;
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("not_found"), "{out}");

    let (code, out, err) = run(ops(&["call", "fx.add", r#"{"a": 2, "b": 3}"#])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.lines().any(|l| l.trim() == "5"), "{out}");
    let (code, out, _) = run(ops(&["--json", "call", "fx.add", r#"{"a": 2, "b": 3}"#])).await;
    assert_eq!(code, Some(0));
    assert_eq!(
        json_out(&out)["results"][0]["result"]["structuredContent"],
        json!({"sum": 5}),
        "{out}"
    );

    // Failing calls exit non-zero: bad input, unknown operation, the tool's own error.
    for (tool, input) in [
        ("fx.add", r#"{"a": "x"}"#),
        ("fx.nope", "{}"),
        ("fx.fail", "{}"),
    ] {
        let (code, out, err) = run(ops(&["call", tool, input])).await;
        assert!(
            code.is_some_and(|c| c != 0),
            "{tool} {input}: exited {code:?}\n{out}{err}"
        );
    }
    let (code, _, err) = run(ops(&["call", "fx.add", "not json"])).await;
    assert!(code.is_some_and(|c| c != 0), "{err}");
}

#[tokio::test]
async fn ops_against_a_running_hub() {
    let ws = Workspace::new();
    let config = ws.write("patchbay.toml", &fixture_upstream("fx", &[], ""));
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(READY).await;
    let dir = ws.dir.path();
    let url = hub.url.clone();
    let url = url.as_str();

    let (code, out, err) = run_patchbay(&["ops", "--url", url, "list"], dir, &[], CLI).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("fx.echo"), "{out}");
    let (code, out, _) = run_patchbay(
        &[
            "ops", "--url", url, "--json", "search", "add", "two", "numbers",
        ],
        dir,
        &[],
        CLI,
    )
    .await;
    assert_eq!(code, Some(0));
    assert_eq!(json_out(&out)["results"][0]["tool"], "fx.add", "{out}");
    let (code, out, _) = run_patchbay(
        &[
            "ops",
            "--url",
            url,
            "call",
            "fx.echo",
            r#"{"text": "remote"}"#,
        ],
        dir,
        &[],
        CLI,
    )
    .await;
    assert_eq!(code, Some(0));
    assert!(out.lines().any(|l| l == "remote"), "{out}");
    let (code, out, _) = run_patchbay(
        &["ops", "--url", url, "call", "fx.add", r#"{"a": 1}"#],
        dir,
        &[],
        CLI,
    )
    .await;
    assert!(code.is_some_and(|c| c != 0), "{out}");
    assert!(out.contains("invalid_input"), "{out}");

    assert!(hub.stop().await.success());

    // A hub that is not there is an error, not a hang.
    let (code, _, err) = run_patchbay(&["ops", "--url", url, "list"], dir, &[], CLI).await;
    assert!(code.is_some_and(|c| c != 0), "{err}");
}

#[tokio::test]
async fn help_explains_config_search_and_listen_default() {
    let ws = Workspace::new();
    let (code, out, _) = run_patchbay(&["--help"], ws.dir.path(), &[], CLI).await;
    assert_eq!(code, Some(0));
    for needle in [
        "--config",
        "./patchbay.toml",
        "XDG_CONFIG_HOME",
        "~/.config/patchbay/patchbay.toml",
        "demo",
    ] {
        assert!(
            out.contains(needle),
            "`patchbay --help` should mention {needle}:\n{out}"
        );
    }
    let order =
        ["--config", "./patchbay.toml", "XDG_CONFIG_HOME", "demo"].map(|n| out.find(n).unwrap());
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "the search order is stated in order:\n{out}"
    );
    let (code, out, _) = run_patchbay(&["serve", "--help"], ws.dir.path(), &[], CLI).await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains("127.0.0.1:7420"),
        "`patchbay serve --help` states the listen default:\n{out}"
    );
}

#[tokio::test]
async fn without_any_config_the_embedded_demo_is_used() {
    let ws = Workspace::new();
    let cwd = ws.path("cwd");
    let home = ws.path("home");
    let xdg = ws.path("xdg");
    for d in [&cwd, &home, &xdg] {
        std::fs::create_dir(d).unwrap();
    }
    let env = [
        ("HOME", home.to_str().unwrap()),
        ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
    ];
    let (code, out, err) = run_patchbay(&["ops", "--json", "list"], &cwd, &env, CLI).await;
    assert_eq!(code, Some(0), "{err}");
    let v = json_out(&out);
    let ops = v["operations"].as_array().unwrap();
    assert!(!ops.is_empty(), "{v}");
    assert!(ops.iter().all(|o| o["namespace"] == "demo"), "{v}");
    assert!(ops.iter().any(|o| o["tool"] == "demo.echo"), "{v}");
    assert_eq!(v["namespaces"][0]["state"], "ready", "{v}");

    // A ./patchbay.toml in the working directory wins over the demo.
    std::fs::write(
        cwd.join("patchbay.toml"),
        fixture_upstream("local", &[], ""),
    )
    .unwrap();
    let (code, out, err) = run_patchbay(&["ops", "--json", "list"], &cwd, &env, CLI).await;
    assert_eq!(code, Some(0), "{err}");
    let v = json_out(&out);
    assert!(
        v["operations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["namespace"] == "local"),
        "{v}"
    );
    std::fs::remove_file(cwd.join("patchbay.toml")).unwrap();

    // Then the user config directory.
    std::fs::create_dir_all(xdg.join("patchbay")).unwrap();
    std::fs::write(
        xdg.join("patchbay/patchbay.toml"),
        fixture_upstream("user", &[], ""),
    )
    .unwrap();
    let (code, out, err) = run_patchbay(&["ops", "--json", "list"], &cwd, &env, CLI).await;
    assert_eq!(code, Some(0), "{err}");
    let v = json_out(&out);
    assert!(
        v["operations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["namespace"] == "user"),
        "{v}"
    );
}
