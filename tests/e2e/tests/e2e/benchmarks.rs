//! The benchmark binaries run end to end, as docs/benchmarks.md tells users to run them. Their
//! speed is not judged here (that is for a release build on a quiet machine); what is checked
//! is that every figure is printed and made of real calls, and the one figure that does not
//! depend on the machine: the four meta tools' definitions stay under 1,000 tokens.

use patchbay_e2e::bin;

/// Runs a benchmark binary with `args`; its standard output.
fn run(name: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(bin(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed: {stderr}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The cells of the table row that starts with `| first |`.
fn row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no row `{first}` in:\n{text}"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

/// A number at the start of a cell (`"1234"`, `"56 µs"`, `"41.5 MiB"`).
fn number(cell: &str) -> f64 {
    cell.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {cell:?}"))
}

#[test]
fn proxy_bench_prints_every_figure() {
    let text = run(
        "proxy-bench",
        &["--seconds", "0.3", "--warmup", "0.1", "--clients", "1,3"],
    );
    for clients in ["1", "3"] {
        let cells = row(&text, clients);
        assert_eq!(cells.len(), 10, "{cells:?}");
        // direct calls/s and hub calls/s: calls were made and answered both ways.
        assert!(number(cells[3]) > 0.0, "{cells:?}");
        assert!(number(cells[6]) > 0.0, "{cells:?}");
        // p50 and p99 are real latencies, the p99 no lower than the p50.
        assert!(
            number(cells[4]) > 0.0 && number(cells[5]) >= number(cells[4]),
            "{cells:?}"
        );
    }
    for figure in [
        "alternating, 1 client: direct p50",
        "direct through rmcp's client",
        "hub through reqwest",
        "meta `call` (one item)",
        "front door only",
        "HTTP floor",
    ] {
        assert!(text.contains(figure), "no `{figure}` in:\n{text}");
    }
    // The TCP floor is measured: round trips were made to the echo child.
    let tcp = text
        .lines()
        .find_map(|l| l.strip_prefix("TCP floor ("))
        .unwrap_or_else(|| panic!("no TCP floor in:\n{text}"));
    let p50 = tcp.split("p50 ").nth(1).map(number);
    assert!(p50.is_some_and(|p| p > 0.0), "{tcp}");
}

#[test]
fn proxy_bench_refuses_a_bad_duration() {
    let out = std::process::Command::new(bin("proxy-bench"))
        .args(["--seconds", "0"])
        .output()
        .expect("start proxy-bench");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seconds must be positive"));
}

#[test]
fn context_size_reports_meta_and_direct() {
    let text = run("context-size", &[]);
    let meta = row(&text, "meta");
    let direct = row(&text, "direct");
    assert_eq!(meta[1], "4", "{meta:?}");
    // The fixture's catalog: more tools, and more tokens, than the four meta tools.
    assert!(number(direct[1]) > 4.0, "{direct:?}");
    assert!(number(direct[3]) > number(meta[3]), "{meta:?} {direct:?}");
    assert!(
        number(meta[3]) < 1000.0,
        "the four tool definitions take {} tokens",
        meta[3]
    );
    assert!(number(meta[4]) > 0.0, "hub RSS not read: {meta:?}");
}
