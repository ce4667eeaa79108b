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
