//! Message requests as clients see them: submit, get, list, count, cancel.
//! Every query is scoped to the calling account; another account's request
//! (or chat) is "not found".

use uuid::Uuid;

use crate::{
    accounts,
    committed::after_commit,
    error::{CoreError, CoreResult},
    model::{
        check_text, AccountId, RequestCounts, RequestStatus, RequestView, Submission, Submitted,
        MAX_CHAT_ID_CHARS, MAX_IDEMPOTENCY_KEY_CHARS,
    },
    store, Core,
};

/// The text (messages, responses, errors) one page of requests may carry
/// before it ends early, with `next_cursor` pointing on.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Requests read from the store at a time while filling a page.
const PAGE_CHUNK: usize = 128;

/// Bytes of text a request carries.
fn text_bytes(view: &RequestView) -> usize {
    let r = &view.request;
    r.message.len()
        + r.response.as_ref().map_or(0, String::len)
        + r.error_message.as_ref().map_or(0, String::len)
}

/// Page sizes for listings.
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;

/// A page of a listing, newest first.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

pub fn page_size(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

pub(crate) fn validate(core: &Core, submission: &Submission) -> CoreResult<()> {
    if submission.message.trim().is_empty() {
        return Err(CoreError::invalid("message: must not be empty"));
    }
    check_text(
        "message",
        &submission.message,
        core.config.max_message_chars,
    )
    .map_err(CoreError::InvalidArgument)?;
    if let Some(chat_id) = &submission.chat_id {
        if chat_id.trim().is_empty() {
            return Err(CoreError::invalid("chat_id: must not be empty"));
        }
        check_text("chat_id", chat_id, MAX_CHAT_ID_CHARS).map_err(CoreError::InvalidArgument)?;
    }
    if let Some(key) = &submission.idempotency_key {
        let printable = key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        if key.trim().is_empty() || !printable || key.len() > MAX_IDEMPOTENCY_KEY_CHARS {
            return Err(CoreError::invalid(format!(
                "Idempotency-Key: must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters"
            )));
        }
    }
    Ok(())
}

/// Submits a message for the holder of `api_key`.
pub async fn submit(
    core: &Core,
    api_key: Option<&str>,
    submission: Submission,
) -> CoreResult<Submitted> {
    let key = accounts::present_key(api_key)?;
    core.intake
        .submit(accounts::hash_api_key(key), submission)
        .await
}

fn parse_id(id: &str) -> Option<Uuid> {
    Uuid::parse_str(id.trim()).ok()
}

/// The request `id` of the holder of `api_key`. The key is checked in the
/// same query; only a miss asks which of key and id was wrong.
pub async fn get(core: &Core, api_key: Option<&str>, id: &str) -> CoreResult<RequestView> {
    let key = accounts::present_key(api_key)?;
    let key_hash = accounts::hash_api_key(key);
    let not_found = || CoreError::not_found("request not found");
    let found = match parse_id(id) {
        None => None,
        Some(id) => match fast_get(core, id, &key_hash) {
            Some(view) => return Ok(view),
            None => store::requests::get_for_key(&core.store, id, &key_hash).await?,
        },
    };
    match found {
        Some(view) => Ok(view),
        None => {
            accounts::authenticate_hash(&core.store, &key_hash).await?;
            Err(not_found())
        }
    }
}

/// The request from the store's point reads, when it has them. `None` when
/// they do not apply or did not find it: the sea-orm query then decides
/// between "not found" and "invalid API key", and covers any read error.
fn fast_get(core: &Core, id: Uuid, key_hash: &str) -> Option<RequestView> {
    core.store
        .point_read(|reads| reads.request(id, key_hash))
        .flatten()
}

/// A page of the account's requests, newest first: with `status`, of the
/// chat (row id) `chat`, if given. A chat that is not the account's is
/// "not found".
pub async fn list(
    core: &Core,
    account: AccountId,
    status: Option<RequestStatus>,
    chat: Option<i64>,
    limit: u32,
    cursor: Option<&str>,
) -> CoreResult<Page<RequestView>> {
    let limit = page_size(limit);
    let before = match cursor.filter(|c| !c.is_empty()) {
        Some(cursor) => {
            Some(parse_id(cursor).ok_or_else(|| CoreError::invalid("cursor: invalid"))?)
        }
        None => None,
    };
    if let Some(chat) = chat {
        store::chats::check_owned(core, account, chat).await?;
    }
    // Read in chunks, so a page of long answers never holds more than its
    // text budget (and one chunk) in memory; it always holds one request.
    let mut rows: Vec<RequestView> = Vec::new();
    let mut bytes = 0;
    let mut more = false;
    let mut after = before;
    'pages: loop {
        let wanted = (limit as usize - rows.len()).min(PAGE_CHUNK) as u32 + 1;
        let chunk =
            store::requests::list(&core.store, account, status, chat, after, wanted).await?;
        let full = chunk.len() == wanted as usize;
        for view in chunk.into_iter().take(wanted as usize - 1) {
            bytes += text_bytes(&view);
            if rows.len() == limit as usize || (bytes > PAGE_BYTES && !rows.is_empty()) {
                more = true;
                break 'pages;
            }
            after = Some(view.request.id);
            rows.push(view);
        }
        if !full {
            break;
        }
        if rows.len() == limit as usize {
            more = true;
            break;
        }
    }
    let next_cursor = more
        .then(|| rows.last().map(|view| view.request.id.to_string()))
        .flatten();
    Ok(Page {
        items: rows,
        next_cursor,
    })
}

/// The account's requests per status, of the chat (row id) `chat` if
/// given. A chat that is not the account's is "not found".
pub async fn counts(
    core: &Core,
    account: AccountId,
    chat: Option<i64>,
) -> CoreResult<RequestCounts> {
    if let Some(chat) = chat {
        store::chats::check_owned(core, account, chat).await?;
    }
    store::requests::counts(&core.store, account, chat).await
}

/// Cancels the account's request `id`, which must be idle: it becomes
/// `failed` with the error "cancelled", its webhook and live event follow,
/// and it is never delivered again. A session that was sent it gets an
/// error frame for whatever it later reports about it.
pub async fn cancel(core: &Core, account: AccountId, id: &str) -> CoreResult<RequestView> {
    let id = parse_id(id).ok_or_else(|| CoreError::not_found("request not found"))?;
    let (view, committed) = store::cancel::cancel(core, account, id).await?;
    after_commit(core, committed);
    Ok(view)
}
