//! PostgreSQL v3 wire protocol, the backend's half: decode frontend messages, encode backend ones.
//!
//! Sans-IO: decoders take bytes from a `BytesMut` and return `Ok(None)` until a
//! whole message is there; encoders append to a `BytesMut`. The server in
//! [`crate::server`] owns the socket and decides which buffer goes out in which
//! write, which is the point of the faults (several messages and a FIN in one
//! I/O tick).
//!
//! Only what a fake server needs: the startup packet family (StartupMessage,
//! SSLRequest, GSSENCRequest, CancelRequest), simple Query, Sync, Terminate;
//! every other frontend message is kept as [`Frontend::Other`] with its tag.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Protocol version 3.0 as sent in a StartupMessage.
pub const PROTOCOL_V3: i32 = 196_608;
/// The magic "version" of an SSLRequest.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// The magic "version" of a GSSENCRequest.
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// The magic "version" of a CancelRequest.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Largest frontend message accepted (length field included). Real servers
/// allow more; a fake one only needs to refuse garbage lengths.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;
/// Largest startup packet accepted, as in PostgreSQL (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;

/// Type OID of `int4`.
pub const INT4_OID: u32 = 23;
/// Type OID of `text`.
pub const TEXT_OID: u32 = 25;
/// Type OID of `void` (what `pg_sleep` returns).
pub const VOID_OID: u32 = 2278;

/// A decoded frontend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frontend {
    /// StartupMessage: protocol version and the `name=value` parameters in
    /// the order sent (`user`, `database`, `application_name`, ...).
    Startup {
        /// The requested protocol version (`major << 16 | minor`).
        version: i32,
        /// Parameters in the order the client sent them.
        params: Vec<(String, String)>,
    },
    /// SSLRequest: answered with a single `N` byte.
    SslRequest,
    /// GSSENCRequest: answered with a single `N` byte.
    GssEncRequest,
    /// CancelRequest for the backend with this key.
    CancelRequest {
        /// Backend process id from BackendKeyData.
        process_id: i32,
        /// Secret key from BackendKeyData.
        secret_key: i32,
    },
    /// `Q`: a simple query.
    Query(String),
    /// `S`: Sync (end of an extended-protocol batch).
    Sync,
    /// `X`: Terminate.
    Terminate,
    /// Any other tagged message, kept raw.
    Other {
        /// The message type byte.
        tag: u8,
        /// The body, without tag and length.
        body: Bytes,
    },
}

impl Frontend {
    /// The value of a startup parameter, if this is a StartupMessage that has it.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            Frontend::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// A frontend byte stream that is not the protocol. The server answers it
/// with a FATAL 08P01 and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// A length field outside `[min, max]`.
    BadLength {
        /// The length field as sent.
        len: i64,
        /// The largest length this message may have.
        max: usize,
    },
    /// A string field with no NUL terminator, or not UTF-8.
    BadString,
    /// A startup packet whose parameter list is malformed.
    BadStartup,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadLength { len, max } => {
                write!(f, "invalid message length {len} (at most {max})")
            }
            WireError::BadString => f.write_str("invalid string in message"),
            WireError::BadStartup => f.write_str("invalid startup packet layout"),
        }
    }
}

impl std::error::Error for WireError {}

/// Decodes the first message of a connection (or the one after an answered
/// SSLRequest): the untagged startup packet family.
///
/// Returns `Ok(None)` while the buffer holds less than one whole packet; on
/// success the packet's bytes are consumed.
pub fn decode_startup(buf: &mut BytesMut) -> Result<Option<Frontend>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 || len as usize > MAX_STARTUP_LEN {
        return Err(WireError::BadLength {
            len: i64::from(len),
            max: MAX_STARTUP_LEN,
        });
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len).freeze();
    packet.advance(4);
    let code = packet.get_i32();
    match code {
        SSL_REQUEST_CODE => Ok(Some(Frontend::SslRequest)),
        GSSENC_REQUEST_CODE => Ok(Some(Frontend::GssEncRequest)),
        CANCEL_REQUEST_CODE => {
            if packet.remaining() < 8 {
                return Err(WireError::BadStartup);
            }
            let process_id = packet.get_i32();
            let secret_key = packet.get_i32();
            Ok(Some(Frontend::CancelRequest {
                process_id,
                secret_key,
            }))
        }
        version => {
            let mut params = Vec::new();
            loop {
                let name = take_cstr(&mut packet)?;
                if name.is_empty() {
                    break;
                }
                let value = take_cstr(&mut packet)?;
                params.push((name, value));
            }
            if packet.has_remaining() {
                return Err(WireError::BadStartup);
            }
            Ok(Some(Frontend::Startup { version, params }))
        }
    }
}

/// Decodes one tagged frontend message (everything after the startup packet).
///
/// Returns `Ok(None)` while the buffer holds less than one whole message; on
/// success the message's bytes are consumed.
pub fn decode_message(buf: &mut BytesMut) -> Result<Option<Frontend>, WireError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 || len as usize > MAX_MESSAGE_LEN {
        return Err(WireError::BadLength {
            len: i64::from(len),
            max: MAX_MESSAGE_LEN,
        });
    }
    let total = 1 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mut message = buf.split_to(total).freeze();
    message.advance(5);
    match tag {
        b'Q' => {
            let sql = take_cstr(&mut message)?;
            Ok(Some(Frontend::Query(sql)))
        }
        b'S' => Ok(Some(Frontend::Sync)),
        b'X' => Ok(Some(Frontend::Terminate)),
        tag => Ok(Some(Frontend::Other { tag, body: message })),
    }
}

fn take_cstr(buf: &mut Bytes) -> Result<String, WireError> {
    let end = buf
        .iter()
        .position(|&b| b == 0)
        .ok_or(WireError::BadString)?;
    let raw = buf.split_to(end);
    buf.advance(1);
    String::from_utf8(raw.to_vec()).map_err(|_| WireError::BadString)
}

/// Transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block (queries rejected until rollback).
    Failed,
}

impl TxStatus {
    /// The status byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            TxStatus::Idle => b'I',
            TxStatus::InTransaction => b'T',
            TxStatus::Failed => b'E',
        }
    }
}

/// ErrorResponse / NoticeResponse severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends; the server closes the connection after sending it.
    Fatal,
    /// A NoticeResponse's severity: PostgreSQL's immediate shutdown warns
    /// each client this way before the backend exits.
    Warning,
}

impl Severity {
    /// The severity text on the wire (fields `S` and `V`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Warning => "WARNING",
        }
    }
}

/// The SQLSTATE codes this server sends, so callers and tests name them once.
pub mod sqlstate {
    /// `admin_shutdown`: pg_terminate_backend, or a server shutting down.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// `idle_session_timeout`.
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    /// `too_many_connections` (role limit, max_connections).
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// `feature_not_supported`.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// `protocol_violation`.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// `invalid_authorization_specification` (no user in the startup packet).
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// `in_failed_sql_transaction`.
    pub const IN_FAILED_TRANSACTION: &str = "25P02";
}

/// One column of a RowDescription. Values are always sent in text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name (`?column?` for an unnamed expression).
    pub name: String,
    /// Type OID ([`INT4_OID`], [`TEXT_OID`], [`VOID_OID`]).
    pub type_oid: u32,
}

/// A backend message. `encode` appends it to a buffer; several messages in
/// one buffer go out in one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `R` AuthenticationOk.
    AuthenticationOk,
    /// `S` ParameterStatus.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Parameter value.
        value: String,
    },
    /// `K` BackendKeyData.
    BackendKeyData {
        /// Backend process id.
        process_id: i32,
        /// Cancel key.
        secret_key: i32,
    },
    /// `Z` ReadyForQuery.
    ReadyForQuery(TxStatus),
    /// `T` RowDescription.
    RowDescription(Vec<Column>),
    /// `D` DataRow: text values, `None` is SQL NULL.
    DataRow(Vec<Option<String>>),
    /// `C` CommandComplete with its tag (`SELECT 1`, `LISTEN`, ...).
    CommandComplete(String),
    /// `I` EmptyQueryResponse.
    EmptyQueryResponse,
    /// `N` NoticeResponse (same fields as ErrorResponse).
    NoticeResponse {
        /// WARNING, as sent.
        severity: Severity,
        /// Five-character SQLSTATE.
        code: String,
        /// Primary message.
        message: String,
    },
    /// `E` ErrorResponse.
    ErrorResponse {
        /// ERROR or FATAL.
        severity: Severity,
        /// Five-character SQLSTATE.
        code: String,
        /// Primary message.
        message: String,
    },
}

impl Backend {
    /// An ErrorResponse.
    pub fn error(severity: Severity, code: &str, message: &str) -> Backend {
        Backend::ErrorResponse {
            severity,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Backend::AuthenticationOk => {
                frame(buf, b'R', |b| b.put_i32(0));
            }
            Backend::ParameterStatus { name, value } => frame(buf, b'S', |b| {
                put_cstr(b, name);
                put_cstr(b, value);
            }),
            Backend::BackendKeyData {
                process_id,
                secret_key,
            } => frame(buf, b'K', |b| {
                b.put_i32(*process_id);
                b.put_i32(*secret_key);
            }),
            Backend::ReadyForQuery(status) => frame(buf, b'Z', |b| b.put_u8(status.byte())),
            Backend::RowDescription(columns) => frame(buf, b'T', |b| {
                b.put_i16(columns.len() as i16);
                for column in columns {
                    put_cstr(b, &column.name);
                    b.put_u32(0); // table oid: not a table column
                    b.put_i16(0); // attribute number
                    b.put_u32(column.type_oid);
                    b.put_i16(type_len(column.type_oid));
                    b.put_i32(-1); // type modifier
                    b.put_i16(0); // text format
                }
            }),
            Backend::DataRow(values) => frame(buf, b'D', |b| {
                b.put_i16(values.len() as i16);
                for value in values {
                    match value {
                        Some(text) => {
                            b.put_i32(text.len() as i32);
                            b.put_slice(text.as_bytes());
                        }
                        None => b.put_i32(-1),
                    }
                }
            }),
            Backend::CommandComplete(tag) => frame(buf, b'C', |b| put_cstr(b, tag)),
            Backend::EmptyQueryResponse => frame(buf, b'I', |_| {}),
            Backend::ErrorResponse {
                severity,
                code,
                message,
            }
            | Backend::NoticeResponse {
                severity,
                code,
                message,
            } => frame(
                buf,
                if matches!(self, Backend::ErrorResponse { .. }) {
                    b'E'
                } else {
                    b'N'
                },
                |b| {
                    for (field, value) in [
                        (b'S', severity.as_str()),
                        (b'V', severity.as_str()),
                        (b'C', code.as_str()),
                        (b'M', message.as_str()),
                    ] {
                        b.put_u8(field);
                        put_cstr(b, value);
                    }
                    b.put_u8(0);
                },
            ),
        }
    }
}

/// Encodes every message of `messages` into one buffer (one write's worth).
pub fn encode_all(messages: &[Backend]) -> BytesMut {
    let mut buf = BytesMut::new();
    for message in messages {
        message.encode(&mut buf);
    }
    buf
}

fn type_len(oid: u32) -> i16 {
    match oid {
        INT4_OID | VOID_OID => 4,
        _ => -1,
    }
}

/// Writes tag, a length placeholder, the body, then patches the length.
fn frame(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup_bytes(code: i32, params: &[(&str, &str)]) -> BytesMut {
        let mut body = BytesMut::new();
        body.put_i32(code);
        for (k, v) in params {
            put_cstr(&mut body, k);
            put_cstr(&mut body, v);
        }
        body.put_u8(0);
        let mut buf = BytesMut::new();
        buf.put_i32(body.len() as i32 + 4);
        buf.extend_from_slice(&body);
        buf
    }

    #[test]
    fn startup_decodes_only_when_whole() {
        let full = startup_bytes(PROTOCOL_V3, &[("user", "app"), ("database", "db")]);
        let mut partial = BytesMut::from(&full[..full.len() - 1]);
        assert_eq!(decode_startup(&mut partial), Ok(None));
        assert_eq!(partial.len(), full.len() - 1);

        let mut buf = full.clone();
        buf.extend_from_slice(b"Q");
        let msg = decode_startup(&mut buf).unwrap().unwrap();
        assert_eq!(
            msg,
            Frontend::Startup {
                version: PROTOCOL_V3,
                params: vec![
                    ("user".to_owned(), "app".to_owned()),
                    ("database".to_owned(), "db".to_owned())
                ],
            }
        );
        assert_eq!(msg.param("user"), Some("app"));
        assert_eq!(&buf[..], b"Q");
    }

    #[test]
    fn ssl_request_and_bad_length() {
        let mut buf = BytesMut::new();
        buf.put_i32(8);
        buf.put_i32(SSL_REQUEST_CODE);
        assert_eq!(decode_startup(&mut buf), Ok(Some(Frontend::SslRequest)));
        assert!(buf.is_empty());

        let mut bad = BytesMut::new();
        bad.put_i32(3);
        bad.put_i32(0);
        assert_eq!(
            decode_startup(&mut bad),
            Err(WireError::BadLength {
                len: 3,
                max: MAX_STARTUP_LEN
            })
        );
    }

    #[test]
    fn tagged_messages() {
        let mut buf = BytesMut::new();
        frame(&mut buf, b'Q', |b| put_cstr(b, "SELECT 1"));
        frame(&mut buf, b'P', |b| b.put_slice(b"\0x\0"));
        frame(&mut buf, b'X', |_| {});
        assert_eq!(
            decode_message(&mut buf),
            Ok(Some(Frontend::Query("SELECT 1".to_owned())))
        );
        assert_eq!(
            decode_message(&mut buf),
            Ok(Some(Frontend::Other {
                tag: b'P',
                body: Bytes::from_static(b"\0x\0")
            }))
        );
        assert_eq!(decode_message(&mut buf), Ok(Some(Frontend::Terminate)));
        assert_eq!(decode_message(&mut buf), Ok(None));
    }

    #[test]
    fn error_response_layout() {
        let buf = encode_all(&[
            Backend::ReadyForQuery(TxStatus::Idle),
            Backend::error(Severity::Fatal, sqlstate::ADMIN_SHUTDOWN, "bye"),
        ]);
        let mut expected = Vec::new();
        expected.extend_from_slice(b"Z\0\0\0\x05I");
        let fields = b"SFATAL\0VFATAL\0C57P01\0Mbye\0\0";
        expected.push(b'E');
        expected.extend_from_slice(&(fields.len() as i32 + 4).to_be_bytes());
        expected.extend_from_slice(fields);
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn row_description_and_data_row_lengths() {
        let buf = encode_all(&[
            Backend::RowDescription(vec![Column {
                name: "?column?".to_owned(),
                type_oid: INT4_OID,
            }]),
            Backend::DataRow(vec![Some("1".to_owned()), None]),
        ]);
        // T: 4 len + 2 count + 9 name + 18 per-field = 33
        assert_eq!(&buf[..5], &[b'T', 0, 0, 0, 33]);
        let d = &buf[34..];
        // D: 4 len + 2 count + (4 + 1) + 4 = 15
        assert_eq!(&d[..5], &[b'D', 0, 0, 0, 15]);
        assert_eq!(&d[5..], &[0, 2, 0, 0, 0, 1, b'1', 0xff, 0xff, 0xff, 0xff]);
    }
}
