//! The malformed corpus: deterministic, made of every mutation, and read by the RSS connector's
//! reader without a panic, with every answer bounded. (The host test runs the same corpus
//! through the component; this one names the failing document directly.)

use std::path::Path;

use tsunagi_fake_upstream::corpus::{MUTATIONS, malformed_corpus, seeds_from_dir};

const CORPUS: usize = 4_004;

fn seeds() -> Vec<tsunagi_fake_upstream::corpus::Seed> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/rss-feed/fixtures/bodies");
    let seeds = seeds_from_dir(&dir).expect("fixture bodies");
    assert!(
        seeds.len() >= 280,
        "{} seeds in {}",
        seeds.len(),
        dir.display()
    );
    seeds
}

#[test]
fn the_corpus_is_deterministic_and_uses_every_mutation() {
    let seeds = seeds();
    let first = malformed_corpus(&seeds, CORPUS);
    let again = malformed_corpus(&seeds, CORPUS);
    assert_eq!(first.len(), CORPUS);
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(
            (&a.origin, &a.content_type, &a.body),
            (&b.origin, &b.content_type, &b.body)
        );
    }
    for mutation in MUTATIONS {
        let changed = first
            .iter()
            .filter(|doc| doc.mutation == mutation && seeds[doc.seed].body != doc.body)
            .count();
        assert!(
            changed >= 100,
            "{mutation}: only {changed} documents differ from their seed"
        );
    }
}

#[test]
fn the_reader_takes_every_corpus_document_without_a_panic_and_within_its_caps() {
    let seeds = seeds();
    let corpus = malformed_corpus(&seeds, CORPUS);
    let (mut read, mut refused) = (0, 0);
    for doc in &corpus {
        let url = "https://example.com/feed.xml";
        let result = std::panic::catch_unwind(|| {
            tsunagi_rss_feed::parse_response(&doc.body, url, doc.content_type.as_deref())
        })
        .unwrap_or_else(|_| panic!("the reader panicked on {}", doc.origin));
        match result {
            Ok(feed) => {
                read += 1;
                assert!(
                    feed.warnings.len() <= 16,
                    "{}: {} warnings",
                    doc.origin,
                    feed.warnings.len()
                );
                for warning in &feed.warnings {
                    assert!(
                        warning.len() <= 1_024,
                        "{}: warning of {} bytes",
                        doc.origin,
                        warning.len()
                    );
                }
                assert!(feed.hubs.len() <= 4, "{}", doc.origin);
                assert!(
                    feed.items.len() <= tsunagi_rss_feed::reader::MAX_ITEMS,
                    "{}: {} items",
                    doc.origin,
                    feed.items.len()
                );
                for item in &feed.items {
                    assert!(!item.id.is_empty(), "{}: an item without an id", doc.origin);
                    assert!(item.enclosures.len() <= 16, "{}", doc.origin);
                }
            }
            Err(reason) => {
                refused += 1;
                assert!(
                    ["malformed feed: ", "not a feed: ", "unread feed: "]
                        .iter()
                        .any(|prefix| reason.starts_with(prefix)),
                    "{}: an error of no known kind: {reason}",
                    doc.origin
                );
                assert!(
                    reason.len() <= 1_024,
                    "{}: error of {} bytes",
                    doc.origin,
                    reason.len()
                );
            }
        }
    }
    // Both outcomes occur: the corpus is broken enough to be refused and mild enough to be read.
    assert!(
        read >= 500 && refused >= 500,
        "read {read}, refused {refused}"
    );
}
