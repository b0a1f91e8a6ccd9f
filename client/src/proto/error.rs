//! IBP error codes (PROTOCOL.md §7.1).
//!
//! The table is identical in the ACCRE depot, the LStore client and LoCI up to −60; −61…−66
//! exist only in ACCRE. Both the depot (to answer) and the client (to explain a refusal) need
//! the same names, so they live here once. Internal server codes (−101…, −1001…) never travel
//! on the wire and are deliberately absent.

use std::fmt;

/// The success status that starts every positive reply line.
pub const IBP_OK: i32 = 1;

macro_rules! error_codes {
    ($( $variant:ident = $code:literal, $name:literal, $desc:literal; )*) => {
        /// Every error code an IBP depot may put on the wire (PROTOCOL.md §7.1).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $(
                #[doc = $desc]
                $variant,
            )*
        }

        impl ErrorCode {
            /// Every code, in wire order (−1 first), for tables and exhaustive tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The negative number sent on the wire.
            pub const fn code(self) -> i32 {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The code for a wire number; `None` for anything outside §7.1.
            pub const fn from_code(code: i32) -> Option<ErrorCode> {
                match code { $($code => Some(ErrorCode::$variant),)* _ => None }
            }

            /// The C constant name, e.g. `IBP_E_CAP_NOT_FOUND`.
            pub const fn name(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }

            /// A short human description.
            pub const fn description(self) -> &'static str {
                match self { $(ErrorCode::$variant => $desc,)* }
            }
        }
    };
}

error_codes! {
    Generic = -1, "IBP_E_GENERIC", "generic failure";
    SockRead = -2, "IBP_E_SOCK_READ", "socket read failed";
    SockWrite = -3, "IBP_E_SOCK_WRITE", "socket write failed";
    CapNotFound = -4, "IBP_E_CAP_NOT_FOUND", "capability not found";
    CapNotWrite = -5, "IBP_E_CAP_NOT_WRITE", "capability is not a write capability";
    CapNotRead = -6, "IBP_E_CAP_NOT_READ", "capability is not a read capability";
    CapNotManage = -7, "IBP_E_CAP_NOT_MANAGE", "capability is not a manage capability";
    InvalidWriteCap = -8, "IBP_E_INVALID_WRITE_CAP", "invalid write capability";
    InvalidReadCap = -9, "IBP_E_INVALID_READ_CAP", "invalid read capability";
    InvalidManageCap = -10, "IBP_E_INVALID_MANAGE_CAP", "invalid manage capability";
    WrongCapFormat = -11, "IBP_E_WRONG_CAP_FORMAT", "malformed capability";
    CapAccessDenied = -12, "IBP_E_CAP_ACCESS_DENIED", "capability access denied";
    Connection = -13, "IBP_E_CONNECTION", "connection failure";
    FileOpen = -14, "IBP_E_FILE_OPEN", "depot could not open its storage";
    FileRead = -15, "IBP_E_FILE_READ", "depot storage read failed";
    FileWrite = -16, "IBP_E_FILE_WRITE", "depot storage write failed";
    FileAccess = -17, "IBP_E_FILE_ACCESS", "depot storage access failed";
    FileSeekError = -18, "IBP_E_FILE_SEEK_ERROR", "depot storage seek failed";
    WouldExceedLimit = -19, "IBP_E_WOULD_EXCEED_LIMIT", "range exceeds the allocation's size or limit";
    WouldDamageData = -20, "IBP_E_WOULD_DAMAGE_DATA", "change would damage stored data";
    BadFormat = -21, "IBP_E_BAD_FORMAT", "malformed command";
    TypeNotSupported = -22, "IBP_E_TYPE_NOT_SUPPORTED", "allocation type not supported";
    RsrcUnavail = -23, "IBP_E_RSRC_UNAVAIL", "resource unavailable";
    Internal = -24, "IBP_E_INTERNAL", "internal depot error";
    InvalidCmd = -25, "IBP_E_INVALID_CMD", "invalid command";
    WouldBlock = -26, "IBP_E_WOULD_BLOCK", "operation would block";
    ProtVers = -27, "IBP_E_PROT_VERS", "unsupported protocol version";
    LongDuration = -28, "IBP_E_LONG_DURATION", "duration longer than the depot allows";
    WrongPasswd = -29, "IBP_E_WRONG_PASSWD", "wrong status password";
    InvalidParameter = -30, "IBP_E_INVALID_PARAMETER", "invalid parameter";
    InvParHost = -31, "IBP_E_INV_PAR_HOST", "invalid host parameter";
    InvParPort = -32, "IBP_E_INV_PAR_PORT", "invalid port parameter";
    InvParAtdr = -33, "IBP_E_INV_PAR_ATDR", "invalid duration attribute";
    InvParAtrl = -34, "IBP_E_INV_PAR_ATRL", "invalid reliability attribute";
    InvParAttp = -35, "IBP_E_INV_PAR_ATTP", "invalid type attribute";
    InvParSize = -36, "IBP_E_INV_PAR_SIZE", "invalid size";
    InvParPtr = -37, "IBP_E_INV_PAR_PTR", "invalid pointer parameter";
    AllocFailed = -38, "IBP_E_ALLOC_FAILED", "allocation failed";
    TooManyUnits = -39, "IBP_E_TOO_MANY_UNITS", "too many units";
    SetSockAttr = -40, "IBP_E_SET_SOCK_ATTR", "could not set socket attribute";
    GetSockAttr = -41, "IBP_E_GET_SOCK_ATTR", "could not get socket attribute";
    ClientTimeout = -42, "IBP_E_CLIENT_TIMEOUT", "client timeout";
    UnknownFunction = -43, "IBP_E_UNKNOWN_FUNCTION", "unknown or refused command";
    InvIpAddr = -44, "IBP_E_INV_IP_ADDR", "invalid IP address";
    WouldExceedPolicy = -45, "IBP_E_WOULD_EXCEED_POLICY", "request exceeds the depot's policy";
    ServerTimeout = -46, "IBP_E_SERVER_TIMEOUT", "depot-side timeout";
    ServerRecovering = -47, "IBP_E_SERVER_RECOVERING", "depot is recovering";
    CapDeleting = -48, "IBP_E_CAP_DELETING", "allocation is being deleted";
    UnknownRs = -49, "IBP_E_UNKNOWN_RS", "unknown resource";
    InvalidRid = -50, "IBP_E_INVALID_RID", "invalid resource id";
    NfuUnknown = -51, "IBP_E_NFU_UNKNOWN", "unknown NFU operation";
    NfuDupPara = -52, "IBP_E_NFU_DUP_PARA", "duplicate NFU parameter";
    QueueFull = -53, "IBP_E_QUEUE_FULL", "depot queue full";
    CrtAuthFail = -54, "IBP_E_CRT_AUTH_FAIL", "certificate authentication failed";
    InvalidCertFile = -55, "IBP_E_INVALID_CERT_FILE", "invalid certificate file";
    InvalidPrivateKeyPasswd = -56, "IBP_E_INVALID_PRIVATE_KEY_PASSWD", "invalid private key password";
    InvalidPrivateKeyFile = -57, "IBP_E_INVALID_PRIVATE_KEY_FILE", "invalid private key file";
    AuthenticationReq = -58, "IBP_E_AUTHENTICATION_REQ", "authentication required";
    AuthenNotSupport = -59, "IBP_E_AUTHEN_NOT_SUPPORT", "authentication not supported";
    AuthenticationFailed = -60, "IBP_E_AUTHENTICATION_FAILED", "authentication failed";
    InvalidHost = -61, "IBP_E_INVALID_HOST", "invalid host";
    CantConnect = -62, "IBP_E_CANT_CONNECT", "could not connect to the other depot";
    Chksum = -63, "IBP_E_CHKSUM", "checksum mismatch or no checksum stored";
    ChksumType = -64, "IBP_E_CHKSUM_TYPE", "unsupported checksum type";
    ChksumBlocksize = -65, "IBP_E_CHKSUM_BLOCKSIZE", "invalid checksum block size";
    OutOfSockets = -66, "IBP_E_OUT_OF_SOCKETS", "depot out of connections (back off and retry)";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.code(), self.description())
    }
}

impl std::error::Error for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_dense_and_round_trips() {
        assert_eq!(ErrorCode::ALL.len(), 66);
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            let wire = -(i as i32) - 1;
            assert_eq!(code.code(), wire);
            assert_eq!(ErrorCode::from_code(wire), Some(*code));
            assert!(code.name().starts_with("IBP_E_"));
        }
        assert_eq!(ErrorCode::from_code(0), None);
        assert_eq!(ErrorCode::from_code(IBP_OK), None);
        assert_eq!(ErrorCode::from_code(-67), None);
        assert_eq!(ErrorCode::from_code(-101), None);
    }

    #[test]
    fn names_match_protocol_table() {
        assert_eq!(ErrorCode::CapNotFound.name(), "IBP_E_CAP_NOT_FOUND");
        assert_eq!(ErrorCode::WouldExceedLimit.code(), -19);
        assert_eq!(ErrorCode::BadFormat.code(), -21);
        assert_eq!(ErrorCode::ProtVers.code(), -27);
        assert_eq!(ErrorCode::UnknownFunction.code(), -43);
        assert_eq!(ErrorCode::OutOfSockets.name(), "IBP_E_OUT_OF_SOCKETS");
        let shown = ErrorCode::CapNotFound.to_string();
        assert!(shown.contains("IBP_E_CAP_NOT_FOUND") && shown.contains("-4"), "{shown}");
    }
}
