//! Runs the narrated example (`examples/accounts.rs`) so it stays correct.

use crate::accounts_example::{run, Report};

#[test]
fn the_accounts_example_opens_accounts_on_demand_balances_the_books_and_shuts_down() {
    let accounts = 2_000;
    let report: Report = run(accounts, 3);
    assert_eq!(
        report.opened, accounts,
        "every account opened once, by the bank"
    );
    // Deposits of 1 + (id + round) % 10 over three rounds.
    let expected: u64 = (0..3)
        .flat_map(|round| (0..accounts).map(move |id| 1 + (id + round) % 10))
        .sum();
    assert_eq!(report.deposited, expected);
    assert_eq!(report.total_balance, expected, "transfers lose no money");
    assert_eq!(report.alive_after_close, (accounts / 2) as usize);
    assert!(report.ledger.handled >= 3 * accounts + accounts + accounts + accounts / 2);
    assert!(report.ledger.rounds > 0 && report.ledger.rounds <= report.ledger.handled);
    assert!(report.refused_after_shutdown);
}
