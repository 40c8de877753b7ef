//! One Rakuten answer → products. Every way the answer can be wrong names where: the status
//! and Rakuten's own `error_description`, or the field (`Items[3].itemPrice`) whose shape
//! changed, so an operator reading the search's per-shop status knows what broke.

use serde_json::Value;
use tsunagi_sdk::prelude::*;

/// The longest error text taken from an answer.
const MAX_DESCRIPTION: usize = 200;

/// The products of an answer with `status`, or the error it means.
pub fn answer(status: u16, content_type: &str, body: &[u8]) -> Result<ProductPage> {
    if status != 200 {
        return Err(status_error(status, body));
    }
    if !content_type.to_ascii_lowercase().contains("json") {
        return Err(Error::bad_response(format!(
            "Rakuten answered 200 with {}, not JSON (a maintenance or error page)",
            if content_type.is_empty() {
                "no content type"
            } else {
                content_type
            }
        )));
    }
    let document: Value = json::from_slice(body, "Rakuten's answer")?;
    products(&document)
}

/// A failure status as an error of the right kind, with Rakuten's description.
pub fn status_error(status: u16, body: &[u8]) -> Error {
    let described = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|error| {
            let code = error.get("error")?.as_str()?.to_string();
            let description = error
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            Some(format!("{code}: {}", clip(description)))
        })
        .unwrap_or_else(|| "no Rakuten error body".to_string());
    let message = format!("Rakuten answered {status} ({described})");
    match status {
        429 => Error::rate_limited(message),
        400 | 401 | 403 | 404 => Error::permanent(message),
        _ => Error::transient(message),
    }
}

fn clip(text: &str) -> &str {
    let mut end = text.len().min(MAX_DESCRIPTION);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A `formatVersion=2` document's products.
pub fn products(document: &Value) -> Result<ProductPage> {
    let items = document
        .get("Items")
        .ok_or_else(|| shape("Items", "missing"))?
        .as_array()
        .ok_or_else(|| shape("Items", "not an array"))?;
    let total = document.get("count").and_then(Value::as_u64);
    let products = items
        .iter()
        .enumerate()
        .map(|(index, item)| product(index, item))
        .collect::<Result<Vec<_>>>()?;
    Ok(ProductPage::new(products, total))
}

fn shape(field: &str, problem: &str) -> Error {
    Error::bad_response(format!("Rakuten answer changed shape: {field}: {problem}"))
}

fn described(value: &Value) -> String {
    let text = value.to_string();
    format!("{:?}", clip(&text))
}

fn product(index: usize, item: &Value) -> Result<Product> {
    let at = |field: &str| format!("Items[{index}].{field}");
    let text = |field: &str| -> Result<String> {
        match item.get(field) {
            Some(Value::String(text)) => Ok(text.clone()),
            Some(other) => Err(shape(
                &at(field),
                &format!("expected a string, found {}", described(other)),
            )),
            None => Err(shape(&at(field), "missing")),
        }
    };
    let whole = |field: &str| -> Result<u64> {
        match item.get(field) {
            Some(value) => value.as_u64().ok_or_else(|| {
                shape(
                    &at(field),
                    &format!("expected a whole number, found {}", described(value)),
                )
            }),
            None => Err(shape(&at(field), "missing")),
        }
    };
    let average = match item.get("reviewAverage") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_f64().ok_or_else(|| {
            shape(
                &at("reviewAverage"),
                &format!("expected a number, found {}", described(value)),
            )
        })?),
    };
    let review_count = u32::try_from(whole("reviewCount")?)
        .map_err(|_| shape(&at("reviewCount"), "out of range"))?;
    let image = item
        .get("mediumImageUrls")
        .and_then(Value::as_array)
        .and_then(|urls| urls.first())
        .and_then(Value::as_str)
        .map(str::to_string);
    let in_stock = item.get("availability").and_then(Value::as_u64) != Some(0);
    Ok(Product::new(
        text("itemCode")?,
        text("itemName")?,
        whole("itemPrice")?,
        "JPY",
        text("itemUrl")?,
    )
    .image(image)
    .seller(item.get("shopName").and_then(Value::as_str))
    .reviews(review_count, average.filter(|_| review_count > 0))
    .in_stock(in_stock))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item() -> Value {
        json!({
            "itemName": "Green tea 100g", "itemCode": "tea-shop:10001", "itemPrice": 1980,
            "itemUrl": "https://item.rakuten.co.jp/tea-shop/10001/",
            "mediumImageUrls": ["https://thumbnail.image.rakuten.co.jp/a.jpg?_ex=128x128"],
            "availability": 1, "reviewCount": 12, "reviewAverage": 4.5, "shopName": "Tea Shop"
        })
    }

    #[test]
    fn format_version_2_items_become_products() {
        let page = products(&json!({"count": 41, "Items": [item()]})).expect("products");
        assert_eq!(page.total, Some(41));
        let product = &page.products[0];
        assert_eq!(product.id, "tea-shop:10001");
        assert_eq!(product.price, 1980);
        assert_eq!(product.currency, "JPY");
        assert_eq!(product.review_average, Some(4.5));
        assert_eq!(product.seller.as_deref(), Some("Tea Shop"));
        assert!(product.in_stock);
    }

    #[test]
    fn a_changed_shape_names_the_field() {
        let mut renamed = item();
        let price = renamed.as_object_mut().and_then(|o| o.remove("itemPrice"));
        renamed["price"] = price.unwrap_or_default();
        let error = products(&json!({"Items": [item(), renamed]})).expect_err("renamed");
        assert_eq!(error.kind(), ErrorKind::BadResponse);
        assert!(
            error.message().contains("Items[1].itemPrice: missing"),
            "{error:?}"
        );

        let mut string_price = item();
        string_price["itemPrice"] = json!("1,980円");
        let error = products(&json!({"Items": [string_price]})).expect_err("string");
        assert!(
            error
                .message()
                .contains("Items[0].itemPrice: expected a whole number, found \"\\\"1,980円\\\"\""),
            "{error:?}"
        );
        let error = products(&json!({"items": []})).expect_err("no Items");
        assert!(error.message().contains("Items: missing"), "{error:?}");
    }

    #[test]
    fn html_with_200_and_error_statuses_are_told_apart() {
        let error = answer(200, "text/html", b"<html>maintenance</html>").expect_err("html");
        assert_eq!(error.kind(), ErrorKind::BadResponse);
        assert!(error.message().contains("text/html"), "{error:?}");
        let limited = answer(
            429,
            "application/json",
            br#"{"error":"too_many_requests","error_description":"number of allowed requests has been exceeded"}"#,
        )
        .expect_err("429");
        assert_eq!(limited.kind(), ErrorKind::RateLimited);
        assert!(
            limited.message().contains("too_many_requests"),
            "{limited:?}"
        );
        let down = answer(
            503,
            "application/json",
            br#"{"error":"service_unavailable","error_description":"under maintenance"}"#,
        )
        .expect_err("503");
        assert_eq!(down.kind(), ErrorKind::Transient);
        assert_eq!(
            answer(400, "application/json", b"garbage")
                .expect_err("400")
                .kind(),
            ErrorKind::Permanent
        );
    }
}
