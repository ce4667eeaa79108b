//! # A bank on a batch system: 10,000 accounts, two threads
//!
//! This example builds everything a user of `batch-system` writes: an FSM
//! (one bank account), a control FSM (the bank, which opens accounts on
//! demand), a poll handler with per-round work in `end`, and the builder
//! that gives every poller thread its own handler. It is the same shape
//! raftstore uses: one FSM per region, a store FSM that creates missing
//! regions, a handler that writes one log batch per round.
//!
//! Run it with
//!
//! ```text
//! cargo run -p batch-system --example accounts
//! ```
//!
//! The test suite runs [`run`] too (`tests/integrations/example.rs`), so
//! this file cannot silently rot.
//!
//! Read it top to bottom: 1. messages, 2. the account FSM, 3. the bank (the
//! control FSM), 4. the poll handler, 5. the handler builder, 6. sending
//! with a fallback to the bank, 7. the program.

use std::ops::DerefMut;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use batch_system::mpsc::{self, Receiver, TrySendError};
use batch_system::{
    create_system_with_config, BasicMailbox, BatchRouter, Config, Either, Fsm, HandleResult,
    HandlerBuilder, PollHandler,
};

// ---------------------------------------------------------------------------
// 1. Messages
//
// Keep mailbox messages small: a mailbox's channel keeps a block of slots
// sized by the message type once it has carried one message. Box anything
// large.
// ---------------------------------------------------------------------------

/// What an account understands.
pub enum AccountMsg {
    /// Add money.
    Deposit(u64),
    /// Move `amount` to account `to` if the balance covers it.
    Transfer {
        /// Receiving account (opened on demand).
        to: u64,
        /// How much.
        amount: u64,
    },
    /// Reply with `(id, balance)`.
    Balance(Sender<(u64, u64)>),
    /// Close the account and reply with its id: the FSM stops and is
    /// dropped after the round.
    Close(Sender<u64>),
}

/// What the bank (the control FSM) understands.
pub enum BankMsg {
    /// A message for an account that has no mailbox yet.
    Route {
        /// The account.
        id: u64,
        /// The message to deliver once it exists.
        msg: AccountMsg,
    },
    /// Reply with the number of accounts the bank opened.
    Opened(Sender<u64>),
}

/// Capacity of every account mailbox. `try_send` beyond it returns
/// `Full`; `force_send` ignores it.
const ACCOUNT_CAPACITY: usize = 4096;

// ---------------------------------------------------------------------------
// 2. The account FSM
//
// An FSM owns the receiving half of its mailbox. It does nothing by itself:
// a poller hands it to the handler (below) when it has messages.
// ---------------------------------------------------------------------------

/// One account. The FSM does not know its address unless we tell it, so it
/// keeps its own id (the handler needs it to close the address).
pub struct Account {
    id: u64,
    balance: u64,
    rx: Receiver<AccountMsg>,
    closed: bool,
}

impl Account {
    /// A new empty account and the sender for its mailbox.
    fn open(id: u64) -> (mpsc::LooseBoundedSender<AccountMsg>, Box<Account>) {
        let (tx, rx) = mpsc::loose_bounded(ACCOUNT_CAPACITY);
        let account = Account {
            id,
            balance: 0,
            rx,
            closed: false,
        };
        (tx, Box::new(account))
    }
}

impl Fsm for Account {
    type Message = AccountMsg;

    // Checked by the poller after every `handle_normal`: a stopped FSM has
    // its mailbox closed and is dropped after the round's `end`.
    fn is_stopped(&self) -> bool {
        self.closed
    }
}

// ---------------------------------------------------------------------------
// 3. The bank: the control FSM
//
// Every system has exactly one control FSM, created with the system. Here
// it receives messages for accounts that do not exist yet and opens them.
// ---------------------------------------------------------------------------

/// The control FSM.
pub struct Bank {
    rx: Receiver<BankMsg>,
    opened: u64,
}

impl Fsm for Bank {
    type Message = BankMsg;

    fn is_stopped(&self) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------
// 4. The poll handler
//
// One handler lives on each poller thread. Per round the poller calls
// `begin`, `handle_control` (if the bank is in the batch), `handle_normal`
// for each account in the batch, `light_end`, then `end` once.
//
// The handler is not given the router: it gets a clone from its builder
// (section 5). That is how it reaches other FSMs and registers new ones.
// ---------------------------------------------------------------------------

/// Totals the handlers publish once per round (in `end`), standing in for
/// a write that a real system would batch: one lock per round, not one per
/// message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    /// Messages handled by all accounts.
    pub handled: u64,
    /// Poll rounds that handled at least one message.
    pub rounds: u64,
}

/// The handler of one poller thread.
pub struct BankHandler {
    router: BatchRouter<Account, Bank>,
    ledger: Arc<Mutex<Ledger>>,
    /// This round's work, published in `end`.
    round: Ledger,
    /// Most messages one FSM may handle per round, so a busy account
    /// shares its poller with the rest of the batch.
    budget: usize,
}

impl PollHandler<Account, Bank> for BankHandler {
    fn begin(&mut self, _batch_size: usize) {
        self.round = Ledger::default();
    }

    fn handle_control(&mut self, bank: &mut Bank) -> Option<usize> {
        for _ in 0..self.budget {
            match bank.rx.try_recv() {
                Ok(BankMsg::Route { id, msg }) => {
                    // The account may have been opened by an earlier Route
                    // in this very loop: try it first.
                    match self.router.try_send(id, msg) {
                        Either::Left(_) => {}
                        Either::Right(msg) => {
                            // Open it: register the mailbox, then send. (A
                            // message pushed into the channel *before*
                            // registering would sit there unnoticed: only a
                            // send through the mailbox wakes the FSM.)
                            let (tx, account) = Account::open(id);
                            self.router.register(id, BasicMailbox::new(tx, account));
                            bank.opened += 1;
                            let _ = self.router.force_send(id, msg);
                        }
                    }
                }
                Ok(BankMsg::Opened(reply)) => {
                    let _ = reply.send(bank.opened);
                }
                // The mailbox is drained: release the bank until the next
                // message wakes it. (`None` here would keep it in the batch
                // and make the poller spin on an empty mailbox.)
                Err(_) => return Some(0),
            }
        }
        // Budget used up with messages left: keep it for the next round.
        if bank.rx.is_empty() {
            Some(0)
        } else {
            None
        }
    }

    fn handle_normal(&mut self, account: &mut impl DerefMut<Target = Account>) -> HandleResult {
        let account: &mut Account = account;
        for _ in 0..self.budget {
            let Ok(msg) = account.rx.try_recv() else {
                // Drained: release the FSM to its mailbox. The poller takes
                // it straight back if a message raced in meanwhile.
                return HandleResult::stop_at(0, false);
            };
            self.round.handled += 1;
            match msg {
                AccountMsg::Deposit(n) => account.balance += n,
                AccountMsg::Transfer { to, amount } => {
                    if account.balance >= amount {
                        account.balance -= amount;
                        // A handler sends like any other thread; the same
                        // fallback opens the receiving account on demand.
                        deposit(&self.router, to, amount);
                    }
                }
                AccountMsg::Balance(reply) => {
                    let _ = reply.send((account.id, account.balance));
                }
                AccountMsg::Close(reply) => {
                    account.closed = true;
                    // The poller closes a stopped FSM's mailbox but cannot
                    // unregister it (it does not know addresses): do it here,
                    // or the address stays in `alive_cnt`.
                    self.router.close(account.id);
                    let _ = reply.send(account.id);
                    return HandleResult::stop_at(0, false);
                }
            }
        }
        // Budget used up. Return `KeepProcessing` only when there is work
        // left: for an empty mailbox it would make the poller spin.
        if account.rx.is_empty() {
            HandleResult::stop_at(0, false)
        } else {
            HandleResult::KeepProcessing
        }
    }

    fn end(&mut self, _batch: &mut [Option<impl DerefMut<Target = Account>>]) {
        // Once per round, for every FSM of the batch: the place for group
        // commit (raftstore writes one log batch and syncs once here).
        if self.round.handled == 0 {
            return;
        }
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.handled += self.round.handled;
        ledger.rounds += 1;
    }
}

// ---------------------------------------------------------------------------
// 5. The handler builder
//
// `BatchSystem::spawn` calls `build` once per poller thread. The builder is
// where the router clone (and any other shared handle) comes in.
// ---------------------------------------------------------------------------

/// Builds one [`BankHandler`] per poller.
pub struct BankBuilder {
    router: BatchRouter<Account, Bank>,
    ledger: Arc<Mutex<Ledger>>,
}

impl HandlerBuilder<Account, Bank> for BankBuilder {
    type Handler = BankHandler;

    fn build(&mut self) -> BankHandler {
        BankHandler {
            router: self.router.clone(),
            ledger: Arc::clone(&self.ledger),
            round: Ledger::default(),
            budget: 64,
        }
    }
}

// ---------------------------------------------------------------------------
// 6. Sending, with a fallback to the control FSM
//
// `try_send` answers `Either::Left(result)` for a registered address and
// `Either::Right(msg)` (the message back) for an unknown one: then ask the
// bank to open the account. raftstore's `send_raft_message` does exactly
// this with the store FSM.
//
// Ordering: messages to one mailbox are handled in send order. A message
// that goes through the bank can be overtaken by a later one sent after the
// account opened; deposits do not care.
// ---------------------------------------------------------------------------

/// Deposits `amount` into account `id`, opening it if needed. Returns
/// whether the bank accepted the money (not after shutdown).
pub fn deposit(router: &BatchRouter<Account, Bank>, id: u64, amount: u64) -> bool {
    match router.try_send(id, AccountMsg::Deposit(amount)) {
        Either::Left(Ok(())) => true,
        // Full: the account is busy. Ignoring the bound is fine for money
        // (a real system would push back on the client instead).
        Either::Left(Err(TrySendError::Full(msg))) => router.force_send(id, msg).is_ok(),
        // Closed, or the system is shutting down.
        Either::Left(Err(TrySendError::Disconnected(_))) => false,
        Either::Right(msg) => router
            .force_send_control(BankMsg::Route { id, msg })
            .is_ok(),
    }
}

// ---------------------------------------------------------------------------
// 7. The program
// ---------------------------------------------------------------------------

/// What a run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Accounts the bank opened.
    pub opened: u64,
    /// Sum of all balances before closing.
    pub total_balance: u64,
    /// Money deposited from outside.
    pub deposited: u64,
    /// Registered accounts after closing every other one.
    pub alive_after_close: usize,
    /// The handlers' per-round totals, read after shutdown.
    pub ledger: Ledger,
    /// Whether a deposit after shutdown was refused.
    pub refused_after_shutdown: bool,
}

/// Opens `accounts` accounts on demand with `deposits` deposits of 1..=10
/// each, moves money between neighbours, checks the books, closes every
/// other account and shuts down.
///
/// # Panics
///
/// Panics if the system cannot start or a reply does not arrive within
/// 20 seconds.
pub fn run(accounts: u64, deposits: u64) -> Report {
    const TIMEOUT: Duration = Duration::from_secs(20);

    // The control FSM and the sender of its mailbox come as a pair.
    let (bank_tx, bank_rx) = mpsc::loose_bounded(usize::MAX);
    let bank = Box::new(Bank {
        rx: bank_rx,
        opened: 0,
    });
    let cfg = Config {
        pool_size: 2,
        ..Config::default()
    };
    let (router, mut system) = create_system_with_config(&cfg, bank_tx, bank);

    // Start the pollers. Each gets a handler with its own router clone.
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let builder = BankBuilder {
        router: router.clone(),
        ledger: Arc::clone(&ledger),
    };
    system
        .spawn("bank".to_owned(), builder)
        .expect("start the pollers");

    // Deposits: none of the accounts exists yet; the bank opens each one
    // when its first message arrives.
    let mut deposited = 0;
    for round in 0..deposits {
        for id in 0..accounts {
            let amount = 1 + (id + round) % 10;
            if deposit(&router, id, amount) {
                deposited += amount;
            }
        }
    }

    // Move money around: every account sends 1 to its neighbour.
    for id in 0..accounts {
        let to = (id + 1) % accounts;
        let msg = AccountMsg::Transfer { to, amount: 1 };
        if let Either::Right(msg) = router.try_send(id, msg) {
            let _ = router.force_send_control(BankMsg::Route { id, msg });
        }
    }

    // Ask every account for its balance. Replies come through an ordinary
    // channel; each account answers after the messages sent to it before.
    // A transfer's deposit is sent by the paying account's handler, possibly
    // after we asked the receiver: ask again until the books balance (every
    // round trip gets the transfers further; none is lost).
    let total_balance = loop {
        let (reply_tx, reply_rx) = channel();
        for id in 0..accounts {
            let msg = AccountMsg::Balance(reply_tx.clone());
            if let Either::Right(msg) = router.try_send(id, msg) {
                let _ = router.force_send_control(BankMsg::Route { id, msg });
            }
        }
        drop(reply_tx);
        let total: u64 = (0..accounts)
            .map(|_| reply_rx.recv_timeout(TIMEOUT).expect("balance reply").1)
            .sum();
        if total == deposited {
            break total;
        }
    };

    let (opened_tx, opened_rx) = channel();
    router
        .send_control(BankMsg::Opened(opened_tx))
        .expect("bank mailbox");
    let opened = opened_rx.recv_timeout(TIMEOUT).expect("bank reply");

    // Close every other account: the handler stops the FSM, removes its
    // address and confirms.
    let (closed_tx, closed_rx) = channel();
    let mut closing = 0;
    for id in (0..accounts).step_by(2) {
        if router
            .send(id, AccountMsg::Close(closed_tx.clone()))
            .is_ok()
        {
            closing += 1;
        }
    }
    for _ in 0..closing {
        closed_rx.recv_timeout(TIMEOUT).expect("close reply");
    }
    let alive_after_close = router.alive_cnt();

    // Shutdown refuses new messages, lets the pollers finish what was
    // accepted, joins them and drops every FSM.
    system.shutdown();
    let refused_after_shutdown = !deposit(&router, 1, 1);
    let ledger = *ledger.lock().unwrap_or_else(|e| e.into_inner());

    Report {
        opened,
        total_balance,
        deposited,
        alive_after_close,
        ledger,
        refused_after_shutdown,
    }
}

fn main() {
    let report = run(10_000, 10);
    println!("opened {} accounts", report.opened);
    println!(
        "deposited {}, balances add up to {}",
        report.deposited, report.total_balance
    );
    println!(
        "{} messages handled in {} poll rounds ({:.1} per round)",
        report.ledger.handled,
        report.ledger.rounds,
        report.ledger.handled as f64 / report.ledger.rounds.max(1) as f64
    );
    println!(
        "{} accounts left after closing half",
        report.alive_after_close
    );
    println!(
        "deposit after shutdown refused: {}",
        report.refused_after_shutdown
    );
}
