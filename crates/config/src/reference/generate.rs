//! Builds the [`Reference`] from the doc comments of this crate's sources with `syn`, and keeps
//! `generated.rs` and `docs/CONFIG.md` equal to what it builds.
//!
//! It starts at `PipelineConfig` and follows the types of its keys, so a new key, source type,
//! sink type, transform or nested section appears in the reference without touching this file,
//! and one documented in any other shape fails here with the struct and field named. A struct
//! that does not derive `Deserialize` is read through a raw twin ([`TWINS`]): the keys that
//! twin's fields accept must be exactly the keys its doc comments describe.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use syn::{Attribute, Expr, Fields, Item, Lit, Type};

use super::{Chapter, Key, Reference, Section, TransformDoc};

/// The files that hold the configuration types, as the generator reads them.
const FILES: &[(&str, &str)] = &[
    ("pipeline.rs", include_str!("../pipeline.rs")),
    ("source.rs", include_str!("../source.rs")),
    ("sink.rs", include_str!("../sink.rs")),
    ("settings.rs", include_str!("../settings.rs")),
    ("transform.rs", include_str!("../transform.rs")),
];

/// The struct the reference starts from.
const ROOT: &str = "PipelineConfig";

/// Structs filled by hand from a raw struct that derives `Deserialize` (because a check spans
/// several keys, or defaults depend on the file name): (documented struct, struct read by serde).
const TWINS: &[(&str, &str)] = &[("PipelineConfig", "RawPipeline"), ("HttpSettings", "RawHttp")];

/// The const listing the names the transform parser accepts (in `transform.rs`).
const TRANSFORM_NAMES_CONST: &str = "TRANSFORMS";

/// Where the generated files live, relative to the workspace root.
pub(super) const GENERATED_RS: &str = "crates/config/src/reference/generated.rs";
pub(super) const CONFIG_MD: &str = "docs/CONFIG.md";

struct StructInfo {
    file: &'static str,
    doc: String,
    deserialize: bool,
    container_default: bool,
    /// `rename_all` and other container attributes the generator does not model.
    unsupported: Option<String>,
    fields: Vec<FieldInfo>,
}

struct FieldInfo {
    ident: String,
    /// The key serde reads (`rename` applied).
    key: String,
    doc: String,
    has_default: bool,
    unsupported: Option<String>,
    /// The names in the field's type, outermost first (`Vec<TransformConfig>`: `Vec`, `TransformConfig`).
    types: Vec<String>,
}

struct EnumInfo {
    file: &'static str,
    doc: String,
    variants: Vec<VariantInfo>,
}

struct VariantInfo {
    ident: String,
    doc: String,
    /// The struct of a one-field tuple variant (`Parquet(ParquetSinkConfig)`).
    single: Option<String>,
}

#[derive(Default)]
struct Items {
    structs: BTreeMap<String, StructInfo>,
    enums: BTreeMap<String, EnumInfo>,
    string_lists: BTreeMap<String, Vec<String>>,
}

/// Extracts the reference from [`FILES`]. Strings are leaked: it runs once per test process.
pub(super) fn extract() -> Result<Reference, String> {
    let items = parse(FILES)?;
    build(&items)
}

fn parse(files: &[(&'static str, &str)]) -> Result<Items, String> {
    let mut items = Items::default();
    for (file, text) in files {
        let ast = syn::parse_file(text).map_err(|e| format!("{file}: cannot parse: {e}"))?;
        for item in ast.items {
            match item {
                Item::Struct(s) => {
                    let name = s.ident.to_string();
                    let info = struct_info(file, &s).map_err(|e| format!("{file}: struct {name}: {e}"))?;
                    if items.structs.insert(name.clone(), info).is_some() {
                        return Err(format!("{file}: struct {name} is defined twice"));
                    }
                }
                Item::Enum(e) => {
                    let variants = e
                        .variants
                        .iter()
                        .map(|v| VariantInfo {
                            ident: v.ident.to_string(),
                            doc: doc_of(&v.attrs),
                            single: match &v.fields {
                                Fields::Unnamed(f) if f.unnamed.len() == 1 => {
                                    type_names(&f.unnamed[0].ty).into_iter().next()
                                }
                                _ => None,
                            },
                        })
                        .collect();
                    let info = EnumInfo {
                        file,
                        doc: doc_of(&e.attrs),
                        variants,
                    };
                    items.enums.insert(e.ident.to_string(), info);
                }
                Item::Const(c) => {
                    if let Some(list) = string_list(&c.expr) {
                        items.string_lists.insert(c.ident.to_string(), list);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(items)
}

fn struct_info(file: &'static str, s: &syn::ItemStruct) -> Result<StructInfo, String> {
    let mut info = StructInfo {
        file,
        doc: doc_of(&s.attrs),
        deserialize: false,
        container_default: false,
        unsupported: None,
        fields: Vec::new(),
    };
    for attr in &s.attrs {
        if attr.path().is_ident("derive") {
            attr.parse_nested_meta(|m| {
                if m.path.segments.last().is_some_and(|p| p.ident == "Deserialize") {
                    info.deserialize = true;
                }
                Ok(())
            })
            .map_err(|e| format!("reading #[derive]: {e}"))?;
        } else if attr.path().is_ident("serde") {
            attr.parse_nested_meta(|m| {
                let name = m.path.get_ident().map(ToString::to_string).unwrap_or_default();
                skip_value(&m)?;
                match name.as_str() {
                    "default" => info.container_default = true,
                    "deny_unknown_fields" | "expecting" => {}
                    other => info.unsupported = Some(format!("#[serde({other})]")),
                }
                Ok(())
            })
            .map_err(|e| format!("reading #[serde]: {e}"))?;
        }
    }
    if let Fields::Named(named) = &s.fields {
        for f in &named.named {
            let ident = f.ident.as_ref().map(ToString::to_string).unwrap_or_default();
            let mut field = FieldInfo {
                key: ident.clone(),
                ident,
                doc: doc_of(&f.attrs),
                has_default: false,
                unsupported: None,
                types: type_names(&f.ty),
            };
            for attr in f.attrs.iter().filter(|a| a.path().is_ident("serde")) {
                attr.parse_nested_meta(|m| {
                    let name = m.path.get_ident().map(ToString::to_string).unwrap_or_default();
                    match name.as_str() {
                        "rename" => {
                            let lit: syn::LitStr = m.value()?.parse()?;
                            field.key = lit.value();
                        }
                        "default" => {
                            skip_value(&m)?;
                            field.has_default = true;
                        }
                        "deserialize_with" => skip_value(&m)?,
                        other => {
                            skip_value(&m)?;
                            field.unsupported = Some(format!("#[serde({other})]"));
                        }
                    }
                    Ok(())
                })
                .map_err(|e| format!("field {}: reading #[serde]: {e}", field.ident))?;
            }
            info.fields.push(field);
        }
    }
    Ok(info)
}

/// Consumes `= value` after a serde attribute's name, if there is one.
fn skip_value(m: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if m.input.peek(syn::Token![=]) {
        m.value()?.parse::<Expr>()?;
    }
    Ok(())
}

/// The lines of `///` comments, each without the one space after `///`, joined with `\n`.
fn doc_of(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(l) => match &l.lit {
                    Lit::Str(s) => Some(s.value()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .map(|l| l.strip_prefix(' ').unwrap_or(&l).trim_end().to_string())
        .collect();
    lines.join("\n").trim().to_string()
}

/// The type names of `ty`, outermost first: `Option<Vec<S3Config>>` gives `Option`, `Vec`, `S3Config`.
fn type_names(ty: &Type) -> Vec<String> {
    let mut out = Vec::new();
    if let Type::Path(p) = ty
        && let Some(last) = p.path.segments.last()
    {
        out.push(last.ident.to_string());
        if let syn::PathArguments::AngleBracketed(args) = &last.arguments {
            for arg in &args.args {
                if let syn::GenericArgument::Type(inner) = arg {
                    out.extend(type_names(inner));
                }
            }
        }
    }
    out
}

/// `&["a", "b"]` as its strings.
fn string_list(expr: &Expr) -> Option<Vec<String>> {
    let Expr::Reference(r) = expr else { return None };
    let Expr::Array(a) = &*r.expr else { return None };
    a.elems
        .iter()
        .map(|e| match e {
            Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => Some(s.value()),
            _ => None,
        })
        .collect()
}

fn leak(s: impl Into<String>) -> &'static str {
    Box::leak(s.into().into_boxed_str())
}

fn build(items: &Items) -> Result<Reference, String> {
    let root = items.structs.get(ROOT).ok_or_else(|| format!("no struct {ROOT}"))?;
    let links = link_targets(items, root);
    let top = section(items, &links, ROOT, "", "")?;
    let mut chapters = vec![Chapter {
        key: "",
        doc: "",
        sections: vec![top].leak(),
        transforms: &[],
    }];
    for field in root.fields.iter().filter(|f| f.doc.starts_with('`')) {
        let key = field.key.as_str();
        let Some(ty) = field
            .types
            .iter()
            .find(|t| items.structs.contains_key(*t) || items.enums.contains_key(*t))
        else {
            continue;
        };
        let where_ = format!("{}: {ROOT}.{}", root.file, field.ident);
        if let Some(e) = items.enums.get(ty) {
            if e.variants
                .iter()
                .all(|v| v.single.as_ref().is_some_and(|s| items.structs.contains_key(s)))
            {
                chapters.push(tagged_chapter(items, &links, key, ty, e)?);
            } else {
                chapters.push(transform_chapter(items, &links, key, ty, e)?);
            }
        } else {
            let mut sections = Vec::new();
            push_with_nested(items, &links, ty, key, "", &mut sections).map_err(|e| format!("{where_}: {e}"))?;
            chapters.push(Chapter {
                key: leak(key),
                doc: "",
                sections: sections.leak(),
                transforms: &[],
            });
        }
    }
    let reference = Reference {
        chapters: chapters.leak(),
    };
    check_anchors(&reference)?;
    Ok(reference)
}

/// `` [`SourceConfig`] `` in a doc becomes a link to the chapter of the key of that type.
fn link_targets(items: &Items, root: &StructInfo) -> BTreeMap<String, String> {
    let mut links = BTreeMap::new();
    for field in &root.fields {
        for ty in &field.types {
            if items.structs.contains_key(ty) || items.enums.contains_key(ty) {
                links.insert(ty.clone(), field.key.clone());
            }
        }
    }
    links
}

fn rewrite_links(doc: &str, links: &BTreeMap<String, String>) -> String {
    let mut out = doc.to_string();
    for (ty, key) in links {
        out = out.replace(
            &format!("[`{ty}`]"),
            &format!("[`{key}`](#{})", super::anchor(&format!("`{key}`"))),
        );
    }
    // Intra-doc links to anything else have no page to point at in Markdown.
    let mut plain = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("[`") {
        let after = &rest[at + 1..];
        match after.find("`]") {
            Some(end) if !after[end + 2..].starts_with('(') && !after[..end].contains(['[', ']']) => {
                plain.push_str(&rest[..at]);
                plain.push_str(&after[..=end]);
                rest = &after[end + 2..];
            }
            _ => {
                plain.push_str(&rest[..=at]);
                rest = &rest[at + 1..];
            }
        }
    }
    plain.push_str(rest);
    plain
}

fn tagged_chapter(
    items: &Items,
    links: &BTreeMap<String, String>,
    key: &str,
    enum_name: &str,
    e: &EnumInfo,
) -> Result<Chapter, String> {
    let mut sections = Vec::new();
    for v in &e.variants {
        let ty = v.single.as_deref().unwrap_or_default();
        let where_ = format!("{}: {enum_name}::{}", e.file, v.ident);
        let kind = written_prefix(&v.doc)
            .and_then(|(w, _)| w.strip_prefix("type: ").map(str::to_string))
            .ok_or_else(|| format!("{where_}: the doc must start with \"`type: <name>`: \""))?;
        let struct_kind = items
            .structs
            .get(ty)
            .and_then(|s| written_prefix(&s.doc))
            .and_then(|(w, _)| w.strip_prefix("type: ").map(str::to_string));
        if struct_kind.as_deref() != Some(&kind) {
            return Err(format!(
                "{where_}: the variant is `type: {kind}` but the doc of {ty} does not start with \"`type: {kind}`: \""
            ));
        }
        push_with_nested(items, links, ty, key, &kind, &mut sections).map_err(|e| format!("{where_}: {e}"))?;
    }
    Ok(Chapter {
        key: leak(key),
        doc: leak(rewrite_links(&e.doc, links)),
        sections: sections.leak(),
        transforms: &[],
    })
}

fn transform_chapter(
    items: &Items,
    links: &BTreeMap<String, String>,
    key: &str,
    enum_name: &str,
    e: &EnumInfo,
) -> Result<Chapter, String> {
    let mut transforms = Vec::new();
    for v in &e.variants {
        let where_ = format!("{}: {enum_name}::{}", e.file, v.ident);
        let (syntax, doc) = written_prefix(&v.doc)
            .ok_or_else(|| format!("{where_}: the doc must start with the item's syntax: \"`name: ...`: \""))?;
        let name = syntax.split(':').next().unwrap_or_default().trim();
        if name != snake_case(&v.ident) {
            return Err(format!(
                "{where_}: the doc names `{name}`, expected `{}`",
                snake_case(&v.ident)
            ));
        }
        transforms.push(TransformDoc {
            name: leak(name),
            syntax: leak(syntax),
            doc: leak(rewrite_links(&one_line(&doc), links)),
        });
    }
    let names: Vec<&str> = transforms.iter().map(|t| t.name).collect();
    let accepted = items.string_lists.get(TRANSFORM_NAMES_CONST).ok_or_else(|| {
        format!(
            "{}: no const {TRANSFORM_NAMES_CONST} listing the transform names",
            e.file
        )
    })?;
    if names != *accepted {
        return Err(format!(
            "{}: {enum_name} documents the transforms {names:?}, but {TRANSFORM_NAMES_CONST} accepts {accepted:?}",
            e.file
        ));
    }
    Ok(Chapter {
        key: leak(key),
        doc: leak(rewrite_links(&e.doc, links)),
        sections: &[],
        transforms: transforms.leak(),
    })
}

fn snake_case(ident: &str) -> String {
    let mut out = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The section of struct `name` written at `path`, then the sections of its keys whose type is a
/// documented struct (`sink.s3`), depth first.
fn push_with_nested(
    items: &Items,
    links: &BTreeMap<String, String>,
    name: &str,
    path: &str,
    kind: &str,
    out: &mut Vec<Section>,
) -> Result<(), String> {
    out.push(section(items, links, name, path, kind)?);
    let info = &items.structs[name];
    for field in info.fields.iter().filter(|f| f.doc.starts_with('`')) {
        if let Some(ty) = field.types.iter().find(|t| items.structs.contains_key(*t)) {
            push_with_nested(items, links, ty, &format!("{path}.{}", field.key), "", out)?;
        } else if let Some(ty) = field.types.iter().find(|t| {
            items.enums.get(*t).is_some_and(|e| {
                e.variants
                    .iter()
                    .all(|v| v.single.as_ref().is_some_and(|s| items.structs.contains_key(s)))
            })
        }) {
            return Err(format!(
                "{name}.{}: a tagged section ({ty}) below the top level is not supported by the reference",
                field.ident
            ));
        }
    }
    Ok(())
}

fn section(
    items: &Items,
    links: &BTreeMap<String, String>,
    name: &str,
    path: &str,
    kind: &str,
) -> Result<Section, String> {
    let info = items.structs.get(name).ok_or_else(|| format!("no struct {name}"))?;
    let where_ = format!("{}: {name}", info.file);
    let serde_name = TWINS.iter().find(|(doc, _)| *doc == name).map_or(name, |(_, raw)| *raw);
    let serde = items
        .structs
        .get(serde_name)
        .filter(|s| s.deserialize)
        .ok_or_else(|| format!("{where_}: derives no Deserialize and has no raw twin in TWINS"))?;
    if let Some(attr) = &serde.unsupported {
        return Err(format!(
            "{}: {serde_name}: {attr} is not modelled by the reference generator",
            serde.file
        ));
    }
    let mut accepted: BTreeMap<&str, &FieldInfo> = BTreeMap::new();
    for f in &serde.fields {
        if let Some(attr) = &f.unsupported {
            return Err(format!(
                "{}: {serde_name}.{}: {attr} is not modelled by the reference generator",
                serde.file, f.ident
            ));
        }
        accepted.insert(&f.key, f);
    }
    let mut keys = Vec::new();
    let mut documented = BTreeSet::new();
    for field in &info.fields {
        let field_where = format!("{where_}.{}", field.ident);
        if !field.doc.starts_with('`') {
            if accepted.contains_key(field.key.as_str()) {
                return Err(format!(
                    "{field_where}: the key `{}` needs a doc comment \"`{}` (required|optional[, rules][, default X]): what it does\"",
                    field.key, field.key
                ));
            }
            continue;
        }
        let key = parse_key_doc(&one_line(&field.doc)).map_err(|e| format!("{field_where}: {e}"))?;
        let Some(read) = accepted.get(key.name) else {
            return Err(format!(
                "{field_where}: documents the key `{}`, which {serde_name} does not read",
                key.name
            ));
        };
        let optional = read.has_default || serde.container_default;
        if key.required == optional {
            return Err(format!(
                "{field_where}: documented as {}, but the key has {}",
                if key.required { "required" } else { "optional" },
                if optional { "a default" } else { "no default" }
            ));
        }
        if key.required && !key.default.is_empty() {
            return Err(format!("{field_where}: a required key cannot have a default"));
        }
        documented.insert(key.name);
        keys.push(Key {
            doc: leak(rewrite_links(key.doc, links)),
            ..key
        });
    }
    if let Some(missing) = accepted.keys().find(|k| !documented.contains(**k)) {
        return Err(format!(
            "{where_}: the key `{missing}` ({serde_name}) has no doc comment"
        ));
    }
    let (doc, limits) = if path.is_empty() {
        (String::new(), Vec::new())
    } else {
        let expected = if kind.is_empty() {
            path.to_string()
        } else {
            format!("type: {kind}")
        };
        let (_, body) = written_prefix(&info.doc)
            .filter(|(written, _)| *written == expected)
            .ok_or_else(|| {
                format!("{where_}: the doc must start with how the section is written: \"`{expected}`: \"")
            })?;
        split_limits(&body)
    };
    if path == "source" && limits.is_empty() {
        return Err(format!(
            "{where_}: a source's doc needs a paragraph \"API limits...\" with a `- ` list"
        ));
    }
    Ok(Section {
        path: leak(path),
        kind: leak(kind),
        doc: leak(rewrite_links(&doc, links)),
        limits: limits
            .into_iter()
            .map(|l| leak(rewrite_links(&l, links)))
            .collect::<Vec<_>>()
            .leak(),
        keys: keys.leak(),
    })
}

/// A doc's leading `` `written` ``, with an optional ` (optional)` or ` (required)`, then `: `:
/// returns what is in the backticks and the rest, its first letter upper-cased.
fn written_prefix(doc: &str) -> Option<(String, String)> {
    let rest = doc.strip_prefix('`')?;
    let end = rest.find('`')?;
    let written = rest[..end].trim_end_matches(':').to_string();
    let mut after = &rest[end + 1..];
    for note in [" (optional)", " (required)"] {
        after = after.strip_prefix(note).unwrap_or(after);
    }
    let body = after.strip_prefix(": ").or_else(|| after.strip_prefix(":\n"))?;
    Some((written, capitalized(body)))
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Reads `snippet` (Rust items) as the file `snippet.rs` and builds the section of its struct
/// `X` at `x`: the generator's checks, for tests.
pub(super) fn check_snippet(snippet: &str) -> Result<(), String> {
    let items = parse(&[("snippet.rs", snippet)])?;
    section(&items, &BTreeMap::new(), "X", "x", "").map(|_| ())
}

/// Splits off the paragraph starting `API limits` and its `- ` items (each on one line).
fn split_limits(doc: &str) -> (String, Vec<String>) {
    let mut kept = Vec::new();
    let mut limits = Vec::new();
    for paragraph in doc.split("\n\n") {
        if paragraph.starts_with("API limits") {
            for item in paragraph.split("\n- ").skip(1) {
                limits.push(one_line(item));
            }
        } else {
            kept.push(paragraph);
        }
    }
    (kept.join("\n\n"), limits)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `` `key` (required|optional[, rules][, default X]): what it does ``; the text gets an upper-case
/// first letter.
pub(super) fn parse_key_doc(doc: &str) -> Result<Key, String> {
    let shape = "the doc must read \"`key` (required|optional[, rules][, default X]): what it does\"";
    let rest = doc.strip_prefix('`').ok_or(shape)?;
    let end = rest.find('`').ok_or(shape)?;
    let name = &rest[..end];
    let rest = rest[end + 1..].strip_prefix(" (").ok_or(shape)?;
    let close = closing_paren(rest).ok_or(shape)?;
    let inner = &rest[..close];
    let text = rest[close + 1..].strip_prefix(": ").ok_or(shape)?;
    if text.trim().is_empty() {
        return Err(format!("`{name}`: says nothing after the colon"));
    }
    let parts = split_top_level(inner);
    let required = match parts.first().map(String::as_str) {
        Some("required") => true,
        Some("optional") => false,
        _ => {
            return Err(format!(
                "`{name}`: the parentheses must start with `required` or `optional`"
            ));
        }
    };
    let at_default = parts
        .iter()
        .position(|p| p.starts_with("default ") || p.starts_with("default:"));
    let rules_end = at_default.unwrap_or(parts.len());
    let default = at_default.map_or(String::new(), |i| {
        let d = parts[i..].join(", ");
        d["default".len()..].trim_start_matches(':').trim().to_string()
    });
    Ok(Key {
        name: leak(name),
        required,
        rules: leak(parts[1..rules_end].join(", ")),
        default: leak(default),
        doc: leak(capitalized(text.trim())),
    })
}

/// The index of the `)` closing an already opened `(`, ignoring parentheses inside backticks.
fn closing_paren(text: &str) -> Option<usize> {
    let (mut depth, mut in_code) = (1usize, false);
    for (i, c) in text.char_indices() {
        match c {
            '`' => in_code = !in_code,
            '(' if !in_code => depth += 1,
            ')' if !in_code => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits on `, ` outside backticks and parentheses.
fn split_top_level(text: &str) -> Vec<String> {
    let (mut parts, mut current) = (Vec::new(), String::new());
    let (mut depth, mut in_code) = (0usize, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => in_code = !in_code,
            '(' if !in_code => depth += 1,
            ')' if !in_code => depth = depth.saturating_sub(1),
            ',' if !in_code && depth == 0 && chars.peek() == Some(&' ') => {
                chars.next();
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

/// Two headings with one anchor would make the table of contents point at the first.
fn check_anchors(r: &Reference) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    let headings = r.chapters.iter().flat_map(|c| {
        std::iter::once(super::chapter_title(c)).chain(
            c.sections
                .iter()
                .filter(|s| s.path != c.key || !s.kind.is_empty())
                .map(|s| format!("`{}`", if s.kind.is_empty() { s.path } else { s.kind })),
        )
    });
    for heading in headings {
        if !seen.insert(super::anchor(&heading)) {
            return Err(format!("two headings of the reference share the anchor of {heading}"));
        }
    }
    Ok(())
}

/// `generated.rs`: the reference as Rust statics.
pub(super) fn render_rust(r: &Reference) -> String {
    let mut out = String::from(
        "// @generated from the doc comments in crates/config/src/ by\n\
         // `UPDATE_CONFIG_REFERENCE=1 cargo test -p etl-config reference`; do not edit by hand.\n\n\
         use super::{Chapter, Key, Reference, Section, TransformDoc};\n\n\
         /// The configuration reference, from the doc comments of the configuration structs.\n\
         pub static REFERENCE: Reference = Reference {\n    chapters: &[\n",
    );
    for c in r.chapters {
        out.push_str(&format!(
            "        Chapter {{\n            key: {:?},\n            doc: {:?},\n            sections: &[\n",
            c.key, c.doc
        ));
        for s in c.sections {
            out.push_str(&format!(
                "                Section {{\n                    path: {:?},\n                    kind: {:?},\n                    doc: {:?},\n                    limits: &[\n",
                s.path, s.kind, s.doc
            ));
            for l in s.limits {
                out.push_str(&format!("                        {l:?},\n"));
            }
            out.push_str("                    ],\n                    keys: &[\n");
            for k in s.keys {
                out.push_str(&format!(
                    "                        Key {{ name: {:?}, required: {}, rules: {:?}, default: {:?}, doc: {:?} }},\n",
                    k.name, k.required, k.rules, k.default, k.doc
                ));
            }
            out.push_str("                    ],\n                },\n");
        }
        out.push_str("            ],\n            transforms: &[\n");
        for t in c.transforms {
            out.push_str(&format!(
                "                TransformDoc {{ name: {:?}, syntax: {:?}, doc: {:?} }},\n",
                t.name, t.syntax, t.doc
            ));
        }
        out.push_str("            ],\n        },\n");
    }
    out.push_str("    ],\n};\n");
    out
}

/// Compares `want` with the file at `rel` (from the workspace root); with `update`, writes it
/// when it differs. `Ok(true)` when it was rewritten; the error names the first differing line
/// when the file is stale and not updated.
pub(super) fn sync(root: &Path, rel: &str, want: &str, update: bool) -> Result<bool, String> {
    let path = root.join(rel);
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have == want {
        return Ok(false);
    }
    if update {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        std::fs::write(&path, want).map_err(|e| format!("writing {}: {e}", path.display()))?;
        return Ok(true);
    }
    let line = have
        .lines()
        .zip(want.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
    Err(format!(
        "{rel} is out of date (first difference at line {}: it has {:?}, the doc comments give {:?})",
        line + 1,
        have.lines().nth(line).unwrap_or("<end of file>"),
        want.lines().nth(line).unwrap_or("<end of file>")
    ))
}
