//! Cursor pagination: `page_size` + opaque `page_token` in, `{items, next_page_token}` out.
//!
//! Every list is ordered by its UUIDv7 id (creation order), so the cursor is the last id seen:
//! stable under concurrent inserts and O(log n) to resume, unlike OFFSET.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1-100 (default 20).
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub size: u32,
    pub after: Option<Uuid>,
}

impl PageRequest {
    pub fn parse(size: Option<u32>, token: Option<&str>) -> Result<PageRequest, Error> {
        let size = size.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(Error::bad_request(
                Some("page_size".into()),
                format!("page_size must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        let after = match token.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(decode_token(t).ok_or_else(|| {
                Error::bad_request(Some("page_token".into()), "page_token is not valid")
            })?),
        };
        Ok(PageRequest { size, after })
    }

    /// The cursor bound for SQL: ids sort as text in creation order; "" sorts before every id.
    pub fn after_text(&self) -> String {
        self.after.map(|u| u.to_string()).unwrap_or_default()
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.size) + 1
    }
}

impl TryFrom<&PageParams> for PageRequest {
    type Error = Error;
    fn try_from(p: &PageParams) -> Result<Self, Error> {
        PageRequest::parse(p.page_size, p.page_token.as_deref())
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `page_token` to get the next page; null on the last page.
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `fetch_limit()` rows; `id` gives each row's cursor.
    pub fn from_rows(mut rows: Vec<T>, req: PageRequest, id: impl Fn(&T) -> Uuid) -> Page<T> {
        let next_page_token = if rows.len() > req.size as usize {
            rows.truncate(req.size as usize);
            rows.last().map(|r| encode_token(id(r)))
        } else {
            None
        };
        Page {
            items: rows,
            next_page_token,
        }
    }
}

fn encode_token(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_token(token: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    Uuid::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        let id = edgecart_proto::ids::new_id();
        let req = PageRequest::parse(Some(5), Some(&encode_token(id))).unwrap();
        assert_eq!(req.after, Some(id));
        assert!(PageRequest::parse(None, Some("'; DROP TABLE products; --")).is_err());
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(101), None).is_err());
    }

    #[test]
    fn next_token_only_when_more_rows() {
        let req = PageRequest::parse(Some(2), None).unwrap();
        let ids: Vec<Uuid> = (0..3).map(|_| edgecart_proto::ids::new_id()).collect();
        let page = Page::from_rows(ids.clone(), req, |u| *u);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next_page_token, Some(encode_token(ids[1])));
        let page = Page::from_rows(ids[..2].to_vec(), req, |u| *u);
        assert!(page.next_page_token.is_none());
    }
}
