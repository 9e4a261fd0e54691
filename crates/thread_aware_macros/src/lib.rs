//! `#[derive(ThreadAware)]` for the [`thread_aware`] crate.
//!
//! Use it through `thread_aware` (its default `derive` feature re-exports
//! it): `use thread_aware::ThreadAware;` brings both the trait and the
//! derive into scope. The generated `relocated(source, destination)`
//! relocates every field and rebuilds the value; `INERT` is `true` exactly
//! when every relocated field's type is inert.
//!
//! [`thread_aware`]: https://docs.rs/thread_aware
//!
//! # Example
//!
//! (Compiled and run as `thread_aware`'s `tests/derive.rs` and
//! `tests/ui/pass`: this crate cannot depend on `thread_aware`.)
//!
//! ```ignore
//! use thread_aware::{MemoryAffinity, ThreadAware, Unaware, create_manual_affinities};
//!
//! #[derive(ThreadAware)]
//! struct Job<T> {
//!     input: Vec<T>,             // relocated: adds `Vec<T>: ThreadAware`
//!     #[thread_aware(skip)]
//!     log: std::fs::File,        // moved as is
//!     #[thread_aware(with = move_counter)]
//!     counter: Counter,          // relocated by `move_counter`
//!     name: Unaware<std::rc::Rc<str>>,
//! }
//!
//! # struct Counter;
//! fn move_counter(c: Counter, _source: MemoryAffinity, _destination: MemoryAffinity) -> Counter {
//!     c
//! }
//! ```
//!
//! # Attributes
//!
//! On a field:
//!
//! - `#[thread_aware(skip)]`: the field is moved as is. Its type needs no
//!   `ThreadAware` impl and adds no bound; it does not count for `INERT`.
//! - `#[thread_aware(with = path)]`: the field is relocated by
//!   `path(field, source, destination)`, where `path` names a function
//!   `fn(FieldType, MemoryAffinity, MemoryAffinity) -> FieldType`. The
//!   field's type needs no `ThreadAware` impl and adds no bound; the type is
//!   then never `INERT` (the derive cannot know what the function does).
//!
//! On the struct or enum:
//!
//! - `#[thread_aware(bound = "T: ThreadAware, U: Clone")]`: these
//!   where-predicates replace the inferred ones (the type's own where clause
//!   is always kept). `bound = ""` adds none.
//! - `#[thread_aware(crate = path)]`: the path to the `thread_aware` crate,
//!   for a renamed or re-exported crate (default `::thread_aware`; inside
//!   `thread_aware` itself, `crate = crate`).
//! - `#[thread_aware(recursive)]`: the type contains itself where the
//!   derive cannot see it by name: through a type alias (`type Link =
//!   Option<Box<Node>>`), through another type (mutually recursive types,
//!   such as an `Expr` that holds a `Block` that holds `Expr`s), or through
//!   a path into a child module. `INERT` is then `false` without asking the
//!   fields' types, which would make it depend on itself (the compiler's
//!   error E0391, "cycle detected when ... `INERT`"), and the inferred
//!   bounds are `P: ThreadAware` for each type parameter `P` a relocated
//!   field mentions, not the fields' whole types (which would need the impl
//!   itself: E0275); give `bound = "..."` if a field needs more. Put it on
//!   every type of the cycle.
//!
//! # Bounds
//!
//! Every relocated field whose type mentions a generic parameter adds the
//! where-predicate `FieldType: ThreadAware` (so `struct S<T>(Vec<T>)` gets
//! `Vec<T>: ThreadAware`, and a parameter used only in skipped, `with` or
//! `PhantomData` fields gets no bound at all). A field whose type names the
//! type itself (`Box<Self>`, `Option<Box<List<T>>>`, and any path from
//! `self`, `crate` or `super` ending in the name, such as `crate::List<T>`;
//! a path into a child module such as `inner::List<T>` is another type)
//! adds `P: ThreadAware`
//! instead, for each type parameter `P` it mentions that some other,
//! non-recursive relocated field also relocates (a parameter used elsewhere
//! only in skipped or `PhantomData` fields stays unbounded). That keeps
//! recursive types from sending the trait solver in circles; such a field
//! also makes `INERT` false. Recursion the derive cannot see by name needs
//! `recursive` (above); for mutually recursive generic types, or whenever
//! the inferred bounds are not what you want, also give `bound = "..."`.
//!
//! A field whose type does not implement `ThreadAware` (and mentions no
//! generic parameter) is an error that points at that field's type.
//!
//! # Guarantees
//!
//! The generated code is plain safe Rust: no allocation, no locks, no
//! `unsafe`; it panics only if a field's own `relocated` (or a `with`
//! function) panics. It compiles without warnings under `-D warnings` and
//! clippy's default lints, and names its own bindings so that they cannot
//! collide with field names (`source`, `destination`, `self_`, ...), and
//! names primitives by their full path (a user type named `bool` is fine).
//!
//! # Limitations
//!
//! A type that implements `Drop` cannot derive `ThreadAware` when it has a
//! field to relocate: the generated code moves the fields out (`E0509`).
//! Write the impl by hand (relocate through `&mut` fields, e.g. with
//! `core::mem::replace`).
#![deny(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    Attribute, Data, DeriveInput, Error, Expr, ExprPath, Fields, GenericParam, Ident, LitStr,
    Member, Meta, Path, Token, Type, WherePredicate, parse_macro_input, token,
};

/// Derives `thread_aware::ThreadAware`: relocates every field (see the
/// crate docs for the `skip`, `with`, `bound`, `crate` and `recursive`
/// attributes).
#[proc_macro_derive(ThreadAware, attributes(thread_aware))]
pub fn derive_thread_aware(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(errors) => errors.to_compile_error().into(),
    }
}

/// The name of the helper attribute.
const ATTR: &str = "thread_aware";

/// How one field is relocated.
enum Mode {
    /// `<FieldType as ThreadAware>::relocated`.
    Relocate,
    /// Moved as is.
    Skip,
    /// `path(field, source, destination)`.
    With(ExprPath),
}

/// One field of the struct or of one variant.
struct FieldInfo<'a> {
    member: Member,
    ty: &'a Type,
    mode: Mode,
    bind: Ident,
}

/// The container attributes.
#[derive(Default)]
struct ContainerAttrs {
    bound: Option<Punctuated<WherePredicate, Token![,]>>,
    krate: Option<Path>,
    /// `recursive`: the type contains itself where the derive cannot see it.
    recursive: bool,
}

/// Collects errors so that one run reports all of them.
#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> Result<(), Error> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

fn expand(input: &DeriveInput) -> Result<TokenStream2, Error> {
    let mut errors = Errors::default();
    let container = parse_container_attrs(&input.attrs, &mut errors);

    // The shape: `None` for a struct, the variant for an enum.
    let mut shapes: Vec<(Option<&Ident>, &Fields, Vec<FieldInfo<'_>>)> = Vec::new();
    let is_enum = match &input.data {
        Data::Struct(data) => {
            let infos = field_infos(&data.fields, &mut errors);
            shapes.push((None, &data.fields, infos));
            false
        }
        Data::Enum(data) => {
            for variant in &data.variants {
                for attr in &variant.attrs {
                    if attr.path().is_ident(ATTR) {
                        errors.push(Error::new_spanned(
                            attr,
                            "`#[thread_aware(...)]` is not supported on enum variants: \
                             put `skip` or `with = path` on the variant's fields",
                        ));
                    }
                }
                let infos = field_infos(&variant.fields, &mut errors);
                shapes.push((Some(&variant.ident), &variant.fields, infos));
            }
            true
        }
        Data::Union(data) => {
            errors.push(Error::new(
                data.union_token.span,
                "`ThreadAware` cannot be derived for a union: the derive cannot know \
                 which field is live; implement `ThreadAware` by hand",
            ));
            false
        }
    };
    errors.finish()?;

    // Call-site spans for the crate path, even when the user wrote it:
    // lints about paths (`unused_qualifications`) then see generated code.
    let krate = match &container.krate {
        Some(path) => respan(path.to_token_stream(), Span::call_site()),
        None => quote!(::thread_aware),
    };
    let trait_path = quote!(#krate::ThreadAware);
    let source = Ident::new("__thread_aware_source", Span::mixed_site());
    let destination = Ident::new("__thread_aware_destination", Span::mixed_site());
    let name = &input.ident;
    let all_fields = || shapes.iter().flat_map(|(_, _, infos)| infos.iter());

    // Bounds.
    let mut generics = input.generics.clone();
    match &container.bound {
        Some(bound) if !bound.is_empty() => generics
            .make_where_clause()
            .predicates
            .extend(bound.iter().cloned()),
        Some(_) => {}
        None => add_inferred_bounds(
            &mut generics,
            name,
            &trait_path,
            all_fields(),
            container.recursive,
        ),
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    // INERT.
    let mut inert_terms: Vec<TokenStream2> = Vec::new();
    let mut seen = Vec::new();
    // `recursive`: asking the fields would make `INERT` depend on itself.
    let mut inert_possible = !container.recursive;
    for field in all_fields() {
        match &field.mode {
            Mode::Skip => {}
            Mode::With(_) => inert_possible = false,
            Mode::Relocate => {
                if mentions(field.ty, &input.generics, name).recursive {
                    inert_possible = false;
                    continue;
                }
                let key = field.ty.to_token_stream().to_string();
                if !seen.contains(&key) {
                    seen.push(key);
                    let ty = field.ty;
                    inert_terms.push(quote_spanned! {ty.span()=>
                        <#ty as #trait_path>::INERT
                    });
                }
            }
        }
    }
    let inert = if !inert_possible {
        quote!(false)
    } else if inert_terms.is_empty() {
        quote!(true)
    } else {
        quote!(#(#inert_terms)&&*)
    };

    // The body.
    let needs_work = all_fields().any(|f| !matches!(f.mode, Mode::Skip));
    let body = if is_enum && shapes.is_empty() {
        quote!(match self {})
    } else if !needs_work {
        quote!(self)
    } else if is_enum {
        let arms = shapes.iter().map(|(variant, fields, infos)| {
            let path = quote!(Self::#variant);
            let (pattern, build) =
                destructure(&path, fields, infos, &trait_path, &source, &destination);
            quote!(#pattern => #build,)
        });
        quote!(match self { #(#arms)* })
    } else {
        let (_, fields, infos) = &shapes[0];
        let (pattern, build) = destructure(
            &quote!(Self),
            fields,
            infos,
            &trait_path,
            &source,
            &destination,
        );
        quote! {
            let #pattern = self;
            #build
        }
    };

    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #trait_path for #name #ty_generics #where_clause {
            const INERT: ::core::primitive::bool = #inert;

            #[inline]
            fn relocated(
                self,
                #source: #krate::MemoryAffinity,
                #destination: #krate::MemoryAffinity,
            ) -> Self {
                #body
            }
        }
    })
}

/// The pattern that takes `fields` apart (`path { a: b0, .. }`,
/// `path(b0, ..)` or `path`) and the expression that rebuilds it relocated.
fn destructure(
    path: &TokenStream2,
    fields: &Fields,
    infos: &[FieldInfo<'_>],
    trait_path: &TokenStream2,
    source: &Ident,
    destination: &Ident,
) -> (TokenStream2, TokenStream2) {
    let binds: Vec<&Ident> = infos.iter().map(|f| &f.bind).collect();
    let values: Vec<TokenStream2> = infos
        .iter()
        .map(|f| {
            let bind = &f.bind;
            match &f.mode {
                Mode::Skip => quote!(#bind),
                Mode::Relocate => {
                    let ty = f.ty;
                    quote_spanned! {ty.span()=>
                        <#ty as #trait_path>::relocated(#bind, #source, #destination)
                    }
                }
                Mode::With(function) => quote_spanned! {function.span()=>
                    #function(#bind, #source, #destination)
                },
            }
        })
        .collect();
    match fields {
        Fields::Named(_) => {
            let members: Vec<&Member> = infos.iter().map(|f| &f.member).collect();
            (
                quote!(#path { #(#members: #binds),* }),
                quote!(#path { #(#members: #values),* }),
            )
        }
        Fields::Unnamed(_) => (quote!(#path(#(#binds),*)), quote!(#path(#(#values),*))),
        Fields::Unit => (quote!(#path), quote!(#path)),
    }
}

fn field_infos<'a>(fields: &'a Fields, errors: &mut Errors) -> Vec<FieldInfo<'a>> {
    fields
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let member = match &field.ident {
                Some(ident) => Member::Named(ident.clone()),
                None => Member::Unnamed(syn::Index {
                    index: index as u32,
                    span: field.ty.span(),
                }),
            };
            FieldInfo {
                member,
                ty: &field.ty,
                mode: parse_field_attrs(&field.attrs, errors),
                bind: format_ident!("__thread_aware_field_{}", index, span = Span::mixed_site()),
            }
        })
        .collect()
}

/// Runs `handle(key, input)` for every `key ...` in every
/// `#[thread_aware(key ..., key ...)]` of `attrs`. `handle` parses the
/// key's value (if any) and reports errors about the key to `errors`; a
/// syntax error it returns ends that attribute.
fn for_each_key(
    attrs: &[Attribute],
    errors: &mut Errors,
    mut handle: impl FnMut(&Ident, ParseStream<'_>, &mut Errors) -> syn::Result<()>,
) {
    for attr in attrs {
        if !attr.path().is_ident(ATTR) {
            continue;
        }
        let list = match &attr.meta {
            Meta::List(list) => list,
            other => {
                errors.push(Error::new_spanned(
                    other,
                    "expected `#[thread_aware(...)]`, e.g. `#[thread_aware(skip)]`",
                ));
                continue;
            }
        };
        if list.tokens.is_empty() {
            errors.push(Error::new_spanned(
                list,
                "empty `#[thread_aware()]`: expected an attribute such as `skip`",
            ));
            continue;
        }
        let parsed = list.parse_args_with(|input: ParseStream<'_>| {
            while !input.is_empty() {
                let key = input.call(Ident::parse_any)?;
                handle(&key, input, errors)?;
                if input.is_empty() {
                    break;
                }
                input.parse::<Token![,]>()?;
            }
            Ok(())
        });
        if let Err(error) = parsed {
            errors.push(error);
        }
    }
}

/// Consumes a value after a key that is reported as wrong anyway
/// (`= expr` or `(...)`), returning its tokens.
fn skip_value(input: ParseStream<'_>) -> syn::Result<Option<TokenStream2>> {
    if input.peek(Token![=]) {
        let eq: Token![=] = input.parse()?;
        let value: Expr = input.parse()?;
        Ok(Some(quote!(#eq #value)))
    } else if input.peek(token::Paren) {
        let group: proc_macro2::TokenTree = input.parse()?;
        Ok(Some(group.into_token_stream()))
    } else {
        Ok(None)
    }
}

fn parse_field_attrs(attrs: &[Attribute], errors: &mut Errors) -> Mode {
    let mut skip: Option<Ident> = None;
    let mut with: Option<(Ident, ExprPath)> = None;
    for_each_key(attrs, errors, |key, input, errors| {
        match key.to_string().as_str() {
            "skip" => {
                if let Some(value) = skip_value(input)? {
                    errors.push(Error::new_spanned(
                        value,
                        "`skip` takes no value: write `#[thread_aware(skip)]`",
                    ));
                }
                if skip.is_some() {
                    errors.push(Error::new(key.span(), "duplicate `skip` attribute"));
                } else {
                    skip = Some(key.clone());
                }
            }
            "with" => {
                if !input.peek(Token![=]) {
                    skip_value(input)?;
                    errors.push(Error::new(
                        key.span(),
                        "`with` needs a function path: \
                         `#[thread_aware(with = path::to::function)]`",
                    ));
                    return Ok(());
                }
                input.parse::<Token![=]>()?;
                let value: Expr = input.parse()?;
                let Expr::Path(path) = value else {
                    errors.push(Error::new_spanned(
                        value,
                        "expected a function path: `with = path::to::function`, a \
                         `fn(FieldType, MemoryAffinity, MemoryAffinity) -> FieldType`",
                    ));
                    return Ok(());
                };
                if with.is_some() {
                    errors.push(Error::new(key.span(), "duplicate `with` attribute"));
                } else {
                    with = Some((key.clone(), path));
                }
            }
            "bound" | "crate" => {
                skip_value(input)?;
                errors.push(Error::new(
                    key.span(),
                    format!("`{key}` is a container attribute: put it on the struct or enum"),
                ));
            }
            _ => {
                skip_value(input)?;
                errors.push(Error::new(
                    key.span(),
                    format!(
                        "unknown `thread_aware` field attribute `{key}`: \
                         expected `skip` or `with = path`"
                    ),
                ));
            }
        }
        Ok(())
    });
    match (skip, with) {
        (Some(_), Some((with_key, _))) => {
            errors.push(Error::new(
                with_key.span(),
                "`skip` and `with` cannot be combined: a skipped field is moved as is",
            ));
            Mode::Skip
        }
        (Some(_), None) => Mode::Skip,
        (None, Some((_, path))) => Mode::With(path),
        (None, None) => Mode::Relocate,
    }
}

fn parse_container_attrs(attrs: &[Attribute], errors: &mut Errors) -> ContainerAttrs {
    let mut result = ContainerAttrs::default();
    for_each_key(attrs, errors, |key, input, errors| {
        match key.to_string().as_str() {
            "bound" => {
                if !input.peek(Token![=]) {
                    skip_value(input)?;
                    errors.push(Error::new(
                        key.span(),
                        "`bound` needs where-predicates in a string: \
                         `#[thread_aware(bound = \"T: ThreadAware\")]`",
                    ));
                    return Ok(());
                }
                input.parse::<Token![=]>()?;
                let value: Expr = input.parse()?;
                let lit = match &value {
                    Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(lit),
                        ..
                    }) => lit,
                    _ => {
                        errors.push(Error::new_spanned(
                            &value,
                            "expected where-predicates in a string: `bound = \"T: ThreadAware\"`",
                        ));
                        return Ok(());
                    }
                };
                let predicates = match parse_predicates(lit) {
                    Ok(predicates) => predicates,
                    Err(error) => {
                        errors.push(error);
                        return Ok(());
                    }
                };
                if result.bound.is_some() {
                    errors.push(Error::new(key.span(), "duplicate `bound` attribute"));
                } else {
                    result.bound = Some(predicates);
                }
            }
            "crate" => {
                if !input.peek(Token![=]) {
                    skip_value(input)?;
                    errors.push(Error::new(
                        key.span(),
                        "`crate` needs a path: `#[thread_aware(crate = ::thread_aware)]`",
                    ));
                    return Ok(());
                }
                input.parse::<Token![=]>()?;
                let value: Expr = input.parse()?;
                let path = match value {
                    Expr::Path(syn::ExprPath {
                        qself: None, path, ..
                    }) if path.segments.iter().all(|s| s.arguments.is_none()) => path,
                    other => {
                        errors.push(Error::new_spanned(
                            other,
                            "expected a path to the `thread_aware` crate: \
                             `crate = ::thread_aware`",
                        ));
                        return Ok(());
                    }
                };
                if result.krate.is_some() {
                    errors.push(Error::new(key.span(), "duplicate `crate` attribute"));
                } else {
                    result.krate = Some(path);
                }
            }
            "recursive" => {
                if !input.is_empty() && !input.peek(Token![,]) {
                    skip_value(input)?;
                    errors.push(Error::new(
                        key.span(),
                        "`recursive` takes no value: `#[thread_aware(recursive)]`",
                    ));
                } else if result.recursive {
                    errors.push(Error::new(key.span(), "duplicate `recursive` attribute"));
                } else {
                    result.recursive = true;
                }
            }
            "skip" | "with" => {
                skip_value(input)?;
                errors.push(Error::new(
                    key.span(),
                    format!("`{key}` is a field attribute: put it on a field"),
                ));
            }
            _ => {
                skip_value(input)?;
                errors.push(Error::new(
                    key.span(),
                    format!(
                        "unknown `thread_aware` container attribute `{key}`: \
                         expected `bound = \"...\"`, `crate = path` or `recursive`"
                    ),
                ));
            }
        }
        Ok(())
    });
    result
}

fn parse_predicates(lit: &LitStr) -> syn::Result<Punctuated<WherePredicate, Token![,]>> {
    lit.parse_with(Punctuated::<WherePredicate, Token![,]>::parse_terminated)
}

/// The inferred bounds: `FieldType: ThreadAware` for every relocated field
/// whose type mentions a generic parameter, added to `generics`. A bound on
/// a type that already has a where-predicate joins it, and a bound on a bare
/// type parameter joins that parameter's own bounds, so that no type is
/// bounded twice (clippy's `type_repetition_in_bounds`).
fn add_inferred_bounds<'a>(
    generics: &mut syn::Generics,
    name: &Ident,
    trait_path: &TokenStream2,
    fields: impl Iterator<Item = &'a FieldInfo<'a>>,
    recursive: bool,
) {
    let original = generics.clone();
    // (bounded type, the field type it comes from)
    let mut bounded: Vec<(Type, Span)> = Vec::new();
    let relocated: Vec<(&FieldInfo<'_>, Mentions)> = fields
        .filter(|f| matches!(f.mode, Mode::Relocate) && !is_phantom_data(f.ty))
        .map(|f| (f, mentions(f.ty, &original, name)))
        .collect();
    // The parameters some non-recursive relocated field really relocates. A
    // field that names the type itself bounds only these: a parameter used
    // elsewhere only in skipped or `PhantomData` fields stays unbounded.
    let needed: Vec<&Ident> = relocated
        .iter()
        .filter(|(_, found)| !found.recursive)
        .flat_map(|(_, found)| found.type_params.iter())
        .collect();
    for (field, found) in &relocated {
        if recursive {
            // `recursive`: any field may lead back to the type, so a bound
            // on a whole field type may need the impl itself (the trait
            // solver overflows); each type parameter a relocated field
            // mentions is bounded instead.
            for param in &found.type_params {
                bounded.push((syn::parse_quote!(#param), field.ty.span()));
            }
        } else if found.recursive {
            for param in found.type_params.iter().filter(|p| needed.contains(p)) {
                bounded.push((syn::parse_quote!(#param), field.ty.span()));
            }
        } else if found.any {
            bounded.push((field.ty.clone(), field.ty.span()));
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for (ty, span) in bounded {
        let key = ty.to_token_stream().to_string();
        if seen.contains(&key) {
            continue;
        }
        seen.push(key.clone());
        // Spanned at the field's type, so that an unsatisfied bound names it.
        let bound = respan(trait_path.clone(), span);
        let bound: syn::TypeParamBound = syn::parse_quote!(#bound);
        // An existing `where Type: ...` predicate for the same type.
        if let Some(where_clause) = &mut generics.where_clause {
            let existing = where_clause.predicates.iter_mut().find_map(|p| match p {
                WherePredicate::Type(p)
                    if p.lifetimes.is_none()
                        && p.bounded_ty.to_token_stream().to_string() == key =>
                {
                    Some(p)
                }
                _ => None,
            });
            if let Some(predicate) = existing {
                predicate.bounds.push(bound);
                continue;
            }
        }
        // A bare type parameter: onto its own bounds.
        if let Type::Path(path) = &ty {
            if path.qself.is_none() {
                if let Some(ident) = path.path.get_ident() {
                    let param = generics.params.iter_mut().find_map(|p| match p {
                        GenericParam::Type(p) if p.ident == *ident => Some(p),
                        _ => None,
                    });
                    if let Some(param) = param {
                        if param.colon_token.is_none() {
                            param.colon_token = Some(Token![:](Span::call_site()));
                        }
                        param.bounds.push(bound);
                        continue;
                    }
                }
            }
        }
        let predicate: WherePredicate = syn::parse_quote_spanned! {span=>
            #ty: #bound
        };
        generics.make_where_clause().predicates.push(predicate);
    }
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream2, span: Span) -> TokenStream2 {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(group) = &tree {
                let mut new =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                tree = proc_macro2::TokenTree::Group(new);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

fn is_phantom_data(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => {
            path.qself.is_none()
                && path
                    .path
                    .segments
                    .last()
                    .is_some_and(|segment| segment.ident == "PhantomData")
        }
        Type::Group(group) => is_phantom_data(&group.elem),
        Type::Paren(paren) => is_phantom_data(&paren.elem),
        _ => false,
    }
}

/// What a field type mentions.
struct Mentions {
    /// Any generic parameter (type, lifetime or const).
    any: bool,
    /// The type parameters, in order of first mention.
    type_params: Vec<Ident>,
    /// `Self` or the type's own name.
    recursive: bool,
}

/// Whether `path` may name the type being derived: `Self` (or
/// `Self::...`), the bare name, or a path from `self`, `crate` or `super`
/// that ends in the name (`crate::Node`, `super::m::Node`: the derive cannot
/// tell the module it is in, so it takes them for the type itself, as a
/// recursive field). A path into a child module or another crate that ends
/// in the same name (`inner::Sender<T>` in `struct Sender<T>(inner::Sender<T>)`,
/// `::other::Sender<T>`) is another type. Recursion the derive cannot see
/// by name needs the `recursive` container attribute.
fn names_itself(path: &Path, name: &Ident) -> bool {
    if path.leading_colon.is_some() {
        return false;
    }
    let segments: Vec<&Ident> = path.segments.iter().map(|s| &s.ident).collect();
    match segments.as_slice() {
        [first, ..] if *first == "Self" => true,
        [only] => *only == name,
        [first, .., last] => {
            *last == name && (*first == "self" || *first == "crate" || *first == "super")
        }
        [] => false,
    }
}

fn mentions(ty: &Type, generics: &syn::Generics, name: &Ident) -> Mentions {
    struct Finder<'a> {
        type_params: Vec<&'a Ident>,
        const_params: Vec<&'a Ident>,
        lifetimes: Vec<&'a Ident>,
        name: &'a Ident,
        found: Mentions,
    }
    impl Finder<'_> {
        /// A type or const parameter, if `ident` (a path's first
        /// segment) is one.
        fn param(&mut self, ident: &Ident) {
            if let Some(param) = self.type_params.iter().find(|p| **p == ident) {
                self.found.any = true;
                if !self.found.type_params.iter().any(|p| p == *param) {
                    self.found.type_params.push((*param).clone());
                }
            }
            if self.const_params.contains(&ident) {
                self.found.any = true;
            }
        }
        fn tokens(&mut self, tokens: TokenStream2) {
            // Inside a macro: any identifier may be a path's first segment,
            // and may name the type itself (conservative: recursive).
            for tree in tokens {
                match tree {
                    proc_macro2::TokenTree::Ident(ident) => {
                        if ident == *self.name || ident == "Self" {
                            self.found.recursive = true;
                        }
                        self.param(&ident);
                    }
                    proc_macro2::TokenTree::Group(group) => self.tokens(group.stream()),
                    _ => {}
                }
            }
            // A lifetime is `'` followed by an identifier: covered above
            // only for type and const parameters; be conservative.
            if !self.lifetimes.is_empty() {
                self.found.any = true;
            }
        }
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_path(&mut self, path: &'ast Path) {
            if names_itself(path, self.name) {
                self.found.recursive = true;
            }
            if let (Some(first), None) = (path.segments.first(), path.leading_colon) {
                self.param(&first.ident);
            }
            syn::visit::visit_path(self, path);
        }
        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            if self.lifetimes.contains(&&lifetime.ident) {
                self.found.any = true;
            }
        }
        fn visit_macro(&mut self, mac: &'ast syn::Macro) {
            self.visit_path(&mac.path);
            self.tokens(mac.tokens.clone());
        }
    }
    let mut finder = Finder {
        type_params: Vec::new(),
        const_params: Vec::new(),
        lifetimes: Vec::new(),
        name,
        found: Mentions {
            any: false,
            type_params: Vec::new(),
            recursive: false,
        },
    };
    for param in &generics.params {
        match param {
            GenericParam::Type(param) => finder.type_params.push(&param.ident),
            GenericParam::Const(param) => finder.const_params.push(&param.ident),
            GenericParam::Lifetime(param) => finder.lifetimes.push(&param.lifetime.ident),
        }
    }
    finder.visit_type(ty);
    finder.found
}
