//! Message type bytes of PostgreSQL protocol v3, split by direction, plus status and auth codes.
//!
//! The same byte means different messages in each direction (`b'D'` is DataRow from the
//! server but Describe from the client), so the constants live in separate modules and the
//! direction is always known from the module path.

/// Tags of messages sent by the server (backend).
pub mod backend {
    /// Authentication request or result (`R`); see [`super::auth`] for the codes.
    pub const AUTHENTICATION: u8 = b'R';
    /// BackendKeyData (`K`): process id and secret key for CancelRequest.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// BindComplete (`2`).
    pub const BIND_COMPLETE: u8 = b'2';
    /// CloseComplete (`3`).
    pub const CLOSE_COMPLETE: u8 = b'3';
    /// CommandComplete (`C`).
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// CopyData (`d`), also sent by the client.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone (`c`), also sent by the client.
    pub const COPY_DONE: u8 = b'c';
    /// CopyInResponse (`G`): the server waits for CopyData from the client.
    pub const COPY_IN_RESPONSE: u8 = b'G';
    /// CopyOutResponse (`H`): the server streams CopyData to the client.
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    /// CopyBothResponse (`W`): streaming replication.
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    /// DataRow (`D`).
    pub const DATA_ROW: u8 = b'D';
    /// EmptyQueryResponse (`I`).
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    /// ErrorResponse (`E`).
    pub const ERROR_RESPONSE: u8 = b'E';
    /// FunctionCallResponse (`V`).
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    /// NegotiateProtocolVersion (`v`).
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    /// NoData (`n`).
    pub const NO_DATA: u8 = b'n';
    /// NoticeResponse (`N`).
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// NotificationResponse (`A`): LISTEN/NOTIFY payload.
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    /// ParameterDescription (`t`).
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    /// ParameterStatus (`S`).
    pub const PARAMETER_STATUS: u8 = b'S';
    /// ParseComplete (`1`).
    pub const PARSE_COMPLETE: u8 = b'1';
    /// PortalSuspended (`s`).
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// ReadyForQuery (`Z`), body is one [`super::status`] byte.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// RowDescription (`T`).
    pub const ROW_DESCRIPTION: u8 = b'T';
}

/// Tags of messages sent by the client (frontend).
pub mod frontend {
    /// Bind (`B`).
    pub const BIND: u8 = b'B';
    /// Close (`C`) of a statement or portal.
    pub const CLOSE: u8 = b'C';
    /// CopyData (`d`).
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone (`c`).
    pub const COPY_DONE: u8 = b'c';
    /// CopyFail (`f`).
    pub const COPY_FAIL: u8 = b'f';
    /// Describe (`D`) of a statement or portal.
    pub const DESCRIBE: u8 = b'D';
    /// Execute (`E`).
    pub const EXECUTE: u8 = b'E';
    /// Flush (`H`).
    pub const FLUSH: u8 = b'H';
    /// FunctionCall (`F`).
    pub const FUNCTION_CALL: u8 = b'F';
    /// Parse (`P`).
    pub const PARSE: u8 = b'P';
    /// PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse (`p`).
    pub const PASSWORD: u8 = b'p';
    /// Query (`Q`): simple query protocol.
    pub const QUERY: u8 = b'Q';
    /// Sync (`S`).
    pub const SYNC: u8 = b'S';
    /// Terminate (`X`).
    pub const TERMINATE: u8 = b'X';
}

/// Transaction status byte carried by ReadyForQuery.
pub mod status {
    /// Idle, not in a transaction block.
    pub const IDLE: u8 = b'I';
    /// In a transaction block.
    pub const IN_TRANSACTION: u8 = b'T';
    /// In a failed transaction block (queries rejected until the block ends).
    pub const FAILED: u8 = b'E';
}

/// Codes in the first `i32` of an Authentication (`R`) message body.
pub mod auth {
    /// AuthenticationOk.
    pub const OK: i32 = 0;
    /// AuthenticationKerberosV5 (unsupported by modern servers).
    pub const KERBEROS_V5: i32 = 2;
    /// AuthenticationCleartextPassword.
    pub const CLEARTEXT_PASSWORD: i32 = 3;
    /// AuthenticationMD5Password, followed by a 4-byte salt.
    pub const MD5_PASSWORD: i32 = 5;
    /// AuthenticationGSS.
    pub const GSS: i32 = 7;
    /// AuthenticationGSSContinue.
    pub const GSS_CONTINUE: i32 = 8;
    /// AuthenticationSSPI.
    pub const SSPI: i32 = 9;
    /// AuthenticationSASL, followed by the list of mechanisms.
    pub const SASL: i32 = 10;
    /// AuthenticationSASLContinue, followed by mechanism data.
    pub const SASL_CONTINUE: i32 = 11;
    /// AuthenticationSASLFinal, followed by mechanism data.
    pub const SASL_FINAL: i32 = 12;
}

/// Request codes of the untagged first packets (in place of a protocol version).
pub mod request {
    /// SSLRequest.
    pub const SSL: u32 = 80_877_103;
    /// GSSENCRequest.
    pub const GSSENC: u32 = 80_877_104;
    /// CancelRequest.
    pub const CANCEL: u32 = 80_877_102;
    /// Protocol 3.0 (`3 << 16`); minor versions are added to it.
    pub const PROTOCOL_3_0: u32 = 196_608;
}
