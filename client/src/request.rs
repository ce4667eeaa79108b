//! Building the requests of the key-value operations and reading their
//! responses.

use kvproto_lite::raft_cmdpb::{CmdType, Request, Response};

use crate::error::{ClientError, Result};

/// A request writing `value` under `key`.
pub fn put_request(key: Vec<u8>, value: Vec<u8>) -> Request {
    let mut req = Request::default();
    req.set_cmd_type(CmdType::Put);
    req.mut_put().set_key(key);
    req.mut_put().set_value(value);
    req
}

/// A request reading `key`.
pub fn get_request(key: Vec<u8>) -> Request {
    let mut req = Request::default();
    req.set_cmd_type(CmdType::Get);
    req.mut_get().set_key(key);
    req
}

/// A request deleting `key`.
pub fn delete_request(key: Vec<u8>) -> Request {
    let mut req = Request::default();
    req.set_cmd_type(CmdType::Delete);
    req.mut_delete().set_key(key);
    req
}

/// A request writing `value` under `key` if the key currently holds
/// `expected` (`None`: if the key has no value).
pub fn compare_and_swap_request(
    key: Vec<u8>,
    expected: Option<Vec<u8>>,
    value: Vec<u8>,
) -> Request {
    let mut req = Request::default();
    req.set_cmd_type(CmdType::CompareAndSwap);
    let cas = req.mut_cas();
    cas.set_key(key);
    match expected {
        Some(v) => cas.set_expected(v),
        None => cas.set_expected_absent(true),
    }
    cas.set_value(value);
    req
}

/// A request deleting `key` if it currently holds `expected`.
pub fn delete_if_equal_request(key: Vec<u8>, expected: Vec<u8>) -> Request {
    let mut req = Request::default();
    req.set_cmd_type(CmdType::DeleteIfEqual);
    req.mut_delete_if_equal().set_key(key);
    req.mut_delete_if_equal().set_expected(expected);
    req
}

/// A request running the user command handler registered as `name` with
/// `input`.
pub fn user_request(name: &str, input: Vec<u8>) -> Request {
    let mut req = Request::default();
    req.set_cmd_type(CmdType::User);
    req.mut_user().set_name(name.to_owned());
    req.mut_user().set_input(input);
    req
}

/// The outcome of a compare-and-swap or delete-if-equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasOutcome {
    /// The comparison held and the write happened.
    pub succeeded: bool,
    /// The value before the command (`None`: the key had no value).
    pub previous: Option<Vec<u8>>,
}

/// The outcome a CompareAndSwap or DeleteIfEqual response carries.
///
/// # Errors
///
/// [`ClientError::Malformed`] if `resp` is neither.
pub fn cas_outcome(mut resp: Response) -> Result<CasOutcome> {
    if !matches!(
        resp.get_cmd_type(),
        CmdType::CompareAndSwap | CmdType::DeleteIfEqual
    ) {
        return Err(ClientError::Malformed(format!(
            "expected a compare-and-swap response, got {:?}",
            resp.get_cmd_type()
        )));
    }
    let mut cas = resp.take_cas();
    Ok(CasOutcome {
        succeeded: cas.get_succeeded(),
        previous: if cas.get_previous_not_found() {
            None
        } else {
            Some(cas.take_previous())
        },
    })
}

/// The output a User response carries.
///
/// # Errors
///
/// [`ClientError::Command`] with the handler's message if it failed;
/// [`ClientError::Malformed`] if `resp` is not a User response.
pub fn user_output(mut resp: Response) -> Result<Vec<u8>> {
    if resp.get_cmd_type() != CmdType::User {
        return Err(ClientError::Malformed(format!(
            "expected a User response, got {:?}",
            resp.get_cmd_type()
        )));
    }
    let mut user = resp.take_user();
    if user.get_failed() {
        return Err(ClientError::Command(user.take_error()));
    }
    Ok(user.take_output())
}

/// The value a Get response carries (`None` for a missing key).
///
/// # Errors
///
/// [`ClientError::Malformed`] if `resp` is not a Get response.
pub fn get_value(mut resp: Response) -> Result<Option<Vec<u8>>> {
    if resp.get_cmd_type() != CmdType::Get {
        return Err(ClientError::Malformed(format!(
            "expected a Get response, got {:?}",
            resp.get_cmd_type()
        )));
    }
    let mut get = resp.take_get();
    Ok(if get.get_not_found() {
        None
    } else {
        Some(get.take_value())
    })
}
