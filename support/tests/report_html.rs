//! report.html in a real browser: the pages `cargo mesh check`, `bench` and `matrix` write,
//! rendered from reports built here (the check's from `tests/fixtures/report.json`, the report
//! of a real `cargo mesh check` on the netns backend, 2026-12-02, 69 of 70 scenarios passed and
//! one skipped), opened in headless Chromium. The DOM Chromium builds must hold the lab's drawing,
//! the charts and the tables; the page must load nothing from outside, and raise no script error
//! (Chromium's console is captured, and a page with a deliberate error shows the capture works).
//!
//! Where Chromium is not installed the test says SKIPPED and how to install it, and passes;
//! with `MESH_REQUIRE_PREREQUISITES=1` (CI, which installs it) it fails instead.
//! `MESH_REPORT_SCREENSHOT=docs/report.png` also saves the check page's screenshot there (a
//! relative path is the checkout's; how the README's picture is made).

use meshlab::html;
use meshlab::report::{BenchFigures, MatrixFailure, MatrixRow, Report};
use meshlab::settings::{self, REQUIRE_PREREQUISITES};
use std::path::{Path, PathBuf};

const INSTALL: &str = "apt-get install -y --no-install-recommends chromium";

/// The browser, if this machine has one: `MESH_CHROMIUM`, else `chromium` or `chromium-browser`
/// on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MESH_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Said where the user sees it (libtest shows a passing test's output only as "ok"), or a failure
/// where the run promised its prerequisites.
fn skip(reason: &str) {
    if settings::on(REQUIRE_PREREQUISITES) {
        panic!("{REQUIRE_PREREQUISITES}=1, and report.html cannot be opened in a browser here: {reason}; install it: {INSTALL}");
    }
    meshlab::say!("SKIPPED (report.html's browser test): {reason}; install it with: {INSTALL}");
}

/// A folder of this test's own, removed when it ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mesh-report-html-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What headless Chromium made of a page.
struct Rendered {
    /// The DOM after loading, as `--dump-dom` prints it.
    dom: String,
    /// The page's console messages (Chromium logs them as `…:CONSOLE…] "message", source: …`).
    console: Vec<String>,
}

/// Headless Chromium's common flags: a profile of its own in `scratch`, nothing fetched for
/// itself (no component updates, sync, extensions), root's sandbox off (it needs that as root).
fn browser_args(scratch: &Path) -> Vec<String> {
    let profile = scratch.join("profile");
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-crash-reporter",
        "--disable-breakpad",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

fn url(page: &Path) -> String {
    format!("file://{}", page.display())
}

/// Open `page` and dump its DOM, within the browser's time limit.
fn dump(browser: &Path, page: &Path, scratch: &Path) -> Rendered {
    let mut argv = vec![browser.display().to_string()];
    argv.extend(browser_args(scratch));
    argv.push("--dump-dom".into());
    argv.push(url(page));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = meshlab::exec::local(&argv, meshlab::budget::browser()).expect("chromium starts");
    assert!(out.success(), "chromium rendering {}: {}", page.display(), out.describe_failure());
    let console = out.stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect();
    Rendered { dom: out.stdout, console }
}

/// A copy of `page` with a probe at its end that, once the page has loaded, writes onto the
/// root element what the browser laid out: how many SVGs have a size, the lab drawing's box,
/// the tables, and how many resources the page fetched (a self-contained page: none).
fn with_probe(page: &Path) -> PathBuf {
    const PROBE: &str = r#"<script>
window.addEventListener('error', (e) => document.documentElement.setAttribute('data-probe-error', String(e.message)));
window.addEventListener('load', () => {
  const root = document.documentElement;
  const svgs = [...document.querySelectorAll('svg')];
  const drawn = svgs.filter((s) => { const b = s.getBoundingClientRect(); return b.width > 0 && b.height > 0; });
  const lab = document.querySelector('svg.lab');
  const box = lab ? lab.getBBox() : null;
  root.setAttribute('data-probe-svgs', String(svgs.length));
  root.setAttribute('data-probe-drawn', String(drawn.length));
  root.setAttribute('data-probe-lab', box ? Math.round(box.width) + 'x' + Math.round(box.height) : 'none');
  root.setAttribute('data-probe-tables', String(document.querySelectorAll('table').length));
  root.setAttribute('data-probe-resources', String(performance.getEntriesByType('resource').length));
  root.setAttribute('data-probe', 'done');
});
</script>"#;
    let text = std::fs::read_to_string(page).unwrap();
    assert!(!text.contains("<script"), "the page itself carries no script");
    let probed = page.with_file_name(format!("probed-{}", page.file_name().unwrap().to_string_lossy()));
    std::fs::write(&probed, text.replacen("</body>", &format!("{PROBE}</body>"), 1)).unwrap();
    probed
}

/// The value of a `data-probe…` attribute in a dumped DOM.
fn probe<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let at = dom.find(&key)? + key.len();
    dom[at..].split('"').next()
}

fn probe_number(dom: &str, name: &str) -> usize {
    probe(dom, name).unwrap_or_else(|| panic!("{name} in the DOM")).parse().unwrap()
}

/// Open a page (and its probed copy) and require what every page must be: laid out, every SVG
/// with a size, nothing fetched, no script error. Returns the page's own DOM.
fn open_cleanly(browser: &Path, page: &Path, scratch: &Path) -> String {
    let plain = dump(browser, page, scratch);
    assert!(plain.console.is_empty(), "{}: console messages: {:#?}", page.display(), plain.console);
    let probed = dump(browser, &with_probe(page), scratch);
    assert!(probed.console.is_empty(), "{}: console messages: {:#?}", page.display(), probed.console);
    let dom = &probed.dom;
    assert_eq!(probe(dom, "data-probe"), Some("done"), "the probe ran after the page loaded: {}", &dom[..dom.len().min(400)]);
    assert_eq!(probe(dom, "data-probe-error"), None, "no script error");
    assert_eq!(probe_number(dom, "data-probe-resources"), 0, "{}: a self-contained page fetches nothing", page.display());
    let svgs = probe_number(dom, "data-probe-svgs");
    assert!(svgs > 0, "{} has SVG", page.display());
    assert_eq!(probe_number(dom, "data-probe-drawn"), svgs, "every SVG is laid out with a size");
    assert!(probe_number(dom, "data-probe-tables") > 0, "{} has tables", page.display());
    if let Some(lab) = probe(dom, "data-probe-lab").filter(|l| *l != "none") {
        let (w, h) = lab.split_once('x').map(|(w, h)| (w.parse::<u32>().unwrap(), h.parse::<u32>().unwrap())).unwrap();
        assert!(w > 600 && h > 300, "the lab's drawing has its size in the browser: {lab}");
    }
    plain.dom
}

/// Text as Chromium serializes a text node: `&`, `<` and `>` escaped, quotes as they are.
fn as_serialized(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The realistic report: a real check's report.json (netns backend), its `tailscale ping`
/// pairs given the `resolution_ms` the harness records since (that run's harness did not yet:
/// the CLI prints whole milliseconds, so its "0 ms" pongs were under half of one).
fn real_report() -> Report {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_check_page_renders_in_a_browser_with_its_drawing_charts_and_tables() {
    let Some(browser) = chromium() else { return skip("chromium is not installed") };
    let scratch = Scratch::new("check");
    let report = real_report();
    let page = scratch.0.join("report.html");
    std::fs::write(&page, html::check::page(&report, &scratch.0)).unwrap();
    let dom = open_cleanly(&browser, &page, &scratch.0);

    // The lab drawn: every host, every client pair, the router and NAT.
    assert!(dom.contains("<svg") && dom.contains("class=\"lab\""), "the lab's drawing is in the DOM");
    let spec = report.spec.as_ref().expect("the report carries the lab's layout");
    for host in &spec.hosts {
        assert!(dom.contains(&format!("data-host=\"{}\"", host.name)), "{} drawn", host.name);
    }
    let clients = spec.hosts.iter().filter(|h| h.role == meshlab::spec::Role::Client).count();
    let drawings = dom.matches("class=\"lab\"").count();
    assert_eq!(
        dom.matches("class=\"pair\"").count(),
        drawings * clients * (clients - 1) / 2,
        "every pair an edge in each drawing"
    );
    assert!(dom.contains(">router<") && dom.contains(">NAT<"));
    // Each measured pair's path is drawn; the pairs no scenario measured (the late client's) say so.
    assert!(dom.contains("class=\"direction direct\""), "the run's direct paths");
    assert!(dom.contains("not measured"), "client-4's pairs were not measured");
    // Charts and tables.
    assert!(dom.contains("id=\"criteria-bars\"") && dom.contains("class=\"bar ok\""));
    assert!(dom.contains("id=\"timeline\"") && dom.contains("class=\"span "));
    assert!(dom.contains("class=\"latency\""), "the grid of round trips");
    for s in &report.scenarios {
        assert!(dom.contains(&as_serialized(&s.name)), "{} listed", s.name);
    }
    assert_eq!(dom.matches("<tr data-status=").count(), report.scenarios.len());

    // A screenshot of it, as a user sees it.
    let shot = scratch.0.join("report.png");
    let mut argv = vec![browser.display().to_string()];
    argv.extend(browser_args(&scratch.0));
    argv.push("--window-size=1200,2000".into());
    argv.push(format!("--screenshot={}", shot.display()));
    argv.push(url(&page));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = meshlab::exec::local(&argv, meshlab::budget::browser()).unwrap();
    assert!(out.success(), "{}", out.describe_failure());
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a PNG of a drawn page ({} bytes)", png.len());
    if let Some(keep) = std::env::var_os("MESH_REPORT_SCREENSHOT").filter(|p| !p.is_empty()) {
        // A relative path is the checkout's (tests run in their package's folder, support/).
        let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(keep);
        std::fs::copy(&shot, &keep).unwrap_or_else(|e| panic!("saving the screenshot as {}: {e}", keep.display()));
        meshlab::say!("screenshot of report.html: {}", keep.display());
    }
}

#[test]
fn the_bench_and_matrix_pages_render_in_a_browser() {
    let Some(browser) = chromium() else { return skip("chromium is not installed") };
    let scratch = Scratch::new("bench-matrix");
    let samples: std::collections::BTreeMap<String, Vec<f64>> =
        [("1 lab network up (s)", vec![0.14, 0.12, 0.19]), ("4 mesh converged since lab start (s)", vec![5.2, 4.9, 6.1])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    let bench = BenchFigures {
        date: "2026-12-02T06:00:00Z".into(),
        machine: "2 cores, 8 GiB".into(),
        runs: 3,
        passed: 3,
        medians: samples.iter().map(|(k, v)| (k.clone(), meshlab::html::charts::median(v))).collect(),
        samples,
        criteria: vec![meshlab::criteria::SC008.measured(100.0)],
        reports: vec![scratch.0.join("run-1/report.json")],
    };
    let page = scratch.0.join("bench.html");
    std::fs::write(&page, html::bench::page(&bench, &scratch.0)).unwrap();
    let dom = open_cleanly(&browser, &page, &scratch.0);
    assert!(dom.contains("id=\"spread\"") && dom.matches("class=\"sample\"").count() == 6, "every run of every phase a dot");

    let rows = vec![
        MatrixRow {
            combination: "0.29.3/1.98.10".into(),
            versions: Some(real_report().versions),
            verdict: "passed".into(),
            scenarios: "61/61".into(),
            first_failure: None,
            seconds: 90.0,
            report: Some(scratch.0.join("lab/report.json")),
            log: scratch.0.join("1-0.29.3_1.98.10.log"),
        },
        MatrixRow {
            combination: "0.27.1/1.90.9".into(),
            versions: None,
            verdict: "failed".into(),
            scenarios: "12/61".into(),
            first_failure: Some(MatrixFailure { scenario: "P2 relays".into(), cause: "no pong from <client-2>".into() }),
            seconds: 40.0,
            report: None,
            log: scratch.0.join("2-0.27.1_1.90.9.log"),
        },
    ];
    let page = scratch.0.join("matrix.html");
    std::fs::write(&page, html::matrix::page(&rows, 130.0, &scratch.0)).unwrap();
    let dom = open_cleanly(&browser, &page, &scratch.0);
    assert_eq!(dom.matches("class=\"combo ").count(), 2);
    assert!(dom.contains("no pong from &lt;client-2&gt;"), "the cause, escaped");
}

/// The console capture sees a script error: without it, "no console messages" above would
/// prove nothing.
#[test]
fn the_console_capture_sees_a_script_error() {
    let Some(browser) = chromium() else { return skip("chromium is not installed") };
    let scratch = Scratch::new("broken");
    let page = scratch.0.join("broken.html");
    std::fs::write(&page, "<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction();</script></body></html>").unwrap();
    let rendered = dump(&browser, &page, &scratch.0);
    assert!(
        rendered.console.iter().any(|l| l.contains("Uncaught") && l.contains("undefinedFunction")),
        "the error in Chromium's console: {:#?}",
        rendered.console
    );
}
