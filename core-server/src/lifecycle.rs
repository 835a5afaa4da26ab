//! The request lifecycle as extensions drive it: `idle` → `executing` →
//! `done` | `failed` (or straight from `idle` to a result). Terminal requests
//! never change again. Every terminal transition enqueues its webhook in the
//! same transaction.

use uuid::Uuid;

use crate::{
    committed::after_commit,
    error::{CoreError, CoreResult},
    model::{
        check_text, AccountId, MessageRequest, MAX_CHAT_ID_CHARS, MAX_CHAT_TITLE_CHARS,
        MAX_ERROR_CHARS, MAX_RESPONSE_CHARS,
    },
    store::outcomes,
    Core,
};

/// The extension started running the request. It now holds the request's
/// lease (so it comes back to the queue if this session ends). Repeating it
/// is harmless.
pub async fn mark_executing(
    core: &Core,
    account: AccountId,
    id: Uuid,
    session: Uuid,
) -> CoreResult<()> {
    let committed = crate::retry::until_stored(&core.shutdown, "status_update", || {
        outcomes::mark_executing(core, account, id, session)
    })
    .await?;
    after_commit(core, committed);
    Ok(())
}

/// How an extension finished a request.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// ChatGPT answered, in the chat with this ChatGPT id.
    Done {
        response: String,
        chatgpt_id: String,
        chat_title: Option<String>,
    },
    /// The request could not be run.
    Failed { error: String },
}

/// The outcome if every string in it is one the core stores (bounded, no
/// NUL), with an empty title taken as none; else why not, naming the field.
/// A refused outcome changes nothing, so one bad frame never costs the
/// results written with it.
fn checked(outcome: Outcome) -> Result<Outcome, String> {
    match outcome {
        Outcome::Done {
            response,
            chatgpt_id,
            chat_title,
        } => {
            if chatgpt_id.trim().is_empty() {
                return Err("chat_id: must not be empty".into());
            }
            check_text("chat_id", &chatgpt_id, MAX_CHAT_ID_CHARS)?;
            check_text("response", &response, MAX_RESPONSE_CHARS)?;
            let chat_title = chat_title.filter(|t| !t.trim().is_empty());
            if let Some(title) = &chat_title {
                check_text("chat_title", title, MAX_CHAT_TITLE_CHARS)?;
            }
            Ok(Outcome::Done {
                response,
                chatgpt_id,
                chat_title,
            })
        }
        Outcome::Failed { error } => {
            check_text("error", &error, MAX_ERROR_CHARS)?;
            Ok(Outcome::Failed { error })
        }
    }
}

/// Finishes a request as the extension reported; resolves once committed.
pub async fn settle_outcome(
    core: &Core,
    account: AccountId,
    id: Uuid,
    outcome: Outcome,
) -> CoreResult<MessageRequest> {
    let outcome = checked(outcome).map_err(CoreError::InvalidArgument)?;
    crate::retry::until_stored(&core.shutdown, "result", || {
        core.results.apply(account, id, outcome.clone())
    })
    .await
}

/// ChatGPT answered: the request is `done`, its chat named.
pub async fn complete(
    core: &Core,
    account: AccountId,
    id: Uuid,
    response: String,
    chatgpt_id: String,
    chat_title: Option<String>,
) -> CoreResult<MessageRequest> {
    let outcome = Outcome::Done {
        response,
        chatgpt_id,
        chat_title,
    };
    settle_outcome(core, account, id, outcome).await
}

/// The extension could not run the request: it is `failed`.
pub async fn fail(
    core: &Core,
    account: AccountId,
    id: Uuid,
    error: String,
) -> CoreResult<MessageRequest> {
    settle_outcome(core, account, id, Outcome::Failed { error }).await
}
