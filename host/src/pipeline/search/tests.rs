use super::*;

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn shops() -> Vec<String> {
    vec!["rakuten".into(), "yahoo".into()]
}

fn parse(pairs: &[(&str, &str)]) -> Result<ProductSearch, SearchError> {
    parse_search(&params(pairs), &SearchSettings::default(), shops())
}

fn bad_parameter(pairs: &[(&str, &str)]) -> (String, String) {
    match parse(pairs) {
        Err(SearchError::BadQuery(BadQuery { parameter, reason })) => (parameter, reason),
        other => panic!("{pairs:?} should be a bad query, got {other:?}"),
    }
}

#[test]
fn a_good_query_is_read_with_its_defaults() {
    let search = parse(&[("q", "  green tea ")]).expect("good");
    assert_eq!(search.query.keywords, "green tea");
    assert_eq!(search.query.limit, 20, "search.default_limit");
    assert_eq!(search.query.page, 1);
    assert_eq!(search.query.sort, SortOrder::Relevance);
    assert_eq!(search.shops, shops(), "every running shop by default");

    let search = parse(&[
        ("q", "tea"),
        ("shops", "yahoo,rakuten,yahoo"),
        ("limit", "5"),
        ("sort", "price-asc"),
        ("min_price", "100"),
        ("max_price", "100"),
        ("page", "3"),
    ])
    .expect("good");
    assert_eq!(search.shops, shops(), "sorted, repeats dropped");
    assert_eq!(
        search.query,
        ProductQuery {
            keywords: "tea".into(),
            limit: 5,
            page: 3,
            sort: SortOrder::PriceAscending,
            min_price: Some(100),
            max_price: Some(100),
        }
    );
}

#[test]
fn every_bad_parameter_is_named() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 14] = [
        (&[], "q", "empty"),
        (&[("q", "   ")], "q", "empty"),
        (&[("q", &"x".repeat(201))], "q", "201 characters"),
        (&[("q", "a\u{7}b")], "q", "control"),
        (
            &[("q", "tea"), ("shops", "amazon")],
            "shops",
            "no shop \"amazon\"",
        ),
        (&[("q", "tea"), ("shops", "")], "shops", "no shop \"\""),
        (
            &[("q", "tea"), ("limit", "0")],
            "limit",
            "not between 1 and 100",
        ),
        (&[("q", "tea"), ("limit", "101")], "limit", "not between"),
        (
            &[("q", "tea"), ("limit", "ten")],
            "limit",
            "not a whole number",
        ),
        (&[("q", "tea"), ("sort", "cheap")], "sort", "not one of"),
        (
            &[("q", "tea"), ("min_price", "-1")],
            "min_price",
            "not a whole number",
        ),
        (
            &[("q", "tea"), ("min_price", "500"), ("max_price", "100")],
            "min_price",
            "above max_price",
        ),
        (
            &[("q", "tea"), ("page", "101")],
            "page",
            "not between 1 and 100",
        ),
        (
            &[("q", "tea"), ("colour", "red")],
            "colour",
            "unknown parameter",
        ),
    ];
    for (pairs, parameter, reason) in cases {
        let (named, said) = bad_parameter(pairs);
        assert_eq!(named, parameter, "{pairs:?}: {said}");
        assert!(
            said.contains(reason),
            "{pairs:?}: {said:?} should say {reason:?}"
        );
    }
    let (named, said) = bad_parameter(&[("q", "tea"), ("q", "coffee")]);
    assert_eq!(
        (named.as_str(), said.as_str()),
        ("q", "given more than once")
    );
    let many = vec!["rakuten"; 33].join(",");
    let (named, said) = bad_parameter(&[("q", "tea"), ("shops", &many)]);
    assert_eq!(named, "shops");
    assert!(said.contains("more than 32"), "{said}");
}

#[test]
fn no_running_shop_is_its_own_error() {
    let none = parse_search(
        &params(&[("q", "tea")]),
        &SearchSettings::default(),
        Vec::new(),
    );
    assert_eq!(none, Err(SearchError::NoShops));
    let settings = SearchSettings {
        shops: Some(vec!["yahoo".into(), "gone".into()]),
        ..SearchSettings::default()
    };
    let search = parse_search(&params(&[("q", "tea")]), &settings, shops()).expect("defaults");
    assert_eq!(
        search.shops,
        vec!["yahoo".to_string()],
        "the configured default shops that run"
    );
}

fn product(shop: &str, id: &str, price: u64, reviews: u32, average: Option<f64>) -> Product {
    Product {
        shop: shop.into(),
        id: id.into(),
        price,
        review_count: reviews,
        review_average: average,
        ..Product::default()
    }
}

fn ids(products: &[Product]) -> Vec<&str> {
    products.iter().map(|p| p.id.as_str()).collect()
}

#[test]
fn relevance_takes_each_shops_best_in_turn_and_the_rest_sort_on_the_field() {
    let pages = || {
        vec![
            vec![
                product("a", "a1", 300, 5, Some(4.0)),
                product("a", "a2", 100, 50, None),
                product("a", "a3", 200, 1, Some(5.0)),
            ],
            vec![product("b", "b1", 150, 7, Some(3.5))],
        ]
    };
    assert_eq!(
        ids(&merge(pages(), SortOrder::Relevance, 10)),
        ["a1", "b1", "a2", "a3"]
    );
    assert_eq!(ids(&merge(pages(), SortOrder::Relevance, 2)), ["a1", "b1"]);
    assert_eq!(
        ids(&merge(pages(), SortOrder::PriceAscending, 10)),
        ["a2", "b1", "a3", "a1"]
    );
    assert_eq!(
        ids(&merge(pages(), SortOrder::PriceDescending, 2)),
        ["a1", "a3"]
    );
    assert_eq!(
        ids(&merge(pages(), SortOrder::ReviewCount, 10)),
        ["a2", "b1", "a1", "a3"]
    );
    assert_eq!(
        ids(&merge(pages(), SortOrder::ReviewAverage, 10)),
        ["a3", "a1", "b1", "a2"],
        "no reviews sorts last"
    );
    assert!(merge(Vec::new(), SortOrder::Relevance, 10).is_empty());
}

fn search_for(keywords: &str) -> ProductSearch {
    ProductSearch {
        query: ProductQuery {
            keywords: keywords.into(),
            limit: 10,
            page: 1,
            ..ProductQuery::default()
        },
        shops: vec!["shop".into()],
    }
}

fn answer(complete: bool) -> Arc<SearchAnswer> {
    let status = if complete {
        ShopStatus::Ok
    } else {
        ShopStatus::Timeout
    };
    Arc::new(SearchAnswer {
        query: "q".into(),
        sort: SortOrder::Relevance,
        page: 1,
        limit: 10,
        products: Vec::new(),
        shops: [(
            "shop".to_string(),
            ShopOutcome {
                status,
                reason: None,
                count: 0,
                total: None,
                elapsed_ms: 0,
            },
        )]
        .into_iter()
        .collect(),
        elapsed_ms: 0,
    })
}

#[test]
fn distinct_searches_in_flight_are_capped_and_identical_ones_join_without_a_place() {
    let pipeline = SearchPipeline::with_flight_cap(SearchSettings::default(), 2);
    let first = pipeline.board(&search_for("a")).expect("a place");
    let _second = pipeline.board(&search_for("b")).expect("a place");
    assert!(matches!(first, Boarding::Lead(..)));
    assert!(
        matches!(pipeline.board(&search_for("a")), Ok(Boarding::Join(_))),
        "an identical search joins the flight, taking no place"
    );
    assert_eq!(
        pipeline.board(&search_for("c")).err(),
        Some(SearchError::Busy),
        "a third distinct search is refused, not queued"
    );
    assert_eq!(pipeline.counts().refused_busy, 1);
    // A flight that lands frees its place.
    let Boarding::Lead(flight, permit) = first else {
        unreachable!()
    };
    pipeline.land(&search_for("a"), &flight, &answer(true));
    drop(permit);
    assert!(matches!(
        pipeline.board(&search_for("c")),
        Ok(Boarding::Lead(..))
    ));
}

#[test]
fn kept_answers_are_capped_oldest_first_and_incomplete_ones_are_not_kept() {
    let settings = SearchSettings {
        cache_entries: 2,
        ..SearchSettings::default()
    };
    let pipeline = SearchPipeline::new(settings);
    for keywords in ["a", "b", "c"] {
        let search = search_for(keywords);
        let Ok(Boarding::Lead(flight, _permit)) = pipeline.board(&search) else {
            panic!("a new flight for {keywords}")
        };
        pipeline.land(&search, &flight, &answer(true));
    }
    assert_eq!(pipeline.counts().kept_answers, 2);
    assert!(
        matches!(pipeline.board(&search_for("a")), Ok(Boarding::Lead(..))),
        "the oldest was dropped"
    );
    assert!(matches!(
        pipeline.board(&search_for("c")),
        Ok(Boarding::Kept(_))
    ));
    let search = search_for("d");
    let Ok(Boarding::Lead(flight, _permit)) = pipeline.board(&search) else {
        panic!("a new flight")
    };
    pipeline.land(&search, &flight, &answer(false));
    assert!(
        matches!(pipeline.board(&search), Ok(Boarding::Lead(..))),
        "an answer a shop failed is not kept"
    );
}
