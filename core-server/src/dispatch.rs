//! Wake-ups for extension sessions. The database is the queue and the only
//! source of truth; this module just tells the sessions of an account, in
//! this process, that there may be work for them — so no session ever polls
//! with a sleep.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::model::AccountId;

#[derive(Default)]
pub struct Dispatch {
    accounts: DashMap<i64, Arc<Notify>>,
}

impl Dispatch {
    /// The wake-up shared by the sessions of one account.
    pub fn account(&self, account: AccountId) -> Arc<Notify> {
        self.accounts.entry(account.0).or_default().clone()
    }

    /// New idle work for the account: wake one of its sessions (it passes the
    /// wake-up on if it could not take everything).
    pub fn submitted(&self, account: AccountId) {
        if let Some(notify) = self.accounts.get(&account.0) {
            notify.notify_one();
        }
    }
}
