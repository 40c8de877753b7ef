//! `docs/config-reference.md` is generated from the config model itself: the serde structs of
//! `host/src/config/` (and the filters'), their doc comments, serde names and defaults, walked
//! from `Config` down to every table. This test fails when the page is not what the code says
//! now; `TSUNAGI_WRITE_REFERENCE=1` writes it.

use crate::common::workspace_root;
use std::collections::BTreeMap;
use std::fmt::Write;
use syn::{Attribute, Expr, Fields, GenericArgument, Item, Lit, Meta, PathArguments, Type};

/// A struct or enum of the model, as the reference shows it.
#[derive(Clone)]
enum Model {
    Table {
        doc: String,
        fields: Vec<Field>,
    },
    /// An enum of plain words (`rename_all` applied).
    Words {
        words: Vec<String>,
    },
    /// A table whose `tag` key (`kind`) says which fields it has.
    Kinds {
        doc: String,
        tag: String,
        kinds: Vec<(String, String, Vec<Field>)>,
    },
}

#[derive(Clone)]
struct Field {
    key: String,
    ty: Type,
    doc: String,
    /// `#[serde(with = "humantime_serde")]` and the like.
    with: Option<String>,
    /// The default's expression, if a `default = "fn"` names one.
    default_fn: Option<String>,
    required: bool,
    flatten: bool,
}

fn doc_of(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if let Meta::NameValue(named) = &attr.meta
            && named.path.is_ident("doc")
            && let Expr::Lit(lit) = &named.value
            && let Lit::Str(text) = &lit.lit
        {
            lines.push(text.value().trim().to_string());
        }
    }
    lines.join(" ").trim().to_string()
}

/// The `key = "value"` and bare words inside `#[serde(...)]`.
fn serde_args(attrs: &[Attribute]) -> Vec<(String, Option<String>)> {
    let mut args = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            let value = match meta.value() {
                Ok(value) => value.parse::<syn::LitStr>().ok().map(|lit| lit.value()),
                Err(_) => None,
            };
            args.push((key, value));
            Ok(())
        });
    }
    args
}

fn renamed(name: &str, rule: Option<&str>) -> String {
    match rule {
        Some("lowercase") => name.to_lowercase(),
        Some("kebab-case") => snake(name).replace('_', "-"),
        Some("snake_case") => snake(name),
        _ => name.to_string(),
    }
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

fn derives_deserialize(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("derive")
            && attr
                .meta
                .require_list()
                .is_ok_and(|list| list.tokens.to_string().contains("Deserialize"))
    })
}

/// Tokens as a reader would write them (`Duration::from_secs(60)`).
fn tidy(tokens: &str) -> String {
    tokens
        .replace(" :: ", "::")
        .replace(" (", "(")
        .replace("( ", "(")
        .replace(" )", ")")
        .replace(" . ", ".")
        .replace(" ,", ",")
        .replace("& ", "&")
}

fn read_models() -> (BTreeMap<String, Model>, BTreeMap<String, String>) {
    let root = workspace_root().join("host/src");
    let mut files: Vec<_> = std::fs::read_dir(root.join("config"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.push(root.join("filter.rs"));
    files.sort();
    let mut models = BTreeMap::new();
    let mut defaults = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for item in file.items {
            match item {
                Item::Fn(function) => {
                    if let Some(syn::Stmt::Expr(expr, None)) = function.block.stmts.last() {
                        let tokens = quote_tokens(expr);
                        defaults.insert(function.sig.ident.to_string(), tidy(&tokens));
                    }
                }
                Item::Struct(item) if derives_deserialize(&item.attrs) => {
                    let Fields::Named(named) = &item.fields else {
                        continue;
                    };
                    models.insert(
                        item.ident.to_string(),
                        Model::Table {
                            doc: doc_of(&item.attrs),
                            fields: fields_of(named, &item.attrs),
                        },
                    );
                }
                Item::Enum(item) if derives_deserialize(&item.attrs) => {
                    let args = serde_args(&item.attrs);
                    if args.iter().any(|(k, _)| k == "untagged") {
                        continue;
                    }
                    let tag = args
                        .iter()
                        .find(|(k, _)| k == "tag")
                        .and_then(|(_, v)| v.clone());
                    let rule = args
                        .into_iter()
                        .find(|(k, _)| k == "rename_all")
                        .and_then(|(_, v)| v);
                    if let Some(tag) = tag {
                        let kinds = item
                            .variants
                            .iter()
                            .map(|v| {
                                let name = serde_args(&v.attrs)
                                    .into_iter()
                                    .find(|(k, _)| k == "rename")
                                    .and_then(|(_, v)| v)
                                    .unwrap_or_else(|| {
                                        renamed(&v.ident.to_string(), rule.as_deref())
                                    });
                                let fields = match &v.fields {
                                    Fields::Named(named) => fields_of(named, &[]),
                                    _ => Vec::new(),
                                };
                                (name, doc_of(&v.attrs), fields)
                            })
                            .collect();
                        models.insert(
                            item.ident.to_string(),
                            Model::Kinds {
                                doc: doc_of(&item.attrs),
                                tag,
                                kinds,
                            },
                        );
                        continue;
                    }
                    let words = item
                        .variants
                        .iter()
                        .filter(|v| matches!(v.fields, Fields::Unit))
                        .map(|v| {
                            serde_args(&v.attrs)
                                .into_iter()
                                .find(|(k, _)| k == "rename")
                                .and_then(|(_, v)| v)
                                .unwrap_or_else(|| renamed(&v.ident.to_string(), rule.as_deref()))
                        })
                        .collect();
                    models.insert(item.ident.to_string(), Model::Words { words });
                }
                _ => {}
            }
        }
    }
    (models, defaults)
}

/// The fields serde reads of a struct (or a struct-like variant) with `container` attributes.
fn fields_of(named: &syn::FieldsNamed, container: &[Attribute]) -> Vec<Field> {
    let rule = serde_args(container)
        .into_iter()
        .find(|(k, _)| k == "rename_all")
        .and_then(|(_, v)| v);
    let whole_default = serde_args(container).iter().any(|(k, _)| k == "default");
    let mut fields = Vec::new();
    for field in &named.named {
        let args = serde_args(&field.attrs);
        if args
            .iter()
            .any(|(k, _)| k == "skip" || k == "skip_deserializing")
        {
            continue;
        }
        let name = field.ident.as_ref().unwrap().to_string();
        let key = args
            .iter()
            .find(|(k, _)| k == "rename")
            .and_then(|(_, v)| v.clone())
            .unwrap_or_else(|| renamed(&name, rule.as_deref()));
        let has_default = args.iter().any(|(k, _)| k == "default");
        let optional = matches!(&field.ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Option"));
        fields.push(Field {
            key,
            ty: field.ty.clone(),
            doc: doc_of(&field.attrs),
            with: args
                .iter()
                .find(|(k, _)| k == "with")
                .and_then(|(_, v)| v.clone()),
            default_fn: args
                .iter()
                .find(|(k, v)| k == "default" && v.is_some())
                .and_then(|(_, v)| v.clone()),
            required: !has_default && !optional && !whole_default,
            flatten: args.iter().any(|(k, _)| k == "flatten"),
        });
    }
    fields
}

fn quote_tokens(expr: &Expr) -> String {
    use quote::ToTokens;
    expr.to_token_stream().to_string()
}

/// The last path segment of `ty` and its generic arguments.
fn parts(ty: &Type) -> (String, Vec<Type>) {
    let Type::Path(path) = ty else {
        return (quote_type(ty), Vec::new());
    };
    let last = path.path.segments.last().unwrap();
    let args = match &last.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    (last.ident.to_string(), args)
}

fn quote_type(ty: &Type) -> String {
    use quote::ToTokens;
    tidy(&ty.to_token_stream().to_string())
}

/// How a value of `ty` is written in TOML.
fn shown_type(ty: &Type, with: Option<&str>, models: &BTreeMap<String, Model>) -> String {
    let (name, args) = parts(ty);
    if with == Some("humantime_serde") {
        return "duration (\"30s\", \"5m\", \"1h 30m\")".into();
    }
    match name.as_str() {
        "Option" => shown_type(&args[0], with, models),
        "Vec" => format!("array of {}", shown_type(&args[0], None, models)),
        "BTreeMap" | "HashMap" => format!("table of {}", shown_type(&args[1], None, models)),
        "String" | "PathBuf" => "string".into(),
        "bool" => "boolean".into(),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => "integer".into(),
        "f32" | "f64" => "number".into(),
        "Duration" => "duration (\"30s\", \"5m\")".into(),
        "ByteSize" => "size (\"64 KiB\", \"10 MB\")".into(),
        "SecretSource" => "secret: { env = \"NAME\" }, { file = \"path\" } or \"${NAME}\"".into(),
        "Value" => "any TOML value".into(),
        other => match models.get(other) {
            Some(Model::Words { words, .. }) => words
                .iter()
                .map(|w| format!("\"{w}\""))
                .collect::<Vec<_>>()
                .join(" | "),
            Some(Model::Table { .. } | Model::Kinds { .. }) => "table".into(),
            None => other.to_string(),
        },
    }
}

/// A table to describe: its TOML header and its struct.
fn sub_table(ty: &Type, path: &str, models: &BTreeMap<String, Model>) -> Option<(String, String)> {
    let (name, args) = parts(ty);
    match name.as_str() {
        "Option" => sub_table(&args[0], path, models),
        "BTreeMap" | "HashMap" => {
            let (inner, _) = parts(&args[1]);
            matches!(
                models.get(&inner),
                Some(Model::Table { .. } | Model::Kinds { .. })
            )
            .then(|| (format!("{path}.NAME"), inner))
        }
        "Vec" => {
            let (inner, _) = parts(&args[0]);
            matches!(models.get(&inner), Some(Model::Table { .. }))
                .then(|| (format!("[{path}]"), inner))
        }
        _ => matches!(
            models.get(&name),
            Some(Model::Table { .. } | Model::Kinds { .. })
        )
        .then(|| (path.to_string(), name)),
    }
}

fn describe(
    out: &mut String,
    header: &str,
    model: &str,
    models: &BTreeMap<String, Model>,
    defaults: &BTreeMap<String, String>,
    seen: &mut Vec<String>,
) {
    let (doc, fields) = match models.get(model) {
        Some(Model::Table { doc, fields }) => (doc, fields),
        Some(Model::Kinds { doc, tag, kinds }) => {
            writeln!(out, "## `[{header}]`\n").unwrap();
            if !doc.is_empty() {
                writeln!(out, "{doc}\n").unwrap();
            }
            for (kind, kind_doc, fields) in kinds {
                writeln!(out, "### `{tag} = \"{kind}\"`\n").unwrap();
                if !kind_doc.is_empty() {
                    writeln!(out, "{kind_doc}\n").unwrap();
                }
                key_table(
                    out,
                    &flattened(fields, models).iter().collect::<Vec<_>>(),
                    models,
                    defaults,
                );
            }
            return;
        }
        _ => return,
    };
    let fields = flattened(fields, models);
    let path = header.trim_start_matches('[').trim_end_matches(']');
    let (simple, tables): (Vec<_>, Vec<_>) = fields
        .iter()
        .partition(|field| sub_table(&field.ty, "", models).is_none());
    if !simple.is_empty() || !doc.is_empty() {
        writeln!(out, "## `[{header}]`\n").unwrap();
        if !doc.is_empty() {
            writeln!(out, "{doc}\n").unwrap();
        }
    }
    key_table(out, &simple, models, defaults);
    for field in tables {
        let Some((sub, inner)) = sub_table(&field.ty, &format!("{path}.{}", field.key), models)
        else {
            continue;
        };
        let sub = sub.trim_start_matches('.').to_string();
        if seen.contains(&sub) {
            continue;
        }
        seen.push(sub.clone());
        if !field.doc.is_empty() {
            let shown = sub.trim_start_matches('[').trim_end_matches(']');
            writeln!(
                out,
                "<!-- {shown} --> _{}_\n",
                field.doc.replace('_', "\\_")
            )
            .unwrap();
        }
        describe(out, &sub, &inner, models, defaults, seen);
    }
}

/// The keys of one table: name, type, default, what it is.
fn key_table(
    out: &mut String,
    fields: &[&Field],
    models: &BTreeMap<String, Model>,
    defaults: &BTreeMap<String, String>,
) {
    if fields.is_empty() {
        return;
    }
    writeln!(out, "| key | type | default | what it is |").unwrap();
    writeln!(out, "|---|---|---|---|").unwrap();
    for field in fields {
        let default = if field.required {
            "required".to_string()
        } else {
            field
                .default_fn
                .as_ref()
                .and_then(|name| defaults.get(name))
                .map_or_else(String::new, |value| format!("`{}`", shown_default(value)))
        };
        writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            field.key,
            shown_type(&field.ty, field.with.as_deref(), models).replace('|', "\\|"),
            default.replace('|', "\\|"),
            field.doc.replace('|', "\\|")
        )
        .unwrap();
    }
    writeln!(out).unwrap();
}

/// A default's expression as a value in TOML would be written, where that is plain.
fn shown_default(expression: &str) -> String {
    let mut text = expression.trim().to_string();
    for wrapper in ["PathBuf::from(", "String::from(", "ByteSize::b("] {
        if let Some(inner) = text.strip_prefix(wrapper).and_then(|t| t.strip_suffix(')')) {
            text = inner.to_string();
        }
    }
    for suffix in [".to_string()", ".into()", ".to_owned()"] {
        if let Some(inner) = text.strip_suffix(suffix) {
            text = inner.to_string();
        }
    }
    let product = |inner: &str| -> Option<u64> {
        inner
            .split('*')
            .map(|factor| factor.trim().replace('_', "").parse::<u64>().ok())
            .product()
    };
    if let Some(inner) = text
        .strip_prefix("Duration::from_secs(")
        .and_then(|t| t.strip_suffix(')'))
        && let Some(seconds) = product(inner)
    {
        return format!(
            "\"{}\"",
            humantime::format_duration(std::time::Duration::from_secs(seconds))
        );
    }
    if let Some(inner) = text
        .strip_prefix("Duration::from_millis(")
        .and_then(|t| t.strip_suffix(')'))
        && let Some(ms) = product(inner)
    {
        return format!(
            "\"{}\"",
            humantime::format_duration(std::time::Duration::from_millis(ms))
        );
    }
    text
}

/// Fields with `#[serde(flatten)]` ones replaced by the fields of their struct.
fn flattened(fields: &[Field], models: &BTreeMap<String, Model>) -> Vec<Field> {
    let mut out = Vec::new();
    for field in fields {
        if field.flatten {
            let (name, _) = parts(&field.ty);
            if let Some(Model::Table { fields: inner, .. }) = models.get(&name) {
                out.extend(flattened(inner, models));
                continue;
            }
        }
        out.push(field.clone());
    }
    out
}

fn reference() -> String {
    let (models, defaults) = read_models();
    let mut out = String::from(
        "# Config reference\n\n\
         Generated from the config model (`host/src/config/`, its doc comments, serde names and\n\
         defaults) by `host/tests/all/config_reference.rs`; CI fails when it is out of date.\n\
         Regenerate with `TSUNAGI_WRITE_REFERENCE=1 cargo test -p tsunagi --test all config_reference`.\n\
         `NAME` stands for a name you choose; `[[...]]` tables may repeat. Every error names\n\
         `file:line:column` and the field. See `config/tsunagi.toml` for a commented example.\n\n",
    );
    let Some(Model::Table { fields, .. }) = models.get("Config") else {
        panic!("no Config struct")
    };
    let mut seen = Vec::new();
    for field in fields {
        if let Some((header, inner)) = sub_table(&field.ty, &field.key, &models) {
            describe(&mut out, &header, &inner, &models, &defaults, &mut seen);
        }
    }
    out.trim_end().to_string() + "\n"
}

#[test]
fn the_config_reference_is_what_the_config_model_says() {
    let page = workspace_root().join("docs/config-reference.md");
    let generated = reference();
    for table in [
        "## `[host]`",
        "## `[connectors.NAME]`",
        "## `[connectors.NAME.limits]`",
        "## `[breakers.NAME]`",
    ] {
        assert!(
            generated.contains(table),
            "{table} is described:\n{generated}"
        );
    }
    assert!(generated.contains("| `admin_listen` |"), "{generated}");
    let undocumented: Vec<&str> = generated
        .lines()
        .filter(|line| line.ends_with("|  |"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "every key says what it is (a doc comment on its field): {undocumented:#?}"
    );
    if std::env::var_os("TSUNAGI_WRITE_REFERENCE").is_some() {
        std::fs::write(&page, &generated).unwrap();
        return;
    }
    let written = std::fs::read_to_string(&page).unwrap_or_default();
    assert!(
        written == generated,
        "docs/config-reference.md is out of date with the config model; run \
         TSUNAGI_WRITE_REFERENCE=1 cargo test -p tsunagi --features tools --test all config_reference"
    );
}
