//! The configuration reference: every key of a pipeline file with its rules and default, and
//! the API limits each source plans within, rendered as Markdown (`docs/CONFIG.md`,
//! `etl sources --markdown`) or as a compact listing for a terminal (`etl sources`).
//!
//! None of that text is written here. It is the doc comments of the configuration structs of
//! this crate, the place a developer edits when a key changes:
//!
//! ```text
//! doc comments in            syn, in a test             generated.rs ──► REFERENCE ──► markdown(), sources_text()
//! pipeline.rs, source.rs, ──────────────────────────►   (checked in)
//! sink.rs, settings.rs,      checks: every key the                         equal, by the same test
//! transform.rs               deserializer reads is      docs/CONFIG.md ◄───────────────┘
//!                            documented, required       (checked in)
//!                            exactly when it has no
//!                            default
//! ```
//!
//! The test (`reference::generate`) reads those files, walks the structs from `PipelineConfig`,
//! and fails when `generated.rs` or `docs/CONFIG.md` differ from what it would write:
//! `UPDATE_CONFIG_REFERENCE=1 cargo test -p etl-config reference` rewrites both. Another test
//! loads minimal pipelines and compares each documented default with the value the code fills
//! in. So the reference cannot drift from the code without a failing test.
//!
//! The conventions the generator relies on (it fails, naming the struct and field, otherwise):
//! - a key is documented as `` `key` (required|optional[, rules][, default X]): what it does ``;
//! - a section struct's doc starts with how it is written (`` `type: cdn_logs`: ``,
//!   `` `runtime:` (optional): ``), and a source's doc has a paragraph starting `API limits`
//!   followed by a `- ` list;
//! - a transform variant's doc starts with its syntax (`` `select: [a, b]`: ``).

#[rustfmt::skip]
mod generated;

#[cfg(test)]
mod generate;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;

/// The whole reference, in document order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reference {
    pub chapters: &'static [Chapter],
}

/// One top-level key with a section of its own (`source`, `transforms`, `sink`, `runtime`,
/// `http`), or the top level itself (`key` empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chapter {
    /// The top-level key, empty for the top level.
    pub key: &'static str,
    /// What the key holds, in Markdown; empty when the chapter's one section says it.
    pub doc: &'static str,
    /// The sections: one per `type` of a tagged key (`source`, `sink`), else the key's own
    /// section; each followed by the sections of its nested keys (`sink.s3`).
    pub sections: &'static [Section],
    /// The items of a list of transforms (`transforms`), else empty.
    pub transforms: &'static [TransformDoc],
}

/// A mapping of keys: the top level, one source or sink type, `runtime`, `http`, `sink.s3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// Where the mapping is written: empty (the top level), `source`, `sink.s3`, `runtime`...
    pub path: &'static str,
    /// The `type:` of a tagged section (`mail_delivery`), else empty.
    pub kind: &'static str,
    /// What the section is, in Markdown (paragraphs separated by blank lines).
    pub doc: &'static str,
    /// The rules of the vendor's API this source plans within (sources only).
    pub limits: &'static [&'static str],
    pub keys: &'static [Key],
}

/// One key of a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub required: bool,
    /// What values are accepted beyond the type (`1..=10000`, `secret`), as written; may be empty.
    pub rules: &'static str,
    /// The default as written (`10000`, `` `30s` ``, `` `AWS_REGION`, else `us-east-1` ``);
    /// empty for a required key or one whose absence means "none".
    pub default: &'static str,
    /// What the key does, in Markdown, on one line.
    pub doc: &'static str,
}

/// One transform of the `transforms:` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransformDoc {
    /// The transform's key (`select`).
    pub name: &'static str,
    /// How an item is written (`select: [a, b]`).
    pub syntax: &'static str,
    /// What it does, in Markdown.
    pub doc: &'static str,
}

pub use generated::REFERENCE;

impl Reference {
    /// The sections of the source types, in the order of `SourceConfig`.
    pub fn sources(&self) -> impl Iterator<Item = &'static Section> {
        self.tagged("source")
    }

    /// The sections of the sink types.
    pub fn sinks(&self) -> impl Iterator<Item = &'static Section> {
        self.tagged("sink")
    }

    fn tagged(&self, key: &str) -> impl Iterator<Item = &'static Section> {
        let chapters: &'static [Chapter] = self.chapters;
        chapters
            .iter()
            .filter(move |c| c.key == key)
            .flat_map(|c| c.sections)
            .filter(|s| !s.kind.is_empty())
    }
}

/// `docs/CONFIG.md`: the full reference as Markdown.
pub fn markdown() -> String {
    render_markdown(&REFERENCE)
}

/// `etl sources`: each source type with its summary, API limits and keys, for a terminal.
pub fn sources_text() -> String {
    render_sources_text(&REFERENCE)
}

const GENERATED_NOTE: &str = "<!-- Generated from the doc comments in crates/config/src/ by \
`UPDATE_CONFIG_REFERENCE=1 cargo test -p etl-config reference`; do not edit by hand. -->";

const INTRO: &str = "\
Every key a pipeline file accepts, with its rules and default, and the limits of each vendor's API
that `etl` plans within. Unknown keys are errors everywhere. Any value may be written as `${VAR}`
or `${VAR:-default}` to take it from the environment (`$${` is a literal `${`); secrets should
always be. `etl validate FILE` checks a file against all of this without touching the network,
`etl sources` prints a summary of the source types, and `etl schema TYPE` the columns a source
type writes.";

const LIMITS_LEAD: &str = "API limits, planned within before any request:";

fn render_markdown(r: &Reference) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Pipeline file reference\n\n{GENERATED_NOTE}\n\n{INTRO}\n");
    for chapter in r.chapters {
        let _ = write!(
            out,
            "- [{}](#{})",
            chapter_title(chapter),
            anchor(&chapter_title(chapter))
        );
        let tagged: Vec<String> = chapter
            .sections
            .iter()
            .filter(|s| !s.kind.is_empty())
            .map(|s| format!("[`{}`](#{})", s.kind, anchor(&format!("`{}`", s.kind))))
            .collect();
        if !tagged.is_empty() {
            let _ = write!(out, ": {}", tagged.join(", "));
        }
        out.push('\n');
    }
    for chapter in r.chapters {
        let _ = writeln!(out, "\n## {}", chapter_title(chapter));
        if !chapter.doc.is_empty() {
            let _ = writeln!(out, "\n{}", chapter.doc);
        }
        for section in chapter.sections {
            let own = section.path == chapter.key && section.kind.is_empty();
            if !own {
                let level = if section.kind.is_empty() && !chapter.sections.iter().all(|s| s.kind.is_empty()) {
                    "####"
                } else {
                    "###"
                };
                let title = if section.kind.is_empty() {
                    section.path
                } else {
                    section.kind
                };
                let _ = writeln!(out, "\n{level} `{title}`");
            }
            if !section.doc.is_empty() {
                let _ = writeln!(out, "\n{}", section.doc);
            }
            if !section.limits.is_empty() {
                let _ = writeln!(out, "\n{LIMITS_LEAD}\n");
                for limit in section.limits {
                    let _ = writeln!(out, "- {limit}");
                }
            }
            if !section.keys.is_empty() {
                out.push_str("\n| key | rules | default | description |\n|---|---|---|---|\n");
                for key in section.keys {
                    let rules = match (key.required, key.rules.is_empty()) {
                        (true, true) => "**required**".to_string(),
                        (true, false) => format!("**required**, {}", key.rules),
                        (false, true) => "optional".to_string(),
                        (false, false) => format!("optional, {}", key.rules),
                    };
                    let _ = writeln!(
                        out,
                        "| `{}` | {} | {} | {} |",
                        key.name,
                        cell(&rules),
                        cell(key.default),
                        cell(key.doc)
                    );
                }
            }
        }
        if !chapter.transforms.is_empty() {
            out.push_str("\n| transform | description |\n|---|---|\n");
            for t in chapter.transforms {
                let _ = writeln!(out, "| `{}` | {} |", cell(t.syntax), cell(t.doc));
            }
        }
    }
    out
}

fn chapter_title(c: &Chapter) -> String {
    if c.key.is_empty() {
        "Top-level keys".to_string()
    } else {
        format!("`{}`", c.key)
    }
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, other punctuation but `-` and `_`
/// dropped.
fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// A table cell: `|` would end it.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Lines of the terminal listing are wrapped to this width.
const WIDTH: usize = 100;

fn render_sources_text(r: &Reference) -> String {
    let mut out = String::from(
        "Source types: write one as `source: {type: TYPE, ...}` in a pipeline file.\n\
         `etl sources --markdown` prints the full reference (docs/CONFIG.md), `etl schema TYPE` the\n\
         columns a type writes.\n",
    );
    for s in r.sources() {
        let _ = writeln!(out, "\n{}", s.kind);
        if let Some(summary) = s.doc.split("\n\n").next() {
            wrap_into(&mut out, &plain(summary), "  ", "  ");
        }
        if !s.limits.is_empty() {
            out.push_str("  API limits:\n");
            for limit in s.limits {
                wrap_into(&mut out, &plain(limit), "    - ", "      ");
            }
        }
        out.push_str("  keys:\n");
        for key in s.keys {
            let mut parts = vec![if key.required { "required" } else { "optional" }];
            if !key.rules.is_empty() {
                parts.push(key.rules);
            }
            let default = format!("default {}", key.default);
            if !key.default.is_empty() {
                parts.push(&default);
            }
            let _ = writeln!(out, "    {} ({})", key.name, plain(&parts.join(", ")));
            wrap_into(&mut out, &plain(first_sentence(key.doc)), "        ", "        ");
        }
    }
    out
}

/// Markdown links (`` [`source`](#source) ``) as their text, for a terminal.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after
            .find("](")
            .and_then(|mid| after[mid..].find(')').map(|close| (mid, mid + close)))
        {
            Some((mid, close)) if !after[..mid].contains('[') => {
                out.push_str(&rest[..open]);
                out.push_str(&after[..mid]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Up to and including the first `. ` outside backticks and parentheses (the whole text if none).
fn first_sentence(text: &str) -> &str {
    let (mut in_code, mut depth) = (false, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '`' => in_code = !in_code,
            '(' if !in_code => depth += 1,
            ')' if !in_code => depth = depth.saturating_sub(1),
            '.' if !in_code && depth == 0 && text[i + 1..].starts_with(' ') => return &text[..=i],
            _ => {}
        }
    }
    text
}

/// Appends `text` (its line breaks are spaces) word-wrapped to [`WIDTH`], the first line
/// starting with `first`, the others with `rest`. A word longer than a line gets a line of its own.
fn wrap_into(out: &mut String, text: &str, first: &str, rest: &str) {
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = rest.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    if !empty {
        out.push_str(&line);
        out.push('\n');
    }
}
