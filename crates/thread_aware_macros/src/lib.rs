//! `#[derive(ThreadAware)]` for the `thread_aware` crate (re-exported there
//! behind its default `derive` feature). See `thread_aware`'s docs for the
//! attributes.
#![deny(missing_docs)]

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields, parse_macro_input};

/// Derives `thread_aware::ThreadAware` by relocating every field.
#[proc_macro_derive(ThreadAware, attributes(thread_aware))]
pub fn derive_thread_aware(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let src = format_ident!("__thread_aware_source");
    let dst = format_ident!("__thread_aware_destination");
    let body = match &input.data {
        Data::Struct(s) => {
            let (pat, build) = fields(&s.fields, quote!(#name), &src, &dst);
            quote! { let #pat = self; #build }
        }
        Data::Enum(e) => {
            let arms = e.variants.iter().map(|v| {
                let vn = &v.ident;
                let (pat, build) = fields(&v.fields, quote!(#name::#vn), &src, &dst);
                quote! { #pat => #build, }
            });
            quote! { match self { #(#arms)* } }
        }
        Data::Union(u) => {
            return syn::Error::new(
                u.union_token.span,
                "ThreadAware cannot be derived for unions",
            )
            .to_compile_error()
            .into();
        }
    };
    quote! {
        #[automatically_derived]
        impl #impl_generics ::thread_aware::ThreadAware for #name #ty_generics #where_clause {
            fn relocated(self, #src: ::thread_aware::MemoryAffinity, #dst: ::thread_aware::MemoryAffinity) -> Self {
                #body
            }
        }
    }
    .into()
}

fn fields(
    fields: &Fields,
    path: proc_macro2::TokenStream,
    src: &syn::Ident,
    dst: &syn::Ident,
) -> (proc_macro2::TokenStream, proc_macro2::TokenStream) {
    match fields {
        Fields::Named(n) => {
            let names: Vec<_> = n.named.iter().map(|f| f.ident.clone().unwrap()).collect();
            let binds: Vec<_> = (0..names.len())
                .map(|i| format_ident!("__f{}", i))
                .collect();
            (
                quote! { #path { #(#names: #binds),* } },
                quote! { #path { #(#names: ::thread_aware::ThreadAware::relocated(#binds, #src, #dst)),* } },
            )
        }
        Fields::Unnamed(u) => {
            let binds: Vec<_> = (0..u.unnamed.len())
                .map(|i| format_ident!("__f{}", i))
                .collect();
            (
                quote! { #path ( #(#binds),* ) },
                quote! { #path ( #(::thread_aware::ThreadAware::relocated(#binds, #src, #dst)),* ) },
            )
        }
        Fields::Unit => (quote! { #path }, quote! { #path }),
    }
}
