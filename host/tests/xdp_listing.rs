//! `docs/xdp.md` shows the eBPF the counter example generates; this test keeps the
//! document true: the listing in the document is the listing the code produces. Needs
//! no kernel.

#[path = "../examples/xdp_counter.rs"]
#[allow(dead_code)]
mod counter;
#[path = "../examples/xdp_ether_types.rs"]
#[allow(dead_code)]
mod ether_types;
#[path = "../examples/xdp_hash.rs"]
#[allow(dead_code)]
mod hash;

/// The globals map descriptor the listing in the document shows.
const DOC_FD: i32 = 3;

/// The text of the fenced block after the line `<!-- listing: NAME -->`.
fn doc_block(doc: &str, name: &str) -> String {
    let marker = format!("<!-- listing: {name} -->");
    let Some(at) = doc.find(&marker) else {
        panic!("docs/xdp.md has no `{marker}` line");
    };
    let rest = &doc[at + marker.len()..];
    let start = rest.find("```text\n").map(|i| i + "```text\n".len());
    let Some(start) = start else {
        panic!("no ```text block after {marker}");
    };
    let Some(len) = rest[start..].find("```") else {
        panic!("unterminated block after {marker}");
    };
    rest[start..start + len].to_string()
}

fn check(name: &str, listing: String) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/xdp.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        doc_block(&doc, name),
        listing,
        "docs/xdp.md is out of date for {name}; the code generates:\n{listing}"
    );
}

#[test]
fn the_documented_counter_listing_is_what_the_code_generates() {
    check(
        "counter",
        ferrocat::xdp::listing::<counter::Counter>(DOC_FD).expect("listing"),
    );
}

#[test]
fn the_documented_ether_types_listing_is_what_the_code_generates() {
    check(
        "ether_types",
        ferrocat::xdp::listing::<ether_types::EtherTypes>(DOC_FD).expect("listing"),
    );
}

#[test]
fn the_documented_hash_listing_is_what_the_code_generates() {
    check(
        "hash",
        ferrocat::xdp::listing::<hash::PerEtherType>(DOC_FD).expect("listing"),
    );
}
