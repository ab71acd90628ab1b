//! Finding, in one parsed file, the references to the crate's top-level modules and the
//! `mod x;` declarations that lead to more files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// What a crate root declares: its top-level modules, and the names it re-exports from them.
#[derive(Default)]
pub(super) struct CrateModules {
    pub names: BTreeSet<String>,
    /// Visible name at the crate root → the top-level module it comes from.
    pub reexports: BTreeMap<String, String>,
}

impl CrateModules {
    /// The top-level module a name directly beneath `crate::` stands for, if any.
    fn module_of(&self, name: &str) -> Option<&str> {
        if let Some(module) = self.names.get(name) {
            Some(module)
        } else {
            self.reexports.get(name).map(String::as_str)
        }
    }
}

/// A `mod x;` declaration: the file it names (or why there is none) and that file's depth.
pub(super) struct DeclaredModule {
    pub path: Result<PathBuf, String>,
    pub depth: usize,
}

/// A visitor over one file of the top-level module `top`.
pub(super) struct FileReferences<'a> {
    modules: &'a CrateModules,
    top: &'a str,
    /// How many modules deep the item being visited is: 1 directly in a top-level module.
    depth: usize,
    /// Where `mod x;` looks for `x.rs`; it changes inside inline modules.
    child_dir: PathBuf,
    /// Where `#[path]` is relative to.
    file_dir: PathBuf,
    /// (top-level module referred to, line), in the order seen.
    pub found: Vec<(String, usize)>,
    pub declared: Vec<DeclaredModule>,
}

impl<'a> FileReferences<'a> {
    /// A visitor for a file at `depth` below the crate root, in `file_dir`, whose `mod x;`
    /// declarations look in `child_dir`.
    pub fn new(
        modules: &'a CrateModules,
        top: &'a str,
        depth: usize,
        file_dir: PathBuf,
        child_dir: PathBuf,
    ) -> Self {
        FileReferences {
            modules,
            top,
            depth,
            child_dir,
            file_dir,
            found: Vec::new(),
            declared: Vec::new(),
        }
    }

    /// Records `segments` (a path or a `use` path) if it leads to another top-level module.
    fn resolve(&mut self, segments: &[String], line: usize) {
        let name = match segments.first().map(String::as_str) {
            Some("crate") => segments.get(1),
            Some("super") => {
                let supers = segments
                    .iter()
                    .take_while(|segment| *segment == "super")
                    .count();
                if supers == self.depth {
                    segments.get(supers)
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(module) = name.and_then(|name| self.modules.module_of(name))
            && module != self.top
        {
            self.found.push((module.to_owned(), line));
        }
    }

    /// `crate::x` inside a macro's tokens, which the parser leaves unparsed.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (index, tree) in trees.iter().enumerate() {
            if let TokenTree::Group(group) = tree {
                self.scan_tokens(group.stream());
                continue;
            }
            if let (
                TokenTree::Ident(krate),
                Some(TokenTree::Punct(first)),
                Some(TokenTree::Punct(second)),
                Some(TokenTree::Ident(name)),
            ) = (
                tree,
                trees.get(index + 1),
                trees.get(index + 2),
                trees.get(index + 3),
            ) && krate == "crate"
                && first.as_char() == ':'
                && second.as_char() == ':'
            {
                let line = krate.span().start().line;
                self.resolve(&["crate".to_owned(), name.to_string()], line);
            }
        }
    }

    fn declare(&mut self, module: &syn::ItemMod) {
        let file_dir = self.file_dir.clone();
        self.declared.push(DeclaredModule {
            path: super::declared_file(&file_dir, &self.child_dir, module),
            depth: self.depth + 1,
        });
    }
}

impl<'ast> Visit<'ast> for FileReferences<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if is_test_only(item_attributes(item)) {
            return;
        }
        match item {
            syn::Item::Mod(module) => match &module.content {
                Some((_, items)) => {
                    // Inside an inline module, `#[path]` and `mod x;` are relative to its folder.
                    let saved = (self.child_dir.clone(), self.file_dir.clone());
                    self.child_dir = self.child_dir.join(module.ident.to_string());
                    self.file_dir = self.child_dir.clone();
                    self.depth += 1;
                    for item in items {
                        self.visit_item(item);
                    }
                    self.depth -= 1;
                    (self.child_dir, self.file_dir) = saved;
                }
                None => self.declare(module),
            },
            syn::Item::Use(item_use) => {
                for path in use_paths(&item_use.tree) {
                    self.resolve(&path.segments, path.line);
                }
            }
            _ => visit::visit_item(self, item),
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attributes = match item {
            syn::ImplItem::Const(item) => &item.attrs,
            syn::ImplItem::Fn(item) => &item.attrs,
            syn::ImplItem::Type(item) => &item.attrs,
            syn::ImplItem::Macro(item) => &item.attrs,
            _ => return visit::visit_impl_item(self, item),
        };
        if !is_test_only(attributes) {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_trait_item(&mut self, item: &'ast syn::TraitItem) {
        let attributes = match item {
            syn::TraitItem::Const(item) => &item.attrs,
            syn::TraitItem::Fn(item) => &item.attrs,
            syn::TraitItem::Type(item) => &item.attrs,
            syn::TraitItem::Macro(item) => &item.attrs,
            _ => return visit::visit_trait_item(self, item),
        };
        if !is_test_only(attributes) {
            visit::visit_trait_item(self, item);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none()
            && let Some(first) = path.segments.first()
        {
            let segments: Vec<String> = path
                .segments
                .iter()
                .map(|segment| segment.ident.to_string())
                .collect();
            self.resolve(&segments, first.ident.span().start().line);
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_tokens(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }
}

/// One path a `use` tree names.
pub(super) struct UsePath {
    /// As written; a glob ends in `*`.
    pub segments: Vec<String>,
    /// The name it brings into scope: the last segment, or its `as` rename.
    pub visible: String,
    /// The line of its first segment.
    pub line: usize,
}

/// Every path a `use` tree names.
pub(super) fn use_paths(tree: &syn::UseTree) -> Vec<UsePath> {
    fn walk(tree: &syn::UseTree, prefix: &mut Vec<String>, line: usize, out: &mut Vec<UsePath>) {
        // The line of a path is where its first segment is.
        let line_of = |ident: &syn::Ident| {
            if prefix.is_empty() {
                ident.span().start().line
            } else {
                line
            }
        };
        let mut leaf = |name: String, visible: String, line: usize| {
            let mut segments = prefix.clone();
            segments.push(name);
            out.push(UsePath {
                segments,
                visible,
                line,
            });
        };
        match tree {
            syn::UseTree::Path(path) => {
                let line = line_of(&path.ident);
                prefix.push(path.ident.to_string());
                walk(&path.tree, prefix, line, out);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                let line = line_of(&name.ident);
                leaf(name.ident.to_string(), name.ident.to_string(), line);
            }
            syn::UseTree::Rename(rename) => {
                let line = line_of(&rename.ident);
                leaf(rename.ident.to_string(), rename.rename.to_string(), line);
            }
            syn::UseTree::Glob(_) => leaf("*".to_owned(), "*".to_owned(), line),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    walk(tree, prefix, line, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut Vec::new(), 0, &mut out);
    out
}

/// True if the attributes include `#[cfg(...)]` whose predicate can hold only under `test`.
pub(crate) fn is_test_only(attributes: &[syn::Attribute]) -> bool {
    attributes.iter().any(|attribute| {
        attribute.path().is_ident("cfg")
            && attribute
                .parse_args::<syn::Meta>()
                .is_ok_and(|predicate| requires_test(&predicate))
    })
}

fn requires_test(predicate: &syn::Meta) -> bool {
    match predicate {
        syn::Meta::Path(path) => path.is_ident("test"),
        syn::Meta::List(list) => {
            let Ok(parts) = list.parse_args_with(
                syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated,
            ) else {
                return false;
            };
            if list.path.is_ident("all") {
                parts.iter().any(requires_test)
            } else if list.path.is_ident("any") {
                !parts.is_empty() && parts.iter().all(requires_test)
            } else {
                false
            }
        }
        syn::Meta::NameValue(_) => false,
    }
}

/// The value of `#[path = "..."]`, if the attributes carry one.
pub(super) fn path_attribute(attributes: &[syn::Attribute]) -> Option<String> {
    attributes
        .iter()
        .find_map(|attribute| match &attribute.meta {
            syn::Meta::NameValue(name_value) if name_value.path.is_ident("path") => {
                match &name_value.value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(path),
                        ..
                    }) => Some(path.value()),
                    _ => None,
                }
            }
            _ => None,
        })
}

fn item_attributes(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(item) => &item.attrs,
        syn::Item::Enum(item) => &item.attrs,
        syn::Item::ExternCrate(item) => &item.attrs,
        syn::Item::Fn(item) => &item.attrs,
        syn::Item::ForeignMod(item) => &item.attrs,
        syn::Item::Impl(item) => &item.attrs,
        syn::Item::Macro(item) => &item.attrs,
        syn::Item::Mod(item) => &item.attrs,
        syn::Item::Static(item) => &item.attrs,
        syn::Item::Struct(item) => &item.attrs,
        syn::Item::Trait(item) => &item.attrs,
        syn::Item::TraitAlias(item) => &item.attrs,
        syn::Item::Type(item) => &item.attrs,
        syn::Item::Union(item) => &item.attrs,
        syn::Item::Use(item) => &item.attrs,
        _ => &[],
    }
}
