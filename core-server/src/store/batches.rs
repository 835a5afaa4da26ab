//! The group-commit transactions both back ends' writers run: a batch of
//! submits, and a batch of the sessions' writes (results, then the claims
//! they make room for). Each is one transaction; if it fails, its parts are
//! written apart and then one by one, so one write the database refuses
//! fails alone. Callers are answered once their write is committed (or
//! refused), and what the transaction committed goes to the one
//! after-commit step.

use std::{collections::HashSet, sync::Arc};

use sea_orm::{ConnectionTrait, TransactionTrait};

use super::{claim::claim_in, outcomes, submits};
use crate::{
    committed::{after_commit, Cause, Committed},
    dispatch::session::Delivery,
    error::{CoreError, CoreResult},
    intake::{submissions, Pending},
    model::{AccountId, MessageRequest},
    results::{Claim, Job, Settle},
    Core,
};

/// Stores accepted submissions in one transaction; if that fails, each
/// alone, so one bad submission cannot fail its neighbours.
pub(crate) async fn store_submits(core: &Core, batch: Vec<(AccountId, Pending)>) {
    if batch.is_empty() {
        return;
    }
    let written = async {
        let items = submissions(&batch);
        if submits::one_statement(&core.store.write, &items) {
            return submits::insert_submissions(core, &core.store.write, &items).await;
        }
        let txn = core.store.write.begin().await?;
        let views = submits::insert_submissions(core, &txn, &items).await?;
        txn.commit().await?;
        Ok::<_, CoreError>(views)
    };
    match written.await {
        Ok(mut stored) => {
            if let Some(leased) = stored.leased.take() {
                leased.deliver(core).await;
            }
            answer_submits(core, batch, stored)
        }
        Err(e) if batch.len() == 1 => {
            let (_, pending) = batch.into_iter().next().expect("one");
            let _ = pending.reply.send(Err(e));
        }
        Err(e) => {
            tracing::warn!(error = %e, size = batch.len(), "batch failed; storing one by one");
            for item in batch {
                Box::pin(store_submits(core, vec![item])).await;
            }
        }
    }
}

/// Answers the callers of a committed batch, then applies what it
/// committed (its accounts' sessions wake).
pub(crate) fn answer_submits(
    core: &Core,
    batch: Vec<(AccountId, Pending)>,
    stored: submits::Stored,
) {
    let submits::Stored {
        answers, committed, ..
    } = stored;
    for ((_, pending), answer) in batch.into_iter().zip(answers) {
        let _ = pending.reply.send(answer);
    }
    after_commit(core, committed);
}

/// A batch's results and claims, apart.
pub(crate) fn split(batch: Vec<Job>) -> (Vec<Settle>, Vec<Claim>) {
    let mut settles = Vec::new();
    let mut claims = Vec::new();
    for job in batch {
        match job {
            Job::Settle(settle) => settles.push(settle),
            Job::Claim(claim) => claims.push(claim),
        }
    }
    (settles, claims)
}

/// Applies a batch in one transaction (see [`write_in`]). If the
/// transaction fails, each job is applied alone so one cannot fail its
/// neighbours. Returns the claims that found nothing, unanswered.
pub(crate) async fn store_session_writes(
    core: &Core,
    settles: Vec<Settle>,
    claims: Vec<Claim>,
) -> Vec<Claim> {
    let single = settles.len() + claims.len() == 1;
    let written = async {
        let txn = core.store.write.begin().await?;
        let written = write_session_writes_in(core, &txn, &settles, &claims).await?;
        txn.commit().await?;
        Ok::<_, CoreError>(written)
    };
    match written.await {
        Ok(written) => answer_session_writes(core, settles, claims, written),
        Err(e) if single => {
            let mut jobs = settles.into_iter().map(Job::Settle);
            if let Some(job) = jobs
                .next()
                .or_else(|| claims.into_iter().next().map(Job::Claim))
            {
                job.fail(e);
            }
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "session write batch failed; applying one by one");
            let mut empty = Vec::new();
            for settle in settles {
                Box::pin(store_session_writes(core, vec![settle], Vec::new())).await;
            }
            for claim in claims {
                empty.extend(Box::pin(store_session_writes(core, Vec::new(), vec![claim])).await);
            }
            empty
        }
    }
}

/// What a batch wrote: each result's answer, each claim's requests, and
/// what the transaction commits.
pub(crate) type Written = (
    Vec<CoreResult<MessageRequest>>,
    Vec<Vec<Delivery>>,
    Committed,
);

/// Writes a batch inside the caller's transaction: the results together and
/// before the claims, so the claims see the slots and chats the results
/// freed. A refused result (unknown request, already finished) wrote
/// nothing; its answer says why. Once a claim leaves work of its account
/// unclaimed the account has none left, and its later claims do not run.
pub(crate) async fn write_session_writes_in(
    core: &Core,
    txn: &impl ConnectionTrait,
    settles: &[Settle],
    claims: &[Claim],
) -> CoreResult<Written> {
    let outcomes: Vec<_> = settles
        .iter()
        .map(|s| (s.account, s.id, &s.outcome))
        .collect();
    let applied = outcomes::apply_all_in(core, txn, &outcomes).await?;
    let settled = applied.answers;
    let mut committed = Committed {
        webhooks: applied.webhooks,
        ..Default::default()
    };
    for (settle, request) in settles.iter().zip(&settled) {
        let Ok(request) = request else { continue };
        match outcomes::view_after(request, &settle.outcome) {
            Some(view) => committed.changed_to(Arc::new(view), Cause::Finished),
            None => {
                let account = AccountId(request.account_id);
                committed.changed(account, request.id, request.status, Cause::Finished);
            }
        }
    }
    let mut claimed = Vec::with_capacity(claims.len());
    let mut drained = HashSet::new();
    for claim in claims {
        let wanted = claim.wanted();
        if wanted == 0 || drained.contains(&claim.account.0) {
            claimed.push(Vec::new());
            continue;
        }
        let leased = claim_in(core, txn, claim.account, claim.session, wanted).await?;
        if leased.len() < wanted {
            drained.insert(claim.account.0);
        }
        claimed.push(leased);
    }
    Ok((settled, claimed, committed))
}

/// Answers the callers of a committed batch, except the claims that found
/// nothing: those are returned, unanswered.
pub(crate) fn answer_session_writes(
    core: &Core,
    settles: Vec<Settle>,
    claims: Vec<Claim>,
    written: Written,
) -> Vec<Claim> {
    let (settled, claimed, committed) = written;
    for (settle, result) in settles.into_iter().zip(settled) {
        let _ = settle.reply.send(result);
    }
    after_commit(core, committed);
    let mut empty = Vec::new();
    for (claim, claimed) in claims.into_iter().zip(claimed) {
        if claimed.is_empty() {
            empty.push(claim);
        } else {
            // If the session went away since the claim ran, it gives back
            // what it holds after this commit, these requests included: it
            // drops its end of the claim before it does.
            let _ = claim.reply.send(Ok(claimed));
        }
    }
    empty
}
