//! `report.html`: a run's report as one self-contained page — inline SVG and CSS, no script,
//! no outside assets, readable offline — written beside `report.json` by `cargo mesh check`,
//! `bench` and `matrix`. It shows what the run measured and nothing else: a figure the report
//! does not hold is drawn as "not measured", never made up.
//!
//! This module is the small writer the pages are made with: elements whose text and attribute
//! values are escaped when rendered (there is no way to put unescaped text in, except this
//! module's own constant stylesheet), the page's frame, numbers, links.
//! - [`lab`]: the lab drawn, every client pair an edge coloured by its path;
//! - [`charts`]: horizontal bars against limits, the run's timeline, a spread over runs;
//! - [`check`], [`bench`], [`matrix`]: the three pages.

pub mod bench;
pub mod charts;
pub mod check;
pub mod lab;
pub mod matrix;

use std::fmt::Write as _;
use std::path::{Component, Path};

/// One node of a page: an element, or text (escaped when rendered).
#[derive(Debug, Clone)]
pub enum Node {
    El(El),
    Text(String),
}

/// An element: its name, attributes and children.
#[derive(Debug, Clone)]
pub struct El {
    name: &'static str,
    attrs: Vec<(&'static str, String)>,
    children: Vec<Node>,
}

/// HTML's void elements: no children, no end tag.
const VOID: &[&str] = &["meta", "br", "hr", "img", "link", "col"];

/// A new element `name`.
pub fn el(name: &'static str) -> El {
    El { name, attrs: Vec::new(), children: Vec::new() }
}

/// `<name>text</name>`.
pub fn text_el(name: &'static str, text: impl Into<String>) -> El {
    el(name).text(text)
}

impl El {
    /// An attribute (its value escaped when rendered).
    pub fn attr(mut self, name: &'static str, value: impl ToString) -> El {
        self.attrs.push((name, value.to_string()));
        self
    }

    pub fn class(self, class: impl ToString) -> El {
        self.attr("class", class)
    }

    /// A number as an SVG coordinate: two decimals at most.
    pub fn num(self, name: &'static str, value: f64) -> El {
        self.attr(name, coord(value))
    }

    /// Text as a child (escaped when rendered).
    pub fn text(mut self, text: impl Into<String>) -> El {
        self.children.push(Node::Text(text.into()));
        self
    }

    pub fn child(mut self, child: El) -> El {
        self.children.push(Node::El(child));
        self
    }

    pub fn children(mut self, children: impl IntoIterator<Item = El>) -> El {
        self.children.extend(children.into_iter().map(Node::El));
        self
    }

    pub fn push(&mut self, child: El) {
        self.children.push(Node::El(child));
    }

    pub fn push_text(&mut self, text: impl Into<String>) {
        self.children.push(Node::Text(text.into()));
    }

    /// An SVG `<title>`: what a pointer resting on the element shows.
    pub fn tooltip(self, text: impl Into<String>) -> El {
        self.child(text_el("title", text))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        out.push('<');
        out.push_str(self.name);
        for (name, value) in &self.attrs {
            let _ = write!(out, " {name}=\"{}\"", escape(value));
        }
        out.push('>');
        if VOID.contains(&self.name) {
            return;
        }
        for child in &self.children {
            match child {
                Node::El(e) => e.render_into(out),
                Node::Text(t) => out.push_str(&escape(t)),
            }
        }
        let _ = write!(out, "</{}>", self.name);
    }
}

/// Text made safe for element content and quoted attribute values alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters (an ANSI colour code in a cause line) have no place in a page.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The stylesheet of every page: a constant of this module, the one text not escaped.
const STYLE: &str = "
:root { --ok: #2e7d32; --bad: #c62828; --skip: #8d6e00; --none: #757575; --ink: #1c1c1c; --line: #d0d0d0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif; color: var(--ink);
  margin: 0 auto; padding: 16px 24px 48px; max-width: 1180px; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 6px; }
p.note, .note { color: #555; font-size: 12.5px; margin: 4px 0; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; color: #fff; font-weight: 600; }
.verdict.passed { background: var(--ok); } .verdict.failed { background: var(--bad); }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.passed, td.ok, span.ok { color: var(--ok); font-weight: 600; }
td.failed, td.FAILED, span.FAILED { color: var(--bad); font-weight: 700; }
td.skipped { color: var(--skip); font-weight: 600; }
td.notrun, td.missing, .missing { color: var(--none); font-style: italic; }
td.direct { color: #2e7d32; font-weight: 600; } td.derp { color: #b94f00; font-weight: 600; }
td.peer-relay { color: #6a1b9a; font-weight: 600; } td.reached { color: #1565c0; font-weight: 600; }
td.refused { color: var(--bad); font-weight: 600; }
td.grid-cell { text-align: right; min-width: 86px; font-variant-numeric: tabular-nums; }
td.grid-self { background: #f3f3f3; color: #999; text-align: center; }
tr.failed td { background: #fdecea; }
svg { max-width: 100%; height: auto; display: block; }
svg text { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif; }
code, .mono { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 12.5px; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; margin: 8px 0; }
dl.facts dt { color: #555; } dl.facts dd { margin: 0; }
a { color: #0b57d0; }
";

/// A whole page: its title and its sections, with the stylesheet.
pub fn page(title: &str, sections: Vec<El>) -> String {
    let mut out = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head>");
    out.push_str(&el("meta").attr("charset", "utf-8").render());
    out.push_str(&el("meta").attr("name", "viewport").attr("content", "width=device-width, initial-scale=1").render());
    out.push_str(&text_el("title", title).render());
    out.push_str("<style>");
    out.push_str(STYLE);
    out.push_str("</style></head>");
    out.push_str(&el("body").children(sections).render());
    out.push_str("</html>\n");
    out
}

/// A number for people: three significant digits or so, no trailing zeros; `—` if it is not
/// a number at all.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "—".into();
    }
    let a = value.abs();
    let decimals = if a == 0.0 || a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// `0.777 ms`, `3.56 s`, `100 %`.
pub fn with_unit(value: f64, unit: &str) -> String {
    match unit {
        "" => number(value),
        "%" => format!("{} %", number(value)),
        unit => format!("{} {unit}", number(value)),
    }
}

/// A round trip for people, given what its probe rounds it to: `0.782 ms`; rounded to whole
/// milliseconds (`tailscale ping`), `1 ms` or `< 0.5 ms`; `—` where the probe measured none.
pub fn round_trip(rtt_ms: Option<f64>, resolution_ms: Option<f64>) -> String {
    let Some(ms) = rtt_ms.filter(|ms| ms.is_finite()) else { return "—".into() };
    match resolution_ms {
        Some(r) if ms < r / 2.0 => format!("< {} ms", number(r / 2.0)),
        _ => format!("{} ms", number(ms)),
    }
}

/// An SVG coordinate: at most two decimals.
pub fn coord(value: f64) -> String {
    if !value.is_finite() {
        return "0".into();
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// A link from a page in `page_dir` to `target`: relative where `target` lies under the page's
/// folder (the page and its logs move together), else a `file://` URL of its absolute path.
pub fn href(target: &Path, page_dir: &Path) -> String {
    let absolute = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(p) };
    let (target, dir) = (absolute(target), absolute(page_dir));
    match target.strip_prefix(&dir) {
        Ok(rel) if rel.components().all(|c| matches!(c, Component::Normal(_))) && !rel.as_os_str().is_empty() => {
            let parts: Vec<String> = rel.components().map(|c| percent_encode(&c.as_os_str().to_string_lossy())).collect();
            parts.join("/")
        }
        _ => {
            let parts: Vec<String> = target
                .components()
                .filter_map(|c| match c {
                    Component::Normal(p) => Some(percent_encode(&p.to_string_lossy())),
                    _ => None,
                })
                .collect();
            format!("file:///{}", parts.join("/"))
        }
    }
}

/// One path segment of a URL: unreserved characters kept, every other byte `%XX`.
fn percent_encode(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `<a href=…>text</a>` to `target`, from a page in `page_dir`.
pub fn link(text: impl Into<String>, target: &Path, page_dir: &Path) -> El {
    el("a").attr("href", href(target, page_dir)).text(text)
}

/// A table: a header row and rows of cells.
pub fn table(head: &[&str], rows: Vec<El>) -> El {
    let head = el("tr").children(head.iter().map(|h| text_el("th", *h)));
    el("table").child(el("thead").child(head)).child(el("tbody").children(rows))
}

/// A cell of text, with a class.
pub fn td(text: impl Into<String>, class: &str) -> El {
    let cell = text_el("td", text);
    if class.is_empty() {
        cell
    } else {
        cell.class(class)
    }
}

/// A section: a heading and what follows it.
pub fn section(id: &'static str, heading: &str, body: Vec<El>) -> El {
    el("section").attr("id", id).child(text_el("h2", heading)).children(body)
}

/// A paragraph of small print.
pub fn note(text: impl Into<String>) -> El {
    text_el("p", text).class("note")
}

/// The page beside a JSON report: `report.json` → `report.html` (`x.html` → `x.html.html`, never
/// the report itself).
pub fn beside(json: &Path) -> std::path::PathBuf {
    let page = json.with_extension("html");
    if page == json {
        let mut name = json.as_os_str().to_owned();
        name.push(".html");
        return name.into();
    }
    page
}

/// The folder a file is in (`.` for a bare file name).
pub fn folder_of(file: &Path) -> std::path::PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}

/// Write `text` to `path`, naming the path in an error.
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped() {
        let html = el("p").attr("title", "a \"quoted\" <b>").text("<script>alert('x') & more</script>").render();
        assert_eq!(
            html,
            "<p title=\"a &quot;quoted&quot; &lt;b&gt;\">&lt;script&gt;alert(&#39;x&#39;) &amp; more&lt;/script&gt;</p>"
        );
        assert_eq!(escape("bell\u{7}"), "bell\u{fffd}");
    }

    #[test]
    fn void_elements_have_no_end_tag() {
        assert_eq!(el("meta").attr("charset", "utf-8").render(), "<meta charset=\"utf-8\">");
        assert_eq!(el("rect").num("x", 1.5).render(), "<rect x=\"1.5\"></rect>");
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(number(0.777), "0.777");
        assert_eq!(number(3.561), "3.56");
        assert_eq!(number(87.49), "87.5");
        assert_eq!(number(120.0), "120");
        assert_eq!(number(10.0), "10");
        assert_eq!(number(0.410), "0.41");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(f64::NAN), "—");
        assert_eq!(with_unit(99.0, "%"), "99 %");
        assert_eq!(coord(12.0), "12");
        assert_eq!(coord(-0.001), "0");
        assert_eq!(coord(1.23456), "1.23");
    }

    #[test]
    fn a_rounded_round_trip_says_so() {
        assert_eq!(round_trip(Some(0.0), Some(1.0)), "< 0.5 ms");
        assert_eq!(round_trip(Some(1.0), Some(1.0)), "1 ms");
        assert_eq!(round_trip(Some(0.782), None), "0.782 ms");
        assert_eq!(round_trip(None, None), "—");
    }

    #[test]
    fn links_are_relative_under_the_page_and_file_urls_elsewhere() {
        let dir = Path::new("/var/lab/01b964");
        assert_eq!(href(&dir.join("scenarios/p1__a b.log"), dir), "scenarios/p1__a%20b.log");
        assert_eq!(href(Path::new("/var/lab/other/x#1.log"), dir), "file:///var/lab/other/x%231.log");
    }

    #[test]
    fn the_page_goes_beside_its_report_and_never_over_it() {
        assert_eq!(beside(Path::new("/l/report.json")), Path::new("/l/report.html"));
        assert_eq!(beside(Path::new("ci.html")), Path::new("ci.html.html"));
        assert_eq!(folder_of(Path::new("ci.json")), Path::new("."));
        assert_eq!(folder_of(Path::new("target/mesh/ci.json")), Path::new("target/mesh"));
    }

    #[test]
    fn a_page_is_whole_and_holds_no_outside_reference() {
        let html = page("t <1>", vec![section("s", "S & T", vec![note("n")])]);
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"), "{html}");
        assert!(html.contains("<title>t &lt;1&gt;</title>") && html.contains("<h2>S &amp; T</h2>"));
        assert!(html.contains("<style>") && html.trim_end().ends_with("</html>"));
        for outside in ["http://", "https://", "<script", "<link", "@import", "url("] {
            assert!(!html.contains(outside), "{outside} in {html}");
        }
    }
}
